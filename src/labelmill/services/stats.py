"""Project progress and per-annotator statistics for managers: how far along the project is,
when it will finish, and how fast, how accurate and how trusted each annotator is."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.orm import Session

from labelmill.quality.gold import gold_score, is_correct
from labelmill.services.projects import load_schema, settings_of
from labelmill.store.models import (
    Annotation,
    AnnotatorSkill,
    Consensus,
    Item,
    Member,
    Project,
    Task,
    User,
    labels_needed,
)

#: Window over which the recent labelling rate (for the time-to-finish estimate) is measured.
RATE_WINDOW = timedelta(hours=1)
#: The least evidence an estimate of the time to finish needs: a minute of work said 630 hours.
ETA_MIN_LABELS = 20
ETA_MIN_SECONDS = 600.0
#: Coverage of the interval given with the estimate.
ETA_COVERAGE = 0.90


def eta_estimate(labels_left: int, labels: int, seconds: float) -> dict[str, float | None]:
    """Time to finish ``labels_left`` at the rate of ``labels`` submitted over ``seconds``, with a
    90% interval, or Nones when there is too little evidence (fewer than 20 labels or 10 minutes).

    Submissions are taken as a Poisson process; the exact (Garwood) interval of its rate comes from
    chi-square quantiles, and the time is the labels left over the rate, so a slow hour widens the
    interval instead of promising a date.
    """
    from scipy.stats import chi2

    if labels_left <= 0:
        return {"eta_seconds": 0.0, "eta_low": 0.0, "eta_high": 0.0}
    if labels < ETA_MIN_LABELS or seconds < ETA_MIN_SECONDS:
        return {"eta_seconds": None, "eta_low": None, "eta_high": None}
    tail = (1 - ETA_COVERAGE) / 2
    rate = labels / seconds
    rate_low = float(chi2.ppf(tail, 2 * labels)) / (2 * seconds)
    rate_high = float(chi2.ppf(1 - tail, 2 * labels + 2)) / (2 * seconds)
    return {
        "eta_seconds": round(labels_left / rate),
        "eta_low": round(labels_left / rate_high),
        "eta_high": round(labels_left / rate_low),
    }


def _progress(session: Session, project: Project) -> dict[str, Any]:
    overlap = settings_of(project).overlap
    needed = labels_needed(overlap)
    done = Item.annotation_count >= needed
    row = session.execute(
        select(
            func.count(),
            func.sum(case((done, 1), else_=0)),
            func.sum(case((~done & (Item.assigned > 0), 1), else_=0)),
            func.sum(case((done, 0), else_=needed - Item.annotation_count)),
        ).where(Item.project_id == project.id, ~Item.is_gold)
    ).one()
    total, n_done, in_progress, labels_left = (int(v or 0) for v in row)
    gold = int(
        session.scalar(
            select(func.count()).select_from(Item).where(Item.project_id == project.id, Item.is_gold)
        )
        or 0
    )
    now = datetime.now(UTC)
    since = now - RATE_WINDOW
    people = (Annotation.project_id == project.id, Annotation.task_id.is_not(None))
    recent, first = session.execute(
        select(func.count(), func.min(Annotation.created_at)).where(*people, Annotation.created_at >= since)
    ).one()
    recent = int(recent or 0)
    earlier = session.scalar(select(Annotation.id).where(*people, Annotation.created_at < since).limit(1))
    # The rate is over the whole window once work began before it, else since the first label.
    start = since if earlier is not None or first is None else first
    seconds = max((now - start).total_seconds(), 1.0)
    labels_left = max(labels_left, 0)
    return {
        "items": total,
        "gold_items": gold,
        "done": n_done,
        "in_progress": in_progress,
        "remaining": total - n_done,
        "labels_remaining": labels_left,
        "labels_per_hour": round(recent / seconds * 3600, 2) if recent else 0.0,
        **eta_estimate(labels_left, recent, seconds),
    }


def _consensus_summary(session: Session, project: Project) -> dict[str, Any]:
    target = settings_of(project).target_confidence
    row = session.execute(
        select(
            func.count(),
            func.avg(Consensus.confidence),
            func.sum(case((Consensus.confidence < target, 1), else_=0)),
            func.sum(func.cast(Consensus.auto, Integer)),
        ).where(Consensus.project_id == project.id)
    ).one()
    return {
        "items": int(row[0] or 0),
        "mean_confidence": float(row[1]) if row[1] is not None else None,
        "below_target": int(row[2] or 0),
        "auto_labeled": int(row[3] or 0),
        "target_confidence": target,
    }


def annotator_stats(session: Session, project: Project) -> list[dict[str, Any]]:
    pid = project.id
    controls = {c.name: c.type for c in load_schema(project.label_schema).controls}
    tasks: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for uid, state, n in session.execute(
        select(Task.annotator_id, Task.state, func.count())
        .where(Task.project_id == pid)
        .group_by(Task.annotator_id, Task.state)
    ):
        tasks[uid][state] = n
    leads: dict[int, list[float]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    reviews: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    gold_hits: dict[int, list[bool]] = defaultdict(list)
    agreement: dict[int, list[bool]] = defaultdict(list)
    rows = session.execute(
        select(
            Annotation.annotator_id,
            Annotation.value,
            Annotation.lead_seconds,
            Annotation.status,
            Item.is_gold,
            Item.gold,
            Consensus.value,
        )
        .join(Item, Item.id == Annotation.item_id)
        .outerjoin(Consensus, Consensus.item_id == Annotation.item_id)
        .where(
            Annotation.project_id == pid,
            Annotation.annotator_id.is_not(None),
            Annotation.status != "correction",
        )
    )
    for uid, value, lead, status, is_gold, gold, consensus in rows:
        counts[uid] += 1
        if lead is not None:
            leads[uid].append(lead)
        reviews[uid][status] += 1
        if is_gold and gold:
            score = gold_score(controls, value, gold)
            if score is not None:
                gold_hits[uid].append(is_correct(score))
        elif consensus:
            score = gold_score(controls, value, consensus)
            if score is not None:
                agreement[uid].append(is_correct(score))
    skills: dict[int, list[AnnotatorSkill]] = defaultdict(list)
    for skill in session.scalars(select(AnnotatorSkill).where(AnnotatorSkill.project_id == pid)):
        skills[skill.annotator_id].append(skill)
    members = {m.user_id: m for m in session.scalars(select(Member).where(Member.project_id == pid))}
    ids = sorted(set(counts) | set(tasks) | set(skills))
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all()) if ids else {}
    out = []
    for uid in ids:
        reviewed = {k: reviews[uid][k] for k in ("accepted", "rejected", "corrected")}
        n_reviewed = sum(reviewed.values())
        spam = next((s for s in skills.get(uid, []) if s.spam_score is not None), None)
        member = members.get(uid)
        out.append(
            {
                "user_id": uid,
                "name": names.get(uid),
                "role": member.role if member else None,
                "annotations": counts.get(uid, 0),
                "tasks_done": tasks[uid]["submitted"],
                "skips": tasks[uid]["skipped"],
                "expired": tasks[uid]["expired"],
                "median_seconds": statistics.median(leads[uid]) if leads.get(uid) else None,
                "gold_accuracy": _share(gold_hits.get(uid)),
                "gold_answers": len(gold_hits.get(uid, [])),
                "agreement_with_consensus": _share(agreement.get(uid)),
                "skill": {s.control: s.skill for s in skills.get(uid, [])},
                "review_acceptance": reviewed["accepted"] / n_reviewed if n_reviewed else None,
                "reviews": reviewed,
                "spam_score": spam.spam_score if spam else None,
                "spam_reason": spam.spam_reason if spam else None,
                "paused": bool(member.paused) if member else False,
                "pause_reason": member.pause_reason if member else None,
                "qualification": member.qualification if member else None,
            }
        )
    return out


def _share(hits: list[bool] | None) -> float | None:
    return sum(hits) / len(hits) if hits else None


def project_stats(session: Session, project: Project) -> dict[str, Any]:
    count = select(func.count()).select_from(Item).where(Item.project_id == project.id)
    return {
        "items": session.scalar(count) or 0,
        "gold_items": session.scalar(count.where(Item.is_gold)) or 0,
        "annotated_items": session.scalar(count.where(Item.annotation_count > 0)) or 0,
        "annotations": session.scalar(
            select(func.count()).select_from(Annotation).where(Annotation.project_id == project.id)
        )
        or 0,
        "progress": _progress(session, project),
        "consensus": _consensus_summary(session, project),
        "annotators": annotator_stats(session, project),
    }
