"""Single-producer single-consumer rings in emulated shared memory.

Two variants, both with free-running 64-bit counters (``tail`` counts pushes, ``head``
counts pops; the ring holds ``tail - head`` values, slot of counter ``i`` is
``i & (capacity - 1)``), so the capacity must be a power of two:

- ``lamport``: every push reads ``head`` and every pop reads ``tail`` (Lamport 1983, as
  in Linux ``kfifo``).
- ``cached``: the producer keeps a private copy of ``head`` and re-reads the shared one
  only when the copy says "full"; the consumer likewise for ``tail`` (as in rigtorp's
  SPSCQueue and folly's ProducerConsumerQueue).

Layout in one 4 KiB frame of the :class:`~impl.phys_mem.Machine`: ``head`` at offset 0,
``tail`` at offset 64 (separate cache lines), slots of 8 bytes from offset 128, so the
capacity is at most 496. Each side keeps its *own* index in a private variable (the
other side never writes it), as real rings load their own index relaxed; only the other
side's index and the slots are shared-memory accesses.

Which accesses are ordered is configurable (:class:`Fences`), so that the interleaving
explorer can find out which orderings each memory model needs: acquire on the load of
the other side's index, release on the store publishing one's own index, and a full
fence after that store (which makes the publication visible before the operation
returns — what *strict* linearizability of "full"/"empty" answers needs on a machine
with store buffers).

Operations are *programs* (generators for :mod:`impl.cpu_emu`): ``push(value)`` yields
its accesses and returns ``True``/``False``; ``pop()`` returns the value or ``None``.
:meth:`SpscRing.run` executes a program directly against memory, with no buffering,
for code that does not explore interleavings. :meth:`SpscRing.try_push` and
:meth:`SpscRing.try_pop` are the same execution without the generator: straight-line
code performing exactly the program's loads and stores, in the program's order, on
memory as it is (sequential consistency; fences are no-ops there, as in ``run``) — for
a ring in DRAM with struct accesses on the DRAM buffer, otherwise through ``run``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Generator, Literal, Union

from impl.cpu_emu import Fence, Load, Request, Store
from impl.phys_mem import Machine

Variant = Literal["lamport", "cached"]
VARIANTS: tuple[Variant, ...] = ("lamport", "cached")

HEAD_OFFSET = 0
TAIL_OFFSET = 64
SLOTS_OFFSET = 128
MAX_CAPACITY = (4096 - SLOTS_OFFSET) // 8
#: Head and tail are 64-bit counters: index arithmetic is modulo 2**64.
MASK64 = (1 << 64) - 1
_U64 = struct.Struct("<Q")

PushProgram = Generator[Request, Union[int, None], bool]
PopProgram = Generator[Request, Union[int, None], Union[int, None]]


@dataclass(frozen=True)
class Fences:
    """Which orderings the ring asks for (all off = Lamport's ring with plain accesses)."""

    producer_acquire_head: bool = False
    producer_release_tail: bool = False
    producer_fence_after_tail: bool = False
    consumer_acquire_tail: bool = False
    consumer_release_head: bool = False
    consumer_fence_after_head: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names of the knobs, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, names: tuple[str, ...] | list[str] | set[str]) -> Fences:
        """The fences with exactly ``names`` turned on."""
        unknown = set(names) - set(cls.names())
        if unknown:
            raise ValueError(f"unknown fence {sorted(unknown)[0]!r}")
        return cls(**{name: True for name in names})

    def enabled(self) -> tuple[str, ...]:
        """The names of the knobs that are on."""
        return tuple(name for name in self.names() if getattr(self, name))


ALL_FENCES = Fences.of(Fences.names())


class SpscRing:
    """A ring of ``capacity`` 8-byte values at physical address ``base`` of ``machine``.

    Guarantees of the *protocol* (under sequential consistency, proved in
    :mod:`proofs.spsc`; under weaker models only with the fences the explorer finds):
    ``0 <= tail - head <= capacity`` (mod 2^64), a push never overwrites an unread slot,
    a pop never reads an unpublished slot.
    """

    def __init__(
        self,
        machine: Machine,
        base: int,
        capacity: int,
        variant: Variant = "lamport",
        fences: Fences = Fences(),
        start: int = 0,
    ) -> None:
        if capacity < 1 or capacity & (capacity - 1) or capacity > MAX_CAPACITY:
            raise ValueError(f"capacity must be a power of two in [1, {MAX_CAPACITY}], not {capacity}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown ring variant {variant!r}")
        self.machine = machine
        self.base = base
        self.capacity = capacity
        self.variant = variant
        self.fences = fences
        self.head_addr = base + HEAD_OFFSET
        self.tail_addr = base + TAIL_OFFSET
        self._slots_addr = base + SLOTS_OFFSET
        self._index_mask = capacity - 1
        #: The DRAM buffer when the whole frame lies in DRAM (the fast path), else None.
        self._dram: bytearray | None = machine.dram if 0 <= base and base + 4096 <= machine.dram_size else None
        if not 0 <= start <= MASK64:
            raise ValueError(f"start must be a 64-bit counter value, not {start}")
        # private state of each side: both counters start at ``start`` (memory must hold
        # the same value in head and tail, as allocate() writes it)
        self.producer_tail = start
        self.producer_cached_head = start
        self.consumer_head = start
        self.consumer_cached_tail = start

    @classmethod
    def allocate(
        cls,
        machine: Machine,
        capacity: int,
        variant: Variant = "lamport",
        fences: Fences = Fences(),
        start: int = 0,
    ) -> SpscRing:
        """A ring in a freshly allocated (zeroed) frame of ``machine``, its ``head`` and
        ``tail`` counters both at ``start`` (an empty ring; near 2**64 the counters wrap
        within a few operations)."""
        base = machine.alloc_frame()
        if start:
            machine.write_u64(base + HEAD_OFFSET, start)
            machine.write_u64(base + TAIL_OFFSET, start)
        return cls(machine, base, capacity, variant, fences, start)

    def slot_addr(self, counter: int) -> int:
        """The physical address of the slot that counter value ``counter`` uses."""
        return self.base + SLOTS_OFFSET + 8 * (counter & (self.capacity - 1))

    # -- the programs ----------------------------------------------------------------
    def push(self, value: int) -> PushProgram:
        """Producer: append ``value`` unless the ring is full; returns whether it did."""
        f = self.fences
        tail = self.producer_tail
        if self.variant == "cached":
            if (tail - self.producer_cached_head) & MASK64 == self.capacity:
                loaded = yield Load(self.head_addr, acquire=f.producer_acquire_head)
                assert loaded is not None
                self.producer_cached_head = loaded
                if (tail - loaded) & MASK64 == self.capacity:
                    return False
        else:
            head = yield Load(self.head_addr, acquire=f.producer_acquire_head)
            assert head is not None
            if (tail - head) & MASK64 == self.capacity:
                return False
        yield Store(self.slot_addr(tail), value)
        self.producer_tail = (tail + 1) & MASK64
        yield Store(self.tail_addr, self.producer_tail, release=f.producer_release_tail)
        if f.producer_fence_after_tail:
            yield Fence()
        return True

    def pop(self) -> PopProgram:
        """Consumer: remove and return the oldest value, or ``None`` if the ring is empty."""
        f = self.fences
        head = self.consumer_head
        if self.variant == "cached":
            if self.consumer_cached_tail == head:
                loaded = yield Load(self.tail_addr, acquire=f.consumer_acquire_tail)
                assert loaded is not None
                self.consumer_cached_tail = loaded
                if loaded == head:
                    return None
        else:
            tail = yield Load(self.tail_addr, acquire=f.consumer_acquire_tail)
            if tail == head:
                return None
        value = yield Load(self.slot_addr(head))
        self.consumer_head = (head + 1) & MASK64
        yield Store(self.head_addr, self.consumer_head, release=f.consumer_release_head)
        if f.consumer_fence_after_head:
            yield Fence()
        return value

    # -- direct execution ----------------------------------------------------------------
    def run(self, program: Generator[Request, Union[int, None], object]) -> object:
        """Run a program to completion directly on memory (no store buffer)."""
        try:
            request = next(program)
            while True:
                reply: int | None = None
                if isinstance(request, Load):
                    reply = self.machine.read_u64(request.addr)
                elif isinstance(request, Store):
                    self.machine.write_u64(request.addr, request.value & MASK64)
                request = program.send(reply)
        except StopIteration as stop:
            return stop.value

    def try_push(self, value: int) -> bool:
        """Push directly: the result of ``run(push(value))``, by the same loads and
        stores in the same order (the other index, the slot, one's own index)."""
        dram = self._dram
        if dram is None:
            return bool(self.run(self.push(value)))
        tail = self.producer_tail
        if self.variant == "cached":
            if (tail - self.producer_cached_head) & MASK64 == self.capacity:
                loaded: int = _U64.unpack_from(dram, self.head_addr)[0]
                self.producer_cached_head = loaded
                if (tail - loaded) & MASK64 == self.capacity:
                    return False
        else:
            head: int = _U64.unpack_from(dram, self.head_addr)[0]
            if (tail - head) & MASK64 == self.capacity:
                return False
        _U64.pack_into(dram, self._slots_addr + 8 * (tail & self._index_mask), value & MASK64)
        tail = (tail + 1) & MASK64
        self.producer_tail = tail
        _U64.pack_into(dram, self.tail_addr, tail)
        return True

    def try_pop(self) -> int | None:
        """Pop directly: the result of ``run(pop())``, by the same loads and stores in
        the same order (the other index, the slot, one's own index)."""
        dram = self._dram
        if dram is None:
            result = self.run(self.pop())
            assert result is None or isinstance(result, int)
            return result
        head = self.consumer_head
        if self.variant == "cached":
            if self.consumer_cached_tail == head:
                loaded: int = _U64.unpack_from(dram, self.tail_addr)[0]
                self.consumer_cached_tail = loaded
                if loaded == head:
                    return None
        else:
            if _U64.unpack_from(dram, self.tail_addr)[0] == head:
                return None
        value: int = _U64.unpack_from(dram, self._slots_addr + 8 * (head & self._index_mask))[0]
        head = (head + 1) & MASK64
        self.consumer_head = head
        _U64.pack_into(dram, self.head_addr, head)
        return value

    def is_empty(self) -> bool:
        """Whether the shared ``tail`` equals the consumer's ``head`` (one load of
        ``tail``, as a pop's first access; changes nothing)."""
        dram = self._dram
        tail: int = (
            _U64.unpack_from(dram, self.tail_addr)[0] if dram is not None else self.machine.read_u64(self.tail_addr)
        )
        return tail == self.consumer_head

    def check_invariants(self) -> None:
        """Assert, on memory as it is now: ``0 <= tail - head <= capacity`` (mod 2^64);
        each side's private index equals its shared one once its stores are visible; a
        cached copy of the other index never runs ahead of it."""
        head = self.machine.read_u64(self.head_addr)
        tail = self.machine.read_u64(self.tail_addr)
        assert (tail - head) & MASK64 <= self.capacity, f"tail {tail} - head {head} > capacity"
        assert (self.producer_tail - head) & MASK64 <= self.capacity
        if self.variant == "cached":
            assert (self.producer_tail - self.producer_cached_head) & MASK64 <= self.capacity
            assert (self.consumer_cached_tail - self.consumer_head) & MASK64 <= self.capacity
