"""memcached text-protocol semantics: the spec of the Sphinx store.

:class:`KvModel` executes the requests of :mod:`spec.kv_wire` against a virtual clock
and answers the exact bytes memcached 1.6.18 answers (differences are listed below). It
has two cache modes:

- **precise**: the model also runs the log contract of :mod:`spec.kv_api` (per-owner
  segments, FIFO expiry of whole segments; :class:`SegmentLog`), so every reply,
  evictions included, is predicted byte for byte. :class:`ModelServer` is a
  :class:`spec.kv_api.KvServer` in this mode.
- **loose**: any key may have been evicted at any time. :meth:`KvModel.judge` decides
  whether an observed reply is allowed: a miss is always allowed for a key (the model
  then forgets the key), a hit must show the latest value. A store implementation that
  evicts differently is checked this way. The loose mode also allows what memcached does
  when another thread holds a reference to the item an ``incr``/``decr`` changes (its LRU
  maintainer, crawler or another connection): it stores the new number *unpadded* in a
  new item instead of padding it in place. Until a reply shows which it holds, such an
  item has several possible values (:attr:`Item.alternatives`); a retrieval may show any
  of them and settles the item on the one shown, and a request whose reply depends on
  the value (``incr``/``decr``) is judged against each possible value in turn.

Semantics (memcached 1.6.18, measured; choices marked *choice*)
--------------------------------------------------------------
- Time is a virtual Unix clock in whole seconds. An exptime of 0 never expires; 1 to 30
  days is relative; larger is a Unix time; negative is already expired. An item with
  deadline ``d`` is gone from ``now >= d`` (:func:`normalise_exptime`).
- Flags are 32-bit. ``append``/``prepend`` keep the old item's flags and exptime and
  answer ``NOT_STORED`` for a missing key or a result too large. ``cas`` answers
  ``NOT_FOUND``/``EXISTS``/``STORED``.
- CAS uniques follow the log contract: per-owner counters, ``(c_t - 1) * T + t + 1``
  (with one thread, memcached's 1, 2, 3, ...). Every stored new value takes one; ``touch``
  and ``gat`` do not.
- ``incr``/``decr``: the value must parse as memcached's ``safe_strtoull`` does (leading
  whitespace allowed, digits ending at a whitespace character or the end; an empty value
  is non-numeric); ``incr`` wraps at 2**64, ``decr`` floors at 0. As in memcached, when
  the new number is no longer than the old value it is written *in place*, padded with
  spaces to the old length (``decr`` of ``100`` by 1 stores ``99 ``); otherwise the
  value becomes the number. Either way it is a new value (new CAS, one log entry).
- ``flush_all [delay]`` sets memcached's *flush point* ``oldest_live``
  (:func:`flush_point`): ``realtime(delay) - 1``, or ``now - 1`` without a delay. From
  the second ``oldest_live`` on, every item stored at or before it is flushed; a flush
  whose point is already reached when it is sent also flushes every item stored before
  the command (memcached's ``oldest_cas``). So ``flush_all <n>`` takes effect at
  ``now + n - 1`` — one second before ``now + n`` — and ``flush_all 1`` at once, taking
  with it the items stored in the rest of the current second. A delay naming a Unix
  time at or before memcached's ``process_started`` + 1
  (:data:`spec.kv_api.PROCESS_STARTED_BEFORE` seconds before the server started) gives no flush point: such a ``flush_all`` flushes
  nothing and cancels a pending one. A later ``flush_all`` replaces a pending one.
  *Choice*: memcached compares its items' last-access times at one-second granularity;
  the model uses store times, which agrees whenever the clock advances in whole seconds
  between the command and the flush point.
- Expiry and flushing are lazy (memcached's ``do_item_get``): a dead item stays in the
  index until a lookup by any command (retrievals, storage commands ``set`` included,
  ``delete``, ``incr``/``decr``, ``touch``, a too-large ``set``) finds it, drops it and
  counts ``get_flushed`` (checked first) or ``get_expired``; or until its segment
  expires, which reclaims it silently. ``evictions`` counts the items a segment's expiry
  drops that were still live — the stored key's own old value included — as memcached
  counts the live items it pulls from an LRU tail (dead ones are "reclaimed"). ``curr_items`` counts the
  index, dead items included (memcached's crawler may reclaim them earlier; a store
  without one cannot).
- ``stats`` answers :data:`spec.kv_api.STATS_FIELDS` in order; ``stats reset`` zeroes
  :data:`spec.kv_api.STATS_COUNTERS` (``total_items`` and ``total_connections``
  included, as memcached 1.6.18 does) and answers ``RESET``. Every value but ``pid``
  (:data:`spec.kv_api.STATS_COMPARED`) is deterministic; ``pid`` is 0,
  ``uptime``/``time`` come from the virtual clock.
- ``verbosity`` answers ``OK`` and changes nothing; ``version`` answers ``VERSION`` +
  :data:`spec.kv_api.VERSION`.
- Replies leave in batches (:class:`ModelServer`): what one ``send`` makes the server
  answer is queued and transmitted at the end of the send, and at once after a
  retrieval (``get gets gat gats bget``), ``mn`` or ``quit``. A hang-up other than
  ``quit`` (``GET / HTTP/1.0``, a line over 2048 bytes) and a retrieval naming a key
  over 250 bytes discard the queued replies (measured: ``version\r\nGET /
  HTTP/1.0\r\n`` answers nothing, ``get a\r\nGET / HTTP/1.0\r\n`` answers the
  ``get``). *Choice*: memcached also transmits after every 20 requests of one read
  event, and a long send arrives in several reads (memcached reads 16 KiB at a time,
  Sphinx 64 packets a quantum), with transmissions between them; the model does not
  follow either (a send of more than 20 requests or 16 KiB before a hang-up is outside
  what it predicts).

Differences from memcached 1.6.18 (each deliberate)
---------------------------------------------------
- ``VERSION 1.6.18-sphinx`` instead of ``VERSION 1.6.18``; ``stats`` answers 30 of
  memcached's fields (memcached answers about 90, many of them about its slab
  allocator, which Sphinx does not have).
- Meta commands and administrative commands are ``ERROR`` (see :mod:`spec.kv_wire`).
- Numeric values larger than 512 KiB (memcached's chunked items, which it refuses to
  ``incr``) are parsed like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from spec.kv_api import (
    DEFAULT_MEMORY,
    DEFAULT_THREADS,
    KEY_MAX,
    OWNER_HASH_SEED,
    PROCESS_STARTED_BEFORE,
    REALTIME_MAXDELTA,
    SEGMENT_SIZE,
    STATS_COUNTERS,
    STATS_FIELDS,
    VERSION,
    entry_size,
    item_fits,
)
from spec.kv_wire import (
    BAD_CHUNK,
    BAD_FORMAT,
    TOO_LARGE,
    Arithmetic,
    BadChunk,
    Delete,
    Event,
    FlushAll,
    HangUp,
    ProtocolError,
    Retrieval,
    Simple,
    Storage,
    TooLarge,
    Touch,
    WireParser,
    safe_strtoull,
)
from spec.kv_segments import SegmentLog
from spec.murmur3 import owner_of

#: The virtual clock's default start (a Unix time, 2023-11-14).
DEFAULT_EPOCH = 1_700_000_000
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value"
_COUNTERS = STATS_COUNTERS


# --------------------------------------------------------------------- pure helpers


def normalise_exptime(exptime: int, now: int) -> int:
    """The Unix time from which an item with ``exptime`` is gone (0 = never).

    pre: now > 2592000
    post: (__return__ == 0) == (exptime == 0)
    post: exptime >= 0 or __return__ <= now
    post: not (0 < exptime <= 2592000) or __return__ == now + exptime
    """
    if exptime == 0:
        return 0
    if exptime < 0:
        exptime = REALTIME_MAXDELTA + 1  # memcached's EXPTIME_TO_POSITIVE_TIME
    if exptime > REALTIME_MAXDELTA:
        return exptime
    return now + exptime


def flush_point(delay: int, now: int, started: int) -> int:
    """memcached's flush point ``oldest_live`` (a Unix time; 0 = none) after
    ``flush_all [delay]`` at ``now``, for a server whose ``process_started`` is
    ``started``: ``realtime(delay) - 1`` for a positive delay (relative up to 30 days,
    else a Unix time, one at or before ``started`` counting as ``started + 1``), else
    ``now - 1``; a point at ``started`` (relative time 0) means no flush at all.

    pre: started + 1 < now
    post: __return__ == 0 or started < __return__
    post: delay > 0 or __return__ == now - 1
    post: not (0 < delay <= 2592000) or __return__ == now + delay - 1
    """
    if delay <= 0:
        new_oldest = now
    elif delay > REALTIME_MAXDELTA:
        new_oldest = max(delay, started + 1)
    else:
        new_oldest = now + delay
    oldest_live = new_oldest - 1
    return 0 if oldest_live <= started else oldest_live


def is_expired(deadline: int, now: int) -> bool:
    """Whether an item with ``deadline`` (0 = never) is gone at ``now``.

    post: __return__ == (deadline != 0 and deadline <= now)
    """
    return deadline != 0 and deadline <= now


def apply_delta(old: int, delta: int, incr: bool) -> int:
    """``incr`` wraps at 2**64; ``decr`` floors at 0.

    pre: 0 <= old < 2 ** 64 and 0 <= delta < 2 ** 64
    post: 0 <= __return__ < 2 ** 64
    post: incr or __return__ == max(0, old - delta)
    post: not incr or __return__ == (old + delta) % 2 ** 64
    """
    if incr:
        return (old + delta) % 2**64
    return old - delta if delta <= old else 0


def arithmetic_value(old_value: bytes, number: int) -> bytes:
    """The value an ``incr``/``decr`` stores: the decimal ``number``, padded with spaces
    to the old length when it fits there (memcached's in-place update).

    pre: number >= 0
    post: len(__return__) == max(len(old_value), len(str(number)))
    post: __return__.rstrip(b" ") == str(number).encode()
    """
    text = str(number).encode()
    if len(text) <= len(old_value):
        return text + b" " * (len(old_value) - len(text))
    return text


def cas_unique(counter: int, thread: int, threads: int) -> int:
    """The log contract's unique for a thread's ``counter``-th stored value (from 1).

    pre: counter >= 1 and 0 <= thread < threads
    post: __return__ >= 1
    post: (__return__ - 1) % threads == thread
    """
    return (counter - 1) * threads + thread + 1


def valid_key(key: bytes) -> bool:
    """Whether memcached's text protocol accepts ``key``: 1 to 250 bytes without
    space, ``\\n`` or NUL (other control bytes are accepted, as memcached does).

    post: __return__ == (0 < len(key) <= 250 and all(byte not in (0, 10, 32) for byte in key))
    """
    return 0 < len(key) <= KEY_MAX and not any(c in key for c in (b" ", b"\n", b"\x00"))


# --------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Item:
    """A stored item: value, flags, deadline (0 = never), cas unique, store time, its
    place in the order of all stores (1, 2, ...), and the values it may hold instead."""

    value: bytes
    flags: int
    deadline: int
    cas: int
    stored_at: int
    order: int = 0
    #: Other values the server may hold instead of ``value`` (loose mode only: an
    #: ``incr``/``decr`` result memcached may or may not have padded in place).
    alternatives: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The judgement of an observed reply: ``ok``; ``expected`` is the model's reply
    with nothing evicted; ``evicted`` the keys the model accepted as evicted."""

    ok: bool
    expected: bytes
    observed: bytes
    evicted: tuple[bytes, ...] = ()

    def describe(self) -> str:
        """A one-paragraph explanation."""
        if self.ok:
            extra = f" (accepted evictions: {list(self.evicted)})" if self.evicted else ""
            return f"ok{extra}"
        return f"expected {self.expected!r}, observed {self.observed!r}"


@dataclass
class _Snapshot:
    items: dict[bytes, Item | None]
    counters: list[int]
    stats: dict[str, int]
    flush: tuple[int, int]
    stores: int


@dataclass
class KvModel:
    """The store's state and semantics (see the module docstring).

    ``precise=True`` simulates the log contract (evictions predicted exactly);
    ``precise=False`` is the loose mode used through :meth:`judge`.
    """

    threads: int = DEFAULT_THREADS
    memory: int = DEFAULT_MEMORY
    segment_size: int = SEGMENT_SIZE
    precise: bool = True
    now: int = DEFAULT_EPOCH
    items: dict[bytes, Item] = field(default_factory=dict)
    counters: list[int] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    #: The flush point (:func:`flush_point`; 0 = none) and the number of stores made
    #: before the last flush whose point was reached when it was sent.
    oldest_live: int = 0
    flushed_stores: int = 0
    stores: int = 0
    start: int = 0
    log: SegmentLog | None = None

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError("threads must be at least 1")
        self.counters = [0] * self.threads
        self.stats = {name: 0 for name in _COUNTERS}
        self.start = self.now
        self.log = SegmentLog(self.threads, self.memory, self.segment_size)
        if not self.precise:
            self.log = None

    # -- helpers ------------------------------------------------------------------
    def owner(self, key: bytes) -> int:
        """The thread owning ``key`` (MurmurHash3 x86_32, seed 1, unsigned, mod T)."""
        return owner_of(key, self.threads, OWNER_HASH_SEED)

    def fits(self, key_length: int, value_length: int, flags: int) -> bool:
        """Whether an item can be stored: memcached's limit and one segment."""
        return item_fits(key_length, value_length, flags) and (
            entry_size(key_length, value_length) <= self.segment_size
        )

    def flushed(self, item: Item) -> bool:
        """Whether a ``flush_all`` has flushed ``item`` (memcached's ``item_is_flushed``)."""
        point = self.oldest_live
        if not point or point > self.now:
            return False
        return item.stored_at <= point or item.order <= self.flushed_stores

    def live(self, key: bytes) -> Item | None:
        """The lookup of ``key`` every command makes: its item, or None; a flushed or
        expired item is dropped and counted (``get_flushed``, else ``get_expired``)."""
        item = self.items.get(key)
        if item is None:
            return None
        if self.flushed(item):
            self.stats["get_flushed"] += 1
        elif is_expired(item.deadline, self.now):
            self.stats["get_expired"] += 1
        else:
            return item
        self.forget(key)
        return None

    def forget(self, key: bytes) -> None:
        """Drop ``key`` from the index (delete, expiry, flush, or an accepted eviction)."""
        if self.items.pop(key, None) is not None and self.log is not None:
            self.log.drop(key)

    def _store(
        self, key: bytes, value: bytes, flags: int, deadline: int, alternatives: tuple[bytes, ...] = ()
    ) -> Item:
        thread = self.owner(key)
        self.counters[thread] += 1
        self.stores += 1
        item = Item(
            value,
            flags,
            deadline,
            cas_unique(self.counters[thread], thread, self.threads),
            self.now,
            self.stores,
            alternatives,
        )
        if self.log is not None:
            for gone in self.log.place(thread, key, entry_size(len(key), len(value))):
                old = self.items.pop(gone, None)
                if old is not None and not self.flushed(old) and not is_expired(old.deadline, self.now):
                    self.stats["evictions"] += 1
        self.items[key] = item
        self.stats["total_items"] += 1
        return item

    def advance_clock(self, seconds: int) -> None:
        """Move the clock forward (expiry and flushes are noticed by lookups)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.now += seconds

    # -- execution ----------------------------------------------------------------
    def execute(self, event: Event) -> bytes:
        """Apply ``event`` (precise semantics: nothing evicted but by the log) and
        return the reply bytes (empty for ``noreply`` and hang-ups)."""
        reply, noreply = self._execute(event)
        return b"" if noreply else reply

    def _execute(self, event: Event) -> tuple[bytes, bool]:
        if isinstance(event, Retrieval):
            return self._retrieve(event, None), False
        if isinstance(event, Storage):
            return self._storage(event) + b"\r\n", event.noreply
        if isinstance(event, Delete):
            if self.live(event.key) is None:
                self.stats["delete_misses"] += 1
                return b"NOT_FOUND\r\n", event.noreply
            self.forget(event.key)
            self.stats["delete_hits"] += 1
            return b"DELETED\r\n", event.noreply
        if isinstance(event, Arithmetic):
            return self._arithmetic(event) + b"\r\n", event.noreply
        if isinstance(event, Touch):
            self.stats["cmd_touch"] += 1
            item = self.live(event.key)
            if item is None:
                self.stats["touch_misses"] += 1
                return b"NOT_FOUND\r\n", event.noreply
            self.items[event.key] = replace(item, deadline=normalise_exptime(event.exptime, self.now))
            self.stats["touch_hits"] += 1
            return b"TOUCHED\r\n", event.noreply
        if isinstance(event, FlushAll):
            self.stats["cmd_flush"] += 1
            self.oldest_live = flush_point(event.delay, self.now, self.start - PROCESS_STARTED_BEFORE)
            if self.oldest_live <= self.now:  # memcached's oldest_cas: everything before now
                self.flushed_stores = self.stores
            return b"OK\r\n", event.noreply
        if isinstance(event, Simple):
            return self._simple(event.command), event.noreply
        if isinstance(event, TooLarge):
            self.stats["store_too_large"] += 1
            if event.command == b"set" and self.live(event.key) is not None:
                self.forget(event.key)
            return TOO_LARGE + b"\r\n", event.noreply
        if isinstance(event, BadChunk):
            self.stats["cmd_set"] += 1
            return BAD_CHUNK + b"\r\n", event.noreply
        if isinstance(event, ProtocolError):
            if event.counter:
                self.stats[event.counter] += 1
            return event.reply + b"\r\n", event.noreply
        assert isinstance(event, HangUp)
        return b"", True

    def _retrieve(self, event: Retrieval, observed: bytearray | None) -> bytes:
        """Answer a retrieval; with ``observed`` (loose judging), a key whose block is
        not next in ``observed`` is taken as evicted, and matched blocks are consumed."""
        touching = event.exptime is not None
        with_cas = event.command in (b"gets", b"gats")
        out = bytearray()
        for key in event.keys:
            if len(key) > KEY_MAX:
                return BAD_FORMAT + b"\r\n"
            self.stats["cmd_touch" if touching else "cmd_get"] += 1
            item = self.live(key)
            block = b""
            if item is not None:
                block = _value_block(key, item, item.value, with_cas)
                if observed is not None:
                    for value in (item.value, *item.alternatives):
                        shown = _value_block(key, item, value, with_cas)
                        if observed.startswith(shown):
                            del observed[: len(shown)]
                            block = shown
                            item = replace(item, value=value, alternatives=())
                            self.items[key] = item  # settled on the value shown
                            break
                    else:
                        self.forget(key)
                        item = None
            if item is None:
                self.stats["touch_misses" if touching else "get_misses"] += 1
                continue
            if touching:
                assert event.exptime is not None
                self.items[key] = replace(item, deadline=normalise_exptime(event.exptime, self.now))
            self.stats["touch_hits" if touching else "get_hits"] += 1
            out += block
        return bytes(out) + b"END\r\n"

    def _storage(self, event: Storage) -> bytes:
        self.stats["cmd_set"] += 1
        command, key = event.command, event.key
        item = self.live(key)
        deadline = normalise_exptime(event.exptime, self.now)
        if command == b"set":
            self._store(key, event.data, event.flags, deadline)
            return b"STORED"
        if command == b"add":
            if item is not None:
                return b"NOT_STORED"
            self._store(key, event.data, event.flags, deadline)
            return b"STORED"
        if command == b"cas":
            if item is None:
                self.stats["cas_misses"] += 1
                return b"NOT_FOUND"
            if item.cas != event.cas:
                self.stats["cas_badval"] += 1
                return b"EXISTS"
            self.stats["cas_hits"] += 1
            self._store(key, event.data, event.flags, deadline)
            return b"STORED"
        if item is None:
            return b"NOT_STORED"
        if command == b"replace":
            self._store(key, event.data, event.flags, deadline)
            return b"STORED"
        value = item.value + event.data if command == b"append" else event.data + item.value
        if not self.fits(len(key), len(value), item.flags):
            return b"NOT_STORED"
        self._store(key, value, item.flags, item.deadline)
        return b"STORED"

    def _arithmetic(self, event: Arithmetic) -> bytes:
        incr = event.command == b"incr"
        prefix = "incr" if incr else "decr"
        item = self.live(event.key)
        if item is None:
            self.stats[f"{prefix}_misses"] += 1
            return b"NOT_FOUND"
        old = safe_strtoull(item.value + b"\r\n") if item.value else None
        if old is None:
            return NON_NUMERIC
        number = apply_delta(old, event.delta, incr)
        self.stats[f"{prefix}_hits"] += 1
        value = arithmetic_value(item.value, number)
        unpadded = str(number).encode()
        alternatives = (unpadded,) if not self.precise and unpadded != value else ()
        self._store(event.key, value, item.flags, item.deadline, alternatives)
        return unpadded

    def _simple(self, command: bytes) -> bytes:
        if command == b"version":
            return b"VERSION " + VERSION.encode() + b"\r\n"
        if command == b"verbosity":
            return b"OK\r\n"
        if command == b"mn":
            return b"MN\r\n"
        if command == b"stats reset":
            for name in self.stats:
                self.stats[name] = 0
            return b"RESET\r\n"
        assert command == b"stats"
        return b"".join(
            b"STAT %s %s\r\n" % (name.encode(), str(value).encode())
            for name, value in self.stat_values().items()
        ) + b"END\r\n"

    def stat_values(self, connections: int = 0) -> dict[str, str]:
        """The ``stats`` values, in :data:`STATS_FIELDS` order."""
        values: dict[str, str] = {}
        for name in STATS_FIELDS:
            if name in self.stats:
                values[name] = str(self.stats[name])
        values.update(
            pid="0",
            uptime=str(self.now - self.start),
            time=str(self.now),
            version=VERSION,
            pointer_size="64",
            curr_connections=str(connections),
            limit_maxbytes=str(self.memory),
            threads=str(self.threads),
            curr_items=str(len(self.items)),
        )
        return {name: values[name] for name in STATS_FIELDS}

    # -- loose judging --------------------------------------------------------------
    def _snapshot(self, keys: tuple[bytes, ...]) -> _Snapshot:
        return _Snapshot(
            {k: self.items.get(k) for k in keys},
            list(self.counters),
            dict(self.stats),
            (self.oldest_live, self.flushed_stores),
            self.stores,
        )

    def _restore(self, snap: _Snapshot) -> None:
        for key, item in snap.items.items():
            if item is None:
                self.items.pop(key, None)
            else:
                self.items[key] = item
        self.counters = list(snap.counters)  # copies: a snapshot may be restored again
        self.stats = dict(snap.stats)
        self.oldest_live, self.flushed_stores = snap.flush
        self.stores = snap.stores

    def judge(self, event: Event, observed: bytes) -> Verdict:
        """Whether ``observed`` is an allowed reply to ``event`` in the current state,
        applying the event if so (and leaving the state unchanged if not).

        Precise mode: ``observed`` must equal :meth:`execute`'s reply. Loose mode: a
        key the request names may have been evicted (then it is forgotten), anything
        else must be exact; ``stats`` is judged by its field names only.
        """
        if self.precise or isinstance(event, (Simple, FlushAll, ProtocolError, HangUp, BadChunk)):
            if isinstance(event, Simple) and event.command == b"stats" and not self.precise:
                expected = self.execute(event)
                return Verdict(_same_stat_names(expected, observed), expected, observed)
            snap = self._snapshot(())
            expected = self.execute(event)
            if expected != observed and not self.precise:
                self._restore(snap)
            return Verdict(expected == observed, expected, observed)
        if isinstance(event, Retrieval):
            keys = event.keys
            snap = self._snapshot(keys)
            present = set(k for k in keys if self.items.get(k) is not None)
            expected = self._retrieve(event, None)
            self._restore(snap)
            rest = bytearray(observed)
            noted = self._retrieve(event, rest)
            if noted == observed:
                gone = tuple(k for k in dict.fromkeys(keys) if k in present and k not in self.items)
                return Verdict(True, expected, observed, gone)
            self._restore(snap)
            return Verdict(False, expected, observed)
        key = event.key
        snap = self._snapshot((key,))
        before = snap.items[key]
        expected = self.execute(event)
        if expected == observed:
            if before is not None:
                self._keep_alternatives(event, key, observed, snap, before.value)
            return Verdict(True, expected, observed)
        self._restore(snap)
        for value in before.alternatives if before is not None else ():
            assert before is not None
            self.items[key] = replace(before, value=value, alternatives=())
            if self.execute(event) == observed:
                self._keep_alternatives(event, key, observed, snap, value)
                return Verdict(True, expected, observed)
            self._restore(snap)
        if self.items.get(key) is None:
            return Verdict(False, expected, observed)
        self.items.pop(key)
        evicted = self.execute(event)
        if evicted == observed:
            return Verdict(True, expected, observed, (key,))
        self._restore(snap)
        return Verdict(False, expected, observed)

    def _keep_alternatives(self, event: Event, key: bytes, observed: bytes, snap: _Snapshot, judged_on: bytes) -> None:
        """``event`` was judged on the value ``judged_on`` of its key, one of the values
        it possibly held (``snap``); keep as alternatives of the result the results of
        the other possible values that give the same reply (the rest of the state is
        the same: the same reply takes the same path)."""
        before, after = snap.items[key], self.items.get(key)
        if before is None or not before.alternatives or after is None:
            return
        results: list[bytes] = []
        for value in (before.value, *before.alternatives):
            if value == judged_on:
                continue
            state = self._snapshot((key,))
            self._restore(snap)
            self.items[key] = replace(before, value=value, alternatives=())
            reply = self.execute(event)
            other = self.items.get(key)
            self._restore(state)
            if reply == observed and other is not None:
                results += (other.value, *other.alternatives)
        merged = tuple(dict.fromkeys(v for v in (*after.alternatives, *results) if v != after.value))
        self.items[key] = replace(after, alternatives=merged)


def _value_block(key: bytes, item: Item, value: bytes, with_cas: bool) -> bytes:
    """The ``VALUE`` block a retrieval shows for ``key`` holding ``value``."""
    header = b"VALUE %s %d %d" % (key, item.flags, len(value))
    if with_cas:
        header += b" %d" % item.cas
    return header + b"\r\n" + value + b"\r\n"


def _same_stat_names(expected: bytes, observed: bytes) -> bool:
    def names(reply: bytes) -> list[bytes] | None:
        lines = reply.split(b"\r\n")
        if lines[-2:] != [b"END", b""]:
            return None
        parts = [line.split(b" ") for line in lines[:-2]]
        if any(len(p) != 3 or p[0] != b"STAT" for p in parts):
            return None
        return [p[1] for p in parts]

    return names(expected) is not None and names(expected) == names(observed)


# --------------------------------------------------------------------- the server


@dataclass
class _Connection:
    parser: WireParser
    out: bytearray = field(default_factory=bytearray)
    closed: bool = False


class ModelServer:
    """The precise model as a :class:`spec.kv_api.KvServer`: every request is answered
    as soon as its last byte is sent (so :meth:`settle` does nothing), with exactly the
    bytes the log contract predicts for a store of ``threads`` threads."""

    def __init__(
        self,
        threads: int = DEFAULT_THREADS,
        memory: int = DEFAULT_MEMORY,
        *,
        segment_size: int = SEGMENT_SIZE,
        start_time: int = DEFAULT_EPOCH,
    ) -> None:
        self.model = KvModel(threads, memory, segment_size, precise=True, now=start_time)
        self._connections: dict[int, _Connection] = {}
        self._next_id = 0

    def connect(self) -> int:
        """Open a connection; ids count from 0 and are never reused."""
        conn = self._next_id
        self._next_id += 1
        self._connections[conn] = _Connection(WireParser(self.model.fits))
        self.model.stats["total_connections"] += 1
        return conn

    def _conn(self, conn: int) -> _Connection:
        try:
            return self._connections[conn]
        except KeyError:
            raise ValueError(f"no connection {conn}") from None

    def send(self, conn: int, data: bytes) -> None:
        """Parse and answer everything ``data`` completes (ignored once closed)."""
        state = self._conn(conn)
        if state.closed:
            return
        # Replies from out[transmitted:] are queued, not yet on the wire: a hang-up other
        # than ``quit`` or a retrieval naming a bad key discards them (memcached releases
        # its unsent responses); a retrieval, ``mn`` and ``quit`` transmit everything.
        transmitted = len(state.out)
        for event in state.parser.feed(data):
            if isinstance(event, HangUp):
                if event.reason != "quit":
                    del state.out[transmitted:]
                state.closed = True
                break
            if isinstance(event, Retrieval) and any(len(key) > KEY_MAX for key in event.keys):
                del state.out[transmitted:]
                state.out += self.model.execute(event)
                continue
            if isinstance(event, Simple) and event.command == b"stats":
                open_now = sum(1 for c in self._connections.values() if not c.closed)
                values = self.model.stat_values(open_now)
                state.out += b"".join(
                    b"STAT %s %s\r\n" % (n.encode(), v.encode()) for n, v in values.items()
                ) + b"END\r\n"
                continue
            state.out += self.model.execute(event)
            if isinstance(event, Retrieval) or (isinstance(event, Simple) and event.command == b"mn"):
                transmitted = len(state.out)

    def settle(self) -> None:
        """Nothing to do: the model answers synchronously."""

    def receive(self, conn: int) -> bytes:
        """Everything written to ``conn`` since the last call."""
        state = self._conn(conn)
        data = bytes(state.out)
        state.out.clear()
        return data

    def closed(self, conn: int) -> bool:
        """Whether the server hung up on ``conn``."""
        return self._conn(conn).closed

    def disconnect(self, conn: int) -> None:
        """The client goes away; a partial request is discarded."""
        self._conn(conn).closed = True

    def advance_clock(self, seconds: int) -> None:
        """Move the virtual clock forward by ``seconds``."""
        self.model.advance_clock(seconds)
