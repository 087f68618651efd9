"""A small EDN reader for history files: streaming, linear, bounded, line-numbered.

EDN (extensible data notation, Clojure's data syntax) is what Jepsen writes histories in.
This reader is written here rather than taken from PyPI: ``edn_format`` (the maintained
one) rebuilds its PLY parser on every call (about a millisecond a line: 100k lines take
minutes), writes parser tables next to itself, raises assorted exception types
(``NotImplementedError`` for an unknown tag) and reports no line numbers.

What it reads: ``nil``, ``true``, ``false``; integers (``42``, ``-7``, ``42N``), floats
(``1.5``, ``1e3``, ``1.5M``), ratios (``1/3``); strings with the escapes ``\\t \\r \\n \\\\
\\" \\uXXXX``; characters (``\\a``, ``\\newline``, ``\\space``, ``\\tab``, ``\\uXXXX``);
keywords (``:ok``, ``:jepsen/x``) and symbols; vectors ``[]``, lists ``()``, maps ``{}``
and sets ``#{}``; tagged elements ``#tag value`` (kept as :class:`Tagged`); ``#_``
discards the next form; ``;`` comments; commas are whitespace.

Python values: vectors and lists become tuples, sets frozensets, maps :class:`EdnMap`
(an immutable mapping, hashable when its contents are), keywords :class:`Keyword`,
symbols :class:`Symbol`, characters :class:`Char`, so that every value can be compared
and hashed, and ``:ok`` is not the string ``"ok"``.

Guarantees (as the history readers of :mod:`spec.history`): time linear in the input; no
recursion (an explicit stack, at most :data:`MAX_DEPTH` deep); input read in blocks of
whole lines, a line at most :data:`spec.history.MAX_LINE_BYTES` bytes, a string at most
that long even across lines; every error is :class:`spec.history.HistoryFormatError`
naming the line (that of the offending token, or where an unfinished form began).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterator, Mapping, Union

from spec.history import MAX_LINE_BYTES, HistoryFormatError, is_text, line_blocks

#: The deepest nesting accepted (a history's values nest a few levels at most).
MAX_DEPTH = 100


@dataclass(frozen=True)
class Keyword:
    """An EDN keyword: ``:ok`` is ``Keyword("ok")``."""

    name: str

    def __str__(self) -> str:
        return f":{self.name}"


@dataclass(frozen=True)
class Symbol:
    """An EDN symbol."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Char:
    """An EDN character: ``\\a`` is ``Char("a")``."""

    char: str

    def __str__(self) -> str:
        return "\\" + {" ": "space", "\n": "newline", "\t": "tab", "\r": "return"}.get(self.char, self.char)


@dataclass(frozen=True)
class Tagged:
    """A tagged element ``#tag value`` whose tag this reader does not interpret."""

    tag: str
    value: object

    def __str__(self) -> str:
        return f"#{self.tag} {to_edn(self.value)}"


class EdnMap(Mapping[object, object]):
    """An immutable EDN map (insertion order kept; hashable if its contents are)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[object, object]) -> None:
        self._items = items

    def __getitem__(self, key: object) -> object:
        return self._items[key]

    def __iter__(self) -> Iterator[object]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EdnMap) and self._items == other._items

    def __repr__(self) -> str:
        return to_edn(self)


Value = Union[None, bool, int, float, Fraction, str, Keyword, Symbol, Char, Tagged, "tuple[object, ...]", "frozenset[object]", EdnMap]

_TOKEN = re.compile(
    r"""
      (?P<space>[\s,]+)
    | (?P<comment>;[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<open_string>"(?:[^"\\]|\\.)*\\?\Z)
    | (?P<open>\#\{|[\[({])
    | (?P<close>[\])}])
    | (?P<discard>\#_)
    | (?P<tag>\#[A-Za-z][^\s,\[\](){}"\\;]*)
    | (?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9A-Fa-f]{4}|[^\s]))
    | (?P<atom>[^\s,\[\](){}"\\;\#][^\s,\[\](){}"\\;]*)
    | (?P<bad>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)N?\Z")
_FLOAT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?M?\Z")
_RATIO = re.compile(r"[+-]?[0-9]+/[0-9]+\Z")
_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "b": "\b", "f": "\f"}
_STRING_ESCAPE = re.compile(r'\\(u[0-9A-Fa-f]{4}|[trn\\"bf])|\\(.)', re.DOTALL)
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f", "backspace": "\b"}
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}


def _atom(text: str, line: int) -> Value:
    if text == "nil":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if _INTEGER.match(text):
        digits = text.rstrip("N")
        if len(digits) > 4000:
            raise HistoryFormatError(line, "an integer of more than 4000 digits")
        return int(digits)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text.rstrip("M"))
    if _RATIO.match(text):
        numerator, denominator = text.split("/")
        if int(denominator) == 0:
            raise HistoryFormatError(line, f"a ratio with denominator 0: {text}")
        return Fraction(int(numerator), int(denominator))
    if text.startswith(":"):
        if len(text) == 1 or text.startswith("::"):
            raise HistoryFormatError(line, f"not an EDN keyword: {text!r}")
        return Keyword(text[1:])
    if text[0].isdigit() or (text[0] in "+-" and text[1:2].isdigit()):
        raise HistoryFormatError(line, f"not an EDN number: {text!r}")
    return Symbol(text)


def _string(body: str, line: int) -> str:
    def unescape(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            raise HistoryFormatError(line, f"unknown escape \\{match.group(2)} in a string")
        code = match.group(1)
        return chr(int(code[1:], 16)) if code[0] == "u" else _ESCAPES[code]

    text = _STRING_ESCAPE.sub(unescape, body) if "\\" in body else body
    if not is_text(text):
        try:  # escaped surrogate pairs (\\ud83d\\ude00) make one character
            text = text.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise HistoryFormatError(line, "a string holds a lone surrogate (\\ud800-\\udfff): not Unicode text") from None
    return text


def _char(token: str, line: int) -> Char:
    name = token[1:]
    if name in _CHARS:
        return Char(_CHARS[name])
    if len(name) == 5 and name[0] == "u":
        char = chr(int(name[1:], 16))
        if not is_text(char):
            raise HistoryFormatError(line, "a character that is a lone surrogate")
        return Char(char)
    return Char(name)


@dataclass
class _Frame:
    opener: str
    line: int
    items: list[object]
    tag: str | None = None  # a pending tag for the next item
    discard: int = 0  # forms still to discard


# The fast path: a flat map of keyword keys whose values are integers, keywords, nil,
# booleans, strings without escapes or vectors of those -- what nearly every line of a
# Jepsen history is. It builds exactly what the general reader would, or declines (then the
# general reader reads the same text, and reports any error).
_NAME = r"[^\s,\[\](){}\"\\;#:][^\s,\[\](){}\"\\;]*"
_SIMPLE = rf"(?:-?(?:0|[1-9][0-9]{{0,17}})|nil|true|false|:{_NAME})(?=[\s,\]}}]|\Z)"
_FLAT_VALUE = rf'(?:{_SIMPLE}|"[^"\\\n]*"|\[(?:[\s,]*{_SIMPLE})*[\s,]*\])'
_FLAT_MAP = re.compile(rf"\{{(?:[\s,]*:{_NAME}[\s,]+{_FLAT_VALUE})*[\s,]*\}}")
_FLAT_PAIR = re.compile(rf'[\s,]*:({_NAME})[\s,]+({_SIMPLE}|"[^"\\\n]*"|\[[^\]]*\])')
_SIMPLE_ONE = re.compile(_SIMPLE)
_CONSTANTS: dict[str, object] = {"nil": None, "true": True, "false": False}


def _simple(text: str, keywords: dict[str, Keyword]) -> object:
    if text[0] == ":":
        keyword = keywords.get(text)
        if keyword is None:
            keyword = keywords[text] = Keyword(text[1:])
        return keyword
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    return int(text)


def _flat_map(body: str, keywords: dict[str, Keyword]) -> EdnMap | None:
    pairs: dict[object, object] = {}
    count = 0
    for name, raw in _FLAT_PAIR.findall(body):
        key = _simple(":" + name, keywords)
        if raw[0] == '"':
            value: object = raw[1:-1]
        elif raw[0] == "[":
            value = tuple(_simple(atom, keywords) for atom in _SIMPLE_ONE.findall(raw[1:-1]))
        else:
            value = _simple(raw, keywords)
        pairs[key] = value
        count += 1
    return EdnMap(pairs) if len(pairs) == count else None  # a repeated key: the general reader says so


def read_forms(
    handle: BinaryIO, *, emit_depth: int = 0, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[object, int]]:
    """Every top-level form of ``handle`` with the line it starts on; with
    ``emit_depth=1``, a top-level vector or list is not returned whole but each of its
    elements is, as soon as it is complete (a history written as one vector of maps is
    then read in constant memory per operation)."""
    stack: list[_Frame] = [_Frame("", 0, [])]
    keywords: dict[str, Keyword] = {}
    carry = ""
    carry_line = 0
    for text, first_line in line_blocks(handle, 1, max_line=max_line):
        if carry:
            text = carry + text
            first_line = carry_line
            carry = ""
        line = first_line
        position = 0  # line counts newlines up to here
        at = 0  # where the next token starts
        size = len(text)
        match_token = _TOKEN.match
        while at < size:
            top = len(stack) == 1 or (emit_depth == 1 and len(stack) == 2 and stack[1].opener in ("[", "("))
            if top and text[at] == "{" and not stack[-1].tag and not stack[-1].discard:
                flat = _FLAT_MAP.match(text, at)
                fast = _flat_map(flat.group()[1:-1], keywords) if flat is not None else None
                if flat is not None and fast is not None:
                    line += text.count("\n", position, at)
                    position = at
                    at = flat.end()
                    yield fast, line
                    continue
            match = match_token(text, at)
            assert match is not None  # the "bad" alternative matches any character
            start = at
            at = match.end()
            kind = match.lastgroup
            if kind in ("space", "comment"):
                continue
            line += text.count("\n", position, start)
            position = start
            token = match.group()
            if kind == "open_string":
                if len(token) > max_line:
                    raise HistoryFormatError(line, f"a string longer than {max_line} bytes")
                carry, carry_line = token, line
                break
            if kind == "bad":
                raise HistoryFormatError(line, f"unexpected character {token!r}")
            frame = stack[-1]
            if kind == "open":
                if len(stack) > MAX_DEPTH:
                    raise HistoryFormatError(line, f"nested deeper than {MAX_DEPTH} levels")
                stack.append(_Frame(token, line, []))
                continue
            if kind == "discard":
                frame.discard += 1
                continue
            if kind == "tag":
                if frame.tag is not None:
                    raise HistoryFormatError(line, f"two tags in a row: #{frame.tag} {token}")
                frame.tag = token[1:]
                continue
            value: object
            if kind == "close":
                if len(stack) == 1 or _CLOSER[frame.opener] != token:
                    raise HistoryFormatError(line, f"unexpected {token!r}" + (
                        f" (the {frame.opener!r} of line {frame.line} is still open)" if len(stack) > 1 else ""))
                if frame.tag is not None or frame.discard:
                    raise HistoryFormatError(line, f"{token!r} right after a tag or #_ with nothing to apply it to")
                stack.pop()
                value = _close(frame, line)
                start_line = frame.line
            elif kind == "string":
                value, start_line = _string(token[1:-1], line), line
            elif kind == "char":
                value, start_line = _char(token, line), line
            else:
                value, start_line = _atom(token, line), line
            # attach the completed value to the frame below
            target = stack[-1]
            if target.tag is not None:
                value = _tagged(target.tag, value)
                target.tag = None
            if target.discard:
                target.discard -= 1
                continue
            if len(stack) == 1 and emit_depth == 0:
                yield value, start_line
            elif len(stack) == 2 and emit_depth == 1 and stack[1].opener in ("[", "("):
                yield value, start_line
            elif len(stack) == 1 and emit_depth == 1:
                if isinstance(value, tuple) and not value:  # the emptied top-level vector
                    continue
                yield value, start_line
            else:
                target.items.append(value)
    if carry:
        raise HistoryFormatError(carry_line, "a string that never ends")
    if len(stack) > 1:
        frame = stack[-1]
        raise HistoryFormatError(frame.line, f"the {frame.opener!r} here is never closed")
    if stack[0].tag is not None or stack[0].discard:
        raise HistoryFormatError(0, "the file ends after a tag or #_")


def _close(frame: _Frame, line: int) -> Value:
    items = frame.items
    if frame.opener in ("[", "("):
        return tuple(items)
    try:
        if frame.opener == "#{":
            return frozenset(items)
        if len(items) % 2:
            raise HistoryFormatError(frame.line, "a map with an odd number of forms")
        pairs: dict[object, object] = {}
        for k in range(0, len(items), 2):
            if items[k] in pairs:
                raise HistoryFormatError(frame.line, f"the key {to_edn(items[k])} appears twice in one map")
            pairs[items[k]] = items[k + 1]
    except TypeError:
        raise HistoryFormatError(frame.line, "a map key or set element that cannot be compared") from None
    return EdnMap(pairs)


def _tagged(tag: str, value: object) -> Value:
    return Tagged(tag, value)


def loads(text: str) -> list[object]:
    """Every top-level form of ``text`` (for tests and small inputs)."""
    import io

    return [value for value, _ in read_forms(io.BytesIO(text.encode("utf-8", "surrogatepass")))]


def to_edn(value: object) -> str:
    """``value`` written as EDN (for messages and labels; strings JSON-escaped)."""
    import json

    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple):
        return "[" + " ".join(to_edn(v) for v in value) + "]"
    if isinstance(value, frozenset):
        return "#{" + " ".join(sorted(to_edn(v) for v in value)) + "}"
    if isinstance(value, EdnMap):
        return "{" + ", ".join(f"{to_edn(k)} {to_edn(v)}" for k, v in value.items()) + "}"
    return str(value)


__all__ = ["MAX_DEPTH", "Char", "EdnMap", "Keyword", "Symbol", "Tagged", "loads", "read_forms", "to_edn"]
