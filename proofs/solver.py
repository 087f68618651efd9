"""Asking Z3 about a claim, and printing what it finds.

z3py ships without type stubs; every Z3 value is typed :data:`Z3Expr` (``Any``) here and
in the theorem modules, and only these helpers turn Z3 values into Python ones.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeAlias

import z3

from proofs.registry import Verdict

#: Any Z3 expression (bit-vector, Boolean or array). z3py has no stubs.
Z3Expr: TypeAlias = Any
#: A Z3 context (``None`` stands for Z3's main context).
Z3Context: TypeAlias = Any
#: A Z3 model (a satisfying assignment).
Z3Model: TypeAlias = Any

#: Decodes a counterexample model into readable text and its key values.
Explain: TypeAlias = Callable[[Z3Model], tuple[str, Mapping[str, int]]]


def check_claim(
    claim: Z3Expr,
    *,
    timeout_ms: int,
    explain: Explain,
    prefer: Sequence[Z3Expr] = (),
    hypotheses: Z3Expr | None = None,
) -> Verdict:
    """Prove ``claim`` by asking whether ``Not(claim)`` is satisfiable.

    *unsat* is a proof; *sat* is a refutation, explained by ``explain(model)``; anything
    else (timeout, give-up) is ``"unknown"`` with the solver's reason.

    ``prefer`` only shapes the counterexample, never the verdict: once a counterexample
    exists, the solver is asked for one that also satisfies ``prefer`` (typical, non-
    degenerate values, easier to read), and the first one is kept if there is none.

    ``hypotheses``, if given, are the claim's preconditions: a proof is only reported
    when they are satisfiable, since a claim whose hypotheses contradict each other is
    proved vacuously and guarantees nothing. Vacuity is reported as ``"unknown"``.
    """
    solver = z3.Solver(ctx=claim.ctx)
    solver.set("timeout", timeout_ms)
    solver.add(z3.Not(claim))
    answer = solver.check()
    if answer == z3.unsat:
        if hypotheses is not None:
            witness_solver = z3.Solver(ctx=claim.ctx)
            witness_solver.set("timeout", timeout_ms)
            witness_solver.add(hypotheses)
            satisfiable = witness_solver.check()
            if satisfiable != z3.sat:
                return Verdict(
                    "unknown",
                    note=f"vacuous: the hypotheses are not shown satisfiable ({satisfiable})",
                )
        return Verdict("proved")
    if answer == z3.sat:
        model = solver.model()
        if prefer:
            solver.push()
            solver.add(*prefer)
            if solver.check() == z3.sat:
                model = solver.model()
            solver.pop()
        text, witness = explain(model)
        return Verdict("refuted", counterexample=text, witness=dict(witness))
    return Verdict("unknown", note=f"solver gave up: {solver.reason_unknown()}")


def as_int(value: Z3Expr) -> int:
    """The integer a Z3 bit-vector numeral denotes (raises if ``value`` is not a numeral)."""
    if not z3.is_bv_value(value):
        raise ValueError(f"not a concrete bit-vector: {value}")
    number: int = value.as_long()
    return number


def as_bool(value: Z3Expr) -> bool:
    """The truth value a Z3 Boolean constant denotes (raises if it is not a constant)."""
    if z3.is_true(value):
        return True
    if z3.is_false(value):
        return False
    raise ValueError(f"not a concrete Boolean: {value}")


def model_evaluator(model: Z3Model) -> Callable[[Z3Expr], Z3Expr]:
    """Evaluate expressions in ``model``, choosing values for anything it leaves free."""

    def evaluate(expr: Z3Expr) -> Z3Expr:
        return model.eval(expr, model_completion=True)

    return evaluate


def hex64(value: int) -> str:
    """A 64-bit value as 16 hex digits in groups of four: ``0x0000_0080_0000_0000``."""
    digits = f"{value & (2**64 - 1):016x}"
    return "0x" + "_".join(digits[i : i + 4] for i in range(0, 16, 4))
