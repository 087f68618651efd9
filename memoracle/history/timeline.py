"""The HTML timeline of a checked history (``history check --html OUT``).

One self-contained page (inline SVG and a few lines of script, nothing fetched):

- a **time axis** with stamps under each panel; one **lane** per thread (for key-value
  histories, lanes grouped by key, the violating key first);
- **every operation** whose interval meets a panel's time range is drawn there as a bar
  from its call to its return (an indeterminate one runs to the panel's end, dashed);
  its label is cut to fit the bar (``…``), and the full text — id, thread, operation,
  answer, call and return stamps — shows on hover;
- the operations the verdict names are **red**, with the reason on hover and above the
  picture; a longest partial linearization found by the generic search numbers its
  operations (``lin 3``) in the hover text;
- a history longer than ``window`` operations is drawn as **panels** around the
  operations the verdict names (or around where the search stopped, or at the start),
  each holding about ``window`` operations, and an **overview strip** summarizes the
  whole history (operations per time bucket, panels and culprits marked), with the count
  of operations drawn and not drawn.

The page's script writes ``<p id="memoracle-rendered" data-ops="N">`` once it has counted
the drawn bars, and any script error into ``<pre id="memoracle-errors">`` (so a headless
browser's DOM dump shows both).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from spec.history import History
from spec.linearizability import INDETERMINATE

from memoracle.history.verdict import Verdict

#: Operations per panel (a history this long or shorter is drawn whole).
DEFAULT_WINDOW = 1_500
#: Width of the drawing area of a panel, in pixels (at least; a crowded panel grows so
#: that a lane gives each bar about :data:`_PER_BAR` pixels, up to :data:`MAX_WIDTH`).
WIDTH = 1100
MAX_WIDTH = 20_000
_PER_BAR = 64
_LEFT = 150  # lane names
_LANE = 24  # pixels per lane
_CHAR = 6.3  # pixels per character at the labels' 11 px


@dataclass(frozen=True)
class Bar:
    """One operation as drawn: ``lane`` (thread) within ``group`` (a key, or ``None``),
    a short ``label``, the full ``text`` for hover, its interval (``ret=None``:
    indeterminate), and its ``status``: ``"ok"``, ``"failed"`` (full, empty, a failed
    cas...) or ``"info"`` (may or may not have happened)."""

    id: int
    lane: str
    group: str | None
    label: str
    text: str
    call: int
    ret: int | None
    status: str


def queue_bars(history: History) -> list[Bar]:
    """The bars of a queue history."""
    bars = []
    for row in range(len(history)):
        op = history.operation(row)
        if op.kind == "push":
            label = f"push({op.arg!r})" + ("" if op.ok else " full")
        else:
            label = "pop→" + ("empty" if op.result is None else repr(op.result))
        ret = None if op.ret >= INDETERMINATE else op.ret
        bars.append(Bar(op.id, str(op.thread), None, label, op.describe(), op.call, ret, "ok" if op.ok else "failed"))
    return bars


def queue_timeline(history: History, verdict: Verdict, title: str, *, window: int = DEFAULT_WINDOW) -> str:
    """The page for a queue history (see the module docstring)."""
    return timeline_html(queue_bars(history), verdict, title, window=window)


# ------------------------------------------------------------------------- panels


def _panels(bars: Sequence[Bar], verdict: Verdict, window: int) -> list[tuple[int, int]]:
    """Time ranges to draw: the whole history if it is short, else merged neighbourhoods
    (about ``window`` operations each) of the culprits, or of where the search stopped,
    or the start."""
    low = min(b.call for b in bars)
    high = max(_end(b) for b in bars)
    if len(bars) <= window:
        return [(low, high)]
    by_call = sorted(bars, key=lambda b: (b.call, b.id))
    place = {b.id: k for k, b in enumerate(by_call)}
    centres = sorted({place[i] for i in verdict.culprits if i in place})
    if not centres and verdict.order:
        done = set(verdict.order)
        centres = [next((k for k, b in enumerate(by_call) if b.id not in done), len(by_call) - 1)]
    if not centres:
        centres = [window // 2]
    half = max(1, window // (2 * len(centres)) if len(centres) > 2 else window // 2)
    spans: list[tuple[int, int]] = []
    for k in centres:
        first, last = max(0, k - half), min(len(by_call) - 1, k + half)
        start = by_call[first].call
        end = max(_end(b) for b in by_call[first : last + 1])
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _end(bar: Bar) -> int:
    return bar.call + 1 if bar.ret is None else bar.ret


def _nice_step(span: float, ticks: int = 8) -> int:
    """A step of 1, 2 or 5 times a power of ten giving about ``ticks`` ticks."""
    raw = max(span / ticks, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)


def _elide(label: str, pixels: float) -> str:
    """``label`` cut to fit ``pixels`` (with ``…``), or ``""`` if not even two characters fit."""
    fits = int((pixels - 4) / _CHAR)
    if fits >= len(label):
        return label
    return label[: fits - 1] + "…" if fits >= 2 else ""


# ------------------------------------------------------------------------- drawing


_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 6px} .verdict{font-size:14px;margin:4px 0 10px;white-space:pre-wrap}
.violation{color:#b00} .linearizable{color:#070} .unknown{color:#a60}
svg{display:block;margin:6px 0 14px;font-size:11px}
g.op rect{stroke:#333;stroke-width:.5} g.op.ok rect{fill:#7c9} g.op.failed rect{fill:#bbb}
g.op.info rect{fill:#fd9;stroke-dasharray:4 2} g.op.culprit rect{fill:#e44;stroke:#700;stroke-width:1.5}
g.op:hover rect{stroke:#000;stroke-width:2} g.op text{pointer-events:none}
.lane{font-weight:bold} .group{font-weight:bold;fill:#036} .axis{stroke:#888}
#memoracle-errors{color:#b00} .legend span{display:inline-block;padding:1px 6px;margin-right:6px;border:1px solid #555}
"""

_SCRIPT_HEAD = """window.onerror=function(m,s,l){var e=document.getElementById('memoracle-errors');
if(e){e.textContent+=m+' (line '+l+')\\n';}return false;};"""

_SCRIPT_TAIL = """(function(){var bars=document.querySelectorAll('g.op');
var m=document.getElementById('memoracle-rendered');m.setAttribute('data-ops',String(bars.length));
m.textContent=bars.length+' operations drawn';
bars.forEach(function(g){g.addEventListener('click',function(){
document.getElementById('memoracle-detail').textContent=g.querySelector('title').textContent;});});})();"""


def timeline_html(bars: Sequence[Bar], verdict: Verdict, title: str, *, window: int = DEFAULT_WINDOW) -> str:
    """The page (see the module docstring)."""
    culprits = set(verdict.culprits)
    order = {ident: k + 1 for k, ident in enumerate(verdict.order)}
    head = [
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT_HEAD}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='verdict {verdict.status}'><b>{html.escape(_headline(verdict))}</b>"
        + (f"\n{html.escape(verdict.reason)}" if verdict.reason else "") + "</p>",
        "<p class='legend'><span style='background:#7c9'>succeeded</span><span style='background:#bbb'>"
        "failed / full / empty</span><span style='background:#fd9'>indeterminate</span>"
        "<span style='background:#e44'>named by the verdict</span> hover a bar for its full text and stamps; "
        "click to copy it below</p>",
    ]
    body: list[str] = []
    if not bars:
        body.append("<p>The history has no operations.</p>")
        drawn = 0
    else:
        panels = _panels(bars, verdict, window)
        drawn_ids: set[int] = set()
        if len(panels) > 1 or len(bars) > window:
            body.append(_overview(bars, panels, culprits))
        for number, (start, end) in enumerate(panels, start=1):
            inside = [b for b in bars if b.call <= end and _end(b) >= start]
            drawn_ids.update(b.id for b in inside)
            caption = (f"panel {number} of {len(panels)}: time {start} to {end}, {len(inside)} operations"
                       if len(panels) > 1 or len(inside) < len(bars) else f"all {len(inside)} operations")
            body.append(f"<h2 style='font-size:14px'>{html.escape(caption)}</h2>")
            body.append(_panel(inside, start, end, culprits, order, verdict))
        drawn = len(drawn_ids)
        if drawn < len(bars):
            body.append(f"<p>{drawn} of {len(bars)} operations drawn; the other {len(bars) - drawn} lie "
                        "outside the panels (see the overview strip).</p>")
    tail = [
        "<pre id='memoracle-detail'></pre>",
        f"<p id='memoracle-rendered' data-expected='{drawn}'></p><pre id='memoracle-errors'></pre>",
        f"<script>{_SCRIPT_TAIL}</script></body></html>\n",
    ]
    return "\n".join(head + body + tail)


def _headline(verdict: Verdict) -> str:
    what = {"linearizable": "linearizable", "violation": "NOT linearizable", "unknown": "UNKNOWN (budget ran out)"}
    parts = [what.get(verdict.status, verdict.status), verdict.model]
    if verdict.criterion:
        parts.append(verdict.criterion)
    if verdict.partition is not None:
        parts.append(f"key {verdict.partition}")
    return f"{' · '.join(parts)} · {verdict.checker} checker · {verdict.operations} operations"


def _lanes(bars: Iterable[Bar], verdict: Verdict) -> list[tuple[str | None, str]]:
    """(group, lane) pairs in drawing order: the verdict's key first, then by name."""
    def natural(text: str | None) -> tuple[object, ...]:
        if text is None:
            return ()
        return tuple(int(part) if part.isdigit() else part for part in _split_digits(text))

    pairs = {(b.group, b.lane) for b in bars}
    first = verdict.partition
    return sorted(pairs, key=lambda p: (p[0] != first, natural(p[0]), natural(p[1])))


def _split_digits(text: str) -> list[str]:
    parts: list[str] = []
    for char in text:
        if parts and parts[-1][-1:].isdigit() == char.isdigit():
            parts[-1] += char
        else:
            parts.append(char)
    return parts


def _panel(bars: Sequence[Bar], start: int, end: int, culprits: set[int], order: dict[int, int],
           verdict: Verdict) -> str:  # fmt: skip
    lanes = _lanes(bars, verdict)
    rows: dict[tuple[str | None, str], int] = {}
    out: list[str] = []
    y = 4
    group_now: object = object()
    for group, lane in lanes:
        if group != group_now and group is not None:
            out.append(f"<text class='group' x='4' y='{y + 14}'>key {html.escape(group)}</text>")
            y += 20
        group_now = group
        rows[(group, lane)] = y
        out.append(f"<text class='lane' x='{14 if group is not None else 4}' y='{y + 15}'>"
                   f"{html.escape(_elide(lane, _LEFT - 18))}<title>{html.escape(lane)}</title></text>")
        y += _LANE
    span = max(1, end - start)
    per_lane: dict[tuple[str | None, str], int] = {}
    for bar in bars:
        per_lane[(bar.group, bar.lane)] = per_lane.get((bar.group, bar.lane), 0) + 1
    width_px = min(MAX_WIDTH, max(WIDTH, _PER_BAR * max(per_lane.values(), default=0)))
    scale = width_px / span
    for bar in bars:
        x0 = _LEFT + (max(bar.call, start) - start) * scale
        x1 = _LEFT + (min(_end(bar) if bar.ret is not None else end, end) - start) * scale
        width = max(3.0, x1 - x0)
        classes = ["op", bar.status]
        hover = [bar.text]
        if bar.ret is None:
            hover.append("indeterminate: it may or may not have taken effect")
        if bar.id in culprits:
            classes.append("culprit")
            hover.append(f"named by the verdict: {verdict.reason}")
        if bar.id in order:
            hover.append(f"lin {order[bar.id]}: position in the longest partial linearization found")
        top = rows[(bar.group, bar.lane)]
        text = _elide(bar.label, width)
        out.append(
            f"<g class='{' '.join(classes)}' data-id='{bar.id}'><title>{html.escape(chr(10).join(hover))}</title>"
            f"<rect x='{x0:.1f}' y='{top + 2}' width='{width:.1f}' height='{_LANE - 5}' rx='3'/>"
            + (f"<text x='{x0 + 3:.1f}' y='{top + 15}'>{html.escape(text)}</text>" if text else "")
            + "</g>"
        )
    step = _nice_step(span, max(8, int(width_px // 140)))
    first = math.ceil(start / step) * step
    out.append(f"<line class='axis' x1='{_LEFT}' x2='{_LEFT + width_px}' y1='{y + 4}' y2='{y + 4}'/>")
    tick = first
    while tick <= end:
        x = _LEFT + (tick - start) * scale
        out.append(f"<line class='axis' x1='{x:.1f}' x2='{x:.1f}' y1='{y + 1}' y2='{y + 8}'/>"
                   f"<text x='{x:.1f}' y='{y + 20}' text-anchor='middle'>{tick}</text>")
        tick += step
    out.append(f"<text x='4' y='{y + 20}'>time (stamps)</text>")
    height = y + 28
    return (f"<svg width='{_LEFT + width_px + 20}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"
            + "".join(out) + "</svg>")


def _overview(bars: Sequence[Bar], panels: list[tuple[int, int]], culprits: set[int]) -> str:
    """The whole history as operations per time bucket, the panels shaded, culprits marked."""
    low = min(b.call for b in bars)
    high = max(_end(b) for b in bars)
    buckets = 200
    span = max(1, high - low)
    counts = [0] * buckets
    for b in bars:
        counts[min(buckets - 1, (b.call - low) * buckets // span)] += 1
    peak = max(counts) or 1
    scale = WIDTH / span
    out = []
    for start, end in panels:
        out.append(f"<rect x='{_LEFT + (start - low) * scale:.1f}' y='0' width='{max(2.0, (end - start) * scale):.1f}' "
                   "height='50' fill='#cde'/>")
    width = WIDTH / buckets
    for k, count in enumerate(counts):
        if count:
            h = 40 * count / peak
            out.append(f"<rect x='{_LEFT + k * width:.1f}' y='{45 - h:.1f}' width='{width:.1f}' height='{h:.1f}' "
                       "fill='#567'/>")
    calls = sorted(b.call for b in bars if b.id in culprits)
    for call in calls:
        out.append(f"<line x1='{_LEFT + (call - low) * scale:.1f}' x2='{_LEFT + (call - low) * scale:.1f}' "
                   "y1='0' y2='50' stroke='#e44' stroke-width='2'/>")
    out.append("<text x='4' y='20'>overview</text>"
               f"<text x='4' y='36'>{len(bars)} operations</text>"
               f"<text x='{_LEFT}' y='64'>{low}</text><text x='{_LEFT + WIDTH}' y='64' text-anchor='end'>{high}</text>")
    return (f"<svg width='{_LEFT + WIDTH + 20}' height='70' xmlns='http://www.w3.org/2000/svg'>" + "".join(out)
            + "</svg><p style='font-size:12px'>Overview: operations per time bucket over the whole history; shaded: "
            "the panels drawn below; red lines: the operations the verdict names.</p>")


__all__ = ["DEFAULT_WINDOW", "Bar", "queue_bars", "queue_timeline", "timeline_html"]

