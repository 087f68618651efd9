"""The UMFS file-system model: the definition of a correct libumfs file system.

:class:`ModelFs` satisfies :class:`spec.umfs_api.FileSystem`. It is a tree of inodes —
files holding ``bytes``, directories mapping names to inode numbers — with link counts,
and one descriptor table per process whose entries are *open file descriptions*
(inode, offset, access mode, append flag). It is meant to be read: every rule is in one
place, pure helpers carry PEP 316 contracts that CrossHair checks, and
:meth:`ModelFs.check_invariants` states what must always hold.

Semantics (POSIX as Linux implements it, for this subset)
---------------------------------------------------------
- **Processes.** :meth:`~ModelFs.spawn` numbers processes 1, 2, ... and never reuses a
  number. A call naming a process that is not running raises ``EINVAL``, before any
  other check. ``exit`` closes every descriptor of the process.
- **Descriptors.** Each process owns numbers ``0 .. MAX_FDS-1``; ``open`` returns the
  lowest free one, ``EMFILE`` when all are taken. Every ``open`` makes a new open file
  description (there is no ``dup``/``fork``), so offsets are never shared.
- **Paths** are checked before anything touches the tree: a path over ``PATH_MAX``
  bytes is ``ENAMETOOLONG``; a malformed one (relative, empty, ``.``/``..`` or empty
  components, a trailing ``/``, a NUL, text that is not UTF-8) is ``EINVAL``. The tree is
  then walked as Linux does: a component under a file is ``ENOTDIR``; a name over
  ``NAME_MAX`` bytes is ``ENAMETOOLONG`` *when it is looked up in an existing
  directory* (so ``/missing/<long>`` is ``ENOENT``); a missing name is ``ENOENT``.
  Calls with two paths (``link``, ``rename``) check both paths' syntax first.
- **Argument order.** Negative counts, offsets and lengths (``read``, ``pread``,
  ``pwrite``, ``ftruncate``, mapping reads) are ``EINVAL`` before the descriptor is
  checked, as the kernel checks ``pos < 0`` before ``fdget``.
- **open.** Flags outside ``O_SUPPORTED`` or access mode 3 are ``EINVAL`` (checked
  first, then the path, then ``EMFILE``, then the walk). ``O_CREAT`` creates a missing
  file; with ``O_EXCL`` an existing name (file, directory or ``/``) is ``EEXIST``;
  ``O_EXCL`` without ``O_CREAT`` is ignored. On a directory, ``O_CREAT``, write access
  or ``O_TRUNC`` is ``EISDIR``. ``O_TRUNC`` empties a file even when opened read-only
  (Linux does so). The mode is accepted and ignored.
- **read/pread** need read access (``EBADF``); on a directory they are ``EISDIR``.
  Bytes past the end read as nothing, holes read as zeros. ``read`` advances the
  offset by what it returned.
- **write/pwrite** need write access (``EBADF``). ``write`` writes at the offset, or at
  the end with ``O_APPEND``, and leaves the offset after the data. ``pwrite`` writes
  at its offset whatever ``O_APPEND`` says (POSIX) and never moves the offset. Writing
  past the end leaves a hole of zeros. An empty write changes nothing (not even the
  ``O_APPEND`` offset), as on Linux.
- **lseek** checks the descriptor, then the whence (0, 1, 2 else ``EINVAL``), then a
  negative result (``EINVAL``). Offsets past the end are allowed. On a directory
  descriptor ``SEEK_SET``/``SEEK_CUR`` move the (meaningless) offset and ``SEEK_END``
  is ``EINVAL``, as on tmpfs.
- **ftruncate** on a negative length, a directory or a descriptor without write access
  is ``EINVAL`` (Linux: ``EINVAL``, not ``EBADF``); it cuts or zero-extends and leaves
  the offset alone.
- **fsync** only checks the descriptor (UMFS calls are durable when they return).
- **fstat/stat** report the size, the link count and the kind. A file's link count is
  its number of names; a directory's is 2 + its subdirectories (its entry in the
  parent, its ``.``, their ``..``) and 0 once removed; the root's is 2 + subdirectories.
  A directory's size is 0.
- **unlink** of a directory (or ``/``) is ``EISDIR`` (Linux's choice; POSIX says
  ``EPERM``). **rmdir** of a file is ``ENOTDIR``, of a non-empty directory
  ``ENOTEMPTY``, of ``/`` ``EINVAL``. **mkdir** of an existing name or ``/`` is ``EEXIST``.
- **link** resolves the existing path first (its errors win), then the new name's
  parent; an existing new name or ``/`` is ``EEXIST``; a directory as the existing
  path is ``EISDIR`` (see deviation L2).
- **rename** follows ``renameat2``'s order: both parents are resolved (old's first);
  ``/`` on either side is ``EINVAL`` (L3); the old name must exist; a new name over
  ``NAME_MAX`` is ``ENAMETOOLONG``; old being an ancestor of (or equal to) new's parent
  is ``EINVAL``; new being an ancestor of old is ``ENOTEMPTY``; two names of the same
  inode make it a no-op (both names stay); then a directory onto a file is
  ``ENOTDIR``, a file onto a directory ``EISDIR``, a directory onto a non-empty one
  ``ENOTEMPTY``; otherwise the target (a file or an empty directory) is replaced.
- **Unlinked but open.** A file or directory with no names left lives on while a
  descriptor refers to it (reads and writes work; ``fstat`` says ``nlink == 0``) and is
  reclaimed — its space returned — at the last close or ``exit``.
- **map** returns a read-only view (:class:`ModelMapping`) that shows the file's
  current contents while *its* descriptor is open and raises ``EBADF`` after the
  ``close`` (UMFS detaches the file's page table on close, as the paper says). It needs
  a readable descriptor (``EBADF``) on a file (``EISDIR``).
- **Capacity.** ``ModelFs(max_inodes=None, max_bytes=None)``: at most ``max_inodes``
  live inodes (the root and unlinked-but-open ones count) and at most ``max_bytes``
  bytes of file contents in total (each live file counts its size, holes included).
  A call that would exceed either raises ``ENOSPC`` and changes nothing. Unlimited by
  default.

Deviations from Linux
---------------------
Checked by ``tests/test_umfs_model.py`` (model against :class:`memoracle.umfs.os_fs.OsDirFs`
on a real directory); the harness skips or normalises exactly these, by id, in
:data:`memoracle.umfs.os_fs.LINUX_DEVIATIONS`, and a test shows that each one is real.

- **L1 open with access mode 3** is ``EINVAL``. Linux opens the file with neither read
  nor write access (and ``O_CREAT`` creates it); the interface calls it a bad flag.
  *Skipped.*
- **L2 link of a directory** is ``EISDIR``; Linux says ``EPERM``, which the interface
  does not have. *Tolerated* (both fail, nothing changes).
- **L3 rename with / on either side** is ``EINVAL``; Linux says ``EBUSY``, not in the
  interface. *Tolerated* (both fail). (``rmdir /`` is ``EINVAL`` too: Linux gives
  ``EBUSY`` for the real root and ``EINVAL`` for ``.``, which is what the adapter's
  root is; no tolerance needed.)
- **L4 pwrite on an O_APPEND descriptor** writes at the given offset, as POSIX and the
  interface say; Linux appends (a bug its man page documents). *Skipped.*
- **L5 directory sizes** are 0; Linux's are file-system specific (ext4: 4096).
  *Normalised*: stat/fstat of a directory compare kind and link count only.
- **L6 lseek SEEK_END on a directory** is ``EINVAL`` (tmpfs); ext4 returns a hash
  cookie. *Skipped.*
- **L7 map of a directory or of a write-only descriptor** is ``EISDIR`` / ``EBADF``;
  Linux's mmap says ``ENODEV`` / ``EACCES``, not in the interface. *Tolerated.*
- **L8 a mapping after its descriptor is closed** raises ``EBADF`` (UMFS detaches the
  file's page table); Linux's mapping outlives the descriptor. *Tolerated.*

Not exercised against Linux (the harness never generates them): ``EMFILE`` at
``MAX_FDS`` (the real process has its own limit, shared by all simulated processes);
``ENOSPC`` (Linux's limits are the disk's); flags outside ``O_SUPPORTED`` (Linux ignores
them); whence 3 and 4 (Linux's ``SEEK_DATA``/``SEEK_HOLE``); offsets near Linux's maximum
file size (the model's are unbounded); permissions, modes, owners and timestamps (not
modelled: the mode is accepted and ignored, and the harness passes the defaults);
``EMLINK``. Path syntax, the ``PATH_MAX`` of interface paths and pids are interface
conventions the adapter applies itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Sequence

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
    FileSystem,
    Invalid,
    IsDirectory,
    Kind,
    NameTooLong,
    NoEntry,
    NoSpace,
    NotDirectory,
    NotEmpty,
    Stat,
    TooManyOpen,
    error_for,
)
from spec.umfs_paths import child_path, is_prefix, name_too_long, path_names, path_problem

# ---------------------------------------------------------------- pure helpers


def open_access(flags: int) -> tuple[bool, bool] | None:
    """``(readable, writable)`` for open ``flags``, or None if the flags are invalid.

    post: __return__ == (None if flags & ~O_SUPPORTED or flags & O_ACCMODE == O_ACCMODE else (flags & O_ACCMODE != O_WRONLY, flags & O_ACCMODE != O_RDONLY))
    """
    if flags & ~O_SUPPORTED:
        return None
    mode = flags & O_ACCMODE
    if mode == O_RDONLY:
        return (True, False)
    if mode == O_WRONLY:
        return (False, True)
    if mode == O_RDWR:
        return (True, True)
    return None


def read_range(contents: bytes, offset: int, count: int) -> bytes:
    """The bytes ``[offset, offset + count)`` of ``contents``, cut at its end.

    pre: offset >= 0 and count >= 0
    post: __return__ == contents[offset : offset + count] and len(__return__) <= count
    """
    return contents[offset : offset + count]


def apply_write(contents: bytes, offset: int, data: bytes) -> bytes:
    """``contents`` with ``data`` written at ``offset``; a gap past the end reads as zeros.

    pre: offset >= 0
    post: __return__ == contents if len(data) == 0 else (__return__[offset : offset + len(data)] == data and len(__return__) == max(len(contents), offset + len(data)) and __return__[: min(offset, len(contents))] == contents[:offset] and __return__[offset + len(data) :] == contents[offset + len(data) :] and __return__[len(contents) : offset] == bytes(max(0, offset - len(contents))))
    """
    if len(data) == 0:
        return contents
    hole = bytes(max(0, offset - len(contents)))
    return contents[:offset] + hole + data + contents[offset + len(data) :]


def truncated(contents: bytes, length: int) -> bytes:
    """``contents`` cut or zero-extended to ``length`` bytes.

    pre: length >= 0
    post: len(__return__) == length and __return__[: len(contents)] == contents[:length] and __return__[len(contents) :] == bytes(max(0, length - len(contents)))
    """
    if length <= len(contents):
        return contents[:length]
    return contents + bytes(length - len(contents))


def seek_position(current: int, size: int | None, offset: int, whence: int) -> int | None:
    """The offset ``lseek`` moves to, or None for ``EINVAL``; ``size`` None is a directory.

    pre: current >= 0
    pre: size is None or size >= 0
    post: __return__ is None or __return__ == {SEEK_SET: offset, SEEK_CUR: current + offset}.get(whence, (size or 0) + offset) >= 0
    post: (__return__ is None) == (whence not in (SEEK_SET, SEEK_CUR, SEEK_END) or (whence == SEEK_END and size is None) or {SEEK_SET: offset, SEEK_CUR: current + offset}.get(whence, (size or 0) + offset) < 0)
    """
    if whence == SEEK_SET:
        target = offset
    elif whence == SEEK_CUR:
        target = current + offset
    elif whence == SEEK_END and size is not None:
        target = size + offset
    else:
        return None
    return target if target >= 0 else None


def lowest_free(used: Sequence[int], limit: int) -> int | None:
    """The lowest number in ``[0, limit)`` not in ``used``, or None if all are taken.

    pre: limit >= 0
    post: __return__ is None or (0 <= __return__ < limit and __return__ not in used and all(n in used for n in range(__return__)))
    """
    taken = set(used)
    for number in range(limit):
        if number not in taken:
            return number
    return None


# ---------------------------------------------------------------- state

ROOT = 1  #: the root directory's inode number


@dataclass
class File:
    """A regular file: its contents and how many names it has."""

    data: bytes = b""
    nlink: int = 0


@dataclass
class Directory:
    """A directory: name → inode number. ``nlink`` counts its entry, ``.`` and subdirs' ``..``."""

    entries: dict[str, int] = field(default_factory=dict)
    nlink: int = 1  # its own "."; the entry in its parent adds one


Inode = File | Directory


@dataclass
class OpenFile:
    """An open file description: what ``open`` made and a descriptor refers to."""

    ino: int
    readable: bool
    writable: bool
    append: bool
    offset: int = 0


@dataclass
class Process:
    """A process: its descriptor table (the paper's U-Info)."""

    fds: dict[int, OpenFile] = field(default_factory=dict)


class Node(NamedTuple):
    """One path's entry in a :data:`Snapshot`: a file's bytes or a directory's names."""

    kind: Kind
    nlink: int
    content: bytes | tuple[str, ...]


#: The whole tree, path → node: what two file systems must agree on after every step.
Snapshot = dict[str, Node]


# ---------------------------------------------------------------- the model


class ModelMapping:
    """A read-only view of an open file, valid while its descriptor stays open."""

    def __init__(self, fs: ModelFs, pid: int, fd: int, description: OpenFile) -> None:
        self._fs, self._pid, self._fd, self._description = fs, pid, fd, description

    def read(self, offset: int, length: int) -> bytes:
        """The file's current bytes at ``[offset, offset + length)``, cut at its size."""
        if offset < 0 or length < 0:
            raise Invalid(f"mapping read({offset}, {length})")
        process = self._fs.processes.get(self._pid)
        if process is None or process.fds.get(self._fd) is not self._description:
            raise BadDescriptor(f"mapping of fd {self._fd}: descriptor closed")
        return read_range(self._fs.file(self._description.ino).data, offset, length)


class ModelFs:
    """The reference file system (see the module docstring for every rule)."""

    def __init__(self, *, max_inodes: int | None = None, max_bytes: int | None = None) -> None:
        self.max_inodes = max_inodes
        self.max_bytes = max_bytes
        self.inodes: dict[int, Inode] = {ROOT: Directory(nlink=2)}
        self.processes: dict[int, Process] = {}
        self._next_ino = ROOT + 1
        self._next_pid = 1

    # ------------------------------------------------------------ processes

    def spawn(self) -> int:
        """Start a process with an empty descriptor table; pids are never reused."""
        pid = self._next_pid
        self._next_pid += 1
        self.processes[pid] = Process()
        return pid

    def exit(self, pid: int) -> None:
        """Close every descriptor of ``pid`` and forget it."""
        process = self._process(pid)
        for fd in sorted(process.fds):
            self.close(pid, fd)
        del self.processes[pid]

    # ------------------------------------------------------------ descriptors

    def open(self, pid: int, path: str, flags: int, mode: int = 0o644) -> int:
        """Open or create ``path``; the lowest free descriptor."""
        process = self._process(pid)
        access = open_access(flags)
        if access is None:
            raise Invalid(f"open flags {flags:#o}")
        names = self._parse(path)
        fd = lowest_free(list(process.fds), MAX_FDS)
        if fd is None:
            raise TooManyOpen(path)
        parent, name = self._parent(names, path)
        found = ROOT if name is None else self._find(parent, name, path)
        if found is not None:
            if flags & O_CREAT and flags & O_EXCL:
                raise Exists(path)
            ino = found
        elif flags & O_CREAT:
            assert name is not None
            ino = self._create(parent, name, File())
        else:
            raise NoEntry(path)
        inode = self.inodes[ino]
        if isinstance(inode, Directory):
            if flags & O_CREAT or access[1] or flags & O_TRUNC:
                raise IsDirectory(path)
        elif flags & O_TRUNC:
            inode.data = truncated(inode.data, 0)
        process.fds[fd] = OpenFile(ino, access[0], access[1], bool(flags & O_APPEND))
        return fd

    def close(self, pid: int, fd: int) -> None:
        """Close ``fd``; an unlinked file's space is reclaimed at its last close."""
        description = self._descriptor(pid, fd)
        del self.processes[pid].fds[fd]
        self._reclaim(description.ino)

    def read(self, pid: int, fd: int, count: int) -> bytes:
        """Up to ``count`` bytes at the offset, which advances past them."""
        self._process(pid)
        if count < 0:
            raise Invalid(f"read count {count}")
        description = self._readable(pid, fd)
        data = read_range(self.file(description.ino).data, description.offset, count)
        description.offset += len(data)
        return data

    def pread(self, pid: int, fd: int, count: int, offset: int) -> bytes:
        """Up to ``count`` bytes at ``offset``; the descriptor's offset is unchanged."""
        self._process(pid)
        if count < 0 or offset < 0:
            raise Invalid(f"pread count {count} offset {offset}")
        description = self._readable(pid, fd)
        return read_range(self.file(description.ino).data, offset, count)

    def write(self, pid: int, fd: int, data: bytes) -> int:
        """Write at the offset (the end with ``O_APPEND``); the offset moves past the data."""
        description = self._writable(pid, fd)
        if not data:
            return 0
        file = self.file(description.ino)
        position = len(file.data) if description.append else description.offset
        self._store(file, apply_write(file.data, position, data))
        description.offset = position + len(data)
        return len(data)

    def pwrite(self, pid: int, fd: int, data: bytes, offset: int) -> int:
        """Write at ``offset`` (even with ``O_APPEND``); the offset is unchanged."""
        self._process(pid)
        if offset < 0:
            raise Invalid(f"pwrite offset {offset}")
        description = self._writable(pid, fd)
        file = self.file(description.ino)
        self._store(file, apply_write(file.data, offset, data))
        return len(data)

    def lseek(self, pid: int, fd: int, offset: int, whence: int) -> int:
        """Move the offset; past the end is fine, before the start is ``EINVAL``."""
        description = self._descriptor(pid, fd)
        inode = self.inodes[description.ino]
        size = len(inode.data) if isinstance(inode, File) else None
        target = seek_position(description.offset, size, offset, whence)
        if target is None:
            raise Invalid(f"lseek({offset}, {whence})")
        description.offset = target
        return target

    def ftruncate(self, pid: int, fd: int, length: int) -> None:
        """Cut or zero-extend the file; ``EINVAL`` without write access or on a directory."""
        self._process(pid)
        if length < 0:
            raise Invalid(f"ftruncate length {length}")
        description = self._descriptor(pid, fd)
        inode = self.inodes[description.ino]
        if not isinstance(inode, File) or not description.writable:
            raise Invalid(f"ftruncate fd {fd}: not a file open for writing")
        self._store(inode, truncated(inode.data, length))

    def fsync(self, pid: int, fd: int) -> None:
        """Nothing to do but check the descriptor: every call is durable on return."""
        self._descriptor(pid, fd)

    def fstat(self, pid: int, fd: int) -> Stat:
        """The attributes of the open file (``nlink`` 0 once it has no names)."""
        return self._stat(self._descriptor(pid, fd).ino)

    def map(self, pid: int, fd: int) -> FileMapping:
        """A view of the file's current contents, valid until ``fd`` is closed."""
        description = self._descriptor(pid, fd)
        if isinstance(self.inodes[description.ino], Directory):
            raise IsDirectory(f"map fd {fd}")
        if not description.readable:
            raise BadDescriptor(f"map fd {fd}: not open for reading")
        return ModelMapping(self, pid, fd, description)

    # ------------------------------------------------------------ names

    def stat(self, path: str) -> Stat:
        """The attributes of ``path``."""
        return self._stat(self._resolve(self._parse(path), path))

    def unlink(self, path: str) -> None:
        """Remove a file's name; ``EISDIR`` for a directory."""
        parent, name = self._parent(self._parse(path), path)
        if name is None or isinstance(self.inodes[self._lookup(parent, name, path)], Directory):
            raise IsDirectory(path)
        self._reclaim(self._remove_entry(parent, name))

    def link(self, existing: str, new: str) -> None:
        """Give the file ``existing`` the extra name ``new``."""
        old_names, new_names = self._parse(existing), self._parse(new)
        ino = self._resolve(old_names, existing)
        parent, name = self._parent(new_names, new)
        if name is None or self._find(parent, name, new) is not None:
            raise Exists(new)
        if isinstance(self.inodes[ino], Directory):
            raise IsDirectory(f"link {existing}: a directory (Linux: EPERM)")
        self._add_entry(parent, name, ino)

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` to ``new``, replacing a file or an empty directory there."""
        old_names, new_names = self._parse(old), self._parse(new)
        old_parent, old_name = self._parent(old_names, old)
        new_parent, new_name = self._parent(new_names, new)
        if old_name is None or new_name is None:
            raise Invalid(f"rename {old} -> {new}: the root (Linux: EBUSY)")
        source = self._lookup(old_parent, old_name, old)
        target = self._find(new_parent, new_name, new)
        if is_prefix(old_names, new_names[:-1]):
            raise Invalid(f"rename {old} -> {new}: into its own subtree")
        if is_prefix(new_names, old_names[:-1]):
            raise NotEmpty(f"rename {old} -> {new}: onto an ancestor")
        if target == source:
            return
        moving_dir = isinstance(self.inodes[source], Directory)
        if target is not None:
            victim = self.inodes[target]
            if moving_dir and not isinstance(victim, Directory):
                raise NotDirectory(new)
            if not moving_dir and isinstance(victim, Directory):
                raise IsDirectory(new)
            if isinstance(victim, Directory) and victim.entries:
                raise NotEmpty(new)
            self._remove_entry(new_parent, new_name)
        self._remove_entry(old_parent, old_name, moving=True)
        self._add_entry(new_parent, new_name, source)
        if target is not None:
            self._reclaim(target)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create an empty directory; the mode is ignored."""
        parent, name = self._parent(self._parse(path), path)
        if name is None or self._find(parent, name, path) is not None:
            raise Exists(path)
        self._create(parent, name, Directory())

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        parent, name = self._parent(self._parse(path), path)
        if name is None:
            raise Invalid("rmdir /")
        directory = self.inodes[self._lookup(parent, name, path)]
        if not isinstance(directory, Directory):
            raise NotDirectory(path)
        if directory.entries:
            raise NotEmpty(path)
        self._reclaim(self._remove_entry(parent, name))

    def listdir(self, path: str) -> list[str]:
        """The names in a directory, sorted."""
        return sorted(self.directory(self._resolve(self._parse(path), path), path).entries)

    # ------------------------------------------------------------ for harnesses

    def observe(self) -> Snapshot:
        """Every path with its kind, link count and contents (files) or names (dirs)."""
        snapshot: Snapshot = {}

        def visit(path: str, ino: int) -> None:
            inode = self.inodes[ino]
            if isinstance(inode, File):
                snapshot[path] = Node("file", inode.nlink, inode.data)
                return
            snapshot[path] = Node("dir", inode.nlink, tuple(sorted(inode.entries)))
            for name in sorted(inode.entries):
                visit(child_path(path, name), inode.entries[name])

        visit("/", ROOT)
        return snapshot

    def check_invariants(self) -> None:
        """Assert every internal invariant (called by the harnesses after each step)."""
        names: dict[int, int] = {ino: 0 for ino in self.inodes}
        subdirs: dict[int, int] = {ino: 0 for ino in self.inodes}
        parents: dict[int, int] = {}
        for ino, inode in self.inodes.items():
            if isinstance(inode, Directory):
                for name, child in inode.entries.items():
                    assert child in self.inodes, f"entry {name!r} of {ino} names freed {child}"
                    assert name and "/" not in name and name not in (".", "..")
                    assert not name_too_long(name), f"entry {name!r} too long"
                    names[child] += 1
                    if isinstance(self.inodes[child], Directory):
                        assert child not in parents, f"directory {child} has two names"
                        parents[child] = ino
                        subdirs[ino] += 1
        assert ROOT not in parents and isinstance(self.inodes[ROOT], Directory)
        opened = {d.ino for p in self.processes.values() for d in p.fds.values()}
        for ino, inode in self.inodes.items():
            if isinstance(inode, File):
                assert inode.nlink == names[ino], f"inode {ino}: nlink {inode.nlink}"
            else:
                linked = ino == ROOT or names[ino] == 1
                expected = 2 + subdirs[ino] if linked else 0
                assert inode.nlink == expected, f"dir {ino}: nlink {inode.nlink} != {expected}"
                assert linked or not inode.entries, f"removed dir {ino} has entries"
            assert inode.nlink > 0 or ino in opened, f"inode {ino} unreachable, not reclaimed"
        for ino in parents:  # every directory's ancestry ends at the root: no cycles
            seen = {ino}
            while ino in parents:
                ino = parents[ino]
                assert ino not in seen, "directory cycle"
                seen.add(ino)
            assert ino == ROOT, f"directory {ino} is detached but has names"
        for pid, process in self.processes.items():
            assert 0 < pid < self._next_pid
            for fd, description in process.fds.items():
                assert 0 <= fd < MAX_FDS and description.ino in self.inodes
                assert description.offset >= 0 and (description.readable or description.writable)
                if isinstance(self.inodes[description.ino], Directory):
                    assert not description.writable
        assert self.max_inodes is None or len(self.inodes) <= self.max_inodes
        assert self.max_bytes is None or self._bytes_used() <= self.max_bytes

    # ------------------------------------------------------------ accessors

    def file(self, ino: int) -> File:
        """The file ``ino`` (``EISDIR`` if it is a directory)."""
        inode = self.inodes[ino]
        if not isinstance(inode, File):
            raise IsDirectory(f"inode {ino}")
        return inode

    def directory(self, ino: int, path: str = "") -> Directory:
        """The directory ``ino`` (``ENOTDIR`` if it is a file)."""
        inode = self.inodes[ino]
        if not isinstance(inode, Directory):
            raise NotDirectory(path)
        return inode

    def _stat(self, ino: int) -> Stat:
        inode = self.inodes[ino]
        if isinstance(inode, File):
            return Stat(len(inode.data), inode.nlink, "file")
        return Stat(0, inode.nlink, "dir")

    def _process(self, pid: int) -> Process:
        process = self.processes.get(pid)
        if process is None:
            raise Invalid(f"pid {pid} is not running")
        return process

    def _descriptor(self, pid: int, fd: int) -> OpenFile:
        description = self._process(pid).fds.get(fd)
        if description is None:
            raise BadDescriptor(f"fd {fd}")
        return description

    def _readable(self, pid: int, fd: int) -> OpenFile:
        description = self._descriptor(pid, fd)
        if not description.readable:
            raise BadDescriptor(f"fd {fd}: not open for reading")
        self.file(description.ino)
        return description

    def _writable(self, pid: int, fd: int) -> OpenFile:
        description = self._descriptor(pid, fd)
        if not description.writable:
            raise BadDescriptor(f"fd {fd}: not open for writing")
        return description

    # ------------------------------------------------------------ path walking

    def _parse(self, path: str) -> tuple[str, ...]:
        problem = path_problem(path)
        if problem:
            raise error_for(problem, repr(path)[:80])
        return path_names(path)

    def _find(self, dir_ino: int, name: str, path: str) -> int | None:
        """The inode ``name`` names in ``dir_ino``, or None (``ENOTDIR``, ``ENAMETOOLONG``)."""
        directory = self.directory(dir_ino, path)
        if name_too_long(name):
            raise NameTooLong(path[:80])
        return directory.entries.get(name)

    def _lookup(self, dir_ino: int, name: str, path: str) -> int:
        ino = self._find(dir_ino, name, path)
        if ino is None:
            raise NoEntry(path[:80])
        return ino

    def _resolve(self, names: Sequence[str], path: str) -> int:
        ino = ROOT
        for name in names:
            ino = self._lookup(ino, name, path)
        return ino

    def _parent(self, names: Sequence[str], path: str) -> tuple[int, str | None]:
        """The directory holding the last name, and that name (None for ``/``)."""
        if not names:
            return ROOT, None
        parent = self._resolve(names[:-1], path)
        self.directory(parent, path)
        return parent, names[-1]

    # ------------------------------------------------------------ the one place for links and space

    def _add_entry(self, parent: int, name: str, ino: int) -> None:
        self.directory(parent).entries[name] = ino
        self.inodes[ino].nlink += 1
        if isinstance(self.inodes[ino], Directory):
            self.inodes[parent].nlink += 1  # the child's ".."

    def _remove_entry(self, parent: int, name: str, *, moving: bool = False) -> int:
        """Remove the entry; a directory taken out of the tree (not moved) loses ``.`` too."""
        ino = self.directory(parent).entries.pop(name)
        inode = self.inodes[ino]
        inode.nlink -= 1
        if isinstance(inode, Directory):
            self.inodes[parent].nlink -= 1  # the child's ".."
            if not moving:
                inode.nlink -= 1  # its own "."
        return ino

    def _reclaim(self, ino: int) -> None:
        """Free ``ino`` if nothing names it and no descriptor refers to it."""
        inode = self.inodes.get(ino)
        if inode is not None and inode.nlink == 0 and not self._is_open(ino):
            del self.inodes[ino]

    def _is_open(self, ino: int) -> bool:
        return any(d.ino == ino for p in self.processes.values() for d in p.fds.values())

    def _create(self, parent: int, name: str, inode: Inode) -> int:
        if self.max_inodes is not None and len(self.inodes) >= self.max_inodes:
            raise NoSpace(f"no free inode for {name!r}")
        ino = self._next_ino
        self._next_ino += 1
        self.inodes[ino] = inode
        self._add_entry(parent, name, ino)
        return ino

    def _bytes_used(self) -> int:
        return sum(len(i.data) for i in self.inodes.values() if isinstance(i, File))

    def _store(self, file: File, contents: bytes) -> None:
        """Replace a file's contents, or ``ENOSPC`` (and no change) past ``max_bytes``."""
        if self.max_bytes is not None and len(contents) > len(file.data):
            if self._bytes_used() - len(file.data) + len(contents) > self.max_bytes:
                raise NoSpace(f"{len(contents)} bytes do not fit")
        file.data = contents


__all__ = [
    "Directory",
    "File",
    "ModelFs",
    "ModelMapping",
    "Node",
    "OpenFile",
    "Process",
    "Snapshot",
    "apply_write",
    "lowest_free",
    "open_access",
    "read_range",
    "seek_position",
    "truncated",
]

if TYPE_CHECKING:  # mypy checks that the model satisfies the interface
    _model_is_a_file_system: FileSystem = ModelFs()
    _mapping_is_a_file_mapping: FileMapping = ModelMapping(ModelFs(), 0, 0, OpenFile(0, True, False, False))
