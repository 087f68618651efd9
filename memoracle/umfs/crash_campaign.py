"""Crash campaigns over UMFS: bounded-exhaustive (ACE style) and fuzzing, in shards.

Bounded-exhaustive: after a fixed :data:`SETUP` (a 5000-byte file ``/a`` and a directory
``/d``, not crashed), every workload of 1 … N operations drawn from :data:`ALPHABET` —
two files, one directory, offsets and sizes that cross page boundaries, every kind of
operation — and every workload of 0 … N-1 of them inside one of the :data:`CONTEXTS`
(a directory held open, other processes that map the file or do not, spawned in either
order, a process that exits holding the file's last descriptor, a directory moved into
another directory; the context's own operations are crashed too) is explored: by default lazily and exhaustively
(:class:`~memoracle.umfs.lazy_explorer.LazyCrashExplorer`: every crash image the model
allows, in classes recovery cannot tell apart; ``max_classes`` caps the classes per
crash point, and the report then says *sampled*), or with ``method="enumeration"`` image
by image (:class:`~memoracle.umfs.crash_explorer.CrashExplorer`, up to ``image_limit``
images per crash point).

Fuzzing: Hypothesis draws workloads (up to ``max_ops`` operations) from the same
alphabet and shrinks a failing one to the smallest that still fails.

Sharding: workloads are grouped by their first operation, or their context (by their
first two past 16 shards, their first three past 256: :func:`shard_of`), and group ``g``
belongs to shard ``g mod N``, so a shard explores the crash points that workloads with a
common prefix share only once. Every shard is deterministic and its result is plain data
(counts, and the digests of what is deduplicated: crash states and recovered trees), so
``--shard i/N`` on N machines covers the same ground as one process, and merged results
do not depend on N. :func:`run_campaign` runs the shards on the execution layer
(:mod:`memoracle.umfs.crash_shards`, :mod:`memoracle.execution`).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from memoracle.umfs.crash_explorer import CrashExplorer, Variant, Violation
from memoracle.umfs.crash_stats import Stats
from memoracle.umfs.lazy_explorer import LazyCrashExplorer
from spec.crash_recovery import Op
from spec.persistency import PersistMode

SETUP: tuple[Op, ...] = (
    ("creat", "/a"),
    ("write", "/a", 0, 5000, 1),
    ("close", "/a"),
    ("mkdir", "/d"),
)

ALPHABET: tuple[Op, ...] = (
    ("creat", "/b"),
    ("write", "/a", 0, 100, 2),
    ("write", "/a", 4000, 200, 3),  # in place, across the page boundary
    ("write", "/a", 4096, 5000, 4),  # overwrite and append, new pages
    ("write", "/b", 8000, 300, 5),  # a hole, creates /b's pages (fails if /b is absent)
    ("truncate", "/a", 0),
    ("truncate", "/a", 3000),
    ("truncate", "/a", 12000),
    ("unlink", "/a"),
    ("link", "/a", "/d/c"),
    ("rename", "/a", "/b"),
    ("rename", "/a", "/d/a"),
    ("rename", "/d", "/e"),
    ("mkdir", "/e"),
    ("rmdir", "/d"),
    ("close", "/a"),
)


#: Situations the alphabet alone never makes, as ``(prefix, suffix)``: a workload of the
#: alphabet runs between them (see :func:`workloads`). A context counts as one operation
#: towards ``max_ops``, so that ``--ops 2`` stays within a minute.
CONTEXTS: tuple[tuple[tuple[Op, ...], tuple[Op, ...]], ...] = (
    # /d open while the workload runs (entries made in it, /d renamed or removed while
    # open): its attributes live in its U-Log's cache, written back by the last close
    ((("opendir", "/d"),), (("close", "/d"),)),
    # three processes: one maps /a, one has nothing open; spawned in either order, so
    # a truncate's shootdown meets the one without /a before or after the one with it
    ((("spawn", "p2"), ("map", "p2", "/a"), ("spawn", "p3")), (("exit", "p2"), ("exit", "p3"))),
    ((("spawn", "p2"), ("spawn", "p3"), ("map", "p3", "/a")), (("exit", "p3"), ("exit", "p2"))),
    # another process holds /a open (unmapped) and exits last: its exit writes the
    # attributes the workload changed back
    ((("spawn", "p2"), ("open", "p2", "/a")), (("close", "/a"), ("exit", "p2"))),
    # a directory moved into another directory (its parent pointer and both parents'
    # link counts change), then the workload runs on the moved tree
    ((("mkdir", "/e"), ("rename", "/d", "/e/d")), ()),
)


def workloads(max_ops: int) -> list[tuple[Op, ...]]:
    """Every workload of 1 … ``max_ops`` operations of :data:`ALPHABET`, then every
    context of :data:`CONTEXTS` around every workload of 0 … ``max_ops - 1``, in a
    stable order."""
    out: list[tuple[Op, ...]] = []
    for length in range(1, max_ops + 1):
        out.extend(itertools.product(ALPHABET, repeat=length))
    for prefix, suffix in CONTEXTS:
        for length in range(max_ops):
            out.extend(prefix + middle + suffix for middle in itertools.product(ALPHABET, repeat=length))
    return out


def workload_count(max_ops: int) -> int:
    """``len(workloads(max_ops))``, without listing them."""
    powers: list[int] = [len(ALPHABET) ** length for length in range(max_ops + 1)]
    return sum(powers[1:]) + len(CONTEXTS) * sum(powers[:-1])


def _context(ops: Sequence[Op]) -> tuple[int, tuple[Op, ...]] | None:
    """The context a workload runs in and the alphabet's operations inside it, or None."""
    for index, (prefix, suffix) in enumerate(CONTEXTS):
        inner = len(ops) - len(prefix) - len(suffix)
        if inner >= 0 and tuple(ops[: len(prefix)]) == prefix and tuple(ops[len(ops) - len(suffix) :]) == suffix:
            middle = tuple(ops[len(prefix) : len(prefix) + inner])
            if all(op in ALPHABET for op in middle):
                return index, middle
    return None


def prefix_depth(shards: int) -> int:
    """How many leading operations name a workload's group for ``shards`` shards: the
    fewest whose groups are at least as many as the shards (1 up to 16 shards, 2 up to
    256, 3 up to 4,096)."""
    depth, groups = 1, len(ALPHABET)
    while groups < shards:
        depth, groups = depth + 1, groups * len(ALPHABET)
    return depth


def shard_of(ops: Sequence[Op], shards: int) -> int:
    """The shard of a workload: its group modulo ``shards``. The group is its first
    :func:`prefix_depth` operations read as a number in base ``len(ALPHABET)``; a shorter
    workload is padded with the first operation of the alphabet, so it lands with the
    longer workloads it is a prefix of. A workload in a context counts its context as its
    first operation (numbered after the alphabet's), then the operations inside it."""
    context = _context(ops)
    if context is None:
        first, rest = ALPHABET.index(ops[0]), tuple(ops[1:])
    else:
        first, rest = len(ALPHABET) + context[0], context[1]
    group = first
    for position in range(prefix_depth(shards) - 1):
        group = group * len(ALPHABET) + (ALPHABET.index(rest[position]) if position < len(rest) else 0)
    return group % shards


def shard_workloads(max_ops: int, shard: int, shards: int) -> list[tuple[Op, ...]]:
    """The workloads of shard ``shard`` of ``shards``, in the order they are explored."""
    return [ops for ops in workloads(max_ops) if shard_of(ops, shards) == shard]


class Explorer(Protocol):
    """What a campaign needs of an explorer (lazy or enumerating)."""

    stats: Stats
    violations: list[Violation]

    def explore(self, setup: Sequence[Op], ops: Sequence[Op]) -> list[Violation]:
        """Explore one workload; its violations."""


@dataclass(frozen=True)
class CampaignConfig:
    """What to explore and how (picklable, so shards can run in other processes)."""

    max_ops: int = 2
    mode: PersistMode = PersistMode.ADR
    #: ``"lazy"`` (classes of images, exhaustive unless ``max_classes``) or
    #: ``"enumeration"`` (image by image, ``image_limit`` per crash point).
    method: str = "lazy"
    max_classes: int | None = None
    image_limit: int = 32
    every_store: bool = False
    recovery_crashes: bool = True
    seed: int = 0
    mutant: str | None = None
    skip_flush: tuple[str, ...] = ()
    skip_fence: tuple[str, ...] = ()

    def variant(self) -> Variant:
        """The UMFS (or mutant) the campaign runs on."""
        if self.mutant is not None:
            from memoracle.umfs.crash_mutants import UMFS_MUTANTS

            return UMFS_MUTANTS[self.mutant].variant
        if self.skip_flush or self.skip_fence:
            flushes, fences = frozenset(self.skip_flush), frozenset(self.skip_fence)

            def configure(fs: object) -> None:
                fs.pm.skip_flush.update(flushes)  # type: ignore[attr-defined]
                fs.pm.skip_fence.update(fences)  # type: ignore[attr-defined]

            dropped = [f"flushes at {s}" for s in sorted(flushes)] + [f"fence at {s}" for s in sorted(fences)]
            return Variant(f"umfs without {', '.join(dropped)}", configure=configure)
        return Variant()

    def explorer(self) -> Explorer:
        """A fresh explorer with this configuration."""
        if self.method == "enumeration":
            return CrashExplorer(
                self.variant(),
                mode=self.mode,
                image_limit=self.image_limit,
                every_store=self.every_store,
                recovery_crashes=self.recovery_crashes,
                seed=self.seed,
            )
        return LazyCrashExplorer(
            self.variant(),
            mode=self.mode,
            every_store=self.every_store,
            recovery_crashes=self.recovery_crashes,
            max_classes=self.max_classes,
        )


@dataclass
class ShardResult:
    """One shard's counts and reports (plain data, to cross process boundaries)."""

    shard: int
    stats: Stats
    violations: list[dict[str, object]] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)


def run_campaign(config: CampaignConfig, jobs: int = 1, shard: tuple[int, int] | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[Stats, list[ShardResult]]:  # fmt: skip
    """Run every shard (the campaign's own shard count,
    :func:`~memoracle.umfs.crash_shards.default_shards`), or just ``shard = (i, n)``, on
    the execution layer: in this process (``jobs`` 1) or on ``jobs`` local worker
    processes; merge the stats (counts added, digest sets united: the same for any
    ``jobs``). ``progress(n)`` is called in this process with each shard's workloads as it
    finishes. The merged stats' ``seconds`` add up the shards' (explorer time, over every
    core). A shard that raised or crashed its workers raises RuntimeError here (the
    command reports it instead)."""
    from memoracle.execution import execute, parse_where
    from memoracle.umfs.crash_shards import crash_campaign, merge_crash

    campaign = crash_campaign(config, shards=shard[1] if shard is not None else None)
    execution = execute(
        campaign, parse_where(1 if shard is not None else max(1, jobs), None),
        shards=[shard[0]] if shard is not None else None,
        on_shard=(lambda outcome: progress(int(outcome.result["stats"]["workloads"])) if outcome.ok else None)
        if progress is not None else None,
    )  # fmt: skip
    failures = execution.failures()
    if failures:
        raise RuntimeError(failures[0].render())
    stats, _, _ = merge_crash(execution.results())
    results = []
    for outcome in execution.outcomes:
        part, violations, reports = merge_crash([outcome.result])
        results.append(ShardResult(outcome.shard, part, violations, reports))
    return stats, results


def count_workloads(max_ops: int, shard: tuple[int, int] | None = None) -> int:
    """How many workloads a campaign (or one shard of it) explores."""
    if shard is None:
        return workload_count(max_ops)
    return len(shard_workloads(max_ops, shard[0], shard[1]))


def fuzz(
    config: CampaignConfig, examples: int, max_ops: int = 6, progress: Callable[[int], None] | None = None,
    rng: random.Random | None = None, explorer: Explorer | None = None,
) -> tuple[Stats, tuple[Op, ...] | None, str]:  # fmt: skip
    """Hypothesis-generated workloads with crash injection; the smallest failing one.

    Returns the stats, the shrunk workload (or None) and its report; ``progress(1)`` is
    called after each workload explored (shrinking included). Hypothesis draws from
    ``rng`` (default: seeded ``config.seed``). An ``explorer`` of this configuration may be
    passed to reuse its caches (the result does not depend on it).
    """
    from hypothesis import HealthCheck, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import NoSuchExample

    if explorer is None:
        explorer = config.explorer()
    explorer.stats = Stats(method=config.method)

    def fails(ops: Sequence[Op]) -> bool:
        explorer.violations.clear()
        found = bool(explorer.explore(SETUP, tuple(ops)))
        if progress is not None:
            progress(1)
        return found

    try:
        smallest = find(
            st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=max_ops),
            fails,
            settings=settings(
                max_examples=examples,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
            random=rng if rng is not None else random.Random(config.seed),
        )
    except NoSuchExample:
        return explorer.stats, None, ""
    explorer.violations.clear()
    found = explorer.explore(SETUP, tuple(smallest))
    return explorer.stats, tuple(smallest), found[0].render() if found else ""
