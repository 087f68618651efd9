"""Lazy crash images against brute-force enumeration, at the level of the SCM alone.

A random program runs on an emulated SCM and crashes; a random "recovery" program (reads,
stores that depend on what was read, flushes, fences) then runs on the crash image. The
lazy image's depth-first search must partition the allowed images into classes whose
members all make recovery read the same bytes (so do the same thing), each class counted
exactly; and the images of a second crash inside recovery, per class, must be exactly
the union of what enumeration gives for every image of the class.
"""

from __future__ import annotations

import hashlib
from itertools import product
from typing import Sequence

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from impl.scm_emu import ImageComponent, ScmEmu
from impl.scm_lazy import LazyImage, ReplayChooser

SIZE = 192  # three lines

Step = tuple[str, int, int]


def first_program(scm: ScmEmu, steps: Sequence[Step]) -> None:
    for kind, offset, length in steps:
        if kind == "store":
            scm.store(offset, bytes((offset + i * 7 + length) % 251 + 1 for i in range(length)))
        elif kind == "clwb":
            scm.clwb(offset)
        else:
            scm.sfence()


def recovery(scm: ScmEmu, steps: Sequence[Step], crash_at: int | None = None) -> str:
    """A deterministic recovery whose stores depend on what it read; returns a digest of
    every byte it read (its observable behaviour). Stops before step ``crash_at``."""
    seen = hashlib.blake2b(digest_size=8)
    for index, (kind, offset, length) in enumerate(steps):
        if index == crash_at:
            break
        if kind == "read":
            seen.update(scm.read(offset, length))
        elif kind == "store":
            salt = seen.digest()
            scm.store(offset, bytes((salt[i % 8] + i) % 256 for i in range(length)))
        elif kind == "clwb":
            scm.clwb(offset)
        else:
            scm.sfence()
    return seen.hexdigest()


def expand(base: bytes, components: Sequence[ImageComponent]) -> set[bytes]:
    """Every image the components allow over ``base``."""
    out = set()
    for choice in product(*(range(len(c.options)) for c in components)):
        image = bytearray(base)
        for comp, option in zip(components, choice):
            for position, unit in enumerate(comp.units):
                image[unit : unit + 8] = comp.options[option][position * 8 : position * 8 + 8]
        out.add(bytes(image))
    return out


def matches(image: bytes, reads: dict[int, bytes]) -> bool:
    return all(image[unit : unit + 8] == value for unit, value in reads.items())


def _steps(kinds: Sequence[str], most: int = 10, widest: int = 20) -> st.SearchStrategy[list[Step]]:
    def step(kind: str) -> st.SearchStrategy[Step]:
        if kind in ("store", "read"):
            return st.integers(0, SIZE - 1).flatmap(
                lambda at: st.integers(1, min(widest if kind == "store" else 20, SIZE - at)).map(lambda n: (kind, at, n))
            )
        if kind == "clwb":
            return st.integers(0, SIZE - 1).map(lambda at: ("clwb", at, 1))
        return st.just(("sfence", 0, 0))

    return st.lists(st.sampled_from(kinds).flatmap(step), max_size=most)


FIRST = _steps(["store", "store", "store", "clwb", "sfence"])
SECOND = _steps(["read", "read", "store", "clwb", "sfence"])
#: Smaller programs for the second crash, whose enumeration is a product of two.
FIRST_SMALL = _steps(["store", "store", "clwb", "sfence"], 6, 12)
SECOND_SMALL = _steps(["read", "read", "store", "store", "clwb", "sfence"], 7, 12)


def crashed(first: Sequence[Step]) -> ScmEmu:
    scm = ScmEmu(SIZE)
    scm.store(0, bytes(range(1, SIZE + 1)))  # a durable, non-zero starting image
    for line in (0, 64, 128):
        scm.clflush(line)
    first_program(scm, first)
    return scm


def lazy_leaves(scm: ScmEmu, second: Sequence[Step], crash_at: int | None) -> list[dict[str, object]]:
    """Every leaf of the search: its reads, weight, behaviour, and (with ``crash_at``)
    the reads and the images of a second crash before that step."""
    components = scm.image_components()
    base = scm.durable()
    leaves = []
    script: list[int] | None = []
    while script is not None:
        chooser = ReplayChooser(script)
        lazy = LazyImage(LazyImage.plan(base, components), chooser)
        machine = ScmEmu(SIZE, image=lazy.blob)
        lazy.attach(machine)
        leaf: dict[str, object] = {}
        if crash_at is not None:
            recovery(machine, second, crash_at)
            crash = lazy.second_crash(machine)
            leaf["crash_reads"] = dict(lazy.reads)
            leaf["crash_images"] = expand(crash.base(), crash.components)
            leaf["crash_digest"] = crash.digest
            machine.reboot(lazy.blob)  # the whole run again, same script
            lazy = LazyImage(LazyImage.plan(base, components), ReplayChooser(script))
            chooser = lazy.chooser  # type: ignore[assignment]
            lazy.attach(machine)
        leaf["behaviour"] = recovery(machine, second)
        leaf["reads"] = dict(lazy.reads)
        leaf["weight"] = lazy.weight()
        leaf["allowed"] = lazy.allowed
        lazy.detach()
        leaves.append(leaf)
        script = chooser.next_script()
    return leaves


@settings(max_examples=max(200, settings.default.max_examples))  # type: ignore[union-attr]
@given(FIRST, SECOND)
def test_classes_partition_the_allowed_images(first: list[Step], second: list[Step]) -> None:
    scm = crashed(first)
    images = scm.crash_images(limit=1 << 30)
    leaves = lazy_leaves(scm, second, None)
    assert all(leaf["allowed"] == len(images) == scm.count_images() for leaf in leaves)
    assert sum(leaf["weight"] for leaf in leaves) == len(images)  # type: ignore[misc]
    members = [0] * len(leaves)
    for image in images:
        blob = scm.image_bytes(image)
        home = [i for i, leaf in enumerate(leaves) if matches(blob, leaf["reads"])]  # type: ignore[arg-type]
        assert len(home) == 1, f"image in {len(home)} classes"
        members[home[0]] += 1
        plain = ScmEmu(SIZE, image=blob)
        assert recovery(plain, second) == leaves[home[0]]["behaviour"], "a class member behaves differently"
    assert members == [leaf["weight"] for leaf in leaves]


@settings(max_examples=max(100, settings.default.max_examples))  # type: ignore[union-attr]
@given(FIRST_SMALL, SECOND_SMALL, st.integers(0, 7))
def test_second_crash_images_are_the_union_over_the_class(first: list[Step], second: list[Step], crash_at: int) -> None:
    crash_at = min(crash_at, len(second))
    scm = crashed(first)
    assume(scm.count_images() <= 48)
    leaves = lazy_leaves(scm, second, crash_at)
    expected: dict[int, set[bytes]] = {}
    for image in scm.crash_images(limit=1 << 30):
        blob = scm.image_bytes(image)
        plain = ScmEmu(SIZE, image=blob)
        recovery(plain, second, crash_at)
        again = {plain.image_bytes(i) for i in plain.crash_images(limit=1 << 30)}
        home = [i for i, leaf in enumerate(leaves) if matches(blob, leaf["crash_reads"])]  # type: ignore[arg-type]
        assert home
        for i in home:  # leaves that share the prefix up to the crash share its class
            expected.setdefault(i, set()).update(again)
    by_digest: dict[object, object] = {}
    for i, leaf in enumerate(leaves):
        assert leaf["crash_images"] == expected[i]
        # the digest names the crash state: equal digests, equal images
        assert by_digest.setdefault(leaf["crash_digest"], leaf["crash_images"]) == leaf["crash_images"]


def test_a_read_of_a_later_store_forces_the_earlier_ones() -> None:
    scm = ScmEmu(128)
    scm.store(0, b"\x01" * 8)
    scm.store(8, b"\x02" * 8)  # same line: persists only after the first
    scm.store(64, b"\x03" * 8)  # another line: independent
    chooser = ReplayChooser([1])  # the second distinct value of unit 8: the store persisted
    lazy = LazyImage(LazyImage.plan(scm.durable(), scm.image_components()), chooser)
    machine = ScmEmu(128, image=lazy.blob)
    lazy.attach(machine)
    assert machine.read(8, 8) == b"\x02" * 8
    assert machine.read(0, 8) == b"\x01" * 8  # decided by the choice above: no branch
    assert len(chooser.trail) == 1 and lazy.weight() == 2  # line 64 still open: 2 images
    assert machine.read(64, 8) in (bytes(8), b"\x03" * 8) and len(chooser.trail) == 2
    assert lazy.allowed == 3 * 2 == scm.count_images()


def test_an_overwritten_unit_is_never_branched_on() -> None:
    scm = ScmEmu(64)
    scm.store(0, b"\x01" * 16)
    lazy = LazyImage(LazyImage.plan(scm.durable(), scm.image_components()), ReplayChooser())
    machine = ScmEmu(64, image=lazy.blob)
    lazy.attach(machine)
    machine.store(0, b"\x09" * 8)
    assert machine.read(0, 8) == b"\x09" * 8 and lazy.weight() == 3 and not lazy.reads
    machine.store(12, b"\x07" * 2)  # partial: the rest of unit 8 is read, so it branches
    assert list(lazy.reads) == [8] and lazy.weight() < 3


def _hears_reads(scm: ScmEmu) -> bool:
    return scm.read_watch is not None


def test_a_lazy_image_with_nothing_undecided_quiets_reads_but_hears_stores() -> None:
    scm = ScmEmu(128)
    scm.store(0, b"\x01" * 8)
    scm.store(64, b"\x03" * 8)  # another line: a unit of its own component
    lazy = LazyImage(LazyImage.plan(scm.durable(), scm.image_components()), ReplayChooser())
    machine = ScmEmu(128, image=lazy.blob)
    lazy.attach(machine)
    assert _hears_reads(machine)
    machine.read(0, 8)
    assert _hears_reads(machine)  # unit 64 still undecided
    machine.read(64, 8)
    assert not _hears_reads(machine) and lazy.watching() == 0
    machine.store(64, b"\x05" * 8)  # stores still reach the watch (a second crash needs them)
    crash = lazy.second_crash(machine)
    assert any(64 in c.units for c in crash.components)
    machine.watch = lazy  # setting the watch again listens to reads again
    assert _hears_reads(machine)


def test_components_without_labels_are_the_same_components() -> None:
    scm = ScmEmu(192)
    for offset in (0, 8, 16, 64, 136):
        scm.store(offset, bytes([offset + 1]) * 8)
    scm.clwb(64)
    labelled, plain = scm.image_components(), scm.image_components(labels=False)
    assert [(c.units, c.options) for c in labelled] == [(c.units, c.options) for c in plain]
    assert all(not text for c in plain for text in c.labels)
    assert any(text for c in labelled for text in c.labels)
