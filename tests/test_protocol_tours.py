"""The Protocol tours (tests/protocol_tours.py) fail on broken sides, on a side that
lacks a method, and when a tour leaves a method of its Protocol out."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from impl.sphinx import Sphinx
from memoracle.ksm.mutants import KSM_MUTANTS
from memoracle.sphinx.mutants import SPHINX_MUTANTS
from memoracle.umfs.model_mutants import FS_MUTANTS
from protocol_tours import assert_called_every_method, fs_tour, ksm_tour, kv_tour, protocol_methods, touring
from spec.ksm_api import KsmSystem
from spec.ksm_model import KsmModel
from spec.umfs_model import ModelFs


def _sphinx(cls: type[Sphinx]) -> Callable[[], Sphinx]:
    return lambda: cls(threads=4, memory=4 << 20, segment_size=64 * 1024)


@pytest.mark.parametrize(
    ("tour", "broken"),
    [
        (ksm_tour, KSM_MUTANTS["no_write_protect"]),
        (ksm_tour, KSM_MUTANTS["cow_writes_shared"]),
        *[(fs_tour, FS_MUTANTS[name]) for name in sorted(FS_MUTANTS) if name != "MapOutlivesClose"],
        (kv_tour, _sphinx(SPHINX_MUTANTS["replies-reordered"])),
    ],
)
def test_a_tour_fails_on_a_broken_side(tour: Callable[[Any], None], broken: Callable[[], object]) -> None:
    with pytest.raises((AssertionError, pytest.fail.Exception)):  # a failed check, or an error not raised
        tour(broken())


class _Without:
    """Delegates everything to ``inner`` except the method ``hidden``."""

    def __init__(self, inner: object, hidden: str) -> None:
        self._inner, self._hidden = inner, hidden

    def __getattr__(self, name: str) -> Any:
        if name == self._hidden:
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize(("tour", "side", "hidden"), [(ksm_tour, KsmModel, "set_guest_kind"), (fs_tour, ModelFs, "fsync")])
def test_a_tour_fails_on_a_side_without_a_method(tour: Callable[[Any], None], side: Callable[[], object], hidden: str) -> None:
    with pytest.raises(AttributeError, match=hidden):
        tour(_Without(side(), hidden))


def test_a_tour_that_leaves_a_method_out_fails() -> None:
    s, recorder = touring(KsmModel())
    s.add_process()
    s.knobs()
    with pytest.raises(AssertionError, match=r"never called \[.*'set_guest_kind'.*\] of KsmSystem"):
        assert_called_every_method(recorder, KsmSystem)
    assert {"add_process", "knobs", "set_guest_kind", "snapshot"} <= protocol_methods(KsmSystem)
