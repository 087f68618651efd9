"""The KSM checks of ``memoracle check``: every mutant is caught, the real ksmd is not.

The mutants (:mod:`memoracle.ksm.mutants`) each skip one step of the kernel's merge or
fault path; the conformance campaign must catch each of them on the check's own seeds,
also with the implementation's ``check_invariants`` switched off (so that the spec's
checks, not only the implementation's self-checks, see the breakage), while the real
implementation passes the same sequences.
"""

from __future__ import annotations

import pytest

from impl.ksm import Ksm
from memoracle.ksm import checks as ksm_checks
from memoracle.ksm.checks import MUTANT_SEEDS, MUTANT_STEPS, KSM_CHECKS, mutant_survivors
from memoracle.ksm.conformance import ksm_campaign
from memoracle.ksm.corpus import CaptureError
from memoracle.ksm.mutants import KSM_MUTANTS

#: For each mutant: the first check seed that catches it, and what the report says.
FIRST_CATCH = {
    "no_write_protect": (0, "is writable"),
    "compare_before_protect": (0, "view of pid 1"),
    "no_pte_recheck": (0, "view of pid 1"),
    "cow_writes_shared": (0, "is writable"),
    "no_checksum": (2, "after the first scan: pages_unshared = 1, predicted 0"),
    "eager_unmerge": (2, "right after an unmerge (rmap items kept): pages_unshared = 3, predicted 4"),
    "prctl_off_always": (2, "after the first scan: pages_volatile = 3, predicted 4"),
    "ignores_pins": (7, "pinned page pid 2 0x10000000 was merged into a KSM page"),
    "merge_forgets_checksum": (4, "pid 2 0x10001000 (stable) holds checksum 0x0, its content's is 0x32d8bbdb"),
    "guest_kind_ignored": (3, "after the first scan: pages_volatile = 3, predicted 2"),
}


@pytest.mark.parametrize("name", ["ignores_pins", "merge_forgets_checksum"])
def test_only_the_extended_campaign_catches(name: str) -> None:
    """Without pins, clean settles and the checksum check, the check seeds pass these
    mutants; with them (the default), one of the seeds catches each."""
    mutant = KSM_MUTANTS[name]
    seeds = range(MUTANT_SEEDS)
    assert all(ksm_campaign(s, MUTANT_STEPS, mutant, extended=False, check_checksums=False) is None for s in seeds)
    assert any(ksm_campaign(s, MUTANT_STEPS, mutant) is not None for s in seeds)


def test_only_guest_kind_changes_catch_an_ignored_guest_kind() -> None:
    """Without the requests (guest kinds changed after mmap, checksum switches, refused
    requests) the check seeds pass a set_guest_kind that records nothing; with them one
    of the first seeds catches it."""
    mutant = KSM_MUTANTS["guest_kind_ignored"]
    assert all(ksm_campaign(s, MUTANT_STEPS, mutant, requests=False) is None for s in range(MUTANT_SEEDS))
    assert any(ksm_campaign(s, MUTANT_STEPS, mutant) is not None for s in range(4))


def test_refused_requests_get_the_models_errno() -> None:
    """A set_knob that takes a bool for an int, as Python's ``isinstance(True, int)``
    would let it, is caught by the refused requests."""
    from impl.ksm import Ksm as Real

    class BoolAsInt(Real):
        def set_knob(self, name: str, value: object) -> None:
            super().set_knob(name, int(value) if isinstance(value, bool) and name == "pages_to_scan" else value)

    assert any(ksm_campaign(s, MUTANT_STEPS, BoolAsInt) is not None for s in range(MUTANT_SEEDS))
    assert all(ksm_campaign(s, MUTANT_STEPS, BoolAsInt, requests=False) is None for s in range(8))


def test_every_mutant_is_listed() -> None:
    assert set(FIRST_CATCH) == set(KSM_MUTANTS)


def test_no_mutant_survives_the_check_seeds() -> None:
    assert mutant_survivors(0) == []


@pytest.mark.parametrize("name", sorted(FIRST_CATCH))
def test_mutant_is_caught_by_the_spec_checks_alone(name: str) -> None:
    seed, expected = FIRST_CATCH[name]
    blind = type(f"Blind{name}", (KSM_MUTANTS[name],), {"check_invariants": lambda self: None})
    for earlier in range(seed):
        assert ksm_campaign(earlier, MUTANT_STEPS, blind) is None
    report = ksm_campaign(seed, MUTANT_STEPS, blind)
    assert report is not None and expected in report.splitlines()[0], report
    assert f"--seed {seed}" in report


def test_real_implementation_survives_the_mutant_seeds() -> None:
    for seed in range(8):  # the seeds that catch every mutant of FIRST_CATCH
        report = ksm_campaign(seed, MUTANT_STEPS, Ksm)
        assert report is None, report


def test_checks_are_registered_in_order() -> None:
    live = [("ksm", "live")] if ksm_checks.live_check_available() else []
    assert [(c.system, c.name) for c in KSM_CHECKS] == [
        ("ksm", "conformance"),
        ("ksm", "mutants"),
        ("ksm", "real_data"),
        *live,
    ]


def test_conformance_check_fails_on_a_broken_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ksm_checks, "_implementation", lambda: KSM_MUTANTS["no_pte_recheck"])
    outcome = KSM_CHECKS[0].run(0)
    assert not outcome.ok
    assert "view of pid" in outcome.report and "check seed 0, shard 0" in outcome.report


def test_mutants_check_reports_a_survivor(monkeypatch: pytest.MonkeyPatch) -> None:
    class Caught(Ksm):
        pass

    def campaign(seed: int, steps: int, factory: object) -> str | None:
        return "step 1: caught" if factory is Caught else None  # a stand-in, for speed

    monkeypatch.setattr("memoracle.ksm.mutants.KSM_MUTANTS", {"faithful": Ksm, "caught": Caught})
    monkeypatch.setattr("memoracle.ksm.conformance.ksm_campaign", campaign)
    outcome = KSM_CHECKS[1].run(0)
    assert not outcome.ok and outcome.count == 2
    assert outcome.report == "mutants not caught: faithful"


def test_real_data_check_says_why_it_cannot_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*args: object, **kwargs: object) -> None:
        raise CaptureError("capture needs Linux's /proc (no /proc/self/maps here)")

    monkeypatch.setattr("memoracle.ksm.corpus.capture", no_proc)
    outcome = KSM_CHECKS[2].run(0)
    assert not outcome.ok and outcome.count == 0
    assert outcome.report == (
        "real data: cannot capture pages of live processes here: capture needs Linux's /proc (no /proc/self/maps here)"
    )
