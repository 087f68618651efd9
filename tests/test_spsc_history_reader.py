"""The history reader's fast paths read exactly what the precise reader reads.

The reference is a plain reading: one line at a time, ``json.loads`` and the record
validation (:meth:`History.from_operations`). Whatever the layout (the writer's compact
form, spaces, reordered keys, escapes, blank lines, CRLF, a missing final newline) and
however the file is cut into blocks, :func:`read_history` and :func:`read_history_lines`
must build the same history; and a malformed line deep inside an otherwise compact file
must be named with its own line number and reason, whichever path meets it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spec.history as history_module
from memoracle.spsc.histories import simulated_history
from spec.history import (
    History,
    HistoryFormatError,
    Operation,
    header_line,
    history_lines,
    read_history,
    read_history_lines,
)


def reference(text: str) -> History:
    """The precise reading of ``text`` (universal newlines, blank lines skipped)."""
    lines = text.replace("\r\n", "\n").split("\n")
    capacity = json.loads(lines[0])["capacity"]
    ops = []
    for line in lines[1:]:
        if line.strip():
            o = json.loads(line)
            ops.append(Operation(o["id"], o["thread"], o["kind"], o["arg"], o["result"], o["call"], o["return"]))
    return History.from_operations(ops, capacity)


def same(got: History, want: History) -> None:
    got.check_invariants()
    assert got.capacity == want.capacity
    assert got.operations() == want.operations()
    assert got.thread_names == want.thread_names
    # equal Operations could still hide 1 vs True: compare the raw columns too
    assert [type(v) for v in got.values] == [type(v) for v in want.values]
    assert list(got.oks) == list(want.oks) and list(got.kinds) == list(want.kinds)


# ---------------------------------------------------------------- same history, any layout

_names = st.sampled_from(["producer", "consumer", "p:1", "{c}", "a,b", "é", 'q"uote', "back\\slash", "", "t 1"])
_threads = st.one_of(_names, st.integers(-3, 3))
_values = st.one_of(
    st.integers(-(2**70), 2**70), st.integers(-5, 300), _names, st.sampled_from([2**63 - 1, 2**63, -(2**63)])
)


@st.composite
def operations(draw: st.DrawFn) -> list[dict[str, object]]:
    count = draw(st.integers(0, 40))
    ids = draw(st.permutations(range(count)))
    rows: list[dict[str, object]] = []
    for ident in ids:
        call = draw(st.one_of(st.integers(0, 50), st.integers(0, 2**63 - 2)))
        ret = draw(st.integers(call + 1, max(call + 1, min(call + 60, 2**63 - 1))))
        row: dict[str, object] = {"id": ident, "thread": draw(_threads)}
        if draw(st.booleans()):
            row.update(kind="push", arg=draw(_values), result=draw(st.booleans()))
        else:
            row.update(kind="pop", arg=None, result=draw(st.one_of(st.none(), _values)))
        row.update({"call": call, "return": ret})
        rows.append(row)
    return rows


def _render(row: dict[str, object], layout: str) -> str:
    if layout == "compact":
        return json.dumps(row, separators=(",", ":"))
    if layout == "raw-unicode":
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False)
    if layout == "spaced":
        return json.dumps(row)
    return json.dumps(dict(reversed(list(row.items()))))  # keys in another order


@settings(max_examples=max(150, settings.default.max_examples), deadline=None)
@given(
    rows=operations(),
    data=st.data(),
    ending=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    block=st.sampled_from([7, 64, 300, 1 << 18]),
)
def test_every_layout_reads_as_the_precise_reader_reads(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[dict[str, object]],
    data: st.DataObject,
    ending: str,
    final_newline: bool,
    block: int,
) -> None:
    lines = [header_line(3)]
    for row in rows:
        if data.draw(st.integers(0, 9)) == 0:
            lines.append(data.draw(st.sampled_from(["", "   ", "\t"])))
        layout = data.draw(st.sampled_from(["compact"] * 6 + ["raw-unicode", "spaced", "reordered"]))
        lines.append(_render(row, layout))
    text = ending.join(lines) + (ending if final_newline else "")
    want = reference(text)
    path = tmp_path_factory.mktemp("layouts") / "h.jsonl"
    path.write_bytes(text.encode("utf-8"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(history_module, "_BLOCK_CHARS", block)
        patch.setattr(history_module, "_CHUNK_LINES", max(1, block // 50))
        same(read_history(str(path)), want)
        same(read_history_lines(io.StringIO(text)), want)
        same(read_history_lines(text.splitlines()), want)  # items without newlines


def test_the_writer_s_output_takes_the_compact_path() -> None:
    history = simulated_history(3, 2_000, 4, spurious=0.2)
    body = "".join(line + "\n" for line in list(history_lines(history))[1:])
    run = history_module._COMPACT_RUN.match(body)
    assert run is not None and run.end() == len(body)


# ---------------------------------------------------------------- errors deep inside a compact file

DEPTH = 90_001  # a line number deep inside the file (line 1 is the header)


@pytest.fixture(scope="module")
def compact_lines() -> list[str]:
    return list(history_lines(simulated_history(1, 100_000, 8)))


def _changed(compact: bool = True, **changes: object) -> Callable[[str], str]:
    """A corruption: the line's operation with ``changes``, written compact or spaced."""

    def corrupt(line: str) -> str:
        row = {**json.loads(line), **changes}
        return json.dumps(row, separators=(",", ":")) if compact else json.dumps(row)

    return corrupt


def _call_equals_return(line: str) -> str:
    row = json.loads(line)
    return _changed(call=row["return"])(line)


CORRUPTIONS: list[tuple[str, Callable[[str], str], str]] = [
    # the compact grammar accepts this one; the call < return check refuses it
    ("call = return", _call_equals_return, '"call" must be less than "return"'),
    # the compact grammar refuses these
    ("truncated", lambda line: line[:-4], "not valid JSON"),
    ("leading zero", lambda line: line.replace('"call":', '"call":0'), "not valid JSON"),
    ("unknown key", lambda line: line.replace("{", '{"colour":3,'), 'unknown key "colour"'),
    ("negative call", lambda line: line.replace('"call":', '"call":-'), '"call" must be a non-negative integer'),
    ("huge id", _changed(id=2**63), '"id" 9223372036854775808 is too large'),
    ("null arg", _changed(False, kind="push", arg=None, result=True), "must be an integer or a string"),
    ("duplicate id", _changed(id=17), 'duplicate "id" 17'),  # the later of the two is named
    ("spaced and bad", _changed(False, kind="push", arg=3, result="yes"), "must be true or false"),
]


@pytest.mark.parametrize("name,corrupt,message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
@pytest.mark.parametrize("block", [1 << 18, 5_000])
def test_a_malformed_line_deep_in_a_compact_file_is_named(
    tmp_path: Path, compact_lines: list[str], name: str, corrupt: Callable[[str], str], message: str, block: int
) -> None:
    lines = list(compact_lines)
    lines[DEPTH - 1] = corrupt(lines[DEPTH - 1])
    lines[DEPTH - 3] = json.dumps(json.loads(lines[DEPTH - 3]))  # a valid line in another layout nearby
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(history_module, "_BLOCK_CHARS", block)
        with pytest.raises(HistoryFormatError) as error:
            read_history(str(path))
    assert error.value.line == DEPTH and message in str(error.value), str(error.value)
    assert str(error.value).startswith(f"line {DEPTH}: ")
    with pytest.raises(HistoryFormatError) as again:
        read_history_lines(iter(line + "\n" for line in lines))
    assert str(again.value) == str(error.value)


def test_the_last_line_without_a_newline_is_read_and_its_errors_named(tmp_path: Path) -> None:
    lines = list(history_lines(simulated_history(2, 500, 4)))
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines))  # no final newline
    assert read_history(str(path)).operations() == reference("\n".join(lines)).operations()
    path.write_text("\n".join(lines)[:-1])
    with pytest.raises(HistoryFormatError) as error:
        read_history(str(path))
    assert error.value.line == len(lines) and "not valid JSON" in str(error.value)


def test_stamps_beyond_64_bits_are_rejected_not_crashed() -> None:
    good = '{"id":0,"thread":"p","kind":"push","arg":1,"result":true,"call":1,"return":2}'
    for bad, message in [
        (good.replace('"return":2', '"return":9223372036854775808'), '"return" 9223372036854775808 is too large'),
        (good.replace('"id":0', '"id":99999999999999999999'), '"id" 99999999999999999999 is too large'),
    ]:
        with pytest.raises(HistoryFormatError) as error:
            read_history_lines([header_line(1), good.replace('"id":0', '"id":5'), bad])
        assert error.value.line == 3 and message in str(error.value)
    big = good.replace('"arg":1', '"arg":99999999999999999999')  # values may be any integer
    assert read_history_lines([header_line(1), big]).values == [99999999999999999999]
