"""The U-Log model's memory layout and the programs its theorems run.

Built on :mod:`proofs.ulog_model`; the theorems are in :mod:`proofs.ulog`. This module
holds the layout of the file and the log (:data:`DATA`, :data:`LINK`, :data:`SIZE`, the
header words, the record slots, :data:`LOCATIONS`, :func:`location_name`); the checksum
and what it covers (:func:`uninterpreted_checksum`, :func:`covered`,
:func:`log_is_valid`); recovery and its mutants (:class:`Recovery`,
:func:`recovery_program`, :func:`recover`); and the operations, their protocol variants
and mutants (:class:`Protocol`, :class:`WriteVars`, :func:`inplace_write_program`,
:func:`append_program`, and the files they specify, :func:`inplace_new_file`,
:func:`append_new_file`, :func:`same_file`).

The model of the file and the U-Log (bounds)
--------------------------------------------
- **File**: data words ``data[0..15]`` (two cache lines), a ``size`` word (in words,
  at most 16, on its own line: the inode's size field, or the U-Log's cached-attribute
  line while the file is open), and a ``link`` word (on its own line): the page-table
  entry an append links its new page through. The file a user sees is
  ``(size, link, data[0..size))``; words at or beyond ``size`` are not part of it, so
  an append's new words need no undo (UMFS writes them into fresh pages). Beside the size,
  on its line, a ``checksum`` word: the inode's metadata checksum, which UMFS stores in the
  attributes epoch with the size and logs with it (:data:`SEALED`); only the theorem
  about it reads it (as an uninterpreted function of size and link), the others ignore it.
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
  UMFS uses a 64-bit BLAKE2b, which meets this except with probability about 2**-64 per
  torn log. (A CRC-32 would not: the records hold old copies of structures that end in
  their own CRC-32, and two such copies differ by a CRC codeword, which a CRC-32 over the
  records cannot see — the crash explorer found a torn record validating that way.)
  The recovery theorem assumes nothing about the checksum.
- **Recovery** (:func:`recovery_program`): if ``state == VALID`` and the stored checksum
  matches, restore the records in reverse order (record ``k < count`` writes
  ``val[j]`` to word ``addr + j`` for ``j < len``, only into the file's words, which
  is UMFS's ``valid_region`` check), ``clwb`` + ``sfence``, then ``state := 0``,
  ``clwb`` + ``sfence``; otherwise do nothing. :func:`recover` is that program run to
  the end.

Solver-facing detail: range tests such as ``off <= m < off + len`` are written as
disjunctions of equalities of ``off`` with constants (exactly the same relation, without
64-bit subtraction), which keeps every theorem near a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import z3

from proofs.solver import Z3Context, Z3Expr
from proofs.ulog_model import (
    WORD_BITS,
    Image,
    Program,
    ProgramBuilder,
    run,
    word,
    word_var,
)

__all__ = [
    "DATA_WORDS",
    "RECORD_SLOTS",
    "RECORD_VALUES",
    "RECORD_WORDS",
    "DATA",
    "LINK",
    "SIZE",
    "MCSUM",
    "STATE",
    "COUNT",
    "CHECKSUM",
    "RECORDS",
    "FILE_WORDS",
    "LOG_WORDS",
    "LOCATIONS",
    "LOG_VALID",
    "COVERED_WORDS",
    "Checksum",
    "MetadataChecksum",
    "Recovery",
    "Protocol",
    "WriteVars",
    "record_addr",
    "record_len",
    "record_value",
    "location_name",
    "covered",
    "log_is_valid",
    "recovery_program",
    "recover",
    "uninterpreted_checksum",
    "uninterpreted_metadata_checksum",
    "fresh_write_vars",
    "initial_image",
    "inplace_write_program",
    "append_program",
    "inplace_new_file",
    "append_new_file",
    "same_file",
    "fresh_image",
    "PROTOCOL",
    "MUTANT_MISSING_FENCE",
    "MUTANT_INVALIDATE_BEFORE_FLUSH",
    "MUTANT_SIZE_NOT_LOGGED",
    "UNCHECKED_RECOVERY",
    "MUTANT_UNCHECKED",
    "FENCED_HEADER",
    "SINGLE_EPOCH",
    "SEALED",
    "MUTANT_SEAL_NOT_LOGGED",
    "RECOVERY",
    "MUTANT_RECOVERY_EARLY_INVALIDATE",
]

# ---------------------------------------------------------------------- the layout

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
MCSUM = 25  # line 3 too: the inode's metadata checksum (of size and link), as in UMFS's inode
STATE, COUNT, CHECKSUM = 32, 33, 34  # line 4: the log header
RECORDS = 40  # lines 5 .. 9: the record slots

FILE_WORDS: tuple[int, ...] = DATA + (LINK, SIZE, MCSUM)
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
    names = {LINK: "link", SIZE: "size", MCSUM: "inode.checksum", STATE: "log.state", COUNT: "log.count"}
    names[CHECKSUM] = "log.checksum"
    if loc in names:
        return names[loc]
    slot, within = divmod(loc - RECORDS, RECORD_WORDS)
    if 0 <= slot < RECORD_SLOTS:
        field = "addr" if within == 0 else "len" if within == 1 else f"val[{within - 2}]"
        return f"rec{slot}.{field}"
    raise ValueError(f"word {loc} is not in the model's memory")


#: The log checksum: a 64-bit term of the :data:`COVERED_WORDS` covered words.
Checksum = Callable[[Sequence[Z3Expr]], Z3Expr]
#: The inode's metadata checksum: a 64-bit term of the size and the link.
MetadataChecksum = Callable[[Z3Expr, Z3Expr], Z3Expr]


def uninterpreted_metadata_checksum(ctx: Z3Context) -> MetadataChecksum:
    """An arbitrary metadata checksum: an uninterpreted function of size and link."""
    sort = z3.BitVecSort(WORD_BITS, ctx)
    function = z3.Function("inode_checksum", sort, sort, sort)

    def checksum(size: Z3Expr, link: Z3Expr) -> Z3Expr:
        return function(size, link)

    return checksum

# --------------------------------------------------------------------- recovery


def uninterpreted_checksum(ctx: Z3Context) -> Checksum:
    """An arbitrary checksum: an uninterpreted function of the covered words."""
    sort = z3.BitVecSort(WORD_BITS, ctx)
    function = z3.Function("checksum", *([sort] * (COVERED_WORDS + 1)))

    def checksum(words: Sequence[Z3Expr]) -> Z3Expr:
        return function(*words)

    return checksum


def _in_use(image: Image, slot: int) -> Z3Expr:
    return z3.ULT(word(slot, image[COUNT].ctx), image[COUNT])


def covered(image: Image) -> list[Z3Expr]:
    """The words the checksum covers: ``count``, then for each slot in use (``k < count``)
    its ``addr``, ``len`` and ``val[j]`` for ``j < len``; zero in place of the rest."""
    ctx = image[COUNT].ctx
    zero = word(0, ctx)
    words = [image[COUNT]]
    for slot in range(RECORD_SLOTS):
        used = _in_use(image, slot)
        length = image[record_len(slot)]
        words.append(z3.If(used, image[record_addr(slot)], zero))
        words.append(z3.If(used, length, zero))
        for j in range(RECORD_VALUES):
            keep = z3.And(used, z3.ULT(word(j, ctx), length))
            words.append(z3.If(keep, image[record_value(slot, j)], zero))
    return words


def log_is_valid(image: Image, checksum: Checksum, *, check_checksum: bool = True) -> Z3Expr:
    """Whether recovery trusts the log: ``state == LOG_VALID`` and (unless the mutant
    skips it) the stored checksum is the checksum of the covered words."""
    ctx = image[STATE].ctx
    state_valid = image[STATE] == word(LOG_VALID, ctx)
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
        *(z3.And(addr == target - j, z3.ULT(word(j, ctx), length)) for j in distances)
    )
    value = word(0, ctx)
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
    builder = ProgramBuilder(ctx)
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
    zero = word(0, ctx)
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
    written (UMFS: yes, so a valid ``state`` never stands over torn records; the
    single-epoch variant leaves that to the checksum).
    ``invalidate_after_fence``: ``state := 0`` is stored only after the last update
    epoch is flushed and fenced (UMFS: yes).
    ``log_size``: an append logs the old size (UMFS: yes).
    ``seal``: the attributes epoch also stores the inode's metadata checksum of the new
    size and link (UMFS: yes; modelled by the theorem about it only).
    ``log_seal``: that checksum's old value is logged, in the size's record (UMFS: yes).
    ``recovery``: the recovery procedure that runs after the crash.
    """

    name: str
    description: str
    fence_after_log: bool = True
    fence_before_header: bool = True
    invalidate_after_fence: bool = True
    log_size: bool = True
    seal: bool = False
    log_seal: bool = True
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
#: Not UMFS's protocol any more (it was): records and header in one epoch, the checksum
#: telling torn records apart. Proved too, with the ideal-checksum assumption.
SINGLE_EPOCH = Protocol(
    "single_epoch",
    "variant: records and header flushed and fenced as one epoch (the checksum detects torn records)",
    fence_before_header=False,
)
MUTANT_UNCHECKED = Protocol(
    "mutant_unchecked_header",
    "single-epoch variant, recovered by a recovery that does not check the checksum",
    fence_before_header=False,
    recovery=UNCHECKED_RECOVERY,
)
#: UMFS's protocol with its metadata checksum: stored with the size, logged with it.
SEALED = Protocol(
    "ulog_sealed",
    "UMFS's U-Log protocol, the inode checksum stored with the size and logged with it",
    seal=True,
)
MUTANT_SEAL_NOT_LOGGED = Protocol(
    "mutant_checksum_not_logged",
    "mutant: the inode checksum is stored with the size, but only the size is logged",
    seal=True,
    log_seal=False,
)
#: UMFS's protocol (records flushed and fenced before the header is written) with a
#: recovery that checks only ``state == VALID``. Proved too: with that fence, the
#: checksum (and the assumption that it is ideal) is a second line of defence only.
FENCED_HEADER = Protocol(
    "fenced_header",
    "UMFS's protocol (records fenced before the header); recovery does not check the checksum",
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
    mcsum: Z3Expr  #: the inode checksum word before the operation


def fresh_write_vars() -> WriteVars:
    """Fresh variables in a fresh Z3 context."""
    ctx = z3.Context()
    return WriteVars(
        ctx=ctx,
        old=tuple(word_var(f"old[{m}]", ctx) for m in DATA),
        new=tuple(word_var(f"new[{m}]", ctx) for m in DATA),
        off=word_var("off", ctx),
        length=word_var("len", ctx),
        size=word_var("size", ctx),
        link=word_var("link", ctx),
        new_link=word_var("new_link", ctx),
        stale={loc: word_var(f"stale.{location_name(loc)}", ctx) for loc in LOG_WORDS},
        mcsum=word_var("inode.checksum", ctx),
    )


def fresh_image(name: str) -> dict[int, Z3Expr]:
    """An arbitrary memory image (one free word per location) in a fresh context."""
    ctx = z3.Context()
    return {loc: word_var(f"{name}.{location_name(loc)}", ctx) for loc in LOCATIONS}


def initial_image(v: WriteVars) -> dict[int, Z3Expr]:
    """The image before the operation: the old file and the stale log."""
    image = {m: v.old[m] for m in DATA}
    image[LINK] = v.link
    image[SIZE] = v.size
    image[MCSUM] = v.mcsum
    image.update(v.stale)
    return image


def _old_word_at(v: WriteVars, start: Z3Expr, j: int) -> Z3Expr:
    """The old data word at ``start + j`` (zero beyond the data), by equalities of
    ``start`` with constants."""
    value = word(0, v.ctx)
    for m in reversed(DATA[j:]):
        value = z3.If(start == m - j, v.old[m], value)
    return value


def _in_range(m: int, start: Z3Expr, length: Z3Expr) -> Z3Expr:
    """``start <= m < start + len`` without wrap-around, i.e. ``start <= m`` and
    ``m - start < len``, as a disjunction over the distance ``k = m - start``."""
    ctx = start.ctx
    return z3.Or(*(z3.And(start == m - k, z3.ULT(word(k, ctx), length)) for k in range(m + 1)))


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
    builder: ProgramBuilder,
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
            issued = None if len(record.values) == 1 else z3.ULT(word(j, ctx), record.length)
            builder.store(record_value(slot, j), value, f"rec{slot}.val[{j}] := {text}", issued)
    if protocol.fence_before_header:
        builder.flush(record_words)
        builder.fence()
    builder.store(COUNT, word(len(records), ctx), f"log.count := {len(records)}")
    committed = run(builder.program(), initial_image(v))
    checksum_text = "log.checksum := checksum(count, records)"
    builder.store(CHECKSUM, checksum(covered(committed)), checksum_text)
    builder.store(STATE, word(LOG_VALID, ctx), "log.state := VALID")
    builder.flush([STATE] + record_words)
    if protocol.fence_after_log:
        builder.fence()


def _finish(
    builder: ProgramBuilder, v: WriteVars, last_epoch: Sequence[int], protocol: Protocol
) -> None:
    """Flush and fence the last update epoch's words, then invalidate (or the mutant)."""
    zero = word(0, v.ctx)
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
    builder = ProgramBuilder(v.ctx)
    values = tuple(
        (_old_word_at(v, v.off, j), f"old data[off+{j}]") for j in range(RECORD_VALUES)
    )
    _log_epoch(builder, v, [_Record(v.off, "off", v.length, "len", values)], checksum, protocol)
    builder.begin("data")
    for m in DATA:
        builder.store(m, v.new[m], f"data[{m}] := new[{m}]", _in_range(m, v.off, v.length))
    _finish(builder, v, DATA, protocol)
    return builder.program()


def append_program(
    v: WriteVars, checksum: Checksum, protocol: Protocol = PROTOCOL, seal: MetadataChecksum | None = None
) -> Program:
    """UMFS's append of ``new[m]`` for ``size <= m < size + len``: log the old link and
    the old size (two records), fence; link; fence; store the new words, fence;
    ``size := size + len``, fence; invalidate. With ``protocol.seal``, the size's record
    also holds the old inode checksum (the next word), and the attributes epoch stores
    ``checksum := seal(size + len, new_link)`` after the size, on the same line."""
    builder = ProgramBuilder(v.ctx)
    one = word(1, v.ctx)
    records = [_Record(word(LINK, v.ctx), f"{LINK} (link)", one, "1", ((v.link, "old link"),))]
    if protocol.log_size:
        old_size: tuple[tuple[Z3Expr, str], ...] = ((v.size, "old size"),)
        if protocol.seal and protocol.log_seal:
            old_size += ((v.mcsum, "old inode.checksum"),)
            records.append(_Record(word(SIZE, v.ctx), f"{SIZE} (size)", word(2, v.ctx), "2", old_size))
        else:
            records.append(_Record(word(SIZE, v.ctx), f"{SIZE} (size)", one, "1", old_size))
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
    if protocol.seal:
        assert seal is not None, "a sealing protocol needs the metadata checksum"
        builder.store(MCSUM, seal(v.size + v.length, v.new_link), "inode.checksum := seal(size + len, new_link)")
    _finish(builder, v, [SIZE, MCSUM] if protocol.seal else [SIZE], protocol)
    return builder.program()


def inplace_new_file(v: WriteVars) -> dict[int, Z3Expr]:
    """The file the in-place write specifies (the spec, not the program): new words in
    ``[off, off + len)``, old words elsewhere, the same size and link."""
    image = {m: z3.If(_in_range(m, v.off, v.length), v.new[m], v.old[m]) for m in DATA}
    image[LINK] = v.link
    image[SIZE] = v.size
    image[MCSUM] = v.mcsum
    return image


def append_new_file(v: WriteVars, seal: MetadataChecksum | None = None) -> dict[int, Z3Expr]:
    """The file the append specifies: new words in ``[size, size + len)``, the new link,
    size ``size + len`` (and, sealing, the inode checksum of those)."""
    image = {m: z3.If(_in_range(m, v.size, v.length), v.new[m], v.old[m]) for m in DATA}
    image[LINK] = v.new_link
    image[SIZE] = v.size + v.length
    image[MCSUM] = v.mcsum if seal is None else seal(v.size + v.length, v.new_link)
    return image


def same_file(a: Image, b: Image) -> Z3Expr:
    """``a`` and ``b`` hold the same file: equal size and link, equal data below the size."""
    ctx = a[SIZE].ctx
    below = [
        z3.Implies(z3.ULT(word(m, ctx), a[SIZE]), a[m] == b[m]) for m in DATA
    ]
    return z3.And(a[SIZE] == b[SIZE], a[LINK] == b[LINK], *below)
