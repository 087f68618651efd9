"""A red-black tree ordered by a caller's comparison, as ``lib/rbtree.c`` is used by KSM.

KSM's stable and unstable trees are red-black trees whose order is ``memcmp`` of page
contents. The kernel does not give the tree a comparison function: the caller walks
from the root comparing as it goes, then links the new node where the walk ended
(``rb_link_node`` + ``rb_insert_color``). This module offers the same shape:

- :class:`RbNode` carries a ``value`` (an rmap item or a stable node) and the links;
- :meth:`RbTree.walk` descends from the root with a three-way comparison callback and
  returns where it stopped (the equal node, or the parent and side to link at); the
  tree counts every comparison it makes in :attr:`RbTree.comparisons`;
- :meth:`RbTree.link` inserts at such a place and rebalances; :meth:`RbTree.erase`
  removes a node; :meth:`RbTree.replace` puts another value in a node's place (the
  kernel's ``rb_replace_node``); :meth:`RbTree.clear` empties the tree (``RB_ROOT``).

Balancing follows CLRS (parent pointers, no sentinel). Guarantees: after every public
operation the red-black properties hold (checked by :meth:`RbTree.check`), so a walk
costs O(log n) comparisons even if the values' contents later change and the order is
"corrupted" — exactly the property the KSM unstable tree relies on.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RbNode(Generic[T]):
    """A tree node holding ``value``; ``red`` is its colour."""

    __slots__ = ("value", "left", "right", "parent", "red")

    def __init__(self, value: T) -> None:
        self.value = value
        self.left: RbNode[T] | None = None
        self.right: RbNode[T] | None = None
        self.parent: RbNode[T] | None = None
        self.red = True


class RbTree(Generic[T]):
    """A red-black tree of :class:`RbNode`; order is whatever the callers' walks say."""

    def __init__(self) -> None:
        self.root: RbNode[T] | None = None
        self.size = 0
        #: Comparisons made by :meth:`walk` since creation.
        self.comparisons = 0

    def __len__(self) -> int:
        return self.size

    # -- walking -------------------------------------------------------------------
    def walk(
        self, compare: Callable[[T], int]
    ) -> tuple[RbNode[T] | None, RbNode[T] | None, bool]:
        """Descend from the root: ``compare(value)`` < 0 goes left, > 0 right, 0 stops.

        Returns ``(found, parent, left)``: ``found`` is the node where ``compare``
        returned 0 (then ``parent``/``left`` are meaningless), else None and the new
        node belongs as the ``left`` (or right) child of ``parent`` (None: the root).
        Each call of ``compare`` is counted in :attr:`comparisons`.
        """
        node = self.root
        parent: RbNode[T] | None = None
        left = False
        count = 0
        while node is not None:
            count += 1
            ret = compare(node.value)
            if ret == 0:
                self.comparisons += count
                return node, None, False
            parent = node
            left = ret < 0
            node = node.left if left else node.right
        self.comparisons += count
        return None, parent, left

    def __iter__(self) -> Iterator[RbNode[T]]:
        """The nodes in order (left to right)."""
        stack: list[RbNode[T]] = []
        node = self.root
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            yield node
            node = node.right

    def values(self) -> list[T]:
        """The values in order."""
        return [n.value for n in self]

    # -- changing ------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every node (``root = RB_ROOT``); the nodes themselves are untouched."""
        self.root = None
        self.size = 0

    def link(self, value: T, parent: RbNode[T] | None, left: bool) -> RbNode[T]:
        """Insert a new node for ``value`` as the ``left``/right child of ``parent``
        (None: as the root of an empty tree) and rebalance; returns the node.
        ``ValueError`` if that place is taken."""
        node: RbNode[T] = RbNode(value)
        if parent is None:
            if self.root is not None:
                raise ValueError("link at the root of a non-empty tree")
            self.root = node
        elif left:
            if parent.left is not None:
                raise ValueError("left child already present")
            parent.left = node
        else:
            if parent.right is not None:
                raise ValueError("right child already present")
            parent.right = node
        node.parent = parent
        self.size += 1
        self._insert_fixup(node)
        return node

    def replace(self, node: RbNode[T], value: T) -> None:
        """Put ``value`` in ``node``'s place (``rb_replace_node``): same position and
        colour; the caller updates any back-references."""
        node.value = value

    def _rotate_left(self, x: RbNode[T]) -> None:
        y = x.right
        assert y is not None
        x.right = y.left
        if y.left is not None:
            y.left.parent = x
        y.parent = x.parent
        if x.parent is None:
            self.root = y
        elif x is x.parent.left:
            x.parent.left = y
        else:
            x.parent.right = y
        y.left = x
        x.parent = y

    def _rotate_right(self, x: RbNode[T]) -> None:
        y = x.left
        assert y is not None
        x.left = y.right
        if y.right is not None:
            y.right.parent = x
        y.parent = x.parent
        if x.parent is None:
            self.root = y
        elif x is x.parent.right:
            x.parent.right = y
        else:
            x.parent.left = y
        y.right = x
        x.parent = y

    def _insert_fixup(self, z: RbNode[T]) -> None:
        while z.parent is not None and z.parent.red:
            p = z.parent
            g = p.parent
            assert g is not None  # a red node is never the root
            if p is g.left:
                u = g.right
                if u is not None and u.red:
                    p.red = u.red = False
                    g.red = True
                    z = g
                    continue
                if z is p.right:
                    z = p
                    self._rotate_left(z)
                    zp = z.parent
                    assert zp is not None
                    p = zp
                p.red = False
                g.red = True
                self._rotate_right(g)
            else:
                u = g.left
                if u is not None and u.red:
                    p.red = u.red = False
                    g.red = True
                    z = g
                    continue
                if z is p.left:
                    z = p
                    self._rotate_right(z)
                    zp = z.parent
                    assert zp is not None
                    p = zp
                p.red = False
                g.red = True
                self._rotate_left(g)
        assert self.root is not None
        self.root.red = False

    def _transplant(self, u: RbNode[T], v: RbNode[T] | None) -> None:
        if u.parent is None:
            self.root = v
        elif u is u.parent.left:
            u.parent.left = v
        else:
            u.parent.right = v
        if v is not None:
            v.parent = u.parent

    def erase(self, z: RbNode[T]) -> None:
        """Remove node ``z`` (which must be in this tree) and rebalance."""
        y = z
        y_red = y.red
        x: RbNode[T] | None
        x_parent: RbNode[T] | None
        if z.left is None:
            x = z.right
            x_parent = z.parent
            self._transplant(z, z.right)
        elif z.right is None:
            x = z.left
            x_parent = z.parent
            self._transplant(z, z.left)
        else:
            y = z.right
            while y.left is not None:
                y = y.left
            y_red = y.red
            x = y.right
            if y.parent is z:
                x_parent = y
            else:
                x_parent = y.parent
                self._transplant(y, y.right)
                y.right = z.right
                y.right.parent = y
            self._transplant(z, y)
            y.left = z.left
            y.left.parent = y
            y.red = z.red
        z.left = z.right = z.parent = None
        self.size -= 1
        if not y_red:
            self._erase_fixup(x, x_parent)

    def _erase_fixup(self, x: RbNode[T] | None, parent: RbNode[T] | None) -> None:
        while x is not self.root and (x is None or not x.red):
            assert parent is not None
            if x is parent.left:
                w = parent.right
                assert w is not None  # the black-height rule guarantees a sibling
                if w.red:
                    w.red = False
                    parent.red = True
                    self._rotate_left(parent)
                    w = parent.right
                    assert w is not None
                if (w.left is None or not w.left.red) and (w.right is None or not w.right.red):
                    w.red = True
                    x = parent
                    parent = x.parent
                else:
                    if w.right is None or not w.right.red:
                        assert w.left is not None
                        w.left.red = False
                        w.red = True
                        self._rotate_right(w)
                        w = parent.right
                        assert w is not None
                    w.red = parent.red
                    parent.red = False
                    if w.right is not None:
                        w.right.red = False
                    self._rotate_left(parent)
                    x = self.root
                    parent = None
            else:
                w = parent.left
                assert w is not None
                if w.red:
                    w.red = False
                    parent.red = True
                    self._rotate_right(parent)
                    w = parent.left
                    assert w is not None
                if (w.left is None or not w.left.red) and (w.right is None or not w.right.red):
                    w.red = True
                    x = parent
                    parent = x.parent
                else:
                    if w.left is None or not w.left.red:
                        assert w.right is not None
                        w.right.red = False
                        w.red = True
                        self._rotate_left(w)
                        w = parent.left
                        assert w is not None
                    w.red = parent.red
                    parent.red = False
                    if w.left is not None:
                        w.left.red = False
                    self._rotate_right(parent)
                    x = self.root
                    parent = None
        if x is not None:
            x.red = False

    # -- checking ------------------------------------------------------------------
    def check(self) -> None:
        """Assert the red-black properties: the root is black, no red node has a red
        child, every root-to-leaf path has the same number of black nodes, parent
        links agree with child links, and ``size`` is the node count."""
        if self.root is None:
            assert self.size == 0, f"empty tree with size {self.size}"
            return
        assert self.root.parent is None, "the root has a parent"
        assert not self.root.red, "the root is red"
        count = 0
        stack: list[tuple[RbNode[T], int]] = [(self.root, 0)]
        leaf_black: int | None = None
        while stack:
            node, black = stack.pop()
            count += 1
            black += 0 if node.red else 1
            for child in (node.left, node.right):
                if child is None:
                    if leaf_black is None:
                        leaf_black = black
                    assert leaf_black == black, "black heights differ"
                    continue
                assert child.parent is node, "a child's parent link is wrong"
                assert not (node.red and child.red), "a red node has a red child"
                stack.append((child, black))
        assert count == self.size, f"tree holds {count} nodes but size says {self.size}"
