"""The HTML timeline: every operation drawn, culprits marked, no script errors in a real
browser, and pages of 100k-operation histories that stay small and drawn around the
violation.

The browser test opens the page in headless Chromium (``--dump-dom``): the page's script
writes the number of bars it found into ``#memoracle-rendered`` and any script error into
``#memoracle-errors``. Locally it skips when Chromium is missing; where peers are
required (``MEMORACLE_REQUIRE_PEERS``, as ``.ci/run`` sets) it fails instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from memoracle.cli import main
from memoracle.history.generate import mpmc_history
from memoracle.history.queue_check import check_queue_history
from memoracle.history.timeline import DEFAULT_WINDOW, queue_timeline
from spec.history import History, write_history
from spec.linearizability import UNLIMITED
from spec.spsc_model import Criterion
from tests.peers import peer_missing

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        peer_missing("chromium is not installed (Debian: apt-get install chromium)")
    return found


def swapped(history: History, a: int, b: int) -> History:
    """``history`` with the results of its ``a``-th and ``b``-th successful pops exchanged."""
    ops = history.operations()
    pops = [i for i, op in enumerate(ops) if op.kind == "pop" and op.ok]
    x, y = pops[a], pops[b]
    ops[x], ops[y] = replace(ops[x], result=ops[y].result), replace(ops[y], result=ops[x].result)
    return History.from_trusted_operations(ops, history.capacity)


def drawn_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r"<g class='op[^']*' data-id='(\d+)'", page)]


def test_every_operation_of_a_small_history_is_drawn_in_a_real_browser(tmp_path: Path) -> None:
    binary = chromium()
    history = swapped(mpmc_history(2, 40, 2, 2), 0, -1)
    verdict = check_queue_history(history, Criterion.STRICT, UNLIMITED)
    assert verdict.status == "violation" and verdict.culprits
    page = tmp_path / "timeline.html"
    page.write_text(queue_timeline(history, verdict, "swapped"), encoding="utf-8")
    profile = tmp_path / "profile"
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    dom = done.stdout
    assert done.returncode == 0 and "<svg" in dom, done.stderr[-2000:]
    marker = re.search(r'id="memoracle-rendered"[^>]*data-ops="(\d+)"', dom)
    assert marker is not None, "the page's script did not run to its end"
    assert int(marker.group(1)) == len(history) == 40
    errors = re.search(r'<pre id="memoracle-errors">(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", errors and errors.group(1)
    ids = sorted(int(i) for i in re.findall(r'<g class="op[^"]*" data-id="(\d+)"', dom))
    assert ids == sorted(history.ids)
    culprits = {int(i) for i in re.findall(r'<g class="op[^"]*culprit[^"]*" data-id="(\d+)"', dom)}
    assert culprits == set(verdict.culprits)


@pytest.mark.parametrize("name,fmt,model", [
    ("jepsen-register-stale-read.edn", "jepsen", "register"),
    ("porcupine-kv-lost-write.jsonl", "porcupine", "kv"),
    ("jepsen-register-ok.edn", "jepsen", "register"),
])  # fmt: skip
def test_foreign_histories_are_drawn_whole_in_a_real_browser(tmp_path: Path, name: str, fmt: str, model: str) -> None:
    binary = chromium()
    source = Path(__file__).resolve().parent.parent / "examples" / name
    page = tmp_path / "page.html"
    code = main(["history", "check", str(source), "--format", fmt, "--model", model, "--html", str(page)])
    assert code in (0, 1)
    from memoracle.history.cli import read_foreign

    expected = sorted(bar.id for bar in read_foreign(str(source), fmt, model).bars())
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    dom = done.stdout
    marker = re.search(r'id="memoracle-rendered"[^>]*data-ops="(\d+)"', dom)
    assert marker is not None and int(marker.group(1)) == len(expected)
    assert sorted(int(i) for i in re.findall(r'<g class="op[^"]*" data-id="(\d+)"', dom)) == expected
    errors = re.search(r'<pre id="memoracle-errors">(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == ""
    if code == 1:
        assert 'culprit' in dom
    if model == "kv":
        assert "key x" in dom and "key y" in dom


def test_a_page_with_a_script_error_is_caught_by_the_browser_test_s_probe(tmp_path: Path) -> None:
    """The probe itself can fail: a page whose script throws shows the error."""
    binary = chromium()
    history = mpmc_history(1, 10, 1, 1)
    verdict = check_queue_history(history, Criterion.STRICT, UNLIMITED)
    broken = queue_timeline(history, verdict, "t").replace("bars.length+' operations drawn'", "undefinedName.x")
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    errors = re.search(r'<pre id="memoracle-errors">(.*?)</pre>', done.stdout, re.S)
    assert errors is not None and "undefinedName" in errors.group(1)


def test_labels_are_elided_to_fit_with_the_full_text_on_hover() -> None:
    ops = mpmc_history(1, 6, 1, 1).operations()
    long_value = "v" * 200
    ops[0] = replace(ops[0], arg=long_value)
    ops = [replace(op, result=long_value) if op.kind == "pop" and op.result == 0 else op for op in ops]
    history = History.from_trusted_operations(ops, 2**62)
    page = queue_timeline(history, check_queue_history(history, Criterion.STRICT, UNLIMITED), "long")
    assert f"push({long_value!r})" not in re.sub(r"<title>.*?</title>", "", page, flags=re.S)
    assert "…" in page and f"push(&#x27;{long_value}&#x27;)" in page  # cut in the bar, whole on hover


def test_a_100k_history_is_drawn_around_the_violation_with_every_operation_there(tmp_path: Path) -> None:
    history = swapped(mpmc_history(6, 100_000, 8, 8), 40_000, 40_003)
    path = tmp_path / "big.jsonl"
    write_history(str(path), history)
    page_path = tmp_path / "big.html"
    assert main(["history", "check", str(path), "--html", str(page_path)]) == 1
    page = page_path.read_text(encoding="utf-8")
    assert len(page) < 3_000_000, len(page)
    ids = drawn_ids(page)
    assert 100 < len(set(ids)) < 10 * DEFAULT_WINDOW
    spans = [(int(a), int(b)) for a, b in re.findall(r"panel \d+ of \d+: time (\d+) to (\d+)", page)]
    assert spans, "no panel"
    shown = set(ids)
    for row in range(len(history)):  # nothing that meets a panel is left out
        meets = any(history.calls[row] <= end and history.rets[row] >= start for start, end in spans)
        assert meets == (history.ids[row] in shown), history.operation(row).describe()
    assert "overview" in page and "operations drawn" in page
    culprit_ids = set(int(i) for i in re.findall(r"<g class='op[^']*culprit[^']*' data-id='(\d+)'", page))
    assert culprit_ids and culprit_ids <= shown


def test_a_linearizable_history_is_drawn_from_its_start(tmp_path: Path) -> None:
    history = mpmc_history(3, 5_000, 2, 2)
    verdict = check_queue_history(history, Criterion.STRICT, UNLIMITED)
    page = queue_timeline(history, verdict, "ok", window=300)
    ids = set(drawn_ids(page))
    first = sorted(range(len(history)), key=lambda r: history.calls[r])[:100]
    assert {history.ids[r] for r in first} <= ids and len(ids) < len(history)
    assert "class='verdict linearizable'" in page
