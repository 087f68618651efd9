"""A seeded, Hypothesis-free conformance campaign: UMFS against the model.

``memoracle check`` runs it, and ``memoracle umfs campaign`` runs it over many seeds on any
back-end (:func:`add_command`): random steps in the harness's step language
(:mod:`memoracle.umfs.conformance`), drawn from a ``random.Random(seed)``, applied to a
fresh :class:`~spec.umfs_model.ModelFs` and a fresh UMFS side by side, with both trees,
descriptors and invariants compared after every step. A disagreement is reported with
the script that replays it.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from impl.mmu_emu import Machine
from impl.umfs import Umfs
from memoracle.umfs.conformance import (
    DEFAULT_PATHS,
    ODD_PATHS,
    OFFSETS,
    SIZES,
    ConformanceError,
    Session,
    Step,
    data,
)
from spec.umfs_api import O_ACCMODE, O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, FileSystem
from spec.umfs_model import ModelFs

FLAGS = (
    O_RDWR | O_CREAT,
    O_RDWR | O_CREAT | O_APPEND,
    O_WRONLY | O_CREAT | O_TRUNC,
    O_RDONLY,
    O_RDWR,
    O_RDWR | O_CREAT | O_EXCL,
)


def make_umfs() -> Umfs:
    """A freshly formatted UMFS on 16 MiB of DRAM and 16 MiB of SCM."""
    return Umfs.mkfs(Machine(dram_size=16 << 20, scm_size=16 << 20))


def random_step(rng: random.Random, session: Session) -> Step:
    """One step over the default paths, page-crossing sizes and offsets."""
    procs = [h for h, p in session.procs.items() if p.alive]
    fds = [h for h, f in session.fds.items() if f.open]
    path = rng.choice(DEFAULT_PATHS)
    if not procs or rng.random() < 0.03:
        return ("spawn", session.fresh("p"))
    roll = rng.random()
    if not fds or roll < 0.25:
        return ("open", rng.choice(procs), path, rng.choice(FLAGS), session.fresh("f"))
    fd = rng.choice(fds)
    if roll < 0.65:
        kind = rng.choice(["read", "pread", "write", "pwrite", "lseek", "ftruncate", "fstat", "close"])
        if kind == "read":
            return ("read", fd, rng.choice(SIZES))
        if kind == "pread":
            return ("pread", fd, rng.choice(SIZES), rng.choice(OFFSETS))
        if kind == "write":
            return ("write", fd, data(rng.choice(SIZES), rng.randrange(250)))
        if kind == "pwrite":
            return ("pwrite", fd, data(rng.choice(SIZES), rng.randrange(250)), rng.choice(OFFSETS))
        if kind == "lseek":
            return ("lseek", fd, rng.choice(OFFSETS), rng.randrange(3))
        if kind == "ftruncate":
            return ("ftruncate", fd, rng.choice(OFFSETS))
        return (kind, fd)
    kind = rng.choice(["stat", "unlink", "link", "rename", "mkdir", "rmdir", "listdir"])
    if kind in ("link", "rename"):
        return (kind, path, rng.choice(DEFAULT_PATHS))
    return (kind, path)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class StepGenerator:
    """The campaign's steps: :func:`random_step`'s mix, and with ``extended`` (drawn from
    a second generator, so that without it the steps are exactly :func:`random_step`'s)
    the situations that mix rarely or never reaches:

    - **cross-directory renames**, of files and of directories, from an existing path to
      a name in another directory;
    - **directories opened**: ``O_RDONLY`` opens of existing directories (the root too),
      then entries made and removed inside an open directory, ``fstat`` of its
      descriptor, the directory removed while open, and its close;
    - **page reuse**: a file truncated, then written past its end at an offset that is
      not page aligned (the write's new pages may be pages the truncate freed);
    - **the rest of the interface**: ``map`` and mapping reads, ``fsync``, exits, odd
      paths, negative arguments, bad flags and whences, closed descriptors
      (:meth:`_api`).
    """

    def __init__(self, rng: random.Random, session: Session, extra: random.Random | None = None) -> None:
        self.rng = rng
        self.session = session
        self.extra = extra
        self.pending: list[Step] = []
        #: Paths of the directories opened by the extension, by descriptor handle.
        self.open_dirs: dict[str, str] = {}

    def next(self) -> Step:
        """The next step."""
        if self.pending:
            return self.pending.pop(0)
        extra = self.extra
        if extra is not None and extra.random() < 0.25:
            step = self._extension(extra)
            if step is not None:
                return step
        return random_step(self.rng, self.session)

    def _extension(self, rng: random.Random) -> Step | None:
        session = self.session
        procs = [h for h, p in session.procs.items() if p.alive]
        if not procs:
            return None
        self.open_dirs = {fd: path for fd, path in self.open_dirs.items() if session.fds[fd].open}
        existing = [path for path in session.known_paths if path != "/"]
        if rng.random() < 0.3:
            return self._api(rng, procs, existing)
        roll = rng.random()
        directories = [p for p in existing if session.left.stat(p).kind == "dir"]
        if roll < 0.3 and existing:
            old = rng.choice(directories if directories and rng.random() < 0.6 else existing)
            into = [d for d in ["/", *directories] if d != _parent(old) and not (d + "/").startswith(old + "/")]
            targets = [("" if d == "/" else d) + "/" + name for d in into for name in ("a", "b", "e", "f")]
            fresh = [t for t in targets if t not in session.known_paths]
            if not targets:
                return None
            return ("rename", old, rng.choice(fresh if fresh and rng.random() < 0.7 else targets))
        if roll < 0.5:
            name = session.fresh("f")
            path = rng.choice(["/", *directories])
            self.open_dirs[name] = path
            if rng.random() < 0.25:  # a new directory, opened, then removed while open
                path = ("" if path == "/" else path) + "/" + rng.choice(("x", "y"))
                self.open_dirs[name] = path
                self.pending += [("open", rng.choice(procs), path, O_RDONLY, name), ("rmdir", path)]
                return ("mkdir", path)
            return ("open", rng.choice(procs), path, O_RDONLY, name)
        if roll < 0.75 and self.open_dirs:
            fd, path = rng.choice(sorted(self.open_dirs.items()))
            child = ("/" if path == "/" else path + "/") + rng.choice(("a", "e", "x"))
            what = rng.random()
            if what < 0.35:
                return ("mkdir", child)
            if what < 0.55:
                return ("open", rng.choice(procs), child, O_RDWR | O_CREAT, session.fresh("f"))
            if what < 0.7:
                return (rng.choice(("rmdir", "unlink")), child)
            if what < 0.8:
                return ("fstat", fd)
            if what < 0.9:
                return ("rmdir", path)
            return ("close", fd)
        files = [h for h, f in session.fds.items() if f.open and f.kind == "file" and f.flags & (O_WRONLY | O_RDWR)]
        if not files:
            return None
        fd = rng.choice(files)
        cut = rng.choice((0, 1, 100, 4096, 5000))
        past = cut + rng.choice((1, 100, 4095, 4097, 8192 + 33))
        self.pending.append(("pwrite", fd, data(rng.choice(SIZES), rng.randrange(250)), past))
        return ("ftruncate", fd, cut)

    def _api(self, rng: random.Random, procs: list[str], existing: list[str]) -> Step:
        """A call of the interface the plain mix never makes: ``map`` and reads through
        the mapping (closed ones too), ``fsync``, a process exit, odd paths (the root,
        names over NAME_MAX, a path over PATH_MAX, malformed ones), negative counts and
        offsets, a bad whence, bad open flags, a closed descriptor used."""
        session = self.session
        fds = [h for h, f in session.fds.items() if f.open]
        closed = [h for h, f in session.fds.items() if not f.open]
        what = rng.random()
        if what < 0.2 and fds:
            return ("map", rng.choice(fds), session.fresh("m"))
        if what < 0.35 and session.maps:
            return ("mapping.read", rng.choice(sorted(session.maps)), rng.choice(OFFSETS), rng.choice(SIZES))
        if what < 0.42 and fds:
            return ("fsync", rng.choice(fds))
        if what < 0.48 and len(procs) > 1:
            return ("exit", rng.choice(procs))
        if what < 0.7:
            odd = rng.choice(ODD_PATHS)
            kind = rng.choice(("stat", "unlink", "mkdir", "rmdir", "listdir", "open", "link", "rename"))
            if kind == "open":
                return ("open", rng.choice(procs), odd, rng.choice(FLAGS), session.fresh("f"))
            if kind in ("link", "rename"):
                other = rng.choice(existing or list(DEFAULT_PATHS))
                return (kind, odd, other) if rng.random() < 0.5 else (kind, other, odd)
            return (kind, odd)
        if what < 0.78:  # an access mode of 3, an unknown flag bit
            flags = rng.choice((O_ACCMODE, O_RDWR | 0o4000000))
            return ("open", rng.choice(procs), rng.choice(DEFAULT_PATHS), flags, session.fresh("f"))
        if what < 0.85 and closed:
            return (rng.choice(("fstat", "close", "fsync")), rng.choice(closed))
        if not fds:
            return ("spawn", session.fresh("p"))
        fd = rng.choice(fds)
        return rng.choice((
            ("read", fd, -1), ("pread", fd, 5, -1), ("pread", fd, -1, 0), ("pwrite", fd, data(3, 1), -1),
            ("ftruncate", fd, -1), ("lseek", fd, -5, 0), ("lseek", fd, 0, 7), ("lseek", fd, -9000, 1),
        ))  # fmt: skip


def run_one(
    seed: int,
    steps: int,
    mutant: str | None = None,
    *,
    make: Callable[[], FileSystem] | None = None,
    extended: bool = True,
) -> str | None:
    """Run ``steps`` steps of :class:`StepGenerator` (``extended`` or not) on the model
    and UMFS — or ``make()``, or the mutant ``mutant``: a broken UMFS of
    :data:`~memoracle.umfs.mutants.UMFS_MUTANTS` or a broken model of
    :data:`~memoracle.umfs.model_mutants.FS_MUTANTS`; ``None`` if they agreed
    throughout, else the report of the first disagreement."""
    rng = random.Random(seed)
    extra = random.Random(f"umfs extensions {seed}") if extended else None
    if mutant is None:
        right = make() if make is not None else make_umfs()
        session = Session(ModelFs(), right, reproduce="replay(ModelFs, make_umfs, steps)")
    else:
        from memoracle.umfs.model_mutants import FS_MUTANTS
        from memoracle.umfs.mutants import UMFS_MUTANTS

        if mutant in UMFS_MUTANTS:
            broken: FileSystem = UMFS_MUTANTS[mutant].mkfs(Machine(dram_size=16 << 20, scm_size=16 << 20))
        else:
            broken = FS_MUTANTS[mutant]()
        session = Session(ModelFs(), broken, reproduce=f"replay(ModelFs, {mutant}, steps)")
    generator = StepGenerator(rng, session, extra)
    try:
        for _ in range(steps):
            session.apply(generator.next())
            session.after_step()
    except ConformanceError as error:
        return str(error)
    return None


def umfs_campaign(
    seed: int, steps: int, make: Callable[[], FileSystem] | None = None, *, extended: bool = True
) -> str | None:
    """Run ``steps`` steps (see :func:`run_one`); ``None`` if UMFS (or ``make()``) agreed
    with the model throughout."""
    report = run_one(seed, steps, make=make, extended=extended)
    return None if report is None else f"{report}\nreproduce: memoracle umfs campaign --seed {seed} --runs 1 --steps {steps}"


def add_command(commands: Any) -> None:
    """Register ``umfs campaign`` (``memoracle umfs campaign --seed S --runs N ...``): run
    ``k`` is :func:`run_one` with seed ``S + k``, on any back-end (:mod:`memoracle.execution`)."""
    from memoracle.execution.seeded import add_campaign_command
    from memoracle.umfs.model_mutants import FS_MUTANTS
    from memoracle.umfs.mutants import UMFS_MUTANTS

    add_campaign_command(commands, "umfs", run_one, steps=300, mutants=[*UMFS_MUTANTS, *FS_MUTANTS],
                         what="UMFS against the model step by step, fsck after each")  # fmt: skip
