"""``python -m benchmarks`` (``make bench``): figures written, bad usage refused."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import proofs
from benchmarks.__main__ import main
from benchmarks.proofs import proof_figures


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_bench_writes_the_machine_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--quick", "--only", "machine", "--output", str(out)]) == 0
    figures = {f["name"]: f for f in json.loads(out.read_text())}
    for name in ("machine.read_64k_ratio", "machine.scm_store_4k_ratio", "machine.crash_images_per_second"):
        assert figures[name]["value"] > 0 and figures[name]["unit"]
    assert "baseline" in figures["machine.read_64k_us"] and "ratio" in figures["machine.read_64k_us"]


def test_bench_rejects_an_unknown_system() -> None:
    done = run("--only", "nonesuch")
    assert done.returncode == 2 and "unknown system" in done.stderr


def test_proof_figures_sum_the_solver_times_per_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proofs' times are figures (tests assert no time): here on the page-table
    theorems alone, and a check with the wrong verdict stops the benchmark."""
    page_table = [t for t in proofs.THEOREMS if t.name.startswith("splice_")]
    monkeypatch.setattr(proofs, "THEOREMS", page_table)
    figures = {f["name"]: f["value"] for f in proof_figures(quick=True)}
    assert set(figures) == {"proofs.all_seconds", "proofs.slowest_seconds", "proofs.page_table_seconds", "proofs.checks"}
    assert figures["proofs.checks"] == len(page_table) > 0
    assert 0 < figures["proofs.slowest_seconds"] <= figures["proofs.all_seconds"] == figures["proofs.page_table_seconds"]
    wrong = dataclasses.replace(page_table[0], expect="refuted")
    monkeypatch.setattr(proofs, "THEOREMS", [wrong])
    with pytest.raises(RuntimeError, match=f"{wrong.name}: proved, expected refuted"):
        proof_figures(quick=True)


def test_the_schedule_simulation_of_the_scale_projection() -> None:
    from benchmarks.scale import simulate_schedule

    assert simulate_schedule([3, 3, 2, 2, 2], workers=2) == 7  # in order: 3+2+2 | 3+2 (not the best packing, 6)
    assert simulate_schedule([3, 3, 2, 2, 2], workers=2, overhead=0.5) == 8.5
    assert simulate_schedule([1] * 64, workers=8) == 8
    assert simulate_schedule([], workers=4) == 0
    assert simulate_schedule([5, 1, 1, 1, 1, 1], workers=64) == 5  # more workers than shards: the longest shard


def test_the_simulated_experiments_figures_on_a_small_grid() -> None:
    from benchmarks.sphinx import sim_figures

    figures = {f["name"]: f for f in sim_figures(True, requests=300, connections=(24, 48), point_requests=1000)}
    for name in ("update_p99_reduction_default_modern", "read_p99_reduction_default_modern"):
        for suffix in ("", "_closed"):
            figure = figures[f"sphinx.sim_{name}{suffix}"]
            assert figure["unit"] == "share" and -10 < figure["value"] < 1
    assert figures["sphinx.sim_requests_per_second"]["value"] > 0
    assert figures["sphinx.sim_point_seconds"]["unit"] == "s"


def test_a_figure_name_is_never_cut(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import print_figures

    name = "system." + "a_very_long_figure_name_" * 4 + "seconds"
    print_figures([{"name": name, "value": 1.5, "unit": "s", "baseline": 3.0, "ratio": 2.0}])
    assert name in capsys.readouterr().out  # in a pipe (no terminal): the whole name, on one line


def test_campaign_coverage_measures_impl_per_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make coverage`` on the machine's campaigns alone: the MMU and SCM emulators are
    reached, the UMFS modules are listed untaken (nothing of UMFS ran), and the total is
    taken ÷ all branches."""
    from benchmarks import coverage

    monkeypatch.setattr(coverage, "SYSTEMS", ("machine",))
    reach = coverage.measure(seed=0)
    by_name = {m.module: m for m in reach.modules}
    assert reach.check_exit == 0
    assert by_name["mmu_emu"].taken > 0 and by_name["scm_emu"].taken > 0
    assert by_name["umfs_names"].taken == 0 < by_name["umfs_names"].branches
    assert reach.taken == sum(m.taken for m in reach.modules) < reach.branches
    text = coverage.render(reach)
    assert "impl/ total" in text and f"{reach.percent:.1f}%" in text and "--seed 0" in text
