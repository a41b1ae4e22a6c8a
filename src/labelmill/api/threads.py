"""Handing database work from the event loop to a worker thread (services never do it: they
do not import starlette or anyio)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from labelmill.store.engine import Database, WriterBusy

T = TypeVar("T")


async def run_writer(db: Database, call: Callable[[], T]) -> T:
    """Run one of the annotator loop's short write transactions through SQLAlchemy.

    On SQLite it runs right here on the event loop when the write lock is free at once: one
    thread does all the writing, so a transaction never waits on the GIL while holding
    SQLite's only write lock (in a thread pool it would, at every statement, behind the
    threads parsing other requests). When the lock is taken it goes to a worker thread and
    waits there. PostgreSQL transactions may wait on row locks, so they always go to a thread.
    """
    if db.dialect == "sqlite":
        try:
            with db.nowait():
                return call()
        except WriterBusy:
            pass
    return await run_in_threadpool(call)
