"""Where shards run: in this process, on a local process pool, or on a Dask cluster.

One option picks the back-end (:func:`parse_where`): ``--jobs 1`` runs every shard in this
process, ``--jobs N`` on a pool of N local worker processes, ``--cluster tcp://HOST:8786``
on a running Dask scheduler's workers and ``--cluster local:N`` on a Dask
``LocalCluster`` of N worker processes started for the run (:mod:`memoracle.execution.dask`).

Every back-end takes the same list of shard indices and reports each one's envelope
(:func:`~memoracle.execution.campaign.run_task`) through ``on_done(index, envelope)`` as
it arrives, in whatever order; what they add to the envelope is only this:

- ``{"crashed": reason}``: the shard took down the worker process that ran it, again and
  again (more than :data:`ALLOWED_FAILURES` times when it ran alone; Dask's
  ``KilledWorker``). A shard whose worker died once among others is simply rerun.
- ``{"skipped": reason}``: ``needed(shard)`` turned false before the shard ran (a campaign
  that stops at its first violation no longer needs it).

A back-end raises :class:`ExecutionError` (exit 2, one line) when it cannot go on: the
scheduler is unreachable or lost, or a worker runs other code.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from memoracle.execution.campaign import Campaign, Plain, run_task

#: How many times a shard may take its worker down, running alone, before it is reported
#: as crashed (Dask's ``distributed.scheduler.allowed-failures`` default).
ALLOWED_FAILURES = 3
#: The most local worker processes (``--jobs`` and ``--cluster local:N``).
MAX_LOCAL_WORKERS = 256

OnDone = Callable[[int, dict[str, Plain]], None]
#: ``needed(shard)``: whether a shard not yet started must still run.
Needed = Callable[[int], bool]
#: The envelope of a shard that was not needed any more.
SKIPPED: dict[str, Plain] = {"skipped": "a violation before this shard's first unit is already known"}


class ExecutionError(Exception):
    """The run cannot go on (no verdict): a one-line reason for stderr, exit 2."""


class VersionMismatch(ExecutionError):
    """A worker runs other memoracle code than this process."""


class SchedulerLost(ExecutionError):
    """The Dask scheduler could not be reached, or went away during the run."""


@dataclass(frozen=True)
class Where:
    """A back-end: ``"process"`` (``--jobs 1``), ``"pool"`` (``--jobs N``), or ``"dask"``
    (``address`` of a scheduler, or ``local_workers`` for a LocalCluster)."""

    kind: str = "process"
    jobs: int = 1
    address: str | None = None
    local_workers: int | None = None

    def describe(self) -> str:
        """``--jobs 1``, ``--jobs 4``, ``--cluster local:2``, ``--cluster tcp://h:8786``."""
        if self.kind == "dask":
            return f"--cluster {self.address or f'local:{self.local_workers}'}"
        return f"--jobs {self.jobs}"


def parse_where(jobs: int | None, cluster: str | None) -> Where:
    """The back-end that ``--jobs`` / ``--cluster`` ask for; ValueError (a one-line reason)
    when they do not make sense."""
    if cluster is not None and jobs is not None:
        raise ValueError("--jobs and --cluster both say where shards run; give one")
    if cluster is None:
        jobs = 1 if jobs is None else jobs
        if not 1 <= jobs <= MAX_LOCAL_WORKERS:
            raise ValueError(f"--jobs must be from 1 to {MAX_LOCAL_WORKERS}, not {jobs}")
        return Where("process" if jobs == 1 else "pool", jobs)
    if cluster.startswith("local:"):
        count = cluster.removeprefix("local:")
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise ValueError(f"--cluster local:N wants N from 1 to {MAX_LOCAL_WORKERS}, not {cluster!r}")
        return Where("dask", local_workers=int(count))
    scheme, _, rest = cluster.partition("://")
    if scheme not in ("tcp", "tls") or not rest or ":" not in rest:
        raise ValueError(f"--cluster wants tcp://HOST:PORT (a Dask scheduler) or local:N, not {cluster!r}")
    return Where("dask", address=cluster)


class Backend(Protocol):
    """Runs shards of one campaign; see the module docstring."""

    def run(self, campaign: Campaign, shards: Sequence[int], on_done: OnDone, needed: Needed) -> None:
        """Run ``shards`` (those still ``needed``) and report each one's envelope through
        ``on_done``, every one of them exactly once."""


class InProcess:
    """``--jobs 1``: each shard in turn, in this process."""

    def run(self, campaign: Campaign, shards: Sequence[int], on_done: OnDone, needed: Needed) -> None:
        """Run ``shards`` one after the other."""
        for shard in shards:
            on_done(shard, run_task(campaign.task(shard)) if needed(shard) else SKIPPED)


class LocalPool:
    """``--jobs N``: a pool of N worker processes (started by a fork server, so they never
    inherit this process's threads), at most N shards in flight.

    When a worker dies, the pool breaks and every shard in flight is a suspect: the
    suspects rerun one at a time in a fresh pool, so the one that kills its worker is
    known; it is reported as crashed after :data:`ALLOWED_FAILURES` + 1 deaths alone.
    The others, and every shard after them, run as before."""

    def __init__(self, jobs: int, allowed_failures: int = ALLOWED_FAILURES) -> None:
        self.jobs = jobs
        self.allowed_failures = allowed_failures

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))

    def run(self, campaign: Campaign, shards: Sequence[int], on_done: OnDone, needed: Needed) -> None:
        """Run ``shards``, at most ``jobs`` at a time."""
        waiting = list(reversed(shards))  # popped from the end: shard order
        suspects: list[int] = []
        deaths: dict[int, int] = {}
        pool = self._pool(self.jobs)
        in_flight: dict[Future[dict[str, Plain]], int] = {}
        try:
            while waiting or suspects or in_flight:
                alone = bool(suspects)
                broken = False
                try:  # the pool may break at a submit too: a worker died since the last wait
                    if alone and not in_flight:
                        in_flight[pool.submit(run_task, campaign.task(suspects[0]))] = suspects[0]
                        suspects.pop(0)
                    while not alone and waiting and len(in_flight) < self.jobs:
                        if not needed(waiting[-1]):
                            on_done(waiting.pop(), SKIPPED)
                            continue
                        in_flight[pool.submit(run_task, campaign.task(waiting[-1]))] = waiting[-1]
                        waiting.pop()
                except BrokenProcessPool:
                    broken = True  # the shard not submitted stays where it was
                if not broken:
                    if not in_flight:
                        continue
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        try:
                            envelope = future.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        on_done(in_flight.pop(future), envelope)
                    if not broken:
                        continue
                for future in list(in_flight):  # finished before the pool broke: kept
                    if future.done() and not future.cancelled() and future.exception() is None:
                        on_done(in_flight.pop(future), future.result())
                lost = sorted(in_flight.values())
                in_flight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = self._pool(self.jobs)
                if alone and len(lost) == 1:
                    shard = lost[0]
                    deaths[shard] = deaths.get(shard, 0) + 1
                    if deaths[shard] > self.allowed_failures:
                        on_done(shard, {"crashed": f"its worker process died {deaths[shard]} times running it alone"})
                        continue
                suspects = sorted(set(suspects) | set(lost))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


__all__ = [
    "ALLOWED_FAILURES",
    "Backend",
    "ExecutionError",
    "InProcess",
    "LocalPool",
    "MAX_LOCAL_WORKERS",
    "Needed",
    "SKIPPED",
    "SchedulerLost",
    "VersionMismatch",
    "Where",
    "parse_where",
]
