"""Sphinx's documented refusals: each is made, with the documented exception, and
changes nothing.

The conformance workloads build servers the right way and never move the clock back,
so :func:`sphinx_guards` asks for what ``impl.sphinx.Sphinx`` documents as refused — no
threads, more than 512, an unknown steering, memory leaving no segment, a ring capacity
that is not a power of two, the virtual clock moved back, a wall clock advanced, the
state of a connection never handed out — and then checks that the server it asked still serves a request and keeps
its invariants.
"""

from __future__ import annotations

from typing import Callable

from impl.sphinx import Sphinx
from memoracle.check_types import refusal_problem

#: (what is asked, the documented exception, the request on a fresh small server).
PROBES: tuple[tuple[str, type[Exception], Callable[[Sphinx], object]], ...] = (
    ("a server without threads", ValueError, lambda s: Sphinx(0, 1 << 16, segment_size=4096)),
    ("a server of 513 threads", ValueError, lambda s: Sphinx(513, 513 << 12, segment_size=4096)),
    ("an unknown steering", ValueError, lambda s: Sphinx(1, 1 << 16, segment_size=4096, steering="random")),  # type: ignore[arg-type]
    ("memory that leaves no segment", ValueError, lambda s: Sphinx(2, 4096, segment_size=4096)),
    ("a ring capacity of 3", ValueError, lambda s: Sphinx(2, 1 << 16, segment_size=4096, ring_capacity=3)),
    ("the virtual clock moved back", ValueError, lambda s: s.advance_clock(-1)),
    ("a wall clock advanced", RuntimeError, lambda s: Sphinx(1, 1 << 16, segment_size=4096, clock=lambda: 7).advance_clock(1)),
    ("a connection never handed out", KeyError, lambda s: s.receive(10_000)),
)


def sphinx_guards(server_cls: type[Sphinx] = Sphinx) -> tuple[int, str | None]:
    """(probes run, ``None`` or the first problem): each probe of :data:`PROBES` on a
    fresh two-thread server, which must then keep its clock and still answer a
    ``set``/``get`` pair correctly with its invariants intact."""
    for n, (what, expected, request) in enumerate(PROBES):
        server = server_cls(2, 1 << 16, segment_size=4096)
        before = server.clock()
        problem = refusal_problem(what, expected, request, server)
        if problem is not None:
            return n + 1, problem
        conn = server.connect()
        server.send(conn, b"set k 0 0 1\r\nv\r\nget k\r\n")
        server.settle()
        reply = server.receive(conn)
        if server.clock() != before or reply != b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n":
            return n + 1, f"{what}: refused, but the server then answered {reply!r} at clock {server.clock()}"
        try:
            server.check_invariants()
        except AssertionError as error:
            return n + 1, f"{what}: refused, but the invariants broke: {error}"
    return len(PROBES), None


class BackwardClock(Sphinx):
    """The virtual clock may be moved back (items would come back to life)."""

    def advance_clock(self, seconds: int) -> None:
        self._virtual_now += seconds  # BUG: no check


#: Servers with a refusal left out; :func:`sphinx_guards` must catch each.
GUARD_MUTANTS: dict[str, type[Sphinx]] = {"backward_clock": BackwardClock}

__all__ = ["GUARD_MUTANTS", "PROBES", "sphinx_guards"]
