"""The types of the check registry: a :class:`Check`, its :class:`Outcome`, a
:class:`CheckResult`, and :func:`refusal_problem`, which the guard checks share. Kept
apart from :mod:`memoracle.checks` so that each system's module of checks can build its
own list without importing the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What a check found: ``ok``, how many items it checked, and a report if not ok."""

    ok: bool
    count: int
    report: str = ""


@dataclass(frozen=True)
class Check:
    """A named check of one system. ``run(seed)`` must be deterministic in ``seed``.

    ``seeds``: how many seeds one ``memoracle check --seed S`` runs it on — ``S * seeds``
    to ``S * seeds + seeds - 1``, each a complete run (its work per seed is sized so that
    all of them fit the check's time): a fixed count, so a result is reproduced by its
    ``--seed`` alone, and different ``S`` cover different seeds.
    """

    system: str
    name: str
    description: str
    run: Callable[[int], Outcome]
    seeds: int = 1

    def seeds_of(self, seed: int) -> range:
        """The seeds ``memoracle check --seed seed`` runs this check on."""
        return range(seed * self.seeds, seed * self.seeds + self.seeds)


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


def refusal_problem(what: str, expected: type[BaseException], request: Callable[[T], object], target: T) -> str | None:
    """``None`` if ``request(target)`` raised the documented ``expected`` exception; else
    what it did instead (accepted the request, or raised another exception)."""
    try:
        request(target)
    except expected:
        return None
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        return f"{what}: raised {type(error).__name__}: {error}, documented: {expected.__name__}"
    return f"{what}: accepted, documented: {expected.__name__}"


__all__ = ["Check", "CheckResult", "Outcome", "refusal_problem"]
