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
from memoracle.ksm.checks import KSM_CHECKS
from memoracle.machine.checks import MACHINE_CHECKS
from memoracle.sphinx.checks import SPHINX_CHECKS
from memoracle.spsc.checks import SPSC_CHECKS
from memoracle.umfs.checks import UMFS_CHECKS


def _proofs(seed: int) -> Outcome:
    from proofs import prove_all

    results = prove_all()
    failed = [r for r in results if not r.ok]
    report = "\n".join(f"{r.name}: expected {r.expect}, got {r.status}" for r in failed)
    return Outcome(not failed, len(results), report)


#: Every check, in the order ``memoracle check`` runs them: the proofs, the machine, then
#: the systems built on it.
CHECKS: list[Check] = [
    Check("proofs", "theorems", "every Z3 theorem proved, every mutant refuted", _proofs),
]
CHECKS += MACHINE_CHECKS + UMFS_CHECKS + SPSC_CHECKS + SPHINX_CHECKS + KSM_CHECKS


def run_checks(
    seed: int,
    only: set[str] | None = None,
    on_start: Callable[[Check], None] | None = None,
    on_done: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run the registered checks (those whose system is in ``only``, if given), each on
    its seeds (:meth:`Check.seeds_of` ``seed``, stopping at the first that fails);
    ``on_start`` and ``on_done`` are called around each one (for progress). A failure's
    report ends with the command that reproduces it."""
    results = []
    for check in CHECKS:
        if only is not None and check.system not in only:
            continue
        if on_start is not None:
            on_start(check)
        started = time.perf_counter()
        outcome, count = Outcome(True, 0), 0
        for each in check.seeds_of(seed):
            try:
                outcome = check.run(each)
            except AssertionError as error:  # an invariant broke inside the system
                outcome = Outcome(False, 0, f"invariant violated: {error}")
            count += outcome.count
            if not outcome.ok:
                where = f" (its seed {each} of {check.seeds_of(seed)[0]}..{check.seeds_of(seed)[-1]})" if check.seeds > 1 else ""
                report = outcome.report
                if "reproduce: memoracle check" not in report:
                    report += f"\nreproduce: memoracle check --system {check.system} --seed {seed}{where}"
                outcome = Outcome(False, count, report)
                break
        result = CheckResult(
            check.system, check.name, outcome.ok, count, time.perf_counter() - started, outcome.report
        )
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results
