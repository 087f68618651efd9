"""Sphinx's parser of the memcached text protocol (the framing and error rules of
memcached 1.6.18's ``proto_text.c``, checked against the real server).

:func:`parse_request` takes a connection's input buffer and returns the next request:
a :class:`KeyOp` (one key, executed by the key's owner thread), a :class:`GetOp`
(``get``/``gets``/``gat``/``gats``/``bget`` over one or more keys), a :class:`Control`
(``flush_all``, ``stats``, ``quit``, hang-up) or the bytes of a reply the connection's
thread gives at once (errors, ``version``, ``verbosity``, ``mn``; ``b""`` when
``noreply`` silences it). It never raises on bad input.

Framing rules reproduced (all observed on memcached 1.6.18):

- A line ends at ``\\n``; one ``\\r`` before it is dropped; the line is cut at its first
  NUL; tokens are separated by spaces only (a tab belongs to a token); at most 23 tokens
  count for the argument-count checks (as memcached's 24-slot tokenizer).
- No ``\\n`` within 2048 buffered bytes: unless the buffer starts with ``get `` or
  ``gets `` (after at most 100 spaces) the server hangs up. (The caller may say where its
  search for the ``\\n`` stopped, ``scan_from``; a retrieval line over :data:`LONG_LINE`
  bytes is read in slices, with the same result as a whole-line split.)
- Commands are case-sensitive; a command of fewer than two bytes, an unknown command or
  a wrong argument count answers ``ERROR``; an unknown command whose last token starts
  with ``HTTP/`` makes the server hang up (``GET / HTTP/1.0``).
- Storage commands read exactly ``<bytes> + 2`` bytes after the line; if they do not end
  in ``\\r\\n`` the reply is ``CLIENT_ERROR bad data chunk`` and parsing resumes right
  after them; the command still counts in ``cmd_set`` (memcached counts ``set_cmds``
  before it checks the block). After a ``CLIENT_ERROR`` on the command line the data
  is parsed as commands. ``noreply`` (the last token) silences every reply of the
  command, errors included.
- Numbers follow C's ``strtol``/``strtoul``/``strtoull`` as memcached's ``safe_*``
  wrappers use them: leading whitespace and a sign are accepted; the number must be
  followed by the end of the token or whitespace; flags are taken modulo 2^32 and
  ``exptime``/``<bytes>`` modulo 2^32 as signed 32-bit values (so ``-0`` and ``+5`` are
  numbers, ``0x1`` is not).
- A retrieval naming a key over 250 bytes discards the replies not yet transmitted on
  the connection (memcached releases its stacked responses) and answers only
  ``CLIENT_ERROR bad command line format``.
- Item size: an item is too large when memcached's slab item would exceed
  :data:`spec.kv_api.ITEM_SIZE_MAX`: ``48 + key + 1 + (4 if flags else 0) + bytes + 2 + 8``
  bytes, or when its log entry would not fit in a segment. A too-large storage command
  answers ``SERVER_ERROR object too large for cache``, swallows its data block and (for
  ``set``) deletes the key's old value.
- Exptime: 0 = never; up to 30 days, relative seconds; larger, a Unix time; negative,
  already expired. Items are stored with an absolute expiry (0 = never) and are gone
  from the first second ``>= expiry``.

Not implemented (answered ``ERROR`` or as listed): the meta commands except ``mn``;
``stats`` sub-commands other than ``reset`` and ``settings``; ``shutdown`` answers
``ERROR: shutdown not enabled``; ``watch``, ``lru``, ``lru_crawler``, ``slabs``,
``cache_memlimit`` answer ``ERROR``.
"""

from __future__ import annotations

import re
from typing import Callable, Union

from impl.sphinx_log import entry_size
from spec.kv_api import ITEM_SIZE_MAX, KEY_MAX, REALTIME_MAXDELTA, VERSION

#: Characters C's ``isspace`` accepts.
_C_SPACE = b" \t\n\v\f\r"
_MAX_TOKENS = 23
#: A retrieval line longer than this is read in slices by :func:`_long_retrieval`, not
#: copied whole and split.
LONG_LINE = 64 * 1024
#: The slice of a long line copied at a time.
SCAN_CHUNK = 1 << 20
_NOT_SPACE = re.compile(rb"[^ ]")
_LONG_MIN = -(1 << 63)
_LONG_MAX = (1 << 63) - 1
_U64 = 1 << 64

ERROR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
VERSION_REPLY = b"VERSION " + VERSION.encode() + b"\r\n"
MN_REPLY = b"MN\r\n"


def decimal(digits: bytes) -> int:
    """The value of a run of decimal digits, exactly up to 20 significant digits; more
    (a value of at least 10**20, above 2**64 and so out of every range memcached
    accepts) count as 10**20: leading zeros do not matter, as to C's ``strtoull``, and
    no conversion is unbounded (CPython refuses ``int()`` of over 4,300 digits)."""
    significant = digits.lstrip(b"0")
    if len(significant) > 20:
        return 10**20
    return int(significant) if significant else 0


def _c_integer(token: bytes) -> tuple[int, bool] | None:
    """C's strto*l scan of ``token``: ``(magnitude with sign, had_minus)`` or None when
    no digits are found or something other than whitespace follows them."""
    i = 0
    n = len(token)
    while i < n and token[i] in _C_SPACE:
        i += 1
    minus = False
    if i < n and token[i] in b"+-":
        minus = token[i] == 0x2D
        i += 1
    start = i
    while i < n and 0x30 <= token[i] <= 0x39:
        i += 1
    if i == start:
        return None
    if i < n and token[i] not in _C_SPACE:
        return None
    value = decimal(token[start:i])
    return (-value if minus else value), minus


def strtol32(token: bytes) -> int | None:
    """memcached's ``safe_strtol``: a long (range error past 2^63) truncated to int32."""
    scanned = _c_integer(token)
    if scanned is None:
        return None
    value = scanned[0]
    if not _LONG_MIN <= value <= _LONG_MAX:
        return None
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def strtoull(token: bytes) -> int | None:
    """memcached's ``safe_strtoull``: an unsigned 64-bit number; a ``-`` is accepted
    only when the result stays non-negative as a signed 64-bit value."""
    scanned = _c_integer(token)
    if scanned is None:
        return None
    value, minus = scanned
    if abs(value) >= _U64:
        return None
    value %= _U64
    if value >= 1 << 63 and minus:
        return None
    return value


def strtoul32(token: bytes) -> int | None:
    """memcached's ``safe_strtoul`` into a ``uint32_t`` (an unsigned long, truncated)."""
    value = strtoull(token)
    return None if value is None else value & 0xFFFFFFFF


def to_expiry(exptime: int, now: int) -> int:
    """The absolute expiry (0 = never) of a command's ``exptime`` at time ``now``."""
    if exptime == 0:
        return 0
    if exptime < 0:
        return 1
    if exptime <= REALTIME_MAXDELTA:
        return now + exptime
    return exptime


def memcached_item_too_large(key_length: int, flags: int, value_length: int) -> bool:
    """Whether memcached's slab item (header, key, flags suffix, value + CRLF, CAS)
    exceeds :data:`ITEM_SIZE_MAX`."""
    return 48 + key_length + 1 + (4 if flags else 0) + value_length + 2 + 8 > ITEM_SIZE_MAX


class KeyOp:
    """A one-key command for the key's owner. ``op`` is one of ``set add replace append
    prepend cas delete incr decr touch drop too_large`` (``drop`` = delete silently, for a
    too-large ``set``; ``too_large`` = only count it, for any other too-large storage
    command; the reply of both is in ``data``)."""

    __slots__ = ("op", "key", "flags", "expiry", "data", "cas", "noreply", "now")

    def __init__(
        self, op: str, key: bytes, flags: int, expiry: int, data: bytes, cas: int,
        noreply: bool, now: int,
    ) -> None:
        self.op = op
        self.key = key
        self.flags = flags
        self.expiry = expiry
        self.data = data
        self.cas = cas  # the CAS unique of ``cas``, the delta of ``incr``/``decr``
        self.noreply = noreply
        self.now = now

    def __repr__(self) -> str:
        return f"KeyOp({self.op} {self.key!r})"


class GetOp:
    """``get``/``gets``/``gat``/``gats`` of ``keys`` (``touch`` with a new ``expiry``)."""

    __slots__ = ("keys", "with_cas", "touch", "expiry", "now")

    def __init__(self, keys: list[bytes], with_cas: bool, touch: bool, expiry: int, now: int) -> None:
        self.keys = keys
        self.with_cas = with_cas
        self.touch = touch
        self.expiry = expiry
        self.now = now

    def __repr__(self) -> str:
        return f"GetOp({self.keys!r})"


class Control:
    """A command about the whole server or the connection: ``kind`` is ``flush``,
    ``bad_flush`` (a ``flush_all`` whose delay is not a number: counted in ``cmd_flush``
    and answered ``CLIENT_ERROR invalid exptime argument``), ``stats``, ``stats_reset``,
    ``stats_settings``, ``quit``, ``hangup``,
    ``bad_chunk`` (a data block not ending in CRLF: answered ``CLIENT_ERROR bad data
    chunk`` and counted in ``cmd_set``, as memcached counts it before checking the
    block) or ``bad_get_key`` (a retrieval with a key over 250 bytes: memcached drops
    every reply of the connection not yet transmitted and answers ``CLIENT_ERROR bad
    command line format``)."""

    __slots__ = ("kind", "noreply", "deadline", "prefix")

    def __init__(self, kind: str, noreply: bool = False, deadline: int = 0, prefix: GetOp | None = None) -> None:
        self.kind = kind
        self.noreply = noreply
        self.deadline = deadline  # for flush: the ``oldest_live`` time
        #: for bad_get_key: the keys before the bad one, which memcached still looks up
        #: (counting hits and misses, touching for ``gat``) before it gives up
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"Control({self.kind})"


Request = Union[KeyOp, GetOp, Control, bytes]
#: A parse result: bytes consumed, the request, and bytes to swallow after it.
Parsed = tuple[int, Request, int]

_STORAGE = {b"set": "set", b"add": "add", b"replace": "replace", b"append": "append",
            b"prepend": "prepend", b"cas": "cas"}


#: How a command's exptime becomes an absolute expiry: ``(exptime, now) -> expiry``.
ExpiryRule = Callable[[int, int], int]


def parse_request(
    buf: bytes | bytearray,
    pos: int,
    now: int,
    segment_size: int,
    scan_from: int = 0,
    expiry: ExpiryRule = to_expiry,
) -> Parsed | None:
    """Parse the request at ``buf[pos:]``; ``None`` when more bytes are needed.

    Returns ``(consumed, request, swallow)``: ``consumed`` bytes from ``pos`` make up
    the request, and ``swallow`` further bytes (the data block of a too-large item) must
    be discarded before the next request, however they arrive. ``scan_from`` is where
    to start looking for the line's end: the caller knows ``buf[pos:scan_from]`` holds
    no ``\n`` (so a caller that remembers how far it looked scans a long line once).
    Exptimes (and a ``flush_all`` delay) are converted by ``expiry`` (memcached's rule:
    :func:`to_expiry`).
    """
    nl = buf.find(b"\n", scan_from if scan_from > pos else pos)
    if nl < 0:
        if len(buf) - pos > 2048:
            start = pos
            while start < len(buf) and buf[start] == 0x20:
                start += 1
            head = bytes(buf[start : start + 5])
            if start - pos > 100 or not (head[:4] == b"get " or head == b"gets "):
                return 0, Control("hangup"), 0
        return None
    end = nl - 1 if nl - pos > 1 and buf[nl - 1] == 0x0D else nl
    consumed = nl + 1 - pos
    if end - pos > LONG_LINE:
        long_request = _long_retrieval(buf, pos, end, now)
        if long_request is not None:
            return consumed, long_request, 0
    if end - pos <= 4096:
        line = bytes(buf[pos:end])
    else:  # one copy, not two (a slice of a bytearray is itself a copy)
        with memoryview(buf) as view:
            line = bytes(view[pos:end])
    if 0 in line:
        line = line[: line.index(0)]
    tokens = [t for t in line.split(b" ") if t]
    ntokens = min(len(tokens), _MAX_TOKENS) + 1  # memcached counts the terminal token
    if ntokens < 2 or len(tokens[0]) < 2:
        return consumed, ERROR, 0
    cmd = tokens[0]
    first = cmd[0]
    if first == 0x67 or cmd == b"bget":  # 'g'
        if ntokens < 3:
            return consumed, ERROR, 0
        if cmd == b"get" or cmd == b"bget":
            return consumed, _get(tokens[1:], False, False, 0, now), 0
        if cmd == b"gets":
            return consumed, _get(tokens[1:], True, False, 0, now), 0
        if cmd == b"gat" or cmd == b"gats":
            exptime = strtol32(tokens[1])
            if exptime is None:
                return consumed, BAD_EXPTIME, 0
            return consumed, _get(tokens[2:], cmd == b"gats", True, expiry(exptime, now), now), 0
        return consumed, ERROR, 0
    op = _STORAGE.get(cmd)
    if op is not None:
        want = (7, 8) if op == "cas" else (6, 7)
        if ntokens not in want:
            return consumed, ERROR, 0
        return _storage(buf, pos, consumed, op, tokens, ntokens, now, segment_size, expiry)
    if cmd == b"delete":
        if not 3 <= ntokens <= 5:
            return consumed, ERROR, 0
        noreply = tokens[ntokens - 2] == b"noreply"
        if ntokens > 3:
            zero = tokens[2] == b"0"
            valid = (ntokens == 4 and (zero or noreply)) or (ntokens == 5 and zero and noreply)
            if not valid:
                return consumed, b"" if noreply else DELETE_USAGE, 0
        if len(tokens[1]) > KEY_MAX:
            return consumed, b"" if noreply else BAD_FORMAT, 0
        return consumed, KeyOp("delete", tokens[1], 0, 0, b"", 0, noreply, now), 0
    if cmd == b"incr" or cmd == b"decr":
        if ntokens not in (4, 5):
            return consumed, ERROR, 0
        noreply = tokens[ntokens - 2] == b"noreply"
        if len(tokens[1]) > KEY_MAX:
            return consumed, b"" if noreply else BAD_FORMAT, 0
        delta = strtoull(tokens[2])
        if delta is None:
            return consumed, b"" if noreply else BAD_DELTA, 0
        return consumed, KeyOp(cmd.decode(), tokens[1], 0, 0, b"", delta, noreply, now), 0
    if cmd == b"touch":
        if ntokens not in (4, 5):
            return consumed, ERROR, 0
        noreply = tokens[ntokens - 2] == b"noreply"
        if len(tokens[1]) > KEY_MAX:
            return consumed, b"" if noreply else BAD_FORMAT, 0
        exptime = strtol32(tokens[2])
        if exptime is None:
            return consumed, b"" if noreply else BAD_EXPTIME, 0
        return consumed, KeyOp("touch", tokens[1], 0, expiry(exptime, now), b"", 0, noreply, now), 0
    return consumed, _other(cmd, tokens, ntokens, now, expiry), 0


def _long_retrieval(buf: bytes | bytearray, pos: int, end: int, now: int) -> Request | None:
    """The request of the line ``buf[pos:end]`` if it is a ``get``/``gets``/``bget``
    (None otherwise), exactly as splitting a copy of the line would give it, but read
    in slices of :data:`SCAN_CHUNK` bytes and stopped at the first key over
    :data:`KEY_MAX` (the keys after it change nothing): a line of hundreds of megabytes
    costs neither a copy of itself nor one of its longest token."""
    nul = buf.find(b"\0", pos, end)
    if nul >= 0:
        end = nul
    found = _NOT_SPACE.search(buf, pos, end)
    if found is None:
        return None
    start = found.start()
    stop = buf.find(b" ", start, min(end, start + 5))
    if stop < 0 or bytes(buf[start:stop]) not in (b"get", b"gets", b"bget"):
        return None
    with_cas = buf[start:stop] == b"gets"
    keys: list[bytes] = []
    partial = b""  # the token a slice ended in, continued by the next slice
    with memoryview(buf) as view:
        for i in range(stop, end, SCAN_CHUNK):
            pieces = bytes(view[i : min(i + SCAN_CHUNK, end)]).split(b" ")
            pieces[0] = partial + pieces[0]
            partial = pieces.pop()
            for key in pieces:
                if len(key) > KEY_MAX:
                    return _get([*keys, key], with_cas, False, 0, now)
                if key:
                    keys.append(key)
            if len(partial) > KEY_MAX:
                return _get([*keys, partial], with_cas, False, 0, now)
    if partial:
        keys.append(partial)
    return _get(keys, with_cas, False, 0, now) if keys else ERROR


def _get(keys: list[bytes], with_cas: bool, touch: bool, expiry: int, now: int) -> Request:
    for i, key in enumerate(keys):
        if len(key) > KEY_MAX:
            prefix = GetOp(keys[:i], with_cas, touch, expiry, now) if i else None
            return Control("bad_get_key", prefix=prefix)
    return GetOp(keys, with_cas, touch, expiry, now)


def _storage(
    buf: bytes | bytearray, pos: int, consumed: int, op: str, tokens: list[bytes],
    ntokens: int, now: int, segment_size: int, expiry: ExpiryRule,
) -> Parsed | None:
    noreply = tokens[ntokens - 2] == b"noreply"
    key = tokens[1]
    if len(key) > KEY_MAX:
        return consumed, b"" if noreply else BAD_FORMAT, 0
    flags = strtoul32(tokens[2])
    exptime = strtol32(tokens[3])
    vlen = strtol32(tokens[4])
    if flags is None or exptime is None or vlen is None:
        return consumed, b"" if noreply else BAD_FORMAT, 0
    cas = 0
    if op == "cas":
        parsed_cas = strtoull(tokens[5])
        if parsed_cas is None:
            return consumed, b"" if noreply else BAD_FORMAT, 0
        cas = parsed_cas
    if vlen < 0 or vlen > 0x7FFFFFFF - 2:
        return consumed, b"" if noreply else BAD_FORMAT, 0
    if memcached_item_too_large(len(key), flags, vlen) or entry_size(len(key), vlen) > segment_size:
        reply = b"" if noreply else TOO_LARGE
        kind = "drop" if op == "set" else "too_large"
        return consumed, KeyOp(kind, key, 0, 0, reply, 0, noreply, now), vlen + 2
    start = pos + consumed
    stop = start + vlen + 2
    if len(buf) < stop:
        return None
    if buf[stop - 2 : stop] != b"\r\n":
        return stop - pos, Control("bad_chunk", noreply), 0
    data = bytes(buf[start : stop - 2])
    return stop - pos, KeyOp(op, key, flags, expiry(exptime, now), data, cas, noreply, now), 0


def _other(cmd: bytes, tokens: list[bytes], ntokens: int, now: int, expiry: ExpiryRule) -> Request:
    first = cmd[0]
    if first == 0x6D and len(cmd) == 2:  # meta commands: only mn
        return MN_REPLY if cmd == b"mn" else ERROR
    if cmd == b"stats":
        if ntokens == 2:
            return Control("stats")
        if tokens[1] == b"reset":
            return Control("stats_reset")
        if tokens[1] == b"settings":
            return Control("stats_settings")
        return ERROR
    if cmd == b"shutdown":
        return b"ERROR: shutdown not enabled\r\n"
    if first in b"sacidt":  # memcached's first-letter branches answer ERROR
        return ERROR
    if cmd == b"flush_all":
        if not 2 <= ntokens <= 4:
            return ERROR
        noreply = tokens[ntokens - 2] == b"noreply"
        delay = 0
        if ntokens != (3 if noreply else 2):
            parsed = strtol32(tokens[1])
            if parsed is None:  # counted all the same: memcached counts before it parses
                return Control("bad_flush", noreply)
            delay = parsed
        # memcached: oldest_live = realtime(delay) - 1, or now - 1 without a delay.
        deadline = (expiry(delay, now) if delay > 0 else now) - 1
        return Control("flush", noreply, deadline)
    if cmd == b"version":
        return VERSION_REPLY
    if cmd == b"quit":
        return Control("quit")
    if cmd == b"verbosity":
        if ntokens not in (3, 4):
            return ERROR
        noreply = tokens[ntokens - 2] == b"noreply"
        if strtoul32(tokens[1]) is None:
            return b"" if noreply else BAD_FORMAT
        return b"" if noreply else b"OK\r\n"
    if cmd in (b"watch", b"lru", b"lru_crawler", b"slabs", b"cache_memlimit"):
        return ERROR
    if tokens[ntokens - 2].startswith(b"HTTP/"):
        return Control("hangup")
    return ERROR
