"""The lazy crash explorer against brute-force enumeration, on workloads small enough.

:func:`differential` runs one workload both ways:

- **lazily** (:class:`~memoracle.umfs.lazy_explorer.LazyCrashExplorer`, recording every
  class it decides: the bytes it read from undecided units, its size, its outcome);
- **by enumeration**: at the same crash points, every image
  :meth:`~impl.scm_emu.ScmEmu.crash_images` allows (no cap) is mounted, checked by fsck
  and observed; with ``recovery_crashes``, the recovery of every image is crashed before
  each of its fences (stores, with ``every_store``) and every image *that* crash allows
  is recovered again.

and checks, at every crash point of both levels, that the classes are exactly a
partition of the enumerated images: every image lies in exactly one class (it agrees with
the bytes that class read), a class holds as many images as its size says, the crash
point allows as many images as were enumerated, and every image recovers to the outcome
(tree or error) of its class. Equal outcomes per image make equal sets of observed trees
and equal violations per crash point. One level down, a lazy recovery crash point stands
for every first-level image whose recovery read the same bytes up to it: its images must
be exactly the union of what enumeration finds for those images.

It is meant for tests and for the ``crash.lazy_vs_enumeration_speedup`` figure:
enumeration is exponential, so :class:`TooLarge` is raised past ``max_images`` images
at one crash point.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Sequence

from impl.mmu_emu import Machine
from impl.scm_emu import PersistEvent, ScmEmu
from impl.scm_lazy import LazyImage
from memoracle.umfs.crash_explorer import DRAM_BYTES, SCM_BYTES, Variant
from memoracle.umfs.crash_stats import tree_digest
from memoracle.umfs.lazy_explorer import Leaf, LazyCrashExplorer, PointRecord, recover_observe
from spec.crash_recovery import Driver, Op, allowed_after_crash, model_trees, run_op
from spec.persistency import PersistMode
from spec.umfs_model import Snapshot

#: Enumerating more images than this at one crash point is refused (:class:`TooLarge`).
MAX_IMAGES = 20_000


class TooLarge(Exception):
    """A crash point allows more images than the enumeration is allowed to mount."""


@dataclass
class DifferentialReport:
    """The comparison of one workload: the figures of both ways and every disagreement
    (empty when the lazy explorer and enumeration agree)."""

    ops: tuple[Op, ...]
    crash_points: int = 0
    recovery_crash_points: int = 0
    images: int = 0  #: first-level images enumerated
    recovery_images: int = 0  #: second-level images enumerated (over every first-level image)
    classes: int = 0  #: first-level classes the lazy explorer decided
    recovery_classes: int = 0
    lazy_violations: int = 0  #: classes (both levels) that recover to a tree not allowed
    enumerated_violations: int = 0  #: enumerated images (both levels) that do
    lazy_seconds: float = 0.0
    enumeration_seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        """Whether both ways decided the same thing everywhere."""
        return not self.mismatches


def _outcome(variant: Variant, machine: Machine, blob: bytes, allowed: Sequence[Snapshot]) -> tuple[str, bool]:
    """What recovery makes of ``blob`` (a tree digest, or the error) and whether it is allowed."""
    machine.scm.reboot(blob)
    tree, error = recover_observe(variant, machine)
    if tree is None:
        return f"error: {error}", False
    return tree_digest(tree), tree in allowed


def _homes(blob: bytes, leaves: Sequence[Leaf]) -> list[int]:
    """The classes whose every read byte ``blob`` holds."""
    return [i for i, leaf in enumerate(leaves) if all(blob[u : u + 8] == v for u, v in leaf.reads)]


class _Lazy:
    """A deferred outcome (computed once, only if the image is new to its tally)."""

    def __init__(self, variant: Variant, machine: Machine, blob: bytes, allowed: Sequence[Snapshot]) -> None:
        self.variant, self.machine, self.blob, self.allowed = variant, machine, blob, allowed
        self.value: tuple[str, bool] | None = None

    def __call__(self) -> tuple[str, bool]:
        if self.value is None:
            self.value = _outcome(self.variant, self.machine, self.blob, self.allowed)
        return self.value


class _Tally:
    """Enumerated images of one (lazy) crash point: their distinct digests and, per class,
    how many fall in it; disagreements go to ``problems``."""

    def __init__(self, where: str, leaves: Sequence[Leaf], problems: list[str]) -> None:
        self.where = where
        self.leaves = leaves
        self.problems = problems
        self.seen: set[bytes] = set()
        self.members = [0] * len(leaves)
        #: Enumerated images that recover to a tree not allowed (or fail to).
        self.violations = 0

    def add(self, blob: bytes, outcome_of: _Lazy) -> None:
        digest = hashlib.blake2b(blob, digest_size=16).digest()
        if digest in self.seen:
            return
        self.seen.add(digest)
        got, ok = outcome_of()
        self.violations += not ok
        homes = _homes(blob, self.leaves)
        if len(homes) != 1:
            self.problems.append(f"{self.where}: an allowed image lies in {len(homes)} classes")
            return
        self.members[homes[0]] += 1
        want = self.leaves[homes[0]].outcome
        if got != want:
            self.problems.append(f"{self.where}: an image recovers to {got[:60]}, its class to {want[:60]}")

    def close(self, allowed: int) -> None:
        if len(self.seen) != allowed:
            self.problems.append(f"{self.where}: {len(self.seen)} images enumerated, the lazy explorer counted {allowed}")
        for leaf, members in zip(self.leaves, self.members):
            if members != leaf.weight:
                self.problems.append(f"{self.where}: a class of size {leaf.weight} holds {members} enumerated images")
                break


def _check_size(
    setup: Sequence[Op], ops: Sequence[Op], variant: Variant, mode: PersistMode, every_store: bool, max_images: int
) -> None:
    """Raise :class:`TooLarge` before any work if a crash point of the workload allows
    more than ``max_images`` images (counted, not enumerated)."""
    machine = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))
    fs = variant.mkfs(machine)
    driver = Driver(fs.spawn())
    for op in setup:
        run_op(fs, driver, op)

    def hook(event: PersistEvent) -> None:
        if event.kind == "sfence" or (every_store and event.kind in ("store", "ntstore")):
            if machine.scm.count_images() > max_images:
                raise TooLarge(f"a crash point of {ops} allows more than {max_images} images")

    machine.scm.add_hook(hook)
    try:
        for op in ops:
            run_op(fs, driver, op)
    finally:
        machine.scm.remove_hook(hook)


def differential(
    setup: Sequence[Op],
    ops: Sequence[Op],
    *,
    variant: Variant | None = None,
    mode: PersistMode = PersistMode.ADR,
    every_store: bool = False,
    recovery_crashes: bool = False,
    lazy: type[LazyImage] = LazyImage,
    max_images: int = MAX_IMAGES,
) -> DifferentialReport:
    """Run ``ops`` (after ``setup``) lazily and by enumeration; compare (module docstring)."""
    variant = variant or Variant()
    report = DifferentialReport(tuple(ops))
    _check_size(setup, ops, variant, mode, every_store, max_images)
    started = time.perf_counter()
    explorer = LazyCrashExplorer(
        variant, mode=mode, every_store=every_store, recovery_crashes=recovery_crashes,
        stop_at_first=False, lazy=lazy, record=True, max_classes=max_images,
    )  # fmt: skip
    explorer.explore(setup, ops)
    report.lazy_seconds = time.perf_counter() - started
    if explorer.stats.sampled_points:  # more classes than images may be enumerated
        raise TooLarge(f"a crash point has more than {max_images} classes, so more images")
    records = explorer.records
    report.classes = sum(len(r.leaves) for r in records)
    report.recovery_classes = sum(len(leaves) for r in records for _, leaves in r.recovery.values())
    report.lazy_violations = sum(not leaf.ok for r in records for leaf in r.leaves) + sum(
        not leaf.ok for r in records for _, leaves in r.recovery.values() for leaf in leaves
    )
    trees = model_trees(setup, ops)

    started = time.perf_counter()
    checker = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))
    recovering = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))
    machine = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))
    fs = variant.mkfs(machine)
    driver = Driver(fs.spawn())
    for op in setup:
        run_op(fs, driver, op)
    scm = machine.scm
    points: list[int] = []

    def crashes(event: PersistEvent) -> bool:
        return event.kind == "sfence" or (every_store and event.kind in ("store", "ntstore"))

    def crash_here() -> None:
        index = len(points)
        points.append(index)
        if index >= len(records):
            report.mismatches.append(f"crash point {index}: enumeration reached it, the lazy explorer did not")
            return
        record = records[index]
        where = f"crash point {index} ({record.point.render().splitlines()[0]})"
        images = scm.crash_images(limit=max_images + 1)
        if len(images) > max_images:
            raise TooLarge(f"{where}: more than {max_images} images")
        report.images += len(images)
        allowed = allowed_after_crash(trees, record.point.op_index)
        tally = _Tally(where, record.leaves, report.mismatches)
        second: dict[tuple[tuple[tuple[int, bytes], ...], int], _Tally] = {}
        for image in images:
            blob = scm.image_bytes(image)
            tally.add(blob, _Lazy(variant, checker, blob, allowed))
            if recovery_crashes:
                _crash_recovery(blob, record, where, second, allowed)
        tally.close(record.allowed)
        report.enumerated_violations += tally.violations
        for key, sub in second.items():
            sub.close(record.recovery[key][0])
            report.enumerated_violations += sub.violations
        unseen = set(record.recovery) - set(second)
        if unseen:
            report.mismatches.append(f"{where}: {len(unseen)} lazy recovery crash points no image reached")

    def _crash_recovery(
        blob: bytes,
        record: PointRecord,
        where: str,
        second: dict[tuple[tuple[tuple[int, bytes], ...], int], _Tally],
        allowed: Sequence[Snapshot],
    ) -> None:
        rscm = recovering.scm
        rscm.reboot(blob)
        events = {"n": 0}

        def hook(event: PersistEvent) -> None:
            if not crashes(event):
                return
            index = events["n"]
            events["n"] += 1
            report.recovery_crash_points += 1
            keys = [
                key for key in record.recovery
                if key[1] == index and all(blob[u : u + 8] == v for u, v in key[0])
            ]  # fmt: skip
            here = f"{where}, recovery crash point {index}"
            if len(keys) != 1:
                report.mismatches.append(f"{here}: the image lies in {len(keys)} lazy recovery crash points")
                return
            key = keys[0]
            sub = second.get(key)
            if sub is None:
                sub = second[key] = _Tally(here, record.recovery[key][1], report.mismatches)
            images = rscm.crash_images(limit=max_images + 1)
            if len(images) > max_images:
                raise TooLarge(f"{here}: more than {max_images} images")
            report.recovery_images += len(images)
            for image in images:
                again = rscm.image_bytes(image)
                sub.add(again, _Lazy(variant, checker, again, allowed))

        rscm.add_hook(hook)
        try:
            variant.mount(recovering)
        except Exception:  # noqa: BLE001 - the first recovery's failure is compared above
            pass
        finally:
            rscm.remove_hook(hook)

    def hook(event: PersistEvent) -> None:
        if crashes(event):
            crash_here()

    scm.add_hook(hook)
    try:
        for op in ops:
            run_op(fs, driver, op)
    finally:
        scm.remove_hook(hook)
    crash_here()
    report.crash_points = len(points)
    if len(points) != len(records):
        report.mismatches.append(f"{len(points)} crash points enumerated, {len(records)} explored lazily")
    report.enumeration_seconds = time.perf_counter() - started
    return report
