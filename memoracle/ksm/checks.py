"""ksm's checks in the default campaign (``memoracle check --system ksm``).

- ``conformance``: seeded random operation sequences (:func:`memoracle.ksm.conformance.random_ops`)
  on the implementation (:class:`impl.ksm.Ksm`) against the spec, every step checked
  (views, invariants, counters against the items, the first scan, completeness once
  quiet, the exact prediction once settled, the host cache).
- ``mutants``: every broken implementation of :mod:`memoracle.ksm.mutants` must be caught
  by the same campaign on one of :data:`MUTANT_SEEDS` seeds (the campaign stops at the
  first seed that catches it).
- ``real_data``: a small capture of real interpreters' anonymous pages
  (:func:`memoracle.ksm.corpus.capture`, two processes, their first 150 present pages)
  replayed through the implementation with and without lookahead and through the model
  (:func:`memoracle.ksm.study.study_corpus`): contents intact, the same merges with
  lookahead, the ideal sharing reached, the model's prediction met. The corpus is a
  fresh capture, so the pages differ from run to run; what is checked holds for every
  corpus. Capture needs Linux's ``/proc`` (``pagemap`` and ``mem`` of the children);
  where it cannot run, the check fails with a report that says why (a check that
  could not look has not checked anything).
- ``live``: registered only where the kernel allows it (KSM present, its knobs
  writable): a few of the kernel selftests' scenarios and one seeded campaign sequence
  on the running kernel, the implementation and the model, every counter, every
  process's counters and every view compared at every point
  (:func:`memoracle.ksm.live_check.run_live`).
"""

from __future__ import annotations

from typing import Callable

from memoracle.check_types import Check, Outcome
from spec.ksm_api import KsmSystem

#: Sequences per run and operations per sequence of the conformance check.
CONFORMANCE_SEQUENCES = 40
CONFORMANCE_STEPS = 80
#: Seeds tried per mutant (it stops at the first that catches it: most mutants are caught
#: by one seed in two or three, the weakest by one in six, so 64 leave it a chance below
#: one in 100,000 whatever the base seed), and operations per sequence.
MUTANT_SEEDS = 64
MUTANT_STEPS = 60
#: The real-data capture: processes and present pages kept per process.
REAL_DATA_PROCESSES = 2
REAL_DATA_PAGES = 150
#: Seconds the capture waits for the children to be ready.
REAL_DATA_TIMEOUT = 30.0


def _implementation() -> Callable[[], KsmSystem]:
    """The implementation the conformance check holds to the spec (tests replace it)."""
    from impl.ksm import Ksm

    return Ksm


def _conformance(seed: int) -> Outcome:
    from memoracle.ksm.conformance import ksm_campaign

    factory = _implementation()
    for shard in range(CONFORMANCE_SEQUENCES):
        report = ksm_campaign(seed * CONFORMANCE_SEQUENCES + shard, CONFORMANCE_STEPS, factory)
        if report is not None:
            return Outcome(False, CONFORMANCE_SEQUENCES * CONFORMANCE_STEPS, report + f"\n(check seed {seed}, shard {shard})")
    return Outcome(True, CONFORMANCE_SEQUENCES * CONFORMANCE_STEPS)


def mutant_survivors(seed: int, seeds: int = MUTANT_SEEDS, steps: int = MUTANT_STEPS) -> list[str]:
    """The names of the mutants in :mod:`memoracle.ksm.mutants` that the campaign misses
    on the sequences ``seed * seeds`` .. ``seed * seeds + seeds - 1``."""
    from memoracle.ksm.conformance import ksm_campaign
    from memoracle.ksm.mutants import KSM_MUTANTS

    survivors = []
    for name, factory in KSM_MUTANTS.items():
        if all(ksm_campaign(seed * seeds + k, steps, factory) is None for k in range(seeds)):
            survivors.append(name)
    return survivors


def _mutants(seed: int) -> Outcome:
    from memoracle.ksm.mutants import KSM_MUTANTS

    survivors = mutant_survivors(seed)
    report = f"mutants not caught: {', '.join(survivors)}" if survivors else ""
    return Outcome(not survivors, len(KSM_MUTANTS), report)


def _real_data(seed: int) -> Outcome:
    """Capture, then study (see the module docstring); ``seed`` is not used (the data
    is whatever the interpreters hold)."""
    from memoracle.ksm.corpus import CaptureError, capture
    from memoracle.ksm.study import study_corpus

    try:
        corpus, _ = capture(REAL_DATA_PROCESSES, max_pages=REAL_DATA_PAGES, timeout=REAL_DATA_TIMEOUT)
    except (CaptureError, OSError) as error:
        return Outcome(False, 0, f"real data: cannot capture pages of live processes here: {error}")
    report = study_corpus(corpus)
    if report.ok:
        return Outcome(True, corpus.pages)
    return Outcome(False, corpus.pages, "real data: " + "; ".join(report.problems))


#: The live check: the kernel selftests' scenarios and a short seeded campaign.
LIVE_SELFTESTS = ("merge_ten_pages", "max_page_sharing_13_of_4", "unmerge", "prctl_off_without_on",
                  "drop_from_ksmd_list", "zero_pages_map_the_zero_page")  # fmt: skip
LIVE_CAMPAIGN_STEPS = 40


def _live(seed: int) -> Outcome:
    """The running kernel's KSM against the implementation and the model
    (:mod:`memoracle.ksm.live_check`): a few of the kernel selftests' scenarios and one
    campaign sequence of seed ``seed``, every point compared."""
    from memoracle.ksm.live import LiveError
    from memoracle.ksm.live_check import run_live
    from memoracle.ksm.live_scenarios import SELFTESTS, live_ops
    from memoracle.ksm.live_sysfs import LiveBusy, LiveUnavailable

    plan = [(name, SELFTESTS[name]) for name in LIVE_SELFTESTS] + [(f"campaign seed {seed}", live_ops(seed, LIVE_CAMPAIGN_STEPS))]
    points = 0
    for name, ops in plan:
        try:
            result = run_live(name, ops)
        except (LiveUnavailable, LiveBusy, LiveError) as error:
            return Outcome(False, points, f"live: {name}: {error}")
        points += result.points
        if result.violations:
            first = result.violations[0]
            return Outcome(False, points, f"live: {name}, step {first.step} {first.op}: {first.message}\n"
                                          f"reproduce: memoracle ksm live --seed {seed} --steps {LIVE_CAMPAIGN_STEPS} --sequences 1")  # fmt: skip
    return Outcome(True, points)


def live_check_available() -> bool:
    """Whether this machine's kernel lets ``memoracle check`` drive its KSM (it has KSM
    and this process may write its knobs)."""
    from memoracle.ksm.live_sysfs import kernel_availability

    return kernel_availability() is None


#: The ksm checks, in the order ``memoracle check`` runs them; ``live`` only where the
#: kernel allows it (:func:`live_check_available`).
KSM_CHECKS: list[Check] = [
    Check("ksm", "conformance", "impl vs spec: views, counters, completeness", _conformance),
    Check("ksm", "mutants", "every broken ksmd is caught", _mutants),
    Check("ksm", "real_data", "real interpreters' pages merged as the spec says", _real_data),
]
if live_check_available():
    KSM_CHECKS.append(Check("ksm", "live", "the running kernel's KSM vs impl vs spec, every point", _live))
