"""A generic linearizability checker for any deterministic sequential specification.

Algorithm: Wing & Gong's search as refined by Lowe (and used by Porcupine). Calls and
returns are laid out in time order in a doubly linked list; the search repeatedly tries
to linearize a pending call whose answer the spec accepts in the current state, removing
(``lift``) its call and return from the list, and backtracks when it meets a return
whose operation has not been linearized. A configuration (set of linearized
operations, spec state) that was reached before is never explored again (Lowe's
memoization), so the search is exponential only in the number of mutually concurrent
operations, not in the length of the history.

The linearized set is stored as ``(w, frozenset(linearized operations numbered >= w))``
where every required operation numbered below ``w`` (in call order) is linearized: its
size is bounded by the concurrency of the history, not its length, so the memo table of
a 100,000-operation history is small (a bitset per entry would take 12 KiB each).

Indeterminate operations
------------------------
An operation whose ``ret`` is :data:`INDETERMINATE` (a request that timed out, a client
that crashed: Jepsen's ``:info``) *may or may not* have taken effect: if it did, it took
effect at one instant after its call, with the answer the spec gives there. The search
may linearize it anywhere after its call, or never; a history is linearizable when every
*other* operation is linearized. (Such an operation's return lies after every real one,
so meeting it means every required operation has been placed.)

Budget
------
The problem is NP-complete in general (Gibbons & Korach), so a search may not end in any
useful time. A :class:`Budget` bounds it: at most ``max_states`` memoized configurations
per partition, and ``max_seconds`` of wall-clock time in all. When either runs out the
answer is **unknown** (:attr:`GenericResult.unknown` names the partitions), never a
guess: a partition that ran out is neither linearizable nor violating. A violation found
in another partition is still a violation (it is certain).

Guarantees:

- **Sound and complete** within the budget: the answer is ``ok`` exactly when a
  linearization exists (real-time order ``a.ret < b.call`` kept, each thread's order
  kept, every answer legal in the spec).
- On success, ``witness`` is one linearization (operation ids in order), checked
  again step by step against the spec before it is returned.
- On failure, ``violation.longest`` is a longest prefix of a linearization found (as
  Porcupine shows it), and ``violation.minimal`` is a *1-minimal violating
  sub-history*: a subset of the operations that is itself not linearizable and that
  becomes linearizable if any one *unit* is removed. Units are given by ``unit`` (by
  default, one operation each; for queues, a push together with the pops of its value,
  so that removing a push never makes a pop "invent" a value). Minimization runs when
  the history (partition) has at most ``minimize_limit`` operations and the time budget
  allows; otherwise ``minimal`` is ``None``. A sub-search of the minimization that runs
  out of budget counts as "not shown violating", so the result is still violating, only
  perhaps not 1-minimal (``minimal_complete`` says which).
- **P-compositionality**: with ``partition``, operations are grouped by
  ``partition(op)`` and each group is checked alone against a fresh spec state (valid
  when the spec is a product of independent per-key objects, e.g. a key-value store per
  key). The history is linearizable iff every group is; the result names the first
  failing group (groups are checked in order of first appearance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Protocol, Sequence, TypeVar

from spec.history import HistoryFormatError, Operation

#: The return stamp of an operation that may or may not have taken effect.
INDETERMINATE = 2**63


class TimedOp(Protocol):
    """What the generic checker needs of an operation (``Operation`` has it)."""

    @property
    def id(self) -> int: ...

    @property
    def thread(self) -> Hashable: ...

    @property
    def call(self) -> int: ...

    @property
    def ret(self) -> int: ...

    def describe(self) -> str: ...


S = TypeVar("S", bound=Hashable)
O = TypeVar("O", bound=TimedOp)
O_contra = TypeVar("O_contra", contravariant=True)


class ObjectSpec(Protocol[S, O_contra]):
    """A deterministic sequential specification: ``step(state, op)`` is the state after
    ``op`` if its answer is legal in ``state``, else ``None``. States are memoized, so
    they must be hashable. (:class:`spec.spsc_model.QueueSpec` is one.)"""

    def initial(self) -> S: ...

    def step(self, state: S, op: O_contra) -> S | None: ...


@dataclass(frozen=True)
class Budget:
    """How much the generic search may spend before answering "unknown".

    ``max_states``: memoized configurations per partition (each costs roughly a few
    hundred bytes, so this also bounds memory); ``max_seconds``: wall-clock seconds for
    the whole check, minimization included. ``None`` = no limit.
    """

    max_states: int | None = 1_000_000
    max_seconds: float | None = None

    def describe(self) -> str:
        """``200000 states per partition, 20 s`` (for messages)."""
        parts = []
        if self.max_states is not None:
            parts.append(f"{self.max_states} states per partition")
        if self.max_seconds is not None:
            parts.append(f"{self.max_seconds:g} s")
        return ", ".join(parts) or "no limit"


#: No limit at all (tests and small, known-easy histories).
UNLIMITED = Budget(None, None)


class _Exhausted(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Meter:
    """Counts states and watches the clock; raises :class:`_Exhausted` when over."""

    def __init__(self, budget: Budget, deadline: float | None) -> None:
        self.max_states = budget.max_states
        self.deadline = deadline
        self.states = 0

    def tick(self, states: int) -> None:
        self.states = states
        if self.max_states is not None and states > self.max_states:
            raise _Exhausted(f"more than {self.max_states} states")
        if self.deadline is not None and states & 1023 == 0 and time.monotonic() > self.deadline:
            raise _Exhausted("the time budget ran out")

    def check_clock(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _Exhausted("the time budget ran out")


@dataclass(frozen=True)
class GenericViolation:
    """Why a history (partition) is not linearizable."""

    partition: Hashable
    longest: tuple[int, ...]
    minimal: tuple[TimedOp, ...] | None
    operations: int
    minimal_complete: bool = True

    def render(self) -> str:
        """A readable report: the minimal violating sub-history and the longest prefix."""
        where = "" if self.partition is None else f"partition {self.partition!r}, "
        lines = [f"not linearizable ({where}{self.operations} operations)"]
        if self.minimal is not None:
            which = "a minimal" if self.minimal_complete else "a small (budget-limited)"
            lines.append(f"{which} violating sub-history ({len(self.minimal)} operations):")
            lines += [f"  {op.describe()}" for op in sorted(self.minimal, key=lambda o: o.call)]
        shown = self.longest[-12:]
        lines.append(
            f"longest partial linearization: {len(self.longest)} operations"
            + (f", ending ... {' '.join(f'#{i}' for i in shown)}" if shown else "")
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class Unknown:
    """A partition the budget did not suffice for: how far the search got."""

    partition: Hashable
    operations: int
    states: int
    why: str
    longest: tuple[int, ...]


@dataclass(frozen=True)
class GenericResult:
    """The verdict: ``ok`` (every partition linearizable, with a witness linearization
    per partition), else a ``violation`` (certain), else ``unknown`` (the budget ran out
    on these partitions and no violation was found elsewhere)."""

    ok: bool
    witness: dict[Hashable, tuple[int, ...]] = field(default_factory=dict)
    violation: GenericViolation | None = None
    unknown: tuple[Unknown, ...] = ()
    states: int = 0

    @property
    def verdict(self) -> str:
        """``"ok"``, ``"violation"`` or ``"unknown"``."""
        return "ok" if self.ok else "violation" if self.violation is not None else "unknown"


@dataclass
class _Search:
    ok: bool
    order: list[int]  # indices into the op list
    states: int = 0


def _search(ops: Sequence[O], spec: ObjectSpec[S, O], meter: _Meter | None = None) -> _Search:
    """Wing–Gong–Lowe search over ``ops`` (which must be in call order). Raises
    :class:`_Exhausted` (carrying the longest prefix found) when ``meter`` says so."""
    n = len(ops)
    if n == 0:
        return _Search(True, [])
    optional = [op.ret >= INDETERMINATE for op in ops]
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    size = 2 * n + 1
    nxt = list(range(1, size + 1))
    prv = list(range(-1, size - 1))
    nxt[size - 1] = 0
    prv[0] = size - 1  # circular list with sentinel 0
    node_op = [0] * size
    is_call = [False] * size
    ret_node = [0] * n
    for k, (_, is_return, i) in enumerate(events, start=1):
        node_op[k] = i
        if is_return:
            ret_node[i] = k
        else:
            is_call[k] = True
    # Required operations are numbered 0..r-1 in call order; "low" counts over them only,
    # so an indeterminate operation that is never linearized does not hold "low" back.
    rank = [0] * n
    required = 0
    for i in range(n):
        rank[i] = -1 if optional[i] else required
        required += not optional[i]

    def lift(node: int) -> None:
        for k in (node, ret_node[node_op[node]]):
            nxt[prv[k]] = nxt[k]
            prv[nxt[k]] = prv[k]

    def unlift(node: int) -> None:
        for k in (ret_node[node_op[node]], node):
            nxt[prv[k]] = k
            prv[nxt[k]] = k

    state: S = spec.initial()
    step = spec.step
    low = 0  # every required op of rank < low is linearized
    above: set[int] = set()  # ranks >= low of linearized required ops
    extra: frozenset[int] = frozenset()  # linearized indeterminate ops
    cache: set[tuple[int, frozenset[int], frozenset[int], S]] = set()
    stack: list[tuple[int, S]] = []  # (call node, state before it)
    # The longest prefix found, kept as a copy of the stack that is brought up to date
    # from ``shared`` on (the stack's length is never below it since the last copy), so
    # that keeping it costs O(1) amortized per step, not O(depth) per backtrack.
    best: list[int] = []
    shared = 0

    def remember() -> None:
        nonlocal shared
        del best[shared:]
        best.extend(node_op[k] for k, _ in stack[shared:])
        shared = len(stack)
    node = nxt[0]
    try:
        while nxt[0] != 0:
            if is_call[node]:
                i = node_op[node]
                after = step(state, ops[i])
                if after is not None:
                    new_low, new_above, new_extra = low, above, extra
                    if optional[i]:
                        new_extra = extra | {i}
                    else:
                        new_above = above | {rank[i]}
                        while new_low in new_above:
                            new_above.discard(new_low)
                            new_low += 1
                    key = (new_low, frozenset(new_above), new_extra, after)
                    if key not in cache:
                        cache.add(key)
                        if meter is not None:
                            meter.tick(len(cache))
                        stack.append((node, state))
                        state, low, above, extra = after, new_low, new_above, new_extra
                        lift(node)
                        node = nxt[0]
                        continue
                node = nxt[node]
            else:
                if optional[node_op[node]]:
                    break  # every required operation is linearized
                if len(stack) > len(best):
                    remember()
                if not stack:
                    return _Search(False, best, len(cache))
                node, state = stack.pop()
                if shared > len(stack):
                    shared = len(stack)
                i = node_op[node]
                if optional[i]:
                    extra = extra - {i}
                elif rank[i] < low:
                    above.update(range(rank[i] + 1, low))
                    low = rank[i]
                else:
                    above = set(above)
                    above.discard(rank[i])
                unlift(node)
                node = nxt[node]
    except _Exhausted as exhausted:
        if len(stack) > len(best):
            remember()
        raise _ExhaustedSearch(exhausted.why, best, len(cache)) from None
    return _Search(True, [node_op[k] for k, _ in stack], len(cache))


class _ExhaustedSearch(_Exhausted):
    def __init__(self, why: str, best: list[int], states: int) -> None:
        super().__init__(why)
        self.best = best
        self.states = states


def _verify_witness(ops: Sequence[O], spec: ObjectSpec[S, O], order: Sequence[int]) -> None:
    """Assert that ``order`` is a linearization of ``ops`` (a self-check of the search):
    every required operation once, indeterminate ones at most once, real time kept,
    every answer legal."""
    placed = set(order)
    assert len(placed) == len(order), "witness repeats an operation"
    assert all(i in placed for i, op in enumerate(ops) if op.ret < INDETERMINATE), "witness misses an operation"
    state = spec.initial()
    latest_call = -1
    for i in order:
        op = ops[i]
        assert op.ret >= latest_call, f"witness breaks real time at #{op.id}"
        latest_call = max(latest_call, op.call)
        after = spec.step(state, op)
        assert after is not None, f"witness makes #{op.id} illegal"
        state = after


def _sorted(ops: Sequence[O]) -> list[O]:
    return sorted(ops, key=lambda o: (o.call, o.ret))


def is_linearizable(ops: Sequence[O], spec: ObjectSpec[S, O]) -> bool:
    """Whether ``ops`` (any order) has a linearization under ``spec`` (no budget)."""
    return _search(_sorted(ops), spec).ok


def _linearizable_within(ops: Sequence[O], spec: ObjectSpec[S, O], meter: _Meter) -> bool | None:
    """Whether ``ops`` has a linearization, or ``None`` if ``meter`` runs out first."""
    meter.states = 0
    try:
        return _search(_sorted(ops), spec, meter).ok
    except _Exhausted:
        return None


def minimize(
    ops: Sequence[O],
    spec: ObjectSpec[S, O],
    unit: Callable[[O], Hashable] | None = None,
    *,
    budget: Budget = UNLIMITED,
) -> tuple[O, ...]:
    """A 1-minimal non-linearizable subset of the non-linearizable ``ops`` (delta
    debugging over units: halves, quarters, ..., then single units until none can go).
    Under a finite ``budget``, a candidate whose check runs out is kept as it was
    (:func:`minimize_within` also says whether that happened)."""
    return minimize_within(ops, spec, unit, budget=budget)[0]


def minimize_within(
    ops: Sequence[O],
    spec: ObjectSpec[S, O],
    unit: Callable[[O], Hashable] | None = None,
    *,
    budget: Budget = UNLIMITED,
    deadline: float | None = None,
) -> tuple[tuple[O, ...], bool]:
    """:func:`minimize`, returning also whether the result is known 1-minimal (no
    sub-check ran out of ``budget``). Raises :class:`_Exhausted` past ``deadline``."""
    key = unit or (lambda op: ("op", op.id))
    groups: dict[Hashable, list[O]] = {}
    for op in ops:
        groups.setdefault(key(op), []).append(op)
    current = list(groups.values())
    meter = _Meter(budget, deadline)
    complete = True

    def violates(units: list[list[O]]) -> bool:
        nonlocal complete
        verdict = _linearizable_within([op for group in units for op in group], spec, meter)
        meter.check_clock()
        if verdict is None:
            complete = False
            return False
        return not verdict

    chunk = max(1, len(current) // 2)
    while True:
        changed = False
        start = 0
        while start < len(current):
            candidate = current[:start] + current[start + chunk :]
            if candidate and violates(candidate):
                current = candidate
                changed = True
            else:
                start += chunk
        if chunk == 1 and not changed:
            break
        chunk = max(1, chunk // 2)
    return tuple(op for group in current for op in group), complete


def check_linearizable(
    ops: Sequence[O],
    spec: ObjectSpec[S, O],
    *,
    partition: Callable[[O], Hashable] | None = None,
    unit: Callable[[O], Hashable] | None = None,
    minimize_limit: int = 300,
    budget: Budget = UNLIMITED,
) -> GenericResult:
    """Check ``ops`` against ``spec`` (see the module docstring for the guarantees)."""
    check_threads_sequential(ops)
    deadline = time.monotonic() + budget.max_seconds if budget.max_seconds is not None else None
    groups: dict[Hashable, list[O]] = {}
    for op in ops:
        groups.setdefault(partition(op) if partition else None, []).append(op)
    witness: dict[Hashable, tuple[int, ...]] = {}
    unknown: list[Unknown] = []
    total_states = 0
    for name, group in groups.items():
        group.sort(key=lambda o: (o.call, o.ret))
        meter = _Meter(budget, deadline)
        try:
            meter.check_clock()
            found = _search(group, spec, meter)
        except _ExhaustedSearch as exhausted:
            total_states += exhausted.states
            longest = tuple(group[i].id for i in exhausted.best)
            unknown.append(Unknown(name, len(group), exhausted.states, exhausted.why, longest))
            continue
        except _Exhausted as exhausted:
            unknown.append(Unknown(name, len(group), 0, exhausted.why, ()))
            continue
        total_states += found.states
        if not found.ok:
            minimal: tuple[O, ...] | None = None
            complete = True
            if len(group) <= minimize_limit:
                try:
                    small = Budget(min(budget.max_states or 100_000, 100_000), None)
                    minimal, complete = minimize_within(group, spec, unit, budget=small, deadline=deadline)
                except _Exhausted:
                    minimal = None
            return GenericResult(
                False,
                violation=GenericViolation(
                    name, tuple(group[i].id for i in found.order), minimal, len(group), complete
                ),
                states=total_states,
            )
        _verify_witness(group, spec, found.order)
        witness[name] = tuple(group[i].id for i in found.order)
    if unknown:
        return GenericResult(False, witness=witness, unknown=tuple(unknown), states=total_states)
    return GenericResult(True, witness=witness, states=total_states)


def check_threads_sequential(ops: Sequence[TimedOp]) -> None:
    """Raise :class:`HistoryFormatError` if two operations of one thread overlap in time
    (each thread's next call must come after its previous return, so that real time
    also gives program order). An indeterminate operation must be its thread's last."""
    by_thread: dict[object, list[TimedOp]] = {}
    for op in ops:
        by_thread.setdefault(op.thread, []).append(op)
    for thread, same in by_thread.items():
        same.sort(key=lambda o: o.call)
        for a, b in zip(same, same[1:]):
            if a.ret >= b.call:
                what = (
                    "an indeterminate operation must be its thread's last"
                    if a.ret >= INDETERMINATE
                    else "a thread's next call must come after its last return"
                )
                raise HistoryFormatError(
                    0, f"thread {thread!r}: operations #{a.id} and #{b.id} overlap in time ({what})"
                )


def queue_unit(op: Operation) -> Hashable:
    """Minimization units for queues: a successful push with every pop of its value;
    every failed operation alone."""
    if op.ok:
        return ("value", type(op.value).__name__, op.value)
    return ("op", op.id)
