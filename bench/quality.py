"""Categorical label aggregation: labelmill.quality against crowd-kit, on speed and on accuracy.

Run with no arguments. (a) 500,000 generated labels (100,000 items x 5, 1,000 workers of accuracy
uniform in 0.55-0.95, 5 classes): fit time and accuracy of our DawidSkene, GLAD and MACE against
crowd-kit's (ours: median of a few runs; crowd-kit's GLAD and MACE take minutes, so once).
(b) accuracy on every public dataset in ../shared/datasets/crowd/ (or
$LABELMILL_SHARED_DATASETS/crowd) for all our methods and crowd-kit's MV, DS, OneCoin, GLAD and
MACE (crowd-kit's Wawa crashes with scikit-learn >= 1.6). (c) random-heavy imbalanced crowds
(87/13 classes, about 60 % of the annotators answering at random): our default DS (smoothing
chosen from the data), DS with the former fixed smoothing 2, and crowd-kit's plain DS.
Prints Markdown tables and ends with a RESULT line.
"""

from __future__ import annotations

import support.path_guard  # noqa: F401  # isort: skip  (must run first: see bench/support/path_guard.py)

import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.glad import GLAD
from labelmill.quality.mace import MACE
from labelmill.quality.methods import DEFAULT_METHOD, METHODS

DATASETS = (
    Path(
        os.environ.get(
            "LABELMILL_SHARED_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
        )
    )
    / "crowd"
)
RANDOM_HEAVY_SEEDS = (0, 1, 2, 3, 4)
OUR_RUNS = 5
SEED = 20261125


def generate(
    n_items: int = 100_000,
    per_item: int = 5,
    n_workers: int = 1_000,
    n_classes: int = 5,
    seed: int = SEED,
    mix: tuple[float, ...] | None = None,
    random_share: float = 0.0,
) -> tuple[pd.DataFrame, pd.Series]:
    """Items get `per_item` distinct workers; a worker is right with their accuracy, else picks a
    wrong class uniformly. `mix` gives the class balance (uniform when None); a `random_share` of
    the workers answer uniformly at random whatever the item."""
    rng = np.random.default_rng(seed)
    accuracy = rng.uniform(0.55, 0.95, n_workers)
    truth = rng.integers(0, n_classes, n_items) if mix is None else rng.choice(n_classes, n_items, p=mix)
    workers = rng.integers(0, n_workers, (n_items, per_item))
    while True:
        ordered = np.sort(workers, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeated.any():
            break
        workers[repeated] = rng.integers(0, n_workers, (int(repeated.sum()), per_item))
    worker = workers.ravel()
    item = np.repeat(np.arange(n_items), per_item)
    true_label = truth[item]
    right = rng.random(item.size) < accuracy[worker]
    wrong = (true_label + rng.integers(1, n_classes, item.size)) % n_classes
    label = np.where(right, true_label, wrong)
    if random_share > 0:
        spammer = rng.random(n_workers) < random_share
        label = np.where(spammer[worker], rng.integers(0, n_classes, item.size), label)
    data = pd.DataFrame({"item": item, "worker": worker, "label": label})
    return data, pd.Series(truth, index=np.arange(n_items), name="label")


def accuracy(predicted: dict[Any, Any] | pd.Series, truth: pd.Series) -> float:
    predicted = pd.Series(predicted) if isinstance(predicted, dict) else predicted
    return float((predicted.reindex(truth.index) == truth).mean())


def timed(fit: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def crowdkit_models() -> dict[str, Callable[..., Any]]:
    from crowdkit.aggregation import GLAD as CrowdGLAD
    from crowdkit.aggregation import MACE as CrowdMACE
    from crowdkit.aggregation import DawidSkene as CrowdDS
    from crowdkit.aggregation import MajorityVote as CrowdMV
    from crowdkit.aggregation import OneCoinDawidSkene as CrowdOneCoin

    return {
        "mv": CrowdMV,
        "ds": lambda: CrowdDS(n_iter=100),
        "one-coin": lambda: CrowdOneCoin(n_iter=100),
        "glad": CrowdGLAD,
        "mace": lambda **params: CrowdMACE(**params),
    }


def crowdkit_predict(make: Callable[[], Any], data: pd.DataFrame) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make().fit_predict(data.rename(columns={"item": "task"}))


def speed_section(ck: dict[str, Callable[..., Any]]) -> dict[str, float]:
    data, truth = generate()
    ours: dict[str, Callable[[], Any]] = {"ds": DawidSkene, "glad": GLAD, "mace": MACE}
    crowd_runs = {"ds": 3, "glad": 1, "mace": 1}
    print(
        f"## Speed: {len(data):,} generated labels ({data['item'].nunique():,} items, "
        f"{data['worker'].nunique():,} workers, {data['label'].nunique()} classes)\n"
    )
    print("| method | labelmill s | crowd-kit s | speedup | labelmill accuracy | crowd-kit accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    speedups = {}
    for name, make in ours.items():
        our_time, labels = timed(lambda make=make: make().fit_predict(data), OUR_RUNS)
        their_time, their_labels = timed(lambda name=name: crowdkit_predict(ck[name], data), crowd_runs[name])
        speedups[name] = their_time / our_time
        print(
            f"| {name} | {our_time:.3f} | {their_time:.2f} | {speedups[name]:.1f}x | "
            f"{accuracy(labels, truth):.4f} | {accuracy(their_labels, truth):.4f} |",
            flush=True,
        )
    print()
    # crowd-kit's MACE keys its parameters by first appearance but sums its M-step counts in sorted
    # order, so on this data its workers swap parameters. Recoded so both orders agree (and with one
    # restart: its restarts all start from the same seed) it is MACE as published.
    recoded = data.assign(worker=pd.factorize(data["worker"])[0], label=pd.factorize(data["label"])[0])
    names = pd.factorize(data["label"])[1]
    fixed = crowdkit_predict(lambda: ck["mace"](n_restarts=1), recoded)
    fixed = pd.Series(np.asarray(names)[fixed.to_numpy().astype(int)], index=fixed.index)
    print(
        "crowd-kit MACE with workers and classes recoded in order of first appearance (which its "
        f"M-step assumes): accuracy {accuracy(fixed, truth):.4f}\n"
    )
    return speedups


def accuracy_section(ck: dict[str, Callable[..., Any]]) -> tuple[dict[str, float], dict[str, float]]:
    names = (
        sorted(p.name for p in DATASETS.iterdir() if (p / "labels.csv").is_file())
        if DATASETS.is_dir()
        else []
    )
    if not names:
        print(f"## Accuracy: no datasets at {DATASETS}\n")
        return {}, {}
    columns = [f"ours {m}" for m in METHODS] + [f"crowd-kit {m}" for m in ck]
    print(f"## Accuracy on items with a true label ({DATASETS})\n")
    print("| dataset | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    scores: dict[str, list[float]] = {column: [] for column in columns}
    for name in names:
        data = pd.read_csv(DATASETS / name / "labels.csv")
        truth = pd.read_csv(DATASETS / name / "truth.csv").set_index("item")["label"]
        for method, cls in METHODS.items():
            scores[f"ours {method}"].append(accuracy(cls().fit_predict(data), truth))
        for method, make in ck.items():
            scores[f"crowd-kit {method}"].append(accuracy(crowdkit_predict(make, data), truth))
        print(f"| {name} | " + " | ".join(f"{scores[c][-1]:.4f}" for c in columns) + " |", flush=True)
    means = {column: statistics.fmean(values) for column, values in scores.items()}
    print("| **mean** | " + " | ".join(f"**{means[c]:.4f}**" for c in columns) + " |\n")
    ours = {m: means[f"ours {m}"] for m in METHODS}
    theirs = {m: means[f"crowd-kit {m}"] for m in ck}
    return ours, theirs


def random_heavy_section(ck: dict[str, Callable[..., Any]]) -> dict[str, float]:
    """Where one global smoothing constant lost to plain DS: many random answerers, 87/13 classes."""
    print(
        "## Random-heavy imbalanced crowds: 5,000 items x 5 labels, 80 workers (about 60 % answer "
        f"at random), classes 87/13, seeds {', '.join(map(str, RANDOM_HEAVY_SEEDS))}\n"
    )
    print("| seed | ours (auto smoothing) | chosen smoothing | ours (fixed smoothing 2) | crowd-kit DS |")
    print("|---|---:|---:|---:|---:|")
    scores: dict[str, list[float]] = {"auto": [], "fixed": [], "crowdkit": []}
    for seed in RANDOM_HEAVY_SEEDS:
        data, truth = generate(5_000, 5, 80, 2, seed, mix=(0.87, 0.13), random_share=0.6)
        model = DawidSkene().fit(data)
        scores["auto"].append(
            accuracy(dict(zip(model.items_.tolist(), model.labels_.tolist(), strict=True)), truth)
        )
        scores["fixed"].append(accuracy(DawidSkene(smoothing=2.0).fit_predict(data), truth))
        scores["crowdkit"].append(accuracy(crowdkit_predict(ck["ds"], data), truth))
        print(
            f"| {seed} | {scores['auto'][-1]:.4f} | {model.smoothing_:g} | {scores['fixed'][-1]:.4f} | "
            f"{scores['crowdkit'][-1]:.4f} |",
            flush=True,
        )
    means = {name: statistics.fmean(values) for name, values in scores.items()}
    print(
        f"| **mean** | **{means['auto']:.4f}** | | **{means['fixed']:.4f}** | **{means['crowdkit']:.4f}** |\n"
    )
    return means


def main() -> int:
    ck = crowdkit_models()
    speedups = speed_section(ck)
    ours, theirs = accuracy_section(ck)
    heavy = random_heavy_section(ck)
    mean_accuracy = ours.get(DEFAULT_METHOD, float("nan"))
    best = max(theirs.values(), default=float("nan"))
    if theirs:
        best_name = max(theirs, key=lambda m: theirs[m])
        summary = f"Default `{DEFAULT_METHOD}`: mean {mean_accuracy:.4f}"
        print(f"{summary}; crowd-kit's best `{best_name}`: {best:.4f}.\n")
    print(
        f"RESULT ds_speedup={speedups['ds']:.1f} glad_speedup={speedups['glad']:.1f} "
        f"mace_speedup={speedups['mace']:.1f} mean_accuracy={mean_accuracy:.4f} "
        f"crowdkit_best_mean_accuracy={best:.4f} random_heavy_accuracy={heavy['auto']:.4f} "
        f"random_heavy_fixed_smoothing={heavy['fixed']:.4f} random_heavy_crowdkit_ds={heavy['crowdkit']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
