"""Export throughput and memory: JSONL and Parquet exports of a text-classification project.

Run: ``python bench/formats.py`` (env ``BENCH_ROWS``, default 1,000,000). The export rows come from
a generator (no database): one item each, with three annotators' labels and a consensus with its
confidence. Each export runs in a child process so its peak RSS is the exporter's own. The peer is a
plain ``json.dumps`` loop writing the same rows to a file, in the same run; "generate only" is the
cost of producing the rows, which every other line includes. Prints a Markdown table and ends with a
``RESULT`` line.
"""

from __future__ import annotations

import support.path_guard  # noqa: F401  # isort: skip  (must run first: see bench/support/path_guard.py)

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

N = int(os.environ.get("BENCH_ROWS", "1000000"))
SCHEMA = {
    "controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["pos", "neg", "neutral"]}]
}
WORDS = ["fast", "slow", "great", "awful", "fine", "odd", "cheap", "loud", "new", "used", "the", "was"]
CLASSES = ["pos", "neg", "neutral"]


def export_rows(n: int) -> Iterator[dict[str, Any]]:
    """Export rows as the export service hands them to an exporter (DESIGN's JSONL line shape).

    Texts and label triples come from small pools so that making a row costs little next to
    writing it: the timings are the exporters', not the generator's.
    """
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(997)]
    triples = [[rng.choice(CLASSES) for _ in range(3)] for _ in range(101)]
    tops = [max(set(t), key=t.count) for t in triples]
    confidences = [round(0.5 + rng.random() / 2, 4) for _ in range(89)]
    for i in range(n):
        labels = triples[i % 101]
        yield {
            "external_id": f"item-{i}",
            "data": {"text": f"{texts[i % 997]} #{i}"},
            "annotations": [
                {"annotator": "ann0", "value": {"label": labels[0]}, "lead_seconds": 4.5},
                {"annotator": "ann1", "value": {"label": labels[1]}, "lead_seconds": 6.0},
                {"annotator": "ann2", "value": {"label": labels[2]}, "lead_seconds": 3.25},
            ],
            "predictions": [],
            "consensus": {
                "value": {"label": tops[i % 101]},
                "confidence": confidences[i % 89],
                "method": "ds",
                "auto": False,
            },
        }


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, out: str) -> None:
    from labelmill.formats.exporting import ExportContext, get_exporter
    from labelmill.schema import parse_schema

    ctx = ExportContext(schema=parse_schema(SCHEMA))
    path = Path(out)
    start = time.perf_counter()
    if mode == "generate":
        count = sum(1 for _ in export_rows(N))
    elif mode == "json_dumps":
        count = 0
        with path.open("w", encoding="utf-8") as fh:
            for row in export_rows(N):
                fh.write(json.dumps(row) + "\n")
                count += 1
    elif mode == "jsonl":
        try:
            count = get_exporter("jsonl").write(export_rows(N), path, ctx)
        except (ImportError, AttributeError):  # no JSONL_EXPORTER object yet: the module's writer
            from labelmill.formats.jsonl_export import write_jsonl

            with path.open("wb") as fh:
                count = write_jsonl(export_rows(N), fh)
    else:
        count = get_exporter(mode).write(export_rows(N), path, ctx)
    seconds = time.perf_counter() - start
    size = path.stat().st_size if path.exists() else 0
    print(json.dumps({"seconds": seconds, "count": count, "peak_mb": peak_mb(), "file_mb": size / 2**20}))


def run(mode: str, out: Path) -> dict[str, Any]:
    # The child imports support.path_guard first, like every bench script (see that module).
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["count"] != N:
        raise SystemExit(f"{mode}: wrote {result['count']} of {N} items")
    return result


def main() -> None:
    modes = [
        ("generate", "generate only (rows, no output)", ""),
        ("json_dumps", "peer: plain json.dumps loop", "peer.jsonl"),
        ("jsonl", "labelmill JSONL export", "out.jsonl"),
        ("parquet", "labelmill Parquet export", "out.parquet"),
        ("csv", "labelmill CSV export", "out.csv"),
    ]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, _label, name in modes:
            results[mode] = run(mode, Path(tmp) / (name or "none"))
    per_million = {m: r["seconds"] * 1_000_000 / N for m, r in results.items()}

    print(
        f"Export of {N:,} text-classification items (3 annotations + consensus each), "
        "each export in its own process\n"
    )
    gen = results["generate"]["seconds"]
    print("| export | seconds | s per million | net of generating, s | items/s | peak RSS MB | file MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, label, _name in modes:
        r = results[mode]
        net = "" if mode == "generate" else f"{r['seconds'] - gen:.2f}"
        print(
            f"| {label} | {r['seconds']:.2f} | {per_million[mode]:.2f} | {net} | {N / r['seconds']:,.0f} "
            f"| {r['peak_mb']:.0f} | {r['file_mb']:.1f} |"
        )
    ratio = results["jsonl"]["seconds"] / results["json_dumps"]["seconds"]
    peak = max(results[m]["peak_mb"] for m in ("jsonl", "parquet"))
    print(
        f"\nTargets: JSONL < 30 s, Parquet < 15 s per million, peak < 500 MB. Seconds include generating "
        f"the rows. JSONL takes {ratio:.2f}x the plain json.dumps loop."
    )
    print(
        f"RESULT jsonl_seconds_per_million={per_million['jsonl']:.2f} "
        f"parquet_seconds_per_million={per_million['parquet']:.2f} peak_mb={peak:.0f} "
        f"jsonl_ratio_to_json_dumps={ratio:.2f}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
