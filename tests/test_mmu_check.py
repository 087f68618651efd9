"""The MMU self-check of ``memoracle check`` passes on the MMU and catches broken ones."""

from __future__ import annotations

import pytest

from impl import mmu_emu
from memoracle.machine.mmu_check import mmu_campaign


def test_the_mmu_passes() -> None:
    for seed in range(3):
        assert mmu_campaign(seed, 300) is None


def test_stores_through_the_1_gib_page_keep_off_the_modelled_frames() -> None:
    # The check once stored through its 1 GiB page onto the SCM frames the main steps
    # map, without telling their model: a later load "differed" (check seed
    # 263403470022054 ran this one, failing at step 88).
    assert mmu_campaign(1053613880088218, 300) is None


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


# Each part of the extension catches a broken MMU that the plain steps (user pages of
# 4 KiB, mapped and read back) pass on the same seeds: fault probes, large pages, the
# reserved page-size bit, demand zero.
def _walk_ignoring_user_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    original = mmu_emu.AddressSpace._walk

    def walk(self: mmu_emu.AddressSpace, va: int, write: bool, user: bool, update: bool) -> object:
        return original(self, va, write, False, update)  # every access checked as the kernel's

    monkeypatch.setattr(mmu_emu.AddressSpace, "_walk", walk)


def _large_pages_never_invalidated(monkeypatch: pytest.MonkeyPatch) -> None:
    def drop_4k_only(self: mmu_emu.AddressSpace, va: int) -> None:
        self._tlb.pop(va >> 12, None)  # the 2 MiB and 1 GiB entries stay

    monkeypatch.setattr(mmu_emu.AddressSpace, "_drop_tlb", drop_4k_only)


def _page_size_bit_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmu_emu, "PS", 0)  # no leaf above the PT level, no reserved bit


def _one_shared_zero_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    shared: dict[int, int] = {}

    def handler(space: mmu_emu.AddressSpace, vma: mmu_emu.Vma, fault: mmu_emu.PageFault) -> bool:
        if fault.protection or not vma.flags & mmu_emu.VmaFlags.ANON:
            return False
        frame = shared.setdefault(id(space), space.machine.alloc_frame())
        space.map(fault.va & ~(mmu_emu.PAGE_SIZE - 1), frame, mmu_emu.US | mmu_emu.RW)
        return True

    monkeypatch.setattr(mmu_emu, "demand_zero_handler", handler)


@pytest.mark.parametrize(
    "breaks",
    [_walk_ignoring_user_mode, _large_pages_never_invalidated, _page_size_bit_ignored, _one_shared_zero_frame],
)
def test_each_extension_catches_a_broken_mmu_the_plain_steps_miss(
    monkeypatch: pytest.MonkeyPatch, breaks: object
) -> None:
    assert callable(breaks)
    breaks(monkeypatch)
    seeds = range(4)  # memoracle check's seeds at base seed 0
    assert all(mmu_campaign(seed, 100, extended=False) is None for seed in seeds)
    assert any(mmu_campaign(seed, 100) is not None for seed in seeds)


def _stores_in_one_physical_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store is written where its first byte lands, as if the next page's frame
    followed in physical memory."""

    def store(self: mmu_emu.AddressSpace, va: int, data: bytes, user: bool = True, nt: bool = False) -> None:
        self.machine.write(self.translate(va, write=True, user=user), bytes(data), nt)

    monkeypatch.setattr(mmu_emu.AddressSpace, "_store", store)


def _write_backs_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``clwb``/``clflushopt``/``clflush`` through the MMU never reach the SCM."""
    monkeypatch.setattr(mmu_emu.AddressSpace, "_cache_op", lambda self, va, op: None)


@pytest.mark.parametrize("breaks", [_stores_in_one_physical_run, _write_backs_ignored])
def test_two_page_accesses_catch_what_the_other_steps_miss(monkeypatch: pytest.MonkeyPatch, breaks: object) -> None:
    """Only the accesses across two pages (and write-backs through the MMU) see these."""
    from memoracle.machine import mmu_check

    assert callable(breaks)
    breaks(monkeypatch)
    seeds = range(4)
    original = mmu_check.spanning_step
    monkeypatch.setattr(mmu_check, "spanning_step", lambda *args: None)
    assert all(mmu_campaign(seed, 100) is None for seed in seeds)
    monkeypatch.setattr(mmu_check, "spanning_step", original)
    assert any(mmu_campaign(seed, 100) is not None for seed in seeds)
