"""Figures of the execution layer (``memoracle/execution``): what a Dask cluster costs and buys.

- ``scale.load_average``: the machine's 1-minute load average when these figures were
  measured (the machine is shared: every time below is measured with that load on it).
- ``scale.local2_startup_seconds``: starting a ``--cluster local:2`` (two worker
  processes) and checking their code.
- ``scale.dask_overhead_per_shard_ms``: what a shard costs on that cluster beyond its own
  work: 400 shards that do nothing, timed on the cluster, less the same in this process,
  per shard.
- ``scale.local2_speedup``: the bounded-exhaustive crash campaign (``--ops 2``: 272
  workloads in 16 shards grouped by first operation; ``--quick``: ``--ops 1``) in one
  process against the same on ``--cluster local:2`` (cluster start-up included), wall
  time, in the same run, both starting with no explorer cache, with the same result
  checked (violations and every figure but those of effort). On a shared machine the
  kernel gives one session's processes one share of the CPU (autogroup scheduling), so
  while others are busy two workers cannot get more CPU than one, whatever the layer
  does; hence also:
- ``scale.local2_cpu_ratio``: CPU seconds of all shards on the cluster ÷ in one process
  (the work the cluster adds), and ``scale.local2_idle_speedup_estimate``: in-process CPU
  seconds ÷ the busiest worker's CPU seconds — what the measured schedule would give with
  a core per worker (an estimate from measured CPU times, not a wall-clock measurement).
- ``scale.ops4_shard_cpu_seconds_mean``: the CPU time of a seeded sample of the ``--ops 4``
  campaign's own shards (8 of its 1,024, ~68 workloads each; ``--quick``: 2), each run
  whole in this process with a cold explorer (a worker that keeps its explorer across
  shards may be faster: an upper bound per shard).
- ``scale.ops4_projection_<W>_workers_hours``: a **simulation**, not a run: ``--ops 4``
  (69,904 workloads in 1,024 shards) on W = 1, 8 and 64 workers with a core each, each
  shard's time drawn (seeded) from the measured shard times above plus the measured
  per-shard overhead, shards scheduled in order on the first free worker.
"""

from __future__ import annotations

import heapq
import os
import random
import time
from typing import Any, Sequence

from benchmarks.common import Figure
from memoracle.execution import Campaign, execute, parse_where
from memoracle.execution.campaign import Plain

#: No-op shards timed for the overhead figure.
OVERHEAD_SHARDS = 400


def noop_shard(config: Any, shard: int, shards: int) -> Plain:
    """A shard that does nothing (what is left is the layer's own cost)."""
    return {"shard": shard}


def noop_campaign(shards: int) -> Campaign:
    """``shards`` shards that do nothing."""
    return Campaign(
        name="noop", config=None, identity={"noop": True}, seed=0, shards=shards, run_shard=noop_shard,
        violations=lambda result: 0, reproduce=lambda shard, count: "",
    )  # fmt: skip


def simulate_schedule(shard_seconds: Sequence[float], workers: int, overhead: float = 0.0) -> float:
    """The wall time of running shards of these durations on ``workers`` workers, each
    shard (plus ``overhead``) going in order to the first worker that is free — the
    schedule Dask follows for independent tasks of equal priority. A simulation, not a
    measurement."""
    free = [0.0] * workers
    for seconds in shard_seconds:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds + overhead)
    return max(free)


def overhead_figures(quick: bool) -> list[Figure]:
    """Start-up of a 2-worker LocalCluster and the per-shard overhead on it."""
    from memoracle.execution.cluster import DaskCluster

    shards = OVERHEAD_SHARDS // (4 if quick else 1)
    started = time.perf_counter()
    in_process = execute(noop_campaign(shards), parse_where(None, None))
    local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with DaskCluster(parse_where(None, "local:2")) as cluster:
        startup = time.perf_counter() - started
        started = time.perf_counter()
        on_dask = execute(noop_campaign(shards), cluster.where, backend=cluster)
        dask_seconds = time.perf_counter() - started
    if len(on_dask.results()) != len(in_process.results()) != shards:
        raise RuntimeError("the no-op campaign lost shards")
    return [
        {"name": "scale.load_average", "value": os.getloadavg()[0], "unit": "runnable tasks (1 min)"},
        {"name": "scale.local2_startup_seconds", "value": startup, "unit": "s"},
        {"name": "scale.dask_overhead_per_shard_ms", "value": (dask_seconds - local_seconds) / shards * 1000,
         "unit": "ms/shard", "baseline": local_seconds / shards * 1000,
         "ratio": dask_seconds / local_seconds if local_seconds else 0.0},  # fmt: skip
    ]


#: Shards of ``--ops 4`` timed for the projection (``--quick``: a quarter).
PROJECTION_SAMPLE = 8
#: Workers the projection simulates.
PROJECTION_WORKERS = (1, 8, 64)


def speedup_figures(quick: bool) -> list[Figure]:
    """The crash campaign in one process and on ``--cluster local:2``."""
    from memoracle.umfs.crash_campaign import CampaignConfig
    from memoracle.umfs.crash_shards import EFFORT_FIELDS, crash_campaign, forget_explorer, merge_crash

    ops = 1 if quick else 2
    campaign = crash_campaign(CampaignConfig(max_ops=ops))
    forget_explorer()  # a cold start, as the workers have
    started = time.perf_counter()
    alone = execute(campaign, parse_where(None, None))
    one = time.perf_counter() - started
    forget_explorer()
    started = time.perf_counter()
    spread = execute(campaign, parse_where(None, "local:2"))
    two = time.perf_counter() - started
    verdicts = []
    for execution in (alone, spread):
        stats, violations, _ = merge_crash(execution.results())
        figures = {name: value for name, value in stats.as_json().items() if name not in EFFORT_FIELDS}
        verdicts.append((figures, violations, len(execution.failures())))
    if verdicts[0] != verdicts[1]:
        raise RuntimeError(f"--cluster local:2 gave another result than one process: {verdicts}")
    alone_cpu = sum(o.cpu_seconds or 0.0 for o in alone.outcomes)
    per_worker: dict[str, float] = {}
    for outcome in spread.outcomes:
        per_worker[str(outcome.where)] = per_worker.get(str(outcome.where), 0.0) + (outcome.cpu_seconds or 0.0)
    spread_cpu = sum(per_worker.values())
    return [
        {"name": "scale.local2_speedup", "value": one / two, "unit": "x", "baseline": one, "ratio": one / two},
        {"name": f"scale.ops{ops}_seconds_local2", "value": two, "unit": "s", "baseline": one, "ratio": two / one},
        {"name": f"scale.ops{ops}_shards", "value": campaign.shards, "unit": "shards"},
        {"name": "scale.local2_cpu_ratio", "value": spread_cpu / alone_cpu if alone_cpu else 0.0, "unit": "x",
         "baseline": alone_cpu},  # fmt: skip
        {"name": "scale.local2_idle_speedup_estimate", "value": alone_cpu / max(per_worker.values()), "unit": "x"},
    ]


def projection_figures(quick: bool, overhead_seconds: float) -> list[Figure]:
    """``--ops 4`` on 1, 8 and 64 workers, simulated from a timed sample of its shards."""
    from memoracle.umfs.crash_campaign import CampaignConfig
    from memoracle.umfs.crash_shards import crash_campaign, forget_explorer, run_crash_shard

    config = CampaignConfig(max_ops=4)
    campaign = crash_campaign(config)
    rng = random.Random(4)
    sample = rng.sample(range(campaign.shards), PROJECTION_SAMPLE // (4 if quick else 1))
    seconds = []
    for shard in sample:
        forget_explorer()
        started = time.process_time()
        run_crash_shard(config, shard, campaign.shards)
        seconds.append(time.process_time() - started)
    forget_explorer()
    shard_seconds = [rng.choice(seconds) for _ in range(campaign.shards)]
    figures: list[Figure] = [
        {"name": "scale.ops4_shard_cpu_seconds_mean", "value": sum(seconds) / len(seconds), "unit": "s (CPU)"},
        {"name": "scale.ops4_shards", "value": campaign.shards, "unit": "shards"},
    ]
    for workers in PROJECTION_WORKERS:
        hours = simulate_schedule(shard_seconds, workers, overhead_seconds) / 3600
        figures.append({"name": f"scale.ops4_projection_{workers}_workers_hours", "value": hours, "unit": "h (simulated)"})
    return figures


def scale_figures(quick: bool) -> list[Figure]:
    """Every scale figure."""
    figures = overhead_figures(quick)
    overhead = next(f["value"] for f in figures if f["name"] == "scale.dask_overhead_per_shard_ms") / 1000
    return figures + speedup_figures(quick) + projection_figures(quick, max(overhead, 0.0))
