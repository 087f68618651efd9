"""How much of ``impl/`` the campaigns of ``memoracle check`` reach: branch coverage.

``make coverage`` (``python -m benchmarks.coverage [--seed N]``) runs ``memoracle check``
over every system but the proofs (which run no implementation code) in a child process
under coverage.py (``--branch --source=impl``), then prints one row per module of
``impl/``: branches, branches taken, the branch coverage, and statements missed. Unit
tests are not run: the figure is what the campaigns alone reach.

``python -m benchmarks --only coverage`` gives the figure ``coverage.campaign_branch_impl``:
taken branches ÷ branches over all of ``impl/`` (coverage.py counts a branch as each
possible jump of a line that can go two ways), in percent. The check's base seed is 0
(or ``$MEMORACLE_SEED``), so the figure is reproducible.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Figure

#: The systems whose campaigns are measured (``proofs`` runs Z3 on the specs only).
SYSTEMS = ("machine", "umfs", "spsc", "sphinx", "ksm")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ModuleReach:
    """One module of ``impl/``: branches and statements, and how many the campaigns took."""

    module: str
    branches: int
    taken: int
    statements: int
    missed_statements: int

    @property
    def percent(self) -> float:
        """Branches taken, in percent (100 for a module without branches)."""
        return 100.0 * self.taken / self.branches if self.branches else 100.0


@dataclass(frozen=True)
class Reach:
    """The whole measurement: per module, and whether ``memoracle check`` passed."""

    modules: tuple[ModuleReach, ...]
    check_exit: int
    seed: int

    @property
    def branches(self) -> int:
        return sum(m.branches for m in self.modules)

    @property
    def taken(self) -> int:
        return sum(m.taken for m in self.modules)

    @property
    def percent(self) -> float:
        """Branch coverage of all of ``impl/``, in percent."""
        return 100.0 * self.taken / self.branches if self.branches else 100.0


def measure(seed: int | None = None) -> Reach:
    """Run ``memoracle check`` (all systems but the proofs, base seed ``seed``, default
    ``$MEMORACLE_SEED`` or 0) under coverage.py in a child process and read its report."""
    if seed is None:
        seed = int(os.environ.get("MEMORACLE_SEED", "0"))
    with tempfile.TemporaryDirectory() as work:
        data, report = Path(work) / "coverage.data", Path(work) / "coverage.json"
        systems = [arg for system in SYSTEMS for arg in ("--system", system)]
        run = [sys.executable, "-m", "coverage", "run", "--branch", "--source=impl", f"--data-file={data}",
               "-m", "memoracle.cli", "check", "--json", "--seed", str(seed), *systems]  # fmt: skip
        check = subprocess.run(run, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        subprocess.run(
            [sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(report), "-q"],
            cwd=ROOT, check=True,
        )  # fmt: skip
        files = json.loads(report.read_text())["files"]
    modules = []
    for path, entry in sorted(files.items()):
        summary = entry["summary"]
        modules.append(
            ModuleReach(
                Path(path).stem,
                int(summary["num_branches"]),
                int(summary["covered_branches"]),
                int(summary["num_statements"]),
                int(summary["missing_lines"]),
            )
        )
    return Reach(tuple(modules), check.returncode, seed)


def render(reach: Reach) -> str:
    """The per-module table and the total, as text."""
    lines = [f"{'module':<14} {'branches':>8} {'taken':>6} {'branch %':>8} {'stmts':>6} {'missed':>6}"]
    for m in sorted(reach.modules, key=lambda m: m.percent):
        lines.append(
            f"{m.module:<14} {m.branches:>8} {m.taken:>6} {m.percent:>7.1f}% {m.statements:>6} {m.missed_statements:>6}"
        )
    lines.append(f"{'impl/ total':<14} {reach.branches:>8} {reach.taken:>6} {reach.percent:>7.1f}%")
    verdict = "passed" if reach.check_exit == 0 else f"exited {reach.check_exit}"
    lines.append(f"(memoracle check --seed {reach.seed} over {', '.join(SYSTEMS)}: {verdict})")
    return "\n".join(lines)


def coverage_figures(quick: bool) -> list[Figure]:
    """``coverage.campaign_branch_impl`` (the same run with ``quick``: the campaigns
    have one size)."""
    reach = measure()
    return [{"name": "coverage.campaign_branch_impl", "value": round(reach.percent, 2), "unit": "%"}]


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.coverage``: measure and print the table; exit 1 if the
    check failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="base seed (default $MEMORACLE_SEED or 0)")
    args = parser.parse_args(argv)
    reach = measure(args.seed)
    print(render(reach))
    return 0 if reach.check_exit == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
