"""MurmurHash3 x86_32 in pure Python: the definition of Sphinx's owner function.

Sphinx assigns a key to the thread ``murmur3_x86_32(key, seed=1) % threads``, the hash
taken as an *unsigned* 32-bit integer (see :mod:`spec.kv_api`). This module is the
reference: a line-by-line transcription of Austin Appleby's ``MurmurHash3_x86_32``
(smhasher), checked against the published test vectors and smhasher's verification
value ``0xB0F57EE3`` (:func:`verification_value`). Tails are read little-endian, as on
x86.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


def _rotl32(x: int, r: int) -> int:
    """Rotate the 32-bit ``x`` left by ``r`` bits.

    pre: 0 <= x <= 0xFFFFFFFF
    pre: 0 < r < 32
    post: 0 <= __return__ <= 0xFFFFFFFF
    """
    return ((x << r) | (x >> (32 - r))) & _MASK


def fmix32(h: int) -> int:
    """MurmurHash3's finalisation mix (a bijection on 32-bit integers).

    pre: 0 <= h <= 0xFFFFFFFF
    post: 0 <= __return__ <= 0xFFFFFFFF
    """
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` with ``seed`` (taken modulo 2**32), unsigned.

    post: 0 <= __return__ <= 0xFFFFFFFF
    """
    h = seed & _MASK
    length = len(data)
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _C1) & _MASK
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = data[full:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * _C1) & _MASK
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
    h ^= length
    return fmix32(h)


def owner_of(key: bytes, threads: int, seed: int = 1) -> int:
    """The thread that owns ``key``: the unsigned hash modulo ``threads``.

    pre: threads >= 1
    post: 0 <= __return__ < threads
    """
    return murmur3_x86_32(key, seed) % threads


def verification_value() -> int:
    """smhasher's ``VerificationTest`` for a 32-bit hash: hash the keys
    ``{0}, {0,1}, ..., {0..254}`` with seeds ``256 - i``, hash the concatenation of the
    little-endian results with seed 0. MurmurHash3_x86_32's value is ``0xB0F57EE3``."""
    hashes = bytearray()
    key = bytes(range(256))
    for i in range(256):
        hashes += murmur3_x86_32(key[:i], 256 - i).to_bytes(4, "little")
    return murmur3_x86_32(bytes(hashes), 0)
