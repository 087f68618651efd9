"""UMFS's U-Log, proved crash consistent in one Z3 formula per theorem (Yggdrasil style).

Every crash of a U-Log transaction, at every instruction and with every set of pending
stores that the x86 persistency model (:mod:`spec.persistency`) lets survive, must
recover to the file as it was before the operation or as it is after it; and a crash
*during* recovery must not change what recovery produces.

The encoding
------------
Memory is a fixed set of 64-bit words (:data:`LOCATIONS`); word ``w`` is at byte address
``8 * w``, so a word is an atomic unit and words ``8k .. 8k+7`` share a 64-byte line.
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

The model of the file and the U-Log (bounds)
--------------------------------------------
- **File**: data words ``data[0..15]`` (two cache lines), a ``size`` word (in words,
  at most 16, on its own line: the inode's size field, or the U-Log's cached-attribute
  line while the file is open), and a ``link`` word (on its own line): the page-table
  entry an append links its new page through. The file a user sees is
  ``(size, link, data[0..size))``; words at or beyond ``size`` are not part of it, so
  an append's new words need no undo (UMFS writes them into fresh pages).
- **U-Log**: a header line ``state, count, checksum`` (``state`` stored last, as UMFS
  does) and two record slots, each ``addr, len, val[0..15]`` (18 words; addresses are
  word indices). UMFS packs records end to end in bytes; fixed slots change nothing the
  theorems depend on. Before the operation the log is idle: its ``state`` is not
  :data:`LOG_VALID`; every other log word holds arbitrary stale contents.
- **Checksum**: an uninterpreted function of the covered log contents (``count`` and,
  for each record in use, ``addr``, ``len`` and ``val[0..len)``; :func:`covered`), i.e.
  *any* function. The operation theorems assume it is *ideal* for the one pair that
  matters: the covered contents of the crash image have the committed contents' checksum
  only if they are the committed contents (a torn or stale record set never validates).
  UMFS uses CRC-32, which meets this except with probability about 2**-32 per torn log.
  The recovery theorem assumes nothing about the checksum.
- **Recovery** (:func:`recovery_program`): if ``state == VALID`` and the stored checksum
  matches, restore the records in reverse order (record ``k < count`` writes
  ``val[j]`` to word ``addr + j`` for ``j < len``, only into the file's words, which
  is UMFS's ``valid_region`` check), ``clwb`` + ``sfence``, then ``state := 0``,
  ``clwb`` + ``sfence``; otherwise do nothing. :func:`recover` is that program run to
  the end.

The theorems
------------
``ulog_inplace_write_recovers``
    For every file (size <= 16), old data, new data, offset and length with
    ``off + len <= size``, every stale log, every crash point of the in-place write
    (log the old words; fence; write the new words; fence; invalidate; fence) and every
    allowed persisted set: the recovered file is the old file or the new file; and if
    the crash came after the last instruction, it is the new file.
``ulog_append_recovers``
    Likewise for an append of ``1 <= len <= 16 - size`` words at ``size``: log the old
    link and the old size; fence; link (``link := new_link``); fence; write the new
    words at ``[size, size + len)``; fence; ``size := size + len``; fence; invalidate.
``ulog_recovery_idempotent``
    For *every* memory image ``I`` (any file, any log, valid or not, with any records)
    and every crash during ``recover(I)``, at any instruction with any allowed persisted
    set, leaving image ``J``: ``recover(J)`` holds the same file words as
    ``recover(I)``. Since ``J`` is again an image, this covers any number of crashes
    during recovery.
``ulog_inplace_write_fenced_header_needs_no_checksum`` and ``…_append_…``
    The two operation theorems for a variant that is *not* UMFS's protocol: the records
    are flushed and fenced before the header is written, and recovery checks only
    ``state == VALID``; no checksum assumption. UMFS writes records and header in one
    epoch, so there the checksum is load-bearing (see the unchecked-header mutant).

Mutants (``expect="refuted"``): the missing fence between logging and the update, the
log invalidated before the update is flushed and fenced (both for each operation), an
append that does not log the old size, recovery that trusts a valid ``state`` without
checking the checksum, and recovery that invalidates before its restores are fenced.
Each counterexample prints the write, the crash point, the pending stores and whether
each persisted, and the words of the old, new, crashed and recovered files, in hex.

What the model leaves out: eADR (which only removes crash images) and non-temporal
stores; byte granularity (UMFS's records and writes are byte ranges; here whole words);
a write that straddles the end of the file (in place below the size, appended above: the
two theorems' programs in one transaction); UMFS's one record per page touched (here one
record for the whole range); log growth (unlogged, outside the transaction); and what
lies beyond the size after recovery to the old file (the theorems compare the file, not
the bytes past its end). Recovery ignores a record's words outside the file where UMFS
reports corruption; with the checksum trusted both see only the committed records.

Solver-facing detail: range tests such as ``off <= m < off + len`` are written as
disjunctions of equalities of ``off`` with constants (exactly the same relation, without
64-bit subtraction), which keeps every theorem near a second.

Each theorem's variables live in a fresh Z3 context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import z3

from proofs.registry import Theorem, Verdict, register
from proofs.solver import (
    Explain,
    Z3Context,
    Z3Expr,
    Z3Model,
    as_bool,
    as_int,
    check_claim,
    hex64,
    model_evaluator,
)
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
    "DATA_WORDS",
    "RECORD_SLOTS",
    "RECORD_VALUES",
    "RECORD_WORDS",
    "DATA",
    "LINK",
    "SIZE",
    "STATE",
    "COUNT",
    "CHECKSUM",
    "RECORDS",
    "FILE_WORDS",
    "LOG_WORDS",
    "LOCATIONS",
    "LOG_VALID",
    "COVERED_WORDS",
    "Image",
    "Checksum",
    "SymStore",
    "Step",
    "Program",
    "Crash",
    "Recovery",
    "Protocol",
    "WriteVars",
    "Claim",
    "record_addr",
    "record_len",
    "record_value",
    "location_name",
    "line_index",
    "guarantee_points",
    "shadow_program",
    "crash",
    "run",
    "covered",
    "log_is_valid",
    "recovery_program",
    "recover",
    "uninterpreted_checksum",
    "fresh_write_vars",
    "initial_image",
    "inplace_write_program",
    "append_program",
    "inplace_new_file",
    "append_new_file",
    "same_file",
    "write_claim",
    "idempotence_claim",
    "fresh_image",
    "PROTOCOL",
    "MUTANT_MISSING_FENCE",
    "MUTANT_INVALIDATE_BEFORE_FLUSH",
    "MUTANT_SIZE_NOT_LOGGED",
    "UNCHECKED_RECOVERY",
    "MUTANT_UNCHECKED",
    "FENCED_HEADER",
    "RECOVERY",
    "MUTANT_RECOVERY_EARLY_INVALIDATE",
]

# ---------------------------------------------------------------------- the layout

WORD_BITS = 64
#: Words per 64-byte cache line.
LINE_WORDS = CACHE_LINE // ATOMIC_UNIT
#: The file's data region, in words: two cache lines.
DATA_WORDS = 16
#: Record slots in the U-Log (an append uses two: link and size).
RECORD_SLOTS = 2
#: Old-value words per record slot.
RECORD_VALUES = DATA_WORDS
#: Words per record slot: ``addr``, ``len``, then the old values.
RECORD_WORDS = 2 + RECORD_VALUES

DATA: tuple[int, ...] = tuple(range(DATA_WORDS))  # lines 0 and 1
LINK = 16  # line 2
SIZE = 24  # line 3
STATE, COUNT, CHECKSUM = 32, 33, 34  # line 4: the log header
RECORDS = 40  # lines 5 .. 9: the record slots

FILE_WORDS: tuple[int, ...] = DATA + (LINK, SIZE)
LOG_WORDS: tuple[int, ...] = (STATE, COUNT, CHECKSUM) + tuple(
    range(RECORDS, RECORDS + RECORD_SLOTS * RECORD_WORDS)
)
#: Every word of the model's memory.
LOCATIONS: tuple[int, ...] = FILE_WORDS + LOG_WORDS

#: The header's ``state`` while an operation is in flight (UMFS's ``LOG_VALID``).
LOG_VALID = 0x4C4F_4756_414C_4944

#: How many words the checksum covers: ``count`` and every word of every slot.
COVERED_WORDS = 1 + RECORD_SLOTS * RECORD_WORDS


def record_addr(slot: int) -> int:
    """The word holding record ``slot``'s target address (a word index)."""
    return RECORDS + slot * RECORD_WORDS


def record_len(slot: int) -> int:
    """The word holding record ``slot``'s length in words."""
    return record_addr(slot) + 1


def record_value(slot: int, j: int) -> int:
    """The word holding record ``slot``'s ``j``-th old value."""
    return record_addr(slot) + 2 + j


def location_name(loc: int) -> str:
    """A word's name: ``data[3]``, ``link``, ``size``, ``log.state``, ``rec1.val[0]``…"""
    if loc in DATA:
        return f"data[{loc}]"
    names = {LINK: "link", SIZE: "size", STATE: "log.state", COUNT: "log.count"}
    names[CHECKSUM] = "log.checksum"
    if loc in names:
        return names[loc]
    slot, within = divmod(loc - RECORDS, RECORD_WORDS)
    if 0 <= slot < RECORD_SLOTS:
        field = "addr" if within == 0 else "len" if within == 1 else f"val[{within - 2}]"
        return f"rec{slot}.{field}"
    raise ValueError(f"word {loc} is not in the model's memory")


def line_index(loc: int) -> int:
    """The cache line (0, 1, …) of word ``loc``, by :func:`spec.persistency.line_of`."""
    return line_of(loc * ATOMIC_UNIT) // CACHE_LINE


def _word(value: int, ctx: Z3Context) -> Z3Expr:
    return z3.BitVecVal(value, WORD_BITS, ctx)


def _word_var(name: str, ctx: Z3Context) -> Z3Expr:
    return z3.BitVec(name, WORD_BITS, ctx)


#: A memory image: one 64-bit Z3 term per word of :data:`LOCATIONS`.
Image = Mapping[int, Z3Expr]
#: The log checksum: a 64-bit term of the :data:`COVERED_WORDS` covered words.
Checksum = Callable[[Sequence[Z3Expr]], Z3Expr]

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


class _Builder:
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


# --------------------------------------------------------------------- recovery


def uninterpreted_checksum(ctx: Z3Context) -> Checksum:
    """An arbitrary checksum: an uninterpreted function of the covered words."""
    sort = z3.BitVecSort(WORD_BITS, ctx)
    function = z3.Function("checksum", *([sort] * (COVERED_WORDS + 1)))

    def checksum(words: Sequence[Z3Expr]) -> Z3Expr:
        return function(*words)

    return checksum


def _in_use(image: Image, slot: int) -> Z3Expr:
    return z3.ULT(_word(slot, image[COUNT].ctx), image[COUNT])


def covered(image: Image) -> list[Z3Expr]:
    """The words the checksum covers: ``count``, then for each slot in use (``k < count``)
    its ``addr``, ``len`` and ``val[j]`` for ``j < len``; zero in place of the rest."""
    ctx = image[COUNT].ctx
    zero = _word(0, ctx)
    words = [image[COUNT]]
    for slot in range(RECORD_SLOTS):
        used = _in_use(image, slot)
        length = image[record_len(slot)]
        words.append(z3.If(used, image[record_addr(slot)], zero))
        words.append(z3.If(used, length, zero))
        for j in range(RECORD_VALUES):
            keep = z3.And(used, z3.ULT(_word(j, ctx), length))
            words.append(z3.If(keep, image[record_value(slot, j)], zero))
    return words


def log_is_valid(image: Image, checksum: Checksum, *, check_checksum: bool = True) -> Z3Expr:
    """Whether recovery trusts the log: ``state == LOG_VALID`` and (unless the mutant
    skips it) the stored checksum is the checksum of the covered words."""
    ctx = image[STATE].ctx
    state_valid = image[STATE] == _word(LOG_VALID, ctx)
    if not check_checksum:
        return state_valid
    return z3.And(state_valid, image[CHECKSUM] == checksum(covered(image)))


def _restore(image: Image, slot: int, target: int) -> tuple[Z3Expr, Z3Expr]:
    """Whether record ``slot`` restores word ``target``, and the value it restores.

    It does iff ``addr <= target``, ``target - addr < len`` and ``target - addr <
    RECORD_VALUES``; written as a disjunction over the possible distances ``j`` with
    ``addr == target - j`` (equalities with constants rather than 64-bit subtraction:
    the same relation, cheaper for the solver).
    """
    ctx = image[COUNT].ctx
    addr, length = image[record_addr(slot)], image[record_len(slot)]
    distances = range(min(target, RECORD_VALUES - 1) + 1)
    covers = z3.Or(
        *(z3.And(addr == target - j, z3.ULT(_word(j, ctx), length)) for j in distances)
    )
    value = _word(0, ctx)
    for j in reversed(distances):
        value = z3.If(addr == target - j, image[record_value(slot, j)], value)
    return covers, value


@dataclass(frozen=True)
class Recovery:
    """A recovery procedure: UMFS's, or a mutant of it."""

    name: str
    description: str
    check_checksum: bool = True
    fence_before_invalidate: bool = True


RECOVERY = Recovery("recover_log", "UMFS's recover_log")
UNCHECKED_RECOVERY = Recovery(
    "unchecked_header",
    "recovery that trusts state == VALID without checking the checksum",
    check_checksum=False,
)
MUTANT_RECOVERY_EARLY_INVALIDATE = Recovery(
    "mutant_invalidate_before_restore_fence",
    "mutant recovery: clears state before the restores are flushed and fenced",
    fence_before_invalidate=False,
)


def recovery_program(image: Image, checksum: Checksum, recovery: Recovery = RECOVERY) -> Program:
    """What recovery executes on ``image``: if the log validates, restore the records in
    reverse slot order (each record's words in address order) into the file's words,
    ``clwb`` + ``sfence``, then ``state := 0``, ``clwb`` + ``sfence``. Every store is
    issued only if the log validates (and the record covers the word)."""
    ctx = image[STATE].ctx
    valid = log_is_valid(image, checksum, check_checksum=recovery.check_checksum)
    builder = _Builder(ctx)
    builder.begin("restore")
    for slot in reversed(range(RECORD_SLOTS)):
        for target in FILE_WORDS:
            covers, value = _restore(image, slot, target)
            builder.store(
                target,
                value,
                f"{location_name(target)} := rec{slot}.val[{target} - rec{slot}.addr]",
                z3.And(valid, _in_use(image, slot), covers),
            )
    zero = _word(0, ctx)
    if recovery.fence_before_invalidate:
        builder.flush(FILE_WORDS)
        builder.fence()
        builder.begin("invalidate")
        builder.store(STATE, zero, "log.state := 0", valid)
        builder.flush([STATE])
        builder.fence()
    else:
        builder.store(STATE, zero, "log.state := 0 (before the restores are fenced)", valid)
        builder.flush(FILE_WORDS + (STATE,))
        builder.fence()
    return builder.program()


def recover(image: Image, checksum: Checksum, recovery: Recovery = RECOVERY) -> dict[int, Z3Expr]:
    """The image after recovery runs to the end on ``image``."""
    return run(recovery_program(image, checksum, recovery), image)


# ------------------------------------------------------------------ the operations


@dataclass(frozen=True)
class Protocol:
    """A U-Log transaction protocol: UMFS's, a variant, or a mutant.

    ``fence_after_log``: the log epoch ends with an ``sfence`` (UMFS: yes).
    ``fence_before_header``: the records are flushed and fenced before the header is
    written (UMFS: no; the checksum detects torn records instead).
    ``invalidate_after_fence``: ``state := 0`` is stored only after the last update
    epoch is flushed and fenced (UMFS: yes).
    ``log_size``: an append logs the old size (UMFS: yes).
    ``recovery``: the recovery procedure that runs after the crash.
    """

    name: str
    description: str
    fence_after_log: bool = True
    fence_before_header: bool = False
    invalidate_after_fence: bool = True
    log_size: bool = True
    recovery: Recovery = RECOVERY


PROTOCOL = Protocol("ulog", "UMFS's U-Log protocol")
MUTANT_MISSING_FENCE = Protocol(
    "mutant_missing_fence",
    "mutant: no sfence between logging and the update (the log lines are clwb'd only)",
    fence_after_log=False,
)
MUTANT_INVALIDATE_BEFORE_FLUSH = Protocol(
    "mutant_invalidate_before_flush",
    "mutant: state := 0 is stored before the last update epoch is flushed and fenced",
    invalidate_after_fence=False,
)
MUTANT_SIZE_NOT_LOGGED = Protocol(
    "mutant_size_not_logged",
    "mutant: the append logs the old link but not the old size",
    log_size=False,
)
MUTANT_UNCHECKED = Protocol(
    "mutant_unchecked_header",
    "UMFS's protocol, recovered by a recovery that does not check the checksum",
    recovery=UNCHECKED_RECOVERY,
)
#: Not UMFS's protocol: the records are flushed and fenced before the header is written,
#: and recovery checks only ``state == VALID``. Proved too: with that fence, the
#: checksum (and the assumption that it is ideal) would be unnecessary.
FENCED_HEADER = Protocol(
    "fenced_header",
    "variant: records flushed and fenced before the header; recovery does not check the checksum",
    fence_before_header=True,
    recovery=UNCHECKED_RECOVERY,
)


@dataclass(frozen=True)
class WriteVars:
    """The free variables of a write theorem, in one Z3 context: the old and new data
    words, the write's offset and length, the file's size and link, the link an append
    installs, and the stale log words."""

    ctx: Z3Context
    old: tuple[Z3Expr, ...]
    new: tuple[Z3Expr, ...]
    off: Z3Expr
    length: Z3Expr
    size: Z3Expr
    link: Z3Expr
    new_link: Z3Expr
    stale: Mapping[int, Z3Expr]


def fresh_write_vars() -> WriteVars:
    """Fresh variables in a fresh Z3 context."""
    ctx = z3.Context()
    return WriteVars(
        ctx=ctx,
        old=tuple(_word_var(f"old[{m}]", ctx) for m in DATA),
        new=tuple(_word_var(f"new[{m}]", ctx) for m in DATA),
        off=_word_var("off", ctx),
        length=_word_var("len", ctx),
        size=_word_var("size", ctx),
        link=_word_var("link", ctx),
        new_link=_word_var("new_link", ctx),
        stale={loc: _word_var(f"stale.{location_name(loc)}", ctx) for loc in LOG_WORDS},
    )


def fresh_image(name: str) -> dict[int, Z3Expr]:
    """An arbitrary memory image (one free word per location) in a fresh context."""
    ctx = z3.Context()
    return {loc: _word_var(f"{name}.{location_name(loc)}", ctx) for loc in LOCATIONS}


def initial_image(v: WriteVars) -> dict[int, Z3Expr]:
    """The image before the operation: the old file and the stale log."""
    image = {m: v.old[m] for m in DATA}
    image[LINK] = v.link
    image[SIZE] = v.size
    image.update(v.stale)
    return image


def _old_word_at(v: WriteVars, start: Z3Expr, j: int) -> Z3Expr:
    """The old data word at ``start + j`` (zero beyond the data), by equalities of
    ``start`` with constants."""
    value = _word(0, v.ctx)
    for m in reversed(DATA[j:]):
        value = z3.If(start == m - j, v.old[m], value)
    return value


def _in_range(m: int, start: Z3Expr, length: Z3Expr) -> Z3Expr:
    """``start <= m < start + len`` without wrap-around, i.e. ``start <= m`` and
    ``m - start < len``, as a disjunction over the distance ``k = m - start``."""
    ctx = start.ctx
    return z3.Or(*(z3.And(start == m - k, z3.ULT(_word(k, ctx), length)) for k in range(m + 1)))


@dataclass(frozen=True)
class _Record:
    """An undo record the log step stores: target address and length (terms and how to
    print them) and its old values; with one value the record is stored whole, with
    more, value ``j`` is stored iff ``j < length``."""

    addr: Z3Expr
    addr_text: str
    length: Z3Expr
    length_text: str
    values: tuple[tuple[Z3Expr, str], ...]


def _log_epoch(
    builder: _Builder,
    v: WriteVars,
    records: Sequence[_Record],
    checksum: Checksum,
    protocol: Protocol,
) -> None:
    """Step 1: store the records, then the header (count, checksum, state last), flush
    the log's lines, and fence (unless the mutant leaves the fence out)."""
    ctx = v.ctx
    record_words = list(range(RECORDS, record_addr(len(records))))
    builder.begin("log")
    for slot, record in enumerate(records):
        builder.store(record_addr(slot), record.addr, f"rec{slot}.addr := {record.addr_text}")
        builder.store(record_len(slot), record.length, f"rec{slot}.len := {record.length_text}")
        for j, (value, text) in enumerate(record.values):
            issued = None if len(record.values) == 1 else z3.ULT(_word(j, ctx), record.length)
            builder.store(record_value(slot, j), value, f"rec{slot}.val[{j}] := {text}", issued)
    if protocol.fence_before_header:
        builder.flush(record_words)
        builder.fence()
    builder.store(COUNT, _word(len(records), ctx), f"log.count := {len(records)}")
    committed = run(builder.program(), initial_image(v))
    checksum_text = "log.checksum := checksum(count, records)"
    builder.store(CHECKSUM, checksum(covered(committed)), checksum_text)
    builder.store(STATE, _word(LOG_VALID, ctx), "log.state := VALID")
    builder.flush([STATE] + record_words)
    if protocol.fence_after_log:
        builder.fence()


def _finish(builder: _Builder, v: WriteVars, last_epoch: Sequence[int], protocol: Protocol) -> None:
    """Flush and fence the last update epoch's words, then invalidate (or the mutant)."""
    zero = _word(0, v.ctx)
    if protocol.invalidate_after_fence:
        builder.flush(last_epoch)
        builder.fence()
        builder.begin("invalidate")
        builder.store(STATE, zero, "log.state := 0")
        builder.flush([STATE])
        builder.fence()
    else:
        builder.store(STATE, zero, "log.state := 0 (before the update is flushed)")
        builder.flush(list(last_epoch) + [STATE])
        builder.fence()


def inplace_write_program(
    v: WriteVars, checksum: Checksum, protocol: Protocol = PROTOCOL
) -> Program:
    """UMFS's in-place write of ``new[m]`` for ``off <= m < off + len``: log the old words
    (one record, ``addr = off``), fence; store the new words, flush, fence; invalidate."""
    builder = _Builder(v.ctx)
    values = tuple(
        (_old_word_at(v, v.off, j), f"old data[off+{j}]") for j in range(RECORD_VALUES)
    )
    _log_epoch(builder, v, [_Record(v.off, "off", v.length, "len", values)], checksum, protocol)
    builder.begin("data")
    for m in DATA:
        builder.store(m, v.new[m], f"data[{m}] := new[{m}]", _in_range(m, v.off, v.length))
    _finish(builder, v, DATA, protocol)
    return builder.program()


def append_program(v: WriteVars, checksum: Checksum, protocol: Protocol = PROTOCOL) -> Program:
    """UMFS's append of ``new[m]`` for ``size <= m < size + len``: log the old link and
    the old size (two records), fence; link; fence; store the new words, fence;
    ``size := size + len``, fence; invalidate."""
    builder = _Builder(v.ctx)
    one = _word(1, v.ctx)
    records = [_Record(_word(LINK, v.ctx), f"{LINK} (link)", one, "1", ((v.link, "old link"),))]
    if protocol.log_size:
        old_size = ((v.size, "old size"),)
        records.append(_Record(_word(SIZE, v.ctx), f"{SIZE} (size)", one, "1", old_size))
    _log_epoch(builder, v, records, checksum, protocol)
    builder.begin("tables")
    builder.store(LINK, v.new_link, "link := new_link")
    builder.flush([LINK])
    builder.fence()
    builder.begin("data")
    for m in DATA:
        builder.store(m, v.new[m], f"data[{m}] := new[{m}]", _in_range(m, v.size, v.length))
    builder.flush(DATA)
    builder.fence()
    builder.begin("attrs")
    builder.store(SIZE, v.size + v.length, "size := size + len")
    _finish(builder, v, [SIZE], protocol)
    return builder.program()


def inplace_new_file(v: WriteVars) -> dict[int, Z3Expr]:
    """The file the in-place write specifies (the spec, not the program): new words in
    ``[off, off + len)``, old words elsewhere, the same size and link."""
    image = {m: z3.If(_in_range(m, v.off, v.length), v.new[m], v.old[m]) for m in DATA}
    image[LINK] = v.link
    image[SIZE] = v.size
    return image


def append_new_file(v: WriteVars) -> dict[int, Z3Expr]:
    """The file the append specifies: new words in ``[size, size + len)``, the new link,
    size ``size + len``."""
    image = {m: z3.If(_in_range(m, v.size, v.length), v.new[m], v.old[m]) for m in DATA}
    image[LINK] = v.new_link
    image[SIZE] = v.size + v.length
    return image


def same_file(a: Image, b: Image) -> Z3Expr:
    """``a`` and ``b`` hold the same file: equal size and link, equal data below the size."""
    ctx = a[SIZE].ctx
    below = [
        z3.Implies(z3.ULT(_word(m, ctx), a[SIZE]), a[m] == b[m]) for m in DATA
    ]
    return z3.And(a[SIZE] == b[SIZE], a[LINK] == b[LINK], *below)


# -------------------------------------------------------------------- the claims


@dataclass(frozen=True)
class Claim:
    """A theorem's formula, ``hypotheses`` implies ``conclusion``, with the parts its
    counterexample is explained from."""

    hypotheses: Z3Expr
    conclusion: Z3Expr
    crash: Crash
    recovered: Mapping[int, Z3Expr]
    expected: tuple[tuple[str, Mapping[int, Z3Expr]], ...]
    valid: Z3Expr

    @property
    def formula(self) -> Z3Expr:
        """``Implies(hypotheses, conclusion)``."""
        return z3.Implies(self.hypotheses, self.conclusion)


def write_claim(v: WriteVars, append: bool, protocol: Protocol) -> Claim:
    """``ulog_inplace_write_recovers`` / ``ulog_append_recovers`` (module docstring).

    Hypotheses: ``size <= 16``; in place, ``off <= size`` and ``len <= size - off``; an
    append, ``1 <= len <= 16 - size``; the log is idle (``stale state != LOG_VALID``);
    the crash is allowed by the persistency model; if recovery checks the checksum, it
    is ideal for the crash image's covered words against the committed ones.
    Conclusion: the recovered file is the old or the new file, and the new one if the
    whole program ran.
    """
    ctx = v.ctx
    checksum = uninterpreted_checksum(ctx)
    initial = initial_image(v)
    if append:
        program = append_program(v, checksum, protocol)
        new_file = append_new_file(v)
        bounds = z3.And(
            z3.ULE(v.size, DATA_WORDS),
            z3.ULE(1, v.length),
            z3.ULE(v.length, _word(DATA_WORDS, ctx) - v.size),
        )
    else:
        program = inplace_write_program(v, checksum, protocol)
        new_file = inplace_new_file(v)
        bounds = z3.And(
            z3.ULE(v.size, DATA_WORDS),
            z3.ULE(v.off, v.size),
            z3.ULE(v.length, v.size - v.off),
        )
    the_crash = crash(program, initial, "op")
    image = the_crash.image
    committed = covered(run(program, initial))
    seen = covered(image)
    ideal_checksum = z3.Implies(
        checksum(seen) == checksum(committed),
        z3.And(*(a == b for a, b in zip(seen, committed))),
    )
    recovered = recover(image, checksum, protocol.recovery)
    hypotheses = z3.And(
        bounds,
        v.stale[STATE] != _word(LOG_VALID, ctx),
        the_crash.allowed,
        ideal_checksum if protocol.recovery.check_checksum else z3.BoolVal(True, ctx),
    )
    conclusion = z3.And(
        z3.Or(same_file(recovered, initial), same_file(recovered, new_file)),
        z3.Implies(the_crash.point == len(program), same_file(recovered, new_file)),
    )
    valid = log_is_valid(image, checksum, check_checksum=protocol.recovery.check_checksum)
    return Claim(
        hypotheses,
        conclusion,
        the_crash,
        recovered,
        (("old file", initial), ("new file", new_file), ("crash image", image)),
        valid,
    )


def idempotence_claim(image: Image, recovery: Recovery) -> Claim:
    """``ulog_recovery_idempotent`` (module docstring): for every image ``I``, every
    allowed crash of ``recovery_program(I)`` leaves ``J`` with ``recover(J)`` equal to
    ``recover(I)`` on every file word. No hypothesis beyond the persistency model."""
    ctx = image[STATE].ctx
    checksum = uninterpreted_checksum(ctx)
    program = recovery_program(image, checksum, recovery)
    the_crash = crash(program, image, "recovery")
    full = recover(image, checksum, recovery)
    again = recover(the_crash.image, checksum, recovery)
    conclusion = z3.And(*(again[t] == full[t] for t in FILE_WORDS))
    valid = log_is_valid(image, checksum, check_checksum=recovery.check_checksum)
    return Claim(
        the_crash.allowed,
        conclusion,
        the_crash,
        again,
        (("I", image), ("recover(I)", full), ("J (crashed recovery)", the_crash.image)),
        valid,
    )


# ---------------------------------------------------------------- explanations


def _point_value(the_crash: Crash, evaluate: Callable[[Z3Expr], Z3Expr]) -> int:
    """The crash point (an Int) in a model."""
    number = evaluate(the_crash.point)
    if not z3.is_int_value(number):
        raise ValueError(f"not a concrete integer: {number}")
    point: int = number.as_long()
    return point


def _pending_lines(
    the_crash: Crash, evaluate: Callable[[Z3Expr], Z3Expr], value: Callable[[Z3Expr], int]
) -> list[str]:
    """Every issued store that ran but was not guaranteed, and whether it persisted."""
    lines = []
    point = _point_value(the_crash, evaluate)
    for position, step in enumerate(the_crash.program):
        instruction = step.instruction
        if not isinstance(instruction, SymStore) or position >= point:
            continue
        if not as_bool(evaluate(instruction.issued)):
            continue
        must = the_crash.guaranteed_at[position]
        if must is not None and point >= must:
            continue
        flag = the_crash.persisted[position]
        assert flag is not None
        persisted = as_bool(evaluate(flag))
        lines.append(
            f"  #{position:<3} {step.epoch:<10} {instruction.label:<48} "
            f"{hex64(value(instruction.value))}  {'persisted' if persisted else 'NOT persisted'}"
        )
    return lines or ["  (none: every executed store was guaranteed durable)"]


def _crash_point_line(the_crash: Crash, point: int) -> str:
    program = the_crash.program
    if point == 0:
        return f"crash point: {point} of {len(program)} instructions ran (before the first)"
    last = program[point - 1]
    where = "after the whole program" if point == len(program) else f"during epoch {last.epoch!r}"
    return (
        f"crash point: {point} of {len(program)} instructions ran ({where}; "
        f"last ran: #{point - 1} {last.text})"
    )


def _table(
    words: Sequence[int],
    columns: Sequence[tuple[str, Mapping[int, Z3Expr]]],
    value: Callable[[Z3Expr], int],
    note: Callable[[int], str] = lambda loc: "",
) -> list[str]:
    header = f"  {'word':<12}" + "".join(f"{title:>24}" for title, _ in columns)
    rows = [header]
    for loc in words:
        cells = "".join(f"{hex64(value(image[loc])):>24}" for _, image in columns)
        rows.append(f"  {location_name(loc):<12}{cells}  {note(loc)}".rstrip())
    return rows


def _file_words(
    images: Sequence[Mapping[int, Z3Expr]], value: Callable[[Z3Expr], int]
) -> list[int]:
    """Size, link, and the data words below the largest size shown."""
    top = max(min(value(image[SIZE]), DATA_WORDS) for image in images)
    return [SIZE, LINK] + list(range(top))


def _explain_write(claim: Claim, v: WriteVars, append: bool, protocol: Protocol) -> Explain:
    def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
        evaluate = model_evaluator(model)

        def value(expr: Z3Expr) -> int:
            return as_int(evaluate(expr))

        the_crash = claim.crash
        point = _point_value(the_crash, evaluate)
        off, length, size = value(v.off), value(v.length), value(v.size)
        kind = (
            f"append of len = {length} words at size = {size}"
            if append
            else f"in-place write of len = {length} words at off = {off}; file size = {size} words"
        )
        lines = [
            f"protocol under test: {protocol.description}",
            f"recovery: {protocol.recovery.description}",
            f"operation: {kind}",
            _crash_point_line(the_crash, point),
            "pending stores (ran, not yet guaranteed durable) and whether each persisted:",
            *_pending_lines(the_crash, evaluate, value),
        ]
        image = the_crash.image
        trusted = as_bool(evaluate(claim.valid))
        state = value(image[STATE])
        lines.append(
            f"log in the crash image: state = {hex64(state)}"
            f"{' (VALID)' if state == LOG_VALID else ''}, count = {value(image[COUNT])};"
            + (" recovery trusts it and undoes its records" if trusted else " recovery ignores it")
        )
        if trusted:
            for slot in range(min(value(image[COUNT]), RECORD_SLOTS)):
                lines.append(
                    f"  rec{slot}: addr = {value(image[record_addr(slot)])}, "
                    f"len = {value(image[record_len(slot)])}, "
                    f"val[0] = {hex64(value(image[record_value(slot, 0)]))}"
                )
        columns = list(claim.expected) + [("recovered", claim.recovered)]
        old_file, new_file = claim.expected[0][1], claim.expected[1][1]

        def note(loc: int) -> str:
            got = value(claim.recovered[loc])
            pairs = (("old", old_file), ("new", new_file))
            differs = [name for name, f in pairs if value(f[loc]) != got]
            return "recovered != " + " and ".join(differs) if differs else ""

        lines.append("file words (size and link, then data below the largest size):")
        lines += _table(_file_words([c for _, c in columns], value), columns, value, note)
        old_ok = as_bool(evaluate(same_file(claim.recovered, claim.expected[0][1])))
        new_ok = as_bool(evaluate(same_file(claim.recovered, claim.expected[1][1])))
        if not old_ok and not new_ok:
            lines.append("violation: the recovered file is neither the old file nor the new file")
        else:
            lines.append(
                "violation: the operation completed but the file did not recover to the new file"
            )
        witness = {"crash_point": point, "instructions": len(the_crash.program), "off": off}
        witness.update(len=length, size=size)
        return "\n".join(lines), witness

    return explain


def _explain_idempotence(claim: Claim, recovery: Recovery) -> Explain:
    def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
        evaluate = model_evaluator(model)

        def value(expr: Z3Expr) -> int:
            return as_int(evaluate(expr))

        the_crash = claim.crash
        point = _point_value(the_crash, evaluate)
        image = claim.expected[0][1]
        count = value(image[COUNT])
        lines = [
            f"recovery under test: {recovery.description}",
            f"image I: state = {hex64(value(image[STATE]))}, count = {count}; the log "
            + ("validates" if as_bool(evaluate(claim.valid)) else "does not validate"),
        ]
        for slot in range(min(count, RECORD_SLOTS)):
            lines.append(
                f"  rec{slot}: addr = {value(image[record_addr(slot)])}, "
                f"len = {value(image[record_len(slot)])}"
            )
        lines += [
            _crash_point_line(the_crash, point).replace("crash point", "crash during recovery"),
            "pending stores of recovery (ran, not yet guaranteed durable):",
            *_pending_lines(the_crash, evaluate, value),
        ]
        columns = list(claim.expected) + [("recover(J)", claim.recovered)]
        differing = [
            t for t in FILE_WORDS if value(claim.recovered[t]) != value(claim.expected[1][1][t])
        ]
        lines.append("file words where recover(J) differs from recover(I):")
        lines += _table(differing, columns, value)
        lines.append(f"J's state = {hex64(value(the_crash.image[STATE]))}")
        return "\n".join(lines), {"crash_point": point, "instructions": len(the_crash.program)}

    return explain


# ------------------------------------------------------------------ the checks


def _typical_write(v: WriteVars, append: bool) -> list[Z3Expr]:
    """A readable counterexample: old words 0x1000 + m, new words 0x2000 + m, stale
    record values 0xdead..., a short write, a small file."""
    ctx = v.ctx
    prefer = [z3.ULE(v.length, 3), z3.ULE(1, v.length)]
    prefer += [v.old[m] == 0x1000 + m for m in DATA]
    prefer += [v.new[m] == 0x2000 + m for m in DATA]
    prefer += [v.link == 0x0000_0000_0042_1000, v.new_link == 0x0000_0000_0042_7000]
    prefer += [v.stale[COUNT] == 0, v.stale[CHECKSUM] == 0, v.stale[STATE] == 0]
    for slot in range(RECORD_SLOTS):
        prefer.append(z3.ULE(v.stale[record_addr(slot)], DATA_WORDS))
        prefer.append(z3.ULE(v.stale[record_len(slot)], 4))
        for j in range(RECORD_VALUES):
            stale_value = _word(0xDEAD_0000 + 0x100 * slot + j, ctx)
            prefer.append(v.stale[record_value(slot, j)] == stale_value)
    if not append:
        prefer.append(z3.ULE(v.size, 8))
    return prefer


def _check_write(append: bool, protocol: Protocol) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        v = fresh_write_vars()
        claim = write_claim(v, append, protocol)
        return check_claim(
            claim.formula,
            timeout_ms=timeout_ms,
            explain=_explain_write(claim, v, append, protocol),
            prefer=_typical_write(v, append),
            hypotheses=claim.hypotheses,
        )

    return check


def _check_idempotence(recovery: Recovery) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        image = fresh_image("I")
        claim = idempotence_claim(image, recovery)
        ctx = image[STATE].ctx
        prefer = [
            image[COUNT] == 1,
            z3.ULE(image[record_len(0)], 3),
            z3.ULE(image[record_addr(0)], DATA_WORDS),
        ]
        prefer += [image[m] == _word(0x1000 + m, ctx) for m in DATA]
        prefer += [
            image[record_value(0, j)] == _word(0xA000 + j, ctx) for j in range(RECORD_VALUES)
        ]
        return check_claim(
            claim.formula,
            timeout_ms=timeout_ms,
            explain=_explain_idempotence(claim, recovery),
            prefer=prefer,
            hypotheses=claim.hypotheses,
        )

    return check


_INPLACE_STATEMENT = (
    "for size <= 16 words, any old/new data, off + len <= size, any stale idle log, every crash "
    "point of the in-place write (log; fence; data; fence; invalidate) and every persisted set the "
    "x86 model allows: recovery yields the old or the new file (the new one after completion); "
    "checksum assumed ideal"
)
_APPEND_STATEMENT = (
    "for size <= 16 words, 1 <= len <= 16 - size, any data, link and stale idle log, every crash "
    "point of the append (log link+size; fence; link; fence; data; fence; size; fence; invalidate) "
    "and every allowed persisted set: recovery yields the old or the new file (the new one after "
    "completion); checksum assumed ideal"
)

ULOG_INPLACE_WRITE_RECOVERS = register(
    Theorem(
        name="ulog_inplace_write_recovers",
        statement=_INPLACE_STATEMENT,
        check=_check_write(False, PROTOCOL),
    )
)
ULOG_APPEND_RECOVERS = register(
    Theorem(
        name="ulog_append_recovers",
        statement=_APPEND_STATEMENT,
        check=_check_write(True, PROTOCOL),
    )
)
ULOG_RECOVERY_IDEMPOTENT = register(
    Theorem(
        name="ulog_recovery_idempotent",
        statement=(
            "for every image I (any file, any log and records) and every crash during recover(I) "
            "at any instruction with any allowed persisted set, leaving J: recover(J) holds the "
            "same file words as recover(I) (so any number of nested crashes recover alike)"
        ),
        check=_check_idempotence(RECOVERY),
    )
)

ULOG_FENCED_HEADER_INPLACE = register(
    Theorem(
        name="ulog_inplace_write_fenced_header_needs_no_checksum",
        statement=(
            "ulog_inplace_write_recovers, without the ideal-checksum assumption, for a variant "
            "of the protocol that fences the records before writing the header and a recovery "
            "that checks only state == VALID"
        ),
        check=_check_write(False, FENCED_HEADER),
    )
)
ULOG_FENCED_HEADER_APPEND = register(
    Theorem(
        name="ulog_append_fenced_header_needs_no_checksum",
        statement=(
            "ulog_append_recovers, without the ideal-checksum assumption, for the variant that "
            "fences the records before writing the header and a recovery that checks only "
            "state == VALID"
        ),
        check=_check_write(True, FENCED_HEADER),
    )
)

for _protocol in (MUTANT_MISSING_FENCE, MUTANT_INVALIDATE_BEFORE_FLUSH, MUTANT_UNCHECKED):
    register(
        Theorem(
            name=f"ulog_inplace_write_recovers:{_protocol.name}",
            statement=f"ulog_inplace_write_recovers for the {_protocol.description}",
            check=_check_write(False, _protocol),
            expect="refuted",
        )
    )
for _protocol in (MUTANT_MISSING_FENCE, MUTANT_INVALIDATE_BEFORE_FLUSH, MUTANT_SIZE_NOT_LOGGED):
    register(
        Theorem(
            name=f"ulog_append_recovers:{_protocol.name}",
            statement=f"ulog_append_recovers for the {_protocol.description}",
            check=_check_write(True, _protocol),
            expect="refuted",
        )
    )
register(
    Theorem(
        name=f"ulog_recovery_idempotent:{MUTANT_RECOVERY_EARLY_INVALIDATE.name}",
        statement=(
            f"ulog_recovery_idempotent for the {MUTANT_RECOVERY_EARLY_INVALIDATE.description}"
        ),
        check=_check_idempotence(MUTANT_RECOVERY_EARLY_INVALIDATE),
        expect="refuted",
    )
)
