"""UMFS's O(1) file mapping, proved at full width: splicing one PML4 entry maps the file.

UMFS gives every file its own three-level page table in SCM (PDPT -> PD -> PT -> data
pages). Opening a file writes one entry into the process's PML4: the entry for a
512 GiB-aligned virtual window ``base``, pointing at the file's PDPT frame ``f`` with
present, writable and user set. This module states in Z3 what that single write does,
and proves it for *every* memory, page-table root, window and file:

``splice_maps_window``
    every address ``base + off`` (``off < 2**39``) now translates exactly as the file's
    own table translates ``off``;
``splice_leaves_others_unchanged``
    every address outside the window translates as it did before;
``splice_costs_one_write``
    the splice changes one aligned 8-byte word of memory and nothing else, however
    large the file is.

Mutants of the splice (a slot index taken from the wrong address bits, an entry without
the present bit, a splice that also tags the file's table) are registered with
``expect="refuted"``: each theorem has been seen to catch a broken splice, and the
counterexample is printed in hex.

The walk the theorems talk about is :mod:`proofs.paging_z3`, ``spec.paging.walk`` in
Z3 at full 64-bit width, tested against the spec on concrete tables. The access kind
(read or write, user or supervisor) is a free Boolean in every theorem, so each holds
for all four kinds of access. Each theorem's variables live in a fresh Z3 context, so
its proof and its counterexample do not depend on which theorems ran before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import z3

from proofs.paging_z3 import (
    FRAME_MASK,
    WINDOW_SHIFT,
    WINDOW_SIZE,
    SymWalk,
    file_translate,
    in_frame,
    is_frame_address,
    is_window_base,
    make_entry_bv,
    memory_var,
    reads_position,
    same_outcome,
    same_reads,
    table_index_bv,
    translate,
    word,
    word_var,
)
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
from spec.paging import ADDR_MASK, ENTRIES_PER_TABLE, ENTRY_SIZE, PML4, RW, SW1, US, P

#: The rights UMFS gives the spliced PML4 entry; the file's own entries decide the rest.
SPLICE_FLAGS = P | RW | US

__all__ = [
    "SPLICE_FLAGS",
    "Splice",
    "SPLICE",
    "MUTANT_WRONG_SLOT",
    "MUTANT_NOT_PRESENT",
    "MUTANT_TAGS_FILE",
    "Claim",
    "SpliceVars",
    "fresh_vars",
    "splice",
    "pml4_frame",
    "pml4_slot_address",
    "window_claim",
    "others_claim",
    "one_write_claim",
]

# ---------------------------------------------------------------------- the splice


def pml4_frame(cr3: Z3Expr) -> Z3Expr:
    """The process's PML4 frame: ``cr3 & ADDR_MASK`` (PCID and flag bits ignored)."""
    return cr3 & ADDR_MASK


def pml4_slot_address(cr3: Z3Expr, base: Z3Expr) -> Z3Expr:
    """The physical address of the PML4 entry that maps ``base``."""
    return pml4_frame(cr3) + table_index_bv(base, PML4) * ENTRY_SIZE


def splice(memory: Z3Expr, cr3: Z3Expr, base: Z3Expr, pdpt: Z3Expr) -> Z3Expr:
    """UMFS's open: the memory after writing ``make_entry(pdpt, P|RW|US)`` into the PML4
    slot ``table_index(base, 4)`` of the process whose page-table root is ``cr3``.

    This is the function every theorem below is about; it is O(1) by construction, and
    :data:`SPLICE_ONE_WRITE` proves it touches nothing else.
    """
    return z3.Store(memory, pml4_slot_address(cr3, base), make_entry_bv(pdpt, SPLICE_FLAGS))


@dataclass(frozen=True)
class Splice:
    """A splice under test: ``apply(memory, cr3, base, pdpt) -> memory'``.

    ``written_index(base)`` is the PML4 index this splice writes; it is used only to
    explain counterexamples.
    """

    name: str
    description: str
    apply: Callable[[Z3Expr, Z3Expr, Z3Expr, Z3Expr], Z3Expr]
    written_index: Callable[[Z3Expr], Z3Expr]


def _pml4_index(base: Z3Expr) -> Z3Expr:
    return table_index_bv(base, PML4)


def _index_from_bits_46_38(base: Z3Expr) -> Z3Expr:
    return z3.LShR(base, WINDOW_SHIFT - 1) & (ENTRIES_PER_TABLE - 1)


def _splice_wrong_slot(memory: Z3Expr, cr3: Z3Expr, base: Z3Expr, pdpt: Z3Expr) -> Z3Expr:
    slot = pml4_frame(cr3) + _index_from_bits_46_38(base) * ENTRY_SIZE
    return z3.Store(memory, slot, make_entry_bv(pdpt, SPLICE_FLAGS))


def _splice_not_present(memory: Z3Expr, cr3: Z3Expr, base: Z3Expr, pdpt: Z3Expr) -> Z3Expr:
    return z3.Store(memory, pml4_slot_address(cr3, base), make_entry_bv(pdpt, RW | US))


def _splice_tags_file(memory: Z3Expr, cr3: Z3Expr, base: Z3Expr, pdpt: Z3Expr) -> Z3Expr:
    spliced = splice(memory, cr3, base, pdpt)
    return z3.Store(spliced, pdpt, z3.Select(spliced, pdpt) | SW1)


SPLICE = Splice("splice", "the UMFS splice", splice, _pml4_index)
MUTANT_WRONG_SLOT = Splice(
    "mutant_slot_bits_46_38",
    "mutant: slot index from bits 46..38 of base, LShR(base, 38) & 0x1ff",
    _splice_wrong_slot,
    _index_from_bits_46_38,
)
MUTANT_NOT_PRESENT = Splice(
    "mutant_not_present",
    "mutant: the spliced entry lacks the present bit (RW|US only)",
    _splice_not_present,
    _pml4_index,
)
MUTANT_TAGS_FILE = Splice(
    "mutant_tags_file_table",
    "mutant: also sets software bit SW1 in the file's PDPT entry 0 ('mapped' tag)",
    _splice_tags_file,
    _pml4_index,
)


# -------------------------------------------------------------------- the theorems


@dataclass(frozen=True)
class SpliceVars:
    """The free variables of a splice theorem: the physical memory, the process's
    page-table root ``cr3``, the window ``base``, the file's PDPT frame ``pdpt`` (``f``)
    and the access kind (``write``, ``user``), all in one Z3 context."""

    memory: Z3Expr
    cr3: Z3Expr
    base: Z3Expr
    pdpt: Z3Expr
    write: Z3Expr
    user: Z3Expr


def fresh_vars() -> SpliceVars:
    """Fresh variables for one theorem, in a fresh Z3 context: a theorem's proof (and its
    counterexample) then does not depend on which theorems were checked before it."""
    ctx = z3.Context()
    return SpliceVars(
        memory=memory_var("mem", ctx),
        cr3=word_var("cr3", ctx),
        base=word_var("base", ctx),
        pdpt=word_var("f", ctx),
        write=z3.Bool("write", ctx),
        user=z3.Bool("user", ctx),
    )


def _typical(v: SpliceVars) -> list[Z3Expr]:
    """What a readable counterexample looks like: a real window base, a real frame for
    the file, distinct from the PML4 frame, and a cr3 without PCID bits."""
    return [
        is_window_base(v.base),
        is_frame_address(v.pdpt),
        z3.Not(in_frame(v.pdpt, pml4_frame(v.cr3))),
        v.cr3 == pml4_frame(v.cr3),
    ]


def _access_text(write: bool, user: bool) -> str:
    return f"{'user' if user else 'supervisor'} {'write' if write else 'read'}"


def _common_lines(
    value: Callable[[Z3Expr], int], v: SpliceVars, the_splice: Splice
) -> tuple[list[str], dict[str, int]]:
    cr3, base, pdpt = value(v.cr3), value(v.base), value(v.pdpt)
    frame = cr3 & ADDR_MASK
    written = value(the_splice.written_index(v.base))
    spliced = the_splice.apply(v.memory, v.cr3, v.base, v.pdpt)
    written_slot = pml4_frame(v.cr3) + the_splice.written_index(v.base) * ENTRY_SIZE
    spliced_word = z3.Select(spliced, written_slot)
    right = (base >> WINDOW_SHIFT) & (ENTRIES_PER_TABLE - 1)
    lines = [
        f"splice under test: {the_splice.description}",
        f"cr3  = {hex64(cr3)}   (PML4 frame {hex64(frame)})",
        f"base = {hex64(base)}   (PML4 index {right}, bits 47..39)",
        f"f    = {hex64(pdpt)}   (the file's PDPT frame)",
        f"the splice wrote PML4[{written}] at {hex64(frame + ENTRY_SIZE * written)}"
        f" := {hex64(value(spliced_word))}",
    ]
    witness = {"cr3": cr3, "base": base, "f": pdpt, "written_index": written, "window_index": right}
    return lines, witness


def _values(model: Z3Model) -> tuple[Callable[[Z3Expr], Z3Expr], Callable[[Z3Expr], int]]:
    evaluate = model_evaluator(model)

    def value(expr: Z3Expr) -> int:
        return as_int(evaluate(expr))

    return evaluate, value


@dataclass(frozen=True)
class Claim:
    """A theorem's formula: ``hypotheses`` imply ``conclusion``; ``walks`` are the walks
    it compares (for explaining counterexamples)."""

    hypotheses: Z3Expr
    conclusion: Z3Expr
    walks: tuple[SymWalk, ...] = ()

    @property
    def formula(self) -> Z3Expr:
        """``Implies(hypotheses, conclusion)``."""
        return z3.Implies(self.hypotheses, self.conclusion)


def _check(claim: Claim, timeout_ms: int, explain: Explain, prefer: list[Z3Expr]) -> Verdict:
    return check_claim(
        claim.formula,
        timeout_ms=timeout_ms,
        explain=explain,
        prefer=prefer,
        hypotheses=claim.hypotheses,
    )


def window_claim(the_splice: Splice, v: SpliceVars, offset: Z3Expr) -> Claim:
    """``splice_maps_window``: the spliced window translates exactly as the file does.

    For every physical memory, every ``cr3`` (its PCID/flag bits are ignored, as the
    walk ignores them), every canonical 512 GiB-aligned ``base`` and every file PDPT
    frame ``f`` (4 KiB aligned, below 2**52): after the splice, for every offset
    ``off < 2**39`` and every access (read or write, user or supervisor), translating
    ``base + off`` through the process's tables gives exactly the file's own translation
    of ``off`` (:func:`file_translate`, the three-level walk starting at ``f``): the same
    fault (kind, level, error code), or the same page (physical address, page size, and
    rights, which the file's entries alone decide since the spliced entry grants
    P|RW|US). The walk reads the spliced PML4 slot and then exactly the entries the
    file's walk reads, so a TLB fill sees the file's own entries.

    Precondition (no aliasing): the file's walk of ``off``, in the memory before the
    splice, reads no entry inside the process's PML4 frame; it holds whenever the file's
    table frames are not the process's PML4 frame.

    The claim's walks are the window walk (after the splice) and the file walk.
    """
    spliced = the_splice.apply(v.memory, v.cr3, v.base, v.pdpt)
    seen = translate(spliced, v.cr3, v.base + offset, v.write, v.user)
    own = file_translate(v.memory, v.pdpt, offset, v.write, v.user)
    frame = pml4_frame(v.cr3)
    no_aliasing = z3.And(
        *(
            z3.Implies(reads_position(own, i), z3.Not(in_frame(own.entry_addrs[i], frame)))
            for i in range(len(own.entry_addrs))
        )
    )
    hypotheses = z3.And(
        is_window_base(v.base),
        is_frame_address(v.pdpt),
        z3.ULT(offset, WINDOW_SIZE),
        no_aliasing,
    )
    conclusion = z3.And(
        same_outcome(seen, own),
        seen.depth == own.depth + 1,
        seen.entry_addrs[0] == pml4_slot_address(v.cr3, v.base),
        *(seen.entry_addrs[i + 1] == own.entry_addrs[i] for i in range(len(own.entry_addrs))),
    )
    return Claim(hypotheses, conclusion, (seen, own))


def _check_window(the_splice: Splice) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        v = fresh_vars()
        offset = word_var("off", v.cr3.ctx)
        claim = window_claim(the_splice, v, offset)
        seen, own = claim.walks

        def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
            evaluate, value = _values(model)
            lines, witness = _common_lines(value, v, the_splice)
            base, off, cr3 = value(v.base), value(offset), value(v.cr3)
            write, user = as_bool(evaluate(v.write)), as_bool(evaluate(v.user))
            index = witness["window_index"]
            slot = (cr3 & ADDR_MASK) + ENTRY_SIZE * index
            spliced = the_splice.apply(v.memory, v.cr3, v.base, v.pdpt)
            lines[4:4] = [f"off  = {hex64(off)}", f"va   = base + off = {hex64(base + off)}"]
            untouched = (
                "" if index == witness["written_index"] else " (the splice left it as it was)"
            )
            lines += [
                f"the walk of va reads PML4[{index}] at {hex64(slot)}, which now holds "
                f"{hex64(value(z3.Select(spliced, word(slot, v.cr3.ctx))))}{untouched}",
                f"access: {_access_text(write, user)}",
                f"translation of va after the splice: {seen.evaluate(evaluate).describe()}",
                f"the file's own translation of off:  {own.evaluate(evaluate).describe()}",
            ]
            witness.update(off=off, va=base + off, read_slot=slot)
            return "\n".join(lines), witness

        return _check(claim, timeout_ms, explain, _typical(v))

    return check


def others_claim(the_splice: Splice, v: SpliceVars, va: Z3Expr) -> Claim:
    """``splice_leaves_others_unchanged``: nothing outside the window moves.

    For every memory, every ``cr3``, every canonical 512 GiB-aligned ``base``, every
    file PDPT frame ``f``, and every virtual address ``va`` whose PML4 index (bits 47..39)
    differs from that of ``base``: for any access, translating ``va`` after the splice
    gives the same result as before (the same fault, or the same page, physical address
    and rights) and reads the same entries. Non-canonical addresses are included (they
    fault, before and after).

    Precondition (no recursive mapping): the walk of ``va`` before the splice does not
    read the spliced PML4 slot as a PDPT, PD or PT entry, which can only happen when the
    PML4 frame is also used as a lower-level table.

    The claim's walks are those of ``va`` before and after the splice.
    """
    spliced = the_splice.apply(v.memory, v.cr3, v.base, v.pdpt)
    before = translate(v.memory, v.cr3, va, v.write, v.user)
    after = translate(spliced, v.cr3, va, v.write, v.user)
    slot = pml4_slot_address(v.cr3, v.base)
    hypotheses = z3.And(
        is_window_base(v.base),
        is_frame_address(v.pdpt),
        table_index_bv(va, PML4) != table_index_bv(v.base, PML4),
        *(
            z3.Implies(reads_position(before, i), before.entry_addrs[i] != slot)
            for i in range(1, len(before.entry_addrs))
        ),
    )
    conclusion = z3.And(same_outcome(before, after), same_reads(before, after))
    return Claim(hypotheses, conclusion, (before, after))


def _check_others(the_splice: Splice) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        v = fresh_vars()
        va = word_var("va", v.cr3.ctx)
        claim = others_claim(the_splice, v, va)
        before, after = claim.walks
        no_recursion = [
            z3.Implies(
                reads_position(before, i),
                z3.Not(in_frame(before.entry_addrs[i], pml4_frame(v.cr3))),
            )
            for i in range(1, len(before.entry_addrs))
        ]

        def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
            evaluate, value = _values(model)
            lines, witness = _common_lines(value, v, the_splice)
            address = value(va)
            write, user = as_bool(evaluate(v.write)), as_bool(evaluate(v.user))
            lines += [
                f"va   = {hex64(address)}   (PML4 index {(address >> WINDOW_SHIFT) & 0x1ff})",
                f"access: {_access_text(write, user)}",
                f"translation of va before the splice: {before.evaluate(evaluate).describe()}",
                f"translation of va after the splice:  {after.evaluate(evaluate).describe()}",
            ]
            witness.update(va=address)
            return "\n".join(lines), witness

        return _check(claim, timeout_ms, explain, _typical(v) + no_recursion)

    return check


def one_write_claim(the_splice: Splice, v: SpliceVars, paddr: Z3Expr) -> Claim:
    """``splice_costs_one_write``: opening a file is one aligned 8-byte store.

    For every memory (so for every file, of any size, with any tables), every ``cr3``,
    ``base`` and ``f``, with no precondition at all: the spliced memory equals the
    original at every physical address except the PML4 slot of ``base``, which is an
    8-byte aligned word inside the PML4 frame ``cr3 & ADDR_MASK`` and holds
    ``make_entry(f, P|RW|US)``. ``paddr`` is the (free) address the claim is about.
    """
    spliced = the_splice.apply(v.memory, v.cr3, v.base, v.pdpt)
    slot = pml4_slot_address(v.cr3, v.base)
    conclusion = z3.And(
        z3.Implies(paddr != slot, z3.Select(spliced, paddr) == z3.Select(v.memory, paddr)),
        z3.Select(spliced, slot) == make_entry_bv(v.pdpt, SPLICE_FLAGS),
        (slot & (ENTRY_SIZE - 1)) == 0,
        in_frame(slot, pml4_frame(v.cr3)),
    )
    return Claim(z3.BoolVal(True, paddr.ctx), conclusion)


def _check_one_write(the_splice: Splice) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        v = fresh_vars()
        paddr = word_var("addr", v.cr3.ctx)
        claim = one_write_claim(the_splice, v, paddr)

        def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
            _, value = _values(model)
            lines, witness = _common_lines(value, v, the_splice)
            spliced = the_splice.apply(v.memory, v.cr3, v.base, v.pdpt)
            address = value(paddr)
            old, new = value(z3.Select(v.memory, paddr)), value(z3.Select(spliced, paddr))
            slot = value(pml4_slot_address(v.cr3, v.base))
            in_slot = value(z3.Select(spliced, pml4_slot_address(v.cr3, v.base)))
            wanted = value(make_entry_bv(v.pdpt, SPLICE_FLAGS))
            if address != slot and old != new:
                lines.append(
                    f"the splice also changed the word at {hex64(address)} (not the PML4 slot "
                    f"{hex64(slot)}): {hex64(old)} before, {hex64(new)} after"
                )
            if in_slot != wanted:
                lines.append(
                    f"the PML4 slot {hex64(slot)} holds {hex64(in_slot)}, "
                    f"not make_entry(f, P|RW|US) = {hex64(wanted)}"
                )
            if slot % ENTRY_SIZE or (slot & FRAME_MASK) != value(pml4_frame(v.cr3)):
                lines.append(f"the slot {hex64(slot)} is not an aligned word of the PML4 frame")
            witness.update(addr=address, before=old, after=new, slot=slot, slot_word=in_slot)
            return "\n".join(lines), witness

        return _check(claim, timeout_ms, explain, _typical(v))

    return check


SPLICE_MAPS_WINDOW = register(
    Theorem(
        name="splice_maps_window",
        statement=(
            "after splice(mem, cr3, base, f), every base+off (off < 2^39, any access) translates "
            "as the file's own 3-level walk of off from f does (same fault, or same page, paddr "
            "and rights), reading the slot then the file's entries; if that walk reads nothing "
            "in the process's PML4 frame"
        ),
        check=_check_window(SPLICE),
    )
)

SPLICE_LEAVES_OTHERS_UNCHANGED = register(
    Theorem(
        name="splice_leaves_others_unchanged",
        statement=(
            "for every window base, frame f, and va whose PML4 index differs from base's, and "
            "any access, translating va gives the same result and reads the same entries before "
            "and after splice(mem, cr3, base, f); if that walk does not read the spliced slot "
            "below the PML4"
        ),
        check=_check_others(SPLICE),
    )
)

SPLICE_ONE_WRITE = register(
    Theorem(
        name="splice_costs_one_write",
        statement=(
            "splice(mem, cr3, base, f) leaves every word except the PML4 slot of base unchanged "
            "and stores make_entry(f, P|RW|US) there (an aligned word in the PML4 frame), "
            "whatever the file's size or tables"
        ),
        check=_check_one_write(SPLICE),
    )
)

register(
    Theorem(
        name="splice_maps_window:mutant_slot_bits_46_38",
        statement="splice_maps_window for a splice whose slot index is LShR(base, 38) & 0x1ff",
        check=_check_window(MUTANT_WRONG_SLOT),
        expect="refuted",
    )
)
register(
    Theorem(
        name="splice_maps_window:mutant_not_present",
        statement="splice_maps_window for a splice whose entry lacks the present bit",
        check=_check_window(MUTANT_NOT_PRESENT),
        expect="refuted",
    )
)
register(
    Theorem(
        name="splice_leaves_others_unchanged:mutant_slot_bits_46_38",
        statement=(
            "splice_leaves_others_unchanged for a splice whose slot index is LShR(base, 38) & 0x1ff"
        ),
        check=_check_others(MUTANT_WRONG_SLOT),
        expect="refuted",
    )
)
register(
    Theorem(
        name="splice_costs_one_write:mutant_tags_file_table",
        statement="splice_costs_one_write for a splice that also tags the file's PDPT entry 0",
        check=_check_one_write(MUTANT_TAGS_FILE),
        expect="refuted",
    )
)
