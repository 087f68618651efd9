"""UMFS's namespace operations: names, links and directories, each one U-Log transaction.

Functions bound as methods of :class:`impl.umfs.Umfs` (split out to keep each module to
one job): ``stat``, ``listdir``, ``mkdir``, ``rmdir``, ``link``, ``unlink``, ``rename``,
and the helpers that plan link-count changes and free inodes. Every change is planned into a
:class:`~impl.umfs_ulog.Txn` and committed through the parent directory's U-Log, so a
crash leaves each operation all done or not at all. Semantics (and the order in which
errors are checked) are the model's, ``spec/umfs_model.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impl.umfs_layout import (
    INODE_KIND,
    INODE_NLINK,
    KIND_DIR,
    KIND_FILE,
    KIND_FREE,
    pack_dirent,
    u64,
)
from impl.umfs_ulog import Txn
from spec.umfs_api import (
    Exists,
    Invalid,
    IsDirectory,
    NoSpace,
    NotDirectory,
    NotEmpty,
    Stat,
)

if TYPE_CHECKING:
    from impl.umfs import Umfs


def stat(fs: Umfs, path: str) -> Stat:
    """The attributes of ``path``."""
    with fs._fs_lock:
        return fs._stat(fs._resolve(fs._parse(path), path))

def listdir(fs: Umfs, path: str) -> list[str]:
    """The names in a directory, sorted."""
    with fs._fs_lock:
        ino = fs._resolve(fs._parse(path), path)
        if fs._kind(ino) != KIND_DIR:
            raise NotDirectory(path[:80])
        return sorted(fs._entries(ino))

def _take_inode(fs: Umfs) -> int:
    if not fs.free_inodes:
        raise NoSpace("no free inode")
    ino = min(fs.free_inodes)
    fs.free_inodes.discard(ino)
    return ino

def _create(fs: Umfs, parent: int, name: str, kind: int) -> int:
    """Create a file or directory named ``name`` in ``parent`` (one transaction in
    the parent's U-Log: new pages, the inode slot, the entry, the parent's links)."""
    ino = fs._take_inode()
    txn = Txn(fs.pm, fs.zone, "create" if kind == KIND_FILE else "mkdir")
    try:
        fs._plan_new_inode(txn, ino, kind, nlink=1 if kind == KIND_FILE else 2)
        fs._plan_add_entry(txn, parent, name, ino)
    except NoSpace:
        fs.free_inodes.add(ino)
        raise
    if kind == KIND_DIR:
        txn.write(fs._inode_addr(parent) + INODE_NLINK, u64(fs._inode(parent).nlink + 1), "attrs")
    fs._commit(txn, parent)
    return ino

def mkdir(fs: Umfs, path: str, mode: int = 0o755) -> None:
    """Create an empty directory."""
    with fs._fs_lock:
        parent, name = fs._parent(fs._parse(path), path)
        if name is None or fs._find(parent, name, path) is not None:
            raise Exists(path[:80])
        fs._create(parent, name, KIND_DIR)

def _plan_drop(fs: Umfs, txn: Txn, links: dict[int, int], ino: int) -> None:
    """Plan freeing ``ino`` if it will have no links and no descriptor refers to it."""
    if links[ino] == 0 and not fs.open_count.get(ino, 0):
        txn.write(fs._inode_addr(ino) + INODE_KIND, u64(KIND_FREE), "attrs")
        txn.free_after.extend(fs._pages_of(ino))

def _plan_links(fs: Umfs, txn: Txn, links: dict[int, int]) -> None:
    for ino, count in sorted(links.items()):
        if count != fs._inode(ino).nlink:
            txn.write(fs._inode_addr(ino) + INODE_NLINK, u64(count), "attrs")

def _finish(fs: Umfs, txn: Txn, log_ino: int, links: dict[int, int]) -> None:
    freed = [ino for ino, count in links.items() if count == 0 and not fs.open_count.get(ino, 0)]
    fs._commit(txn, log_ino)
    fs.free_inodes.update(freed)

def unlink(fs: Umfs, path: str) -> None:
    """Remove a file's name (one transaction in the parent's U-Log)."""
    with fs._fs_lock:
        parent, name = fs._parent(fs._parse(path), path)
        if name is None:
            raise IsDirectory(path[:80])
        ino = fs._lookup(parent, name, path)
        if fs._kind(ino) == KIND_DIR:
            raise IsDirectory(path[:80])
        txn = Txn(fs.pm, fs.zone, "unlink")
        txn.write(fs._entries(parent)[name][1], u64(0), "attrs")
        links = {ino: fs._inode(ino).nlink - 1}
        fs._plan_links(txn, links)
        fs._plan_drop(txn, links, ino)
        fs._finish(txn, parent, links)

def rmdir(fs: Umfs, path: str) -> None:
    """Remove an empty directory."""
    with fs._fs_lock:
        parent, name = fs._parent(fs._parse(path), path)
        if name is None:
            raise Invalid("rmdir /")
        ino = fs._lookup(parent, name, path)
        if fs._kind(ino) != KIND_DIR:
            raise NotDirectory(path[:80])
        if fs._entries(ino):
            raise NotEmpty(path[:80])
        txn = Txn(fs.pm, fs.zone, "rmdir")
        txn.write(fs._entries(parent)[name][1], u64(0), "attrs")
        links = {ino: 0, parent: fs._inode(parent).nlink - 1}
        fs._plan_links(txn, links)
        fs._plan_drop(txn, links, ino)
        fs._finish(txn, parent, links)

def link(fs: Umfs, existing: str, new: str) -> None:
    """Give the file ``existing`` the extra name ``new``."""
    with fs._fs_lock:
        old_names, new_names = fs._parse(existing), fs._parse(new)
        ino = fs._resolve(old_names, existing)
        parent, name = fs._parent(new_names, new)
        if name is None or fs._find(parent, name, new) is not None:
            raise Exists(new[:80])
        if fs._kind(ino) == KIND_DIR:
            raise IsDirectory(f"link {existing[:80]}: a directory (Linux: EPERM)")
        txn = Txn(fs.pm, fs.zone, "link")
        fs._plan_add_entry(txn, parent, name, ino)
        fs._plan_links(txn, {ino: fs._inode(ino).nlink + 1})
        fs._commit(txn, parent)

def rename(fs: Umfs, old: str, new: str) -> None:
    """Move ``old`` to ``new`` atomically (one transaction in the old parent's U-Log)."""
    with fs._fs_lock:
        old_names, new_names = fs._parse(old), fs._parse(new)
        old_parent, old_name = fs._parent(old_names, old)
        new_parent, new_name = fs._parent(new_names, new)
        if old_name is None or new_name is None:
            raise Invalid(f"rename {old[:80]} -> {new[:80]}: the root (Linux: EBUSY)")
        source = fs._lookup(old_parent, old_name, old)
        target = fs._find(new_parent, new_name, new)
        if old_names == new_names[: len(old_names)] and len(old_names) <= len(new_names) - 1:
            raise Invalid(f"rename {old[:80]} -> {new[:80]}: into its own subtree")
        if new_names == old_names[: len(new_names)] and len(new_names) <= len(old_names) - 1:
            raise NotEmpty(f"rename {old[:80]} -> {new[:80]}: onto an ancestor")
        if target == source:
            return
        moving_dir = fs._kind(source) == KIND_DIR
        txn = Txn(fs.pm, fs.zone, "rename")
        links: dict[int, int] = {}

        def link_count(ino: int) -> int:
            return links.get(ino, fs._inode(ino).nlink)

        record = pack_dirent(source, new_name.encode("utf-8"))
        if target is not None:
            victim_dir = fs._kind(target) == KIND_DIR
            if moving_dir and not victim_dir:
                raise NotDirectory(new[:80])
            if not moving_dir and victim_dir:
                raise IsDirectory(new[:80])
            if victim_dir and fs._entries(target):
                raise NotEmpty(new[:80])
            txn.write(fs._entries(new_parent)[new_name][1], record, "attrs")
            if victim_dir:
                links[target] = 0
                links[new_parent] = link_count(new_parent) - 1
            else:
                links[target] = link_count(target) - 1
        else:
            fs._plan_add_entry(txn, new_parent, new_name, source)
        txn.write(fs._entries(old_parent)[old_name][1], u64(0), "attrs")
        if moving_dir and old_parent != new_parent:
            links[old_parent] = link_count(old_parent) - 1
            links[new_parent] = link_count(new_parent) + 1
        fs._plan_links(txn, links)
        if target is not None:
            fs._plan_drop(txn, links, target)
        fs._finish(txn, old_parent, links)

