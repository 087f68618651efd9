"""Store-buffer cores, the rings, the interleaving explorer and the fences table."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.cpu_emu import TIME, CpuEmu, Fence, Load, Model, Program, Request, Stamp, Store
from impl.phys_mem import Machine
from impl.spsc import ALL_FENCES, Fences, SpscRing
from memoracle.spsc.fences_table import Cell, fences_table, render_markdown
from memoracle.spsc.interleave import NEAR_WRAP, Scenario, explore, pct, replay
from memoracle.spsc.mutants import RING_MUTANTS
from spec.spsc_model import BoundedQueue, Criterion

#: The fences table's small workload (capacity 1, two pushes and two pops), for the
#: exhaustive searches under store buffers that the default workload makes too long.
SMALL = {"capacity": 1, "pushes": 2, "pops": 2}

STRICT, TOLERANT = Criterion.STRICT, Criterion.TOLERANT
A, B = 0x1000, 0x1008


def cpu(model: Model) -> CpuEmu:
    return CpuEmu(Machine(dram_size=4 * 4096), model)


def program(*requests: Request) -> Program:
    seen = []
    for request in requests:
        seen.append((yield request))
    return seen


# ---------------------------------------------------------------- the cores


def test_tso_buffers_forwards_and_drains_in_order() -> None:
    emu = cpu(Model.TSO)
    core = emu.spawn(program(Store(A, 1), Store(B, 2), Load(A), Fence()))
    emu.perform(("step", core, 0))
    emu.perform(("step", core, 0))
    assert emu.machine.read_u64(A) == 0  # buffered, invisible
    emu.perform(("step", core, 0))  # load forwards from the buffer
    assert ("step", core, 0) not in emu.enabled()  # fence waits for the buffer
    assert emu.enabled() == [("drain", core, A)]  # FIFO: only the oldest
    emu.perform(("drain", core, A))
    assert emu.enabled() == [("drain", core, B)]
    emu.perform(("drain", core, B))
    emu.perform(("step", core, 0))
    assert emu.finished and emu.cores[core].result == [None, None, 1, None]
    emu.check_invariants()


def test_weak_drains_per_address_but_release_waits() -> None:
    emu = cpu(Model.WEAK)
    core = emu.spawn(program(Store(A, 1), Store(B, 2), Store(A, 3, release=True), Store(B + 8, 4, release=True)))
    for _ in range(4):
        emu.perform(("step", core, 0))
    # B may pass A; the release to B+8 is not the oldest entry, so it waits
    assert set(emu.enabled()) == {("drain", core, A), ("drain", core, B)}
    emu.perform(("drain", core, B))
    emu.perform(("drain", core, A))
    assert set(emu.enabled()) == {("drain", core, A)}  # the release to A is now oldest
    emu.perform(("drain", core, A))
    emu.perform(("drain", core, B + 8))
    assert emu.machine.read_u64(A) == 3 and emu.finished


def test_sc_writes_at_once_and_footprints_say_what_conflicts() -> None:
    emu = cpu(Model.SC)
    writer = emu.spawn(program(Store(A, 5)))
    reader = emu.spawn(program(Stamp(), Load(A)))
    assert emu.footprint(("step", writer, 0)) == ((A, True),)
    assert emu.footprint(("step", reader, 0)) == ((TIME, False),)
    emu.perform(("step", writer, 0))
    assert emu.machine.read_u64(A) == 5 and not emu.cores[writer].buffer
    tso = cpu(Model.TSO)
    core = tso.spawn(program(Store(A, 5)))
    assert tso.footprint(("step", core, 0)) == ()  # a buffered store touches nothing shared


# ---------------------------------------------------------------- the rings


@given(
    ops=st.lists(st.one_of(st.integers(1, 2**64 - 1), st.none()), max_size=60),
    capacity=st.sampled_from([1, 2, 4, 8]),
    variant=st.sampled_from(["lamport", "cached"]),
    start=st.sampled_from([0, 2**64 - 5]),
)
@settings(max_examples=max(150, settings.default.max_examples))
def test_ring_run_sequentially_is_the_bounded_queue(
    ops: list[int | None], capacity: int, variant: str, start: int
) -> None:
    """Direct execution equals the spec, also across the 2^64 wrap of the counters."""
    machine = Machine(dram_size=2 * 4096)
    ring = SpscRing.allocate(machine, capacity, variant)  # type: ignore[arg-type]
    for addr in (ring.head_addr, ring.tail_addr):
        machine.write_u64(addr, start)
    ring.producer_tail = ring.producer_cached_head = ring.consumer_head = ring.consumer_cached_tail = start
    model = BoundedQueue(capacity)
    for value in ops:
        if value is None:
            model, expected = model.try_pop()
            assert ring.try_pop() == expected
        else:
            model, pushed = model.try_push(value)
            assert ring.try_push(value) == pushed
        ring.check_invariants()


def test_ring_rejects_a_capacity_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        SpscRing.allocate(Machine(dram_size=2 * 4096), 6)


# ---------------------------------------------------------------- the explorer


@pytest.fixture(scope="module")
def table() -> list[Cell]:
    return fences_table()


def _cell(table: list[Cell], model: Model, variant: str, criterion: Criterion) -> tuple[tuple[str, ...], ...]:
    return next(c.minimal for c in table if (c.model, c.variant, c.criterion) == (model, variant, criterion))


def test_fences_table_key_cells(table: list[Cell]) -> None:
    for variant in ("lamport", "cached"):
        # SC needs nothing; the fence-free ring is correct under TSO for the tolerant criterion
        assert _cell(table, Model.SC, variant, STRICT) == ((),)
        assert _cell(table, Model.TSO, variant, TOLERANT) == ((),)
        # strict needs the store-load fences after both publications under TSO
        assert _cell(table, Model.TSO, variant, STRICT) == (
            ("producer_fence_after_tail", "consumer_fence_after_head"),
        )
        # the weaker model needs the release on the tail publish
        assert _cell(table, Model.WEAK, variant, TOLERANT) == (("producer_release_tail",),)
    text = render_markdown(table)
    assert "| tso | lamport | P:fence + C:fence | none |" in text


def test_removing_the_release_on_the_publish_breaks_it_under_the_weaker_model() -> None:
    everything_but = Fences.of(set(Fences.names()) - {"producer_release_tail"})
    result = explore(Scenario(Model.WEAK, fences=everything_but, **SMALL), TOLERANT)
    assert not result.ok and result.violation is not None
    text = result.violation.render()
    assert "drain" in text and "history:" in text and "replay:" in text
    # the schedule replays to the same history
    again = replay(result.violation.scenario, result.violation.schedule)
    assert tuple(again.ops) == result.violation.history
    assert explore(Scenario(Model.WEAK, fences=ALL_FENCES, **SMALL), STRICT).ok


def test_spurious_empty_under_tso_is_strict_violation_only() -> None:
    result = explore(Scenario(Model.TSO, **SMALL), STRICT)
    assert result.violation is not None and "empty" in result.violation.render()


@pytest.mark.parametrize("model", list(Model))
def test_sleep_sets_keep_every_verdict(model: Model) -> None:
    """With and without reduction, the same scenarios fail; reduction runs fewer."""
    for fences in (Fences(), Fences.of(["producer_release_tail"]), ALL_FENCES):
        scenario = Scenario(model, fences=fences, capacity=1, pushes=1, pops=1)
        for criterion in Criterion:
            reduced = explore(scenario, criterion)
            full = explore(scenario, criterion, reduction=False)
            assert reduced.ok == full.ok, (scenario.describe(), criterion)
            if reduced.ok:
                assert reduced.executions <= full.executions


@pytest.mark.parametrize("name", sorted(RING_MUTANTS))
def test_every_ring_mutant_is_caught(name: str) -> None:
    ring, model = RING_MUTANTS[name]
    result = explore(Scenario(model, ring=ring, pushes=3, pops=3), TOLERANT)  # what the check runs
    assert not result.ok, f"mutant {name} survived {result.executions} executions"


def test_the_defaults_reach_index_masking_and_wrap_around() -> None:
    """Capacity 1 with counters from 0 passes both mutants whatever the workload; the
    mask bug needs a second slot (the defaults catch it), the wrap bug a full ring as
    the counters pass 2**64 (the defaults and one more push)."""
    default = Scenario(Model.SC)
    assert default.capacity > 1 and default.start == NEAR_WRAP
    mask, model = RING_MUTANTS["index_masked_by_capacity"]
    wrap, _ = RING_MUTANTS["full_check_without_wrap"]
    for ring in (mask, wrap):
        assert explore(Scenario(model, ring=ring, capacity=1, pushes=3, pops=3, start=0), TOLERANT).ok
    assert not explore(Scenario(model, ring=mask), TOLERANT).ok
    assert explore(Scenario(model, ring=wrap, pushes=3, pops=3, start=0), TOLERANT).ok  # no wrap, no bug
    assert not explore(Scenario(model, ring=wrap, pushes=3, pops=3), TOLERANT).ok


def test_counters_near_two_to_the_64_wrap_and_the_real_rings_stay_strict() -> None:
    for variant in ("lamport", "cached"):
        result = explore(Scenario(Model.SC, variant=variant, pushes=3, pops=3), STRICT)
        assert result.ok and result.exhausted and result.executions > 100
    ring = SpscRing.allocate(Machine(dram_size=2 * 4096), 2, start=NEAR_WRAP)
    pushed = [ring.try_push(v) for v in (1, 2, 3)]
    assert pushed == [True, True, False] and ring.producer_tail == 0  # wrapped, and full
    assert [ring.try_pop(), ring.try_push(3), ring.try_pop(), ring.try_pop()] == [1, True, 2, 3]
    assert ring.consumer_head == 1 and ring.try_pop() is None
    ring.check_invariants()


def test_preemption_bound_zero_runs_few_executions_and_misses_deep_bugs() -> None:
    """A bound trades completeness for speed: without preemptions the explorer runs a
    handful of executions and misses the missing release under the weaker model, which
    one preemption (or no bound) exposes; a mutant that needs two preemptions survives a
    bound of one."""
    weak = Scenario(Model.WEAK, **SMALL)
    bounded = explore(weak, TOLERANT, bound=0)
    assert bounded.ok and bounded.exhausted and bounded.executions < 10, bounded
    assert not explore(weak, TOLERANT, bound=1).ok
    assert not explore(weak, TOLERANT).ok
    ring, model = RING_MUTANTS["release_before_read"]
    deep = Scenario(model, ring=ring, capacity=1, pushes=2, pops=2)
    shallow = explore(deep, TOLERANT, bound=1)
    assert shallow.ok and shallow.exhausted
    assert not explore(deep, TOLERANT).ok
    tso = Scenario(Model.TSO, **SMALL)
    everything = explore(tso, TOLERANT)
    assert everything.ok and everything.exhausted and everything.executions > 100
    assert explore(tso, TOLERANT, bound=0).executions * 50 < everything.executions


def test_pct_finds_the_missing_release_and_is_deterministic() -> None:
    scenario = Scenario(Model.WEAK, **SMALL)
    first = pct(scenario, TOLERANT, runs=400, depth=3, seed=0)
    second = pct(scenario, TOLERANT, runs=400, depth=3, seed=0)
    assert first.violation is not None
    assert second.violation is not None and first.violation.schedule == second.violation.schedule
    assert pct(Scenario(Model.WEAK, fences=ALL_FENCES, **SMALL), STRICT, runs=100, seed=1).ok
