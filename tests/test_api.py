"""The REST API round trip and its errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.conftest import auth, make_user

SCHEMA = {
    "controls": [
        {"name": "sentiment", "type": "choices", "source": "text", "classes": ["pos", "neg"]},
        {"name": "entities", "type": "spans", "source": "text", "classes": ["PER", "ORG"]},
    ]
}


def create_project(client: Any, token: str, name: str = "reviews", **extra: Any) -> dict[str, Any]:
    r = client.post("/api/v1/projects", json={"name": name, "schema": SCHEMA, **extra}, headers=auth(token))
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload(client: Any, token: str, pid: int, name: str, content: bytes, **form: str) -> Any:
    files = {"files": (name, io.BytesIO(content), "application/octet-stream")}
    return client.post(f"/api/v1/projects/{pid}/imports", files=files, data=form, headers=auth(token))


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_round_trip(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    assert p["settings"]["overlap"] == 1 and p["settings"]["lease_seconds"] == 600
    rows = [
        {
            "data": {"text": "Ann works at Acme"},
            "external_id": "a",
            "predictions": [{"value": {"sentiment": "pos"}, "score": 0.8, "model_version": "m1"}],
            "gold": {"sentiment": "pos", "entities": [{"id": "s1", "start": 0, "end": 3, "label": "PER"}]},
        },
        {"text": "flat line taken as data"},
    ] + [{"data": {"text": f"item {i}"}, "external_id": f"x{i}"} for i in range(250)]
    r = upload(client, admin_token, p["id"], "items.jsonl", jsonl(rows))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "done" and job["result"]["created"] == 252 and job["result"]["predictions"] == 1

    # keyset pagination walks every item exactly once
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get(
            f"/api/v1/projects/{p['id']}/items", params=params, headers=auth(admin_token)
        ).json()
        seen += [i["external_id"] for i in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 252 and len(set(seen)) == 252 and seen[0] == "a"

    gold = client.get(
        f"/api/v1/projects/{p['id']}/items", params={"is_gold": True}, headers=auth(admin_token)
    )
    assert [i["external_id"] for i in gold.json()["results"]] == ["a"]

    r = client.get(
        f"/api/v1/projects/{p['id']}/export", params={"format": "jsonl"}, headers=auth(admin_token)
    )
    assert r.status_code == 200
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert len(lines) == 252
    first = lines[0]
    assert first["external_id"] == "a" and first["data"] == {"text": "Ann works at Acme"}
    assert first["predictions"][0]["value"] == {"sentiment": "pos"} and first["consensus"] is None
    assert set(first) >= {"external_id", "data", "annotations", "predictions", "consensus"}

    # the export imports back into a new project unchanged
    q = create_project(client, admin_token, name="copy")
    r = upload(client, admin_token, q["id"], "export.jsonl", r.content)
    assert r.status_code == 201, r.text
    again = client.get(f"/api/v1/projects/{q['id']}/export", headers=auth(admin_token)).text
    assert [json.loads(x) for x in again.splitlines()] == lines


def test_import_is_all_or_nothing(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    good = jsonl([{"text": f"t{i}"} for i in range(10)])
    r = upload(client, admin_token, p["id"], "bad.jsonl", good + b'{"text": "ok"}\n{"text": broken\n')
    assert r.status_code == 422
    assert r.json()["detail"].startswith("bad.jsonl:12:")
    items = client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(admin_token)).json()
    assert items["results"] == []
    jobs = client.get("/api/v1/jobs", headers=auth(admin_token)).json()["results"]
    assert jobs[0]["status"] == "failed" and "bad.jsonl:12" in jobs[0]["error"]


@pytest.mark.parametrize(
    ("line", "field", "needle"),
    [
        ({"data": {"text": "abc"}, "gold": {"sentiment": "meh"}}, "gold.sentiment", "meh"),
        (
            {
                "data": {"text": "abc"},
                "gold": {"entities": [{"id": "s", "start": 0, "end": 9, "label": "PER"}]},
            },
            "gold.entities[0].end",
            "9",
        ),
        ({"data": {"body": "no text field"}}, "data.text", "missing"),
        (
            {"data": {"text": "x"}, "predictions": [{"value": {"colour": "red"}}]},
            "predictions[0].value",
            "colour",
        ),
    ],
)
def test_bad_values_name_line_and_field(
    client: Any, admin_token: str, line: Any, field: str, needle: str
) -> None:
    p = create_project(client, admin_token)
    r = upload(client, admin_token, p["id"], "in.jsonl", jsonl([{"text": "fine"}, line]))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"in.jsonl:2: {field}"), detail
    assert needle in detail
    assert client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(admin_token)).json()["results"] == []


def test_duplicates(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    assert (
        upload(
            client, admin_token, p["id"], "a.jsonl", jsonl([{"data": {"text": "v1"}, "external_id": "k"}])
        ).status_code
        == 201
    )
    again = jsonl(
        [{"data": {"text": "new"}, "external_id": "n"}, {"data": {"text": "v2"}, "external_id": "k"}]
    )
    r = upload(client, admin_token, p["id"], "b.jsonl", again)
    assert r.status_code == 422 and "b.jsonl:2: external_id" in r.json()["detail"]
    r = upload(client, admin_token, p["id"], "b.jsonl", again, on_duplicate="skip")
    assert r.json()["result"]["created"] == 1 and r.json()["result"]["skipped"] == 1
    r = upload(client, admin_token, p["id"], "b.jsonl", again, on_duplicate="update")
    assert r.json()["result"]["updated"] == 2
    items = client.get(
        f"/api/v1/projects/{p['id']}/items", params={"external_id": "k"}, headers=auth(admin_token)
    )
    assert items.json()["results"][0]["data"] == {"text": "v2"}
    within = jsonl([{"data": {"text": "a"}, "external_id": "z"}, {"data": {"text": "b"}, "external_id": "z"}])
    r = upload(client, admin_token, p["id"], "c.jsonl", within)
    assert r.status_code == 422 and r.json()["detail"].startswith("c.jsonl:2: external_id")


def test_csv_and_wrong_column(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    r = upload(client, admin_token, p["id"], "x.csv", b"external_id,text\n1,hello\n2,world\n")
    assert r.status_code == 201 and r.json()["result"]["created"] == 2
    r = upload(client, admin_token, p["id"], "y.csv", b"external_id,body\n3,hello\n")
    assert r.status_code == 422 and "data.text" in r.json()["detail"]
    r = upload(client, admin_token, p["id"], "z.csv", b"external_id,text\n4,a,b\n")
    assert r.status_code == 422 and r.json()["detail"].startswith("z.csv:2:")


def test_oversize_upload_is_413(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    big = b'{"text": "' + b"x" * (3 * 1024 * 1024) + b'"}\n'
    r = upload(client, admin_token, p["id"], "big.jsonl", big)
    assert r.status_code == 413
    assert client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(admin_token)).json()["results"] == []


def test_path_traversal_in_media_name(client: Any, admin_token: str) -> None:
    p = client.post(
        "/api/v1/projects",
        json={
            "name": "imgs",
            "schema": {"controls": [{"name": "b", "type": "boxes", "source": "image", "classes": ["x"]}]},
        },
        headers=auth(admin_token),
    ).json()
    for name in ("../evil.png", "/etc/evil.png", "a/../../evil.png"):
        r = upload(client, admin_token, p["id"], name, b"\x89PNG\r\n")
        assert r.status_code == 422, (name, r.text)
        assert "not allowed" in r.json()["detail"]
    assert client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(admin_token)).json()["results"] == []


def test_unknown_schema_control_and_settings(client: Any, admin_token: str) -> None:
    bad = {"controls": [{"name": "b", "type": "boxs", "source": "image", "classes": ["x"]}]}
    r = client.post("/api/v1/projects", json={"name": "p", "schema": bad}, headers=auth(admin_token))
    assert r.status_code == 422 and "controls[0].type" in r.json()["detail"] and "boxs" in r.json()["detail"]
    r = client.post(
        "/api/v1/projects",
        json={"name": "p", "schema": SCHEMA, "settings": {"overlapp": 2}},
        headers=auth(admin_token),
    )
    assert r.status_code == 422 and r.json()["field"] == "settings.overlapp"
    r = client.post(
        "/api/v1/projects",
        json={"name": "p", "schema": SCHEMA, "settings": {"overlap": 3, "max_overlap": 2}},
        headers=auth(admin_token),
    )
    assert r.status_code == 422 and "max_overlap" in r.json()["detail"]
    r = client.post(
        "/api/v1/projects",
        content=b"{not json",
        headers={**auth(admin_token), "content-type": "application/json"},
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]


def test_settings_patch_merges(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token, settings={"gold_rate": 0.1})
    r = client.patch(
        f"/api/v1/projects/{p['id']}", json={"settings": {"overlap": 3}}, headers=auth(admin_token)
    )
    assert r.status_code == 200, r.text
    s = r.json()["settings"]
    assert s["overlap"] == 3 and s["max_overlap"] == 3 and s["gold_rate"] == 0.1
    r = client.patch(
        f"/api/v1/projects/{p['id']}", json={"settings": {"overlap": "3"}}, headers=auth(admin_token)
    )
    assert r.status_code == 422


def test_auth_and_visibility(client: Any, db: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    upload(
        client,
        admin_token,
        p["id"],
        "g.jsonl",
        jsonl([{"data": {"text": "t"}, "gold": {"sentiment": "pos"}}]),
    )
    assert client.get("/api/v1/projects").status_code == 401
    assert client.get("/api/v1/projects", headers=auth("lm_wrong")).status_code == 401
    uid, stranger = make_user(db, "stranger")
    assert client.get(f"/api/v1/projects/{p['id']}", headers=auth(stranger)).status_code == 404
    assert client.get("/api/v1/projects", headers=auth(stranger)).json()["results"] == []
    r = client.post(
        f"/api/v1/projects/{p['id']}/members",
        json={"user": "stranger", "role": "annotator"},
        headers=auth(admin_token),
    )
    assert r.status_code == 201
    # an annotator sees the project but not its items, and never gold answers
    assert client.get(f"/api/v1/projects/{p['id']}", headers=auth(stranger)).status_code == 200
    assert client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(stranger)).status_code == 403
    assert client.get(f"/api/v1/projects/{p['id']}/export", headers=auth(stranger)).status_code == 403
    client.patch(
        f"/api/v1/projects/{p['id']}/members/{uid}", json={"role": "reviewer"}, headers=auth(admin_token)
    )
    items = client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(stranger)).json()["results"]
    assert items and all(i.get("gold") is None and i.get("is_gold") is None for i in items)
    assert (
        client.patch(f"/api/v1/projects/{p['id']}", json={"name": "x"}, headers=auth(stranger)).status_code
        == 403
    )


def test_session_cookie_login(client: Any, db: Any) -> None:
    make_user(db, "alice", role="creator", password="correct horse")
    assert client.post("/api/v1/auth/login", json={"name": "alice", "password": "wrong"}).status_code == 401
    r = client.post("/api/v1/auth/login", json={"name": "alice", "password": "correct horse"})
    assert r.status_code == 200 and "labelmill_session" in r.cookies
    assert client.get("/api/v1/me").json()["name"] == "alice"
    # unsafe methods with a cookie need the anti-CSRF header
    r = client.post("/api/v1/projects", json={"name": "c", "schema": SCHEMA})
    assert r.status_code == 403
    r = client.post(
        "/api/v1/projects", json={"name": "c", "schema": SCHEMA}, headers={"X-Requested-With": "fetch"}
    )
    assert r.status_code == 201
    client.post("/api/v1/auth/logout", headers={"X-Requested-With": "fetch"})
    assert client.get("/api/v1/me").status_code == 401


def test_tokens(client: Any, db: Any, admin_token: str) -> None:
    r = client.post("/api/v1/tokens", json={"name": "ci"}, headers=auth(admin_token))
    assert r.status_code == 201
    new = r.json()
    assert client.get("/api/v1/me", headers=auth(new["token"])).status_code == 200
    listed = client.get("/api/v1/tokens", headers=auth(admin_token)).json()["results"]
    assert all("token" not in t for t in listed)
    assert client.delete(f"/api/v1/tokens/{new['id']}", headers=auth(admin_token)).status_code == 204
    assert client.get("/api/v1/me", headers=auth(new["token"])).status_code == 401


def test_delete_item_and_project(client: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    upload(client, admin_token, p["id"], "a.jsonl", jsonl([{"text": "a"}, {"text": "b"}]))
    items = client.get(f"/api/v1/projects/{p['id']}/items", headers=auth(admin_token)).json()["results"]
    assert (
        client.delete(
            f"/api/v1/projects/{p['id']}/items/{items[0]['id']}", headers=auth(admin_token)
        ).status_code
        == 204
    )
    assert (
        client.get(
            f"/api/v1/projects/{p['id']}/items/{items[0]['id']}", headers=auth(admin_token)
        ).status_code
        == 404
    )
    assert client.delete(f"/api/v1/projects/{p['id']}", headers=auth(admin_token)).status_code == 204
    assert client.get(f"/api/v1/projects/{p['id']}", headers=auth(admin_token)).status_code == 404


def test_conflicts_and_times(client: Any, db: Any, admin_token: str) -> None:
    p = create_project(client, admin_token)
    r = client.post("/api/v1/projects", json={"name": "reviews", "schema": SCHEMA}, headers=auth(admin_token))
    assert r.status_code == 409 and r.json()["field"] == "name"
    assert p["created_at"].endswith(("Z", "+00:00"))
    r = client.post("/api/v1/users", json={"name": "admin", "role": "member"}, headers=auth(admin_token))
    assert r.status_code == 409
    _, member = make_user(db, "plain")
    assert client.post("/api/v1/users", json={"name": "x"}, headers=auth(member)).status_code == 403
    # the last manager of a project cannot be removed
    me = client.get("/api/v1/me", headers=auth(admin_token)).json()["id"]
    assert (
        client.delete(f"/api/v1/projects/{p['id']}/members/{me}", headers=auth(admin_token)).status_code
        == 409
    )


def test_expired_session_is_refused(client: Any, db: Any) -> None:
    from datetime import timedelta

    from labelmill.services.users import create_token, get_user

    make_user(db, "old")
    with db.session() as s:
        secret, _ = create_token(s, get_user(s, "old"), kind="session", lifetime=timedelta(seconds=-1))
    client.cookies.set("labelmill_session", secret)
    r = client.get("/api/v1/me")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
