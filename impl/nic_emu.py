"""A multi-queue NIC: RX/TX queue pairs, RSS, and one IRQ per RX queue.

What it models (the parts of a real multi-queue NIC and its driver that decide *which
core sees which bytes*):

- **Flows.** A flow is a TCP connection identified by its 4-tuple (source IPv4 address,
  destination IPv4 address, source port, destination port). Bytes of a flow travel in
  order in both directions; the NIC cuts what a client sends into packets of at most
  :data:`MSS` bytes.
- **RSS.** The receive queue of a flow is ``indirection[hash & 127]`` where ``hash`` is
  the Toeplitz hash of the 12-byte input ``src ip | dst ip | src port | dst port``
  (network byte order) under a 40-byte key — by default Microsoft's published key
  :data:`MS_RSS_KEY`, so the hashes match Microsoft's RSS verification suite. The
  indirection table has :data:`INDIRECTION_ENTRIES` entries, filled round-robin over the
  queues (``ethtool -X equal``) unless set otherwise.
- **IRQs.** Each RX queue has one IRQ with an affinity mask of cores; the IRQ is served
  by the lowest-numbered core of the mask (the way an APIC in fixed-destination mode
  delivers it). ``irq_mode="affinity"`` keeps the masks as configured (default: queue
  ``q`` on core ``q % cores``). ``irq_mode="balance"`` starts from a seeded assignment
  and, like irqbalance, rebalances periodically by load: every
  ``rebalance_interval`` serviced IRQs it moves the busiest queue of the most loaded
  core to the least loaded core (ties broken by the seeded generator). Balancing
  overrides the masks, as irqbalance does.
- **TX.** A core transmits on TX queue ``core % queues`` (XPS); transmitted bytes reach
  the client at once (the wire is not modelled).

Counters (:class:`NicCounters`): packets and bytes per RX and TX queue, IRQs serviced per
core, and *cross-core deliveries* — packets whose IRQ ran on a core other than the one
whose thread owns the flow's socket (what IRQ affinity tries to avoid).

Everything is deterministic: hashes are pure, the balancing generator is seeded, and the
order of delivery is the order of arrival within a queue.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

#: Microsoft's default RSS key (the one in its "Verifying the RSS Hash Calculation" suite).
MS_RSS_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)
#: Entries of the RSS indirection table.
INDIRECTION_ENTRIES = 128
#: Largest TCP payload per packet (Ethernet MTU 1500 minus IP/TCP headers with timestamps).
MSS = 1448

IrqMode = Literal["affinity", "balance"]


def toeplitz_hash(key: bytes, data: bytes) -> int:
    """The 32-bit Toeplitz hash of ``data`` under ``key`` (``len(key) >= len(data) + 4``).

    For every bit of ``data`` that is set (most significant bit of the first byte
    first), the 32-bit window of ``key`` starting at that bit position is XORed into
    the result.
    """
    if len(key) < len(data) + 4:
        raise ValueError(f"a {len(data)}-byte input needs a key of at least {len(data) + 4} bytes")
    key_bits = len(key) * 8
    key_int = int.from_bytes(key, "big")
    result = 0
    for byte_index, byte in enumerate(data):
        for bit in range(8):
            if byte & (0x80 >> bit):
                shift = key_bits - 32 - (byte_index * 8 + bit)
                result ^= (key_int >> shift) & 0xFFFFFFFF
    return result


def ipv4(text: str) -> int:
    """The 32-bit value of a dotted-quad IPv4 address (``ValueError`` if malformed)."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    value = 0
    for part in parts:
        value = value << 8 | int(part)
    return value


@dataclass(frozen=True)
class Flow:
    """A TCP flow's 4-tuple, as seen by the server (source = the client)."""

    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int

    def rss_input(self) -> bytes:
        """The 12-byte RSS hash input for IPv4 with TCP ports."""
        return (
            self.src_ip.to_bytes(4, "big")
            + self.dst_ip.to_bytes(4, "big")
            + self.src_port.to_bytes(2, "big")
            + self.dst_port.to_bytes(2, "big")
        )


def rss_hash(flow: Flow, key: bytes = MS_RSS_KEY) -> int:
    """The Toeplitz RSS hash of ``flow`` (IPv4 + TCP ports)."""
    return toeplitz_hash(key, flow.rss_input())


@dataclass
class NicCounters:
    """What the NIC has done so far (lists are indexed by queue or by core)."""

    rx_packets: list[int]
    rx_bytes: list[int]
    tx_packets: list[int]
    tx_bytes: list[int]
    irqs: list[int]
    cross_core_deliveries: int = 0
    irq_moves: int = 0


@dataclass
class _FlowState:
    flow: Flow
    hash: int
    rx_queue: int
    owner_core: int
    open: bool = True
    queued: int = 0  # its packets waiting in its RX queue


@dataclass
class _RxQueue:
    packets: deque[tuple[int, bytes]] = field(default_factory=deque)


class Nic:
    """A NIC with ``queues`` RX/TX queue pairs serving ``cores`` cores.

    Guarantees: a flow's packets are delivered in the order they arrived; every packet is
    delivered exactly once (or dropped if its flow was closed first); an RX queue's
    packets are delivered only by the core its IRQ is bound to at the time of service.
    """

    def __init__(
        self,
        queues: int,
        cores: int,
        *,
        irq_mode: IrqMode = "affinity",
        seed: int = 0,
        rss_key: bytes = MS_RSS_KEY,
        rebalance_interval: int = 64,
    ) -> None:
        if queues < 1 or cores < 1:
            raise ValueError("a NIC needs at least one queue and one core")
        if irq_mode not in ("affinity", "balance"):
            raise ValueError(f"unknown IRQ mode {irq_mode!r} (affinity or balance)")
        if len(rss_key) < 16:
            raise ValueError("the RSS key must have at least 16 bytes for IPv4 + ports")
        if rebalance_interval < 1:
            raise ValueError("rebalance_interval must be positive")
        self.queues = queues
        self.cores = cores
        self.irq_mode: IrqMode = irq_mode
        self.rss_key = rss_key
        self.rebalance_interval = rebalance_interval
        self._rng = random.Random(seed)
        self.indirection = [i % queues for i in range(INDIRECTION_ENTRIES)]
        self.affinity = [1 << (q % cores) for q in range(queues)]
        if irq_mode == "balance":
            self.irq_core = [self._rng.randrange(cores) for _ in range(queues)]
        else:
            self.irq_core = [q % cores for q in range(queues)]
        self._rx = [_RxQueue() for _ in range(queues)]
        self._flows: dict[int, _FlowState] = {}
        self._next_flow = 0
        self.counters = NicCounters(
            rx_packets=[0] * queues,
            rx_bytes=[0] * queues,
            tx_packets=[0] * queues,
            tx_bytes=[0] * queues,
            irqs=[0] * cores,
        )
        self._serviced_since_rebalance = 0
        self._load = [0] * queues
        #: Packets waiting in all RX queues (0: no IRQ is pending anywhere).
        self.queued_packets = 0
        #: The RX queues holding packets (so that serving a core does not scan them all).
        self._nonempty: set[int] = set()

    # -- configuration ------------------------------------------------------------
    def set_indirection(self, table: list[int]) -> None:
        """Replace the indirection table (128 queue numbers)."""
        if len(table) != INDIRECTION_ENTRIES or any(not 0 <= q < self.queues for q in table):
            raise ValueError(f"the indirection table needs {INDIRECTION_ENTRIES} queue numbers")
        self.indirection = list(table)
        for state in self._flows.values():
            state.rx_queue = self.indirection[state.hash & (INDIRECTION_ENTRIES - 1)]

    def set_affinity(self, queue: int, mask: int) -> None:
        """Bind ``queue``'s IRQ to the cores in ``mask`` (served by the lowest of them).

        In balance mode the mask is recorded but the balancer keeps overriding it."""
        if not 0 <= queue < self.queues:
            raise ValueError(f"no queue {queue}")
        if mask <= 0 or mask >> self.cores:
            raise ValueError(f"affinity mask {mask:#x} names no core or a core >= {self.cores}")
        self.affinity[queue] = mask
        if self.irq_mode == "affinity":
            self.irq_core[queue] = (mask & -mask).bit_length() - 1

    # -- flows ---------------------------------------------------------------------
    def open_flow(self, flow: Flow, owner_core: int) -> int:
        """Register ``flow`` whose socket belongs to ``owner_core``; returns its id."""
        h = rss_hash(flow, self.rss_key)
        fid = self._next_flow
        self._next_flow += 1
        queue = self.indirection[h & (INDIRECTION_ENTRIES - 1)]
        self._flows[fid] = _FlowState(flow, h, queue, owner_core)
        return fid

    def rx_queue_for(self, flow: Flow) -> int:
        """The RX queue RSS would pick for ``flow`` (registered or not)."""
        return self.indirection[rss_hash(flow, self.rss_key) & (INDIRECTION_ENTRIES - 1)]

    def rx_queue_of(self, fid: int) -> int:
        """The RX queue that flow ``fid`` lands on."""
        return self._flows[fid].rx_queue

    def close_flow(self, fid: int) -> None:
        """Close flow ``fid``: its undelivered packets are dropped at service time, and
        the flow is forgotten once none is left (at once if none is queued). Closing a
        closed or forgotten flow does nothing. Flow ids are never reused."""
        state = self._flows.get(fid)
        if state is None:
            return
        state.open = False
        if not state.queued:
            del self._flows[fid]

    def flow_count(self) -> int:
        """Flows in the flow table: open ones and closed ones with packets still queued."""
        return len(self._flows)

    # -- receive path --------------------------------------------------------------
    def receive(self, fid: int, data: bytes) -> None:
        """Bytes of flow ``fid`` arrive from the wire: cut into packets, queued on the
        flow's RX queue, whose IRQ becomes pending."""
        state = self._flows[fid]
        queue = state.rx_queue
        rx = self._rx[queue].packets
        counters = self.counters
        if data:
            self._nonempty.add(queue)
        for start in range(0, len(data), MSS):
            packet = data[start : start + MSS]
            rx.append((fid, packet))
            state.queued += 1
            self.queued_packets += 1
            counters.rx_packets[queue] += 1
            counters.rx_bytes[queue] += len(packet)

    def pending_cores(self) -> set[int]:
        """Cores with an IRQ pending (an RX queue bound to them holds packets)."""
        return {self.irq_core[q] for q in self._nonempty}

    def has_pending(self, core: int) -> bool:
        """Whether ``core`` has an IRQ to serve."""
        irq_core = self.irq_core
        return any(irq_core[q] == core for q in self._nonempty)

    def service(self, core: int, budget: int) -> list[tuple[int, bytes]]:
        """Serve the IRQs bound to ``core``: deliver up to ``budget`` packets as
        ``(flow id, payload)`` in queue order; packets of closed flows are dropped.
        Counts one IRQ per queue served and cross-core deliveries."""
        out: list[tuple[int, bytes]] = []
        flows = self._flows
        counters = self.counters
        irq_core = self.irq_core
        nonempty = self._nonempty
        mine = sorted(q for q in nonempty if irq_core[q] == core)  # queue order, as a scan would
        for q in mine:
            counters.irqs[core] += 1
            self._serviced_since_rebalance += 1
            packets = self._rx[q].packets
            while packets and len(out) < budget:
                fid, payload = packets.popleft()
                self._load[q] += 1
                state = flows[fid]
                state.queued -= 1
                self.queued_packets -= 1
                if not state.open:
                    if not state.queued:
                        del flows[fid]
                    continue
                if state.owner_core != core:
                    counters.cross_core_deliveries += 1
                out.append((fid, payload))
            if not packets:
                nonempty.discard(q)
            if len(out) >= budget:
                break
        if self.irq_mode == "balance" and self._serviced_since_rebalance >= self.rebalance_interval:
            self.rebalance()
        return out

    def rebalance(self) -> None:
        """One irqbalance pass: move the busiest queue of the most loaded core to the
        least loaded core (by packets since the last pass), then reset the loads."""
        self._serviced_since_rebalance = 0
        core_load = [0] * self.cores
        for q in range(self.queues):
            core_load[self.irq_core[q]] += self._load[q]
        order = list(range(self.cores))
        self._rng.shuffle(order)  # seeded tie-breaking
        busiest = max(order, key=lambda c: core_load[c])
        idlest = min(order, key=lambda c: core_load[c])
        candidates = [q for q in range(self.queues) if self.irq_core[q] == busiest]
        if busiest != idlest and candidates and core_load[busiest] > core_load[idlest]:
            move = max(candidates, key=lambda q: (self._load[q], -q))
            if self._load[move] < core_load[busiest]:  # moving the only load just swaps
                self.irq_core[move] = idlest
                self.counters.irq_moves += 1
        self._load = [0] * self.queues

    # -- transmit path -------------------------------------------------------------
    def transmit(self, core: int, size: int) -> None:
        """Count ``size`` bytes sent by ``core`` on its TX queue (XPS: ``core % queues``)."""
        queue = core % self.queues
        self.counters.tx_packets[queue] += -(-size // MSS)
        self.counters.tx_bytes[queue] += size

    def check_invariants(self) -> None:
        """Assert: the indirection table names existing queues; every IRQ is bound to an
        existing core (in affinity mode, the lowest core of its mask); queued packets
        belong to known flows and sit on their flow's RX queue; each flow's ``queued``
        counts its queued packets; a closed flow is kept only while it has some."""
        assert len(self.indirection) == INDIRECTION_ENTRIES
        assert all(0 <= q < self.queues for q in self.indirection), "indirection names no queue"
        for q in range(self.queues):
            assert 0 <= self.irq_core[q] < self.cores, f"queue {q}'s IRQ on a missing core"
            if self.irq_mode == "affinity":
                mask = self.affinity[q]
                assert self.irq_core[q] == (mask & -mask).bit_length() - 1, (
                    f"queue {q}'s IRQ is not on the lowest core of its mask"
                )
            for fid, payload in self._rx[q].packets:
                assert fid in self._flows, f"packet of unknown flow {fid}"
                assert self._flows[fid].rx_queue == q, f"flow {fid}'s packet on queue {q}"
                assert 0 < len(payload) <= MSS, "packet larger than the MSS"
        assert self.queued_packets == sum(len(rx.packets) for rx in self._rx), "queued packet count is off"
        assert self._nonempty == {q for q in range(self.queues) if self._rx[q].packets}, "non-empty queue set is off"
        queued: dict[int, int] = {}
        for q in range(self.queues):
            for fid, _payload in self._rx[q].packets:
                queued[fid] = queued.get(fid, 0) + 1
        for fid, state in self._flows.items():
            assert state.queued == queued.get(fid, 0), f"flow {fid} counts {state.queued} queued packets"
            assert state.open or state.queued, f"closed flow {fid} with nothing queued is still kept"
