"""Broken simulators the checks must catch (:mod:`memoracle.sphinx.sim.trace` and the
hand-computed latencies of ``tests/test_sphinx_sim.py``).

- ``irq-beside-thread``: IRQ work runs beside the thread on the same core instead of
  taking the core's time (a core that runs two things at once);
- ``free-contention``: a lock is granted at once even while another core holds it (lock
  contention that costs nothing).
"""

from __future__ import annotations

from memoracle.sphinx.sim.engine import Simulation


class IrqBesideThread(Simulation):
    """IRQ steps occupy a lane of their own: the core runs them in parallel with its
    thread's work."""

    def irq_lane(self, core: int, cores: int) -> int:
        return core + cores


class FreeContention(Simulation):
    """A waiter gets the lock the moment it asks, whoever holds it."""

    def lock_grant(self, request_ns: int, free_at: int) -> int:
        return request_ns


SIM_MUTANTS: dict[str, type[Simulation]] = {
    "irq-beside-thread": IrqBesideThread,
    "free-contention": FreeContention,
}

__all__ = ["SIM_MUTANTS", "FreeContention", "IrqBesideThread"]
