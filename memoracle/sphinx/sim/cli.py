"""``memoracle sphinx experiment`` and ``memoracle sphinx calibrate``.

``memoracle sphinx experiment [--machine modern|legacy|both] [--requests N]
[--connections 24,48,...] [--loop open|closed] [--rate R] [--cost NAME=NS ...] [--seed S] [--check]
[--sensitivity] [--output DIR] [--json] [--shard i/N | --jobs N | --cluster A]``
simulates the paper's Figure 3 (:mod:`memoracle.sphinx.sim.experiment`): prints p50, p99
and p99.9 of both designs per point, then the claims table
(:mod:`memoracle.sphinx.sim.claims`); ``--output DIR`` writes the PNG figures and
``sphinx_experiment.json``. ``--sensitivity`` instead reruns a reduced grid with every
cost entry halved and doubled and the load changed, and prints which claims each
variant flips. Exit 0 when every point ran (and, with ``--check``, every invariant held
in every trace), 1 when an invariant broke or a point raised, 2 for bad usage, 3 when
interrupted. Whether the paper's claims are reproduced is the experiment's finding, not
a failure.

``memoracle sphinx calibrate [--requests N] [--json]`` measures the cost table's
measured entries on this machine against real memcached (see
:mod:`memoracle.sphinx.sim.calibrate`); exit 2 when memcached is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from memoracle.arguments import int_in, output_directory, prepare_directory, seed, usage_error
from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.progress import verdict_line

PROG = "memoracle sphinx experiment"


def _connections(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants numbers separated by commas (e.g. 24,96,384), not {text!r}") from None
    if not values or values[0] < 1 or values[-1] > 100_000:
        raise argparse.ArgumentTypeError(f"connection counts must be between 1 and 100,000, not {text!r}")
    return values


def _cost(text: str) -> tuple[str, int]:
    from memoracle.sphinx.sim.costs import parse_override

    try:
        return parse_override(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants requests per second, not {text!r}") from None
    if not 0 < value <= 1e7:
        raise argparse.ArgumentTypeError(f"must be in (0, 10,000,000], not {text}")
    return value


def add_commands(commands: Any) -> None:
    """Register ``experiment`` and ``calibrate`` on the ``sphinx`` sub-command group."""
    from memoracle.execution.options import add_execution_options, shard_spec
    from memoracle.sphinx.sim.experiment import DEFAULT_REQUESTS

    command = commands.add_parser("experiment", help="the paper's tail-latency experiment (Figure 3) in virtual time")
    command.add_argument("--machine", choices=("modern", "legacy", "both"), default="both",
                         help="the paper's 48-core/48-queue or 16-core/8-queue machine, or both")  # fmt: skip
    command.add_argument("--requests", type=int_in(100, 100_000_000),
                         help=f"requests per point, the first 10 %% warming up (default {DEFAULT_REQUESTS:,})")  # fmt: skip
    command.add_argument("--connections", type=_connections, metavar="LIST",
                         help="connection counts (default 24,48,96,192,288,384)")  # fmt: skip
    command.add_argument("--loop", choices=("open", "closed"), default="open",
                         help="open: Poisson arrivals at --rate per connection; closed: one request in flight per "
                         "connection, as mutilate without --qps")  # fmt: skip
    command.add_argument("--rate", type=_rate, help="open loop: requests/s per connection (default 2500 modern, 833 legacy)")
    command.add_argument("--cost", type=_cost, action="append", default=[], metavar="NAME=NS",
                         help="override a cost entry (repeatable), e.g. --cost mc_lru_hold=600")  # fmt: skip
    command.add_argument("--seed", type=seed, default=0, help="seed of arrivals, keys, flows and irqbalance")
    command.add_argument("--check", action="store_true", help="record every point's trace and check its invariants")
    command.add_argument("--sensitivity", action="store_true",
                         help="which cost entries (halved, doubled) and loads flip each claim, on a reduced grid")  # fmt: skip
    command.add_argument("--output", type=output_directory, help="write the PNG figures and sphinx_experiment.json here")
    command.add_argument("--shard", type=shard_spec, metavar="i/N", help="run only shard i of N, in this process")
    add_execution_options(command)
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(func=cmd_experiment)

    calibrate = commands.add_parser("calibrate", help="measure the cost table's measured entries against real memcached")
    calibrate.add_argument("--requests", type=int_in(1000, 10_000_000), default=20_000,
                           help="requests per measurement")  # fmt: skip
    calibrate.add_argument("--json", action="store_true", help="print JSON")
    calibrate.set_defaults(func=cmd_calibrate)


def _table(points: list[dict[str, Any]]) -> str:
    from memoracle.sphinx.sim.experiment import Grid

    grid = Grid(points)
    lines = [f"{'machine':8} {'irq':9} {'load':6} {'conns':>5}  {'Sphinx p50/p99/p99.9 µs':>25}  "
             f"{'memcached p50/p99/p99.9 µs':>27}  {'p99 cut':>7}"]  # fmt: skip
    seen = set()
    for p in points:
        key = (p["machine"], p["irq_config"], p["workload"], p["connections"])
        if key in seen or not all(grid.has(p["machine"], d, p["workload"], p["irq_config"], p["connections"])
                                  for d in ("sphinx", "memcached")):  # fmt: skip
            continue
        seen.add(key)
        cells = []
        for design in ("sphinx", "memcached"):
            cells.append("/".join(f"{grid.p(*key[:1], design, key[2], key[1], key[3], label):.0f}"
                                  for label in ("p50", "p99", "p99.9")))  # fmt: skip
        cut = 1 - grid.p(key[0], "sphinx", key[2], key[1], key[3]) / grid.p(key[0], "memcached", key[2], key[1], key[3])
        lines.append(f"{key[0]:8} {key[1]:9} {key[2]:6} {key[3]:>5}  {cells[0]:>25}  {cells[1]:>27}  {cut * 100:>+6.0f}%")
    return "\n".join(lines)


def _claims_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        lines.append(f"[{row['outcome']}] {row['machine']} {row['claim']}: paper {row['paper']}; simulated {row['simulated']}")
    return "\n".join(lines)


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run the grid (or the sensitivity study) as the options say."""
    from memoracle.execution.options import print_failures, run_campaign
    from memoracle.sphinx.sim import claims as claim_module
    from memoracle.sphinx.sim.experiment import (
        CONNECTIONS, DEFAULT_REQUESTS, ExperimentConfig, experiment_campaign, merge)

    if args.shard is not None and (args.jobs is not None or args.cluster is not None):
        return usage_error(PROG, "--shard runs one shard in this process; --jobs and --cluster do not apply")
    if args.rate is not None and args.loop == "closed":
        return usage_error(PROG, "--rate sets the open loop's arrival rate; a closed loop has none")
    if args.sensitivity and args.machine == "both":
        return usage_error(PROG, "--sensitivity studies one machine: give --machine modern or --machine legacy")
    if args.sensitivity:
        given = [name for name, value in (("--requests", args.requests), ("--connections", args.connections),
                                          ("--rate", args.rate), ("--cost", args.cost or None),
                                          ("--check", args.check or None)) if value is not None]  # fmt: skip
        if given:
            return usage_error(PROG, f"{given[0]} does not apply to --sensitivity, which runs its own reduced grid")
    if args.output is not None:
        problem = prepare_directory(args.output)
        if problem is not None:
            return usage_error(PROG, problem)
    machines = ("modern", "legacy") if args.machine == "both" else (args.machine,)
    started = time.perf_counter()
    if args.sensitivity:
        config_s = claim_module.sensitivity_config(machines[0], args.seed, loop=args.loop)
        campaign = claim_module.sensitivity_campaign(config_s)
    else:
        requests = args.requests if args.requests is not None else DEFAULT_REQUESTS
        config = ExperimentConfig(machines, requests, args.seed, args.connections or CONNECTIONS,
                                  rate=args.rate, overrides=tuple(args.cost), check=args.check,
                                  loop=args.loop)  # fmt: skip
        campaign = experiment_campaign(config)
    selected = None
    if args.shard is not None:
        campaign = (claim_module.sensitivity_campaign(config_s, args.shard[1]) if args.sensitivity
                    else experiment_campaign(config, args.shard[1]))  # fmt: skip
        selected = [args.shard[0]]
    try:
        execution = run_campaign(campaign, args, PROG, label=PROG, shards=selected)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INCONCLUSIVE
    if isinstance(execution, int):
        return execution
    units = merge(execution.results())
    failed = execution.failures()
    problems = [f"{u['machine']} {u['design']} {u['workload']} {u['irq_config']} {u['connections']}: {text}"
                for u in units for text in u["problems"]]  # fmt: skip
    seconds = time.perf_counter() - started
    simulated = sum(int(u["requests"]) for u in units)
    payload: dict[str, Any] = {"machines": list(machines), "loop": args.loop, "back_end": execution.where.describe(),
                               "simulated_requests": simulated, "seconds": seconds,
                               "failed_shards": [f.as_json() for f in failed], "problems": problems}  # fmt: skip
    complete = not failed and selected is None
    if args.sensitivity:
        payload["sensitivity"] = claim_module.sensitivity_table(config_s, units) if complete else []
        payload["variants"] = [list(v) for v in config_s.variants]
    else:
        payload["points"] = units
        payload["claims"] = claim_module.judge_all(units) if complete else []
    if args.output is not None and complete:
        (args.output / "sphinx_experiment.json").write_text(json.dumps(payload, indent=1) + "\n")
        if not args.sensitivity:
            from memoracle.sphinx.sim.figure import write_figures

            payload["figures"] = [str(path) for path in write_figures(args.output, units)]
    if args.json:
        print(json.dumps(payload, indent=2))
    elif args.sensitivity:
        for row in payload["sensitivity"]:
            flips = ", ".join(row["flipped_by"]) or "nothing"
            print(f"{row['machine']} {row['claim']}: holds on the reduced grid: {row['holds_on_base']}; flipped by {flips}")
    else:
        print(_table(units))
        if payload["claims"]:
            print()
            print(_claims_text(payload["claims"]))
        for path in payload.get("figures", []):
            print(f"wrote {path}")
    for problem in problems[:5]:
        print(problem, file=sys.stderr if args.json else sys.stdout)
    if not args.json:
        print_failures(execution)
    rate = simulated / seconds if seconds else 0.0
    line = verdict_line(len(problems) + len(failed), [(len(units), "point"), (simulated, "simulated request")], seconds)
    print(f"{line} ({rate:,.0f} simulated requests/s)", file=sys.stderr if args.json else sys.stdout)
    return EXIT_VIOLATION if problems or failed else EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure memcached and the eventfd syscalls; print what the table's measured entries would be."""
    from memoracle.sphinx.peers import PeerUnavailable
    from memoracle.sphinx.sim.calibrate import calibrate

    try:
        report = calibrate(args.requests)
    except PeerUnavailable as error:
        sys.stderr.write(f"memoracle sphinx calibrate: {error}\n")
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report["measured"].items():
            print(f"{name:32} {value:>10,.0f} ns")
        print()
        for name, value in report["entries"].items():
            print(f"{name:16} {value:>8,} ns   (table: {report['table'][name]:,} ns)")
    return EXIT_OK


def output_paths(directory: Path, machines: tuple[str, ...], loop: str = "open") -> list[Path]:
    """The files ``--output`` writes for ``machines``."""
    from memoracle.sphinx.sim.figure import figure_name

    return [directory / "sphinx_experiment.json"] + [directory / figure_name(m, loop) for m in machines]


__all__ = ["add_commands", "cmd_calibrate", "cmd_experiment", "output_paths"]
