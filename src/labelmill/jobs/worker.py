"""The names commands and tests have used to run jobs; the lifecycle lives in
:mod:`labelmill.jobs.executor`, the kinds in :mod:`labelmill.jobs.registry`."""

from __future__ import annotations

from labelmill.jobs.executor import LocalExecutor, execute, reap, run_job, run_pending

__all__ = ["LocalExecutor", "execute", "reap", "run_job", "run_pending"]
