"""UMFS's on-SCM format (the paper's Fig. 4), version 2: every structure that mount,
recovery or a lookup trusts carries a checksum.

Every structure is little-endian and built from 8-byte words. Physical addresses (not
SCM offsets) are stored wherever a pointer is stored, because file page tables are walked
by the MMU. An image file is the SCM's bytes, so an SCM offset is a file offset.

::

    page 0                  superblock: bytes 0..87 the geometry record and its CRC,
                            96 the clean flag, 128..143 the generation counter and its CRC
    pages 1 .. 1+I          inode zone: I pages of 32 inodes of 128 bytes
    pages 1+I .. end        data zone: file page tables, data pages, U-Log tables and pages

**Superblock** (page 0). ``magic``, ``version``, ``page size``, the SCM's physical base,
its size in pages, the inode zone (start, pages, count), the data zone (start, pages),
the root inode, then a CRC-32 of those 80 bytes. Word 96 is the clean-unmount flag (0 or
1; its own word, so that flipping it is one atomic store). Words 128 and 136 are the
*generation counter* (the next inode generation to hand out) and its CRC; the counter
changes inside the transaction that creates an inode.

**Inode** (128 bytes; a slot of all zeros is free): ``kind`` (1 file, 2 directory),
``nlink``, ``size``, ``fpt`` (physical address of the file page table's top, a PDPT),
``ulog`` (of the U-Log's top table), ``generation`` (unique among all inodes ever created
on the image), ``parent`` (a directory's parent directory; the root's is itself; 0 for a
file), ``checksum``, ``digest`` (of the file page table, below), then zeros. The checksum
is a CRC-32 of the slot with the checksum word zeroed, seeded with the inode number, so a
slot's contents are valid only in that slot.

**Directory page** (a data page of a directory): 15 entries of 272 bytes, then at byte
4080 a CRC-32 of those 4080 bytes seeded with the directory's inode number, its
generation and the page's index in the directory. An entry is ``ino`` (8 bytes; 0 = a free
slot), ``generation`` (4, the low 32 bits of the named inode's), ``name_len`` (2), two
zero bytes, and the name (256 bytes, NUL padded). An entry is verifiable both ways: the
page checksum covers it, and the inode it names must be live with the same generation
(and, for a directory, name this directory as its parent).

**File page table digest.** The sum, modulo 2**64, over every present entry of the file's
three-level table, of a bijective 64-bit mix of the entry salted with its level and index
(:func:`table_term`). Changing, adding or removing any one entry always changes it;
transactions update it incrementally (:class:`~impl.umfs_ulog.Txn`). Mount walks every
file's table and compares.

**U-Log page 0**: line 0 is the header (``state``, ``seq``, ``count``, ``nbytes``,
``op``, ``checksum``; ``state`` is written last and is :data:`LOG_VALID` only while an
operation is in flight; the checksum, a 64-bit BLAKE2b of the header fields and the
records (:func:`log_checksum` says why not a CRC), is trusted only then), line 1 the
*attribute cache* (``attr_valid``, ``size``, ``digest``, ``checksum``: the paper keeps an
open file's attributes in its U-Log and writes them back at close; the checksum, seeded
with the inode number, is trusted while ``attr_valid`` is 1) then, at byte 96, the
page's *identity* (owner inode, its generation, the U-Log's top table, a CRC-32; written
when the file is created and never changed), so that a damaged U-Log table that leads
elsewhere is detected rather than read; undo records start at byte 128 and continue on
U-Log pages 1, 2, …: ``paddr``, ``length``, then the old bytes padded to 8.

File *data* is not checksummed (as in the paper and in ext4): a flipped data byte is a
flipped byte of the file.

Why CRC-32 (``zlib.crc32``) and not CRC-32C for the metadata: both detect every error of
one bit, every burst of up to 32 bits, and random damage but for a chance of 2**-32;
CRC-32 is in the standard library in C (the standard library has no CRC-32C; a pure
Python one is orders of magnitude slower), and it was already the superblock's checksum.
CRC-32C's advantages (hardware instructions, ext4/XFS on-disk compatibility) do not apply
to an emulated image that no other tool reads. Checksums here detect damage, not forgery:
anyone who can write the image can write a matching checksum.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

PAGE = 4096
MAGIC = b"UMFS\x00v2\x00"
VERSION = 2

KIND_FREE, KIND_FILE, KIND_DIR = 0, 1, 2
ROOT_INO = 1

INODE_SIZE = 128
INODES_PER_PAGE = PAGE // INODE_SIZE
(
    INODE_KIND,
    INODE_NLINK,
    INODE_SIZE_FIELD,
    INODE_FPT,
    INODE_ULOG,
    INODE_GEN,
    INODE_PARENT,
    INODE_CHECKSUM,
    INODE_DIGEST,
) = (0, 8, 16, 24, 32, 40, 48, 56, 64)
INODE_FIELDS = {
    "kind": INODE_KIND,
    "nlink": INODE_NLINK,
    "size": INODE_SIZE_FIELD,
    "fpt": INODE_FPT,
    "ulog": INODE_ULOG,
    "generation": INODE_GEN,
    "parent": INODE_PARENT,
    "checksum": INODE_CHECKSUM,
    "digest": INODE_DIGEST,
}
GENERATION_MASK = (1 << 32) - 1  #: an entry keeps the low 32 bits of a generation

DIRENT_SIZE = 272
DIRENTS_PER_PAGE = PAGE // DIRENT_SIZE  #: 15
DIRENT_INO, DIRENT_GEN, DIRENT_NAME_LEN, DIRENT_NAME = 0, 8, 12, 16
NAME_BYTES = 256
DIRPAGE_CHECKSUM = DIRENTS_PER_PAGE * DIRENT_SIZE  #: 4080

LOG_VALID = 0x4C4F_4756_414C_4944  # "DILAVGOL": an unlikely word for torn memory to hold
LOG_STATE, LOG_SEQ, LOG_COUNT, LOG_NBYTES, LOG_OP, LOG_CHECKSUM = 0, 8, 16, 24, 32, 40
LOG_ATTR_VALID, LOG_ATTR_SIZE, LOG_ATTR_DIGEST, LOG_ATTR_CHECKSUM = 64, 72, 80, 88
LOG_ATTR_LINE = 64  #: the attribute cache: bytes 64..96 of U-Log page 0
LOG_ATTR_BYTES = 32
LOG_IDENTITY = 96  #: owner inode, generation, top table, CRC-32: bytes 96..128
LOG_IDENTITY_BYTES = 32
LOG_RECORDS = 128

_SUPER = struct.Struct("<8sIIQQQQQQQQ")
#: The clean-unmount flag: its own word, outside the checksummed record, so that
#: flipping it is one atomic store that can never tear the checksum.
SUPER_CLEAN = 96
#: The generation counter (next generation to give) and its CRC.
SUPER_GENERATION = 128
SUPER_GENERATION_BYTES = 16
_U64 = struct.Struct("<Q")
_INODE = struct.Struct("<QQQQQQQQQ")
_DIRENT_HEAD = struct.Struct("<QIHH")
_MASK64 = (1 << 64) - 1


class CorruptImage(Exception):
    """The SCM image is not a UMFS file system this code can trust, and why.

    ``structure`` names what is damaged (``"inode 5"``, ``"directory 3 page 0"``, …) and
    ``offset`` is its byte offset in the SCM (= in the image file), when known.
    """

    def __init__(self, reason: str, structure: str = "", offset: int | None = None) -> None:
        where = structure + (f" at offset {offset:#x}" if offset is not None else "")
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.structure = structure
        self.offset = offset


@dataclass(frozen=True)
class Superblock:
    """The superblock's fields (``checksum`` is computed, not stored here)."""

    phys_base: int
    total_pages: int
    inode_start: int
    inode_pages: int
    inode_count: int
    data_start: int
    data_pages: int
    root_ino: int
    clean: int

    def pack(self) -> bytes:
        """The 80-byte record, its CRC-32 as a word, padding, and the clean flag (at
        :data:`SUPER_CLEAN`, not covered by the CRC): 104 bytes."""
        body = _SUPER.pack(
            MAGIC,
            VERSION,
            PAGE,
            self.phys_base,
            self.total_pages,
            self.inode_start,
            self.inode_pages,
            self.inode_count,
            self.data_start,
            self.data_pages,
            self.root_ino,
        )
        record = body + _U64.pack(zlib.crc32(body))
        return record.ljust(SUPER_CLEAN, b"\0") + _U64.pack(self.clean)

    @classmethod
    def unpack(cls, raw: bytes, phys_base: int, total_pages: int) -> Superblock:
        """Parse and validate; :class:`CorruptImage` says exactly what is wrong."""

        def bad(reason: str) -> CorruptImage:
            return CorruptImage(reason, "superblock", 0)

        body = raw[: _SUPER.size]
        (magic, version, page, base, pages, istart, ipages, icount, dstart, dpages, root) = (
            _SUPER.unpack(body)
        )
        (clean,) = _U64.unpack_from(raw, SUPER_CLEAN)
        if magic != MAGIC:
            if magic[:5] == MAGIC[:5]:
                found, wanted = magic[5:].strip(b"\0").decode("ascii", "replace"), MAGIC[5:].strip(b"\0").decode()
                raise bad(f"UMFS format {found}; this code reads format {wanted}")
            raise bad(f"bad magic {magic!r} (expected {MAGIC!r}): not a UMFS image")
        (checksum,) = _U64.unpack_from(raw, _SUPER.size)
        if checksum != zlib.crc32(body):
            raise bad("checksum mismatch: the superblock is torn or damaged")
        if version != VERSION or page != PAGE:
            raise bad(f"unsupported version {version} or page size {page}")
        if base != phys_base:
            raise bad(f"image was made for SCM at {base:#x}, but this SCM is at {phys_base:#x}")
        if pages != total_pages:
            raise bad(f"superblock says {pages} pages, the SCM has {total_pages}")
        if istart != 1 or ipages < 1 or icount != ipages * INODES_PER_PAGE:
            raise bad(f"impossible inode zone: start {istart}, {ipages} pages, {icount} inodes")
        if dstart != istart + ipages or dpages < 1 or dstart + dpages != total_pages:
            raise bad(f"impossible data zone: start {dstart}, {dpages} pages, image of {total_pages}")
        if root != ROOT_INO:
            raise bad(f"root inode {root}, expected {ROOT_INO}")
        if clean not in (0, 1):
            raise CorruptImage(f"clean flag {clean:#x} is neither 0 nor 1", "superblock", SUPER_CLEAN)
        return cls(base, pages, istart, ipages, icount, dstart, dpages, root, clean)


def pack_generation(next_generation: int) -> bytes:
    """The generation counter record: the counter and its CRC (16 bytes)."""
    raw = _U64.pack(next_generation)
    return raw + _U64.pack(zlib.crc32(raw, 0x47454E))


def unpack_generation(raw: bytes) -> int:
    """The next generation to hand out; :class:`CorruptImage` if its CRC is wrong."""
    (value, checksum) = struct.unpack_from("<QQ", raw)
    if checksum != zlib.crc32(raw[:8], 0x47454E) or not 1 <= value <= GENERATION_MASK:
        raise CorruptImage("generation counter checksum mismatch", "superblock", SUPER_GENERATION)
    return int(value)


@dataclass(frozen=True)
class Inode:
    """An inode's fields (``checksum`` is computed when packed, checked when unpacked)."""

    kind: int
    nlink: int
    size: int
    fpt: int
    ulog: int
    generation: int
    parent: int = 0
    digest: int = 0

    def pack(self, ino: int) -> bytes:
        """The whole 128-byte slot of inode ``ino``, checksum included."""
        raw = bytearray(INODE_SIZE)
        _INODE.pack_into(
            raw, 0, self.kind, self.nlink, self.size, self.fpt, self.ulog, self.generation,
            self.parent, 0, self.digest,
        )  # fmt: skip
        _U64.pack_into(raw, INODE_CHECKSUM, inode_checksum(ino, raw))
        return bytes(raw)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> Inode:
        """The fields of a slot, unchecked (see :func:`verify_inode`)."""
        kind, nlink, size, fpt, ulog, gen, parent, _, digest = _INODE.unpack_from(raw)
        return cls(kind, nlink, size, fpt, ulog, gen, parent, digest)


FREE_INODE = Inode(KIND_FREE, 0, 0, 0, 0, 0)
_ZERO_SLOT = bytes(INODE_SIZE)


def inode_checksum(ino: int, raw: bytes | bytearray | memoryview) -> int:
    """The checksum of slot ``ino`` holding ``raw`` (its checksum word is ignored): 0 for
    a free slot (all other bytes zero), else a CRC-32 seeded with the inode number."""
    body = bytes(raw[:INODE_CHECKSUM]) + bytes(8) + bytes(raw[INODE_CHECKSUM + 8 : INODE_SIZE])
    if body == _ZERO_SLOT:
        return 0
    return zlib.crc32(body, zlib.crc32(_U64.pack(ino)))


def verify_inode(ino: int, raw: bytes | bytearray | memoryview, offset: int, data_bytes: int) -> Inode:
    """The inode in slot ``ino`` (``raw``: its 128 bytes, at SCM ``offset``), checked: the
    checksum, a known kind, a free slot all zeros, a size the data zone could hold, a
    directory's size a whole number of pages and its parent set, a file's parent 0.
    Pointers are checked by the caller (they need the zone)."""
    where = f"inode {ino}"
    (stored,) = _U64.unpack_from(raw, INODE_CHECKSUM)
    if stored != inode_checksum(ino, raw):
        raise CorruptImage(f"checksum mismatch (stored {stored:#x})", where, offset)
    inode = Inode.unpack(raw)
    if inode.kind == KIND_FREE:
        if bytes(raw[:INODE_SIZE]) != _ZERO_SLOT:
            raise CorruptImage("a free slot that is not all zeros", where, offset)
        return inode
    if inode.kind not in (KIND_FILE, KIND_DIR):
        raise CorruptImage(f"impossible kind {inode.kind}", where, offset)
    if inode.size > data_bytes:
        raise CorruptImage(f"size {inode.size} exceeds the data zone ({data_bytes} bytes)", where, offset)
    if not 1 <= inode.generation <= GENERATION_MASK:
        raise CorruptImage(f"impossible generation {inode.generation}", where, offset)
    if inode.kind == KIND_DIR and (inode.size % PAGE or not inode.parent):
        raise CorruptImage(f"directory of size {inode.size} with parent {inode.parent}", where, offset)
    if inode.kind == KIND_FILE and inode.parent:
        raise CorruptImage(f"file with a parent ({inode.parent})", where, offset)
    if any(raw[INODE_DIGEST + 8 : INODE_SIZE]):
        raise CorruptImage("reserved bytes are not zero", where, offset)
    return inode


def dirpage_checksum(dino: int, generation: int, index: int, raw: bytes | bytearray | memoryview) -> int:
    """The checksum of page ``index`` of directory ``dino`` (of that generation)."""
    seed = zlib.crc32(struct.pack("<QQQ", dino, generation, index))
    return zlib.crc32(raw[:DIRPAGE_CHECKSUM], seed)


def pack_dirent(ino: int, generation: int, name: bytes) -> bytes:
    """A whole 272-byte directory entry."""
    assert 0 < len(name) < NAME_BYTES
    head = _DIRENT_HEAD.pack(ino, generation & GENERATION_MASK, len(name), 0)
    return head + name.ljust(NAME_BYTES, b"\0")


def unpack_dirent(raw: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int, bytes]:
    """``(ino, generation, name)`` of the entry at ``offset`` of ``raw``, unchecked but
    for the name's length (at most :data:`NAME_BYTES` bytes are returned)."""
    ino, generation, length, _ = _DIRENT_HEAD.unpack_from(raw, offset)
    start = offset + DIRENT_NAME
    return ino, generation, bytes(raw[start : start + min(length, NAME_BYTES)])


def name_problem(raw_entry: bytes | bytearray | memoryview) -> str | None:
    """Why a used entry's name is impossible (``None`` if it is fine): its length, bytes
    past it that are not NUL, a NUL or ``/`` in it, ``.``/``..``, or not UTF-8."""
    (_, _, length, reserved) = _DIRENT_HEAD.unpack_from(raw_entry)
    if not 0 < length < NAME_BYTES:
        return f"name length {length}"
    if reserved:
        return "reserved bytes are not zero"
    name = bytes(raw_entry[DIRENT_NAME : DIRENT_NAME + length])
    if any(raw_entry[DIRENT_NAME + length : DIRENT_SIZE]):
        return "bytes after the name are not NUL"
    if b"\0" in name or b"/" in name or name in (b".", b".."):
        return f"impossible name {name!r}"
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return f"name {name!r} is not UTF-8"
    return None


def attr_checksum(ino: int, valid: int, size: int, digest: int) -> int:
    """The checksum of an attribute cache line of inode ``ino``'s U-Log."""
    return zlib.crc32(struct.pack("<QQQ", valid, size, digest), zlib.crc32(b"attr" + _U64.pack(ino)))


def pack_attrs(ino: int, size: int, digest: int) -> bytes:
    """A valid attribute cache line (``attr_valid`` = 1): 32 bytes."""
    return struct.pack("<QQQQ", 1, size, digest, attr_checksum(ino, 1, size, digest))


def pack_log_identity(ino: int, generation: int, top: int) -> bytes:
    """The identity of inode ``ino``'s U-Log header page: 32 bytes."""
    body = struct.pack("<QQQ", ino, generation, top)
    return body + _U64.pack(zlib.crc32(body, 0x554C4F47))


def log_identity_problem(raw: bytes | bytearray | memoryview, ino: int, top: int, generation: int | None) -> str | None:
    """Why the identity ``raw`` is not that of inode ``ino``'s U-Log at ``top`` (of
    ``generation``, unless ``None``); ``None`` if it is."""
    owner, gen, stored_top, checksum = struct.unpack_from("<QQQQ", raw)
    if checksum != zlib.crc32(bytes(raw[:24]), 0x554C4F47):
        return "identity checksum mismatch: not a U-Log header page"
    if (owner, stored_top) != (ino, top) or (generation is not None and gen != generation):
        return f"header page of inode {owner} (generation {gen}, U-Log {stored_top:#x})"
    return None


def _mix(value: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit words."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def table_term(level: int, index: int, entry_value: int) -> int:
    """What one present entry adds to a file page table's digest: ``level`` 3 (PDPT, index
    ``i3``), 2 (PD, index ``i3 * 512 + i2``) or 1 (PT, the page index). For a fixed level
    and index it is a bijection of the entry, so a changed entry always changes it."""
    return _mix(entry_value ^ _mix((level << 56) | index))


def add_digest(digest: int, delta: int) -> int:
    """``digest + delta`` modulo 2**64."""
    return (digest + delta) & _MASK64


def u64(value: int) -> bytes:
    """One little-endian word."""
    return _U64.pack(value)


def pages_for(size: int) -> int:
    """How many data pages a file of ``size`` bytes occupies."""
    return -(-size // PAGE)


def word(raw: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The little-endian word at ``offset`` of ``raw``."""
    value: int = _U64.unpack_from(raw, offset)[0]
    return value


def log_checksum(seq: int, count: int, nbytes: int, op: int, records: bytes) -> int:
    """The checksum that makes a U-Log header trustworthy: a 64-bit BLAKE2b of the header
    fields and every record byte, so a torn header or torn records never validate.

    Not a CRC: the records hold old copies of structures that end in their own CRC-32
    (an attribute cache line is data then its CRC), and CRC-32 is linear — the XOR of two
    such copies is a CRC-32 codeword, so a CRC-32 over the records cannot tell a record
    torn between two of them (stale bytes of an earlier log at the same place) from the
    one committed. A cryptographic hash has no such structure."""
    digest = hashlib.blake2b(struct.pack("<QQQQ", seq, count, nbytes, op), digest_size=8, person=b"UMFS U-Log")
    digest.update(records)
    return int.from_bytes(digest.digest(), "little")
