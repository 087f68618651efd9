"""The paper's claims about Figure 3, each judged on a simulated grid, and their sensitivity.

Each :class:`Claim` states what the paper says (with its figure per machine), how it is
measured on the grid (:class:`~memoracle.sphinx.sim.experiment.Grid` of one machine), and
when it *holds*. A reduction is ``1 - p99(Sphinx) / p99(memcached-style)``; "up to" is
the largest over the connection counts. A claim with a number is **reproduced** when it
holds and the simulated figure is within 0.15 of the paper's, **direction only** when it
holds with another magnitude, **not reproduced** otherwise.

:func:`sensitivity` reruns a reduced grid with one cost entry halved or doubled (and the
load changed) and reports which variants change a claim's verdict: those entries are
what the conclusion rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from memoracle.execution.campaign import Campaign, Plain
from memoracle.sphinx.sim.costs import COST_ENTRIES
from memoracle.sphinx.sim.experiment import ExperimentConfig, Grid, run_point

#: How close a simulated reduction must be to the paper's to count as reproduced.
TOLERANCE = 0.15


@dataclass(frozen=True)
class Verdict:
    """A claim judged on one machine: the simulated figure (text), whether the claim
    holds, and the number compared with the paper's (None when the claim has none)."""

    simulated: str
    holds: bool
    value: float | None = None


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``key``, its text, the paper's figure per machine (text,
    and the number when there is one), and how to judge it on a machine's grid."""

    key: str
    text: str
    paper: dict[str, str]
    paper_value: dict[str, float]
    judge: Callable[[Grid, str], Verdict]

    def outcome(self, verdict: Verdict, machine: str) -> str:
        """``reproduced``, ``direction only`` or ``not reproduced``."""
        if not verdict.holds:
            return "not reproduced"
        target = self.paper_value.get(machine)
        if target is None or verdict.value is None or abs(verdict.value - target) <= TOLERANCE:
            return "reproduced"
        return "direction only"


def _reduction(grid: Grid, machine: str, workload: str, config: str, conns: int) -> float:
    return 1.0 - grid.p(machine, "sphinx", workload, config, conns) / grid.p(machine, "memcached", workload, config, conns)


def _best_reduction(grid: Grid, machine: str, workload: str, config: str) -> tuple[float, int]:
    return max((_reduction(grid, machine, workload, config, n), n) for n in grid.connections(machine))


def _pct(value: float) -> str:
    return f"{value * 100:+.0f} %"


def _up_to(workload: str, config: str) -> Callable[[Grid, str], Verdict]:
    def judge(grid: Grid, machine: str) -> Verdict:
        best, conns = _best_reduction(grid, machine, workload, config)
        text = f"up to {best * 100:.0f} % lower (at {conns} connections)" if best > 0 else (
            f"never lower: at best {_pct(-best)} higher (at {conns} connections)")  # fmt: skip
        return Verdict(text, best > 0, best)

    return judge


def _affinity_lowest(grid: Grid, machine: str) -> Verdict:
    wins, details = 0, []
    for design in ("sphinx", "memcached"):
        for workload in ("read", "update"):
            mean = {
                config: sum(grid.p(machine, design, workload, config, n) for n in grid.connections(machine))
                / len(grid.connections(machine))
                for config in ("balance", "spread", "affinity")
            }  # fmt: skip
            best_other = min(mean["balance"], mean["spread"])
            wins += mean["affinity"] < best_other
            details.append(f"{design} {workload} {mean['affinity']:.0f} vs {best_other:.0f} µs")
    return Verdict(f"lowest in {wins}/4 (mean p99 affinity vs best other: {'; '.join(details)})", wins == 4)


def _worse_at_few(grid: Grid, machine: str) -> Verdict:
    few = grid.connections(machine)[0]
    ratios = {w: grid.p(machine, "sphinx", w, "balance", few) / grid.p(machine, "memcached", w, "balance", few)
              for w in ("read", "update")}  # fmt: skip
    text = f"at {few} connections Sphinx p99 is {ratios['read']:.2f}x (read), {ratios['update']:.2f}x (update) memcached's"
    return Verdict(text, all(r > 1 for r in ratios.values()))


def _irqbalance_vs_affinity(grid: Grid, machine: str) -> Verdict:
    balance_effect, affinity_effect, cells = 0.0, 0.0, 0
    for design in ("sphinx", "memcached"):
        for workload in ("read", "update"):
            for n in grid.connections(machine):
                spread = grid.p(machine, design, workload, "spread", n)
                balance_effect += abs(grid.p(machine, design, workload, "balance", n) - spread) / spread
                affinity_effect += abs(grid.p(machine, design, workload, "affinity", n) - spread) / spread
                cells += 1
    b, a = balance_effect / cells, affinity_effect / cells
    return Verdict(f"mean p99 change: irqbalance on/off {b * 100:.0f} %, affinity on/off {a * 100:.0f} %", b < a)


def _irqbalance_detail(grid: Grid, machine: str) -> Verdict:
    def best_cut(design: str, workload: str) -> float:
        return max(1 - grid.p(machine, design, workload, "spread", n) / grid.p(machine, design, workload, "balance", n)
                   for n in grid.connections(machine))  # fmt: skip

    sphinx = max(abs(1 - grid.p(machine, "sphinx", w, "spread", n) / grid.p(machine, "sphinx", w, "balance", n))
                 for w in ("read", "update") for n in grid.connections(machine))  # fmt: skip
    mc_read, mc_update = best_cut("memcached", "read"), best_cut("memcached", "update")
    text = (f"irqbalance off: memcached read p99 up to {mc_read * 100:.0f} % lower, update {mc_update * 100:.0f} %; "
            f"Sphinx changes by at most {sphinx * 100:.0f} %")  # fmt: skip
    return Verdict(text, mc_read > 0 and sphinx < mc_read, mc_read)


CLAIMS: tuple[Claim, ...] = (
    Claim("affinity-lowest", "IRQ affinity to dedicated cores (irqbalance off) gives the lowest tail latency, "
          "for both stores and both workloads (Fig. 3c)",
          {"modern": "lowest", "legacy": "lowest"}, {}, _affinity_lowest),
    Claim("update-default", "default configuration: Sphinx's update p99 up to 67 % (modern) / 47 % (legacy) "
          "lower than memcached's", {"modern": "up to 67 % lower", "legacy": "up to 47 % lower"},
          {"modern": 0.67, "legacy": 0.47}, _up_to("update", "balance")),
    Claim("read-default", "default configuration: Sphinx's read p99 up to 16 % (modern) / 9 % (legacy) lower "
          "than memcached's", {"modern": "up to 16 % lower", "legacy": "up to 9 % lower"},
          {"modern": 0.16, "legacy": 0.09}, _up_to("read", "balance")),
    Claim("worse-at-few", "Sphinx's read and update tails are higher than memcached's at few connections "
          "(work not spread over all cores)", {"modern": "higher at few", "legacy": "higher at few"}, {},
          _worse_at_few),
    Claim("irqbalance-less", "irqbalance has a smaller effect on tail latency than IRQ affinity",
          {"modern": "smaller", "legacy": "smaller"}, {}, _irqbalance_vs_affinity),
    Claim("irqbalance-memcached", "irqbalance off: memcached's read p99 up to 23 % (modern) / 4 % (legacy) lower "
          "than with it (update 7 % / 4 %); Sphinx unaffected",
          {"modern": "read up to 23 % lower", "legacy": "read up to 4 % lower"},
          {"modern": 0.23, "legacy": 0.04}, _irqbalance_detail),
    Claim("read-affinity", "IRQ affinity: Sphinx's read p99 up to 20 % (modern) / 54 % (legacy) lower than "
          "memcached's", {"modern": "up to 20 % lower", "legacy": "up to 54 % lower"},
          {"modern": 0.20, "legacy": 0.54}, _up_to("read", "affinity")),
    Claim("update-affinity", "IRQ affinity: Sphinx's update p99 up to 71 % (modern) / 66 % (legacy) lower",
          {"modern": "up to 71 % lower", "legacy": "up to 66 % lower"},
          {"modern": 0.71, "legacy": 0.66}, _up_to("update", "affinity")),
)


def judge_all(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every claim on every machine of ``points``: one plain row per (claim, machine)."""
    grid = Grid(points)
    rows = []
    for machine in grid.machines():
        for claim in CLAIMS:
            verdict = claim.judge(grid, machine)
            rows.append({
                "claim": claim.key, "machine": machine, "text": claim.text, "paper": claim.paper[machine],
                "simulated": verdict.simulated, "holds": verdict.holds, "value": verdict.value,
                "paper_value": claim.paper_value.get(machine), "outcome": claim.outcome(verdict, machine),
            })  # fmt: skip
    return rows


# ------------------------------------------------------------------ sensitivity

#: The factors each cost entry is multiplied by.
FACTORS = (0.5, 2.0)
#: The load variants: the rate per connection multiplied by these.
LOAD_FACTORS = (0.5, 1.5)
#: The reduced grid of a sensitivity run.
SENSITIVITY_CONNECTIONS = (24, 384)
SENSITIVITY_REQUESTS = 10_000


@dataclass(frozen=True)
class SensitivityConfig:
    """A base experiment and its variants: ``("base", 1.0)``, ``(entry, factor)`` for
    every cost entry and factor, ``("load", factor)`` for the rate."""

    base: ExperimentConfig
    variants: tuple[tuple[str, float], ...]

    def config(self, variant: int) -> ExperimentConfig:
        """The experiment of ``variant``."""
        name, factor = self.variants[variant]
        base = self.base
        if name == "base":
            return base
        if name == "load":
            machine = base.machines[0]
            return ExperimentConfig(base.machines, base.requests, base.seed, base.connections,
                                    rate=base.rate_for(machine) * factor, overrides=base.overrides,
                                    loop=base.loop)  # fmt: skip
        scaled = base.costs().scaled(name, factor).as_dict()[name]
        overrides = tuple((k, v) for k, v in base.overrides if k != name) + ((name, scaled),)
        return ExperimentConfig(base.machines, base.requests, base.seed, base.connections, rate=base.rate,
                                overrides=overrides, loop=base.loop)  # fmt: skip

    def units(self) -> int:
        """Points in all variants."""
        return len(self.variants) * len(self.base.points)


def sensitivity_config(
    machine: str, seed: int = 0, requests: int = SENSITIVITY_REQUESTS, loop: str = "open",
    connections: tuple[int, ...] = SENSITIVITY_CONNECTIONS,
) -> SensitivityConfig:  # fmt: skip
    """Every cost entry halved and doubled, and (open loop) the load, on a reduced grid
    of ``machine``."""
    base = ExperimentConfig((machine,), requests=requests, seed=seed, connections=connections, loop=loop)
    variants: list[tuple[str, float]] = [("base", 1.0)]
    variants += [(entry.name, f) for entry in COST_ENTRIES for f in FACTORS]
    if loop == "open":
        variants += [("load", f) for f in LOAD_FACTORS]
    return SensitivityConfig(base, tuple(variants))


def run_sensitivity_shard(config: SensitivityConfig, shard: int, shards: int) -> list[dict[str, Plain]]:
    """The (variant, point) units of ``shard``: unit ``k`` is variant ``k // points``,
    point ``k % points``; unit ``k`` belongs to shard ``k mod shards``."""
    per = len(config.base.points)
    out = []
    for unit in range(shard, config.units(), shards):
        point = run_point(config.config(unit // per), unit % per)
        point["variant"] = unit // per
        out.append(point)
    return out


def sensitivity_campaign(config: SensitivityConfig, shards: int = 64) -> Campaign:
    """The sensitivity runs as a campaign of ``shards`` shards."""
    base = config.base
    return Campaign(
        name="sphinx sensitivity", config=config,
        identity={"base": base.identity(), "variants": [list(v) for v in config.variants]},
        seed=base.seed, shards=min(shards, config.units()), run_shard=run_sensitivity_shard,
        violations=lambda result: 0,
        reproduce=lambda shard, count: (f"memoracle sphinx experiment --machine {base.machines[0]} --sensitivity "
                                        f"--loop {base.loop} --seed {base.seed} --shard {shard}/{count}"),
    )  # fmt: skip


def sensitivity_table(config: SensitivityConfig, units: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per claim: its verdict on the reduced base grid and the variants that change it."""
    machine = config.base.machines[0]
    by_variant: dict[int, list[dict[str, Any]]] = {}
    for unit in units:
        by_variant.setdefault(int(unit["variant"]), []).append(unit)
    verdicts = {v: {c.key: c.judge(Grid(points), machine).holds for c in CLAIMS} for v, points in by_variant.items()}
    base = verdicts[0]
    rows = []
    for claim in CLAIMS:
        flips = []
        for v, (name, factor) in enumerate(config.variants):
            if v and v in verdicts and verdicts[v][claim.key] != base[claim.key]:
                flips.append(f"{name} x{factor:g}")
        rows.append({"claim": claim.key, "machine": machine, "holds_on_base": base[claim.key], "flipped_by": flips})
    return rows


__all__ = [
    "CLAIMS",
    "FACTORS",
    "LOAD_FACTORS",
    "SENSITIVITY_CONNECTIONS",
    "Claim",
    "SensitivityConfig",
    "Verdict",
    "judge_all",
    "run_sensitivity_shard",
    "sensitivity_campaign",
    "sensitivity_config",
    "sensitivity_table",
]
