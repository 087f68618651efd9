"""The ``memoracle`` command.

Exit codes everywhere: 0 = everything checked holds, 1 = a violation was found,
2 = bad usage or bad input (with a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from rich.console import Console
from rich.table import Table

from memoracle.exitcodes import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage prints one line and exits 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"memoracle: {message} (see 'memoracle --help')\n")
        raise SystemExit(EXIT_USAGE)


def _status(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[bold red]FAIL[/bold red]"


def cmd_check(args: argparse.Namespace) -> int:
    """Run the default campaign over every system and print what was checked."""
    from memoracle.checks import CHECKS, run_checks

    systems = {c.system for c in CHECKS}
    only = set(args.system) if args.system else None
    if only is not None and not only <= systems:
        unknown = ", ".join(sorted(only - systems))
        sys.stderr.write(f"memoracle: unknown system {unknown} (known: {', '.join(sorted(systems))})\n")
        return EXIT_USAGE
    err = Console(stderr=True)
    if args.json:
        results = run_checks(args.seed, only)
    else:
        with err.status("checking…") as status:
            results = run_checks(
                args.seed, only, on_start=lambda c: status.update(f"checking {c.system} / {c.name}…")
            )
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"checks": [r.as_json() for r in results]}, indent=2))
    else:
        table = Table(title=f"memoracle check (seed {args.seed})")
        for column in ("system", "check", "result", "count", "seconds"):
            table.add_column(column, justify="right" if column in ("count", "seconds") else "left")
        for r in results:
            table.add_row(r.system, r.check, _status(r.ok), str(r.count), f"{r.seconds:.2f}")
        console = Console()
        console.print(table)
        for r in results:
            if not r.ok:
                console.print(f"[bold red]{r.system} / {r.check}[/bold red]\n{r.report}", markup=True)
    return EXIT_OK if ok else EXIT_VIOLATION


def cmd_proofs(args: argparse.Namespace) -> int:
    """Prove every theorem (and refute every mutant) and print the table."""
    from proofs import print_results, prove_all, select_theorems

    try:
        select_theorems(args.only)
    except LookupError as error:
        sys.stderr.write(f"memoracle: {error}\n")
        return EXIT_USAGE
    results = prove_all(args.only, timeout_seconds=args.timeout)
    print_results(results, Console())
    return EXIT_OK if all(r.ok for r in results) else EXIT_VIOLATION


def cmd_contracts(args: argparse.Namespace) -> int:
    """Check the specs' contracts with CrossHair and report confirmed vs not."""
    from memoracle.contracts import run_crosshair

    targets = args.targets or [str(Path(__file__).resolve().parent.parent / "spec")]
    for target in targets:
        if not Path(target).exists():
            sys.stderr.write(f"memoracle: no such file or directory: {target}\n")
            return EXIT_USAGE
    console = Console()
    with Console(stderr=True).status("CrossHair is searching for counterexamples…"):
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
        sys.stderr.write(f"memoracle: CrossHair failed: {report.stderr.splitlines()[-1:] or '?'}\n")
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_VIOLATION


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report's pictures."""
    from memoracle.umfs.report import umfs_open_plot

    results = Path(args.results)
    if args.results != "bench-results.json" and not results.exists():
        sys.stderr.write(f"memoracle: no such results file: {results}\n")
        return EXIT_USAGE
    try:
        path = umfs_open_plot(Path(args.output), results)
    except (ValueError, KeyError) as error:
        sys.stderr.write(f"memoracle: {results} is not a bench-results file: {error}\n")
        return EXIT_USAGE
    print(f"wrote {path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = _Parser(
        prog="memoracle",
        description="Executable, formally checked reference specifications for UMFS, "
        "Sphinx and KSM, checked against implementations on an emulated machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="run the default campaign over every system")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    check.add_argument("--system", action="append", help="only this system (repeatable)")
    check.set_defaults(func=cmd_check)

    proofs = sub.add_parser("proofs", help="prove the Z3 theorems and refute their mutants")
    proofs.add_argument(
        "--only", action="append", help="only theorems matching this pattern (repeatable)"
    )
    proofs.add_argument("--timeout", type=float, default=60.0, help="seconds per theorem")
    proofs.set_defaults(func=cmd_proofs)

    contracts = sub.add_parser("contracts", help="check the specs' contracts with CrossHair")
    contracts.add_argument("targets", nargs="*", help="files or directories (default: spec/)")
    contracts.add_argument(
        "--per-condition-timeout", type=float, default=2.0, help="seconds per postcondition"
    )
    contracts.set_defaults(func=cmd_contracts)

    from memoracle.umfs.cli import add_commands as add_crash_commands

    add_crash_commands(sub)  # crash umfs

    report = sub.add_parser("report", help="write the report's pictures (PNG)")
    report.add_argument("--output", default="reports", help="directory for the pictures")
    report.add_argument("--results", default="bench-results.json", help="figures to plot")
    report.set_defaults(func=cmd_report)

    from memoracle.spsc.cli import add_commands as add_spsc_commands

    add_spsc_commands(sub)  # history check|record, interleave (SPSC)

    from memoracle.sphinx.cli import add_commands as add_sphinx_commands

    add_sphinx_commands(sub)  # sphinx serve|...

    from memoracle.ksm.cli import add_commands as add_ksm_commands

    add_ksm_commands(sub)  # ksm capture|...
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
