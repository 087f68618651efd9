"""PCT interleaving runs as a campaign of shards (``memoracle interleave --pct R``).

Run ``n`` of ``--pct R --seed S`` is one PCT execution drawn from
:func:`~memoracle.spsc.interleave.pct_rng` ``(S, n)``, so runs can run anywhere. Shard
``i`` of ``N`` holds a contiguous block of runs and stops at its first violation; the
campaign's answer is the **first** violating run (the lowest ``n``) and the number of
runs up to it — exactly what :func:`~memoracle.spsc.interleave.pct` answers in one
process. Once a violation is known, shards that start after it are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from memoracle.execution.campaign import Campaign, Plain, block, shard_count
from memoracle.spsc.interleave import Scenario, pct
from spec.spsc_model import Criterion

#: PCT runs per shard (a run is about a millisecond: a shard is worth sending away).
RUNS_PER_SHARD = 2_000


@dataclass(frozen=True)
class PctConfig:
    """``runs`` PCT executions of ``scenario`` at ``depth``, seeded ``seed``."""

    scenario: Scenario
    criterion: Criterion
    runs: int
    depth: int
    seed: int


def run_pct_shard(config: PctConfig, shard: int, shards: int) -> dict[str, Plain]:
    """The shard's block of runs, up to its first violation."""
    runs = block(config.runs, shard, shards)
    result = pct(config.scenario, config.criterion, runs=len(runs), depth=config.depth, seed=config.seed,
                 first_run=runs.start)  # fmt: skip
    if result.violation is None:
        return {"executions": result.executions, "violation": None}
    return {
        "executions": result.executions,
        "violation": {"run": runs.start + result.executions - 1, "report": result.violation.render()},
    }


def _first(result: Plain) -> int | None:
    return None if result["violation"] is None else int(result["violation"]["run"])


def pct_campaign(config: PctConfig, reproduce: str) -> Campaign:
    """``config`` as a campaign; ``reproduce`` is the command line of the whole run (a
    shard's own is it with ``--shard i/N``... of the same runs, so it is given whole)."""
    shards = shard_count(config.runs, RUNS_PER_SHARD)
    return Campaign(
        name="interleave pct",
        config=config,
        identity={"scenario": config.scenario.describe(), "criterion": config.criterion.value, "runs": config.runs,
                  "depth": config.depth, "seed": config.seed},  # fmt: skip
        seed=config.seed,
        shards=shards,
        run_shard=run_pct_shard,
        violations=lambda result: int(result["violation"] is not None),
        reproduce=lambda shard, count: reproduce,
        first_violation=_first,
        first_unit=lambda shard, count: block(config.runs, shard, count).start,
    )


def merge_pct(results: Sequence[Plain], runs: int) -> dict[str, Plain]:
    """The first violation over all shards and the runs up to it (all ``runs`` if none)."""
    found = [r["violation"] for r in results if r["violation"] is not None]
    if not found:
        return {"executions": runs, "violation": None}
    first = min(found, key=lambda v: int(v["run"]))
    return {"executions": int(first["run"]) + 1, "violation": first}


__all__ = ["RUNS_PER_SHARD", "PctConfig", "merge_pct", "pct_campaign", "run_pct_shard"]
