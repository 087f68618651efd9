"""sphinx's checks in the default campaign (``memoracle check --system sphinx``)."""

from __future__ import annotations

from memoracle.check_types import Check

#: The sphinx checks, in the order ``memoracle check`` runs them.
SPHINX_CHECKS: list[Check] = []
