"""KSM's figures: scanning speed, and the lookahead study on a real-process corpus.

Scanning speed. Two processes of ``SCAN_PAGES`` pages each (``quick``: half) hold mixed
contents drawn from a fixed seed: a third duplicated across the processes, a third
unique, the rest all-zero or repeated inside one process. The implementation
(:class:`impl.ksm.Ksm`) runs ``SCAN_PASSES`` full scans from a fresh load (the first
visits, the merging scan, then steady scans); pages scanned = scans × pages; the figure
is the best of a few repetitions. The baseline is the kernel's default rate,
``pages_to_scan`` 100 every ``sleep_millisecs`` 20 = 5,000 pages/s; the target is ten
times that.

The study. A corpus is captured at bench time from real interpreters
(:func:`memoracle.ksm.corpus.capture`: 4 processes, all their resident anonymous pages;
``quick``: 3 processes, 400 pages each) and merged with and without lookahead
(:func:`memoracle.ksm.study.study_corpus`). Its figures are deterministic for a given
corpus; the corpus itself is a fresh capture, so they vary slightly from run to run.

- ``ksm.pages_scanned_per_second`` (baseline 5,000; ratio = value ÷ baseline)
- ``ksm.comparisons_per_page`` / ``ksm.comparisons_per_page_lookahead``: full-page
  comparisons per scanned page over the scans the stock run needs to settle
- ``ksm.lookahead_saving``: the fraction of comparisons lookahead eliminates (the paper:
  up to one third); baseline 1/3, ratio = saving ÷ 1/3
- ``ksm.sharing_vs_ideal``: pages_sharing ÷ the ideal saving (1.0 = complete)

The paper's experiments, on guest-like memory captured at bench time
(:func:`memoracle.ksm.guest.capture_guests`: 8 processes of about 1,500 pages holding the
same files of ``/usr`` in file order plus private pages; ``quick``: 4 × 500):

- ``ksm.lookahead_saving_guest`` (baseline 1/3) and ``…_merging_scan`` (the merging scan
  alone);
- ``ksm.exclusive_cache_saved_pages`` (baseline: the double-cached host pages) and
  ``ksm.exclusive_cache_overhead`` (extra comparisons ÷ stock comparisons);
- ``ksm.page_cache_skip_comparisons_saved`` and ``ksm.page_cache_skip_sharing_lost``.
"""

from __future__ import annotations

import random
import time

from benchmarks.common import Figure
from memoracle.ksm.corpus import capture
from memoracle.ksm.guest import capture_guests
from memoracle.ksm.paper import exclusive_cache_experiment, lookahead_experiment, page_cache_experiment
from memoracle.ksm.study import CLAIMED_SAVING, implementation_for, study_corpus
from spec.ksm_api import PAGE_SIZE, RunMode

#: Pages per process in the scanning-speed figure (two processes).
SCAN_PAGES = 2000
#: Full scans timed in the scanning-speed figure.
SCAN_PASSES = 4
#: The kernel's default scanning rate: 100 pages every 20 ms.
KERNEL_DEFAULT_RATE = 100 / 0.020


def mixed_pages(count: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Two processes' page contents: a third shared between them, a third unique to each,
    a sixth all-zero, a sixth repeated inside the process. Deterministic from ``seed``."""
    rng = random.Random(seed)

    def page(tag: int) -> bytes:
        return rng.randbytes(64) * (PAGE_SIZE // 64) if tag else bytes(PAGE_SIZE)

    first: list[bytes] = []
    second: list[bytes] = []
    repeated = page(1)
    for index in range(count):
        kind = index % 6
        if kind in (0, 1):
            shared = page(1)
            first.append(shared)
            second.append(shared)
        elif kind in (2, 3):
            first.append(page(1))
            second.append(page(1))
        elif kind == 4:
            first.append(bytes(PAGE_SIZE))
            second.append(bytes(PAGE_SIZE))
        else:
            first.append(repeated)
            second.append(repeated)
    return first, second


def pages_scanned_per_second(quick: bool) -> Figure:
    """The implementation's full-scan speed on mixed contents, best of a few runs."""
    count = SCAN_PAGES // 2 if quick else SCAN_PAGES
    processes = mixed_pages(count, seed=7)
    best = 0.0
    factory = implementation_for(2 * count)
    for _ in range(2 if quick else 3):
        system = factory()
        for contents in processes:
            pid = system.add_process()
            base = system.mmap(pid, len(contents))
            system.madvise(pid, base, len(contents), "MERGEABLE")
            for index, content in enumerate(contents):
                system.write(pid, base + index * PAGE_SIZE, content)
        system.set_knob("pages_to_scan", 1000)
        system.set_knob("run", RunMode.MERGE)
        started = time.perf_counter()
        system.full_scans(SCAN_PASSES)
        elapsed = time.perf_counter() - started
        assert system.counters()["pages_sharing"] > 0
        best = max(best, SCAN_PASSES * 2 * count / elapsed)
    return {
        "name": "ksm.pages_scanned_per_second",
        "value": best,
        "unit": "pages/s",
        "baseline": KERNEL_DEFAULT_RATE,
        "ratio": best / KERNEL_DEFAULT_RATE,
    }


def study_figures(quick: bool) -> list[Figure]:
    """Comparisons with and without lookahead, and sharing against the ideal, on a corpus
    of real interpreters captured now."""
    corpus, _ = capture(3, max_pages=400) if quick else capture(4)
    report = study_corpus(corpus, with_model=False)
    return [
        {"name": "ksm.comparisons_per_page", "value": report.stock.comparisons_per_page, "unit": "memcmp/page"},
        {
            "name": "ksm.comparisons_per_page_lookahead",
            "value": report.lookahead.comparisons_per_page,
            "unit": "memcmp/page",
            "baseline": report.stock.comparisons_per_page,
            "ratio": report.lookahead.comparisons_per_page / report.stock.comparisons_per_page
            if report.stock.comparisons_per_page
            else 0.0,
        },
        {
            "name": "ksm.lookahead_saving",
            "value": report.lookahead_saving,
            "unit": "fraction",
            "baseline": CLAIMED_SAVING,
            "ratio": report.lookahead_saving / CLAIMED_SAVING,
        },
        {"name": "ksm.sharing_vs_ideal", "value": report.sharing_vs_ideal, "unit": "fraction"},
    ]


#: The guest-like capture of the paper's experiments: processes and pages per process.
GUEST_PROCESSES, GUEST_PAGES = 8, 1500
QUICK_GUEST_PROCESSES, QUICK_GUEST_PAGES = 4, 500


def paper_figures(quick: bool) -> list[Figure]:
    """The paper's experiments on guest-like memory captured now: lookahead's saving,
    the exclusive host cache's pages saved and overhead, page-cache skipping."""
    processes, pages = (QUICK_GUEST_PROCESSES, QUICK_GUEST_PAGES) if quick else (GUEST_PROCESSES, GUEST_PAGES)
    capture = capture_guests(processes, pages, seed=0)
    study = lookahead_experiment(capture)
    cache = exclusive_cache_experiment(capture)
    skip = page_cache_experiment(capture)
    return [
        {
            "name": "ksm.lookahead_saving_guest",
            "value": study.lookahead_saving,
            "unit": "fraction",
            "baseline": CLAIMED_SAVING,
            "ratio": study.lookahead_saving / CLAIMED_SAVING,
        },
        {"name": "ksm.lookahead_saving_guest_merging_scan", "value": study.merging_saving, "unit": "fraction",
         "baseline": CLAIMED_SAVING, "ratio": study.merging_saving / CLAIMED_SAVING},  # fmt: skip
        {"name": "ksm.exclusive_cache_saved_pages", "value": cache.saved_pages, "unit": "pages",
         "baseline": cache.double_cached_before, "ratio": cache.saved_pages / max(1, cache.double_cached_before)},  # fmt: skip
        {"name": "ksm.exclusive_cache_overhead", "value": cache.overhead, "unit": "fraction"},
        {"name": "ksm.page_cache_skip_comparisons_saved", "value": skip.comparisons_saved, "unit": "fraction"},
        {"name": "ksm.page_cache_skip_sharing_lost", "value": skip.sharing_lost, "unit": "fraction"},
    ]


def ksm_figures(quick: bool) -> list[Figure]:
    """Every ksm.* figure (fewer repetitions when ``quick``)."""
    return [pages_scanned_per_second(quick), *study_figures(quick), *paper_figures(quick)]
