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
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO, cast


class OutputError(Exception):
    """Standard output could not be written (the message says why)."""


class _GuardedStream:
    """A text stream that forwards to ``inner`` and handles its write errors."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.broken_pipe = False

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

    def write(self, text: str) -> int:
        """Write ``text`` (or throw it away if the reader has gone)."""
        written: int = self._guard("write", self.inner.write, text)
        return written

    def flush(self) -> None:
        """Flush (quietly, if the reader has gone)."""
        self._guard("flush", self.inner.flush)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, errors, …
        return getattr(self.inner, name)


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


__all__ = ["OutputError", "guarded_stdout"]
