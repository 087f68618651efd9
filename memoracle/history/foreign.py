"""Histories from other tools, once read: what they hold and how they are checked.

A :class:`ForeignHistory` holds the operations to check (:class:`spec.object_models.ObjOp`)
and those to draw (the same, plus operations that certainly did not take effect, such as
Jepsen's ``:fail``). :func:`check_foreign` checks it against its model:

- ``register``: the generic search over :class:`spec.object_models.RegisterSpec`;
- ``kv``: the generic search per key (P-compositional) over
  :class:`spec.object_models.KvSpec`; the verdict names the violating key;
- ``queue``: an unbounded FIFO. Without indeterminate pops, the operations become a queue
  :class:`spec.history.History` and go to the fast checkers (:mod:`.queue_check`); an
  indeterminate push whose value some pop returned did take effect (its return is set
  after every other stamp), one whose value nobody popped is left out (for an unbounded
  queue, not happening is always at least as good). With indeterminate pops, the generic
  search over :class:`spec.object_models.ForeignQueueSpec` decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Hashable, Sequence

from spec.history import History, Operation
from spec.linearizability import Budget, GenericResult, check_linearizable
from spec.object_models import ForeignQueueSpec, KvSpec, ObjOp, RegisterSpec, op_key, value_unit
from spec.spsc_model import Criterion

from memoracle.history.queue_check import UNBOUNDED, check_queue_history
from memoracle.history.timeline import Bar
from memoracle.history.verdict import Verdict, sorted_window

MODELS = ("queue", "register", "kv")


@dataclass
class ForeignHistory:
    """Operations read from another tool's file, for ``model``."""

    model: str
    source: str  # "jepsen" or "porcupine"
    ops: list[ObjOp] = field(default_factory=list)
    did_not_happen: list[ObjOp] = field(default_factory=list)

    def bars(self) -> list[Bar]:
        """Every operation, checked or not, as the timeline draws it."""
        who = "process" if self.source == "jepsen" else "client"
        out = []
        for op, happened in [(op, True) for op in self.ops] + [(op, False) for op in self.did_not_happen]:
            status = "info" if op.indeterminate else ("ok" if happened and op.result is not False else "failed")
            text = op.describe() + ("" if happened else "  (failed: it did not take effect)")
            group = None if op.key is None or self.model != "kv" else _key_text(op.key)
            out.append(Bar(op.id, f"{who} {op.thread}", group, op.label(), text, op.call,
                           None if op.indeterminate else op.ret, status))
        return out


def _key_text(key: Hashable) -> str:
    return key if isinstance(key, str) else str(key)


def check_foreign(history: ForeignHistory, criterion: Criterion, budget: Budget) -> Verdict:
    """Check ``history`` against its model (see the module docstring)."""
    started = time.perf_counter()
    ops = history.ops
    if history.model == "queue":
        if not any(op.f == "pop" and op.indeterminate for op in ops):
            return check_queue_history(_as_queue(ops), criterion, budget)
        result = check_linearizable(ops, ForeignQueueSpec(), unit=value_unit, budget=budget)
        return generic_verdict(result, ops, "queue (unbounded)", criterion.value, budget, started,
                               "indeterminate pops: the generic search decides")
    if history.model == "register":
        result = check_linearizable(ops, RegisterSpec(), unit=value_unit, budget=budget)
        return generic_verdict(result, ops, "register", None, budget, started)
    result = check_linearizable(ops, KvSpec(), partition=op_key, unit=value_unit, budget=budget)
    return generic_verdict(result, ops, "kv (per key)", None, budget, started)


def _as_queue(ops: Sequence[ObjOp]) -> History:
    popped = {_queue_value(op.result) for op in ops if op.f == "pop" and op.result is not None}
    last = max((op.ret for op in ops if not op.indeterminate), default=0)
    rows = []
    for op in ops:
        if op.f == "push":
            value = _queue_value(op.value)
            if op.indeterminate:
                if value not in popped:
                    continue  # it may not have happened, and nobody saw it: leave it out
                rows.append(Operation(op.id, op.thread, "push", value, True, op.call, max(last + 1, op.call + 1)))
            else:
                rows.append(Operation(op.id, op.thread, "push", value, True, op.call, op.ret))
        else:
            result = None if op.result is None else _queue_value(op.result)
            rows.append(Operation(op.id, op.thread, "pop", None, result, op.call, op.ret))
    return History.from_trusted_operations(rows, UNBOUNDED)


def _queue_value(value: object) -> int | str:
    """A queue value as the queue checkers hold it: integers and strings as they are,
    anything else by its text."""
    if type(value) is int or type(value) is str:
        return value
    return f"{type(value).__name__}:{value}"


def generic_verdict(
    result: GenericResult, ops: Sequence[ObjOp], model: str, criterion: str | None, budget: Budget,
    started: float, note: str = "",
) -> Verdict:  # fmt: skip
    """The verdict of a generic search over foreign operations."""
    seconds = time.perf_counter() - started
    if result.ok:
        return Verdict("linearizable", "generic", model, criterion, len(ops), note, (), (), seconds)
    if result.violation is not None:
        violation = result.violation
        by_id = {op.id: op for op in ops}
        shown = violation.minimal or tuple(by_id[i] for i in violation.longest[-10:])
        partition = None if violation.partition is None else _key_text(violation.partition)
        return Verdict("violation", "generic", model, criterion, len(ops), violation.render(),
                       tuple(op.id for op in shown), sorted_window(shown), seconds, violation.longest, partition)
    unknown = result.unknown[0]
    where = "" if unknown.partition is None else f" on key {_key_text(unknown.partition)}"
    reason = (f"the search stopped{where} ({unknown.why}; budget: {budget.describe()}) after {unknown.states} "
              f"states, with {len(unknown.longest)} of {unknown.operations} operations linearized"
              + (f"; {note}" if note else ""))
    partition = None if unknown.partition is None else _key_text(unknown.partition)
    return Verdict("unknown", "generic", model, criterion, len(ops), reason, (), (), seconds, unknown.longest,
                   partition)
