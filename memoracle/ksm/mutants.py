"""Deliberately broken KSM implementations: each one skips one step the kernel relies on.

Every mutant is a subclass of :class:`impl.ksm.Ksm` that overrides one small step of
the merge or fault path. The checks (views before/after a merge with a racing store,
``check_invariants``, the conformance machine) must catch each of them:

- :class:`NoWriteProtectKsm` — ``write_protect_page`` leaves the PTE writable and the
  TLB entry in place: a store racing with the merge lands in a page that is then
  replaced (the store is lost), and the new KSM page stays writable.
- :class:`CompareBeforeProtectKsm` — compares the pages *before* write-protecting, so a
  store between the compare and the write-protect is merged away.
- :class:`NoPteRecheckKsm` — ``replace_page`` does not re-check that the PTE is the one
  it write-protected, so a store that faulted in after the compare (and got a private
  copy, since ksmd holds the page lock) is lost when the KSM page replaces the copy.
- :class:`CowWritesSharedKsm` — the COW fault makes the shared KSM PTE writable instead
  of copying: a store by one process changes every sharer's view.
- :class:`NoChecksumKsm` — the volatility checksum is stored but never compared, so
  pages merge on their first visit (volatile pages merge; counters run ahead of the
  kernel's "first merge on the second full scan").
- :class:`EagerUnmergeKsm` — ``madvise(UNMERGEABLE)`` frees the range's rmap items at
  once (the kernel leaves them to ksmd's next pass), so ``pages_sharing``,
  ``ksm_rmap_items`` and ``ksm_merging_pages`` drop too early.
- :class:`PrctlOffAlwaysKsm` — ``prctl(PR_SET_MEMORY_MERGE, 0)`` unmerges and
  unregisters the process even when process-wide merging was never on (the kernel's
  ``ksm_disable_merge_any`` returns early).
- :class:`IgnoresPinsKsm` — ``write_protect_page`` ignores the pin count, so a pinned
  page is merged (only a campaign that pins pages can see it).
- :class:`GuestKindIgnoredKsm` — ``set_guest_kind`` checks its range but records
  nothing: a page that became page cache inside its guest is still merged with
  ``skip_page_cache`` on (only a campaign that changes guest kinds after ``mmap`` sees it).
- :class:`MergeForgetsChecksumKsm` — a merged page's rmap item loses its stored checksum
  (only a check of the checksums a merge leaves behind can see it: the counters and
  views of a settled system are the kernel's).
"""

from __future__ import annotations

from impl.ksm import Ksm
from impl.ksm_state import Process, RmapItem, StableNode
from impl.mmu_emu import VmaFlags
from spec.ksm_api import PAGE_SIZE, Advice, GuestKind


class NoWriteProtectKsm(Ksm):
    """Merges without write-protecting the PTE (and without the TLB flush)."""

    def write_protect_page(self, proc: Process, va: int, frame: int) -> int | None:
        entry_addr, entry = self.pte(proc, va)
        if entry_addr == 0 or self.pinned(frame):
            return None
        return entry


class CompareBeforeProtectKsm(Ksm):
    """Compares the full page before write-protecting it."""

    def try_to_merge_one_page(self, proc: Process, va: int, frame: int, kframe: int | None) -> bool:
        if frame == kframe:
            return True
        if frame not in self.frames:
            return False
        if kframe is not None:
            if not self.pages_identical(frame, kframe):
                return False
            self._race("after_compare", proc, va)
        orig_pte = self.write_protect_page(proc, va, frame)
        if orig_pte is None:
            return False
        if kframe is None:
            f = self.frames[frame]
            f.ksm = True
            f.stable = None
            return True
        return self.replace_page(proc, va, frame, kframe, orig_pte)


class NoPteRecheckKsm(Ksm):
    """Replaces the page without re-checking the PTE it write-protected."""

    def pte_unchanged(self, proc: Process, va: int, orig_pte: int) -> bool:
        return True


class CowWritesSharedKsm(Ksm):
    """Breaks COW by making the shared KSM page writable in place."""

    def cow_fault(self, proc: Process, va: int, frame: int) -> None:
        from spec.paging import PT, RW

        entry = self.pte(proc, va)[1]
        proc.space.write_entry(va, PT, entry | RW)
        proc.space.invlpg(va)


class NoChecksumKsm(Ksm):
    """Stores the checksum but never compares it: volatile pages merge."""

    def checksum_changed(self, item: RmapItem, checksum: int) -> bool:
        item.oldchecksum = checksum
        return False


class EagerUnmergeKsm(Ksm):
    """Frees the rmap items of an unmerged range at once."""

    def madvise(self, pid: int, addr: int, npages: int, advice: Advice) -> None:
        super().madvise(pid, addr, npages, advice)
        if advice != "UNMERGEABLE":
            return
        proc = self.procs[pid]
        prev: RmapItem | None = None
        item = proc.rmap_head
        while item is not None:
            nxt = item.next
            if addr <= item.addr < addr + npages * PAGE_SIZE:
                if prev is None:
                    proc.rmap_head = nxt
                else:
                    prev.next = nxt
                if self.scan_prev is item:
                    self.scan_prev = prev
                self.remove_rmap_item_from_tree(item)
                self._free_item(item)
            else:
                prev = item
            item = nxt


class PrctlOffAlwaysKsm(Ksm):
    """prctl(PR_SET_MEMORY_MERGE, 0) unregisters everything, process-wide merging or not."""

    def set_process_merge(self, pid: int, enabled: bool) -> None:
        proc = self.procs.get(pid)
        if enabled or proc is None or proc.merge_any:
            super().set_process_merge(pid, enabled)
            return
        proc.layout_gen += 1
        for vma in proc.space.vmas():
            if vma.flags & VmaFlags.MERGEABLE:
                for va in range(vma.start, vma.end, PAGE_SIZE):
                    self.break_ksm(proc, va)
                vma.flags &= ~VmaFlags.MERGEABLE


class IgnoresPinsKsm(Ksm):
    """``write_protect_page`` does not look at the pin count: a pinned page (an O_DIRECT
    or GUP pin, with I/O in flight into it) is merged and its device writes are lost."""

    def pinned(self, frame: int) -> bool:
        return False


class MergeForgetsChecksumKsm(Ksm):
    """A page hung on a stable node loses its stored checksum (set to 0): after its KSM
    page is broken, the page looks changed at its next visit and merges one scan late."""

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        super().stable_tree_append(item, node)
        item.oldchecksum = 0


class GuestKindIgnoredKsm(Ksm):
    """``set_guest_kind`` validates the range and records nothing."""

    def set_guest_kind(self, pid: int, addr: int, npages: int, kind: GuestKind) -> None:
        proc = self._proc(pid)
        start, end = self._range(addr, npages)
        self._require_mapped(proc, start, end)  # BUG: the kinds are not recorded


#: Every mutant by name.
KSM_MUTANTS: dict[str, type[Ksm]] = {
    "no_write_protect": NoWriteProtectKsm,
    "compare_before_protect": CompareBeforeProtectKsm,
    "no_pte_recheck": NoPteRecheckKsm,
    "cow_writes_shared": CowWritesSharedKsm,
    "no_checksum": NoChecksumKsm,
    "eager_unmerge": EagerUnmergeKsm,
    "prctl_off_always": PrctlOffAlwaysKsm,
    "ignores_pins": IgnoresPinsKsm,
    "merge_forgets_checksum": MergeForgetsChecksumKsm,
    "guest_kind_ignored": GuestKindIgnoredKsm,
}
