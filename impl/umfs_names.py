"""UMFS's namespace: paths, directories, names and links, each change one U-Log transaction.

:class:`NamespaceOps` is a mixin of :class:`impl.umfs.Umfs` (split out to keep each module
to one job). It holds path resolution in the model's order (``_parse``, ``_find``,
``_lookup``, ``_resolve``, ``_parent``), the directory format's reading and planning
(``_dir_slots``, ``_entries``, ``_plan_add_entry``), and the operations ``stat``,
``listdir``, ``mkdir``, ``rmdir``, ``link``, ``unlink``, ``rename`` with the helpers that
plan link-count changes and free inodes.

What it may use of the file system is declared at the top of the class (attributes and
the core's methods, all defined by ``Umfs``): nothing else of ``Umfs`` is touched here.
Every change is planned into a :class:`~impl.umfs_ulog.Txn` and committed through the
parent directory's U-Log, so a crash leaves each operation all done or not at all.
Semantics (and the order in which errors are checked) are the model's,
``spec/umfs_model.py``.
"""

from __future__ import annotations

import threading
from typing import Callable

from impl.umfs_layout import (
    DIRENT_SIZE,
    DIRENTS_PER_PAGE,
    INODE_KIND,
    INODE_NLINK,
    KIND_DIR,
    KIND_FILE,
    KIND_FREE,
    PAGE,
    ROOT_INO,
    CorruptImage,
    Inode,
    pack_dirent,
    u64,
    unpack_dirent,
)
from impl.umfs_tables import FileTables, PageAllocator, PmAccess
from impl.umfs_ulog import Txn
from spec.umfs_api import (
    NAME_MAX,
    PATH_MAX,
    Exists,
    Invalid,
    IsDirectory,
    NameTooLong,
    NoEntry,
    NoSpace,
    NotDirectory,
    NotEmpty,
    Stat,
)


def _pages(size: int) -> int:
    return -(-size // PAGE)


class NamespaceOps:
    """Paths, directories and the namespace operations of UMFS (a mixin of ``Umfs``)."""

    # ---- what this mixin uses of the file system core (defined by impl.umfs.Umfs)
    pm: PmAccess
    zone: PageAllocator
    tables: FileTables
    free_inodes: set[int]  #: volatile: the free inode slots
    open_count: dict[int, int]  #: volatile: open descriptions per inode
    _fs_lock: threading.RLock
    _inode: Callable[[int], Inode]  #: read an inode slot
    _inode_addr: Callable[[int], int]  #: the physical address of an inode slot
    _kind: Callable[[int], int]  #: an inode's kind (cached while open)
    _size: Callable[[int], int]  #: a file's size (cached in its U-Log while open)
    _size_addr: Callable[[int], int]  #: where that size lives now
    _stat: Callable[[int], Stat]
    _pages_of: Callable[[int], list[int]]  #: every page an inode owns
    _plan_new_inode: Callable[[Txn, int, int, int], None]  #: (txn, ino, kind, nlink)
    _commit: Callable[[Txn, int], None]  #: run a transaction through an inode's U-Log

    # ================================================================ directories

    def _dir_slots(self, dino: int) -> list[tuple[int, int, bytes]]:
        """Every slot of the directory: ``(slot address, ino or 0, name)``."""
        top = self._inode(dino).fpt
        slots = []
        for index in range(_pages(self._size(dino))):
            page = self.tables.lookup(top, index)
            if page is None:
                raise CorruptImage(f"directory {dino} is missing page {index}")
            raw = self.pm.read(page, PAGE)
            for slot in range(DIRENTS_PER_PAGE):
                ino, name = unpack_dirent(raw[slot * DIRENT_SIZE : (slot + 1) * DIRENT_SIZE])
                slots.append((page + slot * DIRENT_SIZE, ino, name))
        return slots

    def _entries(self, dino: int) -> dict[str, tuple[int, int]]:
        """name → (ino, slot address) of the directory's entries."""
        return {
            name.decode("utf-8"): (ino, slot) for slot, ino, name in self._dir_slots(dino) if ino
        }

    def _plan_add_entry(self, txn: Txn, dino: int, name: str, ino: int) -> None:
        record = pack_dirent(ino, name.encode("utf-8"))
        for slot, used, _ in self._dir_slots(dino):
            if not used:
                txn.write(slot, record, "attrs")
                return
        size = self._size(dino)
        old = _pages(size)
        (page,) = txn.grow(self.tables, self._inode(dino).fpt, old, old + 1)
        txn.writes["data"].append((page, record.ljust(PAGE, b"\0")))
        txn.write(self._size_addr(dino), u64((old + 1) * PAGE), "attrs")

    # ================================================================ paths (the model's order)

    def _parse(self, path: str) -> tuple[str, ...]:
        try:
            size = len(path.encode("utf-8"))
        except UnicodeEncodeError:
            raise Invalid(repr(path)[:80]) from None
        if size > PATH_MAX:
            raise NameTooLong(path[:80])
        if path == "/":
            return ()
        if not path.startswith("/") or "\0" in path:
            raise Invalid(repr(path)[:80])
        names = tuple(path[1:].split("/"))
        if any(name in ("", ".", "..") for name in names):
            raise Invalid(repr(path)[:80])
        return names

    def _find(self, dino: int, name: str, path: str) -> int | None:
        if self._kind(dino) != KIND_DIR:
            raise NotDirectory(path[:80])
        if len(name.encode("utf-8")) > NAME_MAX:
            raise NameTooLong(path[:80])
        found = self._entries(dino).get(name)
        return found[0] if found else None

    def _lookup(self, dino: int, name: str, path: str) -> int:
        ino = self._find(dino, name, path)
        if ino is None:
            raise NoEntry(path[:80])
        return ino

    def _resolve(self, names: tuple[str, ...], path: str) -> int:
        ino = ROOT_INO
        for name in names:
            ino = self._lookup(ino, name, path)
        return ino

    def _parent(self, names: tuple[str, ...], path: str) -> tuple[int, str | None]:
        if not names:
            return ROOT_INO, None
        parent = self._resolve(names[:-1], path)
        if self._kind(parent) != KIND_DIR:
            raise NotDirectory(path[:80])
        return parent, names[-1]

    # ================================================================ operations

    def stat(self, path: str) -> Stat:
        """The attributes of ``path``."""
        with self._fs_lock:
            return self._stat(self._resolve(self._parse(path), path))

    def listdir(self, path: str) -> list[str]:
        """The names in a directory, sorted."""
        with self._fs_lock:
            ino = self._resolve(self._parse(path), path)
            if self._kind(ino) != KIND_DIR:
                raise NotDirectory(path[:80])
            return sorted(self._entries(ino))

    def _take_inode(self) -> int:
        if not self.free_inodes:
            raise NoSpace("no free inode")
        ino = min(self.free_inodes)
        self.free_inodes.discard(ino)
        return ino

    def _create(self, parent: int, name: str, kind: int) -> int:
        """Create a file or directory named ``name`` in ``parent`` (one transaction in
        the parent's U-Log: new pages, the inode slot, the entry, the parent's links)."""
        ino = self._take_inode()
        txn = Txn(self.pm, self.zone, "create" if kind == KIND_FILE else "mkdir")
        try:
            self._plan_new_inode(txn, ino, kind, 1 if kind == KIND_FILE else 2)
            self._plan_add_entry(txn, parent, name, ino)
        except NoSpace:
            self.free_inodes.add(ino)
            raise
        if kind == KIND_DIR:
            txn.write(self._inode_addr(parent) + INODE_NLINK, u64(self._inode(parent).nlink + 1), "attrs")
        self._commit(txn, parent)
        return ino

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create an empty directory."""
        with self._fs_lock:
            parent, name = self._parent(self._parse(path), path)
            if name is None or self._find(parent, name, path) is not None:
                raise Exists(path[:80])
            self._create(parent, name, KIND_DIR)

    def _plan_drop(self, txn: Txn, links: dict[int, int], ino: int) -> None:
        """Plan freeing ``ino`` if it will have no links and no descriptor refers to it."""
        if links[ino] == 0 and not self.open_count.get(ino, 0):
            txn.write(self._inode_addr(ino) + INODE_KIND, u64(KIND_FREE), "attrs")
            txn.free_after.extend(self._pages_of(ino))

    def _plan_links(self, txn: Txn, links: dict[int, int]) -> None:
        for ino, count in sorted(links.items()):
            if count != self._inode(ino).nlink:
                txn.write(self._inode_addr(ino) + INODE_NLINK, u64(count), "attrs")

    def _finish(self, txn: Txn, log_ino: int, links: dict[int, int]) -> None:
        freed = [ino for ino, count in links.items() if count == 0 and not self.open_count.get(ino, 0)]
        self._commit(txn, log_ino)
        self.free_inodes.update(freed)

    def unlink(self, path: str) -> None:
        """Remove a file's name (one transaction in the parent's U-Log)."""
        with self._fs_lock:
            parent, name = self._parent(self._parse(path), path)
            if name is None:
                raise IsDirectory(path[:80])
            ino = self._lookup(parent, name, path)
            if self._kind(ino) == KIND_DIR:
                raise IsDirectory(path[:80])
            txn = Txn(self.pm, self.zone, "unlink")
            txn.write(self._entries(parent)[name][1], u64(0), "attrs")
            links = {ino: self._inode(ino).nlink - 1}
            self._plan_links(txn, links)
            self._plan_drop(txn, links, ino)
            self._finish(txn, parent, links)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        with self._fs_lock:
            parent, name = self._parent(self._parse(path), path)
            if name is None:
                raise Invalid("rmdir /")
            ino = self._lookup(parent, name, path)
            if self._kind(ino) != KIND_DIR:
                raise NotDirectory(path[:80])
            if self._entries(ino):
                raise NotEmpty(path[:80])
            txn = Txn(self.pm, self.zone, "rmdir")
            txn.write(self._entries(parent)[name][1], u64(0), "attrs")
            links = {ino: 0, parent: self._inode(parent).nlink - 1}
            self._plan_links(txn, links)
            self._plan_drop(txn, links, ino)
            self._finish(txn, parent, links)

    def link(self, existing: str, new: str) -> None:
        """Give the file ``existing`` the extra name ``new``."""
        with self._fs_lock:
            old_names, new_names = self._parse(existing), self._parse(new)
            ino = self._resolve(old_names, existing)
            parent, name = self._parent(new_names, new)
            if name is None or self._find(parent, name, new) is not None:
                raise Exists(new[:80])
            if self._kind(ino) == KIND_DIR:
                raise IsDirectory(f"link {existing[:80]}: a directory (Linux: EPERM)")
            txn = Txn(self.pm, self.zone, "link")
            self._plan_add_entry(txn, parent, name, ino)
            self._plan_links(txn, {ino: self._inode(ino).nlink + 1})
            self._commit(txn, parent)

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` to ``new`` atomically (one transaction in the old parent's U-Log)."""
        with self._fs_lock:
            old_names, new_names = self._parse(old), self._parse(new)
            old_parent, old_name = self._parent(old_names, old)
            new_parent, new_name = self._parent(new_names, new)
            if old_name is None or new_name is None:
                raise Invalid(f"rename {old[:80]} -> {new[:80]}: the root (Linux: EBUSY)")
            source = self._lookup(old_parent, old_name, old)
            target = self._find(new_parent, new_name, new)
            if old_names == new_names[: len(old_names)] and len(old_names) <= len(new_names) - 1:
                raise Invalid(f"rename {old[:80]} -> {new[:80]}: into its own subtree")
            if new_names == old_names[: len(new_names)] and len(new_names) <= len(old_names) - 1:
                raise NotEmpty(f"rename {old[:80]} -> {new[:80]}: onto an ancestor")
            if target == source:
                return
            moving_dir = self._kind(source) == KIND_DIR
            txn = Txn(self.pm, self.zone, "rename")
            links: dict[int, int] = {}

            def link_count(ino: int) -> int:
                return links.get(ino, self._inode(ino).nlink)

            record = pack_dirent(source, new_name.encode("utf-8"))
            if target is not None:
                victim_dir = self._kind(target) == KIND_DIR
                if moving_dir and not victim_dir:
                    raise NotDirectory(new[:80])
                if not moving_dir and victim_dir:
                    raise IsDirectory(new[:80])
                if victim_dir and self._entries(target):
                    raise NotEmpty(new[:80])
                txn.write(self._entries(new_parent)[new_name][1], record, "attrs")
                if victim_dir:
                    links[target] = 0
                    links[new_parent] = link_count(new_parent) - 1
                else:
                    links[target] = link_count(target) - 1
            else:
                self._plan_add_entry(txn, new_parent, new_name, source)
            txn.write(self._entries(old_parent)[old_name][1], u64(0), "attrs")
            if moving_dir and old_parent != new_parent:
                links[old_parent] = link_count(old_parent) - 1
                links[new_parent] = link_count(new_parent) + 1
            self._plan_links(txn, links)
            if target is not None:
                self._plan_drop(txn, links, target)
            self._finish(txn, old_parent, links)
