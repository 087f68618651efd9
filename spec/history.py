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
- ``id``, ``call`` and ``return`` are below ``2**63`` (they are kept in 64-bit columns);
  values (``arg``, ``result``) may be integers of any size.

Version 1 has no pending operations: every operation has returned. A reader of this
module rejects anything else with :class:`HistoryFormatError`, whose message names the
line and the reason (``line 7: "call" must be less than "return" (9 >= 9)``).

What a reader accepts, exactly
------------------------------
- The file is UTF-8 (a byte that is not names its line); lines end in ``\\n`` or
  ``\\r\\n``; blank lines are skipped.
- A line is at most :data:`MAX_LINE_BYTES` bytes (1 MiB, its line end included): an
  operation takes about a hundred, so a longer line is a broken file, and refusing it
  bounds the reader's memory whatever it is given (``/dev/zero`` included).
- Every object (header and operations) has each key once: a repeated key is an error, not
  "the last one wins". ``"version"`` is the integer ``1`` (not ``true``, not ``1.0``).
- Strings are Unicode text: an escaped lone surrogate (``"\\ud800"``) is refused, so
  every name and value can be printed. An operation is a flat object: nesting (``[[[...``)
  is refused with its line, however deep.
- Reading takes time linear in the file and memory linear in the number of operations.

The in-memory :class:`History` is columnar (``array`` columns), so that a history of
ten million operations fits in a few hundred MiB; :meth:`History.operation` gives a
row as an :class:`Operation`.
"""

from __future__ import annotations

import json
import operator
import re
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from itertools import islice, repeat
from typing import IO, Any, BinaryIO, Callable, Iterable, Iterator, Literal, Union

FORMAT_NAME = "memoracle-history"
FORMAT_VERSION = 1
SPEC_NAME = "bounded-queue"

#: A value pushed or popped: an integer or a string.
Value = Union[int, str]
#: A thread name.
Thread = Union[int, str]
Kind = Literal["push", "pop"]

PUSH, POP = 0, 1  # the compact reader stores "arg is None" as the kind: POP must be 1
_KIND_CODE = {"push": PUSH, "pop": POP}
_KIND_NAME: tuple[Kind, Kind] = ("push", "pop")
_KEYS = ("id", "thread", "kind", "arg", "result", "call", "return")
#: ids, calls and returns live in signed 64-bit columns, so they must be below this.
_STAMP_LIMIT = 2**63
#: The longest line a reader accepts, in bytes, its line end included.
MAX_LINE_BYTES = 1 << 20


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
        "_thread_codes",
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
        self._thread_codes: dict[tuple[type, Thread], int] = {}
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

    @classmethod
    def from_trusted_operations(cls, operations: Iterable[Operation], capacity: int) -> History:
        """A history holding ``operations`` as they are, without the reader's validation:
        for generators whose operations are well-formed by construction. The caller owns
        the format's guarantees (distinct ids, ``call < return``, answers of the right
        kinds); :meth:`check_invariants` asserts the column ones afterwards if wanted."""
        history = cls(capacity)
        for op in operations:
            history._append(op.id, op.thread, op.kind, op.arg, op.result, op.call, op.ret)
        return history

    def _thread_code(self, thread: Thread) -> int:
        """The code of ``thread`` (a new one, in order of first appearance, if unseen);
        constant time, so that 100k distinct names cost no more than 100k lookups."""
        key = (type(thread), thread)
        code = self._thread_codes.get(key)
        if code is None:
            code = self._thread_codes[key] = len(self.thread_names)
            self.thread_names.append(thread)
        return code

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

    def _check_distinct_ids(self, line_of: Callable[[int], int] | None) -> None:
        """Raise :class:`HistoryFormatError` at the line (``line_of(row)``, else row + 1)
        of the first row whose id an earlier row already has."""
        n = len(self.ids)
        if self.ids == array("q", range(n)):
            return
        seen: set[int] = set()
        for index, ident in enumerate(self.ids):
            if ident in seen:
                line = line_of(index) if line_of is not None else index + 1
                raise HistoryFormatError(line, f'duplicate "id" {ident}')
            seen.add(ident)

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
    version = obj.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise HistoryFormatError(
            1, f'unsupported "version" {_show(version)} (this reader knows {FORMAT_VERSION})'
        )
    if obj.get("spec") != SPEC_NAME:
        raise HistoryFormatError(1, f'the header must have "spec": "{SPEC_NAME}"')
    capacity = obj.get("capacity")
    if type(capacity) is not int or capacity < 1:
        raise HistoryFormatError(1, f'"capacity" must be a positive integer, not {_show(capacity)}')
    return capacity


def _is_value(value: object) -> bool:
    return type(value) is int or type(value) is str


def is_text(value: str) -> bool:
    """Whether ``value`` is Unicode text (no lone surrogate), so that it can be printed."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: object) -> str:
    """``value`` for an error message: JSON, ASCII only (a lone surrogate prints as its
    escape), cut to 60 characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``json`` object hook: the object, unless a key repeats (then :class:`_DuplicateKey`)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def parse_json_line(text: str, line: int) -> object:
    """Parse one line of JSON under the reader's rules (see the module docstring):
    :class:`HistoryFormatError` naming ``line`` for bad JSON, a repeated key, nesting
    too deep for the parser, or an escaped lone surrogate anywhere in the line."""
    try:
        obj = json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as duplicate:
        raise HistoryFormatError(line, f"the key {_show(duplicate.key)} appears twice in one object") from None
    except RecursionError:
        raise HistoryFormatError(line, "nested too deeply to be an operation") from None
    except ValueError as error:
        raise HistoryFormatError(line, f"not valid JSON ({error.args[0].split(':')[0]})") from None
    if "\\u" in text and not _all_text(obj):
        raise HistoryFormatError(line, "a string holds a lone surrogate (\\ud800-\\udfff): not Unicode text")
    return obj


def _all_text(obj: object) -> bool:
    """Whether every string in ``obj`` (keys included) is Unicode text (iterative)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _validate_record(obj: object, line: int) -> dict[str, Any]:
    """``obj``, if it is a valid format-1 operation; else :class:`HistoryFormatError`."""
    if not isinstance(obj, dict):
        raise HistoryFormatError(line, f"an operation must be a JSON object, not {_type_name(obj)}")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise HistoryFormatError(line, f"missing key {_show(missing[0])}")
    extra = sorted(k for k in obj if k not in _KEYS)
    if extra:
        raise HistoryFormatError(line, f"unknown key {_show(extra[0])}")
    ident = obj["id"]
    if type(ident) is not int or ident < 0:
        raise HistoryFormatError(line, f'"id" must be a non-negative integer, not {_show(ident)}')
    if ident >= _STAMP_LIMIT:
        raise HistoryFormatError(line, f'"id" {ident} is too large (the limit is 2**63 - 1)')
    thread = obj["thread"]
    if not _is_value(thread):
        raise HistoryFormatError(line, f'"thread" must be a string or an integer, not {_show(thread)}')
    kind = obj["kind"]
    if kind not in ("push", "pop"):
        raise HistoryFormatError(line, f'"kind" must be "push" or "pop", not {_show(kind)}')
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
            raise HistoryFormatError(line, f'a pop\'s "arg" must be null, not {_show(arg)}')
        if result is not None and not _is_value(result):
            raise HistoryFormatError(
                line,
                f'a pop\'s "result" must be an integer, a string or null, not {_type_name(result)}',
            )
    for key in ("thread", "arg", "result"):
        if type(obj[key]) is str and not is_text(obj[key]):
            raise HistoryFormatError(line, f'"{key}" holds a lone surrogate: not Unicode text')
    call, ret = obj["call"], obj["return"]
    for key, stamp in (("call", call), ("return", ret)):
        if type(stamp) is not int or stamp < 0:
            raise HistoryFormatError(line, f'"{key}" must be a non-negative integer, not {_show(stamp)}')
        if stamp >= _STAMP_LIMIT:
            raise HistoryFormatError(line, f'"{key}" {stamp} is too large (the limit is 2**63 - 1)')
    if not call < ret:
        raise HistoryFormatError(line, f'"call" must be less than "return" ({call} >= {ret})')
    return obj


# ---------------------------------------------------------------------- reading
#
# How reading is fast and still exact
# ------------------------------------
# The reference is the *precise* reader, :func:`_append_precise`: one line at a time,
# ``json.loads`` and :func:`_validate_record`. Two faster paths sit in front of it, and
# each either appends exactly what the precise reader would have appended or appends
# nothing and hands the lines on (so every error is still raised by the precise reader,
# with its line and reason):
#
# 1. *Compact runs* (:func:`_append_compact`): a maximal run of whole lines in the
#    writer's compact form is recognised by one possessive regular expression,
#    :data:`_COMPACT_RUN`, whose grammar admits only valid operations (kinds and shapes,
#    non-negative ids and stamps of at most 18 digits); its match tiles the run by
#    construction (each repetition is one whole line, ``\n`` included). The run is then
#    rewritten by one ``str.translate`` into a flat JSON array of keys and values and
#    parsed by one ``json.loads``; columns are slices of that array, converted by
#    ``map``s that iterate in C (only the value column takes a list comprehension).
#    The one rule the grammar cannot express, ``call < return``, is checked column-wise;
#    if it fails, the run goes to the precise reader.
# 2. *JSON chunks* (:func:`_append_json_lines`): lines in any other layout (spaces, key
#    order, escapes) are parsed as one JSON array and validated column by column.
#
# A line the compact grammar refuses is read precisely, and the compact path resumes at
# the next line; after two such lines in a row the rest of the block is taken as a JSON
# chunk. Files are read in blocks of :data:`_BLOCK_CHARS` characters cut at line ends.

#: Characters of a block read from a file (cut back to the last line end); small
#: enough that a block's parsed items stay in the CPU caches.
_BLOCK_CHARS = 1 << 18
#: Lines joined into one block by :func:`read_history_lines`.
_CHUNK_LINES = 1 << 12

# A string without escapes and without the four characters that _TO_FLAT_JSON rewrites.
_COMPACT_STR = r'"[^"\\\x00-\x1f:{}]*"'
# At most 18 digits: below 10**18 < 2**63, so the columns never overflow.
_COMPACT_NAT = r"(?:0|[1-9][0-9]{0,17})"
_COMPACT_INT = rf"-?{_COMPACT_NAT}"
_COMPACT_LINE = (
    rf'\{{"id":{_COMPACT_NAT},"thread":(?:{_COMPACT_STR}|{_COMPACT_INT}),"kind":"(?:'
    rf'push","arg":(?:{_COMPACT_INT}|{_COMPACT_STR}),"result":(?:true|false)'
    rf'|pop","arg":null,"result":(?:null|{_COMPACT_INT}|{_COMPACT_STR})'
    rf'),"call":{_COMPACT_NAT},"return":{_COMPACT_NAT}\}}\n'
)
#: Zero or more whole compact lines (possessive: never gives a line back).
_COMPACT_RUN = re.compile(rf"(?:{_COMPACT_LINE})*+")
#: Compact lines -> the items of a flat JSON array: ``"id",0,"thread","p",...,"return",9,``.
_TO_FLAT_JSON = str.maketrans({":": ",", "{": " ", "}": " ", "\n": ","})
#: Items per compact line in that array (seven keys, seven values).
_FLAT_WIDTH = 14


class _LineMap:
    """Which line each row came from, as runs of consecutive rows on consecutive lines."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.lines: list[int] = []
        self.end_row = self.end_line = -1

    def add(self, row: int, line: int, count: int) -> None:
        """Rows ``row .. row+count-1`` came from lines ``line .. line+count-1``."""
        if count <= 0:
            return
        if row != self.end_row or line != self.end_line:
            self.rows.append(row)
            self.lines.append(line)
        self.end_row, self.end_line = row + count, line + count

    def line_of(self, row: int) -> int:
        """The line of ``row`` (which must have been added)."""
        run = bisect_right(self.rows, row) - 1
        return self.lines[run] + row - self.rows[run]


def _extend_values(history: History, plain: list[Value]) -> None:
    """Append values, moving the column to a list once one is not a 64-bit integer."""
    if isinstance(history.values, array):
        try:
            history.values.extend(array("q", plain))  # type: ignore[arg-type]
        except (TypeError, OverflowError):
            history.values = list(history.values)
    if isinstance(history.values, list):
        history.values.extend(plain)


def _extend_threads(history: History, threads: list[Thread]) -> None:
    """Append the thread column (new names get codes in order of first appearance)."""
    code = {name: history._thread_code(name) for name in dict.fromkeys(threads)}
    history.thread_index.extend(map(code.__getitem__, threads))


def _append_compact(history: History, text: str) -> int:
    """Append the operations of ``text``: whole lines, each matched by
    :data:`_COMPACT_LINE`, and return how many. Returns 0, appending nothing, if some
    operation has ``call >= return`` (the only rule the grammar does not enforce)."""
    # The translation leaves a trailing comma; the 0 after it is one spare item.
    items = json.loads("[" + text.translate(_TO_FLAT_JSON) + "0]")
    width = _FLAT_WIDTH
    calls = array("q", items[11::width])
    rets = array("q", items[13::width])
    if not all(map(operator.lt, calls, rets)):
        return 0
    args: list[Value | None] = items[7::width]
    results: list[Value | bool | None] = items[9::width]
    history.ids.extend(array("q", items[1::width]))
    _extend_threads(history, items[3::width])
    # a pop's arg is null and a push's is not (the grammar says so): kind = POP iff arg is None
    history.kinds.extend(map(operator.is_, args, repeat(None)))
    # ok: a push answered true, or a pop answered a value (the grammar allows no other mix)
    history.oks.extend(
        map(
            operator.and_,
            map(operator.is_not, results, repeat(None)),
            map(operator.is_not, results, repeat(False)),
        )
    )
    # the value: a push's arg, a pop's result, 0 for an empty pop
    _extend_values(
        history,
        [arg if arg is not None else (0 if res is None else res) for arg, res in zip(args, results)],
    )
    history.calls.extend(calls)
    history.rets.extend(rets)
    return len(calls)


#: An escape that may be half of a surrogate pair (lines holding one are read precisely).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_VALUE_TYPES = {int, str}
_OK_SHAPES = {
    ("push", int, bool),
    ("push", str, bool),
    ("pop", type(None), int),
    ("pop", type(None), str),
    ("pop", type(None), type(None)),
}
_get = [operator.itemgetter(k) for k in _KEYS]


def _append_json_lines(history: History, lines: list[str]) -> bool:
    """Append the operations on ``lines`` (any JSON layout) if every line is a valid
    operation; return False, appending nothing, if any is not or a line is blank."""
    text = ",".join(lines)
    if _SURROGATE_ESCAPE.search(text):
        return False  # the precise reader checks every string
    try:
        records = json.loads("[" + text + "]", object_pairs_hook=_unique_pairs)
    except (ValueError, RecursionError):
        return False
    if set(map(type, records)) != {dict} or set(map(len, records)) != {7}:
        return False
    try:
        ids, threads, kinds, args, results, calls, rets = (list(map(g, records)) for g in _get)
    except KeyError:
        return False
    if set(map(type, ids)) != {int} or not 0 <= min(ids) <= max(ids) < _STAMP_LIMIT:
        return False
    if not set(map(type, threads)) <= _VALUE_TYPES:
        return False
    if not set(zip(kinds, map(type, args), map(type, results))) <= _OK_SHAPES:
        return False
    if set(map(type, calls)) != {int} or set(map(type, rets)) != {int}:
        return False
    if min(calls) < 0 or max(rets) >= _STAMP_LIMIT or not all(map(operator.lt, calls, rets)):
        return False
    history.ids.extend(ids)
    _extend_threads(history, threads)
    history.kinds.extend(map(_KIND_CODE.__getitem__, kinds))
    is_pop = [k == "pop" for k in kinds]
    values = [r if p else a for a, r, p in zip(args, results, is_pop)]
    history.oks.extend([r is not None if p else r for r, p in zip(results, is_pop)])
    _extend_values(history, [0 if v is None else v for v in values])
    history.calls.extend(calls)
    history.rets.extend(rets)
    return True


def _append_precise(history: History, lines: Iterable[str], first_line: int, line_map: _LineMap) -> None:
    """The reference reader: line by line, blank lines skipped; raises
    :class:`HistoryFormatError` at the first malformed line."""
    for number, text in enumerate(lines, start=first_line):
        if not text.strip():
            continue
        obj = _validate_record(parse_json_line(text, number), number)
        line_map.add(len(history), number, 1)
        history._append(
            obj["id"], obj["thread"], obj["kind"], obj["arg"], obj["result"], obj["call"], obj["return"]
        )


def _append_lines_of(history: History, lines: list[str], first_line: int, line_map: _LineMap) -> None:
    """Append ``lines`` (any layout) as a JSON chunk, or precisely if that fails."""
    row = len(history)
    if _append_json_lines(history, lines):
        line_map.add(row, first_line, len(lines))
    else:
        _append_precise(history, lines, first_line, line_map)


def _append_block(history: History, text: str, first_line: int, line_map: _LineMap) -> int:
    """Append the operations on the lines of ``text`` (whole lines, each ending in
    ``\\n``; the first is line ``first_line``), exactly as :func:`_append_precise` would;
    return the number of the line after the block."""
    pos, line, size = 0, first_line, len(text)
    odd_line_before = False
    while pos < size:
        run = _COMPACT_RUN.match(text, pos)
        end = run.end() if run is not None else pos
        if end > pos:
            row = len(history)
            count = _append_compact(history, text if end - pos == size else text[pos:end])
            if count:
                line_map.add(row, line, count)
            else:
                lines = text[pos:end].split("\n")[:-1]
                count = len(lines)
                _append_precise(history, lines, line, line_map)
            pos, line, odd_line_before = end, line + count, False
        elif not odd_line_before:
            end = text.index("\n", pos) + 1
            _append_precise(history, (text[pos:end],), line, line_map)
            pos, line, odd_line_before = end, line + 1, True
        else:
            lines = text[pos:].split("\n")[:-1]
            _append_lines_of(history, lines, line, line_map)
            return line + len(lines)
    return line


def _read_header(text: str | None) -> History:
    if text is None or not text.strip():
        raise HistoryFormatError(1, "empty file: expected a history header")
    try:
        header = json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as duplicate:
        raise HistoryFormatError(1, f"the key {_show(duplicate.key)} appears twice in the header") from None
    except (ValueError, RecursionError):
        raise HistoryFormatError(1, "the header is not valid JSON") from None
    return History(_validate_header(header))


def read_history_lines(lines: Iterable[str]) -> History:
    """Parse a format-1 history from its lines; :class:`HistoryFormatError` if malformed.

    Each item of ``lines`` is one line (with or without its ``\\n``); line numbers in
    errors count items. Items are joined in chunks of :data:`_CHUNK_LINES` and read by
    the fast paths described above; a chunk in which some item holds more than one line
    is read item by item.
    """
    iterator = iter(lines)
    history = _read_header(next(iterator, None))
    line_map = _LineMap()
    next_line = 2
    while True:
        chunk = list(islice(iterator, _CHUNK_LINES))
        if not chunk:
            break
        if not all(map(str.endswith, chunk, repeat("\n"))):
            chunk = [text if text.endswith("\n") else text + "\n" for text in chunk]
        text = "".join(chunk)
        if text.count("\n") == len(chunk):  # every item is exactly one line
            _append_block(history, text, next_line, line_map)
        else:
            _append_lines_of(history, chunk, next_line, line_map)
        next_line += len(chunk)
    history._check_distinct_ids(line_map.line_of)
    return history


def _decode(data: bytes, first_line: int) -> str:
    """``data`` (whole lines) as text with ``\\r\\n`` turned into ``\\n``; a byte that is not
    UTF-8 raises :class:`HistoryFormatError` naming its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + data.count(b"\n", 0, error.start)
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise HistoryFormatError(line, f"not UTF-8 text ({error.reason} at byte {column} of the line)") from None
    return text.replace("\r\n", "\n") if "\r" in text else text


def _too_long(line: int, max_line: int) -> HistoryFormatError:
    return HistoryFormatError(line, f"longer than the longest line this reader accepts ({max_line} bytes)")


def read_line(handle: BinaryIO, line: int = 1, max_line: int = MAX_LINE_BYTES) -> str | None:
    """One line of ``handle`` decoded (``None`` at end of file), reading at most
    ``max_line + 1`` bytes: :class:`HistoryFormatError` naming ``line`` if it is longer
    than ``max_line`` bytes (its line end included) or not UTF-8."""
    data = handle.readline(max_line + 1)
    if not data:
        return None
    if len(data) > max_line:
        raise _too_long(line, max_line)
    return _decode(data, line)


def line_blocks(
    handle: BinaryIO, first_line: int = 1, *, block_bytes: int | None = None, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[str, int]]:
    """The rest of ``handle`` as blocks of whole lines: ``(text, number of its first
    line)``, each text a run of lines ending in ``\\n`` (``\\r\\n`` turned into ``\\n``; a
    last line without one gets one).

    Guarantees: every byte is read once and joined at most once (time linear in the
    file); a line longer than ``max_line`` bytes (its line end included) raises
    :class:`HistoryFormatError` naming it as soon as that many bytes have been read
    without a line end (memory bounded by ``max_line`` plus one block); a byte that is
    not UTF-8 names its line.
    """
    size = min(block_bytes or _BLOCK_CHARS, max_line)
    line = first_line
    pieces: list[bytes] = []  # the start of an unfinished line
    pending = 0
    while True:
        block = handle.read(size)
        if not block:
            break
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            pieces.append(block)
            pending += len(block)
            if pending >= max_line:
                raise _too_long(line, max_line)
            continue
        if pieces:
            if pending + block.index(b"\n") + 1 > max_line:
                raise _too_long(line, max_line)
            pieces.append(block[:cut])
            data = b"".join(pieces)
        else:
            data = block if cut == len(block) else block[:cut]
        yield _decode(data, line), line
        line += data.count(b"\n")
        pieces = [block[cut:]] if cut < len(block) else []
        pending = len(block) - cut
    if pending:
        yield _decode(b"".join(pieces) + b"\n", line), line


def read_history(path: str) -> History:
    """Read a format-1 history file (see the module docstring).

    The file is read in binary blocks of about :data:`_BLOCK_CHARS` bytes cut at line
    ends (:func:`line_blocks`), decoded as UTF-8; errors name the line exactly as
    :func:`read_history_lines` would for the file's lines.
    """
    with open(path, "rb") as handle:
        history = _read_header(read_line(handle, 1))
        line_map = _LineMap()
        for text, first_line in line_blocks(handle, 2):
            _append_block(history, text, first_line, line_map)
    history._check_distinct_ids(line_map.line_of)
    return history


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
