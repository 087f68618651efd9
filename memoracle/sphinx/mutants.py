"""Deliberately broken Sphinx stores that the checks of :mod:`memoracle.sphinx.conformance`
must catch: each overrides one of the hooks :class:`impl.sphinx.Sphinx` documents."""

from __future__ import annotations

import mmh3

from impl.sphinx import Connection, Piece, ReplySlot, Sphinx


class WrongSeedOwner(Sphinx):
    """Partitions keys with MurmurHash3 seed 2 instead of 1."""

    def owner_of(self, key: bytes) -> int:
        return mmh3.hash(key, 2, signed=False) % self.threads


class SignedHashOwner(Sphinx):
    """Takes the hash as a *signed* 32-bit value (Python's modulo of a negative number;
    differs from the unsigned one unless the thread count is a power of two)."""

    def owner_of(self, key: bytes) -> int:
        return int(mmh3.hash(key, 1)) % self.threads


class ReorderedReplies(Sphinx):
    """Writes a forwarded reply as soon as it comes back, ahead of earlier replies of
    the same connection that are still outstanding."""

    def place_forwarded_reply(self, conn: Connection, slot: ReplySlot, parts: list[int], data: list[Piece]) -> None:
        for index, chunk in zip(parts, data):
            conn.out.append(chunk)
            slot.parts[index] = b""
        slot.missing -= len(parts)
        self._flush_slots(conn)


class NewestSegmentExpired(Sphinx):
    """Expires the newest closed segment instead of the oldest (not FIFO)."""

    def choose_victim_segment(self, thread: int) -> int:
        return self.workers[thread].partition.log.closed[-1]


#: Every mutant by name.
SPHINX_MUTANTS: dict[str, type[Sphinx]] = {
    "wrong-seed-owner": WrongSeedOwner,
    "signed-hash-owner": SignedHashOwner,
    "replies-reordered": ReorderedReplies,
    "segment-expired-out-of-fifo-order": NewestSegmentExpired,
}
