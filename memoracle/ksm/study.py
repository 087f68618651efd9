"""The lookahead study: merge a real corpus, compare with the ideal, count comparisons.

:func:`study_corpus` loads a corpus (:mod:`memoracle.ksm.corpus`) twice into fresh
systems — once with the stock scanner, once with the paper's lookahead optimisation
(after X of one process merges with X' of another, try X+1 against X'+1 with one memcmp
before any tree search) — lets ksmd run, and reports:

- the corpus: pages, distinct contents, and the **ideal** result, which is the best any
  merger can do under ``max_page_sharing`` m (per content of n copies: ``n // m`` full
  KSM pages of m mappings, plus one more of ``n % m`` mappings when ``n % m >= 2``; a
  lone leftover copy stays unshared — the arithmetic of the kernel's ``ksm_tests.c``);
  with ``use_zero_pages`` every all-zero page maps the zero page instead;
- what was achieved: ``pages_shared``, ``pages_sharing`` (+ ``ksm_zero_pages``) and
  ``sharing_vs_ideal`` = achieved saving ÷ ideal saving (1.0 when the ideal saving is 0);
- full-page comparisons per scanned page, without and with lookahead, and the fraction
  lookahead eliminates — set against the paper's claim that it eliminates "up to one
  third" (:func:`claim_verdict`);
- the comparisons of every full scan, and the saving in the *merging* scans alone (the
  scans before the one that confirmed the stock run had settled), since in later scans
  merged pages cost nothing and only the unshareable pages are compared;
- the model's prediction of the settled sharing: the corpus loaded the same way into
  :class:`spec.ksm_model.KsmModel` (skipped with ``with_model=False``);
- checks that can fail: every page still reads back its captured bytes (merge safety),
  the lookahead run merges exactly the same (process, address) pages as the stock run,
  and the achieved sharing equals the ideal once settled (completeness).

Choices where the paper is silent, recorded here:

- A run is *settled* when ``pages_shared``, ``pages_sharing`` and ``ksm_zero_pages`` did
  not change over one full scan, at the earliest after 3 scans (a page first merges on
  the second scan, since its stored checksum starts at 0); at most ``max_scans`` scans.
- Comparisons are counted over the same number of full scans in both runs: the scans the
  stock run needed to settle (including the confirming scan). A *scanned page* is one
  visit of one present page in one full scan, so scanned pages = scans × pages loaded.
- The comparison count is the implementation's count of full-page comparisons (memcmp)
  in the stable and unstable trees and in lookahead probes
  (:attr:`spec.ksm_api.KsmSnapshot.comparisons`).
- Every knob keeps the kernel's default (``smart_scan`` on, ``pages_to_scan`` 100, …)
  except ``max_page_sharing``, ``use_zero_pages`` and ``lookahead``, which the study sets.
- The default implementation gets an emulated DRAM sized to the corpus (at least the
  implementation's default), so that large captures fit.
- The claim counts as *reproduced* when lookahead eliminates at least 30% of the
  comparisons (a third, less a tenth of it), *not reproduced* between 0 and 30%, and
  *refuted* when it eliminates none or adds comparisons.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from memoracle.ksm.corpus import Corpus, LoadedCorpus, load_corpus
from spec.ksm_api import PAGE_SIZE, KsmSystem, RunMode

#: The paper's claim: lookahead eliminates up to this fraction of comparisons.
CLAIMED_SAVING = 1 / 3
#: The saving from which the claim counts as reproduced (a third, less a tenth of it).
REPRODUCED_FROM = 0.30
#: Full scans a run may take to settle before the study gives up waiting.
DEFAULT_MAX_SCANS = 10
#: Scans before a run may count as settled (pages merge on the second scan at the earliest).
MIN_SCANS = 3


def ideal_for_copies(copies: int, max_page_sharing: int) -> tuple[int, int]:
    """(pages_shared, pages_sharing) when ``copies`` identical pages are merged as far as
    ``max_page_sharing`` allows (the kernel's ``ksm_tests.c`` arithmetic)."""
    full, rest = divmod(copies, max_page_sharing)
    shared = full + (1 if rest >= 2 else 0)
    sharing = full * (max_page_sharing - 1) + (rest - 1 if rest >= 2 else 0)
    return shared, sharing


@dataclass(frozen=True)
class Ideal:
    """The best merge of a corpus: KSM pages, extra mappings saved, zero-page merges."""

    pages_shared: int
    pages_sharing: int
    zero_pages: int

    @property
    def saving(self) -> int:
        """Pages saved: ``pages_sharing`` + pages mapped to the zero page."""
        return self.pages_sharing + self.zero_pages


def ideal_sharing(corpus: Corpus, max_page_sharing: int = 256, use_zero_pages: bool = False) -> Ideal:
    """The ideal result of merging ``corpus`` (see the module docstring)."""
    zero = bytes(corpus.page_size)
    shared = sharing = zero_pages = 0
    for content, copies in zip(corpus.contents, corpus.copies()):
        if use_zero_pages and content == zero:
            zero_pages += copies
            continue
        content_shared, content_sharing = ideal_for_copies(copies, max_page_sharing)
        shared += content_shared
        sharing += content_sharing
    return Ideal(shared, sharing, zero_pages)


@dataclass(frozen=True)
class RunResult:
    """One run of ksmd over a loaded corpus.

    ``comparisons_by_scan[i]`` and ``lookahead_hits_by_scan[i]`` are those of full scan
    ``i + 1``; ``comparisons`` and ``lookahead_hits`` are their sums over the first
    ``measured_scans`` scans."""

    lookahead: bool
    scans: int
    settled_after: int | None
    pages_shared: int
    pages_sharing: int
    ksm_zero_pages: int
    measured_scans: int
    comparisons: int
    scanned_pages: int
    lookahead_hits: int
    intact: bool
    comparisons_by_scan: tuple[int, ...]
    lookahead_hits_by_scan: tuple[int, ...]
    merged: frozenset[tuple[int, int]] = field(repr=False)
    seconds: float = 0.0

    @property
    def saving(self) -> int:
        """Pages saved: ``pages_sharing`` + ``ksm_zero_pages``."""
        return self.pages_sharing + self.ksm_zero_pages

    @property
    def comparisons_per_page(self) -> float:
        """Comparisons per scanned page over the measured scans."""
        return self.comparisons / self.scanned_pages if self.scanned_pages else 0.0


def _settle_key(system: KsmSystem) -> tuple[int, int, int]:
    counters = system.counters()
    return counters["pages_shared"], counters["pages_sharing"], counters["ksm_zero_pages"]


def run_once(
    factory: Callable[[], KsmSystem],
    corpus: Corpus,
    *,
    lookahead: bool,
    max_page_sharing: int,
    use_zero_pages: bool,
    max_scans: int,
    measured_scans: int | None,
) -> RunResult:
    """Load ``corpus`` into a fresh system and scan one full scan at a time until settled
    and at least ``measured_scans`` scans are done (at most ``max_scans``). Comparisons
    are summed over ``measured_scans`` scans (None: the scans it took to settle)."""
    started = time.perf_counter()
    system = factory()
    loaded = load_corpus(system, corpus)
    system.set_knob("max_page_sharing", max_page_sharing)
    system.set_knob("use_zero_pages", use_zero_pages)
    system.set_knob("lookahead", lookahead)
    system.set_knob("run", RunMode.MERGE)
    history = [_settle_key(system)]
    snapshot = system.snapshot()
    cumulative = [(snapshot.comparisons, snapshot.lookahead_hits)]
    settled_after: int | None = None
    for scan in range(1, max_scans + 1):
        system.full_scans(1)
        history.append(_settle_key(system))
        snapshot = system.snapshot()
        cumulative.append((snapshot.comparisons, snapshot.lookahead_hits))
        if settled_after is None and scan >= MIN_SCANS and history[-1] == history[-2]:
            settled_after = scan
        if settled_after is not None and scan >= (measured_scans or 0):
            break
    scans = len(history) - 1
    measured = min(scans, measured_scans or settled_after or scans)
    by_scan = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(cumulative, cumulative[1:])]
    shared, sharing, zero_pages = history[-1]
    return RunResult(
        lookahead=lookahead,
        scans=scans,
        settled_after=settled_after,
        pages_shared=shared,
        pages_sharing=sharing,
        ksm_zero_pages=zero_pages,
        measured_scans=measured,
        comparisons=sum(c for c, _ in by_scan[:measured]),
        scanned_pages=measured * loaded.pages,
        lookahead_hits=sum(h for _, h in by_scan[:measured]),
        intact=_contents_intact(system, corpus, loaded),
        comparisons_by_scan=tuple(c for c, _ in by_scan),
        lookahead_hits_by_scan=tuple(h for _, h in by_scan),
        merged=_merged_pages(system, loaded),
        seconds=time.perf_counter() - started,
    )


def _contents_intact(system: KsmSystem, corpus: Corpus, loaded: LoadedCorpus) -> bool:
    return all(
        system.read(pid, address, corpus.page_size) == corpus.contents[content_id]
        for (pid, address), (_, _, content_id) in loaded.placement.items()
    )


def _merged_pages(system: KsmSystem, loaded: LoadedCorpus) -> frozenset[tuple[int, int]]:
    """The merged pages, in corpus coordinates (captured process index, captured address)."""
    merged = set()
    for page in system.snapshot().pages:
        if page.ksm or page.zero:
            index, address, _ = loaded.placement[(page.pid, page.addr)]
            merged.add((index, address))
    return frozenset(merged)


def claim_verdict(saving: float, stock_comparisons: int = 1) -> str:
    """Whether ``saving`` (fraction of comparisons lookahead eliminates) reproduces the
    paper's "up to one third of comparisons eliminated"; undetermined when the stock run
    counted no comparison at all."""
    if stock_comparisons == 0:
        return "undetermined: the stock run counted no comparisons"
    figure = f"lookahead eliminates {saving:.1%} of comparisons; the paper: up to {CLAIMED_SAVING:.1%}"
    if saving >= REPRODUCED_FROM:
        return f"reproduced: {figure}"
    if saving > 0:
        return f"not reproduced: {figure}"
    return f"refuted: {figure}"


@dataclass(frozen=True)
class ModelPrediction:
    """What the model says a settled system shows for this corpus."""

    pages_shared: int
    pages_sharing: int
    ksm_zero_pages: int


@dataclass(frozen=True)
class StudyReport:
    """Everything ``memoracle ksm study`` reports (see the module docstring)."""

    workload: str
    processes: int
    pages: int
    distinct_contents: int
    max_page_sharing: int
    use_zero_pages: bool
    ideal: Ideal
    stock: RunResult
    lookahead: RunResult
    model: ModelPrediction | None
    problems: tuple[str, ...]

    @property
    def sharing_vs_ideal(self) -> float:
        """Achieved saving ÷ ideal saving, stock scanner (1.0 when nothing can be saved)."""
        return self.stock.saving / self.ideal.saving if self.ideal.saving else 1.0

    @property
    def sharing_vs_ideal_lookahead(self) -> float:
        """The same with lookahead on."""
        return self.lookahead.saving / self.ideal.saving if self.ideal.saving else 1.0

    @property
    def lookahead_saving(self) -> float:
        """Fraction of the stock run's comparisons that lookahead eliminates (negative if
        it adds comparisons; 0 when the stock run makes none)."""
        if not self.stock.comparisons:
            return 0.0
        return 1 - self.lookahead.comparisons / self.stock.comparisons

    @property
    def merging_scans(self) -> int:
        """Scans during which the stock run's sharing still changed (before the scan
        that confirmed it settled)."""
        return max(1, self.stock.measured_scans - 1)

    @property
    def merging_saving(self) -> float:
        """The fraction of comparisons lookahead eliminates in the merging scans alone."""
        stock = sum(self.stock.comparisons_by_scan[: self.merging_scans])
        ahead = sum(self.lookahead.comparisons_by_scan[: self.merging_scans])
        return 1 - ahead / stock if stock else 0.0

    @property
    def ok(self) -> bool:
        """No check failed: contents intact, same merges with lookahead, ideal reached."""
        return not self.problems

    @property
    def verdict(self) -> str:
        """The paper's claim against this corpus."""
        return claim_verdict(self.lookahead_saving, self.stock.comparisons)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object."""

        def run(result: RunResult) -> dict[str, Any]:
            data = {k: v for k, v in asdict(result).items() if k != "merged"}
            data["merged_pages"] = len(result.merged)
            data["comparisons_per_page"] = round(result.comparisons_per_page, 4)
            data["seconds"] = round(result.seconds, 3)
            return data

        return {
            "workload": self.workload,
            "processes": self.processes,
            "pages": self.pages,
            "distinct_contents": self.distinct_contents,
            "max_page_sharing": self.max_page_sharing,
            "use_zero_pages": self.use_zero_pages,
            "ideal": {**asdict(self.ideal), "saving": self.ideal.saving},
            "pages_shared": self.stock.pages_shared,
            "pages_sharing": self.stock.pages_sharing,
            "ksm_zero_pages": self.stock.ksm_zero_pages,
            "sharing_vs_ideal": round(self.sharing_vs_ideal, 6),
            "sharing_vs_ideal_lookahead": round(self.sharing_vs_ideal_lookahead, 6),
            "comparisons_per_page": round(self.stock.comparisons_per_page, 4),
            "comparisons_per_page_lookahead": round(self.lookahead.comparisons_per_page, 4),
            "lookahead_saving": round(self.lookahead_saving, 6),
            "merging_scans": self.merging_scans,
            "merging_scans_lookahead_saving": round(self.merging_saving, 6),
            "claim": self.verdict,
            "model": asdict(self.model) if self.model is not None else None,
            "stock": run(self.stock),
            "lookahead": run(self.lookahead),
            "ok": self.ok,
            "problems": list(self.problems),
        }


def implementation_for(pages: int) -> Callable[[], KsmSystem]:
    """A factory of fresh implementations (:class:`impl.ksm.Ksm`) whose emulated DRAM
    holds ``pages`` loaded pages with room to spare (at least the default 64 MiB)."""
    from impl.ksm import DEFAULT_DRAM, Ksm

    dram = max(DEFAULT_DRAM, (pages * 5 // 4 + 4096) * PAGE_SIZE)

    def factory() -> KsmSystem:
        return Ksm(dram)

    return factory


def study_corpus(
    corpus: Corpus,
    factory: Callable[[], KsmSystem] | None = None,
    *,
    max_page_sharing: int = 256,
    use_zero_pages: bool = False,
    max_scans: int = DEFAULT_MAX_SCANS,
    with_model: bool = True,
) -> StudyReport:
    """Run the study (see the module docstring) on systems made by ``factory`` (default:
    :func:`implementation_for` the corpus). Deterministic for a given corpus and factory,
    apart from the informational ``seconds``."""
    if max_page_sharing < 2:
        raise ValueError("max_page_sharing must be at least 2")
    if max_scans < MIN_SCANS:
        raise ValueError(f"max_scans must be at least {MIN_SCANS}")
    make = factory if factory is not None else implementation_for(corpus.pages)

    def run(lookahead: bool, measured_scans: int | None) -> RunResult:
        return run_once(
            make,
            corpus,
            lookahead=lookahead,
            max_page_sharing=max_page_sharing,
            use_zero_pages=use_zero_pages,
            max_scans=max_scans,
            measured_scans=measured_scans,
        )

    stock = run(False, None)
    with_lookahead = run(True, stock.measured_scans)
    ideal = ideal_sharing(corpus, max_page_sharing, use_zero_pages)
    model = model_prediction(corpus, max_page_sharing, use_zero_pages) if with_model else None
    problems = _problems(ideal, stock, with_lookahead, model)
    return StudyReport(
        workload=corpus.workload,
        processes=len(corpus.processes),
        pages=corpus.pages,
        distinct_contents=len(corpus.contents),
        max_page_sharing=max_page_sharing,
        use_zero_pages=use_zero_pages,
        ideal=ideal,
        stock=stock,
        lookahead=with_lookahead,
        model=model,
        problems=tuple(problems),
    )


def _problems(ideal: Ideal, stock: RunResult, lookahead: RunResult, model: ModelPrediction | None) -> list[str]:
    problems = []
    for run in (stock, lookahead):
        name = "with lookahead" if run.lookahead else "stock"
        if not run.intact:
            problems.append(f"{name}: a page no longer reads back its captured content")
        if run.settled_after is None:
            problems.append(f"{name}: sharing still changing after {run.scans} full scans")
        if (run.pages_shared, run.pages_sharing, run.ksm_zero_pages) != (
            ideal.pages_shared,
            ideal.pages_sharing,
            ideal.zero_pages,
        ):
            problems.append(
                f"{name}: shared/sharing/zero {run.pages_shared}/{run.pages_sharing}/{run.ksm_zero_pages}, "
                f"ideal {ideal.pages_shared}/{ideal.pages_sharing}/{ideal.zero_pages}"
            )
    if stock.merged != lookahead.merged:
        only_stock = len(stock.merged - lookahead.merged)
        only_lookahead = len(lookahead.merged - stock.merged)
        problems.append(
            f"lookahead merges different pages: {only_stock} merged only without it, {only_lookahead} only with it"
        )
    if model is not None and (model.pages_shared, model.pages_sharing, model.ksm_zero_pages) != (
        stock.pages_shared,
        stock.pages_sharing,
        stock.ksm_zero_pages,
    ):
        problems.append(
            f"the model predicts shared/sharing/zero {model.pages_shared}/{model.pages_sharing}/"
            f"{model.ksm_zero_pages}, the implementation shows {stock.pages_shared}/{stock.pages_sharing}/"
            f"{stock.ksm_zero_pages}"
        )
    return problems


def model_prediction(corpus: Corpus, max_page_sharing: int, use_zero_pages: bool) -> ModelPrediction:
    """The model's settled counters for ``corpus``: the corpus loaded the same way into
    :class:`spec.ksm_model.KsmModel`, two quiet full scans (the model predicts what a
    settled system shows; it does not simulate ksmd)."""
    from spec.ksm_model import KsmModel

    model = KsmModel()
    load_corpus(model, corpus)
    model.set_knob("max_page_sharing", max_page_sharing)
    model.set_knob("use_zero_pages", use_zero_pages)
    model.set_knob("run", RunMode.MERGE)
    model.full_scans(2)
    counters = model.counters()
    return ModelPrediction(counters["pages_shared"], counters["pages_sharing"], counters["ksm_zero_pages"])
