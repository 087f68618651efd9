"""Deliberately broken SCM emulators that the persistency checks must catch.

Each mutant changes one rule of the x86 persistency model the way a real emulator or a
real programmer's mental model gets it wrong. The stateful test in
``tests/test_persistency.py`` and ``memoracle check`` run every mutant against
``spec.persistency`` and fail if any survives.
"""

from __future__ import annotations

from impl.scm_emu import CrashImage, Piece, ScmEmu


class FlushWithoutFence(ScmEmu):
    """``clwb``/``clflushopt`` make the line durable at once, as if no fence were needed."""

    def clwb(self, offset: int) -> None:
        super().clwb(offset)
        self._force_line(offset)

    def clflushopt(self, offset: int) -> None:
        super().clflushopt(offset)
        self._force_line(offset)

    def _force_line(self, offset: int) -> None:
        line = offset - offset % 64
        for rec in self._chains.get(line, ()):
            rec.forced = True
        self._marks.pop(line, None)
        self._settle([line])


class LineReorder(ScmEmu):
    """A later store to a line may persist without an earlier one (any subset, not a prefix)."""

    def _line_options(self, pieces: list[Piece]) -> list[list[Piece]]:
        subsets: list[list[Piece]] = []
        for mask in range(1 << len(pieces)):
            subsets.append([p for i, p in enumerate(pieces) if mask >> i & 1])
        return subsets


class ClwbOrdered(ScmEmu):
    """``clwb`` is taken as ordered with later stores: a fence also covers stores made
    to the line after its ``clwb``."""

    def sfence(self) -> None:
        for line in self._marks:
            self._marks[line] = self._seq
        super().sfence()


class NtDurableAtOnce(ScmEmu):
    """Non-temporal stores are taken as durable without the fence."""

    def ntstore(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        super().ntstore(offset, data)
        for rec in self._nt:
            rec.forced = True
        self._settle([])


class SecondFlushIgnored(ScmEmu):
    """A second ``clwb``/``clflushopt`` of a line before the fence changes nothing: the
    write-back keeps the mark of the first, so the fence leaves the stores made between
    the two flushes pending (an emulator that tracks "this line is being written back"
    as a flag set once)."""

    def _mark(self, line: int) -> None:
        if line not in self._marks:
            super()._mark(line)


#: Every mutant, by name, with the rule it breaks.
SCM_MUTANTS: dict[str, type[ScmEmu]] = {
    "flush-without-fence": FlushWithoutFence,
    "line-reorder": LineReorder,
    "clwb-ordered": ClwbOrdered,
    "nt-durable-at-once": NtDurableAtOnce,
    "second-flush-ignored": SecondFlushIgnored,
}


class RebootKeepsOldDurable(ScmEmu):
    """Rebooted into a crash image, the SCM shows it but keeps its old durable contents
    (a reboot that only repaints what is visible). The full comparison reboots into byte
    images only and cannot see it; :func:`memoracle.machine.persistency_check.check_sample`
    reboots into a sampled image."""

    def reboot(self, image: CrashImage | bytes | None = None) -> None:
        if not isinstance(image, CrashImage):
            super().reboot(image)
            return
        old = bytes(self._durable)
        super().reboot(image)
        self._durable[:] = old  # BUG


#: Emulators wrong only on the sampled-image and reboot paths that the crash explorers
#: use; ``memoracle check``'s persistency-sampled check must catch each.
SAMPLING_MUTANTS: dict[str, type[ScmEmu]] = {
    "reboot-keeps-old-durable": RebootKeepsOldDurable,
}
