"""The echo ceiling for ``bench/queue.py``: the annotator loop's two routes with no database work.

Same server stack as ``labelmill serve`` (uvicorn, one process, the same flags, the same middleware
and error handlers), the same credentials dependency and body model, and the same response models
serialised the same way: the only difference from labelmill is what happens between parsing and
serialising.
Run: ``python bench/support/queue_echo.py --port P``.
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

# Run as a script, this folder would come first on sys.path, where bench/queue.py shadows the
# standard library's ``queue``.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI, Header

from labelmill.api.deps import CredentialsDep
from labelmill.api.errors import install_error_handlers
from labelmill.api.limits import RequestGuardMiddleware
from labelmill.api.models import MyAnnotationOut, NextTaskOut, SubmitIn, TaskItemOut, TaskOut
from labelmill.api.routes.tasks import json_response

_ids = itertools.count(1)


def build() -> FastAPI:
    """Everything labelmill's two routes do but the database: the same middleware and error
    handlers, the credentials read from the same header, the body validated by the same model,
    the answer built from the same models and serialised the same way."""
    app = FastAPI(title="queue-echo")
    install_error_handlers(app)
    app.add_middleware(RequestGuardMiddleware, max_upload_bytes=1 << 30)

    @app.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/projects/{project_id}/tasks/next", response_model=NextTaskOut)
    async def next_task(project_id: int, creds: CredentialsDep) -> Any:
        task_id = next(_ids)
        now = datetime.now(UTC)
        task = TaskOut(
            id=task_id,
            project_id=project_id,
            state="leased",
            item=TaskItemOut(
                id=task_id, data={"text": f"fast great odd loud new cheap #{task_id}"}, meta=None
            ),
            predictions=[],
            leased_at=now,
            expires_at=now + timedelta(seconds=600),
        )
        return json_response(NextTaskOut(task=task))

    @app.post("/api/v1/tasks/{task_id}/submit", response_model=MyAnnotationOut, status_code=201)
    async def submit(
        task_id: int,
        body: SubmitIn,
        creds: CredentialsDep,
        idempotency_key: str | None = Header(None, alias="Idempotency-Key", min_length=1, max_length=200),
    ) -> Any:
        now = datetime.now(UTC)
        annotation = MyAnnotationOut(
            id=task_id,
            task_id=task_id,
            item_id=task_id,
            value=body.value,
            status="submitted",
            lead_seconds=0.001,
            created_at=now,
            updated_at=now,
        )
        return json_response(annotation, status_code=201)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same call as ``labelmill serve`` makes.
    uvicorn.run(
        build,
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
