"""The KSM conformance harness: it passes on a faithful system and catches broken ones."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from memoracle.ksm_conformance import CONTENT_POOL, KsmPair, Op, ksm_campaign, random_ops, run_ops
from spec.ksm_api import MMAP_BASE, PAGE_SIZE, KsmSnapshot, MappedPage
from spec.ksm_model import KsmModel
from spec.ksm_rules import counters_of, process_counters_of, validated_knob


class LeakyCow(KsmModel):
    """A COW that writes the shared frame: equal pages of other processes change too."""

    def write(self, pid: int, addr: int, data: bytes) -> None:
        page = addr - addr % PAGE_SIZE
        before = self.read(pid, page, PAGE_SIZE) if (pid, page) in self.views() else None
        super().write(pid, addr, data)
        for (other, where), content in self.views().items():
            if before is not None and other != pid and where == page and content == before:
                super().write(other, addr, data)


class WritableMerged(KsmModel):
    """Reports merged pages as writable (merging without write-protect)."""

    def snapshot(self) -> KsmSnapshot:
        snap = super().snapshot()
        pages = tuple(dataclasses.replace(p, writable=True) if p.ksm else p for p in snap.pages)
        return dataclasses.replace(snap, pages=pages)


class LyingCounters(KsmModel):
    """A pages_sharing counter off by one from the items."""

    def counters(self) -> dict[str, int]:
        counters = super().counters()
        counters["pages_sharing"] += 1
        return counters

    def snapshot(self) -> KsmSnapshot:
        return dataclasses.replace(super().snapshot(), counters=self.counters())


class NeverMerges(KsmModel):
    """A ksmd that never merges anything (every page private)."""

    def snapshot(self) -> KsmSnapshot:
        snap = super().snapshot()
        pages = tuple(MappedPage(p.pid, p.addr, 1000 + i, True, False, False) for i, p in enumerate(snap.pages))
        bare = KsmSnapshot((), (), pages, {}, {})
        return KsmSnapshot((), (), pages, self.counters(), process_counters_of(bare, dict.fromkeys(snap.process_counters)))

    def counters(self) -> dict[str, int]:
        return counters_of(KsmSnapshot((), (), (), {}, {}))

    def process_counters(self, pid: int) -> dict[str, int]:
        return process_counters_of(KsmSnapshot((), (), (), {}, {}), {pid: None})[pid]


class AcceptsRun3(KsmModel):
    """Accepts run = 3 (the kernel says EINVAL)."""

    def set_knob(self, name: str, value: object) -> None:
        if name == "run" and value == 3:
            return
        super().set_knob(name, value)


def _duplicates_then_write() -> list[Op]:
    return [
        Op("add_process"),
        Op("add_process"),
        Op("mmap", (1, 2)),
        Op("mmap", (2, 2)),
        Op("madvise", (1, MMAP_BASE, 2, "MERGEABLE")),
        Op("madvise", (2, MMAP_BASE, 2, "MERGEABLE")),
        Op("write", (1, MMAP_BASE, CONTENT_POOL[1])),
        Op("write", (2, MMAP_BASE, CONTENT_POOL[1])),
        Op("set_knob", ("smart_scan", False)),
        Op("set_knob", ("run", 1)),
        Op("full_scans", (2,)),
        Op("write", (1, MMAP_BASE + 7, b"!")),
        Op("set_knob", ("run", 3)),
    ]


def test_faithful_system_passes_the_scenario_and_campaigns() -> None:
    assert run_ops(KsmModel(), _duplicates_then_write()) is None
    for seed in range(3):
        assert ksm_campaign(seed, 60, KsmModel) is None


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (LeakyCow, "view of pid 2"),
        (WritableMerged, "is writable"),
        (LyingCounters, "pages_sharing"),
        (NeverMerges, "not merged"),
        (AcceptsRun3, "set_knob('run', 3)"),
    ],
)
def test_broken_systems_are_caught(broken: type[KsmModel], expected: str) -> None:
    report = run_ops(broken(), _duplicates_then_write())
    assert report is not None and expected in report, report


def test_campaign_is_deterministic_and_reports_reproduction() -> None:
    assert random_ops(7, 40) == random_ops(7, 40)
    report = ksm_campaign(1, 40, LeakyCow)
    assert report is None or "memoracle check --system ksm --seed 1" in report
    caught = [seed for seed in range(6) if ksm_campaign(seed, 60, WritableMerged) is not None]
    assert caught


def test_ebusy_judged_with_the_implementation_counter() -> None:
    pair = KsmPair(KsmModel())
    for op in _duplicates_then_write()[:-2]:
        pair.apply(op)
    assert pair.impl.counters()["pages_shared"] == 1
    pair.apply(Op("set_knob", ("max_page_sharing", 3)))  # both sides say EBUSY
    assert pair.impl.knobs().max_page_sharing == 256
    assert validated_knob(pair.impl.knobs(), "max_page_sharing", 256, 1) == 256


class KsmMachine(RuleBasedStateMachine):
    """Processes, writes from a small content pool, ksmd, madvise, knobs — impl vs spec."""

    factory = KsmModel

    @initialize()
    def start(self) -> None:
        self.pair = KsmPair(self.factory())
        for op in (
            Op("add_process"),
            Op("add_process"),
            Op("mmap", (1, 3)),
            Op("mmap", (2, 3)),
            Op("madvise", (1, MMAP_BASE, 3, "MERGEABLE")),
            Op("set_process_merge", (2, True)),
            Op("set_knob", ("smart_scan", False)),
            Op("set_knob", ("run", 1)),
        ):
            self.pair.apply(op)

    @rule(pid=st.sampled_from([1, 2]), page=st.integers(0, 2), content=st.sampled_from(CONTENT_POOL))
    def write_page(self, pid: int, page: int, content: bytes) -> None:
        self.pair.apply(Op("write", (pid, MMAP_BASE + page * PAGE_SIZE, content)))

    @rule(pid=st.sampled_from([1, 2]), offset=st.integers(0, 3 * PAGE_SIZE - 1), value=st.integers(0, 255))
    def write_byte(self, pid: int, offset: int, value: int) -> None:
        self.pair.apply(Op("write", (pid, MMAP_BASE + offset, bytes([value]))))

    @rule(count=st.integers(1, 3))
    def scans(self, count: int) -> None:
        self.pair.apply(Op("full_scans", (count,)))

    @rule(ms=st.sampled_from([20, 60]))
    def ksmd(self, ms: int) -> None:
        self.pair.apply(Op("run_ksmd", (ms,)))

    @rule(pid=st.sampled_from([1, 2]), page=st.integers(0, 2), advice=st.sampled_from(["MERGEABLE", "UNMERGEABLE"]))
    def madvise(self, pid: int, page: int, advice: str) -> None:
        self.pair.apply(Op("madvise", (pid, MMAP_BASE + page * PAGE_SIZE, 1, advice)))

    @rule(pid=st.sampled_from([1, 2]), enabled=st.booleans())
    def process_merge(self, pid: int, enabled: bool) -> None:
        self.pair.apply(Op("set_process_merge", (pid, enabled)))

    @rule(run=st.sampled_from([0, 1, 2, 3]))
    def run(self, run: int) -> None:
        self.pair.apply(Op("set_knob", ("run", run)))
        if run != 1:
            self.pair.apply(Op("set_knob", ("run", 1)))

    @rule(name=st.sampled_from(["max_page_sharing"]), value=st.sampled_from([1, 2, 3, 256]))
    def sharing(self, name: str, value: int) -> None:
        self.pair.apply(Op("set_knob", (name, value)))

    @rule(name=st.sampled_from(["use_zero_pages", "lookahead", "skip_page_cache", "exclusive_host_cache"]), on=st.booleans())
    def optimisation(self, name: str, on: bool) -> None:
        self.pair.apply(Op("set_knob", (name, on)))

    @rule()
    def settle(self) -> None:
        self.pair.apply(Op("full_scans", (3,)))
        assert self.pair.model.quiet()

    @invariant()
    def checked(self) -> None:
        if hasattr(self, "pair"):
            self.pair.check()


TestKsmMachine = KsmMachine.TestCase
