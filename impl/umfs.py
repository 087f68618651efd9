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
    INODE_KIND,
    INODE_SIZE,
    INODE_SIZE_FIELD,
    INODES_PER_PAGE,
    KIND_DIR,
    KIND_FILE,
    KIND_FREE,
    LOG_ATTR_SIZE,
    LOG_ATTR_VALID,
    PAGE,
    ROOT_INO,
    SUPER_CLEAN,
    CorruptImage,
    Inode,
    Superblock,
    pages_for,
    u64,
    word,
)
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
_FREE = Inode(KIND_FREE, 0, 0, 0, 0, 0)  #: what a free slot reads as (its other words are ignored)


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

    def __init__(self, machine: Machine, sb: Superblock) -> None:
        self.machine = machine
        self.sb = sb
        self.pm = PmAccess(machine)
        self.base = machine.scm_base
        self.zone = PageAllocator(self.base + sb.data_start * PAGE, sb.data_pages)
        self.tables = FileTables(self.pm, self.zone)
        self.processes: dict[int, UmfsProcess] = {}
        self.open_count: dict[int, int] = {}
        self.free_inodes: set[int] = set()
        self.recovered: list[tuple[int, str]] = []
        #: Volatile, for open inodes only: the U-Log header page (where the cached
        #: attributes live) and the kind, so the read path need not re-read the inode.
        self._open_headers: dict[int, int] = {}
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
            raise ValueError(f"an SCM of {total} pages is too small for UMFS")
        sb = Superblock(
            base, total, 1, inode_pages, inode_pages * INODES_PER_PAGE, data_start,
            total - data_start, ROOT_INO, 1,
        )  # fmt: skip
        pm.store(base + PAGE, bytes(inode_pages * PAGE))
        pm.persist("mkfs", [(base + PAGE, inode_pages * PAGE)])
        fs = cls(machine, sb)
        fs.zone.reset(set())
        fs.free_inodes = set(range(1, sb.inode_count + 1))
        txn = Txn(fs.pm, fs.zone, "mkfs")
        fs._plan_new_inode(txn, ROOT_INO, KIND_DIR, nlink=2)
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

        Raises :class:`CorruptImage` with the reason if the image is not a mountable
        UMFS (bad magic, checksum, impossible sizes, pointers outside the data zone).
        """
        pm = PmAccess(machine)
        sb = Superblock.unpack(pm.read(machine.scm_base, 128), machine.scm_base, machine.scm.size // PAGE)
        fs = cls(machine, sb)
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
        """Undo in-flight operations, write back cached attributes, reclaim orphans,
        rebuild the allocators. Idempotent: a crash in here is recovered by mounting again."""
        live = []
        for ino, inode in self._all_inodes():
            if inode.kind not in (KIND_FREE, KIND_FILE, KIND_DIR):
                raise CorruptImage(f"inode {ino} has impossible kind {inode.kind}")
            if inode.kind != KIND_FREE:
                for name, pointer in (("file table", inode.fpt), ("U-Log", inode.ulog)):
                    if not self.zone.contains(pointer):
                        raise CorruptImage(f"inode {ino}: {name} pointer {pointer:#x} outside the data zone")
                live.append(ino)
        for ino in live:
            if self._inode(ino).kind == KIND_FREE:  # its creation was just undone
                continue
            op = recover_log(self._log(ino), self._valid_region)
            if op is not None:
                self.recovered.append((ino, op))
        live = [ino for ino in live if self._inode(ino).kind != KIND_FREE]  # undone creations
        for ino in live:
            header = self._log(ino).header()
            if self.pm.read_u64(header + LOG_ATTR_VALID):
                self.pm.store(self._inode_addr(ino) + INODE_SIZE_FIELD, self.pm.read(header + LOG_ATTR_SIZE, 8))
                self.pm.persist("recovery-attrs", [(self._inode_addr(ino) + INODE_SIZE_FIELD, 8)])
                self.pm.store(header + LOG_ATTR_VALID, u64(0))
                self.pm.persist("recovery-attrs", [(header + LOG_ATTR_VALID, 8)])
        used: set[int] = set()
        self.free_inodes = set()
        for ino, inode in self._all_inodes():
            if inode.kind != KIND_FREE and inode.nlink == 0:
                self.pm.store(self._inode_addr(ino) + INODE_KIND, u64(KIND_FREE))
                self.pm.persist("recovery-orphans", [(self._inode_addr(ino), 8)])
                inode = self._inode(ino)
            if inode.kind == KIND_FREE:
                self.free_inodes.add(ino)
                continue
            for page in self._pages_of(ino):
                if page in used:
                    raise CorruptImage(f"page {page:#x} is referenced twice (inode {ino})")
                used.add(page)
        root = self._inode(ROOT_INO)
        if root.kind != KIND_DIR:
            raise CorruptImage("the root inode is not a directory")
        self.zone.reset(used)

    def _valid_region(self, paddr: int, length: int) -> bool:
        inode_zone = (self.base + PAGE, self.base + (1 + self.sb.inode_pages) * PAGE)
        in_inodes = inode_zone[0] <= paddr and paddr + length <= inode_zone[1]
        in_data = self.zone.first <= paddr and paddr + length <= self.zone.limit
        return in_inodes or in_data

    # ================================================================ inodes

    def _inode_addr(self, ino: int) -> int:
        return self.base + PAGE + (ino - 1) * INODE_SIZE

    def _all_inodes(self) -> list[tuple[int, Inode]]:
        """Every inode slot, read in one pass over the inode zone."""
        raw = self.pm.read(self.base + PAGE, self.sb.inode_count * INODE_SIZE)
        return [
            (i + 1, Inode.unpack(raw[i * INODE_SIZE : i * INODE_SIZE + 48]) if word(raw, i * INODE_SIZE) else _FREE)
            for i in range(self.sb.inode_count)
        ]

    def _inode(self, ino: int) -> Inode:
        return Inode.unpack(self.pm.read(self._inode_addr(ino), 48))

    def _log(self, ino: int) -> ULog:
        return ULog(self.pm, self.tables, self._inode(ino).ulog)

    def _size_addr(self, ino: int) -> int:
        """Where ``ino``'s size lives now: the U-Log while the file is open (the paper's
        cached attributes), else the inode."""
        header = self._open_headers.get(ino)
        if header is not None:
            return header + LOG_ATTR_SIZE
        return self._inode_addr(ino) + INODE_SIZE_FIELD

    def _kind(self, ino: int) -> int:
        kind = self._open_kinds.get(ino)
        return kind if kind is not None else self._inode(ino).kind

    def _size(self, ino: int) -> int:
        return self.pm.read_u64(self._size_addr(ino))

    def _pages_of(self, ino: int) -> list[int]:
        inode = self._inode(ino)
        pages = []
        for top in (inode.fpt, inode.ulog):
            tables, data = self.tables.walk(top)
            pages += tables + [page for _, page in data]
        return pages

    def _plan_new_inode(self, txn: Txn, ino: int, kind: int, nlink: int) -> None:
        """Plan a fresh file: its table, its U-Log with a header page, its inode slot."""
        pdpt, pd, pt, log_pdpt, log_pd, log_pt, header = txn.allocate(PAGES_PER_NEW_FILE)
        for table, child in ((pdpt, pd), (pd, pt), (log_pdpt, log_pd), (log_pd, log_pt), (log_pt, header)):
            txn.writes["tables"].append((table, entry(child).ljust(PAGE, b"\0")))
        for page in (pt, header):
            txn.writes["tables"].append((page, ZERO_PAGE))
        inode = Inode(kind, nlink, 0, pdpt, log_pdpt, self._seq).pack().ljust(INODE_SIZE, b"\0")
        # Everything but the kind first, the kind last: a live kind never meets stale pointers.
        txn.write(self._inode_addr(ino) + 8, inode[8:], "tables")
        txn.write(self._inode_addr(ino), inode[:8], "attrs")

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
        """First opener: the size moves to the U-Log (written, then marked valid)."""
        header = self._log(ino).header()
        size = self.pm.read(self._inode_addr(ino) + INODE_SIZE_FIELD, 8)
        self.pm.store(header + LOG_ATTR_SIZE, size)
        self.pm.store(header + LOG_ATTR_VALID, u64(1))
        self.pm.persist("attr-cache", [(header + LOG_ATTR_VALID, 16)])
        self._open_headers[ino] = header
        self._open_kinds[ino] = self._inode(ino).kind

    def _write_back_attrs(self, ino: int) -> None:
        """Last closer: the cached size goes back to the inode, then the cache is dropped."""
        header = self._log(ino).header()
        size_field = self._inode_addr(ino) + INODE_SIZE_FIELD
        self.pm.store(size_field, self.pm.read(header + LOG_ATTR_SIZE, 8))
        self.pm.persist("attr-writeback", [(size_field, 8)])
        self.pm.store(header + LOG_ATTR_VALID, u64(0))
        self.pm.persist("attr-writeback", [(header + LOG_ATTR_VALID, 8)])
        del self._open_headers[ino], self._open_kinds[ino]

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
        """Reclaim an orphan: one atomic store of its kind, then its pages."""
        pages = self._pages_of(ino)
        self.pm.store(self._inode_addr(ino) + INODE_KIND, u64(KIND_FREE))
        self.pm.persist("reclaim", [(self._inode_addr(ino), 8)])
        self.zone.give_back(pages)
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
        size = self._size(ino)
        end = position + len(data)
        old_pages, new_pages = pages_for(size), pages_for(max(size, end))
        txn = Txn(self.pm, self.zone, "write")
        fresh = txn.grow(self.tables, self._inode(ino).fpt, old_pages, new_pages)
        top = self._inode(ino).fpt
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
            txn.write(self._size_addr(ino), u64(end), "attrs")
        self._commit(txn, ino)

    def _truncate(self, ino: int, length: int) -> None:
        size = self._size(ino)
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
                txn.write(at, u64(0), "tables")
                txn.free_after.append(dropped)
            if length % PAGE:  # keep "past the size is zero" for a later extension
                last = self.tables.lookup(top, length // PAGE)
                assert last is not None
                tail = min(size, new_pages * PAGE) - length
                txn.write(last + length % PAGE, bytes(tail), "data")
        txn.write(self._size_addr(ino), u64(length), "attrs")
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
        read from SCM; the same shape as the model's snapshot."""
        snapshot: dict[str, tuple[str, int, bytes | tuple[str, ...]]] = {}

        def visit(path: str, ino: int) -> None:
            inode = self._inode(ino)
            if inode.kind == KIND_FILE:
                snapshot[path] = ("file", inode.nlink, self._contents(ino))
                return
            entries = self._entries(ino)
            snapshot[path] = ("dir", inode.nlink, tuple(sorted(entries)))
            for name in sorted(entries):
                visit(f"/{name}" if path == "/" else f"{path}/{name}", entries[name][0])

        visit("/", ROOT_INO)
        return snapshot

    def _contents(self, ino: int) -> bytes:
        """A file's bytes, read through the direct map (not a process mapping)."""
        size = self._size(ino)
        top = self._inode(ino).fpt
        out = bytearray()
        for index in range(pages_for(size)):
            page = self.tables.lookup(top, index)
            if page is None:
                raise CorruptImage(f"inode {ino} is missing page {index}")
            out += self.pm.read(page, min(PAGE, size - index * PAGE))
        return bytes(out)

    def check_invariants(self) -> None:
        """fsck: assert every invariant of the on-SCM structures and the volatile state."""
        from impl.umfs_check import check_umfs

        check_umfs(self)
