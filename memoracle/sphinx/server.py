"""A real TCP server in front of a :class:`spec.kv_api.KvServer` core (the Sphinx store).

One asyncio event loop accepts every connection; each accepted socket becomes
``core.connect()`` and the core binds it to one of its emulated threads the way
SO_REUSEPORT would (by the hash of its flow: a core whose ``connect`` takes a ``flow``,
as Sphinx's does, is given the client's real IPv4 address and port), so the
partitioning, forwarding and reply ordering that the real server exercises are exactly
the emulated store's. :class:`BackgroundServer` runs the same server on a thread, for
harnesses that hold the core object (a mutant, a stand-in).

The server does its own non-blocking socket I/O on the loop's selector (``add_reader``,
``add_writer``) rather than through asyncio transports, so that it decides what is held
in memory: one *pump* per loop iteration gives every connection with received bytes its
next slice (up to :data:`FEED_LIMIT` bytes and :data:`FEED_LINES` lines) through
``core.send``, runs ``core.settle()`` once for all of them (concurrent clients are
batched), then takes each connection's replies and writes them. Replies are written with
scatter-gather ``sendmsg`` straight from the parts the core hands out: a core with
``receive_parts`` (:class:`spec.kv_api.PartsKvServer`, as Sphinx) hands out its stored
values by reference, so a value is copied only by the kernel, into the socket; other
cores' ``receive`` bytes are written as they are. A socket is closed once ``core.closed``
says the store hung up (after its last reply is sent), and ``core.disconnect`` is called
when the client goes away.

Memory, bounded per server (what memcached does, and what this server does):

- *Unsent replies.* memcached stops reading a connection while it cannot write to it.
  Here a connection's *unsent* bytes are those its replies hold that the kernel has not
  accepted (a stored value counts its full size, though it is only referenced). All
  connections share :data:`REPLY_BUDGET`: a connection's share is the budget divided
  among the connections holding unsent bytes, never below :data:`MIN_REPLY_SHARE`.
  While its unsent bytes reach its share a connection gets none of its requests fed to
  the core and its socket is not read, until its client reads; below it, each pump feeds
  as many lines as the connection's recent replies say fit (:func:`lines_to_feed`), so a
  client that floods requests and never reads holds about its share plus one reply (its
  first slice excepted, before there is an estimate), the kernel's socket buffers fill
  and block it, and other clients are unaffected.
  Replies that reference stored values cost a few dozen bytes each whatever the value's
  size, so one ``get`` naming a large value thousands of times holds thousands of
  references, not gigabytes.
- *Received bytes* not yet fed to the core are at most :data:`INPUT_HIGH_WATER` per
  connection: the socket is not read past that.
- Everything else (a line that never ends, garbage) is the core's protocol decision:
  it answers ``ERROR``/``CLIENT_ERROR`` or hangs up, as memcached does; Sphinx, like
  memcached, buffers a ``get`` line until its newline, however long (its search for the
  newline resumes where it stopped, so the cost is linear in the line).
- *File descriptors.* :func:`serve` raises the soft ``RLIMIT_NOFILE`` to the hard limit
  (as memcached raises it to its connection limit). When ``accept`` fails (EMFILE, out of
  descriptors, above all; also ENFILE, ENOBUFS, ENOMEM) the server stops accepting until
  one of its connections closes or :data:`ACCEPT_RETRY_SECONDS` pass, keeps serving the
  connections it has, and says so on stderr at most once a second (with the number of
  failures since its last line), never with a traceback.

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
import resource
import signal
import socket
import sys
import threading
import traceback
from collections import deque
from typing import Callable, Sequence

from spec.kv_api import KvServer, ReplyBuffer

#: Most bytes of one connection fed to the core per pump (fairness between connections).
FEED_LIMIT = 64 * 1024
#: Most lines of one connection fed per pump (see :func:`lines_to_feed`).
FEED_LINES = 32
#: Most received-but-unfed bytes per connection (the socket is not read past them).
INPUT_HIGH_WATER = 64 * 1024
#: Unsent reply bytes all connections may hold together before they are held back.
REPLY_BUDGET = 16 * 1024 * 1024
#: The least share of :data:`REPLY_BUDGET` a connection gets, however many share it.
MIN_REPLY_SHARE = 64 * 1024
#: Most buffers and most bytes written to one socket per loop iteration (one ``sendmsg``;
#: IOV_MAX is 1024): a client reading a huge reply gets it in slices, between which
#: every other connection is served.
SEND_PARTS = 64
SEND_BYTES = 256 * 1024
#: Parts shorter than this are copied together into one buffer of the ``sendmsg``
#: (cheaper than an iovec each); longer ones are written from where they are.
COALESCE_BELOW = 4096
#: Pending connections the listening socket queues (memcached's default backlog).
BACKLOG = 1024
#: Connections accepted per readiness event of the listening socket.
ACCEPT_BATCH = 64
#: After an accept failed for want of resources, when to try again at the latest.
ACCEPT_RETRY_SECONDS = 0.1
_Part = bytes | ReplyBuffer


def raise_nofile_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now
    in force (unchanged if the system refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def lines_to_feed(room: int, reply_estimate: float) -> int:
    """How many lines to feed a connection with ``room`` bytes left of its share, whose
    lines have lately produced ``reply_estimate`` bytes of reply each: as many as the
    estimate says fit, at least one, at most :data:`FEED_LINES` (all of them while there
    is no estimate yet). So back-pressure takes effect per reply, not per slice: a client
    pipelining ``get`` s of a large value gets one run at a time near its share."""
    if reply_estimate <= 0:
        return FEED_LINES
    return max(1, min(FEED_LINES, int(room // reply_estimate)))


class ThrottledLog:
    """Writes a line about a recurring event at most once per ``interval`` seconds of
    ``clock``: :meth:`note` counts an occurrence and, if the last line is ``interval``
    old (or there is none), writes ``line(occurrences since the last line)``."""

    def __init__(self, write: Callable[[str], object], clock: Callable[[], float], interval: float = 1.0) -> None:
        self.write, self.clock, self.interval = write, clock, interval
        self.pending = 0  # occurrences not yet reported
        self.lines = 0
        self._last: float | None = None

    def note(self, line: Callable[[int], str]) -> bool:
        """Count one occurrence; returns whether a line was written for it."""
        self.pending += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self.write(line(self.pending))
        self.pending = 0
        self.lines += 1
        self._last = now
        return True


class _Client:
    """One accepted socket, bound to one connection of the core."""

    __slots__ = (
        "sock", "fd", "conn", "inbox", "unsent", "head_offset", "unsent_bytes",
        "reading", "writing", "eof", "gone", "closing", "lines_fed", "reply_estimate",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, conn: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.conn = conn
        self.inbox = bytearray()
        self.unsent: deque[_Part] = deque()  # replies the kernel has not accepted yet
        self.head_offset = 0  # bytes of unsent[0] already sent
        self.unsent_bytes = 0
        self.reading = False  # registered with the selector for reading
        self.writing = False  # registered for writing (the kernel refused some bytes)
        self.eof = False  # the client half-closed: answer what was received, then close
        self.gone = False  # the core connection is disconnected; nothing more is fed
        self.closing = False  # close the socket once the unsent bytes are sent
        self.lines_fed = 0  # complete lines in the slice fed by the current pump
        self.reply_estimate = 0.0  # bytes of reply per line fed, a moving average

    def take_input(self, lines: int) -> bytes:
        """The next slice of the inbox (removed from it): at most :data:`FEED_LIMIT`
        bytes and at most ``lines`` lines (counted in :attr:`lines_fed`)."""
        end = min(len(self.inbox), FEED_LIMIT)
        position = 0
        self.lines_fed = 0
        for _ in range(lines):
            newline = self.inbox.find(b"\n", position, end)
            if newline < 0:
                position = end
                break
            position = newline + 1
            self.lines_fed += 1
        chunk = bytes(self.inbox[:position])
        del self.inbox[:position]
        return chunk


class SphinxServer:
    """Serves ``core`` on ``host:port`` (port 0 = a free port, see :attr:`port`).

    Guarantees: bytes of one connection reach the core in the order received; replies
    are written in the order the core produced them; a connection the core closed gets
    no more bytes fed and is closed after its replies; ``core.disconnect`` is called
    exactly once for every connection whose client went away first; the bytes held are
    bounded per connection and per server as the module docstring describes.
    """

    def __init__(self, core: KvServer, host: str = "127.0.0.1", port: int = 11211) -> None:
        self.core = core
        self.host, self.port = host, port
        self.clients: dict[int, _Client] = {}
        self._dirty: dict[int, None] = {}  # insertion-ordered set: deterministic pumping order
        self._pump_scheduled = False
        self._listener: socket.socket | None = None
        self._accepting = False
        self._retry: asyncio.TimerHandle | None = None
        self._accept_log: ThrottledLog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._takes_flow = "flow" in inspect.signature(core.connect).parameters
        receive_parts = getattr(core, "receive_parts", None)
        self._receive_parts: Callable[[int], Sequence[_Part]] | None = receive_parts
        #: Unsent reply bytes of all connections, and how many connections hold some.
        self.unsent_total = 0
        self.writers = 0

    # -- listening and accepting --------------------------------------------------------
    async def start(self) -> int:
        """Listen; return the port (raises ``OSError`` if the address is in use or the
        host is unknown)."""
        self._loop = asyncio.get_running_loop()
        infos = await self._loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        ipv4 = [info for info in infos if info[0] == socket.AF_INET]
        family, kind, proto, _, address = (ipv4 or infos)[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(BACKLOG)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._start_accepting()
        return self.port

    def _start_accepting(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._accepting and self._listener is not None and self._loop is not None:
            self._accepting = True
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                self._accept_failed(error)
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            client = _Client(sock, self.connect(peer))
            self.clients[client.conn] = client
            self._update_reading(client)

    def _accept_failed(self, error: OSError) -> None:
        """Out of descriptors or memory (or another accept error): stop accepting until
        a connection closes or a short delay passes; one line on stderr a second at most."""
        assert self._listener is not None and self._loop is not None
        if self._accept_log is None:
            self._accept_log = ThrottledLog(sys.stderr.write, self._loop.time)
        reason = error.strerror or str(error)
        self._accept_log.note(
            lambda failures: f"sphinx: cannot accept connections: {reason} ({len(self.clients)} open, "
            f"{failures} failed accepts since the last message); still serving\n"
        )
        self._accepting = False
        self._loop.remove_reader(self._listener.fileno())
        self._retry = self._loop.call_later(ACCEPT_RETRY_SECONDS, self._start_accepting)

    def connect(self, peer: object) -> int:
        """A new connection of the core for a client at ``peer``; a core whose
        ``connect`` takes a ``flow`` (Sphinx's does) gets the client's real (IPv4, port),
        so the connection lands on the thread SO_REUSEPORT would pick for that flow."""
        if self._takes_flow and isinstance(peer, tuple) and len(peer) == 2 and ":" not in str(peer[0]):
            connect_flow: Callable[..., int] = self.core.connect
            return connect_flow(flow=(str(peer[0]), int(peer[1])))
        return self.core.connect()

    # -- budget ---------------------------------------------------------------------------
    def share(self) -> int:
        """The unsent reply bytes one connection may hold before it is held back."""
        return max(MIN_REPLY_SHARE, REPLY_BUDGET // max(1, self.writers))

    def _may_feed(self, client: _Client) -> bool:
        return client.unsent_bytes < self.share()

    # -- reading ----------------------------------------------------------------------------
    def _update_reading(self, client: _Client) -> None:
        """Read the socket exactly while nothing holds it back."""
        assert self._loop is not None
        wanted = (
            not (client.eof or client.gone or client.closing)
            and len(client.inbox) < INPUT_HIGH_WATER
            and self._may_feed(client)
        )
        if wanted and not client.reading:
            client.reading = True
            self._loop.add_reader(client.fd, self._readable, client)
        elif client.reading and not wanted:
            client.reading = False
            self._loop.remove_reader(client.fd)

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(INPUT_HIGH_WATER - len(client.inbox))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._lost(client)
            return
        if data:
            client.inbox += data
        else:
            client.eof = True
        self._update_reading(client)
        self.mark(client.conn)

    # -- writing ----------------------------------------------------------------------------
    def _queue(self, client: _Client, parts: Sequence[_Part]) -> int:
        """Append ``parts`` to ``client``'s unsent replies; returns their bytes."""
        added = 0
        for part in parts:
            size = len(part)
            if size:
                client.unsent.append(part)
                added += size
        if added:
            if not client.unsent_bytes:
                self.writers += 1
            client.unsent_bytes += added
            self.unsent_total += added
        return added

    def _sent(self, client: _Client, count: int) -> None:
        """``count`` more bytes of ``client``'s unsent parts were accepted by the kernel."""
        client.unsent_bytes -= count
        self.unsent_total -= count
        if not client.unsent_bytes:
            self.writers -= 1
        unsent = client.unsent
        count += client.head_offset
        while unsent and count >= len(unsent[0]):
            count -= len(unsent.popleft())
        client.head_offset = count

    def _flush(self, client: _Client) -> None:
        """Write the next slice of ``client``'s unsent parts (at most :data:`SEND_PARTS`
        parts and :data:`SEND_BYTES` bytes, as much of it as the kernel accepts; stored
        values are viewed only here, for the ``sendmsg`` call), then watch for
        writability if any is left; close the socket once everything is sent if it is
        closing."""
        assert self._loop is not None
        unsent = client.unsent
        if unsent:
            buffers: list[bytes | bytearray | memoryview] = []
            small: bytearray | None = None  # the buffer small parts are gathered into
            room = SEND_BYTES
            offset = client.head_offset
            for part in unsent:
                view = part if isinstance(part, bytes) else part.view()
                if offset or len(view) > room:
                    view = memoryview(view)[offset : offset + room]
                    offset = 0
                room -= len(view)
                if len(view) < COALESCE_BELOW:
                    if small is None:
                        small = bytearray()
                        buffers.append(small)
                    small += view
                else:
                    buffers.append(view)
                    small = None
                if room <= 0 or len(buffers) >= SEND_PARTS:
                    break
            try:
                sent = client.sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                buffers.clear()
                self._lost(client)
                return
            buffers.clear()  # no view of a stored value outlives the call
            if sent:
                self._sent(client, sent)
        if unsent and not client.writing:
            client.writing = True
            self._loop.add_writer(client.fd, self._writable, client)
        elif not unsent and client.writing:
            client.writing = False
            self._loop.remove_writer(client.fd)
        if not unsent and client.closing:
            self._close_socket(client)

    def _writable(self, client: _Client) -> None:
        self._flush(client)
        if client.sock.fileno() < 0:
            return
        self._update_reading(client)
        if (client.inbox or client.eof) and self._may_feed(client):
            self.mark(client.conn)

    # -- closing -----------------------------------------------------------------------------
    def forget(self, conn: int) -> None:
        """The socket of ``conn`` is gone or closing (client or server side): tell the
        core, once."""
        client = self.clients.pop(conn, None)
        self._dirty.pop(conn, None)
        if client is not None and not client.gone:
            client.gone = True
            self.core.disconnect(conn)

    def _hang_up(self, client: _Client) -> None:
        """Close the socket once the replies already queued are sent."""
        client.closing = True
        self.forget(client.conn)
        self._update_reading(client)
        self._flush(client)

    def _lost(self, client: _Client) -> None:
        """The socket failed (reset, broken pipe): drop everything it held."""
        self.forget(client.conn)
        self._close_socket(client)

    def _close_socket(self, client: _Client) -> None:
        if client.sock.fileno() < 0 or self._loop is None:
            return
        if client.reading:
            self._loop.remove_reader(client.fd)
        if client.writing:
            self._loop.remove_writer(client.fd)
        client.reading = client.writing = False
        if client.unsent_bytes:
            self.unsent_total -= client.unsent_bytes
            self.writers -= 1
        client.unsent.clear()
        client.unsent_bytes = client.head_offset = 0
        client.inbox = bytearray()
        client.closing = True
        client.sock.close()
        if not self._accepting and self._listener is not None:
            self._start_accepting()  # a descriptor is free again

    # -- the pump ----------------------------------------------------------------------------
    def mark(self, conn: int) -> None:
        """Connection ``conn`` has something to do; pump at the next loop iteration."""
        self._dirty[conn] = None
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        fed: list[_Client] = []
        dirty, self._dirty = self._dirty, {}
        try:
            for conn in dirty:
                client = self.clients.get(conn)
                if client is None or client.gone or not self._may_feed(client):
                    continue
                room = self.share() - client.unsent_bytes
                chunk = client.take_input(lines_to_feed(room, client.reply_estimate))
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
                self._lost(client)
        if self._dirty and not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _deliver(self, client: _Client) -> None:
        conn = client.conn
        if self._receive_parts is not None:
            added = self._queue(client, self._receive_parts(conn))
        else:
            added = self._queue(client, (self.core.receive(conn),))
        if client.lines_fed:
            per_line = added / client.lines_fed
            estimate = client.reply_estimate
            client.reply_estimate = per_line if not estimate else (3 * estimate + per_line) / 4
            client.lines_fed = 0
        self._flush(client)
        if client.sock.fileno() < 0:
            return
        if self.core.closed(conn):
            self._hang_up(client)
        elif client.inbox:
            if self._may_feed(client):
                self._dirty[conn] = None
        elif client.eof:
            self._hang_up(client)
        if not client.closing:
            self._update_reading(client)

    # -- stopping -----------------------------------------------------------------------------
    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then close the listener and every connection."""
        if self._listener is None:
            await self.start()
        await stop.wait()
        self.close()

    def close(self) -> None:
        """Stop listening and close every connection (the core is told of each)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._listener is not None:
            if self._accepting and self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._accepting = False
            self._listener.close()
            self._listener = None
        for client in list(self.clients.values()):
            self._lost(client)


def serve(
    core: KvServer, host: str, port: int, *, on_listening: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:  # fmt: skip
    """Run a :class:`SphinxServer` on a fresh event loop until SIGINT or SIGTERM (or
    ``stop``, if given and set), after raising the soft ``RLIMIT_NOFILE`` to the hard
    limit. ``on_listening(port)`` is called once listening. Raises ``OSError`` if the
    address cannot be bound (in use, unknown host)."""
    raise_nofile_limit()

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
