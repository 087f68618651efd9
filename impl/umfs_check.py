"""fsck for UMFS: every invariant of the on-SCM structures, and of the volatile state.

:func:`fsck` checks the image; the first problem is :class:`~impl.umfs_layout.CorruptImage`
naming the structure and its offset. It checks, beyond what mount and lookups verify
(every checksum, every field, every file table's digest and page count):

- the superblock parses and matches the mounted geometry; the generation counter is
  above every live inode's generation, and no two live inodes share a generation;
- every data-zone page is reachable from at most one place (table, data or U-Log page);
- every byte past the size in a file's last page is zero (so an extension reads zeros);
- every U-Log is idle (its state word 0) and caches attributes exactly while its file is
  open;
- every directory page's checksum, every entry's name (distinct in its directory) and
  the link from each entry to its inode both ways (live, same generation, a directory's
  parent); a file's link count equals the number of entries naming it; a directory's is
  2 + its subdirectories and it has exactly one name (the root none), unless it was
  removed while open (then it has no name, no entry and link count 0); every live inode
  is reachable from the root or open (an unlinked file or a removed directory lives
  while a descriptor refers to it), through parents that end at the root.

Its work is one pass over the inode zone, one visit of each reachable page and one read
of each directory page; its memory is a few entries per inode and per data page: both
bounded by the image, whatever the image holds.

:func:`check_umfs` (``Umfs.check_invariants``, run by the harnesses after every step)
runs :func:`fsck`, then asserts the volatile state: the allocator agrees with the pages
reached, free inodes are exactly the free slots, every process's U-Info matches its
descriptors, each open file's window is spliced into its page table (PML4 entry → the
file's table), and the address spaces' own invariants hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from impl.umfs_layout import (
    KIND_DIR,
    KIND_FILE,
    KIND_FREE,
    LOG_ATTR_BYTES,
    LOG_ATTR_LINE,
    LOG_STATE,
    PAGE,
    ROOT_INO,
    CorruptImage,
    Inode,
    Superblock,
)
from impl.umfs_ulog import ULog
from spec.paging import ADDR_MASK, PML4, P

if TYPE_CHECKING:
    from impl.umfs import Umfs


@dataclass
class FsckReport:
    """What :func:`fsck` found in a consistent image."""

    files: int = 0
    directories: int = 0
    entries: int = 0
    free_inodes: int = 0
    used_pages: set[int] = field(default_factory=set)  #: physical addresses
    data_pages: int = 0

    def as_json(self) -> dict[str, int]:
        """The counts, for ``memoracle umfs fsck --json``."""
        return {
            "files": self.files,
            "directories": self.directories,
            "entries": self.entries,
            "free_inodes": self.free_inodes,
            "used_pages": len(self.used_pages),
            "free_pages": self.data_pages - len(self.used_pages),
        }


def fsck(fs: Umfs) -> FsckReport:
    """Check every on-SCM structure of the mounted ``fs`` and every relation between them
    (see the module doc); :class:`CorruptImage` names the first problem."""
    meta, base = fs.meta, fs.base
    sb = Superblock.unpack(fs.pm.read(base, 128), base, fs.machine.scm.size // PAGE)
    if sb != fs.sb:
        raise CorruptImage("differs from the mounted one", "superblock", 0)
    report = FsckReport(data_pages=sb.data_pages)
    next_generation = meta.next_generation()
    owners: dict[int, str] = {}
    live: dict[int, Inode] = {}
    generations: dict[int, int] = {}
    for ino, inode in meta.all_inodes():
        where, offset = f"inode {ino}", meta.inode_addr(ino) - base
        if inode.kind == KIND_FREE:
            report.free_inodes += 1
            continue
        live[ino] = inode
        if inode.generation >= next_generation or inode.generation in generations:
            other = generations.get(inode.generation)
            raise CorruptImage(f"generation {inode.generation} (next {next_generation}, also inode {other})", where, offset)
        generations[inode.generation] = ino
        size, digest = meta.attrs(ino)
        files = fs.tables.scan(inode.fpt, owners, f"inode {ino} file table")
        fs.tables.scan(inode.ulog, owners, f"inode {ino} U-Log")
        meta.check_table(ino, files, size, digest)
        if inode.kind == KIND_FILE and size % PAGE:
            last = files.data[-1][1]
            if any(fs.pm.read(last + size % PAGE, PAGE - size % PAGE)):
                raise CorruptImage(f"bytes past the size {size} are not zero", where, last - base)
        header = ULog(fs.pm, fs.tables, inode.ulog).header()
        meta.check_log_identity(ino, inode.ulog, header, inode.generation)
        state = fs.pm.read_u64(header + LOG_STATE)
        if state:
            raise CorruptImage(f"state word {state:#x} between operations", f"U-Log of inode {ino}", header - base)
        cached = meta.read_attr_line(ino, header) is not None
        if not cached and any(fs.pm.read(header + LOG_ATTR_LINE, LOG_ATTR_BYTES)):
            raise CorruptImage("idle but not zero", f"U-Log of inode {ino}: attribute cache", header + LOG_ATTR_LINE - base)
        if cached != bool(fs.open_count.get(ino, 0)):
            raise CorruptImage(
                f"attributes cached={cached} but open {fs.open_count.get(ino, 0)} times", f"U-Log of inode {ino}",
                header - base,
            )  # fmt: skip
        report.files += inode.kind == KIND_FILE
        report.directories += inode.kind == KIND_DIR
    report.used_pages = set(owners)
    if ROOT_INO not in live or live[ROOT_INO].kind != KIND_DIR or live[ROOT_INO].parent != ROOT_INO:
        raise CorruptImage("the root is not a directory that is its own parent", f"inode {ROOT_INO}")
    _check_names(fs, live, report)
    return report


def _check_names(fs: Umfs, live: dict[int, Inode], report: FsckReport) -> None:
    """Entries, link counts and reachability (see the module doc)."""
    meta, base = fs.meta, fs.base
    names = dict.fromkeys(live, 0)
    subdirs = dict.fromkeys(live, 0)
    for dino, directory in live.items():
        if directory.kind != KIND_DIR:
            continue
        for slot in meta.entries(dino).values():
            meta.child(dino, slot)  # live, same generation, parent: or CorruptImage
            report.entries += 1
            names[slot.ino] += 1
            if live[slot.ino].kind == KIND_DIR:
                subdirs[dino] += 1
    for ino, inode in live.items():
        where, offset = f"inode {ino}", meta.inode_addr(ino) - base
        opened = fs.open_count.get(ino, 0)
        if inode.kind == KIND_FILE:
            if inode.nlink != names[ino] or not (names[ino] or opened):
                raise CorruptImage(f"file with nlink {inode.nlink}, named {names[ino]} times, open {opened}", where, offset)
            continue
        if ino != ROOT_INO and names[ino] == 0 and opened:
            # Removed while open: it lives, empty and unnamed, until its last close.
            if inode.nlink != 0 or meta.entries(ino):
                raise CorruptImage(f"removed directory with nlink {inode.nlink} or entries, open {opened}", where, offset)
            continue
        if names[ino] != (0 if ino == ROOT_INO else 1):
            raise CorruptImage(f"directory named {names[ino]} times", where, offset)
        if inode.nlink != 2 + subdirs[ino]:
            raise CorruptImage(f"directory with nlink {inode.nlink}, expected {2 + subdirs[ino]}", where, offset)
        ancestor, steps = ino, 0
        while ancestor != ROOT_INO:  # each directory is named in its parent, so this ends
            ancestor = live[ancestor].parent
            steps += 1
            if steps > len(live) or ancestor not in live:
                raise CorruptImage("its parents do not lead to the root", where, offset)


def check_umfs(fs: Umfs) -> None:
    """:func:`fsck`, then assert every invariant of the volatile state (see the module doc)."""
    report = fsck(fs)
    free_pages = sum(1 for page in range(fs.zone.first, fs.zone.limit, PAGE) if fs.zone.is_free(page))
    for page in report.used_pages:
        assert not fs.zone.is_free(page), f"page {page:#x} is in use and on the free list"
    assert free_pages + len(report.used_pages) == report.data_pages, (
        f"{report.data_pages - free_pages - len(report.used_pages)} data pages are neither free nor reachable"
    )
    free_slots = {ino for ino, inode in fs.meta.all_inodes() if inode.kind == KIND_FREE}
    assert free_slots == fs.free_inodes, f"free inodes {sorted(fs.free_inodes ^ free_slots)[:8]} out of date"
    assert set(fs.meta.cached) == {ino for ino, n in fs.open_count.items() if n}, "attribute caches out of date"
    counted: dict[int, int] = {}
    for pid, process in fs.processes.items():
        for fd, slot in enumerate(process.uinfo):
            description = process.files.get(fd)
            if description is None:
                assert slot is None, f"pid {pid}: U-Info slot {fd} set without a descriptor"
                continue
            window = process.windows.get(description.ino)
            assert window is not None and slot == window.data.start, f"pid {pid} fd {fd}: U-Info wrong"
            counted[description.ino] = counted.get(description.ino, 0) + 1
        for ino, window in process.windows.items():
            users = sum(1 for d in process.files.values() if d.ino == ino)
            assert window.users == users, f"pid {pid}: window of {ino} has {window.users} users, {users} fds"
            inode = fs.meta.inode(ino)
            for va, table in ((window.data.start, inode.fpt), (window.log.start, inode.ulog)):
                spliced = process.space.read_entry(va, PML4)
                assert spliced & P and spliced & ADDR_MASK == table, (
                    f"pid {pid}: PML4 entry for inode {ino} at {va:#x} is {spliced:#x}, not {table:#x}"
                )
        process.space.check_invariants()
    assert counted == {k: v for k, v in fs.open_count.items() if v}, "open counts out of date"
