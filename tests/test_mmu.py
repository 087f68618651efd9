"""Tests of the emulated MMU (impl/mmu_emu.py) against spec/paging.py."""

from __future__ import annotations

import heapq
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from impl.mmu_emu import (
    MAX_FAULT_RETRIES,
    RESERVE_BASE,
    SCM_BASE,
    TLB_CAPACITY,
    AddressSpace,
    FrameAllocator,
    Machine,
    PageFault,
    Vma,
    VmaFlags,
)
from impl.mmu_emu import is_canonical as mmu_is_canonical
from impl.mmu_emu import make_entry as mmu_make_entry
from impl.scm_emu import ScmEmu
from spec.paging import (
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
    entry_address,
    is_canonical,
    make_entry,
    walk,
)

MiB = 1 << 20
GiB = 1 << 30
RWX = VmaFlags.READ | VmaFlags.WRITE


class RecordingScm(ScmEmu):
    """An ScmEmu that records every call and keeps a shadow image built only from the
    stores it was given, so a test can tell whether anyone wrote ``visible`` directly."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.calls: list[tuple[str, int, int]] = []
        self.shadow = bytearray(size)

    def store(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("store", offset, len(data)))
        self.shadow[offset : offset + len(data)] = data
        super().store(offset, data)

    def ntstore(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("ntstore", offset, len(data)))
        self.shadow[offset : offset + len(data)] = data
        super().ntstore(offset, data)

    def clwb(self, offset: int) -> None:
        self.calls.append(("clwb", offset, 0))
        super().clwb(offset)

    def clflushopt(self, offset: int) -> None:
        self.calls.append(("clflushopt", offset, 0))
        super().clflushopt(offset)

    def clflush(self, offset: int) -> None:
        self.calls.append(("clflush", offset, 0))
        super().clflush(offset)

    def sfence(self) -> None:
        self.calls.append(("sfence", 0, 0))
        super().sfence()


def make(dram: int = 4 * MiB, scm: int = 1 * MiB) -> tuple[Machine, AddressSpace, RecordingScm]:
    emu = RecordingScm(scm)
    machine = Machine(dram, scm=emu)
    return machine, AddressSpace(machine), emu


def spec_walk(space: AddressSpace, va: int, write: bool = False, user: bool = True) -> Translation | WalkFault:
    return walk(space.machine.read_u64, space.cr3, va, write=write, user=user)


def fault_of(fn: Any, *args: Any, **kwargs: Any) -> PageFault:
    with pytest.raises(PageFault) as info:
        fn(*args, **kwargs)
    return info.value


# --- physical memory and frames -----------------------------------------------------


def test_allocator_lowest_first_contiguous_and_double_free() -> None:
    alloc = FrameAllocator(0x10000, 8)
    frames = [alloc.alloc() for _ in range(4)]
    assert frames == [0x10000 + i * PAGE_SIZE for i in range(4)]
    alloc.free(frames[2])
    alloc.free(frames[0])
    assert alloc.alloc() == frames[0]  # lowest free first
    run = alloc.alloc_contiguous(2, align=2)
    assert run == 0x10000 + 4 * PAGE_SIZE
    alloc.check_invariants()
    with pytest.raises(ValueError):
        alloc.free(frames[2])  # already free
    assert alloc.alloc() == frames[2]
    assert alloc.alloc() == 0x10000 + 6 * PAGE_SIZE
    assert alloc.alloc() == 0x10000 + 7 * PAGE_SIZE
    with pytest.raises(MemoryError):
        alloc.alloc()
    alloc.check_invariants()


def test_machine_layout_and_reused_scm() -> None:
    emu = ScmEmu(64 * 1024)
    emu.store(100, b"persisted")
    machine = Machine(1 * MiB, scm=emu)
    assert machine.scm is emu and machine.scm_base == SCM_BASE == 1 << 40
    assert machine.read(SCM_BASE + 100, 9) == b"persisted"
    assert machine.alloc_frame() == PAGE_SIZE  # frame 0 is reserved
    machine.write_u64(SCM_BASE + 8, 0x1122334455667788)
    assert emu.visible[8:16] == bytes.fromhex("8877665544332211")
    from impl.mmu_emu import BusError

    with pytest.raises(BusError):
        machine.read(1 * MiB, 1)
    machine.check_invariants()


# --- translation, loads and stores --------------------------------------------------


@given(
    offset=st.integers(0, 3 * PAGE_SIZE - 1),
    data=st.binary(min_size=1, max_size=2 * PAGE_SIZE + 10),
)
def test_store_load_round_trip_across_pages(offset: int, data: bytes) -> None:
    machine, space, emu = make()
    vma = space.reserve(5 * PAGE_SIZE)
    # DRAM, SCM, DRAM (contiguous with nothing), SCM, DRAM: every boundary changes frame.
    frames = [machine.alloc_frame(), SCM_BASE + 3 * PAGE_SIZE, machine.alloc_frame(),
              SCM_BASE + 7 * PAGE_SIZE, machine.alloc_frame()]  # fmt: skip
    for i, frame in enumerate(frames):
        space.map(vma.start + i * PAGE_SIZE, frame)
    space.store(vma.start + offset, data)
    assert space.load(vma.start + offset, len(data)) == data
    for i in range(len(data)):  # byte by byte, through the spec's translation
        t = spec_walk(space, vma.start + offset + i)
        assert isinstance(t, Translation)
        assert machine.read(t.paddr, 1) == data[i : i + 1]
    assert emu.shadow == emu.visible  # SCM was only ever written through scm.store
    space.check_invariants()


# Addresses whose bits 63..47 are all clear, all set, or mixed: the canonical boundary.
_ADDRESSES = st.tuples(
    st.sampled_from([0, 0x1FFFF]) | st.integers(0, 0x1FFFF), st.integers(0, (1 << 47) - 1)
).map(lambda parts: parts[0] << 47 | parts[1])


@given(_ADDRESSES)
def test_the_mmu_tells_canonical_addresses_as_the_spec_does(va: int) -> None:
    assert mmu_is_canonical(va) == is_canonical(va)


@given(st.integers(0, (1 << 40) - 1), st.integers(0, 0xFFF) | st.just(1 << 63 | P))
def test_the_mmu_encodes_entries_as_the_spec_does(frame: int, flags: int) -> None:
    assert mmu_make_entry(frame << 12, flags) == make_entry(frame << 12, flags)


@pytest.mark.parametrize("paddr, flags", [(0x1001, P), (1 << 52, P), (0x1000, 1 << 12), (-4096, P)])
def test_the_mmu_refuses_an_entry_it_could_not_read_back(paddr: int, flags: int) -> None:
    with pytest.raises(ValueError):
        mmu_make_entry(paddr, flags)


def test_coalesced_contiguous_pages_and_counters() -> None:
    machine, space, _ = make()
    vma = space.reserve(16 * PAGE_SIZE)
    first = machine.frames.alloc_contiguous(16)
    for i in range(16):
        space.map(vma.start + i * PAGE_SIZE, first + i * PAGE_SIZE)
    pattern = bytes(range(256)) * 256
    space.store(vma.start, pattern)
    assert machine.read(first, len(pattern)) == pattern
    c = space.counters
    assert (c.tlb_misses, c.walks, c.tlb_hits) == (16, 16, 0)
    assert space.load(vma.start, len(pattern)) == pattern
    assert (c.tlb_misses, c.tlb_hits) == (16, 16)
    assert space.load(vma.start + 4000, 200) == pattern[4000:4200]  # two pages
    assert (c.tlb_misses, c.tlb_hits) == (16, 18)
    space.flush_tlb()
    assert space.tlb_size == 0 and c.tlb_flushes == 1
    space.load(vma.start, 1)
    assert c.tlb_misses == 17
    space.check_invariants()


def test_tlb_is_bounded_fifo() -> None:
    machine, space, _ = make(dram=16 * MiB)
    n = TLB_CAPACITY + 1
    vma = space.reserve(n * PAGE_SIZE)
    frame = machine.alloc_frame()
    for i in range(n):
        space.map(vma.start + i * PAGE_SIZE, frame, US)
    for i in range(n):
        space.load(vma.start + i * PAGE_SIZE, 1)
    assert space.tlb_size == TLB_CAPACITY
    misses = space.counters.tlb_misses
    space.load(vma.start + PAGE_SIZE, 1)  # the second-oldest entry survived
    assert space.counters.tlb_misses == misses
    space.load(vma.start, 1)  # the oldest was evicted
    assert space.counters.tlb_misses == misses + 1
    space.check_invariants()


# --- faults and their error codes ---------------------------------------------------


def test_fault_error_codes_match_spec() -> None:
    machine, space, _ = make()
    vma = space.reserve(4 * PAGE_SIZE)
    ro, sup = vma.start, vma.start + PAGE_SIZE
    space.map(ro, machine.alloc_frame(), US)  # read-only user page
    space.map(sup, machine.alloc_frame(), RW)  # supervisor page
    cases = [
        # (va, write, user, expected error code, expected level)
        (0x10_0000_0000, False, True, PF_USER, PML4),  # nothing mapped, no VMA
        (vma.start + 2 * PAGE_SIZE, False, True, PF_USER, PT),  # not present, PT exists
        (vma.start + 2 * PAGE_SIZE, True, False, PF_WRITE, PT),
        (ro, True, True, PF_PRESENT | PF_WRITE | PF_USER, PT),  # write to read-only
        (ro, True, False, PF_PRESENT | PF_WRITE, PT),  # CR0.WP: supervisor too
        (sup, False, True, PF_PRESENT | PF_USER, PT),  # user access to supervisor page
        (sup, True, True, PF_PRESENT | PF_WRITE | PF_USER, PT),
    ]
    for va, write, user, code, level in cases:
        access = space.store if write else space.load
        fault = fault_of(access, va, b"x" if write else 1, user=user)
        assert (fault.va, fault.error_code, fault.level) == (va, code, level), fault
        expected = spec_walk(space, va, write, user)
        assert isinstance(expected, WalkFault) and expected.error_code == code
        assert space.peek(va, write, user) == expected
    assert space.load(sup, 1, user=False) == b"\0"  # no SMAP: supervisor reads work
    space.store(sup, b"k", user=False)
    assert space.counters.faults == len(cases)
    space.check_invariants()


def test_page_size_bit_in_pml4_is_a_reserved_bit_fault() -> None:
    machine, space, _ = make()
    vma = space.reserve(512 * GiB, align=512 * GiB)
    space.write_entry(vma.start, PML4, make_entry(machine.alloc_frame(), P | RW | US | PS))
    fault = fault_of(space.load, vma.start + 123, 4)
    assert fault.error_code == PF_PRESENT | PF_RSVD | PF_USER and fault.level == PML4
    assert spec_walk(space, vma.start + 123) == space.peek(vma.start + 123)
    non_canonical = fault_of(space.load, 1 << 47, 1)
    assert non_canonical.error_code == 0 and non_canonical.reason == "non-canonical"
    space.check_invariants()


def test_store_faulting_midway_leaves_earlier_pages_written() -> None:
    machine, space, _ = make()
    vma = space.reserve(3 * PAGE_SIZE)
    frames = [machine.alloc_frame() for _ in range(3)]
    space.map(vma.start, frames[0])
    space.map(vma.start + PAGE_SIZE, frames[1])
    space.map(vma.start + 2 * PAGE_SIZE, frames[2], US)  # read-only
    fault = fault_of(space.store, vma.start + 10, b"\xaa" * (3 * PAGE_SIZE - 20))
    assert fault.va == vma.start + 2 * PAGE_SIZE and fault.error_code & PF_WRITE
    assert machine.read(frames[0] + 10, PAGE_SIZE - 10) == b"\xaa" * (PAGE_SIZE - 10)
    assert machine.read(frames[1], PAGE_SIZE) == b"\xaa" * PAGE_SIZE
    assert machine.read(frames[2], PAGE_SIZE) == bytes(PAGE_SIZE)


# --- accessed and dirty bits --------------------------------------------------------


@pytest.mark.parametrize("tables_in_scm", [False, True])
def test_accessed_and_dirty_bits_are_written_to_the_entries(tables_in_scm: bool) -> None:
    machine, space, emu = make()
    vma = space.reserve(2 * PAGE_SIZE)
    va = vma.start
    if tables_in_scm:  # the PDPT, PD and PT live in SCM: their bits go via scm.store
        pdpt, pd, pt = (SCM_BASE + i * PAGE_SIZE for i in range(3))
        machine.write_u64(pd + 8 * ((va >> 21) & 511), pt | P | RW | US)
        machine.write_u64(pdpt + 8 * ((va >> 30) & 511), pd | P | RW | US)
        space.write_entry(va, PML4, pdpt | P | RW | US)
        space.flush_tlb()
    space.map(va, machine.alloc_frame())
    levels = (PML4, PDPT, PD, PT)
    assert all(not space.read_entry(va, lv) & (A | D) for lv in levels)
    writes, calls = space.counters.pte_writes, len(emu.calls)
    space.load(va, 8)
    assert all(space.read_entry(va, lv) & A for lv in levels)
    assert not space.read_entry(va, PT) & D
    assert space.counters.pte_writes - writes == 4 == space.counters.ad_updates
    if tables_in_scm:  # PDPT, PD and PT entries were written through the SCM
        assert len(emu.calls) - calls == 3 and all(c[0] == "store" and c[2] == 8 for c in emu.calls[calls:])
    space.invlpg(va)
    space.load(va, 8)
    assert space.counters.pte_writes - writes == 4  # bits already set: no write
    space.store(va, b"dirty")  # the TLB entry is clean: the write re-walks to set D
    assert space.read_entry(va, PT) & D
    assert space.counters.pte_writes - writes == 5 and space.counters.walks == 3
    space.store(va, b"again")  # now a plain hit
    assert space.counters.pte_writes - writes == 5 and space.counters.walks == 3
    assert emu.shadow == emu.visible
    space.check_invariants()


# --- the stale TLB ------------------------------------------------------------------


def test_stale_tlb_after_raw_write_entry_until_invlpg() -> None:
    machine, space, _ = make()
    vma = space.reserve(PAGE_SIZE)
    va, frame, other = vma.start, machine.alloc_frame(), machine.alloc_frame()
    space.map(va, frame)
    space.store(va, b"before")  # TLB entry: writable and dirty
    # Make the page read-only behind the TLB's back: the kernel "forgot" invlpg.
    space.write_entry(va, PT, make_entry(frame, P | US | A | D))
    space.store(va, b"stale!")  # succeeds through the stale writable entry
    assert machine.read(frame, 6) == b"stale!"
    space.check_invariants()  # stale entries are legal until invalidated
    space.invlpg(va)
    fault = fault_of(space.store, va, b"now")
    assert fault.error_code == PF_PRESENT | PF_WRITE | PF_USER
    # A remap behind the TLB's back: loads keep reading the old frame until invlpg.
    machine.write(other, b"other frame")
    space.load(va, 1)
    space.write_entry(va, PT, make_entry(other, P | US))
    assert space.load(va, 6) == b"stale!"
    space.check_invariants()
    space.invlpg(va)
    assert space.load(va, 11) == b"other frame"
    space.check_invariants()


def test_map_unmap_protect_invalidate_the_tlb_themselves() -> None:
    machine, space, _ = make()
    vma = space.reserve(PAGE_SIZE)
    va, frame = vma.start, machine.alloc_frame()
    space.map(va, frame)
    space.store(va, b"w")  # cached writable and dirty
    space.protect(va, writable=False)
    assert fault_of(space.store, va, b"x").error_code == PF_PRESENT | PF_WRITE | PF_USER
    space.protect(va, writable=True)
    space.store(va, b"y")
    space.load(va, 1)
    assert space.unmap(va) == frame
    assert fault_of(space.load, va, 1).error_code == PF_USER
    space.map(va, frame, US)  # supervisor-free, read-only
    assert space.load(va, 1) == b"y"
    space.check_invariants()
    assert space.counters.invlpgs == 5 and space.counters.tlb_flushes == 0


def test_supervisor_fill_does_not_serve_a_user_access() -> None:
    machine, space, _ = make()
    vma = space.reserve(PAGE_SIZE)
    space.map(vma.start, machine.alloc_frame(), RW)  # supervisor page
    space.load(vma.start, 1, user=False)  # the TLB now holds a supervisor entry
    assert fault_of(space.load, vma.start, 1).error_code == PF_PRESENT | PF_USER
    space.store(vma.start, b"k", user=False)
    assert fault_of(space.store, vma.start, b"k").error_code == PF_PRESENT | PF_WRITE | PF_USER


def test_a_fault_drops_the_stale_entry_for_its_address() -> None:
    machine, space, _ = make()
    vma = space.reserve(PAGE_SIZE)
    space.map(vma.start, machine.alloc_frame(), US)
    space.load(vma.start, 1)  # cached: user, read-only
    space.write_entry(vma.start, PT, 0)  # unmapped behind the TLB's back
    assert space.load(vma.start, 1) == b"\0"  # still served by the stale entry
    fault_of(space.store, vma.start, b"x")  # needs a walk, which faults: entry dropped
    assert fault_of(space.load, vma.start, 1).error_code == PF_USER


def test_write_to_clean_stale_entry_rewalks_and_faults() -> None:
    machine, space, _ = make()
    vma = space.reserve(PAGE_SIZE)
    frame = machine.alloc_frame()
    space.map(vma.start, frame)
    space.load(vma.start, 1)  # TLB entry writable but clean
    space.write_entry(vma.start, PT, make_entry(frame, P | US | A))
    fault = fault_of(space.store, vma.start, b"x")  # D must be set: the walk sees RO
    assert fault.error_code == PF_PRESENT | PF_WRITE | PF_USER


# --- large pages --------------------------------------------------------------------


def test_two_mib_page_in_dram() -> None:
    machine, space, _ = make(dram=8 * MiB)
    vma = space.reserve(4 * MiB, align=2 * MiB)
    base = machine.frames.alloc_contiguous(512, align=512)
    space.map(vma.start, base, page_size=2 * MiB)
    data = bytes(range(251)) * 40
    space.store(vma.start + MiB - 5000, data)
    assert machine.read(base + MiB - 5000, len(data)) == data
    assert space.load(vma.start + MiB - 5000, len(data)) == data
    assert space.tlb_size == 1 and space.counters.tlb_hits == 1
    t = spec_walk(space, vma.start + 12345, write=True)
    assert isinstance(t, Translation) and t.page_size == 2 * MiB and t.paddr == base + 12345
    assert space.peek(vma.start + 12345, write=True) == t
    space.check_invariants()
    # Bit 12 of a large leaf is PAT, not address: the translation ignores it.
    leaf = space.find_leaf(vma.start)
    assert leaf is not None and leaf[0] == PD
    space.write_entry(vma.start, PD, leaf[2] | (1 << 12))
    space.flush_tlb()
    assert space.load(vma.start + MiB - 5000, 8) == data[:8]
    assert space.peek(vma.start + 5) == spec_walk(space, vma.start + 5)
    space.protect(vma.start + 7 * PAGE_SIZE, writable=False)  # any address in the page
    assert space.tlb_size == 0
    assert fault_of(space.store, vma.start + 3, b"x").level == PD
    assert space.unmap(vma.start + MiB) == base
    assert fault_of(space.load, vma.start, 1).error_code == PF_USER


def test_one_gib_page_in_scm() -> None:
    machine, space, emu = make(scm=4 * MiB)
    vma = space.reserve(GiB, align=GiB)
    space.map(vma.start, SCM_BASE, page_size=GiB)
    space.store(vma.start + 3 * MiB + 7, b"gigantic")
    assert emu.visible[3 * MiB + 7 : 3 * MiB + 15] == b"gigantic"
    assert ("store", 3 * MiB + 7, 8) in emu.calls
    assert space.load(vma.start + 3 * MiB + 7, 8) == b"gigantic"
    assert space.read_entry(vma.start, PDPT) & (PS | A | D) == PS | A | D
    t = spec_walk(space, vma.start + 3 * MiB)
    assert isinstance(t, Translation) and t.page_size == GiB
    space.invlpg(vma.start + 500 * MiB)  # drops the 1 GiB entry
    assert space.tlb_size == 0
    space.check_invariants()


# --- the UMFS splice ----------------------------------------------------------------


def build_file_table(machine: Machine, scm_frames: FrameAllocator, pages: list[bytes]) -> int:
    """A 3-level file page table PDPT -> PD -> PT -> data, all in SCM; returns the PDPT."""
    pdpt, pd, pt = scm_frames.alloc(), scm_frames.alloc(), scm_frames.alloc()
    machine.write_u64(pdpt, pd | P | RW | US)
    machine.write_u64(pd, pt | P | RW | US)
    for i, content in enumerate(pages):
        frame = scm_frames.alloc()
        machine.write(frame, content)
        machine.write_u64(pt + 8 * i, frame | P | RW | US)
    return pdpt


def test_splice_a_file_page_table_with_one_entry_write() -> None:
    machine, space, emu = make(scm=1 * MiB)
    scm_frames = FrameAllocator(SCM_BASE, (1 * MiB) // PAGE_SIZE)
    pages = [bytes([i]) * PAGE_SIZE for i in range(1, 4)]
    pdpt = build_file_table(machine, scm_frames, pages)
    window = space.reserve(512 * GiB, align=512 * GiB, flags=RWX | VmaFlags.RETAIN, name="file")
    assert window.start == RESERVE_BASE
    writes = space.counters.pte_writes
    space.write_entry(window.start, PML4, pdpt | P | RW | US)
    assert space.counters.pte_writes - writes == 1  # O(1): one 8-byte store
    assert space.load(window.start + PAGE_SIZE - 2, 4) == b"\x01\x01\x02\x02"
    assert space.load(window.start + 2 * PAGE_SIZE, 3) == b"\x03\x03\x03"
    calls = len(emu.calls)
    space.store(window.start + PAGE_SIZE + 100, b"file write")
    pd = entry_address(machine.read_u64(pdpt))
    data_frame = entry_address(machine.read_u64(entry_address(machine.read_u64(pd)) + 8))
    new_calls = emu.calls[calls:]
    assert ("store", data_frame - SCM_BASE + 100, 10) in new_calls  # through scm.store
    assert emu.shadow == emu.visible
    t = spec_walk(space, window.start + PAGE_SIZE + 100)
    assert isinstance(t, Translation) and t.paddr == data_frame + 100
    space.check_invariants()
    # close(): detach with one write, invalidate, release the range.
    space.write_entry(window.start, PML4, 0)
    space.flush_tlb()
    space.release(window)
    assert fault_of(space.load, window.start, 1).level == PML4
    assert machine.read(data_frame + 100, 10) == b"file write"  # the file keeps its data
    space.check_invariants()


# --- fault handlers -----------------------------------------------------------------


def test_demand_zero() -> None:
    machine, space, _ = make()
    vma = space.map_anonymous(3 * PAGE_SIZE)
    allocated = machine.frames.allocated_count
    assert space.load(vma.start + 10, PAGE_SIZE) == bytes(PAGE_SIZE)  # two pages
    assert space.counters.faults == 2 and machine.frames.allocated_count == allocated + 5  # + PDPT, PD, PT
    space.store(vma.start + 2 * PAGE_SIZE + 1, b"hello")
    assert space.load(vma.start + 2 * PAGE_SIZE, 6) == b"\0hello"
    assert space.counters.faults == 3
    ro = space.map_anonymous(PAGE_SIZE, flags=VmaFlags.READ)
    assert fault_of(space.store, ro.start, b"x").error_code == PF_WRITE | PF_USER
    assert space.load(ro.start, 2) == b"\0\0"  # maps a read-only zero page
    assert fault_of(space.store, ro.start, b"x").error_code == PF_PRESENT | PF_WRITE | PF_USER
    outside = fault_of(space.load, ro.end, 1)
    assert "no VMA" in outside.reason
    space.check_invariants()


@pytest.mark.parametrize("per_vma", [True, False])
def test_cow_handler_is_called_for_protection_faults_and_retried(per_vma: bool) -> None:
    machine, space, _ = make()
    calls: list[PageFault] = []

    def toy_cow(sp: AddressSpace, vma: Vma, fault: PageFault) -> bool:
        if not (fault.protection and fault.write):
            return False
        calls.append(fault)
        page = fault.va & ~(PAGE_SIZE - 1)
        old = sp.unmap(page)
        new = sp.machine.alloc_frame()
        sp.machine.write(new, sp.machine.read(old, PAGE_SIZE))
        sp.map(page, new)
        return True

    vma = space.reserve(2 * PAGE_SIZE, fault_handler=toy_cow if per_vma else None)
    if not per_vma:
        space.register_fault_handler(toy_cow, first=True)
    shared = machine.alloc_frame()
    machine.write(shared, b"shared page")
    space.map(vma.start, shared, US)  # both pages share the frame, write-protected
    space.map(vma.start + PAGE_SIZE, shared, US)
    space.store(vma.start + 7, b"PRIVATE")
    assert len(calls) == 1 and calls[0].error_code == PF_PRESENT | PF_WRITE | PF_USER
    assert space.load(vma.start, 14) == b"shared PRIVATE"[:14]
    assert space.load(vma.start + PAGE_SIZE, 11) == b"shared page"  # the other copy
    assert machine.read(shared, 11) == b"shared page"
    space.check_invariants()


def test_handler_that_never_fixes_is_bounded() -> None:
    machine, space, _ = make()
    called = 0

    def liar(sp: AddressSpace, vma: Vma, fault: PageFault) -> bool:
        nonlocal called
        called += 1
        return True

    vma = space.reserve(PAGE_SIZE, fault_handler=liar)
    fault = fault_of(space.load, vma.start, 1)
    assert called == MAX_FAULT_RETRIES and "still faulting" in fault.reason
    assert space.counters.faults == MAX_FAULT_RETRIES + 1


# --- cache-line operations ----------------------------------------------------------


def test_persistence_instructions_forward_to_scm_only_for_scm_pages() -> None:
    machine, space, emu = make()
    vma = space.reserve(2 * PAGE_SIZE)
    space.map(vma.start, SCM_BASE + 5 * PAGE_SIZE)
    space.map(vma.start + PAGE_SIZE, machine.alloc_frame())
    space.ntstore(vma.start + 64, b"nt")
    space.clwb(vma.start + 64)
    space.clflushopt(vma.start + 128)
    space.clflush(vma.start + 192)
    space.sfence()
    off = 5 * PAGE_SIZE
    assert emu.calls == [("ntstore", off + 64, 2), ("clwb", off + 64, 0),
                         ("clflushopt", off + 128, 0), ("clflush", off + 192, 0), ("sfence", 0, 0)]  # fmt: skip
    emu.calls.clear()
    space.ntstore(vma.start + PAGE_SIZE, b"dram")
    space.clwb(vma.start + PAGE_SIZE)
    assert emu.calls == [] and space.load(vma.start + PAGE_SIZE, 4) == b"dram"


def test_unmap_range_returns_the_frames_and_skips_holes() -> None:
    machine, space, _ = make(dram=8 * MiB)
    vma = space.map_anonymous(8 * MiB, align=2 * MiB)
    for page in (0, 3, 700):  # the third one lands in another page table
        space.store(vma.start + page * PAGE_SIZE, b"z")
    big = machine.frames.alloc_contiguous(512, align=512)
    space.map(vma.start + 4 * MiB, big, page_size=2 * MiB)
    frames = [entry_address(space.find_leaf(vma.start + p * PAGE_SIZE)[2]) for p in (0, 3, 700)]  # type: ignore[index]
    assert space.unmap_range(vma.start, vma.end) == frames + [big]
    assert space.find_leaf(vma.start + 4 * MiB) is None and space.tlb_size == 0
    assert space.load(vma.start, 1) == b"\0"  # demand-zero again
    space.map(vma.start + 4 * MiB, big, page_size=2 * MiB)
    with pytest.raises(ValueError, match="large page"):
        space.unmap_range(vma.start + 4 * MiB, vma.start + 5 * MiB)
    space.check_invariants()


# --- reserve ------------------------------------------------------------------------


def test_reserve_is_lowest_fit_and_aligned() -> None:
    _, space, _ = make()
    a = space.reserve(PAGE_SIZE)
    b = space.reserve(3 * PAGE_SIZE)
    c = space.reserve(PAGE_SIZE, align=2 * MiB)
    assert (a.start, b.start, c.start) == (RESERVE_BASE, RESERVE_BASE + PAGE_SIZE, RESERVE_BASE + 2 * MiB)
    space.release(b)
    assert space.reserve(2 * PAGE_SIZE).start == RESERVE_BASE + PAGE_SIZE  # reuses the gap
    with pytest.raises(ValueError):
        space.add_vma(RESERVE_BASE, RESERVE_BASE + PAGE_SIZE, RWX)
    assert space.find_vma(c.start + 5) is c and space.find_vma(c.end) is None
    space.check_invariants()


# --- check_invariants goes red on corruption ---------------------------------------


def populated() -> tuple[Machine, AddressSpace, Vma]:
    machine, space, _ = make()
    vma = space.map_anonymous(4 * PAGE_SIZE)
    space.store(vma.start, b"x" * (4 * PAGE_SIZE))
    space.check_invariants()
    return machine, space, vma


def test_invariants_catch_overlapping_vmas() -> None:
    _, space, vma = populated()
    space._vmas.append(Vma(vma.start + PAGE_SIZE, vma.end + PAGE_SIZE, RWX))
    space._vma_starts.append(vma.start + PAGE_SIZE)
    with pytest.raises(AssertionError, match="overlap"):
        space.check_invariants()


def test_invariants_catch_allocator_double_free() -> None:
    machine, space, _ = populated()
    heapq.heappush(machine.frames._free_heap, space.cr3)  # freed but still allocated
    with pytest.raises(AssertionError, match="double free"):
        space.check_invariants()


def test_invariants_catch_tlb_entry_granting_write() -> None:
    _, space, vma = populated()
    space.protect(vma.start, writable=False)
    space.load(vma.start, 1)
    key = vma.start >> 12
    delta, vend, rights, seq, size = space._tlb[key]
    space._tlb[key] = (delta, vend, rights | 2 | 4, seq, size)  # tamper: writable, dirty
    with pytest.raises(AssertionError, match="write right"):
        space.check_invariants()


def test_invariants_catch_mapping_of_a_freed_frame() -> None:
    machine, space, vma = populated()
    leaf = space.find_leaf(vma.start)
    assert leaf is not None
    machine.free_frame(entry_address(leaf[2]))  # use after free
    with pytest.raises(AssertionError, match="free frame"):
        space.check_invariants()


def test_invariants_catch_freed_page_table() -> None:
    machine, space, vma = populated()
    pt = entry_address(space.read_entry(vma.start, PD))
    machine.free_frame(pt)
    with pytest.raises(AssertionError, match="not allocated|is free"):
        space.check_invariants()


def test_invariants_catch_unflushed_change_not_made_by_write_entry() -> None:
    machine, space, vma = populated()
    leaf = space.find_leaf(vma.start)
    assert leaf is not None
    machine.write_u64(leaf[1], 0)  # behind the space's back, no invalidation
    with pytest.raises(AssertionError, match="tables fault"):
        space.check_invariants()


# --- the stateful comparison with spec.paging.walk ----------------------------------

N_PAGES = 4
N_FRAMES = 6  # 4 DRAM + 2 SCM
State = tuple[int, bool, bool]  # (frame index, writable, user)
# Biased choices keep most pages usable, so that most accesses do not just fault.
mostly_true = st.sampled_from([True, True, True, False])
frame_or_none = st.sampled_from([None, *range(N_FRAMES)])


class MmuStateMachine(RuleBasedStateMachine):
    """Random map/unmap/protect/write_entry/invlpg/flush/load/store on four pages that
    straddle a PT boundary (two PD entries), against a dict model of the entries, the
    TLB's possible staleness and the frames' contents."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = Machine(1 * MiB, 64 * 1024)
        self.space = AddressSpace(self.machine)
        vma = self.space.reserve(4 * MiB, align=2 * MiB)
        self.vas = [vma.start + 2 * MiB + (i - 2) * PAGE_SIZE for i in range(N_PAGES)]
        self.frames = [self.machine.alloc_frame() for _ in range(4)]
        self.frames += [SCM_BASE, SCM_BASE + 9 * PAGE_SIZE]
        self.contents: dict[int, bytearray] = {}
        for i, frame in enumerate(self.frames):
            self.contents[i] = bytearray(bytes([16 * i + j % 16 for j in range(PAGE_SIZE)]))
            self.machine.write(frame, self.contents[i])
        # page -> its leaf entry (frame index, writable, user); absent = not present.
        self.leaf: dict[int, State] = {}
        # 2 MiB region (va >> 21) -> rights of its PD entry (when that entry is present).
        self.pd_rights: dict[int, tuple[bool, bool]] = {}
        # page -> effective states it had since its last invalidation (None = absent).
        self.stale: dict[int, list[State | None]] = {}

    @initialize(frames=st.lists(st.integers(0, N_FRAMES - 1), min_size=N_PAGES, max_size=N_PAGES))
    def map_every_page(self, frames: list[int]) -> None:
        for page, frame in enumerate(frames):
            self.map(page, frame, writable=True, user=True)

    def eff(self, page: int) -> State | None:
        """The page's translation: the leaf with rights ANDed with its PD entry's."""
        state = self.leaf.get(page)
        if state is None:
            return None
        w, u = self.pd_rights.get(self.vas[page] >> 21, (True, True))
        return state[0], state[1] and w, state[2] and u

    def _raw(self, pages: list[int], change: Any) -> None:
        """Apply a raw ``write_entry`` to the model: its pages may now be stale."""
        before = {p: self.eff(p) for p in pages}
        change()
        for p in pages:
            self.stale.setdefault(p, [before[p]]).append(self.eff(p))

    def _region(self, page: int) -> list[int]:
        return [p for p, va in enumerate(self.vas) if va >> 21 == self.vas[page] >> 21]

    @rule(page=st.integers(0, N_PAGES - 1), frame=st.integers(0, N_FRAMES - 1),
          writable=mostly_true, user=mostly_true)  # fmt: skip
    def map(self, page: int, frame: int, writable: bool, user: bool) -> None:
        flags = (RW if writable else 0) | (US if user else 0)
        if page in self.leaf:
            with pytest.raises(ValueError):
                self.space.map(self.vas[page], self.frames[frame], flags)
            return
        self.space.map(self.vas[page], self.frames[frame], flags)
        self.leaf[page] = (frame, writable, user)
        self.stale.pop(page, None)

    @rule(page=st.integers(0, N_PAGES - 1))
    def unmap(self, page: int) -> None:
        if page not in self.leaf:
            with pytest.raises(ValueError):
                self.space.unmap(self.vas[page])
            return
        assert self.space.unmap(self.vas[page]) == self.frames[self.leaf.pop(page)[0]]
        self.stale.pop(page, None)

    @rule(page=st.integers(0, N_PAGES - 1), writable=mostly_true)
    def protect(self, page: int, writable: bool) -> None:
        if page not in self.leaf:
            with pytest.raises(ValueError):
                self.space.protect(self.vas[page], writable)
            return
        self.space.protect(self.vas[page], writable)
        frame, _, user = self.leaf[page]
        self.leaf[page] = (frame, writable, user)
        self.stale.pop(page, None)

    @rule(page=st.integers(0, N_PAGES - 1), frame=frame_or_none,
          writable=mostly_true, user=mostly_true)  # fmt: skip
    def raw_write_leaf(self, page: int, frame: int | None, writable: bool, user: bool) -> None:
        value = 0
        if frame is not None:
            value = make_entry(self.frames[frame], P | (RW if writable else 0) | (US if user else 0))
        had_pd = bool(self.space.read_entry(self.vas[page], PD) & P)
        self.space.write_entry(self.vas[page], PT, value)

        def change() -> None:
            if not had_pd:  # write_entry created the PT with full rights
                self.pd_rights.pop(self.vas[page] >> 21, None)
            if frame is None:
                self.leaf.pop(page, None)
            else:
                self.leaf[page] = (frame, writable, user)

        self._raw([page], change)

    @rule(page=st.integers(0, N_PAGES - 1), writable=mostly_true, user=mostly_true)
    def raw_write_pd_rights(self, page: int, writable: bool, user: bool) -> None:
        """Rewrite a PD entry's rights (same PT): every page under it changes rights."""
        va = self.vas[page]
        entry = self.space.read_entry(va, PD)
        if not entry & P:
            return
        flags = P | (RW if writable else 0) | (US if user else 0)
        self.space.write_entry(va, PD, make_entry(entry_address(entry), flags))
        self._raw(self._region(page), lambda: self.pd_rights.__setitem__(va >> 21, (writable, user)))

    @rule(page=st.integers(0, N_PAGES - 1))
    def raw_clear_page_directory_entry(self, page: int) -> None:
        va = self.vas[page]
        self.space.write_entry(va, PD, 0)  # every page of that 2 MiB region vanishes
        region = self._region(page)

        def change() -> None:
            for p in region:
                self.leaf.pop(p, None)
            self.pd_rights.pop(va >> 21, None)  # a new PT will get full rights

        self._raw(region, change)

    @rule(page=st.integers(0, N_PAGES - 1))
    def invlpg(self, page: int) -> None:
        self.space.invlpg(self.vas[page])
        self.stale.pop(page, None)

    @rule()
    def flush(self) -> None:
        self.space.flush_tlb()
        self.stale.clear()

    def _span(self, page: int, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(page, offset in page, length) pieces of an access; clipped to the pages."""
        pieces = []
        while length > 0 and page < N_PAGES:
            n = min(length, PAGE_SIZE - offset)
            pieces.append((page, offset, n))
            page, offset, length = page + 1, 0, length - n
        return pieces

    @rule(page=st.integers(0, N_PAGES - 1), offset=st.integers(0, PAGE_SIZE - 1),
          length=st.integers(1, PAGE_SIZE + 64), user=mostly_true)  # fmt: skip
    def load(self, page: int, offset: int, length: int, user: bool) -> None:
        pieces = self._span(page, offset, length)
        length = sum(p[2] for p in pieces)
        data: bytes | None = None
        faulted: PageFault | None = None
        try:
            data = self.space.load(self.vas[page] + offset, length, user=user)
        except PageFault as fault:
            faulted = fault
        pos = 0
        for pg, off, n in pieces:
            # A stale page may read any frame it was mapped to since its invalidation;
            # a page that is not stale has exactly one candidate, its current entry.
            candidates = self.stale.get(pg, [self.eff(pg)])
            usable = [c for c in candidates if c is not None and (c[2] or not user)]
            current = self.eff(pg)
            if faulted is not None and faulted.va == self.vas[pg] + off:
                assert current is None or (user and not current[2]), "fault on a usable page"
                code = (PF_USER if user else 0) | (0 if current is None else PF_PRESENT)
                assert faulted.error_code == code
                return
            assert usable, f"page {pg} should have faulted"
            if data is not None:
                got = data[pos : pos + n]
                assert any(self.contents[c[0]][off : off + n] == got for c in usable), (
                    f"page {pg}: loaded bytes match no frame it was mapped to")
            pos += n
        assert faulted is None, "the fault is at no page of the access"
        assert data is not None and len(data) == length
        self._check_bits([pg for pg, _, _ in pieces if pg not in self.stale], dirty=False)

    def _check_bits(self, pages: list[int], dirty: bool) -> None:
        """After a successful access, each page's walked entries are accessed (and its
        leaf dirty after a store) — unless the TLB served it from an earlier walk,
        which also set them: the bits are never cleared in this test."""
        for pg in pages:
            va = self.vas[pg]
            leaf = self.space.find_leaf(va)
            assert leaf is not None and leaf[2] & A, f"page {pg}: leaf not accessed"
            assert not dirty or leaf[2] & D, f"page {pg}: leaf not dirty after a store"
            for level in (PML4, PDPT, PD):
                assert self.space.read_entry(va, level) & A, f"page {pg}: level {level} not accessed"

    @rule(page=st.integers(0, N_PAGES - 1), offset=st.integers(0, PAGE_SIZE - 1),
          data=st.binary(min_size=1, max_size=PAGE_SIZE + 64), user=mostly_true)  # fmt: skip
    def store(self, page: int, offset: int, data: bytes, user: bool) -> None:
        pieces = self._span(page, offset, len(data))
        data = data[: sum(p[2] for p in pieces)]
        for pg, _, _ in pieces:  # make the outcome exact: no stale translation
            if pg in self.stale:
                self.invlpg(pg)
        faulted: PageFault | None = None
        try:
            self.space.store(self.vas[page] + offset, data, user=user)
        except PageFault as fault:
            faulted = fault
        pos = 0
        for pg, off, n in pieces:
            state = self.eff(pg)
            if state is None or not state[1] or (user and not state[2]):
                assert faulted is not None and faulted.va == self.vas[pg] + off
                code = PF_WRITE | (PF_USER if user else 0) | (0 if state is None else PF_PRESENT)
                assert faulted.error_code == code
                return  # the earlier pages were written (the model did so above)
            self.contents[state[0]][off : off + n] = data[pos : pos + n]
            pos += n
        assert faulted is None
        self._check_bits([pg for pg, _, _ in pieces], dirty=True)

    @rule(page=st.integers(0, N_PAGES - 2), length=st.integers(2, 2 * PAGE_SIZE))
    def load_across_a_page_boundary(self, page: int, length: int) -> None:
        self.load(page, PAGE_SIZE - length // 2, length, user=True)

    @rule(page=st.integers(0, N_PAGES - 2), data=st.binary(min_size=2, max_size=64))
    def store_across_a_page_boundary(self, page: int, data: bytes) -> None:
        self.store(page, PAGE_SIZE - len(data) // 2, data, user=True)

    @invariant()
    def invariants_hold(self) -> None:
        self.space.check_invariants()

    @invariant()
    def agrees_with_spec_walk(self) -> None:
        space, machine = self.space, self.machine
        for page, va in enumerate(self.vas):
            for write in (False, True):
                for user in (False, True):
                    expected = spec_walk(space, va + 5, write, user)
                    assert space.peek(va + 5, write, user) == expected
            t = spec_walk(space, va, write=False, user=False)
            state = self.eff(page)
            if state is None:
                assert isinstance(t, WalkFault)
            else:
                assert isinstance(t, Translation) and t.paddr == self.frames[state[0]]
                assert (t.writable, t.user) == state[1:]
            cached = space._tlb.get(va >> 12)
            if cached is not None and page not in self.stale:  # the TLB is not stale
                assert isinstance(t, Translation) and va + cached[0] == t.paddr
                assert (bool(cached[2] & 2), bool(cached[2] & 1)) == (t.writable, t.user)
        for i, frame in enumerate(self.frames):
            assert machine.read(frame, PAGE_SIZE) == self.contents[i], f"frame {i} contents"


TestMmuStateMachine = MmuStateMachine.TestCase
