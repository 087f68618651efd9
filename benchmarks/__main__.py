"""``python -m benchmarks``: measure every figure, print the table, write the JSON.

``make bench`` runs this from a source checkout. The benchmarks import memoracle, never
the other way round, and are not installed with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from benchmarks import SYSTEMS, run_benchmarks
from benchmarks.common import Figure
from memoracle.arguments import Parser, check_writable, output_file
from memoracle.exitcodes import EXIT_OK, EXIT_USAGE
from memoracle.output import OutputError, guarded_stdout


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks, print the table and write ``bench-results.json`` (whose
    directory is checked first, before minutes of measuring)."""
    problem = check_writable(args.output)
    if problem is not None:
        sys.stderr.write(f"benchmarks: {problem}\n")
        return EXIT_USAGE
    only = set(args.only) if args.only else None
    figures = run_benchmarks(quick=args.quick, only=only)
    print_figures(figures)
    out: Path = args.output
    try:
        out.write_text(json.dumps(figures, indent=2) + "\n")
    except OSError as error:
        sys.stderr.write(f"benchmarks: {out}: {error.strerror or error}\n")
        return EXIT_USAGE
    print(f"wrote {out}")
    return EXIT_OK


def print_figures(figures: Sequence[Figure]) -> None:
    """The table of figures on stdout; a figure's name is never cut (on a terminal the
    other columns give way; in a pipe or a file the table is as wide as it needs)."""
    table = Table(title="memoracle bench")
    longest = max((len(f["name"]) for f in figures), default=6)
    table.add_column("figure", no_wrap=True, min_width=longest)
    for column in ("value", "unit", "baseline", "ratio"):
        table.add_column(column, justify="left" if column == "unit" else "right", no_wrap=True)
    for f in figures:
        table.add_row(
            f["name"],
            f"{f['value']:.4g}",
            str(f["unit"]),
            f"{f['baseline']:.4g}" if "baseline" in f else "",
            f"{f['ratio']:.4g}" if "ratio" in f else "",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, longest + 60))
    console.print(table)


def _system(name: str) -> str:
    if name not in SYSTEMS:
        raise argparse.ArgumentTypeError(f"unknown system {name!r} (known: {', '.join(SYSTEMS)})")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the benchmarks."""
    parser = Parser(prog="python -m benchmarks", description="measure speed against baselines in the same run")
    parser.add_argument(
        "--output", type=output_file, default=Path("bench-results.json"), help="where to write figures"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--only", action="append", type=_system, help="only this system's figures (repeatable; default all)"
    )
    try:
        with guarded_stdout():
            try:
                args = parser.parse_args(argv)
            except SystemExit as stop:
                return stop.code if isinstance(stop.code, int) else EXIT_USAGE
            return run(args)
    except OutputError as error:
        sys.stderr.write(f"benchmarks: {error}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
