"""Page checksums of the KSM scanner: today's xxhash and the 2011 kernel's ``jhash2``.

ksmd stores a checksum per rmap item and only lets a page into the unstable tree when
the checksum is unchanged since its last visit (a page that changes between scans is
*volatile*). Two functions are offered, selected by the ``checksum`` knob:

- ``"xxhash"`` — what ``calc_checksum`` computes since Linux 5.x: ``xxhash(addr,
  PAGE_SIZE, 0)``; ``xxhash()`` is the 64-bit variant on 64-bit kernels and the result is
  stored in a ``u32``, so the value is ``xxh64(page, seed=0)`` truncated to its low 32
  bits. Computed with the ``xxhash`` package (C speed).
- ``"jhash2"`` — what the 2011 kernel (and the paper) used: ``jhash2(page, 1024, 17)``,
  Bob Jenkins' lookup3 ``hashword`` over the page as 1024 little-endian 32-bit words,
  initial value ``0xdeadbeef + 4 * 1024 + 17``. Implemented here in pure Python (slow:
  about 1 ms per page; meant for fidelity, not for benchmarks).

Both return an unsigned 32-bit int. 0 is a legal checksum value: the scanner's "stored
checksum starts at 0" rule is the kernel's, and a page whose checksum is 0 merges on its
first visit there too.
"""

from __future__ import annotations

import struct
from typing import Callable, Literal

import xxhash

PAGE_SIZE = 4096
#: Words in a page for ``jhash2`` (the kernel passes ``PAGE_SIZE / 4``).
PAGE_WORDS = PAGE_SIZE // 4
#: The seed the 2011 kernel passes to ``jhash2``.
JHASH2_KSM_SEED = 17
#: lookup3's initial value constant (``JHASH_INITVAL``).
JHASH_INITVAL = 0xDEADBEEF

_M32 = 0xFFFF_FFFF
_PAGE_WORDS_LE = struct.Struct(f"<{PAGE_WORDS}I")

ChecksumName = Literal["xxhash", "jhash2"]
#: A page checksum: bytes-like of PAGE_SIZE bytes -> unsigned 32-bit int.
Checksum = Callable[[bytes | bytearray | memoryview], int]


def _rol32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def jhash2(words: tuple[int, ...] | list[int], initval: int) -> int:
    """Linux's ``jhash2(k, length, initval)`` over ``words`` (unsigned 32-bit ints):
    lookup3's ``hashword``. Guarantees: the kernel's value for the same words, for any
    length (0 returns ``0xdeadbeef + initval`` truncated, as the C code does)."""
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _M32
    i = 0
    while length > 3:
        a = (a + words[i]) & _M32
        b = (b + words[i + 1]) & _M32
        c = (c + words[i + 2]) & _M32
        # __jhash_mix
        a = (a - c) & _M32; a ^= _rol32(c, 4); c = (c + b) & _M32  # noqa: E702
        b = (b - a) & _M32; b ^= _rol32(a, 6); a = (a + c) & _M32  # noqa: E702
        c = (c - b) & _M32; c ^= _rol32(b, 8); b = (b + a) & _M32  # noqa: E702
        a = (a - c) & _M32; a ^= _rol32(c, 16); c = (c + b) & _M32  # noqa: E702
        b = (b - a) & _M32; b ^= _rol32(a, 19); a = (a + c) & _M32  # noqa: E702
        c = (c - b) & _M32; c ^= _rol32(b, 4); b = (b + a) & _M32  # noqa: E702
        length -= 3
        i += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + words[i + 2]) & _M32
    if length >= 2:
        b = (b + words[i + 1]) & _M32
    a = (a + words[i]) & _M32
    # __jhash_final
    c ^= b; c = (c - _rol32(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol32(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol32(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol32(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol32(c, 4)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol32(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol32(b, 24)) & _M32  # noqa: E702
    return c


def jhash2_page(page: bytes | bytearray | memoryview) -> int:
    """The 2011 kernel's page checksum: ``jhash2(page as 1024 LE u32, 1024, 17)``."""
    if len(page) != PAGE_SIZE:
        raise ValueError(f"a page is {PAGE_SIZE} bytes, got {len(page)}")
    return jhash2(_PAGE_WORDS_LE.unpack(page), JHASH2_KSM_SEED)


def xxhash_page(page: bytes | bytearray | memoryview) -> int:
    """Today's kernel page checksum: ``xxh64(page, 0)`` truncated to 32 bits."""
    return xxhash.xxh64_intdigest(page, 0) & _M32


#: The checksum functions by knob value.
CHECKSUMS: dict[str, Checksum] = {"xxhash": xxhash_page, "jhash2": jhash2_page}


def checksum_function(name: str) -> Checksum:
    """The checksum named ``name`` (``"xxhash"`` or ``"jhash2"``); ``ValueError`` else."""
    try:
        return CHECKSUMS[name]
    except KeyError:
        raise ValueError(f"unknown checksum {name!r}: expected 'xxhash' or 'jhash2'") from None
