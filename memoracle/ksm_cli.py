"""The ``memoracle ksm ...`` commands."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``memoracle ksm`` and its sub-commands on ``sub``."""
