"""The crash explorer against UMFS mutants: the real UMFS passes every witness, every
mutant is caught on its witness with a report naming the crash point.

Settings are the witnesses' own (``image_limit`` 16; recovery crashes only for the
mutants of classes 9 and 10, which need them). The whole file runs in a few seconds.
"""

from __future__ import annotations

import pytest

from impl.mmu_emu import Machine
from impl.scm_emu import PersistEvent, ScmEmu
from impl.umfs import Umfs
from memoracle.umfs.crash_explorer import DRAM_BYTES, SCM_BYTES, CrashExplorer, Variant
from memoracle.umfs.crash_mutants import (
    SETUP,
    UMFS_MUTANTS,
    MutantSpec,
    catch,
    mutation_table,
    table_markdown,
)
from spec.crash_recovery import Driver, Op, model_trees, run_op
from spec.persistency import PersistMode

#: Every kind of operation, failing ones included (as in the crash campaign's alphabet).
ALPHABET: tuple[Op, ...] = (
    ("creat", "/b"),
    ("write", "/a", 0, 100, 2),
    ("write", "/a", 4000, 200, 3),
    ("write", "/a", 4096, 5000, 4),
    ("write", "/b", 8000, 300, 5),
    ("truncate", "/a", 0),
    ("truncate", "/a", 3000),
    ("truncate", "/a", 12000),
    ("link", "/a", "/d/c"),
    ("rename", "/a", "/b"),
    ("rename", "/b", "/d/a"),
    ("unlink", "/d/c"),
    ("rename", "/d", "/e"),
    ("mkdir", "/f"),
    ("rmdir", "/f"),
    ("close", "/a"),
    ("unlink", "/b"),
    ("close", "/b"),
)

WITNESSES = sorted(
    {(spec.setup, spec.ops, spec.recovery_crashes) for spec in UMFS_MUTANTS.values()},
    key=repr,
)


def test_one_mutant_per_bug_class() -> None:
    assert {spec.bug_class for spec in UMFS_MUTANTS.values()} == set(range(1, 13))
    for name, spec in UMFS_MUTANTS.items():
        assert spec.name == name and spec.description and spec.ops
        if spec.variant.umfs_cls is not Umfs:
            assert spec.variant.umfs_cls.__doc__, f"{name}: say what the mutant breaks"


@pytest.mark.parametrize("every_store", [False, True], ids=["fences", "every-store"])
@pytest.mark.parametrize(
    "setup, ops, recovery", WITNESSES, ids=[f"{ops}{'+recovery' if r else ''}" for _, ops, r in WITNESSES]
)
def test_real_umfs_survives_every_witness(
    setup: tuple[Op, ...], ops: tuple[Op, ...], recovery: bool, every_store: bool
) -> None:
    explorer = CrashExplorer(Variant(), image_limit=16, every_store=every_store, recovery_crashes=recovery)
    violations = explorer.explore(setup, ops)
    assert not violations, violations[0].render()
    assert explorer.stats.images > 0


@pytest.mark.parametrize("name", list(UMFS_MUTANTS))
def test_mutant_is_caught_on_its_witness(name: str) -> None:
    spec = UMFS_MUTANTS[name]
    violations = spec.explorer().explore(spec.setup, spec.ops)
    assert violations, f"{name} (class {spec.bug_class}) survived its witness"
    violation = violations[0]
    report = violation.render()
    assert report.startswith(f"CRASH-CONSISTENCY VIOLATION in {name}")
    assert "crash:    op #" in report and violation.crash.op
    assert violation.error or violation.observed is not None
    if spec.recovery_crashes:
        assert violation.crash.recovery_fence is not None, "a recovery bug is found by crashing recovery"


@pytest.mark.parametrize("name", list(UMFS_MUTANTS))
def test_lazy_explorer_catches_mutant(name: str) -> None:
    """The lazy explorer (the campaign's) catches every mutant on its witness: at the
    fences, or (classes 9 and 10) with crashes during recovery, after at least one class,
    with a report naming the mutant, as the mutation table says."""
    spec = UMFS_MUTANTS[name]
    found = catch(spec, "recovery_crashes" if spec.recovery_crashes else "fences")
    assert found is not None, f"{name} (class {spec.bug_class}) survived the lazy explorer on its witness"
    assert isinstance(found["classes_until_caught"], int) and found["classes_until_caught"] >= 1
    assert str(found["report"]).startswith(f"CRASH-CONSISTENCY VIOLATION in {name}")


@pytest.mark.parametrize("name", list(UMFS_MUTANTS))
def test_mutant_is_correct_while_nothing_crashes(name: str) -> None:
    """A mutant is a crash-consistency bug only: without a crash it raises nothing and
    shows the model's tree after every operation (its witness, then the campaign's
    whole alphabet)."""
    spec = UMFS_MUTANTS[name]
    ops = spec.ops + ALPHABET
    trees = model_trees(spec.setup, ops)
    machine = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, PersistMode.ADR))
    fs = spec.variant.mkfs(machine)
    driver = Driver(fs.spawn())
    for op in spec.setup:
        run_op(fs, driver, op)
    assert dict(fs.observe()) == trees[0]
    for index, op in enumerate(ops):
        run_op(fs, driver, op)
        assert dict(fs.observe()) == trees[index + 1], f"{name} differs from the model after {op}"


def _recovery_only(spec: MutantSpec) -> bool:
    return spec.recovery_crashes


@pytest.mark.parametrize("name", [n for n, s in UMFS_MUTANTS.items() if _recovery_only(s)])
def test_recovery_mutants_need_recovery_crashes(name: str) -> None:
    """Classes 9 and 10 are bugs of recovery interrupted: one recovery is correct."""
    spec = UMFS_MUTANTS[name]
    for every_store in (False, True):
        explorer = spec.explorer(every_store=every_store, recovery_crashes=False)
        assert not explorer.explore(spec.setup, spec.ops)


def test_mutation_table_rows() -> None:
    rows = mutation_table(limit=16, names=["log_fence_missing", "reinsert_entry_undo"])
    assert [row["caught_by"] for row in rows] == ["fences", "recovery_crashes"]
    for row in rows:
        assert isinstance(row["classes_until_caught"], int) and row["classes_until_caught"] > 0
        assert isinstance(row["images_until_caught"], int) and row["images_until_caught"] > 0
    markdown = table_markdown(rows)
    assert markdown.count("\n") == 3 and "`reinsert_entry_undo` | 9 |" in markdown


def _torn_superblock_images() -> list[str]:
    """Crash a clean unmount before each of its fences; which images fail to mount."""
    machine = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, PersistMode.ADR))
    fs = Umfs.mkfs(machine, inodes=32)
    driver = Driver(fs.spawn())
    for op in SETUP:
        run_op(fs, driver, op)
    failures: list[str] = []

    def hook(event: PersistEvent) -> None:
        if event.kind != "sfence":
            return
        for image in machine.scm.crash_images(64):
            blob = machine.scm.image_bytes(image)
            crashed = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, PersistMode.ADR, image=blob))
            try:
                Umfs.mount(crashed).check_invariants()
            except Exception as error:  # noqa: BLE001 - the failure is the finding
                failures.append(f"{fs.pm.site}: {error}; {machine.scm.describe(image)}")

    machine.scm.add_hook(hook)
    fs.unmount()
    return failures


def test_unmount_crash_leaves_a_mountable_image() -> None:
    """Regression: the clean flag and the superblock's CRC used to be rewritten by one
    non-atomic store, so a crash between left an image that would not mount."""
    failures = _torn_superblock_images()
    assert not failures, failures[0]


#: The mutants only the extended workloads reach, each with the campaign workload
#: (``memoracle crash umfs --ops 2``) that catches it: a directory open while it grows,
#: a process exiting with the file's last descriptor, a directory moved into another,
#: a write into pages a truncate freed.
EXTENDED_ONLY = {
    "dir_attr_writeback_unordered": (("opendir", "/d"), ("link", "/a", "/d/c"), ("close", "/d")),
    "exit_writeback_unordered": (
        ("spawn", "p2"), ("open", "p2", "/a"), ("write", "/a", 4096, 5000, 4), ("close", "/a"), ("exit", "p2"),
    ),
    "parent_pointer_after": (("mkdir", "/e"), ("rename", "/d", "/e/d")),
    "reused_page_zeros_unflushed": (("truncate", "/a", 0), ("write", "/a", 0, 100, 2)),
}


@pytest.mark.parametrize("name", sorted(EXTENDED_ONLY))
def test_only_the_extended_workloads_catch(name: str) -> None:
    from memoracle.umfs.checks import CRASH_WORKLOADS
    from memoracle.umfs.crash_campaign import SETUP as CAMPAIGN_SETUP
    from memoracle.umfs.crash_campaign import ALPHABET as CAMPAIGN_ALPHABET
    from memoracle.umfs.crash_campaign import workloads

    variant = UMFS_MUTANTS[name].variant
    old = CRASH_WORKLOADS[:5] + tuple((op,) for op in CAMPAIGN_ALPHABET)  # the check's and --ops 1's, before
    explorer = UMFS_MUTANTS[name].lazy_explorer(recovery_crashes=True, max_classes=None)
    assert all(not explorer.explore(CAMPAIGN_SETUP, ops) for ops in old), f"{name} caught without the extension"
    new = CRASH_WORKLOADS[5:]
    assert any(UMFS_MUTANTS[name].lazy_explorer().explore(CAMPAIGN_SETUP, ops) for ops in new), f"{name}: check"
    campaign = EXTENDED_ONLY[name]
    assert campaign in workloads(2)
    assert UMFS_MUTANTS[name].lazy_explorer().explore(CAMPAIGN_SETUP, campaign), f"{name}: campaign"
