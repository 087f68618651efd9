"""The cost of mapping a file: UMFS's splice against an mmap-style page-by-page mapping.

:func:`open_cost` builds one file per size on a fresh machine, then measures the time and
the page-table entry writes of UMFS's ``open`` (the file's table spliced into one PML4
entry, the U-Log's into another) against a baseline that maps the same file page by page
into the same kind of process, as a populated DAX ``mmap`` does. Shared by
``memoracle report`` (its plot) and the benchmarks (their figures).
"""

from __future__ import annotations

import time

from impl.mmu_emu import AddressSpace, Machine
from impl.scm_emu import ScmEmu
from impl.umfs import Umfs
from spec.paging import PAGE_SIZE, US
from spec.persistency import PersistMode
from spec.umfs_api import O_CREAT, O_RDONLY, O_RDWR

KIB, MIB = 1024, 1024 * 1024
OPEN_SIZES = (4 * KIB, 64 * KIB, MIB, 16 * MIB, 256 * MIB)
OPEN_SIZES_QUICK = (4 * KIB, MIB, 16 * MIB)


def size_label(size: int) -> str:
    return f"{size // MIB}m" if size >= MIB else f"{size // KIB}k"


def open_cost(sizes: tuple[int, ...], repeat: int) -> list[dict[str, float]]:
    """Per size: UMFS open time and PTE writes, baseline time and PTE writes."""
    largest = max(sizes)
    scm = ScmEmu(largest + 64 * MIB, PersistMode.EADR)
    machine = Machine(dram_size=256 * MIB, scm=scm)
    fs = Umfs.mkfs(machine)
    builder = fs.spawn()
    rows = []
    for size in sizes:
        path = f"/file{size_label(size)}"
        fd = fs.open(builder, path, O_CREAT | O_RDWR)
        step = 16 * MIB
        for length in range(min(step, size), size + 1, step):
            fs.ftruncate(builder, fd, length)
        fs.ftruncate(builder, fd, size)
        fs.close(builder, fd)
        pid = fs.spawn()
        space = fs.processes[pid].space
        umfs_times, umfs_writes = [], 0
        for _ in range(repeat):
            before = space.counters.pte_writes
            started = time.perf_counter()
            fd = fs.open(pid, path, O_RDONLY)
            umfs_times.append(time.perf_counter() - started)
            umfs_writes = max(umfs_writes, space.counters.pte_writes - before)
            fs.close(pid, fd)
        fs.exit(pid)
        file_table = fs.file_table(path)
        base_times, base_writes = [], 0
        for _ in range(max(1, repeat // 4) if size >= 16 * MIB else repeat):
            baseline = AddressSpace(machine, "mmap-baseline")
            vma = baseline.reserve(max(size, PAGE_SIZE), 1 << 21)
            before = baseline.counters.pte_writes
            started = time.perf_counter()
            _, pages = fs.tables.walk(file_table)
            for index, page in pages:
                baseline.map(vma.start + index * PAGE_SIZE, page, US)
            base_times.append(time.perf_counter() - started)
            base_writes = baseline.counters.pte_writes - before
            baseline.destroy()
        rows.append(
            {
                "size": size,
                "umfs_seconds": min(umfs_times),
                "umfs_pte_writes": umfs_writes,
                "baseline_seconds": min(base_times),
                "baseline_pte_writes": base_writes,
            }
        )
    return rows
