"""The lazy crash explorer: exhaustive, exact, and equal to brute-force enumeration.

The differential test (:func:`memoracle.umfs.crash_differential.differential`) runs a
workload lazily and by enumerating every allowed image (no cap), at every crash point of
the workload and of its recovery, and asks that the classes partition the images
exactly, with equal outcomes; it must catch the explorer's own mutants. The workloads here
are a few whose enumeration takes seconds; the benchmark runs every one-operation
workload small enough (``crash.differential_*`` figures).
"""

from __future__ import annotations

import json

import pytest

from memoracle.cli import main
from memoracle.machine.lazy_mutants import LAZY_MUTANTS
from memoracle.umfs.crash_campaign import SETUP, CampaignConfig, run_campaign
from memoracle.umfs.crash_differential import TooLarge, differential
from memoracle.umfs.crash_mutants import DIFFERENTIAL_WITNESSES, UMFS_MUTANTS
from memoracle.umfs.lazy_explorer import LazyCrashExplorer
from spec.crash_recovery import Op

#: Workloads whose every crash point (and their recoveries') enumeration takes seconds.
SMALL: list[tuple[tuple[Op, ...], bool, bool]] = [
    ((("write", "/a", 0, 100, 2),), False, False),
    ((("truncate", "/a", 12000),), False, False),
    ((("rename", "/a", "/d/a"),), False, False),
    ((("truncate", "/a", 12000),), True, False),
    ((("link", "/a", "/d/c"),), True, False),
    ((("truncate", "/a", 12000),), False, True),
]


@pytest.mark.parametrize(
    "ops, recovery, every_store", SMALL,
    ids=[f"{ops[0][0]}{'+recovery' if r else ''}{'+every-store' if e else ''}" for ops, r, e in SMALL],
)  # fmt: skip
def test_lazy_classes_are_exactly_the_enumerated_images(ops: tuple[Op, ...], recovery: bool, every_store: bool) -> None:
    report = differential(SETUP, ops, recovery_crashes=recovery, every_store=every_store)
    assert report.agree, report.mismatches[:5]
    assert report.images > report.classes > 0  # classes are coarser than images
    if recovery:
        assert report.recovery_images > report.recovery_classes > 0
    assert report.lazy_violations == report.enumerated_violations == 0


@pytest.mark.parametrize("name", list(LAZY_MUTANTS))
def test_the_differential_test_catches_a_broken_lazy_explorer(name: str) -> None:
    report = differential(SETUP, (("write", "/a", 0, 100, 2),), lazy=LAZY_MUTANTS[name])
    assert not report.agree


#: The mutants whose small witnesses enumerate in about a second (the benchmark runs all).
QUICK = ["size_before_links", "attr_writeback_unordered", "old_size_not_logged", "overwrite_before_backup"]


@pytest.mark.parametrize("name", QUICK)
def test_both_ways_find_the_same_violations_of_a_mutant(name: str) -> None:
    spec = UMFS_MUTANTS[name]
    setup, ops = DIFFERENTIAL_WITNESSES[name]
    report = differential(setup, ops, variant=spec.variant, recovery_crashes=spec.recovery_crashes)
    assert report.agree, report.mismatches[:5]
    assert report.lazy_violations > 0 and report.enumerated_violations > 0


def test_every_mutant_but_one_has_a_small_witness() -> None:
    assert set(DIFFERENTIAL_WITNESSES) == set(UMFS_MUTANTS) - {"log_not_flushed"}
    assert set(QUICK) <= set(DIFFERENTIAL_WITNESSES)


def test_enumeration_refuses_a_crash_point_too_large() -> None:
    with pytest.raises(TooLarge):
        differential(SETUP, (("write", "/a", 4096, 5000, 4),), max_images=1000)


@pytest.mark.parametrize("name", list(UMFS_MUTANTS))
def test_every_mutant_is_caught_lazily(name: str) -> None:
    spec = UMFS_MUTANTS[name]
    explorer = spec.lazy_explorer()
    found = explorer.explore(spec.setup, spec.ops)
    assert found, f"{name} survived the lazy explorer"
    assert "CRASH-CONSISTENCY VIOLATION" in found[0].render() and "images that" in found[0].render()


def test_exhaustive_report_counts_every_allowed_image() -> None:
    explorer = LazyCrashExplorer()
    assert not explorer.explore(SETUP, (("write", "/a", 4096, 5000, 4),))
    stats = explorer.stats
    assert stats.exhaustive and stats.coverage == 1 and stats.covered_images == stats.allowed_images
    assert stats.allowed_images > 10**70  # an append's data lines, never enumerated
    assert stats.classes < 100 and stats.recovery_crash_points > 0
    assert stats.recovery_covered_images == stats.recovery_allowed_images
    assert stats.summary().startswith("exhaustive, coverage 1.0 (")


def test_a_cap_on_classes_is_reported_as_sampled() -> None:
    explorer = LazyCrashExplorer(max_classes=1, recovery_crashes=False)
    explorer.explore(SETUP, (("creat", "/b"),))
    stats = explorer.stats
    assert stats.sampled_points > 0 and not stats.exhaustive
    assert stats.coverage < 1 and stats.coverage_float() < 1.0
    assert stats.summary().startswith("sampled, coverage ")
    assert stats.as_json()["uncovered_images"] == stats.allowed_images - stats.covered_images > 0


def test_shards_merge_what_is_deduplicated() -> None:
    """``--jobs 2`` reports what ``--jobs 1`` does: counts add up, digest sets unite."""
    config = CampaignConfig(max_ops=1, recovery_crashes=False)
    whole, _ = run_campaign(config)
    parts, _ = run_campaign(config, jobs=2)
    for key in ("crash_points", "allowed_images", "classes", "covered_images", "distinct_crash_states", "states"):
        assert whole.as_json()[key] == parts.as_json()[key], key
    assert whole.exhaustive and parts.exhaustive


def test_crash_cli_says_exhaustive_and_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crash", "umfs", "--ops", "1", "--no-recovery-crashes", "--shard", "5/16", "--json"]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)["stats"]
    assert stats["method"] == "lazy" and stats["exhaustive"] is True and stats["coverage"] == 1.0
    assert stats["covered_images"] == stats["allowed_images"] > stats["classes"] > 0
    assert "exhaustive, coverage 1.0" in captured.err.strip().splitlines()[-1]
    assert main(["crash", "umfs", "--ops", "1", "--no-recovery-crashes", "--shard", "0/16", "--max-classes", "1"]) == 0
    assert "sampled, coverage" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["crash", "umfs", "--images", "4", "--max-classes", "1"]) == 2
