"""CrossHair over the specs' PEP 316 contracts, reported honestly.

CrossHair exits 0 when it found no counterexample, which after a timeout means
"not confirmed", not "proved". This module runs it with ``--report_all`` and sorts every
postcondition into *confirmed* (over all paths), *not confirmed* (searched, nothing
found, not exhaustive) or *counterexample*, and names the function each one belongs to.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<level>info|error): (?P<message>.*)$")


@dataclass(frozen=True)
class ContractResult:
    """One postcondition's verdict."""

    path: str
    line: int
    function: str
    status: str  #: "confirmed", "not confirmed" or "counterexample"
    message: str


@dataclass(frozen=True)
class ContractReport:
    """Every verdict, and whether CrossHair itself ran cleanly."""

    results: tuple[ContractResult, ...]
    exit_code: int
    stderr: str

    @property
    def ok(self) -> bool:
        """No counterexample and no CrossHair error."""
        return self.exit_code == 0 and not any(r.status == "counterexample" for r in self.results)


def _function_at(path: Path, line: int) -> str:
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return "?"
    best = "?"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end:
                best = node.name
    return best


def run_crosshair(targets: list[str], per_condition_timeout: float = 4.0) -> ContractReport:
    """Check the PEP 316 contracts in ``targets`` (files or directories)."""
    command = [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        "--analysis_kind=PEP316",
        "--report_all",
        f"--per_condition_timeout={per_condition_timeout}",
        *targets,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    results = []
    for raw in done.stdout.splitlines():
        match = _LINE.match(raw.strip())
        if not match:
            continue
        message = match["message"]
        if match["level"] == "error":
            status = "counterexample"
        elif message.startswith("Confirmed"):
            status = "confirmed"
        else:
            status = "not confirmed"
        path = Path(match["path"])
        line = int(match["line"])
        results.append(ContractResult(path.name, line, _function_at(path, line), status, message))
    return ContractReport(tuple(results), done.returncode, done.stderr.strip())
