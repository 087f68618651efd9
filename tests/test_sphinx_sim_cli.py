"""``memoracle sphinx experiment`` and the claims: JSON shape, files, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memoracle.cli import main
from memoracle.sphinx.sim.claims import CLAIMS, judge_all, sensitivity_config, sensitivity_table
from memoracle.sphinx.sim.experiment import ExperimentConfig, experiment_campaign, merge, run_in_process, run_shard

SMALL = ["--machine", "legacy", "--requests", "600", "--connections", "24,96"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memoracle", *args], capture_output=True, text=True, check=False)


def test_experiment_json_has_points_and_a_row_per_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sphinx", "experiment", *SMALL, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["points"]) == 2 * 2 * 3 * 2  # designs x workloads x IRQ configurations x connections
    for point in out["points"]:
        assert {"p50", "p99", "p99.9"} <= set(point["result"]["percentiles_us"])
        assert point["problems"] == []
    assert [row["claim"] for row in out["claims"]] == [claim.key for claim in CLAIMS]
    assert {row["outcome"] for row in out["claims"]} <= {"reproduced", "direction only", "not reproduced"}


def test_experiment_writes_figure_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sphinx", "experiment", *SMALL, "--loop", "closed", "--output", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "0 violations: 24 points" in text
    png = tmp_path / "out" / "sphinx_figure3_legacy_closed.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "out" / "sphinx_experiment.json").read_text())
    assert saved["loop"] == "closed" and len(saved["points"]) == 24


def test_check_option_checks_every_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sphinx", "experiment", "--machine", "legacy", "--requests", "300", "--connections", "24",
                 "--check", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["problems"] == [] and len(out["points"]) == 12


def test_shards_merge_to_the_in_process_grid() -> None:
    config = ExperimentConfig(("legacy",), requests=300, connections=(24,))
    campaign = experiment_campaign(config, shards=5)
    merged = merge([run_shard(config, shard, 5) for shard in range(5)])
    assert merged == run_in_process(config)
    assert campaign.shards == 5 and "--shard 2/5" in campaign.reproduce(2, 5)


def test_bad_usage_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--loop", "closed", "--rate", "100"], ["--sensitivity"], ["--cost", "nosuch=1"],
                 ["--cost", "send"], ["--connections", "0,5"], ["--connections", "24,,96"], ["--requests", "10"], ["--machine", "huge"],
                 ["--shard", "1/2", "--jobs", "2"], ["--machine", "modern", "--sensitivity", "--requests", "500"],
                 ["--machine", "legacy", "--sensitivity", "--check"],
                 ["--machine", "legacy", "--sensitivity", "--cost", "send=1"]):  # fmt: skip
        try:
            code = main(["sphinx", "experiment", *args])
        except SystemExit as exit_:
            code = exit_.code  # type: ignore[assignment]
        captured = capsys.readouterr()
        assert code == 2, (args, captured.err)
        assert len(captured.err.strip().splitlines()) == 1 and captured.out == "", captured.err
    done = run("sphinx", "experiment", "--loop", "closed", "--rate", "100")  # and through the real entry point
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_claims_follow_the_numbers() -> None:
    """A grid where Sphinx is faster everywhere with affinity best makes the reduction
    claims hold; the same grid with the designs swapped makes them fail."""
    points = []
    for design, base in (("sphinx", 50.0), ("memcached", 100.0)):
        for workload in ("read", "update"):
            for config, extra in (("balance", 20.0), ("spread", 18.0), ("affinity", 0.0)):
                for conns in (24, 384):
                    p99 = base + extra + conns / 10
                    points.append({"machine": "modern", "design": design, "workload": workload, "irq_config": config,
                                   "connections": conns, "result": {"percentiles_us": {"p99": p99}}})  # fmt: skip
    rows = {row["claim"]: row for row in judge_all(points)}
    assert rows["update-default"]["holds"] and rows["read-default"]["holds"]
    assert rows["affinity-lowest"]["holds"] and rows["irqbalance-less"]["holds"]
    assert not rows["worse-at-few"]["holds"]
    assert rows["update-default"]["value"] == pytest.approx(1 - (50 + 20 + 2.4) / (100 + 20 + 2.4))
    for point in points:
        point["design"] = "memcached" if point["design"] == "sphinx" else "sphinx"
    rows = {row["claim"]: row for row in judge_all(points)}
    assert not rows["update-default"]["holds"] and rows["update-default"]["outcome"] == "not reproduced"
    assert rows["worse-at-few"]["holds"]


def _synthetic(sphinx_p99: float, variant: int) -> list[dict[str, object]]:
    return [{"machine": "legacy", "design": design, "workload": workload, "irq_config": config, "connections": 24,
             "variant": variant,
             "result": {"percentiles_us": {"p99": sphinx_p99 if design == "sphinx" else 100.0 + (config != "affinity")}}}
            for design in ("sphinx", "memcached") for workload in ("read", "update")
            for config in ("balance", "spread", "affinity")]  # fmt: skip


def test_sensitivity_reports_the_variants_that_flip_a_claim() -> None:
    config = sensitivity_config("legacy", requests=300, connections=(24,))
    assert config.variants[0] == ("base", 1.0) and ("mc_lru_hold", 2.0) in config.variants
    doubled = config.config(config.variants.index(("mc_lru_hold", 2.0)))
    assert dict(doubled.overrides)["mc_lru_hold"] == 600
    assert doubled.points == config.base.points and doubled.loop == config.base.loop
    # Base: Sphinx slower than memcached at 24 connections; variant 1: faster; variant 2: slower.
    units = _synthetic(150.0, 0) + _synthetic(50.0, 1) + _synthetic(160.0, 2)
    rows = {row["claim"]: row for row in sensitivity_table(config, units)}
    first = config.variants[1]
    assert rows["worse-at-few"]["holds_on_base"] is True
    assert rows["worse-at-few"]["flipped_by"] == [f"{first[0]} x{first[1]:g}"]
    assert rows["update-default"]["holds_on_base"] is False
    assert rows["update-default"]["flipped_by"] == [f"{first[0]} x{first[1]:g}"]
