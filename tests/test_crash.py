"""Crash consistency: the allowed-state spec, the explorer, campaigns and their CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import settings

from memoracle.umfs.crash_campaign import (
    ALPHABET,
    CONTEXTS,
    SETUP,
    CampaignConfig,
    count_workloads,
    run_campaign,
    shard_of,
    shard_workloads,
    workloads,
)
from memoracle.umfs.crash_explorer import CrashExplorer, Variant
from spec.crash_recovery import allowed_after_crash, model_trees, payload
from spec.persistency import PersistMode

SMALL = dict(image_limit=8)


def test_allowed_states_are_before_or_after_the_operation_in_flight() -> None:
    trees = model_trees(SETUP, [("creat", "/b"), ("unlink", "/a")])
    assert len(trees) == 3
    assert allowed_after_crash(trees, 0) == [trees[0], trees[1]]
    assert allowed_after_crash(trees, 2) == [trees[2]]  # after the last op: only the end
    assert "/b" not in trees[0] and "/b" in trees[1] and "/a" not in trees[2]


def test_a_failing_operation_allows_only_the_old_tree() -> None:
    trees = model_trees(SETUP, [("rmdir", "/nonesuch")])
    assert trees[0] == trees[1]
    assert allowed_after_crash(trees, 0) == [trees[0]]


def test_payload_is_deterministic_and_never_zero_at_the_start() -> None:
    assert payload(10, 3) == payload(10, 3) and payload(10, 3) != payload(10, 4)
    assert payload(300, 0)[0] != 0 and len(payload(300, 0)) == 300


@pytest.mark.parametrize(
    "ops",
    [
        (("write", "/a", 4000, 200, 3),),
        (("write", "/a", 8000, 300, 4), ("truncate", "/a", 3000)),
        (("creat", "/b"), ("rename", "/a", "/b")),
        (("link", "/a", "/d/c"), ("unlink", "/a")),
        (("rename", "/d", "/e"), ("rmdir", "/e")),
        (("truncate", "/a", 12000),),  # regression: a torn U-Log record that a CRC-32 validated
    ],
)
def test_umfs_recovers_every_crash_image(ops: tuple[tuple[object, ...], ...]) -> None:
    explorer = CrashExplorer(**SMALL)  # type: ignore[arg-type]
    violations = explorer.explore(SETUP, ops)  # type: ignore[arg-type]
    assert not violations, violations[0].render()
    assert explorer.stats.images > 0 and explorer.stats.crash_points > len(ops)


def test_umfs_recovers_in_eadr_mode_too() -> None:
    explorer = CrashExplorer(mode=PersistMode.EADR, **SMALL)  # type: ignore[arg-type]
    assert not explorer.explore(SETUP, (("write", "/a", 4096, 5000, 4), ("unlink", "/a")))


def test_dropping_the_log_flush_is_caught_with_a_readable_report() -> None:
    def no_log_flush(fs: object) -> None:
        fs.pm.skip_flush.add("log")  # type: ignore[attr-defined]

    explorer = CrashExplorer(Variant("no-log-flush", configure=no_log_flush), **SMALL)  # type: ignore[arg-type]
    violations = explorer.explore(SETUP, (("write", "/a", 4000, 200, 3),))
    assert violations
    text = violations[0].render()
    assert "write(/a, 4000, 200, 3)" in text and "persisted at the crash" in text
    assert "_write_at" in text  # the UMFS stack at the crash
    assert violations[0].as_json()["crash"]["op_index"] == 0  # type: ignore[index]


def test_shards_partition_the_workloads() -> None:
    total = count_workloads(2)
    contexts = len(CONTEXTS) * (1 + len(ALPHABET))  # each around nothing, or one operation
    assert total == len(ALPHABET) + len(ALPHABET) ** 2 + contexts == len(workloads(2))
    assert sum(count_workloads(2, (i, 3)) for i in range(3)) == total
    plain = [ops for ops in workloads(2) if all(op in ALPHABET for op in ops)]
    assert len(plain) == len(ALPHABET) + len(ALPHABET) ** 2
    for shards in (3, 20):  # by first operation or context; by the next one past 16 shards
        seen = [ops for i in range(shards) for ops in shard_workloads(2, i, shards)]
        assert sorted(map(repr, seen)) == sorted(map(repr, workloads(2)))
        assert all(shard_of(ops[:1], shards) == shard_of(ops, shards) for ops in plain if shards <= 16)
    for prefix, suffix in CONTEXTS:  # a context's workloads share its shard (up to 16 shards)
        inside = [prefix + (op,) + suffix for op in ALPHABET]
        assert {shard_of(ops, 16) for ops in inside} == {shard_of(prefix + suffix, 16)}


def test_a_shard_and_the_whole_agree() -> None:
    config = CampaignConfig(max_ops=1, method="enumeration", image_limit=2, recovery_crashes=False)
    whole, _ = run_campaign(config)
    parts = [run_campaign(config, shard=(i, 2))[0] for i in range(2)]
    assert whole.workloads == sum(p.workloads for p in parts) == len(ALPHABET) + len(CONTEXTS)
    assert whole.crash_points == sum(p.crash_points for p in parts)


def test_crash_cli_json_and_usage_errors() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memoracle", "crash", "umfs", "--ops", "1", "--images", "2",
         "--no-recovery-crashes", "--shard", "0/8", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["stats"]["workloads"] == 3 and out["violations"] == []  # creat, unlink; /d opened and closed
    bad = subprocess.run(
        [sys.executable, "-m", "memoracle", "crash", "umfs", "--shard", "9/2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_fuzzing_shrinks_a_failing_workload_of_a_mutant() -> None:
    from memoracle.umfs.crash_campaign import fuzz

    broken = CampaignConfig(method="enumeration", image_limit=4, recovery_crashes=False, mutant="invalidate_before_data")
    stats, smallest, report = fuzz(broken, examples=40, max_ops=4)
    assert smallest is not None and len(smallest) == 1, smallest
    assert "CRASH-CONSISTENCY VIOLATION" in report and stats.images > 0


def test_fuzzing_passes_umfs() -> None:
    from memoracle.umfs.crash_campaign import fuzz

    examples = max(8, settings.default.max_examples)
    config = CampaignConfig(method="enumeration", image_limit=4, recovery_crashes=False)
    stats, smallest, _ = fuzz(config, examples=examples, max_ops=3)
    # Hypothesis stops before ``examples`` only when it runs out of distinct workloads
    # (the fuzz profile asks for more than there are of at most 3 operations).
    space = sum(len(ALPHABET) ** n for n in range(1, 4))
    assert smallest is None and stats.workloads >= min(examples, space // 2)


def test_the_ulog_checksum_sees_records_that_differ_by_a_crc_codeword() -> None:
    """Two undo records of an attribute cache line (data, then its own CRC-32) differ by a
    CRC-32 codeword: a CRC-32 over the log could not tell them apart (so a record torn
    between stale and new bytes validated, and recovery restored the stale line); the
    U-Log's checksum must."""
    import struct
    import zlib

    from impl.umfs_layout import log_checksum, pack_attrs

    head = struct.pack("<QQ", 0x1000000F040, 32)
    old, new = head + pack_attrs(2, 5000, 0x1234), head + pack_attrs(2, 12000, 0x9999)
    crc = [zlib.crc32(old), zlib.crc32(new)]
    assert old != new and crc[0] == crc[1]  # what went wrong with CRC-32
    assert log_checksum(1, 1, len(old), 9, old) != log_checksum(1, 1, len(new), 9, new)


@pytest.mark.parametrize("method", ["--images", "--max-classes"])
def test_fuzz_reports_a_planted_mutant_and_its_command_reproduces_it(
    method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fuzzer that replays an example it saw fail must see the violation again: the
    explorers cache verdicts, and a cached failing one used to be skipped (Hypothesis
    then raised FlakyFailure, or shrank to a workload with an empty report)."""
    from memoracle.cli import main

    argv = ["crash", "umfs", "--fuzz", "--examples", "16", "--ops", "2", "--seed", "0", "--no-recovery-crashes",
            method, "2" if method == "--images" else "50", "--mutant", "size_before_links"]  # fmt: skip
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "CRASH-CONSISTENCY VIOLATION in size_before_links" in out
    assert "workload: truncate(/a, 12000)\n" in out  # shrunk to the one operation that fails
    reproduce = next(line for line in out.splitlines() if line.startswith("reproduce: memoracle "))
    again = reproduce.removeprefix("reproduce: memoracle ").split()
    assert again[again.index("--mutant") + 1] == "size_before_links"
    assert main(again) == 1
    rerun = capsys.readouterr().out
    report = out[out.index("CRASH-CONSISTENCY"):out.index("reproduce:")]
    assert report in rerun


def test_a_violation_replayed_from_the_lazy_cache_names_this_workloads_crash_point() -> None:
    from memoracle.umfs.crash_mutants import UMFS_MUTANTS
    from memoracle.umfs.lazy_explorer import LazyCrashExplorer

    explorer = LazyCrashExplorer(UMFS_MUTANTS["size_before_links"].variant, recovery_crashes=False)
    first = explorer.explore(SETUP, (("close", "/a"), ("truncate", "/a", 12000)))  # the close does nothing
    assert first and first[0].crash.op_index == 1
    again = explorer.explore(SETUP, (("truncate", "/a", 12000),))  # the same crash state, from the cache
    assert again and again[0].crash.op_index == 0 and "op #0 truncate(/a, 12000)" in again[0].render()
