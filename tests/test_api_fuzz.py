"""Property-based API test: schemathesis generates requests from our OpenAPI document and checks
that the server never errors, only answers documented statuses, and matches its response
schemas. (Rejecting a schema-valid but semantically wrong body, such as an unknown control
type, is correct behaviour, so that check is left out.)"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labelmill.api.app import create_app  # noqa: E402
from labelmill.config import Settings  # noqa: E402
from labelmill.store.engine import Database  # noqa: E402
from labelmill.store.media import LocalMediaStore  # noqa: E402
from tests.conftest import auth, make_user  # noqa: E402

SCHEMA = {"controls": [{"name": "s", "type": "choices", "source": "text", "classes": ["a", "b"]}]}
STATE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastapi.testclient import TestClient

    tmp: Path = tmp_path_factory.mktemp("fuzz")
    db = Database(f"sqlite:///{tmp / 'fuzz.db'}")
    app = create_app(db, media=LocalMediaStore(tmp / "media"), settings=Settings(data_dir=tmp))
    _, token = make_user(db, "fuzzer", role="admin")
    STATE["token"] = token
    with TestClient(app) as client:
        pid = client.post(
            "/api/v1/projects", json={"name": "p", "schema": SCHEMA}, headers=auth(token)
        ).json()["id"]
        body = "".join(json.dumps({"text": f"t{i}", "external_id": str(i)}) + "\n" for i in range(5)).encode()
        client.post(
            f"/api/v1/projects/{pid}/imports",
            files={"files": ("a.jsonl", io.BytesIO(body))},
            headers=auth(token),
        )
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.exclude(method="DELETE").parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: Any) -> None:
    case.call_and_validate(
        headers=auth(STATE["token"]),
        checks=[status_code_conformance, response_schema_conformance, content_type_conformance],
    )
