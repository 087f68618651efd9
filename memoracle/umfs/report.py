"""``memoracle report``: pictures of what was measured.

For now: UMFS's open cost against file size (the paper's Fig. "mapping time"). The
figures come from a ``bench-results.json`` written by ``python -m benchmarks`` when it
holds the ``umfs.open_*`` figures (4 KiB … 256 MiB); otherwise they are measured afresh
with the quick sizes (4 KiB, 1 MiB, 16 MiB; 5 repeats). The plot says which, in its
title. Writes PNG files (matplotlib, Agg backend).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

SIZE_LABELS = {"4k": 4 << 10, "64k": 64 << 10, "1m": 1 << 20, "16m": 16 << 20, "256m": 256 << 20}
#: A bench-results file is a few KiB; anything past this is not one.
MAX_RESULTS_BYTES = 16 << 20
#: One plotted figure: ``{"value": …, "baseline": …}``.
Figures = dict[str, dict[str, float]]


class ResultsFormatError(ValueError):
    """A results file that is not what ``python -m benchmarks`` writes (says why)."""


def _number(entry: dict[str, object], key: str, where: str, *, positive: bool = False) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultsFormatError(f"{where}: {key!r} is not a finite number")
    if positive and value <= 0:
        raise ResultsFormatError(f"{where}: {key!r} is {value}, not a positive number (the plot is logarithmic)")
    return float(value)


def read_open_figures(path: Path) -> Figures | None:
    """The ``umfs.open_*`` figures of a bench-results file (a JSON list of
    ``{"name", "value", "unit"}`` objects, ``"baseline"`` where compared), or ``None``
    if it has none. :class:`ResultsFormatError` if the file is not such a list;
    :class:`OSError` if it cannot be read. Reads at most :data:`MAX_RESULTS_BYTES`."""
    with path.open("rb") as handle:
        data = handle.read(MAX_RESULTS_BYTES + 1)
    if len(data) > MAX_RESULTS_BYTES:
        raise ResultsFormatError(f"larger than {MAX_RESULTS_BYTES >> 20} MiB")
    try:
        entries = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ResultsFormatError(f"not UTF-8 (byte {error.start})") from None
    except (json.JSONDecodeError, RecursionError) as error:
        where = f" (line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise ResultsFormatError(f"not JSON{where}") from None
    if not isinstance(entries, list):
        raise ResultsFormatError(f"expected a JSON list of figures, found {type(entries).__name__}")
    figures: Figures = {}
    for index, entry in enumerate(entries):
        where = f"figure {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ResultsFormatError(f"{where} is not an object with a \"name\"")
        name = entry["name"]
        value = _number(entry, "value", f"{where} ({name})")
        if name.startswith(("umfs.open_us_", "umfs.open_pte_writes_")):
            figures[name] = {
                "value": _number(entry, "value", f"{where} ({name})", positive=True),
                "baseline": _number(entry, "baseline", f"{where} ({name})", positive=True),
            }
    return figures or None


def measure_open_figures() -> Figures:
    """Measure the quick sizes afresh (the plot's fallback)."""
    from memoracle.umfs.open_cost import OPEN_SIZES_QUICK, open_cost, size_label

    figures: Figures = {}
    for row in open_cost(OPEN_SIZES_QUICK, repeat=5):
        label = size_label(int(row["size"]))
        figures[f"umfs.open_us_{label}"] = {"value": row["umfs_seconds"] * 1e6, "baseline": row["baseline_seconds"] * 1e6}
        figures[f"umfs.open_pte_writes_{label}"] = {"value": row["umfs_pte_writes"], "baseline": row["baseline_pte_writes"]}
    return figures


def _rows(figures: Figures) -> list[tuple[int, float, float, float, float]]:
    """``(size, umfs_us, baseline_us, umfs_pte_writes, baseline_pte_writes)`` per size."""
    rows = []
    for label, size in SIZE_LABELS.items():
        time_figure = figures.get(f"umfs.open_us_{label}")
        writes_figure = figures.get(f"umfs.open_pte_writes_{label}")
        if time_figure and writes_figure:
            rows.append((size, time_figure["value"], time_figure["baseline"], writes_figure["value"], writes_figure["baseline"]))
    return rows


def umfs_open_plot(output: Path, figures: Figures | None, source: str = "") -> tuple[Path, str]:
    """Plot open time and PTE writes against file size into ``output``; measure first if
    ``figures`` is ``None``. Returns the PNG's path and how the figures were obtained
    (also written in the plot's title)."""
    if figures is None:
        figures = measure_open_figures()
        source = "measured now by memoracle report: quick sizes 4 KiB-16 MiB, 5 repeats"
    elif not source:
        source = "from python -m benchmarks"
    rows = _rows(figures)
    sizes = [r[0] / 1024 for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    left.loglog(sizes, [r[1] for r in rows], "o-", label="UMFS open (splice two PML4 entries: file, U-Log)")
    left.loglog(sizes, [r[2] for r in rows], "s--", label="mmap-style, page by page")
    left.set_xlabel("file size (KiB)")
    left.set_ylabel("time to map (µs, emulated MMU)")
    left.set_title("Mapping time")
    left.legend()
    right.loglog(sizes, [r[3] for r in rows], "o-", label="UMFS")
    right.loglog(sizes, [r[4] for r in rows], "s--", label="mmap-style")
    right.set_xlabel("file size (KiB)")
    right.set_ylabel("page-table entries written")
    right.set_title("Entry writes per open")
    right.legend()
    fig.suptitle(f"UMFS: O(1) file mapping on the emulated MMU\n({source})", fontsize=11)
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    path = output / "umfs_open_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, source
