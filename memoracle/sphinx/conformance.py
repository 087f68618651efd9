"""Conformance of a memcached-protocol store to :mod:`spec.kv_model`, and per-key
linearizability of its concurrent histories.

Two harnesses, both over the :class:`spec.kv_api.KvServer` Protocol (so they check
Sphinx, the model itself, or a user's store):

- :func:`conformance_run` drives the server and a precise :class:`ModelServer` with the
  same seeded workload: several connections, keys from a small pool (so they collide
  and, with several threads, are forwarded), pipelined requests, multi-key gets, clock
  advances, a small segment size so segments expire, and hang-ups (``quit``, an HTTP
  request, an endless line; the connection is then replaced) and retrievals of a bad
  key, which keep or discard the replies queued before them as memcached does; and
  (:class:`Workload`) delayed ``flush_all``, exptimes at the edges of memcached's
  ``realtime()``, and clock advances to exactly the second a flush point or an expiry
  is reached (or the second before). After every send the server is settled, so the
  order of requests across connections is the send order and every reply is predicted
  byte for byte (``stats`` on every field both servers report but ``pid``:
  :data:`spec.kv_api.STATS_NOT_COMPARED`). When the server has them, ``check_invariants()``
  runs after every step and every key of ``keys_by_thread()`` must be on the thread
  :func:`spec.murmur3.owner_of` names.
- :func:`history_run` interleaves sends and single ``step()`` s so that requests of
  different connections overlap, records each operation's call (the step at which it was
  sent) and return (the step at which its whole reply appeared), and checks the history
  with :func:`spec.linearizability.check_linearizable` partitioned by key against
  :class:`KvKeySpec` (loose: a miss is always allowed, as any key may be evicted).

Choices: a workload request is one memcached command line plus data; ``cas`` uses
uniques seen in earlier ``gets`` replies or small guesses; ``flush_all`` is rare (it
empties every pool key at once); replies are compared per send. :data:`PLAIN` is the
workload without the :class:`Workload` extensions (tests show what only they catch).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Collection, Hashable, Protocol, Sequence

from spec.history import Operation
from spec.kv_api import STATS_NOT_COMPARED, KvServer
from spec.kv_model import ModelServer
from spec.linearizability import check_linearizable
from spec.murmur3 import owner_of

#: A factory of the server under test: ``(threads, memory, segment_size, seed)``.
MakeServer = Callable[[int, int, int, int], KvServer]


class _Steppable(Protocol):
    def step(self) -> bool: ...


#: How often a request is ``flush_all`` (rare: it empties the whole pool).
_FLUSH_RATE = 0.005
#: How often a batch ends in a hang-up (the connection is then replaced by a new one).
_HANG_UP_RATE = 0.03
#: The hang-ups: ``quit`` (after every reply), an HTTP request and an endless line (which
#: discard the replies queued since the last retrieval).
HANG_UPS: tuple[bytes, ...] = (b"quit\r\n", b"GET / HTTP/1.0\r\n", b"x" * 2100)
#: The longest batch a hang-up ends: what one read takes in (memcached reads 16 KiB at a
#: time; Sphinx takes 64 packets a quantum). A longer send arrives in several reads, and
#: a server may transmit between them, which the model does not predict
#: (:mod:`spec.kv_model`: replies leave at the end of a send).
HANG_UP_BATCH_LIMIT = 16 * 1024
#: A retrieval naming a 251-byte key: it discards the replies queued since the last one.
BAD_KEY_GET = b"get k0 " + b"k" * 251 + b"\r\n"
#: memcached's largest relative exptime (30 days); one more is a Unix time (in 1970).
THIRTY_DAYS = 60 * 60 * 24 * 30
_K251 = b"k" * 251
#: Malformed and edge requests (every one answered as memcached 1.6.18 does, but the
#: meta command ``me``, which the model answers ``ERROR``; tests/test_kv_model.py): bad
#: numbers and argument counts of each command, keys over 250 bytes, items too large
#: for a segment, a NUL in a line, bare ``\n``, leading spaces, retrieval lines over
#: 64 KiB, unknown and upper-case commands.
EDGE_REQUESTS: tuple[bytes, ...] = (
    b"set k0 x 0 1\r\nv\r\n", b"set k0 0 x 1\r\nv\r\n", b"set k0 0 0 x\r\nv\r\n", b"set k0 0 0 -1\r\n",
    b"set k0 0 0\r\n", b"cas k0 0 0 1 x\r\nv\r\n", b"cas k0 0 0 1\r\nv\r\n", b"set " + _K251 + b" 0 0 1\r\nv\r\n",
    b"delete k0 0\r\n", b"delete k0 1\r\n", b"delete k0 0 noreply\r\n", b"delete k0 x y z\r\n",
    b"delete " + _K251 + b"\r\n", b"incr k0 x\r\n", b"incr k0\r\n", b"incr " + _K251 + b" 1\r\n",
    b"decr k0 -1\r\n", b"incr k0 18446744073709551616\r\n", b"touch k0 x\r\n", b"touch k0\r\n",
    b"touch " + _K251 + b" 1\r\n", b"touch k0 x noreply\r\n", b"gat x k0\r\n", b"gat 1\r\n",
    b"gats 1 k0 " + _K251 + b"\r\n", b"set k0 0 0 5000\r\n" + b"v" * 5000 + b"\r\n",
    b"add k0 0 0 5000 noreply\r\n" + b"v" * 5000 + b"\r\n", b"get k0\x00junk\r\n", b"verbosity\r\n",
    b"verbosity x\r\n", b"verbosity 1 noreply\r\n", b"version x y\r\n", b"flush_all x\r\n",
    b"flush_all 1 2 3\r\n", b"flush_all noreply\r\n", b"stats foo\r\n", b"  get k0\r\n", b"get k0\n",
    b"me k0\r\n", b"zap\r\n", b"GET k0\r\n", b"a\r\n",
    b"get " + b"k1 " * 30000 + b"\r\n", b"gets " + b"k1 " * 30000 + _K251 + b"\r\n",
)  # fmt: skip


def _keys(rng: random.Random, pool: list[bytes], most: int = 4) -> bytes:
    return b" ".join(rng.choice(pool) for _ in range(rng.randint(1, most)))


@dataclass(frozen=True)
class Workload:
    """What the conformance workload generates besides memcached's plain commands.

    - ``delayed_flush``: ``flush_all <delay>`` (1 to 3 seconds, a Unix time a few seconds
      ahead, a Unix time at or before the server's start, ``0``, a negative delay,
      ``noreply``) besides the immediate one, and ``stats reset``;
    - ``exptime_boundaries``: exptimes at the edges memcached's ``realtime()`` draws —
      1 second, exactly 30 days (the largest relative time) and 30 days + 1 (a Unix time
      in 1970), a Unix time equal to the clock, one second ahead and one behind — in
      ``set``/``add``/..., ``touch`` and ``gat``;
    - ``to_deadlines``: clock advances that land exactly on a second at which something
      generated takes effect (a flush point, an item's expiry) or on the second before;
    - ``edges``: :data:`EDGE_REQUESTS` now and then, ``flush_all`` with a delay that is
      not a number, and clients that go away (after their replies, or in the middle of
      a request).

    :data:`PLAIN` has none of them: immediate ``flush_all`` only, small relative
    exptimes, advances of 1, 2 or 4 seconds.
    """

    delayed_flush: bool = True
    exptime_boundaries: bool = True
    to_deadlines: bool = True
    edges: bool = True


#: The full workload (the default of every harness here).
FULL = Workload()
#: The workload without delayed flushes, boundary exptimes and advances to deadlines.
PLAIN = Workload(delayed_flush=False, exptime_boundaries=False, to_deadlines=False, edges=False)


class RequestGenerator:
    """Draws the requests and clock advances of the conformance workload from ``rng``.

    It keeps the virtual clock it has been told about (:meth:`advanced`) and the seconds
    at which what it generated takes effect (:attr:`deadlines`, most recent last), so
    that :meth:`advance` can land on them. ``uniques`` are CAS uniques seen in replies.
    """

    def __init__(
        self,
        rng: random.Random,
        pool: list[bytes],
        *,
        now: int,
        with_stats: bool = True,
        workload: Workload = FULL,
    ) -> None:
        self.rng = rng
        self.pool = pool
        self.now = now
        self.start = now
        self.with_stats = with_stats
        self.workload = workload
        self.uniques: list[int] = []
        self.deadlines: list[int] = []

    def advanced(self, seconds: int) -> None:
        """The clock moved forward by ``seconds``."""
        self.now += seconds

    def _deadline(self, second: int) -> None:
        if second > self.now:
            self.deadlines = [d for d in self.deadlines if d > self.now and d != second][-7:] + [second]

    def exptime(self, plain: tuple[int, ...]) -> int:
        """An exptime: one of ``plain``, or (with boundaries) an edge of ``realtime()``;
        its expiry second is remembered."""
        rng = self.rng
        if self.workload.exptime_boundaries and rng.random() < 0.4:
            return self.boundary_exptime()
        value = rng.choice(plain)
        self._expiry(value)
        return value

    def boundary_exptime(self) -> int:
        """An exptime at an edge of ``realtime()`` (see :class:`Workload`); its expiry
        second is remembered."""
        value = self.rng.choice(
            (1, 1, 2, THIRTY_DAYS, THIRTY_DAYS + 1, self.now, self.now + 1, self.now + 2, self.now - 1)
        )
        self._expiry(value)
        return value

    def _expiry(self, value: int) -> None:
        if 0 < value <= THIRTY_DAYS:
            self._deadline(self.now + value)
        elif value > THIRTY_DAYS:
            self._deadline(value)

    def flush(self) -> bytes:
        """A ``flush_all``: immediate, or (with delayed flushes) with a delay; the second
        its flush point is reached is remembered (``now + delay - 1``)."""
        rng = self.rng
        if not self.workload.delayed_flush:
            return b"flush_all\r\n"
        noreply = b" noreply" if rng.random() < 0.2 else b""
        if self.workload.edges and rng.random() < 0.1:  # a delay that is not a number
            return b"flush_all x%s\r\n" % noreply
        roll = rng.random()
        if roll < 0.2:
            return b"flush_all%s\r\n" % noreply
        delay = rng.choice(
            (1, 2, 2, 3, self.now + 2, self.now + 3, self.start - 70, self.start, 0, -1, THIRTY_DAYS + 1)
        )
        point = (self.now + delay if 0 < delay <= THIRTY_DAYS else delay) - 1
        self._deadline(point)
        return b"flush_all %d%s\r\n" % (delay, noreply)

    def advance(self) -> int:
        """Seconds to move the clock before the next request (usually 0)."""
        rng = self.rng
        if self.workload.to_deadlines and self.deadlines and rng.random() < 0.12:
            target = rng.choice(self.deadlines) - rng.choice((0, 0, 1))
            if target > self.now:
                return target - self.now
        if rng.random() < 0.05:
            return rng.choice((1, 2, 4))
        return 0

    def request(self) -> bytes:
        """One request (command line and data block) of the conformance workload
        (``stats`` only if ``with_stats``)."""
        rng, pool = self.rng, self.pool
        key = rng.choice(pool)
        noreply = b" noreply" if rng.random() < 0.1 else b""
        roll = rng.random()
        size = rng.choice((1, 3, 40, 300, 900))
        value = bytes(rng.choice(b"0123456789abc") for _ in range(size))
        if roll < 0.25:
            command = rng.choice((b"set", b"set", b"add", b"replace", b"append", b"prepend"))
            return b"%s %s %d %d %d%s\r\n%s\r\n" % (
                command, key, rng.choice((0, 1, 2**32 - 1)), self.exptime((0, 0, 5, -1)), size, noreply, value
            )
        if roll < 0.30:
            uniques = self.uniques
            unique = rng.choice(uniques) if uniques and rng.random() < 0.7 else rng.randint(0, 5)
            return b"cas %s 0 0 %d %d%s\r\n%s\r\n" % (key, size, unique, noreply, value)
        if roll < 0.55:
            return b"%s %s\r\n" % (rng.choice((b"get", b"gets")), _keys(rng, pool))
        if roll < 0.60:
            return b"%s %d %s\r\n" % (rng.choice((b"gat", b"gats")), self.exptime((0, 3, -1)), _keys(rng, pool))
        if roll < 0.68:
            return b"delete %s%s\r\n" % (key, noreply)
        if roll < 0.76:
            number = rng.choice((b"0", b"7", b"18446744073709551615", b"99"))
            return b"set %s 0 0 %d\r\n%s\r\n" % (key, len(number), number)
        if roll < 0.86:
            return b"%s %s %d%s\r\n" % (rng.choice((b"incr", b"decr")), key, rng.choice((1, 5, 2**64 - 1)), noreply)
        if roll < 0.91:
            return b"touch %s %d%s\r\n" % (key, self.exptime((0, 2, -1)), noreply)
        flush_rate = _FLUSH_RATE * (3 if self.workload.delayed_flush else 1)
        if roll < 0.91 + flush_rate:
            return self.flush()
        if roll < 0.94 + flush_rate:
            extra: tuple[bytes, ...] = (b"stats\r\n",) if self.with_stats else ()
            if self.with_stats and self.workload.delayed_flush and rng.random() < 0.1:
                extra = (b"stats reset\r\n",)
            choices: tuple[bytes, ...] = (
                b"version\r\n", b"verbosity 1\r\n", b"bogus\r\n", b"get\r\n", b"mn\r\n", BAD_KEY_GET, *extra
            )
            if self.workload.edges and rng.random() < 0.5:
                choices = EDGE_REQUESTS
            return rng.choice(choices)
        return b"set %s 0 0 2\r\nxyz\r\n" % key  # a bad data chunk, then ERROR


def random_request(
    rng: random.Random,
    pool: list[bytes],
    uniques: list[int],
    with_stats: bool = True,
    *,
    now: int = 1_700_000_000,
    workload: Workload = FULL,
) -> bytes:
    """One request of the conformance workload drawn from ``rng`` at clock ``now`` (see
    :class:`RequestGenerator`; ``uniques`` are CAS uniques seen so far)."""
    generator = RequestGenerator(rng, pool, now=now, with_stats=with_stats, workload=workload)
    generator.uniques = uniques
    return generator.request()


def _stat_lines(reply: bytes) -> dict[bytes, bytes]:
    return {
        line.split(b" ")[1]: line
        for line in reply.split(b"\r\n")
        if line.startswith(b"STAT ") and len(line.split(b" ")) >= 3
    }


def normalise_stats(reply: bytes, fields: Collection[str] | None = None) -> bytes:
    """Replace each ``STAT`` block by the values of ``fields`` only (default: every field
    but :data:`spec.kv_api.STATS_NOT_COMPARED`), so servers with other field lists
    compare equal when those values agree."""
    wanted = None if fields is None else {name.encode() for name in fields}
    skipped = {name.encode() for name in STATS_NOT_COMPARED}

    def keep(match: re.Match[bytes]) -> bytes:
        lines = _stat_lines(match.group(0))
        kept = [
            line for name, line in lines.items() if name not in skipped and (wanted is None or name in wanted)
        ]
        summary: bytes = b"STATS[" + b";".join(sorted(kept)) + b"]"
        return summary

    return re.sub(rb"(?:STAT [^\r\n]*\r\n)+END\r\n", keep, reply)


def shared_stats(expected: bytes, observed: bytes) -> set[str]:
    """The ``stats`` fields both replies define (every counter both servers report)."""
    both = set(_stat_lines(expected)) & set(_stat_lines(observed))
    return {name.decode() for name in both}


@dataclass(frozen=True)
class Mismatch:
    """A difference between the server and the model: enough to reproduce and read."""

    seed: int
    step: int
    conn: int
    sent: bytes
    expected: bytes
    observed: bytes
    note: str = ""

    def render(self) -> str:
        """A readable report."""
        head = f"seed {self.seed}, step {self.step}, connection {self.conn}"
        if self.note:
            return f"{head}: {self.note}\n  after sending {self.sent[:200]!r}"
        return (
            f"{head}: the reply differs from the model\n  sent     {self.sent[:200]!r}\n"
            f"  expected {self.expected[:300]!r}\n  observed {self.observed[:300]!r}"
        )


def _check_server(server: KvServer, threads: int) -> str:
    checker = getattr(server, "check_invariants", None)
    if checker is not None:
        try:
            checker()
        except AssertionError as error:
            return f"check_invariants failed: {error}"
    by_thread = getattr(server, "keys_by_thread", None)
    if by_thread is not None:
        for thread, keys in sorted(by_thread().items()):
            for key in sorted(keys):
                if owner_of(key, threads) != thread:
                    return f"key {key!r} is on thread {thread}, its owner is {owner_of(key, threads)}"
    return ""


def conformance_run(
    make: MakeServer,
    seed: int,
    steps: int,
    *,
    threads: int = 3,
    memory: int = 3 * 2 * 4096,
    segment_size: int = 4096,
    connections: int = 4,
    keys: int = 12,
    with_stats: bool = True,
    workload: Workload = FULL,
    stats_fields: Collection[str] | None = None,
) -> Mismatch | None:
    """Run ``steps`` sends of the seeded ``workload`` against ``make(...)`` and a
    precise model; the first difference, or ``None`` if every reply matched. ``stats``
    replies are compared on every field both report (``pid`` aside), or on
    ``stats_fields`` only."""
    rng = random.Random(seed)
    server = make(threads, memory, segment_size, seed)
    start = _start_time(server)
    model = ModelServer(threads, memory, segment_size=segment_size, start_time=start)
    pool = [b"k%d" % i for i in range(keys)]
    conns = [(server.connect(), model.connect()) for _ in range(connections)]
    requests = RequestGenerator(rng, pool, now=start, with_stats=with_stats, workload=workload)
    for step in range(steps):
        seconds = requests.advance()
        if seconds:
            server.advance_clock(seconds)
            model.advance_clock(seconds)
            requests.advanced(seconds)
        index = rng.randrange(connections)
        real, ideal = conns[index]
        batch = b"".join(requests.request() for _ in range(rng.choice((1, 1, 2, 4))))
        if rng.random() < _HANG_UP_RATE:
            hang_up = rng.choice(HANG_UPS)  # drawn either way: the seeds' streams stay as they were
            if len(batch) <= HANG_UP_BATCH_LIMIT:
                batch += hang_up
        cut = rng.randrange(len(batch) + 1) if rng.random() < 0.2 else len(batch)
        leaves = workload.edges and rng.random() < 0.02  # the client goes away
        parts = (batch[:cut], batch[cut:]) if not leaves else (batch[:cut],)
        for part in parts:
            if part:
                server.send(real, part)
                model.send(ideal, part)
                server.settle()
        if leaves:
            server.disconnect(real)
            model.disconnect(ideal)
            server.settle()
            conns[index] = (server.connect(), model.connect())
            continue
        expected_raw, observed_raw = model.receive(ideal), server.receive(real)
        fields = shared_stats(expected_raw, observed_raw) if stats_fields is None else stats_fields
        expected = normalise_stats(expected_raw, fields)
        observed = normalise_stats(observed_raw, fields)
        if expected != observed:
            return Mismatch(seed, step, index, batch, expected, observed)
        if server.closed(real) != model.closed(ideal):
            note = f"the server {'hung up' if server.closed(real) else 'did not hang up'}, the model did not"
            return Mismatch(seed, step, index, batch, b"", b"", note)
        if server.closed(real):
            conns[index] = (server.connect(), model.connect())
        requests.uniques += [int(u) for u in re.findall(rb"VALUE \S+ \d+ \d+ (\d+)\r\n", expected)][-4:]
        requests.uniques = requests.uniques[-8:]
        problem = _check_server(server, threads)
        if problem:
            return Mismatch(seed, step, index, batch, b"", b"", problem)
    return None


def _start_time(server: KvServer) -> int:
    clock = getattr(server, "clock", None)
    if callable(clock):
        value = clock()
        if isinstance(value, int):
            return value
    return 1_700_000_000


# --------------------------------------------------------------------- histories


@dataclass(frozen=True)
class KvOperation(Operation):
    """A key-value operation in a history: ``arg`` is the request (``"set k v"``,
    ``"get k"``, ``"delete k"``, ``"append k v"``), ``result`` the reply's meaning
    (``"STORED"``, a value, ``None`` for a miss, ...). ``kind`` is unused."""

    def describe(self) -> str:
        """``#3 [conn 1] 'get k2' -> 'v7' @[4,9]``."""
        return f"#{self.id} [conn {self.thread}] {self.arg!r} -> {self.result!r} @[{self.call},{self.ret}]"


def op_key(op: Operation) -> Hashable:
    """The key an operation works on (the linearizability partition)."""
    return str(op.arg).split(" ")[1]


class KvKeySpec:
    """One key of the store as a sequential object; states are the value (``None`` =
    absent). ``loose``: a miss (``None``, ``NOT_FOUND``, ``NOT_STORED``) is always
    allowed and leaves the key absent, as if it had been evicted."""

    def __init__(self, loose: bool = True) -> None:
        self.loose = loose

    def initial(self) -> str | None:
        """The key is absent."""
        return None

    def step(self, state: str | None, op: Operation) -> str | None | _Illegal:
        """The state after ``op``, or :data:`ILLEGAL` if its answer is not allowed."""
        parts = str(op.arg).split(" ")
        verb, result = parts[0], op.result
        if verb == "set":
            return parts[2] if result == "STORED" else ILLEGAL
        if verb == "get":
            if result is None:
                return None if (self.loose or state is None) else ILLEGAL
            return state if result == state else ILLEGAL
        if verb == "delete":
            if result == "DELETED":
                return None if state is not None else ILLEGAL
            return None if (self.loose or state is None) and result == "NOT_FOUND" else ILLEGAL
        if verb == "append":
            if result == "STORED":
                return state + parts[2] if state is not None else ILLEGAL
            return None if (self.loose or state is None) and result == "NOT_STORED" else ILLEGAL
        return ILLEGAL


class _Illegal:
    pass


#: Marks an illegal answer (``None`` is a legal state: the key is absent).
ILLEGAL = _Illegal()


class _SpecAdapter:
    """:class:`KvKeySpec` in the checker's convention (``None`` = illegal)."""

    def __init__(self, spec: KvKeySpec) -> None:
        self.spec = spec

    def initial(self) -> tuple[str | None]:
        return (self.spec.initial(),)

    def step(self, state: tuple[str | None], op: Operation) -> tuple[str | None] | None:
        after = self.spec.step(state[0], op)
        return None if isinstance(after, _Illegal) else (after,)


def _request(rng: random.Random, pool: list[str], counter: list[int]) -> tuple[str, bytes]:
    key = rng.choice(pool)
    roll = rng.random()
    counter[0] += 1
    value = f"v{counter[0]}"
    if roll < 0.35:
        return f"set {key} {value}", b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value.encode())
    if roll < 0.75:
        return f"get {key}", b"get %s\r\n" % key.encode()
    if roll < 0.88:
        return f"delete {key}", b"delete %s\r\n" % key.encode()
    return f"append {key} {value}", b"append %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value.encode())


def _meaning(arg: str, reply: bytes) -> str | None:
    text = reply.decode("latin1")
    if arg.startswith("get"):
        match = re.match(r"VALUE \S+ \d+ \d+\r\n(.*)\r\nEND\r\n$", text, re.S)
        return match.group(1) if match else (None if text == "END\r\n" else text)
    return text.rstrip("\r\n")


def _complete(arg: str, reply: bytes) -> bool:
    return reply.endswith(b"END\r\n") if arg.startswith("get") else reply.endswith(b"\r\n")


def record_history(server: KvServer, seed: int, operations: int, *, connections: int = 4, keys: int = 3) -> list[Operation]:
    """A concurrent history of ``operations`` single-key operations on ``server``
    (which must have ``step()``): each connection has at most one operation in flight;
    the clock is the number of steps taken."""
    stepper: _Steppable = server  # type: ignore[assignment]
    rng = random.Random(seed)
    pool = [f"h{i}" for i in range(keys)]
    conns = [server.connect() for _ in range(connections)]
    busy: dict[int, tuple[int, str, int, bytearray]] = {}
    history: list[Operation] = []
    counter = [0]
    started = 0
    tick = 0
    while len(history) < operations:
        for index, conn in enumerate(conns):
            if index not in busy and started < operations and rng.random() < 0.6:
                arg, data = _request(rng, pool, counter)
                busy[index] = (started, arg, tick, bytearray())
                started += 1
                server.send(conn, data)
        ran = stepper.step()
        tick += 1
        for index in sorted(busy):
            ident, arg, call, reply = busy[index]
            reply += server.receive(conns[index])
            if _complete(arg, bytes(reply)):
                history.append(KvOperation(ident, index, "push", arg, _meaning(arg, bytes(reply)), call, tick))
                del busy[index]
        tick += 1
        if not ran and not busy and started >= operations:
            break
    return history


def check_history(history: Sequence[Operation], loose: bool = True) -> str | None:
    """``None`` if ``history`` is linearizable per key, else a readable report."""
    result = check_linearizable(history, _SpecAdapter(KvKeySpec(loose)), partition=op_key)
    if result.ok:
        return None
    assert result.violation is not None
    return result.violation.render()


def history_run(make: MakeServer, seed: int, operations: int, *, threads: int = 3) -> str | None:
    """Record and check one history (large memory: nothing is evicted, so the strict
    per-key spec applies)."""
    server = make(threads, 64 * 1024 * 1024, 2 * 1024 * 1024, seed)
    return check_history(record_history(server, seed, operations), loose=False)
