"""``memoracle check`` runs each check on its own seeds derived from one base seed, the
same every time (a count, not a time budget), and names the base seed on failure."""

from __future__ import annotations

import json

import pytest

from memoracle import checks as registry
from memoracle.check_types import Check, Outcome
from memoracle.checks import CHECKS, run_checks
from memoracle.cli import main


def test_a_check_of_k_seeds_covers_disjoint_seeds_per_base_seed() -> None:
    check = Check("x", "y", "z", lambda seed: Outcome(True, 1), seeds=3)
    assert list(check.seeds_of(0)) == [0, 1, 2] and list(check.seeds_of(5)) == [15, 16, 17]
    assert all(set(check.seeds_of(a)).isdisjoint(check.seeds_of(a + 1)) for a in range(10))


def test_run_checks_runs_every_seed_and_reports_the_base_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[int] = []

    def run(seed: int) -> Outcome:
        ran.append(seed)
        return Outcome(seed != 13, 10, "" if seed != 13 else f"broke at {seed}")

    monkeypatch.setattr(registry, "CHECKS", [Check("demo", "split", "a test", run, seeds=4)])
    (passed,) = run_checks(2)
    assert passed.ok and ran == [8, 9, 10, 11] and passed.count == 40
    ran.clear()
    (failed,) = run_checks(3)
    assert not failed.ok and ran == [12, 13] and failed.count == 20  # stops at the failing seed
    assert failed.report.endswith("reproduce: memoracle check --system demo --seed 3 (its seed 13 of 12..15)")


def test_several_checks_split_their_work_over_seeds() -> None:
    split = {(c.system, c.name): c.seeds for c in CHECKS if c.seeds > 1}
    assert ("umfs", "conformance") in split and ("machine", "mmu-translation") in split


def test_the_base_seed_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMORACLE_SEED", "12345")
    assert main(["check", "--json", "--system", "machine"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 12345
    assert main(["check", "--json", "--system", "machine", "--seed", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 7
    monkeypatch.setenv("MEMORACLE_SEED", "not a number")
    assert main(["check", "--system", "machine"]) == 2
    assert "MEMORACLE_SEED" in capsys.readouterr().err
