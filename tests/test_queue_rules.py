"""The queue's truth table: every combination of the gates, run against all three paths (the
SQLAlchemy implementation, the SQLite event-loop hot path, the PostgreSQL asyncpg hot path),
each answer checked against the rules as written here, independently of the code under test.

Next task: token (good, unknown, expired, wrong kind) x caller (member, stranger, admin on a
first visit) x paused x live lease x qualification (not asked for, needed, passed) x gold items
(some, none) x gold draw (yes, no) x another annotator's lease (expired, live).

Submit: token (good, expired) x owner (the caller, someone else) x task state (leased, past its
time but not reclaimed, reclaimed with the item's slot free, reclaimed with the item full,
submitted, skipped) x Idempotency-Key (none, fresh, this task's own, another task's, too long) x
gold task x value (right, wrong, invalid) x adaptive overlap (on, off).

Each case is built afresh (its own project and users) once per path; the paths must give the
same answer and leave the same state, and the hot paths must serve the common case themselves.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from labelmill.services import queue
from labelmill.services.errors import LabelmillError
from labelmill.services.queue import pg as queue_pg
from labelmill.services.queue import sqlite as queue_sqlite
from labelmill.services.users import authenticate_token, create_token, hash_token
from labelmill.store.models import Annotation, Item, Job, Member, Project, Task, User
from labelmill.store.pg_async import HotPath
from labelmill.store.sqlite_hot import SqliteHotPath

SCHEMA = {"controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["pos", "neg"]}]}
GOLD_RATE = 0.5
DRAW_GOLD, DRAW_NO_GOLD = 0.2, 0.8
LONG_KEY = "k" * 201


# --------------------------------------------------------------------------- the paths


class Paths:
    """The ORM path and the database's hot path, called as the API calls them: the hot path
    first, then the full implementation when it answers FullPath."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.loop: asyncio.AbstractEventLoop | None = None
        if db.dialect == "sqlite":
            self.sqlite: SqliteHotPath | None = SqliteHotPath(db)
            self.pg: HotPath | None = None
        else:
            self.sqlite = None
            self.loop = asyncio.new_event_loop()
            self.pg = HotPath(db.url, min_size=1, max_size=2)
            self.loop.run_until_complete(self.pg.open())

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None and self.loop is not None:
            self.loop.run_until_complete(self.pg.close())
            self.loop.close()

    def _user(self, secret: str, kind: str | None) -> User:
        with self.db.connect() as conn:
            return authenticate_token(conn, secret, kind=kind)

    def next_task(self, path: str, pid: int, secret: str, kind: str | None, draw: float) -> tuple[Any, bool]:
        """(the answer, whether the hot path served it alone)"""
        if path == "orm":
            return queue.next_task(self.db, pid, self._user(secret, kind), draw=draw), False
        if self.sqlite is not None:
            answer = queue_sqlite.next_task(self.sqlite, pid, hash_token(secret), kind, draw=draw)
        else:
            assert self.pg is not None and self.loop is not None
            answer = self.loop.run_until_complete(
                queue_pg.next_task(self.pg, pid, hash_token(secret), kind, draw=draw)
            )
        if isinstance(answer, queue.FullPath):
            return queue.next_task(self.db, pid, answer.user, draw=answer.draw), False
        return answer, True

    def submit(self, path: str, task_id: int, secret: str, value: Any, key: str | None) -> tuple[Any, bool]:
        if path == "orm":
            return queue.submit(self.db, task_id, self._user(secret, None), value, idempotency_key=key), False
        if self.sqlite is not None:
            answer = queue_sqlite.submit(
                self.sqlite, task_id, hash_token(secret), None, value, idempotency_key=key
            )
        else:
            assert self.pg is not None and self.loop is not None
            answer = self.loop.run_until_complete(
                queue_pg.submit(self.pg, task_id, hash_token(secret), None, value, idempotency_key=key)
            )
        if isinstance(answer, queue.FullPath):
            return queue.submit(self.db, task_id, answer.user, value, idempotency_key=key), False
        return answer, True


@pytest.fixture
def paths(db: Any) -> Iterator[Paths]:
    p = Paths(db)
    yield p
    p.close()


def _outcome(call: Any) -> tuple[Any, bool]:
    try:
        return call()
    except LabelmillError as exc:
        return type(exc).__name__, False


_names = itertools.count()


def _user(s: Any, *, role: str = "member") -> User:
    user = User(name=f"u{next(_names)}", role=role, is_active=True)
    s.add(user)
    s.flush()
    return user


def _task(s: Any, pid: int, item: Item, user: User, state: str, *, expired: bool = False) -> Task:
    now = datetime.now(UTC)
    task = Task(
        project_id=pid,
        item_id=item.id,
        annotator_id=user.id,
        state=state,
        is_gold=item.is_gold,
        leased_at=now - timedelta(seconds=30),
        expires_at=now - timedelta(seconds=5) if expired else now + timedelta(seconds=600),
    )
    s.add(task)
    s.flush()
    return task


def _take_slot(item: Item) -> None:
    item.assigned += 1
    item.is_open = item.assigned < (item.needed or 1)


# --------------------------------------------------------------------------- next task


@dataclass(frozen=True)
class NextCase:
    token: str  # good, unknown, expired, wrong_kind
    caller: str  # member, stranger, admin
    paused: bool
    live: bool
    qualification: str  # none, needed, passed
    gold_items: bool
    draw_gold: bool
    other_expired: bool

    def expected(self) -> tuple[Any, bool]:
        """(the answer as :func:`_next_view` shows it, whether it is the hot paths' common case)"""
        if self.token != "good":
            return "Unauthorized", False
        if self.caller == "stranger":
            return "NotFound", False
        if self.paused:
            return "Forbidden", False
        if self.live:
            return ("lease", "r2", False, "live"), False
        qualified = self.caller == "admin" or self.qualification != "needed"
        if not qualified:
            return (("lease", "g0", True, "new") if self.gold_items else None), False
        if self.draw_gold and self.gold_items:
            return ("lease", "g0", True, "new"), False
        # the other annotator's expired lease on r0 is reclaimed first, so r0 is free again
        regular = ("lease", "r0" if self.other_expired else "r1", False, "new")
        common = self.caller == "member" and not self.draw_gold and not self.other_expired
        return regular, common

    def state_after(self) -> dict[str, Any]:
        """What the database holds afterwards, where the rules say it (the other's task state:
        reclaimed only when the call got past the gates)."""
        outcome, _ = self.expected()
        reached = (isinstance(outcome, tuple) and outcome[3] == "new") or outcome is None
        return {"other_task": "expired" if self.other_expired and reached else "leased"}


def _next_cases() -> list[NextCase]:
    cases = []
    for caller, paused, live, qual, gold, draw, expired in itertools.product(
        ("member", "stranger", "admin"),
        (False, True),
        (False, True),
        ("none", "needed", "passed"),
        (False, True),
        (False, True),
        (False, True),
    ):
        if caller != "member" and (paused or live):
            continue  # no membership: nothing to pause, no lease of theirs
        cases.append(NextCase("good", caller, paused, live, qual, gold, draw, expired))
    for token, caller, paused, live in itertools.product(
        ("unknown", "expired", "wrong_kind"), ("member", "admin"), (False, True), (False, True)
    ):
        if caller == "member" or not (paused or live):
            cases.append(NextCase(token, caller, paused, live, "none", True, False, False))
    return cases


NEXT_CASES = _next_cases()


def _build_next(db: Any, case: NextCase) -> tuple[int, str, str | None, dict[str, int]]:
    """The case's project; returns (project id, token secret, token kind required, task ids)."""
    settings = {
        "overlap": 1,
        "gold_rate": GOLD_RATE,
        "qualification_size": 0 if case.qualification == "none" else 1,
    }
    with db.session() as s:
        project = Project(name=f"p{next(_names)}", label_schema=SCHEMA, settings=settings)
        s.add(project)
        s.flush()
        pid = project.id
        items = {
            name: Item(project_id=pid, external_id=name, data={"text": name}, meta={"answer": "secret"})
            for name in ("r0", "r1", "r2")
        }
        if case.gold_items:
            items["g0"] = Item(
                project_id=pid, external_id="g0", data={"text": "g"}, gold={"label": "pos"}, is_gold=True
            )
        s.add_all(items.values())
        s.flush()
        me = _user(s, role="admin" if case.caller == "admin" else "member")
        other = _user(s)
        s.add(Member(project_id=pid, user_id=other.id, role="annotator", qualification="qualified"))
        if case.caller == "member":
            s.add(
                Member(
                    project_id=pid,
                    user_id=me.id,
                    role="annotator",
                    paused=case.paused,
                    pause_reason="by the table" if case.paused else None,
                    qualification="qualified" if case.qualification == "passed" else "pending",
                )
            )
        tasks = {"other": _task(s, pid, items["r0"], other, "leased", expired=case.other_expired).id}
        _take_slot(items["r0"])
        if case.live:
            tasks["live"] = _task(s, pid, items["r2"], me, "leased").id
            _take_slot(items["r2"])
        lifetime = timedelta(seconds=-1) if case.token == "expired" else None
        secret, _ = create_token(s, me, name="t", lifetime=lifetime)
    if case.token == "unknown":
        secret = "lm_" + "x" * 40
    return pid, secret, ("session" if case.token == "wrong_kind" else None), tasks


def _next_view(db: Any, answer: Any, tasks: dict[str, int]) -> Any:
    if not isinstance(answer, queue.Lease):
        return answer
    with db.session() as s:
        external = s.scalar(select(Item.external_id).where(Item.id == answer.item.id))
    assert answer.item.meta is None  # never the item's meta: the schema shows none of it
    return ("lease", external, answer.task.is_gold, "live" if answer.task.id == tasks.get("live") else "new")


def _next_state(db: Any, pid: int, tasks: dict[str, int]) -> dict[str, Any]:
    with db.session() as s:
        other = s.get(Task, tasks["other"])
        assert other is not None
        return {"other_task": other.state}


def _slots(db: Any, pid: int) -> dict[str, tuple[int, bool]]:
    with db.session() as s:
        rows = s.execute(select(Item.external_id, Item.assigned, Item.is_open).where(Item.project_id == pid))
        return {e: (a, o) for e, a, o in rows}


def test_next_task_truth_table(db: Any, paths: Paths) -> None:
    assert len(NEXT_CASES) > 150
    for case in NEXT_CASES:
        draw = DRAW_GOLD if case.draw_gold else DRAW_NO_GOLD
        expected, common = case.expected()
        seen = {}
        for path in ("orm", "hot"):
            pid, secret, kind, tasks = _build_next(db, case)
            answer, served = _outcome(lambda: paths.next_task(path, pid, secret, kind, draw))  # noqa: B023
            view = _next_view(db, answer, tasks)
            assert view == expected, (path, case)
            assert _next_state(db, pid, tasks) == case.state_after(), (path, case)
            if path == "hot":
                assert served == common, (case, served)
            seen[path] = _slots(db, pid)
        assert seen["orm"] == seen["hot"], case


# --------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class SubmitCase:
    token: str  # good, expired
    owner: bool
    state: str  # leased, overdue, late_free, late_full, submitted, skipped
    key: str  # none, fresh, own, other, long
    gold: bool
    value: str  # right, wrong, invalid
    adaptive: bool

    def key_value(self) -> str | None:
        return {"none": None, "fresh": "fresh-key", "own": "own-key", "other": "other-key", "long": LONG_KEY}[
            self.key
        ]

    def label(self) -> Any:
        return {"right": "pos", "wrong": "neg", "invalid": "maybe"}[self.value]

    def expected(self) -> tuple[Any, bool]:
        """(the answer: an error's name, ``stored`` or ``replayed``; the hot paths' common case)"""
        if self.token != "good":
            return "Unauthorized", False
        if self.key == "long":
            return "Invalid", False
        if not self.owner:
            return "NotFound", False
        if self.state == "submitted":
            return ("replayed" if self.key == "own" else "Conflict"), False
        if self.state == "skipped":
            return "Conflict", False
        if self.value == "invalid":
            # refused up front by whichever path reads the task (the hot one when it may store)
            return "Invalid", self.state in ("leased", "overdue") and not self.gold and not self.adaptive
        if self.state == "late_full" and not self.gold:
            return "Conflict", False
        if self.key == "other":
            return "Conflict", False
        common = self.state in ("leased", "overdue") and not self.gold and not self.adaptive
        return "stored", common

    def state_after(self) -> dict[str, Any]:
        """The task, the item's slots and the member's standing after the call."""
        outcome, _ = self.expected()
        stored = outcome == "stored"
        before = {"leased": "leased", "overdue": "leased", "late_free": "expired", "late_full": "expired"}
        task_state = "submitted" if stored else before.get(self.state, self.state)
        needed: int | None = None
        member = ("pending", False)
        if stored and self.gold:
            member = ("qualified", False) if self.value == "right" else ("pending", True)
        if stored and not self.gold and self.adaptive:
            needed = 2  # one label at the default skill 0.7 is below target 0.95: ask for another
        return {"task": task_state, "needed": needed, "member": member}


def _submit_cases() -> list[SubmitCase]:
    states = ("leased", "overdue", "late_free", "late_full", "submitted", "skipped")
    keys = ("none", "fresh", "own", "other", "long")
    cases = [
        SubmitCase("good", True, state, key, gold, value, adaptive)
        for state, key, gold, value, adaptive in itertools.product(
            states, keys, (False, True), ("right", "wrong", "invalid"), (False, True)
        )
    ]
    cases += [
        SubmitCase("good", False, state, "none", gold, "right", False)
        for state in states
        for gold in (False, True)
    ]
    cases += [
        SubmitCase("expired", owner, "leased", "none", False, "right", False) for owner in (True, False)
    ]
    return cases


SUBMIT_CASES = _submit_cases()


def _build_submit(db: Any, case: SubmitCase) -> tuple[int, int, str, int]:
    """(project id, task id, the caller's token, the target item's id)"""
    settings = {"overlap": 1, "max_overlap": 2 if case.adaptive else 1, "qualification_size": 1}
    with db.session() as s:
        project = Project(name=f"p{next(_names)}", label_schema=SCHEMA, settings=settings)
        s.add(project)
        s.flush()
        pid = project.id
        if case.gold:
            target = Item(
                project_id=pid, external_id="g", data={"text": "g"}, gold={"label": "pos"}, is_gold=True
            )
        else:
            target = Item(project_id=pid, external_id="i", data={"text": "i"})
        elsewhere = Item(project_id=pid, external_id="e", data={"text": "e"})
        s.add_all([target, elsewhere])
        s.flush()
        me, other, third = _user(s), _user(s), _user(s)
        for user in (me, other, third):
            s.add(Member(project_id=pid, user_id=user.id, role="annotator", qualification="pending"))
        owner = me if case.owner else other
        state = {"overdue": "leased", "late_free": "expired", "late_full": "expired"}.get(
            case.state, case.state
        )
        task = _task(s, pid, target, owner, state, expired=case.state == "overdue")
        if not case.gold and case.state in ("leased", "overdue", "submitted"):
            _take_slot(target)
        if not case.gold and case.state == "late_full":
            _task(s, pid, target, third, "leased")
            _take_slot(target)
        if case.state == "submitted":
            s.add(
                Annotation(
                    project_id=pid,
                    item_id=target.id,
                    annotator_id=owner.id,
                    task_id=task.id,
                    value={"label": "pos"},
                    idempotency_key="own-key",
                )
            )
            target.annotation_count = 1
        # the caller's annotation of another item, under the key "other-key"
        done = _task(s, pid, elsewhere, me, "submitted")
        s.add(
            Annotation(
                project_id=pid,
                item_id=elsewhere.id,
                annotator_id=me.id,
                task_id=done.id,
                value={"label": "neg"},
                idempotency_key="other-key",
            )
        )
        lifetime = timedelta(seconds=-1) if case.token == "expired" else None
        secret, _ = create_token(s, me, name="t", lifetime=lifetime)
        return pid, task.id, secret, target.id


def _submit_view(answer: Any, first_id: int | None) -> Any:
    if isinstance(answer, str):
        return answer
    annotation, created = answer
    if created:
        assert annotation.value is not None
        return "stored"
    assert annotation.id == first_id  # a replay returns the first annotation
    return "replayed"


def _submit_state(db: Any, pid: int, task_id: int, item_id: int, me: int) -> dict[str, Any]:
    with db.session() as s:
        task = s.get(Task, task_id)
        item = s.get(Item, item_id)
        assert task is not None and item is not None
        member = s.scalar(select(Member).where(Member.project_id == pid, Member.user_id == me))
        assert member is not None
        return {
            "task": task.state,
            "needed": item.needed,
            "member": (member.qualification, member.paused),
            "annotations": s.scalar(
                select(func.count()).select_from(Annotation).where(Annotation.item_id == item_id)
            ),
            "slots": (item.assigned, item.is_open, item.annotation_count),
            "refresh": bool(
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.project_id == pid, Job.kind == "consensus")
                )
            ),
        }


def test_submit_truth_table(db: Any, paths: Paths) -> None:
    assert len(SUBMIT_CASES) > 300
    for case in SUBMIT_CASES:
        expected, common = case.expected()
        want = case.state_after()
        seen = {}
        for path in ("orm", "hot"):
            pid, task_id, secret, item_id = _build_submit(db, case)
            with db.session() as s:
                me = authenticate_token(s, secret, kind=None).id if case.token == "good" else None
                first = s.scalar(select(Annotation.id).where(Annotation.task_id == task_id))
            answer, served = _outcome(
                lambda: paths.submit(path, task_id, secret, {"label": case.label()}, case.key_value())  # noqa: B023
            )
            assert _submit_view(answer, first) == expected, (path, case)
            if path == "hot":
                assert served == (common and expected == "stored"), (case, served)
            if me is None:
                continue
            state = _submit_state(db, pid, task_id, item_id, me)
            got = {k: state[k] for k in ("task", "needed", "member")}
            assert got == want, (path, case, state)
            assert state["refresh"] == (expected == "stored"), (path, case)
            seen[path] = state
        if seen:
            assert seen["orm"] == seen["hot"], case
