"""Pausing: a manager's decision sticks; automatic pausing follows the project's settings.

Issue 16, defect 3: a manager resumed a flagged annotator and the next consensus refresh paused
them again within one or two submits.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labelmill.cli import app
from labelmill.jobs.worker import run_pending
from labelmill.services import queue
from tests.conftest import auth
from tests.test_queue import annotators, next_task, project, submit


def _import_votes(client: Any, admin: str, pid: int, n_items: int = 120, seed: int = 3) -> None:
    """Four annotators 85% right, ann4 always answers "pos" (a constant spammer)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_items):
        truth = rng.choice(["pos", "neg"])
        anns = [
            {
                "annotator": f"ann{w}",
                "value": {"label": truth if rng.random() < 0.85 else ("neg" if truth == "pos" else "pos")},
            }
            for w in range(4)
        ]
        anns.append({"annotator": "ann4", "value": {"label": "pos"}})
        lines.append({"data": {"text": f"t{seed}-{i}"}, "annotations": anns})
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = client.post(
        f"/api/v1/projects/{pid}/imports", files={"files": ("a.jsonl", io.BytesIO(body))}, headers=auth(admin)
    )
    assert r.status_code == 201, r.text


def _member(client: Any, admin: str, pid: int, name: str) -> dict[str, Any]:
    members = client.get(f"/api/v1/projects/{pid}/members", headers=auth(admin)).json()["results"]
    return next(m for m in members if m["name"] == name)


def _annotator_stats(client: Any, admin: str, pid: int, name: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/projects/{pid}/stats", headers=auth(admin))
    assert r.status_code == 200, r.text
    return next(a for a in r.json()["annotators"] if a["name"] == name)


def test_a_managers_resume_survives_later_refreshes(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 40)
    tokens = annotators(client, db, admin_token, pid, 5)
    _import_votes(client, admin_token, pid)
    run_pending(db)
    spammer = _member(client, admin_token, pid, "ann4")
    assert spammer["paused"] is True and spammer["paused_by"] == "auto"
    assert "spammer" in spammer["pause_reason"]

    r = client.patch(
        f"/api/v1/projects/{pid}/members/{spammer['user_id']}",
        json={"paused": False},
        headers=auth(admin_token),
    )
    assert r.status_code == 200 and r.json()["paused_by"] == "manager"
    # The annotator keeps answering "pos"; every submit queues a refresh that still flags them.
    for _ in range(5):
        t = next_task(client, tokens[4], pid)
        assert t is not None, "a resumed annotator must keep getting tasks"
        assert submit(client, tokens[4], t["id"], label="pos").status_code == 201
        run_pending(db)
    _import_votes(client, admin_token, pid, 40, seed=4)
    run_pending(db)
    after = _member(client, admin_token, pid, "ann4")
    assert after["paused"] is False and after["paused_by"] == "manager"
    # The evidence is still there for the manager to see.
    assert _annotator_stats(client, admin_token, pid, "ann4")["spam_score"] is not None
    # ... and the manager can change their mind.
    r = client.patch(
        f"/api/v1/projects/{pid}/members/{spammer['user_id']}",
        json={"paused": True, "pause_reason": "checked by hand"},
        headers=auth(admin_token),
    )
    assert r.json()["paused"] is True and r.json()["pause_reason"] == "checked by hand"
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(tokens[4]))
    assert r.status_code == 403 and "checked by hand" in r.json()["detail"]


def test_auto_pause_off_flags_without_pausing(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 0, auto_pause=False)
    annotators(client, db, admin_token, pid, 5)
    _import_votes(client, admin_token, pid)
    run_pending(db)
    spammer = _member(client, admin_token, pid, "ann4")
    assert spammer["paused"] is False and spammer["paused_by"] is None
    stats = _annotator_stats(client, admin_token, pid, "ann4")
    assert stats["spam_score"] is not None and stats["spam_reason"]


def test_spam_detection_off_neither_flags_nor_pauses(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 0, spam_detection=False)
    annotators(client, db, admin_token, pid, 5)
    _import_votes(client, admin_token, pid)
    run_pending(db)
    assert _member(client, admin_token, pid, "ann4")["paused"] is False
    assert _annotator_stats(client, admin_token, pid, "ann4")["spam_score"] is None


def test_a_resume_holds_against_falling_gold_accuracy(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 10, gold=12, gold_rate=1.0)
    (a,) = annotators(client, db, admin_token, pid, 1)
    for _ in range(queue.MIN_GOLD_FOR_PAUSE):
        t = next_task(client, a, pid)
        submit(client, a, t["id"], label="neg")
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(a))
    assert r.status_code == 403 and "gold accuracy fell" in r.json()["detail"]
    uid = client.get("/api/v1/me", headers=auth(a)).json()["id"]
    client.patch(f"/api/v1/projects/{pid}/members/{uid}", json={"paused": False}, headers=auth(admin_token))
    for _ in range(3):  # still wrong on gold, still working: the manager decided
        t = next_task(client, a, pid)
        assert t is not None
        assert submit(client, a, t["id"], label="neg").status_code == 201


def test_auto_pause_off_keeps_gold_accuracy_from_pausing(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 10, gold=8, gold_rate=1.0, auto_pause=False)
    (a,) = annotators(client, db, admin_token, pid, 1)
    for _ in range(queue.MIN_GOLD_FOR_PAUSE + 1):
        t = next_task(client, a, pid)
        assert t is not None
        submit(client, a, t["id"], label="neg")


def test_cli_member_pause_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELMILL_DATABASE_URL", raising=False)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    schema = tmp_path / "schema.yaml"
    schema.write_text("controls:\n  - {name: s, type: choices, source: text, classes: [a, b]}\n")

    def cli(*args: str) -> Any:
        out = CliRunner().invoke(app, [*args, "--db", db])
        assert out.exit_code == 0, out.output
        return out

    cli("user", "create", "boss", "--role", "admin")
    cli("user", "create", "ann")
    cli("project", "create", "p", "--schema", str(schema))
    cli("member", "add", "p", "ann", "--role", "annotator")
    assert "paused" in cli("member", "pause", "p", "ann", "--reason", "too fast").output
    from labelmill.services.projects import get_member, get_project
    from labelmill.services.users import get_user
    from labelmill.store.engine import Database

    database = Database(db)
    with database.session() as session:
        m = get_member(session, get_project(session, "p"), get_user(session, "ann").id)
        assert (m.paused, m.paused_by, m.pause_reason) == (True, "manager", "too fast")
    assert "resumed" in cli("member", "resume", "p", "ann").output
    with database.session() as session:
        m = get_member(session, get_project(session, "p"), get_user(session, "ann").id)
        assert (m.paused, m.paused_by, m.pause_reason) == (False, "manager", None)
    database.dispose()
