"""Broken lazy crash images: the mistakes a read-driven crash explorer could make.

Each is a subclass of :class:`impl.scm_lazy.LazyImage` that the differential test
(:mod:`memoracle.umfs.crash_differential`, against brute-force enumeration) must catch:

- :class:`ForgetsLineOrder` treats every pending 8-byte unit as independent: it lets a
  later store of a line persist without the earlier ones, so it explores images the
  persistency model forbids (and miscounts the allowed ones);
- :class:`BranchesOncePerLine` branches on the first read of a line's undecided units
  only: a second read of the same line takes the value of the first consistent option
  without branching, so it never explores the images that differ there.
"""

from __future__ import annotations

from typing import Sequence

from impl.scm_emu import ImageComponent
from impl.scm_lazy import ComponentState, LazyImage
from spec.persistency import ATOMIC_UNIT


class ForgetsLineOrder(LazyImage):
    """Every unit its own component: the values of the units of a line combine freely."""

    @classmethod
    def prepare(cls, components: Sequence[ImageComponent]) -> Sequence[ImageComponent]:
        out = []
        for comp in components:
            for position, unit in enumerate(comp.units):
                values = dict.fromkeys(
                    option[position * ATOMIC_UNIT : (position + 1) * ATOMIC_UNIT] for option in comp.options
                )
                out.append(ImageComponent((unit,), tuple(values), tuple("" for _ in values)))
        return out


class _FirstValue:
    """A chooser that always takes the first value and records nothing."""

    def choose(self, count: int) -> int:
        return 0


class BranchesOncePerLine(LazyImage):
    """After a component's first branch point, later reads of it do not branch."""

    def branch(self, comp: ComponentState, position: int) -> None:
        if not comp.branched:
            super().branch(comp, position)
            return
        real, self.chooser = self.chooser, _FirstValue()  # BUG: no branch point, value 0
        try:
            super().branch(comp, position)
        finally:
            self.chooser = real


#: The explorer mutants by name.
LAZY_MUTANTS: dict[str, type[LazyImage]] = {
    "forgets_line_order": ForgetsLineOrder,
    "branches_once_per_line": BranchesOncePerLine,
}
