"""Corruption campaigns: damage a UMFS image's metadata, check nothing reads it wrong.

A campaign builds small *specimen* images (:func:`specimens`), maps every byte of each
(:func:`field_map`: which structure and field it belongs to, or which file's data, or
nothing), damages copies of them (:func:`trials`) and reads each copy as a program would
— mount, then every path and every file's contents through the checked lookups, then
fsck — under a work budget (:class:`WorkBudget`: SCM bytes read, a multiple of the image,
so that a loop is a finding and not a hang). Each trial's verdict
(:func:`run_trial`) is one of:

- ``mount`` / ``lookup`` / ``fsck``: :class:`~impl.umfs_layout.CorruptImage` from mount,
  from a lookup (the tree being read), or only from fsck with the tree read intact (for
  a forged trial: or with the tree read wrong, which only fsck's relations can see);
- ``harmless``: the tree read back is the specimen's and fsck passes;
- ``data``: a byte of a file's contents was damaged, and exactly that byte of that file
  reads differently (file data is not checksummed);
- ``SILENT`` (a violation): a tree other than the specimen's, with no CorruptImage;
- ``CRASH`` (a violation): any other exception, with its type;
- ``BUDGET`` (a violation): more than the work budget was read — a loop.

The damage (:class:`Trial`): *random* single-bit flips, uniformly over the metadata bytes
or over the whole image; *targeted* changes to every metadata field (bits flipped low and
high, zero, all ones, off by one, a size off by 64, names made invalid, …) and to
relations between structures (two entries' inode numbers swapped, an entry pointing at the
root, its own directory or a free inode, two inode slots swapped, a table entry pointing at
another file's page or a free page, a directory page copied over another); and *forged*
damage, whose checksum is recomputed to match, so that only the structural checks behind
the checksums can catch it — forged trials must never crash, loop or exceed memory, but
some cannot be detected at all (a forged size 64 bytes larger reads 64 zeros) and are
reported, not failed.

Everything is deterministic from the seed; a failure names the trial and how to reproduce
it (``memoracle umfs corrupt --seed S --trial N``).
"""

from __future__ import annotations

import random
import re
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from impl.mmu_emu import Machine
from impl.scm_emu import ScmEmu
from impl.umfs import Umfs
from impl.umfs_check import fsck
from impl.umfs_layout import (
    DIRENT_SIZE,
    DIRPAGE_CHECKSUM,
    INODE_FIELDS,
    INODE_SIZE,
    LOG_ATTR_LINE,
    LOG_IDENTITY,
    LOG_RECORDS,
    PAGE,
    ROOT_INO,
    SUPER_CLEAN,
    SUPER_GENERATION,
    CorruptImage,
    Inode,
    attr_checksum,
    pack_generation,
)
from impl.umfs_meta import Metadata
from impl.umfs_ulog import ULog
from spec.umfs_api import O_CREAT, O_RDWR

SCM_BYTES = 512 * 1024
DRAM_BYTES = 64 * 1024
#: A trial may read at most this many times the image's size (a normal one reads ~2×).
BUDGET_FACTOR = 64
Tree = dict[str, tuple[str, int, bytes | tuple[str, ...]]]
VIOLATIONS = ("SILENT", "CRASH", "BUDGET")


class WorkBudgetExceeded(Exception):
    """A trial read more SCM bytes than its budget: UMFS looped on a damaged image."""


@dataclass(frozen=True)
class Field:
    """One metadata field: ``structure`` (``"inode 3"``), ``name`` (``"size"``), where."""

    structure: str
    name: str
    offset: int
    length: int

    def label(self) -> str:
        """``structure name``."""
        return f"{self.structure} {self.name}"


@dataclass
class Specimen:
    """An image, the tree it must read as, and the map of its bytes."""

    name: str
    image: bytes
    tree: Tree
    fields: list[Field]
    #: SCM offset → (inode, offset in the file) for every byte of file contents.
    data: dict[int, tuple[int, int]]
    paths: dict[int, list[str]]  #: inode → its paths
    free_pages: list[int] = field(default_factory=list)  #: SCM offsets of free data-zone pages
    #: Forgers: given a damaged image, recompute the checksum that covers an offset.
    reseal: list[tuple[int, int, Callable[[bytearray], None]]] = field(default_factory=list)


@dataclass(frozen=True)
class Trial:
    """One damaged copy: ``kind`` (random-meta, random-any, targeted, forged), what it
    does, and the edits ``(offset, bytes)`` to make."""

    index: int
    kind: str
    what: str
    edits: tuple[tuple[int, bytes], ...]
    forge: bool = False


@dataclass
class Result:
    """A trial's verdict (see the module doc) and the detail (the CorruptImage message,
    the exception, or the first path that differs)."""

    trial: Trial
    verdict: str
    detail: str = ""


# ============================================================ specimens


def _build(machine: Machine, leave_open: bool, umfs_cls: type[Umfs]) -> Umfs:
    """The specimen workload: nested directories, a two-page directory of hard links, a
    multi-page file, an empty file, a file freed and one truncated (stale bytes in free
    slots and pages), a renamed directory."""
    fs = umfs_cls.mkfs(machine, inodes=32)
    pid = fs.spawn()

    def put(path: str, data: bytes) -> None:
        fd = fs.open(pid, path, O_CREAT | O_RDWR)
        fs.write(pid, fd, data)
        fs.close(pid, fd)

    fs.mkdir("/docs")
    fs.mkdir("/docs/deep")
    fs.mkdir("/tmp")
    put("/a", bytes(range(256)) * 20)  # 5120 bytes: two pages
    put("/empty", b"")
    put("/docs/note", "ünïcødé name? no: contents".encode())
    put("/docs/deep/leaf", b"leaf" * 300)
    put("/gone", b"x" * 3000)
    fs.unlink("/gone")
    put("/cut", b"c" * 9000)
    fd = fs.open(pid, "/cut", O_RDWR)
    fs.ftruncate(pid, fd, 4100)
    fs.close(pid, fd)
    fs.mkdir("/links")
    for n in range(17):  # 17 entries: two directory pages
        fs.link("/a", f"/links/l{n:02}")
    fs.rename("/tmp", "/docs/moved")
    fs.rename("/docs/note", "/docs/moved/note")
    if leave_open:  # attributes cached in the U-Logs, as a crash while open leaves them
        for path, data in (("/a", b"appended"), ("/docs/deep/leaf", b"!" * 5000)):
            fd = fs.open(pid, path, O_RDWR)
            fs.pwrite(pid, fd, data, fs.fstat(pid, fd).size)
    else:
        fs.unmount()
    return fs


def specimens(umfs_cls: type[Umfs] = Umfs) -> list[Specimen]:
    """Two specimens made by ``umfs_cls``: ``clean`` (unmounted cleanly) and ``open`` (two
    files open with attributes cached in their U-Logs, as a crash while they were open
    leaves it)."""
    out = []
    for name, leave_open in (("open", True), ("clean", False)):
        machine = Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES))
        _build(machine, leave_open, umfs_cls)
        image = machine.scm.durable()
        fs = umfs_cls.mount(Machine(DRAM_BYTES, scm=ScmEmu(SCM_BYTES, image=image)))
        specimen = Specimen(name, image, fs.observe(), [], {}, {})
        _map(specimen, fs)
        out.append(specimen)
    return out


def _map(specimen: Specimen, fs: Umfs) -> None:
    """Fill in the specimen's field map, data map and forgers from ``fs``, the specimen
    mounted (where structures are does not change with recovery's write-backs)."""
    fields, base, meta = specimen.fields, fs.base, fs.meta
    specimen.free_pages = [page - base for page in range(fs.zone.first, fs.zone.limit, PAGE) if fs.zone.is_free(page)]
    for name, offset in (("magic", 0), ("version+page", 8), ("phys_base", 16), ("total_pages", 24),
                         ("inode_start", 32), ("inode_pages", 40), ("inode_count", 48), ("data_start", 56),
                         ("data_pages", 64), ("root_ino", 72), ("checksum", 80), ("clean", SUPER_CLEAN),
                         ("next_generation", SUPER_GENERATION), ("generation_checksum", SUPER_GENERATION + 8)):  # fmt: skip
        fields.append(Field("superblock", name, offset, 8))
    specimen.reseal += [(0, SUPER_RECORD, _superblock_resealer), (SUPER_GENERATION, SUPER_GENERATION + 16, _generation_resealer)]
    live: dict[int, Inode] = {}
    for ino, inode in meta.all_inodes():
        slot = meta.inode_addr(ino) - base
        if inode.kind == 0:
            fields.append(Field(f"free inode {ino}", "slot", slot, 8))
            continue
        live[ino] = inode
        for name, offset in INODE_FIELDS.items():
            fields.append(Field(f"inode {ino}", name, slot + offset, 8))
        fields.append(Field(f"inode {ino}", "reserved", slot + INODE_SIZE - 8, 8))  # must stay zero
        specimen.reseal.append((slot, slot + INODE_SIZE, _inode_resealer(ino, slot)))
        files = fs.tables.scan(inode.fpt, {}, "")
        logs = fs.tables.scan(inode.ulog, {}, "")
        for what, scan in (("file table", files), ("U-Log table", logs)):
            for table in scan.tables:
                raw = fs.pm.read(table, PAGE)
                for n in range(PAGE // 8):
                    if any(raw[8 * n : 8 * n + 8]) or n < 2:
                        fields.append(Field(f"inode {ino} {what} page {table - base:#x}", f"entry {n}", table - base + 8 * n, 8))
        header = ULog(fs.pm, fs.tables, inode.ulog).header() - base
        for name, offset in (("state", 0), ("seq", 8), ("count", 16), ("nbytes", 24), ("op", 32), ("checksum", 40),
                             ("attr_valid", LOG_ATTR_LINE), ("attr_size", LOG_ATTR_LINE + 8),
                             ("attr_digest", LOG_ATTR_LINE + 16), ("attr_checksum", LOG_ATTR_LINE + 24),
                             ("identity_ino", LOG_IDENTITY), ("identity_generation", LOG_IDENTITY + 8),
                             ("identity_top", LOG_IDENTITY + 16), ("identity_checksum", LOG_IDENTITY + 24),
                             ("first record", LOG_RECORDS)):  # fmt: skip
            fields.append(Field(f"U-Log of inode {ino}", name, header + offset, 8))
        specimen.reseal.append((header + LOG_ATTR_LINE, header + LOG_ATTR_LINE + 32, _attr_resealer(ino, header)))
        if inode.kind == 1:
            size = inode.size
            found = meta.read_attr_line(ino, header + base)
            if found is not None:
                size = found[0]
            for index, page in files.data:
                for k in range(min(PAGE, size - index * PAGE)):
                    specimen.data[page - base + k] = (ino, index * PAGE + k)
        else:
            for slot_info in meta.dir_slots(ino):
                at = slot_info.addr - base
                where = f"directory {ino} page {slot_info.page_index} entry {(at % PAGE) // DIRENT_SIZE}"
                if slot_info.ino:
                    fields += [Field(where, "ino", at, 8), Field(where, "generation", at + 8, 4),
                               Field(where, "name_len", at + 12, 2), Field(where, "reserved", at + 14, 2),
                               Field(where, "name", at + 16, 8)]  # fmt: skip
                elif (at % PAGE) // DIRENT_SIZE == 0:
                    fields.append(Field(where, "free slot", at, 8))
                if (at % PAGE) // DIRENT_SIZE == 0:
                    page = slot_info.page - base
                    fields.append(Field(f"directory {ino} page {slot_info.page_index}", "checksum", page + DIRPAGE_CHECKSUM, 8))
                    specimen.reseal.append(
                        (page, page + PAGE, _dirpage_resealer(meta, ino, inode.generation, slot_info.page_index, page))
                    )
    pending = [("/", ROOT_INO)]
    while pending:
        path, ino = pending.pop()
        specimen.paths.setdefault(ino, []).append(path)
        if live[ino].kind == 2:
            for name, child in meta.entries(ino).items():
                pending.append((f"/{name}" if path == "/" else f"{path}/{name}", child.ino))


#: The superblock's checksummed record: its first 80 bytes, then their CRC-32.
SUPER_RECORD = 80


def _superblock_resealer(image: bytearray) -> None:
    struct.pack_into("<Q", image, SUPER_RECORD, zlib.crc32(image[:SUPER_RECORD]))


def _generation_resealer(image: bytearray) -> None:
    (value,) = struct.unpack_from("<Q", image, SUPER_GENERATION)
    image[SUPER_GENERATION : SUPER_GENERATION + 16] = pack_generation(value)


def _inode_resealer(ino: int, slot: int) -> Callable[[bytearray], None]:
    def reseal(image: bytearray) -> None:
        image[slot : slot + INODE_SIZE] = Inode.unpack(image[slot : slot + INODE_SIZE]).pack(ino)

    return reseal


def _attr_resealer(ino: int, header: int) -> Callable[[bytearray], None]:
    def reseal(image: bytearray) -> None:
        valid, size, digest = struct.unpack_from("<QQQ", image, header + LOG_ATTR_LINE)
        struct.pack_into("<Q", image, header + LOG_ATTR_LINE + 24, attr_checksum(ino, valid, size, digest))

    return reseal


def _dirpage_resealer(meta: Metadata, dino: int, generation: int, index: int, page: int) -> Callable[[bytearray], None]:
    def reseal(image: bytearray) -> None:
        checksum = meta.dirpage_checksum(dino, generation, index, image[page : page + PAGE])
        struct.pack_into("<Q", image, page + DIRPAGE_CHECKSUM, checksum)

    return reseal


# ============================================================ damage


def _word(image: bytes, offset: int) -> int:
    return int.from_bytes(image[offset : offset + 8], "little")


def _set(offset: int, value: int, length: int = 8) -> tuple[int, bytes]:
    return offset, (value & ((1 << (8 * length)) - 1)).to_bytes(length, "little")


def _field_changes(image: bytes, f: Field) -> Iterator[tuple[str, tuple[tuple[int, bytes], ...]]]:
    """The targeted changes of one field."""
    value = int.from_bytes(image[f.offset : f.offset + f.length], "little")
    bits = 8 * f.length
    for bit in sorted({0, 7, bits // 2 + 1, bits - 1, 41 if bits == 64 else 0}):
        yield f"flip bit {bit}", (_set(f.offset, value ^ (1 << bit), f.length),)
    for label, new in (("zero", 0), ("all ones", -1), ("+1", value + 1), ("-1", value - 1)):
        if new & ((1 << bits) - 1) != value:
            yield label, (_set(f.offset, new, f.length),)
    if f.name in ("size", "attr_size"):
        yield "+64", (_set(f.offset, value + 64),)
        yield "-64", (_set(f.offset, max(0, value - 64)),)
    if f.name == "name":
        for label, byte in (("invalid UTF-8", 0xFF), ("a slash", 0x2F), ("NUL", 0)):
            yield f"first name byte {label}", ((f.offset, bytes([byte])),)
    if f.name == "name_len":
        for new in (255, 256, 0xFFFF):
            yield f"= {new}", (_set(f.offset, new, 2),)


def _relations(specimen: Specimen) -> Iterator[tuple[str, tuple[tuple[int, bytes], ...]]]:
    """Targeted damage to relations between structures."""
    image, fields = specimen.image, specimen.fields
    entries = [f for f in fields if f.name == "ino" and f.structure.startswith("directory")]
    for a, b in zip(entries, entries[1:] + entries[:1]):
        if image[a.offset : a.offset + 12] != image[b.offset : b.offset + 12]:
            yield f"swap inode numbers of {a.structure} and {b.structure}", (
                (a.offset, image[b.offset : b.offset + 8]), (b.offset, image[a.offset : a.offset + 8]))  # fmt: skip
            yield f"swap inode numbers and generations of {a.structure} and {b.structure}", (
                (a.offset, image[b.offset : b.offset + 12]), (b.offset, image[a.offset : a.offset + 12]))  # fmt: skip
    for entry in entries[:6]:
        dino = int(entry.structure.split()[1])
        for label, target in (("the root", ROOT_INO), ("its own directory", dino), ("a free inode", 31)):
            yield f"{entry.structure} names {label}", (_set(entry.offset, target),)
    slots = [f for f in fields if f.name == "kind"]
    for a, b in zip(slots, slots[1:]):
        yield f"swap slots of {a.structure} and {b.structure}", (
            (a.offset, image[b.offset : b.offset + INODE_SIZE]), (b.offset, image[a.offset : a.offset + INODE_SIZE]))  # fmt: skip
    data_pages = sorted({offset - offset % PAGE for offset in specimen.data})
    base = 1 << 40  # the SCM's physical base
    for f in fields:  # every entry leading to a file's data page, or within a U-Log's table
        value = _word(image, f.offset)
        page = (value & ((1 << 52) - 1) & ~0xFFF) - base
        if not value & 1 or not ("U-Log table" in f.structure or page in data_pages):
            continue
        for label, other in (("another file's page", data_pages[0]), ("a free page", specimen.free_pages[-1])):
            if other != page:
                yield f"{f.label()} points at {label}", (_set(f.offset, (value & 0xFFF) | (base + other)),)
    pages = sorted({f.offset - f.offset % PAGE for f in fields if f.name == "checksum" and "directory" in f.structure})
    for first, second in zip(pages, pages[1:]):
        yield f"directory page {first:#x} copied over {second:#x}", ((second, image[first : first + PAGE]),)


def field_class(f: Field) -> str:
    """The class of a field: its structure and name with the numbers left out
    (``inode 3 size`` and ``inode 7 size`` are one class, ``inode size``)."""
    return re.sub(r"\s+", " ", re.sub(r"0x[0-9a-f]+|\d+", "", f.label())).strip()


def trials(
    specimen: Specimen, seed: int, random_meta: int, random_any: int, per_field: int | None, per_class: int = 0
) -> list[Trial]:
    """The trials of one specimen: targeted and forged changes of relations, then
    ``random_meta`` single-bit flips in metadata bytes, ``random_any`` anywhere in the
    image, then targeted and forged changes of each field (at most ``per_field`` per
    field, chosen at random; ``None``: all of them), and every targeted and forged
    change of ``per_class`` fields of each :func:`field_class` (chosen by the seed among
    the fields of the class that hold a value other than zero, if any do: every class is
    damaged every way on every seed, a different field of it as the seed rotates)."""
    rng = random.Random(f"{seed}:{specimen.name}")
    image = specimen.image
    out: list[Trial] = []

    def add(kind: str, what: str, edits: tuple[tuple[int, bytes], ...], forge: bool = False) -> None:
        out.append(Trial(len(out), kind, what, edits, forge))

    for label, edits in _relations(specimen):
        add("targeted", label, edits)
        add("forged", f"{label}, checksums recomputed", edits, forge=True)
    meta_bytes = sorted({f.offset + k for f in specimen.fields for k in range(f.length)})
    for kind, count, pool in (("random-meta", random_meta, meta_bytes), ("random-any", random_any, None)):
        for _ in range(count):
            offset = rng.choice(pool) if pool is not None else rng.randrange(len(image))
            bit = rng.randrange(8)
            add(kind, f"flip bit {bit} of byte {offset:#x}", ((offset, bytes([image[offset] ^ (1 << bit)])),))
    for f in specimen.fields:
        changes = list(_field_changes(image, f))
        if per_field is not None and len(changes) > per_field:
            changes = rng.sample(changes, per_field)
        for label, edits in changes:
            add("targeted", f"{f.label()}: {label}", edits)
            if any(f.offset in range(lo, hi) for lo, hi, _ in specimen.reseal) and not f.name.endswith("checksum"):
                add("forged", f"{f.label()}: {label}, checksum recomputed", edits, forge=True)
    if per_class:
        classes: dict[str, list[Field]] = {}
        for f in specimen.fields:
            classes.setdefault(field_class(f), []).append(f)
        for members in classes.values():
            holding = [f for f in members if any(image[f.offset : f.offset + f.length])]
            chosen = holding or members  # a field in use (an attribute cache that is valid) where there is one
            for f in rng.sample(chosen, min(per_class, len(chosen))):
                for label, edits in _field_changes(image, f):
                    add("targeted", f"{f.label()}: {label} (every change)", edits)
                    if any(f.offset in range(lo, hi) for lo, hi, _ in specimen.reseal) and not f.name.endswith("checksum"):
                        add("forged", f"{f.label()}: {label}, checksum recomputed (every change)", edits, forge=True)
    return out


# ============================================================ running


class WorkBudget:
    """Counts the SCM bytes a machine's reads fetch; raises past ``limit``."""

    def __init__(self, machine: Machine, limit: int) -> None:
        self.read = 0
        self.limit = limit
        for name in ("read", "read_u64", "read_table"):
            original = getattr(machine, name)
            setattr(machine, name, self._counting(original, name))

    def _counting(self, original: Callable[..., object], name: str) -> Callable[..., object]:
        size = {"read_u64": 8, "read_table": PAGE}.get(name)

        def counted(*args: int) -> object:
            self.read += size if size is not None else args[1]
            if self.read > self.limit:
                raise WorkBudgetExceeded(f"read {self.read} bytes, budget {self.limit}")
            return original(*args)

        return counted


def damaged(specimen: Specimen, trial: Trial) -> bytes:
    """The specimen's image with the trial's edits (and, forged, checksums recomputed)."""
    image = bytearray(specimen.image)
    for offset, data in trial.edits:
        image[offset : offset + len(data)] = data
    if trial.forge:
        for lo, hi, reseal in specimen.reseal:
            if any(lo <= offset + k < hi for offset, data in trial.edits for k in range(len(data))):
                reseal(image)
    return bytes(image)


def _expected_data_tree(specimen: Specimen, trial: Trial) -> Tree | None:
    """The tree a damage confined to file contents must read as (``None`` otherwise)."""
    tree = dict(specimen.tree)
    for offset, data in trial.edits:
        for k, byte in enumerate(data):
            where = specimen.data.get(offset + k)
            if where is None:
                return None
            ino, at = where
            for path in specimen.paths[ino]:
                kind, nlink, contents = tree[path]
                assert isinstance(contents, bytes)
                tree[path] = (kind, nlink, contents[:at] + bytes([byte]) + contents[at + 1 :])
    return tree


def run_trial(specimen: Specimen, trial: Trial, umfs_cls: type[Umfs] = Umfs) -> Result:
    """Read the damaged image as a program would; the verdict (see the module doc)."""
    machine = Machine(DRAM_BYTES, scm=ScmEmu(len(specimen.image), image=damaged(specimen, trial)))
    WorkBudget(machine, BUDGET_FACTOR * len(specimen.image))
    stage = "mount"
    try:
        fs = umfs_cls.mount(machine)
        stage = "lookup"
        tree = fs.observe()
        stage = "fsck"
        if tree != specimen.tree:
            expected = _expected_data_tree(specimen, trial)
            if expected is not None and tree == expected:
                return Result(trial, "data")
            changed = next(p for p in sorted(set(tree) | set(specimen.tree)) if tree.get(p) != specimen.tree.get(p))
            detail = f"{changed}: {_short(specimen.tree.get(changed))} read as {_short(tree.get(changed))}"
            if trial.forge:  # a forgery the readers cannot see: does fsck?
                try:
                    fsck(fs)
                except CorruptImage as error:
                    return Result(trial, "fsck", f"{detail}; {error}")
            return Result(trial, "SILENT", detail)
        fsck(fs)
    except CorruptImage as error:
        return Result(trial, stage, str(error))
    except WorkBudgetExceeded as error:
        return Result(trial, "BUDGET", f"in {stage}: {error}")
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        return Result(trial, "CRASH", f"in {stage}: {type(error).__name__}: {error}")
    return Result(trial, "harmless")


def _short(node: object) -> str:
    if node is None:
        return "absent"
    assert isinstance(node, tuple)
    kind, nlink, contents = node
    shown = f"{len(contents)} bytes" if isinstance(contents, bytes) else list(contents)[:4]
    return f"{kind} nlink={nlink} {shown}"


@dataclass
class CampaignReport:
    """What a campaign found: per kind, the count of each verdict; the violations (and the
    forged trials that read a wrong tree, which are reported, not failed)."""

    seed: int
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    violations: list[tuple[str, Result]] = field(default_factory=list)
    undetected_forgeries: list[tuple[str, Result]] = field(default_factory=list)
    trials: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No violation."""
        return not self.violations

    def as_json(self) -> dict[str, object]:
        """Counts and violations, for ``--json``."""
        return {
            "seed": self.seed,
            "trials": self.trials,
            "seconds": round(self.seconds, 2),
            "counts": {kind: dict(sorted(c.items())) for kind, c in sorted(self.counts.items())},
            "violations": [
                {"specimen": name, "trial": r.trial.index, "kind": r.trial.kind, "what": r.trial.what,
                 "verdict": r.verdict, "detail": r.detail} for name, r in self.violations
            ],  # fmt: skip
            "undetected_forgeries": len(self.undetected_forgeries),
        }


def run_campaign(
    seed: int = 0,
    random_meta: int = 400,
    random_any: int = 100,
    per_field: int | None = 2,
    umfs_cls: type[Umfs] = Umfs,
    only: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_at_first: bool = False,
    per_class: int = 0,
) -> CampaignReport:
    """Run every trial of every specimen (or trials ``only``, by index, of each; or up to
    the first violation); ``per_class``: see :func:`trials`."""
    started = time.perf_counter()
    report = CampaignReport(seed)
    plans = [(s, trials(s, seed, random_meta, random_any, per_field, per_class)) for s in specimens(umfs_cls)]
    total = sum(len(plan) for _, plan in plans)
    done = 0
    for specimen, plan in plans:
        for trial in plan:
            if only is not None and trial.index not in only:
                continue
            result = run_trial(specimen, trial, umfs_cls)
            report.trials += 1
            report.counts.setdefault(trial.kind, Counter())[result.verdict] += 1
            if result.verdict in VIOLATIONS and not (trial.forge and result.verdict == "SILENT"):
                report.violations.append((specimen.name, result))
            elif trial.forge and result.verdict == "SILENT":
                report.undetected_forgeries.append((specimen.name, result))
            done += 1
            if progress is not None:
                progress(done, total)
            if stop_at_first and report.violations:
                report.seconds = time.perf_counter() - started
                return report
    report.seconds = time.perf_counter() - started
    return report


__all__ = [
    "BUDGET_FACTOR",
    "CampaignReport",
    "Field",
    "Result",
    "Specimen",
    "Trial",
    "WorkBudget",
    "WorkBudgetExceeded",
    "damaged",
    "field_class",
    "run_campaign",
    "run_trial",
    "specimens",
    "trials",
]
