"""The records of the KSM implementation: processes, rmap items, stable nodes, frames.

These mirror ``mm/ksm.c``'s structures closely enough that the scanner reads like the
kernel's:

- :class:`Process` is an ``mm_struct`` plus its ``ksm_mm_slot``: an emulated
  :class:`~impl.mmu_emu.AddressSpace`, the singly linked, address-ordered list of its
  rmap items (``rmap_list``), its guest-kind map and its ``/proc/<pid>/ksm_stat``
  counters.
- :class:`RmapItem` is ``struct ksm_rmap_item``: one per scanned (process, address). The
  kernel's ``STABLE_FLAG``/``UNSTABLE_FLAG`` bits are the fields ``stable`` (the node it
  hangs on) and ``unstable_gen`` (the generation of the unstable tree it was inserted
  in: the kernel's low ``seqnr`` bits).
- :class:`StableNode` is ``struct ksm_stable_node`` in its three roles: a plain node in
  the stable tree, a *chain* head (``is_chain``; its ``dups`` are the duplicates, head
  first, like the kernel's ``hlist``) and a *dup* (``chain`` is its chain).
- :class:`Frame` is the part of ``struct page`` KSM uses for a data frame: ``mapcount``
  (PTEs mapping it), ``holds`` (temporary references ksmd takes while it works on the
  page — ``get_page``), ``pins`` (extra references such as O_DIRECT/GUP pins that make
  ``write_protect_page`` refuse), whether it is a KSM page and of which node (the
  kernel's ``page->mapping`` with ``PAGE_MAPPING_KSM``), and the page lock ksmd holds
  while it merges the page (a write fault then copies instead of reusing the page). A frame is freed to the machine
  when its mapcount and holds are both 0; a stable node whose frame was freed (or
  re-used) is *stale*, detected by the "keyhole" test ``frames[node.frame].stable is
  node`` exactly as ``ksm_get_folio`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from impl.mmu_emu import AddressSpace
from spec.ksm_api import GuestKind


class RmapItem:
    """``struct ksm_rmap_item``: the scanner's record of one (process, page address)."""

    __slots__ = (
        "proc", "addr", "next", "oldchecksum", "age", "remaining_skips",
        "stable", "unstable_gen", "rb", "freed", "pte_addr", "layout_gen",
    )  # fmt: skip

    def __init__(self, proc: Process, addr: int) -> None:
        self.proc = proc
        self.addr = addr
        #: The next item in the process's address-ordered list.
        self.next: RmapItem | None = None
        self.oldchecksum = 0
        self.age = 0
        self.remaining_skips = 0
        #: The stable node (a plain node or a dup) this item hangs on (STABLE_FLAG).
        self.stable: StableNode | None = None
        #: The unstable tree generation it was inserted in (UNSTABLE_FLAG + seqnr).
        self.unstable_gen: int | None = None
        #: Its node in the unstable tree, while it is there.
        self.rb: object | None = None
        #: Set when the item is freed (debug safety, like ``rmap_item->mm = NULL``).
        self.freed = False
        #: A cache for the scanner's hot path: the physical address of the PT entry
        #: for ``addr``, valid while ``layout_gen`` equals the process's (its mapping
        #: layout has not changed since, so the address is still in a mergeable VMA
        #: and, page tables never being freed while a process lives, the entry
        #: address is still the one the MMU walks to). -1: nothing cached.
        self.pte_addr = 0
        self.layout_gen = -1


class StableNode:
    """``struct ksm_stable_node``: a KSM page in the stable tree, a chain head or a dup."""

    __slots__ = ("node_id", "frame", "hlist", "is_chain", "dups", "chain", "rb",
                 "chain_prune_time", "content_checksum", "content")  # fmt: skip

    def __init__(self, node_id: int, frame: int, *, is_chain: bool = False) -> None:
        self.node_id = node_id
        #: The KSM page's frame (``kpfn``); -1 for a chain head.
        self.frame = frame
        #: The rmap items sharing this KSM page, oldest first.
        self.hlist: list[RmapItem] = []
        self.is_chain = is_chain
        #: A chain head's duplicates, head first (the kernel's ``hlist_dup`` order).
        self.dups: list[StableNode] = []
        #: The chain this node is a duplicate in, or None.
        self.chain: StableNode | None = None
        #: Its node in the stable tree (plain nodes and chain heads), else None.
        self.rb: object | None = None
        #: Virtual time (ms) of the chain's last full pruning walk.
        self.chain_prune_time = 0
        #: xxhash of the content when the node was made: a KSM page never changes.
        self.content_checksum = 0
        #: The KSM page's content, kept when the node is made (it never changes while
        #: the node is live: every mapping is read-only and a write copies), so that
        #: tree walks compare with it without copying the frame each time.
        self.content = b""


@dataclass
class Frame:
    """What the KSM implementation knows of one data frame (see the module docstring)."""

    mapcount: int = 1
    holds: int = 0
    pins: int = 0
    ksm: bool = False
    stable: StableNode | None = None
    #: The page lock (``folio_trylock``), held by ksmd in ``try_to_merge_one_page``.
    locked: bool = False


@dataclass
class Process:
    """An ``mm_struct`` and its ``ksm_mm_slot``."""

    pid: int
    space: AddressSpace
    #: ``PR_SET_MEMORY_MERGE`` (``MMF_VM_MERGE_ANY``): every anonymous mapping is mergeable.
    merge_any: bool = False
    #: Whether the process is on ksmd's list (``MMF_VM_MERGEABLE``).
    registered: bool = False
    #: First rmap item of the address-ordered list.
    rmap_head: RmapItem | None = None
    #: Guest kinds of pages that are not ANONYMOUS, by page address.
    kinds: dict[int, GuestKind] = field(default_factory=dict)
    #: Physical address of the page table (PT level) covering each 2 MiB region.
    pt_cache: dict[int, int] = field(default_factory=dict)
    merging_pages: int = 0
    rmap_items: int = 0
    zero_pages: int = 0
    #: Bumped whenever the process's mappings change (mmap, munmap, mprotect, madvise,
    #: process-wide merging): invalidates every ``RmapItem.pte_addr`` of the process.
    layout_gen: int = 0
