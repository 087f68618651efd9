"""The research optimisations of ksmd that are more than a test in the scan loop.

:class:`Optimisations` is a small component that ksmd (:class:`~impl.ksm_scan.KsmEngine`)
owns and calls at two points; it reaches the engine only through :class:`ScanEngine`,
the public part of the engine it needs (the kernel's steps by their kernel names), so
that :mod:`impl.ksm_scan` stays the kernel's algorithm and this module touches none of
its private state.

- :meth:`Optimisations.lookahead` — after X of one process merged with X' of another,
  try X+1 against X'+1 first (one memcmp) before any tree search. The engine records
  each merge's partner with :meth:`Optimisations.remember` and drops the hint at the
  start of every full scan (:meth:`Optimisations.forget`). It never changes what merges
  with what, only how many comparisons it takes: when X'+1 is in the unstable tree and
  equal, the stable tree is still searched first (the content may have become a KSM
  page with room since X'+1 was inserted, and stock ksmd would merge into that page
  instead of making a chained duplicate); when X'+1 is one of a chain's duplicates, or
  full, the normal path runs (the stable search picks the duplicate). So lookahead
  saves the unstable-tree search for an unstable partner, and both tree searches for a
  stable one.
- :meth:`Optimisations.drop_duplicate_host_pages` — the exclusive host cache: at the end
  of a full scan, host page-cache pages whose content is in the stable or unstable tree
  are dropped (the paper's "for all unmapped pages in the host: if page in KSM stable or
  unstable tree: drop page"). The searches are ordinary tree walks, counted in the
  ``comparisons`` statistic; a stale stable node met on the way is pruned as
  ``stable_tree_search`` does; an unstable-tree page that is no longer mergeable ends
  the unstable search (as ``unstable_tree_search_insert`` does).
"""

from __future__ import annotations

from typing import Protocol

from impl.ksm_state import Frame, Process, RmapItem, StableNode
from impl.ksm_tree import RbTree
from impl.mmu_emu import Machine

PAGE = 4096


class ScanEngine(Protocol):
    """What the optimisations use of ksmd: its records and its kernel-named steps."""

    machine: Machine
    frames: dict[int, Frame]
    stats: dict[str, int]
    stable_tree: RbTree[StableNode]
    unstable_tree: RbTree[RmapItem]
    unstable_gen: int
    host_pages: dict[int, int]

    def page_bytes(self, frame: int) -> bytes: ...
    def memcmp_pages(self, page: bytes, frame: int) -> int: ...
    def get_page(self, frame: int) -> None: ...
    def put_page(self, frame: int) -> None: ...
    def get_mergeable_page(self, item: RmapItem) -> int | None: ...
    def is_page_sharing_candidate(self, node: StableNode, offset: int = 0) -> bool: ...
    def stable_node_chain(self, snode: StableNode, prune: bool) -> StableNode | None: ...
    def stable_tree_search(self, frame: int, page: bytes) -> StableNode | None: ...
    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None: ...
    def try_to_merge_with_ksm_page(self, item: RmapItem, frame: int, kframe: int | None) -> bool: ...
    def merge_into_stable(self, item: RmapItem, frame: int, knode: StableNode) -> bool: ...
    def merge_pair(self, item: RmapItem, frame: int, tree_item: RmapItem, tree_frame: int) -> bool: ...


class Optimisations:
    """Lookahead and the exclusive host cache over one :class:`ScanEngine`.

    Guarantees: :meth:`lookahead` merges a page only with a page that the normal path
    would have merged it with (the same KSM page, or the same unstable partner), after
    the same write-protect/compare/re-check steps (it calls the engine's); and
    :meth:`drop_duplicate_host_pages` drops exactly the host pages whose content is in a
    tree."""

    __slots__ = ("engine", "hint")

    def __init__(self, engine: ScanEngine) -> None:
        self.engine = engine
        #: Lookahead hint: (process, next address, partner rmap item).
        self.hint: tuple[Process, int, RmapItem] | None = None

    def remember(self, item: RmapItem, partner: RmapItem | None) -> None:
        """Record that ``item`` just merged with ``partner`` (try their next pages first)."""
        if partner is not None:
            self.hint = (item.proc, item.addr + PAGE, partner)

    def forget(self) -> None:
        """Drop the hint (a new full scan starts, or everything was unmerged)."""
        self.hint = None

    def lookahead(self, item: RmapItem, frame: int, page: bytes) -> bool:
        """Try the partner's next page first. True if it merged the page (the normal
        path is then skipped)."""
        engine = self.engine
        hint, self.hint = self.hint, None
        if hint is None or hint[0] is not item.proc or hint[1] != item.addr:
            return False
        partner = hint[2]
        nxt = partner.next
        if partner.freed or nxt is None or nxt.addr != partner.addr + PAGE:
            return False
        pframe = engine.get_mergeable_page(nxt)
        if pframe is None or pframe == frame:
            return False
        pf = engine.frames[pframe]
        node = pf.stable if pf.ksm else None
        if node is None and nxt.unstable_gen != engine.unstable_gen:
            return False
        if node is not None and (node.chain is not None or not engine.is_page_sharing_candidate(node)):
            # A full KSM page, or one of a chain's duplicates: the stable search chooses
            # the duplicate (as stock ksmd does), so the normal path decides.
            return False
        if engine.memcmp_pages(page, pframe) != 0:
            engine.stats["lookahead_misses"] += 1
            return False
        if node is not None:
            engine.get_page(pframe)
            try:
                merged = engine.try_to_merge_with_ksm_page(item, frame, pframe)
            finally:
                engine.put_page(pframe)
            if merged:
                engine.stable_tree_append(item, node)
                engine.stats["merges"] += 1
                self.remember(item, nxt)
        else:
            # The partner is in the unstable tree, but its content may have become a KSM
            # page with room since the partner was inserted: stock ksmd would merge into
            # that page, not make a new (chained) duplicate, so search the stable tree first.
            knode = engine.stable_tree_search(frame, page)
            if knode is not None:
                engine.merge_into_stable(item, frame, knode)
                return True
            merged = engine.merge_pair(item, frame, nxt, pframe)
        if merged:
            engine.stats["lookahead_hits"] += 1
        return merged

    def in_trees(self, page: bytes) -> bool:
        """Whether ``page`` equals a page of the stable or the unstable tree."""
        engine = self.engine
        while True:
            rb = engine.stable_tree.root
            restart = False
            while rb is not None:
                dup = engine.stable_node_chain(rb.value, prune=False)
                if dup is None:
                    restart = True
                    break
                ret = engine.memcmp_pages(page, dup.frame)
                if ret == 0:
                    return True
                rb = rb.left if ret < 0 else rb.right
            if not restart:
                break
        rb2 = engine.unstable_tree.root
        while rb2 is not None:
            frame = engine.get_mergeable_page(rb2.value)
            if frame is None:
                return False
            ret = engine.memcmp_pages(page, frame)
            if ret == 0:
                return True
            rb2 = rb2.left if ret < 0 else rb2.right
        return False

    def drop_duplicate_host_pages(self) -> None:
        """Exclusive host cache: drop every host page-cache page found in either tree."""
        engine = self.engine
        for page_id in list(engine.host_pages):
            frame = engine.host_pages[page_id]
            if self.in_trees(engine.page_bytes(frame)):
                del engine.host_pages[page_id]
                engine.machine.free_frame(frame)
                engine.stats["host_cache_dropped"] += 1
