"""Hostile history files: every one is exit 2 with ``line N: reason``, in linear time and
bounded memory; and the generic checker's budget gives "unknown" (exit 3), never a hang.

Each test reproduces an attack that once got through (a RecursionError reported as a
violation, a quadratic thread-name lookup, a quadratic join of a long line, ``/dev/zero``
read until MemoryError, a lone surrogate that crashed the output, ``"version": true``,
duplicate keys accepted, non-UTF-8 errors without a line).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import spec.history as history_module
from memoracle.cli import main
from spec.history import MAX_LINE_BYTES, History, HistoryFormatError, header_line, line_blocks, read_history

HEADER = header_line(4)
GOOD = '{"id":%d,"thread":"p","kind":"push","arg":%d,"result":true,"call":%d,"return":%d}'


def good_lines(count: int) -> list[str]:
    return [GOOD % (i, i, 2 * i, 2 * i + 1) for i in range(count)]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memoracle", *args], capture_output=True, text=True, check=False)


def refused(path: Path, needle: str, line: int) -> None:
    done = run("history", "check", str(path))
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert f"line {line}: " in done.stderr and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def write(tmp_path: Path, lines: list[str], name: str = "h.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("where", ["header", "operation"])
def test_deep_nesting_is_a_bad_line_not_a_violation(tmp_path: Path, where: str) -> None:
    bomb = "[" * 10_000 + "]" * 10_000
    if where == "header":
        refused(write(tmp_path, [bomb]), "not valid JSON", 1)
    else:
        refused(write(tmp_path, [HEADER, *good_lines(3), bomb]), "nested too deeply", 5)


def test_thread_names_are_looked_up_in_constant_time() -> None:
    """100k distinct names once took over a minute (list.index): count comparisons."""
    compared = 0

    class Name(str):
        def __eq__(self, other: object) -> bool:
            nonlocal compared
            compared += 1
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    history = History(1)
    names = [Name(f"t{i}") for i in range(3_000)]
    codes = [history._thread_code(name) for name in names] + [history._thread_code(name) for name in names]
    assert codes == list(range(3_000)) * 2
    assert compared < 100, f"{compared} comparisons for 6,000 lookups"


def test_a_line_longer_than_the_limit_is_refused_as_soon_as_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with path.open("w") as out:
        out.write(HEADER + "\n" + GOOD % (0, 0, 0, 1) + "\n" + "x" * (3 * MAX_LINE_BYTES))
    refused(path, f"longer than the longest line this reader accepts ({MAX_LINE_BYTES} bytes)", 3)


class CountingReader(io.BytesIO):
    """Counts the bytes handed out, so a test can see that reading stopped early."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.handed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.handed += len(chunk)
        return chunk


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_line_blocks_cut_anywhere_give_the_lines_back_and_bound_each(block: int) -> None:
    lines = [b"a" * n for n in (0, 5, 99, 100, 3, 250)] + [b"tail"]
    data = b"\n".join(lines[:-1]) + b"\r\n" + lines[-1]
    got = list(line_blocks(CountingReader(data), 7, block_bytes=block, max_line=252))
    text = "".join(t for t, _ in got)
    assert text == "\n".join(x.decode() for x in lines) + "\n"
    assert [n for _, n in got] == sorted(n for _, n in got) and got[0][1] == 7
    seen = 0
    for t, first in got:  # each block's first line number is right
        assert first == 7 + seen
        seen += t.count("\n")
    with pytest.raises(HistoryFormatError) as error:
        list(line_blocks(io.BytesIO(data), 1, block_bytes=block, max_line=251))
    assert error.value.line == 6  # the 250-byte line plus its line end (\r\n) is 252 bytes
    endless = CountingReader(b"x" * 100_000)
    with pytest.raises(HistoryFormatError, match="longer than"):
        list(line_blocks(endless, 1, block_bytes=block, max_line=1_000))
    assert endless.handed <= 1_000 + block


@pytest.mark.parametrize("options", [[], ["--format", "jepsen", "--model", "register"],
                                     ["--format", "porcupine", "--model", "kv"]])
def test_dev_zero_is_refused_at_line_1(options: list[str]) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    done = run("history", "check", "/dev/zero", *options)
    assert done.returncode == 2 and "line 1: longer than" in done.stderr, done.stderr


def test_a_lone_surrogate_is_refused_and_other_text_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = '{"id":0,"thread":"\\ud800","kind":"push","arg":1,"result":true,"call":0,"return":1}'
    refused(write(tmp_path, [HEADER, bad]), "lone surrogate", 2)
    spaced = json.dumps({"id": 1, "thread": "p", "kind": "push", "arg": "\udfff", "result": True,
                         "call": 2, "return": 3})
    refused(write(tmp_path, [HEADER, *good_lines(1), spaced], "b.jsonl"), "lone surrogate", 3)
    paired = json.dumps({"id": 0, "thread": "\U0001f600 é", "kind": "push", "arg": "\U0001f600", "result": True,
                         "call": 0, "return": 1})
    html = tmp_path / "t.html"
    path = write(tmp_path, [HEADER, paired], "ok.jsonl")
    assert main(["history", "check", str(path), "--html", str(html)]) == 0
    assert "linearizable" in capsys.readouterr().out and html.read_text(encoding="utf-8")


@pytest.mark.parametrize("version", ["true", "1.0", '"1"', "2"])
def test_the_version_is_the_integer_1(tmp_path: Path, version: str) -> None:
    header = f'{{"format": "memoracle-history", "version": {version}, "spec": "bounded-queue", "capacity": 4}}'
    refused(write(tmp_path, [header, *good_lines(2)]), 'unsupported "version"', 1)


def test_duplicate_keys_are_refused_wherever_they_are(tmp_path: Path) -> None:
    header = '{"format": "memoracle-history", "version": 1, "spec": "bounded-queue", "capacity": 4, "capacity": 9}'
    refused(write(tmp_path, [header]), 'the key "capacity" appears twice', 1)
    lines = [HEADER] + [json.dumps(json.loads(line)) for line in good_lines(5_000)]  # spaced: the chunk path
    lines[3_000] = lines[3_000].replace('"call"', '"call": 1, "call"')
    refused(write(tmp_path, lines, "d.jsonl"), 'the key "call" appears twice', 3_001)


def test_a_byte_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    lines = [HEADER, *good_lines(6)]
    path.write_bytes("\n".join(lines).encode() + b'\n{"id":9,"thread":"caf\xe9"}\n')
    refused(path, "not UTF-8 text", 8)
    with pytest.MonkeyPatch.context() as patch:  # the same with tiny blocks
        patch.setattr(history_module, "_BLOCK_CHARS", 16)
        with pytest.raises(HistoryFormatError) as error:
            read_history(str(path))
    assert error.value.line == 8
