"""UMFS as the paper describes it: O(1) open by splicing, the U-Log protocol, mount checks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from impl.mmu_emu import Machine, PageFault, VmaFlags
from impl.scm_emu import PersistEvent
from impl.umfs import Umfs
from impl.umfs_layout import PAGE, CorruptImage, Inode, u64
from protocol_tours import fs_tour
from spec.paging import PF_PRESENT, PF_USER, PF_WRITE, PML4
from spec.umfs_api import (
    MAX_FDS,
    O_CREAT,
    O_RDONLY,
    O_RDWR,
    BadDescriptor,
    NoSpace,
    TooManyOpen,
)


def fresh(scm: int = 8 << 20) -> Umfs:
    return Umfs.mkfs(Machine(dram_size=16 << 20, scm_size=scm))


def forge_inode(fs: Umfs, ino: int, **changes: int) -> None:
    """Rewrite inode ``ino`` with ``changes`` *and a valid checksum*: damage the checksum
    cannot see, so that the structural checks behind it are what is tested."""
    addr = fs._inode_addr(ino)
    fs.pm.store(addr, replace(Inode.unpack(fs.pm.read(addr, 128)), **changes).pack(ino))


def test_umfs_keeps_the_protocol_on_a_tour() -> None:
    fs = fresh()
    fs_tour(fs)
    fs.check_invariants()


def test_open_writes_two_entries_whatever_the_size() -> None:
    fs = fresh(32 << 20)
    pid = fs.spawn()
    counts = []
    for size in (0, PAGE, 600 * PAGE, 3 << 20):
        path = f"/f{size}"
        fd = fs.open(pid, path, O_CREAT | O_RDWR)
        if size:
            fs.ftruncate(pid, fd, size)
        fs.close(pid, fd)
        space = fs.processes[pid].space
        before = space.counters.pte_writes
        fd = fs.open(pid, path, O_RDONLY)
        counts.append(space.counters.pte_writes - before)
        fs.close(pid, fd)
    assert counts == [2, 2, 2, 2]


def test_open_splices_the_file_table_into_one_pml4_entry() -> None:
    fs = fresh()
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"x" * 5000)
    process = fs.processes[pid]
    base = process.uinfo[fd]
    assert base is not None and base % (1 << 39) == 0
    entry = process.space.read_entry(base, PML4)
    assert entry & 0x000F_FFFF_FFFF_F000 == fs._inode(process.files[fd].ino).fpt == fs.file_table("/a")
    _, pages = fs.tables.walk(fs.file_table("/a"))
    assert [index for index, _ in pages] == [0, 1]  # 5000 bytes: two data pages
    vma = process.space.find_vma(base)
    assert vma is not None and vma.flags & VmaFlags.RETAIN and not vma.flags & VmaFlags.WRITE
    assert process.space.load(base + 4999, 1) == b"x"  # the MMU walks the SCM table
    fs.close(pid, fd)
    assert process.uinfo[fd] is None and process.space.read_entry(base, PML4) == 0
    assert process.space.find_vma(base) is None


def test_the_user_mapping_is_read_only() -> None:
    fs = fresh()
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"data")
    base = fs.processes[pid].uinfo[fd]
    assert base is not None
    with pytest.raises(PageFault) as fault:
        fs.processes[pid].space.store(base, b"evil")
    assert fault.value.error_code == PF_PRESENT | PF_WRITE | PF_USER
    assert fs.map(pid, fd).read(0, 4) == b"data"


def test_descriptors_of_one_file_share_its_window_and_emfile_at_1024() -> None:
    fs = fresh()
    pid = fs.spawn()
    fds = [fs.open(pid, "/a", O_CREAT | O_RDWR) for _ in range(MAX_FDS)]
    assert len(set(fs.processes[pid].uinfo)) == 1
    with pytest.raises(TooManyOpen):
        fs.open(pid, "/a", O_RDONLY)
    for fd in fds:
        fs.close(pid, fd)
    fs.check_invariants()


def test_distinct_files_are_limited_by_the_user_half() -> None:
    fs = fresh(16 << 20)
    pid = fs.spawn()
    opened = 0
    with pytest.raises(TooManyOpen, match="window"):
        while True:
            fs.open(pid, f"/f{opened}", O_CREAT | O_RDWR)
            opened += 1
    assert opened == 112
    fs.check_invariants()


def test_two_processes_see_each_others_writes_and_truncation() -> None:
    fs = fresh()
    p1, p2 = fs.spawn(), fs.spawn()
    f1 = fs.open(p1, "/a", O_CREAT | O_RDWR)
    f2 = fs.open(p2, "/a", O_RDWR)
    fs.write(p1, f1, b"A" * 3 * PAGE)
    assert fs.pread(p2, f2, 3, 2 * PAGE) == b"AAA"  # p2's TLB now holds page 2
    fs.ftruncate(p1, f1, PAGE)
    fs.pwrite(p1, f1, b"B" * 2 * PAGE, PAGE)  # page 2 is a new page now
    assert fs.pread(p2, f2, 3, 2 * PAGE) == b"BBB", "a stale TLB entry survived the truncation"
    fs.check_invariants()


def test_unlinked_file_lives_until_last_close_then_space_returns() -> None:
    fs = fresh()
    pid = fs.spawn()
    fs.mkdir("/warm")  # the root directory's first page stays allocated
    fs.rmdir("/warm")
    free_before = fs.zone.free_count
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"z" * 10 * PAGE)
    fs.unlink("/a")
    assert fs.pread(pid, fd, 1, 9 * PAGE) == b"z"
    fs.check_invariants()
    fs.close(pid, fd)
    assert fs.zone.free_count == free_before
    fs.check_invariants()


def test_enospc_leaves_the_file_system_unchanged() -> None:
    fs = fresh(1 << 20)
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"keep")
    before = fs.observe()
    with pytest.raises(NoSpace):
        fs.write(pid, fd, b"x" * (2 << 20))
    with pytest.raises(NoSpace):
        fs.ftruncate(pid, fd, 2 << 20)
    assert fs.observe() == before and fs.fstat(pid, fd).size == 4
    fs.check_invariants()


def test_inodes_run_out_cleanly() -> None:
    fs = Umfs.mkfs(Machine(dram_size=16 << 20, scm_size=4 << 20), inodes=32)
    made = 0
    with pytest.raises(NoSpace, match="inode"):
        while True:
            fs.mkdir(f"/d{made}")
            made += 1
    assert made == 31  # the root has the first inode
    fs.check_invariants()


def test_unmount_and_mount_keep_everything() -> None:
    machine = Machine(dram_size=16 << 20, scm_size=8 << 20)
    fs = Umfs.mkfs(machine)
    pid = fs.spawn()
    fs.mkdir("/d")
    fd = fs.open(pid, "/d/f", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"persist me" * 1000)
    tree = fs.observe()
    fs.unmount()
    again = Umfs.mount(machine)
    assert again.observe() == tree and again.recovered == []
    again.check_invariants()


def test_write_follows_the_ulog_protocol_order() -> None:
    """Old data reaches the U-Log and is fenced before the file's bytes change."""
    fs = fresh()
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"old!" * 1024)
    page = fs.tables.lookup(fs._inode(fs.processes[pid].files[fd].ino).fpt, 0)
    assert page is not None
    data_offset = page - fs.base
    events: list[tuple[str, bool]] = []

    def hook(event: PersistEvent) -> None:
        touches_data = event.kind == "store" and data_offset <= event.offset < data_offset + PAGE
        events.append((event.kind, touches_data))

    fs.machine.scm.add_hook(hook)
    fs.pwrite(pid, fd, b"new!", 0)
    first_data_store = events.index(("store", True))
    assert ("sfence", False) in events[:first_data_store], "data changed before the log was fenced"
    assert events[-1] == ("sfence", False) and events[-2][0] == "clwb"  # the invalidation persisted


def test_every_operation_leaves_nothing_pending_in_scm() -> None:
    fs = fresh()
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"x" * 9000)
    fs.mkdir("/d")
    fs.rename("/a", "/d/b")
    fs.ftruncate(pid, fd, 100)
    assert fs.machine.scm.count_images() == 1  # every store is durable when a call returns


def test_mapping_is_invalid_after_close() -> None:
    fs = fresh()
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    view = fs.map(pid, fd)
    fs.close(pid, fd)
    with pytest.raises(BadDescriptor):
        view.read(0, 1)


# ------------------------------------------------------------------ mount rejects bad images


def image_with(change: bytes, at: int, scm: int = 4 << 20) -> Machine:
    machine = Machine(dram_size=16 << 20, scm_size=scm)
    Umfs.mkfs(machine).unmount()
    machine.scm.store(at, change)
    return machine


@pytest.mark.parametrize(
    ("offset", "change", "message"),
    [
        (0, b"NOTUMFS!", "bad magic"),
        (40, u64(12345), "checksum"),
    ],
)
def test_mount_rejects_a_damaged_superblock(offset: int, change: bytes, message: str) -> None:
    with pytest.raises(CorruptImage, match=message):
        Umfs.mount(image_with(change, offset))


def test_mount_rejects_impossible_sizes() -> None:
    machine = Machine(dram_size=16 << 20, scm_size=4 << 20)
    fs = Umfs.mkfs(machine)
    sb = fs.sb
    from impl.umfs_layout import Superblock

    bad = Superblock(sb.phys_base, sb.total_pages, 1, sb.inode_pages, sb.inode_count, sb.data_start, sb.data_pages + 7, 1, 1)
    machine.scm.store(0, bad.pack())
    with pytest.raises(CorruptImage, match="impossible data zone"):
        Umfs.mount(machine)


def test_mount_rejects_a_table_pointer_outside_the_data_zone() -> None:
    machine = Machine(dram_size=16 << 20, scm_size=4 << 20)
    fs = Umfs.mkfs(machine)
    fs.unmount()
    root = fs._inode_addr(1)
    machine.scm.store(root - fs.base + 24, u64(fs.base + 5))  # the root's file table pointer
    with pytest.raises(CorruptImage, match="inode 1 at offset 0x1000: checksum mismatch"):
        Umfs.mount(machine)
    forge_inode(fs, 1, fpt=fs.base + 5)
    with pytest.raises(CorruptImage, match="outside the data zone"):
        Umfs.mount(machine)


def test_mount_rejects_an_entry_pointing_outside_the_data_zone() -> None:
    machine = Machine(dram_size=16 << 20, scm_size=4 << 20)
    fs = Umfs.mkfs(machine)
    pid = fs.spawn()
    fd = fs.open(pid, "/a", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"x")
    top = fs._inode(fs.processes[pid].files[fd].ino).fpt
    fs.unmount()
    machine.scm.store(top - fs.base, u64(0x7 | (1 << 45)))  # PDPT[0] → nowhere
    with pytest.raises(CorruptImage, match="outside the data zone"):
        Umfs.mount(machine)


def test_mount_of_a_blank_scm_says_it_is_not_umfs() -> None:
    with pytest.raises(CorruptImage, match="not a UMFS image"):
        Umfs.mount(Machine(dram_size=16 << 20, scm_size=4 << 20))


# ------------------------------------------------------------------ fsck goes red


def test_fsck_catches_a_wrong_link_count() -> None:
    fs = fresh()
    pid = fs.spawn()
    fs.close(pid, fs.open(pid, "/a", O_CREAT | O_RDWR))
    forge_inode(fs, 2, nlink=5)
    with pytest.raises(CorruptImage, match="inode 2 at offset 0x1080: file with nlink 5, named 1 times"):
        fs.check_invariants()


def test_fsck_catches_a_page_owned_twice() -> None:
    fs = fresh()
    pid = fs.spawn()
    for name in ("/a", "/b"):
        fd = fs.open(pid, name, O_CREAT | O_RDWR)
        fs.write(pid, fd, b"x")
        fs.close(pid, fd)
    top_a, top_b = fs._inode(2).fpt, fs._inode(3).fpt
    page_a = fs.tables.lookup(top_a, 0)
    at_b = fs.tables.entry_addr(top_b, 0, 1)
    assert page_a is not None and at_b is not None
    fs.pm.store(at_b, u64(page_a | 0x25))
    with pytest.raises(CorruptImage, match="referenced twice"):
        fs.check_invariants()


def test_fsck_catches_a_leaked_page() -> None:
    fs = fresh()
    fs.zone.take(1)
    with pytest.raises(AssertionError, match="neither free nor reachable"):
        fs.check_invariants()


def test_the_check_campaign_catches_a_umfs_that_drops_a_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoracle.umfs import campaign as fs_campaign

    class DropsLastByte(Umfs):
        def _write_at(self, ino: int, position: int, data: bytes) -> None:
            super()._write_at(ino, position, data[:-1] + b"\0" if len(data) > 1 else data)

    def make_broken() -> Umfs:
        return DropsLastByte.mkfs(Machine(dram_size=16 << 20, scm_size=16 << 20))

    assert fs_campaign.umfs_campaign(0, 300) is None
    monkeypatch.setattr(fs_campaign, "make_umfs", make_broken)
    report = fs_campaign.umfs_campaign(0, 300)
    assert report is not None and "--seed 0" in report


def test_the_namespace_mixin_gets_everything_it_declares() -> None:
    """``NamespaceOps`` declares what it uses of the core; a mounted UMFS has all of it
    (a declaration the core does not fulfil would be an AttributeError at run time)."""
    from impl.umfs_names import NamespaceOps

    fs = fresh()
    declared = set(NamespaceOps.__annotations__)
    assert {"_inode", "_commit", "pm"} <= declared
    assert [name for name in sorted(declared) if not hasattr(fs, name)] == []
