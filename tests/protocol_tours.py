"""Tours of the Protocols: every method called once, each answer checked.

``isinstance(x, SomeProtocol)`` only asks whether methods of those names exist (what
mypy already checks, statically and better). A tour instead drives one system through
every method of its Protocol in a small scenario and asserts the exact answers and the
guarantees the Protocol's docstrings give (merge safety, COW, replies in order, durable
names and sizes, ...), so it fails when a side misbehaves. :func:`touring` records the
methods a tour called, and each tour ends by checking that it called every method of
the Protocol: a method added to a Protocol fails the tours until they exercise it.

One tour per Protocol, used on every side that claims it: ``ksm_tour`` (the model and
``impl.ksm``), ``fs_tour`` (the model, a real directory, UMFS), ``kv_tour`` (the model
server and Sphinx).
"""

from __future__ import annotations

import errno
from typing import Any, TypeVar

import pytest

from spec.ksm_api import (
    MMAP_BASE,
    PAGE_SIZE,
    GuestKind,
    KnobError,
    KsmSystem,
    MappingError,
    NotRunning,
    RunMode,
    SegmentationFault,
)
from spec.kv_api import KvServer
from spec.umfs_api import O_APPEND, O_CREAT, O_EXCL, O_RDWR, SEEK_END, SEEK_SET, FileMapping, FileSystem, FsError

T = TypeVar("T")


class _Recorder:
    """Delegates to ``inner`` and records the names of the attributes asked for."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.used: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.used.add(name)
        return getattr(self._inner, name)


def protocol_methods(protocol: type) -> set[str]:
    """The public methods a Protocol declares."""
    return {name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")}


def touring(system: T) -> tuple[T, _Recorder]:
    """``system`` behind a recorder (typed as ``system``), and the recorder."""
    recorder = _Recorder(system)
    return recorder, recorder  # type: ignore[return-value]


def assert_called_every_method(recorder: _Recorder, protocol: type) -> None:
    missing = protocol_methods(protocol) - recorder.used
    assert not missing, f"the tour never called {sorted(missing)} of {protocol.__name__}"


# ---------------------------------------------------------------------------- KSM


def ksm_tour(system: KsmSystem) -> None:
    """Three copies of one page merge into one KSM page (two sharing it) on the second
    quiet scan, a lone page does not; a store to a merged page gets a private copy and
    changes no other view; protections, knobs, host cache and unmapping behave as
    :class:`~spec.ksm_api.KsmSystem` says."""
    s, recorder = touring(system)
    same, lone, other = b"S" * PAGE_SIZE, b"L" * PAGE_SIZE, b"O" * PAGE_SIZE
    a, b = s.add_process(), s.add_process()
    assert (a, b) == (1, 2)
    pa = s.mmap(a, 3)
    pb = s.mmap(b, 2, writable=True, kinds=[GuestKind.ANONYMOUS, GuestKind.PAGE_CACHE])
    assert pa == pb == MMAP_BASE
    s.madvise(a, pa, 3, "MERGEABLE")
    s.set_process_merge(b, True)
    s.set_guest_kind(b, pb + PAGE_SIZE, 1, GuestKind.ANONYMOUS)
    for pid, addr, content in ((a, pa, same), (a, pa + PAGE_SIZE, same), (b, pb, same), (a, pa + 2 * PAGE_SIZE, lone)):
        s.write(pid, addr, content)
    assert s.read(b, pb + PAGE_SIZE, 8) == bytes(8)  # demand-zero
    s.write(b, pb + PAGE_SIZE, b"z")
    s.mprotect(b, pb + PAGE_SIZE, 1, readable=True, writable=False)
    with pytest.raises(SegmentationFault):
        s.write(b, pb + PAGE_SIZE, b"x")
    assert s.host_cache_insert(b"host") == 0
    assert s.host_cache() == {0: b"host" + bytes(PAGE_SIZE - 4)}
    with pytest.raises(NotRunning):
        s.full_scans(1)
    s.run_ksmd(100)  # run is STOP: nothing happens
    assert s.counters()["pages_shared"] == 0 and s.counters()["full_scans"] == 0
    with pytest.raises(KnobError) as bad:
        s.set_knob("run", 3)
    assert bad.value.errno == "EINVAL"
    s.set_knob("run", 1)
    assert s.knobs().run is RunMode.MERGE
    s.full_scans(3)
    counters = s.counters()
    assert (counters["pages_shared"], counters["pages_sharing"], counters["full_scans"]) == (1, 2, 3), counters
    assert s.process_counters(a)["ksm_merging_pages"] == 2 and s.process_counters(b)["ksm_merging_pages"] == 1
    merged = [(page.pid, page.addr) for page in s.snapshot().pages if page.ksm]
    assert merged == [(a, pa), (a, pa + PAGE_SIZE), (b, pb)]
    writable = {(page.pid, page.addr): page.writable for page in s.snapshot().pages}
    assert not any(writable[where] for where in merged) and writable[(b, pb + PAGE_SIZE)] is False
    s.write(b, pb + 5, b"!")  # COW: only b's view changes
    assert s.read(b, pb, 8) == b"SSSSS!SS"
    assert s.read(a, pa, PAGE_SIZE) == s.read(a, pa + PAGE_SIZE, PAGE_SIZE) == same
    s.write(a, pa, other)
    assert s.read(a, pa + PAGE_SIZE, PAGE_SIZE) == same and s.read(a, pa, 4) == b"OOOO"
    s.munmap(a, pa + 2 * PAGE_SIZE, 1)
    with pytest.raises(SegmentationFault):
        s.read(a, pa + 2 * PAGE_SIZE, 1)
    with pytest.raises(MappingError) as unmapped:
        s.madvise(a, pa + 2 * PAGE_SIZE, 1, "MERGEABLE")
    assert unmapped.value.errno == "ENOMEM"
    assert_called_every_method(recorder, KsmSystem)


# ---------------------------------------------------------------------------- files


def fs_tour(system: FileSystem) -> None:
    """Names, contents, offsets, sizes and link counts through every call of
    :class:`~spec.umfs_api.FileSystem` and a :class:`~spec.umfs_api.FileMapping`."""
    fs, recorder = touring(system)
    p = fs.spawn()
    fs.mkdir("/d")
    fd = fs.open(p, "/d/a", O_RDWR | O_CREAT)
    assert fs.write(p, fd, b"hello") == 5
    assert fs.pwrite(p, fd, b"J", 0) == 1
    assert fs.lseek(p, fd, 1, SEEK_SET) == 1
    assert fs.read(p, fd, 3) == b"ell"
    assert fs.pread(p, fd, 10, 3) == b"lo"
    assert fs.read(p, fd, 5) == b"o"  # pread left the offset at 4
    assert fs.pwrite(p, fd, b"Z", 8) == 1  # a hole of three zero bytes
    assert fs.lseek(p, fd, 0, SEEK_END) == 9
    view: FileMapping = fs.map(p, fd)
    assert view.read(0, 10) == b"Jello\0\0\0Z"
    fs.ftruncate(p, fd, 2)
    fs.fsync(p, fd)
    assert fs.fstat(p, fd).size == 2 and view.read(0, 10) == b"Je"
    fs.link("/d/a", "/b")
    assert fs.stat("/b").nlink == 2
    fs.rename("/b", "/c")
    assert fs.listdir("/") == ["c", "d"]
    with pytest.raises(FsError) as full:
        fs.rmdir("/d")
    assert full.value.errno == errno.ENOTEMPTY
    fs.unlink("/d/a")
    assert fs.listdir("/d") == [] and fs.stat("/c").nlink == 1
    fs.close(p, fd)
    fs.rmdir("/d")
    assert fs.listdir("/") == ["c"]
    q = fs.spawn()
    again = fs.open(q, "/c", O_RDWR | O_APPEND)
    assert fs.write(q, again, b"!!") == 2 and fs.pread(q, again, 9, 0) == b"Je!!"
    fs.exit(q)
    with pytest.raises(FsError):
        fs.read(q, again, 1)
    assert fs.stat("/c").size == 4
    with pytest.raises(FsError) as exists:
        fs.open(p, "/c", O_RDWR | O_CREAT | O_EXCL)
    assert exists.value.errno == errno.EEXIST
    with pytest.raises(FsError) as gone:
        fs.stat("/d")
    assert gone.value.errno == errno.ENOENT
    assert_called_every_method(recorder, FileSystem)


# ---------------------------------------------------------------------------- key-value


def kv_tour(system: KvServer) -> None:
    """Stores and gets in order on two connections, a request split anywhere, expiry by
    the virtual clock, ``quit`` hanging up, a client leaving mid-request."""
    kv, recorder = touring(system)
    one, two = kv.connect(), kv.connect()
    assert one != two
    kv.send(one, b"set a 0 0 1\r\nx\r\nset b 0 2 2\r\nyz\r\n")
    kv.settle()  # order is kept per connection only: the stores first
    kv.send(two, b"ge")
    kv.send(two, b"t a b\r\n")
    kv.settle()
    assert kv.receive(one) == b"STORED\r\nSTORED\r\n"
    assert kv.receive(two) == b"VALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nyz\r\nEND\r\n"
    assert kv.receive(two) == b""
    kv.advance_clock(3)  # b expires after 2 s
    kv.send(one, b"get b\r\nget a\r\n")
    kv.settle()
    assert kv.receive(one) == b"END\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
    kv.send(two, b"set c 0 0 5\r\nab")  # the client leaves mid-request
    kv.disconnect(two)
    assert not kv.closed(one)
    kv.send(one, b"quit\r\n")
    kv.settle()
    assert kv.closed(one)
    kv.send(one, b"get a\r\n")  # ignored after the hang-up
    kv.settle()
    assert kv.receive(one) == b""
    three = kv.connect()
    assert three not in (one, two)
    kv.send(three, b"get c\r\n")
    kv.settle()
    assert kv.receive(three) == b"END\r\n"
    assert_called_every_method(recorder, KvServer)
