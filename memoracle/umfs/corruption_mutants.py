"""UMFS variants with one metadata check missing: the corruption campaign must catch each.

Each mutant is a whole file system (its images are made and read by it, as a real one's
would be), correct on an undamaged image — every test and crash witness sees no
difference — but missing one of the defences of :mod:`impl.umfs_meta`. The corruption
campaign (:mod:`memoracle.umfs.corruption`) must find, for each, damage that it reads as a
wrong tree (a ``SILENT`` verdict). ``tests/test_umfs_corruption.py`` asserts it does.
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.umfs import Umfs
from impl.umfs_layout import DIRENT_SIZE, DIRENTS_PER_PAGE, Inode
from impl.umfs_meta import Metadata, Slot
from impl.umfs_tables import TableScan


class _Variant(Umfs):
    """A UMFS whose metadata access is :attr:`meta_cls` (set by each mutant)."""


# ---------------------------------------------------------------- the checks left out


class DirPagesUnchecked(Metadata):
    """Directory pages carry their checksum, but lookups never verify it."""

    def verify_dir_page(self, dino: int, generation: int, index: int, raw: bytes, page: int) -> None:
        return None  # BUG


class InodesUnchecked(Metadata):
    """Inodes carry their checksum, but reads never verify it."""

    def checked_inode(self, ino: int, raw: bytes | memoryview, offset: int) -> Inode:
        resealed = Inode.unpack(raw).pack(ino) if any(raw) else bytes(raw)  # BUG: trusts the fields
        return super().checked_inode(ino, resealed, offset)


class EntryInodeUncovered(Metadata):
    """A directory page's checksum skips each entry's inode number, and the entry's
    generation is not compared with the inode's: the link from entry to inode is taken
    on trust."""

    def dirpage_checksum(self, dino: int, generation: int, index: int, raw: bytes | bytearray) -> int:
        masked = bytearray(raw)
        for n in range(DIRENTS_PER_PAGE):  # BUG: the inode numbers are not covered
            masked[n * DIRENT_SIZE : n * DIRENT_SIZE + 8] = bytes(8)
        return super().dirpage_checksum(dino, generation, index, masked)

    def child(self, dino: int, slot: Slot) -> Inode:
        inode = self.inode(slot.ino)
        return super().child(dino, slot._replace(generation=inode.generation & 0xFFFFFFFF))  # BUG


class TableDigestUnchecked(Metadata):
    """Mount walks every file table but never compares it with the inode's digest."""

    def check_table(self, ino: int, scan: TableScan, size: int, digest: int) -> None:
        super().check_table(ino, TableScan(scan.tables, scan.data, digest), size, digest)  # BUG


class AttrCacheUnchecked(Metadata):
    """A U-Log's attribute cache line carries its checksum, but recovery never verifies it."""

    def verify_attr_checksum(self, ino: int, raw: bytes, where: str, offset: int) -> None:
        return None  # BUG


class LogIdentityUnchecked(Metadata):
    """U-Log header pages carry their identity, but nothing verifies it: a damaged U-Log
    table leads recovery to another page's attribute cache."""

    def check_log_identity(self, ino: int, top: int, header: int, generation: int | None = None) -> None:
        return None  # BUG


def _variant(name: str, meta: type[Metadata]) -> type[Umfs]:
    return type(name, (_Variant,), {"meta_cls": meta, "__doc__": meta.__doc__})


@dataclass(frozen=True)
class CorruptionMutant:
    """A mutant and what it leaves out."""

    name: str
    umfs_cls: type[Umfs]
    description: str


CORRUPTION_MUTANTS: dict[str, CorruptionMutant] = {
    m.name: m
    for m in (
        CorruptionMutant("dirpages_unchecked", _variant("DirPagesUnchecked", DirPagesUnchecked),
                         "directory page checksums are written but not verified at lookup"),
        CorruptionMutant("inodes_unchecked", _variant("InodesUnchecked", InodesUnchecked),
                         "inode checksums are written but not verified"),
        CorruptionMutant("entry_inode_uncovered", _variant("EntryInodeUncovered", EntryInodeUncovered),
                         "directory page checksums skip inode numbers and generations are not compared"),
        CorruptionMutant("table_digest_unchecked", _variant("TableDigestUnchecked", TableDigestUnchecked),
                         "file tables are not compared with their digest at mount"),
        CorruptionMutant("attr_cache_unchecked", _variant("AttrCacheUnchecked", AttrCacheUnchecked),
                         "attribute cache lines are trusted without their checksum"),
        CorruptionMutant("log_identity_unchecked", _variant("LogIdentityUnchecked", LogIdentityUnchecked),
                         "U-Log header pages are not checked to be their inode's"),
    )
}  # fmt: skip

__all__ = ["CORRUPTION_MUTANTS", "CorruptionMutant"]
