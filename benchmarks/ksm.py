"""ksm's figures for ``memoracle bench``."""

from __future__ import annotations

from benchmarks.common import Figure


def ksm_figures(quick: bool) -> list[Figure]:
    """Every ksm.* figure (fewer repetitions when ``quick``)."""
    return []
