"""Guest-like memory: what the paper's virtual machines held, captured from real processes.

The 2011 report measured lookahead on desktop VMs started from one image: each guest's
memory held the same kernel, the same shared libraries and, in its page cache, the same
files, page after page in file order. :func:`capture_guests` builds that on this machine
from real files and real processes:

- **the files**: regular files of this machine in sorted path order — shared libraries
  (``/usr/lib/x86_64-linux-gnu``, or ``/usr/lib`` elsewhere; the guest kind
  :attr:`~spec.ksm_api.GuestKind.FILE`) and data files (``/usr/share``;
  :attr:`~spec.ksm_api.GuestKind.PAGE_CACHE`) of 8 KiB to 256 KiB, taken in order until
  the page budget is met (:func:`guest_files`);
- **the guests**: ``processes`` real processes (``python -I -S``). Each maps one private
  anonymous region and copies into it, page-aligned and in that order, every file it
  keeps (each file is kept with probability ``keep``, from the seed: guests are alike,
  not identical), with a few private pages of random bytes after some files (the
  guest's own allocations between cached files) and a block of private pages at the end
  (its applications' heaps) (:func:`guest_layout`);
- **the capture**: when every guest says it is ready, its region is read through
  ``/proc/PID/mem`` into a :class:`~memoracle.ksm.corpus.Corpus`, with each page's guest
  kind; then the processes are killed.

Everything is deterministic for a given seed and machine (the files are this machine's).
:mod:`memoracle.ksm.paper` runs the paper's experiments on such a capture.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from memoracle.ksm.corpus import CaptureError, Corpus, build_corpus
from spec.ksm_api import PAGE_SIZE, GuestKind

#: Where each guest's region is mapped (fixed, so that every guest's layout is the same).
GUEST_BASE = 0x5000_0000_0000
#: Files outside this size range are left out (tiny files waste a page each; huge ones
#: would dominate the budget).
MIN_FILE, MAX_FILE = 8 << 10, 256 << 10
#: Share of the page budget for libraries, data files (the rest is private pages).
LIBRARY_SHARE, DATA_SHARE = 0.45, 0.35
LIBRARY_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib"))
DATA_DIRS = (Path("/usr/share"),)

_CHILD = r"""
import ctypes, json, os, random, sys
plan = json.loads(sys.stdin.readline())
page = plan["page_size"]
total = plan["pages"]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
base = libc.mmap(plan["base"], total * page, 3, 0x22 | 0x100000, -1, 0)
if base != plan["base"]:
    print("error mmap", ctypes.get_errno(), flush=True)
    sys.exit(1)
offset = 0
for kind, what, count in plan["segments"]:
    if kind == "file":
        with open(what, "rb") as handle:
            data = handle.read(count * page)
    else:
        data = random.Random(what).randbytes(count * page)
    ctypes.memmove(base + offset * page, data, len(data))
    if len(data) < count * page:
        ctypes.memset(base + offset * page + len(data), 0, count * page - len(data))
    offset += count
print("ready", flush=True)
sys.stdin.readline()
"""


@dataclass(frozen=True)
class GuestFile:
    """A file a guest may cache: its path, its page count and its guest kind."""

    path: str
    pages: int
    kind: GuestKind


@dataclass(frozen=True)
class GuestCapture:
    """A captured guest-like corpus: ``kinds[i][j]`` is the guest kind of page ``j`` of
    process ``i`` (pages in the corpus's address order); ``files`` the files used."""

    corpus: Corpus
    kinds: tuple[tuple[GuestKind, ...], ...]
    files: tuple[GuestFile, ...]
    seconds: float


def _candidates(dirs: tuple[Path, ...], pattern: str) -> list[Path]:
    for root in dirs:
        if root.is_dir():
            found = sorted(path for path in root.glob(pattern) if path.is_file() and not path.is_symlink())
            if found:
                return found
    return []


def guest_files(budget_pages: int) -> list[GuestFile]:
    """The files a guest caches, in natural (sorted path) order: libraries up to
    ``LIBRARY_SHARE`` of the budget, then data files up to ``DATA_SHARE``."""
    chosen: list[GuestFile] = []
    for dirs, pattern, share, kind in ((LIBRARY_DIRS, "*.so*", LIBRARY_SHARE, GuestKind.FILE),
                                       (DATA_DIRS, "**/*", DATA_SHARE, GuestKind.PAGE_CACHE)):  # fmt: skip
        room = int(budget_pages * share)
        for path in _candidates(dirs, pattern):
            if room <= 0:
                break
            try:
                size = path.stat().st_size
                readable = os.access(path, os.R_OK)
            except OSError:
                continue
            if not readable or not MIN_FILE <= size <= MAX_FILE:
                continue
            pages = -(-size // PAGE_SIZE)
            chosen.append(GuestFile(str(path), pages, kind))
            room -= pages
    return chosen


def guest_layout(files: list[GuestFile], seed: int, index: int, *, keep: float, private_pages: int) -> list[tuple[str, str | int, int, GuestKind]]:
    """Guest ``index``'s memory, as segments (``"file"``, path, pages, kind) and
    (``"private"``, a seed, pages, ANONYMOUS), deterministic from ``seed``."""
    rng = random.Random(seed * 1_000_003 + index)
    segments: list[tuple[str, str | int, int, GuestKind]] = []
    left = private_pages
    for file in files:
        if rng.random() < keep:
            segments.append(("file", file.path, file.pages, file.kind))
        if left > 0 and rng.random() < 0.25:
            count = min(left, rng.randint(1, 3))
            segments.append(("private", rng.getrandbits(63), count, GuestKind.ANONYMOUS))
            left -= count
    if left > 0:
        segments.append(("private", rng.getrandbits(63), left, GuestKind.ANONYMOUS))
    return segments


def capture_guests(processes: int = 4, pages: int = 2000, *, seed: int = 0, keep: float = 0.9, timeout: float = 60.0) -> GuestCapture:
    """Start ``processes`` guest-like processes of about ``pages`` pages each, capture
    them (see the module docstring) and kill them. Raises :class:`CaptureError` if the
    files cannot be found or a process fails."""
    if processes < 1 or pages < 16:
        raise ValueError("at least one process of at least 16 pages")
    started = time.monotonic()
    files = guest_files(pages)
    if not files:
        raise CaptureError("no files to cache under /usr/lib or /usr/share")
    private = max(1, pages - sum(f.pages for f in files))
    layouts = [guest_layout(files, seed, i, keep=keep, private_pages=private) for i in range(processes)]
    children: list[subprocess.Popen[bytes]] = []
    try:
        for layout in layouts:
            total = sum(count for _, _, count, _ in layout)
            plan = {"page_size": PAGE_SIZE, "pages": total, "base": GUEST_BASE,
                    "segments": [(kind, what, count) for kind, what, count, _ in layout]}  # fmt: skip
            child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CHILD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
            assert child.stdin is not None
            child.stdin.write(json.dumps(plan).encode() + b"\n")
            child.stdin.flush()
            children.append(child)
        _wait_ready(children, timeout)
        captured = []
        for child, layout in zip(children, layouts):
            total = sum(count for _, _, count, _ in layout)
            with open(f"/proc/{child.pid}/mem", "rb", buffering=0) as memory:
                memory.seek(GUEST_BASE)
                data = memory.read(total * PAGE_SIZE)
            if len(data) != total * PAGE_SIZE:
                raise CaptureError(f"process {child.pid}: read {len(data)} of {total * PAGE_SIZE} bytes")
            captured.append((child.pid, [(GUEST_BASE + i * PAGE_SIZE, data[i * PAGE_SIZE : (i + 1) * PAGE_SIZE])
                                         for i in range(total)]))  # fmt: skip
    except OSError as error:
        raise CaptureError(f"cannot capture the guests: {error}") from None
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()
    corpus = build_corpus(PAGE_SIZE, f"guest-like: {processes} processes, {len(files)} files of /usr, seed {seed}", captured)
    kinds = tuple(tuple(kind for _, _, count, kind in layout for _ in range(count)) for layout in layouts)
    return GuestCapture(corpus, kinds, tuple(files), time.monotonic() - started)


def _wait_ready(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    selector = selectors.DefaultSelector()
    for child in children:
        assert child.stdout is not None
        selector.register(child.stdout, selectors.EVENT_READ, child)
    waiting = set(range(len(children)))
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CaptureError(f"{len(waiting)} guest processes not ready after {timeout:.0f} s")
        for key, _ in selector.select(left):
            child = key.data
            line = child.stdout.readline()
            if not line.startswith(b"ready"):
                raise CaptureError(f"a guest process failed: {line.decode(errors='replace').strip() or 'no output'}")
            waiting.discard(children.index(child))
            selector.unregister(key.fileobj)
    selector.close()


__all__ = ["GUEST_BASE", "GuestCapture", "GuestFile", "capture_guests", "guest_files", "guest_layout"]
