"""The libumfs interface: one Protocol that the model, UMFS and a real directory satisfy.

This module holds only the interface — the typed :class:`FileSystem` protocol, the
open flags, the :class:`Stat` record, the :class:`FileMapping` protocol and the errors —
so that ``impl/`` may import it without importing any of the model's logic.

Conventions every side follows:

- Paths are absolute, ``/``-separated, with no empty, ``.`` or ``..`` components (a
  trailing ``/`` is not allowed either); a name is at most :data:`NAME_MAX` bytes in
  UTF-8, a path at most :data:`PATH_MAX`.
- Processes are numbered by :meth:`FileSystem.spawn`; each has its own descriptor
  table of at most :data:`MAX_FDS` open descriptors (the paper's U-Info size).
- Descriptor numbers are the side's own business: harnesses pair them up and never
  compare them.
- Every failure raises an :class:`FsError` subclass carrying a POSIX errno.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

NAME_MAX = 255
PATH_MAX = 4096
MAX_FDS = 1024

# Open flags, with Linux's values.
O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_ACCMODE = 0o3
O_CREAT = 0o100
O_EXCL = 0o200
O_TRUNC = 0o1000
O_APPEND = 0o2000
#: Every flag the interface understands.
O_SUPPORTED = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

Kind = Literal["file", "dir"]


@dataclass(frozen=True)
class Stat:
    """What ``stat``/``fstat`` report: size in bytes, link count, kind."""

    size: int
    nlink: int
    kind: Kind


class FsError(OSError):
    """A file-system error with a POSIX errno (``.errno``) and the path or fd involved."""

    code: int = 0

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.code, _errno.errorcode.get(self.code, "?"), detail)
        self.detail = detail

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.code, "?")
        return f"[{name}] {self.detail}" if self.detail else f"[{name}]"


class NoEntry(FsError, FileNotFoundError):
    """ENOENT: a component of the path does not exist."""

    code = _errno.ENOENT


class Exists(FsError, FileExistsError):
    """EEXIST: the target already exists."""

    code = _errno.EEXIST


class BadDescriptor(FsError):
    """EBADF: not an open descriptor, or not open for this kind of access."""

    code = _errno.EBADF


class IsDirectory(FsError, IsADirectoryError):
    """EISDIR: a directory where a file is needed."""

    code = _errno.EISDIR


class NotDirectory(FsError, NotADirectoryError):
    """ENOTDIR: a file where a directory is needed."""

    code = _errno.ENOTDIR


class NotEmpty(FsError):
    """ENOTEMPTY: the directory has entries."""

    code = _errno.ENOTEMPTY


class NameTooLong(FsError):
    """ENAMETOOLONG: a name over NAME_MAX or a path over PATH_MAX bytes."""

    code = _errno.ENAMETOOLONG


class NoSpace(FsError):
    """ENOSPC: no free inode or page; the file system is unchanged."""

    code = _errno.ENOSPC


class Invalid(FsError):
    """EINVAL: a bad argument (flags, whence, negative offset or length, bad path)."""

    code = _errno.EINVAL


class TooManyOpen(FsError):
    """EMFILE: the process already has MAX_FDS descriptors open."""

    code = _errno.EMFILE


#: The error class for each errno the interface uses.
ERRORS: dict[int, type[FsError]] = {
    cls.code: cls
    for cls in (
        NoEntry,
        Exists,
        BadDescriptor,
        IsDirectory,
        NotDirectory,
        NotEmpty,
        NameTooLong,
        NoSpace,
        Invalid,
        TooManyOpen,
    )
}


def error_for(code: int, detail: str = "") -> FsError:
    """The :class:`FsError` for ``code`` (``ValueError`` for an errno outside the interface)."""
    try:
        return ERRORS[code](detail)
    except KeyError:
        raise ValueError(f"errno {code} is not part of the interface") from None


@runtime_checkable
class FileMapping(Protocol):
    """A read-only, zero-copy view of an open file (the paper's first read method).

    ``read`` shows the file's *current* contents: ``[offset, min(offset + length,
    size))``, empty past the end. The view is valid while its descriptor is open; after
    ``close`` it raises :class:`BadDescriptor`.
    """

    def read(self, offset: int, length: int) -> bytes:
        """The bytes of the file at ``[offset, offset + length)``, cut at its size."""
        ...


@runtime_checkable
class FileSystem(Protocol):
    """The libumfs API. Every method raises an :class:`FsError` on failure."""

    def spawn(self) -> int:
        """Start a process with an empty descriptor table; return its pid."""
        ...

    def exit(self, pid: int) -> None:
        """End a process, closing every descriptor it has open."""
        ...

    def open(self, pid: int, path: str, flags: int, mode: int = 0o644) -> int:
        """Open (or with ``O_CREAT`` create) ``path``; return a new descriptor."""
        ...

    def close(self, pid: int, fd: int) -> None:
        """Close ``fd``; the file's space is reclaimed if it has no links left."""
        ...

    def read(self, pid: int, fd: int, count: int) -> bytes:
        """Read up to ``count`` bytes at the descriptor's offset and advance it."""
        ...

    def pread(self, pid: int, fd: int, count: int, offset: int) -> bytes:
        """Read up to ``count`` bytes at ``offset``; the descriptor's offset is unchanged."""
        ...

    def write(self, pid: int, fd: int, data: bytes) -> int:
        """Write ``data`` at the offset (at the end with ``O_APPEND``); return its length."""
        ...

    def pwrite(self, pid: int, fd: int, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset``; the descriptor's offset is unchanged."""
        ...

    def lseek(self, pid: int, fd: int, offset: int, whence: int) -> int:
        """Move the descriptor's offset; return the new offset."""
        ...

    def ftruncate(self, pid: int, fd: int, length: int) -> None:
        """Cut or zero-extend the file to ``length`` bytes."""
        ...

    def fsync(self, pid: int, fd: int) -> None:
        """Make the file durable (UMFS calls are durable when they return)."""
        ...

    def fstat(self, pid: int, fd: int) -> Stat:
        """The attributes of the open file."""
        ...

    def map(self, pid: int, fd: int) -> FileMapping:
        """A read-only zero-copy mapping of the open file."""
        ...

    def stat(self, path: str) -> Stat:
        """The attributes of ``path``."""
        ...

    def unlink(self, path: str) -> None:
        """Remove the name ``path`` of a file."""
        ...

    def link(self, existing: str, new: str) -> None:
        """Give the file ``existing`` the additional name ``new``."""
        ...

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` to ``new``, replacing a file or an empty directory there."""
        ...

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create an empty directory."""
        ...

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        ...

    def listdir(self, path: str) -> list[str]:
        """The names in directory ``path``, sorted."""
        ...
