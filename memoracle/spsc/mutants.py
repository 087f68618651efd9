"""Deliberately broken SPSC rings that the interleaving explorer must catch.

Each is a subclass of :class:`impl.spsc.SpscRing` with one bug a kernel engineer could
write; :data:`RING_MUTANTS` maps a name to the class and the memory model under which
the bug shows (SC: the bug is in the protocol itself, not in a missing fence).
"""

from __future__ import annotations

from impl.cpu_emu import Load, Model, Store
from impl.spsc import PopProgram, PushProgram, SpscRing, MASK64


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


RING_MUTANTS: dict[str, tuple[type[SpscRing], Model]] = {
    "publish_before_data": (PublishBeforeData, Model.SC),
    "full_check_off_by_one": (FullCheckOffByOne, Model.SC),
    "release_before_read": (ReleaseBeforeRead, Model.SC),
}
