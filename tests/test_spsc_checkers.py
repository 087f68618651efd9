"""The SPSC spec, the history format and the two checkers (generic and fast).

The fast checker is cross-checked against the generic Wing–Gong–Lowe search on small
generated histories, linearizable and mutated; both must reject every hand-made bad
pattern; the reader must name the line of every malformed input.
"""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoracle.spsc.histories import MUTATIONS, mutate, simulated_history
from spec.history import (
    History,
    HistoryFormatError,
    Operation,
    header_line,
    read_history_lines,
    write_history_to,
)
from spec.linearizability import check_linearizable, is_linearizable, minimize, queue_unit
from spec.spsc_fast import NotSpscError, check_spsc
from spec.spsc_model import BoundedQueue, Criterion, QueueSpec, run_sequentially

STRICT, TOLERANT = Criterion.STRICT, Criterion.TOLERANT


def push(i: int, v: int, ok: bool, call: int, ret: int, thread: str = "p") -> Operation:
    return Operation(i, thread, "push", v, ok, call, ret)


def pop(i: int, v: int | None, call: int, ret: int, thread: str = "c") -> Operation:
    return Operation(i, thread, "pop", None, v, call, ret)


def verdicts(ops: list[Operation], capacity: int, criterion: Criterion) -> tuple[bool, bool]:
    history = History.from_operations(ops, capacity)
    fast = check_spsc(history, criterion).ok
    generic = check_linearizable(ops, QueueSpec(capacity, criterion)).ok
    return fast, generic


# ---------------------------------------------------------------- sequential spec


def test_sequential_spec_is_a_bounded_fifo() -> None:
    answers = run_sequentially(2, [("push", 1), ("push", 2), ("push", 3), ("pop", None),
                                   ("push", 4), ("pop", None), ("pop", None), ("pop", None)])
    assert answers == [True, True, False, 1, True, 2, 4, None]
    queue, pushed = BoundedQueue(1).try_push("x")
    assert pushed and queue.items == ("x",)
    assert queue.try_push("y") == (queue, False)


# ---------------------------------------------------------------- bad patterns

# Each history below is not linearizable under the given criteria; both checkers must say so.
BAD_PATTERNS: dict[str, tuple[list[Operation], int, tuple[Criterion, ...]]] = {
    "value never pushed": ([push(0, 1, True, 0, 1), pop(1, 2, 2, 3)], 4, (STRICT, TOLERANT)),
    "value popped twice": (
        [push(0, 1, True, 0, 1), pop(1, 1, 2, 3), pop(2, 1, 4, 5)], 4, (STRICT, TOLERANT)),
    "FIFO broken in real time": (
        [push(0, 1, True, 0, 1), push(1, 2, True, 2, 3), pop(2, 2, 4, 5), pop(3, 1, 6, 7)],
        4, (STRICT, TOLERANT)),
    "pop before its push": ([pop(0, 1, 0, 1), push(1, 1, True, 2, 3)], 4, (STRICT, TOLERANT)),
    "overwrite: push succeeds when full": (
        [push(0, 1, True, 0, 1), push(1, 2, True, 2, 3), pop(2, 1, 4, 5)], 1, (STRICT, TOLERANT)),
    "false empty": ([push(0, 1, True, 0, 1), pop(1, None, 2, 3), pop(2, 1, 4, 5)], 4, (STRICT,)),
    "false full": ([push(0, 1, False, 0, 1)], 1, (STRICT,)),
    "lost value (empty after push, then nothing)": (
        [push(0, 1, True, 0, 1), push(1, 2, True, 2, 3), pop(2, 2, 4, 5)], 4, (STRICT, TOLERANT)),
}


@pytest.mark.parametrize("name", sorted(BAD_PATTERNS))
def test_both_checkers_reject_each_bad_pattern(name: str) -> None:
    ops, capacity, criteria = BAD_PATTERNS[name]
    for criterion in criteria:
        assert verdicts(ops, capacity, criterion) == (False, False), (name, criterion)


def test_tolerant_accepts_spurious_answers_that_strict_rejects() -> None:
    ops = [push(0, 1, True, 0, 1), pop(1, None, 2, 3), pop(2, 1, 4, 5), push(3, 2, False, 6, 7)]
    assert verdicts(ops, 4, STRICT) == (False, False)
    assert verdicts(ops, 4, TOLERANT) == (True, True)


def test_concurrent_operations_may_linearize_either_way() -> None:
    # pop overlaps push: may take effect after it.
    ops = [push(0, 1, True, 0, 10), pop(1, 1, 2, 3)]
    assert verdicts(ops, 1, STRICT) == (True, True)
    # equal stamps across threads count as concurrent
    ops = [pop(0, 1, 0, 5), push(1, 1, True, 5, 9)]
    assert verdicts(ops, 1, STRICT) == (True, True)


def test_fast_checker_needs_one_producer_and_one_consumer() -> None:
    ops = [push(0, 1, True, 0, 1, "p1"), push(1, 2, True, 0, 1, "p2")]
    with pytest.raises(NotSpscError):
        check_spsc(History.from_operations(ops, 2))
    assert check_linearizable(ops, QueueSpec(2)).ok


def test_overlapping_operations_of_one_thread_are_bad_input() -> None:
    ops = [push(0, 1, True, 0, 5), push(1, 2, True, 3, 8)]
    with pytest.raises(HistoryFormatError, match="overlap"):
        check_spsc(History.from_operations(ops, 2))
    with pytest.raises(HistoryFormatError, match="overlap"):
        check_linearizable(ops, QueueSpec(2))


# ---------------------------------------------------------------- cross-check


def _cross_check(history: History, note: str) -> None:
    ops = history.operations()
    for criterion in Criterion:
        fast = check_spsc(history, criterion, witness=True)
        generic = check_linearizable(ops, QueueSpec(history.capacity, criterion), minimize_limit=0)
        assert fast.ok == generic.ok, f"{note} {criterion.value}: fast {fast.ok}, generic {generic.ok}"
        if fast.ok:
            assert fast.witness is not None
            _replay(history, fast.witness, criterion)


def _replay(history: History, order: tuple[int, ...], criterion: Criterion) -> None:
    """The fast checker's witness is a linearization: a permutation, in real-time order,
    every answer legal in the spec."""
    rows = range(len(history))
    if criterion is TOLERANT:  # the witness orders the successful operations only
        rows = [r for r in rows if history.oks[r]]  # type: ignore[assignment]
    assert sorted(order) == list(rows)
    spec = QueueSpec(history.capacity, criterion)
    state = spec.initial()
    latest_call = -1
    for row in order:
        op = history.operation(row)
        assert op.ret >= latest_call, f"witness breaks real time at #{op.id}"
        latest_call = max(latest_call, op.call)
        after = spec.step(state, op)
        assert after is not None, f"witness makes {op.describe()} illegal in {state}"
        state = after


@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 16),
    capacity=st.integers(1, 3),
    spurious=st.sampled_from([0.0, 0.0, 0.2]),
)
@settings(max_examples=max(300, settings.default.max_examples))
def test_fast_equals_generic_on_generated_histories(
    seed: int, size: int, capacity: int, spurious: float
) -> None:
    history = simulated_history(seed, size, capacity, spurious=spurious)
    note = f"simulated_history({seed}, {size}, {capacity}, spurious={spurious})"
    if spurious == 0.0:
        assert check_spsc(history, STRICT).ok, note
    assert check_spsc(history, TOLERANT).ok, note
    _cross_check(history, note)


@given(
    seed=st.integers(0, 2**32),
    size=st.integers(1, 14),
    capacity=st.integers(1, 3),
    mutations=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=2),
)
@settings(max_examples=max(400, settings.default.max_examples))
def test_fast_equals_generic_on_mutated_histories(
    seed: int, size: int, capacity: int, mutations: list[str]
) -> None:
    history = simulated_history(seed, size, capacity, spurious=0.1)
    for k, name in enumerate(mutations):
        history = mutate(history, name, seed + k)
    _cross_check(history, f"simulated_history({seed}, {size}, {capacity}) mutated {mutations}")


def test_every_mutation_is_sometimes_caught() -> None:
    """Each mutation breaks linearizability on some seed (so the cross-check sees both)."""
    for name in MUTATIONS:
        caught = 0
        for seed in range(60):
            history = mutate(simulated_history(seed, 10, 2), name, seed)
            caught += not check_spsc(history, STRICT).ok
        assert caught >= 2, f"{name} caught only {caught} times in 60"


def test_fast_checker_is_exact_on_a_large_history_with_one_swap() -> None:
    history = simulated_history(7, 200_000, 8)
    assert check_spsc(history, STRICT).ok
    ops = history.operations()
    pops = [i for i, op in enumerate(ops) if op.kind == "pop" and op.ok]
    a, b = pops[-50], pops[-40]
    ops[a], ops[b] = (
        Operation(ops[a].id, "consumer", "pop", None, ops[b].result, ops[a].call, ops[a].ret),
        Operation(ops[b].id, "consumer", "pop", None, ops[a].result, ops[b].call, ops[b].ret),
    )
    broken = History.from_operations(ops, 8)
    result = check_spsc(broken, TOLERANT)
    assert not result.ok and result.violation is not None
    assert ops[a].id in [broken.ids[r] for r in result.violation.culprits]
    assert "pop" in result.violation.render(broken)


# ---------------------------------------------------------------- generic checker


def test_generic_witness_and_minimal_violating_sub_history() -> None:
    history = simulated_history(3, 24, 2)
    ops = history.operations()
    result = check_linearizable(ops, QueueSpec(2))
    assert result.ok and sorted(result.witness[None]) == sorted(op.id for op in ops)
    broken = mutate(history, "swap_values", 3).operations()
    bad = check_linearizable(broken, QueueSpec(2), unit=queue_unit)
    assert not bad.ok and bad.violation is not None and bad.violation.minimal is not None
    minimal = list(bad.violation.minimal)
    assert not is_linearizable(minimal, QueueSpec(2))
    units = {queue_unit(op) for op in minimal}
    for gone in units:  # 1-minimal: removing any unit makes it linearizable
        assert is_linearizable([op for op in minimal if queue_unit(op) != gone], QueueSpec(2))
    assert len(minimal) < len(broken)
    assert "minimal violating sub-history" in bad.violation.render()


def test_minimize_keeps_a_push_with_its_pops() -> None:
    ops = [push(0, 1, True, 0, 1), push(1, 2, True, 2, 3), pop(2, 2, 4, 5), pop(3, 1, 6, 7),
           push(4, 3, True, 8, 9), pop(5, 3, 10, 11)]
    minimal = minimize(ops, QueueSpec(4), queue_unit)
    assert sorted(op.id for op in minimal) == [0, 1, 2, 3]


def test_partitioning_checks_independent_objects_separately() -> None:
    """Two queues, told apart by thread prefix: fine per queue, wrong as one queue."""
    ops = [push(0, 1, True, 0, 1, "a.p"), push(1, 2, True, 2, 3, "b.p"),
           pop(2, 2, 4, 5, "b.c"), pop(3, 1, 6, 7, "a.c")]
    assert not check_linearizable(ops, QueueSpec(4)).ok
    result = check_linearizable(ops, QueueSpec(4), partition=lambda op: str(op.thread)[0])
    assert result.ok and result.witness == {"a": (0, 3), "b": (1, 2)}
    ops[3] = pop(3, 2, 6, 7, "a.c")
    failed = check_linearizable(ops, QueueSpec(4), partition=lambda op: str(op.thread)[0])
    assert not failed.ok and failed.violation is not None and failed.violation.partition == "a"


# ---------------------------------------------------------------- the format


def _text(history: History) -> str:
    out = io.StringIO()
    write_history_to(out, history)
    return out.getvalue()


def test_history_round_trips_through_the_format() -> None:
    history = simulated_history(5, 300, 3, spurious=0.2)
    again = read_history_lines(io.StringIO(_text(history)))
    assert again.operations() == history.operations() and again.capacity == 3
    again.check_invariants()


def test_string_values_and_threads_are_allowed() -> None:
    ops = [Operation(0, 1, "push", "a", True, 0, 1), Operation(1, 2, "pop", None, "a", 2, 3)]
    text = _text(History.from_operations(ops, 1))
    history = read_history_lines(io.StringIO(text))
    assert history.operations() == ops and check_spsc(history).ok


GOOD = '{"id": 0, "thread": "p", "kind": "push", "arg": 1, "result": true, "call": 1, "return": 2}'
MALFORMED: list[tuple[str, str]] = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"id": 1, "thread": "p", "kind": "push", "arg": 1, "result": true, "call": 3}', 'missing key "return"'),
    (GOOD.replace('"id": 0', '"id": 1, "colour": 3'), 'unknown key "colour"'),
    (GOOD.replace('"id": 0', '"id": -1'), '"id" must be a non-negative integer'),
    (GOOD.replace('"push"', '"peek"'), '"kind" must be "push" or "pop"'),
    (GOOD.replace('"result": true', '"result": 1'), "must be true or false"),
    (GOOD.replace('"arg": 1', '"arg": 1.5'), "must be an integer or a string"),
    (GOOD.replace('"arg": 1', '"arg": null'), "must be an integer or a string"),
    (GOOD.replace('"kind": "push", "arg": 1, "result": true', '"kind": "pop", "arg": 3, "result": null'), "pop's \"arg\" must be null"),
    (GOOD.replace('"kind": "push", "arg": 1, "result": true', '"kind": "pop", "arg": null, "result": false'), "pop's \"result\""),
    (GOOD.replace('"call": 1', '"call": 2'), '"call" must be less than "return" (2 >= 2)'),
    (GOOD.replace('"call": 1', '"call": "1"'), '"call" must be a non-negative integer'),
    (GOOD.replace('"thread": "p"', '"thread": [1]'), '"thread" must be a string or an integer'),
    (GOOD, 'duplicate "id" 0'),
]


@pytest.mark.parametrize("bad,message", MALFORMED)
def test_reader_names_the_line_and_reason(bad: str, message: str) -> None:
    lines = [header_line(2), GOOD, GOOD.replace('"id": 0', '"id": 7'), bad]
    with pytest.raises(HistoryFormatError) as error:
        read_history_lines(io.StringIO("\n".join(lines) + "\n"))
    assert error.value.line == 4 and message in str(error.value), str(error.value)
    assert str(error.value).startswith("line 4: ")


@pytest.mark.parametrize(
    "header,message",
    [
        ("", "empty file"),
        ("{", "header is not valid JSON"),
        ('{"format": "other"}', '"format"'),
        ('{"format": "memoracle-history", "version": 2, "spec": "bounded-queue", "capacity": 1}', "unsupported"),
        ('{"format": "memoracle-history", "version": 1, "spec": "bounded-queue", "capacity": 0}', "capacity"),
    ],
)
def test_reader_rejects_bad_headers(header: str, message: str) -> None:
    with pytest.raises(HistoryFormatError) as error:
        read_history_lines(io.StringIO(header + "\n"))
    assert error.value.line == 1 and message in str(error.value)


def test_reader_finds_the_exact_line_deep_in_a_large_file() -> None:
    history = simulated_history(1, 150_000, 8)
    lines = _text(history).splitlines()
    target = 140_001
    lines[target - 1] = lines[target - 1].replace('"call":', '"call":-')
    with pytest.raises(HistoryFormatError) as error:
        read_history_lines(iter(line + "\n" for line in lines))
    assert error.value.line == target, str(error.value)


def test_blank_lines_are_ignored() -> None:
    text = header_line(1) + "\n\n" + GOOD + "\n\n"
    assert len(read_history_lines(io.StringIO(text))) == 1


def test_random_garbage_never_crashes_the_reader() -> None:
    rng = random.Random(0)
    base = _text(simulated_history(2, 20, 2))
    for _ in range(300):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice('{}[]":,0-9aEtn \n')
        try:
            read_history_lines(io.StringIO("".join(chars)))
        except HistoryFormatError as error:
            assert str(error).startswith("line ") or error.line == 0
