"""The paper's experiment as a grid of simulated points, run as shards of the execution layer.

A point is one design (Sphinx or memcached-style) under one workload (read-only or
update-only) in one IRQ configuration with one number of connections, on one machine.
Each point is one shard of a :class:`~memoracle.execution.campaign.Campaign`, so
``--jobs N`` and ``--cluster`` spread the grid over processes or machines; a shard's
result is a plain dict (the point and its :meth:`RunResult.as_plain`), the same wherever
it ran, and the grid is merged in point order.

The load, two ways (``loop``):

- ``open`` (the default): every connection sends Poisson arrivals at
  :data:`RATE_PER_CONNECTION` requests per virtual second whatever the replies — 2,500
  on the modern machine (960,000 requests/s at 384 connections, 20,000 per core) and the
  same load per core on the legacy one (2,500 × 16 / 48). The rate is a choice: the
  paper gives none.
- ``closed``: mutilate as the paper ran it (no ``--qps``): one request outstanding per
  connection, the next sent as soon as the reply reaches the client; the load is then
  whatever the server sustains, and more connections mean more requests in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from memoracle.execution.campaign import Campaign, Plain
from memoracle.sphinx.sim.costs import Costs
from memoracle.sphinx.sim.engine import RunSpec, Simulation
from memoracle.sphinx.sim.machines import DESIGNS, IRQ_CONFIGS, MACHINES

#: Connections per point: 24 mutilate threads × 1, 2, 4, 8, 12, 16 connections each.
CONNECTIONS = (24, 48, 96, 192, 288, 384)
#: The connection count of the paper's percentile curves.
CURVE_CONNECTIONS = 288
WORKLOADS = ("read", "update")
#: Each connection's arrival rate (requests per virtual second), per machine.
RATE_PER_CONNECTION = {"modern": 2500.0, "legacy": 2500.0 * 16 / 48, "tiny": 2500.0 * 4 / 48}
#: Requests per point by default (the first 10 % warm the machine up).
DEFAULT_REQUESTS = 100_000


@dataclass(frozen=True)
class Point:
    """One cell of the grid."""

    machine: str
    design: str
    workload: str
    irq_config: str
    connections: int

    def label(self) -> str:
        """``modern sphinx update balance 384``."""
        return f"{self.machine} {self.design} {self.workload} {self.irq_config} {self.connections}"


@dataclass(frozen=True)
class ExperimentConfig:
    """What decides an experiment's results: machines, grid, requests, seed, the rate
    per connection (None: :data:`RATE_PER_CONNECTION`), cost overrides, and whether each
    point is run with its trace checked."""

    machines: tuple[str, ...]
    requests: int = DEFAULT_REQUESTS
    seed: int = 0
    connections: tuple[int, ...] = CONNECTIONS
    designs: tuple[str, ...] = DESIGNS
    workloads: tuple[str, ...] = WORKLOADS
    irq_configs: tuple[str, ...] = IRQ_CONFIGS
    rate: float | None = None
    overrides: tuple[tuple[str, int], ...] = ()
    check: bool = False
    loop: str = "open"
    points: tuple[Point, ...] = field(init=False)

    def __post_init__(self) -> None:
        points = tuple(
            Point(machine, design, workload, config, conns)
            for machine in self.machines
            for config in self.irq_configs
            for workload in self.workloads
            for design in self.designs
            for conns in self.connections
        )  # fmt: skip
        object.__setattr__(self, "points", points)

    def costs(self) -> Costs:
        """The cost table in force."""
        return Costs().replaced(dict(self.overrides))

    def rate_for(self, machine: str) -> float:
        """Each connection's arrival rate on ``machine``."""
        return self.rate if self.rate is not None else RATE_PER_CONNECTION[machine]

    def spec(self, point: Point) -> RunSpec:
        """The run of ``point``."""
        return RunSpec(point.design, point.machine, point.irq_config, point.workload, point.connections,  # type: ignore[arg-type]
                       self.requests, self.rate_for(point.machine), seed=self.seed, costs=self.costs(),
                       loop=self.loop)  # fmt: skip

    def identity(self) -> dict[str, Plain]:
        """Everything that decides the results, as plain values."""
        return {
            "machines": list(self.machines), "requests": self.requests, "seed": self.seed,
            "connections": list(self.connections), "designs": list(self.designs), "workloads": list(self.workloads),
            "irq_configs": list(self.irq_configs), "rate": self.rate, "overrides": [list(o) for o in self.overrides],
            "check": self.check, "loop": self.loop,
        }  # fmt: skip


def run_point(config: ExperimentConfig, index: int) -> dict[str, Plain]:
    """Simulate point ``index`` of ``config``: the point, its result, and the invariants
    its trace broke (checked only with ``config.check``)."""
    point = config.points[index]
    spec = config.spec(point)
    simulation = Simulation(spec, trace=config.check)
    result = simulation.run()
    problems: list[str] = []
    if config.check:
        from memoracle.sphinx.sim.trace import check_trace

        assert simulation.trace is not None
        problems = check_trace(simulation.trace)
    return {
        "index": index, "machine": point.machine, "design": point.design, "workload": point.workload,
        "irq_config": point.irq_config, "connections": point.connections, "requests": spec.requests,
        "rate_per_connection": spec.rate_per_connection, "loop": spec.loop, "result": result.as_plain(),
        "problems": problems,
    }  # fmt: skip


def run_shard(config: ExperimentConfig, shard: int, shards: int) -> list[dict[str, Plain]]:
    """The points of ``shard`` (point ``k`` belongs to shard ``k mod shards``)."""
    return [run_point(config, index) for index in range(shard, len(config.points), shards)]


def _violations(result: Plain) -> int:
    return sum(len(point["problems"]) for point in result)


def reproduce_command(config: ExperimentConfig, shard: int, shards: int) -> str:
    """The command that reruns ``shard`` of ``shards`` in one process."""
    text = f"memoracle sphinx experiment --requests {config.requests} --seed {config.seed}"
    if len(config.machines) == 1:
        text += f" --machine {config.machines[0]}"
    if config.connections != CONNECTIONS:
        text += " --connections " + ",".join(str(c) for c in config.connections)
    if config.rate is not None:
        text += f" --rate {config.rate:g}"
    if config.loop != "open":
        text += f" --loop {config.loop}"
    for name, ns in config.overrides:
        text += f" --cost {name}={ns}"
    if config.check:
        text += " --check"
    return text + f" --shard {shard}/{shards}"


def experiment_campaign(config: ExperimentConfig, shards: int | None = None) -> Campaign:
    """``config`` as a campaign of one shard per point (``shards`` overrides)."""
    return Campaign(
        name="sphinx experiment",
        config=config,
        identity=config.identity(),
        seed=config.seed,
        shards=shards if shards is not None else len(config.points),
        run_shard=run_shard,
        violations=_violations,
        reproduce=lambda shard, count: reproduce_command(config, shard, count),
    )


def merge(results: Sequence[Plain]) -> list[dict[str, Any]]:
    """The shards' points as one list, in point order."""
    return sorted((point for result in results for point in result), key=lambda point: int(point["index"]))


def run_in_process(config: ExperimentConfig) -> list[dict[str, Any]]:
    """Every point of ``config`` in this process, in point order (tests, benchmarks)."""
    return [run_point(config, index) for index in range(len(config.points))]


class Grid:
    """Look up the points of a merged experiment by what they are."""

    def __init__(self, points: Sequence[dict[str, Any]]) -> None:
        self.points = list(points)
        self._by = {(p["machine"], p["design"], p["workload"], p["irq_config"], p["connections"]): p for p in points}

    def p(self, machine: str, design: str, workload: str, config: str, connections: int, label: str = "p99") -> float:
        """A percentile (µs) of one point."""
        return float(self._by[(machine, design, workload, config, connections)]["result"]["percentiles_us"][label])

    def has(self, machine: str, design: str, workload: str, config: str, connections: int) -> bool:
        """Whether the grid holds that point."""
        return (machine, design, workload, config, connections) in self._by

    def connections(self, machine: str) -> list[int]:
        """The connection counts present for ``machine``, ascending."""
        return sorted({p["connections"] for p in self.points if p["machine"] == machine})

    def machines(self) -> list[str]:
        """The machines present, in the paper's order."""
        present = {p["machine"] for p in self.points}
        return [m for m in MACHINES if m in present]


__all__ = [
    "CONNECTIONS",
    "CURVE_CONNECTIONS",
    "DEFAULT_REQUESTS",
    "RATE_PER_CONNECTION",
    "WORKLOADS",
    "ExperimentConfig",
    "Grid",
    "Point",
    "experiment_campaign",
    "merge",
    "reproduce_command",
    "run_in_process",
    "run_point",
    "run_shard",
]
