"""``memoracle sphinx campaign``: the Sphinx conformance campaign over many seeds, on any back-end.

Run ``k`` of ``--seed S`` is :func:`memoracle.sphinx.conformance.conformance_run` with
seed ``S + k`` and ``--steps`` sends: the seeded memcached workload (3 threads, 2 segments
of 4 KiB per thread, so segments expire) against a fresh :class:`impl.sphinx.Sphinx` (or
the ``--mutant``) and the precise model, reply by reply, ``stats`` included (every field
both report but ``pid``: a mutant such as ``expiry-never-counted`` shows only there). The
shards run wherever :mod:`memoracle.execution` is told; the failures are the same
everywhere.
"""

from __future__ import annotations

from typing import Any

from memoracle.execution.seeded import add_campaign_command

#: Sends per run by default (what ``memoracle check`` runs).
DEFAULT_STEPS = 400


def run_one(seed: int, steps: int, mutant: str | None) -> str | None:
    """One conformance run; None when every reply matched, else the first mismatch."""
    from impl.sphinx import Sphinx
    from memoracle.sphinx.conformance import conformance_run
    from memoracle.sphinx.mutants import SPHINX_MUTANTS

    cls = Sphinx if mutant is None else SPHINX_MUTANTS[mutant]

    def make(threads: int, memory: int, segment_size: int, seed: int) -> Sphinx:
        return cls(threads, memory, segment_size=segment_size, seed=seed)

    mismatch = conformance_run(make, seed, steps)
    return None if mismatch is None else mismatch.render()


def add_command(commands: Any) -> None:
    """Register ``sphinx campaign`` on the ``sphinx`` sub-command group."""
    from memoracle.sphinx.mutants import SPHINX_MUTANTS

    add_campaign_command(commands, "sphinx", run_one, steps=DEFAULT_STEPS, mutants=list(SPHINX_MUTANTS),
                         what="replies byte for byte against the precise model")  # fmt: skip
