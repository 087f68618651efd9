"""The KSM interface: one Protocol that the model (:mod:`spec.ksm_model`) and the
implementation (:mod:`impl.ksm`) both satisfy, the knobs, the counters and the plain-data
snapshot a harness compares.

This module holds only the interface — constants, enums, exception types, frozen
dataclasses of plain data and the :class:`KsmSystem` Protocol — so that ``impl/`` may
import it without importing any of the model's logic.

Conventions every side follows (the kernel's, where the kernel has one):

- **Processes** are numbered by :meth:`KsmSystem.add_process` from 1 upwards, in order.
- **Mappings** are anonymous, private and demand-zero. ``mmap`` places a mapping at the
  *lowest* page-aligned address ``>= MMAP_BASE`` whose ``npages`` pages are all unmapped
  in that process (first fit, bottom-up), so both sides return the same addresses for the
  same calls. ``munmap``, ``mprotect`` and ``madvise`` act per page and may cover part of
  a mapping (the mapping splits).
- **Present pages.** A page becomes present on its first write. Reading a page that was
  never written returns zeros and does not make it present (Linux maps the shared zero
  page for a read fault, which KSM never scans). Only present pages have rmap items.
- **Eligibility.** ksmd considers a present page iff its page is registered — by
  ``madvise(MERGEABLE)`` or because the process has process-wide merging on
  (``PR_SET_MEMORY_MERGE``) — whatever its protection: a ``PROT_NONE`` range is still
  merged and unmerged (``ksm_functional_tests.c``). With the ``skip_page_cache`` knob,
  pages whose guest kind is :attr:`GuestKind.PAGE_CACHE` are not merged.
- **Faults.** ``write`` to an unmapped or non-writable page and ``read`` of an unmapped
  or non-readable page raise :class:`SegmentationFault`; nothing changes.
- ``set_process_merge(pid, True)`` while process-wide merging is already on changes
  nothing (``ksm_enable_merge_any`` returns early when ``MMF_VM_MERGE_ANY`` is set), so a
  range unregistered by ``madvise(UNMERGEABLE)`` since stays unregistered.
- ``set_process_merge(pid, False)`` does what the kernel's ``prctl(PR_SET_MEMORY_MERGE,
  0)`` does: when process-wide merging is on, it unmerges *and unregisters every* page
  of the process, including ranges that were registered with ``madvise``
  (``ksm_disable_merge_any`` → ``ksm_del_vmas``); when it is off it changes nothing
  (``ksm_disable_merge_any`` returns early: ranges registered with ``madvise`` stay
  registered and merged).
- **ksmd's list.** A process joins it when it registers a range or turns on
  process-wide merging while it is not on it, just behind ksmd's cursor (at the end
  between full scans). At the end of its pass ksmd drops a process that has no
  registered page left (no ``VM_MERGEABLE`` mapping): it leaves the list. Process-wide
  merging stays on (Linux 6.18 keeps ``MMF_VM_MERGE_ANY``): a later ``mmap`` is
  registered and brings the process back onto the list, while ``set_process_merge(pid,
  True)`` returns early and does not. With an empty list ksmd sleeps: no full scan
  completes and ``full_scans(n)`` returns at once.
- ``run = UNMERGE`` (2) breaks every KSM page and frees every rmap item and stable node
  at once (``unmerge_and_remove_all_rmap_items``) and resets ``full_scans`` to 0 (the
  kernel's ``ksm_scan.seqnr = 0``); registrations stay. ``full_scans(n)`` adds exactly
  ``n`` to ``full_scans`` while ksmd's list is not empty; ``run_ksmd`` adds the scans it
  completes.
- **When counters change.** As in the kernel, a COW break, an ``munmap``, a write,
  ``madvise(UNMERGEABLE)`` or ``set_process_merge(False)`` does not change the tree
  counters: the range is unmerged at once, but its rmap items (and so
  ``pages_sharing``, ``ksm_rmap_items``, ``ksm_merging_pages``) stay until ksmd next
  passes the address (``unmerge_ksm_pages`` leaves them to ksmd). Only ``run = 2``
  removes every item at once. ``ksm_zero_pages`` is the exception: it follows the page
  tables (Linux 6.10+), so a write to (or an unmerge of) a page that maps the zero page
  by KSM decrements it at once.
- **Zero-page merges** (``use_zero_pages``): the page's PTE maps the shared zero page
  and its rmap item is left in state ``ZERO``; since the zero page is not an anonymous
  page, the scanner's next pass does not visit the address and frees that item in
  passing (``get_next_rmap_item``), as the kernel does. So a zero-merged page has an rmap
  item for one pass and none afterwards.
- **Items of pages ksmd does not consider** (unregistered, unmapped, or skipped page-cache
  pages) are freed when the scanner passes over their address (or at the end of the
  process's pass, ``remove_trailing_rmap_items``); pages skipped by ``skip_page_cache``
  get no rmap item, and a page that is already merged stays mapped to its KSM page.
- **Scan order**: processes in the order they first registered a range (or turned on
  process-wide merging), addresses ascending within a process.
- **The host page cache** (for the exclusive-host-cache optimisation) is a set of
  unmapped host pages, each with an id and content. With ``exclusive_host_cache`` on, at
  the end of every full scan ksmd drops every host cache page whose content equals the
  content of a page in the stable tree or the unstable tree.

Knob stores (``set_knob``), checked in this order, as the kernel's sysfs stores:

- an unknown name is ``ENOENT``;
- ``run``: an int (or :class:`RunMode`) in 0..2, else ``EINVAL``;
- ``pages_to_scan``: an int in 0..``UINT_MAX``; ``sleep_millisecs``: an int in
  0..``SLEEP_MILLISECS_MAX``; else ``EINVAL``;
- ``use_zero_pages``, ``smart_scan``, ``lookahead``, ``skip_page_cache``,
  ``exclusive_host_cache``: a bool or the int 0/1, else ``EINVAL``;
- ``checksum``: ``"xxhash"`` or ``"jhash2"``, else ``EINVAL``;
- ``max_page_sharing``: an int >= 2 else ``EINVAL``; storing the current value always
  succeeds; a different value is ``EBUSY`` while the ``pages_shared`` counter is not 0,
  or while some KSM page is still mapped (``remove_all_stable_nodes`` fails: a page
  merged before ``skip_page_cache`` was turned on keeps its KSM page but loses its rmap
  item, so ``pages_shared`` can be 0 while a KSM page is mapped);
- a bool is not accepted where an int is expected (``run``, ``pages_to_scan``,
  ``sleep_millisecs``, ``max_page_sharing``): ``EINVAL``.

``use_zero_pages`` has no ``EBUSY`` rule (the kernel's ``use_zero_pages_store`` has none).

The shape of a full scan and of ``run_ksmd`` (what ``pages_to_scan`` and
``sleep_millisecs`` mean) is the implementation's business; the model does not simulate
ksmd's progress, only what a settled system must show (see :mod:`spec.ksm_model`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable

#: Bytes in a page (and in a frame).
PAGE_SIZE = 4096
#: Lowest address ``mmap`` hands out (first fit, bottom-up from here).
MMAP_BASE = 0x1000_0000
#: ``sizeof(struct ksm_rmap_item)`` on x86-64: the cost the profit counters charge per item.
RMAP_ITEM_SIZE = 64
#: Largest value of an unsigned-int knob (``kstrtouint``).
UINT_MAX = 2**32 - 1
#: Largest ``sleep_millisecs`` the kernel accepts: any unsigned int (``kstrtouint``;
#: no 60-second cap in ``sleep_millisecs_store``).
SLEEP_MILLISECS_MAX = UINT_MAX


class RunMode(enum.IntEnum):
    """``/sys/kernel/mm/ksm/run``: stop ksmd, let it merge, or stop and unmerge everything."""

    STOP = 0
    MERGE = 1
    UNMERGE = 2


class GuestKind(enum.Enum):
    """What a page is inside the guest that owns it (for the page-cache optimisation).

    Only :attr:`PAGE_CACHE` matters to the semantics: with ``skip_page_cache`` on, such
    pages are never merged (their sharing is ephemeral). The others merge normally.
    """

    KERNEL = "kernel"
    ANONYMOUS = "anonymous"
    FILE = "file"
    PAGE_CACHE = "page_cache"
    FREE = "free"


class KnobError(ValueError):
    """A rejected knob store, as the kernel's sysfs store functions reject it.

    ``errno`` is ``"EINVAL"`` (bad value or type), ``"EBUSY"`` (the knob cannot change
    while KSM pages exist) or ``"ENOENT"`` (no such knob).
    """

    def __init__(self, errno: Literal["EINVAL", "EBUSY", "ENOENT"], detail: str) -> None:
        super().__init__(f"{errno}: {detail}")
        self.errno: Literal["EINVAL", "EBUSY", "ENOENT"] = errno
        self.detail = detail


class MappingError(ValueError):
    """A rejected ``mmap``/``munmap``/``mprotect``/``madvise``/process call.

    ``errno`` is ``"EINVAL"`` (bad size or unaligned address), ``"ENOMEM"`` (part of the
    range is not mapped — ``mprotect`` and ``madvise``; ``munmap`` of unmapped pages is
    not an error) or ``"ESRCH"`` (no such process).
    """

    def __init__(self, errno: Literal["EINVAL", "ENOMEM", "ESRCH"], detail: str) -> None:
        super().__init__(f"{errno}: {detail}")
        self.errno: Literal["EINVAL", "ENOMEM", "ESRCH"] = errno
        self.detail = detail


class SegmentationFault(Exception):
    """A user access the page tables do not allow (unmapped, or protection)."""

    def __init__(self, pid: int, addr: int, access: Literal["read", "write"]) -> None:
        super().__init__(f"SIGSEGV: pid {pid} {access} at {addr:#x}")
        self.pid = pid
        self.addr = addr
        self.access: Literal["read", "write"] = access


class NotRunning(RuntimeError):
    """``full_scans`` was asked for while ``run`` is not :attr:`RunMode.MERGE`."""


#: The knob names :meth:`KsmSystem.set_knob` accepts (the fields of :class:`KsmKnobs`).
KNOB_NAMES = (
    "run",
    "pages_to_scan",
    "sleep_millisecs",
    "use_zero_pages",
    "max_page_sharing",
    "smart_scan",
    "checksum",
    "lookahead",
    "skip_page_cache",
    "exclusive_host_cache",
)


@dataclass
class KsmKnobs:
    """The knobs, with the kernel's defaults.

    ``checksum`` picks the page hash (xxhash today, ``jhash2(page, 1024, 17)`` in 2011);
    ``lookahead``, ``skip_page_cache`` and ``exclusive_host_cache`` switch the research
    optimisations (all off, as in the stock kernel).
    """

    run: RunMode = RunMode.STOP
    pages_to_scan: int = 100
    sleep_millisecs: int = 20
    use_zero_pages: bool = False
    max_page_sharing: int = 256
    smart_scan: bool = True
    checksum: Literal["xxhash", "jhash2"] = "xxhash"
    lookahead: bool = False
    skip_page_cache: bool = False
    exclusive_host_cache: bool = False


class ItemState(enum.Enum):
    """Where an rmap item is.

    ``VOLATILE``: in no tree (new, checksum changed, skipped, or stale after a COW);
    ``UNSTABLE``: in the unstable tree; ``STABLE``: hanging on a stable node;
    ``ZERO``: its page was merged with the shared zero page (``use_zero_pages``).
    """

    VOLATILE = "volatile"
    UNSTABLE = "unstable"
    STABLE = "stable"
    ZERO = "zero"


@dataclass(frozen=True)
class RmapItemView:
    """One rmap item: the scanner's record of one (process, page address).

    ``stable_node`` is the id of the node it hangs on iff ``state`` is ``STABLE``;
    ``checksum`` is the checksum stored at the last visit (0 before the first).
    """

    pid: int
    addr: int
    state: ItemState
    stable_node: int | None
    checksum: int


@dataclass(frozen=True)
class StableNodeView:
    """One stable node (a KSM page), never a chain head.

    ``frame`` is the KSM page's frame; ``chain`` is the id of its chain when it is one of
    several duplicates for the same content (``max_page_sharing`` reached), else None;
    ``mappings`` are the (pid, addr) of the rmap items hanging on it, sorted.
    """

    node: int
    frame: int
    chain: int | None
    mappings: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MappedPage:
    """One present page of a registered range, as its PTE says.

    ``ksm``: the frame is a KSM page; ``zero``: the PTE maps the shared zero page (a
    KSM zero-page merge). ``writable`` is the PTE's write permission: merged pages
    (``ksm`` or ``zero``) are never writable, and no page of a mapping without write
    permission is. A private page of a writable mapping may still be read-only: an
    unsharing fault (``MADV_UNMERGEABLE``, ``run = 2``, ``prctl``) maps the private copy
    read-only and clean, as the kernel's ``FAULT_FLAG_UNSHARE`` does, and the next store
    makes it writable without copying. So a snapshot's ``writable`` of a private page is
    judged only by those two rules (the model's prediction reports private pages as
    writable).
    """

    pid: int
    addr: int
    frame: int
    writable: bool
    ksm: bool
    zero: bool


@dataclass(frozen=True)
class KsmSnapshot:
    """Everything a checker needs to judge one moment, as plain data.

    ``items`` sorted by (pid, addr); ``stable_nodes`` sorted by node id; ``pages`` sorted
    by (pid, addr), the present pages of registered ranges; ``counters`` holds every name
    of :data:`COUNTERS` and ``process_counters`` every name of :data:`PROCESS_COUNTERS`
    for every live process. ``comparisons`` counts full-page comparisons (memcmp) made
    since the system was created and ``lookahead_hits`` the merges found by lookahead;
    ``host_cache`` maps host page-cache page ids to their contents. ``empty_chains``
    counts stable-node chains whose duplicates have all gone: as in the kernel, such a
    chain head stays in the stable tree (and in ``stable_node_chains``) until ksmd next
    walks it, and no :class:`StableNodeView` can show it.
    """

    items: tuple[RmapItemView, ...]
    stable_nodes: tuple[StableNodeView, ...]
    pages: tuple[MappedPage, ...]
    counters: dict[str, int]
    process_counters: dict[int, dict[str, int]]
    comparisons: int = 0
    lookahead_hits: int = 0
    host_cache: dict[int, bytes] = field(default_factory=dict)
    empty_chains: int = 0


#: The global counters of ``/sys/kernel/mm/ksm``.
COUNTERS = (
    "pages_shared",
    "pages_sharing",
    "pages_unshared",
    "pages_volatile",
    "full_scans",
    "pages_skipped",
    "stable_node_chains",
    "stable_node_dups",
    "ksm_zero_pages",
    "general_profit",
)
#: The per-process counters of ``/proc/<pid>/ksm_stat`` (and ``ksm_merging_pages``).
PROCESS_COUNTERS = ("ksm_merging_pages", "ksm_rmap_items", "ksm_zero_pages", "ksm_process_profit")

Advice = Literal["MERGEABLE", "UNMERGEABLE"]


@runtime_checkable
class KsmSystem(Protocol):
    """A machine with processes whose anonymous memory ksmd may merge.

    Guarantees every side gives: no call other than ``write`` (and ``munmap``, which
    removes pages) ever changes what any process reads (merge safety); a ``write``
    changes only the writer's bytes; every error is one of the exception types above,
    raised before anything changes.
    """

    def add_process(self) -> int:
        """Create a process and return its pid (1, 2, 3, ... in order)."""
        ...

    def mmap(
        self,
        pid: int,
        npages: int,
        *,
        writable: bool = True,
        kinds: Sequence[GuestKind] | None = None,
    ) -> int:
        """Map ``npages`` (>= 1) anonymous demand-zero pages, readable, and writable iff
        ``writable``; ``kinds`` gives each page's guest kind (default ANONYMOUS), and must
        have ``npages`` entries. Returns the address (first fit from MMAP_BASE)."""
        ...

    def munmap(self, pid: int, addr: int, npages: int) -> None:
        """Unmap the pages of the range that are mapped (others are ignored)."""
        ...

    def mprotect(self, pid: int, addr: int, npages: int, *, readable: bool, writable: bool) -> None:
        """Change the protection of every page of the range (all must be mapped).
        PROT_NONE is both False; contents and registrations are kept."""
        ...

    def madvise(self, pid: int, addr: int, npages: int, advice: Advice) -> None:
        """Register (``MERGEABLE``) or unregister (``UNMERGEABLE``: unmerge at once; the
        range's rmap items stay until ksmd next passes) every page of the range (all
        must be mapped)."""
        ...

    def set_process_merge(self, pid: int, enabled: bool) -> None:
        """``prctl(PR_SET_MEMORY_MERGE)``: register every current and future mapping of
        the process, or (False, only when it is on) unmerge and unregister every page of
        the process."""
        ...

    def set_guest_kind(self, pid: int, addr: int, npages: int, kind: GuestKind) -> None:
        """Record that the guest now uses the pages of the range as ``kind``."""
        ...

    def write(self, pid: int, addr: int, data: bytes) -> None:
        """A user store of ``data`` at ``addr`` (may span pages; all must be writable).
        A store to a merged page faults and gets a private copy first (COW)."""
        ...

    def read(self, pid: int, addr: int, length: int) -> bytes:
        """A user load of ``length`` bytes (all pages must be readable)."""
        ...

    def set_knob(self, name: str, value: object) -> None:
        """Store a knob; raises :class:`KnobError` as the kernel's store function does."""
        ...

    def knobs(self) -> KsmKnobs:
        """A copy of the current knobs."""
        ...

    def run_ksmd(self, milliseconds: int) -> None:
        """Let ksmd run for this much virtual time (batches of ``pages_to_scan`` pages,
        sleeping ``sleep_millisecs`` between). Does nothing unless run is MERGE."""
        ...

    def full_scans(self, count: int) -> None:
        """Run ksmd until ``count`` more full scans have completed (the first may have
        begun before the call), or until ksmd's list is empty between scans (ksmd then
        sleeps). Raises :class:`NotRunning` unless run is MERGE."""
        ...

    def host_cache_insert(self, data: bytes) -> int:
        """Put a page of ``data`` (at most PAGE_SIZE bytes, zero-padded) into the host
        page cache; returns its id (0, 1, 2, ... in order)."""
        ...

    def host_cache(self) -> dict[int, bytes]:
        """The host page cache: id -> content (PAGE_SIZE bytes) of every page still in it."""
        ...

    def counters(self) -> dict[str, int]:
        """The global counters (every name of :data:`COUNTERS`)."""
        ...

    def process_counters(self, pid: int) -> dict[str, int]:
        """The counters of one process (every name of :data:`PROCESS_COUNTERS`)."""
        ...

    def snapshot(self) -> KsmSnapshot:
        """The state as plain data (see :class:`KsmSnapshot`)."""
        ...


__all__ = [
    "COUNTERS",
    "KNOB_NAMES",
    "MMAP_BASE",
    "PAGE_SIZE",
    "PROCESS_COUNTERS",
    "RMAP_ITEM_SIZE",
    "SLEEP_MILLISECS_MAX",
    "UINT_MAX",
    "Advice",
    "GuestKind",
    "ItemState",
    "KnobError",
    "KsmKnobs",
    "KsmSnapshot",
    "KsmSystem",
    "MappedPage",
    "MappingError",
    "NotRunning",
    "RmapItemView",
    "SegmentationFault",
    "StableNodeView",
]
