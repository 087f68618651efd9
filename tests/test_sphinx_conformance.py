"""Sphinx against the memcached spec: byte-for-byte conformance, per-key
linearizability, and the mutants the checks must catch."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from impl.sphinx import Sphinx
from memoracle.sphinx.checks import SPHINX_CHECKS
from memoracle.sphinx.conformance import (
    KvOperation,
    check_history,
    conformance_run,
    normalise_stats,
    random_request,
    record_history,
)
from memoracle.sphinx.mutants import SPHINX_MUTANTS
from spec.kv_api import KvServer
from spec.kv_model import ModelServer
from spec.murmur3 import owner_of


def make_sphinx(cls: type[Sphinx] = Sphinx):  # type: ignore[no-untyped-def]
    def make(threads: int, memory: int, segment_size: int, seed: int) -> KvServer:
        return cls(threads, memory, segment_size=segment_size, seed=seed)

    return make


def make_model(threads: int, memory: int, segment_size: int, seed: int) -> KvServer:
    return ModelServer(threads, memory, segment_size=segment_size)


class ForgetfulModel(ModelServer):
    """A broken store: ``delete`` answers DELETED but keeps the value."""

    def send(self, conn: int, data: bytes) -> None:
        super().send(conn, data.replace(b"delete ", b"touch ").replace(b"\r\n", b" 0\r\n", 1) if data.startswith(b"delete ") and b" noreply" not in data and data.count(b"\r\n") == 1 else data)


@pytest.mark.parametrize("seed", range(3))
def test_sphinx_conforms_to_the_precise_model(seed: int) -> None:
    mismatch = conformance_run(make_sphinx(), seed, 400, with_stats=False)
    assert mismatch is None, mismatch.render() if mismatch else ""


def test_sphinx_stats_counters_conform() -> None:
    assert all(conformance_run(make_sphinx(), seed, 400) is None for seed in range(3))


def test_the_harness_accepts_the_model_and_catches_a_broken_model() -> None:
    assert conformance_run(make_model, 7, 300) is None
    broken = conformance_run(lambda t, m, s, seed: ForgetfulModel(t, m, segment_size=s), 7, 300)
    assert broken is not None and b"DELETED" in broken.expected


@pytest.mark.parametrize("name", sorted(SPHINX_MUTANTS))
def test_each_mutant_is_caught(name: str) -> None:
    caught = [conformance_run(make_sphinx(SPHINX_MUTANTS[name]), seed, 600, with_stats=False) for seed in range(3)]
    assert any(m is not None for m in caught), f"{name} survived"
    # the same seeds pass on the real store, so the mutation is what was caught
    for seed, mismatch in enumerate(caught):
        if mismatch is not None:
            assert conformance_run(make_sphinx(), seed, mismatch.step + 1, with_stats=False) is None
            break


def test_signed_hash_differs_only_without_a_power_of_two() -> None:
    keys = [b"k%d" % i for i in range(200)]
    four = SPHINX_MUTANTS["signed-hash-owner"](4)
    assert all(four.owner_of(k) == owner_of(k, 4) for k in keys)
    three = SPHINX_MUTANTS["signed-hash-owner"](3)
    assert any(three.owner_of(k) != owner_of(k, 3) for k in keys)


@pytest.mark.parametrize("seed", range(3))
def test_sphinx_histories_are_linearizable_per_key(seed: int) -> None:
    history = record_history(Sphinx(3, seed=seed), seed, 250)
    assert len(history) == 250
    assert any(a.call < b.ret and b.call < a.ret for a in history for b in history if a.thread != b.thread)
    assert check_history(history, loose=False) is None


def test_a_hand_made_stale_read_is_not_linearizable() -> None:
    ops = [
        KvOperation(0, 0, "push", "set a v1", "STORED", 0, 1),
        KvOperation(1, 0, "push", "set a v2", "STORED", 2, 3),
        KvOperation(2, 1, "push", "get a", "v1", 4, 5),
        KvOperation(3, 1, "push", "get b", None, 4 + 2, 7),
    ]
    report = check_history(ops, loose=True)
    assert report is not None and "'a'" in report
    assert check_history(ops[:2] + [KvOperation(2, 1, "push", "get a", "v2", 4, 5)]) is None
    # loose: a miss is allowed (eviction), strict: it is not
    missing = ops[:2] + [KvOperation(2, 1, "push", "get a", None, 4, 5)]
    assert check_history(missing, loose=True) is None
    assert check_history(missing, loose=False) is not None


def test_normalise_stats_keeps_compared_values_only() -> None:
    reply = b"STAT pid 5\r\nSTAT cmd_get 3\r\nEND\r\nOK\r\n"
    assert normalise_stats(reply) == b"STATS[STAT cmd_get 3]OK\r\n"


def test_campaign_checks_report_a_reproduce_line(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [check.name for check in SPHINX_CHECKS]
    assert names == ["conformance", "linearizability", "mutants"]
    outcome = SPHINX_CHECKS[2].run(1)
    assert outcome.ok and outcome.count == len(SPHINX_MUTANTS) and outcome.report == ""
    # a "mutant" that is the faithful store survives: the check fails and says how to reproduce
    monkeypatch.setitem(SPHINX_MUTANTS, "faithful", Sphinx)
    survived = SPHINX_CHECKS[2].run(1)
    assert not survived.ok and survived.count == len(SPHINX_MUTANTS)
    assert survived.report == "mutants not caught: faithful\nreproduce: memoracle check --system sphinx --seed 1"


class SphinxMachine(RuleBasedStateMachine):
    """Sphinx and the precise model driven side by side: random requests on several
    connections, pipelined, clock advances; replies equal byte for byte per connection;
    invariants and key placement checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = 3
        self.sphinx = Sphinx(self.threads, 3 * 2 * 4096, segment_size=4096, seed=1)
        self.model = ModelServer(self.threads, 3 * 2 * 4096, segment_size=4096, start_time=self.sphinx.clock())
        self.conns = [(self.sphinx.connect(), self.model.connect()) for _ in range(3)]
        self.pool = [b"k%d" % i for i in range(8)]

    @rule(conn=st.integers(0, 2), seed=st.integers(0, 2**16), count=st.integers(1, 3))
    def send(self, conn: int, seed: int, count: int) -> None:
        rng = random.Random(seed)
        batch = b"".join(random_request(rng, self.pool, [], with_stats=False) for _ in range(count))
        real, ideal = self.conns[conn]
        self.sphinx.send(real, batch)
        self.model.send(ideal, batch)
        self.sphinx.settle()
        assert self.sphinx.receive(real) == self.model.receive(ideal), batch

    @rule(seconds=st.integers(1, 4))
    def advance(self, seconds: int) -> None:
        self.sphinx.advance_clock(seconds)
        self.model.advance_clock(seconds)

    @invariant()
    def consistent(self) -> None:
        self.sphinx.check_invariants()
        for thread, keys in self.sphinx.keys_by_thread().items():
            assert all(owner_of(key, self.threads) == thread for key in keys)


TestSphinxMachine = SphinxMachine.TestCase
TestSphinxMachine.settings = settings(
    max_examples=max(20, settings.default.max_examples), stateful_step_count=25, deadline=None
)
