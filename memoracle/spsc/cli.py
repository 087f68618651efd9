"""``memoracle history check|record`` and ``memoracle interleave``: the SPSC commands.

``history check FILE`` reads a format-1 history (:mod:`spec.history`), checks it with the
fast SPSC checker when it has one producer and one consumer and with the generic
Wing–Gong–Lowe checker otherwise, and prints a verdict (``--json`` for tools). Exit 0 =
linearizable, 1 = violation, 2 = malformed file (one line on stderr naming the line).
``--html OUT`` writes a small self-contained timeline (inline SVG, no scripts) of the
violating window.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from spec.history import History, HistoryFormatError, Operation, read_history
from spec.linearizability import check_linearizable, queue_unit
from spec.spsc_fast import NotSpscError, check_spsc
from spec.spsc_model import Criterion, QueueSpec

from memoracle.exitcodes import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one history."""

    linearizable: bool
    checker: str
    criterion: Criterion
    operations: int
    reason: str
    window: tuple[Operation, ...]
    culprits: tuple[int, ...]
    seconds: float

    def as_json(self, path: str) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "file": path,
            "criterion": self.criterion.value,
            "checker": self.checker,
            "operations": self.operations,
            "linearizable": self.linearizable,
            "reason": self.reason,
            "culprits": list(self.culprits),
            "window": [op.as_json() for op in self.window],
            "seconds": round(self.seconds, 4),
        }


def check_history(history: History, criterion: Criterion) -> Verdict:
    """Check ``history`` with the fast checker if it is SPSC, else the generic one.
    Raises :class:`HistoryFormatError` if a thread's operations overlap."""
    started = time.perf_counter()
    try:
        fast = check_spsc(history, criterion)
    except NotSpscError:
        ops = history.operations()
        generic = check_linearizable(ops, QueueSpec(history.capacity, criterion), unit=queue_unit)
        seconds = time.perf_counter() - started
        if generic.ok or generic.violation is None:
            return Verdict(True, "generic", criterion, len(history), "", (), (), seconds)
        violation = generic.violation
        shown = violation.minimal or tuple(op for op in ops if op.id in set(violation.longest[-10:]))
        return Verdict(
            False, "generic", criterion, len(history), violation.render(), tuple(shown),
            tuple(op.id for op in shown), seconds,
        )
    seconds = time.perf_counter() - started
    if fast.ok or fast.violation is None:
        return Verdict(True, "spsc-fast", criterion, len(history), "", (), (), seconds)
    window = tuple(sorted((history.operation(r) for r in fast.violation.window), key=lambda o: o.call))
    culprits = tuple(history.ids[r] for r in fast.violation.culprits)
    return Verdict(
        False, "spsc-fast", criterion, len(history), fast.violation.reason, window, culprits, seconds
    )


def timeline_html(verdict: Verdict, title: str) -> str:
    """A self-contained HTML page: one lane per thread, one bar per operation of the
    window (culprits in red), stamps on hover."""
    ops = verdict.window
    threads = sorted({str(op.thread) for op in ops})
    low = min((op.call for op in ops), default=0)
    high = max((op.ret for op in ops), default=1)
    width, lane = 960, 46
    scale = (width - 40) / max(1, high - low)
    bars = []
    for op in ops:
        y = 30 + threads.index(str(op.thread)) * lane
        x = 20 + (op.call - low) * scale
        w = max(3.0, (op.ret - op.call) * scale)
        colour = "#d33" if op.id in verdict.culprits else ("#4a7" if op.ok else "#999")
        label = html.escape(op.describe())
        short = html.escape(
            f"push({op.arg})" + ("" if op.ok else " full") if op.kind == "push"
            else f"pop→{'empty' if op.result is None else op.result}"
        )
        bars.append(
            f'<g><title>{label}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="26" '
            f'fill="{colour}" rx="3"/><text x="{x + 2:.1f}" y="{y + 17}" font-size="11">{short}</text></g>'
        )
    names = "".join(
        f'<text x="2" y="{24 + i * lane}" font-size="12" font-weight="bold">{html.escape(t)}</text>'
        for i, t in enumerate(threads)
    )
    height = 40 + lane * max(1, len(threads))
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<body style='font-family:sans-serif'>"
        f"<h3>{html.escape(title)}</h3><p>{html.escape(verdict.reason)}</p>"
        f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{names}{''.join(bars)}</svg>"
        "<p>red: the operations the verdict names; green: succeeded; grey: full/empty. "
        "Hover a bar for its id and stamps.</p></body>\n"
    )


def cmd_history_check(args: argparse.Namespace) -> int:
    """``memoracle history check FILE``."""
    criterion = Criterion(args.criterion)
    try:
        history = read_history(args.file)
        verdict = check_history(history, criterion)
    except HistoryFormatError as error:
        sys.stderr.write(f"memoracle: {args.file}: {error}\n")
        return EXIT_USAGE
    except OSError as error:
        sys.stderr.write(f"memoracle: {args.file}: {error.strerror or error}\n")
        return EXIT_USAGE
    if args.html and not verdict.linearizable:
        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(timeline_html(verdict, f"{args.file}: not {criterion.value}ly linearizable"))
    if args.json:
        print(json.dumps(verdict.as_json(args.file), indent=2))
    elif verdict.linearizable:
        print(
            f"{args.file}: linearizable ({criterion.value}), {verdict.operations} operations, "
            f"{verdict.checker} checker, {verdict.seconds:.3f}s"
        )
    else:
        print(f"{args.file}: NOT linearizable ({criterion.value}), {verdict.checker} checker")
        print(verdict.reason)
        if verdict.checker == "spsc-fast":
            print("operations around the violation (* = named above):")
            for op in verdict.window:
                print(f" {'*' if op.id in verdict.culprits else ' '} {op.describe()}")
    return EXIT_OK if verdict.linearizable else EXIT_VIOLATION


def cmd_history_record(args: argparse.Namespace) -> int:
    """``memoracle history record OUT``: two processes, one shared ring, one history."""
    from memoracle.spsc.recorder import record_history

    if args.operations < 1 or args.capacity < 1 or args.capacity & (args.capacity - 1):
        sys.stderr.write("memoracle: --operations must be positive and --capacity a power of two\n")
        return EXIT_USAGE
    record_history(args.output, args.operations, args.capacity, mutant=args.mutant)
    print(f"wrote {args.operations} operations to {args.output}")
    return EXIT_OK


def cmd_interleave(args: argparse.Namespace) -> int:
    """``memoracle interleave``: explore one scenario, or print the fences table."""
    from impl.cpu_emu import Model
    from impl.spsc import Fences
    from memoracle.spsc.fences_table import fences_table, render_markdown
    from memoracle.spsc.interleave import Scenario, explore, pct

    if args.table:
        print(render_markdown(fences_table()))
        return EXIT_OK
    try:
        fences = Fences.of([n for n in (args.fences or "").split(",") if n])
    except ValueError as error:
        sys.stderr.write(f"memoracle: {error} (known: {', '.join(Fences.names())})\n")
        return EXIT_USAGE
    if args.capacity < 1 or args.capacity & (args.capacity - 1):
        sys.stderr.write("memoracle: --capacity must be a power of two\n")
        return EXIT_USAGE
    scenario = Scenario(
        Model(args.model), args.variant, fences, args.capacity, args.pushes, args.pops
    )
    criterion = Criterion(args.criterion)
    if args.pct:
        result = pct(scenario, criterion, runs=args.pct, depth=args.depth, seed=args.seed)
    else:
        result = explore(scenario, criterion, bound=args.bound)
    if result.violation is not None:
        print(result.violation.render())
        extra = f" --pct {args.pct} --seed {args.seed}" if args.pct else ""
        print(f"found after {result.executions} executions; reproduce: memoracle interleave "
              f"--model {args.model} --variant {args.variant} --criterion {args.criterion} "
              f"--fences '{args.fences or ''}' --capacity {args.capacity} --pushes {args.pushes} "
              f"--pops {args.pops}{extra}")
        return EXIT_VIOLATION
    how = "all" if result.exhausted else "sampled"
    print(f"ok: {result.executions} executions ({how}; {result.pruned} branches pruned), "
          f"every history {criterion.value}ly linearizable: {scenario.describe()}")
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Register ``history`` and ``interleave`` on the ``memoracle`` sub-parser set."""
    history = sub.add_parser("history", help="check or record SPSC queue histories")
    verbs = history.add_subparsers(dest="verb", required=True, parser_class=type(history))
    check = verbs.add_parser("check", help="check a history file (format 1)")
    check.add_argument("file")
    check.add_argument("--criterion", choices=["strict", "tolerant"], default="strict")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--html", metavar="OUT", help="write a timeline of the violating window")
    check.set_defaults(func=cmd_history_check)
    record = verbs.add_parser("record", help="record a real two-process SPSC history")
    record.add_argument("output")
    record.add_argument("--operations", type=int, default=100_000)
    record.add_argument("--capacity", type=int, default=8)
    record.add_argument("--mutant", choices=["none", "wrong_slot"], default="none")
    record.set_defaults(func=cmd_history_record)

    inter = sub.add_parser("interleave", help="explore SPSC ring interleavings on store-buffer cores")
    inter.add_argument("--table", action="store_true", help="print the fences table")
    inter.add_argument("--model", choices=["sc", "tso", "weak"], default="tso")
    inter.add_argument("--variant", choices=["lamport", "cached"], default="lamport")
    inter.add_argument("--criterion", choices=["strict", "tolerant"], default="tolerant")
    inter.add_argument("--fences", help="comma-separated knobs of impl.spsc.Fences")
    inter.add_argument("--capacity", type=int, default=1)
    inter.add_argument("--pushes", type=int, default=2)
    inter.add_argument("--pops", type=int, default=2)
    inter.add_argument("--bound", type=int, default=None, help="preemption bound")
    inter.add_argument("--pct", type=int, default=0, help="PCT runs instead of exhaustive search")
    inter.add_argument("--depth", type=int, default=3, help="PCT depth")
    inter.add_argument("--seed", type=int, default=0)
    inter.set_defaults(func=cmd_interleave)
