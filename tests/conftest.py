"""Shared fixtures. Database fixtures run every test on SQLite and, when reachable, PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: ../shared/datasets beside the clone (or LABELMILL_SHARED_DATASETS); tests skip when absent.
SHARED_DATASETS = Path(os.environ.get("LABELMILL_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not present at {SHARED_DATASETS}")
    return SHARED_DATASETS
