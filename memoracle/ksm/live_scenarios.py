"""Operation sequences for the live comparison (:mod:`memoracle.ksm.live_check`).

- :data:`SELFTESTS`: the kernel's own KSM selftests (``ksm_tests.c``,
  ``ksm_functional_tests.c``) as :class:`~memoracle.ksm.conformance.Op` sequences — each
  starts as those tests do (a fresh session is ``run = 2``), registers, sets ``run = 1``
  and asks for full scans — plus the behaviours the live kernel showed that memoracle
  once got wrong (``prctl(PR_SET_MEMORY_MERGE, 0)`` without process-wide merging; rmap
  items kept after an unmerge; a process with nothing registered leaving ksmd's list).
- :func:`live_ops`: a seeded campaign of the operations every side can do
  deterministically (no ``run_ksmd``: the kernel's time is real; no research knobs: the
  kernel lacks them): writes from a small pool of contents, single bytes, full scans,
  madvise, process-wide merging, mprotect (PROT_NONE included), munmap, new mappings,
  stores across a page boundary, ``run`` 0/1/2, ``max_page_sharing``, ``use_zero_pages``,
  ``smart_scan``, and knob stores the kernel must refuse.
"""

from __future__ import annotations

import random

from memoracle.ksm.conformance import CONTENT_POOL, Op
from spec.ksm_api import MMAP_BASE, PAGE_SIZE

B = MMAP_BASE
P = PAGE_SIZE


def _fill(pid: int, addr: int, contents: list[bytes]) -> list[Op]:
    return [Op("write", (pid, addr + i * P, content)) for i, content in enumerate(contents)]


def _merge(pid: int, addr: int, npages: int, scans: int = 2) -> list[Op]:
    """``ksm_merge_pages``: madvise, run = 1, two full scans."""
    return [Op("madvise", (pid, addr, npages, "MERGEABLE")), Op("set_knob", ("run", 1)), Op("full_scans", (scans,))]


def _one(npages: int) -> list[Op]:
    return [Op("add_process"), Op("mmap", (1, npages))]


def _sharing_limit(n: int, m: int) -> list[Op]:
    return [Op("set_knob", ("max_page_sharing", m)), *_one(n), *_fill(1, B, [b"\x2a" * P] * n), *_merge(1, B, n)]


SELFTESTS: dict[str, list[Op]] = {
    # ksm_tests.c: check_ksm_merge — 10 identical pages: shared 1, sharing 9.
    "merge_ten_pages": [*_one(10), *_fill(1, B, [b"\x2a" * P] * 10), *_merge(1, B, 10)],
    # ksm_tests.c: check_max_page_sharing_limit — n identical pages, max_page_sharing m.
    "max_page_sharing_13_of_4": _sharing_limit(13, 4),
    "max_page_sharing_9_of_3": _sharing_limit(9, 3),
    # ksm_tests.c: check_ksm_unmerge — merged pages each changed by one byte, one scan.
    "changed_pages_unmerge": [
        *_one(2), *_fill(1, B, [b"\x2a" * P] * 2), *_merge(1, B, 2),
        Op("write", (1, B + 7, b"\x01")), Op("write", (1, B + P + 7, b"\x02")), Op("full_scans", (1,)),
    ],  # fmt: skip
    # ksm_tests.c: check_ksm_zero_page_merge — use_zero_pages 0: one KSM page.
    "zero_pages_merge_with_each_other": [*_one(10), *_fill(1, B, [bytes(P)] * 10), *_merge(1, B, 10)],
    # ... use_zero_pages 1: every page maps the zero page.
    "zero_pages_map_the_zero_page": [
        Op("set_knob", ("use_zero_pages", True)), *_one(10), *_fill(1, B, [bytes(P)] * 10), *_merge(1, B, 10, scans=3),
    ],
    # ksm_tests.c: check_ksm_numa_merge is NUMA-only; two processes instead.
    "two_processes": [
        Op("add_process"), Op("add_process"), Op("mmap", (1, 4)), Op("mmap", (2, 4)),
        *_fill(1, B, [b"\x11" * P, b"\x12" * P, b"\x13" * P, b"\x14" * P]),
        *_fill(2, B, [b"\x11" * P, b"\x12" * P, b"\x99" * P, b"\x14" * P]),
        Op("madvise", (1, B, 4, "MERGEABLE")), *_merge(2, B, 4),
    ],  # fmt: skip
    # ksm_functional_tests.c: test_unmerge — no shared frames after MADV_UNMERGEABLE;
    # the rmap items (pages_sharing, ksm_rmap_items, ksm_merging_pages) stay until the
    # next scan.
    "unmerge": [
        *_one(8), *_fill(1, B, [b"\xcf" * P] * 8), *_merge(1, B, 8),
        Op("madvise", (1, B, 8, "UNMERGEABLE")), Op("full_scans", (1,)),
    ],  # fmt: skip
    # test_unmerge_zero_pages — ksm_zero_pages follows the page tables at once.
    "unmerge_zero_pages": [
        Op("set_knob", ("use_zero_pages", True)), *_one(64), *_fill(1, B, [bytes(P)] * 64), *_merge(1, B, 64),
        Op("madvise", (1, B, 32, "UNMERGEABLE")),
        *[Op("write", (1, B + (32 + i) * P, b"\x01")) for i in range(32)], Op("full_scans", (2,)),
    ],  # fmt: skip
    # test_unmerge_discarded — unmerge after discarding half.
    "unmerge_discarded": [
        *_one(8), *_fill(1, B, [b"\xcf" * P] * 8), *_merge(1, B, 8),
        Op("munmap", (1, B, 4)), Op("madvise", (1, B + 4 * P, 4, "UNMERGEABLE")),
        Op("madvise", (1, B, 8, "UNMERGEABLE")), Op("full_scans", (1,)),
    ],  # fmt: skip
    # test_unmerge_uffd_wp has no counterpart; test_prot_none — a PROT_NONE range merges
    # and unmerges.
    "prot_none": [
        *_one(6), *_fill(1, B, [b"\x33" * P] * 6), Op("mprotect", (1, B, 6), (("readable", False), ("writable", False))),
        *_merge(1, B, 6), Op("read", (1, B, 1)), Op("madvise", (1, B, 6, "UNMERGEABLE")),
        Op("mprotect", (1, B, 6), (("readable", True), ("writable", True))), Op("full_scans", (1,)),
    ],  # fmt: skip
    # test_prctl / test_prctl_unmerge — process-wide merging, then off.
    "prctl_merge_and_unmerge": [
        Op("add_process"), Op("set_process_merge", (1, True)), Op("mmap", (1, 4)), *_fill(1, B, [b"\x44" * P] * 4),
        Op("set_knob", ("run", 1)), Op("full_scans", (2,)), Op("set_process_merge", (1, False)), Op("full_scans", (1,)),
    ],  # fmt: skip
    # The bug the live kernel showed: prctl(0) without prctl(1) changes nothing.
    "prctl_off_without_on": [
        *_one(4), *_fill(1, B, [b"\x45" * P] * 4), *_merge(1, B, 4),
        Op("set_process_merge", (1, False)), Op("full_scans", (2,)),
    ],  # fmt: skip
    # A process left with nothing registered leaves ksmd's list at the end of its pass
    # (process-wide merging is cleared); with the list empty no scan completes.
    "drop_from_ksmd_list": [
        Op("add_process"), Op("set_process_merge", (1, True)), Op("mmap", (1, 2)), *_fill(1, B, [b"\x46" * P] * 2),
        Op("set_knob", ("run", 1)), Op("full_scans", (2,)), Op("madvise", (1, B, 2, "UNMERGEABLE")),
        Op("full_scans", (3,)), Op("mmap", (1, 2)), *_fill(1, B + 2 * P, [b"\x46" * P] * 2), Op("full_scans", (2,)),
        Op("set_process_merge", (1, True)), Op("full_scans", (2,)),
    ],  # fmt: skip
    # run = 2 unmerges everything at once; the ranges stay registered.
    "run_2": [
        *_one(10), *_fill(1, B, [b"\x2a" * P] * 10), *_merge(1, B, 10),
        Op("set_knob", ("run", 2)), Op("set_knob", ("run", 1)), Op("full_scans", (2,)),
    ],  # fmt: skip
    # Smart scan: a page that never merges is skipped after three visits.
    "smart_scan_skips": [
        *_one(3), *_fill(1, B, [b"\x51" * P, b"\x52" * P, b"\x53" * P]), *_merge(1, B, 3, scans=8),
    ],
    # COW: a write to a merged page gets a private copy; counters change at the next scan.
    "cow_then_rescan": [
        Op("add_process"), Op("add_process"), Op("mmap", (1, 3)), Op("mmap", (2, 3)),
        *_fill(1, B, [b"\x61" * P] * 3), *_fill(2, B, [b"\x61" * P] * 3),
        Op("madvise", (1, B, 3, "MERGEABLE")), *_merge(2, B, 3),
        Op("write", (2, B + P, b"\x62" * P)), Op("full_scans", (1,)), Op("full_scans", (2,)),
    ],  # fmt: skip
}


def live_ops(seed: int, steps: int, *, processes: int = 3) -> list[Op]:
    """A deterministic sequence every side runs deterministically (see the module
    docstring): set-up, then ``steps`` random operations, then a quiet period."""
    rng = random.Random(seed)
    ops: list[Op] = [Op("add_process") for _ in range(processes)]
    ops.append(Op("set_knob", ("smart_scan", rng.random() < 0.3)))
    regions: list[tuple[int, int]] = []
    for pid in range(1, processes + 1):
        npages = rng.randint(2, 6)
        ops.append(Op("mmap", (pid, npages)))
        regions.append((pid, npages))
        if rng.random() < 0.7:
            ops.append(Op("madvise", (pid, B, npages, "MERGEABLE")))
        else:
            ops.append(Op("set_process_merge", (pid, True)))
    ops.append(Op("set_knob", ("run", 1)))
    for _ in range(steps):
        pid, npages = rng.choice(regions)
        addr = B + rng.randrange(npages) * P
        roll = rng.random()
        if roll < 0.38:
            ops.append(Op("write", (pid, addr, rng.choice(CONTENT_POOL))))
        elif roll < 0.46:
            ops.append(Op("write", (pid, addr + rng.randrange(P), bytes([rng.randrange(256)]))))
        elif roll < 0.64:
            ops.append(Op("full_scans", (rng.randint(1, 3),)))
        elif roll < 0.72:
            ops.append(Op("madvise", (pid, addr, 1, rng.choice(["MERGEABLE", "UNMERGEABLE"]))))
        elif roll < 0.76:
            ops.append(Op("set_process_merge", (pid, rng.random() < 0.6)))
        elif roll < 0.80:
            ops.append(Op("set_knob", ("run", rng.choice([0, 1, 1, 2]))))
        elif roll < 0.84:
            ops.append(Op("set_knob", ("max_page_sharing", rng.choice([2, 3, 256, 1]))))
        elif roll < 0.87:
            ops.append(Op("set_knob", (rng.choice(["use_zero_pages", "smart_scan"]), rng.random() < 0.5)))
        elif roll < 0.91:
            readable = rng.random() < 0.7
            ops.append(Op("mprotect", (pid, addr, 1), (("readable", readable), ("writable", readable and rng.random() < 0.7))))
        elif roll < 0.925:
            ops.append(Op("munmap", (pid, addr, 1)))
        elif roll < 0.94:
            # A new mapping (first fit: it may fill a hole munmap left); with
            # process-wide merging on it is registered and brings a dropped process back.
            npages_new = rng.randint(1, 3)
            ops.append(Op("mmap", (pid, npages_new)))
            regions.append((pid, max(npages, _highest(ops, pid))))
        elif roll < 0.95:
            # A store across a page boundary; knob stores the kernel must judge.
            ops.append(Op("write", (pid, B + P - 3, rng.choice(CONTENT_POOL)[:6])))
            name, value = rng.choice([("pages_to_scan", 5), ("sleep_millisecs", 2**32), ("run", 3),
                                      ("max_page_sharing", 1), ("use_zero_pages", 2), ("sleep_millisecs", 70_000)])  # fmt: skip
            ops.append(Op("set_knob", (name, value)))
        elif roll < 0.965:
            ops += [Op("set_knob", ("run", 2)), Op("set_knob", ("run", 1)), Op("full_scans", (1,))]
        else:
            ops += [Op("set_knob", ("run", 1)), Op("full_scans", (3,))]
            if rng.random() < 0.5:
                ops.append(Op("madvise", (pid, addr, 1, "UNMERGEABLE")))
    ops += [Op("set_knob", ("run", 1)), Op("full_scans", (3,))]
    return ops


def _highest(ops: list[Op], pid: int) -> int:
    """Pages from MMAP_BASE up to the end of the highest mapping ``ops`` made in ``pid``
    (first fit: mappings are packed from MMAP_BASE), an upper bound for picking pages."""
    return sum(int(op.args[1]) for op in ops if op.name == "mmap" and op.args[0] == pid)  # type: ignore[call-overload]


__all__ = ["SELFTESTS", "live_ops"]
