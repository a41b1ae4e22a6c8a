"""Project progress: gold items are counted apart, and the time to finish needs evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from labelmill.cli import app
from labelmill.services.stats import ETA_MIN_LABELS, ETA_MIN_SECONDS, eta_estimate
from labelmill.store.engine import open_database
from labelmill.store.models import Annotation, Item, Task, User

SCHEMA = {"controls": [{"name": "s", "type": "choices", "source": "text", "classes": ["a", "b"]}]}


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@given(
    left=st.integers(1, 10**7),
    labels=st.integers(ETA_MIN_LABELS, 10**5),
    seconds=st.floats(ETA_MIN_SECONDS, 10**6),
)
def test_the_interval_holds_the_estimate(left: int, labels: int, seconds: float) -> None:
    eta = eta_estimate(left, labels, seconds)
    assert eta["eta_low"] is not None and eta["eta_high"] is not None and eta["eta_seconds"] is not None
    assert eta["eta_low"] <= eta["eta_seconds"] <= eta["eta_high"]
    # More of the same evidence (the same rate over a longer time) narrows the interval.
    more = eta_estimate(left, labels * 4, seconds * 4)
    assert more["eta_high"] - more["eta_low"] <= eta["eta_high"] - eta["eta_low"]  # type: ignore[operator]


@given(labels=st.integers(0, 10**4), seconds=st.floats(0, 10**6))
def test_no_estimate_without_evidence(labels: int, seconds: float) -> None:
    eta = eta_estimate(100, labels, seconds)
    if labels < ETA_MIN_LABELS or seconds < ETA_MIN_SECONDS:
        assert eta == {"eta_seconds": None, "eta_low": None, "eta_high": None}
    else:
        assert eta["eta_seconds"] == round(100 * seconds / labels)


def test_nothing_left_is_finished() -> None:
    assert eta_estimate(0, 0, 0.0) == {"eta_seconds": 0.0, "eta_low": 0.0, "eta_high": 0.0}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    db = f"sqlite:///{tmp_path / 'stats.db'}"
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    assert cli("project", "create", "p", "--schema", str(schema), "--db", db).exit_code == 0
    lines = [{"data": {"text": f"t{i}"}} for i in range(50)]
    lines += [{"data": {"text": f"g{i}"}, "gold": {"s": "a"}} for i in range(4)]
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert cli("import", "p", str(items), "--db", db).exit_code == 0
    return {"db": db}


def _submit(db_url: str, minutes_ago: list[float]) -> None:
    """Annotations through the queue, submitted the given minutes ago (one item each)."""
    now = datetime.now(UTC)
    with open_database(db_url).session() as session:
        user = User(name="ann", role="member")
        session.add(user)
        session.flush()
        items = session.query(Item).filter(~Item.is_gold).order_by(Item.id).limit(len(minutes_ago)).all()
        for item, ago in zip(items, minutes_ago, strict=True):
            at = now - timedelta(minutes=ago)
            task = Task(
                project_id=item.project_id,
                item_id=item.id,
                annotator_id=user.id,
                state="submitted",
                expires_at=at,
                finished_at=at,
            )
            session.add(task)
            session.flush()
            session.add(
                Annotation(
                    project_id=item.project_id,
                    item_id=item.id,
                    annotator_id=user.id,
                    task_id=task.id,
                    value={"s": "a"},
                    created_at=at,
                )
            )
            item.annotation_count = 1


def test_stats_count_gold_apart(project: dict[str, Any]) -> None:
    r = cli("stats", "p", "--db", project["db"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("items 50 (and 4 gold, not counted): 0 done"), r.output
    data = json.loads(cli("stats", "p", "--json", "--db", project["db"]).output)
    assert data["progress"]["items"] == 50 and data["progress"]["gold_items"] == 4


def test_one_minute_of_work_gives_no_finish_time(project: dict[str, Any]) -> None:
    _submit(project["db"], [1.0] * 25)  # 25 labels, all within the last minute
    data = json.loads(cli("stats", "p", "--json", "--db", project["db"]).output)
    progress = data["progress"]
    assert progress["labels_remaining"] == 25
    assert progress["eta_seconds"] is None and progress["eta_low"] is None and progress["eta_high"] is None
    assert "finish time unknown" in cli("stats", "p", "--db", project["db"]).output


def test_enough_work_gives_a_finish_time_with_an_interval(project: dict[str, Any]) -> None:
    _submit(project["db"], [30.0 - i for i in range(25)])  # 25 labels over the last half hour
    progress = json.loads(cli("stats", "p", "--json", "--db", project["db"]).output)["progress"]
    # 25 labels in about 30 minutes: the 25 left take about as long.
    assert 25 * 60 < progress["eta_seconds"] < 35 * 60
    assert progress["eta_low"] < progress["eta_seconds"] < progress["eta_high"]
    assert "90% within" in cli("stats", "p", "--db", project["db"]).output


def test_api_stats_carry_the_interval(client: Any, admin_token: str) -> None:
    from tests.conftest import auth

    r = client.post("/api/v1/projects", json={"name": "p", "schema": SCHEMA}, headers=auth(admin_token))
    pid = r.json()["id"]
    progress = client.get(f"/api/v1/projects/{pid}/stats", headers=auth(admin_token)).json()["progress"]
    assert {"gold_items", "eta_seconds", "eta_low", "eta_high"} <= set(progress)
