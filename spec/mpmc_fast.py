"""Linearizability of multi-producer multi-consumer queue histories in O(n log n).

Input: a :class:`~spec.history.History` of a queue of capacity ``C`` (any number of
threads, each sequential) whose successful pushes push **distinct** values. Failed
answers are judged by the :class:`~spec.spsc_model.Criterion` as in
:mod:`spec.spsc_model`. Output: a verdict that is exact on what it decides
(:class:`MpmcResult`), or *undecided* (``decided=False``) on the bounded cases described
below, where the caller falls back to the generic search with its budget.

Notation. For a pushed value ``v``: its push's call and return ``a_v <= b_v``; if some pop
returned ``v`` (``v`` is *dequeued*, in ``D``), that pop's call and return
``c_v <= d_v``; otherwise ``v`` is *left* (in ``U``). An empty pop ``e`` has call and
return ``e1 <= e2``. ``x <hb y`` is real-time precedence: ``x.ret < y.call``. Every
linearization is a choice of a *point* in each operation's closed interval (ties ordered
freely), and conversely (Herlihy & Wing); so we reason about points ``p(v)`` (push),
``q(v)`` (pop).

The unbounded queue (``C`` never reached)
------------------------------------------
**Theorem.** A complete history with distinct pushed values is linearizable with
respect to the unbounded FIFO queue (empty pops judged strictly, failed pushes absent)
iff

(V1) every popped value was pushed by a successful push, is popped once, and its pop
     does not return before its push is called (``a_v <= d_v``);
(V2) the relation ``R`` on ``D`` is acyclic, where ``x R y`` iff ``push(x) <hb push(y)``
     or ``pop(x) <hb pop(y)`` or ``pop(x) <hb push(y)``;
(V3) no left value's push precedes a dequeued value's push (``b_u < a_v``);
(V4) no empty pop's interval ``[e1, e2]`` lies inside the union of the open intervals
     ``(b_v, c_v)`` (``v`` in ``D``) and ``(b_u, +inf)`` (``u`` in ``U``).

*Necessity.* (V1) is immediate. For (V2): in a FIFO queue pushes and pops of ``D`` are
linearized in the same order ``sigma``; ``push(x) <hb push(y)`` and ``pop(x) <hb pop(y)``
force ``x`` before ``y`` directly, and ``pop(x) <hb push(y)`` does too (``y`` before ``x``
would give ``push(y) < push(x) < pop(x) < push(y)``). So ``sigma`` extends ``R``, which
must be acyclic. (V3): ``u`` stays in the queue to the end, so nothing pushed after it
is ever popped. (V4): ``v`` is in the queue from ``p(v) <= b_v`` to ``q(v) >= c_v``, so at
any point of ``(b_v, c_v)`` the queue holds ``v``; if those intervals cover ``[e1, e2]``
the empty pop has no point at which the queue is empty.

*Sufficiency (constructive; the checker builds this linearization and replays it).*
Choose one *gap* per empty pop: a point of ``[e1, e2]`` outside the union in (V4)
(the earliest such point). The gaps ``g_1 < ... < g_k`` cut time into *periods*. Put
each ``v`` in ``D`` in the period holding ``t_v``, where ``t_v = b_v`` if ``b_v < c_v``
(no gap lies in ``(b_v, c_v)``, so ``v``'s push and pop fit in that period) and
``t_v = max(a_v, c_v) <= min(b_v, d_v)`` otherwise (``v`` fits at that single point);
a value at a gap goes after it. Left values go in the last period (by (V4) no gap lies
after ``b_u``). Then no ``R`` edge goes from a later period to an earlier one (each
edge ``y R x`` needs ``b_y < a_x``, ``d_y < c_x`` or ``d_y < a_x``, but ``y``'s push and pop
windows reach the gap between them and ``x``'s windows start before it), so a
topological order ``sigma`` of ``R`` sorted stably by period is a topological order, with
left values last (no edge from a left value into ``D`` by (V3); among left values only
push-push edges, ordered by call). Within a period ``[lo, hi]``, in ``sigma`` order,
take ``p(v_k) = max(p(v_{k-1}), a_{v_k}, lo)`` and ``q(v_k) = max(q(v_{k-1}), c_{v_k},
p(v_k), lo)``: ``p(v_k) <= min(b_{v_k}, hi)`` because every term is (``a_{v_j} <=
b_{v_k}`` for ``j`` before ``k``, else ``v_k R v_j``), and likewise ``q(v_k) <= min(d_{v_k},
hi)`` (using ``c_{v_j} <= d_{v_k}`` and ``a_{v_j} <= d_{v_k}``, and (V1) for ``j = k``).
Points are non-decreasing along ``sigma`` for pushes and for pops, each pop after its
push, each empty pop at its gap with every earlier period's values popped and no later
one pushed: read in order of points (ties: by ``sigma`` position, push before pop,
an empty pop between the periods it separates), this is a legal FIFO sequence that
keeps real time. QED.

(V2) is decided by Kahn's algorithm in O(n log n): ``y`` has no predecessor among the
remaining values iff ``a_y <= min(B, D)`` and ``c_y <= D``, where ``B`` and ``D`` are the
least ``b`` and ``d`` remaining (``y`` itself may be included: ``a_y <= b_y``, ``c_y <= d_y``
and ``a_y <= d_y``); both thresholds only grow, so each value enters a heap once. Among
the values without predecessor the one whose pop is called first is taken (any choice
is a topological order; the bounded constructions also try the earliest pop deadline). When no value qualifies, the value with the least ``b`` and the one
with the least ``d`` are distinct and each precedes the other: the violation is
reported as that pair (the classic "FIFO order broken" bad pattern of Henzinger et al.,
CONCUR'13). (V4) merges the open intervals once and looks each empty pop up by
bisection. Memory: a few integers per operation.

Capacity, and what is left undecided
-------------------------------------
No published result covers a bounded queue whose try-push may answer "full". Here:

- *Certain violations* at any capacity: (V1)-(V3) under both criteria, (V4) under
  ``strict``; more than ``C`` values certainly in the queue at once (each ``v`` is
  certainly there on ``(b_v, c_v)``); under ``strict``, a push answering "full" during
  whose whole interval fewer than ``C`` values can possibly be in the queue (``v`` can
  be there only on ``[a_v, d_v]``, ``u`` on ``[a_u, +inf)``).
- *Capacity that cannot bind*: if at no time more than ``C`` values ``v`` have
  ``a_v <= t <= max(b_v, d_v)`` (left values: ``a_u <= t``), no successful push can find
  the queue full in any linearization, so the theorem decides the successful
  operations exactly; under ``tolerant`` (and under ``strict`` with no "full" answer) the
  verdict is then exact.
- Otherwise the checker builds the linearization above, places each "full" answer
  (``strict``) at a point of its interval where that linearization holds ``C`` values,
  and replays it against the bounded spec: if the replay passes, the history is
  linearizable (the replay is the proof). If not, the answer is *undecided*: the
  history may need a different order of concurrent operations, which this checker does
  not search.

Values pushed twice by successful pushes are outside the theorem: :class:`NotDistinctError`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Hashable, Sequence

from spec.history import POP, PUSH, History, HistoryFormatError
from spec.spsc_model import Criterion

INFINITY = 2**64  # beyond every stamp (stamps are below 2**63)


class NotDistinctError(ValueError):
    """Two successful pushes pushed the same value (use the generic checker)."""


@dataclass(frozen=True)
class MpmcViolation:
    """Why the history is not linearizable: a sentence, the rows it names, and a
    window of rows around them (indices into the history)."""

    reason: str
    culprits: tuple[int, ...]
    window: tuple[int, ...]


@dataclass(frozen=True)
class MpmcResult:
    """``decided`` and ``ok``: linearizable (with ``witness``, rows in linearization
    order, if asked for); ``decided`` and not ``ok``: ``violation``; not ``decided``: the
    bounded case this checker does not settle, ``why`` says what binds."""

    decided: bool
    ok: bool
    criterion: Criterion
    violation: MpmcViolation | None = None
    witness: tuple[int, ...] | None = None
    why: str = ""
    exact: bool = True  # decided by the theorem alone (False: by a replayed construction)


def _value_key(value: object) -> Hashable:
    # 1 and "1" are different values (the format keeps their types apart)
    return (type(value) is str, value)


def check_threads(history: History) -> None:
    """Raise :class:`HistoryFormatError` if two operations of one thread overlap."""
    rows = sorted(range(len(history)), key=lambda r: (history.thread_index[r], history.calls[r]))
    threads, calls, rets, ids = history.thread_index, history.calls, history.rets, history.ids
    for x, y in zip(rows, rows[1:]):
        if threads[x] == threads[y] and rets[x] >= calls[y]:
            raise HistoryFormatError(
                0,
                f"thread {history.thread_names[threads[x]]!r}: operations #{ids[x]} and #{ids[y]} "
                "overlap in time (a thread's next call must come after its last return)",
            )


def _window(history: History, culprits: Sequence[int], radius: int = 8) -> tuple[int, ...]:
    """The culprits and the operations nearest them in call order."""
    if not culprits:
        return ()
    order = sorted(range(len(history)), key=lambda r: (history.calls[r], history.rets[r]))
    place = {row: k for k, row in enumerate(order)}
    keep: set[int] = set(culprits)
    for row in culprits:
        k = place[row]
        keep.update(order[max(0, k - radius) : k + radius + 1])
    return tuple(sorted(keep, key=lambda r: (history.calls[r], history.rets[r])))


def _violation(history: History, reason: str, culprits: Sequence[int]) -> MpmcViolation:
    return MpmcViolation(reason, tuple(culprits), _window(history, culprits))


class _Parts:
    """The rows of a history sorted into the theorem's sets."""

    def __init__(self, history: History) -> None:
        kinds, oks, values = history.kinds, history.oks, history.values
        self.push_row: dict[Hashable, int] = {}
        self.failed_pushes: list[int] = []
        self.empty_pops: list[int] = []
        self.ok_pops: list[int] = []
        for row in range(len(history)):
            if kinds[row] == PUSH:
                if oks[row]:
                    key = _value_key(values[row])
                    if key in self.push_row:
                        first = history.ids[self.push_row[key]]
                        raise NotDistinctError(
                            f"value {values[row]!r} is pushed twice (#{first} and #{history.ids[row]})"
                        )
                    self.push_row[key] = row
                else:
                    self.failed_pushes.append(row)
            elif oks[row]:
                self.ok_pops.append(row)
            else:
                self.empty_pops.append(row)


def check_mpmc(history: History, criterion: Criterion = Criterion.STRICT, *, witness: bool = False) -> MpmcResult:
    """Decide whether a queue ``history`` with distinct pushed values is linearizable
    under ``criterion`` (see the module docstring for exactly what is decided).

    Raises :class:`NotDistinctError` if two successful pushes push the same value, and
    :class:`HistoryFormatError` if a thread's operations overlap.
    """
    check_threads(history)
    parts = _Parts(history)
    strict = criterion is Criterion.STRICT
    calls, rets, ids, values = history.calls, history.rets, history.ids, history.values
    capacity = history.capacity

    # (V1) every popped value pushed, popped once, not before its push.
    pop_of: dict[Hashable, int] = {}
    failed_values = {_value_key(values[r]): r for r in parts.failed_pushes}
    for row in parts.ok_pops:
        key = _value_key(values[row])
        push = parts.push_row.get(key)
        if push is None:
            if key in failed_values:
                other = failed_values[key]
                reason = (f"pop #{ids[row]} returned {values[row]!r}, which only push #{ids[other]} "
                          "pushed, and that push answered 'full'")
                return _decided_violation(history, criterion, reason, (row, other))
            reason = f"pop #{ids[row]} returned {values[row]!r}, which no push pushed"
            return _decided_violation(history, criterion, reason, (row,))
        if key in pop_of:
            first = pop_of[key]
            reason = f"value {values[row]!r} was popped twice (#{ids[first]} and #{ids[row]})"
            return _decided_violation(history, criterion, reason, (first, row, push))
        pop_of[key] = row
        if rets[row] < calls[push]:
            reason = (f"pop #{ids[row]} returned {values[row]!r} at {rets[row]}, before push "
                      f"#{ids[push]} of that value was called at {calls[push]}")
            return _decided_violation(history, criterion, reason, (row, push))

    dequeued = [(parts.push_row[key], pop_of[key]) for key in pop_of]
    left = [row for key, row in parts.push_row.items() if key not in pop_of]

    # (V2) R is acyclic: Kahn's algorithm.
    order, cycle = _topological_order(history, dequeued)
    if cycle is not None:
        (px, qx), (py, qy) = dequeued[cycle[0]], dequeued[cycle[1]]
        how = "pop" if rets[qy] < calls[qx] else "push"
        reason = (
            f"FIFO order broken: push #{ids[px]} of {values[px]!r} returned before push #{ids[py]} "
            f"of {values[py]!r} was called, but pop #{ids[qy]} of {values[py]!r} returned before the "
            f"{how} #{ids[qx if how == 'pop' else px]} of {values[px]!r} was called"
        )
        return _decided_violation(history, criterion, reason, (px, py, qx, qy))

    # (V3) no left value ahead of a dequeued one.
    if left and dequeued:
        u = min(left, key=rets.__getitem__)
        v = max((p for p, _ in dequeued), key=calls.__getitem__)
        if rets[u] < calls[v]:
            q = pop_of[_value_key(values[v])]
            reason = (
                f"FIFO order broken: push #{ids[u]} of {values[u]!r} returned before push #{ids[v]} of "
                f"{values[v]!r} was called, and {values[u]!r} was never popped, yet pop #{ids[q]} "
                f"returned {values[v]!r}"
            )
            return _decided_violation(history, criterion, reason, (u, v, q))

    # Certain presence: v is in the queue on (b_v, c_v); u on (b_u, +inf).
    present = [(rets[p], calls[q], p, q) for p, q in dequeued if rets[p] < calls[q]]
    present += [(rets[u], INFINITY, u, -1) for u in left]
    merged = _merge_open(present)

    # (V4) strict: no empty pop covered.
    gaps: list[int] = []
    if strict:
        starts = [m[0] for m in merged]
        for row in parts.empty_pops:
            e1, e2 = calls[row], rets[row]
            k = bisect_left(starts, e1) - 1  # the last merged interval starting before e1
            if k >= 0 and merged[k][1] > e2:
                chain = _cover(present, e1, e2)
                named = [r for _, _, p, q in chain for r in (p, q) if r >= 0]
                what = ", ".join(f"{values[p]!r} (pushed by #{ids[p]}" + (f", popped by #{ids[q]})" if q >= 0 else ", never popped)")
                                 for _, _, p, q in chain)
                reason = (f"pop #{ids[row]} answered 'empty', but at every instant of its interval "
                          f"[{e1}, {e2}] the queue certainly held a value: {what}")
                return _decided_violation(history, criterion, reason, (row, *named))
            gaps.append(e1 if k < 0 or merged[k][1] <= e1 else merged[k][1])

    # More than C values certainly present at once: a certain overflow.
    crowd = _most_at_once([(lo, hi) for lo, hi, _, _ in present], open_ends=True)
    if crowd[0] > capacity:
        at = crowd[1]
        inside = [(p, q) for lo, hi, p, q in present if 2 * lo < at < 2 * hi][: capacity + 1]
        reason = (f"more than the capacity {capacity}: {crowd[0]} values were certainly in the queue "
                  f"at once (at time {_doubled(at)}: each push returned before it, each pop was "
                  "called after it or never)")
        return _decided_violation(history, criterion, reason, tuple(r for pq in inside for r in pq if r >= 0))

    # Strict "full" answers: refuted if fewer than C values can be in the queue throughout.
    possible = [(calls[p], rets[q]) for p, q in dequeued] + [(calls[u], INFINITY) for u in left]
    if strict and parts.failed_pushes:
        most = _most_in_windows(possible, [(calls[r], rets[r]) for r in parts.failed_pushes])
        for row, count in zip(parts.failed_pushes, most):
            if count < capacity:
                reason = (f"push #{ids[row]} answered 'full', but at most {count} values can be in the "
                          f"queue (capacity {capacity}) at any instant of its interval [{calls[row]}, {rets[row]}]")
                return _decided_violation(history, criterion, reason, (row,))

    bound = [(calls[p], max(rets[p], rets[q])) for p, q in dequeued] + [(calls[u], INFINITY) for u in left]
    cannot_bind = _most_at_once(bound, open_ends=False)[0] <= capacity
    exact = cannot_bind and not (strict and parts.failed_pushes)

    why = ""
    orders = [order]
    if not exact:
        orders.append(_topological_order(history, dequeued, by_deadline=True)[0])
    for sigma in orders:
        for push_late, pop_late, fill in _SHAPES:
            built = _build(history, parts, dequeued, left, sigma, gaps, strict, push_late, pop_late, fill)
            problem = _replay(history, built, strict) if built is not None else (
                "the 'full' answers cannot all be placed where it holds C values")
            if problem is None:
                rows = tuple(r for _, r in built) if witness and built is not None else None
                return MpmcResult(True, True, criterion, witness=rows, exact=exact)
            assert not exact, f"the constructed linearization fails where the theorem says it cannot: {problem}"
            why = why or problem
    return MpmcResult(False, False, criterion,
                      why=f"capacity {capacity} may bind, and no constructed linearization holds ({why})")


#: The constructions tried, in order: (pushes late, pops late, fill).
_SHAPES = ((True, False, False), (False, False, True), (False, False, False), (False, True, False), (True, True, False))


def _decided_violation(history: History, criterion: Criterion, reason: str, culprits: Sequence[int]) -> MpmcResult:
    return MpmcResult(True, False, criterion, violation=_violation(history, reason, culprits))


def _topological_order(
    history: History, dequeued: list[tuple[int, int]], by_deadline: bool = False
) -> tuple[list[int], tuple[int, int] | None]:
    """A topological order of R over ``dequeued`` (indices into it), or the pair that
    forms a cycle (see the module docstring). Among values without predecessor, the one
    whose pop is called first is taken (``by_deadline``: whose pop must return first)."""
    calls, rets = history.calls, history.rets
    m = len(dequeued)
    a = [calls[p] for p, _ in dequeued]
    b = [rets[p] for p, _ in dequeued]
    c = [calls[q] for _, q in dequeued]
    d = [rets[q] for _, q in dequeued]
    by_a = sorted(range(m), key=a.__getitem__)
    heap_b = sorted(zip(b, range(m)))
    heap_d = sorted(zip(d, range(m)))
    waiting: list[tuple[int, int]] = []  # a <= threshold: by c
    ready: list[tuple[int, int]] = []  # no predecessor left: by c, or by d
    removed = bytearray(m)
    order: list[int] = []
    pointer = 0
    while len(order) < m:
        while removed[heap_b[0][1]]:
            heapq.heappop(heap_b)
        while removed[heap_d[0][1]]:
            heapq.heappop(heap_d)
        least_b, least_d = heap_b[0][0], heap_d[0][0]
        threshold = least_b if least_b < least_d else least_d
        while pointer < m and a[by_a[pointer]] <= threshold:
            i = by_a[pointer]
            heapq.heappush(waiting, (c[i], i))
            pointer += 1
        while waiting and waiting[0][0] <= least_d:
            _, i = heapq.heappop(waiting)
            heapq.heappush(ready, (d[i] if by_deadline else c[i], i))
        if not ready:
            return order, (heap_b[0][1], heap_d[0][1])
        _, i = heapq.heappop(ready)
        removed[i] = 1
        order.append(i)
    return order, None


def _merge_open(intervals: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """The union of open intervals ``(lo, hi)`` as disjoint open intervals, sorted
    (``(1, 3)`` and ``(3, 5)`` stay apart: the point 3 is not covered)."""
    merged: list[tuple[int, int]] = []
    for lo, hi, _, _ in sorted(intervals):
        if merged and lo < merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _cover(present: list[tuple[int, int, int, int]], e1: int, e2: int) -> list[tuple[int, int, int, int]]:
    """Few of the open intervals that together cover ``[e1, e2]`` (greedy, in time order)."""
    chain: list[tuple[int, int, int, int]] = []
    reach = e1
    candidates = sorted(present)
    k = 0
    best: tuple[int, int, int, int] | None = None
    while True:
        while k < len(candidates) and candidates[k][0] < reach:
            if best is None or candidates[k][1] > best[1]:
                best = candidates[k]
            k += 1
        assert best is not None and best[1] > reach, "the interval was said to be covered"
        chain.append(best)
        if best[1] > e2:
            return chain
        reach = best[1]
        best = None


def _most_at_once(intervals: Sequence[tuple[int, int]], *, open_ends: bool) -> tuple[int, int]:
    """The largest number of intervals sharing a point, and one such point *doubled*
    (so that the middle of an open ``(3, 4)`` is 7). Intervals are closed, or open with
    ``open_ends``; in doubled coordinates an open ``(lo, hi)`` holds ``2lo+1 .. 2hi-1``."""
    events: list[tuple[int, int]] = []
    for lo, hi in intervals:
        first, last = (2 * lo + 1, 2 * hi - 1) if open_ends else (2 * lo, 2 * hi)
        if first <= last:
            events.append((first, 1))
            events.append((last + 1, -1))
    events.sort()
    best = count = at = 0
    for time, delta in events:
        count += delta
        if count > best:
            best, at = count, time
    return best, at


def _doubled(point: int) -> str:
    """A doubled coordinate as a time: ``7`` -> ``3.5``."""
    return str(point // 2) if point % 2 == 0 else f"{point // 2}.5"


def _most_in_windows(intervals: Sequence[tuple[int, int]], windows: Sequence[tuple[int, int]]) -> list[int]:
    """For each closed window, the largest number of the closed ``intervals`` sharing a
    point inside it (a sweep, then range maxima from a sparse table: O(n log n))."""
    events: list[tuple[int, int]] = []
    for lo, hi in intervals:
        events.append((lo, 1))
        events.append((hi + 1, -1))
    events.sort()
    times: list[int] = []
    counts: list[int] = []  # counts[k] holds on [times[k], times[k+1]); 0 before times[0]
    count = 0
    for time, delta in events:
        count += delta
        if times and times[-1] == time:
            counts[-1] = count
        else:
            times.append(time)
            counts.append(count)
    table = [counts]
    span = 1
    while 2 * span <= len(counts):
        prev = table[-1]
        table.append([max(prev[i], prev[i + span]) for i in range(len(prev) - span)])
        span *= 2
    result = []
    for w1, w2 in windows:
        last = bisect_right(times, w2) - 1  # the segment holding w2
        if last < 0:
            result.append(0)
            continue
        first = max(bisect_right(times, w1) - 1, 0)  # the segment holding w1 (or the first)
        level = (last - first + 1).bit_length() - 1
        row = table[level]
        result.append(max(row[first], row[last - (1 << level) + 1]))
    return result


def _build(
    history: History,
    parts: _Parts,
    dequeued: list[tuple[int, int]],
    left: list[int],
    order: list[int],
    gaps: list[int],
    strict: bool,
    push_late: bool = False,
    pop_late: bool = False,
    fill: bool = False,
) -> list[tuple[tuple[int, int], int]] | None:
    """The linearization of the sufficiency proof, as ``((point, tie), row)`` in order;
    under ``strict`` with "full" answers, each placed where it holds ``C`` values
    (``None`` if one cannot be).

    The proof takes pushes and pops as early as the order allows; taking pushes as late
    as it allows (``min`` over later values of ``b``, ``d`` and the period's end) or pops
    as late (``min`` of later ``d``) is as valid, by the same inequalities read
    backwards. The bounded cases try these: late pushes and early pops keep the queue
    shortest (room for pushes), early pushes and late pops keep it longest ("full");
    ``fill`` takes each pop as late as the push needing its slot allows (pop ``k``
    before the latest push ``k + C``) and each push as early as the freed slots allow
    (push ``k`` after pop ``k - C``): the queue as full as it may be.
    The replay decides whether a construction is a linearization; none is needed for
    the exact case."""
    calls, rets = history.calls, history.rets
    gaps = sorted(set(gaps))

    def period_of(i: int) -> int:
        p, q = dequeued[i]
        t = rets[p] if rets[p] < calls[q] else max(calls[p], calls[q])
        return bisect_right(gaps, t)

    periods = [period_of(i) for i in range(len(dequeued))]
    sigma = sorted(order, key=periods.__getitem__)  # stable: still topological
    events: list[tuple[tuple[int, int], int]] = []
    first_in_period = [0] * (len(gaps) + 2)
    for k, i in enumerate(sigma):
        first_in_period[periods[i] + 1] = k + 1
    for period in range(1, len(gaps) + 2):
        first_in_period[period] = max(first_in_period[period], first_in_period[period - 1])
    lefts = sorted(left, key=calls.__getitem__)
    bounds = [(gaps[periods[i] - 1] if periods[i] > 0 else -INFINITY,
               gaps[periods[i]] if periods[i] < len(gaps) else INFINITY) for i in sigma]
    last = gaps[-1] if gaps else -INFINITY
    bounds += [(last, INFINITY)] * len(lefts)
    push_rows = [dequeued[i][0] for i in sigma] + lefts
    pop_rows = [dequeued[i][1] for i in sigma]
    n_push, n_pop = len(push_rows), len(pop_rows)
    # pushes: early = as soon as the order allows; late = as late as it allows
    push_at = [0] * n_push
    if push_late:
        point = INFINITY
        for k in range(n_push - 1, -1, -1):
            row = push_rows[k]
            point = min(point, rets[row], bounds[k][1], rets[pop_rows[k]] if k < n_pop else INFINITY)
            push_at[k] = point
    else:
        point = -INFINITY
        for k in range(n_push):
            point = max(point, calls[push_rows[k]], bounds[k][0])
            push_at[k] = point
    pop_at = [0] * n_pop
    if pop_late:
        point = INFINITY
        for k in range(n_pop - 1, -1, -1):
            point = min(point, rets[pop_rows[k]], bounds[k][1])
            pop_at[k] = point
    elif fill:
        # as full as the order and the capacity allow: pops as late as the pushes that need
        # their slots let them be (pop k before push k + C, which is at its latest), then
        # pushes as early as the freed slots allow (push k after pop k - C)
        capacity = history.capacity
        latest = INFINITY
        latest_push = [0] * n_push
        for k in range(n_push - 1, -1, -1):
            latest = min(latest, rets[push_rows[k]], bounds[k][1], rets[pop_rows[k]] if k < n_pop else INFINITY)
            latest_push[k] = latest
        point = INFINITY
        for k in range(n_pop - 1, -1, -1):
            slot = latest_push[k + capacity] if k + capacity < n_push else INFINITY
            point = min(point, rets[pop_rows[k]], bounds[k][1], slot)
            pop_at[k] = point
        point = -INFINITY
        for k in range(n_push):
            freed = pop_at[k - capacity] if capacity <= k < n_pop + capacity else -INFINITY
            point = max(point, calls[push_rows[k]], bounds[k][0], freed)
            push_at[k] = point
    else:
        point = -INFINITY
        for k in range(n_pop):
            point = max(point, calls[pop_rows[k]], push_at[k], bounds[k][0])
            pop_at[k] = point
    for k in range(n_push):
        events.append(((push_at[k], 3 * k), push_rows[k]))
    for k in range(n_pop):
        events.append(((pop_at[k], 3 * k + 1), pop_rows[k]))
    if strict:
        for row in parts.empty_pops:
            g = _gap_of(history, row, gaps)
            events.append(((g, 3 * first_in_period[bisect_right(gaps, g)] - 1), row))
    else:
        for row in parts.empty_pops:
            events.append(((calls[row], -1), row))
    if not strict:
        for row in parts.failed_pushes:
            events.append(((calls[row], -1), row))
    events.sort()
    if strict and parts.failed_pushes:
        placed = _place_fulls(history, events, parts.failed_pushes)
        if placed is None:
            return None
        events = placed
    return events


def _gap_of(history: History, row: int, gaps: list[int]) -> int:
    """The gap chosen for empty pop ``row``: the first gap inside its interval."""
    k = bisect_left(gaps, history.calls[row])
    assert k < len(gaps) and gaps[k] <= history.rets[row], "an empty pop without its gap"
    return gaps[k]


def _place_fulls(
    history: History, events: list[tuple[tuple[int, int], int]], fulls: list[int]
) -> list[tuple[tuple[int, int], int]] | None:
    """Insert each "full" answer at a point of its interval where ``events`` hold
    ``C`` values; ``None`` if some cannot be."""
    capacity = history.capacity
    kinds, oks = history.kinds, history.oks
    size = 0
    at_capacity: list[int] = []  # k: the queue holds C values after events[k-1] (k=0: before all)
    if capacity == 0:
        at_capacity.append(0)
    for k, (_, row) in enumerate(events, start=1):
        if oks[row]:
            size += 1 if kinds[row] == PUSH else -1
        if size == capacity:
            at_capacity.append(k)
    times = [point for (point, _), _ in events]
    inserts: list[tuple[int, int]] = []
    for row in fulls:
        f1, f2 = history.calls[row], history.rets[row]
        # slot k lies between events[k-1] (time times[k-1]) and events[k] (time times[k])
        lowest = bisect_left(times, f1)  # slots k >= lowest end at or after f1
        highest = bisect_right(times, f2)  # slots k <= highest start at or before f2
        j = bisect_left(at_capacity, lowest)
        if j == len(at_capacity) or at_capacity[j] > highest:
            return None
        inserts.append((at_capacity[j], row))
    inserts.sort()
    out: list[tuple[tuple[int, int], int]] = []
    n = 0
    for k in range(len(events) + 1):
        while n < len(inserts) and inserts[n][0] == k:
            point = events[k - 1][0] if k > 0 else (history.calls[inserts[n][1]], -2)
            out.append((point, inserts[n][1]))
            n += 1
        if k < len(events):
            out.append(events[k])
    return out


def _replay(history: History, events: list[tuple[tuple[int, int], int]], strict: bool) -> str | None:
    """``None`` if ``events`` (in order) is a legal sequence of the bounded queue that
    keeps real time, else what goes wrong first."""
    from collections import deque

    calls, rets, kinds, oks, values, ids = (history.calls, history.rets, history.kinds, history.oks,
                                            history.values, history.ids)
    capacity = history.capacity
    queue: deque[Hashable] = deque()
    latest_call = -INFINITY
    for _, row in events:
        if rets[row] < latest_call:
            return f"operation #{ids[row]} placed after one called after it returned"
        latest_call = max(latest_call, calls[row])
        if kinds[row] == PUSH:
            if oks[row]:
                if len(queue) >= capacity:
                    return f"push #{ids[row]} finds the queue full"
                queue.append(_value_key(values[row]))
            elif strict and len(queue) != capacity:
                return f"'full' answer of push #{ids[row]} with {len(queue)} values held"
        elif oks[row]:
            if not queue or queue[0] != _value_key(values[row]):
                return f"pop #{ids[row]} is not at the head"
            queue.popleft()
        elif strict and queue:
            return f"'empty' answer of pop #{ids[row]} with {len(queue)} values held"
    return None


__all__ = ["MpmcResult", "MpmcViolation", "NotDistinctError", "check_mpmc", "check_threads"]
