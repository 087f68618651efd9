"""The execution layer: the same result on every back-end and shard count, dying workers,
shards that crash workers, a lost scheduler, the journal and --resume, version checks.

One 2-worker Dask ``LocalCluster`` (real worker processes) is shared by the module; it is
started with ``allowed-failures`` 1, so a shard that kills every worker that runs it is
given up after two deaths instead of four.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterator

import dask
import pytest

from execution_helpers import Toy, crash_shard_that_kills, merge_toy, toy_campaign
from memoracle.execution import SchedulerLost, VersionMismatch, Where, execute, parse_where
from memoracle.execution.backends import LocalPool
from memoracle.execution.campaign import block, shard_count, strided
from memoracle.execution.cluster import DaskCluster
from memoracle.execution.journal import JournalError
from memoracle.umfs.crash_campaign import CampaignConfig, count_workloads
from memoracle.umfs.crash_shards import EFFORT_FIELDS, crash_campaign, merge_crash

IN_PROCESS = parse_where(None, None)
POOL = parse_where(2, None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    markers = tmp_path_factory.mktemp("markers")  # for shards that kill their worker once
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MEMORACLE_TEST_MARKERS", str(markers))  # inherited by the workers
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            with DaskCluster(parse_where(None, "local:2")) as running:
                yield running


def test_shards_partition_the_units() -> None:
    for units in (0, 1, 7, 100):
        for shards in (1, 3, 8):
            for split in (strided, block):
                covered = sorted(u for s in range(shards) for u in split(units, s, shards))
                assert covered == list(range(units))
    assert shard_count(272) == 272 and shard_count(10**6) == 1024 and shard_count(6000, 2000) == 3
    assert shard_count(0) == 1


def test_back_ends_are_chosen_by_one_option() -> None:
    assert parse_where(None, None) == Where("process", 1)
    assert parse_where(4, None) == Where("pool", 4)
    assert parse_where(None, "local:2") == Where("dask", local_workers=2)
    assert parse_where(None, "tcp://10.0.0.5:8786") == Where("dask", address="tcp://10.0.0.5:8786")
    for jobs, cluster in ((2, "local:2"), (0, None), (None, "local:0"), (None, "local:x"), (None, "10.0.0.5"),
                          (None, "http://h:1"), (None, "tcp://nohost")):  # fmt: skip
        with pytest.raises(ValueError):
            parse_where(jobs, cluster)


def test_task_names_name_campaign_shard_and_seed() -> None:
    campaign = toy_campaign(Toy())
    key = campaign.key(3)
    assert key.startswith("toy-campaign-") and key.endswith("-seed0-shard3of40")
    assert key == toy_campaign(Toy()).key(3)  # a retry has the same name
    assert key != toy_campaign(Toy(bad=5)).key(3)  # another campaign does not


def test_the_merged_result_is_the_same_for_any_shard_count_and_back_end(cluster: DaskCluster) -> None:
    expected = merge_toy(execute(toy_campaign(Toy(), shards=1), IN_PROCESS).results())
    assert expected["violations"] == [0, 7, 14, 21, 28, 35]
    for shards in (3, 7, 40):
        assert merge_toy(execute(toy_campaign(Toy(), shards=shards), IN_PROCESS).results()) == expected
    assert merge_toy(execute(toy_campaign(Toy()), POOL).results()) == expected
    execution = execute(toy_campaign(Toy()), cluster.where, backend=cluster)
    assert merge_toy(execution.results()) == expected
    assert [o.shard for o in execution.outcomes] == list(range(40))  # shard order, whatever arrived first
    workers = {o.where for o in execution.outcomes}
    assert len(workers) <= 2 and str(os.getpid()) not in " ".join(map(str, workers))  # ran on the workers
    assert all(o.cpu_seconds is not None and o.seconds is not None for o in execution.outcomes)


def test_a_worker_that_dies_mid_run_changes_nothing(cluster: DaskCluster, tmp_path: Path) -> None:
    before = set(cluster.client.run(os.getpid).values())
    toy = Toy(die_once=13, markers=str(tmp_path), pause=0.005)
    execution = execute(toy_campaign(toy), cluster.where, backend=cluster)
    assert (tmp_path / "died-once").exists()  # a worker process really died running shard 13
    assert int((tmp_path / "died-once").read_text()) in before
    assert len(list(tmp_path.glob("attempt-13-of-40-*"))) == 2  # and the shard ran again
    assert not execution.failures()
    assert merge_toy(execution.results()) == merge_toy(execute(toy_campaign(Toy()), IN_PROCESS).results())


def test_a_shard_that_kills_every_worker_is_a_reported_failure(cluster: DaskCluster, tmp_path: Path) -> None:
    execution = execute(toy_campaign(Toy(die_always=5, markers=str(tmp_path))), cluster.where, backend=cluster)
    failures = execution.failures()
    assert [f.shard for f in failures] == [5]
    assert "KilledWorker" in failures[0].reason and failures[0].seed == 0
    assert failures[0].render().endswith("reproduce: toy --shard 5/40")
    assert len(execution.results()) == 39  # every other shard still ran
    assert execution.violations() == 6


def test_the_local_pool_survives_a_dying_worker_and_names_a_killer(tmp_path: Path) -> None:
    toy = Toy(die_once=13, markers=str(tmp_path))
    execution = execute(toy_campaign(toy), POOL)
    assert (tmp_path / "died-once").exists() and not execution.failures()
    assert merge_toy(execution.results()) == merge_toy(execute(toy_campaign(Toy()), IN_PROCESS).results())
    outcomes: dict[int, Any] = {}
    LocalPool(2, allowed_failures=1).run(
        toy_campaign(Toy(die_always=5, raise_on=9)), list(range(40)), outcomes.__setitem__, lambda shard: True
    )
    assert sorted(outcomes) == list(range(40))
    assert "crashed" in outcomes[5] and "died 2 times" in outcomes[5]["crashed"]
    assert outcomes[9]["error"] == "KeyError: 'unit 9'"
    assert all("result" in outcomes[s] for s in range(40) if s not in (5, 9))


class _PoolBrokenAtASubmit(LocalPool):
    """A pool whose fifth submit finds it broken, as when a worker dies between a wait
    and the next submit (seen under load)."""

    def __init__(self) -> None:
        super().__init__(2)
        self.pools = 0

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        pool = super()._pool(workers)
        self.pools += 1
        if self.pools == 1:
            submit, calls = pool.submit, [0]

            def breaking_submit(*args: Any, **kwargs: Any) -> Any:
                calls[0] += 1
                if calls[0] == 5:
                    raise BrokenProcessPool("a child process terminated abruptly")
                return submit(*args, **kwargs)

            pool.submit = breaking_submit  # type: ignore[method-assign]
        return pool


def test_the_local_pool_survives_breaking_at_a_submit() -> None:
    outcomes: dict[int, Any] = {}
    reported: list[int] = []

    def on_done(shard: int, envelope: Any) -> None:
        reported.append(shard)
        outcomes[shard] = envelope

    backend = _PoolBrokenAtASubmit()
    backend.run(toy_campaign(Toy()), list(range(40)), on_done, lambda shard: True)
    assert backend.pools >= 2 and sorted(reported) == list(range(40))  # each exactly once
    alone = execute(toy_campaign(Toy()), IN_PROCESS).results()
    assert merge_toy([outcomes[s]["result"] for s in range(40)]) == merge_toy(alone)


def test_a_shard_that_raises_is_a_failure_with_its_traceback() -> None:
    execution = execute(toy_campaign(Toy(raise_on=9)), IN_PROCESS)
    (failure,) = execution.failures()
    assert failure.shard == 9 and failure.reason == "raised KeyError: 'unit 9'"
    assert "Traceback" in failure.render() and "reproduce: toy --shard 9/40" in failure.render()


def test_a_campaign_that_wants_its_first_violation_skips_later_shards(cluster: DaskCluster) -> None:
    toy = Toy(units=4000, bad=1500, first_only=True)  # violations at 0, 1500, 3000: the first is 0

    def first(results: list[Any]) -> int:
        return min(v for r in results for v in r["violations"])

    alone = execute(toy_campaign(toy), IN_PROCESS)
    assert first(alone.results()) == 0 and sum(o.skipped for o in alone.outcomes) == alone.campaign.shards - 1
    later = Toy(units=4000, bad=1500, first_only=True)
    for where, backend in ((IN_PROCESS, None), (POOL, None), (cluster.where, cluster)):
        execution = execute(toy_campaign(later, shards=8), where, backend=backend)
        assert first(execution.results()) == 0
        assert execution.outcomes[0].ok  # the shard holding the first violation always runs


def test_the_scheduler_lost_mid_run_then_resume_gives_the_same_result(tmp_path: Path) -> None:
    from distributed import LocalCluster

    journal = tmp_path / "run.journal"
    toy = Toy(pause=0.02)
    scheduler = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0")
    seen: list[int] = []

    def lose_the_scheduler_after_five(outcome: Any) -> None:
        seen.append(outcome.shard)
        if len(seen) == 5:
            scheduler.close()

    where = Where("dask", address=scheduler.scheduler_address)
    with pytest.raises(SchedulerLost, match="lost the Dask scheduler"):
        with DaskCluster(where) as remote:
            execute(toy_campaign(toy), where, journal=journal, on_shard=lose_the_scheduler_after_five, backend=remote)
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["campaign"] == "toy campaign" and len(lines) - 1 >= 5
    resumed = execute(toy_campaign(toy), IN_PROCESS, resume=journal)
    assert sum(o.resumed for o in resumed.outcomes) == len(lines) - 1
    assert merge_toy(resumed.results()) == merge_toy(execute(toy_campaign(Toy()), IN_PROCESS).results())
    assert len(journal.read_text().splitlines()) == 41  # header and every shard, each once


def test_an_unreachable_scheduler_is_a_clear_reason() -> None:
    with pytest.raises(SchedulerLost, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
        with DaskCluster(parse_where(None, "tcp://127.0.0.1:1")):
            pass


def test_workers_running_other_code_are_refused(cluster: DaskCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from memoracle.execution import campaign as campaign_module
    from memoracle.execution import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "code_version", lambda: "0.0.1+000000000000")
    with pytest.raises(VersionMismatch, match="runs memoracle 0.1"):
        cluster.check_workers()  # at connect
    monkeypatch.undo()
    monkeypatch.setattr(campaign_module, "code_version", lambda: "0.0.1+000000000000")
    with pytest.raises(VersionMismatch, match="install the same memoracle on every worker"):
        execute(toy_campaign(Toy()), cluster.where, backend=cluster)  # a worker that joined later


def test_the_journal_is_checked_and_a_cut_last_line_ignored(tmp_path: Path) -> None:
    journal = tmp_path / "toy.journal"
    execute(toy_campaign(Toy(), shards=4), IN_PROCESS, journal=journal)
    with pytest.raises(JournalError, match="exists"):
        execute(toy_campaign(Toy(), shards=4), IN_PROCESS, journal=journal)
    with pytest.raises(JournalError, match="another configuration"):
        execute(toy_campaign(Toy(bad=5), shards=4), IN_PROCESS, resume=journal)
    with pytest.raises(JournalError, match="another shard count"):
        execute(toy_campaign(Toy(), shards=5), IN_PROCESS, resume=journal)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:3]) + lines[3][:20])  # the driver died writing shard 2's line
    resumed = execute(toy_campaign(Toy(), shards=4), IN_PROCESS, resume=journal)
    assert [o.resumed for o in resumed.outcomes] == [True, True, False, False]
    journal.write_text(lines[0] + "not json\n" + "".join(lines[1:]))
    with pytest.raises(JournalError, match="line 2"):
        execute(toy_campaign(Toy(), shards=4), IN_PROCESS, resume=journal)


# --------------------------------------------------------------------------- the commands


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from memoracle.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _campaign_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out, _ = _run([*argv, "--json"], capsys)
    report = json.loads(out)
    report.pop("back_end")
    return code, report


@pytest.mark.parametrize(
    "argv",
    [
        ["ksm", "campaign", "--runs", "4", "--steps", "30", "--mutant", "cow_writes_shared"],
        ["ksm", "campaign", "--runs", "3", "--steps", "20"],
        ["sphinx", "campaign", "--runs", "3", "--steps", "60", "--mutant", "replies-reordered"],
        ["umfs", "campaign", "--runs", "3", "--steps", "40", "--mutant", "PreadMovesOffset"],
        ["umfs", "campaign", "--runs", "2", "--steps", "30"],
    ],
    ids=["ksm-mutant", "ksm", "sphinx-mutant", "umfs-mutant", "umfs"],
)
def test_every_seeded_campaign_has_one_verdict_on_every_back_end(
    argv: list[str], cluster: DaskCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, expected = _campaign_json(argv, capsys)
    mutant = "--mutant" in argv
    assert code == (1 if mutant else 0)
    assert bool(expected["failures"]) == mutant and not expected["failed_shards"]
    for failure in expected["failures"]:
        assert failure["reproduce"] == (
            f"memoracle {argv[0]} campaign --seed {failure['seed']} --runs 1 --steps {argv[5]} --mutant {argv[7]}"
        )
    for where in (["--jobs", "2"], ["--cluster", cluster.address]):
        assert _campaign_json([*argv, *where], capsys) == (code, expected)


def test_a_failing_run_reproduces_alone(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _campaign_json(["ksm", "campaign", "--runs", "4", "--steps", "30", "--mutant", "cow_writes_shared"], capsys)
    failure = report["failures"][-1]
    again = failure["reproduce"].split()[1:]
    code, alone = _campaign_json(again, capsys)
    assert code == 1 and [f["report"] for f in alone["failures"]] == [failure["report"].replace(
        f"run {failure['run']}", "run 0")]  # fmt: skip


def test_pct_runs_have_one_verdict_on_every_back_end(
    cluster: DaskCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoracle.spsc import pct_campaign
    from memoracle.spsc.interleave import Scenario, pct
    from impl.cpu_emu import Model
    from spec.spsc_model import Criterion

    monkeypatch.setattr(pct_campaign, "RUNS_PER_SHARD", 100)  # 30 shards; the first violation is in shard 11
    # capacity 1, counters from 0: a workload whose first violation is deep (shard 11)
    argv = ["interleave", "--model", "weak", "--capacity", "1", "--start", "0", "--pct", "3000", "--seed", "1"]
    code, out, _ = _run(argv, capsys)
    assert code == 1 and "found after 1160 executions (run 1159)" in out
    small = Scenario(Model.WEAK, capacity=1, start=0)
    alone = pct(small, Criterion.TOLERANT, runs=3000, seed=1)  # one process, no shards
    assert alone.violation is not None and alone.executions == 1160 and alone.violation.render() in out
    body = out.splitlines()[:-1]  # the verdict line holds the time
    for where in (["--jobs", "2"], ["--cluster", cluster.address]):
        again, more, _ = _run([*argv, *where], capsys)
        assert (again, more.splitlines()[:-1]) == (code, body)
    code, out, _ = _run(["interleave", "--model", "sc", "--pct", "300", "--cluster", cluster.address], capsys)
    assert code == 0 and "300 PCT samples (depth 3) tolerantly linearizable" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["ksm", "campaign", "--runs", "4", "--steps", "30", "--mutant", "cow_writes_shared"],
        ["sphinx", "campaign", "--runs", "3", "--steps", "60", "--mutant", "replies-reordered"],
        ["umfs", "campaign", "--runs", "2", "--steps", "30"],
    ],
    ids=["ksm", "sphinx", "umfs"],
)
def test_cluster_local_starts_and_stops_its_own_workers(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _campaign_json([*argv, "--cluster", "local:2"], capsys) == _campaign_json(argv, capsys)


def test_pct_runs_on_a_cluster_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["interleave", "--model", "sc", "--pct", "300"]
    code, out, _ = _run(argv, capsys)
    assert code == 0 and "300 PCT samples (depth 3) tolerantly linearizable" in out
    again, more, _ = _run([*argv, "--cluster", "local:2"], capsys)
    assert (again, more.splitlines()[:-1]) == (code, out.splitlines()[:-1])  # the verdict line holds the time


def test_execution_options_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, message in (
        (["ksm", "campaign", "--jobs", "2", "--cluster", "local:2"], "give one"),
        (["ksm", "campaign", "--cluster", "local:0"], "local:N wants N from 1"),
        (["ksm", "campaign", "--cluster", "10.0.0.5:8786"], "wants tcp://HOST:PORT"),
        (["ksm", "campaign", "--shard", "1/4", "--jobs", "2"], "--shard runs one shard in this process"),
        (["ksm", "campaign", "--resume", str(tmp_path / "none")], "no such journal"),
        (["ksm", "campaign", "--journal", str(tmp_path / "j"), "--resume", str(tmp_path / "j")], "give one"),
        (["interleave", "--cluster", "local:2"], "--cluster applies to --pct only"),
        (["interleave", "--table", "--jobs", "2"], "--jobs does not apply to --table"),
        (["ksm", "campaign", "--cluster", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler"),
    ):
        code, out, err = _run(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_journal_then_resume_from_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    journal = tmp_path / "ksm.journal"
    argv = ["ksm", "campaign", "--runs", "4", "--steps", "30", "--mutant", "cow_writes_shared"]
    code, first = _campaign_json([*argv, "--journal", str(journal)], capsys)
    lines = journal.read_text().splitlines()
    assert code == 1 and len(lines) == 5
    journal.write_text("\n".join(lines[:3]) + "\n")  # as if the run had stopped after two shards
    assert _campaign_json([*argv, "--resume", str(journal)], capsys) == (code, first)
    assert len(journal.read_text().splitlines()) == 5
    code, _, err = _run([*argv, "--journal", str(journal)], capsys)
    assert code == 2 and f"continue it with --resume {journal}" in err
    code, _, err = _run([*argv[:-1], "no_checksum", "--resume", str(journal)], capsys)
    assert code == 2 and "a journal of another configuration" in err


def test_a_lost_scheduler_is_exit_2_with_how_to_resume(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoracle.execution import options

    def lost(*args: Any, on_shard: Any, **kwargs: Any) -> Any:
        on_shard(options.ShardOutcome(0, "k", {"runs": 1, "failures": []}))
        raise SchedulerLost("lost the Dask scheduler at tcp://10.0.0.5:8786: Connection reset by peer")

    monkeypatch.setattr(options, "execute", lost)
    journal = tmp_path / "ksm.journal"
    code, out, err = _run(["ksm", "campaign", "--journal", str(journal)], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"memoracle ksm campaign: lost the Dask scheduler at tcp://10.0.0.5:8786: Connection reset by peer; "
        f"1 shards are journalled: rerun with --resume {journal}"
    )


def test_a_shard_that_raises_fails_the_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from memoracle.ksm import campaign

    def broken(seed: int, steps: int, mutant: str | None) -> str | None:
        raise ZeroDivisionError("a checker bug")

    monkeypatch.setattr(campaign, "run_one", broken)
    code, out, _ = _run(["ksm", "campaign", "--runs", "2"], capsys)
    assert code == 1
    assert "ksm campaign shard 0/2 (seed 0) raised ZeroDivisionError: a checker bug" in out
    assert "reproduce: memoracle ksm campaign --seed 0 --runs 2 --steps 80 --shard 0/2" in out
    assert out.strip().splitlines()[-1].startswith("2 violations: 0 runs")


# --------------------------------------------------------------------------- the crash campaign

#: Every workload of one operation, every crash image the model allows (lazily), no crash
#: inside recovery: 16 workloads in 16 shards, about a second in one process.
CRASH = ["crash", "umfs", "--ops", "1", "--no-recovery-crashes"]
#: Figures of a crash report that measure effort or time, not results.
CRASH_EFFORT = (*EFFORT_FIELDS, "wall_seconds", "cpu_seconds", "classes_per_cpu_second")


def _crash_verdict(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out, _ = _run([*argv, "--json"], capsys)
    report = json.loads(out)
    report.pop("back_end")
    for name in CRASH_EFFORT:
        report["stats"].pop(name)
    return code, report


@pytest.mark.parametrize("mutant", [None, "log_never_invalidated"], ids=["umfs", "mutant"])
def test_the_crash_campaign_has_one_result_on_every_back_end_and_shard_count(
    mutant: str | None, cluster: DaskCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoracle.umfs import crash_shards

    argv = CRASH + (["--mutant", mutant] if mutant else [])
    code, expected = _crash_verdict(argv, capsys)
    assert code == (1 if mutant else 0) and bool(expected["violations"]) == bool(mutant)
    assert expected["stats"]["workloads"] == count_workloads(1) == 21 and not expected["failed_shards"]
    for where in (["--jobs", "2"], ["--cluster", cluster.address]):
        assert _crash_verdict([*argv, *where], capsys) == (code, expected), where
    config = CampaignConfig(max_ops=1, recovery_crashes=False, mutant=mutant)
    for shards, kept in ((1, 64), (3, 64), (16, 1)):  # any shard count; an explorer kept or not
        monkeypatch.setattr(crash_shards, "EXPLORER_SHARDS", kept)
        stats, violations, _ = merge_crash(execute(crash_campaign(config, shards=shards), IN_PROCESS).results())
        figures = {name: value for name, value in stats.as_json().items() if name not in CRASH_EFFORT}
        assert (figures, violations) == (expected["stats"], expected["violations"]), shards
    if not mutant:  # what the merge must not do: count each shard's distinct states
        results = execute(crash_campaign(config), IN_PROCESS).results()
        assert sum(len(r["stats"]["states"]) for r in results) > expected["stats"]["states"] > 1


def test_crash_fuzzing_has_one_result_on_every_back_end(cluster: DaskCluster, capsys: pytest.CaptureFixture[str]) -> None:
    for extra, verdict in (([], 0), (["--mutant", "log_never_invalidated"], 1)):
        argv = ["crash", "umfs", "--fuzz", "--examples", "30", "--ops", "1", "--no-recovery-crashes", *extra]
        code, expected = _crash_verdict(argv, capsys)
        assert code == verdict and len(expected["violations"]) == verdict and expected["stats"]["workloads"] > 0
        assert _crash_verdict([*argv, "--cluster", cluster.address], capsys) == (code, expected)


def test_crash_journal_then_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    journal = tmp_path / "crash.journal"
    code, first = _crash_verdict([*CRASH, "--journal", str(journal)], capsys)
    lines = journal.read_text().splitlines()
    assert code == 0 and len(lines) == 17
    journal.write_text("\n".join(lines[:6]) + "\n")  # as if the run had stopped after five shards
    assert _crash_verdict([*CRASH, "--resume", str(journal)], capsys) == (code, first)
    assert len(journal.read_text().splitlines()) == 17
    code, _, err = _run([*CRASH, "--eadr", "--resume", str(journal)], capsys)
    assert code == 2 and "a journal of another configuration" in err and len(err.strip().splitlines()) == 1


def test_crash_shards_that_kill_workers_fail_the_run_with_their_reproduce_command(
    cluster: DaskCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoracle.umfs import crash_shards

    # shard 3 kills every worker that runs it; shard 5 kills one worker once, mid-run
    monkeypatch.setattr(crash_shards, "run_crash_shard", crash_shard_that_kills)
    code, out, err = _run([*CRASH, "--cluster", cluster.address], capsys)
    assert Path(os.environ["MEMORACLE_TEST_MARKERS"], "crash-shard-5-died").exists()
    assert code == 1 and "Traceback" not in out + err
    assert "crash umfs shard 3/16 (seed 0) crashed: it took down the Dask workers that ran it" in out
    assert "reproduce: memoracle crash umfs --ops 1 --seed 0 --shard 3/16 --no-recovery-crashes" in out
    # every other shard ran, shard 5 (rerun after its worker died) counted once
    others = count_workloads(1) - count_workloads(1, (3, 16))  # shard 3: an operation and a context
    assert out.strip().splitlines()[-1].startswith(f"1 violation: {others} workloads")


def test_the_crash_campaign_on_a_cluster_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*CRASH, "--mutant", "log_never_invalidated"]
    assert _crash_verdict([*argv, "--cluster", "local:2"], capsys) == _crash_verdict(argv, capsys)


_ALLOCATIONS = """
import resource, sys
from memoracle.execution.campaign import restore_malloc_thresholds
if sys.argv[1] == "restore":
    restore_malloc_thresholds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):
    memory = bytearray(512 * 1024)  # an emulated memory: zeroed, touched, freed
    memory[::4096] = b"x" * 128
    del memory
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_worker_with_dasks_malloc_variable_does_not_fault_on_every_allocation() -> None:
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_, which turns glibc's dynamic mmap
    threshold off: each 512 KiB allocation is then a fresh mmap, faulted in page by page.
    A shard restores the thresholds (counted in page faults, not seconds)."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _ALLOCATIONS, mode], env=env, capture_output=True, text=True,
                              check=True)  # fmt: skip
        return int(done.stdout)

    assert faults("leave") >= 300 * 100  # every allocation faults its 128 pages in again
    assert faults("restore") < 300 * 10
