"""The cost table: what every step of the emulated machine costs, in virtual nanoseconds.

One table (:data:`COST_ENTRIES`) for both designs. Each entry has a default, a
*source* (``measured`` on the development machine against real memcached or with a
syscall loop, or ``assumption``) and the reason for its value. The simulator
(:mod:`memoracle.sphinx.sim.engine`) charges nothing that is not in this table.

How the measured entries were measured (``memoracle sphinx calibrate`` repeats it):

- memcached 1.6.18 with one worker thread (``-t 1``) on loopback, requests of the
  experiment's shape (30-byte keys, 200-byte values). Its CPU time (utime + stime of the
  process) per request, in two regimes: *busy* — 32 connections each with one request
  in flight, so the worker never sleeps: 7.6–10.0 µs per get or set, mean 8.8 µs (three
  runs of 50,000 gets and 50,000 sets) — and *closed* — one request at a time, so the
  worker sleeps and is woken for every request: 10.2–12.4 µs, mean 10.8 µs. The busy
  figure is the sum ``epoll + recv + parse + hash + lookup + send + rx_packet`` (on
  loopback the reply's receive path runs in the sender's context, so memcached pays one
  ``rx_packet`` per request); its split among those entries is an assumption (epoll
  10 %, recv 20 %, protocol 6 %, send 35 %, receive 25 %). Gets and sets cost the same
  within the measurement's precision, so ``store`` is an assumption. The difference
  closed − busy, 1.6–2.2 µs, is ``context_switch``.
- ``eventfd_write`` / ``eventfd_read``: ``os.eventfd_write``/``os.eventfd_read`` in a
  loop minus the same loop calling a builtin: 0.8–2.0 µs and 0.8–2.3 µs over six runs
  (means 1.2 and 1.4 µs).

Measured in a shared VM with a load average of 12–14 on 2 cores; a syscall here costs
several times what it does on the paper's bare-metal Haswell, so absolute latencies are
that machine's, not the paper's. The conclusions are judged on ratios.

Structural parameters (cache lines per object, lock stripes, NAPI budget, the
irqbalance period) are in :data:`STRUCTURE`; they are not costs but they decide how
many times a cost is paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

MEASURED = "measured"
ASSUMPTION = "assumption"


@dataclass(frozen=True)
class CostEntry:
    """One row of the cost table: ``name`` costs ``ns`` virtual nanoseconds on ``where``."""

    name: str
    ns: int
    where: str
    source: str
    why: str


#: The cost table. Order: the network path, the protocol core, the wake-ups, Sphinx's
#: messaging, the memcached-style shared table, the coherence fabric, the client.
COST_ENTRIES: tuple[CostEntry, ...] = (
    CostEntry("irq_entry", 1000, "IRQ core, once per IRQ", ASSUMPTION,
              "hard IRQ entry and exit, NAPI schedule, softirq start; the order of published per-interrupt overheads"),
    CostEntry("rx_packet", 2200, "IRQ core, per packet", MEASURED,
              "driver receive, IP and TCP receive, socket enqueue: 25 % of memcached's busy path on loopback, "
              "where the reply's receive path runs in memcached's context"),
    CostEntry("epoll", 900, "thread core, per request read", MEASURED,
              "epoll_wait returning a ready socket: 10 % of memcached's busy path"),
    CostEntry("recv", 1750, "thread core, per request", MEASURED, "recv() of one request: 20 % of the busy path"),
    CostEntry("parse", 350, "thread core, per request", MEASURED,
              "the text protocol's request line (and data block): part of the busy path's 6 % protocol share"),
    CostEntry("hash", 50, "thread core, per request", MEASURED, "MurmurHash3 of a 30-byte key: part of the protocol share"),
    CostEntry("lookup", 170, "key's core, per get", MEASURED, "index lookup of a hit: part of the protocol share"),
    CostEntry("store", 250, "key's core, per set", ASSUMPTION,
              "copy 230 bytes of key and value into the log (Sphinx) or a new item (memcached), index update; "
              "memcached's sets and gets cost the same within the measurement's precision"),
    CostEntry("send", 3100, "thread core, per reply", MEASURED,
              "send() of one reply: TCP transmit and driver xmit, 35 % of the busy path"),
    CostEntry("context_switch", 2000, "woken thread's core, per wake-up", MEASURED,
              "a sleeping thread switched in and back from epoll_wait: memcached's closed-loop CPU per request "
              "minus its busy-path CPU"),
    CostEntry("wake_call", 500, "waker's core, per sleeping thread woken", ASSUMPTION,
              "try_to_wake_up and the IPI send, paid by the core that wakes a sleeping thread"),
    CostEntry("wake_ipi", 2000, "nothing busy (a delay)", ASSUMPTION,
              "from a remote wake-up to the target core starting to switch the thread in: IPI delivery and "
              "idle exit (shallow C-state)"),
    CostEntry("spsc_push", 30, "sender's core, per message", ASSUMPTION,
              "Lamport ring push: load head, store slot, store tail (lines the sender owns)"),
    CostEntry("spsc_pop", 30, "receiver's core, per message", ASSUMPTION, "Lamport ring pop: load tail, load slot, store head"),
    CostEntry("eventfd_write", 1100, "sender's core, per message", MEASURED,
              "the doorbell: write() to a sleeping receiver's eventfd"),
    CostEntry("eventfd_read", 1200, "receiver's core, per doorbell batch", MEASURED,
              "read() of the eventfd once it fired, then the rings are drained"),
    CostEntry("lock_op", 40, "locking core, per lock section", ASSUMPTION,
              "uncontended pthread mutex lock + unlock: two atomic read-modify-writes on a line in the cache"),
    CostEntry("mc_alloc_hold", 200, "global slabs lock, per set", ASSUMPTION,
              "memcached's slabs_alloc under the global slabs lock (free-list pop, accounting)"),
    CostEntry("mc_lru_hold", 300, "global LRU lock, per set", ASSUMPTION,
              "linking the new item into the LRU and unlinking the old one under the slab class's LRU lock "
              "(all 200-byte values share one class): pointer updates of neighbours"),
    CostEntry("line_same_socket", 80, "the core that misses, per line", ASSUMPTION,
              "a cache line last written by another core of the same socket (published Nehalem/Haswell-EP "
              "coherence latencies: 40–100 ns)"),
    CostEntry("line_cross_socket", 200, "the core that misses, per line", ASSUMPTION,
              "a line last written on the other socket (published: 100–250 ns)"),
    CostEntry("client_wire", 20000, "added to every latency", ASSUMPTION,
              "the 10 GbE wire, switch and the load generator's kernel stack, both directions: a constant, "
              "as mutilate measures at the client"),
)

#: Structural parameters: how many times a cost is paid, and periods.
STRUCTURE: Mapping[str, tuple[int, str]] = {
    "packet_lines": (4, "lines of a received request a thread on another core misses (skb, shinfo, data)"),
    "message_lines": (2, "lines of a forwarded message besides the value (ring slot, message)"),
    "value_lines": (4, "lines of a 200-byte value (a set's value travels to the owner, a get's value back)"),
    "item_lines": (6, "lines of a memcached item touched per request (header with refcount, key, value)"),
    "lru_lines": (3, "lines of the LRU lists touched under the LRU lock (head, tail, neighbours)"),
    "item_lock_stripes": (8192, "memcached's item locks (item_lock_hashpower 13 with 4 or more threads)"),
    "napi_budget": (64, "packets one IRQ serves at most (NAPI weight)"),
    "irqbalance_interval_ns": (10_000_000, "irqbalance's pass, compressed from 10 s to 10 ms of virtual time "
                                           "so that a run of a fraction of a second sees its passes"),
}


@dataclass(frozen=True)
class Costs:
    """A cost table in force: every entry's nanoseconds (defaults from :data:`COST_ENTRIES`)."""

    irq_entry: int = 1000
    rx_packet: int = 2200
    epoll: int = 900
    recv: int = 1750
    parse: int = 350
    hash: int = 50
    lookup: int = 170
    store: int = 250
    send: int = 3100
    context_switch: int = 2000
    wake_call: int = 500
    wake_ipi: int = 2000
    spsc_push: int = 30
    spsc_pop: int = 30
    eventfd_write: int = 1100
    eventfd_read: int = 1200
    lock_op: int = 40
    mc_alloc_hold: int = 200
    mc_lru_hold: int = 300
    line_same_socket: int = 80
    line_cross_socket: int = 200
    client_wire: int = 20000

    def as_dict(self) -> dict[str, int]:
        """Every entry by name, in table order."""
        return {entry.name: getattr(self, entry.name) for entry in COST_ENTRIES}

    def replaced(self, overrides: Mapping[str, int]) -> Costs:
        """This table with ``overrides`` (entry name → ns); ValueError for an unknown
        name or a negative value."""
        values = self.as_dict()
        for name, ns in overrides.items():
            if name not in values:
                raise ValueError(f"no cost entry {name!r} (known: {', '.join(values)})")
            if ns < 0:
                raise ValueError(f"cost {name} must be >= 0 ns, not {ns}")
            values[name] = int(ns)
        return Costs(**values)

    def scaled(self, name: str, factor: float) -> Costs:
        """This table with entry ``name`` multiplied by ``factor`` (rounded)."""
        return self.replaced({name: round(self.as_dict()[name] * factor)})


def _check_defaults() -> None:
    defaults = Costs().as_dict()
    for entry in COST_ENTRIES:
        if defaults[entry.name] != entry.ns:
            raise AssertionError(f"cost {entry.name}: table says {entry.ns}, Costs() says {defaults[entry.name]}")


_check_defaults()


def parse_override(text: str) -> tuple[str, int]:
    """``NAME=NS`` (e.g. ``mc_lru_hold=600``) as a pair; ValueError with the reason."""
    name, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise ValueError(f"wants NAME=NANOSECONDS (e.g. mc_lru_hold=600), not {text!r}")
    Costs().replaced({name.strip(): int(value)})  # validates the name
    return name.strip(), int(value)


__all__ = ["ASSUMPTION", "COST_ENTRIES", "MEASURED", "STRUCTURE", "CostEntry", "Costs", "parse_override"]
