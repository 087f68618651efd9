"""The SPSC ring's direct ``try_push``/``try_pop`` against running the generator
programs with :meth:`SpscRing.run`: the same results, the same memory, the same private
state, and the same shared-memory accesses in the same order, on random sequences."""

from __future__ import annotations

import struct
from typing import Generator, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl import spsc
from impl.cpu_emu import Load, Request, Store
from impl.phys_mem import Machine
from impl.spsc import ALL_FENCES, VARIANTS, Fences, SpscRing, Variant

_PRIVATE = ("producer_tail", "producer_cached_head", "consumer_head", "consumer_cached_tail")


def program_trace(ring: SpscRing, program: Generator[Request, Union[int, None], object]) -> list[tuple[str, int, int]]:
    """The accesses ``program`` (an operation of ``ring``) makes when run on memory as
    it is; memory and the ring's private state are left as they were."""
    trace: list[tuple[str, int, int]] = []
    shadow = bytearray(ring.machine.dram)  # a copy: stores land here
    private = [getattr(ring, name) for name in _PRIVATE]
    try:
        request = next(program)
        while True:
            reply: int | None = None
            if isinstance(request, Load):
                reply = int.from_bytes(shadow[request.addr : request.addr + 8], "little")
                trace.append(("load", request.addr, reply))
            elif isinstance(request, Store):
                shadow[request.addr : request.addr + 8] = (request.value & (2**64 - 1)).to_bytes(8, "little")
                trace.append(("store", request.addr, request.value & (2**64 - 1)))
            request = program.send(reply)
    except StopIteration:
        for name, value in zip(_PRIVATE, private):
            setattr(ring, name, value)
        return trace


def pair(variant: Variant, capacity: int, fences: Fences) -> tuple[SpscRing, SpscRing]:
    fast = SpscRing.allocate(Machine(4 * 4096), capacity, variant, fences)
    slow = SpscRing.allocate(Machine(4 * 4096), capacity, variant, fences)
    return fast, slow


@given(
    variant=st.sampled_from(VARIANTS),
    capacity=st.sampled_from([1, 2, 4, 8, 256]),
    fenced=st.booleans(),
    start=st.sampled_from([0, 2**64 - 3]),
    operations=st.lists(st.one_of(st.integers(0, 2**64 - 1), st.none()), max_size=60),
)
def test_fast_path_equals_running_the_programs(
    variant: Variant, capacity: int, fenced: bool, start: int, operations: list[int | None]
) -> None:
    fast, slow = pair(variant, capacity, ALL_FENCES if fenced else Fences())
    for ring in (fast, slow):  # counters near the 64-bit wrap
        for name in _PRIVATE:
            setattr(ring, name, start)
        ring.machine.write_u64(ring.head_addr, start)
        ring.machine.write_u64(ring.tail_addr, start)
    for value in operations:  # an int: push it; None: pop
        if value is None:
            expected_trace = program_trace(fast, fast.pop())
            got, want = fast.try_pop(), slow.run(slow.pop())
        else:
            expected_trace = program_trace(fast, fast.push(value))
            got, want = fast.try_push(value), slow.run(slow.push(value))
        assert got == want
        assert fast.machine.dram == slow.machine.dram
        assert [getattr(fast, n) for n in _PRIVATE] == [getattr(slow, n) for n in _PRIVATE]
        fast.check_invariants()
        assert expected_trace  # every operation touches shared memory


class TracingStruct:
    """Stands in for :data:`impl.spsc._U64` and records the fast path's accesses."""

    def __init__(self) -> None:
        self.real = struct.Struct("<Q")
        self.trace: list[tuple[str, int, int]] = []

    def unpack_from(self, buffer: bytearray, offset: int) -> tuple[int]:
        value: tuple[int] = self.real.unpack_from(buffer, offset)
        self.trace.append(("load", offset, value[0]))
        return value

    def pack_into(self, buffer: bytearray, offset: int, value: int) -> None:
        self.trace.append(("store", offset, value))
        self.real.pack_into(buffer, offset, value)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_path_makes_the_programs_accesses_in_order(variant: Variant, monkeypatch: pytest.MonkeyPatch) -> None:
    tracer = TracingStruct()
    monkeypatch.setattr(spsc, "_U64", tracer)
    ring = SpscRing.allocate(Machine(4 * 4096), 2, variant)
    for operation, value in [("pop", 0), ("push", 7), ("push", 8), ("push", 9), ("pop", 0), ("pop", 0), ("pop", 0)]:
        expected = program_trace(ring, ring.push(value) if operation == "push" else ring.pop())
        tracer.trace.clear()
        if operation == "push":
            ring.try_push(value)
        else:
            ring.try_pop()
        assert tracer.trace == expected, operation


def test_a_ring_outside_dram_uses_the_programs() -> None:
    machine = Machine(4 * 4096, 4 * 4096)
    ring = SpscRing(machine, machine.scm_base, 4)
    assert ring._dram is None
    assert ring.try_push(5) and ring.try_pop() == 5 and ring.try_pop() is None
