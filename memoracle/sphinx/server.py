"""A real TCP server in front of a :class:`spec.kv_api.KvServer` core (the Sphinx store).

One asyncio event loop accepts every connection; each accepted socket becomes
``core.connect()`` and the core binds it to one of its emulated threads the way
SO_REUSEPORT would (by the hash of its flow: a core whose ``connect`` takes a ``flow``,
as Sphinx's does, is given the client's real IPv4 address and port), so the
partitioning, forwarding and reply ordering that the real server exercises are exactly
the emulated store's. :class:`BackgroundServer` runs the same server on a thread, for
harnesses that hold the core object (a mutant, a stand-in).

One *pump* per loop iteration moves bytes: every connection that received bytes gets
its next slice (up to :data:`FEED_LIMIT` bytes and :data:`FEED_LINES` lines) through
``core.send``, then ``core.settle()`` runs the
store until everything received is answered (one settle for all connections, so
concurrent clients are batched), then whatever ``core.receive`` returns is written to
each socket; a socket is closed once ``core.closed`` says the store hung up (after its
last reply is flushed), and ``core.disconnect`` is called when the client goes away.

Bounded buffers (what memcached does, and what this server does instead):

- memcached stops reading a connection while it cannot write to it. Here, when a
  socket's kernel buffer and the transport's buffer hold more than
  :data:`WRITE_HIGH_WATER` bytes of unread replies, the server stops reading that
  socket and stops feeding its bytes to the core until the client has read down to
  :data:`WRITE_LOW_WATER`. A client that floods requests and never reads is therefore
  held at a bounded number of bytes (the kernel's socket buffers fill and the client
  blocks), and other clients are unaffected.
- Bytes received but not yet fed to the core are at most :data:`INPUT_HIGH_WATER`
  per connection: past that the server stops reading the socket.
- Everything else (a line that never ends, garbage) is the core's protocol decision:
  it answers ``ERROR``/``CLIENT_ERROR`` or hangs up, as memcached does.

Choices made where the paper is silent: ``exptime`` uses the wall clock (Unix seconds,
via the core's ``clock`` argument) since real clients send real times; a client's
end-of-file (half-close) lets the server answer what was already received and then
close, as memcached does; an exception escaping the core is printed to stderr and the
connections of that pump are closed, the server stays up; SIGINT and SIGTERM close the
listener and every connection and return normally.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
import threading
import traceback
from typing import Callable

from spec.kv_api import KvServer

#: Most bytes of one connection fed to the core per pump (fairness between connections).
FEED_LIMIT = 64 * 1024
#: Most lines of one connection fed per pump: bounds the replies one pump can produce
#: (a pipelined ``get`` of a large value answers many bytes for a few), so that a client
#: that does not read is stopped after at most this many requests past the high water.
FEED_LINES = 32
#: Received-but-unfed bytes per connection above which the socket is not read.
INPUT_HIGH_WATER = 256 * 1024
#: Unread reply bytes (in the transport) above which a connection's requests wait.
WRITE_HIGH_WATER = 1024 * 1024
WRITE_LOW_WATER = 256 * 1024
#: Pending connections the listening socket queues (memcached's default backlog).
BACKLOG = 1024


class _Client(asyncio.Protocol):
    """One accepted socket, bound to one connection of the core."""

    def __init__(self, server: SphinxServer) -> None:
        self.server = server
        self.conn = -1
        self.transport: asyncio.Transport | None = None
        self.inbox = bytearray()
        self.reading_paused = False
        self.writing_paused = False
        self.eof = False
        self.gone = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        self.conn = self.server.connect(transport.get_extra_info("peername"))
        self.server.clients[self.conn] = self

    def data_received(self, data: bytes) -> None:
        if self.gone:
            return
        self.inbox += data
        if len(self.inbox) >= INPUT_HIGH_WATER:
            self._pause_reading()
        self.server.mark(self.conn)

    def eof_received(self) -> bool:
        self.eof = True
        self.server.mark(self.conn)
        return True  # keep the socket open to write the last replies

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.maybe_resume_reading()
        self.server.mark(self.conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gone:
            self.gone = True
            self.server.forget(self.conn)

    def take_input(self) -> bytes:
        """The next slice of the inbox (removed from it): at most :data:`FEED_LIMIT`
        bytes and at most :data:`FEED_LINES` lines."""
        end = min(len(self.inbox), FEED_LIMIT)
        position = 0
        for _ in range(FEED_LINES):
            newline = self.inbox.find(b"\n", position, end)
            if newline < 0:
                position = end
                break
            position = newline + 1
        chunk = bytes(self.inbox[:position])
        del self.inbox[:position]
        self.maybe_resume_reading()
        return chunk

    def maybe_resume_reading(self) -> None:
        """Read the socket again if nothing holds it back."""
        if self.reading_paused and not self.writing_paused and len(self.inbox) < INPUT_HIGH_WATER:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def hang_up(self) -> None:
        """Close the socket after the replies already written are flushed."""
        self.gone = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.server.forget(self.conn)


class SphinxServer:
    """Serves ``core`` on ``host:port`` (port 0 = a free port, see :attr:`port`).

    Guarantees: bytes of one connection reach the core in the order received; replies
    are written in the order the core produced them; a connection the core closed gets
    no more bytes fed and is closed after its replies; ``core.disconnect`` is called
    exactly once for every connection whose client went away first; the bytes held per
    connection are bounded as the module docstring describes.
    """

    def __init__(self, core: KvServer, host: str = "127.0.0.1", port: int = 11211) -> None:
        self.core = core
        self.host, self.port = host, port
        self.clients: dict[int, _Client] = {}
        self._dirty: dict[int, None] = {}  # insertion-ordered set: deterministic pumping order
        self._pump_scheduled = False
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._takes_flow = "flow" in inspect.signature(core.connect).parameters

    async def start(self) -> int:
        """Listen; return the port (raises ``OSError`` if the address is in use)."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Client(self), self.host, self.port, reuse_address=True, backlog=BACKLOG
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def connect(self, peer: object) -> int:
        """A new connection of the core for a client at ``peer``; a core whose
        ``connect`` takes a ``flow`` (Sphinx's does) gets the client's real (IPv4, port),
        so the connection lands on the thread SO_REUSEPORT would pick for that flow."""
        if self._takes_flow and isinstance(peer, tuple) and len(peer) == 2 and ":" not in str(peer[0]):
            connect_flow: Callable[..., int] = self.core.connect
            return connect_flow(flow=(str(peer[0]), int(peer[1])))
        return self.core.connect()

    def mark(self, conn: int) -> None:
        """Connection ``conn`` has something to do; pump at the next loop iteration."""
        self._dirty[conn] = None
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def forget(self, conn: int) -> None:
        """The socket of ``conn`` is gone (client or server side): tell the core, once."""
        client = self.clients.pop(conn, None)
        self._dirty.pop(conn, None)
        if client is not None:
            self.core.disconnect(conn)

    def _pump(self) -> None:
        self._pump_scheduled = False
        fed: list[_Client] = []
        dirty, self._dirty = self._dirty, {}
        try:
            for conn in dirty:
                client = self.clients.get(conn)
                if client is None or client.gone or client.writing_paused:
                    continue
                chunk = client.take_input()
                if chunk:
                    self.core.send(conn, chunk)
                fed.append(client)
            self.core.settle()
            for client in fed:
                self._deliver(client)
        except Exception:  # a bug in the core must not take every client down
            sys.stderr.write("sphinx: internal error, closing the connections involved\n")
            traceback.print_exc(file=sys.stderr)
            for client in fed:
                client.hang_up()
        if self._dirty and not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _deliver(self, client: _Client) -> None:
        conn = client.conn
        output = self.core.receive(conn)
        transport = client.transport
        if output and transport is not None and not transport.is_closing():
            transport.write(output)
        if self.core.closed(conn):
            client.hang_up()
        elif client.inbox:
            self._dirty[conn] = None
        elif client.eof:
            client.hang_up()

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then close the listener and every connection."""
        if self._server is None:
            await self.start()
        await stop.wait()
        self.close()

    def close(self) -> None:
        """Stop listening and close every connection (the core is told of each)."""
        if self._server is not None:
            self._server.close()
        for client in list(self.clients.values()):
            client.hang_up()


def serve(
    core: KvServer, host: str, port: int, *, on_listening: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:  # fmt: skip
    """Run a :class:`SphinxServer` on a fresh event loop until SIGINT or SIGTERM (or
    ``stop``, if given and set). ``on_listening(port)`` is called once listening.
    Raises ``OSError`` if the address cannot be bound (in use, unknown host)."""

    async def main() -> None:
        server = SphinxServer(core, host, port)
        listening_port = await server.start()
        done = stop if stop is not None else asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, done.set)
            except (ValueError, RuntimeError):  # not the main thread: rely on ``stop``
                pass
        if on_listening is not None:
            on_listening(listening_port)
        await server.serve_until(done)
        await asyncio.sleep(0)  # let the transports close

    asyncio.run(main())


class BackgroundServer:
    """A :class:`SphinxServer` over ``core`` on a daemon thread's own event loop, for
    harnesses that drive a core object they hold (a mutant, a stand-in) over real
    sockets. Listening once constructed (:attr:`port`); :meth:`stop` closes everything.
    The core is only touched from the server's thread while it runs."""

    def __init__(self, core: KvServer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.core = core
        self.host = host
        self._loop = asyncio.new_event_loop()
        self.server = SphinxServer(core, host, port)
        self.port = self._loop.run_until_complete(self.server.start())
        self._thread = threading.Thread(target=self._loop.run_forever, name="sphinx-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection, stop the loop and join the thread."""
        if not self._thread.is_alive():
            return
        closed = threading.Event()

        def close() -> None:
            self.server.close()
            closed.set()

        self._loop.call_soon_threadsafe(close)
        closed.wait(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
