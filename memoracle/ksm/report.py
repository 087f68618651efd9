"""``memoracle ksm report``: the paper's experiments as PNG plots (matplotlib, Agg).

Three plots from one guest-like capture (:func:`memoracle.ksm.guest.capture_guests`):

- ``ksm_sharing_over_scans.png`` — ``pages_sharing`` after each full scan, stock and
  with lookahead (the same curve: lookahead never changes what is merged);
- ``ksm_comparisons_per_scan.png`` — full-page comparisons made in each full scan,
  stock and with lookahead (the saving is in the merging scan);
- ``ksm_exclusive_cache.png`` — host page-cache pages left after each full scan, without
  and with the exclusive host cache, and the double-cached pages before.

Each plot's title says what was captured (guests, pages, seed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from memoracle.ksm.guest import GuestCapture  # noqa: E402
from memoracle.ksm.paper import ExclusiveCacheResult, ScanSeries  # noqa: E402

PLOTS = ("ksm_sharing_over_scans.png", "ksm_comparisons_per_scan.png", "ksm_exclusive_cache.png")


def write_plots(directory: Path, capture: GuestCapture, stock: ScanSeries, lookahead: ScanSeries,
                cache: ExclusiveCacheResult) -> list[Path]:  # fmt: skip
    """Write the three plots into ``directory``; their paths."""
    label = f"{len(capture.corpus.processes)} guest-like processes, {capture.corpus.pages:,} pages"
    scans = list(range(len(stock.pages_sharing)))
    paths = [directory / name for name in PLOTS]

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(scans, stock.pages_sharing, marker="o", label="stock")
    axes.plot(scans, lookahead.pages_sharing, marker="x", linestyle="--", label="lookahead")
    axes.set(xlabel="full scans", ylabel="pages_sharing")
    axes.set_title(f"Sharing over full scans\n{label}", fontsize=10)
    axes.set_xticks(scans)
    axes.legend()
    figure.tight_layout()
    figure.savefig(paths[0], dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.4
    axes.bar([s - width / 2 for s in scans[1:]], stock.comparisons[1:], width, label="stock")
    axes.bar([s + width / 2 for s in scans[1:]], lookahead.comparisons[1:], width, label="lookahead")
    axes.set(xlabel="full scan", ylabel="full-page comparisons")
    axes.set_title(f"Comparisons per full scan\n{label}", fontsize=10)
    axes.set_xticks(scans[1:])
    axes.legend()
    figure.tight_layout()
    figure.savefig(paths[1], dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(scans, cache.off.host_cache, marker="o", label="host cache, stock")
    axes.plot(scans, cache.on.host_cache, marker="x", label="host cache, exclusive")
    axes.axhline(cache.host_pages - cache.double_cached_before, color="grey", linestyle=":",
                 label="pages not in any guest")  # fmt: skip
    axes.set(xlabel="full scans", ylabel="host page-cache pages")
    axes.set_title(f"Exclusive host cache: {cache.saved_pages:,} pages saved\n{label}", fontsize=10)
    axes.set_xticks(scans)
    axes.set_ylim(bottom=0)
    axes.legend()
    figure.tight_layout()
    figure.savefig(paths[2], dpi=110)
    plt.close(figure)
    return paths


__all__ = ["PLOTS", "write_plots"]
