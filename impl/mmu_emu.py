"""The emulated MMU: x86-64 4-level page tables in emulated memory, a TLB, page faults.

Public face of the emulated machine's memory: it re-exports :class:`Machine`,
:class:`FrameAllocator`, :class:`BusError` and ``SCM_BASE`` from :mod:`impl.phys_mem`
and adds :class:`AddressSpace` (a process), :class:`Vma`, :class:`PageFault` and the
counters. Page tables are real: 512 little-endian 8-byte entries in DRAM or SCM frames,
in the format of :mod:`spec.paging`; this module does its own walk, which the tests
compare with ``spec.paging.walk``.

Choices where x86-64 / Linux leave freedom:

- ``CR0.WP = 1`` (a supervisor write to a read-only page faults); no SMEP/SMAP (the
  supervisor may read and write user pages); no NX checks (nothing executes); no PCID:
  each :class:`AddressSpace` has its own TLB, as if it ran on its own core, so switching
  between spaces never needs a flush.
- Rights are the AND of the writable/user bits at every level. Tables created by this
  module for intermediate levels get ``P|RW|US`` (as Linux does): rights live in leaves.
- The TLB is one unified, bounded, deterministic cache of :data:`TLB_CAPACITY` (1536)
  entries of any page size (4 KiB, 2 MiB, 1 GiB), evicted FIFO in fill order (an
  ``OrderedDict``); a hit does not refresh an entry. It is **stale by design**: changing
  an entry in memory does not touch it. ``map``/``unmap``/``protect`` invalidate the
  page themselves (as a kernel would); the raw :meth:`AddressSpace.write_entry` does
  **not** — its caller must ``invlpg``/``flush_tlb``.
- A TLB entry caches the effective rights and the leaf's dirty state. A lookup that finds
  an entry with too few rights for the access (not writable, not user, or a write to a
  clean entry) re-walks the tables instead of faulting on the cached rights; that is
  what hardware does for the dirty bit, and for rights it is the same as a spurious
  fault followed by the retry the OS does. A page fault drops the TLB entries covering
  the faulting address (SDM §4.10.4.1).
- The walk sets the accessed bit of every present non-leaf entry it reads (also when the
  walk then faults) and, for a permitted access, the accessed bit of the leaf and, for a
  write, its dirty bit. Each bit update is one 8-byte store of the entry (through
  ``scm.store`` when the table is in SCM), made only if the bit is not already set, and
  counted in ``pte_writes`` and ``ad_updates``. ``pte_writes`` counts every write of an
  entry, by the walker or by software.
- Loads and stores of any length go page by page, like a ``memcpy``: a store that faults
  part-way leaves the earlier pages written. Physically contiguous pages are coalesced
  into one copy (one ``scm.store`` for an SCM run).
- Faults: an access that faults is offered, in order, to the VMA's own handler and to
  the space's chain (``fault_handlers``, by default only :func:`demand_zero_handler`),
  after the VMA's rights are checked the way Linux's ``do_page_fault`` does (a write
  needs ``WRITE``, a read ``READ`` or ``WRITE``); a reserved-bit fault, an address
  outside every VMA, or a fault nobody handles is raised as :class:`PageFault`. A
  handled fault retries the access, at most :data:`MAX_FAULT_RETRIES` times.
- Demand-zero simplification: a not-present fault in an ``ANON`` VMA allocates a zeroed
  DRAM frame for reads and writes alike (no shared zero page).
- :meth:`AddressSpace.reserve` places a range at the lowest address at or above
  :data:`RESERVE_BASE` (``0x1000_0000_0000``, 16 TiB) that fits with the requested
  alignment, below :data:`USER_TOP` (128 TiB).
- A non-canonical address raises :class:`PageFault` with error code 0 and reason
  ``"non-canonical"`` (hardware raises #GP), as ``spec.paging.walk`` reports it.
- :meth:`AddressSpace.check_invariants` lets a TLB entry disagree with the tables only
  if it was filled before a raw ``write_entry`` over its range (legal until
  invalidated). Any other disagreement is reported: a table changed behind the space's
  back (``Machine.write_u64``, a store through a page that maps a table, another space
  editing a shared file table) without an ``invlpg`` is exactly the missing-shootdown
  bug the check exists to find.
- Frames: the space owns its page-table frames (freed by :meth:`AddressSpace.destroy`);
  data frames belong to whoever mapped them — ``unmap`` returns the frame and does not
  free it, demand-zero frames included.
"""

from __future__ import annotations

import bisect
import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

from impl.phys_mem import SCM_BASE, BusError, FrameAllocator, Machine
from spec.paging import (
    ADDR_MASK,
    LEVEL_NAMES,
    LEVEL_SHIFT,
    LEVEL_SPAN,
    PAGE_SIZE,
    PD,
    PDPT,
    PF_PRESENT,
    PF_RSVD,
    PF_USER,
    PF_WRITE,
    PML4,
    PS,
    PT,
    RW,
    US,
    A,
    D,
    P,
    Translation,
    WalkFault,
)

__all__ = [
    "SCM_BASE", "BusError", "FrameAllocator", "Machine", "AddressSpace", "Vma",
    "VmaFlags", "PageFault", "MmuCounters", "FaultHandler", "demand_zero_handler",
    "TLB_CAPACITY", "MAX_FAULT_RETRIES", "RESERVE_BASE", "USER_TOP", "is_canonical",
    "make_entry",
]  # fmt: skip

#: Number of TLB entries (all page sizes together).
TLB_CAPACITY = 1536
#: How many handled faults one translation may go through before the fault is raised.
MAX_FAULT_RETRIES = 3
#: Lowest virtual address :meth:`AddressSpace.reserve` hands out (16 TiB).
RESERVE_BASE = 0x1000_0000_0000
#: End of the user half of the canonical address space (128 TiB).
USER_TOP = 0x8000_0000_0000

# Rights bits in a TLB entry.
_R_USER, _R_WRITE, _R_DIRTY = 1, 2, 4
# TLB keys: vpn for 4 KiB entries; tagged large-page numbers for 2 MiB / 1 GiB.
_TAG_2M, _TAG_1G = 1 << 62, 1 << 63
_INTERMEDIATE = P | RW | US
_LEVELS_TOP_DOWN = (PML4, PDPT, PD, PT)


_LOW_48 = (1 << 48) - 1
_HIGH_16 = ((1 << 64) - 1) ^ _LOW_48


def is_canonical(va: int) -> bool:
    """Whether the MMU accepts ``va``: its bits 63..48 are the sign extension of bit 47.

    The MMU's own test, written apart from :func:`spec.paging.is_canonical` (which the
    spec's walk uses) so that the MMU-against-spec check compares two answers.
    """
    low = va & _LOW_48
    return va == (low | _HIGH_16 if low >> 47 else low)


def make_entry(paddr: int, flags: int) -> int:
    """The page-table entry the MMU reads as "frame ``paddr``, ``flags``".

    ``paddr`` must be a 4 KiB-aligned physical address below 2**52 and ``flags`` must
    not touch the address bits (:class:`ValueError` otherwise). The implementation's
    own encoder; tests compare it with :func:`spec.paging.make_entry`.
    """
    if paddr & ~ADDR_MASK or flags & ADDR_MASK or flags >> 64:
        raise ValueError(f"no entry holds frame {paddr:#x} with flags {flags:#x}")
    return paddr | flags


def _tlb_key(va: int, span: int) -> int:
    if span == PAGE_SIZE:
        return va >> 12
    if span == LEVEL_SPAN[PD]:
        return (va >> 21) | _TAG_2M
    return (va >> 30) | _TAG_1G


# A TLB entry: (paddr - vaddr, end of the page's virtual range, rights, fill seq, size).
_TlbEntry = tuple[int, int, int, int, int]


class VmaFlags(enum.IntFlag):
    """Flags of a virtual memory area.

    ``ANON`` areas are demand-zero; ``RETAIN`` is UMFS's "keep this range while the
    process is blocked" (like ``VM_LOCKED``); ``MERGEABLE`` is KSM's ``MADV_MERGEABLE``.
    """

    READ = 1
    WRITE = 2
    ANON = 4
    RETAIN = 8
    MERGEABLE = 16


class PageFault(Exception):
    """A page fault: ``va``, x86 ``error_code`` (``PF_*`` bits of :mod:`spec.paging`),
    the table ``level`` where the walk stopped (the leaf for a protection fault), and
    the ``reason`` in words."""

    def __init__(self, va: int, error_code: int, level: int, reason: str) -> None:
        super().__init__(va, error_code, level, reason)
        self.va = va
        self.error_code = error_code
        self.level = level
        self.reason = reason

    def __str__(self) -> str:
        return (f"page fault at {self.va:#x} (error code {self.error_code:#x}, "
                f"level {self.level}): {self.reason}")  # fmt: skip

    @property
    def write(self) -> bool:
        """Whether the faulting access was a write."""
        return bool(self.error_code & PF_WRITE)

    @property
    def protection(self) -> bool:
        """Whether the fault is a protection violation (the entry was present)."""
        return bool(self.error_code & PF_PRESENT)


FaultHandler = Callable[["AddressSpace", "Vma", PageFault], bool]
"""A fault handler: ``(space, vma, fault) -> handled``; True means "retry the access"."""


@dataclass
class Vma:
    """A virtual memory area ``[start, end)`` with its flags, name and optional fault
    handler (tried before the space's chain). ``start``/``end`` must not be changed
    once the VMA is in a space; ``flags`` and ``fault_handler`` may be."""

    start: int
    end: int
    flags: VmaFlags
    name: str = ""
    fault_handler: FaultHandler | None = None

    def __contains__(self, va: int) -> bool:
        """Whether ``va`` lies in ``[start, end)``."""
        return self.start <= va < self.end


@dataclass
class MmuCounters:
    """Event counts of one address space's MMU. ``tlb_hits``/``tlb_misses`` count one
    lookup per page (of any size) touched by an access; ``walks`` counts every table
    walk the MMU made (misses, re-walks, retries after a handled fault); ``pte_writes``
    every 8-byte entry write (software and walker), ``ad_updates`` the walker's share;
    ``invlpgs`` includes those ``map``/``unmap``/``protect`` issue themselves."""

    walks: int = 0
    tlb_hits: int = 0
    tlb_misses: int = 0
    pte_writes: int = 0
    ad_updates: int = 0
    faults: int = 0
    invlpgs: int = 0
    tlb_flushes: int = 0


class _Leaf(NamedTuple):
    """A successful walk: the page's virtual and physical base, its size, the
    effective rights, the leaf's dirty bit and the entries read (top first)."""

    vbase: int
    pbase: int
    size: int
    writable: bool
    user: bool
    dirty: bool
    entry_addrs: tuple[int, ...]


def demand_zero_handler(space: AddressSpace, vma: Vma, fault: PageFault) -> bool:
    """Built-in handler: a not-present fault in an ``ANON`` VMA maps a fresh zeroed DRAM
    frame at the faulting page, writable iff the VMA is, user-accessible."""
    if fault.protection or not vma.flags & VmaFlags.ANON:
        return False
    frame = space.machine.alloc_frame()
    flags = US | (RW if vma.flags & VmaFlags.WRITE else 0)
    space.map(fault.va & ~(PAGE_SIZE - 1), frame, flags)
    return True


class AddressSpace:
    """A process: a root PML4 frame (``cr3``), its VMAs, a TLB and counters.

    Guarantees: translations agree with ``spec.paging.walk`` over the same memory except
    for TLB entries made stale by raw :meth:`write_entry` calls not yet invalidated;
    ``map``/``unmap``/``protect`` leave no stale TLB entry for the page they change;
    every entry write lands in emulated memory (through ``scm.store`` for SCM tables).
    """

    def __init__(self, machine: Machine, name: str = "") -> None:
        self.machine = machine
        self.name = name
        self.cr3 = machine.alloc_frame()
        self.counters = MmuCounters()
        self.fault_handlers: list[FaultHandler] = [demand_zero_handler]
        self._table_frames: set[int] = {self.cr3}
        self._vmas: list[Vma] = []
        self._vma_starts: list[int] = []
        self._tlb: OrderedDict[int, _TlbEntry] = OrderedDict()
        self._seq = 0
        #: Raw write_entry calls since the last flush: (va start, va end, seq).
        self._raw_writes: list[tuple[int, int, int]] = []

    # -- VMAs ------------------------------------------------------------------------
    def vmas(self) -> list[Vma]:
        """The VMAs, sorted by start address."""
        return list(self._vmas)

    def find_vma(self, va: int) -> Vma | None:
        """The VMA containing ``va``, or None."""
        i = bisect.bisect_right(self._vma_starts, va) - 1
        if i >= 0 and va < self._vmas[i].end:
            return self._vmas[i]
        return None

    def add_vma(
        self, start: int, end: int, flags: VmaFlags, name: str = "",
        fault_handler: FaultHandler | None = None,
    ) -> Vma:  # fmt: skip
        """Record the VMA ``[start, end)`` at a fixed place; ``ValueError`` if it is not
        page aligned, not in the user half, or overlaps an existing VMA."""
        if start % PAGE_SIZE or end % PAGE_SIZE or not 0 <= start < end <= USER_TOP:
            raise ValueError(f"bad VMA range [{start:#x}, {end:#x})")
        i = bisect.bisect_right(self._vma_starts, start)
        if (i > 0 and self._vmas[i - 1].end > start) or (
            i < len(self._vmas) and self._vmas[i].start < end
        ):
            raise ValueError(f"VMA [{start:#x}, {end:#x}) overlaps an existing VMA")
        vma = Vma(start, end, flags, name, fault_handler)
        self._vmas.insert(i, vma)
        self._vma_starts.insert(i, start)
        return vma

    def reserve(
        self, size: int, align: int = PAGE_SIZE, flags: VmaFlags = VmaFlags.READ | VmaFlags.WRITE,
        name: str = "", fault_handler: FaultHandler | None = None,
    ) -> Vma:  # fmt: skip
        """Reserve the lowest free ``size``-byte range at or above ``RESERVE_BASE``
        aligned to ``align`` (a power of two multiple of 4 KiB) and record it as a VMA.
        Nothing is mapped. ``MemoryError`` if the user half has no such gap."""
        if size <= 0 or size % PAGE_SIZE or align % PAGE_SIZE or align & (align - 1):
            raise ValueError("size and align must be positive page multiples, align a power of 2")
        candidate = RESERVE_BASE
        i = bisect.bisect_right(self._vma_starts, candidate)
        if i > 0:
            candidate = max(candidate, self._vmas[i - 1].end)
        while True:
            candidate = (candidate + align - 1) & ~(align - 1)
            if candidate + size > USER_TOP:
                raise MemoryError(f"no free {size:#x}-byte range aligned to {align:#x}")
            if i == len(self._vmas) or candidate + size <= self._vmas[i].start:
                return self.add_vma(candidate, candidate + size, flags, name, fault_handler)
            candidate = max(candidate, self._vmas[i].end)
            i += 1

    def map_anonymous(
        self, size: int, flags: VmaFlags = VmaFlags.READ | VmaFlags.WRITE,
        name: str = "anon", align: int = PAGE_SIZE,
    ) -> Vma:  # fmt: skip
        """Reserve a demand-zero (``ANON``) VMA; pages appear zeroed on first touch."""
        return self.reserve(size, align, flags | VmaFlags.ANON, name)

    def release(self, vma: Vma) -> None:
        """Remove ``vma``. Mappings in its range are left alone: the caller unmaps them
        (``unmap_range``) or detaches a spliced table (``write_entry`` + invalidate)."""
        i = bisect.bisect_left(self._vma_starts, vma.start)
        if i == len(self._vmas) or self._vmas[i] is not vma:
            raise ValueError(f"VMA {vma} is not in this space")
        del self._vmas[i]
        del self._vma_starts[i]

    # -- page-table entries ----------------------------------------------------------
    def _entry_addr(self, va: int, level: int, create: bool) -> int | None:
        """Physical address of the entry at ``level`` covering ``va``; missing tables
        above it are created when ``create`` (else None is returned)."""
        if not is_canonical(va):
            raise ValueError(f"non-canonical address {va:#x}")
        machine = self.machine
        table = self.cr3
        for upper in _LEVELS_TOP_DOWN[: PML4 - level]:
            addr = table + 8 * ((va >> LEVEL_SHIFT[upper]) & 511)
            entry = machine.read_u64(addr)
            if entry & P and (entry & PS):
                raise ValueError(f"{va:#x} is covered by a large page at {LEVEL_NAMES[upper]}")
            if not entry & P:
                if not create:
                    return None
                new_table = machine.alloc_frame()
                self._table_frames.add(new_table)
                entry = new_table | _INTERMEDIATE
                self._write_pte(addr, entry)
            table = entry & ADDR_MASK
        return table + 8 * ((va >> LEVEL_SHIFT[level]) & 511)

    def _write_pte(self, addr: int, value: int) -> None:
        self.machine.write_u64(addr, value)
        self.counters.pte_writes += 1

    def read_entry(self, va: int, level: int) -> int:
        """The entry at ``level`` (4 = PML4 .. 1 = PT) covering ``va``; 0 when a table
        above it is missing; ``ValueError`` when a large page above covers ``va``."""
        addr = self._entry_addr(va, level, create=False)
        return 0 if addr is None else self.machine.read_u64(addr)

    def write_entry(self, va: int, level: int, value: int) -> None:
        """Write ``value`` into the entry at ``level`` covering ``va`` — one 8-byte
        store (plus one per missing table above it, which is created). Writing a
        table's address with ``P`` splices the whole table in (a PML4 entry maps
        512 GiB). The TLB is NOT invalidated: call :meth:`invlpg` or
        :meth:`flush_tlb`; until then stale translations may be used (deliberately)."""
        addr = self._entry_addr(va, level, create=True)
        assert addr is not None
        self._write_pte(addr, value)
        span = LEVEL_SPAN[level]
        self._seq += 1
        start = va & ~(span - 1)
        self._raw_writes.append((start, start + span, self._seq))
        if len(self._raw_writes) > 64:  # forget writes older than every TLB entry
            oldest = min((e[3] for e in self._tlb.values()), default=self._seq + 1)
            self._raw_writes = [w for w in self._raw_writes if w[2] > oldest]

    def find_leaf(self, va: int) -> tuple[int, int, int] | None:
        """``(level, entry address, entry)`` of the present leaf mapping ``va``, or None
        when no present leaf maps it. Reads only; sets no bit."""
        table = self.cr3
        for level in _LEVELS_TOP_DOWN:
            addr = table + 8 * ((va >> LEVEL_SHIFT[level]) & 511)
            entry = self.machine.read_u64(addr)
            if not entry & P or (level == PML4 and entry & PS):
                return None
            if level == PT or entry & PS:
                return level, addr, entry
            table = entry & ADDR_MASK
        return None  # pragma: no cover - the loop always returns at PT

    def map(self, va: int, frame_paddr: int, flags: int = RW | US, *, page_size: int = PAGE_SIZE) -> None:
        """Map the page of ``page_size`` (4 KiB, 2 MiB or 1 GiB) at ``va`` to
        ``frame_paddr`` with entry ``flags`` (``P``, and ``PS`` for large pages, are
        added), creating missing tables. ``ValueError`` if misaligned or already
        mapped. Invalidates the page's TLB entry."""
        level = {PAGE_SIZE: PT, LEVEL_SPAN[PD]: PD, LEVEL_SPAN[PDPT]: PDPT}.get(page_size)
        if level is None or va % page_size or frame_paddr % page_size:
            raise ValueError(f"bad mapping {va:#x} -> {frame_paddr:#x} of size {page_size:#x}")
        addr = self._entry_addr(va, level, create=True)
        assert addr is not None
        if self.machine.read_u64(addr) & P:
            raise ValueError(f"{va:#x} is already mapped at {LEVEL_NAMES[level]}")
        self._write_pte(addr, (frame_paddr & ADDR_MASK) | flags | P | (PS if level != PT else 0))
        self.invlpg(va)

    def unmap(self, va: int) -> int:
        """Clear the leaf (of any size) mapping ``va`` and invalidate it; return the
        physical base of the page it mapped (not freed). ``ValueError`` if unmapped."""
        leaf = self.find_leaf(va)
        if leaf is None:
            raise ValueError(f"{va:#x} is not mapped")
        level, addr, entry = leaf
        self._write_pte(addr, 0)
        self.invlpg(va)
        return entry & ADDR_MASK & ~(LEVEL_SPAN[level] - 1)

    def protect(self, va: int, writable: bool) -> None:
        """Set or clear the writable bit of the leaf mapping ``va`` and invalidate it.
        ``ValueError`` if unmapped."""
        leaf = self.find_leaf(va)
        if leaf is None:
            raise ValueError(f"{va:#x} is not mapped")
        _, addr, entry = leaf
        self._write_pte(addr, (entry | RW) if writable else (entry & ~RW))
        self.invlpg(va)

    def unmap_range(self, start: int, end: int) -> list[int]:
        """Unmap every present leaf in ``[start, end)`` (large pages must lie wholly
        inside) and return the page bases they mapped, in address order. Missing
        tables are skipped by their whole span, so sparse ranges are cheap."""
        frames: list[int] = []
        va = start
        while va < end:
            table, step = self.cr3, LEVEL_SPAN[PT]
            for level in _LEVELS_TOP_DOWN:
                span = LEVEL_SPAN[level]
                addr = table + 8 * ((va >> LEVEL_SHIFT[level]) & 511)
                entry = self.machine.read_u64(addr)
                step = span - (va & (span - 1))
                if not entry & P or (level == PML4 and entry & PS):
                    break  # nothing mapped here (a PML4 "large page" maps nothing)
                if level == PT or entry & PS:
                    if va & (span - 1) or va + span > end:
                        raise ValueError(f"range cuts the large page at {va:#x}")
                    frames.append(self.unmap(va))
                    break
                table = entry & ADDR_MASK
            va += step
        return frames

    # -- TLB -------------------------------------------------------------------------
    def invlpg(self, va: int) -> None:
        """Drop the TLB entries (of every size) covering ``va``."""
        self._drop_tlb(va)
        self.counters.invlpgs += 1
        if self._raw_writes:
            # A raw write to this page's own PT entry can no longer leave a stale
            # translation: every TLB entry covering the page is gone.
            page = va & ~(PAGE_SIZE - 1)
            self._raw_writes = [w for w in self._raw_writes if w[0] != page or w[1] != page + PAGE_SIZE]

    def _drop_tlb(self, va: int) -> None:
        tlb = self._tlb
        tlb.pop(va >> 12, None)
        tlb.pop((va >> 21) | _TAG_2M, None)
        tlb.pop((va >> 30) | _TAG_1G, None)

    def flush_tlb(self) -> None:
        """Drop every TLB entry (a CR3 reload without global pages)."""
        self._tlb.clear()
        self._raw_writes.clear()
        self.counters.tlb_flushes += 1

    @property
    def tlb_size(self) -> int:
        """How many entries the TLB holds now."""
        return len(self._tlb)

    def _fill(self, leaf: _Leaf, va: int) -> _TlbEntry:
        tlb = self._tlb
        vbase, size = leaf.vbase, leaf.size
        rights = (_R_USER if leaf.user else 0) | (_R_WRITE if leaf.writable else 0)
        rights |= _R_DIRTY if leaf.dirty else 0
        self._seq += 1
        entry = (leaf.pbase - vbase, vbase + size, rights, self._seq, size)
        self._drop_tlb(va)  # no other-size entry for ``va`` may shadow the new one
        if len(tlb) >= TLB_CAPACITY:
            tlb.popitem(last=False)
        tlb[_tlb_key(vbase, size)] = entry
        return entry

    # -- translation -----------------------------------------------------------------
    def _walk(self, va: int, write: bool, user: bool, update: bool) -> _Leaf | PageFault:
        """Walk the tables for one access; with ``update`` set the A/D bits."""
        if not is_canonical(va):
            return PageFault(va, 0, PML4, "non-canonical")
        access = (PF_WRITE if write else 0) | (PF_USER if user else 0)
        machine = self.machine
        table = self.cr3
        writable = user_ok = True
        addrs: list[int] = []
        for level in _LEVELS_TOP_DOWN:
            addr = table + 8 * ((va >> LEVEL_SHIFT[level]) & 511)
            addrs.append(addr)
            entry = machine.read_u64(addr)
            if not entry & P:
                return PageFault(va, access, level, f"{LEVEL_NAMES[level]} entry not present")
            if level == PML4 and entry & PS:
                return PageFault(va, access | PF_PRESENT | PF_RSVD, level, "page-size bit set in a PML4 entry")
            writable = writable and bool(entry & RW)
            user_ok = user_ok and bool(entry & US)
            if level == PT or entry & PS:
                if write and not writable:
                    return PageFault(va, access | PF_PRESENT, level, "write to a read-only page")
                if user and not user_ok:
                    return PageFault(va, access | PF_PRESENT, level, "user access to a supervisor page")
                want = A | D if write else A
                if update and entry & want != want:
                    entry |= want
                    self._write_pte(addr, entry)
                    self.counters.ad_updates += 1
                span = LEVEL_SPAN[level]
                return _Leaf(va & ~(span - 1), entry & ADDR_MASK & ~(span - 1), span,
                             writable, user_ok, bool(entry & D), tuple(addrs))  # fmt: skip
            if update and not entry & A:
                self._write_pte(addr, entry | A)
                self.counters.ad_updates += 1
            table = entry & ADDR_MASK
        raise AssertionError("unreachable: the PT level always ends the walk")

    def peek(self, va: int, write: bool = False, user: bool = True) -> Translation | WalkFault:
        """What the tables say about an access right now, in ``spec.paging`` terms —
        without the TLB, without setting A/D bits, without calling fault handlers."""
        result = self._walk(va, write, user, update=False)
        if isinstance(result, PageFault):
            return WalkFault(result.va, result.error_code, result.level, result.reason)
        return Translation(va, result.pbase | (va - result.vbase), result.size,
                           result.writable, result.user, result.entry_addrs)  # fmt: skip

    def _resolve(self, va: int, write: bool, user: bool) -> _TlbEntry:
        """The TLB entry for an access at ``va`` (TLB first, else a walk with fault
        handling and a fill). Raises :class:`PageFault` if the access cannot proceed."""
        need = (_R_WRITE | _R_DIRTY if write else 0) | (_R_USER if user else 0)
        tlb = self._tlb
        for key in (va >> 12, (va >> 21) | _TAG_2M, (va >> 30) | _TAG_1G):
            cached = tlb.get(key)
            if cached is not None:
                if cached[2] & need == need:
                    self.counters.tlb_hits += 1
                    return cached
                break
        self.counters.tlb_misses += 1
        for attempt in range(MAX_FAULT_RETRIES + 1):
            self.counters.walks += 1
            result = self._walk(va, write, user, update=True)
            if isinstance(result, _Leaf):
                return self._fill(result, va)
            self.counters.faults += 1
            self._drop_tlb(va)
            if attempt == MAX_FAULT_RETRIES:
                result.reason += f" (still faulting after {MAX_FAULT_RETRIES} handled faults)"
                raise result
            if not self._handle_fault(result):
                raise result
        raise AssertionError("unreachable")

    def _handle_fault(self, fault: PageFault) -> bool:
        if fault.error_code & PF_RSVD or not is_canonical(fault.va):
            return False
        vma = self.find_vma(fault.va)
        if vma is None:
            fault.reason += "; no VMA covers the address"
            return False
        allowed = VmaFlags.WRITE if fault.write else VmaFlags.READ | VmaFlags.WRITE
        if not vma.flags & allowed:
            fault.reason += f"; VMA {vma.name!r} does not allow the access"
            return False
        chain = ([vma.fault_handler] if vma.fault_handler else []) + self.fault_handlers
        return any(handler(self, vma, fault) for handler in chain)

    def register_fault_handler(self, handler: FaultHandler, *, first: bool = False) -> None:
        """Add ``handler`` to the space's chain (at the front when ``first``)."""
        if first:
            self.fault_handlers.insert(0, handler)
        else:
            self.fault_handlers.append(handler)

    def translate(self, va: int, write: bool = False, user: bool = True) -> int:
        """The physical address for an access at ``va``, through the TLB, setting A/D
        bits and running fault handlers like a real access. Raises :class:`PageFault`."""
        entry = self._resolve(va, write, user)
        return va + entry[0]

    # -- data access -----------------------------------------------------------------
    def load(self, va: int, length: int, user: bool = True) -> bytes:
        """The ``length`` bytes at ``va``, read page by page through the MMU (SCM pages
        read the SCM's visible contents). Raises :class:`PageFault`."""
        if length <= 0:
            if length == 0:
                return b""
            raise ValueError("negative length")
        end = va + length
        tlb_get = self._tlb.get
        machine = self.machine
        view, dram, dram_size = machine.view, machine.dram_view, machine.dram_size
        need = _R_USER if user else 0
        parts: list[bytes | memoryview] = []
        copied = 0  # parts[:copied] are bytes; later ones are views into memory
        run_start = run_end = -1
        hits = 0
        pos = va
        try:
            while pos < end:
                entry = tlb_get(pos >> 12)
                if entry is None or entry[2] & need != need:
                    # Copy what was read so far before a fault handler can change memory.
                    if run_start >= 0:
                        parts.append(view(run_start, run_end - run_start))
                        run_start = run_end = -1
                    for i in range(copied, len(parts)):
                        parts[i] = bytes(parts[i])
                    copied = len(parts)
                    entry = self._resolve(pos, False, user)
                else:
                    hits += 1
                delta = entry[0]
                paddr = pos + delta
                if paddr != run_end:
                    if run_start >= 0:  # DRAM runs are sliced inline: the hot path
                        parts.append(dram[run_start:run_end] if run_end <= dram_size
                                     else view(run_start, run_end - run_start))  # fmt: skip
                    run_start = paddr
                pos = entry[1]  # the end of this page, possibly past ``end``
                run_end = pos + delta
        finally:
            self.counters.tlb_hits += hits
        parts.append(view(run_start, run_end - (pos - end) - run_start))
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    def store(self, va: int, data: bytes | bytearray | memoryview, user: bool = True) -> None:
        """Store ``data`` at ``va`` page by page (SCM pages through ``scm.store``). A
        fault part-way raises :class:`PageFault` with the earlier pages written."""
        self._store(va, data, user, nt=False)

    def ntstore(self, va: int, data: bytes | bytearray | memoryview, user: bool = True) -> None:
        """Like :meth:`store`, but SCM pages get ``scm.ntstore`` (non-temporal)."""
        self._store(va, data, user, nt=True)

    def _store(self, va: int, data: bytes | bytearray | memoryview, user: bool, nt: bool) -> None:
        src = memoryview(data).cast("B")
        end = va + len(src)
        tlb_get = self._tlb.get
        write = self.machine.write
        need = _R_WRITE | _R_DIRTY | (_R_USER if user else 0)
        run_start = run_end = -1  # physical run not yet written, for src[run_src:]
        run_src = 0
        hits = 0
        pos = va
        try:
            while pos < end:
                entry = tlb_get(pos >> 12)
                if entry is None or entry[2] & need != need:
                    if run_start >= 0:  # earlier pages are written before this one can fault
                        write(run_start, src[run_src : run_src + run_end - run_start], nt)
                        run_start = run_end = -1
                    entry = self._resolve(pos, True, user)
                else:
                    hits += 1
                delta = entry[0]
                paddr = pos + delta
                if paddr != run_end:
                    if run_start >= 0:
                        write(run_start, src[run_src : run_src + run_end - run_start], nt)
                    run_start, run_src = paddr, pos - va
                pos = entry[1]
                run_end = pos + delta
        finally:
            self.counters.tlb_hits += hits
        if run_start >= 0:
            write(run_start, src[run_src:], nt)

    def _cache_op(self, va: int, op: str) -> None:
        paddr = self.translate(va, write=False)
        machine = self.machine
        if machine.is_scm(paddr):
            getattr(machine.scm, op)(paddr - machine.scm_base)

    def clwb(self, va: int) -> None:
        """Write back the cache line of ``va`` if it is SCM (needs read access)."""
        self._cache_op(va, "clwb")

    def clflushopt(self, va: int) -> None:
        """``clflushopt`` the cache line of ``va`` if it is SCM (needs read access)."""
        self._cache_op(va, "clflushopt")

    def clflush(self, va: int) -> None:
        """``clflush`` the cache line of ``va`` if it is SCM (needs read access)."""
        self._cache_op(va, "clflush")

    def sfence(self) -> None:
        """Store fence, forwarded to the machine's SCM."""
        self.machine.scm.sfence()

    # -- lifetime and invariants -----------------------------------------------------
    def destroy(self) -> None:
        """Free the page-table frames this space allocated and drop its TLB and VMAs.
        Data frames and spliced-in tables are not freed (they are not the space's)."""
        for frame in sorted(self._table_frames):
            self.machine.free_frame(frame)
        self._table_frames.clear()
        self._tlb.clear()
        self._vmas.clear()
        self._vma_starts.clear()

    def _maybe_stale(self, vstart: int, vend: int, seq: int) -> bool:
        return any(s < vend and vstart < e and seq < w for s, e, w in self._raw_writes)

    def check_invariants(self) -> None:
        """Assert every internal invariant: the machine's; VMAs sorted, aligned, in the
        user half, non-overlapping; the space's table frames allocated; every DRAM
        table and every DRAM frame under a present leaf reachable from ``cr3``
        allocated; the TLB within capacity, keyed right, and — except entries filled
        before a raw ``write_entry`` over their range — equal to a fresh walk (same
        frame, size and rights; dirty only if the leaf is dirty)."""
        machine = self.machine
        machine.check_invariants()
        frames = machine.frames
        assert self._vma_starts == [v.start for v in self._vmas], "VMA start index out of date"
        previous_end = 0
        for vma in self._vmas:
            assert vma.start % PAGE_SIZE == 0 and vma.end % PAGE_SIZE == 0, f"unaligned {vma}"
            assert vma.start < vma.end <= USER_TOP, f"empty or non-user {vma}"
            assert vma.start >= previous_end, f"VMAs overlap or unsorted at {vma}"
            previous_end = vma.end
        for frame in self._table_frames:
            assert frames.is_allocated(frame), f"page-table frame {frame:#x} is not allocated"
        assert self.cr3 in self._table_frames or not self._table_frames, "cr3 not owned"
        if self._table_frames:
            self._check_tables()
        assert len(self._tlb) <= TLB_CAPACITY, "TLB over capacity"
        for key, (delta, vend, rights, seq, size) in self._tlb.items():
            vbase = vend - size
            assert key == _tlb_key(vbase, size) and vbase % size == 0, f"bad TLB key {key:#x}"
            assert seq <= self._seq, "TLB entry from the future"
            if self._maybe_stale(vbase, vend, seq):
                continue
            leaf = self._walk(vbase, False, False, update=False)
            assert isinstance(leaf, _Leaf), f"TLB maps {vbase:#x} but the tables fault: {leaf}"
            assert (leaf.size, leaf.pbase - vbase) == (size, delta), (
                f"TLB entry for {vbase:#x} disagrees with the tables on frame or size")
            assert bool(rights & _R_WRITE) == leaf.writable, f"TLB write right wrong at {vbase:#x}"
            assert bool(rights & _R_USER) == leaf.user, f"TLB user right wrong at {vbase:#x}"
            assert leaf.dirty or not rights & _R_DIRTY, f"TLB dirty but leaf clean at {vbase:#x}"

    def _check_tables(self) -> None:
        machine, frames = self.machine, self.machine.frames
        seen: set[tuple[int, int]] = set()
        pending = [(self.cr3, PML4)]
        while pending:
            table, level = pending.pop()
            if (table, level) in seen:
                continue
            seen.add((table, level))
            if machine.is_dram(table):
                assert frames.is_allocated(table), f"{LEVEL_NAMES[level]} table {table:#x} is free"
            try:
                entries = machine.read_table(table)
            except BusError as exc:
                raise AssertionError(f"{LEVEL_NAMES[level]} table in a hole: {exc}") from None
            for entry in entries:
                if not entry & P or (level == PML4 and entry & PS):
                    continue
                target = entry & ADDR_MASK
                if level != PT and not entry & PS:
                    pending.append((target, level - 1))
                    continue
                span = LEVEL_SPAN[level]
                base = target & ~(span - 1)
                for frame in range(base, min(base + span, machine.dram_size), PAGE_SIZE):
                    assert frames.is_allocated(frame), f"a present leaf maps free frame {frame:#x}"
