"""One Sphinx thread's partition of the keys: command execution over its
:class:`~impl.sphinx_log.SegmentLog`.

Semantics (memcached 1.6.18's, within the log contract of :mod:`spec.kv_api`):

- An item is *live* while ``now < expiry`` (or ``expiry == 0``) and it is not flushed.
  A dead item is noticed lazily, as memcached's ``do_item_get`` does: the lookup that
  finds it — by any command, ``set`` included — drops its index entry and counts
  ``get_flushed`` (checked first) or ``get_expired``. Until then it stays in the index
  (``curr_items`` counts it); if its segment expires first it is reclaimed silently
  (memcached counts only live items it pulls from an LRU tail as evictions).
- ``flush_all`` records ``oldest_live`` (memcached's ``realtime(delay) - 1``, or
  ``now - 1`` without a delay; 0 when that is no flush point at all): once
  ``now >= oldest_live``, every item stored at or before ``oldest_live`` is dead; a
  flush whose point is already reached also kills every item stored before it (its CAS
  unique is below ``oldest_cas``, the next unique at the flush).
- Successful ``set add replace cas append prepend incr decr`` append one entry and take
  a new CAS unique ``(c_t - 1) * T + t + 1``. ``append``/``prepend`` keep the old flags
  and expiry; ``incr``/``decr`` keep flags and expiry and, like memcached, write the new
  number left-aligned and space-padded to the old length when it is not longer (so
  ``decr`` of ``100`` by 1 stores ``"99 "``), otherwise exactly the number.
- ``touch``/``gat``/``gats`` rewrite the expiry in place; ``delete`` drops the index
  entry. ``add`` of a live key, ``replace``/``append``/``prepend`` of a missing one
  answer ``NOT_STORED``; ``cas`` answers ``NOT_FOUND``/``EXISTS``/``STORED``.
- An ``append``/``prepend`` whose result would be too large answers ``NOT_STORED``;
  an ``incr`` whose entry no longer fits a segment answers ``SERVER_ERROR out of memory``.

A retrieval's ``VALUE`` block for a value over :data:`INLINE_VALUE_MAX` bytes is a
:class:`ValueBlock`: its header line as bytes and the value *by reference*
(:class:`~impl.sphinx_log.StoredValue`), never copied on the way to the client (a reply is
a list of :data:`Piece` s). A smaller value is copied into its block, which costs no more
than a reference would.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Union

from impl.phys_mem import Machine
from impl.sphinx_log import HEADER, ItemTooLarge, SegmentLog, StoredValue, entry_size
from impl.sphinx_proto import GetOp, KeyOp, decimal, memcached_item_too_large
from spec.kv_api import ENTRY_HEADER

_U64 = 1 << 64
_SPACE = b" \t\n\v\f\r"
CRLF = b"\r\n"
#: Values up to this size are copied into their ``VALUE`` block; larger ones are referenced.
INLINE_VALUE_MAX = 256


class ValueBlock:
    """One ``VALUE`` block of a retrieval reply: ``head`` (``VALUE <key> <flags>
    <bytes>[ <cas>]\r\n``), then the stored value by reference, then ``\r\n``."""

    __slots__ = ("head", "value", "size")

    def __init__(self, head: bytes, value: StoredValue) -> None:
        self.head = head
        self.value = value
        self.size = len(head) + len(value) + 2  # bytes of the whole block

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join((self.head, self.value.view(), CRLF))


#: A piece of a reply: plain bytes, or a ``VALUE`` block holding a stored value.
Piece = Union[bytes, ValueBlock]


@dataclass(slots=True)
class PartitionStats:
    """Counters of one partition (summed over threads by ``stats``)."""

    cmd_get: int = 0
    cmd_set: int = 0
    cmd_touch: int = 0
    get_hits: int = 0
    get_misses: int = 0
    get_expired: int = 0
    get_flushed: int = 0
    delete_misses: int = 0
    delete_hits: int = 0
    incr_misses: int = 0
    incr_hits: int = 0
    decr_misses: int = 0
    decr_hits: int = 0
    cas_misses: int = 0
    cas_hits: int = 0
    cas_badval: int = 0
    touch_hits: int = 0
    touch_misses: int = 0
    store_too_large: int = 0
    total_items: int = 0
    evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def reset(self) -> None:
        """``stats reset``: zero every counter (``total_items`` too, as memcached)."""
        for f in fields(self):
            setattr(self, f.name, 0)


def _numeric_value(value: bytes) -> int | None:
    """memcached's ``safe_strtoull`` over an item's data (followed by its CRLF)."""
    data = value + b"\r\n"
    i = 0
    while data[i] in _SPACE:
        i += 1
        if i == len(data):
            return None
    minus = False
    if data[i] in b"+-":
        minus = data[i] == 0x2D
        i += 1
    start = i
    while i < len(data) and 0x30 <= data[i] <= 0x39:
        i += 1
    if i == start or (data[i] not in _SPACE and data[i] != 0):
        return None
    number = decimal(data[start:i])
    if number >= _U64:
        return None
    if minus:
        number = (-number) % _U64
        if number >= 1 << 63:
            return None
    return number


class Partition:
    """The keys owned by thread ``thread`` of ``threads``, stored in a segment log."""

    def __init__(
        self, machine: Machine, thread: int, threads: int, segments: int, segment_size: int
    ) -> None:
        self.thread = thread
        self.threads = threads
        self.log = SegmentLog(machine, segments, segment_size)
        self.log.on_evict = self._evicted
        self.cas_counter = 0
        self.oldest_live = 0
        self.oldest_cas = 0
        self.stats = PartitionStats()
        #: The time of the store in progress (what an eviction is judged at).
        self.now = 0

    def flushed(self, stored: int, cas: int, now: int) -> bool:
        """Whether ``flush_all`` has killed an item stored at ``stored`` with ``cas``."""
        oldest = self.oldest_live
        return bool(oldest) and now >= oldest and (stored <= oldest or cas < self.oldest_cas)

    def _evicted(self, key: bytes, addr: int) -> None:
        expiry, cas, stored = HEADER.unpack_from(self.log.dram, addr)[4:7]
        if not self.flushed(stored, cas, self.now) and not (expiry and self.now >= expiry):
            self.stats.evictions += 1

    def next_cas(self) -> int:
        """Take the next CAS unique of this thread (the log contract's formula)."""
        self.cas_counter += 1
        return (self.cas_counter - 1) * self.threads + self.thread + 1

    # -- lookup ----------------------------------------------------------------------
    def lookup(self, key: bytes, now: int) -> tuple[int, int, int, int, int, int] | None:
        """``(addr, key length, value length, flags, expiry, cas)`` of the live item of
        ``key``, or None (dropping and counting a dead item's index entry)."""
        addr = self.log.index.get(key)
        if addr is None:
            return None
        klen, vlen, flags, _magic, expiry, cas, stored, _ = HEADER.unpack_from(self.log.dram, addr)
        if self.flushed(stored, cas, now):
            self.stats.get_flushed += 1
        elif expiry and now >= expiry:
            self.stats.get_expired += 1
        else:
            return addr, klen, vlen, flags, expiry, cas
        del self.log.index[key]
        return None

    def _store(self, key: bytes, value: bytes, flags: int, expiry: int, now: int) -> int:
        """Append a new value of ``key``; returns its CAS unique."""
        cas = self.next_cas()
        self.now = now
        self.log.append(key, value, flags, expiry, cas, now)
        self.stats.total_items += 1
        return cas

    # -- commands -----------------------------------------------------------------------
    def get(self, op: GetOp, keys: list[bytes]) -> list[Piece]:
        """The ``VALUE`` block (or ``b""``) of each of ``keys`` for ``op``."""
        now = op.now
        stats = self.stats
        log = self.log
        dram = log.dram
        out: list[Piece] = []
        for key in keys:
            found = self.lookup(key, now)
            if op.touch:
                stats.cmd_touch += 1
            else:
                stats.cmd_get += 1
            if found is None:
                if op.touch:
                    stats.touch_misses += 1
                else:
                    stats.get_misses += 1
                out.append(b"")
                continue
            addr, klen, vlen, flags, _expiry, cas = found
            if op.touch:
                stats.touch_hits += 1
                self.log.set_expiry(addr, op.expiry)
            else:
                stats.get_hits += 1
            if op.with_cas:
                head = b"VALUE %s %d %d %d\r\n" % (key, flags, vlen, cas)
            else:
                head = b"VALUE %s %d %d\r\n" % (key, flags, vlen)
            if vlen <= INLINE_VALUE_MAX:
                start = addr + ENTRY_HEADER + klen
                out.append(head + dram[start : start + vlen] + CRLF)
            else:
                out.append(ValueBlock(head, log.stored_value(addr, klen, vlen)))
        return out

    def execute(self, op: KeyOp) -> bytes:
        """Run a one-key command; returns its reply (``b""`` under ``noreply``)."""
        reply = self._execute(op)
        return b"" if op.noreply else reply

    def _execute(self, op: KeyOp) -> bytes:
        kind = op.op
        key = op.key
        now = op.now
        stats = self.stats
        if kind == "too_large":  # counted, not looked up (memcached looks up for set only)
            stats.store_too_large += 1
            return op.data
        found = self.lookup(key, now)
        if kind == "set":
            stats.cmd_set += 1
            self._store(key, op.data, op.flags, op.expiry, now)
            return b"STORED\r\n"
        if kind == "add" or kind == "replace":
            stats.cmd_set += 1
            if (found is None) == (kind == "add"):
                self._store(key, op.data, op.flags, op.expiry, now)
                return b"STORED\r\n"
            return b"NOT_STORED\r\n"
        if kind == "cas":
            stats.cmd_set += 1
            if found is None:
                stats.cas_misses += 1
                return b"NOT_FOUND\r\n"
            if found[5] != op.cas:
                stats.cas_badval += 1
                return b"EXISTS\r\n"
            stats.cas_hits += 1
            self._store(key, op.data, op.flags, op.expiry, now)
            return b"STORED\r\n"
        if kind == "append" or kind == "prepend":
            stats.cmd_set += 1
            if found is None:
                return b"NOT_STORED\r\n"
            addr, klen, vlen, flags, expiry, _cas = found
            old = self.log.value(addr, klen, vlen)
            new = old + op.data if kind == "append" else op.data + old
            if memcached_item_too_large(len(key), flags, len(new)) or (
                entry_size(len(key), len(new)) > self.log.segment_size
            ):
                return b"NOT_STORED\r\n"
            self._store(key, new, flags, expiry, now)
            return b"STORED\r\n"
        if kind == "delete":
            if found is None:
                stats.delete_misses += 1
                return b"NOT_FOUND\r\n"
            stats.delete_hits += 1
            del self.log.index[key]
            return b"DELETED\r\n"
        if kind == "touch":
            stats.cmd_touch += 1
            if found is None:
                stats.touch_misses += 1
                return b"NOT_FOUND\r\n"
            stats.touch_hits += 1
            self.log.set_expiry(found[0], op.expiry)
            return b"TOUCHED\r\n"
        if kind == "incr" or kind == "decr":
            incr = kind == "incr"
            if found is None:
                if incr:
                    stats.incr_misses += 1
                else:
                    stats.decr_misses += 1
                return b"NOT_FOUND\r\n"
            addr, klen, vlen, flags, expiry, _cas = found
            old = self.log.value(addr, klen, vlen)
            number = _numeric_value(old) if vlen else None
            if number is None:
                return b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
            if incr:
                number = (number + op.cas) % _U64
                stats.incr_hits += 1
            else:
                number = max(0, number - op.cas)
                stats.decr_hits += 1
            text = b"%d" % number
            new = text.ljust(vlen) if len(text) <= vlen else text
            try:
                self._store(key, new, flags, expiry, now)
            except ItemTooLarge:
                return b"SERVER_ERROR out of memory\r\n"
            return text + b"\r\n"
        if kind == "drop":  # a too-large set: memcached deletes the old value
            stats.store_too_large += 1
            if found is not None:
                del self.log.index[key]
            return op.data
        raise ValueError(f"unknown key command {kind!r}")

    def flush(self, oldest_live: int, now: int) -> None:
        """``flush_all``: everything stored at or before ``oldest_live`` dies once
        ``now >= oldest_live``; if that is already so, everything stored before now
        dies too. 0: no flush point (a pending flush is cancelled)."""
        self.oldest_live = oldest_live
        if oldest_live <= now:
            self.oldest_cas = self.cas_counter * self.threads + self.thread + 1

    def curr_items(self) -> int:
        """Items in the index (dead ones not yet noticed included, as memcached)."""
        return len(self.log.index)
