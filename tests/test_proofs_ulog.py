"""The U-Log proofs: their encoding is the spec's persistency model, and every theorem
gives its verdict.

The first half ties ``proofs/ulog.py`` to something outside it. On concrete writes, the
crash images its Z3 encoding allows at each crash point are enumerated and compared
with ``spec.persistency.allowed_images`` for the same concrete program; every such image
is recovered by a plain-Python recovery written here from the module's description, which
must give the old or the new file and agree with the Z3 recovery term evaluated on the
image. The recovery term is also compared with the Python recovery on random images,
and the idempotence theorem is brute-forced on concrete logs.

The second half runs the theorems: each is proved, each mutant refuted, and the
counterexamples name the crash point and which pending stores persisted.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pytest
import z3
from hypothesis import given
from hypothesis import strategies as st

import proofs
from proofs import ulog
from proofs.registry import ProofResult
from spec.persistency import ATOMIC_UNIT, Clwb, Instruction, Sfence, Store, allowed_images

MASK = 2**64 - 1
FNV_OFFSET, FNV_PRIME = 0xCBF2_9CE4_8422_2325, 0x0000_0100_0000_01B3
MEMORY_BYTES = ATOMIC_UNIT * (max(ulog.LOCATIONS) + 1)

Words = dict[int, int]

# ------------------------------------------------------------ a concrete checksum


def py_checksum(words: Sequence[int]) -> int:
    """FNV-1a over 64-bit words: a concrete checksum both sides can compute."""
    h = FNV_OFFSET
    for w in words:
        h = ((h ^ w) * FNV_PRIME) & MASK
    return h


def z3_checksum(words: Sequence[Any]) -> Any:
    """The same checksum as a Z3 term."""
    h = z3.BitVecVal(FNV_OFFSET, 64, words[0].ctx)
    for w in words:
        h = (h ^ w) * FNV_PRIME
    return h


# ------------------------------------------------------ recovery, in plain Python


def py_covered(words: Mapping[int, int]) -> list[int]:
    count = words[ulog.COUNT]
    out = [count]
    for slot in range(ulog.RECORD_SLOTS):
        used = slot < count
        length = words[ulog.record_len(slot)]
        out.append(words[ulog.record_addr(slot)] if used else 0)
        out.append(length if used else 0)
        for j in range(ulog.RECORD_VALUES):
            out.append(words[ulog.record_value(slot, j)] if used and j < length else 0)
    return out


def py_recover(words: Mapping[int, int]) -> Words:
    """Recovery as the module describes it: trust the log only if state is VALID and
    the checksum matches; restore records count-1 .. 0 into file words; clear state."""
    image = dict(words)
    trusted = image[ulog.STATE] == ulog.LOG_VALID
    if not trusted or image[ulog.CHECKSUM] != py_checksum(py_covered(image)):
        return image
    for slot in reversed(range(min(image[ulog.COUNT], ulog.RECORD_SLOTS))):
        addr, length = image[ulog.record_addr(slot)], image[ulog.record_len(slot)]
        for target in ulog.FILE_WORDS:
            j = target - addr
            if 0 <= j < min(length, ulog.RECORD_VALUES):
                image[target] = image[ulog.record_value(slot, j)]
    image[ulog.STATE] = 0
    return image


def py_file(words: Mapping[int, int]) -> tuple[int, int, tuple[int, ...]]:
    """(size, link, data below the size)."""
    size = words[ulog.SIZE]
    return size, words[ulog.LINK], tuple(words[m] for m in ulog.DATA if m < size)


# ------------------------------------------------- concrete instances of the encoding


def _bv(value: int, ctx: Any) -> Any:
    return z3.BitVecVal(value, 64, ctx)


def write_substitution(v: ulog.WriteVars, values: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """Pairs (variable, value) fixing every variable of ``v``."""
    pairs = [(v.off, values["off"]), (v.length, values["len"]), (v.size, values["size"])]
    pairs += [(v.link, values["link"]), (v.new_link, values["new_link"])]
    pairs += [(v.old[m], values["old"][m]) for m in ulog.DATA]
    pairs += [(v.new[m], values["new"][m]) for m in ulog.DATA]
    pairs += [(v.stale[loc], values["stale"][loc]) for loc in ulog.LOG_WORDS]
    pairs += [(v.mcsum, values.get("mcsum", 0x5EA1))]  # the inode checksum word (unsealed here)
    return [(var, _bv(value, v.ctx)) for var, value in pairs]


def concrete(term: Any, pairs: Sequence[tuple[Any, Any]]) -> Any:
    return z3.simplify(z3.substitute(term, *pairs)) if pairs else z3.simplify(term)


def concrete_int(term: Any, pairs: Sequence[tuple[Any, Any]]) -> int:
    value = concrete(term, pairs)
    assert z3.is_bv_value(value), value
    number: int = value.as_long()
    return number


def concrete_words(terms: Sequence[Any], pairs: Sequence[tuple[Any, Any]]) -> list[int]:
    """Several 64-bit terms at once (one substitution of their concatenation: z3py's
    substitute spends its time checking the pairs, once per call)."""
    packed = concrete_int(z3.Concat(*terms), pairs)
    count = len(terms)
    return [(packed >> (64 * (count - 1 - i))) & MASK for i in range(count)]


def concrete_program(
    program: ulog.Program, pairs: Sequence[tuple[Any, Any]]
) -> list[Instruction | None]:
    """The program as spec instructions, with ``None`` for stores that are not issued."""
    out: list[Instruction | None] = []
    for step in program:
        instruction = step.instruction
        if isinstance(instruction, ulog.SymStore):
            if z3.is_true(concrete(instruction.issued, pairs)):
                value = concrete_int(instruction.value, pairs)
                out.append(Store(instruction.loc * ATOMIC_UNIT, value.to_bytes(8, "little")))
            else:
                out.append(None)
        else:
            assert isinstance(instruction, (Clwb, Sfence))
            out.append(instruction)
    return out


def to_bytes(words: Mapping[int, int]) -> bytes:
    image = bytearray(MEMORY_BYTES)
    for loc, value in words.items():
        image[loc * 8 : loc * 8 + 8] = value.to_bytes(8, "little")
    return bytes(image)


def to_words(image: bytes) -> Words:
    return {loc: int.from_bytes(image[loc * 8 : loc * 8 + 8], "little") for loc in ulog.LOCATIONS}


def spec_images(
    initial: Words, program: Sequence[Instruction | None], point: int
) -> set[tuple[int, ...]]:
    """The spec's crash images after ``point`` instructions, as word tuples."""
    prefix = [i for i in program[:point] if i is not None]
    return {
        tuple(to_words(image)[loc] for loc in ulog.LOCATIONS)
        for image in allowed_images(to_bytes(initial), prefix)
    }


def z3_images(
    the_crash: ulog.Crash, pairs: Sequence[tuple[Any, Any]]
) -> list[set[tuple[int, ...]]]:
    """For each crash point, every crash image the Z3 encoding allows there (enumerated
    with blocking clauses)."""
    ctx = the_crash.point.ctx
    solver = z3.Solver(ctx=ctx)
    solver.add(concrete(the_crash.allowed, pairs))
    packed = concrete(z3.Concat(*(the_crash.image[loc] for loc in ulog.LOCATIONS)), pairs)
    count = len(ulog.LOCATIONS)
    per_point: list[set[tuple[int, ...]]] = []
    for point in range(len(the_crash.program) + 1):
        solver.push()
        solver.add(the_crash.point == point)
        found: set[tuple[int, ...]] = set()
        while solver.check() == z3.sat:
            value = solver.model().eval(packed, model_completion=True)
            number = value.as_long()
            found.add(tuple((number >> (64 * (count - 1 - i))) & MASK for i in range(count)))
            solver.add(packed != value)
            assert len(found) < 10_000
        solver.pop()
        per_point.append(found)
    return per_point


def _values(off: int, length: int, size: int) -> dict[str, Any]:
    return {
        "off": off,
        "len": length,
        "size": size,
        "link": 0x42_1000,
        "new_link": 0x42_7000,
        "old": [0x1000 + m for m in ulog.DATA],
        "new": [0x2000 + m for m in ulog.DATA],
        # a stale, idle log whose old records point into the file
        "stale": {loc: 0xDEAD_0000 + loc for loc in ulog.LOG_WORDS}
        | {ulog.STATE: 0, ulog.COUNT: 1, ulog.record_addr(0): 2, ulog.record_len(0): 3},
    }


CASES = [
    # (name, append?, off, len, size): writes that span the two data lines
    ("in-place across lines", False, 6, 4, 12),
    ("in-place one word", False, 0, 1, 3),
    ("append across lines", True, 7, 3, 7),
]


@pytest.mark.parametrize("name, append, off, length, size", CASES)
def test_crash_images_are_the_specs_and_recover_to_old_or_new(
    name: str, append: bool, off: int, length: int, size: int
) -> None:
    v = ulog.fresh_write_vars()
    values = _values(off, length, size)
    pairs = write_substitution(v, values)
    checksum = z3_checksum
    build = ulog.append_program if append else ulog.inplace_write_program
    program = build(v, checksum, ulog.PROTOCOL)
    initial_sym = ulog.initial_image(v)
    the_crash = ulog.crash(program, initial_sym, "op")
    initial = {loc: concrete_int(initial_sym[loc], pairs) for loc in ulog.LOCATIONS}
    new_file = ulog.append_new_file(v) if append else ulog.inplace_new_file(v)
    old = py_file(initial)
    new = py_file({loc: concrete_int(new_file[loc], pairs) for loc in ulog.FILE_WORDS})
    assert old != new

    # recovery as a Z3 term of a free image, evaluated on each concrete image below
    free = {loc: z3.BitVec(f"img.{loc}", 64, v.ctx) for loc in ulog.LOCATIONS}
    recovered_sym = ulog.recover(free, checksum)
    recovered_files = [recovered_sym[t] for t in ulog.FILE_WORDS]
    program_concrete = concrete_program(program, pairs)
    encoded = z3_images(the_crash, pairs)
    every_image: set[tuple[int, ...]] = set()
    recovered_to = set()
    for point in range(len(program) + 1):
        expected = spec_images(initial, program_concrete, point)
        assert encoded[point] == expected, f"{name}: crash point {point}"
        every_image |= expected
        for image in expected:
            file = py_file(py_recover(dict(zip(ulog.LOCATIONS, image))))
            assert file in (old, new), f"{name}: crash point {point}: {image}"
            recovered_to.add(file)
            if point == len(program):
                assert file == new
    assert recovered_to == {old, new}
    for image in every_image:
        words = dict(zip(ulog.LOCATIONS, image))
        at = [(free[loc], _bv(words[loc], v.ctx)) for loc in ulog.LOCATIONS]
        recovered = py_recover(words)
        assert concrete_words(recovered_files, at) == [recovered[t] for t in ulog.FILE_WORDS]


def test_crash_images_of_a_mutant_include_a_torn_file() -> None:
    """The same enumeration for the missing-fence mutant finds an image that recovers to
    neither file: the brute force and the proof agree on the mutant too."""
    v = ulog.fresh_write_vars()
    pairs = write_substitution(v, _values(6, 2, 12))
    program = ulog.inplace_write_program(v, z3_checksum, ulog.MUTANT_MISSING_FENCE)
    the_crash = ulog.crash(program, ulog.initial_image(v), "op")
    initial = {loc: concrete_int(ulog.initial_image(v)[loc], pairs) for loc in ulog.LOCATIONS}
    new_file = ulog.inplace_new_file(v)
    new = py_file({loc: concrete_int(new_file[loc], pairs) for loc in ulog.FILE_WORDS})
    torn = [
        (point, image)
        for point, found in enumerate(z3_images(the_crash, pairs))
        for image in found
        if py_file(py_recover(dict(zip(ulog.LOCATIONS, image)))) not in (py_file(initial), new)
    ]
    assert torn


def test_guarantee_points_follow_the_spec() -> None:
    """A store is guaranteed just after the fence that follows its line's clwb."""
    v = ulog.fresh_write_vars()
    program = ulog.inplace_write_program(v, z3_checksum)
    points = ulog.guarantee_points(program)
    fences = [i for i, step in enumerate(program) if isinstance(step.instruction, Sfence)]
    for position, step in enumerate(program):
        if isinstance(step.instruction, ulog.SymStore):
            first_fence = min(f for f in fences if f > position)
            assert points[position] == first_fence + 1
        else:
            assert points[position] is None
    mutant = ulog.inplace_write_program(v, z3_checksum, ulog.MUTANT_MISSING_FENCE)
    first_data = next(i for i, s in enumerate(mutant) if s.epoch == "data")
    commit = next(
        i for i, s in enumerate(mutant)
        if isinstance(s.instruction, ulog.SymStore) and s.instruction.label == "log.state := VALID"
    )  # fmt: skip
    commit_point = ulog.guarantee_points(mutant)[commit]
    assert commit_point is not None and commit_point > first_data  # the commit is not durable first


# ------------------------------------------------------ recovery on random images


@st.composite
def images(draw: st.DrawFn) -> Words:
    words = {loc: draw(st.integers(0, MASK)) for loc in ulog.LOCATIONS}
    small = st.integers(0, 30)
    words[ulog.COUNT] = draw(st.sampled_from([0, 1, 2, 3, MASK]))
    for slot in range(ulog.RECORD_SLOTS):
        words[ulog.record_addr(slot)] = draw(st.one_of(small, st.integers(0, MASK)))
        words[ulog.record_len(slot)] = draw(st.one_of(st.integers(0, 20), st.integers(0, MASK)))
    words[ulog.SIZE] = draw(st.one_of(st.integers(0, 16), st.integers(0, MASK)))
    if draw(st.sampled_from([True, True, True, False])):
        words[ulog.STATE] = ulog.LOG_VALID
    if draw(st.sampled_from([True, True, True, False])):
        words[ulog.CHECKSUM] = py_checksum(py_covered(words))
    return words


@pytest.fixture(scope="module")
def recovery_term() -> tuple[dict[int, Any], dict[int, Any]]:
    ctx = z3.Context()
    free = {loc: z3.BitVec(f"img.{loc}", 64, ctx) for loc in ulog.LOCATIONS}
    return free, ulog.recover(free, z3_checksum)


@given(images())
def test_z3_recovery_is_the_python_recovery(
    recovery_term: tuple[dict[int, Any], dict[int, Any]], words: Words
) -> None:
    free, recovered = recovery_term
    ctx = free[ulog.STATE].ctx
    at = [(free[loc], _bv(words[loc], ctx)) for loc in ulog.LOCATIONS]
    expected = py_recover(words)
    got = concrete_words([recovered[loc] for loc in ulog.LOCATIONS], at)
    assert got == [expected[loc] for loc in ulog.LOCATIONS]
    valid = ulog.log_is_valid(free, z3_checksum)
    trusted = words[ulog.STATE] == ulog.LOG_VALID and words[ulog.CHECKSUM] == py_checksum(
        py_covered(words)
    )
    assert z3.is_true(concrete(valid, at)) == trusted


def _valid_log(records: list[tuple[int, list[int]]], file: Words) -> Words:
    words = {loc: 0x5555_0000 + loc for loc in ulog.LOCATIONS} | file
    words[ulog.COUNT] = len(records)
    for slot, (addr, values) in enumerate(records):
        words[ulog.record_addr(slot)] = addr
        words[ulog.record_len(slot)] = len(values)
        for j, value in enumerate(values):
            words[ulog.record_value(slot, j)] = value
    words[ulog.STATE] = ulog.LOG_VALID
    words[ulog.CHECKSUM] = py_checksum(py_covered(words))
    return words


@pytest.mark.parametrize(
    "records",
    [
        [(6, [0xA6, 0xA7, 0xA8])],  # one record across the two data lines
        [(ulog.LINK, [0x42_1000]), (ulog.SIZE, [5])],  # an append's records
        [(3, [0xB3, 0xB4]), (4, [0xC4])],  # overlapping records: reverse order matters
    ],
)
def test_crashed_recovery_recovers_alike_by_brute_force(
    records: list[tuple[int, list[int]]],
) -> None:
    """Every crash image of recovery (the spec's) recovers, in Python, to the same file
    as recovery of the original image, for the correct recovery; the mutant that clears
    the state before the restores' fence has an image that does not."""
    file = {m: 0x1000 + m for m in ulog.DATA} | {ulog.LINK: 0x42_7000, ulog.SIZE: 9}
    words = _valid_log(records, file)
    ctx = z3.Context()
    image = {loc: _bv(words[loc], ctx) for loc in ulog.LOCATIONS}
    full = {t: py_recover(words)[t] for t in ulog.FILE_WORDS}
    variants = ((ulog.RECOVERY, True), (ulog.MUTANT_RECOVERY_EARLY_INVALIDATE, False))
    for recovery, should_hold in variants:
        program = concrete_program(ulog.recovery_program(image, z3_checksum, recovery), [])
        bad = []
        for point in range(len(program) + 1):
            for crashed in spec_images(words, program, point):
                again = py_recover(dict(zip(ulog.LOCATIONS, crashed)))
                if {t: again[t] for t in ulog.FILE_WORDS} != full:
                    bad.append(point)
        assert (not bad) == should_hold, (recovery.name, bad)


# ------------------------------------------------------------------- the theorems

THEOREMS = [
    "ulog_inplace_write_recovers",
    "ulog_append_recovers",
    "ulog_recovery_idempotent",
    "ulog_inplace_write_fenced_header_needs_no_checksum",
    "ulog_append_fenced_header_needs_no_checksum",
    "ulog_append_keeps_metadata_checksum",
    "ulog_inplace_write_single_epoch_recovers",
    "ulog_append_single_epoch_recovers",
]


@pytest.fixture(scope="module")
def results() -> dict[str, ProofResult]:
    return {result.name: result for result in proofs.prove_all(["ulog_*"])}


def test_registry_holds_the_ulog_theorems_and_mutants() -> None:
    names = {theorem.name for theorem in proofs.THEOREMS}
    assert set(THEOREMS) <= names
    for theorem in THEOREMS[:2]:
        assert f"{theorem}:mutant_missing_fence" in names
        assert f"{theorem}:mutant_invalidate_before_flush" in names
    ours = [t for t in proofs.THEOREMS if t.name.startswith("ulog_")]
    assert all((t.expect == "refuted") == (":mutant_" in t.name) for t in ours)
    assert len(ours) == len(THEOREMS) + 8


def test_every_ulog_theorem_gives_its_expected_result(results: dict[str, ProofResult]) -> None:
    assert set(results) == {t.name for t in proofs.THEOREMS if t.name.startswith("ulog_")}
    for result in results.values():
        explained = (
            f"{result.name}: {result.status}, not {result.expect}\n"
            f"{result.note}\n{result.counterexample}"
        )
        assert result.ok, explained
        assert (result.counterexample is None) == (result.status == "proved")


def test_mutant_counterexamples_name_the_crash_point(results: dict[str, ProofResult]) -> None:
    for result in results.values():
        if result.expect != "refuted":
            continue
        text = result.counterexample
        assert text, result.name
        assert "crash point" in text or "crash during recovery" in text, text
        assert "persisted" in text and "0x" in text, text
        point, length = result.witness["crash_point"], result.witness["instructions"]
        assert 0 <= point <= length
        assert f"{point} of {length} instructions ran" in text


def _persisted(text: str, label: str) -> bool | None:
    """Whether the counterexample lists a pending store with ``label`` as persisted."""
    for line in text.splitlines():
        if label in line and line.rstrip().endswith("persisted"):
            return not line.rstrip().endswith("NOT persisted")
    return None


def test_missing_fence_counterexample_persists_data_before_the_log(
    results: dict[str, ProofResult],
) -> None:
    text = results["ulog_inplace_write_recovers:mutant_missing_fence"].counterexample
    assert text is not None
    data = [line for line in text.splitlines() if " data " in line and "new[" in line]
    assert any(line.rstrip().endswith(" persisted") for line in data), text
    assert _persisted(text, "log.state := VALID") is False or "recovery ignores it" in text
    assert "neither the old file nor the new file" in text


def test_invalidate_before_flush_counterexample_clears_state_first(
    results: dict[str, ProofResult],
) -> None:
    for name in ("ulog_inplace_write_recovers", "ulog_append_recovers"):
        text = results[f"{name}:mutant_invalidate_before_flush"].counterexample
        assert text is not None
        assert _persisted(text, "log.state := 0 (before the update is flushed)") is True, text
        assert "NOT persisted" in text and "recovery ignores it" in text, text


def test_recovery_mutant_counterexample_shows_the_lost_restores(
    results: dict[str, ProofResult],
) -> None:
    text = results["ulog_recovery_idempotent:mutant_invalidate_before_restore_fence"].counterexample
    assert text is not None
    assert _persisted(text, "log.state := 0 (before the restores are fenced)") is True, text
    assert "NOT persisted" in text and "recover(J)" in text


def test_claims_are_not_vacuous() -> None:
    """The hypotheses of each write theorem admit a crash at every point (the solver
    finds one at the start, in the middle and at the end)."""
    for append in (False, True):
        v = ulog.fresh_write_vars()
        claim = ulog.write_claim(v, append, ulog.PROTOCOL)
        total = len(claim.crash.program)
        for point in (0, total // 2, total):
            solver = z3.Solver(ctx=v.ctx)
            solver.add(claim.hypotheses, claim.crash.point == point, z3.ULE(1, v.length))
            assert solver.check() == z3.sat, (append, point)

