"""Checking a simulation from its trace, independently of how the simulator scheduled it.

:func:`check_trace` reads only the :class:`~memoracle.sphinx.sim.engine.Trace` a run
recorded (steps per core, lock holds, event times, answers) and reports every broken
invariant:

- **one thing at a time**: on every core, the steps' intervals do not overlap;
- **locks are exclusive**: on every lock, the holds do not overlap;
- **time never goes back**: event times are non-decreasing, and every step ends at or
  after it starts;
- **every request is answered once**: each request id is answered exactly once, at or
  after its arrival; nothing is answered that never arrived;
- **replies in order per connection**: a connection's requests are answered in their
  arrival order.

The simulator also raises :class:`~memoracle.sphinx.sim.engine.SimulationError` on the
cheap ones while it runs; this checker is what the mutants of
:mod:`memoracle.sphinx.sim.mutants` are caught by, since it does not trust the
simulator's own bookkeeping.
"""

from __future__ import annotations

from memoracle.sphinx.sim.engine import STEP_NAMES, Trace

#: At most this many violations are listed per invariant.
SHOWN = 3


def _overlaps(intervals: list[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    ordered = sorted(intervals)
    found = []
    for before, after in zip(ordered, ordered[1:]):
        if after[0] < before[1]:
            found.append((before, after))
    return found


def check_trace(trace: Trace) -> list[str]:
    """Every invariant broken in ``trace`` (empty when all hold), one line each."""
    problems: list[str] = []
    for core in sorted(trace.steps):
        steps = trace.steps[core]
        for start, end, kind, request in steps:
            if end < start:
                problems.append(f"core {core}: {STEP_NAMES.get(kind, kind)} step of request {request} ends at {end} before it starts at {start}")
        clashes = _overlaps([(start, end) for start, end, _, _ in steps])
        for before, after in clashes[:SHOWN]:
            problems.append(f"core {core} runs two things at once: steps [{before[0]}, {before[1]}) and [{after[0]}, {after[1]}) ns overlap")
        if len(clashes) > SHOWN:
            problems.append(f"core {core}: {len(clashes) - SHOWN} more overlapping steps")
    for lock in sorted(trace.holds):
        clashes = _overlaps([(grant, release) for grant, release, _ in trace.holds[lock]])
        for before, after in clashes[:SHOWN]:
            problems.append(f"lock {lock} held twice at once: [{before[0]}, {before[1]}) and [{after[0]}, {after[1]}) ns")
        if len(clashes) > SHOWN:
            problems.append(f"lock {lock}: {len(clashes) - SHOWN} more overlapping holds")
    times = trace.event_times
    backwards = [i for i in range(1, len(times)) if times[i] < times[i - 1]]
    for i in backwards[:SHOWN]:
        problems.append(f"virtual time went back at event {i}: {times[i - 1]} -> {times[i]} ns")
    requests = len(trace.arrival)
    seen = [0] * requests
    for r in trace.answered:
        if not 0 <= r < requests:
            problems.append(f"request {r} answered but it never arrived")
            continue
        seen[r] += 1
    twice = [r for r in range(requests) if seen[r] > 1]
    never = [r for r in range(requests) if seen[r] == 0]
    if twice:
        problems.append(f"{len(twice)} requests answered more than once (first: {twice[:SHOWN]})")
    if never:
        problems.append(f"{len(never)} requests never answered (first: {never[:SHOWN]})")
    early = [r for r in range(min(requests, len(trace.done))) if 0 <= trace.done[r] < trace.arrival[r]]
    if early:
        problems.append(f"{len(early)} requests answered before they arrived (first: {early[:SHOWN]})")
    last_answered: dict[int, int] = {}
    for r in trace.answered:
        if not 0 <= r < requests:
            continue
        conn = trace.connection[r]
        previous = last_answered.get(conn)
        if previous is not None and (trace.arrival[r], r) < (trace.arrival[previous], previous):
            problems.append(f"connection {conn}: request {r} answered after the later request {previous}")
            break
        last_answered[conn] = r
    return problems


__all__ = ["check_trace"]
