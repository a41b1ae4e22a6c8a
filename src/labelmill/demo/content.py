"""The content of ``labelmill demo``: one small, real project per data type.

A first-time user should see every labeling interface with something worth labeling in it,
without a network connection or a dataset download. So everything here is either written by
hand (texts, sentences, prompt/response pairs, kept as JSON under ``labelmill/demo/data/``),
bundled with a dependency we already have (scikit-image and scikit-learn sample photographs) or
synthesised with fixed seeds (audio). Predictions are computed by deliberately tiny, honest rules
(a keyword count, a gazetteer) or come from the very parameters that generated the data, so what a
demo user sees as a model pre-label is what such a model would really say.

This module is a pure builder: it returns dataclasses of import lines (the JSONL shape of
``labelmill import``, see DESIGN.md) and media bytes; storing them is :func:`labelmill.demo.load_demo`'s
job.

Each data file holds a project's ``name``, ``description``, ``instructions`` (Markdown, one string
per line), ``schema`` and ``settings``, then its content. Item data shapes, one per project:

* text sentiment: ``{"text": str}``
* entities: ``{"text": str}``; span offsets count Unicode code points, end exclusive
* image boxes: ``{"image": "<media name>"}``, with
  ``meta = {"media": {"image": {"width": W, "height": H}}, "origin": ...}``
* audio segments: ``{"audio": "<media name>"}``, with
  ``meta = {"media": {"audio": {"duration": s, "sample_rate": 16000, "channels": 1}}}``
* LLM preference: ``{"prompt": str, "responses": [{"id": "a", "text": str}, {"id": "b", "text": str}]}``.
  The ``pairwise`` value's ``choice`` (``"a"``, ``"b"`` or ``"tie"``) names a response ``id``, so the
  same item also works with a ``ranking`` control (whose value lists these ids, best first).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATA_FILES", "DemoProject", "build_demo_projects", "demo_data", "keyword_sentiment"]

#: The data files, one per project, in the order the projects are built.
DATA_FILES = ("text_sentiment", "entities", "image_boxes", "audio_segments", "llm_preference")


@dataclass(frozen=True)
class DemoProject:
    """One demo project, ready to be created and filled through the ordinary import path."""

    name: str
    description: str
    instructions: str
    schema: dict[str, Any]
    settings: dict[str, Any]
    records: list[dict[str, Any]]
    media: dict[str, bytes]


@functools.cache
def _load(name: str) -> str:
    return (files("labelmill.demo") / "data" / f"{name}.json").read_text(encoding="utf-8")


def demo_data(name: str) -> dict[str, Any]:
    """The parsed data file ``labelmill/demo/data/<name>.json`` (a fresh copy each call)."""
    if name not in DATA_FILES:
        raise ValueError(f"no demo data file {name!r} (known: {', '.join(DATA_FILES)})")
    data: dict[str, Any] = json.loads(_load(name))
    return data


def _project(data: dict[str, Any], records: list[dict[str, Any]], media: dict[str, bytes]) -> DemoProject:
    return DemoProject(
        name=data["name"],
        description=data["description"],
        instructions="\n".join(data["instructions"]) + "\n",
        schema=data["schema"],
        settings=data["settings"],
        records=records,
        media=media,
    )


def build_demo_projects() -> list[DemoProject]:
    """Build the five demo projects; deterministic, no I/O beyond reading bundled data and images."""
    return [
        _text_sentiment_project(demo_data("text_sentiment")),
        _entities_project(demo_data("entities")),
        _image_boxes_project(demo_data("image_boxes")),
        _audio_segments_project(demo_data("audio_segments")),
        _llm_preference_project(demo_data("llm_preference")),
    ]


# ---------------------------------------------------------------------------------------------
# 1. Text sentiment: short customer messages, mixed tone on purpose (sarcasm, negation, mixed
#    feelings), which is what makes disagreement and consensus worth looking at.
# ---------------------------------------------------------------------------------------------


def keyword_sentiment(text: str, model: dict[str, Any] | None = None) -> tuple[str, float]:
    """The demo's 'model': count positive and negative keywords. Sarcasm and negation fool it."""
    model = model or demo_data("text_sentiment")["model"]
    positive, negative = set(model["positive_words"]), set(model["negative_words"])
    words = re.findall(r"[a-z']+", text.lower())
    pos = sum(w in positive for w in words)
    neg = sum(w in negative for w in words)
    if pos == neg:
        return "neutral", 0.5
    margin = abs(pos - neg)
    return ("pos" if pos > neg else "neg"), round(min(0.95, 0.6 + 0.15 * margin), 2)


def _text_sentiment_project(data: dict[str, Any]) -> DemoProject:
    gold: dict[str, str] = data["gold"]  # item index -> answer: items whose answer is not in doubt
    model = data["model"]
    records: list[dict[str, Any]] = []
    for i, text in enumerate(data["texts"]):
        record: dict[str, Any] = {"data": {"text": text}, "external_id": f"review-{i + 1:03d}"}
        if str(i) in gold:
            record["gold"] = {"sentiment": gold[str(i)]}
        elif i % 3 == 0:
            label, score = keyword_sentiment(text, model)
            record["predictions"] = [
                {"value": {"sentiment": label}, "score": score, "model_version": model["version"]}
            ]
        records.append(record)
    return _project(data, records, {})


# ---------------------------------------------------------------------------------------------
# 2. Entities and relations: each sentence lists its entities as [surface, label] in reading order
#    and its relations as [from entity index, to entity index, label]; offsets are computed, never
#    typed. The 'model' is a gazetteer: a few places and companies, no people or dates, so its
#    pre-labels are honest and visibly incomplete.
# ---------------------------------------------------------------------------------------------


def _locate_entities(text: str, entities: list[list[str]]) -> list[dict[str, Any]]:
    """Spans for entities listed in reading order, each searched after the previous one."""
    spans: list[dict[str, Any]] = []
    cursor = 0
    for n, (surface, label) in enumerate(entities, start=1):
        start = text.find(surface, cursor)
        if start < 0:
            raise ValueError(f"entity {surface!r} not found in {text!r} after offset {cursor}")
        end = start + len(surface)
        spans.append({"id": f"s{n}", "start": start, "end": end, "label": label})
        cursor = end
    return spans


def gazetteer_spans(text: str, gazetteer: dict[str, str]) -> list[dict[str, Any]]:
    """The spans of every gazetteer name found in ``text``, in text order."""
    found: list[tuple[int, int, str]] = []
    for surface, label in gazetteer.items():
        for match in re.finditer(re.escape(surface), text):
            found.append((match.start(), match.end(), label))
    found.sort()
    return [{"id": f"p{n}", "start": s, "end": e, "label": lab} for n, (s, e, lab) in enumerate(found, 1)]


def _entities_project(data: dict[str, Any]) -> DemoProject:
    gold = set(data["gold"])
    model = data["model"]
    records: list[dict[str, Any]] = []
    for i, sentence in enumerate(data["sentences"]):
        text = sentence["text"]
        record: dict[str, Any] = {"data": {"text": text}, "external_id": f"sentence-{i + 1:02d}"}
        if i in gold:
            spans = _locate_entities(text, sentence["entities"])
            record["gold"] = {
                "entities": spans,
                "relations": [
                    {"from": spans[a]["id"], "to": spans[b]["id"], "label": label}
                    for a, b, label in sentence["relations"]
                ],
            }
        else:
            predicted = gazetteer_spans(text, model["gazetteer"])
            if predicted:
                record["predictions"] = [
                    {"value": {"entities": predicted}, "score": 0.7, "model_version": model["version"]}
                ]
        records.append(record)
    return _project(data, records, {})


# ---------------------------------------------------------------------------------------------
# 3. Image boxes: each image names where its pixels come from ("skimage:<function>" or
#    "sklearn:<file>"), and carries boxes [x, y, w, h, label] drawn by hand; "pred" ones become a
#    prediction, "gold" ones the item's gold answer.
# ---------------------------------------------------------------------------------------------


def _pixels(source: str) -> np.ndarray:
    kind, _, name = source.partition(":")
    if kind == "skimage":
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())
    if kind == "sklearn":
        return _sklearn_sample(name)
    raise ValueError(f"demo image source {source!r}: expected skimage:<name> or sklearn:<file>")


def _sklearn_sample(filename: str) -> np.ndarray:
    """scikit-learn's bundled sample photograph, read without importing scikit-learn.

    Importing ``sklearn.datasets`` costs over a second; `labelmill demo` should start quickly.
    ``find_spec`` locates the installed package without running it.
    """
    from PIL import Image

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("scikit-learn is not installed; its sample images are part of the demo")
    with Image.open(Path(spec.origin).parent / "datasets" / "images" / filename) as image:
        return np.asarray(image.convert("RGB"))


def _encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=88)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_boxes_project(data: dict[str, Any]) -> DemoProject:
    model = data["model"]
    records: list[dict[str, Any]] = []
    media: dict[str, bytes] = {}
    for spec in data["images"]:
        pixels = _pixels(spec["pixels"])
        height, width = int(pixels.shape[0]), int(pixels.shape[1])
        media[spec["name"]] = _encode_image(pixels, spec["format"])
        record: dict[str, Any] = {
            "data": {"image": spec["name"]},
            "external_id": spec["name"].rsplit(".", 1)[0],
            "meta": {"media": {"image": {"width": width, "height": height}}, "origin": spec["origin"]},
        }
        boxes = [
            {"x": float(x), "y": float(y), "w": float(w), "h": float(h), "label": label}
            for x, y, w, h, label in spec["boxes"]
        ]
        if spec["use"] == "pred":
            record["predictions"] = [
                {"value": {"objects": boxes}, "score": 0.8, "model_version": model["version"]}
            ]
        elif spec["use"] == "gold":
            record["gold"] = {"objects": boxes}
        records.append(record)
    return _project(data, records, media)


# ---------------------------------------------------------------------------------------------
# 4. Audio segments: each clip is a list of [start, end, label] in seconds, covering the clip
#    without gaps. "tone" is a speech-like voiced sound (gliding pitch with harmonics and a
#    syllable-rate envelope), "noise" a broadband burst, "silence" digital silence.
# ---------------------------------------------------------------------------------------------

SAMPLE_RATE = 16_000
_FADE_SECONDS = 0.01


def _voiced_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like sound: a pitch glide with decaying harmonics, pulsed at syllable rate."""
    t = np.arange(n) / SAMPLE_RATE
    f0_start, f0_end = rng.uniform(110.0, 220.0, size=2)
    f0 = np.linspace(f0_start, f0_end, n)
    phase = 2.0 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllable_rate = rng.uniform(3.0, 5.0)
    envelope = 0.55 + 0.45 * np.sin(2.0 * np.pi * syllable_rate * t) ** 2
    return np.asarray(0.25 * wave * envelope)


def _noise_burst(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(rng.uniform(-0.3, 0.3, size=n))


def _synthesise(segments: list[tuple[float, float, str]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    total = round(segments[-1][1] * SAMPLE_RATE)
    signal = np.zeros(total)
    fade = round(_FADE_SECONDS * SAMPLE_RATE)
    for start, end, label in segments:
        a, b = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        if label == "silence":
            continue
        piece = _voiced_tone(b - a, rng) if label == "tone" else _noise_burst(b - a, rng)
        ramp = np.linspace(0.0, 1.0, fade)
        piece[:fade] *= ramp  # no clicks at the edges
        piece[-fade:] *= ramp[::-1]
        signal[a:b] = piece
    return signal


def _encode_wav(signal: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, signal, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _audio_segments_project(data: dict[str, Any]) -> DemoProject:
    model = data["model"]
    records: list[dict[str, Any]] = []
    media: dict[str, bytes] = {}
    for seed, clip in enumerate(data["clips"]):
        segments = [(float(s), float(e), str(label)) for s, e, label in clip["segments"]]
        signal = _synthesise(segments, seed)
        name = f"{clip['id']}.wav"
        media[name] = _encode_wav(signal)
        truth = [{"start": s, "end": e, "label": label} for s, e, label in segments]
        records.append(
            {
                "data": {"audio": name},
                "external_id": clip["id"],
                "meta": {
                    "media": {
                        "audio": {
                            "duration": len(signal) / SAMPLE_RATE,
                            "sample_rate": SAMPLE_RATE,
                            "channels": 1,
                        }
                    }
                },
                "predictions": [
                    {"value": {"sounds": truth}, "score": 0.9, "model_version": model["version"]}
                ],
            }
        )
    return _project(data, records, media)


# ---------------------------------------------------------------------------------------------
# 5. LLM pairwise preference: quality differences vary from obvious (a factual error) to matters
#    of taste, and the better answer is not always in the same position. Gold: items whose better
#    response is not a matter of opinion (a factual or safety error).
# ---------------------------------------------------------------------------------------------


def _llm_preference_project(data: dict[str, Any]) -> DemoProject:
    gold: dict[str, str] = data["gold"]
    records: list[dict[str, Any]] = []
    for i, pair in enumerate(data["pairs"]):
        record: dict[str, Any] = {
            "data": {
                "prompt": pair["prompt"],
                "responses": [{"id": "a", "text": pair["a"]}, {"id": "b", "text": pair["b"]}],
            },
            "external_id": f"pair-{i + 1:02d}",
            "meta": {"category": pair["category"]},
        }
        if str(i) in gold:
            record["gold"] = {"preference": {"choice": gold[str(i)]}}
        records.append(record)
    return _project(data, records, {})
