"""KSM's merge, COW break and stable tree, proved with Z3.

The machine is abstracted to what merge safety is about: ``memory`` is an array
frame -> content (a content is an opaque value: two pages are equal iff their contents
are), a page table is an array (pid, va) -> frame, and a process's *view* of ``va`` is
``memory[pt[pid, va]]``. Frames, pids, addresses and contents are small bit-vectors;
every theorem quantifies over all of them (the claims do not depend on the widths).

Theorems:

``ksm_merge_preserves_views``
    a merge remaps one mapping ``k2`` to the frame of another mapping ``k1`` only when
    their contents are equal (the full ``memcmp`` after write-protecting); afterwards
    every (pid, va) of every process reads what it read before.
``ksm_cow_preserves_other_views``
    a COW break for a store of ``w`` by mapping ``kw`` copies to a frame mapped by
    nobody, writes ``w`` there and remaps ``kw``; the writer reads ``w`` and every
    other mapping reads what it read before.
``ksm_stable_tree_inductive``
    "two valid stable nodes with equal contents are duplicates of one chain" holds in
    the empty tree and is preserved by inserting a node after a search of the tree
    (joining, or creating, the chain of the equal node the search found) and by removing
    a node. KSM frames are write-protected, so a node's content does not change.

Mutants, each refuted with a counterexample: a merge without the equality check, a COW
that writes the shared frame in place, and a stable-tree insert that does not search.
"""

from __future__ import annotations

from typing import Callable, Mapping

import z3

from proofs.registry import Theorem, Verdict, register
from proofs.solver import Z3Expr, Z3Model, as_int, check_claim

PID_BITS = 3
VA_BITS = 5
FRAME_BITS = 6
CONTENT_BITS = 8
NODE_BITS = 3
CHAIN_BITS = 3
#: The chain id meaning "not a duplicate of a chain".
NO_CHAIN = 0


class _Machine:
    """Fresh symbols for one theorem (each theorem gets its own context)."""

    def __init__(self) -> None:
        self.ctx = z3.Context()
        key = z3.BitVecSort(PID_BITS + VA_BITS, ctx=self.ctx)
        frame = z3.BitVecSort(FRAME_BITS, ctx=self.ctx)
        content = z3.BitVecSort(CONTENT_BITS, ctx=self.ctx)
        self.memory = z3.Array("memory", frame, content)
        self.pt = z3.Array("pt", key, frame)

    def key(self, name: str) -> Z3Expr:
        """A fresh (pid, va) pair packed as one bit-vector (pid in the high bits)."""
        return z3.BitVec(name, PID_BITS + VA_BITS, ctx=self.ctx)

    def frame(self, name: str) -> Z3Expr:
        return z3.BitVec(name, FRAME_BITS, ctx=self.ctx)

    def content(self, name: str) -> Z3Expr:
        return z3.BitVec(name, CONTENT_BITS, ctx=self.ctx)


def view(memory: Z3Expr, pt: Z3Expr, key: Z3Expr) -> Z3Expr:
    """What the mapping ``key`` reads: the content of the frame its PTE points to."""
    return z3.Select(memory, z3.Select(pt, key))


def _where(model: Z3Model, key: Z3Expr) -> str:
    packed = as_int(model.eval(key, model_completion=True))
    return f"(pid {packed >> VA_BITS}, page {packed & ((1 << VA_BITS) - 1)})"


def _num(model: Z3Model, expr: Z3Expr) -> int:
    return as_int(model.eval(expr, model_completion=True))


# ---------------------------------------------------------------------- merge


def _merge(check_equal: bool) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        m = _Machine()
        k1, k2, k = m.key("kept"), m.key("merged"), m.key("observer")
        equal = view(m.memory, m.pt, k1) == view(m.memory, m.pt, k2)
        pt_after = z3.Store(m.pt, k2, z3.Select(m.pt, k1))
        merged = equal if check_equal else z3.BoolVal(True, ctx=m.ctx)
        hypotheses = merged
        claim = z3.Implies(hypotheses, view(m.memory, pt_after, k) == view(m.memory, m.pt, k))

        def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
            before = _num(model, view(m.memory, m.pt, k))
            after = _num(model, view(m.memory, pt_after, k))
            text = (
                f"merging {_where(model, k2)} (content {_num(model, view(m.memory, m.pt, k2))}) into the frame "
                f"{_num(model, z3.Select(m.pt, k1))} of {_where(model, k1)} (content "
                f"{_num(model, view(m.memory, m.pt, k1))}): {_where(model, k)} read {before}, now reads {after}"
            )
            return text, {"before": before, "after": after}

        return check_claim(claim, timeout_ms=timeout_ms, explain=explain, hypotheses=hypotheses)

    return check


# ---------------------------------------------------------------------- COW


def _cow(in_place: bool) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        m = _Machine()
        writer, other = m.key("writer"), m.key("other")
        fresh = m.frame("fresh")
        stored = m.content("stored")
        shared = z3.Select(m.pt, writer)
        if in_place:
            memory_after = z3.Store(m.memory, shared, stored)
            pt_after = m.pt
        else:
            memory_after = z3.Store(m.memory, fresh, stored)
            pt_after = z3.Store(m.pt, writer, fresh)
        # The new frame is free: mapped by nobody (instantiated at the observer, which is
        # arbitrary, so this is the universal hypothesis).
        hypotheses = z3.And(z3.Select(m.pt, other) != fresh, other != writer)
        claim = z3.Implies(
            hypotheses,
            z3.And(
                view(memory_after, pt_after, other) == view(m.memory, m.pt, other),
                view(memory_after, pt_after, writer) == stored,
            ),
        )

        def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
            before = _num(model, view(m.memory, m.pt, other))
            after = _num(model, view(memory_after, pt_after, other))
            text = (
                f"{_where(model, writer)} stores {_num(model, stored)} into frame {_num(model, shared)}, "
                f"which {_where(model, other)} maps to frame {_num(model, z3.Select(m.pt, other))}: "
                f"it read {before}, now reads {after}"
            )
            return text, {"before": before, "after": after}

        return check_claim(claim, timeout_ms=timeout_ms, explain=explain, hypotheses=hypotheses)

    return check


# ---------------------------------------------------------------------- stable tree


def _stable_tree(search: bool) -> Callable[[int], Verdict]:
    def check(timeout_ms: int) -> Verdict:
        ctx = z3.Context()
        node_sort = z3.BitVecSort(NODE_BITS, ctx=ctx)
        content_sort = z3.BitVecSort(CONTENT_BITS, ctx=ctx)
        chain_sort = z3.BitVecSort(CHAIN_BITS, ctx=ctx)
        valid = z3.Array("valid", node_sort, z3.BoolSort(ctx=ctx))
        content = z3.Array("content", node_sort, content_sort)
        chain = z3.Array("chain", node_sort, chain_sort)
        a, b, new, found_node, gone = (z3.BitVec(n, NODE_BITS, ctx=ctx) for n in ("a", "b", "new", "found", "removed"))
        new_content = z3.BitVec("new_content", CONTENT_BITS, ctx=ctx)
        fresh_chain = z3.BitVec("fresh_chain", CHAIN_BITS, ctx=ctx)
        found = z3.Bool("search_found", ctx=ctx)
        inserting = z3.Bool("inserting", ctx=ctx)
        none = z3.BitVecVal(NO_CHAIN, CHAIN_BITS, ctx=ctx)

        def inv(v: Z3Expr, c: Z3Expr, ch: Z3Expr, x: Z3Expr, y: Z3Expr) -> Z3Expr:
            both = z3.And(x != y, z3.Select(v, x), z3.Select(v, y), z3.Select(c, x) == z3.Select(c, y))
            return z3.Implies(both, z3.And(z3.Select(ch, x) == z3.Select(ch, y), z3.Select(ch, x) != none))

        points = (a, b, new, found_node)
        pre = [inv(valid, content, chain, x, y) for x in points for y in points]
        # The search's contract, instantiated at the nodes the claim talks about.
        search_ok = z3.And(
            z3.Implies(found, z3.And(z3.Select(valid, found_node), z3.Select(content, found_node) == new_content)),
            *[
                z3.Implies(z3.Not(found), z3.Implies(z3.Select(valid, x), z3.Select(content, x) != new_content))
                for x in (a, b)
            ],
        )
        fresh_ok = z3.And(fresh_chain != none, *[z3.Implies(z3.Select(valid, x), z3.Select(chain, x) != fresh_chain) for x in (a, b)])
        hit = found if search else z3.BoolVal(False, ctx=ctx)
        existing_chain = z3.Select(chain, found_node)
        joined = z3.If(existing_chain == none, fresh_chain, existing_chain)
        chain_ins = z3.If(hit, z3.Store(z3.Store(chain, found_node, joined), new, joined), z3.Store(chain, new, none))
        valid_ins = z3.Store(valid, new, z3.BoolVal(True, ctx=ctx))
        content_ins = z3.Store(content, new, new_content)
        valid_after = z3.If(inserting, valid_ins, z3.Store(valid, gone, z3.BoolVal(False, ctx=ctx)))
        content_after = z3.If(inserting, content_ins, content)
        chain_after = z3.If(inserting, chain_ins, chain)
        hypotheses = z3.And(*pre, z3.Implies(inserting, z3.And(z3.Not(z3.Select(valid, new)), search_ok, fresh_ok)))
        empty = z3.K(node_sort, z3.BoolVal(False, ctx=ctx))
        claim = z3.Implies(
            hypotheses,
            z3.And(inv(empty, content, chain, a, b), inv(valid_after, content_after, chain_after, a, b)),
        )

        def explain(model: Z3Model) -> tuple[str, Mapping[str, int]]:
            def node(x: Z3Expr) -> str:
                return (
                    f"node {_num(model, x)} (content {_num(model, z3.Select(content_after, x))}, "
                    f"chain {_num(model, z3.Select(chain_after, x))})"
                )

            step = "insert" if z3.is_true(model.eval(inserting, model_completion=True)) else "remove"
            text = (
                f"after {step} of node {_num(model, new if step == 'insert' else gone)}: {node(a)} and {node(b)} "
                f"have equal contents but are not duplicates of one chain"
            )
            return text, {"a": _num(model, a), "b": _num(model, b)}

        return check_claim(claim, timeout_ms=timeout_ms, explain=explain, hypotheses=hypotheses)

    return check


MERGE_PRESERVES_VIEWS = register(
    Theorem(
        "ksm_merge_preserves_views",
        "merging a mapping into an equal page's frame leaves every view unchanged",
        _merge(check_equal=True),
    )
)
COW_PRESERVES_OTHER_VIEWS = register(
    Theorem(
        "ksm_cow_preserves_other_views",
        "a COW break into a free frame gives the writer its store and changes no other view",
        _cow(in_place=False),
    )
)
STABLE_TREE_INDUCTIVE = register(
    Theorem(
        "ksm_stable_tree_inductive",
        "equal-content stable nodes are duplicates of one chain, across insert-after-search and remove",
        _stable_tree(search=True),
    )
)
MUTANT_MERGE_UNCHECKED = register(
    Theorem(
        "ksm_merge_preserves_views:mutant_no_compare",
        "mutant: merging without the full-page equality check",
        _merge(check_equal=False),
        expect="refuted",
    )
)
MUTANT_COW_IN_PLACE = register(
    Theorem(
        "ksm_cow_preserves_other_views:mutant_writes_shared_frame",
        "mutant: a COW break that stores into the shared KSM frame",
        _cow(in_place=True),
        expect="refuted",
    )
)
MUTANT_INSERT_UNSEARCHED = register(
    Theorem(
        "ksm_stable_tree_inductive:mutant_insert_without_search",
        "mutant: inserting a stable node without searching the tree",
        _stable_tree(search=False),
        expect="refuted",
    )
)

__all__ = [
    "COW_PRESERVES_OTHER_VIEWS",
    "MERGE_PRESERVES_VIEWS",
    "MUTANT_COW_IN_PLACE",
    "MUTANT_INSERT_UNSEARCHED",
    "MUTANT_MERGE_UNCHECKED",
    "STABLE_TREE_INDUCTIVE",
    "view",
]
