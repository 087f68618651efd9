"""``memoracle ksm paper …`` and ``memoracle ksm report``: the paper's experiments.

- ``ksm paper lookahead [--processes N] [--pages N] [--seed N] [--json]``: lookahead's
  saving of comparisons on guest-like memory, the merged set unchanged (the paper: up to
  one third);
- ``ksm paper exclusive-cache …``: double-cached pages and memory saved without and with
  the exclusive host cache, and its scanning overhead (the paper's Exp 6/7);
- ``ksm paper page-cache …``: comparisons saved against sharing lost when guest
  page-cache pages are skipped;
- ``ksm report --output DIR …``: the three PNG plots of :mod:`memoracle.ksm.report`.

Each captures guest-like processes first (:mod:`memoracle.ksm.guest`). Exit codes: 0 =
measured and every check held; 1 = a check failed (a page changed, lookahead merged
different pages, the exclusive cache dropped a page no guest holds or kept a
double-cached one once settled, skipping gained sharing); 2 = bad usage or the capture
cannot run here (one line); 3 = interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from memoracle.arguments import add_subcommands, int_in, output_directory, prepare_directory, seed
from memoracle.exitcodes import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.progress import Progress, verdict_line

EXPERIMENTS = ("lookahead", "exclusive-cache", "page-cache")


def _capture_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int_in(2, 32), default=4, help="guest-like processes")
    parser.add_argument("--pages", type=int_in(64, 100_000), default=1500, help="pages per process (about)")
    parser.add_argument("--seed", type=seed, default=0, help="which files each guest keeps, its private pages")


def add_paper_commands(commands: Any) -> None:
    """Register ``ksm paper`` and ``ksm report`` on the ``ksm`` sub-command group."""
    paper = commands.add_parser("paper", help="the paper's experiments on guest-like memory")
    experiments = add_subcommands(paper, "paper_command", ", ".join(EXPERIMENTS))
    for name, text in (("lookahead", "comparisons saved by lookahead (the paper: up to one third)"),
                       ("exclusive-cache", "double caching and memory saved by the exclusive host cache"),
                       ("page-cache", "comparisons saved vs sharing lost by skipping guest page-cache pages")):  # fmt: skip
        command = experiments.add_parser(name, help=text)
        _capture_options(command)
        command.add_argument("--json", action="store_true", help="print JSON")
        command.set_defaults(func=cmd_paper, experiment=name)
    report = commands.add_parser("report", help="PNG plots of the paper's experiments")
    report.add_argument("--output", type=output_directory, default=Path("."), help="directory for the PNG files")
    _capture_options(report)
    report.set_defaults(func=cmd_report)


def _capture(args: argparse.Namespace) -> Any:
    from memoracle.ksm.corpus import CaptureError
    from memoracle.ksm.guest import capture_guests

    try:
        with Progress(None, f"capturing {args.processes} guest-like processes", unit="captures"):
            return capture_guests(args.processes, args.pages, seed=args.seed)
    except (CaptureError, OSError, ValueError) as error:
        sys.stderr.write(f"memoracle: ksm: cannot capture guest-like processes here: {error}\n")
        return None


def cmd_paper(args: argparse.Namespace) -> int:
    """Run one experiment (see the module docstring)."""
    from memoracle.ksm import paper

    started = time.monotonic()
    capture = _capture(args)
    if capture is None:
        return EXIT_USAGE
    what = f"{len(capture.corpus.processes)} guests, {capture.corpus.pages:,} pages, {len(capture.files)} files, seed {args.seed}"
    problems: list[str] = []
    with Progress(None, f"ksm paper {args.experiment}", unit="runs", enabled=not args.json):
        if args.experiment == "lookahead":
            study = paper.lookahead_experiment(capture)
            problems = list(study.problems)
            data: dict[str, object] = {
                "lookahead_saving": round(study.lookahead_saving, 6), "merging_scans_saving": round(study.merging_saving, 6),
                "comparisons_stock": study.stock.comparisons, "comparisons_lookahead": study.lookahead.comparisons,
                "comparisons_by_scan_stock": list(study.stock.comparisons_by_scan),
                "comparisons_by_scan_lookahead": list(study.lookahead.comparisons_by_scan),
                "lookahead_hits": study.lookahead.lookahead_hits, "pages_sharing": study.stock.pages_sharing,
                "claim": study.verdict,
            }  # fmt: skip
            lines = [f"lookahead saving: {study.lookahead_saving:.1%} of comparisons over {study.stock.measured_scans} "
                     f"full scans ({study.merging_saving:.1%} in the merging scan); the paper: up to one third",
                     f"comparisons {study.stock.comparisons:,} stock, {study.lookahead.comparisons:,} with lookahead "
                     f"({study.lookahead.lookahead_hits:,} merges found by one comparison); pages_sharing "
                     f"{study.stock.pages_sharing:,} either way"]  # fmt: skip
        elif args.experiment == "exclusive-cache":
            cache = paper.exclusive_cache_experiment(capture)
            data = cache.as_json()
            if cache.double_cached_after:
                problems.append(f"{cache.double_cached_after} double-cached host pages kept after settling")
            if cache.saved_pages > cache.double_cached_before:
                problems.append(f"{cache.saved_pages} host pages dropped, only {cache.double_cached_before} double-cached")
            lines = [f"host page cache: {cache.host_pages:,} pages, {cache.double_cached_before:,} double-cached "
                     f"(also in a guest); exclusive cache: {cache.double_cached_after} left, {cache.saved_pages:,} pages "
                     f"({cache.saved_pages * 4096 / 2**20:.1f} MiB) saved",
                     f"overhead: {cache.comparisons_on:,} comparisons instead of {cache.comparisons_off:,} "
                     f"over {len(cache.on.comparisons) - 1} full scans (+{cache.overhead:.1%})"]  # fmt: skip
        else:
            skip = paper.page_cache_experiment(capture)
            data = skip.as_json()
            if skip.saved_skip > skip.saved_stock:
                problems.append("skipping page-cache pages saved more pages than stock merging")
            lines = [f"skipping {skip.page_cache_pages:,} guest page-cache pages saves {skip.comparisons_saved:.1%} of "
                     f"comparisons ({skip.comparisons_stock:,} -> {skip.comparisons_skip:,}) and loses "
                     f"{skip.sharing_lost:.1%} of the sharing ({skip.saved_stock:,} -> {skip.saved_skip:,} pages saved)"]  # fmt: skip
    line = verdict_line(len(problems), [(capture.corpus.pages, "page")], time.monotonic() - started)
    if args.json:
        print(json.dumps({"experiment": args.experiment, "capture": what, **data, "problems": problems}, indent=2))
        sys.stderr.write(line + "\n")
    else:
        print(f"ksm paper {args.experiment}: {what}")
        for text in lines + [f"violation: {p}" for p in problems]:
            print(text)
        print(line)
    return EXIT_VIOLATION if problems else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the PNG plots."""
    from memoracle.ksm import paper
    from memoracle.ksm.report import write_plots

    started = time.monotonic()
    problem = prepare_directory(args.output)
    if problem is not None:
        sys.stderr.write(f"memoracle: ksm report: {problem}\n")
        return EXIT_USAGE
    capture = _capture(args)
    if capture is None:
        return EXIT_USAGE
    with Progress(None, "ksm report: scanning stock, with lookahead, with the exclusive cache", unit="runs"):
        stock = paper.scan_series(capture)
        ahead = paper.scan_series(capture, lookahead=True)
        cache = paper.exclusive_cache_experiment(capture)
    try:
        paths = write_plots(args.output, capture, stock, ahead, cache)
    except OSError as error:
        sys.stderr.write(f"memoracle: ksm report: {args.output}: {error.strerror or error}\n")
        return EXIT_USAGE
    problems = [] if stock.pages_sharing == ahead.pages_sharing else ["lookahead changed pages_sharing"]
    for path in paths:
        print(path)
    for problem in problems:
        print(f"violation: {problem}")
    print(verdict_line(len(problems), [(len(paths), "plot"), (capture.corpus.pages, "page")], time.monotonic() - started))
    return EXIT_VIOLATION if problems else EXIT_OK
