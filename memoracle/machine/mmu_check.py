"""A seeded self-check of the emulated MMU against ``spec.paging.walk``.

Random maps, unmaps, protections, splices (raw entry writes with invalidation),
loads and stores on a small address space; after every step the MMU's invariants hold
and the translation of every touched page equals the spec's walk over the same memory,
and loaded bytes equal a dictionary model of the pages' contents.
"""

from __future__ import annotations

import random

from impl.mmu_emu import AddressSpace, Machine, PageFault
from spec.paging import PAGE_SIZE, PT, RW, US, P, Translation, make_entry, walk


def mmu_campaign(seed: int, steps: int) -> str | None:
    """Run ``steps`` random steps; ``None`` if all held, else a report."""
    rng = random.Random(seed)
    machine = Machine(dram_size=2 << 20, scm_size=1 << 20)
    space = AddressSpace(machine, "check")
    vma = space.reserve(16 * PAGE_SIZE)
    pages = [vma.start + i * PAGE_SIZE for i in range(16)]
    frames = [machine.alloc_frame() for _ in range(8)] + [
        machine.scm_base + i * PAGE_SIZE for i in range(8)
    ]
    contents: dict[int, bytes] = {frame: bytes(PAGE_SIZE) for frame in frames}
    mapped: dict[int, tuple[int, bool]] = {}
    for step in range(steps):
        va = rng.choice(pages)
        action = rng.choice(["map", "map", "unmap", "protect", "raw", "load", "store", "store"])
        where = f"seed {seed}, step {step}: {action} at {va:#x}"
        try:
            if action == "map":
                frame = rng.choice(frames)
                writable = rng.random() < 0.7
                if va in mapped:
                    space.unmap(va)
                space.map(va, frame, (RW if writable else 0) | US)
                mapped[va] = (frame, writable)
            elif action == "unmap" and va in mapped:
                space.unmap(va)
                del mapped[va]
            elif action == "protect" and va in mapped:
                writable = rng.random() < 0.5
                space.protect(va, writable)
                mapped[va] = (mapped[va][0], writable)
            elif action == "raw" and va in mapped:
                frame = rng.choice(frames)
                space.write_entry(va, PT, make_entry(frame, P | RW | US))
                space.invlpg(va)
                mapped[va] = (frame, True)
            elif action == "load" and va in mapped:
                if space.load(va, PAGE_SIZE) != contents[mapped[va][0]]:
                    return f"{where}: loaded bytes differ from the frame's"
            elif action == "store" and va in mapped:
                frame, writable = mapped[va]
                offset = rng.randrange(PAGE_SIZE - 16)
                data = rng.randbytes(16)
                try:
                    space.store(va + offset, data)
                except PageFault as fault:
                    if writable:
                        return f"{where}: write to a writable page faulted: {fault}"
                else:
                    if not writable:
                        return f"{where}: write to a read-only page succeeded"
                    old = contents[frame]
                    contents[frame] = old[:offset] + data + old[offset + 16 :]
            space.check_invariants()
            machine.check_invariants()
            for page, (frame, writable) in mapped.items():
                spec = walk(machine.read_u64, space.cr3, page, write=False, user=True)
                if not isinstance(spec, Translation) or spec.paddr != frame:
                    return f"{where}: spec walk of {page:#x} gives {spec}, expected frame {frame:#x}"
                if spec.writable != writable:
                    return f"{where}: spec walk of {page:#x} has writable={spec.writable}"
                if space.translate(page) != frame:
                    return f"{where}: MMU translates {page:#x} differently from the spec"
        except AssertionError as error:
            return f"{where}: invariant violated: {error}"
    return None
