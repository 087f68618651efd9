"""Lazy crash images: a pending unit is decided when recovery first reads it.

At a crash point the persistency model allows a set of images that is a product of
independent *components* (:class:`impl.scm_emu.ImageComponent`: the 8-byte units one
line's pending stores touch, and every distinct content those units may hold, one per
persisted prefix of the line's stores). Enumerating the product mounts images that
recovery cannot tell apart. A :class:`LazyImage` instead boots the machine with every
pending unit *undecided* and watches the SCM (:class:`impl.scm_emu.ScmWatch`):

- the first read of an undecided unit is a *branch point*: the unit may hold any value
  that some still-consistent option of its component gives it; a :class:`Chooser` picks
  one, and the component keeps only the options that agree (so choosing that a later
  store of a line persisted keeps only the prefixes that contain it, and with them the
  line's earlier stores; choosing "not persisted" drops every prefix that holds it);
  every unit on which the remaining options agree is then decided too, and its bytes
  are written into the machine's memory;
- a read of several units (a 64-byte line, a checksummed region, a whole page) branches
  on each undecided unit in address order;
- a store that covers an undecided unit entirely makes its value irrelevant to later
  reads (they see the store) and does not branch; a store that covers it partly decides
  it first (the rest of the unit stays visible).

A run therefore ends in a *leaf*: the set of allowed images that agree with every value
recovery read (:attr:`LazyImage.reads`). Leaves partition the allowed images; a leaf's
:meth:`~LazyImage.weight` is exactly how many distinct allowed images it stands for (the
product over components of the options still consistent), and a run on any of them
reads the same bytes and so does the same thing. :class:`ReplayChooser` turns runs into
a depth-first search: each run replays the choices of the previous one up to its last
branch point with an untried alternative, and takes the first value at every new one.

A crash *during* the run (recovery crashed in turn) is described by
:meth:`LazyImage.second_crash`: the machine's own pending stores (recovery's), over
units that are either decided or still undecided from the first crash. Lines that hold a
unit of a first-crash component are rebuilt from that component's consistent options and
every store made to the line since the first crash, of which the machine's unforced ones
form an optional suffix; other lines are the machine's own components. The result is a
new set of components (and a base image), explored the same way.

Non-temporal stores made after the first crash to a line with undecided units are not
supported there (UMFS makes none); :meth:`LazyImage.second_crash` raises
:class:`LazyUnsupported`.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from itertools import product
from typing import Protocol, Sequence

from impl.scm_emu import ImageComponent, ScmEmu
from spec.persistency import ATOMIC_UNIT, CACHE_LINE

_UNIT_MASK = ATOMIC_UNIT - 1
_LINE_MASK = CACHE_LINE - 1
_PAGE_SHIFT = 12
_PAGE = 1 << _PAGE_SHIFT


class LazyUnsupported(Exception):
    """A second crash the lazy image cannot describe (see the module docstring)."""


class Nondeterminism(Exception):
    """A replayed run met a different branch point than the run it replays."""


class Chooser(Protocol):
    """Picks one of ``count`` values (0 = the value of the first consistent option)."""

    def choose(self, count: int) -> int:
        """The index of the value to take."""


class ReplayChooser:
    """Depth-first search over the branch points of deterministic runs.

    A run replays ``script`` (one choice per branch point, in the order met) and takes
    value 0 at every branch point past its end; :meth:`next_script` is the script of the
    next leaf in depth-first order, or ``None`` when every leaf has been visited.
    """

    def __init__(self, script: Sequence[int] = ()) -> None:
        self.script = tuple(script)
        #: ``(choice, count)`` at each branch point met so far.
        self.trail: list[tuple[int, int]] = []

    def choose(self, count: int) -> int:
        depth = len(self.trail)
        choice = self.script[depth] if depth < len(self.script) else 0
        if choice >= count:
            raise Nondeterminism(f"branch point {depth} offers {count} values, the script chose {choice}")
        self.trail.append((choice, count))
        return choice

    def prefix(self) -> tuple[int, ...]:
        """The choices made so far (names the class of runs up to this moment)."""
        return tuple(choice for choice, _ in self.trail)

    def next_script(self) -> list[int] | None:
        """The script of the next leaf, or ``None`` after the last one."""
        if len(self.trail) < len(self.script):
            raise Nondeterminism("a replayed run ended before the branch points it replays")
        trail = list(self.trail)
        while trail and trail[-1][0] + 1 >= trail[-1][1]:
            trail.pop()
        if not trail:
            return None
        return [choice for choice, _ in trail[:-1]] + [trail[-1][0] + 1]


class _Shape:
    """One component as every run sees it: its units, options and their unit values."""

    __slots__ = ("units", "options", "labels", "values", "settled")

    def __init__(self, component: ImageComponent) -> None:
        self.units = component.units
        self.options = component.options
        self.labels = component.labels
        #: ``values[option][position]``: the 8 bytes of unit ``position`` in ``option``.
        self.values = [
            [option[p * ATOMIC_UNIT : (p + 1) * ATOMIC_UNIT] for p in range(len(component.units))]
            for option in component.options
        ]
        #: Positions on which every option agrees (decided before any read).
        self.settled = [all(v[p] == self.values[0][p] for v in self.values) for p in range(len(self.units))]


class LazyPlan:
    """What every run from one crash point shares, computed once: the components, the
    image to boot (:attr:`blob`: each component's first option in place), and indexes.

    ``base`` is the whole SCM with every unit outside ``components`` as the crash left it;
    ``base_digests``, if given, are the digests of ``base``'s pages (then only the pages
    that hold a component unit are hashed again).
    """

    def __init__(
        self, base: bytes, components: Sequence[ImageComponent], base_digests: Sequence[bytes] | None = None
    ) -> None:
        self.shapes = [_Shape(c) for c in components]
        blob = bytearray(base)
        self.where: dict[int, tuple[int, int]] = {}
        #: The components of each line (a component never spans two lines).
        self.by_line: dict[int, list[int]] = {}
        for index, shape in enumerate(self.shapes):
            for position, unit in enumerate(shape.units):
                blob[unit : unit + ATOMIC_UNIT] = shape.values[0][position]
                self.where[unit] = (index, position)
            self.by_line.setdefault(shape.units[0] & ~_LINE_MASK, []).append(index)
        self.blob = bytes(blob)
        self.units = sorted(self.where)
        self.lines = sorted(self.by_line)
        count = 1
        for shape in self.shapes:
            count *= len(shape.options)
        #: How many distinct images the components allow (the product of their sizes).
        self.allowed = count
        self._page_digests: list[bytes] | None = None
        if base_digests is not None:
            digests = list(base_digests)
            for page in sorted({unit >> _PAGE_SHIFT for unit in self.where}):
                digests[page] = _page_digest(self.blob, page)
            self._page_digests = digests

    def page_digests(self) -> list[bytes]:
        """A digest of each 4 KiB page of :attr:`blob` (computed once, on first use)."""
        if self._page_digests is None:
            self._page_digests = [_page_digest(self.blob, page) for page in range(-(-len(self.blob) >> _PAGE_SHIFT))]
        return self._page_digests


def _page_digest(memory: bytes | bytearray, page: int) -> bytes:
    """The digest of one 4 KiB page of ``memory``."""
    start = page << _PAGE_SHIFT
    return hashlib.blake2b(memory[start : start + _PAGE], digest_size=16).digest()


class SecondCrash:
    """What :meth:`LazyImage.second_crash` found: ``components`` (the choices a second
    crash makes) over the machine's durable image with ``overrides`` (units it decides);
    :attr:`digest` names the whole (equal crash states, equal digests), computed from the
    first crash's image and the pages changed since, not from the whole memory."""

    def __init__(
        self, scm: ScmEmu, plan: LazyPlan, components: list[ImageComponent], overrides: dict[int, bytes]
    ) -> None:
        self._scm = scm
        self.components = components
        self.overrides = overrides
        pages = scm.touched_pages() | {unit >> _PAGE_SHIFT for unit in overrides}
        digests = list(plan.page_digests())
        for page in sorted(pages):
            start = page << _PAGE_SHIFT
            content = bytearray(scm.durable_range(start, min(start + _PAGE, scm.size)))
            for unit, value in overrides.items():
                if unit >> _PAGE_SHIFT == page:
                    content[unit - start : unit - start + ATOMIC_UNIT] = value
            digests[page] = hashlib.blake2b(content, digest_size=16).digest()
        #: The digests of :meth:`base`'s 4 KiB pages.
        self.page_digests = digests
        whole = hashlib.blake2b(b"".join(digests), digest_size=16)
        for c in components:
            whole.update(repr((c.units, len(c.options))).encode())
            whole.update(b"".join(c.options))
        #: Names the crash state (durable image, overrides and components).
        self.digest = whole.digest()

    def base(self) -> bytes:
        """The durable image with the overrides (call before the machine runs on)."""
        image = bytearray(self._scm.durable())
        for unit, value in self.overrides.items():
            image[unit : unit + ATOMIC_UNIT] = value
        return bytes(image)


class ComponentState:
    """One component during one run: the options still consistent with what was read
    (``alive``), which units they agree on (``decided``), and whether it has branched."""

    __slots__ = ("shape", "alive", "decided", "branched")

    def __init__(self, shape: _Shape) -> None:
        self.shape = shape
        self.alive = list(range(len(shape.options)))
        self.decided = list(shape.settled)
        self.branched = False

    def value(self, option: int, position: int) -> bytes:
        return self.shape.values[option][position]

    def values(self, position: int) -> list[bytes]:
        """The distinct values the unit at ``position`` may hold, first option first."""
        seen: dict[bytes, None] = {}
        values = self.shape.values
        for option in self.alive:
            seen.setdefault(values[option][position], None)
        return list(seen)


def _pieces(offset: int, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
    """A store cut at 8-byte boundaries (so never across a line): ``(address, bytes)``."""
    out = []
    pos = 0
    raw = bytes(data)
    while pos < len(raw):
        at = offset + pos
        take = min(ATOMIC_UNIT - (at & _UNIT_MASK), len(raw) - pos)
        out.append((at, raw[pos : pos + take]))
        pos += take
    return out


class LazyImage:
    """A crash image whose pending units are decided when first read (module docstring).

    Made from a :class:`LazyPlan` (:meth:`plan`) and a :class:`Chooser`; boot the
    machine from :attr:`blob`, then :meth:`attach` it as the SCM's watch. Guarantees:
    the bytes a run reads are those of every allowed image in the current class
    (:meth:`weight` of them), and the classes of a complete depth-first search
    partition the allowed images (:attr:`allowed` of them).
    """

    def __init__(self, plan: LazyPlan, chooser: Chooser) -> None:
        self.chooser = chooser
        self._plan = plan
        self._components = [ComponentState(shape) for shape in plan.shapes]
        #: The image to boot: decided units as the crash left them, the rest placeholders.
        self.blob = plan.blob
        self.allowed = plan.allowed
        #: Component units neither read nor overwritten yet (sorted).
        self._watched = list(plan.units)
        self._written: set[int] = set()
        self._log: dict[int, list[tuple[int, bytes]]] = {}
        #: The value of every component unit the run has read, first read only.
        self.reads: dict[int, bytes] = {}
        #: Lines merged for a second crash, by what determines the merge (see _merge_line).
        self._merged: dict[tuple[object, ...], ImageComponent] = {}
        self._scm: ScmEmu | None = None

    @classmethod
    def prepare(cls, components: Sequence[ImageComponent]) -> Sequence[ImageComponent]:
        """The components to explore (a subclass that models a broken explorer changes them)."""
        return components

    @classmethod
    def plan(
        cls, base: bytes, components: Sequence[ImageComponent], base_digests: Sequence[bytes] | None = None
    ) -> LazyPlan:
        """The plan shared by every run from the crash point ``(base, components)``
        (``base_digests``: the digests of ``base``'s pages, if known)."""
        return LazyPlan(base, cls.prepare(components), base_digests)

    # ---------------------------------------------------------------- accounting

    def weight(self) -> int:
        """How many allowed images agree with everything read so far."""
        count = 1
        for comp in self._components:
            count *= len(comp.alive)
        return count

    def describe(self, labelled: Sequence[ImageComponent] | None = None) -> list[str]:
        """Which pending stores a representative image of the class persisted, one line
        per component that had a choice (and how many images the class holds). The labels
        are the plan's, or those of ``labelled`` (the same components, labelled: see
        :meth:`second_crash`)."""
        lines = []
        for index, comp in enumerate(self._components):
            labels = comp.shape.labels if labelled is None else labelled[index].labels
            if len(labels) > 1 and labels[comp.alive[0]]:
                more = f"  (or {len(comp.alive) - 1} more)" if len(comp.alive) > 1 else ""
                lines.append(labels[comp.alive[0]] + more)
        return lines

    def content_digest(self, scm: ScmEmu) -> bytes:
        """A digest of what ``scm`` (booted from :attr:`blob`) now shows: equal contents,
        equal digests (the pages changed since the boot are hashed again, no others)."""
        digests = list(self._plan.page_digests())
        for page in scm.touched_pages():
            start = page << _PAGE_SHIFT
            digests[page] = hashlib.blake2b(scm.visible[start : start + _PAGE], digest_size=16).digest()
        return hashlib.blake2b(b"".join(digests), digest_size=16).digest()

    def watching(self) -> int:
        """How many units are still watched (undecided, neither read nor overwritten)."""
        return len(self._watched)

    def watches_any(self, ranges: Sequence[tuple[int, int]]) -> bool:
        """Whether a read of any ``[start, end)`` range would touch a unit still watched
        (undecided and neither read nor overwritten). ``ranges`` sorted and disjoint."""
        watched = self._watched
        if not watched:
            return False
        starts = [start for start, _ in ranges]
        for unit in watched:
            i = bisect_left(starts, unit + ATOMIC_UNIT) - 1
            if i >= 0 and ranges[i][1] > unit:
                return True
        return False

    # ---------------------------------------------------------------- the watch

    def attach(self, scm: ScmEmu) -> None:
        """Watch ``scm`` (already rebooted from :attr:`blob`)."""
        self._scm = scm
        scm.watch = self
        if not self._watched:
            scm.quiet_reads()

    def detach(self) -> None:
        """Stop watching."""
        if self._scm is not None:
            self._scm.watch = None

    def on_read(self, offset: int, length: int) -> None:
        watched = self._watched
        if not watched:
            return
        end = offset + length
        i = bisect_left(watched, offset & ~_UNIT_MASK)
        if i == len(watched) or watched[i] >= end:
            return
        j = i
        while j < len(watched) and watched[j] < end:
            j += 1
        for unit in watched[i:j]:
            self._observe(unit)

    def on_store(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        end = offset + len(data)
        watched = self._watched
        if watched:
            i = bisect_left(watched, offset & ~_UNIT_MASK)
            j = i
            while j < len(watched) and watched[j] < end:
                j += 1
            for unit in watched[i:j]:
                index, position = self._plan.where[unit]
                comp = self._components[index]
                if not comp.decided[position] and (unit < offset or unit + ATOMIC_UNIT > end):
                    self._observe(unit)  # partly overwritten: the rest of the unit is read
                else:  # overwritten before it was read: later reads see the store
                    self._unwatch(unit)
        lines = self._plan.lines
        k = bisect_left(lines, offset & ~_LINE_MASK)
        if k < len(lines) and lines[k] < end:
            for at, piece in _pieces(offset, data):
                line = at & ~_LINE_MASK
                i = bisect_left(lines, line)
                if i < len(lines) and lines[i] == line:
                    self._log.setdefault(line, []).append((at, piece))
            unit = offset & ~_UNIT_MASK
            where = self._plan.where
            while unit < end:
                if unit in where:
                    self._written.add(unit)
                unit += ATOMIC_UNIT

    def _unwatch(self, unit: int) -> None:
        i = bisect_left(self._watched, unit)
        if i < len(self._watched) and self._watched[i] == unit:
            del self._watched[i]
            if not self._watched and self._scm is not None and self._scm.watch is self:
                self._scm.quiet_reads()  # nothing left to decide: reads need not call us

    def _observe(self, unit: int) -> None:
        """The first read of component unit ``unit``: branch if undecided, record it."""
        index, position = self._plan.where[unit]
        comp = self._components[index]
        if not comp.decided[position]:
            self.branch(comp, position)
        self.reads[unit] = comp.value(comp.alive[0], position)
        self._unwatch(unit)

    def branch(self, comp: ComponentState, position: int) -> None:
        """Decide the unit at ``position`` of ``comp``: a branch point over its values."""
        values = comp.values(position)
        value = values[self.chooser.choose(len(values))]
        table = comp.shape.values
        comp.alive = [option for option in comp.alive if table[option][position] == value]
        comp.branched = True
        self._refresh(comp)

    def _refresh(self, comp: ComponentState) -> None:
        """Mark (and write into memory) every unit the consistent options agree on."""
        table = comp.shape.values
        first = table[comp.alive[0]]
        units = comp.shape.units
        for position, decided in enumerate(comp.decided):
            if decided:
                continue
            value = first[position]
            if all(table[option][position] == value for option in comp.alive):
                comp.decided[position] = True
                unit = units[position]
                if self._scm is not None and unit not in self._written:
                    self._scm.fill(unit, value)

    # ---------------------------------------------------------------- a second crash

    def second_crash(self, scm: ScmEmu, *, labels: bool = True) -> SecondCrash:
        """The images a crash of the watched machine now may leave, over everything the
        first crash left undecided (module docstring): components, and the units they
        decide over the machine's durable image; with a digest of the whole that is equal
        for equal crash states. Use it before the machine runs on. ``labels=False`` leaves
        the components' labels empty (cheaper; calling again with labels gives the same
        components in the same order, labelled)."""
        own = scm.image_components(labels=labels)
        groups = scm.pending_groups()
        lines = set(self._plan.lines)
        for group in groups:
            if group.kind == "nt" and group.offset & ~_LINE_MASK in lines:
                raise LazyUnsupported(f"non-temporal store at {group.offset:#x} over a line with undecided units")
        optional = {group.offset: group.pieces for group in groups if group.kind == "line"}
        overrides: dict[int, bytes] = {}
        components = [c for c in own if c.units[0] & ~_LINE_MASK not in lines]
        for line in self._plan.lines:
            merged = self._merge_line(line, optional.get(line, 0), labels)
            if len(merged.options) == 1:
                for position, unit in enumerate(merged.units):
                    overrides[unit] = merged.options[0][position * ATOMIC_UNIT : (position + 1) * ATOMIC_UNIT]
            else:
                components.append(merged)
        components.sort(key=lambda c: c.units[0])
        return SecondCrash(scm, self._plan, components, overrides)

    def _merge_line(self, line: int, optional: int, labels: bool) -> ImageComponent:
        comps = [self._components[index] for index in self._plan.by_line[line]]
        pieces = self._log.get(line, [])
        # Within one run a component's consistent options only shrink and a line's stores
        # only grow, so their counts name the merge's inputs: a line unchanged since the
        # last crash point of this run is merged once.
        key = (line, optional, labels, len(pieces), *(len(c.alive) for c in comps))
        merged = self._merged.get(key)
        if merged is None:
            merged = self._merged[key] = self._merge(line, comps, pieces, optional, labels)
        return merged

    def _merge(
        self, line: int, comps: list[ComponentState], pieces: list[tuple[int, bytes]], optional: int, labels: bool
    ) -> ImageComponent:
        first = len(pieces) - optional
        if first < 0:
            raise LazyUnsupported(f"line {line:#x}: more pending pieces than stores seen since the crash")
        units = sorted({u for c in comps for u in c.shape.units} | {at & ~_UNIT_MASK for at, _ in pieces})
        where = {unit: i * ATOMIC_UNIT for i, unit in enumerate(units)}
        start = bytearray()
        for unit in units:
            start += self.blob[unit : unit + ATOMIC_UNIT]
        options: dict[bytes, str] = {}
        for combo in product(*(c.alive for c in comps)):
            image = bytearray(start)
            for comp, option in zip(comps, combo):
                for position, unit in enumerate(comp.shape.units):
                    image[where[unit] : where[unit] + ATOMIC_UNIT] = comp.value(option, position)
            label = "; ".join(c.shape.labels[o] for c, o in zip(comps, combo) if c.shape.labels[o]) if labels else ""
            for at, piece in pieces[:first]:
                s = where[at & ~_UNIT_MASK] + (at & _UNIT_MASK)
                image[s : s + len(piece)] = piece
            for count in range(first, len(pieces) + 1):
                if count > first:
                    at, piece = pieces[count - 1]
                    s = where[at & ~_UNIT_MASK] + (at & _UNIT_MASK)
                    image[s : s + len(piece)] = piece
                text = label
                if optional and labels:
                    text += f"{'; ' if text else ''}then line {line:#x}: {count - first}/{optional} pieces of its stores since the crash persisted"
                options.setdefault(bytes(image), text)
        return ImageComponent(tuple(units), tuple(options), tuple(options.values()))
