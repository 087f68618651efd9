"""``memoracle crash umfs``: crash campaigns from the command line.

Exit codes: 0 = every crash image recovered to an allowed state, 1 = a violation
(reports printed, or in the JSON), 2 = bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memoracle.umfs.crash_campaign import (
    ALPHABET,
    SETUP,
    CampaignConfig,
    count_workloads,
    fuzz,
    run_campaign,
)
from spec.persistency import PersistMode

#: Every single operation, and the closes and reclaims that single operations never reach.
FLUSH_REPORT_WORKLOADS = [(op,) for op in ALPHABET] + [
    (("write", "/a", 4000, 200, 3), ("close", "/a")),
    (("write", "/a", 4096, 5000, 4), ("unlink", "/a"), ("close", "/a")),
    (("creat", "/b"), ("write", "/b", 0, 100, 6), ("close", "/b")),
]

SITES = ("log", "tables", "data", "attrs", "invalidate", "attr-cache", "attr-writeback", "reclaim")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``crash umfs`` on the top-level parser."""
    crash = sub.add_parser("crash", help="crash-consistency campaigns (bounded-exhaustive or fuzzing)")
    crash.add_argument("system", choices=["umfs"], help="the system to crash")
    crash.add_argument("--ops", type=int, default=2, help="workloads of up to N operations (default 2)")
    crash.add_argument("--fuzz", action="store_true", help="Hypothesis-generated workloads, shrunk")
    crash.add_argument("--examples", type=int, default=100, help="fuzz: how many workloads")
    crash.add_argument("--seed", type=int, default=0, help="seed for samples and fuzzing")
    crash.add_argument("--jobs", type=int, default=1, help="shards run on a local process pool")
    crash.add_argument("--shard", help="run only shard i of N, written i/N")
    crash.add_argument("--images", type=int, default=32, help="crash images per crash point (exhaustive below)")
    crash.add_argument("--every-store", action="store_true", help="crash before every store too")
    crash.add_argument("--no-recovery-crashes", action="store_true", help="do not crash recovery")
    crash.add_argument("--eadr", action="store_true", help="eADR: every cached store durable at once")
    crash.add_argument("--mutant", help="explore a deliberately broken UMFS (see --list-mutants)")
    crash.add_argument("--list-mutants", action="store_true", help="list the mutants and exit")
    crash.add_argument(
        "--flush-report", action="store_true",
        help="for each persist site, does UMFS stay correct without its flushes / its fence (ADR, eADR)?",
    )  # fmt: skip
    crash.add_argument("--json", action="store_true", help="print JSON")
    crash.set_defaults(func=cmd_crash)


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard wants i/N, not {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < N")
    return index, count


def cmd_crash(args: argparse.Namespace) -> int:
    """Run the campaign the arguments describe."""
    if args.list_mutants or args.mutant is not None:
        from memoracle.umfs.crash_mutants import UMFS_MUTANTS

        if args.list_mutants:
            for name, spec in UMFS_MUTANTS.items():
                print(f"{name:28} class {spec.bug_class:2}  {spec.description}")
            return 0
        if args.mutant not in UMFS_MUTANTS:
            sys.stderr.write(f"memoracle: unknown mutant {args.mutant!r} (see --list-mutants)\n")
            return 2
    try:
        shard = _parse_shard(args.shard)
        if args.ops < 1 or args.images < 1 or args.jobs < 1 or args.examples < 1:
            raise ValueError("--ops, --images, --jobs and --examples must be positive")
    except ValueError as error:
        sys.stderr.write(f"memoracle: {error}\n")
        return 2
    config = CampaignConfig(
        max_ops=args.ops,
        mode=PersistMode.EADR if args.eadr else PersistMode.ADR,
        image_limit=args.images,
        every_store=args.every_store,
        recovery_crashes=not args.no_recovery_crashes,
        seed=args.seed,
        mutant=args.mutant,
    )
    if args.flush_report:
        return _flush_report(config, args)
    if args.fuzz:
        return _fuzz(config, args)
    return _exhaustive(config, args, shard)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _exhaustive(config: CampaignConfig, args: argparse.Namespace, shard: tuple[int, int] | None) -> int:
    total = count_workloads(config.max_ops, shard)
    started = time.perf_counter()
    with _progress(not args.json) as progress:
        task = progress.add_task(f"crash umfs --ops {config.max_ops}", total=total)
        stats, results = run_campaign(
            config, jobs=args.jobs, shard=shard, progress=lambda n: progress.advance(task, n)
        )
    wall = time.perf_counter() - started
    violations = [v for r in results for v in r.violations]
    reports = [text for r in results for text in r.reports]
    counts = stats.as_json()
    counts["wall_seconds"] = round(wall, 3)
    counts["images_per_second"] = round(stats.images / wall, 1) if wall else 0.0
    if args.json:
        print(json.dumps({"variant": config.variant().name, "mode": config.mode.value, "stats": counts,
                          "violations": violations}, indent=2))  # fmt: skip
    else:
        console = Console()
        table = Table(title=f"crash umfs --ops {config.max_ops} ({config.mode.value}, {config.variant().name})")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in counts.items():
            table.add_row(key.replace("_", " "), str(value))
        console.print(table)
        for text in reports[:5]:
            console.print(text, markup=False, highlight=False)
        if len(reports) > 5:
            console.print(f"… and {len(reports) - 5} more violations (use --json for all)")
        if reports:
            console.print(
                f"reproduce: memoracle crash umfs --ops {config.max_ops} --images {config.image_limit} "
                f"--seed {config.seed}{' --eadr' if args.eadr else ''}"
                f"{' --mutant ' + config.mutant if config.mutant else ''}",
                markup=False,
            )
    return 1 if violations else 0


def _fuzz(config: CampaignConfig, args: argparse.Namespace) -> int:
    stats, smallest, report = fuzz(config, args.examples, max_ops=max(args.ops, 4))
    if args.json:
        print(json.dumps({"variant": config.variant().name, "stats": stats.as_json(),
                          "smallest": None if smallest is None else [list(op) for op in smallest],
                          "report": report}, indent=2))  # fmt: skip
    else:
        Console().print(stats.as_json())
        if smallest is not None:
            print(report)
            print(f"reproduce: memoracle crash umfs --fuzz --examples {args.examples} --seed {config.seed}")
        else:
            print(f"no violation in {args.examples} fuzzed workloads")
    return 1 if smallest is not None else 0


def _flush_report(config: CampaignConfig, args: argparse.Namespace) -> int:
    """Drop each site's flushes in turn; a site whose removal stays correct is unneeded."""
    rows = []
    for site in SITES:
        row: dict[str, object] = {"site": site}
        for what in ("flush", "fence"):
            for mode in (PersistMode.ADR, PersistMode.EADR):
                variant_config = CampaignConfig(
                    max_ops=min(config.max_ops, 1), mode=mode, image_limit=config.image_limit,
                    recovery_crashes=False, seed=config.seed,
                    skip_flush=(site,) if what == "flush" else (),
                    skip_fence=(site,) if what == "fence" else (),
                )  # fmt: skip
                explorer = variant_config.explorer()
                row[f"{mode.value}_ok_without_{what}"] = not any(
                    explorer.explore(SETUP, ops) for ops in FLUSH_REPORT_WORKLOADS
                )
        rows.append(row)
    if args.json:
        print(json.dumps({"flush_report": rows}, indent=2))
    else:
        table = Table(title="Are UMFS's flushes and fences needed? (drop one site's, re-explore)")
        for column in ("persist site", "flush, ADR", "flush, eADR", "fence, ADR", "fence, eADR"):
            table.add_column(column)
        for row in rows:
            cells = [
                "unneeded" if row[f"{mode}_ok_without_{what}"] else "needed"
                for what in ("flush", "fence")
                for mode in ("adr", "eadr")
            ]
            table.add_row(str(row["site"]), *cells)
        Console().print(table)
    return 0
