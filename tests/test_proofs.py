"""The proofs: their Z3 encoding is the spec's walk, and every theorem gives its verdict.

The first half ties ``proofs/paging_z3.py`` (the walk the theorems of
``proofs/page_table.py`` are stated with) to ``spec/paging.py``: the *same* Z3 terms the
theorems are about are evaluated (by substitution and simplification) on concrete page
tables, random and hand-made, and compared field by field with ``spec.paging.walk``.
The second half runs the theorems: every theorem is proved, every mutant refuted with a
readable counterexample, and ``python -m proofs`` reports it with the right exit code.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import z3
from hypothesis import given
from hypothesis import strategies as st

import proofs
from proofs import page_table
from proofs import paging_z3 as pt
from proofs.__main__ import main as proofs_main
from proofs.registry import Expectation, ProofResult, Status, Theorem, Verdict
from proofs.solver import check_claim, hex64
from spec.paging import (
    ADDR_MASK,
    ENTRY_SIZE,
    LEVEL_SPAN,
    NX,
    PML4,
    PS,
    RW,
    US,
    P,
    Translation,
    WalkFault,
    entry_address,
    is_canonical,
    make_entry,
    table_index,
    walk,
)

ROOT = Path(__file__).resolve().parent.parent
WORD = 2**64 - 1
FRAME_NUMBERS = st.integers(0, 2**40 - 1)  # frames below 2**52

# ------------------------------------------------------------ concrete page tables


@dataclass(frozen=True)
class Case:
    """A concrete machine state and one access to translate."""

    words: dict[int, int]
    cr3: int
    va: int
    write: bool
    user: bool

    def __repr__(self) -> str:  # readable in Hypothesis's falsifying example
        words = ", ".join(f"{hex64(a)}: {hex64(v)}" for a, v in sorted(self.words.items()))
        return (
            f"Case(cr3={hex64(self.cr3)}, va={hex64(self.va)}, write={self.write}, "
            f"user={self.user}, words={{{words}}})"
        )


def _mostly(chance_in_8: int) -> st.SearchStrategy[bool]:
    """True with probability ``chance_in_8 / 8`` (``sampled_from``, so that Hypothesis's
    preference for small values does not skew it)."""
    return st.sampled_from([True] * chance_in_8 + [False] * (8 - chance_in_8))


def _virtual_addresses() -> st.SearchStrategy[int]:
    def sign_extend(low48: int) -> int:
        return low48 | (0xFFFF << 48) if low48 >> 47 else low48

    canonical = st.integers(0, 2**48 - 1).map(sign_extend)
    non_canonical = st.tuples(st.integers(0, 2**48 - 1), st.integers(1, 0xFFFE)).map(
        lambda low_top: low_top[0] | low_top[1] << 48
    )
    return st.sampled_from(["canonical"] * 6 + ["non-canonical", "any"]).flatmap(
        lambda kind: {"canonical": canonical, "non-canonical": non_canonical}.get(
            kind, st.integers(0, WORD)
        )
    )


@st.composite
def _entry(draw: st.DrawFn, frames: list[int]) -> int:
    """An entry pointing (mostly) at one of ``frames``, with random flags, sometimes
    with the page-size bit, and sometimes with NX or garbage in bits 62..52."""
    target = draw(st.sampled_from(frames)) if draw(_mostly(6)) else draw(FRAME_NUMBERS) << 12
    flags = draw(st.integers(0, 0xFFF)) & ~(P | PS | RW | US)
    flags |= (P if draw(_mostly(7)) else 0) | (PS if draw(_mostly(2)) else 0)
    flags |= (RW if draw(_mostly(6)) else 0) | (US if draw(_mostly(6)) else 0)
    high = draw(st.sampled_from([0, 0, 0, NX, 0xFFF << 52, 0x7FF << 52]))
    return target | flags | high


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Page tables in a handful of frames (so walks go deep and tables may alias, even
    recursively), with entries at the indices ``va`` selects and at a few others."""
    frame_numbers = draw(
        st.lists(
            st.one_of(st.integers(0, 15), FRAME_NUMBERS), min_size=1, max_size=5, unique=True
        )
    )
    frames = [number << 12 for number in frame_numbers]
    va = draw(_virtual_addresses())
    cr3 = frames[0] | draw(st.sampled_from([0, 0, 0x18, 0xFFF]))  # PCID bits are ignored
    words: dict[int, int] = {}
    for frame in frames:
        indices = {table_index(va, level) for level in (4, 3, 2, 1)}
        indices |= set(draw(st.lists(st.integers(0, 511), max_size=2)))
        for index in sorted(indices):
            if draw(_mostly(7)):
                words[frame + ENTRY_SIZE * index] = draw(_entry(frames))
    return Case(words, cr3, va, draw(_mostly(4)), draw(_mostly(4)))


def spec_walk(case: Case) -> tuple[Translation | WalkFault, tuple[int, ...]]:
    """``spec.paging.walk`` on the case, and the entry addresses it read."""
    reads: list[int] = []

    def read_u64(paddr: int) -> int:
        reads.append(paddr)
        return case.words.get(paddr, 0)

    return walk(read_u64, case.cr3, case.va, write=case.write, user=case.user), tuple(reads)


_REASONS = {
    "not present": pt.WalkOutcome.NOT_PRESENT,
    "page-size bit": pt.WalkOutcome.RESERVED_BIT,
    "read-only": pt.WalkOutcome.READ_ONLY,
    "supervisor": pt.WalkOutcome.SUPERVISOR,
    "non-canonical": pt.WalkOutcome.NON_CANONICAL,
}
_LEAF_LEVEL = {LEVEL_SPAN[1]: 1, LEVEL_SPAN[2]: 2, LEVEL_SPAN[3]: 3}


def spec_as_concrete(result: Translation | WalkFault, reads: tuple[int, ...]) -> pt.ConcreteWalk:
    """The spec's result in the shape of :class:`proofs.page_table.ConcreteWalk`."""
    if isinstance(result, Translation):
        assert result.entry_addrs == reads
        return pt.ConcreteWalk(
            pt.WalkOutcome.TRANSLATED,
            _LEAF_LEVEL[result.page_size],
            0,
            result.paddr,
            result.page_size,
            result.writable,
            result.user,
            reads,
        )
    (outcome,) = [kind for phrase, kind in _REASONS.items() if phrase in result.reason]
    return pt.ConcreteWalk(outcome, result.level, result.error_code, 0, 0, False, False, reads)


# ------------------------------------------ the symbolic walk, evaluated concretely


class SymbolicWalk:
    """``translate(mem, cr3, va, write, user)`` over free variables, built once; a case
    is evaluated by substituting its values into these very terms and simplifying."""

    def __init__(self) -> None:
        self.memory = pt.memory_var("mem")
        self.cr3 = pt.word_var("cr3")
        self.va = pt.word_var("va")
        self.write = z3.Bool("write")
        self.user = z3.Bool("user")
        self.walk = pt.translate(self.memory, self.cr3, self.va, self.write, self.user)

    def evaluator(self, case: Case) -> Callable[[Any], Any]:
        substitution = [
            (self.memory, pt.memory_from_words(case.words)),
            (self.cr3, pt.word(case.cr3)),
            (self.va, pt.word(case.va)),
            (self.write, z3.BoolVal(case.write)),
            (self.user, z3.BoolVal(case.user)),
        ]

        def value_of(term: Any) -> Any:
            return z3.simplify(z3.substitute(term, *substitution))

        return value_of

    def evaluate(self, case: Case) -> pt.ConcreteWalk:
        return self.walk.evaluate(self.evaluator(case))


SYMBOLIC = SymbolicWalk()


@given(cases())
def test_z3_walk_is_the_spec_walk(case: Case) -> None:
    """The Z3 terms the theorems reason about compute ``spec.paging.walk``, exactly:
    outcome, level, error code, physical address, page size, rights, entries read."""
    assert SYMBOLIC.evaluate(case) == spec_as_concrete(*spec_walk(case))


# Hand-made walks: one per outcome and level (and the corner cases of rights), so that
# every branch of the walk is compared on every run, whatever the random examples are.
_TABLES = {PML4: 0x1000, 3: 0x2000, 2: 0x3000, 1: 0x4000}
_VA = 0x0000_7F12_3456_789A
_KERNEL_VA = 0xFFFF_8000_0020_1000
_ALL = P | RW | US


def _chain(
    va: int, flags: dict[int, int], *, high: int = 0, page: int = 0x7654_3000
) -> dict[int, int]:
    """Tables at fixed frames along the walk of ``va``: ``flags[level]`` for each level's
    entry (levels absent from ``flags`` get none); leaf entries point at ``page``."""
    words: dict[int, int] = {}
    for level, table in _TABLES.items():
        if level not in flags:
            continue
        leaf = level == 1 or flags[level] & PS
        target = page if leaf else _TABLES[level - 1]
        words[table + ENTRY_SIZE * table_index(va, level)] = target | flags[level] | high
    return words


def _case(flags: dict[int, int], *, write: bool, user: bool, **chain: int) -> Case:
    return Case(_chain(_VA, flags, **chain), 0x1000, _VA, write, user)


_HAND_MADE = {
    "4 KiB page": _case({4: _ALL, 3: _ALL, 2: _ALL, 1: _ALL}, write=True, user=True),
    "2 MiB page": _case({4: _ALL, 3: _ALL, 2: _ALL | PS}, write=False, user=True, page=0x4567_8000),
    "1 GiB page": _case({4: _ALL, 3: _ALL | PS}, write=False, user=False, page=0x7_C000_5000),
    "NX and bits 62..52 ignored": _case(
        {4: _ALL, 3: _ALL, 2: _ALL, 1: _ALL}, write=True, user=True, high=NX | 0x7FF << 52
    ),
    "not present at PML4": _case({}, write=False, user=True),
    "not present at PDPT": _case({4: _ALL, 3: RW | US}, write=True, user=True),
    "not present at PD": _case({4: _ALL, 3: _ALL}, write=False, user=False),
    "not present at PT": _case({4: _ALL, 3: _ALL, 2: _ALL, 1: RW}, write=True, user=False),
    "page-size bit in PML4": _case({4: _ALL | PS}, write=False, user=True),
    "read-only at PML4, 4 KiB page": _case(
        {4: P | US, 3: _ALL, 2: _ALL, 1: _ALL}, write=True, user=True
    ),
    "read-only 1 GiB page, supervisor write (CR0.WP)": _case(
        {4: _ALL, 3: P | US | PS}, write=True, user=False
    ),
    "supervisor 2 MiB page, user read": _case(
        {4: _ALL, 3: P | RW, 2: _ALL | PS}, write=False, user=True
    ),
    "read-only supervisor page, user write (read-only reported)": _case(
        {4: _ALL, 3: _ALL, 2: _ALL, 1: P}, write=True, user=True
    ),
    "supervisor page, supervisor write": _case(
        {4: P | RW, 3: _ALL, 2: _ALL, 1: _ALL}, write=True, user=False
    ),
    "kernel half": Case(
        _chain(_KERNEL_VA, {4: _ALL, 3: _ALL, 2: _ALL, 1: P}), 0x1000, _KERNEL_VA, False, False
    ),
    "non-canonical": Case(_chain(_VA, {4: _ALL}), 0x1000, 0x0000_8000_0000_0000, False, True),
}


@pytest.mark.parametrize("name", list(_HAND_MADE))
def test_z3_walk_is_the_spec_walk_on_hand_made_tables(name: str) -> None:
    case = _HAND_MADE[name]
    assert SYMBOLIC.evaluate(case) == spec_as_concrete(*spec_walk(case))


def test_hand_made_tables_reach_every_outcome() -> None:
    results = [spec_as_concrete(*spec_walk(case)) for case in _HAND_MADE.values()]
    seen = {(result.outcome, result.level) for result in results}
    assert {outcome for outcome, _ in seen} == set(pt.WalkOutcome)
    translated = {level for outcome, level in seen if outcome == pt.WalkOutcome.TRANSLATED}
    not_present = {level for outcome, level in seen if outcome == pt.WalkOutcome.NOT_PRESENT}
    assert translated == {1, 2, 3} and not_present == {1, 2, 3, 4}


@given(st.integers(0, WORD), FRAME_NUMBERS.map(lambda n: n << 12), st.integers(0, 0xFFF))
def test_z3_helpers_are_the_spec_helpers(va: int, paddr: int, flags: int) -> None:
    """Index extraction, canonicity, entry encoding: the Z3 versions equal the spec's."""
    for level in (1, 2, 3, 4):
        index = z3.simplify(pt.table_index_bv(pt.word(va), level)).as_long()
        assert index == table_index(va, level)
    assert z3.is_true(z3.simplify(pt.is_canonical_bv(pt.word(va)))) == is_canonical(va)
    entry = z3.simplify(pt.make_entry_bv(pt.word(paddr), flags)).as_long()
    assert entry == make_entry(paddr, flags)
    assert z3.simplify(pt.entry_address_bv(pt.word(entry))).as_long() == entry_address(entry)


@st.composite
def spliced_cases(draw: st.DrawFn) -> tuple[Case, int, int, int]:
    """A process (``cases()``), a window base, a file PDPT frame outside the PML4 frame
    and an offset in the window, with file tables populated along the offset's walk."""
    case = draw(cases())
    base = draw(st.integers(0, 511)) << 39
    if base >> 47:
        base |= 0xFFFF << 48
    pml4 = case.cr3 & ADDR_MASK
    pdpt = draw(FRAME_NUMBERS.map(lambda n: n << 12).filter(lambda frame: frame != pml4))
    offset = draw(st.integers(0, 2**39 - 1))
    words = dict(case.words)
    frames = [pdpt] + [draw(FRAME_NUMBERS) << 12 for _ in range(2)]
    frames = [frame for frame in frames if frame != pml4]
    for frame in frames:
        for level in (3, 2, 1):
            if draw(_mostly(7)):
                words[frame + ENTRY_SIZE * table_index(offset, level)] = draw(_entry(frames))
    return Case(words, case.cr3, case.va, case.write, case.user), base, pdpt, offset


@given(spliced_cases())
def test_splice_term_and_window_on_concrete_tables(example: tuple[Case, int, int, int]) -> None:
    """On concrete tables: the Z3 ``splice`` is the one-word update the spec's functions
    describe, and after it the spec's walk of ``base + off`` is the Z3 file walk of
    ``off`` (an instance of ``splice_maps_window``, checked through the spec itself)."""
    case, base, pdpt, offset = example
    slot = (case.cr3 & ADDR_MASK) + ENTRY_SIZE * table_index(base, PML4)
    spliced_words = dict(case.words)
    spliced_words[slot] = make_entry(pdpt, P | RW | US)

    memory = pt.memory_from_words(case.words)
    spliced = page_table.splice(memory, pt.word(case.cr3), pt.word(base), pt.word(pdpt))
    for paddr in set(spliced_words) | {slot, slot + ENTRY_SIZE, pdpt}:
        got = z3.simplify(z3.Select(spliced, pt.word(paddr))).as_long()
        assert got == spliced_words.get(paddr, 0)

    after = Case(spliced_words, case.cr3, (base + offset) & WORD, case.write, case.user)
    in_window = spec_as_concrete(*spec_walk(after))
    write, user = z3.BoolVal(case.write), z3.BoolVal(case.user)
    own = pt.file_translate(memory, pt.word(pdpt), pt.word(offset), write, user)
    own_concrete = own.evaluate(z3.simplify)
    if any((addr & ~0xFFF) == (case.cr3 & ADDR_MASK) for addr in own_concrete.entry_addrs):
        return  # outside the theorem's no-aliasing precondition
    assert in_window.entry_addrs == (slot,) + own_concrete.entry_addrs
    assert in_window == pt.ConcreteWalk(
        own_concrete.outcome,
        own_concrete.level,
        own_concrete.error_code,
        own_concrete.paddr,
        own_concrete.page_size,
        own_concrete.writable,
        own_concrete.user,
        in_window.entry_addrs,
    )


# ------------------------------------------------------------------- the theorems


@pytest.fixture(scope="module")
def results() -> dict[str, ProofResult]:
    return {result.name: result for result in proofs.prove_all()}


def test_registry_holds_the_page_table_theorems() -> None:
    names = {theorem.name for theorem in proofs.THEOREMS}
    theorems = {"splice_maps_window", "splice_leaves_others_unchanged", "splice_costs_one_write"}
    assert theorems <= names
    mutants = [theorem for theorem in proofs.THEOREMS if theorem.expect == "refuted"]
    assert mutants and all(":mutant_" in theorem.name for theorem in mutants)


def test_every_theorem_gives_its_expected_result(results: dict[str, ProofResult]) -> None:
    assert set(results) == {theorem.name for theorem in proofs.THEOREMS}
    for result in results.values():
        explained = f"{result.name}: {result.status}, not {result.expect}\n{result.counterexample}"
        assert result.ok, explained
        assert (result.counterexample is None) == (result.status == "proved")


def test_wrong_slot_mutant_counterexample_names_the_wrong_slot(
    results: dict[str, ProofResult],
) -> None:
    result = results["splice_maps_window:mutant_slot_bits_46_38"]
    assert result.status == "refuted" and result.counterexample is not None
    base = result.witness["base"]
    wrong = (base >> 38) & 0x1FF
    right = table_index(base, PML4)
    assert wrong != right
    assert result.witness["written_index"] == wrong and result.witness["window_index"] == right
    assert f"the splice wrote PML4[{wrong}]" in result.counterexample
    assert f"reads PML4[{right}]" in result.counterexample
    assert f"base = {hex64(base)}" in result.counterexample
    va = hex64(base + result.witness["off"])
    assert f"va   = base + off = {va}" in result.counterexample


def test_others_mutant_counterexample_is_an_address_in_the_wrong_slot(
    results: dict[str, ProofResult],
) -> None:
    result = results["splice_leaves_others_unchanged:mutant_slot_bits_46_38"]
    assert result.status == "refuted"
    assert table_index(result.witness["va"], PML4) == result.witness["written_index"]


def test_one_write_mutant_counterexample_is_a_word_outside_the_slot(
    results: dict[str, ProofResult],
) -> None:
    result = results["splice_costs_one_write:mutant_tags_file_table"]
    assert result.status == "refuted"
    witness = result.witness
    assert witness["addr"] != witness["slot"] and witness["before"] != witness["after"]


def test_report_shows_table_and_counterexamples(results: dict[str, ProofResult]) -> None:
    text = proofs.render_results(list(results.values()), width=200)
    for name in results:
        assert name in text
    assert "counterexample (expected): splice_maps_window:mutant_slot_bits_46_38" in text
    assert "all as expected" in text


def test_verdicts_follow_the_solver() -> None:
    x = pt.word_var("x")

    def explain(model: Any) -> tuple[str, dict[str, int]]:
        return "x", {"x": model.eval(x, model_completion=True).as_long()}

    assert check_claim(x | 1 != 0, timeout_ms=10_000, explain=explain).status == "proved"
    refuted = check_claim(z3.ULT(x, 5), timeout_ms=10_000, explain=explain)
    assert refuted.status == "refuted" and refuted.witness["x"] >= 5
    contradictory = z3.And(z3.ULT(x, 1), z3.UGT(x, 5))
    vacuous = check_claim(
        z3.Implies(contradictory, x == 42),
        timeout_ms=10_000,
        explain=explain,
        hypotheses=contradictory,
    )
    assert vacuous.status == "unknown" and vacuous.note is not None and "vacuous" in vacuous.note


def _fake(name: str, status: Status, expect: Expectation) -> Theorem:
    return Theorem(name, "a fake theorem", lambda _timeout_ms: Verdict(status), expect)


def test_unknown_is_never_ok_and_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _fake("u", "unknown", "proved").prove().ok
    assert not _fake("u", "unknown", "refuted").prove().ok
    monkeypatch.setattr(proofs.registry, "THEOREMS", [_fake("fine", "proved", "proved")])
    assert proofs_main([]) == 0
    monkeypatch.setattr(proofs.registry, "THEOREMS", [_fake("mutant", "proved", "refuted")])
    assert proofs_main([]) == 1
    monkeypatch.setattr(proofs.registry, "THEOREMS", [_fake("slow", "unknown", "proved")])
    assert proofs_main([]) == 3  # inconclusive, not a violation
    monkeypatch.setattr(proofs.registry, "THEOREMS", [_fake("slow", "unknown", "proved"), _fake("m", "proved", "refuted")])
    assert proofs_main([]) == 1  # a wrong result outweighs an unknown
    assert proofs_main(["no_such_theorem"]) == 2


def test_python_m_proofs_exits_zero() -> None:
    # The command itself, on the page-table theorems and their mutants: every theorem's
    # verdict is already checked in-process above, so this need not prove them twice.
    completed = subprocess.run(
        [sys.executable, "-m", "proofs", "splice_*"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "splice_maps_window" in completed.stdout
    assert "all as expected" in completed.stdout
