"""Measuring the cost table's measured entries on this machine (``memoracle sphinx calibrate``).

- **memcached's busy path**: Debian's memcached with one worker thread (``-t 1``) on
  loopback; 32 connections each send one request of the experiment's shape (30-byte key,
  200-byte value), then every reply is read, round after round, so the worker always
  has a ready socket and never sleeps. Its CPU time (utime + stime from
  ``/proc/PID/stat``) per request is the busy path, for gets and for sets.
- **memcached's closed path**: one connection at a time, one request, wait for the reply:
  the worker sleeps and is woken for every request. Closed − busy is a wake-up's CPU
  (``context_switch``).
- **eventfd**: ``os.eventfd_write`` and ``os.eventfd_read`` in a loop, minus the same
  loop calling a builtin (the interpreter's share).

The busy path is split among the entries by the shares of :data:`BUSY_SHARES` (an
assumption: the measurement gives their sum). CPU time is counted in clock ticks (10 ms
here), so a measurement of N requests is precise to about 10 ms / N per request. Raises
:class:`memoracle.sphinx.peers.PeerUnavailable` when memcached is not installed.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from memoracle.sphinx.sim.costs import Costs

#: How the measured busy path is split among the entries (the sum is what is measured).
BUSY_SHARES = {"epoll": 0.10, "recv": 0.20, "parse": 0.04, "hash": 0.006, "lookup": 0.019, "send": 0.35,
               "rx_packet": 0.25}  # fmt: skip
#: Connections of the busy measurement.
BUSY_CONNECTIONS = 32


def _cpu_ns(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e9 / os.sysconf("SC_CLK_TCK")


def _request(kind: str, key: bytes, value: bytes) -> tuple[bytes, bytes]:
    if kind == "set":
        return b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value), b"STORED\r\n"
    return b"get %s\r\n" % key, b"END\r\n"


def _read_until(sock: socket.socket, ending: bytes) -> None:
    buffer = b""
    while not buffer.endswith(ending):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("memcached closed the connection")
        buffer += chunk


def measure_memcached(requests: int) -> dict[str, float]:
    """memcached's CPU ns per request: busy and closed, get and set."""
    from memoracle.sphinx.peers import start_memcached, workload_key

    value = b"v" * 200
    keys = [workload_key(index) for index in range(1000)]
    out: dict[str, float] = {}
    with start_memcached(extra_args=["-t", "1"]) as server:
        pid = server.process.pid
        socks = [socket.create_connection((server.host, server.port)) for _ in range(BUSY_CONNECTIONS)]
        try:
            for sock in socks:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for index, key in enumerate(keys):  # preload, so that gets hit
                data, ending = _request("set", key, value)
                socks[0].sendall(data)
                _read_until(socks[0], ending)
            for kind in ("get", "set"):
                rounds = max(1, requests // BUSY_CONNECTIONS)
                before = _cpu_ns(pid)
                for r in range(rounds):
                    endings = []
                    for i, sock in enumerate(socks):
                        data, ending = _request(kind, keys[(r * BUSY_CONNECTIONS + i) % len(keys)], value)
                        sock.sendall(data)
                        endings.append(ending)
                    for sock, ending in zip(socks, endings):
                        _read_until(sock, ending)
                out[f"memcached_busy_{kind}"] = (_cpu_ns(pid) - before) / (rounds * BUSY_CONNECTIONS)
                before = _cpu_ns(pid)
                for r in range(requests):
                    data, ending = _request(kind, keys[r % len(keys)], value)
                    socks[0].sendall(data)
                    _read_until(socks[0], ending)
                out[f"memcached_closed_{kind}"] = (_cpu_ns(pid) - before) / requests
        finally:
            for sock in socks:
                sock.close()
    return out


def measure_eventfd(calls: int = 200_000) -> dict[str, float]:
    """ns per ``eventfd_write`` and per ``eventfd_read`` (best of 5, interpreter share removed)."""
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        def best(body: Any) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter_ns()
                body()
                times.append((time.perf_counter_ns() - started) / calls)
            return min(times)

        def baseline() -> None:
            call = abs
            for _ in range(calls):
                call(1)

        def writes() -> None:
            write = os.eventfd_write
            for _ in range(calls):
                write(fd, 1)

        def write_reads() -> None:
            write, read = os.eventfd_write, os.eventfd_read
            for _ in range(calls):
                write(fd, 1)
                read(fd)

        base, w, wr = best(baseline), best(writes), best(write_reads)
        return {"eventfd_write": w - base, "eventfd_read": wr - w - base}
    finally:
        os.close(fd)


def calibrate(requests: int = 20_000) -> dict[str, Any]:
    """Measure, and derive what the table's measured entries would be."""
    measured = measure_memcached(requests)
    measured.update(measure_eventfd())
    busy = (measured["memcached_busy_get"] + measured["memcached_busy_set"]) / 2
    closed = (measured["memcached_closed_get"] + measured["memcached_closed_set"]) / 2
    entries = {name: round(busy * share) for name, share in BUSY_SHARES.items()}
    entries["store"] = round(entries["lookup"] + measured["memcached_busy_set"] - measured["memcached_busy_get"])
    entries["store"] = max(entries["store"], entries["lookup"])
    entries["context_switch"] = max(0, round(closed - busy))
    entries["eventfd_write"] = round(measured["eventfd_write"])
    entries["eventfd_read"] = round(measured["eventfd_read"])
    table = Costs().as_dict()
    return {"measured": measured, "entries": entries, "table": {name: table[name] for name in entries},
            "load_average": os.getloadavg()[0]}  # fmt: skip


__all__ = ["BUSY_SHARES", "calibrate", "measure_eventfd", "measure_memcached"]
