"""UMFS's U-Log, proved crash consistent in one Z3 formula per theorem (Yggdrasil style).

Every crash of a U-Log transaction, at every instruction and with every set of pending
stores that the x86 persistency model (:mod:`spec.persistency`) lets survive, must
recover to the file as it was before the operation or as it is after it; and a crash
*during* recovery must not change what recovery produces.

The model is in two modules: :mod:`proofs.ulog_model` (64-bit words and cache lines,
symbolic programs of stores, ``clwb`` and ``sfence``, and every crash of a program
allowed by :mod:`spec.persistency`, as one Z3 formula) and :mod:`proofs.ulog_programs`
(the layout of the file and the U-Log, the checksum, UMFS's in-place write, append and
recovery programs, and their variants and mutants); both docstrings give the details
and the bounds. This module states the theorems over them (:class:`Claim`,
:func:`write_claim`, :func:`idempotence_claim`), registers them and their mutants with
:func:`proofs.registry.register`, and renders counterexamples. It re-exports the model's
names listed in its ``__all__``, so ``proofs.ulog`` stays the one place to import from.

The theorems
------------
``ulog_inplace_write_recovers``
    For every file (size <= 16), old data, new data, offset and length with
    ``off + len <= size``, every stale log, every crash point of the in-place write
    (log the old words; fence; the log header, ``state`` last; fence; write the new
    words; fence; invalidate; fence) and every
    allowed persisted set: the recovered file is the old file or the new file; and if
    the crash came after the last instruction, it is the new file.
``ulog_append_recovers``
    Likewise for an append of ``1 <= len <= 16 - size`` words at ``size``: log the old
    link and the old size; fence; the header; fence; link (``link := new_link``); fence; write the new
    words at ``[size, size + len)``; fence; ``size := size + len``; fence; invalidate.
``ulog_recovery_idempotent``
    For *every* memory image ``I`` (any file, any log, valid or not, with any records)
    and every crash during ``recover(I)``, at any instruction with any allowed persisted
    set, leaving image ``J``: ``recover(J)`` holds the same file words as
    ``recover(I)``. Since ``J`` is again an image, this covers any number of crashes
    during recovery.
``ulog_append_keeps_metadata_checksum``
    The append theorem for UMFS's protocol with its metadata checksum: the inode's
    checksum (*any* function of size and link) is stored after the size, on its line,
    in the attributes epoch, and its old value is logged in the size's record. If it
    matched before the append, then after every crash and recovery it matches the
    recovered size and link — a crash between a metadata write and its checksum's is
    undone by the U-Log like any other. (The other theorems ignore the checksum word.)
``ulog_inplace_write_fenced_header_needs_no_checksum`` and ``…_append_…``
    The two operation theorems for UMFS's protocol (the records are flushed and fenced
    before the header is written) with a recovery that checks only ``state == VALID``:
    no checksum assumption, so UMFS's checksum is a second line of defence.
``ulog_inplace_write_single_epoch_recovers`` and ``…_append_…``
    The two operation theorems for the single-epoch variant (records and header in one
    epoch, UMFS's protocol until its crash explorer had to tell every torn record line
    apart): correct with the ideal-checksum assumption; without the checksum check it is
    not (the unchecked-header mutant).

Mutants (``expect="refuted"``): the missing fence between logging and the update, the
log invalidated before the update is flushed and fenced (both for each operation), an
append that does not log the old size, an append that stores the metadata checksum but
does not log it, recovery that trusts a valid ``state`` without checking the checksum,
and recovery that invalidates before its restores are fenced.
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

Each theorem's variables live in a fresh Z3 context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import z3

from proofs.registry import Theorem, Verdict, register
from proofs.solver import (
    Explain,
    Z3Expr,
    Z3Model,
    as_bool,
    as_int,
    check_claim,
    hex64,
    model_evaluator,
)
from proofs.ulog_model import (
    LINE_WORDS,
    WORD_BITS,
    Crash,
    Image,
    Program,
    Step,
    SymStore,
    crash,
    guarantee_points,
    line_index,
    run,
    shadow_program,
    word,
)
from proofs.ulog_programs import (
    CHECKSUM,
    COUNT,
    COVERED_WORDS,
    DATA,
    DATA_WORDS,
    FENCED_HEADER,
    SINGLE_EPOCH,
    FILE_WORDS,
    LINK,
    LOCATIONS,
    LOG_VALID,
    LOG_WORDS,
    MCSUM,
    MUTANT_INVALIDATE_BEFORE_FLUSH,
    MUTANT_MISSING_FENCE,
    MUTANT_RECOVERY_EARLY_INVALIDATE,
    MUTANT_SEAL_NOT_LOGGED,
    MUTANT_SIZE_NOT_LOGGED,
    MUTANT_UNCHECKED,
    PROTOCOL,
    RECORDS,
    RECORD_SLOTS,
    RECORD_VALUES,
    RECORD_WORDS,
    RECOVERY,
    SEALED,
    SIZE,
    STATE,
    UNCHECKED_RECOVERY,
    Checksum,
    Protocol,
    Recovery,
    WriteVars,
    append_new_file,
    append_program,
    covered,
    fresh_image,
    fresh_write_vars,
    initial_image,
    inplace_new_file,
    inplace_write_program,
    location_name,
    log_is_valid,
    record_addr,
    record_len,
    record_value,
    recover,
    recovery_program,
    same_file,
    uninterpreted_checksum,
    uninterpreted_metadata_checksum,
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
    "SINGLE_EPOCH",
    "RECOVERY",
    "MUTANT_RECOVERY_EARLY_INVALIDATE",
]

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
    is ideal for the crash image's covered words against the committed ones; with a
    sealing protocol (``ulog_append_keeps_metadata_checksum``), the inode checksum
    matches size and link before the operation.
    Conclusion: the recovered file is the old or the new file, and the new one if the
    whole program ran; sealing, the recovered inode checksum matches the recovered size
    and link (whatever checksum function ``seal`` is).
    """
    ctx = v.ctx
    checksum = uninterpreted_checksum(ctx)
    seal = uninterpreted_metadata_checksum(ctx)
    initial = initial_image(v)
    if append:
        program = append_program(v, checksum, protocol, seal)
        new_file = append_new_file(v, seal if protocol.seal else None)
        bounds = z3.And(
            z3.ULE(v.size, DATA_WORDS),
            z3.ULE(1, v.length),
            z3.ULE(v.length, word(DATA_WORDS, ctx) - v.size),
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
        v.stale[STATE] != word(LOG_VALID, ctx),
        the_crash.allowed,
        ideal_checksum if protocol.recovery.check_checksum else z3.BoolVal(True, ctx),
        v.mcsum == seal(v.size, v.link) if protocol.seal else z3.BoolVal(True, ctx),
    )
    conclusion = z3.And(
        z3.Or(same_file(recovered, initial), same_file(recovered, new_file)),
        z3.Implies(the_crash.point == len(program), same_file(recovered, new_file)),
        recovered[MCSUM] == seal(recovered[SIZE], recovered[LINK]) if protocol.seal else z3.BoolVal(True, ctx),
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
    """Size, link, the inode checksum, and the data words below the largest size shown."""
    top = max(min(value(image[SIZE]), DATA_WORDS) for image in images)
    return [SIZE, LINK, MCSUM] + list(range(top))


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
        elif protocol.seal and not as_bool(evaluate(claim.conclusion)) and (old_ok or new_ok):
            lines.append(
                "violation: the recovered inode checksum is not the checksum of the recovered "
                "size and link (it was stored but not restored)"
            )
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
            stale_value = word(0xDEAD_0000 + 0x100 * slot + j, ctx)
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
        prefer += [image[m] == word(0x1000 + m, ctx) for m in DATA]
        prefer += [
            image[record_value(0, j)] == word(0xA000 + j, ctx) for j in range(RECORD_VALUES)
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
    "point of the in-place write (log records; fence; header; fence; data; fence; invalidate) and "
    "every persisted set the "
    "x86 model allows: recovery yields the old or the new file (the new one after completion); "
    "checksum assumed ideal"
)
_APPEND_STATEMENT = (
    "for size <= 16 words, 1 <= len <= 16 - size, any data, link and stale idle log, every crash "
    "point of the append (log link+size; fence; header; fence; link; fence; data; fence; size; fence; "
    "invalidate) "
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
            "ulog_inplace_write_recovers, without the ideal-checksum assumption, for UMFS's "
            "protocol (records fenced before the header) and a recovery that checks only "
            "state == VALID"
        ),
        check=_check_write(False, FENCED_HEADER),
    )
)
ULOG_FENCED_HEADER_APPEND = register(
    Theorem(
        name="ulog_append_fenced_header_needs_no_checksum",
        statement=(
            "ulog_append_recovers, without the ideal-checksum assumption, for UMFS's protocol "
            "(records fenced before the header) and a recovery that checks only "
            "state == VALID"
        ),
        check=_check_write(True, FENCED_HEADER),
    )
)

ULOG_SINGLE_EPOCH_INPLACE = register(
    Theorem(
        name="ulog_inplace_write_single_epoch_recovers",
        statement="ulog_inplace_write_recovers for the " + SINGLE_EPOCH.description + "; checksum assumed ideal",
        check=_check_write(False, SINGLE_EPOCH),
    )
)
ULOG_SINGLE_EPOCH_APPEND = register(
    Theorem(
        name="ulog_append_single_epoch_recovers",
        statement="ulog_append_recovers for the " + SINGLE_EPOCH.description + "; checksum assumed ideal",
        check=_check_write(True, SINGLE_EPOCH),
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
ULOG_APPEND_KEEPS_METADATA_CHECKSUM = register(
    Theorem(
        name="ulog_append_keeps_metadata_checksum",
        statement=(
            "ulog_append_recovers for UMFS's protocol with its inode checksum (any function of "
            "size and link) stored with the size in the attributes epoch and logged with it: "
            "if it matched before, then after every crash and recovery it matches the recovered "
            "size and link"
        ),
        check=_check_write(True, SEALED),
    )
)
register(
    Theorem(
        name=f"ulog_append_keeps_metadata_checksum:{MUTANT_SEAL_NOT_LOGGED.name}",
        statement=f"ulog_append_keeps_metadata_checksum for the {MUTANT_SEAL_NOT_LOGGED.description}",
        check=_check_write(True, MUTANT_SEAL_NOT_LOGGED),
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
