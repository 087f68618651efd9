"""The Dask back-end: shards as named tasks on a ``dask.distributed`` cluster.

``--cluster tcp://HOST:8786`` connects to a running scheduler (``dask scheduler`` on one
machine, ``dask worker tcp://HOST:8786 --nworkers N --nthreads 1`` on others, or a
``dask-jobqueue`` cluster); ``--cluster local:N`` starts a ``LocalCluster`` of N worker
processes (one thread each) for the run and stops it afterwards.

What this back-end guarantees:

- **Same code**: at connect, every worker's :func:`~memoracle.execution.version.code_version`
  must equal this process's, else :class:`VersionMismatch` (exit 2) before any shard runs;
  a worker that joins later is caught by the same check inside the shard.
- **Named, idempotent tasks**: each shard is submitted under its
  :meth:`~memoracle.execution.campaign.Campaign.key`.
- **A dying worker**: Dask reruns its shards on another worker; the result is the same
  (shards are deterministic). A shard that took down more than
  ``distributed.scheduler.allowed-failures`` workers (3 by default) comes back as
  ``KilledWorker`` and is reported as crashed, with the command that reproduces it.
- **A lost scheduler**: :class:`SchedulerLost` with the reason (exit 2); the shards done
  so far are in the journal, if one was kept, for ``--resume``.

Dask's own log lines are silenced (only errors that end the run are reported, as one
line each).
"""

from __future__ import annotations

import logging
import socket
import sys
import warnings
from contextlib import ExitStack
from types import TracebackType
from typing import Any, Sequence

from memoracle.execution.backends import SKIPPED, Needed, OnDone, SchedulerLost, VersionMismatch, Where
from memoracle.execution.campaign import Campaign, Plain, run_task
from memoracle.execution import version
from memoracle.execution.version import code_version

#: How to start workers for memoracle: one thread each (shards are pure Python and hold the
#: GIL), Dask's statistical profiler off (it samples the running shard's stack every
#: 10 ms, which costs deep pure-Python stacks dearly) and glibc's malloc left to adapt:
#: Dask's nannies set ``MALLOC_TRIM_THRESHOLD_`` in their workers, and setting any malloc
#: tunable turns off glibc's dynamic mmap threshold, so every emulated memory a shard
#: allocates (hundreds of KiB, thousands of times) became an mmap, zero-filled page faults
#: and a munmap — the crash campaign spent half its worker CPU in the kernel, slower on two
#: workers than in one process. ``--cluster local:N`` starts its workers so; in workers
#: started otherwise, each shard restores the thresholds itself
#: (:func:`~memoracle.execution.campaign.restore_malloc_thresholds`).
WORKER_CONFIG: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}
WORKER_ADVICE = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False dask worker tcp://HOST:8786 --nworkers N --nthreads 1"
#: Seconds to wait for a scheduler to answer at connect.
CONNECT_TIMEOUT_SECONDS = 20.0
#: Loggers that would otherwise print Dask's reconnect attempts and tracebacks.
_DASK_LOGGERS = ("distributed", "distributed.client", "distributed.scheduler", "distributed.worker",
                 "distributed.nanny", "distributed.core", "distributed.comm", "tornado", "asyncio")  # fmt: skip


def as_completed(futures: Any, **options: Any) -> Any:
    """``distributed.as_completed`` (typed for mypy)."""
    from distributed import as_completed as completed

    return completed(futures, **options)  # type: ignore[no-untyped-call]


from distributed import KilledWorker  # noqa: E402 - this module is imported only when a cluster is used


def quiet_dask_logs() -> None:
    """Let only critical Dask log records through (the CLI reports what matters itself)."""
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


class DaskCluster:
    """A connected Dask client (and the LocalCluster it started, for ``local:N``).

    Use as a context manager: entering connects (or starts the cluster) and checks the
    workers' code; leaving closes the client and stops a cluster it started."""

    def __init__(self, where: Where, *, stream: Any = None) -> None:
        if where.kind != "dask":
            raise ValueError(f"not a Dask back-end: {where.describe()}")
        self.where = where
        self.stream = stream if stream is not None else sys.stderr
        self._stack = ExitStack()
        self.client: Any = None

    @property
    def address(self) -> str:
        """The scheduler's address (of the LocalCluster once started)."""
        return str(self.client.scheduler.address) if self.client is not None else str(self.where.address)

    def __enter__(self) -> DaskCluster:
        quiet_dask_logs()
        from distributed import Client, LocalCluster

        try:
            if self.where.local_workers is not None:
                import dask

                with dask.config.set(WORKER_CONFIG):  # see WORKER_ADVICE
                    cluster = LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=self.where.local_workers, threads_per_worker=1, processes=True,
                        dashboard_address=":0", silence_logs=logging.CRITICAL,
                    )  # fmt: skip
                self._stack.enter_context(cluster)
                self.client = self._stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
            else:
                _probe(str(self.where.address))
                client = Client(self.where.address, timeout=CONNECT_TIMEOUT_SECONDS)  # type: ignore[no-untyped-call]
                self.client = self._stack.enter_context(client)
        except (OSError, TimeoutError) as error:
            self._stack.close()
            raise SchedulerLost(
                f"cannot reach the Dask scheduler at {self.where.address}: {_reason(error)}"
            ) from None
        try:
            self.check_workers()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self._stack.close()
            except Exception:  # noqa: BLE001 - closing a client whose scheduler is gone
                pass

    def check_workers(self) -> None:
        """Refuse workers that run other memoracle code (:class:`VersionMismatch`); warn
        (one line) when Dask reports other package versions on them."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.client.get_versions(check=True)
        for warning in caught:
            first = str(warning.message).strip().splitlines()[0]
            self.stream.write(f"memoracle: warning: Dask workers differ from this process: {first} (see dask's versions)\n")
        mine = code_version()
        theirs: dict[str, str] = self.client.run(version.code_version)
        other = {worker: code for worker, code in theirs.items() if code != mine}
        if other:
            worker, code = sorted(other.items())[0]
            raise VersionMismatch(
                f"worker {worker} runs memoracle {code}, this process {mine}: install the same "
                f"memoracle on every worker ({len(other)} of {len(theirs)} differ)"
            )

    def workers(self) -> int:
        """How many workers the scheduler has now."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def run(self, campaign: Campaign, shards: Sequence[int], on_done: OnDone, needed: Needed) -> None:
        """Submit every shard under its key; report envelopes as they complete (results
        are fetched in the background as tasks finish); cancel the shards no longer
        ``needed``. A shard that came back ``KilledWorker`` may only have shared a worker
        with the one that kills it (Dask blames every task a dying worker held), so it is
        run once more alone, at the end, under ``KEY-alone``: only a shard that kills its
        workers alone too is crashed."""
        if shards and self.workers() == 0:
            self.stream.write(f"memoracle: waiting for workers to join {self.address}\n")
        futures = {
            self.client.submit(run_task, campaign.task(shard), key=campaign.key(shard), pure=False): shard
            for shard in shards
        }
        reported: set[int] = set()
        suspects: list[int] = []
        try:
            for future, outcome in as_completed(futures, with_results=True, raise_errors=False):
                shard = futures[future]
                if shard in reported:
                    continue
                reported.add(shard)
                envelope = self._envelope(future, outcome)
                if envelope is None:
                    suspects.append(shard)
                    continue
                on_done(shard, envelope)
                if campaign.first_unit is not None:  # a campaign that may skip shards
                    for other, index in futures.items():
                        if index not in reported and not other.done() and not needed(index):
                            other.cancel()
                            reported.add(index)
                            on_done(index, SKIPPED)
            for shard in sorted(suspects):
                if not needed(shard):
                    on_done(shard, SKIPPED)
                    continue
                alone = self.client.submit(run_task, campaign.task(shard), key=f"{campaign.key(shard)}-alone", pure=False)
                ((_, outcome),) = as_completed([alone], with_results=True, raise_errors=False)
                envelope = self._envelope(alone, outcome)
                crashed = {"crashed": "it took down the Dask workers that ran it, among others and alone (KilledWorker)"}
                on_done(shard, crashed if envelope is None else envelope)
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    def _envelope(self, future: Any, outcome: Any) -> dict[str, Plain] | None:
        """A finished future's envelope, or None for ``KilledWorker``; SchedulerLost when
        the scheduler went away (its futures come back cancelled)."""
        if isinstance(outcome, dict):  # a result (the future may already be recomputing: a worker
            future.release()          # that held it died after it was fetched)
            envelope: dict[str, Plain] = outcome
            return envelope
        error = outcome[1] if isinstance(outcome, tuple) and len(outcome) == 3 else outcome
        if isinstance(error, KilledWorker):
            return None
        if future.status == "cancelled" or self.client.status != "running" or isinstance(error, (OSError, TimeoutError)):
            raise SchedulerLost(f"lost the Dask scheduler at {self.address}: {_reason(error)}")
        raise error if isinstance(error, BaseException) else RuntimeError(f"task {future.key} failed: {error!r}")


def _probe(address: str) -> None:
    """Open and close a TCP connection to the scheduler, so that a refused or unknown
    address fails at once (Dask's own connect retries until its timeout)."""
    host, _, port = address.partition("://")[2].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except ValueError:
        raise OSError(f"bad port in {address}") from None


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["CONNECT_TIMEOUT_SECONDS", "WORKER_ADVICE", "DaskCluster", "quiet_dask_logs"]
