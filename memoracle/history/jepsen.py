"""Jepsen histories (EDN) as :class:`~memoracle.history.foreign.ForeignHistory`.

A Jepsen history is a sequence of events, one EDN map each, in the order Jepsen recorded
them — one map per line (``history.edn``), or all in one vector (Knossos' test data);
records written as ``#jepsen.history.Op{...}`` are read as their map::

    {:process 0, :type :invoke, :f :write, :value 3}
    {:process 0, :type :ok,     :f :write, :value 3}
    {:process 1, :type :invoke, :f :read,  :value nil}
    {:process 1, :type :ok,     :f :read,  :value 3}

An ``:invoke`` of a process is completed by the process's next event: ``:ok`` (it took
effect), ``:fail`` (it certainly did not: drawn, not checked) or ``:info`` (indeterminate:
it may have taken effect at any time after its invocation; Jepsen gives the process a new
number afterwards). An invocation never completed is indeterminate too. Events whose
``:process`` is not an integer (``:nemesis``) are not client operations and are skipped.
The clock is the event's position in the file, so real-time order is the order Jepsen
recorded (its ``:time`` field is not needed and not read).

Operations per ``--model`` (Knossos' conventions):

- ``register``: ``:read`` (``:ok`` value: what was read; ``nil`` is the initial value),
  ``:write v``, ``:cas [old new]``;
- ``kv``: the same with Jepsen's independent keys, ``:value [k v]`` and ``[k [old new]]``;
  checked per key;
- ``queue``: ``:enqueue v``, ``:dequeue`` (``:ok`` value: what was dequeued, ``nil`` for
  "empty"), an unbounded FIFO.

Every problem is ``HistoryFormatError`` naming the line (reader guarantees as in
:mod:`memoracle.history.edn`).
"""

from __future__ import annotations

from typing import BinaryIO, Hashable

from spec.history import HistoryFormatError
from spec.linearizability import INDETERMINATE
from spec.object_models import ObjOp

from memoracle.history.edn import EdnMap, Keyword, Tagged, read_forms, to_edn
from memoracle.history.foreign import ForeignHistory

_TYPES = ("invoke", "ok", "fail", "info")
_FUNCTIONS = {
    "register": {"read": "read", "write": "write", "cas": "cas"},
    "kv": {"read": "get", "write": "put", "cas": "cas"},
    "queue": {"enqueue": "push", "dequeue": "pop"},
}


def _field(event: EdnMap, name: str, line: int, required: bool = True) -> object:
    key = Keyword(name)
    if key not in event:
        if required:
            raise HistoryFormatError(line, f"an event without :{name}")
        return None
    return event[key]


def read_jepsen(handle: BinaryIO, model: str) -> ForeignHistory:
    """Read the Jepsen history on ``handle`` for ``model`` (see the module docstring)."""
    names = _FUNCTIONS[model]
    history = ForeignHistory(model, "jepsen")
    pending: dict[int, tuple[EdnMap, int, int]] = {}  # process -> (invoke, its line, its stamp)
    clock = 0
    next_id = 0
    for form, line in read_forms(handle, emit_depth=1):
        event = form.value if isinstance(form, Tagged) and isinstance(form.value, EdnMap) else form
        if not isinstance(event, EdnMap):
            raise HistoryFormatError(line, f"an event must be an EDN map, not {to_edn(form)[:60]}")
        clock += 1
        process = _field(event, "process", line)
        if type(process) is not int:
            continue  # the nemesis and other non-client events
        kind = _field(event, "type", line)
        if not isinstance(kind, Keyword) or kind.name not in _TYPES:
            raise HistoryFormatError(line, f":type must be one of :invoke :ok :fail :info, not {to_edn(kind)[:40]}")
        f = _field(event, "f", line)
        f_name = f.name if isinstance(f, Keyword) else f if isinstance(f, str) else None
        if f_name not in names:
            known = " ".join(f":{name}" for name in names)
            raise HistoryFormatError(line, f"the {model} model knows {known}, not {to_edn(f)[:40]}")
        if kind.name == "invoke":
            if process in pending:
                raise HistoryFormatError(
                    line, f"process {process} invokes again before its operation of line {pending[process][1]} "
                    "completed")  # fmt: skip
            pending[process] = (event, line, clock)
            continue
        if process not in pending:
            raise HistoryFormatError(line, f"a :{kind.name} of process {process} with no :invoke before it")
        invoke, invoke_line, call = pending.pop(process)
        if _field(invoke, "f", invoke_line) != f:
            raise HistoryFormatError(line, f"the :{kind.name} has :f {to_edn(f)}, its :invoke (line {invoke_line}) "
                                           f"{to_edn(_field(invoke, 'f', invoke_line))}")
        ret = INDETERMINATE if kind.name == "info" else clock
        op = _operation(model, names[f_name], next_id, process, invoke, event if kind.name == "ok" else None,
                        call, ret, invoke_line)
        next_id += 1
        if kind.name == "fail":
            history.did_not_happen.append(op)
        elif not (op.indeterminate and op.f in ("read", "get")):  # a lost read has no effect
            history.ops.append(op)
        else:
            history.did_not_happen.append(op)
    for process, (invoke, invoke_line, call) in sorted(pending.items()):
        f = _field(invoke, "f", invoke_line)
        f_name = f.name if isinstance(f, Keyword) else str(f)
        op = _operation(model, names[f_name], next_id, process, invoke, None, call, INDETERMINATE, invoke_line)
        next_id += 1
        (history.did_not_happen if op.f in ("read", "get") else history.ops).append(op)
    return history


def _pair(value: object, line: int, what: str) -> tuple[Hashable, Hashable]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise HistoryFormatError(line, f"{what} must be a vector of two, not {to_edn(value)[:60]}")
    return value[0], value[1]


def _operation(
    model: str, f: str, ident: int, process: int, invoke: EdnMap, ok: EdnMap | None, call: int, ret: int, line: int,
) -> ObjOp:  # fmt: skip
    """The operation of an invocation and its ``:ok`` completion (``None`` if it failed
    or is indeterminate)."""
    value = invoke.get(Keyword("value"))
    answer = ok.get(Keyword("value")) if ok is not None else None
    key: Hashable = None
    if model == "kv":
        key, value = _pair(value, line, "a kv operation's :value ([key value])")
        if ok is not None:
            ok_key, answer = _pair(answer, line, "a kv operation's :ok :value ([key value])")
            if ok_key != key:
                raise HistoryFormatError(line, f"the :ok names key {to_edn(ok_key)}, the :invoke {to_edn(key)}")
    result: Hashable = None
    if f in ("read", "get"):
        result = answer
        value = None
    elif f == "cas":
        value = _pair(value, line, "a :cas's value ([old new])")
        result = True
    elif f == "pop":
        result = answer
        value = None
    return ObjOp(ident, process, f, key, value, result, call, ret, line)
