"""Deliberately broken file systems that the conformance harness must catch.

Each mutant is :class:`~spec.umfs_model.ModelFs` with one rule broken the way real file
systems get it wrong. Their ``check_invariants`` is switched off, so that catching
them is the differential comparison's work alone. ``tests/test_umfs_model.py`` runs
the harness with each one against the model and fails if any survives.
"""

from __future__ import annotations

from spec.umfs_api import O_APPEND, O_EXCL, Exists, FileMapping, FileSystem, Invalid, NotEmpty
from spec.umfs_model import File, ModelFs, Process, read_range


class _Mutant(ModelFs):
    def check_invariants(self) -> None:
        """Off: the comparison with the model has to find the bug."""


class AppendIgnored(_Mutant):
    """``O_APPEND`` is dropped at open: appends overwrite at the offset."""

    def open(self, pid: int, path: str, flags: int, mode: int = 0o644) -> int:
        return super().open(pid, path, flags & ~O_APPEND, mode)


class ExclIgnored(_Mutant):
    """``O_CREAT | O_EXCL`` opens an existing file instead of failing with ``EEXIST``."""

    def open(self, pid: int, path: str, flags: int, mode: int = 0o644) -> int:
        return super().open(pid, path, flags & ~O_EXCL, mode)


class UnlinkKeepsLink(_Mutant):
    """``unlink`` removes the name but does not decrement the link count."""

    def unlink(self, path: str) -> None:
        try:
            ino = self._resolve(self._parse(path), path)
        except Exception:  # noqa: BLE001 - let super() raise the right error
            ino = -1
        super().unlink(path)
        if ino in self.inodes:
            self.inodes[ino].nlink += 1


class PreadMovesOffset(_Mutant):
    """``pread`` advances the descriptor's offset as ``read`` does."""

    def pread(self, pid: int, fd: int, count: int, offset: int) -> bytes:
        data = super().pread(pid, fd, count, offset)
        self._descriptor(pid, fd).offset = offset + len(data)
        return data


class RmdirNonEmptyExists(_Mutant):
    """``rmdir`` of a non-empty directory says ``EEXIST`` (POSIX allows it; Linux does not)."""

    def rmdir(self, path: str) -> None:
        try:
            super().rmdir(path)
        except NotEmpty as error:
            raise Exists(path) from error


class HolesNotZero(_Mutant):
    """A write past the end fills the gap with 0xFF instead of zeros."""

    def _fill_gap(self, pid: int, fd: int, data: bytes, offset: int | None) -> None:
        description = self.processes.get(pid, Process()).fds.get(fd)
        if description is None or not description.writable or not data:
            return
        file = self.inodes[description.ino]
        position = description.offset if offset is None else offset
        if isinstance(file, File) and not description.append and position > len(file.data):
            file.data += b"\xff" * (position - len(file.data))

    def write(self, pid: int, fd: int, data: bytes) -> int:
        self._fill_gap(pid, fd, data, None)
        return super().write(pid, fd, data)

    def pwrite(self, pid: int, fd: int, data: bytes, offset: int) -> int:
        if offset >= 0:
            self._fill_gap(pid, fd, data, offset)
        return super().pwrite(pid, fd, data, offset)


class MapOutlivesClose(_Mutant):
    """A mapping keeps working after its descriptor is closed (Linux's mmap, not UMFS)."""

    def map(self, pid: int, fd: int) -> FileMapping:
        super().map(pid, fd)
        return _LooseMapping(self, self._descriptor(pid, fd).ino)


class _LooseMapping:
    def __init__(self, fs: ModelFs, ino: int) -> None:
        self._fs, self._ino = fs, ino

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise Invalid(f"mapping read({offset}, {length})")
        inode = self._fs.inodes.get(self._ino)
        return read_range(inode.data, offset, length) if isinstance(inode, File) else b""


#: Every mutant, by name: each must make the model-vs-mutant machine fail.
FS_MUTANTS: dict[str, type[FileSystem]] = {
    cls.__name__: cls
    for cls in (
        AppendIgnored,
        ExclIgnored,
        UnlinkKeepsLink,
        PreadMovesOffset,
        RmdirNonEmptyExists,
        HolesNotZero,
        MapOutlivesClose,
    )
}
