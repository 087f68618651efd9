"""Deliberately broken SPSC rings that the interleaving explorer must catch.

Each is a subclass of :class:`impl.spsc.SpscRing` with one bug a kernel engineer could
write; :data:`RING_MUTANTS` maps a name to the class and the memory model under which
the bug shows (SC: the bug is in the protocol itself, not in a missing fence).
"""

from __future__ import annotations

from impl.cpu_emu import Load, Model, Store
from impl.spsc import MASK64, SLOTS_OFFSET, PopProgram, PushProgram, SpscRing


class PublishBeforeData(SpscRing):
    """The producer publishes ``tail`` before writing the slot."""

    def push(self, value: int) -> PushProgram:
        tail = self.producer_tail
        head = yield Load(self.head_addr)
        assert head is not None
        if (tail - head) & MASK64 == self.capacity:
            return False
        self.producer_tail = (tail + 1) & MASK64
        yield Store(self.tail_addr, self.producer_tail)
        yield Store(self.slot_addr(tail), value)
        return True


class FullCheckOffByOne(SpscRing):
    """The producer thinks the ring is full only past capacity: it overwrites a slot."""

    def push(self, value: int) -> PushProgram:
        tail = self.producer_tail
        head = yield Load(self.head_addr)
        assert head is not None
        if (tail - head) & MASK64 > self.capacity:
            return False
        yield Store(self.slot_addr(tail), value)
        self.producer_tail = (tail + 1) & MASK64
        yield Store(self.tail_addr, self.producer_tail)
        return True


class ReleaseBeforeRead(SpscRing):
    """The consumer frees the slot (stores ``head``) before reading it."""

    def pop(self) -> PopProgram:
        head = self.consumer_head
        tail = yield Load(self.tail_addr)
        if tail == head:
            return None
        self.consumer_head = (head + 1) & MASK64
        yield Store(self.head_addr, self.consumer_head)
        value = yield Load(self.slot_addr(head))
        return value


class IndexMaskedByCapacity(SpscRing):
    """Slots are indexed by ``counter & capacity`` instead of ``counter & (capacity -
    1)``: with capacity 1 that only spreads the values over two slots, from capacity 2
    on consecutive values share a slot and the later overwrites the earlier."""

    def slot_addr(self, counter: int) -> int:
        return self.base + SLOTS_OFFSET + 8 * (counter & self.capacity)


class FullCheckWithoutWrap(SpscRing):
    """The producer's fill level ``tail - head`` is not reduced modulo 2**64: once
    ``tail`` has wrapped past 2**64 and ``head`` has not, a full ring looks far from
    full and a push overwrites an unread slot."""

    def push(self, value: int) -> PushProgram:
        tail = self.producer_tail
        head = yield Load(self.head_addr)
        assert head is not None
        if tail - head == self.capacity:
            return False
        yield Store(self.slot_addr(tail), value)
        self.producer_tail = (tail + 1) & MASK64
        yield Store(self.tail_addr, self.producer_tail)
        return True


RING_MUTANTS: dict[str, tuple[type[SpscRing], Model]] = {
    "publish_before_data": (PublishBeforeData, Model.SC),
    "full_check_off_by_one": (FullCheckOffByOne, Model.SC),
    "release_before_read": (ReleaseBeforeRead, Model.SC),
    "index_masked_by_capacity": (IndexMaskedByCapacity, Model.SC),
    "full_check_without_wrap": (FullCheckWithoutWrap, Model.SC),
}
