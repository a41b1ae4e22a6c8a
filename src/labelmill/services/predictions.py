"""Adding model predictions to existing items (the SDK's ``add_predictions``), all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from labelmill.schema import AnnotationValueError, check_value
from labelmill.services.errors import Invalid
from labelmill.services.projects import load_schema
from labelmill.store.engine import Database
from labelmill.store.models import Item, Prediction, Project


def add_predictions(db: Database, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
    """Store predictions addressed by ``external_id``; any bad entry stores nothing."""
    with db.session(immediate=True) as session:
        return add_predictions_in(session, project_id, predictions)


def add_predictions_in(session: Session, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
    """:func:`add_predictions` in the caller's transaction (the API's request session)."""
    project = session.get(Project, project_id)
    assert project is not None
    schema = load_schema(project.label_schema)
    wanted = list({str(p["external_id"]) for p in predictions})
    items: dict[str, Item] = {}
    for start in range(0, len(wanted), 1000):
        for item in session.scalars(
            select(Item).where(
                Item.project_id == project_id, Item.external_id.in_(wanted[start : start + 1000])
            )
        ):
            items[item.external_id] = item
    rows = []
    for i, p in enumerate(predictions):
        found = items.get(str(p["external_id"]))
        if found is None:
            raise Invalid(
                f"predictions[{i}].external_id: no item {p['external_id']!r} in this project",
                field=f"predictions[{i}].external_id",
            )
        try:
            check_value(
                schema,
                p["value"],
                data=found.data,
                media=(found.meta or {}).get("media") or {},
                partial=True,
            )
        except AnnotationValueError as exc:
            issue = exc.issues[0]
            raise Invalid(
                f"predictions[{i}].value.{issue.path}: {issue.message}",
                field=f"predictions[{i}].value.{issue.path}",
            ) from None
        rows.append(
            {
                "project_id": project_id,
                "item_id": found.id,
                "value": p["value"],
                "score": p.get("score"),
                "model_version": p.get("model_version") or "",
            }
        )
    if rows:
        session.execute(insert(Prediction), rows)
    return len(rows)
