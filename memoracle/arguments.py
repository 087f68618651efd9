"""The argparse pieces every ``memoracle`` command shares.

- :class:`Parser`: bad usage prints **one line** on stderr that names the command's own
  help (``memoracle crash umfs: argument --ops: must be at least 1, not 0 (see
  'memoracle crash umfs --help')``) and exits 2; never a usage dump, never a traceback.
- :class:`DefaultsFormatter`: every option's help ends with its default, unless the help
  already states it.
- Option types: each validates while parsing and raises :class:`argparse.ArgumentTypeError`
  with a reason a person can act on, so a command never runs on a value it cannot honour
  (``--pct -5`` is refused; it does not "check" nothing and print ok).

Use them in a system's ``cli.py``::

    from memoracle.arguments import int_in, output_file

    sub.add_argument("--ops", type=int_in(1, 4), default=2, help="workload length")
    sub.add_argument("--html", type=output_file, help="write a timeline here")

A sub-command group is added with :func:`add_subcommands`, so that a missing
sub-command is reported by its choices, never by an internal ``dest`` name.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from memoracle.exitcodes import EXIT_USAGE
from memoracle.output import one_line

#: The largest seed any command accepts: seeds are unsigned 64-bit integers.
MAX_SEED = (1 << 64) - 1


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help when it has a default worth saying
    (not ``None``, not ``False``) and the help does not already mention one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            text
            and "default" not in text
            and default is not None
            and default is not False
            and default != argparse.SUPPRESS
            and (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage is one line on stderr naming this command's help, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse, but an argument with a NUL byte (possible only when called from
        Python: no shell can pass one) is refused, as the OS would refuse it as a path;
        and a command with no sub-commands of its own refuses arguments it does not know
        itself, so that the message names its own help (argparse would leave them to the
        top-level parser, which names ``memoracle --help``)."""
        if args is not None and any("\x00" in str(arg) for arg in args):
            self.error("an argument contains a NUL byte")
        self._arguments = [str(arg) for arg in (sys.argv[1:] if args is None else args)]
        namespace, extras = super().parse_known_args(args, namespace)
        leaf = not any(isinstance(action, argparse._SubParsersAction) for action in self._actions)
        if leaf and extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse drops a lone "--" from an option's value, so "--ops=--" would give []
        # to a one-value option (bypassing its type): refuse it as a missing value.
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "expected one argument")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: MESSAGE (see 'PROG --help')`` and exit 2."""
        if message.endswith(f"required: {_COMMAND}"):
            names = [name for action in self._actions if isinstance(action, argparse._SubParsersAction)
                     for name in action.choices]  # fmt: skip
            message = f"missing the command: one of {', '.join(names)}"
            known = {option for action in self._actions for option in action.option_strings}
            unknown = [arg for arg in getattr(self, "_arguments", []) if arg.startswith("-") and arg.split("=")[0] not in known]
            if unknown:  # argparse reports the missing command first; the unknown option is the news
                message = f"unrecognized arguments: {' '.join(unknown)}; {message}"
        raise SystemExit(usage_error(self.prog, message))


def usage_error(prog: str, message: str) -> int:
    """Write ``PROG: MESSAGE (see 'PROG --help')`` on stderr as one line; return 2.

    For usage errors found after parsing (options that do not go together)."""
    sys.stderr.write(one_line(f"{prog}: {message} (see '{prog} --help')") + "\n")
    return EXIT_USAGE


_COMMAND = "COMMAND"


def add_subcommands(parser: argparse.ArgumentParser, dest: str, names_help: str) -> Any:
    """A required sub-command group on ``parser`` whose sub-parsers are :class:`Parser`\\ s.

    A missing sub-command is reported as ``the following arguments are required:
    COMMAND`` (with ``COMMAND`` listed in the help), never by ``dest``."""
    return parser.add_subparsers(
        dest=dest, required=True, metavar=_COMMAND, title="commands", help=names_help, parser_class=Parser
    )


# --------------------------------------------------------------------------- numbers


def _parse_int(text: str) -> int:
    try:
        return int(text.replace("_", ""), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants an integer, not {text!r}") from None


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]`` (``high=None``: no upper bound)."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:,}, not {value:,}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {value:,}")
        return value

    parse.__name__ = f"integer in [{low}, {'∞' if high is None else high}]"
    return parse


#: An integer ≥ 1.
positive_int = int_in(1)
#: An integer ≥ 0.
non_negative_int = int_in(0)
#: A seed: an integer in [0, 2**64 - 1].
seed = int_in(0, MAX_SEED)


def power_of_two(high: int) -> Callable[[str], int]:
    """A power of two in ``[1, high]``."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if value < 1 or value & (value - 1) or value > high:
            raise argparse.ArgumentTypeError(f"must be a power of two from 1 to {high:,}, not {value:,}")
        return value

    parse.__name__ = f"power of two up to {high}"
    return parse


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"wants a finite number, not {text!r}")
    return value


def float_in(low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        value = _parse_float(text)
        if value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"must be {'more than' if low_open else 'at least'} {low:g}, not {value:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, not {value:g}")
        return value

    parse.__name__ = "number"
    return parse


#: A number of seconds > 0 (at most one day).
positive_seconds = float_in(0.0, 86_400.0, low_open=True)
#: A number of seconds ≥ 0 (at most one day).
non_negative_seconds = float_in(0.0, 86_400.0)


# --------------------------------------------------------------------------- paths


def input_file(text: str) -> Path:
    """An existing file that is not a directory (its contents are the reader's business)."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("wants a file name, not an empty string")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: No such file or directory")
    return path


def output_file(text: str) -> Path:
    """A file to write: not a directory, in a directory that exists."""
    if not text:
        raise argparse.ArgumentTypeError("wants a file name, not an empty string")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory {str(parent)!r}")
    return path


def output_directory(text: str) -> Path:
    """A directory to write into: one that exists, or one whose parent exists."""
    if not text:
        raise argparse.ArgumentTypeError("wants a directory name, not an empty string")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    if not path.exists() and not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory {str(path.parent)!r}")
    return path


def prepare_directory(path: Path) -> str | None:
    """Create ``path`` if needed and make sure a file can be written in it, *before* any
    long work; the one-line reason if not (``None`` when it is writable)."""
    try:
        path.mkdir(exist_ok=True)
    except OSError as error:
        return f"cannot write in {path}: {error.strerror or error}"
    return _probe(path)


def check_writable(path: Path) -> str | None:
    """Whether a file can be created next to ``path`` (its directory is writable),
    checked *before* any long work; the one-line reason if not."""
    return _probe(path.parent)


def _probe(directory: Path) -> str | None:
    probe = directory / f".memoracle-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return f"cannot write in {directory}: {error.strerror or error}"
    return None


__all__ = [
    "MAX_SEED",
    "DefaultsFormatter",
    "Parser",
    "add_subcommands",
    "check_writable",
    "float_in",
    "input_file",
    "int_in",
    "non_negative_int",
    "non_negative_seconds",
    "output_directory",
    "output_file",
    "positive_int",
    "positive_seconds",
    "power_of_two",
    "prepare_directory",
    "seed",
    "usage_error",
]
