"""Differential check of an SCM emulator against the persistency spec.

Runs a program of stores, flushes and fences on an emulator, asks it for every crash
image, and compares the set with ``spec.persistency.allowed_images`` (brute force).
Used by the stateful test, by ``memoracle check``, and to show that every mutant in
``memoracle.machine.scm_mutants`` is caught.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from impl.scm_emu import ScmEmu
from spec.persistency import (
    Clflush,
    Clflushopt,
    Clwb,
    Instruction,
    NtStore,
    PersistMode,
    Sfence,
    Store,
    allowed_images,
    atomic_writes,
)

EmuFactory = Callable[[int, PersistMode], ScmEmu]


def execute(emu: ScmEmu, program: Sequence[Instruction]) -> None:
    """Run ``program`` on ``emu``, instruction by instruction."""
    for instruction in program:
        if isinstance(instruction, Store):
            emu.store(instruction.addr, instruction.data)
        elif isinstance(instruction, NtStore):
            emu.ntstore(instruction.addr, instruction.data)
        elif isinstance(instruction, Clwb):
            emu.clwb(instruction.addr)
        elif isinstance(instruction, Clflushopt):
            emu.clflushopt(instruction.addr)
        elif isinstance(instruction, Clflush):
            emu.clflush(instruction.addr)
        else:
            emu.sfence()


def render_program(program: Sequence[Instruction]) -> str:
    """The program one instruction per line, as a reproducer a person can read."""
    out = []
    for i, ins in enumerate(program):
        if isinstance(ins, (Store, NtStore)):
            kind = "store" if isinstance(ins, Store) else "ntstore"
            out.append(f"{i:3}: {kind:10} {ins.addr:#06x} {ins.data.hex()}")
        elif isinstance(ins, Sfence):
            out.append(f"{i:3}: sfence")
        else:
            out.append(f"{i:3}: {type(ins).__name__.lower():10} {ins.addr:#06x}")
    return "\n".join(out)


@dataclass(frozen=True)
class ImageMismatch:
    """The emulator's crash images differ from the spec's for ``program``."""

    program: tuple[Instruction, ...]
    mode: PersistMode
    initial: bytes
    missing: frozenset[bytes]  #: allowed by the spec, not produced by the emulator
    extra: frozenset[bytes]  #: produced by the emulator, not allowed by the spec
    count_reported: int
    count_produced: int

    def render(self) -> str:
        """A report: the program, then the first differing images as byte diffs."""
        lines = [
            f"crash images differ ({self.mode.value}): {len(self.missing)} missing, "
            f"{len(self.extra)} not allowed; count_images() said {self.count_reported}, "
            f"crash_images() gave {self.count_produced}",
            render_program(self.program),
        ]
        for label, images in (("missing", self.missing), ("not allowed", self.extra)):
            for image in sorted(images)[:3]:
                diff = [
                    f"{i:#06x}={b:02x}" for i, (a, b) in enumerate(zip(self.initial, image)) if a != b
                ]
                lines.append(f"  {label}: changed bytes {' '.join(diff) or '(none)'}")
        return "\n".join(lines)


def compare(
    program: Sequence[Instruction],
    mode: PersistMode,
    size: int,
    factory: EmuFactory = ScmEmu,
    initial: bytes | None = None,
) -> ImageMismatch | None:
    """Run ``program`` and compare the emulator's images with the spec's.

    Returns ``None`` when they are the same set and ``count_images()`` is exact.
    """
    start = initial if initial is not None else bytes(size)
    emu = factory(size, mode)
    emu.reboot(start)
    execute(emu, program)
    emu.check_invariants()
    produced = emu.crash_images(limit=1 << 30)
    got = frozenset(emu.image_bytes(image) for image in produced)
    want = allowed_images(start, program, mode)
    reported = emu.count_images()
    if got == want and reported == len(produced) == len(got):
        return None
    return ImageMismatch(
        tuple(program), mode, start, want - got, got - want, reported, len(produced)
    )


def random_program(
    rng: random.Random, size: int, max_writes: int = 10, *, repeated_flushes: bool = True
) -> list[Instruction]:
    """A small random program over ``size`` bytes with at most ``max_writes`` atomic writes.

    Addresses cluster on few lines and units so that same-line order, same-unit
    overwrites and non-temporal/cached overlap all occur often. With
    ``repeated_flushes``, some steps write back one line twice before a fence — store,
    flush, store, flush (``clwb`` or ``clflushopt``), then usually the ``sfence`` — so
    that a second write-back of a line still in flight is judged, with and without its
    fence (random steps alone make that sequence in about one program in a hundred).
    """
    program: list[Instruction] = []
    value = 0
    while True:
        if repeated_flushes and rng.random() < 0.08:
            line = rng.randrange(0, size // 64) * 64
            flush = rng.choice((Clwb, Clflushopt))
            burst: list[Instruction] = []
            for _ in range(2):
                length = rng.choice([1, 4, 8, 8, 16])
                value = value % 255 + 1
                burst.append(Store(line + rng.randrange(0, 64 - length + 1), bytes([value]) * length))
                burst.append(flush(line + rng.randrange(64)))
            if rng.random() < 0.8:
                burst.append(Sfence())
            if len(atomic_writes([*program, *burst])) > max_writes:
                return program
            program += burst
            continue
        kind = rng.choices(
            ["store", "ntstore", "clwb", "clflushopt", "clflush", "sfence"], [6, 2, 3, 1, 1, 3]
        )[0]
        addr = rng.randrange(0, size - 1)
        if kind in ("store", "ntstore"):
            length = rng.choice([1, 2, 4, 8, 8, 12, 16])
            addr = min(addr, size - length)
            value = value % 255 + 1
            instruction: Instruction = (Store if kind == "store" else NtStore)(
                addr, bytes([value]) * length
            )
            if len(atomic_writes([*program, instruction])) > max_writes:
                return program
        elif kind == "clwb":
            instruction = Clwb(addr)
        elif kind == "clflushopt":
            instruction = Clflushopt(addr)
        elif kind == "clflush":
            instruction = Clflush(addr)
        else:
            instruction = Sfence()
        program.append(instruction)


def campaign(
    seed: int,
    programs: int,
    mode: PersistMode,
    factory: EmuFactory = ScmEmu,
    size: int = 192,
    *,
    repeated_flushes: bool = True,
) -> ImageMismatch | None:
    """Check ``programs`` random programs from ``seed`` (see :func:`random_program`);
    the first mismatch, or None."""
    rng = random.Random(seed)
    for _ in range(programs):
        program = random_program(rng, size, repeated_flushes=repeated_flushes)
        mismatch = compare(program, mode, size, factory)
        if mismatch is not None:
            return mismatch
    return None


#: Images a sampled crash may return in :func:`sampled_campaign` (programs with more
#: possible images than this are the ones it judges).
SAMPLE_LIMIT = 6


def check_sample(
    program: Sequence[Instruction], mode: PersistMode, size: int, seed: int,
    factory: EmuFactory = ScmEmu, limit: int = SAMPLE_LIMIT,
) -> str | None:  # fmt: skip
    """Run ``program`` and judge the emulator's *sampled* crash images (what the crash
    explorers ask for above their image limit) and its reboot into one of them; a
    problem, or None (also when the program has no more than ``limit`` images).

    Judged: every sampled image is one the spec allows, the images are distinct, the
    first is what is durable and the second everything visible (the documented order),
    the strict sample has at most ``limit`` images, ``describe`` names each pending
    group once; rebooted into the last sampled image, the SCM holds exactly it, visible
    and durable, with nothing pending.
    """
    emu = factory(size, mode)
    emu.reboot(bytes(size))
    execute(emu, program)
    if emu.count_images() <= limit:
        return None
    allowed = allowed_images(bytes(size), program, mode)
    sample = emu.crash_images(limit=limit, seed=seed)
    strict = emu.crash_images(limit=limit, seed=seed, strict=True)
    contents = [emu.image_bytes(image) for image in sample]
    not_allowed = [i for i, image in enumerate(contents) if image not in allowed]
    if not_allowed:
        return f"sampled image {not_allowed[0]} is not allowed by the spec: {emu.describe(sample[not_allowed[0]])}"
    if len(set(contents)) != len(contents):
        return f"the sample of {len(contents)} images repeats one"
    if contents[0] != emu.durable() or contents[0] != emu.image_bytes(None):
        return "the sample's first image is not what is durable"
    if contents[1] != emu.read(0, size):
        return "the sample's second image is not everything persisted (the visible memory)"
    if len(strict) > limit or any(emu.image_bytes(image) not in allowed for image in strict):
        return f"the strict sample has {len(strict)} images (limit {limit}) or one not allowed"
    if len(emu.describe(sample[-1])) != len(emu.pending_groups()):
        return "describe() does not name every pending group"
    chosen = contents[-1]
    emu.reboot(sample[-1])
    try:
        emu.check_invariants()
    except AssertionError as error:
        return f"after a reboot into a sampled image the emulator's invariants break: {error}"
    if emu.read(0, size) != chosen or emu.durable() != chosen or emu.count_images() != 1:
        return "after a reboot into a sampled image the SCM does not hold exactly it, with nothing pending"
    return None


def sampled_campaign(
    seed: int, programs: int, mode: PersistMode, factory: EmuFactory = ScmEmu, size: int = 192
) -> tuple[int, str | None]:
    """(programs run, ``None`` or the first problem with its program):
    :func:`check_sample` on ``programs`` random programs of ``seed`` (those with no
    more images than its limit pass unjudged)."""
    rng = random.Random(f"sampled {seed}")
    judged = 0
    for _ in range(programs):
        program = random_program(rng, size, max_writes=12)
        problem = check_sample(program, mode, size, seed, factory)
        if problem is not None:
            return judged, f"{problem}\n{render_program(program)}"
        judged += 1
    return judged, None
