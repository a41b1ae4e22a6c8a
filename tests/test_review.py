"""Review through the API: drawn at review_rate, accept / reject / correct, on both databases."""

from __future__ import annotations

import io
import json
import random
from typing import Any

from labelmill.jobs.worker import run_pending
from tests.conftest import auth, make_user
from tests.test_queue import annotators, next_task, project, submit


def _reviewer(client: Any, db: Any, admin: str, pid: int, name: str = "rev") -> str:
    _, token = make_user(db, name)
    r = client.post(
        f"/api/v1/projects/{pid}/members", json={"user": name, "role": "reviewer"}, headers=auth(admin)
    )
    assert r.status_code == 201
    return token


def _label_all(client: Any, tokens: list[str], pid: int, label: str = "pos") -> list[dict[str, Any]]:
    out = []
    for token in tokens:
        while (t := next_task(client, token, pid)) is not None:
            r = submit(client, token, t["id"], label=label)
            assert r.status_code == 201
            out.append(r.json())
    return out


def test_review_flow(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 3, review_rate=1.0)
    a, b = annotators(client, db, admin_token, pid, 2)
    rev = _reviewer(client, db, admin_token, pid)
    submitted = _label_all(client, [a], pid)
    assert {s["status"] for s in submitted} == {"pending_review"}

    # annotators cannot review; reviewers cannot review their own work
    assert client.post(f"/api/v1/projects/{pid}/reviews/next", headers=auth(b)).status_code == 403
    seen = []
    while (r := client.post(f"/api/v1/projects/{pid}/reviews/next", headers=auth(rev))).status_code == 200:
        task = r.json()
        assert "gold" not in json.dumps(task)
        seen.append(task["annotation"]["id"])
        action = ["accept", "reject", "correct"][len(seen) - 1]
        body: dict[str, Any] = {"action": action}
        if action == "reject":
            bad = client.post(f"/api/v1/annotations/{seen[-1]}/review", json=body, headers=auth(rev))
            assert bad.status_code == 422 and bad.json()["field"] == "comment"
            body["comment"] = "the text is clearly negative"
        if action == "correct":
            body["value"] = {"label": "neg"}
        r = client.post(f"/api/v1/annotations/{seen[-1]}/review", json=body, headers=auth(rev))
        assert r.status_code == 201, r.text
        assert r.json()["action"] == action
    assert r.status_code == 204 and len(seen) == 3
    again = client.post(
        f"/api/v1/annotations/{seen[0]}/review", json={"action": "reject", "comment": "x"}, headers=auth(rev)
    )
    assert again.status_code == 409
    edit = client.patch(f"/api/v1/annotations/{seen[0]}", json={"value": {"label": "neg"}}, headers=auth(a))
    assert edit.status_code == 409  # reviewed annotations no longer change

    # the rejected item went back to the queue: someone else labels it
    t = next_task(client, b, pid)
    assert t is not None and t["item"]["id"] == submitted[1]["item_id"]
    assert submit(client, b, t["id"]).status_code == 201

    run_pending(db)
    rows = {
        r["external_id"]: r
        for r in map(
            json.loads,
            client.get(f"/api/v1/projects/{pid}/export", headers=auth(admin_token)).text.splitlines(),
        )
    }
    corrected = next(r for r in rows.values() if any(a["status"] == "corrected" for a in r["annotations"]))
    assert (
        corrected["consensus"]["value"] == {"label": "neg"} and corrected["consensus"]["method"] == "review"
    )
    stats = client.get(f"/api/v1/projects/{pid}/stats", headers=auth(admin_token)).json()
    by_name = {x["name"]: x for x in stats["annotators"]}
    assert by_name["ann0"]["reviews"] == {"accepted": 1, "rejected": 1, "corrected": 1}
    assert abs(by_name["ann0"]["review_acceptance"] - 1 / 3) < 1e-9
    reviews = client.get(f"/api/v1/projects/{pid}/reviews", headers=auth(admin_token)).json()["results"]
    assert [r["action"] for r in reviews] == ["correct", "reject", "accept"]


def test_low_agreement_mode(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 4, overlap=2, target_confidence=0.99)
    a, b = annotators(client, db, admin_token, pid, 2)
    rev = _reviewer(client, db, admin_token, pid)
    _label_all(client, [a], pid, label="pos")
    _label_all(client, [b], pid, label="neg")
    run_pending(db)
    assert client.post(f"/api/v1/projects/{pid}/reviews/next", headers=auth(rev)).status_code == 204
    r = client.post(
        f"/api/v1/projects/{pid}/reviews/next", params={"mode": "low_agreement"}, headers=auth(rev)
    )
    assert r.status_code == 200  # every item is split 1:1, so someone disagrees with each consensus


def test_spammer_is_paused(client: Any, db: Any, admin_token: str) -> None:
    pid = project(client, admin_token, 0)
    tokens = annotators(client, db, admin_token, pid, 5)  # ann0..ann4; the import below names them
    rng = random.Random(3)
    lines = []
    for i in range(120):
        truth = rng.choice(["pos", "neg"])
        anns = [
            {
                "annotator": f"ann{w}",
                "value": {"label": truth if rng.random() < 0.85 else ("neg" if truth == "pos" else "pos")},
            }
            for w in range(4)
        ]
        anns.append({"annotator": "ann4", "value": {"label": "pos"}})
        lines.append({"data": {"text": f"t{i}"}, "annotations": anns})
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    assert (
        client.post(
            f"/api/v1/projects/{pid}/imports",
            files={"files": ("a.jsonl", io.BytesIO(body))},
            headers=auth(admin_token),
        ).status_code
        == 201
    )
    run_pending(db)
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(tokens[4]))
    assert r.status_code == 403 and "spammer" in r.json()["detail"]
    members = client.get(f"/api/v1/projects/{pid}/members", headers=auth(admin_token)).json()["results"]
    assert [m["name"] for m in members if m["paused"]] == ["ann4"]
