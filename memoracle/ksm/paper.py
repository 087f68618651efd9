"""The paper's experiments on a guest-like capture (:mod:`memoracle.ksm.guest`).

Each experiment loads the captured guests into fresh implementations
(:class:`impl.ksm.Ksm`), one mapping per guest with each page's guest kind, and scans
one full scan at a time; everything is deterministic for a given capture.

- :func:`lookahead_experiment` — comparisons with and without lookahead, the merged set
  unchanged (:func:`memoracle.ksm.study.study_corpus`).
- :func:`exclusive_cache_experiment` — the paper's Exp 6/7: the host's page cache holds
  the guests' files (the pages of the disk images the guests read) and some pages of its
  own. Double-cached pages (a host page-cache page whose content is also in a guest) and
  the memory saved, with the exclusive host cache off and on, and its scanning overhead
  (the extra comparisons its tree walks cost, over the stock run's).
- :func:`page_cache_experiment` — skipping guest page-cache pages: the comparisons saved
  against the sharing lost.
- :func:`scan_series` — per full scan, ``pages_sharing``, comparisons and the host cache's
  size, for the plots of ``memoracle ksm report``.
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.ksm import Ksm
from memoracle.ksm.guest import GuestCapture
from memoracle.ksm.study import StudyReport, implementation_for, study_corpus
from spec.ksm_api import PAGE_SIZE, RunMode

#: Full scans each run makes (the first stores checksums, the second merges, the rest
#: are steady).
SCANS = 4
#: Host-only page-cache pages, as a fraction of the files' pages.
HOST_ONLY_SHARE = 0.1


def load_guests(system: Ksm, capture: GuestCapture) -> int:
    """Load every guest (one registered mapping each, pages with their guest kinds);
    the number of pages written."""
    written = 0
    for process, kinds in zip(capture.corpus.processes, capture.kinds):
        pid = system.add_process()
        if not process.addresses:
            continue
        base = system.mmap(pid, len(process.addresses), kinds=kinds)
        system.madvise(pid, base, len(process.addresses), "MERGEABLE")
        for offset, content_id in enumerate(process.content_ids):
            system.write(pid, base + offset * PAGE_SIZE, capture.corpus.contents[content_id])
            written += 1
    return written


def _system(capture: GuestCapture, **knobs: object) -> Ksm:
    system = implementation_for(capture.corpus.pages * 2)()
    assert isinstance(system, Ksm)
    load_guests(system, capture)
    for name, value in knobs.items():
        system.set_knob(name, value)
    system.set_knob("run", RunMode.MERGE)
    return system


def host_cache_pages(capture: GuestCapture) -> list[bytes]:
    """What the host's page cache holds: every page of every file the guests may cache
    (their disk images), then host-only pages (a fixed pattern per index)."""
    pages: list[bytes] = []
    for file in capture.files:
        with open(file.path, "rb") as handle:
            data = handle.read(file.pages * PAGE_SIZE)
        data += bytes(file.pages * PAGE_SIZE - len(data))
        pages += [data[i * PAGE_SIZE : (i + 1) * PAGE_SIZE] for i in range(file.pages)]
    own = max(1, int(len(pages) * HOST_ONLY_SHARE))
    pages += [f"host-only page {i}".encode().ljust(PAGE_SIZE, b"\x5a") for i in range(own)]
    return pages


@dataclass(frozen=True)
class ScanSeries:
    """Per full scan (index 0 = before any): ``pages_sharing``, comparisons made in that
    scan, and host page-cache pages left."""

    pages_sharing: tuple[int, ...]
    comparisons: tuple[int, ...]
    host_cache: tuple[int, ...]


def scan_series(capture: GuestCapture, scans: int = SCANS, *, host: list[bytes] | None = None, **knobs: object) -> ScanSeries:
    """Run ``scans`` full scans with ``knobs`` (and ``host`` in the host cache); the
    series of :class:`ScanSeries`."""
    system = _system(capture, **knobs)
    for page in host or ():
        system.host_cache_insert(page)
    sharing, comparisons, cache = [system.counters()["pages_sharing"]], [0], [len(system.host_cache())]
    before = system.snapshot().comparisons
    for _ in range(scans):
        system.full_scans(1)
        now = system.snapshot().comparisons
        sharing.append(system.counters()["pages_sharing"])
        comparisons.append(now - before)
        cache.append(len(system.host_pages))
        before = now
    return ScanSeries(tuple(sharing), tuple(comparisons), tuple(cache))


def lookahead_experiment(capture: GuestCapture) -> StudyReport:
    """Comparisons with and without lookahead on the guests (the merged set unchanged)."""
    return study_corpus(capture.corpus, with_model=False)


@dataclass(frozen=True)
class ExclusiveCacheResult:
    """The exclusive host cache: host pages, double-cached pages before and after,
    pages saved, comparisons without and with it over the same scans, and the series."""

    host_pages: int
    double_cached_before: int
    double_cached_after: int
    saved_pages: int
    comparisons_off: int
    comparisons_on: int
    off: ScanSeries
    on: ScanSeries

    @property
    def overhead(self) -> float:
        """Extra comparisons the exclusive cache's tree walks cost, over the stock run's."""
        return (self.comparisons_on - self.comparisons_off) / self.comparisons_off if self.comparisons_off else 0.0

    def as_json(self) -> dict[str, object]:
        """Plain data."""
        return {
            "host_pages": self.host_pages, "double_cached_before": self.double_cached_before,
            "double_cached_after": self.double_cached_after, "saved_pages": self.saved_pages,
            "saved_bytes": self.saved_pages * PAGE_SIZE, "comparisons_off": self.comparisons_off,
            "comparisons_on": self.comparisons_on, "overhead": round(self.overhead, 6),
            "host_cache_by_scan_off": list(self.off.host_cache), "host_cache_by_scan_on": list(self.on.host_cache),
        }  # fmt: skip


def exclusive_cache_experiment(capture: GuestCapture, scans: int = SCANS) -> ExclusiveCacheResult:
    """Double caching and memory saved without and with the exclusive host cache."""
    host = host_cache_pages(capture)
    in_guests = set(capture.corpus.contents)
    off = scan_series(capture, scans, host=host)
    system = _system(capture, exclusive_host_cache=True)
    ids = [system.host_cache_insert(page) for page in host]
    series_on: list[int] = [len(ids)]
    sharing, comparisons = [system.counters()["pages_sharing"]], [0]
    before = system.snapshot().comparisons
    for _ in range(scans):
        system.full_scans(1)
        now = system.snapshot().comparisons
        series_on.append(len(system.host_pages))
        sharing.append(system.counters()["pages_sharing"])
        comparisons.append(now - before)
        before = now
    left = system.host_cache()
    on = ScanSeries(tuple(sharing), tuple(comparisons), tuple(series_on))
    return ExclusiveCacheResult(
        host_pages=len(host),
        double_cached_before=sum(1 for page in host if page in in_guests),
        double_cached_after=sum(1 for page in left.values() if page in in_guests),
        saved_pages=len(host) - len(left),
        comparisons_off=sum(off.comparisons),
        comparisons_on=sum(on.comparisons),
        off=off,
        on=on,
    )


@dataclass(frozen=True)
class PageCacheResult:
    """Skipping guest page-cache pages: comparisons and pages saved, stock and skipping."""

    page_cache_pages: int
    comparisons_stock: int
    comparisons_skip: int
    saved_stock: int
    saved_skip: int

    @property
    def comparisons_saved(self) -> float:
        """Fraction of the stock comparisons that skipping avoids."""
        return 1 - self.comparisons_skip / self.comparisons_stock if self.comparisons_stock else 0.0

    @property
    def sharing_lost(self) -> float:
        """Fraction of the stock run's saved pages that skipping gives up."""
        return 1 - self.saved_skip / self.saved_stock if self.saved_stock else 0.0

    def as_json(self) -> dict[str, object]:
        """Plain data."""
        return {
            "page_cache_pages": self.page_cache_pages, "comparisons_stock": self.comparisons_stock,
            "comparisons_skip": self.comparisons_skip, "comparisons_saved": round(self.comparisons_saved, 6),
            "saved_pages_stock": self.saved_stock, "saved_pages_skip": self.saved_skip,
            "sharing_lost": round(self.sharing_lost, 6),
        }  # fmt: skip


def page_cache_experiment(capture: GuestCapture, scans: int = SCANS) -> PageCacheResult:
    """Comparisons saved against sharing lost when guest page-cache pages are skipped."""
    from spec.ksm_api import GuestKind

    results = []
    for skip in (False, True):
        system = _system(capture, skip_page_cache=skip)
        system.full_scans(scans)
        counters = system.counters()
        results.append((system.snapshot().comparisons, counters["pages_sharing"] + counters["ksm_zero_pages"]))
    cached = sum(1 for kinds in capture.kinds for kind in kinds if kind is GuestKind.PAGE_CACHE)
    (stock_cmp, stock_saved), (skip_cmp, skip_saved) = results
    return PageCacheResult(cached, stock_cmp, skip_cmp, stock_saved, skip_saved)


__all__ = [
    "ExclusiveCacheResult", "PageCacheResult", "ScanSeries", "exclusive_cache_experiment",
    "host_cache_pages", "load_guests", "lookahead_experiment", "page_cache_experiment", "scan_series",
]  # fmt: skip
