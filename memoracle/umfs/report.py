"""``memoracle report``: pictures of what was measured.

For now: UMFS's open cost against file size (the paper's Fig. "mapping time"), from
``bench-results.json`` when it holds the per-size figures, else measured afresh.
Writes PNG files (matplotlib, Agg backend) and returns their paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

SIZE_LABELS = {"4k": 4 << 10, "64k": 64 << 10, "1m": 1 << 20, "16m": 16 << 20, "256m": 256 << 20}


def _open_rows(results: Path | None) -> list[tuple[int, float, float, float, float]]:
    """``(size, umfs_us, baseline_us, umfs_pte_writes, baseline_pte_writes)`` per size."""
    figures: dict[str, dict[str, float]] = {}
    if results is not None and results.exists():
        figures = {f["name"]: f for f in json.loads(results.read_text())}
    if not any(name.startswith("umfs.open_us_") for name in figures):
        from memoracle.umfs.open_cost import OPEN_SIZES_QUICK, open_cost, size_label

        figures = {}
        for row in open_cost(OPEN_SIZES_QUICK, repeat=5):
            label = size_label(int(row["size"]))
            figures[f"umfs.open_us_{label}"] = {
                "value": row["umfs_seconds"] * 1e6,
                "baseline": row["baseline_seconds"] * 1e6,
            }
            figures[f"umfs.open_pte_writes_{label}"] = {
                "value": row["umfs_pte_writes"],
                "baseline": row["baseline_pte_writes"],
            }
    rows = []
    for label, size in SIZE_LABELS.items():
        time_figure = figures.get(f"umfs.open_us_{label}")
        writes_figure = figures.get(f"umfs.open_pte_writes_{label}")
        if time_figure and writes_figure:
            rows.append(
                (
                    size,
                    time_figure["value"],
                    time_figure["baseline"],
                    writes_figure["value"],
                    writes_figure["baseline"],
                )
            )
    return rows


def umfs_open_plot(output: Path, results: Path | None) -> Path:
    """Plot open time and PTE writes against file size; return the PNG's path."""
    rows = _open_rows(results)
    sizes = [r[0] / 1024 for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.loglog(sizes, [r[1] for r in rows], "o-", label="UMFS open (splice one PML4 entry)")
    left.loglog(sizes, [r[2] for r in rows], "s--", label="mmap-style, page by page")
    left.set_xlabel("file size (KiB)")
    left.set_ylabel("time to map (µs)")
    left.set_title("Mapping time")
    left.legend()
    right.loglog(sizes, [r[3] for r in rows], "o-", label="UMFS")
    right.loglog(sizes, [r[4] for r in rows], "s--", label="mmap-style")
    right.set_xlabel("file size (KiB)")
    right.set_ylabel("page-table entries written")
    right.set_title("Entry writes per open")
    right.legend()
    fig.suptitle("UMFS: O(1) file mapping on the emulated MMU")
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    path = output / "umfs_open_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
