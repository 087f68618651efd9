"""Printing proof results: a table, then every counterexample.

Reusable by the ``memoracle proofs`` command: :func:`print_results` prints to any
``rich`` console, :func:`render_results` returns plain text, :func:`results_table`
returns the bare table.
"""

from __future__ import annotations

import io
from typing import Sequence

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from proofs.registry import ProofResult


def results_table(results: Sequence[ProofResult]) -> Table:
    """A table: theorem, expected, result (✓ as expected, ✗ not), seconds."""
    table = Table(title="proofs", title_justify="left")
    table.add_column("theorem", overflow="fold")
    table.add_column("expected", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    for result in results:
        mark = Text(
            f"✓ {result.status}" if result.ok else f"✗ {result.status}",
            style="green" if result.ok else "bold red",
        )
        table.add_row(result.name, result.expect, mark, f"{result.seconds:.3f}")
    return table


def summary_line(results: Sequence[ProofResult]) -> str:
    """E.g. ``7 theorems in 1.23 s: 3 proved, 4 mutants refuted; all as expected``."""
    proved = sum(1 for r in results if r.ok and r.status == "proved")
    refuted = sum(1 for r in results if r.ok and r.status == "refuted")
    wrong = [r.name for r in results if not r.ok]
    seconds = sum(r.seconds for r in results)
    head = f"{len(results)} theorems in {seconds:.2f} s: {proved} proved, {refuted} mutants refuted"
    if wrong:
        return f"{head}; NOT AS EXPECTED: {', '.join(wrong)}"
    return f"{head}; all as expected"


def print_results(results: Sequence[ProofResult], console: Console | None = None) -> None:
    """Print the table, each counterexample (and each unknown's reason), and a summary."""
    out = console if console is not None else Console()
    out.print(results_table(results))
    for result in results:
        if result.counterexample is not None:
            verdict = "expected" if result.ok else "UNEXPECTED"
            out.print(
                Panel(
                    Text(result.counterexample),
                    title=f"counterexample ({verdict}): {result.name}",
                    title_align="left",
                    border_style="yellow" if result.ok else "red",
                )
            )
        if result.status == "unknown":
            out.print(Text(f"{result.name}: unknown — {result.note}", style="bold red"))
    all_ok = all(result.ok for result in results)
    out.print(Text(summary_line(results), style="green" if all_ok else "bold red"))


def render_results(results: Sequence[ProofResult], *, width: int = 110) -> str:
    """:func:`print_results` as plain text (no colour codes)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    print_results(results, console)
    return buffer.getvalue()
