"""Guest memory as the device sees it: bytes at guest-physical addresses.

Virtqueues live in driver-allocated guest memory (VIRTIO 1.3 2.6, 2.7, 2.8), and every
rule about what a device may touch is a rule about addresses.  So the ring models and the
oracle speak to memory only through this byte-oriented protocol, which can later be
backed by a memfd shared with a real vhost-user backend.  All multi-byte ring fields are
little-endian (2.7, 2.8), hence the ``le16``/``le32``/``le64`` helpers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

__all__ = [
    "Access",
    "ByteMemory",
    "GuestMemory",
    "OutOfRange",
    "RecordingMemory",
    "Span",
    "covers",
    "diff_spans",
    "read_le16",
    "read_le32",
    "read_le64",
    "uncovered",
    "write_le16",
    "write_le32",
    "write_le64",
    "written_spans",
]


class OutOfRange(Exception):
    """An access outside guest memory: a typed error, so oracles can tell it from a bug."""

    def __init__(self, addr: int, n: int, detail: str = "") -> None:
        super().__init__(f"access [{addr:#x}, +{n}) outside guest memory {detail}".rstrip())
        self.addr = addr
        self.n = n


@runtime_checkable
class GuestMemory(Protocol):
    """The only interface ring code uses: byte reads and writes, plus a range test."""

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def contains(self, addr: int, n: int) -> bool: ...


class ByteMemory:
    """One contiguous guest-physical region ``[base, base + size)`` backed by a bytearray."""

    def __init__(self, size: int, base: int = 0, data: bytes | None = None) -> None:
        self.base = base
        self.buf = bytearray(size) if data is None else bytearray(data)

    @property
    def size(self) -> int:
        return len(self.buf)

    def contains(self, addr: int, n: int) -> bool:
        return n >= 0 and self.base <= addr and addr + n <= self.base + len(self.buf)

    def read(self, addr: int, n: int) -> bytes:
        off = addr - self.base
        if n < 0 or off < 0 or off + n > len(self.buf):  # contains(), inlined: the judges'
            raise OutOfRange(addr, n)                    # hottest call
        return bytes(self.buf[off : off + n])

    def write(self, addr: int, data: bytes) -> None:
        if not self.contains(addr, len(data)):
            raise OutOfRange(addr, len(data))
        off = addr - self.base
        self.buf[off : off + len(data)] = data

    def snapshot(self) -> bytes:
        return bytes(self.buf)

    def copy(self) -> ByteMemory:
        return ByteMemory(self.size, self.base, bytes(self.buf))


@attrs.frozen
class Span:
    """A half-open byte range ``[addr, addr + n)``."""

    addr: int
    n: int

    @property
    def end(self) -> int:
        return self.addr + self.n

    def overlaps(self, other: Span) -> bool:
        return self.addr < other.end and other.addr < self.end and self.n > 0 and other.n > 0


@attrs.frozen
class Access:
    """One device access, in program order (``seq``): what the oracle audits."""

    kind: Literal["read", "write"]
    addr: int
    n: int
    seq: int
    data: bytes = b""  # the bytes written (writes only)

    @property
    def span(self) -> Span:
        return Span(self.addr, self.n)


class RecordingMemory:
    """Wraps a memory and logs every access, so a check can ask what a device touched."""

    def __init__(self, inner: GuestMemory) -> None:
        self.inner = inner
        self.log: list[Access] = []

    def contains(self, addr: int, n: int) -> bool:
        return self.inner.contains(addr, n)

    def read(self, addr: int, n: int) -> bytes:
        self.log.append(Access("read", addr, n, len(self.log)))
        return self.inner.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self.log.append(Access("write", addr, len(data), len(self.log), bytes(data)))
        self.inner.write(addr, data)

    def reads(self) -> list[Access]:
        return [a for a in self.log if a.kind == "read"]

    def writes(self) -> list[Access]:
        return [a for a in self.log if a.kind == "write"]

    def clear(self) -> None:
        self.log.clear()


def _read_le(mem: GuestMemory, addr: int, n: int) -> int:
    return int.from_bytes(mem.read(addr, n), "little")


def _write_le(mem: GuestMemory, addr: int, n: int, value: int) -> None:
    mem.write(addr, (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little"))


def read_le16(mem: GuestMemory, addr: int) -> int:
    return _read_le(mem, addr, 2)


def read_le32(mem: GuestMemory, addr: int) -> int:
    return _read_le(mem, addr, 4)


def read_le64(mem: GuestMemory, addr: int) -> int:
    return _read_le(mem, addr, 8)


def write_le16(mem: GuestMemory, addr: int, value: int) -> None:
    _write_le(mem, addr, 2, value)


def write_le32(mem: GuestMemory, addr: int, value: int) -> None:
    _write_le(mem, addr, 4, value)


def write_le64(mem: GuestMemory, addr: int, value: int) -> None:
    _write_le(mem, addr, 8, value)


def covers(spans: Iterable[Span], addr: int, n: int) -> bool:
    """True when every byte of ``[addr, addr + n)`` lies in some span."""
    return not uncovered(spans, Span(addr, n))


def uncovered(spans: Iterable[Span], target: Span) -> list[Span]:
    """The parts of ``target`` that no span covers (empty when fully covered)."""
    holes = [target] if target.n > 0 else []
    for s in spans:
        if s.n <= 0:
            continue
        nxt: list[Span] = []
        for h in holes:
            if not h.overlaps(s):
                nxt.append(h)
                continue
            if h.addr < s.addr:
                nxt.append(Span(h.addr, s.addr - h.addr))
            if s.end < h.end:
                nxt.append(Span(s.end, h.end - s.end))
        holes = nxt
        if not holes:
            break
    return holes


def diff_spans(before: bytes, after: bytes, base: int = 0) -> list[Span]:
    """Byte ranges that changed between two snapshots: the write set when no log exists.

    A real backend sharing a memfd cannot be traced, so its writes are inferred from the
    difference; a write of an unchanged value is invisible, which only makes checks weaker.
    """
    if len(before) != len(after):
        raise ValueError(f"snapshots differ in size: {len(before)} != {len(after)}")
    spans: list[list[int]] = []  # [start, end) offsets, adjacent runs joined
    _diff_into(before, after, 0, len(before), _DIFF_STEPS, spans)
    return [Span(base + lo, hi - lo) for lo, hi in spans]


# Chunk sizes, coarse to fine: a chunk whose bytes are equal (one memcmp) is skipped, a
# differing one is searched at the next size, and at the last the changed bytes are found
# by XOR and the regex engine.  A step's writes are a few small buffers in a large memory,
# so this touches a few chunks instead of running the regex over every byte (ten times
# faster on the vhost-user oracle's 256 KiB).
_DIFF_STEPS = (8192, 512)


def _diff_into(before: bytes, after: bytes, lo: int, hi: int, steps: tuple[int, ...],
               spans: list[list[int]]) -> None:
    step, finer = steps[0], steps[1:]
    for a in range(lo, hi, step):
        e = min(a + step, hi)
        if before[a:e] == after[a:e]:
            continue
        if finer:
            _diff_into(before, after, a, e, finer, spans)
            continue
        xor = (int.from_bytes(before[a:e], "little")
               ^ int.from_bytes(after[a:e], "little")).to_bytes(e - a, "little")
        for m in _CHANGED.finditer(xor):
            start, end = a + m.start(), a + m.end()
            if spans and spans[-1][1] == start:  # a run that crosses a chunk boundary
                spans[-1][1] = end
            else:
                spans.append([start, end])


_CHANGED = re.compile(rb"[^\x00]+")


def written_spans(log: Sequence[Access]) -> list[Span]:
    return [a.span for a in log if a.kind == "write"]
