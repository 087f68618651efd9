"""``python -m proofs [PATTERN ...] [--timeout S] [--json] [--list]``.

Proves the registered theorems (those matching the shell-style patterns, or all), prints
a table and every counterexample. Exit code 0 iff every result is the expected one
(theorems proved, mutants refuted); 1 otherwise; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from proofs import DEFAULT_TIMEOUT_SECONDS, print_results, prove_all, select_theorems


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m proofs",
        description="Prove the registered theorems (all, or those matching the patterns) and "
        "check that every mutant is refuted. Exit 0 iff every result is the expected one.",
    )
    parser.add_argument("patterns", nargs="*", metavar="PATTERN", help="theorem names (globs)")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds per theorem"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--list", action="store_true", help="list the theorems and stop")
    args = parser.parse_args(argv)
    patterns = args.patterns or None
    try:
        selected = select_theorems(patterns)
    except LookupError as error:
        print(f"proofs: {error.args[0]}", file=sys.stderr)
        return 2
    if args.list:
        for theorem in selected:
            print(f"{theorem.name}  [expect {theorem.expect}]\n    {theorem.statement}")
        return 0
    results = prove_all(patterns, timeout_seconds=args.timeout)
    if args.json:
        print(json.dumps({"proofs": [result.as_dict() for result in results]}, indent=2))
    else:
        print_results(results)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
