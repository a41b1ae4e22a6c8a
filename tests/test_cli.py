"""The labelmill command, driven as users and other tools drive it (DESIGN.md "Interfaces")."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from labelmill.cli import app

SCHEMA_YAML = """
controls:
  - {name: sentiment, type: choices, source: text, classes: [pos, neg]}
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELMILL_DATABASE_URL", raising=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA_YAML)
    return {"tmp": tmp_path, "schema": schema, "db": f"sqlite:///{tmp_path / 'cli.db'}"}


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def test_help_lists_the_contract_commands() -> None:
    out = cli("--help").output
    for name in (
        "serve",
        "demo",
        "user",
        "token",
        "member",
        "project",
        "import",
        "export",
        "aggregate",
        "agreement",
    ):
        assert name in out


def test_users_projects_members_import_export(env: dict[str, Any]) -> None:
    db, tmp = env["db"], env["tmp"]
    r = cli(
        "user", "create", "alice", "--role", "admin", "--password-stdin", "--db", db, input="s3cret-pass\n"
    )
    assert r.exit_code == 0, r.output
    r = cli("user", "create", "bob", "--role", "member", "--db", db)
    assert r.exit_code == 0
    r = cli("token", "create", "alice", "--db", db)
    assert r.exit_code == 0 and r.output.strip().startswith("lm_")
    r = cli("project", "create", "reviews", "--schema", str(env["schema"]), "--overlap", "3", "--db", db)
    assert r.exit_code == 0, r.output
    pid = r.output.strip()
    assert pid.isdigit()
    assert cli("member", "add", "reviews", "bob", "--role", "annotator", "--db", db).exit_code == 0
    assert cli("member", "add", pid, "bob", "--role", "reviewer", "--db", db).exit_code == 0

    items = tmp / "items.jsonl"
    items.write_text(
        "\n".join(json.dumps({"text": f"t{i}", "external_id": f"e{i}"}) for i in range(50)) + "\n"
    )
    r = cli("import", "reviews", str(items), "--db", db)
    assert r.exit_code == 0 and "50 created" in r.output, r.output

    out = tmp / "out.jsonl"
    r = cli("export", pid, "--format", "jsonl", "--out", str(out), "--db", db)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 50 and lines[0]["external_id"] == "e0" and lines[0]["consensus"] is None

    # re-import with --on-duplicate choices
    assert cli("import", "reviews", str(items), "--db", db).exit_code == 1
    r = cli("import", "reviews", str(items), "--on-duplicate", "skip", "--db", db)
    assert r.exit_code == 0 and "50 skipped" in r.output
    assert "1\treviews\t50 items" in cli("project", "list", "--db", db).output


def test_bad_input_is_one_line_and_stores_nothing(env: dict[str, Any]) -> None:
    db, tmp = env["db"], env["tmp"]
    cli("project", "create", "p", "--schema", str(env["schema"]), "--db", db)
    bad = tmp / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": oops}\n')
    r = cli("import", "p", str(bad), "--db", db)
    assert r.exit_code == 1
    assert r.output.startswith("error: bad.jsonl:3:") and r.output.count("\n") == 1, r.output
    assert "0 items" in cli("project", "list", "--db", db).output

    unknown = tmp / "unknown.json"
    unknown.write_text(json.dumps({"controls": [{"name": "x", "type": "boxs", "source": "image"}]}))
    r = cli("project", "create", "q", "--schema", str(unknown), "--db", db)
    assert r.exit_code == 1 and "controls[0].type" in r.output and "Traceback" not in r.output
    broken = tmp / "broken.json"
    broken.write_text('{"controls": [\n  oops\n]}')
    r = cli("project", "create", "q", "--schema", str(broken), "--db", db)
    assert r.exit_code == 1 and "broken.json:2" in r.output
    r = cli("import", "nope", str(bad), "--db", db)
    assert r.exit_code == 1 and "no project 'nope'" in r.output
    r = cli("import", "p", str(tmp / "missing.jsonl"), "--db", db)
    assert r.exit_code == 1 and "no such file" in r.output


def test_import_media_folder(env: dict[str, Any]) -> None:
    db, tmp = env["db"], env["tmp"]
    schema = tmp / "boxes.json"
    schema.write_text(
        json.dumps({"controls": [{"name": "b", "type": "boxes", "source": "image", "classes": ["x"]}]})
    )
    cli("project", "create", "imgs", "--schema", str(schema), "--db", db)
    folder = tmp / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((8, 4, 3), dtype=np.uint8)).save(folder / "sub" / "b.jpg")
    r = cli("import", "imgs", str(folder), "--db", db)
    assert r.exit_code == 0 and "2 created" in r.output, r.output
    out = tmp / "imgs.jsonl"
    cli("export", "imgs", "--out", str(out), "--db", db)
    rows = {r["external_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["a.png"]["meta"]["media"]["image"] == {"width": 30, "height": 20}
    assert rows["sub/b.jpg"]["data"]["image"].startswith("media://")
    stored = tmp / "data" / "media" / rows["sub/b.jpg"]["data"]["image"].removeprefix("media://")
    assert stored.is_file()


def _labels_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["task", "worker", "label"])
        for i in range(40):
            truth = "ab"[i % 2]
            for worker in range(5):
                label = truth if rng.random() < 0.8 else "ba"["ab".index(truth)]
                w.writerow([f"i{i}", f"w{worker}", label])


def test_aggregate_and_agreement(env: dict[str, Any]) -> None:
    labels = env["tmp"] / "labels.csv"
    _labels_csv(labels)
    out = env["tmp"] / "agg.csv"
    for method in ("mv", "wawa", "ds", "one-coin", "glad", "mace"):
        r = cli("aggregate", str(labels), "--method", method, "--out", str(out))
        assert r.exit_code == 0, (method, r.output)
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == 40 and set(rows[0]) == {"item", "label", "confidence"}
        assert sum(r["label"] == "ab"[int(r["item"][1:]) % 2] for r in rows) >= 32
    assert cli("aggregate", str(labels)).exit_code == 0
    r = cli("aggregate", str(labels), "--method", "nope")
    assert r.exit_code == 1 and "nope" in r.output
    for metric in ("krippendorff", "fleiss", "cohen", "percent"):
        r = cli("agreement", str(labels), "--metric", metric)
        assert r.exit_code == 0 and r.output.startswith(metric), r.output
        assert 0.0 < float(r.output.split()[1]) < 1.0
    bad = env["tmp"] / "bad.csv"
    bad.write_text("item,annotator,label\n1,2,3\n")
    r = cli("agreement", str(bad))
    assert r.exit_code == 1 and "bad.csv:1: missing column(s) worker" in r.output


def test_aggregate_on_shared_dataset(env: dict[str, Any], shared_datasets: Path) -> None:
    out = env["tmp"] / "rte.csv"
    r = cli("aggregate", str(shared_datasets / "crowd" / "rte" / "labels.csv"), "--out", str(out))
    assert r.exit_code == 0, r.output
    truth = {
        row["item"]: row["label"] for row in csv.DictReader((shared_datasets / "crowd/rte/truth.csv").open())
    }
    predicted = {row["item"]: row["label"] for row in csv.DictReader(out.open())}
    accuracy = np.mean([predicted[i] == label for i, label in truth.items()])
    assert accuracy > 0.9


def test_demo_loads_every_data_type(env: dict[str, Any]) -> None:
    r = cli("demo", "--no-serve", "--db", env["db"])
    assert r.exit_code == 0, r.output
    assert "login: demo  password: " in r.output
    listed = cli("project", "list", "--db", env["db"]).output
    assert listed.count("Demo:") == 5
    again = cli("demo", "--no-serve", "--db", env["db"])  # idempotent, new password
    assert again.exit_code == 0 and cli("project", "list", "--db", env["db"]).output == listed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def test_serve_answers_http(backend: str, env: dict[str, Any], request: pytest.FixtureRequest) -> None:
    url = env["db"] if backend == "sqlite" else request.getfixturevalue("pg_url")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelmill.cli", "serve", "--db", url, "--port", str(port)],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < deadline, (
                    proc.stdout.read() if proc.stdout else ""
                )
                time.sleep(0.2)
        assert r.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/projects").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_import_parquet_and_labelstudio(env: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    db, tmp = env["db"], env["tmp"]
    cli("project", "create", "p", "--schema", str(env["schema"]), "--db", db)
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["good", "bad"], "score": [0.5, 0.25]}), tmp / "x.parquet"
    )
    r = cli("import", "p", str(tmp / "x.parquet"), "--db", db)
    assert r.exit_code == 0 and "2 created" in r.output, r.output
    tasks = [
        {
            "id": 7,
            "data": {"text": "great"},
            "predictions": [
                {
                    "model_version": "m",
                    "score": 0.9,
                    "result": [
                        {
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["pos"]},
                        }
                    ],
                }
            ],
            "annotations": [
                {
                    "completed_by": 3,
                    "result": [
                        {
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["neg"]},
                        }
                    ],
                }
            ],
        },
    ]
    (tmp / "ls.json").write_text(json.dumps(tasks))
    r = cli("import", "p", str(tmp / "ls.json"), "--format", "labelstudio", "--db", db)
    assert r.exit_code == 0 and "1 created" in r.output and "1 predictions" in r.output, r.output
    assert "consensus refreshed" in r.output
    out = tmp / "p.jsonl"
    cli("export", "p", "--out", str(out), "--db", db)
    rows = {row["external_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert rows["a"]["data"] == {"text": "good", "score": 0.5}
    ls = rows["7"]
    assert ls["predictions"][0]["value"] == {"sentiment": "pos"}
    assert ls["annotations"][0]["value"] == {"sentiment": "neg"} and ls["annotations"][0]["annotator"] == "3"
    assert ls["consensus"]["value"] == {"sentiment": "neg"}


def test_stats_command(env: dict[str, Any]) -> None:
    db, tmp = env["db"], env["tmp"]
    cli("project", "create", "p", "--schema", str(env["schema"]), "--db", db)
    lines = [
        {
            "data": {"text": f"t{i}"},
            "annotations": [{"annotator": w, "value": {"sentiment": "pos"}} for w in ("ann", "bob")],
        }
        for i in range(3)
    ]
    (tmp / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    assert cli("import", "p", str(tmp / "a.jsonl"), "--db", db).exit_code == 0
    r = cli("stats", "p", "--db", db)
    assert r.exit_code == 0 and "items 3: 3 done" in r.output and "ann" in r.output, r.output
    data = json.loads(cli("stats", "p", "--json", "--db", db).output)
    assert data["progress"]["done"] == 3 and {a["name"] for a in data["annotators"]} == {"ann", "bob"}


def test_broken_pipe_ends_quietly_with_141(env: dict[str, Any]) -> None:
    """`labelmill export --out - | head`: the reader leaves early; no traceback, no error line."""
    db, tmp = env["db"], env["tmp"]
    cli("project", "create", "p", "--schema", str(env["schema"]), "--db", db)
    items = tmp / "items.jsonl"
    items.write_text("".join(json.dumps({"text": f"text {i} " + "x" * 100}) + "\n" for i in range(3000)))
    assert cli("import", "p", str(items), "--db", db).exit_code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelmill.cli", "export", "p", "--out", "-", "--db", db],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"{")
    proc.stdout.close()  # like `head -1` exiting after its line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_agreement_and_aggregate_read_the_projects_own_exports(env: dict[str, Any]) -> None:
    """The same labels as item,worker,label CSV, JSONL export, CSV annotations export or --project
    give the same agreement and the same aggregate."""
    db, tmp = env["db"], env["tmp"]
    schema = tmp / "two.yaml"
    schema.write_text(
        "controls:\n"
        "  - {name: sentiment, type: choices, source: text, classes: [pos, neg]}\n"
        "  - {name: topic, type: choices, source: text, classes: [a, b], required: false}\n"
    )
    cli("project", "create", "p", "--schema", str(schema), "--db", db)
    votes = {"ann": "ppnnpnpn", "bob": "ppnnppnn", "cid": "pnnnpnpp"}
    lines = [
        {
            "data": {"text": f"t{i}"},
            "external_id": f"e{i}",
            "annotations": [
                {"annotator": w, "value": {"sentiment": "pos" if v[i] == "p" else "neg"}}
                for w, v in votes.items()
            ],
        }
        for i in range(8)
    ]
    lines[0]["annotations"][0]["value"]["topic"] = "a"  # a second control, answered once
    (tmp / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    assert cli("import", "p", str(tmp / "a.jsonl"), "--db", db).exit_code == 0
    plain = tmp / "plain.csv"
    plain.write_text(
        "item,worker,label\n"
        + "".join(f"e{i},{w},{'pos' if v[i] == 'p' else 'neg'}\n" for w, v in votes.items() for i in range(8))
    )
    out_jsonl, out_csv = tmp / "export.jsonl", tmp / "export.csv"
    assert cli("export", "p", "--out", str(out_jsonl), "--db", db).exit_code == 0
    r = cli("export", "p", "--format", "csv", "--labels", "annotations", "--out", str(out_csv), "--db", db)
    assert r.exit_code == 0, r.output
    sources = [[str(plain)], [str(out_jsonl)], [str(out_csv)], ["--project", "p", "--db", db]]
    for metric in ("krippendorff", "percent"):
        answers = set()
        for source in sources:
            r = cli("agreement", *source, "--metric", metric, "--control", "sentiment")
            assert r.exit_code == 0, (source, r.output)
            answers.add(r.output)
        assert len(answers) == 1 and 0 < float(answers.pop().split()[1]) < 1
    aggregates = set()
    for source in sources:
        r = cli("aggregate", *source, "--method", "mv", "--control", "sentiment")
        assert r.exit_code == 0, (source, r.output)
        aggregates.add(r.output)
    assert len(aggregates) == 1
    # Two controls: the export needs --control; neither file nor project is an error.
    r = cli("agreement", str(out_jsonl))
    assert r.exit_code == 1 and "choose the control with --control (found: sentiment, topic)" in r.output
    r = cli("agreement", str(out_csv), "--control", "nope")
    assert r.exit_code == 1 and "no control 'nope'" in r.output
    r = cli("agreement")
    assert r.exit_code == 1 and "give a labels file or --project" in r.output
