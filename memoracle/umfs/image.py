"""UMFS image files: an SCM's bytes in an ordinary file.

**Format.** An image file is exactly the bytes of the SCM, from SCM offset 0 — no header
of its own: the superblock in its first page is the header (magic ``UMFS\\0v2\\0``,
version, page size, the SCM's physical base address, its size in pages, the zones, a
CRC-32), like a block device's image. So a file offset is an SCM offset, ``fsck``'s
locations are file offsets, and ``cmp``, ``xxd`` or ``dd`` work on images. The file's size
is the SCM's size: a multiple of 4096 bytes, at least :data:`MIN_IMAGE_BYTES`, at most
:data:`MAX_IMAGE_BYTES`. The image is loaded at physical address
:data:`impl.phys_mem.SCM_BASE` (1 TiB), the address its superblock records (UMFS stores
physical addresses, because the MMU walks its file page tables).

Reading an image holds it in memory about three times over (the file's bytes, and the
emulated SCM's visible and durable copies): :data:`MAX_IMAGE_BYTES` (1 GiB) bounds that,
and a file larger is refused before it is read. Commands that read an image never write
it back: a recovery that mount runs happens in memory only.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from impl.mmu_emu import Machine
from impl.phys_mem import SCM_BASE
from impl.scm_emu import ScmEmu
from impl.umfs import PAGES_PER_NEW_FILE, Umfs
from impl.umfs_layout import PAGE
from spec.umfs_api import O_CREAT, O_WRONLY, FsError

#: DRAM for the process that reads files (its page tables): small, never the limit.
DRAM_BYTES = 1 << 20
#: The smallest image mkfs makes: superblock, one inode page, room for two files.
MIN_IMAGE_BYTES = (2 + 2 * PAGES_PER_NEW_FILE) * PAGE
#: The largest image this code reads or makes (see the module doc).
MAX_IMAGE_BYTES = 1 << 30

_SIZE = re.compile(r"(\d+)([kmg]?)(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class ImageError(ValueError):
    """A file that cannot be an image (missing, not a regular file, wrong size): bad input."""


def parse_size(text: str) -> int:
    """``"4m"``, ``"64K"``, ``"1g"``, ``"65536"`` (binary units) → bytes, validated as an
    image size (a multiple of 4096 within the limits)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ImageError(f"--size {text!r}: want a number of bytes, optionally with k, m or g")
    size = int(match.group(1)) * _UNITS[match.group(2).lower()]
    check_size(size, f"--size {text}")
    return size


def check_size(size: int, what: str) -> None:
    """:class:`ImageError` unless ``size`` is a whole number of pages within the limits."""
    if size % PAGE:
        raise ImageError(f"{what}: {size} bytes is not a multiple of {PAGE}")
    if not MIN_IMAGE_BYTES <= size <= MAX_IMAGE_BYTES:
        raise ImageError(f"{what}: {size} bytes is outside {MIN_IMAGE_BYTES}..{MAX_IMAGE_BYTES}")


def machine_for(size: int, image: bytes | None = None) -> Machine:
    """An emulated machine whose SCM is ``size`` bytes (holding ``image`` if given)."""
    return Machine(DRAM_BYTES, scm=ScmEmu(size, image=image), scm_base=SCM_BASE)


def load(path: Path) -> Machine:
    """A machine whose SCM holds the image file at ``path`` (:class:`ImageError` if the
    file cannot be one; its contents are judged by mount and fsck, not here)."""
    try:
        info = path.stat()
    except OSError as error:
        raise ImageError(f"{path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file")
    check_size(info.st_size, str(path))
    try:
        with path.open("rb") as handle:
            data = handle.read(info.st_size + 1)
    except OSError as error:
        raise ImageError(f"{path}: {error.strerror or error}") from None
    if len(data) != info.st_size:
        raise ImageError(f"{path}: changed size while being read")
    return machine_for(len(data), data)


def save(path: Path, machine: Machine) -> None:
    """Write the machine's durable SCM to ``path`` (through a temporary file beside it,
    renamed into place, so a failed write leaves no half image)."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        temporary.write_bytes(machine.scm.durable())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ImageError(f"{path}: {error.strerror or error}") from None


def make(size: int, inodes: int | None = None, source: Path | None = None) -> Machine:
    """A machine whose SCM (``size`` bytes) holds a fresh, cleanly unmounted UMFS, holding
    a copy of the directory tree ``source`` if given (:func:`copy_tree`)."""
    machine = machine_for(size)
    fs = Umfs.mkfs(machine, inodes)
    if source is not None:
        copy_tree(fs, source)
    fs.unmount()
    return machine


def copy_tree(fs: Umfs, source: Path) -> None:
    """Copy the directories and regular files under ``source`` into ``fs``'s root (in
    sorted order; a file's contents, not its metadata). Anything else — a symbolic link,
    a device — is :class:`ImageError`, as is a file the image has no room for (``fs``
    raises :class:`~spec.umfs_api.NoSpace` and is left as it was before that file)."""
    if not source.is_dir():
        raise ImageError(f"--from {source}: not a directory")
    pid = fs.spawn()
    pending = [(source, "")]
    while pending:
        directory, prefix = pending.pop()
        for entry in sorted(directory.iterdir(), reverse=True):
            path = f"{prefix}/{entry.name}"
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                raise ImageError(f"--from: {entry} is neither a regular file nor a directory")
            try:
                if entry.is_dir():
                    fs.mkdir(path)
                    pending.append((entry, path))
                    continue
                fd = fs.open(pid, path, O_CREAT | O_WRONLY)
                with entry.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        fs.write(pid, fd, chunk)
                fs.close(pid, fd)
            except FsError as error:
                raise ImageError(f"--from: {entry}: {error}") from None
    fs.exit(pid)
