"""Standard output for commands: a reader that went away is quiet, a full disk is exit 2.

:func:`guarded_stdout` replaces ``sys.stdout`` (which ``print`` and rich both use) for
the duration of a command:

- **a closed pipe** (``memoracle check | head -3``): the rest of the output is thrown
  away quietly and the command runs to its end, so its exit code is still its verdict
  (``${PIPESTATUS[0]}``). No traceback, no "Exception ignored" at exit.
- **any other write error** (``> /dev/full``, an I/O error): :class:`OutputError` is
  raised out of the write, which the entry point turns into one line on stderr and exit 2.
  Buffered output is flushed before the context ends, so an error that would only show
  at interpreter exit is caught here too.

:func:`one_line_stderr` keeps each message on stderr one line in a log: line breaks and
control characters inside a write (from a file name, say) are escaped.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO, cast


class OutputError(Exception):
    """Standard output could not be written (the message says why)."""


class _GuardedStream:
    """A stream that forwards to ``inner`` and handles its write errors (text, or the
    binary ``buffer`` under it, which is guarded the same way)."""

    def __init__(self, inner: Any, shared: _GuardedStream | None = None) -> None:
        self.inner = inner
        self._shared = shared  # the text stream whose state a binary buffer shares
        self._broken_pipe = False

    @property
    def broken_pipe(self) -> bool:
        """Whether the reader has gone (then everything written is dropped)."""
        return self._shared.broken_pipe if self._shared is not None else self._broken_pipe

    @broken_pipe.setter
    def broken_pipe(self, value: bool) -> None:
        if self._shared is not None:
            self._shared.broken_pipe = value
        else:
            self._broken_pipe = value

    def _silence_descriptor(self) -> None:
        """Point the real descriptor at /dev/null, so that nothing flushed later fails."""
        try:
            fd = self.inner.fileno()
        except (OSError, ValueError, AttributeError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def _guard(self, action: str, call: Any, *args: Any) -> Any:
        if self.broken_pipe:
            return len(args[0]) if args else None
        try:
            return call(*args)
        except BrokenPipeError:
            self.broken_pipe = True
            self._silence_descriptor()
            return len(args[0]) if args else None
        except OSError as error:
            self._silence_descriptor()
            raise OutputError(f"cannot {action} standard output: {error.strerror or error}") from None

    def write(self, data: Any) -> int:
        """Write ``data`` (or throw it away if the reader has gone)."""
        written: int = self._guard("write", self.inner.write, data)
        return written

    @property
    def buffer(self) -> _GuardedStream:
        """The binary stream under standard output, guarded alike (text written so far
        is flushed first, so that the two keep their order)."""
        self.flush()
        return _GuardedStream(self.inner.buffer, shared=self)

    def flush(self) -> None:
        """Flush (quietly, if the reader has gone)."""
        self._guard("flush", self.inner.flush)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, errors, …
        return getattr(self.inner, name)


#: Characters that end a line for ``str.splitlines`` or move a terminal's cursor, and the
#: other C0 controls: escaped in what goes to a non-terminal stderr.
_BREAKS = {chr(c) for c in range(32) if chr(c) != "\t"} | {"\x7f", "\x85", "\u2028", "\u2029"}


def one_line(text: str) -> str:
    """``text`` with every line break and control character escaped (``\\n``,
    ``\\x1e``) but a final newline, so that it is one line wherever it is read."""
    body, end = (text[:-1], "\n") if text.endswith("\n") else (text, "")
    if not any(ch in _BREAKS for ch in body):
        return text
    return "".join(repr(ch)[1:-1] if ch in _BREAKS else ch for ch in body) + end


class _OneLineWrites:
    """stderr for logs: each write is one line (see :func:`one_line`)."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(one_line(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def one_line_stderr() -> Iterator[None]:
    """When stderr is not a terminal, escape line breaks and control characters inside
    each write (a path named ``"a\\nb"`` must not split an error into two lines of a
    log). A terminal gets what is written (progress bars draw with control codes)."""
    inner = sys.stderr
    if inner.isatty():
        yield
        return
    sys.stderr = cast(TextIO, _OneLineWrites(inner))
    try:
        yield
    finally:
        sys.stderr = inner


@contextmanager
def guarded_stdout() -> Iterator[None]:
    """Run the body with ``sys.stdout`` guarded (see the module docstring)."""
    inner = sys.stdout
    guard = _GuardedStream(inner)
    sys.stdout = cast(TextIO, guard)
    try:
        yield
        guard.flush()
    finally:
        sys.stdout = inner


__all__ = ["OutputError", "guarded_stdout", "one_line", "one_line_stderr"]
