"""UMFS's on-SCM format (the paper's Fig. 4): superblock, inode zone, data zone.

Every structure is little-endian and built from 8-byte words, so each field is one
atomic store. Physical addresses (not SCM offsets) are stored wherever a pointer is
stored, because file page tables are walked by the MMU.

::

    page 0                  superblock (first 128 bytes; checksummed)
    pages 1 .. 1+I          inode zone: I pages of 32 inodes of 128 bytes
    pages 1+I .. end        data zone: file page tables, data pages, U-Log tables and pages

Inode (128 bytes): ``kind`` (0 free, 1 file, 2 directory), ``nlink``, ``size``,
``fpt`` (physical address of the file's top-level page table, a PDPT), ``ulog``
(physical address of the U-Log's top-level table), ``generation``.

Directory entry (272 bytes, 15 per page, never straddling a page): ``ino`` (0 = free
slot), ``name_len``, ``name`` (256 bytes, NUL padded).

U-Log page 0: line 0 is the header (``state``, ``seq``, ``count``, ``nbytes``, ``op``,
``checksum``; ``state`` is written last and is :data:`LOG_VALID` only while an
operation is in flight), line 1 the cached attributes (``attr_valid``, ``size``: the
paper keeps an open file's attributes in its U-Log and writes them back at close), and
undo records start at byte 128 and continue on U-Log pages 1, 2, …: ``paddr``,
``length``, then the old bytes padded to 8.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PAGE = 4096
MAGIC = b"UMFS\x00v1\x00"
VERSION = 1

KIND_FREE, KIND_FILE, KIND_DIR = 0, 1, 2
ROOT_INO = 1

INODE_SIZE = 128
INODES_PER_PAGE = PAGE // INODE_SIZE
INODE_KIND, INODE_NLINK, INODE_SIZE_FIELD, INODE_FPT, INODE_ULOG, INODE_GEN = (
    0,
    8,
    16,
    24,
    32,
    40,
)

DIRENT_SIZE = 272
DIRENTS_PER_PAGE = PAGE // DIRENT_SIZE
DIRENT_NAME = 16
NAME_BYTES = 256

LOG_VALID = 0x4C4F_4756_414C_4944  # "DILAVGOL": an unlikely word for torn memory to hold
LOG_STATE, LOG_SEQ, LOG_COUNT, LOG_NBYTES, LOG_OP, LOG_CHECKSUM = 0, 8, 16, 24, 32, 40
LOG_ATTR_VALID, LOG_ATTR_SIZE = 64, 72
LOG_RECORDS = 128

_SUPER = struct.Struct("<8sIIQQQQQQQQ")
#: The clean-unmount flag: its own word, outside the checksummed record, so that
#: flipping it is one atomic store that can never tear the checksum.
SUPER_CLEAN = 96
_INODE = struct.Struct("<QQQQQQ")
_U64 = struct.Struct("<Q")


class CorruptImage(Exception):
    """The SCM image is not a UMFS file system this code can mount, and why."""


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
        body = raw[: _SUPER.size]
        (magic, version, page, base, pages, istart, ipages, icount, dstart, dpages, root) = (
            _SUPER.unpack(body)
        )
        (clean,) = _U64.unpack_from(raw, SUPER_CLEAN)
        if magic != MAGIC:
            raise CorruptImage(f"bad magic {magic!r} (expected {MAGIC!r}): not a UMFS image")
        (checksum,) = _U64.unpack_from(raw, _SUPER.size)
        if checksum != zlib.crc32(body):
            raise CorruptImage("superblock checksum mismatch: the superblock is torn or damaged")
        if version != VERSION or page != PAGE:
            raise CorruptImage(f"unsupported version {version} or page size {page}")
        if base != phys_base:
            raise CorruptImage(
                f"image was made for SCM at {base:#x}, but this SCM is at {phys_base:#x}"
            )
        if pages != total_pages:
            raise CorruptImage(f"superblock says {pages} pages, the SCM has {total_pages}")
        if istart != 1 or ipages < 1 or icount != ipages * INODES_PER_PAGE:
            raise CorruptImage(
                f"impossible inode zone: start {istart}, {ipages} pages, {icount} inodes"
            )
        if dstart != istart + ipages or dpages < 1 or dstart + dpages != total_pages:
            raise CorruptImage(
                f"impossible data zone: start {dstart}, {dpages} pages, image of {total_pages}"
            )
        if not 1 <= root <= icount:
            raise CorruptImage(f"root inode {root} outside 1..{icount}")
        return cls(base, pages, istart, ipages, icount, dstart, dpages, root, clean)


@dataclass(frozen=True)
class Inode:
    """An inode's fields."""

    kind: int
    nlink: int
    size: int
    fpt: int
    ulog: int
    generation: int

    def pack(self) -> bytes:
        """The 48 meaningful bytes of the 128-byte slot."""
        return _INODE.pack(self.kind, self.nlink, self.size, self.fpt, self.ulog, self.generation)

    @classmethod
    def unpack(cls, raw: bytes) -> Inode:
        """Parse an inode slot."""
        return cls(*_INODE.unpack_from(raw))


def pack_dirent(ino: int, name: bytes) -> bytes:
    """A whole 272-byte directory entry."""
    assert len(name) < NAME_BYTES
    return _U64.pack(ino) + _U64.pack(len(name)) + name.ljust(NAME_BYTES, b"\0")


def unpack_dirent(raw: bytes) -> tuple[int, bytes]:
    """``(ino, name)`` of a directory entry; ``CorruptImage`` on an impossible length."""
    (ino,) = _U64.unpack_from(raw, 0)
    (length,) = _U64.unpack_from(raw, 8)
    if length >= NAME_BYTES:
        raise CorruptImage(f"directory entry with a {length}-byte name")
    return ino, raw[DIRENT_NAME : DIRENT_NAME + length]


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
    """The checksum that makes a U-Log header trustworthy: CRC-32 over the header
    fields and every record byte, so a torn header or torn records never validate."""
    return zlib.crc32(records, zlib.crc32(struct.pack("<QQQQ", seq, count, nbytes, op)))
