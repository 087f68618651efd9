"""The live kernel, the implementation and the model side by side, compared at every point.

:func:`run_live` applies each :class:`~memoracle.ksm.conformance.Op` of a sequence to a
:class:`~memoracle.ksm.live.LiveKsm` session, to :class:`impl.ksm.Ksm` (with
``chain_prune_ms`` 0, as the session sets the kernel) and to
:class:`spec.ksm_model.KsmModel`, and after every operation compares:

- **outcomes**: the same result or the same error (type and errno) on every side;
- **views**: every page of every mapping reads the same on every side;
- **counters**: every global counter of the kernel (``/sys/kernel/mm/ksm``) equals the
  implementation's, ``full_scans`` and ``pages_skipped`` included;
- **process counters**: every process's ``/proc/PID/ksm_stat`` equals the
  implementation's, and ``/proc/PID/ksm_merging_pages`` its ``ksm_merging_pages``;
- **sharing**: the same pages of registered ranges are present, the same ones are KSM
  pages or map the zero page, and they share frames the same way (frame numbers
  differ; which pages share one must not);
- **the model**: whenever it is exact (:meth:`~spec.ksm_model.KsmModel.exact`), every
  counter but the histories and (when it knows ksmd's list order) every process's
  counters equal the kernel's; ``full_scans`` equals the model's count while that is
  exact.

A difference is a *violation* unless a listed :class:`Deviation` explains it (each with
its reason); :data:`DEVIATIONS` lists those known today.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from impl.ksm import Ksm
from memoracle.ksm.conformance import Op
from memoracle.ksm.live import LiveKsm
from spec.ksm_api import COUNTERS, PAGE_SIZE, KnobError, KsmSnapshot, KsmSystem, MappingError, NotRunning, SegmentationFault
from spec.ksm_model import KsmModel
from spec.ksm_rules import validated_knob

HISTORY = ("full_scans", "pages_skipped")


@dataclass(frozen=True)
class Deviation:
    """A known difference between the kernel and memoracle: ``matches`` says whether a
    difference message is this one; ``reason`` why it is not a bug."""

    name: str
    reason: str
    matches: Callable[[str], bool]


#: The differences with the kernel that are understood and accepted (none today: every
#: difference found so far was fixed on memoracle's side).
DEVIATIONS: tuple[Deviation, ...] = ()

#: What a live comparison does not compare, and why (the kernel cannot show it, or a
#: real-time kernel cannot be driven through it deterministically).
NOT_COMPARED: tuple[tuple[str, str], ...] = (
    ("rmap items and stable nodes", "the kernel does not show them; their counts are compared through every counter"),
    ("the writable bit of private pages", "pagemap does not show it"),
    ("run_ksmd", "ksmd's time is real: only full_scans is paced to exact points"),
    ("lookahead, skip_page_cache, exclusive_host_cache, checksum jhash2", "research knobs the kernel does not have"),
    ("stable_node_chains_prune_millisecs 2000", "chain collapse would depend on real time: both sides use 0"),
    ("partial mprotect/madvise over a hole, faulting multi-page accesses, PROT_WRITE without PROT_READ",
     "the spec makes them all-or-nothing (and write-only pages unreadable) where the kernel applies the mapped "
     "part first (and x86 reads PROT_WRITE pages): LiveKsm checks such calls itself and never asks the kernel"),
    ("pages_skipped before the session", "the kernel never resets it: a session counts from its start"),
)


@dataclass
class Difference:
    """One difference at one point: where, what, and the deviation that explains it."""

    step: int
    op: str
    message: str
    deviation: str | None = None


@dataclass
class ScenarioResult:
    """The outcome of one sequence."""

    name: str
    steps: int
    points: int
    seconds: float
    differences: list[Difference] = field(default_factory=list)
    error: str | None = None

    @property
    def violations(self) -> list[Difference]:
        """Differences no deviation explains."""
        return [d for d in self.differences if d.deviation is None]

    def as_json(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return {
            "name": self.name, "steps": self.steps, "points": self.points, "seconds": round(self.seconds, 3),
            "violations": [vars(d) for d in self.violations],
            "deviations": [vars(d) for d in self.differences if d.deviation is not None],
            "error": self.error,
        }  # fmt: skip


def _outcome(system: KsmSystem, op: Op) -> tuple[str, object]:
    try:
        result = getattr(system, op.name)(*op.args, **dict(op.kwargs))
    except (KnobError, MappingError) as error:
        return "error", (type(error).__name__, error.errno)
    except (SegmentationFault, NotRunning) as error:
        return "error", (type(error).__name__, None)
    return "ok", result if op.name in ("read", "add_process", "mmap") else None


def _sharing(snapshot: KsmSnapshot) -> tuple[object, ...]:
    """The sharing structure of a snapshot, free of frame numbers."""
    by_frame: dict[int, list[tuple[int, int]]] = {}
    for page in snapshot.pages:
        if page.ksm:
            by_frame.setdefault(page.frame, []).append((page.pid, page.addr))
    groups = sorted(tuple(sorted(members)) for members in by_frame.values())
    present = tuple(sorted((p.pid, p.addr) for p in snapshot.pages))
    zero = tuple(sorted((p.pid, p.addr) for p in snapshot.pages if p.zero))
    return present, tuple(groups), zero


class LiveTrio:
    """The kernel, the implementation and the model, driven together."""

    def __init__(self, live: LiveKsm) -> None:
        self.live = live
        self.impl = Ksm()
        self.impl.chain_prune_ms = 0
        self.model = KsmModel()
        self.regions: list[tuple[int, int, int]] = []
        self.pids: list[int] = []

    def apply(self, op: Op) -> list[str]:
        """Apply ``op`` everywhere; the differences found (outcome, then the point)."""
        if op.name == "set_knob" and op.args[0] == "max_page_sharing":
            # The model cannot know pages_shared mid-history: judge its answer with the
            # kernel's counter and mapped KSM pages (as KsmPair does with the
            # implementation's), then tell it the outcome.
            pages_shared = self.live.counters()["pages_shared"]
            mapped = any(page.ksm for page in self.live.snapshot().pages)
            try:
                stored = validated_knob(self.model.knobs(), "max_page_sharing", op.args[1], pages_shared,
                                        ksm_pages_mapped=mapped)  # fmt: skip
                model: tuple[str, object] = ("ok", None)
            except KnobError as error:
                stored, model = None, ("error", ("KnobError", error.errno))
            got, impl = _outcome(self.live, op), _outcome(self.impl, op)
            if stored is not None and got[0] == "ok":
                self.model.set_knob_judged("max_page_sharing", stored, pages_shared=0)
        else:
            got = _outcome(self.live, op)
            impl = _outcome(self.impl, op)
            model = _outcome(self.model, op)
        problems = []
        if got != impl:
            problems.append(f"outcome: kernel {_short(got)}, implementation {_short(impl)}")
        if got != model:
            problems.append(f"outcome: kernel {_short(got)}, model {_short(model)}")
        if op.name == "add_process" and got[0] == "ok":
            assert isinstance(got[1], int)
            self.pids.append(got[1])
        if op.name == "mmap" and got[0] == "ok":
            assert isinstance(got[1], int) and isinstance(op.args[1], int) and isinstance(op.args[0], int)
            self.regions.append((op.args[0], got[1], op.args[1]))
        return problems + self.compare()

    def compare(self) -> list[str]:
        """Every comparison of the module docstring, now."""
        problems = []
        for pid, addr, npages in self.regions:
            for i in range(npages):
                where = addr + i * PAGE_SIZE
                read = Op("read", (pid, where, PAGE_SIZE))
                views = [_outcome(side, read) for side in (self.live, self.impl, self.model)]
                if not views[0] == views[1] == views[2]:
                    problems.append(f"view of pid {pid} at {where:#x}: kernel {_short(views[0])}, "
                                    f"implementation {_short(views[1])}, model {_short(views[2])}")  # fmt: skip
        kernel = self.live.counters()
        ours = self.impl.counters()
        for name in COUNTERS:
            if kernel[name] != ours[name]:
                problems.append(f"{name}: kernel {kernel[name]}, implementation {ours[name]}")
        for pid in self.pids:
            kstat, istat = self.live.process_counters(pid), self.impl.process_counters(pid)
            if kstat != istat:
                problems.append(f"pid {pid} ksm_stat: kernel {kstat}, implementation {istat}")
            if self.live.merging_pages_file(pid) != kstat["ksm_merging_pages"]:
                problems.append(f"pid {pid}: ksm_merging_pages file {self.live.merging_pages_file(pid)}, ksm_stat {kstat}")
        kshape, ishape = _sharing(self.live.snapshot()), _sharing(self.impl.snapshot())
        for label, in_kernel, in_impl in zip(("present pages", "KSM page groups", "zero-page mappings"), kshape, ishape):
            if in_kernel != in_impl:
                problems.append(f"{label}: kernel {_pages(in_kernel)}, implementation {_pages(in_impl)}")
        model = self.model
        if model.exact():
            predicted = model.current_prediction()
            for name, value in predicted.counters.items():
                if kernel[name] != value:
                    problems.append(f"{name}: kernel {kernel[name]}, model {value} (exact)")
            if model.process_counters_exact():
                for pid in self.pids:
                    if self.live.process_counters(pid) != predicted.process_counters[pid]:
                        problems.append(f"pid {pid}: kernel {self.live.process_counters(pid)}, model {predicted.process_counters[pid]}")
        if model.full_scans_exact() and kernel["full_scans"] != model.counters()["full_scans"]:
            problems.append(f"full_scans: kernel {kernel['full_scans']}, model {model.counters()['full_scans']}")
        return problems


def _short(outcome: tuple[str, object]) -> str:
    kind, value = outcome
    if isinstance(value, bytes):
        stripped = value.rstrip(b"\0")
        return f"{kind} {stripped[:6].hex() or '00'}{'..' if len(stripped) > 6 else ''} ({len(value)} bytes)"
    return f"{kind} {value!r}"


def _pages(value: object) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def _explain(message: str) -> str | None:
    for deviation in DEVIATIONS:
        if deviation.matches(message):
            return deviation.name
    return None


def run_live(name: str, ops: list[Op], *, lock_timeout: float = 300.0) -> ScenarioResult:
    """Run ``ops`` on a fresh live session and fresh implementation and model; every
    difference at every point. Raises :class:`~memoracle.ksm.live_sysfs.LiveUnavailable`
    or :class:`~memoracle.ksm.live_sysfs.LiveBusy` before anything ran."""
    started = time.monotonic()
    result = ScenarioResult(name, len(ops), 0, 0.0)
    with LiveKsm(lock_timeout=lock_timeout) as live:
        trio = LiveTrio(live)
        for step, op in enumerate(ops):
            for message in trio.apply(op):
                result.differences.append(Difference(step, str(op), message, _explain(message)))
            result.points += 1
            if result.violations:
                break
    result.seconds = time.monotonic() - started
    return result


__all__ = ["DEVIATIONS", "NOT_COMPARED", "Deviation", "Difference", "LiveTrio", "ScenarioResult", "run_live"]
