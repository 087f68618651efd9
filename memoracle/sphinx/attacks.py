"""Hostile clients against any memcached-protocol server, and what they cost the server.

Each attack runs against a server *process* (its pid is needed to read its memory) on
``host:port`` and returns an :class:`AttackResult`:

- :func:`multiget_attack`: stores a large value under one key (acknowledged), then sends
  one ``get`` line naming that key many times — ``get b b b ...``, a few kilobytes that
  ask for gigabytes — and reads the reply at full speed, checking every block of it.
- :func:`noread_attack`: many clients each pipeline thousands of ``get`` s of a large
  value and never read a byte; after a while they all leave.
- :func:`long_line_attack`: one client sends a ``get`` line of many megabytes without
  its newline, then the newline.

During every attack a *probe* connection sends ``version`` at a fixed interval and
records each round trip (an unanswered probe counts as the probe timeout), and a
sampler reads the server's resident set size (``VmRSS`` of ``/proc/PID/status``) at a
fixed interval. After the attack, every write acknowledged before it is read back.
Everything is bounded: counts are fixed, every wait has a timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

#: Largest value memcached stores by default is 1 MiB including its item header;
#: 900 KB stays well inside it.
LARGE_VALUE = 900_000
#: How long a ``version`` probe waits for its reply before counting as unanswered.
PROBE_TIMEOUT = 10.0


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (``VmRSS``), in bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


class _RssSampler(threading.Thread):
    """Reads ``pid``'s RSS every ``interval`` seconds until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = rss_bytes(pid)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self._halt.set()
        self.join(5)
        return max(self.peak, rss_bytes(self.pid))


class _VersionProbe(threading.Thread):
    """Sends ``version`` every ``interval`` seconds on its own connection and records
    each round trip in seconds (:data:`PROBE_TIMEOUT` for one never answered)."""

    def __init__(self, host: str, port: int, interval: float = 0.02) -> None:
        super().__init__(name="version-probe", daemon=True)
        self.interval = interval
        self.latencies: list[float] = []
        self.unanswered = 0
        self._halt = threading.Event()
        self._sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self) -> None:
        received = b""
        try:
            while not self._halt.wait(self.interval):
                started = time.monotonic()
                self._sock.sendall(b"version\r\n")
                while b"\r\n" not in received:
                    chunk = self._sock.recv(4096)
                    if not chunk:
                        raise ConnectionError("the server closed the probe connection")
                    received += chunk
                received = received.split(b"\r\n", 1)[1]
                self.latencies.append(time.monotonic() - started)
        except OSError:  # a timeout or a reset: this probe is lost, and so are the rest
            self.unanswered += 1
            self.latencies.append(PROBE_TIMEOUT)

    def stop(self) -> None:
        self._halt.set()
        self.join(PROBE_TIMEOUT + 5)
        self._sock.close()


@dataclass
class AttackResult:
    """What one attack cost the server. RSS figures are bytes; latencies seconds."""

    rss_before: int
    rss_peak: int
    rss_after: int
    version_latencies: list[float] = field(default_factory=list)
    unanswered_probes: int = 0
    lost_writes: list[bytes] = field(default_factory=list)
    reply_ok: bool = True
    detail: str = ""

    @property
    def growth_mib(self) -> float:
        """Peak RSS growth during the attack, MiB."""
        return max(0, self.rss_peak - self.rss_before) / 2**20

    @property
    def growth_after_mib(self) -> float:
        """RSS growth left once the attack is over, MiB."""
        return max(0, self.rss_after - self.rss_before) / 2**20

    @property
    def worst_version_ms(self) -> float:
        """The slowest ``version`` round trip during the attack, ms."""
        return max(self.version_latencies, default=0.0) * 1e3


def _connect(host: str, port: int, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_line(sock: socket.socket, pending: bytearray) -> bytes:
    while b"\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        pending += chunk
    line, _, rest = bytes(pending).partition(b"\r\n")
    pending[:] = rest
    return line


def store_acknowledged(host: str, port: int, items: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """``set`` every item (waiting for each reply); the items answered ``STORED``."""
    acknowledged: dict[bytes, bytes] = {}
    with _connect(host, port) as sock:
        pending = bytearray()
        for key, value in items.items():
            sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
            if _read_line(sock, pending) == b"STORED":
                acknowledged[key] = value
    return acknowledged


def lost_writes(host: str, port: int, acknowledged: dict[bytes, bytes]) -> list[bytes]:
    """The keys of ``acknowledged`` whose value does not read back as written."""
    lost: list[bytes] = []
    with _connect(host, port) as sock:
        pending = bytearray()
        for key, value in acknowledged.items():
            sock.sendall(b"get %s\r\n" % key)
            line = _read_line(sock, pending)
            if line == b"END":
                lost.append(key)
                continue
            size = int(line.split()[3])
            while len(pending) < size + 2:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                pending += chunk
            data = bytes(pending[:size])
            del pending[: size + 2]
            if data != value or _read_line(sock, pending) != b"END":
                lost.append(key)
    return lost


def _pattern(size: int, seed: int) -> bytes:
    """``size`` bytes that differ from one seed to another (not one repeated byte)."""
    block = bytes((seed * 131 + i * 7) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


class _Attack:
    """The common frame: acknowledged writes, RSS sampler and version probe around a
    body; the writes are read back at the end."""

    def __init__(self, host: str, port: int, pid: int) -> None:
        self.host, self.port, self.pid = host, port, pid
        items = {b"ack:%d" % i: _pattern(100 + 37 * i, i) for i in range(20)}
        items[b"b"] = _pattern(LARGE_VALUE, 99)
        self.acknowledged = store_acknowledged(host, port, items)
        self.result = AttackResult(rss_before=rss_bytes(pid), rss_peak=0, rss_after=0)
        self._sampler = _RssSampler(pid)
        self._probe = _VersionProbe(host, port)

    def __enter__(self) -> _Attack:
        self._sampler.start()
        self._probe.start()
        return self

    def finish(self, settle: float) -> AttackResult:
        """Stop probing, wait ``settle`` seconds for the server to release what the
        attack held, then read RSS and the acknowledged writes back."""
        self._probe.stop()
        self.result.rss_peak = self._sampler.stop()
        time.sleep(settle)
        self.result.rss_after = rss_bytes(self.pid)
        self.result.version_latencies = self._probe.latencies
        self.result.unanswered_probes = self._probe.unanswered
        self.result.lost_writes = lost_writes(self.host, self.port, self.acknowledged)
        if len(self.acknowledged) != 21:
            self.result.lost_writes.append(b"(a write before the attack was not acknowledged)")
        return self.result

    def __exit__(self, *exc_info: object) -> None:
        self._probe.stop()
        self._sampler.stop()


def multiget_attack(
    host: str, port: int, pid: int, repeats: int = 2000, timeout: float = 120.0, settle: float = 1.0
) -> AttackResult:
    """``get`` + ``" b" * repeats`` for a 900 KB ``b``, the reply read at full speed and
    checked block by block (``reply_ok``)."""
    with _Attack(host, port, pid) as attack:
        value = attack.acknowledged.get(b"b", b"")
        block = b"VALUE b 0 %d\r\n%s\r\n" % (len(value), value)
        with _connect(host, port, timeout) as sock:
            sock.sendall(b"get" + b" b" * repeats + b"\r\n")
            pending = bytearray()
            blocks = 0
            deadline = time.monotonic() + timeout
            ok = True
            while blocks < repeats and time.monotonic() < deadline:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                pending += chunk
                while len(pending) >= len(block):
                    if pending[: len(block)] != block:
                        ok = False
                        break
                    del pending[: len(block)]
                    blocks += 1
                if not ok:
                    break
            while ok and blocks == repeats and len(pending) < 5 and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                pending += chunk
            attack.result.reply_ok = ok and blocks == repeats and bytes(pending) == b"END\r\n"
            attack.result.detail = f"{blocks} of {repeats} blocks read"
        return attack.finish(settle)


def noread_attack(
    host: str, port: int, pid: int, clients: int = 24, requests: int = 5000, hold: float = 3.0,
    settle: float = 1.0,
) -> AttackResult:  # fmt: skip
    """``clients`` connections each send ``requests`` pipelined ``get b`` (900 KB) and
    read nothing for ``hold`` seconds, then leave. ``rss_after`` is read ``settle``
    seconds after they left."""
    with _Attack(host, port, pid) as attack:
        socks = [_connect(host, port) for _ in range(clients)]
        burst = b"get b\r\n" * requests
        for sock in socks:  # fits in the kernel's socket buffers: sendall returns
            sock.settimeout(30.0)
            sock.sendall(burst)
        time.sleep(hold)
        for sock in socks:
            sock.close()
        attack.result.detail = f"{clients} clients x {requests} gets"
        return attack.finish(settle)


def long_line_attack(
    host: str, port: int, pid: int, megabytes: int = 64, settle: float = 1.0, timeout: float = 120.0
) -> AttackResult:
    """``get `` + ``megabytes`` MiB of ``a`` without a newline, then ``\\r\\n``; the
    reply must be ``CLIENT_ERROR bad command line format`` (the key is over 250 bytes)."""
    with _Attack(host, port, pid) as attack:
        with _connect(host, port, timeout) as sock:
            chunk = b"a" * (1 << 20)
            sock.sendall(b"get ")
            for _ in range(megabytes):
                sock.sendall(chunk)
            sock.sendall(b"\r\n")
            pending = bytearray()
            try:
                line = _read_line(sock, pending)
            except OSError as error:
                line = repr(error).encode()
            attack.result.reply_ok = line == b"CLIENT_ERROR bad command line format"
            attack.result.detail = line[:80].decode(errors="replace")
        return attack.finish(settle)


__all__ = [
    "AttackResult",
    "LARGE_VALUE",
    "PROBE_TIMEOUT",
    "long_line_attack",
    "lost_writes",
    "multiget_attack",
    "noread_attack",
    "rss_bytes",
    "store_acknowledged",
]
