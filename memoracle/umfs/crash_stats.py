"""What a crash exploration did and how much of the model it covered.

Both explorers fill the same :class:`Stats`. *Crash points* are where the machine was
stopped (in the workload: before a fence, or a store with ``every_store``; and, one level
down, inside a recovery). At each one the persistency model allows a set of images; its
exact size is added to ``allowed_images`` (``recovery_allowed_images`` one level down).

- The lazy explorer decides *classes* of images (all the images that agree on every byte
  recovery read, so recovery cannot tell them apart); ``covered_images`` adds up the
  exact sizes of the classes it decided.
- The enumerating explorer checks images one by one: each image is a class of one.

``coverage`` = covered / allowed over both levels; it is 1.0 exactly when every allowed
image was covered, and ``exhaustive`` says so (``sampled_points`` counts the crash points
where a cap stopped the explorer first). Counts are integers of any size.

Shards merge exactly: counts add up, and what is deduplicated (crash states, recovered
trees) is kept as sets of digests and united, so ``--jobs N`` reports what ``--jobs 1``
does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping


def tree_digest(tree: Mapping[str, tuple[object, ...]]) -> str:
    """A stable name of a recovered tree (hex BLAKE2b, 128 bits), the same in every process."""
    return hashlib.blake2b(repr(sorted(tree.items())).encode(), digest_size=16).hexdigest()


@dataclass
class Stats:
    """What a campaign (or one explorer) did; see the module docstring."""

    method: str = "lazy"
    workloads: int = 0
    crash_points: int = 0
    recovery_crash_points: int = 0
    allowed_images: int = 0
    recovery_allowed_images: int = 0
    classes: int = 0
    recovery_classes: int = 0
    covered_images: int = 0
    recovery_covered_images: int = 0
    #: Recoveries actually run (mount, fsck, observation); the rest came from caches.
    runs: int = 0
    #: Of those, the runs whose fsck and observation came from the check cache (contents
    #: and volatile state already checked; see the lazy explorer).
    checks_reused: int = 0
    sampled_points: int = 0
    #: Digests of the distinct crash states explored (lazy: the durable image and the
    #: pending units; enumeration: the images).
    crash_states: set[str] = field(default_factory=set)
    #: Digests of the distinct trees recovery produced.
    states: set[str] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def images(self) -> int:
        """Crash images covered, at both levels."""
        return self.covered_images + self.recovery_covered_images

    @property
    def coverage(self) -> Fraction:
        """Covered / allowed over both levels (1 when nothing was allowed: nothing to miss)."""
        allowed = self.allowed_images + self.recovery_allowed_images
        return Fraction(self.images, allowed) if allowed else Fraction(1)

    @property
    def exhaustive(self) -> bool:
        """Whether every allowed image at every crash point was covered."""
        return self.sampled_points == 0 and self.coverage == 1

    def merge(self, other: Stats) -> None:
        """Add another shard's counts and unite its digest sets."""
        for name in (
            "workloads", "crash_points", "recovery_crash_points", "allowed_images",
            "recovery_allowed_images", "classes", "recovery_classes", "covered_images",
            "recovery_covered_images", "runs", "checks_reused", "sampled_points",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.crash_states |= other.crash_states
        self.states |= other.states
        self.method = other.method

    def coverage_float(self) -> float:
        """``coverage`` as a float that is 1.0 only when exhaustive (a float rounds a
        coverage of 1 - 1e-50 to 1.0; this does not)."""
        value = float(self.coverage)
        return min(value, 1.0 - 2.0**-53) if not self.exhaustive else 1.0

    def coverage_text(self) -> str:
        """``exhaustive, coverage 1.0`` or ``sampled, coverage 0.82`` (``1 - 3e-55``
        when a float would round it to 1)."""
        if self.exhaustive:
            return "exhaustive, coverage 1.0"
        value = float(self.coverage)
        if value >= 0.9999995:
            allowed = self.allowed_images + self.recovery_allowed_images
            missing = Fraction(allowed - self.images, allowed)
            return f"sampled, coverage 1 - {float(missing):.2g}" if missing > Fraction(1, 10**300) else "sampled, coverage 1 - (under 1e-300)"
        return f"sampled, coverage {value:.6g}"

    def as_json(self) -> dict[str, object]:
        """The figures ``memoracle crash --json`` prints (integers exact)."""
        classes = self.classes + self.recovery_classes
        return {
            "method": self.method,
            "exhaustive": self.exhaustive,
            "coverage": self.coverage_float(),
            "workloads": self.workloads,
            "crash_points": self.crash_points,
            "recovery_crash_points": self.recovery_crash_points,
            "allowed_images": self.allowed_images,
            "recovery_allowed_images": self.recovery_allowed_images,
            "classes": self.classes,
            "recovery_classes": self.recovery_classes,
            "covered_images": self.covered_images,
            "recovery_covered_images": self.recovery_covered_images,
            "uncovered_images": self.allowed_images + self.recovery_allowed_images - self.images,
            "sampled_points": self.sampled_points,
            "runs": self.runs,
            "checks_reused": self.checks_reused,
            "distinct_crash_states": len(self.crash_states),
            "states": len(self.states),
            "seconds": round(self.seconds, 3),
            "classes_per_second": round(classes / self.seconds, 1) if self.seconds else 0.0,
        }

    def summary(self) -> str:
        """What the verdict line says after the counts: scope, coverage, allowed images
        (past 10^15 as a power of ten; ``--json`` has them exact)."""
        allowed = self.allowed_images + self.recovery_allowed_images
        return f"{self.coverage_text()} ({_count(self.images)} of {_count(allowed)} allowed images)"


def _count(n: int) -> str:
    """``30,631``; ``5.6e+155`` past 10^15 (exact figures are in the JSON)."""
    if n < 10**15:
        return f"{n:,}"
    digits = str(n)  # not float(n): it overflows past 1e308
    return f"{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"
