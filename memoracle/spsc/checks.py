"""The SPSC campaign for ``memoracle check``: checkers agree, explorer catches what it must.

- :func:`checkers_agree`: seeded small histories (linearizable, with spurious answers,
  and mutated) judged by the fast checker and the generic one under both criteria; any
  disagreement is a bug in one of them.
- :func:`mpmc_agrees`: seeded small multi-producer multi-consumer histories (simulated,
  mutated) judged by the MPMC checker and the generic one; every verdict the MPMC
  checker gives must be the generic one's.
- :func:`explorer_cells`: the fences table's key cells, explored exhaustively (the
  fence-free ring under TSO is tolerant-linearizable; without the release on the tail
  publish it breaks under the weaker model; all fences make it strict everywhere), both
  rings strict under SC with capacity 2 and counters wrapping past 2**64, and every ring
  mutant caught under SC on that workload (index masking and wrap-around need it).
- :func:`memoracle.spsc.direct_check.direct_campaign`: the ring's direct calls
  (``try_push``/``try_pop``) of both variants, in DRAM (fast path) and in the SCM (the
  programs), capacities 1-8, counters from 0 and wrapping, against the bounded-queue
  spec; the refused constructions; every direct-path mutant caught.
"""

from __future__ import annotations

import random
from dataclasses import replace

from impl.cpu_emu import Model
from memoracle.check_types import Check, Outcome
from impl.spsc import ALL_FENCES, Fences
from memoracle.spsc.interleave import Scenario, explore
from memoracle.history.generate import MPMC_MUTATIONS, random_mpmc_history
from memoracle.spsc.histories import MUTATIONS, mutate, simulated_history
from memoracle.spsc.mutants import RING_MUTANTS
from spec.history import History
from spec.linearizability import check_linearizable
from spec.mpmc_fast import check_mpmc
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


def mpmc_agrees(seed: int, histories: int) -> str | None:
    """``None`` if the MPMC checker agrees with the generic one wherever it decides."""
    rng = random.Random(seed)
    names = sorted(MPMC_MUTATIONS)
    for n in range(histories):
        ops = random_mpmc_history(rng)
        mutation = rng.choice([None, *names])
        if mutation is not None:
            ops = MPMC_MUTATIONS[mutation](ops, rng)
        capacity = rng.choice([1, 2, 3, 100])
        history = History.from_trusted_operations(ops, capacity)
        for criterion in Criterion:
            fast = check_mpmc(history, criterion)
            if not fast.decided:
                continue
            generic = check_linearizable(ops, QueueSpec(capacity, criterion)).ok
            if fast.ok != generic:
                return (f"history {n}: MPMC checker says {fast.ok}, generic says {generic} ({criterion.value}, "
                        f"capacity {capacity}, mutated by {mutation}): {[op.describe() for op in ops]}")
    return None


def _cell(scenario: Scenario) -> Scenario:
    """``scenario`` on the fences table's workload (capacity 1, two pushes, two pops:
    exhaustive under TSO and the weaker model in seconds); the counters still start
    near 2**64."""
    return replace(scenario, capacity=1, pushes=2, pops=2)


def _full_at_wrap(scenario: Scenario) -> Scenario:
    """``scenario`` (capacity 2, counters from 2**64 - 2) with three pushes and three
    pops: the ring is full as ``tail`` wraps past 2**64."""
    return replace(scenario, pushes=3, pops=3)


def explorer_cells() -> tuple[int, str | None]:
    """(executions run, ``None`` or what went wrong). The fences table's key cells on
    its workload; both rings strict under SC on the explorer's default workload
    with one more push and pop (capacity 2, full as the counters wrap past 2**64 — store
    buffers make that one too large to exhaust in a check); every ring mutant caught
    there."""
    runs = 0
    expectations = [
        (_cell(Scenario(Model.TSO)), Criterion.TOLERANT, True),
        (_cell(Scenario(Model.TSO)), Criterion.STRICT, False),
        (_cell(Scenario(Model.WEAK, fences=Fences.of(set(Fences.names()) - {"producer_release_tail"}))),
         Criterion.TOLERANT, False),
        (_cell(Scenario(Model.WEAK, fences=ALL_FENCES)), Criterion.STRICT, True),
        (_cell(Scenario(Model.TSO, variant="cached", fences=ALL_FENCES)), Criterion.STRICT, True),
        (_full_at_wrap(Scenario(Model.SC)), Criterion.STRICT, True),
        (_full_at_wrap(Scenario(Model.SC, variant="cached")), Criterion.STRICT, True),
    ]
    expectations += [
        (_full_at_wrap(Scenario(model, ring=ring)), Criterion.TOLERANT, False) for ring, model in RING_MUTANTS.values()
    ]
    for scenario, criterion, expected in expectations:
        result = explore(scenario, criterion)
        runs += result.executions
        if result.ok != expected:
            detail = result.violation.render() if result.violation else "no violation found"
            return runs, f"{scenario.describe()} {criterion.value}: expected ok={expected}\n{detail}"
    return runs, None


#: Histories per seed, and seeds per ``memoracle check`` (300 histories in all, each).
SPSC_HISTORIES = 100
MPMC_HISTORIES = 100
HISTORY_SEEDS = 3


def _spsc_checkers(seed: int) -> Outcome:
    report = checkers_agree(seed, SPSC_HISTORIES)
    return Outcome(report is None, SPSC_HISTORIES, f"{report}\n(histories of seed {seed})" if report else "")


def _mpmc_checkers(seed: int) -> Outcome:
    report = mpmc_agrees(seed, MPMC_HISTORIES)
    return Outcome(report is None, MPMC_HISTORIES, f"{report}\n(histories of seed {seed})" if report else "")


def _spsc_explorer(seed: int) -> Outcome:
    executions, report = explorer_cells()
    return Outcome(report is None, executions, report or "")


#: Calls per ring (variant × place × capacity × start) of the direct check.
DIRECT_STEPS = 60


def _spsc_direct(seed: int) -> Outcome:
    from memoracle.spsc.direct_check import DIRECT_MUTANTS, direct_campaign

    calls, report = direct_campaign(seed, DIRECT_STEPS)
    if report is not None:
        return Outcome(False, calls, report + f"\n(reproduce: memoracle check --system spsc --seed {seed})")
    survivors = [name for name, ring in DIRECT_MUTANTS.items() if direct_campaign(seed, DIRECT_STEPS, ring)[1] is None]
    return Outcome(not survivors, calls, f"direct mutants not caught: {', '.join(survivors)}" if survivors else "")


SPSC_CHECKS: list[Check] = [
    Check("spsc", "fast-vs-generic", "fast SPSC checker equals Wing-Gong-Lowe on mutated histories", _spsc_checkers,
          HISTORY_SEEDS),
    Check("spsc", "mpmc-vs-generic", "MPMC queue checker equals Wing-Gong-Lowe where it decides", _mpmc_checkers,
          HISTORY_SEEDS),
    Check("spsc", "interleavings", "fences-table cells and ring mutants, explored exhaustively", _spsc_explorer),
    Check("spsc", "direct", "try_push/try_pop of both variants, in DRAM and SCM, equal the bounded queue", _spsc_direct),
]
