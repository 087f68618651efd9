"""Which memoracle a process runs: the package version and a digest of its code.

A campaign's shards must all run the same checker: a worker on another machine with an
older checkout would answer with another verdict. :func:`code_version` names the code a
process has imported from — ``0.1.0+3f2a9c01b7d4``: the installed version and the first
12 hex digits of a SHA-256 over every ``.py`` file of ``spec``, ``impl``, ``proofs`` and
``memoracle`` (relative path and bytes, in sorted order) — so two checkouts that differ in
one line differ here too, whatever their version number says. The driver compares it
with each worker's at connect and inside every shard (a worker may join later).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

#: The top-level packages whose code decides a verdict.
PACKAGES = ("spec", "impl", "proofs", "memoracle")


def package_version() -> str:
    """The installed distribution's version (``unknown`` in a tree never installed)."""
    try:
        return metadata.version("memoracle")
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def code_version() -> str:
    """``VERSION+DIGEST`` of the code this process imports (computed once per process)."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"{package_version()}+{digest.hexdigest()[:12]}"


__all__ = ["PACKAGES", "code_version", "package_version"]
