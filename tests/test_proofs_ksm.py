"""The KSM theorems: proved, and every mutant refuted with a readable counterexample."""

from __future__ import annotations

import pytest

from proofs import ProofResult, prove_all, select_theorems


@pytest.fixture(scope="module")
def results() -> dict[str, ProofResult]:
    return {r.name: r for r in prove_all(["ksm*"], timeout_seconds=30)}


def test_every_ksm_theorem_is_proved_and_every_mutant_refuted(results: dict[str, ProofResult]) -> None:
    names = {t.name for t in select_theorems(["ksm*"])}
    assert names == set(results)
    assert sum(1 for r in results.values() if r.expect == "proved") == 3
    assert sum(1 for r in results.values() if r.expect == "refuted") == 3
    for name, result in results.items():
        assert result.ok, f"{name}: expected {result.expect}, got {result.status} {result.note}"


def test_mutant_counterexamples_show_a_changed_view(results: dict[str, ProofResult]) -> None:
    for name in (
        "ksm_merge_preserves_views:mutant_no_compare",
        "ksm_cow_preserves_other_views:mutant_writes_shared_frame",
    ):
        result = results[name]
        assert result.witness["before"] != result.witness["after"]
        assert result.counterexample is not None and "now reads" in result.counterexample
    tree = results["ksm_stable_tree_inductive:mutant_insert_without_search"]
    assert tree.witness["a"] != tree.witness["b"]
    assert tree.counterexample is not None and "not duplicates of one chain" in tree.counterexample
