"""UMFS's namespace: paths, directories, names and links, each change one U-Log transaction.

:class:`NamespaceOps` is a mixin of :class:`impl.umfs.Umfs` (split out to keep each module
to one job). It holds path resolution in the model's order (``_parse``, ``_find``,
``_lookup``, ``_resolve``, ``_parent``), the directory format's reading and planning
(``_entries``, ``_plan_add_entry``, through the checked :class:`~impl.umfs_meta.Metadata`),
and the operations ``stat``,
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
    FREE_INODE,
    KIND_DIR,
    KIND_FILE,
    PAGE,
    ROOT_INO,
    Inode,
    add_digest,
    pack_dirent,
    pages_for,
    u64,
)
from impl.umfs_meta import Metadata, Slot
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


class NamespaceOps:
    """Paths, directories and the namespace operations of UMFS (a mixin of ``Umfs``)."""

    # ---- what this mixin uses of the file system core (defined by impl.umfs.Umfs)
    pm: PmAccess
    zone: PageAllocator
    tables: FileTables
    meta: Metadata  #: checked reads and checksummed changes of the metadata
    free_inodes: set[int]  #: volatile: the free inode slots
    open_count: dict[int, int]  #: volatile: open descriptions per inode
    _fs_lock: threading.RLock
    _inode: Callable[[int], Inode]  #: read an inode slot, verified
    _kind: Callable[[int], int]  #: an inode's kind (cached while open)
    _stat: Callable[[int], Stat]
    _pages_of: Callable[[int], list[int]]  #: every page an inode owns
    _plan_new_inode: Callable[[Txn, int, int, int, int], None]  #: (txn, ino, kind, nlink, parent)
    _commit: Callable[[Txn, int], None]  #: run a transaction through an inode's U-Log

    # ================================================================ directories

    def _entries(self, dino: int) -> dict[str, Slot]:
        """name → slot of the directory's entries (pages and names verified)."""
        return self.meta.entries(dino)

    def _plan_add_entry(self, txn: Txn, dino: int, name: str, ino: int) -> None:
        """Plan an entry ``name`` → ``ino`` in the first free slot of ``dino``, or in a
        new page (the directory grows: its size and table digest change with it)."""
        generation = self.meta.planned_inode(txn, ino).generation
        record = pack_dirent(ino, generation, name.encode("utf-8"))
        for slot in self.meta.dir_slots(dino):
            if not slot.ino:
                self.meta.plan_dirent(txn, dino, slot, record)
                return
        size, digest = self.meta.attrs(dino)
        directory = self._inode(dino)
        old = pages_for(size)
        (page,) = txn.grow(self.tables, directory.fpt, old, old + 1)
        txn.writes["data"].append((page, self.meta.dir_page(dino, directory.generation, old, record)))
        grown = add_digest(digest, txn.digest_delta.get(directory.fpt, 0))
        self.meta.plan_attrs(txn, dino, (old + 1) * PAGE, grown)

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
        slot = self._entries(dino).get(name)
        if slot is None:
            return None
        self.meta.child(dino, slot)  # the entry and its inode agree (or CorruptImage)
        return slot.ino

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
            if kind == KIND_FILE:
                self._plan_new_inode(txn, ino, kind, 1, 0)
            else:
                self._plan_new_inode(txn, ino, kind, 2, parent)
            self._plan_add_entry(txn, parent, name, ino)
        except NoSpace:
            txn.abort()
            self.free_inodes.add(ino)
            raise
        if kind == KIND_DIR:
            self.meta.plan_inode(txn, parent, nlink=self._inode(parent).nlink + 1)
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
            txn.free_after.extend(self._pages_of(ino))
            self.meta.plan_slot(txn, ino, FREE_INODE)

    def _plan_links(self, txn: Txn, links: dict[int, int]) -> None:
        for ino, count in sorted(links.items()):
            if count != self._inode(ino).nlink:
                self.meta.plan_inode(txn, ino, nlink=count)

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
            self.meta.plan_dirent(txn, parent, self._entries(parent)[name], u64(0))
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
            self.meta.plan_dirent(txn, parent, self._entries(parent)[name], u64(0))
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

            record = pack_dirent(source, self._inode(source).generation, new_name.encode("utf-8"))
            if target is not None:
                victim_dir = self._kind(target) == KIND_DIR
                if moving_dir and not victim_dir:
                    raise NotDirectory(new[:80])
                if not moving_dir and victim_dir:
                    raise IsDirectory(new[:80])
                if victim_dir and self._entries(target):
                    raise NotEmpty(new[:80])
                self.meta.plan_dirent(txn, new_parent, self._entries(new_parent)[new_name], record)
                if victim_dir:
                    links[target] = 0
                    links[new_parent] = link_count(new_parent) - 1
                else:
                    links[target] = link_count(target) - 1
            else:
                self._plan_add_entry(txn, new_parent, new_name, source)
            self.meta.plan_dirent(txn, old_parent, self._entries(old_parent)[old_name], u64(0))
            if moving_dir and old_parent != new_parent:
                links[old_parent] = link_count(old_parent) - 1
                links[new_parent] = link_count(new_parent) + 1
                self.meta.plan_inode(txn, source, parent=new_parent)
            self._plan_links(txn, links)
            if target is not None:
                self._plan_drop(txn, links, target)
            self._finish(txn, old_parent, links)
