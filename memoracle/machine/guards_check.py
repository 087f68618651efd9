"""The machine's argument guards: each documented refusal is made, and leaves no trace.

The emulated machine (:mod:`impl.phys_mem`, :mod:`impl.mmu_emu`, :mod:`impl.nic_emu`)
documents what it refuses: a frame range that is not page aligned, a double free, an
exhausted allocator, a machine whose SCM overlaps DRAM, an 8-byte read of unbacked
memory, a VMA that overlaps another, a page mapped twice, an unmapped page unmapped or
protected, a range that cuts a large page, a non-canonical address, a NIC without queues,
an SCM of a size or image that does not fit, … The campaigns' workloads never ask for any of these, so :func:`guard_campaign` asks for
each on a fresh machine: the call must raise the documented exception (``ValueError``,
``MemoryError`` or :class:`~impl.phys_mem.BusError`), and afterwards the machine's,
allocator's and address space's invariants hold and what was mapped or allocated before
the refusal is as it was (a refusal changes nothing).

:data:`GUARD_MUTANTS` are emulators with one guard left out (a double free ignored, a
second mapping of a page written over the first): each is correct on every workload the
other campaigns run, and :func:`guard_campaign` must catch each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from impl.mmu_emu import AddressSpace, PageFault, VmaFlags, make_entry
from impl.nic_emu import Nic, ipv4, toeplitz_hash
from impl.phys_mem import BusError, FrameAllocator, Machine
from impl.scm_emu import ScmEmu, ScmError
from memoracle.check_types import refusal_problem
from spec.paging import PAGE_SIZE, RW, US

PAGE = PAGE_SIZE
LARGE = 1 << 21


@dataclass(frozen=True)
class Kit:
    """The classes a probe builds its machine from (a mutant replaces one)."""

    allocator: type[FrameAllocator] = FrameAllocator
    space: type[AddressSpace] = AddressSpace


@dataclass
class Bench:
    """A fresh machine for one probe: DRAM, SCM, an allocator of 4 frames with one
    allocated, an address space with one VMA, one 4 KiB page and one 2 MiB page mapped."""

    kit: Kit
    machine: Machine = field(init=False)
    frames: FrameAllocator = field(init=False)
    space: AddressSpace = field(init=False)
    page: int = field(init=False)
    large: int = field(init=False)
    held: int = field(init=False)

    def __post_init__(self) -> None:
        self.machine = Machine(dram_size=4 << 20, scm_size=1 << 20)
        self.frames = self.kit.allocator(1 << 20, 4)
        self.held = self.frames.alloc()
        self.space = self.kit.space(self.machine, "guards")
        vma = self.space.reserve(4 * LARGE, align=LARGE)
        self.page, self.large = vma.start, vma.start + LARGE
        self.space.map(self.page, self.machine.alloc_frame(), RW | US)
        self.space.store(self.page, b"kept")
        self.space.map(self.large, self.machine.scm_base, RW | US, page_size=LARGE)

    def state(self) -> tuple[object, ...]:
        """What a refusal must leave as it was."""
        return (self.frames.allocated_count, self.frames.free_count, self.frames.is_allocated(self.held),
                self.space.find_leaf(self.page), self.space.find_leaf(self.large), self.space.load(self.page, 4),
                self.machine.frames.allocated_count)  # fmt: skip

    def check(self) -> None:
        self.frames.check_invariants()
        self.machine.check_invariants()
        self.space.check_invariants()


def _exhaust(b: Bench) -> None:
    while True:
        b.frames.alloc()


def _drain_then_refuse(b: Bench) -> None:
    """Allocate the allocator's other frames (they are freed again by the probe's own
    check of the state, so only the refusal is judged)."""
    taken = [b.frames.alloc() for _ in range(b.frames.free_count)]
    try:
        b.frames.alloc()
    finally:
        for frame in taken:
            b.frames.free(frame)


def _double_free(b: Bench) -> None:
    frame = b.frames.alloc()
    b.frames.free(frame)
    b.frames.free(frame)


#: (what is asked, the documented exception, the request).
PROBES: tuple[tuple[str, type[Exception], Callable[[Bench], object]], ...] = (
    ("a frame range not page aligned", ValueError, lambda b: b.kit.allocator(4097, 2)),
    ("a negative frame count", ValueError, lambda b: b.kit.allocator(0, -1)),
    ("a frame from an exhausted allocator", MemoryError, _drain_then_refuse),
    ("zero contiguous frames", ValueError, lambda b: b.frames.alloc_contiguous(0)),
    ("more contiguous frames than there are", MemoryError, lambda b: b.frames.alloc_contiguous(8)),
    ("a double free", ValueError, _double_free),
    ("a free of a frame never allocated", ValueError, lambda b: b.frames.free((1 << 20) + 3 * PAGE)),
    ("a DRAM size that is not a page multiple", ValueError, lambda b: Machine(dram_size=PAGE + 1)),
    ("an SCM range below the end of DRAM", ValueError, lambda b: Machine(dram_size=1 << 20, scm_size=PAGE, scm_base=PAGE)),
    ("a DRAM of one frame", ValueError, lambda b: Machine(dram_size=PAGE)),
    ("an 8-byte read of unbacked memory", BusError, lambda b: b.machine.read_u64(b.machine.scm_end + PAGE)),
    ("a page-table read of unbacked memory", BusError, lambda b: b.machine.read_table(b.machine.scm_end + PAGE)),
    ("an entry with flags in the address bits", ValueError, lambda b: make_entry(PAGE, 1 << 20)),
    ("a misaligned VMA", ValueError, lambda b: b.space.add_vma(PAGE + 1, 4 * PAGE, b.space.vmas()[0].flags)),
    ("a VMA overlapping another", ValueError, lambda b: b.space.add_vma(b.page, b.page + PAGE, b.space.vmas()[0].flags)),
    ("a reservation of zero bytes", ValueError, lambda b: b.space.reserve(0)),
    ("a reservation larger than the user half", MemoryError, lambda b: b.space.reserve(1 << 47)),
    ("the release of a VMA that is a copy of this space's", ValueError,
     lambda b: b.space.release(replace(b.space.vmas()[0], name="copy"))),
    ("a mapping of a misaligned frame", ValueError, lambda b: b.space.map(b.page + 2 * PAGE, PAGE + 8)),
    ("a page mapped twice", ValueError, lambda b: b.space.map(b.page, b.machine.scm_base + PAGE)),
    ("a 4 KiB page inside a 2 MiB page", ValueError, lambda b: b.space.map(b.large + PAGE, b.machine.scm_base)),
    ("a non-canonical address", ValueError, lambda b: b.space.map(1 << 47, b.machine.scm_base)),
    ("the unmap of an unmapped page", ValueError, lambda b: b.space.unmap(b.page + PAGE)),
    ("the protection of an unmapped page", ValueError, lambda b: b.space.protect(b.page + PAGE, False)),
    ("a range that cuts a 2 MiB page", ValueError, lambda b: b.space.unmap_range(b.large + PAGE, b.large + 2 * PAGE)),
    ("a NIC without queues", ValueError, lambda b: Nic(0, 1)),
    ("a NIC of an unknown IRQ mode", ValueError, lambda b: Nic(1, 1, irq_mode="round-robin")),  # type: ignore[arg-type]
    ("a NIC with a short RSS key", ValueError, lambda b: Nic(1, 1, rss_key=bytes(8))),
    ("a NIC rebalancing every 0 packets", ValueError, lambda b: Nic(1, 1, rebalance_interval=0)),
    ("an indirection table of the wrong length", ValueError, lambda b: Nic(2, 2).set_indirection([0])),
    ("the affinity of a queue that does not exist", ValueError, lambda b: Nic(2, 2).set_affinity(2, 1)),
    ("an affinity mask naming no core", ValueError, lambda b: Nic(2, 2).set_affinity(0, 0)),
    ("an IPv4 address of five parts", ValueError, lambda b: ipv4("10.0.0.0.1")),
    ("a Toeplitz key shorter than its input", ValueError, lambda b: toeplitz_hash(bytes(8), bytes(12))),
    ("a read of a hole in physical memory", BusError, lambda b: b.machine.read(b.machine.dram_size, 8)),
    ("a write to a hole in physical memory", BusError, lambda b: b.machine.write(b.machine.dram_size, b"x")),
    ("an 8-byte write to a hole", BusError, lambda b: b.machine.write_u64(b.machine.dram_size, 1)),
    ("a view across a hole", BusError, lambda b: b.machine.view(b.machine.dram_size - 8, 16)),
    ("a load of negative length", ValueError, lambda b: b.space.load(b.page, -1)),
    ("a load where no VMA is", PageFault, lambda b: b.space.load(PAGE, 8)),
    ("a store into a read-only VMA", PageFault,
     lambda b: b.space.store(b.space.add_vma(2 * PAGE, 3 * PAGE, VmaFlags.READ, "read-only").start, b"x")),
    ("an SCM whose size is not a number of cache lines", ScmError, lambda b: ScmEmu(100)),
    ("an SCM image of the wrong size", ScmError, lambda b: ScmEmu(128, image=bytes(64))),
    ("a reboot into an image of the wrong size", ScmError, lambda b: b.machine.scm.reboot(bytes(64))),
    ("an SCM read past its end", ScmError, lambda b: b.machine.scm.read(b.machine.scm.size - 8, 16)),
)


def guard_campaign(kit: Kit = Kit()) -> tuple[int, str | None]:
    """(probes run, ``None`` or the first problem): :func:`adjacent_ranges`, then every
    probe of :data:`PROBES` on a fresh :class:`Bench` of ``kit``; last, loads and stores
    of no bytes read nothing and change nothing."""
    problem = adjacent_ranges()
    if problem is not None:
        return 0, f"adjacent DRAM and SCM: {problem}"
    for n, (what, expected, request) in enumerate(PROBES):
        bench = Bench(kit)
        before = bench.state()
        problem = refusal_problem(what, expected, request, bench)
        if problem is not None:
            return n + 1, problem
        try:
            bench.check()
        except AssertionError as error:
            return n + 1, f"{what}: refused, but the invariants broke: {error}"
        if bench.state() != before:
            return n + 1, f"{what}: refused, but the machine changed: {before} -> {bench.state()}"
    bench = Bench(kit)
    before = bench.state()
    if bench.space.load(bench.page, 0) != b"":
        return len(PROBES), "a load of no bytes read something"
    bench.space.store(bench.page, b"")
    bench.space.ntstore(bench.page, b"")
    if bench.state() != before:
        return len(PROBES), "a store of no bytes changed the machine"
    return len(PROBES), None


def adjacent_ranges() -> str | None:
    """A machine whose SCM begins where DRAM ends (the one layout where an access may
    straddle the two): cached and non-temporal writes across the boundary read back as
    written, byte for byte in each range, through ``read``, ``view`` and ``read_u64``;
    a 4 KiB table reads the same in DRAM and in the SCM. A problem, or None."""
    machine = Machine(dram_size=2 * PAGE, scm_size=2 * PAGE, scm_base=2 * PAGE)
    boundary = machine.dram_size
    for nt, data in ((False, bytes(range(1, 17))), (True, bytes(range(101, 117)))):
        machine.write(boundary - 8, data, nt)
        if machine.read(boundary - 8, 16) != data or bytes(machine.view(boundary - 8, 16)) != data:
            return f"16 bytes written across DRAM's end (nt={nt}) read back differently"
        if bytes(machine.dram[boundary - 8 :]) != data[:8] or machine.scm.read(0, 8) != data[8:]:
            return f"16 bytes written across DRAM's end (nt={nt}) are not split between DRAM and SCM"
        if machine.read_u64(boundary) != int.from_bytes(data[8:], "little"):
            return "the SCM's first word does not read as written"
    if not machine.is_scm(boundary) or machine.is_dram(boundary) or not machine.is_dram(boundary - 1):
        return "the boundary is in the wrong range"
    table = bytes(range(256)) * 16
    machine.write(PAGE, table)
    machine.write(boundary, table)
    if machine.read_table(PAGE) != machine.read_table(boundary):
        return "a table in DRAM and the same table in the SCM read differently"
    return None


# ------------------------------------------------------------------ mutants


class _ForgivingAllocator(FrameAllocator):
    """A free of a frame that is not allocated is ignored (no double-free guard)."""

    def free(self, paddr: int) -> None:
        if self.is_allocated(paddr):
            super().free(paddr)  # BUG: a double free passes silently


class _OverwritingSpace(AddressSpace):
    """Mapping a mapped page replaces its mapping (no already-mapped guard)."""

    def map(self, va: int, frame_paddr: int, flags: int = RW | US, *, page_size: int = PAGE_SIZE) -> None:
        if page_size == PAGE_SIZE and self.find_leaf(va) is not None:
            self.unmap(va)  # BUG: the old mapping is dropped
        super().map(va, frame_paddr, flags, page_size=page_size)


#: Emulators with one guard left out; :func:`guard_campaign` must catch each.
GUARD_MUTANTS: dict[str, Kit] = {
    "double_free_ignored": Kit(allocator=_ForgivingAllocator),
    "map_overwrites": Kit(space=_OverwritingSpace),
}

__all__ = ["GUARD_MUTANTS", "PROBES", "Bench", "Kit", "adjacent_ranges", "guard_campaign"]
