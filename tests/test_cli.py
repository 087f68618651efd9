"""The command line: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from memoracle import checks
from memoracle.checks import Check, Outcome
from memoracle.cli import build_parser, main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memoracle", *args], capture_output=True, text=True, check=False
    )


def test_check_json_has_the_promised_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--json", "--system", "machine"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {c["check"] for c in out["checks"]} >= {"persistency-adr", "persistency-eadr"}
    for c in out["checks"]:
        assert set(c) == {"system", "check", "ok", "count", "seconds"}
        assert c["ok"] is True and c["count"] > 0


def test_a_failing_check_exits_1_and_prints_its_report(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Check("demo", "always-fails", "a check that fails", lambda seed: Outcome(False, 3, f"seed {seed} broke"))
    monkeypatch.setattr(checks, "CHECKS", [broken])
    assert main(["check", "--seed", "5"]) == 1
    assert "seed 5 broke" in capsys.readouterr().out
    assert main(["check", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["checks"][0]["ok"] is False


def test_an_invariant_failure_inside_a_check_is_a_violation_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(seed: int) -> Outcome:
        raise AssertionError("TLB holds more rights than the page table")

    monkeypatch.setattr(checks, "CHECKS", [Check("demo", "invariant", "", explode)])
    assert main(["check"]) == 1
    assert "TLB holds more rights" in capsys.readouterr().out


def test_bad_usage_exits_2_with_one_line() -> None:
    for args in (["frobnicate"], ["check", "--seed", "x"], ["check", "--system", "nonesuch"]):
        done = run(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_contracts_rejects_a_missing_target() -> None:
    done = run("contracts", "no/such/spec.py")
    assert done.returncode == 2 and "no such file" in done.stderr


# --------------------------------------------------------------------------- the contract


def one_line_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``argv`` in-process; assert exit 2 with exactly one line on stderr; return it."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["interleave", "--pct", "-5"],
        ["interleave", "--bound", "-1"],
        ["interleave", "--pushes", "-1"],
        ["interleave", "--pct", "0"],
        ["interleave", "--depth", "0", "--pct", "5"],
        ["interleave", "--capacity", "1024"],
        ["interleave", "--capacity", "3"],
        ["interleave", "--pushes", "0", "--pops", "0"],
        ["interleave", "--max-executions", "0"],
        ["interleave", "--seed", "4"],  # applies to --pct only
        ["interleave", "--pct", "5", "--bound", "2"],
        ["interleave", "--table", "--pushes", "3"],
        ["interleave", "--fences", "P:sideways"],
        ["contracts", "--per-condition-timeout", "-1"],
        ["contracts", "--per-condition-timeout", "nan"],
        ["proofs", "--timeout", "-1"],
        ["check", "--seed", "-1"],
        ["crash", "umfs", "--ops", "0"],
        ["crash", "umfs", "--ops=--"],  # argparse would hand the option an empty list
        ["crash", "umfs", "--ops", "5"],
        ["crash", "umfs", "--images", "0"],
        ["crash", "umfs", "--jobs", "0"],
        ["crash", "umfs", "--examples", "5"],  # --fuzz only
        ["crash", "umfs", "--flush-report", "--cluster", "local:2"],
        ["crash", "umfs", "--shard", "0/2", "--jobs", "2"],
        ["crash", "umfs", "--flush-report", "--eadr"],
        ["crash", "umfs", "--mutant", "no_such_mutant"],
        ["history", "record", "out.jsonl", "--capacity", "3"],
        ["history", "check", "examples/jepsen-register-ok.edn", "--criterion", "tolerant", "--format", "jepsen",
         "--model", "register"],  # a queue-only option
        ["history", "record", "out.jsonl", "--operations", "0"],
        ["ksm", "study", "README.md", "--max-scans", "1"],
        ["ksm", "study", "README.md", "--max-page-sharing", "1"],
        ["ksm", "capture", "--processes", "0", "--output", "x.ksm"],
        ["ksm", "capture", "--timeout", "-3", "--output", "x.ksm"],
        ["ksm", "capture", "--max-pages", "-3", "--output", "x.ksm"],
    ],
)
def test_every_bad_number_or_combination_is_refused_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    line = one_line_usage_error(capsys, argv)
    command = " ".join(word for word in argv[:2] if not word.startswith("-") and "." not in word)
    assert line.startswith(f"memoracle {command}") and f"(see 'memoracle {command} --help')" in line, line
    option = next((word.split("=")[0] for word in argv if word.startswith("--")), None)
    assert option is None or option in line, line  # the message names the option at fault


@pytest.mark.parametrize("argv", [["--bogus"], ["umfs", "--frob=1"], ["--bogus", "--help-me"]])
def test_an_unknown_option_before_the_command_is_named(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_usage_error(capsys, argv)
    unknown = [word for word in argv if word.startswith("-")]
    assert f"unrecognized arguments: {' '.join(unknown)}; missing the command" in line, line


@pytest.mark.parametrize("argv", [["crash"], ["history"], ["ksm"], ["sphinx"], []])
def test_a_missing_subcommand_names_the_choices_and_its_own_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_usage_error(capsys, argv)
    prog = " ".join(["memoracle", *argv])
    assert line.startswith(f"{prog}: missing the command: one of ") and f"see '{prog} --help'" in line
    for internal in ("verb", "ksm_command", "sphinx_command", "system", "command:"):
        assert internal not in line.split("(see")[0].replace("the command", ""), line


@pytest.mark.parametrize(
    "argv",
    [["interleave", "--bogus"], ["crash", "umfs", "--ops", "1", "extra"], ["umfs", "ls", "x.img", "/", "--json"],
     ["ksm", "live", "--bogus"], ["history", "check", "examples/spsc-ok.jsonl", "--model", "queue", "--frob"]],
)  # fmt: skip
def test_an_unknown_argument_names_the_commands_own_help(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    line = one_line_usage_error(capsys, argv)
    prog = " ".join(["memoracle", *(word for word in argv[:2] if word.isalpha())])
    assert line.startswith(f"{prog}: unrecognized arguments: {argv[-1]}") and f"(see '{prog} --help')" in line, line


def test_a_path_with_line_breaks_still_makes_one_line_of_error(tmp_path: Path) -> None:
    weird = str(tmp_path / "a\nb\x1ec\rd")
    done = run("history", "check", weird)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "a\\nb\\x1ec\\rd" in done.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("memoracle ")


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _parsers(child)
    return found


def test_every_option_has_help_that_shows_its_default() -> None:
    for parser in _parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{parser.prog} {action.dest}: no help text"
            if action.default not in (None, False):
                assert "default" in parser._get_formatter()._expand_help(action) or "default" in action.help, (
                    f"{parser.prog} {action.option_strings or action.dest}: the help does not show the default"
                )
        assert "%(default)" not in text


def test_path_mistakes_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = Path(__file__).resolve().parent.parent / "examples" / "spsc-ok.jsonl"
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (
        ["history", "record", "/nonexistent/x.jsonl"],
        ["history", "record", str(tmp_path)],
        ["history", "check", str(history), "--html", "/nonexistent/dir/x.html"],
        ["history", "check", str(history), "--html", str(tmp_path)],
        ["history", "check", str(tmp_path / "absent.jsonl")],
        ["history", "check", str(tmp_path)],
        ["report", "--output", str(afile)],
        ["report", "--results", str(tmp_path / "absent.json")],
        ["ksm", "capture", "--output", str(tmp_path / "no" / "x.ksm")],
        ["contracts", str(tmp_path / "absent.py")],
    ):
        one_line_usage_error(capsys, argv)


def test_report_checks_its_output_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from memoracle.umfs import report

    def no_measuring() -> None:
        raise AssertionError("measured before checking the output directory")

    monkeypatch.setattr(report, "measure_open_figures", no_measuring)
    monkeypatch.chdir(tmp_path)  # no bench-results.json here: the report would measure
    assert "cannot write in /proc/nope" in one_line_usage_error(capsys, ["report", "--output", "/proc/nope"])


@pytest.mark.parametrize(
    "content",
    ['{"name": "umfs.open_us_4k"}', "[1, 2]", '[{"value": 3}]', '[{"name": "umfs.open_us_4k", "value": "fast"}]',
     '[{"name": "umfs.open_us_4k", "value": 3}]', "not json", "[" * 100_000, "\udcff"],
)  # fmt: skip
def test_report_rejects_results_of_the_wrong_shape(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(content.encode("utf-8", "surrogateescape"))
    line = one_line_usage_error(capsys, ["report", "--results", str(results), "--output", str(tmp_path / "out")])
    assert "not a bench-results file" in line
    assert not (tmp_path / "out").exists()


def test_report_plots_figures_from_a_results_file_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = []
    for label in ("4k", "1m"):
        figures += [{"name": f"umfs.open_us_{label}", "value": 5.0, "unit": "us", "baseline": 50.0, "ratio": 10.0},
                    {"name": f"umfs.open_pte_writes_{label}", "value": 2, "unit": "writes", "baseline": 260}]  # fmt: skip
    results = tmp_path / "bench.json"
    results.write_text(json.dumps(figures))
    assert main(["report", "--results", str(results), "--output", str(tmp_path / "pics")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "pics" / "umfs_open_cost.png").stat().st_size > 0
    assert f"from {results}" in out


def test_proofs_that_run_out_of_time_are_inconclusive_not_violations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proofs", "--timeout", "0", "--only", "spsc_mask*"]) == 3
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("inconclusive (") and "0 violations" in last


def test_output_errors_full_disk_and_closed_pipe(tmp_path: Path) -> None:
    history = str(Path(__file__).resolve().parent.parent / "examples" / "spsc-ok.jsonl")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "memoracle", "history", "check", history],
                              stdout=full, stderr=subprocess.PIPE, text=True, check=False)  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "memoracle: cannot write standard output: No space left on device"
    ], done.stderr
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "memoracle", "--help"],
                              stdout=full, stderr=subprocess.PIPE, text=True, check=False)  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    # A reader that went away: quiet, and the exit code is still the verdict.
    bad = str(Path(__file__).resolve().parent.parent / "examples" / "spsc-lost-value.jsonl")
    for argv, verdict in ((["crash", "umfs", "--list-mutants"], 0), (["history", "check", bad], 1)):
        child = subprocess.Popen([sys.executable, "-m", "memoracle", *argv],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # before the child writes anything
        err = child.stderr.read().decode()
        assert child.wait() == verdict and err == "", err


def test_interleave_table_honours_the_model_and_reads_its_own_notation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["interleave", "--table", "--model", "sc", "--criterion", "strict"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| memory model | ring | strict |" and len(rows) == 3
    assert all(row.startswith("| sc |") for row in rows[1:])
    for notation in ("P:rel(tail)", "producer_release_tail", "p:rel(tail) + none"):
        assert main(["interleave", "--model", "weak", "--capacity", "1", "--fences", notation]) == 0
        assert "fences=producer_release_tail" in capsys.readouterr().out
    assert main(["interleave", "--model", "weak", "--criterion", "strict", "--capacity", "1",
                 "--fences", "P:rel(tail) + P:fence + C:fence"]) == 0  # fmt: skip
    assert main(["interleave", "--model", "weak", "--criterion", "strict", "--fences", "P:rel(tail)"]) == 1


def test_interleave_budget_that_runs_out_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["interleave", "--pushes", "3", "--pops", "3", "--capacity", "2", "--max-executions", "50"]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("inconclusive (--max-executions 50 reached): 0 violations: 50 executions")


def test_history_check_html_of_a_passing_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = str(Path(__file__).resolve().parent.parent / "examples" / "spsc-ok.jsonl")
    page = tmp_path / "ok.html"
    assert main(["history", "check", history, "--html", str(page)]) == 0
    text = page.read_text()
    assert text.count("<g class='op") == 9 and "all 9 operations" in text and "verdict linearizable" in text
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("0 violations: 9 operations")


def test_crash_fuzz_prints_the_same_table_and_json_keys_as_exhaustive(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = ["--images", "2", "--no-recovery-crashes", "--json"]
    assert main(["crash", "umfs", "--ops", "1", "--shard", "0/8", *small]) == 0
    exhaustive = json.loads(capsys.readouterr().out)
    assert main(["crash", "umfs", "--fuzz", "--examples", "3", "--ops", "1", *small]) == 0
    fuzzed = json.loads(capsys.readouterr().out)
    assert set(fuzzed) == set(exhaustive) and set(fuzzed["stats"]) == set(exhaustive["stats"])
    assert fuzzed["search"] == "fuzz" and exhaustive["search"] == "exhaustive"
    assert main(["crash", "umfs", "--fuzz", "--examples", "3", "--ops", "1", "--images", "2", "--no-recovery-crashes"]) == 0
    text = capsys.readouterr().out
    assert "crash umfs --ops 1: fuzz, adr, umfs" in text and "classes per cpu second" in text
    assert text.strip().splitlines()[-1].startswith("0 violations: ")
    # --ops is honoured by the fuzzer (it used to be raised to 4 silently)
    from memoracle.umfs import crash_shards

    seen = {}

    def fake_fuzz(config: object, examples: int, max_ops: int, rng: object, explorer: object) -> object:
        seen["max_ops"] = max_ops
        from memoracle.umfs.crash_stats import Stats

        return Stats(), None, ""

    monkeypatch.setattr(crash_shards, "fuzz", fake_fuzz)
    assert main(["crash", "umfs", "--fuzz", "--ops", "2", "--json"]) == 0
    assert seen["max_ops"] == 2
    assert main(["crash", "umfs", "--fuzz", "--json"]) == 0
    assert seen["max_ops"] == 4


def test_crash_mutant_names_accept_dashes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["crash", "umfs", "--mutant", "log-never-invalidated", "--ops", "1", "--images", "4",
            "--no-recovery-crashes", "--shard", "15/16", "--json"]  # fmt: skip
    assert main(argv) == 1  # the witness workload (close /a) is the 16th single operation
    out = json.loads(capsys.readouterr().out)
    assert out["violations"] and "--mutant log_never_invalidated" in out["reproduce"]


def test_check_shows_progress_when_not_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from memoracle import progress

    monkeypatch.setattr(progress, "PLAIN_INTERVAL_SECONDS", 0.01)
    printed = threading.Event()

    def quick(seed: int) -> Outcome:
        return Outcome(True, 1)

    def waits_for_a_progress_line(seed: int) -> Outcome:
        printed.wait(10)
        return Outcome(True, 1)

    real_write = sys.stderr.write

    def write(text: str) -> int:
        if "demo / b: 1/3 checks" in text:  # a line printed while check a ran does not count
            printed.set()
        return real_write(text)

    monkeypatch.setattr(sys.stderr, "write", write)
    monkeypatch.setattr(checks, "CHECKS", [Check("demo", "a", "", quick), Check("demo", "b", "", waits_for_a_progress_line),
                                           Check("demo", "c", "", quick)])  # fmt: skip
    assert main(["check"]) == 0
    captured = capsys.readouterr()
    assert "check demo / b: 1/3 checks, " in captured.err, captured.err
    assert captured.out.strip().splitlines()[-1].startswith("0 failed checks: 3 checks, ")


def test_verdict_lines() -> None:
    from memoracle.progress import verdict_line

    assert verdict_line(0, [(119_569, "image"), (93, "state")], 90.2) == "0 violations: 119,569 images, 93 states, 90 s"
    assert verdict_line(1, [(1, "history", "histories")], 0.5) == "1 violation: 1 history, 0.50 s"
    assert verdict_line(0, [(2, "history", "histories")], 1400) == "0 violations: 2 histories, 23 min"
    assert (
        verdict_line(0, [(5, "execution")], 3.25, inconclusive="budget ran out")
        == "inconclusive (budget ran out): 0 violations: 5 executions, 3.2 s"
    )


def test_progress_lines() -> None:
    import io

    from memoracle.progress import Progress

    stream = io.StringIO()
    counted = Progress(272, "crash umfs --ops 2", unit="workloads", stream=stream)
    counted.advance(120, violations=0)
    assert counted.line().startswith("crash umfs --ops 2: 120/272 workloads, 0 violations, ")
    assert Progress(None, "CrossHair", stream=stream).line().startswith("CrossHair: ")
    assert "items" not in Progress(None, "CrossHair", stream=stream).line()


def test_crash_progress_counts_workloads_of_worker_processes() -> None:
    from memoracle.umfs.crash_campaign import CampaignConfig, run_campaign, workloads

    seen: list[int] = []
    stats, _ = run_campaign(CampaignConfig(max_ops=1, method="enumeration", image_limit=2, recovery_crashes=False), jobs=2,
                            progress=seen.append)  # fmt: skip
    assert sum(seen) == stats.workloads == len(workloads(1))


def test_the_readme_history_examples_do_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    for name, verdict in (("spsc-ok.jsonl", 0), ("spsc-lost-value.jsonl", 1)):
        assert f"memoracle history check examples/{name}" in readme
        for criterion in ("strict", "tolerant"):
            assert main(["history", "check", str(root / "examples" / name), "--criterion", criterion]) == verdict
    assert "pop number 1 (#2) returned 2, but successful push number 1 (#0) pushed 1" in capsys.readouterr().out


def test_report_measures_when_there_is_no_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no bench-results.json here
    assert main(["report", "--output", "pictures"]) == 0
    assert "measured now by memoracle report: quick sizes 4 KiB-16 MiB" in capsys.readouterr().out
    assert (tmp_path / "pictures" / "umfs_open_cost.png").stat().st_size > 0
