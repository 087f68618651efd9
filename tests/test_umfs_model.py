"""The UMFS model (spec/umfs_model.py), checked against Linux through OsDirFs.

- Tricky cases, each asserting exact errnos, run on *both* the model and a real
  directory (``fs`` fixture): the model must say what Linux says.
- Model-only rules (descriptor numbering, EMFILE, ENOSPC, pids, invariants).
- Every documented deviation L1–L8, shown to be real (the two sides do differ).
- The differential stateful test, model against Linux, with exactly those deviations.
- The harness catches every mutant, reports foreign exceptions, and prints a script
  that replays the failure.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import spec.umfs_model as umfs_model
from memoracle.umfs.conformance import (
    ConformanceError,
    Deviations,
    data,
    make_fs_machine,
    protocol_snapshot,
    replay,
)
from memoracle.umfs.model_mutants import FS_MUTANTS
from memoracle.umfs.os_fs import LINUX_DEVIATIONS, LinuxDeviations, OsDirFs, OutsideInterface
from protocol_tours import fs_tour
from spec.umfs_api import (
    MAX_FDS,
    O_ACCMODE,
    O_APPEND,
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    PATH_MAX,
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
    FileSystem,
    FsError,
    Stat,
)
from spec.umfs_model import ModelFs, Node
from spec.umfs_paths import path_problem

CREATE = O_RDWR | O_CREAT
LONG = "n" * 256


def fails(code: int, call: Callable[..., Any], *args: Any) -> None:
    """``call(*args)`` raises an FsError with exactly ``code``."""
    with pytest.raises(FsError) as caught:
        call(*args)
    assert caught.value.errno == code, f"{errno.errorcode[caught.value.errno]} != {errno.errorcode[code]}"


@pytest.fixture(params=["model", "linux"])
def fs(request: pytest.FixtureRequest) -> Iterator[FileSystem]:
    """The model, then a real directory: each tricky case must hold on both."""
    if request.param == "model":
        model = ModelFs()
        yield model
        model.check_invariants()
    else:
        with OsDirFs() as real:
            yield real


def make_file(fs: FileSystem, pid: int, path: str, contents: bytes = b"") -> None:
    fd = fs.open(pid, path, CREATE | O_TRUNC)
    fs.write(pid, fd, contents)
    fs.close(pid, fd)


# ---------------------------------------------------------------- open


def test_open_create_and_errors(fs: FileSystem) -> None:
    p = fs.spawn()
    fails(errno.ENOENT, fs.open, p, "/a", O_RDONLY)
    fd = fs.open(p, "/a", CREATE)
    assert fs.fstat(p, fd) == Stat(0, 1, "file")
    fails(errno.EEXIST, fs.open, p, "/a", CREATE | O_EXCL)
    assert fs.open(p, "/a", O_RDONLY | O_EXCL) >= 0  # O_EXCL without O_CREAT: ignored
    fails(errno.ENOTDIR, fs.open, p, "/a/x", O_RDONLY)
    fails(errno.ENOTDIR, fs.open, p, "/a/x", CREATE)
    fails(errno.ENOENT, fs.open, p, "/m/x", CREATE)


def test_open_directory_rules(fs: FileSystem) -> None:
    p = fs.spawn()
    fs.mkdir("/d")
    assert fs.fstat(p, fs.open(p, "/d", O_RDONLY)).kind == "dir"
    assert fs.fstat(p, fs.open(p, "/d", O_RDONLY | O_APPEND)).kind == "dir"
    for flags in (O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_RDONLY | O_CREAT, CREATE):
        fails(errno.EISDIR, fs.open, p, "/d", flags)
    fails(errno.EEXIST, fs.open, p, "/d", O_RDONLY | O_CREAT | O_EXCL)
    fails(errno.EISDIR, fs.open, p, "/", O_CREAT)
    fails(errno.EEXIST, fs.open, p, "/", O_CREAT | O_EXCL)
    fails(errno.EISDIR, fs.open, p, "/", O_WRONLY)


def test_read_only_trunc_still_truncates(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"hello")
    fs.open(p, "/a", O_RDONLY | O_TRUNC)
    assert fs.stat("/a").size == 0


# ---------------------------------------------------------------- read and write


def test_access_modes(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"abc")
    w = fs.open(p, "/a", O_WRONLY)
    r = fs.open(p, "/a", O_RDONLY)
    fails(errno.EBADF, fs.read, p, w, 1)
    fails(errno.EBADF, fs.pread, p, w, 1, 0)
    fails(errno.EBADF, fs.write, p, r, b"x")
    fails(errno.EBADF, fs.pwrite, p, r, b"x", 0)
    fails(errno.EINVAL, fs.ftruncate, p, r, 0)  # Linux: EINVAL, not EBADF
    fs.mkdir("/d")
    d = fs.open(p, "/d", O_RDONLY)
    fails(errno.EISDIR, fs.read, p, d, 0)
    fails(errno.EISDIR, fs.pread, p, d, 1, 0)
    fails(errno.EBADF, fs.write, p, d, b"x")
    fails(errno.EINVAL, fs.ftruncate, p, d, 0)
    fs.fsync(p, d)


def test_negative_arguments_come_before_the_descriptor(fs: FileSystem) -> None:
    p = fs.spawn()
    fails(errno.EINVAL, fs.read, p, 99, -1)
    fails(errno.EINVAL, fs.pread, p, 99, 1, -1)
    fails(errno.EINVAL, fs.pwrite, p, 99, b"x", -1)
    fails(errno.EINVAL, fs.ftruncate, p, 99, -1)
    fails(errno.EBADF, fs.lseek, p, 99, 0, 7)  # lseek: the descriptor first
    fails(errno.EBADF, fs.read, p, 99, 1)
    fails(errno.EBADF, fs.fsync, p, 99)
    fails(errno.EBADF, fs.close, p, 99)


def test_holes_read_as_zeros_across_pages(fs: FileSystem) -> None:
    p = fs.spawn()
    fd = fs.open(p, "/a", CREATE)
    assert fs.pwrite(p, fd, b"xy", 8191) == 2
    assert fs.fstat(p, fd).size == 8193
    assert fs.pread(p, fd, 8193, 0) == bytes(8191) + b"xy"
    assert fs.lseek(p, fd, 0, SEEK_CUR) == 0  # pwrite and pread leave the offset
    assert fs.read(p, fd, 5000) == bytes(5000)
    assert fs.read(p, fd, 5000) == bytes(3191) + b"xy"
    assert fs.read(p, fd, 10) == b""


def test_append_and_empty_writes(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"0123456789")
    fd = fs.open(p, "/a", O_RDWR | O_APPEND)
    assert fs.write(p, fd, b"") == 0
    assert fs.lseek(p, fd, 0, SEEK_CUR) == 0  # an empty append does not move the offset
    assert fs.write(p, fd, b"AB") == 2
    assert fs.lseek(p, fd, 0, SEEK_CUR) == 12
    fs.lseek(p, fd, 0, SEEK_SET)
    fs.write(p, fd, b"C")
    assert fs.pread(p, fd, 100, 0) == b"0123456789ABC"
    other = fs.open(p, "/a", O_RDWR)
    assert fs.pwrite(p, other, b"", 100) == 0  # an empty write past the end changes nothing
    assert fs.stat("/a").size == 13


def test_lseek(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"abc")
    fd = fs.open(p, "/a", O_RDWR)
    assert fs.lseek(p, fd, 5000, SEEK_SET) == 5000
    assert fs.lseek(p, fd, -1, SEEK_END) == 2
    assert fs.lseek(p, fd, 1, SEEK_CUR) == 3
    fails(errno.EINVAL, fs.lseek, p, fd, -4, SEEK_END)
    fails(errno.EINVAL, fs.lseek, p, fd, -1, SEEK_SET)
    fails(errno.EINVAL, fs.lseek, p, fd, 0, 7)
    assert fs.lseek(p, fd, 0, SEEK_CUR) == 3  # failed seeks leave it
    fs.mkdir("/d")
    d = fs.open(p, "/d", O_RDONLY)
    assert fs.lseek(p, d, 3, SEEK_SET) == 3


def test_ftruncate_cuts_and_zero_extends(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"abcdef")
    fd = fs.open(p, "/a", O_RDWR)
    fs.lseek(p, fd, 4, SEEK_SET)
    fs.ftruncate(p, fd, 2)
    fs.ftruncate(p, fd, 4097)
    assert fs.pread(p, fd, 5000, 0) == b"ab" + bytes(4095)
    assert fs.lseek(p, fd, 0, SEEK_CUR) == 4


# ---------------------------------------------------------------- names


def test_unlink_rmdir_mkdir(fs: FileSystem) -> None:
    p = fs.spawn()
    fs.mkdir("/d")
    make_file(fs, p, "/d/a")
    fails(errno.EISDIR, fs.unlink, "/d")
    fails(errno.EISDIR, fs.unlink, "/")
    fails(errno.ENOTDIR, fs.unlink, "/d/a/x")
    fails(errno.ENOTDIR, fs.rmdir, "/d/a")
    fails(errno.ENOTEMPTY, fs.rmdir, "/d")
    fails(errno.EINVAL, fs.rmdir, "/")
    fails(errno.EEXIST, fs.mkdir, "/d")
    fails(errno.EEXIST, fs.mkdir, "/")
    fails(errno.EEXIST, fs.mkdir, "/d/a")
    fails(errno.ENOTDIR, fs.mkdir, "/d/a/x")
    fails(errno.ENOENT, fs.mkdir, "/m/x")
    fs.unlink("/d/a")
    fails(errno.ENOENT, fs.unlink, "/d/a")
    fs.rmdir("/d")
    fails(errno.ENOENT, fs.rmdir, "/d")


def test_directory_link_counts(fs: FileSystem) -> None:
    fs.mkdir("/d")
    fs.mkdir("/d/e")
    fs.mkdir("/d/f")
    assert [fs.stat(x).nlink for x in ("/", "/d", "/d/e")] == [3, 4, 2]
    fs.rename("/d/e", "/e")
    assert [fs.stat(x).nlink for x in ("/", "/d", "/e")] == [4, 3, 2]
    assert fs.listdir("/") == ["d", "e"] and fs.listdir("/d") == ["f"]
    make_file(fs, fs.spawn(), "/d/f/x")
    fails(errno.ENOTDIR, fs.listdir, "/d/f/x")
    fails(errno.ENOENT, fs.listdir, "/d/f/y")


def test_link(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"x")
    fs.mkdir("/d")
    fs.link("/a", "/d/b")
    assert fs.stat("/a").nlink == fs.stat("/d/b").nlink == 2
    fails(errno.EEXIST, fs.link, "/a", "/d/b")
    fails(errno.EEXIST, fs.link, "/a", "/")
    fails(errno.ENOENT, fs.link, "/missing", "/d")  # the existing path's errors win
    fails(errno.ENOTDIR, fs.link, "/a", "/a/x")
    fails(errno.ENAMETOOLONG, fs.link, "/a", "/" + LONG)
    fd = fs.open(p, "/d/b", O_WRONLY | O_APPEND)
    fs.write(p, fd, b"y")
    assert fs.pread(p, fs.open(p, "/a", O_RDONLY), 9, 0) == b"xy"  # one inode, two names


def test_rename_replacing(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"A")
    make_file(fs, p, "/b", b"B")
    held = fs.open(p, "/b", O_RDONLY)
    fs.rename("/a", "/b")
    assert fs.listdir("/") == ["b"]
    assert fs.pread(p, fs.open(p, "/b", O_RDONLY), 9, 0) == b"A"
    assert fs.fstat(p, held).nlink == 0 and fs.pread(p, held, 9, 0) == b"B"
    fs.mkdir("/d")
    fs.mkdir("/e")
    fs.rename("/d", "/e")  # onto an empty directory
    assert fs.listdir("/") == ["b", "e"] and fs.stat("/").nlink == 3


def test_rename_errors(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a")
    fs.mkdir("/d")
    fs.mkdir("/d/e")
    make_file(fs, p, "/d/e/f")
    fs.mkdir("/x")
    fails(errno.EISDIR, fs.rename, "/a", "/x")
    fails(errno.ENOTDIR, fs.rename, "/x", "/a")
    fails(errno.ENOTEMPTY, fs.rename, "/x", "/d")
    fails(errno.EINVAL, fs.rename, "/d", "/d/e/g")  # into its own subtree
    fails(errno.EINVAL, fs.rename, "/d", "/d/e/f")  # ... even onto a file there
    fails(errno.ENOTEMPTY, fs.rename, "/d/e/f", "/d")  # onto an ancestor
    fails(errno.ENOTEMPTY, fs.rename, "/d/e/f", "/d/e")
    fails(errno.ENOTDIR, fs.rename, "/d", "/d/e/f/g")  # the new parent is a file
    fails(errno.ENOENT, fs.rename, "/missing", "/x")
    fails(errno.ENOTDIR, fs.rename, "/missing", "/a/x")  # both parents before the lookup
    fails(errno.ENAMETOOLONG, fs.rename, "/a", "/" + LONG)
    fails(errno.ENAMETOOLONG, fs.rename, "/" + LONG, "/a")


def test_rename_same_inode_is_a_no_op(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a")
    fs.link("/a", "/b")
    fs.rename("/a", "/b")
    assert fs.listdir("/") == ["a", "b"] and fs.stat("/a").nlink == 2
    fs.mkdir("/d")
    fs.rename("/d", "/d")
    fs.rename("/a", "/a")
    assert fs.listdir("/") == ["a", "b", "d"]


def test_unlinked_but_open(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"keep")
    fd = fs.open(p, "/a", O_RDWR)
    fs.unlink("/a")
    assert fs.fstat(p, fd) == Stat(4, 0, "file")
    fs.pwrite(p, fd, b"!", 4)
    assert fs.pread(p, fd, 9, 0) == b"keep!"
    fails(errno.ENOENT, fs.stat, "/a")
    fs.mkdir("/d")
    d = fs.open(p, "/d", O_RDONLY)
    fs.rmdir("/d")
    assert fs.fstat(p, d).nlink == 0


def test_name_and_path_lengths(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a")
    fs.mkdir("/d")
    fails(errno.ENAMETOOLONG, fs.stat, "/" + LONG)
    fails(errno.ENAMETOOLONG, fs.stat, "/d/" + LONG)
    fails(errno.ENAMETOOLONG, fs.stat, "/" + LONG + "/x")
    fails(errno.ENOENT, fs.stat, "/m/" + LONG)  # long names are caught at lookup
    fails(errno.ENOTDIR, fs.stat, "/a/" + LONG)
    fails(errno.ENAMETOOLONG, fs.open, p, "/d/" + LONG, CREATE)
    fails(errno.ENAMETOOLONG, fs.mkdir, "/" + LONG)
    fs.mkdir("/" + "n" * 255)
    exact = "/d" + "/e" * ((PATH_MAX - 2) // 2)
    assert len(exact) == PATH_MAX
    fails(errno.ENOENT, fs.stat, exact)
    fails(errno.ENAMETOOLONG, fs.stat, exact + "e")


@pytest.mark.parametrize("path", ["", "a", "/d/", "//a", "/d//a", "/d/./a", "/d/../a", "/.", "/a\0b"])
def test_malformed_paths(fs: FileSystem, path: str) -> None:
    fs.mkdir("/d")
    fails(errno.EINVAL, fs.stat, path)
    fails(errno.EINVAL, fs.mkdir, path)
    fails(errno.EINVAL, fs.rename, "/d", path)


# ---------------------------------------------------------------- map, processes


def test_map_shows_current_contents(fs: FileSystem) -> None:
    p = fs.spawn()
    make_file(fs, p, "/a", b"x" * 5000)
    fd = fs.open(p, "/a", O_RDWR)
    view = fs.map(p, fd)
    assert view.read(4095, 3) == b"xxx"
    fs.pwrite(p, fd, b"abc", 4095)
    assert view.read(4094, 10) == b"xabcxxxxxx"
    fs.ftruncate(p, fd, 4096)
    assert view.read(4094, 10) == b"xa"
    fs.ftruncate(p, fd, 9000)
    assert view.read(8990, 20) == bytes(10)
    assert view.read(9000, 5) == b""
    fails(errno.EINVAL, view.read, -1, 1)


def test_processes_have_their_own_tables(fs: FileSystem) -> None:
    p, q = fs.spawn(), fs.spawn()
    make_file(fs, p, "/a", b"abc")
    fd = fs.open(p, "/a", O_RDONLY)
    other = fs.open(q, "/a", O_RDONLY)
    if fd != other:
        fails(errno.EBADF, fs.read, q, fd, 1)
    assert fs.read(p, fd, 1) == b"a" and fs.read(q, other, 2) == b"ab"  # own offsets
    fs.exit(p)
    fails(errno.EINVAL, fs.read, p, fd, 1)  # p is gone
    assert fs.read(q, other, 5) == b"c"


# ---------------------------------------------------------------- model-only rules


def test_keeps_the_protocol_on_a_tour(fs: FileSystem) -> None:
    fs_tour(fs)


def test_lowest_free_descriptor_and_emfile() -> None:
    fs = ModelFs()
    p = fs.spawn()
    fds = [fs.open(p, "/", O_RDONLY) for _ in range(MAX_FDS)]
    assert fds == list(range(MAX_FDS))
    fails(errno.EMFILE, fs.open, p, "/", O_RDONLY)
    fails(errno.EMFILE, fs.open, p, "/new", CREATE)
    assert fs.listdir("/") == []  # EMFILE comes before the file is created
    fs.close(p, 7)
    assert fs.open(p, "/new", CREATE) == 7
    q = fs.spawn()
    assert fs.open(q, "/", O_RDONLY) == 0
    fs.check_invariants()


def test_bad_flags_pids_and_mapping_arguments() -> None:
    fs = ModelFs()
    p = fs.spawn()
    fails(errno.EINVAL, fs.open, p, "/", O_ACCMODE)
    fails(errno.EINVAL, fs.open, p, "/", O_RDONLY | 0o40000)  # O_DIRECTORY: not in the interface
    fails(errno.EINVAL, fs.open, p, "/missing", O_ACCMODE)  # flags before the path
    fs.exit(p)
    fails(errno.EINVAL, fs.exit, p)
    fails(errno.EINVAL, fs.open, p, "/", O_RDONLY)
    assert fs.spawn() == p + 1  # pids are not reused
    fails(errno.EINVAL, fs.lseek, 99, 0, 0, SEEK_SET)


def test_map_is_invalid_after_close_and_needs_read_access() -> None:
    fs = ModelFs()
    p = fs.spawn()
    make_file(fs, p, "/a", b"abc")
    fd = fs.open(p, "/a", O_RDONLY)
    view = fs.map(p, fd)
    fs.close(p, fd)
    fails(errno.EBADF, view.read, 0, 1)
    assert fs.open(p, "/a", O_RDONLY) == fd  # the same number again: still detached
    fails(errno.EBADF, view.read, 0, 1)
    fails(errno.EBADF, fs.map, p, fs.open(p, "/a", O_WRONLY))
    fs.mkdir("/d")
    fails(errno.EISDIR, fs.map, p, fs.open(p, "/d", O_RDONLY))


def test_space_is_reclaimed_at_the_last_close_or_exit() -> None:
    fs = ModelFs()
    p, q = fs.spawn(), fs.spawn()
    make_file(fs, p, "/a", b"x" * 100)
    fd_p = fs.open(p, "/a", O_RDONLY)
    fs.open(q, "/a", O_RDONLY)
    fs.unlink("/a")
    assert len(fs.inodes) == 2 and fs._bytes_used() == 100
    fs.close(p, fd_p)
    assert len(fs.inodes) == 2
    fs.exit(q)
    assert len(fs.inodes) == 1 and fs._bytes_used() == 0
    fs.check_invariants()


def test_capacity_enospc_changes_nothing() -> None:
    fs = ModelFs(max_inodes=3, max_bytes=5000)
    p = fs.spawn()
    fd = fs.open(p, "/a", CREATE)
    fs.mkdir("/d")
    fails(errno.ENOSPC, fs.open, p, "/b", CREATE)
    fails(errno.ENOSPC, fs.mkdir, "/e")
    fs.write(p, fd, b"x" * 4000)
    fails(errno.ENOSPC, fs.write, p, fd, b"y" * 1001)
    fails(errno.ENOSPC, fs.pwrite, p, fd, b"y", 5000)
    fails(errno.ENOSPC, fs.ftruncate, p, fd, 5001)
    assert fs.fstat(p, fd).size == 4000 and fs.lseek(p, fd, 0, SEEK_CUR) == 4000
    fs.pwrite(p, fd, b"y" * 1000, 4000)  # exactly full
    fs.ftruncate(p, fd, 10)
    fs.pwrite(p, fd, b"z" * 4990, 10)
    fs.rmdir("/d")
    fs.open(p, "/b", CREATE)
    fs.check_invariants()


def test_observe_and_protocol_walk_agree() -> None:
    fs = ModelFs()
    p = fs.spawn()
    fs.mkdir("/d")
    make_file(fs, p, "/d/a", bytes(data(4097, 1)))
    fs.link("/d/a", "/b")
    snapshot = fs.observe()
    assert snapshot == {
        "/": Node("dir", 3, ("b", "d")),
        "/b": Node("file", 2, bytes(data(4097, 1))),
        "/d": Node("dir", 2, ("a",)),
        "/d/a": Node("file", 2, bytes(data(4097, 1))),
    }
    assert protocol_snapshot(fs, fs.spawn()) == snapshot
    with OsDirFs() as real:
        q = real.spawn()
        real.mkdir("/d")
        make_file(real, q, "/d/a", bytes(data(4097, 1)))
        real.link("/d/a", "/b")
        assert real.observe() == snapshot == protocol_snapshot(real, q)


def test_check_invariants_notices_a_corrupt_state() -> None:
    fs = ModelFs()
    p = fs.spawn()
    make_file(fs, p, "/a")
    fs.check_invariants()
    fs.inodes[2].nlink = 2
    with pytest.raises(AssertionError):
        fs.check_invariants()


@pytest.mark.parametrize(
    ("path", "code"),
    [("/", 0), ("/a/b", 0), ("", errno.EINVAL), ("/a/", errno.EINVAL), ("/..", errno.EINVAL),
     ("/\udcff", errno.EINVAL), ("/" + "x" * PATH_MAX, errno.ENAMETOOLONG)],
)
def test_path_problem(path: str, code: int) -> None:
    assert path_problem(path) == code


# ---------------------------------------------------------------- the deviations are real


def test_deviation_ids_match_the_model_docstring() -> None:
    documented = set(re.findall(r"\*\*(L\d+) ", umfs_model.__doc__ or ""))
    assert documented == set(LinuxDeviations.IDS) == {f"L{i}" for i in range(1, 9)}


@pytest.fixture
def both() -> Iterator[tuple[ModelFs, OsDirFs, int, int]]:
    model = ModelFs()
    with OsDirFs() as real:
        yield model, real, model.spawn(), real.spawn()


def outside(code: int, call: Callable[..., Any], *args: Any) -> None:
    with pytest.raises(OutsideInterface) as caught:
        call(*args)
    assert caught.value.errno == code


def test_l1_access_mode_3(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, p, q = both
    fails(errno.EINVAL, model.open, p, "/a", O_ACCMODE | O_CREAT)
    real.open(q, "/a", O_ACCMODE | O_CREAT)
    assert real.listdir("/") == ["a"]


def test_l2_link_of_a_directory(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, _, _ = both
    for fs in (model, real):
        fs.mkdir("/d")
    fails(errno.EISDIR, model.link, "/d", "/e")
    outside(errno.EPERM, real.link, "/d", "/e")
    fails(errno.EISDIR, model.link, "/", "/e")
    outside(errno.EPERM, real.link, "/", "/e")


def test_l3_rename_of_the_root(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, p, q = both
    model.mkdir("/d")
    real.mkdir("/d")
    for old, new in (("/", "/x"), ("/d", "/")):
        fails(errno.EINVAL, model.rename, old, new)
        outside(errno.EBUSY, real.rename, old, new)


def test_l4_pwrite_on_an_append_descriptor(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, p, q = both
    for fs, pid in ((model, p), (real, q)):
        fd = fs.open(pid, "/a", CREATE | O_APPEND)
        fs.write(pid, fd, b"abc")
        fs.pwrite(pid, fd, b"Z", 0)
    assert model.stat("/a").size == 3 and real.stat("/a").size == 4


def test_l5_directory_sizes(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, _, _ = both
    assert model.stat("/").size == 0
    assert real.stat("/").size != 0  # ext4: 4096; tmpfs would count entries
    assert model.stat("/").nlink == real.stat("/").nlink == 2


def _fs_type(path: str) -> str:
    """The type of the file system ``path`` is on (``/proc/self/mountinfo``)."""
    target, best, kind = os.path.realpath(path), "", "unknown"
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[fields.index("-") + 1]
    return kind


def _seek_end_of_a_directory(parent: str, monkeypatch: pytest.MonkeyPatch) -> int | str:
    """What OsDirFs answers to ``lseek(dir, 0, SEEK_END)`` in a directory under
    ``parent``: the offset, or the errno's name."""
    monkeypatch.setattr(tempfile, "tempdir", parent)
    with OsDirFs() as real:
        q = real.spawn()
        fd = real.open(q, "/", O_RDONLY)
        try:
            return real.lseek(q, fd, 0, SEEK_END)
        except FsError as error:
            return errno.errorcode[error.errno]


#: Where L6 is looked for: the temporary directory, /var/tmp, the repository's checkout
#: (which is on a disk file system wherever the project is cloned to disk).
L6_DISK_CANDIDATES = (tempfile.gettempdir(), "/var/tmp", str(Path(__file__).resolve().parent.parent))


def test_l6_seek_end_on_a_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model says EINVAL, as tmpfs does; a disk file system answers an offset (ext4 a
    hash cookie, 2^63 - 1 with 64-bit hashes, or the size without dir_index). The
    deviation is shown in the first candidate directory that answers an offset; and
    where /dev/shm is a tmpfs, that Linux agrees with the model there."""
    model = ModelFs()
    p = model.spawn()
    fails(errno.EINVAL, model.lseek, p, model.open(p, "/", O_RDONLY), 0, SEEK_END)
    answers: dict[str, tuple[str, int | str]] = {}
    for parent in L6_DISK_CANDIDATES:
        if os.path.isdir(parent) and os.access(parent, os.W_OK):
            answers[parent] = (_fs_type(parent), _seek_end_of_a_directory(parent, monkeypatch))
            if isinstance(answers[parent][1], int):
                break
    offset = next((found for _, found in answers.values() if isinstance(found, int)), "none")
    assert isinstance(offset, int) and offset >= 0, f"no candidate directory shows L6: {answers}"
    if _fs_type("/dev/shm") == "tmpfs":
        assert _seek_end_of_a_directory("/dev/shm", monkeypatch) == "EINVAL"


def test_l7_map_of_a_directory_or_write_only(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, p, q = both
    fails(errno.EISDIR, model.map, p, model.open(p, "/", O_RDONLY))
    outside(errno.ENODEV, real.map, q, real.open(q, "/", O_RDONLY))
    for contents in (b"", b"abc"):
        fails(errno.EBADF, model.map, p, model.open(p, "/a", O_WRONLY | O_CREAT | O_TRUNC))
        fd = real.open(q, "/a", O_WRONLY | O_CREAT | O_TRUNC)
        real.write(q, fd, contents)
        outside(errno.EACCES, real.map, q, fd)
        model.write(p, model.open(p, "/a", O_WRONLY), contents)


def test_l8_mapping_after_close(both: tuple[ModelFs, OsDirFs, int, int]) -> None:
    model, real, p, q = both
    views = []
    for fs, pid in ((model, p), (real, q)):
        fd = fs.open(pid, "/a", CREATE)
        fs.write(pid, fd, b"abc")
        views.append(fs.map(pid, fd))
        fs.close(pid, fd)
    fails(errno.EBADF, views[0].read, 0, 3)
    assert views[1].read(0, 3) == b"abc"


# ---------------------------------------------------------------- the differential test


class TestModelAgainstLinux(  # type: ignore[misc, valid-type]
    make_fs_machine(ModelFs, OsDirFs, deviations=LINUX_DEVIATIONS).TestCase  # type: ignore[attr-defined]
):
    settings = settings(max_examples=max(200, settings.default.max_examples))


def test_a_script_replays() -> None:
    steps = [
        ("spawn", "p1"),
        ("mkdir", "/d"),
        ("open", "p1", "/d/a", O_RDWR | O_CREAT, "f2"),
        ("pwrite", "f2", data(4097, 3), 4095),
        ("map", "f2", "m3"),
        ("link", "/d/a", "/b"),
        ("rename", "/d", "/"),  # L3, tolerated
        ("unlink", "/d/a"),
        ("mapping.read", "m3", 4094, 100),
        ("close", "f2"),
        ("mapping.read", "m3", 0, 1),  # L8, tolerated
        ("pwrite", "f2", data(1), 0),  # a closed descriptor: EBADF on both
    ]
    session = replay(ModelFs, OsDirFs, steps, deviations=LINUX_DEVIATIONS)
    assert any("L3" in note for note in session.notes) and any("L8" in n for n in session.notes)
    with pytest.raises(ConformanceError, match="rename disagrees"):
        replay(ModelFs, OsDirFs, steps)  # without the deviations, L3 is a failure


# ---------------------------------------------------------------- the harness can fail


MUTANT_SETTINGS = settings(
    phases=[Phase.generate], max_examples=max(1000, settings.default.max_examples), deadline=None, database=None
)


@pytest.mark.parametrize("name", sorted(FS_MUTANTS))
def test_harness_catches_mutant(name: str) -> None:
    machine = make_fs_machine(ModelFs, FS_MUTANTS[name])
    with pytest.raises(ConformanceError) as caught:
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)
    message = str(caught.value)
    assert "--- reproduce" in message and "steps = [" in message
    script = message.split("--- reproduce", 1)[1].split("\n", 1)[1]
    assert f"from memoracle.umfs.model_mutants import {name}" in script
    with pytest.raises(ConformanceError):
        exec(script, {})  # the printed script reproduces the failure


class _Opaque:
    """Delegates the protocol to a model, hiding ``observe`` and ``check_invariants``."""

    def __init__(self, inner: FileSystem) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("observe", "check_invariants", "cleanup"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class _StatRaisesValueError(ModelFs):
    def stat(self, path: str) -> Stat:
        if path == "/d":
            raise ValueError("boom")
        return super().stat(path)


def test_harness_reports_an_exception_that_is_not_an_fs_error() -> None:
    with pytest.raises(ConformanceError) as caught:
        replay(ModelFs, _StatRaisesValueError, [("mkdir", "/d"), ("stat", "/d")])
    message = str(caught.value)
    assert "stat disagrees at step 2: ('stat', '/d')" in message
    assert "ValueError: boom (not an FsError)" in message and "returned Stat(" in message


def test_harness_walks_a_side_without_observe() -> None:
    steps = [("spawn", "p1"), ("open", "p1", "/a", CREATE, "f2"), ("write", "f2", data(4097))]
    replay(ModelFs, lambda: _Opaque(ModelFs()), steps)
    broken = FS_MUTANTS["HolesNotZero"]
    with pytest.raises(ConformanceError, match="trees differ"):
        replay(
            ModelFs,
            lambda: _Opaque(broken()),
            [*steps, ("lseek", "f2", 5000, SEEK_END), ("write", "f2", data(1))],
        )


def test_the_default_deviations_tolerate_nothing() -> None:
    assert Deviations().skip(object()) is None  # type: ignore[arg-type]
    machine = make_fs_machine(ModelFs, lambda: _Opaque(ModelFs()))
    run_state_machine_as_test(
        machine, settings=settings(max_examples=max(20, settings.default.max_examples), deadline=None, database=None)
    )
