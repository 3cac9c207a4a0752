"""Wire facts shared by both ring layouts: field formats, flag and feature bits, the
event-index window, and typed little-endian views of ring memory.

Every ring field is little-endian (VIRTIO 1.3 2.7, 2.8).  On a little-endian host a
``memoryview.cast`` is a zero-copy typed array over the shared bytes, which is what
keeps the ring loops fast; elsewhere :class:`LEView` gives the same indexing through
:mod:`struct`.  No ``spec`` import: this is an independent reading of the standard.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import Protocol

# 2.7.5 / 2.8.13: one 16-byte descriptor.  Split: addr, len, flags, next; packed: addr,
# len, id, flags.  Either way the u16 at byte 12 is word 6 and the one at 14 is word 7.
DESC_SIZE = 16
DESC = struct.Struct("<QIHH")
U16 = struct.Struct("<H")

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4  # 2.7.5, 2.8.13 descriptor flags
AVAIL_F_NO_INTERRUPT = 1  # 2.7.7 avail.flags
USED_F_NO_NOTIFY = 1  # 2.7.10 used.flags
PACKED_AVAIL = 1 << 7  # 2.8.1: AVAIL and USED flag bits of a packed descriptor
PACKED_USED = 1 << 15
EVENT_ENABLE, EVENT_DISABLE, EVENT_DESC = 0, 1, 2  # 2.8.10 event suppression flags

# Reserved feature bits (chapter 6) and the device-independent ones the queues read.
F_INDIRECT_DESC, F_EVENT_IDX, F_VERSION_1, F_RING_PACKED, F_IN_ORDER = 28, 29, 32, 34, 35
MAX_QUEUE = 32768  # 2.7 / 2.8: the largest queue a 16-bit index can address
LEN_LIMIT = 1 << 32  # 2.7.5.2: a chain's total length fits the 32-bit used len

LITTLE_ENDIAN = sys.byteorder == "little"

Translate = Callable[[int, int], memoryview | None]
"""Guest address and length -> a writable view of exactly those bytes, or None when any
byte lies outside guest memory (such a buffer makes the chain unusable, 2.7.5)."""


class Words(Protocol):
    """An indexable array of unsigned little-endian words over shared memory."""

    def __getitem__(self, i: int, /) -> int: ...

    def __setitem__(self, i: int, v: int, /) -> None: ...


class LEView:
    """:class:`Words` through :mod:`struct`, for big-endian hosts (or forced in tests)."""

    __slots__ = ("_mv", "_s")

    def __init__(self, mv: memoryview, code: str) -> None:
        self._mv, self._s = mv, struct.Struct("<" + code)

    def __getitem__(self, i: int) -> int:
        return self._s.unpack_from(self._mv, i * self._s.size)[0]

    def __setitem__(self, i: int, v: int) -> None:
        self._s.pack_into(self._mv, i * self._s.size, v)


def words(mv: memoryview, code: str, native: bool = LITTLE_ENDIAN) -> Words:
    """``mv`` as an array of ``code`` ('H', 'I' or 'Q') words, zero-copy when native.

    ``len(mv)`` must be a multiple of the word size; CPython's casts tolerate misaligned
    bases, so any 16-byte-multiple descriptor table or indirect table qualifies.
    """
    mv = mv.cast("B") if mv.format != "B" else mv
    return mv.cast(code) if native else LEView(mv, code)


def desc_table(mv: memoryview, native: bool = LITTLE_ENDIAN) -> tuple[Words, Words, Words]:
    """A descriptor table (2.7.5, 2.8.13) as 64-, 32- and 16-bit word views: descriptor
    ``i`` has addr ``[2i]`` (Q), len ``[4i+2]`` (I), and its last two 16-bit words at
    ``[8i+6]`` and ``[8i+7]`` (H)."""
    return words(mv, "Q", native), words(mv, "I", native), words(mv, "H", native)


def indirect_table(translate: Translate, addr: int, ln: int, native: bool = LITTLE_ENDIAN
                   ) -> tuple[Words, Words, Words] | str:
    """The table an INDIRECT descriptor names (2.7.5.3, 2.8.19), or why it is unusable:
    whole descriptors only, at least one, all inside guest memory."""
    if ln == 0 or ln % DESC_SIZE:
        return f"indirect table length {ln}"
    t = translate(addr, ln)
    if t is None:
        return f"indirect table {addr:#x}+{ln} outside guest memory"
    return desc_table(t, native)


def flat(memory: memoryview | bytearray, base: int = 0) -> Translate:
    """A :data:`Translate` over one contiguous region of guest-physical memory at ``base``."""
    mem = memoryview(memory).cast("B")
    end = base + len(mem)

    def view(addr: int, n: int) -> memoryview | None:
        if base <= addr and addr + n <= end:
            off = addr - base
            return mem[off: off + n]
        return None

    view.region = (base, mem)  # type: ignore[attr-defined]  # lets queues inline the test
    return view


def region_of(translate: Translate) -> tuple[int, memoryview, int] | None:
    """``(base, view, length)`` when ``translate`` came from :func:`flat`, so a queue can
    do the bounds test inline on its fast path instead of calling it."""
    region = getattr(translate, "region", None)
    return None if region is None else (region[0], region[1], len(region[1]))


def need_event(event: int, new: int, old: int) -> bool:
    """2.7.7.2 / 2.7.10: did moving an index ``old -> new`` (mod 2^16) step over ``event``?"""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


def packed_need_event(word: int, new: int, new_wrap: int, added: int, size: int) -> bool:
    """2.8.10 with EVENT_IDX: did the last ``added`` slots before ``(new, new_wrap)`` include
    the slot the event structure names (offset in bits 0-14, wrap counter in bit 15)?

    An offset recorded in the other wrap phase is one ring length behind, so it is
    moved back by ``size`` before the window test of :func:`need_event`.
    """
    off = word & 0x7FFF
    if word >> 15 != new_wrap:
        off = (off - size) & 0xFFFF
    return need_event(off, new, (new - added) & 0xFFFF)


def feature(features: int, bit: int) -> bool:
    return bool(features >> bit & 1)
