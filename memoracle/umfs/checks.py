"""UMFS's checks in the default campaign (``memoracle check --system umfs``).

- ``conformance``: a seeded step sequence on UMFS and on the model side by side
  (:mod:`memoracle.umfs.campaign`), fsck after every step;
- ``crash``: a few workloads crashed everywhere the persistency model allows, and again
  inside their recovery, every allowed image covered in classes
  (:class:`memoracle.umfs.lazy_explorer.LazyCrashExplorer`); the count is the classes decided;
- ``corruption``: images with damaged metadata are read as a program would: each is
  detected or harmless (:mod:`memoracle.umfs.corruption`): random bit flips, and every
  targeted and forged change of one field of each field class (the seed picks which).
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


#: The crash check's workloads (after the crash campaign's setup: /a of 5000 bytes, /d).
#: The last five reach what the first five do not: a directory's cached attributes (it
#: grows while open, then its last close writes them back), processes that map /a or not
#: (spawned in either order) while it shrinks, a process exiting with /a's last
#: descriptor, renames into another directory (of a file, and of a directory), and a
#: write past the end into the pages a truncate freed.
CRASH_WORKLOADS: tuple[tuple[tuple[str | int, ...], ...], ...] = (
    (("write", "/a", 4000, 200, 3),),
    (("write", "/a", 8000, 300, 4),),
    (("creat", "/b"), ("rename", "/a", "/b")),
    (("link", "/a", "/d/c"), ("unlink", "/a")),
    (("truncate", "/a", 3000), ("rmdir", "/d")),
    (("opendir", "/d"), ("link", "/a", "/d/c"), ("close", "/d")),
    (("spawn", "p2"), ("map", "p2", "/a"), ("spawn", "p3"), ("truncate", "/a", 3000), ("exit", "p2"), ("exit", "p3")),
    (("spawn", "p2"), ("open", "p2", "/a"), ("write", "/a", 4096, 5000, 4), ("close", "/a"), ("exit", "p2")),
    (("rename", "/a", "/d/a"), ("mkdir", "/e"), ("rename", "/d", "/e/d")),
    (("truncate", "/a", 0), ("write", "/a", 100, 5000, 6)),
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


#: The corruption check: random single-bit flips (in metadata, anywhere), and every
#: targeted and forged change of one field of each class (one inode's size, one entry's
#: name, the superblock's magic, …; a different field of the class on each seed).
CORRUPTION_FLIPS = (150, 50)
CORRUPTION_PER_CLASS = 1


def _corruption(seed: int) -> Outcome:
    from memoracle.umfs.corruption import run_campaign

    meta, anywhere = CORRUPTION_FLIPS
    report = run_campaign(seed, random_meta=meta, random_any=anywhere, per_field=0, per_class=CORRUPTION_PER_CLASS)
    first = report.violations[0][1] if report.violations else None
    detail = "" if first is None else f"{first.verdict}: trial {first.trial.index} {first.trial.what}: {first.detail}"
    return Outcome(report.ok, report.trials, detail)


UMFS_CHECKS: list[Check] = [
    Check("umfs", "conformance", "UMFS agrees with the model step by step; fsck after each", _umfs, UMFS_SEEDS),
    Check("umfs", "crash", f"every crash image of {len(CRASH_WORKLOADS)} workloads (and of their recovery) recovers "
          "to an allowed tree", _crash),
    Check("umfs", "corruption", "damaged metadata is detected or harmless, never read wrong", _corruption),
]
