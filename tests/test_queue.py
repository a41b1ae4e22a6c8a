"""The annotation queue, through the API and under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select, update

from labelmill.services import queue
from labelmill.services.queue import pg as queue_pg
from labelmill.services.queue import statements as queue_sql
from labelmill.services.users import get_user
from labelmill.store.models import Annotation, Item, Task
from tests.conftest import auth, make_user, queued_refreshes

SCHEMA = {"controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["pos", "neg"]}]}
GOLD_MARK = "pos"


def project(client: Any, token: str, n_items: int = 10, *, gold: int = 0, **settings: Any) -> int:
    r = client.post(
        "/api/v1/projects", json={"name": "q", "schema": SCHEMA, "settings": settings}, headers=auth(token)
    )
    assert r.status_code == 201, r.text
    pid = int(r.json()["id"])
    lines = [{"data": {"text": f"item {i}"}, "external_id": f"i{i}"} for i in range(n_items)]
    lines += [
        {"data": {"text": f"honeypot {i}"}, "external_id": f"g{i}", "gold": {"label": GOLD_MARK}}
        for i in range(gold)
    ]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = client.post(
        f"/api/v1/projects/{pid}/imports", files={"files": ("a.jsonl", io.BytesIO(body))}, headers=auth(token)
    )
    assert r.status_code == 201, r.text
    return pid


def annotators(client: Any, db: Any, admin: str, pid: int, n: int) -> list[str]:
    tokens = []
    for k in range(n):
        _, token = make_user(db, f"ann{k}")
        r = client.post(
            f"/api/v1/projects/{pid}/members",
            json={"user": f"ann{k}", "role": "annotator"},
            headers=auth(admin),
        )
        assert r.status_code == 201
        tokens.append(token)
    return tokens


def next_task(client: Any, token: str, pid: int) -> dict[str, Any] | None:
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(token))
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json()["task"])


def submit(client: Any, token: str, task_id: int, label: str = "pos", **headers: str) -> Any:
    return client.post(
        f"/api/v1/tasks/{task_id}/submit",
        json={"value": {"label": label}},
        headers={**auth(token), **headers},
    )


def test_loop_overlap_and_no_repeats(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 6, overlap=2)
    a, b, c = annotators(client, db, admin_token, pid, 3)
    first = next_task(client, a, pid)
    assert first is not None and set(first) >= {"id", "item", "expires_at"}
    assert next_task(client, a, pid)["id"] == first["id"]  # a live lease comes back, not a new task
    r = submit(client, a, first["id"])
    assert r.status_code == 201 and r.json()["value"] == {"label": "pos"} and r.json()["lead_seconds"] >= 0
    done: Counter[int] = Counter()
    for token in (a, b, c):
        while (task := next_task(client, token, pid)) is not None:
            assert submit(client, token, task["id"]).status_code == 201
            done[task["item"]["id"]] += 1
    done[first["item"]["id"]] += 1
    assert len(done) == 6 and set(done.values()) == {2}
    stats = client.get(f"/api/v1/projects/{pid}/stats", headers=auth(admin_token)).json()
    assert stats["progress"]["done"] == 6 and stats["progress"]["remaining"] == 0


def test_errors_and_visibility(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 2)
    a, b = annotators(client, db, admin_token, pid, 2)
    _, stranger = make_user(db, "stranger")
    assert client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(stranger)).status_code == 404
    task = next_task(client, a, pid)
    assert task is not None
    assert submit(client, b, task["id"]).status_code == 404  # someone else's task is invisible
    r = client.post(f"/api/v1/tasks/{task['id']}/submit", json={"value": {"label": "meh"}}, headers=auth(a))
    assert r.status_code == 422 and r.json()["field"] == "value.label"
    assert submit(client, a, task["id"]).status_code == 201
    again = submit(client, a, task["id"])
    assert again.status_code == 409 and "already submitted" in again.json()["detail"]
    mine = client.get("/api/v1/tasks", headers=auth(a)).json()["results"]
    assert [t["id"] for t in mine] == [task["id"]]
    assert client.get("/api/v1/tasks", headers=auth(b)).json()["results"] == []


def test_idempotent_retry(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 2)
    (a,) = annotators(client, db, admin_token, pid, 1)
    task = next_task(client, a, pid)
    first = submit(client, a, task["id"], **{"Idempotency-Key": "k-1"})
    retry = submit(client, a, task["id"], **{"Idempotency-Key": "k-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"] and retry.headers.get("Idempotent-Replayed") == "true"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotation)) == 1


def test_skip_sends_item_to_someone_else(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 1)
    a, b = annotators(client, db, admin_token, pid, 2)
    task = next_task(client, a, pid)
    assert next_task(client, b, pid) is None  # overlap 1: the only item is leased
    r = client.post(f"/api/v1/tasks/{task['id']}/skip", headers=auth(a))
    assert r.status_code == 200 and r.json()["state"] == "skipped"
    assert next_task(client, a, pid) is None  # never the same item twice
    other = next_task(client, b, pid)
    assert other is not None and other["item"]["id"] == task["item"]["id"]


def _expire(db: Any, task_id: int) -> None:
    from datetime import UTC, datetime, timedelta

    with db.session() as s:
        s.execute(
            update(Task).where(Task.id == task_id).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_lease_expiry(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 1)
    a, b = annotators(client, db, admin_token, pid, 2)
    task = next_task(client, a, pid)
    assert next_task(client, b, pid) is None
    _expire(db, task["id"])
    taken = next_task(client, b, pid)  # the expired lease went back to the pool
    assert taken is not None and taken["item"]["id"] == task["item"]["id"]
    assert submit(client, b, taken["id"]).status_code == 201
    late = submit(client, a, task["id"])  # the item has its one label: refused with a reason
    assert late.status_code == 409 and "expired" in late.json()["detail"]


def test_late_submit_accepted_while_item_needs_labels(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 1, overlap=2)
    a, b = annotators(client, db, admin_token, pid, 2)
    task = next_task(client, a, pid)
    _expire(db, task["id"])
    assert next_task(client, b, pid) is not None  # reclaims a's slot, takes one
    assert submit(client, a, task["id"]).status_code == 201  # a slot is still free: accepted


def test_gold_is_never_revealed(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 3, gold=3, gold_rate=1.0)
    (a,) = annotators(client, db, admin_token, pid, 1)
    seen = []
    while (task := next_task(client, a, pid)) is not None:
        seen.append(task)
        r = submit(client, a, task["id"], label="neg")
        assert r.status_code == 201
        body = json.dumps(task) + r.text
        assert "gold" not in body and "is_gold" not in body  # nothing marks the honeypot
    texts = {t["item"]["data"]["text"] for t in seen}
    assert any(t.startswith("honeypot") for t in texts) and any(t.startswith("item") for t in texts)
    everything = client.get("/api/v1/tasks", headers=auth(a)).text
    everything += client.get(f"/api/v1/projects/{pid}", headers=auth(a)).text
    assert "is_gold" not in everything and '"gold"' not in everything
    for t in seen:
        assert "gold" not in client.get(f"/api/v1/annotations/{t['id']}", headers=auth(a)).text
    assert client.get(f"/api/v1/projects/{pid}/items", headers=auth(a)).status_code == 403
    assert client.get(f"/api/v1/projects/{pid}/export", headers=auth(a)).status_code == 403


def test_qualification_pause_and_resume(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 4, gold=4, qualification_size=2, qualification_threshold=0.8)
    good, bad = annotators(client, db, admin_token, pid, 2)
    for _ in range(2):  # new annotators see only gold until they qualify
        t = next_task(client, good, pid)
        assert t["item"]["data"]["text"].startswith("honeypot")
        submit(client, good, t["id"], label=GOLD_MARK)
    real = next_task(client, good, pid)
    assert real["item"]["data"]["text"].startswith("item")
    for _ in range(2):
        t = next_task(client, bad, pid)
        submit(client, bad, t["id"], label="neg")
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(bad))
    assert r.status_code == 403 and "failed qualification" in r.json()["detail"]
    uid = client.get("/api/v1/me", headers=auth(bad)).json()["id"]
    members = client.get(f"/api/v1/projects/{pid}/members", headers=auth(admin_token)).json()["results"]
    assert next(m for m in members if m["user_id"] == uid)["paused"] is True
    r = client.patch(
        f"/api/v1/projects/{pid}/members/{uid}", json={"paused": False}, headers=auth(admin_token)
    )
    assert r.status_code == 200
    resumed = next_task(client, bad, pid)
    assert resumed is not None and resumed["item"]["data"]["text"].startswith("item")


def test_running_gold_accuracy_pauses(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 10, gold=8, gold_rate=1.0)
    (a,) = annotators(client, db, admin_token, pid, 1)
    for _ in range(queue.MIN_GOLD_FOR_PAUSE):
        t = next_task(client, a, pid)
        submit(client, a, t["id"], label="neg")
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(a))
    assert r.status_code == 403 and "gold accuracy fell" in r.json()["detail"]


def _agreeing_labels(client: Any, db: Any, admin_token: str, **settings: Any) -> int:
    """One item, four annotators who all answer "pos" while the queue asks: how many labelled."""
    pid = project(client, admin_token, 1, overlap=1, **settings)
    labelled = 0
    for token in annotators(client, db, admin_token, pid, 4):
        t = next_task(client, token, pid)
        if t is None:
            break
        assert submit(client, token, t["id"], label="pos").status_code == 201
        labelled += 1
    return labelled


def test_adaptive_overlap(client: Any, db: Any, admin_token: str) -> None:
    # agreeing labels at the default skill 0.7: 0.70, 0.84, 0.93 < 0.95, so the item asks
    # for more, but never beyond max_overlap
    assert _agreeing_labels(client, db, admin_token, max_overlap=3, target_confidence=0.95) == 3


def test_adaptive_overlap_stops_when_confident(client: Any, db: Any, admin_token: str) -> None:
    # 0.70 < 0.8, then 0.84 >= 0.8
    assert _agreeing_labels(client, db, admin_token, max_overlap=5, target_confidence=0.8) == 2


def test_next_task_shows_the_items_predictions_in_order(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 0)
    preds = [
        {"value": {"label": "neg"}, "score": 0.25, "model_version": "m1"},
        {"value": {"label": "pos"}, "score": None, "model_version": "m2"},
    ]
    lines = [
        {"data": {"text": "with"}, "external_id": "w", "predictions": preds},
        {"data": {"text": "without"}, "external_id": "wo"},
    ]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = client.post(
        f"/api/v1/projects/{pid}/imports",
        files={"files": ("p.jsonl", io.BytesIO(body))},
        headers=auth(admin_token),
    )
    assert r.status_code == 201, r.text
    (token,) = annotators(client, db, admin_token, pid, 1)
    shown = {}
    while (task := next_task(client, token, pid)) is not None:
        shown[task["item"]["data"]["text"]] = task["predictions"]
        assert submit(client, token, task["id"]).status_code == 201
    assert shown == {"with": preds, "without": []}


def test_submits_queue_one_consensus_refresh_at_a_time(client: Any, db: Any, admin_token: str) -> None:
    """Each submit makes sure a consensus refresh is queued, once: while one waits, further
    submits join it; once a worker has taken it, the next submit queues a new one."""
    from labelmill.services.jobs import claim_job

    pid = project(client, admin_token, 4)
    (token,) = annotators(client, db, admin_token, pid, 1)
    assert queued_refreshes(db, pid) == 0
    for expected in (1, 1):
        task = next_task(client, token, pid)
        assert submit(client, token, task["id"]).status_code == 201
        assert queued_refreshes(db, pid) == expected
    assert claim_job(db, ("consensus",), pid) is not None and queued_refreshes(db, pid) == 0
    task = next_task(client, token, pid)
    assert submit(client, token, task["id"]).status_code == 201
    assert queued_refreshes(db, pid) == 1


def test_edit_until_reviewed(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 1)
    a, b = annotators(client, db, admin_token, pid, 2)
    t = next_task(client, a, pid)
    ann = submit(client, a, t["id"]).json()
    r = client.patch(f"/api/v1/annotations/{ann['id']}", json={"value": {"label": "neg"}}, headers=auth(a))
    assert r.status_code == 200 and r.json()["value"] == {"label": "neg"}
    assert (
        client.patch(
            f"/api/v1/annotations/{ann['id']}", json={"value": {"label": "neg"}}, headers=auth(b)
        ).status_code
        == 404
    )
    with db.session() as s:
        s.execute(update(Annotation).where(Annotation.id == ann["id"]).values(status="accepted"))
    r = client.patch(f"/api/v1/annotations/{ann['id']}", json={"value": {"label": "pos"}}, headers=auth(a))
    assert r.status_code == 409


@pytest.mark.parametrize("overlap", [1, 3])
def test_concurrent_annotators_keep_every_rule(db: Any, client: Any, admin_token: str, overlap: int) -> None:
    """Many threads, each an annotator looping next-task + submit: overlap never exceeded, no item
    twice to one annotator, every submitted annotation stored, every item fully labelled."""
    n_items, n_annotators = 40, 12
    pid = project(client, admin_token, n_items, overlap=overlap)
    annotators(client, db, admin_token, pid, n_annotators)
    with db.session() as s:
        users = [get_user(s, f"ann{k}") for k in range(n_annotators)]
    submitted: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(n_annotators)

    def work(user: Any) -> None:
        try:
            start.wait()
            while (lease := queue.next_task(db, pid, user)) is not None:
                annotation, created = queue.submit(
                    db, lease.task.id, user, {"label": "pos"}, idempotency_key=f"{user.id}-{lease.task.id}"
                )
                assert created
                with lock:
                    submitted.append(annotation.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    with db.session() as s:
        rows = s.execute(select(Annotation.id, Annotation.item_id, Annotation.annotator_id)).all()
    assert sorted(r.id for r in rows) == sorted(submitted)  # nothing lost, nothing extra
    per_item = Counter(r.item_id for r in rows)
    assert len(per_item) == n_items and set(per_item.values()) == {overlap}
    pairs = Counter((r.item_id, r.annotator_id) for r in rows)
    assert max(pairs.values()) == 1


def test_item_being_taken_is_waited_for_not_passed_over(db: Any, client: Any, admin_token: str) -> None:
    """The only open item is locked by another annotator's transaction at the moment of asking:
    the caller must get it once that transaction commits (it still has a free slot), not be told
    the queue is empty. (SQLite serialises writers, so this is PostgreSQL's SKIP LOCKED case.)"""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row is ever locked by someone else")
    pid = project(client, admin_token, 1, overlap=2)
    annotators(client, db, admin_token, pid, 1)
    with db.session() as s:
        user = get_user(s, "ann0")
    got: list[Any] = []
    with db.session() as holder:
        item_id = holder.scalar(select(Item.id).where(Item.project_id == pid).with_for_update())
        thread = threading.Thread(target=lambda: got.append(queue.next_task(db, pid, user)))
        thread.start()
        thread.join(timeout=0.5)  # the caller is now waiting on (or, without the fix, past) the lock
    thread.join(timeout=30)
    assert got and got[0] is not None and got[0].item.id == item_id


def _hold_sqlite_write_lock(db: Any) -> Any:
    """Another process's write transaction: a separate connection holding BEGIN IMMEDIATE."""
    import sqlite3

    other = sqlite3.connect(db.engine.url.database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_writer_busy_is_raised_at_once_not_waited_for(db: Any) -> None:
    """Inside ``nowait`` a write transaction that would wait raises WriterBusy before doing
    anything, whether this process (the in-process writer lock) or another one (SQLite's
    lock) holds the database, and the connection gets its busy timeout back afterwards."""
    if db.dialect != "sqlite":
        pytest.skip("nowait concerns SQLite's single writer")
    from labelmill.store.engine import BUSY_TIMEOUT_MS, WriterBusy

    with db.session(immediate=True), db.nowait(), pytest.raises(WriterBusy), db.connect(immediate=True):
        pass
    other = _hold_sqlite_write_lock(db)
    try:
        with db.nowait(), pytest.raises(WriterBusy), db.connect(immediate=True):
            pass
    finally:
        other.rollback()
        other.close()
    with db.connect(immediate=True) as conn:  # free again; and waiting is the default once more
        timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert timeout == BUSY_TIMEOUT_MS


def test_next_task_waits_in_a_thread_while_another_writer_holds_sqlite(
    client: Any, db: Any, admin_token: str
) -> None:
    """The API runs the annotator loop on its event loop only when SQLite's write lock is free;
    when another process holds it, the request waits in a worker thread and then succeeds."""
    if db.dialect != "sqlite":
        pytest.skip("nowait concerns SQLite's single writer")
    pid = project(client, admin_token, 2)
    (token,) = annotators(client, db, admin_token, pid, 1)
    other = _hold_sqlite_write_lock(db)
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(next_task(client, token, pid)))
    thread.start()
    thread.join(timeout=0.5)  # the request now waits for the other writer
    other.rollback()
    other.close()
    thread.join(timeout=30)
    assert got and got[0] is not None and got[0]["item"]["data"]["text"].startswith("item ")


def test_concurrent_late_submits_respect_overlap(db: Any, client: Any, admin_token: str) -> None:
    """Several reclaimed leases submitted at once: only the free slots are taken."""
    pid = project(client, admin_token, 1, overlap=2)
    annotators(client, db, admin_token, pid, 4)
    with db.session() as s:
        users = [get_user(s, f"ann{k}") for k in range(4)]
    first = [queue.next_task(db, pid, u) for u in users[:2]]
    for lease in first:
        assert lease is not None
        _expire(db, lease.task.id)
    late = [queue.next_task(db, pid, u) for u in users[2:]]  # reclaims both, takes both slots
    assert all(lease is not None for lease in late)
    results: list[int] = []
    lock = threading.Lock()

    def go(user: Any, task_id: int) -> None:
        try:
            queue.submit(db, task_id, user, {"label": "pos"})
            code = 201
        except Exception as exc:
            code = getattr(exc, "status", 500)
        with lock:
            results.append(code)

    jobs = [(u, lease.task.id) for u, lease in zip(users, first + late, strict=True) if lease is not None]
    threads = [threading.Thread(target=go, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 201, 409, 409]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotation)) == 2


def test_concurrent_http_loop(client: Any, db: Any, admin_token: str) -> None:
    """The same rules through the HTTP API, with threads sharing one server."""
    pid = project(client, admin_token, 24, overlap=2)
    tokens = annotators(client, db, admin_token, pid, 6)
    errors: list[str] = []

    def work(token: str) -> None:
        while (task := next_task(client, token, pid)) is not None:
            r = submit(client, token, task["id"], **{"Idempotency-Key": f"{token[-6:]}-{task['id']}"})
            if r.status_code != 201:
                errors.append(r.text)

    threads = [threading.Thread(target=work, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    with db.session() as s:
        rows = s.execute(select(Annotation.item_id, Annotation.annotator_id)).all()
    assert set(Counter(r.item_id for r in rows).values()) == {2} and len(rows) == 48
    assert max(Counter(rows).values()) == 1


def test_hot_path_races_the_full_path_and_another_process(
    db: Any, client: Any, admin_token: str, media_store: Any, app_settings: Any
) -> None:
    """Three kinds of writer label one project at once: the event-loop hot path (HTTP), the
    SQLAlchemy implementation in threads, and a second server process (its own connections and
    in-process writer lock). On SQLite the hot path finds the write lock taken now and then and
    hands the call to a worker thread. Overlap is never exceeded, no annotator gets an item
    twice, every submitted annotation is kept and every item ends fully labelled."""
    from fastapi.testclient import TestClient

    from labelmill.api.app import create_app
    from labelmill.store.engine import Database

    n_items, overlap = 45, 3
    pid = project(client, admin_token, n_items, overlap=overlap)
    tokens = annotators(client, db, admin_token, pid, 9)
    with db.session() as s:
        direct = [get_user(s, f"ann{k}") for k in range(6, 9)]
    submitted: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(9)

    def over_http(http: Any, token: str) -> None:
        start.wait()
        while (task := next_task(http, token, pid)) is not None:
            r = submit(http, token, task["id"], **{"Idempotency-Key": f"h-{task['id']}"})
            with lock:
                (submitted.append(r.json()["id"]) if r.status_code == 201 else errors.append(r.text))

    def in_thread(user: Any) -> None:
        start.wait()
        try:
            while (lease := queue.next_task(db, pid, user)) is not None:
                annotation, _ = queue.submit(db, lease.task.id, user, {"label": "neg"})
                with lock:
                    submitted.append(annotation.id)
        except Exception as exc:
            errors.append(repr(exc))

    other_db = Database(db.url, run_migrations=False)
    try:
        with TestClient(create_app(other_db, media=media_store, settings=app_settings)) as other:
            threads = [threading.Thread(target=over_http, args=(client, t)) for t in tokens[:3]]
            threads += [threading.Thread(target=over_http, args=(other, t)) for t in tokens[3:6]]
            threads += [threading.Thread(target=in_thread, args=(u,)) for u in direct]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
    finally:
        other_db.dispose()
    assert not errors, errors[:3]
    with db.session() as s:
        rows = s.execute(select(Annotation.id, Annotation.item_id, Annotation.annotator_id)).all()
        slots = s.execute(select(Item.assigned, Item.annotation_count, Item.is_open)).all()
    assert sorted(r.id for r in rows) == sorted(submitted)
    assert set(Counter(r.item_id for r in rows).values()) == {overlap} and len(rows) == n_items * overlap
    assert max(Counter((r.item_id, r.annotator_id) for r in rows).values()) == 1
    assert set(slots) == {(overlap, overlap, False)}


def test_next_task_query_uses_the_open_items_index(db: Any, client: Any, admin_token: str) -> None:
    """The statement next-task runs (SQLite: pick and take; PostgreSQL: the whole lease) reads
    the partial index of open items: no scan of done items, no sort."""
    from datetime import UTC, datetime

    pid = project(client, admin_token, 50)
    now = datetime.now(UTC)
    params = {"pid": pid, "uid": 1, "by": 1, "overlap": 1, "now": now, "lease_until": now}
    stmt = queue_sql.TAKE_NEXT if db.dialect == "sqlite" else queue_sql.PG_LEASE_SKIP_LOCKED
    with db.engine.connect() as conn:
        compiled = stmt.compile(conn)
        bound = compiled.construct_params(params)
        args = tuple(bound[k] for k in compiled.positiontup) if compiled.positiontup else bound
        prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
        plan = "\n".join(str(row[-1]) for row in conn.exec_driver_sql(prefix + str(compiled), args))
    assert "ix_items_open" in plan, plan
    if db.dialect == "sqlite":
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Sort" not in plan, plan


def test_pick_probes_the_task_index_per_candidate(db: Any, client: Any, admin_token: str) -> None:
    """The pick walks the open-items index in order and probes the unique (item, annotator)
    index for each candidate, stopping at the first free one. On PostgreSQL it must stay a
    per-row probe (a subplan), never an anti-join: the planner builds an anti-join from its guess
    of the tasks table's size, and on a table not analysed since it grew (as on a server without
    autovacuum) it chose to scan all the annotator's tasks at every pick, a cost that grows with
    the work done (seen in the bench: 0.76 ms a pick at 1,200 tasks, against 0.33 ms). Checked
    on the generic plan that the hot path's connections run, and on SQLite's pick."""
    pid = project(client, admin_token, 30)
    annotators(client, db, admin_token, pid, 1)
    if db.dialect == "sqlite":
        with db.engine.connect() as conn:
            compiled = queue_sql.TAKE_NEXT.compile(conn)
            bound = compiled.construct_params({"pid": pid, "uid": 2, "by": 1, "overlap": 1})
            args = tuple(bound[k] for k in compiled.positiontup or ())
            plan = "\n".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), args)
            )
        assert "ix_items_open" in plan and "SEARCH tasks USING COVERING INDEX" in plan, plan
        assert "SCAN tasks" not in plan and "TEMP B-TREE" not in plan, plan
        return
    plan = _generic_plan(db, queue_pg.LEASE)
    assert "ix_items_open" in plan and "uq_tasks_item_annotator" in plan, plan
    assert "JIT" not in plan, plan
    assert "Anti Join" not in plan and "Seq Scan on tasks" not in plan and "Seq Scan on items" not in plan, (
        plan
    )
    assert "Sort Key: items" not in plan, plan  # served in the index's order


def _generic_plan(db: Any, statement: Any) -> str:
    """EXPLAIN of the generic plan of a :class:`~labelmill.store.pg_async.Compiled` statement,
    as the hot path's connections (``plan_cache_mode=force_generic_plan``) run it."""
    import psycopg

    from labelmill.store.pg_async import SERVER_SETTINGS, conninfo

    # jit_above_cost=0: JIT would be considered for this plan whatever its estimated cost
    options = " ".join(f"-c {k}={v}" for k, v in {"jit_above_cost": 0, **SERVER_SETTINGS}.items())
    with psycopg.connect(conninfo(db.url), options=options) as conn:
        conn.execute(f"PREPARE hot_plan AS {statement.sql}")
        nulls = ", ".join("NULL" for _ in set(statement.order))
        return "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE hot_plan({nulls})"))


def test_common_case_runs_on_the_hot_path(
    db: Any, client: Any, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Next-task and submit in the common case are the event-loop hot path's statements alone
    (the SQLAlchemy implementation is never called); the rest falls back to it."""
    calls: Counter[str] = Counter()
    for name in ("next_task", "submit"):
        original = getattr(queue, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(queue, name, counted)
    pid = project(client, admin_token, 4)
    a, b = annotators(client, db, admin_token, pid, 2)
    task = next_task(client, a, pid)
    r = submit(client, a, task["id"], **{"Idempotency-Key": "hot-1"})
    assert r.status_code == 201 and r.json()["value"] == {"label": "pos"}
    assert calls == Counter()
    # a live lease to hand back, a replay, a bad value, someone else's task: the full path
    live = next_task(client, a, pid)
    assert next_task(client, a, pid)["id"] == live["id"]
    assert calls["next_task"] == 1
    retry = submit(client, a, task["id"], **{"Idempotency-Key": "hot-1"})
    assert retry.json()["id"] == r.json()["id"] and retry.headers.get("Idempotent-Replayed") == "true"
    assert submit(client, b, live["id"]).status_code == 404
    bad = client.post(f"/api/v1/tasks/{live['id']}/submit", json={"value": {"label": "x"}}, headers=auth(a))
    assert bad.status_code == 422 and bad.json()["field"] == "value.label"
    assert calls["submit"] == 2  # the replay and the stranger; the bad value is refused up front


def test_annotator_loop_checks_the_token_like_every_route(client: Any, db: Any, admin_token: str) -> None:
    """Revoked, expired, deactivated and wrong-kind tokens get 401 from next-task and submit
    (on PostgreSQL the token is checked inside the lease statement), and nothing is leased."""
    from datetime import timedelta

    from labelmill.services.users import create_token

    pid = project(client, admin_token, 3)
    (a,) = annotators(client, db, admin_token, pid, 1)
    task = next_task(client, a, pid)
    # no credentials at all: 401 before the body is looked at
    r = client.post(f"/api/v1/tasks/{task['id']}/submit", json={"nothing": 1})
    assert r.status_code == 401, r.text
    with db.session() as s:
        user = get_user(s, "ann0")
        expired, _ = create_token(s, user, name="old", lifetime=timedelta(seconds=-1))
        session_secret, _ = create_token(s, user, name="web", kind="session")
    for bad in ("no-such-token", expired):
        r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(bad))
        assert r.status_code == 401, r.text
        assert submit(client, bad, task["id"]).status_code == 401
    # a cookie must hold a session token (an API token in a cookie is refused) and be sent
    # with the anti-CSRF header
    csrf = {"X-Requested-With": "fetch"}
    client.cookies.set("labelmill_session", a)
    assert client.post(f"/api/v1/projects/{pid}/tasks/next", headers=csrf).status_code == 401
    client.cookies.set("labelmill_session", session_secret)
    assert client.post(f"/api/v1/projects/{pid}/tasks/next").status_code == 403
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=csrf)
    assert r.status_code == 200 and r.json()["task"]["id"] == task["id"]
    r = client.post(f"/api/v1/tasks/{task['id']}/submit", json={"value": {"label": "neg"}}, headers=csrf)
    assert r.status_code == 201
    client.cookies.clear()
    with db.session() as s:
        get_user(s, "ann0").is_active = False
    assert client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(a)).status_code == 401
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == 1


def _project_with_meta(client: Any, token: str, schema: dict[str, Any], lines: list[dict[str, Any]]) -> int:
    r = client.post("/api/v1/projects", json={"name": "m", "schema": schema}, headers=auth(token))
    assert r.status_code == 201, r.text
    pid = int(r.json()["id"])
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = client.post(
        f"/api/v1/projects/{pid}/imports", files={"files": ("a.jsonl", io.BytesIO(body))}, headers=auth(token)
    )
    assert r.status_code == 201, r.text
    return pid


def test_annotators_never_see_meta_the_schema_does_not_show(client: Any, db: Any, admin_token: str) -> None:
    """Defect 5: a table's answer column kept in ``meta`` (or any note there) never reaches
    annotators, on the hot path and the full path (a live lease handed back); only the media
    measurements of the fields the schema labels are shown."""
    meta = {"label": "spam", "source_file": "sms.csv", "media": {"text": {"chars": 12}, "other": {"x": 1}}}
    pid = _project_with_meta(
        client, admin_token, SCHEMA, [{"data": {"text": "win a prize"}, "external_id": "a", "meta": meta}]
    )
    (a,) = annotators(client, db, admin_token, pid, 1)
    for _ in range(2):  # the new lease (hot path), then the live lease handed back (full path)
        task = next_task(client, a, pid)
        assert task is not None
        assert task["item"]["data"] == {"text": "win a prize"}
        assert task["item"]["meta"] == {"media": {"text": {"chars": 12}}}
        assert "spam" not in json.dumps(task)


def test_meta_without_shown_fields_is_not_sent(client: Any, db: Any, admin_token: str) -> None:
    pid = _project_with_meta(
        client, admin_token, SCHEMA, [{"data": {"text": "hello"}, "meta": {"label": "ham", "note": "x"}}]
    )
    (a,) = annotators(client, db, admin_token, pid, 1)
    task = next_task(client, a, pid)
    assert task is not None and task["item"]["meta"] is None


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_idempotency_key_length_is_validated_and_documented(
    client: Any, db: Any, admin_token: str, key: str
) -> None:
    pid = project(client, admin_token, 2)
    (a,) = annotators(client, db, admin_token, pid, 1)
    task = next_task(client, a, pid)
    r = submit(client, a, task["id"], **{"Idempotency-Key": key})
    assert r.status_code == 422, r.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotation)) == 0
    spec = client.get("/api/v1/openapi.json").json()
    (header,) = [
        p
        for p in spec["paths"]["/api/v1/tasks/{task_id}/submit"]["post"]["parameters"]
        if p["in"] == "header"
    ]
    schema = header["schema"]
    options = schema.get("anyOf", [schema])
    assert any(o.get("minLength") == 1 and o.get("maxLength") == 200 for o in options), header


def test_adaptive_overlap_reads_all_skills_in_one_query(client: Any, db: Any, admin_token: str) -> None:
    """The confidence of an item with several labels needs the skills of all its annotators:
    one query, not one per annotator."""
    from sqlalchemy import event

    from labelmill.store.models import AnnotatorSkill, Project

    pid = project(client, admin_token, 1, overlap=3, max_overlap=4, target_confidence=0.99)
    tokens = annotators(client, db, admin_token, pid, 3)
    tasks = [next_task(client, t, pid) for t in tokens]
    with db.session() as s:
        users = [get_user(s, f"ann{k}") for k in range(3)]
        for k, user in enumerate(users):
            s.add(
                AnnotatorSkill(
                    project_id=pid,
                    annotator_id=user.id,
                    control="label",
                    skill=0.6 + 0.1 * k,
                    method="one_coin",
                )
            )
    for token, task in zip(tokens, tasks, strict=True):
        assert submit(client, token, task["id"]).status_code == 201
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "annotator_skills" in statement:
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as s:
            item_id = s.scalar(select(Item.id).where(Item.project_id == pid))
            confidence = queue.item_confidence(s, s.get(Project, pid), item_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(reads) == 1
    # three agreeing votes of skills 0.6, 0.7, 0.8 over two classes
    odds = (0.6 / 0.4) * (0.7 / 0.3) * (0.8 / 0.2)
    assert confidence == pytest.approx(odds / (1 + odds))
