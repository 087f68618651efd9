"""The seeded UMFS campaign of ``memoracle check``: its step mix reaches cross-directory
renames, open directories and page reuse, and catches the UMFS mutants that need them
(:mod:`memoracle.umfs.mutants`), which the plain mix passes."""

from __future__ import annotations

import pytest

from impl.mmu_emu import Machine
from memoracle.umfs.campaign import StepGenerator, run_one
from memoracle.umfs.conformance import Session
from memoracle.umfs.mutants import UMFS_MUTANTS
from spec.umfs_api import O_RDONLY
from spec.umfs_model import ModelFs

STEPS = 300


#: The first seed whose extended run catches each mutant (the plain run of that seed
#: passes it).
FIRST_CATCH = {
    "cross-rename-keeps-parent-links": 0,
    "open-directory-grows-the-inode": 1,
    "fresh-page-not-cleared": 0,
    "write-only-mapped": 2,
}


def test_every_mutant_is_listed() -> None:
    assert set(FIRST_CATCH) == set(UMFS_MUTANTS)


@pytest.mark.parametrize("name", sorted(UMFS_MUTANTS))
def test_each_mutant_is_caught_only_with_the_extensions(name: str) -> None:
    seed = FIRST_CATCH[name]
    assert run_one(seed, STEPS, name, extended=False) is None  # the plain mix never gets there
    report = run_one(seed, STEPS, name)
    assert report is not None and "--- reproduce" in report


def test_the_real_umfs_passes_the_check_seed() -> None:
    assert run_one(0, STEPS) is None


def test_the_extensions_generate_their_situations() -> None:
    import random

    session = Session(ModelFs(), ModelFs())
    generator = StepGenerator(random.Random(1), session, random.Random("umfs extensions 1"))
    seen: set[str] = set()
    for _ in range(600):
        step = generator.next()
        ok = session.apply(step)
        session.after_step()
        if not ok:
            continue
        if step[0] == "rename" and step[1].rsplit("/", 1)[0] != step[2].rsplit("/", 1)[0]:
            seen.add("rename across " + session.left.stat(step[2]).kind)
        if step[0] == "open" and step[3] == O_RDONLY and session.fds[step[4]].kind == "dir":
            seen.add("directory opened")
        if step[0] == "rmdir" and any(d == step[1] for d in generator.open_dirs.values()):
            seen.add("open directory removed")
        if step[0] == "pwrite" and session.steps[-2][0] == "ftruncate":
            seen.add("write past a truncate")
    assert seen == {
        "rename across file", "rename across dir", "directory opened", "open directory removed",
        "write past a truncate",
    }  # fmt: skip


def test_a_directory_removed_while_open_lives_until_its_close() -> None:
    """fsck used to reject it ("directory named 0 times"); the model allows it, as Linux."""
    from impl.umfs import Umfs

    fs = Umfs.mkfs(Machine(dram_size=16 << 20, scm_size=16 << 20))
    pid = fs.spawn()
    fs.mkdir("/d")
    fs.mkdir("/d/a")
    fd = fs.open(pid, "/d/a", O_RDONLY)
    fs.rmdir("/d/a")
    fs.check_invariants()
    assert fs.fstat(pid, fd).nlink == 0 and fs.listdir("/d") == []
    fs.close(pid, fd)
    fs.check_invariants()
