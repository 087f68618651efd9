"""The bounded FIFO queue, as a sequential specification, and the two correctness criteria.

Sequential specification
------------------------
A bounded FIFO of capacity ``C`` holds a sequence of at most ``C`` values.

- ``try_push(v)``: if fewer than ``C`` values are held, append ``v`` and answer ``True``;
  otherwise change nothing and answer ``False`` ("full").
- ``try_pop()``: if a value is held, remove the oldest one and answer it; otherwise
  change nothing and answer ``None`` ("empty").

Criteria (what a concurrent history must satisfy)
-------------------------------------------------
Both criteria ask for a *linearization*: a total order of all operations that respects
real time (``a.ret < b.call`` puts ``a`` first) and each thread's program order.

``strict``
    Every operation, failed or not, must be a legal step of the sequential spec at its
    place in the order: a push answers "full" only when ``C`` values are held, a pop
    answers "empty" only when none is. This is classic linearizability (Herlihy & Wing)
    with respect to the spec above.

``tolerant``
    Successful operations must be legal steps as above (a successful push still needs
    room, a successful pop still returns the oldest value); a *failed* operation (push
    answering "full", pop answering "empty") changes nothing and needs no justification:
    it may be answered in any state. Equivalently, the history with its failed
    operations removed is strictly linearizable. This is what a store-buffered machine
    gives a fence-free ring: the "full"/"empty" answer may be based on a stale index
    (compare TSO-linearizability, Burckhardt et al., ESOP'12), but no value is lost,
    duplicated, invented, reordered or overwritten.

Every strictly linearizable history is tolerant-linearizable; not conversely.

:class:`QueueSpec` packages the spec and a criterion for the generic checker
(:mod:`spec.linearizability`); :mod:`spec.spsc_fast` decides the same question for
single-producer single-consumer histories in linear time after sorting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeVar

from spec.history import Operation, Value

State = TypeVar("State")


class Criterion(enum.Enum):
    """Which answers a linearization must justify (see the module docstring)."""

    STRICT = "strict"
    TOLERANT = "tolerant"


class SequentialSpec(Protocol[State]):
    """A deterministic sequential specification, for the generic checker.

    ``step(state, op)`` is the state after ``op`` if ``op``'s answer is legal in
    ``state``, else ``None``. States must be hashable (they are memoized).
    """

    def initial(self) -> State:
        """The state before any operation."""
        ...

    def step(self, state: State, op: Operation) -> State | None:
        """The state after ``op`` in ``state``, or ``None`` if its answer is illegal."""
        ...


@dataclass(frozen=True)
class BoundedQueue:
    """A bounded FIFO value: ``items[0]`` is the oldest. Immutable; operations return a
    new queue and the answer."""

    capacity: int
    items: tuple[Value, ...] = ()

    def try_push(self, value: Value) -> tuple[BoundedQueue, bool]:
        """Append ``value`` if there is room.

        pre: self.capacity >= 1
        post: __return__[1] == (len(self.items) < self.capacity)
        post: len(__return__[0].items) <= self.capacity or not __return__[1]
        """
        if len(self.items) < self.capacity:
            return BoundedQueue(self.capacity, self.items + (value,)), True
        return self, False

    def try_pop(self) -> tuple[BoundedQueue, Value | None]:
        """Remove and return the oldest value, or ``None`` if empty.

        post: (__return__[1] is None) == (len(self.items) == 0)
        post: __return__[0].items == self.items[1:]
        """
        if self.items:
            return BoundedQueue(self.capacity, self.items[1:]), self.items[0]
        return self, None


@dataclass(frozen=True)
class QueueSpec:
    """The bounded queue of ``capacity`` under ``criterion``, as a :class:`SequentialSpec`
    whose states are tuples of held values (oldest first)."""

    capacity: int
    criterion: Criterion = Criterion.STRICT

    def initial(self) -> tuple[Value, ...]:
        """The empty queue."""
        return ()

    def step(self, state: tuple[Value, ...], op: Operation) -> tuple[Value, ...] | None:
        """The queue after ``op``, or ``None`` if ``op``'s answer is illegal here."""
        tolerant = self.criterion is Criterion.TOLERANT
        if op.kind == "push":
            if op.result is True:
                if len(state) < self.capacity:
                    return state + (op.arg,)  # type: ignore[operator]
                return None
            return state if tolerant or len(state) == self.capacity else None
        if op.result is None:
            return state if tolerant or not state else None
        if state and state[0] == op.result and type(state[0]) is type(op.result):
            return state[1:]
        return None


def run_sequentially(capacity: int, ops: list[tuple[str, Value | None]]) -> list[bool | Value | None]:
    """The answers the sequential spec gives to ``ops`` (``("push", v)`` / ``("pop", None)``)
    run in order from the empty queue — a reference for tests and for users."""
    queue = BoundedQueue(capacity)
    answers: list[bool | Value | None] = []
    for kind, arg in ops:
        if kind == "push":
            assert arg is not None
            queue, pushed = queue.try_push(arg)
            answers.append(pushed)
        else:
            queue, popped = queue.try_pop()
            answers.append(popped)
    return answers
