"""Progress for long work, and the one verdict line every checking command ends with.

Two things, shared by every command so that they all look and behave alike:

- :class:`Progress`, a context manager on **stderr**. On a terminal it draws a rich
  progress bar; otherwise (a pipe, a CI log, a file) it prints one plain line every
  ``interval`` seconds (5 by default) from a background thread, so a long run in a log is
  never silent, and nothing at all for work that ends sooner::

      with Progress(total=272, label="crash umfs --ops 2", unit="workloads") as progress:
          for workload in workloads:
              progress.advance(1, violations=len(found))

  prints, when stderr is not a terminal, lines such as
  ``crash umfs --ops 2: 120/272 workloads, 0 violations, 45 s, ETA 56 s`` (the estimate
  of the time left assumes the rest goes as fast as what is done).
  ``total=None`` when the amount of work is not known in advance. ``enabled=False``
  silences it (for tests, or a caller that has its own display).

- :func:`verdict_line`: ``0 violations: 119,569 images, 93 states, 90 s`` — what was
  checked, how much, how long, in one line a person or a script can read. A command
  prints it last (on stdout, or on stderr when stdout carries ``--json``).

Progress never goes to stdout, which carries results (and ``--json``) only.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Sequence, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

#: Seconds between plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL_SECONDS = 5.0


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 image"``, ``"119,569 images"``; ``nouns`` for irregular plurals."""
    if count == 1:
        return f"1 {noun}"
    many = nouns if nouns is not None else (noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s")
    return f"{count:,} {many}"


def format_seconds(seconds: float) -> str:
    """``0.42 s``, ``9.7 s``, ``90 s``, ``23 min``, ``2.5 h``: precise when short."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


#: A count in a verdict line: ``(n, "image")`` or ``(n, "history", "histories")``.
Count = tuple[int, str] | tuple[int, str, str]


def verdict_line(
    violations: int,
    counts: Sequence[Count],
    seconds: float,
    *,
    inconclusive: str | None = None,
    found: str = "violation",
) -> str:
    """One line: the number of violations, what was checked, and how long it took.

    ``verdict_line(0, [(119_569, "image"), (93, "state")], 90.2)`` is
    ``"0 violations: 119,569 images, 93 states, 90 s"``. With ``inconclusive`` (the reason
    a budget ran out) the line starts ``inconclusive (REASON):`` instead, because a run
    that stopped early has no verdict, whatever it found so far. ``found`` names what is
    counted in ``violations`` when it is not a violation (``"failed check"``)."""
    what = ", ".join(plural(*count) for count in counts)
    head = plural(violations, found)
    if inconclusive:
        head = f"inconclusive ({inconclusive}): {head}"
    return f"{head}: {what}, {format_seconds(seconds)}" if what else f"{head}, {format_seconds(seconds)}"


class Progress:
    """Progress of ``total`` units of work named ``label`` (see the module docstring).

    ``advance(n, violations=v)`` adds ``n`` done units and, if given, sets the number of
    violations found so far. ``describe(label)`` changes the label (e.g. the check now
    running). Safe to use from one thread; the plain-line printer reads the counters from
    its own thread."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        unit: str = "items",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.done = 0
        self.violations: int | None = None
        self.enabled = enabled
        self.interval = PLAIN_INTERVAL_SECONDS if interval is None else interval
        self._stream = stream
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich: RichProgress | None = None
        self._task = TaskID(0)

    @property
    def stream(self) -> TextIO:
        """Where progress goes: stderr unless told otherwise."""
        return self._stream if self._stream is not None else sys.stderr

    @property
    def elapsed(self) -> float:
        """Seconds since the context was entered."""
        return time.perf_counter() - self._started

    def eta(self) -> float | None:
        """Seconds left if the rest goes as fast as what is done; None when unknown
        (no total, nothing done yet, or all done)."""
        if self.total is None or not 0 < self.done < self.total:
            return None
        return self.elapsed * (self.total - self.done) / self.done

    def line(self) -> str:
        """The plain progress line: ``label: done/total unit, v violations, 45 s, ETA 56 s``
        (just ``label: 45 s`` for work that is neither sized nor counted)."""
        amount = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        parts = [f"{amount} {self.unit}"] if self.total is not None or self.done else []
        if self.violations is not None:
            parts.append(plural(self.violations, "violation"))
        parts.append(format_seconds(self.elapsed))
        left = self.eta()
        if left is not None:
            parts.append(f"ETA {format_seconds(left)}")
        return f"{self.label}: {', '.join(parts)}"

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        if not self.enabled:
            return self
        stream = self.stream
        if stream.isatty():
            columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            if self.total is not None:
                columns += [TextColumn("ETA"), TimeRemainingColumn()]
            bar = RichProgress(*columns, console=Console(file=stream), transient=True)
            bar.start()
            self._task = bar.add_task(self.label, total=self.total)
            self._rich = bar
        else:
            self._thread = threading.Thread(target=self._plain_lines, name="memoracle-progress", daemon=True)
            self._thread.start()
        return self

    def _plain_lines(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.stream.write(self.line() + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or full: progress is not worth dying for
                return

    def advance(self, n: int = 1, *, violations: int | None = None) -> None:
        """``n`` more units done; ``violations`` (if given) found so far."""
        self.done += n
        if violations is not None:
            self.violations = violations
        if self._rich is not None:
            found = "" if self.violations is None else f" ({plural(self.violations, 'violation')})"
            self._rich.update(self._task, advance=n, description=self.label + found)

    def update(self, done: int, total: int | None = None) -> None:
        """Set how many units are done (and the total, once it is known)."""
        self.done = done
        if total is not None:
            self.total = total
        if self._rich is not None:
            self._rich.update(self._task, completed=done, total=self.total)

    def describe(self, label: str) -> None:
        """Rename the work in progress (e.g. to the check now running)."""
        self.label = label
        if self._rich is not None:
            self._rich.update(self._task, description=label)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._rich is not None:
            self._rich.stop()


__all__ = ["PLAIN_INTERVAL_SECONDS", "Count", "Progress", "format_seconds", "plural", "verdict_line"]
