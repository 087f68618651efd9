"""The ``memoracle ksm ...`` commands: capture a real corpus, describe it, study it.

- ``ksm capture --processes N --output FILE [--workload W] [--modules a,b] [--max-pages N]
  [--aslr]``: start N real processes doing the same work, read their resident anonymous
  pages, write a corpus file (:mod:`memoracle.ksm.corpus`).
- ``ksm info FILE [--json]``: what a corpus holds.
- ``ksm study FILE [--json] [--max-page-sharing M] [--use-zero-pages] [--max-scans S]``:
  merge the corpus with the implementation, with and without lookahead, and report
  sharing against the ideal and comparisons (:mod:`memoracle.ksm.study`).

Exit codes: 0 = done and every check held, 1 = the study found a violation (contents
changed, lookahead merged different pages, the ideal not reached, the model disagrees),
2 = bad usage or a malformed or unreadable corpus (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from memoracle.ksm.corpus import (
    DEFAULT_MODULES,
    WORKLOADS,
    CaptureError,
    Corpus,
    CorpusFormatError,
    capture,
    read_corpus,
    write_corpus,
)

from memoracle.exitcodes import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``memoracle ksm`` and its sub-commands on ``sub``."""
    ksm = sub.add_parser("ksm", help="KSM on real data: capture a corpus, study merging and lookahead")
    commands = ksm.add_subparsers(dest="ksm_command", required=True, parser_class=type(ksm))

    grab = commands.add_parser("capture", help="capture the anonymous pages of real processes")
    grab.add_argument("--processes", type=int, default=4, help="processes to start (default 4)")
    grab.add_argument("--output", required=True, help="the corpus file to write")
    grab.add_argument("--workload", default="python-imports", help=f"one of {', '.join(WORKLOADS)}")
    grab.add_argument(
        "--modules", default=",".join(DEFAULT_MODULES), help="comma-separated standard modules to import"
    )
    grab.add_argument("--max-pages", type=int, help="keep at most N pages per process (the first ones)")
    grab.add_argument("--aslr", action="store_true", help="keep address-space randomisation in the children")
    grab.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the processes")
    grab.set_defaults(func=cmd_capture)

    info = commands.add_parser("info", help="describe a corpus file")
    info.add_argument("corpus", help="a file written by 'memoracle ksm capture'")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    study = commands.add_parser("study", help="merge a corpus with and without lookahead")
    study.add_argument("corpus", help="a file written by 'memoracle ksm capture'")
    study.add_argument("--json", action="store_true", help="print JSON")
    study.add_argument("--max-page-sharing", type=int, default=256, help="the knob (default 256)")
    study.add_argument("--use-zero-pages", action="store_true", help="merge zero pages with the zero page")
    study.add_argument("--max-scans", type=int, default=10, help="full scans allowed to settle (default 10)")
    study.add_argument("--no-model", action="store_true", help="skip the model's prediction")
    study.set_defaults(func=cmd_study)


def _fail(message: str) -> int:
    sys.stderr.write(f"memoracle: {message}\n")
    return EXIT_USAGE


def _load(path_text: str) -> Corpus:
    path = Path(path_text)
    try:
        return read_corpus(path)
    except CorpusFormatError as error:
        raise CorpusFormatError(f"{path}: {error}") from None
    except OSError as error:
        raise CorpusFormatError(f"{path}: {error.strerror or error}") from None


def cmd_capture(args: argparse.Namespace) -> int:
    """Capture a corpus and write it."""
    modules = [name.strip() for name in args.modules.split(",") if name.strip()]
    if args.timeout <= 0:
        return _fail("--timeout must be positive")
    output = Path(args.output)
    if not output.parent.is_dir():
        return _fail(f"{args.output}: no such directory {str(output.parent)!r}")
    try:
        with Console(stderr=True).status(f"capturing {args.processes} processes…"):
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
    from memoracle.ksm.study import MIN_SCANS, study_corpus

    if args.max_page_sharing < 2:
        return _fail("--max-page-sharing must be at least 2")
    if args.max_scans < MIN_SCANS:
        return _fail(f"--max-scans must be at least {MIN_SCANS}")
    try:
        corpus = _load(args.corpus)
    except CorpusFormatError as error:
        return _fail(str(error))
    try:
        with Console(stderr=True).status("merging the corpus, without and with lookahead…"):
            report = study_corpus(
                corpus,
                max_page_sharing=args.max_page_sharing,
                use_zero_pages=args.use_zero_pages,
                max_scans=args.max_scans,
                with_model=not args.no_model,
            )
    except CorpusFormatError as error:
        return _fail(f"{args.corpus}: {error}")
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        return EXIT_OK if report.ok else EXIT_VIOLATION
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
    return EXIT_OK if report.ok else EXIT_VIOLATION
