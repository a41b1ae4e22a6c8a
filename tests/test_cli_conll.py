"""CoNLL through the command line as a user meets it: no --format, no --as, import then export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labelmill.cli import app
from labelmill.formats import detect_format

SCHEMA = {
    "controls": [{"name": "entities", "type": "spans", "source": "text", "classes": ["PER", "LOC", "ORG"]}]
}
CONLL = (
    "John\tB-PER\nlives\tO\nin\tO\nNew\tB-LOC\nYork\tI-LOC\n\n"
    "ACME\tB-ORG\nhires\tO\n\n"
    "nothing\tO\nhere\tO\n\n"
)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELMILL_DATABASE_URL", raising=False)
    return {"tmp": tmp_path, "db": f"sqlite:///{tmp_path / 'cli.db'}"}


def _project(env: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> None:
    path = env["tmp"] / "schema.json"
    path.write_text(json.dumps(schema))
    r = cli("project", "create", "ner", "--schema", str(path), "--db", env["db"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("suffix", [".conll", ".iob", ".iob2", ".bio", ".CoNLL", ".conll.gz"])
def test_conll_extensions_are_recognised(tmp_path: Path, suffix: str) -> None:
    assert detect_format(tmp_path / f"train{suffix}") == "conll"


@pytest.mark.parametrize("suffix", [".conll", ".iob2"])
def test_import_then_export_gives_the_file_back(env: dict[str, Any], suffix: str) -> None:
    _project(env)
    src = env["tmp"] / f"in{suffix}"
    src.write_text(CONLL)
    r = cli("import", "ner", str(src), "--db", env["db"])
    assert r.exit_code == 0 and "3 created, 3 annotations" in r.output, r.output
    out = env["tmp"] / "out.conll"
    r = cli("export", "ner", "--format", "conll", "--out", str(out), "--db", env["db"])
    assert r.exit_code == 0, r.output
    assert out.read_text() == CONLL


def test_as_gold_is_still_available(env: dict[str, Any]) -> None:
    _project(env)
    src = env["tmp"] / "in.conll"
    src.write_text(CONLL)
    r = cli("import", "ner", str(src), "--as", "gold", "--db", env["db"])
    assert r.exit_code == 0 and r.stdout == "imported into project 1: 3 created\n", r.output
    assert "every imported item (3) is gold" in r.stderr
    out = env["tmp"] / "out.jsonl"
    assert cli("export", "ner", "--out", str(out), "--db", env["db"]).exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(row["annotations"] == [] for row in rows)


def test_conll_needs_a_spans_control(env: dict[str, Any]) -> None:
    _project(env, {"controls": [{"name": "s", "type": "choices", "source": "text", "classes": ["a", "b"]}]})
    src = env["tmp"] / "in.conll"
    src.write_text(CONLL)
    r = cli("import", "ner", str(src), "--db", env["db"])
    assert r.exit_code == 1
    assert r.output == "error: conll labels need a spans control in the project's schema\n"


def test_wnut16_round_trip(env: dict[str, Any], shared_datasets: Path) -> None:
    path = shared_datasets / "ner" / "wnut16" / "train.conll"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    tags = {line.rstrip("\n").split("\t")[-1][2:] for line in lines if "\t" in line}
    control = {"name": "entities", "type": "spans", "source": "text", "classes": sorted(tags - {""})}
    _project(env, {"controls": [control]})
    assert cli("import", "ner", str(path), "--db", env["db"]).exit_code == 0
    out = env["tmp"] / "out.conll"
    assert cli("export", "ner", "--format", "conll", "--out", str(out), "--db", env["db"]).exit_code == 0
    expected = "".join(line for line in lines if not line.startswith("-DOCSTART-"))
    assert out.read_text(encoding="utf-8") == expected


def test_coco_import_defaults_to_annotations_and_exports_back(env: dict[str, Any]) -> None:
    """The other labelled datasets share the default: their labels come back out of an export."""
    import numpy as np
    from PIL import Image

    folder = env["tmp"] / "coco"
    (folder / "images").mkdir(parents=True)
    for i in (1, 2):
        Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(folder / "images" / f"im{i}.png")
    doc = {
        "images": [{"id": i, "file_name": f"im{i}.png", "width": 60, "height": 40} for i in (1, 2)],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 0},
        ],
    }
    (folder / "instances.json").write_text(json.dumps(doc))
    schema = {"controls": [{"name": "b", "type": "boxes", "source": "image", "classes": ["car", "person"]}]}
    _project(env, schema)
    r = cli("import", "ner", str(folder / "instances.json"), "--format", "coco", "--db", env["db"])
    assert r.exit_code == 0 and "2 annotations" in r.output, r.output
    out = env["tmp"] / "out.json"
    assert cli("export", "ner", "--format", "coco", "--out", str(out), "--db", env["db"]).exit_code == 0
    exported = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in exported["categories"]}
    boxes = sorted((names[a["category_id"]], a["bbox"]) for a in exported["annotations"])
    assert boxes == [("car", [1.0, 2.0, 10.0, 20.0]), ("person", [5.0, 5.0, 5.0, 5.0])]


def test_conll_upload_through_the_api(client: Any, admin_token: str) -> None:
    from tests.conftest import auth

    r = client.post("/api/v1/projects", json={"name": "ner", "schema": SCHEMA}, headers=auth(admin_token))
    pid = r.json()["id"]
    files = {"files": ("train.conll", CONLL.encode(), "text/plain")}
    r = client.post(f"/api/v1/projects/{pid}/imports", files=files, headers=auth(admin_token))
    assert r.status_code == 201, r.text
    assert r.json()["result"]["created"] == 3 and r.json()["result"]["annotations"] == 3
