"""Campaigns of independent seeded runs, and the ``memoracle SYSTEM campaign`` command.

The KSM lockstep campaign, the Sphinx conformance campaign and the UMFS model-against-UMFS
campaign have one shape: run ``k`` of a campaign with seed ``S`` is one seeded sequence of
``--steps`` operations with seed ``S + k``, checked step by step; a run either holds or
gives a report. A system supplies only ``run_one(seed, steps, mutant) -> report | None``
(a module-level function); this module makes the campaign (:func:`seeded_campaign`: run
``k`` belongs to shard ``k mod N``), merges it (:func:`merge_runs`: failures in run
order, whatever the shard count) and registers the command
(:func:`add_campaign_command`)::

    memoracle ksm campaign --seed 0 --runs 400 --steps 80 --cluster local:2

Every failure names the one-run command that reproduces it
(``memoracle ksm campaign --seed 57 --runs 1 --steps 80``). Exit 0 when every run held,
1 when one did not (or a shard crashed), 2 for bad usage or a run that could not go on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from memoracle.arguments import int_in, seed, usage_error
from memoracle.execution.campaign import Campaign, Plain, shard_count, strided
from memoracle.exitcodes import EXIT_OK, EXIT_VIOLATION
from memoracle.progress import verdict_line

#: One seeded run: ``run_one(seed, steps, mutant)`` is ``None`` when everything held, else
#: a report. It must be a module-level function (workers import it).
RunOne = Callable[[int, int, "str | None"], "str | None"]

#: The most runs one campaign command accepts.
MAX_RUNS = 100_000_000


@dataclass(frozen=True)
class SeededRuns:
    """A campaign of ``runs`` runs of ``steps`` steps, run ``k`` seeded ``seed + k``."""

    system: str
    run_one: RunOne
    seed: int
    runs: int
    steps: int
    mutant: str | None = None

    def reproduce(self, run_seed: int, runs: int = 1, shard: tuple[int, int] | None = None) -> str:
        """The command that reruns ``runs`` runs from ``run_seed`` (one shard of them)."""
        text = f"memoracle {self.system} campaign --seed {run_seed} --runs {runs} --steps {self.steps}"
        if self.mutant is not None:
            text += f" --mutant {self.mutant}"
        if shard is not None:
            text += f" --shard {shard[0]}/{shard[1]}"
        return text


def run_seeded_shard(config: SeededRuns, shard: int, shards: int) -> dict[str, Plain]:
    """The runs of ``shard``: how many ran, and a report for each that failed. An
    ``AssertionError`` (an invariant inside the system) is that run's failure."""
    failures: list[dict[str, Plain]] = []
    units = strided(config.runs, shard, shards)
    for run in units:
        run_seed = config.seed + run
        try:
            report = config.run_one(run_seed, config.steps, config.mutant)
        except AssertionError as error:
            report = f"invariant violated: {error}"
        if report is not None:
            reproduce = config.reproduce(run_seed)
            failures.append({"run": run, "seed": run_seed, "report": f"{report}\nreproduce: {reproduce}",
                             "reproduce": reproduce})  # fmt: skip
    return {"runs": len(units), "failures": failures}


def _violations(result: Plain) -> int:
    return len(result["failures"])


def seeded_campaign(config: SeededRuns, *, shards: int | None = None) -> Campaign:
    """``config`` as a campaign: one run per shard, at most
    :data:`~memoracle.execution.campaign.MAX_SHARDS` shards (``shards`` overrides)."""
    identity: dict[str, Plain] = {
        "system": config.system, "run_one": f"{config.run_one.__module__}.{config.run_one.__qualname__}",
        "seed": config.seed, "runs": config.runs, "steps": config.steps, "mutant": config.mutant,
    }  # fmt: skip
    return Campaign(
        name=f"{config.system} campaign",
        config=config,
        identity=identity,
        seed=config.seed,
        shards=shards if shards is not None else shard_count(config.runs),
        run_shard=run_seeded_shard,
        violations=_violations,
        reproduce=lambda shard, count: config.reproduce(config.seed, config.runs, (shard, count)),
    )


def merge_runs(results: Sequence[Plain]) -> dict[str, Plain]:
    """The shards' results as one: runs counted, failures in run order."""
    failures = sorted((f for r in results for f in r["failures"]), key=lambda f: int(f["run"]))
    return {"runs": sum(int(r["runs"]) for r in results), "failures": failures}


def add_campaign_command(
    commands: Any, system: str, run_one: RunOne, *, steps: int, mutants: Sequence[str], what: str,
) -> None:  # fmt: skip
    """Register ``campaign`` on ``commands`` (the system's sub-command group)."""
    from memoracle.execution.options import add_execution_options, shard_spec

    command = commands.add_parser("campaign", help=f"a seeded campaign: {what}, on any back-end")
    command.add_argument("--seed", type=seed, default=0, help="run k is seeded SEED + k")
    command.add_argument("--runs", type=int_in(1, MAX_RUNS), default=100, help="seeded runs")
    command.add_argument("--steps", type=int_in(1, 1_000_000), default=steps, help="operations per run")
    command.add_argument("--mutant", choices=sorted(mutants), help="check a deliberately broken system instead")
    command.add_argument("--shard", type=shard_spec, metavar="i/N", help="run only shard i of N, in this process")
    add_execution_options(command)
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(func=lambda args: cmd_campaign(args, system, run_one))


def cmd_campaign(args: argparse.Namespace, system: str, run_one: RunOne) -> int:
    """Run the campaign the options describe; print failures and the verdict line."""
    from memoracle.execution.options import print_failures, run_campaign

    prog = f"memoracle {system} campaign"
    config = SeededRuns(system, run_one, args.seed, args.runs, args.steps, args.mutant)
    selected: list[int] | None = None
    campaign = seeded_campaign(config)
    if args.shard is not None:
        if args.jobs is not None or args.cluster is not None:
            return usage_error(prog, "--shard runs one shard in this process; --jobs and --cluster do not apply")
        campaign = seeded_campaign(config, shards=args.shard[1])
        selected = [args.shard[0]]
    started = time.perf_counter()
    execution = run_campaign(campaign, args, prog, label=prog, shards=selected)
    if isinstance(execution, int):
        return execution
    merged = merge_runs(execution.results())
    failed_shards = execution.failures()
    seconds = time.perf_counter() - started
    failures: list[dict[str, Plain]] = merged["failures"]
    line = verdict_line(len(failures) + len(failed_shards), [(merged["runs"], "run")], seconds)
    if args.json:
        print(json.dumps({"campaign": system, "seed": config.seed, "runs": merged["runs"], "steps": config.steps,
                          "mutant": config.mutant, "back_end": execution.where.describe(), "failures": failures,
                          "failed_shards": [f.as_json() for f in failed_shards]}, indent=2))  # fmt: skip
    else:
        for failure in failures[:5]:
            print(f"run {failure['run']} (seed {failure['seed']}): {failure['report']}\n")
        if len(failures) > 5:
            print(f"... and {len(failures) - 5} more failing runs (use --json for all)")
        print_failures(execution)
    print(line, file=sys.stderr if args.json else sys.stdout)
    return EXIT_VIOLATION if failures or failed_shards else EXIT_OK


__all__ = [
    "MAX_RUNS",
    "RunOne",
    "SeededRuns",
    "add_campaign_command",
    "cmd_campaign",
    "merge_runs",
    "run_seeded_shard",
    "seeded_campaign",
]
