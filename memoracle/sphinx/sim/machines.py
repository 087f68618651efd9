"""The paper's two machines, its three IRQ configurations, and where everything lands.

Placement is not modelled but computed by the emulated machine's own code, so it is the
same as in :class:`impl.sphinx.Sphinx`:

- a connection's flow is :func:`impl.sphinx.default_flow` of its id and the seed; its RX
  queue is what RSS picks (:class:`impl.nic_emu.Nic`: Toeplitz hash with Microsoft's
  key, 128-entry indirection table); the queue's IRQ is served by ``nic.irq_core[q]``;
- Sphinx binds a connection to a thread as ``SO_REUSEPORT`` does
  (:func:`impl.sphinx.reuseport_thread`) and a key to its owner by MurmurHash3
  (:func:`impl.sphinx.key_owner`); the memcached-style design hands connections to its
  worker threads round-robin (memcached's dispatcher) and locks item stripes by the
  key's hash.

The IRQ configurations (the paper's §IV-B):

- ``balance`` — irqbalance on, no IRQ affinity (the paper's default): the NIC's balance
  mode, a seeded initial spread and every ``irqbalance_interval_ns`` one pass of
  :meth:`impl.nic_emu.Nic.rebalance` on the packets served since the last pass;
- ``spread`` — irqbalance off, no IRQ affinity: queue ``q`` on core ``q mod cores``
  (the kernel spreading the NIC's MSI-X vectors over the CPUs, as without a daemon);
- ``affinity`` — IRQ affinity to dedicated cores, irqbalance off: queue ``q`` on IRQ
  core ``q mod irq_cores``; the threads run on the other cores.

Without affinity there is one thread per hardware thread (48 or 16), thread ``t`` on core
``t``; with affinity 40 (12) threads on the cores after the 8 (4) IRQ cores. Hardware
threads are independent cores here (SMT sharing is not modelled); cores belong to
sockets the way Linux numbers a two-socket machine with SMT (``(core // physical) mod 2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from impl.nic_emu import IrqMode, Nic
from impl.sphinx import default_flow, key_owner, reuseport_thread

import mmh3

IrqConfig = Literal["balance", "spread", "affinity"]
IRQ_CONFIGS: tuple[IrqConfig, ...] = ("balance", "spread", "affinity")
IRQ_CONFIG_TITLES = {
    "balance": "irqbalance on, no IRQ affinity (default)",
    "spread": "irqbalance off, no IRQ affinity",
    "affinity": "IRQ affinity to dedicated cores, irqbalance off",
}
Design = Literal["sphinx", "memcached"]
DESIGNS: tuple[Design, ...] = ("sphinx", "memcached")


@dataclass(frozen=True)
class MachineSpec:
    """A machine of the paper's Table I: cores (hardware threads), RX queues, sockets,
    and how many cores serve IRQs when IRQ affinity is configured."""

    name: str
    cores: int
    rx_queues: int
    sockets: int
    irq_cores: int
    title: str

    def socket_of(self, core: int) -> int:
        """The socket of ``core`` (Linux numbering: physical cores of socket 0, of
        socket 1, then their SMT siblings in the same order)."""
        physical_per_socket = self.cores // (2 * self.sockets)
        return (core // physical_per_socket) % self.sockets


#: The paper's machines (Table I).
PAPER_MACHINES = ("modern", "legacy")
MACHINES = {
    "modern": MachineSpec("modern", 48, 48, 2, 8, "modern: 2 x 12 cores, 48 hardware threads, 48 RX queues"),
    "legacy": MachineSpec("legacy", 16, 8, 2, 4, "legacy: 2 x 4 cores, 16 hardware threads, 8 RX queues"),
    # Small enough to compute latencies by hand (tests, examples).
    "tiny": MachineSpec("tiny", 4, 2, 2, 2, "tiny: 4 cores, 2 RX queues"),
}


@dataclass
class Placement:
    """Where a run's connections, threads, IRQs and keys are (computed, not modelled).

    ``thread_core[t]`` is thread ``t``'s core; ``conn_thread[c]`` connection ``c``'s
    thread; ``conn_fid[c]`` its NIC flow; ``key_owner[k]`` the Sphinx thread owning key
    ``k`` (memcached: unused); ``key_stripe[k]`` the memcached item-lock stripe of key
    ``k``; ``nic`` the NIC whose ``irq_core`` says which core serves each queue."""

    machine: MachineSpec
    irq_config: IrqConfig
    design: Design
    nic: Nic
    thread_core: list[int]
    conn_thread: list[int]
    conn_fid: list[int]
    key_owner: list[int]
    key_stripe: list[int]


def app_cores(machine: MachineSpec, irq_config: IrqConfig) -> list[int]:
    """The cores running threads: all, or those after the IRQ cores with affinity."""
    first = machine.irq_cores if irq_config == "affinity" else 0
    return list(range(first, machine.cores))


def place(
    machine: MachineSpec, irq_config: IrqConfig, design: Design, connections: int, keys: list[bytes],
    *, seed: int, stripes: int,
) -> Placement:  # fmt: skip
    """The placement of ``connections`` connections and ``keys`` on ``machine``."""
    if irq_config not in IRQ_CONFIGS:
        raise ValueError(f"unknown IRQ configuration {irq_config!r} ({', '.join(IRQ_CONFIGS)})")
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r} ({', '.join(DESIGNS)})")
    mode: IrqMode = "balance" if irq_config == "balance" else "affinity"
    # The balancer runs on a virtual-time timer, never by count of IRQs.
    nic = Nic(machine.rx_queues, machine.cores, irq_mode=mode, seed=seed, rebalance_interval=1 << 62)
    if irq_config == "affinity":
        for queue in range(machine.rx_queues):
            nic.set_affinity(queue, 1 << (queue % machine.irq_cores))
    cores = app_cores(machine, irq_config)
    threads = len(cores)
    conn_thread: list[int] = []
    conn_fid: list[int] = []
    for conn in range(connections):
        flow = default_flow(seed, conn)
        thread = reuseport_thread(flow, threads, nic.rss_key) if design == "sphinx" else conn % threads
        conn_thread.append(thread)
        conn_fid.append(nic.open_flow(flow, cores[thread]))
    owners = [key_owner(key, threads) for key in keys]
    key_stripe = [mmh3.hash(key, 0, signed=False) % stripes for key in keys]
    return Placement(machine, irq_config, design, nic, cores, conn_thread, conn_fid, owners, key_stripe)


__all__ = ["DESIGNS", "IRQ_CONFIGS", "IRQ_CONFIG_TITLES", "MACHINES", "PAPER_MACHINES", "Design", "IrqConfig", "MachineSpec",
           "Placement", "app_cores", "place"]  # fmt: skip
