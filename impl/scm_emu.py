"""Placeholder: being replaced by the full SCM persistence-domain emulator."""

from __future__ import annotations


class ScmEmu:
    """Storage-class memory of ``size`` bytes (placeholder with the final interface)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.visible = bytearray(size)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.visible[offset : offset + length])

    def store(self, offset: int, data: bytes) -> None:
        self.visible[offset : offset + len(data)] = data

    def ntstore(self, offset: int, data: bytes) -> None:
        self.visible[offset : offset + len(data)] = data

    def clwb(self, offset: int) -> None:
        pass

    def clflushopt(self, offset: int) -> None:
        pass

    def clflush(self, offset: int) -> None:
        pass

    def sfence(self) -> None:
        pass
