"""The discrete-event simulator: the emulated machine in virtual time, one design at a time.

Every step costs what :mod:`memoracle.sphinx.sim.costs` says, on the core the step runs
on; **a core runs one thing at a time**, so work that finds its core busy waits, and
that waiting is the queueing delay the latencies show.

What runs where (both designs; the differences are only the paper's):

1. A request arrives at the NIC at its arrival time and is queued on its flow's RX queue
   (:meth:`impl.nic_emu.Nic.receive`); the core serving that queue's IRQ gets an IRQ.
2. **IRQ** (on the IRQ core, before any thread work there): ``irq_entry`` once, then
   :meth:`impl.nic_emu.Nic.service` hands over up to ``napi_budget`` packets of every
   queue bound to that core, ``rx_packet`` each, plus ``wake_call`` for every sleeping
   thread it wakes. At the end each request is in its socket and the socket's thread has
   work.
3. A thread with no work **sleeps** (in ``epoll_wait``). Waking it from another core takes
   ``wake_ipi`` (a delay), then ``context_switch`` on its own core; from its own core,
   only the switch.
4. **Request** (on the connection's thread): ``epoll + recv + parse + hash``, plus
   ``packet_lines`` cache-line transfers if the IRQ ran on another core. Then:

   - *Sphinx*: if the thread owns the key, ``lookup`` (get) or ``store`` (set) and
     ``send``; otherwise ``spsc_push`` and the owner gets a **message**: ``spsc_pop``,
     the message's lines (and a set's value) from the sender's core,
     ``lookup``/``store``, ``spsc_push`` back; the connection's thread then handles the
     **reply**: ``spsc_pop``, the reply's lines (and a get's value), ``send``. Replies
     leave in request order per connection (Sphinx's reply slots). A push to a thread
     that is **asleep** is followed by a **doorbell** step on the sender
     (``eventfd_write + wake_call``), and the woken thread pays ``eventfd_read`` once
     before its rings; a push to an awake thread rings nothing (the original checks the
     receiver's "sleeping" flag after the push, and a thread checks its rings before it
     sleeps).
   - *memcached-style*: one shared table. A get takes its key's item-lock stripe for
     ``lock_op + lookup``; a set takes the global slabs lock (``mc_alloc_hold``), copies
     the value (``store``), takes the item stripe, then the global LRU lock
     (``mc_lru_hold``). Every lock section also pays the lock's line, and the item's
     ``item_lines`` (the LRU's ``lru_lines``), from the core that last held/touched
     them. Then ``send``.

5. A request's latency runs from its arrival at the NIC to the end of its reply's
   ``send``, plus ``client_wire``.

Locks are FIFO; a waiter **spins** on its core until the lock is free (the core is busy
for the whole wait), as an adaptive mutex's spin phase. glibc's default mutex, which
memcached uses, sleeps instead, which costs a waiter a wake-up more: this choice is
favourable to the memcached-style design. Lock sections are not nested (memcached holds
the item lock around the LRU link; with 8,192 stripes the difference is negligible).

Scheduling is non-preemptive per step: a step in progress finishes; then the core runs
its pending IRQ, then its woken thread's switch-in, then that thread's next step. An IRQ
in real Linux preempts the thread at once; here it waits for the current step (at most a
few microseconds).

Not modelled: SMT sharing, C-states deeper than the ``wake_ipi`` delay, TX completion
interrupts, TCP acknowledgements, ring capacity (10,000 slots in the original: never
full at these loads), Nagle and batching of several requests per ``recv``.

Guarantees (checked as it runs, or from its trace — :mod:`memoracle.sphinx.sim.trace`):
virtual time never goes back; every request is answered exactly once; a core runs one
step at a time; a lock is held by one core at a time; per connection, replies in order.
Deterministic: the same :class:`RunSpec` gives the same result.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from memoracle.sphinx.sim.costs import STRUCTURE, Costs
from memoracle.sphinx.sim.machines import MACHINES, Design, IrqConfig, Placement, place

# Step kinds (what a core runs).
IDLE, IRQ, WAKE, REQUEST, MESSAGE, REPLY, DOORBELL = -1, 0, 1, 2, 3, 4, 5
STEP_NAMES = {IRQ: "irq", WAKE: "wake", REQUEST: "request", MESSAGE: "message", REPLY: "reply", DOORBELL: "doorbell"}
# Thread states.
SLEEPING, WAKING, RUNNABLE, AWAKE = 0, 1, 2, 3
# Event kinds.
EV_STEP, EV_READY, EV_BALANCE, EV_ARRIVE = 0, 1, 2, 3
#: How requests arrive: ``open`` — Poisson arrivals per connection at a fixed rate,
#: whatever the replies; ``closed`` — mutilate's default (no ``--qps``): one request
#: outstanding per connection, the next sent as soon as the reply reaches the client
#: (``client_wire`` after the server sent it, the new request included).
LOOPS = ("open", "closed")

#: The percentiles a run reports (as shares).
PERCENTILES = (0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
#: Keys of the workload (mutilate's default record count) and their sizes.
KEYS = 10_000
KEY_SIZE = 30
VALUE_SIZE = 200


class SimulationError(AssertionError):
    """An invariant of the simulation broke (a bug in the simulator or a mutant)."""


@dataclass(frozen=True)
class RunSpec:
    """One point of the experiment: a design on a machine under a workload.

    ``rate_per_connection`` is each connection's Poisson arrival rate (requests per
    virtual second) with ``loop="open"``, unused with ``loop="closed"``; ``requests`` how
    many arrive in all; the first ``warmup`` share of them is left out of the
    percentiles. ``arrivals`` (tests only) replaces the Poisson process by explicit
    ``(time_ns, connection, key index)`` triples."""

    design: Design
    machine: str
    irq_config: IrqConfig
    workload: str  # "read" or "update"
    connections: int
    requests: int
    rate_per_connection: float
    seed: int = 0
    warmup: float = 0.1
    costs: Costs = field(default_factory=Costs)
    arrivals: tuple[tuple[int, int, int], ...] | None = None
    loop: str = "open"

    def __post_init__(self) -> None:
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be open or closed, not {self.loop!r}")
        if self.workload not in ("read", "update"):
            raise ValueError(f"workload must be read or update, not {self.workload!r}")
        if self.machine not in MACHINES:
            raise ValueError(f"unknown machine {self.machine!r} ({', '.join(MACHINES)})")
        if self.connections < 1 or self.requests < 1 or self.rate_per_connection <= 0:
            raise ValueError("connections, requests and the rate must be positive")
        if not 0 <= self.warmup < 1:
            raise ValueError("warmup is a share in [0, 1)")


@dataclass
class Trace:
    """What a checked run records: per core its steps ``(start, end, kind, request)``,
    per lock its holds ``(grant, release, core)``, every event time in order, and each
    request's arrival and answer times."""

    steps: dict[int, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    holds: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    event_times: list[int] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # request ids, in answer order
    arrival: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    connection: list[int] = field(default_factory=list)


@dataclass
class RunResult:
    """One run's outcome: latency percentiles (µs, ``client_wire`` included), the
    virtual time it covered, core utilisation, and what happened on the way."""

    percentiles_us: dict[str, float]
    mean_us: float
    measured: int
    virtual_ns: int
    utilisation: float
    busiest_core_utilisation: float
    forwarded_share: float
    lock_wait_us_per_request: float
    irq_moves: int
    events: int
    latencies_ns: list[int] | None = None

    def as_plain(self) -> dict[str, Any]:
        """The result as plain values (for shards, journals and JSON)."""
        return {
            "percentiles_us": self.percentiles_us, "mean_us": self.mean_us, "measured": self.measured,
            "virtual_ns": self.virtual_ns, "utilisation": self.utilisation,
            "busiest_core_utilisation": self.busiest_core_utilisation, "forwarded_share": self.forwarded_share,
            "lock_wait_us_per_request": self.lock_wait_us_per_request, "irq_moves": self.irq_moves,
            "events": self.events,
        }  # fmt: skip


def percentile_label(share: float) -> str:
    """``0.99`` → ``"p99"``, ``0.999`` → ``"p99.9"``."""
    text = f"{share * 100:.1f}".rstrip("0").rstrip(".")
    return f"p{text}"


def percentiles_of(latencies: Sequence[int], shares: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """Nearest-rank percentiles of ``latencies`` (ns), in µs."""
    ordered = sorted(latencies)
    count = len(ordered)
    out: dict[str, float] = {}
    for share in shares:
        rank = max(1, -(-int(round(share * count * 1000)) // 1000))  # ceil(share * count)
        out[percentile_label(share)] = ordered[min(rank, count) - 1] / 1000.0
    return out


def workload_keys() -> list[bytes]:
    """The 10,000 keys of 30 bytes (the benchmark's key space)."""
    from memoracle.sphinx.peers import workload_key

    return [workload_key(index, KEY_SIZE) for index in range(KEYS)]


class Simulation:
    """One run of :class:`RunSpec` (see the module docstring). ``trace=True`` records a
    :class:`Trace` for :func:`memoracle.sphinx.sim.trace.check_trace`.

    Hooks for mutants: :meth:`lock_grant` (when a waiter gets a lock) and
    :meth:`irq_lane` (the core an IRQ's step occupies)."""

    def __init__(self, spec: RunSpec, *, trace: bool = False, keep_latencies: bool = False) -> None:
        self.spec = spec
        self.machine = MACHINES[spec.machine]
        self.keys = workload_keys()
        self.placement: Placement = place(
            self.machine, spec.irq_config, spec.design, spec.connections, self.keys,
            seed=spec.seed, stripes=STRUCTURE["item_lock_stripes"][0],
        )  # fmt: skip
        self.trace: Trace | None = Trace() if trace else None
        self.keep_latencies = keep_latencies

    # -- hooks ---------------------------------------------------------------------
    def lock_grant(self, request_ns: int, free_at: int) -> int:
        """When a core asking for a lock at ``request_ns`` gets it, the lock being busy
        until ``free_at``: FIFO, at once if free."""
        return request_ns if request_ns >= free_at else free_at

    def irq_lane(self, core: int, cores: int) -> int:
        """The lane (core) whose time an IRQ step on ``core`` occupies: the core itself."""
        return core

    # -- the run -------------------------------------------------------------------
    def arrivals(self) -> tuple[list[int], list[int], list[int]]:
        """Arrival times (ns), connections and key indices of every request: Poisson
        arrivals per connection, merged (a Poisson process of the summed rate whose
        arrivals go to a uniformly chosen connection); keys uniform."""
        spec = self.spec
        if spec.arrivals is not None:
            ordered = sorted(spec.arrivals)
            return [a[0] for a in ordered], [a[1] for a in ordered], [a[2] for a in ordered]
        rng = random.Random(spec.seed * 1_000_003 + 17)
        mean_gap = 1e9 / (spec.rate_per_connection * spec.connections)
        times: list[int] = []
        conns: list[int] = []
        keys: list[int] = []
        now = 0.0
        expovariate, randrange = rng.expovariate, rng.randrange
        rate = 1.0 / mean_gap
        count = spec.connections
        for _ in range(spec.requests):
            now += expovariate(rate)
            times.append(int(now))
            conns.append(randrange(count))
            keys.append(randrange(KEYS))
        return times, conns, keys

    def run(self) -> RunResult:  # noqa: C901 - one loop, bound to locals for speed
        """Run the simulation to the last reply; see the module docstring."""
        spec, machine, placement = self.spec, self.machine, self.placement
        c = spec.costs
        cost_client_wire = c.client_wire
        cost_context_switch = c.context_switch
        cost_epoll = c.epoll
        cost_eventfd_read = c.eventfd_read
        cost_eventfd_write = c.eventfd_write
        cost_hash = c.hash
        cost_irq_entry = c.irq_entry
        cost_line_cross_socket = c.line_cross_socket
        cost_line_same_socket = c.line_same_socket
        cost_lock_op = c.lock_op
        cost_lookup = c.lookup
        cost_mc_alloc_hold = c.mc_alloc_hold
        cost_mc_lru_hold = c.mc_lru_hold
        cost_parse = c.parse
        cost_recv = c.recv
        cost_rx_packet = c.rx_packet
        cost_send = c.send
        cost_spsc_pop = c.spsc_pop
        cost_spsc_push = c.spsc_push
        cost_store = c.store
        cost_wake_call = c.wake_call
        cost_wake_ipi = c.wake_ipi
        nic = placement.nic
        is_set = spec.workload == "update"
        sphinx = spec.design == "sphinx"
        ncores = machine.cores
        lanes = 2 * ncores  # lanes >= ncores exist only for the irq_lane hook
        socket_of = [machine.socket_of(core % ncores) for core in range(lanes)]
        line_same, line_cross = cost_line_same_socket, cost_line_cross_socket

        def line(src: int, dst: int) -> int:
            if src == dst or src < 0:
                return 0
            return line_same if socket_of[src] == socket_of[dst] else line_cross

        packet_lines = STRUCTURE["packet_lines"][0]
        message_lines = STRUCTURE["message_lines"][0]
        value_lines = STRUCTURE["value_lines"][0]
        item_lines = STRUCTURE["item_lines"][0]
        lru_lines = STRUCTURE["lru_lines"][0]
        stripes = STRUCTURE["item_lock_stripes"][0]
        budget = STRUCTURE["napi_budget"][0]
        balance_every = STRUCTURE["irqbalance_interval_ns"][0]
        SLABS, LRU = stripes, stripes + 1

        closed = spec.loop == "closed" and spec.arrivals is None
        times: list[int]
        req_conn: list[int]
        req_key: list[int]
        if closed:
            times, req_conn, req_key = [], [], []
            n = spec.requests
            client_rng = random.Random(spec.seed * 1_000_003 + 29)
        else:
            times, req_conn, req_key = self.arrivals()
            n = len(times)
        thread_core = placement.thread_core
        threads = len(thread_core)
        core_thread = [-1] * lanes
        for t, core in enumerate(thread_core):
            core_thread[core] = t
        conn_thread = placement.conn_thread
        conn_fid = placement.conn_fid
        fid_conn = {fid: conn for conn, fid in enumerate(conn_fid)}
        conn_queue = [nic.rx_queue_of(fid) for fid in conn_fid]
        irq_core = nic.irq_core  # live: the balancer changes it
        owner = placement.key_owner
        stripe_of = placement.key_stripe
        keys = self.keys
        value = b"v" * VALUE_SIZE
        payloads = [
            (b"set %s 0 0 %d\r\n%s\r\n" % (key, VALUE_SIZE, value)) if is_set else (b"get %s\r\n" % key)
            for key in keys
        ]  # fmt: skip

        # Per request.
        rx_core = [0] * n
        ready = [-1] * n
        done = [-1] * n
        # Per connection: requests in the NIC (FIFO) and awaiting their reply (in order).
        conn_rx: list[deque[int]] = [deque() for _ in range(spec.connections)]
        conn_out: list[deque[int]] = [deque() for _ in range(spec.connections)]
        # Per lane (core).
        cur_kind = [IDLE] * lanes
        cur_req = [-1] * lanes
        cur_start = [0] * lanes
        cur_phase = [0] * lanes
        irq_raised = [False] * lanes
        irq_batch: list[list[int]] = [[] for _ in range(lanes)]
        busy = [0] * lanes
        # Per thread.
        th_state = [SLEEPING] * threads
        th_work: list[deque[tuple[int, int]]] = [deque() for _ in range(threads)]
        th_bell = [False] * threads
        # Locks (memcached-style): stripes, then the slabs lock and the LRU lock.
        free_at = [0] * (stripes + 2)
        lock_last = [-1] * (stripes + 2)
        key_last = [-1] * len(keys)
        lock_wait = 0
        forwarded = 0

        trace = self.trace
        steps_log: dict[int, list[tuple[int, int, int, int]]] = {}
        holds_log: dict[int, list[tuple[int, int, int]]] = {}
        event_log: list[int] = []
        answered_log: list[int] = []
        if trace is not None:
            steps_log, holds_log, event_log, answered_log = trace.steps, trace.holds, trace.event_times, trace.answered

        heap: list[tuple[int, int, int, int]] = []
        push = heapq.heappush
        seq = 0
        grant_hook = self.lock_grant
        lane_of_irq = [self.irq_lane(core, ncores) for core in range(ncores)] + list(range(ncores, lanes))
        epoll_recv = cost_epoll + cost_recv + cost_parse + cost_hash
        touch = cost_store if is_set else cost_lookup
        completed = 0

        issued = 0

        def finish(r: int, now: int) -> None:
            """Request ``r``'s reply is sent at ``now``; replies leave in order per
            connection (and, closed-loop, the client's next request is on its way)."""
            nonlocal completed, issued, seq
            ready[r] = now
            out = conn_out[req_conn[r]]
            while out and ready[out[0]] >= 0:
                head = out.popleft()
                if done[head] >= 0:
                    raise SimulationError(f"request {head} answered twice")
                done[head] = now
                completed += 1
                if trace is not None:
                    answered_log.append(head)
                if closed and issued < n:
                    issued += 1
                    seq += 1
                    push(heap, (now + cost_client_wire, seq, EV_ARRIVE, req_conn[head]))

        woken_here: list[int] = []

        def wake(t: int, from_core: int, now: int) -> None:
            nonlocal seq
            if thread_core[t] == from_core:
                th_state[t] = RUNNABLE
                woken_here.append(t)
            else:
                th_state[t] = WAKING
                seq += 1
                push(heap, (now + cost_wake_ipi, seq, EV_READY, t))

        def schedule(lane: int, at: int) -> None:
            nonlocal seq
            seq += 1
            push(heap, (at, seq, EV_STEP, lane))

        def start(lane: int, kind: int, r: int, now: int, end: int) -> None:
            nonlocal seq
            cur_kind[lane] = kind
            cur_req[lane] = r
            cur_start[lane] = now
            seq += 1
            push(heap, (end, seq, EV_STEP, lane))

        def raise_irq(core: int, now: int) -> None:
            lane = lane_of_irq[core]
            irq_raised[lane] = True
            if cur_kind[lane] == IDLE:
                dispatch(lane, now)

        def dispatch(lane: int, now: int) -> None:
            """The idle ``lane`` picks its next step: IRQ, switch-in, thread work, or sleep."""
            nonlocal forwarded
            if irq_raised[lane]:
                irq_raised[lane] = False
                core = lane % ncores
                delivered = nic.service(core, budget) if nic.queued_packets else []
                batch = irq_batch[lane]
                cost = cost_irq_entry
                woken = set()
                for fid, _payload in delivered:
                    conn = fid_conn[fid]
                    batch.append(conn_rx[conn].popleft())
                    t = conn_thread[conn]
                    if th_state[t] == SLEEPING:
                        woken.add(t)
                cost += len(delivered) * cost_rx_packet + len(woken) * cost_wake_call
                start(lane, IRQ, -1, now, now + cost)
                return
            t = core_thread[lane]
            if t < 0:
                return
            state = th_state[t]
            if state == RUNNABLE:
                start(lane, WAKE, -1, now, now + cost_context_switch)
                return
            if state != AWAKE:
                return
            work = th_work[t]
            if not work:
                th_state[t] = SLEEPING
                return
            kind, r = work.popleft()
            core = lane
            key = req_key[r]
            if kind == REQUEST:
                pre = epoll_recv + packet_lines * line(rx_core[r], core)
                if sphinx:
                    o = owner[key]
                    if o == t:
                        start(lane, REQUEST, r, now, now + pre + touch + cost_send)
                    else:
                        forwarded += 1
                        start(lane, REQUEST, r, now, now + pre + cost_spsc_push)
                    return
                # memcached-style: run up to the first lock request (phase 1).
                cur_phase[lane] = 1
                start(lane, REQUEST, r, now, now + pre)
                return
            # Sphinx messages: a request at its owner, or a reply back home.
            cost = cost_spsc_pop
            if th_bell[t]:
                th_bell[t] = False
                cost += cost_eventfd_read
            home = thread_core[conn_thread[req_conn[r]]]
            if kind == MESSAGE:
                o_core = core
                cost += (message_lines + (value_lines if is_set else 0)) * line(home, o_core)
                cost += touch + cost_spsc_push
            else:
                o_core = thread_core[owner[key]]
                cost += (message_lines + (0 if is_set else value_lines)) * line(o_core, home) + cost_send
            start(lane, kind, r, now, now + cost)

        def lock_section(lane: int, lock: int, now: int, hold: int, extra_lines: int) -> int:
            """Take ``lock`` at ``now`` on ``lane``; spin until granted; hold it for
            ``hold`` plus the lines it moves; the time it is released."""
            nonlocal lock_wait
            granted = grant_hook(now, free_at[lock])
            lock_wait += granted - now
            core = lane % ncores
            moved = line(lock_last[lock], core) * (1 + extra_lines)
            release = granted + cost_lock_op + moved + hold
            free_at[lock] = release
            lock_last[lock] = core
            if trace is not None:
                holds_log.setdefault(lock, []).append((granted, release, core))
            return release

        def memcached_phase(lane: int, now: int) -> bool:
            """Advance the memcached-style request on ``lane`` at one of its lock
            requests; True when the request's last step ended at ``now``."""
            phase = cur_phase[lane]
            r = cur_req[lane]
            key = req_key[r]
            core = lane % ncores
            if phase == 0:
                return True
            if not is_set:  # get: item stripe, then send
                release = lock_section(lane, stripe_of[key], now, cost_lookup + item_lines * line(key_last[key], core), 0)
                key_last[key] = core
                cur_phase[lane] = 0
                schedule(lane, release + cost_send)
                return False
            if phase == 1:  # slabs lock: allocate the new item
                release = lock_section(lane, SLABS, now, cost_mc_alloc_hold, 0)
                cur_phase[lane] = 2
                schedule(lane, release + cost_store)
            elif phase == 2:  # item stripe: find and replace the old item
                release = lock_section(lane, stripe_of[key], now, cost_lookup + item_lines * line(key_last[key], core), 0)
                key_last[key] = core
                cur_phase[lane] = 3
                schedule(lane, release)
            else:  # LRU lock: link the new item, unlink the old one; then send
                release = lock_section(lane, LRU, now, cost_mc_lru_hold, lru_lines)
                cur_phase[lane] = 0
                schedule(lane, release + cost_send)
            return False

        def step_done(lane: int, now: int) -> None:
            """The step on ``lane`` ended at ``now``: apply its effect, pick the next."""
            kind = cur_kind[lane]
            r = cur_req[lane]
            if kind == REQUEST and not sphinx and not memcached_phase(lane, now):
                return  # still inside its lock sections
            began = cur_start[lane]
            busy[lane] += now - began
            if trace is not None:
                steps_log.setdefault(lane % ncores, []).append((began, now, kind, r))
            cur_kind[lane] = IDLE
            core = lane % ncores
            if kind == IRQ:
                batch = irq_batch[lane]
                for q in batch:
                    rx_core[q] = core
                    t = conn_thread[req_conn[q]]
                    th_work[t].append((REQUEST, q))
                    if th_state[t] == SLEEPING:
                        wake(t, core, now)
                batch.clear()
                if nic.queued_packets and nic.has_pending(core):
                    irq_raised[lane] = True
                dispatch(lane, now)
                if woken_here:
                    for t in woken_here:  # a thread woken from its own core, if its lane is free
                        if cur_kind[thread_core[t]] == IDLE:
                            dispatch(thread_core[t], now)
                    woken_here.clear()
                return
            t = core_thread[lane]
            target = -1  # the thread a message was pushed to
            if kind == WAKE:
                th_state[t] = AWAKE
            elif kind == REQUEST:
                if sphinx and owner[req_key[r]] != t:
                    target = owner[req_key[r]]
                    th_work[target].append((MESSAGE, r))
                else:
                    finish(r, now)
            elif kind == MESSAGE:
                target = conn_thread[req_conn[r]]
                th_work[target].append((REPLY, r))
            elif kind == REPLY:
                finish(r, now)
            if target >= 0 and th_state[target] == SLEEPING:  # ring its doorbell
                th_bell[target] = True
                wake(target, core, now)
                start(lane, DOORBELL, r, now, now + cost_eventfd_write + cost_wake_call)
                return
            if t >= 0 and kind != WAKE and not th_work[t]:
                th_state[t] = SLEEPING
            dispatch(lane, now)
        # Main loop: arrivals (pre-generated, in time order) merged with the event heap.
        pop = heapq.heappop
        i = 0
        now = 0
        last = 0
        events = 0
        if spec.irq_config == "balance":
            seq += 1
            push(heap, (balance_every, seq, EV_BALANCE, 0))
        receive = nic.receive

        def arrive(r: int, now: int) -> None:
            conn = req_conn[r]
            conn_rx[conn].append(r)
            conn_out[conn].append(r)
            receive(conn_fid[conn], payloads[req_key[r]])
            core = irq_core[conn_queue[conn]]
            if not irq_raised[lane_of_irq[core]]:
                raise_irq(core, now)

        if closed:  # every connection's first request, spread over one round trip
            for conn in range(spec.connections):
                if issued < n:
                    issued += 1
                    seq += 1
                    push(heap, (int(client_rng.random() * cost_client_wire), seq, EV_ARRIVE, conn))
            i = n  # no pre-generated arrivals
        while True:
            if i < n and (not heap or times[i] <= heap[0][0]):
                now = times[i]
                arrive(i, now)
                i += 1
            elif heap:
                now, _, ev, x = pop(heap)
                if ev == EV_STEP:
                    step_done(x, now)
                elif ev == EV_ARRIVE:
                    r = len(times)
                    times.append(now)
                    req_conn.append(x)
                    req_key.append(client_rng.randrange(KEYS))
                    arrive(r, now)
                elif ev == EV_READY:
                    th_state[x] = RUNNABLE
                    lane = thread_core[x]
                    if cur_kind[lane] == IDLE:
                        dispatch(lane, now)
                else:  # irqbalance pass
                    if completed < n:
                        nic.rebalance()
                        if nic.queued_packets:
                            for core in sorted(nic.pending_cores()):
                                if not irq_raised[lane_of_irq[core]]:
                                    raise_irq(core, now)
                        seq += 1
                        push(heap, (now + balance_every, seq, EV_BALANCE, 0))
            else:
                break
            if now < last:
                raise SimulationError(f"virtual time went back from {last} to {now} ns")
            last = now
            events += 1
            if trace is not None:
                event_log.append(now)

        if completed != n:
            missing = [r for r in range(n) if done[r] < 0][:5]
            raise SimulationError(f"{n - completed} of {n} requests never answered (first: {missing})")
        if trace is not None:
            trace.arrival = list(times)
            trace.done = list(done)
            trace.connection = list(req_conn)
        warm = int(n * spec.warmup)
        wire = cost_client_wire
        latencies = [done[r] - times[r] + wire for r in range(warm, n)]
        now = max(done)  # the last answer (an irqbalance pass may come later and do nothing)
        span = max(1, now)
        core_busy = [busy[lane] + busy[lane + ncores] for lane in range(ncores)]
        return RunResult(
            percentiles_us=percentiles_of(latencies),
            mean_us=sum(latencies) / len(latencies) / 1000.0,
            measured=len(latencies),
            virtual_ns=now,
            utilisation=sum(core_busy) / (span * ncores),
            busiest_core_utilisation=max(core_busy) / span,
            forwarded_share=forwarded / n,
            lock_wait_us_per_request=lock_wait / n / 1000.0,
            irq_moves=nic.counters.irq_moves,
            events=events,
            latencies_ns=latencies if self.keep_latencies else None,
        )


def simulate(spec: RunSpec) -> RunResult:
    """Run ``spec`` (no trace)."""
    return Simulation(spec).run()


__all__ = [
    "KEYS",
    "PERCENTILES",
    "RunResult",
    "RunSpec",
    "Simulation",
    "SimulationError",
    "Trace",
    "percentile_label",
    "percentiles_of",
    "simulate",
    "workload_keys",
]
