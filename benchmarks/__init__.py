"""Measured comparisons, printed as ratios against baselines measured in the same run.

Each module contributes figures named ``system.figure`` (see ``benchmarks/README.md``);
:func:`run_benchmarks` gathers them for ``memoracle bench``. Timings are the best of
several repetitions (``timeit``), which is the least noisy estimate of the cost of code
on a shared machine. No test ever asserts a time.
"""

from __future__ import annotations

from benchmarks.common import Figure
from benchmarks.crash import crash_figures
from benchmarks.machine import machine_figures
from benchmarks.spsc import spsc_figures
from benchmarks.umfs import umfs_figures


def run_benchmarks(quick: bool = False) -> list[Figure]:
    """Every figure, in a stable order."""
    return [*machine_figures(quick), *umfs_figures(quick), *spsc_figures(quick), *crash_figures(quick)]


__all__ = ["Figure", "run_benchmarks"]
