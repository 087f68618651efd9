"""Figures of the execution layer (``memoracle/execution``): what a Dask cluster costs and buys.

- ``scale.load_average``: the machine's 1-minute load average when these figures were
  measured (the machine is shared: every time below is measured with that load on it).
- ``scale.local2_startup_seconds``: starting a ``--cluster local:2`` (two worker
  processes) and checking their code.
- ``scale.dask_overhead_per_shard_ms``: what a shard costs on that cluster beyond its own
  work: 400 shards that do nothing, timed on the cluster, less the same in this process,
  per shard.

The crash-campaign figures (``scale.local2_speedup``, ``scale.ops4_projection_*``) come
with the crash campaign on the execution layer.
"""

from __future__ import annotations

import heapq
import os
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


def scale_figures(quick: bool) -> list[Figure]:
    """Every scale figure."""
    return overhead_figures(quick)
