"""UMFS's persistent-memory access, data-zone allocator and per-file page tables.

A file's page table is a real three-level x86-64 table in SCM (PDPT → PD → PT → data
pages), so that opening the file splices the PDPT into the process's PML4 and the MMU
walks it. Every entry is ``P | US | A``: present, user-readable, *not* writable (the
user's mapping is read-only; libumfs writes through the kernel's direct map), with the
accessed bit preset so that the MMU's walks never store to SCM. A U-Log uses the same
structure.

Choices: files are not sparse — every page below the size is allocated (a write past
the end zero-fills the gap); table pages are kept when a file shrinks and freed with the
file; the allocator is volatile (the paper rebuilds it at mount by walking the inodes),
lowest free page first, and pages freed by an operation return to it only after that
operation has committed, so an undo can never resurrect a page someone else reused.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import Callable, Iterable

from impl.phys_mem import Machine
from impl.umfs_layout import PAGE, CorruptImage, add_digest, table_term, u64
from spec.paging import ADDR_MASK, A, P, US

ENTRY_FLAGS = P | US | A
ZERO_PAGE = bytes(PAGE)
_LINE = 64

#: Called with the name of a persist point after its flushes, before its fence.
PersistHook = Callable[[str], None]


class PmAccess:
    """Loads, stores, flushes and fences on SCM by physical address (the direct map).

    Every ``persist`` names its *site* (``"log"``, ``"tables"``, ``"data"``, …) so that a
    crash explorer can say where it crashed and a mutant can drop one site's flushes.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.scm = machine.scm
        self.base = machine.scm_base
        self.skip_flush: set[str] = set()
        self.skip_fence: set[str] = set()
        self.flushes: dict[str, int] = {}
        #: The persist point being executed (for crash reports), "" outside one.
        self.site = ""

    def read(self, paddr: int, length: int) -> bytes:
        """The visible bytes at ``paddr``."""
        return self.machine.read(paddr, length)

    def read_u64(self, paddr: int) -> int:
        """The word at ``paddr``."""
        return self.machine.read_u64(paddr)

    def store(self, paddr: int, data: bytes) -> None:
        """A cached store to SCM."""
        self.scm.store(paddr - self.base, data)

    def persist(self, site: str, regions: Iterable[tuple[int, int]]) -> None:
        """``clwb`` every line of ``regions`` (``(paddr, length)``), then ``sfence``."""
        self.site = site
        flushed = 0
        if site not in self.skip_flush:
            clwb = self.scm.clwb
            last = -1
            for paddr, length in sorted(regions):
                start = max((paddr - self.base) & ~(_LINE - 1), last + _LINE)
                for line in range(start, paddr - self.base + length, _LINE):
                    clwb(line)
                    flushed += 1
                    last = line
            self.flushes[site] = self.flushes.get(site, 0) + flushed
        if site not in self.skip_fence:
            self.scm.sfence()
        self.site = ""


class PageAllocator:
    """The volatile free list of data-zone pages (physical addresses), lowest first."""

    def __init__(self, first: int, count: int) -> None:
        self.first = first
        self.limit = first + count * PAGE
        self._free: list[int] = []
        self._free_set: set[int] = set()

    def reset(self, used: set[int]) -> None:
        """Every page not in ``used`` is free."""
        self._free = [p for p in range(self.first, self.limit, PAGE) if p not in used]
        heapq.heapify(self._free)
        self._free_set = set(self._free)

    @property
    def free_count(self) -> int:
        """How many pages are free."""
        return len(self._free)

    def contains(self, paddr: int) -> bool:
        """Whether ``paddr`` is a page of the data zone."""
        return self.first <= paddr < self.limit and paddr % PAGE == 0

    def take(self, count: int) -> list[int] | None:
        """``count`` free pages (lowest first), or ``None`` if there are not enough."""
        if count > len(self._free):
            return None
        pages = [heapq.heappop(self._free) for _ in range(count)]
        self._free_set.difference_update(pages)
        return pages

    def give_back(self, pages: Iterable[int]) -> None:
        """Return pages to the free list."""
        for page in pages:
            assert self.contains(page) and page not in self._free_set, f"double free of {page:#x}"
            heapq.heappush(self._free, page)
            self._free_set.add(page)

    def is_free(self, paddr: int) -> bool:
        """Whether ``paddr`` is on the free list."""
        return paddr in self._free_set


@dataclass
class TableScan:
    """What :meth:`FileTables.scan` found: table pages, ``(index, data page)`` pairs in
    index order, and the digest (:func:`impl.umfs_layout.table_term`)."""

    tables: list[int]
    data: list[tuple[int, int]]
    digest: int


def _indices(page_index: int) -> tuple[int, int, int]:
    return (page_index >> 18) & 511, (page_index >> 9) & 511, page_index & 511


class FileTables:
    """Reading and planning changes of three-level file page tables in SCM."""

    def __init__(self, pm: PmAccess, zone: PageAllocator) -> None:
        self.pm = pm
        self.zone = zone

    def _next(self, entry: int, where: str) -> int:
        paddr = entry & ADDR_MASK
        if not entry & P or not self.zone.contains(paddr):
            raise CorruptImage(f"{where}: entry {entry:#x} points outside the data zone")
        if entry != paddr | ENTRY_FLAGS:  # UMFS writes no other flags (and the MMU adds none)
            raise CorruptImage(f"{where}: entry {entry:#x} has flags {entry & ~ADDR_MASK:#x}, not {ENTRY_FLAGS:#x}")
        return paddr

    def entry_addr(self, top: int, page_index: int, level: int) -> int | None:
        """The physical address of the entry for ``page_index`` at ``level`` (3 = PDPT,
        2 = PD, 1 = PT), or ``None`` if a table above it is missing."""
        i3, i2, i1 = _indices(page_index)
        if level == 3:
            return top + 8 * i3
        pdpte = self.pm.read_u64(top + 8 * i3)
        if not pdpte:
            return None
        pd = self._next(pdpte, f"PDPT {top:#x}[{i3}]")
        if level == 2:
            return pd + 8 * i2
        pde = self.pm.read_u64(pd + 8 * i2)
        if not pde:
            return None
        pt = self._next(pde, f"PD {pd:#x}[{i2}]")
        return pt + 8 * i1

    def lookup(self, top: int, page_index: int) -> int | None:
        """The data page holding page ``page_index`` of the file, or ``None``."""
        at = self.entry_addr(top, page_index, 1)
        if at is None:
            return None
        pte = self.pm.read_u64(at)
        return self._next(pte, f"PT entry {at:#x}") if pte else None

    def _present(self, table: int) -> list[tuple[int, int]]:
        """``(index, entry)`` of every non-zero entry of the table at ``table``."""
        raw = self.pm.read(table, PAGE)
        if raw == ZERO_PAGE:
            return []
        # Entries cluster at the start of a table: unpack only up to the last non-zero byte.
        count = -(-int.from_bytes(raw, "little").bit_length() // 64)
        entries = struct.unpack_from(f"<{count}Q", raw)
        return [(i, e) for i, e in enumerate(entries) if e]

    def walk(self, top: int) -> tuple[list[int], list[tuple[int, int]]]:
        """Every table page and every ``(page_index, data page)`` reachable from ``top``.

        Raises :class:`CorruptImage` for an entry pointing outside the data zone or at a
        page already reached.
        """
        scan = self.scan(top, {}, "table")
        return scan.tables, scan.data

    def scan(self, top: int, owners: dict[int, str], owner: str) -> TableScan:
        """Walk the table at ``top`` as :meth:`walk` does, and compute its digest.

        Every page reached is recorded in ``owners`` (page → who owns it) under
        ``owner``; a page found there already — twice in this table, or in another —
        is :class:`CorruptImage` naming both owners. Hence the work and memory of
        scanning every table of an image are bounded by its number of data pages,
        whatever the tables hold.
        """
        if not self.zone.contains(top):
            raise CorruptImage(f"table pointer {top:#x} outside the data zone", owner)

        def claim(page: int) -> None:
            if page in owners:
                raise CorruptImage(
                    f"page {page:#x} is referenced twice (also by {owners[page]})", owner, page - self.pm.base
                )
            owners[page] = owner

        claim(top)
        tables = [top]
        data: list[tuple[int, int]] = []
        digest = 0
        for i3, pdpte in self._present(top):
            pd_addr = self._next(pdpte, f"{owner}: PDPT {top:#x}[{i3}]")
            claim(pd_addr)
            tables.append(pd_addr)
            digest = add_digest(digest, table_term(3, i3, pdpte))
            for i2, pde in self._present(pd_addr):
                pt_addr = self._next(pde, f"{owner}: PD {pd_addr:#x}[{i2}]")
                claim(pt_addr)
                tables.append(pt_addr)
                digest = add_digest(digest, table_term(2, (i3 << 9) | i2, pde))
                base = (i3 << 18) | (i2 << 9)
                for i1, pte in self._present(pt_addr):
                    page = self._next(pte, f"{owner}: PT {pt_addr:#x}[{i1}]")
                    claim(page)
                    data.append((base | i1, page))
                    digest = add_digest(digest, table_term(1, base | i1, pte))
        return TableScan(tables, data, digest)

    def count_new_tables(self, top: int, old_pages: int, new_pages: int) -> int:
        """How many PD and PT pages growing from ``old_pages`` to ``new_pages`` needs."""
        missing_pd: set[int] = set()
        missing_pt: set[tuple[int, int]] = set()
        for index in range(old_pages, new_pages, 1):
            i3, i2, i1 = _indices(index)
            if i1 and index != old_pages:
                continue  # same PT as the previous index
            if self.entry_addr(top, index, 2) is None:
                missing_pd.add(i3)
                missing_pt.add((i3, i2))
            elif self.entry_addr(top, index, 1) is None:
                missing_pt.add((i3, i2))
        return len(missing_pd) + len(missing_pt)


def entry(paddr: int) -> bytes:
    """A file-table entry pointing at ``paddr``: present, user, read-only, accessed."""
    return u64((paddr & ADDR_MASK) | ENTRY_FLAGS)
