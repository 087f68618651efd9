"""``python -m benchmarks``: measure every figure, print the table, write the JSON.

``make bench`` runs this from a source checkout. The benchmarks import memoracle, never
the other way round, and are not installed with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from rich.console import Console
from rich.table import Table

from benchmarks import SYSTEMS, run_benchmarks
from memoracle.exitcodes import EXIT_OK, EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"benchmarks: {message} (see 'python -m benchmarks --help')\n")
        raise SystemExit(EXIT_USAGE)


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks, print the table and write ``bench-results.json``."""
    only = set(args.only) if args.only else None
    if only is not None and not only <= set(SYSTEMS):
        sys.stderr.write(f"benchmarks: unknown system {', '.join(sorted(only - set(SYSTEMS)))}\n")
        return EXIT_USAGE
    figures = run_benchmarks(quick=args.quick, only=only)
    table = Table(title="memoracle bench")
    for column in ("figure", "value", "unit", "baseline", "ratio"):
        table.add_column(column, justify="left" if column in ("figure", "unit") else "right")
    for f in figures:
        table.add_row(
            f["name"],
            f"{f['value']:.4g}",
            str(f["unit"]),
            f"{f['baseline']:.4g}" if "baseline" in f else "",
            f"{f['ratio']:.4g}" if "ratio" in f else "",
        )
    Console().print(table)
    out = Path(args.output)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the benchmarks."""
    parser = _Parser(prog="python -m benchmarks", description="measure speed against baselines in the same run")
    parser.add_argument("--output", default="bench-results.json", help="where to write figures (default bench-results.json)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", action="append", help="only this system's figures (repeatable; default all)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
