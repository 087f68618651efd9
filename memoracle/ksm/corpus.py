"""Real page-sharing corpora: capture from live processes, the ``.ksm`` file format, loading.

A *corpus* is what several real processes doing the same work hold in their private
anonymous memory at one instant: per process, the list of (virtual address, content id)
of its resident pages, and the distinct page contents once each. It is what a page
merger would see, and :mod:`memoracle.ksm.study` replays it through any
:class:`spec.ksm_api.KsmSystem`.

Capture (:func:`capture`) starts ``processes`` copies of a workload (the default,
``python-imports``, is ``sys.executable -I`` importing the same standard modules, then
blocking on its stdin pipe), waits for each to print ``ready``, stops them (``SIGSTOP``),
reads ``/proc/PID/maps`` and, for every private anonymous read-write region (no path,
``[heap]``, ``[stack]``, or an ``[anon:…]`` name), ``/proc/PID/pagemap`` to find the present
pages, and ``/proc/PID/mem`` to read them; then it kills the processes. If the pagemap is
unreadable every page of the region is read (reading ``mem`` then materialises the absent
ones as zero pages, which the capture statistics say). A range whose read fails is read
page by page and the unreadable pages are left out and counted, never fatal.

Choices where the task is silent, recorded here:

- Only *present* pages are captured (swapped pages are not present; KSM would not scan
  them either). ``--max-pages N`` keeps each process's first ``N`` present pages in
  address order, so the cap keeps address adjacency.
- Content ids are numbered by first appearance (processes in start order, addresses
  ascending), so the same capture always encodes to the same bytes.
- Address-space layout randomisation is switched off in the children by default
  (``personality(ADDR_NO_RANDOMIZE)``, as ``setarch -R`` does), modelling clones of one
  image (virtual machines or containers started from the same image, the paper's
  setting). With ASLR on, every heap pointer differs between processes and almost no
  page but the zero page is shared (measured: 3% of pages instead of 36%), so
  ``aslr=True`` remains available to show that. Whether it took effect is read back from
  ``/proc/PID/personality`` into the statistics.
- Hash randomisation stays on (``-I`` ignores ``PYTHONHASHSEED``); it changes little.

File format, version 1, all integers little-endian:

====================  ===========================================================
magic (8 bytes)       ``b"MKSMCORP"``
version (u16)         1
flags (u16)           0 (reserved; any other value is rejected)
page size (u32)       a power of two, 512 … 2 MiB
process count (u32)   at least 1
content count (u32)   distinct page contents
workload (u32 + N)    length, then a UTF-8 description of what was captured
directory             per process: original pid (u32), page count (u32)
page table            u64 compressed length, then zlib of every process's pages
                      in directory order: address (u64), content id (u32)
contents              u64 compressed length, then zlib of content count × page size
                      bytes
crc32 (u32)           of every byte before it
====================  ===========================================================

Limits (the reader's memory is bounded by them, whatever a file declares): at most
:data:`MAX_PROCESSES` processes, :data:`MAX_PAGES` pages in all and
:data:`MAX_CONTENT_BYTES` bytes of distinct contents; a compressed section is at most
:func:`max_packed_length` of its raw size (zlib's own output is far below it) and at
least 1/1032 of it (deflate's best ratio), so a count the file cannot hold is rejected
before anything is allocated.

The reader (:func:`read_corpus`, :func:`decode_corpus`) reads the file sequentially,
never more than the declared sizes allow (``/dev/zero`` fails at the magic), checks the
checksum over the compressed bytes *before* inflating anything, inflates each section in
bounded steps to exactly its declared size (a zlib bomb stops one byte past it), and
stores each process's pages as compact arrays (8 bytes an address, 4 a content id). It
rejects anything else with a :class:`CorpusFormatError` whose message says precisely
what and where: a bad magic, an unknown version, a count over a limit or more than the
file can hold, a truncation (which section, how many bytes short), a checksum mismatch,
bad zlib data, a content id out of range, unaligned or unordered addresses, a content
stored twice or used by no page, and trailing bytes.
"""

from __future__ import annotations

import ctypes
import io
import os
import re
import selectors
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

from spec.ksm_api import PAGE_SIZE, KsmSystem

MAGIC = b"MKSMCORP"
VERSION = 1
_HEADER = struct.Struct("<8sHHIIII")
_DIRECTORY_ENTRY = struct.Struct("<II")
_PAGE_ENTRY = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 512, 1 << 21
#: The largest workload description a file may carry.
MAX_WORKLOAD_BYTES = 4096
#: The most processes a corpus may hold.
MAX_PROCESSES = 4096
#: The most pages (over all processes) a corpus may hold: 16 GiB of 4 KiB pages.
MAX_PAGES = 1 << 22
#: The most bytes of distinct page contents a corpus may hold (what the reader keeps).
MAX_CONTENT_BYTES = 1 << 30
#: Deflate's best compression ratio: no stream of n bytes inflates to more than 1032·n.
DEFLATE_MAX_RATIO = 1032
#: Bytes inflated per step (a multiple of every page size).
_INFLATE_STEP = 1 << 21


class CorpusFormatError(ValueError):
    """A corpus file (or a corpus value) that breaks the format; the message says where."""


class CaptureError(RuntimeError):
    """Capturing failed (a workload did not start, ``/proc`` is not there, …)."""


@dataclass(frozen=True, eq=True)
class CapturedProcess:
    """One captured process: its resident anonymous pages in address order.

    ``addresses[i]`` held the content ``content_ids[i]`` of the corpus. Both are stored
    as compact arrays (``array("Q")`` and ``array("I")``) whatever sequence they were
    given as; a value that does not fit (a negative address, an id of 2**32 or more) is
    a :class:`CorpusFormatError`."""

    pid: int
    addresses: Sequence[int]
    content_ids: Sequence[int]

    def __post_init__(self) -> None:
        for name, code in (("addresses", "Q"), ("content_ids", "I")):
            values = getattr(self, name)
            if not (isinstance(values, array) and values.typecode == code):
                try:
                    values = array(code, values)
                except (OverflowError, TypeError) as error:
                    raise CorpusFormatError(f"process {self.pid}: {name} do not fit {code!r} ({error})") from None
                object.__setattr__(self, name, values)

    __hash__ = None  # type: ignore[assignment]  # arrays are mutable, so is this value's hash


@dataclass(frozen=True)
class Corpus:
    """Several processes' resident anonymous pages, each distinct content stored once."""

    page_size: int
    workload: str
    processes: tuple[CapturedProcess, ...]
    contents: tuple[bytes, ...]

    @property
    def pages(self) -> int:
        """Total captured pages over all processes."""
        return sum(len(p.addresses) for p in self.processes)

    def copies(self) -> list[int]:
        """``copies()[c]``: how many pages (over all processes) hold content ``c``."""
        counts = [0] * len(self.contents)
        for process in self.processes:
            for content in process.content_ids:
                counts[content] += 1
        return counts


def validate_corpus(corpus: Corpus) -> None:
    """Raise :class:`CorpusFormatError` unless ``corpus`` is well formed: a page size that
    is a power of two in range, at least one process, page-aligned strictly increasing
    addresses, content ids in range, every content used by some page, no content stored
    twice, every content exactly one page long."""
    size = corpus.page_size
    if size < MIN_PAGE_SIZE or size > MAX_PAGE_SIZE or size & (size - 1):
        raise CorpusFormatError(f"page size {size} is not a power of two in {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}")
    if not corpus.processes:
        raise CorpusFormatError("a corpus needs at least one process")
    if len(corpus.workload.encode()) > MAX_WORKLOAD_BYTES:
        raise CorpusFormatError(f"workload description longer than {MAX_WORKLOAD_BYTES} bytes")
    for index, content in enumerate(corpus.contents):
        if len(content) != size:
            raise CorpusFormatError(f"content {index} is {len(content)} bytes, not one page of {size}")
    used = [False] * len(corpus.contents)
    for number, process in enumerate(corpus.processes):
        if len(process.addresses) != len(process.content_ids):
            raise CorpusFormatError(
                f"process {number}: {len(process.addresses)} addresses but {len(process.content_ids)} content ids"
            )
        previous = -1
        for address, content_id in zip(process.addresses, process.content_ids):
            if address % size or not 0 <= address < 1 << 64:
                raise CorpusFormatError(f"process {number}: address {address:#x} is not page-aligned")
            if address <= previous:
                raise CorpusFormatError(
                    f"process {number}: address {address:#x} does not follow {previous:#x} (addresses must increase)"
                )
            previous = address
            if not 0 <= content_id < len(corpus.contents):
                raise CorpusFormatError(
                    f"process {number}: page {address:#x} has content id {content_id}, "
                    f"but the corpus has {len(corpus.contents)} contents"
                )
            used[content_id] = True
    for index, was_used in enumerate(used):
        if not was_used:
            raise CorpusFormatError(f"content {index} is used by no page")
    first_index: dict[bytes, int] = {}
    for index, content in enumerate(corpus.contents):
        if content in first_index:
            raise CorpusFormatError(f"contents {first_index[content]} and {index} are identical (stored twice)")
        first_index[content] = index


def encode_corpus(corpus: Corpus, *, check: bool = True) -> bytes:
    """The version-1 bytes of ``corpus``. With ``check`` (the default) the corpus is
    validated first (:class:`CorpusFormatError`); ``check=False`` exists only to build
    deliberately malformed files for testing readers."""
    if check:
        validate_corpus(corpus)
    workload = corpus.workload.encode()
    parts = [
        _HEADER.pack(MAGIC, VERSION, 0, corpus.page_size, len(corpus.processes), len(corpus.contents), len(workload)),
        workload,
    ]
    for process in corpus.processes:
        parts.append(_DIRECTORY_ENTRY.pack(process.pid, len(process.addresses)))
    table = b"".join(
        _PAGE_ENTRY.pack(address, content)
        for process in corpus.processes
        for address, content in zip(process.addresses, process.content_ids)
    )
    for section in (table, b"".join(corpus.contents)):
        packed = zlib.compress(section, 6)
        parts += [_LENGTH.pack(len(packed)), packed]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def max_packed_length(raw_length: int) -> int:
    """The longest compressed section this reader accepts for ``raw_length`` raw bytes
    (zlib's own worst case is ``raw_length`` + 0.03 % + 13 bytes)."""
    return raw_length + (raw_length >> 8) + 1024


class _Reader:
    """Sequential reads from a stream that name the section a truncation happened in,
    keep a running CRC-32, and never read more than asked (``size``, when the stream's
    length is known, lets a too-long request fail before any read)."""

    def __init__(self, stream: BinaryIO, size: int | None) -> None:
        self.stream = stream
        self.size = size
        self.offset = 0
        self.crc = 0

    def take(self, length: int, what: str) -> bytes:
        if self.size is not None and self.offset + length > self.size:
            self._truncated(length, what, self.size - self.offset)
        parts, missing = [], length
        while missing:
            chunk = self.stream.read(min(missing, _INFLATE_STEP))
            if not chunk:
                self._truncated(length, what, length - missing)
            parts.append(chunk)
            missing -= len(chunk)
        data = b"".join(parts)
        self.offset += length
        self.crc = zlib.crc32(data, self.crc)
        return data

    def _truncated(self, length: int, what: str, available: int) -> None:
        raise CorpusFormatError(
            f"truncated: {what} needs {length} bytes at offset {self.offset}, "
            f"but the file ends {available} bytes later"
        )

    def at_end(self) -> int:
        """How many bytes follow (0 at the end; counted up to 1 MiB past it)."""
        if self.size is not None:
            return self.size - self.offset
        return len(self.stream.read(1 << 20))


def _inflate(packed: bytes, expected: int, what: str, piece: int | None = None) -> list[bytes]:
    """Inflate ``packed`` to exactly ``expected`` bytes, cut into pieces of ``piece``
    bytes (one piece by default), in steps that never hold more than one step past what
    was announced: a stream that inflates further stops one byte past ``expected``."""
    piece = piece or max(expected, 1)
    pieces: list[bytes] = []
    buffer = bytearray()
    total = 0
    try:
        inflater = zlib.decompressobj()
        pending = packed
        while not inflater.eof and total <= expected:
            chunk = inflater.decompress(pending, min(_INFLATE_STEP, expected + 1 - total))
            progressed = bool(chunk) or len(inflater.unconsumed_tail) < len(pending)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            buffer += chunk
            while len(buffer) >= piece and total <= expected:
                pieces.append(bytes(buffer[:piece]))
                del buffer[:piece]
            if not progressed:
                break
        if total > expected:
            raise CorpusFormatError(f"{what} holds more than the {expected} bytes the header announces")
        if not inflater.eof:
            raise CorpusFormatError(f"{what}: the zlib stream is incomplete")
        if inflater.unused_data:
            raise CorpusFormatError(f"{what}: {len(inflater.unused_data)} bytes after the zlib stream")
    except zlib.error as error:
        raise CorpusFormatError(f"{what} is not valid zlib data ({error})") from None
    if total != expected:
        raise CorpusFormatError(f"{what} holds {total} bytes, the header announces {expected}")
    if buffer:
        pieces.append(bytes(buffer))
    return pieces


def _check_packed_length(packed_length: int, expected: int, what: str) -> None:
    if packed_length > max_packed_length(expected):
        raise CorpusFormatError(
            f"{what}: {packed_length} compressed bytes for {expected} raw bytes (at most {max_packed_length(expected)})"
        )
    if expected > DEFLATE_MAX_RATIO * packed_length + DEFLATE_MAX_RATIO:
        raise CorpusFormatError(
            f"{what}: the header announces {expected} bytes, more than {packed_length} compressed bytes can hold"
        )


def _columns(table: bytes) -> tuple[array[int], array[int]]:
    """Split the ``<QI`` records of the page table into an address and an id array."""
    count = len(table) // _PAGE_ENTRY.size
    address_bytes, id_bytes = bytearray(8 * count), bytearray(4 * count)
    for k in range(8):
        address_bytes[k::8] = table[k :: _PAGE_ENTRY.size]
    for k in range(4):
        id_bytes[k::4] = table[8 + k :: _PAGE_ENTRY.size]
    addresses, ids = array("Q", bytes(address_bytes)), array("I", bytes(id_bytes))
    if sys.byteorder != "little":
        addresses.byteswap()
        ids.byteswap()
    return addresses, ids


def _decode_stream(stream: BinaryIO, size: int | None) -> Corpus:
    reader = _Reader(stream, size)
    first = b""
    while len(first) < len(MAGIC):
        more = stream.read(len(MAGIC) - len(first))
        if not more:
            break
        first += more
    if first != MAGIC:
        raise CorpusFormatError(f"not a KSM corpus: bad magic {first!r} (expected {MAGIC!r})")
    reader.offset, reader.crc = len(MAGIC), zlib.crc32(first)
    _, version, flags, page_size, process_count, content_count, workload_length = _HEADER.unpack(
        first + reader.take(_HEADER.size - len(MAGIC), "the header")
    )
    if version != VERSION:
        raise CorpusFormatError(f"unsupported corpus version {version} (this reader knows version {VERSION})")
    if flags:
        raise CorpusFormatError(f"unknown flags {flags:#x} in the header")
    if page_size < MIN_PAGE_SIZE or page_size > MAX_PAGE_SIZE or page_size & (page_size - 1):
        raise CorpusFormatError(f"page size {page_size} is not a power of two in {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}")
    if workload_length > MAX_WORKLOAD_BYTES:
        raise CorpusFormatError(f"workload description of {workload_length} bytes (at most {MAX_WORKLOAD_BYTES})")
    if process_count > MAX_PROCESSES:
        raise CorpusFormatError(f"{process_count} processes (at most {MAX_PROCESSES})")
    if content_count * page_size > MAX_CONTENT_BYTES:
        raise CorpusFormatError(
            f"{content_count} contents of {page_size} bytes (at most {MAX_CONTENT_BYTES >> 20} MiB of contents)"
        )
    try:
        workload = reader.take(workload_length, "the workload description").decode()
    except UnicodeDecodeError:
        raise CorpusFormatError("the workload description is not UTF-8") from None
    directory = [
        _DIRECTORY_ENTRY.unpack(reader.take(_DIRECTORY_ENTRY.size, f"the directory entry of process {number}"))
        for number in range(process_count)
    ]
    total_pages = sum(count for _, count in directory)
    if total_pages > MAX_PAGES:
        raise CorpusFormatError(f"the directory lists {total_pages} pages (at most {MAX_PAGES})")
    packed_sections: list[tuple[bytes, int, str]] = []
    for what, expected in (("the page table", total_pages * _PAGE_ENTRY.size), ("the contents", content_count * page_size)):
        (packed_length,) = _LENGTH.unpack(reader.take(_LENGTH.size, f"the length of {what}"))
        _check_packed_length(packed_length, expected, what)
        packed_sections.append((reader.take(packed_length, what), expected, what))
    body_crc = reader.crc
    (stored_crc,) = _CRC.unpack(reader.take(_CRC.size, "the checksum"))
    trailing = reader.at_end()
    if trailing:
        raise CorpusFormatError(f"{trailing} unexpected bytes after the checksum")
    if body_crc != stored_crc:
        raise CorpusFormatError("checksum mismatch: the file is corrupt")
    table = b"".join(_inflate(*packed_sections[0]))
    addresses, ids = _columns(table)
    del table
    processes, position = [], 0
    for pid, count in directory:
        processes.append(CapturedProcess(pid, addresses[position : position + count], ids[position : position + count]))
        position += count
    del addresses, ids
    packed_contents, expected, what = packed_sections.pop()
    contents = tuple(_inflate(packed_contents, expected, what, page_size))
    del packed_contents, packed_sections
    corpus = Corpus(page_size, workload, tuple(processes), contents)
    validate_corpus(corpus)
    return corpus


def decode_corpus(data: bytes) -> Corpus:
    """Parse the bytes of a corpus file. Guarantees a :func:`validate_corpus`-valid corpus,
    or a :class:`CorpusFormatError` saying precisely what is wrong."""
    return _decode_stream(io.BytesIO(data), len(data))


def write_corpus(path: Path, corpus: Corpus) -> int:
    """Write ``corpus`` to ``path`` (validated first); returns the file's size in bytes."""
    data = encode_corpus(corpus)
    path.write_bytes(data)
    return len(data)


def read_corpus(path: Path) -> Corpus:
    """Read and validate a corpus file (:class:`CorpusFormatError` if malformed,
    :class:`OSError` if unreadable), reading no more than its declared sizes allow and
    holding at most the limits of the module docstring (also from a pipe or a device)."""
    with path.open("rb") as handle:
        info = os.fstat(handle.fileno())
        size = info.st_size if stat.S_ISREG(info.st_mode) else None
        return _decode_stream(handle, size)


def build_corpus(page_size: int, workload: str, captured: Sequence[tuple[int, Sequence[tuple[int, bytes]]]]) -> Corpus:
    """A corpus from raw pages: per process its pid and its (address, content) pairs.
    Pairs are sorted by address; content ids are numbered by first appearance."""
    ids: dict[bytes, int] = {}
    processes = []
    for pid, pages in captured:
        ordered = sorted(pages, key=lambda pair: pair[0])
        content_ids = tuple(ids.setdefault(content, len(ids)) for _, content in ordered)
        processes.append(CapturedProcess(pid, tuple(address for address, _ in ordered), content_ids))
    corpus = Corpus(page_size, workload, tuple(processes), tuple(ids))
    validate_corpus(corpus)
    return corpus


# --------------------------------------------------------------------------- capture

#: The standard modules the ``python-imports`` workload imports by default.
DEFAULT_MODULES = (
    "json", "decimal", "re", "collections", "argparse", "datetime", "fractions",
    "email.parser", "http.client", "xml.dom.minidom", "urllib.parse", "logging",
)  # fmt: skip
#: The workloads ``capture`` knows.
WORKLOADS = ("python-imports",)
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_CHILD_SCRIPT = (
    "import gc, importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "gc.collect()\n"
    "sys.stdout.write('ready\\n')\n"
    "sys.stdout.flush()\n"
    "sys.stdin.buffer.read()\n"
)


@dataclass
class CaptureStats:
    """What a capture saw besides the pages themselves."""

    regions: int = 0
    region_pages: int = 0
    present_pages: int = 0
    unreadable_pages: int = 0
    capped_pages: int = 0
    pagemap_used: bool = True
    aslr_disabled: bool = False
    seconds: float = 0.0
    per_process: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Region:
    start: int
    end: int
    name: str


def anonymous_regions(maps_text: str) -> list[_Region]:
    """The private anonymous read-write regions of a ``/proc/PID/maps`` text: no path,
    ``[heap]``, ``[stack]`` or ``[anon:…]``; inode 0; permissions ``rw?p``."""
    regions = []
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        name = fields[5].strip() if len(fields) == 6 else ""
        perms, inode = fields[1], fields[4]
        if perms[:2] != "rw" or perms[3:4] != "p" or inode != "0":
            continue
        if name not in ("", "[heap]", "[stack]") and not name.startswith("[anon:"):
            continue
        start_text, end_text = fields[0].split("-")
        regions.append(_Region(int(start_text, 16), int(end_text, 16), name))
    return regions


def _present_runs(pid: int, region: _Region, page_size: int, stats: CaptureStats) -> list[tuple[int, int]]:
    """Maximal runs (address, pages) of present pages of ``region`` by the pagemap; the
    whole region if the pagemap cannot be read."""
    count = (region.end - region.start) // page_size
    try:
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap:
            raw = os.pread(pagemap.fileno(), count * 8, region.start // page_size * 8)
        if len(raw) != count * 8:
            raise OSError("short pagemap read")
    except OSError:
        stats.pagemap_used = False
        return [(region.start, count)]
    runs: list[tuple[int, int]] = []
    run_start, run_length = 0, 0
    for index, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
        if entry >> 63 & 1:
            if run_length == 0:
                run_start = region.start + index * page_size
            run_length += 1
        elif run_length:
            runs.append((run_start, run_length))
            run_length = 0
    if run_length:
        runs.append((run_start, run_length))
    return runs


def _read_pages(memory_fd: int, start: int, count: int, page_size: int, stats: CaptureStats) -> list[tuple[int, bytes]]:
    """Read ``count`` pages at ``start``; unreadable pages are counted and left out."""
    try:
        data = os.pread(memory_fd, count * page_size, start)
        if len(data) == count * page_size:
            return [(start + i * page_size, data[i * page_size : (i + 1) * page_size]) for i in range(count)]
    except OSError:
        pass
    pages = []
    for index in range(count):
        address = start + index * page_size
        try:
            page = os.pread(memory_fd, page_size, address)
        except OSError:
            page = b""
        if len(page) == page_size:
            pages.append((address, page))
        else:
            stats.unreadable_pages += 1
    return pages


def read_process_pages(pid: int, page_size: int, stats: CaptureStats, max_pages: int | None = None) -> list[tuple[int, bytes]]:
    """The present private anonymous pages of process ``pid`` as (address, content), in
    address order, at most ``max_pages`` of them (the first ones)."""
    try:
        maps_text = Path(f"/proc/{pid}/maps").read_text()
        memory_fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError as error:
        raise CaptureError(f"cannot read the memory of process {pid}: {error.strerror or error}") from None
    pages: list[tuple[int, bytes]] = []
    try:
        for region in anonymous_regions(maps_text):
            stats.regions += 1
            stats.region_pages += (region.end - region.start) // page_size
            for start, count in _present_runs(pid, region, page_size, stats):
                stats.present_pages += count
                pages += _read_pages(memory_fd, start, count, page_size, stats)
    finally:
        os.close(memory_fd)
    if max_pages is not None and len(pages) > max_pages:
        stats.capped_pages += len(pages) - max_pages
        pages = pages[:max_pages]
    return pages


def check_module_names(modules: Iterable[str]) -> tuple[str, ...]:
    """The module names, each checked to be a dotted Python name (:class:`ValueError`)."""
    names = tuple(modules)
    if not names:
        raise ValueError("--modules needs at least one module name")
    for name in names:
        if not _MODULE_NAME.match(name):
            raise ValueError(f"{name!r} is not a module name")
    return names


_ADDR_NO_RANDOMIZE = 0x0040000


def _disable_aslr() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(0xFFFFFFFF)
    if current != -1:
        libc.personality(current | _ADDR_NO_RANDOMIZE)


def _aslr_disabled(pid: int) -> bool:
    try:
        return bool(int(Path(f"/proc/{pid}/personality").read_text(), 16) & _ADDR_NO_RANDOMIZE)
    except (OSError, ValueError):
        return False


def _wait_ready(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    selector = selectors.DefaultSelector()
    pending: dict[int, bytes] = {}
    for index, child in enumerate(children):
        assert child.stdout is not None
        selector.register(child.stdout, selectors.EVENT_READ, index)
        pending[index] = b""
    deadline = time.monotonic() + timeout
    try:
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaptureError(f"{len(pending)} process(es) not ready after {timeout:g} s")
            for key, _ in selector.select(remaining):
                index = key.data
                chunk = os.read(key.fd, 64)
                if not chunk:
                    child = children[index]
                    child.wait()
                    assert child.stderr is not None
                    lines = child.stderr.read().decode(errors="replace").strip().splitlines()
                    reason = lines[-1] if lines else f"exit status {child.returncode}"
                    raise CaptureError(f"process {index} exited before it was ready: {reason}")
                pending[index] += chunk
                if b"ready\n" in pending[index]:
                    selector.unregister(key.fileobj)
                    del pending[index]
    finally:
        selector.close()


def capture(
    processes: int,
    *,
    workload: str = "python-imports",
    modules: Sequence[str] = DEFAULT_MODULES,
    max_pages: int | None = None,
    aslr: bool = False,
    timeout: float = 60.0,
) -> tuple[Corpus, CaptureStats]:
    """Start ``processes`` copies of ``workload``, wait until all are ready, read their
    present private anonymous pages, kill them, and return the corpus and statistics.
    The children run without address-space randomisation unless ``aslr``.

    Guarantees: the children are killed and reaped whatever happens; failures are a
    :class:`CaptureError` (or :class:`ValueError` for bad arguments) with a one-line
    reason."""
    if processes < 1:
        raise ValueError("--processes must be at least 1")
    if max_pages is not None and max_pages < 1:
        raise ValueError("--max-pages must be at least 1")
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")
    names = check_module_names(modules)
    if not Path("/proc/self/maps").exists():
        raise CaptureError("capture needs Linux's /proc (no /proc/self/maps here)")
    page_size = os.sysconf("SC_PAGE_SIZE")
    stats = CaptureStats()
    started = time.perf_counter()
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(processes):
            try:
                child = subprocess.Popen(
                    [sys.executable, "-I", "-c", _CHILD_SCRIPT, *names],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    preexec_fn=None if aslr else _disable_aslr,
                )
            except OSError as error:
                raise CaptureError(f"cannot start {sys.executable}: {error.strerror or error}") from None
            children.append(child)
        _wait_ready(children, timeout)
        stats.aslr_disabled = all(_aslr_disabled(child.pid) for child in children)
        for child in children:
            os.kill(child.pid, signal.SIGSTOP)
        captured = []
        for child in children:
            pages = read_process_pages(child.pid, page_size, stats, max_pages)
            stats.per_process.append(len(pages))
            captured.append((child.pid, pages))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
    layout = "aslr" if aslr else "no-aslr"
    description = f"{workload} ({layout}): {','.join(names)}"
    stats.seconds = time.perf_counter() - started
    return build_corpus(page_size, description, captured), stats


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedCorpus:
    """Where a corpus went in a :class:`~spec.ksm_api.KsmSystem`.

    ``pids[i]`` is the emulated process of captured process ``i``; ``placement`` maps
    every emulated (pid, address) to (captured process index, captured address, content
    id); ``regions`` lists each process's one mapping (pid, address, pages)."""

    pids: tuple[int, ...]
    placement: dict[tuple[int, int], tuple[int, int, int]]
    regions: tuple[tuple[int, int, int], ...]

    @property
    def pages(self) -> int:
        """Pages written (present) in the system."""
        return len(self.placement)


def compact_layout(addresses: Sequence[int], page_size: int) -> list[int]:
    """Page offsets (in pages) of ``addresses`` in a compacted region: runs of
    consecutive addresses stay consecutive, and each gap between runs, however long,
    becomes exactly one absent page. Guarantees: offsets increase, and
    ``offset[i+1] == offset[i] + 1`` iff ``addresses[i+1] == addresses[i] + page_size``."""
    offsets: list[int] = []
    for index, address in enumerate(addresses):
        if index == 0:
            offsets.append(0)
        elif address == addresses[index - 1] + page_size:
            offsets.append(offsets[-1] + 1)
        else:
            offsets.append(offsets[-1] + 2)
    return offsets


def load_corpus(system: KsmSystem, corpus: Corpus) -> LoadedCorpus:
    """Replay ``corpus`` into ``system``: one new process per captured process, each with
    one anonymous mapping registered ``MERGEABLE`` that holds its pages in a compacted
    layout (:func:`compact_layout`: address adjacency is kept exactly, which is what the
    lookahead optimisation depends on, and each gap becomes one absent page that is never
    written, hence never scanned). Every captured page is written, zero pages included,
    so every captured page is present. Raises :class:`CorpusFormatError` if the corpus's
    page size is not the system's."""
    if corpus.page_size != PAGE_SIZE:
        raise CorpusFormatError(f"the corpus has {corpus.page_size}-byte pages, the system {PAGE_SIZE}-byte pages")
    pids, regions = [], []
    placement: dict[tuple[int, int], tuple[int, int, int]] = {}
    for index, process in enumerate(corpus.processes):
        pid = system.add_process()
        pids.append(pid)
        if not process.addresses:
            continue
        offsets = compact_layout(process.addresses, PAGE_SIZE)
        npages = offsets[-1] + 1
        base = system.mmap(pid, npages)
        system.madvise(pid, base, npages, "MERGEABLE")
        regions.append((pid, base, npages))
        for offset, address, content_id in zip(offsets, process.addresses, process.content_ids):
            target = base + offset * PAGE_SIZE
            system.write(pid, target, corpus.contents[content_id])
            placement[(pid, target)] = (index, address, content_id)
    return LoadedCorpus(tuple(pids), placement, tuple(regions))
