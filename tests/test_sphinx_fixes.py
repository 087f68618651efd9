"""Regression tests of Sphinx: ``cmd_set`` counts a bad data chunk; ``stats`` waits for
the connection's forwarded requests; hang-ups keep exactly the replies memcached
transmits; disconnected connections are forgotten (no leak); numbers of thousands of
digits are parsed as C does, not handed to ``int()`` whole."""

from __future__ import annotations

import random

import pytest

from impl.sphinx import Sphinx
from spec.kv_model import ModelServer
from sphinx_helpers import conn_on, roundtrip

MB = 1024 * 1024
K251 = b"k" * 251




def key_owned_by(s: Sphinx, thread: int, prefix: bytes = b"key") -> bytes:
    i = 0
    while s.owner_of(prefix + b"%d" % i) != thread:
        i += 1
    return prefix + b"%d" % i


def stat(reply: bytes, name: bytes) -> int:
    for line in reply.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    raise AssertionError(f"no STAT {name!r} in {reply[:200]!r}")


# -- cmd_set counts a bad data chunk ---------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 4])
def test_bad_data_chunk_counts_in_cmd_set(threads: int) -> None:
    s = Sphinx(threads=threads, memory=4 * MB, segment_size=64 * 1024)
    c = s.connect()
    reply = roundtrip(s, c, b"set a 0 0 2\r\nxyz\r\nset b 0 0 1 noreply\r\nxy\r\nstats\r\n")
    assert reply.startswith(b"CLIENT_ERROR bad data chunk\r\nERROR\r\nERROR\r\nSTAT ")
    assert stat(reply, b"cmd_set") == 2  # memcached 1.6.18: set_cmds is counted before the check


def test_stats_waits_for_the_forwarded_requests_before_it() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = conn_on(s, 0)
    remote = [key_owned_by(s, t) for t in (1, 2, 3)]
    request = b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in remote) + b"get " + b" ".join(remote) + b"\r\n"
    reply = roundtrip(s, c, request + b"stats\r\nget " + remote[0] + b"\r\n")
    assert stat(reply, b"cmd_set") == 3 and stat(reply, b"get_hits") == 3
    assert stat(reply, b"forwarded_requests") == 6  # the get after stats ran after it
    assert reply.endswith(b"END\r\nVALUE %s 0 1\r\nx\r\nEND\r\n" % remote[0])


# -- hang-ups: what memcached transmits before it closes ----------------------------------------

#: (request, memcached 1.6.18's reply) — measured; ``{k}`` is a key whose owner varies.
HANG_UPS = [
    (b"verbosity 1\r\nquit\r\n", b"OK\r\n"),
    (b"verbosity 1\r\nGET / HTTP/1.0\r\n", b""),
    (b"verbosity 1\r\n" + b"x" * 2100, b""),
    (b"set {k} 0 0 1\r\nx\r\nGET / HTTP/1.0\r\n", b""),
    (b"set {k} 0 0 1\r\nx\r\nget {k}\r\nverbosity 1\r\nGET / HTTP/1.0\r\n", b"STORED\r\nVALUE {k} 0 1\r\nx\r\nEND\r\n"),
    (b"get {k}\r\nverbosity 1\r\n" + b"x" * 2100, b"END\r\n"),
    (b"verbosity 1\r\nmn\r\nverbosity 1\r\nGET / HTTP/1.0\r\n", b"OK\r\nMN\r\n"),
    (b"set {k} 0 0 1\r\nx\r\nget {k}\r\nquit\r\nverbosity 1\r\n", b"STORED\r\nVALUE {k} 0 1\r\nx\r\nEND\r\n"),
]


@pytest.mark.parametrize("owner", range(4))
@pytest.mark.parametrize("request_bytes, expected", HANG_UPS)
def test_hang_up_keeps_the_replies_memcached_transmits(request_bytes: bytes, expected: bytes, owner: int) -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = conn_on(s, 0)
    key = key_owned_by(s, owner)
    request = request_bytes.replace(b"{k}", key)
    assert roundtrip(s, c, request) == expected.replace(b"{k}", key)
    assert s.closed(c)
    model = ModelServer(threads=4, memory=4 * MB, segment_size=64 * 1024)
    m = model.connect()
    model.send(m, request)
    assert model.receive(m) == expected.replace(b"{k}", key) and model.closed(m)


@pytest.mark.parametrize("owner", range(4))
def test_bad_key_retrieval_discards_only_what_was_not_transmitted(owner: int) -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    c = conn_on(s, 0)
    key = key_owned_by(s, owner)
    reply = roundtrip(s, c, b"set %s 0 0 1\r\nx\r\nverbosity 1\r\nget %s %s\r\n" % (key, key, K251))
    assert reply == b"CLIENT_ERROR bad command line format\r\n"
    reply = roundtrip(s, c, b"get %s\r\nverbosity 1\r\ngat 0 %s %s\r\nstats\r\n" % (key, key, K251))
    assert reply.startswith(b"VALUE %s 0 1\r\nx\r\nEND\r\nCLIENT_ERROR bad command line format\r\nSTAT " % key)
    assert stat(reply, b"get_hits") == 2 and stat(reply, b"touch_hits") == 1  # the key before the bad one ran
    assert not s.closed(c)


def test_a_reply_transmitted_in_an_earlier_quantum_survives_a_hang_up() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=64 * 1024)
    c = s.connect()
    s.send(c, b"verbosity 1\r\n")
    s.settle()
    s.send(c, b"GET / HTTP/1.0\r\n")
    s.settle()
    assert s.receive(c) == b"OK\r\n" and s.closed(c)


# -- no connection leak -------------------------------------------------------------------------


def test_ten_thousand_connections_leave_no_state_behind() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, seed=3)
    rng = random.Random(3)
    for i in range(10_000):
        c = s.connect()
        roll = rng.random()
        if roll < 0.3:
            s.send(c, b"set k%d 0 0 1\r\nx\r\nget k%d\r\n" % (i % 50, i % 50))
            s.disconnect(c)  # packets still queued in the NIC, dropped at service time
        elif roll < 0.5:
            s.send(c, b"get k%d k%d\r\nquit\r\n" % (i % 50, (i + 1) % 50))
            s.settle()
            assert s.closed(c)
            s.disconnect(c)
        elif roll < 0.6:
            s.send(c, b"GET / HTTP/1.0\r\n")
            s.step()  # perhaps not yet served
            s.disconnect(c)
        else:
            s.disconnect(c)
        if i % 1000 == 0:
            s.settle()
            s.check_invariants()
    s.settle()
    s.check_invariants()
    assert s.connections == {} and s._by_flow == {} and s.nic.flow_count() == 0
    assert all(not w.ready for w in s.workers)
    assert s.open_connections == 0 and s.total_connections == 10_000
    new = s.connect()
    assert new == 10_000  # ids are never reused
    assert s.closed(9_999) and s.receive(9_999) == b""  # a forgotten id stays valid
    s.send(9_999, b"version\r\n")  # ignored
    with pytest.raises(KeyError):
        s.receive(10_001)


def test_a_hung_up_connection_is_kept_until_its_client_disconnects() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=64 * 1024)
    c = s.connect()
    s.send(c, b"verbosity 1\r\nquit\r\n")
    s.settle()
    assert c in s.connections and s.closed(c)  # the client still reads its replies
    assert s.receive(c) == b"OK\r\n"
    s.disconnect(c)
    assert c not in s.connections and s.nic.flow_count() == 0
    s.check_invariants()


def test_check_invariants_catches_a_leaked_connection() -> None:
    s = Sphinx(threads=2, memory=4 * MB, segment_size=64 * 1024)
    c = s.connect()
    kept = s.connections[c]
    s.disconnect(c)
    s.connections[c] = kept  # a leak
    with pytest.raises(AssertionError, match="disconnected but is kept"):
        s.check_invariants()


# -- NIC steering ---------------------------------------------------------------------------


def traffic(s: Sphinx, connections: int = 64) -> None:
    conns = [s.connect() for _ in range(connections)]
    for round_ in range(3):
        for i, c in enumerate(conns):
            s.send(c, b"set st%d 0 0 2\r\nab\r\nget st%d\r\n" % (i, (i + round_) % connections))
        s.settle()
    assert all(s.receive(c).count(b"STORED") == 3 for c in conns)


def test_reuseport_steering_delivers_almost_every_packet_across_cores() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024)
    traffic(s)
    packets = sum(s.nic.counters.rx_packets)
    assert s.nic.counters.cross_core_deliveries > packets // 2


@pytest.mark.parametrize("queues", [4, 2, 1])
def test_incoming_cpu_steering_delivers_on_the_socket_thread(queues: int) -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, nic_queues=queues, steering="incoming_cpu")
    traffic(s)
    s.check_invariants()
    assert sum(s.nic.counters.rx_packets) > 0 and s.nic.counters.cross_core_deliveries == 0
    threads = {c.thread for c in s.connections.values()}
    assert threads == set(range(queues))  # a thread without a queue gets no connection
    for c in s.connections.values():
        assert c.thread == s.nic.irq_core[s.nic.rx_queue_of(c.fid)]


def test_incoming_cpu_steering_follows_the_irq_affinity() -> None:
    s = Sphinx(threads=4, memory=4 * MB, segment_size=64 * 1024, steering="incoming_cpu")
    for queue in range(4):
        s.nic.set_affinity(queue, 1 << (3 - queue))  # queue q on core 3 - q
    traffic(s)
    assert s.nic.counters.cross_core_deliveries == 0
    assert all(c.thread == 3 - s.nic.rx_queue_of(c.fid) for c in s.connections.values())


def test_unknown_steering_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown steering"):
        Sphinx(threads=2, memory=4 * MB, segment_size=64 * 1024, steering="random")  # type: ignore[arg-type]


def test_numbers_of_thousands_of_digits_are_parsed_as_c_does() -> None:
    """CPython's ``int()`` refuses over 4,300 digits: such a number used to escape the
    parser as ValueError (and close every connection of that server pump). The model,
    fed the same bytes, answers the same."""
    zeros, nines = b"0" * 5000, b"9" * 5000
    data = (
        b"set n 0 0 1\r\n5\r\ngat " + zeros + b"7 n\r\nincr n " + zeros + b"3\r\nincr n " + nines + b"\r\n"
        b"set m " + zeros + b"3 0 " + zeros + b"2\r\nab\r\nget m\r\n"
        b"set v 0 0 5000\r\n" + nines + b"\r\nincr v 1\r\n"
    )
    expected = (
        b"STORED\r\nVALUE n 0 1\r\n5\r\nEND\r\n8\r\nCLIENT_ERROR invalid numeric delta argument\r\n"
        b"STORED\r\nVALUE m 3 2\r\nab\r\nEND\r\n"
        b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    )
    s = Sphinx(2)
    assert roundtrip(s, s.connect(), data) == expected
    model = ModelServer(2)
    conn = model.connect()
    model.send(conn, data)
    assert model.receive(conn) == expected

