"""``python -m proofs [PATTERN ...] [--timeout S] [--json] [--list]``.

Proves the registered theorems (those matching the shell-style patterns, or all), prints
a table and every counterexample. Exit code 0 iff every result is the expected one
(theorems proved, mutants refuted); 1 if a theorem was refuted or a mutant proved;
3 if no result was wrong but the solver gave up on some (``unknown``: the timeout ran
out, inconclusive); 2 for bad usage. (The codes are ``memoracle``'s; ``proofs`` imports
only ``spec``, so they are repeated here.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from proofs import DEFAULT_TIMEOUT_SECONDS, print_results, prove_all, select_theorems

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number of seconds, not {text!r}") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, not {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m proofs",
        description="Prove the registered theorems (all, or those matching the patterns) and "
        "check that every mutant is refuted. Exit 0 iff every result is the expected one.",
    )
    parser.add_argument("patterns", nargs="*", metavar="PATTERN", help="theorem names (globs)")
    parser.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT_SECONDS,
        help=f"solver seconds per theorem (default {DEFAULT_TIMEOUT_SECONDS:g})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--list", action="store_true", help="list the theorems and stop")
    args = parser.parse_args(argv)
    patterns = args.patterns or None
    try:
        selected = select_theorems(patterns)
    except LookupError as error:
        print(f"proofs: {error.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        return _emit(lambda: [print(f"{t.name}  [expect {t.expect}]\n    {t.statement}") for t in selected], EXIT_OK)
    results = prove_all(patterns, timeout_seconds=args.timeout)
    if any(result.status not in (result.expect, "unknown") for result in results):
        verdict = EXIT_VIOLATION
    else:
        verdict = EXIT_INCONCLUSIVE if any(result.status == "unknown" for result in results) else EXIT_OK
    if args.json:
        return _emit(lambda: print(json.dumps({"proofs": [result.as_dict() for result in results]}, indent=2)), verdict)
    return _emit(lambda: print_results(results), verdict)


def _emit(write: Callable[[], object], verdict: int) -> int:
    """Run ``write`` and flush: a reader that went away is quiet (the verdict stands), any
    other output error is one line on stderr and exit 2."""
    try:
        write()
        sys.stdout.flush()
    except OSError as error:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's last flush is quiet
        os.close(devnull)
        if isinstance(error, BrokenPipeError):
            return verdict
        print(f"proofs: cannot write standard output: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    return verdict


if __name__ == "__main__":
    sys.exit(main())
