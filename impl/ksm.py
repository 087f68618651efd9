"""KSM on the emulated machine: processes, their anonymous memory, and ksmd merging it.

:class:`Ksm` satisfies :class:`spec.ksm_api.KsmSystem`. Each process is an
:class:`~impl.mmu_emu.AddressSpace` on one shared :class:`~impl.mmu_emu.Machine`; user
``read``/``write`` are loads and stores through the MMU (TLB, page walk, faults), so a
store to a merged page really takes a write-protection fault, which this module's fault
handler resolves by copy-on-write. ksmd itself (trees, scan, merge steps) is
:class:`impl.ksm_scan.KsmEngine`; invariants and snapshots are in :mod:`impl.ksm_check`.

Choices where the spec or the kernel leave freedom (the spec's conventions are followed
where it states one):

- **Page-table encoding.** A private anonymous page is mapped ``P|US`` plus ``RW`` once
  it may be written; a KSM page ``P|US`` (read-only, clean); a zero page merged by KSM
  ``P|US|SW1`` (the software bit plays the kernel's "dirty special zero PTE" marker);
  a ``PROT_NONE`` page stays present with ``US`` cleared, so user accesses fault while
  ksmd (the supervisor) can still read and merge it — as on x86, where a ``PROT_NONE``
  PTE is present to the kernel but not to the user.
- **Read faults** of never-written pages map the shared zero page read-only without the
  KSM marker (Linux's ``do_anonymous_page`` for reads): the page reads as zeros, is not
  anonymous, so ksmd never scans it, and it is not "present" in snapshots. A later write
  gets a fresh zeroed frame.
- **Write faults** on read-only PTEs: to a KSM page → copy-on-write (``cow_ksm``); to the
  zero page → a fresh zeroed frame (and ``ksm_zero_pages`` drops if KSM had put it
  there); to a private page mapped once → the PTE is made writable again (reuse),
  unless ksmd holds the page's lock while merging it → a private copy (the kernel's
  ``wp_can_reuse_anon_folio`` needs the folio lock).
- **Unsharing** (``MADV_UNMERGEABLE``, ``run = 2``, ``prctl``) gives each merged page a
  private copy mapped read-only and clean, as ``FAULT_FLAG_UNSHARE`` does; the next
  store makes it writable by reuse.
- **ksmd's list.** A process joins the list when it registers a range (or turns on
  process-wide merging) while it is not on it, at the end (between full scans the
  kernel's cursor is the list head, and a new mm goes just behind the cursor); at the
  end of its pass a process with no mergeable mapping leaves the list, as the kernel's
  ``scan_get_next_rmap_item`` does when ``ksm_scan.address`` is still 0; process-wide
  merging stays on (Linux 6.18 keeps ``MMF_VM_MERGE_ANY``, as the live kernel shows), so
  its next mapping is mergeable and brings it back, while ``set_process_merge(True)``
  returns early and does not.
- **An empty list.** Then no full scan can complete (ksmd sleeps until a process
  registers): ``full_scans(n)`` returns at once, counting nothing, as the kernel's
  counter would stay.
- **madvise(UNMERGEABLE) / prctl(0)** unmerge the range at once but leave its rmap items
  (and so ``pages_sharing``, ``ksm_rmap_items``, ``ksm_merging_pages``) to ksmd's next
  pass, as the kernel's ``unmerge_ksm_pages`` does.
- **Host page cache** pages are real frames of the machine; dropping one frees it.
- **Pins** are set by tests with :meth:`Ksm.pin` (an O_DIRECT or GUP pin): a pinned page
  is never merged, exactly the kernel's ``page_count`` test in ``write_protect_page``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from impl.ksm_scan import KSM_ZERO_BIT, PAGE, PAGE_MASK, KsmEngine
from impl.ksm_state import Frame, Process
from impl.mmu_emu import AddressSpace, Machine, PageFault, Vma, VmaFlags
from spec.ksm_api import (
    KNOB_NAMES,
    MMAP_BASE,
    RMAP_ITEM_SIZE,
    SLEEP_MILLISECS_MAX,
    UINT_MAX,
    Advice,
    GuestKind,
    KnobError,
    KsmKnobs,
    KsmSnapshot,
    MappingError,
    NotRunning,
    RunMode,
    SegmentationFault,
)
from spec.paging import ADDR_MASK, RW, US, D, P

#: Default DRAM of the machine: 64 MiB (16384 frames).
DEFAULT_DRAM = 64 << 20
_BOOL_KNOBS = ("use_zero_pages", "smart_scan", "lookahead", "skip_page_cache",
               "exclusive_host_cache")  # fmt: skip


class Ksm(KsmEngine):
    """Processes on an emulated machine, merged by a kernel-faithful ksmd.

    Guarantees (besides the Protocol's): every operation leaves
    :meth:`check_invariants` true; the same calls give the same frames, addresses,
    counters and snapshots (deterministic, no wall clock).
    """

    def __init__(self, dram_size: int = DEFAULT_DRAM, *, machine: Machine | None = None) -> None:
        super().__init__(machine if machine is not None else Machine(dram_size), KsmKnobs())
        self._next_pid = 1
        self._next_host_id = 0

    # == processes and mappings ======================================================
    def _proc(self, pid: int) -> Process:
        proc = self.procs.get(pid)
        if proc is None:
            raise MappingError("ESRCH", f"no process {pid}")
        return proc

    def add_process(self) -> int:
        """Create a process (an empty address space); returns its pid (1, 2, ...)."""
        pid = self._next_pid
        self._next_pid += 1
        space = AddressSpace(self.machine, name=f"pid{pid}")
        space.fault_handlers = []  # faults are this module's business (see _fault)
        self.procs[pid] = Process(pid, space)
        return pid

    def _handler(self, proc: Process) -> "_FaultHandler":
        return _FaultHandler(self, proc)

    @staticmethod
    def _range(addr: int, npages: int) -> tuple[int, int]:
        if not isinstance(npages, int) or isinstance(npages, bool) or npages < 1:
            raise MappingError("EINVAL", f"npages must be a positive int, got {npages!r}")
        if not isinstance(addr, int) or addr % PAGE or addr < 0:
            raise MappingError("EINVAL", f"address {addr!r} is not page aligned")
        return addr, addr + npages * PAGE

    def mmap(
        self, pid: int, npages: int, *, writable: bool = True,
        kinds: Sequence[GuestKind] | None = None,
    ) -> int:  # fmt: skip
        """Map ``npages`` demand-zero pages at the lowest free address from MMAP_BASE."""
        proc = self._proc(pid)
        proc.layout_gen += 1
        self._range(MMAP_BASE, npages)
        if kinds is not None and len(kinds) != npages:
            raise MappingError("EINVAL", f"{len(kinds)} kinds for {npages} pages")
        size = npages * PAGE
        start = MMAP_BASE
        for vma in proc.space.vmas():
            if vma.end <= start:
                continue
            if vma.start >= start + size:
                break
            start = vma.end
        flags = VmaFlags.READ | VmaFlags.ANON
        if writable:
            flags |= VmaFlags.WRITE
        if proc.merge_any:
            flags |= VmaFlags.MERGEABLE
            self._register(proc)  # back on ksmd's list if ksmd had dropped it
        proc.space.add_vma(start, start + size, flags, "anon", self._handler(proc))
        for i, kind in enumerate(kinds or ()):
            if kind is not GuestKind.ANONYMOUS:
                proc.kinds[start + i * PAGE] = kind
        return start

    def _split(self, proc: Process, start: int, end: int) -> list[Vma]:
        """Split the VMAs straddling ``start``/``end``; the VMAs inside, in order."""
        space = proc.space
        inside: list[Vma] = []
        for vma in space.vmas():
            if vma.end <= start or vma.start >= end:
                continue
            if vma.start < start or vma.end > end:
                space.release(vma)
                for lo, hi in ((vma.start, start), (max(vma.start, start), min(vma.end, end)),
                               (end, vma.end)):  # fmt: skip
                    if lo < hi:
                        piece = space.add_vma(lo, hi, vma.flags, vma.name, vma.fault_handler)
                        if start <= lo and hi <= end:
                            inside.append(piece)
            else:
                inside.append(vma)
        return inside

    def _require_mapped(self, proc: Process, start: int, end: int) -> None:
        va = start
        for vma in proc.space.vmas():
            if vma.end <= va:
                continue
            if vma.start > va:
                break
            va = vma.end
            if va >= end:
                return
        raise MappingError("ENOMEM", f"[{start:#x}, {end:#x}) is not entirely mapped")

    def present_ptes(self, proc: Process, start: int, end: int) -> list[tuple[int, int]]:
        """``(va, entry)`` of every present PTE in ``[start, end)``."""
        out: list[tuple[int, int]] = []
        va = start
        while va < end:
            entry = self.pte(proc, va)[1]
            if (va >> 21) not in proc.pt_cache:
                va = min(end, (va | 0x1F_FFFF) + 1)
                continue
            if entry & P:
                out.append((va, entry))
            va += PAGE
        return out

    def _unmap_page(self, proc: Process, va: int, entry: int) -> None:
        proc.space.unmap(va)
        frame = entry & ADDR_MASK
        if frame == self.zero_frame:
            if entry & KSM_ZERO_BIT:
                self.ksm_zero_pages -= 1
                proc.zero_pages -= 1
            return
        f = self.frames[frame]
        f.mapcount -= 1
        self._maybe_free(frame, f)

    def munmap(self, pid: int, addr: int, npages: int) -> None:
        """Unmap the mapped pages of the range (rmap items stay until ksmd passes)."""
        proc = self._proc(pid)
        proc.layout_gen += 1
        start, end = self._range(addr, npages)
        for vma in self._split(proc, start, end):
            for va, entry in self.present_ptes(proc, vma.start, vma.end):
                self._unmap_page(proc, va, entry)
            proc.space.release(vma)
        for va in [a for a in proc.kinds if start <= a < end]:
            del proc.kinds[va]

    def mprotect(self, pid: int, addr: int, npages: int, *, readable: bool, writable: bool) -> None:
        """Change the protection of the range (all of it mapped); PTEs follow at once:
        ``US`` off for PROT_NONE, ``RW`` kept only on private pages mapped once."""
        proc = self._proc(pid)
        proc.layout_gen += 1
        start, end = self._range(addr, npages)
        self._require_mapped(proc, start, end)
        for vma in self._split(proc, start, end):
            flags = vma.flags & ~(VmaFlags.READ | VmaFlags.WRITE)
            if readable:
                flags |= VmaFlags.READ
            if writable:
                flags |= VmaFlags.WRITE
            vma.flags = flags
            for va, entry in self.present_ptes(proc, vma.start, vma.end):
                frame = entry & ADDR_MASK
                new = entry & ~(RW | US | D)
                if readable or writable:
                    new |= US
                f = self.frames.get(frame)
                if writable and f is not None and not f.ksm and f.mapcount == 1:
                    new |= RW | (entry & D)
                if new != entry:
                    self._set_pte(proc, va, new)

    def _register(self, proc: Process) -> None:
        """``__ksm_enter``: put the process on ksmd's list just behind the scan cursor
        (at the end between full scans; mid-scan, before the process being scanned)."""
        if not proc.registered:
            proc.registered = True
            if self.scan_index < 0:
                self.mm_list.append(proc)
            else:
                self.mm_list.insert(self.scan_index, proc)
                self.scan_index += 1

    def _unmerge_range(self, proc: Process, start: int, end: int) -> None:
        for va, _ in self.present_ptes(proc, start, end):
            self.break_ksm(proc, va)

    def madvise(self, pid: int, addr: int, npages: int, advice: Advice) -> None:
        """``MADV_MERGEABLE`` registers the range; ``MADV_UNMERGEABLE`` unmerges it at
        once (its rmap items stay until ksmd next passes, as in the kernel)."""
        proc = self._proc(pid)
        proc.layout_gen += 1
        start, end = self._range(addr, npages)
        if advice not in ("MERGEABLE", "UNMERGEABLE"):
            raise MappingError("EINVAL", f"unknown advice {advice!r}")
        self._require_mapped(proc, start, end)
        for vma in self._split(proc, start, end):
            if advice == "MERGEABLE":
                vma.flags |= VmaFlags.MERGEABLE
            elif vma.flags & VmaFlags.MERGEABLE:
                self._unmerge_range(proc, vma.start, vma.end)
                vma.flags &= ~VmaFlags.MERGEABLE
        if advice == "MERGEABLE":
            self._register(proc)

    def set_process_merge(self, pid: int, enabled: bool) -> None:
        """``prctl(PR_SET_MEMORY_MERGE)``: on, every mapping is mergeable (now and
        later) unless it already was on (``ksm_enable_merge_any`` returns early); off,
        only if it is on (``ksm_disable_merge_any`` returns early otherwise), every
        mergeable mapping is unmerged and unregistered (``ksm_del_vmas``), also those
        registered by ``madvise``; the rmap items stay until ksmd next passes."""
        proc = self._proc(pid)
        if enabled == proc.merge_any:
            return
        proc.layout_gen += 1
        if enabled:
            self._register(proc)
            proc.merge_any = True
            for vma in proc.space.vmas():
                vma.flags |= VmaFlags.MERGEABLE
            return
        for vma in proc.space.vmas():
            if vma.flags & VmaFlags.MERGEABLE:
                self._unmerge_range(proc, vma.start, vma.end)
                vma.flags &= ~VmaFlags.MERGEABLE
        proc.merge_any = False

    def set_guest_kind(self, pid: int, addr: int, npages: int, kind: GuestKind) -> None:
        """Record the guest kind of every page of the range (all of it mapped)."""
        proc = self._proc(pid)
        start, end = self._range(addr, npages)
        self._require_mapped(proc, start, end)
        for va in range(start, end, PAGE):
            if kind is GuestKind.ANONYMOUS:
                proc.kinds.pop(va, None)
            else:
                proc.kinds[va] = kind

    # == user accesses ===============================================================
    def _check_access(self, proc: Process, addr: int, length: int, write: bool) -> None:
        need = VmaFlags.WRITE if write else VmaFlags.READ
        va = addr & PAGE_MASK
        while va < addr + length:
            vma = proc.space.find_vma(va)
            if vma is None or not vma.flags & need:
                raise SegmentationFault(proc.pid, max(addr, va), "write" if write else "read")
            va += PAGE

    def write(self, pid: int, addr: int, data: bytes) -> None:
        """A user store through the MMU; faults on merged pages break COW first."""
        proc = self._proc(pid)
        if addr < 0:
            raise MappingError("EINVAL", f"bad access {addr:#x}")
        if not data:
            return
        self._check_access(proc, addr, len(data), write=True)
        self.user_stores += 1
        try:
            proc.space.store(addr, data)
        except PageFault as fault:
            raise SegmentationFault(pid, fault.va, "write") from None

    def read(self, pid: int, addr: int, length: int) -> bytes:
        """A user load through the MMU (never-written pages read as zeros)."""
        proc = self._proc(pid)
        if length < 0 or addr < 0:
            raise MappingError("EINVAL", f"bad access {addr:#x} length {length}")
        if length == 0:
            return b""
        self._check_access(proc, addr, length, write=False)
        try:
            return proc.space.load(addr, length)
        except PageFault as fault:
            raise SegmentationFault(pid, fault.va, "read") from None

    def cow_fault(self, proc: Process, va: int, frame: int) -> None:
        """A user write to the KSM page ``frame`` at ``va``: copy-on-write."""
        self.copy_on_write(proc, va, frame, writable=True)

    def handle_fault(self, proc: Process, vma: Vma, fault: PageFault) -> bool:
        """The fault handler of every mapping (see the module docstring)."""
        va = fault.va & PAGE_MASK
        space = proc.space
        if not fault.protection:
            if fault.write:
                frame = self.machine.alloc_frame()
                self.frames[frame] = Frame()
                space.map(va, frame, US | RW)
            else:
                space.map(va, self.zero_frame, US)
            return True
        entry = self.pte(proc, va)[1]
        if not fault.write or not entry & P or not entry & US:
            return False
        frame = entry & ADDR_MASK
        if frame == self.zero_frame:
            new_frame = self.machine.alloc_frame()
            self.frames[new_frame] = Frame()
            self._set_pte(proc, va, new_frame | P | US | RW)
            if entry & KSM_ZERO_BIT:
                self.ksm_zero_pages -= 1
                proc.zero_pages -= 1
            return True
        f = self.frames.get(frame)
        if f is None:
            return False
        if f.ksm:
            self.cow_fault(proc, va, frame)
        elif f.locked:  # ksmd is merging this page: copy (wp_page_copy), never reuse
            self.copy_on_write(proc, va, frame, writable=True)
        elif f.mapcount == 1:
            space.protect(va, True)
        else:  # pragma: no cover - private pages are mapped once (no fork)
            return False
        return True

    # == test hooks ==================================================================
    def frame_at(self, pid: int, addr: int) -> int | None:
        """The frame mapped at ``addr`` in process ``pid`` (None if not present)."""
        entry = self.pte(self._proc(pid), addr & PAGE_MASK)[1]
        return entry & ADDR_MASK if entry & P else None

    def pin(self, pid: int, addr: int, pins: int) -> None:
        """Set the pin count of the page mapped at ``addr`` (a GUP/O_DIRECT pin)."""
        frame = self.frame_at(pid, addr)
        if frame is None or frame not in self.frames:
            raise MappingError("EINVAL", f"no anonymous page at {addr:#x} in process {pid}")
        self.frames[frame].pins = pins

    # == knobs and ksmd ==============================================================
    def knobs(self) -> KsmKnobs:
        """A copy of the knobs."""
        return dataclasses.replace(self.knobs_state)

    def set_knob(self, name: str, value: object) -> None:
        """Store a knob with the kernel's checks (see ``spec.ksm_api``)."""
        if name not in KNOB_NAMES:
            raise KnobError("ENOENT", f"no knob {name!r}")
        k = self.knobs_state
        if name in ("run", "pages_to_scan", "sleep_millisecs", "max_page_sharing"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise KnobError("EINVAL", f"{name} takes an int, got {value!r}")
            limit = {"run": 2, "pages_to_scan": UINT_MAX,
                     "sleep_millisecs": SLEEP_MILLISECS_MAX}.get(name)  # fmt: skip
            if value < (2 if name == "max_page_sharing" else 0) or (
                limit is not None and value > limit
            ):
                raise KnobError("EINVAL", f"{name} = {value} is out of range")
            if name == "run":
                self._set_run(RunMode(value))
            elif name == "max_page_sharing":
                if value != k.max_page_sharing:
                    if self.pages_shared or not self._remove_all_stable_nodes():
                        raise KnobError("EBUSY", "KSM pages exist (pages_shared != 0)")
                    k.max_page_sharing = value
            else:
                setattr(k, name, value)
            return
        if name in _BOOL_KNOBS:
            if not isinstance(value, int) or value not in (0, 1):
                raise KnobError("EINVAL", f"{name} takes a bool, got {value!r}")
            setattr(k, name, bool(value))
            return
        if value not in ("xxhash", "jhash2"):
            raise KnobError("EINVAL", f"checksum must be 'xxhash' or 'jhash2', got {value!r}")
        k.checksum = "xxhash" if value == "xxhash" else "jhash2"
        self.set_checksum(k.checksum)

    def _set_run(self, mode: RunMode) -> None:
        k = self.knobs_state
        if k.run == mode:
            return
        k.run = mode
        if mode == RunMode.MERGE:
            self.next_batch_ms = max(self.next_batch_ms, self.now_ms)
        elif mode == RunMode.UNMERGE:
            self._unmerge_everything()

    def _unmerge_everything(self) -> None:
        """``unmerge_and_remove_all_rmap_items``: break every KSM page, free every rmap
        item and stable node, restart the scan (``full_scans`` back to 0)."""
        for proc in self.mm_list:
            for vma in proc.space.vmas():
                if vma.flags & VmaFlags.MERGEABLE:
                    self._unmerge_range(proc, vma.start, vma.end)
            self.remove_trailing_rmap_items(proc, None)
        self._remove_all_stable_nodes()
        self.scan_index = -1
        self.scan_prev = None
        self.unstable_tree.clear()
        self.optimisations.forget()
        self.seqnr = 0

    def _remove_all_stable_nodes(self) -> bool:
        """``remove_all_stable_nodes``: drop every node whose page is unmapped; False
        (busy) if some KSM page is still mapped."""
        ok = True
        for rb in list(self.stable_tree):
            head = rb.value
            nodes = list(head.dups) if head.is_chain else [head]
            for node in nodes:
                f = self.frames.get(node.frame)
                if f is not None and f.stable is node:
                    if f.mapcount:
                        ok = False
                        continue
                    f.stable = None
                self.remove_node_from_stable_tree(node)
            if head.is_chain and not head.dups and head.rb is rb:
                self.stable_tree.erase(rb)
                head.rb = None
                self.stable_node_chains -= 1
        return ok

    def _batch(self) -> None:
        self.now_ms = max(self.now_ms, self.next_batch_ms)
        self.do_scan(self.knobs_state.pages_to_scan)
        self.next_batch_ms = self.now_ms + max(1, self.knobs_state.sleep_millisecs)

    def run_ksmd(self, milliseconds: int) -> None:
        """Run ksmd for ``milliseconds`` of virtual time: a batch whenever it wakes
        (every ``max(1, sleep_millisecs)`` ms) before the end of the interval."""
        if milliseconds < 0:
            raise ValueError("negative time")
        end = self.now_ms + milliseconds
        while self.is_running() and self.next_batch_ms < end:
            self._batch()
        self.now_ms = end

    def full_scans(self, count: int) -> None:
        """Run ksmd until ``count`` more full scans have completed, or until its list is
        empty between scans (then ksmd sleeps and no scan can complete)."""
        if not self.is_running():
            raise NotRunning("full_scans needs run = MERGE")
        target = self.seqnr + count
        while self.seqnr < target:
            if not self.mm_list and self.scan_index < 0:
                return
            self._batch()

    # == host page cache =============================================================
    def host_cache_insert(self, data: bytes) -> int:
        """Put a page (``data`` zero-padded to a page) into the host page cache."""
        if len(data) > PAGE:
            raise MappingError("EINVAL", f"a host cache page holds {PAGE} bytes, got {len(data)}")
        frame = self.machine.alloc_frame()
        self.dram[frame : frame + len(data)] = data
        page_id = self._next_host_id
        self._next_host_id += 1
        self.host_pages[page_id] = frame
        return page_id

    def host_cache(self) -> dict[int, bytes]:
        """Host cache id -> content of the pages still cached."""
        return {pid: self.page_bytes(frame) for pid, frame in self.host_pages.items()}

    # == counters, snapshot, invariants ==============================================
    def counters(self) -> dict[str, int]:
        """The kernel's global counters."""
        volatile = self.rmap_items - self.pages_shared - self.pages_sharing - self.pages_unshared
        return {
            "pages_shared": self.pages_shared,
            "pages_sharing": self.pages_sharing,
            "pages_unshared": self.pages_unshared,
            "pages_volatile": max(0, volatile),
            "full_scans": self.seqnr,
            "pages_skipped": self.pages_skipped,
            "stable_node_chains": self.stable_node_chains,
            "stable_node_dups": self.stable_node_dups,
            "ksm_zero_pages": self.ksm_zero_pages,
            "general_profit": (self.pages_sharing + self.ksm_zero_pages) * PAGE
            - self.rmap_items * RMAP_ITEM_SIZE,
        }

    def process_counters(self, pid: int) -> dict[str, int]:
        """``/proc/<pid>/ksm_stat``."""
        p = self._proc(pid)
        return {
            "ksm_merging_pages": p.merging_pages,
            "ksm_rmap_items": p.rmap_items,
            "ksm_zero_pages": p.zero_pages,
            "ksm_process_profit": (p.merging_pages + p.zero_pages) * PAGE
            - p.rmap_items * RMAP_ITEM_SIZE,
        }

    def snapshot(self) -> KsmSnapshot:
        """The state as plain data (see :func:`impl.ksm_check.snapshot`)."""
        from impl.ksm_check import snapshot

        return snapshot(self)

    def check_invariants(self) -> None:
        """Assert every invariant (see :func:`impl.ksm_check.check_invariants`)."""
        from impl.ksm_check import check_invariants

        check_invariants(self)


class _FaultHandler:
    """The per-process fault handler bound into every VMA (``Vma.fault_handler``)."""

    __slots__ = ("ksm", "proc")

    def __init__(self, ksm: Ksm, proc: Process) -> None:
        self.ksm = ksm
        self.proc = proc

    def __call__(self, space: AddressSpace, vma: Vma, fault: PageFault) -> bool:
        return self.ksm.handle_fault(self.proc, vma, fault)
