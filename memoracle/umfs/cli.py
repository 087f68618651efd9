"""``memoracle crash umfs``: crash campaigns from the command line.

Three modes, each with the options that apply to it (any other is refused):

- bounded-exhaustive (default): every workload of up to ``--ops`` operations (1-4,
  default 2); every crash image the model allows, in classes recovery cannot tell apart
  (``--max-classes`` caps the classes per crash point; ``--images`` enumerates images
  one by one instead, up to N per crash point) — the report says *exhaustive* or
  *sampled* and the exact coverage;
- ``--fuzz``: ``--examples`` Hypothesis workloads of up to ``--ops`` operations (default 4),
  the smallest failing one shrunk; the same table and the same JSON keys as above;
- ``--flush-report``: which persist sites' flushes and fences are needed.

Both searches are campaigns of the execution layer (:mod:`memoracle.umfs.crash_shards`):
``--jobs N``, ``--cluster local:N|tcp://HOST:8786``, ``--journal``/``--resume`` and one
``--shard i/N`` in this process; the verdict, the violations and every count but the
figures of effort (:data:`~memoracle.umfs.crash_shards.EFFORT_FIELDS`) are the same on
every back-end.

Exit codes: 0 = every crash image recovered to an allowed state, 1 = a violation
(reports printed, or in the JSON) or a shard that raised or crashed its workers (printed
with the command that reruns it), 2 = bad usage, or a run that could not go on (a lost
scheduler, workers running other code).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from memoracle.arguments import add_subcommands, int_in, seed, usage_error
from memoracle.exitcodes import EXIT_OK, EXIT_VIOLATION
from memoracle.progress import Progress, verdict_line
from memoracle.execution.options import add_execution_options, print_failures, run_campaign, shard_spec
from memoracle.execution.run import Execution
from memoracle.umfs.crash_campaign import ALPHABET, SETUP, CampaignConfig, shard_of, workload_count, workloads
from memoracle.umfs.crash_shards import FuzzConfig, crash_campaign, fuzz_campaign, merge_crash, merge_fuzz
from memoracle.umfs.crash_stats import Stats
from spec.persistency import PersistMode

#: Every single operation, and the closes and reclaims that single operations never reach.
FLUSH_REPORT_WORKLOADS = [(op,) for op in ALPHABET] + [
    (("write", "/a", 4000, 200, 3), ("close", "/a")),
    (("write", "/a", 4096, 5000, 4), ("unlink", "/a"), ("close", "/a")),
    (("creat", "/b"), ("write", "/b", 0, 100, 6), ("close", "/b")),
]

#: Classes per crash point in the flush report: without a site's flushes a U-Log can be
#: left valid over torn record lines, one class per combination (see ``MUTANT_CLASS_CAP``
#: in :mod:`memoracle.umfs.crash_mutants`); a cell that stayed correct under the cap says
#: "(sampled)".
FLUSH_REPORT_CLASS_CAP = 500

#: Every persist site of UMFS outside mkfs and mount (closes and reclaims are transactions).
SITES = ("log-records", "log", "tables", "data", "attrs", "invalidate", "attr-cache")
#: The longest workloads explored exhaustively (16**4 = 65,536 of 4 operations, hours);
#: longer ones are the fuzzer's job.
MAX_EXHAUSTIVE_OPS = 4
#: The longest workloads the fuzzer draws.
MAX_FUZZ_OPS = 32
DEFAULT_OPS = {"exhaustive": 2, "fuzz": 4}


def mutant_name(text: str) -> str:
    """A mutant of :data:`~memoracle.umfs.crash_mutants.UMFS_MUTANTS`; ``-`` and ``_``
    are the same (``log-never-invalidated`` is ``log_never_invalidated``)."""
    from memoracle.umfs.crash_mutants import UMFS_MUTANTS

    name = text.replace("-", "_")
    if name not in UMFS_MUTANTS:
        raise argparse.ArgumentTypeError(f"unknown mutant {text!r}; --list-mutants lists them")
    return name


def add_commands(sub: Any) -> None:
    """Register ``crash umfs`` on the top-level parser."""
    crash = sub.add_parser("crash", help="crash-consistency campaigns (bounded-exhaustive or fuzzing)")
    systems = add_subcommands(crash, "system", "the system to crash")
    umfs = systems.add_parser("umfs", help="crash UMFS everywhere the persistency model allows, recover, compare")
    umfs.add_argument(
        "--ops", type=int_in(1, MAX_FUZZ_OPS), default=None,
        help=f"workloads of up to N operations (default {DEFAULT_OPS['exhaustive']}, at most "
        f"{MAX_EXHAUSTIVE_OPS}; with --fuzz default {DEFAULT_OPS['fuzz']}, at most {MAX_FUZZ_OPS})",
    )  # fmt: skip
    umfs.add_argument("--fuzz", action="store_true", help="Hypothesis-generated workloads, shrunk")
    umfs.add_argument("--examples", type=int_in(1, 1_000_000), default=None, help="--fuzz: how many workloads (default 100)")
    umfs.add_argument("--seed", type=seed, default=0, help="seed for samples and fuzzing")
    umfs.add_argument("--shard", type=shard_spec, metavar="i/N", help="run only shard i of N, in this process")
    add_execution_options(umfs)
    umfs.add_argument(
        "--images", type=int_in(1, 4096), default=None,
        help="enumerate crash images one by one, up to N per crash point (a deterministic sample "
        "above); default: every image, decided lazily in classes",
    )  # fmt: skip
    umfs.add_argument(
        "--max-classes", type=int_in(1, 1 << 30), default=None,
        help="at most N classes of images per crash point (then the report says sampled)",
    )  # fmt: skip
    umfs.add_argument("--every-store", action="store_true", help="crash before every store too")
    umfs.add_argument("--no-recovery-crashes", action="store_true", help="do not crash recovery")
    umfs.add_argument("--eadr", action="store_true", help="eADR: every cached store durable at once")
    umfs.add_argument("--mutant", type=mutant_name, help="explore a deliberately broken UMFS (see --list-mutants)")
    umfs.add_argument("--list-mutants", action="store_true", help="list the mutants and exit")
    umfs.add_argument(
        "--flush-report", action="store_true",
        help="for each persist site, does UMFS stay correct without its flushes / its fence (ADR, eADR)?",
    )  # fmt: skip
    umfs.add_argument("--json", action="store_true", help="print JSON")
    umfs.set_defaults(func=cmd_crash)


#: Options that do not apply to a mode, and the reason.
_NOT_IN_MODE = {
    "fuzz": {},
    "exhaustive": {"--examples": "examples"},
    "flush-report": {
        "--fuzz": "fuzz", "--ops": "ops", "--examples": "examples", "--jobs": "jobs", "--shard": "shard",
        "--cluster": "cluster", "--journal": "journal", "--resume": "resume",
        "--mutant": "mutant", "--every-store": "every_store", "--no-recovery-crashes": "no_recovery_crashes",
        "--eadr": "eadr", "--max-classes": "max_classes",
    },
}  # fmt: skip


def _usage(message: str) -> int:
    return usage_error("memoracle crash umfs", message)


def cmd_crash(args: argparse.Namespace) -> int:
    """Run the campaign the arguments describe."""
    if args.list_mutants:
        from memoracle.umfs.crash_mutants import UMFS_MUTANTS

        for name, spec in UMFS_MUTANTS.items():
            print(f"{name:28} class {spec.bug_class:2}  {spec.description}")
        return EXIT_OK
    mode = "flush-report" if args.flush_report else "fuzz" if args.fuzz else "exhaustive"
    for option, dest in _NOT_IN_MODE[mode].items():
        if getattr(args, dest) not in (None, False):
            return _usage(f"{option} does not apply to {'--' + mode if mode != 'exhaustive' else 'exhaustive search'}")
    if args.shard is not None and (args.jobs is not None or args.cluster is not None):
        return _usage("--shard runs one shard in this process; --jobs and --cluster do not apply")
    if args.images is not None and args.max_classes is not None:
        return _usage("--images enumerates images one by one; --max-classes caps the lazy explorer's classes")
    ops = args.ops if args.ops is not None else DEFAULT_OPS.get(mode, 1)
    if mode == "exhaustive" and ops > MAX_EXHAUSTIVE_OPS:
        return _usage(
            f"--ops {ops} would explore {count_workloads_estimate(ops):,} workloads; at most "
            f"{MAX_EXHAUSTIVE_OPS} exhaustively (--fuzz draws longer ones)"
        )
    config = CampaignConfig(
        max_ops=ops,
        mode=PersistMode.EADR if args.eadr else PersistMode.ADR,
        method="enumeration" if args.images is not None else "lazy",
        max_classes=args.max_classes,
        image_limit=args.images if args.images is not None else 32,
        every_store=args.every_store,
        recovery_crashes=not args.no_recovery_crashes,
        seed=args.seed,
        mutant=args.mutant,
    )
    if mode == "flush-report":
        return _flush_report(config, args)
    if mode == "fuzz":
        return _fuzz(config, args)
    return _exhaustive(config, args)


def count_workloads_estimate(ops: int) -> int:
    """How many workloads of up to ``ops`` operations there are (without listing them)."""
    return workload_count(ops)


def _cpu_seconds() -> float:
    """CPU seconds of this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _campaign_cpu_seconds(execution: Execution, own: float) -> float:
    """CPU seconds of the run: this process's, plus the shards' where they ran elsewhere
    (each worker measures its own; shards read back from a journal count nothing)."""
    if execution.where.kind == "process":
        return own
    return own + sum(o.cpu_seconds or 0.0 for o in execution.outcomes if not o.resumed)


def _reproduce(config: CampaignConfig, args: argparse.Namespace, shard: tuple[int, int] | None = None) -> str:
    parts = ["memoracle crash umfs", f"--ops {config.max_ops}", f"--seed {config.seed}"]
    if config.method == "enumeration":
        parts.append(f"--images {config.image_limit}")
    if config.max_classes is not None:
        parts.append(f"--max-classes {config.max_classes}")
    if args.fuzz:
        parts[1:1] = ["--fuzz", f"--examples {args.examples or 100}"]
    shard = shard if shard is not None else args.shard
    if shard is not None:
        parts.append(f"--shard {shard[0]}/{shard[1]}")
    parts += [flag for flag, on in (("--eadr", args.eadr), ("--every-store", args.every_store),
                                    ("--no-recovery-crashes", args.no_recovery_crashes)) if on]  # fmt: skip
    if config.mutant:
        parts.append(f"--mutant {config.mutant}")
    return " ".join(parts)


def _report(
    config: CampaignConfig, args: argparse.Namespace, stats: Stats, violations: list[dict[str, object]],
    reports: list[str], wall: float, cpu: float, execution: Execution,
) -> int:  # fmt: skip
    """The table (or JSON), the failing shards and the verdict line, the same for every
    search mode; exit 1 for a violation or a failing shard."""
    search = "fuzz" if args.fuzz else "exhaustive"
    counts: dict[str, object] = dict(stats.as_json())
    counts["wall_seconds"] = round(wall, 3)
    counts["cpu_seconds"] = round(cpu, 3)
    classes = stats.classes + stats.recovery_classes
    counts["classes_per_cpu_second"] = round(classes / cpu, 1) if cpu else 0.0
    reproduce = _reproduce(config, args) if violations else None
    title = f"crash umfs --ops {config.max_ops}: {search}, {config.mode.value}, {config.variant().name}"
    if args.json:
        print(json.dumps({"search": search, "variant": config.variant().name, "mode": config.mode.value,
                          "stats": counts, "violations": violations, "reproduce": reproduce,
                          "back_end": execution.where.describe(),
                          "failed_shards": [f.as_json() for f in execution.failures()]}, indent=2))  # fmt: skip
    else:
        console = Console()
        print(title)
        table = Table()
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in counts.items():
            table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value))
        console.print(table)
        for text in reports[:5]:
            console.print(text, markup=False, highlight=False)
        if len(reports) > 5:
            console.print(f"… and {len(reports) - 5} more violations (use --json for all)")
        if reproduce:
            print(f"reproduce: {reproduce}")
        print_failures(execution)
    failed = len(execution.failures())
    line = verdict_line(
        len(violations) + failed,
        [
            (stats.workloads, "workload"),
            (stats.crash_points + stats.recovery_crash_points, "crash point"),
            (stats.classes + stats.recovery_classes, "class", "classes"),
            (len(stats.states), "distinct state"),
        ],
        wall,
    ) + f"; {stats.summary()}"
    print(line, file=sys.stderr if args.json else sys.stdout)
    return EXIT_VIOLATION if violations or failed else EXIT_OK


def _exhaustive(config: CampaignConfig, args: argparse.Namespace) -> int:
    """Every workload of up to ``--ops`` operations, on the back-end the options name."""
    shards = args.shard[1] if args.shard is not None else None
    campaign = crash_campaign(config, lambda shard, count: _reproduce(config, args, (shard, count)), shards=shards)
    sizes = Counter(shard_of(ops, campaign.shards) for ops in workloads(config.max_ops))
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    execution = run_campaign(
        campaign, args, "memoracle crash umfs", label=f"crash umfs --ops {config.max_ops}",
        shards=[args.shard[0]] if args.shard is not None else None, unit="workloads", size=sizes.__getitem__,
    )  # fmt: skip
    if isinstance(execution, int):
        return execution
    wall = time.perf_counter() - started
    stats, violations, reports = merge_crash(execution.results())
    stats.method = config.method
    cpu = _campaign_cpu_seconds(execution, _cpu_seconds() - cpu_started)
    return _report(config, args, stats, violations, reports, wall, cpu, execution)


def _fuzz(config: CampaignConfig, args: argparse.Namespace) -> int:
    """``--examples`` Hypothesis workloads in shards; the first failing shard's shrunk one."""
    examples = args.examples or 100
    shards = args.shard[1] if args.shard is not None else None
    campaign = fuzz_campaign(
        FuzzConfig(config, examples), lambda shard, count: _reproduce(config, args, (shard, count)), shards=shards
    )
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    execution = run_campaign(
        campaign, args, "memoracle crash umfs", label=f"crash umfs --fuzz --examples {examples}",
        shards=[args.shard[0]] if args.shard is not None else None, unit="examples",
        size=lambda shard: len(range(shard, examples, campaign.shards)),
    )  # fmt: skip
    if isinstance(execution, int):
        return execution
    stats, smallest, report = merge_fuzz(execution.results())
    stats.method = config.method
    violations: list[dict[str, object]] = []
    reports: list[str] = []
    if smallest is not None:
        found = config.explorer().explore(SETUP, smallest)  # the shrunk workload, for its JSON
        violations = [v.as_json() for v in found[:1]] or [{"ops": [list(op) for op in smallest], "report": report}]
        reports = [report]
    wall = time.perf_counter() - started
    cpu = _campaign_cpu_seconds(execution, _cpu_seconds() - cpu_started)
    return _report(config, args, stats, violations, reports, wall, cpu, execution)


def _flush_report(config: CampaignConfig, args: argparse.Namespace) -> int:
    """Drop each site's flushes in turn; a site whose removal stays correct is unneeded."""
    rows = []
    with Progress(len(SITES) * 4, "crash umfs --flush-report", unit="variants") as progress:
        for site in SITES:
            rows.append(_flush_row(config, site, progress))
    if args.json:
        print(json.dumps({"flush_report": rows}, indent=2))
    else:
        table = Table(title="Are UMFS's flushes and fences needed? (drop one site's, re-explore)")
        for column in ("persist site", "flush, ADR", "flush, eADR", "fence, ADR", "fence, eADR"):
            table.add_column(column)
        for row in rows:
            cells = [
                ("unneeded" + ("" if row[f"{mode}_exhaustive_without_{what}"] else " (sampled)"))
                if row[f"{mode}_ok_without_{what}"] else "needed"
                for what in ("flush", "fence")
                for mode in ("adr", "eadr")
            ]
            table.add_row(str(row["site"]), *cells)
        Console().print(table)
    return EXIT_OK


def _flush_row(config: CampaignConfig, site: str, progress: Progress) -> dict[str, object]:
    """One persist site: is UMFS still correct without its flushes / its fence, per mode?"""
    row: dict[str, object] = {"site": site}
    for what in ("flush", "fence"):
        for mode in (PersistMode.ADR, PersistMode.EADR):
            variant_config = CampaignConfig(
                max_ops=1, mode=mode, method=config.method, image_limit=config.image_limit,
                max_classes=FLUSH_REPORT_CLASS_CAP, recovery_crashes=False, seed=config.seed,
                skip_flush=(site,) if what == "flush" else (), skip_fence=(site,) if what == "fence" else (),
            )  # fmt: skip
            explorer = variant_config.explorer()
            ok = not any(explorer.explore(SETUP, ops) for ops in FLUSH_REPORT_WORKLOADS)
            row[f"{mode.value}_ok_without_{what}"] = ok
            row[f"{mode.value}_exhaustive_without_{what}"] = explorer.stats.exhaustive
            progress.advance(1)
    return row
