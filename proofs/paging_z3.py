"""x86-64 four-level paging in Z3, at full width: ``spec.paging.walk`` as terms.

Everything is a 64-bit bit-vector: virtual addresses, entries, physical addresses.
Physical memory is a Z3 array from a physical byte address to the 8-byte word stored
there; the walk only ever reads 8-byte aligned addresses (a table frame plus 8 x index),
so only aligned indices carry meaning. :func:`translate` is ``spec.paging.walk``
transcribed term for term, with its constants imported from ``spec.paging`` (never
re-typed); :func:`file_translate` is the same walk started at a PDPT, as a UMFS file's
own table is. A walk's result is a :class:`SymWalk` whose every field is a term, so two
walks can be compared field by field; :meth:`SymWalk.evaluate` turns one into a
:class:`ConcreteWalk` given a model or a concrete memory.

``tests/test_proofs.py`` evaluates these very terms on random and hand-made concrete
page tables and checks them against ``spec.paging.walk``, field by field (outcome,
level, error code, physical address, page size, rights, entries read): theorems stated
with these terms are about the translation the spec defines. Only unsigned Z3
operations are used (``LShR``, ``ULT``, ``UGT``, ``Extract``): on bit-vectors Python's
``<`` and ``>>`` are signed in z3py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Mapping

import z3

from proofs.solver import Z3Context, Z3Expr, as_bool, as_int, hex64
from spec.paging import (
    ADDR_MASK,
    ENTRIES_PER_TABLE,
    ENTRY_SIZE,
    LEVEL_NAMES,
    LEVEL_SHIFT,
    LEVEL_SPAN,
    P,
    PAGE_SIZE,
    PD,
    PDPT,
    PF_PRESENT,
    PF_RSVD,
    PF_USER,
    PF_WRITE,
    PML4,
    PS,
    PT,
    RW,
    US,
    VIRT_BITS,
)

WORD_BITS = 64
#: Bits of a table index (9 for 512 entries).
INDEX_BITS = (ENTRIES_PER_TABLE - 1).bit_length()
#: Bits 63..12 of a word: the frame an address lies in.
FRAME_MASK = (1 << WORD_BITS) - PAGE_SIZE
#: The window one PML4 entry maps: 512 GiB, aligned to its size.
WINDOW_SHIFT = LEVEL_SHIFT[PML4]
WINDOW_SIZE = LEVEL_SPAN[PML4]

_SMALL_BITS = 8  # width of the outcome kind, the level and the walk depth


class WalkOutcome(IntEnum):
    """How a walk ends: a translation, or one of the faults ``spec.paging.walk`` raises."""

    TRANSLATED = 0
    NOT_PRESENT = 1  #: an entry on the way has the present bit clear
    RESERVED_BIT = 2  #: the page-size bit is set in a PML4 entry
    READ_ONLY = 3  #: a write, and some level's writable bit is clear
    SUPERVISOR = 4  #: a user access, and some level's user bit is clear
    NON_CANONICAL = 5  #: bits 63..47 of the address are not all equal


# --------------------------------------------------------------------------- terms


def word(value: int, ctx: Z3Context = None) -> Z3Expr:
    """A 64-bit constant (in Z3 context ``ctx``; ``None`` is Z3's main context)."""
    return z3.BitVecVal(value, WORD_BITS, ctx)


def word_var(name: str, ctx: Z3Context = None) -> Z3Expr:
    """A free 64-bit variable."""
    return z3.BitVec(name, WORD_BITS, ctx)


def memory_var(name: str, ctx: Z3Context = None) -> Z3Expr:
    """A free physical memory: any 64-bit word at any physical byte address."""
    sort = z3.BitVecSort(WORD_BITS, ctx)
    return z3.Array(name, sort, sort)


def memory_from_words(
    words: Mapping[int, int], default: int = 0, ctx: Z3Context = None
) -> Z3Expr:
    """A concrete memory: ``words[paddr]`` where given, ``default`` elsewhere."""
    memory = z3.K(z3.BitVecSort(WORD_BITS, ctx), word(default, ctx))
    for paddr, value in sorted(words.items()):
        memory = z3.Store(memory, word(paddr, ctx), word(value, ctx))
    return memory


def _small(value: int, ctx: Z3Context) -> Z3Expr:
    return z3.BitVecVal(value, _SMALL_BITS, ctx)


def has_flag(entry: Z3Expr, flag: int) -> Z3Expr:
    """Whether ``entry`` has the bit ``flag`` set."""
    return (entry & flag) != 0


def table_index_bv(va: Z3Expr, level: int) -> Z3Expr:
    """``spec.paging.table_index``: the 9 address bits that index a table of ``level``."""
    shift = LEVEL_SHIFT[level]
    return z3.ZeroExt(WORD_BITS - INDEX_BITS, z3.Extract(shift + INDEX_BITS - 1, shift, va))


def is_canonical_bv(va: Z3Expr) -> Z3Expr:
    """``spec.paging.is_canonical``: bits 63..47 are all zeros or all ones."""
    top = z3.LShR(va, VIRT_BITS - 1)
    return z3.Or(top == 0, top == (1 << (WORD_BITS - VIRT_BITS + 1)) - 1)


def make_entry_bv(paddr: Z3Expr, flags: int) -> Z3Expr:
    """``spec.paging.make_entry``: an entry pointing at frame ``paddr`` with ``flags``."""
    return (paddr & ADDR_MASK) | flags


def entry_address_bv(entry: Z3Expr) -> Z3Expr:
    """``spec.paging.entry_address``: the physical address in bits 51..12."""
    return entry & ADDR_MASK


def is_frame_address(paddr: Z3Expr) -> Z3Expr:
    """Whether ``paddr`` is 4 KiB aligned and below ``2**52`` (fits an entry)."""
    return (paddr & ~ADDR_MASK & (2**WORD_BITS - 1)) == 0


def is_window_base(base: Z3Expr) -> Z3Expr:
    """Whether ``base`` is canonical and 512 GiB aligned: the start of one PML4 window."""
    return z3.And(is_canonical_bv(base), (base & (WINDOW_SIZE - 1)) == 0)


def in_frame(paddr: Z3Expr, frame: Z3Expr) -> Z3Expr:
    """Whether ``paddr`` lies in the 4 KiB frame starting at ``frame``."""
    return (paddr & FRAME_MASK) == frame


# ------------------------------------------------------------------------ the walk


@dataclass(frozen=True)
class ConcreteWalk:
    """A walk's result with concrete values (from a model or a concrete memory).

    ``level`` is where the walk ended: the leaf level of a translation (1 for 4 KiB,
    2 for 2 MiB, 3 for 1 GiB) or the level of the fault. ``entry_addrs`` are the
    physical addresses of the entries read, top first. For a fault, ``paddr``,
    ``page_size`` are 0 and the rights are false; for a translation, ``error_code`` is 0.
    """

    outcome: WalkOutcome
    level: int
    error_code: int
    paddr: int
    page_size: int
    writable: bool
    user: bool
    entry_addrs: tuple[int, ...]

    def describe(self) -> str:
        """One line, e.g. ``4 KiB page at 0x...: writable, user`` or ``fault ...``."""
        if self.outcome == WalkOutcome.TRANSLATED:
            size = {PAGE_SIZE: "4 KiB", LEVEL_SPAN[PD]: "2 MiB", LEVEL_SPAN[PDPT]: "1 GiB"}.get(
                self.page_size, f"{self.page_size:#x}-byte"
            )
            writable = "writable" if self.writable else "read-only"
            rights = f"{writable}, {'user' if self.user else 'supervisor'}"
            text = f"{size} page, paddr {hex64(self.paddr)} ({rights})"
        else:
            where = LEVEL_NAMES.get(self.level, f"level {self.level}")
            why = {
                WalkOutcome.NOT_PRESENT: "entry not present",
                WalkOutcome.RESERVED_BIT: "page-size bit set (reserved)",
                WalkOutcome.READ_ONLY: "write to a read-only page",
                WalkOutcome.SUPERVISOR: "user access to a supervisor page",
                WalkOutcome.NON_CANONICAL: "non-canonical address",
            }[self.outcome]
            text = f"fault at {where}: {why}, error code {self.error_code:#x}"
        reads = ", ".join(hex64(addr) for addr in self.entry_addrs) or "none"
        return f"{text}; entries read: {reads}"


@dataclass(frozen=True)
class SymWalk:
    """The result of a walk as Z3 terms; every field is defined for every outcome.

    ``kind`` is a :class:`WalkOutcome` (8 bits), ``level`` as in :class:`ConcreteWalk`,
    ``depth`` the number of entries read and ``entry_addrs`` one address per table
    level the walk could read, top first, 0 past ``depth``. Fields that a fault does not
    define are 0 / false, so two walks agree exactly when every field is equal.
    """

    kind: Z3Expr
    level: Z3Expr
    error_code: Z3Expr
    paddr: Z3Expr
    page_size: Z3Expr
    writable: Z3Expr
    user: Z3Expr
    depth: Z3Expr
    entry_addrs: tuple[Z3Expr, ...]

    def evaluate(self, value_of: Callable[[Z3Expr], Z3Expr]) -> ConcreteWalk:
        """The concrete walk, given ``value_of`` that reduces a term to a constant."""
        depth = as_int(value_of(self.depth))
        return ConcreteWalk(
            outcome=WalkOutcome(as_int(value_of(self.kind))),
            level=as_int(value_of(self.level)),
            error_code=as_int(value_of(self.error_code)),
            paddr=as_int(value_of(self.paddr)),
            page_size=as_int(value_of(self.page_size)),
            writable=as_bool(value_of(self.writable)),
            user=as_bool(value_of(self.user)),
            entry_addrs=tuple(as_int(value_of(addr)) for addr in self.entry_addrs[:depth]),
        )


def _choose(condition: Z3Expr, then: SymWalk, otherwise: SymWalk) -> SymWalk:
    """Field by field ``If(condition, then, otherwise)``."""
    return SymWalk(
        kind=z3.If(condition, then.kind, otherwise.kind),
        level=z3.If(condition, then.level, otherwise.level),
        error_code=z3.If(condition, then.error_code, otherwise.error_code),
        paddr=z3.If(condition, then.paddr, otherwise.paddr),
        page_size=z3.If(condition, then.page_size, otherwise.page_size),
        writable=z3.If(condition, then.writable, otherwise.writable),
        user=z3.If(condition, then.user, otherwise.user),
        depth=z3.If(condition, then.depth, otherwise.depth),
        entry_addrs=tuple(
            z3.If(condition, a, b)
            for a, b in zip(then.entry_addrs, otherwise.entry_addrs, strict=True)
        ),
    )


def _ended(
    kind: WalkOutcome,
    level: int,
    error_code: Z3Expr,
    reads: tuple[Z3Expr, ...],
    depth: int,
    *,
    paddr: Z3Expr | None = None,
    page_size: int = 0,
    writable: Z3Expr | None = None,
    user: Z3Expr | None = None,
) -> SymWalk:
    ctx = error_code.ctx
    return SymWalk(
        kind=_small(kind, ctx),
        level=_small(level, ctx),
        error_code=error_code,
        paddr=word(0, ctx) if paddr is None else paddr,
        page_size=word(page_size, ctx),
        writable=z3.BoolVal(False, ctx) if writable is None else writable,
        user=z3.BoolVal(False, ctx) if user is None else user,
        depth=_small(depth, ctx),
        entry_addrs=reads,
    )


def access_error_code(write: Z3Expr, user: Z3Expr) -> Z3Expr:
    """The access bits of a page-fault error code: ``PF_WRITE`` and ``PF_USER``."""
    ctx = write.ctx
    return z3.If(write, word(PF_WRITE, ctx), word(0, ctx)) | z3.If(
        user, word(PF_USER, ctx), word(0, ctx)
    )


def _walk_from(
    memory: Z3Expr,
    table: Z3Expr,
    level: int,
    va: Z3Expr,
    write: Z3Expr,
    user: Z3Expr,
    writable_above: Z3Expr,
    user_above: Z3Expr,
) -> SymWalk:
    """The walk of ``va`` from the table at ``table`` of ``level`` down (the loop body
    of ``spec.paging.walk``, unrolled): ``writable_above``/``user_above`` are the rights
    granted by the levels already walked. The result has ``level`` read positions."""
    ctx = va.ctx
    access = access_error_code(write, user)
    entry_addr = table + table_index_bv(va, level) * ENTRY_SIZE
    entry = z3.Select(memory, entry_addr)
    only_this = (entry_addr,) + (word(0, ctx),) * (level - 1)
    writable = z3.And(writable_above, has_flag(entry, RW))
    user_ok = z3.And(user_above, has_flag(entry, US))
    span = LEVEL_SPAN[level]

    leaf = _choose(
        z3.And(write, z3.Not(writable)),
        _ended(WalkOutcome.READ_ONLY, level, access | PF_PRESENT, only_this, 1),
        _choose(
            z3.And(user, z3.Not(user_ok)),
            _ended(WalkOutcome.SUPERVISOR, level, access | PF_PRESENT, only_this, 1),
            _ended(
                WalkOutcome.TRANSLATED,
                level,
                word(0, ctx),
                only_this,
                1,
                paddr=(entry & (ADDR_MASK & ~(span - 1))) | (va & (span - 1)),
                page_size=span,
                writable=writable,
                user=user_ok,
            ),
        ),
    )
    if level == PT:
        present = leaf
    else:
        below = _walk_from(
            memory, entry_address_bv(entry), level - 1, va, write, user, writable, user_ok
        )
        descended = SymWalk(
            kind=below.kind,
            level=below.level,
            error_code=below.error_code,
            paddr=below.paddr,
            page_size=below.page_size,
            writable=below.writable,
            user=below.user,
            depth=below.depth + 1,
            entry_addrs=(entry_addr,) + below.entry_addrs,
        )
        large = has_flag(entry, PS)
        if level == PML4:
            reserved = _ended(
                WalkOutcome.RESERVED_BIT, level, access | PF_PRESENT | PF_RSVD, only_this, 1
            )
            present = _choose(large, reserved, descended)
        else:
            present = _choose(large, leaf, descended)
    not_present = _ended(WalkOutcome.NOT_PRESENT, level, access, only_this, 1)
    return _choose(has_flag(entry, P), present, not_present)


def translate(memory: Z3Expr, cr3: Z3Expr, va: Z3Expr, write: Z3Expr, user: Z3Expr) -> SymWalk:
    """``spec.paging.walk(read, cr3, va, write=write, user=user)`` as Z3 terms.

    Four levels from the PML4 at ``cr3 & ADDR_MASK``; a non-canonical ``va`` is a fault at
    level 4 with error code 0 and no entry read.
    """
    yes = z3.BoolVal(True, va.ctx)
    walked = _walk_from(memory, cr3 & ADDR_MASK, PML4, va, write, user, yes, yes)
    nothing = word(0, va.ctx)
    non_canonical = _ended(WalkOutcome.NON_CANONICAL, PML4, nothing, (nothing,) * PML4, 0)
    return _choose(is_canonical_bv(va), walked, non_canonical)


def file_translate(
    memory: Z3Expr, pdpt: Z3Expr, offset: Z3Expr, write: Z3Expr, user: Z3Expr
) -> SymWalk:
    """The file's own translation of ``offset``: the three-level walk (PDPT, PD, PT)
    from the file's PDPT frame ``pdpt``, with rights granted by the file's entries only.
    Levels keep their x86 numbers (a fault in the file's PDPT is at level 3)."""
    yes = z3.BoolVal(True, offset.ctx)
    return _walk_from(memory, pdpt, PDPT, offset, write, user, yes, yes)


def same_outcome(a: SymWalk, b: SymWalk) -> Z3Expr:
    """Same fault (kind, level, error code) or same translation (paddr, size, rights)."""
    return z3.And(
        a.kind == b.kind,
        a.level == b.level,
        a.error_code == b.error_code,
        a.paddr == b.paddr,
        a.page_size == b.page_size,
        a.writable == b.writable,
        a.user == b.user,
    )


def same_reads(a: SymWalk, b: SymWalk) -> Z3Expr:
    """The two walks read the same entries, in the same order."""
    return z3.And(
        a.depth == b.depth,
        *(x == y for x, y in zip(a.entry_addrs, b.entry_addrs, strict=True)),
    )


def reads_position(walk: SymWalk, position: int) -> Z3Expr:
    """Whether the walk reads an entry at read position ``position`` (0 = first)."""
    return z3.UGT(walk.depth, position)
