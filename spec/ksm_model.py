"""The KSM spec: what correct page merging is.

:class:`KsmModel` satisfies :class:`~spec.ksm_api.KsmSystem`. It is the reference for

- **views** (exact): each process's bytes at each address. Merging is invisible: no scan
  changes any view, and a write changes only the writer's view (merge safety);
- **knob stores** (exact): :func:`~spec.ksm_rules.validated_knob`;
- **what merging must achieve** once the system has settled: after two full scans that
  began after the last change (*quiet* scans) with ``smart_scan`` off, every group of
  identical eligible pages is merged into KSM pages as :func:`~spec.ksm_rules.group_sizes`
  says (completeness), and the counters are :func:`predicted_after_quiet_scans`.

Unmerging (``madvise(UNMERGEABLE)``, ``set_process_merge(False)`` when process-wide
merging is on) breaks the range's KSM pages at once but, as in the kernel, leaves its
rmap items to ksmd's next pass: right after an unmerge at a point where the model was
exact, its state is that state with the range unmerged and the same items
(:meth:`KsmModel.exact`). ksmd drops a process with nothing registered from its list at
the end of its pass (process-wide merging stays on); after ``full_scans`` the model
knows it happened, after ``run_ksmd`` it may have: then ksmd's list order (and so the
per-process counters, :meth:`KsmModel.process_counters_exact`) and whether the list is
empty (and so ``full_scans``, :meth:`KsmModel.full_scans_exact`) may be unknown.

What the model does not do: simulate ksmd's progress. Scanning never changes a view, so
the model need not know when a page merges; it knows only what a settled system shows.
Its :meth:`KsmModel.counters` are that prediction; :meth:`KsmModel.settled` says whether
the prediction is exact now, :meth:`KsmModel.quiet` whether the weaker completeness
predicate :func:`completeness_violations` applies.

Choices where the paper and the issue are silent (a kernel engineer's):

- The prediction is *exact* only when the quiet period began with no KSM page in the
  system (at the start, or after ``run = 2``): groups formed earlier survive COW breaks
  and are never re-packed, so from an arbitrary history only the weak predicate holds:
  per content at most one eligible page is unmerged, and only when every KSM page of
  that content is full.
- Quiet scans are counted conservatively: the first full scan completing after a change
  does not count if ksmd was mid-scan at the change (``run_ksmd`` leaves it mid-scan;
  ``full_scans`` and ``run = 2`` leave it at the start of a scan).
- With ``smart_scan`` on, a page not merged after three visits is skipped in later scans
  (``should_skip_rmap_item``; its age never resets), so completeness can fail forever;
  the model then claims a settled state only within the first four full scans after a
  clean point (no item is old enough to be skipped), and only while every full scan
  since that point was asked for by ``full_scans``: ``run_ksmd`` may complete any number
  of scans (a one-page system scans fully in every batch), so after it nothing counts as
  young until the next clean point.
- Zero-page merges free their rmap item at the next pass (see :mod:`spec.ksm_api`): the
  prediction counts those items after exactly two quiet scans and not from the third.
  When that number is uncertain — the change came mid-scan, or ``run_ksmd`` has run
  since it (it may have completed scans of its own) — and the count says two, the model
  does not claim a settled state while any all-zero page is eligible.

The research optimisations, what each may change, and the predicate a harness checks:

- ``lookahead`` changes only the number of comparisons: the merged count per content
  and all counters except ``full_scans``/``pages_skipped`` equal those with it off
  (:func:`merged_count_by_content` of two runs are equal).
- ``skip_page_cache``: pages of kind PAGE_CACHE are never merged and have no rmap items
  (one merged before it was skipped is unshared when ksmd passes it, as
  ``MADV_UNMERGEABLE`` unshares a page); the prediction is the stock prediction over the
  other pages (so a page-cache page's partner may stay unmerged too when it has no other
  partner).
- ``exclusive_host_cache``: at the end of every full scan, host page-cache pages whose
  content is in either tree are dropped. After two quiet scans the trees hold exactly
  the contents of the eligible pages that are not zero-page merges, so the cache is at
  most :func:`predicted_host_cache` of the cache at the start of the quiet period: a
  page dropped earlier (while its content was in a tree) stays dropped, and which pages
  those are depends on ksmd's progress, which the model does not follow (the harness
  bounds them from below by the pages whose content was ever scanned).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from spec.ksm_api import (
    KNOB_NAMES,
    MMAP_BASE,
    PAGE_SIZE,
    Advice,
    GuestKind,
    ItemState,
    KsmKnobs,
    KsmSnapshot,
    MappedPage,
    MappingError,
    NotRunning,
    RmapItemView,
    RunMode,
    SegmentationFault,
    StableNodeView,
)
from spec.ksm_rules import (
    counters_of,
    general_profit,
    group_sizes,
    process_counters_of,
    process_profit,
    validated_knob,
)

ZERO_PAGE = bytes(PAGE_SIZE)


@dataclass(frozen=True)
class Candidate:
    """An eligible page: present, registered, not skipped; its content (PAGE_SIZE bytes)."""

    pid: int
    addr: int
    content: bytes


@dataclass(frozen=True)
class Prediction:
    """What a settled system shows (see :func:`predicted_after_quiet_scans`).

    ``counters`` lacks the histories ``full_scans`` and ``pages_skipped``;
    ``merged`` maps each content to how many of its pages are merged (KSM or zero page);
    ``tree_contents`` are the contents in the stable or unstable tree.
    """

    counters: dict[str, int]
    process_counters: dict[int, dict[str, int]]
    merged: dict[bytes, int]
    tree_contents: frozenset[bytes]
    snapshot: KsmSnapshot


def predicted_after_quiet_scans(
    candidates: Sequence[Candidate],
    knobs: KsmKnobs,
    pids: Iterable[int],
    *,
    quiet_scans: int = 2,
) -> Prediction:
    """The state after ``quiet_scans`` (>= 2) full scans with no change, starting from a
    system without KSM pages. ``candidates`` must be in scan order (process registration
    order, then address). Exact for every counter except the histories.

    Per content, in scan order: all-zero pages with ``use_zero_pages`` map the zero page
    (an rmap item in state ZERO after exactly two quiet scans, none later); other pages
    form KSM pages of :func:`group_sizes` mappings, the first pages first; a last lone
    page stays in the unstable tree.
    """
    if quiet_scans < 2:
        raise ValueError(f"a prediction needs at least 2 quiet scans, not {quiet_scans}")
    by_content: dict[bytes, list[Candidate]] = {}
    for cand in candidates:
        by_content.setdefault(cand.content, []).append(cand)
    items: list[RmapItemView] = []
    nodes: list[StableNodeView] = []
    pages: list[MappedPage] = []
    merged: dict[bytes, int] = {}
    tree: set[bytes] = set()
    next_frame = 1  # frame 0 is the zero page; frames here are the model's own numbering
    chain_id = 0
    for content, group in by_content.items():
        if knobs.use_zero_pages and content == ZERO_PAGE:
            merged[content] = len(group)
            for cand in group:
                pages.append(MappedPage(cand.pid, cand.addr, 0, False, False, True))
                if quiet_scans == 2:
                    items.append(RmapItemView(cand.pid, cand.addr, ItemState.ZERO, None, 0))
            continue
        tree.add(content)
        sizes = group_sizes(len(group), knobs.max_page_sharing)
        chain: int | None = None
        if len(sizes) > 1:
            chain_id += 1
            chain = chain_id
        position = 0
        for size in sizes:
            members = group[position : position + size]
            position += size
            node_id = len(nodes) + 1
            frame = next_frame
            next_frame += 1
            nodes.append(StableNodeView(node_id, frame, chain, tuple(sorted((c.pid, c.addr) for c in members))))
            for cand in members:
                items.append(RmapItemView(cand.pid, cand.addr, ItemState.STABLE, node_id, 0))
                pages.append(MappedPage(cand.pid, cand.addr, frame, False, True, False))
        merged[content] = position
        for cand in group[position:]:
            items.append(RmapItemView(cand.pid, cand.addr, ItemState.UNSTABLE, None, 0))
            pages.append(MappedPage(cand.pid, cand.addr, next_frame, True, False, False))
            next_frame += 1
    items.sort(key=lambda item: (item.pid, item.addr))
    pages.sort(key=lambda page: (page.pid, page.addr))
    bare = KsmSnapshot(tuple(items), tuple(nodes), tuple(pages), {}, {})
    counters = counters_of(bare)
    del counters["full_scans"], counters["pages_skipped"]
    process: dict[int, dict[str, int]] = {}
    for pid in sorted(set(pids)):
        mine = [item for item in items if item.pid == pid]
        merging = sum(1 for item in mine if item.state is ItemState.STABLE)
        zero = sum(1 for page in pages if page.pid == pid and page.zero)
        process[pid] = {
            "ksm_merging_pages": merging,
            "ksm_rmap_items": len(mine),
            "ksm_zero_pages": zero,
            "ksm_process_profit": process_profit(merging, zero, len(mine)),
        }
    snapshot = dataclasses.replace(
        bare, counters=dict(counters, full_scans=0, pages_skipped=0), process_counters=process
    )
    return Prediction(counters, process, merged, frozenset(tree), snapshot)


def predicted_after_first_scan(candidates: Sequence[Candidate], pids: Iterable[int], *, scans: int = 1) -> Prediction:
    """The state after exactly ``scans`` (0 or 1) full scans that began at a clean point
    (the start, or ``run = 2``): before the first, no rmap item exists; after it, every
    eligible page has a fresh rmap item whose checksum was just stored (it started at
    0), so nothing is merged and every item is volatile — the kernel's "a page first
    merges on the second full scan"."""
    if scans not in (0, 1):
        raise ValueError(f"a first-scan prediction is for 0 or 1 scans, not {scans}")
    items = tuple(sorted((RmapItemView(c.pid, c.addr, ItemState.VOLATILE, None, 0) for c in candidates if scans),
                         key=lambda item: (item.pid, item.addr)))  # fmt: skip
    pages = tuple(sorted((MappedPage(c.pid, c.addr, 1 + i, True, False, False) for i, c in enumerate(candidates)),
                         key=lambda page: (page.pid, page.addr)))  # fmt: skip
    bare = KsmSnapshot(items, (), pages, {}, {})
    counters = counters_of(bare)
    del counters["full_scans"], counters["pages_skipped"]
    process = process_counters_of(bare, dict.fromkeys(pids))
    snapshot = dataclasses.replace(bare, counters=dict(counters, full_scans=scans, pages_skipped=0), process_counters=process)
    return Prediction(counters, process, {}, frozenset(), snapshot)


def merged_count_by_content(snapshot: KsmSnapshot, views: Mapping[tuple[int, int], bytes]) -> dict[bytes, int]:
    """How many pages of each content are merged (KSM or zero page) in ``snapshot``;
    ``views`` gives the content of each (pid, page address)."""
    counts: Counter[bytes] = Counter()
    for page in snapshot.pages:
        if page.ksm or page.zero:
            counts[views[(page.pid, page.addr)]] += 1
    return dict(counts)


def completeness_violations(
    snapshot: KsmSnapshot,
    candidates: Sequence[Candidate],
    knobs: KsmKnobs,
) -> list[str]:
    """The weak, history-free completeness predicate, for a system after two quiet scans
    (smart_scan off): per content, at most one eligible page is unmerged; when one is,
    every KSM page of that content already has ``max_page_sharing`` mappings; with
    ``use_zero_pages`` every all-zero eligible page is merged (zero page or KSM page).
    """
    page_at = {(page.pid, page.addr): page for page in snapshot.pages}
    mappings_of_frame = {node.frame: len(node.mappings) for node in snapshot.stable_nodes}
    by_content: dict[bytes, list[Candidate]] = {}
    for cand in candidates:
        by_content.setdefault(cand.content, []).append(cand)
    problems: list[str] = []
    for content, group in by_content.items():
        unmerged = [c for c in group if not _merged(page_at.get((c.pid, c.addr)))]
        label = _label(content)
        if knobs.use_zero_pages and content == ZERO_PAGE:
            if unmerged:
                problems.append(f"zero page pid {unmerged[0].pid} {unmerged[0].addr:#x} not merged")
            continue
        if len(unmerged) > 1:
            where = ", ".join(f"pid {c.pid} {c.addr:#x}" for c in unmerged[:4])
            problems.append(f"{len(unmerged)} pages of content {label} not merged: {where}")
        elif unmerged and len(group) > 1:
            # KSM pages only: zero pages merged while use_zero_pages was on are merged
            # but are no KSM page a lone page could join.
            frames = {page_at[(c.pid, c.addr)].frame for c in group if _is_ksm(page_at.get((c.pid, c.addr)))}
            roomy = [f for f in frames if mappings_of_frame.get(f, 0) < knobs.max_page_sharing]
            if roomy:
                c = unmerged[0]
                problems.append(f"pid {c.pid} {c.addr:#x} ({label}) not merged though KSM frame {roomy[0]} has room")
    return problems


def _merged(page: MappedPage | None) -> bool:
    return page is not None and (page.ksm or page.zero)


def _is_ksm(page: MappedPage | None) -> bool:
    return page is not None and page.ksm


def _label(content: bytes) -> str:
    stripped = content.rstrip(b"\0")
    return f"{stripped[:8].hex() or '00'}{'...' if len(stripped) > 8 else ''}"


def _prediction_of(snapshot: KsmSnapshot, pids: Iterable[int]) -> Prediction:
    """A :class:`Prediction` whose state is ``snapshot`` (its counters derived from its
    items, nodes and pages)."""
    counters = counters_of(snapshot)
    del counters["full_scans"], counters["pages_skipped"]
    process = process_counters_of(snapshot, dict.fromkeys(pids))
    # A snapshot keeps no contents: ``merged`` and ``tree_contents`` stay empty.
    return Prediction(counters, process, {}, frozenset(), dataclasses.replace(snapshot, process_counters=process))


def predicted_host_cache(cache: Mapping[int, bytes], tree_contents: frozenset[bytes]) -> dict[int, bytes]:
    """The exclusive host cache after a full scan whose trees hold ``tree_contents``:
    every page whose content is in a tree is dropped, the others stay."""
    return {page_id: content for page_id, content in sorted(cache.items()) if content not in tree_contents}


# ---------------------------------------------------------------------- the model


@dataclass
class _Page:
    content: bytes | None  # None: never written (not present)
    readable: bool
    writable: bool
    registered: bool
    kind: GuestKind


@dataclass
class _Process:
    pages: dict[int, _Page]
    #: Process-wide merging (MMF_VM_MERGE_ANY).
    merge_any: bool = False
    #: On ksmd's list (MMF_VM_MERGEABLE); None: unknown (ksmd may have dropped it).
    listed: bool | None = False
    registered_at: int | None = None  # position in ksmd's list of processes

    def has_registered_page(self) -> bool:
        return any(page.registered for page in self.pages.values())


class KsmModel:
    """The reference :class:`~spec.ksm_api.KsmSystem` (see the module docstring)."""

    def __init__(self) -> None:
        self._processes: dict[int, _Process] = {}
        self._knobs = KsmKnobs()
        self._host_cache: dict[int, bytes] = {}  # every page ever inserted
        self._host_dropped: set[int] = set()
        self._next_host_id = 0
        self._registrations = 0
        self._scans = 0
        # Quiet-period bookkeeping (see quiet() and settled()).
        self._mid_scan = False
        self._partial_at_change = False
        self._ran_since_change = False  # run_ksmd ran since the change: more scans, maybe
        self._scans_since_change = 0
        self._may_have_merged = False
        self._clean_at_quiet_start = True
        self._scans_since_clean = 0
        self._scans_since_clean_known = True
        self._cache_at_quiet_start: dict[int, bytes] = {}
        # The exact state right after an unmerge (rmap items kept until ksmd's next
        # pass), while nothing else has happened since; see exact().
        self._retained: KsmSnapshot | None = None
        # Whether ksmd's list order is known (per-process predictions need it).
        self._order_known = True

    # -- bookkeeping

    def _changed(self) -> None:
        """Something that may change what merging must achieve happened."""
        self._retained = None
        self._partial_at_change = self._mid_scan
        self._ran_since_change = False
        self._scans_since_change = 0
        self._clean_at_quiet_start = not self._may_have_merged
        self._cache_at_quiet_start = dict(self._host_cache)

    def quiet_scans(self) -> int:
        """Full scans known to have begun after the last change."""
        return max(0, self._scans_since_change - (1 if self._partial_at_change else 0))

    def quiet(self) -> bool:
        """Whether the weak predicate :func:`completeness_violations` applies now."""
        if self.quiet_scans() < 2:
            return False
        return not self._knobs.smart_scan or self._young()

    def _young(self) -> bool:
        """No rmap item can be old enough for smart scan to skip it: the quiet period
        began at a clean point and at most four full scans are known to have run since.
        ``run_ksmd`` completes an unknown number of full scans, so after it (until the
        next clean point) nothing is young."""
        return self._clean_at_quiet_start and self._scans_since_clean_known and self._scans_since_clean <= 4

    def settled(self) -> bool:
        """Whether :meth:`prediction` is exact now: quiet, the quiet period began without
        KSM pages, and the number of zero-page items is determined."""
        if not (self.quiet() and self._clean_at_quiet_start):
            return False
        zero_pending = self._knobs.use_zero_pages and any(c.content == ZERO_PAGE for c in self.candidates())
        unsure = self._partial_at_change or self._ran_since_change
        return not (zero_pending and unsure and self.quiet_scans() == 2)

    def candidates(self) -> list[Candidate]:
        """The eligible pages in scan order."""
        order = sorted(
            (proc.registered_at, pid) for pid, proc in self._processes.items() if proc.registered_at is not None
        )
        result: list[Candidate] = []
        for _, pid in order:
            for addr, page in sorted(self._processes[pid].pages.items()):
                if self._eligible(page):
                    assert page.content is not None
                    result.append(Candidate(pid, addr, page.content))
        return result

    def _eligible(self, page: _Page) -> bool:
        if page.content is None or not page.registered:
            return False
        return not (self._knobs.skip_page_cache and page.kind is GuestKind.PAGE_CACHE)

    def after_first_scan(self) -> bool:
        """Whether no full scan has begun since a clean point (the start or ``run = 2``,
        where ksmd starts a fresh scan), or exactly one has completed, asked for by
        ``full_scans``, with no change since it began: then
        :meth:`first_scan_prediction` is exact."""
        if not self._scans_since_clean_known:
            return False
        return self._scans_since_clean == 0 or (self._scans_since_clean == 1 and self.quiet_scans() == 1)

    def first_scan_prediction(self) -> Prediction:
        """:func:`predicted_after_first_scan` of the current eligible pages (for the 0
        or 1 full scans since the clean point)."""
        return predicted_after_first_scan(self.candidates(), self._processes, scans=min(1, self._scans_since_clean))

    def current_prediction(self) -> Prediction:
        """What the model shows as its state: right after an unmerge at an exact point,
        that state with the range unmerged and its rmap items kept; else
        :meth:`first_scan_prediction` until the first full scan from a clean point has
        completed and right after it; else :meth:`prediction`."""
        if self._retained is not None:
            return _prediction_of(self._retained, self._processes)
        return self.first_scan_prediction() if self.after_first_scan() else self.prediction()

    def exact(self) -> bool:
        """Whether :meth:`current_prediction` is exactly what the system shows now (every
        counter but the histories, every rmap item): :meth:`settled`, or
        :meth:`after_first_scan`, or right after ``madvise(UNMERGEABLE)``,
        ``set_process_merge(False)`` or ``munmap`` at such a point with nothing else
        since (the range is unmerged or unmapped at once; its rmap items — and so
        ``pages_sharing``, ``ksm_rmap_items`` and ``ksm_merging_pages`` — stay until ksmd
        next passes)."""
        return self._retained is not None or self.settled() or self.after_first_scan()

    def process_counters_exact(self) -> bool:
        """Whether, when :meth:`exact`, the per-process counters are exact too: they need
        ksmd's list order (which page of a content stays alone), unknown once a process
        joined the list while ksmd was mid-scan (the kernel inserts it behind the
        cursor) or after ``run_ksmd`` may have dropped it."""
        return self._order_known

    def prediction(self) -> Prediction:
        """What the system must show once settled (exact when :meth:`settled`)."""
        return predicted_after_quiet_scans(
            self.candidates(), self._knobs, self._processes, quiet_scans=max(2, self.quiet_scans())
        )

    def predicted_host_cache(self) -> dict[int, bytes]:
        """The most a settled system keeps of the host cache (exclusive_host_cache on: the
        pages whose content is in no tree; pages dropped earlier stay dropped), or every
        page inserted (off)."""
        if not self._knobs.exclusive_host_cache:
            return dict(self._host_cache)
        return predicted_host_cache(self._cache_at_quiet_start, self.prediction().tree_contents)

    def may_write(self, pid: int, addr: int) -> bool:
        """Whether process ``pid`` may store to the page at ``addr`` (it is mapped with
        write permission); a PTE there may still be read-only (see
        :class:`~spec.ksm_api.MappedPage`)."""
        page = self._processes[pid].pages.get(addr - addr % PAGE_SIZE) if pid in self._processes else None
        return page is not None and page.writable

    def views(self) -> dict[tuple[int, int], bytes]:
        """Every present page's content: (pid, page address) -> PAGE_SIZE bytes."""
        return {
            (pid, addr): page.content
            for pid, proc in self._processes.items()
            for addr, page in proc.pages.items()
            if page.content is not None
        }

    # -- processes and mappings

    def _process(self, pid: int) -> _Process:
        proc = self._processes.get(pid)
        if proc is None:
            raise MappingError("ESRCH", f"no process {pid}")
        return proc

    def _range(self, pid: int, addr: int, npages: int, *, all_mapped: bool) -> tuple[_Process, list[int]]:
        proc = self._process(pid)
        if addr % PAGE_SIZE or npages < 1:
            raise MappingError("EINVAL", f"bad range {addr:#x} + {npages} pages")
        addrs = [addr + i * PAGE_SIZE for i in range(npages)]
        if all_mapped:
            missing = [a for a in addrs if a not in proc.pages]
            if missing:
                raise MappingError("ENOMEM", f"pid {pid}: {missing[0]:#x} is not mapped")
        return proc, addrs

    def _register(self, pid: int, proc: _Process) -> None:
        """``__ksm_enter`` unless on the list: join ksmd's list behind the scan cursor
        (at the end between full scans)."""
        if proc.listed is True:
            return
        if proc.listed is None or self._mid_scan:
            self._order_known = False  # maybe still listed at its old place; or mid-scan
        proc.listed = True
        self._registrations += 1
        proc.registered_at = self._registrations

    def _unmerged_now(self, before: KsmSnapshot | None, pid: int, addrs: set[int]) -> None:
        """Record the exact state after the pages ``addrs`` of ``pid`` were unmerged and
        unregistered (their rmap items stay), if the state before was exact."""
        self._changed()
        if before is None:
            return
        pages = tuple(page for page in before.pages if not (page.pid == pid and page.addr in addrs))
        self._retained = dataclasses.replace(before, pages=pages)

    def _exact_before(self) -> KsmSnapshot | None:
        return self.current_prediction().snapshot if self.exact() else None

    def add_process(self) -> int:
        """Create a process; pids are 1, 2, 3, ..."""
        pid = len(self._processes) + 1
        self._processes[pid] = _Process({})
        return pid

    def mmap(
        self, pid: int, npages: int, *, writable: bool = True, kinds: Sequence[GuestKind] | None = None
    ) -> int:
        """First-fit anonymous mapping (see :mod:`spec.ksm_api`)."""
        proc = self._process(pid)
        if npages < 1:
            raise MappingError("EINVAL", f"mmap of {npages} pages")
        if kinds is not None and len(kinds) != npages:
            raise MappingError("EINVAL", f"{len(kinds)} kinds for {npages} pages")
        addr = MMAP_BASE
        while any(addr + i * PAGE_SIZE in proc.pages for i in range(npages)):
            addr += PAGE_SIZE
        for i in range(npages):
            kind = kinds[i] if kinds is not None else GuestKind.ANONYMOUS
            proc.pages[addr + i * PAGE_SIZE] = _Page(None, True, writable, proc.merge_any, kind)
        if proc.merge_any:
            self._register(pid, proc)  # back on ksmd's list if ksmd had dropped it
        return addr

    def munmap(self, pid: int, addr: int, npages: int) -> None:
        """Drop the mapped pages of the range; as after an unmerge, their rmap items stay
        until ksmd next passes (and the model stays exact if it was)."""
        proc, addrs = self._range(pid, addr, npages, all_mapped=False)
        before = self._exact_before()
        gone = {a for a in addrs if proc.pages.pop(a, None) is not None}
        if gone:
            self._unmerged_now(before, pid, gone)

    def mprotect(self, pid: int, addr: int, npages: int, *, readable: bool, writable: bool) -> None:
        """Change protection; merging is unaffected (PROT_NONE pages still merge)."""
        proc, addrs = self._range(pid, addr, npages, all_mapped=True)
        for a in addrs:
            proc.pages[a].readable = readable
            proc.pages[a].writable = writable

    def madvise(self, pid: int, addr: int, npages: int, advice: Advice) -> None:
        """Register the range (joining ksmd's list), or unregister it: unmerged at once,
        its rmap items kept until ksmd next passes. Advice that changes no page's
        registration changes nothing (the kernel ignores it)."""
        proc, addrs = self._range(pid, addr, npages, all_mapped=False)
        if advice not in ("MERGEABLE", "UNMERGEABLE"):  # before the mapping, as do_madvise checks it
            raise MappingError("EINVAL", f"unknown advice {advice!r}")
        self._range(pid, addr, npages, all_mapped=True)
        register = advice == "MERGEABLE"
        changing = {a for a in addrs if proc.pages[a].registered != register}
        if not changing:
            return
        before = None if register else self._exact_before()
        for a in changing:
            proc.pages[a].registered = register
        if register:
            self._register(pid, proc)
            self._changed()
        else:
            self._unmerged_now(before, pid, changing)

    def set_process_merge(self, pid: int, enabled: bool) -> None:
        """PR_SET_MEMORY_MERGE. On: unless already on (``ksm_enable_merge_any`` returns
        early, even when ksmd has dropped the process from its list), join ksmd's list
        and register every page (now and later). Off: only when on
        (``ksm_disable_merge_any`` returns early otherwise), unmerge and unregister every
        page, also those registered by ``madvise``; the rmap items stay until ksmd next
        passes."""
        proc = self._process(pid)
        if enabled == proc.merge_any:
            return  # ksm_enable_merge_any / ksm_disable_merge_any return early
        if enabled:
            proc.merge_any = True
            for page in proc.pages.values():
                page.registered = True
            self._register(pid, proc)
            self._changed()
            return
        before = self._exact_before()
        changing = {a for a, page in proc.pages.items() if page.registered}
        proc.merge_any = False
        for page in proc.pages.values():
            page.registered = False
        self._unmerged_now(before, pid, changing)

    def set_guest_kind(self, pid: int, addr: int, npages: int, kind: GuestKind) -> None:
        """Record the guest's use of the range."""
        proc, addrs = self._range(pid, addr, npages, all_mapped=True)
        for a in addrs:
            proc.pages[a].kind = kind
        self._changed()

    # -- user accesses

    def _pages_for(self, pid: int, addr: int, length: int, access: str) -> list[tuple[int, _Page]]:
        proc = self._process(pid)
        if length < 0 or addr < 0:
            raise MappingError("EINVAL", f"bad access {addr:#x} length {length}")
        first = addr - addr % PAGE_SIZE
        result = []
        for page_addr in range(first, addr + length, PAGE_SIZE):
            page = proc.pages.get(page_addr)
            allowed = page is not None and (page.writable if access == "write" else page.readable)
            if page is None or not allowed:
                raise SegmentationFault(pid, max(addr, page_addr), "write" if access == "write" else "read")
            result.append((page_addr, page))
        return result

    def write(self, pid: int, addr: int, data: bytes) -> None:
        """Store ``data``; only the writer's view changes."""
        targets = self._pages_for(pid, addr, len(data), "write")
        for page_addr, page in targets:
            old = bytearray(page.content if page.content is not None else ZERO_PAGE)
            lo = max(addr, page_addr)
            hi = min(addr + len(data), page_addr + PAGE_SIZE)
            old[lo - page_addr : hi - page_addr] = data[lo - addr : hi - addr]
            page.content = bytes(old)
        if targets:
            self._changed()

    def read(self, pid: int, addr: int, length: int) -> bytes:
        """Load ``length`` bytes; a page never written reads as zeros."""
        out = bytearray()
        for page_addr, page in self._pages_for(pid, addr, length, "read"):
            content = page.content if page.content is not None else ZERO_PAGE
            lo = max(addr, page_addr)
            hi = min(addr + length, page_addr + PAGE_SIZE)
            out += content[lo - page_addr : hi - page_addr]
        return bytes(out)

    # -- knobs and ksmd

    def set_knob(self, name: str, value: object) -> None:
        """Store a knob. ``EBUSY`` is judged against ``pages_shared``: 0 when ksmd has not
        scanned since the last clean point, else the settled prediction (a harness that
        drives an unsettled system judges with :func:`~spec.ksm_rules.validated_knob` and
        the other side's counter)."""
        pages_shared = 0
        if name == "max_page_sharing" and self._may_have_merged:
            pages_shared = self.current_prediction().counters["pages_shared"]
        self.set_knob_judged(name, value, pages_shared=pages_shared)

    def set_knob_judged(self, name: str, value: object, *, pages_shared: int) -> None:
        """:meth:`set_knob` with ``EBUSY`` judged against the given ``pages_shared``."""
        stored = validated_knob(self._knobs, name, value, pages_shared)
        before = dataclasses.replace(self._knobs)
        setattr(self._knobs, name, stored)
        if name == "run" and stored is RunMode.UNMERGE:
            self._may_have_merged = False
            self._mid_scan = False
            self._scans_since_clean = 0
            self._scans_since_clean_known = True
            self._scans = 0  # unmerge_and_remove_all_rmap_items: ksm_scan.seqnr = 0
            self._changed()
        elif name in ("use_zero_pages", "max_page_sharing", "smart_scan", "checksum", "skip_page_cache"):
            if getattr(before, name) != stored:
                self._changed()
        elif name == "exclusive_host_cache" and stored and not before.exclusive_host_cache:
            self._changed()

    def knobs(self) -> KsmKnobs:
        """A copy of the knobs."""
        return dataclasses.replace(self._knobs)

    def run_ksmd(self, milliseconds: int) -> None:
        """Virtual time passes; the model does not track ksmd's position."""
        if milliseconds < 0:
            raise ValueError(f"negative time {milliseconds}")
        if self._knobs.run is RunMode.MERGE and milliseconds > 0:
            self._retained = None
            for proc in self._processes.values():
                if proc.listed is not False and not proc.has_registered_page():
                    proc.listed = None  # ksmd drops it at the end of its pass, if it gets there
            self._mid_scan = True
            self._may_have_merged = True
            self._scans_since_clean_known = False
            self._ran_since_change = True

    def full_scans(self, count: int) -> None:
        """Count ``count`` more full scans (ksmd stops at the start of the next)."""
        if self._knobs.run is not RunMode.MERGE:
            raise NotRunning(f"full_scans needs run = 1, run is {int(self._knobs.run)}")
        if count < 0:
            raise ValueError(f"negative scan count {count}")
        if count == 0:
            return
        listed = [proc for proc in self._processes.values() if proc.listed is not False]
        if not listed:
            return  # an empty list: ksmd sleeps, no scan completes
        if not any(proc.has_registered_page() for proc in listed):
            # The first scan drops every process (none has a mergeable mapping); then
            # the list is empty and no other scan completes.
            count = 1
            if all(proc.listed is None for proc in listed):
                # Maybe the list is empty already (0 scans), maybe not (1): count the
                # lower bound; full_scans is no longer exact.
                self._scans_since_clean_known = False
                count = 0
        self._retained = None
        for proc in self._processes.values():
            if proc.listed is not False and not proc.has_registered_page():
                proc.listed = False  # process-wide merging stays on (Linux 6.18)
        if count == 0:
            return
        self._scans += count
        self._scans_since_change += count
        self._scans_since_clean += count
        self._may_have_merged = True
        self._mid_scan = False
        if self._knobs.exclusive_host_cache:
            trees = self.prediction().tree_contents
            self._host_dropped |= {page_id for page_id, content in self._host_cache.items() if content in trees}

    def host_cache_insert(self, data: bytes) -> int:
        """Add a host page-cache page."""
        if len(data) > PAGE_SIZE:
            raise ValueError(f"a page holds {PAGE_SIZE} bytes, not {len(data)}")
        page_id = self._next_host_id
        self._next_host_id += 1
        self._host_cache[page_id] = data + bytes(PAGE_SIZE - len(data))
        self._cache_at_quiet_start[page_id] = self._host_cache[page_id]
        return page_id

    def host_cache(self) -> dict[int, bytes]:
        """The host cache: every page inserted, minus those the model's own full scans
        dropped (with ``exclusive_host_cache`` on, each ``full_scans`` call drops the
        pages whose content the settled trees hold)."""
        return {page_id: content for page_id, content in self._host_cache.items() if page_id not in self._host_dropped}

    def counters(self) -> dict[str, int]:
        """The current prediction (:meth:`current_prediction`); ``full_scans`` counts the
        scans asked of the model since the last ``run = 2`` (see :meth:`full_scans_exact`)."""
        return dict(self.current_prediction().counters, full_scans=self._scans, pages_skipped=0)

    def full_scans_exact(self) -> bool:
        """Whether ``counters()["full_scans"]`` is exact: the scans asked of the model by
        ``full_scans`` since the start or the last ``run = 2`` (which resets the kernel's
        ``seqnr``). Once ``run_ksmd`` has run since then it is only a lower bound (ksmd
        may have completed any number of scans of its own)."""
        return self._scans_since_clean_known

    def process_counters(self, pid: int) -> dict[str, int]:
        """The current prediction for one process."""
        self._process(pid)
        return dict(self.current_prediction().process_counters[pid])

    def snapshot(self) -> KsmSnapshot:
        """The current prediction's state, with the model's own frame numbers (0 = the
        zero page); a private page is writable iff its mapping is."""
        predicted = self.current_prediction()
        pages = tuple(
            dataclasses.replace(page, writable=False) if page.writable and not self.may_write(page.pid, page.addr) else page
            for page in predicted.snapshot.pages
        )
        return dataclasses.replace(
            predicted.snapshot,
            pages=pages,
            counters=self.counters(),
            host_cache=self.host_cache(),
        )


assert set(KNOB_NAMES) == {f.name for f in dataclasses.fields(KsmKnobs)}

__all__ = [
    "Candidate",
    "KsmModel",
    "Prediction",
    "ZERO_PAGE",
    "completeness_violations",
    "general_profit",
    "merged_count_by_content",
    "predicted_after_first_scan",
    "predicted_after_quiet_scans",
    "predicted_host_cache",
]
