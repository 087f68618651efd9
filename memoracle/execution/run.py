"""Run a campaign's shards on a back-end, journal them, and hand back results in shard order.

:func:`execute` is the one entry point every campaign uses::

    execution = execute(campaign, parse_where(jobs=None, cluster="local:2"))
    merged = merge(execution.results())          # the campaign's own merge, in shard order
    for failure in execution.failures():         # shards that raised or crashed workers
        print(failure.render())

Guarantees:

- ``execution.outcomes`` has one entry per shard asked for, **in shard order**, whatever
  the back-end and whatever order results arrived in; results are plain values
  (:func:`~memoracle.execution.campaign.canonical`), equal to what a journal gives back.
- A shard that raised, or that took down its worker again and again, is a
  :class:`ShardFailure` with the command that reruns it in one process — a failure of
  the run (exit 1), not a pass and not a traceback. The other shards still run.
- ``on_shard(outcome)`` is called in this process as each shard finishes (also for shards
  taken from a resumed journal, first), for a progress bar.
- With ``journal`` every finished shard is appended to that file as it arrives; with
  ``resume`` the shards already in that file are not run again
  (:mod:`memoracle.execution.journal`).
- :class:`~memoracle.execution.backends.ExecutionError` (a lost scheduler, a worker with
  other code, a journal of another campaign) ends the run: no verdict, exit 2.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from memoracle.execution.backends import Backend, InProcess, LocalPool, VersionMismatch, Where
from memoracle.execution.campaign import Campaign, Plain
from memoracle.execution.journal import Journal


@dataclass(frozen=True)
class ShardOutcome:
    """What one shard came to: its ``result``, or an ``error`` (it raised), or ``crashed``
    (it took down its workers), or ``skipped`` (a campaign that stops at its first
    violation did not need it); ``seconds`` and ``cpu_seconds`` as measured where it ran
    (None if it never finished), ``where`` (host and pid); ``resumed`` if it was read
    from a journal. Timings are reported, never part of a result."""

    shard: int
    key: str
    result: Plain = None
    error: str | None = None
    traceback: str | None = None
    crashed: str | None = None
    seconds: float | None = None
    resumed: bool = False
    skipped: bool = False
    cpu_seconds: float | None = None
    where: str | None = None

    @property
    def ok(self) -> bool:
        """The shard produced a result."""
        return self.error is None and self.crashed is None and not self.skipped

    @property
    def failed(self) -> bool:
        """The shard raised or crashed its workers."""
        return self.error is not None or self.crashed is not None


@dataclass(frozen=True)
class ShardFailure:
    """A shard that produced no result: which, with which seed, why, how to reproduce."""

    campaign: str
    shard: int
    shards: int
    seed: int
    reason: str
    reproduce: str
    traceback: str | None = None

    def render(self) -> str:
        """``ksm campaign shard 3/40 (seed 0) crashed: ...`` and the reproduce line."""
        text = f"{self.campaign} shard {self.shard}/{self.shards} (seed {self.seed}) {self.reason}"
        if self.traceback:
            text += "\n" + self.traceback.rstrip()
        return text + f"\nreproduce: {self.reproduce}"

    def as_json(self) -> dict[str, Plain]:
        """The fields a ``--json`` report lists."""
        return {"shard": self.shard, "shards": self.shards, "seed": self.seed, "reason": self.reason,
                "reproduce": self.reproduce}  # fmt: skip


@dataclass
class Execution:
    """A campaign's run: one :class:`ShardOutcome` per shard, in shard order."""

    campaign: Campaign
    where: Where
    outcomes: list[ShardOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def results(self) -> list[Plain]:
        """The results of the shards that produced one, in shard order."""
        return [outcome.result for outcome in self.outcomes if outcome.ok]

    def failures(self) -> list[ShardFailure]:
        """The shards that raised or crashed their workers, in shard order."""
        campaign = self.campaign
        return [
            ShardFailure(
                campaign.name, o.shard, campaign.shards, campaign.seed,
                f"raised {o.error}" if o.error is not None else f"crashed: {o.crashed}",
                campaign.reproduce(o.shard, campaign.shards), o.traceback,
            )  # fmt: skip
            for o in self.outcomes
            if o.failed
        ]

    def violations(self) -> int:
        """Violations in the shards' results (failures not counted)."""
        return sum(self.campaign.violations(result) for result in self.results())

    def shard_seconds(self) -> list[float]:
        """The measured time of each shard run in this execution (resumed ones left out)."""
        return [o.seconds for o in self.outcomes if o.seconds is not None and not o.resumed]


def _outcome(campaign: Campaign, shard: int, envelope: dict[str, Plain], resumed: bool = False) -> ShardOutcome:
    seconds = envelope.get("seconds")
    return ShardOutcome(
        shard, campaign.key(shard), envelope.get("result"), envelope.get("error"), envelope.get("traceback"),
        envelope.get("crashed"), float(seconds) if isinstance(seconds, (int, float)) else None, resumed,
        "skipped" in envelope, envelope.get("cpu_seconds"), envelope.get("where"),
    )  # fmt: skip


def backend_for(where: Where, stack: ExitStack) -> Backend:
    """The back-end ``where`` names, opened in ``stack`` (a Dask cluster is closed with it)."""
    if where.kind == "process":
        return InProcess()
    if where.kind == "pool":
        return LocalPool(where.jobs)
    from memoracle.execution.cluster import DaskCluster

    return stack.enter_context(DaskCluster(where))


def execute(
    campaign: Campaign,
    where: Where,
    *,
    shards: Sequence[int] | None = None,
    journal: Path | None = None,
    resume: Path | None = None,
    on_shard: Callable[[ShardOutcome], None] | None = None,
    backend: Backend | None = None,
) -> Execution:
    """Run ``shards`` of ``campaign`` (default: all) where ``where`` says; see the module
    docstring. ``backend`` overrides ``where`` (an already open cluster, for tests)."""
    if journal is not None and resume is not None:
        raise ValueError("journal and resume name the same file; give one")
    wanted = list(range(campaign.shards)) if shards is None else sorted(set(shards))
    started = time.perf_counter()
    outcomes: dict[int, ShardOutcome] = {}
    book: Journal | None = None
    cut: list[int] = []  # the first violation's unit, once one is known

    def needed(shard: int) -> bool:
        if not cut or campaign.first_unit is None:
            return True
        return campaign.first_unit(shard, campaign.shards) < cut[0]

    def done(shard: int, envelope: dict[str, Plain], resumed: bool = False) -> None:
        if "mismatch" in envelope:
            raise VersionMismatch(
                f"a worker ({envelope.get('where')}) runs memoracle {envelope['mismatch']}, this process "
                f"{campaign.task(shard).code}: install the same memoracle on every worker"
            )
        outcome = _outcome(campaign, shard, envelope, resumed)
        outcomes[shard] = outcome
        if outcome.ok and campaign.first_violation is not None:
            unit = campaign.first_violation(outcome.result)
            if unit is not None and (not cut or unit < cut[0]):
                cut[:] = [unit]
        if book is not None and not resumed and not outcome.skipped:
            book.record(shard, outcome.key, envelope)
        if on_shard is not None:
            on_shard(outcome)

    with ExitStack() as stack:
        if resume is not None:
            book, previous = Journal.resume(resume, campaign)
            stack.callback(book.close)
            for shard in wanted:
                if shard in previous:
                    done(shard, previous[shard], resumed=True)
        elif journal is not None:
            book = Journal.create(journal, campaign)
            stack.callback(book.close)
        runner = backend if backend is not None else backend_for(where, stack)
        runner.run(campaign, [s for s in wanted if s not in outcomes], done, needed)
    missing = [s for s in wanted if s not in outcomes]
    if missing:  # a back-end that returned without reporting every shard is a bug here
        raise RuntimeError(f"shards {missing[:5]} were never reported")
    return Execution(campaign, where, [outcomes[s] for s in wanted], time.perf_counter() - started)


__all__ = ["Execution", "ShardFailure", "ShardOutcome", "backend_for", "execute"]
