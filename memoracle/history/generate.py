"""Seeded multi-producer multi-consumer queue histories, and mutants of them.

:func:`mpmc_history` runs ``producers`` + ``consumers`` threads with random overlapping
intervals against an atomic queue of ``capacity``: each operation takes effect at a point
strictly inside its interval, so the history is strictly linearizable by construction
(with ``spurious`` > 0 some answers are "full"/"empty" at random: still
tolerant-linearizable). Pushed values are distinct (0, 1, 2, ...). Stamps come from one
integer clock, each thread on its own residue, so all stamps are distinct.

:data:`MPMC_MUTATIONS` break a history the ways a real queue breaks (two pops exchange
values, an interval moves, a pop answers "empty", a push answers "full", a pop returns
a value that stays queued, a push moves after its pop); a mutated history may or may not
still be linearizable — the checkers must agree on it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace
from typing import Callable

from spec.history import History, Operation


def mpmc_history(
    seed: int,
    operations: int,
    producers: int = 8,
    consumers: int = 8,
    capacity: int = 2**62,
    *,
    spurious: float = 0.0,
    max_latency: int = 6,
    max_gap: int = 4,
) -> History:
    """A history of ``operations`` operations spread evenly over the threads."""
    rng = random.Random(seed)
    threads = producers + consumers
    step = 2 * threads
    lines: list[list[tuple[int, int, int]]] = []
    for t in range(threads):
        count = operations // threads + (1 if t < operations % threads else 0)
        clock = rng.randint(1, max_gap) * step + t
        line = []
        for _ in range(count):
            call = clock
            point = call + step * rng.randint(1, max_latency)
            ret = point + step * rng.randint(1, max_latency)
            line.append((call, point, ret))
            clock = ret + step * rng.randint(1, max_gap)
        lines.append(line)
    events = sorted((point, t, i) for t, line in enumerate(lines) for i, (_, point, _) in enumerate(line))
    queue: deque[int] = deque()
    answers: dict[tuple[int, int], tuple[int | None, object]] = {}
    value = 0
    for _, t, i in events:
        flaky = spurious > 0 and rng.random() < spurious
        if t < producers:
            pushed = len(queue) < capacity and not flaky
            if pushed:
                queue.append(value)
            answers[t, i] = (value, pushed)
            value += 1
        else:
            answers[t, i] = (None, queue.popleft() if queue and not flaky else None)
    ops: list[Operation] = []
    for t, line in enumerate(lines):
        name = f"p{t}" if t < producers else f"c{t - producers}"
        for i, (call, _, ret) in enumerate(line):
            arg, result = answers[t, i]
            kind = "push" if t < producers else "pop"
            ops.append(Operation(len(ops), name, kind, arg, result, call, ret))  # type: ignore[arg-type]
    return History.from_trusted_operations(ops, capacity)


def random_mpmc_history(rng: random.Random, max_threads: int = 4, max_per_thread: int = 3) -> list[Operation]:
    """A small history for cross-checks: a simulated queue's (mutated or not) with
    threads that both push and pop (capacity is the caller's: answers may violate it)."""
    threads = rng.randint(2, max_threads)
    lines: list[list[tuple[int, int, int]]] = []
    for _ in range(threads):
        clock = rng.randrange(0, 4)
        line = []
        for _ in range(rng.randint(0, max_per_thread)):
            call = clock
            point = call + rng.randint(0, 4)
            ret = point + rng.randint(0, 4)
            line.append((call, point, ret))
            clock = ret + rng.randint(1, 3)
        lines.append(line)
    capacity = rng.choice([1, 2, 3, 100])
    events = sorted((p, rng.random(), t, i) for t, line in enumerate(lines) for i, (_, p, _) in enumerate(line))
    queue: deque[int] = deque()
    answers: dict[tuple[int, int], tuple[str, int | None, object]] = {}
    value = 0
    spurious = rng.choice([0.0, 0.2])
    for _, _, t, i in events:
        flaky = rng.random() < spurious
        if rng.random() < 0.5:
            pushed = len(queue) < capacity and not flaky
            if pushed:
                queue.append(value)
            answers[t, i] = ("push", value, pushed)
            value += 1
        else:
            answers[t, i] = ("pop", None, queue.popleft() if queue and not flaky else None)
    ops: list[Operation] = []
    for t, line in enumerate(lines):
        for i, (call, _, ret) in enumerate(line):
            kind, arg, result = answers[t, i]
            ops.append(Operation(len(ops), f"t{t}", kind, arg, result, call, ret))  # type: ignore[arg-type]
    return ops


MpmcMutation = Callable[[list[Operation], random.Random], list[Operation]]


def _rows(ops: list[Operation], kind: str, ok: bool | None = None) -> list[int]:
    return [i for i, op in enumerate(ops) if op.kind == kind and (ok is None or op.ok == ok)]


def swap_pops(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """Two successful pops exchange their values."""
    pops = _rows(ops, "pop", True)
    if len(pops) < 2:
        return ops
    a, b = rng.sample(pops, 2)
    out = list(ops)
    out[a], out[b] = replace(ops[a], result=ops[b].result), replace(ops[b], result=ops[a].result)
    return out


def move_interval(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """One operation's interval moves within the free time of its thread."""
    if not ops:
        return ops
    i = rng.randrange(len(ops))
    op = ops[i]
    same = sorted((o for o in ops if o.thread == op.thread), key=lambda o: o.call)
    k = same.index(op)
    low = same[k - 1].ret + 1 if k > 0 else 0
    high = same[k + 1].call - 1 if k + 1 < len(same) else op.ret + 12
    if high - low < 1:
        return ops
    call = rng.randint(low, high - 1)
    out = list(ops)
    out[i] = replace(op, call=call, ret=rng.randint(call + 1, high))
    return out


def false_empty(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """A successful pop answers "empty" instead."""
    pops = _rows(ops, "pop", True)
    if not pops:
        return ops
    i = rng.choice(pops)
    out = list(ops)
    out[i] = replace(ops[i], result=None)
    return out


def false_full(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """A successful push answers "full" instead (its value, if popped, is then invented)."""
    pushes = _rows(ops, "push", True)
    if not pushes:
        return ops
    i = rng.choice(pushes)
    out = list(ops)
    out[i] = replace(ops[i], result=False)
    return out


def pop_left_value(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """An "empty" pop returns some pushed value instead (maybe one that stays queued,
    maybe one popped already)."""
    empties = _rows(ops, "pop", False)
    pushed = [ops[i].arg for i in _rows(ops, "push", True)]
    if not empties or not pushed:
        return ops
    i = rng.choice(empties)
    out = list(ops)
    out[i] = replace(ops[i], result=rng.choice(pushed))
    return out


MPMC_MUTATIONS: dict[str, MpmcMutation] = {
    "swap_pops": swap_pops,
    "move_interval": move_interval,
    "false_empty": false_empty,
    "false_full": false_full,
    "pop_left_value": pop_left_value,
}
