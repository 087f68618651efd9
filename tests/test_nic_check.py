"""The NIC under reconfiguration (:mod:`memoracle.machine.nic_check`): the NIC passes in
both IRQ modes, and each broken NIC is caught."""

from __future__ import annotations

import pytest
from hypothesis import settings

from memoracle.machine.checks import MACHINE_CHECKS
from memoracle.machine.nic_check import NIC_MUTANTS, nic_campaign


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_nic_keeps_its_guarantees(seed: int) -> None:
    assert nic_campaign(seed, max(300, 3 * settings().max_examples)) is None


@pytest.mark.parametrize(("name", "says"), [("closed_flows_delivered", "closed flow"),
                                            ("indirection_not_applied", "new indirection table")])  # fmt: skip
def test_each_broken_nic_is_caught(name: str, says: str) -> None:
    problem = nic_campaign(0, 300, NIC_MUTANTS[name])
    assert problem is not None and says in problem


def test_the_check_passes_on_both_modes() -> None:
    check = next(c for c in MACHINE_CHECKS if c.name == "nic")
    assert [check.run(seed).ok for seed in check.seeds_of(0)] == [True, True]
