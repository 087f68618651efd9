"""``memoracle kv check HOST:PORT`` against real servers and a faulty proxy.

It must pass against Debian's memcached and against ``memoracle sphinx serve``, and fail
against a proxy in front of memcached that loses acknowledged writes or serves stale
values (the proxy without faults passes, so the failures are the faults'). Requests the
proxy never answers are indeterminate, not violations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from memoracle.cli import main
from memoracle.sphinx.kv_check import check_server, run_sequential
from memoracle.sphinx.peers import PeerUnavailable, ServerProcess, free_port, start_memcached, start_sphinx_server
from tests.kv_proxy import FaultyProxy, Faults
from tests.peers import peer_missing


@pytest.fixture(scope="module")
def memcached() -> Iterator[ServerProcess]:
    try:
        server = start_memcached()
    except PeerUnavailable as error:
        peer_missing(str(error))
    with server:
        yield server


def test_memcached_passes(memcached: ServerProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    page = tmp_path / "kv.html"
    assert main(["kv", "check", f"127.0.0.1:{memcached.port}", "--steps", "500", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "sequential: 500 requests" in out and "per key: linearizable" in out and "framing: 14 scenarios" in out
    assert "reproduce: memoracle kv check" in out
    text = page.read_text()
    assert text.count("<g class='op") == 500 and "key memoracle:0:c0" in text
    assert main(["kv", "check", f"127.0.0.1:{memcached.port}", "--seed", "9", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "ok" and report["concurrent"]["verdict"] == "linearizable"
    assert report["framing"]["requests"] > 100 and report["sequential"]["requests"] == 400


def test_sphinx_passes() -> None:
    with start_sphinx_server() as sphinx:
        report = check_server("127.0.0.1", sphinx.port, seed=3, steps=300, clients=4)
    assert report.status == "ok", (report.sequential_finding, report.framing_finding, report.concurrent)
    assert report.concurrent is not None and len(report.concurrent.ops) == 300


def test_the_proxy_without_faults_is_transparent(memcached: ServerProcess) -> None:
    with FaultyProxy(memcached.port, Faults()) as proxy:
        report = check_server("127.0.0.1", proxy.port, seed=1, steps=300, clients=4)
    assert report.status == "ok"


@pytest.mark.parametrize("faults,counter", [(Faults(drop_every=7), "dropped"), (Faults(stale_every=3), "staled")])
def test_lost_writes_and_stale_reads_are_caught(
    memcached: ServerProcess, capsys: pytest.CaptureFixture[str], faults: Faults, counter: str
) -> None:
    with FaultyProxy(memcached.port, faults) as proxy:
        assert main(["kv", "check", f"127.0.0.1:{proxy.port}", "--seed", "0", "--steps", "300"]) == 1
    out = capsys.readouterr().out
    assert getattr(faults, counter) > 0
    assert "VIOLATION" in out and "expected b'VALUE" in out and "observed b'VALUE" in out
    assert f"reproduce: memoracle kv check 127.0.0.1:{proxy.port} --seed 0 --steps 300 --clients 4" in out


def test_each_part_catches_the_lost_write_on_its_own(memcached: ServerProcess) -> None:
    """Not only the sum: the sequential session alone, and the concurrent history alone."""
    for seed in range(3):
        with FaultyProxy(memcached.port, Faults(drop_every=5)) as proxy:
            _, finding = run_sequential("127.0.0.1", proxy.port, seed, 300, 2.0)
        assert finding is not None and finding.part == "sequential"
    with FaultyProxy(memcached.port, Faults(drop_every=5)) as proxy:
        report = check_server("127.0.0.1", proxy.port, seed=4, steps=300, clients=4)
    assert report.concurrent is not None and report.concurrent.status == "violation"
    assert "the first called that it cannot place" in report.concurrent.report


def test_lost_requests_are_indeterminate_not_violations(memcached: ServerProcess) -> None:
    faults = Faults(hang_every=10, hang_keys=b":c")
    with FaultyProxy(memcached.port, faults) as proxy:
        report = check_server("127.0.0.1", proxy.port, seed=2, steps=120, clients=4, timeout=0.3)
    assert faults.hung > 0 and report.concurrent is not None
    assert report.concurrent.indeterminate == faults.hung
    assert report.status == "ok", report.concurrent.report
    lost = [op for op in report.concurrent.ops if op.indeterminate]
    for op in lost:  # a lost request is its connection's last; the client goes on under a new name
        later = [o for o in report.concurrent.ops if o.thread == op.thread and o.call > op.call]
        assert not later, (op, later)
    assert any(str(op.thread).endswith(".2") for op in report.concurrent.ops)


def test_bad_targets_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kv", "check", "localhost"]) == 2
    assert main(["kv", "check", "127.0.0.1:99999"]) == 2
    assert main(["kv", "check", f"127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "cannot talk to" in err and "Traceback" not in err
