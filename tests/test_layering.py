"""The package layering the next issues build on (issue 16, "Layering"), checked on the import
statements of the source itself, so that a new module that crosses a layer fails here:

- the pure and service layers (quality, schema, formats, store, services, jobs, assist-style
  cores) import no web framework (fastapi, starlette, anyio);
- routes never import :mod:`labelmill.store` (they name stored types through
  :mod:`labelmill.services.types`) and never run jobs themselves (no threads, no job runners:
  they enqueue, and the app's executor runs);
- :mod:`labelmill.quality` is pure: no database, services or API;
- demo content lives in :mod:`labelmill.demo`, not in services;
- the image helpers YOLO and VOC share live in :mod:`labelmill.formats.images`, not in coco.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "labelmill"

WEB = ("fastapi", "starlette", "anyio", "uvicorn")
RUNS_JOBS = ("threading", "labelmill.jobs.worker", "labelmill.jobs.handlers", "concurrent.futures")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against it)."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    return modules_of(path.read_text(encoding="utf-8"), package)


def modules_of(source: str, package: str) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def files_under(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (SRC / package).rglob("*.py"))


def crossing(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return forbidden_in(imported_modules(path), forbidden)


def forbidden_in(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def rel(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


@pytest.mark.parametrize(
    "path", files_under("quality", "schema", "formats", "store", "services", "jobs", "demo"), ids=rel
)
def test_core_layers_import_no_web_framework(path: Path) -> None:
    assert crossing(path, WEB) == [], f"{rel(path)} imports a web framework"


@pytest.mark.parametrize("path", files_under("api/routes"), ids=rel)
def test_routes_do_not_import_store_or_run_jobs(path: Path) -> None:
    assert crossing(path, ("labelmill.store",)) == [], f"{rel(path)}: name stored types via services.types"
    assert crossing(path, RUNS_JOBS) == [], f"{rel(path)}: routes enqueue jobs, the executor runs them"


@pytest.mark.parametrize("path", files_under("quality"), ids=rel)
def test_quality_is_pure(path: Path) -> None:
    forbidden = ("labelmill.store", "labelmill.services", "labelmill.api", "labelmill.jobs", "sqlalchemy")
    assert crossing(path, forbidden) == []


def test_demo_content_is_its_own_package() -> None:
    assert not list((SRC / "services").glob("demo*.py"))
    assert (SRC / "demo" / "data").is_dir()
    for path in files_under("services"):
        assert crossing(path, ("labelmill.demo",)) == [], rel(path)


@pytest.mark.parametrize("name", ["yolo.py", "voc.py"])
def test_image_helpers_are_not_taken_from_coco(name: str) -> None:
    assert crossing(SRC / "formats" / name, ("labelmill.formats.coco",)) == []


def test_the_checker_sees_a_crossing() -> None:
    """The checks above can fail: a route importing starlette and, relatively, the store is caught."""
    modules = modules_of(
        "from starlette.concurrency import run_in_threadpool\n"
        "from ...store import models\n"
        "import threading\n",
        "labelmill.api.routes",
    )
    assert forbidden_in(modules, WEB) == ["starlette.concurrency", "starlette.concurrency.run_in_threadpool"]
    assert forbidden_in(modules, ("labelmill.store",)) == ["labelmill.store", "labelmill.store.models"]
    assert forbidden_in(modules, RUNS_JOBS) == ["threading"]
