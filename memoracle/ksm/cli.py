"""The ``memoracle ksm ...`` commands: capture a real corpus, describe it, study it.

- ``ksm capture --processes N --output FILE [--workload W] [--modules a,b] [--max-pages N]
  [--aslr]``: start N real processes doing the same work, read their resident anonymous
  pages, write a corpus file (:mod:`memoracle.ksm.corpus`).
- ``ksm info FILE [--json]``: what a corpus holds.
- ``ksm study FILE [--json] [--max-page-sharing M] [--use-zero-pages] [--max-scans S]``:
  merge the corpus with the implementation, with and without lookahead, and report
  sharing against the ideal and comparisons (:mod:`memoracle.ksm.study`).
- ``ksm campaign [--seed S] [--runs N] [--steps K] [--mutant M] [--jobs N | --cluster A]``:
  the lockstep campaign over many seeds (:mod:`memoracle.ksm.campaign`).

Exit codes: 0 = done and every check held, 1 = the study found a violation (contents
changed, lookahead merged different pages, the ideal not reached, the model disagrees),
2 = bad usage or a malformed or unreadable corpus (one line on stderr), 3 = a run was
still merging after ``--max-scans`` full scans (no verdict on what it had not reached).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from memoracle.ksm.study import StudyReport
from memoracle.ksm.corpus import (
    DEFAULT_MODULES,
    WORKLOADS,
    CaptureError,
    Corpus,
    MAX_PAGES,
    CorpusFormatError,
    capture,
    read_corpus,
    write_corpus,
)

from memoracle.arguments import add_subcommands, input_file, int_in, output_file, positive_seconds
from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.progress import Progress, verdict_line

#: The most processes ``ksm capture`` starts at once.
MAX_CAPTURE_PROCESSES = 64


def add_commands(sub: Any) -> None:
    """Register ``memoracle ksm`` and its sub-commands on ``sub``."""
    from memoracle.ksm.study import MIN_SCANS

    ksm = sub.add_parser("ksm", help="KSM: lockstep campaigns; real data: capture a corpus, study merging and lookahead")
    commands = add_subcommands(ksm, "ksm_command", "capture, info, study, live, paper, report or campaign")

    grab = commands.add_parser("capture", help="capture the anonymous pages of real processes")
    grab.add_argument(
        "--processes", type=int_in(1, MAX_CAPTURE_PROCESSES), default=4, help="processes to start"
    )
    grab.add_argument("--output", type=output_file, required=True, help="the corpus file to write")
    grab.add_argument("--workload", choices=WORKLOADS, default="python-imports", help="what the processes do")
    grab.add_argument(
        "--modules", default=",".join(DEFAULT_MODULES), help="comma-separated standard modules to import"
    )
    grab.add_argument(
        "--max-pages", type=int_in(1, MAX_PAGES), help="keep at most N pages per process (the first ones; default all)"
    )
    grab.add_argument("--aslr", action="store_true", help="keep address-space randomisation in the children")
    grab.add_argument("--timeout", type=positive_seconds, default=60.0, help="seconds to wait for the processes")
    grab.set_defaults(func=cmd_capture)

    info = commands.add_parser("info", help="describe a corpus file")
    info.add_argument("corpus", type=input_file, help="a file written by 'memoracle ksm capture'")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    study = commands.add_parser("study", help="merge a corpus with and without lookahead")
    study.add_argument("corpus", type=input_file, help="a file written by 'memoracle ksm capture'")
    study.add_argument("--json", action="store_true", help="print JSON")
    study.add_argument("--max-page-sharing", type=int_in(2, 1 << 30), default=256, help="the knob")
    study.add_argument("--use-zero-pages", action="store_true", help="merge zero pages with the zero page")
    study.add_argument(
        "--max-scans", type=int_in(MIN_SCANS, 1_000), default=10,
        help="full scans allowed to settle; a run still merging after them is inconclusive (exit 3)",
    )  # fmt: skip
    study.add_argument("--no-model", action="store_true", help="skip the model's prediction")
    study.set_defaults(func=cmd_study)

    from memoracle.ksm.campaign import add_command as add_campaign
    from memoracle.ksm.live_cli import add_live_command
    from memoracle.ksm.paper_cli import add_paper_commands

    add_live_command(commands)
    add_paper_commands(commands)
    add_campaign(commands)  # ksm campaign


def _fail(message: str) -> int:
    sys.stderr.write(f"memoracle: {message}\n")
    return EXIT_USAGE


def _load(path: Path) -> Corpus:
    try:
        return read_corpus(path)
    except CorpusFormatError as error:
        raise CorpusFormatError(f"{path}: {error}") from None
    except OSError as error:
        raise CorpusFormatError(f"{path}: {error.strerror or error}") from None


def cmd_capture(args: argparse.Namespace) -> int:
    """Capture a corpus and write it."""
    modules = [name.strip() for name in args.modules.split(",") if name.strip()]
    try:
        with Progress(None, f"capturing {args.processes} processes", unit="corpora"):
            corpus, stats = capture(
                args.processes,
                workload=args.workload,
                modules=modules,
                max_pages=args.max_pages,
                aslr=args.aslr,
                timeout=args.timeout,
            )
        size = write_corpus(Path(args.output), corpus)
    except (ValueError, CaptureError) as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"{args.output}: {error.strerror or error}")
    notes = []
    if stats.unreadable_pages:
        notes.append(f"{stats.unreadable_pages} unreadable pages left out")
    if stats.capped_pages:
        notes.append(f"{stats.capped_pages} pages over --max-pages left out")
    if not stats.pagemap_used:
        notes.append("pagemap unreadable: every page of each region was read")
    if not args.aslr and not stats.aslr_disabled:
        notes.append("ASLR could not be switched off")
    print(
        f"captured {len(corpus.processes)} processes, {corpus.pages} pages "
        f"({', '.join(map(str, stats.per_process))} per process) in {stats.regions} regions, "
        f"{len(corpus.contents)} distinct contents -> {args.output} ({size / 1024:.0f} KiB, {stats.seconds:.1f} s)"
        + (f"; {'; '.join(notes)}" if notes else "")
    )
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a corpus."""
    try:
        corpus = _load(args.corpus)
    except CorpusFormatError as error:
        return _fail(str(error))
    copies = corpus.copies()
    summary = {
        "workload": corpus.workload,
        "page_size": corpus.page_size,
        "processes": len(corpus.processes),
        "pages": corpus.pages,
        "pages_per_process": [len(p.addresses) for p in corpus.processes],
        "distinct_contents": len(corpus.contents),
        "contents_in_one_copy": sum(1 for n in copies if n == 1),
        "most_copies": max(copies, default=0),
        "zero_pages": sum(n for content, n in zip(corpus.contents, copies) if not any(content)),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:22} {value}")
    return EXIT_OK


def _by_scan(counts: tuple[int, ...]) -> str:
    return " / ".join(str(count) for count in counts)


def cmd_study(args: argparse.Namespace) -> int:
    """Run the lookahead study on a corpus."""
    from memoracle.ksm.study import study_corpus

    try:
        corpus = _load(args.corpus)
    except CorpusFormatError as error:
        return _fail(str(error))
    started = time.perf_counter()
    try:
        with Progress(None, "merging the corpus, without and with lookahead", unit="runs"):
            report = study_corpus(
                corpus,
                max_page_sharing=args.max_page_sharing,
                use_zero_pages=args.use_zero_pages,
                max_scans=args.max_scans,
                with_model=not args.no_model,
            )
    except CorpusFormatError as error:
        return _fail(f"{args.corpus}: {error}")
    code = _study_exit_code(report)
    runs = (report.stock, report.lookahead)
    line = verdict_line(
        len(report.problems) if code == EXIT_VIOLATION else 0,
        [(report.pages, "page"), (sum(run.scans for run in runs), "full scan")],
        time.perf_counter() - started,
        inconclusive=f"still merging after --max-scans {args.max_scans}" if code == EXIT_INCONCLUSIVE else None,
    )
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        print(line, file=sys.stderr)
        return code
    table = Table(title=f"KSM study: {report.workload}")
    table.add_column("figure")
    table.add_column("stock", justify="right")
    table.add_column("lookahead", justify="right")
    stock, ahead = report.stock, report.lookahead
    rows = [
        ("pages (processes)", f"{report.pages} ({report.processes})", ""),
        ("distinct contents", str(report.distinct_contents), ""),
        ("ideal shared / sharing", f"{report.ideal.pages_shared} / {report.ideal.pages_sharing}", ""),
        ("ideal saving (pages)", str(report.ideal.saving), ""),
        ("pages_shared", str(stock.pages_shared), str(ahead.pages_shared)),
        ("pages_sharing", str(stock.pages_sharing), str(ahead.pages_sharing)),
        ("ksm_zero_pages", str(stock.ksm_zero_pages), str(ahead.ksm_zero_pages)),
        ("sharing_vs_ideal", f"{report.sharing_vs_ideal:.4f}", f"{report.sharing_vs_ideal_lookahead:.4f}"),
        ("settled after (full scans)", str(stock.settled_after), str(ahead.settled_after)),
        ("comparisons", str(stock.comparisons), str(ahead.comparisons)),
        ("comparisons per scanned page", f"{stock.comparisons_per_page:.3f}", f"{ahead.comparisons_per_page:.3f}"),
        ("lookahead hits", "", str(ahead.lookahead_hits)),
        ("comparisons by full scan", _by_scan(stock.comparisons_by_scan), _by_scan(ahead.comparisons_by_scan)),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    print(f"comparisons measured over {stock.measured_scans} full scans ({stock.scanned_pages} scanned pages)")
    print(
        f"lookahead saving: {report.lookahead_saving:.1%} of comparisons eliminated "
        f"({report.merging_saving:.1%} in the {report.merging_scans} merging scan(s) alone)"
    )
    print(f"paper's claim (up to one third): {report.verdict}")
    if report.model is None:
        print("model: no prediction (model not run)")
    else:
        model = report.model
        agrees = (model.pages_shared, model.pages_sharing) == (stock.pages_shared, stock.pages_sharing)
        print(
            f"model predicts shared/sharing {model.pages_shared}/{model.pages_sharing}: "
            + ("agrees" if agrees else "DISAGREES")
        )
    for problem in report.problems:
        console.print(f"[bold red]violation[/]: {problem}")
    if report.ok:
        print("checks: contents intact, same merges with lookahead, ideal reached")
    print(line)
    return code


def _study_exit_code(report: StudyReport) -> int:
    """1 if a page lost its contents, or if every run settled and a check failed; 3 if a
    run had not settled (what it had not reached yet is no violation); else 0."""
    runs = (report.stock, report.lookahead)
    if any(not run.intact for run in runs):
        return EXIT_VIOLATION
    if any(run.settled_after is None for run in runs):
        return EXIT_INCONCLUSIVE
    return EXIT_OK if report.ok else EXIT_VIOLATION
