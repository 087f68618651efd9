"""KSM corpora: capture from real processes, the file format and its reader's errors,
loading into a KsmSystem, and the lookahead study (with mutants it must catch)."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from array import array
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoracle.cli import main
from memoracle.ksm.corpus import (
    MAGIC,
    MAX_CONTENT_BYTES,
    MAX_PAGES,
    CapturedProcess,
    CaptureStats,
    Corpus,
    CorpusFormatError,
    anonymous_regions,
    build_corpus,
    capture,
    compact_layout,
    decode_corpus,
    encode_corpus,
    read_corpus,
    write_corpus,
)

PAGE = 4096


@pytest.fixture(scope="module")
def captured() -> tuple[Corpus, CaptureStats]:
    """Three real interpreters importing two modules, 120 pages each."""
    return capture(3, modules=("json", "decimal"), max_pages=120)


def small_corpus(page_size: int = 512) -> Corpus:
    a, b, c = (bytes([v]) * page_size for v in (1, 2, 3))
    return build_corpus(
        page_size,
        "hand-made",
        [(10, [(0x1000, a), (0x1000 + page_size, b), (0x8000, c)]), (11, [(0x4000, a), (0x4000 + page_size, b)])],
    )


# --------------------------------------------------------------------------- capture


def test_capture_reads_real_processes(captured: tuple[Corpus, CaptureStats]) -> None:
    corpus, stats = captured
    assert len(corpus.processes) == 3
    assert stats.per_process == [len(p.addresses) for p in corpus.processes]
    assert all(0 < n <= 120 for n in stats.per_process)
    assert stats.pagemap_used and stats.aslr_disabled
    assert stats.regions > 0 and stats.present_pages >= corpus.pages
    copies = corpus.copies()
    assert sum(copies) == corpus.pages and min(copies) >= 1
    # Identical interpreters share some pages (the point of a corpus), but not all.
    assert 0 < len(corpus.contents) < corpus.pages
    assert len({p.pid for p in corpus.processes}) == 3
    assert corpus.workload.startswith("python-imports (no-aslr): json,decimal")


def test_anonymous_regions_keeps_only_private_anonymous_rw() -> None:
    maps = "\n".join(
        [
            "55d0-55e0 rw-p 00000000 00:00 0                          [heap]",
            "7f00-7f10 rw-p 00000000 00:00 0",
            "7f10-7f20 rw-p 00003000 fe:00 26723                      /usr/bin/python3",
            "7f20-7f30 r--p 00000000 00:00 0",
            "7f30-7f40 rw-s 00000000 00:01 99                         /dev/zero (deleted)",
            "7f40-7f50 rw-p 00000000 00:00 0                          [anon:arena]",
            "7f50-7f60 r--p 00000000 00:00 0                          [vvar]",
            "7ffc-7ffd rw-p 00000000 00:00 0                          [stack]",
        ]
    )
    names = [(r.start, r.name) for r in anonymous_regions(maps)]
    assert names == [(0x55D0, "[heap]"), (0x7F00, ""), (0x7F40, "[anon:arena]"), (0x7FFC, "[stack]")]


def test_unreadable_pages_are_left_out_and_counted() -> None:
    """Three mapped pages, the middle one unmapped behind Python's back: reading the run
    through /proc/self/mem keeps the two readable pages and counts the hole."""
    import ctypes
    import mmap
    import os

    from memoracle.ksm.corpus import _read_pages

    area = mmap.mmap(-1, 3 * PAGE)
    area[:] = b"a" * PAGE + b"b" * PAGE + b"c" * PAGE
    pointer = ctypes.c_char.from_buffer(area)
    start = ctypes.addressof(pointer)
    del pointer
    libc = ctypes.CDLL(None, use_errno=True)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    assert libc.munmap(start + PAGE, PAGE) == 0
    stats = CaptureStats()
    memory = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        pages = _read_pages(memory, start, 3, PAGE, stats)
    finally:
        os.close(memory)
    assert [(address - start, content) for address, content in pages] == [(0, b"a" * PAGE), (2 * PAGE, b"c" * PAGE)]
    assert stats.unreadable_pages == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"processes": 0}, "--processes must be at least 1"),
        ({"processes": 1, "max_pages": 0}, "--max-pages must be at least 1"),
        ({"processes": 1, "workload": "nginx"}, "unknown workload 'nginx'"),
        ({"processes": 1, "modules": ("os; import shutil",)}, "is not a module name"),
    ],
)
def test_capture_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        capture(**kwargs)  # type: ignore[arg-type]


def test_capture_reports_a_workload_that_dies() -> None:
    from memoracle.ksm.corpus import CaptureError

    with pytest.raises(CaptureError, match="exited before it was ready: ModuleNotFoundError"):
        capture(2, modules=("json", "no_such_module_here"))


# --------------------------------------------------------------------------- format


def test_round_trip_of_a_captured_corpus(captured: tuple[Corpus, CaptureStats], tmp_path: Path) -> None:
    corpus, _ = captured
    path = tmp_path / "c.ksm"
    size = write_corpus(path, corpus)
    assert size == path.stat().st_size
    assert read_corpus(path) == corpus
    assert encode_corpus(corpus) == path.read_bytes()  # deterministic bytes
    assert size < corpus.pages * PAGE  # distinct contents once each, compressed


page_sizes = st.sampled_from([512, 1024])


@st.composite
def corpora(draw: st.DrawFn) -> Corpus:
    page_size = draw(page_sizes)
    palette = draw(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=5))
    processes = []
    for pid in range(draw(st.integers(1, 3))):
        pages = draw(st.dictionaries(st.integers(0, 40), st.sampled_from(palette), max_size=12))
        processes.append((pid, [(page * page_size, content.ljust(page_size, b"\0")) for page, content in pages.items()]))
    return build_corpus(page_size, draw(st.text(max_size=20)), processes)


@given(corpora())
def test_round_trip_of_any_corpus(corpus: Corpus) -> None:
    assert decode_corpus(encode_corpus(corpus)) == corpus


@given(st.lists(st.integers(0, 60), unique=True).map(sorted))
def test_compact_layout_keeps_adjacency_exactly(pages: list[int]) -> None:
    offsets = compact_layout([p * PAGE for p in pages], PAGE)
    for i in range(len(pages) - 1):
        assert offsets[i] < offsets[i + 1]
        assert (offsets[i + 1] == offsets[i] + 1) == (pages[i + 1] == pages[i] + 1)
        assert offsets[i + 1] - offsets[i] <= 2


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _header_fields(data: bytes) -> list[int]:
    return list(struct.unpack_from("<8sHHIIII", data)[1:])


def _rewrite_header(data: bytes, **changes: int) -> bytes:
    names = ["version", "flags", "page_size", "processes", "contents", "workload"]
    fields = dict(zip(names, _header_fields(data)))
    fields.update(changes)
    header = struct.pack("<8sHHIIII", MAGIC, *(fields[n] for n in names))
    return _with_crc(header + data[struct.calcsize("<8sHHIIII") : -4])


def _expect(data: bytes, message: str) -> None:
    with pytest.raises(CorpusFormatError, match=message):
        decode_corpus(data)


def test_bad_magic_is_rejected() -> None:
    _expect(b"PK\x03\x04" + bytes(60), r"bad magic b'PK\\x03\\x04")
    _expect(b"", "bad magic b''")


def test_wrong_version_flags_and_page_size_are_rejected() -> None:
    data = encode_corpus(small_corpus())
    _expect(_rewrite_header(data, version=2), "unsupported corpus version 2 .*version 1")
    _expect(_rewrite_header(data, flags=4), "unknown flags 0x4")
    _expect(_rewrite_header(data, page_size=1000), "page size 1000 is not a power of two")


def test_every_truncation_is_rejected_and_names_its_section() -> None:
    data = encode_corpus(small_corpus())
    seen = set()
    for cut in range(len(data)):
        with pytest.raises(CorpusFormatError) as caught:
            decode_corpus(data[:cut])
        message = str(caught.value)
        if cut >= len(MAGIC):
            assert message.startswith("truncated: "), (cut, message)
            seen.add(message.split(" needs")[0])
    assert seen == {
        "truncated: the header",
        "truncated: the workload description",
        "truncated: the directory entry of process 0",
        "truncated: the directory entry of process 1",
        "truncated: the length of the page table",
        "truncated: the page table",
        "truncated: the length of the contents",
        "truncated: the contents",
        "truncated: the checksum",
    }


def test_trailing_bytes_and_corruption_are_rejected() -> None:
    data = encode_corpus(small_corpus())
    _expect(data + b"\0", "1 unexpected bytes after the checksum")
    flipped = bytearray(data)
    flipped[struct.calcsize("<8sHHIIII") + 2] ^= 0x20  # inside the workload text
    _expect(bytes(flipped), "checksum mismatch")
    header_and_workload = struct.calcsize("<8sHHIIII") + len("hand-made")
    directory_end = header_and_workload + 2 * 8
    (table_length,) = struct.unpack_from("<Q", data, directory_end)
    garbled = bytearray(data)
    garbled[directory_end + 8 : directory_end + 8 + 2] = b"\xff\xff"  # the zlib header
    _expect(bytes(garbled), "checksum mismatch")  # the checksum is verified before inflating
    _expect(_with_crc(bytes(garbled[:-4])), "the page table is not valid zlib data")
    assert table_length > 0


def _malformed(processes: list[CapturedProcess], contents: list[bytes], page_size: int = 512) -> bytes:
    return encode_corpus(Corpus(page_size, "bad", tuple(processes), tuple(contents)), check=False)


def test_inconsistent_ids_and_addresses_are_rejected() -> None:
    a, b = bytes([1]) * 512, bytes([2]) * 512
    _expect(
        _malformed([CapturedProcess(1, (0, 512), (0, 2))], [a, b]),
        r"process 0: page 0x200 has content id 2, but the corpus has 2 contents",
    )
    _expect(_malformed([CapturedProcess(1, (0,), (0,))], [a, b]), "content 1 is used by no page")
    _expect(_malformed([CapturedProcess(1, (0, 512), (0, 1))], [a, a]), "contents 0 and 1 are identical")
    _expect(_malformed([CapturedProcess(1, (0, 100), (0, 1))], [a, b]), "address 0x64 is not page-aligned")
    _expect(
        _malformed([CapturedProcess(1, (1024, 512), (0, 1))], [a, b]),
        "address 0x200 does not follow 0x400",
    )
    _expect(_malformed([], [a]), "at least one process")
    with pytest.raises(CorpusFormatError, match="content 0 is 3 bytes, not one page of 512"):
        encode_corpus(Corpus(512, "bad", (CapturedProcess(1, (0,), (0,)),), (b"abc",)))


def test_a_section_of_the_wrong_length_is_rejected() -> None:
    data = encode_corpus(small_corpus())
    _expect(_rewrite_header(data, contents=4), "the contents holds 1536 bytes, the header announces 2048")
    _expect(_rewrite_header(data, contents=2), "the contents holds more than the 1024 bytes")


# --------------------------------------------------------------------------- hostile files


def zero_bomb(megabytes: int) -> bytes:
    """A valid zlib stream of ``megabytes`` MiB of zeros in about 1 KiB per MiB, built
    in milliseconds: one fully flushed (byte-aligned, dictionary reset) compressed MiB
    repeated, then the final block and the Adler-32 of that many zeros."""
    compressor = zlib.compressobj(9)
    first, repeated = (compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH) for _ in range(2))
    end = compressor.flush(zlib.Z_FINISH)[:-4]
    total = megabytes << 20
    return first + repeated * (megabytes - 1) + end + struct.pack(">I", ((total % 65521) << 16) | 1)


def hostile_corpus(
    *, page_size: int = PAGE, contents: int, pages: list[int], table: bytes, packed_contents: bytes
) -> bytes:
    """A corpus file with these declared counts and sections, and a valid checksum."""
    header = struct.pack("<8sHHIIII", MAGIC, 1, 0, page_size, len(pages), contents, 0)
    directory = b"".join(struct.pack("<II", pid, count) for pid, count in enumerate(pages))
    body = header + directory
    for section in (table, packed_contents):
        body += struct.pack("<Q", len(section)) + section
    return _with_crc(body)


def peak_bytes_of(read: Callable[[], object]) -> tuple[int, str]:
    """Python's peak allocation while ``read()`` runs, and the reader's complaint."""
    tracemalloc.start()
    try:
        with pytest.raises(CorpusFormatError) as caught:
            read()
        return tracemalloc.get_traced_memory()[1], str(caught.value)
    finally:
        tracemalloc.stop()


ONE_PAGE_TABLE = zlib.compress(struct.pack("<QI", 0, 0))


def test_a_zlib_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    bomb = zero_bomb(3600)  # 3.6 GiB of zeros in about 3.7 MB
    assert 3_000_000 < len(bomb) < 4_000_000
    declared = hostile_corpus(contents=(3600 << 20) // PAGE, pages=[1], table=ONE_PAGE_TABLE, packed_contents=bomb)
    path = tmp_path / "bomb.ksm"
    path.write_bytes(declared)
    peak, message = peak_bytes_of(lambda: read_corpus(path))
    assert f"at most {MAX_CONTENT_BYTES >> 20} MiB of contents" in message
    assert peak < 16 << 20, peak
    # Declared small, the same stream is refused by its length alone ...
    small = hostile_corpus(contents=1, pages=[1], table=ONE_PAGE_TABLE, packed_contents=bomb)
    peak, message = peak_bytes_of(lambda: decode_corpus(small))
    assert "compressed bytes for 4096 raw bytes" in message and peak < 16 << 20
    # ... and a prefix as long as 256 pages may take stops inflating one byte past them.
    prefix = bomb[: 256 * PAGE + 256 * PAGE // 256 + 1024]
    cut = hostile_corpus(contents=256, pages=[1], table=ONE_PAGE_TABLE, packed_contents=prefix)
    peak, message = peak_bytes_of(lambda: decode_corpus(cut))
    assert "the contents holds more than the 1048576 bytes the header announces" in message
    assert peak < 4 * len(cut) + (8 << 20), peak


def test_declared_counts_the_file_cannot_hold_are_refused_before_allocating(tmp_path: Path) -> None:
    table = zero_bomb(687)  # 60M entries of 12 bytes, in about 0.7 MB
    contents = zlib.compress(bytes(PAGE))
    claim = hostile_corpus(contents=1, pages=[60_000_000], table=table, packed_contents=contents)
    assert len(claim) < 1_000_000
    peak, message = peak_bytes_of(lambda: decode_corpus(claim))
    assert f"the directory lists 60000000 pages (at most {MAX_PAGES})" in message and peak < 8 << 20
    spread = hostile_corpus(contents=1, pages=[1_000_000] * 60, table=table, packed_contents=contents)
    assert "at most" in peak_bytes_of(lambda: decode_corpus(spread))[1]
    # Within the limits, but more than 100 compressed bytes can hold:
    tiny = hostile_corpus(contents=1, pages=[1_000_000], table=table[:100], packed_contents=contents)
    peak, message = peak_bytes_of(lambda: decode_corpus(tiny))
    assert "the page table: the header announces 12000000 bytes, more than 100 compressed bytes can hold" in message
    assert peak < 8 << 20
    many = hostile_corpus(contents=1, pages=[1] * 5000, table=table, packed_contents=contents)
    assert "5000 processes (at most 4096)" in peak_bytes_of(lambda: decode_corpus(many))[1]


def test_an_endless_device_fails_at_the_magic(capsys: pytest.CaptureFixture[str]) -> None:
    peak, message = peak_bytes_of(lambda: read_corpus(Path("/dev/zero")))
    assert message.startswith("not a KSM corpus: bad magic") and peak < 1 << 20
    for command in ("info", "study"):
        assert main(["ksm", command, "/dev/zero"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "/dev/zero: not a KSM corpus" in err


def test_pages_are_held_in_compact_columns() -> None:
    corpus = decode_corpus(encode_corpus(small_corpus()))
    for process in corpus.processes:
        assert isinstance(process.addresses, array) and process.addresses.typecode == "Q"
        assert isinstance(process.content_ids, array) and process.content_ids.typecode == "I"
    with pytest.raises(CorpusFormatError, match="do not fit"):
        CapturedProcess(1, (-4096,), (0,))


# --------------------------------------------------------------------------- CLI


def test_cli_rejects_malformed_corpora_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = encode_corpus(small_corpus())
    cases = {
        "magic.ksm": b"hello world, not a corpus",
        "truncated.ksm": data[:-9],
        "version.ksm": _rewrite_header(data, version=9),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    expected = {"magic.ksm": "bad magic", "truncated.ksm": "truncated: the contents", "version.ksm": "version 9"}
    for command in ("info", "study"):
        for name, fragment in expected.items():
            assert main(["ksm", command, str(tmp_path / name)]) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and fragment in err and name in err, err
        assert main(["ksm", command, str(tmp_path / "absent.ksm")]) == 2
        assert "No such file" in capsys.readouterr().err


def test_cli_info_describes_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "small.ksm"
    write_corpus(path, small_corpus())
    assert main(["ksm", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pages"] == 5 and info["distinct_contents"] == 3 and info["pages_per_process"] == [3, 2]
    assert info["page_size"] == 512 and info["contents_in_one_copy"] == 1


def test_cli_capture_writes_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "real.ksm"
    code = main(["ksm", "capture", "--processes", "2", "--output", str(path), "--modules", "json", "--max-pages", "40"])
    assert code == 0
    out = capsys.readouterr().out
    assert "captured 2 processes, 80 pages" in out
    assert len(read_corpus(path).processes) == 2
    assert main(["ksm", "capture", "--processes", "2", "--output", str(tmp_path / "no" / "x.ksm")]) == 2
    assert "no such directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- study

from memoracle.ksm.study import (  # noqa: E402
    StudyReport,
    claim_verdict,
    ideal_for_copies,
    ideal_sharing,
    study_corpus,
)
from impl.ksm import Ksm  # noqa: E402
from spec.ksm_api import Advice, KsmSystem  # noqa: E402
from spec.ksm_rules import sharing_groups  # noqa: E402



@given(st.integers(0, 3000), st.integers(2, 300))
def test_ideal_matches_the_kernel_selftest_arithmetic(copies: int, max_page_sharing: int) -> None:
    assert ideal_for_copies(copies, max_page_sharing) == sharing_groups(copies, max_page_sharing)


def test_ideal_of_a_corpus_respects_max_page_sharing_and_zero_pages() -> None:
    zero, one = bytes(PAGE), b"\1" * PAGE
    corpus = build_corpus(PAGE, "t", [(pid, [(0, zero), (PAGE, one)]) for pid in range(5)])
    assert ideal_sharing(corpus, 256) == ideal_sharing(corpus, 5)
    assert (ideal_sharing(corpus, 256).pages_shared, ideal_sharing(corpus, 256).saving) == (2, 8)
    assert (ideal_sharing(corpus, 2).pages_shared, ideal_sharing(corpus, 2).saving) == (4, 4)
    with_zero = ideal_sharing(corpus, 256, use_zero_pages=True)
    assert (with_zero.pages_shared, with_zero.pages_sharing, with_zero.zero_pages) == (1, 4, 5)


def test_claim_verdicts() -> None:
    assert claim_verdict(0.34).startswith("reproduced")
    assert claim_verdict(0.30).startswith("reproduced")
    assert claim_verdict(0.12).startswith("not reproduced")
    assert claim_verdict(0.0).startswith("refuted") and claim_verdict(-0.1).startswith("refuted")
    assert claim_verdict(0.5, stock_comparisons=0).startswith("undetermined")


@pytest.fixture(scope="module")
def study(captured: tuple[Corpus, CaptureStats]) -> StudyReport:
    return study_corpus(captured[0])


def test_study_of_a_real_corpus_reaches_the_ideal(study: StudyReport, captured: tuple[Corpus, CaptureStats]) -> None:
    corpus, _ = captured
    assert study.problems == ()
    assert study.pages == corpus.pages and study.distinct_contents == len(corpus.contents)
    assert 0.0 <= study.sharing_vs_ideal <= 1.0
    assert study.sharing_vs_ideal == 1.0 and study.sharing_vs_ideal_lookahead == 1.0
    assert study.ideal.saving == corpus.pages - len(corpus.contents)  # few copies: no chains
    assert study.stock.merged == study.lookahead.merged and len(study.stock.merged) > 0
    assert study.model is not None and study.model.pages_sharing == study.stock.pages_sharing
    assert study.stock.intact and study.lookahead.intact
    assert study.stock.measured_scans == study.lookahead.measured_scans >= 3
    assert study.stock.comparisons > 0 and study.lookahead.lookahead_hits > 0
    assert study.lookahead.comparisons < study.stock.comparisons
    assert sum(study.stock.comparisons_by_scan[: study.stock.measured_scans]) == study.stock.comparisons
    assert study.stock.comparisons_by_scan[0] == 0  # first visits only store checksums
    assert 0 < study.lookahead_saving <= study.merging_saving < 1
    assert study.verdict.split(":")[0] in ("reproduced", "not reproduced", "refuted")


def test_study_json_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], captured: tuple[Corpus, CaptureStats]) -> None:
    corpus, _ = captured
    small = Corpus(corpus.page_size, corpus.workload, corpus.processes[:2], corpus.contents)
    used = sorted({c for p in small.processes for c in p.content_ids})
    renumber = {old: new for new, old in enumerate(used)}
    small = Corpus(
        small.page_size,
        small.workload,
        tuple(CapturedProcess(p.pid, p.addresses, tuple(renumber[c] for c in p.content_ids)) for p in small.processes),
        tuple(small.contents[c] for c in used),
    )
    path = tmp_path / "two.ksm"
    write_corpus(path, small)
    assert main(["ksm", "study", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("pages", "distinct_contents", "ideal", "pages_shared", "pages_sharing", "sharing_vs_ideal",
                "comparisons_per_page", "comparisons_per_page_lookahead", "lookahead_saving", "claim", "model"):
        assert key in data, key
    assert data["ok"] is True and data["sharing_vs_ideal"] == 1.0
    assert data["pages"] == small.pages and data["ideal"]["saving"] == small.pages - len(small.contents)
    assert main(["ksm", "study", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sharing_vs_ideal" in out and "paper's claim" in out and "model predicts" in out
    assert main(["ksm", "study", str(path), "--max-page-sharing", "1"]) == 2


# Mutants: broken systems the study must catch.


class CorruptingScanner(Ksm):
    """ksmd that changes a page's bytes during a scan (a false merge)."""

    def full_scans(self, count: int) -> None:
        super().full_scans(count)
        snapshot = self.snapshot()
        merged = [page for page in snapshot.pages if page.ksm]
        if merged:
            self.write(merged[-1].pid, merged[-1].addr, b"\xee")


class UnderCounting(Ksm):
    """Counters that miss one sharing page."""

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = super().counters()
        if counters["pages_sharing"]:
            counters["pages_sharing"] -= 1
        return counters


class LookaheadLosesMerges(Ksm):
    """Lookahead that unmerges (and unregisters) one merged page of the last process."""

    def full_scans(self, count: int) -> None:
        super().full_scans(count)
        if self.knobs().lookahead:
            merged = [page for page in self.snapshot().pages if page.ksm]
            if merged:
                self.madvise(merged[-1].pid, merged[-1].addr, 1, "UNMERGEABLE")


class OnlyTheFirstProcessMerges(Ksm):
    """Incomplete merging: only the first process's region is ever registered, so no
    page is shared across processes (the captured clones share many)."""

    def madvise(self, pid: int, addr: int, npages: int, advice: Advice) -> None:
        first = getattr(self, "_first_pid", pid)
        self._first_pid = first
        if advice != "MERGEABLE" or pid == first:
            super().madvise(pid, addr, npages, advice)


@pytest.mark.parametrize(
    ("mutant", "problem"),
    [
        (CorruptingScanner, "no longer reads back its captured content"),
        (UnderCounting, "shared/sharing/zero"),
        (LookaheadLosesMerges, "lookahead merges different pages"),
        (OnlyTheFirstProcessMerges, "ideal"),
    ],
)
def test_the_study_catches_broken_systems(
    mutant: type[KsmSystem], problem: str, captured: tuple[Corpus, CaptureStats]
) -> None:
    corpus, _ = captured
    owners: dict[int, set[int]] = {}
    for index, process in enumerate(corpus.processes):
        for content_id in process.content_ids:
            owners.setdefault(content_id, set()).add(index)
    assert any(len(indexes) > 1 for indexes in owners.values()), "the captured clones share no page"
    report = study_corpus(corpus, mutant, max_scans=4)
    assert not report.ok
    assert any(problem in text for text in report.problems), report.problems


def test_cli_study_exits_1_on_a_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import memoracle.ksm.study as ksm_study

    path = tmp_path / "small.ksm"
    page = bytes(range(256)) * (PAGE // 256)
    write_corpus(path, build_corpus(PAGE, "t", [(pid, [(0, page), (PAGE, b"\1" * PAGE)]) for pid in range(3)]))
    monkeypatch.setattr(ksm_study, "implementation_for", lambda pages: UnderCounting)
    assert main(["ksm", "study", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and any("ideal" in problem for problem in data["problems"])
    assert main(["ksm", "study", str(path)]) == 1
    assert "violation" in capsys.readouterr().out


def test_the_study_is_deterministic(study: StudyReport, captured: tuple[Corpus, CaptureStats]) -> None:
    again = study_corpus(captured[0], with_model=False).as_json()
    first = study.as_json()
    for data in (first, again):
        data["stock"].pop("seconds")
        data["lookahead"].pop("seconds")
        data.pop("model")
    assert again == first
