"""A worker process for :class:`memoracle.ksm.live.LiveKsm`: a real process whose
anonymous memory the kernel's KSM merges.

It runs as ``python -I -S live_worker.py`` (standard library only, nothing of the
project imported) and serves requests on stdin, one at a time, answering on stdout.
Every request is a system call (through ``ctypes``) or a memory access in its own
address space:

- ``mmap`` at a fixed address (``MAP_FIXED_NOREPLACE``: never replaces a mapping),
  private, anonymous, with ``MADV_NOHUGEPAGE`` so that every page stays a 4 KiB page;
- ``munmap``, ``mprotect``, ``madvise`` (``MADV_MERGEABLE`` / ``MADV_UNMERGEABLE``);
- ``prctl(PR_SET_MEMORY_MERGE, 0/1)`` and ``PR_GET_MEMORY_MERGE``;
- ``write`` (``memmove`` into the mapping) and ``read`` (a copy out of it);
- ``tidy``: unregister every mapping *outside* the test window that is mergeable (after
  ``PR_SET_MEMORY_MERGE`` the interpreter's own heap, stack and library data are
  mergeable too; they must not take part in merging, so they are unregistered before
  ksmd runs: they never get an rmap item).

Frames: a request is ``<B op><Q a><Q b><Q c><I n>`` followed by ``n`` bytes; a reply is
``<q status><Q value><I n>`` followed by ``n`` bytes, where ``status`` is 0 or ``-errno``.
The caller checks every access before asking (a fault here would kill the worker).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

REQUEST = struct.Struct("<BQQQI")
REPLY = struct.Struct("<qQI")

OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_PRCTL_SET, OP_PRCTL_GET, OP_WRITE, OP_READ, OP_TIDY, OP_EXIT = range(10)

PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000
MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_NOHUGEPAGE = 12, 13, 15
PR_SET_MEMORY_MERGE, PR_GET_MEMORY_MERGE = 67, 68
MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    for name in ("munmap", "mprotect", "madvise"):
        getattr(libc, name).restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.prctl.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _tidy(libc: ctypes.CDLL, low: int, high: int) -> int:
    """Unregister every mergeable mapping outside [low, high); the number unregistered."""
    done = 0
    for _ in range(8):  # reading smaps allocates: repeat until a reading shows none
        found = []
        start = end = 0
        with open("/proc/self/smaps", "rb") as smaps:
            for line in smaps:
                head = line.split(b" ", 1)[0]
                if b"-" in head and not head.endswith(b":"):
                    lo, hi = head.split(b"-")
                    start, end = int(lo, 16), int(hi, 16)
                elif line.startswith(b"VmFlags:") and b" mg" in line and (end <= low or start >= high):
                    found.append((start, end))
        if not found:
            return done
        for start, end in found:
            if libc.madvise(start, end - start, MADV_UNMERGEABLE) == 0:
                done += 1
    return -1


def serve(low: int, high: int) -> None:
    """Answer requests until ``OP_EXIT`` or the end of stdin."""
    libc = _libc()
    rfd, wfd = sys.stdin.fileno(), sys.stdout.fileno()

    def reply(status: int, value: int = 0, payload: bytes = b"") -> None:
        os.write(wfd, REPLY.pack(status, value, len(payload)) + payload)

    def result(ret: int) -> None:
        reply(-ctypes.get_errno() if ret != 0 else 0)

    while True:
        try:
            op, a, b, c, n = REQUEST.unpack(_read_exact(rfd, REQUEST.size))
            payload = _read_exact(rfd, n) if n else b""
        except EOFError:
            return
        if op == OP_MMAP:
            prot = PROT_READ | (PROT_WRITE if b else 0)
            got = libc.mmap(a, c, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
            if got == MAP_FAILED or got is None:
                reply(-ctypes.get_errno())
            elif got != a:
                libc.munmap(got, c)
                reply(-17)  # EEXIST: a kernel without MAP_FIXED_NOREPLACE placed it elsewhere
            else:
                libc.madvise(a, c, MADV_NOHUGEPAGE)
                reply(0, got)
        elif op == OP_MUNMAP:
            result(libc.munmap(a, b))
        elif op == OP_MPROTECT:
            result(libc.mprotect(a, b, c))
        elif op == OP_MADVISE:
            result(libc.madvise(a, b, c))
        elif op == OP_PRCTL_SET:
            result(libc.prctl(PR_SET_MEMORY_MERGE, a, 0, 0, 0))
        elif op == OP_PRCTL_GET:
            ret = libc.prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0)
            reply(-ctypes.get_errno() if ret < 0 else 0, max(ret, 0))
        elif op == OP_WRITE:
            ctypes.memmove(a, payload, len(payload))
            reply(0)
        elif op == OP_READ:
            reply(0, 0, ctypes.string_at(a, b))
        elif op == OP_TIDY:
            done = _tidy(libc, low, high)
            reply(0 if done >= 0 else -11, max(done, 0))
        else:
            reply(0)
            return


if __name__ == "__main__":
    serve(int(sys.argv[1], 0), int(sys.argv[2], 0))
