"""The proofs' figures: how long Z3 takes to prove every theorem and refute every mutant.

Tests check only the verdicts (proved, or refuted for a mutant); the time each check
takes is recorded here instead, because it depends on the machine and its load.

- ``proofs.all_seconds``: the sum, over every registered theorem and mutant, of its
  best solver time.
- ``proofs.slowest_seconds``: the largest of those times (one theorem). Target ≤ 10 s.
- ``proofs.<module>_seconds``: the sum over the theorems and mutants one module of
  ``proofs/`` states (``page_table``, ``ulog``, ``spsc``, ``ksm``).
- ``proofs.checks``: how many theorems and mutants were checked.

Each check runs 3 times and its best time counts (``--quick``: once). A check that
does not give its expected verdict stops the benchmark: the time of a wrong answer
means nothing.
"""

from __future__ import annotations

import proofs
from benchmarks.common import Figure


def _module(theorem: proofs.Theorem) -> str:
    """The ``proofs/`` module that states ``theorem`` (``page_table``, ``ulog``, ...)."""
    return str(getattr(theorem.check, "__module__", "proofs.other")).rsplit(".", 1)[-1]


def proof_figures(quick: bool) -> list[Figure]:
    """Best solver time of every theorem and mutant, summed overall and per module."""
    repeat = 1 if quick else 3
    best: dict[str, float] = {}
    modules: dict[str, float] = {}
    for theorem in proofs.THEOREMS:
        times = []
        for _ in range(repeat):
            result = theorem.prove()
            if not result.ok:
                raise RuntimeError(f"{result.name}: {result.status}, expected {result.expect}")
            times.append(result.seconds)
        best[theorem.name] = min(times)
        module = _module(theorem)
        modules[module] = modules.get(module, 0.0) + best[theorem.name]
    figures: list[Figure] = [
        {"name": "proofs.all_seconds", "value": sum(best.values()), "unit": "s"},
        {"name": "proofs.slowest_seconds", "value": max(best.values()), "unit": "s"},
    ]
    figures += [{"name": f"proofs.{module}_seconds", "value": seconds, "unit": "s"} for module, seconds in modules.items()]
    figures.append({"name": "proofs.checks", "value": float(len(best)), "unit": "theorems"})
    return figures
