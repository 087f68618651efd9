"""Real memcached-protocol servers as peers: starting them, talking to them, loading them.

- :func:`start_memcached` starts Debian's ``memcached`` on a free loopback port
  (``memcached -p PORT -U 0 -l 127.0.0.1``, plus ``-u <user>`` when running as root,
  which memcached otherwise refuses); :func:`start_sphinx_server` starts
  ``memoracle sphinx serve --port 0`` and learns its port from the line it prints.
  Both return a :class:`ServerProcess` that stops its process when closed.
- :class:`SocketKvServer` satisfies :class:`spec.kv_api.KvServer` over real TCP
  sockets, so that a harness written for the emulated store drives a real server too.
  A real server answers asynchronously, so "settled" means *quiet*: every connection has
  either hung up or sent nothing for ``quiet`` seconds. :meth:`SocketKvServer.read_until`
  is the faster alternative when the caller knows what a complete reply looks like.
  Sending interleaves reading, so a client that floods a server which answers every
  line never deadlocks against the server's own back-pressure.
- :func:`run_fixed_rate` is an open-loop load generator: requests are scheduled at fixed
  intervals whatever the replies (over several connections, round-robin), and each
  latency runs from the *scheduled* send time to the end of the reply, so a server that
  stalls is charged for every request that queued behind the stall (no coordinated
  omission). Latencies go into a :class:`LatencyHistogram` (log buckets, 1% wide).

Choices made where nothing dictates them: the quiet period defaults to 50 ms (memcached
answers a request in microseconds; 50 ms of silence on loopback means it is done even on
a loaded machine), and a server is considered up once a TCP connection succeeds.
"""

from __future__ import annotations

import asyncio
import getpass
import math
import random
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable, Sequence

LOOPBACK = "127.0.0.1"


class PeerUnavailable(RuntimeError):
    """The peer server cannot be started here (binary missing, or it did not come up)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds within ``timeout`` seconds
    (gives up early if ``process`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@dataclass
class ServerProcess:
    """A server running as a child process on ``host:port``; :meth:`stop` ends it
    (SIGTERM, then SIGKILL after ``grace`` seconds). Usable as a context manager."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    grace: float = 5.0

    def stop(self) -> int | None:
        """Stop the process (if still running) and return its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def memcached_binary() -> str | None:
    """Path of the ``memcached`` executable, or None if it is not installed."""
    return shutil.which("memcached")


def start_memcached(host: str = LOOPBACK, extra_args: Sequence[str] = (), attempts: int = 5) -> ServerProcess:
    """Start a real memcached on a free port of ``host`` (TCP only, default 64 MiB).

    Raises :class:`PeerUnavailable` if memcached is not installed or does not come up;
    retries on another port if the chosen one was taken in the meantime.
    """
    binary = memcached_binary()
    if binary is None:
        raise PeerUnavailable("memcached is not installed (Debian: apt-get install memcached)")
    user = ["-u", getpass.getuser()] if os.geteuid() == 0 else []
    last_error = ""
    for _ in range(attempts):
        port = free_port(host)
        command = [binary, "-p", str(port), "-U", "0", "-l", host, *user, *extra_args]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait_for_port(host, port, 5.0, process):
            return ServerProcess("memcached", host, port, process)
        process.kill()
        _, stderr = process.communicate()
        last_error = stderr.decode(errors="replace").strip()
    raise PeerUnavailable(f"memcached did not start: {last_error or 'no reason given'}")


def start_sphinx_server(
    threads: int = 4, memory: int | None = None, seed: int = 0, host: str = LOOPBACK, timeout: float = 30.0,
    nofile: tuple[int, int] | None = None,
) -> ServerProcess:  # fmt: skip
    """Start ``memoracle sphinx serve --port 0`` as a child process (this interpreter)
    and return it once it has printed its listening line (which names the port).
    ``nofile``: the child's ``RLIMIT_NOFILE`` (soft, hard) as it starts."""
    command = [sys.executable, "-m", "memoracle", "sphinx", "serve", "--port", "0", "--host", host]
    command += ["--threads", str(threads), "--seed", str(seed)]
    if memory is not None:
        command += ["--memory", str(memory)]

    def limit_descriptors() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit_descriptors)
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        if not selector.select(deadline - time.monotonic()):
            break
        chunk = os.read(process.stdout.fileno(), 1)
        if not chunk:
            break
        line += chunk
    selector.close()
    text = line.decode(errors="replace").strip()
    prefix = f"sphinx: listening on {host}:"
    if not text.startswith(prefix):
        process.kill()
        _, stderr = process.communicate()
        reason = stderr.decode(errors="replace").strip() or text or "no output"
        raise PeerUnavailable(f"sphinx serve did not start: {reason}")
    port = int(text[len(prefix) :].split(",")[0])
    return ServerProcess("sphinx", host, port, process)


@dataclass
class _Connection:
    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    eof: bool = False
    dropped: bool = False


class SocketKvServer:
    """:class:`spec.kv_api.KvServer` over TCP connections to a real server at
    ``host:port``.

    Guarantees: bytes of :meth:`send` reach the server in order (reading the replies
    meanwhile, so a flood never deadlocks); :meth:`receive` returns every byte read so far
    and never blocks for more than a non-blocking poll; :meth:`closed` is true once the
    server hung up (EOF or reset) or the client disconnected; sends to a closed
    connection are ignored, as the Protocol requires. The clock of a real server cannot
    be moved: :meth:`advance_clock` raises ``NotImplementedError``.
    """

    def __init__(self, host: str, port: int, *, quiet: float = 0.05, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.quiet, self.timeout = quiet, timeout
        self._connections: dict[int, _Connection] = {}
        self._next_id = 0

    # --- the KvServer Protocol ---------------------------------------------------------
    def connect(self) -> int:
        """Open a TCP connection; ids count up from 0 and are never reused."""
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self._next_id
        self._next_id += 1
        self._connections[conn] = _Connection(sock)
        return conn

    def send(self, conn: int, data: bytes) -> None:
        """Write all of ``data``, reading replies while the server is not accepting more;
        a connection reset while writing marks the connection closed."""
        c = self._connections[conn]
        if c.eof or c.dropped:
            return
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while view and not c.eof:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server at {self.host}:{self.port} stopped reading")
                for _, events in selector.select(0.1):
                    if events & selectors.EVENT_READ:
                        self._read_available(c)
                    if events & selectors.EVENT_WRITE and view:
                        try:
                            sent = c.sock.send(view[:65536])
                        except BlockingIOError:
                            continue
                        except OSError:
                            c.eof = True
                            break
                        view = view[sent:]

    def settle(self) -> None:
        """Read until every open connection is quiet for ``quiet`` seconds or hung up."""
        open_conns = [c for c in self._connections.values() if not (c.eof or c.dropped)]
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            for c in open_conns:
                selector.register(c.sock, selectors.EVENT_READ, c)
            while selector.get_map() and time.monotonic() < deadline:
                ready = selector.select(self.quiet)
                if not ready:
                    return
                for key, _ in ready:
                    c = key.data
                    self._read_available(c)
                    if c.eof:
                        selector.unregister(c.sock)

    def receive(self, conn: int) -> bytes:
        """Everything read from ``conn`` since the last call (polls once, never waits)."""
        c = self._connections[conn]
        if not (c.eof or c.dropped):
            self._read_available(c)
        data = bytes(c.received)
        c.received.clear()
        return data

    def closed(self, conn: int) -> bool:
        """Whether the server hung up on ``conn`` (or the client disconnected it)."""
        c = self._connections[conn]
        if not (c.eof or c.dropped):
            self._read_available(c)
        return c.eof or c.dropped

    def disconnect(self, conn: int) -> None:
        """Close the client's socket (in the middle of a request, if it so happens)."""
        c = self._connections[conn]
        if not c.dropped:
            c.dropped = True
            c.sock.close()

    def advance_clock(self, seconds: int) -> None:
        """A real server's clock cannot be moved."""
        raise NotImplementedError("the clock of a real server cannot be moved")

    # --- beyond the Protocol -----------------------------------------------------------
    def read_until(self, conn: int, complete: Callable[[bytes], bool], timeout: float | None = None) -> bytes:
        """Wait until ``complete(bytes read so far)`` holds, the server hangs up, or
        ``timeout`` (default: the quiet period) passes with nothing new; then return and
        clear what was read, like :meth:`receive`."""
        c = self._connections[conn]
        quiet = self.quiet if timeout is None else timeout
        with selectors.DefaultSelector() as selector:
            if not (c.eof or c.dropped):
                selector.register(c.sock, selectors.EVENT_READ)
            while not (c.eof or c.dropped) and not complete(bytes(c.received)):
                if not selector.select(quiet):
                    break
                self._read_available(c)
        return self.receive(conn)

    def close(self) -> None:
        """Disconnect every connection."""
        for conn in self._connections:
            self.disconnect(conn)

    def _read_available(self, c: _Connection) -> None:
        while True:
            try:
                chunk = c.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                c.eof = True
                return
            if not chunk:
                c.eof = True
                return
            c.received += chunk


# --- the fixed-arrival-rate load generator ------------------------------------------------


class LatencyHistogram:
    """Latencies in logarithmic buckets, each ``precision`` (1%) wider than the last,
    from 1 µs up; a percentile is the upper edge of its bucket, so it over-reports by
    at most ``precision``. Memory is one counter per occupied bucket."""

    def __init__(self, precision: float = 0.01) -> None:
        self._log_base = math.log1p(precision)
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.max_seconds = 0.0

    def record(self, seconds: float) -> None:
        """Add one latency (negative or sub-microsecond latencies count as 1 µs)."""
        micros = max(seconds * 1e6, 1.0)
        bucket = int(math.log(micros) / self._log_base)
        self._buckets[bucket] = self._buckets.get(bucket, 0) + 1
        self.count += 1
        self.max_seconds = max(self.max_seconds, seconds)

    def percentile(self, share: float) -> float:
        """The latency (seconds) that ``share`` (0 < share ≤ 1) of the samples do not
        exceed; 0.0 for an empty histogram."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(share * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(math.exp((bucket + 1) * self._log_base) / 1e6, max(self.max_seconds, 1e-6))
        return self.max_seconds


@dataclass
class LoadResult:
    """What one fixed-rate run measured. ``errors`` counts wrong replies, replies that
    never came (within the drain timeout) and requests that could not be sent."""

    target_rps: float
    scheduled: int
    answered: int
    errors: int
    seconds: float
    histogram: LatencyHistogram
    hits: int = 0
    misses: int = 0

    @property
    def throughput_rps(self) -> float:
        """Replies received per second of the sending period."""
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, share: float) -> float:
        """The ``share`` percentile of latency, in milliseconds."""
        return self.histogram.percentile(share) * 1e3


def workload_key(index: int, key_size: int = 30) -> bytes:
    """The ``index``-th key of the benchmark's key space, exactly ``key_size`` bytes."""
    return f"key:{index:0{key_size - 4}d}".encode()


async def _read_reply(reader: asyncio.StreamReader) -> str:
    """Read one reply to a ``get`` or ``set``: ``"stored"``, ``"hit"``, ``"miss"``, or
    ``"error"`` for anything else (the line is consumed)."""
    line = await reader.readuntil(b"\r\n")
    if line == b"STORED\r\n":
        return "stored"
    if line == b"END\r\n":
        return "miss"
    if not line.startswith(b"VALUE "):
        return "error"
    size = int(line.split()[3])
    await reader.readexactly(size + 2)
    return "hit" if await reader.readuntil(b"\r\n") == b"END\r\n" else "error"


async def _fixed_rate(
    host: str, port: int, rate: float, seconds: float, connections: int, keys: int,
    key_size: int, value_size: int, get_share: float, seed: int, drain_timeout: float,
) -> LoadResult:  # fmt: skip
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    value = bytes(rng.randrange(97, 123) for _ in range(value_size))
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    for _, writer in streams:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Preload every key (pipelined on the first connection), so that gets hit.
    reader0, writer0 = streams[0]
    for index in range(keys):
        writer0.write(b"set %s 0 0 %d\r\n%s\r\n" % (workload_key(index, key_size), value_size, value))
    await writer0.drain()
    for _ in range(keys):
        if (await reader0.readuntil(b"\r\n")) != b"STORED\r\n":
            raise RuntimeError(f"{host}:{port} refused to preload the key space")

    total = int(rate * seconds)
    histogram = LatencyHistogram()
    pending: list[deque[tuple[str, float]]] = [deque() for _ in streams]
    counts = {"answered": 0, "errors": 0, "hits": 0, "misses": 0}

    async def read_replies(slot: int) -> None:
        reader = streams[slot][0]
        while True:
            try:
                outcome = await _read_reply(reader)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
                return
            if not pending[slot]:  # a reply nobody asked for
                counts["errors"] += 1
                continue
            kind, scheduled = pending[slot].popleft()
            histogram.record(loop.time() - scheduled)
            counts["answered"] += 1
            expected = ("stored",) if kind == "set" else ("hit", "miss")
            counts["errors"] += outcome not in expected
            counts["hits"] += outcome == "hit"
            counts["misses"] += outcome == "miss"

    readers = [asyncio.create_task(read_replies(slot)) for slot in range(len(streams))]
    start = loop.time() + 0.01
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        slot = index % len(streams)
        key = workload_key(rng.randrange(keys), key_size)
        writer = streams[slot][1]
        if writer.is_closing():
            counts["errors"] += 1
            continue
        if rng.random() < get_share:
            pending[slot].append(("get", scheduled))
            writer.write(b"get %s\r\n" % key)
        else:
            pending[slot].append(("set", scheduled))
            writer.write(b"set %s 0 0 %d\r\n%s\r\n" % (key, value_size, value))
    sending_seconds = max(loop.time() - start, total / rate)
    deadline = loop.time() + drain_timeout
    while any(pending) and loop.time() < deadline and not all(task.done() for task in readers):
        await asyncio.sleep(0.005)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    counts["errors"] += sum(len(queue) for queue in pending)
    for _, writer in streams:
        writer.close()
    return LoadResult(
        target_rps=rate, scheduled=total, answered=counts["answered"], errors=counts["errors"],
        seconds=sending_seconds, histogram=histogram, hits=counts["hits"], misses=counts["misses"],
    )  # fmt: skip


def run_fixed_rate(
    host: str, port: int, *, rate: float = 5000.0, seconds: float = 3.0, connections: int = 8,
    keys: int = 1000, key_size: int = 30, value_size: int = 200, get_share: float = 0.9,
    seed: int = 0, drain_timeout: float = 5.0,
) -> LoadResult:  # fmt: skip
    """Load ``host:port`` open-loop: ``rate`` requests per second for ``seconds``,
    round-robin over ``connections`` connections, ``get_share`` gets of a uniformly
    chosen key (the rest ``set``s of ``value_size`` bytes) over ``keys`` keys of
    ``key_size`` bytes, preloaded first. The request sequence depends only on ``seed``.

    Requests are written at their scheduled times whatever the replies; a latency runs
    from the scheduled time to the end of the reply. Replies still missing
    ``drain_timeout`` seconds after the last send count as errors.
    """
    if rate <= 0 or seconds <= 0 or connections < 1 or keys < 1 or key_size < 5:
        raise ValueError("rate, seconds, connections, keys must be positive and key_size >= 5")
    return asyncio.run(
        _fixed_rate(host, port, rate, seconds, connections, keys, key_size, value_size,
                    get_share, seed, drain_timeout)
    )  # fmt: skip


__all__ = [
    "LOOPBACK",
    "LatencyHistogram",
    "LoadResult",
    "PeerUnavailable",
    "ServerProcess",
    "SocketKvServer",
    "free_port",
    "run_fixed_rate",
    "start_memcached",
    "start_sphinx_server",
    "wait_for_port",
    "workload_key",
]
