# ruff: noqa: F811  (the live-server fixtures of test_client are imported, then used as arguments)
"""The SDK: a project list with item counts, and column options of import_items (against a live server)."""

from __future__ import annotations

import sys
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
    job = admin.import_items(project, frame, gold_columns={"label": "label"})
    result = job.result or {}
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
    job = admin.import_items(project, rows, annotation_columns={"seed.label": "label"}, meta_columns=["src"])
    assert (job.result or {})["annotations"] == 2
    got = [(i.data, i.meta) for i in admin.items(project)]
    assert got == [({"text": "x"}, {"src": "web"}), ({"text": "y"}, {"src": "sms"})]


def test_unmapped_label_column_is_warned(admin: Client, request: pytest.FixtureRequest) -> None:
    project = _project(admin, request)
    job = admin.import_items(project, pd.DataFrame({"text": ["x"], "label": ["spam"]}))
    warnings = (job.result or {})["warnings"]
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


def test_the_readme_sdk_example_needs_only_declared_packages() -> None:
    """pandas, used by the README's SDK example, is an extra (labelmill[pandas]) the README names."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(re.fullmatch(r"pandas>=[\d.]+", req) for req in extras["pandas"])
    readme = (root / "README.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", readme, flags=re.S))
    modules = set(re.findall(r"^(?:from|import) (\w+)", code, flags=re.M))
    declared = {re.split(r"[<>=\[ ;]", req)[0] for req in project["dependencies"]}
    for module in modules - set(sys.stdlib_module_names) - {"labelmill"}:
        named = [name for name, reqs in extras.items() if any(r.startswith(module) for r in reqs)]
        assert module in declared or any(f"labelmill[{name}]" in readme for name in named), module


def test_export_dataframe_without_pandas_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with (
        Client("http://127.0.0.1:9", "t") as client,
        pytest.raises(ImportError, match=r"labelmill\[pandas\]"),
    ):
        client.export_dataframe(1)
