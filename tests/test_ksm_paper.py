"""The paper's experiments on guest-like memory: the capture, the three experiments, the
commands and the plots (small captures: 2-3 processes of a few hundred pages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memoracle.cli import main
from memoracle.ksm import paper
from memoracle.ksm.guest import GuestCapture, capture_guests, guest_files, guest_layout
from spec.ksm_api import GuestKind


@pytest.fixture(scope="module")
def guests() -> GuestCapture:
    return capture_guests(3, 300, seed=1)


def test_guests_hold_the_same_files_in_file_order(guests: GuestCapture) -> None:
    corpus = guests.corpus
    assert len(corpus.processes) == 3
    assert [len(k) for k in guests.kinds] == [len(p.addresses) for p in corpus.processes]
    kinds = {kind for ks in guests.kinds for kind in ks}
    assert kinds == {GuestKind.FILE, GuestKind.PAGE_CACHE, GuestKind.ANONYMOUS}
    # The first page of the first file a guest keeps is that file's first page.
    first = next(f for f in guests.files)
    with open(first.path, "rb") as handle:
        head = handle.read(4096).ljust(4096, b"\0")
    assert any(corpus.contents[p.content_ids[0]] == head for p in corpus.processes)
    assert sum(corpus.copies()) == corpus.pages and max(corpus.copies()) >= 2


def test_layout_is_deterministic_and_guests_differ() -> None:
    files = guest_files(300)
    assert files == guest_files(300) and [f.path for f in files] == sorted(f.path for f in files if f.kind is GuestKind.FILE) + sorted(
        f.path for f in files if f.kind is GuestKind.PAGE_CACHE
    )
    one = guest_layout(files, 4, 0, keep=0.9, private_pages=50)
    assert one == guest_layout(files, 4, 0, keep=0.9, private_pages=50)
    assert one != guest_layout(files, 4, 1, keep=0.9, private_pages=50)
    assert sum(count for kind, _, count, _ in one if kind == "private") == 50


def test_lookahead_saves_comparisons_and_merges_the_same_pages(guests: GuestCapture) -> None:
    study = paper.lookahead_experiment(guests)
    assert study.ok, study.problems
    assert study.stock.merged == study.lookahead.merged
    assert study.lookahead.comparisons < study.stock.comparisons and study.lookahead.lookahead_hits > 0


def test_exclusive_cache_drops_exactly_the_double_cached_pages(guests: GuestCapture) -> None:
    result = paper.exclusive_cache_experiment(guests)
    assert result.double_cached_before > 0
    assert result.saved_pages == result.double_cached_before and result.double_cached_after == 0
    assert result.off.host_cache[-1] == result.host_pages  # stock never drops a page
    assert result.on.host_cache[-1] == result.host_pages - result.saved_pages
    assert result.comparisons_on > result.comparisons_off and result.overhead > 0


def test_skipping_page_cache_saves_comparisons_and_loses_sharing(guests: GuestCapture) -> None:
    result = paper.page_cache_experiment(guests)
    assert result.page_cache_pages > 0
    assert 0 < result.comparisons_saved < 1 and 0 < result.sharing_lost < 1
    assert result.saved_skip < result.saved_stock


def test_scan_series_lookahead_keeps_the_sharing_curve(guests: GuestCapture) -> None:
    stock, ahead = paper.scan_series(guests, 3), paper.scan_series(guests, 3, lookahead=True)
    assert stock.pages_sharing == ahead.pages_sharing and stock.pages_sharing[2] > 0
    assert stock.pages_sharing[1] == 0  # nothing merges in the first full scan
    assert sum(ahead.comparisons) < sum(stock.comparisons)


def test_paper_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for name, key in (("lookahead", "lookahead_saving"), ("exclusive-cache", "saved_pages"), ("page-cache", "comparisons_saved")):
        assert main(["ksm", "paper", name, "--processes", "2", "--pages", "128", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["experiment"] == name and key in out and out["problems"] == []


def test_paper_command_fails_on_a_broken_result(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = paper.exclusive_cache_experiment

    def keeps_one(capture: GuestCapture, scans: int = paper.SCANS) -> paper.ExclusiveCacheResult:
        result = real(capture, scans)
        return paper.ExclusiveCacheResult(result.host_pages, result.double_cached_before, 1, result.saved_pages - 1,
                                          result.comparisons_off, result.comparisons_on, result.off, result.on)  # fmt: skip

    monkeypatch.setattr(paper, "exclusive_cache_experiment", keeps_one)
    assert main(["ksm", "paper", "exclusive-cache", "--processes", "2", "--pages", "128"]) == 1
    assert "violation: 1 double-cached host pages kept" in capsys.readouterr().out


def test_report_writes_three_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plots"
    assert main(["ksm", "report", "--output", str(out), "--processes", "2", "--pages", "128"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == sorted(["ksm_sharing_over_scans.png", "ksm_comparisons_per_scan.png", "ksm_exclusive_cache.png"])
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ksm", "paper", "lookahead", "--processes", "1"]) == 2
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["ksm", "report", "--output", str(afile)]) == 2
