"""Sphinx: a thread-per-core, memcached-compatible key-value store on the emulated machine.

The architecture of the paper, step by step:

- **Threads and cores.** ``threads`` workers, one per emulated core. Each owns a
  :class:`~impl.sphinx_store.Partition` of the keys — the owner of a key is
  ``mmh3.hash(key, 1, signed=False) % threads`` (:meth:`Sphinx.owner_of`) — whose
  items live in a log-structured allocator in DRAM frames of a
  :class:`~impl.phys_mem.Machine` (:mod:`impl.sphinx_log`, the log contract of
  :mod:`spec.kv_api`).
- **Sockets.** A connection is a flow of the emulated :class:`~impl.nic_emu.Nic`. It is
  bound to a thread as ``SO_REUSEPORT`` does: ``reciprocal_scale(hash, threads)`` =
  ``(hash * threads) >> 32`` of the flow's RSS hash. Its bytes arrive as packets on the
  RX queue RSS picks; the core the queue's IRQ is bound to moves them into the socket
  (a *cross-core delivery* when that core is not the socket's thread). RSS takes the
  hash's low bits (indirection table) and ``reciprocal_scale`` its high bits, so with
  this default almost every packet is delivered across cores, as on Linux without
  ``SO_INCOMING_CPU`` or a reuseport BPF program. ``steering="incoming_cpu"`` binds
  the connection instead to the core serving its RX queue's IRQ when it is opened (what
  ``SO_INCOMING_CPU`` or an eBPF reuseport program achieves): no cross-core delivery
  while IRQs stay put (``irq_mode="affinity"``); with fewer queues than threads the
  threads without a queue get no connections.
- **Forwarding.** A request for a key owned by another thread is forwarded through an
  :class:`~impl.spsc.SpscRing` in emulated shared memory — one ring per ordered pair of
  threads (``ring_capacity`` slots). A ring slot carries an 8-byte sequence number
  indexing the pair's message table, where the message (the parsed request, the reply
  slot it answers) waits. After a push the sender increments the receiver's *doorbell*,
  an eventfd-like 8-byte counter in a shared DRAM frame; a core with a non-zero doorbell
  is runnable. The owner executes the request and sends the reply back the same way;
  the connection's thread writes it. When a ring is full the message stays in the
  sender's pending queue for that ring (in order) and is retried: nothing is dropped.
- **Reply order.** Every request that cannot be answered at once gets a reply slot in
  its connection's FIFO; replies are written only from the head of that FIFO, so
  pipelined requests are answered in order whichever threads serve them. A multi-key
  ``get`` is split by owner (one message per owner) and reassembled in key order.
  ``flush_all`` is broadcast to every thread and answered once all have flushed.
  ``stats`` sums the threads' counters (read directly, as memcached sums its per-thread
  stats).
- **Scheduling.** :meth:`Sphinx.step` runs one quantum on one runnable core, chosen by a
  generator seeded with ``seed``: serve the core's IRQs (at most :data:`QUANTUM`
  packets), drain its incoming rings (at most :data:`QUANTUM` messages), retry its
  pending pushes, then parse and execute at most :data:`QUANTUM` requests of its ready
  connections, and transmit what they wrote. Everything is deterministic in ``seed``.

Choices where the paper is silent: the ring variant is Lamport's; rings use 4 KiB frames
so ``ring_capacity`` is a power of two up to 496 (the original's 10,000 slots do not fit);
the connection's thread answers ``stats``/``version``/errors itself.

Transmission (memcached 1.6.18's, measured): what a quantum writes to a connection is
transmitted at the end of the quantum, and at once after a retrieval (``get gets gat
gats bget``), ``mn`` or ``quit``. A hang-up other than ``quit`` (``GET / HTTP/1.0``, a
line over 2048 bytes) and a retrieval naming a key over 250 bytes discard the replies
written since (``version\r\nGET / HTTP/1.0\r\n`` answers nothing,
``get a\r\nGET / HTTP/1.0\r\n`` answers the ``get``); they wait, unparsed, until every
reply up to the last retrieval is written. ``stats`` likewise waits until every earlier
request of its connection is answered, so its counters include them (memcached runs a
connection's requests in turn). memcached also transmits after every 20 requests of one
read event; Sphinx does not.
The counters count *key requests*: a one-key command or one owner's share of a multi-key
``get``; ``local`` ones ran on the connection's thread, ``forwarded`` ones went through a
ring.

Overridable hooks (for mutants; override in a subclass of :class:`Sphinx`):

- :meth:`Sphinx.owner_of` ``(key) -> thread`` — the key partition;
- :meth:`Sphinx.choose_victim_segment` ``(thread) -> segment`` — which closed segment
  to expire when none is free (default: the oldest);
- :meth:`Sphinx.place_forwarded_reply` ``(conn, slot, parts, data)`` — where a reply
  coming back from another thread goes in the connection's reply order (default: into
  its slot, written once every earlier slot is);
- :meth:`Sphinx.expiry_of` ``(exptime, now) -> expiry`` — how a command's exptime (or a
  ``flush_all`` delay) becomes a Unix time (default: memcached's ``realtime()`` rule,
  :func:`impl.sphinx_proto.to_expiry`);
- :meth:`Sphinx.flush_point` ``(oldest_live) -> oldest_live`` — the second from which a
  ``flush_all`` kills what was stored at or before it (0: none).

``stats`` lists, in memcached's order: ``pid uptime time version pointer_size
curr_connections total_connections cmd_get cmd_set cmd_flush cmd_touch get_hits
get_misses get_expired get_flushed delete_misses delete_hits incr_misses incr_hits
decr_misses decr_hits cas_misses cas_hits cas_badval touch_hits touch_misses
store_too_large bytes_read bytes_written limit_maxbytes threads bytes curr_items
total_items evictions``, then Sphinx's own ``segment_size segments segments_free
segment_expirations local_requests forwarded_requests``. ``pid`` is the process id
with a wall clock and 1 with the virtual clock.
"""

from __future__ import annotations

import os
import random
import struct
from collections import deque
from typing import Callable, Literal

import mmh3

from impl.nic_emu import Flow, IrqMode, Nic, ipv4, rss_hash
from impl.phys_mem import Machine
from impl.sphinx_proto import (
    BAD_CHUNK,
    BAD_EXPTIME,
    MN_REPLY,
    Control,
    GetOp,
    KeyOp,
    Request,
    parse_request,
    to_expiry,
)
from impl.sphinx_state import Connection as Connection
from impl.sphinx_log import StoredValue
from impl.sphinx_state import Message, SphinxCounters, Worker
from impl.sphinx_state import ReplySlot as ReplySlot
from impl.sphinx_store import CRLF, Partition
from impl.sphinx_store import Piece as Piece
from impl.spsc import SpscRing
from spec.kv_api import (
    DEFAULT_MEMORY,
    DEFAULT_THREADS,
    OWNER_HASH_SEED,
    PROCESS_STARTED_BEFORE,
    SEGMENT_SIZE,
    VERSION,
)
from spec.paging import PAGE_SIZE

#: Unix time at which the virtual clock starts (2023-11-14 22:13:20 UTC).
VIRTUAL_EPOCH = 1_700_000_000
#: How a connection is bound to a thread: ``reuseport`` (SO_REUSEPORT's hash, Linux's
#: default) or ``incoming_cpu`` (the core its RX queue's IRQ is bound to at connect time).
Steering = Literal["reuseport", "incoming_cpu"]
STEERINGS: tuple[Steering, ...] = ("reuseport", "incoming_cpu")
#: Work bound of one quantum (packets, messages, requests).
QUANTUM = 64
#: The server's address and port in flow tuples.
SERVER_IP = ipv4("10.0.0.1")
SERVER_PORT = 11211
_END = b"END\r\n"
_U64 = struct.Struct("<Q")
_MASK64 = (1 << 64) - 1
#: Commands that read every thread's counters: they wait until the connection's earlier
#: requests are answered (all executed), as memcached runs a connection's requests in turn.
_BARRIERS = frozenset(("stats", "stats_reset"))
#: Requests that discard the replies not yet transmitted: they wait until every reply up
#: to the last flush point (a retrieval, ``mn``) is written and so transmitted.
_DROPS = frozenset(("hangup", "bad_get_key"))


def key_owner(key: bytes, threads: int) -> int:
    """The thread owning ``key`` among ``threads``: unsigned MurmurHash3 x86_32, seed 1,
    modulo ``threads`` (the paper's partition; :meth:`Sphinx.owner_of`)."""
    return mmh3.hash(key, OWNER_HASH_SEED, signed=False) % threads


def default_flow(seed: int, conn_id: int) -> Flow:
    """The client flow of connection ``conn_id`` when none is given: hosts of 10/8 and
    ports from 32768, derived from the connection id and ``seed`` (:meth:`Sphinx.connect`)."""
    host = (seed * 2654435761 + conn_id // 28232) % 0xFFFFFE + 1
    return Flow(0x0A000000 | host, SERVER_IP, 32768 + conn_id % 28232, SERVER_PORT)


def reuseport_thread(flow: Flow, threads: int, rss_key: bytes) -> int:
    """The thread ``SO_REUSEPORT`` hands ``flow`` to among ``threads`` listening sockets:
    ``reciprocal_scale`` of the flow hash, ``(hash * threads) >> 32``."""
    return (rss_hash(flow, rss_key) * threads) >> 32


class Sphinx:
    """The store: ``threads`` workers over ``memory`` bytes of log (see the module doc).

    Satisfies :class:`spec.kv_api.KvServer`."""

    def __init__(
        self,
        threads: int = DEFAULT_THREADS,
        memory: int = DEFAULT_MEMORY,
        *,
        segment_size: int = SEGMENT_SIZE,
        seed: int = 0,
        ring_capacity: int = 256,
        clock: Callable[[], int] | None = None,
        nic_queues: int | None = None,
        irq_mode: Literal["affinity", "balance"] = "affinity",
        steering: Steering = "reuseport",
    ) -> None:
        if threads < 1:
            raise ValueError("Sphinx needs at least one thread")
        if steering not in STEERINGS:
            raise ValueError(f"unknown steering {steering!r} (reuseport or incoming_cpu)")
        self.steering: Steering = steering
        segments = memory // threads // segment_size if segment_size > 0 else 0
        if segments < 1:
            raise ValueError(
                f"{memory} bytes over {threads} threads leave no {segment_size}-byte segment"
            )
        if ring_capacity < 1 or ring_capacity & (ring_capacity - 1) or ring_capacity > 496:
            raise ValueError(f"ring_capacity must be a power of two in [1, 496], not {ring_capacity}")
        self.threads = threads
        self.memory = memory
        self.segment_size = segment_size
        self.segments_per_thread = segments
        self.seed = seed
        self.ring_capacity = ring_capacity
        self._virtual_now = VIRTUAL_EPOCH
        self._real_clock = clock
        self.clock: Callable[[], int] = clock if clock is not None else self._virtual_clock
        self.started = self.clock()
        self.pid = os.getpid() if clock is not None else 1
        region = -(-(segments * segment_size) // PAGE_SIZE) * PAGE_SIZE
        dram = PAGE_SIZE * (2 + threads * threads) + threads * region
        self.machine = Machine(dram)
        self._dram = self.machine.dram  # doorbells are read and written as DRAM words
        #: Cores that may have work (a superset of the runnable ones; see :meth:`runnable`).
        self._hint: set[int] = set()
        self.doorbells = self.machine.alloc_frame()
        self.workers: list[Worker] = []
        for t in range(threads):
            partition = Partition(self.machine, t, threads, segments, segment_size)
            partition.log.choose_victim = self._victim_chooser(t)
            worker = Worker(t, partition)
            worker.doorbell_addr = self.doorbells + 64 * (t % 64) + (t // 64) * 8
            self.workers.append(worker)
        if threads > 64 * 8:
            raise ValueError("at most 512 threads (one doorbell frame)")
        #: rings[src][dst] carries messages from thread src to thread dst.
        self.rings: list[list[SpscRing | None]] = [
            [SpscRing.allocate(self.machine, ring_capacity) if s != d else None for d in range(threads)]
            for s in range(threads)
        ]
        self.tables: list[list[dict[int, Message]]] = [[{} for _ in range(threads)] for _ in range(threads)]
        self._next_msg = [[0] * threads for _ in range(threads)]
        queues = nic_queues if nic_queues is not None else threads
        irq: IrqMode = irq_mode
        self.nic = Nic(queues, threads, irq_mode=irq, seed=seed)
        self.connections: dict[int, Connection] = {}
        self._by_flow: dict[int, Connection] = {}
        self._next_conn = 0
        self._rng = random.Random(seed)
        self.counters = SphinxCounters(threads)
        self.total_connections = 0
        self.open_connections = 0
        self.cmd_flush = 0
        self.bytes_read = 0
        self.bytes_written = 0

    # -- clock ---------------------------------------------------------------------
    def _virtual_clock(self) -> int:
        return self._virtual_now

    def advance_clock(self, seconds: int) -> None:
        """Move the virtual clock forward by ``seconds`` (>= 0); refused with a wall clock."""
        if self._real_clock is not None:
            raise RuntimeError("this Sphinx runs on a wall clock; it cannot be advanced")
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._virtual_now += seconds

    # -- hooks ---------------------------------------------------------------------
    def owner_of(self, key: bytes) -> int:
        """The thread owning ``key``: unsigned MurmurHash3 x86_32, seed 1, mod threads."""
        return key_owner(key, self.threads)

    def choose_victim_segment(self, thread: int) -> int:
        """The closed segment of ``thread`` to expire when none is free: the oldest."""
        return self.workers[thread].partition.log.closed[0]

    def place_forwarded_reply(self, conn: Connection, slot: ReplySlot, parts: list[int], data: list[Piece]) -> None:
        """Put a reply from another thread into ``conn``'s reply order: into ``slot``
        (``data[i]`` is part ``parts[i]``), then write every complete head slot."""
        for index, chunk in zip(parts, data):
            slot.parts[index] = chunk
        slot.missing -= len(parts)
        self._flush_slots(conn)

    def flush_point(self, oldest_live: int) -> int:
        """The flush point of a ``flush_all`` whose ``realtime(delay) - 1`` (or
        ``now - 1``) is ``oldest_live``; 0, no flush at all, when that is at or before
        memcached's ``process_started`` (its realtime() takes a Unix time at or before
        ``process_started + 1`` as that second, relative time 1)."""
        return oldest_live if oldest_live > self.started - PROCESS_STARTED_BEFORE else 0

    def expiry_of(self, exptime: int, now: int) -> int:
        """The Unix time a command's ``exptime`` names at ``now`` (0 = never): relative
        up to 30 days, else a Unix time; negative means already expired."""
        return to_expiry(exptime, now)

    def _victim_chooser(self, thread: int) -> Callable[[], int]:
        def choose() -> int:
            victim = self.choose_victim_segment(thread)
            if victim not in self.workers[thread].partition.log.closed:
                raise RuntimeError(f"victim segment {victim} of thread {thread} is not closed")
            self.counters.evicted_segments += 1
            return victim

        return choose

    # -- connections (the KvServer side) --------------------------------------------
    def connect(self, flow: tuple[str, int] | None = None) -> int:
        """Open a connection; ``flow`` optionally gives the client's (IPv4, port), else
        one is derived from the connection id and the seed. Returns the id."""
        conn_id = self._next_conn
        self._next_conn += 1
        if flow is None:
            src = default_flow(self.seed, conn_id)
        else:
            src = Flow(ipv4(flow[0]), SERVER_IP, flow[1], SERVER_PORT)
        if self.steering == "incoming_cpu":  # the core serving the flow's RX queue
            thread = self.nic.irq_core[self.nic.rx_queue_for(src)]
        else:  # SO_REUSEPORT: reciprocal_scale of the flow hash
            thread = reuseport_thread(src, self.threads, self.nic.rss_key)
        fid = self.nic.open_flow(src, thread)
        conn = Connection(conn_id, src, fid, thread)
        self.connections[conn_id] = conn
        self._by_flow[fid] = conn
        self.total_connections += 1
        self.open_connections += 1
        return conn_id

    def _conn(self, conn: int) -> Connection | None:
        """The live state of ``conn``; ``None`` once its client disconnected (the state
        is then forgotten); ``KeyError`` for an id never handed out."""
        c = self.connections.get(conn)
        if c is None and not 0 <= conn < self._next_conn:
            raise KeyError(f"no connection {conn}")
        return c

    def send(self, conn: int, data: bytes) -> None:
        """Bytes from the client of ``conn`` reach the NIC (processed by :meth:`step`);
        ignored once either side closed."""
        c = self._conn(conn)
        if c is None or c.server_closed or c.client_closed or not data:
            return
        self.bytes_read += len(data)
        self.nic.receive(c.fid, bytes(data))

    def receive(self, conn: int) -> bytes:
        """Everything the server transmitted to ``conn`` since the last call (nothing
        once its client disconnected)."""
        return b"".join([part if isinstance(part, bytes) else part.view() for part in self.receive_parts(conn)])

    def receive_parts(self, conn: int) -> list[bytes | StoredValue]:
        """What :meth:`receive` would return, as parts not joined: bytes, and stored
        values by reference (:meth:`StoredValue.view` shows their bytes; a part stays
        valid however long it is held). For servers that write replies with
        scatter-gather I/O instead of copying them."""
        c = self._conn(conn)
        if c is None or not c.to_client:
            return []
        parts = list(c.to_client)
        c.to_client.clear()
        c.to_client_size = 0
        return parts

    def closed(self, conn: int) -> bool:
        """Whether the server hung up on ``conn`` (or its client went away)."""
        c = self._conn(conn)
        return c is None or c.server_closed or c.client_closed

    def disconnect(self, conn: int) -> None:
        """The client of ``conn`` goes away; replies still in flight are dropped and
        the connection is forgotten (its NIC flow once its queued packets are
        dropped); the id is never reused and stays valid: closed, nothing to receive."""
        c = self._conn(conn)
        if c is None:
            return
        c.client_closed = True
        self._drop(c)
        del self.connections[c.id]

    def _drop(self, c: Connection) -> None:
        if c.dropped:
            return
        c.dropped = True
        self.open_connections -= 1
        self.nic.close_flow(c.fid)
        del self._by_flow[c.fid]
        self.workers[c.thread].ready.pop(c.id, None)
        c.slots.clear()
        c.out.clear()
        c.inbuf.clear()

    # -- scheduling ------------------------------------------------------------------
    def runnable(self) -> list[int]:
        """The cores that have work, in increasing order: an IRQ, a rung doorbell, a
        ready connection, or a pending push whose ring has room.

        Only the cores of the *hint* are examined: every event that can give a core
        work adds it there (a push rings its doorbell, a pop frees room for its
        producer's pending pushes, a delivery or a resumed connection readies its
        thread, a quantum may leave work on its own core; IRQs are read from the NIC
        whenever it holds packets), and a core found idle leaves it."""
        hint = self._hint
        nic = self.nic
        if nic.queued_packets:
            hint.update(nic.pending_cores())
        workers = self.workers
        if len(hint) == 1:  # the common case when a single request is in flight
            for core in hint:
                if self._has_work(workers[core]):
                    return [core]
            hint.clear()
            return []
        out = [core for core in sorted(hint) if self._has_work(workers[core])]
        self._hint = set(out)
        return out

    def _has_work(self, w: Worker) -> bool:
        return bool(
            w.ready
            or _U64.unpack_from(self._dram, w.doorbell_addr)[0]
            or (w.pending and self._can_retry(w))
            or (self.nic.queued_packets and self.nic.has_pending(w.index))
        )

    def _can_retry(self, w: Worker) -> bool:
        for dst, queue in w.pending.items():
            if queue:
                ring = self.rings[w.index][dst]
                assert ring is not None
                head = self.machine.read_u64(ring.head_addr)
                if ring.producer_tail - head < ring.capacity:
                    return True
        return False

    def step(self) -> bool:
        """Run one quantum on a runnable core chosen by the seeded scheduler; False if
        no core is runnable."""
        cores = self.runnable()
        if not cores:
            return False
        core = cores[0] if len(cores) == 1 else self._rng.choice(cores)
        self.run_core(core)
        return True

    def settle(self) -> None:
        """Step until no core is runnable."""
        while self.step():
            pass

    def run_core(self, core: int) -> None:
        """One quantum of ``core``: IRQs, incoming messages, retries, requests, output."""
        w = self.workers[core]
        workers = self.workers
        by_flow = self._by_flow
        hint = self._hint
        hint.add(core)  # what this quantum leaves undone
        nic = self.nic
        delivered = nic.service(core, QUANTUM) if nic.queued_packets else []
        for fid, payload in delivered:
            c = by_flow[fid]
            if c.server_closed or c.client_closed:
                continue
            c.inbuf += payload
            workers[c.thread].ready[c.id] = c
            hint.add(c.thread)
        touched: dict[int, Connection] = {}
        self._drain_rings(w, touched)
        if w.pending:
            self._retry_pending(w)
        budget = QUANTUM
        for c in list(w.ready.values()):
            if budget <= 0:
                break
            budget = self._process_connection(w, c, budget)
            touched[c.id] = c
        for c in touched.values():
            # A connection stalled at a barrier is still inside its read (memcached runs
            # the read's requests in one go): what it wrote so far waits for the read's end.
            if not c.stalled:
                self._transmit(w, c)

    def _transmit(self, w: Worker, c: Connection) -> None:
        if c.out and not c.client_closed:
            size = 0
            to_client = c.to_client
            for piece in c.out:
                if isinstance(piece, bytes):
                    to_client.append(piece)
                    size += len(piece)
                else:  # a VALUE block: its head, the stored value by reference, CRLF
                    to_client += (piece.head, piece.value, CRLF)
                    size += piece.size
            c.out.clear()
            self.nic.transmit(w.index, size)
            self.bytes_written += size
            c.to_client_size += size
        else:
            c.out.clear()

    # -- messages ----------------------------------------------------------------------
    def _send_message(self, src: Worker, dst: int, msg: Message) -> None:
        queue = src.pending.get(dst)
        if queue:
            queue.append(msg)
            self._retry_pending(src)
            return
        if not self._push(src.index, dst, msg):
            src.pending.setdefault(dst, deque()).append(msg)

    def _push(self, src: int, dst: int, msg: Message) -> bool:
        ring = self.rings[src][dst]
        assert ring is not None
        seq = self._next_msg[src][dst]
        if not ring.try_push(seq):
            self.counters.ring_full += 1
            return False
        self._next_msg[src][dst] = seq + 1
        self.tables[src][dst][seq] = msg
        bell = self.workers[dst].doorbell_addr
        dram = self._dram
        _U64.pack_into(dram, bell, (_U64.unpack_from(dram, bell)[0] + 1) & _MASK64)
        self._hint.add(dst)
        return True

    def _retry_pending(self, w: Worker) -> None:
        drained = []
        for dst, queue in w.pending.items():
            while queue and self._push(w.index, dst, queue[0]):
                queue.popleft()
            if not queue:
                drained.append(dst)
        for dst in drained:  # only rings with messages waiting are kept
            del w.pending[dst]

    def _drain_rings(self, w: Worker, touched: dict[int, Connection]) -> None:
        bell = w.doorbell_addr
        dram = self._dram
        if not _U64.unpack_from(dram, bell)[0]:
            return  # no doorbell: no ring is polled
        budget = QUANTUM
        me = w.index
        more = False
        for src in range(self.threads):
            ring = self.rings[src][me]
            if ring is None or ring.is_empty():
                continue  # empty: skip the pop
            table = self.tables[src][me]
            popped = False
            while True:
                if budget <= 0:
                    more = True
                    break
                seq = ring.try_pop()
                if seq is None:
                    break
                popped = True
                budget -= 1
                self._handle_message(w, table.pop(seq), touched)
            if popped and self.workers[src].pending.get(me):
                self._hint.add(src)  # room for the producer's pending pushes
        _U64.pack_into(dram, bell, 1 if more else 0)

    def _handle_message(self, w: Worker, msg: Message, touched: dict[int, Connection]) -> None:
        if msg.src != w.index:  # a request for this thread's keys
            self._execute_remote(w, msg)
            self._send_message(w, msg.src, msg)
            return
        c = msg.conn  # a reply coming home
        if c.server_closed or c.client_closed:
            return
        self.place_forwarded_reply(c, msg.slot, msg.parts, msg.reply)
        touched[c.id] = c

    def _execute_remote(self, w: Worker, msg: Message) -> None:
        op = msg.op
        part = w.partition
        if isinstance(op, KeyOp):
            self.counters.executed_per_thread[w.index] += 1
            msg.reply = [part.execute(op)]
        elif isinstance(op, GetOp):
            self.counters.executed_per_thread[w.index] += 1
            msg.reply = part.get(op, msg.keys)
        else:  # a broadcast flush
            part.flush(op.deadline, self.clock())
            msg.reply = [b""]
        # the message now travels back to msg.src

    # -- requests ----------------------------------------------------------------------
    def _process_connection(self, w: Worker, c: Connection, budget: int) -> int:
        """Parse and run ``c``'s complete requests within ``budget``; returns what is
        left of it. Removes ``c`` from the ready set once it waits for bytes."""
        buf = c.inbuf
        pos = 0
        counters = self.counters
        while budget > 0 and not c.server_closed:
            if c.swallow:
                take = min(c.swallow, len(buf) - pos)
                c.swallow -= take
                pos += take
                if c.swallow:
                    break
            # Where the line ends: searched from where the last search stopped, so that
            # a line arriving in many pieces is scanned once in all (linear, not quadratic).
            newline = buf.find(b"\n", c.scanned if c.scanned > pos else pos)
            if newline < 0:
                c.scanned = len(buf)
                newline = len(buf)
            parsed = parse_request(buf, pos, self.clock(), self.segment_size, scan_from=newline, expiry=self.expiry_of)
            if parsed is None:
                break
            consumed, request, swallow = parsed
            if isinstance(request, Control) and c.slots:
                kind = request.kind
                wait = c.next_seq if kind in _BARRIERS else c.flush_seq if kind in _DROPS else 0
                if c.written_seq < wait:
                    c.stalled = True  # parsed again once the replies it waits for are written
                    c.wait_seq = wait
                    break
            pos += consumed
            c.swallow = swallow
            budget -= 1
            counters.requests += 1
            counters.per_thread[w.index] += 1
            self._dispatch(w, c, request)
        if c.server_closed:
            return budget
        del buf[:pos]
        c.scanned = max(0, c.scanned - pos)
        if budget > 0:  # stopped for want of bytes, or stalled
            w.ready.pop(c.id, None)
        return budget

    def _reply_now(
        self, c: Connection, data: Piece | list[Piece], close_after: bool = False, flush: bool = False
    ) -> None:
        if flush:
            c.flush_seq = c.next_seq + 1
        if not c.slots:
            if isinstance(data, list):
                c.out.extend(data)
            elif data:
                c.out.append(data)
            c.next_seq += 1
            c.written_seq += 1
            if close_after:
                self._close(c)
            elif flush:
                self._transmit(self.workers[c.thread], c)
            return
        parts: list[Piece | None] = list(data) if isinstance(data, list) else [data]
        c.slots.append(ReplySlot(c.next_seq, parts, 0, close_after, flush))
        c.next_seq += 1
        self._flush_slots(c)  # complete slots a drop left behind (see ``bad_get_key``)

    def _new_slot(self, c: Connection, parts: list[Piece | None], missing: int, flush: bool = False) -> ReplySlot:
        slot = ReplySlot(c.next_seq, parts, missing, flush=flush)
        c.next_seq += 1
        if flush:
            c.flush_seq = c.next_seq
        c.slots.append(slot)
        return slot

    def _flush_slots(self, c: Connection) -> None:
        """Write every complete slot at the head of ``c``'s reply order; a flush slot is
        transmitted at once. A stalled connection's slots are written only up to what
        it waits for, and the connection is ready again once they are."""
        slots = c.slots
        while slots and slots[0].missing == 0 and not (c.stalled and c.written_seq >= c.wait_seq):
            slot = slots.popleft()
            c.written_seq += 1
            if not slot.silenced:
                for part in slot.parts:
                    if part:
                        c.out.append(part)
            if slot.close_after:
                self._close(c)
                return
            if slot.flush:
                self._transmit(self.workers[c.thread], c)
        if c.stalled and c.written_seq >= c.wait_seq:
            c.stalled = False
            self.workers[c.thread].ready[c.id] = c
            self._hint.add(c.thread)

    def _close(self, c: Connection) -> None:
        """The server hangs up after what was written so far."""
        c.server_closed = True
        w = self.workers[c.thread]
        self._transmit(w, c)
        self._drop(c)

    def _dispatch(self, w: Worker, c: Connection, request: Request) -> None:
        counters = self.counters
        if isinstance(request, KeyOp):
            owner = self.owner_of(request.key)
            if owner == w.index:
                counters.local += 1
                counters.executed_per_thread[owner] += 1
                self._reply_now(c, w.partition.execute(request))
                return
            counters.forwarded += 1
            slot = self._new_slot(c, [None], 1)
            self._send_message(w, owner, Message(w.index, c, slot, [0], request, [request.key]))
            return
        if isinstance(request, GetOp):
            self._dispatch_get(w, c, request)
            return
        if isinstance(request, bytes):
            self._reply_now(c, request, flush=request == MN_REPLY)
            return
        kind = request.kind
        if kind == "hangup":
            c.out.clear()
            c.server_closed = True
            self._drop(c)
        elif kind == "bad_flush":  # memcached counts flush_cmds before parsing the delay
            self.cmd_flush += 1
            self._reply_now(c, b"" if request.noreply else BAD_EXPTIME)
        elif kind == "bad_chunk":  # memcached counts set_cmds before checking the block
            w.partition.stats.cmd_set += 1
            self._reply_now(c, b"" if request.noreply else BAD_CHUNK)
        elif kind == "bad_get_key":
            c.out.clear()
            for slot in c.slots:
                slot.silenced = True
            if request.prefix is not None:  # looked up (counted, touched), never answered
                self._dispatch_get(w, c, request.prefix, silent=True)
            self._reply_now(c, b"CLIENT_ERROR bad command line format\r\n")
        elif kind == "quit":
            self._reply_now(c, b"", close_after=True)
        elif kind == "flush":
            self._dispatch_flush(w, c, request)
        elif kind == "stats":
            self._reply_now(c, self.stats_text())
        elif kind == "stats_reset":
            for worker in self.workers:
                worker.partition.stats.reset()
            self.cmd_flush = 0
            self.total_connections = 0
            self._reply_now(c, b"RESET\r\n")
        else:  # stats settings
            self._reply_now(c, self.settings_text())

    def _dispatch_get(self, w: Worker, c: Connection, op: GetOp, silent: bool = False) -> None:
        """Run a retrieval (split by owner); its reply is a flush point, or, ``silent``,
        discarded (the keys before a bad one)."""
        keys = op.keys
        counters = self.counters
        me = w.index
        if len(keys) == 1:
            owner = self.owner_of(keys[0])
            if owner == me:
                counters.local += 1
                counters.executed_per_thread[me] += 1
                piece = w.partition.get(op, keys)[0]
                self._reply_now(c, b"" if silent else [piece, _END] if piece else _END, flush=not silent)
                return
            groups: dict[int, list[int]] = {owner: [0]}
        else:
            groups = {}
            for i, key in enumerate(keys):
                groups.setdefault(self.owner_of(key), []).append(i)
        parts: list[Piece | None] = [None] * len(keys)
        parts.append(_END)
        local = groups.pop(me, None)
        if local is not None:
            counters.local += 1
            counters.executed_per_thread[me] += 1
            for i, chunk in zip(local, w.partition.get(op, [keys[i] for i in local])):
                parts[i] = chunk
        if not groups:
            self._reply_now(c, b"" if silent else [p for p in parts if p], flush=not silent)
            return
        missing = sum(len(g) for g in groups.values())
        slot = self._new_slot(c, parts, missing, flush=not silent)
        slot.silenced = silent
        for owner, indices in groups.items():
            counters.forwarded += 1
            self._send_message(w, owner, Message(me, c, slot, indices, op, [keys[i] for i in indices]))

    def _dispatch_flush(self, w: Worker, c: Connection, op: Control) -> None:
        self.cmd_flush += 1
        op.deadline = self.flush_point(op.deadline)
        w.partition.flush(op.deadline, self.clock())
        ok = b"" if op.noreply else b"OK\r\n"
        others = [t for t in range(self.threads) if t != w.index]
        if not others:
            self._reply_now(c, ok)
            return
        parts: list[Piece | None] = [None] * len(others)
        parts.append(ok)
        slot = self._new_slot(c, parts, len(others))
        for i, t in enumerate(others):
            self._send_message(w, t, Message(w.index, c, slot, [i], op, []))

    # -- stats -------------------------------------------------------------------------
    def stats_values(self) -> list[tuple[str, str]]:
        """The ``stats`` lines as (name, value), summed over threads."""
        now = self.clock()
        totals: dict[str, int] = {}
        for w in self.workers:
            for name, value in w.partition.stats.as_dict().items():
                totals[name] = totals.get(name, 0) + value
        logs = [w.partition.log for w in self.workers]
        curr = sum(len(log.index) for log in logs)
        live_bytes = sum(log.live_bytes() for log in logs)
        t = totals
        rows: list[tuple[str, object]] = [
            ("pid", self.pid), ("uptime", now - self.started), ("time", now),
            ("version", VERSION), ("pointer_size", 64),
            ("curr_connections", self.open_connections), ("total_connections", self.total_connections),
            ("cmd_get", t["cmd_get"]), ("cmd_set", t["cmd_set"]), ("cmd_flush", self.cmd_flush),
            ("cmd_touch", t["cmd_touch"]), ("get_hits", t["get_hits"]),
            ("get_misses", t["get_misses"]), ("get_expired", t["get_expired"]),
            ("get_flushed", t["get_flushed"]), ("delete_misses", t["delete_misses"]),
            ("delete_hits", t["delete_hits"]), ("incr_misses", t["incr_misses"]),
            ("incr_hits", t["incr_hits"]), ("decr_misses", t["decr_misses"]),
            ("decr_hits", t["decr_hits"]), ("cas_misses", t["cas_misses"]),
            ("cas_hits", t["cas_hits"]), ("cas_badval", t["cas_badval"]),
            ("touch_hits", t["touch_hits"]), ("touch_misses", t["touch_misses"]),
            ("store_too_large", t["store_too_large"]), ("bytes_read", self.bytes_read),
            ("bytes_written", self.bytes_written), ("limit_maxbytes", self.memory),
            ("threads", self.threads), ("bytes", live_bytes), ("curr_items", curr),
            ("total_items", t["total_items"]), ("evictions", t["evictions"]),
            ("segment_size", self.segment_size),
            ("segments", self.segments_per_thread * self.threads),
            ("segments_free", sum(len(log.free) for log in logs)),
            ("segment_expirations", sum(log.expired_segments for log in logs)),
            ("local_requests", self.counters.local),
            ("forwarded_requests", self.counters.forwarded),
        ]
        return [(name, str(value)) for name, value in rows]

    def stats_text(self) -> bytes:
        """The reply to ``stats``."""
        lines = [f"STAT {name} {value}\r\n" for name, value in self.stats_values()]
        return ("".join(lines) + "END\r\n").encode()

    def settings_text(self) -> bytes:
        """The reply to ``stats settings``."""
        rows = [
            ("maxbytes", self.memory), ("maxconns", 1024), ("tcpport", SERVER_PORT),
            ("evictions", "on"), ("num_threads", self.threads),
            ("item_size_max", 1024 * 1024), ("segment_size", self.segment_size),
            ("ring_capacity", self.ring_capacity),
        ]
        return ("".join(f"STAT {k} {v}\r\n" for k, v in rows) + "END\r\n").encode()

    # -- inspection ----------------------------------------------------------------------
    def keys_by_thread(self) -> dict[int, set[bytes]]:
        """Which keys each thread's index holds (dead ones not yet noticed included)."""
        return {w.index: set(w.partition.log.index) for w in self.workers}

    def check_invariants(self) -> None:
        """Assert every internal invariant: each thread's index <-> log consistency and
        segment accounting (:meth:`SegmentLog.check_invariants`); every indexed key is
        owned by its thread; ring indices within capacity and one message-table entry
        per message in flight; each connection's reply slots consecutive from the next
        one to write, each slot's ``missing`` equal to its unfilled parts; every core with
        work in the scheduler's hint; the connection and flow tables hold exactly the
        connections not yet disconnected; the machine and the NIC."""
        self.machine.check_invariants()
        self.nic.check_invariants()
        pending_irq = self.nic.pending_cores()
        for w in self.workers:
            busy = (
                w.index in pending_irq or w.ready or self.machine.read_u64(w.doorbell_addr) or self._can_retry(w)
            )
            assert not busy or w.index in self._hint or w.index in pending_irq, (
                f"core {w.index} has work but is not in the scheduler's hint"
            )
        for w in self.workers:
            w.partition.log.check_invariants()
            for key in w.partition.log.index:
                assert self.owner_of(key) == w.index, f"thread {w.index} holds {key!r} it does not own"
        for s in range(self.threads):
            for d in range(self.threads):
                ring = self.rings[s][d]
                if ring is None:
                    continue
                ring.check_invariants()
                head = self.machine.read_u64(ring.head_addr)
                tail = self.machine.read_u64(ring.tail_addr)
                assert tail == self._next_msg[s][d], f"ring {s}->{d} tail {tail} != messages sent"
                in_flight = set(range(head, tail))
                assert set(self.tables[s][d]) == in_flight, (
                    f"ring {s}->{d}: message table {sorted(self.tables[s][d])[:4]} != in flight"
                )
        assert self.open_connections == sum(1 for c in self.connections.values() if not c.dropped)
        assert set(self._by_flow) == {c.fid for c in self.connections.values() if not c.dropped}, (
            "the flow map holds a connection that is closed or forgotten"
        )
        for w in self.workers:
            for c in w.ready.values():
                assert not c.dropped and c.thread == w.index, f"ready connection {c.id} is closed or elsewhere"
        for c in self.connections.values():
            assert not c.client_closed, f"connection {c.id} was disconnected but is kept"
            if c.server_closed or c.client_closed:
                assert not c.slots, f"closed connection {c.id} holds reply slots"
                continue
            assert not c.stalled or c.slots, f"connection {c.id} stalled with no reply to wait for"
            assert c.written_seq + len(c.slots) == c.next_seq, (
                f"connection {c.id}: written {c.written_seq} + {len(c.slots)} slots != next {c.next_seq}"
            )
            for i, slot in enumerate(c.slots):
                assert slot.seq == c.written_seq + i, f"connection {c.id}: slot order broken at {i}"
                unfilled = sum(1 for p in slot.parts if p is None)
                assert slot.missing == unfilled, (
                    f"connection {c.id} slot {slot.seq}: missing {slot.missing} != {unfilled} unfilled"
                )
