"""Sphinx's figures: the real server against real memcached, and the emulated store.

- ``sphinx.server_*`` and ``sphinx.memcached_*``: ``memoracle sphinx serve --threads 4``
  and Debian's memcached, each started as a child process on a loopback port and
  loaded, one after the other in the same run, by the same open-loop generator
  (:func:`memoracle.sphinx.peers.run_fixed_rate`): a fixed arrival rate of 5,000
  requests/s over 8 connections, 30-byte keys (1,000 of them, preloaded), 200-byte
  values, 90% gets, for 3 s (1 s with ``quick``). Latency runs from each request's
  *scheduled* send time to the end of its reply. The server's figures carry memcached's
  as ``baseline``, with ``ratio`` = server ÷ memcached. The aim is p99 ≤ 5 ms and no
  errors at 5,000 requests/s; the figures are what was measured, whatever it is.
  When memcached is not installed these figures are left out (a note on stderr).
- ``sphinx.emulated_requests_per_second``: the emulated store driven directly
  (:class:`impl.sphinx.Sphinx`, 4 threads, no sockets): 16 connections each send
  pipelined batches of the same workload, then ``settle()``; requests answered per
  second of wall time. ``sphinx.forwarded_share``: the share of those requests the
  receiving thread forwarded to the key's owner (about 3/4 with 4 threads and uniform
  keys, since a connection's thread owns a quarter of the keys).
- ``sphinx.cross_core_share``: in that run (4 threads, 4 NIC queues, IRQ affinity,
  SO_REUSEPORT steering), the share of received packets whose IRQ ran on a core other
  than the socket's thread. ``sphinx.cross_core_share_aligned``: the same workload with
  ``steering="incoming_cpu"`` (connections bound to their RX queue's IRQ core).
- ``sphinx.attack_*``: the hostile clients of :mod:`memoracle.sphinx.attacks` against
  memcached and then ``memoracle sphinx serve --threads 4``, each attack on a fresh
  process, in the same run: ``attack_multiget_rss_mib`` is the server's peak RSS growth
  while one client sends ``get`` + ``" b" * 2000`` for a 900 KB ``b`` and reads the
  1.8 GB reply; ``attack_noread_rss_mib`` the peak growth while 24 clients each pipeline
  5,000 ``get b`` and never read (held 3 s, 1 s with ``quick``);
  ``attack_version_ms`` the slowest ``version`` round trip of a probe connection
  (one every 20 ms) during both attacks. Each carries memcached's value as
  ``baseline``. Targets: ≤ 64 MiB and ≤ 100 ms.
- ``sphinx.sim_*``: the paper's experiment in virtual time (:mod:`memoracle.sphinx.sim`).
  ``sim_update_p99_reduction_default_modern`` and ``sim_read_p99_reduction_default_modern``
  are the largest ``1 - p99(Sphinx) / p99(memcached-style)`` over 24…384 connections on
  the modern machine in the default IRQ configuration (irqbalance on, no affinity), open
  loop at the default rate, 20,000 requests per point (5,000 with ``quick``); the
  ``_closed`` ones the same with mutilate's closed loop. The paper: up to 0.67 and 0.16.
  ``sim_requests_per_second`` is simulated requests per wall second on the 48-core,
  384-connection point (Sphinx, updates, default configuration) of 1,000,000 requests
  (100,000 with ``quick``), and ``sim_point_seconds`` its wall time (target ≤ 60 s for
  1,000,000); ``sim_load_average`` the machine's 1-minute load average when measured.
"""

from __future__ import annotations

import random
import sys
import time
from typing import TYPE_CHECKING, Callable

from benchmarks.common import Figure
from memoracle.sphinx.attacks import AttackResult, multiget_attack, noread_attack
from memoracle.sphinx.peers import (
    LoadResult,
    PeerUnavailable,
    ServerProcess,
    run_fixed_rate,
    start_memcached,
    start_sphinx_server,
    workload_key,
)

if TYPE_CHECKING:
    from impl.sphinx import Sphinx, Steering

RATE = 5000.0
CONNECTIONS = 8
KEYS = 1000
KEY_SIZE = 30
VALUE_SIZE = 200
GET_SHARE = 0.9
PERCENTILES = {"p50": 0.50, "p99": 0.99, "p999": 0.999}


def _load(host: str, port: int, seconds: float) -> LoadResult:
    return run_fixed_rate(
        host, port, rate=RATE, seconds=seconds, connections=CONNECTIONS, keys=KEYS,
        key_size=KEY_SIZE, value_size=VALUE_SIZE, get_share=GET_SHARE, seed=0,
    )  # fmt: skip


def _compared(name: str, value: float, baseline: float, unit: str) -> Figure:
    figure: Figure = {"name": name, "value": value, "unit": unit, "baseline": baseline}
    if baseline > 0:
        figure["ratio"] = value / baseline
    return figure


def server_vs_memcached_figures(quick: bool) -> list[Figure]:
    """The real server and real memcached under the same fixed-rate load."""
    seconds = 1.0 if quick else 3.0
    try:
        with start_memcached() as memcached:
            reference = _load(memcached.host, memcached.port, seconds)
    except PeerUnavailable as error:
        sys.stderr.write(f"sphinx: server figures skipped: {error}\n")
        return []
    with start_sphinx_server(threads=4) as server:
        subject = _load(server.host, server.port, seconds)
    figures: list[Figure] = []
    for label, share in PERCENTILES.items():
        ours, theirs = subject.latency_ms(share), reference.latency_ms(share)
        figures.append(_compared(f"sphinx.server_{label}_ms", ours, theirs, "ms"))
        figures.append({"name": f"sphinx.memcached_{label}_ms", "value": theirs, "unit": "ms"})
    figures.append(
        _compared("sphinx.server_throughput_rps", subject.throughput_rps, reference.throughput_rps, "requests/s")
    )
    figures.append({"name": "sphinx.memcached_throughput_rps", "value": reference.throughput_rps, "unit": "requests/s"})
    figures.append({"name": "sphinx.server_errors", "value": float(subject.errors), "unit": "requests"})
    figures.append({"name": "sphinx.memcached_errors", "value": float(reference.errors), "unit": "requests"})
    return figures


def _attacks(start: Callable[[], ServerProcess], hold: float) -> tuple[AttackResult, AttackResult]:
    with start() as server:
        multiget = multiget_attack(server.host, server.port, server.process.pid)
    with start() as server:
        noread = noread_attack(server.host, server.port, server.process.pid, hold=hold)
    return multiget, noread


def attack_figures(quick: bool) -> list[Figure]:
    """Memory and responsiveness of memcached and the server under the two attacks."""
    hold = 1.0 if quick else 3.0
    try:
        reference = _attacks(start_memcached, hold)
    except PeerUnavailable as error:
        sys.stderr.write(f"sphinx: attack figures skipped: {error}\n")
        return []
    subject = _attacks(lambda: start_sphinx_server(threads=4), hold)
    for result in (*reference, *subject):
        if result.unanswered_probes or result.lost_writes or not result.reply_ok:
            sys.stderr.write(f"sphinx: an attack went wrong: {result}\n"[:400])

    def worst(results: tuple[AttackResult, AttackResult]) -> float:
        return max(result.worst_version_ms for result in results)

    return [
        _compared("sphinx.attack_multiget_rss_mib", subject[0].growth_mib, reference[0].growth_mib, "MiB"),
        _compared("sphinx.attack_noread_rss_mib", subject[1].growth_mib, reference[1].growth_mib, "MiB"),
        _compared("sphinx.attack_version_ms", worst(subject), worst(reference), "ms"),
    ]


def emulated_figures(quick: bool) -> list[Figure]:
    """The emulated store, driven directly: requests per second, forwarded share and
    cross-core share; then the cross-core share with aligned steering."""
    store, elapsed, requests, forwarded = _drive_emulated(quick, "reuseport")
    aligned = _drive_emulated(True, "incoming_cpu")[0]
    return [
        {"name": "sphinx.emulated_requests_per_second", "value": requests / elapsed, "unit": "requests/s"},
        {"name": "sphinx.forwarded_share", "value": forwarded / requests if requests else 0.0, "unit": "share"},
        {"name": "sphinx.cross_core_share", "value": _cross_core_share(store), "unit": "share"},
        {"name": "sphinx.cross_core_share_aligned", "value": _cross_core_share(aligned), "unit": "share"},
    ]


def _cross_core_share(store: Sphinx) -> float:
    packets = sum(store.nic.counters.rx_packets)
    return store.nic.counters.cross_core_deliveries / packets if packets else 0.0


def _drive_emulated(quick: bool, steering: Steering) -> tuple[Sphinx, float, int, int]:
    """The emulated workload on a fresh 4-thread store: the store, the seconds the
    measured batches took, and the requests and forwarded requests among them."""
    from impl.sphinx import Sphinx

    rng = random.Random(0)
    value = b"v" * VALUE_SIZE
    store = Sphinx(4, seed=0, steering=steering)
    conns = [store.connect() for _ in range(16)]
    for index in range(KEYS):
        store.send(conns[index % len(conns)], b"set %s 0 0 %d\r\n%s\r\n" % (workload_key(index), VALUE_SIZE, value))
    store.settle()
    for conn in conns:
        store.receive(conn)
    before_requests, before_forwarded = store.counters.requests, store.counters.forwarded
    batches = 5 if quick else 25
    started = time.perf_counter()
    for _ in range(batches):
        for conn in conns:
            batch = bytearray()
            for _ in range(20):
                key = workload_key(rng.randrange(KEYS))
                if rng.random() < GET_SHARE:
                    batch += b"get %s\r\n" % key
                else:
                    batch += b"set %s 0 0 %d\r\n%s\r\n" % (key, VALUE_SIZE, value)
            store.send(conn, bytes(batch))
        store.settle()
        for conn in conns:
            store.receive(conn)
    elapsed = time.perf_counter() - started
    requests = store.counters.requests - before_requests
    forwarded = store.counters.forwarded - before_forwarded
    return store, elapsed, requests, forwarded


def sim_figures(
    quick: bool, *, requests: int | None = None, connections: tuple[int, ...] | None = None,
    point_requests: int | None = None,
) -> list[Figure]:  # fmt: skip
    """The simulated experiment's figures (see the module docstring); the keyword
    arguments shrink the runs (tests)."""
    import os

    from memoracle.sphinx.sim.engine import RunSpec, Simulation
    from memoracle.sphinx.sim.experiment import CONNECTIONS, ExperimentConfig, Grid, run_in_process

    per_point = requests if requests is not None else (5_000 if quick else 20_000)
    counts = connections if connections is not None else CONNECTIONS
    figures: list[Figure] = []
    for loop, suffix in (("open", ""), ("closed", "_closed")):
        config = ExperimentConfig(("modern",), per_point, connections=counts, irq_configs=("balance",), loop=loop)
        grid = Grid(run_in_process(config))
        for workload in ("update", "read"):
            best = max(1 - grid.p("modern", "sphinx", workload, "balance", n) / grid.p("modern", "memcached", workload,
                                                                                         "balance", n)
                       for n in counts)  # fmt: skip
            figures.append({"name": f"sphinx.sim_{workload}_p99_reduction_default_modern{suffix}", "value": best,
                            "unit": "share"})  # fmt: skip
    big = point_requests if point_requests is not None else (100_000 if quick else 1_000_000)
    spec = RunSpec("sphinx", "modern", "balance", "update", 384, big, 2500.0)
    started = time.perf_counter()
    Simulation(spec).run()
    seconds = time.perf_counter() - started
    figures.append({"name": "sphinx.sim_requests_per_second", "value": big / seconds, "unit": "requests/s"})
    figures.append({"name": "sphinx.sim_point_seconds", "value": seconds, "unit": "s"})
    figures.append({"name": "sphinx.sim_load_average", "value": os.getloadavg()[0], "unit": "runnable tasks"})
    return figures


def sphinx_figures(quick: bool) -> list[Figure]:
    """Every sphinx.* figure (shorter runs when ``quick``)."""
    return server_vs_memcached_figures(quick) + emulated_figures(quick) + attack_figures(quick) + sim_figures(quick)
