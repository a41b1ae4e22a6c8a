"""Export: stream a project's items with their labels, in keyset batches (constant memory)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import select

from labelmill.formats.jsonl_export import export_row, write_jsonl
from labelmill.store.engine import Database
from labelmill.store.models import Annotation, Consensus, Item, Prediction, User

BATCH = 2000


def iter_export_rows(db: Database, project_id: int) -> Iterator[dict[str, Any]]:
    """One dict per item in DESIGN's JSONL export shape (plus ``meta`` and ``gold`` when set).

    Each batch is read in its own short transaction, so a long export never holds a lock
    that would stall annotators.
    """
    last_id = 0
    while True:
        with db.session() as session:
            items = list(
                session.scalars(
                    select(Item)
                    .where(Item.project_id == project_id, Item.id > last_id)
                    .order_by(Item.id)
                    .limit(BATCH)
                )
            )
            if not items:
                return
            ids = [i.id for i in items]
            annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
            stmt = (
                select(Annotation, User.name)
                .outerjoin(User, User.id == Annotation.annotator_id)
                .where(Annotation.item_id.in_(ids))
                .order_by(Annotation.id)
            )
            for ann, name in session.execute(stmt):
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


def export_jsonl(db: Database, project_id: int, fp: IO[str]) -> int:
    return write_jsonl(iter_export_rows(db, project_id), fp)
