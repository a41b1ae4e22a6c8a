"""Export: stream a project's items with their labels into any registered format.

Rows are read in keyset batches, each in its own short transaction, so memory is constant and
a long export never holds a lock that would stall annotators. Large exports run as jobs whose
progress is persisted and whose file is downloaded afterwards.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from labelmill.formats.exporting import DESCRIPTIONS, EXPORTERS, ExportContext, ExportOptions, get_exporter
from labelmill.formats.jsonl_export import export_row
from labelmill.services.items import ItemFilter
from labelmill.services.projects import load_schema
from labelmill.store.engine import Database
from labelmill.store.media import MEDIA_SCHEME, MediaStore
from labelmill.store.models import Annotation, Consensus, Item, Prediction, Project, User

BATCH = 2000


def iter_export_rows(
    db: Database, project_id: int, filt: ItemFilter | None = None
) -> Iterator[dict[str, Any]]:
    """One dict per item in DESIGN's JSONL export shape (plus ``meta`` and ``gold`` when set)."""
    filt = filt or ItemFilter()
    last_id = 0
    while True:
        with db.session() as session:
            stmt = select(Item).where(Item.project_id == project_id, Item.id > last_id)
            items = list(session.scalars(filt.apply(stmt).order_by(Item.id).limit(BATCH)))
            if not items:
                return
            ids = [i.id for i in items]
            annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
            stmt_a = (
                select(Annotation, User.name)
                .outerjoin(User, User.id == Annotation.annotator_id)
                .where(Annotation.item_id.in_(ids))
                .order_by(Annotation.id)
            )
            for ann, name in session.execute(stmt_a):
                entry: dict[str, Any] = {"annotator": name, "value": ann.value, "status": ann.status}
                if ann.lead_seconds is not None:
                    entry["lead_seconds"] = ann.lead_seconds
                annotations[ann.item_id].append(entry)
            predictions: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for pred in session.scalars(
                select(Prediction).where(Prediction.item_id.in_(ids)).order_by(Prediction.id)
            ):
                predictions[pred.item_id].append(
                    {"value": pred.value, "score": pred.score, "model_version": pred.model_version}
                )
            consensus = {
                c.item_id: {"value": c.value, "confidence": c.confidence, "method": c.method, "auto": c.auto}
                for c in session.scalars(select(Consensus).where(Consensus.item_id.in_(ids)))
            }
        for item in items:
            yield export_row(
                external_id=item.external_id,
                data=item.data,
                annotations=annotations.get(item.id, []),
                predictions=predictions.get(item.id, []),
                consensus=consensus.get(item.id),
                meta=item.meta,
                gold=item.gold,
            )
        last_id = items[-1].id


def media_resolver(media: MediaStore | None, project_id: int) -> Callable[[str], Path | None]:
    """``media://<project>/<name>`` -> the local file, when the store keeps it locally and the
    reference lies inside ``project_id`` (a reference to another project's media gives None, so an
    export never ships another project's files)."""

    def resolve(ref: str) -> Path | None:
        if media is None or not isinstance(ref, str) or not ref.startswith(MEDIA_SCHEME):
            return None
        try:
            return media.local_path(media.resolve(ref, project_id))
        except (ValueError, OSError):
            return None

    return resolve


def export_project(
    db: Database,
    project_id: int,
    fmt: str,
    out: Path,
    *,
    options: ExportOptions | None = None,
    filt: ItemFilter | None = None,
    media: MediaStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the project in ``fmt`` to ``out`` (a file, or a folder for folder formats)."""
    exporter = get_exporter(fmt)
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        ctx = ExportContext(
            schema=load_schema(project.label_schema),
            options=options or ExportOptions(),
            media_path=media_resolver(media, project_id),
            project_name=project.name,
        )

    def rows() -> Iterator[dict[str, Any]]:
        for done, row in enumerate(iter_export_rows(db, project_id, filt), start=1):
            yield row
            if progress is not None and done % 1000 == 0:
                progress(done)

    return exporter.write(rows(), out, ctx)


def export_formats() -> dict[str, str]:
    """Format name -> one-line description, for ``--help`` and the API docs."""
    return {name: DESCRIPTIONS[name] for name in EXPORTERS}


def run_export_job(
    db: Database,
    params: dict[str, Any],
    project_id: int,
    media: MediaStore | None,
    progress: Callable[[int], None],
) -> dict[str, Any]:
    """The body of an ``export`` job: write under ``params['out_dir']``; a folder is zipped."""
    fmt = params["format"]
    out_dir = Path(params["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(**params.get("options", {}))
    filt = ItemFilter(
        **{**params.get("filter", {}), "meta": tuple(map(tuple, params.get("filter", {}).get("meta", [])))}
    )
    name = f"project-{project_id}-{fmt}"
    target = out_dir / name
    count = export_project(
        db, project_id, fmt, target, options=options, filt=filt, media=media, progress=progress
    )
    if target.is_dir():
        archive = Path(shutil.make_archive(str(target), "zip", root_dir=target))
        shutil.rmtree(target)
        target = archive
    return {
        "items": count,
        "file": str(target),
        "bytes": target.stat().st_size,
        "format": fmt,
        "options": asdict(options),
    }
