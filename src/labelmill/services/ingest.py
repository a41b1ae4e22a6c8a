"""Import: stream records from a codec into a project, all or nothing.

The whole import runs in one transaction; records are validated and written in batches so
memory stays flat however large the file. Any bad record aborts the transaction with a
``file:line: field: reason`` error and media files copied so far are removed, so a failed
import leaves the project exactly as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from labelmill.formats.columns import ANSWER_NAMES, ColumnMap
from labelmill.formats.readers import detect_format, read_any
from labelmill.formats.records import FormatError, ImportRecord
from labelmill.schema import AnnotationValueError, LabelSchema, check_value
from labelmill.services.jobs import schedule_job
from labelmill.services.projects import load_schema, settings_of
from labelmill.services.users import get_or_create_annotator
from labelmill.store.bulk import ItemRow, insert_items, update_items
from labelmill.store.engine import Database
from labelmill.store.media import MEDIA_SCHEME, MediaStore, media_url, resolve_ref, safe_media_name
from labelmill.store.models import Annotation, Consensus, Item, Prediction, Project, Task, labels_needed

OnDuplicate = Literal["reject", "update", "skip"]
ON_DUPLICATE = ("reject", "update", "skip")
BATCH = 5000


def _media_refs(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``media://`` string in item data, with its ``data.field[i]`` path."""
    if isinstance(value, str):
        if value.startswith(MEDIA_SCHEME):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _media_refs(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _media_refs(v, f"{path}[{i}]")


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    predictions: int = 0
    annotations: int = 0
    media_files: int = 0
    #: Annotations arrived without a consensus of their own: the project's consensus is stale.
    needs_consensus: bool = False
    #: Things that were stored as asked but are likely mistakes (an answer kept as data, all gold).
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "predictions": self.predictions,
            "annotations": self.annotations,
            "media_files": self.media_files,
            "warnings": list(self.warnings),
        }


def _dumps(value: Any, rec: ImportRecord, where: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise FormatError(rec.source, rec.line, where, "NaN or Infinity is not valid JSON") from None


class _Importer:
    def __init__(
        self, session: Session, project: Project, on_duplicate: OnDuplicate, media: MediaStore | None
    ) -> None:
        self.session = session
        self.conn: Connection = session.connection()
        if self.conn.dialect.name == "postgresql":
            # The duplicate check runs as a prepared statement; a generic plan cached while the
            # table was small stays a sequential scan as the import grows it (quadratic time).
            self.conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        self.project = project
        self.schema: LabelSchema = load_schema(project.label_schema)
        self.sources = {c.name: c.source for c in self.schema.controls}
        self.overlap = settings_of(project).overlap
        self.on_duplicate = on_duplicate
        self.media = media
        self.media_written: list[str] = []
        self.result = ImportResult()
        self.annotators: dict[str, int] = {}
        # Items with a larger id than this were created by this very import.
        self.max_id_before = session.scalar(select(func.max(Item.id))) or 0
        self.rows_added = 0
        self.analyzed_at = BATCH // 2
        # Data fields annotators would see that look like answers: a control's name, or "label" & co.
        sources = set(self.sources.values())
        self.answer_like = frozenset(name for name in {*self.sources, *ANSWER_NAMES} if name not in sources)
        self.answers_in_data: set[str] = set()
        self.gold_rows = 0
        self.rows_written = 0

    # -- validation --------------------------------------------------------------------------
    def _check(self, rec: ImportRecord) -> None:
        # Item data may name media only inside this project: a reference to another project's file
        # would be served, and shipped by exports, to whoever can read this one.
        for where, ref in _media_refs(rec.data, "data"):
            try:
                resolve_ref(ref, self.project.id)
            except ValueError as exc:
                raise FormatError(rec.source, rec.line, where, str(exc)) from None
        for control, source in self.sources.items():
            if source not in rec.data:
                raise FormatError(
                    rec.source, rec.line, f"data.{source}", f"missing (control {control!r} labels this field)"
                )
        media = (rec.meta or {}).get("media") or {}
        checks: list[tuple[str, Any]] = [("gold", rec.gold)] if rec.gold is not None else []
        checks += [(f"predictions[{i}].value", p["value"]) for i, p in enumerate(rec.predictions)]
        checks += [(f"annotations[{i}].value", a["value"]) for i, a in enumerate(rec.annotations)]
        if rec.consensus is not None:
            checks.append(("consensus.value", rec.consensus.get("value")))
        for where, value in checks:
            try:
                check_value(self.schema, value, data=rec.data, media=media, partial=True)
            except AnnotationValueError as exc:
                issue = exc.issues[0]
                raise FormatError(rec.source, rec.line, f"{where}.{issue.path}", issue.message) from None

    def _copy_media(self, rec: ImportRecord) -> None:
        if not rec.media_files:
            return
        if self.media is None:
            raise FormatError(rec.source, rec.line, "", "media files need a media store")
        for data_field, path in rec.media_files:
            try:
                name = safe_media_name(f"{self.project.id}/{rec.external_id or path.name}")
            except ValueError as exc:
                raise FormatError(rec.source, rec.line, f"data.{data_field}", str(exc)) from None
            key = self.media.put_file(path, name)
            self.media_written.append(key)
            rec.data[data_field] = media_url(key)
            self.result.media_files += 1

    # -- writing -----------------------------------------------------------------------------
    def run(self, records: Iterable[ImportRecord], progress: Callable[[int], None] | None) -> ImportResult:
        batch: list[ImportRecord] = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= BATCH:
                self._write(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self._write(batch)
            if progress:
                progress(len(batch))
        self.result.warnings = self._warnings()
        return self.result

    def _warnings(self) -> list[str]:
        out = []
        for name in sorted(self.answers_in_data):
            if name in self.sources:
                why = f"has the name of the control {name!r}"
                fix = f"--gold-column {name}={name} or --annotation-column ANNOTATOR.{name}={name}"
            else:
                why = "is named like an answer"
                fix = f"--gold-column CONTROL={name}"
            out.append(
                f"data field {name!r} {why}: annotators see every data field, so if it holds the "
                f"answer, import it with {fix}, or leave it out with --drop-column {name}"
            )
        if self.rows_written and self.gold_rows == self.rows_written:
            out.append(
                f"every imported item ({self.rows_written}) is gold: gold items only check annotators "
                "(settings.gold_rate), are never in the queue nor in a consensus export; to have labels "
                "count as labels, import them as annotations (--annotation-column, --as annotations)"
            )
        return out

    def _write(self, batch: list[ImportRecord]) -> None:
        pid = self.project.id
        by_ext: dict[str, ImportRecord] = {}
        for rec in batch:
            if rec.external_id is None:
                rec.external_id = _new_external_id()
            first = by_ext.get(rec.external_id)
            if first is not None and self.on_duplicate == "reject":
                raise FormatError(
                    rec.source,
                    rec.line,
                    "external_id",
                    f"duplicate {rec.external_id!r} (also at {first.source}:{first.line})",
                )
            self._check(rec)
            if not self.answer_like.isdisjoint(rec.data):
                self.answers_in_data.update(self.answer_like.intersection(rec.data))
            by_ext[rec.external_id] = rec  # under update/skip the last line of a duplicate wins
        existing = self._existing(list(by_ext))
        new_rows: list[ItemRow] = []
        changed_rows: list[ItemRow] = []
        written: list[ImportRecord] = []
        for ext, rec in by_ext.items():
            if ext in existing:
                if self.on_duplicate == "reject":
                    where = (
                        "earlier in this import" if existing[ext] > self.max_id_before else "in the project"
                    )
                    raise FormatError(
                        rec.source,
                        rec.line,
                        "external_id",
                        f"{ext!r} already exists {where} (choose --on-duplicate update or skip)",
                    )
                if self.on_duplicate == "skip":
                    self.result.skipped += 1
                    continue
            self._copy_media(rec)
            row: ItemRow = (
                pid,
                ext,
                _dumps(rec.data, rec, "data"),
                _dumps(rec.meta, rec, "meta") if rec.meta is not None else None,
                _dumps(rec.gold, rec, "gold") if rec.gold is not None else None,
                rec.gold is not None,
                0.0,
                len(rec.annotations),
                # imported labels take their slots; gold items are outside overlap accounting
                0 if rec.gold is not None else len(rec.annotations),
                rec.gold is None and len(rec.annotations) < self.overlap,
            )
            (changed_rows if ext in existing else new_rows).append(row)
            written.append(rec)
            self.rows_written += 1
            self.gold_rows += rec.gold is not None
        self.result.skipped += len(batch) - len(by_ext) if self.on_duplicate != "reject" else 0
        insert_items(self.conn, new_rows)
        update_items(self.conn, changed_rows)
        self._refresh_statistics(len(new_rows))
        self.result.created += len(new_rows)
        self.result.updated += len(changed_rows)
        dependents = [r for r in written if r.predictions or r.annotations or r.consensus is not None]
        if dependents:
            self._write_dependents(dependents, updated={r[1] for r in changed_rows})

    def _refresh_statistics(self, added: int) -> None:
        """PostgreSQL plans the duplicate check from table statistics, which know nothing of
        the rows this transaction is adding; refresh them each time the table has doubled."""
        if self.conn.dialect.name != "postgresql":
            return
        self.rows_added += added
        if self.rows_added >= self.analyzed_at * 2:
            self.conn.exec_driver_sql("ANALYZE items")
            self.analyzed_at = self.rows_added

    def _existing(self, external_ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(external_ids), 1000):
            chunk = external_ids[start : start + 1000]
            stmt = select(Item.external_id, Item.id).where(
                Item.project_id == self.project.id, Item.external_id.in_(chunk)
            )
            found.update({e: i for e, i in self.conn.execute(stmt)})
        return found

    def _write_dependents(self, recs: list[ImportRecord], updated: set[str]) -> None:
        pid = self.project.id
        ids = self._existing([r.external_id for r in recs if r.external_id])
        predictions: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for rec in recs:
            item_id = ids[rec.external_id or ""]
            if rec.external_id in updated:
                self._replace_dependents(item_id, rec)
            for p in rec.predictions:
                predictions.append(
                    {
                        "project_id": pid,
                        "item_id": item_id,
                        "value": p["value"],
                        "score": p.get("score"),
                        "model_version": p.get("model_version") or "",
                    }
                )
            if rec.annotations and rec.consensus is None:
                self.result.needs_consensus = True
            for a in rec.annotations:
                annotations.append(
                    {
                        "project_id": pid,
                        "item_id": item_id,
                        "annotator_id": self._annotator(a.get("annotator")),
                        "value": a["value"],
                        "lead_seconds": a.get("lead_seconds"),
                        "status": a.get("status") or "submitted",
                    }
                )
            if rec.consensus is not None:
                self.conn.execute(delete(Consensus).where(Consensus.item_id == item_id))
                c = rec.consensus
                self.conn.execute(
                    insert(Consensus).values(
                        item_id=item_id,
                        project_id=pid,
                        value=c.get("value"),
                        confidence=c.get("confidence"),
                        method=str(c.get("method") or "imported"),
                        auto=bool(c.get("auto", False)),
                    )
                )
        if predictions:
            self.conn.execute(insert(Prediction), predictions)
            self.result.predictions += len(predictions)
        if annotations:
            self.conn.execute(insert(Annotation), annotations)
            self.result.annotations += len(annotations)

    def _replace_dependents(self, item_id: int, rec: ImportRecord) -> None:
        """Under ``--on-duplicate update`` a re-import replaces what it carries, so it is idempotent."""
        versions = {p.get("model_version") or "" for p in rec.predictions}
        if versions:
            self.conn.execute(
                delete(Prediction).where(
                    Prediction.item_id == item_id, Prediction.model_version.in_(versions)
                )
            )
        annotators = [self._annotator(a.get("annotator")) for a in rec.annotations]
        if annotators:
            self.conn.execute(
                delete(Annotation).where(
                    Annotation.item_id == item_id, Annotation.annotator_id.in_(annotators)
                )
            )
        count = select(func.count()).select_from(Annotation).where(Annotation.item_id == item_id)
        leases = select(func.count()).select_from(Task).where(Task.item_id == item_id, Task.state == "leased")
        labels = count.scalar_subquery() + len(rec.annotations)
        taken = labels + leases.scalar_subquery()
        self.conn.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(
                annotation_count=labels,
                assigned=case((Item.is_gold, 0), else_=taken),
                is_open=~Item.is_gold & (taken < labels_needed(self.overlap)),
            )
        )

    def _annotator(self, name: Any) -> int | None:
        if name is None:
            return None
        key = str(name)
        if key not in self.annotators:
            self.annotators[key] = get_or_create_annotator(self.session, key).id
        return self.annotators[key]

    def cleanup_media(self) -> None:
        if self.media is not None:
            for key in self.media_written:
                self.media.delete(key)


def _new_external_id() -> str:
    import uuid

    return uuid.uuid4().hex


def import_records(
    db: Database,
    project_id: int,
    records: Iterable[ImportRecord],
    *,
    on_duplicate: OnDuplicate = "reject",
    media: MediaStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Store ``records`` in the project, or nothing at all (raises :class:`FormatError`)."""
    if on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}")
    importer: _Importer | None = None
    try:
        with db.session(immediate=True) as session:
            project = session.get(Project, project_id)
            if project is None:
                raise FormatError("", 0, "project", f"no project {project_id}")
            importer = _Importer(session, project, on_duplicate, media)
            result = importer.run(records, progress)
    except BaseException:
        if importer is not None:
            importer.cleanup_media()
        raise
    if result.needs_consensus:
        schedule_job(db, "consensus", project_id)
    return result


def iter_all(readers: Iterable[Iterator[ImportRecord]]) -> Iterator[ImportRecord]:
    for reader in readers:
        yield from reader


#: Which control type a dataset format's labels belong to.
DATASET_CONTROL_TYPES = {
    "coco": ("boxes", "polygons", "keypoints"),
    "yolo": ("boxes", "polygons"),
    "voc": ("boxes",),
    "conll": ("spans",),
}


#: Where a labelled dataset's labels go unless the caller says: annotations, so the obvious round trip
#: (import, consensus, export) gives the dataset back; ``gold`` would hide every item from the queue
#: and from the consensus export.
DEFAULT_TARGET = "annotations"


def reader_options(
    schema: LabelSchema, fmt: str, *, target: str | None = None, control: str | None = None
) -> dict[str, Any]:
    """Options for a labelled-dataset reader: the control its labels go under (the schema's first
    control of a fitting type unless named), that control's source field, and the target."""
    if fmt not in DATASET_CONTROL_TYPES:
        return {}
    types = DATASET_CONTROL_TYPES[fmt]
    if control is None:
        fitting = [c for c in schema.controls if c.type in types]
        if not fitting:
            raise ValueError(f"{fmt} labels need a {' or '.join(types)} control in the project's schema")
        chosen = fitting[0]
    else:
        try:
            chosen = schema.control(control)
        except KeyError:
            raise ValueError(f"no control {control!r} in the project's schema") from None
    return {"control": chosen.name, "source": chosen.source, "target": target or DEFAULT_TARGET}


#: Formats whose columns (or flat keys) follow the column convention and options.
TABLE_FORMATS = ("jsonl", "csv", "tsv", "parquet", "hf_dataset")


def open_reader(
    schema: LabelSchema,
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    source_name: str | None = None,
    target: str | None = None,
    control: str | None = None,
    columns: ColumnMap | None = None,
) -> Iterator[ImportRecord]:
    """The records of one file or folder for this project: its format (``fmt``, else detected from
    the name), where a table's columns go (``columns``, typed by the schema's controls) and, for a
    labelled dataset, where its labels go. The CLI and the API both read this way."""
    fmt = fmt or detect_format(path)
    options = reader_options(schema, fmt, target=target, control=control)
    if fmt in TABLE_FORMATS:
        types = {c.name: c.type for c in schema.controls}
        options["columns"] = (columns or ColumnMap()).with_schema(types)
    elif columns is not None and columns.explicit:
        raise ValueError(
            f"column options apply to JSONL, CSV, TSV, Parquet and dataset folders, not to {fmt} ({path})"
        )
    if source_name is not None and fmt in ("jsonl", "csv", "tsv", "parquet", "labelstudio", "hf_dataset"):
        options["source_name"] = source_name
    elif source_name is not None and fmt == "conll":
        options["name"] = source_name
    return read_any(path, fmt, **options)
