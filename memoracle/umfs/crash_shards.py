"""The bounded-exhaustive crash campaign as shards of the execution layer.

Workload ``k`` of :func:`~memoracle.umfs.crash_campaign.workloads` belongs to shard
``k mod N``; a shard explores its workloads with one explorer and returns a plain value:
its stats (counts, and the sets it deduplicates, as sorted lists) and its violations,
each tagged with its workload's index. :func:`merge_crash` merges the stats with the
explorer's own ``Stats.merge`` (counts added, sets united) and orders the violations by
workload, so the merged result does not depend on the back-end or the order results
arrive in (:mod:`memoracle.execution`). It is independent of the shard count only as far
as ``Stats`` keeps what it deduplicates as process-independent digests.

The shard count depends on the campaign only (one workload per shard, at most
:data:`~memoracle.execution.campaign.MAX_SHARDS`), never on the workers: ``--ops 2`` is
272 shards, ``--ops 4`` 1,024 shards of about 68 workloads.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Callable, Sequence

from memoracle.execution.campaign import Campaign, Plain, shard_count, strided
from memoracle.umfs.crash_campaign import SETUP, CampaignConfig, workloads

def _stats_class() -> Any:
    """The explorer's stats class."""
    from memoracle.umfs.crash_stats import Stats

    return Stats


def stats_to_plain(stats: Any) -> dict[str, Plain]:
    """A stats dataclass as a plain dict: sets become sorted lists."""
    out: dict[str, Plain] = {}
    for field in dataclasses.fields(stats):
        value = getattr(stats, field.name)
        out[field.name] = sorted(value) if isinstance(value, (set, frozenset)) else value
    return out


def stats_from_plain(plain: dict[str, Plain]) -> Any:
    """The stats dataclass back from :func:`stats_to_plain` (lists of sets become sets)."""
    cls = _stats_class()
    stats = cls()
    for field in dataclasses.fields(stats):
        if field.name not in plain:
            continue
        current = getattr(stats, field.name)
        value = plain[field.name]
        setattr(stats, field.name, set(value) if isinstance(current, set) else value)
    return stats


def run_crash_shard(config: CampaignConfig, shard: int, shards: int) -> dict[str, Plain]:
    """Explore the workloads of ``shard``; their stats and violations (plain)."""
    explorer = config.explorer()
    violations: list[dict[str, Plain]] = []
    every = workloads(config.max_ops)
    for index in strided(len(every), shard, shards):
        for violation in explorer.explore(SETUP, every[index]):
            violations.append({"workload": index, "violation": violation.as_json(), "report": violation.render()})
        explorer.violations.clear()
    return {"stats": stats_to_plain(explorer.stats), "violations": violations}


def _identity(config: CampaignConfig) -> dict[str, Plain]:
    identity: dict[str, Plain] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        identity[field.name] = value.value if isinstance(value, Enum) else list(value) if isinstance(value, tuple) else value
    return identity


def crash_campaign(config: CampaignConfig, reproduce: Callable[[int, int], str], *, shards: int | None = None) -> Campaign:
    """The exhaustive crash campaign of ``config`` (one workload per shard by default);
    ``reproduce(shard, shards)`` is the command line that reruns one shard."""
    count = shards if shards is not None else shard_count(len(workloads(config.max_ops)))
    return Campaign(
        name="crash umfs",
        config=config,
        identity=_identity(config),
        seed=config.seed,
        shards=count,
        run_shard=run_crash_shard,
        violations=lambda result: len(result["violations"]),
        reproduce=reproduce,
    )


def merge_crash(results: Sequence[Plain]) -> tuple[Any, list[dict[str, Plain]], list[str]]:
    """The shards' results as one: stats (counts added, digest sets united; ``seconds``
    the longest shard's), violations and their reports in workload order."""
    total = _stats_class()()
    longest = 0.0
    for result in results:
        stats = stats_from_plain(result["stats"])
        longest = max(longest, float(getattr(stats, "seconds", 0.0)))
        total.merge(stats)
    if hasattr(total, "seconds"):
        total.seconds = longest
    found = sorted((v for r in results for v in r["violations"]), key=lambda v: int(v["workload"]))
    return total, [v["violation"] for v in found], [str(v["report"]) for v in found]


__all__ = ["crash_campaign", "merge_crash", "run_crash_shard", "stats_from_plain", "stats_to_plain"]
