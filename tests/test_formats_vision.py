"""COCO, YOLO and Pascal VOC: our exports load in the real readers and round-trip through ours.

pycocotools (COCOeval) and supervision are test oracles: the dataset is a handful of generated
images with known boxes and polygons, so every number they report can be checked exactly.
"""

from __future__ import annotations

import json
import math
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from labelmill.formats import FormatError, export_annotation, export_consensus, export_prediction, export_row
from labelmill.formats.coco import COCO_EXPORTER, media_name, predictions_path, read_coco
from labelmill.formats.exporting import EXPORTERS, ExportContext, ExportOptions, get_exporter
from labelmill.formats.voc import VOC_EXPORTER, read_voc
from labelmill.formats.yolo import YOLO_EXPORTER, denormalise_box, normalise_box, read_yolo
from labelmill.schema import parse_schema, validate_value

Image = pytest.importorskip("PIL.Image")

PROJECT = "demo"
SIZES = {"a.png": (64, 48), "b.jpg": (80, 60), "c.png": (100, 50), "d.png": (40, 40)}
BOXES: dict[str, list[dict[str, Any]]] = {
    "a.png": [{"x": 4.0, "y": 6.0, "w": 20.0, "h": 10.0, "label": "cat"}],
    "b.jpg": [
        {"x": 10.5, "y": 5.25, "w": 30.0, "h": 40.0, "label": "dog"},
        {"x": 50.0, "y": 10.0, "w": 20.0, "h": 20.0, "label": "cat"},
    ],
    "c.png": [{"x": 0.0, "y": 0.0, "w": 100.0, "h": 50.0, "label": "dog"}],
    "d.png": [],
}
POLYGONS: dict[str, list[dict[str, Any]]] = {
    "a.png": [{"points": [[4.0, 6.0], [30.0, 6.0], [30.0, 30.0], [4.0, 30.0]], "label": "road"}],
    "b.jpg": [{"points": [[10.0, 10.0], [60.0, 15.0], [30.0, 50.0]], "label": "sky"}],
    "c.png": [
        {"points": [[5.0, 5.0], [90.0, 5.0], [90.0, 45.0], [50.0, 30.0], [5.0, 45.0]], "label": "road"},
        {"points": [[60.0, 2.0], [70.0, 2.0], [65.0, 12.0]], "label": "sky"},
    ],
    "d.png": [],
}
BOX_SCHEMA = {
    "controls": [{"name": "objects", "type": "boxes", "source": "image", "classes": ["cat", "dog"]}]
}
POLY_SCHEMA = {
    "controls": [{"name": "regions", "type": "polygons", "source": "image", "classes": ["road", "sky"]}]
}


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """Generated images, with each box drawn so a viewer would see the labels."""
    folder = tmp_path / "media"
    folder.mkdir()
    for name, (w, h) in SIZES.items():
        image = Image.new("RGB", (w, h), (30, 30, 30))
        for box in BOXES[name]:
            x, y = int(box["x"]), int(box["y"])
            image.paste((200, 80, 40), (x, y, x + int(box["w"]), y + int(box["h"])))
        image.save(folder / name)
    return folder


def _ctx(schema: dict[str, Any], media: Path, **options: Any) -> ExportContext:
    def media_path(ref: str) -> Path | None:
        if not ref.startswith(f"media://{PROJECT}/"):
            return None
        path = media / media_name(ref)
        return path if path.exists() else None

    return ExportContext(
        schema=parse_schema(schema),
        options=ExportOptions(**options),
        media_path=media_path,
        project_name=PROJECT,
    )


def _rows(
    control: str, labels: dict[str, list[dict[str, Any]]], predictions: Any = None
) -> Iterator[dict[str, Any]]:
    for name, (w, h) in SIZES.items():
        value = {control: labels[name]}
        preds = []
        if predictions is not None:
            preds = [export_prediction({control: predictions(labels[name])}, 0.8, "m1")]
        yield export_row(
            name,
            {"image": f"media://{PROJECT}/{name}"},
            predictions=preds,
            consensus=export_consensus(value, 0.9, "mv"),
            meta={"media": {"image": {"width": w, "height": h}}},
        )


def _shift(boxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Boxes moved by a third of their width: a prediction that is wrong at IoU 0.5."""
    return [{**b, "x": b["x"] + b["w"] / 3} for b in boxes]


def _xyxy(box: dict[str, Any]) -> list[float]:
    return [box["x"], box["y"], box["x"] + box["w"], box["y"] + box["h"]]


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def test_registry_names_resolve() -> None:
    for name in ("coco", "yolo", "voc"):
        exporter = get_exporter(name)
        assert exporter.name == name
        assert EXPORTERS[name].endswith(f":{name.upper()}_EXPORTER")
    assert (COCO_EXPORTER.target, YOLO_EXPORTER.target, VOC_EXPORTER.target) == ("file", "folder", "folder")


# --------------------------------------------------------------------------- COCO


def _coco_eval(gt: Path, results: Path, iou_type: str) -> float:
    cocotools = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    truth = cocotools.COCO(str(gt))
    evaluation = cocoeval.COCOeval(truth, truth.loadRes(str(results)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


def test_coco_boxes_load_in_pycocotools_and_evaluate(media: Path, tmp_path: Path) -> None:
    cocotools = pytest.importorskip("pycocotools.coco")
    ctx = _ctx(BOX_SCHEMA, media, include_predictions=True)
    out = tmp_path / "perfect" / "instances.json"
    assert COCO_EXPORTER.write(_rows("objects", BOXES, lambda b: b), out, ctx) == 4
    coco = cocotools.COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog"]
    images = coco.loadImgs(coco.getImgIds())
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in images] == [
        (n + 1, name, *SIZES[name]) for n, name in enumerate(SIZES)
    ]
    assert images[1]["consensus"] == {"confidence": 0.9, "method": "mv", "auto": False}
    for image in images:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        expected = BOXES[image["file_name"]]
        assert [a["bbox"] for a in anns] == [[b["x"], b["y"], b["w"], b["h"]] for b in expected]
        assert [coco.cats[a["category_id"]]["name"] for a in anns] == [b["label"] for b in expected]
        assert all(a["area"] == a["bbox"][2] * a["bbox"][3] and "score" not in a for a in anns)
    results = json.loads(predictions_path(out).read_text())
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score", "model_version"}
    assert {r["score"] for r in results} == {0.8}
    assert _coco_eval(out, predictions_path(out), "bbox") == pytest.approx(1.0)

    shifted = tmp_path / "shifted" / "instances.json"
    COCO_EXPORTER.write(_rows("objects", BOXES, _shift), shifted, ctx)
    assert _coco_eval(shifted, predictions_path(shifted), "bbox") < 0.5


def test_coco_polygons_segm_evaluation(media: Path, tmp_path: Path) -> None:
    ctx = _ctx(POLY_SCHEMA, media, include_predictions=True)
    out = tmp_path / "regions.json"
    COCO_EXPORTER.write(_rows("regions", POLYGONS, lambda p: p), out, ctx)
    doc = json.loads(out.read_text())
    first = doc["annotations"][0]
    assert first["segmentation"] == [[4.0, 6.0, 30.0, 6.0, 30.0, 30.0, 4.0, 30.0]]
    assert first["bbox"] == [4.0, 6.0, 26.0, 24.0] and first["area"] == 26.0 * 24.0
    triangle = doc["annotations"][1]
    assert triangle["area"] == pytest.approx(abs((60 - 10) * (50 - 10) - (30 - 10) * (15 - 10)) / 2)
    assert _coco_eval(out, predictions_path(out), "segm") == pytest.approx(1.0)
    assert _coco_eval(out, predictions_path(out), "bbox") == pytest.approx(1.0)

    def moved(polygons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**p, "points": [[x + 8, y] for x, y in p["points"]]} for p in polygons]

    COCO_EXPORTER.write(_rows("regions", POLYGONS, moved), out, ctx)
    assert _coco_eval(out, predictions_path(out), "segm") < 1.0


def test_coco_keypoints_choices_and_annotations_mode(media: Path, tmp_path: Path) -> None:
    schema = {
        "controls": [
            {"name": "objects", "type": "boxes", "source": "image", "classes": ["cat", "dog"]},
            {"name": "pose", "type": "keypoints", "source": "image", "classes": ["nose", "tail"]},
            {"name": "scene", "type": "choices", "source": "image", "classes": ["in", "out"]},
            {"name": "caption", "type": "text", "source": "text"},
        ]
    }
    value = {
        "objects": BOXES["b.jpg"],
        "pose": [
            {"x": 5.0, "y": 6.0, "label": "nose"},
            {"x": 20.0, "y": 16.0, "label": "tail"},
            {"x": 40.0, "y": 30.0, "label": "nose"},
        ],
        "scene": "out",
    }
    assert validate_value(parse_schema(schema), value) == []
    row = export_row(
        "b",
        {"image": f"media://{PROJECT}/b.jpg"},
        annotations=[export_annotation("ann1", value), export_annotation("ann2", {"scene": "in"})],
        consensus=export_consensus(value, 0.7, "ds", auto=True),
        meta={"media": {"image": {"width": 80, "height": 60}}},
    )
    out = tmp_path / "kp.json"
    assert COCO_EXPORTER.write([row], out, _ctx(schema, media)) == 1
    doc = json.loads(out.read_text())
    assert doc["categories"][2] == {
        "id": 3,
        "name": "pose",
        "supercategory": "pose",
        "keypoints": ["nose", "tail"],
        "skeleton": [],
    }
    people = [a for a in doc["annotations"] if a["category_id"] == 3]
    assert [p["keypoints"] for p in people] == [[5.0, 6.0, 2, 20.0, 16.0, 2], [40.0, 30.0, 2, 0, 0, 0]]
    assert [p["num_keypoints"] for p in people] == [2, 1]
    assert people[0]["bbox"] == [5.0, 6.0, 15.0, 10.0]
    assert doc["images"][0]["labels"] == {"scene": "out"}
    assert doc["images"][0]["consensus"]["auto"] is True
    assert doc["info"]["labelmill"]["items"] == 1

    assert COCO_EXPORTER.write([row], out, _ctx(schema, media, include_auto=False)) == 0
    assert json.loads(out.read_text())["info"]["labelmill"]["skipped_unlabelled"] == 1

    COCO_EXPORTER.write([row], out, _ctx(schema, media, labels="annotations"))
    doc = json.loads(out.read_text())
    assert doc["images"][0]["labels"] == {
        "scene": [{"annotator": "ann1", "value": "out"}, {"annotator": "ann2", "value": "in"}]
    }
    assert {a["annotator"] for a in doc["annotations"]} == {"ann1"}


def test_coco_loads_in_supervision(media: Path, tmp_path: Path) -> None:
    sv = pytest.importorskip("supervision")
    out = tmp_path / "instances.json"
    COCO_EXPORTER.write(_rows("objects", BOXES), out, _ctx(BOX_SCHEMA, media))
    dataset = sv.DetectionDataset.from_coco(images_directory_path=str(media), annotations_path=str(out))
    assert dataset.classes == ["cat", "dog"]
    for path, detections in dataset.annotations.items():
        expected = BOXES[Path(path).name]
        assert len(detections) == len(expected)
        for xyxy, class_id, box in zip(detections.xyxy, detections.class_id, expected, strict=True):
            assert max(abs(float(a) - b) for a, b in zip(xyxy, _xyxy(box), strict=True)) <= 1
            assert dataset.classes[int(class_id)] == box["label"]


def test_coco_round_trip_through_read_coco(media: Path, tmp_path: Path) -> None:
    out = media / "instances.json"  # next to the images, as datasets usually ship
    COCO_EXPORTER.write(
        _rows("objects", BOXES, _shift), out, _ctx(BOX_SCHEMA, media, include_predictions=True)
    )
    records = list(read_coco(out, control="objects", results=predictions_path(out)))
    assert [r.external_id for r in records] == list(SIZES)
    for record in records:
        name = record.data["image"]
        assert record.gold == {"objects": BOXES[name]}
        assert record.meta == {"media": {"image": {"width": SIZES[name][0], "height": SIZES[name][1]}}}
        assert record.media_files == [("image", (media / name).resolve())]
        if BOXES[name]:
            (prediction,) = record.predictions
            assert prediction["model_version"] == "m1" and prediction["score"] == pytest.approx(0.8)
            assert prediction["value"] == {"objects": _shift(BOXES[name])}
        else:
            assert record.predictions == []
    schema = parse_schema(BOX_SCHEMA)
    for record in records:
        assert record.gold is not None and record.meta is not None
        assert validate_value(schema, record.gold, media=record.meta["media"]) == []

    poly_out = media / "regions.json"
    COCO_EXPORTER.write(_rows("regions", POLYGONS), poly_out, _ctx(POLY_SCHEMA, media))
    as_polygons = list(read_coco(poly_out, control="regions", shape="polygons", target="annotations"))
    assert [r.annotations[0]["value"]["regions"] for r in as_polygons] == [POLYGONS[n] for n in SIZES]
    as_boxes = list(read_coco(poly_out, control="r", target="predictions"))
    assert as_boxes[0].predictions[0]["value"]["r"] == [
        {"x": 4.0, "y": 6.0, "w": 26.0, "h": 24.0, "label": "road"}
    ]


def test_coco_reader_errors_name_file_and_field(tmp_path: Path) -> None:
    doc = {
        "images": [{"id": 1, "file_name": "x.png", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 3]}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"^instances\.json:0: annotations\[0\]\.bbox: width must be > 0$"):
        list(read_coco(path, control="objects"))
    doc["annotations"][0].update(bbox=[1, 1, 2, 3], category_id=7)
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"annotations\[0\]\.category_id: no category with id 7"):
        list(read_coco(path, control="objects"))
    path.write_text("[]")
    with pytest.raises(FormatError, match="results list"):
        list(read_coco(path, control="objects"))
    path.write_text("{")
    with pytest.raises(FormatError, match=r"instances\.json:1: invalid JSON"):
        list(read_coco(path, control="objects"))


def test_coco_export_streams_in_flat_memory(tmp_path: Path) -> None:
    """Memory must not grow with the item count: rows come from a generator and go straight out."""
    ctx = ExportContext(schema=parse_schema(BOX_SCHEMA))
    box = [{"x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0, "label": "cat"}] * 3

    def rows(n: int) -> Iterator[dict[str, Any]]:
        for i in range(n):
            yield {
                "external_id": str(i),
                "data": {"image": f"https://example.org/img/{i}.jpg"},
                "consensus": {"value": {"objects": box}, "confidence": 1.0, "method": "mv", "auto": False},
                "meta": {"media": {"image": {"width": 64, "height": 64}}},
            }

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            assert COCO_EXPORTER.write(rows(n), tmp_path / f"{n}.json", ctx) == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(500), peak(5000)
    assert large < small + 512 * 1024, (small, large)
    doc = json.loads((tmp_path / "5000.json").read_text())
    assert len(doc["images"]) == 5000 and len(doc["annotations"]) == 15000
    assert doc["images"][0]["file_name"] == "0.jpg" and doc["annotations"][-1]["id"] == 15000


# --------------------------------------------------------------------------- YOLO


def test_yolo_detection_export_matches_the_spec(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    rows = [*_rows("objects", BOXES)]
    rows.append(export_row("nosize", {"image": "https://example.org/e.jpg"}, consensus=rows[0]["consensus"]))
    remote = export_row("remote", {"image": "https://example.org/f.jpg"}, consensus=rows[0]["consensus"])
    rows.append({**remote, "meta": {"media": {"image": {"width": 64, "height": 48}}}})
    rows.append(export_row("unlabelled", {"image": f"media://{PROJECT}/a.png"}))
    assert YOLO_EXPORTER.write(rows, out, _ctx(BOX_SCHEMA, media)) == 5
    config_text = (out / "data.yaml").read_text()
    config = yaml.safe_load(config_text)
    assert config["names"] == {0: "cat", 1: "dog"}
    assert (config["train"], config["val"], config["path"]) == ("images", "images", str(out.resolve()))
    assert "1 items were skipped: their image size is unknown" in config_text
    assert "1 items were skipped: they have no label" in config_text
    assert "1 images are not stored locally and were not copied" in config_text
    assert (out / "labels" / "f.txt").read_text() == (out / "labels" / "a.txt").read_text()
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(SIZES)
    assert (out / "labels" / "d.txt").read_text() == ""
    for name, (w, h) in SIZES.items():
        lines = (out / "labels" / f"{Path(name).stem}.txt").read_text().splitlines()
        assert len(lines) == len(BOXES[name])
        for line, box in zip(lines, BOXES[name], strict=True):
            class_id, *coords = line.split()
            assert config["names"][int(class_id)] == box["label"]
            expected = (
                (box["x"] + box["w"] / 2) / w,
                (box["y"] + box["h"] / 2) / h,
                box["w"] / w,
                box["h"] / h,
            )
            assert all(
                0 <= float(c) <= 1 and _close(float(c), e) for c, e in zip(coords, expected, strict=True)
            )

    records = list(read_yolo(out, control="objects"))
    assert [r.external_id for r in records] == sorted(SIZES)
    for record in records:
        assert record.gold is not None
        got, want = record.gold["objects"], BOXES[record.data["image"]]
        assert len(got) == len(want)
        for g, b in zip(got, want, strict=True):
            assert g["label"] == b["label"]
            assert all(_close(g[k], b[k]) for k in ("x", "y", "w", "h")), (g, b)
        assert record.meta == {
            "media": {"image": dict(zip(("width", "height"), SIZES[record.data["image"]], strict=True))}
        }


def test_yolo_loads_in_supervision(media: Path, tmp_path: Path) -> None:
    sv = pytest.importorskip("supervision")
    out = tmp_path / "yolo"
    YOLO_EXPORTER.write(_rows("objects", BOXES), out, _ctx(BOX_SCHEMA, media))
    dataset = sv.DetectionDataset.from_yolo(
        images_directory_path=str(out / "images"),
        annotations_directory_path=str(out / "labels"),
        data_yaml_path=str(out / "data.yaml"),
    )
    assert dataset.classes == ["cat", "dog"]
    assert len(dataset.annotations) == 4
    for path, detections in dataset.annotations.items():
        expected = BOXES[Path(path).name]
        assert len(detections) == len(expected)
        for xyxy, class_id, box in zip(detections.xyxy, detections.class_id, expected, strict=True):
            assert max(abs(float(a) - b) for a, b in zip(xyxy, _xyxy(box), strict=True)) <= 1
            assert dataset.classes[int(class_id)] == box["label"]


def test_yolo_segmentation_when_only_polygons(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    YOLO_EXPORTER.write(_rows("regions", POLYGONS), out, _ctx(POLY_SCHEMA, media))
    assert "segment" in (out / "data.yaml").read_text().splitlines()[0]
    first = (out / "labels" / "a.txt").read_text().split()
    assert first[0] == "0" and len(first) == 9
    assert float(first[1]) == pytest.approx(4 / 64) and float(first[2]) == pytest.approx(6 / 48)
    records = list(read_yolo(out, control="regions", target="predictions", model_version="v2"))
    for record in records:
        (prediction,) = record.predictions
        assert prediction["model_version"] == "v2" and prediction["score"] is None
        got = prediction["value"]["regions"]
        want = POLYGONS[record.data["image"]]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        for g, w in zip(got, want, strict=True):
            assert all(
                _close(a, b)
                for gp, wp in zip(g["points"], w["points"], strict=True)
                for a, b in zip(gp, wp, strict=True)
            )
    boxes = list(read_yolo(out, control="regions", shape="boxes"))
    assert boxes[0].gold == {"regions": [{"x": 4.0, "y": 6.0, "w": 26.0, "h": 24.0, "label": "road"}]}


def test_yolo_reader_scores_and_errors(media: Path, tmp_path: Path) -> None:
    root = tmp_path / "pred"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (100, 50)).save(root / "images" / "x.png")
    (root / "labels" / "x.txt").write_text("1 0.5 0.5 0.2 0.4 0.9\n0 0.25 0.5 0.1 0.2 0.5\n")
    (record,) = read_yolo(root, control="objects", class_names=["cat", "dog"], target="predictions")
    assert record.predictions[0]["score"] == pytest.approx(0.7)
    assert record.predictions[0]["value"]["objects"][0] == pytest.approx(
        {"x": 40.0, "y": 15.0, "w": 20.0, "h": 20.0, "label": "dog"}
    )
    with pytest.raises(FormatError, match=r"^pred:0: data\.yaml: missing"):
        list(read_yolo(root, control="objects"))
    (root / "labels" / "x.txt").write_text("0 0.5 0.5 0.2 0.4\n5 0.5 0.5 0.2 0.4\n")
    with pytest.raises(FormatError, match=r"^pred/labels/x\.txt:2: class: class id 5 is not one of 0\.\.1$"):
        list(read_yolo(root, control="objects", class_names=["cat", "dog"]))
    (root / "labels" / "x.txt").write_text("0 0.5 1.5 0.2 0.4\n")
    with pytest.raises(FormatError, match=r"x\.txt:1: normalised coordinates must lie in \[0, 1\]"):
        list(read_yolo(root, control="objects", class_names=["cat", "dog"]))


sides = st.floats(min_value=1.0, max_value=10_000.0, allow_nan=False)


@given(
    width=sides,
    height=sides,
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
    fw=st.floats(1e-3, 1),
    fh=st.floats(1e-3, 1),
)
def test_yolo_normalise_round_trip(
    width: float, height: float, fx: float, fy: float, fw: float, fh: float
) -> None:
    w, h = fw * width, fh * height
    x, y = fx * (width - w), fy * (height - h)
    cx, cy, nw, nh = normalise_box(x, y, w, h, width, height)
    assert all(-1e-12 <= v <= 1 + 1e-12 for v in (cx, cy, nw, nh))
    back = denormalise_box(cx, cy, nw, nh, width, height)
    for got, want, side in zip(back, (x, y, w, h), (width, height, width, height), strict=True):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9 * side)


# --------------------------------------------------------------------------- Pascal VOC


def test_voc_export_is_one_based_and_loads_in_supervision(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "voc"
    assert VOC_EXPORTER.write(_rows("objects", BOXES), out, _ctx(BOX_SCHEMA, media)) == 4
    assert (out / "ImageSets" / "Main" / "default.txt").read_text().split() == ["a", "b", "c", "d"]
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == sorted(SIZES)
    root = ET.parse(out / "Annotations" / "a.xml").getroot()
    assert root.findtext("filename") == "a.png"
    assert (root.findtext("size/width"), root.findtext("size/height")) == ("64", "48")
    bndbox = root.find("object/bndbox")
    assert bndbox is not None
    assert [bndbox.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")] == ["5", "7", "24", "16"]

    sv = pytest.importorskip("supervision")
    dataset = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(out / "JPEGImages"), annotations_directory_path=str(out / "Annotations")
    )
    assert len(dataset.annotations) == 4
    for path, detections in dataset.annotations.items():
        expected = BOXES[Path(path).name]
        assert len(detections) == len(expected)
        for xyxy, class_id, box in zip(detections.xyxy, detections.class_id, expected, strict=True):
            assert max(abs(float(a) - b) for a, b in zip(xyxy, _xyxy(box), strict=True)) <= 1e-4
            assert dataset.classes[int(class_id)] == box["label"]

    records = list(read_voc(out, control="objects"))
    assert [r.external_id for r in records] == ["a", "b", "c", "d"]
    for record in records:
        name = record.data["image"]
        assert record.gold == {"objects": BOXES[name]}
        assert record.media_files == [("image", (out / "JPEGImages" / name).resolve())]
        assert record.meta == {"media": {"image": {"width": SIZES[name][0], "height": SIZES[name][1]}}}


def test_voc_polygons_round_trip(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "voc"
    VOC_EXPORTER.write(_rows("regions", POLYGONS), out, _ctx(POLY_SCHEMA, media))
    root = ET.parse(out / "Annotations" / "b.xml").getroot()
    assert root.findtext("segmented") == "1"
    assert root.findtext("object/polygon/x1") == "11" and root.findtext("object/polygon/y3") == "51"
    records = list(read_voc(out, control="regions", target="annotations", annotator="voc-import"))
    assert [r.annotations for r in records] == [
        [{"annotator": "voc-import", "value": {"regions": POLYGONS[name]}}] for name in sorted(SIZES)
    ]
    sv = pytest.importorskip("supervision")
    dataset = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(out / "JPEGImages"), annotations_directory_path=str(out / "Annotations")
    )
    detections = dataset.annotations[str(out / "JPEGImages" / "c.png")]
    assert detections.mask is not None and detections.mask.shape == (2, 50, 100)


def test_voc_reader_errors(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    (folder / "Annotations").mkdir(parents=True)
    (folder / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><object><name>cat</name></object></annotation>"
    )
    with pytest.raises(FormatError, match=r"^bad/Annotations/x\.xml:1: object\[0\]\.bndbox: missing$"):
        list(read_voc(folder, control="objects"))
    (folder / "Annotations" / "x.xml").write_text("<annotation><object>")
    with pytest.raises(FormatError, match="not valid XML"):
        list(read_voc(folder, control="objects"))
    with pytest.raises(FormatError, match="Annotations: missing"):
        list(read_voc(tmp_path, control="objects"))
