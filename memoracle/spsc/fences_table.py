"""The table "fences needed, per memory model, per criterion, per ring variant", computed.

For each cell, every subset of the ring's six ordering knobs (:class:`impl.spsc.Fences`)
is explored exhaustively (no preemption bound) on the table's workload, smallest subsets
first; a subset is *sufficient* when no execution violates the criterion, and the cell
lists the *minimal* sufficient subsets (no proper subset is sufficient). Supersets of a
sufficient subset are not explored: adding an ordering to a correct ring removes
executions and cannot add any (each knob only delays a step or a drain).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from impl.cpu_emu import Model
from impl.spsc import VARIANTS, Fences, Variant
from memoracle.spsc.interleave import Scenario, explore
from spec.spsc_model import Criterion

#: The table's workload: a ring of capacity 1, two push attempts, two pop attempts
#: (enough to see "full", "empty", a wrap of the slot index and a reused slot).
TABLE_WORKLOAD = {"capacity": 1, "pushes": 2, "pops": 2}

SHORT = {
    "producer_acquire_head": "P:acq(head)",
    "producer_release_tail": "P:rel(tail)",
    "producer_fence_after_tail": "P:fence",
    "consumer_acquire_tail": "C:acq(tail)",
    "consumer_release_head": "C:rel(head)",
    "consumer_fence_after_head": "C:fence",
}


@dataclass(frozen=True)
class Cell:
    """One cell: the minimal sufficient fence sets and how many executions were run."""

    model: Model
    variant: Variant
    criterion: Criterion
    minimal: tuple[tuple[str, ...], ...]
    executions: int

    def text(self) -> str:
        """``none`` for the empty set; alternatives joined by `` or ``."""
        if not self.minimal:
            return "not fixable by these knobs"
        return " or ".join(
            "none" if not names else " + ".join(SHORT[n] for n in names) for names in self.minimal
        )


def sufficient(scenario: Scenario, criterion: Criterion) -> tuple[bool, int]:
    """Whether every execution of ``scenario`` satisfies ``criterion``; executions run."""
    result = explore(scenario, criterion)
    return result.ok, result.executions


def cell(model: Model, variant: Variant, criterion: Criterion) -> Cell:
    """Compute one cell of the table."""
    names = Fences.names()
    found: list[tuple[str, ...]] = []
    executions = 0
    for size in range(len(names) + 1):
        for subset in combinations(names, size):
            if any(set(smaller) <= set(subset) for smaller in found):
                continue
            scenario = Scenario(model, variant, Fences.of(subset), **TABLE_WORKLOAD)  # type: ignore[arg-type]
            ok, count = sufficient(scenario, criterion)
            executions += count
            if ok:
                found.append(subset)
    return Cell(model, variant, criterion, tuple(found), executions)


def fences_table() -> list[Cell]:
    """Every cell: models SC, TSO, WEAK × variants × criteria strict, tolerant."""
    return [
        cell(model, variant, criterion)
        for model in Model
        for variant in VARIANTS
        for criterion in Criterion
    ]


def render_markdown(cells: list[Cell]) -> str:
    """The table in Markdown: one row per model and variant, one column per criterion."""
    lines = [
        "| memory model | ring | strict | tolerant |",
        "|---|---|---|---|",
    ]
    by_key = {(c.model, c.variant, c.criterion): c for c in cells}
    for model in Model:
        for variant in VARIANTS:
            strict = by_key[(model, variant, Criterion.STRICT)].text()
            tolerant = by_key[(model, variant, Criterion.TOLERANT)].text()
            lines.append(f"| {model.value} | {variant} | {strict} | {tolerant} |")
    return "\n".join(lines)
