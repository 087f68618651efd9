"""A seeded self-check of the emulated MMU against ``spec.paging.walk``.

Random maps, unmaps, protections, splices (raw entry writes with invalidation),
loads and stores on a small address space; after every step the MMU's invariants hold
and the translation of every touched page equals the spec's walk over the same memory,
and loaded bytes equal a dictionary model of the pages' contents.

With ``extended`` (drawn from a second generator, so the steps above stay those of
``extended=False``) it also probes accesses the spec says fault — unmapped pages,
supervisor pages touched from user mode, writes to read-only pages, a non-canonical
address, a PML4 entry with the page-size bit (reserved) — and compares the MMU's
``peek`` and ``translate`` (error codes included) with the spec's walk; maps, loads,
stores and unmaps 2 MiB and 1 GiB pages (``unmap_range`` over a 2 MiB one); and touches a
demand-zero anonymous mapping, whose first read is zeros and whose stores stay; and
(from a third generator) accesses across two pages mapped to separate frames — cached
and non-temporal stores, loads compared with the pages' model — with a write-back and a
fence on SCM pages, after which the line must be durable as it is visible.
"""

from __future__ import annotations

import random

from impl.mmu_emu import AddressSpace, Machine, PageFault
from spec.paging import (
    PAGE_SIZE,
    PD,
    PDPT,
    PML4,
    PS,
    PT,
    RW,
    US,
    P,
    Translation,
    WalkFault,
    make_entry,
    walk,
)

_LARGE = {PD: 1 << 21, PDPT: 1 << 30}
#: The SCM frames the main steps map (the first ones of the SCM).
SCM_FRAMES = 8


def _probe(space: AddressSpace, machine: Machine, va: int, write: bool, user: bool) -> str | None:
    """The MMU's view of one access (``peek``, then ``translate`` through the TLB)
    against the spec's walk; a problem, or None."""
    spec = walk(machine.read_u64, space.cr3, va, write=write, user=user)
    peeked = space.peek(va, write=write, user=user)
    if isinstance(spec, WalkFault):
        if not isinstance(peeked, WalkFault) or peeked.error_code != spec.error_code or peeked.level != spec.level:
            return f"peek gives {peeked}, the spec {spec}"
        try:
            got = space.translate(va, write=write, user=user)
        except PageFault as fault:
            if fault.error_code != spec.error_code:
                return f"translate faults with {fault.error_code:#x}, the spec {spec.error_code:#x}"
            return None
        after = walk(machine.read_u64, space.cr3, va, write=write, user=user)
        if isinstance(after, Translation) and after.paddr == got:
            return None  # a fault handler (demand zero) mapped the page: the tables say so now
        return f"translate gives {got:#x}, the spec faults ({spec.reason})"
    if not isinstance(peeked, Translation) or peeked.paddr != spec.paddr or peeked.page_size != spec.page_size:
        return f"peek gives {peeked}, the spec {spec}"
    if space.translate(va, write=write, user=user) != spec.paddr:
        return f"translate differs from the spec's {spec.paddr:#x}"
    return None


def _extended_step(
    rng: random.Random, space: AddressSpace, machine: Machine, pages: list[int], large: dict[str, int],
    anon: dict[int, bytes], anon_start: int,
) -> str | None:  # fmt: skip
    """One step of the extension (see the module doc); a problem, or None."""
    roll = rng.random()
    if roll < 0.35:  # an access the spec may refuse
        va = rng.choice([*pages, pages[-1] + PAGE_SIZE, 1 << 47, large["2m"] + 4096, large["1g"] + 8192])
        va += rng.randrange(PAGE_SIZE)
        return _probe(space, machine, va, rng.random() < 0.5, rng.random() < 0.7)
    if roll < 0.45:  # a supervisor page: the kernel may use it, user mode may not
        va = rng.choice(pages)
        if space.find_leaf(va) is not None:
            machine.free_frame(space.unmap(va))
        space.map(va, machine.alloc_frame(), RW if rng.random() < 0.5 else 0)
        return _probe(space, machine, va, False, True) or _probe(space, machine, va, False, False)
    if roll < 0.6:  # a 2 MiB page: mapped, written, read, unmapped as a range
        va = large["2m"]
        if space.find_leaf(va) is None:
            space.map(va, large["2m frames"], RW | US, page_size=_LARGE[PD])
        offset = rng.randrange(_LARGE[PD] - 16)
        data = rng.randbytes(16)
        space.store(va + offset, data)
        if space.load(va + offset, 16) != data or machine.read(large["2m frames"] + offset, 16) != data:
            return f"2 MiB page at {va:#x}: the bytes stored at +{offset:#x} do not read back"
        problem = _probe(space, machine, va + offset, True, True)
        if rng.random() < 0.3:
            space.unmap_range(va, va + _LARGE[PD])
        return problem
    if roll < 0.7:  # a 1 GiB page onto the SCM (only its first MiB is backed, and used)
        va = large["1g"]
        if space.find_leaf(va) is None:
            space.map(va, machine.scm_base, RW | US, page_size=_LARGE[PDPT])
        # Above the SCM frames the main steps map, whose contents they model.
        offset = rng.randrange(SCM_FRAMES * PAGE_SIZE, (1 << 20) - 16)
        data = rng.randbytes(16)
        space.store(va + offset, data)
        if space.load(va + offset, 16) != data:
            return f"1 GiB page at {va:#x}: the bytes stored at +{offset:#x} do not read back"
        problem = _probe(space, machine, va + offset, False, True)
        if rng.random() < 0.3:
            space.unmap(va)
        return problem
    if roll < 0.85:  # demand zero: a first touch maps a zeroed page
        va = anon_start + rng.randrange(4) * PAGE_SIZE
        offset = rng.randrange(PAGE_SIZE - 8)
        if rng.random() < 0.5:
            data = rng.randbytes(8)
            space.store(va + offset, data)
            old = anon.get(va, bytes(PAGE_SIZE))
            anon[va] = old[:offset] + data + old[offset + 8 :]
        elif space.load(va, PAGE_SIZE) != anon.get(va, bytes(PAGE_SIZE)):
            return f"anonymous page {va:#x} does not read what was stored (zeros if nothing)"
        return None
    # a PML4 entry with the page-size bit, which the spec calls reserved
    free_slot = 200
    va = free_slot << 39
    space.write_entry(va, PML4, make_entry(machine.scm_base, P | RW | US | PS))
    space.invlpg(va)
    problem = _probe(space, machine, va + 4096, False, True)
    space.write_entry(va, PML4, 0)
    space.invlpg(va)
    return problem


def spanning_step(
    rng: random.Random, space: AddressSpace, machine: Machine, va: int,
    mapped: dict[int, tuple[int, bool]], contents: dict[int, bytes],
) -> str | None:  # fmt: skip
    """An access across the boundary of ``va``'s page and the next (each page mapped to
    its own frame, so the bytes go to two places): a cached or non-temporal store when
    both are writable, then a load of the span compared with the pages' model; on a page
    in the SCM, a write-back (``clwb``, ``clflushopt`` or ``clflush``) and a fence, after
    which the line must be durable as it is visible. A problem, or None."""
    following = va + PAGE_SIZE
    if va not in mapped or following not in mapped:
        return None
    (first, first_writable), (second, second_writable) = mapped[va], mapped[following]
    at, length = va + PAGE_SIZE - rng.randrange(1, 32), 32
    split = va + PAGE_SIZE - at
    if first_writable and second_writable:
        data = rng.randbytes(length)
        (space.ntstore if rng.random() < 0.5 else space.store)(at, data)
        offset = PAGE_SIZE - split
        contents[first] = contents[first][:offset] + data[:split]
        contents[second] = data[split:] + contents[second][length - split :]
    expected = contents[first][PAGE_SIZE - split :] + contents[second][: length - split]
    if space.load(at, length) != expected:
        return f"the {length} bytes at {at:#x} read differently from the two pages' contents"
    if machine.is_scm(second):
        flush = rng.choice([space.clwb, space.clflushopt, space.clflush])
        flush(following)
        space.sfence()
        line = second - machine.scm_base
        if machine.scm.durable_range(line, line + 64) != machine.scm.read(line, 64):
            return f"after {flush.__name__} and sfence the line at {following:#x} is not durable as visible"
    return None


def mmu_campaign(seed: int, steps: int, *, extended: bool = True) -> str | None:
    """Run ``steps`` random steps (and, ``extended``, the extension's); ``None`` if all
    held, else a report."""
    rng = random.Random(seed)
    extra = random.Random(f"mmu extensions {seed}") if extended else None
    spans = random.Random(f"mmu spans {seed}") if extended else None
    machine = Machine(dram_size=8 << 20, scm_size=1 << 20)
    space = AddressSpace(machine, "check")
    vma = space.reserve(16 * PAGE_SIZE)
    pages = [vma.start + i * PAGE_SIZE for i in range(16)]
    frames = [machine.alloc_frame() for _ in range(8)] + [
        machine.scm_base + i * PAGE_SIZE for i in range(SCM_FRAMES)
    ]
    contents: dict[int, bytes] = {frame: bytes(PAGE_SIZE) for frame in frames}
    mapped: dict[int, tuple[int, bool]] = {}
    large = {
        "2m": space.reserve(_LARGE[PD], _LARGE[PD], name="2m").start,
        "2m frames": machine.frames.alloc_contiguous(512, 512),
        "1g": space.reserve(_LARGE[PDPT], _LARGE[PDPT], name="1g").start,
    }
    extension = space.reserve(4 * PAGE_SIZE, name="extension")
    extension_pages = [extension.start + i * PAGE_SIZE for i in range(4)]
    anon_start = space.map_anonymous(4 * PAGE_SIZE).start
    anon: dict[int, bytes] = {}
    for step in range(steps):
        if extra is not None and extra.random() < 0.3:
            where = f"seed {seed}, step {step}: extension"
            try:
                problem = _extended_step(extra, space, machine, extension_pages, large, anon, anon_start)
                space.check_invariants()
                machine.check_invariants()
            except AssertionError as error:
                return f"{where}: invariant violated: {error}"
            except PageFault as fault:
                return f"{where}: an access the spec allows faulted: {fault}"
            if problem is not None:
                return f"{where}: {problem}"
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
            if spans is not None and spans.random() < 0.2:
                problem = spanning_step(spans, space, machine, va, mapped, contents)
                if problem is not None:
                    return f"{where}, then a two-page access: {problem}"
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
