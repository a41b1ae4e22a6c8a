"""Reading and deleting items. Lists page by keyset (``id > cursor``) on the
``(project_id, id)`` index, so page 10,000 costs what page 1 costs."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from labelmill.services.errors import Invalid, NotFound
from labelmill.store.models import Annotation, Consensus, Item


@dataclass(frozen=True)
class ItemFilter:
    """Which items a list or an export covers: gold or not, with or without consensus, how many
    labels, one external id, a slice of ``meta`` (``(("source", "web"),)`` keeps items whose
    ``meta.source`` is ``"web"``)."""

    is_gold: bool | None = None
    has_consensus: bool | None = None
    min_annotations: int | None = None
    max_annotations: int | None = None
    external_id: str | None = None
    meta: tuple[tuple[str, str], ...] = ()

    def apply(self, stmt: Any) -> Any:
        if self.is_gold is not None:
            stmt = stmt.where(Item.is_gold == self.is_gold)
        if self.has_consensus is not None:
            has = exists().where(Consensus.item_id == Item.id)
            stmt = stmt.where(has if self.has_consensus else ~has)
        if self.min_annotations is not None:
            stmt = stmt.where(Item.annotation_count >= self.min_annotations)
        if self.max_annotations is not None:
            stmt = stmt.where(Item.annotation_count <= self.max_annotations)
        if self.external_id is not None:
            stmt = stmt.where(Item.external_id == self.external_id)
        for key, value in self.meta:
            stmt = stmt.where(Item.meta[key].as_string() == value)
        return stmt

    @classmethod
    def parse_slices(cls, slices: list[str] | None, **kwargs: Any) -> ItemFilter:
        """From ``key=value`` strings (the CLI's ``--slice``)."""
        pairs = []
        for text in slices or []:
            key, sep, value = text.partition("=")
            if not sep or not key:
                raise ValueError(f"slice {text!r} must look like key=value (a field of the items' meta)")
            pairs.append((key, value))
        return cls(meta=tuple(pairs), **kwargs)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"i:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "i":
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not one this server handed out", field="cursor") from None


def list_items(
    session: Session,
    project_id: int,
    *,
    limit: int = 100,
    cursor: str | None = None,
    filt: ItemFilter | None = None,
) -> tuple[list[Item], str | None]:
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be between 1 and 1000", field="limit")
    filt = filt or ItemFilter()
    stmt = select(Item).where(Item.project_id == project_id)
    if cursor:
        stmt = stmt.where(Item.id > decode_cursor(cursor))
    rows = list(session.scalars(filt.apply(stmt).order_by(Item.id).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def get_item(session: Session, project_id: int, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None or item.project_id != project_id:
        raise NotFound(f"no item {item_id} in project {project_id}", field="item_id")
    return item


def delete_item(session: Session, project_id: int, item_id: int) -> None:
    item = get_item(session, project_id, item_id)
    session.execute(delete(Item).where(Item.id == item.id))


def item_summary(item: Item, *, with_gold: bool) -> dict[str, Any]:
    """The item as the API shows it; the gold answer only to those allowed to see it."""
    out: dict[str, Any] = {
        "id": item.id,
        "external_id": item.external_id,
        "data": item.data,
        "meta": item.meta,
        "priority": item.priority,
        "annotation_count": item.annotation_count,
        "created_at": item.created_at,
    }
    if with_gold:
        out["is_gold"] = item.is_gold
        out["gold"] = item.gold
    return out


def item_annotations(session: Session, item_id: int) -> list[Annotation]:
    return list(
        session.scalars(select(Annotation).where(Annotation.item_id == item_id).order_by(Annotation.id))
    )
