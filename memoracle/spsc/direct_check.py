"""The SPSC ring's direct calls held to the bounded-queue spec, in every mode.

:meth:`impl.spsc.SpscRing.try_push` and :meth:`~impl.spsc.SpscRing.try_pop` run a push
or a pop to completion on memory. They have four paths: the ``lamport`` and the
``cached`` variant (the producer keeps a copy of ``head``, the consumer of ``tail``,
refreshed only when the ring looks full or empty), each either on the fast path (the
ring's frame in DRAM: plain byte access) or on the program path (the frame elsewhere,
here in the SCM: the push and pop programs run load by load). The interleaving explorer
runs the programs only, and Sphinx uses lamport rings in DRAM, so
:func:`direct_campaign` runs a seeded sequence of pushes and pops on each of the four,
with capacities 1 to 8 and counters starting at 0 or just below 2**64 (they wrap), and
compares every answer with :class:`spec.spsc_model.BoundedQueue`; the ring's invariants
must hold after every call, and what memory holds must be the model's contents. It also
asks for the rings the constructor refuses (a capacity not a power of two, an unknown
variant, a counter outside 64 bits, an unknown fence): each must raise ``ValueError``.

:data:`DIRECT_MUTANTS` are rings correct under the explorer but wrong on a direct path;
the campaign must catch each.
"""

from __future__ import annotations

import random
from typing import Callable

from impl.phys_mem import Machine
from impl.spsc import HEAD_OFFSET, MASK64, TAIL_OFFSET, VARIANTS, Fences, SpscRing, Variant
from spec.spsc_model import BoundedQueue

CAPACITIES = (1, 2, 4, 8)
STARTS = (0, MASK64 - 2)
PLACES = ("dram", "scm")

#: Requests the constructor must refuse with ``ValueError``.
REFUSED: tuple[tuple[str, Callable[[Machine], object]], ...] = (
    ("capacity 3", lambda m: SpscRing(m, 4096, 3)),
    ("capacity 0", lambda m: SpscRing(m, 4096, 0)),
    ("an unknown variant", lambda m: SpscRing(m, 4096, 2, "ticket")),  # type: ignore[arg-type]
    ("a start counter of 2**64", lambda m: SpscRing(m, 4096, 2, start=MASK64 + 1)),
    ("an unknown fence", lambda m: Fences.of({"producer_fence_before_everything"})),
)


def _ring(cls: type[SpscRing], variant: Variant, place: str, capacity: int, start: int) -> SpscRing:
    """A ring of ``cls`` in a DRAM frame or at the SCM's base, counters at ``start``."""
    machine = Machine(dram_size=2 * 4096, scm_size=4096)
    if place == "dram":
        return cls.allocate(machine, capacity, variant, start=start)
    base = machine.scm_base
    machine.write_u64(base + HEAD_OFFSET, start)
    machine.write_u64(base + TAIL_OFFSET, start)
    return cls(machine, base, capacity, variant, start=start)


def run_sequence(ring: SpscRing, rng: random.Random, steps: int) -> str | None:
    """``steps`` pushes and pops on ``ring`` against the model; ``None`` or the first
    difference. Runs of pushes and of pops (lengths up to twice the capacity) so that the
    ring is often full and often empty."""
    model = BoundedQueue(ring.capacity)
    step, value = 0, 0
    while step < steps:
        push = rng.random() < 0.5
        for _ in range(rng.randint(1, 2 * ring.capacity)):
            expected: object
            got: object
            if push:
                value += 1
                model, expected = model.try_push(value)
                got, what = ring.try_push(value), f"push {value}"
            else:
                model, expected = model.try_pop()
                got, what = ring.try_pop(), "pop"
            step += 1
            if got != expected:
                return f"step {step}: {what} answered {got}, the spec {expected} (queue {list(model.items)})"
            try:
                ring.check_invariants()
            except AssertionError as error:
                return f"step {step}: after {what}, invariant broken: {error}"
    held = [ring.machine.read_u64(ring.slot_addr(ring.consumer_head + k)) for k in range(len(model.items))]
    if held != list(model.items):
        return f"after {steps} steps the ring holds {held}, the spec {list(model.items)}"
    return None


def direct_campaign(seed: int, steps: int, cls: type[SpscRing] = SpscRing) -> tuple[int, str | None]:
    """(calls made, ``None`` or the first problem): a sequence of ``steps`` calls on a
    ring of each variant, place, capacity and start, then the refused constructions."""
    calls = 0
    for variant in VARIANTS:
        for place in PLACES:
            for capacity in CAPACITIES:
                for start in STARTS:
                    ring = _ring(cls, variant, place, capacity, start)
                    rng = random.Random(f"{seed}:{variant}:{place}:{capacity}:{start}")
                    problem = run_sequence(ring, rng, steps)
                    calls += steps
                    if problem is not None:
                        return calls, (f"{cls.__name__} variant={variant} in {place} capacity={capacity} "
                                       f"start={start:#x}, seed {seed}: {problem}")  # fmt: skip
    for what, request in REFUSED:
        try:
            request(Machine(dram_size=2 * 4096))
        except ValueError:
            calls += 1
            continue
        return calls, f"{what}: accepted, documented: ValueError"
    return calls, None


# ------------------------------------------------------------------ mutants


class CachedHeadNeverRefreshed(SpscRing):
    """On the direct path the cached producer trusts its copy of ``head`` and never
    reloads it: once the ring was full it stays full for it (the programs are right)."""

    def try_push(self, value: int) -> bool:
        if self.variant == "cached" and self._dram is not None:
            tail = self.producer_tail
            if (tail - self.producer_cached_head) & MASK64 == self.capacity:
                return False  # BUG: head is not reloaded
        return super().try_push(value)


class ProgramPathSkipsPublish(SpscRing):
    """Off DRAM, ``try_pop`` reads the slot but never publishes the new ``head``: the
    producer sees the ring full (the fast path is right)."""

    def try_pop(self) -> int | None:
        if self._dram is not None:
            return super().try_pop()
        head = self.consumer_head
        if self.machine.read_u64(self.tail_addr) == head:
            return None
        value = self.machine.read_u64(self.slot_addr(head))
        self.consumer_head = (head + 1) & MASK64  # BUG: head is not stored
        return value


#: Rings wrong only on a direct path; :func:`direct_campaign` must catch each.
DIRECT_MUTANTS: dict[str, type[SpscRing]] = {
    "cached_head_never_refreshed": CachedHeadNeverRefreshed,
    "program_path_skips_publish": ProgramPathSkipsPublish,
}

__all__ = ["CAPACITIES", "DIRECT_MUTANTS", "REFUSED", "direct_campaign", "run_sequence"]
