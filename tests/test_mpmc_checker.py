"""The MPMC queue checker: agreement with the generic search, bad patterns, witnesses.

The fast checker decides from a theorem (:mod:`spec.mpmc_fast`); every verdict it gives
must equal the exhaustive Wing–Gong–Lowe search's on small generated histories (at least
1,000 of them), and each bad pattern of the theorem must be reported with its reason.
"""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoracle.history.generate import MPMC_MUTATIONS, mpmc_history, random_mpmc_history
from memoracle.history.queue_check import check_queue_history
from spec.history import History, HistoryFormatError, Operation
from spec.linearizability import UNLIMITED, Budget, check_linearizable
from spec.mpmc_fast import NotDistinctError, check_mpmc, check_threads
from spec.spsc_model import Criterion, QueueSpec

STRICT, TOLERANT = Criterion.STRICT, Criterion.TOLERANT


def push(i: int, v: int, call: int, ret: int, thread: str, ok: bool = True) -> Operation:
    return Operation(i, thread, "push", v, ok, call, ret)


def pop(i: int, v: int | None, call: int, ret: int, thread: str) -> Operation:
    return Operation(i, thread, "pop", None, v, call, ret)


# ---------------------------------------------------------------- agreement with the generic search


@st.composite
def small_histories(draw: st.DrawFn) -> tuple[list[Operation], int]:
    """Up to 4 threads of up to 3 operations; answers from a simulated queue (then maybe
    mutated) or drawn freely; distinct pushed values."""
    threads = draw(st.integers(2, 4))
    ops: list[Operation] = []
    for t in range(threads):
        clock = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(0, 3))):
            call = clock
            ret = call + draw(st.integers(0, 6))
            clock = ret + draw(st.integers(1, 3))
            if draw(st.booleans()):
                ops.append(push(len(ops), len(ops), call, ret, f"t{t}", draw(st.sampled_from([True, True, False]))))
            else:
                ops.append(pop(len(ops), None, call, ret, f"t{t}"))
    pushed = [op.arg for op in ops if op.kind == "push"]
    answers = draw(st.lists(st.sampled_from([None, *pushed]), min_size=len(ops), max_size=len(ops)))
    ops = [Operation(op.id, op.thread, "pop", None, answers[op.id], op.call, op.ret) if op.kind == "pop" else op
           for op in ops]
    return ops, draw(st.sampled_from([1, 2, 3, 100]))


def _agree(ops: list[Operation], capacity: int) -> int:
    history = History.from_trusted_operations(ops, capacity)
    decided = 0
    for criterion in Criterion:
        fast = check_mpmc(history, criterion, witness=True)
        generic = check_linearizable(ops, QueueSpec(capacity, criterion))
        if fast.decided:
            decided += 1
            assert fast.ok == generic.ok, f"{criterion.value}: fast says {fast.ok}, generic {generic.ok}: {ops}"
        dispatched = check_queue_history(history, criterion, UNLIMITED)
        assert dispatched.status == ("linearizable" if generic.ok else "violation")
    return decided


@settings(max_examples=max(1000, settings.default.max_examples), deadline=None)
@given(small_histories())
def test_the_fast_checker_agrees_with_the_generic_search(case: tuple[list[Operation], int]) -> None:
    ops, capacity = case
    _agree(ops, capacity)


def test_simulated_and_mutated_histories_agree_and_are_mostly_decided() -> None:
    rng = random.Random(15)
    names = sorted(MPMC_MUTATIONS)
    decided = total = 0
    for _ in range(1_000):
        ops = random_mpmc_history(rng)
        mutation = rng.choice([None, *names])
        if mutation is not None:
            ops = MPMC_MUTATIONS[mutation](ops, rng)
        decided += _agree(ops, rng.choice([1, 2, 3, 100]))
        total += 2
    assert decided >= 0.97 * total, f"only {decided} of {total} decided"


# ---------------------------------------------------------------- bad patterns

BAD: dict[str, tuple[list[Operation], int, tuple[Criterion, ...], str]] = {
    "value never pushed": ([push(0, 1, 0, 1, "p"), pop(1, 2, 2, 3, "c")], 9, (STRICT, TOLERANT), "no push pushed"),
    "value of a full push": ([push(0, 1, 0, 1, "p", ok=False), pop(1, 1, 2, 3, "c")], 9, (STRICT, TOLERANT),
                             "answered 'full'"),
    "popped twice": ([push(0, 1, 0, 1, "p"), pop(1, 1, 2, 3, "c"), pop(2, 1, 2, 3, "d")], 9, (STRICT, TOLERANT),
                     "popped twice"),
    "pop before its push": ([pop(0, 1, 0, 1, "c"), push(1, 1, 2, 3, "p")], 9, (STRICT, TOLERANT), "before push"),
    "FIFO: pushes then pops reversed": (
        [push(0, 1, 0, 1, "p"), push(1, 2, 2, 3, "q"), pop(2, 2, 4, 5, "c"), pop(3, 1, 6, 7, "d")],
        9, (STRICT, TOLERANT), "FIFO order broken"),
    "FIFO: overlapping pushes, pops reversed": (
        [push(0, 1, 0, 3, "p"), push(1, 2, 4, 5, "q"), pop(2, 2, 6, 7, "c"), pop(3, 1, 2, 10, "d"),
         push(4, 3, 1, 2, "r"), pop(5, 3, 8, 9, "e")],
        9, (STRICT, TOLERANT), "FIFO order broken"),
    "a value left behind blocks a later one": (
        [push(0, 1, 0, 1, "p"), push(1, 2, 2, 3, "q"), pop(2, 2, 4, 5, "c")], 9, (STRICT, TOLERANT),
        "never popped"),
    "empty while two values overlap it": (
        [push(0, 1, 0, 1, "p"), push(1, 2, 2, 3, "q"), pop(2, 1, 5, 6, "c"), pop(3, None, 2, 8, "e"),
         pop(4, 2, 9, 10, "d")], 9, (STRICT,), "answered 'empty'"),
    "overflow: two values held at once": (
        [push(0, 1, 0, 1, "p"), push(1, 2, 2, 3, "q"), pop(2, 1, 4, 5, "c"), pop(3, 2, 6, 7, "d")],
        1, (STRICT, TOLERANT), "more than the capacity 1"),
    "false full": ([push(0, 1, 0, 1, "p", ok=False)], 1, (STRICT,), "answered 'full'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_pattern_is_reported_with_its_reason(name: str) -> None:
    ops, capacity, criteria, needle = BAD[name]
    history = History.from_operations(ops, capacity)
    for criterion in criteria:
        result = check_mpmc(history, criterion)
        assert result.decided and not result.ok and result.violation is not None, (name, criterion)
        assert needle in result.violation.reason, result.violation.reason
        assert result.violation.culprits and set(result.violation.culprits) <= set(result.violation.window)
        assert not check_linearizable(ops, QueueSpec(capacity, criterion)).ok
    if TOLERANT not in criteria:
        assert check_mpmc(history, TOLERANT).ok


def test_an_empty_pop_between_two_values_is_fine() -> None:
    """The queue can be empty at 5.5 (a popped at 5, b pushed at 6): no false alarm."""
    ops = [push(0, 1, 0, 1, "p"), pop(1, 1, 5, 12, "c"), push(2, 2, 3, 6, "q"), pop(3, None, 2, 10, "e"),
           pop(4, 2, 11, 13, "d")]
    result = check_mpmc(History.from_operations(ops, 9), STRICT)
    assert result.decided and result.ok and result.exact
    assert check_linearizable(ops, QueueSpec(9)).ok


# ---------------------------------------------------------------- large histories, witnesses, mutants


def _replay(history: History, order: tuple[int, ...], criterion: Criterion) -> None:
    spec = QueueSpec(history.capacity, criterion)
    state = spec.initial()
    latest_call = -1
    for row in order:
        op = history.operation(row)
        assert op.ret >= latest_call, f"real time broken at #{op.id}"
        latest_call = max(latest_call, op.call)
        after = spec.step(state, op)
        assert after is not None, f"#{op.id} illegal in the witness"
        state = after


@pytest.mark.parametrize("capacity,spurious", [(2**62, 0.0), (2**62, 0.1), (8, 0.0)])
def test_eight_producers_eight_consumers_decided_with_a_witness(capacity: int, spurious: float) -> None:
    history = mpmc_history(3, 20_000, 8, 8, capacity, spurious=spurious)
    criteria = (TOLERANT,) if capacity == 8 or spurious else (STRICT, TOLERANT)
    for criterion in criteria:
        result = check_mpmc(history, criterion, witness=True)
        assert result.decided and result.ok and result.witness is not None
        placed = result.witness
        if criterion is STRICT:
            assert sorted(placed) == list(range(len(history)))
        _replay(history, placed, criterion)
    if spurious:  # random 'empty'/'full' answers: strictly, some is caught
        assert not check_mpmc(history, STRICT).ok


def _mutated(history: History, change: str) -> History:
    ops = history.operations()
    pops = [i for i, op in enumerate(ops) if op.kind == "pop" and op.ok]
    late = sorted(pops, key=lambda i: ops[i].call)[-40:]
    if change == "swap":
        a, b = late[0], late[-1]
        ops[a], ops[b] = (Operation(ops[a].id, ops[a].thread, "pop", None, ops[b].result, ops[a].call, ops[a].ret),
                          Operation(ops[b].id, ops[b].thread, "pop", None, ops[a].result, ops[b].call, ops[b].ret))
    elif change == "lost":  # a pop answers 'empty' though its value was queued long before
        a = late[-1]
        ops[a] = Operation(ops[a].id, ops[a].thread, "pop", None, None, ops[a].call, ops[a].ret)
        ops = [op for op in ops if not (op.kind == "pop" and op.ok and op.call > ops[a].ret + 10**6)]
    elif change == "duplicate":
        a, b = late[0], late[-1]
        ops[b] = Operation(ops[b].id, ops[b].thread, "pop", None, ops[a].result, ops[b].call, ops[b].ret)
    return History.from_trusted_operations(ops, history.capacity)


@pytest.mark.parametrize("change,needle", [("swap", "returned"), ("duplicate", "popped twice"),
                                           ("lost", "never popped")])
def test_a_broken_large_history_is_caught(change: str, needle: str) -> None:
    history = _mutated(mpmc_history(5, 20_000, 8, 8), change)
    result = check_mpmc(history, STRICT)
    assert result.decided and not result.ok and result.violation is not None
    assert needle in result.violation.reason, result.violation.reason


def test_values_pushed_twice_and_overlapping_threads_are_refused() -> None:
    with pytest.raises(NotDistinctError):
        check_mpmc(History.from_operations([push(0, 1, 0, 1, "p"), push(1, 1, 2, 3, "q")], 9))
    with pytest.raises(HistoryFormatError, match="overlap"):
        check_threads(History.from_operations([push(0, 1, 0, 5, "p"), push(1, 2, 3, 8, "p")], 9))


def test_bounded_strict_histories_left_undecided_go_to_the_budgeted_search() -> None:
    """A capacity-2 queue under contention with 'full' answers: if the constructions do
    not settle it, the dispatcher's generic search must (here within its budget)."""
    history = mpmc_history(7, 40, 3, 3, 2)
    fast = check_mpmc(history, STRICT)
    verdict = check_queue_history(history, STRICT, Budget(200_000, None))
    assert verdict.status == "linearizable"
    assert verdict.checker == ("mpmc-fast" if fast.decided else "generic")
