"""What may be observed after a crash and recovery, written against the file-system model.

A *workload* is a sequence of file-system operations (:data:`Op`), each one call of the
libumfs API made by one process, after a *setup* that is not crashed. Every UMFS call
is synchronously durable and atomic, so if the machine crashes while operation ``k`` is
in flight (operations ``0 .. k-1`` returned), recovery must produce:

- the tree after operations ``0 .. k-1`` (the in-flight one left no trace), or
- the tree after operations ``0 .. k`` (it completed);

nothing else. A crash after the last operation returned allows only the final tree.
The same set holds when the machine crashes again *during recovery* and recovers once
more: recovery may not widen it.

"The tree" is the model's :meth:`~spec.umfs_model.ModelFs.observe` snapshot — names,
kinds, link counts, contents — which is what survives a reboot: descriptors, offsets and
files unlinked while open are gone (processes do not survive a crash).

The workload language maps each :data:`Op` onto API calls (:func:`run_op`): most through
one process that keeps a descriptor per path it has opened (a directory too, with
``opendir``); ``spawn``, ``open``, ``map`` and ``exit`` name other processes, which open
and map files of their own (so open files' cached attributes are shared between
processes, and a truncate must shoot down the translations of every process that maps
the file). Failing calls are part of the workload (an operation that fails changes
nothing, and its allowed set is the old tree only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from spec.umfs_api import O_CREAT, O_RDONLY, O_RDWR, FileMapping, FileSystem, FsError
from spec.umfs_model import ModelFs, Snapshot

#: An operation: ``("creat", path)``, ``("write", path, offset, length, seed)``,
#: ``("truncate", path, length)``, ``("unlink", path)``, ``("link", old, new)``,
#: ``("rename", old, new)``, ``("mkdir", path)``, ``("rmdir", path)``, ``("close", path)``,
#: ``("opendir", path)`` (opened read-only; ``close`` closes it) — all by the workload's
#: process — and, naming another process, ``("spawn", proc)``, ``("open", proc, path)``
#: (read-write, not mapped), ``("map", proc, path)`` (opened read-only and mapped) and
#: ``("exit", proc)`` (which closes its descriptors).
Op = tuple[str | int, ...]

OP_NAMES = (
    "creat", "write", "truncate", "unlink", "link", "rename", "mkdir", "rmdir", "close",
    "opendir", "spawn", "open", "map", "exit",
)  # fmt: skip


def payload(length: int, seed: int) -> bytes:
    """The deterministic bytes a ``write`` operation writes (never all zero).

    pre: 0 <= length <= 1 << 20 and 0 <= seed < 256
    post: len(__return__) == length
    post: length == 0 or __return__[0] != 0
    """
    unit = bytes((seed + i) % 251 + 1 for i in range(251))
    return (unit * (length // 251 + 1))[:length]


def describe(op: Op) -> str:
    """An operation as a person reads it: ``write(/a, 4000, 5000)``."""
    name, *args = op
    return f"{name}({', '.join(str(a) for a in args)})"


@dataclass
class Driver:
    """The workload's view while it runs: its own process's pid and descriptor per path,
    and the other processes by name, with their descriptors and mappings."""

    pid: int
    fds: dict[str, int] = field(default_factory=dict)
    procs: dict[str, int] = field(default_factory=dict)
    proc_fds: dict[tuple[str, str], int] = field(default_factory=dict)
    mappings: list[FileMapping] = field(default_factory=list)


def _pid(driver: Driver, proc: str) -> int:
    pid = driver.procs.get(proc)
    if pid is None:
        raise ValueError(f"workload names process {proc!r} before spawning it")
    return pid


def _other(fs: FileSystem, driver: Driver, proc: str, path: str, flags: int) -> int:
    """Open ``path`` in process ``proc`` (its earlier descriptor of ``path`` closed)."""
    pid = _pid(driver, proc)
    old = driver.proc_fds.pop((proc, path), None)
    if old is not None:
        fs.close(pid, old)
    fd = fs.open(pid, path, flags)
    driver.proc_fds[(proc, path)] = fd
    return fd


def _fd(fs: FileSystem, driver: Driver, path: str) -> int:
    fd = driver.fds.get(path)
    if fd is None:
        fd = fs.open(driver.pid, path, O_RDWR)
        driver.fds[path] = fd
    return fd


def run_op(fs: FileSystem, driver: Driver, op: Op) -> str:
    """Run ``op`` on any implementation of the interface; return ``"ok"`` or the errno
    name it failed with. Data operations reuse (or open) the path's descriptor."""
    name, *args = op
    try:
        if name in ("creat", "opendir"):
            path = str(args[0])
            old = driver.fds.pop(path, None)
            if old is not None:
                fs.close(driver.pid, old)
            driver.fds[path] = fs.open(driver.pid, path, O_CREAT | O_RDWR if name == "creat" else O_RDONLY)
        elif name == "spawn":
            driver.procs[str(args[0])] = fs.spawn()
        elif name == "open":
            _other(fs, driver, str(args[0]), str(args[1]), O_RDWR)
        elif name == "map":
            proc = str(args[0])
            driver.mappings.append(fs.map(_pid(driver, proc), _other(fs, driver, proc, str(args[1]), O_RDONLY)))
        elif name == "exit":
            proc = str(args[0])
            fs.exit(_pid(driver, proc))
            del driver.procs[proc]
            driver.proc_fds = {key: fd for key, fd in driver.proc_fds.items() if key[0] != proc}
        elif name == "write":
            path, offset, length, seed = str(args[0]), int(args[1]), int(args[2]), int(args[3])
            fs.pwrite(driver.pid, _fd(fs, driver, path), payload(length, seed), offset)
        elif name == "truncate":
            fs.ftruncate(driver.pid, _fd(fs, driver, str(args[0])), int(args[1]))
        elif name == "close":
            fd = driver.fds.pop(str(args[0]), None)
            if fd is not None:
                fs.close(driver.pid, fd)
        elif name == "unlink":
            fs.unlink(str(args[0]))
        elif name == "link":
            fs.link(str(args[0]), str(args[1]))
        elif name == "rename":
            fs.rename(str(args[0]), str(args[1]))
        elif name == "mkdir":
            fs.mkdir(str(args[0]))
        elif name == "rmdir":
            fs.rmdir(str(args[0]))
        else:
            raise ValueError(f"unknown workload operation {name!r}")
    except FsError as error:
        return type(error).__name__
    return "ok"


def model_trees(setup: Sequence[Op], ops: Sequence[Op]) -> list[Snapshot]:
    """The model's tree after the setup and after each prefix of ``ops``:
    ``trees[k]`` is the tree once operations ``0 .. k-1`` have returned."""
    fs = ModelFs()
    driver = Driver(fs.spawn())
    for op in setup:
        run_op(fs, driver, op)
    trees = [fs.observe()]
    for op in ops:
        run_op(fs, driver, op)
        trees.append(fs.observe())
    return trees


def allowed_after_crash(trees: Sequence[Snapshot], returned: int) -> list[Snapshot]:
    """The trees recovery may show when operations ``0 .. returned-1`` had returned and
    operation ``returned`` (if any) was in flight: the old tree, or the new one
    (``trees[returned]`` is always allowed; never more than two trees are).
    """
    if returned + 1 < len(trees) and trees[returned + 1] != trees[returned]:
        return [trees[returned], trees[returned + 1]]
    return [trees[returned]]
