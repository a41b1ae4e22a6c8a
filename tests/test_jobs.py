"""Jobs: one lifecycle (queued -> claimed with a heartbeat -> done | failed, stale claims reaped),
one registry of kinds, executors that run them while routes only queue; exports that never miss
stored labels (defect 4), export downloads for current managers only (15), the jobs cursor and
the JSONL download's options (16). On SQLite and PostgreSQL where a database is involved."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from labelmill.api.app import create_app
from labelmill.jobs import registry
from labelmill.jobs.executor import (
    InlineExecutor,
    LocalExecutor,
    liveness,
    reap,
    run_pending,
    wait_for_job,
    worker_name,
)
from labelmill.jobs.freshness import StaleConsensus, ensure_consensus_fresh
from labelmill.services import jobs as job_service
from labelmill.store.engine import MIGRATIONS_DIR, Database, make_engine
from labelmill.store.models import Job, Member
from tests.conftest import auth, make_user, queued_refreshes

SCHEMA = {"controls": [{"name": "sentiment", "type": "choices", "source": "text", "classes": ["pos", "neg"]}]}


class Recorder:
    """An executor that only notes what was submitted: shows what a route does by itself."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)

    def close(self) -> None:
        pass


def _project(client: Any, token: str, name: str = "p") -> int:
    r = client.post("/api/v1/projects", json={"name": name, "schema": SCHEMA}, headers=auth(token))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _upload(client: Any, token: str, pid: int, lines: list[dict[str, Any]], **form: str) -> Any:
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    return client.post(
        f"/api/v1/projects/{pid}/imports",
        files={"files": ("a.jsonl", io.BytesIO(body))},
        data=form,
        headers=auth(token),
    )


def _label_everything(client: Any, db: Any, admin: str, pid: int, value: str = "pos") -> None:
    """An annotator labels every item through the REST loop; no worker runs."""
    make_user(db, "ann")
    _, token = make_user(db, "ann2")
    for name in ("ann2",):
        r = client.post(
            f"/api/v1/projects/{pid}/members", json={"user": name, "role": "annotator"}, headers=auth(admin)
        )
        assert r.status_code == 201, r.text
    while True:
        r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(token))
        if r.status_code == 204:
            return
        task = r.json()["task"]
        s = client.post(
            f"/api/v1/tasks/{task['id']}/submit", json={"value": {"sentiment": value}}, headers=auth(token)
        )
        assert s.status_code == 201, s.text


def _labelled_project(client: Any, db: Any, admin: str, n: int = 3) -> int:
    pid = _project(client, admin)
    r = _upload(client, admin, pid, [{"data": {"text": f"t{i}"}, "external_id": f"e{i}"} for i in range(n)])
    assert r.status_code == 201, r.text
    _label_everything(client, db, admin, pid)
    assert queued_refreshes(db, pid) == 1  # the debounced refresh is queued, and nothing ran it
    return pid


def _job(db: Database, job_id: int) -> Job:
    return job_service.get_job(db, job_id)


# -- the lifecycle ---------------------------------------------------------------------------------


def _queued(db: Database, kind: str, project_id: int | None = None, params: Any = None) -> int:
    return job_service.submit_job(db, kind, project_id=project_id, params=params, user=None)


def _a_project(db: Database, name: str = "lp") -> int:
    from labelmill.services.projects import create_project

    with db.session() as session:
        return create_project(session, name, SCHEMA).id


def test_claim_records_worker_heartbeat_and_attempts_then_finish(db: Any) -> None:
    pid = _a_project(db)
    job_id = _queued(db, "export", pid)
    job = job_service.claim_job(db, ("export",), worker="w-1")
    assert job is not None and job.id == job_id
    stored = _job(db, job_id)
    assert (stored.status, stored.claimed_by, stored.attempts) == ("running", "w-1", 1)
    assert stored.heartbeat_at is not None and stored.started_at is not None
    assert job_service.claim_job(db, ("export",), worker="w-2") is None  # nobody takes it twice
    assert not job_service.finish_job(db, job_id, result={"x": 1}, worker="w-2")  # not w-2's claim
    assert job_service.finish_job(db, job_id, result={"x": 1}, worker="w-1")
    done = _job(db, job_id)
    assert (done.status, done.result, done.finished_at is not None) == ("done", {"x": 1}, True)


def _set(db: Database, job_id: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def test_stale_claims_are_queued_again_then_failed_after_the_kinds_attempts(db: Any) -> None:
    pid = _a_project(db)
    export_id = _queued(db, "export", pid)
    import_id = _queued(db, "import", pid, {"upload": "/nonexistent"})
    now = datetime.now(UTC)
    for attempt in range(1, 4):
        for job_id in (export_id, import_id):
            if _job(db, job_id).status != "queued":
                continue
            assert job_service.claim_job_by_id(db, job_id, worker="elsewhere:1:abc") is not None
            assert _job(db, job_id).attempts == attempt
            # a heartbeat 119 s old is alive; 121 s old is lost (no timing: the clock is given)
            _set(db, job_id, heartbeat_at=now - timedelta(seconds=119))
        kept = job_service.reap_stale_jobs(
            db, stale_after=120, max_attempts=registry.max_attempts, liveness=liveness, now=now
        )
        assert kept == []
        for job_id in (export_id, import_id):
            if _job(db, job_id).status == "running":
                _set(db, job_id, heartbeat_at=now - timedelta(seconds=121))
        reaped = {
            r.id: r.status
            for r in job_service.reap_stale_jobs(
                db, stale_after=120, max_attempts=registry.max_attempts, liveness=liveness, now=now
            )
        }
        if attempt == 1:
            assert reaped == {export_id: "queued", import_id: "queued"}
        elif attempt == 2:  # imports get 2 attempts
            assert reaped == {export_id: "queued", import_id: "failed"}
        else:  # everything else 3
            assert reaped == {export_id: "failed"}
    failed = _job(db, export_id)
    assert failed.status == "failed" and "elsewhere:1:abc" in (failed.error or "")
    assert "attempt 3 of 3" in (failed.error or "") and failed.claimed_by is None
    assert "attempt 2 of 2" in (_job(db, import_id).error or "")


def test_the_reaper_knows_live_and_dead_workers_on_this_machine(db: Any) -> None:
    pid = _a_project(db)
    machine, parent = job_service.machine_name(), os.getppid()
    gone, reused, mine = (_queued(db, "export", pid) for _ in range(3))
    job_service.claim_job_by_id(db, gone, worker=f"{machine}:999999999:1")  # no such process
    # the parent's pid, but another start time: a process that has reused a dead worker's pid
    job_service.claim_job_by_id(db, reused, worker=f"{machine}:{parent}:1")
    live = f"{machine}:{parent}:{job_service.process_start(parent)}"  # a process that runs
    job_service.claim_job_by_id(db, mine, worker=live)
    # A claim of a process that is gone is lost at once, whatever its heartbeat says.
    assert sorted((r.id, r.status) for r in reap(db)) == [(gone, "queued"), (reused, "queued")]
    # A live process holds its claim even with no heartbeat (SQLite's long imports).
    _set(db, mine, heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    assert reap(db) == []
    # This process's own claim is alive exactly while it runs the job; another machine's
    # worker has only its heartbeat to speak for it.
    assert liveness(mine, worker_name()) is False
    assert liveness(mine, f"elsewhere:{os.getpid()}:{job_service.process_token()}") is None


def test_jobs_left_running_by_an_older_version_are_queued_again(db: Any) -> None:
    pid = _a_project(db)
    job_id = _queued(db, "consensus", pid)
    _set(db, job_id, status="running", started_at=datetime.now(UTC))  # no claimant, no heartbeat
    assert [(r.id, r.status) for r in reap(db)] == [(job_id, "queued")]


def test_one_consensus_refresh_per_project_at_a_time(db: Any) -> None:
    p, q = _a_project(db, "p"), _a_project(db, "q")
    first = _queued(db, "consensus", p)
    assert job_service.claim_job_by_id(db, first, worker="a", exclusive=registry.exclusive_kinds())
    second = job_service.schedule_job(db, "consensus", p)  # queued while the first runs
    other = job_service.schedule_job(db, "consensus", q)
    export = _queued(db, "export", p)
    exclusive = registry.exclusive_kinds()
    assert job_service.claim_job_by_id(db, second, worker="b", exclusive=exclusive) is None
    claimed = [
        job_service.claim_job(db, ("consensus", "export"), worker="b", exclusive=exclusive) for _ in range(3)
    ]
    assert [j.id if j else None for j in claimed] == [other, export, None]
    job_service.finish_job(db, first, result={}, worker="a")
    again = job_service.claim_job(db, ("consensus",), worker="b", exclusive=exclusive)
    assert again is not None and again.id == second


def test_a_polling_worker_lets_a_project_rest_after_a_refresh(db: Any) -> None:
    """While labels keep arriving, a refresh waits ``rest`` times its last run's duration after
    it (bench/queue.py --worker: back-to-back refits took the annotators' CPU); other projects,
    other kinds and refreshes asked for by id never wait."""
    p, q = _a_project(db, "p"), _a_project(db, "q")
    now = datetime.now(UTC)
    last = _queued(db, "consensus", p)
    _set(
        db,
        last,
        status="done",
        started_at=now - timedelta(seconds=10),
        finished_at=now - timedelta(seconds=5),
    )
    waiting = job_service.schedule_job(db, "consensus", p)
    rest = {"consensus": 3.0}
    assert job_service.resting_projects(db, rest, now=now) == {"consensus": [p]}  # 5 s < 3 x 5 s
    assert job_service.resting_projects(db, rest, now=now + timedelta(seconds=11)) == {}
    assert job_service.resting_projects(db, {"consensus": 0.5}, now=now) == {}  # 5 s > 0.5 x 5 s
    other = job_service.schedule_job(db, "consensus", q)
    export = _queued(db, "export", p)
    kinds = ("consensus", "export")
    claimed = [job_service.claim_job(db, kinds, worker="w", rest=rest) for _ in range(3)]
    assert [j.id if j else None for j in claimed] == [other, export, None]
    assert run_pending(db, kinds=("consensus",), paced=True) == 0  # the polling worker leaves it
    assert _job(db, waiting).status == "queued"
    assert run_pending(db, kinds=("consensus",)) == 1  # asked for directly (CLI, tests): runs
    assert _job(db, waiting).status == "done"
    assert registry.rest_ratios() == {"consensus": 3.0}


def test_the_registry_names_every_kind_once() -> None:
    kinds = registry.kinds()
    assert {"consensus", "export", "import"} <= set(kinds)
    assert kinds["consensus"].exclusive and not kinds["export"].exclusive
    assert (kinds["consensus"].max_attempts, kinds["export"].max_attempts, kinds["import"].max_attempts) == (
        3,
        3,
        2,
    )
    with pytest.raises(ValueError, match="no job kind 'nope'"):
        registry.get_kind("nope")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.JobKind("consensus", lambda db, job: {}))


def test_a_failing_handler_fails_its_job_and_the_worker_goes_on(db: Any, monkeypatch: Any) -> None:
    import labelmill.services.consensus as consensus

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(consensus, "refresh_consensus", broken)
    p = _a_project(db)
    job_id = job_service.schedule_job(db, "consensus", p)
    export_id = _queued(db, "export", p)
    _set(db, export_id, params=None)
    assert run_pending(db) == 2
    failed, bad_export = _job(db, job_id), _job(db, export_id)
    assert failed.status == "failed" and failed.error == "RuntimeError: disk on fire"
    assert bad_export.status == "failed" and "without a project or parameters" in (bad_export.error or "")


def test_local_executor_runs_submitted_and_queued_jobs(db: Any) -> None:
    p = _a_project(db)
    queued = job_service.schedule_job(db, "consensus", p)
    executor = LocalExecutor(db, threads=1, poll=False, poll_seconds=0.05).start()
    try:
        executor.submit(queued)
        assert wait_for_job(db, queued, 60).status == "done"
        again = job_service.schedule_job(db, "consensus", p)
        assert _job(db, again).status == "queued"  # poll=False: only what is submitted runs
    finally:
        executor.close()
    polling = LocalExecutor(db, threads=2, poll=True, poll_seconds=0.05).start()
    try:
        assert wait_for_job(db, again, 60).status == "done"
    finally:
        polling.close()


# -- migration 0007 --------------------------------------------------------------------------------


def _alembic(path: Path, revision: str, *, down: bool = False) -> None:
    engine = make_engine(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


def test_migration_0007_up_and_down_keeps_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _alembic(path, "0006")
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for status in ("queued", "running", "done"):
            conn.execute(
                text("INSERT INTO jobs (kind, status, params, progress_done) VALUES ('export', :s, '{}', 0)"),
                {"s": status},
            )
    _alembic(path, "0007")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, attempts, claimed_by, heartbeat_at FROM jobs ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            ("queued", 0, None, None),
            ("running", 0, None, None),
            ("done", 0, None, None),
        ]
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'ix_jobs_running'").scalar()
        assert "WHERE status = 'running'" in str(ddl)
        conn.execute(text("INSERT INTO jobs (kind, status, progress_done) VALUES ('consensus', 'queued', 0)"))
        conn.commit()
    _alembic(path, "0006", down=True)
    with engine.connect() as conn:
        columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(jobs)")}
        assert not {"claimed_by", "heartbeat_at", "attempts"} & columns
        assert [r[0] for r in conn.execute(text("SELECT status FROM jobs ORDER BY id"))] == [
            "queued",
            "running",
            "done",
            "queued",
        ]
        assert (
            conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'ix_jobs_running'").scalar()
            is None
        )
    engine.dispose()
    db = Database(f"sqlite:///{path}")  # and up to head again
    with db.session() as session:
        assert [j.attempts for j in session.scalars(select(Job).order_by(Job.id))] == [0, 0, 0, 0]
    db.dispose()


# -- routes only queue -----------------------------------------------------------------------------


@pytest.fixture
def recorded(db: Any, media_store: Any, app_settings: Any) -> Iterator[tuple[TestClient, Recorder]]:
    recorder = Recorder()
    with TestClient(create_app(db, media=media_store, settings=app_settings, executor=recorder)) as c:
        yield c, recorder


def test_routes_only_queue_jobs_and_hand_them_to_the_executor(
    recorded: tuple[TestClient, Recorder], db: Any, admin_token: str, app_settings: Any
) -> None:
    client, recorder = recorded
    pid = _project(client, admin_token)
    r = _upload(client, admin_token, pid, [{"text": "a"}, {"text": "b"}], wait="false")
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["status"]) == ("import", "queued") and recorder.submitted == [job["id"]]
    upload = Path(app_settings.data_dir) / "uploads" / str(job["id"])
    assert (upload / "a.jsonl").is_file() and job["params"]["upload"] == str(upload)
    assert client.get(f"/api/v1/projects/{pid}/items", headers=auth(admin_token)).json()["results"] == []

    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "jsonl"}, headers=auth(admin_token))
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert recorder.submitted == [job["id"], r.json()["id"]]

    # A worker (any process) runs them from the database.
    assert run_pending(db) == 2
    assert _job(db, job["id"]).status == "done" and not upload.exists()  # the upload is removed
    shown = client.get(f"/api/v1/jobs/{job['id']}", headers=auth(admin_token)).json()
    assert shown["attempts"] == 1 and shown["claimed_by"] == worker_name() and shown["heartbeat_at"]
    assert len(client.get(f"/api/v1/projects/{pid}/items", headers=auth(admin_token)).json()["results"]) == 2


def test_a_waiting_import_answers_with_the_jobs_error(
    client: Any, admin_token: str, app_settings: Any
) -> None:
    pid = _project(client, admin_token)
    r = _upload(
        client, admin_token, pid, [{"text": "a", "external_id": "x"}, {"text": "b", "external_id": "x"}]
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("a.jsonl:2: external_id") and r.json()["line"] == 2
    assert not any((Path(app_settings.data_dir) / "uploads").iterdir())  # nothing left behind


# -- defect 4: exports are never stale -------------------------------------------------------------


def test_api_download_refreshes_a_lagging_consensus_first(client: Any, db: Any, admin_token: str) -> None:
    pid = _labelled_project(client, db, admin_token)
    r = client.get(f"/api/v1/projects/{pid}/export", headers=auth(admin_token))
    assert r.status_code == 200, r.text
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [row["consensus"]["value"] for row in rows] == [{"sentiment": "pos"}] * 3
    assert queued_refreshes(db, pid) == 0
    r = client.get(f"/api/v1/projects/{pid}/export", params={"format": "csv"}, headers=auth(admin_token))
    assert r.status_code == 200 and r.text.count("pos") == 3


def test_export_job_refreshes_a_lagging_consensus_first(client: Any, db: Any, admin_token: str) -> None:
    pid = _labelled_project(client, db, admin_token)
    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "jsonl"}, headers=auth(admin_token))
    assert r.status_code == 202, r.text
    job = wait_for_job(db, r.json()["id"], 60)
    assert job.status == "done", job.error
    body = client.get(f"/api/v1/jobs/{job.id}/download", headers=auth(admin_token)).text
    assert all(json.loads(line)["consensus"] for line in body.splitlines())


def test_sdk_export_refreshes_a_lagging_consensus_first(tmp_path: Path) -> None:
    """Against `labelmill serve --no-worker`, whose worker threads run only what its requests
    ask for: the debounced refresh stays queued, and the SDK's export must not miss the labels."""
    import subprocess
    import sys
    import time

    import httpx

    from labelmill import Client
    from tests.test_client import _cli, _free_port

    db = f"sqlite:///{tmp_path / 'sdk.db'}"
    env = {**os.environ, "LABELMILL_DATA_DIR": str(tmp_path)}
    env.pop("LABELMILL_DATABASE_URL", None)
    _cli(env, "user", "create", "admin", "--role", "admin", "--db", db)
    _cli(env, "user", "create", "ann", "--role", "member", "--db", db)
    admin_token = _cli(env, "token", "create", "admin", "--db", db).splitlines()[-1].strip()
    ann_token = _cli(env, "token", "create", "ann", "--db", db).splitlines()[-1].strip()
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    cmd = [sys.executable, "-m", "labelmill.cli", "serve", "--db", db, "--port", str(port), "--no-worker"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with Client(url, admin_token) as admin, Client(url, ann_token) as ann:
            project = admin.create_project("sdk", SCHEMA)
            admin.import_items(project, [{"text": f"t{i}", "external_id": f"e{i}"} for i in range(3)])
            admin.add_member(project, "ann", "annotator")
            while (task := ann.next_task(project.id)) is not None:
                ann.submit(task, {"sentiment": "neg"})
            assert {e: c["value"] for e, c in admin.consensus(project).items()} == {
                f"e{i}": {"sentiment": "neg"} for i in range(3)
            }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_cli_export_refreshes_a_lagging_consensus_first(
    client: Any, db: Any, admin_token: str, tmp_path: Path
) -> None:
    from labelmill.cli import app

    if db.dialect != "sqlite":
        pytest.skip("the CLI test reads the SQLite file")
    pid = _labelled_project(client, db, admin_token)
    out = tmp_path / "out.jsonl"
    done = CliRunner().invoke(app, ["export", str(pid), "--out", str(out), "--db", db.url])
    assert done.exit_code == 0, done.output
    assert all(json.loads(line)["consensus"] for line in out.read_text().splitlines())


def test_an_export_is_refused_when_the_consensus_cannot_be_refreshed(
    client: Any, db: Any, admin_token: str, monkeypatch: Any, tmp_path: Path
) -> None:
    import labelmill.services.consensus as consensus

    pid = _labelled_project(client, db, admin_token)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(consensus, "refresh_consensus", broken)
    r = client.get(f"/api/v1/projects/{pid}/export", headers=auth(admin_token))
    assert r.status_code == 409, r.text
    assert "could not be brought up to date" in r.json()["detail"] and "disk on fire" in r.json()["detail"]
    with pytest.raises(StaleConsensus):
        ensure_consensus_fresh(db, pid, InlineExecutor(db))
    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "jsonl"}, headers=auth(admin_token))
    job = wait_for_job(db, r.json()["id"], 60)
    assert job.status == "failed" and "could not be brought up to date" in (job.error or "")
    if db.dialect == "sqlite":
        from labelmill.cli import app

        out = tmp_path / "out.jsonl"
        done = CliRunner().invoke(app, ["export", str(pid), "--out", str(out), "--db", db.url])
        assert done.exit_code == 1 and not out.exists()
        assert done.output.count("\n") == 1 and "could not be brought up to date" in done.output


def test_labels_arriving_during_an_export_do_not_hold_it_up(client: Any, db: Any, admin_token: str) -> None:
    """Only refreshes queued before the export began must run; one queued later (as a busy
    project's labels keep arriving) is left to the worker."""
    pid = _labelled_project(client, db, admin_token)
    ensure_consensus_fresh(db, pid, InlineExecutor(db))
    later = job_service.schedule_job(db, "consensus", pid)
    recorder = Recorder()
    # fresh as of an export that began before `later` was queued
    from labelmill.jobs.freshness import is_fresh

    assert is_fresh(db, pid, queued_through=later - 1) and not is_fresh(db, pid)
    ensure_consensus_fresh(db, pid, InlineExecutor(db))
    assert _job(db, later).status == "done" and recorder.submitted == []


# -- defect 15: downloads need the manager role now ------------------------------------------------


def test_export_download_checks_the_current_role(client: Any, db: Any, admin_token: str) -> None:
    pid = _project(client, admin_token)
    uid, manager = make_user(db, "mgr")
    r = client.post(
        f"/api/v1/projects/{pid}/members", json={"user": "mgr", "role": "manager"}, headers=auth(admin_token)
    )
    assert r.status_code == 201, r.text
    assert _upload(client, admin_token, pid, [{"text": "secret"}]).status_code == 201
    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "jsonl"}, headers=auth(manager))
    job_id = r.json()["id"]
    assert wait_for_job(db, job_id, 60).status == "done"
    assert client.get(f"/api/v1/jobs/{job_id}/download", headers=auth(manager)).status_code == 200
    with db.session() as session:
        session.execute(
            update(Member).where(Member.project_id == pid, Member.user_id == uid).values(role="annotator")
        )
    r = client.get(f"/api/v1/jobs/{job_id}/download", headers=auth(manager))
    assert r.status_code == 403 and "manager role" in r.json()["detail"]
    with db.session() as session:
        session.execute(
            update(Member).where(Member.project_id == pid, Member.user_id == uid).values(role="manager")
        )
    assert client.get(f"/api/v1/jobs/{job_id}/download", headers=auth(manager)).status_code == 200


# -- defect 16: the jobs cursor, the JSONL download's options --------------------------------------


def test_jobs_cursor_pages_and_refuses_what_it_never_handed_out(client: Any, admin_token: str) -> None:
    pid = _project(client, admin_token)
    for i in range(3):
        assert _upload(client, admin_token, pid, [{"text": f"t{i}"}]).status_code == 201
    first = client.get("/api/v1/jobs", params={"limit": 2}, headers=auth(admin_token)).json()
    rest = client.get(
        "/api/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(admin_token)
    ).json()
    assert len(first["results"]) == 2 and len(rest["results"]) == 1 and rest["next_cursor"] is None
    for bad in ("²", "٣", "9" * 30, str(2**63), "-1", "1e3", "abc"):
        r = client.get("/api/v1/jobs", params={"cursor": bad}, headers=auth(admin_token))
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["field"] in ("cursor", "query.cursor")


@given(cursor=st.text(max_size=40))
@hsettings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_jobs_cursor_is_a_server_error(client: Any, admin_token: str, cursor: str) -> None:
    r = client.get("/api/v1/jobs", params={"cursor": cursor}, headers=auth(admin_token))
    valid = cursor == "" or (cursor.isascii() and cursor.isdigit() and int(cursor) < 2**63)
    assert r.status_code == (200 if valid else 422), (cursor, r.status_code, r.text)


def test_jsonl_download_honours_labels_and_predictions(client: Any, db: Any, admin_token: str) -> None:
    pid = _project(client, admin_token)
    line = {
        "data": {"text": "x"},
        "external_id": "e1",
        "annotations": [{"annotator": "w", "value": {"sentiment": "neg"}}],
        "predictions": [{"value": {"sentiment": "pos"}, "score": 0.5, "model_version": "m"}],
    }
    assert _upload(client, admin_token, pid, [line]).status_code == 201

    def row(**params: Any) -> dict[str, Any]:
        r = client.get(f"/api/v1/projects/{pid}/export", params=params, headers=auth(admin_token))
        assert r.status_code == 200, r.text
        (only,) = r.text.splitlines()
        return dict(json.loads(only))

    full = row()  # no options: the lossless line that imports back
    assert full["annotations"] and full["predictions"] and full["consensus"]
    consensus_only = row(labels="consensus")
    assert consensus_only["annotations"] == [] and consensus_only["consensus"] == full["consensus"]
    annotations_only = row(labels="annotations", include_predictions="false")
    assert annotations_only["consensus"] is None and annotations_only["predictions"] == []
    assert annotations_only["annotations"] == full["annotations"]
    assert row(include_predictions="true")["predictions"] == full["predictions"]
    assert set(consensus_only) == set(full)  # every line keeps its five keys


# -- labelmill worker ------------------------------------------------------------------------------


def test_worker_once_reaps_and_runs_queued_jobs(client: Any, db: Any, admin_token: str) -> None:
    from labelmill.cli import app

    if db.dialect != "sqlite":
        pytest.skip("the CLI test reads the SQLite file")
    pid = _labelled_project(client, db, admin_token)
    lost = _queued(db, "export", pid, {"format": "jsonl", "out_dir": str(Path(db.url[10:]).parent / "ex")})
    job_service.claim_job_by_id(db, lost, worker=f"{job_service.machine_name()}:999999999:1")
    done = CliRunner().invoke(app, ["worker", "--once", "--db", db.url])
    assert done.exit_code == 0, done.output
    assert "ran 2 jobs" in done.output and queued_refreshes(db, pid) == 0
    finished = _job(db, lost)
    assert finished.status == "done" and finished.attempts == 2


def test_heartbeats_keep_only_the_workers_own_claims_fresh(db: Any) -> None:
    pid = _a_project(db)
    mine, theirs = _queued(db, "export", pid), _queued(db, "export", pid)
    job_service.claim_job_by_id(db, mine, worker="me")
    job_service.claim_job_by_id(db, theirs, worker="them")
    old = datetime.now(UTC) - timedelta(hours=1)
    for job_id in (mine, theirs):
        _set(db, job_id, heartbeat_at=old)
    assert job_service.heartbeat(db, [mine, theirs], "me") == 1
    beat_mine, beat_theirs = _job(db, mine).heartbeat_at, _job(db, theirs).heartbeat_at
    assert beat_mine is not None and beat_mine > old and beat_theirs == old


def test_an_exclusive_job_waits_for_the_one_running_then_runs(db: Any) -> None:
    """A refresh asked for while another runs for the project waits for it, then runs (an
    inline executor alone would only find it blocked)."""
    import threading

    from labelmill.jobs.executor import submit_and_wait

    pid = _a_project(db)
    running = _queued(db, "consensus", pid)
    job_service.claim_job_by_id(db, running, worker="elsewhere:1:x", exclusive=registry.exclusive_kinds())
    waiting = job_service.schedule_job(db, "consensus", pid)
    finisher = threading.Timer(0.3, job_service.finish_job, args=(db, running), kwargs={"result": {}})
    finisher.start()
    try:
        job = submit_and_wait(db, InlineExecutor(db), waiting, 60)
    finally:
        finisher.join()
    assert job.status == "done" and job.id == waiting


def test_two_workers_never_run_two_refreshes_of_one_project(db: Any) -> None:
    """Two refreshes of one project queued (past the debounce) and two workers claiming at the
    same moment: at most one refresh runs (PostgreSQL: the advisory lock; SQLite: one writer)."""
    import threading

    pid = _a_project(db)
    for _ in range(2):
        _queued(db, "consensus", pid)
    barrier = threading.Barrier(2)
    claimed: list[Job | None] = []

    def claim(name: str) -> None:
        barrier.wait()
        claimed.append(
            job_service.claim_job(db, ("consensus",), worker=name, exclusive=registry.exclusive_kinds())
        )

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(job is not None for job in claimed) == 1
    with db.session() as session:
        running = session.scalars(select(Job).where(Job.project_id == pid, Job.status == "running")).all()
    assert len(running) == 1


def test_a_running_job_keeps_its_heartbeat_fresh(db: Any, monkeypatch: Any) -> None:
    import threading

    import labelmill.jobs.executor as executor

    monkeypatch.setattr(executor, "HEARTBEAT_SECONDS", 0.01)
    monkeypatch.setattr(executor, "_BEAT", None)  # a fresh heartbeat thread, not one asleep for 30 s
    seen = threading.Event()

    def waits_for_a_heartbeat(db: Database, job: Job) -> dict[str, Any]:
        first = job.heartbeat_at
        for _ in range(3000):  # until the heartbeat thread has written a newer one
            beat = _job(db, job.id).heartbeat_at
            if first is not None and beat is not None and beat > first:
                seen.set()
                break
            seen.wait(0.01)
        return {"beat": seen.is_set()}

    registry.kinds()  # the built-in kinds first, then this test's own, removed after it
    monkeypatch.setitem(
        registry._KINDS, "test-heartbeat", registry.JobKind("test-heartbeat", waits_for_a_heartbeat)
    )
    pid = _a_project(db)
    job_id = _queued(db, "test-heartbeat", pid)
    assert executor.run_job(db, job_id)
    assert _job(db, job_id).result == {"beat": True}
