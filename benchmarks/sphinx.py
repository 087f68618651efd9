"""sphinx's figures for ``memoracle bench``."""

from __future__ import annotations

from benchmarks.common import Figure


def sphinx_figures(quick: bool) -> list[Figure]:
    """Every sphinx.* figure (fewer repetitions when ``quick``)."""
    return []
