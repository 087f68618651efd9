"""The SPSC figures: checkers, explorer, and a history checked end to end from its file.

- ``spsc.fast_check_1m_seconds``: the fast checker on a 1,000,000-operation history
  (capacity 8, one producer, one consumer, random overlapping intervals), history in
  memory; baseline: a plain-Python dynamic program over (pushes done, pops done) on the
  same history, timed in the same run; ratio = fast ÷ baseline.
- ``spsc.fast_check_1m_peak_mib``: peak Python heap (tracemalloc) while checking it.
- ``spsc.generic_check_{1k,10k,100k}_seconds``: the generic Wing–Gong–Lowe checker.
- ``spsc.explorer_executions_per_second`` and ``spsc.explorer_executions_2x2_{sc,tso,weak}``:
  exhaustive exploration of 2 pushes + 2 pops (capacity 1) with the fences the tolerant
  criterion needs on each model (none, none, release on the tail).
- ``--quick`` measures smaller sizes under their own names (``..._100k_...``; SC only
  for the explorer), so that a quick run never passes for the real figure.
- ``spsc.end_to_end_10m_seconds``: read a 10,000,000-operation file and check it (the
  file is written first, untimed); ``..._read_seconds`` is the reading part alone.
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
import time
import tracemalloc
from typing import Callable

from benchmarks.common import Figure
from impl.cpu_emu import Model
from impl.spsc import Fences
from memoracle.spsc.interleave import Scenario, explore
from memoracle.spsc.histories import simulated_history
from spec.history import History, header_line, read_history
from spec.linearizability import check_linearizable
from spec.spsc_fast import check_spsc, split_threads
from spec.spsc_model import Criterion, QueueSpec


def _seconds(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def dp_baseline(history: History) -> bool:
    """The plain dynamic program: reachable nodes (i pushes done, j pops done), row by
    row, one node and one edge at a time (strict criterion). The reference speed the
    fast checker must beat."""
    p, c = split_threads(history)
    m, k, cap = len(p.rows), len(c.rows), history.capacity
    pushed = [p.values[i] for i in range(m) if p.oks[i]]
    popped = [c.values[j] for j in range(k) if c.oks[j]]
    if popped != pushed[: len(popped)]:
        return False
    sp = [0] * (m + 1)
    for i in range(m):
        sp[i + 1] = sp[i] + p.oks[i]
    sc = [0] * (k + 1)
    for j in range(k):
        sc[j + 1] = sc[j] + c.oks[j]
    lo_ptr = hi_ptr = 0
    row = {0}
    for r in range(m + 1):
        frontier = sorted(row)
        reach = set(frontier)
        for j in frontier:  # consumer moves inside the row, node by node
            while j < k and (j + 1) not in reach:
                size = sp[r] - sc[j]
                if (c.oks[j] and size < 1) or (not c.oks[j] and size != 0):
                    break
                j += 1
                reach.add(j)
        if r == m:
            return k in reach
        while lo_ptr < k and c.rets[lo_ptr] < p.calls[r]:
            lo_ptr += 1
        while hi_ptr < k and c.calls[hi_ptr] <= p.rets[r]:
            hi_ptr += 1
        row = set()
        for j in reach:
            if lo_ptr <= j <= hi_ptr:
                size = sp[r] - sc[j]
                if (p.oks[r] and size < cap) or (not p.oks[r] and size == cap):
                    row.add(j)
        if not row:
            return False
    return False


def fast_check(quick: bool) -> list[Figure]:
    size, label = (100_000, "100k") if quick else (1_000_000, "1m")
    history = simulated_history(1, size, 8)
    assert check_spsc(history).ok and dp_baseline(history)
    fast = _seconds(lambda: check_spsc(history), 2 if quick else 3)
    base = _seconds(lambda: dp_baseline(history), 1)
    tracemalloc.start()
    check_spsc(history)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return [
        {"name": f"spsc.fast_check_{label}_seconds", "value": fast, "unit": "s", "baseline": base, "ratio": fast / base},
        {"name": f"spsc.fast_check_{label}_peak_mib", "value": peak / 2**20, "unit": "MiB"},
    ]


def generic_check(quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    sizes = ((1_000, "1k"), (10_000, "10k")) if quick else ((1_000, "1k"), (10_000, "10k"), (100_000, "100k"))
    for size, label in sizes:
        ops = simulated_history(2, size, 8).operations()
        seconds = _seconds(lambda: check_linearizable(ops, QueueSpec(8)), 1 if quick or size > 10_000 else 3)
        figures.append({"name": f"spsc.generic_check_{label}_seconds", "value": seconds, "unit": "s"})
    return figures


def explorer(quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    needed = {Model.SC: Fences(), Model.TSO: Fences(), Model.WEAK: Fences.of(["producer_release_tail"])}
    if quick:
        needed = {Model.SC: Fences()}
    total_runs, total_seconds = 0, 0.0
    for model, fences in needed.items():
        started = time.perf_counter()
        result = explore(Scenario(model, fences=fences, capacity=1, start=0), Criterion.TOLERANT)
        total_seconds += time.perf_counter() - started
        assert result.ok and result.exhausted
        total_runs += result.executions
        figures.append(
            {"name": f"spsc.explorer_executions_2x2_{model.value}", "value": result.executions, "unit": "executions"}
        )
    figures.insert(0, {"name": "spsc.explorer_executions_per_second", "value": total_runs / total_seconds, "unit": "executions/s"})
    return figures


def write_simulated_file(path: str, operations: int, capacity: int, seed: int) -> None:
    """Stream a simulated history (as :func:`simulated_history`) to ``path`` in the
    writer's compact form, without holding it in memory."""
    rng = random.Random(seed)
    rand = rng.randrange
    queue: list[int] = []
    first = 0
    counts = [operations - operations // 2, operations // 2]
    clock = [2 * rand(1, 4), 1 + 2 * rand(1, 4)]
    done = [0, 0]
    ident = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write(header_line(capacity) + "\n")
        pending: list[tuple[int, int, int] | None] = [None, None]
        lines = []
        while done[0] < counts[0] or done[1] < counts[1]:
            for t in (0, 1):
                if pending[t] is None and done[t] < counts[t]:
                    call = clock[t]
                    lin = call + 2 * rand(1, 5)
                    ret = lin + 2 * rand(1, 5)
                    clock[t] = ret + 2 * rand(1, 4)
                    pending[t] = (call, lin, ret)
            live = [t for t in (0, 1) if pending[t] is not None]
            t = min(live, key=lambda x: pending[x][1])  # type: ignore[index]
            call, _, ret = pending[t]  # type: ignore[misc]
            pending[t] = None
            if t == 0:
                value = done[0]
                ok = len(queue) - first < capacity
                if ok:
                    queue.append(value)
                lines.append(f'{{"id":{ident},"thread":"producer","kind":"push","arg":{value},'
                             f'"result":{"true" if ok else "false"},"call":{call},"return":{ret}}}\n')
            else:
                if len(queue) > first:
                    result = str(queue[first])
                    first += 1
                    if first > 4096:
                        del queue[:first]
                        first = 0
                else:
                    result = "null"
                lines.append(f'{{"id":{ident},"thread":"consumer","kind":"pop","arg":null,'
                             f'"result":{result},"call":{call},"return":{ret}}}\n')
            done[t] += 1
            ident += 1
            if len(lines) >= 65536:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


def end_to_end(quick: bool) -> list[Figure]:
    operations, label = (100_000, "100k") if quick else (10_000_000, "10m")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "history.jsonl")
        write_simulated_file(path, operations, 8, 3)
        gc.collect()
        started = time.perf_counter()
        history = read_history(path)
        read_s = time.perf_counter() - started
        ok = check_spsc(history).ok
        seconds = time.perf_counter() - started
        assert ok and len(history) == operations
        del history
    return [
        {"name": f"spsc.end_to_end_{label}_seconds", "value": seconds, "unit": "s"},
        {"name": f"spsc.end_to_end_{label}_read_seconds", "value": read_s, "unit": "s"},
    ]


def spsc_figures(quick: bool) -> list[Figure]:
    """Every SPSC figure."""
    return [*fast_check(quick), *generic_check(quick), *explorer(quick), *end_to_end(quick)]
