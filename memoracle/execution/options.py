"""The execution options every campaign command shares, and running a campaign under them.

:func:`add_execution_options` adds, to a command's parser::

    --jobs N             shards on N local worker processes (default 1: in this process)
    --cluster ADDRESS    shards on a Dask cluster: tcp://HOST:8786, or local:N
    --journal FILE       write each finished shard to FILE as it arrives
    --resume FILE        continue the run journalled in FILE (same command)

and :func:`run_campaign` runs a :class:`~memoracle.execution.campaign.Campaign` under them
with one progress bar across all workers (shards done / total, violations so far, ETA;
a plain line every few seconds off a terminal). It returns the
:class:`~memoracle.execution.run.Execution`, or an exit code when the run could not go on:
2 with one line on stderr for a bad combination, an unreachable or lost scheduler, a
worker running other code or a journal of another run (the line says how to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from memoracle.arguments import usage_error
from memoracle.exitcodes import EXIT_USAGE
from memoracle.execution.backends import ExecutionError, SchedulerLost, Where, parse_where
from memoracle.execution.campaign import Campaign
from memoracle.execution.run import Execution, ShardOutcome, execute
from memoracle.progress import Progress

#: How many failing shards a command prints in full (the JSON lists all).
SHOWN_FAILURES = 5


def cluster_address(text: str) -> str:
    """``--cluster``: ``tcp://HOST:PORT`` or ``local:N``, checked while parsing."""
    try:
        parse_where(None, text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--cluster ")) from None
    return text


def shard_spec(text: str) -> tuple[int, int]:
    """``--shard i/N`` with ``0 <= i < N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants i/N (e.g. 3/8), not {text!r}") from None
    if not 0 <= index < count or count > 1 << 20:
        raise argparse.ArgumentTypeError(f"{text}: need 0 <= i < N <= {1 << 20}")
    return index, count


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--jobs``, ``--cluster``, ``--journal`` and ``--resume`` to ``parser``."""
    from memoracle.arguments import int_in, output_file
    from memoracle.execution.backends import MAX_LOCAL_WORKERS

    parser.add_argument(
        "--jobs", type=int_in(1, MAX_LOCAL_WORKERS), default=None,
        help="run the shards on N local worker processes (default 1: in this process)",
    )  # fmt: skip
    parser.add_argument(
        "--cluster", type=cluster_address, metavar="ADDRESS",
        help="run the shards on a Dask cluster: tcp://HOST:8786 (a running 'dask scheduler'), "
        "or local:N (a LocalCluster of N worker processes started for this run)",
    )  # fmt: skip
    parser.add_argument("--journal", type=output_file, metavar="FILE",
                        help="write each finished shard to FILE as it arrives (a new file), for --resume")  # fmt: skip
    parser.add_argument("--resume", type=Path, metavar="FILE",
                        help="continue the run journalled in FILE: only the shards it lacks run")  # fmt: skip


def where_from(args: argparse.Namespace, prog: str) -> Where | int:
    """The back-end the options name, or exit 2 (one line) for a bad combination."""
    if args.journal is not None and args.resume is not None:
        return usage_error(prog, "--journal starts a journal and --resume continues one; give one")
    if args.resume is not None and not args.resume.is_file():
        return usage_error(prog, f"--resume {args.resume}: no such journal")
    try:
        return parse_where(args.jobs, args.cluster)
    except ValueError as error:
        return usage_error(prog, str(error))


def run_campaign(
    campaign: Campaign, args: argparse.Namespace, prog: str, *, label: str, shards: list[int] | None = None,
    unit: str = "shards", size: Callable[[int], int] | None = None,
) -> Execution | int:  # fmt: skip
    """Run ``campaign`` as the options say, with one progress bar; the execution, or exit 2.

    The bar counts shards, or with ``size(shard)`` the ``unit``s each shard holds (the
    crash campaign counts workloads), advanced as each shard finishes."""
    where = where_from(args, prog)
    if isinstance(where, int):
        return where
    wanted = list(range(campaign.shards)) if shards is None else shards
    weigh = size if size is not None else (lambda shard: 1)
    finished: list[int] = []
    with Progress(sum(weigh(shard) for shard in wanted), f"{label} ({where.describe()})", unit=unit) as progress:

        def advance(outcome: ShardOutcome) -> None:
            finished.append(outcome.shard)
            found = campaign.violations(outcome.result) if outcome.ok else int(outcome.failed)
            progress.advance(weigh(outcome.shard), violations=(progress.violations or 0) + found)

        try:
            return execute(campaign, where, shards=shards, journal=args.journal, resume=args.resume, on_shard=advance)
        except ExecutionError as error:
            reason, lost = str(error), isinstance(error, SchedulerLost)
    if lost and finished:
        if args.journal is not None or args.resume is not None:
            reason += f"; {len(finished)} shards are journalled: rerun with --resume {args.journal or args.resume}"
        else:
            reason += f"; {len(finished)} shards were done (keep them next time with --journal FILE)"
    sys.stderr.write(f"{prog}: {reason}\n")
    return EXIT_USAGE


def print_failures(execution: Execution, stream: Any = None) -> int:
    """Print the failing shards (the first :data:`SHOWN_FAILURES` in full); how many."""
    out = stream if stream is not None else sys.stdout
    failures = execution.failures()
    for failure in failures[:SHOWN_FAILURES]:
        out.write(failure.render() + "\n")
    if len(failures) > SHOWN_FAILURES:
        out.write(f"... and {len(failures) - SHOWN_FAILURES} more failing shards (use --json for all)\n")
    return len(failures)


__all__ = ["SHOWN_FAILURES", "add_execution_options", "cluster_address", "print_failures", "run_campaign", "shard_spec", "where_from"]
