"""The lazy crash explorer: every crash image the model allows, decided in classes.

For one workload (a setup that is not crashed, then operations) the workload runs on UMFS
and the machine is stopped before every ``sfence`` (with ``every_store``, before every
store too). There, instead of enumerating the allowed images, the explorer boots a
:class:`~impl.scm_lazy.LazyImage`: every unit a pending store touches is *undecided*,
and the first read of one — by recovery, fsck or the observation of the tree, which all
read through the emulated SCM — branches over the values it may still hold. A
depth-first search (:class:`~impl.scm_lazy.ReplayChooser`) re-runs mount, fsck and the
observation from the crash point once per *leaf*; a leaf is a class of images that agree
on every byte that was read, so they all recover to the same tree, and its size is
exact. The tree must be one that ``spec.crash_recovery.allowed_after_crash`` allows.

Crashes inside recovery: while a leaf's recovery runs, the machine is stopped again
before each of *its* fences (and stores, with ``every_store``); the images a crash there
may leave — recovery's own pending stores over what the first crash left undecided —
are explored the same way on a second machine (:meth:`~impl.scm_lazy.LazyImage.second_crash`)
and recovered once more; the result must lie in the same allowed set. Leaves that share
every choice made before a recovery crash point share that crash point, so it is
explored once.

Nothing is capped unless ``max_classes`` is given (then a crash point whose search is cut
counts as *sampled* and the report says so). Caches, all keyed by what determines the
result: a crash point of a workload prefix already explored (the same operations and
fence number), and a crash state already explored (the same durable image, pending
units and allowed trees), are answered from the first exploration.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from impl.mmu_emu import Machine
from impl.scm_emu import ImageComponent, PersistEvent, ScmEmu
from impl.scm_lazy import LazyImage, LazyUnsupported, Nondeterminism, ReplayChooser, SecondCrash
from memoracle.umfs.crash_explorer import (
    DRAM_BYTES,
    SCM_BYTES,
    CrashPoint,
    Tree,
    Variant,
    Violation,
    umfs_stack,
)
from memoracle.umfs.crash_stats import Stats, tree_digest
from spec.crash_recovery import Driver, Op, allowed_after_crash, describe, model_trees, run_op
from spec.persistency import PersistMode
from spec.umfs_model import Snapshot


class ExplorerFault(Exception):
    """The explorer itself failed (not the system under test): never a finding."""


@dataclass(frozen=True)
class Leaf:
    """One decided class: the bytes read from undecided units, its size, what recovery
    made of it (a tree digest, or the error), and whether that is allowed."""

    reads: tuple[tuple[int, bytes], ...]
    weight: int
    outcome: str
    ok: bool


@dataclass
class PointRecord:
    """Everything decided at one crash point (kept when ``record`` is set, for the
    differential test): the allowed count, the leaves, and per recovery crash point
    (``(reads before it, event index)``) its allowed count and leaves."""

    point: CrashPoint
    allowed: int
    leaves: list[Leaf] = field(default_factory=list)
    recovery: dict[tuple[tuple[tuple[int, bytes], ...], int], tuple[int, list[Leaf]]] = field(default_factory=dict)


@dataclass
class _PointResult:
    """A crash point's contribution to the stats (cached and replayed for repeats)."""

    stats: Stats
    violations: list[Violation]
    record: PointRecord | None


@dataclass
class _SecondResult:
    """A recovery crash point's contribution (cached and replayed for repeats): its
    stats, its leaves (when recording) and its failures (the class's description, the
    tree or the error)."""

    stats: Stats
    leaves: list[Leaf] = field(default_factory=list)
    failures: list[tuple[list[str], Tree | None, str]] = field(default_factory=list)


def _internal(error: BaseException) -> bool:
    return isinstance(error, (ExplorerFault, Nondeterminism, LazyUnsupported))


class _ReadRecorder:
    """A watch that passes everything to a lazy image and remembers the ranges read."""

    def __init__(self, inner: LazyImage) -> None:
        self.inner = inner
        self._ranges: list[tuple[int, int]] = []

    def on_read(self, offset: int, length: int) -> None:
        self._ranges.append((offset, offset + length))
        self.inner.on_read(offset, length)

    def on_store(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.inner.on_store(offset, data)

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The ranges read, sorted and merged."""
        merged: list[tuple[int, int]] = []
        for start, end in sorted(self._ranges):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return tuple(merged)


def recover_observe(variant: Variant, machine: Machine) -> tuple[Tree | None, str]:
    """Mount the machine's image (recovery runs), fsck it and observe the tree; the tree,
    or the error that stopped it (the explorer's own faults propagate)."""
    try:
        fs = variant.mount(machine)
        fs.check_invariants()
        tree: Tree = dict(fs.observe())
    except Exception as error:  # any failure to recover is the finding
        if _internal(error):
            raise
        return None, f"{type(error).__name__}: {error}"
    return tree, ""


class LazyCrashExplorer:
    """Explores workloads on one UMFS variant, lazily (see the module docstring)."""

    def __init__(
        self,
        variant: Variant | None = None,
        *,
        mode: PersistMode = PersistMode.ADR,
        every_store: bool = False,
        recovery_crashes: bool = True,
        stop_at_first: bool = True,
        max_classes: int | None = None,
        lazy: type[LazyImage] = LazyImage,
        record: bool = False,
        check_cache: bool = True,
    ) -> None:
        self.variant = variant or Variant()
        self.mode = mode
        self.every_store = every_store
        self.recovery_crashes = recovery_crashes
        self.stop_at_first = stop_at_first
        self.max_classes = max_classes
        self.lazy = lazy
        self.record = record
        self.stats = Stats(method="lazy")
        self.violations: list[Violation] = []
        self.records: list[PointRecord] = []
        self._by_prefix: dict[tuple[object, ...], _PointResult] = {}
        self._by_state: dict[bytes, _PointResult] = {}
        self._by_recovery_state: dict[bytes, _SecondResult] = {}
        #: fsck and observation results by (contents, volatile state): the tree, the
        #: error, and the ranges they read (see :meth:`_recover`).
        self.check_cache = check_cache
        self._checked: dict[bytes, tuple[Tree | None, str, tuple[tuple[int, int], ...]]] = {}
        #: Runs answered from that cache so far (read and reset by the callers).
        self.checks_reused = 0
        self._first = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))
        self._second = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))

    # ---------------------------------------------------------------- one workload

    def explore(self, setup: Sequence[Op], ops: Sequence[Op]) -> list[Violation]:
        """Explore one workload; return its violations (also kept in ``violations``)."""
        started = time.perf_counter()
        found_before = len(self.violations)
        trees = model_trees(setup, ops)
        machine = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, self.mode))
        fs = self.variant.mkfs(machine)
        driver = Driver(fs.spawn())
        for op in setup:
            run_op(fs, driver, op)
        self.stats.workloads += 1
        state = {"op": 0, "fence": 0}
        scm = machine.scm
        unit = "store/fence" if self.every_store else "fence"

        def stopped() -> bool:
            return self.stop_at_first and len(self.violations) > found_before

        def hook(event: PersistEvent) -> None:
            if event.kind == "sfence" or (self.every_store and event.kind in ("store", "ntstore")):
                index, fence = state["op"], state["fence"]
                state["fence"] += 1
                if stopped():
                    return
                point = CrashPoint(index, describe(ops[index]), fence, fs.pm.site, umfs_stack(), unit=unit)
                prefix = (tuple(setup), tuple(ops[: index + 1]), fence)
                self._crash_here(scm, trees, point, prefix, setup, ops)

        scm.add_hook(hook)
        try:
            for index, op in enumerate(ops):
                state["op"], state["fence"] = index, 0
                run_op(fs, driver, op)
                if stopped():
                    break
        finally:
            scm.remove_hook(hook)
        if not stopped():
            end = CrashPoint(len(ops), "after the last operation", 0, "", ())
            self._crash_here(scm, trees, end, (tuple(setup), tuple(ops), "end"), setup, ops)
        self.stats.seconds += time.perf_counter() - started
        return self.violations[found_before:]

    def _crash_here(
        self,
        scm: ScmEmu,
        trees: list[Snapshot],
        point: CrashPoint,
        prefix: tuple[object, ...],
        setup: Sequence[Op],
        ops: Sequence[Op],
    ) -> None:
        result = self._by_prefix.get(prefix)
        fresh = False
        if result is None:
            allowed = allowed_after_crash(trees, point.op_index)
            components = scm.image_components()
            base = scm.durable()
            key = hashlib.blake2b(base, digest_size=16)
            key.update(repr([(c.units, c.options) for c in components]).encode())
            allowed_key = hashlib.blake2b(repr(allowed).encode(), digest_size=16).digest()
            key.update(allowed_key)
            state = key.digest()
            result = self._by_state.get(state)
            if result is None:
                result = self._explore_point(base, components, allowed, allowed_key, point, state.hex())
                self._by_state[state] = result
                fresh = True
            self._by_prefix[prefix] = result
        self.stats.merge(result.stats if fresh else replace(result.stats, runs=0, checks_reused=0))  # a repeat runs nothing
        if result.record is not None:
            self.records.append(replace(result.record, point=point))
        for violation in result.violations:  # replayed from a cache too: never lost
            # at this workload's crash point (a cached state may have been reached first elsewhere)
            crash = replace(point, recovery_fence=violation.crash.recovery_fence)
            self.violations.append(replace(violation, setup=tuple(setup), ops=tuple(ops), crash=crash))

    # ---------------------------------------------------------------- one crash point

    def _explore_point(
        self,
        base: bytes,
        components: Sequence[ImageComponent],
        allowed: list[Snapshot],
        allowed_key: bytes,
        point: CrashPoint,
        name: str,
    ) -> _PointResult:
        stats = Stats(method="lazy", crash_points=1, crash_states={name})
        violations: list[Violation] = []
        plan = self.lazy.plan(base, components)
        stats.allowed_images = plan.allowed
        record = PointRecord(point, plan.allowed) if self.record else None
        machine = self._first
        scm = machine.scm
        script: list[int] | None = []
        while script is not None:
            chooser = ReplayChooser(script)
            lazy = self.lazy(plan, chooser)
            scm.reboot(lazy.blob)
            lazy.attach(scm)
            events = {"n": 0}
            seen_recovery: set[tuple[tuple[int, ...], int]] = set()

            def hook(event: PersistEvent) -> None:
                if event.kind != "sfence" and not (self.every_store and event.kind in ("store", "ntstore")):
                    return
                index = events["n"]
                events["n"] += 1
                key = (chooser.prefix(), index)
                if key in seen_recovery or (violations and self.stop_at_first):
                    return
                seen_recovery.add(key)
                try:
                    self._explore_recovery_crash(lazy, scm, allowed, allowed_key, point, index, stats, violations, record)
                except Exception as error:
                    raise ExplorerFault(f"while crashing recovery: {type(error).__name__}: {error}") from error

            if self.recovery_crashes:
                scm.add_hook(hook)
            try:
                tree, error = self._recover(machine, lazy)
            finally:
                if self.recovery_crashes:
                    scm.remove_hook(hook)
                lazy.detach()
            stats.checks_reused += self.checks_reused
            self.checks_reused = 0
            weight = lazy.weight()
            stats.classes += 1
            stats.covered_images += weight
            stats.runs += 1
            ok = not error and tree in allowed
            outcome = tree_digest(tree) if tree is not None else f"error: {error}"
            if tree is not None:
                stats.states.add(outcome)
            if record is not None:
                record.leaves.append(Leaf(tuple(sorted(lazy.reads.items())), weight, outcome, ok))
            if not ok:
                persisted = [f"(a class of {weight:,} images that recovery cannot tell apart; one of them:)"]
                persisted += lazy.describe()
                violations.append(Violation(self.variant.name, (), (), point, persisted, list(allowed), tree, error))
            if violations and self.stop_at_first:
                break
            script = chooser.next_script()
            if script is not None and self.max_classes is not None and stats.classes >= self.max_classes:
                stats.sampled_points += 1
                break
        return _PointResult(stats, violations, record)

    def _recover(self, machine: Machine, lazy: LazyImage) -> tuple[Tree | None, str]:
        """Mount, fsck and observe one class; fsck and the observation are answered from
        the check cache when the mounted instance shows contents and volatile state
        already checked and they would read no unit still undecided."""
        try:
            fs = self.variant.mount(machine)
        except Exception as failed:  # any failure to recover is the finding
            if _internal(failed):
                raise
            return None, f"{type(failed).__name__}: {failed}"
        key = None
        if self.check_cache:
            key = lazy.content_digest(machine.scm) + self.variant.state_digest(fs)
            cached = self._checked.get(key)
            if cached is not None and not lazy.watches_any(cached[2]):
                self.checks_reused += 1
                return cached[0], cached[1]
        recorder = _ReadRecorder(lazy)
        watching = lazy.watching()
        machine.scm.watch = recorder
        try:
            fs.check_invariants()
            tree: Tree | None = dict(fs.observe())
            problem = ""
        except Exception as failure:  # any failure to recover is the finding
            if _internal(failure):
                raise
            tree, problem = None, f"{type(failure).__name__}: {failure}"
        finally:
            machine.scm.watch = lazy
            if not lazy.watching():
                machine.scm.quiet_reads()
        if key is not None and lazy.watching() == watching:
            # Only a result that read no undecided unit holds for every class with these
            # contents (one that branched holds for its branch alone).
            self._checked[key] = (tree, problem, recorder.ranges())
        return tree, problem

    def _explore_recovery_crash(
        self,
        first: LazyImage,
        scm: ScmEmu,
        allowed: list[Snapshot],
        allowed_key: bytes,
        point: CrashPoint,
        index: int,
        stats: Stats,
        violations: list[Violation],
        record: PointRecord | None,
    ) -> None:
        """Crash the recovery running on ``scm`` now; explore what a second recovery makes
        of every image that crash may leave (answered from the cache for a crash state
        already explored: the same image, undecided units and allowed trees). The crash
        state is named without labels; they are made only to describe a failure."""
        crash = first.second_crash(scm, labels=False)
        state = hashlib.blake2b(crash.digest + allowed_key, digest_size=16).digest()
        cached = self._by_recovery_state.get(state)
        if cached is None:
            cached = self._explore_second(crash, lambda: first.second_crash(scm).components, allowed)
            self._by_recovery_state[state] = cached
            stats.merge(cached.stats)
        else:
            stats.merge(replace(cached.stats, runs=0, checks_reused=0))  # a repeat runs nothing
        if record is not None:
            record.recovery[(tuple(sorted(first.reads.items())), index)] = (cached.stats.recovery_allowed_images, cached.leaves)
        where = CrashPoint(point.op_index, point.op, point.fence, point.site, point.stack, index, point.unit)
        for described, tree, error in cached.failures:
            persisted = first.describe() + ["then, during recovery:"] + described
            violations.append(Violation(self.variant.name, (), (), where, persisted, list(allowed), tree, error))

    def _explore_second(
        self, crash: SecondCrash, labelled: Callable[[], list[ImageComponent]], allowed: list[Snapshot]
    ) -> _SecondResult:
        """Every class of images a crash of recovery may leave, recovered once more
        (``labelled()``: the crash's components with their labels, to describe a failure;
        call it before the first machine runs on)."""
        stats = Stats(method="lazy", recovery_crash_points=1)
        result = _SecondResult(stats)
        machine = self._second
        script: list[int] | None = []
        classes = 0
        plan = self.lazy.plan(crash.base(), crash.components, crash.page_digests)
        stats.recovery_allowed_images = plan.allowed
        while script is not None:
            chooser = ReplayChooser(script)
            lazy = self.lazy(plan, chooser)
            machine.scm.reboot(lazy.blob)
            lazy.attach(machine.scm)
            try:
                tree, error = self._recover(machine, lazy)
            finally:
                lazy.detach()
            stats.checks_reused += self.checks_reused
            self.checks_reused = 0
            weight = lazy.weight()
            classes += 1
            stats.recovery_classes += 1
            stats.recovery_covered_images += weight
            stats.runs += 1
            ok = not error and tree in allowed
            outcome = tree_digest(tree) if tree is not None else f"error: {error}"
            if tree is not None:
                stats.states.add(outcome)
            if self.record:
                result.leaves.append(Leaf(tuple(sorted(lazy.reads.items())), weight, outcome, ok))
            if not ok:
                described = [f"(a class of {weight:,} images that the second recovery cannot tell apart; one of them:)"]
                described += lazy.describe(self.lazy.prepare(labelled()))
                result.failures.append((described, tree, error))
                if self.stop_at_first:
                    break
            script = chooser.next_script()
            if script is not None and self.max_classes is not None and classes >= self.max_classes:
                stats.sampled_points += 1
                break
        return result
