"""Annotator-loop throughput: ``tasks/next`` + ``submit`` over HTTP, on SQLite and PostgreSQL.

Run: ``python bench/queue.py [--worker]`` (env ``BENCH_PG_URL`` for the PostgreSQL server, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; ``BENCH_SECONDS`` per loop, default 8;
``BENCH_BACKENDS=sqlite,pg`` to choose the databases).

Two server modes: by default ``labelmill serve --no-worker`` (the API alone); with ``--worker`` (or
``BENCH_WORKER=1``) the default ``labelmill serve``, whose worker refreshes the consensus of the
project under load (a debounced refit after the submits) while the clients label. The projects
are created with ``spam_detection`` and ``auto_pause`` off, so the refresh never pauses a load
client. ``BENCH_QUICK=1`` is a short run: K=1 and K=50 only, one K=50 pair, 4 s per run, no raw
loop and no 1M-item scale section.

The load generator shares the machine's CPUs with the server, so every rate is also given as a
ratio to a ceiling measured in the same run by the same client loop: an echo app on the same
server stack (``bench/support/queue_echo.py``) whose two routes do no database work. A raw-SQL loop of
the same transactions (no HTTP, no ORM) shows what the database alone can do. Every HTTP loop
also records the CPU time the server process and the client process used per cycle: the client
competes for the same two CPUs, so when the server needs less CPU than the client the ratio to
echo says more about the client than the server, and the server's CPU per cycle against the
echo's is the figure to compare. K=50 runs
``BENCH_K50_PAIRS`` times (default 3), each right after its own echo run, and the headline
figures are the medians of those pairs. The scale section
runs K=50 on a 1,000,000-item project at 0%, 50% and 99% done and prints the next-task plan.
Every server is a subprocess on 127.0.0.1, killed at the end; temp files and the PostgreSQL
database are removed. Ends with one ``RESULT`` line.
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

# This file is bench/queue.py: run as a script, its folder is sys.path[0] and the file would
# shadow the standard library's ``queue`` for everything imported after it (concurrent.futures,
# anyio, psycopg's pool...). Drop that folder before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import contextlib
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from labelmill.formats.records import ImportRecord
from labelmill.services import queue
from labelmill.services.ingest import import_records
from labelmill.services.projects import add_member, create_project
from labelmill.services.users import create_token, create_user
from labelmill.store.engine import Database
from labelmill.store.models import Item, Project, User

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: A database of this run's own (two runs on one server never drop each other's).
PG_DB = f"labelmill_qbench_{uuid.uuid4().hex[:10]}"
QUICK = os.environ.get("BENCH_QUICK") == "1"
#: Serve with the background worker refreshing consensus (``labelmill serve``), not ``--no-worker``.
WITH_WORKER = os.environ.get("BENCH_WORKER") == "1" or "--worker" in sys.argv[1:]
BACKENDS = tuple(os.environ.get("BENCH_BACKENDS", "sqlite,pg").split(","))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4" if QUICK else "8"))
#: K=50 is measured this many times, each right after its own echo run; figures are medians.
K50_PAIRS = int(os.environ.get("BENCH_K50_PAIRS", "1" if QUICK else "3"))
WARMUP = 1.0
KS = (1, 50) if QUICK else (1, 10, 50, 200)
#: Settings of every bench project: the spammer detector must not pause a load client.
PROJECT_SETTINGS = {"spam_detection": False, "auto_pause": False}
RAW_KS = (1, 10, 50)
RAW_SECONDS = 3.0
SMALL_ITEMS = 40_000
#: The raw loop is ~100x faster than HTTP: its project must outlast all its runs (overlap 1).
RAW_ITEMS = 150_000
SCALE_ITEMS = int(os.environ.get("BENCH_SCALE_ITEMS", "1000000"))
SCALE_DONE = (0.0, 0.5, 0.99)
#: Per request; a request stuck behind the server's 30 s pool timeout fails here first.
CLIENT_TIMEOUT = 15.0
SUBMIT_ATTEMPTS = 2
SCHEMA = {"controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["pos", "neg"]}]}
#: Label Studio 1.23.2, the same kind of loop at K=50 (measured separately; reference only).
LABEL_STUDIO_K50 = 1.6
WORDS = ["fast", "slow", "great", "awful", "fine", "odd", "cheap", "loud", "new", "used"]
ROOT = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- helpers


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def records(n: int, prefix: str) -> Iterator[ImportRecord]:
    for i in range(n):
        text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6))
        yield ImportRecord(
            source="bench", line=i + 1, data={"text": f"{text} #{i}"}, external_id=f"{prefix}{i}"
        )


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@contextlib.contextmanager
def serve(cmd: list[str], port: int, tmp: Path, env: dict[str, str]) -> Iterator[Server]:
    log = tmp / f"server-{port}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT.parent)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{server.url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_labelmill(url: str, tmp: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    cmd = [sys.executable, "-m", "labelmill.cli", "serve", "--db", url, "--port", str(port)]
    cmd.append("--worker" if WITH_WORKER else "--no-worker")
    env = {**os.environ, "LABELMILL_DATA_DIR": str(tmp / "data")}
    return serve(cmd, port, tmp, env)


def serve_echo(tmp: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "support" / "queue_echo.py"), "--port", str(port)]
    return serve(cmd, port, tmp, dict(os.environ))


# --------------------------------------------------------------------------- setup


def make_project(db: Database, name: str, n_items: int, overlap: int, user_ids: list[int]) -> int:
    with db.session() as s:
        project = create_project(s, name, SCHEMA, settings={"overlap": overlap, **PROJECT_SETTINGS})
        for uid in user_ids:
            user = s.get(User, uid)
            assert user is not None
            add_member(s, project, user, "annotator")
        pid = project.id
    import_records(db, pid, records(n_items, f"{name}-"))
    return pid


def make_users(db: Database, n: int) -> tuple[list[int], list[str]]:
    ids, tokens = [], []
    with db.session() as s:
        for i in range(n):
            user = create_user(s, f"bench-annotator-{i}")
            secret, _ = create_token(s, user, name="bench")
            ids.append(user.id)
            tokens.append(secret)
    return ids, tokens


# --------------------------------------------------------------------------- the HTTP loop


@dataclass
class LoopResult:
    k: int
    seconds: float
    cycles: int = 0  # submits completed inside the measured window (whenever their cycle began)
    submits_ok: int = 0  # all 201 non-replayed submits, warm-up included (checked against the database)
    errors: dict[str, int] = field(default_factory=dict)
    empty: int = 0  # 204: nothing left
    unknown: int = 0  # submits whose outcome the client never learned (all attempts timed out)
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    cycle_ms: list[float] = field(default_factory=list)
    server_cpu_s: float = float("nan")  # CPU time of the server process during the loop
    client_cpu_s: float = float("nan")  # CPU time of this (the client) process during the loop

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds

    def cpu_per_cycle_ms(self, seconds: float) -> float:
        """CPU milliseconds per completed next+submit cycle (warm-up included on both sides)."""
        return seconds * 1000 / self.submits_ok if self.submits_ok else float("nan")

    def error_count(self) -> int:
        return sum(self.errors.values())


def run_together(
    worker: Any, args: list[Any], barrier: threading.Barrier, box: dict[str, float], timeout: float
) -> None:
    """One thread per argument, released at once through ``barrier`` with the start time in
    ``box["start"]``; waits for them all."""
    threads = [threading.Thread(target=worker, args=(a,), daemon=True) for a in args]
    for t in threads:
        t.start()
    box["start"] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join(timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_loop(server: Server, project_id: int, tokens: list[str], seconds: float = SECONDS) -> LoopResult:
    """K threads (one per token), each with its own client: next, then submit, until the deadline.
    Also records the CPU time the server and this client process used meanwhile."""
    server_cpu, client_cpu = cpu_seconds(server.proc.pid), time.process_time()
    result = _http_loop(server.url, project_id, tokens, seconds)
    result.server_cpu_s = cpu_seconds(server.proc.pid) - server_cpu
    result.client_cpu_s = time.process_time() - client_cpu
    return result


def _http_loop(base_url: str, project_id: int, tokens: list[str], seconds: float) -> LoopResult:
    k = len(tokens)
    result = LoopResult(k=k, seconds=seconds)
    lock = threading.Lock()
    barrier = threading.Barrier(k + 1)
    box: dict[str, float] = {}

    def worker(token: str) -> None:
        nxt: list[float] = []
        sub: list[float] = []
        cyc: list[float] = []
        ok = cycles = empty = unknown = 0
        errors: dict[str, int] = {}
        headers = {"Authorization": f"Token {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=CLIENT_TIMEOUT) as client:
            barrier.wait()
            start = box["start"]
            measure_from, end = start + WARMUP, start + WARMUP + seconds
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                try:
                    r = client.post(f"/api/v1/projects/{project_id}/tasks/next")
                    t1 = time.perf_counter()
                    if r.status_code == 204:
                        empty += 1
                        break
                    if r.status_code != 200:
                        errors[f"next {r.status_code}"] = errors.get(f"next {r.status_code}", 0) + 1
                        continue
                    task_id = r.json()["task"]["id"]
                except httpx.HTTPError as exc:
                    name = f"next {type(exc).__name__}"
                    errors[name] = errors.get(name, 0) + 1
                    continue
                # A submit that timed out may still have been stored: retry it under the same
                # Idempotency-Key, as a real client would, so the count of stored labels is exact.
                key, status = uuid.uuid4().hex, 0
                for _attempt in range(SUBMIT_ATTEMPTS):
                    try:
                        r = client.post(
                            f"/api/v1/tasks/{task_id}/submit",
                            json={"value": {"label": "pos" if task_id % 2 else "neg"}},
                            headers={"Idempotency-Key": key},
                        )
                        status = r.status_code
                        break
                    except httpx.HTTPError as exc:
                        name = f"submit {type(exc).__name__}"
                        errors[name] = errors.get(name, 0) + 1
                t2 = time.perf_counter()
                if status != 201:
                    if status:
                        errors[f"submit {status}"] = errors.get(f"submit {status}", 0) + 1
                    else:
                        unknown += 1
                    continue
                ok += 1
                if measure_from <= t2 <= end:
                    cycles += 1
                    nxt.append((t1 - t0) * 1000)
                    sub.append((t2 - t1) * 1000)
                    cyc.append((t2 - t0) * 1000)
        with lock:
            result.cycles += cycles
            result.submits_ok += ok
            result.empty += empty
            result.unknown += unknown
            result.next_ms += nxt
            result.submit_ms += sub
            result.cycle_ms += cyc
            for key, n in errors.items():
                result.errors[key] = result.errors.get(key, 0) + n

    run_together(worker, tokens, barrier, box, seconds + WARMUP + 120)
    return result


# --------------------------------------------------------------------------- raw SQL loop


SQL_PICK = (
    "SELECT id FROM items WHERE project_id = {p} AND is_open AND NOT is_gold"
    " AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.item_id = items.id AND tasks.annotator_id = {p})"
    " ORDER BY priority DESC, id LIMIT 1"
)
SQL_TAKE = (
    "UPDATE items SET assigned = assigned + 1, is_open = assigned + 1 < coalesce(needed, {p}) WHERE id = {p}"
)
SQL_TASK = (
    "INSERT INTO tasks (project_id, item_id, annotator_id, state, is_gold, leased_at, expires_at)"
    " VALUES ({p}, {p}, {p}, 'leased', {f}, {p}, {p}) RETURNING id"
)
SQL_ANN = (
    "INSERT INTO annotations (project_id, item_id, annotator_id, task_id, value, lead_seconds, status,"
    " idempotency_key, created_at, updated_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, 0.1, 'submitted', {p}, {p}, {p})"
)
SQL_DONE = "UPDATE tasks SET state = 'submitted', finished_at = {p} WHERE id = {p}"
SQL_COUNT = "UPDATE items SET annotation_count = annotation_count + 1 WHERE id = {p}"


def raw_loop(dialect: str, dsn: str, project_id: int, user_ids: list[int], overlap: int) -> LoopResult:
    """The two transactions of the loop (take a task; submit it) by hand, one connection per thread."""
    p, f = ("?", "0") if dialect == "sqlite" else ("%s", "false")
    pick = SQL_PICK.format(p=p) + (" FOR UPDATE OF items SKIP LOCKED" if dialect == "postgresql" else "")
    take, task_sql, ann, done, count = (
        s.format(p=p, f=f) for s in (SQL_TAKE, SQL_TASK, SQL_ANN, SQL_DONE, SQL_COUNT)
    )
    result = LoopResult(k=len(user_ids), seconds=RAW_SECONDS)
    lock = threading.Lock()
    barrier = threading.Barrier(len(user_ids) + 1)
    box: dict[str, float] = {}

    def connect() -> Any:
        if dialect == "sqlite":
            conn = sqlite3.connect(dsn, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        import psycopg

        return psycopg.connect(dsn)

    def worker(uid: int) -> None:
        conn = connect()
        cyc: list[float] = []
        n = empty = 0
        begin = "BEGIN IMMEDIATE" if dialect == "sqlite" else None
        barrier.wait()
        measure_from, end = box["start"] + 0.5, box["start"] + 0.5 + RAW_SECONDS
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                now = time.strftime("%Y-%m-%d %H:%M:%S")
                cur = conn.cursor()
                if begin:
                    cur.execute(begin)
                row = cur.execute(pick, (project_id, uid)).fetchone()
                if row is None:
                    conn.commit() if dialect == "postgresql" else cur.execute("COMMIT")
                    empty = 1
                    break
                item_id = row[0]
                cur.execute(take, (overlap, item_id))
                task_id = cur.execute(task_sql, (project_id, item_id, uid, now, now)).fetchone()[0]
                conn.commit() if dialect == "postgresql" else cur.execute("COMMIT")
                if begin:
                    cur.execute(begin)
                cur.execute(
                    ann, (project_id, item_id, uid, task_id, '{"label": "pos"}', uuid.uuid4().hex, now, now)
                )
                cur.execute(done, (now, task_id))
                cur.execute(count, (item_id,))
                conn.commit() if dialect == "postgresql" else cur.execute("COMMIT")
                t1 = time.perf_counter()
                if measure_from <= t1 <= end:
                    n += 1
                    cyc.append((t1 - t0) * 1000)
        finally:
            conn.close()
        with lock:
            result.cycles += n
            result.cycle_ms += cyc
            result.empty += empty

    run_together(worker, user_ids, barrier, box, RAW_SECONDS + 60)
    return result


# --------------------------------------------------------------------------- checks and plans


VIOLATION_SQL = {
    # more submitted + leased tasks on an item than it needs (gold excepted)
    "over_overlap": "SELECT count(*) FROM (SELECT t.item_id, max(coalesce(i.needed, :ov)) AS needed,"
    " count(*) AS n FROM tasks t JOIN items i ON i.id = t.item_id WHERE t.project_id = :pid AND NOT t.is_gold"
    " AND t.state IN ('submitted', 'leased') GROUP BY t.item_id) x WHERE n > needed",
    # the slot counter itself says more than needed
    "assigned_over_needed": "SELECT count(*) FROM items WHERE project_id = :pid AND NOT is_gold"
    " AND assigned > coalesce(needed, :ov)",
    # the slot counter disagrees with the task rows (items with tasks only: bulk-done items have none)
    "assigned_drift": "SELECT count(*) FROM (SELECT i.id, i.assigned, count(t.id) AS n FROM items i"
    " JOIN tasks t ON t.item_id = i.id AND t.state IN ('submitted', 'leased') AND NOT t.is_gold"
    " WHERE i.project_id = :pid GROUP BY i.id, i.assigned) x WHERE n != assigned",
    "repeated_tasks": "SELECT count(*) FROM (SELECT item_id, annotator_id FROM tasks WHERE project_id = :pid"
    " GROUP BY item_id, annotator_id HAVING count(*) > 1) x",
    "repeated_annotations": "SELECT count(*) FROM (SELECT item_id, annotator_id FROM annotations"
    " WHERE project_id = :pid GROUP BY item_id, annotator_id HAVING count(*) > 1) x",
    "stored": "SELECT count(*) FROM annotations WHERE project_id = :pid",
}


def violations(db: Database, project_id: int, submits_ok: int, unknown: int) -> dict[str, int]:
    """Problems visible in the database: over-assigned items, repeated pairs, lost or extra annotations."""
    from sqlalchemy import text

    with db.session() as s:
        project = s.get(Project, project_id)
        assert project is not None
        ov = int(project.settings.get("overlap", 1))
        got = {
            key: int(s.execute(text(sql), {"pid": project_id, "ov": ov}).scalar_one())
            for key, sql in VIOLATION_SQL.items()
        }
    stored = got.pop("stored")
    return {
        "over_overlap": got["over_overlap"],
        "assigned_over_needed": got["assigned_over_needed"],
        "assigned_drift": got["assigned_drift"],
        "repeated_pairs": got["repeated_tasks"] + got["repeated_annotations"],
        # a submit whose outcome the client never learned may or may not be stored
        "lost_or_extra": max(0, submits_ok - stored) + max(0, stored - submits_ok - unknown),
    }


def pick_query(db: Database, project_id: int, user_id: int) -> tuple[str, Any]:
    """The SQL and parameters of labelmill's next-task pick (on PostgreSQL, the locking subquery
    of its one-statement lease)."""
    stmt = queue.next_item_query(project_id, user_id)
    if db.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=Item)
    compiled = stmt.compile(db.engine)
    if compiled.positiontup is not None:
        return str(compiled), tuple(compiled.params[k] for k in compiled.positiontup)
    return str(compiled), compiled.params


def plan_and_time(db: Database, project_id: int, user_id: int) -> tuple[list[str], float]:
    sql, params = pick_query(db, project_id, user_id)
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
    times = []
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + sql, params).all()
        plan = [str(r[-1]) if db.dialect == "sqlite" else str(r[0]) for r in rows]
        for _ in range(200):
            t0 = time.perf_counter()
            conn.exec_driver_sql(sql, params).all()
            times.append((time.perf_counter() - t0) * 1000)
            conn.rollback()
    return plan, pct(times, 0.5)


def fill_done(db: Database, project_id: int, fraction: float) -> None:
    """Mark the first ``fraction`` of items (by id) done, as overlap-1 items look once labelled.
    No annotation rows are written for them."""
    with db.engine.begin() as conn:
        lo, hi = conn.exec_driver_sql(
            f"SELECT min(id), max(id) FROM items WHERE project_id = {project_id}"
        ).one()
        cut = lo + int((hi - lo + 1) * fraction)
        false = "0" if db.dialect == "sqlite" else "false"
        conn.exec_driver_sql(
            f"UPDATE items SET assigned = 1, annotation_count = 1, is_open = {false}"
            f" WHERE project_id = {project_id} AND id < {cut} AND is_open"
        )
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE items")


# --------------------------------------------------------------------------- one backend


@dataclass
class Backend:
    name: str
    loops: dict[str, LoopResult] = field(default_factory=dict)
    echo: dict[int, LoopResult] = field(default_factory=dict)  # measured right before the K-run it pairs
    raw: dict[int, LoopResult] = field(default_factory=dict)
    viol: dict[str, dict[str, int]] = field(default_factory=dict)
    plans: dict[float, tuple[list[str], float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: K=50 (echo, labelmill) pairs, run back to back: the headline figures are their medians
    pairs: list[tuple[LoopResult, LoopResult]] = field(default_factory=list)


def run_backend(name: str, url: str, raw_dsn: str, tmp: Path, echo_server: Server) -> Backend:
    """All runs on one database. The server is stopped while the bench itself writes in bulk
    (1M import, done-state fill), so those writes never queue behind the server's requests."""
    out = Backend(name)
    db = Database(url)
    # submits the clients saw succeed, and those whose outcome they never learned, per project
    seen: dict[int, list[int]] = {}

    def loop(server: Server, label: str, pid: int, tokens: list[str], seconds: float) -> None:
        r = http_loop(server, pid, tokens, seconds)
        out.loops[label] = r
        counts = seen.setdefault(pid, [0, 0])
        counts[0] += r.submits_ok
        counts[1] += r.unknown
        time.sleep(1.0)  # let requests the clients gave up on finish before looking
        out.viol[label] = violations(db, pid, counts[0], counts[1])
        print(f"  {name} {label}: {r.rate:.1f}/s {r.errors or ''}", file=sys.stderr, flush=True)

    try:
        ids, tokens = make_users(db, max(KS))
        small = make_project(db, "qbench-o1", SMALL_ITEMS, 1, ids)
        triple = make_project(db, "qbench-o3", SMALL_ITEMS // 4, 3, ids)
        raw_pid = make_project(db, "qbench-raw", RAW_ITEMS, 1, []) if not QUICK else 0
        with serve_labelmill(url, tmp) as server:
            for k in KS:
                # The ceiling right before the run it is compared with: the machine is shared.
                out.echo[k] = http_loop(echo_server, 1, tokens[:k])
                print(f"  {name} echo K={k}: {out.echo[k].rate:.1f}/s", file=sys.stderr, flush=True)
                loop(server, f"K={k}", small, tokens[:k], SECONDS)
            out.pairs.append((out.echo[50], out.loops["K=50"]))
            for n in range(2, K50_PAIRS + 1):
                echo = http_loop(echo_server, 1, tokens[:50])
                loop(server, f"K=50 pair {n}", small, tokens[:50], SECONDS)
                out.pairs.append((echo, out.loops[f"K=50 pair {n}"]))
                print(f"  {name} echo K=50 pair {n}: {echo.rate:.1f}/s", file=sys.stderr, flush=True)
            loop(server, "K=50 overlap 3", triple, tokens[:50], SECONDS)
        out.notes.append(consensus_note(db, [small, triple]))
        if QUICK:
            return out
        for k in RAW_KS:
            out.raw[k] = raw_loop(db.dialect, raw_dsn, raw_pid, ids[:k], 1)
        t0 = time.perf_counter()
        big = make_project(db, "qbench-1m", SCALE_ITEMS, 1, ids[:50])
        out.notes.append(f"{SCALE_ITEMS:,}-item project imported in {time.perf_counter() - t0:.1f} s")
        for frac in SCALE_DONE:
            if frac:
                t0 = time.perf_counter()
                fill_done(db, big, frac)
                out.notes.append(f"filled to {frac:.0%} done in {time.perf_counter() - t0:.1f} s")
            out.plans[frac] = plan_and_time(db, big, ids[0])
            with serve_labelmill(url, tmp) as server:
                loop(server, f"1M {frac:.0%} done", big, tokens[:50], SECONDS)
    finally:
        db.dispose()
    return out


def consensus_note(db: Database, project_ids: list[int]) -> str:
    """How many consensus refreshes the server's worker ran during the HTTP loops."""
    from sqlalchemy import func, select

    from labelmill.store.models import Job

    with db.session() as s:
        rows = s.execute(
            select(Job.status, func.count())
            .where(Job.kind == "consensus", Job.project_id.in_(project_ids))
            .group_by(Job.status)
        ).all()
    counts = ", ".join(f"{status} {n}" for status, n in sorted(rows)) or "none"
    return f"consensus refresh jobs of the HTTP-loop projects: {counts}"


# --------------------------------------------------------------------------- report


def row(label: str, r: LoopResult, echo: LoopResult | None) -> str:
    ratio = f"{r.rate / echo.rate:.0%}" if echo and echo.rate else "-"
    errs = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) or "0"
    return (
        f"| {label} | {r.rate:.1f} | {ratio} | {pct(r.next_ms, 0.5):.1f} / {pct(r.next_ms, 0.99):.1f} "
        f"| {pct(r.submit_ms, 0.5):.1f} / {pct(r.submit_ms, 0.99):.1f} "
        f"| {pct(r.cycle_ms, 0.5):.1f} / {pct(r.cycle_ms, 0.99):.1f} "
        f"| {r.cpu_per_cycle_ms(r.server_cpu_s):.2f} / {r.cpu_per_cycle_ms(r.client_cpu_s):.2f} | {errs} |"
    )


def main() -> None:
    # A SIGTERM (e.g. a timeout) still runs the finally blocks: servers stopped, files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="qbench-"))
    started = time.perf_counter()
    backends: list[Backend] = []
    pg_ok = False
    admin = None
    stack = contextlib.ExitStack()
    try:
        echo_server = stack.enter_context(serve_echo(tmp))
        sqlite_path = tmp / "qbench.db"
        if "sqlite" in BACKENDS:
            backends.append(
                run_backend("SQLite", f"sqlite:///{sqlite_path}", str(sqlite_path), tmp, echo_server)
            )
        try:
            if "pg" not in BACKENDS:
                raise RuntimeError("not asked for (BENCH_BACKENDS)")
            from sqlalchemy import create_engine

            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {PG_DB}")
            pg_ok = True
        except Exception as exc:
            print(f"PostgreSQL unavailable ({exc}); skipping it", file=sys.stderr)
        if pg_ok:
            from sqlalchemy.engine import make_url

            pg_url = make_url(PG_ADMIN_URL).set(database=PG_DB)
            dsn = pg_url.set(drivername="postgresql").render_as_string(hide_password=False)
            backends.append(
                run_backend("PostgreSQL", pg_url.render_as_string(hide_password=False), dsn, tmp, echo_server)
            )
    finally:
        stack.close()
        if admin is not None:
            if pg_ok:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    report(backends, time.perf_counter() - started)


def report(backends: list[Backend], total: float) -> None:
    head = (
        "| run | annotations/s | of echo | next p50 / p99 ms | submit p50 / p99 ms"
        " | cycle p50 / p99 ms | CPU ms per cycle, server / client | errors |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|"
    )
    mode = (
        "labelmill serve (its worker refreshing consensus)" if WITH_WORKER else "labelmill serve --no-worker"
    )
    print(
        f"## Annotator loop, {SECONDS:.0f} s per run after {WARMUP:.0f} s warm-up (2 CPUs shared), {mode}\n"
    )
    print(
        "Each echo row was measured right before the labelmill run at the same K that it is the ceiling of.\n"
    )
    print(head)
    for b in backends:
        for k, r in b.echo.items():
            print(row(f"echo K={k} (before {b.name})", r, None))
        paired = {id(r): e for e, r in b.pairs}  # a K=50 pair's own echo run
        for label, r in b.loops.items():
            print(row(f"{b.name} {label}", r, paired.get(id(r), b.echo.get(r.k))))
    print(
        f"| Label Studio 1.23.2 K=50 (reference, not run here) | {LABEL_STUDIO_K50} | - | - | - | - | - | - |"
    )
    print("\n## Raw database: the same two transactions by direct SQL (no HTTP, no ORM)\n")
    print("| backend | K | cycles/s | cycle p50 / p99 ms | ran out of items |\n|---|---:|---:|---:|---:|")
    for b in backends:
        for k, r in b.raw.items():
            p50, p99 = pct(r.cycle_ms, 0.5), pct(r.cycle_ms, 0.99)
            print(f"| {b.name} | {k} | {r.rate:.0f} | {p50:.2f} / {p99:.2f} | {r.empty} |")
    print("\n## Violations (from the database after each run)\n")
    print("| run | over overlap | assigned > needed | assigned drift | repeated pairs | lost or extra |")
    print("|---|---:|---:|---:|---:|---:|")
    total_viol = 0
    for b in backends:
        for label, v in b.viol.items():
            total_viol += sum(v.values())
            print(
                f"| {b.name} {label} | {v['over_overlap']} | {v['assigned_over_needed']} "
                f"| {v['assigned_drift']} | {v['repeated_pairs']} | {v['lost_or_extra']} |"
            )
    print("\n## Notes\n")
    for b in backends:
        for note in b.notes:
            print(f"- {b.name}: {note}")
    print("\n## Scale: next-task pick on the 1M-item project (done items are bulk-set, no annotation rows)\n")
    print("\n| backend | done | pick query median ms | plan |\n|---|---:|---:|---|")
    for b in backends:
        for frac, (plan, ms) in b.plans.items():
            print(f"| {b.name} | {frac:.0%} | {ms:.2f} | {' / '.join(p.strip() for p in plan)} |")

    nan = float("nan")
    fig: dict[str, dict[str, float]] = {}
    print(f"\n## K=50, {K50_PAIRS} back-to-back pairs (the headline figures are the medians)\n")
    print(
        "| backend | pair | echo/s | labelmill/s | ratio | echo p99 ms | labelmill p99 ms"
        " | server CPU ms per cycle, echo / labelmill |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for b in backends:
        for n, (e, r) in enumerate(b.pairs, 1):
            print(
                f"| {b.name} | {n} | {e.rate:.1f} | {r.rate:.1f} | {r.rate / e.rate:.2f} "
                f"| {pct(e.cycle_ms, 0.99):.0f} | {pct(r.cycle_ms, 0.99):.0f} "
                f"| {e.cpu_per_cycle_ms(e.server_cpu_s):.2f} / {r.cpu_per_cycle_ms(r.server_cpu_s):.2f} |"
            )
    for b in backends:
        k1 = b.loops.get("K=1")

        def med(values: list[float]) -> float:
            return statistics.median(values) if values else nan

        fig[b.name] = {
            "rate": med([r.rate for _, r in b.pairs]),
            "ratio": med([r.rate / e.rate for e, r in b.pairs if e.rate]),
            "p99": med([pct(r.cycle_ms, 0.99) for _, r in b.pairs]),
            "echo_rate": med([e.rate for e, _ in b.pairs]),
            "echo_p99": med([pct(e.cycle_ms, 0.99) for e, _ in b.pairs]),
            "k1": pct(k1.cycle_ms, 0.5) if k1 else nan,
            "cpu": med([r.cpu_per_cycle_ms(r.server_cpu_s) for _, r in b.pairs]),
            "echo_cpu": med([e.cpu_per_cycle_ms(e.server_cpu_s) for e, _ in b.pairs]),
            "scale": [b.loops[f"1M {f:.0%} done"].rate for f in SCALE_DONE if f"1M {f:.0%} done" in b.loops],
        }
    empty = {
        "rate": nan,
        "ratio": nan,
        "p99": nan,
        "echo_rate": nan,
        "echo_p99": nan,
        "k1": nan,
        "cpu": nan,
        "echo_cpu": nan,
        "scale": [],
    }
    sq, pg = fig.get("SQLite", empty), fig.get("PostgreSQL", empty)
    print(
        f"\nGoals: K=50 >= 70% of echo (SQLite {sq['ratio']:.0%}, PostgreSQL {pg['ratio']:.0%}); "
        f"p99 <= 1.5x echo p99 (SQLite {sq['p99'] / sq['echo_p99']:.1f}x, "
        f"PostgreSQL {pg['p99'] / pg['echo_p99']:.1f}x); K=1 cycle median < 10 ms (SQLite {sq['k1']:.1f}, "
        f"PostgreSQL {pg['k1']:.1f}); violations 0 ({total_viol}). Bench took {total:.0f} s.\n"
        f"Server CPU per K=50 cycle (medians): SQLite {sq['cpu']:.2f} ms, PostgreSQL {pg['cpu']:.2f} ms "
        f"(the database server's own CPU not included), echo {sq['echo_cpu']:.2f} / {pg['echo_cpu']:.2f} ms."
    )
    scale = "/".join(f"{x:.1f}" for x in sq["scale"]) + "," + "/".join(f"{x:.1f}" for x in pg["scale"])
    print(
        f"RESULT mode={'worker' if WITH_WORKER else 'no-worker'}{'-quick' if QUICK else ''} "
        f"sqlite_k50_per_s={sq['rate']:.1f} pg_k50_per_s={pg['rate']:.1f} "
        f"sqlite_ratio_to_echo={sq['ratio']:.3f} pg_ratio_to_echo={pg['ratio']:.3f} "
        f"p99_ms={max(sq['p99'], pg['p99']):.1f} violations={total_viol} "
        f"k1_cycle_ms_median={sq['k1']:.2f} pg_k1_cycle_ms_median={pg['k1']:.2f} "
        f"sqlite_p99_ms={sq['p99']:.1f} pg_p99_ms={pg['p99']:.1f} "
        f"sqlite_echo_p99_ms={sq['echo_p99']:.1f} pg_echo_p99_ms={pg['echo_p99']:.1f} "
        f"sqlite_echo_k50_per_s={sq['echo_rate']:.1f} pg_echo_k50_per_s={pg['echo_rate']:.1f} "
        f"sqlite_server_cpu_ms_per_cycle={sq['cpu']:.2f} pg_server_cpu_ms_per_cycle={pg['cpu']:.2f} "
        f"echo_server_cpu_ms_per_cycle={statistics.median([sq['echo_cpu'], pg['echo_cpu']]):.2f} "
        f"scale_1m_per_s={scale}"
    )


if __name__ == "__main__":
    main()
