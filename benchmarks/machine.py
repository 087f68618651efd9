"""The emulated machine's figures.

- ``machine.read_64k_ratio``: speed of reading 64 KiB through virtual addresses with a
  warm TLB, as a fraction of a raw ``bytes`` copy of 64 KiB (1.0 = as fast as raw).
- ``machine.scm_store_4k_ratio``: speed of a tracked 4 KiB SCM store, a ``clwb`` of each
  of its 64 lines and an ``sfence``, as a fraction of a raw 4 KiB copy.
- ``machine.crash_images_per_second``: distinct crash images enumerated per second when
  8 lines each hold two unflushed 8-byte stores (3^8 = 6561 images).
"""

from __future__ import annotations

from benchmarks.common import Figure, best_seconds
from impl.mmu_emu import AddressSpace, Machine
from impl.scm_emu import ScmEmu

KIB = 1024


def read_64k(quick: bool) -> list[Figure]:
    """Emulated 64 KiB read (TLB warm) against a raw copy of 64 KiB."""
    machine = Machine(dram_size=4 * 1024 * KIB)
    space = AddressSpace(machine, "bench")
    vma = space.map_anonymous(64 * KIB)
    space.store(vma.start, bytes(range(256)) * 256)
    space.load(vma.start, 64 * KIB)  # warm the TLB
    raw = bytearray(64 * KIB)
    number, repeat = (200, 3) if quick else (2000, 7)
    raw_s = best_seconds(lambda: bytes(raw[0 : 64 * KIB]), number, repeat)
    emu_s = best_seconds(lambda: space.load(vma.start, 64 * KIB), number, repeat)
    assert space.load(vma.start, 64 * KIB) == bytes(range(256)) * 256
    return [
        {"name": "machine.read_64k_us", "value": emu_s * 1e6, "unit": "us", "baseline": raw_s * 1e6, "ratio": emu_s / raw_s},
        {"name": "machine.read_64k_ratio", "value": raw_s / emu_s, "unit": "x raw speed"},
    ]


def scm_store_4k(quick: bool) -> list[Figure]:
    """A tracked 4 KiB SCM store + clwb of its lines + sfence, against a raw 4 KiB copy."""
    scm = ScmEmu(64 * KIB)
    data = bytes(range(256)) * 16
    raw = bytearray(64 * KIB)

    def tracked() -> None:
        scm.store(4 * KIB, data)
        for line in range(4 * KIB, 8 * KIB, 64):
            scm.clwb(line)
        scm.sfence()

    def copy() -> None:
        raw[4 * KIB : 8 * KIB] = data

    number, repeat = (100, 3) if quick else (1000, 5)
    raw_s = best_seconds(copy, number * 10, repeat)
    emu_s = best_seconds(tracked, number, repeat)
    return [
        {"name": "machine.scm_store_4k_us", "value": emu_s * 1e6, "unit": "us", "baseline": raw_s * 1e6, "ratio": emu_s / raw_s},
        {"name": "machine.scm_store_4k_ratio", "value": raw_s / emu_s, "unit": "x raw speed"},
    ]


def crash_images(quick: bool) -> list[Figure]:
    """Images per second for a pending set of 8 lines (two unflushed stores each)."""
    scm = ScmEmu(64 * KIB)
    for line in range(8):
        scm.store(line * 64, bytes([line + 1]) * 8)
        scm.store(line * 64 + 8, bytes([line + 101]) * 8)
    count = scm.count_images()
    assert len(scm.crash_images(limit=count)) == count == 3**8
    seconds = best_seconds(lambda: scm.crash_images(limit=count), 1, 2 if quick else 5)
    return [
        {"name": "machine.crash_images_per_second", "value": count / seconds, "unit": "images/s"},
    ]


def machine_figures(quick: bool) -> list[Figure]:
    """Every figure of the emulated machine."""
    return [*read_64k(quick), *scm_store_4k(quick), *crash_images(quick)]
