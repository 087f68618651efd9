"""The KSM spec: grouping arithmetic, the selftests' numbers, views, knobs, counters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol_tours import ksm_tour
from spec.ksm_api import (
    COUNTERS,
    MMAP_BASE,
    PAGE_SIZE,
    PROCESS_COUNTERS,
    GuestKind,
    ItemState,
    KnobError,
    KsmKnobs,
    KsmSnapshot,
    MappedPage,
    MappingError,
    NotRunning,
    RmapItemView,
    SegmentationFault,
    StableNodeView,
)
from spec.ksm_model import (
    KsmModel,
    completeness_violations,
    merged_count_by_content,
    predicted_host_cache,
)
from spec.ksm_rules import (
    counters_of,
    group_sizes,
    process_counters_of,
    sharing_groups,
    structure_violations,
    validated_knob,
)

PAGE_A = b"A" * PAGE_SIZE


@given(st.integers(0, 3000), st.integers(2, 300))
def test_grouping_partitions_pages(n: int, m: int) -> None:
    shared, sharing = sharing_groups(n, m)
    sizes = group_sizes(n, m)
    assert shared == len(sizes)
    assert shared + sharing == sum(sizes)
    assert n - sum(sizes) in (0, 1)
    assert all(2 <= size <= m for size in sizes)
    if n % m != 1:
        assert shared + sharing == n


@pytest.mark.parametrize(
    ("n", "m", "expected"),
    [(10, 256, (1, 9)), (10, 2, (5, 5)), (10, 3, (3, 6)), (10, 4, (3, 7)), (10, 5, (2, 8)), (1, 2, (0, 0)), (0, 2, (0, 0))],
)
def test_selftest_formula(n: int, m: int, expected: tuple[int, int]) -> None:
    assert sharing_groups(n, m) == expected


def _settle(model: KsmModel) -> None:
    model.set_knob("smart_scan", False)
    model.set_knob("run", 1)
    model.full_scans(2)


def _identical(model: KsmModel, pid: int, n: int, content: bytes) -> int:
    addr = model.mmap(pid, n)
    model.madvise(pid, addr, n, "MERGEABLE")
    for i in range(n):
        model.write(pid, addr + i * PAGE_SIZE, content)
    return addr


def test_model_keeps_the_protocol_on_a_tour() -> None:
    ksm_tour(KsmModel())


def test_ten_identical_pages_merge_into_one() -> None:
    model = KsmModel()
    pid = model.add_process()
    _identical(model, pid, 10, PAGE_A)
    assert not model.settled()
    _settle(model)
    assert model.settled()
    counters = model.counters()
    assert (counters["pages_shared"], counters["pages_sharing"]) == (1, 9)
    assert counters["general_profit"] == 9 * PAGE_SIZE - 10 * 64
    assert model.process_counters(pid)["ksm_merging_pages"] == 10
    assert set(counters) == set(COUNTERS)
    assert set(model.process_counters(pid)) == set(PROCESS_COUNTERS)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 7])
def test_max_page_sharing_cases(m: int) -> None:
    model = KsmModel()
    model.set_knob("max_page_sharing", m)
    pid = model.add_process()
    _identical(model, pid, 10, PAGE_A)
    _settle(model)
    counters = model.counters()
    assert (counters["pages_shared"], counters["pages_sharing"]) == sharing_groups(10, m)
    chained = counters["pages_shared"] > 1
    assert counters["stable_node_chains"] == (1 if chained else 0)
    assert counters["stable_node_dups"] == (counters["pages_shared"] if chained else 0)
    assert counters["pages_unshared"] == 10 - sum(sharing_groups(10, m))


@pytest.mark.parametrize(("use_zero", "expected"), [(False, (1, 9, 0)), (True, (0, 0, 10))])
def test_zero_pages(use_zero: bool, expected: tuple[int, int, int]) -> None:
    model = KsmModel()
    model.set_knob("use_zero_pages", use_zero)
    pid = model.add_process()
    _identical(model, pid, 10, bytes(PAGE_SIZE))
    _settle(model)
    counters = model.counters()
    assert (counters["pages_shared"], counters["pages_sharing"], counters["ksm_zero_pages"]) == expected
    if use_zero:
        assert counters["pages_volatile"] == 10  # two quiet scans: the zero items are still there
        model.full_scans(1)
        assert model.counters()["pages_volatile"] == 0  # freed by the next pass
        assert model.counters()["ksm_zero_pages"] == 10


def test_changed_pages_unmerge_after_a_write() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = _identical(model, pid, 2, PAGE_A)
    _settle(model)
    assert model.counters()["pages_shared"] == 1
    model.write(pid, addr, b"x")
    model.write(pid, addr + PAGE_SIZE, b"y")
    assert not model.quiet()
    model.full_scans(2)
    assert model.counters()["pages_shared"] == 0
    assert model.counters()["pages_unshared"] == 2
    assert not model.settled()  # merged before the quiet period: only the weak predicate
    assert model.quiet()


def test_views_and_merge_safety() -> None:
    model = KsmModel()
    a, b = model.add_process(), model.add_process()
    addr_a = _identical(model, a, 2, PAGE_A)
    addr_b = _identical(model, b, 1, PAGE_A)
    assert addr_a == addr_b == MMAP_BASE
    _settle(model)
    model.write(a, addr_a + 5, b"zz")
    assert model.read(a, addr_a, 8) == b"AAAAAzzA"
    assert model.read(b, addr_b, 8) == b"AAAAAAAA"
    assert model.read(a, addr_a + PAGE_SIZE - 2, 4) == b"AA" + b"A" * 2
    fresh = model.mmap(a, 1)
    assert fresh == MMAP_BASE + 2 * PAGE_SIZE
    assert model.read(a, fresh, 3) == b"\0\0\0"


def test_faults_and_mapping_errors() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = model.mmap(pid, 2, writable=False)
    with pytest.raises(SegmentationFault):
        model.write(pid, addr, b"x")
    model.mprotect(pid, addr, 2, readable=False, writable=False)
    with pytest.raises(SegmentationFault):
        model.read(pid, addr, 1)
    with pytest.raises(MappingError) as bad:
        model.madvise(pid, addr, 3, "MERGEABLE")
    assert bad.value.errno == "ENOMEM"
    with pytest.raises(MappingError):
        model.mmap(99, 1)
    model.munmap(pid, addr, 5)  # unmapped pages are ignored
    with pytest.raises(SegmentationFault):
        model.read(pid, addr, 1)
    with pytest.raises(NotRunning):
        model.full_scans(1)


def test_prot_none_pages_still_merge() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = _identical(model, pid, 4, PAGE_A)
    model.mprotect(pid, addr, 4, readable=False, writable=False)
    _settle(model)
    assert model.counters()["pages_sharing"] == 3


def test_process_merge_and_unmerge() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = model.mmap(pid, 3)
    model.set_process_merge(pid, True)
    later = model.mmap(pid, 1)
    for a in (addr, addr + PAGE_SIZE, later):
        model.write(pid, a, PAGE_A)
    _settle(model)
    assert model.counters()["pages_sharing"] == 2
    model.set_process_merge(pid, False)
    model.full_scans(3)
    assert model.counters()["pages_shared"] == 0
    assert model.process_counters(pid)["ksm_rmap_items"] == 0



def test_process_merge_off_when_it_was_never_on_changes_nothing() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = _identical(model, pid, 4, PAGE_A)
    _settle(model)
    assert model.counters()["pages_sharing"] == 3
    model.set_process_merge(pid, False)
    assert model.settled() and model.exact()
    assert model.counters()["pages_sharing"] == 3
    model.full_scans(2)
    assert model.counters()["pages_sharing"] == 3
    assert model.process_counters(pid)["ksm_merging_pages"] == 4
    assert model.candidates()[0].addr == addr


def test_unmerge_keeps_rmap_items_until_the_next_scan() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = _identical(model, pid, 6, PAGE_A)
    _settle(model)
    model.madvise(pid, addr, 2, "UNMERGEABLE")
    assert model.exact() and not model.settled()
    counters = model.counters()
    assert (counters["pages_shared"], counters["pages_sharing"]) == (1, 5)
    assert model.process_counters(pid)["ksm_rmap_items"] == 6
    assert model.process_counters(pid)["ksm_merging_pages"] == 6
    assert {page.addr for page in model.snapshot().pages} == {addr + i * PAGE_SIZE for i in range(2, 6)}
    model.madvise(pid, addr + 2 * PAGE_SIZE, 1, "UNMERGEABLE")  # still exact: nothing else happened
    assert model.exact() and model.counters()["pages_sharing"] == 5
    model.full_scans(1)
    assert not model.exact()  # a scan ran: the items are gone, the model does not follow ksmd


def test_munmap_keeps_rmap_items_until_the_next_scan() -> None:
    model = KsmModel()
    pid = model.add_process()
    addr = _identical(model, pid, 4, PAGE_A)
    _settle(model)
    model.munmap(pid, addr + 2 * PAGE_SIZE, 4)  # two mapped pages and two holes
    assert model.exact()
    assert (model.counters()["pages_sharing"], model.process_counters(pid)["ksm_rmap_items"]) == (3, 4)
    assert len(model.snapshot().pages) == 2


def test_unmerge_of_zero_pages_counts_at_once() -> None:
    model = KsmModel()
    model.set_knob("use_zero_pages", True)
    pid = model.add_process()
    addr = _identical(model, pid, 4, bytes(PAGE_SIZE))
    _settle(model)
    assert model.counters()["ksm_zero_pages"] == 4
    model.madvise(pid, addr, 2, "UNMERGEABLE")
    assert model.exact() and model.counters()["ksm_zero_pages"] == 2
    assert model.process_counters(pid)["ksm_rmap_items"] == 4


def test_a_process_left_with_nothing_registered_is_dropped_by_a_full_scan() -> None:
    model = KsmModel()
    pid = model.add_process()
    model.set_process_merge(pid, True)
    addr = model.mmap(pid, 2)
    model.madvise(pid, addr, 2, "UNMERGEABLE")
    _settle(model)
    assert model.counters()["full_scans"] == 1  # the pass that dropped it; then the list is empty
    model.full_scans(2)
    assert model.counters()["full_scans"] == 1
    later = model.mmap(pid, 2)  # process-wide merging stayed on: registered, listed again
    model.write(pid, later, PAGE_A)
    model.write(pid, later + PAGE_SIZE, PAGE_A)
    model.full_scans(2)
    assert model.counters()["full_scans"] == 3
    assert [c.addr for c in model.candidates()] == [later, later + PAGE_SIZE]


def test_run_ksmd_leaves_the_list_order_and_the_scan_count_unknown() -> None:
    model = KsmModel()
    first, second = model.add_process(), model.add_process()
    addr = _identical(model, first, 1, PAGE_A)
    _identical(model, second, 1, PAGE_A)
    model.set_knob("run", 1)
    model.madvise(first, addr, 1, "UNMERGEABLE")
    model.run_ksmd(20)  # ksmd may or may not have passed (and dropped) the first process
    model.madvise(first, addr, 1, "MERGEABLE")  # back on the list: at its old place, or last
    assert not model.process_counters_exact()
    model.madvise(first, addr, 1, "UNMERGEABLE")
    model.madvise(second, addr, 1, "UNMERGEABLE")
    model.run_ksmd(20)  # maybe both dropped already: 0 or 1 more scans complete
    model.full_scans(2)
    assert not model.full_scans_exact()


@pytest.mark.parametrize(
    ("name", "value", "errno"),
    [
        ("run", 3, "EINVAL"),
        ("run", -1, "EINVAL"),
        ("run", True, "EINVAL"),
        ("max_page_sharing", 1, "EINVAL"),
        ("sleep_millisecs", 2**32, "EINVAL"),
        ("use_zero_pages", 2, "EINVAL"),
        ("checksum", "md5", "EINVAL"),
        ("no_such_knob", 1, "ENOENT"),
    ],
)
def test_knob_errors(name: str, value: object, errno: str) -> None:
    with pytest.raises(KnobError) as error:
        KsmModel().set_knob(name, value)
    assert error.value.errno == errno


def test_max_page_sharing_busy_while_shared() -> None:
    knobs = KsmKnobs()
    with pytest.raises(KnobError) as error:
        validated_knob(knobs, "max_page_sharing", 10, pages_shared=1)
    assert error.value.errno == "EBUSY"
    assert validated_knob(knobs, "max_page_sharing", 256, pages_shared=1) == 256
    assert validated_knob(knobs, "max_page_sharing", 10, pages_shared=0) == 10
    model = KsmModel()
    pid = model.add_process()
    _identical(model, pid, 2, PAGE_A)
    _settle(model)
    with pytest.raises(KnobError):
        model.set_knob("max_page_sharing", 3)
    model.set_knob("run", 2)
    model.set_knob("max_page_sharing", 3)
    assert model.knobs().max_page_sharing == 3


def _snapshot(items: list[RmapItemView], nodes: list[StableNodeView], pages: list[MappedPage]) -> KsmSnapshot:
    bare = KsmSnapshot(tuple(items), tuple(nodes), tuple(pages), {"full_scans": 4, "pages_skipped": 1}, {1: {}, 2: {}})
    return KsmSnapshot(bare.items, bare.stable_nodes, bare.pages, counters_of(bare), process_counters_of(bare))


def test_counters_of_hand_built_snapshot() -> None:
    items = [
        RmapItemView(1, 0x1000, ItemState.STABLE, 7, 0),
        RmapItemView(1, 0x2000, ItemState.STABLE, 7, 0),  # stale: COW-broken, not yet revisited
        RmapItemView(2, 0x1000, ItemState.STABLE, 7, 0),
        RmapItemView(2, 0x2000, ItemState.UNSTABLE, None, 5),
        RmapItemView(2, 0x3000, ItemState.VOLATILE, None, 9),
    ]
    nodes = [StableNodeView(7, 100, None, ((1, 0x1000), (1, 0x2000), (2, 0x1000))), StableNodeView(8, 101, None, ())]
    pages = [
        MappedPage(1, 0x1000, 100, False, True, False),
        MappedPage(1, 0x2000, 55, True, False, False),
        MappedPage(2, 0x1000, 100, False, True, False),
        MappedPage(2, 0x4000, 0, False, False, True),
    ]
    snap = _snapshot(items, nodes, pages)
    counters = counters_of(snap)
    assert counters["pages_shared"] == 1  # node 8 has no items
    assert counters["pages_sharing"] == 2
    assert counters["pages_unshared"] == 1
    assert counters["pages_volatile"] == 1
    assert counters["ksm_zero_pages"] == 1
    assert counters["full_scans"] == 4
    assert counters["general_profit"] == 3 * PAGE_SIZE - 5 * 64
    per = process_counters_of(snap)
    assert per[1] == {"ksm_merging_pages": 2, "ksm_rmap_items": 2, "ksm_zero_pages": 0, "ksm_process_profit": 2 * 4096 - 128}
    assert per[2]["ksm_zero_pages"] == 1
    assert structure_violations(snap) == []


def test_structure_violations_catch_broken_snapshots() -> None:
    nodes = [StableNodeView(1, 100, None, ((1, 0x1000), (2, 0x1000)))]
    items = [RmapItemView(1, 0x1000, ItemState.STABLE, 1, 0), RmapItemView(2, 0x1000, ItemState.STABLE, 1, 0)]
    writable = [MappedPage(1, 0x1000, 100, True, True, False), MappedPage(2, 0x1000, 100, False, True, False)]
    assert any("writable" in p for p in structure_violations(_snapshot(items, nodes, writable)))
    not_ksm = [MappedPage(1, 0x1000, 100, False, False, False), MappedPage(2, 0x1000, 100, False, True, False)]
    assert any("without being a KSM page" in p for p in structure_violations(_snapshot(items, nodes, not_ksm)))
    good = [MappedPage(1, 0x1000, 100, False, True, False), MappedPage(2, 0x1000, 100, False, True, False)]
    snap = _snapshot(items, nodes, good)
    lying = KsmSnapshot(snap.items, snap.stable_nodes, snap.pages, dict(snap.counters, pages_sharing=5), snap.process_counters)
    assert any("pages_sharing" in p for p in structure_violations(lying))


def test_weak_completeness_predicate() -> None:
    model = KsmModel()
    pid = model.add_process()
    _identical(model, pid, 3, PAGE_A)
    _settle(model)
    snap = model.snapshot()
    assert completeness_violations(snap, model.candidates(), model.knobs()) == []
    assert merged_count_by_content(snap, model.views()) == {PAGE_A: 3}
    unmerged = KsmSnapshot(snap.items, (), tuple(MappedPage(p.pid, p.addr, i, True, False, False) for i, p in enumerate(snap.pages)), {}, {})
    assert completeness_violations(unmerged, model.candidates(), model.knobs())


def test_skip_page_cache_and_host_cache() -> None:
    model = KsmModel()
    model.set_knob("skip_page_cache", True)
    model.set_knob("exclusive_host_cache", True)
    pid = model.add_process()
    addr = model.mmap(pid, 3, kinds=[GuestKind.PAGE_CACHE, GuestKind.ANONYMOUS, GuestKind.ANONYMOUS])
    model.madvise(pid, addr, 3, "MERGEABLE")
    for i in range(3):
        model.write(pid, addr + i * PAGE_SIZE, PAGE_A if i < 2 else b"B")
    kept = model.host_cache_insert(b"C")
    dropped = model.host_cache_insert(b"B")
    _settle(model)
    assert model.counters()["pages_shared"] == 0  # the page-cache page's partner stays alone
    assert model.counters()["pages_unshared"] == 2
    assert set(model.host_cache()) == {kept}
    assert dropped not in predicted_host_cache(model.host_cache(), model.prediction().tree_contents)
