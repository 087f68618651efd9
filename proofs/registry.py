"""The proof framework: theorems, their results, and the registry ``python -m proofs`` runs.

A :class:`Theorem` is a named claim with a one-line statement, a ``check`` that asks a
solver about it, and what it is *expected* to give: ``"proved"`` for a real theorem,
``"refuted"`` for a mutant (a deliberately broken variant of the protocol that the
theorem must reject, so that we have seen the theorem fail). :meth:`Theorem.prove`
runs the check, times it and returns a :class:`ProofResult`.

The statuses mean exactly this, and nothing weaker:

- ``"proved"``: the solver answered *unsat* for the negation of the claim.
- ``"refuted"``: the solver found a model of the negation, i.e. a counterexample,
  which is decoded into text a person can read.
- ``"unknown"``: the solver gave up (timeout, resource limit, incompleteness). An
  unknown is never reported as proved; it does not match either expectation.

Modules that state theorems call :func:`register` at import time; ``proofs/__init__.py``
imports them, so ``import proofs`` fills :data:`THEOREMS`. This module does not import
Z3, so tools that only list or report theorems stay cheap.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Mapping

Status = Literal["proved", "refuted", "unknown"]
Expectation = Literal["proved", "refuted"]

#: Default per-theorem solver budget. The page-table theorems take well under a second.
DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    """What one solver call said about a claim (before timing and expectations).

    ``counterexample`` is the decoded model for a refutation; ``witness`` holds the
    same model's key values as integers (for tools and tests); ``note`` says why the
    solver gave up, for an unknown.
    """

    status: Status
    counterexample: str | None = None
    witness: Mapping[str, int] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class ProofResult:
    """The outcome of proving one theorem.

    ``ok`` is true exactly when ``status == expect``: a theorem proved, or a mutant
    refuted. An ``"unknown"`` is never ok.
    """

    name: str
    statement: str
    expect: Expectation
    status: Status
    seconds: float
    counterexample: str | None = None
    witness: Mapping[str, int] = field(default_factory=dict)
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the result is the expected one."""
        return self.status == self.expect

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view: name, statement, expect, status, ok, seconds, counterexample."""
        return {
            "name": self.name,
            "statement": self.statement,
            "expect": self.expect,
            "status": self.status,
            "ok": self.ok,
            "seconds": round(self.seconds, 6),
            "counterexample": self.counterexample,
            "witness": dict(self.witness),
            "note": self.note,
        }


@dataclass(frozen=True)
class Theorem:
    """A named claim and how to check it.

    ``check(timeout_ms)`` asks the solver about the claim within the budget and returns
    a :class:`Verdict`; ``expect`` is ``"proved"`` for a theorem and ``"refuted"`` for a
    mutant.
    """

    name: str
    statement: str
    check: Callable[[int], Verdict]
    expect: Expectation = "proved"

    def prove(self, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> ProofResult:
        """Run the check and return its timed result."""
        started = time.perf_counter()
        verdict = self.check(max(1, int(timeout_seconds * 1000)))
        seconds = time.perf_counter() - started
        return ProofResult(
            name=self.name,
            statement=self.statement,
            expect=self.expect,
            status=verdict.status,
            seconds=seconds,
            counterexample=verdict.counterexample,
            witness=verdict.witness,
            note=verdict.note,
        )


#: Every registered theorem, in registration order.
THEOREMS: list[Theorem] = []


def register(theorem: Theorem) -> Theorem:
    """Add ``theorem`` to :data:`THEOREMS`; names must be unique. Returns the theorem."""
    if any(existing.name == theorem.name for existing in THEOREMS):
        raise ValueError(f"a theorem named {theorem.name!r} is already registered")
    THEOREMS.append(theorem)
    return theorem


def select_theorems(names: Iterable[str] | None = None) -> list[Theorem]:
    """The registered theorems whose name matches one of ``names`` (shell-style patterns).

    ``None`` selects every theorem. A pattern that matches nothing raises
    :class:`LookupError`, so that a typo never passes as "nothing to prove".
    """
    if names is None:
        return list(THEOREMS)
    patterns = list(names)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(theorem.name, pattern) for theorem in THEOREMS):
            raise LookupError(f"no theorem matches {pattern!r}")
    return [
        theorem
        for theorem in THEOREMS
        if any(fnmatch.fnmatchcase(theorem.name, pattern) for pattern in patterns)
    ]


def prove_all(
    names: Iterable[str] | None = None,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    on_result: Callable[[ProofResult], None] | None = None,
) -> list[ProofResult]:
    """Prove the selected theorems (all of them by default), in registration order.

    ``names`` are shell-style patterns (see :func:`select_theorems`); ``on_result`` is
    called after each theorem (for progress display).
    """
    results: list[ProofResult] = []
    for theorem in select_theorems(names):
        result = theorem.prove(timeout_seconds)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
