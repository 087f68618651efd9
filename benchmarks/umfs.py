"""UMFS's figures: the paper's O(1) mapping claim, and FIO-like throughput.

Open cost. For each file size from 4 KiB to 256 MiB, a file is built once; then the
time and the page-table entry writes of UMFS's ``open`` (splice the file's table into
one PML4 entry, and the U-Log's into another) are measured against an mmap-style
baseline that maps the same file page by page into the same kind of process (every
data page looked up in the file's table and given its own PTE, as a populated DAX
``mmap`` does). The machine's SCM runs in eADR mode here only so that building a
256 MiB file does not track 4 M pending lines; opening touches no SCM data either way.

Throughput. Sequential and random reads and writes of 4 KiB … 1 MiB requests on an
8 MiB file (SCM in the default ADR mode, so every write pays for its U-Log backup,
flushes and fences), printed beside a raw ``bytes`` copy of the same size.

- ``umfs.open_pte_writes_max``: the largest number of entry writes one ``open`` made,
  over all sizes (the paper's claim: constant; UMFS writes 2).
- ``umfs.open_ratio_256m``: baseline time ÷ UMFS time to map a 256 MiB file.
- ``umfs.seq_read_64k_ratio`` / ``umfs.seq_write_64k_ratio``: UMFS speed ÷ raw copy
  speed for 64 KiB sequential requests.
"""

from __future__ import annotations

import random

from benchmarks.common import Figure, best_seconds
from memoracle.umfs.open_cost import KIB, MIB, OPEN_SIZES, OPEN_SIZES_QUICK, open_cost, size_label
from impl.mmu_emu import Machine
from impl.umfs import Umfs
from spec.umfs_api import O_CREAT, O_RDWR

REQUEST_SIZES = (4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB)

def open_figures(quick: bool) -> list[Figure]:
    """The open-cost figures (per size, and the two summary figures)."""
    rows = open_cost(OPEN_SIZES_QUICK if quick else OPEN_SIZES, 5 if quick else 20)
    figures: list[Figure] = []
    for row in rows:
        label = size_label(int(row["size"]))
        figures.append(
            {
                "name": f"umfs.open_us_{label}",
                "value": row["umfs_seconds"] * 1e6,
                "unit": "us",
                "baseline": row["baseline_seconds"] * 1e6,
                "ratio": row["baseline_seconds"] / row["umfs_seconds"],
            }
        )
        figures.append(
            {
                "name": f"umfs.open_pte_writes_{label}",
                "value": row["umfs_pte_writes"],
                "unit": "entries",
                "baseline": row["baseline_pte_writes"],
            }
        )
    figures.append(
        {"name": "umfs.open_pte_writes_max", "value": max(r["umfs_pte_writes"] for r in rows), "unit": "entries"}
    )
    largest = rows[-1]
    figures.append(
        {
            "name": f"umfs.open_ratio_{size_label(int(largest['size']))}",
            "value": largest["baseline_seconds"] / largest["umfs_seconds"],
            "unit": "x faster than page-by-page",
        }
    )
    return figures


def throughput_figures(quick: bool) -> list[Figure]:
    """Sequential and random read/write throughput beside a raw copy of the same size."""
    machine = Machine(dram_size=64 * MIB, scm_size=32 * MIB)
    fs = Umfs.mkfs(machine)
    pid = fs.spawn()
    file_size = 8 * MIB
    fd = fs.open(pid, "/fio", O_CREAT | O_RDWR)
    fs.pwrite(pid, fd, bytes(range(256)) * (file_size // 256), 0)
    raw = bytearray(bytes(range(256)) * (file_size // 256))
    rng = random.Random(1)
    figures: list[Figure] = []
    sizes = (4 * KIB, 64 * KIB, MIB) if quick else REQUEST_SIZES
    for size in sizes:
        count = file_size // size
        seq = [i * size for i in range(count)]
        rand = [rng.randrange(count) * size for _ in range(count)]
        payload = bytes(size)
        number = 1 if quick else 3
        for pattern, offsets in (("seq", seq), ("rand", rand)):
            position = iter(offsets * 1000)

            def umfs_read() -> None:
                fs.pread(pid, fd, size, next(position))

            def raw_read() -> None:
                at = next(position)
                bytes(raw[at : at + size])

            def umfs_write() -> None:
                fs.pwrite(pid, fd, payload, next(position))

            def raw_write() -> None:
                at = next(position)
                raw[at : at + size] = payload

            reps = min(count, 64)
            for kind, umfs_op, raw_op in (("read", umfs_read, raw_read), ("write", umfs_write, raw_write)):
                umfs_s = best_seconds(umfs_op, reps, number)
                raw_s = best_seconds(raw_op, reps, number)
                figures.append(
                    {
                        "name": f"umfs.{pattern}_{kind}_{size_label(size)}_ratio",
                        "value": raw_s / umfs_s,
                        "unit": "x raw speed",
                        "baseline": size / raw_s / MIB,
                        "ratio": raw_s / umfs_s,
                    }
                )
                figures.append(
                    {"name": f"umfs.{pattern}_{kind}_{size_label(size)}_mib_s", "value": size / umfs_s / MIB, "unit": "MiB/s"}
                )
    return figures


def umfs_figures(quick: bool) -> list[Figure]:
    """Every UMFS figure."""
    return [*open_figures(quick), *throughput_figures(quick)]
