"""The SCM emulator's sampled crash images and its reboot into one
(:func:`memoracle.machine.persistency_check.check_sample`): judged by the spec, and the
sampling mutants caught there but not by the full comparison."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings

from impl.scm_emu import ScmEmu
from memoracle.machine.checks import MACHINE_CHECKS
from memoracle.machine.persistency_check import SAMPLE_LIMIT, campaign, execute, random_program, sampled_campaign
from memoracle.machine.scm_mutants import SAMPLING_MUTANTS
from spec.persistency import PersistMode


@pytest.mark.parametrize("mode", list(PersistMode))
def test_samples_are_allowed_and_reboots_exact(mode: PersistMode) -> None:
    programs = max(60, settings().max_examples)
    assert sampled_campaign(5, programs, mode) == (programs, None)


def test_most_programs_are_sampled() -> None:
    """The judged programs are those with more images than the limit: most of them."""
    rng, sampled = random.Random("sampled 0"), 0
    for _ in range(30):
        emu = ScmEmu(192, PersistMode.ADR)
        execute(emu, random_program(rng, 192, max_writes=12))
        sampled += emu.count_images() > SAMPLE_LIMIT
    assert sampled >= 15


@pytest.mark.parametrize("name", list(SAMPLING_MUTANTS))
def test_sampling_mutants_are_caught_only_by_the_sampled_check(name: str) -> None:
    mutant = SAMPLING_MUTANTS[name]
    assert campaign(0, 300, PersistMode.ADR, mutant) is None
    _, problem = sampled_campaign(0, 30, PersistMode.ADR, mutant)
    assert problem is not None and "reboot" in problem


def test_the_check_passes() -> None:
    check = next(c for c in MACHINE_CHECKS if c.name == "persistency-sampled")
    assert all(check.run(seed).ok for seed in check.seeds_of(0))
