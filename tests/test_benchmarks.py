"""``python -m benchmarks`` (``make bench``): figures written, bad usage refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.__main__ import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_bench_writes_the_machine_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--quick", "--only", "machine", "--output", str(out)]) == 0
    figures = {f["name"]: f for f in json.loads(out.read_text())}
    for name in ("machine.read_64k_ratio", "machine.scm_store_4k_ratio", "machine.crash_images_per_second"):
        assert figures[name]["value"] > 0 and figures[name]["unit"]
    assert "baseline" in figures["machine.read_64k_us"] and "ratio" in figures["machine.read_64k_us"]


def test_bench_rejects_an_unknown_system() -> None:
    done = run("--only", "nonesuch")
    assert done.returncode == 2 and "unknown system" in done.stderr
