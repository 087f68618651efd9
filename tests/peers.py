"""What a test does when a real peer (memcached, memccapable, chromium) is missing.

Locally the test is skipped with the reason. Where peers are required —
``MEMORACLE_REQUIRE_PEERS`` is set, as ``.ci/run`` does after installing them — a
missing peer is a failure, so that a test asked for can never pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_PEERS = bool(os.environ.get("MEMORACLE_REQUIRE_PEERS"))


def peer_missing(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it where peers are required."""
    if REQUIRE_PEERS:
        pytest.fail(f"a required peer is missing: {reason}")
    pytest.skip(reason)
