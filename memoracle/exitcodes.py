"""The exit codes every ``memoracle`` command uses, and only these.

======  ==========================================================================
code    meaning
======  ==========================================================================
0       everything checked holds (and something was checked)
1       a violation was found (the report says what, and how to reproduce it)
2       bad usage or bad input: one line on stderr naming the problem
3       inconclusive: a budget or a timeout ran out before a verdict
======  ==========================================================================
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_VIOLATION: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCONCLUSIVE: Final = 3

__all__ = ["EXIT_INCONCLUSIVE", "EXIT_OK", "EXIT_USAGE", "EXIT_VIOLATION"]
