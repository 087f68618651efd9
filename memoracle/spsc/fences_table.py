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
from typing import Callable, Iterable

from impl.cpu_emu import Model
from impl.spsc import VARIANTS, Fences, Variant
from memoracle.spsc.interleave import Scenario, explore
from spec.spsc_model import Criterion

#: The table's workload: a ring of capacity 1, two push attempts, two pop attempts
#: (enough to see "full", "empty", a wrap of the slot index and a reused slot).
TABLE_WORKLOAD = {"capacity": 1, "pushes": 2, "pops": 2}

#: The table's notation for each knob of :class:`impl.spsc.Fences`.
SHORT = {
    "producer_acquire_head": "P:acq(head)",
    "producer_release_tail": "P:rel(tail)",
    "producer_fence_after_tail": "P:fence",
    "consumer_acquire_tail": "C:acq(tail)",
    "consumer_release_head": "C:rel(head)",
    "consumer_fence_after_head": "C:fence",
}


def parse_fences(text: str) -> Fences:
    """The fences named in ``text``: knob names or the table's notation, separated by
    ``,`` or ``+`` (``"P:fence + C:fence"``, ``"producer_release_tail"``); ``""`` or
    ``"none"`` is no fence. :class:`ValueError` names an unknown one and lists the rest."""
    by_short = {short.lower(): name for name, short in SHORT.items()}
    names = []
    for part in text.replace("+", ",").split(","):
        word = part.strip()
        if not word or word.lower() == "none":
            continue
        name = by_short.get(word.lower().replace(" ", ""), word)
        if name not in SHORT:
            known = ", ".join(f"{short} ({knob})" for knob, short in SHORT.items())
            raise ValueError(f"unknown fence {word!r} (known: {known})")
        names.append(name)
    return Fences.of(names)


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


def fences_table(
    models: Iterable[Model] = tuple(Model),
    variants: Iterable[Variant] = VARIANTS,
    criteria: Iterable[Criterion] = tuple(Criterion),
    on_cell: Callable[[Cell], None] | None = None,
) -> list[Cell]:
    """Every cell (by default: models SC, TSO, WEAK × variants × criteria strict,
    tolerant), or those of the given models, variants and criteria; ``on_cell`` is
    called as each is done."""
    cells = []
    for model in models:
        for variant in variants:
            for criterion in criteria:
                cells.append(cell(model, variant, criterion))
                if on_cell is not None:
                    on_cell(cells[-1])
    return cells


def render_markdown(cells: list[Cell]) -> str:
    """The table in Markdown: one row per model and variant, one column per criterion
    (the criteria the cells cover)."""
    criteria = [c for c in Criterion if any(cell.criterion is c for cell in cells)]
    lines = [
        "| memory model | ring | " + " | ".join(c.value for c in criteria) + " |",
        "|---|---|" + "---|" * len(criteria),
    ]
    by_key = {(c.model, c.variant, c.criterion): c for c in cells}
    rows = dict.fromkeys((c.model, c.variant) for c in cells)
    for model, variant in rows:
        texts = [by_key[(model, variant, criterion)].text() for criterion in criteria]
        lines.append(f"| {model.value} | {variant} | " + " | ".join(texts) + " |")
    return "\n".join(lines)
