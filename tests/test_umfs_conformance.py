"""UMFS against the model, side by side, with fsck after every step."""

from __future__ import annotations

from impl.mmu_emu import Machine
from impl.umfs import Umfs
from memoracle.fs_conformance import make_fs_machine
from spec.umfs_model import ModelFs

SCM_BYTES = 16 << 20


def make_umfs() -> Umfs:
    """A freshly formatted UMFS on a machine with 16 MiB of DRAM and of SCM."""
    return Umfs.mkfs(Machine(dram_size=16 << 20, scm_size=SCM_BYTES))


UmfsConformance = make_fs_machine(ModelFs, make_umfs)
TestUmfsConformance = UmfsConformance.TestCase
