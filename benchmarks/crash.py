"""Crash-exploration figures.

- ``crash.images_per_second``: crash images checked per second on one core (mounted
  and recovered, or answered from the image cache), over the one-operation campaign.
- ``crash.ops2_seconds`` / ``crash.ops2_images`` / ``crash.ops2_states``: the
  bounded-exhaustive campaign over every workload of up to 2 operations, on 2 worker
  processes: wall time, images checked, distinct recovered trees. (``--quick`` runs the
  1-operation campaign and names its figures ``crash.ops1_*``.)
- ``crash.mutants_caught`` / ``crash.mutants_total``: how many of the UMFS mutants (one
  per bug class) the explorer catches on their witness workloads.
"""

from __future__ import annotations

import time

from benchmarks.common import Figure
from memoracle.umfs.crash_campaign import CampaignConfig, run_campaign


def campaign_figures(quick: bool) -> list[Figure]:
    """Images per second on one core, and the exhaustive campaign on two."""
    one_core, _ = run_campaign(CampaignConfig(max_ops=1), jobs=1)
    figures: list[Figure] = [
        {"name": "crash.images_per_second", "value": one_core.images / one_core.seconds, "unit": "images/s"},
    ]
    ops = 1 if quick else 2
    started = time.perf_counter()
    stats, results = run_campaign(CampaignConfig(max_ops=ops), jobs=2)
    wall = time.perf_counter() - started
    violations = sum(len(r.violations) for r in results)
    figures += [
        {"name": f"crash.ops{ops}_seconds", "value": wall, "unit": "s"},
        {"name": f"crash.ops{ops}_images", "value": stats.images, "unit": "images"},
        {"name": f"crash.ops{ops}_states", "value": len(stats.states), "unit": "states"},
        {"name": f"crash.ops{ops}_workloads", "value": stats.workloads, "unit": "workloads"},
        {"name": f"crash.ops{ops}_violations", "value": violations, "unit": "violations"},
    ]
    return figures


def mutant_figures() -> list[Figure]:
    """How many UMFS mutants the explorer catches."""
    from memoracle.umfs.crash_mutants import mutation_table

    rows = mutation_table()
    caught = sum(1 for row in rows if row["caught_by"] != "not caught")
    return [
        {"name": "crash.mutants_caught", "value": caught, "unit": "mutants"},
        {"name": "crash.mutants_total", "value": len(rows), "unit": "mutants"},
    ]


def crash_figures(quick: bool) -> list[Figure]:
    """Every crash figure."""
    return [*campaign_figures(quick), *mutant_figures()]
