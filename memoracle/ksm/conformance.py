"""Drive a KSM implementation and the model side by side, and judge every step.

A :class:`KsmPair` applies one operation (:class:`Op`) to both sides of any two
:class:`~spec.ksm_api.KsmSystem` instances — normally :class:`impl.ksm` against
:class:`spec.ksm_model.KsmModel` — and then checks:

- **merge safety**: every page of every process reads the same on both sides, and both
  sides raise the same error (type and errno) for the same call;
- **invariants**: the implementation's ``check_invariants()`` (if it has one);
- **consistency**: the implementation's snapshot is well formed
  (:func:`~spec.ksm_rules.structure_violations`: merged pages read-only, shared frames
  are KSM pages, items agree with nodes), no page is writable where its mapping is
  not (a private page may be read-only in a writable mapping: unsharing leaves the copy
  read-only and clean, as the kernel does), and its counters equal
  :func:`~spec.ksm_rules.counters_of` of its snapshot;
- **completeness**: when the model says the system is quiet, the weak predicate
  :func:`~spec.ksm_model.completeness_violations`; when it says settled, the exclusive
  host cache keeps no page whose content is in a tree;
- **exact points**: whenever the model is exact (:meth:`~spec.ksm_model.KsmModel.exact`)
  every counter and every process's counters equal its prediction — before any full
  scan from a clean point (the start or ``run = 2``) nothing has an rmap item; after
  exactly one, nothing is merged and every eligible page has a volatile rmap item
  (:func:`~spec.ksm_model.predicted_after_first_scan`: pages first merge on the second
  full scan, because the stored checksum starts at 0); once settled, the prediction;
  and right after an unmerge at such a point, the same rmap items (they stay until
  ksmd's next pass) with the range unmerged;
- **full_scans**: equal to the full scans asked for since the last ``run = 2`` (the
  kernel resets ``seqnr`` there), at least that many once ``run_ksmd`` has run;
- **pins**: a pinned page (an O_DIRECT or GUP pin, through the implementation's optional
  ``pin(pid, addr, pins)``; the model knows nothing of pins) is never merged — neither a
  KSM page nor the zero page — at any step. The kernel's ``write_protect_page`` refuses
  a pinned page, and a pinned page that reaches the unstable tree first keeps its twins
  from merging there too, so while pages are pinned (and until the next ``run = 2``
  after the last unpin) the model's exact prediction is applied only to the first scan
  and completeness is judged only over contents no such page has;
- **checksums**: once settled, every rmap item in a tree (or merged with the zero page)
  holds the checksum of its page's content — what the merging visit stored (ksmd never
  recomputes a KSM page's); items of equal contents hold equal checksums, and with the
  ``xxhash`` knob the value is ``xxh64(page, 0)`` cut to 32 bits, computed here with the
  ``xxhash`` package;
- **host cache**: at every step it holds only pages that were inserted, unchanged, and
  every page that no scan can have dropped. Pages dropped while the system was not
  settled stay dropped, and the model does not follow ksmd's progress, so the pair
  records which pages were *exposed* (their content was some present page's content
  just before, during or after a scanning call with the exclusive host cache on); only
  those may be missing.

``max_page_sharing`` stores are judged with :func:`~spec.ksm_rules.validated_knob`
against the implementation's own ``pages_shared`` counter and whether its snapshot maps
a KSM page (the model cannot know either while ksmd is mid-scan), and the model is then
told the outcome.

Scanning calls (``run_ksmd``, ``full_scans``) are applied to the model first: a store
injected by :meth:`KsmPair.apply` of an ``arm_race`` operation lands inside the
implementation's scan, and the model must see it after it counted the scans (it is
told that ksmd was mid-scan, so the scan in progress never counts as quiet).

:func:`random_ops` draws a deterministic operation sequence from a seed (writes of whole
pages from a small pool of contents so duplicates are common, single bytes, reads,
ksmd runs, full scans, madvise, process-wide merge, run 0/1/2, knobs, optimisations,
quiet periods, some followed by an unmerge);
:func:`ksm_campaign` runs one and returns a report (None when everything held).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import xxhash

from spec.ksm_api import (
    COUNTERS,
    PAGE_SIZE,
    GuestKind,
    ItemState,
    KnobError,
    KsmSnapshot,
    KsmSystem,
    MappingError,
    NotRunning,
    SegmentationFault,
)
from spec.ksm_model import KsmModel, completeness_violations
from spec.ksm_rules import counters_of, structure_violations, validated_knob

#: Contents whole-page writes draw from (small, so that duplicates are common).
CONTENT_POOL: tuple[bytes, ...] = (
    bytes(PAGE_SIZE),
    b"A" * PAGE_SIZE,
    b"B" * PAGE_SIZE,
    (b"CD" * (PAGE_SIZE // 2)),
    bytes(range(256)) * (PAGE_SIZE // 256),
)
#: Counters that are histories, not predicted.
HISTORY_COUNTERS = ("full_scans", "pages_skipped")


@dataclass(frozen=True)
class Op:
    """One operation: ``name`` is a :class:`KsmSystem` method, ``args`` its arguments
    (``kwargs`` as (name, value) pairs)."""

    name: str
    args: tuple[object, ...] = ()
    kwargs: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        shown = [repr(a) if not isinstance(a, bytes) else _bytes_label(a) for a in self.args]
        shown += [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(shown)})"


def _bytes_label(data: bytes) -> str:
    if len(data) == PAGE_SIZE:
        for index, content in enumerate(CONTENT_POOL):
            if data == content:
                return f"CONTENT_POOL[{index}]"
    return repr(data) if len(data) <= 16 else f"<{len(data)} bytes>"


class Mismatch(Exception):
    """A step where the implementation disagrees with the spec."""


def _outcome(system: KsmSystem, op: Op) -> tuple[str, object]:
    try:
        result = getattr(system, op.name)(*op.args, **dict(op.kwargs))
    except (KnobError, MappingError) as error:
        return "error", (type(error).__name__, error.errno)
    except (SegmentationFault, NotRunning) as error:
        return "error", (type(error).__name__, None)
    return "ok", result


class KsmPair:
    """An implementation and the model, driven in lock step (see the module docstring)."""

    def __init__(
        self, impl: KsmSystem, model: KsmModel | None = None, *, check_checksums: bool | None = None
    ) -> None:
        self.impl = impl
        self.model = model if model is not None else KsmModel()
        #: Whether the checksums of the snapshot are judged (by default, unless the
        #: implementation is a model: the model simulates no visits and reports 0).
        self.check_checksums = not isinstance(impl, KsmModel) if check_checksums is None else check_checksums
        #: Pages pinned now, and every page pinned since the last ``run = 2`` that found
        #: nothing pinned (their contents are left out of the completeness checks).
        self.pinned: set[tuple[int, int]] = set()
        self.pinned_since_clean: set[tuple[int, int]] = set()
        self.pids: list[int] = []
        self.regions: list[tuple[int, int, int]] = []  # (pid, addr, npages)
        self.checked = 0
        #: Host cache pages as inserted (id -> content), and the ids whose content was
        #: the content of some present page while ksmd scanned with the exclusive host
        #: cache on (only those may have been dropped).
        self.host_inserted: dict[int, bytes] = {}
        self.host_exposed: set[int] = set()

    def _expose(self) -> None:
        """Mark the host cache pages that the scan about to run (or just run) may drop."""
        if not self.model.knobs().exclusive_host_cache:
            return
        contents = set(self.model.views().values())
        for page_id, content in self.host_inserted.items():
            if content in contents:
                self.host_exposed.add(page_id)

    def apply(self, op: Op) -> None:
        """Apply ``op`` to both sides and check everything; raises :class:`Mismatch`."""
        if op.name in ("pin", "unpin"):
            self._pin(op)
        elif op.name == "set_knob" and op.args[0] == "max_page_sharing":
            self._max_page_sharing(op)
        elif op.name == "arm_race":
            data = op.args[1]
            assert isinstance(data, bytes)
            self._arm_race(str(op.args[0]), data)
        else:
            if op.name in ("run_ksmd", "full_scans"):
                self._expose()
                # The model first: a race armed by arm_race fires inside the
                # implementation's scan, and its store must reach the model after the
                # model has counted the scans (so that it starts a new quiet period).
                expected = _outcome(self.model, op)
                got = _outcome(self.impl, op)
            else:
                got, expected = _outcome(self.impl, op), _outcome(self.model, op)
            if op.name in ("run_ksmd", "full_scans") and expected[0] == "ok":
                expected = ("ok", None)
                got = ("ok", None) if got[0] == "ok" else got
            if got != expected:
                raise Mismatch(f"{op}: implementation gave {got}, the spec {expected}")
            if op.name in ("run_ksmd", "full_scans"):
                self._expose()
            if op.name == "host_cache_insert" and got[0] == "ok":
                assert isinstance(got[1], int) and isinstance(op.args[0], bytes)
                self.host_inserted[got[1]] = op.args[0] + bytes(PAGE_SIZE - len(op.args[0]))
            if op.name == "add_process" and got[0] == "ok":
                assert isinstance(got[1], int)
                self.pids.append(got[1])
            if op.name == "mmap" and got[0] == "ok":
                assert isinstance(got[1], int)
                self.regions.append((int(op.args[0]), got[1], int(op.args[1])))  # type: ignore[call-overload]
            if op.name == "set_knob" and op.args[:2] == ("run", 2) and not self.pinned:
                self.pinned_since_clean.clear()
        self.check()

    def _pin(self, op: Op) -> None:
        """``pin(pid, addr)`` pins a present private page once (through the
        implementation's ``pin``; a side without one, or a page that is absent or
        merged, is left alone); ``unpin(pid, addr)`` drops a pin the pair made."""
        pin: Callable[[int, int, int], None] | None = getattr(self.impl, "pin", None)
        pid, addr = op.args[0], op.args[1]
        assert isinstance(pid, int) and isinstance(addr, int)
        if pin is None:
            return
        if op.name == "unpin":
            if (pid, addr) in self.pinned:
                pin(pid, addr, 0)
                self.pinned.discard((pid, addr))
            return
        page = next((p for p in self.impl.snapshot().pages if (p.pid, p.addr) == (pid, addr)), None)
        if page is None or page.ksm or page.zero or (pid, addr) in self.pinned:
            return
        pin(pid, addr, 1)
        self.pinned.add((pid, addr))
        self.pinned_since_clean.add((pid, addr))

    def _arm_race(self, point: str, data: bytes) -> None:
        """Make the next merge step at ``point`` see a user store of ``data`` (at the
        page being merged) "from another CPU", on both sides. Needs the implementation's
        ``race_hook`` (``None`` to disarm); a side without one is left alone."""
        owners = [self.impl] + [getattr(self.impl, name, None) for name in ("engine", "ksmd", "_engine")]
        target = next((o for o in owners if o is not None and hasattr(o, "race_hook")), None)
        if target is None:
            return
        impl, model, expose = self.impl, self.model, self._expose

        def hook(at: str, pid: int, addr: int) -> None:
            if at != point:
                return
            setattr(target, "race_hook", None)
            # The store lands while ksmd is mid-scan: the model is told that ksmd ran
            # (so the scan in progress does not count as quiet), then sees the store.
            model.run_ksmd(1)
            for side in (impl, model):
                try:
                    side.write(pid, addr, data)
                except SegmentationFault:
                    pass
            expose()

        setattr(target, "race_hook", hook)

    def _max_page_sharing(self, op: Op) -> None:
        value = op.args[1]
        pages_shared = self.impl.counters()["pages_shared"]
        mapped = any(page.ksm for page in self.impl.snapshot().pages)
        try:
            stored = validated_knob(
                self.impl.knobs(), "max_page_sharing", value, pages_shared, ksm_pages_mapped=mapped
            )
            expected: tuple[str, object] = ("ok", None)
        except KnobError as error:
            stored, expected = None, ("error", ("KnobError", error.errno))
        got = _outcome(self.impl, op)
        if got != expected:
            raise Mismatch(
                f"{op} with pages_shared = {pages_shared}, KSM pages mapped: {mapped}: "
                f"implementation gave {got}, the spec {expected}"
            )
        if stored is not None:
            self.model.set_knob_judged("max_page_sharing", stored, pages_shared=0)

    def _host_cache_violations(self, host: dict[int, bytes]) -> list[str]:
        """The host cache holds only pages inserted, unchanged, and keeps every page that
        no scan can have dropped (its content was never a present page's while ksmd
        scanned with the exclusive host cache on)."""
        problems = [
            f"host cache page {page_id} was never inserted with that content"
            for page_id, content in sorted(host.items())
            if self.host_inserted.get(page_id) != content
        ]
        lost = sorted(set(self.host_inserted) - self.host_exposed - set(host))
        if lost:
            problems.append(f"host cache pages {lost} dropped though no scanned page had their content")
        return problems

    def _exact_label(self) -> str:
        model = self.model
        if model.after_first_scan():
            return "after the first scan" if model.counters()["full_scans"] else "before the first scan"
        return "settled" if model.settled() else "right after an unmerge (rmap items kept)"

    def check(self) -> None:
        """Every check of the module docstring, for the current state."""
        self.checked += 1
        views = self.model.views()
        for pid, addr, npages in self.regions:
            for page in range(npages):
                where = addr + page * PAGE_SIZE
                expected = _outcome(self.model, Op("read", (pid, where, PAGE_SIZE)))
                got = _outcome(self.impl, Op("read", (pid, where, PAGE_SIZE)))
                if got != expected:
                    shown_expected = views.get((pid, where), bytes(PAGE_SIZE))
                    raise Mismatch(
                        f"view of pid {pid} at {where:#x}: implementation reads "
                        f"{_shown(got)}, the spec {_shown(expected) if expected[0] != 'ok' else _bytes_label(shown_expected)}"
                    )
        invariants: Callable[[], None] | None = getattr(self.impl, "check_invariants", None)
        if invariants is not None:
            try:
                invariants()
            except AssertionError as error:
                raise Mismatch(f"check_invariants: {error}") from error
        snapshot = self.impl.snapshot()
        problems = structure_violations(snapshot)
        for mapped in snapshot.pages:
            if mapped.writable and not self.model.may_write(mapped.pid, mapped.addr):
                problems.append(f"pid {mapped.pid} {mapped.addr:#x} is writable in a mapping without write permission")
        counters = self.impl.counters()
        if counters != snapshot.counters:
            problems.append(f"counters() {counters} differ from the snapshot's {snapshot.counters}")
        derived = counters_of(snapshot)
        for name in COUNTERS:
            if name not in HISTORY_COUNTERS and counters.get(name) != derived[name]:
                problems.append(f"{name} = {counters.get(name)}, the items say {derived[name]}")
        asked = self.model.counters()["full_scans"]
        if self.model.full_scans_exact() and counters["full_scans"] != asked:
            problems.append(f"full_scans = {counters['full_scans']}, {asked} asked for since run = 2")
        elif counters["full_scans"] < asked:
            problems.append(f"full_scans = {counters['full_scans']}, fewer than the {asked} asked for")
        host = self.impl.host_cache()
        problems += self._host_cache_violations(host)
        page_at = {(mapped.pid, mapped.addr): mapped for mapped in snapshot.pages}
        for pid, addr in sorted(self.pinned):
            pinned = page_at.get((pid, addr))
            if pinned is not None and (pinned.ksm or pinned.zero):
                kind = "a KSM page" if pinned.ksm else "the zero page"
                problems.append(f"pinned page pid {pid} {addr:#x} was merged into {kind}")
        blocked = {views.get(where, bytes(PAGE_SIZE)) for where in self.pinned_since_clean}
        if self.model.quiet():
            candidates = [c for c in self.model.candidates() if c.content not in blocked]
            problems += completeness_violations(snapshot, candidates, self.model.knobs())
        if self.model.exact() and (not self.pinned_since_clean or self.model.after_first_scan()):
            prediction = self.model.current_prediction()
            when = self._exact_label()
            for name, value in prediction.counters.items():
                if counters.get(name) != value:
                    problems.append(f"{when}: {name} = {counters.get(name)}, predicted {value}")
            if self.model.process_counters_exact():
                for pid in self.pids:
                    got_process = self.impl.process_counters(pid)
                    if got_process != prediction.process_counters[pid]:
                        problems.append(f"{when}: pid {pid} counters {got_process}, predicted {prediction.process_counters[pid]}")
        if self.model.settled() and self.check_checksums:
            problems += _checksum_violations(snapshot, views, self.model.knobs().checksum)
        if self.model.settled() and not self.pinned_since_clean:
            if self.model.knobs().exclusive_host_cache:
                kept = sorted(set(host) - set(self.model.predicted_host_cache()))
                if kept:
                    problems.append(f"settled: host cache pages {kept} kept though their content is in a tree")
        if problems:
            raise Mismatch("; ".join(problems[:6]))


def page_checksum(page: bytes) -> int:
    """Linux's ``calc_checksum``: ``xxhash(page, PAGE_SIZE, 0)`` stored in a ``u32``."""
    return int(xxhash.xxh64_intdigest(page, seed=0)) & 0xFFFF_FFFF


def _checksum_violations(snapshot: KsmSnapshot, views: dict[tuple[int, int], bytes], function: str) -> list[str]:
    """Settled: every item in a tree or on the zero page holds its content's checksum
    (equal contents, equal checksums; with ``xxhash``, the kernel's value)."""
    problems: list[str] = []
    seen: dict[bytes, int] = {}
    for item in snapshot.items:
        if item.state is ItemState.VOLATILE:
            continue
        content = views.get((item.pid, item.addr), bytes(PAGE_SIZE))
        where = f"pid {item.pid} {item.addr:#x} ({item.state.value})"
        if function == "xxhash" and item.checksum != page_checksum(content):
            problems.append(f"{where} holds checksum {item.checksum:#x}, its content's is {page_checksum(content):#x}")
        elif seen.setdefault(content, item.checksum) != item.checksum:
            problems.append(f"{where} holds checksum {item.checksum:#x}, another item of its content {seen[content]:#x}")
    return problems


def _shown(outcome: tuple[str, object]) -> str:
    kind, value = outcome
    if kind == "ok" and isinstance(value, bytes):
        return _bytes_label(value)
    return f"{kind} {value!r}"


def _refused(rng: random.Random, pid: int, addr: int) -> Op:
    """A request the kernel refuses (the implementation must refuse it with the model's
    errno, and change nothing the next steps can see)."""
    unmapped = _base() + 4096 * PAGE_SIZE
    return rng.choice([
        Op("write", (99, addr, b"x")),  # no such process: ESRCH
        Op("mmap", (pid, 0)),  # no pages: EINVAL
        Op("mmap", (pid, 2), (("kinds", (GuestKind.ANONYMOUS,)),)),  # one kind for two pages
        Op("madvise", (pid, addr + 8, 1, "MERGEABLE")),  # not page aligned
        Op("madvise", (pid, addr, 1, "HUGEPAGE")),  # an advice KSM does not take
        Op("madvise", (pid, unmapped, 1, "MERGEABLE")),  # not mapped: ENOMEM
        Op("set_guest_kind", (pid, unmapped, 1, GuestKind.FILE)),
        Op("set_knob", ("no_such_knob", 1)),  # ENOENT
        Op("set_knob", ("pages_to_scan", True)),  # a bool for an int
        Op("set_knob", ("sleep_millisecs", -1)),  # out of range
        Op("set_knob", ("use_zero_pages", 2)),  # not a bool
        Op("set_knob", ("checksum", "crc32")),  # not a checksum KSM has
        Op("read", (pid, addr, -1)),
        Op("write", (pid, -PAGE_SIZE, b"x")),
    ])  # fmt: skip


def random_ops(
    seed: int, steps: int, *, processes: int = 3, pins: bool = True, clean_settles: bool = True,
    requests: bool = True,
) -> list[Op]:  # fmt: skip
    """A deterministic operation sequence: set-up (processes, regions, registration),
    then ``steps`` random operations: mostly writes and scans, now and then a race
    armed at a merge step, a clean restart followed by exactly one full scan, or a quiet
    period (three full scans). With ``pins``, some clean restarts pin one or two pages,
    unpinned at the next clean restart;
    with ``clean_settles``, some clean restarts are followed by two more full scans (a
    settled system, where the model's exact prediction and the checksums are judged),
    and some of those by an unmerge (where the model stays exact). Both are drawn from a second generator, so the other operations are those
    of ``pins=False, clean_settles=False``. With ``requests`` (from a third generator,
    inserted between the others), some steps also change a page's guest kind (a page
    becoming page cache, file, kernel or free memory inside its guest), switch the
    checksum function (``xxhash``/``jhash2``), or make a request the kernel refuses
    (:func:`_refused`: a missing process, a bad range, advice or knob value)."""
    rng = random.Random(seed)
    pin_rng = random.Random(f"pins {seed}")
    request_rng = random.Random(f"requests {seed}")
    unmapped: set[tuple[int, int]] = set()  # pages ever unmapped (perhaps mapped again: not pinned)
    pinned: list[tuple[int, int]] = []
    ops: list[Op] = [Op("add_process") for _ in range(processes)]
    ops.append(Op("set_knob", ("smart_scan", rng.random() < 0.2)))
    regions: list[tuple[int, int]] = []  # (pid, npages); addresses follow the first-fit rule
    for pid in range(1, processes + 1):
        npages = rng.randint(2, 6)
        kinds = tuple(rng.choice([GuestKind.ANONYMOUS, GuestKind.ANONYMOUS, GuestKind.PAGE_CACHE]) for _ in range(npages))
        ops.append(Op("mmap", (pid, npages), (("kinds", kinds),)))
        regions.append((pid, npages))
        if rng.random() < 0.7:
            ops.append(Op("madvise", (pid, _base(), npages, "MERGEABLE")))
        else:
            ops.append(Op("set_process_merge", (pid, True)))
    ops.append(Op("host_cache_insert", (CONTENT_POOL[1],)))
    ops.append(Op("host_cache_insert", (b"host-only",)))
    ops.append(Op("set_knob", ("run", 1)))
    for _ in range(steps):
        pid, npages = rng.choice(regions)
        page = rng.randrange(npages)
        addr = _base() + page * PAGE_SIZE
        if requests:
            extra = request_rng.random()
            if extra < 0.07:  # mostly page cache, which skip_page_cache keeps from merging
                kind = request_rng.choice([GuestKind.PAGE_CACHE, GuestKind.PAGE_CACHE, *GuestKind])
                ops.append(Op("set_guest_kind", (pid, addr, 1, kind)))
                if request_rng.random() < 0.5:
                    ops.append(Op("set_knob", ("skip_page_cache", True)))
            elif extra < 0.09:
                ops.append(Op("set_knob", ("checksum", request_rng.choice(["xxhash", "jhash2"]))))
            elif extra < 0.15:
                ops.append(_refused(request_rng, pid, addr))
            elif extra < 0.18 and (pid, addr) not in pinned:  # a page unmapped (its accesses fault), perhaps mapped again
                ops.append(Op("munmap", (pid, addr, 1)))
                unmapped.add((pid, addr))
                if request_rng.random() < 0.6:  # first fit: the hole is filled again, not mergeable
                    ops.append(Op("mmap", (pid, 1)))
        roll = rng.random()
        if roll < 0.35:
            ops.append(Op("write", (pid, addr, rng.choice(CONTENT_POOL))))
        elif roll < 0.45:
            ops.append(Op("write", (pid, addr + rng.randrange(PAGE_SIZE), bytes([rng.randrange(256)]))))
        elif roll < 0.55:
            ops.append(Op("run_ksmd", (rng.choice([20, 40, 100]),)))
        elif roll < 0.68:
            ops.append(Op("full_scans", (rng.randint(1, 3),)))
        elif roll < 0.73:
            advice = rng.choice(["MERGEABLE", "UNMERGEABLE"])
            ops.append(Op("madvise", (pid, addr, 1, advice)))
        elif roll < 0.76:
            ops.append(Op("set_process_merge", (pid, rng.random() < 0.6)))
        elif roll < 0.80:
            ops.append(Op("set_knob", ("run", rng.choice([0, 1, 1, 2]))))
        elif roll < 0.84:
            ops.append(Op("set_knob", ("max_page_sharing", rng.choice([2, 3, 256, 1]))))
        elif roll < 0.88:
            name = rng.choice(["use_zero_pages", "lookahead", "skip_page_cache", "exclusive_host_cache"])
            ops.append(Op("set_knob", (name, rng.random() < 0.5)))
        elif roll < 0.89:
            ops.append(Op("set_knob", ("run", 3)))
        elif roll < 0.92:
            ops.append(Op("arm_race", (rng.choice(["after_write_protect", "after_compare"]), bytes([rng.randrange(1, 256)]))))
        elif roll < 0.94:
            ops.append(Op("mprotect", (pid, addr, 1), (("readable", rng.random() < 0.7), ("writable", rng.random() < 0.7))))
        elif roll < 0.96:
            # A clean restart and exactly one full scan: nothing may merge yet.
            ops += [Op("unpin", where) for where in pinned]
            pinned.clear()
            ops += [Op("set_knob", ("run", 2)), Op("set_knob", ("run", 1))]
            if pins and pin_rng.random() < 0.5:
                # A page with a common content pinned (an O_DIRECT read into it, say).
                for _ in range(pin_rng.randint(1, 2)):
                    pin_pid, pin_pages = pin_rng.choice(regions)
                    where = (pin_pid, _base() + pin_rng.randrange(pin_pages) * PAGE_SIZE)
                    content = pin_rng.choice(CONTENT_POOL[:3])
                    if where in unmapped:  # only a mapped page can be pinned
                        continue
                    pinned.append(where)
                    ops.append(Op("write", (*where, content)))
                    ops.append(Op("pin", where))
            ops.append(Op("full_scans", (1,)))
            if clean_settles and pin_rng.random() < 0.5:
                ops.append(Op("full_scans", (2,)))  # settled: three scans from a clean point
                if pin_rng.random() < 0.5:  # an unmerge where the model is exact
                    unmerge_pid, unmerge_pages = pin_rng.choice(regions)
                    unmerge_at = _base() + pin_rng.randrange(unmerge_pages) * PAGE_SIZE
                    ops.append(Op("madvise", (unmerge_pid, unmerge_at, 1, "UNMERGEABLE")))
        else:
            # A quiet period, then perhaps an unmerge at that settled point (its rmap
            # items must stay until ksmd's next pass).
            ops.append(Op("set_knob", ("run", 1)))
            ops.append(Op("full_scans", (3,)))
            if rng.random() < 0.5:
                ops.append(Op("madvise", (pid, addr, 1, "UNMERGEABLE")))
    ops.append(Op("set_knob", ("run", 1)))
    ops.append(Op("full_scans", (3,)))
    return ops


def _base() -> int:
    from spec.ksm_api import MMAP_BASE

    return MMAP_BASE


def run_ops(impl: KsmSystem, ops: list[Op], *, check_checksums: bool | None = None) -> str | None:
    """Apply ``ops`` to ``impl`` and a fresh model; a report of the first mismatch, or None."""
    pair = KsmPair(impl, check_checksums=check_checksums)
    for index, op in enumerate(ops):
        try:
            pair.apply(op)
        except Mismatch as mismatch:
            shown = "\n".join(f"  {i:3d} {o}" for i, o in enumerate(ops[max(0, index - 12) : index + 1], max(0, index - 12)))
            return f"step {index}: {mismatch}\nlast operations:\n{shown}"
    return None


def ksm_campaign(
    seed: int,
    steps: int,
    factory: Callable[[], KsmSystem],
    *,
    extended: bool = True,
    check_checksums: bool | None = None,
    requests: bool = True,
) -> str | None:
    """Run :func:`random_ops` (``seed``, ``steps``; pins and clean settles unless not
    ``extended``; guest kinds, checksum switches and refused requests unless not
    ``requests``) on a fresh ``factory()``; a report or None."""
    ops = random_ops(seed, steps, pins=extended, clean_settles=extended, requests=requests)
    report = run_ops(factory(), ops, check_checksums=check_checksums)
    if report is None:
        return None
    return report + f"\nreproduce: memoracle ksm campaign --seed {seed} --runs 1 --steps {steps}"


__all__ = ["CONTENT_POOL", "KsmPair", "Mismatch", "Op", "ksm_campaign", "random_ops", "run_ops"]
