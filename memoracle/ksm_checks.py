"""ksm's checks in the default campaign (``memoracle check --system ksm``)."""

from __future__ import annotations

from memoracle.check_types import Check

#: The ksm checks, in the order ``memoracle check`` runs them.
KSM_CHECKS: list[Check] = []
