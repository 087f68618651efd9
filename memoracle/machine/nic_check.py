"""The emulated NIC (:mod:`impl.nic_emu`) against its guarantees, under reconfiguration.

The Sphinx simulator uses the NIC with a fixed indirection table and (in balance mode)
no rebalancing; :func:`nic_campaign` drives it through what the simulator never does:
flows opened and closed with packets still queued, the indirection table replaced,
IRQ affinities moved, irqbalance passes (balance mode, a short interval). A model keeps,
for each flow, the payloads sent and not yet delivered, and judges every ``service``:

- a delivered packet is its flow's oldest undelivered one (order, exactly once), of an
  open flow (a closed flow's packets are dropped, never delivered);
- it was delivered by the core the IRQ of the flow's RX queue was bound to when the
  service began, and that queue is the one RSS and the indirection table name;
- at most ``budget`` packets per service; after the campaign, serving every core until
  nothing is pending delivers every packet of every open flow, and the flow table
  holds exactly the open flows.

The NIC's invariants are checked after every step. :data:`NIC_MUTANTS` must be caught.
"""

from __future__ import annotations

import random
from collections import deque

from impl.nic_emu import INDIRECTION_ENTRIES, MSS, Flow, Nic, ipv4


def _flow(rng: random.Random) -> Flow:
    return Flow(ipv4(f"10.0.{rng.randrange(4)}.{rng.randrange(1, 255)}"), ipv4("10.1.0.1"),
                rng.randrange(1024, 65536), 11211)  # fmt: skip


def _serve(nic: Nic, core: int, budget: int, undelivered: dict[int, deque[bytes]], open_flows: set[int]) -> str | None:
    """One service of ``core``, judged (see the module doc); a problem, or None."""
    bound = list(nic.irq_core)
    got = nic.service(core, budget)
    if len(got) > budget:
        return f"core {core} delivered {len(got)} packets, budget {budget}"
    for fid, payload in got:
        if fid not in open_flows:
            return f"a packet of closed flow {fid} was delivered"
        if bound[nic.rx_queue_of(fid)] != core:
            return f"flow {fid}'s queue is bound to core {bound[nic.rx_queue_of(fid)]}, core {core} delivered"
        if not undelivered[fid] or undelivered[fid][0] != payload:
            return f"flow {fid} delivered a packet out of order or twice"
        undelivered[fid].popleft()
    return None


def _drain(nic: Nic, undelivered: dict[int, deque[bytes]], open_flows: set[int]) -> str | None:
    """Serve every core until nothing is pending; then every open flow's packets must
    have been delivered and the flow table hold exactly the open flows."""
    for _ in range(10_000):
        pending = sorted(nic.pending_cores())
        if not pending:
            break
        for core in pending:
            problem = _serve(nic, core, 100, undelivered, open_flows)
            if problem is not None:
                return problem
    left = [fid for fid in open_flows if undelivered[fid]]
    if left:
        return f"nothing is pending, but flow {left[0]} has {len(undelivered[left[0]])} packets undelivered"
    if nic.flow_count() != len(open_flows):
        return f"the flow table holds {nic.flow_count()} flows, {len(open_flows)} are open"
    return None


def nic_campaign(seed: int, steps: int, nic_cls: type[Nic] = Nic) -> str | None:
    """``steps`` random operations on a NIC of 4 queues and 3 cores (affinity mode on
    even seeds, balance on odd ones), judged as the module doc says, then everything
    drained; a problem, or None. The indirection table is replaced only with nothing
    queued (packets already queued stay on their old queue, so a flow's order across
    the change is not promised)."""
    rng = random.Random(f"nic {seed}")
    mode = "balance" if seed % 2 else "affinity"
    nic = nic_cls(4, 3, irq_mode=mode, seed=seed, rebalance_interval=4)  # type: ignore[arg-type]
    undelivered: dict[int, deque[bytes]] = {}
    flows: dict[int, Flow] = {}
    open_flows: set[int] = set()
    sent = 0
    for step in range(steps):
        where = f"seed {seed} ({mode}), step {step}"
        roll = rng.random()
        problem: str | None = None
        if roll < 0.15 or not open_flows:
            flow = _flow(rng)
            fid = nic.open_flow(flow, rng.randrange(3))
            flows[fid], undelivered[fid] = flow, deque()
            open_flows.add(fid)
            if nic.rx_queue_of(fid) != nic.rx_queue_for(flow):
                problem = f"flow {fid} lands on queue {nic.rx_queue_of(fid)}, RSS names {nic.rx_queue_for(flow)}"
        elif roll < 0.5:
            fid = rng.choice(sorted(open_flows))
            sent += 1
            data = bytes([sent % 256]) * rng.choice([1, 100, MSS, MSS + 1, 3 * MSS])
            nic.receive(fid, data)
            undelivered[fid].extend(data[i : i + MSS] for i in range(0, len(data), MSS))
        elif roll < 0.8:
            problem = _serve(nic, rng.randrange(3), rng.choice([1, 2, 5, 100]), undelivered, open_flows)
        elif roll < 0.87:
            fid = rng.choice(sorted(open_flows))
            nic.close_flow(fid)
            nic.close_flow(fid)  # closing twice does nothing
            open_flows.discard(fid)
            undelivered[fid].clear()  # dropped at service time
        elif roll < 0.93:
            problem = _drain(nic, undelivered, open_flows)
            nic.set_indirection([rng.randrange(4) for _ in range(INDIRECTION_ENTRIES)])
            moved = [fid for fid in open_flows if nic.rx_queue_of(fid) != nic.rx_queue_for(flows[fid])]
            if problem is None and moved:
                problem = f"flow {moved[0]} does not follow the new indirection table"
        else:
            nic.set_affinity(rng.randrange(4), rng.randrange(1, 8))
        if problem is not None:
            return f"{where}: {problem}"
        try:
            nic.check_invariants()
        except AssertionError as error:
            return f"{where}: invariant broken: {error}"
    problem = _drain(nic, undelivered, open_flows)
    return None if problem is None else f"seed {seed} ({mode}), at the end: {problem}"


class ClosedFlowsDelivered(Nic):
    """Packets of a closed flow are still delivered (the drop at service time is lost)."""

    def close_flow(self, fid: int) -> None:
        return None  # BUG: the flow stays open


class IndirectionNotApplied(Nic):
    """A new indirection table steers new flows only; open flows keep their old queue."""

    def set_indirection(self, table: list[int]) -> None:
        if len(table) != INDIRECTION_ENTRIES or any(not 0 <= q < self.queues for q in table):
            raise ValueError(f"the indirection table needs {INDIRECTION_ENTRIES} queue numbers")
        self.indirection = list(table)  # BUG: the flows' queues are not updated


#: Broken NICs; :func:`nic_campaign` must catch each.
NIC_MUTANTS: dict[str, type[Nic]] = {
    "closed_flows_delivered": ClosedFlowsDelivered,
    "indirection_not_applied": IndirectionNotApplied,
}

__all__ = ["NIC_MUTANTS", "nic_campaign"]
