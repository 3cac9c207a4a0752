"""Guest memory as memfd regions shared with a vhost-user back-end (SET_MEM_TABLE).

:class:`MemfdMemory` implements the spec's :class:`spec.virtio.memory.GuestMemory`
protocol over a ``MAP_SHARED`` mapping of a memfd, so the ring models and the oracle in
``spec/virtio`` read and write exactly the bytes the back-end sees.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os

from spec.virtio.memory import ByteMemory, OutOfRange


class MemfdMemory:
    """One guest-physical region ``[base, base + size)`` backed by a shared memfd."""

    def __init__(self, size: int, base: int = 0, name: str = "pvspec-guest") -> None:
        self.base = base
        self.size = size
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        probe = ctypes.c_char.from_buffer(self.mm)
        self.uaddr = ctypes.addressof(probe)  # front-end userspace address (SET_VRING_ADDR)
        del probe
        self.view = memoryview(self.mm)

    def contains(self, addr: int, n: int) -> bool:
        return n >= 0 and self.base <= addr and addr + n <= self.base + self.size

    def read(self, addr: int, n: int) -> bytes:
        if not self.contains(addr, n):
            raise OutOfRange(addr, n)
        off = addr - self.base
        return bytes(self.view[off: off + n])

    def write(self, addr: int, data: bytes) -> None:
        if not self.contains(addr, len(data)):
            raise OutOfRange(addr, len(data))
        off = addr - self.base
        self.view[off: off + len(data)] = data

    def to_user(self, gpa: int) -> int:
        """Guest-physical to front-end userspace address (vhost-user ring addresses)."""
        return self.uaddr + (gpa - self.base)

    def snapshot(self) -> bytes:
        return bytes(self.view)

    def frozen(self) -> ByteMemory:
        """A private copy, for the oracle's before/after comparison."""
        return ByteMemory(self.size, self.base, bytes(self.view))

    def close(self) -> None:
        try:
            self.view.release()
            self.mm.close()
        except (BufferError, ValueError):
            pass
        with contextlib.suppress(OSError):
            os.close(self.fd)
