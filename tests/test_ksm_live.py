"""The running kernel's KSM (``LiveKsm``) against the implementation and the model.

These tests drive the machine's real ``/sys/kernel/mm/ksm``: each session takes a file
lock (so two test workers never drive ksmd at once), saves every knob and restores it.
Where the kernel cannot be driven (no KSM, no permission) they are skipped with the
reason — or fail, where peers are required (``MEMORACLE_REQUIRE_PEERS``, as ``.ci/run``
sets). Every scenario is tiny: a session takes a fraction of a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memoracle.cli import main
from memoracle.ksm.conformance import Op
from memoracle.ksm.live_check import LiveTrio, run_live
from memoracle.ksm.live_scenarios import SELFTESTS, live_ops
from memoracle.ksm.live_sysfs import KSM_DIR, RESTORE_ORDER, kernel_availability
from spec.ksm_api import MMAP_BASE, PAGE_SIZE, KsmSystem
from tests.peers import peer_missing

B, P = MMAP_BASE, PAGE_SIZE


@pytest.fixture()
def kernel() -> None:
    reason = kernel_availability()
    if reason is not None:
        peer_missing(f"the live KSM: {reason}")


def _knobs() -> dict[str, str]:
    return {name: (KSM_DIR / name).read_text() for name in RESTORE_ORDER if (KSM_DIR / name).exists()}


def test_ten_identical_pages_merge_and_the_knobs_come_back(kernel: None) -> None:
    from memoracle.ksm.live import LiveKsm

    before = _knobs()
    with LiveKsm() as live:
        assert isinstance(live, KsmSystem)
        pid = live.add_process()
        addr = live.mmap(pid, 10)
        for i in range(10):
            live.write(pid, addr + i * P, b"\x2a" * P)
        live.madvise(pid, addr, 10, "MERGEABLE")
        live.set_knob("run", 1)
        live.full_scans(1)
        assert live.counters()["pages_volatile"] == 10  # a page first merges on the second scan
        live.full_scans(1)
        counters = live.counters()
        assert (counters["pages_shared"], counters["pages_sharing"], counters["full_scans"]) == (1, 9, 2)
        assert live.process_counters(pid)["ksm_merging_pages"] == 10
        assert live.read(pid, addr + 3 * P, P) == b"\x2a" * P
        frames = {page.frame for page in live.snapshot().pages}
        assert len(frames) == 1 and all(page.ksm for page in live.snapshot().pages)
    assert _knobs() == before


def test_no_scan_completes_with_ksmds_list_empty(kernel: None) -> None:
    """The fact the session relies on to skip scans: with no process on ksmd's list (the
    one worker dropped after unregistering everything), ``run = 1`` completes no scan."""
    from memoracle.ksm.live import LiveKsm

    with LiveKsm() as live:
        pid = live.add_process()
        addr = live.mmap(pid, 2)
        live.write(pid, addr, b"x")
        live.madvise(pid, addr, 2, "MERGEABLE")
        live.set_knob("run", 1)
        live.full_scans(1)
        live.madvise(pid, addr, 2, "UNMERGEABLE")
        live.full_scans(5)
        sysfs = live.sysfs
        assert sysfs.read_int("full_scans") == 2
        sysfs.write("sleep_millisecs", "1")
        sysfs.write("run", "1")
        time.sleep(0.3)
        sysfs.write("run", "0")
        sysfs.write("sleep_millisecs", "3600000")
        assert sysfs.read_int("full_scans") == 2


@pytest.mark.parametrize("name", ["unmerge", "prctl_off_without_on", "drop_from_ksmd_list", "max_page_sharing_13_of_4"])
def test_selftest_scenario_agrees_at_every_point(kernel: None, name: str) -> None:
    result = run_live(name, SELFTESTS[name])
    assert result.points == len(SELFTESTS[name])
    assert result.differences == [], result.differences


def test_a_short_campaign_agrees_at_every_point(kernel: None) -> None:
    ops = live_ops(3, 30)
    result = run_live("campaign", ops)
    assert result.points == len(ops) and not result.differences, result.differences


def test_the_comparison_catches_a_wrong_implementation(kernel: None) -> None:
    """Every check can fail: the implementation that frees rmap items at once on an
    unmerge (the old behaviour) disagrees with the kernel right after the unmerge."""
    from memoracle.ksm.live import LiveKsm
    from memoracle.ksm.mutants import EagerUnmergeKsm

    with LiveKsm() as live:
        trio = LiveTrio(live)
        trio.impl = EagerUnmergeKsm()
        problems: list[str] = []
        for op in SELFTESTS["unmerge"]:
            problems += trio.apply(op)
    assert any(p.startswith("pages_sharing: kernel 7, implementation 0") for p in problems), problems


def test_live_command_json_and_exit_code(kernel: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ksm", "live", "--scenarios", "campaign", "--sequences", "1", "--steps", "10", "--seed", "5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["violations"] == 0 and out["points"] == len(live_ops(5, 10))
    assert out["deviations"] == [] and {"what", "why"} <= set(out["not_compared"][0])
    assert [r["name"] for r in out["results"]] == ["campaign seed 5"]


def test_sigterm_restores_the_knobs_and_kills_the_workers(kernel: None, tmp_path: Path) -> None:
    before = _knobs()
    script = tmp_path / "hold.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from memoracle.ksm.live import LiveKsm
        live = LiveKsm()
        pid = live.add_process()
        live.set_knob("use_zero_pages", 1)
        print(live.os_pid(pid), flush=True)
        time.sleep(60)
    """))
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)  # fmt: skip
    assert holder.stdout is not None
    worker = int(holder.stdout.readline())
    assert (KSM_DIR / "use_zero_pages").read_text().strip() == "1"
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=30)
    assert _knobs() == before
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]


def test_a_session_killed_outright_is_repaired_by_the_next(kernel: None, tmp_path: Path) -> None:
    from memoracle.ksm.live import LiveKsm

    before = _knobs()
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent("""
        import time
        from memoracle.ksm.live import LiveKsm
        live = LiveKsm()
        live.set_knob("max_page_sharing", 7)
        print("ready", flush=True)
        time.sleep(60)
    """))
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    holder.kill()  # SIGKILL: no handler runs, the knobs stay changed
    holder.wait(timeout=30)
    assert (KSM_DIR / "max_page_sharing").read_text().strip() == "7"
    with LiveKsm():
        pass
    assert _knobs() == before


def test_live_command_without_ksm_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import memoracle.ksm.live_sysfs as sysfs

    monkeypatch.setattr(sysfs, "KSM_DIR", Path("/nonexistent/ksm"))
    assert main(["ksm", "live"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no KSM" in err


def test_op_sequences_are_deterministic() -> None:
    assert live_ops(9, 40) == live_ops(9, 40) and live_ops(9, 40) != live_ops(10, 40)
    assert all(op.name != "run_ksmd" for op in live_ops(9, 200))
    assert all(isinstance(op, Op) for ops in SELFTESTS.values() for op in ops)
    assert os.sep  # the module imports cleanly without a kernel
