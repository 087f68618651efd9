"""A small faulty TCP proxy in front of a memcached-protocol server, for the tests of
``memoracle kv check``.

Each client connection gets its own upstream connection and a thread that forwards one
request at a time and reads its whole reply before the next (so faults can be placed
exactly). Well-formed requests only: at the first line it cannot frame with certainty (a
storage line with a bad key or numbers, a data block not ending in ``\\r\\n``) the
connection becomes a plain byte pipe, with no more faults.

Faults, each deterministic (every n-th occurrence, counted over the whole proxy):

- ``drop_every``: an acknowledged write is lost — every n-th ``set`` (with a reply) is
  answered ``STORED`` by the proxy and never reaches the server;
- ``stale_every``: a stale read — every n-th single-key ``get`` whose key's value has
  changed since an earlier hit is answered with that earlier hit;
- ``hang_every`` (with ``hang_keys``): a lost request — every n-th request naming a key
  that contains ``hang_keys`` reaches the server, but its reply never comes back.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field

_STORAGE = {b"set", b"add", b"replace", b"append", b"prepend", b"cas"}
_RETRIEVAL = {b"get", b"gets", b"gat", b"gats"}


@dataclass
class Faults:
    """The faults and their counters (shared by every connection of a proxy)."""

    drop_every: int = 0
    stale_every: int = 0
    hang_every: int = 0
    hang_keys: bytes = b""
    lock: threading.Lock = field(default_factory=threading.Lock)
    sets: int = 0
    gets: int = 0
    hangs: int = 0
    dropped: int = 0
    staled: int = 0
    hung: int = 0
    last_hit: dict[bytes, bytes] = field(default_factory=dict)  # key -> the latest hit seen
    older_hit: dict[bytes, bytes] = field(default_factory=dict)  # key -> a hit before that


class _Raw(Exception):
    """The request cannot be framed with certainty: pipe bytes from now on."""


class _Gone(Exception):
    """The upstream server closed the connection."""


def _frame(buffer: bytearray) -> tuple[bytes, bytes, bool] | None:
    """(request, command, expects a reply) at the front of ``buffer``, or None if incomplete."""
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > 4096:
            raise _Raw()
        return None
    line = bytes(buffer[: end + 1])
    tokens = line.split()
    command = tokens[0] if tokens else b""
    if command in _STORAGE:
        need = 7 if command == b"cas" else 6
        numbers = (tokens[2], tokens[3].removeprefix(b"-"), tokens[4]) if len(tokens) >= 5 else ()
        if len(tokens) not in (need - 1, need) or len(tokens[1]) > 250 or not all(t.isdigit() for t in numbers):
            raise _Raw()
        if len(tokens) == need and tokens[-1] != b"noreply":
            raise _Raw()
        size = int(tokens[4])
        total = end + 1 + size + 2
        if len(buffer) < total:
            return None
        if buffer[total - 2 : total] != b"\r\n":
            raise _Raw()
        request = bytes(buffer[:total])
        del buffer[:total]
        return request, command, tokens[-1] != b"noreply"
    del buffer[: end + 1]
    noreply = tokens[-1:] == [b"noreply"] and command in (b"delete", b"incr", b"decr", b"touch")
    return line, command, not noreply


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        faults = self.server.faults
        try:
            upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port), timeout=30)
        except OSError:
            return
        with upstream:
            pending = bytearray()
            replies = bytearray()
            try:
                while True:
                    try:
                        framed = _frame(pending)
                    except _Raw:
                        self._pipe(client, upstream, bytes(pending))
                        return
                    if framed is None:
                        chunk = client.recv(1 << 16)
                        if not chunk:
                            return
                        pending += chunk
                        continue
                    request, command, answered = framed
                    self._serve(client, upstream, replies, request, command, answered, faults)
            except (_Gone, OSError):
                return

    def _serve(self, client: socket.socket, upstream: socket.socket, replies: bytearray, request: bytes,
               command: bytes, answered: bool, faults: Faults) -> None:  # fmt: skip
        tokens = request.split(b"\r\n", 1)[0].split()
        key = tokens[1] if len(tokens) > 1 else b""
        with faults.lock:
            if command == b"set" and answered and faults.drop_every:
                faults.sets += 1
                if faults.sets % faults.drop_every == 0:
                    faults.dropped += 1
                    client.sendall(b"STORED\r\n")
                    return
            hang = False
            if faults.hang_every and faults.hang_keys and faults.hang_keys in key and answered:
                faults.hangs += 1
                hang = faults.hangs % faults.hang_every == 0
        upstream.sendall(request)
        if not answered:
            return
        reply = _read_reply(upstream, replies, command)
        if hang:
            with faults.lock:
                faults.hung += 1
            client.settimeout(60)
            while client.recv(1 << 16):  # never answer; wait for the client to give up
                pass
            raise _Gone()
        if command == b"get" and len(tokens) == 2 and reply.startswith(b"VALUE "):
            with faults.lock:
                if faults.last_hit.get(key) not in (None, reply):
                    faults.older_hit[key] = faults.last_hit[key]
                faults.last_hit[key] = reply
                if faults.stale_every and key in faults.older_hit:
                    faults.gets += 1
                    if faults.gets % faults.stale_every == 0:
                        faults.staled += 1
                        reply = faults.older_hit[key]
        client.sendall(reply)

    def _pipe(self, client: socket.socket, upstream: socket.socket, pending: bytes) -> None:
        if pending:
            upstream.sendall(pending)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(1 << 16):
                    sink.sendall(chunk)
            except OSError:
                pass
            finally:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(10)


def _read_reply(upstream: socket.socket, buffer: bytearray, command: bytes) -> bytes:
    def line() -> bytes:
        while (end := buffer.find(b"\r\n")) < 0:
            chunk = upstream.recv(1 << 16)
            if not chunk:
                raise _Gone()
            buffer.extend(chunk)
        out = bytes(buffer[: end + 2])
        del buffer[: end + 2]
        return out

    def exactly(count: int) -> bytes:
        while len(buffer) < count:
            chunk = upstream.recv(1 << 16)
            if not chunk:
                raise _Gone()
            buffer.extend(chunk)
        out = bytes(buffer[:count])
        del buffer[:count]
        return out

    first = line()
    if command not in _RETRIEVAL and command != b"stats":
        return first
    out = bytearray(first)
    current = first
    while current != b"END\r\n" and not current.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
        if current.startswith(b"VALUE "):
            out += exactly(int(current.split()[3]) + 2)
        current = line()
        out += current
    return bytes(out)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port: int, faults: Faults) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream_port = upstream_port
        self.faults = faults


class FaultyProxy:
    """The proxy (see the module docstring); ``port`` once started; a context manager."""

    def __init__(self, upstream_port: int, faults: Faults) -> None:
        self.faults = faults
        self._server = _Server(upstream_port, faults)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
