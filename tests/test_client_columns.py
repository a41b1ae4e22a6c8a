# ruff: noqa: F811  (the live-server fixtures of test_client are imported, then used as arguments)
"""The SDK: a project list with item counts, and column options of import_items (against a live server)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from labelmill.client import Client
from tests.test_client import admin, annotator, server  # noqa: F401  (fixtures: a live server)

SCHEMA: dict[str, Any] = {
    "controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["ham", "spam"]}]
}


def _project(client: Client, request: pytest.FixtureRequest) -> Any:
    return client.create_project(request.node.name[:150], SCHEMA)


def test_project_list_has_item_counts(
    admin: Client, annotator: Client, request: pytest.FixtureRequest
) -> None:
    project = _project(admin, request)
    admin.import_items(project, [{"text": f"t{i}"} for i in range(3)])
    listed = {p.id: p for p in admin.projects()}
    assert listed[project.id].item_count == 3
    admin.add_member(project, "ann", "annotator")
    mine = {p.id: p for p in annotator.projects()}
    assert mine[project.id].item_count is None  # counts are for managers, as in project()


def test_dataframe_label_column_as_gold(admin: Client, request: pytest.FixtureRequest) -> None:
    project = _project(admin, request)
    frame = pd.DataFrame({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": ["spam", None, "ham"]})
    jobs = admin.import_items(project, frame, gold_columns={"label": "label"})
    result = jobs[0].result or {}
    assert result["created"] == 3 and result["warnings"] == []
    items = {i.external_id: i for i in admin.items(project)}
    assert {k: i.data for k, i in items.items()} == {
        "a": {"text": "x"},
        "b": {"text": "y"},
        "c": {"text": "z"},
    }
    assert items["a"].is_gold and not items["b"].is_gold and items["c"].gold == {"label": "ham"}


def test_dicts_with_annotation_and_meta_columns(admin: Client, request: pytest.FixtureRequest) -> None:
    project = _project(admin, request)
    rows = [{"text": "x", "label": "spam", "src": "web"}, {"text": "y", "label": "ham", "src": "sms"}]
    jobs = admin.import_items(project, rows, annotation_columns={"seed.label": "label"}, meta_columns=["src"])
    assert (jobs[0].result or {})["annotations"] == 2
    got = [(i.data, i.meta) for i in admin.items(project)]
    assert got == [({"text": "x"}, {"src": "web"}), ({"text": "y"}, {"src": "sms"})]


def test_unmapped_label_column_is_warned(admin: Client, request: pytest.FixtureRequest) -> None:
    project = _project(admin, request)
    jobs = admin.import_items(project, pd.DataFrame({"text": ["x"], "label": ["spam"]}))
    warnings = (jobs[0].result or {})["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("data field 'label' has the name of the control")


def test_column_option_errors(admin: Client, request: pytest.FixtureRequest) -> None:
    project = _project(admin, request)
    with pytest.raises(ValueError, match="item 0: no column 'labl'"):
        admin.import_items(
            project, pd.DataFrame({"text": ["x"], "label": ["spam"]}), gold_columns={"label": "labl"}
        )
    with pytest.raises(ValueError, match="no item has the column 'labl'"):
        admin.import_items(project, [{"text": "x"}], gold_columns={"label": "labl"})
    assert list(admin.items(project)) == []
