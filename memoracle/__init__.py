"""memoracle: executable reference specifications for memory systems, and the tools that
hold real implementations to them.

The specifications live in ``spec/`` (what is correct: pure Python, standard library
only), the implementations and the emulated machine they run on in ``impl/``, and Z3
proofs of the protocols in ``proofs/``. This package is the face: the harnesses that drive
any two implementations of one ``spec`` Protocol side by side, the crash and interleaving
explorers, the mutants every checker must catch, the check registry and the ``memoracle``
command. It is grouped by system:

- ``memoracle.machine``: the MMU and persistency self-checks, SCM mutants;
- ``memoracle.umfs``: the file-system conformance harness, :class:`OsDirFs` (a real
  directory behind the same Protocol), the crash explorer and its campaigns and mutants;
- ``memoracle.spsc``: queue histories (checking, recording), the interleaving explorer,
  the fences table, ring mutants;
- ``memoracle.sphinx``: the key-value conformance and linearizability harnesses, the real
  TCP server, real peers (memcached) and :class:`SocketKvServer`, mutants;
- ``memoracle.ksm``: the lockstep KSM campaign, real-data corpora and the lookahead study,
  mutants;
- at the top: ``cli`` (the command), ``checks`` (the registry ``memoracle check`` runs),
  ``check_types``, ``exitcodes``, ``contracts`` (CrossHair over the specs).

Where to start: ``memoracle check`` runs every registered check; to check your own
system, import a spec as the oracle (``spec.persistency.allowed_images``,
``spec.spsc_fast.check_spsc``, ``spec.paging.walk``, ...) or hand your implementation of
a ``spec`` Protocol to one of the harnesses exported here:

- :func:`make_fs_machine` (``spec.umfs_api.FileSystem``), :class:`LazyCrashExplorer` (every
  crash image the model allows, in classes recovery cannot tell apart), :class:`CrashExplorer`
  (image by image);
- :func:`conformance_run` (``spec.kv_api.KvServer``), :class:`SocketKvServer`,
  :func:`start_memcached`, :func:`start_sphinx_server`, :func:`run_fixed_rate`;
- :func:`ksm_campaign` (``spec.ksm_api.KsmSystem``);
- :func:`compare_persistency` (any emulator with ``impl.scm_emu.ScmEmu``'s interface);
- the registry: :data:`CHECKS`, :func:`run_checks`, :class:`Check`, :class:`Outcome`,
  :class:`CheckResult`.

These names are the public surface (``__all__``); everything else is reached through its
submodule. They are imported on first use, so ``import memoracle`` stays cheap.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from memoracle.check_types import Check, CheckResult, Outcome
    from memoracle.checks import CHECKS, run_checks
    from memoracle.ksm.conformance import ksm_campaign
    from memoracle.machine.persistency_check import compare as compare_persistency
    from memoracle.sphinx.conformance import conformance_run
    from memoracle.sphinx.peers import SocketKvServer, run_fixed_rate, start_memcached, start_sphinx_server
    from memoracle.umfs.conformance import make_fs_machine
    from memoracle.umfs.crash_explorer import CrashExplorer
    from memoracle.umfs.lazy_explorer import LazyCrashExplorer
    from memoracle.umfs.os_fs import OsDirFs

#: Each public name and where it lives: (module, attribute).
_PUBLIC: dict[str, tuple[str, str]] = {
    "CHECKS": ("memoracle.checks", "CHECKS"),
    "run_checks": ("memoracle.checks", "run_checks"),
    "Check": ("memoracle.check_types", "Check"),
    "CheckResult": ("memoracle.check_types", "CheckResult"),
    "Outcome": ("memoracle.check_types", "Outcome"),
    "compare_persistency": ("memoracle.machine.persistency_check", "compare"),
    "make_fs_machine": ("memoracle.umfs.conformance", "make_fs_machine"),
    "OsDirFs": ("memoracle.umfs.os_fs", "OsDirFs"),
    "CrashExplorer": ("memoracle.umfs.crash_explorer", "CrashExplorer"),
    "LazyCrashExplorer": ("memoracle.umfs.lazy_explorer", "LazyCrashExplorer"),
    "conformance_run": ("memoracle.sphinx.conformance", "conformance_run"),
    "SocketKvServer": ("memoracle.sphinx.peers", "SocketKvServer"),
    "start_memcached": ("memoracle.sphinx.peers", "start_memcached"),
    "start_sphinx_server": ("memoracle.sphinx.peers", "start_sphinx_server"),
    "run_fixed_rate": ("memoracle.sphinx.peers", "run_fixed_rate"),
    "ksm_campaign": ("memoracle.ksm.conformance", "ksm_campaign"),
}

__all__ = [
    "CHECKS", "Check", "CheckResult", "CrashExplorer", "LazyCrashExplorer", "OsDirFs", "Outcome", "SocketKvServer",
    "compare_persistency", "conformance_run", "ksm_campaign", "make_fs_machine",
    "run_checks", "run_fixed_rate", "start_memcached", "start_sphinx_server",
]  # fmt: skip


def __getattr__(name: str) -> object:
    """Import a public name on first use (PEP 562) and keep it."""
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'memoracle' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
