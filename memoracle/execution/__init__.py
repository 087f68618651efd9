"""One execution layer for every campaign: in this process, on a local pool, or on Dask.

Campaigns (the crash campaign, the KSM lockstep campaign, the Sphinx conformance
campaign, the UMFS model-against-UMFS campaign, PCT interleaving runs) are cut into
deterministic shards whose results are plain values; this package runs them and hands the
results back in shard order, so that the verdict never depends on where they ran.

- :mod:`~memoracle.execution.campaign`: what a campaign is (:class:`Campaign`), task
  names, and what a worker runs (:func:`run_task`);
- :mod:`~memoracle.execution.backends`: ``--jobs 1`` (in this process), ``--jobs N`` (a
  local process pool), and the choice between them and Dask (:func:`parse_where`);
- :mod:`~memoracle.execution.cluster`: the Dask back-end (``--cluster tcp://HOST:8786``
  or ``--cluster local:N``): version check at connect, named tasks, dying workers, a lost
  scheduler;
- :mod:`~memoracle.execution.journal`: results journalled as they arrive, ``--resume``;
- :mod:`~memoracle.execution.run`: :func:`execute`, which ties them together;
- :mod:`~memoracle.execution.options`: the command-line options and one progress bar;
- :mod:`~memoracle.execution.version`: which code a process runs.

Dask is imported only when a ``--cluster`` is asked for.
"""

from __future__ import annotations

from memoracle.execution.backends import ExecutionError, SchedulerLost, VersionMismatch, Where, parse_where
from memoracle.execution.campaign import Campaign, Plain, run_task, shard_count, strided
from memoracle.execution.run import Execution, ShardFailure, ShardOutcome, execute

__all__ = [
    "Campaign",
    "Execution",
    "ExecutionError",
    "Plain",
    "SchedulerLost",
    "ShardFailure",
    "ShardOutcome",
    "VersionMismatch",
    "Where",
    "execute",
    "parse_where",
    "run_task",
    "shard_count",
    "strided",
]
