"""Measured comparisons, printed as ratios against baselines measured in the same run.

Each module contributes figures named ``system.figure`` (see ``benchmarks/README.md``);
:func:`run_benchmarks` gathers them for ``memoracle bench``. Timings are the best of
several repetitions (``timeit``), which is the least noisy estimate of the cost of code
on a shared machine. No test ever asserts a time.
"""

from __future__ import annotations

from typing import Callable

from benchmarks.common import Figure
from benchmarks.coverage import coverage_figures
from benchmarks.crash import crash_figures
from benchmarks.history import history_figures
from benchmarks.ksm import ksm_figures
from benchmarks.machine import machine_figures
from benchmarks.proofs import proof_figures
from benchmarks.scale import scale_figures
from benchmarks.sphinx import sphinx_figures
from benchmarks.spsc import spsc_figures
from benchmarks.umfs import umfs_figures


#: Each system's figures, in the order they are printed.
SYSTEMS: dict[str, Callable[[bool], list[Figure]]] = {
    "machine": machine_figures,
    "umfs": umfs_figures,
    "spsc": spsc_figures,
    "history": history_figures,
    "crash": crash_figures,
    "sphinx": sphinx_figures,
    "ksm": ksm_figures,
    "proofs": proof_figures,
    "scale": scale_figures,
    "coverage": coverage_figures,
}


def run_benchmarks(quick: bool = False, only: set[str] | None = None) -> list[Figure]:
    """Every figure (or only those of the systems in ``only``), in a stable order."""
    figures: list[Figure] = []
    for system, measure in SYSTEMS.items():
        if only is None or system in only:
            figures += measure(quick)
    return figures


__all__ = ["Figure", "run_benchmarks"]
