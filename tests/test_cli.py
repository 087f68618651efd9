"""The command line: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memoracle import checks
from memoracle.checks import Check, Outcome
from memoracle.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memoracle", *args], capture_output=True, text=True, check=False
    )


def test_check_json_has_the_promised_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--json", "--system", "machine"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {c["check"] for c in out["checks"]} >= {"persistency-adr", "persistency-eadr"}
    for c in out["checks"]:
        assert set(c) == {"system", "check", "ok", "count", "seconds"}
        assert c["ok"] is True and c["count"] > 0


def test_a_failing_check_exits_1_and_prints_its_report(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Check("demo", "always-fails", "a check that fails", lambda seed: Outcome(False, 3, f"seed {seed} broke"))
    monkeypatch.setattr(checks, "CHECKS", [broken])
    assert main(["check", "--seed", "5"]) == 1
    assert "seed 5 broke" in capsys.readouterr().out
    assert main(["check", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["checks"][0]["ok"] is False


def test_an_invariant_failure_inside_a_check_is_a_violation_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(seed: int) -> Outcome:
        raise AssertionError("TLB holds more rights than the page table")

    monkeypatch.setattr(checks, "CHECKS", [Check("demo", "invariant", "", explode)])
    assert main(["check"]) == 1
    assert "TLB holds more rights" in capsys.readouterr().out


def test_bad_usage_exits_2_with_one_line() -> None:
    for args in (["frobnicate"], ["check", "--seed", "x"], ["check", "--system", "nonesuch"]):
        done = run(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_contracts_rejects_a_missing_target() -> None:
    done = run("contracts", "no/such/spec.py")
    assert done.returncode == 2 and "no such file" in done.stderr
