"""memoracle: proofs.

Z3 theorems about the protocols, at full machine width. ``python -m proofs`` (or
``memoracle proofs``) proves every registered theorem and checks that every mutant is
refuted. A module that states theorems registers them with :func:`register` when
imported; add its import below so that ``import proofs`` registers it.

Public surface: :class:`Theorem`, :class:`ProofResult`, :class:`Verdict`,
:data:`THEOREMS`, :func:`register`, :func:`select_theorems`, :func:`prove_all`, and the
reporting functions :func:`print_results`, :func:`render_results`, :func:`results_table`.
"""

from proofs.registry import (
    DEFAULT_TIMEOUT_SECONDS,
    THEOREMS,
    ProofResult,
    Theorem,
    Verdict,
    prove_all,
    register,
    select_theorems,
)
from proofs.report import print_results, render_results, results_table

# Theorem modules: importing one registers its theorems.
from proofs import page_table as page_table  # noqa: E402  (after the registry exists)
from proofs import ulog as ulog  # noqa: E402
from proofs import spsc as spsc  # noqa: E402
from proofs import ksm as ksm  # noqa: E402

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "THEOREMS",
    "ProofResult",
    "Theorem",
    "Verdict",
    "page_table",
    "print_results",
    "prove_all",
    "register",
    "render_results",
    "results_table",
    "select_theorems",
    "spsc",
]
