"""spaCy training data: a ``.spacy`` DocBin of ``spacy.blank("en")`` docs, what ``spacy train`` reads.

The first spans control becomes ``doc.ents`` (spaCy's tokens, spans widened to them with
``alignment_mode="expand"``; overlaps keep the longer, as ``doc.ents`` cannot overlap); any further
spans controls go to ``doc.spans[control name]`` span groups, which may overlap. ``choices`` and
``multi_choices`` become ``doc.cats`` (1.0 for the chosen classes, 0.0 for the others, as
``textcat`` and ``textcat_multilabel`` expect), keyed by class, or by ``control/class`` when the
schema has more than one such control. ``doc.user_data`` keeps the item's ``external_id`` (and
``annotator`` when exporting every annotation).

spaCy is an optional extra (``pip install labelmill[spacy]``), imported only when this runs. A
DocBin is one serialised blob, so unlike the other exporters it grows with the export; it holds
compact token arrays, not Doc objects, which keeps that small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from labelmill.formats.conll import TaggingReport, warn_summary
from labelmill.formats.exporting import ExportContext, ExportRow, controls_of, labelled_values

__all__ = ["SPACY_EXPORTER", "SpacyExporter"]

INSTALL_HINT = "the spacy export needs spaCy, an optional extra: pip install labelmill[spacy]"


def _import_spacy() -> Any:
    try:
        import spacy
        from spacy.tokens import DocBin
        from spacy.util import filter_spans
    except ImportError as exc:
        raise RuntimeError(INSTALL_HINT) from exc
    return spacy, DocBin, filter_spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """The range without its outer whitespace, which spaCy would otherwise keep as tokens."""
    start, end = max(start, 0), min(end, len(text))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass(frozen=True)
class SpacyExporter:
    name: str = "spacy"
    target: Literal["file", "folder"] = "file"
    description: str = "spaCy DocBin (.spacy): entities from spans, doc.cats from choices"
    lang: str = "en"

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        spacy, doc_bin_type, filter_spans = _import_spacy()
        spans_controls = controls_of(ctx.schema, "spans")
        cat_controls = controls_of(ctx.schema, "choices", "multi_choices")
        if not spans_controls and not cat_controls:
            raise ValueError("the spacy export needs a spans, choices or multi_choices control in the schema")
        source = (spans_controls or cat_controls)[0].source
        # A Doc has one text: controls labelling another field cannot be part of it.
        spans_controls = [c for c in spans_controls if c.source == source]
        cat_controls = [c for c in cat_controls if c.source == source]
        prefixed = len(cat_controls) > 1

        nlp = spacy.blank(self.lang)
        docs = doc_bin_type(store_user_data=True)
        report = TaggingReport()
        written = 0
        for row in rows:
            text = (row.get("data") or {}).get(source)
            made = 0
            if isinstance(text, str) and text.strip():
                for value, info in labelled_values(row, ctx):
                    doc = nlp.make_doc(text)
                    for index, control in enumerate(spans_controls):
                        found = self._spans(doc, text, value.get(control.name) or [], report)
                        if index == 0:
                            kept = filter_spans(found)
                            report.overlapping += len({(s.start, s.end, s.label_) for s in found}) - len(kept)
                            doc.ents = kept
                        else:
                            doc.spans[control.name] = found
                    for control in cat_controls:
                        if control.name not in value:
                            continue  # unanswered: leave the cats missing rather than all negative
                        chosen = value[control.name]
                        chosen_set = {chosen} if isinstance(chosen, str) else set(chosen or [])
                        for label in control.classes:
                            key = f"{control.name}/{label}" if prefixed else label
                            doc.cats[key] = 1.0 if label in chosen_set else 0.0
                    doc.user_data["external_id"] = row.get("external_id")
                    if "annotator" in info:
                        doc.user_data["annotator"] = info["annotator"]
                    docs.add(doc)
                    made += 1
            if made:
                written += 1
            else:
                report.skipped_items += 1
        out.parent.mkdir(parents=True, exist_ok=True)
        docs.to_disk(out)
        warn_summary(report, self.name)
        return written

    @staticmethod
    def _spans(doc: Any, text: str, spans: Iterable[Any], report: TaggingReport) -> list[Any]:
        found = []
        for span in spans:
            if not isinstance(span, dict):
                report.empty += 1
                continue
            start, end, label = span.get("start"), span.get("end"), span.get("label")
            if type(start) is not int or type(end) is not int or not isinstance(label, str):
                report.empty += 1
                continue
            start, end = _trimmed(text, start, end)
            made = doc.char_span(start, end, label=label, alignment_mode="expand") if start < end else None
            if made is None or not made.text.strip():
                report.empty += 1
                continue
            if (made.start_char, made.end_char) != (span["start"], span["end"]):
                report.expanded += 1
            found.append(made)
        return found


SPACY_EXPORTER = SpacyExporter()
