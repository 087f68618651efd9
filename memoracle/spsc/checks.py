"""The SPSC campaign for ``memoracle check``: checkers agree, explorer catches what it must.

- :func:`checkers_agree`: seeded small histories (linearizable, with spurious answers,
  and mutated) judged by the fast checker and the generic one under both criteria; any
  disagreement is a bug in one of them.
- :func:`explorer_cells`: the fences table's key cells, explored exhaustively (the
  fence-free ring under TSO is tolerant-linearizable; without the release on the tail
  publish it breaks under the weaker model; all fences make it strict everywhere), and
  every ring mutant caught under SC.
"""

from __future__ import annotations

import random

from impl.cpu_emu import Model
from memoracle.check_types import Check, Outcome
from impl.spsc import ALL_FENCES, Fences
from memoracle.spsc.interleave import Scenario, explore
from memoracle.spsc.histories import MUTATIONS, mutate, simulated_history
from memoracle.spsc.mutants import RING_MUTANTS
from spec.linearizability import check_linearizable
from spec.spsc_fast import check_spsc
from spec.spsc_model import Criterion, QueueSpec


def checkers_agree(seed: int, histories: int) -> str | None:
    """``None`` if the two checkers agree on every history, else a reproducible report."""
    rng = random.Random(seed)
    names = sorted(MUTATIONS)
    for n in range(histories):
        h_seed, size, capacity = rng.randrange(2**32), rng.randrange(1, 14), rng.randint(1, 3)
        history = simulated_history(h_seed, size, capacity, spurious=rng.choice([0.0, 0.2]))
        mutation = rng.choice([None, *names])
        if mutation is not None:
            history = mutate(history, mutation, h_seed)
        for criterion in Criterion:
            fast = check_spsc(history, criterion).ok
            generic = check_linearizable(history.operations(), QueueSpec(capacity, criterion)).ok
            if fast != generic:
                return (
                    f"history {n}: fast checker says {fast}, generic says {generic} "
                    f"({criterion.value}) on simulated_history({h_seed}, {size}, {capacity}) "
                    f"mutated by {mutation}"
                )
    return None


def explorer_cells() -> tuple[int, str | None]:
    """(executions run, ``None`` or what went wrong)."""
    runs = 0
    expectations = [
        (Scenario(Model.TSO), Criterion.TOLERANT, True),
        (Scenario(Model.TSO), Criterion.STRICT, False),
        (Scenario(Model.WEAK, fences=Fences.of(set(Fences.names()) - {"producer_release_tail"})),
         Criterion.TOLERANT, False),
        (Scenario(Model.WEAK, fences=ALL_FENCES), Criterion.STRICT, True),
        (Scenario(Model.TSO, variant="cached", fences=ALL_FENCES), Criterion.STRICT, True),
    ]
    expectations += [
        (Scenario(model, ring=ring), Criterion.TOLERANT, False) for ring, model in RING_MUTANTS.values()
    ]
    for scenario, criterion, expected in expectations:
        result = explore(scenario, criterion)
        runs += result.executions
        if result.ok != expected:
            detail = result.violation.render() if result.violation else "no violation found"
            return runs, f"{scenario.describe()} {criterion.value}: expected ok={expected}\n{detail}"
    return runs, None


SPSC_HISTORIES = 300


def _spsc_checkers(seed: int) -> Outcome:
    report = checkers_agree(seed, SPSC_HISTORIES)
    suffix = f"\nreproduce: memoracle check --system spsc --seed {seed}"
    return Outcome(report is None, SPSC_HISTORIES, (report + suffix) if report else "")


def _spsc_explorer(seed: int) -> Outcome:
    executions, report = explorer_cells()
    return Outcome(report is None, executions, report or "")


SPSC_CHECKS: list[Check] = [
    Check("spsc", "fast-vs-generic", "fast SPSC checker equals Wing-Gong-Lowe on mutated histories", _spsc_checkers),
    Check("spsc", "interleavings", "fences-table cells and ring mutants, explored exhaustively", _spsc_explorer),
]
