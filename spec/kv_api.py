"""The interface of a memcached-compatible store: constants and the :class:`KvServer`
Protocol that the model (:mod:`spec.kv_model`), the Sphinx implementation
(:mod:`impl.sphinx`) and adapters for real servers all satisfy, so that a harness can
drive any two of them side by side with the same byte streams.

The unit of exchange is the wire itself: a client opens a connection, sends bytes, and
reads back the bytes the server wrote. What the bytes mean is defined by
:mod:`spec.kv_model`; nothing here interprets them.

The log contract (what the *precise* mode of the model predicts exactly)
------------------------------------------------------------------------
Sphinx stores items in a log-structured allocator per thread; the model's precise mode
predicts its evictions, so both sides follow these rules:

- Thread count ``T``; the owner of a key is ``murmur3_x86_32(key, seed=1)`` taken as an
  *unsigned* 32-bit integer, modulo ``T``.
- Each thread owns ``memory // T // segment_size`` segments of ``segment_size`` bytes
  (defaults :data:`DEFAULT_MEMORY`, :data:`DEFAULT_THREADS`, :data:`SEGMENT_SIZE`).
- Every command that stores a *new value* for a key (a successful ``set``, ``add``,
  ``replace``, ``cas``, ``append``, ``prepend``, ``incr``, ``decr``) appends one entry
  of :func:`entry_size` bytes to the owner's current segment. If it does not fit in
  what is left of that segment, the segment is closed and the lowest-numbered free
  segment becomes current. If none is free, the *oldest* closed segment (FIFO in the
  order segments became current) is expired: every key whose current entry lies in it
  disappears (``evictions`` counts those whose item was still live), the segment becomes
  free, and the allocation is retried.
- ``touch``/``gat``/``gats`` change the expiry time in place (no new entry); ``delete``
  drops an index entry. Expiry and ``flush_all`` are lazy, as in memcached: a dead
  (expired or flushed) item keeps its index entry until a lookup by any command finds
  it (and drops it) or its segment expires (an eviction like any other). Nothing is
  ever compacted: overwritten entries stay in their segment as garbage until it expires.
- An item whose :func:`entry_size` exceeds ``segment_size`` cannot be stored (with the
  defaults every item under :data:`ITEM_SIZE_MAX` fits).
- CAS uniques: each thread ``t`` keeps a counter ``c_t`` (starting at 0) incremented for
  every new value it stores; the value's unique is ``(c_t - 1) * T + t + 1``. With one
  thread this is memcached's own sequence 1, 2, 3, ...
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

#: Longest key, in bytes (memcached's KEY_MAX_LENGTH).
KEY_MAX = 250
#: memcached's default item size limit (``-I 1m``), header and key included.
ITEM_SIZE_MAX = 1024 * 1024
#: Size of a log segment (the paper's 2 MiB).
SEGMENT_SIZE = 2 * 1024 * 1024
#: The original's defaults: 64 MiB of item memory, 4 threads.
DEFAULT_MEMORY = 64 * 1024 * 1024
DEFAULT_THREADS = 4
#: Bytes of an entry's header in the log (key length, value length, flags, exptime, cas).
ENTRY_HEADER = 48
#: Relative exptimes up to this many seconds; larger values are Unix times.
REALTIME_MAXDELTA = 60 * 60 * 24 * 30
#: What ``version`` answers (memccapable treats >= 1.6 as a modern server).
VERSION = "1.6.18-sphinx"
#: Seed of the owner hash.
OWNER_HASH_SEED = 1
#: memcached's ``process_started`` is this many seconds before its real start
#: (``ITEM_UPDATE_INTERVAL + 2``, so that relative times are never 0); a ``flush_all``
#: whose delay names a Unix time at or before ``process_started + 1`` flushes nothing.
PROCESS_STARTED_BEFORE = 62


def entry_size(key_length: int, value_length: int) -> int:
    """Bytes one item takes in the log: header + key + value, rounded up to 8.

    post: __return__ % 8 == 0
    post: __return__ >= ENTRY_HEADER + key_length + value_length
    """
    return (ENTRY_HEADER + key_length + value_length + 7) // 8 * 8


def item_fits(key_length: int, value_length: int, flags: int) -> bool:
    """memcached 1.6's item size limit (measured on 1.6.18): a 48-byte header, an 8-byte
    cas, the key and a NUL, the value and ``\\r\\n``, 4 bytes of flags when non-zero,
    within :data:`ITEM_SIZE_MAX`. A storage command for an item that does not fit (or
    whose :func:`entry_size` exceeds the segment size) answers ``SERVER_ERROR object
    too large for cache``, swallows its data, and (``set`` only) deletes the old value.

    post: __return__ == (59 + key_length + value_length + (4 if flags else 0) <= ITEM_SIZE_MAX)
    """
    return 48 + 8 + key_length + 1 + value_length + 2 + (4 if flags else 0) <= ITEM_SIZE_MAX


#: What ``stats`` answers, in this order (a subset of memcached's, same names).
STATS_FIELDS: tuple[str, ...] = (
    "pid", "uptime", "time", "version", "pointer_size", "curr_connections",
    "total_connections", "cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "get_hits",
    "get_misses", "get_expired", "get_flushed", "delete_misses", "delete_hits",
    "incr_misses", "incr_hits", "decr_misses", "decr_hits", "cas_misses", "cas_hits",
    "cas_badval", "touch_hits", "touch_misses", "store_too_large", "limit_maxbytes",
    "threads", "curr_items", "total_items", "evictions",
)  # fmt: skip
#: The fields a harness does not compare by value: ``pid`` names a process, not a state.
#: Every other field is deterministic under a virtual clock and compared (clocks,
#: connection and item counts included). Counters count keys: ``get a b`` adds 2 to
#: ``cmd_get``; ``gat``/``gats`` count in ``cmd_touch``/``touch_*``; ``cmd_set`` counts
#: storage commands whose data block was read (a bad data chunk too, an item too large
#: not); ``get_expired``/``get_flushed`` count lookups, by any command, that found the
#: key's item expired or flushed (memcached's ``do_item_get``).
STATS_NOT_COMPARED: frozenset[str] = frozenset({"pid"})
#: The fields whose values harnesses compare: every field but :data:`STATS_NOT_COMPARED`.
STATS_COMPARED: frozenset[str] = frozenset(STATS_FIELDS) - STATS_NOT_COMPARED
#: The cumulative counters (``stats reset`` zeroes exactly these, as memcached does).
STATS_COUNTERS: tuple[str, ...] = (
    "total_connections", "cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "get_hits",
    "get_misses", "get_expired", "get_flushed", "delete_misses", "delete_hits",
    "incr_misses", "incr_hits", "decr_misses", "decr_hits", "cas_misses", "cas_hits",
    "cas_badval", "touch_hits", "touch_misses", "store_too_large", "total_items",
    "evictions",
)  # fmt: skip


@runtime_checkable
class KvServer(Protocol):
    """A memcached text-protocol server seen from its clients.

    Guarantees every implementation gives: bytes sent on a connection are processed in
    order; replies on a connection come back in the order of its requests (even when the
    keys live on different threads); :meth:`receive` returns every byte written since
    the previous call and never blocks; after the server hangs up (``quit``, or a request
    it refuses to parse), :meth:`closed` is true and later sends are ignored.
    """

    def connect(self) -> int:
        """Open a connection and return its id (ids are never reused)."""
        ...

    def send(self, conn: int, data: bytes) -> None:
        """Deliver ``data`` from the client of ``conn`` (any split of a stream is legal)."""
        ...

    def settle(self) -> None:
        """Run until every request received so far has been answered or is waiting
        for more bytes (a no-op for servers that answer synchronously)."""
        ...

    def receive(self, conn: int) -> bytes:
        """Everything the server wrote to ``conn`` since the last call."""
        ...

    def closed(self, conn: int) -> bool:
        """Whether the server has hung up on ``conn``."""
        ...

    def disconnect(self, conn: int) -> None:
        """The client of ``conn`` goes away (possibly in the middle of a request)."""
        ...

    def advance_clock(self, seconds: int) -> None:
        """Move the server's clock forward (virtual time; real servers may refuse)."""
        ...


class ReplyBuffer(Protocol):
    """Reply bytes a server keeps where they are (a stored value, say) until they are sent."""

    def __len__(self) -> int: ...

    def view(self) -> memoryview:
        """The bytes, not copied; valid until the server runs again (use it at once)."""
        ...


@runtime_checkable
class PartsKvServer(KvServer, Protocol):
    """A :class:`KvServer` that can hand out its replies without joining them, for a
    front end that writes them with scatter-gather I/O (``sendmsg``)."""

    def receive_parts(self, conn: int) -> Sequence[bytes | ReplyBuffer]:
        """What :meth:`KvServer.receive` would return, as parts in order: each part may
        be held as long as needed; a :class:`ReplyBuffer` shows its bytes when viewed."""
        ...
