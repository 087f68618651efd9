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

Values by reference: a retrieval answers with a :class:`StoredValue` (one per entry while
anything refers to it) instead of a copy of the bytes, so a reply naming one large value
a thousand times costs a thousand references, not a thousand copies. An entry's value
bytes never change while its segment is current or closed; before a segment is expired
(the only way its bytes can later be overwritten), every :class:`StoredValue` still
referenced in it is *detached*: its bytes are copied out once. So a reference always shows
the value as it was when read, as memcached keeps an item alive while a reply refers to it.
"""

from __future__ import annotations

import heapq
import struct
import weakref
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


class StoredValue:
    """The value bytes of one log entry, referenced where the log keeps them.

    :meth:`view` shows the bytes (read-only; the caller uses the view at once and drops
    it, e.g. in one ``sendmsg``). Until the entry's segment is expired the view is of the
    emulated DRAM itself; the log then :meth:`detach` es it (copies the bytes out), so the
    bytes shown never change.
    """

    __slots__ = ("_memory", "_start", "_length", "__weakref__")

    def __init__(self, memory: bytearray | bytes, start: int, length: int) -> None:
        self._memory = memory
        self._start = start
        self._length = length

    def __len__(self) -> int:
        return self._length

    def view(self) -> memoryview:
        """The value's bytes, read-only, without copying them."""
        start = self._start
        return memoryview(self._memory)[start : start + self._length].toreadonly()

    def detach(self) -> None:
        """Copy the bytes out of the log (before the log may overwrite them)."""
        if isinstance(self._memory, bytearray):
            self._memory = bytes(self.view())
            self._start = 0

    def address(self) -> int | None:
        """Where the bytes start in DRAM; None once detached."""
        return self._start if isinstance(self._memory, bytearray) else None


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
        #: The StoredValue of each entry (by address) that something still refers to.
        self._references: weakref.WeakValueDictionary[int, StoredValue] = weakref.WeakValueDictionary()
        #: Values copied out of a segment being expired because a reply still held them.
        self.detached_values = 0

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
        """Drop from the index every key whose current entry lies in ``segment``, and
        detach every :class:`StoredValue` still referenced there (its bytes are copied
        out before the segment can be reused)."""
        self.expired_segments += 1
        index = self.index
        dram = self.dram
        references = self._references
        for addr in self.entries(segment):
            if references:
                stored = references.pop(addr, None)
                if stored is not None:
                    stored.detach()
                    self.detached_values += 1
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
        """The value bytes of the entry at ``addr`` (a copy)."""
        start = addr + ENTRY_HEADER + key_length
        return bytes(self.dram[start : start + value_length])

    def stored_value(self, addr: int, key_length: int, value_length: int) -> StoredValue:
        """The value of the entry at ``addr`` by reference: the same object for every
        call while anything still refers to it (see the module docstring)."""
        stored = self._references.get(addr)
        if stored is None:
            stored = StoredValue(self.dram, addr + ENTRY_HEADER + key_length, value_length)
            self._references[addr] = stored
        return stored

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
        """Assert the index <-> log consistency, the segment accounting, and that every
        referenced :class:`StoredValue` not detached shows an entry's value in a
        segment that is current or closed."""
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
        for addr, reference in list(self._references.items()):
            assert addr in starts, f"a stored value refers to {addr:#x}, not an entry of a live segment"
            klen, vlen = HEADER.unpack_from(self.dram, addr)[:2]
            assert reference.address() == addr + ENTRY_HEADER + klen and len(reference) == vlen, (
                f"the stored value of the entry at {addr:#x} does not show its value"
            )
