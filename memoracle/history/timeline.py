"""The HTML timeline of a checked history (``--html``)."""

from __future__ import annotations

import html

from spec.history import History

from memoracle.history.verdict import Verdict


def queue_timeline(history: History, verdict: Verdict, title: str) -> str:
    """A self-contained HTML page: one lane per thread, one bar per operation of the
    verdict's window (culprits in red), stamps on hover."""
    ops = [history.operation(i) for i in range(len(history))] if not verdict.window else list(verdict.window)
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
        colour = "#d33" if op.id in verdict.culprits else "#4a7"
        label = html.escape(op.describe())
        bars.append(
            f'<g><title>{label}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="26" '
            f'fill="{colour}" rx="3"/></g>'
        )
    height = 40 + lane * max(1, len(threads))
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><body style='font-family:sans-serif'>"
        f"<h3>{html.escape(title)}</h3><p>{html.escape(verdict.reason)}</p>"
        f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{''.join(bars)}</svg></body>\n"
    )
