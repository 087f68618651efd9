"""Seeded SPSC histories: linearizable ones from a simulated queue, and mutants of them.

:func:`simulated_history` runs a producer and a consumer with random overlapping
intervals against an atomic queue: each operation takes effect at a linearization
point strictly inside its interval, so the history is strictly linearizable by
construction (with ``spurious`` > 0, some operations answer "full"/"empty" at random
instead: still tolerant-linearizable, usually not strictly). Stamps come from one
integer clock (producer events even, consumer events odd, so all are distinct).

:data:`MUTATIONS` break a history in the ways real queues break (swapped values, a
shifted stamp, a dropped push, an invented pop, a false "empty", a false "full"); a
mutated history may or may not still be linearizable — the checkers must agree on it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace
from typing import Callable

from spec.history import History, Operation


def simulated_history(
    seed: int,
    operations: int,
    capacity: int = 8,
    *,
    spurious: float = 0.0,
    max_latency: int = 4,
    max_gap: int = 3,
) -> History:
    """A history of ``operations`` operations (about half pushes, half pops)."""
    rng = random.Random(seed)
    rand = rng.randrange
    producer_ops = operations // 2 + operations % 2
    consumer_ops = operations // 2
    # per-thread intervals: (call, linearization point, return), strictly increasing
    timelines: list[list[tuple[int, int, int]]] = []
    for count, parity in ((producer_ops, 0), (consumer_ops, 1)):
        clock = parity + 2 * rand(1, 1 + max_gap)
        line = []
        for _ in range(count):
            call = clock
            lin = call + 2 * rand(1, 1 + max_latency)
            ret = lin + 2 * rand(1, 1 + max_latency)
            line.append((call, lin, ret))
            clock = ret + 2 * rand(1, 1 + max_gap)
        timelines.append(line)
    events = sorted(
        [(lin, 0, i) for i, (_, lin, _) in enumerate(timelines[0])]
        + [(lin, 1, i) for i, (_, lin, _) in enumerate(timelines[1])]
    )
    queue: deque[int] = deque()
    results: list[list[object]] = [[None] * producer_ops, [None] * consumer_ops]
    for _, thread, i in events:
        flaky = spurious > 0 and rng.random() < spurious
        if thread == 0:
            pushed = len(queue) < capacity and not flaky
            if pushed:
                queue.append(i)
            results[0][i] = pushed
        else:
            results[1][i] = queue.popleft() if queue and not flaky else None
    ops: list[Operation] = []
    for i, (call, _, ret) in enumerate(timelines[0]):
        ops.append(Operation(len(ops), "producer", "push", i, results[0][i], call, ret))  # type: ignore[arg-type]
    for i, (call, _, ret) in enumerate(timelines[1]):
        ops.append(Operation(len(ops), "consumer", "pop", None, results[1][i], call, ret))  # type: ignore[arg-type]
    return History.from_trusted_operations(ops, capacity)  # well-formed by construction


Mutation = Callable[[list[Operation], random.Random], list[Operation]]


def _successful(ops: list[Operation], kind: str) -> list[int]:
    return [i for i, op in enumerate(ops) if op.kind == kind and op.ok]


def swap_values(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """Two successful pops exchange their results."""
    pops = _successful(ops, "pop")
    if len(pops) < 2:
        return ops
    a, b = rng.sample(pops, 2)
    out = list(ops)
    out[a], out[b] = replace(ops[a], result=ops[b].result), replace(ops[b], result=ops[a].result)
    return out


def shift_stamps(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """One operation's interval moves (keeping its thread sequential)."""
    i = rng.randrange(len(ops)) if ops else 0
    if not ops:
        return ops
    op = ops[i]
    same = sorted((o for o in ops if o.thread == op.thread), key=lambda o: o.call)
    k = same.index(op)
    low = same[k - 1].ret + 1 if k > 0 else 0
    high = same[k + 1].call - 1 if k + 1 < len(same) else op.ret + 20
    if high - low < 1:
        return ops
    call = rng.randint(low, high - 1)
    ret = rng.randint(call + 1, high)
    out = list(ops)
    out[i] = replace(op, call=call, ret=ret)
    return out


def drop_push(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """A successful push disappears from the history."""
    pushes = _successful(ops, "push")
    if not pushes:
        return ops
    gone = rng.choice(pushes)
    return [op for i, op in enumerate(ops) if i != gone]


def _free_slot(ops: list[Operation], thread: str, rng: random.Random) -> tuple[int, int] | None:
    same = sorted((o for o in ops if o.thread == thread), key=lambda o: o.call)
    gaps = [(0 if k == 0 else same[k - 1].ret, same[k].call) for k in range(len(same))]
    gaps.append((same[-1].ret if same else 0, (same[-1].ret if same else 0) + 10))
    gaps = [(a + 1, b - 1) for a, b in gaps if b - a >= 3]
    if not gaps:
        return None
    a, b = rng.choice(gaps)
    call = rng.randint(a, b - 1)
    return call, rng.randint(call + 1, b)


def invent_pop(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """The consumer pops a value: a pushed one (popped twice) or one never pushed."""
    slot = _free_slot(ops, "consumer", rng)
    pushed = [op.arg for op in ops if op.kind == "push" and op.ok]
    if slot is None:
        return ops
    value = rng.choice(pushed) if pushed and rng.random() < 0.5 else 10**6 + rng.randrange(100)
    new_id = max((op.id for op in ops), default=-1) + 1
    return ops + [Operation(new_id, "consumer", "pop", None, value, *slot)]


def false_empty(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """A pop answers "empty": a successful one is turned, or a new one inserted."""
    pops = _successful(ops, "pop")
    if pops and rng.random() < 0.5:
        i = rng.choice(pops)
        out = list(ops)
        out[i] = replace(ops[i], result=None)
        return out
    slot = _free_slot(ops, "consumer", rng)
    if slot is None:
        return ops
    new_id = max((op.id for op in ops), default=-1) + 1
    return ops + [Operation(new_id, "consumer", "pop", None, None, *slot)]


def false_full(ops: list[Operation], rng: random.Random) -> list[Operation]:
    """A push answers "full": a successful one is turned, or a new one inserted."""
    pushes = _successful(ops, "push")
    if pushes and rng.random() < 0.5:
        i = rng.choice(pushes)
        out = list(ops)
        out[i] = replace(ops[i], result=False)
        return out
    slot = _free_slot(ops, "producer", rng)
    if slot is None:
        return ops
    new_id = max((op.id for op in ops), default=-1) + 1
    return ops + [Operation(new_id, "producer", "push", 10**6 + new_id, False, *slot)]


MUTATIONS: dict[str, Mutation] = {
    "swap_values": swap_values,
    "shift_stamps": shift_stamps,
    "drop_push": drop_push,
    "invent_pop": invent_pop,
    "false_empty": false_empty,
    "false_full": false_full,
}


def mutate(history: History, name: str, seed: int) -> History:
    """``history`` with mutation ``name`` applied (seeded)."""
    ops = MUTATIONS[name](history.operations(), random.Random(seed))
    return History.from_trusted_operations(ops, history.capacity)
