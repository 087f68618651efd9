"""The machine's checks in the default campaign (``memoracle check --system machine``).

- ``mmu-translation``: seeded maps, unmaps, protections and splices on the emulated MMU,
  every translation compared with :func:`spec.paging.walk`, invariants after each step;
- ``persistency-adr`` / ``persistency-eadr``: random store/flush/fence programs whose
  crash images (from :mod:`impl.scm_emu`) must equal :func:`spec.persistency.allowed_images`;
- ``persistency-mutants``: every broken emulator of :mod:`memoracle.machine.scm_mutants`
  must be caught by that comparison;
- ``persistency-sampled``: random programs with more crash images than a crash
  explorer's limit: the emulator's sampled images (what the explorers ask for there) are
  allowed by the spec, distinct and in the documented order, and a reboot into one holds
  exactly it (:func:`memoracle.machine.persistency_check.check_sample`); every emulator
  of :data:`memoracle.machine.scm_mutants.SAMPLING_MUTANTS` is caught;
- ``litmus``: the classic litmus tests (SB, MP, store forwarding, coherence) on the
  emulated cores under SC, TSO and the weaker model, every outcome compared with what
  the model allows, and the cores' refused actions; every broken core of
  :data:`memoracle.machine.litmus_check.CPU_MUTANTS` caught;
- ``nic``: flows opened, fed, served, closed with packets queued, the indirection
  table and IRQ affinities changed, irqbalance passes; every delivery judged against a
  model of each flow's packets (order, exactly once, the bound core, closed flows
  dropped) and everything delivered in the end (:mod:`memoracle.machine.nic_check`);
  its broken NICs caught;
- ``guards``: every refusal the emulators document (bad frame ranges, double frees,
  unbacked reads, overlapping VMAs, double mappings, bad NIC settings, …) is made with
  the documented exception and changes nothing, and every emulator with a guard left out
  (:data:`memoracle.machine.guards_check.GUARD_MUTANTS`) is caught
  (:mod:`memoracle.machine.guards_check`).
"""

from __future__ import annotations

from typing import Callable

from memoracle.check_types import Check, Outcome
from memoracle.machine.mmu_check import mmu_campaign
from memoracle.machine.persistency_check import campaign
from memoracle.machine.scm_mutants import SCM_MUTANTS
from spec.persistency import PersistMode

#: Programs per seed, and seeds per ``memoracle check`` (150 programs in all).
PERSISTENCY_PROGRAMS = 50
PERSISTENCY_SEEDS = 3


def _persistency(mode: PersistMode) -> Callable[[int], Outcome]:
    def run(seed: int) -> Outcome:
        mismatch = campaign(seed, PERSISTENCY_PROGRAMS, mode)
        if mismatch is None:
            return Outcome(True, PERSISTENCY_PROGRAMS)
        return Outcome(
            False,
            PERSISTENCY_PROGRAMS,
            mismatch.render() + f"\n(programs of seed {seed})",
        )

    return run


def _persistency_mutants(seed: int) -> Outcome:
    survivors = [
        name
        for name, mutant in SCM_MUTANTS.items()
        if campaign(seed, 300, PersistMode.ADR, mutant) is None
    ]
    report = f"mutants not caught: {', '.join(survivors)}" if survivors else ""
    return Outcome(not survivors, len(SCM_MUTANTS), report)


#: Steps per seed, and seeds per ``memoracle check`` (400 steps in all).
MMU_STEPS = 100
MMU_SEEDS = 4


def _mmu(seed: int) -> Outcome:
    report = mmu_campaign(seed, MMU_STEPS)
    if report is None:
        return Outcome(True, MMU_STEPS)
    return Outcome(False, MMU_STEPS, report + f"\n(steps of seed {seed})")


#: Programs per mode and seed of the sampled check (most have more images than the limit).
SAMPLED_PROGRAMS = 30


def _persistency_sampled(seed: int) -> Outcome:
    from memoracle.machine.persistency_check import sampled_campaign
    from memoracle.machine.scm_mutants import SAMPLING_MUTANTS

    judged = 0
    for mode in PersistMode:
        count, problem = sampled_campaign(seed, SAMPLED_PROGRAMS, mode)
        judged += count
        if problem is not None:
            return Outcome(False, judged, f"{mode.value}: {problem}\n(programs of seed {seed})")
    survivors = [name for name, emu in SAMPLING_MUTANTS.items()
                 if sampled_campaign(seed, SAMPLED_PROGRAMS, PersistMode.ADR, emu)[1] is None]  # fmt: skip
    report = f"sampling mutants not caught: {', '.join(survivors)}" if survivors else ""
    return Outcome(not survivors, judged, report)


def _litmus(seed: int) -> Outcome:
    """Every litmus test under every model (exhaustive: the seed changes nothing)."""
    from memoracle.machine.litmus_check import CPU_MUTANTS, litmus_campaign

    runs, problem = litmus_campaign()
    if problem is not None:
        return Outcome(False, runs, problem)
    survivors = [name for name, cpu in CPU_MUTANTS.items() if litmus_campaign(cpu)[1] is None]
    return Outcome(not survivors, runs, f"broken cores not caught: {', '.join(survivors)}" if survivors else "")


#: Operations per seed of the NIC check; seeds per ``memoracle check`` (even seeds run
#: the NIC in affinity mode, odd ones in balance mode).
NIC_STEPS = 300
NIC_SEEDS = 2


def _nic(seed: int) -> Outcome:
    from memoracle.machine.nic_check import NIC_MUTANTS, nic_campaign

    problem = nic_campaign(seed, NIC_STEPS)
    if problem is not None:
        return Outcome(False, NIC_STEPS, problem)
    survivors = [name for name, nic in NIC_MUTANTS.items() if nic_campaign(seed, NIC_STEPS, nic) is None]
    return Outcome(not survivors, NIC_STEPS, f"broken NICs not caught: {', '.join(survivors)}" if survivors else "")


def _guards(seed: int) -> Outcome:
    """The probes of :mod:`memoracle.machine.guards_check` (the seed changes nothing:
    each is one request), then its mutants."""
    from memoracle.machine.guards_check import GUARD_MUTANTS, guard_campaign

    probes, problem = guard_campaign()
    if problem is not None:
        return Outcome(False, probes, problem)
    survivors = [name for name, kit in GUARD_MUTANTS.items() if guard_campaign(kit)[1] is None]
    report = f"guard mutants not caught: {', '.join(survivors)}" if survivors else ""
    return Outcome(not survivors, probes + len(GUARD_MUTANTS), report)


MACHINE_CHECKS: list[Check] = [
    Check(
        "machine",
        "mmu-translation",
        "MMU translations equal spec.paging.walk; invariants after every step",
        _mmu,
        MMU_SEEDS,
    ),
    Check(
        "machine",
        "persistency-adr",
        "SCM crash images equal the spec's (ADR), random programs",
        _persistency(PersistMode.ADR),
        PERSISTENCY_SEEDS,
    ),
    Check(
        "machine",
        "persistency-eadr",
        "SCM crash images equal the spec's (eADR), random programs",
        _persistency(PersistMode.EADR),
        PERSISTENCY_SEEDS,
    ),
    Check(
        "machine",
        "persistency-mutants",
        "every broken SCM emulator is caught by the comparison",
        _persistency_mutants,
    ),
    Check(
        "machine",
        "persistency-sampled",
        "sampled crash images are allowed, distinct, ordered; reboot into one holds it",
        _persistency_sampled,
        PERSISTENCY_SEEDS,
    ),
    Check(
        "machine",
        "litmus",
        "every outcome of SB, MP, store forwarding, coherence is the model's; broken cores caught",
        _litmus,
    ),
    Check(
        "machine",
        "nic",
        "NIC deliveries in order, once, by the bound core, under reconfiguration; broken NICs caught",
        _nic,
        NIC_SEEDS,
    ),
    Check(
        "machine",
        "guards",
        "every documented refusal is made and changes nothing; guard mutants caught",
        _guards,
    ),
]
