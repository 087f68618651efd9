"""The log contract of :mod:`spec.kv_api`, as the precise mode of
:class:`spec.kv_model.KvModel` simulates it: per-thread segments filled in order, FIFO
expiry of whole segments, and which keys' current entries each expiry drops."""

from __future__ import annotations

from collections import deque


class SegmentLog:
    """The log contract of :mod:`spec.kv_api` for all threads: which keys' current
    entries lie in which segment of which thread, and which keys FIFO expiry drops."""

    def __init__(self, threads: int, memory: int, segment_size: int) -> None:
        self.threads = threads
        self.segment_size = segment_size
        self.segments = memory // threads // segment_size
        if self.segments < 1:
            raise ValueError(
                f"memory {memory} gives each of {threads} threads no {segment_size}-byte segment"
            )
        self.current = [0] * threads
        self.used = [0] * threads
        self.free: list[list[int]] = [list(range(1, self.segments)) for _ in range(threads)]
        self.closed: list[deque[int]] = [deque() for _ in range(threads)]
        self.keys_in: list[dict[int, set[bytes]]] = [{} for _ in range(threads)]
        self.where: dict[bytes, tuple[int, int]] = {}

    def place(self, thread: int, key: bytes, size: int) -> list[bytes]:
        """Append an entry of ``size`` bytes for ``key`` on ``thread``; return the keys
        whose current entries were dropped by expiring segments (FIFO) to make room."""
        dropped: list[bytes] = []
        if self.used[thread] + size > self.segment_size:
            self.closed[thread].append(self.current[thread])
            free = self.free[thread]
            if not free:
                victim = self.closed[thread].popleft()
                gone = self.keys_in[thread].pop(victim, set())
                for gone_key in sorted(gone):
                    del self.where[gone_key]
                dropped.extend(sorted(gone))
                free.append(victim)
            free.sort()
            self.current[thread] = free.pop(0)
            self.used[thread] = 0
        self.drop(key)
        segment = self.current[thread]
        self.used[thread] += size
        self.keys_in[thread].setdefault(segment, set()).add(key)
        self.where[key] = (thread, segment)
        return dropped

    def drop(self, key: bytes) -> None:
        """Forget ``key``'s index entry (its bytes stay in the log as garbage)."""
        spot = self.where.pop(key, None)
        if spot is not None:
            thread, segment = spot
            self.keys_in[thread][segment].discard(key)

    def check_invariants(self) -> None:
        """Segments partition into current, free and closed; ``where`` and ``keys_in``
        agree; keys live in non-free segments."""
        for t in range(self.threads):
            every = [self.current[t], *self.free[t], *self.closed[t]]
            assert sorted(every) == list(range(self.segments)), f"thread {t}: segments lost"
            assert 0 <= self.used[t] <= self.segment_size
            for segment, keys in self.keys_in[t].items():
                assert not keys or segment not in self.free[t], "a key in a free segment"
                for key in keys:
                    assert self.where[key] == (t, segment)
        assert sum(len(k) for ks in self.keys_in for k in ks.values()) == len(self.where)
