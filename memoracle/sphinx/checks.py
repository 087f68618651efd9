"""sphinx's checks in the default campaign (``memoracle check --system sphinx``).

- ``conformance``: seeded workloads (2 segments of 4 KiB per thread, so segments
  expire; delayed ``flush_all`` and exptimes at ``realtime()``'s edges, with the clock
  advanced to exactly the second they take effect; malformed requests; clients that go
  away) against the precise model, byte for byte, ``stats`` included (every field but
  ``pid``), the runs cycling through :data:`CONFIGURATIONS` (1, 3 or 4 threads, rings
  of 1 or 2 slots, balanced IRQs, steering);
- ``linearizability``: concurrent histories (4 connections, 3 keys) checked per key;
- ``mutants``: every mutant of :mod:`memoracle.sphinx.mutants` must be caught by the
  conformance harness (the same workload, one run on each of the first three
  configurations; the real store passes it);
- ``simulator``: the paper experiment's discrete-event simulator
  (:mod:`memoracle.sphinx.sim`) on small runs of both designs in every IRQ configuration,
  each trace checked (one thing per core at a time, exclusive locks, time never back,
  every request answered once and in order), and both simulator mutants caught;
- ``guards``: every refusal the server documents (no threads, too many, no segment, a
  bad ring capacity or steering, the clock moved back, a wall clock advanced, an unknown
  connection) is made, and the server then still answers and keeps its invariants
  (:mod:`memoracle.sphinx.guards`); its mutant caught.
"""

from __future__ import annotations

from typing import Iterator

from memoracle.check_types import Check, Outcome

CONFORMANCE_RUNS = 12
CONFORMANCE_STEPS = 400
HISTORY_RUNS = 8
HISTORY_OPERATIONS = 300
MUTANT_STEPS = 600
#: Most runs per mutant, cycling through :data:`CONFIGURATIONS` (each configuration
#: twice), stopping at the first that catches it. Some mutants show only in one
#: configuration (``ring-full-overtakes`` needs a ring of one or two slots), and on some
#: seeds only in its second run; over seeds 0-11 the latest first catch was run 4.
MUTANT_RUNS = 2 * 5


def _make(cls: type) -> object:
    def make(threads: int, memory: int, segment_size: int, seed: int) -> object:
        return cls(threads, memory, segment_size=segment_size, seed=seed)

    return make


#: The configurations the conformance runs cycle through (thread count, and the Sphinx
#: options that must not change any reply): forwarding rings of one or two slots (so
#: messages wait for room), IRQs moved by the balancer over fewer queues than cores,
#: connections steered to their RX queue's core, a single thread.
CONFIGURATIONS: tuple[tuple[int, dict[str, object]], ...] = (
    (3, {}),
    (3, {"ring_capacity": 2, "irq_mode": "balance", "nic_queues": 2}),
    (4, {"steering": "incoming_cpu"}),
    (1, {}),
    (3, {"ring_capacity": 1}),
)


def configured_sphinx(threads: int, options: dict[str, object], cls: type | None = None) -> object:
    """A maker of Sphinx (or of its subclass ``cls``) with ``options``."""
    from impl.sphinx import Sphinx

    server = Sphinx if cls is None else cls

    def make(threads: int, memory: int, segment_size: int, seed: int) -> object:
        return server(threads, memory, segment_size=segment_size, seed=seed, **options)

    return make


def _conformance(seed: int) -> Outcome:
    from memoracle.sphinx.conformance import conformance_run

    for run in range(CONFORMANCE_RUNS):
        threads, options = CONFIGURATIONS[run % len(CONFIGURATIONS)]
        mismatch = conformance_run(
            configured_sphinx(threads, options), seed * 1000 + run, CONFORMANCE_STEPS,  # type: ignore[arg-type]
            threads=threads, memory=threads * 2 * 4096,
        )  # fmt: skip
        if mismatch is not None:
            return Outcome(
                False,
                run * CONFORMANCE_STEPS + mismatch.step,
                mismatch.render() + f"\n(configuration: {threads} threads, {options or 'defaults'})"
                f"\nreproduce: memoracle check --system sphinx --seed {seed}",
            )
    return Outcome(True, CONFORMANCE_RUNS * CONFORMANCE_STEPS)


def _linearizability(seed: int) -> Outcome:
    from impl.sphinx import Sphinx
    from memoracle.sphinx.conformance import history_run

    for run in range(HISTORY_RUNS):
        report = history_run(_make(Sphinx), seed * 1000 + run, HISTORY_OPERATIONS)  # type: ignore[arg-type]
        if report is not None:
            return Outcome(
                False,
                (run + 1) * HISTORY_OPERATIONS,
                report + f"\nreproduce: memoracle check --system sphinx --seed {seed}",
            )
    return Outcome(True, HISTORY_RUNS * HISTORY_OPERATIONS)


def _mutants(seed: int) -> Outcome:
    from memoracle.sphinx.conformance import conformance_run
    from memoracle.sphinx.mutants import SPHINX_MUTANTS

    def caught(cls: type) -> Iterator[bool]:
        for run in range(MUTANT_RUNS):  # any() below stops at the first catch
            threads, options = CONFIGURATIONS[run % len(CONFIGURATIONS)]
            yield conformance_run(
                configured_sphinx(threads, options, cls), seed * 1000 + run, MUTANT_STEPS,  # type: ignore[arg-type]
                threads=threads, memory=threads * 2 * 4096,
            ) is not None  # fmt: skip

    survivors = [name for name, cls in SPHINX_MUTANTS.items() if not any(caught(cls))]
    report = f"mutants not caught: {', '.join(survivors)}" if survivors else ""
    if survivors:
        report += f"\nreproduce: memoracle check --system sphinx --seed {seed}"
    return Outcome(not survivors, len(SPHINX_MUTANTS), report)


SIM_REQUESTS = 600


def _simulator(seed: int) -> Outcome:
    from memoracle.sphinx.sim.engine import RunSpec, Simulation
    from memoracle.sphinx.sim.machines import DESIGNS, IRQ_CONFIGS, Design, IrqConfig
    from memoracle.sphinx.sim.mutants import SIM_MUTANTS
    from memoracle.sphinx.sim.trace import check_trace

    runs = 0
    for design in DESIGNS:
        for config in IRQ_CONFIGS:
            for loop in ("open", "closed"):
                spec = RunSpec(design, "legacy", config, "update", 48, SIM_REQUESTS, 3000.0, seed=seed, loop=loop)
                simulation = Simulation(spec, trace=True)
                simulation.run()
                runs += 1
                assert simulation.trace is not None
                problems = check_trace(simulation.trace)
                if problems:
                    report = "\n".join(problems[:5])
                    return Outcome(False, runs, f"{design} {config} {loop}: {report}\n"
                                   f"reproduce: memoracle check --system sphinx --seed {seed}")  # fmt: skip
    caught = []
    cases: tuple[tuple[str, IrqConfig, Design], ...] = (
        ("irq-beside-thread", "spread", "sphinx"), ("free-contention", "affinity", "memcached"))
    for name, config, design in cases:
        spec = RunSpec(design, "legacy", config, "update", 48, SIM_REQUESTS, 3000.0, seed=seed)
        mutant = SIM_MUTANTS[name](spec, trace=True)
        mutant.run()
        assert mutant.trace is not None
        caught.append(bool(check_trace(mutant.trace)))
    if not all(caught):
        missed = [name for name, hit in zip(SIM_MUTANTS, caught) if not hit]
        return Outcome(False, runs, f"simulator mutants not caught: {', '.join(missed)}\n"
                       f"reproduce: memoracle check --system sphinx --seed {seed}")  # fmt: skip
    return Outcome(True, runs * SIM_REQUESTS)


#: The sphinx checks, in the order ``memoracle check`` runs them.
def _guards(seed: int) -> Outcome:
    """The refusals of :mod:`memoracle.sphinx.guards` (one request each: the seed changes
    nothing), then its mutants."""
    from memoracle.sphinx.guards import GUARD_MUTANTS, sphinx_guards

    probes, problem = sphinx_guards()
    if problem is not None:
        return Outcome(False, probes, problem)
    survivors = [name for name, server in GUARD_MUTANTS.items() if sphinx_guards(server)[1] is None]
    return Outcome(not survivors, probes, f"guard mutants not caught: {', '.join(survivors)}" if survivors else "")


SPHINX_CHECKS: list[Check] = [
    Check("sphinx", "conformance", "replies byte for byte against the precise model", _conformance),
    Check("sphinx", "linearizability", "per-key linearizability of concurrent histories", _linearizability),
    Check("sphinx", "mutants", "every Sphinx mutant is caught", _mutants),
    Check("sphinx", "simulator", "virtual-time experiment: invariants from each trace, simulator mutants caught",
          _simulator),
    Check("sphinx", "guards", "every documented refusal is made and changes nothing", _guards),
]
