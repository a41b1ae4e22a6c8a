"""NLP exports (CoNLL, spaCy DocBin, Hugging Face) and the CoNLL importer, checked by the real readers."""

from __future__ import annotations

import io
import random
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelmill.formats.conll import (
    CONLL_EXPORTER,
    ConllExporter,
    ExportWarning,
    decode_tags,
    encode_tags,
    read_conll,
    tag_names,
)
from labelmill.formats.exporting import ExportContext, ExportOptions, get_exporter
from labelmill.formats.huggingface import DATA_FILE, HF_EXPORTER, HuggingFaceExporter
from labelmill.formats.records import FormatError, ImportRecord
from labelmill.formats.spacy_docbin import SPACY_EXPORTER
from labelmill.schema import parse_schema

CLASSES = ["PER", "LOC", "geo-loc"]


def ner_schema(classes: list[str] = CLASSES, **extra: Any) -> Any:
    controls = [{"name": "ents", "type": "spans", "source": "text", "classes": classes}]
    for name, control in extra.items():
        controls.append({"name": name, "source": "text", **control})
    return parse_schema({"controls": controls})


def row(text: str, value: dict[str, Any] | None, external_id: str = "x", **more: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "data": {"text": text},
        "annotations": more.get("annotations", []),
        "predictions": [],
        "consensus": None
        if value is None
        else {"value": value, "confidence": 1.0, "method": "mv", "auto": False},
    }


def gold(record: ImportRecord, control: str = "ents") -> list[dict[str, Any]]:
    assert record.gold is not None
    spans: list[dict[str, Any]] = record.gold[control]
    return spans


def key(spans: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return sorted((s["start"], s["end"], s["label"]) for s in spans)


def conll_blocks(path: Path) -> list[list[list[str]]]:
    """The file as sentences of [token, tag, ...] lines, the way seqeval users read CoNLL."""
    blocks: list[list[list[str]]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            blocks[-1].append(line.split("\t"))
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def export_conll(rows: list[dict[str, Any]], out: Path, ctx: ExportContext) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        return CONLL_EXPORTER.write(rows, out, ctx)


# -- CoNLL export -> import ---------------------------------------------------------------------------

token_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=6
).filter(lambda t: not any(c.isspace() for c in t) and t != "-DOCSTART-")


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[str], list[str], list[tuple[int, int, str]]]:
    """Tokens, the whitespace after each, and non-overlapping (first, end, label) token ranges."""
    tokens = draw(st.lists(token_text, min_size=1, max_size=12))
    gaps = draw(
        st.lists(
            st.sampled_from([" ", "  ", "\t", "\u00a0", " \u3000"]),
            min_size=len(tokens),
            max_size=len(tokens),
        )
    )
    entities = []
    i = 0
    while i < len(tokens):
        if draw(st.booleans()):
            length = draw(st.integers(1, len(tokens) - i))
            entities.append((i, i + length, draw(st.sampled_from(CLASSES))))
            i += length
        else:
            i += 1
    return tokens, gaps, entities


def build(
    tokens: list[str], gaps: list[str], entities: list[tuple[int, int, str]], lead: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    text = lead
    starts = []
    for token, gap in zip(tokens, gaps, strict=True):
        starts.append(len(text))
        text += token + gap
    spans = [
        {"id": f"s{k}", "start": starts[a], "end": starts[b - 1] + len(tokens[b - 1]), "label": label}
        for k, (a, b, label) in enumerate(entities, 1)
    ]
    return text, spans


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layouts(), min_size=1, max_size=4), st.booleans())
def test_conll_round_trip_keeps_spans(items: list[Any], single_spaces: bool) -> None:
    ctx = ExportContext(schema=ner_schema())
    rows, expected = [], []
    for n, (tokens, gaps, entities) in enumerate(items):
        if single_spaces:
            gaps = [" "] * (len(tokens) - 1) + [""]
            text, spans = build(tokens, gaps, entities)
        else:
            text, spans = build(tokens, gaps, entities, lead="\u2003 ")
        rows.append(row(text, {"ents": spans}, str(n)))
        expected.append((text, spans))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.conll"
        with warnings.catch_warnings():
            warnings.simplefilter("error", ExportWarning)  # aligned spans: nothing to warn about
            assert CONLL_EXPORTER.write(rows, out, ctx) == len(rows)
        records = list(read_conll(out, control="ents"))
    assert len(records) == len(rows)
    for record, (text, spans) in zip(records, expected, strict=True):
        got = gold(record)
        assert record.data["text"] == " ".join(text.split())
        if single_spaces:
            assert key(got) == key(spans)
        else:  # other whitespace becomes single spaces: the spans still cover the same tokens
            assert [(text[s["start"] : s["end"]].split(), s["label"]) for s in spans] == [
                (record.data["text"][s["start"] : s["end"]].split(), s["label"]) for s in got
            ]
        assert [s["id"] for s in got] == [f"s{k}" for k in range(1, len(got) + 1)]


@given(layouts(), st.sampled_from(["IOB2", "IOB1", "BIOES", "BILOU", "IO"]))
def test_tag_schemes_round_trip(layout: Any, scheme: Any) -> None:
    tokens, _, entities = layout
    tags = encode_tags(len(tokens), entities, scheme)
    expected = entities
    if scheme == "IO":  # IO cannot separate touching entities of one label: they merge
        expected = []
        for first, last, label in entities:
            if expected and expected[-1][1] == first and expected[-1][2] == label:
                expected[-1] = (expected[-1][0], last, label)
            else:
                expected.append((first, last, label))
    assert decode_tags(tags, scheme) == expected
    assert set(tags) <= set(tag_names(CLASSES, scheme))


def test_misaligned_and_overlapping_spans_are_expanded_counted_and_warned(tmp_path: Path) -> None:
    text = "Barack Obama visited New York City today"
    spans = [
        {"id": "a", "start": 2, "end": 12, "label": "PER"},  # starts inside "Barack"
        {"id": "b", "start": 21, "end": 29, "label": "LOC"},  # "New York"
        {"id": "c", "start": 21, "end": 34, "label": "LOC"},  # "New York City": longer, kept
        {"id": "d", "start": 25, "end": 29, "label": "PER"},  # inside c: dropped
        {"id": "e", "start": 12, "end": 13, "label": "PER"},  # whitespace only: covers no token
    ]
    out = tmp_path / "x.conll"
    with pytest.warns(ExportWarning) as caught:
        n = CONLL_EXPORTER.write(
            [row(text, {"ents": spans}), row("unlabelled", None)], out, ExportContext(ner_schema())
        )
    assert n == 1
    message = str(caught[0].message)
    assert "1 span(s) not on token boundaries were widened" in message
    assert "2 overlapping span(s) were dropped" in message
    assert "1 span(s) covering no token" in message
    assert "1 item(s) without a label" in message
    assert [line[1] for line in conll_blocks(out)[0]] == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "I-LOC",
        "I-LOC",
        "O",
    ]
    (record,) = read_conll(out, control="ents")
    assert key(gold(record)) == [(0, 12, "PER"), (21, 34, "LOC")]


def test_annotations_mode_writes_one_block_per_annotation(tmp_path: Path) -> None:
    annotations = [
        {"annotator": "ann1", "value": {"ents": [{"id": "s1", "start": 0, "end": 3, "label": "PER"}]}},
        {"annotator": "ann2", "value": {"ents": []}},
        {"annotator": "ann3", "value": {"ents": []}, "status": "rejected"},
    ]
    ctx = ExportContext(ner_schema(), ExportOptions(labels="annotations"))
    out = tmp_path / "a.conll"
    assert get_exporter("conll").write([row("Ann ran", None, annotations=annotations)], out, ctx) == 1
    assert conll_blocks(out) == [[["Ann", "B-PER"], ["ran", "O"]], [["Ann", "O"], ["ran", "O"]]]


def test_several_spans_controls_get_one_tag_column_each(tmp_path: Path) -> None:
    schema = ner_schema(pos={"type": "spans", "classes": ["NOUN"]})
    value = {
        "ents": [{"id": "s1", "start": 0, "end": 3, "label": "PER"}],
        "pos": [{"id": "p", "start": 4, "end": 7, "label": "NOUN"}],
    }
    out = tmp_path / "m.conll"
    CONLL_EXPORTER.write([row("Ann Lee", value)], out, ExportContext(schema))
    assert conll_blocks(out) == [[["Ann", "B-PER", "O"], ["Lee", "O", "B-NOUN"]]]
    assert key(gold(next(read_conll(out, control="pos")), "pos")) == [(4, 7, "NOUN")]
    assert key(gold(next(read_conll(out, control="ents", column=1)))) == [(0, 3, "PER")]


def test_bioes_export(tmp_path: Path) -> None:
    value = {
        "ents": [
            {"id": "a", "start": 0, "end": 7, "label": "PER"},
            {"id": "b", "start": 8, "end": 11, "label": "LOC"},
        ]
    }
    out = tmp_path / "b.conll"
    ConllExporter(scheme="BIOES").write([row("Ann Lee Rio", value)], out, ExportContext(ner_schema()))
    assert [line[1] for line in conll_blocks(out)[0]] == ["B-PER", "E-PER", "S-LOC"]
    assert key(gold(next(read_conll(out, control="ents", scheme="BIOES")))) == key(value["ents"])


# -- CoNLL import ---------------------------------------------------------------------------------------


def read(text: str, **options: Any) -> list[Any]:
    return list(read_conll(io.BytesIO(text.encode("utf-8")), control="ents", name="t.conll", **options))


def test_read_conll_offsets_docstart_columns_and_targets() -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n😀 . O B-MISC\nGerman JJ B-NP I-MISC\n\n\n"
        "Peter NNP B-NP B-PER\r\nBlackburn NNP I-NP I-PER\r\n"
    )
    first, second = read(text)
    assert first.data == {"text": "EU rejects 😀 German"}
    assert first.line == 3 and second.line == 9
    assert key(gold(first)) == [(0, 2, "ORG"), (11, 19, "MISC")]  # code points: the emoji is one
    assert first.data["text"][11:19] == "😀 German"
    assert key(gold(second)) == [(0, 15, "PER")]
    (pred,) = read("Ann\tB-PER\n", target="predictions", model_version="m1")
    assert pred.gold is None
    assert pred.predictions == [
        {
            "value": {"ents": [{"id": "s1", "start": 0, "end": 3, "label": "PER"}]},
            "score": None,
            "model_version": "m1",
        }
    ]
    (ann,) = read("Ann\tB-PER\n", target="annotations", annotator="bob", source="sentence")
    assert ann.data == {"sentence": "Ann"} and ann.annotations[0]["annotator"] == "bob"


def test_read_conll_schemes() -> None:
    assert key(gold(read("a\tI-PER\nb\tI-PER\nc\tI-LOC\n", scheme="IO")[0])) == [
        (0, 3, "PER"),
        (4, 5, "LOC"),
    ]
    assert key(gold(read("a\tI-PER\nb\tB-PER\nc\tO\n", scheme="IOB1")[0])) == [
        (0, 1, "PER"),
        (2, 3, "PER"),
    ]
    assert key(gold(read("a\tB-PER\nb\tE-PER\nc\tS-LOC\n", scheme="BIOES")[0])) == [
        (0, 3, "PER"),
        (4, 5, "LOC"),
    ]
    assert key(gold(read("a\tU-PER\nb\tB-LOC\nc\tL-LOC\n", scheme="BILOU")[0])) == [
        (0, 1, "PER"),
        (2, 5, "LOC"),
    ]
    # Lenient IOB2 reads a dangling I- as a start, like seqeval's default mode.
    assert key(gold(read("a\tO\nb\tI-PER\n", strict=False)[0])) == [(2, 3, "PER")]


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("a\tO\nb\tB-PER\nc\tX-FOO\n", {}, "t.conll:3: tag: 'X-FOO' is not IOB2"),
        ("a\tO\nb\tB-PER\n\nc\tBPER\n", {}, "t.conll:4: tag: 'BPER' is not IOB2"),
        ("a\tB-\n", {}, "t.conll:1: tag: 'B-' is not IOB2"),
        ("a\tB-PER\n", {"scheme": "IO"}, "t.conll:1: tag: 'B-PER' is not IO"),
        ("a\tO\nb\tI-PER\n", {}, "t.conll:2: tag: 'I-PER' after 'O' continues no entity"),
        ("a\tB-PER\nb\tI-LOC\n", {}, "t.conll:2: tag: 'I-LOC' after 'B-PER' continues no entity"),
        (
            "a\tB-PER\nb\tO\n",
            {"scheme": "BIOES"},
            "t.conll:2: tag: 'O' after 'B-PER' leaves an entity unclosed",
        ),
        ("a\tB-PER\n", {"scheme": "BIOES"}, "t.conll:1: tag: the sentence ends inside an entity"),
        ("a\tO\nlonely\n", {}, "t.conll:2: expected 'token<TAB>tag', got 'lonely'"),
    ],
)
def test_read_conll_errors_name_file_line_and_tag(text: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError) as caught:
        read(text, **options)
    assert str(caught.value).startswith(message)


def test_read_conll_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.conll"
    path.write_bytes(b"a\tO\n\xff\tO\n")
    with pytest.raises(FormatError, match=r"bad.conll:2: not valid UTF-8"):
        list(read_conll(path, control="ents"))


# -- seqeval reads our CoNLL ----------------------------------------------------------------------------


def test_seqeval_reads_our_conll(tmp_path: Path) -> None:
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "z😀"]
    rows = []
    for n in range(60):
        tokens = [rng.choice(words) for _ in range(rng.randint(3, 12))]
        text, spans = build(tokens, [" "] * len(tokens), _random_entities(rng, len(tokens)))
        rows.append(row(text, {"ents": spans}, str(n)))
    out = tmp_path / "s.conll"
    export_conll(rows, out, ExportContext(ner_schema()))
    y_true = [[cells[1] for cells in block] for block in conll_blocks(out)]
    assert len(y_true) == 60 and sum(t != "O" for s in y_true for t in s) > 0
    assert seqeval_metrics.f1_score(y_true, y_true) == 1.0
    report = seqeval_metrics.classification_report(y_true, y_true, output_dict=True)
    assert {"PER", "LOC", "geo-loc"} <= set(report)
    perturbed = [list(s) for s in y_true]
    for sentence in perturbed:
        for i, tag in enumerate(sentence):
            if tag.startswith("B-"):
                sentence[i] = "O"
                break
    assert seqeval_metrics.f1_score(y_true, perturbed) < 1.0


def _random_entities(rng: random.Random, n: int) -> list[tuple[int, int, str]]:
    entities, i = [], 0
    while i < n:
        if rng.random() < 0.3:
            length = rng.randint(1, min(3, n - i))
            entities.append((i, i + length, rng.choice(CLASSES)))
            i += length
        else:
            i += 1
    return entities


# -- the real data set ----------------------------------------------------------------------------------


def test_wnut16_round_trips(shared_datasets: Path, tmp_path: Path) -> None:
    source = shared_datasets / "ner" / "wnut16" / "train.conll"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    records = list(read_conll(source, control="ents"))
    assert len(records) > 1000
    classes = sorted({s["label"] for r in records for s in gold(r)})
    assert "person" in classes and "geo-loc" in classes
    for record in records[:200]:
        for span in gold(record):
            text = record.data["text"][span["start"] : span["end"]]
            assert text == text.strip() and text
    ctx = ExportContext(ner_schema(classes))
    out = tmp_path / "wnut16.conll"
    rows = [row(r.data["text"], r.gold, str(n)) for n, r in enumerate(records)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExportWarning)
        assert CONLL_EXPORTER.write(rows, out, ctx) == len(records)
    assert out.read_text(encoding="utf-8").split() == source.read_text(encoding="utf-8").split()
    assert conll_blocks(out) == conll_blocks(source)
    again = list(read_conll(out, control="ents"))
    assert [(r.data, r.gold) for r in again] == [(r.data, r.gold) for r in records]
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    tags = [[cells[1] for cells in block] for block in conll_blocks(out)]
    assert seqeval_metrics.f1_score([[c[1] for c in b] for b in conll_blocks(source)], tags) == 1.0


# -- spaCy DocBin ---------------------------------------------------------------------------------------


def test_spacy_docbin_loads_with_the_same_entities_and_cats(tmp_path: Path) -> None:
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import DocBin

    schema = ner_schema(sentiment={"type": "choices", "classes": ["pos", "neg"]})
    rows = [
        row(
            "Ann Lee flew to São Paulo 😀 today.",
            {
                "ents": [
                    {"id": "a", "start": 0, "end": 7, "label": "PER"},
                    {"id": "b", "start": 16, "end": 25, "label": "LOC"},
                    {"id": "c", "start": 20, "end": 25, "label": "PER"},  # inside b: dropped
                ],
                "sentiment": "neg",
            },
            "e1",
        ),
        row(
            "Ri came", {"ents": [{"id": "a", "start": 1, "end": 2, "label": "PER"}], "sentiment": "pos"}, "e2"
        ),
        row("no label", None, "e3"),
    ]
    out = tmp_path / "train.spacy"
    with pytest.warns(ExportWarning, match=r"1 span\(s\) not on token boundaries.*1 overlapping"):
        assert SPACY_EXPORTER.write(rows, out, ExportContext(schema)) == 2
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    assert [d.text for d in docs] == ["Ann Lee flew to São Paulo 😀 today.", "Ri came"]
    assert [(e.start_char, e.end_char, e.label_) for e in docs[0].ents] == [(0, 7, "PER"), (16, 25, "LOC")]
    assert [(e.text, e.label_) for e in docs[1].ents] == [("Ri", "PER")]  # widened to the token
    assert docs[0].cats == {"pos": 0.0, "neg": 1.0} and docs[1].cats == {"pos": 1.0, "neg": 0.0}
    assert docs[0].user_data["external_id"] == "e1"


def test_spacy_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spacy", None)  # makes `import spacy` raise ImportError
    with pytest.raises(RuntimeError, match=r"pip install labelmill\[spacy\]"):
        SPACY_EXPORTER.write([], tmp_path / "x.spacy", ExportContext(ner_schema()))


# -- Hugging Face -----------------------------------------------------------------------------------------


@pytest.fixture
def hf_datasets(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    cache = tmp_path_factory.mktemp("hf-cache")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    datasets.disable_progress_bars()
    yield datasets


def full_schema() -> Any:
    return ner_schema(
        sentiment={"type": "choices", "classes": ["pos", "neg", "neutral"]},
        topics={"type": "multi_choices", "classes": ["sport", "politics", "art"]},
        score={"type": "rating", "min": 1, "max": 5},
        boxes={"type": "boxes", "classes": ["car"]},
    )


def test_huggingface_export_loads_with_classlabel_features(tmp_path: Path, hf_datasets: Any) -> None:
    from datasets import ClassLabel, Features, List, Value

    rows = [
        row(
            "Ann Lee visited Paris",
            {
                "ents": [
                    {"id": "a", "start": 0, "end": 7, "label": "PER"},
                    {"id": "b", "start": 16, "end": 21, "label": "LOC"},
                ],
                "sentiment": "neutral",
                "topics": ["art", "sport"],
                "score": 4,
            },
            "i1",
        ),
        row("Nothing here", {"ents": [], "sentiment": "pos", "topics": []}, "i2"),
        row("unlabelled", None, "i3"),
    ]
    out = tmp_path / "hf"
    with pytest.warns(ExportWarning, match="controls boxes have no Hugging Face column"):
        assert HF_EXPORTER.write(rows, out, ExportContext(full_schema())) == 2
    assert (out / DATA_FILE).is_file() and (out / "README.md").is_file()
    ds = hf_datasets.load_dataset(
        "parquet", data_files=str(out / DATA_FILE), split="train", cache_dir=str(tmp_path / "cache")
    )
    classes = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-geo-loc", "I-geo-loc"]
    assert ds.features == Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "ents": List(
                {"start": Value("int32"), "end": Value("int32"), "label": ClassLabel(names=CLASSES)}
            ),
            "sentiment": ClassLabel(names=["pos", "neg", "neutral"]),
            "topics": List(ClassLabel(names=["sport", "politics", "art"])),
            "score": Value("int64"),
            "tokens": List(Value("string")),
            "ner_tags": List(ClassLabel(names=classes)),
        }
    )
    assert ds.to_list() == [
        {
            "id": "i1",
            "text": "Ann Lee visited Paris",
            "ents": [{"start": 0, "end": 7, "label": 0}, {"start": 16, "end": 21, "label": 1}],
            "sentiment": 2,
            "topics": [2, 0],
            "score": 4,
            "tokens": ["Ann", "Lee", "visited", "Paris"],
            "ner_tags": [1, 2, 0, 3],
        },
        {
            "id": "i2",
            "text": "Nothing here",
            "ents": [],
            "sentiment": 0,
            "topics": [],
            "score": None,
            "tokens": ["Nothing", "here"],
            "ner_tags": [0, 0],
        },
    ]
    assert ds.features["sentiment"].int2str(ds[0]["sentiment"]) == "neutral"
    # The dataset card describes the same features, and the folder loads as a dataset by itself.
    yaml = pytest.importorskip("yaml")
    card = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---\n")[1])
    assert Features._from_yaml_list(card["dataset_info"]["features"]) == ds.features
    whole = hf_datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache2"))
    assert whole.features == ds.features and whole.num_rows == 2


def test_huggingface_annotations_mode_has_annotator_rows(tmp_path: Path, hf_datasets: Any) -> None:
    annotations = [
        {"annotator": "ann1", "value": {"ents": [], "sentiment": "pos", "topics": []}},
        {"annotator": "ann2", "value": {"ents": [], "sentiment": "neg", "topics": ["art"]}},
    ]
    ctx = ExportContext(full_schema(), ExportOptions(labels="annotations"))
    out = tmp_path / "hf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        assert (
            get_exporter("huggingface").write([row("A b", None, "i1", annotations=annotations)], out, ctx)
            == 1
        )
    ds = hf_datasets.load_dataset(
        "parquet", data_files=str(out / DATA_FILE), split="train", cache_dir=str(tmp_path / "c")
    )
    assert ds["annotator"] == ["ann1", "ann2"] and ds["sentiment"] == [0, 1] and ds["id"] == ["i1", "i1"]


def test_huggingface_export_writes_in_batches(tmp_path: Path, hf_datasets: Any) -> None:
    import pyarrow.parquet as pq

    schema = parse_schema(
        {"controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["a", "b"]}]}
    )
    n = 20_000

    def rows() -> Iterator[dict[str, Any]]:  # a generator: the exporter never sees a list
        for i in range(n):
            yield row(f"item {i}", {"label": "ab"[i % 2]}, str(i))

    out = tmp_path / "hf"
    assert HuggingFaceExporter(batch_size=500).write(rows(), out, ExportContext(schema)) == n
    meta = pq.ParquetFile(out / DATA_FILE).metadata
    assert meta.num_row_groups == n // 500 and meta.num_rows == n
    assert b"huggingface" in pq.read_schema(out / DATA_FILE).metadata
    ds = hf_datasets.load_dataset(
        "parquet", data_files=str(out / DATA_FILE), split="train", cache_dir=str(tmp_path / "c")
    )
    assert ds.num_rows == n and ds.features["label"].names == ["a", "b"]
    assert ds[12_345] == {"id": "12345", "text": "item 12345", "label": 1}


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        yield row("Ann ran", {"ents": []})
        raise OSError("database went away")

    for exporter, out in ((CONLL_EXPORTER, tmp_path / "x.conll"), (HF_EXPORTER, tmp_path / "hf")):
        with pytest.raises(OSError, match="went away"):
            exporter.write(rows(), out, ExportContext(ner_schema()))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_registry_names_resolve() -> None:
    for name, target in (("conll", "file"), ("spacy", "file"), ("huggingface", "folder")):
        exporter = get_exporter(name)
        assert (exporter.name, exporter.target) == (name, target)


@pytest.mark.parametrize("fmt", ["conll", "huggingface"])
def test_exports_stream_in_flat_memory(tmp_path: Path, fmt: str) -> None:
    import tracemalloc

    n = 20_000
    spans = [{"id": "s1", "start": 0, "end": 7, "label": "PER"}]

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(n):
            yield row(f"Ann Lee went to item number {i} today", {"ents": spans}, str(i))

    exporter = get_exporter(fmt)
    warm = [row("Ann", {"ents": []})]
    exporter.write(warm, tmp_path / f"warm.{fmt}", ExportContext(ner_schema()))  # one-time lazy imports
    tracemalloc.start()
    try:
        written = exporter.write(rows(), tmp_path / f"big.{fmt}", ExportContext(ner_schema()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == n
    # 20k rows held at once would be tens of MiB of Python objects; a stream holds one batch.
    assert peak < 16 * 2**20, f"{fmt}: peak {peak / 2**20:.1f} MiB"
