"""x86-64 four-level paging, as a definition.

This module states what a virtual address translates to, given the words stored in
physical memory. It is the reference that ``impl/mmu_emu.py`` (with its TLB, counters
and fault handlers) must agree with, and the model that ``proofs/page_table.py`` encodes
in Z3 at full 64-bit width.

The format is the Intel SDM's (vol. 3A, §4.5, 4-level paging):

- A table is one 4 KiB frame of 512 little-endian 8-byte entries.
- Levels, top to bottom: PML4 (bits 47..39 of the address), PDPT (38..30), PD (29..21),
  PT (20..12); the low 12 bits are the offset in the page.
- An entry holds the physical address of the next table (or of the page) in bits
  51..12, and flags: present, writable, user, accessed, dirty, page-size (a 1 GiB page
  at the PDPT level, a 2 MiB page at the PD level), global, three software bits (9..11)
  that the systems use for their own flags, and no-execute.
- Rights are the AND of every level's writable and user bits. ``CR0.WP`` is taken as set
  (as Linux runs), so a supervisor write to a read-only page faults too.

What this definition leaves out, on purpose: the accessed and dirty bits are *written*
by the hardware during a walk (the implementation does so) but never change a
translation; PAT/PCD/PWT caching attributes; SMEP/SMAP; protection keys; 5-level
paging. Reserved-bit checking covers the one case the systems could hit by mistake: a
page-size bit in a PML4 entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ENTRIES_PER_TABLE = 512
ENTRY_SIZE = 8
LEVELS = 4

#: Level numbers, counted the way the SDM names the tables.
PML4, PDPT, PD, PT = 4, 3, 2, 1
LEVEL_NAMES = {PML4: "PML4", PDPT: "PDPT", PD: "PD", PT: "PT"}
#: Lowest address bit that a level's index takes.
LEVEL_SHIFT = {PML4: 39, PDPT: 30, PD: 21, PT: 12}
#: Bytes mapped by one entry at each level.
LEVEL_SPAN = {level: 1 << shift for level, shift in LEVEL_SHIFT.items()}

# Entry bits.
P = 1 << 0  #: present
RW = 1 << 1  #: writable
US = 1 << 2  #: user-accessible
PWT = 1 << 3
PCD = 1 << 4
A = 1 << 5  #: accessed (set by the walker)
D = 1 << 6  #: dirty (set by the walker on a write, leaf entries only)
PS = 1 << 7  #: page size: the entry maps a 1 GiB (PDPT) or 2 MiB (PD) page
G = 1 << 8  #: global
SW1 = 1 << 9  #: software bit, free for the systems' own flags
SW2 = 1 << 10  #: software bit
SW3 = 1 << 11  #: software bit
NX = 1 << 63  #: no-execute

#: Physical-address field of an entry (bits 51..12).
ADDR_MASK = 0x000F_FFFF_FFFF_F000
#: Largest physical address width (bits).
PHYS_BITS = 52
#: Virtual address width before sign extension.
VIRT_BITS = 48

# Page-fault error code bits (SDM vol. 3A, §4.7).
PF_PRESENT = 1 << 0  #: 0 = not-present entry, 1 = protection violation
PF_WRITE = 1 << 1  #: the access was a write
PF_USER = 1 << 2  #: the access was made in user mode
PF_RSVD = 1 << 3  #: a reserved bit was set in an entry


@dataclass(frozen=True)
class Translation:
    """A successful translation.

    ``paddr`` is the physical address of the byte at ``va``; ``page_size`` is 4 KiB,
    2 MiB or 1 GiB; ``writable`` and ``user`` are the effective rights (AND over the
    levels); ``entry_addrs`` are the physical addresses of the entries read, top first.
    """

    va: int
    paddr: int
    page_size: int
    writable: bool
    user: bool
    entry_addrs: tuple[int, ...]


@dataclass(frozen=True)
class WalkFault:
    """A failed translation: the page fault the hardware would raise.

    ``error_code`` uses the ``PF_*`` bits; ``level`` is the table level where the walk
    stopped (for a protection fault, the leaf); ``reason`` says why in words.
    """

    va: int
    error_code: int
    level: int
    reason: str


def is_canonical(va: int) -> bool:
    """Whether ``va`` is a canonical 48-bit x86-64 address (bits 63..47 all equal).

    pre: 0 <= va < 2**64
    post: __return__ == (va < 2**47 or va >= 2**64 - 2**47)
    """
    top = va >> (VIRT_BITS - 1)
    return top == 0 or top == (1 << (64 - VIRT_BITS + 1)) - 1


def table_index(va: int, level: int) -> int:
    """The index ``va`` selects in a table of ``level``.

    pre: 0 <= va < 2**64
    pre: level in (1, 2, 3, 4)
    post: 0 <= __return__ < 512
    """
    return (va >> LEVEL_SHIFT[level]) & (ENTRIES_PER_TABLE - 1)


def make_entry(paddr: int, flags: int) -> int:
    """An entry pointing at the frame ``paddr`` with ``flags``.

    pre: paddr % 4096 == 0 and 0 <= paddr < 2**52
    pre: 0 <= flags < 2**64 and flags & 0x000FFFFFFFFFF000 == 0
    post: entry_address(__return__) == paddr
    post: __return__ & 0xFFF == flags & 0xFFF
    """
    return (paddr & ADDR_MASK) | flags


def entry_address(entry: int) -> int:
    """The physical address an entry points at (bits 51..12).

    pre: 0 <= entry < 2**64
    post: __return__ % 4096 == 0
    """
    return entry & ADDR_MASK


def walk(
    read_u64: Callable[[int], int],
    cr3: int,
    va: int,
    *,
    write: bool = False,
    user: bool = True,
) -> Translation | WalkFault:
    """Translate ``va`` through the tables rooted at ``cr3``.

    ``read_u64(paddr)`` returns the little-endian 8-byte word at a physical address.
    The result is the translation or the fault the access raises; a non-canonical
    address is reported as a fault at level 4 with reason ``"non-canonical"`` (the
    hardware raises #GP there, not #PF; the systems never use such addresses).
    """
    if not is_canonical(va):
        return WalkFault(va, 0, PML4, "non-canonical")
    access = (PF_WRITE if write else 0) | (PF_USER if user else 0)
    table = cr3 & ADDR_MASK
    writable = True
    user_ok = True
    entry_addrs: list[int] = []
    for level in (PML4, PDPT, PD, PT):
        entry_addr = table + ENTRY_SIZE * table_index(va, level)
        entry_addrs.append(entry_addr)
        entry = read_u64(entry_addr)
        if not entry & P:
            return WalkFault(va, access, level, f"{LEVEL_NAMES[level]} entry not present")
        writable = writable and bool(entry & RW)
        user_ok = user_ok and bool(entry & US)
        large = bool(entry & PS)
        if large and level == PML4:
            return WalkFault(
                va, access | PF_PRESENT | PF_RSVD, level, "page-size bit set in a PML4 entry"
            )
        if level == PT or large:
            span = LEVEL_SPAN[level]
            if write and not writable:
                return WalkFault(va, access | PF_PRESENT, level, "write to a read-only page")
            if user and not user_ok:
                return WalkFault(va, access | PF_PRESENT, level, "user access to a supervisor page")
            base = entry & ADDR_MASK & ~(span - 1)
            return Translation(
                va=va,
                paddr=base | (va & (span - 1)),
                page_size=span,
                writable=writable,
                user=user_ok,
                entry_addrs=tuple(entry_addrs),
            )
        table = entry & ADDR_MASK
    raise AssertionError("unreachable: the PT level always ends the walk")
