"""The U-Log proofs' machine model: word/line memory, symbolic programs, and crashes.

What :mod:`proofs.ulog_programs` builds its programs from and :mod:`proofs.ulog` states
its theorems over: 64-bit words and their cache lines (:data:`WORD_BITS`,
:func:`line_index`, :func:`word`, :func:`word_var`, :data:`Image`); straight-line
programs (:class:`SymStore`, :class:`Step`, :data:`Program`, :class:`ProgramBuilder`,
:func:`run`); and the crash encoding (:func:`shadow_program`, :func:`guarantee_points`,
:class:`Crash`, :func:`crash`). Nothing here knows the U-Log's layout.

The encoding
------------
Memory is a fixed set of 64-bit words (the U-Log's are
:data:`proofs.ulog_programs.LOCATIONS`); word ``w`` is at byte address ``8 * w``, so a
word is an atomic unit and words ``8k .. 8k+7`` share a 64-byte line.
A protocol is a straight-line *program* of symbolic stores, ``clwb`` and ``sfence``
(:class:`SymStore`, :class:`spec.persistency.Clwb`, :class:`spec.persistency.Sfence`),
grouped into named epochs (log, tables, data, attrs, invalidate). A store has a symbolic
value and a symbolic *issue* condition: a write of symbolic offset and length issues the
store to word ``m`` iff ``off <= m < off + len``, so one program stands for every write.

A crash (:func:`crash`) is an integer ``crash_point`` in ``[0, N]`` (how many of the N
instructions ran) and one fresh Boolean ``persisted`` per store. The allowed images are
exactly those of :mod:`spec.persistency` (ADR), in Z3:

- a store takes effect iff it ran (``position < crash_point``), was issued, and persisted;
- a store is *guaranteed* once ``crash_point`` reaches the first prefix of the program for
  which :func:`spec.persistency.is_guaranteed` holds (a later ``clwb`` of its line and a
  later ``sfence``); such a store must have persisted;
- same-line order: if an issued store took effect, every earlier issued store to its
  line (``spec.persistency.line_of``) took effect;
- each word holds the value of the last store to it that took effect, else its initial
  value.

The guarantee points are computed by calling the spec's own ``is_guaranteed`` on a
concrete shadow of the program, and the tests compare the images this encoding allows
with ``spec.persistency.allowed_images`` on concrete writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import z3

from proofs.solver import Z3Context, Z3Expr
from spec.persistency import (
    ATOMIC_UNIT,
    CACHE_LINE,
    AtomicWrite,
    Clwb,
    Instruction,
    PersistMode,
    Sfence,
    Store,
    is_guaranteed,
    line_of,
)

__all__ = [
    "WORD_BITS",
    "LINE_WORDS",
    "Image",
    "SymStore",
    "Step",
    "Program",
    "ProgramBuilder",
    "Crash",
    "line_index",
    "word",
    "word_var",
    "shadow_program",
    "guarantee_points",
    "run",
    "crash",
]

# ------------------------------------------------------------------------ the words

WORD_BITS = 64
#: Words per 64-byte cache line.
LINE_WORDS = CACHE_LINE // ATOMIC_UNIT


def line_index(loc: int) -> int:
    """The cache line (0, 1, …) of word ``loc``, by :func:`spec.persistency.line_of`."""
    return line_of(loc * ATOMIC_UNIT) // CACHE_LINE


def word(value: int, ctx: Z3Context) -> Z3Expr:
    """The 64-bit constant ``value`` in ``ctx``."""
    return z3.BitVecVal(value, WORD_BITS, ctx)


def word_var(name: str, ctx: Z3Context) -> Z3Expr:
    """A fresh 64-bit variable ``name`` in ``ctx``."""
    return z3.BitVec(name, WORD_BITS, ctx)


#: A memory image: one 64-bit Z3 term per word of the memory
#: (:data:`proofs.ulog_programs.LOCATIONS`).
Image = Mapping[int, Z3Expr]

# --------------------------------------------------------------------- programs


@dataclass(frozen=True)
class SymStore:
    """A cached 8-byte store of ``value`` to word ``loc``, executed iff ``issued``."""

    loc: int
    value: Z3Expr
    issued: Z3Expr
    label: str


@dataclass(frozen=True)
class Step:
    """One instruction of a program and the epoch (protocol step) it belongs to."""

    instruction: SymStore | Clwb | Sfence
    epoch: str

    @property
    def text(self) -> str:
        """The instruction as a person reads it."""
        instruction = self.instruction
        if isinstance(instruction, SymStore):
            return instruction.label
        if isinstance(instruction, Clwb):
            return f"clwb line {line_index(instruction.addr // ATOMIC_UNIT)}"
        return "sfence"


Program = tuple[Step, ...]


class ProgramBuilder:
    """Appends the steps of a program, epoch by epoch."""

    def __init__(self, ctx: Z3Context) -> None:
        self.ctx = ctx
        self.steps: list[Step] = []
        self.epoch = ""

    def begin(self, epoch: str) -> None:
        self.epoch = epoch

    def store(self, loc: int, value: Z3Expr, label: str, issued: Z3Expr | None = None) -> None:
        condition = z3.BoolVal(True, self.ctx) if issued is None else issued
        self.steps.append(Step(SymStore(loc, value, condition, label), self.epoch))

    def flush(self, locs: Iterable[int]) -> None:
        """``clwb`` each line holding one of ``locs``, in line order."""
        for line in sorted({line_index(loc) for loc in locs}):
            self.steps.append(Step(Clwb(line * CACHE_LINE), self.epoch))

    def fence(self) -> None:
        self.steps.append(Step(Sfence(), self.epoch))

    def program(self) -> Program:
        return tuple(self.steps)


def shadow_program(program: Program) -> list[Instruction]:
    """The program as :mod:`spec.persistency` instructions (every store issued, zero data):
    what the spec's guarantee rule is asked about."""
    shadow: list[Instruction] = []
    for step in program:
        instruction = step.instruction
        if isinstance(instruction, SymStore):
            shadow.append(Store(instruction.loc * ATOMIC_UNIT, bytes(ATOMIC_UNIT)))
        else:
            shadow.append(instruction)
    return shadow


def guarantee_points(program: Program) -> tuple[int | None, ...]:
    """For each store, the shortest executed prefix (instruction count) after which the
    spec (:func:`spec.persistency.is_guaranteed`, ADR) guarantees it durable; ``None``
    for other instructions and for stores never guaranteed.

    A prefix that guarantees a store keeps guaranteeing it when extended, so the first
    such prefix decides every crash point.
    """
    shadow = shadow_program(program)
    points: list[int | None] = []
    for position, step in enumerate(program):
        point: int | None = None
        if isinstance(step.instruction, SymStore):
            write = AtomicWrite(position, step.instruction.loc * ATOMIC_UNIT, bytes(8), False)
            for executed in range(position + 1, len(shadow) + 1):
                if is_guaranteed(shadow[:executed], write, PersistMode.ADR):
                    point = executed
                    break
        points.append(point)
    return tuple(points)


def run(program: Program, initial: Image) -> dict[int, Z3Expr]:
    """The image after every issued store of ``program`` (what a load sees at the end,
    and what is durable once the last store is flushed and fenced)."""
    image = dict(initial)
    for step in program:
        instruction = step.instruction
        if isinstance(instruction, SymStore):
            loc = instruction.loc
            image[loc] = z3.If(instruction.issued, instruction.value, image[loc])
    return image


# ---------------------------------------------------------------------- crashes


@dataclass(frozen=True)
class Crash:
    """A symbolic crash of ``program`` started from ``initial``.

    ``point`` (an Int in ``[0, len(program)]``) is how many instructions ran;
    ``persisted[i]`` is the fresh Boolean of store ``i`` (``None`` for other
    instructions); ``took_effect[i]`` says the store ran, was issued and persisted;
    ``allowed`` is the persistency model's constraints; ``image`` the crash image.
    """

    program: Program
    point: Z3Expr
    persisted: tuple[Z3Expr | None, ...]
    took_effect: tuple[Z3Expr | None, ...]
    guaranteed_at: tuple[int | None, ...]
    allowed: Z3Expr
    image: dict[int, Z3Expr]

    def guaranteed(self, position: int) -> Z3Expr:
        """Whether store ``position`` is guaranteed durable at the crash point."""
        point = self.guaranteed_at[position]
        if point is None:
            return z3.BoolVal(False, self.point.ctx)
        return self.point >= point

    def executed(self, position: int) -> Z3Expr:
        """Whether instruction ``position`` ran before the crash."""
        return self.point > position


def crash(program: Program, initial: Image, name: str) -> Crash:
    """Every crash of ``program`` from ``initial`` at once (see the module docstring):
    an Int crash point, a fresh Boolean per store, and the constraints of the x86
    persistency model (guaranteed stores persisted, same-line stores a prefix)."""
    ctx = next(iter(initial.values())).ctx
    point = z3.Int(f"{name}.crash_point", ctx)
    guaranteed_at = guarantee_points(program)
    persisted: list[Z3Expr | None] = []
    took_effect: list[Z3Expr | None] = []
    constraints = [point >= 0, point <= len(program)]
    for position, step in enumerate(program):
        instruction = step.instruction
        if not isinstance(instruction, SymStore):
            persisted.append(None)
            took_effect.append(None)
            continue
        flag = z3.Bool(f"{name}.persisted#{position}", ctx)
        persisted.append(flag)
        took_effect.append(z3.And(point > position, instruction.issued, flag))
        must = guaranteed_at[position]
        if must is not None:
            constraints.append(z3.Implies(z3.And(point >= must, instruction.issued), flag))
    stores = [
        (i, s.instruction) for i, s in enumerate(program) if isinstance(s.instruction, SymStore)
    ]
    for later_index, (later, later_store) in enumerate(stores):
        for earlier, earlier_store in stores[:later_index]:
            assert isinstance(later_store, SymStore) and isinstance(earlier_store, SymStore)
            if line_index(later_store.loc) != line_index(earlier_store.loc):
                continue
            constraints.append(
                z3.Implies(
                    z3.And(took_effect[later], earlier_store.issued), persisted[earlier]
                )
            )
    image = dict(initial)
    for position, step in enumerate(program):
        instruction = step.instruction
        if isinstance(instruction, SymStore):
            loc = instruction.loc
            image[loc] = z3.If(took_effect[position], instruction.value, image[loc])
    return Crash(
        program,
        point,
        tuple(persisted),
        tuple(took_effect),
        guaranteed_at,
        z3.And(*constraints),
        image,
    )
