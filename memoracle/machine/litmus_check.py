"""Litmus tests of the emulated cores (:mod:`impl.cpu_emu`): every outcome, per model.

The SPSC explorer runs ring programs on the cores, but those programs never read back
their own buffered store, never store twice to one address, and never race two stores
against two loads. :func:`litmus_campaign` runs the classic litmus tests on two cores,
exhaustively (every interleaving of steps and store-buffer drains), and compares the set
of outcomes with the set each memory model allows:

- **SB** (store buffering): ``x = 1; r0 = y`` ‖ ``y = 1; r1 = x``: both loads may read 0
  under TSO and the weaker model, never under SC; with a fence after each store, never.
- **MP** (message passing): ``x = 1; flag = 1`` ‖ ``r0 = flag; r1 = x``: ``flag`` seen
  set and ``x`` not is allowed only under the weaker model (stores to different
  addresses drain out of order), and not with the ``flag`` store a release.
- **SF** (store forwarding): ``x = 1; r0 = x`` ‖ ``x = 2``: a core reads its own
  buffered store, so ``r0`` is 1 or 2, never 0, under every model.
- **CoRR** (coherence): ``x = 1; x = 2`` ‖ ``r0 = x; r1 = x``: the reader never sees
  ``x`` go back (``2`` then ``1``, or anything then ``0``).

Every step is followed by the cores' invariants; a run must end with every buffer
drained. It also asks for actions the cores refuse (a drain of an address with nothing
buffered, a step of a finished core, a fence over a non-empty buffer): each must raise
``ValueError``. :data:`CPU_MUTANTS` (cores without store forwarding; a TSO buffer that
drains out of order) must be caught.
"""

from __future__ import annotations

from typing import Callable

from impl.cpu_emu import Action, Core, CpuEmu, Fence, Load, Model, Program, Store
from impl.phys_mem import Machine

X, Y = 4096, 4096 + 64
Outcome = tuple[object, ...]
Threads = tuple[Callable[[], Program], ...]


def _store_load(store_at: int, load_at: int, fence: bool) -> Callable[[], Program]:
    def program() -> Program:
        yield Store(store_at, 1)
        if fence:
            yield Fence()
        value = yield Load(load_at)
        return value

    return program


def _mp_writer(release: bool) -> Callable[[], Program]:
    def program() -> Program:
        yield Store(X, 1)
        yield Store(Y, 1, release=release)
        return None

    return program


def _two_loads(first: int, second: int) -> Callable[[], Program]:
    def program() -> Program:
        a = yield Load(first)
        b = yield Load(second)
        return (a, b)

    return program


def _stores(*values: int) -> Callable[[], Program]:
    def program() -> Program:
        for value in values:
            yield Store(X, value)
        return None

    return program


def _forwarding() -> Program:
    yield Store(X, 1)
    value = yield Load(X)
    return value


_WEAK_ONLY = {Model.SC: False, Model.TSO: False, Model.WEAK: True}
_BUFFERED = {Model.SC: False, Model.TSO: True, Model.WEAK: True}
_NEVER = {Model.SC: False, Model.TSO: False, Model.WEAK: False}
_CORR = {(a, b) for a in (0, 1, 2) for b in (0, 1, 2) if b >= a}

#: name → (threads, the outcomes every model allows, the extra outcome, where it is allowed).
LITMUS: dict[str, tuple[Threads, set[Outcome], Outcome, dict[Model, bool]]] = {
    "SB": ((_store_load(X, Y, False), _store_load(Y, X, False)), {(0, 1), (1, 0), (1, 1)}, (0, 0), _BUFFERED),
    "SB+fences": ((_store_load(X, Y, True), _store_load(Y, X, True)), {(0, 1), (1, 0), (1, 1)}, (0, 0), _NEVER),
    "MP": ((_mp_writer(False), _two_loads(Y, X)), {(None, (0, 0)), (None, (0, 1)), (None, (1, 1))},
           (None, (1, 0)), _WEAK_ONLY),
    "MP+release": ((_mp_writer(True), _two_loads(Y, X)), {(None, (0, 0)), (None, (0, 1)), (None, (1, 1))},
                   (None, (1, 0)), _NEVER),
    "SF": ((_forwarding, _stores(2)), {(1, None), (2, None)}, (0, None), _NEVER),
    "CoRR": ((_stores(1, 2), _two_loads(X, X)), {(None, pair) for pair in _CORR}, (None, (2, 1)), _NEVER),
}  # fmt: skip


def outcomes(threads: Threads, model: Model, cpu_cls: type[CpuEmu] = CpuEmu) -> tuple[set[Outcome], str | None]:
    """Every outcome (the cores' results) of ``threads`` under ``model``, by depth-first
    replay of every sequence of enabled actions; and ``None`` or a problem (an invariant
    broken, a run that ends with a buffer not drained)."""
    found: set[Outcome] = set()

    def start(prefix: list[Action]) -> CpuEmu:
        cpu = cpu_cls(Machine(dram_size=4 * 4096), model)
        for thread in threads:
            cpu.spawn(thread())
        for action in prefix:
            cpu.perform(action)
        return cpu

    pending: list[list[Action]] = [[]]
    while pending:
        prefix = pending.pop()
        cpu = start(prefix)
        try:
            cpu.check_invariants()
        except AssertionError as error:
            return found, f"after {prefix}: {error}"
        actions = cpu.enabled()
        if not actions:
            if not cpu.finished:
                return found, f"after {prefix}: no action is enabled but a core has not finished"
            found.add(tuple(core.result for core in cpu.cores))
        pending.extend([*prefix, action] for action in actions)
    return found, None


def _refusals(cpu_cls: type[CpuEmu]) -> str | None:
    """The actions the cores refuse, each on a fresh pair of cores under TSO."""

    def fenced() -> Program:
        yield Store(X, 1)
        yield Fence()
        return None

    requests: list[tuple[str, Action, int]] = [
        ("a drain of an address with nothing buffered", ("drain", 0, Y), 0),
        ("a step of a finished core", ("step", 1, 0), 1),
        ("a fence over a non-empty store buffer", ("step", 0, 0), 1),
    ]
    for what, action, steps in requests:
        cpu = cpu_cls(Machine(dram_size=4 * 4096), Model.TSO)
        cpu.spawn(fenced())
        cpu.spawn(_stores()())  # finishes at once
        for _ in range(steps):
            cpu.perform(("step", 0, 0))
        try:
            cpu.perform(action)
        except ValueError:
            continue
        return f"{what}: performed, documented: ValueError"
    return None


def litmus_campaign(cpu_cls: type[CpuEmu] = CpuEmu) -> tuple[int, str | None]:
    """(test × model runs, ``None`` or the first problem): every litmus test under every
    model, outcomes compared with :data:`LITMUS`; then the refused actions."""
    runs = 0
    for name, (threads, always, extra, allowed) in LITMUS.items():
        for model in Model:
            got, problem = outcomes(threads, model, cpu_cls)
            runs += 1
            if problem is not None:
                return runs, f"{name} under {model.value}: {problem}"
            expected = always | ({extra} if allowed[model] else set())
            if got != expected:
                return runs, (f"{name} under {model.value}: outcomes {sorted(map(repr, got))}, "
                              f"the model allows {sorted(map(repr, expected))}")  # fmt: skip
    problem = _refusals(cpu_cls)
    return runs, problem


# ------------------------------------------------------------------ mutants


class NoStoreForwarding(CpuEmu):
    """A load reads memory even when its own core has a newer store buffered."""

    def _load(self, core: Core, addr: int) -> int:
        return self.machine.read_u64(addr)  # BUG: the core's buffer is not searched


class TsoDrainsAnyEntry(CpuEmu):
    """Under TSO any buffered store may drain first (the buffer is not FIFO)."""

    def drainable(self, core: Core) -> list[int]:
        if self.model is Model.TSO:
            return list(dict.fromkeys(entry.addr for entry in core.buffer))  # BUG
        return super().drainable(core)


#: Broken cores; :func:`litmus_campaign` must catch each.
CPU_MUTANTS: dict[str, type[CpuEmu]] = {
    "no_store_forwarding": NoStoreForwarding,
    "tso_drains_any_entry": TsoDrainsAnyEntry,
}

__all__ = ["CPU_MUTANTS", "LITMUS", "litmus_campaign", "outcomes"]
