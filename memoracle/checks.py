"""The default campaign: every check memoracle can run, as one registry.

``memoracle check`` runs them all and prints a table (or JSON). Each check returns how
many things it checked and whether all held; a failing check returns a report a person
can act on, including how to reproduce it. Later systems add their checks to
:data:`CHECKS`.
"""

from __future__ import annotations

import time
from typing import Callable

from memoracle.check_types import Check, CheckResult, Outcome
from memoracle.mmu_check import mmu_campaign
from memoracle.persistency_check import campaign
from memoracle.scm_mutants import SCM_MUTANTS
from spec.persistency import PersistMode


PERSISTENCY_PROGRAMS = 150


def _persistency(mode: PersistMode) -> Callable[[int], Outcome]:
    def run(seed: int) -> Outcome:
        mismatch = campaign(seed, PERSISTENCY_PROGRAMS, mode)
        if mismatch is None:
            return Outcome(True, PERSISTENCY_PROGRAMS)
        return Outcome(
            False,
            PERSISTENCY_PROGRAMS,
            mismatch.render() + f"\nreproduce: memoracle check --seed {seed}",
        )

    return run


def _persistency_mutants(seed: int) -> Outcome:
    survivors = [
        name
        for name, mutant in SCM_MUTANTS.items()
        if campaign(seed, 300, PersistMode.ADR, mutant) is None
    ]
    report = f"mutants not caught: {', '.join(survivors)}" if survivors else ""
    return Outcome(not survivors, len(SCM_MUTANTS), report)


MMU_STEPS = 400


def _mmu(seed: int) -> Outcome:
    report = mmu_campaign(seed, MMU_STEPS)
    if report is None:
        return Outcome(True, MMU_STEPS)
    return Outcome(False, MMU_STEPS, report + f"\nreproduce: memoracle check --seed {seed}")


UMFS_STEPS = 300


def _umfs(seed: int) -> Outcome:
    from memoracle.fs_campaign import umfs_campaign

    report = umfs_campaign(seed, UMFS_STEPS)
    return Outcome(report is None, UMFS_STEPS, report or "")


CRASH_WORKLOADS: tuple[tuple[tuple[str | int, ...], ...], ...] = (
    (("write", "/a", 4000, 200, 3),),
    (("write", "/a", 8000, 300, 4),),
    (("creat", "/b"), ("rename", "/a", "/b")),
    (("link", "/a", "/d/c"), ("unlink", "/a")),
    (("truncate", "/a", 3000), ("rmdir", "/d")),
)


def _crash(seed: int) -> Outcome:
    from memoracle.crash_campaign import SETUP
    from memoracle.crash_explorer import CrashExplorer

    explorer = CrashExplorer(image_limit=8, seed=seed, strict=True, recovery_image_limit=4)
    for ops in CRASH_WORKLOADS:
        found = explorer.explore(SETUP, ops)
        if found:
            return Outcome(False, explorer.stats.images, found[0].render())
    return Outcome(True, explorer.stats.images)


def _proofs(seed: int) -> Outcome:
    from proofs import prove_all

    results = prove_all()
    failed = [r for r in results if not r.ok]
    report = "\n".join(f"{r.name}: expected {r.expect}, got {r.status}" for r in failed)
    return Outcome(not failed, len(results), report)


CHECKS: list[Check] = [
    Check("proofs", "theorems", "every Z3 theorem proved, every mutant refuted", _proofs),
    Check(
        "machine",
        "mmu-translation",
        "MMU translations equal spec.paging.walk; invariants after every step",
        _mmu,
    ),
    Check(
        "machine",
        "persistency-adr",
        "SCM crash images equal the spec's (ADR), random programs",
        _persistency(PersistMode.ADR),
    ),
    Check(
        "machine",
        "persistency-eadr",
        "SCM crash images equal the spec's (eADR), random programs",
        _persistency(PersistMode.EADR),
    ),
    Check(
        "machine",
        "persistency-mutants",
        "every broken SCM emulator is caught by the comparison",
        _persistency_mutants,
    ),
    Check("umfs", "conformance", "UMFS agrees with the model step by step; fsck after each", _umfs),
    Check("umfs", "crash", "crash images of 5 workloads (and of their recovery) recover to allowed trees", _crash),
]

SPSC_HISTORIES = 300


def _spsc_checkers(seed: int) -> Outcome:
    from memoracle.spsc_check import checkers_agree

    report = checkers_agree(seed, SPSC_HISTORIES)
    suffix = f"\nreproduce: memoracle check --system spsc --seed {seed}"
    return Outcome(report is None, SPSC_HISTORIES, (report + suffix) if report else "")


def _spsc_explorer(seed: int) -> Outcome:
    from memoracle.spsc_check import explorer_cells

    executions, report = explorer_cells()
    return Outcome(report is None, executions, report or "")


CHECKS += [
    Check("spsc", "fast-vs-generic", "fast SPSC checker equals Wing-Gong-Lowe on mutated histories", _spsc_checkers),
    Check("spsc", "interleavings", "fences-table cells and ring mutants, explored exhaustively", _spsc_explorer),
]


from memoracle.ksm_checks import KSM_CHECKS  # noqa: E402  (after the machine's checks)
from memoracle.sphinx_checks import SPHINX_CHECKS  # noqa: E402

CHECKS += SPHINX_CHECKS + KSM_CHECKS


def run_checks(
    seed: int, only: set[str] | None = None, on_start: Callable[[Check], None] | None = None
) -> list[CheckResult]:
    """Run the registered checks (those whose system is in ``only``, if given)."""
    results = []
    for check in CHECKS:
        if only is not None and check.system not in only:
            continue
        if on_start is not None:
            on_start(check)
        started = time.perf_counter()
        try:
            outcome = check.run(seed)
        except AssertionError as error:  # an invariant broke inside the system
            outcome = Outcome(False, 0, f"invariant violated: {error}")
        results.append(
            CheckResult(
                check.system,
                check.name,
                outcome.ok,
                outcome.count,
                time.perf_counter() - started,
                outcome.report,
            )
        )
    return results
