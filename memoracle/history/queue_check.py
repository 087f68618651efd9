"""Queue histories: the fastest exact checker that applies, then the generic search.

1. :func:`spec.spsc_fast.check_spsc` when one thread pushes and another pops (exact,
   O(n log n), values need not be distinct);
2. :func:`spec.mpmc_fast.check_mpmc` when successful pushes push distinct values (exact
   on what it decides, O(n log n); it leaves undecided only bounded histories where the
   capacity may bind and its constructions fail);
3. :func:`spec.linearizability.check_linearizable` under a :class:`Budget` for the rest:
   exact, or "unknown" when the budget runs out.
"""

from __future__ import annotations

import time
from typing import Sequence

from spec.history import History, Operation
from spec.linearizability import Budget, check_linearizable, queue_unit
from spec.mpmc_fast import NotDistinctError, check_mpmc
from spec.spsc_fast import NotSpscError, check_spsc
from spec.spsc_model import Criterion, QueueSpec

from memoracle.history.verdict import Verdict, sorted_window


def queue_model(capacity: int) -> str:
    """``queue (capacity 8)``, or ``queue (unbounded)`` for :data:`UNBOUNDED`."""
    return "queue (unbounded)" if capacity >= UNBOUNDED else f"queue (capacity {capacity})"


#: The capacity that stands for "unbounded" (no history pushes this many values).
UNBOUNDED = 2**62


def check_queue_history(history: History, criterion: Criterion, budget: Budget) -> Verdict:
    """Check a queue ``history`` (see the module docstring for which checker decides).
    Raises :class:`spec.history.HistoryFormatError` if a thread's operations overlap."""
    started = time.perf_counter()
    model = queue_model(history.capacity)
    try:
        spsc = check_spsc(history, criterion)
    except NotSpscError:
        pass
    else:
        seconds = time.perf_counter() - started
        if spsc.ok or spsc.violation is None:
            return Verdict("linearizable", "spsc-fast", model, criterion.value, len(history), "", (), (), seconds)
        return _row_violation(history, "spsc-fast", model, criterion, spsc.violation.reason,
                              spsc.violation.culprits, spsc.violation.window, started)
    note = ""
    try:
        mpmc = check_mpmc(history, criterion)
    except NotDistinctError as error:
        note = f"{error}: the generic search decides"
    else:
        if mpmc.decided:
            seconds = time.perf_counter() - started
            if mpmc.ok:
                return Verdict("linearizable", "mpmc-fast", model, criterion.value, len(history), "", (), (), seconds)
            assert mpmc.violation is not None
            return _row_violation(history, "mpmc-fast", model, criterion, mpmc.violation.reason,
                                  mpmc.violation.culprits, mpmc.violation.window, started)
        note = f"{mpmc.why}: the generic search decides"
    return check_queue_generic(history.operations(), history.capacity, criterion, budget, started, note)


def check_queue_generic(
    ops: Sequence[Operation], capacity: int, criterion: Criterion, budget: Budget,
    started: float | None = None, note: str = "",
) -> Verdict:  # fmt: skip
    """The generic search over ``ops`` of a queue of ``capacity``, under ``budget``."""
    started = time.perf_counter() if started is None else started
    model = queue_model(capacity)
    result = check_linearizable(ops, QueueSpec(capacity, criterion), unit=queue_unit, budget=budget)
    seconds = time.perf_counter() - started
    if result.ok:
        return Verdict("linearizable", "generic", model, criterion.value, len(ops), note, (), (), seconds)
    if result.violation is not None:
        violation = result.violation
        by_id = {op.id: op for op in ops}
        shown = violation.minimal or tuple(by_id[i] for i in violation.longest[-10:])
        return Verdict("violation", "generic", model, criterion.value, len(ops), violation.render(),
                       tuple(op.id for op in shown), sorted_window(shown), seconds, violation.longest)
    unknown = result.unknown[0]
    reason = (f"the search stopped ({unknown.why}; budget: {budget.describe()}) after {unknown.states} "
              f"states, with {len(unknown.longest)} of {unknown.operations} operations linearized"
              + (f"; {note}" if note else ""))
    return Verdict("unknown", "generic", model, criterion.value, len(ops), reason, (), (), seconds, unknown.longest)


def _row_violation(
    history: History, checker: str, model: str, criterion: Criterion, reason: str,
    culprit_rows: Sequence[int], window_rows: Sequence[int], started: float,
) -> Verdict:  # fmt: skip
    window = sorted_window([history.operation(r) for r in window_rows])
    culprits = tuple(history.ids[r] for r in culprit_rows)
    return Verdict("violation", checker, model, criterion.value, len(history), reason, culprits, window,
                   time.perf_counter() - started)
