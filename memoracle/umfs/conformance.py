"""Differential conformance: drive two ``FileSystem`` implementations side by side.

Every operation is applied to both sides and the outcomes compared: the same return
value (descriptors, pids and mappings are handles, paired up rather than compared), or
both raise an :class:`~spec.umfs_api.FsError` with the same errno. Anything else — a
different answer, an exception that is not an ``FsError`` on either side — fails with
a message naming the step, its arguments and both outcomes. After every step the two
trees are compared (``observe()`` where a side has it, else a walk through the
protocol), so are every open descriptor's ``fstat`` and offset (``lseek(fd, 0,
SEEK_CUR)``) and every mapping's contents, and each side's ``check_invariants()`` runs.

The pieces:

- :class:`Session` applies *steps* — plain tuples such as ``("open", "p1", "/a",
  O_RDWR | O_CREAT, "f1")`` whose handles (``p1``, ``f1``, ``m1``) name paired
  processes, descriptors and mappings — and keeps the list, so every failure message
  ends with a script that :func:`replay` runs again: paste it into a regression test.
- :func:`make_fs_machine` builds a Hypothesis ``RuleBasedStateMachine`` whose rules
  generate those steps over a small alphabet of paths, page-crossing sizes and offsets.
- :class:`Deviations` lets a pairing skip or tolerate exactly the differences it has
  documented (``memoracle.umfs.os_fs.LINUX_DEVIATIONS`` for the model against Linux); the
  default tolerates nothing.
"""

from __future__ import annotations

import errno as errno_module
import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from spec.umfs_api import (
    O_ACCMODE,
    O_APPEND,
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
    FileMapping,
    FileSystem,
    FsError,
    Kind,
)
from spec.umfs_paths import child_path

Step = tuple[Any, ...]
Snapshot = dict[str, tuple[Any, ...]]
Factory = Callable[[], FileSystem]
Check = Callable[[FileSystem, FileSystem], None]

# ---------------------------------------------------------------- printable values


class Expr(str):
    """A string that prints as the Python expression that builds it (for long paths)."""

    expression: str

    def __new__(cls, value: str, expression: str) -> Expr:
        made = super().__new__(cls, value)
        made.expression = expression
        return made

    def __repr__(self) -> str:
        return self.expression


_FLAG_NAMES = (("O_CREAT", O_CREAT), ("O_EXCL", O_EXCL), ("O_TRUNC", O_TRUNC), ("O_APPEND", O_APPEND))
_MODE_NAMES = {O_RDONLY: "O_RDONLY", O_WRONLY: "O_WRONLY", O_RDWR: "O_RDWR", O_ACCMODE: "O_ACCMODE"}


class Flags(int):
    """Open flags that print as ``O_RDWR | O_CREAT``."""

    def __repr__(self) -> str:
        parts = [_MODE_NAMES[self & O_ACCMODE]]
        parts += [name for name, bit in _FLAG_NAMES if self & bit]
        rest = self & ~(O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND)
        if rest:
            parts.append(oct(rest))
        return " | ".join(parts)


@functools.lru_cache(maxsize=256)
def _pattern(length: int, seed: int) -> bytes:
    return bytes((seed + i) % 251 for i in range(length))


@dataclass(frozen=True)
class Data:
    """``length`` bytes of a pattern that differs from page to page (251 is prime)."""

    length: int
    seed: int = 0

    def __bytes__(self) -> bytes:
        return _pattern(self.length, self.seed)

    def __repr__(self) -> str:
        return f"data({self.length}, {self.seed})"


def data(length: int, seed: int = 0) -> Data:
    """The write payload a script names ``data(length, seed)``."""
    return Data(length, seed)


# ---------------------------------------------------------------- the generated alphabet


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


DEFAULT_PATHS: tuple[str, ...] = ("/a", "/b", "/d", "/d/a", "/d/e", "/d/e/f")
#: The root, names over NAME_MAX, a path over PATH_MAX and malformed paths.
ODD_PATHS: tuple[str, ...] = (
    "/",
    Expr("/" + "n" * 256, '"/" + "n" * 256'),
    Expr("/d/" + "n" * 256, '"/d/" + "n" * 256'),
    Expr("/d" + "/e" * 2100, '"/d" + "/e" * 2100'),
    "a",
    "/d/",
    "//a",
    "/d/./a",
    "/d/../a",
    "",
)
SIZES: tuple[int, ...] = (0, 1, 100, 4095, 4096, 4097, 9000)
OFFSETS: tuple[int, ...] = (0, 1, 100, 4095, 4096, 4097, 8191, 8192, 12288)

# ---------------------------------------------------------------- outcomes and calls


@dataclass(frozen=True)
class Outcome:
    """What one side did: returned ``value``, raised an ``FsError`` (``errno``), or raised
    something else (``foreign`` describes it; ``errno`` is its ``.errno`` if it has one)."""

    value: object = None
    errno: int | None = None
    foreign: str | None = None

    @property
    def ok(self) -> bool:
        return self.errno is None and self.foreign is None

    def agrees(self, other: Outcome, compare_values: bool) -> bool:
        """Same value (if compared), or both the same ``FsError``; never if foreign."""
        if self.foreign is not None or other.foreign is not None:
            return False
        if self.ok and other.ok:
            return not compare_values or self.value == other.value
        return self.errno == other.errno

    def render(self) -> str:
        if self.foreign is not None:
            return f"raised {self.foreign} (not an FsError)"
        if self.errno is not None:
            return f"raised {errno_module.errorcode.get(self.errno, self.errno)}"
        return f"returned {_show(self.value)}"


def _show(value: object) -> str:
    if isinstance(value, bytes) and len(value) > 24:
        return f"{len(value)} bytes {value[:12]!r}...{value[-4:]!r}"
    return repr(value)


def _first_difference(a: object, b: object) -> str:
    if isinstance(a, bytes) and isinstance(b, bytes):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f" (first difference at byte {i}: {x} vs {y})"
        return f" (one is a prefix of the other: {len(a)} vs {len(b)} bytes)"
    return ""


def run(thunk: Callable[[], object]) -> Outcome:
    """Call ``thunk`` and classify what happens."""
    try:
        return Outcome(value=thunk())
    except FsError as error:
        return Outcome(errno=error.errno)
    except Exception as error:  # noqa: BLE001 - every other exception is a finding
        code = getattr(error, "errno", None)
        return Outcome(
            errno=code if isinstance(code, int) else None,
            foreign=f"{type(error).__name__}: {error}",
        )


@dataclass(frozen=True)
class Call:
    """A step about to run, with what the session knows of the descriptor it names."""

    step: Step
    fd_flags: int | None = None
    fd_kind: Kind | None = None
    fd_open: bool = True

    @property
    def op(self) -> str:
        return str(self.step[0])


class Deviations:
    """Documented differences between two sides. This base class tolerates none.

    ``skip`` returns a reason (an id) to not run a step on either side; ``tolerate``
    returns one to accept two outcomes that differ. Tolerate only outcomes after which
    both sides are still in the same state (the trees are compared after every step).
    """

    IDS: dict[str, str] = {}
    #: How a reproduction script names this object.
    reference = "Deviations()"

    def skip(self, call: Call) -> str | None:
        return None

    def tolerate(self, call: Call, left: Outcome, right: Outcome) -> str | None:
        return None


class ConformanceError(AssertionError):
    """The two sides disagreed; the message ends with a script that reproduces it."""


# ---------------------------------------------------------------- snapshots


def protocol_snapshot(fs: FileSystem, pid: int) -> Snapshot:
    """The tree as seen through the protocol (stat, listdir, open and pread as ``pid``)."""
    snapshot: Snapshot = {}

    def visit(path: str) -> None:
        info = fs.stat(path)
        if info.kind == "dir":
            names = tuple(fs.listdir(path))
            snapshot[path] = ("dir", info.nlink, names)
            for name in names:
                visit(child_path(path, name))
            return
        fd = fs.open(pid, path, O_RDONLY)
        try:
            chunks: list[bytes] = []
            while chunk := fs.pread(pid, fd, 1 << 16, sum(len(c) for c in chunks)):
                chunks.append(chunk)
        finally:
            fs.close(pid, fd)
        snapshot[path] = ("file", info.nlink, b"".join(chunks))

    visit("/")
    return snapshot


def _diff(left: Snapshot, right: Snapshot) -> str:
    lines = []
    for path in sorted(set(left) | set(right)):
        a, b = left.get(path), right.get(path)
        if a is None or b is None or tuple(a) != tuple(b):
            show_a = "absent" if a is None else f"{a[0]} nlink={a[1]} {_show(a[2])}"
            show_b = "absent" if b is None else f"{b[0]} nlink={b[1]} {_show(b[2])}"
            extra = _first_difference(a[2], b[2]) if a is not None and b is not None else ""
            lines.append(f"    {path}: left {show_a} | right {show_b}{extra}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the session


@dataclass
class _Proc:
    left: int
    right: int
    alive: bool = True


@dataclass
class _Fd:
    proc: str
    left: int
    right: int
    flags: int
    kind: Kind | None
    open: bool = True


@dataclass
class _Map:
    fd: str
    left: FileMapping
    right: FileMapping


_FD_OPS = {"close", "read", "pread", "write", "pwrite", "lseek", "ftruncate", "fsync", "fstat", "map"}
_PATH_OPS = {"stat", "unlink", "link", "rename", "mkdir", "rmdir", "listdir"}


@dataclass
class Session:
    """Two file systems, the steps applied to both so far, and the handles they share."""

    left: FileSystem
    right: FileSystem
    deviations: Deviations = field(default_factory=Deviations)
    check: Check | None = None
    reproduce: str = "replay(make_left, make_right, steps)"
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    procs: dict[str, _Proc] = field(default_factory=dict)
    fds: dict[str, _Fd] = field(default_factory=dict)
    maps: dict[str, _Map] = field(default_factory=dict)
    known_paths: tuple[str, ...] = ("/",)
    _counter: int = 0
    _observers: dict[int, int] = field(default_factory=dict)

    # ------------------------------------------------------------ handles

    def fresh(self, prefix: str) -> str:
        """A new handle name: ``p3``, ``f7``, ``m2``."""
        self._counter += 1
        return f"{prefix}{self._counter}"

    @property
    def live_processes(self) -> int:
        return sum(p.alive for p in self.procs.values())

    # ------------------------------------------------------------ steps

    def apply(self, step: Step) -> bool:
        """Run ``step`` on both sides; True if both succeeded (False if skipped)."""
        self.steps.append(step)
        return self._execute(step, f"step {len(self.steps)}")

    def _execute(self, step: Step, where: str) -> bool:
        op = step[0]
        call = self._call(step)
        reason = self.deviations.skip(call)
        if reason is not None:
            self.notes.append(f"{where} skipped: {reason}")
            return False
        left, right = self._run_both(op, step)
        handle_op = op in ("spawn", "open", "map")
        if not left.agrees(right, compare_values=not handle_op):
            tolerated = self.deviations.tolerate(call, left, right)
            if tolerated is None:
                self._fail(f"{op} disagrees at {where}: {step!r}", left, right)
            self.notes.append(f"{where} tolerated: {tolerated}")
            return False
        if left.ok:
            self._record(step, left.value, right.value)
        return left.ok

    def _call(self, step: Step) -> Call:
        op = step[0]
        if op in _FD_OPS or op == "mapping.read":
            fd = self.fds[self.maps[step[1]].fd] if op == "mapping.read" else self.fds[step[1]]
            return Call(step, fd.flags, fd.kind, fd.open)
        return Call(step)

    def _run_both(self, op: str, step: Step) -> tuple[Outcome, Outcome]:
        args: list[Any] = [bytes(a) if isinstance(a, Data) else a for a in step[1:]]
        if op == "spawn":
            return run(self.left.spawn), run(self.right.spawn)
        if op == "exit":
            proc = self.procs[args[0]]
            return run(lambda: self.left.exit(proc.left)), run(lambda: self.right.exit(proc.right))
        if op == "open":
            proc = self.procs[args[0]]
            path, flags = args[1], args[2]
            return (
                run(lambda: self.left.open(proc.left, path, flags)),
                run(lambda: self.right.open(proc.right, path, flags)),
            )
        if op == "mapping.read":
            mapping = self.maps[args[0]]
            rest = args[1:]
            return run(lambda: mapping.left.read(*rest)), run(lambda: mapping.right.read(*rest))
        if op in _FD_OPS:
            fd = self.fds[args[0]]
            proc = self.procs[fd.proc]
            rest = args[2:] if op == "map" else args[1:]
            return (
                run(lambda: getattr(self.left, op)(proc.left, fd.left, *rest)),
                run(lambda: getattr(self.right, op)(proc.right, fd.right, *rest)),
            )
        if op in _PATH_OPS:
            return run(lambda: getattr(self.left, op)(*args)), run(lambda: getattr(self.right, op)(*args))
        raise ValueError(f"unknown step {step!r}")

    def _record(self, step: Step, left: Any, right: Any) -> None:
        op = step[0]
        if op == "spawn":
            self.procs[step[1]] = _Proc(left, right)
        elif op == "exit":
            self.procs[step[1]].alive = False
            for fd in self.fds.values():
                if fd.proc == step[1]:
                    fd.open = False
        elif op == "open":
            proc = self.procs[step[1]]
            kind = run(lambda: self.left.fstat(proc.left, left).kind).value
            self.fds[step[4]] = _Fd(step[1], left, right, int(step[3]), kind)  # type: ignore[arg-type]
        elif op == "close":
            self.fds[step[1]].open = False
        elif op == "map":
            self.maps[step[2]] = _Map(step[1], left, right)

    # ------------------------------------------------------------ after every step

    def after_step(self) -> None:
        """Compare the trees and every open descriptor's ``fstat``, offset and mapping,
        then run each side's ``check_invariants`` and the user's check."""
        left, right = self._snapshot(self.left, "left"), self._snapshot(self.right, "right")
        if left != right:
            self._fail_plain("the trees differ after the last step:\n" + _diff(left, right))
        self.known_paths = tuple(sorted(left))
        for name, fd in self.fds.items():
            if fd.open:
                self._execute(("fstat", name), f"observing {name} after the last step")
                self._execute(("lseek", name, 0, SEEK_CUR), f"observing {name} after the last step")
        for name in self.maps:  # closed ones too: they must have stopped working
            self._execute(("mapping.read", name, 0, 1 << 20), f"observing {name} after the last step")
        for label, side in (("left", self.left), ("right", self.right)):
            check = getattr(side, "check_invariants", None)
            if check is not None:
                outcome = run(check)
                if not outcome.ok:
                    self._fail_plain(f"{label} ({type(side).__name__}) invariant: {outcome.foreign}")
        if self.check is not None:
            outcome = run(lambda: self.check(self.left, self.right) if self.check else None)
            if not outcome.ok:
                self._fail_plain(f"check failed: {outcome.foreign or outcome.render()}")

    def _snapshot(self, fs: FileSystem, label: str) -> Snapshot:
        observe = getattr(fs, "observe", None)
        if observe is not None:
            thunk: Callable[[], object] = observe
        else:
            if id(fs) not in self._observers:
                self._observers[id(fs)] = fs.spawn()
            pid = self._observers[id(fs)]
            thunk = lambda: protocol_snapshot(fs, pid)  # noqa: E731
        outcome = run(thunk)
        if not outcome.ok:
            self._fail_plain(f"could not observe the {label} side: {outcome.render()}")
        assert isinstance(outcome.value, dict)
        return {path: tuple(node) for path, node in outcome.value.items()}

    # ------------------------------------------------------------ failing

    def script(self) -> str:
        """The steps so far as Python a regression test can paste."""
        lines = self.reproduce.splitlines()
        imports = "".join(f"{line}\n" for line in lines if line.startswith(("from ", "import ")))
        calls = "\n".join(line for line in lines if not line.startswith(("from ", "import ")))
        body = "".join(f"    {step!r},\n" for step in self.steps)
        return (
            "from spec.umfs_api import *\n"
            "from memoracle.umfs.conformance import data, replay\n"
            f"{imports}\nsteps = [\n{body}]\n{calls}"
        )

    def _fail(self, what: str, left: Outcome, right: Outcome) -> None:
        extra = _first_difference(left.value, right.value) if left.ok and right.ok else ""
        self._fail_plain(
            f"{what}\n"
            f"  left  ({type(self.left).__name__}): {left.render()}\n"
            f"  right ({type(self.right).__name__}): {right.render()}{extra}"
        )

    def _fail_plain(self, message: str) -> None:
        reasons = Counter(note.rsplit(": ", 1)[1] for note in self.notes)
        notes = ", ".join(f"{reason} x{count}" for reason, count in sorted(reasons.items()))
        notes = f"  documented deviations skipped or tolerated so far: {notes}\n" if notes else ""
        raise ConformanceError(
            f"file-system conformance failure: {message}\n{notes}"
            f"--- reproduce ({len(self.steps)} steps) ---\n{self.script()}"
        )

    def close(self) -> None:
        """Release both sides (``cleanup()`` where a side has one)."""
        for side in (self.left, self.right):
            cleanup = getattr(side, "cleanup", None)
            if cleanup is not None:
                cleanup()


def replay(
    make_left: Factory,
    make_right: Factory,
    steps: Sequence[Step],
    *,
    deviations: Deviations | None = None,
    check: Check | None = None,
) -> Session:
    """Run ``steps`` on two fresh file systems, comparing after each; raise
    :class:`ConformanceError` on the first disagreement. Returns the finished session."""
    session = Session(make_left(), make_right(), deviations or Deviations(), check)
    try:
        session.after_step()
        for step in steps:
            session.apply(step)
            session.after_step()
    finally:
        session.close()
    return session


# ---------------------------------------------------------------- the state machine


def _reproduce_line(make_left: Factory, make_right: Factory, deviations: Deviations) -> str:
    """``replay(ModelFs, OsDirFs, steps, ...)`` with the imports it needs, where known."""
    imports, names = [], []
    for factory in (make_left, make_right):
        module = getattr(factory, "__module__", None)
        name = getattr(factory, "__qualname__", None)
        if module and name and "<" not in name:
            imports.append(f"from {module} import {name.split('.')[0]}\n")
        names.append(name or repr(factory))
    call = f"replay({names[0]}, {names[1]}, steps"
    if type(deviations) is not Deviations:
        call += f", deviations={deviations.reference}"
    return "".join(dict.fromkeys(imports)) + call + ")"


def make_fs_machine(
    make_left: Factory,
    make_right: Factory,
    *,
    paths: Sequence[str] = DEFAULT_PATHS,
    odd_paths: Sequence[str] = ODD_PATHS,
    deviations: Deviations | None = None,
    check: Check | None = None,
    max_processes: int = 3,
) -> type[RuleBasedStateMachine]:
    """A ``RuleBasedStateMachine`` that drives ``make_left()`` and ``make_right()`` alike.

    ``paths`` are drawn ten times as often as ``odd_paths``; sizes and offsets cross
    4 KiB page boundaries. Extra rules that create files and directories under
    ``paths`` (same steps, likelier arguments) keep the trees populated, and others reach
    what random paths rarely do: renames into another directory, existing directories
    opened (then changed, removed and closed while open), and truncates followed by a
    write past the new end. Use ``make_fs_machine(...).TestCase`` as a pytest test, or
    ``run_state_machine_as_test``.
    """
    known = deviations or Deviations()
    reproduce = _reproduce_line(make_left, make_right, known)
    path_st = st.sampled_from(list(paths) * 10 + list(odd_paths))
    existing = st.runner().flatmap(lambda machine: st.sampled_from(machine.session.known_paths))
    likely_path = st.one_of(path_st, existing)
    plain_path = st.sampled_from(list(paths))
    creating = st.sampled_from(
        [O_RDWR | O_CREAT, O_WRONLY | O_CREAT | O_TRUNC, O_RDWR | O_CREAT | O_APPEND, O_CREAT]
    ).map(Flags)
    modes = st.sampled_from([O_RDONLY, O_WRONLY, O_RDWR, O_RDWR, O_RDWR, O_ACCMODE])
    extras = st.sets(st.sampled_from([O_CREAT, O_CREAT, O_EXCL, O_TRUNC, O_APPEND]))
    flags_st = st.builds(lambda mode, bits: Flags(mode | sum(bits)), modes, extras)
    counts = st.sampled_from(SIZES + (-1,))
    offsets = st.sampled_from(OFFSETS + (-1,))
    payloads = st.builds(Data, st.sampled_from(SIZES), st.integers(0, 250))
    seek_offsets = st.sampled_from((0, 1, 4095, 4096, 4097, 9000, -1, -4096))
    whences = st.sampled_from((SEEK_SET, SEEK_CUR, SEEK_END, 7))
    stale_use = st.sampled_from(
        (None, None, None, ("close",), ("read", 1), ("pwrite", Data(1), 0), ("fsync",), ("fstat",))
    )

    class FsConformance(RuleBasedStateMachine):
        processes = Bundle("processes")
        descriptors = Bundle("descriptors")
        mappings = Bundle("mappings")

        def __init__(self) -> None:
            super().__init__()
            self.session = Session(make_left(), make_right(), known, check, reproduce)

        def _new(self, step_without_name: Step, prefix: str) -> Any:
            name = self.session.fresh(prefix)
            return name if self.session.apply((*step_without_name, name)) else multiple()

        @initialize(target=processes, depth=st.integers(0, 2))
        def first_process(self, depth: int) -> Any:
            for directory in ("/d", "/d/e")[:depth]:
                self.session.apply(("mkdir", directory))
            return self._new(("spawn",), "p")

        @precondition(lambda self: self.session.live_processes < max_processes)
        @rule(target=processes)
        def spawn(self) -> Any:
            return self._new(("spawn",), "p")

        @precondition(lambda self: self.session.live_processes > 1)
        @rule(proc=consumes(processes))
        def exit(self, proc: str) -> None:
            self.session.apply(("exit", proc))

        @rule(target=descriptors, proc=processes, path=likely_path, flags=flags_st)
        def open(self, proc: str, path: str, flags: Flags) -> Any:
            name = self.session.fresh("f")
            return name if self.session.apply(("open", proc, path, flags, name)) else multiple()

        @rule(target=descriptors, proc=processes, path=plain_path, flags=creating)
        def create(self, proc: str, path: str, flags: Flags) -> Any:
            return self.open(proc, path, flags)

        @rule(path=plain_path)
        def make_directory(self, path: str) -> None:
            self.session.apply(("mkdir", path))

        @rule(fd=consumes(descriptors), then=stale_use)
        def close(self, fd: str, then: tuple[Any, ...] | None) -> None:
            if self.session.apply(("close", fd)) and then is not None:
                self.session.apply((then[0], fd, *then[1:]))

        @rule(fd=descriptors, count=counts)
        def read(self, fd: str, count: int) -> None:
            self.session.apply(("read", fd, count))

        @rule(fd=descriptors, count=counts, offset=offsets)
        def pread(self, fd: str, count: int, offset: int) -> None:
            self.session.apply(("pread", fd, count, offset))

        @rule(fd=descriptors, payload=payloads)
        def write(self, fd: str, payload: Data) -> None:
            self.session.apply(("write", fd, payload))

        @rule(fd=descriptors, payload=payloads, offset=offsets)
        def pwrite(self, fd: str, payload: Data, offset: int) -> None:
            self.session.apply(("pwrite", fd, payload, offset))

        @rule(fd=descriptors, offset=seek_offsets, whence=whences)
        def lseek(self, fd: str, offset: int, whence: int) -> None:
            self.session.apply(("lseek", fd, offset, whence))

        @rule(fd=descriptors, length=counts)
        def ftruncate(self, fd: str, length: int) -> None:
            self.session.apply(("ftruncate", fd, length))

        @rule(fd=descriptors)
        def fsync(self, fd: str) -> None:
            self.session.apply(("fsync", fd))

        @rule(fd=descriptors)
        def fstat(self, fd: str) -> None:
            self.session.apply(("fstat", fd))

        @rule(target=mappings, fd=descriptors)
        def map(self, fd: str) -> Any:
            return self._new(("map", fd), "m")

        @rule(mapping=mappings, offset=offsets, length=counts)
        def mapping_read(self, mapping: str, offset: int, length: int) -> None:
            self.session.apply(("mapping.read", mapping, offset, length))

        @rule(path=likely_path)
        def stat(self, path: str) -> None:
            self.session.apply(("stat", path))

        @rule(path=likely_path)
        def unlink(self, path: str) -> None:
            self.session.apply(("unlink", path))

        @rule(existing=likely_path, new=path_st)
        def link(self, existing: str, new: str) -> None:
            self.session.apply(("link", existing, new))

        @rule(old=likely_path, new=path_st)
        def rename(self, old: str, new: str) -> None:
            self.session.apply(("rename", old, new))

        @rule(old=existing, into=existing, name=st.sampled_from(("a", "b", "e", "f")))
        def rename_across(self, old: str, into: str, name: str) -> None:
            """A rename into another directory (of a file or a directory)."""
            new = ("" if into == "/" else into) + "/" + name
            if old != "/" and _parent(old) != into:
                self.session.apply(("rename", old, new))

        @rule(target=descriptors, proc=processes, path=existing)
        def open_directory(self, proc: str, path: str) -> Any:
            """``O_RDONLY`` on an existing name: a directory (or file) open for reading,
            which the other rules then change, ``fstat``, remove and close."""
            return self.open(proc, path, Flags(O_RDONLY))

        @rule(fd=descriptors, cut=st.sampled_from((0, 1, 100, 4096, 5000)),
              past=st.sampled_from((1, 100, 4095, 4097, 8225)), payload=payloads)  # fmt: skip
        def truncate_then_write_past_the_end(self, fd: str, cut: int, past: int, payload: Data) -> None:
            """Free pages, then link new ones past the end (possibly the freed ones)."""
            if self.session.apply(("ftruncate", fd, cut)):
                self.session.apply(("pwrite", fd, payload, cut + past))

        @rule(path=path_st)
        def mkdir(self, path: str) -> None:
            self.session.apply(("mkdir", path))

        @rule(path=likely_path)
        def rmdir(self, path: str) -> None:
            self.session.apply(("rmdir", path))

        @rule(path=likely_path)
        def listdir(self, path: str) -> None:
            self.session.apply(("listdir", path))

        @invariant()
        def sides_agree(self) -> None:
            self.session.after_step()

        def teardown(self) -> None:
            self.session.close()

    FsConformance.__name__ = FsConformance.__qualname__ = "FsConformance"
    return FsConformance
