"""UMFS's checks in the default campaign (``memoracle check --system umfs``).

- ``conformance``: a seeded step sequence on UMFS and on the model side by side
  (:mod:`memoracle.umfs.campaign`), fsck after every step;
- ``crash``: a few workloads crashed everywhere the persistency model allows, and again
  inside their recovery, every allowed image covered in classes
  (:class:`memoracle.umfs.lazy_explorer.LazyCrashExplorer`); the count is the classes decided;
- ``corruption``: images with damaged metadata are read as a program would: each is
  detected or harmless (:mod:`memoracle.umfs.corruption`).
"""

from __future__ import annotations

from memoracle.check_types import Check, Outcome

#: Steps per seed, and seeds per ``memoracle check`` (300 steps in all).
UMFS_STEPS = 150
UMFS_SEEDS = 2


def _umfs(seed: int) -> Outcome:
    from memoracle.umfs.campaign import umfs_campaign

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
    from memoracle.umfs.crash_campaign import SETUP
    from memoracle.umfs.lazy_explorer import LazyCrashExplorer

    explorer = LazyCrashExplorer()  # exhaustive: the seed changes nothing
    stats = explorer.stats
    for ops in CRASH_WORKLOADS:
        found = explorer.explore(SETUP, ops)
        if found:
            return Outcome(False, stats.classes + stats.recovery_classes, found[0].render())
    if not stats.exhaustive:
        return Outcome(False, stats.classes + stats.recovery_classes, f"not exhaustive: {stats.summary()}")
    return Outcome(True, stats.classes + stats.recovery_classes)


def _corruption(seed: int) -> Outcome:
    from memoracle.umfs.corruption import run_campaign

    report = run_campaign(seed, random_meta=150, random_any=50, per_field=0)  # the tests target every field
    first = report.violations[0][1] if report.violations else None
    detail = "" if first is None else f"{first.verdict}: trial {first.trial.index} {first.trial.what}: {first.detail}"
    return Outcome(report.ok, report.trials, detail)


UMFS_CHECKS: list[Check] = [
    Check("umfs", "conformance", "UMFS agrees with the model step by step; fsck after each", _umfs, UMFS_SEEDS),
    Check("umfs", "crash", "every crash image of 5 workloads (and of their recovery) recovers to an allowed tree", _crash),
    Check("umfs", "corruption", "damaged metadata is detected or harmless, never read wrong", _corruption),
]
