"""Physical memory of the emulated machine: DRAM, SCM and a frame allocator.

This is the bottom half of :mod:`impl.mmu_emu` (which re-exports everything here); it
knows nothing about page tables or virtual addresses.

Layout and choices (where real hardware leaves freedom):

- One physical address space of 4 KiB frames. DRAM occupies ``[0, dram_size)``; SCM
  occupies ``[scm_base, scm_base + scm.size)`` with ``scm_base = 1 << 40`` (1 TiB) by
  default, far above any DRAM size we emulate. Any other physical address is a hole:
  touching it raises :class:`BusError` (a machine check on real hardware).
- DRAM is a ``bytearray``. The SCM range is an :class:`impl.scm_emu.ScmEmu`: reads may
  use ``scm.visible`` directly after telling ``scm.read_watch`` (if set), but **every**
  store into the SCM range goes through ``scm.store`` (or ``scm.ntstore``), so the
  persistence emulator sees it; this module never writes ``scm.visible`` itself.
- :class:`FrameAllocator` hands out the **lowest free frame first** (a min-heap of freed
  frames below a bump pointer), so allocation order is a pure function of the
  allocation/free history. The machine's DRAM allocator reserves frame 0 at
  construction (as Linux reserves the first page), so a zeroed entry that points at
  physical 0 never aliases a live table or data frame.
"""

from __future__ import annotations

import heapq
import struct

from impl.scm_emu import ScmEmu
from spec.paging import ENTRIES_PER_TABLE, PAGE_SIZE

#: Default physical base address of the SCM range (1 TiB).
SCM_BASE = 1 << 40

_U64 = struct.Struct("<Q")
_TABLE = struct.Struct(f"<{ENTRIES_PER_TABLE}Q")
_ZERO_FRAME = bytes(PAGE_SIZE)


class BusError(Exception):
    """An access to a physical address that no memory backs (a hole in the map)."""


class FrameAllocator:
    """Allocator of 4 KiB frames in ``[base, base + nframes * 4096)``.

    Guarantees: ``alloc`` returns the lowest free frame (deterministic); a frame is never
    handed out twice without a ``free`` in between; ``free`` of a frame that is not
    allocated raises ``ValueError`` (no double free). The allocator only does the
    bookkeeping: it does not zero frames (see :meth:`Machine.alloc_frame`), so it serves
    the DRAM and the SCM range alike.
    """

    def __init__(self, base: int, nframes: int) -> None:
        if base % PAGE_SIZE or nframes < 0:
            raise ValueError("frame range must be page aligned and non-negative")
        self.base = base
        self.limit = base + nframes * PAGE_SIZE
        #: Every frame at or above ``_bump`` is free and was never handed out.
        self._bump = base
        #: Min-heap of free frames below ``_bump``.
        self._free_heap: list[int] = []
        self._allocated: set[int] = set()

    @property
    def allocated_count(self) -> int:
        """How many frames are allocated."""
        return len(self._allocated)

    @property
    def free_count(self) -> int:
        """How many frames are free."""
        return (self.limit - self.base) // PAGE_SIZE - len(self._allocated)

    def is_allocated(self, paddr: int) -> bool:
        """Whether the frame at ``paddr`` is currently allocated."""
        return paddr in self._allocated

    def alloc(self) -> int:
        """Allocate the lowest free frame and return its physical address.

        Raises ``MemoryError`` when no frame is free.
        """
        if self._free_heap:
            paddr = heapq.heappop(self._free_heap)
        elif self._bump < self.limit:
            paddr = self._bump
            self._bump += PAGE_SIZE
        else:
            raise MemoryError(f"out of frames in [{self.base:#x}, {self.limit:#x})")
        self._allocated.add(paddr)
        return paddr

    def alloc_contiguous(self, count: int, align: int = 1) -> int:
        """Allocate ``count`` physically contiguous frames, the first aligned to
        ``align`` frames (e.g. 512 for a 2 MiB page); the lowest such run is taken.

        Returns the physical address of the first frame; raises ``MemoryError`` if no
        run fits. O(frames) — meant for the rare large-page allocation.
        """
        if count <= 0 or align <= 0:
            raise ValueError("count and align must be positive")
        free_below = set(self._free_heap)
        step = align * PAGE_SIZE
        start = -(-self.base // step) * step
        while start + count * PAGE_SIZE <= self.limit:
            run = range(start, start + count * PAGE_SIZE, PAGE_SIZE)
            if all(f >= self._bump or f in free_below for f in run):
                for f in run:
                    free_below.discard(f)
                # Frames skipped between the old bump and the run become free-below.
                free_below.update(range(self._bump, start, PAGE_SIZE))
                self._bump = max(self._bump, run.stop)
                self._free_heap = sorted(free_below)  # a sorted list is a valid heap
                self._allocated.update(run)
                return start
            start += step
        raise MemoryError(f"no {count} contiguous frames aligned to {align}")

    def free(self, paddr: int) -> None:
        """Return the frame at ``paddr``; ``ValueError`` if it is not allocated."""
        if paddr not in self._allocated:
            raise ValueError(f"free of frame {paddr:#x} that is not allocated (double free?)")
        self._allocated.remove(paddr)
        heapq.heappush(self._free_heap, paddr)

    def check_invariants(self) -> None:
        """Assert: the free heap is a heap of distinct aligned frames below the bump
        pointer; it is disjoint from the allocated set; together they cover exactly the
        frames below the bump pointer; nothing at or above it is allocated."""
        heap = self._free_heap
        assert self.base <= self._bump <= self.limit, "bump pointer outside the range"
        for i in range(1, len(heap)):
            assert heap[(i - 1) // 2] <= heap[i], f"free heap order broken at index {i}"
        free_set = set(heap)
        assert len(free_set) == len(heap), "a frame is on the free heap twice (double free)"
        both = free_set & self._allocated
        assert not both, f"frames both free and allocated (double free?): {sorted(both)[:4]}"
        for f in free_set | self._allocated:
            assert f % PAGE_SIZE == 0, f"frame {f:#x} not page aligned"
            assert self.base <= f < self._bump, f"frame {f:#x} outside [base, bump)"
        covered = len(free_set) + len(self._allocated)
        expected = (self._bump - self.base) // PAGE_SIZE
        assert covered == expected, f"{covered} frames tracked below bump, expected {expected}"


class Machine:
    """Physical memory: DRAM at ``[0, dram_size)``, SCM at ``[scm_base, +scm.size)``
    and a lowest-first allocator of DRAM frames (``frames``) with frame 0 reserved.

    Guarantees: reads and writes of the SCM range see and go through ``scm`` (stores via
    ``scm.store``/``scm.ntstore`` only); accesses to holes raise :class:`BusError`;
    frames from :meth:`alloc_frame` are zeroed. Pass ``scm`` to reuse an existing
    emulator (e.g. a machine rebooted from a crash image); otherwise ``ScmEmu(scm_size)``
    is built.
    """

    def __init__(
        self,
        dram_size: int,
        scm_size: int = 0,
        *,
        scm: ScmEmu | None = None,
        scm_base: int = SCM_BASE,
    ) -> None:
        if scm is None:
            scm = ScmEmu(scm_size)
        if dram_size % PAGE_SIZE or scm.size % PAGE_SIZE or scm_base % PAGE_SIZE:
            raise ValueError("DRAM size, SCM size and SCM base must be page multiples")
        if scm_base < dram_size:
            raise ValueError("the SCM range must lie above DRAM")
        if dram_size < 2 * PAGE_SIZE:
            raise ValueError("DRAM needs at least two frames (frame 0 is reserved)")
        self.dram = bytearray(dram_size)
        #: A view of all of DRAM (it also pins the size of ``dram``); for reading.
        self.dram_view = memoryview(self.dram)
        self.dram_size = dram_size
        self.scm = scm
        self.scm_base = scm_base
        self.scm_end = scm_base + scm.size
        self.frames = FrameAllocator(0, dram_size // PAGE_SIZE)
        reserved = self.frames.alloc()
        assert reserved == 0

    # -- ranges --------------------------------------------------------------------
    def is_dram(self, paddr: int) -> bool:
        """Whether ``paddr`` lies in the DRAM range."""
        return 0 <= paddr < self.dram_size

    def is_scm(self, paddr: int) -> bool:
        """Whether ``paddr`` lies in the SCM range."""
        return self.scm_base <= paddr < self.scm_end

    # -- frames --------------------------------------------------------------------
    def alloc_frame(self, zero: bool = True) -> int:
        """Allocate the lowest free DRAM frame, zeroed unless ``zero`` is False."""
        paddr = self.frames.alloc()
        if zero:
            self.dram[paddr : paddr + PAGE_SIZE] = _ZERO_FRAME
        return paddr

    def free_frame(self, paddr: int) -> None:
        """Free a DRAM frame from :meth:`alloc_frame` (``ValueError`` on double free)."""
        self.frames.free(paddr)

    # -- bytes ---------------------------------------------------------------------
    def read(self, paddr: int, length: int) -> bytes:
        """The ``length`` bytes at ``paddr`` (may straddle DRAM's end only into SCM if
        the ranges touch; a hole raises :class:`BusError`)."""
        end = paddr + length
        if 0 <= paddr and end <= self.dram_size:
            return self.dram_view[paddr:end].tobytes()
        off = paddr - self.scm_base
        if 0 <= off and end <= self.scm_end:
            watch = self.scm.read_watch
            if watch is not None:
                watch(off, length)
            with memoryview(self.scm.visible) as view:
                return view[off : off + length].tobytes()
        if 0 <= paddr < self.dram_size and self.dram_size == self.scm_base:
            split = self.dram_size - paddr
            return self.read(paddr, split) + self.read(self.dram_size, length - split)
        raise BusError(f"read of [{paddr:#x}, {end:#x}) touches unbacked physical memory")

    def view(self, paddr: int, length: int) -> memoryview:
        """A zero-copy view of ``length`` bytes at ``paddr`` within one range, for
        reading only (writing through it would bypass ``scm.store``); copy it before
        anything else can change memory. A hole or a straddle raises :class:`BusError`."""
        end = paddr + length
        if 0 <= paddr and end <= self.dram_size:
            return self.dram_view[paddr:end]
        off = paddr - self.scm_base
        if 0 <= off and end <= self.scm_end:
            watch = self.scm.read_watch
            if watch is not None:
                watch(off, length)
            return memoryview(self.scm.visible)[off : off + length]
        return memoryview(self.read(paddr, length))

    def write(self, paddr: int, data: bytes | bytearray | memoryview, nt: bool = False) -> None:
        """Store ``data`` at ``paddr``: DRAM directly, SCM through ``scm.store`` (or
        ``scm.ntstore`` when ``nt``); a hole raises :class:`BusError`."""
        length = len(data)
        end = paddr + length
        if 0 <= paddr and end <= self.dram_size:
            self.dram[paddr:end] = data
            return
        off = paddr - self.scm_base
        if 0 <= off and end <= self.scm_end:
            payload = bytes(data)
            if nt:
                self.scm.ntstore(off, payload)
            else:
                self.scm.store(off, payload)
            return
        if 0 <= paddr < self.dram_size and self.dram_size == self.scm_base:
            split = self.dram_size - paddr
            view = memoryview(data)
            self.write(paddr, view[:split], nt)
            self.write(self.dram_size, view[split:], nt)
            return
        raise BusError(f"write of [{paddr:#x}, {end:#x}) touches unbacked physical memory")

    def read_u64(self, paddr: int) -> int:
        """The little-endian 8-byte word at ``paddr`` (``paddr`` 8-byte aligned)."""
        if 0 <= paddr and paddr + 8 <= self.dram_size:
            value: int = _U64.unpack_from(self.dram, paddr)[0]
            return value
        off = paddr - self.scm_base
        if 0 <= off and paddr + 8 <= self.scm_end:
            watch = self.scm.read_watch
            if watch is not None:
                watch(off, 8)
            value = _U64.unpack_from(self.scm.visible, off)[0]
            return value
        raise BusError(f"8-byte read at {paddr:#x}: unbacked physical memory")

    def write_u64(self, paddr: int, value: int) -> None:
        """Store the little-endian word ``value`` at ``paddr`` (one aligned 8-byte store,
        which the SCM treats as atomic); SCM goes through ``scm.store``."""
        if 0 <= paddr and paddr + 8 <= self.dram_size:
            _U64.pack_into(self.dram, paddr, value)
            return
        off = paddr - self.scm_base
        if 0 <= off and paddr + 8 <= self.scm_end:
            self.scm.store(off, _U64.pack(value))
            return
        raise BusError(f"8-byte write at {paddr:#x}: unbacked physical memory")

    def read_table(self, paddr: int) -> tuple[int, ...]:
        """The 512 entries of the table frame at ``paddr`` (DRAM or SCM)."""
        if 0 <= paddr and paddr + PAGE_SIZE <= self.dram_size:
            return _TABLE.unpack_from(self.dram, paddr)
        off = paddr - self.scm_base
        if 0 <= off and paddr + PAGE_SIZE <= self.scm_end:
            watch = self.scm.read_watch
            if watch is not None:
                watch(off, PAGE_SIZE)
            return _TABLE.unpack_from(self.scm.visible, off)
        raise BusError(f"table at {paddr:#x}: unbacked physical memory")

    def check_invariants(self) -> None:
        """Assert: DRAM and SCM have their declared sizes and do not overlap; the DRAM
        allocator covers exactly DRAM and is consistent; frame 0 stays reserved."""
        assert len(self.dram) == self.dram_size, "DRAM bytearray changed size"
        assert len(self.scm.visible) == self.scm.size, "SCM visible image is not scm.size"
        assert self.scm_end == self.scm_base + self.scm.size, "SCM range out of date"
        assert self.scm_base >= self.dram_size, "SCM range overlaps DRAM"
        assert self.frames.base == 0 and self.frames.limit == self.dram_size, (
            "the DRAM allocator does not cover exactly DRAM"
        )
        assert self.frames.is_allocated(0), "reserved frame 0 was freed"
        self.frames.check_invariants()
