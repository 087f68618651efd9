"""UMFS against the model, side by side, with fsck after every step."""

from __future__ import annotations

from memoracle.umfs.campaign import make_umfs
from memoracle.umfs.conformance import make_fs_machine
from spec.umfs_model import ModelFs

UmfsConformance = make_fs_machine(ModelFs, make_umfs)
TestUmfsConformance = UmfsConformance.TestCase
