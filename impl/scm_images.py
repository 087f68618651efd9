"""The crash images an SCM may leave, as values: what :mod:`impl.scm_emu` hands out.

- :class:`ImageComponent`: one independent part of the images a crash may leave (the
  8-byte units a group of pending stores touches, and every distinct content they may
  hold); the images are the product of the components.
- :class:`ImageOptions`: how :class:`~impl.scm_emu.ScmEmu` builds a component from its
  pending groups (each group's choices, their distinct contents, the first choice that
  produced each).
- :class:`CrashImage`: one allowed image, as a delta over the durable image, named by a
  digest of its bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import product
from typing import Callable, Sequence

from spec.persistency import ATOMIC_UNIT

_UNIT_MASK = ATOMIC_UNIT - 1

#: A piece of a pending store: its program-order key ``(seq, address)``, address, bytes.
Piece = tuple[tuple[int, int], int, bytes]


@dataclass(frozen=True)
class ImageComponent:
    """One independent part of the images a crash may leave: the 8-byte ``units`` it
    covers (sorted SCM offsets) and every distinct content they may hold (``options``,
    8 bytes per unit, in ``units`` order), with a label per option saying which pending
    stores it persists. Images are the product of their components' options."""

    units: tuple[int, ...]
    options: tuple[bytes, ...]
    labels: tuple[str, ...]



_RUNS: dict[int, tuple[tuple[int, ...], list[tuple[int, int, int]]]] = {}


def _runs(units: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Contiguous runs of ``units``: ``(address, start, end)`` into the contents bytes.
    Cached per tuple (every image of a crash point shares its units tuple)."""
    cached = _RUNS.get(id(units))
    if cached is not None and cached[0] is units:
        return cached[1]
    runs: list[tuple[int, int, int]] = []
    for i, unit in enumerate(units):
        if runs and runs[-1][0] + runs[-1][2] - runs[-1][1] == unit:
            address, start, end = runs[-1]
            runs[-1] = (address, start, end + ATOMIC_UNIT)
        else:
            runs.append((unit, i * ATOMIC_UNIT, (i + 1) * ATOMIC_UNIT))
    if len(_RUNS) > 256:
        _RUNS.clear()
    _RUNS[id(units)] = (units, runs)
    return runs


class CrashImage:
    """One allowed post-crash image, as a delta over the emulator's durable image.

    ``units`` are the offsets of the 8-byte units that differ between images of this
    crash point (shared by all of them); ``contents`` their bytes, 8 per unit;
    ``choice`` is, per pending group (see :meth:`ScmEmu.pending_groups`), how many of its
    pieces persisted (``0`` = none).
    """

    __slots__ = ("units", "contents", "_choice", "_digest")

    def __init__(
        self,
        units: tuple[int, ...],
        contents: bytes,
        choice: tuple[int, ...] | Callable[[], tuple[int, ...]],
    ) -> None:
        self.units = units
        self.contents = contents
        self._choice = choice
        self._digest: str | None = None

    @property
    def choice(self) -> tuple[int, ...]:
        """Per pending group, how many of its pieces persisted."""
        if callable(self._choice):
            self._choice = self._choice()
        return self._choice

    @property
    def digest(self) -> str:
        """A stable name of the image's bytes (hex BLAKE2b, 128 bits)."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for unit in self.units:
                h.update(unit.to_bytes(8, "little"))
            h.update(self.contents)
            self._digest = h.hexdigest()
        return self._digest

    def apply(self, memory: bytearray) -> None:
        """Write the image's units over ``memory`` (the durable image it is a delta of)."""
        contents = self.contents
        for address, start, end in _runs(self.units):
            memory[address : address + end - start] = contents[start:end]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CrashImage)
            and self.units == other.units
            and self.contents == other.contents
        )

    def __hash__(self) -> int:
        return hash(self.contents)  # bytes cache their hash; equal images have equal contents

    def __repr__(self) -> str:
        return f"CrashImage({self.digest[:12]}, choice={self.choice})"


class ImageOptions:
    """Pending groups joined by shared units, with the distinct contents they can produce.

    ``options[i]`` is the bytes of ``units`` for one choice; ``option_choices[i]`` the
    first group choice (per group in ``groups``) that produced it.
    """

    def __init__(
        self,
        units: list[int],
        groups: list[int],
        group_options: list[list[list[Piece]]],
        fixed: list[Piece],
        base: bytes,
    ) -> None:
        self.units = units
        self.groups = groups
        self.group_options = group_options
        self.fixed = fixed
        self.base = base
        self._offset = {unit: i * ATOMIC_UNIT for i, unit in enumerate(units)}
        self.index: dict[bytes, int] = {}
        self._option_memo: dict[tuple[int, ...], int] = {}
        self.options: list[bytes] = []
        self.option_choices: list[tuple[int, ...]] = []
        for choice in product(*(range(len(o)) for o in group_options)):
            contents = self.contents_of(choice)
            if contents not in self.index:
                self.index[contents] = len(self.options)
                self.options.append(contents)
                self.option_choices.append(choice)

    def contents_of(self, choice: Sequence[int]) -> bytes:
        """The bytes of the component's units when each group persists ``choice``."""
        pieces = list(self.fixed)
        for options, c in zip(self.group_options, choice):
            pieces.extend(options[c])
        pieces.sort()
        image = bytearray(self.base)
        offset = self._offset
        for _, at, data in pieces:
            start = offset[at & ~_UNIT_MASK] + (at & _UNIT_MASK)
            image[start : start + len(data)] = data
        return bytes(image)

    def option_of(self, choice: Sequence[int]) -> int:
        """The index of the option that the group choice ``choice`` produces."""
        key = tuple(choice)
        found = self._option_memo.get(key)
        if found is None:
            found = self._option_memo[key] = self.index[self.contents_of(choice)]
        return found

    def top(self) -> tuple[int, ...]:
        """The choice that persists every piece of every group."""
        return tuple(len(o) - 1 for o in self.group_options)
