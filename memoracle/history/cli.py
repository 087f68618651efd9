"""``memoracle history check FILE``: check a history and print the verdict.

``--format memoracle`` (the default) reads memoracle's queue history format
(:mod:`spec.history`); ``--format jepsen`` a Jepsen EDN history
(:mod:`memoracle.history.jepsen`) and ``--format porcupine`` Porcupine operations in
JSON (:mod:`memoracle.history.porcupine`), each with ``--model queue|register|kv``
(required for them; memoracle's format holds queues). Queues go to the fastest exact
checker that applies (:mod:`memoracle.history.queue_check`), registers and key-value
maps (per key) to the generic search (:mod:`memoracle.history.foreign`), which runs
under a budget
(``--max-states`` per key, ``--timeout`` seconds in all). Exit codes: 0 linearizable,
1 violation, 2 bad usage or a malformed file (one line on stderr, naming the line),
3 unknown (the budget ran out: raise it, or check a smaller history).
``--json`` prints the verdict as JSON; ``--html OUT`` writes a timeline of the history
(:mod:`memoracle.history.timeline`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spec.history import HistoryFormatError, read_history
from spec.linearizability import Budget
from spec.spsc_model import Criterion

from memoracle.arguments import input_file, int_in, output_file, positive_seconds
from memoracle.exitcodes import EXIT_USAGE
from memoracle.history.foreign import MODELS, ForeignHistory, check_foreign
from memoracle.history.queue_check import check_queue_history
from memoracle.history.timeline import Bar, queue_bars, timeline_html
from memoracle.history.verdict import Verdict
from memoracle.progress import verdict_line

#: The generic search's default budget: seconds in all, and memoized states per key
#: (about half a KiB each), so that the command answers within seconds.
DEFAULT_TIMEOUT = 20.0
DEFAULT_MAX_STATES = 500_000
FORMATS = ("memoracle", "jepsen", "porcupine")


def add_check_parser(verbs: Any) -> None:
    """Register ``check`` on the ``memoracle history`` verbs."""
    check = verbs.add_parser("check", help="check a history file for linearizability")
    check.add_argument("file", type=input_file, help="a history file")
    check.add_argument("--format", choices=FORMATS, default="memoracle", help="the file's format")
    check.add_argument("--model", choices=MODELS,
                       help="what the history is of (memoracle: queue; required for jepsen and porcupine)")
    check.add_argument("--criterion", choices=["strict", "tolerant"],
                       help="queues only: must 'full'/'empty' answers be justified (strict) or not (tolerant) "
                            "(default: strict)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--html", metavar="OUT", type=output_file, help="write a timeline of the history (HTML)")
    check.add_argument("--max-states", type=int_in(1, 1 << 40), default=DEFAULT_MAX_STATES,
                       help="generic search: memoized states per key (about half a KiB each)")
    check.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                       help="generic search: seconds in all")
    check.set_defaults(func=cmd_history_check)


def _usage(message: str) -> int:
    sys.stderr.write(f"memoracle: {message}\n")
    return EXIT_USAGE


def cmd_history_check(args: argparse.Namespace) -> int:
    """``memoracle history check FILE``."""
    from memoracle.arguments import usage_error

    criterion = Criterion(args.criterion or "strict")
    budget = Budget(args.max_states, args.timeout)
    if args.format == "memoracle" and args.model not in (None, "queue"):
        return usage_error("memoracle history check", f"--model {args.model}: memoracle's format holds queue histories")
    if args.format != "memoracle" and args.model is None:
        return usage_error("memoracle history check", f"--format {args.format} needs --model queue, register or kv")
    if args.criterion is not None and args.model in ("register", "kv"):
        return usage_error("memoracle history check", f"--criterion applies to queues, not --model {args.model}")
    bars: list[Bar] | None = None
    try:
        if args.format == "memoracle":
            history = read_history(str(args.file))
            verdict = check_queue_history(history, criterion, budget)
        else:
            foreign = read_foreign(str(args.file), args.format, args.model)
            verdict = check_foreign(foreign, criterion, budget)
            bars = foreign.bars()
    except HistoryFormatError as error:
        return _usage(f"{args.file}: {error}")
    except OSError as error:
        return _usage(f"{args.file}: {error.strerror or error}")
    if args.html:
        try:
            drawn = bars if bars is not None else queue_bars(history)
            page = timeline_html(drawn, verdict, str(args.file))
            Path(args.html).write_text(page, encoding="utf-8", errors="backslashreplace")
        except OSError as error:
            return _usage(f"{args.html}: {error.strerror or error}")
    line = verdict_line(
        1 if verdict.status == "violation" else 0, [(verdict.operations, "operation")], verdict.seconds,
        inconclusive="the generic search's budget ran out" if verdict.status == "unknown" else None,
    )  # fmt: skip
    if args.json:
        print(json.dumps(verdict.as_json(str(args.file)), indent=2))
        print(line, file=sys.stderr)
    else:
        print(render_text(verdict, str(args.file)))
        print(line)
    return verdict.exit_code


def read_foreign(path: str, source: str, model: str) -> ForeignHistory:
    """Read a Jepsen or Porcupine history file for ``model``."""
    with open(path, "rb") as handle:
        if source == "jepsen":
            from memoracle.history.jepsen import read_jepsen

            return read_jepsen(handle, model)
        from memoracle.history.porcupine import read_porcupine

        return read_porcupine(handle, model)


def render_text(verdict: Verdict, name: str) -> str:
    """The terminal report: the headline, then the reason and the operations it names."""
    lines = [verdict.headline(name)]
    if verdict.status == "violation":
        lines.append(verdict.reason)
        if verdict.checker != "generic" and verdict.window:
            lines.append("operations around the violation (* = named above):")
            lines += [f" {'*' if op.id in verdict.culprits else ' '} {op.describe()}" for op in verdict.window]
    elif verdict.status == "unknown":
        lines.append(verdict.reason)
        lines.append("raise --max-states or --timeout for an answer (exit code 3 = no verdict)")
    return "\n".join(lines)
