"""The generic search's budget and its indeterminate operations.

A history the fast checkers do not cover (values pushed twice) with 18 concurrent pushes
once ran for minutes and gigabytes; under a budget the answer is "unknown" (exit 3),
never a hang and never a guess, and a certain violation elsewhere still wins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memoracle.cli import main
from spec.history import HistoryFormatError, Operation, header_line
from spec.linearizability import INDETERMINATE, UNLIMITED, Budget, check_linearizable
from spec.spsc_model import QueueSpec


def crowd() -> list[Operation]:
    """18 concurrent pushes of 9 values (each twice), then 18 pops in an order that
    every push order explains or not: the search must try many orders."""
    ops = [Operation(i, f"p{i}", "push", i % 9, True, 0, 100) for i in range(18)]
    return ops + [Operation(18 + k, "c", "pop", None, (k * 5) % 9, 200 + 2 * k, 201 + 2 * k) for k in range(18)]


def test_an_exhausted_budget_is_unknown_not_a_verdict() -> None:
    result = check_linearizable(crowd(), QueueSpec(32), budget=Budget(5_000, None))
    assert not result.ok and result.violation is None and result.verdict == "unknown"
    (unknown,) = result.unknown
    assert unknown.states > 5_000 and "states" in unknown.why and unknown.operations == 36
    timed = check_linearizable(crowd(), QueueSpec(32), budget=Budget(None, 0.05))
    assert timed.verdict == "unknown" and "time" in timed.unknown[0].why


def test_a_violation_in_another_partition_is_still_reported() -> None:
    broken = [Operation(100, "x", "push", 1, True, 0, 1), Operation(101, "y", "pop", None, 2, 2, 3)]
    ops = [*crowd(), *broken]
    result = check_linearizable(ops, QueueSpec(32), partition=lambda op: op.id >= 100, budget=Budget(5_000, None))
    assert result.verdict == "violation" and result.violation is not None and result.violation.partition is True


def test_the_cli_answers_unknown_with_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "crowd.jsonl"
    path.write_text(header_line(32) + "\n" + "".join(json.dumps(op.as_json()) + "\n" for op in crowd()))
    assert main(["history", "check", str(path), "--max-states", "5000"]) == 3
    out = capsys.readouterr().out
    assert "UNKNOWN" in out and "raise --max-states" in out
    assert main(["history", "check", str(path), "--max-states", "5000", "--json"]) == 3
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verdict"] == "unknown" and verdict["linearizable"] is None and verdict["checker"] == "generic"
    assert main(["history", "check", str(path), "--timeout", "0.05"]) == 3


# ---------------------------------------------------------------- indeterminate operations


def info_push(i: int, value: int, call: int, thread: str) -> Operation:
    return Operation(i, thread, "push", value, True, call, INDETERMINATE)


def test_an_indeterminate_operation_may_have_happened_or_not() -> None:
    spec = QueueSpec(4)
    seen = [info_push(0, 7, 0, "a"), Operation(1, "b", "pop", None, 7, 5, 6)]
    assert check_linearizable(seen, spec).ok  # it happened
    unseen = [info_push(0, 7, 0, "a"), Operation(1, "b", "pop", None, None, 5, 6)]
    assert check_linearizable(unseen, spec).ok  # it did not (or not yet)
    both = [*unseen, Operation(2, "b", "pop", None, 7, 7, 8)]
    assert check_linearizable(both, spec).ok  # not yet at 5..6, then it did
    too_early = [Operation(1, "b", "pop", None, 7, 0, 1), info_push(0, 7, 2, "a")]
    assert not check_linearizable(too_early, spec).ok  # never before its call
    twice = [info_push(0, 7, 0, "a"), Operation(1, "b", "pop", None, 7, 5, 6), Operation(2, "b", "pop", None, 7, 7, 8)]
    assert not check_linearizable(twice, spec).ok
    result = check_linearizable(seen, spec, budget=UNLIMITED)
    assert result.witness[None] == (0, 1)


def test_many_indeterminate_operations_keep_the_search_small() -> None:
    """One early timeout must not make every later configuration remember the whole past."""
    ops = [info_push(0, -1, 0, "lost")]
    for k in range(2_000):
        ops.append(Operation(1 + 2 * k, "p", "push", k, True, 10 + 4 * k, 11 + 4 * k))
        ops.append(Operation(2 + 2 * k, "c", "pop", None, k, 12 + 4 * k, 13 + 4 * k))
    result = check_linearizable(ops, QueueSpec(4), budget=Budget(50_000, None))
    assert result.ok


def test_an_indeterminate_operation_must_be_its_thread_s_last() -> None:
    ops = [info_push(0, 1, 0, "a"), Operation(1, "a", "pop", None, None, 5, 6)]
    with pytest.raises(HistoryFormatError, match="indeterminate operation must be its thread's last"):
        check_linearizable(ops, QueueSpec(4))
