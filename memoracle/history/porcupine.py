"""Porcupine histories (JSON) as :class:`~memoracle.history.foreign.ForeignHistory`.

Porcupine (a Go linearizability checker) takes ``[]porcupine.Operation``, each
``{ClientId, Input, Call, Output, Return}``. Written with Go's ``encoding/json`` one
operation per line (``enc := json.NewEncoder(f); for _, op := range ops { enc.Encode(op) }``)
— or as a JSON array with one operation per line — it reads here::

    {"ClientId": 0, "Input": {"Op": "put", "Key": "x", "Value": "1"}, "Call": 10, "Output": {}, "Return": 20}
    {"ClientId": 1, "Input": {"Op": "get", "Key": "x"}, "Call": 25, "Output": {"Value": "1"}, "Return": 30}

``Call`` and ``Return`` are stamps from one clock (``Call <= Return``); ``Return: null``
marks an operation that never returned (indeterminate: it may or may not have taken
effect). Porcupine leaves the shapes of ``Input`` and ``Output`` to the model; here they
are, per ``--model``:

============  ===============================================  =========================
model         ``Input``                                        ``Output``
============  ===============================================  =========================
``register``  ``{"Op": "read"}``, ``{"Op": "write", "Value":   read: ``{"Value": v}``
              v}``, ``{"Op": "cas", "From": a, "To": b}``      (``null``: initial); cas:
                                                               ``{"Ok": true|false}``
``kv``        ``{"Op": "get"|"put"|"append"|"delete",          get: ``{"Value": v}``
              "Key": k, "Value": v}``, ``{"Op": "cas", "Key":  (``null``: absent); cas:
              k, "From": a, "To": b}``                         ``{"Ok": true|false}``
``queue``     ``{"Op": "push", "Value": v}``, ``{"Op":         pop: ``{"Value": v}``
              "pop"}``                                         (``null``: empty)
============  ===============================================  =========================

Outputs of other operations are ignored (``{}`` or ``null``). Values are JSON scalars or
arrays. (Porcupine's own key-value test model reads a missing key as ``""``; write
``null`` for "absent".) The reader guarantees of :mod:`spec.history` hold: every error is
``HistoryFormatError`` naming its line; linear time; a line is at most 1 MiB; repeated
keys, lone surrogates and deep nesting are refused.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Hashable

from spec.history import HistoryFormatError, line_blocks, parse_json_line
from spec.linearizability import INDETERMINATE
from spec.object_models import ObjOp

from memoracle.history.foreign import ForeignHistory

_KEYS = ("ClientId", "Input", "Call", "Output", "Return")
_OPS = {
    "register": {"read": "read", "write": "write", "cas": "cas"},
    "kv": {"get": "get", "put": "put", "append": "append", "delete": "delete", "cas": "cas"},
    "queue": {"push": "push", "pop": "pop"},
}
_STAMP_LIMIT = 2**63


def _freeze(value: object, line: int, what: str) -> Hashable:
    """A JSON value as a hashable one: arrays become tuples (iteratively); objects are refused."""
    if isinstance(value, dict):
        raise HistoryFormatError(line, f"{what} must be a JSON scalar or array, not an object")
    if not isinstance(value, list):
        return value
    # arrays, iteratively (the parser already bounded the depth)
    stack: list[tuple[list[object], list[Hashable]]] = [(value, [])]
    result: Hashable = ()
    while stack:
        source, built = stack[-1]
        if len(built) == len(source):
            stack.pop()
            frozen = tuple(built)
            if stack:
                stack[-1][1].append(frozen)
            else:
                result = frozen
            continue
        item = source[len(built)]
        if isinstance(item, dict):
            raise HistoryFormatError(line, f"{what} must be a JSON scalar or array, not hold an object")
        if isinstance(item, list):
            stack.append((item, []))
        else:
            built.append(item)
    return result


def read_porcupine(handle: BinaryIO, model: str) -> ForeignHistory:
    """Read the Porcupine history on ``handle`` for ``model`` (see the module docstring)."""
    history = ForeignHistory(model, "porcupine")
    ops = _OPS[model]
    ident = 0
    for text, first_line in line_blocks(handle, 1):
        for number, line_text in enumerate(text.split("\n")[:-1], start=first_line):
            stripped = line_text.strip()
            if stripped in ("", "[", "]", "],"):
                continue
            if stripped.endswith(","):
                stripped = stripped[:-1]
            obj = parse_json_line(stripped, number)
            op = _operation(obj, number, ident, model, ops)
            ident += 1
            if op.indeterminate and op.f in ("read", "get"):
                history.did_not_happen.append(op)
            else:
                history.ops.append(op)
    return history


def _operation(obj: object, line: int, ident: int, model: str, ops: dict[str, str]) -> ObjOp:
    if not isinstance(obj, dict):
        raise HistoryFormatError(line, "an operation must be a JSON object")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise HistoryFormatError(line, f'missing key "{missing[0]}"')
    extra = sorted(k for k in obj if k not in _KEYS)
    if extra:
        raise HistoryFormatError(line, f"unknown key {extra[0]!r} (an operation has ClientId, Input, Call, Output, Return)")
    client, call, ret = obj["ClientId"], obj["Call"], obj["Return"]
    if type(client) is not int:
        raise HistoryFormatError(line, f'"ClientId" must be an integer, not {client!r}')
    if type(call) is not int or not 0 <= call < _STAMP_LIMIT:
        raise HistoryFormatError(line, f'"Call" must be an integer from 0 to 2**63 - 1, not {call!r}')
    if ret is None:
        ret = INDETERMINATE
    elif type(ret) is not int or not call <= ret < _STAMP_LIMIT:
        raise HistoryFormatError(line, f'"Return" must be null or an integer from "Call" ({call}) to 2**63 - 1, '
                                       f"not {ret!r}")
    given: Any = obj["Input"]
    if not isinstance(given, dict) or not isinstance(given.get("Op"), str):
        raise HistoryFormatError(line, '"Input" must be an object with a string "Op"')
    name = given["Op"]
    if name not in ops:
        raise HistoryFormatError(line, f"the {model} model knows {', '.join(repr(o) for o in ops)}, not {name!r}")
    f = ops[name]
    allowed = {"Op"} | ({"Key"} if model == "kv" else set()) | (
        {"From", "To"} if f == "cas" else {"Value"} if f in ("write", "put", "append", "push") else set())
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise HistoryFormatError(line, f"{name!r} takes no {unknown[0]!r} in its Input")
    for needed in sorted(allowed - {"Op"}):
        if needed not in given:
            raise HistoryFormatError(line, f"{name!r} needs {needed!r} in its Input")
    output: Any = obj["Output"]
    if output is not None and not isinstance(output, dict):
        raise HistoryFormatError(line, '"Output" must be an object or null')
    output = output or {}
    key: Hashable = _freeze(given["Key"], line, '"Key"') if model == "kv" else None
    value: Hashable = None
    result: Hashable = None
    indeterminate = ret >= INDETERMINATE
    if f in ("write", "put", "append", "push"):
        value = _freeze(given["Value"], line, '"Value"')
        if f == "push" and output.get("Ok") is False:
            raise HistoryFormatError(line, "a push answered not ok: the queue model here is unbounded")
    elif f == "cas":
        value = (_freeze(given["From"], line, '"From"'), _freeze(given["To"], line, '"To"'))
        if not indeterminate:
            if type(output.get("Ok")) is not bool:
                raise HistoryFormatError(line, 'a cas needs "Output": {"Ok": true|false}')
            result = output["Ok"]
    elif f in ("read", "get", "pop") and not indeterminate:
        if "Value" not in output:
            raise HistoryFormatError(line, f'a {name!r} needs "Output": {{"Value": ...}}')
        result = _freeze(output["Value"], line, 'the Output "Value"')
    return ObjOp(ident, client, f, key, value, result, call, ret, line)
