"""Histories of a concurrent bounded queue, and the versioned file format they live in.

A *history* is a set of complete operations, each with the thread that ran it, what it
did (``push`` with an argument, ``pop``), what it answered, and two stamps: ``call``
(taken just before the operation started) and ``return`` (just after it finished).
Operation ``a`` *precedes* ``b`` in real time exactly when ``a.ret < b.call``; equal
stamps mean "concurrent" (so coarse clocks are safe, never wrong, only weaker).

History format, version 1 (JSON lines, UTF-8)
---------------------------------------------

Line 1 is a header object::

    {"format": "memoracle-history", "version": 1, "spec": "bounded-queue", "capacity": 8}

Every other non-blank line is one operation, an object with exactly these seven keys::

    {"id": 0, "thread": "producer", "kind": "push", "arg": 17, "result": true,
     "call": 1, "return": 4}
    {"id": 1, "thread": "consumer", "kind": "pop", "arg": null, "result": 17,
     "call": 2, "return": 6}
    {"id": 2, "thread": "consumer", "kind": "pop", "arg": null, "result": null,
     "call": 7, "return": 8}

- ``id``: a non-negative integer, distinct across the file.
- ``thread``: a string or an integer naming the thread (operations of one thread must
  not overlap in time: each returns before the next one is called).
- ``kind`` ``"push"``: ``arg`` is the value (an integer or a string), ``result`` is
  ``true`` (pushed) or ``false`` (the queue answered "full").
- ``kind`` ``"pop"``: ``arg`` is ``null``; ``result`` is the value popped, or ``null``
  (the queue answered "empty").
- ``call`` and ``return``: non-negative integers from one clock shared by all threads,
  with ``call < return``. Operations may appear in any order in the file.

Version 1 has no pending operations: every operation has returned. A reader of this
module rejects anything else with :class:`HistoryFormatError`, whose message names the
line and the reason (``line 7: "call" must be less than "return" (9 >= 9)``).

The in-memory :class:`History` is columnar (``array`` columns), so that a history of
ten million operations fits in a few hundred MiB; :meth:`History.operation` gives a
row as an :class:`Operation`.
"""

from __future__ import annotations

import json
import operator
import re
from array import array
from dataclasses import dataclass
from itertools import islice
from typing import IO, Iterable, Iterator, Literal, Sequence, Union

FORMAT_NAME = "memoracle-history"
FORMAT_VERSION = 1
SPEC_NAME = "bounded-queue"

#: A value pushed or popped: an integer or a string.
Value = Union[int, str]
#: A thread name.
Thread = Union[int, str]
Kind = Literal["push", "pop"]

PUSH, POP = 0, 1
_KIND_CODE = {"push": PUSH, "pop": POP}
_KIND_NAME: tuple[Kind, Kind] = ("push", "pop")
_KEYS = ("id", "thread", "kind", "arg", "result", "call", "return")
_CHUNK_LINES = 1 << 16


class HistoryFormatError(ValueError):
    """A malformed history: ``line`` is 1-based (0 when not tied to one line)."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}" if line else reason)


@dataclass(frozen=True)
class Operation:
    """One complete operation of a queue history.

    ``push``: ``arg`` is the value, ``result`` is ``True`` (pushed) or ``False`` (full).
    ``pop``: ``arg`` is ``None``, ``result`` is the value or ``None`` (empty).
    """

    id: int
    thread: Thread
    kind: Kind
    arg: Value | None
    result: Value | bool | None
    call: int
    ret: int

    @property
    def ok(self) -> bool:
        """Whether the operation succeeded (pushed, or popped a value)."""
        return self.result is True if self.kind == "push" else self.result is not None

    @property
    def value(self) -> Value | None:
        """The value pushed or popped (``None`` for an empty pop)."""
        return self.arg if self.kind == "push" else self.result

    def describe(self) -> str:
        """``push(17) -> true`` / ``pop() -> 17`` / ``pop() -> empty`` with thread and stamps."""
        if self.kind == "push":
            answer = "ok" if self.result else "full"
            text = f"push({self.arg!r}) -> {answer}"
        else:
            text = f"pop() -> {'empty' if self.result is None else repr(self.result)}"
        return f"#{self.id} [{self.thread}] {text} @[{self.call},{self.ret}]"

    def as_json(self) -> dict[str, object]:
        """The operation as a format-1 object."""
        return {
            "id": self.id,
            "thread": self.thread,
            "kind": self.kind,
            "arg": self.arg,
            "result": self.result,
            "call": self.call,
            "return": self.ret,
        }


class History:
    """A columnar history of a bounded queue of ``capacity``.

    Columns (all of length ``len(self)``): ``ids``, ``thread_index`` (into
    ``thread_names``), ``kinds`` (``PUSH``/``POP``), ``values`` (pushed or popped value;
    ``0`` for an empty pop), ``oks`` (1 = pushed / popped a value), ``calls``, ``rets``.
    Guarantees (checked by :meth:`check_invariants`): columns have equal lengths,
    ``calls[i] < rets[i]``, ids are distinct.
    """

    __slots__ = (
        "capacity",
        "ids",
        "thread_names",
        "thread_index",
        "kinds",
        "values",
        "oks",
        "calls",
        "rets",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ids: array[int] = array("q")
        self.thread_names: list[Thread] = []
        self.thread_index: array[int] = array("l")
        self.kinds = bytearray()
        self.values: array[int] | list[Value] = array("q")
        self.oks = bytearray()
        self.calls: array[int] = array("q")
        self.rets: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.ids)

    # -- building ------------------------------------------------------------------
    @classmethod
    def from_operations(cls, operations: Iterable[Operation], capacity: int) -> History:
        """A history holding ``operations`` (validated as the reader would)."""
        history = cls(capacity)
        for number, op in enumerate(operations, start=1):
            _validate_record(op.as_json(), number)
            history._append(op.id, op.thread, op.kind, op.arg, op.result, op.call, op.ret)
        history._check_distinct_ids(None)
        return history

    def _thread_code(self, thread: Thread) -> int:
        try:
            return self.thread_names.index(thread)
        except ValueError:
            self.thread_names.append(thread)
            return len(self.thread_names) - 1

    def _append_value(self, value: Value) -> None:
        if isinstance(self.values, array):
            if type(value) is int and -(2**63) <= value < 2**63:
                self.values.append(value)
                return
            self.values = list(self.values)
        self.values.append(value)

    def _append(
        self,
        id: int,
        thread: Thread,
        kind: str,
        arg: object,
        result: object,
        call: int,
        ret: int,
    ) -> None:
        self.ids.append(id)
        self.thread_index.append(self._thread_code(thread))
        if kind == "push":
            self.kinds.append(PUSH)
            self._append_value(arg)  # type: ignore[arg-type]
            self.oks.append(1 if result else 0)
        else:
            self.kinds.append(POP)
            self._append_value(0 if result is None else result)  # type: ignore[arg-type]
            self.oks.append(0 if result is None else 1)
        self.calls.append(call)
        self.rets.append(ret)

    def _check_distinct_ids(self, lines: Sequence[int] | None) -> None:
        n = len(self.ids)
        if self.ids == array("q", range(n)):
            return
        seen: dict[int, int] = {}
        for index, ident in enumerate(self.ids):
            if ident in seen:
                line = lines[index] if lines is not None else index + 1
                raise HistoryFormatError(line, f'duplicate "id" {ident}')
            seen[ident] = index

    # -- reading rows ----------------------------------------------------------------
    def operation(self, index: int) -> Operation:
        """Row ``index`` as an :class:`Operation`."""
        kind = _KIND_NAME[self.kinds[index]]
        value = self.values[index]
        ok = bool(self.oks[index])
        if kind == "push":
            arg: Value | None = value
            result: Value | bool | None = ok
        else:
            arg, result = None, (value if ok else None)
        return Operation(
            self.ids[index],
            self.thread_names[self.thread_index[index]],
            kind,
            arg,
            result,
            self.calls[index],
            self.rets[index],
        )

    def operations(self) -> list[Operation]:
        """Every row as an :class:`Operation`, in storage order."""
        return [self.operation(i) for i in range(len(self))]

    def index_of_id(self) -> dict[int, int]:
        """Map from operation id to row index."""
        return {ident: i for i, ident in enumerate(self.ids)}

    def subset(self, indices: Iterable[int]) -> History:
        """A new history with the given rows (same capacity)."""
        return History.from_operations((self.operation(i) for i in indices), self.capacity)

    def check_invariants(self) -> None:
        """Assert the column guarantees listed in the class docstring."""
        n = len(self.ids)
        for name in ("thread_index", "kinds", "values", "oks", "calls", "rets"):
            assert len(getattr(self, name)) == n, f"column {name} has the wrong length"
        assert all(map(operator.lt, self.calls, self.rets)), "an operation has call >= return"
        assert len(set(self.ids)) == n, "duplicate ids"
        assert all(0 <= t < len(self.thread_names) for t in self.thread_index)


# ---------------------------------------------------------------------- validation


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _validate_header(obj: object) -> int:
    if not isinstance(obj, dict):
        raise HistoryFormatError(1, "the header must be a JSON object")
    if obj.get("format") != FORMAT_NAME:
        raise HistoryFormatError(1, f'the header must have "format": "{FORMAT_NAME}"')
    if obj.get("version") != FORMAT_VERSION:
        raise HistoryFormatError(
            1, f'unsupported "version" {obj.get("version")!r} (this reader knows {FORMAT_VERSION})'
        )
    if obj.get("spec") != SPEC_NAME:
        raise HistoryFormatError(1, f'the header must have "spec": "{SPEC_NAME}"')
    capacity = obj.get("capacity")
    if type(capacity) is not int or capacity < 1:
        raise HistoryFormatError(1, f'"capacity" must be a positive integer, not {capacity!r}')
    return capacity


def _is_value(value: object) -> bool:
    return type(value) is int or type(value) is str


def _validate_record(obj: object, line: int) -> None:
    """Raise :class:`HistoryFormatError` unless ``obj`` is a valid format-1 operation."""
    if not isinstance(obj, dict):
        raise HistoryFormatError(line, f"an operation must be a JSON object, not {_type_name(obj)}")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise HistoryFormatError(line, f'missing key "{missing[0]}"')
    extra = sorted(k for k in obj if k not in _KEYS)
    if extra:
        raise HistoryFormatError(line, f'unknown key "{extra[0]}"')
    ident = obj["id"]
    if type(ident) is not int or ident < 0:
        raise HistoryFormatError(line, f'"id" must be a non-negative integer, not {ident!r}')
    thread = obj["thread"]
    if not _is_value(thread):
        raise HistoryFormatError(line, f'"thread" must be a string or an integer, not {thread!r}')
    kind = obj["kind"]
    if kind not in ("push", "pop"):
        raise HistoryFormatError(line, f'"kind" must be "push" or "pop", not {kind!r}')
    arg, result = obj["arg"], obj["result"]
    if kind == "push":
        if not _is_value(arg):
            raise HistoryFormatError(
                line, f'a push\'s "arg" must be an integer or a string, not {_type_name(arg)}'
            )
        if type(result) is not bool:
            raise HistoryFormatError(
                line, f'a push\'s "result" must be true or false, not {_type_name(result)}'
            )
    else:
        if arg is not None:
            raise HistoryFormatError(line, f'a pop\'s "arg" must be null, not {arg!r}')
        if result is not None and not _is_value(result):
            raise HistoryFormatError(
                line,
                f'a pop\'s "result" must be an integer, a string or null, not {_type_name(result)}',
            )
    call, ret = obj["call"], obj["return"]
    for key, stamp in (("call", call), ("return", ret)):
        if type(stamp) is not int or stamp < 0:
            raise HistoryFormatError(line, f'"{key}" must be a non-negative integer, not {stamp!r}')
    if not call < ret:
        raise HistoryFormatError(line, f'"call" must be less than "return" ({call} >= {ret})')


# ---------------------------------------------------------------------- reading

_VALUE_TYPES = {int, str}
_OK_SHAPES = {
    ("push", int, bool),
    ("push", str, bool),
    ("pop", type(None), int),
    ("pop", type(None), str),
    ("pop", type(None), type(None)),
}
_get = [operator.itemgetter(k) for k in _KEYS]


_STR = r'"[^"\\\x00-\x1f]*"'
_INT = r"-?(?:0|[1-9][0-9]*)"
_CANONICAL = re.compile(
    rf'^\{{"id":({_INT}),"thread":({_STR}|{_INT}),"kind":"(push|pop)","arg":({_INT}|{_STR}|null),'
    rf'"result":(true|false|null|{_INT}|{_STR}),"call":({_INT}),"return":({_INT})\}}\n',
    re.MULTILINE,
)


def _scalar(text: str) -> Value | None:
    if text[0] == '"':
        return text[1:-1]
    if text == "null":
        return None
    return int(text)


def _canonical_chunk(history: History, lines: list[str]) -> bool:
    """The fastest path: every line in the writer's compact form (no spaces, no escapes),
    matched by one regular expression; anything else goes to :func:`_fast_chunk`."""
    text = "".join(lines)
    if not text.endswith("\n"):
        text += "\n"
    rows = _CANONICAL.findall(text)
    if len(rows) != len(lines):
        return False
    ids_s, threads_s, kinds, args_s, results_s, calls_s, rets_s = zip(*rows)
    ids = list(map(int, ids_s))
    calls = list(map(int, calls_s))
    rets = list(map(int, rets_s))
    if min(ids) < 0 or min(calls) < 0 or not all(map(operator.lt, calls, rets)):
        return False
    shapes = set(zip(kinds, (a[0] for a in args_s), (r[0] for r in results_s)))
    # push: arg is a value (digit, '-' or '"'), result is t/f; pop: arg null, result any but t/f
    for kind, a, r in shapes:
        if kind == "push" and (a == "n" or r not in "tf"):
            return False
        if kind == "pop" and (a != "n" or r in "tf"):
            return False
    code = {}
    for name in sorted(set(threads_s)):
        code[name] = history._thread_code(_scalar(name))  # type: ignore[arg-type]
    history.ids.extend(ids)
    history.thread_index.extend(map(code.__getitem__, threads_s))
    history.kinds.extend(map(_KIND_CODE.__getitem__, kinds))
    is_pop = [k == "pop" for k in kinds]
    raw = [r if p else a for a, r, p in zip(args_s, results_s, is_pop)]
    history.oks.extend([(r != "null") if p else (r == "true") for r, p in zip(results_s, is_pop)])
    plain: list[Value] = [0 if v == "null" else _scalar(v) for v in raw]  # type: ignore[misc]
    if isinstance(history.values, array):
        try:
            history.values.extend(array("q", plain))  # type: ignore[arg-type]
        except (TypeError, OverflowError):
            history.values = list(history.values)
    if isinstance(history.values, list):
        history.values.extend(plain)
    history.calls.extend(calls)
    history.rets.extend(rets)
    return True


def _fast_chunk(history: History, lines: list[str]) -> bool:
    """Append a chunk of operation lines if every line is valid; False if any is not
    (the caller then re-reads the chunk line by line to name the first bad one)."""
    try:
        records = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        return False
    if set(map(type, records)) != {dict} or set(map(len, records)) != {7}:
        return False
    try:
        ids, threads, kinds, args, results, calls, rets = (list(map(g, records)) for g in _get)
    except KeyError:
        return False
    if set(map(type, ids)) != {int} or min(ids) < 0:
        return False
    if not set(map(type, threads)) <= _VALUE_TYPES:
        return False
    if not set(zip(kinds, map(type, args), map(type, results))) <= _OK_SHAPES:
        return False
    if set(map(type, calls)) != {int} or set(map(type, rets)) != {int} or min(calls) < 0:
        return False
    if not all(map(operator.lt, calls, rets)):
        return False
    history.ids.extend(ids)
    names = sorted(set(threads), key=repr)
    for name in names:
        history._thread_code(name)
    code = {name: history.thread_names.index(name) for name in names}
    history.thread_index.extend(map(code.__getitem__, threads))
    history.kinds.extend(map(_KIND_CODE.__getitem__, kinds))
    is_pop = [k == "pop" for k in kinds]
    values = [r if p else a for a, r, p in zip(args, results, is_pop)]
    history.oks.extend([r is not None if p else r for r, p in zip(results, is_pop)])
    plain = [0 if v is None else v for v in values]
    if isinstance(history.values, array):
        try:
            history.values.extend(array("q", plain))
        except (TypeError, OverflowError):
            history.values = list(history.values)
    if isinstance(history.values, list):
        history.values.extend(plain)
    history.calls.extend(calls)
    history.rets.extend(rets)
    return True


def _slow_chunk(history: History, lines: list[str], first_line: int, line_of: array[int]) -> None:
    for offset, text in enumerate(lines):
        number = first_line + offset
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as error:
            raise HistoryFormatError(number, f"not valid JSON ({error.args[0].split(':')[0]})")
        _validate_record(obj, number)
        history._append(
            obj["id"], obj["thread"], obj["kind"], obj["arg"], obj["result"], obj["call"], obj["return"]
        )
        line_of.append(number)


def read_history_lines(lines: Iterable[str]) -> History:
    """Parse a format-1 history from its lines; :class:`HistoryFormatError` if malformed.

    Reading is chunked: each chunk of 65,536 lines is parsed with one ``json.loads`` and
    validated column by column; a chunk that fails is re-read line by line, so the error
    names the first bad line exactly.
    """
    iterator = iter(lines)
    header_text = next(iterator, None)
    if header_text is None or not header_text.strip():
        raise HistoryFormatError(1, "empty file: expected a history header")
    try:
        header = json.loads(header_text)
    except ValueError:
        raise HistoryFormatError(1, "the header is not valid JSON") from None
    history = History(_validate_header(header))
    line_of: array[int] = array("q")
    next_line = 2
    while True:
        chunk = list(islice(iterator, _CHUNK_LINES))
        if not chunk:
            break
        before = len(history)
        if _canonical_chunk(history, chunk) or _fast_chunk(history, chunk):
            line_of.extend(range(next_line, next_line + len(chunk)))
        else:
            _truncate(history, before)
            _slow_chunk(history, chunk, next_line, line_of)
        next_line += len(chunk)
    history._check_distinct_ids(line_of)
    return history


def _truncate(history: History, length: int) -> None:
    for name in ("ids", "thread_index", "kinds", "values", "oks", "calls", "rets"):
        column = getattr(history, name)
        del column[length:]


def read_history(path: str) -> History:
    """Read a format-1 history file (see the module docstring)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return read_history_lines(handle)
    except UnicodeDecodeError as error:
        raise HistoryFormatError(0, f"not UTF-8 text ({error.reason})") from None


# ---------------------------------------------------------------------- writing


def header_line(capacity: int) -> str:
    """The format-1 header for a queue of ``capacity``."""
    return json.dumps(
        {"format": FORMAT_NAME, "version": FORMAT_VERSION, "spec": SPEC_NAME, "capacity": capacity}
    )


def history_lines(history: History) -> Iterator[str]:
    """The format-1 lines (without newlines) of ``history``, header first."""
    yield header_line(history.capacity)
    dumps = json.dumps
    for i in range(len(history)):
        yield dumps(history.operation(i).as_json(), separators=(",", ":"))


def write_history(path: str, history: History) -> None:
    """Write ``history`` to ``path`` in format 1."""
    with open(path, "w", encoding="utf-8") as handle:
        write_history_to(handle, history)


def write_history_to(handle: IO[str], history: History) -> None:
    """Write ``history`` to an open text stream in format 1."""
    for line in history_lines(history):
        handle.write(line)
        handle.write("\n")
