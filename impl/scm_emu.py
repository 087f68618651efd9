"""Storage-class memory: the persistence domain, emulated efficiently.

``ScmEmu`` holds two images of the memory and what lies between them:

- ``visible``: what loads see (every store applied at once);
- ``durable``: what is certainly in the persistence domain;
- *pending* stores: cached stores per 64-byte line, in program order, and non-temporal
  stores per 8-byte unit, each marked *forced* once a flush and fence (or ``clflush``,
  or, for non-temporal stores, a fence) guarantee it.

The rules are those of ``spec/persistency.py`` (the definition; this module is the
algorithm). A forced store is folded into ``durable`` as soon as no earlier pending
store touches the same 8-byte unit, so the pending set stays as small as the program's
unflushed work.

Crash images. A crash may persist, for each line, any prefix (in 8-byte pieces) of its
unforced cached stores, and any subset of the unforced non-temporal stores, on top of
``durable`` plus every forced store. These choices are independent, so the pending
stores fall into *components* (groups that share an 8-byte unit, joined); each
component's distinct contents are computed once, and the images are their product.
Hence :meth:`ScmEmu.count_images` is exact without enumerating, and images never repeat.

- :meth:`ScmEmu.crash_images` enumerates every allowed image while the count is at most
  ``limit`` (default :data:`DEFAULT_IMAGE_LIMIT` = 4096: at ~10^5 images per second that
  is well under a second per crash point, and it covers 12 independent lines in full).
- Above the limit it returns a deterministic sample (seeded): nothing optional
  persisted, everything persisted, for each group (a line, or a non-temporal unit) that
  group alone dropped and that group alone kept — these always, whatever the limit —
  then every torn prefix of each line with the rest persisted, then random choices, up to
  ``limit`` distinct images.

Every image is a delta over ``durable`` (the contents of the touched units), named by a
BLAKE2b digest of its bytes, so explorers can deduplicate across crash points.

Hooks. :meth:`ScmEmu.add_hook` registers a callback told of every store, non-temporal
store, flush and fence *before* it takes effect, with a running index: an explorer that
raises from the hook crashes the machine just before that instruction.

Watches. A *watch* (:class:`ScmWatch`, set in :attr:`ScmEmu.watch`) is told of every read
of the SCM (through :meth:`ScmEmu.read` or the machine's physical reads, which call
:attr:`ScmEmu.read_watch`) and of every store, before it happens; a watch that needs no
more reads says so (:meth:`ScmEmu.quiet_reads`) and reads run at full speed again. A lazy crash image (:mod:`impl.scm_lazy`) uses it to decide the
bytes of a pending unit only when recovery first reads them.

Choices made where the model leaves room: ``mfence`` is not a separate instruction (use
``sfence``); a flush of a line with nothing pending is still an event (hooks see it);
reads are not events (but a watch sees them).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product
from typing import Callable, Iterator, Protocol, Sequence

from impl.scm_images import CrashImage as CrashImage  # re-exported: explorers use it from here
from impl.scm_images import ImageComponent as ImageComponent
from impl.scm_images import ImageOptions
from impl.scm_images import Piece as Piece
from spec.persistency import ATOMIC_UNIT, CACHE_LINE, PersistMode

DEFAULT_IMAGE_LIMIT = 4096

_LINE_MASK = CACHE_LINE - 1
_UNIT_MASK = ATOMIC_UNIT - 1
_PAGE_SHIFT = 12  #: reboots from the same image restore only the 4 KiB pages changed


class ScmError(ValueError):
    """An access outside the SCM, or an image that does not fit it."""


@dataclass(frozen=True)
class PersistEvent:
    """One persistence-relevant instruction, reported to hooks before it takes effect.

    ``index`` counts events since the emulator was created or rebooted; ``kind`` is one
    of ``store``, ``ntstore``, ``clwb``, ``clflushopt``, ``clflush``, ``sfence``.
    """

    index: int
    kind: str
    offset: int
    length: int


PersistHook = Callable[[PersistEvent], None]


class ScmWatch(Protocol):
    """Told of every read and store of the SCM before it happens (offsets into the SCM)."""

    def on_read(self, offset: int, length: int) -> None:
        """``length`` bytes at ``offset`` are about to be read."""

    def on_store(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """``data`` is about to be stored at ``offset`` (cached or non-temporal)."""


class _Pending:
    """A pending store: within one line (cached) or one 8-byte unit (non-temporal)."""

    __slots__ = ("seq", "offset", "data", "forced")

    def __init__(self, seq: int, offset: int, data: bytes, forced: bool) -> None:
        self.seq = seq
        self.offset = offset
        self.data = data
        self.forced = forced

    def units(self) -> range:
        return range(self.offset & ~_UNIT_MASK, self.offset + len(self.data), ATOMIC_UNIT)

    def pieces(self) -> list[tuple[tuple[int, int], int, bytes]]:
        """The 8-byte-atomic pieces, each with its program-order key."""
        out = []
        pos = 0
        while pos < len(self.data):
            at = self.offset + pos
            take = min(ATOMIC_UNIT - (at & _UNIT_MASK), len(self.data) - pos)
            out.append(((self.seq, at), at, self.data[pos : pos + take]))
            pos += take
        return out


#: One atomic unit of a pending store: ((store sequence, offset), offset, bytes).


@dataclass(frozen=True)
class PendingGroup:
    """A set of pending stores whose persistence a crash chooses as one.

    ``kind`` is ``"line"`` (a line's unforced cached stores: a crash persists a prefix of
    ``pieces``) or ``"nt"`` (one unforced non-temporal store: persisted or not).
    ``stores`` lists ``(seq, offset, length)`` of the stores involved.
    """

    kind: str
    offset: int
    pieces: int
    stores: tuple[tuple[int, int, int], ...]

    @property
    def choices(self) -> int:
        """How many ways a crash may treat this group."""
        return self.pieces + 1 if self.kind == "line" else 2


@dataclass
class ScmStats:
    """Counts of the instructions the emulator has executed."""

    stores: int = 0
    ntstores: int = 0
    bytes_stored: int = 0
    clwbs: int = 0
    clflushopts: int = 0
    clflushes: int = 0
    sfences: int = 0


class ScmEmu:
    """Byte-addressed SCM of ``size`` bytes following the x86 persistency model.

    Guarantees: ``read`` returns the last value stored; after a crash, every image
    :meth:`crash_images` returns is allowed by ``spec.persistency.allowed_images`` for
    the instructions since the last reboot, and, below the limit, every allowed image is
    returned exactly once.
    """

    def __init__(
        self,
        size: int,
        mode: PersistMode = PersistMode.ADR,
        *,
        image: bytes | None = None,
    ) -> None:
        if size < 0 or size % CACHE_LINE:
            raise ScmError(f"SCM size must be a multiple of {CACHE_LINE} bytes, not {size}")
        if image is not None and len(image) != size:
            raise ScmError(f"image of {len(image)} bytes does not fit an SCM of {size} bytes")
        self.size = size
        self.mode = mode
        self.visible = bytearray(image) if image is not None else bytearray(size)
        self._durable = bytearray(self.visible)
        self._chains: dict[int, list[_Pending]] = {}
        self._marks: dict[int, int] = {}
        self._nt: list[_Pending] = []
        self._nt_units: dict[int, list[_Pending]] = {}
        self._seq = 0
        self._hooks: list[PersistHook] = []
        self.events = 0
        self.stats = ScmStats()
        self._watch: ScmWatch | None = None
        #: The watch's ``on_read`` while it wants reads (see :attr:`watch`), else ``None``.
        self.read_watch: Callable[[int, int], None] | None = None
        #: The bytes object last rebooted from, and the 4 KiB pages changed since.
        self._booted: bytes | None = None
        self._touched: set[int] = set()

    # ------------------------------------------------------------------ access

    @property
    def watch(self) -> ScmWatch | None:
        """Told of every read and store before it happens (see :class:`ScmWatch`);
        setting it also sets :attr:`read_watch` to its ``on_read``."""
        return self._watch

    @watch.setter
    def watch(self, watch: ScmWatch | None) -> None:
        self._watch = watch
        self.read_watch = watch.on_read if watch is not None else None

    def quiet_reads(self) -> None:
        """The watch needs no more reads (it is still told of stores) until it is set
        again: readers skip the call (see :attr:`read_watch`)."""
        self.read_watch = None

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ScmError(f"access [{offset:#x}, {offset + length:#x}) outside SCM of {self.size:#x} bytes")

    def read(self, offset: int, length: int) -> bytes:
        """The visible bytes at ``[offset, offset + length)``."""
        self._check(offset, length)
        if self.read_watch is not None:
            self.read_watch(offset, length)
        return bytes(self.visible[offset : offset + length])

    def durable(self) -> bytes:
        """The image that survives a crash in every case (forced stores folded in)."""
        image = bytearray(self._durable)
        for piece in sorted(p for rec in self._all_pending() if rec.forced for p in rec.pieces()):
            image[piece[1] : piece[1] + len(piece[2])] = piece[2]
        return bytes(image)

    def durable_range(self, start: int, end: int) -> bytes:
        """``durable()[start:end]``, without building the whole image."""
        self._check(start, end - start)
        image = bytearray(self._durable[start:end])
        pieces = sorted(
            p for rec in self._all_pending()
            if rec.forced and rec.offset < end and rec.offset + len(rec.data) > start
            for p in rec.pieces()
        )  # fmt: skip
        for _, at, data in pieces:
            if start <= at and at + len(data) <= end:
                image[at - start : at - start + len(data)] = data
        return bytes(image)

    def touched_pages(self) -> frozenset[int]:
        """The 4 KiB pages (offset // 4096) stored to or filled since the last reboot."""
        return frozenset(self._touched)

    # ------------------------------------------------------------- instructions

    def add_hook(self, hook: PersistHook) -> None:
        """Call ``hook`` before every store, flush and fence."""
        self._hooks.append(hook)

    def remove_hook(self, hook: PersistHook) -> None:
        """Stop calling ``hook``."""
        self._hooks.remove(hook)

    def _emit(self, kind: str, offset: int, length: int) -> None:
        if not self._hooks:
            self.events += 1
            return
        event = PersistEvent(self.events, kind, offset, length)
        self.events += 1
        for hook in list(self._hooks):
            hook(event)

    def store(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """A cached store: visible at once, durable per the model."""
        length = len(data)
        self._check(offset, length)
        self._emit("store", offset, length)
        if not length:
            return
        if self._watch is not None:
            self._watch.on_store(offset, data)
        stats = self.stats
        stats.stores += 1
        stats.bytes_stored += length
        self._touched.update(range(offset >> _PAGE_SHIFT, ((offset + length - 1) >> _PAGE_SHIFT) + 1))
        self.visible[offset : offset + length] = data
        seq = self._seq
        self._seq = seq + 1
        if self.mode is PersistMode.EADR and not self._nt_units:
            self._durable[offset : offset + length] = data
            return
        forced = self.mode is PersistMode.EADR
        chains = self._chains
        pos = 0
        touched: list[int] = []
        while pos < length:
            at = offset + pos
            take = min(CACHE_LINE - (at & _LINE_MASK), length - pos)
            line = at - (at & _LINE_MASK)
            rec = _Pending(seq, at, bytes(data[pos : pos + take]), forced)
            chain = chains.get(line)
            if chain is None:
                chains[line] = [rec]
            else:
                chain.append(rec)
            touched.append(line)
            pos += take
        if forced:
            self._settle(touched)

    def ntstore(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """A non-temporal store: visible at once, durable at the next ``sfence``."""
        length = len(data)
        self._check(offset, length)
        self._emit("ntstore", offset, length)
        if not length:
            return
        if self._watch is not None:
            self._watch.on_store(offset, data)
        self.stats.ntstores += 1
        self.stats.bytes_stored += length
        self._touched.update(range(offset >> _PAGE_SHIFT, ((offset + length - 1) >> _PAGE_SHIFT) + 1))
        self.visible[offset : offset + length] = data
        seq = self._seq
        self._seq = seq + 1
        pos = 0
        while pos < length:
            at = offset + pos
            take = min(ATOMIC_UNIT - (at & _UNIT_MASK), length - pos)
            rec = _Pending(seq, at, bytes(data[pos : pos + take]), False)
            self._nt.append(rec)
            self._nt_units.setdefault(at & ~_UNIT_MASK, []).append(rec)
            pos += take

    def clwb(self, offset: int) -> None:
        """Start writing back the line of ``offset``; durable after the next fence."""
        self._check(offset, 1)
        self._emit("clwb", offset, 1)
        self.stats.clwbs += 1
        self._mark(offset - (offset & _LINE_MASK))

    def clflushopt(self, offset: int) -> None:
        """Like :meth:`clwb` (the line is also evicted, which the model does not see)."""
        self._check(offset, 1)
        self._emit("clflushopt", offset, 1)
        self.stats.clflushopts += 1
        self._mark(offset - (offset & _LINE_MASK))

    def _mark(self, line: int) -> None:
        if self.mode is PersistMode.ADR and line in self._chains:
            self._marks[line] = self._seq

    def clflush(self, offset: int) -> None:
        """Flush the line of ``offset``; its earlier stores are durable at once."""
        self._check(offset, 1)
        self._emit("clflush", offset, 1)
        self.stats.clflushes += 1
        line = offset - (offset & _LINE_MASK)
        chain = self._chains.get(line)
        if chain is not None:
            for rec in chain:
                rec.forced = True
            self._marks.pop(line, None)
            self._settle([line])

    def sfence(self) -> None:
        """Complete earlier ``clwb``/``clflushopt`` and non-temporal stores."""
        self._emit("sfence", 0, 0)
        self.stats.sfences += 1
        lines = list(self._marks)
        for line, mark in self._marks.items():
            for rec in self._chains.get(line, ()):
                if rec.seq >= mark:
                    break
                rec.forced = True
        self._marks.clear()
        for rec in self._nt:
            rec.forced = True
        self._settle(lines)

    # --------------------------------------------------------------- settling

    def _all_pending(self) -> Iterator[_Pending]:
        for chain in self._chains.values():
            yield from chain
        yield from self._nt

    def _blocked_by_nt(self, rec: _Pending) -> bool:
        if not self._nt_units:
            return False
        for unit in rec.units():
            for nt in self._nt_units.get(unit, ()):
                if nt.seq < rec.seq:
                    return True
        return False

    def _retire_chain(self, line: int) -> bool:
        chain = self._chains.get(line)
        if not chain:
            return False
        done = 0
        durable = self._durable
        for rec in chain:
            if not rec.forced or self._blocked_by_nt(rec):
                break
            durable[rec.offset : rec.offset + len(rec.data)] = rec.data
            done += 1
        if not done:
            return False
        if done == len(chain):
            del self._chains[line]
            self._marks.pop(line, None)
        else:
            del chain[:done]
        return True

    def _retire_nt(self) -> bool:
        kept: list[_Pending] = []
        blocked_units: set[int] = set()
        progress = False
        for rec in self._nt:
            unit = rec.offset & ~_UNIT_MASK
            chain = self._chains.get(rec.offset - (rec.offset & _LINE_MASK), ())
            blocked = (
                not rec.forced
                or unit in blocked_units
                or any(c.seq < rec.seq and unit in c.units() for c in chain)
            )
            if blocked:
                kept.append(rec)
                blocked_units.add(unit)
                continue
            self._durable[rec.offset : rec.offset + len(rec.data)] = rec.data
            same_unit = self._nt_units[unit]
            same_unit.remove(rec)
            if not same_unit:
                del self._nt_units[unit]
            progress = True
        self._nt = kept
        return progress

    def _settle(self, lines: Sequence[int]) -> None:
        """Fold every forced store that no earlier pending store overlaps into durable."""
        for line in lines:
            self._retire_chain(line)
        if not self._nt:
            return
        progress = True
        while progress:
            progress = self._retire_nt()
            for line in list(self._chains):
                progress = self._retire_chain(line) or progress

    # ----------------------------------------------------------- crash images

    def pending_groups(self) -> list[PendingGroup]:
        """The independent choices a crash makes now, in a stable order."""
        return [group for group, _ in self._groups()[1]]

    def _line_options(self, pieces: list[Piece]) -> list[list[Piece]]:
        """Which pieces of a line's unforced stores may persist together: the prefixes."""
        return [pieces[:j] for j in range(len(pieces) + 1)]

    def _groups(self) -> tuple[list[Piece], list[tuple[PendingGroup, list[list[Piece]]]]]:
        fixed: list[Piece] = []
        groups: list[tuple[PendingGroup, list[list[Piece]]]] = []
        for line in sorted(self._chains):
            optional: list[Piece] = []
            stores: list[tuple[int, int, int]] = []
            for rec in self._chains[line]:
                if rec.forced:
                    fixed.extend(rec.pieces())
                else:
                    optional.extend(rec.pieces())
                    stores.append((rec.seq, rec.offset, len(rec.data)))
            if optional:
                group = PendingGroup("line", line, len(optional), tuple(stores))
                groups.append((group, self._line_options(optional)))
        for rec in self._nt:
            if rec.forced:
                fixed.extend(rec.pieces())
            else:
                pieces = rec.pieces()
                group = PendingGroup("nt", rec.offset, 1, ((rec.seq, rec.offset, len(rec.data)),))
                groups.append((group, [[], pieces]))
        return fixed, groups

    def _components(self) -> tuple[list[ImageOptions], int]:
        fixed, groups = self._groups()
        parent: dict[int, int] = {}

        def find(unit: int) -> int:
            while parent[unit] != unit:
                parent[unit] = parent[parent[unit]]
                unit = parent[unit]
            return unit

        def unit_of(piece: Piece) -> int:
            return piece[1] & ~_UNIT_MASK

        group_units: list[list[int]] = []
        for _, options in groups:
            units = sorted({unit_of(p) for option in options for p in option})
            group_units.append(units)
            for u in units:
                parent.setdefault(u, u)
            for u in units[1:]:
                parent[find(u)] = find(units[0])
        for piece in fixed:
            parent.setdefault(unit_of(piece), unit_of(piece))
        comp_units: dict[int, list[int]] = {}
        for unit in sorted(parent):
            comp_units.setdefault(find(unit), []).append(unit)
        comp_groups: dict[int, list[int]] = {root: [] for root in comp_units}
        for gi, units in enumerate(group_units):
            comp_groups[find(units[0])].append(gi)
        comp_fixed: dict[int, list[Piece]] = {root: [] for root in comp_units}
        for piece in fixed:
            comp_fixed[find(unit_of(piece))].append(piece)
        components = []
        for root in sorted(comp_units, key=lambda r: comp_units[r][0]):
            units = comp_units[root]
            base = b"".join(bytes(self._durable[u : u + ATOMIC_UNIT]) for u in units)
            components.append(
                ImageOptions(
                    units,
                    comp_groups[root],
                    [groups[g][1] for g in comp_groups[root]],
                    comp_fixed[root],
                    base,
                )
            )
        return components, len(groups)

    def image_components(self, *, labels: bool = True) -> list[ImageComponent]:
        """The images a crash now may leave, as independent components (their product).

        Option 0 of each component persists nothing optional; labels name, per pending
        group, how much of it persisted (with ``labels=False`` they are empty strings: the
        same components, options in the same order, without the cost of describing
        them). The base of every unit is :meth:`durable`."""
        if not labels:
            return [
                ImageComponent(tuple(comp.units), tuple(comp.options), ("",) * len(comp.options))
                for comp in self._components()[0]
            ]
        described = self.pending_groups()
        out = []
        for comp in self._components()[0]:
            texts = []
            for choice in comp.option_choices:
                parts = []
                for g, chosen in zip(comp.groups, choice):
                    group = described[g]
                    stores = ", ".join(f"#{seq}@{off:#x}+{n}" for seq, off, n in group.stores)
                    if group.kind == "line":
                        parts.append(f"line {group.offset:#x}: {chosen}/{group.pieces} pieces persisted of {stores}")
                    else:
                        parts.append(f"nt {group.offset:#x}: {'persisted' if chosen else 'lost'} ({stores})")
                texts.append("; ".join(parts))
            out.append(ImageComponent(tuple(comp.units), tuple(comp.options), tuple(texts)))
        return out

    def fill(self, offset: int, data: bytes) -> None:
        """Set bytes that no store since the last reboot has touched, in the visible and
        the durable image alike (a lazy crash image deciding what a crash left there).
        Not an instruction: hooks and watches are not told."""
        self._check(offset, len(data))
        if data:
            self._touched.update(range(offset >> _PAGE_SHIFT, ((offset + len(data) - 1) >> _PAGE_SHIFT) + 1))
        self.visible[offset : offset + len(data)] = data
        self._durable[offset : offset + len(data)] = data

    def count_images(self) -> int:
        """The exact number of distinct images a crash now may leave."""
        components, _ = self._components()
        count = 1
        for comp in components:
            count *= len(comp.options)
        return count

    def crash_images(
        self, limit: int = DEFAULT_IMAGE_LIMIT, seed: int = 0, *, strict: bool = False
    ) -> list[CrashImage]:
        """The images a crash now may leave: all of them, or a sample above ``limit``.

        Images are distinct. The order is deterministic: nothing optional persisted
        first, everything persisted second, then the rest (see the module docstring).
        The sample always holds each group alone dropped and alone kept, even past
        ``limit`` — unless ``strict``, which cuts it at ``limit`` in that same order.
        """
        components, group_count = self._components()
        units = tuple(u for comp in components for u in comp.units)

        offsets = [0]
        for comp in components:
            offsets.append(offsets[-1] + len(comp.units) * ATOMIC_UNIT)

        def image_of(option_indices: Sequence[int], patch: tuple[bytes, int] | None = None) -> CrashImage:
            if patch is None:
                contents = b"".join(c.options[i] for c, i in zip(components, option_indices))
            else:  # one component differs from an already joined image: splice it in
                blob, ci = patch
                option = components[ci].options[option_indices[ci]]
                contents = blob[: offsets[ci]] + option + blob[offsets[ci + 1] :]

            def choice() -> tuple[int, ...]:
                out = [0] * group_count
                for comp, i in zip(components, option_indices):
                    for g, c in zip(comp.groups, comp.option_choices[i]):
                        out[g] = c
                return tuple(out)

            return CrashImage(units, contents, choice)

        nothing = tuple(0 for _ in components)
        everything = tuple(comp.option_of(comp.top()) for comp in components)
        component_of: dict[int, tuple[int, int]] = {}  # group -> (component, position)
        for ci, comp in enumerate(components):
            for position, g in enumerate(comp.groups):
                component_of[g] = (ci, position)

        total = 1
        for comp in components:
            total *= len(comp.options)
        nothing_image, everything_image = image_of(nothing), image_of(everything)
        images: dict[CrashImage, None] = {nothing_image: None}
        images.setdefault(everything_image, None)

        def varied(group: int, value: int, base_choice: int) -> CrashImage:
            """Every group at 0 (``base_choice`` 0) or at its top (1), but ``group`` at ``value``."""
            ci, position = component_of[group]
            comp = components[ci]
            sub = [0] * len(comp.groups) if base_choice == 0 else list(comp.top())
            sub[position] = value
            base, base_image = (nothing, nothing_image) if base_choice == 0 else (everything, everything_image)
            out = list(base)
            out[ci] = comp.option_of(sub)
            return image_of(out, (base_image.contents, ci))

        if total <= limit:
            for option_indices in product(*(range(len(c.options)) for c in components)):
                images.setdefault(image_of(option_indices), None)
            return list(images)

        top = [0] * group_count
        for comp in components:
            for g, c in zip(comp.groups, comp.top()):
                top[g] = c
        for g in range(group_count):  # each group alone dropped, alone kept: always
            if strict and len(images) >= limit:
                return list(images)[:limit]
            images.setdefault(varied(g, 0, 1), None)
            images.setdefault(varied(g, top[g], 0), None)
        for g in range(group_count):  # torn lines, while room remains
            for j in range(1, top[g]):
                if len(images) >= limit:
                    break
                images.setdefault(varied(g, j, 1), None)
        rng = random.Random(seed)
        attempts = 0
        while len(images) < limit and attempts < 4 * limit:
            attempts += 1
            images.setdefault(image_of([rng.randrange(len(c.options)) for c in components]), None)
        return list(images)[:limit] if strict else list(images)

    def image_bytes(self, image: CrashImage | None = None) -> bytes:
        """The whole SCM as ``image`` leaves it (``None``: only what is durable)."""
        memory = bytearray(self._durable)
        if image is None:
            return self.durable()
        image.apply(memory)
        return bytes(memory)

    def describe(self, image: CrashImage) -> list[str]:
        """Which pending stores ``image`` persisted, one line per group, for reports."""
        lines = []
        for group, chosen in zip(self.pending_groups(), image.choice):
            stores = ", ".join(f"#{seq}@{off:#x}+{length}" for seq, off, length in group.stores)
            if group.kind == "line":
                lines.append(f"line {group.offset:#x}: {chosen}/{group.pieces} pieces persisted of {stores}")
            else:
                lines.append(f"nt {group.offset:#x}: {'persisted' if chosen else 'lost'} ({stores})")
        return lines

    # ----------------------------------------------------------------- reboot

    def reboot(self, image: CrashImage | bytes | None = None) -> None:
        """Crash and restart: memory holds ``image`` (a crash image of this emulator,
        a whole-SCM byte image, or ``None`` for only what is durable), nothing pending."""
        if isinstance(image, bytes) and image is self._booted:
            # The same image again (a crash explorer's next run): restore what changed.
            for page in self._touched:
                start, end = page << _PAGE_SHIFT, (page + 1) << _PAGE_SHIFT
                self.visible[start:end] = image[start:end]
                self._durable[start:end] = image[start:end]
        else:
            if isinstance(image, CrashImage):
                memory = self.image_bytes(image)
            elif image is None:
                memory = self.durable()
            else:
                if len(image) != self.size:
                    raise ScmError(f"image of {len(image)} bytes does not fit an SCM of {self.size} bytes")
                memory = bytes(image)
            self.visible[:] = memory
            self._durable[:] = memory
        self._booted = image if isinstance(image, bytes) else None
        self._touched.clear()
        self._chains.clear()
        self._marks.clear()
        self._nt.clear()
        self._nt_units.clear()
        self.events = 0

    # ------------------------------------------------------------- invariants

    def check_invariants(self) -> None:
        """Assert every internal invariant; raise ``AssertionError`` naming the broken one."""
        assert len(self.visible) == len(self._durable) == self.size, "image sizes differ"
        for line, chain in self._chains.items():
            assert chain, f"empty chain kept for line {line:#x}"
            seqs = [rec.seq for rec in chain]
            assert seqs == sorted(seqs), f"line {line:#x}: pending stores out of program order"
            flags = [rec.forced for rec in chain]
            assert flags == sorted(flags, reverse=True), f"line {line:#x}: forced stores are not a prefix"
            for rec in chain:
                assert rec.data, f"line {line:#x}: empty pending store"
                assert line <= rec.offset and rec.offset + len(rec.data) <= line + CACHE_LINE, (
                    f"pending store #{rec.seq} crosses line {line:#x}"
                )
                assert rec.seq < self._seq, "pending store from the future"
            assert not (chain[0].forced and not self._blocked_by_nt(chain[0])), (
                f"line {line:#x}: a forced store was not folded into durable"
            )
        for line, mark in self._marks.items():
            assert line in self._chains, f"flush mark on line {line:#x} with nothing pending"
            assert mark <= self._seq, "flush mark from the future"
        indexed = sorted(id(rec) for recs in self._nt_units.values() for rec in recs)
        assert indexed == sorted(id(rec) for rec in self._nt), "non-temporal index out of date"
        assert [r.seq for r in self._nt] == sorted(r.seq for r in self._nt), "nt stores out of order"
        for unit, recs in self._nt_units.items():
            assert recs, f"empty nt index entry at {unit:#x}"
            for rec in recs:
                assert rec.offset & ~_UNIT_MASK == unit and rec.offset + len(rec.data) <= unit + ATOMIC_UNIT, (
                    f"nt store #{rec.seq} crosses its unit"
                )
        if self.mode is PersistMode.EADR:
            assert not self._marks, "eADR needs no flush marks"
            assert all(rec.forced for chain in self._chains.values() for rec in chain), (
                "eADR: a cached store is not forced"
            )
        expected = bytearray(self._durable)
        for _, at, data in sorted(p for rec in self._all_pending() for p in rec.pieces()):
            expected[at : at + len(data)] = data
        assert expected == self.visible, "visible image is not durable + pending stores"
