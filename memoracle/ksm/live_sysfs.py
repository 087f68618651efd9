"""The running kernel's KSM controls: ``/sys/kernel/mm/ksm`` and ``/proc/PID/ksm_stat``.

:class:`KsmSysfs` owns the machine-wide knobs for one session: it takes an exclusive
lock (``fcntl`` on a file in the temporary directory, so that two sessions — two test
workers, two commands — never drive ksmd at once), saves every writable knob (also in a file beside the lock, so that a
session killed with SIGKILL, which no handler can catch, is repaired by the next one),
and :meth:`KsmSysfs.restore` puts every one back (unmerging first, so that
``max_page_sharing`` can change back). Writes report the kernel's verdict as
:class:`~spec.ksm_api.KnobError` (``EINVAL``, ``EBUSY``).

:func:`availability` says why a live session cannot run here (no KSM in this kernel, no
permission, a kernel too old for ``/proc/PID/ksm_stat``, another process using KSM), or
None when it can.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import IO

from spec.ksm_api import KnobError

KSM_DIR = Path("/sys/kernel/mm/ksm")
#: The global counters a session reads (the names of ``spec.ksm_api.COUNTERS``).
COUNTER_FILES = (
    "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans",
    "pages_skipped", "stable_node_chains", "stable_node_dups", "ksm_zero_pages", "general_profit",
)  # fmt: skip
#: Knobs restored in this order (``advisor_mode`` first: storing it resets
#: ``pages_to_scan``; ``run`` last).
RESTORE_ORDER = (
    "advisor_mode", "advisor_max_cpu", "advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
    "advisor_target_scan_time", "stable_node_chains_prune_millisecs", "use_zero_pages",
    "smart_scan", "max_page_sharing", "merge_across_nodes", "sleep_millisecs", "pages_to_scan",
    "run",
)  # fmt: skip
LOCK_PATH = Path(tempfile.gettempdir()) / "memoracle-ksm-live.lock"
#: The knobs as they were before the session that holds the lock changed them; a session
#: that finds this file (its writer was killed before it could restore them) takes those
#: values as the ones to restore.
SAVED_PATH = Path(tempfile.gettempdir()) / "memoracle-ksm-live.saved.json"


class LiveUnavailable(RuntimeError):
    """A live session cannot run here (the message says why, in one line)."""


class LiveBusy(RuntimeError):
    """Another session holds the live-kernel lock and did not let go in time."""


def _read_text(path: Path) -> str:
    return path.read_text().strip()


def _proc_status_lines(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/ksm_stat").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key.rstrip(":")] = value.strip()
    return out


def other_ksm_users(exclude: set[int]) -> list[int]:
    """Pids (not in ``exclude``) whose memory is registered with KSM now."""
    users = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        stat = _proc_status_lines(int(entry.name))
        if stat.get("ksm_mergeable") == "yes" or stat.get("ksm_merge_any") == "yes":
            users.append(int(entry.name))
    return sorted(users)


def availability() -> str | None:
    """Why a live session cannot run on this machine, or None when it can (the kernel
    has KSM, this process may drive it, no other process uses it)."""
    reason = kernel_availability()
    if reason is not None:
        return reason
    return _users_reason()


def _users_reason() -> str | None:
    users = other_ksm_users({os.getpid()})
    if users:
        return f"other processes use KSM (pids {', '.join(map(str, users[:5]))}): their pages would count"
    return None


def kernel_availability() -> str | None:
    """Why this kernel cannot be driven from here (no KSM, too old, no permission), or
    None."""
    if not KSM_DIR.is_dir():
        return "this kernel has no KSM (no /sys/kernel/mm/ksm; CONFIG_KSM is off)"
    missing = [name for name in COUNTER_FILES + ("run",) if not (KSM_DIR / name).exists()]
    if missing:
        return f"this kernel's KSM lacks {', '.join(missing)} (needs Linux 6.10 or later)"
    if not Path("/proc/self/ksm_stat").exists():
        return "this kernel has no /proc/PID/ksm_stat (needs Linux 6.1 or later)"
    if not os.access(KSM_DIR / "run", os.W_OK):
        return "no permission to write /sys/kernel/mm/ksm (run as root)"
    return None


class KsmSysfs:
    """The knobs and counters of the running kernel's KSM for one session (see the
    module docstring). Use as a context manager, or call :meth:`restore`."""

    def __init__(self, *, lock_timeout: float = 300.0) -> None:
        reason = kernel_availability()
        if reason is not None:
            raise LiveUnavailable(reason)
        self._lock: IO[str] | None = _take_lock(lock_timeout)
        reason = _users_reason()  # under the lock: another session's workers are gone
        if reason is not None:
            self._release_lock()
            raise LiveUnavailable(reason)
        try:
            self.saved = {name: self._saved_value(name) for name in RESTORE_ORDER if (KSM_DIR / name).exists()}
            self.saved.update(_left_by_a_killed_session())
            SAVED_PATH.write_text(json.dumps(self.saved))
        except OSError as error:
            self._release_lock()
            raise LiveUnavailable(f"cannot read /sys/kernel/mm/ksm: {error.strerror}") from None
        self.restored = False

    @staticmethod
    def _saved_value(name: str) -> str:
        text = _read_text(KSM_DIR / name)
        if name == "advisor_mode" and "[" in text:  # "[none] scan-time"
            return text[text.index("[") + 1 : text.index("]")]
        return text

    def write(self, name: str, value: str) -> None:
        """Store a knob; raises :class:`KnobError` with the kernel's errno."""
        try:
            fd = os.open(KSM_DIR / name, os.O_WRONLY)
        except FileNotFoundError:
            raise KnobError("ENOENT", f"this kernel has no knob {name!r}") from None
        try:
            os.write(fd, value.encode())
        except OSError as error:
            code = {errno.EINVAL: "EINVAL", errno.EBUSY: "EBUSY"}.get(error.errno or 0)
            if code is None:
                raise
            raise KnobError(code, f"{name} = {value!r}: {error.strerror}") from None  # type: ignore[arg-type]
        finally:
            os.close(fd)

    def read(self, name: str) -> str:
        """A knob's or counter's text."""
        return _read_text(KSM_DIR / name)

    def read_int(self, name: str) -> int:
        """A counter's value."""
        return int(self.read(name))

    def counters(self) -> dict[str, int]:
        """Every global counter of ``spec.ksm_api.COUNTERS``."""
        return {name: self.read_int(name) for name in COUNTER_FILES}

    def restore(self) -> list[str]:
        """Unmerge everything (``run = 2``), then put every saved knob back; the knobs
        that could not be restored, with the reason (empty when all were)."""
        if self.restored:
            return []
        problems = []
        try:
            self.write("run", "2")
        except (KnobError, OSError) as error:
            problems.append(f"run = 2: {error}")
        for name, value in self.saved.items():
            if name == "pages_to_scan" and self.saved.get("advisor_mode", "none") != "none":
                continue  # the advisor owns pages_to_scan
            try:
                if self.read(name).strip() != value and not (name == "advisor_mode" and f"[{value}]" in self.read(name)):
                    self.write(name, value)
            except (KnobError, OSError) as error:
                problems.append(f"{name} = {value}: {error}")
        self.restored = True
        if not problems:
            SAVED_PATH.unlink(missing_ok=True)
        self._release_lock()
        return problems

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> KsmSysfs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def _take_lock(timeout: float) -> IO[str]:
    handle = open(LOCK_PATH, "a")  # noqa: SIM115 - held for the session
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise LiveBusy(f"another live KSM session holds {LOCK_PATH} ({timeout:.0f} s waited)") from None
            time.sleep(0.05)


def _left_by_a_killed_session() -> dict[str, str]:
    """The knobs a killed session saved and could not restore (empty if none)."""
    try:
        data = json.loads(SAVED_PATH.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if k in RESTORE_ORDER}


def process_stat(os_pid: int) -> dict[str, str]:
    """``/proc/PID/ksm_stat`` as name -> text (empty if the process is gone)."""
    return _proc_status_lines(os_pid)
