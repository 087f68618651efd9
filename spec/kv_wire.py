"""The memcached text protocol's framing, as memcached 1.6.18 does it: bytes in, requests out.

:class:`WireParser` turns a connection's byte stream (split anywhere) into a sequence of
:data:`Event` values: a parsed request, a protocol error with its exact reply, an item too
large (whose data was swallowed), or a hang-up. It does not execute anything; the
semantics live in :mod:`spec.kv_model`.

Framing rules (each one observed on a real memcached 1.6.18, ``-t 1``, over a raw socket)
----------------------------------------------------------------------------------------
- A command line ends at the first ``\\n``; one ``\\r`` before it is dropped when the line
  has at least two bytes (a bare ``\\n`` is accepted). The line is cut at its first NUL
  byte (memcached uses ``strlen``). Tokens are separated by spaces only (runs of spaces
  are one separator); tabs and other control characters are part of a token, so
  ``set a\\tb 0 0 1`` stores the key ``a\\tb``. At most 23 tokens are split off; the rest
  of a long ``get`` line is re-tokenized, so multi-gets take any number of keys.
- Commands are case-sensitive: ``GET a`` is ``ERROR``. A line of fewer than two bytes in
  its first token, or with no token, is ``ERROR``. Wrong argument counts are ``ERROR``
  (``set`` takes 4-5 arguments, ``cas`` 5-6, ``incr``/``decr``/``touch`` 2-3, ``delete``
  1-3, ``flush_all`` 0-2, ``get``-family and ``verbosity`` at least 1).
- ``noreply`` is recognised only as the last token, and only by the commands that look
  for it (storage, ``incr``/``decr``, ``delete``, ``touch``, ``flush_all``,
  ``verbosity``). It silences *every* reply of that one command, errors included
  (``CLIENT_ERROR``, ``bad data chunk``, ``object too large``), but never the ``ERROR`` of
  a wrong argument count. Retrieval commands take ``noreply`` as a key.
- Numbers are parsed as memcached's ``safe_strto*`` do: ``strtoul``/``strtol``/
  ``strtoull`` in base 10 (leading whitespace and ``+`` accepted), the whole token
  consumed (or stopped at a whitespace character), and a ``-`` rejected when the
  unsigned result would be negative as a signed one. Flags are parsed as 64-bit and
  *truncated* to 32 bits (``4294967296`` stores flags 0); exptime and the byte count are
  parsed as 64-bit ``long`` and truncated to 32-bit ``int`` (``2147483648`` becomes a
  negative, already-expired exptime); a byte count below 0 is ``CLIENT_ERROR bad command
  line format``.
- A storage command whose key exceeds 250 bytes, or whose numbers are bad, answers
  ``CLIENT_ERROR bad command line format`` and its data line is then read as a command
  line (usually ``ERROR``).
- The data block is exactly ``<bytes> + 2`` bytes; if its last two are not ``\\r\\n`` the
  reply is ``CLIENT_ERROR bad data chunk`` and parsing resumes right after those bytes.
- An item too large for the cache answers ``SERVER_ERROR object too large for cache``
  *before* its data arrives and then swallows exactly ``<bytes> + 2`` bytes, whatever
  they are. For ``set`` (only) the key's old value is deleted.
- While waiting for a line, if more than 2048 bytes are buffered without a ``\\n`` and
  the buffer does not start (after at most 100 spaces) with ``get `` or ``gets ``, the
  server hangs up without a reply. Multi-get lines may be of any length.
- A line whose command is unknown and does not start with one of memcached's dispatch
  letters (``g s a c i d t``, or a two-letter ``m`` command) and whose last token starts
  with ``HTTP/`` makes the server hang up (``GET / HTTP/1.0``); ``get / HTTP/1.0`` is a
  plain two-key ``get``.
- ``quit`` hangs up after the replies before it; ``version`` ignores its arguments.
- Key too long in a retrieval: ``CLIENT_ERROR bad command line format`` replaces the
  whole reply (hits before the long key are not sent; a ``gat`` has already touched
  them). ``gat``/``gats`` with a bad exptime: ``CLIENT_ERROR invalid exptime
  argument``; ``gat <exptime>`` with no key answers ``END``.

Not supported (answered ``ERROR``, unlike memcached): the meta commands (``mg ms md
ma me``; ``mn`` answers ``MN``), ``shutdown``, ``slabs``, ``cache_memlimit``, ``lru``, ``lru_crawler``,
``watch``, ``misbehave``, ``debugtime``, ``bget``, ``extstore``; ``stats`` takes no
argument except ``reset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from spec.kv_api import KEY_MAX, item_fits

#: Bytes buffered without a newline after which memcached hangs up (unless ``get``).
LONG_LINE_LIMIT = 2048
#: memcached's MAX_TOKENS minus the terminal token.
_MAX_SPLIT = 23

STORAGE_COMMANDS = (b"set", b"add", b"replace", b"append", b"prepend", b"cas")
RETRIEVAL_COMMANDS = (b"get", b"gets", b"gat", b"gats")

BAD_FORMAT = b"CLIENT_ERROR bad command line format"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk"
TOO_LARGE = b"SERVER_ERROR object too large for cache"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument"
BAD_DELETE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
ERROR = b"ERROR"

_SPACE = b" \t\n\v\f\r"


# --------------------------------------------------------------------- C numbers


def decimal(digits: bytes) -> int:
    """The value of a run of decimal digits, exactly up to 20 significant digits; more
    (a value of at least 10**20, above 2**64 and so out of every range memcached
    accepts) count as 10**20: leading zeros do not matter, as to C's ``strtoull``, and
    no conversion is unbounded (CPython refuses ``int()`` of over 4,300 digits)."""
    significant = digits.lstrip(b"0")
    if len(significant) > 20:
        return 10**20
    return int(significant) if significant else 0


def c_strtoull(text: bytes) -> tuple[int, int, bool]:
    """C's ``strtoull(text, &end, 10)``: ``(value, end, erange)``. ``end`` is 0 when no
    digits were read; a leading ``-`` negates modulo 2**64.

    post: 0 <= __return__[0] < 2 ** 64
    post: 0 <= __return__[1] <= len(text)
    """
    i, n = 0, len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    negative = False
    if i < n and text[i] in b"+-":
        negative = text[i] == 0x2D
        i += 1
    start = i
    while i < n and 0x30 <= text[i] <= 0x39:
        i += 1
    if i == start:
        return 0, 0, False
    value = decimal(text[start:i])
    if value >= 2**64:
        return 2**64 - 1, i, True
    return ((-value) % 2**64 if negative else value), i, False


def _ends_well(text: bytes, end: int) -> bool:
    return end > 0 and (end == len(text) or text[end] in _SPACE)


def safe_strtoull(text: bytes) -> int | None:
    """memcached's ``safe_strtoull``: the unsigned 64-bit value, or ``None``.

    post: __return__ is None or 0 <= __return__ < 2 ** 64
    """
    value, end, erange = c_strtoull(text)
    if erange or not _ends_well(text, end):
        return None
    if value >= 2**63 and b"-" in text[:end]:
        return None
    return value


def safe_strtoul32(text: bytes) -> int | None:
    """memcached's ``safe_strtoul`` into a ``uint32_t`` (64-bit ``unsigned long``
    truncated to 32 bits, as on x86-64).

    post: __return__ is None or 0 <= __return__ < 2 ** 32
    """
    value = safe_strtoull(text)
    return None if value is None else value & 0xFFFFFFFF


def safe_strtol32(text: bytes) -> int | None:
    """memcached's ``safe_strtol`` into an ``int32_t``: a 64-bit ``strtol`` (out of range
    is an error), then truncated to 32 bits two's complement.

    post: __return__ is None or -(2 ** 31) <= __return__ < 2 ** 31
    """
    value, end, _ = c_strtoull(text)
    if end == 0 or not _ends_well(text, end):
        return None
    digits = text[:end].lstrip(_SPACE)
    magnitude = decimal(digits.lstrip(b"+-"))
    signed = -magnitude if digits.startswith(b"-") else magnitude
    if not -(2**63) <= signed < 2**63:
        return None
    low = signed & 0xFFFFFFFF
    return low - 2**32 if low >= 2**31 else low


# --------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Retrieval:
    """``get|gets <key>*`` or ``gat|gats <exptime> <key>*`` (``exptime`` None for get)."""

    command: bytes
    keys: tuple[bytes, ...]
    exptime: int | None = None


@dataclass(frozen=True)
class Storage:
    """A storage command with its data block (``cas`` is 0 except for ``cas``)."""

    command: bytes
    key: bytes
    flags: int
    exptime: int
    data: bytes
    cas: int = 0
    noreply: bool = False


@dataclass(frozen=True)
class Delete:
    key: bytes
    noreply: bool = False


@dataclass(frozen=True)
class Arithmetic:
    """``incr``/``decr`` (``command``) by ``delta``."""

    command: bytes
    key: bytes
    delta: int
    noreply: bool = False


@dataclass(frozen=True)
class Touch:
    key: bytes
    exptime: int
    noreply: bool = False


@dataclass(frozen=True)
class FlushAll:
    delay: int = 0
    noreply: bool = False


@dataclass(frozen=True)
class Simple:
    """``version``, ``verbosity``, ``stats``, ``stats reset``, ``mn`` (no arguments
    that matter)."""

    command: bytes
    noreply: bool = False


@dataclass(frozen=True)
class TooLarge:
    """A storage command whose item cannot be stored: its data was swallowed."""

    command: bytes
    key: bytes
    noreply: bool = False


@dataclass(frozen=True)
class BadChunk:
    """A storage command whose data block did not end in ``\\r\\n``."""

    command: bytes
    noreply: bool = False


@dataclass(frozen=True)
class ProtocolError:
    """A request refused by the parser: ``reply`` (without ``\\r\\n``) unless ``noreply``;
    ``counter`` names a ``stats`` counter memcached still increments (or is empty)."""

    reply: bytes
    noreply: bool = False
    counter: str = ""


@dataclass(frozen=True)
class HangUp:
    """The server closes the connection (``quit``, an HTTP request, an endless line)."""

    reason: str


Request = Union[Retrieval, Storage, Delete, Arithmetic, Touch, FlushAll, Simple]
Event = Union[Request, TooLarge, BadChunk, ProtocolError, HangUp]

#: ``fits(key_length, value_length, flags)``: whether an item can be stored at all.
ItemFits = Callable[[int, int, int], bool]


# --------------------------------------------------------------------- the parser


@dataclass
class _Pending:
    command: bytes
    key: bytes
    flags: int
    exptime: int
    length: int
    cas: int
    noreply: bool


class WireParser:
    """Incremental parser for one connection.

    Guarantees: :meth:`feed` returns the events completed by the bytes so far, in stream
    order, and the result of feeding a stream does not depend on how it is split
    *except* for the endless-line rule, which (as in memcached) is applied to what has
    arrived when a feed ends. After a :class:`HangUp` nothing more is parsed.
    """

    def __init__(self, fits: ItemFits = item_fits) -> None:
        self._fits = fits
        self._buffer = bytearray()
        self._pending: _Pending | None = None
        self._swallow = 0
        self.hung_up = False

    def feed(self, data: bytes) -> list[Event]:
        """Append ``data`` and return every event it completes."""
        if self.hung_up:
            return []
        self._buffer += data
        events: list[Event] = []
        while not self.hung_up:
            event = self._next()
            if event is None:
                break
            if isinstance(event, HangUp):
                self.hung_up = True
                self._buffer.clear()
            events.append(event)
        return events

    def _next(self) -> Event | None:
        buf = self._buffer
        if self._swallow:
            taken = min(self._swallow, len(buf))
            del buf[:taken]
            self._swallow -= taken
            if self._swallow:
                return None
        if self._pending is not None:
            need = self._pending.length + 2
            if len(buf) < need:
                return None
            block = bytes(buf[:need])
            del buf[:need]
            pending, self._pending = self._pending, None
            if block[-2:] != b"\r\n":
                return BadChunk(pending.command, pending.noreply)
            return Storage(
                pending.command,
                pending.key,
                pending.flags,
                pending.exptime,
                block[:-2],
                pending.cas,
                pending.noreply,
            )
        newline = buf.find(b"\n")
        if newline < 0:
            if len(buf) > LONG_LINE_LIMIT:
                stripped = bytes(buf).lstrip(b" ")
                if len(buf) - len(stripped) > 100 or not (
                    stripped.startswith(b"get ") or stripped.startswith(b"gets ")
                ):
                    return HangUp("a line of more than 2048 bytes without a newline")
            return None
        line = bytes(buf[:newline])
        del buf[: newline + 1]
        if len(line) > 1 and line.endswith(b"\r"):
            line = line[:-1]
        nul = line.find(b"\x00")
        if nul >= 0:
            line = line[:nul]
        return self._command(line)

    def _command(self, line: bytes) -> Event | None:
        words = [w for w in line.split(b" ") if w]
        tokens = words[:_MAX_SPLIT]
        ntokens = len(tokens) + 1  # memcached counts a terminal token
        if not tokens or len(tokens[0]) < 2:
            return ProtocolError(ERROR)
        name = tokens[0]
        first = name[:1]
        if first == b"m" and len(name) == 2:
            return Simple(b"mn") if name == b"mn" else ProtocolError(ERROR)
        if first == b"g":
            if ntokens < 3:
                return ProtocolError(ERROR)
            if name in RETRIEVAL_COMMANDS:
                return _retrieval(name, words)
            return ProtocolError(ERROR)
        if name in STORAGE_COMMANDS:
            low, high = (7, 8) if name == b"cas" else (6, 7)
            if not low <= ntokens <= high:
                return ProtocolError(ERROR)
            return self._storage(name, tokens, ntokens)
        if name == b"stats":
            if ntokens == 2:
                return Simple(b"stats")
            if tokens[1] == b"reset":
                return Simple(b"stats reset")
            return ProtocolError(ERROR)
        if name in (b"incr", b"decr"):
            if not 4 <= ntokens <= 5:
                return ProtocolError(ERROR)
            return _arithmetic(name, tokens, ntokens)
        if name == b"delete":
            if not 3 <= ntokens <= 5:
                return ProtocolError(ERROR)
            return _delete(tokens, ntokens)
        if name == b"touch":
            if not 4 <= ntokens <= 5:
                return ProtocolError(ERROR)
            return _touch(tokens, ntokens)
        if first in b"sacidt":
            return ProtocolError(ERROR)
        if name == b"flush_all":
            if not 2 <= ntokens <= 4:
                return ProtocolError(ERROR)
            return _flush_all(tokens, ntokens)
        if name == b"version":
            return Simple(b"version")
        if name == b"quit":
            return HangUp("quit")
        if name == b"verbosity":
            if ntokens < 3:
                return ProtocolError(ERROR)
            noreply = _noreply(tokens, ntokens)
            if safe_strtoul32(tokens[1]) is None:
                return ProtocolError(BAD_FORMAT, noreply)
            return Simple(b"verbosity", noreply)
        if tokens[-1].startswith(b"HTTP/"):
            return HangUp("an HTTP request")
        return ProtocolError(ERROR)

    def _storage(self, name: bytes, tokens: list[bytes], ntokens: int) -> Event | None:
        noreply = _noreply(tokens, ntokens)
        key = tokens[1]
        if len(key) > KEY_MAX:
            return ProtocolError(BAD_FORMAT, noreply)
        flags = safe_strtoul32(tokens[2])
        exptime = safe_strtol32(tokens[3])
        length = safe_strtol32(tokens[4])
        if flags is None or exptime is None or length is None:
            return ProtocolError(BAD_FORMAT, noreply)
        cas = 0
        if name == b"cas":
            unique = safe_strtoull(tokens[5])
            if unique is None:
                return ProtocolError(BAD_FORMAT, noreply)
            cas = unique
        if length < 0 or length > 2**31 - 1 - 2:
            return ProtocolError(BAD_FORMAT, noreply)
        if not self._fits(len(key), length, flags):
            self._swallow = length + 2
            return TooLarge(name, key, noreply)
        self._pending = _Pending(name, key, flags, exptime, length, cas, noreply)
        return self._next()


def _noreply(tokens: list[bytes], ntokens: int) -> bool:
    """memcached's ``set_noreply_maybe``: the last token is ``noreply``."""
    return ntokens >= 3 and tokens[ntokens - 2] == b"noreply"


def _retrieval(name: bytes, words: list[bytes]) -> Event:
    exptime: int | None = None
    keys = words[1:]
    if name in (b"gat", b"gats"):
        exptime = safe_strtol32(words[1])
        if exptime is None:
            return ProtocolError(BAD_EXPTIME)
        keys = words[2:]
    return Retrieval(name, tuple(keys), exptime)


def _arithmetic(name: bytes, tokens: list[bytes], ntokens: int) -> Event:
    noreply = _noreply(tokens, ntokens)
    if len(tokens[1]) > KEY_MAX:
        return ProtocolError(BAD_FORMAT, noreply)
    delta = safe_strtoull(tokens[2])
    if delta is None:
        return ProtocolError(BAD_DELTA, noreply)
    return Arithmetic(name, tokens[1], delta, noreply)


def _delete(tokens: list[bytes], ntokens: int) -> Event:
    noreply = False
    if ntokens > 3:
        hold_is_zero = tokens[2] == b"0"
        noreply = _noreply(tokens, ntokens)
        valid = (ntokens == 4 and (hold_is_zero or noreply)) or (
            ntokens == 5 and hold_is_zero and noreply
        )
        if not valid:
            return ProtocolError(BAD_DELETE, noreply)
    if len(tokens[1]) > KEY_MAX:
        return ProtocolError(BAD_FORMAT, noreply)
    return Delete(tokens[1], noreply)


def _touch(tokens: list[bytes], ntokens: int) -> Event:
    noreply = _noreply(tokens, ntokens)
    if len(tokens[1]) > KEY_MAX:
        return ProtocolError(BAD_FORMAT, noreply)
    exptime = safe_strtol32(tokens[2])
    if exptime is None:
        return ProtocolError(BAD_EXPTIME, noreply)
    return Touch(tokens[1], exptime, noreply)


def _flush_all(tokens: list[bytes], ntokens: int) -> Event:
    noreply = _noreply(tokens, ntokens)
    delay = 0
    if ntokens != (3 if noreply else 2):
        parsed = safe_strtol32(tokens[1])
        if parsed is None:
            return ProtocolError(BAD_EXPTIME, noreply, "cmd_flush")
        delay = parsed
    return FlushAll(delay, noreply)
