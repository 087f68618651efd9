"""The pure rules of KSM: grouping under ``max_page_sharing``, the profit formulas, the
knob stores, and the counters as functions of a :class:`~spec.ksm_api.KsmSnapshot`.

Everything here is a small pure function over plain data; :mod:`spec.ksm_model` builds
the model and the predictions on top of it. Counters follow the kernel's definitions
(``mm/ksm.c``, Documentation/admin-guide/mm/ksm.rst):

- ``pages_shared``: stable nodes (KSM pages) with at least one rmap item on them;
- ``pages_sharing``: rmap items on stable nodes minus ``pages_shared``;
- ``pages_unshared``: rmap items in the unstable tree;
- ``pages_volatile``: rmap items minus the three above, clamped at 0 (so items of
  zero-page merges count as volatile, as in the kernel);
- ``stable_node_chains``: distinct chains, plus the snapshot's ``empty_chains`` (chain
  heads left without duplicates, freed at ksmd's next walk); ``stable_node_dups``:
  nodes in a chain;
- ``ksm_zero_pages``: PTEs mapping the zero page by KSM (follows the page tables);
- ``general_profit`` = (pages_sharing + ksm_zero_pages) * 4096 - rmap_items * 64;
- per process: ``ksm_merging_pages`` (its items on stable nodes), ``ksm_rmap_items``,
  ``ksm_zero_pages``, ``ksm_process_profit`` = (merging + zero) * 4096 - items * 64.

``full_scans`` and ``pages_skipped`` are histories, not functions of a snapshot:
:func:`counters_of` copies them from the snapshot's own counters.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

from spec.ksm_api import (
    KNOB_NAMES,
    PAGE_SIZE,
    RMAP_ITEM_SIZE,
    SLEEP_MILLISECS_MAX,
    UINT_MAX,
    ItemState,
    KnobError,
    KsmKnobs,
    KsmSnapshot,
    RunMode,
)

#: Counters :func:`counters_of` derives from the snapshot's items, nodes and pages.
DERIVED_COUNTERS = (
    "pages_shared",
    "pages_sharing",
    "pages_unshared",
    "pages_volatile",
    "stable_node_chains",
    "stable_node_dups",
    "ksm_zero_pages",
    "general_profit",
)


# ---------------------------------------------------------------------- grouping


def sharing_groups(n: int, m: int) -> tuple[int, int]:
    """``(pages_shared, pages_sharing)`` for ``n`` identical pages merged from scratch
    with ``max_page_sharing = m`` (``ksm_tests.c``'s formula).

    Pages merge in scan order into KSM pages of at most ``m`` mappings; a last lone page
    finds every KSM page full and nobody to pair with in the unstable tree, so it stays
    unshared: if ``n % m`` is 0 or 1, ``shared = n // m`` and ``sharing = shared*(m-1)``;
    otherwise ``shared = n // m + 1`` and ``sharing = n - shared``.

    pre: n >= 0
    pre: m >= 2
    post: __return__[0] + __return__[1] <= n
    post: n - (__return__[0] + __return__[1]) <= 1
    post: __return__[1] <= __return__[0] * (m - 1)
    post: (__return__[0] == 0) == (n < 2)
    """
    if n % m in (0, 1):
        shared = n // m
        return shared, shared * (m - 1)
    shared = n // m + 1
    return shared, n - shared


def group_sizes(n: int, m: int) -> tuple[int, ...]:
    """The mapping counts of the KSM pages ``n`` identical pages form (scan order), as
    :func:`sharing_groups` counts them: full groups of ``m``, then the rest (if >= 2).

    pre: n >= 0
    pre: m >= 2
    post: all(2 <= size <= m for size in __return__)
    post: n - sum(__return__) in (0, 1)
    """
    full, rest = divmod(n, m)
    sizes = [m] * full
    if rest >= 2:
        sizes.append(rest)
    return tuple(sizes)


def general_profit(pages_sharing: int, ksm_zero_pages: int, rmap_items: int) -> int:
    """The kernel's ``general_profit``: bytes saved minus the rmap items' cost.

    pre: pages_sharing >= 0 and ksm_zero_pages >= 0 and rmap_items >= 0
    post: __return__ == (pages_sharing + ksm_zero_pages) * 4096 - rmap_items * 64
    """
    return (pages_sharing + ksm_zero_pages) * PAGE_SIZE - rmap_items * RMAP_ITEM_SIZE


def process_profit(merging_pages: int, ksm_zero_pages: int, rmap_items: int) -> int:
    """The kernel's ``ksm_process_profit`` of one process.

    pre: merging_pages >= 0 and ksm_zero_pages >= 0 and rmap_items >= 0
    post: __return__ == (merging_pages + ksm_zero_pages) * 4096 - rmap_items * 64
    """
    return (merging_pages + ksm_zero_pages) * PAGE_SIZE - rmap_items * RMAP_ITEM_SIZE


def volatile(rmap_items: int, shared: int, sharing: int, unshared: int) -> int:
    """``pages_volatile``: the items in no category, clamped at 0 (the kernel's show()).

    post: __return__ >= 0
    post: __return__ >= rmap_items - shared - sharing - unshared
    """
    return max(0, rmap_items - shared - sharing - unshared)


# ---------------------------------------------------------------------- knobs

_BOOL_KNOBS = ("use_zero_pages", "smart_scan", "lookahead", "skip_page_cache", "exclusive_host_cache")


def _as_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KnobError("EINVAL", f"{name} takes an integer, not {value!r}")
    if not low <= value <= high:
        raise KnobError("EINVAL", f"{name} must be in {low}..{high}, not {value}")
    return int(value)


def validated_knob(
    knobs: KsmKnobs, name: str, value: object, pages_shared: int, *, ksm_pages_mapped: bool = False
) -> object:
    """The value ``set_knob(name, value)`` stores, or the :class:`KnobError` it raises.

    ``pages_shared`` is the current ``pages_shared`` counter and ``ksm_pages_mapped``
    whether some KSM page is still mapped (the ``EBUSY`` rule of ``max_page_sharing``:
    the kernel refuses while ``pages_shared`` is not 0, and also when
    ``remove_all_stable_nodes`` finds a stable node whose page is still mapped, which
    happens with ``pages_shared`` 0 when a merged page lost its rmap item but not its
    mapping). Rules and their order are those listed in :mod:`spec.ksm_api`.
    """
    if name not in KNOB_NAMES:
        raise KnobError("ENOENT", f"no knob named {name!r}")
    if name == "run":
        return RunMode(_as_int(name, value, 0, 2))
    if name == "pages_to_scan":
        return _as_int(name, value, 0, UINT_MAX)
    if name == "sleep_millisecs":
        return _as_int(name, value, 0, SLEEP_MILLISECS_MAX)
    if name in _BOOL_KNOBS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise KnobError("EINVAL", f"{name} takes 0 or 1, not {value!r}")
    if name == "checksum":
        if value in ("xxhash", "jhash2"):
            return value
        raise KnobError("EINVAL", f"checksum is 'xxhash' or 'jhash2', not {value!r}")
    # max_page_sharing
    sharing = _as_int(name, value, 2, 2**31 - 1)
    if sharing != knobs.max_page_sharing and pages_shared != 0:
        raise KnobError("EBUSY", f"max_page_sharing cannot change while pages_shared = {pages_shared}")
    if sharing != knobs.max_page_sharing and ksm_pages_mapped:
        raise KnobError("EBUSY", "max_page_sharing cannot change while a KSM page is mapped")
    return sharing


# ---------------------------------------------------------------------- counters


def counters_of(snapshot: KsmSnapshot) -> dict[str, int]:
    """The global counters the kernel would show for ``snapshot``'s items, nodes and
    page tables (every name of :data:`~spec.ksm_api.COUNTERS`; ``full_scans`` and
    ``pages_skipped`` are copied from ``snapshot.counters``)."""
    on_node = Counter(item.stable_node for item in snapshot.items if item.state is ItemState.STABLE)
    shared = sum(1 for node in snapshot.stable_nodes if on_node[node.node] > 0)
    sharing = sum(on_node.values()) - shared
    unshared = sum(1 for item in snapshot.items if item.state is ItemState.UNSTABLE)
    rmap_items = len(snapshot.items)
    zero = sum(1 for page in snapshot.pages if page.zero)
    chains = {node.chain for node in snapshot.stable_nodes if node.chain is not None}
    return {
        "pages_shared": shared,
        "pages_sharing": sharing,
        "pages_unshared": unshared,
        "pages_volatile": volatile(rmap_items, shared, sharing, unshared),
        "full_scans": snapshot.counters.get("full_scans", 0),
        "pages_skipped": snapshot.counters.get("pages_skipped", 0),
        "stable_node_chains": len(chains) + snapshot.empty_chains,
        "stable_node_dups": sum(1 for node in snapshot.stable_nodes if node.chain is not None),
        "ksm_zero_pages": zero,
        "general_profit": general_profit(sharing, zero, rmap_items),
    }


def process_counters_of(snapshot: KsmSnapshot, pids: Mapping[int, object] | None = None) -> dict[int, dict[str, int]]:
    """The per-process counters for ``snapshot`` (for every pid in ``pids``, default the
    pids of ``snapshot.process_counters``)."""
    wanted = list(pids if pids is not None else snapshot.process_counters)
    items = Counter(item.pid for item in snapshot.items)
    merging = Counter(item.pid for item in snapshot.items if item.state is ItemState.STABLE)
    zero = Counter(page.pid for page in snapshot.pages if page.zero)
    return {
        pid: {
            "ksm_merging_pages": merging[pid],
            "ksm_rmap_items": items[pid],
            "ksm_zero_pages": zero[pid],
            "ksm_process_profit": process_profit(merging[pid], zero[pid], items[pid]),
        }
        for pid in sorted(wanted)
    }


def structure_violations(snapshot: KsmSnapshot) -> list[str]:
    """What is wrong with the sharing structure of ``snapshot`` (empty when nothing):

    - a merged page (``ksm`` or ``zero``) is writable;
    - a frame is mapped at two places and one of them is not a merged page;
    - a ``ksm`` page's frame is no stable node's frame; two nodes share a frame;
    - an item's state and node disagree with the nodes' mapping lists;
    - the snapshot's own counters disagree with :func:`counters_of` (except the
      histories ``full_scans`` and ``pages_skipped``).
    """
    problems: list[str] = []
    node_frames = Counter(node.frame for node in snapshot.stable_nodes)
    for frame, count in sorted(node_frames.items()):
        if count > 1:
            problems.append(f"{count} stable nodes share frame {frame}")
    by_frame: dict[int, list[tuple[int, int, bool]]] = {}
    for page in snapshot.pages:
        if (page.ksm or page.zero) and page.writable:
            problems.append(f"merged page pid {page.pid} {page.addr:#x} is writable")
        if page.ksm and page.frame not in node_frames:
            problems.append(f"KSM page pid {page.pid} {page.addr:#x} maps frame {page.frame}, no stable node's")
        if not page.zero:
            by_frame.setdefault(page.frame, []).append((page.pid, page.addr, page.ksm))
    for frame, users in sorted(by_frame.items()):
        if len(users) > 1 and not all(ksm for _, _, ksm in users):
            places = ", ".join(f"pid {pid} {addr:#x}" for pid, addr, _ in users)
            problems.append(f"frame {frame} mapped by {places} without being a KSM page")
    listed = {(pid, addr): node.node for node in snapshot.stable_nodes for pid, addr in node.mappings}
    for item in snapshot.items:
        key = (item.pid, item.addr)
        if item.state is ItemState.STABLE:
            if listed.get(key) != item.stable_node:
                problems.append(f"item pid {item.pid} {item.addr:#x} says node {item.stable_node}, nodes say {listed.get(key)}")
        elif item.stable_node is not None or key in listed:
            problems.append(f"item pid {item.pid} {item.addr:#x} is {item.state.value} but hangs on a node")
    stable_keys = {(i.pid, i.addr) for i in snapshot.items if i.state is ItemState.STABLE}
    for key in sorted(set(listed) - stable_keys):
        problems.append(f"node {listed[key]} lists pid {key[0]} {key[1]:#x}, which has no stable item")
    derived = counters_of(snapshot)
    for name in DERIVED_COUNTERS:
        if snapshot.counters.get(name) != derived[name]:
            problems.append(f"counter {name} = {snapshot.counters.get(name)}, its items say {derived[name]}")
    for pid, expected in process_counters_of(snapshot).items():
        if snapshot.process_counters.get(pid) != expected:
            problems.append(f"process {pid} counters {snapshot.process_counters.get(pid)}, its items say {expected}")
    return problems


__all__ = [
    "DERIVED_COUNTERS",
    "counters_of",
    "general_profit",
    "group_sizes",
    "process_counters_of",
    "process_profit",
    "sharing_groups",
    "structure_violations",
    "validated_knob",
    "volatile",
]
