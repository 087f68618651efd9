"""The U-Log: UMFS's per-file undo log, and the transactions that use it.

Every change UMFS makes to live persistent state is a :class:`Txn`, committed through
the U-Log of the file it changes (for a directory operation, the parent directory's):

1. **Log.** The old bytes of every region the operation will change are written to the
   U-Log as undo records, flushed and fenced (persist site ``"log-records"``); then the
   header — count, size, operation, a checksum (64-bit BLAKE2b,
   :func:`~impl.umfs_layout.log_checksum`) over header and records — and, last, the
   ``state`` word :data:`LOG_VALID`, all in the header's one cache line, flushed and
   fenced (site ``"log"``). The ``state`` word is a *commit store*: it persists only
   with the rest of its line (same-line order) and after the records (the fence), so
   a crash never leaves it valid over torn records or a torn header. The checksum is
   kept as a second line of defence (against a broken order or a damaged image); it
   costs recovery one pass over the records. (Fencing the records separately costs one
   ``sfence`` per operation; without it a crash may leave ``state`` valid over any
   combination of torn record lines, which only the checksum tells apart — and which a
   crash explorer that follows recovery's reads must then tell apart one by one.)
2. **Tables** (site ``"tables"``): new pages are initialised and linked into the file
   page table ("in kernel mode", as the paper says for appends).
3. **Data** (site ``"data"``): the file's bytes are updated in place or written to the
   new pages.
4. **Attributes** (site ``"attrs"``): size, link counts, directory entries, inodes.
5. **Invalidate** (site ``"invalidate"``): ``state`` is cleared, flushed and fenced.

Fresh pages (allocated by this operation, unreachable before it) need no undo: undoing
the links to them makes them unreachable again. Pages and inodes the operation frees go
back to the volatile allocators only after step 5.

**Checksums travel with what they cover.** A transaction that changes a checksummed
structure (an inode, a directory page, an attribute cache line; :mod:`impl.umfs_meta`)
plans the structure's new checksum too, computed over the structure as the transaction
will leave it (:meth:`Txn.planned`), in the attributes phase. The checksum word is
therefore logged and restored like any other changed word: after recovery every
structure has the checksum of its recovered contents. Likewise :meth:`Txn.grow` adds what
each new table entry contributes to the file page table's digest to
:attr:`Txn.digest_delta`, for the caller to store with the file's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from impl.umfs_layout import (
    LOG_CHECKSUM,
    LOG_COUNT,
    LOG_NBYTES,
    LOG_OP,
    LOG_RECORDS,
    LOG_SEQ,
    LOG_STATE,
    LOG_VALID,
    PAGE,
    CorruptImage,
    add_digest,
    log_checksum,
    table_term,
    u64,
    word,
)
from impl.umfs_tables import ZERO_PAGE, FileTables, PageAllocator, PmAccess, entry
from spec.paging import ADDR_MASK
from spec.umfs_api import NoSpace

PHASES = ("tables", "data", "attrs")

#: Operation codes stored in the header (for reports after a crash).
OPS = {
    "write": 1,
    "truncate": 2,
    "create": 3,
    "mkdir": 4,
    "unlink": 5,
    "rmdir": 6,
    "link": 7,
    "rename": 8,
    "close": 9,
    "reclaim": 10,
}
OP_NAMES = {code: name for name, code in OPS.items()}

#: Whether an undo record may touch ``(paddr, length)``.
RegionCheck = Callable[[int, int], bool]


@dataclass
class Txn:
    """The planned writes of one operation: per phase, with undo for non-fresh regions."""

    pm: PmAccess
    zone: PageAllocator
    op: str
    writes: dict[str, list[tuple[int, bytes]]] = field(
        default_factory=lambda: {phase: [] for phase in PHASES}
    )
    undo: list[tuple[int, bytes]] = field(default_factory=list)
    fresh: set[int] = field(default_factory=set)
    free_after: list[int] = field(default_factory=list)
    #: Per file page table (by its top), what new and removed entries change its digest.
    digest_delta: dict[int, int] = field(default_factory=dict)

    def write(self, paddr: int, data: bytes, phase: str) -> None:
        """Plan a store of ``data`` at ``paddr`` in ``phase``; log its old bytes unless
        the page is fresh."""
        if paddr - paddr % PAGE not in self.fresh:
            self.undo.append((paddr, self.pm.read(paddr, len(data))))
        self.writes[phase].append((paddr, data))

    def planned(self, paddr: int, length: int) -> bytes:
        """The bytes at ``paddr`` as they will be once every planned write is done."""
        out = bytearray(self.pm.read(paddr, length))
        end = paddr + length
        for phase in PHASES:
            for at, data in self.writes[phase]:
                lo, hi = max(at, paddr), min(at + len(data), end)
                if lo < hi:
                    out[lo - paddr : hi - paddr] = data[lo - at : hi - at]
        return bytes(out)

    def add_to_digest(self, top: int, term: int) -> None:
        """Record that the table at ``top`` gains (or, negated, loses) ``term``."""
        self.digest_delta[top] = add_digest(self.digest_delta.get(top, 0), term)

    def allocate(self, count: int) -> list[int]:
        """Take ``count`` fresh pages, or raise ``NoSpace`` (nothing changed)."""
        pages = self.zone.take(count)
        if pages is None:
            self.abort()
            raise NoSpace(f"{self.op}: {count} pages needed, {self.zone.free_count} free")
        self.fresh.update(pages)
        return pages

    def abort(self) -> None:
        """Give back the pages taken for an operation that will not happen."""
        self.zone.give_back(sorted(self.fresh))
        self.fresh.clear()

    def grow(self, tables: FileTables, top: int, old_pages: int, new_pages: int) -> list[int]:
        """Plan linking new data pages ``old_pages .. new_pages - 1`` into the table at
        ``top`` (allocating PD/PT pages as needed); return the data pages, in order.

        The data pages' contents are the caller's to write (phase ``"data"``)."""
        if new_pages <= old_pages:
            return []
        extra = tables.count_new_tables(top, old_pages, new_pages)
        pages = self.allocate(new_pages - old_pages + extra)
        spare = iter(pages[new_pages - old_pages :])
        data = pages[: new_pages - old_pages]
        fresh_tables: dict[int, bytearray] = {}
        planned: dict[int, int] = {}  # entries of existing tables written by this plan

        def set_entry(at: int, target: int, level: int, index: int) -> None:
            table = at - at % PAGE
            planned[at] = target
            self.add_to_digest(top, table_term(level, index, word(entry(target))))
            if table in fresh_tables:
                fresh_tables[table][at % PAGE : at % PAGE + 8] = entry(target)
            else:
                self.write(at, entry(target), "tables")

        def child(at: int, level: int, index: int) -> int:
            """The table the entry at ``at`` points to, creating a fresh one if absent."""
            if at in planned:
                return planned[at]
            current = self.pm.read_u64(at)
            if current:
                return current & ADDR_MASK
            new = next(spare)
            fresh_tables[new] = bytearray(PAGE)
            set_entry(at, new, level, index)
            return new

        for n, index in enumerate(range(old_pages, new_pages)):
            i3, i2, i1 = (index >> 18) & 511, (index >> 9) & 511, index & 511
            pd = child(top + 8 * i3, 3, i3)
            pt = child(pd + 8 * i2, 2, (i3 << 9) | i2)
            set_entry(pt + 8 * i1, data[n], 1, index)
        for table, contents in fresh_tables.items():
            self.writes["tables"].insert(0, (table, bytes(contents)))
        return data


class ULog:
    """The U-Log whose top-level table is at ``top``."""

    def __init__(self, pm: PmAccess, tables: FileTables, top: int) -> None:
        self.pm = pm
        self.tables = tables
        self.top = top

    def header(self) -> int:
        """The physical address of log page 0 (header and attributes)."""
        page = self.tables.lookup(self.top, 0)
        if page is None:
            raise CorruptImage(f"U-Log {self.top:#x} has no header page")
        return page

    def _record_addr(self, offset: int) -> int:
        page = self.tables.lookup(self.top, offset // PAGE)
        assert page is not None, "U-Log capacity was ensured"
        return page + offset % PAGE

    def write_span(self, offset: int, data: bytes, regions: list[tuple[int, int]]) -> None:
        """Store ``data`` at byte ``offset`` of the log (capacity already ensured) and
        append every stored ``(paddr, length)`` to ``regions``; nothing is flushed."""
        pos = 0
        while pos < len(data):
            at = offset + pos
            take = min(PAGE - at % PAGE, len(data) - pos)
            paddr = self._record_addr(at)
            self.pm.store(paddr, data[pos : pos + take])
            regions.append((paddr, take))
            pos += take

    def _read_span(self, offset: int, length: int) -> bytes:
        out = bytearray()
        pos = 0
        while pos < length:
            at = offset + pos
            take = min(PAGE - at % PAGE, length - pos)
            page = self.tables.lookup(self.top, at // PAGE)
            if page is None:
                raise CorruptImage(f"U-Log {self.top:#x}: record area ends at page {at // PAGE}")
            out += self.pm.read(page + at % PAGE, take)
            pos += take
        return bytes(out)

    def ensure_capacity(self, zone: PageAllocator, nbytes: int) -> None:
        """Grow the log (unlogged; flushed and fenced) to hold ``nbytes`` of records."""
        have = 0
        while self.tables.lookup(self.top, have) is not None:
            have += 1
        need = -(-(LOG_RECORDS + nbytes) // PAGE)
        if need <= have:
            return
        txn = Txn(self.pm, zone, "log-grow")
        pages = txn.grow(self.tables, self.top, have, need)
        for page in pages:
            txn.writes["tables"].append((page, ZERO_PAGE))
        regions = []
        for paddr, data in txn.writes["tables"]:
            self.pm.store(paddr, data)
            regions.append((paddr, len(data)))
        self.pm.persist("log-grow", regions)

    def commit(self, txn: Txn, seq: int) -> None:
        """Run ``txn`` through the five steps of the protocol (see the module doc)."""
        records = b"".join(
            u64(paddr) + u64(len(old)) + old.ljust(-(-len(old) // 8) * 8, b"\0")
            for paddr, old in txn.undo
        )
        self.ensure_capacity(txn.zone, len(records))
        header = self.header()
        op = OPS.get(txn.op, 0)
        regions: list[tuple[int, int]] = []
        self.write_span(LOG_RECORDS, records, regions)
        if regions:
            self.pm.persist("log-records", regions)  # durable before the header names them
        checksum = log_checksum(seq, len(txn.undo), len(records), op, records)
        self.pm.store(header + LOG_SEQ, u64(seq))
        self.pm.store(header + LOG_COUNT, u64(len(txn.undo)))
        self.pm.store(header + LOG_NBYTES, u64(len(records)))
        self.pm.store(header + LOG_OP, u64(op))
        self.pm.store(header + LOG_CHECKSUM, u64(checksum))
        self.pm.store(header + LOG_STATE, u64(LOG_VALID))  # the commit store, last
        self.pm.persist("log", [(header, 64)])
        for phase in PHASES:
            writes = txn.writes[phase]
            if not writes:
                continue
            for paddr, data in writes:
                self.pm.store(paddr, data)
            self.pm.persist(phase, [(paddr, len(data)) for paddr, data in writes])
        self.invalidate("invalidate")
        txn.zone.give_back(txn.free_after)

    def is_marked_valid(self) -> bool:
        """Whether the state word says an operation is in flight (trusted or not)."""
        return self.pm.read_u64(self.header() + LOG_STATE) == LOG_VALID

    def pending(self) -> tuple[str, list[tuple[int, bytes]]] | None:
        """The operation and undo records of a valid log, or ``None`` if it is idle or
        its header does not validate (torn: nothing was changed after it, see step 1)."""
        header = self.header()
        if self.pm.read_u64(header + LOG_STATE) != LOG_VALID:
            return None  # the commit word alone: the rest of an idle header is never read
        raw = self.pm.read(header, 64)
        seq, count, nbytes, op = (word(raw, f) for f in (LOG_SEQ, LOG_COUNT, LOG_NBYTES, LOG_OP))
        if nbytes > 1 << 40:
            return None
        try:
            records = self._read_span(LOG_RECORDS, nbytes)
        except CorruptImage:
            return None
        if log_checksum(seq, count, nbytes, op, records) != word(raw, LOG_CHECKSUM):
            return None
        undo: list[tuple[int, bytes]] = []
        pos = 0
        for _ in range(count):
            paddr, length = word(records, pos), word(records, pos + 8)
            padded = -(-length // 8) * 8
            undo.append((paddr, records[pos + 16 : pos + 16 + length]))
            pos += 16 + padded
        return OP_NAMES.get(op, f"op{op}"), undo

    def invalidate(self, site: str) -> None:
        """Clear the state word and persist it."""
        header = self.header()
        self.pm.store(header + LOG_STATE, u64(0))
        self.pm.persist(site, [(header, 8)])


def recover_log(log: ULog, valid_region: RegionCheck) -> str | None:
    """Undo the operation in flight in ``log``, if any; return its name.

    ``valid_region(paddr, length)`` must say whether an undo record may touch that
    region (it must lie in the inode zone or the data zone); a record that does not is
    corruption, reported as :class:`CorruptImage`."""
    pending = log.pending()
    if pending is None:
        if log.is_marked_valid():  # a torn header or torn records: clear it
            log.invalidate("recovery-invalidate")
            return "torn-log"
        return None
    op, undo = pending
    for paddr, old in undo:
        if not valid_region(paddr, len(old)):
            raise CorruptImage(f"U-Log {log.top:#x}: undo record for {paddr:#x} outside the file system")
    for paddr, old in reversed(undo):
        log.pm.store(paddr, old)
    log.pm.persist("recovery-undo", [(paddr, len(old)) for paddr, old in undo])
    log.invalidate("recovery-invalidate")
    return op
