"""Import throughput and deep-page listing latency, on SQLite and PostgreSQL.

Run: ``python bench/import.py`` (env ``BENCH_ITEMS``, default 1,000,000). Each import runs in
a child process so its peak RSS is the importer's own. The peer is the database's raw rate:
the same rows written by a bare ``executemany`` (SQLite) / ``COPY`` (PostgreSQL) with no
parsing or validation. Prints a Markdown table and ends with a ``RESULT`` line.
"""

from __future__ import annotations

import support.path_guard  # noqa: F401  # isort: skip  (must run first: see bench/support/path_guard.py)

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

N = int(os.environ.get("BENCH_ITEMS", "1000000"))
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SCHEMA = {"controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["pos", "neg"]}]}


def write_jsonl(path: Path, n: int) -> None:
    words = ["fast", "slow", "great", "awful", "fine", "odd", "cheap", "loud", "new", "used"]
    rng = random.Random(0)
    with path.open("w") as fh:
        for i in range(n):
            text = " ".join(rng.choice(words) for _ in range(6))
            fh.write(json.dumps({"data": {"text": f"{text} #{i}"}, "external_id": f"item-{i}"}) + "\n")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_import(url: str, path: str) -> None:
    from labelmill.formats import read_jsonl
    from labelmill.services.ingest import import_records
    from labelmill.services.projects import create_project
    from labelmill.store.engine import Database

    db = Database(url)
    with db.session() as s:
        pid = create_project(s, f"bench-{time.time_ns()}", SCHEMA).id
    start = time.perf_counter()
    result = import_records(db, pid, read_jsonl(path))
    seconds = time.perf_counter() - start
    print(
        json.dumps({"seconds": seconds, "created": result.created, "peak_mb": peak_mb(), "project_id": pid})
    )


def child_raw(url: str, path: str) -> None:
    """The database's own rate for the same rows: pre-serialised tuples, no parsing in the timing."""
    from sqlalchemy import insert

    from labelmill.store.bulk import insert_items
    from labelmill.store.engine import Database
    from labelmill.store.models import Project

    db = Database(url)
    rows = []
    with open(path) as fh:
        for line in fh:
            obj = json.loads(line)
            rows.append((0, obj["external_id"], json.dumps(obj["data"]), None, None, False, 0.0, 0, 0, True))
    with db.session() as s:
        pid = s.execute(
            insert(Project)
            .values(name=f"raw-{time.time_ns()}", label_schema=SCHEMA, settings={})
            .returning(Project.id)
        ).scalar_one()
    rows = [(pid, *r[1:]) for r in rows]
    start = time.perf_counter()
    with db.engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            insert_items(conn, rows[i : i + 5000])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "created": len(rows), "peak_mb": peak_mb(), "project_id": pid}))


def run_child(kind: str, url: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, f"--{kind}", url, str(path)], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def page_latency(url: str, project_id: int, n_items: int) -> float:
    """Median ms for one page of 100 items starting deep in the project (keyset cursor)."""
    from sqlalchemy import func, select

    from labelmill.services.items import encode_cursor, list_items
    from labelmill.store.engine import Database
    from labelmill.store.models import Item

    db = Database(url)
    with db.session() as s:
        lo, hi = s.execute(
            select(func.min(Item.id), func.max(Item.id)).where(Item.project_id == project_id)
        ).one()
    rng = random.Random(1)
    times = []
    for _ in range(300):
        start_id = rng.randint(lo + (hi - lo) // 2, hi - 200)  # deep: the second half of the project
        t0 = time.perf_counter()
        with db.session() as s:
            rows, _ = list_items(s, project_id, limit=100, cursor=encode_cursor(start_id))
        times.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == 100
    db.dispose()
    return statistics.median(times)


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


def pg_fresh_db() -> str:
    import psycopg

    base = PG_URL.replace("+psycopg", "")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS labelmill_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE labelmill_bench")
    return PG_URL.rsplit("/", 1)[0] + "/labelmill_bench"


def main() -> None:
    rows = []
    result: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "items.jsonl"
        write_jsonl(data, N)
        targets = [("sqlite", f"sqlite:///{tmp}/bench.db")]
        if pg_available():
            targets.append(("postgresql", pg_fresh_db()))
        for name, url in targets:
            ours = run_child("import", url, data)
            raw = run_child("raw", url, data)
            page_ms = page_latency(url, ours["project_id"], N)
            rate = ours["created"] / ours["seconds"]
            raw_rate = raw["created"] / raw["seconds"]
            rows.append(
                f"| {name} | {N:,} | {ours['seconds']:.1f} | {rate:,.0f} | {ours['peak_mb']:.0f} | "
                f"{raw_rate:,.0f} | {rate / raw_rate:.2f} | {page_ms:.2f} |"
            )
            key = "sqlite" if name == "sqlite" else "pg"
            result[f"{key}_items_per_second"] = f"{rate:.0f}"
            result[f"{key}_seconds"] = f"{ours['seconds']:.1f}"
            result[f"{key}_peak_mb"] = f"{ours['peak_mb']:.0f}"
            result[f"{key}_ratio_to_raw"] = f"{rate / raw_rate:.2f}"
            result[f"{key}_page_ms_median"] = f"{page_ms:.2f}"
    print(
        "| database | items | import s | items/s | peak MB | raw db items/s | ratio to raw "
        "| deep page of 100, median ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    headline = {
        "items_per_second": result["sqlite_items_per_second"],
        "peak_mb": result["sqlite_peak_mb"],
        **result,
    }
    print("RESULT " + " ".join(f"{k}={v}" for k, v in headline.items()))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--import":
        child_import(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "--raw":
        child_raw(sys.argv[2], sys.argv[3])
    else:
        main()
