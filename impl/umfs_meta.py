"""Checked access to UMFS's metadata on SCM: every read verifies, every change is planned
with its checksum.

:class:`Metadata` is the one place that reads and plans changes of the checksummed
structures of :mod:`impl.umfs_layout` — inode slots, the generation counter, the
attribute cache lines of U-Logs, directory pages — so that nothing else has to remember a
checksum:

- **Reads verify.** :meth:`Metadata.inode` checks the slot's checksum and fields and its
  pointers; :meth:`Metadata.attrs` checks the attribute cache line of an open inode;
  :meth:`Metadata.dir_slots` checks every directory page's checksum and every used
  entry's name; :meth:`Metadata.child` checks that an entry's inode is live, of the
  entry's generation and, for a directory, names the entry's directory as its parent.
  Any failure is :class:`~impl.umfs_layout.CorruptImage` naming the structure and its
  offset — never another exception, and never more work than the structure's size.
- **Changes carry their checksum.** Each ``plan_*`` method plans, into a
  :class:`~impl.umfs_ulog.Txn`, the changed words of a structure *and* its new checksum,
  computed over the structure as the transaction will leave it
  (:meth:`~impl.umfs_ulog.Txn.planned`), all in the attributes phase: the checksum word
  is logged and recovered like every other word it covers.

Where an inode's mutable attributes live: the size and the file-table digest are in the
inode while no descriptor refers to it, and in its U-Log's attribute cache line while one
does (the paper's cached attributes): :attr:`Metadata.cached` maps each such inode to its
U-Log header page.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from impl.umfs_layout import (
    DIRENT_SIZE,
    DIRENTS_PER_PAGE,
    DIRPAGE_CHECKSUM,
    GENERATION_MASK,
    INODE_SIZE,
    KIND_DIR,
    KIND_FREE,
    LOG_ATTR_BYTES,
    LOG_ATTR_LINE,
    LOG_IDENTITY,
    LOG_IDENTITY_BYTES,
    PAGE,
    ROOT_INO,
    SUPER_GENERATION,
    SUPER_GENERATION_BYTES,
    CorruptImage,
    Inode,
    Superblock,
    attr_checksum,
    dirpage_checksum,
    log_identity_problem,
    name_problem,
    pack_attrs,
    pack_generation,
    pages_for,
    unpack_dirent,
    unpack_generation,
    u64,
    verify_inode,
    word,
)
from impl.umfs_tables import FileTables, PmAccess, TableScan
from impl.umfs_ulog import Txn
from spec.umfs_api import NoSpace


#: How many verified directory pages :class:`Metadata` remembers (about 1 MiB of copies).
VERIFIED_PAGES = 256


class Slot(NamedTuple):
    """One directory entry slot, as read: where it is, and what it holds (``ino`` 0 = free)."""

    addr: int  #: physical address of the 272-byte entry
    page: int  #: physical address of its directory page
    page_index: int  #: that page's index in the directory
    ino: int
    generation: int
    name: bytes


class Metadata:
    """The checked metadata of a UMFS image whose superblock is ``sb`` (see the module doc)."""

    def __init__(self, pm: PmAccess, tables: FileTables, sb: Superblock) -> None:
        self.pm = pm
        self.tables = tables
        self.sb = sb
        self.base = pm.base
        self.data_bytes = sb.data_pages * PAGE
        #: inode → its U-Log header page, while its attributes are cached there.
        self.cached: dict[int, int] = {}
        #: Directory pages verified: (page, directory, generation, index) → (bytes, slots).
        self._verified_pages: dict[tuple[int, int, int, int], tuple[bytes, list[Slot]]] = {}

    # ================================================================ inodes

    def inode_addr(self, ino: int) -> int:
        """The physical address of slot ``ino``; :class:`CorruptImage` if there is none."""
        if not 1 <= ino <= self.sb.inode_count:
            raise CorruptImage(f"inode number {ino} outside 1..{self.sb.inode_count}")
        return self.base + PAGE + (ino - 1) * INODE_SIZE

    def checked_inode(self, ino: int, raw: bytes | memoryview, offset: int) -> Inode:
        """Slot ``ino``'s bytes ``raw`` (at SCM ``offset``) as an inode, verified."""
        inode = verify_inode(ino, raw, offset, self.data_bytes)
        if inode.kind != KIND_FREE:
            zone = self.tables.zone
            for name, pointer in (("file table", inode.fpt), ("U-Log", inode.ulog)):
                if not zone.contains(pointer):
                    raise CorruptImage(f"{name} pointer {pointer:#x} outside the data zone", f"inode {ino}", offset)
            if inode.parent > self.sb.inode_count:
                raise CorruptImage(f"parent {inode.parent} outside 1..{self.sb.inode_count}", f"inode {ino}", offset)
        return inode

    def inode(self, ino: int) -> Inode:
        """Slot ``ino``, verified (checksum, fields, pointers into the data zone)."""
        addr = self.inode_addr(ino)
        return self.checked_inode(ino, self.pm.read(addr, INODE_SIZE), addr - self.base)

    def all_inodes(self) -> list[tuple[int, Inode]]:
        """Every slot, verified, read in one pass over the inode zone."""
        raw = memoryview(self.pm.read(self.base + PAGE, self.sb.inode_count * INODE_SIZE))
        return [
            (i + 1, self.checked_inode(i + 1, raw[i * INODE_SIZE : (i + 1) * INODE_SIZE], PAGE + i * INODE_SIZE))
            for i in range(self.sb.inode_count)
        ]

    def planned_inode(self, txn: Txn, ino: int) -> Inode:
        """Slot ``ino`` as ``txn`` will leave it (fields only; not verified)."""
        return Inode.unpack(txn.planned(self.inode_addr(ino), INODE_SIZE))

    def plan_slot(self, txn: Txn, ino: int, inode: Inode) -> None:
        """Plan slot ``ino`` to hold ``inode`` (checksum included): the changed words only."""
        addr = self.inode_addr(ino)
        new = inode.pack(ino)
        old = txn.planned(addr, INODE_SIZE)
        start = None
        for offset in range(0, INODE_SIZE + 8, 8):
            changed = offset < INODE_SIZE and new[offset : offset + 8] != old[offset : offset + 8]
            if changed and start is None:
                start = offset
            elif not changed and start is not None:
                txn.write(addr + start, new[start:offset], "attrs")
                start = None

    def plan_inode(self, txn: Txn, ino: int, **changes: int) -> None:
        """Plan changing some fields of inode ``ino`` (and its checksum)."""
        self.plan_slot(txn, ino, replace(self.planned_inode(txn, ino), **changes))

    # ================================================================ generations

    def plan_generation(self, txn: Txn) -> int:
        """A generation no inode of this image ever had; ``txn`` advances the counter."""
        at = self.base + SUPER_GENERATION
        generation = unpack_generation(txn.planned(at, SUPER_GENERATION_BYTES))
        if generation >= GENERATION_MASK:
            raise NoSpace("inode generations exhausted")
        txn.write(at, pack_generation(generation + 1), "attrs")
        return generation

    def next_generation(self) -> int:
        """The generation counter, verified."""
        return unpack_generation(self.pm.read(self.base + SUPER_GENERATION, SUPER_GENERATION_BYTES))

    # ================================================================ U-Logs

    def check_log_identity(self, ino: int, top: int, header: int, generation: int | None = None) -> None:
        """The U-Log header page ``header`` reached from ``top`` is inode ``ino``'s (of
        ``generation``, unless ``None``); else :class:`CorruptImage`."""
        problem = log_identity_problem(self.pm.read(header + LOG_IDENTITY, LOG_IDENTITY_BYTES), ino, top, generation)
        if problem is not None:
            raise CorruptImage(problem, f"U-Log of inode {ino}", header + LOG_IDENTITY - self.base)

    # ================================================================ size and digest

    def read_attr_line(self, ino: int, header: int) -> tuple[int, int] | None:
        """The attributes cached in the U-Log header page ``header`` of inode ``ino``:
        ``(size, digest)``, or ``None`` if none are cached (``attr_valid`` 0)."""
        raw = self.pm.read(header + LOG_ATTR_LINE, LOG_ATTR_BYTES)
        valid, size, digest, checksum = (word(raw, i) for i in (0, 8, 16, 24))
        where, offset = f"U-Log of inode {ino}: attribute cache", header + LOG_ATTR_LINE - self.base
        if valid == 0:
            return None
        if valid != 1:
            raise CorruptImage(f"attr_valid {valid:#x} is neither 0 nor 1", where, offset)
        self.verify_attr_checksum(ino, raw, where, offset)
        if size > self.data_bytes:
            raise CorruptImage(f"size {size} exceeds the data zone", where, offset)
        return size, digest

    def verify_attr_checksum(self, ino: int, raw: bytes, where: str, offset: int) -> None:
        """A valid attribute cache line ``raw`` of ``ino`` has its checksum."""
        valid, size, digest, checksum = (word(raw, i) for i in (0, 8, 16, 24))
        if checksum != attr_checksum(ino, valid, size, digest):
            raise CorruptImage("checksum mismatch", where, offset)

    def check_idle_attr_line(self, ino: int, header: int, inode: Inode, clean: bool) -> bool:
        """Check an idle attribute cache line (``attr_valid`` 0) of inode ``ino``; return
        whether it holds anything (which recovery then clears).

        After a clean unmount it is all zeros. After a crash it may hold the prefix of a
        cache being filled (:meth:`cache_attrs` stores ``attr_valid`` last), and that
        copies the inode's own size and digest; so a line that verifies as a cache of
        *other* attributes is a valid cache whose ``attr_valid`` was damaged, and is
        :class:`CorruptImage` rather than silently ignored."""
        raw = self.pm.read(header + LOG_ATTR_LINE, LOG_ATTR_BYTES)
        if not any(raw):
            return False
        where, offset = f"U-Log of inode {ino}: attribute cache", header + LOG_ATTR_LINE - self.base
        if clean:
            raise CorruptImage("not zero after a clean unmount", where, offset)
        _, size, digest, checksum = (word(raw, i) for i in (0, 8, 16, 24))
        if checksum == attr_checksum(ino, 1, size, digest) and (size, digest) != (inode.size, inode.digest):
            raise CorruptImage("attr_valid is 0 over a cache of other attributes than the inode's", where, offset)
        return True

    def attrs(self, ino: int) -> tuple[int, int]:
        """Inode ``ino``'s current ``(size, digest)``: cached while open, else the inode's."""
        header = self.cached.get(ino)
        if header is None:
            inode = self.inode(ino)
            return inode.size, inode.digest
        found = self.read_attr_line(ino, header)
        if found is None:
            raise CorruptImage("attributes not cached while the file is open", f"U-Log of inode {ino}")
        return found

    def plan_attrs(self, txn: Txn, ino: int, size: int, digest: int) -> None:
        """Plan new current attributes of ``ino`` wherever they live now (see the module doc)."""
        header = self.cached.get(ino)
        if header is None:
            self.plan_inode(txn, ino, size=size, digest=digest)
        else:
            txn.write(header + LOG_ATTR_LINE + 8, pack_attrs(ino, size, digest)[8:], "attrs")

    def cache_attrs(self, ino: int, header: int) -> None:
        """First opener: copy size and digest to the U-Log's cache line (``attr_valid``
        stored last, in the same line: a crash leaves it 0 or the line whole)."""
        inode = self.inode(ino)
        line = pack_attrs(ino, inode.size, inode.digest)
        self.pm.store(header + LOG_ATTR_LINE + 8, line[8:])
        self.pm.store(header + LOG_ATTR_LINE, line[:8])
        self.pm.persist("attr-cache", [(header + LOG_ATTR_LINE, LOG_ATTR_BYTES)])
        self.cached[ino] = header

    def plan_write_back(self, txn: Txn, ino: int, header: int) -> None:
        """Plan the last close's write-back: the cached size and digest into the inode, the
        cache line cleared — one transaction, so a crash keeps one of the two whole."""
        found = self.read_attr_line(ino, header)
        if found is not None:
            self.plan_inode(txn, ino, size=found[0], digest=found[1])
        txn.write(header + LOG_ATTR_LINE, bytes(LOG_ATTR_BYTES), "attrs")

    def check_table(self, ino: int, scan: TableScan, size: int, digest: int) -> None:
        """The file table ``scan`` of ``ino`` holds exactly pages ``0 .. ceil(size / 4096)
        - 1`` (no gap, nothing past the end) and has the digest its inode records."""
        where = f"inode {ino} file table"
        if scan.digest != digest:
            raise CorruptImage(f"digest {scan.digest:#x}, the inode records {digest:#x}", where)
        pages = pages_for(size)
        if len(scan.data) != pages or (scan.data and scan.data[-1][0] != pages - 1):
            last = scan.data[-1][0] if scan.data else None
            raise CorruptImage(f"size {size} needs {pages} pages, the table has {len(scan.data)} (last {last})", where)

    # ================================================================ directories

    def dirpage_checksum(self, dino: int, generation: int, index: int, raw: bytes | bytearray) -> int:
        """The checksum of page ``index`` of directory ``dino`` (written and checked)."""
        return dirpage_checksum(dino, generation, index, raw)

    def verify_dir_page(self, dino: int, generation: int, index: int, raw: bytes, page: int) -> None:
        """Page ``index`` (``raw``, at physical ``page``) of directory ``dino`` has its
        checksum, and its last 8 bytes are zero."""
        stored = word(raw, DIRPAGE_CHECKSUM)
        if stored != self.dirpage_checksum(dino, generation, index, raw) or any(raw[DIRPAGE_CHECKSUM + 8 :]):
            raise CorruptImage("checksum mismatch", f"directory {dino} page {index}", page - self.base)

    def dir_slots(self, dino: int) -> list[Slot]:
        """Every slot of directory ``dino``, each page's checksum and each used entry
        verified (its name, its inode number's range)."""
        inode = self.inode(dino)
        if inode.kind != KIND_DIR:
            raise CorruptImage(f"inode {dino} is not a directory", f"inode {dino}")
        size, _ = self.attrs(dino)
        slots: list[Slot] = []
        for index in range(size // PAGE):
            page = self.tables.lookup(inode.fpt, index)
            if page is None:
                raise CorruptImage("missing", f"directory {dino} page {index}")
            slots += self._page_slots(dino, inode.generation, index, page)
        return slots

    def _page_slots(self, dino: int, generation: int, index: int, page: int) -> list[Slot]:
        """The slots of one directory page, verified — or, if its bytes are exactly those
        of a page verified before for the same directory, generation and index, that
        verdict again (verification is a function of those alone; the bytes are compared
        in full, so nothing that changed is trusted)."""
        raw = self.pm.read(page, PAGE)
        key = (page, dino, generation, index)
        known = self._verified_pages.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        self.verify_dir_page(dino, generation, index, raw, page)
        where = f"directory {dino} page {index}"
        slots = []
        for n in range(DIRENTS_PER_PAGE):
            ino, entry_generation, name = unpack_dirent(raw, n * DIRENT_SIZE)
            if ino:
                problem = name_problem(raw[n * DIRENT_SIZE : (n + 1) * DIRENT_SIZE])
                if problem is None and ino > self.sb.inode_count:
                    problem = f"inode number {ino} outside 1..{self.sb.inode_count}"
                if problem is not None:
                    raise CorruptImage(f"entry {n}: {problem}", where, page + n * DIRENT_SIZE - self.base)
            slots.append(Slot(page + n * DIRENT_SIZE, page, index, ino, entry_generation, name))
        if len(self._verified_pages) >= VERIFIED_PAGES:
            del self._verified_pages[next(iter(self._verified_pages))]
        self._verified_pages[key] = (raw, slots)
        return slots

    def entries(self, dino: int) -> dict[str, Slot]:
        """name → slot of the used entries of ``dino`` (a name twice is corruption)."""
        found: dict[str, Slot] = {}
        for slot in self.dir_slots(dino):
            if slot.ino:
                name = slot.name.decode("utf-8")
                if name in found:
                    raise CorruptImage(f"name {name!r} twice", f"directory {dino}", slot.addr - self.base)
                found[name] = slot
        return found

    def child(self, dino: int, slot: Slot) -> Inode:
        """The inode ``slot`` of directory ``dino`` names, with the link verified both
        ways: live, of the entry's generation, and (a directory) with ``dino`` as parent."""
        inode = self.inode(slot.ino)
        where, offset = f"directory {dino}", slot.addr - self.base
        name = slot.name.decode("utf-8", "replace")
        if slot.ino == ROOT_INO:
            raise CorruptImage(f"{name!r} names the root", where, offset)
        if inode.kind == KIND_FREE:
            raise CorruptImage(f"{name!r} names free inode {slot.ino}", where, offset)
        if inode.generation & GENERATION_MASK != slot.generation:
            raise CorruptImage(
                f"{name!r} names inode {slot.ino} of generation {slot.generation}, "
                f"but the inode is of generation {inode.generation}",
                where, offset,
            )  # fmt: skip
        if inode.kind == KIND_DIR and inode.parent != dino:
            raise CorruptImage(f"{name!r} names directory {slot.ino}, whose parent is {inode.parent}", where, offset)
        return inode

    def dir_page(self, dino: int, generation: int, index: int, content: bytes) -> bytes:
        """A whole directory page holding ``content`` (entries), with its checksum."""
        raw = bytearray(content.ljust(PAGE, b"\0"))
        raw[DIRPAGE_CHECKSUM : DIRPAGE_CHECKSUM + 8] = u64(self.dirpage_checksum(dino, generation, index, raw))
        return bytes(raw)

    def plan_dirent(self, txn: Txn, dino: int, slot: Slot, record: bytes) -> None:
        """Plan storing ``record`` (a whole entry, or ``u64(0)`` to free the slot) in
        ``slot`` of ``dino``, and the page's new checksum."""
        txn.write(slot.addr, record, "attrs")
        generation = self.planned_inode(txn, dino).generation
        raw = txn.planned(slot.page, PAGE)
        checksum = u64(self.dirpage_checksum(dino, generation, slot.page_index, raw))
        if raw[DIRPAGE_CHECKSUM : DIRPAGE_CHECKSUM + 8] != checksum:
            txn.write(slot.page + DIRPAGE_CHECKSUM, checksum, "attrs")
