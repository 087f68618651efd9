"""Deliberately broken UMFS variants that the crash explorer must catch: one per bug class.

Twelve classes of crash-consistency bug that a checker for a persistent-memory file
system must catch (the bugs that crash checkers such as Chipmunk, Vinter and Jaaru were
built to find, and a crash during recovery, which none of them injects). Each entry of
:data:`UMFS_MUTANTS` is one of them, written the way a kernel engineer would get it
wrong: a subclass of :class:`~impl.umfs.Umfs` (and, for the U-Log protocol, of
:class:`~impl.umfs_ulog.ULog`) overriding one step, or a ``configure`` hook that drops one
persist site's flushes or fence through ``PmAccess.skip_flush`` / ``skip_fence``. No
mutant changes a byte of ``impl/``; every one behaves like UMFS while nothing crashes
(same trees, no exceptions), so only a crash can tell them apart.

Each :class:`MutantSpec` carries a small *witness workload* on which the explorer finds
the bug, and the explorer settings that need (recovery crashes only for the classes
about recovery itself). :func:`mutation_table` measures, for every mutant, which mode
catches it first — crashes at fences, crashes before every store, or only crashes
during recovery — and after how many crash images.

The witnesses share :data:`SETUP`: a file ``/a`` of 5000 bytes (two pages; written,
closed) and a directory ``/d``, not crashed. Four mutants are reached only by the
workloads that the campaign's contexts and the check's later workloads add (a directory
held open, a second process that exits, a directory moved into another, a write into
pages a truncate freed); their witnesses extend the setup accordingly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

from impl.umfs import Umfs
from impl.umfs_layout import (
    DIRENT_SIZE,
    KIND_DIR,
    DIRENTS_PER_PAGE,
    DIRPAGE_CHECKSUM,
    FREE_INODE,
    INODE_SIZE,
    LOG_ATTR_BYTES,
    LOG_ATTR_LINE,
    LOG_ATTR_VALID,
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
    pack_dirent,
    pages_for,
    u64,
    unpack_dirent,
    word,
)
from impl.umfs_tables import ZERO_PAGE
from impl.umfs_ulog import OP_NAMES, OPS, PHASES, Txn, ULog
from memoracle.umfs.crash_explorer import CrashExplorer, Variant
from memoracle.umfs.lazy_explorer import LazyCrashExplorer
from memoracle.umfs.mutants import SeesDirectoryMoves
from spec.crash_recovery import Op
from spec.persistency import PersistMode
from spec.umfs_api import FsError

#: The setup every witness starts from (not crashed).
SETUP: tuple[Op, ...] = (
    ("creat", "/a"),
    ("write", "/a", 0, 5000, 1),
    ("close", "/a"),
    ("mkdir", "/d"),
)

#: An in-place overwrite of 200 bytes across the boundary of ``/a``'s two pages.
OVERWRITE: Op = ("write", "/a", 4000, 200, 3)
#: An overwrite of ``/a``'s second page that also appends a third (new) page.
APPEND: Op = ("write", "/a", 4096, 5000, 4)


# ============================================================ helpers: the U-Log protocol's steps


def _write_log(
    log: ULog, txn: Txn, seq: int, *, state: str = "last", fence_records: bool = True
) -> list[tuple[int, int]]:
    """Step 1 of :meth:`ULog.commit` without its last fence: store the undo records and
    persist them (site ``"log-records"``; with ``fence_records=False``, as one epoch with
    the header instead), then store the header, the ``state`` word ``"last"`` as UMFS
    does (or, for mutants, ``"first"`` or ``"never"``); return the regions to persist."""
    records = b"".join(
        u64(paddr) + u64(len(old)) + old.ljust(-(-len(old) // 8) * 8, b"\0") for paddr, old in txn.undo
    )
    log.ensure_capacity(txn.zone, len(records))
    header = log.header()
    op = OPS.get(txn.op, 0)
    regions: list[tuple[int, int]] = []
    log.write_span(LOG_RECORDS, records, regions)
    if regions and fence_records:
        log.pm.persist("log-records", regions)
        regions = []
    fields = [
        (LOG_SEQ, seq),
        (LOG_COUNT, len(txn.undo)),
        (LOG_NBYTES, len(records)),
        (LOG_OP, op),
        (LOG_CHECKSUM, log_checksum(seq, len(txn.undo), len(records), op, records)),
    ]
    valid = [(LOG_STATE, LOG_VALID)]
    order = {"last": fields + valid, "first": valid + fields, "never": fields}[state]
    for offset, value in order:
        log.pm.store(header + offset, u64(value))
    return regions + [(header, 64)]


def _store_phase(log: ULog, txn: Txn, phase: str) -> list[tuple[int, int]]:
    """Store one phase's writes (no flush, no fence); return their regions."""
    for paddr, data in txn.writes[phase]:
        log.pm.store(paddr, data)
    return [(paddr, len(data)) for paddr, data in txn.writes[phase]]


class _MutantUmfs(Umfs):
    """A UMFS whose U-Logs are instances of :attr:`log_cls` (for U-Log mutants)."""

    log_cls: type[ULog] = ULog

    def _log_at(self, top: int) -> ULog:
        return self.log_cls(self.pm, self.tables, top)


def _skip(flush: Sequence[str] = (), fence: Sequence[str] = ()) -> Callable[[Umfs], None]:
    def configure(fs: Umfs) -> None:
        fs.pm.skip_flush.update(flush)
        fs.pm.skip_fence.update(fence)

    return configure


# ============================================================ 3, 4, 5, 7, 9, 10, 12: the U-Log


class OverwriteBeforeBackupLog(ULog):
    """Class 3: the write's new bytes are stored before the log fence, so a line of new
    data may reach SCM (evicted) while its backup in the U-Log is not yet durable."""

    def commit(self, txn: Txn, seq: int) -> None:
        _store_phase(self, txn, "data")  # BUG: in place before the undo records are durable
        super().commit(txn, seq)


class NeverInvalidatedLog(ULog):
    """Class 4: commit never clears the ``state`` word: a completed operation's log stays
    valid, and the next recovery undoes an operation that had returned."""

    def invalidate(self, site: str) -> None:
        if site == "invalidate":  # BUG: the commit's final step is missing
            return
        super().invalidate(site)


class InvalidateBeforeDataLog(ULog):
    """Class 5: the log is invalidated (cleared and persisted) before the phases it
    protects are flushed: a crash leaves some new bytes and no way to undo them."""

    def commit(self, txn: Txn, seq: int) -> None:
        self.pm.persist("log", _write_log(self, txn, seq))
        regions = [region for phase in PHASES for region in _store_phase(self, txn, phase)]
        self.invalidate("invalidate")  # BUG: before the data and attributes are durable
        self.pm.persist("data", regions)
        txn.zone.give_back(txn.free_after)


class LinkBeforeLogLog(ULog):
    """Class 7: an append initialises and links its new pages ("in kernel mode") and
    persists that before the U-Log records the old entries: a crash leaves pages linked
    past the end of the file that no log will unlink."""

    def commit(self, txn: Txn, seq: int) -> None:
        if txn.op == "write" and txn.fresh:
            # BUG: the table phase runs (and is persisted) before step 1.
            self.pm.persist("append-link", _store_phase(self, txn, "tables"))
        super().commit(txn, seq)


class ReinsertUndoLog(ULog):
    """Class 9: recovery undoes a removed directory entry *logically* — it re-adds the
    name in the first free slot of the directory page, re-sealing the page's checksum —
    and decides whether to by looking at the entry's original slot. The re-insertion does
    not fill that slot, so a recovery that is itself interrupted and run again adds the
    name a second time."""

    def pending(self) -> tuple[str, list[tuple[int, bytes]]] | None:
        found = super().pending()
        if found is None or found[0] not in ("unlink", "rmdir", "rename"):
            return found
        op, undo = found
        reinserted: dict[int, int] = {}  # directory page → slot the name goes back to
        rewritten = []
        for paddr, old in undo:
            page, at = paddr - paddr % PAGE, paddr % PAGE
            is_entry = (
                len(old) == 8 and word(old) != 0 and self.tables.zone.contains(page)
                and at % DIRENT_SIZE == 0 and at < DIRPAGE_CHECKSUM
            )  # fmt: skip
            if is_entry and self.pm.read_u64(paddr) == 0:  # the entry was removed: re-add it
                _, generation, name = unpack_dirent(self.pm.read(paddr, DIRENT_SIZE))
                raw = self.pm.read(page, DIRPAGE_CHECKSUM)
                free = next(s for s in range(DIRENTS_PER_PAGE) if word(raw, s * DIRENT_SIZE) == 0)
                # BUG: not idempotent — the slot tested above stays empty.
                rewritten.append((page + free * DIRENT_SIZE, pack_dirent(word(old), generation, name)))
                reinserted[page] = free
            else:
                rewritten.append((paddr, old))
        for page in reinserted:  # re-seal: the page's checksum for its new contents
            checksum_at = page + DIRPAGE_CHECKSUM
            old_checksum = next((old for paddr, old in undo if paddr == checksum_at), None)
            if old_checksum is None:
                continue
            before, after = bytearray(self.pm.read(page, PAGE)), bytearray(self.pm.read(page, PAGE))
            for paddr, old in undo:  # the page as the operation found it …
                if page <= paddr < page + PAGE:
                    before[paddr - page : paddr - page + len(old)] = old
            for paddr, old in rewritten:  # … and as this recovery leaves it
                if page <= paddr < page + PAGE:
                    after[paddr - page : paddr - page + len(old)] = old
            # CRC-32 is affine: crc(a, s) ^ crc(b, s) == crc(a ^ b, 0) ^ crc(0…0, 0).
            delta = bytes(x ^ y for x, y in zip(before[:DIRPAGE_CHECKSUM], after[:DIRPAGE_CHECKSUM]))
            sealed = word(old_checksum) ^ zlib.crc32(delta) ^ zlib.crc32(bytes(DIRPAGE_CHECKSUM))
            rewritten = [(p, o) for p, o in rewritten if p != checksum_at] + [(checksum_at, u64(sealed))]
        return op, rewritten


class ConsumeFirstLog(ULog):
    """Class 10: recovery consumes the log (clears and persists ``state``) as soon as
    it has read it, then applies the undo: a crash in between leaves a half-undone
    operation and an idle log, which no later recovery can repair."""

    def pending(self) -> tuple[str, list[tuple[int, bytes]]] | None:
        found = super().pending()
        if found is not None:
            self.invalidate("recovery-consume")  # BUG: before the undo is durable
        return found


class TrustingHeaderLog(ULog):
    """Class 12: records and header are persisted as one epoch with the header's
    ``state`` word stored first, and recovery trusts it without the checksum: a crash can
    leave ``state`` valid over a stale count, length or torn records, and recovery
    "undoes" garbage."""

    def commit(self, txn: Txn, seq: int) -> None:
        # BUG: state first, in the records' epoch, and never checked against the checksum
        self.pm.persist("log", _write_log(self, txn, seq, state="first", fence_records=False))
        for phase in PHASES:
            if txn.writes[phase]:
                self.pm.persist(phase, _store_phase(self, txn, phase))
        self.invalidate("invalidate")
        txn.zone.give_back(txn.free_after)

    def pending(self) -> tuple[str, list[tuple[int, bytes]]] | None:
        raw = self.pm.read(self.header(), 64)
        if word(raw, LOG_STATE) != LOG_VALID:
            return None
        count, nbytes, op = word(raw, LOG_COUNT), word(raw, LOG_NBYTES), word(raw, LOG_OP)
        if nbytes > 1 << 40:
            return None
        try:
            records = self._read_span(LOG_RECORDS, nbytes)
        except CorruptImage:
            return None
        # BUG: no checksum — the state word alone is trusted.
        undo: list[tuple[int, bytes]] = []
        pos = 0
        for _ in range(count):
            if pos + 16 > len(records):
                break
            paddr, length = word(records, pos), word(records, pos + 8)
            undo.append((paddr, records[pos + 16 : pos + 16 + length]))
            pos += 16 + -(-length // 8) * 8
        return OP_NAMES.get(op, f"op{op}"), undo


class NeverCommittedLog(ULog):
    """Class 4 (second form): commit writes the undo records and the header but never
    the ``state`` word :data:`LOG_VALID`: recovery sees an idle log over a half-done
    operation."""

    def commit(self, txn: Txn, seq: int) -> None:
        self.pm.persist("log", _write_log(self, txn, seq, state="never"))  # BUG: no commit word
        for phase in PHASES:
            if txn.writes[phase]:
                self.pm.persist(phase, _store_phase(self, txn, phase))
        self.invalidate("invalidate")
        txn.zone.give_back(txn.free_after)


class OverwriteBeforeBackup(_MutantUmfs):
    """Class 3: UMFS whose writes overwrite data before its U-Log backup is durable.

    See :class:`OverwriteBeforeBackupLog`.
    """

    log_cls = OverwriteBeforeBackupLog


class NeverInvalidated(_MutantUmfs):
    """Class 4: UMFS whose U-Log commits never invalidate the log.

    See :class:`NeverInvalidatedLog`.
    """

    log_cls = NeverInvalidatedLog


class InvalidateBeforeData(_MutantUmfs):
    """Class 5: UMFS that invalidates a U-Log before the data it protects is durable.

    See :class:`InvalidateBeforeDataLog`.
    """

    log_cls = InvalidateBeforeDataLog


class LinkBeforeLog(_MutantUmfs):
    """Class 7: UMFS whose appends link new pages before logging.

    See :class:`LinkBeforeLogLog`.
    """

    log_cls = LinkBeforeLogLog


class ReinsertUndo(_MutantUmfs):
    """Class 9: UMFS whose recovery of an entry removal is not idempotent.

    See :class:`ReinsertUndoLog`.
    """

    log_cls = ReinsertUndoLog


class ConsumeFirst(_MutantUmfs):
    """Class 10: UMFS whose recovery clears the log before its undo is durable.

    See :class:`ConsumeFirstLog`.
    """

    log_cls = ConsumeFirstLog


class TrustingHeader(_MutantUmfs):
    """Class 12: UMFS that writes the log's state word first and trusts it unchecked.

    See :class:`TrustingHeaderLog`.
    """

    log_cls = TrustingHeaderLog


class NeverCommitted(_MutantUmfs):
    """Class 4: UMFS whose U-Log commits never write the commit (state) word.

    See :class:`NeverCommittedLog`.
    """

    log_cls = NeverCommittedLog


# ============================================================ 6, 8, 11: the file system's plans


class SizeBeforeLinks(Umfs):
    """Class 6: a zero-extending ``ftruncate`` skips the U-Log ("new pages hold nothing
    to back up") and updates the file's attributes (size, table digest, their checksum)
    and its page-table pointers as separate in-place stores, the attributes first: a crash
    between leaves attributes that claim pages the table does not link (or an attribute
    line torn between its words)."""

    def _truncate(self, ino: int, length: int) -> None:
        size, digest = self.meta.attrs(ino)
        if length <= size:
            super()._truncate(ino, length)
            return
        txn = Txn(self.pm, self.zone, "truncate")
        top = self._inode(ino).fpt
        pages = txn.grow(self.tables, top, pages_for(size), pages_for(length))
        txn.writes["data"] += [(page, ZERO_PAGE) for page in pages]
        attrs = Txn(self.pm, self.zone, "truncate")
        self.meta.plan_attrs(attrs, ino, length, add_digest(digest, txn.digest_delta.get(top, 0)))
        # BUG: the attributes are published (in place, alone) before the pointers.
        for paddr, data in attrs.writes["attrs"]:
            self.pm.store(paddr, data)
        self.pm.persist("attrs", [(paddr, len(data)) for paddr, data in attrs.writes["attrs"]])
        regions = []
        for phase in ("tables", "data"):
            for paddr, data in txn.writes[phase]:
                self.pm.store(paddr, data)
                regions.append((paddr, len(data)))
        self.pm.persist("tables", regions)


class SizeNotLogged(Umfs):
    """Class 8: a write or truncate logs the old bytes of data and tables but not the
    old attributes (size, table digest and their checksum): recovery unlinks the new
    pages and restores the data, and the size stays new."""

    def _commit(self, txn: Txn, log_ino: int) -> None:
        if txn.op in ("write", "truncate"):
            header = self.meta.cached.get(log_ino)  # the attributes live in the U-Log …
            start = header + LOG_ATTR_LINE if header is not None else self._inode_addr(log_ino)
            end = start + (LOG_ATTR_BYTES if header is not None else INODE_SIZE)  # … or the inode
            txn.undo = [(paddr, old) for paddr, old in txn.undo if not start <= paddr < end]  # BUG
        super()._commit(txn, log_ino)


class FreeBeforeUnlink(Umfs):
    """Class 11: ``unlink`` of a file's last name frees its inode (the slot cleared in
    place, persisted, as if it were an orphan) *before* the transaction that removes the
    directory entry: a crash between leaves an entry naming a free inode."""

    def _plan_drop(self, txn: Txn, links: dict[int, int], ino: int) -> None:
        super()._plan_drop(txn, links, ino)
        if txn.op == "unlink" and links[ino] == 0 and not self.open_count.get(ino, 0):
            # BUG: the inode is freed outside the log, before its entry goes.
            self.pm.store(self._inode_addr(ino), FREE_INODE.pack(ino))
            self.pm.persist("reclaim", [(self._inode_addr(ino), INODE_SIZE)])


class WritebackClearsCacheFirst(Umfs):
    """Class 6 (second form): the last ``close`` writes the cached attributes back in the
    wrong order — it clears the U-Log's ``attr_valid`` word (in place, persisted) before
    the transaction that stores the size in the inode: a crash between loses the size
    (the pair is updated non-atomically)."""

    def _write_back_attrs(self, ino: int) -> None:
        header = self.meta.cached.pop(ino)
        cached = self.meta.read_attr_line(ino, header)
        assert cached is not None
        self.pm.store(header + LOG_ATTR_VALID, u64(0))  # BUG: the cache is dropped first
        self.pm.persist("attr-writeback", [(header + LOG_ATTR_VALID, 8)])
        txn = Txn(self.pm, self.zone, "close")
        self.meta.plan_inode(txn, ino, size=cached[0], digest=cached[1])
        txn.write(header + LOG_ATTR_LINE, bytes(LOG_ATTR_BYTES), "attrs")
        self._commit(txn, ino)
        del self._open_kinds[ino]


class EntryBeforeInode(Umfs):
    """Class 11 (second form): ``creat``/``mkdir`` publishes the new directory entry in
    place (persisted) before the transaction that initialises the inode: a crash between
    leaves an entry naming a free inode."""

    def _commit(self, txn: Txn, log_ino: int) -> None:
        if txn.op in ("create", "mkdir"):
            entries = [(paddr, data) for paddr, data in txn.writes["attrs"] if len(data) == DIRENT_SIZE]
            for paddr, data in entries:  # BUG: the entry goes first, outside the log
                self.pm.store(paddr, data)
            self.pm.persist("dirent", [(paddr, len(data)) for paddr, data in entries])
        super()._commit(txn, log_ino)


class DirWritebackClearsCacheFirst(WritebackClearsCacheFirst):
    """Class 6 (third form): as :class:`WritebackClearsCacheFirst`, for directories only —
    the last ``close`` of an open directory drops its cached attributes (size and
    digest, changed by the entries made while it was open) before writing them back. Only
    a workload that opens a directory reaches it."""

    def _write_back_attrs(self, ino: int) -> None:
        if self._open_kinds.get(ino) == KIND_DIR:
            super()._write_back_attrs(ino)
        else:
            Umfs._write_back_attrs(self, ino)


class ExitWritebackClearsCacheFirst(WritebackClearsCacheFirst):
    """Class 6 (fourth form): a process that exits while it holds the last descriptor of
    a file writes the cached attributes back cache-flag first (``close`` does it right).
    Only a workload with a second process that exits reaches it."""

    _exiting = False

    def exit(self, pid: int) -> None:
        self._exiting = True
        try:
            super().exit(pid)
        finally:
            self._exiting = False

    def _write_back_attrs(self, ino: int) -> None:
        if self._exiting:
            super()._write_back_attrs(ino)
        else:
            Umfs._write_back_attrs(self, ino)


class ParentPointerAfter(SeesDirectoryMoves):
    """Class 11 (third form): a directory renamed into another parent gets its new parent
    pointer in place (persisted) after the transaction that moves its entry, not in it: a
    crash between leaves a directory named in a parent its pointer does not name. Only a
    rename of a directory across parents reaches it."""

    _moving: int | None = None

    def rename(self, old: str, new: str) -> None:
        moved = self.directory_moved_across_parents(old, new)
        self._moving = None if moved is None else moved[2]
        try:
            super().rename(old, new)
        finally:
            self._moving = None

    def _commit(self, txn: Txn, log_ino: int) -> None:
        if txn.op != "rename" or self._moving is None:
            super()._commit(txn, log_ino)
            return
        at = self._inode_addr(self._moving)
        late = [w for writes in txn.writes.values() for w in writes if at <= w[0] < at + INODE_SIZE]
        for phase, writes in txn.writes.items():
            txn.writes[phase] = [w for w in writes if not at <= w[0] < at + INODE_SIZE]
        super()._commit(txn, log_ino)
        for paddr, data in late:  # BUG: the moved directory's inode, outside the log, last
            self.pm.store(paddr, data)
        self.pm.persist("inode", [(paddr, len(data)) for paddr, data in late])


class ReusedPageZerosUnflushed(Umfs):
    """Class 1 (third form): a write that links new pages zeroes them only where they are
    not zero already (line by line) and does not flush that zero fill — harmless on a page
    never used, wrong on a page a truncate freed: a crash may show its old bytes. Only a
    write that reuses a freed page shows it."""

    def _commit(self, txn: Txn, log_ino: int) -> None:
        if txn.op == "write":
            kept: list[tuple[int, bytes]] = []
            for paddr, data in txn.writes["data"]:
                if paddr not in txn.fresh or len(data) != PAGE:
                    kept.append((paddr, data))
                    continue
                old = self.pm.read(paddr, PAGE)
                for line in range(0, PAGE, 64):
                    if any(old[line : line + 64]):
                        self.pm.store(paddr + line, bytes(64))  # BUG: the zero fill is never flushed
                used = [i for i, byte in enumerate(data) if byte]
                if used:
                    kept.append((paddr + used[0], data[used[0] : used[-1] + 1]))
            txn.writes["data"] = kept
        super()._commit(txn, log_ino)


# ============================================================ the registry

#: Classes per crash point when a mutant is explored lazily. A mutant that never flushes
#: its U-Log leaves a valid state word over torn record lines, which recovery reads in
#: full for the checksum: one class per combination of torn lines (astronomically many),
#: none of them a violation. The cap lets the search move on to the crash point where
#: the bug shows; the table says where it applied.
MUTANT_CLASS_CAP = 500


@dataclass(frozen=True)
class MutantSpec:
    """One mutant: the variant to explore, the bug class it belongs to (1–12 of the
    notes), what it breaks, and a witness workload on which the explorer catches it."""

    variant: Variant
    bug_class: int
    description: str
    setup: tuple[Op, ...]
    ops: tuple[Op, ...]
    #: Whether the witness needs crashes during recovery (classes about recovery).
    recovery_crashes: bool = False
    image_limit: int = 16

    @property
    def name(self) -> str:
        """The registry key."""
        return self.variant.name

    def explorer(
        self,
        *,
        image_limit: int | None = None,
        every_store: bool = False,
        recovery_crashes: bool | None = None,
        variant: Variant | None = None,
        mode: PersistMode = PersistMode.ADR,
    ) -> CrashExplorer:
        """An explorer for the witness (stopping at the first violation)."""
        return CrashExplorer(
            variant or self.variant,
            mode=mode,
            image_limit=self.image_limit if image_limit is None else image_limit,
            every_store=every_store,
            recovery_crashes=self.recovery_crashes if recovery_crashes is None else recovery_crashes,
            stop_at_first=True,
        )

    def lazy_explorer(
        self,
        *,
        every_store: bool = False,
        recovery_crashes: bool | None = None,
        variant: Variant | None = None,
        mode: PersistMode = PersistMode.ADR,
        max_classes: int | None = MUTANT_CLASS_CAP,
    ) -> LazyCrashExplorer:
        """A lazy explorer for the witness (stopping at the first violation), at most
        ``max_classes`` classes per crash point (see :data:`MUTANT_CLASS_CAP`)."""
        return LazyCrashExplorer(
            variant or self.variant,
            mode=mode,
            every_store=every_store,
            recovery_crashes=self.recovery_crashes if recovery_crashes is None else recovery_crashes,
            stop_at_first=True,
            max_classes=max_classes,
        )


def _spec(
    name: str,
    bug_class: int,
    description: str,
    ops: Sequence[Op],
    umfs_cls: type[Umfs] = Umfs,
    configure: Callable[[Umfs], None] | None = None,
    recovery_crashes: bool = False,
    setup: Sequence[Op] = SETUP,
) -> tuple[str, MutantSpec]:
    variant = Variant(name, umfs_cls, configure)
    return name, MutantSpec(variant, bug_class, description, tuple(setup), tuple(ops), recovery_crashes)


UMFS_MUTANTS: dict[str, MutantSpec] = dict(
    [
        _spec(
            "data_not_flushed", 1,
            "the data phase is never flushed (no clwb at site 'data'): the log is invalidated "
            "over new bytes that may still be lost",
            [OVERWRITE], configure=_skip(flush=["data"]),
        ),
        _spec(
            "log_fence_missing", 2,
            "the log's flushes are not fenced (no sfence at sites 'log-records' and 'log'): data "
            "stores overtake the undo records they need",
            [OVERWRITE], configure=_skip(fence=["log-records", "log"]),
        ),
        _spec(
            "overwrite_before_backup", 3,
            "a write stores its new bytes in place before the U-Log fence makes their backup durable",
            [OVERWRITE], OverwriteBeforeBackup,
        ),
        _spec(
            "log_never_invalidated", 4,
            "commit never clears the log's state word: recovery undoes an operation that returned",
            [OVERWRITE], NeverInvalidated,
        ),
        _spec(
            "invalidate_before_data", 5,
            "the log is invalidated and persisted before the data and attributes it protects are flushed",
            [OVERWRITE], InvalidateBeforeData,
        ),
        _spec(
            "size_before_links", 6,
            "a zero-extending truncate updates size and page pointers in place, outside the log, "
            "size first: the size can claim unlinked pages",
            [("truncate", "/a", 12000)], SizeBeforeLinks,
        ),
        _spec(
            "append_links_before_log", 7,
            "an append links its new pages into the file table and persists them before the "
            "U-Log holds the old entries: pages stay linked past the end",
            [APPEND], LinkBeforeLog,
        ),
        _spec(
            "old_size_not_logged", 8,
            "the undo log of a write omits the old size: recovery unlinks the appended page "
            "but leaves the new size",
            [APPEND], SizeNotLogged,
        ),
        _spec(
            "reinsert_entry_undo", 9,
            "recovery undoes an entry removal by re-adding the name in the first free slot, "
            "keyed on the original slot: run twice, it adds the name twice",
            [("unlink", "/a")], ReinsertUndo, recovery_crashes=True,
            setup=[("creat", "/x"), ("close", "/x"), ("creat", "/a"), ("close", "/a"), ("unlink", "/x")],
        ),
        _spec(
            "recovery_consumes_log_first", 10,
            "recovery clears the log's state word before its undo is durable: a crash during "
            "recovery leaves a half-undone write for good",
            [OVERWRITE], ConsumeFirst, recovery_crashes=True,
        ),
        _spec(
            "free_inode_before_entry", 11,
            "unlink frees the inode (its slot cleared in place, persisted) outside the log, before the "
            "transaction that removes its directory entry",
            [("unlink", "/a")], FreeBeforeUnlink,
        ),
        _spec(
            "trust_log_state_word", 12,
            "the log header's state word is written first and recovery trusts it without the "
            "checksum: a half-written header or torn records are 'undone'",
            [OVERWRITE], TrustingHeader,
        ),
        # ---- second forms of some classes (cheap; same witnesses' style)
        _spec(
            "log_not_flushed", 1,
            "the U-Log's records and header are never flushed (no clwb at sites 'log-records' "
            "and 'log'): the data phase can outrun its undo records",
            [OVERWRITE], configure=_skip(flush=["log-records", "log"]),
        ),
        _spec(
            "log_never_committed", 4,
            "commit writes records and header but never the state word LOG_VALID: recovery "
            "ignores a half-done operation",
            [OVERWRITE], NeverCommitted,
        ),
        _spec(
            "attr_writeback_unordered", 6,
            "close clears the cached-attributes flag before writing the cached size back to "
            "the inode: a crash between loses the size",
            [("close", "/a")], WritebackClearsCacheFirst,
            setup=[("creat", "/a"), ("write", "/a", 0, 5000, 1), ("mkdir", "/d")],
        ),
        # ---- forms only the extended workloads reach (tests/test_crash_mutants.py)
        _spec(
            "dir_attr_writeback_unordered", 6,
            "the last close of an open directory clears its cached-attributes flag before "
            "writing the cached size and digest back: a crash between loses its new entries' digest",
            [("close", "/d")], DirWritebackClearsCacheFirst,
            setup=[*SETUP, ("opendir", "/d"), ("link", "/a", "/d/c")],
        ),
        _spec(
            "exit_writeback_unordered", 6,
            "a process exiting with the last descriptor of a file clears the cached-attributes "
            "flag before writing the cached size back: a crash between loses the size",
            [("exit", "p2")], ExitWritebackClearsCacheFirst,
            setup=[*SETUP, ("spawn", "p2"), ("open", "p2", "/a"), ("write", "/a", 4096, 5000, 4), ("close", "/a")],
        ),
        _spec(
            "parent_pointer_after", 11,
            "a directory renamed across parents gets its new parent pointer in place after the "
            "transaction that moves its entry, outside it",
            [("rename", "/d", "/e/d")], ParentPointerAfter,
            setup=[*SETUP, ("mkdir", "/e")],
        ),
        _spec(
            "reused_page_zeros_unflushed", 1,
            "a write stores the zero fill of the pages it links without flushing it: a page a "
            "truncate freed may show its old bytes after a crash",
            [("write", "/a", 100, 5000, 6)], ReusedPageZerosUnflushed,
            setup=[*SETUP, ("truncate", "/a", 0)],
        ),
        _spec(
            "entry_before_inode", 11,
            "create persists the new directory entry in place before the transaction that "
            "initialises the inode it names",
            [("creat", "/b")], EntryBeforeInode,
        ),
    ]
)


# ============================================================ small witnesses, for the differential test

#: A setup whose file is one small write, for mutants that leave the setup's own stores
#: pending (then every crash point of the usual setup allows too many images to enumerate).
SMALL_SETUP: tuple[Op, ...] = (("creat", "/a"), ("write", "/a", 0, 100, 1), ("close", "/a"), ("mkdir", "/d"))

#: Per mutant, a workload ``(setup, ops)`` on which it is caught and whose every crash
#: point (and, for the mutants of classes 9 and 10, every crash point of its recoveries)
#: allows few enough images to enumerate, so that the lazy explorer and brute-force
#: enumeration can be compared on it (:mod:`memoracle.umfs.crash_differential`). The
#: witness itself where it is small enough. ``log_not_flushed`` has none: its log lines
#: stay pending for good, and every crash point of even a lone ``creat`` allows more than
#: 20,000 images.
DIFFERENTIAL_WITNESSES: dict[str, tuple[tuple[Op, ...], tuple[Op, ...]]] = {
    "data_not_flushed": (SMALL_SETUP, (("write", "/a", 0, 16, 2),)),
    "log_fence_missing": (SETUP, (("write", "/a", 4090, 12, 7),)),
    "overwrite_before_backup": (SETUP, (("write", "/a", 4090, 12, 7),)),
    "log_never_invalidated": (SETUP, (("write", "/a", 0, 100, 2),)),
    "invalidate_before_data": (SETUP, (("write", "/a", 0, 100, 2),)),
    "size_before_links": (SETUP, (("truncate", "/a", 12000),)),
    "append_links_before_log": (SETUP, (("write", "/a", 8190, 8, 6),)),
    "old_size_not_logged": (SETUP, (("write", "/a", 8190, 8, 6),)),
    "reinsert_entry_undo": (
        (("creat", "/x"), ("close", "/x"), ("creat", "/a"), ("close", "/a"), ("unlink", "/x")),
        (("unlink", "/a"),),
    ),
    "recovery_consumes_log_first": (SETUP, (("write", "/a", 0, 100, 2),)),
    "free_inode_before_entry": (SETUP, (("unlink", "/a"),)),
    "trust_log_state_word": (SETUP, (("write", "/a", 0, 100, 2),)),
    "log_never_committed": (SETUP, (("write", "/a", 0, 100, 2),)),
    "attr_writeback_unordered": ((("creat", "/a"), ("write", "/a", 0, 5000, 1), ("mkdir", "/d")), (("close", "/a"),)),
    "entry_before_inode": (SETUP, (("creat", "/b"),)),
    "dir_attr_writeback_unordered": ((*SETUP, ("opendir", "/d"), ("link", "/a", "/d/c")), (("close", "/d"),)),
    "exit_writeback_unordered": (
        (*SMALL_SETUP, ("spawn", "p2"), ("open", "p2", "/a"), ("write", "/a", 90, 20, 4), ("close", "/a")),
        (("exit", "p2"),),
    ),
    "parent_pointer_after": ((*SETUP, ("mkdir", "/e")), (("rename", "/d", "/e/d"),)),
    "reused_page_zeros_unflushed": ((*SMALL_SETUP, ("truncate", "/a", 0)), (("write", "/a", 200, 8, 6),)),
}


# ============================================================ which mode catches what

#: The modes of :func:`mutation_table`, cheapest first: (label, every_store, recovery_crashes).
MODES: tuple[tuple[str, bool, bool], ...] = (
    ("fences", False, False),
    ("every_store", True, False),
    ("recovery_crashes", False, True),
)


def catch(
    spec: MutantSpec, label: str, limit: int = 16, mode: PersistMode = PersistMode.ADR, method: str = "lazy"
) -> dict[str, object] | None:
    """Run the witness in one mode of :data:`MODES` (stopping at the first violation),
    lazily (classes) or by enumeration (``limit`` images per crash point); the
    explorer's counts at that violation and its report, or ``None`` if not caught."""
    every_store, recovery = {mode: (es, rc) for mode, es, rc in MODES}[label]
    explorer: LazyCrashExplorer | CrashExplorer
    if method == "lazy":
        explorer = spec.lazy_explorer(every_store=every_store, recovery_crashes=recovery, mode=mode)
    else:
        explorer = spec.explorer(image_limit=limit, every_store=every_store, recovery_crashes=recovery, mode=mode)
    found = explorer.explore(spec.setup, spec.ops)
    if not found:
        return None
    stats = explorer.stats
    return {
        "classes_until_caught": stats.classes + stats.recovery_classes,
        "capped_points": stats.sampled_points if method == "lazy" else 0,
        "images_until_caught": stats.images,
        "crash_points": stats.crash_points + stats.recovery_crash_points,
        "site": found[0].crash.site,
        "seconds": round(stats.seconds, 3),
        "report": found[0].render(),
    }


def mutation_table(
    limit: int = 16,
    names: Sequence[str] | None = None,
    all_modes: bool = False,
    mode: PersistMode = PersistMode.ADR,
) -> list[dict[str, object]]:
    """One row per mutant: ``mutant``, ``bug_class``, ``caught_by`` (the cheapest mode of
    :data:`MODES` in which the lazy explorer catches it on its witness),
    ``classes_until_caught`` (classes decided — recovery's included — up to the first
    violation), ``crash_points``, ``site`` (the persist site of that crash), ``seconds``;
    beside them, for comparison, the enumerating explorer in the same mode:
    ``images_until_caught`` (crash images checked, ``limit`` per crash point) or ``None``;
    and ``description``. With ``all_modes``, also ``modes``: per mode, the classes until
    caught or ``None``. ``mode`` is the persistence domain (under eADR the flush and fence
    mutants are correct, and ordering bugs need ``every_store``)."""
    rows: list[dict[str, object]] = []
    for name in names if names is not None else UMFS_MUTANTS:
        spec = UMFS_MUTANTS[name]
        results: dict[str, dict[str, object] | None] = {}
        for label, _, _ in MODES:
            results[label] = catch(spec, label, limit, mode)
            if results[label] is not None and not all_modes:
                break
        caught_by = next((label for label, result in results.items() if result is not None), "not caught")
        first = results.get(caught_by) or {}
        enumerated = catch(spec, caught_by, limit, mode, method="enumeration") if first else None
        row: dict[str, object] = {
            "mutant": name,
            "bug_class": spec.bug_class,
            "caught_by": caught_by,
            "classes_until_caught": first.get("classes_until_caught"),
            "capped_points": first.get("capped_points", 0),
            "images_until_caught": None if enumerated is None else enumerated["images_until_caught"],
            "crash_points": first.get("crash_points"),
            "site": first.get("site", ""),
            "seconds": first.get("seconds"),
            "description": spec.description,
        }
        if all_modes:
            row["modes"] = {
                label: None if result is None else result["classes_until_caught"]
                for label, result in results.items()
            }
        rows.append(row)
    return rows


def table_markdown(rows: Sequence[dict[str, object]], limit: int = 16) -> str:
    """The rows of :func:`mutation_table` as a Markdown table (for the README)."""
    per_mode = all("modes" in row for row in rows)
    modes = [label for label, _, _ in MODES] if per_mode else []
    head = ["mutant", "class", "caught by", "classes until caught", f"images until caught (enumerating, {limit} per point)", "crash site"]
    head += [f"classes ({label})" for label in modes] + ["what it breaks"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        images = row["images_until_caught"]
        capped = row.get("capped_points") or 0
        classes = f"{row['classes_until_caught']}" + (f" ({capped} crash point(s) capped at {MUTANT_CLASS_CAP})" if capped else "")
        cells = [
            f"`{row['mutant']}`", str(row["bug_class"]), str(row["caught_by"]),
            classes, "not caught" if images is None else str(images), f"`{row['site']}`",
        ]  # fmt: skip
        if per_mode:
            found = row["modes"]
            assert isinstance(found, dict)
            cells += ["—" if found.get(label) is None else str(found[label]) for label in modes]
        lines.append("| " + " | ".join(cells + [str(row["description"])]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - generates the README table
    import sys

    numbers = [int(arg) for arg in sys.argv[1:] if arg.isdigit()]
    images = numbers[0] if numbers else 16
    print(table_markdown(mutation_table(images, all_modes="--all" in sys.argv), images))
