"""The crash campaigns (bounded-exhaustive and fuzzing) as shards of the execution layer.

**Exhaustive.** Workload ``k`` of :func:`~memoracle.umfs.crash_campaign.workloads`
belongs to shard :func:`~memoracle.umfs.crash_campaign.shard_of` (grouped by a common
prefix, so a shard explores the crash points its workloads share once). A shard explores
its workloads and returns a plain value: its stats (counts, and the digest sets of what
is deduplicated — crash states and recovered trees — as sorted lists) and its violations,
each tagged with its workload's index. :func:`merge_crash` merges the stats with
:meth:`~memoracle.umfs.crash_stats.Stats.merge` (counts added, digest sets united) and
orders the violations by workload, so the merged result is the same on every back-end,
for any shard count and whatever order results arrive in — except the figures of effort
(:data:`EFFORT_FIELDS`: recoveries run rather than answered from a cache, and times),
which depend on which workloads one process explored before.

The shard count depends on the campaign only (:func:`default_shards`), never on the
workers, so a journal can be resumed on any back-end: ``--ops 1`` and ``--ops 2`` are
16 shards (by first operation), ``--ops 3`` 256 (by the first two), ``--ops 4`` 1,024
of about 68 workloads. A worker process keeps one explorer (and its caches) for the
configuration it last ran, across up to :data:`EXPLORER_SHARDS` of the shards it runs;
results do not depend on it.

**Fuzzing.** ``--examples E`` is cut into ``ceil(E / 25)`` shards (:data:`FUZZ_EXAMPLES_PER_SHARD`);
shard ``i`` of ``N`` draws its share of the examples with Hypothesis from its own seed
(``crash-fuzz/SEED/i/N``) and shrinks the first failing workload it finds. The campaign
wants its first violation in shard order: once shard ``v`` has one, later shards are not
started, and :func:`merge_fuzz` keeps only shards ``0 … v`` (every one of them runs on
every back-end), so the verdict, the workload and the counts are the same everywhere.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Sequence

from memoracle.execution.campaign import Campaign, Plain, shard_count, strided
from memoracle.umfs.crash_campaign import ALPHABET, CONTEXTS, SETUP, CampaignConfig, Explorer, fuzz, shard_of, workloads
from memoracle.umfs.crash_stats import Stats
from spec.crash_recovery import Op

#: Stats figures that measure effort, not results: they depend on the caches a process
#: had filled before (how many recoveries ran rather than being answered from a cache)
#: and on time, so they may differ between back-ends and shard counts; every other
#: figure is the same.
EFFORT_FIELDS = ("runs", "checks_reused", "seconds", "classes_per_second")
#: Fuzzed examples per shard.
FUZZ_EXAMPLES_PER_SHARD = 25
#: The most shards of an exhaustive campaign.
MAX_CRASH_SHARDS = 1024

#: How many shards one kept explorer serves before a fresh one replaces it: its caches
#: answer crash points that shards share (``--ops 2`` in one process: 16.4 s of CPU
#: against 20.0 s with a fresh explorer per shard) but grow (3-4 MiB per ``--ops 4``
#: shard, which share little), so a long-lived worker's memory stays bounded.
EXPLORER_SHARDS = 64

#: This process's explorer for the configuration it last ran, and how many shards it has
#: served (the results do not depend on it).
_explorer: dict[CampaignConfig, tuple[Explorer, list[int]]] = {}


def default_shards(max_ops: int) -> int:
    """The exhaustive campaign's shard count for workloads of up to ``max_ops``
    operations: ``len(ALPHABET) ** (max_ops - 1)`` (at least ``len(ALPHABET)``, at most
    :data:`MAX_CRASH_SHARDS`)."""
    return min(MAX_CRASH_SHARDS, int(len(ALPHABET) ** max(1, max_ops - 1)))


def shard_units(max_ops: int, shard: int, shards: int) -> list[int]:
    """The indices (in :func:`workloads` order) of the workloads of ``shard``."""
    return [index for index, ops in enumerate(workloads(max_ops)) if shard_of(ops, shards) == shard]


def stats_to_plain(stats: Stats) -> dict[str, Plain]:
    """A :class:`Stats` as a plain dict: digest sets become sorted lists."""
    out: dict[str, Plain] = {}
    for field in dataclasses.fields(stats):
        value = getattr(stats, field.name)
        out[field.name] = sorted(value) if isinstance(value, (set, frozenset)) else value
    return out


def stats_from_plain(plain: dict[str, Plain]) -> Stats:
    """The :class:`Stats` back from :func:`stats_to_plain`."""
    stats = Stats()
    for field in dataclasses.fields(stats):
        if field.name in plain:
            current, value = getattr(stats, field.name), plain[field.name]
            setattr(stats, field.name, set(value) if isinstance(current, set) else value)
    return stats


def forget_explorer() -> None:
    """Drop this process's kept explorer (a timing that must start cold calls it)."""
    _explorer.clear()


def _explorer_for(config: CampaignConfig) -> Explorer:
    kept = _explorer.get(config)
    if kept is None or kept[1][0] >= EXPLORER_SHARDS:
        _explorer.clear()
        kept = _explorer[config] = (config.explorer(), [0])
    kept[1][0] += 1
    return kept[0]


def run_crash_shard(config: CampaignConfig, shard: int, shards: int) -> dict[str, Plain]:
    """Explore the workloads of ``shard`` (of ``shards``): their stats and violations."""
    explorer = _explorer_for(config)
    explorer.stats = Stats(method=config.method)
    every = workloads(config.max_ops)
    violations: list[dict[str, Plain]] = []
    for index in shard_units(config.max_ops, shard, shards):
        for violation in explorer.explore(SETUP, every[index]):
            violations.append({"workload": index, "violation": violation.as_json(), "report": violation.render()})
        explorer.violations.clear()
    return {"stats": stats_to_plain(explorer.stats), "violations": violations}


def identity(config: CampaignConfig, **more: Plain) -> dict[str, Plain]:
    """What decides a crash campaign's results, as a plain dict (for the journal)."""
    out: dict[str, Plain] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        out[field.name] = value.value if isinstance(value, Enum) else list(value) if isinstance(value, tuple) else value
    return {**out, **more}


def _no_reproduce(shard: int, shards: int) -> str:
    return f"memoracle crash umfs --shard {shard}/{shards}"


def crash_campaign(
    config: CampaignConfig, reproduce: Callable[[int, int], str] = _no_reproduce, *, shards: int | None = None,
) -> Campaign:  # fmt: skip
    """The exhaustive crash campaign of ``config`` (:func:`default_shards` unless
    ``shards``); ``reproduce(shard, shards)`` is the command that reruns one shard."""
    return Campaign(
        name="crash umfs",
        config=config,
        identity=identity(config, search="exhaustive", alphabet=len(ALPHABET), contexts=len(CONTEXTS)),
        seed=config.seed,
        shards=shards if shards is not None else default_shards(config.max_ops),
        run_shard=run_crash_shard,
        violations=lambda result: len(result["violations"]),
        reproduce=reproduce,
    )


def merge_crash(results: Sequence[Plain]) -> tuple[Stats, list[dict[str, Plain]], list[str]]:
    """The shards' results as one: stats (counts added, digest sets united, ``seconds``
    added up over the shards), violations and their reports in workload order."""
    total = Stats()
    seconds = 0.0
    for result in results:
        stats = stats_from_plain(result["stats"])
        seconds += stats.seconds
        total.merge(stats)
    total.seconds = seconds
    found = sorted((v for r in results for v in r["violations"]), key=lambda v: int(v["workload"]))
    return total, [v["violation"] for v in found], [str(v["report"]) for v in found]


@dataclass(frozen=True)
class FuzzConfig:
    """A fuzzing campaign: ``examples`` Hypothesis workloads of up to ``crash.max_ops``
    operations, explored as ``crash`` says."""

    crash: CampaignConfig
    examples: int


def fuzz_shards(examples: int) -> int:
    """The fuzzing campaign's shard count: one per :data:`FUZZ_EXAMPLES_PER_SHARD` examples."""
    return shard_count(examples, FUZZ_EXAMPLES_PER_SHARD)


def fuzz_rng(seed: int, shard: int, shards: int) -> random.Random:
    """The random source Hypothesis draws from in ``shard`` of ``shards``."""
    return random.Random(f"crash-fuzz/{seed}/{shard}/{shards}")


def run_fuzz_shard(config: FuzzConfig, shard: int, shards: int) -> dict[str, Plain]:
    """Fuzz ``shard``'s share of the examples; its stats and its shrunk failing workload
    (or None) with the report."""
    crash = config.crash
    examples = len(strided(config.examples, shard, shards))
    stats, smallest, report = fuzz(
        crash, examples, max_ops=crash.max_ops, rng=fuzz_rng(crash.seed, shard, shards), explorer=_explorer_for(crash)
    )
    found = [list(op) for op in smallest] if smallest is not None else None
    return {"shard": shard, "stats": stats_to_plain(stats), "smallest": found, "report": report}


def fuzz_campaign(
    config: FuzzConfig, reproduce: Callable[[int, int], str] = _no_reproduce, *, shards: int | None = None,
) -> Campaign:  # fmt: skip
    """The fuzzing campaign of ``config`` (:func:`fuzz_shards` unless ``shards``); it
    stops at its first failing shard (see the module docstring)."""
    return Campaign(
        name="crash umfs fuzz",
        config=config,
        identity=identity(config.crash, search="fuzz", examples=config.examples, alphabet=len(ALPHABET)),
        seed=config.crash.seed,
        shards=shards if shards is not None else fuzz_shards(config.examples),
        run_shard=run_fuzz_shard,
        violations=lambda result: int(result["smallest"] is not None),
        reproduce=reproduce,
        first_violation=lambda result: int(result["shard"]) if result["smallest"] is not None else None,
        first_unit=lambda shard, count: shard,
    )


def merge_fuzz(results: Sequence[Plain]) -> tuple[Stats, tuple[Op, ...] | None, str]:
    """The shards' results (in shard order) up to the first that failed: stats merged,
    that shard's shrunk workload and report (None and "" if none failed)."""
    total = Stats()
    for result in results:
        stats = stats_from_plain(result["stats"])
        seconds = total.seconds + stats.seconds
        total.merge(stats)
        total.seconds = seconds
        if result["smallest"] is not None:
            return total, tuple(tuple(op) for op in result["smallest"]), str(result["report"])
    return total, None, ""


__all__ = [
    "EFFORT_FIELDS",
    "EXPLORER_SHARDS",
    "FUZZ_EXAMPLES_PER_SHARD",
    "FuzzConfig",
    "crash_campaign",
    "default_shards",
    "forget_explorer",
    "fuzz_campaign",
    "fuzz_rng",
    "fuzz_shards",
    "identity",
    "merge_crash",
    "merge_fuzz",
    "run_crash_shard",
    "run_fuzz_shard",
    "shard_units",
    "stats_from_plain",
    "stats_to_plain",
]
