"""CoNLL (2003 style) token tagging: spans out as ``token<TAB>tag`` lines, and back in.

Spans are character ranges (code points, end exclusive) while CoNLL tags tokens, so both
directions share one tokenisation: the whitespace tokens of the source text, with their offsets.
Export tags every token a span touches; a span that starts or ends inside a token is widened to
whole tokens (a tokenised format cannot say "half a word"), and overlapping spans, which one tag
per token cannot hold, keep the longer. Both are counted and reported in one
:class:`ExportWarning` per export rather than failing it, because one sloppy span must not block
a training set. Import joins a sentence's tokens with single spaces, so the offsets it produces
are exact for the text it stores.

Blocks are separated by a blank line; an item labelled by several annotators (``labels=
"annotations"``) is written once per annotation. A schema with several spans controls gets one
tag column per control, in schema order (``token<TAB>tags of control 1<TAB>...``).
"""

from __future__ import annotations

import os
import re
import warnings
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from labelmill.formats._io import SourceLike, display_name, open_binary, utf8_error_reason
from labelmill.formats.exporting import ExportContext, ExportRow, controls_of, labelled_values
from labelmill.formats.records import FormatError, ImportRecord

__all__ = [
    "CONLL_EXPORTER",
    "SCHEMES",
    "ConllExporter",
    "ExportWarning",
    "TagError",
    "TaggedText",
    "TaggingReport",
    "decode_tags",
    "encode_tags",
    "read_conll",
    "tag_names",
    "tag_spans",
    "token_offsets",
    "warn_summary",
]

#: Tagging schemes: which tag prefixes each allows. BILOU is BIOES under other letters (L=E, U=S).
SCHEMES: dict[str, frozenset[str]] = {
    "IOB2": frozenset("BI"),
    "IOB1": frozenset("BI"),
    "IO": frozenset("I"),
    "BIOES": frozenset("BIES"),
    "BILOU": frozenset("BILU"),
}
Scheme = Literal["IOB2", "IOB1", "IO", "BIOES", "BILOU"]
_BILOU = {"L": "E", "U": "S"}
_TOKEN = re.compile(r"\S+")
_DOCSTART = "-DOCSTART-"


class ExportWarning(UserWarning):
    """An export went through but changed or left out some labels; the message says how many."""


def token_offsets(text: str) -> list[tuple[int, int]]:
    """The whitespace tokens of ``text`` as (start, end) code point offsets, end exclusive."""
    return [m.span() for m in _TOKEN.finditer(text)]


def tag_names(classes: Sequence[str], scheme: Scheme = "IOB2") -> list[str]:
    """Every tag a scheme can give ``classes``, ``O`` first: the label set of a token classifier."""
    prefixes = {"IOB2": "BI", "IOB1": "BI", "IO": "I", "BIOES": "BIES", "BILOU": "BILU"}[scheme]
    return ["O", *(f"{p}-{c}" for c in classes for p in prefixes)]


@dataclass
class TaggingReport:
    """What tagging had to change: totals over an export, for its one warning."""

    #: Spans that started or ended inside a token, widened to whole tokens.
    expanded: int = 0
    #: Spans dropped because they overlapped a longer one.
    overlapping: int = 0
    #: Spans that cover no token at all (only whitespace, empty, or malformed).
    empty: int = 0
    #: Items left out: no labelled value, or no text to tokenise.
    skipped_items: int = 0

    def add(self, other: TaggingReport) -> None:
        self.expanded += other.expanded
        self.overlapping += other.overlapping
        self.empty += other.empty
        self.skipped_items += other.skipped_items

    def summary(self, fmt: str) -> str | None:
        parts = []
        if self.expanded:
            parts.append(f"{self.expanded} span(s) not on token boundaries were widened to whole tokens")
        if self.overlapping:
            parts.append(f"{self.overlapping} overlapping span(s) were dropped (the longer one was kept)")
        if self.empty:
            parts.append(f"{self.empty} span(s) covering no token were dropped")
        if self.skipped_items:
            parts.append(f"{self.skipped_items} item(s) without a label or text were left out")
        return f"{fmt} export: " + "; ".join(parts) if parts else None


def warn_summary(report: TaggingReport, fmt: str, extra: Sequence[str] = ()) -> None:
    """Emit the one warning of an export: what it had to change or leave out, in totals."""
    message = report.summary(fmt)
    if extra:
        message = (message + "; " if message else f"{fmt} export: ") + "; ".join(extra)
    if message:
        warnings.warn(message, ExportWarning, stacklevel=3)


@dataclass
class TaggedText:
    tokens: list[str]
    offsets: list[tuple[int, int]]
    #: (first token, end token exclusive, label), sorted, not overlapping.
    entities: list[tuple[int, int, str]]
    report: TaggingReport = field(default_factory=TaggingReport)


def _span_fields(span: Any) -> tuple[int, int, str] | None:
    if not isinstance(span, dict):
        return None
    start, end, label = span.get("start"), span.get("end"), span.get("label")
    if type(start) is not int or type(end) is not int or not isinstance(label, str) or end <= start:
        return None
    return start, end, label


def tag_spans(text: str, spans: Iterable[Any], offsets: list[tuple[int, int]] | None = None) -> TaggedText:
    """Map character spans onto the whitespace tokens of ``text`` (see the module docstring)."""
    if offsets is None:
        offsets = token_offsets(text)
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    report = TaggingReport()
    candidates: dict[tuple[int, int, str], int] = {}
    for span in spans:
        fields = _span_fields(span)
        if fields is None:
            report.empty += 1
            continue
        start, end, label = fields
        first = bisect_right(ends, start)  # first token ending after the span starts
        last = bisect_left(starts, end)  # tokens before this one start before the span ends
        if first >= last:
            report.empty += 1
            continue
        if starts[first] != start or ends[last - 1] != end:
            report.expanded += 1
        key = (first, last, label)
        if key not in candidates:  # an exact duplicate is harmless and not worth a warning
            candidates[key] = end - start
    # Longest first (in tokens, then in characters as given), then leftmost: greedy keeps the longer.
    order = sorted(candidates, key=lambda k: (-(k[1] - k[0]), -candidates[k], k[0], k[2]))
    taken = [False] * len(offsets)
    entities = []
    for first, last, label in order:
        if any(taken[first:last]):
            report.overlapping += 1
            continue
        taken[first:last] = [True] * (last - first)
        entities.append((first, last, label))
    entities.sort()
    tokens = [text[s:e] for s, e in offsets]
    return TaggedText(tokens, offsets, entities, report)


def encode_tags(
    n_tokens: int, entities: Iterable[tuple[int, int, str]], scheme: Scheme = "IOB2"
) -> list[str]:
    """Tags for ``n_tokens`` tokens from non-overlapping (first, end, label) token ranges."""
    tags = ["O"] * n_tokens
    previous: tuple[int, str] | None = None  # (end, label) of the entity before
    for first, last, label in sorted(entities):
        if scheme == "IO":
            tags[first:last] = [f"I-{label}"] * (last - first)
        elif scheme == "IOB1":
            touching = previous is not None and previous == (first, label)
            tags[first] = f"B-{label}" if touching else f"I-{label}"
            tags[first + 1 : last] = [f"I-{label}"] * (last - first - 1)
        elif scheme in ("BIOES", "BILOU"):
            single, end_ = ("S", "E") if scheme == "BIOES" else ("U", "L")
            if last - first == 1:
                tags[first] = f"{single}-{label}"
            else:
                tags[first] = f"B-{label}"
                tags[first + 1 : last - 1] = [f"I-{label}"] * (last - first - 2)
                tags[last - 1] = f"{end_}-{label}"
        else:
            tags[first] = f"B-{label}"
            tags[first + 1 : last] = [f"I-{label}"] * (last - first - 1)
        previous = (last, label)
    return tags


class TagError(ValueError):
    """A tag sequence breaks its scheme; ``index`` is the offending token."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _split_tag(tag: str, scheme: str, index: int) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or not label or prefix not in SCHEMES[scheme]:
        raise TagError(index, f"{tag!r} is not {scheme}")
    return _BILOU.get(prefix, prefix) if scheme == "BILOU" else prefix, label


def decode_tags(
    tags: Sequence[str], scheme: Scheme = "IOB2", *, strict: bool = True
) -> list[tuple[int, int, str]]:
    """Entities (first token, end token exclusive, label) of a tag sequence.

    ``strict`` rejects sequences the scheme does not allow (an IOB2 ``I-`` that continues
    nothing, a BIOES entity never closed); otherwise they are read as seqeval's default mode
    reads them: such a tag starts a new entity.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    entities: list[tuple[int, int, str]] = []
    open_start: int | None = None
    open_label = ""
    # In BIOES, whether the open entity still expects more tokens (after B or I).
    expecting = False

    def close(end: int) -> None:
        nonlocal open_start
        if open_start is not None:
            entities.append((open_start, end, open_label))
        open_start = None

    for i, tag in enumerate(tags):
        prefix, label = _split_tag(tag, scheme, i)
        continues = open_start is not None and label == open_label
        if scheme in ("BIOES", "BILOU"):
            if strict and expecting and not (prefix in "IE" and continues):
                raise TagError(i, f"{tag!r} after {tags[i - 1]!r} leaves an entity unclosed in {scheme}")
            if strict and prefix in "IE" and not (expecting and continues):
                raise TagError(i, f"{tag!r} does not continue an entity; a {scheme} entity starts with B-")
            if prefix in "IE" and continues and expecting:
                expecting = prefix == "I"
                if prefix == "E":
                    close(i + 1)
                continue
            close(i)
            if prefix == "O":
                expecting = False
                continue
            open_start, open_label = i, label
            expecting = prefix in "BI"
            if prefix in "SE":
                close(i + 1)
            continue
        if prefix == "O":
            close(i)
        elif prefix == "I" and continues:
            pass
        elif prefix == "I" and scheme == "IOB2" and strict:
            before = repr(tags[i - 1]) if i else "the start of the sentence"
            raise TagError(i, f"{tag!r} after {before} continues no entity; an IOB2 entity starts with B-")
        else:  # B-, or an I- that starts an entity (IO, IOB1, lenient IOB2)
            close(i)
            open_start, open_label = i, label
    if strict and expecting and scheme in ("BIOES", "BILOU"):
        raise TagError(len(tags) - 1, f"the sentence ends inside an entity; a {scheme} entity ends with E-")
    close(len(tags))
    return entities


@dataclass(frozen=True)
class ConllExporter:
    """Writes the spans controls of a schema as CoNLL token tags (see the module docstring)."""

    name: str = "conll"
    target: Literal["file", "folder"] = "file"
    description: str = "CoNLL-2003 style token<TAB>tag lines (IOB2), a blank line between items"
    scheme: Scheme = "IOB2"

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        controls = controls_of(ctx.schema, "spans")
        if not controls:
            raise ValueError("the conll export needs a spans control in the schema")
        sources = {c.source for c in controls}
        if len(sources) > 1:
            raise ValueError(
                "the conll export tags one text per item, but the spans controls label different "
                f"fields ({', '.join(sorted(sources))}); export them one at a time or as jsonl"
            )
        for control in controls:
            for label in control.classes:
                if any(ch.isspace() for ch in label):
                    raise ValueError(
                        f"class {label!r} of {control.name!r} contains whitespace: not a CoNLL tag"
                    )
        source = controls[0].source
        report = TaggingReport()
        written = 0
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")  # a failed export leaves no half file at `out`
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as fp:
                for row in rows:
                    found = (row.get("data") or {}).get(source)
                    text = found if isinstance(found, str) else ""
                    offsets = token_offsets(text)
                    blocks = 0
                    if offsets:
                        for value, _info in labelled_values(row, ctx):
                            fp.write(self._block(text, offsets, value, controls, report))
                            blocks += 1
                    if blocks:
                        written += 1
                    else:
                        report.skipped_items += 1
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, out)
        warn_summary(report, self.name)
        return written

    def _block(
        self,
        text: str,
        offsets: list[tuple[int, int]],
        value: dict[str, Any],
        controls: list[Any],
        report: TaggingReport,
    ) -> str:
        """One item's lines: a token and one tag per spans control each, then the blank line."""
        columns = []
        for control in controls:
            tagged = tag_spans(text, value.get(control.name) or [], offsets)
            report.add(tagged.report)
            columns.append(encode_tags(len(offsets), tagged.entities, self.scheme))
        tokens = [text[s:e] for s, e in offsets]
        return "".join("\t".join(cells) + "\n" for cells in zip(tokens, *columns, strict=True)) + "\n"


CONLL_EXPORTER = ConllExporter()


def _sentences(fp: Any, source: str) -> Iterator[tuple[int, list[tuple[int, list[str]]]]]:
    """(line of the first token, [(line, columns), ...]) per sentence; DOCSTART lines skipped."""
    sentence: list[tuple[int, list[str]]] = []
    for n, raw in enumerate(fp, 1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise FormatError(source, n, "", utf8_error_reason(exc)) from None
        columns = line.split("\t") if "\t" in line else line.split()
        if not line.strip():
            if sentence:
                yield sentence[0][0], sentence
                sentence = []
            continue
        if columns[0] == _DOCSTART:
            continue
        sentence.append((n, columns))
    if sentence:
        yield sentence[0][0], sentence


def read_conll(
    src: SourceLike,
    *,
    control: str,
    source: str = "text",
    target: Literal["gold", "predictions", "annotations"] = "gold",
    scheme: Scheme = "IOB2",
    column: int = -1,
    strict: bool = True,
    annotator: str = "conll",
    model_version: str = "conll",
    name: str | None = None,
) -> Iterator[ImportRecord]:
    """One :class:`ImportRecord` per sentence of a CoNLL file: ``data[source]`` is its tokens joined
    by single spaces and its entities become spans of ``control`` (ids ``s1``, ``s2``, ...).

    ``column`` picks the tag column (CoNLL-2003 has POS and chunk columns before the NER tags,
    so the last is the default); ``target`` says whether the tags are gold, a model's predictions
    or one annotator's labels. Lines split on tabs when they have one, else on runs of spaces.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    if target not in ("gold", "predictions", "annotations"):
        raise ValueError(f"target must be gold, predictions or annotations, not {target!r}")
    file_name = display_name(src, name)
    with open_binary(src) as fp:
        for first_line, sentence in _sentences(fp, file_name):
            tokens: list[str] = []
            tags: list[str] = []
            for n, columns in sentence:
                if len(columns) < 2:
                    raise FormatError(file_name, n, "", f"expected 'token<TAB>tag', got {columns[0]!r}")
                try:
                    tag = columns[column]
                except IndexError:
                    raise FormatError(
                        file_name, n, "tag", f"no column {column} (the line has {len(columns)})"
                    ) from None
                tokens.append(columns[0])
                tags.append(tag.strip())
            try:
                entities = decode_tags(tags, scheme, strict=strict)
            except TagError as exc:
                raise FormatError(file_name, sentence[exc.index][0], "tag", str(exc)) from None
            starts = []
            position = 0
            for token in tokens:
                starts.append(position)
                position += len(token) + 1
            spans = [
                {
                    "id": f"s{k}",
                    "start": starts[first],
                    "end": starts[last - 1] + len(tokens[last - 1]),
                    "label": label,
                }
                for k, (first, last, label) in enumerate(entities, 1)
            ]
            value = {control: spans}
            record = ImportRecord(source=file_name, line=first_line, data={source: " ".join(tokens)})
            if target == "gold":
                record.gold = value
            elif target == "predictions":
                record.predictions = [{"value": value, "score": None, "model_version": model_version}]
            else:
                record.annotations = [{"annotator": annotator, "value": value}]
            yield record
