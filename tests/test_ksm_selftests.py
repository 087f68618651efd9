"""The kernel's own KSM selftests (``ksm_tests.c``, ``ksm_functional_tests.c``) as tests of
:class:`impl.ksm.Ksm`, with the exact counter values the kernel's tests assert.

Every case starts as those tests do: ``run = 2`` (unmerge everything), then the pages
are written, registered and merged with ``run = 1`` and two full scans.
"""

from __future__ import annotations

import pytest

from impl.ksm import Ksm
from spec.ksm_api import PAGE_SIZE, MappingError

PAGE = PAGE_SIZE


def fresh() -> Ksm:
    ksm = Ksm()
    ksm.set_knob("run", 2)
    return ksm


def fill(ksm: Ksm, pid: int, addr: int, contents: list[bytes]) -> None:
    for i, content in enumerate(contents):
        ksm.write(pid, addr + i * PAGE, content)


def merge(ksm: Ksm, pid: int, addr: int, npages: int) -> None:
    """``ksm_merge_pages``: madvise, run = 1, two full scans."""
    ksm.madvise(pid, addr, npages, "MERGEABLE")
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    ksm.check_invariants()


def shared_sharing(ksm: Ksm) -> tuple[int, int]:
    c = ksm.counters()
    return c["pages_shared"], c["pages_sharing"]


def distinct_frames(ksm: Ksm, pid: int, addr: int, npages: int) -> bool:
    """``!range_maps_duplicates``: no two pages of the range map the same frame."""
    frames = [ksm.frame_at(pid, addr + i * PAGE) for i in range(npages)]
    present = [f for f in frames if f is not None]
    return len(set(present)) == len(present)


def test_merge_ten_identical_pages() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 10)
    fill(ksm, pid, addr, [b"\x2a" * PAGE] * 10)
    merge(ksm, pid, addr, 10)
    assert shared_sharing(ksm) == (1, 9)
    assert ksm.process_counters(pid)["ksm_merging_pages"] == 10
    assert ksm.read(pid, addr + 5 * PAGE, PAGE) == b"\x2a" * PAGE


def _expected_sharing(n: int, m: int) -> tuple[int, int]:
    if n % m in (0, 1):
        shared = n // m
        return shared, shared * (m - 1)
    shared = n // m + 1
    return shared, n - shared


@pytest.mark.parametrize(("n", "m"), [(10, 2), (10, 3), (11, 3), (12, 4), (13, 4), (9, 5), (6, 256)])
def test_max_page_sharing_arithmetic(n: int, m: int) -> None:
    ksm = fresh()
    ksm.set_knob("max_page_sharing", m)
    pid = ksm.add_process()
    addr = ksm.mmap(pid, n)
    fill(ksm, pid, addr, [b"\x11" * PAGE] * n)
    merge(ksm, pid, addr, n)
    assert shared_sharing(ksm) == _expected_sharing(n, m)
    chains = ksm.counters()["stable_node_chains"]
    assert chains == (1 if _expected_sharing(n, m)[0] > 1 else 0)


def test_unmerge_by_writing_one_byte() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 2)
    fill(ksm, pid, addr, [b"\x05" * PAGE] * 2)
    merge(ksm, pid, addr, 2)
    assert shared_sharing(ksm) == (1, 1)
    ksm.write(pid, addr, b"\x06")
    ksm.write(pid, addr + PAGE, b"\x07")
    assert shared_sharing(ksm) == (1, 1)  # counters change at ksmd's next visit
    ksm.full_scans(1)
    ksm.check_invariants()
    assert shared_sharing(ksm) == (0, 0)
    assert ksm.read(pid, addr, 2) == b"\x06\x05"


@pytest.mark.parametrize("use_zero_pages", [False, True])
def test_zero_pages(use_zero_pages: bool) -> None:
    ksm = fresh()
    ksm.set_knob("use_zero_pages", use_zero_pages)
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 10)
    fill(ksm, pid, addr, [bytes(PAGE)] * 10)
    merge(ksm, pid, addr, 10)
    if use_zero_pages:
        assert shared_sharing(ksm) == (0, 0)
        assert ksm.counters()["ksm_zero_pages"] == 10
        assert ksm.frame_at(pid, addr) == ksm.zero_frame
    else:
        assert shared_sharing(ksm) == (1, 9)
        assert ksm.counters()["ksm_zero_pages"] == 0
    assert ksm.read(pid, addr, 10 * PAGE) == bytes(10 * PAGE)


def test_unmerge_leaves_no_shared_frames() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 8)
    fill(ksm, pid, addr, [b"\xcf" * PAGE] * 8)
    merge(ksm, pid, addr, 8)
    assert not distinct_frames(ksm, pid, addr, 8)
    ksm.madvise(pid, addr, 8, "UNMERGEABLE")
    ksm.check_invariants()
    assert distinct_frames(ksm, pid, addr, 8)
    # As in the kernel: the rmap items stay until ksmd's next pass.
    assert shared_sharing(ksm) == (1, 7)
    assert ksm.process_counters(pid)["ksm_merging_pages"] == 8
    assert ksm.process_counters(pid)["ksm_rmap_items"] == 8
    ksm.full_scans(1)
    ksm.check_invariants()
    assert shared_sharing(ksm) == (0, 0)
    assert ksm.process_counters(pid)["ksm_merging_pages"] == 0
    assert ksm.process_counters(pid)["ksm_rmap_items"] == 0


def test_zero_page_count_follows_unmerge_and_writes() -> None:
    ksm = fresh()
    ksm.set_knob("use_zero_pages", True)
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 512)
    ksm.write(pid, addr, bytes(512 * PAGE))
    merge(ksm, pid, addr, 512)
    assert ksm.counters()["ksm_zero_pages"] == 512
    assert ksm.process_counters(pid)["ksm_zero_pages"] == 512
    ksm.madvise(pid, addr, 256, "UNMERGEABLE")
    assert ksm.counters()["ksm_zero_pages"] == 256
    for i in range(256, 512):
        ksm.write(pid, addr + i * PAGE, b"\x01")
    assert ksm.counters()["ksm_zero_pages"] == 0
    assert ksm.process_counters(pid)["ksm_zero_pages"] == 0
    ksm.check_invariants()


def test_unmerge_after_discarding_half() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 8)
    fill(ksm, pid, addr, [b"\xcf" * PAGE] * 8)
    merge(ksm, pid, addr, 8)
    ksm.munmap(pid, addr, 4)
    ksm.check_invariants()
    ksm.madvise(pid, addr + 4 * PAGE, 4, "UNMERGEABLE")
    ksm.check_invariants()
    assert distinct_frames(ksm, pid, addr + 4 * PAGE, 4)
    with pytest.raises(MappingError) as err:
        ksm.madvise(pid, addr, 8, "UNMERGEABLE")
    assert err.value.errno == "ENOMEM"


def test_prot_none_range_merges_and_unmerges() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 6)
    fill(ksm, pid, addr, [b"\x33" * PAGE] * 6)
    ksm.mprotect(pid, addr, 6, readable=False, writable=False)
    merge(ksm, pid, addr, 6)
    assert shared_sharing(ksm) == (1, 5)
    assert ksm.process_counters(pid)["ksm_merging_pages"] == 6
    ksm.madvise(pid, addr, 6, "UNMERGEABLE")
    ksm.check_invariants()
    assert distinct_frames(ksm, pid, addr, 6)
    ksm.mprotect(pid, addr, 6, readable=True, writable=True)
    assert ksm.read(pid, addr + PAGE, 1) == b"\x33"


def test_run_2_unmerges_everything() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 10)
    fill(ksm, pid, addr, [b"\x2a" * PAGE] * 10)
    merge(ksm, pid, addr, 10)
    assert shared_sharing(ksm) == (1, 9)
    ksm.set_knob("run", 2)
    ksm.check_invariants()
    assert shared_sharing(ksm) == (0, 0)
    assert ksm.counters()["pages_volatile"] == 0 and ksm.process_counters(pid)["ksm_rmap_items"] == 0
    assert distinct_frames(ksm, pid, addr, 10)
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    assert shared_sharing(ksm) == (1, 9)  # the range stayed registered


def test_prctl_memory_merge_without_madvise() -> None:
    ksm = fresh()
    pid = ksm.add_process()
    ksm.set_process_merge(pid, True)
    addr = ksm.mmap(pid, 4)
    fill(ksm, pid, addr, [b"\x44" * PAGE] * 4)
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    ksm.check_invariants()
    assert shared_sharing(ksm) == (1, 3)
    ksm.set_process_merge(pid, False)
    ksm.check_invariants()
    assert distinct_frames(ksm, pid, addr, 4)
    assert shared_sharing(ksm) == (1, 3)  # the rmap items stay until ksmd's next pass
    ksm.full_scans(1)
    assert shared_sharing(ksm) == (0, 0)
    assert ksm.process_counters(pid)["ksm_rmap_items"] == 0


def test_prctl_off_without_prctl_on_changes_nothing() -> None:
    """``ksm_disable_merge_any`` returns early when process-wide merging is off: a range
    registered by madvise stays registered and merged."""
    ksm = fresh()
    pid = ksm.add_process()
    addr = ksm.mmap(pid, 4)
    fill(ksm, pid, addr, [b"\x45" * PAGE] * 4)
    merge(ksm, pid, addr, 4)
    assert shared_sharing(ksm) == (1, 3)
    ksm.set_process_merge(pid, False)
    ksm.check_invariants()
    assert not distinct_frames(ksm, pid, addr, 4)
    ksm.full_scans(2)
    assert shared_sharing(ksm) == (1, 3)
    assert ksm.process_counters(pid)["ksm_merging_pages"] == 4


def test_a_process_with_nothing_registered_leaves_ksmds_list() -> None:
    """At the end of its pass ksmd drops an mm with no mergeable mapping; with the list
    empty no full scan completes. Process-wide merging stays on (Linux 6.18 keeps
    MMF_VM_MERGE_ANY), so the next mapping is mergeable and brings the process back."""
    ksm = fresh()
    pid = ksm.add_process()
    ksm.set_process_merge(pid, True)
    addr = ksm.mmap(pid, 2)
    fill(ksm, pid, addr, [b"\x46" * PAGE] * 2)
    ksm.set_knob("run", 1)
    ksm.full_scans(2)
    assert shared_sharing(ksm) == (1, 1)
    ksm.madvise(pid, addr, 2, "UNMERGEABLE")
    ksm.full_scans(3)
    assert ksm.counters()["full_scans"] == 3  # the pass that dropped it counts, no later one
    assert ksm.procs[pid].merge_any and not ksm.mm_list
    ksm.set_process_merge(pid, True)  # already on: returns early, still not listed
    ksm.full_scans(2)
    assert ksm.counters()["full_scans"] == 3
    later = ksm.mmap(pid, 2)
    fill(ksm, pid, later, [b"\x46" * PAGE] * 2)
    ksm.full_scans(2)
    ksm.check_invariants()
    assert shared_sharing(ksm) == (1, 1) and ksm.counters()["full_scans"] == 5
