"""UMFS: a user-space file system on SCM, as the paper describes it, on the emulated machine.

- **Layout** (:mod:`impl.umfs_layout`): superblock, fixed-size inode zone, data zone.
  Directories are files of fixed-size entries.
- **File page tables** (:mod:`impl.umfs_tables`): each file has its own three-level x86
  page table in SCM; at creation the top level plus one page for each of the last two
  levels; data pages are linked in as the file grows.
- **Open in O(1).** ``open`` reserves two 512 GiB-aligned virtual windows in the
  process (VMA flags ``READ | RETAIN``), writes the file's top-level table into one PML4
  entry and the U-Log's into another — two entry writes, whatever the file's size — and
  records the window's base in the process's U-Info (1024 slots, indexed by descriptor;
  ``None`` = not a UMFS file). Close clears both entries, flushes the TLB and the U-Info
  slot, and writes the attributes cached in the U-Log back to the inode.
- **Reads** go through the process's virtual addresses and the emulated MMU, which walks
  the spliced tables in SCM. The mapping is read-only: entries lack the writable bit, so
  a store by the process faults. Writes are made by libumfs "in kernel mode" through
  the direct map, each one a U-Log transaction (:mod:`impl.umfs_ulog`): old data and
  attributes are copied to the U-Log and persisted, tables then data then attributes
  are updated and persisted, and the log is invalidated.
- **Mount** validates the superblock and every pointer it follows (a corrupt image is
  a :class:`~impl.umfs_layout.CorruptImage` naming the problem), undoes any operation
  left in flight in any U-Log, writes back cached attributes, reclaims inodes with no
  links (unlinked while open when the machine stopped), and rebuilds the volatile
  allocators by walking the inodes.

Semantics are those of ``spec/umfs_model.py`` (checked side by side by
``memoracle.umfs.conformance``). Choices where the paper is silent: a process maps a
file once however many descriptors it has open on it (the windows are shared), and
since every distinct open file takes two of the 224 windows between
``RESERVE_BASE`` and the top of the user half, a process can have at most 112 distinct
UMFS files open at once — the next ``open`` of another file is ``EMFILE``; files are not
sparse; ``ENOSPC`` leaves the file system unchanged; the per-file locks are real
``threading`` locks, taken in inode order when an operation needs two.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from impl.mmu_emu import AddressSpace, Machine, Vma, VmaFlags, make_entry
from impl.umfs_layout import (
    FREE_INODE,
    INODE_SIZE,
    INODE_ULOG,
    INODES_PER_PAGE,
    KIND_DIR,
    KIND_FILE,
    KIND_FREE,
    LOG_ATTR_BYTES,
    LOG_ATTR_LINE,
    LOG_IDENTITY,
    PAGE,
    ROOT_INO,
    SUPER_CLEAN,
    SUPER_GENERATION,
    SUPER_GENERATION_BYTES,
    CorruptImage,
    Inode,
    Superblock,
    add_digest,
    pack_generation,
    pack_log_identity,
    pages_for,
    table_term,
    u64,
    word,
)
from impl.umfs_meta import Metadata
from impl.umfs_names import NamespaceOps
from impl.umfs_tables import ZERO_PAGE, FileTables, PageAllocator, PmAccess, entry
from impl.umfs_ulog import Txn, ULog, recover_log
from spec.paging import PML4, RW, US, P
from spec.umfs_api import (
    MAX_FDS,
    O_ACCMODE,
    O_APPEND,
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_SUPPORTED,
    O_TRUNC,
    O_WRONLY,
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
    BadDescriptor,
    Exists,
    FileMapping,
    Invalid,
    IsDirectory,
    NoEntry,
    Stat,
    TooManyOpen,
)

WINDOW = 1 << 39  #: one PML4 entry's span: the virtual window of one file
SPLICE_FLAGS = P | RW | US  #: the PML4 entry's flags (the file's own entries are read-only)
PAGES_PER_NEW_FILE = 7  #: file table (3) + U-Log table (3) + U-Log header page (1)


@dataclass
class Window:
    """A file's two spliced windows in one process, shared by its descriptors."""

    data: Vma
    log: Vma
    users: int = 0


@dataclass
class OpenFile:
    """An open file description."""

    ino: int
    readable: bool
    writable: bool
    append: bool
    offset: int = 0


@dataclass
class UmfsProcess:
    """A process: its address space, U-Info and descriptor table."""

    pid: int
    space: AddressSpace
    uinfo: list[int | None] = field(default_factory=lambda: [None] * MAX_FDS)
    files: dict[int, OpenFile] = field(default_factory=dict)
    windows: dict[int, Window] = field(default_factory=dict)


class UmfsMapping:
    """The read-only zero-copy view of an open file: reads go through the MMU."""

    def __init__(self, fs: Umfs, pid: int, fd: int, description: OpenFile) -> None:
        self._fs, self._pid, self._fd, self._description = fs, pid, fd, description

    @property
    def base(self) -> int:
        """The virtual address of the file's first byte in the process."""
        return self._fs._process(self._pid).windows[self._description.ino].data.start

    def read(self, offset: int, length: int) -> bytes:
        """The file's current bytes at ``[offset, offset + length)``, cut at its size."""
        if offset < 0 or length < 0:
            raise Invalid(f"mapping read({offset}, {length})")
        process = self._fs.processes.get(self._pid)
        if process is None or process.files.get(self._fd) is not self._description:
            raise BadDescriptor(f"mapping of fd {self._fd}: descriptor closed")
        return self._fs._read_through_mmu(process, self._description.ino, offset, length)


class Umfs(NamespaceOps):
    """A mounted UMFS instance. Satisfies :class:`spec.umfs_api.FileSystem`.

    Paths, directories and the namespace operations come from
    :class:`~impl.umfs_names.NamespaceOps`.

    Create with :meth:`mkfs` or :meth:`mount`; never construct directly.
    """

    #: The checked metadata access (a variant may substitute its own).
    meta_cls: type[Metadata] = Metadata

    def __init__(self, machine: Machine, sb: Superblock) -> None:
        self.machine = machine
        self.sb = sb
        self.pm = PmAccess(machine)
        self.base = machine.scm_base
        self.zone = PageAllocator(self.base + sb.data_start * PAGE, sb.data_pages)
        self.tables = FileTables(self.pm, self.zone)
        #: Checked reads and checksummed changes of inodes, attributes, directories.
        self.meta = self.meta_cls(self.pm, self.tables, sb)
        self.processes: dict[int, UmfsProcess] = {}
        self.open_count: dict[int, int] = {}
        self.free_inodes: set[int] = set()
        self.recovered: list[tuple[int, str]] = []
        #: Whether the image had been unmounted cleanly when it was mounted.
        self.mounted_clean = False
        #: Volatile, for open inodes only: the kind, so the read path need not re-read
        #: the inode (``meta.cached`` holds where their attributes are cached).
        self._open_kinds: dict[int, int] = {}
        self._next_pid = 1
        self._seq = 1
        self._locks: dict[int, threading.Lock] = {}
        self._fs_lock = threading.RLock()

    # ================================================================ format & mount

    @classmethod
    def mkfs(cls, machine: Machine, inodes: int | None = None) -> Umfs:
        """Format the machine's SCM and mount it. ``inodes`` defaults to one per 16 pages."""
        pm = PmAccess(machine)
        base = machine.scm_base
        total = machine.scm.size // PAGE
        wanted = inodes if inodes is not None else max(INODES_PER_PAGE, total // 16)
        inode_pages = max(1, pages_for(wanted * INODE_SIZE))
        data_start = 1 + inode_pages
        if total - data_start < 2 * PAGES_PER_NEW_FILE:
            raise ValueError(
                f"an SCM of {total} pages is too small for UMFS with {wanted} inodes "
                f"(their table takes {inode_pages} pages, and {2 * PAGES_PER_NEW_FILE} data pages are the least)"
            )
        sb = Superblock(
            base, total, 1, inode_pages, inode_pages * INODES_PER_PAGE, data_start,
            total - data_start, ROOT_INO, 1,
        )  # fmt: skip
        pm.store(base + PAGE, bytes(inode_pages * PAGE))
        pm.store(base + SUPER_GENERATION, pack_generation(1))
        pm.persist("mkfs", [(base + PAGE, inode_pages * PAGE), (base + SUPER_GENERATION, SUPER_GENERATION_BYTES)])
        fs = cls(machine, sb)
        fs.zone.reset(set())
        fs.free_inodes = set(range(1, sb.inode_count + 1))
        txn = Txn(fs.pm, fs.zone, "mkfs")
        fs._plan_new_inode(txn, ROOT_INO, KIND_DIR, 2, ROOT_INO)
        for phase_writes in txn.writes.values():
            for paddr, data in phase_writes:
                pm.store(paddr, data)
        pm.persist("mkfs", [(p, len(d)) for w in txn.writes.values() for p, d in w])
        pm.store(base, sb.pack())
        pm.persist("mkfs", [(base, 128)])
        return cls.mount(machine)

    @classmethod
    def mount(cls, machine: Machine) -> Umfs:
        """Mount the SCM image, recovering from a crash if one happened.

        Raises :class:`CorruptImage` with the reason and the structure's location if
        the image is not a UMFS this code can trust (see :meth:`_recover` for what is
        checked).
        """
        pm = PmAccess(machine)
        sb = Superblock.unpack(pm.read(machine.scm_base, 128), machine.scm_base, machine.scm.size // PAGE)
        fs = cls(machine, sb)
        fs.mounted_clean = bool(sb.clean)
        fs._recover()
        if sb.clean:
            fs._write_superblock(clean=0)
        return fs

    def unmount(self) -> None:
        """End every process (closing its files) and mark the image clean."""
        for pid in sorted(self.processes):
            self.exit(pid)
        self._write_superblock(clean=1)

    def _write_superblock(self, clean: int) -> None:
        """Flip the clean flag: one aligned 8-byte store, outside the checksummed record."""
        sb = self.sb
        self.sb = Superblock(
            sb.phys_base, sb.total_pages, sb.inode_start, sb.inode_pages, sb.inode_count,
            sb.data_start, sb.data_pages, sb.root_ino, clean,
        )  # fmt: skip
        self.pm.store(self.base + SUPER_CLEAN, u64(clean))
        self.pm.persist("superblock", [(self.base + SUPER_CLEAN, 8)])

    def _recover(self) -> None:
        """Undo the operation in flight, verify every inode and every file table, write
        back cached attributes, reclaim orphans, rebuild the allocators.

        1. *Undo.* Every slot whose U-Log pointer names a data-zone page is followed to
           its U-Log (only that word of the slot is read), whether its checksum holds or
           not: the operation in flight may have torn the very inode whose log undoes
           it (a directory's link count, a file's size). This is safe
           because a live inode's U-Log pointer never changes, a new inode's slot is
           written only after its U-Log is durable, its header page must carry the
           slot's identity, and a log is trusted only with its state word and checksum.
        2. *Verify* every slot (:meth:`Metadata.all_inodes`) and the generation counter.
        3. *Walk* every live inode's file table and U-Log table: each page owned once,
           the file table's digest and page count those of the inode's size (or of its
           cached attributes, if it was open at the crash).
           Every U-Log header page's identity is its inode's; its attribute cache line
           is valid (checksum), or idle — all zeros after a clean unmount, or at most
           the prefix of a cache being filled (of the inode's own attributes), which is
           cleared. A clean image has every U-Log idle.
        4. *Write back* cached attributes and *reclaim* orphans, each a transaction.

        Idempotent: a crash in here is recovered by mounting again. Work and memory are
        bounded by the image: one pass over the inode zone, one visit per data page.
        """
        meta = self.meta
        for ino in range(1, self.sb.inode_count + 1):
            # Only the slot's U-Log pointer is read here (a free, all-zero slot has none):
            # the rest of the slot is read in step 2, after the undo may have rewritten it.
            top = self.pm.read_u64(self.base + PAGE + (ino - 1) * INODE_SIZE + INODE_ULOG)
            if not self.zone.contains(top):
                continue  # free; or a slot that step 2 rejects unless an undo restores it
            log = self._log_at(top)
            meta.check_log_identity(ino, top, log.header())
            state = self.pm.read_u64(log.header())
            if self.mounted_clean and state:
                where = f"U-Log of inode {ino}"
                raise CorruptImage(f"state word {state:#x} after a clean unmount", where, log.header() - self.base)
            op = recover_log(log, self._valid_region)
            if op is not None:
                self.recovered.append((ino, op))
        inodes = meta.all_inodes()
        next_generation = meta.next_generation()
        live = [(ino, inode) for ino, inode in inodes if inode.kind != KIND_FREE]
        owners: dict[int, str] = {}
        cached: dict[int, int] = {}
        leftovers: list[int] = []  # idle attribute lines left non-zero by a crash
        for ino, inode in live:
            if inode.generation >= next_generation:
                raise CorruptImage(
                    f"generation {inode.generation} was never handed out (next {next_generation})",
                    f"inode {ino}", meta.inode_addr(ino) - self.base,
                )  # fmt: skip
            files = self.tables.scan(inode.fpt, owners, f"inode {ino} file table")
            self.tables.scan(inode.ulog, owners, f"inode {ino} U-Log")
            header = self._log_at(inode.ulog).header()
            meta.check_log_identity(ino, inode.ulog, header, inode.generation)
            found = meta.read_attr_line(ino, header)
            size, digest = found if found is not None else (inode.size, inode.digest)
            if found is not None:
                cached[ino] = header
            elif meta.check_idle_attr_line(ino, header, inode, self.mounted_clean):
                leftovers.append(header)
            meta.check_table(ino, files, size, digest)
        root = meta.inode(ROOT_INO)
        if root.kind != KIND_DIR or root.parent != ROOT_INO:
            raise CorruptImage("the root is not a directory that is its own parent", f"inode {ROOT_INO}")
        self.zone.reset(set(owners))
        for header in leftovers:  # ignored either way; cleared so they cannot age
            self.pm.store(header + LOG_ATTR_LINE, bytes(LOG_ATTR_BYTES))
            self.pm.persist("recovery-attrs", [(header + LOG_ATTR_LINE, LOG_ATTR_BYTES)])
        for ino, header in sorted(cached.items()):
            txn = Txn(self.pm, self.zone, "close")
            meta.plan_write_back(txn, ino, header)
            self._commit(txn, ino)
        self.free_inodes = {ino for ino, inode in inodes if inode.kind == KIND_FREE}
        for ino, inode in live:
            if inode.nlink == 0:
                self._free_inode_now(ino)

    def _valid_region(self, paddr: int, length: int) -> bool:
        """Whether an undo record may restore ``[paddr, paddr + length)``: the superblock's
        generation counter, the inode zone or the data zone."""
        generation = self.base + SUPER_GENERATION
        in_generation = generation <= paddr and paddr + length <= generation + SUPER_GENERATION_BYTES
        inode_zone = (self.base + PAGE, self.base + (1 + self.sb.inode_pages) * PAGE)
        in_inodes = inode_zone[0] <= paddr and paddr + length <= inode_zone[1]
        in_data = self.zone.first <= paddr and paddr + length <= self.zone.limit
        return in_generation or in_inodes or in_data

    # ================================================================ inodes

    def _inode_addr(self, ino: int) -> int:
        return self.meta.inode_addr(ino)

    def _all_inodes(self) -> list[tuple[int, Inode]]:
        """Every inode slot, verified, read in one pass over the inode zone."""
        return self.meta.all_inodes()

    def _inode(self, ino: int) -> Inode:
        """Inode ``ino``, verified (:meth:`Metadata.inode`)."""
        return self.meta.inode(ino)

    def _log(self, ino: int) -> ULog:
        """Inode ``ino``'s U-Log, its header page's identity verified."""
        inode = self._inode(ino)
        log = self._log_at(inode.ulog)
        self.meta.check_log_identity(ino, inode.ulog, log.header(), inode.generation)
        return log

    def _log_at(self, top: int) -> ULog:
        """The U-Log whose top-level table is at ``top``."""
        return ULog(self.pm, self.tables, top)

    def _kind(self, ino: int) -> int:
        kind = self._open_kinds.get(ino)
        return kind if kind is not None else self._inode(ino).kind

    def _size(self, ino: int) -> int:
        """``ino``'s size: in its U-Log while open (the paper's cached attributes), else
        in the inode."""
        return self.meta.attrs(ino)[0]

    def _pages_of(self, ino: int) -> list[int]:
        inode = self._inode(ino)
        owners: dict[int, str] = {}
        for top in (inode.fpt, inode.ulog):
            self.tables.scan(top, owners, f"inode {ino}")
        return list(owners)

    def _plan_new_inode(self, txn: Txn, ino: int, kind: int, nlink: int, parent: int) -> None:
        """Plan a fresh file: its table, its U-Log with a header page, its inode slot (of a
        new generation; ``parent`` is a directory's parent, 0 for a file).

        The slot is written in the attributes phase, after the fence that makes the new
        tables durable: a slot with any new word persisted points to a whole U-Log."""
        pdpt, pd, pt, log_pdpt, log_pd, log_pt, header = txn.allocate(PAGES_PER_NEW_FILE)
        for table, child in ((pdpt, pd), (pd, pt), (log_pdpt, log_pd), (log_pd, log_pt), (log_pt, header)):
            txn.writes["tables"].append((table, entry(child).ljust(PAGE, b"\0")))
        generation = self.meta.plan_generation(txn)
        identity = bytes(LOG_IDENTITY) + pack_log_identity(ino, generation, log_pdpt)
        txn.writes["tables"].append((pt, ZERO_PAGE))
        txn.writes["tables"].append((header, identity.ljust(PAGE, b"\0")))
        digest = add_digest(table_term(3, 0, word(entry(pd))), table_term(2, 0, word(entry(pt))))
        inode = Inode(kind, nlink, 0, pdpt, log_pdpt, generation, parent, digest)
        self.meta.plan_slot(txn, ino, inode)

    def _lock(self, ino: int) -> threading.Lock:
        return self._locks.setdefault(ino, threading.Lock())

    def _commit(self, txn: Txn, log_ino: int) -> None:
        self._log(log_ino).commit(txn, self._seq)
        self._seq += 1

    # ================================================================ processes

    def spawn(self) -> int:
        """Start a process: an address space with an empty U-Info."""
        with self._fs_lock:
            pid = self._next_pid
            self._next_pid += 1
            self.processes[pid] = UmfsProcess(pid, AddressSpace(self.machine, f"pid{pid}"))
            return pid

    def exit(self, pid: int) -> None:
        """Close every descriptor and tear the address space down."""
        with self._fs_lock:
            process = self._process(pid)
            for fd in sorted(process.files):
                self.close(pid, fd)
            process.space.destroy()
            del self.processes[pid]

    def _process(self, pid: int) -> UmfsProcess:
        process = self.processes.get(pid)
        if process is None:
            raise Invalid(f"pid {pid} is not running")
        return process

    def _descriptor(self, pid: int, fd: int) -> OpenFile:
        description = self._process(pid).files.get(fd)
        if description is None:
            raise BadDescriptor(f"fd {fd}")
        return description

    def _attach(self, process: UmfsProcess, ino: int) -> int:
        """Splice the file and its U-Log into the process (two PML4 entries)."""
        window = process.windows.get(ino)
        if window is None:
            inode = self._inode(ino)
            flags = VmaFlags.READ | VmaFlags.RETAIN
            space = process.space
            try:
                data = space.reserve(WINDOW, WINDOW, flags, f"umfs:{ino}")
            except MemoryError:
                raise TooManyOpen(f"no 512 GiB window left for inode {ino}") from None
            try:
                log = space.reserve(WINDOW, WINDOW, flags, f"umfs-log:{ino}")
            except MemoryError:
                space.release(data)
                raise TooManyOpen(f"no 512 GiB window left for inode {ino}'s U-Log") from None
            space.write_entry(data.start, PML4, make_entry(inode.fpt, SPLICE_FLAGS))
            space.write_entry(log.start, PML4, make_entry(inode.ulog, SPLICE_FLAGS))
            window = process.windows[ino] = Window(data, log)
        window.users += 1
        return window.data.start

    def _detach(self, process: UmfsProcess, ino: int) -> None:
        window = process.windows[ino]
        window.users -= 1
        if window.users:
            return
        space = process.space
        space.write_entry(window.data.start, PML4, 0)
        space.write_entry(window.log.start, PML4, 0)
        space.flush_tlb()
        space.release(window.data)
        space.release(window.log)
        del process.windows[ino]

    def _cache_attrs(self, ino: int) -> None:
        """First opener: size and digest move to the U-Log's attribute cache."""
        self.meta.cache_attrs(ino, self._log(ino).header())
        self._open_kinds[ino] = self._inode(ino).kind

    def _write_back_attrs(self, ino: int) -> None:
        """Last closer: size and digest go back to the inode and the cache is cleared, in
        one transaction of the file's own U-Log."""
        header = self.meta.cached.pop(ino)
        txn = Txn(self.pm, self.zone, "close")
        self.meta.plan_write_back(txn, ino, header)
        self._commit(txn, ino)
        del self._open_kinds[ino]

    # ================================================================ open / close

    def open(self, pid: int, path: str, flags: int, mode: int = 0o644) -> int:
        """Open or create ``path``; splice it into the process; the lowest free fd."""
        with self._fs_lock:
            process = self._process(pid)
            accmode = flags & O_ACCMODE
            if flags & ~O_SUPPORTED or accmode == O_ACCMODE:
                raise Invalid(f"open flags {flags:#o}")
            readable = accmode in (O_RDONLY, O_RDWR)
            writable = accmode in (O_WRONLY, O_RDWR)
            names = self._parse(path)
            fd = next((n for n in range(MAX_FDS) if n not in process.files), None)
            if fd is None:
                raise TooManyOpen(path[:80])
            parent, name = self._parent(names, path)
            found = ROOT_INO if name is None else self._find(parent, name, path)
            if found is not None:
                if flags & O_CREAT and flags & O_EXCL:
                    raise Exists(path[:80])
                ino = found
            elif flags & O_CREAT:
                assert name is not None
                ino = self._create(parent, name, KIND_FILE)
            else:
                raise NoEntry(path[:80])
            if self._kind(ino) == KIND_DIR:
                if flags & O_CREAT or writable or flags & O_TRUNC:
                    raise IsDirectory(path[:80])
            elif flags & O_TRUNC and self._size(ino):
                self._truncate(ino, 0)
            base = self._attach(process, ino)
            if not self.open_count.get(ino, 0):
                self._cache_attrs(ino)
            self.open_count[ino] = self.open_count.get(ino, 0) + 1
            process.files[fd] = OpenFile(ino, readable, writable, bool(flags & O_APPEND))
            process.uinfo[fd] = base
            return fd

    def close(self, pid: int, fd: int) -> None:
        """Detach, write the cached attributes back at the last close, free an orphan."""
        with self._fs_lock:
            description = self._descriptor(pid, fd)
            process = self.processes[pid]
            ino = description.ino
            del process.files[fd]
            process.uinfo[fd] = None
            self._detach(process, ino)
            self.open_count[ino] -= 1
            if self.open_count[ino]:
                return
            del self.open_count[ino]
            self._write_back_attrs(ino)
            if self._inode(ino).nlink == 0:
                self._free_inode_now(ino)

    def _free_inode_now(self, ino: int) -> None:
        """Reclaim an orphan: its slot cleared, in a transaction of the root's U-Log (not
        its own: a slot torn by clearing would no longer lead to it), then its pages."""
        txn = Txn(self.pm, self.zone, "reclaim")
        txn.free_after.extend(self._pages_of(ino))
        self.meta.plan_slot(txn, ino, FREE_INODE)
        self._commit(txn, ROOT_INO)
        self.free_inodes.add(ino)

    # ================================================================ data

    def _read_through_mmu(self, process: UmfsProcess, ino: int, offset: int, count: int) -> bytes:
        size = self._size(ino)
        length = max(0, min(count, size - offset))
        if not length:
            return b""
        return process.space.load(process.windows[ino].data.start + offset, length)

    def _file(self, ino: int, what: str) -> None:
        if self._kind(ino) != KIND_FILE:
            raise IsDirectory(what)

    def read(self, pid: int, fd: int, count: int) -> bytes:
        """Up to ``count`` bytes at the offset, through the process's mapping."""
        with self._fs_lock:
            process = self._process(pid)
            if count < 0:
                raise Invalid(f"read count {count}")
            description = self._readable(pid, fd)
            data = self._read_through_mmu(process, description.ino, description.offset, count)
            description.offset += len(data)
            return data

    def pread(self, pid: int, fd: int, count: int, offset: int) -> bytes:
        """Up to ``count`` bytes at ``offset``."""
        with self._fs_lock:
            process = self._process(pid)
            if count < 0 or offset < 0:
                raise Invalid(f"pread count {count} offset {offset}")
            description = self._readable(pid, fd)
            return self._read_through_mmu(process, description.ino, offset, count)

    def _readable(self, pid: int, fd: int) -> OpenFile:
        description = self._descriptor(pid, fd)
        if not description.readable:
            raise BadDescriptor(f"fd {fd}: not open for reading")
        self._file(description.ino, f"fd {fd}")
        return description

    def _writable(self, pid: int, fd: int) -> OpenFile:
        description = self._descriptor(pid, fd)
        if not description.writable:
            raise BadDescriptor(f"fd {fd}: not open for writing")
        return description

    def write(self, pid: int, fd: int, data: bytes) -> int:
        """Write at the offset (the end with ``O_APPEND``) as one U-Log transaction."""
        with self._fs_lock:
            description = self._writable(pid, fd)
            if not data:
                return 0
            with self._lock(description.ino):
                position = self._size(description.ino) if description.append else description.offset
                self._write_at(description.ino, position, bytes(data))
            description.offset = position + len(data)
            return len(data)

    def pwrite(self, pid: int, fd: int, data: bytes, offset: int) -> int:
        """Write at ``offset`` (even with ``O_APPEND``)."""
        with self._fs_lock:
            self._process(pid)
            if offset < 0:
                raise Invalid(f"pwrite offset {offset}")
            description = self._writable(pid, fd)
            if data:
                with self._lock(description.ino):
                    self._write_at(description.ino, offset, bytes(data))
            return len(data)

    def _write_at(self, ino: int, position: int, data: bytes) -> None:
        """The paper's write: back up old data in the U-Log; extend the table; write data;
        update the size; invalidate the log."""
        size, digest = self.meta.attrs(ino)
        end = position + len(data)
        old_pages, new_pages = pages_for(size), pages_for(max(size, end))
        txn = Txn(self.pm, self.zone, "write")
        top = self._inode(ino).fpt
        fresh = txn.grow(self.tables, top, old_pages, new_pages)
        for index in range(position // PAGE, pages_for(end)):
            page_start = index * PAGE
            lo, hi = max(position, page_start), min(end, page_start + PAGE)
            chunk = data[lo - position : hi - position]
            if index >= old_pages:
                page = fresh[index - old_pages]
                content = bytearray(PAGE)
                content[lo - page_start : hi - page_start] = chunk
                txn.writes["data"].append((page, bytes(content)))
            else:
                page_addr = self.tables.lookup(top, index)
                assert page_addr is not None, "every page below the size is allocated"
                txn.write(page_addr + lo - page_start, chunk, "data")
        for index in range(old_pages, position // PAGE):  # a hole: zero pages
            txn.writes["data"].append((fresh[index - old_pages], ZERO_PAGE))
        if end > size:
            self.meta.plan_attrs(txn, ino, end, add_digest(digest, txn.digest_delta.get(top, 0)))
        self._commit(txn, ino)

    def _truncate(self, ino: int, length: int) -> None:
        size, digest = self.meta.attrs(ino)
        if length == size:
            return
        txn = Txn(self.pm, self.zone, "truncate")
        top = self._inode(ino).fpt
        old_pages, new_pages = pages_for(size), pages_for(length)
        if length > size:
            for page in txn.grow(self.tables, top, old_pages, new_pages):
                txn.writes["data"].append((page, ZERO_PAGE))
        else:
            for index in range(new_pages, old_pages):
                at = self.tables.entry_addr(top, index, 1)
                dropped = self.tables.lookup(top, index)
                assert at is not None and dropped is not None
                txn.add_to_digest(top, -table_term(1, index, self.pm.read_u64(at)))
                txn.write(at, u64(0), "tables")
                txn.free_after.append(dropped)
            if length % PAGE:  # keep "past the size is zero" for a later extension
                last = self.tables.lookup(top, length // PAGE)
                assert last is not None
                tail = min(size, new_pages * PAGE) - length
                txn.write(last + length % PAGE, bytes(tail), "data")
        self.meta.plan_attrs(txn, ino, length, add_digest(digest, txn.digest_delta.get(top, 0)))
        self._commit(txn, ino)
        if length < size:
            self._shoot_down(ino, new_pages, old_pages)

    def _shoot_down(self, ino: int, first: int, end: int) -> None:
        """Invalidate cached translations of unlinked pages in every process mapping ``ino``."""
        for process in self.processes.values():
            window = process.windows.get(ino)
            if window is None:
                continue
            if end - first > 32:
                process.space.flush_tlb()
            else:
                for index in range(first, end):
                    process.space.invlpg(window.data.start + index * PAGE)

    def lseek(self, pid: int, fd: int, offset: int, whence: int) -> int:
        """Move the offset; ``EINVAL`` for a bad whence or a negative result."""
        with self._fs_lock:
            description = self._descriptor(pid, fd)
            is_file = self._kind(description.ino) == KIND_FILE
            if whence == SEEK_SET:
                target = offset
            elif whence == SEEK_CUR:
                target = description.offset + offset
            elif whence == SEEK_END and is_file:
                target = self._size(description.ino) + offset
            else:
                raise Invalid(f"lseek({offset}, {whence})")
            if target < 0:
                raise Invalid(f"lseek({offset}, {whence})")
            description.offset = target
            return target

    def ftruncate(self, pid: int, fd: int, length: int) -> None:
        """Cut or zero-extend the file, as one transaction."""
        with self._fs_lock:
            self._process(pid)
            if length < 0:
                raise Invalid(f"ftruncate length {length}")
            description = self._descriptor(pid, fd)
            if self._kind(description.ino) != KIND_FILE or not description.writable:
                raise Invalid(f"ftruncate fd {fd}: not a file open for writing")
            with self._lock(description.ino):
                self._truncate(description.ino, length)

    def fsync(self, pid: int, fd: int) -> None:
        """Check the descriptor: every UMFS call is durable when it returns."""
        with self._fs_lock:
            self._descriptor(pid, fd)

    def fstat(self, pid: int, fd: int) -> Stat:
        """The attributes of the open file."""
        with self._fs_lock:
            return self._stat(self._descriptor(pid, fd).ino)

    def map(self, pid: int, fd: int) -> FileMapping:
        """The process's read-only window onto the file."""
        with self._fs_lock:
            description = self._descriptor(pid, fd)
            if self._kind(description.ino) == KIND_DIR:
                raise IsDirectory(f"map fd {fd}")
            if not description.readable:
                raise BadDescriptor(f"map fd {fd}: not open for reading")
            return UmfsMapping(self, pid, fd, description)

    def _stat(self, ino: int) -> Stat:
        inode = self._inode(ino)
        if inode.kind == KIND_FILE:
            return Stat(self._size(ino), inode.nlink, "file")
        return Stat(0, inode.nlink, "dir")

    # ================================================================ checking

    def file_table(self, path: str) -> int:
        """The physical address of the top table of ``path``'s file page table: the table
        ``open`` splices into a process (:meth:`FileTables.walk` lists its data pages)."""
        with self._fs_lock:
            return self._inode(self._resolve(self._parse(path), path)).fpt

    def observe(self) -> dict[str, tuple[str, int, bytes | tuple[str, ...]]]:
        """Every path with its kind, link count, and contents (files) or names (dirs),
        read from SCM through the checked lookups; the same shape as the model's snapshot.

        Iterative (a tree as deep as ``PATH_MAX`` allows is fine), and every entry is
        verified both ways (:meth:`Metadata.child`), so a damaged image is
        :class:`CorruptImage`, never a wrong tree, a loop or a RecursionError."""
        snapshot: dict[str, tuple[str, int, bytes | tuple[str, ...]]] = {}
        root = self._inode(ROOT_INO)
        pending: list[tuple[str, int, Inode]] = [("/", ROOT_INO, root)]
        visited: set[int] = set()
        while pending:
            path, ino, inode = pending.pop()
            if inode.kind == KIND_FILE:
                snapshot[path] = ("file", inode.nlink, self._contents(ino))
                continue
            if ino in visited:
                raise CorruptImage(f"directory {ino} has two names (one is {path!r})", f"inode {ino}")
            visited.add(ino)
            entries = self.meta.entries(ino)
            snapshot[path] = ("dir", inode.nlink, tuple(sorted(entries)))
            for name in sorted(entries, reverse=True):
                child = self.meta.child(ino, entries[name])
                pending.append((f"/{name}" if path == "/" else f"{path}/{name}", entries[name].ino, child))
        return dict(sorted(snapshot.items()))

    def _contents(self, ino: int) -> bytes:
        """A file's bytes, read through the direct map (not a process mapping)."""
        size = self._size(ino)
        top = self._inode(ino).fpt
        out = bytearray()
        for index in range(pages_for(size)):
            page = self.tables.lookup(top, index)
            if page is None:
                raise CorruptImage(f"missing page {index}", f"inode {ino} file table")
            out += self.pm.read(page, min(PAGE, size - index * PAGE))
        return bytes(out)

    def check_invariants(self) -> None:
        """fsck: assert every invariant of the on-SCM structures and the volatile state."""
        from impl.umfs_check import check_umfs

        check_umfs(self)
