"""The ``memoracle`` command.

Exit codes everywhere (:mod:`memoracle.exitcodes`): 0 = everything checked holds,
1 = a violation was found, 2 = bad usage or bad input (one line on stderr, never a
traceback), 3 = inconclusive (a budget or a timeout ran out before a verdict).

Every command validates its options while parsing (:mod:`memoracle.arguments`), shows
progress on stderr for long work (:mod:`memoracle.progress`), ends a check with one
verdict line, and treats its standard output as :mod:`memoracle.output` says: a reader
that went away is quiet (the exit code is still the verdict), a full disk is exit 2.
Ctrl-C stops a command with one line and exit 3: it ended before its verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from memoracle.arguments import (
    Parser,
    add_subcommands,
    input_file,
    non_negative_seconds,
    output_directory,
    positive_seconds,
    prepare_directory,
    seed,
)
from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.output import OutputError, guarded_stdout, one_line, one_line_stderr
from memoracle.progress import Progress, verdict_line


def _status(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[bold red]FAIL[/bold red]"


def _usage(message: str) -> int:
    sys.stderr.write(f"memoracle: {message}\n")
    return EXIT_USAGE


def print_verdict(line: str, json_on_stdout: bool) -> None:
    """Print a command's last line: on stdout, or on stderr when stdout carries JSON."""
    print(line, file=sys.stderr if json_on_stdout else sys.stdout)


def cmd_check(args: argparse.Namespace) -> int:
    """Run the default campaign over every system and print what was checked."""
    from memoracle.check_types import CheckResult
    from memoracle.checks import CHECKS, run_checks

    systems = {c.system for c in CHECKS}
    only = set(args.system) if args.system else None
    if only is not None and not only <= systems:
        unknown = ", ".join(sorted(only - systems))
        return _usage(f"unknown system {unknown} (known: {', '.join(sorted(systems))})")
    selected = [c for c in CHECKS if only is None or c.system in only]
    if args.seed is None:
        from_env = os.environ.get("MEMORACLE_SEED", "0")
        try:
            args.seed = seed(from_env)
        except argparse.ArgumentTypeError as error:
            return _usage(f"MEMORACLE_SEED: {error}")
    started = time.perf_counter()
    with Progress(len(selected), "memoracle check", unit="checks") as progress:

        def done(result: CheckResult) -> None:
            progress.advance(1, violations=(progress.violations or 0) + (not result.ok))

        results = run_checks(
            args.seed, only, on_start=lambda c: progress.describe(f"check {c.system} / {c.name}"), on_done=done
        )
    failed = sum(not r.ok for r in results)
    if args.json:
        print(json.dumps({"seed": args.seed, "checks": [r.as_json() for r in results]}, indent=2))
    else:
        table = Table(title=f"memoracle check (seed {args.seed})")
        for column in ("system", "check", "result", "count", "seconds"):
            table.add_column(column, justify="right" if column in ("count", "seconds") else "left")
        for r in results:
            table.add_row(r.system, r.check, _status(r.ok), f"{r.count:,}", f"{r.seconds:.2f}")
        console = Console()
        console.print(table)
        for r in results:
            if not r.ok:
                console.print(f"[bold red]{r.system} / {r.check}[/bold red]", markup=True)
                console.print(r.report, markup=False, highlight=False)
    seconds = time.perf_counter() - started
    print_verdict(verdict_line(failed, [(len(results), "check")], seconds, found="failed check"), args.json)
    return EXIT_OK if not failed else EXIT_VIOLATION


def cmd_proofs(args: argparse.Namespace) -> int:
    """Prove every theorem (and refute every mutant) and print the table.

    Exit 1 if a theorem was refuted or a mutant proved; else 3 if the solver gave up on
    any (``unknown``: the ``--timeout`` ran out); else 0."""
    from proofs import ProofResult, print_results, prove_all, select_theorems

    try:
        selected = select_theorems(args.only)
    except LookupError as error:
        return _usage(str(error.args[0]))
    started = time.perf_counter()
    with Progress(len(selected), "memoracle proofs", unit="theorems") as progress:

        def done(result: ProofResult) -> None:
            wrong = result.status not in (result.expect, "unknown")
            progress.advance(1, violations=(progress.violations or 0) + wrong)

        results = prove_all(args.only, timeout_seconds=args.timeout, on_result=done)
    if args.json:
        print(json.dumps({"proofs": [result.as_dict() for result in results]}, indent=2))
    else:
        print_results(results, Console())
    wrong = sum(r.status not in (r.expect, "unknown") for r in results)
    unknown = sum(r.status == "unknown" for r in results)
    reason = f"{unknown} of {len(results)} unknown within {args.timeout:g} s each" if unknown and not wrong else None
    seconds = time.perf_counter() - started
    print_verdict(verdict_line(wrong, [(len(results), "theorem")], seconds, inconclusive=reason), args.json)
    if wrong:
        return EXIT_VIOLATION
    return EXIT_INCONCLUSIVE if unknown else EXIT_OK


def cmd_contracts(args: argparse.Namespace) -> int:
    """Check the specs' contracts with CrossHair and report confirmed vs not."""
    from memoracle.contracts import run_crosshair

    targets = args.targets or [str(Path(__file__).resolve().parent.parent / "spec")]
    for target in targets:
        if not Path(target).exists():
            return _usage(f"no such file or directory: {target}")
    console = Console()
    started = time.perf_counter()
    with Progress(None, "CrossHair is searching for counterexamples", unit="files"):
        report = run_crosshair(targets, args.per_condition_timeout)
    table = Table(title="CrossHair over the specs' contracts (PEP 316)")
    for column in ("file", "line", "function", "verdict"):
        table.add_column(column)
    colour = {"confirmed": "green", "not confirmed": "yellow", "counterexample": "bold red"}
    for r in report.results:
        table.add_row(r.path, str(r.line), r.function, f"[{colour[r.status]}]{r.status}[/]")
    console.print(table)
    for r in report.results:
        if r.status == "counterexample":
            console.print(f"[bold red]{r.path}:{r.line} {r.function}[/]: {r.message}", markup=True)
    counts = {s: sum(r.status == s for r in report.results) for s in colour}
    console.print(
        f"{counts['confirmed']} confirmed over all paths, {counts['not confirmed']} searched "
        f"for {args.per_condition_timeout:g}s each without a counterexample (not a proof), "
        f"{counts['counterexample']} counterexamples"
    )
    if report.exit_code not in (0, 1) or (report.exit_code and not report.results):
        tail = report.stderr.splitlines()[-1:] or ["no message"]
        return _usage(f"CrossHair failed: {tail[0]}")
    if not report.results:
        return _usage(f"no PEP 316 contracts found in {', '.join(targets)}")
    seconds = time.perf_counter() - started
    print(verdict_line(counts["counterexample"], [(len(report.results), "postcondition")], seconds))
    return EXIT_OK if report.ok else EXIT_VIOLATION


def _results_file(text: str) -> Path:
    """``--results``: the default may be absent (then the report measures); a file
    named explicitly must exist."""
    return Path(text) if text == REPORT_RESULTS_DEFAULT else input_file(text)


REPORT_RESULTS_DEFAULT = "bench-results.json"


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report's pictures (checks the output directory before measuring)."""
    from memoracle.umfs.report import ResultsFormatError, read_open_figures, umfs_open_plot

    results: Path = args.results
    try:
        figures = read_open_figures(results) if results.exists() else None
    except ResultsFormatError as error:
        return _usage(f"{results}: not a bench-results file: {error}")
    except OSError as error:
        return _usage(f"{results}: {error.strerror or error}")
    problem = prepare_directory(args.output)
    if problem is not None:
        return _usage(problem)
    label = f"measuring UMFS open cost ({results} has no umfs.open_* figures)"
    with Progress(None, label, unit="plots", enabled=figures is None):
        path, source = umfs_open_plot(args.output, figures, f"from {results}, written by python -m benchmarks")
    print(f"wrote {path} ({source})")
    return EXIT_OK


def _version() -> str:
    try:
        return metadata.version("memoracle")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = Parser(
        prog="memoracle",
        description="Executable, formally checked reference specifications for UMFS, "
        "Sphinx and KSM, checked against implementations on an emulated machine. "
        "Exit codes: 0 holds, 1 violation, 2 bad usage or input, 3 inconclusive.",
    )
    parser.add_argument("--version", action="version", version=f"memoracle {_version()}")
    sub = add_subcommands(parser, "command", "run 'memoracle COMMAND --help' for a command's options")

    check = sub.add_parser("check", help="run the default campaign over every system")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument(
        "--seed", type=seed, default=None,
        help="base seed: each check runs on its own seeds derived from it (default: $MEMORACLE_SEED, else 0)",
    )
    check.add_argument("--system", action="append", help="only this system (repeatable; default: all)")
    check.set_defaults(func=cmd_check)

    proofs = sub.add_parser("proofs", help="prove the Z3 theorems and refute their mutants")
    proofs.add_argument(
        "--only", action="append", help="only theorems matching this pattern (repeatable; default: all)"
    )
    proofs.add_argument(
        "--timeout", type=non_negative_seconds, default=60.0,
        help="solver seconds per theorem; a theorem the solver gives up on is 'unknown' (exit 3)",
    )  # fmt: skip
    proofs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    proofs.set_defaults(func=cmd_proofs)

    contracts = sub.add_parser("contracts", help="check the specs' contracts with CrossHair")
    contracts.add_argument("targets", nargs="*", help="files or directories (default: spec/)")
    contracts.add_argument(
        "--per-condition-timeout", type=positive_seconds, default=2.0, help="seconds per postcondition"
    )
    contracts.set_defaults(func=cmd_contracts)

    from memoracle.umfs.cli import add_commands as add_crash_commands

    add_crash_commands(sub)  # crash umfs

    from memoracle.umfs.image_cli import add_commands as add_umfs_commands

    add_umfs_commands(sub)  # umfs mkfs|fsck|ls|cat

    report = sub.add_parser("report", help="write the report's pictures (PNG)")
    report.add_argument("--output", type=output_directory, default=Path("reports"), help="directory for the pictures")
    report.add_argument(
        "--results", type=_results_file, default=Path(REPORT_RESULTS_DEFAULT),
        help="figures to plot, as written by 'python -m benchmarks'; when the default file is "
        "absent the open cost is measured afresh (quick: up to 16 MiB)",
    )  # fmt: skip
    report.set_defaults(func=cmd_report)

    from memoracle.spsc.cli import add_commands as add_spsc_commands

    add_spsc_commands(sub)  # history check|record, interleave (SPSC)

    from memoracle.sphinx.cli import add_commands as add_sphinx_commands
    from memoracle.sphinx.kv_cli import add_commands as add_kv_commands

    add_sphinx_commands(sub)  # sphinx serve|...
    add_kv_commands(sub)  # kv check

    from memoracle.ksm.cli import add_commands as add_ksm_commands

    add_ksm_commands(sub)  # ksm capture|...
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: parse, run, map output errors and Ctrl-C.
    Always returns the exit code (also for ``--help``, ``--version`` and bad usage)."""
    try:
        with guarded_stdout(), one_line_stderr():
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as stop:  # --help, --version, or bad usage (already reported)
                return stop.code if isinstance(stop.code, int) else EXIT_OK if stop.code is None else EXIT_USAGE
            code: int = args.func(args)
    except OutputError as error:
        sys.stderr.write(one_line(f"memoracle: {error}\n"))
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("memoracle: interrupted before a verdict\n")
        return EXIT_INCONCLUSIVE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
