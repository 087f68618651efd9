"""The SPSC ring's index arithmetic, proved at full 64-bit width, by induction.

The ring (``impl/spsc.py``) keeps two free-running 64-bit counters, ``tail`` (pushes)
and ``head`` (pops), a power-of-two capacity ``C`` and slot ``i & (C - 1)`` for counter
``i``; the cached variant adds the producer's copy ``ch`` of ``head`` and the consumer's
copy ``ct`` of ``tail``. Every theorem below quantifies over *all* 64-bit values (so over
every wrap-around of the counters) and over every power-of-two ``C`` with
``1 <= C <= 2**62``; comparisons are unsigned (``ULE``/``ULT``) as in the ring. The steps
are the atomic protocol steps (sequential consistency); which fences make the steps
atomic enough on weaker machines is the explorer's business (``memoracle.spsc.fences_table``).

Theorems:

``spsc_bounds_inductive``
    ``0 <= tail - head <= C`` (mod 2^64) holds initially (``head = tail``) and is
    preserved by a push (taken only when ``tail - head != C``) and a pop (taken only
    when ``tail != head``).
``spsc_full_empty_distinct``
    under the invariant, "full" (``tail - head == C``) and "empty" (``tail == head``)
    are never both true, and exactly one of empty / full / neither holds.
``spsc_mask_indexes``
    ``i & (C - 1) == i mod C`` for every ``i``, and the ``tail - head`` live counters map
    to pairwise distinct slots, and the slot ``tail`` is written to is not one of them
    when the ring is not full.
``spsc_cached_inductive`` / ``spsc_cached_no_overwrite``
    with ``head <= ct <= tail`` and ``ch <= head``, ``tail - ch <= C`` (in the window
    of the counters), the four steps (producer refreshes ``ch`` when its copy says full,
    pushes when it does not; consumer refreshes ``ct`` when its copy says empty, pops
    when it does not) preserve the invariant, a push never writes an unread slot and a
    pop never reads an unpublished one.

Mutants, each refuted with a counterexample: masking with a non-power-of-two ``C`` (6),
``mod`` indexing with ``C = 6`` (the slot sequence jumps at the 2^64 wrap), a "full" test that compares
the raw counters *signed* (``head + C <= tail``), indices kept modulo ``C`` (full and
empty collide), and a cached producer that trusts a stale copy up to ``tail - ch <= C``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import z3

from proofs.registry import Theorem, Verdict, register
from proofs.solver import Z3Context, Z3Expr, Z3Model, as_int, check_claim

WIDTH = 64


def _vars(*names: str) -> tuple[Z3Context, list[Z3Expr]]:
    """Fresh 64-bit variables in a fresh context (each theorem stands alone)."""
    ctx = z3.Context()
    return ctx, [z3.BitVec(name, WIDTH, ctx=ctx) for name in names]



def _power_of_two(c: Z3Expr) -> Z3Expr:
    return z3.And(c != 0, (c & (c - 1)) == 0, z3.ULE(c, 2**62))


def _inv(head: Z3Expr, tail: Z3Expr, c: Z3Expr) -> Z3Expr:
    return z3.ULE(tail - head, c)


def _explainer(values: dict[str, Z3Expr]) -> Callable[[Z3Model], tuple[str, Mapping[str, int]]]:
    def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
        witness = {name: as_int(model.eval(expr, model_completion=True)) for name, expr in values.items()}
        text = ", ".join(f"{name} = {value:#x}" for name, value in witness.items())
        return text, witness

    return explain


def _check(claim: Z3Expr, hypotheses: Z3Expr, values: dict[str, Z3Expr], timeout_ms: int) -> Verdict:
    return check_claim(
        z3.Implies(hypotheses, claim),
        timeout_ms=timeout_ms,
        explain=_explainer(values),
        hypotheses=hypotheses,
    )


# ---------------------------------------------------------------------- bounds


def _bounds() -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        _, (head, tail, c) = _vars("head", "tail", "C")
        claim = z3.And(
            _inv(head, head, c),
            z3.Implies(tail - head != c, _inv(head, tail + 1, c)),
            z3.Implies(tail != head, _inv(head + 1, tail, c)),
        )
        hypotheses = z3.And(_power_of_two(c), _inv(head, tail, c))
        return _check(claim, hypotheses, {"head": head, "tail": tail, "C": c}, timeout_ms)

    return check


def _full_empty(mutant: str | None) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        _, (head, tail, c) = _vars("head", "tail", "C")
        empty = tail == head
        if mutant == "signed":
            full = head + c <= tail  # signed comparison of the raw counters
        elif mutant == "masked":
            full = (tail & (c - 1)) == (head & (c - 1))  # indices kept modulo C
        else:
            full = tail - head == c
        neither = z3.And(z3.Not(empty), z3.Not(full))
        exactly_one = z3.And(
            z3.Not(z3.And(empty, full)), z3.Or(empty, full, neither)
        )
        claim = z3.And(exactly_one, full == (tail - head == c), empty == (tail - head == 0))
        return _check(claim, z3.And(_power_of_two(c), _inv(head, tail, c)), {"head": head, "tail": tail, "C": c}, timeout_ms)

    return check


# ---------------------------------------------------------------------- masking


def _wrap(capacity: int) -> Callable[[int], Verdict]:
    """``i mod C`` indexing steps to the next slot at every increment, also at 2^64."""

    def check(timeout_ms: int) -> Verdict:
        _, (i,) = _vars("i")
        c = z3.BitVecVal(capacity, WIDTH, ctx=i.ctx)
        claim = z3.URem(i + 1, c) == z3.URem(z3.URem(i, c) + 1, c)
        return _check(claim, z3.BoolVal(True, ctx=i.ctx), {"i": i}, timeout_ms)

    return check


def _mask(capacity: int | None, modulo: bool) -> Callable[[int], Verdict]:
    """Slots of live counters are distinct and in range; the push slot is free; the
    slot of ``i + 1`` follows the slot of ``i``, also where the counter wraps."""

    def check(timeout_ms: int) -> Verdict:
        _, (head, tail, c, k1, k2, i) = _vars("head", "tail", "C", "k1", "k2", "i")
        if capacity is None:
            hyp_c = _power_of_two(c)
        else:
            hyp_c = c == capacity

        def slot(x: Z3Expr) -> Z3Expr:
            return z3.URem(x, c) if modulo else x & (c - 1)

        live = z3.And(z3.ULT(k1, tail - head), z3.ULT(k2, tail - head), k1 != k2)
        claims = [
            z3.ULT(slot(i), c),
            z3.Implies(live, slot(head + k1) != slot(head + k2)),
            z3.Implies(z3.And(z3.ULT(tail - head, c), z3.ULT(k1, tail - head)), slot(tail) != slot(head + k1)),
        ]
        if capacity is None and not modulo:
            claims.append((i & (c - 1)) == z3.URem(i, c))
            claims.append(slot(i + 1) == (slot(i) + 1) & (c - 1))
        hypotheses = z3.And(hyp_c, _inv(head, tail, c))
        values = {"head": head, "tail": tail, "C": c, "k1": k1, "k2": k2}
        return _check(z3.And(*claims), hypotheses, values, timeout_ms)

    return check


# ---------------------------------------------------------------------- cached variant


def _cached_inv(head: Z3Expr, tail: Z3Expr, ch: Z3Expr, ct: Z3Expr, c: Z3Expr) -> Z3Expr:
    return z3.And(
        _inv(head, tail, c),
        z3.ULE(head - ch, tail - ch),  # ch is at or behind head (within the window)
        z3.ULE(tail - ch, c),
        z3.ULE(ct - head, tail - head),  # head <= ct <= tail
    )


def _cached(claim_kind: str, stale_guard: bool) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        # (ch, a, b, e) -> (head, tail, ct) = (ch + a, ch + a + b, ch + a + e) is a bijection
        # of 64-bit states, so quantifying over it is quantifying over every state; the
        # solver just finds the differences easier to reason about (seconds, not minutes).
        _, (ch, a, b, e, c) = _vars("ch", "head-ch", "tail-head", "ct-head", "C")
        head, tail, ct = ch + a, ch + a + b, ch + a + e
        inv = _cached_inv(head, tail, ch, ct, c)
        push_ok = z3.ULE(tail - ch, c) if stale_guard else (tail - ch != c)
        pop_ok = ct != head
        if claim_kind == "inductive":
            claim = z3.And(
                z3.Implies(tail - ch == c, _cached_inv(head, tail, head, ct, c)),  # producer refresh
                z3.Implies(push_ok, _cached_inv(head, tail + 1, ch, ct, c)),  # push
                z3.Implies(ct == head, _cached_inv(head, tail, ch, tail, c)),  # consumer refresh
                z3.Implies(pop_ok, _cached_inv(head + 1, tail, ch, ct, c)),  # pop
                _cached_inv(head, head, head, head, c),  # initial state (any start value)
            )
        else:
            claim = z3.And(
                z3.Implies(push_ok, z3.ULT(tail - head, c)),  # the slot written is free
                z3.Implies(pop_ok, tail != head),  # the slot read is published
            )
        values = {"head": head, "tail": tail, "ch": ch, "ct": ct, "C": c}
        return _check(claim, z3.And(_power_of_two(c), inv), values, timeout_ms)

    return check


def _reg(name: str, statement: str, check: Callable[[int], Verdict], expect: str = "proved") -> Theorem:
    return register(Theorem(name=name, statement=statement, check=check, expect=expect))  # type: ignore[arg-type]


_reg(
    "spsc_bounds_inductive",
    "for all 64-bit head, tail and power-of-two C <= 2^62: head = tail gives 0 <= tail-head <= C; "
    "a push (when tail-head != C) and a pop (when tail != head) preserve it (unsigned, mod 2^64)",
    _bounds(),
)
_reg(
    "spsc_full_empty_distinct",
    "under 0 <= tail-head <= C: full (tail-head == C) and empty (tail == head) are never both true, "
    "exactly one of empty/full/neither holds, and they mean count C and count 0",
    _full_empty(None),
)
_reg(
    "spsc_mask_indexes",
    "for power-of-two C: i & (C-1) == i mod C < C for every i; the tail-head live counters "
    "map to distinct slots; the slot of tail is none of them when not full",
    _mask(None, modulo=False),
)
_reg(
    "spsc_cached_inductive",
    "cached-index variant: head <= ct <= tail, ch <= head, tail-ch <= C is initial and preserved "
    "by producer refresh, push, consumer refresh and pop",
    _cached("inductive", stale_guard=False),
)
_reg(
    "spsc_cached_no_overwrite",
    "cached-index variant: a push allowed by the producer's cached head writes a slot that is not "
    "unread (tail-head < C); a pop allowed by the cached tail reads a published slot",
    _cached("safety", stale_guard=False),
)
_reg(
    "spsc_mask_indexes:mutant_capacity_6_masked",
    "spsc_mask_indexes with C = 6 and slot i & 5",
    _mask(6, modulo=False),
    "refuted",
)
_reg(
    "spsc_mask_indexes:mutant_capacity_6_modulo",
    "for C = 6 and slot i mod 6: the slot of i+1 follows the slot of i (false where the "
    "counter wraps at 2^64, since 6 does not divide 2^64)",
    _wrap(6),
    "refuted",
)
_reg(
    "spsc_full_empty_distinct:mutant_signed_compare",
    "spsc_full_empty_distinct when full is the signed comparison head + C <= tail of the counters",
    _full_empty("signed"),
    "refuted",
)
_reg(
    "spsc_full_empty_distinct:mutant_masked_indices",
    "spsc_full_empty_distinct when the ring keeps indices modulo C (tail & (C-1) == head & (C-1))",
    _full_empty("masked"),
    "refuted",
)
_reg(
    "spsc_cached_no_overwrite:mutant_stale_guard",
    "spsc_cached_no_overwrite when the producer pushes whenever tail - ch <= C",
    _cached("safety", stale_guard=True),
    "refuted",
)
