"""``memoracle history record`` and ``memoracle interleave``: the SPSC commands.

``history record OUT`` records a real two-process SPSC history; ``history check`` lives in
:mod:`memoracle.history.cli` (it checks any queue, and Jepsen and Porcupine histories).

``interleave`` explores one scenario exhaustively (within ``--max-executions``: exit 3
when the budget runs out first) or by PCT (``--pct RUNS``, a campaign of shards that runs
in this process, on ``--jobs N`` or on a ``--cluster``: :mod:`memoracle.spsc.pct_campaign`),
or prints the fences table
(``--table``, for the ``--model``/``--variant``/``--criterion`` given, all by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from spec.spsc_model import Criterion

from memoracle.arguments import add_subcommands, int_in, output_file, power_of_two, seed, usage_error
from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.history.cli import add_check_parser
from memoracle.progress import Progress, verdict_line

#: The longest history ``history record`` writes (about 90 bytes an operation).
MAX_RECORD_OPERATIONS = 10_000_000
#: The largest ring ``history record`` shares between its two processes (512 KiB of slots).
MAX_RECORD_CAPACITY = 1 << 16
#: Default budget of ``interleave``'s exhaustive search (about a minute on one core).
DEFAULT_MAX_EXECUTIONS = 200_000
#: The largest workload ``interleave`` accepts per side.
MAX_INTERLEAVE_OPERATIONS = 1_000


def _usage(message: str) -> int:
    sys.stderr.write(f"memoracle: {message}\n")
    return EXIT_USAGE


def _interleave_usage(message: str) -> int:
    return usage_error("memoracle interleave", message)


def cmd_history_record(args: argparse.Namespace) -> int:
    """``memoracle history record OUT``: two processes, one shared ring, one history."""
    from memoracle.spsc.recorder import record_history

    try:
        with Progress(None, f"recording {args.operations:,} operations", unit="histories"):
            record_history(str(args.output), args.operations, args.capacity, mutant=args.mutant)
    except OSError as error:
        return _usage(f"{args.output}: {error.strerror or error}")
    except RuntimeError as error:
        return _usage(f"recording failed: {error}")
    print(f"wrote {args.operations} operations to {args.output}")
    return EXIT_OK


#: ``interleave`` options that do not apply to ``--table`` (it runs a fixed workload,
#: exhaustively).
_NOT_WITH_TABLE = ("fences", "capacity", "pushes", "pops", "start", "bound", "pct", "depth", "seed", "max_executions",
                   "jobs", "cluster", "journal", "resume")  # fmt: skip


def cmd_interleave(args: argparse.Namespace) -> int:
    """``memoracle interleave``: explore one scenario, or print the fences table."""
    from impl.cpu_emu import Model
    from memoracle.spsc.fences_table import parse_fences
    from memoracle.spsc.interleave import NEAR_WRAP, Scenario, explore

    if args.table:
        return _fences_table(args)
    if args.pct is None:
        for name in ("depth", "seed", "jobs", "cluster", "journal", "resume"):
            if getattr(args, name) is not None:
                return _interleave_usage(f"--{name} applies to --pct only")
    elif args.bound is not None or args.max_executions is not None:
        return _interleave_usage("--bound and --max-executions apply to the exhaustive search, not --pct")
    try:
        fences = parse_fences(args.fences or "")
    except ValueError as error:
        return _interleave_usage(f"--fences: {error}")
    pushes, pops = _or(args.pushes, 2), _or(args.pops, 2)
    if pushes + pops == 0:
        return _interleave_usage("--pushes and --pops are both 0: there would be nothing to check")
    model, variant, criterion_name = _or(args.model, "tso"), _or(args.variant, "lamport"), _or(args.criterion, "tolerant")
    capacity, start = _or(args.capacity, 2), _or(args.start, NEAR_WRAP)
    scenario = Scenario(Model(model), variant, fences, capacity, pushes, pops, start=start)
    criterion = Criterion(criterion_name)
    budget = _or(args.max_executions, DEFAULT_MAX_EXECUTIONS)
    knobs = ",".join(fences.enabled())
    extra = f" --pct {args.pct} --depth {_or(args.depth, 3)} --seed {_or(args.seed, 0)}" if args.pct else ""
    extra += f" --bound {args.bound}" if args.bound is not None else ""
    reproduce = (f"memoracle interleave --model {model} --variant {variant} --criterion {criterion_name} "
                 f"--fences '{knobs}' --capacity {capacity} --pushes {pushes} --pops {pops} "
                 f"--start {start}{extra}")  # fmt: skip
    started = time.perf_counter()
    if args.pct is not None:
        return _pct(args, scenario, criterion, reproduce, started)
    with Progress(None, f"interleave {scenario.describe()}", unit="executions") as progress:
        result = explore(scenario, criterion, bound=args.bound, max_executions=budget, progress=progress.advance)
    seconds = time.perf_counter() - started
    counts: list[tuple[int, str]] = [(result.executions, "execution")]
    if result.violation is not None:
        print(result.violation.render())
        print(f"found after {result.executions} executions; reproduce: {reproduce}")
        print(verdict_line(1, counts, seconds))
        return EXIT_VIOLATION
    if args.pct is None and not result.exhausted:
        print(f"no violation in the first {result.executions:,} executions of {scenario.describe()}, "
              f"but the search was cut before it covered every execution")  # fmt: skip
        print(verdict_line(0, counts, seconds, inconclusive=f"--max-executions {budget:,} reached"))
        return EXIT_INCONCLUSIVE
    bound = "" if args.bound is None else f" within {args.bound} preemptions"
    print(f"every execution{bound} {criterion.value}ly linearizable ({result.pruned} branches pruned): "
          f"{scenario.describe()}")  # fmt: skip
    print(verdict_line(0, counts, seconds))
    return EXIT_OK


def _pct(args: argparse.Namespace, scenario: Any, criterion: Criterion, reproduce: str, started: float) -> int:
    """``interleave --pct RUNS``: PCT runs as a campaign of shards on any back-end."""
    from memoracle.execution.options import print_failures, run_campaign
    from memoracle.spsc.pct_campaign import PctConfig, merge_pct, pct_campaign

    config = PctConfig(scenario, criterion, args.pct, _or(args.depth, 3), _or(args.seed, 0))
    execution = run_campaign(pct_campaign(config, reproduce), args, "memoracle interleave",
                             label=f"interleave --pct {args.pct:,} {scenario.describe()}")  # fmt: skip
    if isinstance(execution, int):
        return execution
    merged = merge_pct(execution.results(), args.pct)
    failed = print_failures(execution)
    seconds = time.perf_counter() - started
    counts: list[tuple[int, str]] = [(merged["executions"], "execution")]
    if merged["violation"] is not None:
        print(merged["violation"]["report"])
        print(f"found after {merged['executions']} executions (run {merged['violation']['run']}); "
              f"reproduce: {reproduce}")  # fmt: skip
        print(verdict_line(1 + failed, counts, seconds))
        return EXIT_VIOLATION
    if failed:
        print(verdict_line(failed, counts, seconds))
        return EXIT_VIOLATION
    print(f"{args.pct:,} PCT samples (depth {config.depth}) {criterion.value}ly linearizable: {scenario.describe()}")
    print(verdict_line(0, counts, seconds))
    return EXIT_OK


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _fences_table(args: argparse.Namespace) -> int:
    """``interleave --table``: the fences table, for the models, variants and criteria given."""
    from impl.cpu_emu import Model
    from impl.spsc import VARIANTS
    from memoracle.spsc.fences_table import fences_table, render_markdown

    given = [name for name in _NOT_WITH_TABLE if getattr(args, name) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        return _interleave_usage(f"{flag} does not apply to --table (it explores its own fixed workload)")
    models = [Model(args.model)] if args.model else list(Model)
    variants = [args.variant] if args.variant else list(VARIANTS)
    criteria = [Criterion(args.criterion)] if args.criterion else list(Criterion)
    started = time.perf_counter()
    with Progress(len(models) * len(variants) * len(criteria), "interleave --table", unit="cells") as progress:
        cells = fences_table(models, variants, criteria, on_cell=lambda cell: progress.advance(1))
    print(render_markdown(cells))
    executions = sum(cell.executions for cell in cells)
    print(verdict_line(0, [(len(cells), "cell"), (executions, "execution")], time.perf_counter() - started))
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Register ``history`` and ``interleave`` on the ``memoracle`` sub-parser set."""
    history = sub.add_parser("history", help="check histories (memoracle, Jepsen, Porcupine) or record SPSC ones")
    verbs = add_subcommands(history, "verb", "check or record")
    add_check_parser(verbs)
    record = verbs.add_parser("record", help="record a real two-process SPSC history")
    record.add_argument("output", type=output_file, help="the history file to write")
    record.add_argument(
        "--operations", type=int_in(1, MAX_RECORD_OPERATIONS), default=100_000, help="operations in all (half each side)"
    )
    record.add_argument("--capacity", type=power_of_two(MAX_RECORD_CAPACITY), default=8, help="ring slots")
    record.add_argument("--mutant", choices=["none", "wrong_slot"], default="none", help="a broken ring to record")
    record.set_defaults(func=cmd_history_record)

    from impl.spsc import MAX_CAPACITY

    ops = int_in(0, MAX_INTERLEAVE_OPERATIONS)
    inter = sub.add_parser("interleave", help="explore SPSC ring interleavings on store-buffer cores")
    inter.add_argument("--table", action="store_true", help="print the fences table (of --model/--variant/--criterion if given)")
    inter.add_argument("--model", choices=["sc", "tso", "weak"], help="memory model (default tso; --table: all)")
    inter.add_argument("--variant", choices=["lamport", "cached"], help="ring (default lamport; --table: both)")
    inter.add_argument("--criterion", choices=["strict", "tolerant"], help="(default tolerant; --table: both)")
    inter.add_argument(
        "--fences", help="orderings, comma- or +-separated, as knob names of impl.spsc.Fences or in the "
        "fences table's notation: P:acq(head), P:rel(tail), P:fence, C:acq(tail), C:rel(head), C:fence (default none)",
    )  # fmt: skip
    inter.add_argument("--capacity", type=power_of_two(MAX_CAPACITY), help=f"ring slots, up to {MAX_CAPACITY} (default 2)")
    inter.add_argument(
        "--start", type=int_in(0, (1 << 64) - 1),
        help="where head and tail start (default 2**64-2: both wrap past 2**64 by the second operation)",
    )
    inter.add_argument("--pushes", type=ops, help="push attempts by the producer (default 2)")
    inter.add_argument("--pops", type=ops, help="pop attempts by the consumer (default 2)")
    inter.add_argument("--bound", type=int_in(0, 1_000), help="preemption bound (default: none, every schedule)")
    inter.add_argument(
        "--max-executions", type=int_in(1, 1 << 40),
        help=f"budget of the exhaustive search; exit 3 if it runs out (default {DEFAULT_MAX_EXECUTIONS:,})",
    )  # fmt: skip
    inter.add_argument("--pct", type=int_in(1, 100_000_000), help="PCT runs instead of exhaustive search")
    inter.add_argument("--depth", type=int_in(1, 1_000), help="PCT depth (default 3)")
    inter.add_argument("--seed", type=seed, help="PCT seed (default 0)")
    from memoracle.execution.options import add_execution_options

    add_execution_options(inter)  # --pct runs as shards: --jobs, --cluster, --journal, --resume
    inter.set_defaults(func=cmd_interleave)
