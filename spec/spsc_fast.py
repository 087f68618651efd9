"""A linear-time linearizability checker for single-producer single-consumer histories.

Input: a :class:`~spec.history.History` of a bounded queue of capacity ``C`` in which
every push comes from one thread (the producer) and every pop from another (the
consumer). Pushed values need **not** be distinct. Failed answers ("full"/"empty") are
judged by the chosen :class:`~spec.spsc_model.Criterion`. Cost: O(n log n) for sorting
the two threads by call stamp (skipped when already sorted) and O(n log n) for
bisections; the sweep itself is O(n). Memory: a few integers per operation.

Algorithm
---------
Let ``P_1..P_m`` be the producer's operations and ``Q_1..Q_k`` the consumer's, each in
program order. A linearization interleaves the two sequences, i.e. it is a monotone
lattice path from ``(0, 0)`` to ``(m, k)`` where node ``(i, j)`` means "``i`` producer
and ``j`` consumer operations done".

1. *Values.* The producer's successful pushes are linearized in program order, and so
   are the consumer's successful pops; so in *every* linearization the ``q``-th
   successful pop returns the value of the ``q``-th successful push. If the popped
   values are not a prefix of the pushed ones, there is no linearization (a value
   invented, duplicated, lost or reordered) — this needs no search.
2. *States.* Given (1), the queue at node ``(i, j)`` is the pushed values numbered
   ``sc(j)+1 .. sp(i)`` (``sp``/``sc`` count successful pushes/pops), so every
   constraint is a constraint on the node:

   - the move ``(i, j) -> (i+1, j)`` (placing ``P_{i+1}``) is allowed iff ``j`` lies in
     an interval ``A_i``: real time (every ``Q`` that returned before ``P_{i+1}`` was
     called is among the first ``j``; none called after ``P_{i+1}`` returned is) and the
     queue (a successful push needs ``sp(i) - sc(j) < C``; under ``strict`` a "full"
     needs ``sp(i) - sc(j) = C``) — each of these is an interval of ``j`` because ``sc``
     is monotone;
   - the move ``(i, j) -> (i, j+1)`` (placing ``Q_{j+1}``) is allowed iff ``i`` lies in
     an interval ``B_j`` (a successful pop needs its push done: ``i >= pidx``; under
     ``strict`` an "empty" needs ``sp(i) = sc(j)``). Real time between the two threads
     is fully decided by where each ``P`` is placed, so ``B_j`` needs no real-time part.
3. *Sweep.* By induction on ``i``, the nodes reachable in row ``i`` form an interval
   ``[s_i, e_i]``: row ``i+1`` is entered through ``[s_i, e_i] ∩ A_i = [s, t]`` (an
   interval), and inside a row one can only move right, so the row's reachable set is
   ``[s, e]`` where ``e`` is the first column ``>= t`` whose edge is closed. The lower
   ends of the ``B_j`` are non-decreasing in ``j`` and the finite upper ends (only
   "empty" pops have one) are non-decreasing too, so ``e`` is found with a pointer and
   one bisection. The history is linearizable iff every ``[s, t]`` is non-empty and
   ``e_m = k``.

*Sound*: an answer "linearizable" comes with a path, i.e. an explicit linearization
(``witness=True`` returns it; the tests replay it against the sequential spec).
*Complete*: every linearization is such a path, every node of it is reachable, and the
sweep computes exactly the reachable nodes (the interval argument above), so if a
linearization exists the sweep reaches ``(m, k)``. The tests cross-check the verdict
against the generic Wing–Gong–Lowe search on many small generated and mutated histories.
"""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate, compress
from typing import Sequence

from spec.history import POP, PUSH, History, HistoryFormatError
from spec.spsc_model import Criterion


class NotSpscError(ValueError):
    """The history is not single-producer single-consumer (use the generic checker)."""


@dataclass(frozen=True)
class FastViolation:
    """Why an SPSC history is not linearizable: a sentence and the rows (indices into
    the history) of the operations it is about, plus a window of rows around them."""

    reason: str
    culprits: tuple[int, ...]
    window: tuple[int, ...]

    def render(self, history: History) -> str:
        """The reason and the operations of the window, in call order."""
        lines = [self.reason, "operations around the violation (* = named above):"]
        for row in sorted(self.window, key=lambda r: (history.calls[r], history.rets[r])):
            mark = "*" if row in self.culprits else " "
            lines.append(f" {mark} {history.operation(row).describe()}")
        return "\n".join(lines)


@dataclass(frozen=True)
class FastResult:
    """The verdict: ``ok``; ``witness`` (row indices in linearization order, if asked
    for and ok — under ``tolerant``, of the successful operations only, since failed
    ones need no place); ``violation`` otherwise."""

    ok: bool
    criterion: Criterion
    witness: tuple[int, ...] | None = None
    violation: FastViolation | None = None


@dataclass
class _Thread:
    rows: list[int]
    calls: list[int]
    rets: list[int]
    values: Sequence[object]
    oks: list[int]


_INVERT = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def _thread_rows(history: History, kind: int) -> tuple[int | None, bytes]:
    """The thread doing every operation of ``kind`` and the mask of those rows."""
    mask = bytes(history.kinds) if kind == POP else bytes(history.kinds).translate(_INVERT)
    threads = set(compress(history.thread_index, mask))
    if len(threads) > 1:
        names = sorted(repr(history.thread_names[t]) for t in threads)
        what = "pushes" if kind == PUSH else "pops"
        raise NotSpscError(f"{what} come from {len(threads)} threads ({', '.join(names[:4])})")
    return (threads.pop() if threads else None), mask


def _sequence(history: History, mask: bytes, name: object) -> _Thread:
    rows = list(compress(range(len(history)), mask))
    calls = list(compress(history.calls, mask))
    if not all(map(operator.le, calls, calls[1:])):
        rows.sort(key=history.calls.__getitem__)
        calls = list(map(history.calls.__getitem__, rows))
        rets = list(map(history.rets.__getitem__, rows))
        values = list(map(history.values.__getitem__, rows))
        oks = list(map(history.oks.__getitem__, rows))
    else:
        rets = list(compress(history.rets, mask))
        values = list(compress(history.values, mask))
        oks = list(compress(history.oks, mask))
    if not all(map(operator.lt, rets, calls[1:])):
        at = next(k for k in range(len(rows) - 1) if rets[k] >= calls[k + 1])
        raise HistoryFormatError(
            0,
            f"thread {name!r}: operations #{history.ids[rows[at]]} and "
            f"#{history.ids[rows[at + 1]]} overlap in time "
            "(a thread's next call must come after its last return)",
        )
    return _Thread(rows, calls, rets, values, oks)


def split_threads(history: History) -> tuple[_Thread, _Thread]:
    """The producer's and the consumer's operations, each in program order.

    Raises :class:`NotSpscError` if pushes or pops come from several threads or one
    thread does both, and :class:`HistoryFormatError` if a thread's operations overlap.
    """
    producer, push_rows = _thread_rows(history, PUSH)
    consumer, pop_rows = _thread_rows(history, POP)
    if producer is not None and producer == consumer:
        raise NotSpscError(f"thread {history.thread_names[producer]!r} both pushes and pops")
    p_name = history.thread_names[producer] if producer is not None else "producer"
    c_name = history.thread_names[consumer] if consumer is not None else "consumer"
    return _sequence(history, push_rows, p_name), _sequence(history, pop_rows, c_name)


def _keep(thread: _Thread, mask: Sequence[int]) -> _Thread:
    return _Thread(
        list(compress(thread.rows, mask)),
        list(compress(thread.calls, mask)),
        list(compress(thread.rets, mask)),
        list(compress(thread.values, mask)),
        list(compress(thread.oks, mask)),
    )


def _window(p: _Thread, c: _Thread, pi: int, cj: int, radius: int = 6) -> tuple[int, ...]:
    rows = p.rows[max(0, pi - radius) : pi + radius] + c.rows[max(0, cj - radius) : cj + radius]
    return tuple(rows)


def check_spsc(
    history: History, criterion: Criterion = Criterion.STRICT, *, witness: bool = False
) -> FastResult:
    """Decide whether an SPSC ``history`` is linearizable under ``criterion``.

    See the module docstring for the algorithm and why the answer is exact. Raises
    :class:`NotSpscError` for a history with several producers or consumers.
    """
    capacity = history.capacity
    p, c = split_threads(history)
    strict = criterion is Criterion.STRICT
    if not strict:
        p, c = _keep(p, p.oks), _keep(c, c.oks)
    m, k = len(p.rows), len(c.rows)

    # 1. values: the q-th successful pop returns the q-th successful push's value.
    ok_p = [i for i in range(m) if p.oks[i]] if strict else list(range(m))
    ok_c = [j for j in range(k) if c.oks[j]] if strict else list(range(k))
    pushed = [p.values[i] for i in ok_p]
    popped = [c.values[j] for j in ok_c]
    if popped != pushed[: len(popped)]:
        q = next(
            (q for q in range(min(len(popped), len(pushed))) if popped[q] != pushed[q]),
            len(pushed),
        )
        pop_row = c.rows[ok_c[q]]
        if q < len(pushed):
            reason = (
                f"successful pop number {q + 1} (#{history.ids[pop_row]}) returned "
                f"{popped[q]!r}, but successful push number {q + 1} (#{history.ids[p.rows[ok_p[q]]]}) "
                f"pushed {pushed[q]!r}: a value was lost, duplicated, invented or reordered"
            )
            culprits: tuple[int, ...] = (pop_row, p.rows[ok_p[q]])
            window = _window(p, c, ok_p[q], ok_c[q])
        else:
            reason = (
                f"successful pop number {q + 1} (#{history.ids[pop_row]}) returned "
                f"{popped[q]!r}, but only {len(pushed)} pushes succeeded"
            )
            culprits = (pop_row,)
            window = _window(p, c, m, ok_c[q])
        return FastResult(False, criterion, violation=FastViolation(reason, culprits, window))

    # 2. prefix counts and where the q-th successful operation happens.
    total_push, total_pop = len(ok_p), len(ok_c)
    pidx = [0] + [i + 1 for i in ok_p]  # pidx[q]: rows needed for q successful pushes
    cidx = [0] + [j + 1 for j in ok_c]
    c_oks = c.oks if strict else [1] * k
    sc = [0, *accumulate(c_oks)]
    # B_j lower ends (non-decreasing in j): pidx[sc(j) + 1] for a successful pop, pidx[sc(j)]
    # for an "empty" one; the "empty" pops' upper ends (non-decreasing too).
    b_lo = list(map(pidx.__getitem__, map(operator.add, sc, c_oks)))
    empty_cols = list(compress(range(k), bytes(c_oks).translate(_INVERT))) if strict else []
    empty_hi = [pidx[sc[j] + 1] - 1 if sc[j] + 1 <= total_push else m for j in empty_cols]
    p_oks = p.oks if strict else [1] * m
    c_calls, c_rets = c.calls, c.rets

    # 3. the sweep over rows.
    row_t = array("q", bytes(8 * (m + 1))) if witness else None
    s = t = e = 0
    lp = 0  # first column whose B_j lower end exceeds the current row
    lo_ptr = hi_ptr = 0  # consumer ops returned before / called by the producer op
    x = 0  # first "empty" column >= t
    sp = 0
    n_empty = len(empty_cols)
    for r in range(m + 1):
        while lp < k and b_lo[lp] <= r:
            lp += 1
        e = t if lp <= t else lp
        if n_empty:
            if not ((x == 0 or empty_cols[x - 1] < t) and (x == n_empty or empty_cols[x] >= t)):
                x = bisect_left(empty_cols, t)
            if x < n_empty and empty_hi[x] < r and empty_cols[x] < e:
                e = empty_cols[x]
        if row_t is not None:
            row_t[r] = t
        if r == m:
            break
        # the move placing producer op r from row r: j in A_r
        call = p.calls[r]
        while lo_ptr < k and c_rets[lo_ptr] < call:
            lo_ptr += 1
        ret = p.rets[r]
        while hi_ptr < k and c_calls[hi_ptr] <= ret:
            hi_ptr += 1
        lo, hi = lo_ptr, hi_ptr
        if p_oks[r]:
            need = sp - capacity + 1
            if need > 0:
                bound = cidx[need] if need <= total_pop else k + 1
                if bound > lo:
                    lo = bound
            sp += 1
        else:
            need = sp - capacity
            if need < 0:
                lo = k + 1
            else:
                if cidx[need] > lo:
                    lo = cidx[need]
                if need + 1 <= total_pop and cidx[need + 1] - 1 < hi:
                    hi = cidx[need + 1] - 1
        if lo > s:
            s = lo
        t = e if e < hi else hi
        if s > t:
            return FastResult(
                False, criterion, violation=_stuck_push(history, p, c, r, s, t, e, capacity, strict)
            )
    if e != k:
        return FastResult(False, criterion, violation=_stuck_pop(history, p, c, e, strict))
    order = _reconstruct(p, c, row_t) if row_t is not None else None
    return FastResult(True, criterion, witness=order)


def _reconstruct(p: _Thread, c: _Thread, row_t: array[int]) -> tuple[int, ...]:
    """Walk the lattice path back from ``(m, k)`` (see the module docstring)."""
    m, col = len(p.rows), len(c.rows)
    backwards: list[int] = []
    for r in range(m, 0, -1):
        enter = min(col, row_t[r])
        backwards.extend(c.rows[j] for j in range(col - 1, enter - 1, -1))
        backwards.append(p.rows[r - 1])
        col = enter
    backwards.extend(c.rows[j] for j in range(col - 1, -1, -1))
    return tuple(reversed(backwards))


def _stuck_push(
    history: History, p: _Thread, c: _Thread, r: int, s: int, t: int, e: int, capacity: int, strict: bool
) -> FastViolation:
    row = p.rows[r]
    what = "push" if p.oks[r] or not strict else "'full' answer of push"
    reason = (
        f"no linearization can place the {what} #{history.ids[row]} "
        f"(producer operation {r + 1}): the consumer can have completed between {s if s <= e else '?'} "
        f"and {e} operations before it, but real time and the queue (capacity {capacity}) "
        f"need at most {t}" + (" and at least " + str(s) if s > t else "")
    )
    return FastViolation(reason, (row,), _window(p, c, r, min(e, len(c.rows) - 1) if c.rows else 0))


def _stuck_pop(history: History, p: _Thread, c: _Thread, e: int, strict: bool) -> FastViolation:
    row = c.rows[e]
    answer = "empty" if not c.oks[e] else repr(c.values[e])
    reason = (
        f"no linearization can place pop #{history.ids[row]} -> {answer} (consumer operation "
        f"{e + 1}) after the producer's operations it must follow"
        + (": the queue cannot be empty then" if strict and not c.oks[e] else "")
    )
    return FastViolation(reason, (row,), _window(p, c, len(p.rows) - 1, e))
