"""The Sphinx implementation: owner hash, every command's reply (as memcached 1.6.18
answers), forwarding through the rings, reply order, multi-key gets, FIFO segment
expiry, back-pressure, the clock, and check_invariants catching corruption."""

from __future__ import annotations

import mmh3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl.sphinx import VIRTUAL_EPOCH, Connection, Piece, ReplySlot, Sphinx
from impl.sphinx_log import entry_size as log_entry_size
from protocol_tours import kv_tour
from spec.kv_api import entry_size
from sphinx_helpers import conn_on, roundtrip

MB = 1024 * 1024




def key_owned_by(s: Sphinx, thread: int, prefix: bytes = b"key", skip: int = 0) -> bytes:
    i = 0
    while True:
        key = prefix + b"%d" % i
        if s.owner_of(key) == thread:
            if skip == 0:
                return key
            skip -= 1
        i += 1


@given(st.integers(0, 250), st.integers(0, 2 * MB))
def test_the_log_sizes_entries_as_the_contract_says(key_length: int, value_length: int) -> None:
    assert log_entry_size(key_length, value_length) == entry_size(key_length, value_length)


# -- the owner hash ---------------------------------------------------------------------
MURMUR_VECTORS = [
    (b"", 0, 0), (b"", 1, 0x514E28B7), (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\xff\xff\xff\xff", 0, 0x76293B50), (b"\x21\x43\x65\x87", 0, 0xF55B516B),
    (b"\x21\x43\x65", 0, 0x7E4A8634), (b"\x21", 0, 0x72661CF4), (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


@pytest.mark.parametrize("data, seed, expected", MURMUR_VECTORS)
def test_murmur3_vectors(data: bytes, seed: int, expected: int) -> None:
    assert mmh3.hash(data, seed, signed=False) == expected


def test_sphinx_keeps_the_protocol_on_a_tour() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    kv_tour(s)
    s.check_invariants()


def test_owner_partition_follows_unsigned_murmur_and_indexes_hold_their_keys() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    keys = [b"k%d" % i for i in range(200)]
    assert {s.owner_of(k) for k in keys} == {0, 1, 2, 3}
    for k in keys:
        assert s.owner_of(k) == mmh3.hash(k, 1, signed=False) % 4
    # a key whose signed hash is negative: the unsigned value decides
    negative = next(k for k in keys if mmh3.hash(k, 1) < 0)
    assert s.owner_of(negative) == (mmh3.hash(negative, 1) + (1 << 32)) % 4
    c = s.connect()
    roundtrip(s, c, b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in keys))
    by_thread = s.keys_by_thread()
    assert set().union(*by_thread.values()) == set(keys)
    for t, held in by_thread.items():
        assert all(s.owner_of(k) == t for k in held)


# -- every command (one thread: byte-for-byte what memcached 1.6.18 answered) ------------
K251 = b"k" * 251
SINGLE_THREAD_CASES: list[tuple[bytes, bytes, bool]] = [
    (b"set a 0 0 1\r\nx\r\nget a\r\n", b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    (b"GET a\r\n", b"ERROR\r\n", False),
    (b"GET / HTTP/1.0\r\n", b"", True),
    (b"version\r\nGET / HTTP/1.0\r\n", b"", True),
    (b"set a 0 0 1\r\nx\r\nget a\n", b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    (b"set b 0 0 2\r\nabc\r\nget b\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n", False),
    (b"set b 0 0\r\nab\r\n", b"ERROR\r\nERROR\r\n", False),
    (b"\r\n", b"ERROR\r\n", False),
    (b"set kk 0 0 -1\r\nget kk\r\n", b"CLIENT_ERROR bad command line format\r\nEND\r\n", False),
    (b"set kk 4294967296 0 1\r\nx\r\nget kk\r\n", b"STORED\r\nVALUE kk 0 1\r\nx\r\nEND\r\n", False),
    (b"set kf 18446744073709551615 0 1\r\nx\r\nget kf\r\n", b"STORED\r\nVALUE kf 4294967295 1\r\nx\r\nEND\r\n", False),
    (b"set kf 18446744073709551616 0 1\r\nx\r\n", b"CLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    (b"set kf -0 0 1\r\nx\r\nset kg +5 0 1\r\ny\r\nget kf kg\r\n",
     b"STORED\r\nSTORED\r\nVALUE kf 0 1\r\nx\r\nVALUE kg 5 1\r\ny\r\nEND\r\n", False),
    (b"set kf 0 99999999999 1\r\nx\r\nget kf\r\n", b"STORED\r\nEND\r\n", False),
    (b"set kf 0 0 2147483647\r\nx\r\n", b"CLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    (b"set kf 0 -1 1\r\nx\r\nget kf\r\n", b"STORED\r\nEND\r\n", False),
    (b"set  kf  0  0  1 \r\nx\r\nget  kf \r\n", b"STORED\r\nVALUE kf 0 1\r\nx\r\nEND\r\n", False),
    (b"set kf\t0 0 1\r\nx\r\n", b"ERROR\r\nERROR\r\n", False),
    (b"get " + b"a" * 2100 + b"\r\n", b"CLIENT_ERROR bad command line format\r\n", False),
    (b"g" * 3000, b"", True),
    (b"g" * 3000 + b"\r\nversion\r\n", b"ERROR\r\nVERSION 1.6.18-sphinx\r\n", False),
    (b"set a 0 0 1\r\nx\r\nincr a 1\r\nincr a 1 2\r\ndecr a\r\n",
     b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
     b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\nERROR\r\n", False),
    (b"set a 0 0 1\r\n5\r\ndecr a 10\r\nincr a 18446744073709551615\r\nincr a 1\r\ngets a\r\n",
     b"STORED\r\n0\r\n18446744073709551615\r\n0\r\nVALUE a 0 20 4\r\n0                   \r\nEND\r\n", False),
    (b"set n 0 0 3\r\n100\r\ndecr n 1\r\nget n\r\nincr n abc\r\nincr n -1\r\nincr nope 1\r\n",
     b"STORED\r\n99\r\nVALUE n 0 3\r\n99 \r\nEND\r\nCLIENT_ERROR invalid numeric delta argument\r\n"
     b"CLIENT_ERROR invalid numeric delta argument\r\nNOT_FOUND\r\n", False),
    (b"set n 0 0 3\r\n 12\r\nincr n 1\r\nset m 0 0 2\r\n-5\r\nincr m 1\r\n",
     b"STORED\r\n13\r\nSTORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n", False),
    (b"set big 0 0 5\r\nhello\r\nset big 0 0 1048577\r\n" + b"y" * 1048577 + b"\r\nget big\r\n",
     b"STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n", False),
    (b"set big 0 0 1048514\r\n" + b"y" * 1048514 + b"\r\nset big 1 0 1048511\r\n" + b"y" * 1048511 + b"\r\n",
     b"STORED\r\nSERVER_ERROR object too large for cache\r\n", False),
    (b"set " + K251 + b" 0 0 1\r\nx\r\n", b"CLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    (b"version\r\nget a " + K251 + b"\r\n", b"CLIENT_ERROR bad command line format\r\n", False),
    (b"touch a 10\r\ntouch a\r\ntouch a abc\r\ntouch a 10 noreply\r\nset a 0 0 1\r\nx\r\ntouch a 10\r\n",
     b"NOT_FOUND\r\nERROR\r\nCLIENT_ERROR invalid exptime argument\r\nSTORED\r\nTOUCHED\r\n", False),
    (b"set a 0 0 1\r\nx\r\ngat 10 a\r\ngats 10 a zz\r\ngat\r\ngat 10\r\ngat abc a\r\n",
     b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nVALUE a 0 1 1\r\nx\r\nEND\r\nERROR\r\nEND\r\n"
     b"CLIENT_ERROR invalid exptime argument\r\n", False),
    (b"set a 0 0 1\r\nx\r\ngets a\r\ncas a 0 0 1 999\r\nz\r\ncas zz 0 0 1 1\r\nz\r\ncas a 0 0 1\r\nz\r\n"
     b"cas a 0 0 1 1\r\nq\r\ngets a\r\n",
     b"STORED\r\nVALUE a 0 1 1\r\nx\r\nEND\r\nEXISTS\r\nNOT_FOUND\r\nERROR\r\nERROR\r\nSTORED\r\n"
     b"VALUE a 0 1 2\r\nq\r\nEND\r\n", False),
    (b"verbosity\r\nverbosity 1\r\nverbosity 1 noreply\r\nverbosity abc\r\nverbosity 1 2 3\r\n",
     b"ERROR\r\nOK\r\nCLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    (b"version foo bar\r\n", b"VERSION 1.6.18-sphinx\r\n", False),
    (b"flush_all\r\nflush_all 0\r\nflush_all abc\r\nflush_all noreply\r\nflush_all 10 noreply\r\nflush_all -1\r\n",
     b"OK\r\nOK\r\nCLIENT_ERROR invalid exptime argument\r\nOK\r\n", False),
    (b"set q 0 0 1\r\nx\nget q\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n", False),
    (b"version\r\nquit\r\nversion\r\n", b"VERSION 1.6.18-sphinx\r\n", True),
    (b"append zz 0 0 1\r\nx\r\nprepend zz 0 0 1\r\nx\r\nset p 5 0 1\r\nb\r\nappend p 9 0 1\r\nc\r\n"
     b"prepend p 9 0 1\r\na\r\ngets p\r\n",
     b"NOT_STORED\r\nNOT_STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\nVALUE p 5 3 3\r\nabc\r\nEND\r\n", False),
    (b"set p 0 0 1\r\nx\r\nadd p 0 0 1\r\nx\r\nreplace nope 0 0 1\r\nx\r\nadd p 0 0 1 noreply\r\nx\r\n"
     b"replace p 3 0 2\r\nyy\r\nget p\r\n",
     b"STORED\r\nNOT_STORED\r\nNOT_STORED\r\nSTORED\r\nVALUE p 3 2\r\nyy\r\nEND\r\n", False),
    (b"set x 0 0 1 garbage\r\nx\r\nset y 0 0 1 noreply extra\r\nx\r\n", b"STORED\r\nERROR\r\nERROR\r\n", False),
    (b"set a 0 0 1 noreply\r\nxy\r\nversion\r\n", b"ERROR\r\nVERSION 1.6.18-sphinx\r\n", False),
    (b"set big 0 0 2000000 noreply\r\n" + b"x" * 2000000 + b"\r\nversion\r\n", b"VERSION 1.6.18-sphinx\r\n", False),
    (b"get a\r\r\nversion\x00junk\r\nve\r\nv\r\nstats foo\r\nmn\r\n",
     b"END\r\nVERSION 1.6.18-sphinx\r\nERROR\r\nERROR\r\nERROR\r\nMN\r\n", False),
    (b"delete\r\ndelete a 0\r\ndelete a 1\r\ndelete a noreply\r\nset a 0 0 1\r\nx\r\ndelete a\r\nget a\r\n",
     b"ERROR\r\nNOT_FOUND\r\nCLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
     b"STORED\r\nDELETED\r\nEND\r\n", False),
    (b"foo bar HTTP/1.1\r\n", b"", True),
    (b"GET /\r\nversion HTTP/1.0\r\nshutdown\r\n",
     b"ERROR\r\nVERSION 1.6.18-sphinx\r\nERROR: shutdown not enabled\r\n", False),
    (b"set a 0 0 1\r\n1\r\ngets a\r\nappend a 0 0 1\r\n2\r\ngets a\r\nincr a 1\r\ngets a\r\ntouch a 100\r\ngets a\r\n",
     b"STORED\r\nVALUE a 0 1 1\r\n1\r\nEND\r\nSTORED\r\nVALUE a 0 2 2\r\n12\r\nEND\r\n13\r\n"
     b"VALUE a 0 2 3\r\n13\r\nEND\r\nTOUCHED\r\nVALUE a 0 2 3\r\n13\r\nEND\r\n", False),
]


@pytest.mark.parametrize("request_bytes, expected, hangs_up", SINGLE_THREAD_CASES)
def test_command_replies_match_memcached(request_bytes: bytes, expected: bytes, hangs_up: bool) -> None:
    s = Sphinx(threads=1, memory=4 * MB)
    c = s.connect()
    assert roundtrip(s, c, request_bytes) == expected
    assert s.closed(c) == hangs_up


def test_split_sends_and_byte_at_a_time() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=MB)
    c = s.connect()
    stream = b"set split 7 0 5\r\nhello\r\nget split\r\nset big 0 0 4000\r\n" + b"z" * 4000 + b"\r\nget big\r\n"
    out = b""
    for i in range(0, 40):
        out += roundtrip(s, c, stream[i : i + 1])
    out += roundtrip(s, c, stream[40:])
    assert out == (b"STORED\r\nVALUE split 7 5\r\nhello\r\nEND\r\nSTORED\r\nVALUE big 0 4000\r\n"
                   + b"z" * 4000 + b"\r\nEND\r\n")


def test_stats_are_summed_over_threads() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = s.connect()
    roundtrip(s, c, b"".join(b"set k%d 0 0 1\r\nx\r\n" % i for i in range(20)) + b"get k1 k2 nope\r\n")
    lines = roundtrip(s, c, b"stats\r\n").split(b"\r\n")
    assert lines[-2:] == [b"END", b""]
    stats = dict(line.split(b" ")[1:3] for line in lines[:-2])
    assert stats[b"curr_items"] == b"20" and stats[b"total_items"] == b"20"
    assert stats[b"cmd_get"] == b"3" and stats[b"get_hits"] == b"2" and stats[b"get_misses"] == b"1"
    assert stats[b"threads"] == b"4" and stats[b"time"] == str(VIRTUAL_EPOCH).encode()
    assert stats[b"bytes"] == str(20 * entry_size(3, 1)).encode()
    assert roundtrip(s, c, b"stats reset\r\n") == b"RESET\r\n"
    assert b"STAT cmd_get 0\r\n" in roundtrip(s, c, b"stats\r\n")
    assert roundtrip(s, c, b"stats settings\r\n").endswith(b"END\r\n")


# -- time -----------------------------------------------------------------------------------
def test_expiry_touch_gat_and_delayed_flush_follow_the_virtual_clock() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=MB)
    c = s.connect()
    assert roundtrip(s, c, b"set e 0 10 1\r\nx\r\nset f 0 %d 1\r\ny\r\n" % (VIRTUAL_EPOCH + 5)) == b"STORED\r\n" * 2
    s.advance_clock(4)
    assert roundtrip(s, c, b"get e f\r\n") == b"VALUE e 0 1\r\nx\r\nVALUE f 0 1\r\ny\r\nEND\r\n"
    s.advance_clock(1)  # f's absolute time reached
    assert roundtrip(s, c, b"get e f\r\n") == b"VALUE e 0 1\r\nx\r\nEND\r\n"
    assert roundtrip(s, c, b"touch e 100\r\n") == b"TOUCHED\r\n"
    s.advance_clock(50)
    assert roundtrip(s, c, b"gat 1 e\r\n") == b"VALUE e 0 1\r\nx\r\nEND\r\n"
    s.advance_clock(1)
    assert roundtrip(s, c, b"get e\r\n") == b"END\r\n"
    assert roundtrip(s, c, b"set g 0 0 1\r\nz\r\nflush_all 3\r\nget g\r\n") == b"STORED\r\nOK\r\nVALUE g 0 1\r\nz\r\nEND\r\n"
    s.advance_clock(2)  # memcached's oldest_live = now + 3 - 1
    assert roundtrip(s, c, b"get g\r\n") == b"END\r\n"
    s.advance_clock(1)
    assert roundtrip(s, c, b"set h 0 0 1\r\nw\r\nget h\r\n") == b"STORED\r\nVALUE h 0 1\r\nw\r\nEND\r\n"
    with pytest.raises(ValueError):
        s.advance_clock(-1)


def test_wall_clock_cannot_be_advanced() -> None:
    s = Sphinx(threads=1, memory=MB, segment_size=MB, clock=lambda: 1234567890)
    assert b"STAT time 1234567890\r\n" in roundtrip(s, s.connect(), b"stats\r\n")
    with pytest.raises(RuntimeError):
        s.advance_clock(1)


# -- forwarding, order, multi-get -------------------------------------------------------------
def test_key_of_another_thread_is_forwarded_and_served() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = conn_on(s, 0)
    remote = key_owned_by(s, 2)
    local = key_owned_by(s, 0)
    assert roundtrip(s, c, b"set %s 3 0 2\r\nhi\r\n" % remote) == b"STORED\r\n"
    assert s.counters.forwarded == 1 and s.counters.local == 0
    assert remote in s.keys_by_thread()[2]
    assert roundtrip(s, c, b"get %s\r\n" % remote) == b"VALUE %s 3 2\r\nhi\r\nEND\r\n" % remote
    assert roundtrip(s, c, b"set %s 0 0 1\r\nx\r\n" % local) == b"STORED\r\n"
    assert s.counters.forwarded == 2 and s.counters.local == 1
    assert s.counters.executed_per_thread == [1, 0, 2, 0]
    assert s.counters.per_thread[0] == 3


def _pipeline(s: Sphinx, c: int) -> tuple[bytes, bytes]:
    keys = [key_owned_by(s, t, b"p", skip=i) for i, t in enumerate((1, 2, 3, 0, 3, 1))]
    sets = b"".join(b"set %s 0 0 2\r\n%02d\r\n" % (k, i) for i, k in enumerate(keys))
    gets = b"".join(b"get %s\r\n" % k for k in keys)
    expected = b"STORED\r\n" * len(keys) + b"".join(
        b"VALUE %s 0 2\r\n%02d\r\nEND\r\n" % (k, i) for i, k in enumerate(keys)
    )
    return sets + gets, expected


def test_pipelined_requests_across_threads_come_back_in_order() -> None:
    for seed in range(12):
        s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, seed=seed)
        c = conn_on(s, 0)
        stream, expected = _pipeline(s, c)
        s.send(c, stream)
        while s.step():
            s.check_invariants()
        assert s.receive(c) == expected, f"seed {seed}"


class ArrivalOrderSphinx(Sphinx):
    """Mutant: writes a forwarded reply as soon as it arrives, ignoring request order."""

    def place_forwarded_reply(self, conn: Connection, slot: ReplySlot, parts: list[int], data: list[Piece]) -> None:
        conn.out.extend(d for d in data if d)
        for index in parts:
            slot.parts[index] = b""
        slot.missing -= len(parts)
        self._flush_slots(conn)


def test_reply_order_mutant_is_caught() -> None:
    wrong = 0
    for seed in range(12):
        s = ArrivalOrderSphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, seed=seed)
        c = conn_on(s, 0)
        stream, expected = _pipeline(s, c)
        got = roundtrip(s, c, stream)
        assert sorted(got.split(b"\r\n")) == sorted(expected.split(b"\r\n"))  # same replies...
        wrong += got != expected  # ...but not always in order
    assert wrong > 0


def test_multi_key_get_is_split_and_reassembled_in_key_order() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, seed=3)
    c = conn_on(s, 1)
    keys = [key_owned_by(s, t, b"m", skip=i) for i, t in enumerate([3, 0, 1, 2, 3, 0, 2])]
    roundtrip(s, c, b"".join(b"set %s %d 0 1\r\n%d\r\n" % (k, i, i) for i, k in enumerate(keys)))
    forwarded = s.counters.forwarded
    want = [keys[0], b"missing", keys[1], keys[2], keys[3], keys[0], keys[4], keys[5], keys[6]]
    expected = b"".join(
        b"VALUE %s %d 1\r\n%d\r\n" % (k, keys.index(k), keys.index(k)) for k in want if k in keys
    ) + b"END\r\n"
    assert roundtrip(s, c, b"get " + b" ".join(want) + b"\r\n") == expected
    assert s.counters.forwarded - forwarded == 3  # one message per other owner (0, 2, 3)


def test_ring_back_pressure_delays_but_never_drops() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=64 * 1024, ring_capacity=1, seed=5)
    c = conn_on(s, 0)
    keys = [key_owned_by(s, 1, b"bp", skip=i) for i in range(40)]
    s.send(c, b"".join(b"set %s 0 0 3\r\nv%02d\r\n" % (k, i) for i, k in enumerate(keys)))
    s.send(c, b"get " + b" ".join(keys) + b"\r\n")
    while s.step():
        s.check_invariants()
    assert s.counters.ring_full > 0
    assert s.receive(c) == b"STORED\r\n" * 40 + b"".join(
        b"VALUE %s 0 3\r\nv%02d\r\nEND\r\n"[:-5] % (k, i) for i, k in enumerate(keys)
    ) + b"END\r\n"


def test_flush_all_reaches_every_thread() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = s.connect()
    roundtrip(s, c, b"".join(b"set f%d 0 0 1\r\nx\r\n" % i for i in range(30)))
    assert roundtrip(s, c, b"flush_all\r\n") == b"OK\r\n"
    assert sum(len(keys) for keys in s.keys_by_thread().values()) == 30  # flushed lazily
    everything = b"get " + b" ".join(b"f%d" % i for i in range(30)) + b"\r\n"
    assert roundtrip(s, c, everything) == b"END\r\n"
    assert all(not keys for keys in s.keys_by_thread().values())  # each lookup dropped one
    stats = roundtrip(s, c, b"stats\r\n")
    assert b"STAT get_flushed 30\r\n" in stats and b"STAT get_expired 0\r\n" in stats
    assert b"STAT curr_items 0\r\n" in stats


def test_disconnect_with_replies_in_flight_and_quit() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = conn_on(s, 0)
    s.send(c, b"set %s 0 0 1\r\nx\r\nset par" % key_owned_by(s, 3))
    s.step()
    s.disconnect(c)
    s.settle()
    s.check_invariants()
    assert s.closed(c) and s.receive(c) == b""
    s.send(c, b"version\r\n")  # ignored
    s.settle()
    assert s.receive(c) == b""
    d = conn_on(s, 0)
    opened = len(s.connections)  # the disconnected one is forgotten
    assert c not in s.connections
    assert b"STAT curr_connections %d\r\n" % opened in roundtrip(s, d, b"stats\r\n")
    remote = key_owned_by(s, 2)
    assert roundtrip(s, d, b"set %s 0 0 1\r\nx\r\nquit\r\nversion\r\n" % remote) == b"STORED\r\n"
    assert s.closed(d)


# -- the log: FIFO expiry ------------------------------------------------------------------------
def _fifo_store(cls: type[Sphinx] = Sphinx) -> tuple[Sphinx, int]:
    # entry_size(2, 50) = 104: two entries per 256-byte segment, three segments.
    s = cls(threads=1, memory=3 * 256, segment_size=256)
    return s, s.connect()


def _set(s: Sphinx, c: int, key: bytes) -> None:
    assert roundtrip(s, c, b"set %s 0 0 50\r\n%s\r\n" % (key, b"v" * 50)) == b"STORED\r\n"


def test_fifo_segment_expiry_drops_exactly_the_oldest_segment() -> None:
    s, c = _fifo_store()
    assert entry_size(2, 50) == 104
    for i in range(6):
        _set(s, c, b"k%d" % i)  # segments 0: k0 k1, 1: k2 k3, 2: k4 k5
    _set(s, c, b"k0")  # overwritten: k0's current entry expires with segment 0
    held = s.keys_by_thread()[0]
    assert held == {b"k0", b"k2", b"k3", b"k4", b"k5"}  # k1 vanished with segment 0
    _set(s, c, b"k6")
    _set(s, c, b"k7")  # segment 1 (k2 k3) expires
    assert s.keys_by_thread()[0] == {b"k0", b"k4", b"k5", b"k6", b"k7"}
    assert s.counters.evicted_segments == 2
    assert roundtrip(s, c, b"get k1 k2 k0\r\n") == b"VALUE k0 0 50\r\n" + b"v" * 50 + b"\r\nEND\r\n"
    stats = roundtrip(s, c, b"stats\r\n")
    # k0's old entry counts: segment 0 expired before k0's new entry was written
    assert b"STAT evictions 4\r\n" in stats and b"STAT segment_expirations 2\r\n" in stats


class NewestVictimSphinx(Sphinx):
    """Mutant: expires the newest closed segment instead of the oldest."""

    def choose_victim_segment(self, thread: int) -> int:
        return self.workers[thread].partition.log.closed[-1]


def test_victim_choice_mutant_loses_other_keys() -> None:
    s, c = _fifo_store(NewestVictimSphinx)
    for i in range(7):
        _set(s, c, b"k%d" % i)
    assert s.keys_by_thread()[0] != {b"k2", b"k3", b"k4", b"k5", b"k6"}


def test_item_larger_than_a_segment_is_refused() -> None:
    s, c = _fifo_store()
    _set(s, c, b"aa")
    big = b"set aa 0 0 300\r\n" + b"x" * 300 + b"\r\n"
    assert roundtrip(s, c, big + b"get aa\r\n") == b"SERVER_ERROR object too large for cache\r\nEND\r\n"


# -- check_invariants catches corruption -----------------------------------------------------------
def _filled() -> tuple[Sphinx, int]:
    s = Sphinx(threads=2, memory=8 * 1024, segment_size=512)
    c = s.connect()
    roundtrip(s, c, b"".join(b"set c%d 0 0 20\r\n%s\r\n" % (i, b"q" * 20) for i in range(40)))
    return s, c


def test_check_invariants_catches_an_index_pointing_mid_entry() -> None:
    s, _ = _filled()
    log = s.workers[0].partition.log
    key = next(iter(log.index))
    log.index[key] += 8
    with pytest.raises(AssertionError, match="not an entry start"):
        s.check_invariants()


def test_check_invariants_catches_an_index_pointing_at_another_key() -> None:
    s, _ = _filled()
    log = s.workers[1].partition.log
    a, b = list(log.index)[:2]
    log.index[a] = log.index[b]
    with pytest.raises(AssertionError, match="points at an entry of"):
        s.check_invariants()


def test_check_invariants_catches_broken_segment_accounting_and_stray_keys() -> None:
    s, _ = _filled()
    log = s.workers[0].partition.log
    log.free.append(log.current)
    with pytest.raises(AssertionError):
        s.check_invariants()
    s, _ = _filled()
    log0, log1 = s.workers[0].partition.log, s.workers[1].partition.log
    key = next(iter(log1.index))
    log0.index[key] = log1.index[key]
    with pytest.raises(AssertionError):
        s.check_invariants()


def test_check_invariants_catches_a_reply_slot_out_of_order() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=64 * 1024, ring_capacity=1)
    c = conn_on(s, 0)
    keys = [key_owned_by(s, 1, b"o", skip=i) for i in range(3)]
    s.send(c, b"".join(b"get %s\r\n" % k for k in keys))
    conn = s.connections[c]
    for _ in range(10):
        if len(conn.slots) == 3:
            break
        s.step()
    assert len(conn.slots) == 3
    s.check_invariants()
    conn.slots[0].seq, conn.slots[1].seq = conn.slots[1].seq, conn.slots[0].seq
    with pytest.raises(AssertionError, match="slot order"):
        s.check_invariants()


# -- determinism and the NIC modes ---------------------------------------------------------------
def test_same_seed_same_run_and_balance_mode_serves_everything() -> None:
    def run(seed: int, mode: str) -> tuple[bytes, list[int], list[int]]:
        s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, seed=seed,
                   nic_queues=2, irq_mode=mode)  # type: ignore[arg-type]
        conns = [s.connect() for _ in range(6)]
        out = b""
        for round_ in range(5):
            for i, c in enumerate(conns):
                s.send(c, b"set r%d 0 0 2\r\n%02d\r\nget r%d\r\n" % (i, round_, (i + 1) % 6))
            s.settle()
            s.check_invariants()
            out += b"".join(s.receive(c) for c in conns)
        return out, s.nic.counters.irqs, s.counters.executed_per_thread

    assert run(4, "affinity") == run(4, "affinity")
    balanced = run(4, "balance")
    assert balanced == run(4, "balance")
    assert balanced[0].count(b"STORED") == 30


# -- property: any thread count gives the one-thread answers ---------------------------------------
_keys = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"])
_command = st.one_of(
    st.tuples(st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend"]), _keys,
              st.integers(0, 3), st.binary(max_size=6).filter(lambda v: b"\r\n" not in v)).map(
        lambda t: b"%s %s %d 0 %d\r\n%s\r\n" % (t[0], t[1], t[2], len(t[3]), t[3])),
    st.tuples(st.sampled_from([b"incr", b"decr"]), _keys, st.integers(0, 20)).map(
        lambda t: b"%s %s %d\r\n" % t),
    st.tuples(st.sampled_from([b"delete", b"touch"]), _keys).map(
        lambda t: b"%s %s%s\r\n" % (t[0], t[1], b" 5" if t[0] == b"touch" else b"")),
    st.lists(_keys, min_size=1, max_size=5).map(lambda ks: b"get " + b" ".join(ks) + b"\r\n"),
    st.just(b"set n 0 0 2\r\n41\r\n"), st.just(b"bogus\r\n"), st.just(b"version\r\n"),
)


@given(st.lists(_command, max_size=25), st.integers(0, 2**16), st.integers(1, 7))
def test_four_threads_answer_like_one(commands: list[bytes], seed: int, cut: int) -> None:
    stream = b"".join(commands)
    one = Sphinx(threads=1, memory=MB, segment_size=MB)
    four = Sphinx(threads=4, memory=4 * MB, segment_size=MB, seed=seed, ring_capacity=2)
    c1, c4 = one.connect(), four.connect()
    expected = roundtrip(one, c1, stream)
    got = b""
    for i in range(0, len(stream), cut * 7):
        got += roundtrip(four, c4, stream[i : i + cut * 7])
    assert got == expected
