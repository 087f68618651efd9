"""The import rule of README.md ("Import direction"), enforced over every module.

- ``spec/`` imports the standard library and ``spec`` only.
- ``impl/`` takes from ``spec/`` only interfaces: Protocols, enums, exception types,
  plain-data dataclasses (no method but the generated dunders), type aliases and
  UPPER_CASE constants of plain values — never a function or a class with logic, so a
  conformance check never compares an implementation with the spec's own code.
- ``proofs/`` imports ``proofs``, ``spec``, ``z3`` and the standard library only.
- No module uses another project module's private ``_name``: not by ``from m import _y``,
  not by ``m._y`` on an imported module, and not by ``obj._y`` for a ``_y`` that the
  module itself never defines (``self``/``cls``/``super()`` and the namedtuple API aside).
- ``memoracle`` never imports ``benchmarks``, and the top-level packages import each other
  without a cycle. Imports inside functions count like any other.
``tests/`` may import anything and is not checked.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("spec", "impl", "proofs", "memoracle", "benchmarks")
MAY_IMPORT = {  # the project packages each top-level package may import
    "spec": {"spec"}, "impl": {"impl", "spec"}, "proofs": {"proofs", "spec"},
    "memoracle": {"memoracle", "spec", "impl", "proofs"}, "benchmarks": set(TOPS)}
THIRD_PARTY = {"proofs": {"z3", "rich"}}  # rich draws the proofs' results table
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
KNOWN_PRIVATE_REACH: set[str] = set()  # modules allowed to reach private state: none


def _constant(value: object) -> bool:
    if isinstance(value, (int, float, str, bytes, type(None))):
        return True
    if isinstance(value, dict):
        return all(_constant(k) and _constant(v) for k, v in value.items())
    return isinstance(value, (tuple, frozenset)) and all(_constant(v) for v in value)


def is_interface(name: str, obj: object) -> bool:
    """Whether ``obj`` (imported from ``spec`` as ``name``) may be used by ``impl``."""
    if isinstance(obj, type):
        if getattr(obj, "_is_protocol", False) or issubclass(obj, (enum.Enum, BaseException)):
            return True
        methods = [k for k, v in vars(obj).items() if inspect.isfunction(v)
                   or isinstance(v, (property, classmethod, staticmethod))]
        return dataclasses.is_dataclass(obj) and all(
            m.startswith("__") and m != "__post_init__" for m in methods)
    if type(obj).__module__ == "typing":  # a type alias, e.g. Literal["MERGEABLE", ...]
        return True
    return name.isupper() and _constant(obj)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("_") and name not in NAMEDTUPLE_API


def _module_of(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str, str | None]]:
    """Every import as (line, absolute module, imported name or None for ``import m``)."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join(package[:-1] + ([base] if base else []))
            found += [(node.lineno, base, a.name) for a in node.names]
    return found


def _import_violations(root: Path, top: str, rel: Path, tree: ast.AST,
                       edges: set[tuple[str, str]]) -> tuple[list[str], set[str], set[str]]:
    """The breaches among the imports of one module, and the names it binds to project
    modules and to everything else it imports."""
    found: list[str] = []
    module_aliases: set[str] = set()
    other_aliases: set[str] = set()
    for line, mod, name in _imports(tree, _module_of(rel)):
        where, target = f"{rel}:{line}", mod.split(".")[0]
        full = f"{mod}.{name}" if name else mod
        if target not in TOPS:
            other_aliases.add((name or mod).split(".")[0])
            if top == "spec" and target not in sys.stdlib_module_names:
                found.append(f"{where}: spec imports {full}, not standard library")
            if top == "proofs" and target not in sys.stdlib_module_names | THIRD_PARTY[top]:
                found.append(f"{where}: proofs imports {full}")
            continue
        if target != top:
            edges.add((top, target))
        if target not in MAY_IMPORT[top]:
            found.append(f"{where}: {top} imports {full}")
        elif name and _private(name) and str(rel) not in KNOWN_PRIVATE_REACH:
            found.append(f"{where}: private {full}")
        elif top == "impl" and target == "spec":
            obj = getattr(importlib.import_module(mod), name) if name else None
            if not name or inspect.ismodule(obj) or not is_interface(name, obj):
                found.append(f"{where}: impl uses spec logic {full}")
        as_path = root.joinpath(*mod.split("."), name or "")
        if name is None or as_path.is_dir() or as_path.with_suffix(".py").exists():
            module_aliases.add((name or mod).split(".")[0])
    return found, module_aliases, other_aliases


def _private_reaches(rel: Path, tree: ast.AST, module_aliases: set[str],
                     other_aliases: set[str]) -> list[str]:
    """``m._y`` on an imported project module, and ``obj._y`` for a ``_y`` this module
    never defines (outside a class, ``self`` is just another object)."""
    defined = {n.name for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    defined |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {n.attr for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    in_class = {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for n in ast.walk(c)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        owner = ast.unparse(node.value).split(".")[0].split("(")[0]
        own = owner in {"self", "cls", "super"} and id(node) in in_class
        known = {str(rel), f"{rel}:{node.attr}"} & KNOWN_PRIVATE_REACH
        if not known and (owner in module_aliases or (
                not own and owner not in other_aliases and node.attr not in defined)):
            found.append(f"{rel}:{node.lineno}: private {ast.unparse(node)}")
    return found


def violations(root: Path) -> list[str]:
    """Every breach of the rule in the packages under ``root``, as ``path:line: reason``."""
    found: list[str] = []
    edges: set[tuple[str, str]] = set()
    for top in TOPS:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            tree = ast.parse(path.read_text(), str(rel))
            breaches, module_aliases, other_aliases = _import_violations(root, top, rel, tree, edges)
            found += breaches + _private_reaches(rel, tree, module_aliases, other_aliases)
    reach = {top: {b for a, b in edges if a == top} for top in TOPS}
    for _ in TOPS:  # transitive closure over five nodes
        reach = {top: seen.union(*(reach[t] for t in seen)) for top, seen in reach.items()}
    return found + [f"import cycle through {top}" for top in TOPS if top in reach[top]]


def test_the_repository_keeps_the_import_rule() -> None:
    assert violations(ROOT) == []


PLANTED = {
    "spec/bad.py": ("from impl.mmu_emu import Machine\n", "spec imports impl.mmu_emu.Machine"),
    "spec/numpy_user.py": ("import numpy\n", "spec imports numpy, not standard library"),
    "impl/bad.py": ("def f():\n    from spec.paging import walk\n", "impl uses spec logic"),
    "impl/mod.py": ("import spec.paging\n", "impl uses spec logic spec.paging"),
    "impl/alias.py": ("from spec.paging import make_entry as e\n", "spec logic"),
    "proofs/bad.py": ("from impl.spsc import SpscRing\n", "proofs imports impl"),
    "memoracle/bad.py": ("def f():\n    import benchmarks\n", "memoracle imports benchmarks"),
    "memoracle/priv.py": ("from impl.umfs import _pages\n", "private impl.umfs._pages"),
    "memoracle/attr.py": ("import impl.umfs\nx = impl.umfs._pages\n", "private impl.umfs"),
    "memoracle/obj.py": ("def f(h):\n    h._append(1)\n", "private h._append"),
    "impl/free.py": ("def f(self):\n    self._memcmp(1)\n", "private self._memcmp"),
    "impl/cycle.py": ("from memoracle import exitcodes\n", "impl imports memoracle"),
}


@pytest.mark.parametrize("path", sorted(PLANTED))
def test_a_planted_violation_is_reported(tmp_path: Path, path: str) -> None:
    source, reason = PLANTED[path]
    for top in TOPS:
        (tmp_path / top).mkdir()
    (tmp_path / path).write_text(source)
    found = violations(tmp_path)
    assert any(path in v and reason in v for v in found), found


def test_an_import_cycle_is_reported(tmp_path: Path) -> None:
    for top in TOPS:
        (tmp_path / top).mkdir()
    (tmp_path / "impl/up.py").write_text("def f():\n    import memoracle.cli\n")
    (tmp_path / "memoracle/down.py").write_text("from impl.spsc import SpscRing\n")
    assert "import cycle through impl" in violations(tmp_path)


def test_interfaces_and_logic_are_told_apart() -> None:
    from spec import ksm_api, paging, spsc_model, umfs_api

    assert all(is_interface(n, getattr(m, n)) for m, n in [
        (umfs_api, "FileSystem"), (umfs_api, "NoEntry"), (umfs_api, "Stat"),
        (ksm_api, "RunMode"), (ksm_api, "Advice"), (paging, "LEVEL_SHIFT"), (paging, "P")])
    assert not any(is_interface(n, getattr(m, n)) for m, n in [
        (paging, "walk"), (paging, "is_canonical"), (spsc_model, "BoundedQueue"), (spsc_model, "QueueSpec")])
