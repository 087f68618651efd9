"""The MMU self-check of ``memoracle check`` passes on the MMU and catches broken ones."""

from __future__ import annotations

import pytest

from impl import mmu_emu
from memoracle.machine.mmu_check import mmu_campaign


def test_the_mmu_passes() -> None:
    for seed in range(3):
        assert mmu_campaign(seed, 300) is None


def test_protect_without_invalidation_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = mmu_emu.AddressSpace.protect

    def protect_keeping_tlb(self: mmu_emu.AddressSpace, va: int, writable: bool) -> None:
        tlb = dict(self._tlb)
        original(self, va, writable)
        self._tlb.update(tlb)  # the forgotten shootdown

    monkeypatch.setattr(mmu_emu.AddressSpace, "protect", protect_keeping_tlb)
    report = mmu_campaign(0, 300)
    assert report is not None and "seed 0" in report


def test_a_walk_that_ignores_the_writable_bit_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = mmu_emu.AddressSpace.map

    def map_always_writable(self: mmu_emu.AddressSpace, va: int, frame: int, flags: int = 6, **kw: int) -> None:
        original(self, va, frame, flags | 2, **kw)

    monkeypatch.setattr(mmu_emu.AddressSpace, "map", map_always_writable)
    report = mmu_campaign(0, 300)
    assert report is not None and ("read-only" in report or "writable" in report)
