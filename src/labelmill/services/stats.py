"""Project and annotator statistics for managers: progress, consensus quality, and each
annotator's volume, speed, estimated skill and spam flag."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelmill.store.models import Annotation, AnnotatorSkill, Consensus, Item, Member, Project, User


def project_stats(session: Session, project: Project) -> dict[str, Any]:
    pid = project.id
    count = select(func.count()).select_from(Item).where(Item.project_id == pid)
    items = session.scalar(count) or 0
    gold = session.scalar(count.where(Item.is_gold.is_(True))) or 0
    annotated = session.scalar(count.where(Item.annotation_count > 0)) or 0
    target = float(project.settings.get("target_confidence", 0.95))
    consensus = session.execute(
        select(
            func.count(),
            func.avg(Consensus.confidence),
            func.sum(func.cast(Consensus.confidence < target, type_=Item.annotation_count.type)),
            func.sum(func.cast(Consensus.auto, type_=Item.annotation_count.type)),
        ).where(Consensus.project_id == pid)
    ).one()
    leads: dict[int, list[float]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    for annotator_id, lead in session.execute(
        select(Annotation.annotator_id, Annotation.lead_seconds).where(
            Annotation.project_id == pid, Annotation.annotator_id.is_not(None)
        )
    ):
        if annotator_id is None:
            continue
        counts[annotator_id] += 1
        if lead is not None:
            leads[annotator_id].append(lead)
    skills: dict[int, list[AnnotatorSkill]] = defaultdict(list)
    for row in session.scalars(select(AnnotatorSkill).where(AnnotatorSkill.project_id == pid)):
        skills[row.annotator_id].append(row)
    members = dict(session.execute(select(Member.user_id, Member).where(Member.project_id == pid)).all())
    ids = sorted(set(counts) | set(skills))
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all()) if ids else {}
    annotators = []
    for uid in ids:
        rows = skills.get(uid, [])
        spam = next((r for r in rows if r.spam_score is not None), None)
        member = members.get(uid)
        annotators.append(
            {
                "user_id": uid,
                "name": names.get(uid),
                "annotations": counts.get(uid, 0),
                "median_seconds": statistics.median(leads[uid]) if leads.get(uid) else None,
                "skill": {r.control: r.skill for r in rows},
                "spam_score": spam.spam_score if spam else None,
                "spam_reason": spam.spam_reason if spam else None,
                "paused": bool(member.paused) if member else False,
            }
        )
    return {
        "items": items,
        "gold_items": gold,
        "annotated_items": annotated,
        "annotations": sum(counts.values()),
        "consensus": {
            "items": consensus[0] or 0,
            "mean_confidence": float(consensus[1]) if consensus[1] is not None else None,
            "below_target": int(consensus[2] or 0),
            "auto_labeled": int(consensus[3] or 0),
            "target_confidence": target,
        },
        "annotators": annotators,
    }
