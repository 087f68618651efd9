"""The KSM conformance harness: it passes on a faithful system and catches broken ones."""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from memoracle.ksm.conformance import CONTENT_POOL, KsmPair, Mismatch, Op, ksm_campaign, random_ops, run_ops
from impl.ksm import Ksm
from spec.ksm_api import MMAP_BASE, PAGE_SIZE, GuestKind, KsmSnapshot, KsmSystem, MappedPage
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


class LyingFullScans(KsmModel):
    """Counts one full scan more than were asked for (as if run = 2 did not reset it)."""

    def counters(self) -> dict[str, int]:
        counters = super().counters()
        counters["full_scans"] += 1
        return counters

    def snapshot(self) -> KsmSnapshot:
        return dataclasses.replace(super().snapshot(), counters=self.counters())


class WritableEverywhere(KsmModel):
    """Reports every private page writable, also in read-only mappings."""

    def snapshot(self) -> KsmSnapshot:
        snap = super().snapshot()
        pages = tuple(p if p.ksm or p.zero else dataclasses.replace(p, writable=True) for p in snap.pages)
        return dataclasses.replace(snap, pages=pages)


class DropsTheCache(KsmModel):
    """Drops every host cache page at once, scanned or not."""

    def host_cache(self) -> dict[int, bytes]:
        return {}


def _protect_and_cache() -> list[Op]:
    return [
        Op("add_process"),
        Op("mmap", (1, 2)),
        Op("madvise", (1, MMAP_BASE, 2, "MERGEABLE")),
        Op("host_cache_insert", (b"host-only",)),
        Op("write", (1, MMAP_BASE, CONTENT_POOL[1])),
        Op("write", (1, MMAP_BASE + PAGE_SIZE, CONTENT_POOL[2])),
        Op("mprotect", (1, MMAP_BASE + PAGE_SIZE, 1), (("readable", True), ("writable", False))),
        Op("set_knob", ("run", 1)),
        Op("full_scans", (1,)),
    ]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (LyingFullScans, "full_scans = 1, 0 asked for since run = 2"),
        (WritableEverywhere, "is writable in a mapping without write permission"),
        (DropsTheCache, "host cache pages [0] dropped though no scanned page had their content"),
    ],
)
def test_broken_histories_protections_and_caches_are_caught(broken: type[KsmModel], expected: str) -> None:
    assert run_ops(KsmModel(), _protect_and_cache()) is None
    assert run_ops(Ksm(), _protect_and_cache()) is None
    report = run_ops(broken(), _protect_and_cache())
    assert report is not None and expected in report, report


def test_the_first_scan_merges_nothing() -> None:
    pair = KsmPair(Ksm())
    for op in _duplicates_then_write()[:-3] + [Op("set_knob", ("run", 1)), Op("full_scans", (1,))]:
        pair.apply(op)
    assert pair.model.after_first_scan()
    counters = pair.impl.counters()
    assert (counters["pages_shared"], counters["pages_volatile"]) == (0, 2)
    pair.apply(Op("full_scans", (1,)))
    assert not pair.model.after_first_scan() and pair.impl.counters()["pages_shared"] == 1


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
    assert report is not None and "view of pid" in report, "seed 1 lets the leaky COW pass"
    assert report.endswith("\nreproduce: memoracle ksm campaign --seed 1 --runs 1 --steps 40"), report
    assert ksm_campaign(1, 40, LeakyCow) == report
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

    factory: Callable[[], KsmSystem] = Ksm

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

    @rule(pid=st.sampled_from([1, 2]), page=st.integers(0, 2), content=st.sampled_from(CONTENT_POOL[:2]))
    def write_and_pin(self, pid: int, page: int, content: bytes) -> None:
        self.pair.apply(Op("write", (pid, MMAP_BASE + page * PAGE_SIZE, content)))
        self.pair.apply(Op("pin", (pid, MMAP_BASE + page * PAGE_SIZE)))

    @rule(pid=st.sampled_from([1, 2]), page=st.integers(0, 2))
    def unpin(self, pid: int, page: int) -> None:
        self.pair.apply(Op("unpin", (pid, MMAP_BASE + page * PAGE_SIZE)))

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
        # Quiet, unless nothing is registered: then ksmd dropped every process and its
        # list is empty, so no scan completes (and nothing is left to merge).
        model = self.pair.model
        assert model.quiet() or not model.candidates()

    @invariant()
    def checked(self) -> None:
        if hasattr(self, "pair"):
            self.pair.check()


TestKsmMachine = KsmMachine.TestCase
TestKsmMachine.settings = settings(max_examples=max(50, settings.default.max_examples), stateful_step_count=40)


@pytest.mark.parametrize("broken", [LeakyCow, WritableMerged, LyingCounters, NeverMerges, AcceptsRun3])
def test_the_machine_catches_broken_systems(broken: type[KsmModel]) -> None:
    """The machine that passes on :class:`Ksm` finds each broken system by itself.

    (It replaces a run with the model on both sides, whose view comparisons compared
    the model with itself; what that run could still catch, the model's snapshots
    breaking :mod:`spec.ksm_rules`, ``test_faithful_system_passes_the_scenario_and_campaigns``
    checks.)"""
    machine = type(f"KsmMachine_{broken.__name__}", (KsmMachine,), {"factory": broken})
    hunt = settings(
        phases=[Phase.generate],  # finding it is the point; skip shrinking
        max_examples=max(200, settings.default.max_examples),
        stateful_step_count=40,
        database=None,
    )
    with pytest.raises(Mismatch):
        run_state_machine_as_test(machine, settings=hunt)


def test_the_machine_catches_a_ksmd_that_merges_pinned_pages() -> None:
    from memoracle.ksm.mutants import IgnoresPinsKsm

    machine = type("KsmMachine_IgnoresPins", (KsmMachine,), {"factory": IgnoresPinsKsm})
    hunt = settings(
        phases=[Phase.generate],
        max_examples=max(200, settings.default.max_examples),
        stateful_step_count=40,
        database=None,
    )
    with pytest.raises(Mismatch, match="pinned page"):
        run_state_machine_as_test(machine, settings=hunt)


# ---------------------------------------------------------------- regressions
# Each sequence below once made the implementation and the spec disagree; the comment
# says which side was wrong (judged by mm/ksm.c) and what was fixed.

B = MMAP_BASE
P = PAGE_SIZE


def _passes(ops: list[Op]) -> None:
    report = run_ops(Ksm(), ops)
    assert report is None, report


def test_smart_scan_after_run_ksmd_is_not_young() -> None:
    # Model: run_ksmd completed five full scans it did not count, so smart scan had
    # already skipped the lone page; the model claimed it still had to be unshared.
    _passes([
        Op("add_process"), Op("mmap", (1, 3)), Op("madvise", (1, B, 3, "MERGEABLE")),
        Op("set_knob", ("run", 1)), Op("write", (1, B + 569, b"0")),
        Op("run_ksmd", (100,)), Op("full_scans", (3,)),
    ])  # fmt: skip


def test_race_store_starts_a_new_quiet_period() -> None:
    # Harness: the racing store landed inside the implementation's full_scans(3) but
    # the model counted all three scans as quiet after it.
    _passes([
        Op("add_process"), Op("mmap", (1, 6)), Op("madvise", (1, B, 6, "MERGEABLE")),
        Op("set_knob", ("smart_scan", False)),
        Op("arm_race", ("after_write_protect", b"\x86")),
        Op("write", (1, B, CONTENT_POOL[3])), Op("write", (1, B + P, CONTENT_POOL[3])),
        Op("set_knob", ("run", 1)), Op("full_scans", (3,)),
    ])  # fmt: skip


def test_race_with_the_first_half_of_a_merge_copies_the_page() -> None:
    # Implementation: a store racing with try_to_merge_one_page(page, NULL) reused the
    # page (made it writable again) just before it became a KSM page; the kernel holds
    # the page lock there, so the fault copies instead.
    _passes([
        Op("add_process"), Op("add_process"), Op("add_process"),
        Op("mmap", (2, 5)), Op("madvise", (2, B, 5, "MERGEABLE")),
        Op("mmap", (3, 4)), Op("set_process_merge", (3, True)),
        Op("arm_race", ("after_write_protect", b"A")),
        Op("write", (2, B + 4 * P, CONTENT_POOL[1])), Op("write", (3, B, CONTENT_POOL[1])),
        Op("set_knob", ("run", 1)), Op("full_scans", (3,)),
    ])  # fmt: skip


def test_a_skipped_page_cache_page_is_unshared_so_max_page_sharing_may_change() -> None:
    # Once, a page-cache page merged before skipping began stayed mapped to its KSM page
    # with no rmap item (pages_shared 0, a KSM page mapped: EBUSY). A skipped page is
    # now unshared, as the model's "never merged" says, so the knob may change.
    _passes([
        Op("add_process"), Op("mmap", (1, 5), (("kinds", (GuestKind.PAGE_CACHE,) * 5),)),
        Op("madvise", (1, B, 5, "MERGEABLE")),
        Op("write", (1, B + 3 * P, CONTENT_POOL[1])), Op("write", (1, B + 2 * P, CONTENT_POOL[1])),
        Op("set_knob", ("run", 1)), Op("full_scans", (3,)),
        Op("set_knob", ("skip_page_cache", True)), Op("full_scans", (3,)),
        Op("set_knob", ("max_page_sharing", 2)),
    ])  # fmt: skip


def test_a_page_skipped_then_scanned_again_respects_max_page_sharing() -> None:
    # Impl: a page-cache page merged before skip_page_cache was turned on stayed mapped
    # to its KSM page when its rmap item went; another page took its place on the node,
    # and once skipping stopped, the scan found a KSM page with no rmap item (the
    # kernel's forked-KSM-page case) and hung it on the full node: 3 sharers of a
    # max_page_sharing of 2 (found by `memoracle check --seed 987654321`).
    pages = (GuestKind.PAGE_CACHE, GuestKind.ANONYMOUS, GuestKind.ANONYMOUS)
    ops = [
        Op("add_process"), Op("set_knob", ("max_page_sharing", 2)),
        Op("mmap", (1, 3), (("kinds", pages),)), Op("madvise", (1, B, 3, "MERGEABLE")),
        Op("write", (1, B, CONTENT_POOL[1])), Op("write", (1, B + P, CONTENT_POOL[1])),
        Op("set_knob", ("run", 1)), Op("full_scans", (3,)),
        Op("set_knob", ("skip_page_cache", True)), Op("write", (1, B + 2 * P, CONTENT_POOL[1])),
        Op("full_scans", (3,)),
        Op("set_knob", ("skip_page_cache", False)), Op("full_scans", (3,)),
    ]  # fmt: skip
    _passes(ops)
    ksm = Ksm()
    assert run_ops(ksm, ops[:11]) is None
    skipped = next(page for page in ksm.snapshot().pages if page.addr == B)
    assert not skipped.ksm, "a skipped page-cache page still maps a KSM page"
    _passes(random_ops(39506172878, 80))


def test_process_merge_twice_keeps_unmergeable_ranges() -> None:
    # Model: prctl(PR_SET_MEMORY_MERGE, 1) when already on re-registered a range that
    # madvise(UNMERGEABLE) had removed; ksm_enable_merge_any returns early.
    _passes([
        Op("add_process"), Op("mmap", (1, 5)), Op("set_process_merge", (1, True)),
        Op("set_knob", ("smart_scan", False)),
        Op("write", (1, B + P, CONTENT_POOL[0])), Op("madvise", (1, B + 3 * P, 1, "UNMERGEABLE")),
        Op("set_process_merge", (1, True)), Op("write", (1, B + 3 * P, CONTENT_POOL[0])),
        Op("set_knob", ("run", 1)), Op("full_scans", (3,)),
    ])  # fmt: skip


def test_host_cache_pages_dropped_earlier_stay_dropped() -> None:
    # Model: it predicted the settled cache from every page ever inserted, though the
    # page was dropped by an earlier scan while its content was in a tree.
    _passes([
        Op("add_process"), Op("mmap", (1, 4)), Op("madvise", (1, B, 4, "MERGEABLE")),
        Op("host_cache_insert", (CONTENT_POOL[1],)), Op("write", (1, B + 2 * P, CONTENT_POOL[1])),
        Op("set_knob", ("run", 1)), Op("set_knob", ("exclusive_host_cache", True)),
        Op("full_scans", (2,)), Op("set_knob", ("run", 2)),
        Op("write", (1, B + 2 * P, CONTENT_POOL[2])), Op("set_knob", ("run", 1)), Op("full_scans", (3,)),
    ])  # fmt: skip


def test_zero_page_items_after_run_ksmd_are_not_predicted() -> None:
    # Model: run_ksmd had begun a scan, so full_scans(2) completed a third and the
    # zero-merged page's rmap item was already freed; the model predicted it.
    _passes([
        Op("add_process"), Op("mmap", (1, 2)), Op("madvise", (1, B, 2, "MERGEABLE")),
        Op("set_knob", ("use_zero_pages", True)), Op("set_knob", ("run", 1)),
        Op("write", (1, B + P, CONTENT_POOL[0])), Op("run_ksmd", (40,)), Op("full_scans", (2,)),
    ])  # fmt: skip


def test_zero_page_is_no_ksm_page_with_room() -> None:
    # Spec: completeness counted the shared zero page (merged while use_zero_pages was
    # on) as a KSM page a lone all-zero page could still join.
    _passes([
        Op("add_process"), Op("mmap", (1, 3)), Op("madvise", (1, B, 3, "MERGEABLE")),
        Op("set_knob", ("smart_scan", False)), Op("set_knob", ("use_zero_pages", True)),
        Op("write", (1, B, CONTENT_POOL[0])), Op("write", (1, B + P, CONTENT_POOL[0])),
        Op("set_knob", ("run", 1)), Op("full_scans", (3,)), Op("set_knob", ("use_zero_pages", False)),
        Op("write", (1, B + 2 * P, CONTENT_POOL[0])), Op("full_scans", (3,)),
    ])  # fmt: skip


def test_empty_chain_counts_until_ksmd_walks_it() -> None:
    # Spec: a stable-node chain whose duplicates were all removed stays in the tree and
    # in stable_node_chains (as in the kernel) but no node view showed it.
    _passes([
        Op("add_process"), Op("mmap", (1, 5)), Op("madvise", (1, B, 5, "MERGEABLE")),
        Op("write", (1, B + P, CONTENT_POOL[1])), Op("set_knob", ("max_page_sharing", 2)),
        Op("set_knob", ("run", 1)),
        Op("write", (1, B, CONTENT_POOL[1])), Op("write", (1, B + 3 * P, CONTENT_POOL[1])),
        Op("write", (1, B + 2 * P, CONTENT_POOL[1])), Op("full_scans", (2,)),
        Op("set_process_merge", (1, False)),
    ])  # fmt: skip


def test_full_scans_reset_at_run_2() -> None:
    # Model: it counted every scan; the kernel resets seqnr in run = 2.
    pair = KsmPair(Ksm())
    for op in _duplicates_then_write()[:-1] + [Op("set_knob", ("run", 2)), Op("set_knob", ("run", 1)), Op("full_scans", (1,))]:
        pair.apply(op)
    assert pair.impl.counters()["full_scans"] == pair.model.counters()["full_scans"] == 1


def test_lookahead_merges_into_an_existing_ksm_page_with_room() -> None:
    # Implementation: a lookahead hit on an unstable-tree partner made a new chained
    # KSM page where stock ksmd merges into the existing page with room. The room
    # appears mid-scan: c's unmerged page keeps its rmap item (so c's KSM page stays
    # full when a's second page is scanned) until ksmd passes c, just before b.
    def run(lookahead: bool) -> dict[str, int]:
        ksm = Ksm()
        a, c, b = ksm.add_process(), ksm.add_process(), ksm.add_process()
        for pid in (a, c, b):
            ksm.madvise(pid, ksm.mmap(pid, 2), 2, "MERGEABLE")
        ksm.write(c, B, CONTENT_POOL[2])
        ksm.write(c, B + P, CONTENT_POOL[2])
        for name, value in (("smart_scan", False), ("lookahead", lookahead), ("max_page_sharing", 2), ("run", 1)):
            ksm.set_knob(name, value)
        ksm.full_scans(2)  # c's pair merges: a full KSM page
        for pid in (a, b):
            ksm.write(pid, B, CONTENT_POOL[1])
            ksm.write(pid, B + P, CONTENT_POOL[2])
        ksm.full_scans(1)  # a's and b's pages: checksums stored
        ksm.madvise(c, B + P, 1, "UNMERGEABLE")  # its rmap item stays until c's pass
        ksm.full_scans(1)  # a's pages go unstable; c's pass frees the item; b's merge
        ksm.check_invariants()
        return ksm.counters()

    stock, ahead = run(False), run(True)
    assert ahead == stock
    assert (stock["pages_shared"], stock["pages_sharing"], stock["stable_node_chains"]) == (2, 2, 0)


def test_unstable_tree_order_is_judged_only_without_stores() -> None:
    # Invariant checker: a page of the unstable tree changed by a racing store and then
    # written back looked unchanged (same checksum), and the tree "out of order".
    _passes([
        Op("add_process"), Op("mmap", (1, 4)), Op("madvise", (1, B, 4, "MERGEABLE")),
        Op("arm_race", ("after_compare", b"m")),
        Op("write", (1, B + 2 * P, CONTENT_POOL[1])), Op("write", (1, B + P, CONTENT_POOL[1])),
        Op("write", (1, B + 3 * P, CONTENT_POOL[1])), Op("set_knob", ("run", 1)),
        Op("run_ksmd", (40,)), Op("write", (1, B + P, CONTENT_POOL[1])),
    ])  # fmt: skip


def test_max_page_sharing_is_busy_while_ksm_pages_are_mapped() -> None:
    from spec.ksm_api import KnobError, KsmKnobs

    with pytest.raises(KnobError) as busy:
        validated_knob(KsmKnobs(), "max_page_sharing", 3, 0, ksm_pages_mapped=True)
    assert busy.value.errno == "EBUSY"
    assert validated_knob(KsmKnobs(), "max_page_sharing", 3, 0) == 3
    assert validated_knob(KsmKnobs(), "max_page_sharing", 256, 0, ksm_pages_mapped=True) == 256
