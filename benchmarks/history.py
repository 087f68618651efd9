"""The history figures: multi-producer multi-consumer queue histories.

- ``history.mpmc_check_100k_seconds``: the MPMC checker (:func:`spec.mpmc_fast.check_mpmc`,
  strict) on a 100,000-operation history of 8 producers and 8 consumers (unbounded queue,
  random overlapping intervals, :func:`memoracle.history.generate.mpmc_history`), in
  memory. ``--quick``: 10k ops under its own name.
- ``history.mpmc_check_100_seconds``: 100 operations of 8 + 8 threads; baseline: the
  generic Wing–Gong–Lowe search on the same history, same run; ratio = fast ÷ generic.
- ``history.mpmc_generic_200_states``: states the generic search memoizes on the first
  200 operations of such a history before a budget of 1,000,000 states or 20 s runs out
  (it does not decide: the search is exponential in the 16 threads' concurrency).
"""

from __future__ import annotations

import gc
import time
from typing import Callable

from benchmarks.common import Figure
from memoracle.history.generate import mpmc_history
from spec.linearizability import Budget, check_linearizable
from spec.mpmc_fast import check_mpmc
from spec.spsc_model import QueueSpec


def _seconds(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def mpmc_figures(quick: bool) -> list[Figure]:
    """The MPMC checker at scale, and beside the generic search where that can finish."""
    size, label = (10_000, "10k") if quick else (100_000, "100k")
    figures: list[Figure] = []
    history = mpmc_history(1, size, 8, 8)
    assert check_mpmc(history).ok
    figures.append({"name": f"history.mpmc_check_{label}_seconds", "value": _seconds(lambda: check_mpmc(history), 3),
                    "unit": "s"})
    small = mpmc_history(3, 100, 8, 8)
    ops = small.operations()
    assert check_mpmc(small).ok and check_linearizable(ops, QueueSpec(small.capacity)).ok
    fast = _seconds(lambda: check_mpmc(small), 5)
    generic = _seconds(lambda: check_linearizable(ops, QueueSpec(small.capacity)), 3)
    figures.append({"name": "history.mpmc_check_100_seconds", "value": fast, "unit": "s", "baseline": generic,
                    "ratio": fast / generic})
    prefix = mpmc_history(1, 200, 8, 8)
    result = check_linearizable(prefix.operations(), QueueSpec(prefix.capacity), budget=Budget(1_000_000, 20.0))
    figures.append({"name": "history.mpmc_generic_200_states", "value": float(result.states), "unit": "states"})
    return figures


def history_figures(quick: bool) -> list[Figure]:
    """Every history figure."""
    return mpmc_figures(quick)
