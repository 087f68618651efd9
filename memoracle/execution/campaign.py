"""What the execution layer runs: a :class:`Campaign` cut into named, deterministic shards.

A campaign is a function of ``(config, shard, shards)`` that returns a **plain value**
(JSON: dicts, lists, strings, numbers, booleans, None), the same wherever and however
often it runs; the layer runs the shards somewhere (:mod:`memoracle.execution.backends`)
and hands back their results **in shard order**, so the caller's merge never depends on
the back-end, the number of workers or the order results arrive in.

- :class:`Campaign`: name, config, the identity that decides its results, seed, shard
  count, the shard function, how to count one result's violations (for progress), and
  the command line that reruns one shard in one process (for a shard that crashed).
- :meth:`Campaign.key`: the shard's task name, ``ksm-campaign-1c9e4f2a-seed0-shard3of40``
  (campaign, digest of its identity and code, seed, shard): the same shard of the same
  campaign has the same name, so Dask runs a resubmitted one once and a retry is
  harmless.
- :func:`run_task`: what a worker runs — it checks that it runs the same code as the
  driver (:func:`~memoracle.execution.version.code_version`), times the shard, and turns
  an exception into a reported error instead of a lost worker.
- :func:`shard_count` and :func:`strided`: unit ``k`` of a campaign belongs to shard
  ``k mod N`` (long and short units spread evenly).
"""

from __future__ import annotations

import hashlib
import json
import ctypes
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

from memoracle.execution.version import code_version

#: A plain value: what JSON can hold (dicts with string keys, lists, str, int, float,
#: bool, None). Shard results are plain so that they cross processes, machines and the
#: journal unchanged.
Plain = Any

#: A shard function: ``run_shard(config, shard, shards) -> plain result``. It must be a
#: module-level function (workers import it by name) and deterministic in its arguments.
ShardFunction = Callable[[Any, int, int], Plain]

#: The most shards a campaign is cut into (more only adds scheduling overhead).
MAX_SHARDS = 1024


def shard_count(units: int, per_shard: int = 1, most: int = MAX_SHARDS) -> int:
    """How many shards for ``units`` units of work of which a shard should hold at least
    ``per_shard``: ``ceil(units / per_shard)``, at least 1 and at most ``most``. It depends
    on the work only, never on the workers, so a journal can be resumed anywhere."""
    return max(1, min(most, -(-units // per_shard)))


def strided(units: int, shard: int, shards: int) -> range:
    """The units of ``shard`` (of ``shards``): ``shard, shard + shards, ...`` below ``units``."""
    return range(shard, units, shards)


def block(units: int, shard: int, shards: int) -> range:
    """The units of ``shard`` (of ``shards``) as one contiguous block (for campaigns that
    stop at their first violation: the early blocks hold the early units)."""
    return range(units * shard // shards, units * (shard + 1) // shards)


def canonical(value: Plain) -> Plain:
    """``value`` as JSON gives it back (tuples become lists); TypeError if not plain.

    Results pass through here on the worker, so a live result and one read back from a
    journal are equal values."""
    return json.loads(json.dumps(value, allow_nan=False))


def _digest(value: Plain) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Campaign:
    """A seeded campaign cut into ``shards`` deterministic shards (see the module docstring).

    ``identity`` holds everything that decides the results (it is written at the head of
    a journal and digested into every task's name); ``config`` is what the shard function
    receives (any picklable value, often a frozen dataclass). ``violations(result)`` counts
    the violations in one shard's result; ``reproduce(shard, shards)`` is the command line
    that reruns that shard in one process.

    A campaign that wants only its **first** violation (in unit order) gives
    ``first_violation(result)``, the unit of a shard's first violation or None, and
    ``first_unit(shard, shards)``, the lowest unit of a shard: once a violation at unit
    ``v`` is known, shards that start at or after ``v`` are skipped. Every shard that
    starts before ``v`` still runs, so the first violation is the same on every
    back-end."""

    name: str
    config: Any
    identity: dict[str, Plain]
    seed: int
    shards: int
    run_shard: ShardFunction
    violations: Callable[[Plain], int]
    reproduce: Callable[[int, int], str]
    first_violation: Callable[[Plain], int | None] | None = None
    first_unit: Callable[[int, int], int] | None = None

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"a campaign needs at least one shard, not {self.shards}")
        canonical(self.identity)  # must be plain: it goes into the journal

    @property
    def slug(self) -> str:
        """The name as it appears in task keys: ``ksm campaign`` → ``ksm-campaign``."""
        return "-".join(self.name.split())

    @cached_property
    def digest(self) -> str:
        """8 hex digits naming the identity, the shard count and the code."""
        return _digest({"identity": self.identity, "shards": self.shards, "code": code_version()})[:8]

    def key(self, shard: int) -> str:
        """The task name of ``shard``, e.g. ``ksm-campaign-1c9e4f2a-seed0-shard3of40``."""
        return f"{self.slug}-{self.digest}-seed{self.seed}-shard{shard}of{self.shards}"

    def task(self, shard: int) -> ShardTask:
        """What a worker needs to run ``shard``."""
        return ShardTask(self.run_shard, self.config, shard, self.shards, code_version())


@dataclass(frozen=True)
class ShardTask:
    """One shard as sent to a worker (picklable: a module-level function and values)."""

    run_shard: ShardFunction
    config: Any
    shard: int
    shards: int
    code: str


#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_malloc_checked = False


def restore_malloc_thresholds() -> None:
    """Undo what Dask's nannies do to glibc's malloc in their workers, once per process.

    A nanny sets ``MALLOC_TRIM_THRESHOLD_`` before it spawns a worker, and setting any
    malloc tunable turns off glibc's dynamic mmap threshold: every emulated memory a shard
    allocates (hundreds of KiB, thousands of times) then becomes an mmap, zero-filled page
    faults and a munmap, and a crash campaign spent half of its workers' CPU in the kernel.
    Fixed thresholds as high as the dynamic ones reach (32 MiB to map, 64 MiB to trim) give
    the same CPU as one process. Elsewhere (no such variable, not glibc) nothing is done."""
    global _malloc_checked
    if _malloc_checked:
        return
    _malloc_checked = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its thresholds are not ours to set
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def run_task(task: ShardTask) -> dict[str, Plain]:
    """Run one shard and wrap what happened in an envelope (a plain dict):

    - ``{"result": R, "seconds": s, "cpu_seconds": c, "where": "host pid 123"}``: the
      shard's plain result, its wall and CPU time, and the process that ran it;
    - ``{"error": "KeyError: 'x'", "traceback": "...", "seconds": s}``: the shard raised
      (a crash of the checker on this input: reported, reproducible, never retried);
    - ``{"mismatch": "0.1.0+ab12...", "where": "host pid 123"}``: this process runs other
      code than the driver; nothing was run.
    """
    restore_malloc_thresholds()
    where = f"{socket.gethostname()} pid {os.getpid()}"
    mine = code_version()
    if mine != task.code:
        return {"mismatch": mine, "where": where}
    started, cpu = time.perf_counter(), time.process_time()
    try:
        result = canonical(task.run_shard(task.config, task.shard, task.shards))
    except Exception as error:  # noqa: BLE001 - a checker that raised is reported, not lost
        detail = f"{type(error).__name__}: {error}"
        return {"error": detail, "traceback": traceback.format_exc(), "seconds": time.perf_counter() - started}
    timing = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu, "where": where}
    return {"result": result, **timing}


__all__ = [
    "MAX_SHARDS",
    "Campaign",
    "Plain",
    "ShardFunction",
    "ShardTask",
    "block",
    "canonical",
    "run_task",
    "shard_count",
    "strided",
]
