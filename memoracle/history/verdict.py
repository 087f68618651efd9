"""The outcome of checking one history, whatever the format, the model and the checker.

A :class:`Verdict` is one of three things, each with its exit code
(:mod:`memoracle.exitcodes`): **linearizable** (0), a **violation** (1: certain, with the
reason and the operations it names), or **unknown** (3: the generic search's budget ran
out before an answer; never a guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from spec.linearizability import INDETERMINATE, TimedOp

from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_VIOLATION

Status = Literal["linearizable", "violation", "unknown"]


@dataclass(frozen=True)
class Verdict:
    """What a check found.

    ``culprits`` are the ids of the operations the reason names; ``window`` the
    operations shown with it in text and JSON (the culprits and their neighbours, or a
    minimal violating sub-history); ``order`` a longest partial linearization found (ids),
    when the checker has one; ``partition`` the key whose sub-history decided.
    """

    status: Status
    checker: str
    model: str
    criterion: str | None
    operations: int
    reason: str
    culprits: tuple[int, ...]
    window: tuple[TimedOp, ...]
    seconds: float
    order: tuple[int, ...] = ()
    partition: str | None = None

    @property
    def exit_code(self) -> int:
        """0 linearizable, 1 violation, 3 unknown."""
        return {"linearizable": EXIT_OK, "violation": EXIT_VIOLATION}.get(self.status, EXIT_INCONCLUSIVE)

    def headline(self, name: str) -> str:
        """One line: the file, the verdict, how it was reached."""
        criterion = f" ({self.criterion})" if self.criterion else ""
        if self.status == "linearizable":
            return (f"{name}: linearizable{criterion}, {self.operations} operations, {self.model}, "
                    f"{self.checker} checker, {self.seconds:.3f}s")
        if self.status == "violation":
            where = f" (key {self.partition})" if self.partition is not None else ""
            return f"{name}: NOT linearizable{criterion}{where}, {self.model}, {self.checker} checker"
        return f"{name}: UNKNOWN{criterion}: no verdict within the budget, {self.model}, {self.checker} checker"

    def as_json(self, path: str) -> dict[str, Any]:
        """The ``--json`` object (``linearizable`` is ``null`` when unknown)."""
        return {
            "file": path,
            "verdict": self.status,
            "linearizable": {"linearizable": True, "violation": False}.get(self.status),
            "model": self.model,
            "criterion": self.criterion,
            "checker": self.checker,
            "operations": self.operations,
            "partition": self.partition,
            "reason": self.reason,
            "culprits": list(self.culprits),
            "window": [_op_json(op) for op in self.window],
            "seconds": round(self.seconds, 4),
        }


def _op_json(op: TimedOp) -> dict[str, Any]:
    as_json = getattr(op, "as_json", None)
    if callable(as_json):
        row = as_json()
        if isinstance(row, dict):
            return row
    return {"id": op.id, "thread": str(op.thread), "call": op.call,
            "return": None if op.ret >= INDETERMINATE else op.ret, "text": op.describe()}


def sorted_window(ops: Sequence[TimedOp]) -> tuple[TimedOp, ...]:
    """``ops`` in call order (the order text output shows them in)."""
    return tuple(sorted(ops, key=lambda o: (o.call, o.ret, o.id)))
