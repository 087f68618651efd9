"""Rules the test suite keeps, checked on its own source (each rule also on a planted
violation, so that the check is seen to fail):

- no test asserts a wall-clock time (times are benchmark figures, see benchmarks/);
- every Hypothesis size comes from the loaded profile: ``max_examples`` is always
  ``max(N, settings.default.max_examples)``, so ``HYPOTHESIS_PROFILE=fuzz`` scales
  every test and no test caps it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: Parts of names that hold a duration or read a clock (``time`` only as a whole name).
TIME_WORDS = ("seconds", "elapsed", "duration", "perf_counter", "monotonic")


def _is_time(name: str) -> bool:
    return name == "time" or any(word in name for word in TIME_WORDS)


def _names(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def timing_assertions(source: str) -> list[int]:
    """Lines of ``assert`` statements that order a duration (``<``, ``<=``, ``>``, ``>=``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            ordered = any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in compare.ops)
            operands = [compare.left, *compare.comparators]
            timed = any(_is_time(name) for o in operands for name in _names(o))
            if ordered and timed:
                lines.append(node.lineno)
    return lines


def _from_profile(value: ast.expr) -> bool:
    """``max(<anything>, settings.default.max_examples)``, or a fixed fraction of the
    profile's size for an expensive test (``settings.default.max_examples // K``): both
    scale with ``HYPOTHESIS_PROFILE``."""

    def scaled(arg: ast.expr) -> bool:
        if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.FloorDiv):
            arg = arg.left
        return ast.unparse(arg) == "settings.default.max_examples"

    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "max"
        and any(scaled(arg) for arg in value.args)
    )


def capped_sizes(source: str) -> list[int]:
    """Lines where ``max_examples=`` is not taken from the loaded profile."""
    return [
        keyword.value.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "max_examples" and not _from_profile(keyword.value)
    ]


def _suite() -> list[Path]:
    return sorted(path for path in TESTS.glob("*.py") if path.name != "conftest.py")  # conftest defines the profiles


@pytest.mark.parametrize("path", _suite(), ids=lambda path: path.name)
def test_no_test_asserts_a_time(path: Path) -> None:
    assert timing_assertions(path.read_text()) == [], f"{path.name} asserts a duration"


@pytest.mark.parametrize("path", _suite(), ids=lambda path: path.name)
def test_every_size_comes_from_the_profile(path: Path) -> None:
    assert capped_sizes(path.read_text()) == [], f"{path.name} caps max_examples"


def test_the_rules_catch_planted_violations() -> None:
    timed = "def test_x(result):\n    assert result.seconds" + " < 10\n    assert elapsed >= 0.5 or True\n"
    assert timing_assertions(timed) == [2, 3]
    assert timing_assertions("def test_x(r):\n    assert time.time() - t0 <= 5\n") == [2]
    untimed = "def test_x(r):\n    assert r.count < 10\n    assert r.seconds == 0\n    assert exptime(5) > 1\n"
    assert timing_assertions(untimed) == []
    capped = (
        "@settings(max_examples=300)\ndef test_a(): ...\n"
        "S = settings(max_examples=max(20, 60))\n"
        "T = settings(max_examples=max(20, settings.default.max_examples))\n"
        "U = settings(max_examples=max(3, settings.default.max_examples // 12))\n"
        "V = settings(max_examples=max(3, 60 // 12))\n"
    )
    assert capped_sizes(capped) == [1, 3, 6]
