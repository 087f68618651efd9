"""The crash explorer: crash UMFS everywhere the persistency model allows, recover, compare.

For one workload (a setup that is not crashed, then operations):

1. The workload runs on UMFS on an emulated machine. Before every ``sfence`` (and, with
   ``every_store``, before every store) the explorer stops the world and takes the
   crash images the SCM model allows at that point (:meth:`impl.scm_emu.ScmEmu.crash_images`:
   all of them below ``image_limit``, else the deterministic sample).
2. Each image is booted on a fresh machine and mounted (recovery runs); the tree is read
   and must be one of ``spec.crash_recovery.allowed_after_crash`` — the tree before the
   in-flight operation or after it. A mount that fails is a violation too.
3. Then the image is recovered again, this time crashing before every fence *of
   recovery*, taking that machine's crash images (the first ``recovery_image_limit``
   of them, 8 by default: nothing persisted, everything, then each pending line alone
   dropped or kept, in order) and recovering each once more; the result must lie in the
   same allowed set.

Images are deduplicated by a digest of their bytes, so an image reached from many crash
points is mounted once; observed trees are counted as distinct *states*.

A violation records the workload, the crash point (operation, fence number within it,
the persist site and the UMFS call stack), which pending stores the image persisted,
and the allowed trees against the observed one.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, replace
from types import FrameType
from typing import Callable, Sequence

from impl.mmu_emu import Machine
from impl.scm_emu import PersistEvent, ScmEmu
from impl.umfs import Umfs
from impl.umfs_layout import PAGE
from memoracle.umfs.crash_stats import Stats, tree_digest
from spec.crash_recovery import Driver, Op, allowed_after_crash, describe, model_trees, run_op
from spec.persistency import PersistMode
from spec.umfs_model import Snapshot

SCM_BYTES = 384 * 1024
DRAM_BYTES = 64 * 1024
DEFAULT_IMAGE_LIMIT = 64
Tree = dict[str, tuple[object, ...]]


class _Crash(Exception):
    """Raised from a hook to stop a recovery at a crash point."""


@dataclass(frozen=True)
class Variant:
    """Which UMFS to explore: the class (a mutant may subclass :class:`Umfs`) and a hook
    that configures every mounted instance (e.g. dropping one persist site's flushes)."""

    name: str = "umfs"
    umfs_cls: type[Umfs] = Umfs
    configure: Callable[[Umfs], None] | None = None

    def mkfs(self, machine: Machine) -> Umfs:
        fs = self.umfs_cls.mkfs(machine, inodes=32)
        if self.configure is not None:
            self.configure(fs)
        return fs

    def mount(self, machine: Machine) -> Umfs:
        fs = self.umfs_cls.mount(machine)
        if self.configure is not None:
            self.configure(fs)
        return fs

    def state_digest(self, fs: Umfs) -> bytes:
        """A digest of the volatile state fsck and the observation read besides the SCM:
        free inodes and pages, open files, cached attributes, processes, the superblock.
        Two mounted instances with equal SCM contents and equal digests pass or fail
        fsck alike and observe the same tree (the lazy explorer's check cache relies on it)."""
        zone = fs.zone
        free_pages = [page for page in range(zone.first, zone.limit, PAGE) if zone.is_free(page)]
        state = (
            sorted(fs.free_inodes), free_pages, sorted(fs.open_count.items()), sorted(fs.meta.cached.items()),
            sorted(fs.processes), fs.sb,
        )  # fmt: skip
        return hashlib.blake2b(repr(state).encode(), digest_size=16).digest()


@dataclass(frozen=True)
class CrashPoint:
    """Where the machine crashed."""

    op_index: int  #: the operation in flight (``len(ops)``: after the last returned)
    op: str
    fence: int  #: how many fences (or stores) of this operation had executed
    site: str  #: the UMFS persist point about to fence
    stack: tuple[str, ...]  #: the UMFS functions on the stack, outermost first
    recovery_fence: int | None = None  #: set when the crash hit recovery
    unit: str = "fence"  #: what ``fence`` counts: "fence", or "store" with ``every_store``

    def render(self) -> str:
        where = f"op #{self.op_index} {self.op}, before {self.unit} {self.fence}"
        if self.site:
            where += f" (persist site '{self.site}')"
        if self.recovery_fence is not None:
            where += f", then again during recovery before its {self.unit} {self.recovery_fence}"
        return where + ("\n    in " + " > ".join(self.stack) if self.stack else "")


@dataclass
class Violation:
    """A crash image whose recovery is not allowed."""

    variant: str
    setup: tuple[Op, ...]
    ops: tuple[Op, ...]
    crash: CrashPoint
    persisted: list[str]
    expected: list[Snapshot]
    observed: Tree | None
    error: str = ""

    def render(self) -> str:
        """The report a person acts on: workload, crash point, persisted stores, diff."""
        lines = [
            f"CRASH-CONSISTENCY VIOLATION in {self.variant}",
            "workload: " + "; ".join(describe(op) for op in self.ops),
            "setup:    " + "; ".join(describe(op) for op in self.setup),
            "crash:    " + self.crash.render(),
            "persisted at the crash:",
            *(f"    {line}" for line in self.persisted[:12]),
        ]
        if self.error:
            lines.append(f"recovery failed: {self.error}")
        elif self.observed is not None:
            lines.append("expected one of the trees before/after the in-flight operation; observed:")
            lines.extend(f"    {line}" for line in tree_diff(self.expected, self.observed))
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        """The report for tools."""
        return {
            "variant": self.variant,
            "setup": [list(op) for op in self.setup],
            "ops": [list(op) for op in self.ops],
            "crash": {
                "op_index": self.crash.op_index,
                "op": self.crash.op,
                "fence": self.crash.fence,
                "site": self.crash.site,
                "stack": list(self.crash.stack),
                "recovery_fence": self.crash.recovery_fence,
            },
            "persisted": self.persisted,
            "error": self.error,
            "diff": [] if self.observed is None else tree_diff(self.expected, self.observed),
        }


def _show(node: tuple[object, ...]) -> str:
    kind, nlink, content = node
    if isinstance(content, bytes):
        head = content[:16].hex()
        return f"{kind} nlink={nlink} size={len(content)} [{head}{'…' if len(content) > 16 else ''}]"
    return f"{kind} nlink={nlink} {list(content) if isinstance(content, tuple) else content}"


def tree_diff(expected: Sequence[Snapshot], observed: Tree) -> list[str]:
    """Line by line, how ``observed`` differs from the closest allowed tree."""

    def distance(tree: Snapshot) -> int:
        return sum(tree.get(p) != observed.get(p) for p in set(tree) | set(observed))

    closest = min(expected, key=distance)
    out = []
    for path in sorted(set(closest) | set(observed)):
        want, got = closest.get(path), observed.get(path)
        if want != got:
            out.append(f"{path}: expected {_show(tuple(want)) if want else 'absent'}")
            out.append(f"{' ' * len(path)}  observed {_show(got) if got else 'absent'}")
            if want and got and isinstance(want[2], bytes) and isinstance(got[2], bytes):
                a, b = want[2], got[2]
                at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                out.append(
                    f"{' ' * len(path)}  first difference at byte {at}: expected "
                    f"{a[at : at + 8].hex() or 'end of file'}, observed {b[at : at + 8].hex() or 'end of file'}"
                )
    return out or ["(no difference)"]


def umfs_stack() -> tuple[str, ...]:
    """The UMFS functions on the stack (outermost first), for crash reports."""
    frames = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        base = name.rsplit("/", 1)[-1]
        if base.startswith("umfs") and "crash" not in base:  # impl/umfs*.py and UMFS mutants
            frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return tuple(reversed(frames))


class CrashExplorer:
    """Explores workloads on one UMFS variant (see the module docstring)."""

    def __init__(
        self,
        variant: Variant | None = None,
        *,
        mode: PersistMode = PersistMode.ADR,
        image_limit: int = DEFAULT_IMAGE_LIMIT,
        every_store: bool = False,
        recovery_crashes: bool = True,
        seed: int = 0,
        stop_at_first: bool = True,
        recovery_image_limit: int = 8,
        strict: bool = False,
    ) -> None:
        self.variant = variant or Variant()
        self.recovery_image_limit = recovery_image_limit
        self.strict = strict
        self.mode = mode
        self.image_limit = image_limit
        self.every_store = every_store
        self.recovery_crashes = recovery_crashes
        self.seed = seed
        self.stop_at_first = stop_at_first
        self.stats = Stats(method="enumeration")
        self.violations: list[Violation] = []
        self._verdicts: dict[bytes, tuple[bool, Stats]] = {}
        #: Machines reused for every check (rebooted from each image): one that mounts
        #: images, one whose recovery is crashed.
        self._checker = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))
        self._recovering = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, mode))

    # ---------------------------------------------------------------- one workload

    def explore(self, setup: Sequence[Op], ops: Sequence[Op]) -> list[Violation]:
        """Explore one workload; return its violations (also kept in ``violations``)."""
        import time

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

        def hook(event: PersistEvent) -> None:
            if event.kind == "sfence" or (self.every_store and event.kind in ("store", "ntstore")):
                point = CrashPoint(
                    state["op"], describe(ops[state["op"]]), state["fence"], fs.pm.site, umfs_stack(),
                    unit="store/fence" if self.every_store else "fence",
                )  # fmt: skip
                state["fence"] += 1
                self._crash_here(scm, trees, point, setup, ops)

        scm.add_hook(hook)
        try:
            for index, op in enumerate(ops):
                state["op"], state["fence"] = index, 0
                run_op(fs, driver, op)
                if self.stop_at_first and len(self.violations) > found_before:
                    break
        finally:
            scm.remove_hook(hook)
        if not (self.stop_at_first and len(self.violations) > found_before):
            end = CrashPoint(len(ops), "after the last operation", 0, "", ())
            self._crash_here(scm, trees, end, setup, ops)
        self.stats.seconds += time.perf_counter() - started
        return self.violations[found_before:]

    def _crash_here(
        self,
        scm: ScmEmu,
        trees: list[Snapshot],
        point: CrashPoint,
        setup: Sequence[Op],
        ops: Sequence[Op],
    ) -> None:
        if self.stop_at_first and self.violations:
            return
        stats = self.stats
        stats.crash_points += 1
        allowed = allowed_after_crash(trees, point.op_index)
        allowed_key = repr(allowed).encode()
        base = hashlib.blake2b(scm.durable(), digest_size=16).digest()
        images = scm.crash_images(self.image_limit, self.seed, strict=self.strict)
        count = scm.count_images()
        stats.allowed_images += count
        if len(images) < count:
            stats.sampled_points += 1
        for image in images:
            stats.classes += 1
            stats.covered_images += 1
            key = hashlib.blake2b(base + image.digest.encode() + allowed_key, digest_size=16).digest()
            stats.crash_states.add(key.hex())
            cached = self._verdicts.get(key)
            if cached is not None and cached[0]:
                stats.merge(cached[1])
                continue
            # A failing image is checked again, never skipped: its violation is reported
            # for this workload too (a shrinking fuzzer replays what already failed).
            blob = scm.image_bytes(image)
            delta = Stats(method=stats.method)
            ok = self._check_image(blob, allowed, point, lambda: scm.describe(image), setup, ops, delta)
            stats.merge(delta)
            self._verdicts[key] = (ok, replace(delta, runs=0))  # a repeat runs nothing
            if not ok and self.stop_at_first:
                return

    def _mount_and_observe(self, blob: bytes, stats: Stats) -> tuple[Tree | None, str]:
        machine = self._checker
        machine.scm.reboot(blob)
        stats.runs += 1
        try:
            fs = self.variant.mount(machine)
            fs.check_invariants()
            tree: Tree = dict(fs.observe())
        except Exception as error:  # any failure to recover is the finding
            return None, f"{type(error).__name__}: {error}"
        stats.states.add(tree_digest(tree))
        return tree, ""

    def _check_image(
        self,
        blob: bytes,
        allowed: list[Snapshot],
        point: CrashPoint,
        persisted: Callable[[], list[str]],
        setup: Sequence[Op],
        ops: Sequence[Op],
        stats: Stats,
    ) -> bool:
        tree, error = self._mount_and_observe(blob, stats)
        if error or tree not in allowed:
            self.violations.append(
                Violation(self.variant.name, tuple(setup), tuple(ops), point, persisted(), list(allowed), tree, error)
            )
            return False
        if self.recovery_crashes:
            return self._crash_recovery(blob, allowed, point, persisted, setup, ops, stats)
        return True

    def _crash_recovery(
        self,
        blob: bytes,
        allowed: list[Snapshot],
        point: CrashPoint,
        persisted: Callable[[], list[str]],
        setup: Sequence[Op],
        ops: Sequence[Op],
        stats: Stats,
    ) -> bool:
        """Crash before every fence of the recovery of ``blob``; recover each image again."""
        machine = self._recovering
        scm = machine.scm
        scm.reboot(blob)
        fences = {"n": 0}
        allowed_key = repr(allowed).encode()
        failures: list[Violation] = []

        def hook(event: PersistEvent) -> None:
            if event.kind != "sfence" and not (self.every_store and event.kind in ("store", "ntstore")):
                return
            stats.recovery_crash_points += 1
            fence = fences["n"]
            fences["n"] += 1
            base = hashlib.blake2b(scm.durable(), digest_size=16).digest()
            images = scm.crash_images(self.recovery_image_limit, self.seed, strict=True)
            count = scm.count_images()
            stats.recovery_allowed_images += count
            if len(images) < count:
                stats.sampled_points += 1
            for image in images:
                stats.recovery_classes += 1
                stats.recovery_covered_images += 1
                key = hashlib.blake2b(base + image.digest.encode() + allowed_key, digest_size=16).digest()
                stats.crash_states.add(key.hex())
                if self._verdicts.get(key, (False,))[0]:
                    continue  # passed before; a failing image is checked (and reported) again
                blob = scm.image_bytes(image)
                tree, error = self._mount_and_observe(blob, stats)
                self._verdicts[key] = (not error and tree in allowed, Stats(method=stats.method))
                if error or tree not in allowed:
                    crash = CrashPoint(
                        point.op_index, point.op, point.fence, point.site, point.stack, fence, point.unit
                    )
                    failures.append(
                        Violation(
                            self.variant.name, tuple(setup), tuple(ops), crash,
                            persisted() + ["then, during recovery:"] + scm.describe(image),
                            list(allowed), tree, error,
                        )  # fmt: skip
                    )
                    raise _Crash

        scm.add_hook(hook)
        try:
            self.variant.mount(machine)
        except _Crash:
            pass
        except Exception:  # the first recovery's own failure was reported by the caller
            pass
        finally:
            scm.remove_hook(hook)
        self.violations.extend(failures)
        return not failures
