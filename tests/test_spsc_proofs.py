"""The SPSC theorems: proved at 64 bits, and every mutant refuted with a real counterexample."""

from __future__ import annotations

import pytest

from proofs import prove_all, select_theorems

MASK = (1 << 64) - 1


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    return {r.name: r for r in prove_all(["spsc*"], timeout_seconds=60)}


def test_every_spsc_theorem_is_proved_and_every_mutant_refuted(results: dict[str, object]) -> None:
    names = {t.name for t in select_theorems(["spsc*"])}
    assert names == set(results) and len(names) >= 10
    for name, result in results.items():
        assert result.ok, f"{name}: expected {result.expect}, got {result.status} {result.note}"  # type: ignore[attr-defined]


def test_counterexamples_are_real(results: dict[str, object]) -> None:
    w = results["spsc_full_empty_distinct:mutant_signed_compare"].witness  # type: ignore[attr-defined]
    head, tail, c = w["head"], w["tail"], w["C"]

    def signed(x: int) -> int:
        return x - (1 << 64) if x >> 63 else x

    full = signed((head + c) & MASK) <= signed(tail)
    assert full != ((tail - head) & MASK == c)  # the signed test misjudges this state
    w = results["spsc_mask_indexes:mutant_capacity_6_modulo"].witness  # type: ignore[attr-defined]
    i = w["i"]
    assert ((i + 1) & MASK) % 6 != (i % 6 + 1) % 6
    w = results["spsc_cached_no_overwrite:mutant_stale_guard"].witness  # type: ignore[attr-defined]
    assert (w["tail"] - w["head"]) & MASK >= w["C"]  # it would overwrite an unread slot
