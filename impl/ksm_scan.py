"""ksmd: the scanner, the two trees and the merge steps of ``mm/ksm.c``, on the emulated MMU.

:class:`KsmEngine` is the kernel half of :class:`impl.ksm.Ksm` (which adds the
process-facing calls); its state and its frame and page-table helpers are
:class:`impl.ksm_base.KsmBase`. It follows Linux 6.12's ``mm/ksm.c`` function by function —
``scan_get_next_rmap_item``, ``get_next_rmap_item``, ``should_skip_rmap_item``,
``cmp_and_merge_page``, ``stable_tree_search``/``stable_tree_insert`` with stable-node
chains (``chain_prune``/``stable_node_dup``), ``unstable_tree_search_insert``,
``try_to_merge_one_page`` → ``write_protect_page`` → ``pages_identical`` →
``replace_page``, ``remove_rmap_item_from_tree``, ``remove_node_from_stable_tree`` and
``break_ksm`` — and every page-table change goes through the emulated tables: PTEs are
read from the page-table frames (the PT frame of each 2 MiB region is cached, tables are
never freed while a process lives) and changed with ``AddressSpace.unmap``/``map``/
``protect``, which write the 8-byte entry and ``invlpg`` it — ``ptep_clear_flush``
followed by ``set_pte_at``. So a step that is skipped leaves a real wrong translation
(or a stale writable TLB entry) behind.

Choices where the kernel depends on things not emulated (written down as the design
asks):

- No NUMA (one stable and one unstable tree), no THP, no swap, no fork, no migration:
  ``migrate_nodes`` and the ``max_page_sharing_bypass`` of forked KSM pages never arise.
- ``write_protect_page`` always checks pins (the kernel checks them when it has to clear
  a writable/dirty/exclusive PTE, which for an emulated pinned page is always).
- The page lock: ``try_to_merge_one_page`` holds the page's lock (``Frame.locked``)
  from write-protection to replacement, as the kernel's ``folio_trylock`` does, so a
  user write fault on the page in that window copies it (``wp_page_copy``) instead of
  reusing it (``wp_can_reuse_anon_folio`` needs the lock). Without that, a store racing
  with the first half of a two-page merge would make the page writable again just
  before it becomes a KSM page.
- Race points: the merge path calls :attr:`KsmEngine.race_hook` (if set) with
  ``"after_write_protect"`` and ``"after_compare"`` and the (pid, address) being merged,
  so a test can run a user store "on another CPU" between the steps — where the kernel
  relies on the write-protect + TLB flush and the PTE re-check to make that store either
  fault or abort the merge.
- Research optimisations: **lookahead** (``knobs.lookahead``): after the page at X of one
  process merges with X' (via the unstable tree, or into a stable page mapped at X'),
  the scanner remembers X' 's rmap item; if the next page it scans is X+1 of the same
  process, passed the checksum test, and X'+1 has the next rmap item of that process,
  it compares X+1 with X'+1 first — one memcmp — and on equality merges into that KSM
  page, or merges the two into a new KSM page when X'+1 is in the unstable tree, before
  any tree search. **Exclusive host cache**: at the end of every full scan (before the
  unstable tree is discarded) every host page-cache page whose content is found in the
  stable or unstable tree is dropped (its frame freed). Page-cache skipping is in the
  scan loop (such pages get no rmap item, as the spec says).
- Speed (no change in behaviour): page-table frames are DRAM frames, so PT entries are
  read in place from DRAM; each rmap item caches the address of its PT entry, valid
  while its process's mapping layout is unchanged (``Process.layout_gen``; page tables
  are never freed while a process lives); a stable node keeps its KSM page's content
  (which never changes while the node is live — :func:`impl.ksm_check.check_invariants`
  asserts it), so stable-tree walks compare with it without copying the frame; and
  comparisons order pages by their first 8 bytes read in place as a big-endian number
  (``memcmp``'s order) before copying a frame. The ``comparisons`` statistic counts
  exactly the comparisons the kernel's walks make.
- Virtual time: a batch takes no time; ksmd then sleeps ``sleep_millisecs`` (at least 1
  ms, so that ``sleep_millisecs = 0`` cannot spin forever in virtual time).
"""

from __future__ import annotations

from impl.ksm_base import HEAD_AT, KSM_ZERO_BIT, MERGEABLE_FLAG, PAGE, PAGE_MASK, U64_AT, KsmBase, RaceHook
from impl.ksm_hash import checksum_function, xxhash_page
from impl.ksm_optim import Optimisations
from impl.ksm_state import Frame, Process, RmapItem, StableNode
from impl.ksm_tree import RbNode
from impl.mmu_emu import Machine
from spec.ksm_api import GuestKind, KsmKnobs, RunMode
from spec.paging import ADDR_MASK, RW, US, D, P

#: ``ksm_stable_node_chains_prune_millisecs`` (the kernel's default; not a knob here).
CHAIN_PRUNE_MS = 2000
_AGE_MAX = 255

__all__ = ["CHAIN_PRUNE_MS", "KSM_ZERO_BIT", "PAGE", "PAGE_MASK", "KsmEngine", "RaceHook"]


def _skip_age(age: int) -> int:
    """The kernel's ``skip_age``: how many scans a page of this age may be skipped."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


class KsmEngine(KsmBase):
    """ksmd and its data structures over one emulated :class:`Machine`.

    Guarantees (checked by :meth:`impl.ksm.Ksm.check_invariants`): a page is merged only
    after its PTE was write-protected and flushed, it was found unpinned, its content was
    compared in full and its PTE re-checked; every KSM page is read-only in every
    mapping; the counters are exactly those the kernel keeps (see ``spec.ksm_api``).
    """

    def __init__(self, machine: Machine, knobs: KsmKnobs) -> None:
        super().__init__(machine, knobs)
        #: Lookahead and the exclusive host cache (:mod:`impl.ksm_optim`).
        self.optimisations = Optimisations(self)
        #: ``stable_node_chains_prune_millisecs`` (not a Protocol knob: a harness that
        #: compares with a kernel driven in real time sets both to 0).
        self.chain_prune_ms = CHAIN_PRUNE_MS

    # == rmap items and trees ========================================================
    def _free_item(self, item: RmapItem) -> None:
        self.rmap_items -= 1
        item.proc.rmap_items -= 1
        item.freed = True

    def remove_rmap_item_from_tree(self, item: RmapItem) -> None:
        """``remove_rmap_item_from_tree``: take ``item`` off its stable node or out of
        the unstable tree, updating the counters."""
        node = item.stable
        if node is not None:
            if not self.is_live(node):
                self.remove_node_from_stable_tree(node)
                return
            node.hlist.remove(item)
            if node.hlist:
                self.pages_sharing -= 1
            else:
                self.pages_shared -= 1
            item.proc.merging_pages -= 1
            item.stable = None
        elif item.unstable_gen is not None:
            if item.unstable_gen == self.unstable_gen and isinstance(item.rb, RbNode):
                self.unstable_tree.erase(item.rb)
            item.rb = None
            item.unstable_gen = None
            self.pages_unshared -= 1

    def remove_node_from_stable_tree(self, node: StableNode) -> None:
        """``remove_node_from_stable_tree``: drop a (stale) node and its items' links."""
        for i, item in enumerate(node.hlist):
            if i == 0:
                self.pages_shared -= 1
            else:
                self.pages_sharing -= 1
            item.proc.merging_pages -= 1
            item.stable = None
        node.hlist.clear()
        if node.chain is not None:
            node.chain.dups.remove(node)
            node.chain = None
            self.stable_node_dups -= 1
        elif isinstance(node.rb, RbNode):
            self.stable_tree.erase(node.rb)
            node.rb = None

    def is_page_sharing_candidate(self, node: StableNode, offset: int = 0) -> bool:
        """``__is_page_sharing_candidate``."""
        n = len(node.hlist)
        return n > 0 and n + offset < self.knobs_state.max_page_sharing

    def stable_node_chain(self, snode: StableNode, prune: bool) -> StableNode | None:
        """``__stable_node_chain``: the node to compare with for tree node ``snode`` —
        itself if plain and live, the best dup of a chain — or None if it was stale
        (then it has been removed and the caller restarts its walk)."""
        if not snode.is_chain:
            if self.is_live(snode):
                return snode
            self.remove_node_from_stable_tree(snode)
            return None
        if prune and self.now_ms >= snode.chain_prune_time + self.chain_prune_ms:
            snode.chain_prune_time = self.now_ms
        else:
            prune = False
        found: StableNode | None = None
        found_len = 0
        for dup in list(snode.dups):
            if not self.is_live(dup):
                self.remove_node_from_stable_tree(dup)
                continue
            if found is None or (
                self.is_page_sharing_candidate(dup)
                and (not self.is_page_sharing_candidate(found) or len(dup.hlist) > found_len)
            ):
                found, found_len = dup, len(dup.hlist)
                if not prune and self.is_page_sharing_candidate(found):
                    break
        if found is None:
            assert isinstance(snode.rb, RbNode)
            self.stable_tree.erase(snode.rb)
            snode.rb = None
            self.stable_node_chains -= 1
            return None
        if len(snode.dups) == 1:
            # Collapse the chain: the one dup takes the chain's place in the tree.
            assert isinstance(snode.rb, RbNode)
            self.stable_tree.replace(snode.rb, found)
            found.rb, snode.rb = snode.rb, None
            found.chain = None
            snode.dups.clear()
            self.stable_node_chains -= 1
            self.stable_node_dups -= 1
        elif snode.dups[0] is not found and self.is_page_sharing_candidate(found, 1):
            snode.dups.remove(found)
            snode.dups.insert(0, found)
        return found

    def stable_tree_search(self, frame: int, page: bytes) -> StableNode | None:
        """``stable_tree_search``: the stable node (dup) whose KSM page equals ``page``
        and can take one more sharer, or None."""
        frames = self.frames
        f = frames[frame]
        if f.ksm and f.stable is not None:
            return f.stable  # a KSM page already
        compared = 0
        try:
            while True:
                rb = self.stable_tree.root
                restart = False
                while rb is not None:
                    dup = rb.value
                    if dup.is_chain:
                        found = self.stable_node_chain(dup, prune=True)
                    else:  # __stable_node_chain of a plain node: the keyhole test
                        kf = frames.get(dup.frame)
                        found = dup if kf is not None and kf.stable is dup else self.stable_node_chain(dup, prune=True)
                    if found is None:
                        restart = True
                        break
                    compared += 1
                    content = found.content  # the KSM page's content (it never changes)
                    if page == content:
                        return found if self.is_page_sharing_candidate(found) else None
                    rb = rb.left if page < content else rb.right
                if not restart:
                    return None
        finally:
            self.stable_tree.comparisons += compared
            self.stats["comparisons"] += compared

    def stable_tree_insert(self, kframe: int) -> StableNode:
        """``stable_tree_insert``: a new stable node for the KSM page ``kframe``, in the
        tree or as a dup in the chain of an equal node (making the chain if needed)."""
        page = self.page_bytes(kframe)
        while True:
            rb = self.stable_tree.root
            parent: RbNode[StableNode] | None = None
            left = False
            equal: RbNode[StableNode] | None = None
            restart = False
            while rb is not None:
                dup = self.stable_node_chain(rb.value, prune=False)
                if dup is None:
                    restart = True
                    break
                self.stable_tree.comparisons += 1
                ret = self.memcmp_pages(page, dup.frame)
                parent = rb
                if ret < 0:
                    rb, left = rb.left, True
                elif ret > 0:
                    rb, left = rb.right, False
                else:
                    equal = rb
                    break
            if not restart:
                break
        node = StableNode(self.next_node_id, kframe)
        self.next_node_id += 1
        node.content_checksum = xxhash_page(page)
        node.content = page
        if equal is None:
            node.rb = self.stable_tree.link(node, parent, left)
        else:
            head = equal.value
            if not head.is_chain:
                chain = StableNode(self.next_node_id, -1, is_chain=True)
                self.next_node_id += 1
                chain.chain_prune_time = self.now_ms
                self.stable_tree.replace(equal, chain)
                chain.rb, head.rb = equal, None
                self.stable_node_chains += 1
                head.chain = chain
                chain.dups.insert(0, head)
                self.stable_node_dups += 1
                head = chain
            node.chain = head
            head.dups.insert(0, node)
            self.stable_node_dups += 1
        self.frames[kframe].stable = node
        return node

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        """``stable_tree_append``: hang ``item`` on ``node``."""
        node.hlist.append(item)
        item.stable = node
        if len(node.hlist) == 1:
            self.pages_shared += 1
        else:
            self.pages_sharing += 1
        item.proc.merging_pages += 1

    def get_mergeable_page(self, item: RmapItem) -> int | None:
        """``get_mergeable_page``: the anonymous frame at the item's address if its VMA
        is still mergeable."""
        if not self.find_mergeable_vma(item.proc, item.addr):
            return None
        return self.anon_frame(item.proc, item.addr)

    def _mergeable_entry(self, item: RmapItem) -> int:
        """The PT entry at the item's address if a mergeable VMA still covers it, else
        0; caches the entry's address in the item (see ``RmapItem.pte_addr``)."""
        proc = item.proc
        if not self.find_mergeable_vma(proc, item.addr):
            return 0
        entry_addr, entry = self.pte(proc, item.addr)
        if entry_addr:
            item.pte_addr = entry_addr
            item.layout_gen = proc.layout_gen
        return entry

    def unstable_tree_search_insert(
        self, item: RmapItem, frame: int, page: bytes
    ) -> tuple[RmapItem, int] | None:
        """``unstable_tree_search_insert``: an unstable-tree item whose page equals
        ``page`` (with its frame), else insert ``item`` and return None."""
        tree = self.unstable_tree
        rb = tree.root
        parent: RbNode[RmapItem] | None = None
        left = False
        frames = self.frames
        dram = self.dram
        order = self._order
        head: int = HEAD_AT(page)[0]
        compared = 0
        try:
            while rb is not None:
                tree_item = rb.value
                proc = tree_item.proc
                if tree_item.layout_gen == proc.layout_gen:  # get_mergeable_page, cached
                    entry: int = U64_AT(dram, tree_item.pte_addr)[0]
                else:
                    entry = self._mergeable_entry(tree_item)
                tree_frame = entry & ADDR_MASK
                if not entry & P or tree_frame not in frames or tree_frame == frame:
                    return None
                compared += 1
                ret = order(page, head, tree_frame)
                parent = rb
                if ret < 0:
                    rb, left = rb.left, True
                elif ret > 0:
                    rb, left = rb.right, False
                else:
                    return tree_item, tree_frame
        finally:
            tree.comparisons += compared
            self.stats["comparisons"] += compared
        item.unstable_gen = self.unstable_gen
        item.rb = tree.link(item, parent, left)
        self.pages_unshared += 1
        return None

    # == merging (the steps a mutant may override) ===================================
    def _race(self, point: str, proc: Process, va: int) -> None:
        if self.race_hook is not None:
            self.race_hook(point, proc.pid, va)

    def pinned(self, frame: int) -> bool:
        """Whether extra references (pins) forbid merging the page (the refcount test)."""
        return self.frames[frame].pins > 0

    def write_protect_page(self, proc: Process, va: int, frame: int) -> int | None:
        """``write_protect_page``: make the PTE mapping ``frame`` at ``va`` read-only and
        clean, flushing the TLB entry, unless the page is pinned. Returns the new PTE
        (``orig_pte``) or None on failure."""
        entry_addr, entry = self.pte(proc, va)
        if not entry & P or entry & ADDR_MASK != frame:
            return None
        if entry & (RW | D) or self.pinned(frame):
            space = proc.space
            space.unmap(va)  # ptep_clear_flush: the PTE is cleared and the TLB flushed
            if self.pinned(frame):
                space.map(va, frame, entry & ~ADDR_MASK & ~P)  # set_pte_at(orig)
                return None
            entry &= ~(RW | D)
            space.map(va, frame, entry & ~ADDR_MASK & ~P)
        return entry

    def pages_identical(self, frame: int, kframe: int) -> bool:
        """``pages_identical``: full-page comparison (counted)."""
        return self.memcmp_pages(self.page_bytes(frame), kframe) == 0

    def pte_unchanged(self, proc: Process, va: int, orig_pte: int) -> bool:
        """``pte_same(*ptep, orig_pte)`` in ``replace_page``: nothing touched the PTE."""
        return self.pte(proc, va)[1] == orig_pte

    def replace_page(self, proc: Process, va: int, frame: int, kframe: int, orig_pte: int) -> bool:
        """``replace_page``: re-check the PTE, then map ``kframe`` (a KSM page, or the
        zero page) read-only at ``va`` in place of ``frame``."""
        if not self.pte_unchanged(proc, va, orig_pte):
            return False
        user = orig_pte & US
        if kframe == self.zero_frame:
            new = kframe | P | user | KSM_ZERO_BIT
            self.ksm_zero_pages += 1
            proc.zero_pages += 1
        else:
            new = kframe | P | user
            self.frames[kframe].mapcount += 1
        self._set_pte(proc, va, new)
        f = self.frames[frame]
        f.mapcount -= 1
        self._maybe_free(frame, f)
        return True

    def try_to_merge_one_page(self, proc: Process, va: int, frame: int, kframe: int | None) -> bool:
        """``try_to_merge_one_page``: write-protect, then (for ``kframe`` None) make the
        page a KSM page, else compare in full and replace. True on success."""
        if frame == kframe:
            return True
        f = self.frames.get(frame)
        if f is None or f.locked:
            return False
        f.locked = True  # folio_trylock: a racing write fault copies, never reuses
        try:
            orig_pte = self.write_protect_page(proc, va, frame)
            if orig_pte is None:
                return False
            self._race("after_write_protect", proc, va)
            if kframe is None:
                f.ksm = True
                f.stable = None
                return True
            if not self.pages_identical(frame, kframe):
                return False
            self._race("after_compare", proc, va)
            return self.replace_page(proc, va, frame, kframe, orig_pte)
        finally:
            f.locked = False

    def try_to_merge_with_ksm_page(self, item: RmapItem, frame: int, kframe: int | None) -> bool:
        """``try_to_merge_with_ksm_page``."""
        if not self.find_mergeable_vma(item.proc, item.addr):
            return False
        if not self.try_to_merge_one_page(item.proc, item.addr, frame, kframe):
            return False
        self.remove_rmap_item_from_tree(item)
        return True

    def try_to_merge_two_pages(
        self, item: RmapItem, frame: int, tree_item: RmapItem, tree_frame: int
    ) -> int | None:
        """``try_to_merge_two_pages``: the new KSM page's frame, or None."""
        if self.try_to_merge_with_ksm_page(item, frame, None):
            if self.try_to_merge_with_ksm_page(tree_item, tree_frame, frame):
                return frame
            self.break_cow(item)
        return None

    def break_cow(self, item: RmapItem) -> None:
        """``break_cow``: undo a half-made merge by breaking the KSM page at the item."""
        if self.find_mergeable_vma(item.proc, item.addr):
            self.break_ksm(item.proc, item.addr)

    def break_ksm(self, proc: Process, va: int) -> None:
        """``break_ksm``: if ``va`` maps a KSM page (or the zero page by KSM), give it a
        private copy (an unsharing fault: the new PTE is read-only and clean, as the
        kernel's ``FAULT_FLAG_UNSHARE`` leaves it)."""
        entry = self.pte(proc, va)[1]
        if not entry & P:
            return
        frame = entry & ADDR_MASK
        if frame == self.zero_frame:
            if entry & KSM_ZERO_BIT:
                new_frame = self.machine.alloc_frame()
                self.frames[new_frame] = Frame()
                self._set_pte(proc, va, new_frame | P | (entry & US))
                self.ksm_zero_pages -= 1
                proc.zero_pages -= 1
            return
        f = self.frames.get(frame)
        if f is None or not f.ksm:
            return
        self.copy_on_write(proc, va, frame, writable=False)

    def copy_on_write(self, proc: Process, va: int, frame: int, *, writable: bool) -> None:
        """Give ``va`` a private copy of ``frame`` (``wp_page_copy``) — a KSM page, or a
        private page ksmd has locked while merging it: copy, map the copy (writable and
        dirty for a write fault), drop the mapping."""
        new_frame = self.machine.alloc_frame(zero=False)
        self.dram[new_frame : new_frame + PAGE] = self.dram[frame : frame + PAGE]
        self.frames[new_frame] = Frame()
        entry = self.pte(proc, va)[1]
        value = new_frame | P | (entry & US) | ((RW | D) if writable else 0)
        self._set_pte(proc, va, value)
        f = self.frames[frame]
        if f.ksm:
            self.stats["cow_ksm"] += 1
        f.mapcount -= 1
        self._maybe_free(frame, f)

    # == cmp_and_merge_page ==========================================================
    def checksum_changed(self, item: RmapItem, checksum: int) -> bool:
        """The volatility test: store ``checksum``; True if it differs from the last."""
        if item.oldchecksum != checksum:
            item.oldchecksum = checksum
            return True
        return False

    def try_to_merge_with_zero_page(self, item: RmapItem, frame: int) -> bool:
        """``try_to_merge_with_zero_page``: True when done (merged, or VMA gone)."""
        zero_sum = self.zero_checksums[self.knobs_state.checksum]
        if not (self.knobs_state.use_zero_pages and item.oldchecksum == zero_sum):
            return False
        if not self.find_mergeable_vma(item.proc, item.addr):
            return True
        return self.try_to_merge_one_page(item.proc, item.addr, frame, self.zero_frame)

    def cmp_and_merge_page(self, item: RmapItem, frame: int) -> None:
        """``cmp_and_merge_page``: the per-page step of ksmd."""
        f = self.frames[frame]
        node = f.stable if f.ksm else None
        page = b""
        if node is not None:
            if item.stable is node:
                return
        else:
            self.remove_rmap_item_from_tree(item)
            page = self.page_bytes(frame)
            if self.checksum_changed(item, self._checksum(page)):
                return
            if self.try_to_merge_with_zero_page(item, frame):
                return
            if self.knobs_state.lookahead and self.optimisations.lookahead(item, frame, page):
                return
        knode = self.stable_tree_search(frame, page)
        self.remove_rmap_item_from_tree(item)
        if knode is not None:
            self.merge_into_stable(item, frame, knode)
            return
        found = self.unstable_tree_search_insert(item, frame, page)
        if found is not None:
            self.merge_pair(item, frame, *found)

    def merge_into_stable(self, item: RmapItem, frame: int, knode: StableNode) -> bool:
        """Merge the scanned page into the KSM page of ``knode`` (the stable-tree branch
        of ``cmp_and_merge_page``); True if it merged."""
        kframe = knode.frame
        self.get_page(kframe)
        try:
            if not self.try_to_merge_with_ksm_page(item, frame, kframe):
                return False
            self.stable_tree_append(item, knode)
            self.stats["merges"] += 1
            partner = next((i for i in knode.hlist if i.proc is not item.proc), None)
            self._remember(item, partner)
            return True
        finally:
            self.put_page(kframe)

    def merge_pair(self, item: RmapItem, frame: int, tree_item: RmapItem, tree_frame: int) -> bool:
        """Merge the scanned page with an unstable-tree page into a new KSM page."""
        self.get_page(tree_frame)
        try:
            kframe = self.try_to_merge_two_pages(item, frame, tree_item, tree_frame)
        finally:
            self.put_page(tree_frame)
        if kframe is None:
            return False
        node = self.stable_tree_insert(kframe)
        self.stable_tree_append(tree_item, node)
        self.stable_tree_append(item, node)
        self.stats["merges"] += 1
        self._remember(item, tree_item)
        return True

    def _remember(self, item: RmapItem, partner: RmapItem | None) -> None:
        """Record the lookahead hint after a merge of ``item`` with ``partner``."""
        if self.knobs_state.lookahead:
            self.optimisations.remember(item, partner)

    # == the scan loop ===============================================================
    def _get_next_rmap_item(self, proc: Process, va: int) -> RmapItem:
        """``get_next_rmap_item``: the item for ``va`` after the cursor, freeing the
        items of addresses passed over; a new one if there is none."""
        prev = self.scan_prev
        item = prev.next if prev is not None else proc.rmap_head
        while item is not None:
            if item.addr == va:
                return item
            if item.addr > va:
                break
            nxt = item.next
            if prev is None:
                proc.rmap_head = nxt
            else:
                prev.next = nxt
            self.remove_rmap_item_from_tree(item)
            self._free_item(item)
            item = nxt
        new = RmapItem(proc, va)
        new.next = item
        if prev is None:
            proc.rmap_head = new
        else:
            prev.next = new
        self.rmap_items += 1
        proc.rmap_items += 1
        return new

    def remove_trailing_rmap_items(self, proc: Process, prev: RmapItem | None) -> None:
        """``remove_trailing_rmap_items``: free every item after ``prev`` (None: all)."""
        item = prev.next if prev is not None else proc.rmap_head
        if prev is None:
            proc.rmap_head = None
        else:
            prev.next = None
        while item is not None:
            nxt = item.next
            self.remove_rmap_item_from_tree(item)
            self._free_item(item)
            item = nxt

    def _should_skip(self, item: RmapItem, frame: int) -> bool:
        """``should_skip_rmap_item`` (smart scan)."""
        if not self.knobs_state.smart_scan or self.frames[frame].ksm:
            return False
        age = item.age
        if age != _AGE_MAX:
            item.age += 1
        if age < 3:
            return False
        if not item.remaining_skips:
            item.remaining_skips = _skip_age(age)
            return False
        self.pages_skipped += 1
        item.remaining_skips -= 1
        self.remove_rmap_item_from_tree(item)
        return True

    def _next_in_process(self, proc: Process) -> tuple[RmapItem, int] | None:
        """The next page of ``proc`` to merge from the cursor on, with its item."""
        space = proc.space
        skip_cache = self.knobs_state.skip_page_cache
        kinds = proc.kinds
        frames = self.frames
        dram = self.dram
        pt_cache = proc.pt_cache
        va = self.scan_addr
        for vma in space.vmas():
            if vma.end <= va or not vma.flags._value_ & MERGEABLE_FLAG:
                continue
            va = max(va, vma.start)
            end = vma.end
            while va < end:
                pt = pt_cache.get(va >> 21)
                if pt is None:
                    entry = self.pte(proc, va)[1]
                    if not entry and (va >> 21) not in pt_cache:
                        va = min(end, (va | 0x1F_FFFF) + 1)  # no page table here
                        continue
                    pt = pt_cache[va >> 21]
                entry_addr = pt + ((va >> 9) & 0xFF8)
                entry = U64_AT(dram, entry_addr)[0]
                if entry & P:
                    frame = entry & ADDR_MASK
                    if frame in frames and not (
                        skip_cache and kinds.get(va) is GuestKind.PAGE_CACHE
                    ):
                        item = self._get_next_rmap_item(proc, va)
                        item.pte_addr = entry_addr
                        item.layout_gen = proc.layout_gen
                        self.scan_prev = item
                        if not self._should_skip(item, frame):
                            self.scan_addr = va + PAGE
                            return item, frame
                    elif frame in frames:
                        self.stats["page_cache_skipped"] += 1
                        if frames[frame].ksm:
                            # Merged before it was skipped: a skipped page is not shared
                            # (the model's "never merged"), so it is unshared at once, as
                            # MADV_UNMERGEABLE does, and its rmap item goes when ksmd
                            # passes it. Left mapped, it would be a KSM mapping with no
                            # rmap item, which a later scan could only hang on its node
                            # past max_page_sharing (the kernel's forked-KSM-page bypass).
                            self.break_ksm(proc, va)
                va += PAGE
            self.scan_addr = va
        self.scan_addr = va
        return None

    def scan_get_next_rmap_item(self) -> tuple[RmapItem, int] | None:
        """``scan_get_next_rmap_item``: the next page to merge, or None at the end of a
        full scan (``full_scans`` has then been counted)."""
        if self.scan_index < 0:
            # Start of a full scan: the unstable tree is discarded.
            self.unstable_tree.clear()
            self.unstable_gen += 1
            self.stores_at_unstable_start = self.user_stores
            self.optimisations.forget()
            if not self.mm_list:
                return None  # nothing to scan: ksmd sleeps, no full scan completes
            self._start_process(0)
        while True:
            proc = self.mm_list[self.scan_index]
            found = self._next_in_process(proc)
            if found is not None:
                return found
            self.remove_trailing_rmap_items(proc, self.scan_prev)
            following = self.scan_index + 1
            if self.scan_addr == 0:
                # No mergeable mapping met in this pass: the mm leaves ksmd's list
                # (MMF_VM_MERGEABLE is cleared; process-wide merging stays on, as Linux
                # 6.18 keeps MMF_VM_MERGE_ANY: its next mapping brings it back).
                del self.mm_list[self.scan_index]
                proc.registered = False
                following = self.scan_index
            if following < len(self.mm_list):
                self._start_process(following)
                continue
            self.scan_index = -1
            self.scan_prev = None
            self._end_full_scan()
            return None

    def _start_process(self, index: int) -> None:
        self.scan_index = index
        self.scan_addr = 0
        self.scan_prev = None

    def _end_full_scan(self) -> None:
        if self.knobs_state.exclusive_host_cache:
            self.optimisations.drop_duplicate_host_pages()
        self.seqnr += 1

    def do_scan(self, npages: int) -> None:
        """``ksm_do_scan``: merge up to ``npages`` pages (stops at a full scan's end)."""
        for _ in range(npages):
            found = self.scan_get_next_rmap_item()
            if found is None:
                return
            item, frame = found
            self.get_page(frame)
            try:
                self.cmp_and_merge_page(item, frame)
            finally:
                self.put_page(frame)
            self.stats["pages_scanned"] += 1

    def set_checksum(self, name: str) -> None:
        """Switch the checksum function (stored checksums then look changed once)."""
        self._checksum = checksum_function(name)

    def is_running(self) -> bool:
        """Whether ksmd merges (``run`` is MERGE)."""
        return self.knobs_state.run == RunMode.MERGE
