"""How the emulated store holds its replies and its input: stored values by reference
(never copied on the way out, detached before their segment is reused), a line's end
searched for once however many pieces the line arrives in, and a long retrieval line
read in slices (the same request as splitting a copy of it)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl import sphinx_proto
from impl.sphinx import Connection, Sphinx
from impl.sphinx_log import StoredValue
from impl.sphinx_proto import Control, GetOp, Request, parse_request
from sphinx_helpers import conn_on


def _expected_get(key: bytes, value: bytes, repeats: int) -> bytes:
    return b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(value), value) * repeats + b"END\r\n"


@pytest.mark.parametrize("forwarded", [False, True])
def test_a_key_named_many_times_is_answered_by_reference(forwarded: bool) -> None:
    """``get b b b ...``: one StoredValue for every block, no copy of the value; the
    bytes are the stored ones, locally answered or forwarded from the owner."""
    s = Sphinx(4)
    value = bytes(range(256)) * 400  # 100 KiB
    owner = s.owner_of(b"b")
    setter = conn_on(s, owner)
    s.send(setter, b"set b 0 0 %d\r\n%s\r\n" % (len(value), value))
    s.settle()
    assert s.receive(setter) == b"STORED\r\n"
    reader = conn_on(s, (owner + 1) % 4 if forwarded else owner)
    s.send(reader, b"get" + b" b" * 500 + b"\r\n")
    s.settle()
    s.check_invariants()
    parts = s.receive_parts(reader)
    stored = [part for part in parts if isinstance(part, StoredValue)]
    assert len(stored) == 500 and len({id(part) for part in stored}) == 1
    assert sum(len(part) for part in parts) == len(_expected_get(b"b", value, 500))
    joined = b"".join(part if isinstance(part, bytes) else part.view() for part in parts)
    assert joined == _expected_get(b"b", value, 500)
    assert s.receive_parts(reader) == []


def _pending_get_then_overwrite(detach: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, int]:
    """A reply naming ``k`` waits (not received) while other sets reuse every segment;
    returns what the reply then shows, what it should show, and the log's detach count."""
    if not detach:
        monkeypatch.setattr(StoredValue, "detach", lambda self: None)
    s = Sphinx(1, memory=4 * 4096, segment_size=4096)
    old = b"o" * 1000
    a, b = s.connect(), s.connect()
    s.send(a, b"set k 0 0 1000\r\n%s\r\nget k\r\n" % old)
    s.settle()
    for i in range(16):  # 3 entries a segment, 4 segments: every segment is reused
        s.send(b, b"set other%d 0 0 1000\r\n%s\r\n" % (i, b"%d" % (i % 10) * 1000))
        s.settle()
        s.check_invariants()
    assert s.receive(b) == b"STORED\r\n" * 16
    shown = s.receive(a)
    return shown, b"STORED\r\n" + _expected_get(b"k", old, 1), s.workers[0].partition.log.detached_values


def test_a_waiting_reply_keeps_the_value_it_read_when_its_segment_is_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown, expected, detached = _pending_get_then_overwrite(True, monkeypatch)
    assert shown == expected
    assert detached == 1


def test_without_detaching_the_waiting_reply_would_show_overwritten_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above can fail: a log that forgets to detach shows other bytes."""
    shown, expected, _ = _pending_get_then_overwrite(False, monkeypatch)
    assert shown != expected and len(shown) == len(expected)


class _CountingBuffer(bytearray):
    """An input buffer that counts the bytes its ``find`` calls look at."""

    examined = 0

    def find(self, sub: object, start: int | None = None, end: int | None = None) -> int:  # type: ignore[override]
        lo = 0 if start is None else start
        hi = len(self) if end is None else min(end, len(self))
        found: int = super().find(sub, lo, hi)  # type: ignore[call-overload]
        _CountingBuffer.examined += (found + 1 if found >= 0 else hi) - lo
        return found


class _RescanningSphinx(Sphinx):
    """Mutant: forgets where the search for a line's end stopped (quadratic)."""

    def _process_connection(self, w: object, c: Connection, budget: int) -> int:
        c.scanned = 0
        return super()._process_connection(w, c, budget)  # type: ignore[arg-type]


def _bytes_examined(store: Sphinx, pieces: int, piece: bytes) -> int:
    conn = store.connect()
    store.connections[conn].inbuf = _CountingBuffer()
    _CountingBuffer.examined = 0
    store.send(conn, b"get ")
    for _ in range(pieces):
        store.send(conn, piece)
        store.settle()
    store.send(conn, b"\r\n")
    store.settle()
    assert store.receive(conn) == b"CLIENT_ERROR bad command line format\r\n"
    return _CountingBuffer.examined


def test_a_long_line_in_many_pieces_is_scanned_once() -> None:
    pieces, piece = 400, b"a" * 4000
    total = pieces * len(piece)
    assert _bytes_examined(Sphinx(2), pieces, piece) <= 3 * total  # the end, then NULs and the command
    assert _bytes_examined(_RescanningSphinx(2), pieces, piece) > 50 * total  # the check can fail


def _described(parsed: tuple[int, Request, int] | None) -> object:
    if parsed is None:
        return None
    consumed, request, swallow = parsed
    if isinstance(request, GetOp):
        return consumed, "get", request.keys, request.with_cas, swallow
    if isinstance(request, Control):
        prefix = request.prefix
        return consumed, request.kind, None if prefix is None else (prefix.keys, prefix.with_cas), swallow
    return consumed, repr(request), swallow


_TOKENS = st.sampled_from([b"a", b"bb", b"k" * 250, b"k" * 251, b"x" * 700, b"\t", b"\x00", b"\r", b"9"])


@settings(max_examples=max(300, settings.default.max_examples))
@given(
    command=st.sampled_from([b"get", b"gets", b"bget", b"gat", b"getx", b"set", b"ge"]),
    lead=st.sampled_from([b"", b" ", b"   "]),
    tokens=st.lists(st.tuples(_TOKENS, st.sampled_from([b" ", b"  "])), max_size=12),
    carriage=st.booleans(),
    chunk=st.integers(1, 9),
)
def test_a_long_retrieval_read_in_slices_is_the_line_split_whole(
    command: bytes, lead: bytes, tokens: list[tuple[bytes, bytes]], carriage: bool, chunk: int
) -> None:
    line = lead + command + b"".join(space + token for token, space in tokens)
    data = line + (b"\r\n" if carriage else b"\n") + b"get next\r\n"
    whole = _described(parse_request(data, 0, 1, 4096))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sphinx_proto, "LONG_LINE", 0)
        patch.setattr(sphinx_proto, "SCAN_CHUNK", chunk)
        sliced = _described(parse_request(data, 0, 1, 4096))
    assert sliced == whole


def test_a_long_bad_key_is_refused_without_reading_the_rest() -> None:
    """``get a`` + a 32 MiB key: the slices stop at the first one (the line is not
    copied); the reply is the one memcached gives."""
    data = bytearray(b"get a " + b"k" * (32 << 20) + b"\r\n")
    parsed = parse_request(data, 0, 1, 4096)
    assert parsed is not None and _described(parsed) == (len(data), "bad_get_key", ([b"a"], False), 0)
