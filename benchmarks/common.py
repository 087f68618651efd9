"""Shared timing helpers for the benchmarks."""

from __future__ import annotations

import timeit
from typing import Callable, TypedDict


class _FigureRequired(TypedDict):
    name: str
    value: float
    unit: str


class Figure(_FigureRequired, total=False):
    """One figure of ``bench-results.json``: ``baseline`` and ``ratio`` when compared."""

    baseline: float
    ratio: float


def best_seconds(action: Callable[[], object], number: int, repeat: int) -> float:
    """The best per-call time of ``action`` over ``repeat`` runs of ``number`` calls."""
    timer = timeit.Timer(action)
    return min(timer.repeat(repeat=repeat, number=number)) / number
