"""Cores with store buffers over the emulated physical memory, driven by a scheduler.

A core runs a *program*: a generator that yields one :data:`Request` per shared-memory
access (:class:`Load`, :class:`Store`, :class:`Fence`) or clock read (:class:`Stamp`)
and receives the loaded value (or the stamp) back. Nothing happens until a scheduler
picks an :class:`Action`: ``("step", core)`` performs that core's pending request;
``("drain", core, addr)`` moves a buffered store into memory. The emulator never
chooses: :meth:`CpuEmu.enabled` lists what may happen next and :meth:`CpuEmu.perform`
does one of them, so an explorer controls every interleaving and every drain.

Memory models (where real hardware leaves freedom, the choice made here):

- ``SC``: a store writes memory at once; there is no buffer.
- ``TSO`` (x86-TSO): a store enters the core's FIFO store buffer; only the oldest entry
  may drain; a load reads the newest buffered store to the same address if any
  (store-to-load forwarding), else memory. A full fence (``mfence``) can run only when
  the buffer is empty. Release stores and acquire loads are plain accesses (TSO gives
  their ordering for free).
- ``WEAK`` (PSO-like): as TSO, but the oldest entry *for each address* may drain, so
  stores to different addresses become visible out of order. A *release* store drains
  only when it is the oldest entry of its buffer (every earlier store is visible
  first). Loads are performed in program order when the core executes them, so an
  acquire load is the same as a plain load in this model; only store-store order is
  weakened.

Memory is a :class:`impl.phys_mem.Machine`: every load and drain is an aligned 8-byte
access to its physical memory. Time is virtual: :attr:`CpuEmu.clock` counts performed
actions, and a :class:`Stamp` request returns the clock, so histories are deterministic.

Independence (for partial-order reduction): :meth:`CpuEmu.footprint` gives each enabled
action's effect on shared state — reads and writes of addresses; a buffered store has
none; a return stamp "writes" and a call stamp "reads" the virtual location :data:`TIME`,
so that a call and a return of different cores keep their order (which decides real-time
precedence), while two calls or two returns commute. Two actions of different cores
commute when their footprints do not conflict (same address, one of them a write, except
two writes of ``TIME``); actions of one core never commute.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generator, Union

from impl.phys_mem import Machine


class Model(enum.Enum):
    """The memory model of every core of a :class:`CpuEmu`."""

    SC = "sc"
    TSO = "tso"
    WEAK = "weak"


@dataclass(frozen=True)
class Load:
    """An aligned 8-byte load; ``acquire`` marks an acquire load."""

    addr: int
    acquire: bool = False


@dataclass(frozen=True)
class Store:
    """An aligned 8-byte store of ``value``; ``release`` marks a release store."""

    addr: int
    value: int
    release: bool = False


@dataclass(frozen=True)
class Fence:
    """A full fence: waits until the core's store buffer is empty."""


@dataclass(frozen=True)
class Stamp:
    """Read the virtual clock to stamp an operation's call (``is_return`` false) or
    return."""

    is_return: bool = False


Request = Union[Load, Store, Fence, Stamp]
#: A program: yields requests, receives the loaded value / the stamp / ``None``.
Program = Generator[Request, Union[int, None], object]
#: ``("step", core, 0)`` or ``("drain", core, addr)``.
Action = tuple[str, int, int]
#: A footprint: ``(address, is_write)`` pairs.
Footprint = tuple[tuple[int, bool], ...]

#: The virtual address a :class:`Stamp` writes, so that stamps are mutually ordered.
TIME = -1
_MASK64 = (1 << 64) - 1


@dataclass
class _Entry:
    addr: int
    value: int
    release: bool


@dataclass
class Core:
    """A core: its program, its pending request, its store buffer and its result."""

    ident: int
    program: Program
    pending: Request | None = None
    buffer: list[_Entry] = field(default_factory=list)
    result: object = None

    @property
    def finished(self) -> bool:
        """Whether the program has returned."""
        return self.pending is None


class CpuEmu:
    """Cores over one :class:`Machine`'s physical memory, under one memory model."""

    def __init__(self, machine: Machine, model: Model) -> None:
        self.machine = machine
        self.model = model
        self.cores: list[Core] = []
        self.clock = 0

    def spawn(self, program: Program) -> int:
        """Add a core running ``program`` (started up to its first request)."""
        core = Core(len(self.cores), program)
        self.cores.append(core)
        self._advance(core, None, first=True)
        return core.ident

    def _advance(self, core: Core, value: int | None, first: bool = False) -> None:
        try:
            core.pending = next(core.program) if first else core.program.send(value)
        except StopIteration as stop:
            core.pending = None
            core.result = stop.value

    # -- what may happen ---------------------------------------------------------------
    def drainable(self, core: Core) -> list[int]:
        """Addresses whose oldest buffered store may drain now (in buffer order)."""
        if not core.buffer:
            return []
        if self.model is Model.TSO:
            return [core.buffer[0].addr]
        seen: set[int] = set()
        out = []
        for position, entry in enumerate(core.buffer):
            if entry.addr in seen:
                continue
            seen.add(entry.addr)
            if entry.release and position != 0:
                continue
            out.append(entry.addr)
        return out

    def enabled(self) -> list[Action]:
        """Every action that may be performed now: steps first, then drains."""
        actions: list[Action] = []
        for core in self.cores:
            if core.pending is not None and not (isinstance(core.pending, Fence) and core.buffer):
                actions.append(("step", core.ident, 0))
        for core in self.cores:
            actions.extend(("drain", core.ident, addr) for addr in self.drainable(core))
        return actions

    def footprint(self, action: Action) -> Footprint:
        """The shared locations ``action`` reads or writes (see the module docstring)."""
        kind, ident, addr = action
        if kind == "drain":
            return ((addr, True),)
        request = self.cores[ident].pending
        if isinstance(request, Load):
            return ((request.addr, False),)
        if isinstance(request, Store) and self.model is Model.SC:
            return ((request.addr, True),)
        if isinstance(request, Stamp):
            return ((TIME, request.is_return),)
        return ()

    @property
    def finished(self) -> bool:
        """Every program returned and every buffer drained."""
        return all(c.pending is None and not c.buffer for c in self.cores)

    # -- doing it -------------------------------------------------------------------------
    def perform(self, action: Action) -> str:
        """Perform an enabled ``action``; return a one-line description of what it did."""
        kind, ident, addr = action
        core = self.cores[ident]
        self.clock += 1
        if kind == "drain":
            for position, entry in enumerate(core.buffer):
                if entry.addr == addr:
                    del core.buffer[position]
                    self.machine.write_u64(entry.addr, entry.value)
                    return f"core {ident}: drain [{entry.addr:#x}] = {entry.value}"
            raise ValueError(f"core {ident} has no buffered store to {addr:#x}")
        request = core.pending
        if request is None:
            raise ValueError(f"core {ident} has finished")
        if isinstance(request, Load):
            value = self._load(core, request.addr)
            self._advance(core, value)
            tag = " (acquire)" if request.acquire else ""
            return f"core {ident}: load [{request.addr:#x}] -> {value}{tag}"
        if isinstance(request, Store):
            tag = " (release)" if request.release else ""
            if self.model is Model.SC:
                self.machine.write_u64(request.addr, request.value & _MASK64)
                text = f"core {ident}: store [{request.addr:#x}] = {request.value}{tag}"
            else:
                core.buffer.append(_Entry(request.addr, request.value & _MASK64, request.release))
                text = f"core {ident}: store [{request.addr:#x}] = {request.value}{tag} (buffered)"
            self._advance(core, None)
            return text
        if isinstance(request, Fence):
            if core.buffer:
                raise ValueError(f"core {ident}: fence with a non-empty store buffer")
            self._advance(core, None)
            return f"core {ident}: fence"
        stamp = self.clock
        self._advance(core, stamp)
        return f"core {ident}: stamp {stamp}"

    def _load(self, core: Core, addr: int) -> int:
        for entry in reversed(core.buffer):
            if entry.addr == addr:
                return entry.value
        return self.machine.read_u64(addr)

    def check_invariants(self) -> None:
        """Assert: SC cores never buffer; a finished core's buffer only drains; every
        buffered store is an aligned 8-byte store to backed memory."""
        for core in self.cores:
            if self.model is Model.SC:
                assert not core.buffer, f"core {core.ident} buffers a store under SC"
            for entry in core.buffer:
                assert entry.addr % 8 == 0, f"unaligned buffered store at {entry.addr:#x}"
                assert 0 <= entry.value <= _MASK64
                self.machine.read_u64(entry.addr)  # raises BusError if unbacked
