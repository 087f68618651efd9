"""``memoracle ksm live``: the running kernel's KSM against the implementation and the model.

``memoracle ksm live [--scenarios selftests|campaign|all] [--seed N] [--steps N]
[--sequences N] [--json]`` runs the kernel selftests' scenarios
(:data:`memoracle.ksm.live_scenarios.SELFTESTS`) and/or a seeded campaign
(:func:`memoracle.ksm.live_scenarios.live_ops`, ``--sequences`` sequences of ``--steps``
operations from seed ``--seed``) on the live kernel, the implementation and the model
side by side (:mod:`memoracle.ksm.live_check`), and prints a table, the listed
deviations with their reasons, every violation with how to reproduce it, and one
verdict line.

Exit codes: 0 = every point agreed (differences only where a listed deviation explains
them); 1 = a difference no deviation explains; 2 = bad usage, or this machine cannot run
it (no KSM in the kernel, no permission, another process using KSM: one line saying
why); 3 = inconclusive (another live session held the kernel too long, or ksmd could not
be paced: a scan did not complete in time or one slipped in).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from memoracle.arguments import int_in, seed
from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.progress import Progress, verdict_line

SCENARIO_SETS = ("selftests", "campaign", "all")


def add_live_command(commands: Any) -> None:
    """Register ``memoracle ksm live`` on the ``ksm`` sub-command group."""
    live = commands.add_parser("live", help="the running kernel's KSM against the implementation and the model")
    live.add_argument("--scenarios", choices=SCENARIO_SETS, default="all", help="which sequences to run")
    live.add_argument("--seed", type=seed, default=0, help="the campaign's first seed")
    live.add_argument("--steps", type=int_in(1, 10_000), default=60, help="random operations per campaign sequence")
    live.add_argument("--sequences", type=int_in(1, 1_000), default=4, help="campaign sequences (seeds seed, seed+1, ...)")
    live.add_argument("--lock-timeout", type=int_in(0, 3_600), default=300,
                      help="seconds to wait for another live session to finish")  # fmt: skip
    live.add_argument("--json", action="store_true", help="print JSON")
    live.set_defaults(func=cmd_live)


def planned(scenarios: str, first_seed: int, sequences: int, steps: int) -> list[tuple[str, list[Any]]]:
    """The (name, operations) sequences a run of ``ksm live`` makes, in order."""
    from memoracle.ksm.live_scenarios import SELFTESTS, live_ops

    plan: list[tuple[str, list[Any]]] = []
    if scenarios in ("selftests", "all"):
        plan += [(f"selftest {name}", ops) for name, ops in SELFTESTS.items()]
    if scenarios in ("campaign", "all"):
        plan += [(f"campaign seed {s}", live_ops(s, steps)) for s in range(first_seed, first_seed + sequences)]
    return plan


def cmd_live(args: argparse.Namespace) -> int:
    """Run the live comparison (see the module docstring)."""
    from memoracle.ksm.live import LiveError
    from memoracle.ksm.live_check import DEVIATIONS, NOT_COMPARED, ScenarioResult, run_live
    from memoracle.ksm.live_sysfs import LiveBusy, LiveUnavailable, availability

    reason = availability()
    if reason is not None and "other processes" not in reason:
        sys.stderr.write(f"memoracle: ksm live: {reason}\n")
        return EXIT_USAGE
    plan = planned(args.scenarios, args.seed, args.sequences, args.steps)
    started = time.monotonic()
    results: list[ScenarioResult] = []
    inconclusive: str | None = None
    with Progress(len(plan), "ksm live", unit="sequences", enabled=not args.json) as progress:
        for name, ops in plan:
            progress.describe(f"ksm live: {name}")
            try:
                results.append(run_live(name, ops, lock_timeout=args.lock_timeout))
            except LiveUnavailable as error:
                sys.stderr.write(f"memoracle: ksm live: {error}\n")
                return EXIT_USAGE
            except (LiveBusy, LiveError) as error:
                inconclusive = f"{name}: {error}"
                break
            progress.advance(1, violations=sum(len(r.violations) for r in results))
    seconds = time.monotonic() - started
    violations = sum(len(r.violations) for r in results)
    points = sum(r.points for r in results)
    line = verdict_line(
        violations, [(len(results), "sequence"), (points, "point")], seconds,
        inconclusive="ksmd could not be paced" if inconclusive else None,
        found="difference",
    )  # fmt: skip
    reproduce = f"memoracle ksm live --scenarios {args.scenarios} --seed {args.seed} --steps {args.steps} --sequences {args.sequences}"
    if args.json:
        print(json.dumps({
            "results": [r.as_json() for r in results],
            "deviations": [{"name": d.name, "reason": d.reason} for d in DEVIATIONS],
            "not_compared": [{"what": what, "why": why} for what, why in NOT_COMPARED],
            "violations": violations, "points": points, "inconclusive": inconclusive,
            "seconds": round(seconds, 2), "reproduce": reproduce,
        }, indent=2))  # fmt: skip
        sys.stderr.write(line + "\n")
    else:
        _print_table(results)
        listed = {d.deviation for r in results for d in r.differences if d.deviation}
        for deviation in DEVIATIONS:
            if deviation.name in listed:
                print(f"deviation {deviation.name}: {deviation.reason}")
        for result in results:
            for difference in result.violations:
                print(f"VIOLATION in {result.name}, step {difference.step} {difference.op}: {difference.message}")
        print("not compared: " + "; ".join(what for what, _ in NOT_COMPARED) + " (--json says why)")
        if violations:
            print(f"reproduce: {reproduce}")
        if inconclusive:
            print(f"inconclusive: {inconclusive}")
        print(line)
    if inconclusive:
        return EXIT_INCONCLUSIVE
    return EXIT_VIOLATION if violations else EXIT_OK


def _print_table(results: list[Any]) -> None:
    table = Table(title="KSM: live kernel vs implementation vs model")
    for column, justify in (("sequence", "left"), ("operations", "right"), ("points", "right"),
                            ("seconds", "right"), ("result", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        explained = [d for d in result.differences if d.deviation]
        status = "VIOLATION" if result.violations else ("agree (listed deviations)" if explained else "agree")
        table.add_row(result.name, str(result.steps), str(result.points), f"{result.seconds:.2f}", status)
    Console().print(table)
