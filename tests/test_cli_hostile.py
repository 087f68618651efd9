"""Every sub-command, driven with generated bad arguments and hostile files.

For each leaf command of ``memoracle`` (the table :data:`COMMANDS` must name every one:
:func:`test_every_command_is_driven` fails when a command is added without an entry),
Hypothesis draws an argv: any subset of the command's options, each with a value drawn
from what its type accepts *and* from what it must refuse (negatives, zero, huge,
non-numeric, NaN, empty; directories, missing paths, devices, unwritable places; files
whose contents are random bytes or mutations of a valid file). Each run asserts the
contract of :mod:`memoracle.exitcodes`: an exit code in {0, 1, 2, 3}, no traceback, one
line on stderr for exit 2, and bounded memory (the test process's peak RSS).

Commands that run campaigns are kept small by their entry's *tamer*, which says why:
the generated values of a budget are either refused ones or small valid ones, and a
few modes that take minutes are replaced (each is stated below, none is skipped
silently). Runs are in-process (``main(argv)``) except ``sphinx serve``, which serves
until a signal and runs in a subprocess. Example counts scale with the loaded
Hypothesis profile.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoracle.arguments import input_file, output_directory, output_file
from memoracle.cli import build_parser, main
from memoracle.ksm.corpus import build_corpus, encode_corpus

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="memoracle-hostile-"))
(WORK / "a-directory").mkdir()
(WORK / "afile").write_text("not what any command expects\n")
(WORK / "empty.py").write_text("")
#: Peak RSS growth of this test process allowed over all runs (generous: the point is
#: that nothing reads a device forever or inflates a bomb).
MAX_RSS_GROWTH_BYTES = 1 << 30

# --------------------------------------------------------------------------- values

TEXT = st.one_of(
    st.sampled_from(["", " ", "x", "-", "--", "a,b", "1/0", "0/0", "-1/2", "3/2", "\x00", "é", "\udcff", "%s"]),
    st.text(max_size=12),
)
NUMBERS = st.one_of(
    st.sampled_from(["-1", "0", "1", "2", "3", "-5", "1024", "1e3", "0x10", "nan", "inf", "-inf", "1_0", " 7",
                     "99999999999999999999999", "18446744073709551616", "-0", "0.5", "-0.5", "1e308"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    TEXT,
)  # fmt: skip
#: Numbers every budget option refuses (they are negative, not integers, or past 2**64).
REFUSED = st.one_of(
    st.sampled_from(["-1", "-5", "-0.5", "0.5", "1e3", "0x10", "nan", "inf", "-inf", "", "x", "1/2", "\x00",
                     "18446744073709551617", "99999999999999999999999"]),
    st.integers(-(2**70), -1).map(str),
    st.integers(2**65, 2**70).map(str),
)  # fmt: skip
PLACES = [
    "/nonexistent/dir/out", "/proc/nope", "/proc/nope/x", "/dev/zero", "/dev/null", "/dev/full", "",
    str(WORK / "a-directory"), str(WORK / "afile"), str(WORK / "missing"), str(WORK / "missing" / "x"),
    str(WORK / "new-output"),
]  # fmt: skip
PATHS = st.sampled_from(PLACES)


def small_valid_or(values: list[int]) -> st.SearchStrategy[str]:
    """A budget: one of these small valid values, or a number the option must refuse
    (never a large valid one: that would be a long campaign, not a hostile argument)."""
    return st.one_of(st.sampled_from([str(v) for v in values]), REFUSED)


# --------------------------------------------------------------------------- files


def history_lines() -> st.SearchStrategy[bytes]:
    """A history file: the shipped example mutated line by line, or random bytes."""
    good = (ROOT / "examples" / "spsc-ok.jsonl").read_text().splitlines()
    hostile_json = st.sampled_from([
        "1e999", "-1", "9223372036854775808", "true", "1.0", '"\\ud800"', "[" * 50, '{"a": 1, "a": 2}',
        "null", '""', "[]", "{}", "18446744073709551617", '"' + "t" * 300 + '"',
    ])  # fmt: skip

    def mutate(line: str, key: str, value: str) -> str:
        try:
            record = json.loads(line)
        except ValueError:
            return line
        text = json.dumps(record)
        return text.replace(f'"{key}": {json.dumps(record.get(key))}', f'"{key}": {value}', 1)

    keys = st.sampled_from(["id", "thread", "kind", "arg", "result", "call", "return", "version", "capacity", "format"])
    line = st.one_of(
        st.sampled_from(good),
        st.builds(mutate, st.sampled_from(good), keys, hostile_json),
        TEXT,
    )
    text_file = st.lists(line, max_size=8).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogateescape"))
    return st.one_of(text_file, st.binary(max_size=600))


def _good_corpus() -> bytes:
    page = 4096
    pages = [bytes([v]) * page for v in (1, 2, 3)]
    return encode_corpus(build_corpus(page, "hostile", [(1, [(0, pages[0]), (page, pages[1])]), (2, [(0, pages[0])])]))


TREE = WORK / "tree"
(TREE / "sub").mkdir(parents=True)
(TREE / "a").write_text("hi\n")
(TREE / "sub" / "b").write_bytes(bytes(range(256)) * 20)
GOOD_IMAGE = WORK / "good.img"
GOOD_CORPUS = WORK / "good.ksm"
GOOD_CORPUS.write_bytes(_good_corpus())
EXAMPLES = ROOT / "examples"


def corpus_bytes() -> st.SearchStrategy[bytes]:
    """A KSM corpus file: a valid one, mutated (bytes flipped, cut, extended, header
    fields replaced with the checksum fixed), or random bytes."""
    good = GOOD_CORPUS.read_bytes()

    def with_crc(body: bytes) -> bytes:
        return body + struct.pack("<I", zlib.crc32(body))

    def flip(data: bytes, at: int, mask: int, fix_crc: bool) -> bytes:
        changed = bytearray(data)
        changed[at % len(changed)] ^= mask or 1
        return with_crc(bytes(changed[:-4])) if fix_crc else bytes(changed)

    def header(field_index: int, value: int) -> bytes:
        fields = list(struct.unpack_from("<8sHHIIII", good))
        fields[field_index] = value % (1 << (16 if field_index in (1, 2) else 32))
        return with_crc(struct.pack("<8sHHIIII", *fields) + good[struct.calcsize("<8sHHIIII") : -4])

    return st.one_of(
        st.just(good),
        st.builds(flip, st.just(good), st.integers(0, len(good)), st.integers(0, 255), st.booleans()),
        st.builds(lambda cut: good[:cut], st.integers(0, len(good))),
        st.builds(lambda extra: good + extra, st.binary(min_size=1, max_size=8)),
        st.builds(header, st.integers(1, 6), st.sampled_from([0, 1, 2, 4096, 2**31, 2**32 - 1, 60_000_000])),
        st.binary(max_size=300),
    )


def image_bytes() -> st.SearchStrategy[bytes]:
    """A UMFS image: the valid one (made by ``umfs mkfs`` in the fixture) with bits
    flipped in its metadata or anywhere, cut short, or random bytes."""

    def flip(at: int, mask: int, anywhere: bool) -> bytes:
        data = bytearray(GOOD_IMAGE.read_bytes())
        data[at % (len(data) if anywhere else 1 << 16)] ^= mask or 1
        return bytes(data)

    return st.one_of(
        st.builds(flip, st.integers(0, 1 << 22), st.integers(0, 255), st.booleans()),
        st.builds(lambda cut: GOOD_IMAGE.read_bytes()[:cut], st.integers(0, 1 << 16)),
        st.binary(max_size=300),
    )


def journal_bytes() -> st.SearchStrategy[bytes]:
    """A campaign journal for --resume: JSON lines of any shape, or random bytes."""
    line = st.one_of(
        st.dictionaries(st.sampled_from(["kind", "shard", "seed", "version", "command", "result"]),
                        st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=4).map(json.dumps),
        TEXT,
    )  # fmt: skip
    return st.one_of(st.lists(line, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogateescape")),
                     st.binary(max_size=200))  # fmt: skip


def results_json() -> st.SearchStrategy[bytes]:
    """A bench-results file: JSON of any shape, open-cost figures with hostile numbers,
    or random bytes."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=12,
    )
    figure = st.fixed_dictionaries({
        "name": st.sampled_from(["umfs.open_us_4k", "umfs.open_pte_writes_4k", "umfs.open_us_1m", "other"]),
        "value": st.one_of(st.floats(), st.integers(), st.text(max_size=3)),
        "baseline": st.one_of(st.floats(), st.integers(-5, 5)),
    })  # fmt: skip
    return st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(figure, max_size=5).map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    )


# --------------------------------------------------------------------------- the table

OK, VIOLATION, USAGE, INCONCLUSIVE = (frozenset({code}) for code in (0, 1, 2, 3))


Tamer = Callable[[list[str]], list[str]]


def _keep(argv: list[str]) -> list[str]:
    return argv


@dataclass(frozen=True)
class Command:
    """How to drive one leaf command."""

    #: Strategies for some options' values (the rest come from their type).
    values: dict[str, st.SearchStrategy[str]] = field(default_factory=dict)
    #: Strategies for the contents of files named by these options or positionals.
    files: dict[str, st.SearchStrategy[bytes]] = field(default_factory=dict)
    #: Makes an argv small enough to run in seconds; its docstring says what it changes.
    tame: Tamer = _keep
    #: Examples: max(3, the profile's max_examples // divisor) (an expensive command
    #: gets a fixed fraction of the profile's size; HYPOTHESIS_PROFILE=fuzz scales all).
    divisor: int = 1
    #: Run in a subprocess (a command that does not return by itself).
    subprocess: bool = False
    #: The command runs Hypothesis itself (crash --fuzz): argvs are drawn first, then run.
    draws_first: bool = False
    #: Replaces an internal step that takes far longer than the arguments' handling;
    #: its docstring says what and where that step is run for real.
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    #: Runs that must get past the arguments (so the command's work is exercised too),
    #: with the exit codes they may give.
    runs: tuple[tuple[list[str], frozenset[int]], ...] = ()


def _given(argv: list[str], option: str) -> bool:
    return any(word == option or word.startswith(option + "=") for word in argv)


def small_budgets(**budgets: str) -> Tamer:
    """A tamer that gives each budget option its small value when the argv lacks it
    (the defaults are full campaigns: minutes, not a hostile argument's seconds)."""

    def tame(argv: list[str]) -> list[str]:
        for name, value in budgets.items():
            option = "--" + name.replace("_", "-")
            if not _given(argv, option):
                argv = argv + [option, value]
        return argv

    tame.__doc__ = "Absent budgets get small values: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in budgets.items())
    return tame


def _crash_tame(argv: list[str]) -> list[str]:
    """--flush-report explores 32 UMFS variants (tens of seconds; tests/test_cli.py
    refuses its bad combinations) and is dropped; an exhaustive run without --shard runs
    the last of 16 shards, so that it explores one workload."""
    argv = [word for word in argv if word != "--flush-report"]
    modes = {"--fuzz", "--list-mutants"}
    if not modes & set(argv) and not _given(argv, "--shard"):
        argv += ["--shard", "15/16"]
    return small_budgets(ops="1", images="2")(argv + (["--examples", "2"] if "--fuzz" in argv and not _given(argv, "--examples") else []))


def _check_tame(argv: list[str]) -> list[str]:
    """Only the machine's checks run (1-2 s); the whole campaign takes minutes and is
    run by `memoracle check` in tests/test_cli.py's registry tests and by make run.
    Unknown systems are kept: they must be refused."""
    known = {"proofs", "machine", "umfs", "spsc", "sphinx", "ksm"}
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--system":
            value = next(words, None)
            if value is not None and value in known:
                continue
            out += [word] + ([value] if value is not None else [])
        else:
            out.append(word)
    return out + ["--system", "machine"]


def _proofs_tame(argv: list[str]) -> list[str]:
    """Without --only every theorem is proved (a minute or more here; make proofs and
    tests/test_proofs.py do that): a run without --only gets a quick theorem."""
    return argv if "--only" in " ".join(argv) else argv + ["--only", "splice_costs_one_write*"]


def _experiment_tame(argv: list[str]) -> list[str]:
    """--sensitivity reruns the grid with every cost entry halved and doubled (minutes;
    the experiment's own tests run it): dropped. Absent budgets get one machine, 100
    requests, one connection count."""
    argv = [word for word in argv if word != "--sensitivity"]
    return small_budgets(machine="modern", requests="100", connections="1")(argv)


def _interleave_tame(argv: list[str]) -> list[str]:
    """--table without --model computes 12 cells (seconds); it gets --model sc."""
    return argv + ["--model", "sc"] if "--table" in argv and "--model" not in argv else argv


def _no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """``report`` with a results file that holds no open-cost figures measures them
    afresh (seconds of work, run for real by tests/test_cli.py); here that measurement
    returns fixed figures."""
    from memoracle.umfs import report

    fixed = {"umfs.open_us_4k": {"value": 40.0, "baseline": 19.0}, "umfs.open_pte_writes_4k": {"value": 2, "baseline": 4}}
    monkeypatch.setattr(report, "measure_open_figures", lambda: fixed)


def _no_crosshair(monkeypatch: pytest.MonkeyPatch) -> None:
    """CrossHair itself takes tens of seconds per run on this machine (make test runs it
    over spec/ with `memoracle contracts`); here it reports what it reports for a file
    without contracts: nothing."""
    from memoracle import contracts

    monkeypatch.setattr(contracts, "run_crosshair", lambda targets, timeout: contracts.ContractReport((), 0, ""))


def _no_live_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ksm live`` drives the running kernel's /sys/kernel/mm/ksm, which this test must
    not touch (tests/test_ksm_live*.py own it): the availability check says it is not
    there, so every run past the arguments ends with that one line (exit 2)."""
    from memoracle.ksm import live_sysfs

    monkeypatch.setattr(live_sysfs, "availability", lambda: "not available in the hostile-arguments test")


def _campaign(prog: str, mutant: str) -> Command:
    """A campaign command of the execution layer: budgets small, the Dask back-end only
    unreachable or malformed (local:N starts a cluster: tests/test_execution*.py run it)."""
    return Command(
        values={
            "--runs": small_valid_or([1, 2]),
            "--steps": small_valid_or([1, 5]),
            "--jobs": small_valid_or([1, 2]),
            "--cluster": st.sampled_from(["tcp://127.0.0.1:1", "local:0", "local:-1", "udp://x", "", "tcp://", "x"]),
            "--shard": st.one_of(st.sampled_from(["0/1", "1/1", "0/0", "a/b", "-1/2"]), TEXT),
            "--mutant": st.one_of(st.just(mutant), TEXT),
        },
        files={"--resume": journal_bytes()},
        tame=small_budgets(runs="1", steps="5"),
        divisor=12,
        runs=(([*prog.split()[1:], "--runs", "1", "--steps", "5"], OK),),
    )


PAPER = {"--processes": small_valid_or([2]), "--pages": small_valid_or([64])}
PAPER_BUDGETS = small_budgets(processes="2", pages="64")

COMMANDS: dict[str, Command] = {
    "memoracle check": Command(tame=_check_tame, divisor=12, runs=((["check", "--system", "machine"], OK),)),
    "memoracle proofs": Command(
        values={"--only": st.sampled_from(["splice_costs_one_write*", "ksm_merge_preserves_views", "no_such", "", "[",
                                           "*[x", "é"]),
                "--timeout": small_valid_or([0, 1, 5])},
        tame=_proofs_tame,
        divisor=12,
        runs=((["proofs", "--only", "splice_costs_one_write*"], OK),
              (["proofs", "--only", "spsc_mask*", "--timeout", "0"], INCONCLUSIVE)),
    ),  # fmt: skip
    "memoracle contracts": Command(
        values={"targets": st.sampled_from([str(WORK / "empty.py"), str(WORK / "a-directory"), "/dev/null",
                                            str(WORK / "missing.py"), ""]),
                "--per-condition-timeout": small_valid_or([1])},
        patch=_no_crosshair,
        runs=((["contracts", str(WORK / "empty.py")], USAGE),),
    ),  # fmt: skip
    "memoracle crash umfs": Command(
        values={
            "--ops": small_valid_or([1]),
            "--examples": small_valid_or([1, 2]),
            "--jobs": small_valid_or([1, 2]),
            "--images": small_valid_or([1, 2]),
            "--shard": st.one_of(st.sampled_from(["15/16", "16/16", "0/0", "1", "a/b", "-1/16", "15/16/2"]), TEXT),
            "--mutant": st.sampled_from(["log-never-invalidated", "data_not_flushed", "nope", "", "-"]),
        },
        tame=_crash_tame,
        divisor=12,
        draws_first=True,
        runs=((["crash", "umfs", "--ops", "1", "--images", "1", "--no-recovery-crashes", "--shard", "15/16"], OK),
              (["crash", "umfs", "--fuzz", "--examples", "1", "--ops", "1", "--images", "1"], OK),
              (["crash", "umfs", "--mutant", "log-never-invalidated", "--shard", "15/16", "--ops", "1"], VIOLATION)),
    ),
    "memoracle report": Command(
        files={"--results": results_json()}, divisor=4, patch=_no_measuring,
        runs=((["report", "--output", str(WORK / "pictures")], OK),),
    ),
    "memoracle history check": Command(
        files={"file": history_lines()},
        runs=((["history", "check", str(EXAMPLES / "spsc-ok.jsonl"), "--html", str(WORK / "ok.html")], OK),
              (["history", "check", str(EXAMPLES / "spsc-lost-value.jsonl"), "--json"], VIOLATION)),
    ),
    "memoracle history record": Command(
        values={"--operations": small_valid_or([1, 2, 50]), "--capacity": small_valid_or([1, 2, 8])}, divisor=6,
        tame=small_budgets(operations="50"),
        runs=((["history", "record", str(WORK / "recorded.jsonl"), "--operations", "50", "--capacity", "2"], OK),),
    ),
    "memoracle interleave": Command(
        values={
            "--pushes": small_valid_or([0, 1, 2]),
            "--pops": small_valid_or([0, 1, 2]),
            "--capacity": small_valid_or([1, 2]),
            "--max-executions": small_valid_or([1, 50]),
            "--pct": small_valid_or([1, 20]),
            "--depth": small_valid_or([1, 3]),
            "--fences": st.one_of(
                st.sampled_from(["P:rel(tail)", "P:fence + C:fence", "none", "producer_release_tail", "P:", "+,"]), TEXT
            ),
        },
        tame=_interleave_tame,
        runs=((["interleave", "--pushes", "3", "--pops", "3", "--capacity", "2", "--max-executions", "50"], INCONCLUSIVE),
              (["interleave", "--model", "weak", "--criterion", "strict"], VIOLATION),
              (["interleave", "--model", "weak", "--fences", "P:rel(tail)"], OK)),
    ),
    "memoracle sphinx serve": Command(
        values={"--port": st.one_of(st.just("0"), REFUSED, st.just("65536")), "--threads": small_valid_or([1, 2]),
                "--memory": st.one_of(st.sampled_from(["4m", "8m", "1k", "8x", "m", "64g", "1" + "0" * 30]), REFUSED),
                "--host": st.sampled_from(["127.0.0.1", "::1", "256.0.0.1", "no.such.host.invalid", ""])},
        divisor=12,
        subprocess=True,
        runs=((["sphinx", "serve", "--port", "0", "--threads", "1", "--memory", "4m"], OK),),
    ),  # fmt: skip
    "memoracle ksm capture": Command(
        values={"--processes": small_valid_or([1, 2]), "--max-pages": small_valid_or([1, 8]),
                "--timeout": small_valid_or([0, 30]),
                "--modules": st.sampled_from(["json", "json,re", "os;rm", "", ",", "no_such_module_x", "..a"])},
        tame=small_budgets(processes="1", max_pages="8", modules="json"),
        divisor=12,
        runs=((["ksm", "capture", "--processes", "1", "--max-pages", "8", "--modules", "json",
                "--output", str(WORK / "captured.ksm")], OK),),
    ),  # fmt: skip
    "memoracle ksm campaign": _campaign("memoracle ksm campaign", "no_write_protect"),
    "memoracle sphinx campaign": _campaign("memoracle sphinx campaign", "wrong-seed-owner"),
    "memoracle umfs campaign": _campaign("memoracle umfs campaign", "AppendIgnored"),
    "memoracle sphinx calibrate": Command(
        values={"--requests": small_valid_or([1000])},
        tame=small_budgets(requests="1000"),
        divisor=12,
        runs=((["sphinx", "calibrate", "--requests", "1000", "--json"], OK),),
    ),
    "memoracle sphinx experiment": Command(
        values={
            "--requests": small_valid_or([100]),
            "--connections": st.one_of(st.sampled_from(["1", "1,2", "0", "-1", "", ",", "1,,2", "x"]), TEXT),
            "--rate": small_valid_or([100, 2500]),
            "--cost": st.one_of(st.sampled_from(["mc_lru_hold=600", "mc_lru_hold=-1", "x=y", "=", "nope=5"]), TEXT),
            "--jobs": small_valid_or([1]),
            "--cluster": st.sampled_from(["tcp://127.0.0.1:1", "local:0", "", "x"]),
            "--shard": st.one_of(st.sampled_from(["0/64", "63/64", "0/0", "a/b"]), TEXT),
        },
        files={"--resume": journal_bytes()},
        tame=_experiment_tame,
        divisor=12,
        runs=((["sphinx", "experiment", "--machine", "modern", "--requests", "100", "--connections", "1",
                "--output", str(WORK / "experiment")], OK),),
    ),  # fmt: skip
    "memoracle ksm live": Command(
        values={"--steps": small_valid_or([1, 5]), "--sequences": small_valid_or([1]),
                "--lock-timeout": small_valid_or([0, 1])},
        tame=small_budgets(steps="5", sequences="1", lock_timeout="0"),
        patch=_no_live_kernel,
        runs=((["ksm", "live", "--scenarios", "selftests"], USAGE),),
    ),  # fmt: skip
    "memoracle ksm paper exclusive-cache": Command(
        values=PAPER, tame=PAPER_BUDGETS, divisor=12, runs=((["ksm", "paper", "exclusive-cache", "--processes", "2", "--pages", "64"], OK),)
    ),
    "memoracle ksm paper lookahead": Command(
        values=PAPER, tame=PAPER_BUDGETS, divisor=12, runs=((["ksm", "paper", "lookahead", "--processes", "2", "--pages", "64"], OK),)
    ),
    "memoracle ksm paper page-cache": Command(
        values=PAPER, tame=PAPER_BUDGETS, divisor=12, runs=((["ksm", "paper", "page-cache", "--processes", "2", "--pages", "64"], OK),)
    ),
    "memoracle ksm report": Command(
        values=PAPER, tame=PAPER_BUDGETS, divisor=12,
        runs=((["ksm", "report", "--processes", "2", "--pages", "64", "--output", str(WORK / "ksm-pictures")], OK),),
    ),  # fmt: skip
    "memoracle kv check": Command(
        values={
            "address": st.sampled_from(["@server", "127.0.0.1:1", "nohost", "[::1]:70000", "", ":", "127.0.0.1:0"]),
            "--steps": small_valid_or([1, 5]),
            "--clients": small_valid_or([1, 2]),
            "--timeout": small_valid_or([1, 2]),
            "--max-states": small_valid_or([1, 1000]),
        },
        tame=small_budgets(steps="5", clients="1", timeout="2"),
        divisor=4,
        runs=((["kv", "check", "@server", "--steps", "5", "--clients", "1"], OK),),
    ),
    "memoracle umfs mkfs": Command(
        values={"--size": st.one_of(st.sampled_from(["4m", "8m", "1k", "4096", "0", "4g", "m", "4M", "1e3"]), REFUSED),
                "--inodes": small_valid_or([0, 1, 32, 64]),
                "--from": st.sampled_from([str(TREE), str(WORK / "missing"), str(WORK / "afile"), "", "/dev/null"])},
        divisor=3,
        runs=((["umfs", "mkfs", str(WORK / "made.img"), "--size", "4m", "--from", str(TREE), "--force"], OK),),
    ),  # fmt: skip
    "memoracle umfs fsck": Command(files={"image": image_bytes()}, divisor=2,
                                   runs=((["umfs", "fsck", str(GOOD_IMAGE)], OK),)),  # fmt: skip
    "memoracle umfs ls": Command(
        values={"path": st.one_of(st.sampled_from(["/", "/a", "/sub", "/sub/b", "a", "", "//", "/nope"]), TEXT)},
        files={"image": image_bytes()}, divisor=2, runs=((["umfs", "ls", str(GOOD_IMAGE), "/", "-l"], OK),),
    ),  # fmt: skip
    "memoracle umfs cat": Command(
        values={"path": st.one_of(st.sampled_from(["/", "/a", "/sub", "/sub/b", "a", "", "//", "/nope"]), TEXT)},
        files={"image": image_bytes()}, divisor=2, runs=((["umfs", "cat", str(GOOD_IMAGE), "/sub/b"], OK),),
    ),  # fmt: skip
    "memoracle umfs corrupt": Command(
        values={"--flips": small_valid_or([0, 1]), "--anywhere": small_valid_or([0, 1]),
                "--per-field": st.one_of(st.sampled_from(["0", "1", "x", "-1", ""]), REFUSED),
                "--trial": small_valid_or([0, 1]), "--mutant": st.one_of(st.just("inodes_unchecked"), TEXT)},
        tame=small_budgets(flips="1", anywhere="1", per_field="0"),
        divisor=6,
        runs=((["umfs", "corrupt", "--flips", "1", "--anywhere", "1", "--per-field", "0"], OK),),
    ),  # fmt: skip
    "memoracle ksm info": Command(files={"corpus": corpus_bytes()}, runs=((["ksm", "info", str(GOOD_CORPUS)], OK),)),
    "memoracle ksm study": Command(
        values={"--max-scans": small_valid_or([3, 4]), "--max-page-sharing": small_valid_or([2, 256])},
        files={"corpus": corpus_bytes()},
        divisor=2,
        runs=((["ksm", "study", str(GOOD_CORPUS), "--json"], OK),),
    ),
}


def _leaves(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not children:
        return {parser.prog: parser}
    for action in children:
        for child in dict.fromkeys(action.choices.values()):
            found.update(_leaves(child))
    return found


LEAVES = _leaves(build_parser())


def test_every_command_is_driven() -> None:
    """A command added to the CLI must get an entry in COMMANDS (or this fails)."""
    assert set(LEAVES) == set(COMMANDS), (
        f"add to tests/test_cli_hostile.py COMMANDS: {sorted(set(LEAVES) - set(COMMANDS))}; "
        f"remove: {sorted(set(COMMANDS) - set(LEAVES))}"
    )


def _value_strategy(action: argparse.Action, command: Command, name: str) -> st.SearchStrategy[str]:
    if name in command.values:
        return command.values[name]
    if action.choices is not None:
        return st.one_of(st.sampled_from([str(c) for c in action.choices]), TEXT)
    if action.type in (input_file, output_file, output_directory) or name in ("--results", "--output", "--html"):
        return PATHS
    if action.type is not None:
        return NUMBERS
    return TEXT


@st.composite
def argvs(draw: st.DrawFn, prog: str) -> tuple[list[str], dict[str, bytes]]:
    """An argv for ``prog`` and the contents of the files it names (by placeholder)."""
    parser, command = LEAVES[prog], COMMANDS[prog]
    words = prog.split()[1:]
    files: dict[str, bytes] = {}
    options = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]
    for action in draw(st.lists(st.sampled_from(options), max_size=len(options) + 1, unique_by=id)) if options else []:
        name = action.option_strings[0] if action.option_strings else action.dest
        if action.option_strings and action.nargs == 0:
            words.append(name)
            continue
        if name in command.files and draw(st.booleans()):
            placeholder = f"@{name.strip('-')}"
            files[placeholder] = draw(command.files[name])
            value = placeholder
        else:
            value = draw(_value_strategy(action, command, name))
        if action.option_strings:
            words += [name, value] if draw(st.integers(0, 9)) else [f"{name}={value}"]
        else:
            words.append(value)
    return command.tame(words), files


#: Where ``kv check``'s live server listens ("@server" in an argv), once it runs.
SERVER: dict[str, str] = {}


def _materialise(argv: list[str], files: dict[str, bytes], where: Path) -> list[str]:
    out = []
    for word in argv:
        if "@server" in word:
            word = word.replace("@server", SERVER["address"])
        for placeholder, contents in files.items():
            if placeholder in word:
                path = where / placeholder.strip("@")
                path.write_bytes(contents)
                word = word.replace(placeholder, str(path))
        out.append(word)
    return out


def _check_run(argv: list[str], code: int, out: str, err: str) -> None:
    context = f"argv={argv!r}\nexit={code}\nstderr={err[-2000:]!r}"
    assert code in (0, 1, 2, 3), context
    assert "Traceback" not in err and "Traceback" not in out, context
    if code == 2:
        assert len(err.strip().splitlines()) == 1, context


def _run_in_process(argv: list[str]) -> int:
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace"), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    out.flush()
    _check_run(argv, code, out.buffer.getvalue().decode("utf-8", "replace"), err.getvalue())  # type: ignore[attr-defined]
    return code


def _run_server(argv: list[str]) -> int:
    """``sphinx serve``: refused arguments exit by themselves; a server that starts is
    stopped with SIGINT once it says it listens, and must then exit 0. An argument with a
    NUL byte cannot reach a process at all: it is run in-process, where the parser must
    refuse it before anything serves."""
    if any("\x00" in word for word in argv):
        code = _run_in_process(argv)
        assert code == 2, argv
        return code
    child = subprocess.Popen([sys.executable, "-m", "memoracle", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=WORK)  # fmt: skip
    assert child.stdout is not None
    first = child.stdout.readline()
    if first.startswith("sphinx: listening"):
        child.send_signal(signal.SIGINT)
    try:
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    _check_run(argv, child.returncode, first + out, err)
    return child.returncode


@contextlib.contextmanager
def address_space_cap(extra: int) -> Iterator[None]:
    """Lower this process's address-space limit to its current size plus ``extra`` while
    the body runs, so that a command that tries to eat the machine fails with a
    MemoryError (a red test) instead of waking the OOM killer on a shared machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status").read_text()
    size = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(scope="module", autouse=True)
def in_work_directory() -> Iterator[None]:
    """Runs happen in WORK, which holds a results file with open-cost figures, a valid
    UMFS image, and (for ``kv check``) a Sphinx server on a free loopback port."""
    from memoracle.sphinx.peers import start_sphinx_server

    figures = [{"name": f"umfs.open_{kind}_4k", "value": 2.0, "unit": "u", "baseline": 3.0}
               for kind in ("us", "pte_writes")]  # fmt: skip
    (WORK / "bench-results.json").write_text(json.dumps(figures))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["umfs", "mkfs", str(GOOD_IMAGE), "--size", "4m", "--from", str(TREE), "--force"]) == 0
    server = start_sphinx_server(threads=2)
    SERVER["address"] = f"127.0.0.1:{server.port}"
    before, start = os.getcwd(), _peak_rss_bytes()
    os.chdir(WORK)
    try:
        yield
    finally:
        os.chdir(before)
        server.stop()
    grown = _peak_rss_bytes() - start
    assert grown < MAX_RSS_GROWTH_BYTES, f"peak RSS grew by {grown >> 20} MiB driving the commands"


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_hostile_arguments_and_files(prog: str, monkeypatch: pytest.MonkeyPatch) -> None:
    command = COMMANDS[prog]
    if prog not in LEAVES:
        pytest.fail(f"{prog} is no longer a command: remove it from COMMANDS")
    if command.patch is not None:
        command.patch(monkeypatch)
    drawn: list[tuple[list[str], dict[str, bytes]]] = []

    def run(case: tuple[list[str], dict[str, bytes]]) -> int:
        argv, files = case
        with tempfile.TemporaryDirectory(dir=WORK) as where:
            concrete = _materialise(argv, files, Path(where))
            return _run_server(concrete) if command.subprocess else _run_in_process(concrete)

    with address_space_cap(4 << 30):
        for argv, codes in command.runs:
            assert run((argv, {})) in codes, f"{argv} should have exited with one of {sorted(codes)}"

    @settings(max_examples=max(3, settings.default.max_examples // command.divisor), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(argvs(prog))
    def drive(case: tuple[list[str], dict[str, bytes]]) -> None:
        if command.draws_first:
            drawn.append(case)
        else:
            run(case)

    with address_space_cap(4 << 30):
        drive()
        for case in drawn:  # commands that run Hypothesis themselves cannot run inside @given
            run(case)
