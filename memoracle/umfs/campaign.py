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
from typing import Any

from impl.mmu_emu import Machine
from impl.umfs import Umfs
from memoracle.umfs.conformance import (
    DEFAULT_PATHS,
    OFFSETS,
    SIZES,
    ConformanceError,
    Session,
    Step,
    data,
)
from spec.umfs_api import O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY
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


def run_one(seed: int, steps: int, mutant: str | None = None) -> str | None:
    """Run ``steps`` random steps on the model and UMFS (or the model mutant ``mutant`` of
    :data:`~memoracle.umfs.model_mutants.FS_MUTANTS`); ``None`` if they agreed throughout,
    else the report of the first disagreement."""
    rng = random.Random(seed)
    if mutant is None:
        session = Session(ModelFs(), make_umfs(), reproduce="replay(ModelFs, make_umfs, steps)")
    else:
        from memoracle.umfs.model_mutants import FS_MUTANTS

        session = Session(ModelFs(), FS_MUTANTS[mutant](), reproduce=f"replay(ModelFs, {mutant}, steps)")
    try:
        for _ in range(steps):
            session.apply(random_step(rng, session))
            session.after_step()
    except ConformanceError as error:
        return str(error)
    return None


def umfs_campaign(seed: int, steps: int) -> str | None:
    """Run ``steps`` random steps; ``None`` if UMFS agreed with the model throughout."""
    report = run_one(seed, steps)
    return None if report is None else f"{report}\nreproduce: memoracle check --system umfs --seed {seed}"


def add_command(commands: Any) -> None:
    """Register ``umfs campaign`` (``memoracle umfs campaign --seed S --runs N ...``): run
    ``k`` is :func:`run_one` with seed ``S + k``, on any back-end (:mod:`memoracle.execution`)."""
    from memoracle.execution.seeded import add_campaign_command
    from memoracle.umfs.model_mutants import FS_MUTANTS

    add_campaign_command(commands, "umfs", run_one, steps=300, mutants=list(FS_MUTANTS),
                         what="UMFS against the model step by step, fsck after each")  # fmt: skip
