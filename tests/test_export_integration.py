"""Exports through the platform: database -> export service -> API / jobs / CLI -> the real
readers; and the shared datasets round-tripping import -> export -> import unchanged."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from labelmill.jobs.worker import run_pending
from tests.conftest import auth

BOXES = {"controls": [{"name": "objects", "type": "boxes", "source": "image", "classes": ["cat", "dog"]}]}
NER = {
    "controls": [
        {"name": "entities", "type": "spans", "source": "text", "classes": ["PER", "LOC"]},
        {"name": "topic", "type": "choices", "source": "text", "classes": ["news", "chat"]},
    ]
}
LLM = {
    "controls": [
        {"name": "preference", "type": "pairwise", "source": "responses"},
        {"name": "helpfulness", "type": "rating", "source": "responses", "min": 1, "max": 5},
    ]
}


def _project(client: Any, token: str, name: str, schema: dict[str, Any]) -> int:
    r = client.post("/api/v1/projects", json={"name": name, "schema": schema}, headers=auth(token))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _upload(client: Any, token: str, pid: int, files: list[tuple[str, bytes]], **form: str) -> Any:
    r = client.post(
        f"/api/v1/projects/{pid}/imports",
        files=[("files", (n, io.BytesIO(b))) for n, b in files],
        data=form,
        headers=auth(token),
    )
    assert r.status_code == 201, r.text
    return r.json()


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _image_project(client: Any, token: str) -> int:
    pid = _project(client, token, "imgs", BOXES)
    _upload(client, token, pid, [("a.png", _png(64, 48)), ("b.png", _png(32, 32))])
    items = client.get(f"/api/v1/projects/{pid}/items", headers=auth(token)).json()["results"]
    lines = []
    for item in items:
        box = {"x": 4.0, "y": 6.0, "w": 20.0, "h": 10.0, "label": "cat"}
        anns = [{"annotator": a, "value": {"objects": [box]}} for a in ("ann1", "ann2")]
        lines.append(
            {
                "data": item["data"],
                "external_id": item["external_id"],
                "meta": item["meta"],
                "annotations": anns,
            }
        )
    _upload(client, token, pid, [("labels.jsonl", _jsonl(lines))], on_duplicate="update")
    return pid


def test_image_exports_read_by_the_real_readers(
    client: Any, db: Any, admin_token: str, tmp_path: Path
) -> None:
    pycocotools = pytest.importorskip("pycocotools.coco")
    pid = _image_project(client, admin_token)
    run_pending(db)
    r = client.get(f"/api/v1/projects/{pid}/export", params={"format": "coco"}, headers=auth(admin_token))
    assert r.status_code == 200
    (tmp_path / "coco.json").write_bytes(r.content)
    coco = pycocotools.COCO(str(tmp_path / "coco.json"))
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == 2
    assert coco.loadAnns(coco.getAnnIds())[0]["bbox"] == [4.0, 6.0, 20.0, 10.0]
    for fmt in ("yolo", "voc"):
        r = client.get(f"/api/v1/projects/{pid}/export", params={"format": fmt}, headers=auth(admin_token))
        assert r.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
        assert any(n.endswith((".png", ".jpg")) for n in names), names  # the media were copied in
        if fmt == "yolo":
            labels = [n for n in names if n.startswith("labels/") and n.endswith(".txt")]
            text = zipfile.ZipFile(io.BytesIO(r.content)).read(labels[0]).decode().split()
            assert text[0] == "0" and all(0 <= float(v) <= 1 for v in text[1:])


def test_export_job_and_download(client: Any, db: Any, admin_token: str) -> None:
    pid = _image_project(client, admin_token)
    run_pending(db)
    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "yolo"}, headers=auth(admin_token))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    for _ in range(100):
        job = client.get(f"/api/v1/jobs/{job_id}", headers=auth(admin_token)).json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert job["result"]["items"] == 2 and job["result"]["file"].endswith(".zip")
    r = client.get(f"/api/v1/jobs/{job_id}/download", headers=auth(admin_token))
    assert r.status_code == 200 and zipfile.ZipFile(io.BytesIO(r.content)).testzip() is None
    bad = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "nope"}, headers=auth(admin_token))
    assert bad.status_code == 422 and "nope" in bad.json()["detail"]
    formats = client.get("/api/v1/export-formats", headers=auth(admin_token)).json()
    assert {"jsonl", "coco", "yolo", "voc", "conll", "spacy", "huggingface", "labelstudio", "dpo"} <= set(
        formats
    )


def test_text_exports_and_predictions(client: Any, db: Any, admin_token: str, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    seqeval = pytest.importorskip("seqeval.metrics")
    pid = _project(client, admin_token, "ner", NER)
    text = "Ann flew to Paris"
    value = {
        "entities": [
            {"id": "s1", "start": 0, "end": 3, "label": "PER"},
            {"id": "s2", "start": 12, "end": 17, "label": "LOC"},
        ],
        "topic": "news",
    }
    lines = [
        {
            "data": {"text": text},
            "external_id": f"t{i}",
            "annotations": [{"annotator": a, "value": value} for a in ("x", "y")],
        }
        for i in range(3)
    ]
    _upload(client, admin_token, pid, [("a.jsonl", _jsonl(lines))])
    run_pending(db)
    conll = client.get(
        f"/api/v1/projects/{pid}/export", params={"format": "conll"}, headers=auth(admin_token)
    )
    tags = [line.split("\t")[-1] for line in conll.text.splitlines() if line.strip()]
    assert tags[:4] == ["B-PER", "O", "O", "B-LOC"]
    assert seqeval.f1_score([tags], [tags]) == 1.0
    hf = client.get(
        f"/api/v1/projects/{pid}/export", params={"format": "huggingface"}, headers=auth(admin_token)
    )
    zipfile.ZipFile(io.BytesIO(hf.content)).extractall(tmp_path / "hf")
    files = [str(p) for p in (tmp_path / "hf").rglob("*.parquet")]
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.features["topic"].names == ["news", "chat"] and len(ds) == 3

    r = client.post(
        f"/api/v1/projects/{pid}/predictions",
        headers=auth(admin_token),
        json={
            "predictions": [
                {"external_id": "t0", "value": {"topic": "chat"}, "score": 0.4, "model_version": "m"},
                {"external_id": "nope", "value": {"topic": "chat"}},
            ]
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "predictions[1].external_id"
    r = client.post(
        f"/api/v1/projects/{pid}/predictions",
        headers=auth(admin_token),
        json={
            "predictions": [
                {"external_id": "t0", "value": {"topic": "chat"}, "score": 0.4, "model_version": "m"}
            ]
        },
    )
    assert r.status_code == 201 and r.json() == {"created": 1}
    rows = [
        json.loads(x)
        for x in client.get(f"/api/v1/projects/{pid}/export", headers=auth(admin_token)).text.splitlines()
    ]
    assert [p["value"] for p in rows[0]["predictions"]] == [{"topic": "chat"}]
    assert all(row["predictions"] == [] for row in rows[1:])


def test_dpo_export(client: Any, db: Any, admin_token: str) -> None:
    pid = _project(client, admin_token, "llm", LLM)
    data = {"prompt": "2+2?", "responses": [{"id": "a", "text": "4"}, {"id": "b", "text": "5"}]}
    lines = [
        {
            "data": data,
            "annotations": [
                {"annotator": w, "value": {"preference": {"choice": "a"}, "helpfulness": 4}}
                for w in ("p", "q", "r")
            ],
        }
    ]
    _upload(client, admin_token, pid, [("a.jsonl", _jsonl(lines))])
    run_pending(db)
    r = client.get(f"/api/v1/projects/{pid}/export", params={"format": "dpo"}, headers=auth(admin_token))
    assert [json.loads(x) for x in r.text.splitlines()] == [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    ]


@pytest.mark.parametrize("name", ["sms_spam", "trec"])
def test_shared_text_datasets_round_trip(
    client: Any, admin_token: str, shared_datasets: Path, name: str
) -> None:
    """data.csv -> import -> export JSONL -> import into a new project -> export: unchanged."""
    source = (shared_datasets / "text" / name / "data.csv").read_bytes()
    schema = {
        "controls": [
            {
                "name": "label",
                "type": "choices",
                "source": "text",
                "classes": sorted({r["label"] for r in csv.DictReader(io.StringIO(source.decode()))}),
            }
        ]
    }
    first = _project(client, admin_token, f"{name}-1", schema)
    job = _upload(client, admin_token, first, [("data.csv", source)])
    n = sum(1 for _ in csv.DictReader(io.StringIO(source.decode())))
    assert job["result"]["created"] == n
    exported = client.get(f"/api/v1/projects/{first}/export", headers=auth(admin_token)).content
    second = _project(client, admin_token, f"{name}-2", schema)
    _upload(client, admin_token, second, [("export.jsonl", exported)])
    again = client.get(f"/api/v1/projects/{second}/export", headers=auth(admin_token)).content
    assert again == exported


def test_shared_ner_round_trip(client: Any, db: Any, admin_token: str, shared_datasets: Path) -> None:
    """wnut16 CoNLL -> import as annotations -> consensus -> CoNLL export -> import: same spans."""
    from labelmill.formats.conll import read_conll

    path = shared_datasets / "ner" / "wnut16" / "train.conll"
    classes = sorted(
        {
            line.split("\t")[1].strip()[2:]
            for line in path.read_text().splitlines()
            if "\t" in line and line.split("\t")[1].strip() != "O"
        }
    )
    schema = {"controls": [{"name": "entities", "type": "spans", "source": "text", "classes": classes}]}
    pid = _project(client, admin_token, "wnut", schema)
    from labelmill.services.ingest import import_records

    import_records(db, pid, read_conll(path, control="entities", target="annotations"))
    run_pending(db)
    r = client.get(f"/api/v1/projects/{pid}/export", params={"format": "conll"}, headers=auth(admin_token))
    assert r.status_code == 200
    original = [
        rec.annotations[0]["value"]["entities"]
        for rec in read_conll(path, control="entities", target="annotations")
    ]
    back = [
        rec.gold["entities"] if rec.gold else []
        for rec in read_conll(io.BytesIO(r.content), control="entities")
    ]
    strip = [[(s["start"], s["end"], s["label"]) for s in spans] for spans in original]
    assert [[(s["start"], s["end"], s["label"]) for s in spans] for spans in back] == strip
