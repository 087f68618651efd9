"""The simulated Figure 3 as PNG files (matplotlib, Agg), laid out like the paper's.

One file per machine and load, ``sphinx_figure3_<machine>_<open|closed>.png``: one row per IRQ configuration
((a) irqbalance on, no affinity; (b) irqbalance off, no affinity; (c) affinity to
dedicated cores), and in each row, from left to right, i) p99 read latency against
concurrent connections, ii) p99 update latency against connections, iii) the read
latency percentiles at 288 connections, iv) the update latency percentiles at 288
connections — Sphinx and the memcached-style design in each panel. The title names the
machine, the load and the requests per point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from memoracle.sphinx.sim.engine import PERCENTILES, percentile_label  # noqa: E402
from memoracle.sphinx.sim.experiment import CURVE_CONNECTIONS, Grid  # noqa: E402
from memoracle.sphinx.sim.machines import IRQ_CONFIG_TITLES, MACHINES  # noqa: E402

STYLE = {"sphinx": {"color": "tab:blue", "marker": "o", "label": "Sphinx"},
         "memcached": {"color": "tab:red", "marker": "s", "label": "memcached-style"}}  # fmt: skip


def figure_name(machine: str, loop: str = "open") -> str:
    """The file name of ``machine``'s figure under ``loop``."""
    return f"sphinx_figure3_{machine}_{loop}.png"


def write_figures(directory: Path, points: Sequence[dict[str, Any]]) -> list[Path]:
    """Write one figure per machine present in ``points`` into ``directory``; their paths."""
    grid = Grid(points)
    paths = []
    for machine in grid.machines():
        connections = grid.connections(machine)
        curve_at = CURVE_CONNECTIONS if CURVE_CONNECTIONS in connections else connections[-1]
        configs = [c for c in IRQ_CONFIG_TITLES if any(p["irq_config"] == c and p["machine"] == machine for p in points)]
        figure, axes = plt.subplots(len(configs), 4, figsize=(17, 3.6 * len(configs)), squeeze=False)
        for row, config in enumerate(configs):
            for col, workload in enumerate(("read", "update")):
                ax = axes[row][col]
                for design, style in STYLE.items():
                    if not grid.has(machine, design, workload, config, connections[0]):
                        continue
                    ax.plot(connections, [grid.p(machine, design, workload, config, n) for n in connections], **style)
                ax.set(xlabel="concurrent connections", ylabel="p99 latency (µs)", ylim=(0, None))
                ax.set_title(f"({'abc'[row]}) p99 {workload}: {IRQ_CONFIG_TITLES[config]}", fontsize=9)
                ax.legend(fontsize=8)
                ax = axes[row][col + 2]
                labels = [percentile_label(s) for s in PERCENTILES]
                for design, style in STYLE.items():
                    if not grid.has(machine, design, workload, config, curve_at):
                        continue
                    ax.plot(range(len(labels)), [grid.p(machine, design, workload, config, curve_at, label)
                                                 for label in labels], **style)  # fmt: skip
                ax.set_xticks(range(len(labels)), labels)
                ax.set(xlabel="percentile", ylabel=f"{workload} latency (µs)", ylim=(0, None))
                ax.set_title(f"({'abc'[row]}) {workload} percentiles at {curve_at} connections", fontsize=9)
                ax.legend(fontsize=8)
        sample = next(p for p in points if p["machine"] == machine)
        load = (f"Poisson arrivals, {sample['rate_per_connection']:,.0f} requests/s per connection"
                if sample.get("loop", "open") == "open" else "closed loop, one request in flight per connection")
        figure.suptitle(f"Simulated Figure 3 — {MACHINES[machine].title}; {load}, "
                        f"{sample['requests']:,} requests per point", fontsize=11)  # fmt: skip
        figure.tight_layout()
        path = directory / figure_name(machine, sample.get("loop", "open"))
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


__all__ = ["figure_name", "write_figures"]
