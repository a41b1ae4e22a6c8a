"""Issue 16's API defects: lock waits never freeze the server (11), bodies are not read before
authentication and are capped per route (14), /docs works offline (8), creating projects needs
a global role and adding members lists no accounts (13), and the server and its OpenAPI
document refuse the same things (16)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelmill.api.limits import JSON_MAX_BYTES, nonfinite_field
from labelmill.formats.exporting import EXPORTERS
from tests.conftest import auth, make_user

SCHEMA = {
    "controls": [
        {"name": "label", "type": "choices", "source": "text", "classes": ["pos", "neg"]},
        {"name": "stars", "type": "rating", "source": "text", "min": 1, "max": 5, "required": False},
    ]
}


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_project(client: Any, token: str, n_items: int = 0, name: str = "p") -> int:
    r = client.post("/api/v1/projects", json={"name": name, "schema": SCHEMA}, headers=auth(token))
    assert r.status_code == 201, r.text
    pid = int(r.json()["id"])
    if n_items:
        rows = [{"data": {"text": f"item {i}"}, "external_id": f"e{i}"} for i in range(n_items)]
        files = {"files": ("items.jsonl", io.BytesIO(jsonl(rows)), "application/x-ndjson")}
        r = client.post(f"/api/v1/projects/{pid}/imports", files=files, headers=auth(token))
        assert r.status_code == 201, r.text
    return pid


# -- defect 11: a lock collision never freezes the server ----------------------------------------------


@pytest.fixture
def live_server(db: Any, media_store: Any, app_settings: Any) -> Iterator[str]:
    """The app served by uvicorn on a free port (its lifespan runs: the annotator loop's
    event-loop paths are open, as in ``labelmill serve``)."""
    from labelmill.api.app import create_app

    app = create_app(db, media=media_store, settings=app_settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "the server did not start"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_mixed_concurrent_writes_all_answer_and_health_stays_up(db: Any, live_server: str) -> None:
    """Predictions, project PATCHes and the annotator loop, all at once. Before the fix an
    ``async`` route began its transaction on the event loop and waited there (30 s) for
    SQLite's write lock held by a request that needed the event loop to commit: the requests
    and /health hung. Each request here may take at most the client's timeout (generous: this
    is a hang test, not a speed test); a timeout fails the test."""
    _, admin = make_user(db, "admin", role="admin")
    annotators = [make_user(db, f"ann{i}")[1] for i in range(4)]
    timeout = httpx.Timeout(20.0)
    with httpx.Client(base_url=live_server, timeout=timeout) as c:
        pid = make_project(c, admin, n_items=300)
        for i in range(4):
            r = c.post(
                f"/api/v1/projects/{pid}/members",
                json={"user": f"ann{i}", "role": "annotator"},
                headers=auth(admin),
            )
            assert r.status_code == 201, r.text

    def predictions(round_: int) -> list[int]:
        body = {
            "predictions": [
                {
                    "external_id": f"e{i}",
                    "value": {"label": "pos"},
                    "score": 0.5,
                    "model_version": f"m{round_}",
                }
                for i in range(300)
            ]
        }
        with httpx.Client(base_url=live_server, timeout=timeout) as c:
            return [c.post(f"/api/v1/projects/{pid}/predictions", json=body, headers=auth(admin)).status_code]

    def patch(round_: int) -> list[int]:
        with httpx.Client(base_url=live_server, timeout=timeout) as c:
            body = {"settings": {"lease_seconds": 600 + round_}, "description": f"round {round_}"}
            return [c.patch(f"/api/v1/projects/{pid}", json=body, headers=auth(admin)).status_code]

    def annotate(token: str) -> list[int]:
        codes = []
        with httpx.Client(base_url=live_server, timeout=timeout) as c:
            for _ in range(8):
                r = c.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(token))
                codes.append(r.status_code)
                if r.status_code != 200:
                    continue
                task = r.json()["task"]
                r = c.post(
                    f"/api/v1/tasks/{task['id']}/submit",
                    json={"value": {"label": "neg"}},
                    headers=auth(token),
                )
                codes.append(r.status_code)
        return codes

    health_codes: list[int] = []
    stop = threading.Event()

    def watch_health() -> None:
        with httpx.Client(base_url=live_server, timeout=timeout) as c:
            while not stop.is_set():
                try:
                    health_codes.append(c.get("/api/v1/health").status_code)
                except httpx.TimeoutException:
                    health_codes.append(-1)  # /health hung

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=14) as pool:
            futures = [pool.submit(predictions, i) for i in range(5)]
            futures += [pool.submit(patch, i) for i in range(5)]
            futures += [pool.submit(annotate, t) for t in annotators]
            codes = [code for f in futures for code in f.result()]
    finally:
        stop.set()
        watcher.join()
    assert codes and all(code in (200, 201, 204, 503) for code in codes), codes
    assert codes.count(201) >= 10  # predictions and submits did happen
    assert health_codes and set(health_codes) == {200}


def test_busy_database_answers_503_with_retry_after(db: Any, client: Any, monkeypatch: Any) -> None:
    """A request that cannot get its lock within the bounded wait answers 503 with Retry-After
    (nothing was done), never a hang or a 500: on SQLite another process holds the write lock,
    on PostgreSQL another transaction holds the project's row (lock_timeout)."""
    from sqlalchemy import text

    from labelmill.api import deps

    monkeypatch.setattr(deps, "LOCK_WAIT_SECONDS", 0.2)
    _, admin = make_user(db, "admin", role="admin")
    pid = make_project(client, admin)
    other = db.engine.connect()
    if db.dialect == "sqlite":
        other.connection.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
        other = other.execution_options(sqlite_begin="IMMEDIATE")
    transaction = other.begin()  # BEGIN IMMEDIATE on SQLite: the write lock
    other.execute(
        text(
            "SELECT id FROM projects WHERE id = :id FOR UPDATE"
            if db.dialect != "sqlite"
            else "SELECT id FROM projects WHERE id = :id"
        ),
        {"id": pid},
    )
    try:
        r = client.patch(f"/api/v1/projects/{pid}", json={"description": "x"}, headers=auth(admin))
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1" and r.json()["code"] == "busy"
        assert client.get("/api/v1/health").status_code == 200  # reads still answer
    finally:
        transaction.rollback()
        other.close()
    r = client.patch(f"/api/v1/projects/{pid}", json={"description": "x"}, headers=auth(admin))
    assert r.status_code == 200, r.text


def test_sdk_retries_503_after_retry_after() -> None:
    from labelmill.client import Client, retry_after

    answers = [
        httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "busy", "code": "busy"}),
        httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "busy", "code": "busy"}),
        httpx.Response(
            200, json={"id": 1, "name": "a", "role": "admin", "is_active": True, "created_at": None}
        ),
    ]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers[len(seen) - 1]

    with Client("http://labelmill.test", "t", transport=httpx.MockTransport(handler)) as lm:
        assert lm.me().name == "a"
    assert len(seen) == 3
    assert retry_after(httpx.Response(503, headers={"Retry-After": "7"}), 1) == 7.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": "99999"}), 1) == 30.0
    assert retry_after(httpx.Response(503), 3) == 2.0  # no header: doubling backoff

    def always_busy(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "busy", "code": "busy"})

    seen.clear()
    transport = httpx.MockTransport(always_busy)
    with (
        Client("http://labelmill.test", "t", transport=transport, busy_retries=2) as lm,
        pytest.raises(Exception, match="busy"),
    ):
        lm.me()
    assert len(seen) == 3  # the first try and two retries


# -- defect 14: authenticate, then cap the body, before reading it --------------------------------------


class Upload:
    """An ASGI request body that counts what the app consumed of it."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.consumed = total, chunk, 0

    async def receive(self) -> dict[str, Any]:
        if self.consumed >= self.total:
            await asyncio.sleep(3600)  # (never reached: a disconnect would come only after the response)
        n = min(self.chunk, self.total - self.consumed)
        self.consumed += n
        return {"type": "http.request", "body": b"x" * n, "more_body": self.consumed < self.total}


def asgi_call(
    app: Any, method: str, path: str, upload: Upload, headers: dict[str, str], content_length: bool = True
) -> tuple[int, dict[str, Any]]:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if content_length:
        raw.append((b"content-length", str(upload.total).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
        "app": app,
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await app(scope, upload.receive, send)

    asyncio.run(asyncio.wait_for(run(), timeout=60))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


@pytest.fixture
def app(db: Any, media_store: Any, app_settings: Any) -> Any:
    from labelmill.api.app import create_app

    return create_app(db, media=media_store, settings=app_settings)


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
def test_anonymous_upload_is_refused_before_its_body_is_read(app: Any, content_length: bool) -> None:
    upload = Upload(300 * 1024 * 1024)
    status, body = asgi_call(
        app,
        "POST",
        "/api/v1/projects/1/imports",
        upload,
        {"content-type": "multipart/form-data; boundary=x"},
        content_length,
    )
    assert status == 401 and body["code"] == "unauthorized"
    assert upload.consumed == 0


def test_wrong_token_upload_is_refused_before_its_body_is_read(app: Any) -> None:
    upload = Upload(300 * 1024 * 1024)
    headers = {"content-type": "multipart/form-data; boundary=x", "authorization": "Token lm_wrong"}
    status, _ = asgi_call(app, "POST", "/api/v1/projects/1/imports", upload, headers, content_length=False)
    assert status == 401 and upload.consumed == 0


def test_anonymous_json_is_refused_before_its_body_is_read(app: Any) -> None:
    upload = Upload(15 * 1024 * 1024)
    status, _ = asgi_call(app, "POST", "/api/v1/projects", upload, {"content-type": "application/json"})
    assert status == 401 and upload.consumed == 0


def test_bodies_are_capped_per_route_before_reading(app: Any, db: Any) -> None:
    _, admin = make_user(db, "admin", role="admin")
    headers = {"content-type": "application/json", "authorization": f"Token {admin}"}
    # declared too large: refused before a byte is read
    upload = Upload(JSON_MAX_BYTES + 1)
    status, body = asgi_call(app, "PATCH", "/api/v1/projects/1", upload, headers)
    assert status == 413 and body["code"] == "too_large" and upload.consumed == 0
    # chunked: read only up to the cap (plus one chunk)
    upload = Upload(50 * 1024 * 1024)
    status, _ = asgi_call(app, "POST", "/api/v1/projects", upload, headers, content_length=False)
    assert status == 413 and upload.consumed <= JSON_MAX_BYTES + upload.chunk
    # predictions may be larger than other JSON bodies (16 MiB), uploads up to max_upload_bytes
    upload = Upload(2 * 1024 * 1024)
    status, body = asgi_call(app, "POST", "/api/v1/projects/1/predictions", upload, headers)
    assert status == 422 and upload.consumed == upload.total  # read, then found not to be JSON
    upload = Upload(17 * 1024 * 1024)
    status, _ = asgi_call(app, "POST", "/api/v1/projects/1/predictions", upload, headers)
    assert status == 413 and upload.consumed == 0


# -- defect 8: /docs works offline -----------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_use_only_local_assets(client: Any, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", r.text)
    assets = [u for u in urls if not u.startswith("#")]
    assert assets, r.text
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        assert client.get(url).status_code == 200, url
    assert "cdn." not in r.text and "https://" not in r.text.replace("https://fastapi", "")


def test_openapi_answers_at_root_and_under_the_api(client: Any) -> None:
    root = client.get("/openapi.json")
    api = client.get("/api/v1/openapi.json")
    assert root.status_code == api.status_code == 200
    assert root.json() == api.json()


# -- defect 13: creating projects needs a global role; adding members lists no accounts -------------------


def test_only_admins_and_creators_create_projects(client: Any, db: Any) -> None:
    _, admin = make_user(db, "admin", role="admin")
    uid, member = make_user(db, "plain")
    body = {"name": "x", "schema": SCHEMA}
    r = client.post("/api/v1/projects", json=body, headers=auth(member))
    assert r.status_code == 403 and "creator" in r.json()["detail"]
    # an admin grants the creator role through the API (the CLI: labelmill user role NAME creator)
    r = client.patch(f"/api/v1/users/{uid}", json={"role": "creator"}, headers=auth(member))
    assert r.status_code == 403
    r = client.patch(f"/api/v1/users/{uid}", json={"role": "creator"}, headers=auth(admin))
    assert r.status_code == 200 and r.json()["role"] == "creator"
    assert client.post("/api/v1/projects", json=body, headers=auth(member)).status_code == 201
    assert client.post("/api/v1/projects", json={**body, "name": "y"}, headers=auth(admin)).status_code == 201
    r = client.patch(f"/api/v1/users/{uid}", json={"role": None}, headers=auth(admin))
    assert r.status_code == 422


def test_a_manager_adds_only_users_they_already_share_a_project_with(client: Any, db: Any) -> None:
    _, admin = make_user(db, "admin", role="admin")
    _, creator = make_user(db, "carol", role="creator")
    make_user(db, "stranger")
    make_user(db, "colleague")
    mine = make_project(client, creator, name="mine")
    shared = make_project(client, admin, name="shared")
    for name in ("carol", "colleague"):
        r = client.post(
            f"/api/v1/projects/{shared}/members",
            json={"user": name, "role": "annotator"},
            headers=auth(admin),
        )
        assert r.status_code == 201, r.text

    def add(ref: str | int) -> httpx.Response:
        return client.post(  # type: ignore[no-any-return]
            f"/api/v1/projects/{mine}/members", json={"user": ref, "role": "annotator"}, headers=auth(creator)
        )

    unknown, unshared = add("nobody-at-all"), add("stranger")
    assert unknown.status_code == unshared.status_code == 404
    # the same answer, but for the name the caller typed: nothing tells the two apart
    assert unshared.json() == {
        **unknown.json(),
        "detail": unknown.json()["detail"].replace("nobody-at-all", "stranger"),
    }
    assert add("colleague").status_code == 201
    # an admin adds anyone
    r = client.post(
        f"/api/v1/projects/{mine}/members",
        json={"user": "stranger", "role": "annotator"},
        headers=auth(admin),
    )
    assert r.status_code == 201


def test_user_names_and_roles(client: Any, db: Any) -> None:
    _, admin = make_user(db, "admin", role="admin")
    r = client.post("/api/v1/users", json={"name": "12345"}, headers=auth(admin))
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = client.post("/api/v1/users", json={"name": "maker", "role": "creator"}, headers=auth(admin))
    assert r.status_code == 201 and r.json()["role"] == "creator"


# -- defect 16: refuse non-finite numbers; the OpenAPI document as strict as the validation ---------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"])
def test_prediction_scores_must_be_finite(client: Any, db: Any, literal: str) -> None:
    _, admin = make_user(db, "admin", role="admin")
    pid = make_project(client, admin, n_items=2)
    raw = '{"predictions": [{"external_id": "e0", "value": {"label": "pos"}, "score": SCORE}]}'
    raw = raw.replace("SCORE", literal)
    r = client.post(
        f"/api/v1/projects/{pid}/predictions",
        content=raw,
        headers={**auth(admin), "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "predictions.0.score" and "predictions.0.score" in r.json()["detail"]
    # nothing was stored; the export stays valid JSON
    r = client.get(f"/api/v1/projects/{pid}/export", params={"format": "jsonl"}, headers=auth(admin))
    assert all(json.loads(line)["predictions"] == [] for line in r.text.splitlines())


def test_nan_is_refused_anywhere_in_a_json_body(client: Any, db: Any) -> None:
    """Named as what it is (before, a NaN setting read "should be less than or equal to 1")."""
    _, admin = make_user(db, "admin", role="admin")
    pid = make_project(client, admin)
    for raw, field in (
        ('{"settings": {"target_confidence": NaN}}', "settings.target_confidence"),
        (
            '{"settings": {"assist": {"auto_label_accuracy": -Infinity}}}',
            "settings.assist.auto_label_accuracy",
        ),
        ('{"description": "x", "settings": {"lease_seconds": 1e400}}', "settings.lease_seconds"),
    ):
        r = client.patch(
            f"/api/v1/projects/{pid}",
            content=raw,
            headers={**auth(admin), "content-type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["field"] == field, r.text
        assert "NaN and Infinity" in r.json()["detail"]


def test_predictions_land_on_their_own_items(client: Any, db: Any) -> None:
    """Each prediction was stored on the last item the lookup fetched, whatever its external_id."""
    _, admin = make_user(db, "admin", role="admin")
    pid = make_project(client, admin, n_items=3)
    body = {
        "predictions": [
            {"external_id": "e0", "value": {"label": "pos"}, "score": 0.9},
            {"external_id": "e1", "value": {"label": "neg"}, "score": 0.2},
            {"external_id": "e2", "value": {"label": "neg"}, "score": 1e308},
        ]
    }
    r = client.post(f"/api/v1/projects/{pid}/predictions", json=body, headers=auth(admin))
    assert r.status_code == 201 and r.json()["created"] == 3
    r = client.get(f"/api/v1/projects/{pid}/export", params={"format": "jsonl"}, headers=auth(admin))
    got = {
        line["external_id"]: [p["value"]["label"] for p in line["predictions"]]
        for line in map(json.loads, r.text.splitlines())
    }
    assert got == {"e0": ["pos"], "e1": ["neg"], "e2": ["neg"]}


finite = (
    st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.text() | st.booleans() | st.none()
)
documents = st.recursive(
    finite,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents, st.sampled_from([float("nan"), float("inf"), float("-inf")]), st.data())
def test_nonfinite_field_finds_the_path_of_the_bad_number(doc: Any, bad: float, data: Any) -> None:
    assert nonfinite_field(json.dumps(doc).encode()) is None
    # put the bad number somewhere and find exactly that path
    path: list[str] = []
    holder = {"root": doc}
    key: Any = "root"
    node: Any = holder
    while isinstance(node[key], dict | list) and node[key] and data.draw(st.booleans()):
        child = node[key]
        key = data.draw(st.sampled_from(list(child) if isinstance(child, dict) else list(range(len(child)))))
        path.append(str(key))
        node = child
    node[key] = bad
    found = nonfinite_field(json.dumps(holder["root"]).encode())
    assert found == (".".join(path) or "body")


def test_openapi_is_as_strict_as_the_validation(client: Any, db: Any) -> None:
    _, admin = make_user(db, "admin", role="admin")
    doc = client.get("/api/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["ExportIn"]["properties"]["format"]["minLength"] == 1
    for model in ("ProjectPatch", "MemberPatch", "UserPatch"):
        for name, prop in schemas[model]["properties"].items():
            nullable = "anyOf" in prop and {"type": "null"} in prop["anyOf"]
            assert not nullable or (model, name) == ("MemberPatch", "pause_reason"), (model, name)
    assert "pattern" in schemas["ProjectIn"]["properties"]["name"]
    assert "pattern" in schemas["UserIn"]["properties"]["name"]
    assert "creator" in schemas["UserIn"]["properties"]["role"]["enum"]
    assert "503" in doc["paths"]["/api/v1/projects/{project_id}"]["patch"]["responses"]
    score = schemas["PredictionIn"]["properties"]["score"]
    assert score  # (JSON Schema numbers are finite by definition)

    # ... and the server refuses what the document refuses
    pid = make_project(client, admin)
    for body, field in (
        ({"schema": None}, "schema"),
        ({"name": None}, "name"),
        ({"settings": None}, "settings"),
        ({"name": "123"}, "name"),
    ):
        r = client.patch(f"/api/v1/projects/{pid}", json=body, headers=auth(admin))
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    r = client.post("/api/v1/projects", json={"name": "42", "schema": SCHEMA}, headers=auth(admin))
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": ""}, headers=auth(admin))
    assert r.status_code == 422 and r.json()["field"] == "format"
    # the download's format: the document lists exactly the formats the server takes
    download = doc["paths"]["/api/v1/projects/{project_id}/export"]["get"]["parameters"]
    fmt = next(p for p in download if p["name"] == "format")["schema"]
    assert fmt["enum"] == list(EXPORTERS) and fmt["minLength"] == 1
    for bad in ("", "pdf"):
        r = client.get(f"/api/v1/projects/{pid}/export", params={"format": bad}, headers=auth(admin))
        assert r.status_code == 422 and r.json()["field"] in ("format", "query.format"), r.text


@pytest.mark.parametrize(
    "rating", [{"min": 0, "max": 1_000_000_000}, {"min": -(10**12), "max": 5}, {"min": 1, "max": 102}]
)
def test_rating_scales_are_bounded(client: Any, db: Any, rating: dict[str, int]) -> None:
    _, admin = make_user(db, "admin", role="admin")
    schema = {"controls": [{"name": "r", "type": "rating", "source": "text", **rating}]}
    r = client.post("/api/v1/projects", json={"name": "r", "schema": schema}, headers=auth(admin))
    assert r.status_code == 422, r.text
    assert "r" in r.json()["detail"] and "rating" in r.json()["detail"]


def test_sdk_grants_the_creator_role(client: Any, db: Any) -> None:
    from labelmill.client import Client, NotFoundError

    _, admin = make_user(db, "admin", role="admin")
    make_user(db, "dana")

    def through_test_client(request: httpx.Request) -> httpx.Response:
        r = client.request(request.method, str(request.url), headers=request.headers, content=request.content)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    # the app in process: the SDK speaks HTTP, here through the TestClient
    with Client("http://testserver", admin, transport=httpx.MockTransport(through_test_client)) as lm:
        assert lm.set_user_role("dana", "creator").role == "creator"
        with pytest.raises(NotFoundError):
            lm.set_user_role("nobody", "creator")


def test_cli_grants_the_creator_role(db: Any, client: Any) -> None:
    from typer.testing import CliRunner

    from labelmill.cli import app as cli

    _, token = make_user(db, "erin")
    body = {"name": "by-erin", "schema": SCHEMA}
    assert client.post("/api/v1/projects", json=body, headers=auth(token)).status_code == 403
    done = CliRunner().invoke(cli, ["user", "role", "erin", "creator", "--db", db.url])
    assert done.exit_code == 0 and "erin is now creator" in done.output, done.output
    assert client.post("/api/v1/projects", json=body, headers=auth(token)).status_code == 201
    done = CliRunner().invoke(cli, ["user", "role", "erin", "overlord", "--db", db.url])
    assert done.exit_code != 0
    done = CliRunner().invoke(cli, ["user", "create", "frank", "--role", "creator", "--db", db.url])
    assert done.exit_code == 0 and "creator" in done.output
