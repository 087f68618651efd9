"""Small helpers shared by the Sphinx implementation tests."""

from __future__ import annotations

from impl.sphinx import Sphinx


def roundtrip(s: Sphinx, conn: int, data: bytes) -> bytes:
    """Send ``data`` on ``conn``, run the store until idle, check its invariants, and
    return what it answered."""
    s.send(conn, data)
    s.settle()
    s.check_invariants()
    return s.receive(conn)


def conn_on(s: Sphinx, thread: int) -> int:
    """A new connection bound to ``thread``."""
    while True:
        c = s.connect()
        if s.connections[c].thread == thread:
            return c
