"""Sphinx's documented refusals (:mod:`memoracle.sphinx.guards`)."""

from __future__ import annotations

from memoracle.sphinx.checks import SPHINX_CHECKS
from memoracle.sphinx.guards import GUARD_MUTANTS, PROBES, sphinx_guards


def test_every_refusal_is_made_and_changes_nothing() -> None:
    assert sphinx_guards() == (len(PROBES), None)


def test_a_clock_that_moves_back_is_caught() -> None:
    _, problem = sphinx_guards(GUARD_MUTANTS["backward_clock"])
    assert problem is not None and problem.startswith("the virtual clock moved back: accepted")


def test_the_check_passes() -> None:
    check = next(c for c in SPHINX_CHECKS if c.name == "guards")
    assert check.run(0).ok
