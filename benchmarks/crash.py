"""Crash-exploration figures.

- ``crash.classes_per_second``: classes of crash images decided per second on one core
  by the lazy explorer over the one-operation campaign with recovery crashes (each class
  recovered, or answered from a cache); beside it, measured the old way in the same run,
  ``crash.images_per_second``: crash images checked per second on one core by the
  enumerating explorer (32 images per crash point) over the same campaign.
- ``crash.ops2_*``: the bounded-exhaustive campaign over every workload of up to 2
  operations, lazily, on 2 worker processes: wall ``seconds``, ``cpu_seconds`` (this
  process and its workers), ``load_average`` (the machine's 1-minute load average as the
  campaign ends, its own workers included: wall time means little without it),
  ``coverage`` (covered / allowed images; 1.0 only when exhaustive), ``allowed_images``
  (exact), ``classes``, ``crash_points``, ``states`` (distinct recovered trees),
  ``workloads``, ``violations``. ``crash.ops3_*`` likewise for 3 operations (not with
  ``--quick``, which runs the 1-operation campaign as ``ops1_*``).
- ``crash.lazy_vs_enumeration_speedup``: every one-operation workload whose crash points
  (and, with recovery crashes, those of its recoveries) allow few enough images to
  enumerate, decided both ways (:func:`memoracle.umfs.crash_differential.differential`):
  enumeration seconds over lazy seconds; ``crash.differential_workloads`` how many
  workloads, ``crash.differential_mismatches`` how many disagreements (0).
- ``crash.differential_mutants_caught_by_both``: mutants whose small witness both ways
  find violations on, with the same outcome for every image (of
  ``crash.differential_mutants``).
- ``crash.mutants_caught`` / ``crash.mutants_total``: UMFS mutants (one per bug class or
  more) the lazy explorer catches on their witness workloads.
"""

from __future__ import annotations

import os
import resource
import time

from benchmarks.common import Figure
from memoracle.umfs.crash_campaign import ALPHABET, SETUP, CampaignConfig, run_campaign


def rate_figures() -> list[Figure]:
    """Classes per second (lazy) beside images per second (enumerating), one core each."""
    lazy, _ = run_campaign(CampaignConfig(max_ops=1), jobs=1)
    eager, _ = run_campaign(CampaignConfig(max_ops=1, method="enumeration", image_limit=32), jobs=1)
    classes = (lazy.classes + lazy.recovery_classes) / lazy.seconds
    images = eager.images / eager.seconds
    return [
        {"name": "crash.images_per_second", "value": images, "unit": "images/s"},
        {"name": "crash.classes_per_second", "value": classes, "unit": "classes/s", "baseline": images, "ratio": classes / images},
    ]


def _own_cpu_seconds() -> float:
    """CPU seconds of this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def campaign_figures(ops: int) -> list[Figure]:
    """The lazy, exhaustive campaign over workloads of up to ``ops`` operations, on 2
    local worker processes of the execution layer (as ``memoracle crash umfs --jobs 2``);
    CPU seconds are this process's plus those each worker measured for its shards."""
    from memoracle.execution import execute, parse_where
    from memoracle.umfs.crash_shards import crash_campaign, merge_crash

    started, cpu_started = time.perf_counter(), _own_cpu_seconds()
    execution = execute(crash_campaign(CampaignConfig(max_ops=ops)), parse_where(2, None))
    wall = time.perf_counter() - started
    cpu = _own_cpu_seconds() - cpu_started + sum(o.cpu_seconds or 0.0 for o in execution.outcomes)
    load = os.getloadavg()[0]
    failures = execution.failures()
    if failures:
        raise RuntimeError(failures[0].render())
    stats, found, _ = merge_crash(execution.results())
    violations = len(found)
    prefix = f"crash.ops{ops}"
    return [
        {"name": f"{prefix}_seconds", "value": wall, "unit": "s"},
        {"name": f"{prefix}_cpu_seconds", "value": cpu, "unit": "s"},
        {"name": f"{prefix}_load_average", "value": load, "unit": "load"},
        {"name": f"{prefix}_coverage", "value": stats.coverage_float(), "unit": "fraction"},
        {"name": f"{prefix}_allowed_images", "value": stats.allowed_images + stats.recovery_allowed_images, "unit": "images"},
        {"name": f"{prefix}_classes", "value": stats.classes + stats.recovery_classes, "unit": "classes"},
        {"name": f"{prefix}_crash_points", "value": stats.crash_points + stats.recovery_crash_points, "unit": "crash points"},
        {"name": f"{prefix}_states", "value": len(stats.states), "unit": "states"},
        {"name": f"{prefix}_workloads", "value": stats.workloads, "unit": "workloads"},
        {"name": f"{prefix}_violations", "value": violations, "unit": "violations"},
    ]


def differential_figures(quick: bool) -> list[Figure]:
    """Lazy against enumeration on every one-operation workload small enough, and on the
    mutants' small witnesses."""
    from memoracle.umfs.crash_differential import TooLarge, differential
    from memoracle.umfs.crash_mutants import DIFFERENTIAL_WITNESSES, UMFS_MUTANTS

    lazy_seconds = enumeration_seconds = 0.0
    compared = mismatches = 0
    for recovery in (False,) if quick else (False, True):
        for op in ALPHABET:
            try:
                report = differential(SETUP, (op,), recovery_crashes=recovery, max_images=3000)
            except TooLarge:
                continue
            compared += 1
            mismatches += len(report.mismatches)
            lazy_seconds += report.lazy_seconds
            enumeration_seconds += report.enumeration_seconds
    both = 0
    witnesses = {} if quick else DIFFERENTIAL_WITNESSES
    for name, (setup, ops) in witnesses.items():
        spec = UMFS_MUTANTS[name]
        report = differential(setup, ops, variant=spec.variant, recovery_crashes=spec.recovery_crashes)
        mismatches += len(report.mismatches)
        both += report.agree and report.lazy_violations > 0 and report.enumerated_violations > 0
    figures: list[Figure] = [
        {
            "name": "crash.lazy_vs_enumeration_speedup", "value": enumeration_seconds / lazy_seconds, "unit": "x",
            "baseline": enumeration_seconds, "ratio": enumeration_seconds / lazy_seconds,
        },
        {"name": "crash.differential_workloads", "value": compared, "unit": "workloads"},
        {"name": "crash.differential_mismatches", "value": mismatches, "unit": "mismatches"},
    ]  # fmt: skip
    if witnesses:
        figures += [
            {"name": "crash.differential_mutants_caught_by_both", "value": both, "unit": "mutants"},
            {"name": "crash.differential_mutants", "value": len(witnesses), "unit": "mutants"},
        ]
    return figures


def mutant_figures() -> list[Figure]:
    """How many UMFS mutants the lazy explorer catches."""
    from memoracle.umfs.crash_mutants import mutation_table

    rows = mutation_table()
    caught = sum(1 for row in rows if row["caught_by"] != "not caught")
    return [
        {"name": "crash.mutants_caught", "value": caught, "unit": "mutants"},
        {"name": "crash.mutants_total", "value": len(rows), "unit": "mutants"},
    ]


def crash_figures(quick: bool) -> list[Figure]:
    """Every crash figure."""
    figures = [*rate_figures(), *campaign_figures(1 if quick else 2)]
    if not quick:
        figures += campaign_figures(3)
    return [*figures, *differential_figures(quick), *mutant_figures()]
