"""The state of ksmd on the emulated machine, and its frame and page-table helpers.

:class:`KsmBase` holds everything :class:`impl.ksm_scan.KsmEngine` (ksmd's algorithm)
works on: the machine and its DRAM, the knobs, the processes and ksmd's list of them,
the frames KSM tracks, the two trees, the kernel's counters, the scan cursor, virtual
time and the statistics; and the small helpers every step uses — references on frames
(``get_page``/``put_page``), page comparison (``memcmp_pages``), the keyhole test of a
stable node, and PT-entry reads and writes through the emulated page tables.

Page-table frames are DRAM frames (``Machine.alloc_frame`` allocates DRAM), so a PT
entry is read in place from DRAM (``U64_AT``); writes go through
:class:`~impl.mmu_emu.AddressSpace` (``unmap``/``map``/``protect``), which flush the
TLB entry as the kernel's ``ptep_clear_flush`` does.
"""

from __future__ import annotations

import struct
from typing import Callable

from impl.ksm_hash import Checksum, checksum_function, xxhash_page
from impl.ksm_state import Frame, Process, RmapItem, StableNode
from impl.ksm_tree import RbTree
from impl.mmu_emu import Machine, VmaFlags
from spec.ksm_api import KsmKnobs
from spec.paging import ADDR_MASK, PS, SW1, P

PAGE = 4096
PAGE_MASK = ~(PAGE - 1)
#: Software PTE bit marking a zero page mapped by KSM (the kernel uses dirty+special).
KSM_ZERO_BIT = SW1
#: ``VmaFlags.MERGEABLE`` as a plain int, for the scan's hot loop.
MERGEABLE_FLAG = int(VmaFlags.MERGEABLE)
#: A little-endian 8-byte word (a PT entry) read in place from DRAM.
U64_AT = struct.Struct("<Q").unpack_from
#: The first 8 bytes of a page as a big-endian number: their order is ``memcmp``'s.
HEAD_AT = struct.Struct(">Q").unpack_from

#: ``race_hook(point, pid, addr)``: called between the merge steps.
RaceHook = Callable[[str, int, int], None]


class KsmBase:
    """ksmd's state over one emulated :class:`Machine`, and its frame and page-table
    helpers (see the module docstring)."""

    def __init__(self, machine: Machine, knobs: KsmKnobs) -> None:
        self.machine = machine
        self.dram = machine.dram
        self.knobs_state = knobs
        #: The shared zero page (never freed, never written).
        self.zero_frame = machine.alloc_frame()
        self.zero_checksums = {"xxhash": xxhash_page(bytes(PAGE)),
                               "jhash2": checksum_function("jhash2")(bytes(PAGE))}  # fmt: skip
        self._checksum: Checksum = checksum_function(knobs.checksum)
        self.procs: dict[int, Process] = {}
        #: ksmd's mm list, in registration order.
        self.mm_list: list[Process] = []
        self.frames: dict[int, Frame] = {}
        self.stable_tree: RbTree[StableNode] = RbTree()
        self.unstable_tree: RbTree[RmapItem] = RbTree()
        self.unstable_gen = 0
        self.next_node_id = 1
        # The kernel's counters.
        self.seqnr = 0
        self.pages_shared = 0
        self.pages_sharing = 0
        self.pages_unshared = 0
        self.rmap_items = 0
        self.stable_node_chains = 0
        self.stable_node_dups = 0
        self.ksm_zero_pages = 0
        self.pages_skipped = 0
        #: Extra statistics (not kernel counters): comparisons, lookahead, COW, ...
        self.stats: dict[str, int] = dict.fromkeys(
            ("comparisons", "lookahead_hits", "lookahead_misses", "pages_scanned",
             "cow_ksm", "merges", "host_cache_dropped", "page_cache_skipped"), 0)  # fmt: skip
        # The scan cursor (ksm_scan): -1 is the list head (between full scans).
        self.scan_index = -1
        self.scan_addr = 0
        self.scan_prev: RmapItem | None = None
        self.now_ms = 0
        self.next_batch_ms = 0
        #: Host page cache: id -> frame.
        self.host_pages: dict[int, int] = {}
        self.race_hook: RaceHook | None = None
        #: User stores so far, and their number when the unstable tree was last emptied
        #: (while they are equal no page in the tree has changed since it went in).
        self.user_stores = 0
        self.stores_at_unstable_start = 0

    # == frames ======================================================================
    def get_page(self, frame: int) -> None:
        """Take a temporary reference on ``frame`` (the kernel's ``get_page``)."""
        self.frames[frame].holds += 1

    def put_page(self, frame: int) -> None:
        """Drop a reference taken by :meth:`get_page`; frees the frame when nothing maps
        or holds it."""
        f = self.frames[frame]
        f.holds -= 1
        self._maybe_free(frame, f)

    def _maybe_free(self, frame: int, f: Frame) -> None:
        """Free ``frame`` when nothing maps or holds it (a KSM page's node goes stale)."""
        if f.mapcount == 0 and f.holds == 0:
            del self.frames[frame]
            self.machine.free_frame(frame)

    def page_bytes(self, frame: int) -> bytes:
        """The content of ``frame`` (a copy)."""
        return bytes(self.dram[frame : frame + PAGE])

    def memcmp_pages(self, page: bytes, frame: int) -> int:
        """``memcmp_pages``: compare ``page`` with the content of ``frame``; counted.
        (The first 8 bytes are compared first, read in place as a big-endian number:
        when they differ they decide the order, which is the same as ``memcmp``'s; it
        only saves copying the frame.)"""
        self.stats["comparisons"] += 1
        return self._order(page, HEAD_AT(page)[0], frame)

    def _order(self, page: bytes, head: int, frame: int) -> int:
        """``memcmp`` of ``page`` (whose first 8 bytes are ``head``, big-endian) with the
        content of ``frame``, uncounted: -1, 0 or 1."""
        dram = self.dram
        other_head: int = HEAD_AT(dram, frame)[0]
        if head != other_head:
            return -1 if head < other_head else 1
        other = dram[frame : frame + PAGE]
        if page == other:
            return 0
        return -1 if page < other else 1

    def is_live(self, node: StableNode) -> bool:
        """The keyhole test of ``ksm_get_folio``: the node's frame is still its KSM page."""
        f = self.frames.get(node.frame)
        return f is not None and f.stable is node

    # == page tables =================================================================
    def pte(self, proc: Process, va: int) -> tuple[int, int]:
        """``(entry address, entry)`` of the PT entry for ``va``; ``(0, 0)`` when no
        page table covers it (or a large page does)."""
        region = va >> 21
        pt = proc.pt_cache.get(region)
        read_u64 = self.machine.read_u64
        if pt is None:
            table = proc.space.cr3
            for shift in (39, 30, 21):
                upper = read_u64(table + ((va >> shift) & 511) * 8)
                if not upper & P or upper & PS:
                    return 0, 0
                table = upper & ADDR_MASK
            pt = table
            proc.pt_cache[region] = pt
        addr = pt + ((va >> 9) & 0xFF8)
        return addr, read_u64(addr)

    def anon_frame(self, proc: Process, va: int) -> int | None:
        """The anonymous (private or KSM) frame mapped at ``va``, or None (unmapped,
        the zero page)."""
        entry = self.pte(proc, va)[1]
        if not entry & P:
            return None
        frame = entry & ADDR_MASK
        return frame if frame in self.frames else None

    def find_mergeable_vma(self, proc: Process, va: int) -> bool:
        """``find_mergeable_vma``: whether a MERGEABLE VMA covers ``va``."""
        vma = proc.space.find_vma(va)
        return vma is not None and bool(vma.flags._value_ & MERGEABLE_FLAG)

    def _set_pte(self, proc: Process, va: int, value: int) -> None:
        """``ptep_clear_flush`` then ``set_pte_at``: clear the PTE and flush its TLB
        entry (``AddressSpace.unmap``), then write the new one (``AddressSpace.map``,
        which flushes again: harmless)."""
        space = proc.space
        space.unmap(va)
        space.map(va, value & ADDR_MASK, value & ~ADDR_MASK & ~P)
