"""Histories from other tools: Jepsen (EDN) and Porcupine (JSON), register, kv and queue
models, the shipped examples, and the readers' guarantees (every error names its line).
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoracle.cli import main
from memoracle.history.edn import Char, EdnMap, Keyword, Symbol, Tagged, loads, to_edn
from memoracle.history.foreign import check_foreign
from memoracle.history.jepsen import read_jepsen
from memoracle.history.porcupine import read_porcupine
from spec.history import MAX_LINE_BYTES, HistoryFormatError
from spec.linearizability import UNLIMITED
from spec.spsc_model import Criterion

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def jepsen(text: str, model: str) -> str:
    history = read_jepsen(io.BytesIO(text.encode()), model)
    return check_foreign(history, Criterion.STRICT, UNLIMITED).status


def porcupine(lines: list[dict[str, object]], model: str) -> str:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return check_foreign(read_porcupine(io.BytesIO(text.encode()), model), Criterion.STRICT, UNLIMITED).status


# ---------------------------------------------------------------- the shipped examples


@pytest.mark.parametrize("name,options,code", [
    ("jepsen-register-ok.edn", ["--format", "jepsen", "--model", "register"], 0),
    ("jepsen-register-stale-read.edn", ["--format", "jepsen", "--model", "register"], 1),
    ("porcupine-kv-ok.jsonl", ["--format", "porcupine", "--model", "kv"], 0),
    ("porcupine-kv-lost-write.jsonl", ["--format", "porcupine", "--model", "kv"], 1),
])  # fmt: skip
def test_the_examples_give_their_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, options: list[str], code: int
) -> None:
    page = tmp_path / "t.html"
    assert main(["history", "check", str(EXAMPLES / name), *options, "--html", str(page)]) == code
    out = capsys.readouterr().out
    assert ("NOT linearizable" in out) == (code == 1)
    text = page.read_text(encoding="utf-8")
    assert "memoracle-rendered" in text and "<svg" in text
    readme = (ROOT / "README.md").read_text()
    assert f"memoracle history check examples/{name} {' '.join(options)}" in readme
    if "lost-write" in name:
        assert "key x" in out and "put '2'" in out and "get→'1'" in out
        assert "key x" in text and "key y" in text  # lanes per key
    if "stale-read" in name:
        assert "w 2" in out and "r→1" in out


def test_the_examples_json_names_the_model_and_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "check", str(EXAMPLES / "porcupine-kv-lost-write.jsonl"), "--format", "porcupine",
                 "--model", "kv", "--json"]) == 1  # fmt: skip
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verdict"] == "violation" and verdict["partition"] == "x" and verdict["model"] == "kv (per key)"
    assert {op["line"] for op in verdict["window"]} == {1, 3, 5}


def test_format_and_model_must_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "check", str(EXAMPLES / "jepsen-register-ok.edn"), "--format", "edn"]) == 2
    assert main(["history", "check", str(EXAMPLES / "jepsen-register-ok.edn"), "--format", "jepsen"]) == 2
    assert main(["history", "check", str(EXAMPLES / "spsc-ok.jsonl"), "--model", "kv"]) == 2
    assert "needs --model" in capsys.readouterr().err


# ---------------------------------------------------------------- Jepsen semantics

EVENTS = """
{:process 0, :type :invoke, :f :write, :value 1}
{:process 0, :type :ok, :f :write, :value 1}
"""


def test_fail_did_not_happen_and_info_may_have() -> None:
    failed = EVENTS + """{:process 1, :type :invoke, :f :write, :value 2}
{:process 1, :type :fail, :f :write, :value 2}
{:process 2, :type :invoke, :f :read, :value nil}
{:process 2, :type :ok, :f :read, :value 2}"""
    assert jepsen(failed, "register") == "violation"  # a :fail write must not be read
    info = failed.replace(":type :fail", ":type :info")
    assert jepsen(info, "register") == "linearizable"  # an :info write may be read
    assert jepsen(info.replace(":value 2}\n{:process 2, :type :invoke", ":value 2}\n{:process 2, :type :invoke")
                  .replace("{:process 2, :type :ok, :f :read, :value 2}", "{:process 2, :type :ok, :f :read, :value 1}"),
                  "register") == "linearizable"  # ... or not be read  # fmt: skip
    never = EVENTS + "{:process 1, :type :invoke, :f :write, :value 5}\n" \
        "{:process 2, :type :invoke, :f :read, :value nil}\n{:process 2, :type :ok, :f :read, :value 5}"
    assert jepsen(never, "register") == "linearizable"  # never completed: indeterminate


def test_vectors_tagged_records_and_the_nemesis_are_read() -> None:
    knossos = "[" + EVENTS.strip().replace("\n", "\n ") + "\n {:process :nemesis, :type :info, :f :start}\n" \
        " #jepsen.history.Op{:process 1, :type :invoke, :f :read, :value nil}\n" \
        " #jepsen.history.Op{:process 1, :type :ok, :f :read, :value 1}]\n"
    history = read_jepsen(io.BytesIO(knossos.encode()), "register")
    assert [op.f for op in history.ops] == ["write", "read"] and history.ops[1].line == 4
    assert check_foreign(history, Criterion.STRICT, UNLIMITED).status == "linearizable"


def test_cas_register() -> None:
    cas = EVENTS + "{:process 1, :type :invoke, :f :cas, :value [1 2]}\n{:process 1, :type :ok, :f :cas, :value [1 2]}\n" \
        "{:process 2, :type :invoke, :f :read, :value nil}\n{:process 2, :type :ok, :f :read, :value 2}"
    assert jepsen(cas, "register") == "linearizable"
    assert jepsen(cas.replace("[1 2]", "[7 2]"), "register") == "violation"  # cas from a value never held


def test_kv_is_checked_per_key_and_names_the_key() -> None:
    kv = """{:process 0, :type :invoke, :f :write, :value [:a 1]}
{:process 1, :type :invoke, :f :write, :value [:b 1]}
{:process 0, :type :ok, :f :write, :value [:a 1]}
{:process 1, :type :ok, :f :write, :value [:b 1]}
{:process 0, :type :invoke, :f :read, :value [:a nil]}
{:process 0, :type :ok, :f :read, :value [:a 1]}
{:process 1, :type :invoke, :f :read, :value [:b nil]}
{:process 1, :type :ok, :f :read, :value [:b nil]}"""
    history = read_jepsen(io.BytesIO(kv.encode()), "kv")
    verdict = check_foreign(history, Criterion.STRICT, UNLIMITED)
    assert verdict.status == "violation" and verdict.partition == ":b"
    assert jepsen(kv.replace("[:b nil]}\n", "[:b 1]}\n").replace(":value [:b nil]}", ":value [:b 1]}"), "kv") == \
        "linearizable"


def test_a_queue_goes_to_the_fast_checker_unless_a_dequeue_is_indeterminate() -> None:
    queue = """{:process 0, :type :invoke, :f :enqueue, :value 1}
{:process 1, :type :invoke, :f :enqueue, :value 2}
{:process 0, :type :ok, :f :enqueue, :value 1}
{:process 1, :type :ok, :f :enqueue, :value 2}
{:process 2, :type :invoke, :f :dequeue, :value nil}
{:process 2, :type :ok, :f :dequeue, :value 2}
{:process 2, :type :invoke, :f :dequeue, :value nil}
{:process 2, :type :ok, :f :dequeue, :value 1}"""
    verdict = check_foreign(read_jepsen(io.BytesIO(queue.encode()), "queue"), Criterion.STRICT, UNLIMITED)
    assert verdict.status == "linearizable" and verdict.checker in ("spsc-fast", "mpmc-fast")
    fifo = queue.replace("{:process 1, :type :invoke, :f :enqueue, :value 2}\n", "").replace(
        "{:process 0, :type :ok, :f :enqueue, :value 1}\n", "{:process 0, :type :ok, :f :enqueue, :value 1}\n"
        "{:process 1, :type :invoke, :f :enqueue, :value 2}\n")
    assert jepsen(fifo, "queue") == "violation"  # 1 was enqueued before 2 began, 2 came out first
    lost = queue + "\n{:process 3, :type :invoke, :f :dequeue, :value nil}\n{:process 3, :type :info, :f :dequeue}\n" \
        "{:process 4, :type :invoke, :f :enqueue, :value 3}\n{:process 4, :type :ok, :f :enqueue, :value 3}\n" \
        "{:process 2, :type :invoke, :f :dequeue, :value nil}\n{:process 2, :type :ok, :f :dequeue, :value nil}"
    verdict = check_foreign(read_jepsen(io.BytesIO(lost.encode()), "queue"), Criterion.STRICT, UNLIMITED)
    assert verdict.status == "linearizable" and verdict.checker == "generic"  # the :info dequeue took 3


@pytest.mark.parametrize("text,line,needle", [
    ("{:process 0, :type :ok, :f :read, :value 1}", 1, "no :invoke"),
    ("{:process 0, :type :invoke, :f :read}\n{:process 0, :type :invoke, :f :read}", 2, "invokes again"),
    ("{:process 0, :type :invoke, :f :frob}", 1, "knows :read :write :cas"),
    ("{:process 0, :type :start, :f :read}", 1, ":type must be"),
    ("{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok, :f :write}", 2, "its :invoke (line 1)"),
    ("{:process 0 :type}", 1, "odd number"),
    ("{:process 0, :process 1}", 1, "appears twice"),
    ("\n\n{:process 0, :type :invoke, :f :read", 3, "never closed"),
    ("{:process 0, :f \"abc}\n", 1, "never ends"),
    ("]\n{:process 0}", 1, "unexpected ']'"),
    ("[1 2 3] 4", 1, "must be an EDN map"),
    ("{:a \"\\ud800\"}", 1, "lone surrogate"),
    ("{:a 12abc}", 1, "not an EDN number"),
    ("\n" + "[" * 10_000, 2, "nested deeper than 100"),
    ("\n{:process 0, :type :invoke, :f :cas, :value 3}\n{:process 0, :type :ok, :f :cas, :value 3}", 2,
     "vector of two"),
])  # fmt: skip
def test_jepsen_errors_name_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(HistoryFormatError) as error:
        read_jepsen(io.BytesIO(text.encode()), "register")
    assert error.value.line == line and needle in str(error.value), str(error.value)


def test_jepsen_files_that_are_not_text_or_too_long_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.edn"
    bad.write_bytes(EVENTS.encode() + b'{:process 1, :f "caf\xe9"}\n')
    assert main(["history", "check", str(bad), "--format", "jepsen", "--model", "register"]) == 2
    assert "line 4: not UTF-8" in capsys.readouterr().err
    bad.write_bytes(EVENTS.encode() + b'{:value "' + b"x" * (MAX_LINE_BYTES + 10))
    assert main(["history", "check", str(bad), "--format", "jepsen", "--model", "register"]) == 2
    assert "line 4: longer than" in capsys.readouterr().err


# ---------------------------------------------------------------- Porcupine semantics


def op(client: int, given: dict[str, object], call: int, output: object, ret: int | None) -> dict[str, object]:
    return {"ClientId": client, "Input": given, "Call": call, "Output": output, "Return": ret}


def test_porcupine_register_and_queue() -> None:
    history = [op(0, {"Op": "write", "Value": 5}, 0, None, 5), op(1, {"Op": "read"}, 6, {"Value": 5}, 9),
               op(2, {"Op": "cas", "From": 5, "To": 6}, 10, {"Ok": True}, 12),
               op(1, {"Op": "cas", "From": 5, "To": 7}, 13, {"Ok": False}, 15)]  # fmt: skip
    assert porcupine(history, "register") == "linearizable"
    history[3] = op(1, {"Op": "cas", "From": 6, "To": 7}, 13, {"Ok": False}, 15)  # it held 6: must succeed
    assert porcupine(history, "register") == "violation"
    queue = [op(0, {"Op": "push", "Value": 1}, 0, {}, 2), op(1, {"Op": "push", "Value": 2}, 3, {}, 4),
             op(2, {"Op": "pop"}, 5, {"Value": 2}, 6)]  # fmt: skip
    assert porcupine(queue, "queue") == "violation"
    queue[2] = op(2, {"Op": "pop"}, 5, {"Value": 1}, 6)
    assert porcupine(queue, "queue") == "linearizable"


def test_porcupine_array_layout_and_unreturned_operations() -> None:
    lines = [op(0, {"Op": "put", "Key": "k", "Value": "v"}, 0, {}, None),
             op(1, {"Op": "get", "Key": "k"}, 5, {"Value": "v"}, 9)]  # fmt: skip
    text = "[\n" + ",\n".join(json.dumps(line) for line in lines) + "\n]\n"
    history = read_porcupine(io.BytesIO(text.encode()), "kv")
    assert [o.line for o in history.ops] == [2, 3] and history.ops[0].indeterminate
    assert check_foreign(history, Criterion.STRICT, UNLIMITED).status == "linearizable"


@pytest.mark.parametrize("line,needle", [
    ('{"ClientId": 0, "Input": {"Op": "read"}, "Call": 0, "Output": {"Value": 1}}', 'missing key "Return"'),
    ('{"ClientId": 0, "Input": {"Op": "read"}, "Call": 0, "Output": {"Value": 1}, "Return": 1, "X": 0}',
     "unknown key 'X'"),
    ('{"ClientId": 0, "Input": {"Op": "read"}, "Call": 5, "Output": {"Value": 1}, "Return": 4}', '"Return" must be'),
    ('{"ClientId": "a", "Input": {"Op": "read"}, "Call": 0, "Output": {}, "Return": 1}', '"ClientId" must be'),
    ('{"ClientId": 0, "Input": {"Op": "frob"}, "Call": 0, "Output": {}, "Return": 1}', "knows 'read'"),
    ('{"ClientId": 0, "Input": {"Op": "write"}, "Call": 0, "Output": {}, "Return": 1}', "needs 'Value'"),
    ('{"ClientId": 0, "Input": {"Op": "cas", "From": 1, "To": 2}, "Call": 0, "Output": {}, "Return": 1}',
     '{"Ok": true|false}'),
    ('{"ClientId": 0, "Input": {"Op": "read"}, "Call": 0, "Output": {}, "Return": 1}', 'needs "Output"'),
    ('{"ClientId": 0, "ClientId": 1, "Input": {"Op": "read"}, "Call": 0, "Output": {}, "Return": 1}', "appears twice"),
    ('{"ClientId": 0, "Input": {"Op": "write", "Value": "\\udc00"}, "Call": 0, "Output": {}, "Return": 1}',
     "lone surrogate"),
    ("[" * 10_000, "nested too deeply"),
])  # fmt: skip
def test_porcupine_errors_name_the_line(line: str, needle: str) -> None:
    good = json.dumps(op(0, {"Op": "write", "Value": 1}, 0, {}, 1))
    text = f"{good}\n{good.replace('0,', '1,', 1)}\n{line}\n"
    with pytest.raises(HistoryFormatError) as error:
        read_porcupine(io.BytesIO(text.encode()), "register")
    assert error.value.line == 3 and needle in str(error.value), str(error.value)


# ---------------------------------------------------------------- the EDN reader


def test_edn_values() -> None:
    forms = loads('nil true false 42 -7 42N 1.5 1e3 2.5M 1/3 "a\\tb\\u00e9" \\c \\newline :ns/kw sym '
                  '[1 [2]] (1 2) #{1} {:a 1, [1 2] #{3}} #inst "2020" #_ ignored ; comment\n,last')
    assert forms == [None, True, False, 42, -7, 42, 1.5, 1000.0, 2.5, Fraction(1, 3), "a\tbé", Char("c"),
                     Char("\n"), Keyword("ns/kw"), Symbol("sym"), (1, (2,)), (1, 2), frozenset({1}),
                     EdnMap({Keyword("a"): 1, (1, 2): frozenset({3})}), Tagged("inst", "2020"), Symbol("last")]  # fmt: skip
    assert Keyword("ok") != "ok" and hash(EdnMap({1: (2,)}))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.text(max_size=8),
                     st.sampled_from([Keyword("ok"), Keyword("jepsen/x"), Symbol("s"), Char("a"), Char("\n")]))  # fmt: skip
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(tuple),
    st.frozensets(_scalars, max_size=3),
    st.dictionaries(_scalars, inner, max_size=3).map(EdnMap),
), max_leaves=12)  # fmt: skip


@settings(max_examples=max(200, settings.default.max_examples), deadline=None)
@given(_values)
def test_edn_round_trips(value: object) -> None:
    assert loads(to_edn(value)) == [value]


_atoms = st.one_of(st.integers(-(10**17), 10**17).map(str), st.sampled_from(["nil", "true", "false", ":ok", ":a/b",
                                                                            ":x-1", "1.5", "+3", "007", "\\c"]))
_flat_values = st.one_of(_atoms, st.text(alphabet="ab \\\"\n,", max_size=4).map(lambda t: '"' + t + '"'),
                         st.lists(_atoms, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"))


@settings(max_examples=max(300, settings.default.max_examples), deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([":process", ":type", ":f", ":value", ":a", ":value"]),
                                    _flat_values), max_size=5), min_size=1, max_size=4))
def test_the_flat_map_fast_path_reads_what_the_general_reader_reads(maps: list[list[tuple[str, str]]]) -> None:
    import memoracle.history.edn as edn

    text = "\n".join("{" + ", ".join(f"{k} {v}" for k, v in pairs) + "}" for pairs in maps) + "\n"

    def read() -> object:
        try:
            return list(edn.read_forms(io.BytesIO(text.encode()), emit_depth=1))
        except HistoryFormatError as error:
            return str(error)

    fast = read()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edn, "_FLAT_MAP", __import__("re").compile(r"(?!)"))
        general = read()
    assert fast == general
