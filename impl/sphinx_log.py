"""One Sphinx thread's memory: a log-structured allocator in emulated DRAM and its index.

The thread's region is ``segments * segment_size`` bytes of physically contiguous DRAM
frames of a :class:`~impl.phys_mem.Machine`; segment ``i`` starts at
``base + i * segment_size``. Entries are appended to the *current* segment; the log
follows the contract of :mod:`spec.kv_api` exactly:

- an entry of :func:`entry_size` bytes (the contract's :func:`spec.kv_api.entry_size`)
  goes to the current segment if it fits; otherwise the current segment is closed
  (appended to the FIFO of closed segments) and the lowest-numbered free segment becomes
  current; if none is free, the victim chosen by
  ``choose_victim`` (by default the oldest closed segment) is expired first: every key
  whose *current* entry lies in it leaves the index, and the segment becomes free;
- nothing is compacted; overwritten entries stay as garbage until their segment expires.

Entry layout (little-endian, :data:`spec.kv_api.ENTRY_HEADER` = 48 bytes of header, then
the key, then the value, padded to 8 bytes)::

    u32 key length | u32 value length | u32 flags | u32 magic "SPHX"
    u64 expiry (0 = never; otherwise the Unix time from which the item is gone)
    u64 CAS unique | u64 store time (Unix seconds) | u64 reserved (0)

``touch``/``gat`` rewrite the expiry word in place. The index is a ``dict`` from key to
the physical address of the key's current entry; everything else (flags, expiry, CAS,
value) is read back from DRAM.
"""

from __future__ import annotations

import heapq
import struct
from collections import deque
from typing import Callable

from impl.phys_mem import Machine
from spec.kv_api import ENTRY_HEADER
from spec.paging import PAGE_SIZE

#: Magic word of an entry header ("SPHX").
ENTRY_MAGIC = 0x58485053
HEADER = struct.Struct("<IIIIQQQQ")
assert HEADER.size == ENTRY_HEADER
#: Offset of the expiry word in an entry header.
EXPIRY_OFFSET = 16


def entry_size(key_length: int, value_length: int) -> int:
    """Bytes an entry takes in this log: its header, the key and the value, padded so that
    the next entry starts 8-aligned. The log's own arithmetic; the tests hold it to the
    contract's :func:`spec.kv_api.entry_size`."""
    unpadded = HEADER.size + key_length + value_length
    return unpadded + -unpadded % 8


class ItemTooLarge(Exception):
    """An entry larger than a segment (it can never be stored)."""


class SegmentLog:
    """A per-thread log of ``segments`` segments of ``segment_size`` bytes and its index.

    Guarantees: every index reference is the address of the most recent entry stored for
    its key, inside a segment that is current or closed (never free); free + closed +
    current segments = all segments, each exactly once; closed segments are in the order
    they became current. :meth:`check_invariants` asserts all of it by walking the log.
    """

    def __init__(self, machine: Machine, segments: int, segment_size: int) -> None:
        if segments < 1:
            raise ValueError("a thread needs at least one segment")
        if segment_size < ENTRY_HEADER + 8 or segment_size % 8:
            raise ValueError(f"segment_size must be a multiple of 8 and >= {ENTRY_HEADER + 8}")
        self.machine = machine
        self.dram = machine.dram
        self.segments = segments
        self.segment_size = segment_size
        total = segments * segment_size
        frames = -(-total // PAGE_SIZE)
        self.base = machine.frames.alloc_contiguous(frames)
        self.end = self.base + total
        #: Bytes used in each segment (entries are packed from the segment's start).
        self.fill = [0] * segments
        #: When each segment last became current (a counter), for FIFO checks.
        self.became_current = [0] * segments
        self._epoch = 1
        self.current = 0
        self.became_current[0] = self._epoch
        self.free: list[int] = list(range(1, segments))  # a sorted list is a heap
        self.closed: deque[int] = deque()
        self.index: dict[bytes, int] = {}
        #: Which closed segment to expire when none is free (a hook for mutants).
        self.choose_victim: Callable[[], int] = self._oldest_closed
        #: Called with (key, entry address) for each key an expiry drops.
        self.on_evict: Callable[[bytes, int], None] = lambda key, addr: None
        self.expired_segments = 0

    def _oldest_closed(self) -> int:
        return self.closed[0]

    def segment_of(self, addr: int) -> int:
        """The segment holding the entry at ``addr``."""
        return (addr - self.base) // self.segment_size

    # -- appending -----------------------------------------------------------------
    def append(
        self, key: bytes, value: bytes, flags: int, expiry: int, cas: int, now: int
    ) -> int:
        """Write a new entry for ``key`` and point the index at it; returns its address.

        Raises :class:`ItemTooLarge` if the entry is larger than a segment (nothing
        changes then)."""
        size = entry_size(len(key), len(value))
        if size > self.segment_size:
            raise ItemTooLarge(f"an entry of {size} bytes exceeds a {self.segment_size}-byte segment")
        current = self.current
        used = self.fill[current]
        if used + size > self.segment_size:
            current = self._next_segment()
            used = 0
        addr = self.base + current * self.segment_size + used
        self.fill[current] = used + size
        dram = self.dram
        HEADER.pack_into(dram, addr, len(key), len(value), flags, ENTRY_MAGIC, expiry, cas, now, 0)
        start = addr + ENTRY_HEADER
        dram[start : start + len(key)] = key
        start += len(key)
        dram[start : start + len(value)] = value
        self.index[key] = addr
        return addr

    def _next_segment(self) -> int:
        """Close the current segment and make another current (expiring one if none is
        free); returns the new current segment."""
        self.closed.append(self.current)
        if not self.free:
            victim = self.choose_victim()
            self.closed.remove(victim)
            self.expire_segment(victim)
            heapq.heappush(self.free, victim)
        current = heapq.heappop(self.free)
        self.current = current
        self.fill[current] = 0
        self._epoch += 1
        self.became_current[current] = self._epoch
        return current

    def entries(self, segment: int) -> list[int]:
        """Addresses of the entries written in ``segment`` (walking its headers)."""
        out = []
        addr = self.base + segment * self.segment_size
        stop = addr + self.fill[segment]
        unpack = HEADER.unpack_from
        dram = self.dram
        while addr < stop:
            klen, vlen = unpack(dram, addr)[:2]
            out.append(addr)
            addr += entry_size(klen, vlen)
        return out

    def expire_segment(self, segment: int) -> None:
        """Drop from the index every key whose current entry lies in ``segment``."""
        self.expired_segments += 1
        index = self.index
        dram = self.dram
        for addr in self.entries(segment):
            klen = HEADER.unpack_from(dram, addr)[0]
            start = addr + ENTRY_HEADER
            key = bytes(dram[start : start + klen])
            if index.get(key) == addr:
                del index[key]
                self.on_evict(key, addr)
        self.fill[segment] = 0

    # -- reading -------------------------------------------------------------------
    def header(self, addr: int) -> tuple[int, int, int, int, int, int, int, int]:
        """The header words of the entry at ``addr``: key length, value length, flags,
        magic, expiry, CAS, store time, reserved."""
        return HEADER.unpack_from(self.dram, addr)

    def value(self, addr: int, key_length: int, value_length: int) -> bytes:
        """The value bytes of the entry at ``addr``."""
        start = addr + ENTRY_HEADER + key_length
        return bytes(self.dram[start : start + value_length])

    def set_expiry(self, addr: int, expiry: int) -> None:
        """Rewrite the expiry word of the entry at ``addr`` in place."""
        self.machine.write_u64(addr + EXPIRY_OFFSET, expiry)

    def live_bytes(self) -> int:
        """Sum of the entry sizes of the indexed entries."""
        unpack = HEADER.unpack_from
        dram = self.dram
        total = 0
        for addr in self.index.values():
            klen, vlen = unpack(dram, addr)[:2]
            total += entry_size(klen, vlen)
        return total

    def check_invariants(self) -> None:
        """Assert the index <-> log consistency and the segment accounting."""
        n = self.segments
        free = set(self.free)
        closed = list(self.closed)
        assert len(free) == len(self.free), "a segment is free twice"
        assert len(set(closed)) == len(closed), "a segment is closed twice"
        assert self.current not in free and self.current not in closed, "current segment also free/closed"
        assert not (free & set(closed)), "a segment both free and closed"
        assert len(free) + len(closed) + 1 == n, (
            f"free {len(free)} + closed {len(closed)} + current 1 != {n} segments"
        )
        assert all(0 <= s < n for s in free | set(closed)), "segment number out of range"
        for i in range(1, len(self.free)):
            assert self.free[(i - 1) // 2] <= self.free[i], "free heap order broken"
        epochs = [self.became_current[s] for s in closed] + [self.became_current[self.current]]
        assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs), (
            f"closed segments not in FIFO order: {closed} then current {self.current}"
        )
        for s in free:
            assert self.fill[s] == 0, f"free segment {s} has fill {self.fill[s]}"
        starts: set[int] = set()
        for s in [*closed, self.current]:
            assert 0 <= self.fill[s] <= self.segment_size, f"segment {s} overfilled"
            walked = self.entries(s)
            seg_start = self.base + s * self.segment_size
            if walked:
                last = walked[-1]
                klen, vlen = HEADER.unpack_from(self.dram, last)[:2]
                assert last + entry_size(klen, vlen) == seg_start + self.fill[s], (
                    f"entries of segment {s} do not end at its fill"
                )
            starts.update(walked)
        for key, addr in self.index.items():
            assert self.base <= addr < self.end, f"index of {key!r} points outside the region"
            seg = self.segment_of(addr)
            assert seg not in free, f"index of {key!r} points into free segment {seg}"
            assert addr in starts, f"index of {key!r} points at {addr:#x}, not an entry start"
            klen, vlen, _flags, magic = HEADER.unpack_from(self.dram, addr)[:4]
            assert magic == ENTRY_MAGIC, f"entry of {key!r} has a bad magic {magic:#x}"
            start = addr + ENTRY_HEADER
            stored = bytes(self.dram[start : start + klen])
            assert stored == key, f"index of {key!r} points at an entry of {stored!r}"
