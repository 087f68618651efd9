"""Registers, key-value maps and queues as sequential specifications for histories that
come from other tools (Jepsen, Porcupine), with the operation type they share.

An :class:`ObjOp` is one operation of a client: its function ``f``, the ``key`` it works
on (key-value maps only), its argument ``value`` and its answer ``result``, and call and
return stamps from one clock. An operation whose return is
:data:`spec.linearizability.INDETERMINATE` may or may not have taken effect; its
answer, if it had one, is unknown, so its step is the effect it would have had.

Sequential specifications (states are 1-tuples, so that "absent" (``None``) is a state
and ``None`` from ``step`` still means "illegal", as the generic checker expects):

:class:`RegisterSpec` — one register, initially ``start`` (Jepsen's ``nil``):

- ``read`` answers the value held; ``write v`` holds ``v``;
- ``cas (old, new)`` answered ``True`` held ``old`` and now holds ``new``; answered
  ``False``, it held something else and changed nothing.

:class:`KvSpec` — one key of a map (check a map *per key*, P-compositionally):

- ``get`` answers the value, ``None`` if absent; ``put v`` sets it; ``delete`` removes it;
  ``append v`` appends to the string held (an absent key holds ``""`` for ``append``, as in
  Porcupine's key-value model); ``cas`` as for the register;
- ``loose`` (a cache): a ``get`` may always answer ``None`` (the key was evicted), and the
  key is then absent.

:class:`ForeignQueueSpec` — an unbounded FIFO queue: ``push v``; ``pop`` answers the
oldest value or ``None`` if empty; an indeterminate ``pop`` removed the oldest value if
there was one (if the queue was empty it changed nothing, which is the same as not
happening).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Union

from spec.linearizability import INDETERMINATE


#: A thread (Jepsen process, Porcupine client) name.
Thread = Union[int, str]
#: A state of these specs: the value held (``None``: absent / nil).
State = tuple[Hashable]


@dataclass(frozen=True)
class ObjOp:
    """One operation of a register, a key-value map or a queue.

    ``f``: ``read write cas`` (register), ``get put append delete cas`` (map), ``push pop``
    (queue). ``value``: what ``write/put/append/push`` write, ``(old, new)`` for ``cas``,
    ``None`` otherwise. ``result``: what ``read/get/pop`` answered (``None``: nil, absent,
    empty), ``True``/``False`` for ``cas``, ``None`` otherwise. ``line``: where the
    operation is in its file (0 if unknown).
    """

    id: int
    thread: Thread
    f: str
    key: Hashable
    value: Hashable
    result: Hashable
    call: int
    ret: int
    line: int = 0

    @property
    def indeterminate(self) -> bool:
        """Whether the operation may or may not have taken effect."""
        return self.ret >= INDETERMINATE

    def label(self) -> str:
        """A short label: ``w 3``, ``r→3``, ``cas 1→2 ok``, ``push 7``, ``pop→empty``."""
        show = _show
        f = self.f
        if f in ("read", "get"):
            text = "r" if f == "read" else "get"
            answer = "?" if self.indeterminate else ("nil" if self.result is None else show(self.result))
            return f"{text}→{answer}"
        if f in ("write", "put"):
            return f"{'w' if f == 'write' else 'put'} {show(self.value)}"
        if f == "cas":
            old, new = self.value if isinstance(self.value, tuple) and len(self.value) == 2 else (self.value, None)
            outcome = "?" if self.indeterminate else ("ok" if self.result else "fail")
            return f"cas {show(old)}→{show(new)} {outcome}"
        if f == "pop":
            answer = "?" if self.indeterminate else ("empty" if self.result is None else show(self.result))
            return f"pop→{answer}"
        if f in ("push", "append"):
            return f"{f} {show(self.value)}"
        return f

    def describe(self) -> str:
        """``#3 [process 2] key x: read -> 5 @[4,9]`` (``@[4,?]`` when indeterminate)."""
        key = "" if self.key is None else f"key {_show(self.key)}: "
        ret = "?" if self.indeterminate else str(self.ret)
        where = f" (line {self.line})" if self.line else ""
        return f"#{self.id} [{self.thread}] {key}{self.label()} @[{self.call},{ret}]{where}"

    def as_json(self) -> dict[str, object]:
        """The operation for ``--json`` (values as their text)."""
        return {"id": self.id, "thread": str(self.thread), "f": self.f,
                "key": None if self.key is None else _show(self.key), "text": self.label(),
                "call": self.call, "return": None if self.indeterminate else self.ret, "line": self.line}


def _show(value: object) -> str:
    text = str(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _cas(state: Hashable, op: ObjOp) -> State | None:
    pair = op.value
    if not (isinstance(pair, tuple) and len(pair) == 2):
        return None
    old: Hashable = pair[0]
    new: Hashable = pair[1]
    if op.result is True or op.indeterminate:
        return (new,) if state == old else None
    return (state,) if state != old else None


@dataclass(frozen=True)
class RegisterSpec:
    """A read/write/cas register (see the module docstring)."""

    start: Hashable = None

    def initial(self) -> State:
        """The register before any operation: ``start`` (nil by default)."""
        return (self.start,)

    def step(self, state: State, op: ObjOp) -> State | None:
        """The state after ``op``, or ``None`` if its answer is illegal here."""
        held = state[0]
        if op.f == "read":
            return state if op.result == held and type(op.result) is type(held) else None
        if op.f == "write":
            return (op.value,)
        if op.f == "cas":
            return _cas(held, op)
        return None


@dataclass(frozen=True)
class KvSpec:
    """One key of a key-value map (see the module docstring)."""

    loose: bool = False

    def initial(self) -> State:
        """The key is absent."""
        return (None,)

    def step(self, state: State, op: ObjOp) -> State | None:
        """The state after ``op``, or ``None`` if its answer is illegal here."""
        held = state[0]
        f = op.f
        if f == "get":
            if op.result is None:
                return (None,) if self.loose or held is None else None
            return state if op.result == held and type(op.result) is type(held) else None
        if f == "put":
            return (op.value,)
        if f == "delete":
            return (None,)
        if f == "append":
            return (("" if held is None else str(held)) + str(op.value),)
        if f == "cas":
            return _cas(held, op)
        return None


@dataclass(frozen=True)
class ForeignQueueSpec:
    """An unbounded FIFO queue; states are tuples of held values, oldest first."""

    def initial(self) -> tuple[Hashable, ...]:
        """The empty queue."""
        return ()

    def step(self, state: tuple[Hashable, ...], op: ObjOp) -> tuple[Hashable, ...] | None:
        """The queue after ``op``, or ``None`` if its answer is illegal here."""
        if op.f == "push":
            return state + (op.value,)
        if op.indeterminate:
            return state[1:] if state else None
        if op.result is None:
            return state if not state else None
        return state[1:] if state and state[0] == op.result and type(state[0]) is type(op.result) else None


def op_key(op: ObjOp) -> Hashable:
    """The partition of a key-value operation: its key."""
    return op.key


def value_unit(op: ObjOp) -> Hashable:
    """Minimization units (see :func:`spec.linearizability.minimize`): a write (``write``,
    ``put``, ``push``) together with the reads (``read``, ``get``, ``pop``) that returned its
    value on its key, so that a minimal violating sub-history never shows a read of a value
    whose write was taken away; any other operation alone."""
    if op.f in ("write", "put", "push"):
        return ("value", op.key, type(op.value).__name__, op.value)
    if op.f in ("read", "get", "pop") and op.result is not None and not op.indeterminate:
        return ("value", op.key, type(op.result).__name__, op.result)
    return ("op", op.id)


@dataclass(frozen=True)
class CacheKeySpec:
    """One key of a memcached-protocol store (check a store per key). Operations and
    answers are memcached's: ``set v`` → ``STORED``; ``add v`` → ``STORED`` if the key was
    absent, ``NOT_STORED`` if present; ``get`` → the value or ``None`` (a miss);
    ``delete`` → ``DELETED`` / ``NOT_FOUND``; ``append v`` / ``prepend v`` → ``STORED``
    (the key was present; the value grows) / ``NOT_STORED`` (absent, nothing changes).

    ``loose`` (a cache, the default): any key may be evicted at any instant, so an
    answer that says "absent" (a ``get`` miss, ``NOT_FOUND``, an ``append`` or
    ``prepend`` ``NOT_STORED``) is always allowed and leaves the key absent, and an
    ``add`` may always succeed; an answer that says "present" must be right, and a hit
    must show the latest value. An indeterminate operation has the effect it would have
    had if it took effect.
    """

    loose: bool = True

    def initial(self) -> State:
        """The key is absent."""
        return (None,)

    def step(self, state: State, op: ObjOp) -> State | None:
        """The state after ``op``, or ``None`` if its answer is illegal here."""
        held = state[0]
        f, result, loose = op.f, op.result, self.loose
        unknown = op.indeterminate
        if f == "set":
            return (op.value,) if unknown or result == "STORED" else None
        if f == "get":
            if result is None:
                return (None,) if loose or held is None else None
            return state if result == held else None
        if f == "delete":
            if unknown:
                return (None,)
            if result == "DELETED":
                return (None,) if held is not None else None
            return (None,) if result == "NOT_FOUND" and (loose or held is None) else None
        if f == "add":
            if unknown or result == "STORED":
                return (op.value,) if loose or held is None else None
            return state if result == "NOT_STORED" and held is not None else None
        if f in ("append", "prepend"):
            if unknown or result == "STORED":
                if held is None:
                    return None
                grown = str(held) + str(op.value) if f == "append" else str(op.value) + str(held)
                return (grown,)
            return (None,) if result == "NOT_STORED" and (loose or held is None) else None
        return None
