"""The machine's argument guards (:mod:`memoracle.machine.guards_check`): the probes pass
on the emulators, each guard mutant is caught by the probe of its guard, and the mutants
serve valid requests as the emulators do."""

from __future__ import annotations

import pytest

from memoracle.machine.checks import MACHINE_CHECKS
from impl.phys_mem import Machine
from memoracle.machine.guards_check import GUARD_MUTANTS, PROBES, Bench, Kit, adjacent_ranges, guard_campaign


def test_every_probe_is_refused_as_documented() -> None:
    assert guard_campaign() == (len(PROBES), None)


@pytest.mark.parametrize(("name", "probe"), [("double_free_ignored", "a double free"),
                                             ("map_overwrites", "a page mapped twice")])  # fmt: skip
def test_each_guard_mutant_is_caught_by_its_probe(name: str, probe: str) -> None:
    _, problem = guard_campaign(GUARD_MUTANTS[name])
    assert problem is not None and problem.startswith(f"{probe}: accepted")


@pytest.mark.parametrize("name", list(GUARD_MUTANTS))
def test_guard_mutants_serve_valid_requests_alike(name: str) -> None:
    runs = []
    for kit in (Kit(), GUARD_MUTANTS[name]):
        bench = Bench(kit)
        frames = [bench.frames.alloc() for _ in range(3)]
        bench.frames.free(frames[1])
        bench.space.unmap(bench.page)
        bench.space.map(bench.page, bench.machine.scm_base + 4096)
        bench.space.store(bench.page, b"again")
        bench.check()
        runs.append((frames, bench.state()))
    assert runs[0] == runs[1]


def test_the_check_runs_the_probes_and_the_mutants() -> None:
    check = next(c for c in MACHINE_CHECKS if c.name == "guards")
    outcome = check.run(0)
    assert outcome.ok and outcome.count == len(PROBES) + len(GUARD_MUTANTS)


def test_adjacent_ranges_hold_on_the_machine() -> None:
    assert adjacent_ranges() is None


def test_adjacent_ranges_catch_a_straddle_that_drops_its_scm_part(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Machine.write

    def write(self: Machine, paddr: int, data: bytes | bytearray | memoryview, nt: bool = False) -> None:
        if paddr < self.dram_size < paddr + len(data):
            self.dram[paddr : self.dram_size] = bytes(data)[: self.dram_size - paddr]  # the SCM part is lost
            return
        original(self, paddr, data, nt)

    monkeypatch.setattr(Machine, "write", write)
    problem = adjacent_ranges()
    assert problem is not None and "across DRAM's end" in problem
