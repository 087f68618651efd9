"""``memoracle kv check HOST:PORT``: check a running memcached-compatible server.

See :mod:`memoracle.sphinx.kv_check` for what is checked. Output: one line per part, the
finding (request, expected and observed replies) if any, a verdict line and the command
that reproduces the run; ``--json`` for tools; ``--html OUT`` draws the concurrent
history (per-key lanes). Exit codes: 0 everything held, 1 a violation, 2 bad usage or no
server at HOST:PORT, 3 the concurrent check's budget ran out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spec.linearizability import Budget

from memoracle.arguments import add_subcommands, int_in, output_file, positive_seconds, seed, usage_error
from memoracle.exitcodes import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.progress import Progress, verdict_line


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6addr]:PORT`` too) as a pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"wants HOST:PORT with a port from 1 to 65535, not {text!r}")
    return host.strip("[]"), int(port)


def add_commands(sub: Any) -> None:
    """Register ``memoracle kv check`` on ``sub``."""
    kv = sub.add_parser("kv", help="check a running memcached-compatible server against the spec")
    verbs = add_subcommands(kv, "kv_command", "check")
    check = verbs.add_parser("check", help="sequential, concurrent and framing checks of HOST:PORT")
    check.add_argument("target", type=host_port, metavar="HOST:PORT", help="the server, e.g. 127.0.0.1:11211")
    check.add_argument("--seed", type=seed, default=0, help="seed of every workload")
    check.add_argument("--steps", type=int_in(1, 1_000_000), default=400,
                       help="requests of the sequential session, and operations of the concurrent one")
    check.add_argument("--clients", type=int_in(1, 256), default=4, help="concurrent connections")
    check.add_argument("--timeout", type=positive_seconds, default=2.0,
                       help="seconds to wait for a reply before a request counts as lost")
    check.add_argument("--max-states", type=int_in(1, 1 << 40), default=500_000,
                       help="per-key linearizability search: memoized states per key")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--html", metavar="OUT", type=output_file, help="write a timeline of the concurrent history")
    check.set_defaults(func=cmd_kv_check)


def cmd_kv_check(args: argparse.Namespace) -> int:
    """``memoracle kv check HOST:PORT``."""
    from memoracle.sphinx.kv_check import check_server

    host, port = args.target
    with Progress(3, f"kv check {host}:{port}", unit="parts", enabled=not args.json) as progress:
        def on_part(part: str) -> None:
            progress.describe(f"kv check {host}:{port}: {part}")
            progress.advance(0)

        try:
            report = check_server(host, port, seed=args.seed, steps=args.steps, clients=args.clients,
                                  timeout=args.timeout, budget=Budget(args.max_states, 20.0), on_part=on_part)
        except OSError as error:
            return usage_error("memoracle kv check", f"cannot talk to {host}:{port}: {error.strerror or error}")
    if args.html and report.concurrent is not None:
        from memoracle.history.timeline import Bar, timeline_html
        from memoracle.history.verdict import Verdict

        concurrent = report.concurrent
        bars = [Bar(op.id, str(op.thread), str(op.key), _label(op.f, op.value, op.result, op.indeterminate),
                    op.describe(), op.call, None if op.indeterminate else op.ret,
                    "info" if op.indeterminate else "ok") for op in concurrent.ops]
        status = {"linearizable": "linearizable", "violation": "violation"}.get(concurrent.status, "unknown")
        verdict = Verdict(status, "generic", "memcached key (loose cache)", None, len(concurrent.ops),  # type: ignore[arg-type]
                          concurrent.report, concurrent.culprits, (), report.seconds, concurrent.order,
                          concurrent.key)
        try:
            Path(args.html).write_text(timeline_html(bars, verdict, f"kv check {report.target}: concurrent history"),
                                       encoding="utf-8", errors="backslashreplace")
        except OSError as error:
            sys.stderr.write(f"memoracle: {args.html}: {error.strerror or error}\n")
            return EXIT_USAGE
    counts = [(report.sequential, "request"), (len(report.concurrent.ops) if report.concurrent else 0, "operation"),
              (report.scenarios, "scenario")]
    status = report.status
    line = verdict_line(1 if status == "violation" else 0, counts, report.seconds,
                        inconclusive="the per-key search's budget ran out" if status == "unknown" else None)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        print(line, file=sys.stderr)
    else:
        print(render(report))
        print(line)
    return {"ok": EXIT_OK, "violation": EXIT_VIOLATION}.get(status, EXIT_INCONCLUSIVE)


def _label(f: str, value: object, result: object, indeterminate: bool) -> str:
    if f == "get":
        return "get→" + ("?" if indeterminate else "miss" if result is None else str(result))
    answer = "?" if indeterminate else str(result).split(" ")[0].lower()
    return f"{f} {value or ''} {answer}".replace("  ", " ")


def render(report: Any) -> str:
    """The terminal report."""
    lines = [f"kv check {report.target} (seed {report.seed})"]
    finding = report.sequential_finding
    lines.append(f"  sequential: {report.sequential} requests judged by the loose cache model: "
                 + ("ok" if finding is None else "VIOLATION"))
    if finding is not None:
        lines.append("    " + finding.render().replace("\n", "\n    "))
    concurrent = report.concurrent
    if concurrent is not None:
        lines.append(f"  concurrent: {len(concurrent.ops)} operations of {report.clients} clients "
                     f"({concurrent.indeterminate} indeterminate), per key: {concurrent.status.upper() if concurrent.status != 'linearizable' else 'linearizable'}")
        if concurrent.report:
            lines.append("    " + concurrent.report.replace("\n", "\n    "))
    finding = report.framing_finding
    lines.append(f"  framing: {report.scenarios} scenarios ({report.framing_requests} requests) against the "
                 "model's exact replies: " + ("ok" if finding is None else "VIOLATION"))
    if finding is not None:
        lines.append("    " + finding.render().replace("\n", "\n    "))
    lines.append(f"reproduce: {report.reproduce()}")
    return "\n".join(lines)
