"""The discrete-event simulator of the Sphinx paper's experiment (memoracle.sphinx.sim).

Hand-computed latencies on a 4-core machine, the invariants (checked from the trace, not
from the simulator's bookkeeping) on every design and IRQ configuration, the mutants the
checks must catch, determinism, and placement shared with the emulated store."""

from __future__ import annotations

import pytest

from impl.nic_emu import rss_hash
from impl.sphinx import Sphinx, default_flow, key_owner, reuseport_thread
from memoracle.sphinx.sim.costs import COST_ENTRIES, Costs, parse_override
from memoracle.sphinx.sim.engine import RunSpec, Simulation, percentiles_of, workload_keys
from memoracle.sphinx.sim.machines import MACHINES, place
from memoracle.sphinx.sim.mutants import SIM_MUTANTS
from memoracle.sphinx.sim.trace import check_trace

#: Round numbers, so that latencies can be added up by hand. Every cache line costs 7 ns.
HAND = Costs().replaced({
    "irq_entry": 1000, "rx_packet": 500, "epoll": 0, "recv": 100, "parse": 0, "hash": 0, "lookup": 200,
    "store": 300, "send": 400, "context_switch": 1000, "wake_call": 0, "wake_ipi": 2000, "spsc_push": 10,
    "spsc_pop": 20, "eventfd_write": 50, "eventfd_read": 60, "lock_op": 0, "mc_alloc_hold": 200,
    "mc_lru_hold": 300, "line_same_socket": 7, "line_cross_socket": 7, "client_wire": 0,
})  # fmt: skip


def _run(spec: RunSpec, cls: type[Simulation] = Simulation) -> tuple[Simulation, list[int]]:
    sim = cls(spec, trace=True, keep_latencies=True)
    result = sim.run()
    assert result.latencies_ns is not None
    return sim, result.latencies_ns


def _spec(design: str, config: str, workload: str, connections: int, arrivals: list[tuple[int, int, int]]) -> RunSpec:
    return RunSpec(design, "tiny", config, workload, connections, len(arrivals), 1.0, warmup=0.0,  # type: ignore[arg-type]
                   costs=HAND, arrivals=tuple(arrivals))  # fmt: skip


def test_sphinx_forwarded_get_by_hand() -> None:
    """IRQ on a dedicated core, thread asleep, key owned by the other thread (asleep)."""
    keys = workload_keys()
    placement = place(MACHINES["tiny"], "affinity", "sphinx", 1, keys, seed=0, stripes=8192)
    home = placement.conn_thread[0]
    key = next(k for k in range(len(keys)) if placement.key_owner[k] != home)
    sim, latencies = _run(_spec("sphinx", "affinity", "read", 1, [(0, 0, key)]))
    # IRQ: 1000 + 500 = 1500. Wake home: +2000 IPI, +1000 switch = 4500. Request: recv 100
    # + 4 packet lines x 7 + push 10 = 4638, then the doorbell (eventfd_write 50) wakes the
    # owner: +2000 +1000 = 7638. Message: eventfd_read 60 + pop 20 + 2 lines x 7 + lookup
    # 200 + push 10 = 7942; doorbell wakes home: +2000 +1000 = 10942. Reply: eventfd_read
    # 60 + pop 20 + (2 + 4 value lines) x 7 + send 400 = 11464.
    assert latencies == [11464]
    assert check_trace(sim.trace) == []  # type: ignore[arg-type]


def test_memcached_local_irq_get_by_hand() -> None:
    """No affinity: the IRQ runs on the thread's own core, so the wake needs no IPI."""
    keys = workload_keys()
    placement = place(MACHINES["tiny"], "spread", "memcached", 4, keys, seed=0, stripes=8192)
    conn = next(c for c in range(4) if placement.nic.irq_core[placement.nic.rx_queue_of(placement.conn_fid[c])]
                == placement.thread_core[placement.conn_thread[c]])  # fmt: skip
    sim, latencies = _run(_spec("memcached", "spread", "read", 4, [(0, conn, 5)]))
    # IRQ 1500; local wake: switch 1000 = 2500; recv 100 (no line moved) = 2600; item lock
    # free: lookup 200 = 2800; send 400 = 3200.
    assert latencies == [3200]
    assert check_trace(sim.trace) == []  # type: ignore[arg-type]


def _contended_pair() -> tuple[int, int, list[tuple[int, int, int]]]:
    """Two connections on different threads whose IRQs run on different cores, and two
    keys in different item-lock stripes; arrivals at 0 and 50 ns."""
    keys = workload_keys()
    placement = place(MACHINES["tiny"], "affinity", "memcached", 4, keys, seed=0, stripes=8192)
    irq = [placement.nic.irq_core[placement.nic.rx_queue_of(fid)] for fid in placement.conn_fid]
    a, b = next((a, b) for a in range(4) for b in range(4)
                if irq[a] != irq[b] and placement.conn_thread[a] != placement.conn_thread[b])  # fmt: skip
    assert placement.key_stripe[1] != placement.key_stripe[2]
    return a, b, [(0, a, 1), (50, b, 2)]


def test_memcached_lock_contention_by_hand() -> None:
    """Two sets at once: the second waits for the slabs lock and for the LRU lock."""
    a, b, arrivals = _contended_pair()
    sim, latencies = _run(_spec("memcached", "affinity", "update", 4, arrivals))
    # First (a): IRQ 1500, IPI 3500, switch 4500, recv + 4 lines 4628; slabs [4628, 4828);
    # store 5128; item stripe [5128, 5328); LRU [5328, 5628); send 6028.
    # Second (b), 50 ns later: slabs asked at 4678, granted at 4828, its line moves (7):
    # 5035; store 5335; stripe [5335, 5535); LRU asked at 5535, granted at 5628, lock and
    # 3 LRU lines move (28): 5956; send 6356 - 50 = 6306 after its arrival.
    by_arrival = dict(zip((a, b), latencies))
    assert by_arrival == {a: 6028, b: 6306}
    assert check_trace(sim.trace) == []  # type: ignore[arg-type]


def test_free_contention_mutant_changes_the_hand_computed_latency() -> None:
    _, _, arrivals = _contended_pair()
    sim, latencies = _run(_spec("memcached", "affinity", "update", 4, arrivals), SIM_MUTANTS["free-contention"])
    assert latencies != [6028, 6306]
    assert any("held twice at once" in problem for problem in check_trace(sim.trace))  # type: ignore[arg-type]


@pytest.mark.parametrize("design", ["sphinx", "memcached"])
@pytest.mark.parametrize("config", ["balance", "spread", "affinity"])
@pytest.mark.parametrize("workload", ["read", "update"])
def test_invariants_hold_on_every_configuration(design: str, config: str, workload: str) -> None:
    spec = RunSpec(design, "legacy", config, workload, 48, 2000, 3000.0, seed=3)  # type: ignore[arg-type]
    sim = Simulation(spec, trace=True)
    result = sim.run()
    assert sim.trace is not None and check_trace(sim.trace) == []
    assert result.measured == 1800
    assert len(sim.trace.answered) == 2000


def test_irq_beside_thread_mutant_is_caught() -> None:
    """Without affinity IRQs share cores with threads; a simulator that runs them side by
    side makes a core run two things at once."""
    for design in ("sphinx", "memcached"):
        spec = RunSpec(design, "legacy", "spread", "read", 48, 2000, 3000.0)  # type: ignore[arg-type]
        sim = SIM_MUTANTS["irq-beside-thread"](spec, trace=True)
        sim.run()
        assert sim.trace is not None
        assert any("runs two things at once" in problem for problem in check_trace(sim.trace)), design


def test_free_contention_mutant_is_caught_under_load() -> None:
    spec = RunSpec("memcached", "legacy", "affinity", "update", 48, 2000, 3000.0)
    sim = SIM_MUTANTS["free-contention"](spec, trace=True)
    sim.run()
    assert sim.trace is not None
    assert any("held twice at once" in problem for problem in check_trace(sim.trace))


def test_checker_catches_planted_trace_faults() -> None:
    spec = RunSpec("sphinx", "legacy", "spread", "read", 24, 300, 3000.0)
    sim = Simulation(spec, trace=True)
    sim.run()
    trace = sim.trace
    assert trace is not None and check_trace(trace) == []
    trace.answered.append(trace.answered[0])
    trace.event_times.insert(5, -1)
    problems = check_trace(trace)
    assert any("answered more than once" in p for p in problems)
    assert any("virtual time went back" in p for p in problems)
    del trace.answered[-1]
    dropped = trace.answered.pop()
    assert any(f"never answered (first: [{dropped}" in p for p in check_trace(trace))


def test_the_same_spec_gives_the_same_result_and_seeds_differ() -> None:
    spec = RunSpec("sphinx", "legacy", "balance", "update", 96, 3000, 2000.0, seed=7)
    first, second = Simulation(spec).run(), Simulation(spec).run()
    assert first.as_plain() == second.as_plain()
    other = Simulation(RunSpec("sphinx", "legacy", "balance", "update", 96, 3000, 2000.0, seed=8)).run()
    assert other.as_plain() != first.as_plain()


def test_placement_is_the_emulated_stores() -> None:
    """Connections bind and keys belong where impl.sphinx.Sphinx puts them."""
    store = Sphinx(4, 4 * 2 * 1024 * 1024, seed=5, nic_queues=4)
    keys = workload_keys()[:200]
    placement = place(MACHINES["tiny"], "spread", "sphinx", 12, keys, seed=5, stripes=8192)
    for conn in range(12):
        assert store.connect() == conn
        assert store.connections[conn].thread == placement.conn_thread[conn]
        flow = default_flow(5, conn)
        assert placement.conn_thread[conn] == reuseport_thread(flow, 4, store.nic.rss_key)
        assert store.nic.rx_queue_for(flow) == store.nic.indirection[rss_hash(flow) & 127]
    assert [store.owner_of(k) for k in keys] == placement.key_owner == [key_owner(k, 4) for k in keys]


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1000, 101_000, 1000))  # 1..100 µs
    got = percentiles_of(values, (0.5, 0.99, 0.999))
    assert got == {"p50": 50.0, "p99": 99.0, "p99.9": 100.0}


def test_cost_table_overrides_are_checked() -> None:
    assert parse_override("mc_lru_hold=600") == ("mc_lru_hold", 600)
    assert Costs().replaced({"send": 1}).send == 1
    for bad in ("nosuch=3", "send=-1", "send", "send=x"):
        with pytest.raises(ValueError):
            parse_override(bad)
    assert len({entry.name for entry in COST_ENTRIES}) == len(COST_ENTRIES) == len(Costs().as_dict())


def test_simulator_check_fails_when_a_mutant_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoracle.sphinx.checks import SPHINX_CHECKS

    check = next(c for c in SPHINX_CHECKS if c.name == "simulator")
    assert check.run(2).ok
    monkeypatch.setitem(SIM_MUTANTS, "free-contention", Simulation)  # the faithful simulator is no mutant
    outcome = check.run(2)
    assert not outcome.ok
    assert outcome.report == ("simulator mutants not caught: free-contention\n"
                              "reproduce: memoracle check --system sphinx --seed 2")  # fmt: skip
