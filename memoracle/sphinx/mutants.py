"""Deliberately broken Sphinx stores that the checks of :mod:`memoracle.sphinx.conformance`
must catch: each overrides one of the hooks :class:`impl.sphinx.Sphinx` documents, or
(the last three) one step of the server that only an edge of the workload reaches: a
full forwarding ring, a malformed request, a client that goes away."""

from __future__ import annotations

import mmh3

from impl.sphinx import Connection, Piece, ReplySlot, Sphinx
from impl.sphinx_proto import BAD_EXPTIME, Control, Request
from impl.sphinx_state import Message, Worker
from spec.kv_api import REALTIME_MAXDELTA


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


class DelayedFlushLate(Sphinx):
    """``flush_all <n>`` takes effect at ``now + n`` instead of memcached's
    ``now + n - 1`` (the flush point without memcached's ``- 1``); an immediate
    ``flush_all`` is right. Only a delayed flush with the clock advanced to exactly the
    second it takes effect shows it."""

    def flush_point(self, oldest_live: int) -> int:
        point = super().flush_point(oldest_live)
        return point + 1 if point >= self.clock() else point


class ThirtyDaysIsAbsolute(Sphinx):
    """An exptime of exactly 30 days is taken as a Unix time (``<`` where memcached's
    ``realtime()`` has ``<=``): the item is expired at once instead of in 30 days."""

    def expiry_of(self, exptime: int, now: int) -> int:
        if exptime == REALTIME_MAXDELTA:
            return exptime
        return super().expiry_of(exptime, now)


class ExpiryNeverCounted(Sphinx):
    """``stats`` reports ``get_expired`` and ``get_flushed`` but nothing counts them: a
    lookup that finds a dead item drops it without a trace (memcached counts both)."""

    def stats_values(self) -> list[tuple[str, str]]:
        return [(name, "0" if name in ("get_expired", "get_flushed") else value)
                for name, value in super().stats_values()]  # fmt: skip


class RingFullOvertakes(Sphinx):
    """Requests that waited for room on a full forwarding ring are pushed newest first
    once room appears, so a later request to a thread overtakes an earlier one (only
    rings of one or two slots fill up)."""

    def _retry_pending(self, w: Worker) -> None:
        for dst, queue in list(w.pending.items()):
            while queue and self._push(w.index, dst, queue[-1]):
                queue.pop()
            if not queue:
                del w.pending[dst]


class BadFlushUncounted(Sphinx):
    """``flush_all x`` (a delay that is not a number) is refused without being counted
    in ``cmd_flush`` (memcached counts it before it parses the delay)."""

    def _dispatch(self, w: Worker, c: Connection, request: Request) -> None:
        if isinstance(request, Control) and request.kind == "bad_flush":
            self._reply_now(c, b"" if request.noreply else BAD_EXPTIME)
            return
        super()._dispatch(w, c, request)


class GoneClientStillCounted(Sphinx):
    """A connection whose client goes away is forgotten but still counted in
    ``curr_connections`` (the server hanging up is counted right)."""

    def disconnect(self, conn: int) -> None:
        known = self._conn(conn) is not None
        super().disconnect(conn)
        if known:
            self.open_connections += 1


#: Every mutant by name.
SPHINX_MUTANTS: dict[str, type[Sphinx]] = {
    "wrong-seed-owner": WrongSeedOwner,
    "signed-hash-owner": SignedHashOwner,
    "replies-reordered": ReorderedReplies,
    "segment-expired-out-of-fifo-order": NewestSegmentExpired,
    "delayed-flush-one-second-late": DelayedFlushLate,
    "thirty-days-is-absolute": ThirtyDaysIsAbsolute,
    "expiry-never-counted": ExpiryNeverCounted,
    "ring-full-overtakes": RingFullOvertakes,
    "bad-flush-uncounted": BadFlushUncounted,
    "gone-client-still-counted": GoneClientStillCounted,
}
