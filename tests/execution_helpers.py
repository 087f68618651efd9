"""A toy campaign for the execution layer's tests: fast, deterministic, and able to fail
in every way a shard can (a violation, an exception, a worker that dies once or always)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoracle.execution import Campaign, Plain, shard_count, strided
from memoracle.execution.campaign import block


@dataclass(frozen=True)
class Toy:
    """Units 0..units-1; a unit divisible by ``bad`` is a violation. A shard holding unit
    ``die_once`` kills its own worker process the first time (a marker file in
    ``markers`` remembers), one holding ``die_always`` every time, one holding
    ``raise_on`` raises. ``pause`` seconds per unit keep a run going for a while."""

    units: int = 40
    bad: int = 7
    die_once: int | None = None
    die_always: int | None = None
    raise_on: int | None = None
    markers: str = ""
    pause: float = 0.0
    first_only: bool = False


def run_toy_shard(config: Toy, shard: int, shards: int) -> dict[str, Plain]:
    units = (block if config.first_only else strided)(config.units, shard, shards)
    if config.markers:
        attempts = Path(config.markers) / f"attempt-{shard}-of-{shards}-{os.getpid()}-{time.monotonic_ns()}"
        attempts.write_text("")
    if config.die_once is not None and config.die_once in units:
        marker = Path(config.markers) / "died-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    if config.die_always is not None and config.die_always in units:
        os.kill(os.getpid(), signal.SIGKILL)
    if config.raise_on is not None and config.raise_on in units:
        raise KeyError(f"unit {config.raise_on}")
    found = []
    for unit in units:
        if config.pause:
            time.sleep(config.pause)
        if unit % config.bad == 0:
            found.append(unit)
            if config.first_only:
                break
    return {"units": len(units) if not config.first_only else (found[0] - units.start + 1 if found else len(units)),
            "squares": sum(u * u for u in units), "violations": found}


def toy_campaign(config: Toy, shards: int | None = None) -> Campaign:
    first: Any = None
    start: Any = None
    if config.first_only:
        first = lambda result: result["violations"][0] if result["violations"] else None  # noqa: E731
        start = lambda shard, count: block(config.units, shard, count).start  # noqa: E731
    return Campaign(
        name="toy campaign", config=config,
        identity={"units": config.units, "bad": config.bad, "first_only": config.first_only},
        seed=0, shards=shards if shards is not None else shard_count(config.units),
        run_shard=run_toy_shard, violations=lambda result: len(result["violations"]),
        reproduce=lambda shard, count: f"toy --shard {shard}/{count}",
        first_violation=first, first_unit=start,
    )  # fmt: skip


def merge_toy(results: list[Plain]) -> dict[str, Plain]:
    """Order-independent: the same for any shard count."""
    return {"squares": sum(r["squares"] for r in results),
            "violations": sorted(v for r in results for v in r["violations"])}  # fmt: skip


def crash_shard_that_kills(config: Any, shard: int, shards: int) -> dict[str, Plain]:
    """The crash campaign's shard, except that shard 3 kills its worker process every
    time, and shard 5 the first time (a marker file in ``$MEMORACLE_TEST_MARKERS``
    remembers)."""
    from memoracle.umfs.crash_shards import run_crash_shard

    if shard == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    marker = Path(os.environ["MEMORACLE_TEST_MARKERS"]) / "crash-shard-5-died"
    if shard == 5 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return run_crash_shard(config, shard, shards)
