"""Tests of the KSM implementation on the emulated MMU (:mod:`impl.ksm`): COW, write
protection, counter timing, trees, checksums, the research optimisations, invariants
(and that corrupting the state breaks them), and the mutants of
:mod:`memoracle.ksm.mutants`, each caught by a view or invariant check."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl.ksm import Ksm
from impl.ksm_hash import jhash2, jhash2_page, xxhash_page
from impl.ksm_tree import RbTree
from memoracle.ksm.mutants import (
    CompareBeforeProtectKsm,
    CowWritesSharedKsm,
    EagerUnmergeKsm,
    GuestKindIgnoredKsm,
    IgnoresPinsKsm,
    KSM_MUTANTS,
    MergeForgetsChecksumKsm,
    NoChecksumKsm,
    NoPteRecheckKsm,
    NoWriteProtectKsm,
    PrctlOffAlwaysKsm,
)
from protocol_tours import ksm_tour
from spec.ksm_api import PAGE_SIZE, GuestKind, KnobError, KsmSystem, MappingError, SegmentationFault
from spec.ksm_model import KsmModel
from spec.paging import PT, RW

PAGE = PAGE_SIZE


def page(tag: int) -> bytes:
    return bytes([tag & 255]) * 64 + tag.to_bytes(4, "little") + bytes(PAGE - 68)


def two_processes(ksm: Ksm, contents_a: list[bytes], contents_b: list[bytes]) -> tuple[int, int, int, int]:
    a, b = ksm.add_process(), ksm.add_process()
    pa, pb = ksm.mmap(a, len(contents_a)), ksm.mmap(b, len(contents_b))
    for pid, base, contents in ((a, pa, contents_a), (b, pb, contents_b)):
        for i, content in enumerate(contents):
            ksm.write(pid, base + i * PAGE, content)
        ksm.madvise(pid, base, len(contents), "MERGEABLE")
    return a, pa, b, pb


def merged(ksm: Ksm) -> set[tuple[int, int]]:
    return {(p.pid, p.addr) for p in ksm.snapshot().pages if p.ksm or p.zero}


# -- basics ---------------------------------------------------------------------------
def test_keeps_the_protocol_on_a_tour() -> None:
    ksm = Ksm()
    ksm_tour(ksm)
    ksm.check_invariants()


def test_cow_break_gives_a_private_copy_and_leaves_other_views() -> None:
    ksm = Ksm()
    a, pa, b, pb = two_processes(ksm, [page(1)], [page(1)])
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    shared_frame = ksm.frame_at(a, pa)
    assert shared_frame is not None and shared_frame == ksm.frame_at(b, pb)
    ksm.write(a, pa + 10, b"changed")
    ksm.check_invariants()
    assert ksm.frame_at(a, pa) != shared_frame and ksm.frame_at(b, pb) == shared_frame
    assert ksm.read(b, pb, PAGE) == page(1)
    assert ksm.read(a, pa + 10, 7) == b"changed"
    assert ksm.stats["cow_ksm"] == 1


def test_every_ksm_mapping_is_write_protected() -> None:
    ksm = Ksm()
    two_processes(ksm, [page(i % 3) for i in range(9)], [page(i % 3) for i in range(9)])
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    snap = ksm.snapshot()
    ksm_pages = [p for p in snap.pages if p.ksm]
    assert len(ksm_pages) == 18
    for p in ksm_pages:
        entry = ksm.pte(ksm.procs[p.pid], p.addr)[1]
        assert not entry & RW and not p.writable


def test_counters_change_at_the_next_visit() -> None:
    ksm = Ksm()
    a, pa, b, pb = two_processes(ksm, [page(7)], [page(7)])
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    before = ksm.counters()
    assert (before["pages_shared"], before["pages_sharing"]) == (1, 1)
    ksm.write(a, pa, b"x")
    ksm.write(b, pb, b"y")
    assert ksm.counters() == before  # the stable node is stale, not yet seen
    ksm.full_scans(1)
    after = ksm.counters()
    assert (after["pages_shared"], after["pages_sharing"], after["pages_volatile"]) == (0, 0, 2)
    ksm.check_invariants()


def test_a_page_first_merges_on_the_second_full_scan() -> None:
    ksm = Ksm()
    two_processes(ksm, [page(3)], [page(3)])
    ksm.set_knob("run", 1)
    ksm.full_scans(1)
    assert ksm.counters()["pages_shared"] == 0 and ksm.counters()["pages_volatile"] == 2
    ksm.full_scans(1)
    assert ksm.counters()["pages_shared"] == 1


def test_run_ksmd_scans_in_batches_of_virtual_time() -> None:
    ksm = Ksm()
    two_processes(ksm, [page(i) for i in range(50)], [page(i) for i in range(50)])
    ksm.set_knob("pages_to_scan", 10)
    ksm.set_knob("run", 1)
    ksm.run_ksmd(20)  # one batch at t=0, the next at t=20
    assert ksm.stats["pages_scanned"] == 10
    ksm.run_ksmd(200)  # ten more batches: nine scan the other 90 pages, the tenth
    # finds the end of the pass (a batch stops there, as ksm_do_scan does)
    assert ksm.stats["pages_scanned"] == 100 and ksm.counters()["full_scans"] == 1


def test_pinned_pages_are_not_merged() -> None:
    ksm = Ksm()
    a, pa, b, pb = two_processes(ksm, [page(9)], [page(9)])
    ksm.pin(a, pa, 1)
    ksm.set_knob("run", 1)
    ksm.full_scans(3)
    assert ksm.counters()["pages_shared"] == 0 and ksm.frame_at(a, pa) != ksm.frame_at(b, pb)
    ksm.pin(a, pa, 0)
    ksm.full_scans(2)
    assert ksm.counters()["pages_shared"] == 1
    ksm.check_invariants()


def test_smart_scan_skips_pages_that_never_merge() -> None:
    for smart in (True, False):
        ksm = Ksm()
        two_processes(ksm, [page(i) for i in range(8)], [page(100 + i) for i in range(8)])
        ksm.set_knob("smart_scan", smart)
        ksm.set_knob("run", 1)
        ksm.full_scans(8)
        skipped = ksm.counters()["pages_skipped"]
        assert (skipped > 0) == smart
        ksm.check_invariants()


def test_stable_node_chains_and_dups() -> None:
    ksm = Ksm()
    ksm.set_knob("max_page_sharing", 3)
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 10)
    ksm.write(pid, addr, page(5) * 10)
    ksm.madvise(pid, addr, 10, "MERGEABLE")
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    c = ksm.counters()
    assert (c["pages_shared"], c["pages_sharing"]) == (3, 6)  # the tenth page is unshared
    assert (c["stable_node_chains"], c["stable_node_dups"], c["pages_unshared"]) == (1, 3, 1)
    with pytest.raises(KnobError) as err:
        ksm.set_knob("max_page_sharing", 4)
    assert err.value.errno == "EBUSY"
    ksm.check_invariants()


def test_knob_errors() -> None:
    ksm = Ksm()
    for name, value, errno in [("run", 3, "EINVAL"), ("run", True, "EINVAL"),
                               ("max_page_sharing", 1, "EINVAL"), ("nosuch", 1, "ENOENT"),
                               ("checksum", "md5", "EINVAL"), ("use_zero_pages", 2, "EINVAL"),
                               ("sleep_millisecs", 2**32, "EINVAL")]:  # fmt: skip
        with pytest.raises(KnobError) as err:
            ksm.set_knob(name, value)
        assert err.value.errno == errno, (name, value)
    ksm.set_knob("max_page_sharing", 2)
    assert ksm.knobs().max_page_sharing == 2


def test_segfaults_change_nothing() -> None:
    ksm = Ksm()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 2)
    ksm.mprotect(pid, addr + PAGE, 1, readable=True, writable=False)
    with pytest.raises(SegmentationFault):
        ksm.write(pid, addr + PAGE - 2, b"abcd")
    assert ksm.read(pid, addr, 2 * PAGE) == bytes(2 * PAGE)
    assert ksm.snapshot().pages == ()  # reads never made a page present


# -- trees and checksums --------------------------------------------------------------
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=120))
def test_red_black_tree_against_a_sorted_set(ops: list[tuple[bool, int]]) -> None:
    tree: RbTree[int] = RbTree()
    nodes = {}
    for insert, key in ops:
        found, parent, left = tree.walk(lambda v: (key > v) - (key < v))
        if insert and found is None:
            nodes[key] = tree.link(key, parent, left)
        elif not insert and found is not None:
            tree.erase(found)
            del nodes[key]
        tree.check()
        assert tree.values() == sorted(nodes)


def test_tree_comparisons_are_logarithmic() -> None:
    ksm = Ksm()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 256)
    for i in range(256):
        ksm.write(pid, addr + i * PAGE, page(i * 7919))
    ksm.madvise(pid, addr, 256, "MERGEABLE")
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    cmp = ksm.unstable_tree.comparisons
    assert 256 <= cmp <= 256 * 2 * 9  # each insertion walks at most 2*log2(n+1) levels
    assert ksm.counters()["pages_unshared"] == 256
    ksm.check_invariants()


def test_checksums_known_values() -> None:
    zero = bytes(PAGE)
    assert xxhash_page(zero) == 0xAC869B6F32D8BBDB & 0xFFFF_FFFF
    # Values of the kernel's C jhash2 (include/linux/jhash.h) for the same inputs.
    assert jhash2_page(zero) == 1633108594
    assert jhash2_page(struct.pack("<1024I", *range(1024))) == 28281893
    assert jhash2_page(b"\xff" * PAGE) == 2248325182
    assert [jhash2([1, 2, 3, 4, 5][:n], 0) for n in range(6)] == [
        3735928559, 1923623579, 2337044857, 2757843189, 1716064838, 1653680576]


def test_jhash2_checksum_knob_merges_the_same() -> None:
    ksm = Ksm()
    ksm.set_knob("checksum", "jhash2")
    two_processes(ksm, [page(1), page(2)], [page(2), page(3)])
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    assert ksm.counters()["pages_shared"] == 1
    assert {i.checksum for i in ksm.snapshot().items} >= {jhash2_page(page(2))}


# -- optimisations --------------------------------------------------------------------
def _lookahead_run(on: bool) -> Ksm:
    ksm = Ksm()
    ksm.set_knob("lookahead", on)
    pages = [page(i) for i in range(64)]
    two_processes(ksm, pages, pages)
    ksm.set_knob("run", 1)
    ksm.full_scans(3)
    ksm.check_invariants()
    return ksm


def test_lookahead_same_merges_fewer_comparisons() -> None:
    off, on = _lookahead_run(False), _lookahead_run(True)
    assert merged(off) == merged(on) and len(merged(on)) == 128
    assert off.counters() == on.counters()
    assert on.stats["lookahead_hits"] > 50
    assert on.stats["comparisons"] < off.stats["comparisons"]
    assert on.snapshot().lookahead_hits == on.stats["lookahead_hits"]


def test_page_cache_pages_are_skipped() -> None:
    for skip in (False, True):
        ksm = Ksm()
        ksm.set_knob("skip_page_cache", skip)
        a, b = ksm.add_process(), ksm.add_process()
        kinds = [GuestKind.PAGE_CACHE, GuestKind.ANONYMOUS]
        pa, pb = ksm.mmap(a, 2, kinds=kinds), ksm.mmap(b, 2, kinds=kinds)
        for pid, base in ((a, pa), (b, pb)):
            ksm.write(pid, base, page(1) + page(2))
            ksm.madvise(pid, base, 2, "MERGEABLE")
        ksm.set_knob("run", 1)
        ksm.full_scans(2)
        assert ((a, pa) in merged(ksm)) == (not skip)
        assert (a, pa + PAGE) in merged(ksm)
        assert ksm.process_counters(a)["ksm_rmap_items"] == (1 if skip else 2)
        ksm.check_invariants()


@pytest.mark.parametrize("factory", [KsmModel, Ksm], ids=["model", "impl"])
def test_set_guest_kind_moves_a_page_out_of_merging_and_back(factory: type[KsmSystem]) -> None:
    ksm = factory()
    ksm.set_knob("skip_page_cache", True)
    a, b = ksm.add_process(), ksm.add_process()
    pa, pb = ksm.mmap(a, 2), ksm.mmap(b, 2)
    for pid, base in ((a, pa), (b, pb)):
        ksm.write(pid, base, page(1) + page(2))
        ksm.madvise(pid, base, 2, "MERGEABLE")
    ksm.set_guest_kind(a, pa, 1, GuestKind.PAGE_CACHE)  # a's first page now caches a file
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    assert (ksm.counters()["pages_shared"], ksm.counters()["pages_sharing"]) == (1, 1)
    assert ksm.process_counters(a)["ksm_rmap_items"] == 1
    ksm.set_guest_kind(a, pa, 1, GuestKind.ANONYMOUS)
    ksm.full_scans(2)
    assert (ksm.counters()["pages_shared"], ksm.counters()["pages_sharing"]) == (2, 2)
    assert ksm.read(a, pa, 2 * PAGE) == page(1) + page(2)
    with pytest.raises(MappingError):
        ksm.set_guest_kind(a, pa, 3, GuestKind.PAGE_CACHE)  # the third page is not mapped


def test_exclusive_host_cache_drops_duplicates() -> None:
    ksm = Ksm()
    two_processes(ksm, [page(1), page(2)], [page(2), page(3)])
    kept = ksm.host_cache_insert(page(99))
    dup_stable = ksm.host_cache_insert(page(2))
    dup_unstable = ksm.host_cache_insert(page(3))
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    assert set(ksm.host_cache()) == {kept, dup_stable, dup_unstable}  # knob off
    ksm.set_knob("exclusive_host_cache", True)
    ksm.full_scans(1)
    assert ksm.host_cache() == {kept: page(99)}
    assert ksm.stats["host_cache_dropped"] == 2
    ksm.check_invariants()


# -- invariants after every operation, with a view oracle ------------------------------
_OPS = st.lists(
    st.tuples(st.sampled_from(["write", "scan", "unmerge", "merge", "munmap", "protect"]),
              st.integers(0, 1), st.integers(0, 5), st.integers(0, 3)),
    max_size=25,
)  # fmt: skip


@given(_OPS, st.booleans(), st.booleans())
def test_invariants_and_views_after_every_operation(
    ops: list[tuple[str, int, int, int]], zero_pages: bool, lookahead: bool
) -> None:
    ksm = Ksm(dram_size=4 << 20)
    ksm.set_knob("use_zero_pages", zero_pages)
    ksm.set_knob("lookahead", lookahead)
    ksm.set_knob("pages_to_scan", 5)
    pids = [ksm.add_process(), ksm.add_process()]
    bases = [ksm.mmap(pid, 6) for pid in pids]
    views = {(pid, bases[i] + j * PAGE): bytes(PAGE) for i, pid in enumerate(pids) for j in range(6)}
    mapped = set(views)
    for i, pid in enumerate(pids):
        ksm.madvise(pid, bases[i], 6, "MERGEABLE")
    ksm.set_knob("run", 1)
    for op, who, index, tag in ops:
        pid, va = pids[who], bases[who] + index * PAGE
        if op == "write" and (pid, va) in mapped:
            ksm.write(pid, va, page(tag) if tag else bytes(PAGE))
            views[(pid, va)] = page(tag) if tag else bytes(PAGE)
        elif op == "scan":
            ksm.run_ksmd(20 * (tag + 1))
        elif op == "unmerge" and (pid, va) in mapped:
            ksm.madvise(pid, va, 1, "UNMERGEABLE")
        elif op == "merge" and (pid, va) in mapped:
            ksm.madvise(pid, va, 1, "MERGEABLE")
        elif op == "munmap":
            ksm.munmap(pid, va, 1)
            mapped.discard((pid, va))
        elif op == "protect" and (pid, va) in mapped:
            ksm.mprotect(pid, va, 1, readable=True, writable=tag != 0)
            if tag == 0:
                mapped.discard((pid, va))  # read-only from now on: no more writes
                views.pop((pid, va))
        ksm.check_invariants()
        for (vpid, vva), content in views.items():
            if (vpid, vva) in mapped:
                assert ksm.read(vpid, vva, PAGE) == content


# -- corruption is caught -------------------------------------------------------------
def _merged_system() -> tuple[Ksm, int, int]:
    ksm = Ksm()
    a, pa, _, _ = two_processes(ksm, [page(1), page(2), page(3)], [page(1), page(2), page(3)])
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    ksm.check_invariants()
    return ksm, a, pa


def test_corrupted_stable_tree_is_caught() -> None:
    ksm, _, _ = _merged_system()
    nodes = list(ksm.stable_tree)
    nodes[0].value, nodes[-1].value = nodes[-1].value, nodes[0].value
    nodes[0].value.rb, nodes[-1].value.rb = nodes[0], nodes[-1]
    with pytest.raises(AssertionError, match="out of order"):
        ksm.check_invariants()


def test_writable_ksm_pte_is_caught() -> None:
    ksm, a, pa = _merged_system()
    space = ksm.procs[a].space
    entry = ksm.pte(ksm.procs[a], pa)[1]
    space.write_entry(pa, PT, entry | RW)
    space.invlpg(pa)
    with pytest.raises(AssertionError, match="mapped writable"):
        ksm.check_invariants()


def test_wrong_counter_is_caught() -> None:
    ksm, _, _ = _merged_system()
    ksm.pages_sharing += 1
    with pytest.raises(AssertionError, match="sharing"):
        ksm.check_invariants()


def test_written_ksm_page_is_caught() -> None:
    ksm, a, pa = _merged_system()
    frame = ksm.frame_at(a, pa)
    assert frame is not None
    ksm.machine.write(frame, b"behind the page tables' back")
    with pytest.raises(AssertionError, match="changed after merging"):
        ksm.check_invariants()


# -- races and mutants ----------------------------------------------------------------
def _race_run(cls: type[Ksm], point: str) -> tuple[Ksm, dict[tuple[int, int], bytes]]:
    """Merge two equal pages while a store "on another CPU" hits the page being merged
    at ``point``; return the system and the views a correct system must show."""
    ksm = cls()
    a, pa, b, pb = two_processes(ksm, [page(4)], [page(4)])
    views = {(a, pa): page(4), (b, pb): page(4)}
    fired: list[tuple[int, int]] = []

    def race(where: str, pid: int, addr: int) -> None:
        if where == point and not fired:
            fired.append((pid, addr))
            ksm.write(pid, addr, b"racing store")
            views[(pid, addr)] = b"racing store" + page(4)[12:]

    ksm.race_hook = race
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    assert fired, f"the merge never reached {point}"
    return ksm, views


def _views_hold(ksm: Ksm, views: dict[tuple[int, int], bytes]) -> bool:
    return all(ksm.read(pid, addr, PAGE) == content for (pid, addr), content in views.items())


@pytest.mark.parametrize("point", ["after_write_protect", "after_compare"])
def test_racing_store_is_never_lost(point: str) -> None:
    ksm, views = _race_run(Ksm, point)
    assert _views_hold(ksm, views)
    ksm.check_invariants()


def _caught(ksm: Ksm, views: dict[tuple[int, int], bytes]) -> bool:
    if not _views_hold(ksm, views):
        return True
    try:
        ksm.check_invariants()
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize("cls", [NoWriteProtectKsm, CompareBeforeProtectKsm, NoPteRecheckKsm])
def test_merge_mutants_lose_a_racing_store(cls: type[Ksm]) -> None:
    ksm, views = _race_run(cls, "after_compare")
    assert _caught(ksm, views)


def test_cow_mutant_changes_another_view() -> None:
    ksm = CowWritesSharedKsm()
    a, pa, b, pb = two_processes(ksm, [page(6)], [page(6)])
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    ksm.write(a, pa, b"mine")
    assert ksm.read(b, pb, PAGE) != page(6)  # the other process saw a's store
    with pytest.raises(AssertionError):
        ksm.check_invariants()


def test_checksum_mutant_merges_on_the_first_scan() -> None:
    for cls, expect in ((Ksm, 0), (NoChecksumKsm, 1)):
        ksm = cls()
        two_processes(ksm, [page(8)], [page(8)])
        ksm.set_knob("run", 1)
        ksm.full_scans(1)
        assert ksm.counters()["pages_shared"] == expect


def test_every_mutant_is_registered() -> None:
    assert set(KSM_MUTANTS.values()) == {NoWriteProtectKsm, CompareBeforeProtectKsm,
                                         NoPteRecheckKsm, CowWritesSharedKsm, NoChecksumKsm,
                                         EagerUnmergeKsm, PrctlOffAlwaysKsm, IgnoresPinsKsm,
                                         MergeForgetsChecksumKsm, GuestKindIgnoredKsm}  # fmt: skip
