"""Consensus refresh: aggregate every annotated item's labels, per control, and store the
consensus, its confidence and each annotator's skill.

Why a debounced whole-project refit rather than an incremental update: Dawid–Skene and its
relatives are global models. One new label changes its annotator's confusion matrix, and with
it the posterior of every item that annotator touched, so an incremental per-item update would
drift from the model it claims to be. A refit is cheap (well under a second for 500k labels), so
arriving annotations only *schedule* a refresh job; while one is queued, further arrivals join
it (the debounce), and a worker runs it. The queue's per-item "needs another label?" decision
uses the stored skills incrementally between refits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from labelmill.quality import methods as aggregation
from labelmill.quality.geometry import box_consensus, keypoint_consensus, polygon_consensus, segment_consensus
from labelmill.quality.mace import MACE
from labelmill.quality.multilabel import MultiLabel
from labelmill.quality.pairwise import ranking_consensus
from labelmill.quality.ratings import rating_consensus
from labelmill.quality.spammers import SpammerConfig, detect_spammers
from labelmill.quality.spans import relation_consensus, span_consensus
from labelmill.quality.transcripts import transcript_consensus
from labelmill.schema import LabelSchema
from labelmill.services import pausing
from labelmill.services.projects import load_schema, project_settings
from labelmill.store.engine import Database
from labelmill.store.models import Annotation, AnnotatorSkill, Consensus, Item, Member, Project

#: Control types aggregated by a categorical model (the project's method, Dawid–Skene by default).
CATEGORICAL = ("choices", "pairwise")
#: Relative keypoint distance (of the image diagonal) under which two clicks are the same point.
KEYPOINT_DISTANCE = 0.02


def _id(key: Hashable) -> int:
    """Quality results are keyed by whatever ids went in; here those are database ids."""
    return int(str(key))


@dataclass
class ItemLabels:
    """All annotations of one item, by annotator id."""

    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    lead_seconds: dict[int, float | None] = field(default_factory=dict)


@dataclass
class ControlResult:
    values: dict[int, Any]
    confidences: dict[int, float]
    method: str
    skills: dict[int, float]


@dataclass
class RefreshResult:
    items: int
    controls: dict[str, str]
    annotators: int
    flagged: list[int]


def _load(
    db: Database, project_id: int
) -> tuple[Project, dict[int, ItemLabels], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        labels: dict[int, ItemLabels] = defaultdict(ItemLabels)
        stmt = (
            select(Annotation.item_id, Annotation.annotator_id, Annotation.value, Annotation.lead_seconds)
            .where(
                Annotation.project_id == project_id,
                Annotation.annotator_id.is_not(None),
                Annotation.status.notin_(("rejected", "correction")),
            )
            .order_by(Annotation.id)
        )
        for item_id, annotator_id, value, lead in session.execute(stmt):
            labels[item_id].values[annotator_id] = value
            labels[item_id].lead_seconds[annotator_id] = lead
        gold: dict[int, dict[str, Any]] = {
            item_id: answer
            for item_id, answer in session.execute(
                select(Item.id, Item.gold).where(Item.project_id == project_id, Item.is_gold.is_(True))
            )
        }
        media: dict[int, dict[str, Any]] = {}
        ids = list(labels)
        for start in range(0, len(ids), 1000):
            for item_id, meta in session.execute(
                select(Item.id, Item.meta).where(Item.id.in_(ids[start : start + 1000]))
            ):
                media[item_id] = (meta or {}).get("media") or {}
        return project, labels, gold, media


def _categorical(
    name: str, key: str | None, labels: Mapping[int, ItemLabels], gold: Mapping[int, Any], method: str
) -> ControlResult | None:
    rows = []
    for item_id, entry in labels.items():
        for annotator, value in entry.values.items():
            label = value.get(name)
            if key is not None and isinstance(label, dict):
                label = label.get(key)
            if isinstance(label, (str, int)) and not isinstance(label, bool):
                rows.append((item_id, annotator, label))
    if not rows:
        return None
    known = {}
    for item_id, answer in gold.items():
        g = (answer or {}).get(name)
        g = g.get(key) if key is not None and isinstance(g, dict) else g
        if g is not None and item_id in labels:
            known[item_id] = g
    model = aggregation.make_aggregator(method, random_state=0).fit(rows, gold=known or None)
    probas = model.predict_proba()
    best = probas.argmax(axis=1)
    values: dict[int, Any] = {}
    confidences: dict[int, float] = {}
    for item, k, row in zip(model.items_, best, probas, strict=True):
        label = model.classes_[k].item() if hasattr(model.classes_[k], "item") else model.classes_[k]
        values[int(item)] = {key: label} if key is not None else label
        confidences[int(item)] = float(row[k])
    skills = {int(w): float(s) for w, s in zip(model.workers_, model.skills_, strict=True)}
    return ControlResult(values, confidences, method, skills)


def _multi_choices(name: str, labels: Mapping[int, ItemLabels]) -> ControlResult | None:
    rows = [
        (item_id, annotator, frozenset(value[name]))
        for item_id, entry in labels.items()
        for annotator, value in entry.values.items()
        if isinstance(value.get(name), list)
    ]
    if not rows:
        return None
    model = MultiLabel(aggregation.make_aggregator("ds")).fit(rows)
    values = {int(i): sorted(str(c) for c in s) for i, s in zip(model.items_, model.labels_, strict=True)}
    probas = getattr(model, "probas_", None)
    confidences: dict[int, float] = {}
    for pos, item in enumerate(model.items_):
        # Each class is its own binary decision; the item is as sure as its least sure class.
        p = np.asarray(probas[pos]) if probas is not None else np.array([1.0])
        confidences[int(item)] = float(np.min(np.maximum(p, 1 - p))) if p.size else 1.0
    return ControlResult(values, confidences, "ds-multilabel", {})


def _rating(name: str, scale: tuple[int, int], labels: Mapping[int, ItemLabels]) -> ControlResult | None:
    rows = [
        (item_id, annotator, value[name])
        for item_id, entry in labels.items()
        for annotator, value in entry.values.items()
        if isinstance(value.get(name), int) and not isinstance(value.get(name), bool)
    ]
    if not rows:
        return None
    result = rating_consensus(rows, method="bias_corrected", scale=scale)
    values = {_id(i): r.value for i, r in result.items.items()}
    confidences = {_id(i): float(r.confidence) for i, r in result.items.items()}
    skills = {_id(w): float(s) for w, s in result.skills.items()}
    return ControlResult(values, confidences, "rating-bias-corrected", skills)


def _per_item(
    name: str,
    ctype: str,
    labels: Mapping[int, ItemLabels],
    media: Mapping[int, Mapping[str, Any]],
    source: str,
    spans_result: ControlResult | None = None,
    spans_name: str | None = None,
) -> ControlResult | None:
    values: dict[int, Any] = {}
    confidences: dict[int, float] = {}
    agreement: dict[int, list[float]] = defaultdict(list)
    for item_id, entry in labels.items():
        given = {a: v[name] for a, v in entry.values.items() if name in v}
        if not given:
            continue
        size = media.get(item_id, {}).get(source) or {}
        image_size = (size["width"], size["height"]) if "width" in size and "height" in size else None
        if ctype == "spans":
            result = span_consensus(given)
        elif ctype == "relations" and spans_name is not None:
            spans = {a: entry.values[a].get(spans_name, []) for a in given}
            result = relation_consensus(spans, given, span_consensus(spans))
        elif ctype == "boxes":
            result = box_consensus(given, image_size=image_size)
        elif ctype == "polygons":
            result = polygon_consensus(given, image_size=image_size)
        elif ctype == "keypoints":
            diagonal = float(np.hypot(*image_size)) if image_size else 100.0
            result = keypoint_consensus(
                given, distance_threshold=KEYPOINT_DISTANCE * diagonal, image_size=image_size
            )
        elif ctype == "segments":
            result = segment_consensus(given)
        elif ctype in ("transcript", "text"):
            texts = [t for t in given.values() if isinstance(t, str)]
            if not texts:
                continue
            tc = transcript_consensus(texts, method="rover" if ctype == "transcript" else "medoid")
            values[item_id], confidences[item_id] = tc.text, float(tc.confidence)
            continue
        elif ctype == "ranking":
            rc = ranking_consensus({item_id: given})[item_id]
            values[item_id], confidences[item_id] = list(rc.order), float(rc.confidence)
            for annotator, tau in rc.agreement.items():
                agreement[_id(annotator)].append(float(tau))
            continue
        else:
            return None
        values[item_id], confidences[item_id] = result.value, float(result.confidence)
        supported = {a for members in result.members for a, _ in members}
        for annotator in given:
            agreement[int(annotator)].append(1.0 if annotator in supported or not result.value else 0.0)
    if not values:
        return None
    skills = {a: float(np.mean(v)) for a, v in agreement.items()}
    method = {
        "spans": "span-vote",
        "relations": "relation-vote",
        "boxes": "box-fusion",
        "polygons": "polygon-medoid",
        "keypoints": "keypoint-median",
        "segments": "segment-fusion",
        "transcript": "rover",
        "text": "medoid",
        "ranking": "bradley-terry",
    }[ctype]
    return ControlResult(values, confidences, method, skills)


def aggregate_project(
    schema: LabelSchema,
    labels: Mapping[int, ItemLabels],
    gold: Mapping[int, dict[str, Any]],
    media: Mapping[int, Mapping[str, Any]],
    *,
    method: str = aggregation.DEFAULT_METHOD,
) -> dict[str, ControlResult]:
    """Consensus of every control of ``schema`` over ``labels`` (pure: no database); ``method``
    aggregates the categorical controls (``choices``, ``pairwise``)."""
    results: dict[str, ControlResult] = {}
    for control in schema.controls:
        ctype, name = control.type, control.name
        if ctype == "choices":
            res = _categorical(name, None, labels, gold, method)
        elif ctype == "pairwise":
            res = _categorical(name, "choice", labels, gold, method)
        elif ctype == "multi_choices":
            res = _multi_choices(name, labels)
        elif ctype == "rating":
            res = _rating(name, (int(getattr(control, "min", 1)), int(getattr(control, "max", 5))), labels)
        elif ctype == "relations":
            res = _per_item(
                name, ctype, labels, media, control.source, spans_name=getattr(control, "spans", None)
            )
        else:
            res = _per_item(name, ctype, labels, media, control.source)
        if res is not None:
            results[name] = res
    return results


def _spam_flags(
    schema: LabelSchema,
    labels: Mapping[int, ItemLabels],
    results: Mapping[str, ControlResult],
    gold: Mapping[int, dict[str, Any]],
    config: SpammerConfig | None = None,
) -> dict[int, tuple[float, str]]:
    """Spammer scores from the first categorical control (the one constant or random answering shows in).

    Judged on evidence only (gold answers, or items shared with peers); MACE's spamming
    probability is quoted beside a flag, never a flag by itself."""
    control = next((c for c in schema.controls if c.type == "choices" and c.name in results), None)
    if control is None:
        return {}
    name = control.name
    rows, durations = [], []
    for item_id, entry in labels.items():
        for annotator, value in entry.values.items():
            if isinstance(value.get(name), str):
                rows.append((item_id, annotator, value[name]))
                lead = entry.lead_seconds.get(annotator)
                durations.append(np.nan if lead is None else float(lead))
    if not rows:
        return {}
    gold_labels = {i: g[name] for i, g in gold.items() if isinstance(g, dict) and name in g}
    mace = MACE(random_state=0).fit(rows)
    spamming = {w: float(s) for w, s in zip(mace.workers_, mace.spamming_, strict=True)}
    flags = detect_spammers(
        rows,
        durations=np.asarray(durations) if not np.all(np.isnan(durations)) else None,
        gold=gold_labels or None,
        spamming=spamming,
        config=config,
    )
    return {int(f.worker): (float(f.score), "; ".join(f.reasons)) for f in flags if f.is_spammer}


def _corrections(db: Database, project_id: int) -> dict[int, dict[str, Any]]:
    """A reviewer's correction is the item's label; the newest one wins."""
    with db.session() as session:
        rows = session.execute(
            select(Annotation.item_id, Annotation.value)
            .where(Annotation.project_id == project_id, Annotation.status == "correction")
            .order_by(Annotation.id)
        )
        return {item_id: value for item_id, value in rows}


def _pause_spammers(session: Session, project: Project, flags: Mapping[int, tuple[float, str]]) -> None:
    """Annotators the quality engine flags are paused until a manager resumes them, when the
    project's ``auto_pause`` is on and no manager decided otherwise."""
    settings = project_settings(project)
    for member in session.scalars(
        select(Member).where(Member.project_id == project.id, Member.user_id.in_(list(flags)))
    ):
        score, reason = flags[member.user_id]
        pausing.auto_pause(member, settings, f"flagged as a likely spammer (score {score:.2f}): {reason}")


def refresh_consensus(db: Database, project_id: int) -> RefreshResult:
    project, labels, gold, media = _load(db, project_id)
    schema = load_schema(project.label_schema)
    results = aggregate_project(schema, labels, gold, media)
    settings = project_settings(project)
    spam_config = SpammerConfig.from_spam_threshold(settings.spam_threshold)
    flags = _spam_flags(schema, labels, results, gold, spam_config) if settings.spam_detection else {}
    corrections = _corrections(db, project_id)
    rows = []
    for item_id in labels:
        value: dict[str, Any] = {}
        confidences: list[float] = []
        methods: set[str] = set()
        for name, res in results.items():
            if item_id in res.values:
                value[name] = res.values[item_id]
                confidences.append(res.confidences[item_id])
                methods.add(res.method)
        answer = gold.get(item_id)
        if isinstance(answer, dict) and answer:
            value.update(answer)  # a known true answer beats any estimate of it
            methods = {"gold"} if set(answer) >= set(value) else methods | {"gold"}
        if item_id in corrections:
            value, confidences, methods = corrections[item_id], [1.0], {"review"}
        if value:
            rows.append(
                {
                    "item_id": item_id,
                    "project_id": project_id,
                    "value": value,
                    "confidence": 1.0 if methods == {"gold"} else (min(confidences) if confidences else None),
                    "method": "+".join(sorted(methods)),
                    "auto": False,
                }
            )
    skill_rows = []
    annotators: set[int] = set()
    for name, res in results.items():
        for annotator, skill in res.skills.items():
            annotators.add(annotator)
            score, reason = flags.get(annotator, (None, None))
            skill_rows.append(
                {
                    "project_id": project_id,
                    "annotator_id": annotator,
                    "control": name,
                    "skill": skill,
                    "method": res.method,
                    "spam_score": score,
                    "spam_reason": reason,
                }
            )
    with db.session(immediate=True) as session:
        # Items people labelled get the people's consensus, replacing any model auto-label;
        # auto-labelled items nobody labelled are not in ``rows`` and keep theirs.
        ids = [r["item_id"] for r in rows]
        for start in range(0, len(ids), 1000):
            session.execute(delete(Consensus).where(Consensus.item_id.in_(ids[start : start + 1000])))
        for start in range(0, len(rows), 1000):
            session.execute(insert(Consensus), rows[start : start + 1000])
        session.execute(delete(AnnotatorSkill).where(AnnotatorSkill.project_id == project_id))
        if skill_rows:
            session.execute(insert(AnnotatorSkill), skill_rows)
        _pause_spammers(session, project, flags)
    return RefreshResult(
        items=len(rows),
        controls={n: r.method for n, r in results.items()},
        annotators=len(annotators),
        flagged=sorted(flags),
    )
