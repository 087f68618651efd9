"""``memoracle kv check HOST:PORT``: check any running memcached-compatible server.

Three parts, all from one seed, each judged by the spec (:mod:`spec.kv_model`):

1. **Sequential session** (``--steps`` requests on one connection): storage commands
   (``set add replace append prepend cas``, with and without ``noreply``), retrievals
   (``get gets gat gats``, several keys), ``delete``, ``incr``/``decr``, ``touch``, on a
   small pool of keys. Each reply is judged by the *loose cache* model
   (:meth:`spec.kv_model.KvModel.judge`): a miss is always allowed (any key may have been
   evicted; the model then forgets it), a hit must show the latest value, flags and an
   answer that only a present item can give must be right. CAS uniques are the server's
   own: the check learns the unique a ``gets`` shows for each value and requires it to
   stay the same until the value changes and never to come back; a ``cas`` with that
   unique must succeed, one with another must not.
2. **Concurrent clients** (``--clients`` connections, ``--steps`` operations in all, one in
   flight per connection): ``set add get delete append`` on a few keys, every call and
   return stamped by one counter in one event loop (no clock skew), checked per key for
   linearizability (:class:`spec.object_models.CacheKeySpec`, loose). A request with no
   complete reply within ``--timeout`` seconds, or whose connection dropped, is
   *indeterminate* (Jepsen's ``:info``): it may or may not have taken effect; its client
   then continues on a new connection under a new name. The generic search runs under
   ``--max-states`` per key and 20 s in all; if it runs out the verdict is unknown.
3. **Framing scenarios**: malformed and unknown lines, a key of 251 bytes, a bad data
   chunk, flags beyond 32 bits, an item over the 1 MiB limit, ``noreply`` (silence, and
   the ``ERROR`` it never silences), pipelining of a hundred requests in one write, a
   non-numeric ``incr``, and an HTTP request (the server hangs up). Each is sent in one
   write; its replies are cut by the protocol's framing and judged by the same model,
   which is exact for all of these (errors, silence, the hang-up) bytes for bytes.

Keys are ``memoracle:<seed>:…`` and are deleted before use, so another run's data does
not matter; other clients writing the same keys would. ``flush_all`` is never sent.
Exit codes: 0 all three hold, 1 a violation (with the request, the expected and observed
replies and a reproduce line), 3 the concurrent check ran out of budget (and nothing
else failed), 2 bad usage or no server at HOST:PORT.
"""

from __future__ import annotations

import random
import re
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable

from spec.kv_model import KvModel
from spec.kv_wire import Event, HangUp, Retrieval, Simple, WireParser
from spec.linearizability import INDETERMINATE, Budget, check_linearizable
from spec.object_models import CacheKeySpec, ObjOp, op_key, value_unit

#: Reply lines that end a retrieval early (an error instead of values).
_ERRORS = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


class ServerGone(ConnectionError):
    """The server hung up, or did not answer within the timeout."""


class Replies:
    """A blocking reader of one connection's replies, cut by the protocol's framing."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerGone("no reply within the timeout")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise ServerGone("no reply within the timeout") from None
        except OSError as error:
            self.eof = True
            raise ServerGone(f"the connection failed: {error.strerror or error}") from None
        if not chunk:
            self.eof = True
            raise ServerGone("the server closed the connection")
        self.buffer += chunk

    def line(self, deadline: float) -> bytes:
        """One reply line, ``\\r\\n`` included."""
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                out = bytes(self.buffer[: end + 2])
                del self.buffer[: end + 2]
                return out
            self._fill(deadline)

    def exactly(self, count: int, deadline: float) -> bytes:
        """``count`` bytes."""
        while len(self.buffer) < count:
            self._fill(deadline)
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out

    def reply(self, kind: str) -> bytes:
        """The next reply of ``kind``: ``line``, ``retrieval`` (``VALUE`` blocks then
        ``END``, or one error line), ``stats`` (lines until ``END``), ``none``."""
        deadline = time.monotonic() + self.timeout
        if kind == "none":
            return b""
        if kind == "line":
            return self.line(deadline)
        out = bytearray()
        while True:
            line = self.line(deadline)
            out += line
            if line == b"END\r\n" or line.startswith(_ERRORS):
                return bytes(out)
            if kind == "retrieval" and line.startswith(b"VALUE "):
                parts = line.split()
                if len(parts) < 4 or not parts[3].isdigit():
                    return bytes(out)
                out += self.exactly(int(parts[3]) + 2, deadline)

    def closed(self, wait: float) -> bool:
        """Whether the server closes the connection within ``wait`` seconds (sending
        nothing more)."""
        deadline = time.monotonic() + wait
        try:
            while True:
                self._fill(deadline)
                if self.buffer:
                    return False
        except ServerGone:
            return self.eof


def reply_kind(event: Event) -> str:
    """How the reply to ``event`` is framed (the model's reply is one of these)."""
    if isinstance(event, HangUp):
        return "eof"
    if getattr(event, "noreply", False):
        return "none"
    if isinstance(event, Retrieval):
        return "line" if any(len(k) > 250 for k in event.keys) else "retrieval"
    if isinstance(event, Simple) and event.command == b"stats":
        return "stats"
    return "line"


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with ``TCP_NODELAY``."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# ----------------------------------------------------------------------- the judge


@dataclass
class Finding:
    """A violation: where, what was sent, what the spec allows and what came back."""

    part: str
    step: int
    sent: bytes
    expected: bytes
    observed: bytes
    note: str = ""

    def render(self) -> str:
        """A readable report."""
        head = f"{self.part}, step {self.step}"
        if self.note:
            head += f": {self.note}"
        return (f"{head}\n  sent     {self.sent[:300]!r}\n  expected {self.expected[:300]!r} "
                f"(or a miss for any key: the loose cache model)\n  observed {self.observed[:300]!r}")


_UNIQUE = re.compile(rb"^(VALUE \S+ \d+ \d+) (\d+)\r\n", re.M)


class LooseJudge:
    """The loose cache model with CAS uniques mapped between the server and the model.

    The model numbers its values with its own uniques; the server with its own. For each
    key, the unique the server showed for the model's current value is remembered; a
    reply is judged after writing the model's unique in place of the server's when they
    correspond (a unique the server shows for a *new* value must be new for the key)."""

    def __init__(self) -> None:
        self.model = KvModel(precise=False)
        self.parser = WireParser(self.model.fits)
        self.learned: dict[bytes, tuple[int, int]] = {}  # key -> (model unique, server unique)
        self.used: dict[bytes, set[int]] = {}  # key -> server uniques seen for older values

    def server_unique(self, key: bytes) -> int | None:
        """The server's unique of ``key``'s current value, if a ``gets`` showed it."""
        item = self.model.items.get(key)
        pair = self.learned.get(key)
        return pair[1] if item is not None and pair is not None and pair[0] == item.cas else None

    def model_unique(self, key: bytes, server: int) -> int:
        """The model's unique standing for the server's ``server`` (0 if none: the model
        never issues 0, so a ``cas`` with it fails as the server's should)."""
        return self.model.items[key].cas if self.server_unique(key) == server else 0

    def translate(self, observed: bytes) -> bytes:
        """``observed`` with each server unique replaced by the model's, where known."""
        def swap(match: re.Match[bytes]) -> bytes:
            header, unique = match.group(1), int(match.group(2))
            key = header.split(b" ")[1]
            item = self.model.items.get(key)
            if item is None:
                return match.group(0)
            pair = self.learned.get(key)
            if pair is not None and pair[0] == item.cas:
                return header + b" %d\r\n" % item.cas if pair[1] == unique else match.group(0)
            if unique in self.used.get(key, set()):
                return match.group(0)  # an old value's unique for a new value
            if pair is not None:
                self.used.setdefault(key, set()).add(pair[1])
            self.learned[key] = (item.cas, unique)
            return header + b" %d\r\n" % item.cas

        return _UNIQUE.sub(swap, observed) if b"VALUE " in observed else observed

    def events(self, model_bytes: bytes) -> list[Event]:
        """The requests in ``model_bytes`` (the bytes the model is judged on)."""
        return self.parser.feed(model_bytes)


# ----------------------------------------------------------------------- part 1: sequential


def _value(rng: random.Random) -> bytes:
    size = rng.choice((1, 2, 5, 30, 200, 1000))
    return bytes(rng.choice(b"abcdefghij0123456789") for _ in range(size))


def sequential_request(rng: random.Random, keys: list[bytes], judge: LooseJudge) -> tuple[bytes, bytes]:
    """One request: the bytes to send and the bytes the model is judged on (they differ
    only in a ``cas`` unique)."""
    key = rng.choice(keys)
    noreply = b" noreply" if rng.random() < 0.08 else b""
    flags = rng.choice((0, 1, 7, 2**32 - 1))
    exptime = rng.choice((0, 0, 0, 1000, -1))
    roll = rng.random()
    if roll < 0.30:
        command = rng.choice((b"set", b"set", b"add", b"replace", b"append", b"prepend"))
        value = _value(rng)
        line = b"%s %s %d %d %d%s\r\n%s\r\n" % (command, key, flags, exptime, len(value), noreply, value)
        return line, line
    if roll < 0.38:
        value = _value(rng)
        known = judge.server_unique(key)
        unique = known if known is not None and rng.random() < 0.7 else rng.randrange(1, 2**40)
        wire = b"cas %s %d 0 %d %d%s\r\n%s\r\n" % (key, flags, len(value), unique, noreply, value)
        model_unique = judge.model_unique(key, unique) if key in judge.model.items else 0
        return wire, b"cas %s %d 0 %d %d%s\r\n%s\r\n" % (key, flags, len(value), model_unique, noreply, value)
    if roll < 0.62:
        command = rng.choice((b"get", b"gets", b"gets"))
        line = b"%s %s\r\n" % (command, b" ".join(rng.choice(keys) for _ in range(rng.randint(1, 3))))
        return line, line
    if roll < 0.67:
        command = rng.choice((b"gat", b"gats"))
        line = b"%s %d %s\r\n" % (command, rng.choice((0, 1000)), key)
        return line, line
    if roll < 0.75:
        line = b"delete %s%s\r\n" % (key, noreply)
        return line, line
    if roll < 0.83:
        number = rng.choice((b"0", b"7", b"99", b"18446744073709551615"))
        line = b"set %s 0 0 %d\r\n%s\r\n" % (key, len(number), number)
        return line, line
    if roll < 0.93:
        line = b"%s %s %d%s\r\n" % (rng.choice((b"incr", b"decr")), key, rng.choice((1, 5, 2**64 - 1)), noreply)
        return line, line
    line = b"touch %s %d%s\r\n" % (key, rng.choice((0, 1000)), noreply)
    return line, line


def run_sequential(host: str, port: int, seed: int, steps: int, timeout: float) -> tuple[int, Finding | None]:
    """Part 1: ``steps`` requests judged one by one; (requests judged, first finding)."""
    rng = random.Random(seed)
    keys = [b"memoracle:%d:s%d" % (seed, i) for i in range(6)]
    judge = LooseJudge()
    with connect(host, port, timeout) as sock:
        replies = Replies(sock, timeout)
        for key in keys:  # whatever an earlier run left
            sock.sendall(b"delete %s\r\n" % key)
            replies.reply("line")
        for step in range(steps):
            wire, model_bytes = sequential_request(rng, keys, judge)
            sock.sendall(wire)
            for event in judge.events(model_bytes):
                kind = reply_kind(event)
                try:
                    observed = replies.reply(kind)
                except ServerGone as gone:
                    return step, Finding("sequential", step, wire, b"", b"", f"{gone} (seed {seed})")
                verdict = judge.model.judge(event, judge.translate(observed))
                if not verdict.ok:
                    return step, Finding("sequential", step, wire, verdict.expected, observed)
    return steps, None


# ----------------------------------------------------------------------- part 2: concurrent


@dataclass
class _Client:
    """One logical client: its own seeded requests, one at a time, on a connection that
    is replaced (under a new thread name) when a request is lost."""

    index: int
    rng: random.Random
    sock: socket.socket | None = None
    name: str = ""
    generation: int = 0
    busy: tuple[int, str, bytes, Hashable, int, bytes] | None = None  # (id, f, key, value, call, command)
    buffer: bytearray = field(default_factory=bytearray)
    deadline: float = 0.0
    left: int = 0


def _concurrent_request(client: _Client, keys: list[bytes], counter: list[int]) -> tuple[str, bytes, str | None, bytes]:
    rng = client.rng
    key = rng.choice(keys)
    counter[0] += 1
    value = f"c{client.index}v{counter[0]}"
    roll = rng.random()
    data = value.encode()
    if roll < 0.30:
        return "set", key, value, b"set %s 0 0 %d\r\n%s\r\n" % (key, len(data), data)
    if roll < 0.70:
        return "get", key, None, b"get %s\r\n" % key
    if roll < 0.80:
        return "delete", key, None, b"delete %s\r\n" % key
    if roll < 0.90:
        return "append", key, value, b"append %s 0 0 %d\r\n%s\r\n" % (key, len(data), data)
    return "add", key, value, b"add %s 0 0 %d\r\n%s\r\n" % (key, len(data), data)


def _parse_reply(f: str, buffer: bytearray) -> tuple[bool, Hashable]:
    """(complete, meaning) of a reply in ``buffer`` (consumed when complete)."""
    if f != "get":
        end = buffer.find(b"\r\n")
        if end < 0:
            return False, None
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return True, line.decode("latin-1")
    if buffer.startswith(b"END\r\n"):
        del buffer[:5]
        return True, None
    if buffer.startswith(b"VALUE "):
        end = buffer.find(b"\r\n")
        if end < 0:
            return False, None
        size = int(buffer[:end].split()[3])
        total = end + 2 + size + 2 + 5
        if len(buffer) < total:
            return False, None
        value = bytes(buffer[end + 2 : end + 2 + size]).decode("latin-1")
        tail = bytes(buffer[end + 2 + size : total])
        del buffer[:total]
        return True, value if tail == b"\r\nEND\r\n" else f"<malformed reply {tail!r}>"
    end = buffer.find(b"\r\n")
    if end < 0:
        return False, None
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return True, f"<{line.decode('latin-1')}>"


@dataclass
class ConcurrentResult:
    """The recorded history and its verdict."""

    ops: list[ObjOp]
    indeterminate: int
    status: str  # linearizable | violation | unknown
    report: str
    culprits: tuple[int, ...] = ()
    key: str | None = None
    order: tuple[int, ...] = ()


def run_concurrent(
    host: str, port: int, seed: int, operations: int, clients: int, timeout: float, budget: Budget,
) -> ConcurrentResult:  # fmt: skip
    """Part 2: a concurrent history of ``operations`` operations, checked per key."""
    keys = [b"memoracle:%d:c%d" % (seed, i) for i in range(3)]
    with connect(host, port, timeout) as sock:
        replies = Replies(sock, timeout)
        for key in keys:
            sock.sendall(b"delete %s\r\n" % key)
            replies.reply("line")
    roster = [_Client(i, random.Random(seed * 1_000_003 + i)) for i in range(clients)]
    for k, client in enumerate(roster):
        client.left = operations // clients + (1 if k < operations % clients else 0)
    selector = selectors.DefaultSelector()
    ops: list[ObjOp] = []
    tick = [0]
    counter = [0]
    next_id = 0
    lost = 0

    def stamp() -> int:
        tick[0] += 1
        return tick[0]

    def reconnect(client: _Client) -> None:
        if client.sock is not None:
            selector.unregister(client.sock)
            client.sock.close()
        client.generation += 1
        client.name = f"client {client.index}" + (f".{client.generation}" if client.generation > 1 else "")
        client.sock = connect(host, port, timeout)
        client.sock.setblocking(False)
        client.buffer.clear()
        selector.register(client.sock, selectors.EVENT_READ, client)

    def lose(client: _Client) -> None:
        nonlocal lost
        assert client.busy is not None
        ident, f, key, value, call, _ = client.busy
        ops.append(ObjOp(ident, client.name, f, key.decode("latin-1"), value, None, call, INDETERMINATE))
        client.busy = None
        lost += 1
        reconnect(client)

    try:
        for client in roster:
            reconnect(client)
        while any(c.left or c.busy for c in roster):
            for client in roster:
                if client.busy is None and client.left:
                    f, key, value, request = _concurrent_request(client, keys, counter)
                    client.busy = (next_id, f, key, value, stamp(), request)
                    next_id += 1
                    client.left -= 1
                    client.deadline = time.monotonic() + timeout
                    assert client.sock is not None
                    try:
                        client.sock.sendall(request)
                    except OSError:
                        lose(client)
            for selected, _ in selector.select(0.05):
                client = selected.data
                try:
                    chunk = client.sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    if client.busy is not None:
                        lose(client)
                    else:
                        reconnect(client)
                    continue
                client.buffer += chunk
                if client.busy is None:
                    continue
                ident, f, key, value, call, _ = client.busy
                done, meaning = _parse_reply(f, client.buffer)
                if done:
                    ret = stamp()
                    ops.append(ObjOp(ident, client.name, f, key.decode("latin-1"), value, meaning, call, ret))
                    client.busy = None
            now = time.monotonic()
            for client in roster:
                if client.busy is not None and now > client.deadline:
                    lose(client)
    finally:
        for client in roster:
            if client.sock is not None:
                client.sock.close()
        selector.close()
    ops.sort(key=lambda o: o.id)
    result = check_linearizable(ops, CacheKeySpec(), partition=op_key, unit=value_unit, budget=budget)
    if result.ok:
        return ConcurrentResult(ops, lost, "linearizable", "")
    if result.violation is not None:
        violation = result.violation
        placed = set(violation.longest)
        same_key = sorted((op for op in ops if op.key == violation.partition), key=lambda o: (o.call, o.ret))
        stuck = next((op for op in same_key if op.id not in placed and not op.indeterminate), None)
        culprits = tuple(op.id for op in violation.minimal or ()) + ((stuck.id,) if stuck is not None else ())
        report = violation.render()
        if stuck is not None:
            report += (f"\nthe longest partial linearization found places {len(placed)} of the key's operations; "
                       f"the first called that it cannot place: {stuck.describe()}")
        return ConcurrentResult(ops, lost, "violation", report, culprits, str(violation.partition), violation.longest)
    unknown = result.unknown[0]
    return ConcurrentResult(ops, lost, "unknown", f"key {unknown.partition}: the search stopped ({unknown.why}) "
                            f"after {unknown.states} states", (), str(unknown.partition), unknown.longest)


# ----------------------------------------------------------------------- part 3: framing


def framing_scenarios(seed: int) -> list[tuple[str, list[bytes]]]:
    """(name, writes) for each scenario: each write is sent whole and its replies read
    before the next (a retrieval naming a bad key discards the replies queued before it
    in the same read, as memcached does, so such a retrieval gets a write of its own)."""
    k = b"memoracle:%d:f" % seed
    long_key = b"k" * 251
    big = 1024 * 1024 + 1
    pipeline = b"".join(b"set %s%d 0 0 2\r\nv%d\r\nget %s%d\r\n" % (k, i % 5, i % 10, k, i % 5) for i in range(50))
    return [
        ("unknown command", [b"bogus\r\n"]),
        ("commands are case-sensitive", [b"GET %s\r\n" % k]),
        ("get without a key", [b"get\r\n"]),
        ("wrong argument count", [b"set %s 0 0\r\n" % k]),
        ("a 251-byte key", [b"set %s 0 0 1\r\nx\r\n" % long_key, b"get %s\r\n" % long_key]),
        ("a bad data chunk", [b"set %s 0 0 3\r\nabcde\r\nget %s\r\n" % (k, k)]),
        ("flags beyond 32 bits are cut", [b"set %s 4294967297 0 1\r\nx\r\nget %s\r\n" % (k, k)]),
        ("an item over the 1 MiB limit",
         [b"set %s 0 0 1\r\nx\r\nset %s 0 0 %d\r\n%s\r\nget %s\r\n" % (k, k, big, b"y" * big, k)]),
        ("noreply is silent", [b"set %s 0 0 1 noreply\r\nz\r\ndelete %s noreply\r\nget %s\r\n" % (k, k, k)]),
        ("noreply never silences a wrong argument count", [b"set %s noreply\r\nget %s\r\n" % (k, k)]),
        ("a non-numeric incr", [b"set %s 0 0 2\r\nab\r\nincr %s 1\r\nincr %s x\r\n" % (k, k, k)]),
        ("an expired item is gone", [b"set %s 0 -1 1\r\nx\r\nget %s\r\n" % (k, k)]),
        ("a hundred pipelined requests", [pipeline]),
        ("an HTTP request hangs up", [b"get %s\r\nGET / HTTP/1.0\r\n" % k]),
    ]


def run_framing(host: str, port: int, seed: int, timeout: float) -> tuple[int, int, Finding | None]:
    """Part 3: every scenario on a fresh connection; (scenarios, requests, first finding)."""
    requests = 0
    scenarios = framing_scenarios(seed)
    for number, (name, writes) in enumerate(scenarios):
        judge = LooseJudge()
        with connect(host, port, timeout) as sock:
            replies = Replies(sock, timeout)
            for key in (b"memoracle:%d:f" % seed, *(b"memoracle:%d:f%d" % (seed, i) for i in range(5))):
                sock.sendall(b"delete %s\r\n" % key)
                replies.reply("line")
            hung_up = False
            for data in writes:
                sock.sendall(data)
                for event in judge.events(data):
                    requests += 1
                    kind = reply_kind(event)
                    if kind == "eof":
                        if not replies.closed(timeout):
                            return number, requests, Finding(f"framing ({name})", number, data, b"<hang-up>",
                                                             bytes(replies.buffer), "the server did not hang up")
                        hung_up = True
                        break
                    try:
                        observed = replies.reply(kind)
                    except ServerGone as gone:
                        return number, requests, Finding(f"framing ({name})", number, data, b"", b"", str(gone))
                    verdict = judge.model.judge(event, judge.translate(observed))
                    if not verdict.ok:
                        return number, requests, Finding(f"framing ({name})", number, data, verdict.expected,
                                                         observed)
                if hung_up:
                    break
            if not hung_up:
                sock.sendall(b"version\r\n")  # whatever comes before its answer was not asked for
                try:
                    extra = replies.line(time.monotonic() + timeout)
                except ServerGone as gone:
                    return number, requests, Finding(f"framing ({name})", number, b"".join(writes), b"VERSION ...", b"",
                                                     f"after the scenario: {gone}")
                if not extra.startswith(b"VERSION "):
                    return number, requests, Finding(f"framing ({name})", number, b"".join(writes), b"", extra,
                                                     "a reply nobody asked for")
    return len(scenarios), requests, None


# ----------------------------------------------------------------------- the whole check


@dataclass
class KvReport:
    """What ``kv check`` found."""

    target: str
    seed: int
    steps: int
    clients: int
    sequential: int = 0
    sequential_finding: Finding | None = None
    concurrent: ConcurrentResult | None = None
    scenarios: int = 0
    framing_requests: int = 0
    framing_finding: Finding | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """``ok``, ``violation`` or ``unknown``."""
        if self.sequential_finding or self.framing_finding or (self.concurrent and self.concurrent.status == "violation"):
            return "violation"
        if self.concurrent and self.concurrent.status == "unknown":
            return "unknown"
        return "ok"

    def reproduce(self) -> str:
        """The command that runs the same check again."""
        return f"memoracle kv check {self.target} --seed {self.seed} --steps {self.steps} --clients {self.clients}"

    def as_json(self) -> dict[str, object]:
        """The ``--json`` object."""
        concurrent = self.concurrent
        return {
            "target": self.target, "seed": self.seed, "verdict": self.status,
            "sequential": {"requests": self.sequential, "ok": self.sequential_finding is None,
                           "finding": self.sequential_finding.render() if self.sequential_finding else None},
            "concurrent": None if concurrent is None else {
                "operations": len(concurrent.ops), "indeterminate": concurrent.indeterminate,
                "verdict": concurrent.status, "key": concurrent.key, "report": concurrent.report or None},
            "framing": {"scenarios": self.scenarios, "requests": self.framing_requests,
                        "ok": self.framing_finding is None,
                        "finding": self.framing_finding.render() if self.framing_finding else None},
            "seconds": round(self.seconds, 3), "reproduce": self.reproduce(),
        }  # fmt: skip


def check_server(
    host: str, port: int, *, seed: int = 0, steps: int = 400, clients: int = 4, timeout: float = 2.0,
    budget: Budget | None = None, on_part: Callable[[str], None] | None = None,
) -> KvReport:  # fmt: skip
    """Run the three parts against ``host:port`` (see the module docstring). Raises
    ``OSError`` if no connection can be made at the start."""
    started = time.perf_counter()
    report = KvReport(f"{host}:{port}", seed, steps, clients)
    budget = budget or Budget(500_000, 20.0)
    say = on_part or (lambda part: None)
    say("sequential session")
    report.sequential, report.sequential_finding = run_sequential(host, port, seed, steps, timeout)
    say("concurrent clients")
    report.concurrent = run_concurrent(host, port, seed, steps, clients, timeout, budget)
    say("framing scenarios")
    report.scenarios, report.framing_requests, report.framing_finding = run_framing(host, port, seed, timeout)
    report.seconds = time.perf_counter() - started
    return report
