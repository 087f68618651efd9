"""The types of the check registry: a :class:`Check`, its :class:`Outcome`, a
:class:`CheckResult`. Kept apart from :mod:`memoracle.checks` so that each system's
module of checks can build its own list without importing the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Outcome:
    """What a check found: ``ok``, how many items it checked, and a report if not ok."""

    ok: bool
    count: int
    report: str = ""


@dataclass(frozen=True)
class Check:
    """A named check of one system. ``run(seed)`` must be deterministic in ``seed``."""

    system: str
    name: str
    description: str
    run: Callable[[int], Outcome]


@dataclass(frozen=True)
class CheckResult:
    """A check's outcome with its wall-clock time (reported, never asserted)."""

    system: str
    check: str
    ok: bool
    count: int
    seconds: float
    report: str

    def as_json(self) -> dict[str, object]:
        """The fields ``memoracle check --json`` promises."""
        return {
            "system": self.system,
            "check": self.check,
            "ok": self.ok,
            "count": self.count,
            "seconds": round(self.seconds, 4),
        }


__all__ = ["Check", "CheckResult", "Outcome"]
