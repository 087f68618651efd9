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
where every operation numbered below ``w`` (in call order) is linearized: its size is
bounded by the concurrency of the history, not its length, so the memo table of a
100,000-operation history is small (a bitset per entry would take 12 KiB each).

Guarantees:

- **Sound and complete**: the answer is ``ok`` exactly when a linearization exists
  (real-time order ``a.ret < b.call`` kept, each thread's order kept, every answer
  legal in the spec). Given unbounded time; there is no timeout.
- On success, ``witness`` is one linearization (operation ids in order), checked
  again step by step against the spec before it is returned.
- On failure, ``violation.longest`` is a longest prefix of a linearization found (as
  Porcupine shows it), and ``violation.minimal`` is a *1-minimal violating
  sub-history*: a subset of the operations that is itself not linearizable and that
  becomes linearizable if any one *unit* is removed. Units are given by ``unit`` (by
  default, one operation each; for queues, a push together with the pops of its value,
  so that removing a push never makes a pop "invent" a value). Minimization runs when
  the history (partition) has at most ``minimize_limit`` operations; above that,
  ``minimal`` is ``None``.
- **P-compositionality**: with ``partition``, operations are grouped by
  ``partition(op)`` and each group is checked alone against a fresh spec state (valid
  when the spec is a product of independent per-key objects, e.g. a key-value store per
  key). The history is linearizable iff every group is; the result names the first
  failing group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Sequence, TypeVar

from spec.history import HistoryFormatError, Operation
from spec.spsc_model import SequentialSpec

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True)
class GenericViolation:
    """Why a history (partition) is not linearizable."""

    partition: Hashable
    longest: tuple[int, ...]
    minimal: tuple[Operation, ...] | None
    operations: int

    def render(self) -> str:
        """A readable report: the minimal violating sub-history and the longest prefix."""
        lines = [f"not linearizable (partition {self.partition!r}, {self.operations} operations)"]
        if self.minimal is not None:
            lines.append(f"a minimal violating sub-history ({len(self.minimal)} operations):")
            lines += [f"  {op.describe()}" for op in sorted(self.minimal, key=lambda o: o.call)]
        shown = self.longest[-12:]
        lines.append(
            f"longest partial linearization: {len(self.longest)} operations"
            + (f", ending ... {' '.join(f'#{i}' for i in shown)}" if shown else "")
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class GenericResult:
    """The verdict: ``ok``, a witness linearization (op ids, per partition) or a violation."""

    ok: bool
    witness: dict[Hashable, tuple[int, ...]] = field(default_factory=dict)
    violation: GenericViolation | None = None


@dataclass
class _Search(Generic[S]):
    ok: bool
    order: list[int]  # indices into the op list


def _search(ops: Sequence[Operation], spec: SequentialSpec[S]) -> _Search[S]:
    """Wing–Gong–Lowe search over ``ops`` (which must be in call order)."""
    n = len(ops)
    if n == 0:
        return _Search(True, [])
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
    low = 0  # every op index < low is linearized
    above: set[int] = set()  # linearized op indices >= low
    cache: set[tuple[int, frozenset[int], S]] = set()
    stack: list[tuple[int, S]] = []  # (call node, state before it)
    best: list[int] = []
    best_dirty = False
    node = nxt[0]
    while nxt[0] != 0:
        if is_call[node]:
            i = node_op[node]
            after = step(state, ops[i])
            if after is not None:
                new_low, new_above = low, above | {i}
                while new_low in new_above:
                    new_above.discard(new_low)
                    new_low += 1
                key = (new_low, frozenset(new_above), after)
                if key not in cache:
                    cache.add(key)
                    stack.append((node, state))
                    state, low, above = after, new_low, new_above
                    lift(node)
                    if len(stack) > len(best):
                        best_dirty = True
                    node = nxt[0]
                    continue
            node = nxt[node]
        else:
            if not stack:
                if best_dirty:
                    best = [node_op[k] for k, _ in stack]
                return _Search(False, best)
            if best_dirty:
                best = [node_op[k] for k, _ in stack]
                best_dirty = False
            node, state = stack.pop()
            i = node_op[node]
            if i < low:
                above.update(range(i + 1, low))
                low = i
            else:
                above = set(above)
                above.discard(i)
            unlift(node)
            node = nxt[node]
    return _Search(True, [node_op[k] for k, _ in stack])


def _verify_witness(ops: Sequence[Operation], spec: SequentialSpec[S], order: Sequence[int]) -> None:
    """Assert that ``order`` is a linearization of ``ops`` (a self-check of the search)."""
    assert sorted(order) == list(range(len(ops))), "witness is not a permutation"
    state = spec.initial()
    latest_call = -1
    for i in order:
        op = ops[i]
        assert op.ret >= latest_call, f"witness breaks real time at #{op.id}"
        latest_call = max(latest_call, op.call)
        after = spec.step(state, op)
        assert after is not None, f"witness makes #{op.id} illegal"
        state = after


def is_linearizable(ops: Sequence[Operation], spec: SequentialSpec[S]) -> bool:
    """Whether ``ops`` (any order) has a linearization under ``spec``."""
    return _search(sorted(ops, key=lambda o: (o.call, o.ret)), spec).ok


def minimize(
    ops: Sequence[Operation],
    spec: SequentialSpec[S],
    unit: Callable[[Operation], Hashable] | None = None,
) -> tuple[Operation, ...]:
    """A 1-minimal non-linearizable subset of the non-linearizable ``ops`` (delta
    debugging over units: halves, quarters, ..., then single units until none can go)."""
    key = unit or (lambda op: ("op", op.id))
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(key(op), []).append(op)
    current = list(groups.values())

    def violates(units: list[list[Operation]]) -> bool:
        return not is_linearizable([op for group in units for op in group], spec)

    assert violates(current), "minimize needs a violating history"
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
    return tuple(op for group in current for op in group)


def check_linearizable(
    ops: Sequence[Operation],
    spec: SequentialSpec[S],
    *,
    partition: Callable[[Operation], Hashable] | None = None,
    unit: Callable[[Operation], Hashable] | None = None,
    minimize_limit: int = 300,
) -> GenericResult:
    """Check ``ops`` against ``spec`` (see the module docstring for the guarantees)."""
    check_threads_sequential(ops)
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(partition(op) if partition else None, []).append(op)
    witness: dict[Hashable, tuple[int, ...]] = {}
    for name, group in groups.items():
        group.sort(key=lambda o: (o.call, o.ret))
        found = _search(group, spec)
        if not found.ok:
            minimal = minimize(group, spec, unit) if len(group) <= minimize_limit else None
            return GenericResult(
                False,
                violation=GenericViolation(
                    name, tuple(group[i].id for i in found.order), minimal, len(group)
                ),
            )
        _verify_witness(group, spec, found.order)
        witness[name] = tuple(group[i].id for i in found.order)
    return GenericResult(True, witness=witness)


def check_threads_sequential(ops: Sequence[Operation]) -> None:
    """Raise :class:`HistoryFormatError` if two operations of one thread overlap in time
    (each thread's next call must come after its previous return, so that real time
    also gives program order)."""
    by_thread: dict[object, list[Operation]] = {}
    for op in ops:
        by_thread.setdefault(op.thread, []).append(op)
    for thread, same in by_thread.items():
        same.sort(key=lambda o: o.call)
        for a, b in zip(same, same[1:]):
            if a.ret >= b.call:
                raise HistoryFormatError(
                    0,
                    f"thread {thread!r}: operations #{a.id} and #{b.id} overlap in time "
                    "(a thread's next call must come after its last return)",
                )


def queue_unit(op: Operation) -> Hashable:
    """Minimization units for queues: a successful push with every pop of its value;
    every failed operation alone."""
    if op.ok:
        return ("value", type(op.value).__name__, op.value)
    return ("op", op.id)
