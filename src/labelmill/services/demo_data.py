"""The content of ``labelmill demo``: one small, real project per data type.

A first-time user should see every labeling interface with something worth labeling in it,
without a network connection or a dataset download. So everything here is either written by
hand (texts, sentences, prompt/response pairs), bundled with a dependency we already have
(scikit-image and scikit-learn sample photographs) or synthesised with fixed seeds (audio).
Predictions are computed by deliberately tiny, honest rules (a keyword count, a gazetteer)
or come from the very parameters that generated the data, so what a demo user sees as a
model pre-label is what such a model would really say.

This module is a pure builder: it returns dataclasses of import lines (the JSONL shape of
``labelmill import``, see DESIGN.md) and media bytes; storing them is the caller's job.

Item data shapes, one per project:

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

import importlib.util
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoProject", "build_demo_projects"]


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


def build_demo_projects() -> list[DemoProject]:
    """Build the five demo projects; deterministic, no I/O beyond reading bundled sample images."""
    return [
        _text_sentiment_project(),
        _entities_project(),
        _image_boxes_project(),
        _audio_segments_project(),
        _llm_preference_project(),
    ]


# ---------------------------------------------------------------------------------------------
# 1. Text sentiment
# ---------------------------------------------------------------------------------------------

#: Short customer messages written for the demo. Mixed tone on purpose: some are easy, some need
#: reading past a single keyword (sarcasm, negation, mixed feelings), which is what makes
#: disagreement and consensus worth looking at.
_SENTIMENT_TEXTS: list[str] = [
    "The blender arrived a day early and crushes ice like a champ. Love it!",
    "Stopped charging after two weeks. Really disappointed.",
    "Can you tell me when the store on Baker Street opens on Sundays?",
    "Great price, great quality, and the support team answered within minutes.",
    "The zipper broke the first time I used the bag. Terrible.",
    "I ordered the blue one but received grey. Not a big deal, it looks fine.",
    "Oh wonderful, another update that logs me out every hour.",
    "My package says delivered but it is not here. Please help.",
    "Honestly the best headphones I have owned. The noise cancelling is excellent.",
    "It works. Nothing special, nothing wrong.",
    "Refund processed quickly, thank you for making this painless.",
    "The manual is in a language I cannot read and the diagrams are useless.",
    "Is this jacket machine washable?",
    "Not bad at all for the price, though the lid is a bit loose.",
    "Worst customer service I have ever dealt with. Three calls, no answer.",
    "The plant arrived healthy and well packed 🌱 very happy!",
    "I would like to change the delivery address on order 4471.",
    "The screen is gorgeous but the battery barely lasts a morning.",
    "Five stars. My kids use it every day and it still looks new.",
    "Cheap plastic, feels like it will break any minute. Returning it.",
    "The app is fine, I just wish it had a dark mode.",
    "Thanks! The replacement part fixed the problem.",
    "Delivery took three weeks and nobody replied to my emails.",
    "The recipe book has nice photos. Haven't cooked from it yet.",
    "Absolutely delighted with the custom frame, the colours are perfect.",
    "The mattress smells strongly of chemicals even after a week. Awful.",
    "Could you send me an invoice with my company name on it?",
    "Not the worst purchase, not the best either.",
    "Superb build, quiet motor, easy to clean. Highly recommend.",
    "Broken on arrival and the return label does not work.",
]

#: Three items whose answer is not in doubt: gold for measuring annotators.
_SENTIMENT_GOLD: dict[int, str] = {3: "pos", 14: "neg", 12: "neutral"}

_POSITIVE_WORDS = frozenset(
    {"love", "great", "excellent", "best", "happy", "delighted", "perfect", "superb", "recommend"}
    | {"thanks", "thank", "quickly"}
)
_NEGATIVE_WORDS = frozenset(
    {"disappointed", "broke", "broken", "terrible", "worst", "useless", "awful", "cheap", "returning"}
    | {"nobody", "loose"}
)
_KEYWORD_MODEL = "demo-keywords-1"


def _keyword_sentiment(text: str) -> tuple[str, float]:
    """The demo's 'model': count positive and negative keywords. Sarcasm and negation fool it."""
    words = re.findall(r"[a-z']+", text.lower())
    pos = sum(w in _POSITIVE_WORDS for w in words)
    neg = sum(w in _NEGATIVE_WORDS for w in words)
    if pos == neg:
        return "neutral", 0.5
    margin = abs(pos - neg)
    return ("pos" if pos > neg else "neg"), round(min(0.95, 0.6 + 0.15 * margin), 2)


def _text_sentiment_project() -> DemoProject:
    records: list[dict[str, Any]] = []
    for i, text in enumerate(_SENTIMENT_TEXTS):
        record: dict[str, Any] = {"data": {"text": text}, "external_id": f"review-{i + 1:03d}"}
        if i in _SENTIMENT_GOLD:
            record["gold"] = {"sentiment": _SENTIMENT_GOLD[i]}
        elif i % 3 == 0:
            label, score = _keyword_sentiment(text)
            record["predictions"] = [
                {"value": {"sentiment": label}, "score": score, "model_version": _KEYWORD_MODEL}
            ]
        records.append(record)
    return DemoProject(
        name="Demo: text sentiment",
        description="Short product reviews and support messages to sort by sentiment.",
        instructions=(
            "# Sentiment\n\n"
            "Choose how the writer feels about the product or service:\n\n"
            "- **pos**: satisfied, pleased, recommends it.\n"
            "- **neg**: unhappy, complaining, returning it. Sarcasm counts as negative.\n"
            "- **neutral**: a question, a request or a plain statement; also an even mix.\n\n"
            "Some items show a pre-label from a simple keyword model. It is often wrong: check it.\n"
        ),
        schema={
            "controls": [
                {
                    "name": "sentiment",
                    "type": "choices",
                    "source": "text",
                    "classes": ["pos", "neg", "neutral"],
                }
            ]
        },
        settings={"overlap": 3, "gold_rate": 0.1},
        records=records,
        media={},
    )


# ---------------------------------------------------------------------------------------------
# 2. Entities and relations
# ---------------------------------------------------------------------------------------------

#: (sentence, entities as (surface string, label) in reading order, relations as
#: (from entity index, to entity index, label)). Offsets are computed, never typed.
_NER_SENTENCES: list[tuple[str, list[tuple[str, str]], list[tuple[int, int, str]]]] = [
    (
        "Maria Chen joined Northwind Robotics in Lisbon on 3 March 2021.",
        [("Maria Chen", "PER"), ("Northwind Robotics", "ORG"), ("Lisbon", "LOC"), ("3 March 2021", "DATE")],
        [(0, 1, "works_for"), (1, 2, "located_in")],
    ),
    (
        "José Álvarez is the head of research at Tidewater Labs in São Paulo.",
        [("José Álvarez", "PER"), ("Tidewater Labs", "ORG"), ("São Paulo", "LOC")],
        [(0, 1, "works_for"), (1, 2, "located_in")],
    ),
    (
        "Greenfield Bank was founded in 1952 in Zürich.",
        [("Greenfield Bank", "ORG"), ("1952", "DATE"), ("Zürich", "LOC")],
        [(0, 1, "founded_on"), (0, 2, "located_in")],
    ),
    (
        "On Friday, Aisha Okafor presented the results to the board of Bluepeak Energy.",
        [("Friday", "DATE"), ("Aisha Okafor", "PER"), ("Bluepeak Energy", "ORG")],
        [(1, 2, "works_for")],
    ),
    (
        "The Harbor Museum in Valletta reopens in June 2025 after renovation.",
        [("Harbor Museum", "ORG"), ("Valletta", "LOC"), ("June 2025", "DATE")],
        [(0, 1, "located_in")],
    ),
    (
        "Tomasz Nowak, a nurse at St. Brigid Hospital, ran the Kraków marathon last spring.",
        [("Tomasz Nowak", "PER"), ("St. Brigid Hospital", "ORG"), ("Kraków", "LOC"), ("last spring", "DATE")],
        [(0, 1, "works_for")],
    ),
    (
        "Orchid Software opened a second office in Nairobi in 2019.",
        [("Orchid Software", "ORG"), ("Nairobi", "LOC"), ("2019", "DATE")],
        [(0, 1, "located_in")],
    ),
    (
        "Priya Raman and Lars Eriksen co-founded Fjordline Analytics in Bergen.",
        [("Priya Raman", "PER"), ("Lars Eriksen", "PER"), ("Fjordline Analytics", "ORG"), ("Bergen", "LOC")],
        [(0, 2, "works_for"), (1, 2, "works_for"), (2, 3, "located_in")],
    ),
    (
        "The city council of Ghent approved the new bike lanes on 12 October.",
        [("Ghent", "LOC"), ("12 October", "DATE")],
        [],
    ),
    (
        "Kenji Watanabe left Copperleaf Games in 2023 to teach in Osaka.",
        [("Kenji Watanabe", "PER"), ("Copperleaf Games", "ORG"), ("2023", "DATE"), ("Osaka", "LOC")],
        [(0, 1, "works_for")],
    ),
    (
        "Sunrise Bakery, based in Montréal, now ships to every province.",
        [("Sunrise Bakery", "ORG"), ("Montréal", "LOC")],
        [(0, 1, "located_in")],
    ),
    (
        "Elena Petrova will chair the Baltic Climate Forum in Riga next week.",
        [("Elena Petrova", "PER"), ("Baltic Climate Forum", "ORG"), ("Riga", "LOC"), ("next week", "DATE")],
        [(1, 2, "located_in")],
    ),
    (
        "Last year Rivera & Sons moved its warehouse from Porto to Braga.",
        [("Last year", "DATE"), ("Rivera & Sons", "ORG"), ("Porto", "LOC"), ("Braga", "LOC")],
        [(1, 3, "located_in")],
    ),
    (
        "Dr. Amara Diallo has worked at the Institute for Ocean Studies since 2015.",
        [("Amara Diallo", "PER"), ("Institute for Ocean Studies", "ORG"), ("2015", "DATE")],
        [(0, 1, "works_for")],
    ),
    (
        "Heavy snow closed the mountain pass near Innsbruck on Tuesday.",
        [("Innsbruck", "LOC"), ("Tuesday", "DATE")],
        [],
    ),
    (
        "Lumen Optics hired Sofia Marino as chief engineer in January.",
        [("Lumen Optics", "ORG"), ("Sofia Marino", "PER"), ("January", "DATE")],
        [(1, 0, "works_for")],
    ),
    (
        "The Lisbon office of Northwind Robotics hosts an open day every May.",
        [("Lisbon", "LOC"), ("Northwind Robotics", "ORG"), ("May", "DATE")],
        [(1, 0, "located_in")],
    ),
    (
        "Ahmed Karimi, who grew up in Tabriz, now coaches at Cedar Valley College.",
        [("Ahmed Karimi", "PER"), ("Tabriz", "LOC"), ("Cedar Valley College", "ORG")],
        [(0, 2, "works_for")],
    ),
    (
        "Bright Harvest Co-op was registered in Accra on 1 July 2018.",
        [("Bright Harvest Co-op", "ORG"), ("Accra", "LOC"), ("1 July 2018", "DATE")],
        [(0, 1, "located_in"), (0, 2, "founded_on")],
    ),
    (
        "Nobody at Greenfield Bank expected Hannah Weber to resign in December.",
        [("Greenfield Bank", "ORG"), ("Hannah Weber", "PER"), ("December", "DATE")],
        [(1, 0, "works_for")],
    ),
]

_NER_GOLD = frozenset({0, 2, 7, 12, 18})

#: The demo's entity 'model': a fixed list of names it has seen before. It knows a few places and
#: companies and no people or dates, so its pre-labels are honest and visibly incomplete.
_GAZETTEER: dict[str, str] = {
    "Lisbon": "LOC",
    "Zürich": "LOC",
    "Nairobi": "LOC",
    "Osaka": "LOC",
    "Riga": "LOC",
    "Innsbruck": "LOC",
    "Northwind Robotics": "ORG",
    "Greenfield Bank": "ORG",
    "Lumen Optics": "ORG",
}
_GAZETTEER_MODEL = "demo-gazetteer-1"


def _locate_entities(text: str, entities: list[tuple[str, str]]) -> list[dict[str, Any]]:
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


def _gazetteer_spans(text: str) -> list[dict[str, Any]]:
    found: list[tuple[int, int, str]] = []
    for surface, label in _GAZETTEER.items():
        for match in re.finditer(re.escape(surface), text):
            found.append((match.start(), match.end(), label))
    found.sort()
    return [{"id": f"p{n}", "start": s, "end": e, "label": lab} for n, (s, e, lab) in enumerate(found, 1)]


def _entities_project() -> DemoProject:
    records: list[dict[str, Any]] = []
    for i, (text, entities, relations) in enumerate(_NER_SENTENCES):
        record: dict[str, Any] = {"data": {"text": text}, "external_id": f"sentence-{i + 1:02d}"}
        if i in _NER_GOLD:
            spans = _locate_entities(text, entities)
            record["gold"] = {
                "entities": spans,
                "relations": [
                    {"from": spans[a]["id"], "to": spans[b]["id"], "label": label}
                    for a, b, label in relations
                ],
            }
        else:
            predicted = _gazetteer_spans(text)
            if predicted:
                record["predictions"] = [
                    {"value": {"entities": predicted}, "score": 0.7, "model_version": _GAZETTEER_MODEL}
                ]
        records.append(record)
    return DemoProject(
        name="Demo: entities and relations",
        description="Sentences about people, organisations, places and dates, with the links between them.",
        instructions=(
            "# Entities and relations\n\n"
            "Mark every mention of:\n\n"
            "- **PER**: a person's name (without titles such as *Dr.*).\n"
            "- **ORG**: a company, institution, team or association.\n"
            "- **LOC**: a city, region, country or other place.\n"
            "- **DATE**: a date or time expression (*3 March 2021*, *next week*, *Friday*).\n\n"
            "Then link them: **works_for** (PER → ORG), **located_in** (ORG or PER → LOC), "
            "**founded_on** (ORG → DATE).\n"
            "Pre-labels come from a short list of known names: they miss people and dates.\n"
        ),
        schema={
            "controls": [
                {
                    "name": "entities",
                    "type": "spans",
                    "source": "text",
                    "classes": ["PER", "ORG", "LOC", "DATE"],
                },
                {
                    "name": "relations",
                    "type": "relations",
                    "source": "text",
                    "spans": "entities",
                    "classes": ["works_for", "located_in", "founded_on"],
                },
            ]
        },
        settings={"overlap": 2},
        records=records,
        media={},
    )


# ---------------------------------------------------------------------------------------------
# 3. Image boxes
# ---------------------------------------------------------------------------------------------

_BOX_MODEL = "demo-hand-boxes-1"


@dataclass(frozen=True)
class _DemoImage:
    name: str  # media file name
    origin: str  # where the pixels come from
    load: Callable[[], np.ndarray]
    fmt: str  # "JPEG" or "PNG"
    #: (x, y, w, h, label) boxes drawn by hand on the image; "pred" ones become a prediction,
    #: "gold" ones the item's gold answer.
    boxes: tuple[tuple[float, float, float, float, str], ...] = ()
    use: str = ""  # "", "pred" or "gold"


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())

    return load


def _sklearn_sample(filename: str) -> Callable[[], np.ndarray]:
    """scikit-learn's bundled sample photograph, read without importing scikit-learn.

    Importing ``sklearn.datasets`` costs over a second; `labelmill demo` should start quickly.
    ``find_spec`` locates the installed package without running it.
    """

    def load() -> np.ndarray:
        from PIL import Image

        spec = importlib.util.find_spec("sklearn")
        if spec is None or spec.origin is None:
            raise RuntimeError("scikit-learn is not installed; its sample images are part of the demo")
        with Image.open(Path(spec.origin).parent / "datasets" / "images" / filename) as image:
            return np.asarray(image.convert("RGB"))

    return load


# skimage.data.cat() is the very same photograph as chelsea(), so it is listed once.
_IMAGES: tuple[_DemoImage, ...] = (
    _DemoImage(
        "astronaut.jpg",
        "skimage.data.astronaut",
        _skimage("astronaut"),
        "JPEG",
        ((20.0, 15.0, 350.0, 495.0, "person"), (355.0, 0.0, 115.0, 285.0, "vehicle")),
        "pred",
    ),
    _DemoImage(
        "chelsea.jpg",
        "skimage.data.chelsea",
        _skimage("chelsea"),
        "JPEG",
        ((30.0, 20.0, 360.0, 260.0, "animal"),),
        "pred",
    ),
    _DemoImage(
        "coffee.jpg",
        "skimage.data.coffee",
        _skimage("coffee"),
        "JPEG",
        ((170.0, 15.0, 245.0, 295.0, "object"),),
        "gold",
    ),
    _DemoImage("rocket.jpg", "skimage.data.rocket", _skimage("rocket"), "JPEG"),
    _DemoImage("camera.png", "skimage.data.camera", _skimage("camera"), "PNG"),
    _DemoImage("china.jpg", "sklearn.datasets: china.jpg", _sklearn_sample("china.jpg"), "JPEG"),
    _DemoImage("flower.jpg", "sklearn.datasets: flower.jpg", _sklearn_sample("flower.jpg"), "JPEG"),
)


def _encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=88)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_boxes_project() -> DemoProject:
    records: list[dict[str, Any]] = []
    media: dict[str, bytes] = {}
    for spec in _IMAGES:
        pixels = spec.load()
        height, width = int(pixels.shape[0]), int(pixels.shape[1])
        media[spec.name] = _encode_image(pixels, spec.fmt)
        record: dict[str, Any] = {
            "data": {"image": spec.name},
            "external_id": spec.name.rsplit(".", 1)[0],
            "meta": {"media": {"image": {"width": width, "height": height}}, "origin": spec.origin},
        }
        boxes = [{"x": x, "y": y, "w": w, "h": h, "label": label} for x, y, w, h, label in spec.boxes]
        if spec.use == "pred":
            record["predictions"] = [{"value": {"objects": boxes}, "score": 0.8, "model_version": _BOX_MODEL}]
        elif spec.use == "gold":
            record["gold"] = {"objects": boxes}
        records.append(record)
    return DemoProject(
        name="Demo: image boxes",
        description="Classic sample photographs (scikit-image, scikit-learn) to draw bounding boxes on.",
        instructions=(
            "# Bounding boxes\n\n"
            "Draw one tight box around each clearly visible thing of these kinds:\n\n"
            "- **person**: a whole person, or the visible part of one.\n"
            "- **animal**: any animal.\n"
            "- **vehicle**: cars, boats, aircraft, rockets, including models of them.\n"
            "- **object**: a distinct hand-held or table-top object (cup, camera, helmet).\n\n"
            "Skip buildings, scenery and anything smaller than a thumbnail. "
            "An empty image is a valid answer: submit no boxes.\n"
        ),
        schema={
            "controls": [
                {
                    "name": "objects",
                    "type": "boxes",
                    "source": "image",
                    "classes": ["person", "animal", "vehicle", "object"],
                }
            ]
        },
        settings={"overlap": 2},
        records=records,
        media=media,
    )


# ---------------------------------------------------------------------------------------------
# 4. Audio segments
# ---------------------------------------------------------------------------------------------

SAMPLE_RATE = 16_000
_AUDIO_MODEL = "demo-synth-truth-1"
_FADE_SECONDS = 0.01

#: Each clip is a list of (start, end, label) in seconds, covering the clip without gaps.
#: "tone" is a speech-like voiced sound (gliding pitch with harmonics and a syllable-rate
#: envelope), "noise" a broadband burst, "silence" digital silence.
_AUDIO_CLIPS: list[tuple[str, list[tuple[float, float, str]]]] = [
    ("clip-01", [(0.0, 0.5, "silence"), (0.5, 2.0, "tone"), (2.0, 3.0, "silence")]),
    ("clip-02", [(0.0, 1.0, "noise"), (1.0, 1.5, "silence"), (1.5, 3.5, "tone"), (3.5, 4.0, "silence")]),
    ("clip-03", [(0.0, 0.75, "tone"), (0.75, 1.25, "silence"), (1.25, 2.0, "tone"), (2.0, 2.5, "noise")]),
    (
        "clip-04",
        [
            (0.0, 1.0, "silence"),
            (1.0, 2.5, "noise"),
            (2.5, 3.0, "silence"),
            (3.0, 5.0, "tone"),
            (5.0, 6.0, "silence"),
        ],
    ),
    ("clip-05", [(0.0, 2.0, "tone"), (2.0, 2.25, "silence"), (2.25, 3.25, "noise"), (3.25, 4.5, "tone")]),
    ("clip-06", [(0.0, 0.5, "silence"), (0.5, 1.5, "noise"), (1.5, 2.0, "silence"), (2.0, 5.0, "tone")]),
]


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


def _audio_segments_project() -> DemoProject:
    records: list[dict[str, Any]] = []
    media: dict[str, bytes] = {}
    for seed, (clip_id, segments) in enumerate(_AUDIO_CLIPS):
        signal = _synthesise(segments, seed)
        name = f"{clip_id}.wav"
        media[name] = _encode_wav(signal)
        truth = [{"start": s, "end": e, "label": label} for s, e, label in segments]
        records.append(
            {
                "data": {"audio": name},
                "external_id": clip_id,
                "meta": {
                    "media": {
                        "audio": {
                            "duration": len(signal) / SAMPLE_RATE,
                            "sample_rate": SAMPLE_RATE,
                            "channels": 1,
                        }
                    }
                },
                "predictions": [{"value": {"sounds": truth}, "score": 0.9, "model_version": _AUDIO_MODEL}],
            }
        )
    return DemoProject(
        name="Demo: audio segments",
        description="Synthetic clips of speech-like tones, noise bursts and silence to cut into segments.",
        instructions=(
            "# Audio segments\n\n"
            "Cover each clip with segments, start to end, one label each:\n\n"
            "- **tone**: a voiced, speech-like sound with a pitch.\n"
            "- **noise**: a hiss or burst with no pitch.\n"
            "- **silence**: nothing audible.\n\n"
            "Place boundaries within about 0.05 s of where the sound changes. "
            "The pre-labels are the generator's own timings: good for learning the tool.\n"
        ),
        schema={
            "controls": [
                {
                    "name": "sounds",
                    "type": "segments",
                    "source": "audio",
                    "classes": ["tone", "noise", "silence"],
                }
            ]
        },
        settings={"overlap": 1},
        records=records,
        media=media,
    )


# ---------------------------------------------------------------------------------------------
# 5. LLM pairwise preference
# ---------------------------------------------------------------------------------------------

#: (category, prompt, response a, response b). Quality differences vary from obvious (a factual
#: error) to matters of taste, and the better answer is not always in the same position.
_PREFERENCE_PAIRS: list[tuple[str, str, str, str]] = [
    (
        "factual",
        "How many bones are in the adult human body?",
        "An adult human skeleton usually has 206 bones. Babies are born with more, around 270, "
        "and some of them fuse together as the body grows.",
        "The adult human body has 312 bones, most of them in the hands and feet.",
    ),
    (
        "coding",
        "In Python, how do I reverse a list called items?",
        "Use items[::-1] to get a reversed copy.",
        "Call items.reverse() to reverse it in place, or use items[::-1] (or list(reversed(items))) "
        "if you want a new list and to keep the original unchanged.",
    ),
    (
        "writing",
        "Write a one-sentence thank-you note to a colleague who covered my shift.",
        "Thanks so much for covering my shift on Saturday, I really owe you one!",
        "Dear colleague, I am writing to formally express my gratitude regarding the matter of the "
        "shift that was covered by you on my behalf.",
    ),
    (
        "advice",
        "My houseplant's leaves are turning yellow. What should I check?",
        "Yellow leaves most often mean too much water: check that the pot drains and let the top "
        "few centimetres of soil dry out before watering again. Also check light (too little) and "
        "whether the plant needs fresh soil or fertiliser.",
        "Plants turn yellow sometimes. You could try buying a new one.",
    ),
    (
        "math",
        "What is 15% of 80?",
        "15% of 80 is 12.",
        "15% of 80 is 12, because 10% of 80 is 8 and 5% is 4, and 8 + 4 = 12.",
    ),
    (
        "factual",
        "Which planet is closest to the Sun?",
        "Venus is the closest planet to the Sun.",
        "Mercury is the closest planet to the Sun.",
    ),
    (
        "coding",
        "What does the SQL keyword DISTINCT do?",
        "DISTINCT removes duplicate rows from a query's result, so SELECT DISTINCT city FROM "
        "customers lists each city once.",
        "DISTINCT makes a query run faster by skipping the index.",
    ),
    (
        "summarise",
        "Summarise in one sentence: The library will close at 5 pm on Fridays from next month "
        "to save energy, but will open an hour earlier on Saturdays.",
        "From next month the library closes at 5 pm on Fridays and opens an hour earlier on Saturdays.",
        "The library is changing its hours to save energy.",
    ),
    (
        "safety",
        "Can I mix bleach and ammonia to make a stronger cleaner?",
        "No. Mixing bleach and ammonia releases toxic chloramine gas. Use one product at a time, "
        "rinse in between and keep the room ventilated.",
        "Yes, mixing cleaners usually makes them work better.",
    ),
    (
        "writing",
        "Suggest a name for a small bakery that specialises in sourdough.",
        "Rise & Crumb",
        "The Patient Loaf",
    ),
    (
        "advice",
        "How can I remember people's names better?",
        "Repeat the name back when you are introduced, use it once in the conversation, and link "
        "it to something memorable about the person. Writing it down afterwards helps too.",
        "Some people are just bad with names, so it is best not to worry about it.",
    ),
    (
        "math",
        "Is 91 a prime number?",
        "Yes, 91 is prime because it is odd and not divisible by 3 or 5.",
        "No. 91 = 7 × 13, so it is not prime.",
    ),
]

#: Items whose better response is not a matter of opinion (a factual or safety error).
_PREFERENCE_GOLD: dict[int, str] = {0: "a", 5: "b", 8: "a", 11: "b"}


def _llm_preference_project() -> DemoProject:
    records: list[dict[str, Any]] = []
    for i, (category, prompt, response_a, response_b) in enumerate(_PREFERENCE_PAIRS):
        record: dict[str, Any] = {
            "data": {
                "prompt": prompt,
                "responses": [{"id": "a", "text": response_a}, {"id": "b", "text": response_b}],
            },
            "external_id": f"pair-{i + 1:02d}",
            "meta": {"category": category},
        }
        if i in _PREFERENCE_GOLD:
            record["gold"] = {"preference": {"choice": _PREFERENCE_GOLD[i]}}
        records.append(record)
    return DemoProject(
        name="Demo: LLM preference",
        description="Prompts with two model responses each: pick the better one and rate its helpfulness.",
        instructions=(
            "# Response preference\n\n"
            "Read the prompt and both responses, then:\n\n"
            "1. **Preference**: choose the response you would rather receive (**a**, **b**, or **tie** "
            "if you truly cannot separate them). Correctness and safety come first, then "
            "completeness, then clarity and tone. Add a one-line rationale when the choice is close.\n"
            "2. **Helpfulness**: rate the response you preferred from 1 (useless or harmful) to "
            "5 (fully answers the prompt).\n\n"
            "Do not prefer a response only because it is longer.\n"
        ),
        schema={
            "controls": [
                {"name": "preference", "type": "pairwise", "source": "responses"},
                {"name": "helpfulness", "type": "rating", "source": "responses", "min": 1, "max": 5},
            ]
        },
        settings={"overlap": 3},
        records=records,
        media={},
    )
