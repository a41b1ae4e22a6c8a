"""Aggregation methods by name, for the CLI, the services and project settings."""

from __future__ import annotations

import inspect
from typing import Any

from labelmill.quality._codes import LabelAggregator
from labelmill.quality.bwa import BWA
from labelmill.quality.chooser import AutoAggregator
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.ebcc import EBCC
from labelmill.quality.glad import GLAD
from labelmill.quality.ibcc import IBCC
from labelmill.quality.mace import MACE
from labelmill.quality.majority import MajorityVote
from labelmill.quality.minimax import MinimaxEntropy, OrdinalMinimaxEntropy
from labelmill.quality.one_coin import OneCoinDawidSkene
from labelmill.quality.wawa import Wawa

METHODS: dict[str, type[LabelAggregator]] = {
    "mv": MajorityVote,
    "wawa": Wawa,
    "ds": DawidSkene,
    "one-coin": OneCoinDawidSkene,
    "glad": GLAD,
    "mace": MACE,
    "ibcc": IBCC,
    "ebcc": EBCC,
    "bwa": BWA,
    "mmce": MinimaxEntropy,
    "mmce-ordinal": OrdinalMinimaxEntropy,
    "auto": AutoAggregator,
}

#: The most accurate general method: highest mean accuracy over the eight public crowd datasets
#: in bench/quality.py (DS with its smoothing chosen from the data by held-out likelihood: 0.8465,
#: crowd-kit's best 0.8464, and ahead of plain DS when many annotators answer at random), and fast.
DEFAULT_METHOD = "ds"


def make_aggregator(
    name: str = DEFAULT_METHOD, *, random_state: int | None = None, **params: Any
) -> LabelAggregator:
    """A fresh aggregator by method name, e.g. `make_aggregator("glad", n_iter=50)`.

    `random_state` seeds the stochastic methods (MACE's restarts) and is ignored by the
    deterministic ones, so callers can ask for reproducibility without knowing which is which.
    """
    try:
        cls = METHODS[name]
    except KeyError:
        valid = ", ".join(METHODS)
        raise ValueError(f"unknown aggregation method {name!r}; valid methods: {valid}") from None
    if random_state is not None and "random_state" in inspect.signature(cls).parameters:
        params["random_state"] = random_state
    try:
        return cls(**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for aggregation method {name!r}: {error}") from None
