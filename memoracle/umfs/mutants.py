"""Deliberately broken UMFS implementations that the conformance campaign must catch.

Each is a subclass of :class:`impl.umfs.Umfs` with one bug a file-system engineer could
write, in a situation that only some workloads reach — which is the point: the campaign
(:mod:`memoracle.umfs.campaign`) catches each only because its steps generate that
situation (``tests/test_umfs_campaign.py`` shows the plain step mix misses them):

- :class:`CrossRenameKeepsParentLinks` — moving a directory to another parent leaves both
  parents' link counts as they were (the ``..`` entry moved, its link did not): needs a
  cross-directory rename of a directory;
- :class:`OpenDirectoryGrowsTheInode` — a directory that is open grows a page for a new
  entry, and its new size and digest go to its inode instead of the open file's
  attribute cache, so the last close writes the stale cached ones back: needs a
  directory opened, an entry made in it, and the directory closed;
- :class:`FreshPageNotCleared` — a write past the end stores only its own bytes into a
  newly linked page, trusting the page to be zero; a page freed by a truncate and
  handed out again still holds the old bytes: needs a truncate, then a write past the
  end that does not cover a whole page;
- :class:`WriteOnlyMapped` — ``map`` of a descriptor open for writing only succeeds (the
  read-only window is handed out without the readable check): needs ``map`` of an
  ``O_WRONLY`` descriptor, which only the extension's interface steps make.
"""

from __future__ import annotations

from impl.umfs import Umfs, UmfsMapping
from impl.umfs_layout import KIND_DIR, PAGE
from impl.umfs_ulog import Txn
from spec.umfs_api import FileMapping, FsError, IsDirectory


class SeesDirectoryMoves(Umfs):
    """A base for mutants of a directory's move to another parent."""

    def directory_moved_across_parents(self, old: str, new: str) -> tuple[int, int, int] | None:
        """``(old parent, new parent, directory)`` when ``rename(old, new)`` would move a
        directory to another parent, else None (also for a rename that fails: the real
        ``rename`` then raises the right error)."""
        try:
            old_parent, _ = self._parent(self._parse(old), old)
            new_parent, _ = self._parent(self._parse(new), new)
            source = self._resolve(self._parse(old), old)
        except FsError:
            return None
        return (old_parent, new_parent, source) if old_parent != new_parent and self._kind(source) == KIND_DIR else None


class CrossRenameKeepsParentLinks(SeesDirectoryMoves):
    """A directory moved to another parent: neither parent's link count changes."""

    _moving: tuple[int, int] | None = None

    def rename(self, old: str, new: str) -> None:
        moved = self.directory_moved_across_parents(old, new)
        self._moving = None if moved is None else moved[:2]
        try:
            super().rename(old, new)
        finally:
            self._moving = None

    def _plan_links(self, txn: Txn, links: dict[int, int]) -> None:
        if self._moving is not None:
            links = {ino: count for ino, count in links.items() if ino not in self._moving}
        super()._plan_links(txn, links)


class OpenDirectoryGrowsTheInode(Umfs):
    """A new directory page's size and digest are written to the inode even while the
    directory is open (its attributes then live in the U-Log's cache)."""

    def _plan_add_entry(self, txn: Txn, dino: int, name: str, ino: int) -> None:
        header = self.meta.cached.pop(dino, None)  # as if nothing were cached
        try:
            super()._plan_add_entry(txn, dino, name, ino)
        finally:
            if header is not None:
                self.meta.cached[dino] = header


class FreshPageNotCleared(Umfs):
    """A page newly linked by a write gets only the written bytes (its zeros, the hole
    before the data and the rest of the page, are taken for granted)."""

    def _commit(self, txn: Txn, log_ino: int) -> None:
        if txn.op == "write":
            written: list[tuple[int, bytes]] = []
            for paddr, data in txn.writes["data"]:
                if paddr in txn.fresh and len(data) == PAGE:
                    used = [i for i, byte in enumerate(data) if byte]
                    if used:
                        written.append((paddr + used[0], data[used[0] : used[-1] + 1]))
                else:
                    written.append((paddr, data))
            txn.writes["data"] = written
        super()._commit(txn, log_ino)


class WriteOnlyMapped(Umfs):
    """``map`` checks that the descriptor is a file, not that it is open for reading."""

    def map(self, pid: int, fd: int) -> FileMapping:
        with self._fs_lock:
            description = self._descriptor(pid, fd)
            if self._kind(description.ino) == KIND_DIR:
                raise IsDirectory(f"map fd {fd}")
            return UmfsMapping(self, pid, fd, description)


#: Every mutant by name.
UMFS_MUTANTS: dict[str, type[Umfs]] = {
    "cross-rename-keeps-parent-links": CrossRenameKeepsParentLinks,
    "open-directory-grows-the-inode": OpenDirectoryGrowsTheInode,
    "fresh-page-not-cleared": FreshPageNotCleared,
    "write-only-mapped": WriteOnlyMapped,
}

