"""The ring's direct calls against the bounded-queue spec (:mod:`memoracle.spsc.direct_check`):
every variant and place agrees, each direct-path mutant is caught there and nowhere in the
interleaving explorer's programs."""

from __future__ import annotations

import pytest
from hypothesis import settings

from impl.cpu_emu import Model
from memoracle.spsc.checks import SPSC_CHECKS
from memoracle.spsc.direct_check import CAPACITIES, DIRECT_MUTANTS, REFUSED, direct_campaign
from memoracle.spsc.interleave import Scenario, explore
from spec.spsc_model import Criterion


def test_every_variant_and_place_agrees_with_the_spec() -> None:
    steps = max(60, settings().max_examples)
    calls, problem = direct_campaign(1, steps)
    assert problem is None
    assert calls == 2 * 2 * len(CAPACITIES) * 2 * steps + len(REFUSED)


@pytest.mark.parametrize(("name", "where"), [("cached_head_never_refreshed", "variant=cached in dram"),
                                             ("program_path_skips_publish", "in scm")])  # fmt: skip
def test_each_direct_mutant_is_caught_on_its_path(name: str, where: str) -> None:
    _, problem = direct_campaign(0, 60, DIRECT_MUTANTS[name])
    assert problem is not None and where in problem


@pytest.mark.parametrize("name", list(DIRECT_MUTANTS))
def test_the_explorer_cannot_see_the_direct_mutants(name: str) -> None:
    for variant in ("lamport", "cached"):
        result = explore(Scenario(Model.SC, variant=variant, ring=DIRECT_MUTANTS[name], capacity=1, pushes=2, pops=2),
                         Criterion.STRICT)  # fmt: skip
        assert result.ok


def test_the_check_passes() -> None:
    check = next(c for c in SPSC_CHECKS if c.name == "direct")
    assert check.run(0).ok
