"""Snapshots and internal invariants of :class:`impl.ksm.Ksm`.

:func:`check_invariants` is the implementation's ``_check``: it re-derives from the
emulated page tables and the scanner's records everything the counters and trees claim,
and asserts they agree. It is meant to be called after every operation by tests and
harnesses; a corrupted tree, a writable KSM PTE, a leaked or double-counted frame, a
written KSM page or a counter off by one each fail it with a message saying what broke.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.ksm_hash import checksum_function, xxhash_page
from impl.ksm_scan import KSM_ZERO_BIT
from impl.ksm_state import RmapItem, StableNode
from impl.ksm_tree import RbNode
from impl.mmu_emu import VmaFlags
from spec.ksm_api import (
    COUNTERS,
    ItemState,
    KsmSnapshot,
    MappedPage,
    RmapItemView,
    StableNodeView,
)
from spec.paging import ADDR_MASK, RW, P

if TYPE_CHECKING:
    from impl.ksm import Ksm


def _items(ksm: Ksm) -> list[RmapItem]:
    out: list[RmapItem] = []
    for pid in sorted(ksm.procs):
        item = ksm.procs[pid].rmap_head
        while item is not None:
            out.append(item)
            item = item.next
    return out


def _nodes(ksm: Ksm) -> list[tuple[StableNode, StableNode | None]]:
    """Every stable node (never a chain head) with its chain, in tree order."""
    out: list[tuple[StableNode, StableNode | None]] = []
    for rb in ksm.stable_tree:
        head = rb.value
        if head.is_chain:
            out.extend((dup, head) for dup in head.dups)
        else:
            out.append((head, None))
    return out


def item_state(ksm: Ksm, item: RmapItem) -> ItemState:
    """The spec's state of an rmap item."""
    if item.stable is not None:
        return ItemState.STABLE
    if item.unstable_gen is not None:
        return ItemState.UNSTABLE
    entry = ksm.pte(item.proc, item.addr)[1]
    if entry & P and entry & ADDR_MASK == ksm.zero_frame and entry & KSM_ZERO_BIT:
        return ItemState.ZERO
    return ItemState.VOLATILE


def snapshot(ksm: Ksm) -> KsmSnapshot:
    """The state as plain data: items by (pid, addr), stable nodes by id, the present
    pages of registered ranges by (pid, addr) (a never-written page that only reads
    the zero page is not present), counters, per-process counters, statistics."""
    items = tuple(
        RmapItemView(
            item.proc.pid, item.addr, item_state(ksm, item),
            item.stable.node_id if item.stable is not None else None, item.oldchecksum,
        )
        for item in _items(ksm)
    )  # fmt: skip
    nodes = sorted(
        (
            StableNodeView(
                node.node_id, node.frame, chain.node_id if chain is not None else None,
                tuple(sorted((i.proc.pid, i.addr) for i in node.hlist)),
            )
            for node, chain in _nodes(ksm)
        ),
        key=lambda view: view.node,
    )  # fmt: skip
    pages: list[MappedPage] = []
    for pid in sorted(ksm.procs):
        proc = ksm.procs[pid]
        for vma in proc.space.vmas():
            if not vma.flags & VmaFlags.MERGEABLE:
                continue
            for va, entry in ksm.present_ptes(proc, vma.start, vma.end):
                frame = entry & ADDR_MASK
                zero = frame == ksm.zero_frame
                if zero and not entry & KSM_ZERO_BIT:
                    continue
                f = ksm.frames.get(frame)
                pages.append(MappedPage(pid, va, frame, bool(entry & RW),
                                        f is not None and f.ksm, zero))  # fmt: skip
    return KsmSnapshot(
        items=items,
        stable_nodes=tuple(nodes),
        pages=tuple(pages),
        counters=ksm.counters(),
        process_counters={pid: ksm.process_counters(pid) for pid in sorted(ksm.procs)},
        comparisons=ksm.stats["comparisons"],
        lookahead_hits=ksm.stats["lookahead_hits"],
        host_cache=ksm.host_cache(),
        empty_chains=sum(1 for rb in ksm.stable_tree if rb.value.is_chain and not rb.value.dups),
    )


def _check_ptes(ksm: Ksm) -> None:
    """Frames and PTEs: mapcounts, write protection of merged pages, zero pages."""
    mapped: dict[int, int] = {}
    zero_total = 0
    for proc in ksm.procs.values():
        proc.space.check_invariants()
        zero = 0
        for vma in proc.space.vmas():
            for va, entry in ksm.present_ptes(proc, vma.start, vma.end):
                frame = entry & ADDR_MASK
                if frame == ksm.zero_frame:
                    assert not entry & RW, f"pid {proc.pid} {va:#x}: the zero page is writable"
                    zero += 1 if entry & KSM_ZERO_BIT else 0
                    continue
                f = ksm.frames.get(frame)
                assert f is not None, f"pid {proc.pid} {va:#x} maps untracked frame {frame:#x}"
                assert not (f.ksm and entry & RW), (
                    f"pid {proc.pid} {va:#x}: KSM page {frame:#x} is mapped writable")
                mapped[frame] = mapped.get(frame, 0) + 1
        assert zero == proc.zero_pages, (
            f"pid {proc.pid}: {zero} KSM zero PTEs but ksm_zero_pages says {proc.zero_pages}")
        zero_total += zero
    assert zero_total == ksm.ksm_zero_pages, (
        f"{zero_total} KSM zero PTEs but ksm_zero_pages says {ksm.ksm_zero_pages}")
    allocated = ksm.machine.frames.is_allocated
    for frame, f in ksm.frames.items():
        assert allocated(frame), f"tracked frame {frame:#x} is free in the machine"
        assert f.mapcount == mapped.get(frame, 0), (
            f"frame {frame:#x}: mapcount {f.mapcount} but {mapped.get(frame, 0)} PTEs map it")
        assert f.mapcount + f.holds > 0, f"frame {frame:#x} is unused but not freed"
        assert f.holds == 0, f"frame {frame:#x} still held by ksmd"
        assert not f.locked, f"frame {frame:#x} still locked by ksmd"
        assert not f.ksm or f.stable is not None, f"KSM frame {frame:#x} has no stable node"
    for page_id, frame in ksm.host_pages.items():
        assert allocated(frame) and frame not in ksm.frames, f"host page {page_id} frame bad"


def _check_items(ksm: Ksm) -> list[RmapItem]:
    items: list[RmapItem] = []
    unshared = 0
    for proc in ksm.procs.values():
        count = merging = 0
        last = -1
        item = proc.rmap_head
        while item is not None:
            assert not item.freed and item.proc is proc, f"pid {proc.pid}: freed/foreign item"
            assert item.addr > last, f"pid {proc.pid}: rmap list out of order at {item.addr:#x}"
            last = item.addr
            count += 1
            if item.stable is not None:
                merging += 1
                assert item in item.stable.hlist, f"item {item.addr:#x} not on its node"
                assert item.unstable_gen is None, "item both stable and unstable"
            if item.unstable_gen is not None:
                unshared += 1
                if item.unstable_gen == ksm.unstable_gen:
                    assert isinstance(item.rb, RbNode) and item.rb.value is item, (
                        f"unstable item {item.addr:#x} lost its tree node")
            items.append(item)
            item = item.next
        assert count == proc.rmap_items, f"pid {proc.pid}: {count} items, counter {proc.rmap_items}"
        assert merging == proc.merging_pages, (
            f"pid {proc.pid}: {merging} stable items, counter {proc.merging_pages}")
    assert len(items) == ksm.rmap_items, f"{len(items)} items, counter {ksm.rmap_items}"
    assert unshared == ksm.pages_unshared, f"{unshared} unstable items, counter {ksm.pages_unshared}"
    return items


def _check_unstable(ksm: Ksm) -> None:
    tree = ksm.unstable_tree
    tree.check()
    values = tree.values()
    for rb in tree:
        item = rb.value
        assert item.rb is rb and item.unstable_gen == ksm.unstable_gen, (
            f"unstable tree node for {item.addr:#x} is not its item's")
    # Order holds as long as no page in the tree changed since it went in: no user store
    # since the tree was emptied (a page changed and changed back, or changed while
    # another went in, leaves the kernel's unstable tree out of order too).
    if ksm.user_stores != ksm.stores_at_unstable_start:
        return
    contents = []
    for item in values:
        frame = ksm.get_mergeable_page(item)
        if frame is None:
            return
        page = ksm.page_bytes(frame)
        if checksum_function(ksm.knobs_state.checksum)(page) != item.oldchecksum:
            return  # the checksum function was switched since
        contents.append(page)
    for a, b in zip(contents, contents[1:]):
        assert a < b, "unstable tree out of order (no page in it has changed)"


def _check_stable(ksm: Ksm) -> None:
    tree = ksm.stable_tree
    tree.check()
    chains = dups = shared = sharing = 0
    previous: bytes | None = None
    for rb in tree:
        head = rb.value
        assert head.rb is rb, f"stable node {head.node_id} does not point at its tree node"
        members = head.dups if head.is_chain else [head]
        if head.is_chain:
            chains += 1
            dups += len(head.dups)
        content: bytes | None = None
        for node in members:
            assert node.chain is (head if head.is_chain else None), (
                f"node {node.node_id}: wrong chain link")
            assert len(node.hlist) <= ksm.knobs_state.max_page_sharing, (
                f"node {node.node_id} shared {len(node.hlist)} times")
            for item in node.hlist:
                assert item.stable is node and not item.freed, f"node {node.node_id}: bad item"
            if node.hlist:
                shared += 1
                sharing += len(node.hlist) - 1
            if not ksm.is_live(node):
                continue
            page = ksm.page_bytes(node.frame)
            assert xxhash_page(page) == node.content_checksum and page == node.content, (
                f"KSM page {node.frame:#x} of node {node.node_id} changed after merging")
            assert content is None or content == page, (
                f"chain {head.node_id}: duplicates with different contents")
            content = page
        if content is not None:
            assert previous is None or previous < content, "stable tree out of order"
            previous = content
    assert (chains, dups) == (ksm.stable_node_chains, ksm.stable_node_dups), (
        f"{chains} chains / {dups} dups, counters say "
        f"{ksm.stable_node_chains} / {ksm.stable_node_dups}")
    assert (shared, sharing) == (ksm.pages_shared, ksm.pages_sharing), (
        f"{shared} shared / {sharing} sharing, counters say "
        f"{ksm.pages_shared} / {ksm.pages_sharing}")
    nodes = {id(node) for node, _ in _nodes(ksm)}
    for frame, f in ksm.frames.items():
        if f.stable is not None:
            assert id(f.stable) in nodes, f"KSM frame {frame:#x}'s node is not in the tree"


def _check_list(ksm: Ksm) -> None:
    """ksmd's list holds exactly the registered processes, once each; process-wide
    merging implies being on it."""
    listed = [proc.pid for proc in ksm.mm_list]
    assert len(listed) == len(set(listed)), f"a process is twice on ksmd's list: {listed}"
    registered = sorted(pid for pid, proc in ksm.procs.items() if proc.registered)
    assert sorted(listed) == registered, f"ksmd's list {listed}, registered processes {registered}"
    assert -1 <= ksm.scan_index < len(ksm.mm_list), f"scan cursor {ksm.scan_index} off the list"


def check_invariants(ksm: Ksm) -> None:
    """Assert: the machine and every address space are consistent (TLBs included);
    every present user PTE maps a tracked frame or the zero page; mapcounts equal the
    PTEs; no frame is leaked; KSM pages and the zero page are never mapped writable;
    ``ksm_zero_pages`` counts the KSM zero PTEs; rmap lists are ordered and counted;
    both trees are red-black, the stable tree ordered by content, the unstable tree
    ordered while none of its pages changed; every stable node's KSM page still has
    the content it was merged with; chain, dup, shared, sharing and unshared counts and
    every counter agree with the state."""
    _check_ptes(ksm)
    _check_list(ksm)
    _check_items(ksm)
    _check_unstable(ksm)
    _check_stable(ksm)
    counters = ksm.counters()
    assert set(counters) == set(COUNTERS), "counter names differ from the spec's"
    assert counters["pages_volatile"] == max(
        0, ksm.rmap_items - ksm.pages_shared - ksm.pages_sharing - ksm.pages_unshared)
    assert ksm.zero_frame not in ksm.frames, "the zero page is tracked as a user frame"
    assert ksm.machine.frames.is_allocated(ksm.zero_frame), "the zero page was freed"
