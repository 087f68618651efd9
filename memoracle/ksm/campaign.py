"""``memoracle ksm campaign``: the KSM lockstep campaign over many seeds, on any back-end.

Run ``k`` of ``--seed S`` is :func:`memoracle.ksm.conformance.random_ops` with seed
``S + k`` and ``--steps`` operations, applied to a fresh :class:`impl.ksm.Ksm` (or to the
``--mutant``) and to the model in lockstep, every step judged by
:class:`~memoracle.ksm.conformance.KsmPair`. The shards run in this process, on a local
pool or on a Dask cluster (:mod:`memoracle.execution`); the failures are the same
wherever they run. ``memoracle check --system ksm --seed C`` runs the 40 sequences with
seeds ``40 C`` … ``40 C + 39``: ``memoracle ksm campaign --seed 40C --runs 40``.
"""

from __future__ import annotations

from typing import Any

from memoracle.execution.seeded import add_campaign_command

#: Operations per run by default (what ``memoracle check`` runs).
DEFAULT_STEPS = 80


def run_one(seed: int, steps: int, mutant: str | None) -> str | None:
    """One lockstep run; None when every step held, else the report of the first mismatch."""
    from memoracle.ksm.conformance import random_ops, run_ops

    if mutant is None:
        from impl.ksm import Ksm

        return run_ops(Ksm(), random_ops(seed, steps))
    from memoracle.ksm.mutants import KSM_MUTANTS

    return run_ops(KSM_MUTANTS[mutant](), random_ops(seed, steps))


def add_command(commands: Any) -> None:
    """Register ``ksm campaign`` on the ``ksm`` sub-command group."""
    from memoracle.ksm.mutants import KSM_MUTANTS

    add_campaign_command(commands, "ksm", run_one, steps=DEFAULT_STEPS, mutants=list(KSM_MUTANTS),
                         what="impl against the model in lockstep, every step checked")  # fmt: skip
