"""The real Sphinx server: its byte-moving layer against a stand-in core (in process),
then ``memoracle sphinx serve`` as a subprocess against real clients — pymemcache,
``memccapable`` — and against hostile ones (1,000 connections, clients that vanish
mid-request, floods of random bytes), after which every acknowledged write must still
be readable. The CLI's argument errors are checked too.
"""

from __future__ import annotations

import asyncio
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymemcache.client.base import Client  # type: ignore[import-untyped]

from memoracle.cli import main
from memoracle.sphinx.peers import ServerProcess, SocketKvServer, start_sphinx_server
from memoracle.sphinx.server import FEED_LINES, BackgroundServer, lines_to_feed
from peers import peer_missing

# --- the server layer, against a stand-in core ---------------------------------------


class StandInCore:
    """A tiny line protocol that satisfies spec.kv_api.KvServer: ``put K V`` -> ``OK``,
    ``get K`` -> ``V`` or ``MISS``, ``big N`` -> N bytes of ``x``, ``quit`` hangs up.
    It records how many bytes it was fed and which connections were disconnected."""

    def __init__(self) -> None:
        self.inputs: dict[int, bytearray] = {}
        self.outputs: dict[int, bytearray] = {}
        self.hung_up: set[int] = set()
        self.disconnected: list[int] = []
        self.store: dict[bytes, bytes] = {}
        self.bytes_fed = 0
        self.settles = 0

    def connect(self) -> int:
        conn = len(self.inputs)
        self.inputs[conn], self.outputs[conn] = bytearray(), bytearray()
        return conn

    def send(self, conn: int, data: bytes) -> None:
        if conn not in self.hung_up and conn not in self.disconnected:
            self.inputs[conn] += data
            self.bytes_fed += len(data)

    def settle(self) -> None:
        self.settles += 1
        for conn, buffer in self.inputs.items():
            while conn not in self.hung_up and b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                words = line.strip().split()
                if words[:1] == [b"put"] and len(words) == 3:
                    self.store[words[1]] = words[2]
                    self.outputs[conn] += b"OK\r\n"
                elif words[:1] == [b"get"] and len(words) == 2:
                    self.outputs[conn] += self.store.get(words[1], b"MISS") + b"\r\n"
                elif words[:1] == [b"big"] and len(words) == 2:
                    self.outputs[conn] += b"x" * int(words[1]) + b"\r\n"
                elif words == [b"quit"]:
                    self.hung_up.add(conn)
                else:
                    self.outputs[conn] += b"ERROR\r\n"

    def receive(self, conn: int) -> bytes:
        data = bytes(self.outputs[conn])
        self.outputs[conn].clear()
        return data

    def closed(self, conn: int) -> bool:
        return conn in self.hung_up

    def disconnect(self, conn: int) -> None:
        assert conn not in self.disconnected, f"connection {conn} disconnected twice"
        self.disconnected.append(conn)

    def advance_clock(self, seconds: int) -> None:
        raise NotImplementedError


class StandInServer(BackgroundServer):
    core: StandInCore


@pytest.fixture
def stand_in() -> Iterator[StandInServer]:
    server = StandInServer(StandInCore())
    yield server
    server.stop()


def _lines(got: bytes, count: int) -> bool:
    return got.count(b"\r\n") >= count


def test_server_moves_bytes_both_ways_and_batches_connections(stand_in: StandInServer) -> None:
    client = SocketKvServer("127.0.0.1", stand_in.port, quiet=2.0)
    a, b = client.connect(), client.connect()
    client.send(a, b"put k v1\r\nget k\r\n")
    assert client.read_until(a, lambda got: _lines(got, 2)) == b"OK\r\nv1\r\n"
    client.send(b, b"get k\r\nget nope\r\nbogus\r\n")
    assert client.read_until(b, lambda got: _lines(got, 3)) == b"v1\r\nMISS\r\nERROR\r\n"
    client.send(a, b"put k ")  # a request split across writes
    client.send(a, b"v2\r\nget k\r\n")
    assert client.read_until(a, lambda got: _lines(got, 2)) == b"OK\r\nv2\r\n"
    client.close()


def test_server_hangs_up_when_the_core_closes_after_flushing(stand_in: StandInServer) -> None:
    client = SocketKvServer("127.0.0.1", stand_in.port, quiet=2.0)
    conn = client.connect()
    client.send(conn, b"put q 1\r\nquit\r\nput q 2\r\n")
    assert client.read_until(conn, lambda got: False) == b"OK\r\n"
    assert client.closed(conn)
    assert stand_in.core.store[b"q"] == b"1"  # nothing after quit was fed
    assert stand_in.core.disconnected == [0]  # told once, after the hang-up


def test_client_leaving_mid_request_is_disconnected_once(stand_in: StandInServer) -> None:
    client = SocketKvServer("127.0.0.1", stand_in.port, quiet=2.0)
    conn = client.connect()
    client.send(conn, b"put half")
    client.disconnect(conn)
    deadline = time.monotonic() + 5
    while not stand_in.core.disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stand_in.core.disconnected == [0]


def test_half_closed_client_gets_its_replies_then_eof(stand_in: StandInServer) -> None:
    sock = socket.create_connection(("127.0.0.1", stand_in.port))
    sock.sendall(b"put h 1\r\nget h\r\n")
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(5)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    assert received == b"OK\r\n1\r\n"
    sock.close()


def test_a_client_that_never_reads_is_held_at_a_bounded_size(stand_in: StandInServer) -> None:
    """Requests whose replies are 64 KiB each, sent without ever reading: the server
    must stop feeding the core long before the client's requests would have produced
    hundreds of MiB, and must keep serving others meanwhile."""
    greedy = socket.create_connection(("127.0.0.1", stand_in.port))
    greedy.setblocking(False)
    request = b"big 65536\r\n" * 1000
    sent = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            sent += greedy.send(request)
        except BlockingIOError:
            time.sleep(0.05)
            if sent > 2_000_000:
                break
    fed_requests = stand_in.core.bytes_fed // len(b"big 65536\r\n")
    assert sent > 200_000, "the kernel buffers should accept at least this much"
    assert fed_requests * 65536 < 64 * 1024 * 1024, f"{fed_requests} requests fed to the core"
    # Once the kernel's buffers are full, the server holds its share and at most one
    # reply more (replies are fed one at a time near the share, not 32 at a time).
    (held,) = stand_in.server.clients.values()
    share = stand_in.server.share()
    deadline = time.monotonic() + 20
    while held.unsent_bytes < share and time.monotonic() < deadline:
        time.sleep(0.05)
    assert share <= held.unsent_bytes <= share + 65538, f"{held.unsent_bytes} held for a share of {share}"
    other = SocketKvServer("127.0.0.1", stand_in.port, quiet=2.0)
    conn = other.connect()
    other.send(conn, b"put o 1\r\nget o\r\n")
    assert other.read_until(conn, lambda got: _lines(got, 2)) == b"OK\r\n1\r\n"
    other.close()
    greedy.close()


def test_lines_fed_follow_the_room_left_and_the_recent_reply_size() -> None:
    assert lines_to_feed(10 * 2**20, 0.0) == FEED_LINES  # no estimate yet
    assert lines_to_feed(64 * 1024, 200.0) == FEED_LINES  # small replies: a full slice
    assert lines_to_feed(5 * 65538, 65538.0) == 5
    assert lines_to_feed(2**20, 900_000.0) == 1  # one large reply at a time
    assert lines_to_feed(100, 900_000.0) == 1  # never zero: the caller decides when to stop


# --- `memoracle sphinx serve` as a subprocess ----------------------------------------------


@pytest.fixture(scope="module")
def sphinx() -> Iterator[ServerProcess]:
    """One ``memoracle sphinx serve --threads 4`` for the module's tests."""
    server = start_sphinx_server(threads=4)
    yield server
    assert server.alive(), "the server died during the tests"
    server.stop()


def _client(server: ServerProcess, **options: object) -> Client:
    return Client((server.host, server.port), connect_timeout=5, timeout=10, **options)


def test_pymemcache_round_trips_every_command(sphinx: ServerProcess) -> None:
    mc = _client(sphinx)  # noreply on storage commands by default
    try:
        assert mc.version().startswith(b"1.6")
        assert mc.set("alpha", b"1") is True
        assert mc.get("alpha") == b"1"
        assert mc.set("beta", b"two", expire=100, noreply=False) is True
        assert mc.get_many(["alpha", "beta", "missing"]) == {"alpha": b"1", "beta": b"two"}
        value, unique = mc.gets("alpha")
        assert value == b"1" and unique is not None
        assert mc.cas("alpha", b"uno", unique, noreply=False) is True
        assert mc.cas("alpha", b"stale", unique, noreply=False) is False  # EXISTS
        assert mc.cas("absent", b"x", b"1", noreply=False) is None  # NOT_FOUND
        assert mc.get("alpha") == b"uno"
        assert mc.add("alpha", b"x", noreply=False) is False
        assert mc.add("gamma", b"g", noreply=False) is True
        assert mc.add("delta", b"d") is True  # noreply: always True
        assert mc.replace("absent", b"x", noreply=False) is False
        assert mc.replace("gamma", b"G", noreply=False) is True
        assert mc.append("gamma", b"!", noreply=False) is True
        assert mc.prepend("gamma", b"<", noreply=False) is True
        assert mc.append("absent", b"x", noreply=False) is False
        assert mc.get("gamma") == b"<G!"
        assert mc.get("delta") == b"d"
        mc.set("counter", b"10")
        assert mc.incr("counter", 5) == 15
        assert mc.decr("counter", 20) == 0
        assert mc.incr("absent", 1) is None
        assert mc.incr("counter", 7, noreply=True) is None
        assert mc.get("counter").rstrip() == b"7"  # memcached pads a shrunk number in place
        assert mc.touch("gamma", 100, noreply=False) is True
        assert mc.touch("absent", 100, noreply=False) is False
        # pymemcache has no gat/gats methods: its raw_command sends them.
        assert mc.raw_command("gat 200 gamma", "END\r\n") == b"VALUE gamma 0 3\r\n<G!\r\n"
        gats = mc.raw_command("gats 300 gamma absent", "END\r\n")
        assert re.fullmatch(rb"VALUE gamma 0 3 \d+\r\n<G!\r\n", gats), gats
        assert set(mc.gets_many(["alpha", "gamma"])) == {"alpha", "gamma"}
        assert mc.delete("gamma", noreply=False) is True
        assert mc.delete("gamma", noreply=False) is False
        mc.delete("delta")
        assert mc.get("delta") is None
        assert mc.set_many({"m1": b"1", "m2": b"2"}, noreply=False) == []
        stats = mc.stats()
        assert stats, "stats answered nothing"
        assert mc.flush_all(noreply=False) is True
        assert mc.get_many(["alpha", "beta", "m1", "m2", "counter"]) == {}
        mc.quit()
        assert mc.get("alpha") is None  # reconnects after quit
    finally:
        mc.close()


def test_memccapable_passes_all_27_ascii_tests(sphinx: ServerProcess) -> None:
    binary = shutil.which("memccapable")
    if binary is None:
        peer_missing("memccapable is not installed (Debian: libmemcached-tools)")
    result = subprocess.run(
        [binary, "-a", "-h", sphinx.host, "-p", str(sphinx.port)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    passes = [line for line in output.splitlines() if line.startswith("ascii ") and line.endswith("[pass]")]
    failures = [line for line in output.splitlines() if "[fail]" in line or "FAIL" in line]
    assert len(passes) == 27 and not failures and result.returncode == 0, output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--port", "abc"], "--port wants an integer"),
        (["--threads", "0"], "--threads must be between 1 and 256"),
        (["--memory", "lots"], "--memory wants a number of bytes"),
        (["--memory", "1m"], "is too small"),
        (["--seed", "-1"], "--seed must be non-negative"),
        (["--host", "no-such-host.invalid", "--port", "0"], "cannot listen on no-such-host.invalid"),
    ],
)
def test_cli_rejects_bad_arguments_with_exit_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sphinx", "serve", *arguments]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_cli_usage_errors_exit_2_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoracle", "sphinx", "serve", "--bogus"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert "--bogus" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_cli_port_in_use_exits_2(sphinx: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoracle", "sphinx", "serve", "--port", str(sphinx.port)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert f"port {sphinx.port} on 127.0.0.1 is already in use" in result.stderr, result.stderr


def test_sigterm_and_sigint_shut_down_cleanly() -> None:
    for stop in ("terminate", "interrupt"):
        server = start_sphinx_server(threads=2)
        client = SocketKvServer(server.host, server.port, quiet=5.0)
        conn = client.connect()
        client.send(conn, b"version\r\n")
        assert client.read_until(conn, lambda got: got.endswith(b"\r\n")).startswith(b"VERSION ")
        if stop == "terminate":
            server.process.terminate()
        else:
            server.process.send_signal(2)
        assert server.process.wait(10) == 0
        assert client.read_until(conn, lambda got: False) == b""
        assert client.closed(conn)
        client.close()
        server.stop()


# --- robustness ---------------------------------------------------------------------------


async def _set_then_get(host: str, port: int, key: bytes, value: bytes) -> tuple[bytes, bytes]:
    """Open a connection, set ``key``, get it back; the two replies."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        stored = await reader.readuntil(b"\r\n")
        writer.write(b"get %s\r\n" % key)
        got = await reader.readuntil(b"END\r\n")
        return stored, got
    finally:
        writer.close()


async def _many_connections(host: str, port: int, count: int) -> list[tuple[bytes, bytes]]:
    results = await asyncio.gather(
        *(_set_then_get(host, port, b"conn:%d" % i, b"value-%d" % i) for i in range(count))
    )
    return list(results)


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_hostile_clients_leave_every_acknowledged_write_readable() -> None:
    _raise_nofile(4096)  # the server, our child, inherits the raised limit
    server = start_sphinx_server(threads=4)
    host, port = server.host, server.port
    acknowledged: dict[bytes, bytes] = {}
    try:
        # 1. A thousand concurrent connections, one set and one get each.
        results = asyncio.run(_many_connections(host, port, 1000))
        for i, (stored, got) in enumerate(results):
            key, value = b"conn:%d" % i, b"value-%d" % i
            assert stored == b"STORED\r\n", (i, stored)
            assert got == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value), (i, got)
            acknowledged[key] = value

        # 2. Clients that vanish in the middle of a request.
        vanishing = SocketKvServer(host, port, quiet=0.05)
        for i in range(50):
            conn = vanishing.connect()
            vanishing.send(conn, b"set vanished:%d 0 0 100\r\n%s" % (i, b"v" * (i % 100)))
            vanishing.disconnect(conn)

        # 3. Floods of random bytes, three at once, one MiB each (replies read meanwhile).
        def flood(seed: int) -> bytes:
            rng = random.Random(seed)
            junk = bytes(rng.randrange(256) for _ in range(1 << 20))
            flooder = SocketKvServer(host, port, quiet=0.5, timeout=60)
            conn = flooder.connect()
            flooder.send(conn, junk)
            flooder.settle()
            reply = flooder.receive(conn)
            flooder.close()
            return reply

        with ThreadPoolExecutor(max_workers=3) as pool:
            replies = list(pool.map(flood, range(3)))
        for reply in replies:
            lines = reply.split(b"\r\n")[:-1]
            assert all(
                line == b"ERROR" or line.startswith((b"CLIENT_ERROR", b"SERVER_ERROR")) for line in lines
            ), reply[:400]

        # 4. After all that: still up, every acknowledged write readable, no half write stored.
        assert server.alive()
        checker = SocketKvServer(host, port, quiet=5.0)
        conn = checker.connect()
        checker.send(conn, b"version\r\n")
        assert checker.read_until(conn, lambda got: got.endswith(b"\r\n")).startswith(b"VERSION ")
        keys = sorted(acknowledged)
        for start in range(0, len(keys), 100):
            batch = keys[start : start + 100]
            checker.send(conn, b"get " + b" ".join(batch) + b"\r\n")
            reply = checker.read_until(conn, lambda got: got.endswith(b"END\r\n"))
            expected = b"".join(
                b"VALUE %s 0 %d\r\n%s\r\n" % (k, len(acknowledged[k]), acknowledged[k]) for k in batch
            )
            assert reply == expected + b"END\r\n", reply[:400]
        checker.send(conn, b"get " + b" ".join(b"vanished:%d" % i for i in range(50)) + b"\r\n")
        assert checker.read_until(conn, lambda got: got.endswith(b"END\r\n")) == b"END\r\n"
        checker.close()
    finally:
        server.stop()
