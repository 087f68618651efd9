"""fsck for UMFS: every invariant of the on-SCM structures and of the volatile state.

Called by the harnesses after every step (``Umfs.check_invariants``). It asserts:

- the superblock parses and matches the mounted geometry;
- every live inode has a known kind, pointers into the data zone, and exactly
  ``ceil(size / 4096)`` data pages, linked at indices ``0 .. n-1`` with no gap;
- every byte past the size in a file's last page is zero (so an extension reads zeros);
- every data-zone page is reachable from exactly one place, or free — never both,
  never twice — and the allocator agrees; free inodes are exactly the free slots;
- directory entries have valid, distinct names and name live inodes; a file's link
  count equals the number of entries naming it; a directory's is 2 + subdirectories,
  it has exactly one name, and the tree has no cycle; every live inode is reachable
  from the root or open (an unlinked file lives only while a descriptor refers to it);
- every U-Log is idle between operations and caches attributes exactly while open;
- every process's U-Info matches its descriptors, each open file's window is spliced
  into its page table (PML4 entry → the file's table), and the address space's own
  invariants hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.umfs_layout import (
    KIND_DIR,
    KIND_FILE,
    KIND_FREE,
    LOG_ATTR_VALID,
    LOG_STATE,
    LOG_VALID,
    NAME_BYTES,
    PAGE,
    ROOT_INO,
    Superblock,
)
from spec.paging import ADDR_MASK, PML4, P

if TYPE_CHECKING:
    from impl.umfs import Umfs


def check_umfs(fs: Umfs) -> None:
    """Assert every invariant of ``fs``; ``AssertionError`` names the first one broken."""
    sb = Superblock.unpack(fs.pm.read(fs.base, 128), fs.base, fs.machine.scm.size // PAGE)
    assert sb == fs.sb, "superblock differs from the mounted one"
    owner: dict[int, int] = {}
    live: dict[int, int] = {}
    for ino, inode in fs._all_inodes():
        assert inode.kind in (KIND_FREE, KIND_FILE, KIND_DIR), f"inode {ino}: kind {inode.kind}"
        if inode.kind == KIND_FREE:
            assert ino in fs.free_inodes, f"free inode {ino} not in the free set"
            continue
        assert ino not in fs.free_inodes, f"live inode {ino} is in the free set"
        live[ino] = inode.kind
        size = fs._size(ino)
        for top in (inode.fpt, inode.ulog):
            tables, data = fs.tables.walk(top)
            for page in tables + [p for _, p in data]:
                assert page not in owner, f"page {page:#x} owned by inodes {owner[page]} and {ino}"
                assert not fs.zone.is_free(page), f"page {page:#x} of inode {ino} is on the free list"
                owner[page] = ino
            if top == inode.fpt:
                indices = sorted(index for index, _ in data)
                expected = list(range(-(-size // PAGE)))
                assert indices == expected, (
                    f"inode {ino}: size {size} needs pages {len(expected)}, table has {indices[:8]}…"
                )
                if inode.kind == KIND_FILE and size % PAGE:
                    last = dict(data)[size // PAGE]
                    tail = fs.pm.read(last + size % PAGE, PAGE - size % PAGE)
                    assert not any(tail), f"inode {ino}: bytes past the size are not zero"
        header = fs._log(ino).header()
        assert fs.pm.read_u64(header + LOG_STATE) != LOG_VALID, f"inode {ino}: U-Log left valid"
        cached = fs.pm.read_u64(header + LOG_ATTR_VALID)
        assert bool(cached) == bool(fs.open_count.get(ino, 0)), (
            f"inode {ino}: attributes cached={cached} but open {fs.open_count.get(ino, 0)} times"
        )
    free_pages = sum(1 for page in range(fs.zone.first, fs.zone.limit, PAGE) if fs.zone.is_free(page))
    assert free_pages + len(owner) == sb.data_pages, (
        f"{sb.data_pages - free_pages - len(owner)} data pages are neither free nor reachable"
    )
    assert live.get(ROOT_INO) == KIND_DIR, "root is not a live directory"
    names: dict[int, int] = {ino: 0 for ino in live}
    subdirs: dict[int, int] = {ino: 0 for ino in live}
    parent_of: dict[int, int] = {}
    for dino, kind in live.items():
        if kind != KIND_DIR:
            continue
        seen: set[bytes] = set()
        for _, child, name in fs._dir_slots(dino):
            if not child:
                continue
            assert name and len(name) < NAME_BYTES and b"/" not in name and name not in (b".", b".."), (
                f"directory {dino}: bad name {name!r}"
            )
            assert name not in seen, f"directory {dino}: name {name!r} twice"
            seen.add(name)
            assert child in live, f"directory {dino}: {name!r} names free inode {child}"
            names[child] += 1
            if live[child] == KIND_DIR:
                assert child not in parent_of, f"directory {child} has two names"
                parent_of[child] = dino
                subdirs[dino] += 1
    for ino, kind in live.items():
        nlink = fs._inode(ino).nlink
        if kind == KIND_FILE:
            assert nlink == names[ino], f"file {ino}: nlink {nlink}, named {names[ino]} times"
        else:
            linked = ino == ROOT_INO or names[ino] == 1
            want = 2 + subdirs[ino] if linked else 0
            assert nlink == want, f"directory {ino}: nlink {nlink}, expected {want}"
        assert nlink > 0 or fs.open_count.get(ino, 0), f"inode {ino} has no links and is not open"
    for ino in parent_of:
        path = {ino}
        while ino in parent_of:
            ino = parent_of[ino]
            assert ino not in path, "directory cycle"
            path.add(ino)
        assert ino == ROOT_INO, f"directory {ino} is detached from the root"
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
            inode = fs._inode(ino)
            for va, table in ((window.data.start, inode.fpt), (window.log.start, inode.ulog)):
                spliced = process.space.read_entry(va, PML4)
                assert spliced & P and spliced & ADDR_MASK == table, (
                    f"pid {pid}: PML4 entry for inode {ino} at {va:#x} is {spliced:#x}, not {table:#x}"
                )
        process.space.check_invariants()
    assert counted == {k: v for k, v in fs.open_count.items() if v}, "open counts out of date"
