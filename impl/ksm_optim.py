"""The research optimisations of ksmd that are more than a test in the scan loop.

- :func:`lookahead` — after X of one process merged with X' of another, try X+1
  against X'+1 first (one memcmp) before any tree search (see :mod:`impl.ksm_scan`).
  It never changes what merges with what, only how many comparisons it takes: when
  X'+1 is in the unstable tree and equal, the stable tree is still searched first (the
  content may have become a KSM page with room since X'+1 was inserted, and stock ksmd
  would merge into that page instead of making a chained duplicate); when X'+1 is one
  of a chain's duplicates, or full, the normal path runs (the stable search picks the
  duplicate). So lookahead saves the unstable-tree search for an unstable partner, and
  both tree searches for a stable one.
- :func:`drop_duplicate_host_pages` — the exclusive host cache: at the end of a full
  scan, host page-cache pages whose content is in the stable or unstable tree are
  dropped (the paper's "for all unmapped pages in the host: if page in KSM stable or
  unstable tree: drop page"). The searches are ordinary tree walks, counted in the
  ``comparisons`` statistic; a stale stable node met on the way is pruned as
  ``stable_tree_search`` does; an unstable-tree page that is no longer mergeable ends
  the unstable search (as ``unstable_tree_search_insert`` does).

They are functions of the engine (``self`` is the :class:`~impl.ksm_scan.KsmEngine`)
so that :mod:`impl.ksm_scan` stays the kernel's algorithm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.ksm_state import RmapItem

if TYPE_CHECKING:
    from impl.ksm_scan import KsmEngine

PAGE = 4096


def lookahead(self: KsmEngine, item: RmapItem, frame: int, page: bytes) -> bool:
    """The lookahead optimisation: try the partner's next page first. True if it
    merged the page (the normal path is skipped)."""
    hint, self.hint = self.hint, None
    if hint is None or hint[0] is not item.proc or hint[1] != item.addr:
        return False
    partner = hint[2]
    nxt = partner.next
    if partner.freed or nxt is None or nxt.addr != partner.addr + PAGE:
        return False
    pframe = self.get_mergeable_page(nxt)
    if pframe is None or pframe == frame:
        return False
    pf = self.frames[pframe]
    node = pf.stable if pf.ksm else None
    if node is None and nxt.unstable_gen != self.unstable_gen:
        return False
    if node is not None and (node.chain is not None or not self._is_candidate(node)):
        # A full KSM page, or one of a chain's duplicates: the stable search chooses
        # the duplicate (as stock ksmd does), so the normal path decides.
        return False
    if self._memcmp(page, pframe) != 0:
        self.stats["lookahead_misses"] += 1
        return False
    if node is not None:
        self._hold(pframe)
        try:
            merged = self.try_to_merge_with_ksm_page(item, frame, pframe)
        finally:
            self._release(pframe)
        if merged:
            self.stable_tree_append(item, node)
            self.stats["merges"] += 1
            self._remember(item, nxt)
    else:
        # The partner is in the unstable tree, but its content may have become a KSM
        # page with room since the partner was inserted: stock ksmd would merge into
        # that page, not make a new (chained) duplicate, so search the stable tree first.
        knode = self.stable_tree_search(frame, page)
        if knode is not None:
            self.merge_into_stable(item, frame, knode)
            return True
        merged = self._merge_pair(item, frame, nxt, pframe)
    if merged:
        self.stats["lookahead_hits"] += 1
    return merged


def in_trees(self: KsmEngine, page: bytes) -> bool:
    """Whether ``page`` equals a page of the stable or the unstable tree."""
    while True:
        rb = self.stable_tree.root
        restart = False
        while rb is not None:
            dup = self._chain(rb.value, prune=False)
            if dup is None:
                restart = True
                break
            ret = self._memcmp(page, dup.frame)
            if ret == 0:
                return True
            rb = rb.left if ret < 0 else rb.right
        if not restart:
            break
    rb2 = self.unstable_tree.root
    while rb2 is not None:
        frame = self.get_mergeable_page(rb2.value)
        if frame is None:
            return False
        ret = self._memcmp(page, frame)
        if ret == 0:
            return True
        rb2 = rb2.left if ret < 0 else rb2.right
    return False


def drop_duplicate_host_pages(self: KsmEngine) -> None:
    """Exclusive host cache: drop every host page-cache page found in either tree."""
    for page_id in list(self.host_pages):
        frame = self.host_pages[page_id]
        if in_trees(self, self.page_bytes(frame)):
            del self.host_pages[page_id]
            self.machine.free_frame(frame)
            self.stats["host_cache_dropped"] += 1
