"""Review: reviewers accept, reject or correct submitted annotations.

- accept: the annotation stands;
- reject (a comment is required): the annotation stops counting and its slot goes back to
  the queue, so the item is labelled again by someone else;
- correct: the reviewer's value is stored as the reviewer's own annotation (status
  ``correction``) and becomes the item's label, overriding the crowd's consensus.

What is reviewed: annotations drawn at submit time at the project's ``review_rate`` (1.0 =
all), or, on request, the low-agreement ones: annotations that disagree with an item's
consensus while that consensus is below the project's target confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from labelmill.services import projects as project_service
from labelmill.services.errors import Conflict, Forbidden, Invalid, NotFound
from labelmill.services.jobs import enqueue
from labelmill.services.queue import shift_slots, validate_annotation
from labelmill.store.engine import Database
from labelmill.store.models import Annotation, Consensus, Item, Project, Review, User

Action = Literal["accept", "reject", "correct"]
Mode = Literal["drawn", "low_agreement"]
REVIEWABLE = ("submitted", "pending_review")


@dataclass
class ReviewTask:
    annotation: Annotation
    item: Item


def next_review(db: Database, project_id: int, user: User, *, mode: Mode = "drawn") -> ReviewTask | None:
    with db.session() as session:
        project = project_service.project_for(session, user, project_id, project_service.READ)
        stmt = select(Annotation).where(
            Annotation.project_id == project.id,
            Annotation.annotator_id != user.id,
            Annotation.annotator_id.is_not(None),
        )
        if mode == "drawn":
            stmt = stmt.where(Annotation.status == "pending_review")
        else:
            target = project_service.settings_of(project).target_confidence
            low = exists().where(
                Consensus.item_id == Annotation.item_id,
                Consensus.confidence < target,
                ~Consensus.auto,
                Consensus.value != Annotation.value,
            )
            stmt = stmt.where(Annotation.status.in_(REVIEWABLE), low)
        annotation = session.scalar(stmt.order_by(Annotation.id).limit(1))
        if annotation is None:
            return None
        item = session.get(Item, annotation.item_id)
        assert item is not None
        return ReviewTask(annotation=annotation, item=item)


def review(
    db: Database,
    annotation_id: int,
    user: User,
    action: Action,
    *,
    comment: str = "",
    value: dict[str, Any] | None = None,
) -> Review:
    with db.session(immediate=True) as session:
        annotation = session.get(Annotation, annotation_id)
        if annotation is None:
            raise NotFound(f"no annotation {annotation_id}", field="annotation_id")
        project = project_service.project_for(session, user, annotation.project_id, project_service.READ)
        if annotation.annotator_id == user.id:
            raise Forbidden("you cannot review your own annotation")
        if annotation.status not in REVIEWABLE:
            raise Conflict(f"annotation was already reviewed ({annotation.status})")
        if action == "reject" and not comment.strip():
            raise Invalid("a rejection needs a comment that tells the annotator why", field="comment")
        if action == "correct":
            if value is None:
                raise Invalid("a correction needs the corrected value", field="value")
            item = session.get(Item, annotation.item_id)
            assert item is not None
            validate_annotation(project, item, value)
        _apply(session, project, annotation, user, action, value)
        row = Review(
            project_id=project.id,
            annotation_id=annotation.id,
            reviewer_id=user.id,
            action=action,
            comment=comment,
        )
        session.add(row)
        enqueue(session, "consensus", project.id)
        session.flush()
        return row


def _apply(
    session: Session,
    project: Project,
    annotation: Annotation,
    user: User,
    action: Action,
    value: dict[str, Any] | None,
) -> None:
    if action == "accept":
        annotation.status = "accepted"
        return
    if action == "reject":
        annotation.status = "rejected"
        session.execute(
            update(Item)
            .where(Item.id == annotation.item_id)
            .values(annotation_count=Item.annotation_count - 1)
        )
        item = session.get(Item, annotation.item_id)
        if item is not None and not item.is_gold:  # gold items are outside slot accounting
            shift_slots(session, project, item.id, -1)
        return
    annotation.status = "corrected"
    assert value is not None
    session.add(
        Annotation(
            project_id=project.id,
            item_id=annotation.item_id,
            annotator_id=user.id,
            value=value,
            status="correction",
        )
    )
    existing = session.get(Consensus, annotation.item_id)
    if existing is None:
        session.add(
            Consensus(
                item_id=annotation.item_id,
                project_id=project.id,
                value=value,
                confidence=1.0,
                method="review",
                auto=False,
            )
        )
    else:
        existing.value, existing.confidence, existing.method, existing.auto = value, 1.0, "review", False


def list_reviews(session: Session, project_id: int, *, limit: int = 100) -> list[Review]:
    return list(
        session.scalars(
            select(Review).where(Review.project_id == project_id).order_by(Review.id.desc()).limit(limit)
        )
    )
