"""The interleaving explorer: every execution of an SPSC ring on the emulated cores.

A :class:`Scenario` is a ring (variant, capacity, fences), a memory model and a
workload: the producer pushes ``1, 2, ..., pushes`` (one attempt each) while the consumer
makes ``pops`` attempts. Each operation is stamped with the virtual clock just before
its first access and just after its last, giving a history in the format of
:mod:`spec.history`; every complete execution's history is judged by the fast checker
(:func:`spec.spsc_fast.check_spsc`) under the chosen criterion.

Search strategies:

- :func:`explore`: exhaustive depth-first search over scheduling choices — which core
  steps next and which buffered store drains next — with **sleep sets** (Godefroid)
  over the emulator's footprints, so that of executions differing only in the order of
  commuting actions one is run; optionally under a **preemption bound** (CHESS): a
  schedule may switch away from a core that could continue at most ``bound`` times.
  Without a bound the search is complete: every history the machine can produce is
  checked. Executions are re-run from the start for every branch (stateless model
  checking), so programs may be ordinary generators.
- :func:`pct`: randomized PCT (Burckhardt et al.): random priorities for each core and
  each core's store buffer, and ``depth - 1`` random priority-change points; each run
  seeded on its own (:func:`pct_rng`), so that runs can be sharded
  (:mod:`memoracle.spsc.pct_campaign`).

A violation is reported with the schedule step by step and the history, and can be
replayed from its schedule (:func:`replay`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from impl.cpu_emu import TIME, Action, CpuEmu, Footprint, Model, Program, Stamp
from impl.phys_mem import Machine
from impl.spsc import Fences, SpscRing, Variant
from spec.history import History, Operation
from spec.spsc_fast import check_spsc
from spec.spsc_model import Criterion


#: Where the counters start by default: two below 2**64, so that ``tail`` wraps to 0 at
#: the second push and ``head`` at the second pop.
NEAR_WRAP = (1 << 64) - 2


@dataclass(frozen=True)
class Scenario:
    """A ring on a memory model with a producer/consumer workload. The defaults reach
    what a capacity of 1 and counters from 0 cannot: two slots indexed by masking the
    counters, and ``head``/``tail`` wrapping past 2**64 (``start`` =
    :data:`NEAR_WRAP`); exhaustive under TSO in about 29,000 executions. One more push
    (``pushes=3``) also fills the ring as ``tail`` wraps."""

    model: Model
    variant: Variant = "lamport"
    fences: Fences = Fences()
    capacity: int = 2
    pushes: int = 2
    pops: int = 2
    ring: type[SpscRing] = SpscRing
    start: int = NEAR_WRAP

    def describe(self) -> str:
        """One line naming everything that determines the executions."""
        on = ",".join(self.fences.enabled()) or "none"
        mutant = "" if self.ring is SpscRing else f" ring={self.ring.__name__}"
        begin = "" if self.start == 0 else f" start=2**64-{(1 << 64) - self.start}" if self.start > 1 << 63 else f" start={self.start}"
        return (
            f"model={self.model.value} variant={self.variant}{mutant} capacity={self.capacity} "
            f"pushes={self.pushes} pops={self.pops}{begin} fences={on}"
        )


@dataclass
class _Run:
    """One execution in progress: the CPU, the ring and the recorded operations."""

    cpu: CpuEmu
    ops: list[Operation] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def history(self, capacity: int) -> History:
        return History.from_trusted_operations(self.ops, capacity)


def _producer(ring: SpscRing, run: _Run, count: int) -> Program:
    for value in range(1, count + 1):
        call = yield Stamp()
        pushed = yield from ring.push(value)
        ret = yield Stamp(is_return=True)
        assert call is not None and ret is not None
        run.ops.append(Operation(len(run.ops), "producer", "push", value, pushed, call, ret))
    return None


def _consumer(ring: SpscRing, run: _Run, count: int) -> Program:
    for _ in range(count):
        call = yield Stamp()
        value = yield from ring.pop()
        ret = yield Stamp(is_return=True)
        assert call is not None and ret is not None
        run.ops.append(Operation(len(run.ops), "consumer", "pop", None, value, call, ret))
    return None


def start(scenario: Scenario) -> _Run:
    """A fresh execution of ``scenario``: the producer is core 0, the consumer core 1."""
    machine = Machine(dram_size=2 * 4096)
    ring = scenario.ring.allocate(machine, scenario.capacity, scenario.variant, scenario.fences, scenario.start)
    run = _Run(CpuEmu(machine, scenario.model))
    run.cpu.spawn(_producer(ring, run, scenario.pushes))
    run.cpu.spawn(_consumer(ring, run, scenario.pops))
    return run


@dataclass(frozen=True)
class Violation:
    """An execution whose history is not linearizable: schedule, log, history, reason."""

    scenario: Scenario
    criterion: Criterion
    schedule: tuple[Action, ...]
    log: tuple[str, ...]
    history: tuple[Operation, ...]
    reason: str

    def render(self) -> str:
        """The interleaving step by step, then the history, then why it is wrong."""
        lines = [
            f"{self.criterion.value} linearizability violated: {self.scenario.describe()}",
            "interleaving (core 0 = producer, core 1 = consumer):",
        ]
        lines += [f"  {n:3d}. {text}" for n, text in enumerate(self.log, start=1)]
        lines.append("history:")
        lines += [f"  {op.describe()}" for op in sorted(self.history, key=lambda o: o.call)]
        lines.append(f"why: {self.reason}")
        schedule = " ".join(f"{k[0]}{c}" + (f"@{a:#x}" if k == "drain" else "") for k, c, a in self.schedule)
        lines.append(f"replay: memoracle.spsc.interleave.replay(scenario, schedule) with schedule = {schedule}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ExploreResult:
    """How many complete executions were checked, how many branches the bound or the
    sleep sets cut, and the first violation (``None`` if every history was fine)."""

    executions: int
    pruned: int
    violation: Violation | None
    exhausted: bool

    @property
    def ok(self) -> bool:
        """No violation was found."""
        return self.violation is None


def _judge(run: _Run, scenario: Scenario, criterion: Criterion, schedule: Sequence[Action]) -> Violation | None:
    history = run.history(scenario.capacity)
    result = check_spsc(history, criterion)
    if result.ok:
        return None
    assert result.violation is not None
    return Violation(
        scenario, criterion, tuple(schedule), tuple(run.log), tuple(run.ops), result.violation.reason
    )


def replay(scenario: Scenario, schedule: Sequence[Action]) -> _Run:
    """Re-run ``scenario`` under exactly ``schedule`` (from a violation) and return it."""
    run = start(scenario)
    for action in schedule:
        if action not in run.cpu.enabled():
            raise ValueError(f"action {action} is not enabled at this point of the schedule")
        run.log.append(run.cpu.perform(action))
    return run


def _conflict(a: Footprint, b: Footprint) -> bool:
    """Same location, one a write — except two return stamps (``TIME`` writes), whose
    order decides no real-time precedence."""
    return any(x == y and (wa or wb) and not (x == TIME and wa and wb) for x, wa in a for y, wb in b)


def _independent(a: Action, fa: Footprint, b: Action, fb: Footprint) -> bool:
    return a[1] != b[1] and not _conflict(fa, fb)


@dataclass
class _Frame:
    enabled: list[Action]
    footprints: dict[Action, Footprint]
    sleep: dict[Action, Footprint]
    tried: list[Action]
    preemptions: int
    last_core: int | None


def _preempts(action: Action, frame: _Frame) -> bool:
    last = frame.last_core
    return (
        last is not None
        and ("step", last, 0) in frame.enabled
        and action != ("step", last, 0)
    )


def _candidates(frame: _Frame, bound: int | None) -> Iterator[Action]:
    for action in frame.enabled:
        if action in frame.sleep or action in frame.tried:
            continue
        if bound is not None and _preempts(action, frame) and frame.preemptions >= bound:
            continue
        yield action


def explore(
    scenario: Scenario,
    criterion: Criterion,
    *,
    bound: int | None = None,
    max_executions: int | None = None,
    reduction: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ExploreResult:
    """Check every execution of ``scenario`` (up to the preemption ``bound``); stop at the
    first violation. ``exhausted`` is false when ``max_executions`` cut the search.
    ``reduction=False`` turns the sleep sets off (every interleaving is run; for tests).
    ``progress(1)`` is called after each complete execution."""
    executions = pruned = 0
    frames: list[_Frame] = []
    schedule: list[Action] = []
    run = start(scenario)
    sleep: dict[Action, Footprint] = {}
    preemptions, last_core = 0, None
    while True:
        # extend the current execution as far as it goes
        while True:
            enabled = run.cpu.enabled()
            if not enabled:
                executions += 1
                if progress is not None:
                    progress(1)
                violation = _judge(run, scenario, criterion, schedule)
                if violation is not None:
                    return ExploreResult(executions, pruned, violation, False)
                break
            frame = _Frame(
                enabled,
                {a: run.cpu.footprint(a) for a in enabled},
                sleep,
                [],
                preemptions,
                last_core,
            )
            if not reduction:
                frame.sleep = {}
            choice = next(_candidates(frame, bound), None)
            if choice is None:
                pruned += 1
                break
            frames.append(frame)
            sleep, preemptions, last_core = _take(frame, choice)
            schedule.append(choice)
            run.log.append(run.cpu.perform(choice))
        if max_executions is not None and executions >= max_executions:
            return ExploreResult(executions, pruned, None, False)
        # backtrack to the deepest frame with an untried candidate
        while frames:
            frame = frames[-1]
            schedule.pop()
            alternative = next(_candidates(frame, bound), None)
            if alternative is not None:
                break
            frames.pop()
        else:
            return ExploreResult(executions, pruned, None, True)
        run = replay(scenario, schedule)
        sleep, preemptions, last_core = _take(frame, alternative)
        if not reduction:
            sleep = {}
        schedule.append(alternative)
        run.log.append(run.cpu.perform(alternative))


def _take(frame: _Frame, choice: Action) -> tuple[dict[Action, Footprint], int, int | None]:
    """Record ``choice`` as tried at ``frame``; the child's sleep set, preemptions, core."""
    mine = frame.footprints[choice]
    asleep = {**frame.sleep, **{a: frame.footprints[a] for a in frame.tried}}
    child_sleep = {a: f for a, f in asleep.items() if _independent(choice, mine, a, f)}
    frame.tried.append(choice)
    preemptions = frame.preemptions + (1 if _preempts(choice, frame) else 0)
    last_core = choice[1] if choice[0] == "step" else frame.last_core
    return child_sleep, preemptions, last_core


def pct_rng(seed: int, run: int) -> random.Random:
    """The random source of PCT run ``run`` of ``seed``: each run has its own, so runs can
    be split across shards (and machines) and still be the same runs."""
    return random.Random(f"pct/{seed}/{run}")


def pct(
    scenario: Scenario,
    criterion: Criterion,
    *,
    runs: int,
    depth: int = 3,
    seed: int = 0,
    first_run: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ExploreResult:
    """Randomized PCT: runs ``first_run`` … ``first_run + runs - 1``, each with random agent
    priorities and ``depth - 1`` priority-change points drawn from :func:`pct_rng`; agents
    are the cores and their store buffers. Stops at the first violation (``executions``
    then counts the runs up to and including it). ``progress(1)`` after each execution."""
    for n in range(first_run, first_run + runs):
        rng = pct_rng(seed, n)
        run = start(scenario)
        agents = [("step", 0), ("step", 1), ("drain", 0), ("drain", 1)]
        priority = {agent: rng.random() + depth for agent in agents}
        length_guess = 12 * (scenario.pushes + scenario.pops)
        changes = sorted(rng.sample(range(length_guess), min(depth - 1, length_guess)))
        schedule: list[Action] = []
        step = 0
        while True:
            enabled = run.cpu.enabled()
            if not enabled:
                break
            best = max(enabled, key=lambda a: (priority[(a[0], a[1])], -a[2]))
            if changes and step == changes[0]:
                changes.pop(0)
                priority[(best[0], best[1])] = -step  # below every initial priority
                best = max(enabled, key=lambda a: (priority[(a[0], a[1])], -a[2]))
            if best[0] == "drain":  # which drainable entry: random
                best = rng.choice([a for a in enabled if a[:2] == best[:2]])
            schedule.append(best)
            run.log.append(run.cpu.perform(best))
            step += 1
        if progress is not None:
            progress(1)
        violation = _judge(run, scenario, criterion, schedule)
        if violation is not None:
            return ExploreResult(n - first_run + 1, 0, violation, False)
    return ExploreResult(runs, 0, None, False)
