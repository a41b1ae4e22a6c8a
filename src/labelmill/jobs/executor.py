"""Executors run queued jobs; routes and commands only queue them and say so (``submit``).

Every job has one lifecycle, whoever runs it: **queued** (a row), **running** (claimed by one
worker, ``claimed_by``, which keeps ``heartbeat_at`` fresh and counts ``attempts``), then
**done** or **failed**. A claim whose heartbeat stops for :data:`STALE_AFTER` seconds (a killed
worker) is reaped: queued again, or failed once its kind's attempts are used up.

- :class:`LocalExecutor`: worker threads of this process (``labelmill serve`` runs one;
  ``labelmill worker`` is one in a process of its own). They run what is submitted at once and,
  when polling, whatever is queued in the database, and they reap stale claims.
- :class:`InlineExecutor`: runs a submitted job in the caller's thread (commands, tests, and a
  job that needs another job done first).

A Ray executor for scale-out fits the same :class:`Executor` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Protocol

from labelmill.jobs import registry
from labelmill.jobs.errors import error_info, one_line
from labelmill.services import jobs as job_service
from labelmill.store.engine import Database
from labelmill.store.models import Job

log = logging.getLogger("labelmill.worker")

#: A running job whose heartbeat is older than this (seconds) is taken for lost.
STALE_AFTER = 120.0
#: How often a running job's heartbeat is written, and the reaper looks for lost claims.
HEARTBEAT_SECONDS = 30.0
FINISHED = ("done", "failed", "cancelled")


class Executor(Protocol):
    """Where queued jobs run. ``submit`` says a job is queued and wanted soon; it never waits
    for it (except :class:`InlineExecutor`, which runs it then and there)."""

    def submit(self, job_id: int) -> None: ...

    def close(self) -> None: ...


# -- this process as a worker ------------------------------------------------------------------

worker_name = job_service.worker_name


#: Jobs this process runs now: id -> (database, claimant).
_LIVE: dict[int, tuple[Database, str]] = {}
_LIVE_LOCK = threading.Lock()
_BEAT: threading.Thread | None = None


def liveness(job_id: int, claimed_by: str | None) -> bool | None:
    """Whether the claimant of a running job still runs it, where this process can tell: it knows
    its own jobs, and on this machine a worker runs while a process with its pid and start time
    does (one that is gone is a dead worker at once, whatever its heartbeat; a live one holds its
    claim even when SQLite's write lock, held by its long import, keeps its heartbeat from being
    written). None where only the heartbeat can tell: a worker on another machine, or a system
    without ``/proc`` whose pid still exists."""
    if not claimed_by or claimed_by.count(":") < 2:
        return None if claimed_by else False
    machine, pid_text, token = claimed_by.rsplit(":", 2)
    if machine != job_service.machine_name() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        if token != job_service.process_token():
            return False  # an earlier process with this pid (or the parent of a fork): gone
        with _LIVE_LOCK:
            return job_id in _LIVE
    started = job_service.process_start(pid)
    if started is not None:
        return started == token  # else the pid now belongs to another process
    if job_service.process_start(os.getpid()) is not None:
        return False  # /proc works here, and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return None
    return None


@contextmanager
def _running(db: Database, job: Job) -> Iterator[None]:
    """Register a job as running here, so the heartbeat thread keeps its claim fresh."""
    global _BEAT
    with _LIVE_LOCK:
        _LIVE[job.id] = (db, job.claimed_by or worker_name())
        if _BEAT is None or not _BEAT.is_alive():
            _BEAT = threading.Thread(target=_beat_forever, name="labelmill-heartbeat", daemon=True)
            _BEAT.start()
    try:
        yield
    finally:
        with _LIVE_LOCK:
            _LIVE.pop(job.id, None)


def _beat_forever() -> None:
    global _BEAT
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        with _LIVE_LOCK:
            live = dict(_LIVE)
            if not live:
                _BEAT = None
                return
        by_claim: dict[tuple[int, str], tuple[Database, list[int]]] = {}
        for job_id, (db, worker) in live.items():
            by_claim.setdefault((id(db), worker), (db, []))[1].append(job_id)
        for (_, worker), (db, ids) in by_claim.items():
            try:
                job_service.heartbeat(db, ids, worker)
            except Exception:  # busy (SQLite) or briefly unreachable: the next beat tries again
                log.debug("heartbeat of jobs %s skipped", ids, exc_info=True)


# -- running one job ---------------------------------------------------------------------------


def execute(db: Database, job: Job) -> None:
    """Run a claimed job to its end and record it; a failure is recorded, never raised."""
    kind = registry.get_kind(job.kind)
    worker = job.claimed_by
    with _running(db, job):
        try:
            result = kind.handler(db, job)
        except Exception as exc:
            log.info("job %s (%s) failed: %s", job.id, job.kind, one_line(exc), exc_info=True)
            job_service.finish_job(
                db, job.id, error=one_line(exc), result={"error": error_info(exc)}, worker=worker
            )
        else:
            job_service.finish_job(db, job.id, result=result, worker=worker)
        finally:
            if kind.cleanup is not None:
                kind.cleanup(job.params)


def run_job(db: Database, job_id: int) -> bool:
    """Run one queued job now, in this thread; False when it is not queued any more (another
    worker took it) or must wait (its kind is exclusive and one runs for its project)."""
    job = job_service.claim_job_by_id(db, job_id, worker=worker_name(), exclusive=registry.exclusive_kinds())
    if job is None:
        return False
    execute(db, job)
    return True


def run_pending(
    db: Database,
    *,
    project_id: int | None = None,
    limit: int | None = None,
    kinds: tuple[str, ...] = (),
    paced: bool = False,
) -> int:
    """Run queued jobs in this thread until none is left (or ``limit`` ran); returns how many ran.
    ``paced`` (the polling workers) leaves a kind's job for a project resting after its last run
    there (:attr:`~labelmill.jobs.registry.JobKind.rest`)."""
    names = kinds or tuple(registry.kinds())
    exclusive = registry.exclusive_kinds()
    rest = registry.rest_ratios() if paced else {}
    ran = 0
    while limit is None or ran < limit:
        job = job_service.claim_job(
            db, names, project_id, worker=worker_name(), exclusive=exclusive, rest=rest
        )
        if job is None:
            return ran
        execute(db, job)
        ran += 1
    return ran


def reap(db: Database, *, stale_after: float = STALE_AFTER) -> list[job_service.Reaped]:
    """Queue again (or fail) the running jobs whose worker stopped answering."""
    reaped = job_service.reap_stale_jobs(
        db, stale_after=stale_after, max_attempts=registry.max_attempts, liveness=liveness
    )
    for job in reaped:
        log.warning("job %s (%s): its worker stopped answering; now %s", job.id, job.kind, job.status)
        kind = registry.kinds().get(job.kind)
        if job.status == "failed" and kind is not None and kind.cleanup is not None:
            kind.cleanup(job.params)
    return reaped


# -- waiting for a job -------------------------------------------------------------------------


def wait_for_job(db: Database, job_id: int, timeout: float) -> Job:
    """The job once finished, or as it stands after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        job = job_service.get_job(db, job_id)
        if job.status in FINISHED or time.monotonic() >= deadline:
            return job
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, 1.0)


def submit_and_wait(db: Database, executor: Executor, job_id: int, timeout: float) -> Job:
    """Submit a queued job and wait for it (at most ``timeout`` seconds). A job of an exclusive
    kind that cannot start while another of its kind runs for its project (which an inline
    executor would only wait on) waits for that one, then is submitted again."""
    deadline = time.monotonic() + timeout
    while True:
        executor.submit(job_id)
        job = job_service.get_job(db, job_id)
        blocker = job_service.running_like(db, job) if job.status == "queued" else None
        left = max(deadline - time.monotonic(), 0.0)
        if blocker is None or left <= 0:
            return wait_for_job(db, job_id, left)
        wait_for_job(db, blocker, left)


async def await_job(db: Database, job_id: int, timeout: float) -> Job:
    """:func:`wait_for_job` for the event loop: each look is a short read in a thread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.02
    while True:
        job = await asyncio.to_thread(job_service.get_job, db, job_id)
        if job.status in FINISHED or loop.time() >= deadline:
            return job
        await asyncio.sleep(min(pause, max(deadline - loop.time(), 0)))
        pause = min(pause * 1.5, 1.0)


# -- executors ---------------------------------------------------------------------------------


class InlineExecutor:
    """Runs each submitted job in the caller's thread before ``submit`` returns."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(self, job_id: int) -> None:
        run_job(self.db, job_id)

    def close(self) -> None:
        pass


class LocalExecutor:
    """Worker threads of this process. Submitted jobs run first; with ``poll`` the threads also
    claim whatever is queued in the database (consensus refreshes queued by submits, jobs that
    another process queued) and reap stale claims. ``poll=False`` (``serve --no-worker``) runs
    only what this process submits: the jobs its own requests asked for."""

    def __init__(
        self, db: Database, *, threads: int = 2, poll: bool = True, poll_seconds: float = 1.0
    ) -> None:
        if threads < 1:
            raise ValueError("an executor needs at least one thread")
        self.db = db
        self.poll = poll
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._submitted: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, args=(n,), name=f"labelmill-worker-{n}", daemon=True)
            for n in range(threads)
        ]
        self._next_reap = 0.0

    def start(self) -> LocalExecutor:
        for thread in self._threads:
            thread.start()
        return self

    def submit(self, job_id: int) -> None:
        self._submitted.put(job_id)

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._submitted.put(0)  # wake the threads
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)

    def wait(self) -> None:
        """Block until :meth:`close` (from another thread, or Ctrl-C in this one)."""
        while not self._stop.wait(1.0):
            pass

    def _loop(self, n: int) -> None:
        while not self._stop.is_set():
            try:
                if self.poll and n == 0 and time.monotonic() >= self._next_reap:
                    self._next_reap = time.monotonic() + HEARTBEAT_SECONDS
                    reap(self.db)
                if self._run_submitted() or (self.poll and run_pending(self.db, limit=1, paced=True)):
                    continue
                with suppress(queue.Empty):
                    job_id = self._submitted.get(timeout=self.poll_seconds)
                    if job_id:
                        run_job(self.db, job_id)
            except Exception:  # the database may be briefly unavailable; try again
                log.exception("worker loop error")
                self._stop.wait(self.poll_seconds * 5)

    def _run_submitted(self) -> bool:
        try:
            job_id = self._submitted.get_nowait()
        except queue.Empty:
            return False
        if job_id:
            run_job(self.db, job_id)
        return True
