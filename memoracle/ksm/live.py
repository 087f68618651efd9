"""``LiveKsm``: the running kernel's KSM as a :class:`spec.ksm_api.KsmSystem`.

Processes are real worker processes (:mod:`memoracle.ksm.live_worker`) holding private
anonymous mappings; every Protocol call is the system call the kernel's own selftests
make (``mmap``, ``munmap``, ``mprotect``, ``madvise(MADV_[UN]MERGEABLE)``,
``prctl(PR_SET_MEMORY_MERGE)``) or a load or store in the worker; knobs are
``/sys/kernel/mm/ksm``; global counters come from there, per-process counters from
``/proc/PID/ksm_stat``; the snapshot's pages from ``/proc/PID/pagemap`` and
``/proc/kpageflags``.

**Pacing ksmd.** ksmd runs in real time, so every observation point is made
deterministic: between calls ksmd is stopped (``run`` is 0 in the kernel whatever the
Protocol's ``run`` is), ``pages_to_scan`` is larger than any scenario's pages (one batch
always finishes the scan in progress: ``scan_get_next_rmap_item`` returns at the end of
a full scan) and ``sleep_millisecs`` is an hour.
``full_scans(n)`` then asks for one scan at a time: it changes ``sleep_millisecs``
(waking ksmd from a timed sleep) then stores ``run = 1`` (waking it from an untimed
one), waits until ``full_scans`` reaches its target, stores ``run = 0`` (which waits for
the batch to end) and checks that the counter is exactly the target (no scan slipped
in). ``stable_node_chains_prune_millisecs`` is 0 (chains are pruned at every walk), since
real time between scans would otherwise decide when a chain collapses; a lockstep
implementation is set the same way (``Ksm.chain_prune_ms``). A session starts with
``run = 2`` (nothing merged, ``full_scans`` 0, ksmd's cursor at the head of its list).

**What the kernel cannot show.** It has no rmap-item or stable-node view, so
:meth:`LiveKsm.snapshot` has no ``items`` and no ``stable_nodes``; a page's
``writable`` is the mapping's permission for private pages. The research knobs
(``lookahead``, ``skip_page_cache``, ``exclusive_host_cache``, ``checksum`` other than
xxhash) are not in the kernel: storing their stock value changes nothing, another value
is ``ENOENT``. The host page cache is never dropped (stock ksmd). ``run_ksmd`` lets
ksmd run for that many real milliseconds with the stored knobs: not deterministic, so
the lockstep harness does not use it.

Every access is checked against the mappings first (a fault would kill the worker):
``SegmentationFault`` and ``MappingError`` are raised before the kernel is asked, in the
order :class:`impl.ksm.Ksm` raises them.

The session saves every knob and restores it (and kills every worker) on
:meth:`LiveKsm.close`, on leaving a ``with`` block, on SIGINT/SIGTERM and at exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Sequence

from memoracle.ksm import live_worker as worker_protocol
from memoracle.ksm.live_sysfs import KsmSysfs, LiveBusy, LiveUnavailable, process_stat
from spec.ksm_api import (
    KNOB_NAMES,
    MMAP_BASE,
    PAGE_SIZE,
    PROCESS_COUNTERS,
    Advice,
    GuestKind,
    KnobError,
    KsmKnobs,
    KsmSnapshot,
    MappedPage,
    MappingError,
    NotRunning,
    RunMode,
    SegmentationFault,
)

#: The test window: every mapping a worker makes lies in [MMAP_BASE, WINDOW_END).
WINDOW_END = MMAP_BASE + (1 << 32)
#: Pacing: a batch larger than any scenario, a sleep of an hour (two values to toggle).
PACED_PAGES_TO_SCAN = 1 << 20
PACED_SLEEPS = ("3600000", "3599999")
#: Seconds a full scan may take before the session gives up (a loaded machine).
SCAN_TIMEOUT = 30.0
_KPF_KSM = 1 << 21
_KPF_ZERO_PAGE = 1 << 24
_RESEARCH_KNOBS = {"lookahead": False, "skip_page_cache": False, "exclusive_host_cache": False, "checksum": "xxhash"}
_ERRNO_NAMES = {1: "EPERM", 12: "ENOMEM", 22: "EINVAL", 17: "EEXIST", 16: "EBUSY"}


class LiveError(RuntimeError):
    """The kernel or a worker did something the session cannot account for (a scan
    slipped in, a worker died, a system call failed unexpectedly)."""


@dataclass
class _Page:
    readable: bool
    writable: bool
    written: bool = False


@dataclass
class _Worker:
    pid: int
    proc: subprocess.Popen[bytes]
    pages: dict[int, _Page] = field(default_factory=dict)
    listed: bool = False  # on ksmd's list (MMF_VM_MERGEABLE), as the session infers it


class LiveKsm:
    """The running kernel's KSM, paced (see the module docstring)."""

    def __init__(self, *, lock_timeout: float = 300.0) -> None:
        self._sysfs = KsmSysfs(lock_timeout=lock_timeout)
        self._workers: dict[int, _Worker] = {}
        self._host: dict[int, bytes] = {}
        self._closed = False
        self._previous_handlers: dict[int, object] = {}
        try:
            self._knobs = KsmKnobs()
            self._skipped_before = self._sysfs.read_int("pages_skipped")
            self._sysfs.write("run", "2")
            self._sysfs.write("run", "0")
            if self._sysfs.saved.get("advisor_mode", "none") != "none":
                self._sysfs.write("advisor_mode", "none")
            for name, value in (("pages_to_scan", "100"), ("sleep_millisecs", "20"), ("use_zero_pages", "0"),
                                ("smart_scan", "1"), ("max_page_sharing", "256")):  # fmt: skip
                self._sysfs.write(name, value)  # the spec's defaults
            self._sysfs.write("pages_to_scan", str(PACED_PAGES_TO_SCAN))
            self._sysfs.write("sleep_millisecs", PACED_SLEEPS[0])
            self._sleep_index = 0
            if (Path("/sys/kernel/mm/ksm") / "stable_node_chains_prune_millisecs").exists():
                self._sysfs.write("stable_node_chains_prune_millisecs", "0")
            self._install_handlers()
        except BaseException:
            self._sysfs.restore()
            raise
        atexit.register(self.close)

    # -- the session

    def _install_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.close()
            previous = self._previous_handlers.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise SystemExit(128 + signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous_handlers[signum] = signal.signal(signum, on_signal)
            except ValueError:  # not the main thread: rely on close() and atexit
                pass

    def close(self) -> list[str]:
        """Kill every worker, unmerge everything, restore every knob; the knobs that
        could not be restored (empty when all were)."""
        if self._closed:
            return []
        self._closed = True
        for worker in self._workers.values():
            if worker.proc.poll() is None:
                worker.proc.kill()
        for worker in self._workers.values():
            try:
                worker.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a kill is not ignored
                pass
            for stream in (worker.proc.stdin, worker.proc.stdout):
                if stream is not None:
                    stream.close()
        problems = self._sysfs.restore()
        for signum, previous in self._previous_handlers.items():
            try:
                signal.signal(signum, previous)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                pass
        atexit.unregister(self.close)
        return problems

    def __enter__(self) -> LiveKsm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sysfs(self) -> KsmSysfs:
        """The session's knobs and counters (for tests that look under the Protocol)."""
        return self._sysfs

    def os_pid(self, pid: int) -> int:
        """The operating system's pid of process ``pid``."""
        return self._worker(pid).proc.pid

    # -- workers

    def _worker(self, pid: int) -> _Worker:
        worker = self._workers.get(pid)
        if worker is None:
            raise MappingError("ESRCH", f"no process {pid}")
        return worker

    def _call(self, worker: _Worker, op: int, a: int = 0, b: int = 0, c: int = 0, payload: bytes = b"") -> tuple[int, int, bytes]:
        proc = worker.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(worker_protocol.REQUEST.pack(op, a, b, c, len(payload)) + payload)
            proc.stdin.flush()
            head = proc.stdout.read(worker_protocol.REPLY.size)
            if len(head) != worker_protocol.REPLY.size:
                raise EOFError
            status, value, size = worker_protocol.REPLY.unpack(head)
            data = proc.stdout.read(size) if size else b""
        except (OSError, EOFError, struct.error):
            raise LiveError(f"worker of process {worker.pid} (pid {proc.pid}) died (exit {proc.poll()})") from None
        return status, value, data

    def _syscall(self, worker: _Worker, what: str, op: int, a: int = 0, b: int = 0, c: int = 0) -> int:
        status, value, _ = self._call(worker, op, a, b, c)
        if status < 0:
            raise LiveError(f"process {worker.pid}: {what} failed: {_ERRNO_NAMES.get(-status, -status)}")
        return value

    def add_process(self) -> int:
        """Start a worker process; pids are 1, 2, ... (see :meth:`os_pid`)."""
        pid = len(self._workers) + 1
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", worker_protocol.__file__, hex(MMAP_BASE), hex(WINDOW_END)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._workers[pid] = _Worker(pid, proc)
        return pid

    # -- mappings (checked here first, in the order impl.ksm.Ksm checks)

    @staticmethod
    def _range(addr: int, npages: int) -> tuple[int, int]:
        if not isinstance(npages, int) or isinstance(npages, bool) or npages < 1:
            raise MappingError("EINVAL", f"npages must be a positive int, got {npages!r}")
        if not isinstance(addr, int) or addr % PAGE_SIZE or addr < 0:
            raise MappingError("EINVAL", f"address {addr!r} is not page aligned")
        return addr, addr + npages * PAGE_SIZE

    @staticmethod
    def _require_mapped(worker: _Worker, start: int, end: int) -> None:
        for va in range(start, end, PAGE_SIZE):
            if va not in worker.pages:
                raise MappingError("ENOMEM", f"[{start:#x}, {end:#x}) is not entirely mapped")

    def mmap(self, pid: int, npages: int, *, writable: bool = True, kinds: Sequence[GuestKind] | None = None) -> int:
        """Map at the lowest free address from MMAP_BASE (``MAP_FIXED_NOREPLACE``)."""
        worker = self._worker(pid)
        self._range(MMAP_BASE, npages)
        if kinds is not None and len(kinds) != npages:
            raise MappingError("EINVAL", f"{len(kinds)} kinds for {npages} pages")
        addr = MMAP_BASE
        while any(addr + i * PAGE_SIZE in worker.pages for i in range(npages)):
            addr += PAGE_SIZE
        self._syscall(worker, "mmap", worker_protocol.OP_MMAP, addr, int(writable), npages * PAGE_SIZE)
        for i in range(npages):
            worker.pages[addr + i * PAGE_SIZE] = _Page(True, writable)
        if self.merge_any(pid):
            worker.listed = True  # a mapping made mergeable brings the process back on the list
        self._tidy(worker)
        return addr

    def munmap(self, pid: int, addr: int, npages: int) -> None:
        """Unmap the range (pages not mapped are ignored)."""
        worker = self._worker(pid)
        start, end = self._range(addr, npages)
        self._syscall(worker, "munmap", worker_protocol.OP_MUNMAP, start, end - start)
        for va in range(start, end, PAGE_SIZE):
            worker.pages.pop(va, None)

    def mprotect(self, pid: int, addr: int, npages: int, *, readable: bool, writable: bool) -> None:
        """Change the protection of the range (all of it mapped)."""
        worker = self._worker(pid)
        start, end = self._range(addr, npages)
        self._require_mapped(worker, start, end)
        prot = (worker_protocol.PROT_READ if readable else 0) | (worker_protocol.PROT_WRITE if writable else 0)
        self._syscall(worker, "mprotect", worker_protocol.OP_MPROTECT, start, end - start, prot)
        for va in range(start, end, PAGE_SIZE):
            worker.pages[va].readable = readable
            worker.pages[va].writable = writable

    def madvise(self, pid: int, addr: int, npages: int, advice: Advice) -> None:
        """``madvise(MADV_MERGEABLE / MADV_UNMERGEABLE)`` on the range (all of it mapped)."""
        worker = self._worker(pid)
        start, end = self._range(addr, npages)
        if advice not in ("MERGEABLE", "UNMERGEABLE"):
            raise MappingError("EINVAL", f"unknown advice {advice!r}")
        self._require_mapped(worker, start, end)
        code = worker_protocol.MADV_MERGEABLE if advice == "MERGEABLE" else worker_protocol.MADV_UNMERGEABLE
        self._syscall(worker, f"madvise {advice}", worker_protocol.OP_MADVISE, start, end - start, code)
        if advice == "MERGEABLE":
            worker.listed = True

    def set_process_merge(self, pid: int, enabled: bool) -> None:
        """``prctl(PR_SET_MEMORY_MERGE, enabled)``."""
        worker = self._worker(pid)
        was_on = self.merge_any(pid)
        self._syscall(worker, "prctl(PR_SET_MEMORY_MERGE)", worker_protocol.OP_PRCTL_SET, int(enabled))
        if enabled and not was_on:
            worker.listed = True  # ksm_enable_merge_any: __ksm_enter unless already listed
        self._tidy(worker)

    def merge_any(self, pid: int) -> bool:
        """``prctl(PR_GET_MEMORY_MERGE)``: whether process-wide merging is on."""
        worker = self._worker(pid)
        return bool(self._syscall(worker, "prctl(PR_GET_MEMORY_MERGE)", worker_protocol.OP_PRCTL_GET))

    def _tidy(self, worker: _Worker) -> None:
        """With process-wide merging on, unregister the interpreter's own mappings (see
        :mod:`memoracle.ksm.live_worker`); checked again before every scan."""
        if process_stat(worker.proc.pid).get("ksm_merge_any") == "yes":
            self._syscall(worker, "tidy", worker_protocol.OP_TIDY)

    def set_guest_kind(self, pid: int, addr: int, npages: int, kind: GuestKind) -> None:
        """Guest kinds matter only to ``skip_page_cache``, which the kernel lacks: the
        range must be mapped, nothing else happens."""
        worker = self._worker(pid)
        start, end = self._range(addr, npages)
        self._require_mapped(worker, start, end)

    # -- user accesses

    def _check_access(self, worker: _Worker, addr: int, length: int, write: bool) -> None:
        va = addr - addr % PAGE_SIZE
        while va < addr + length:
            page = worker.pages.get(va)
            if page is None or not (page.writable if write else page.readable):
                raise SegmentationFault(worker.pid, max(addr, va), "write" if write else "read")
            va += PAGE_SIZE

    def write(self, pid: int, addr: int, data: bytes) -> None:
        """A store in the worker (checked against the mappings first)."""
        worker = self._worker(pid)
        if addr < 0:
            raise MappingError("EINVAL", f"bad access {addr:#x}")
        if not data:
            return
        self._check_access(worker, addr, len(data), write=True)
        self._call(worker, worker_protocol.OP_WRITE, addr, payload=data)
        for va in range(addr - addr % PAGE_SIZE, addr + len(data), PAGE_SIZE):
            worker.pages[va].written = True

    def read(self, pid: int, addr: int, length: int) -> bytes:
        """A load in the worker (checked against the mappings first)."""
        worker = self._worker(pid)
        if length < 0 or addr < 0:
            raise MappingError("EINVAL", f"bad access {addr:#x} length {length}")
        if length == 0:
            return b""
        self._check_access(worker, addr, length, write=False)
        return self._call(worker, worker_protocol.OP_READ, addr, length)[2]

    # -- knobs and ksmd

    def knobs(self) -> KsmKnobs:
        """The knobs as the Protocol sees them (``run`` is the stored one; in the kernel
        ksmd is stopped between calls)."""
        return KsmKnobs(**vars(self._knobs))

    def set_knob(self, name: str, value: object) -> None:
        """Store a knob; the kernel judges the value (``EINVAL``, ``EBUSY``)."""
        if name not in KNOB_NAMES:
            raise KnobError("ENOENT", f"no knob {name!r}")
        if name in _RESEARCH_KNOBS:
            stock = _RESEARCH_KNOBS[name]
            if value == stock and type(value) is type(stock):
                return
            if name != "checksum" and isinstance(value, int) and not isinstance(value, bool) and value == 0:
                return
            raise KnobError("ENOENT", f"the kernel has no {name} knob (only its stock value {stock!r})")
        text = _knob_text(name, value)
        if name == "run":
            # ksmd stays stopped between calls: run = 1 is only recorded (storing it
            # would wake ksmd at once); 0 and 2 are stored (2 unmerges everything);
            # anything else is stored for the kernel to refuse.
            if text == "1":
                if self._knobs.run is RunMode.UNMERGE:
                    self._sysfs.write("run", "0")
            else:
                self._sysfs.write("run", text)
                if text not in ("0", "2"):
                    raise LiveError(f"the kernel accepted run = {text}")
            self._knobs.run = RunMode(int(text))
            return
        if name in ("pages_to_scan", "sleep_millisecs"):
            self._sysfs.write(name, text)  # judged by the kernel, then paced again
            paced = str(PACED_PAGES_TO_SCAN) if name == "pages_to_scan" else PACED_SLEEPS[self._sleep_index]
            self._sysfs.write(name, paced)
            setattr(self._knobs, name, int(text))
            return
        self._sysfs.write(name, text)
        setattr(self._knobs, name, bool(int(text)) if name in ("use_zero_pages", "smart_scan") else int(text))

    def run_ksmd(self, milliseconds: int) -> None:
        """Let ksmd run ``milliseconds`` of real time with the stored knobs (not
        deterministic: the lockstep harness uses :meth:`full_scans`)."""
        if milliseconds < 0:
            raise ValueError("negative time")
        if self._knobs.run is not RunMode.MERGE or milliseconds == 0:
            return
        self._prepare_scan()
        self._sysfs.write("pages_to_scan", str(self._knobs.pages_to_scan))
        self._sysfs.write("sleep_millisecs", str(self._knobs.sleep_millisecs))
        self._sysfs.write("run", "1")
        time.sleep(milliseconds / 1000)
        self._sysfs.write("run", "0")
        self._sysfs.write("pages_to_scan", str(PACED_PAGES_TO_SCAN))
        self._sysfs.write("sleep_millisecs", PACED_SLEEPS[self._sleep_index])
        for worker in self._workers.values():
            worker.listed = worker.listed and self._has_mergeable(worker)  # maybe dropped: assume it was

    def full_scans(self, count: int) -> None:
        """Run exactly ``count`` more full scans, one at a time (see the module docstring);
        with ksmd's list empty, none can complete and nothing happens."""
        if self._knobs.run is not RunMode.MERGE:
            raise NotRunning("full_scans needs run = MERGE")
        for _ in range(count):
            if not any(worker.listed for worker in self._workers.values()):
                return
            self._prepare_scan()
            self._one_scan()
            for worker in self._workers.values():
                if worker.listed and not self._has_mergeable(worker):
                    worker.listed = False  # ksmd dropped it at the end of its pass

    def _prepare_scan(self) -> None:
        for worker in self._workers.values():
            if worker.proc.poll() is not None:
                raise LiveError(f"worker of process {worker.pid} died (exit {worker.proc.returncode})")
            stray = self._stray_mergeable(worker)
            if stray:
                self._syscall(worker, "tidy", worker_protocol.OP_TIDY)
                if self._stray_mergeable(worker):
                    raise LiveError(f"process {worker.pid}: the interpreter's own mappings stay mergeable: {stray[:3]}")

    def _one_scan(self) -> None:
        if self._sysfs.read("run") != "0":
            raise LiveError(f"ksmd is not stopped between calls (run = {self._sysfs.read('run')})")
        target = self._sysfs.read_int("full_scans") + 1
        self._sleep_index = 1 - self._sleep_index
        self._sysfs.write("sleep_millisecs", PACED_SLEEPS[self._sleep_index])  # wakes a timed sleep
        self._sysfs.write("run", "1")  # wakes an untimed one
        deadline = time.monotonic() + SCAN_TIMEOUT
        delay = 0.0005
        while self._sysfs.read_int("full_scans") < target:
            if time.monotonic() > deadline:
                self._sysfs.write("run", "0")
                raise LiveError(f"no full scan completed in {SCAN_TIMEOUT:.0f} s (full_scans {target - 1})")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        self._sysfs.write("run", "0")  # waits for the batch to end
        done = self._sysfs.read_int("full_scans")
        if done != target:
            raise LiveError(f"a scan slipped in: full_scans {done}, expected {target}")

    def _vmas(self, worker: _Worker) -> list[tuple[int, int, bool]]:
        """(start, end, mergeable) of every mapping of the worker."""
        out: list[tuple[int, int, bool]] = []
        try:
            text = Path(f"/proc/{worker.proc.pid}/smaps").read_text()
        except OSError as error:
            raise LiveError(f"process {worker.pid}: cannot read smaps: {error.strerror}") from None
        start = end = 0
        for line in text.splitlines():
            head = line.split(" ", 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = head.split("-")
                start, end = int(lo, 16), int(hi, 16)
            elif line.startswith("VmFlags:"):
                out.append((start, end, " mg" in line))
        return out

    def _has_mergeable(self, worker: _Worker) -> bool:
        return any(mergeable and MMAP_BASE <= start < WINDOW_END for start, _, mergeable in self._vmas(worker))

    def _stray_mergeable(self, worker: _Worker) -> list[str]:
        return [f"{start:#x}-{end:#x}" for start, end, mergeable in self._vmas(worker)
                if mergeable and not MMAP_BASE <= start < WINDOW_END]  # fmt: skip

    # -- the host page cache (stock ksmd never drops it)

    def host_cache_insert(self, data: bytes) -> int:
        """Keep a host page-cache page (never dropped: the kernel has no exclusive cache)."""
        if len(data) > PAGE_SIZE:
            raise MappingError("EINVAL", f"a host cache page holds {PAGE_SIZE} bytes, got {len(data)}")
        page_id = len(self._host)
        self._host[page_id] = data + bytes(PAGE_SIZE - len(data))
        return page_id

    def host_cache(self) -> dict[int, bytes]:
        """Every host page inserted."""
        return dict(self._host)

    # -- counters and snapshot

    def counters(self) -> dict[str, int]:
        """``/sys/kernel/mm/ksm``'s counters; ``pages_skipped`` counts from the start of
        the session (the kernel never resets it, not even at ``run = 2``)."""
        counters = self._sysfs.counters()
        counters["pages_skipped"] -= self._skipped_before
        return counters

    def process_counters(self, pid: int) -> dict[str, int]:
        """``/proc/PID/ksm_stat``."""
        worker = self._worker(pid)
        stat = process_stat(worker.proc.pid)
        try:
            return {name: int(stat[name]) for name in PROCESS_COUNTERS}
        except KeyError:
            raise LiveError(f"process {pid}: /proc/{worker.proc.pid}/ksm_stat lacks {PROCESS_COUNTERS}") from None

    def merging_pages_file(self, pid: int) -> int:
        """``/proc/PID/ksm_merging_pages`` (the older per-process file)."""
        return int(Path(f"/proc/{self.os_pid(pid)}/ksm_merging_pages").read_text())

    def snapshot(self) -> KsmSnapshot:
        """Counters, per-process counters and the present pages of registered ranges
        (frames from ``pagemap``, KSM and zero-page flags from ``kpageflags``); no items
        or nodes (the kernel does not show them)."""
        pages: list[MappedPage] = []
        for pid in sorted(self._workers):
            worker = self._workers[pid]
            mergeable = [(s, e) for s, e, m in self._vmas(worker) if m and MMAP_BASE <= s < WINDOW_END]
            frames = self._frames(worker, [va for va in sorted(worker.pages) if any(s <= va < e for s, e in mergeable)])
            for va, (pfn, flags) in frames.items():
                ksm = bool(flags & _KPF_KSM)
                zero = bool(flags & _KPF_ZERO_PAGE)
                if zero and not worker.pages[va].written:
                    continue  # a read fault's zero page: not present in the spec's sense
                pages.append(MappedPage(pid, va, pfn, worker.pages[va].writable and not (ksm or zero), ksm, zero))
        return KsmSnapshot(
            items=(), stable_nodes=(), pages=tuple(pages), counters=self.counters(),
            process_counters={pid: self.process_counters(pid) for pid in sorted(self._workers)},
            host_cache=self.host_cache(),
        )  # fmt: skip

    def _frames(self, worker: _Worker, addrs: list[int]) -> dict[int, tuple[int, int]]:
        """va -> (pfn, kpageflags) of the present pages among ``addrs``."""
        out: dict[int, tuple[int, int]] = {}
        if not addrs:
            return out
        with open(f"/proc/{worker.proc.pid}/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as kflags:
            for va in addrs:
                pagemap.seek(va // PAGE_SIZE * 8)
                (entry,) = struct.unpack("<Q", pagemap.read(8))
                if not entry >> 63:
                    continue
                pfn = entry & ((1 << 55) - 1)
                kflags.seek(pfn * 8)
                (flags,) = struct.unpack("<Q", kflags.read(8))
                out[va] = (pfn, flags)
        return out


def _knob_text(name: str, value: object) -> str:
    """The text written to sysfs for a Protocol value (a bool is accepted only where the
    spec takes one; any other value is passed as written, for the kernel to judge)."""
    if name in ("use_zero_pages", "smart_scan"):
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int) and value in (0, 1):
            return str(value)
        raise KnobError("EINVAL", f"{name} takes 0 or 1, not {value!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise KnobError("EINVAL", f"{name} takes an integer, not {value!r}")
    if value < 0:
        raise KnobError("EINVAL", f"{name} = {value}: not an unsigned integer")
    return str(int(value))


__all__ = ["LiveBusy", "LiveError", "LiveKsm", "LiveUnavailable"]
