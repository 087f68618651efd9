"""Litmus tests of the emulated cores (:mod:`memoracle.machine.litmus_check`): the
outcomes are each model's, and the broken cores are caught — the one without store
forwarding only here (the SPSC explorer's programs never read their own stores)."""

from __future__ import annotations

import pytest

from impl.cpu_emu import Model
from memoracle.machine.checks import MACHINE_CHECKS
from memoracle.machine.litmus_check import CPU_MUTANTS, LITMUS, litmus_campaign, outcomes
from memoracle.spsc.checks import explorer_cells


def test_every_outcome_is_the_models() -> None:
    assert litmus_campaign() == (len(LITMUS) * len(Model), None)


def test_store_buffering_shows_only_with_store_buffers() -> None:
    threads = LITMUS["SB"][0]
    assert (0, 0) not in outcomes(threads, Model.SC)[0]
    assert (0, 0) in outcomes(threads, Model.TSO)[0]


@pytest.mark.parametrize(("name", "test"), [("no_store_forwarding", "SF under tso"), ("tso_drains_any_entry", "MP under tso")])
def test_each_broken_core_is_caught(name: str, test: str) -> None:
    _, problem = litmus_campaign(CPU_MUTANTS[name])
    assert problem is not None and problem.startswith(test)


def test_the_spsc_explorer_cannot_see_a_core_without_store_forwarding(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoracle.spsc import interleave

    monkeypatch.setattr(interleave, "CpuEmu", CPU_MUTANTS["no_store_forwarding"])
    assert explorer_cells()[1] is None


def test_the_check_passes() -> None:
    check = next(c for c in MACHINE_CHECKS if c.name == "litmus")
    outcome = check.run(0)
    assert outcome.ok and outcome.count == len(LITMUS) * len(Model)
