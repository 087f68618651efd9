"""The x86 persistency model: which memory images may survive a crash.

A *program* is the sequence of persistence-relevant instructions one core has executed
on storage-class memory since the last crash (or since the memory was formatted):
cached stores, non-temporal stores, ``clwb``, ``clflushopt``, ``clflush`` and
``sfence``. Given the durable image the memory held when the program started, this
module defines the set of byte images a crash *now* may leave behind.

The definition, in the words of the Intel SDM and of Px86 (Raad et al., POPL 2020):

1. **Atomic unit.** A store is split at 8-byte boundaries into *atomic writes*; each
   persists whole or not at all. (A wider copy is a sequence of 8-byte stores and may
   be torn between them.)
2. **A write persists or not.** A crash leaves some set ``P`` of the atomic writes
   persisted; the image holds, at each byte, the value of the last write in program
   order that is in ``P`` and covers the byte, or the initial value if there is none.
3. **What must have persisted** (the *guaranteed* writes):

   - ADR: a cached write is guaranteed once a ``clflush`` of its line follows it, or a
     ``clwb``/``clflushopt`` of its line follows it and an ``sfence`` follows that
     flush. A flush issued *before* the write does not cover it.
   - eADR: the caches are in the persistence domain, so every cached write is
     guaranteed at once and flushes change nothing.
   - In both modes, a non-temporal write is guaranteed once an ``sfence`` follows it.
     Write-combining buffers are not in the eADR domain, which is why Intel asks for
     the fence after non-temporal stores on eADR platforms too.

4. **Same-line order.** Cached writes to one 64-byte line persist in program order: if
   a later cached write to a line is in ``P``, every earlier cached write to that line
   is too. Writes to different lines, and non-temporal writes, persist independently.

An image is *allowed* iff it arises from some ``P`` that contains every guaranteed
write and respects same-line order.

What the definition leaves out, on purpose: a non-temporal store to a line that is in
the cache evicts that line on real hardware (so its earlier cached writes reach memory
first); the model does not assume it, and allows the extra images where they do not.
A program that relies on that eviction is told it is unsafe, which it is on any
platform that does not promise it. ``mfence`` and locked instructions order flushes as
``sfence`` does: write them as ``Sfence``.

This module is a definition, not an algorithm: :func:`allowed_images` enumerates every
subset of the optional writes, so it is exponential and meant for small programs (tests
compare the fast emulator in ``impl/scm_emu.py`` against it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Sequence

CACHE_LINE = 64
ATOMIC_UNIT = 8


class PersistMode(enum.Enum):
    """Where the persistence domain ends."""

    ADR = "adr"  #: at the memory controller: flush and fence are needed
    EADR = "eadr"  #: around the caches: a visible cached store is durable


@dataclass(frozen=True)
class Store:
    """A cached store of ``data`` at byte address ``addr``."""

    addr: int
    data: bytes


@dataclass(frozen=True)
class NtStore:
    """A non-temporal store of ``data`` at ``addr`` (bypasses the caches)."""

    addr: int
    data: bytes


@dataclass(frozen=True)
class Clwb:
    """Write back the line holding ``addr``; ordered only by a later fence."""

    addr: int


@dataclass(frozen=True)
class Clflushopt:
    """Flush the line holding ``addr``; ordered only by a later fence."""

    addr: int


@dataclass(frozen=True)
class Clflush:
    """Flush the line holding ``addr``; ordered with stores: complete at once."""

    addr: int


@dataclass(frozen=True)
class Sfence:
    """Store fence: orders earlier flushes and non-temporal stores before what follows."""


Instruction = Store | NtStore | Clwb | Clflushopt | Clflush | Sfence


@dataclass(frozen=True)
class AtomicWrite:
    """One 8-byte-atomic piece of a store.

    ``position`` is the index of its store in the program; ``addr`` and ``data`` never
    cross an 8-byte boundary.
    """

    position: int
    addr: int
    data: bytes
    non_temporal: bool


def line_of(addr: int) -> int:
    """The address of the cache line holding ``addr``.

    pre: addr >= 0
    post: __return__ % 64 == 0 and __return__ <= addr < __return__ + 64
    """
    return addr - addr % CACHE_LINE


def split_atomic(addr: int, data: bytes) -> list[tuple[int, bytes]]:
    """Split a store into the pieces that persist atomically (8-byte aligned units).

    pre: addr >= 0
    post: b"".join(piece for _, piece in __return__) == data
    post: all(a // 8 == (a + len(p) - 1) // 8 for a, p in __return__)
    """
    pieces: list[tuple[int, bytes]] = []
    start = 0
    while start < len(data):
        at = addr + start
        take = min(ATOMIC_UNIT - at % ATOMIC_UNIT, len(data) - start)
        pieces.append((at, data[start : start + take]))
        start += take
    return pieces


def atomic_writes(program: Sequence[Instruction]) -> list[AtomicWrite]:
    """Every atomic write of the program, in program order."""
    writes: list[AtomicWrite] = []
    for position, instruction in enumerate(program):
        if isinstance(instruction, (Store, NtStore)):
            nt = isinstance(instruction, NtStore)
            for addr, piece in split_atomic(instruction.addr, instruction.data):
                writes.append(AtomicWrite(position, addr, piece, nt))
    return writes


def is_guaranteed(program: Sequence[Instruction], write: AtomicWrite, mode: PersistMode) -> bool:
    """Whether ``write`` must be durable at a crash after the whole ``program`` (rule 3)."""
    later = program[write.position + 1 :]
    if write.non_temporal:
        return any(isinstance(i, Sfence) for i in later)
    if mode is PersistMode.EADR:
        return True
    line = line_of(write.addr)
    for k, instruction in enumerate(later):
        if isinstance(instruction, Clflush) and line_of(instruction.addr) == line:
            return True
        if isinstance(instruction, (Clwb, Clflushopt)) and line_of(instruction.addr) == line:
            if any(isinstance(i, Sfence) for i in later[k + 1 :]):
                return True
    return False


def respects_line_order(writes: Sequence[AtomicWrite], persisted: frozenset[int]) -> bool:
    """Rule 4: no cached write persists unless every earlier one to its line does.

    ``persisted`` holds indices into ``writes`` (which is in program order).
    """
    for later in persisted:
        if writes[later].non_temporal:
            continue
        line = line_of(writes[later].addr)
        for earlier in range(later):
            w = writes[earlier]
            if not w.non_temporal and line_of(w.addr) == line and earlier not in persisted:
                return False
    return True


def image_after(initial: bytes, writes: Sequence[AtomicWrite], persisted: Iterable[int]) -> bytes:
    """Rule 2: the image holding, at each byte, the last persisted write to it."""
    image = bytearray(initial)
    for index in sorted(persisted):
        w = writes[index]
        image[w.addr : w.addr + len(w.data)] = w.data
    return bytes(image)


def allowed_images(
    initial: bytes, program: Sequence[Instruction], mode: PersistMode = PersistMode.ADR
) -> frozenset[bytes]:
    """Every image a crash after ``program`` may leave, starting from ``initial``.

    ``initial`` is the durable image at the start of the program, indexed from address
    0; every store must fall inside it. Exponential in the number of optional writes.
    """
    writes = atomic_writes(program)
    for w in writes:
        if w.addr + len(w.data) > len(initial):
            raise ValueError(f"store at {w.addr:#x} falls outside the {len(initial)}-byte image")
    guaranteed = frozenset(i for i, w in enumerate(writes) if is_guaranteed(program, w, mode))
    optional = [i for i in range(len(writes)) if i not in guaranteed]
    images: set[bytes] = set()
    for size in range(len(optional) + 1):
        for chosen in combinations(optional, size):
            persisted = guaranteed | frozenset(chosen)
            if respects_line_order(writes, persisted):
                images.add(image_after(initial, writes, persisted))
    return frozenset(images)


def visible_image(initial: bytes, program: Sequence[Instruction]) -> bytes:
    """What a load sees after ``program``: every store applied in order."""
    writes = atomic_writes(program)
    return image_after(initial, writes, range(len(writes)))
