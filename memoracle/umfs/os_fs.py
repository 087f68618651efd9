"""``OsDirFs``: the libumfs interface over a real directory, through ``os``.

Linux is the reference the model is validated against: every call goes to the kernel
(``openat``, ``read``, ``pwrite``, ``lseek``, ``ftruncate``, ``linkat``, ``renameat``,
``mkdirat``, ``unlinkat``, ``mmap`` ...) relative to a descriptor of a fresh
``tempfile.TemporaryDirectory``, so an interface path ``/a/b`` is ``a/b`` there and
``/`` is ``.``; Linux's ``PATH_MAX`` check on the relative path is then exactly the
interface's "at most ``PATH_MAX`` bytes".

What the adapter does itself, because Linux has no such notion: it rejects malformed
interface paths (``EINVAL``), keeps one table of real descriptors per simulated process
(pids 1, 2, ..., never reused; a pid that is not running is ``EINVAL``), hands an
unknown descriptor to the kernel as ``-1`` (so the kernel decides whether ``EINVAL``
for a negative offset or ``EBADF`` comes first), checks the arguments of a mapping's
``read``, and sorts ``listdir``. Everything else is Linux's answer: an ``OSError``
becomes the interface's :class:`~spec.umfs_api.FsError` via ``error_for``, and an errno
the interface does not have raises :class:`OutsideInterface` (never an ``FsError``),
which the harness reports unless it is one of :data:`LINUX_DEVIATIONS`.

:data:`LINUX_DEVIATIONS` is the harness's side of the list of deviations in
:mod:`spec.umfs_model`'s docstring (ids L1–L8), for a session with the model on the
left and an ``OsDirFs`` on the right.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat as stat_module
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

from memoracle.umfs.conformance import Call, Deviations, Outcome
from spec.umfs_api import (
    ERRORS,
    O_ACCMODE,
    O_APPEND,
    O_WRONLY,
    PATH_MAX,
    SEEK_END,
    BadDescriptor,
    FileMapping,
    FileSystem,
    Invalid,
    Kind,
    NameTooLong,
    Stat,
    error_for,
)
from spec.umfs_model import Node, Snapshot

T = TypeVar("T")


class OutsideInterface(RuntimeError):
    """Linux answered with an errno the interface does not have (``.errno``)."""

    def __init__(self, op: str, code: int, detail: str) -> None:
        name = errno.errorcode.get(code, str(code))
        super().__init__(f"{op}: Linux says {name} ({detail}), which is not in the interface")
        self.errno = code


def _translate(op: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except OSError as error:
        code = error.errno or 0
        detail = f"{op}: {error.strerror}"
        if code in ERRORS:
            raise error_for(code, detail) from error
        raise OutsideInterface(op, code, error.strerror or "") from error


def _relative(path: str) -> str:
    """The path relative to the root descriptor (interface syntax checked here)."""
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise Invalid(f"{path!r}: not UTF-8") from None
    if size > PATH_MAX:
        raise NameTooLong(path[:80])
    if path == "/":
        return "."
    names = path[1:].split("/")
    if not path.startswith("/") or "\0" in path or any(n in ("", ".", "..") for n in names):
        raise Invalid(f"malformed path {path[:80]!r}")
    return path[1:]


@dataclass
class _Open:
    real_fd: int
    flags: int


class OsMapping:
    """A mapping backed by a real ``mmap`` of the file (re-mapped when its size changes).

    Like Linux's mapping it holds its own reference to the file, so it keeps working
    after the descriptor is closed (deviation L8).
    """

    def __init__(self, real_fd: int) -> None:
        self._fd = os.dup(real_fd)
        self._map: mmap.mmap | None = None

    def read(self, offset: int, length: int) -> bytes:
        """The file's current bytes at ``[offset, offset + length)``, cut at its size."""
        if offset < 0 or length < 0:
            raise Invalid(f"mapping read({offset}, {length})")
        if self._fd < 0:
            raise BadDescriptor("mapping released")
        size = os.fstat(self._fd).st_size
        if offset >= size or length == 0:
            return b""
        if self._map is None or len(self._map) != size:
            self.release_map()
            self._map = mmap.mmap(self._fd, size, prot=mmap.PROT_READ)
        return self._map[offset : offset + length]

    def release_map(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def release(self) -> None:
        """Unmap and close the mapping's own descriptor."""
        self.release_map()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsDirFs:
    """A :class:`~spec.umfs_api.FileSystem` over a fresh temporary directory.

    Call :meth:`cleanup` (or use it as a context manager) to close every descriptor
    and remove the directory.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="memoracle-fs-")
        self._root = os.open(self._tmp.name, os.O_RDONLY | os.O_DIRECTORY)
        self._procs: dict[int, dict[int, _Open]] = {}
        self._mappings: list[OsMapping] = []
        self._next_pid = 1
        self._check_link_counting()

    def _check_link_counting(self) -> None:
        os.mkdir("probe", dir_fd=self._root)
        try:
            nlink = os.stat("probe", dir_fd=self._root).st_nlink
        finally:
            os.rmdir("probe", dir_fd=self._root)
        if nlink != 2:
            self.cleanup()
            raise RuntimeError(
                f"{tempfile.gettempdir()} reports nlink {nlink} for an empty directory; the "
                "model counts directory links as 2 + subdirectories (ext4, xfs, tmpfs do)"
            )

    # ------------------------------------------------------------ lifetime

    def cleanup(self) -> None:
        """Close every descriptor and mapping and remove the directory."""
        for pid in list(self._procs):
            self.exit(pid)
        for mapping in self._mappings:
            mapping.release()
        self._mappings.clear()
        if self._root >= 0:
            os.close(self._root)
            self._root = -1
        self._tmp.cleanup()

    def __enter__(self) -> OsDirFs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------ processes

    def spawn(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        self._procs[pid] = {}
        return pid

    def exit(self, pid: int) -> None:
        table = self._table(pid)
        for fd in sorted(table):
            os.close(table.pop(fd).real_fd)
        del self._procs[pid]

    def _table(self, pid: int) -> dict[int, _Open]:
        table = self._procs.get(pid)
        if table is None:
            raise Invalid(f"pid {pid} is not running")
        return table

    def _real(self, pid: int, fd: int) -> int:
        entry = self._table(pid).get(fd)
        return -1 if entry is None else entry.real_fd

    # ------------------------------------------------------------ descriptors

    def open(self, pid: int, path: str, flags: int, mode: int = 0o644) -> int:
        table = self._table(pid)
        rel = _relative(path)
        real = _translate("open", lambda: os.open(rel, flags, mode, dir_fd=self._root))
        table[real] = _Open(real, flags)
        return real

    def close(self, pid: int, fd: int) -> None:
        real = self._real(pid, fd)
        _translate("close", lambda: os.close(real))
        del self._procs[pid][fd]

    def read(self, pid: int, fd: int, count: int) -> bytes:
        real = self._real(pid, fd)
        return _translate("read", lambda: os.read(real, count))

    def pread(self, pid: int, fd: int, count: int, offset: int) -> bytes:
        real = self._real(pid, fd)
        return _translate("pread", lambda: os.pread(real, count, offset))

    def write(self, pid: int, fd: int, data: bytes) -> int:
        real = self._real(pid, fd)
        return _translate("write", lambda: os.write(real, data))

    def pwrite(self, pid: int, fd: int, data: bytes, offset: int) -> int:
        real = self._real(pid, fd)
        return _translate("pwrite", lambda: os.pwrite(real, data, offset))

    def lseek(self, pid: int, fd: int, offset: int, whence: int) -> int:
        real = self._real(pid, fd)
        return _translate("lseek", lambda: os.lseek(real, offset, whence))

    def ftruncate(self, pid: int, fd: int, length: int) -> None:
        real = self._real(pid, fd)
        _translate("ftruncate", lambda: os.ftruncate(real, length))

    def fsync(self, pid: int, fd: int) -> None:
        real = self._real(pid, fd)
        if real < 0:  # Python's os.fsync refuses -1 itself; the kernel would say EBADF
            raise BadDescriptor(f"fsync fd {fd}")
        _translate("fsync", lambda: os.fsync(real))

    def fstat(self, pid: int, fd: int) -> Stat:
        real = self._real(pid, fd)
        return _stat(_translate("fstat", lambda: os.fstat(real)))

    def map(self, pid: int, fd: int) -> FileMapping:
        """A real ``mmap(PROT_READ, MAP_SHARED)`` of the file, through a duplicate descriptor."""
        real = self._real(pid, fd)
        if real < 0:
            raise BadDescriptor(f"map fd {fd}")
        info = os.fstat(real)
        if stat_module.S_ISDIR(info.st_mode):
            _translate("map", lambda: mmap.mmap(real, 1, prot=mmap.PROT_READ).close())
        elif info.st_size > 0:
            _translate("map", lambda: mmap.mmap(real, info.st_size, prot=mmap.PROT_READ).close())
        elif fcntl.fcntl(real, fcntl.F_GETFL) & O_ACCMODE == O_WRONLY:
            # Python cannot mmap an empty file; the kernel would refuse this descriptor.
            raise OutsideInterface("map", errno.EACCES, "mmap of a write-only descriptor")
        mapping = OsMapping(real)
        self._mappings.append(mapping)
        return mapping

    # ------------------------------------------------------------ names

    def stat(self, path: str) -> Stat:
        rel = _relative(path)
        return _stat(_translate("stat", lambda: os.stat(rel, dir_fd=self._root)))

    def unlink(self, path: str) -> None:
        rel = _relative(path)
        _translate("unlink", lambda: os.unlink(rel, dir_fd=self._root))

    def link(self, existing: str, new: str) -> None:
        src, dst = _relative(existing), _relative(new)
        root = self._root
        _translate("link", lambda: os.link(src, dst, src_dir_fd=root, dst_dir_fd=root))

    def rename(self, old: str, new: str) -> None:
        src, dst = _relative(old), _relative(new)
        root = self._root
        _translate("rename", lambda: os.rename(src, dst, src_dir_fd=root, dst_dir_fd=root))

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        rel = _relative(path)
        _translate("mkdir", lambda: os.mkdir(rel, mode, dir_fd=self._root))

    def rmdir(self, path: str) -> None:
        rel = _relative(path)
        _translate("rmdir", lambda: os.rmdir(rel, dir_fd=self._root))

    def listdir(self, path: str) -> list[str]:
        rel = _relative(path)
        flags = os.O_RDONLY | os.O_DIRECTORY
        fd = _translate("listdir", lambda: os.open(rel, flags, dir_fd=self._root))
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    # ------------------------------------------------------------ for harnesses

    def observe(self) -> Snapshot:
        """The real tree, read straight through ``os`` (no descriptor tables touched)."""
        snapshot: Snapshot = {}

        def visit(path: str, rel: str) -> None:
            info = os.stat(rel, dir_fd=self._root)
            if stat_module.S_ISDIR(info.st_mode):
                fd = os.open(rel, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self._root)
                try:
                    names = tuple(sorted(os.listdir(fd)))
                finally:
                    os.close(fd)
                snapshot[path] = Node("dir", info.st_nlink, names)
                for name in names:
                    visit(f"{path.rstrip('/')}/{name}", name if rel == "." else f"{rel}/{name}")
            else:
                fd = os.open(rel, os.O_RDONLY, dir_fd=self._root)
                try:
                    data = os.pread(fd, info.st_size + 1, 0)
                finally:
                    os.close(fd)
                snapshot[path] = Node("file", info.st_nlink, data)

        visit("/", ".")
        return snapshot

    def check_invariants(self) -> None:
        """The adapter's own bookkeeping: every table entry is a distinct open real fd."""
        seen: set[int] = set()
        for table in self._procs.values():
            for fd, entry in table.items():
                assert fd == entry.real_fd and fd not in seen and fd != self._root
                seen.add(fd)
                os.fstat(fd)  # raises if the real descriptor was closed behind our back


def _stat(info: os.stat_result) -> Stat:
    kind: Kind = "dir" if stat_module.S_ISDIR(info.st_mode) else "file"
    return Stat(info.st_size, info.st_nlink, kind)


# ---------------------------------------------------------------- deviations


class LinuxDeviations(Deviations):
    """Exactly the deviations L1–L8 of :mod:`spec.umfs_model`: the model on the left,
    Linux (an :class:`OsDirFs`) on the right."""

    reference = "memoracle.umfs.os_fs.LINUX_DEVIATIONS"
    #: id → one line; the same ids appear in the model's docstring (a test checks).
    IDS = {
        "L1": "open with access mode 3: model EINVAL, Linux opens (skipped)",
        "L2": "link of a directory: model EISDIR, Linux EPERM (tolerated)",
        "L3": "rename with / on either side: model EINVAL, Linux EBUSY (tolerated)",
        "L4": "pwrite on an O_APPEND descriptor: model writes at offset, Linux appends (skipped)",
        "L5": "directory sizes: model 0, Linux file-system specific (normalised)",
        "L6": "lseek SEEK_END on a directory: model EINVAL, ext4 a cookie (skipped)",
        "L7": "map of a directory / write-only fd: model EISDIR/EBADF, Linux ENODEV/EACCES",
        "L8": "mapping read after its fd is closed: model EBADF, Linux still maps (tolerated)",
    }

    def skip(self, call: Call) -> str | None:
        if call.op == "open" and _int(call.step[3]) & O_ACCMODE == O_ACCMODE:
            return "L1"
        if call.op == "pwrite" and call.fd_flags is not None and call.fd_flags & O_APPEND:
            return "L4"
        if call.op == "lseek" and call.fd_kind == "dir" and call.step[3] == SEEK_END:
            return "L6"
        return None

    def tolerate(self, call: Call, left: Outcome, right: Outcome) -> str | None:
        if call.op == "link" and left.errno == errno.EISDIR and _foreign(right, errno.EPERM):
            return "L2"
        if call.op == "rename" and "/" in call.step[1:] and left.errno == errno.EINVAL:
            if _foreign(right, errno.EBUSY):
                return "L3"
        if call.op in ("stat", "fstat") and _same_dir_stat(left, right):
            return "L5"
        if call.op == "map":
            if left.errno == errno.EISDIR and _foreign(right, errno.ENODEV):
                return "L7"
            if left.errno == errno.EBADF and _foreign(right, errno.EACCES):
                return "L7"
        if call.op == "mapping.read" and not call.fd_open:
            if left.errno == errno.EBADF and right.ok:
                return "L8"
        return None


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _foreign(outcome: Outcome, code: int) -> bool:
    return outcome.foreign is not None and outcome.errno == code


def _same_dir_stat(left: Outcome, right: Outcome) -> bool:
    a, b = left.value, right.value
    return (
        left.ok
        and right.ok
        and isinstance(a, Stat)
        and isinstance(b, Stat)
        and a.kind == b.kind == "dir"
        and a.nlink == b.nlink
    )


#: The deviations to pass to the harness for ``ModelFs`` (left) against ``OsDirFs`` (right).
LINUX_DEVIATIONS = LinuxDeviations()

if TYPE_CHECKING:  # mypy checks that the adapter satisfies the interface
    _os_dir_is_a_file_system: FileSystem = OsDirFs()
    _os_mapping_is_a_file_mapping: FileMapping = OsMapping(0)
