"""A split-ring (VIRTIO 1.3 2.7) virtio-blk (5.2) device over shared byte memory.

Ring parsing is reimplemented here with :mod:`struct` on memoryviews; used entries for a
batch are written first and ``used.idx`` once at the end (2.7.8.2).  A malformed chain
stops the queue (the device "needs reset", 2.7.5 / 2.1.2) without writing anything.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

DESC = struct.Struct("<QIHH")
U16 = struct.Struct("<H")
U32X2 = struct.Struct("<II")
HDR = struct.Struct("<IIQ")
SEG = struct.Struct("<QII")
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT = 1
SECTOR = 512
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
B_SEG_MAX, B_BLK_SIZE, B_FLUSH, B_DISCARD, B_WRITE_ZEROES = 2, 6, 9, 13, 14
F_INDIRECT_DESC, F_EVENT_IDX, F_VERSION_1, F_IN_ORDER = 28, 29, 32, 35
DEVICE_ID = b"pvspec-ref-blk"
SEG_MAX = 126
MAX_SECTORS = 1 << 16

Translate = Callable[[int, int], memoryview | None]


class RingBroken(Exception):
    """The driver broke a ring rule; the queue stops (no sound interpretation, 2.7.5)."""


def need_event(event: int, new: int, old: int) -> bool:
    """2.7.7.2: did moving ``old -> new`` pass ``event``?"""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


def blk_features() -> int:
    bits = (B_SEG_MAX, B_BLK_SIZE, B_FLUSH, B_DISCARD, B_WRITE_ZEROES, F_INDIRECT_DESC,
            F_EVENT_IDX, F_VERSION_1, F_IN_ORDER)
    return sum(1 << b for b in bits)


class BlkDevice:
    """The request semantics of 5.2.6 over a bytearray disk."""

    def __init__(self, disk: bytearray) -> None:
        self.disk = disk

    @property
    def capacity(self) -> int:
        return len(self.disk) // SECTOR

    def config(self) -> bytes:
        cfg = bytearray(60)
        struct.pack_into("<QII", cfg, 0, self.capacity, 0, SEG_MAX)
        struct.pack_into("<I", cfg, 20, SECTOR)
        struct.pack_into("<III", cfg, 36, MAX_SECTORS, 1, 1)  # discard
        struct.pack_into("<IIB", cfg, 48, MAX_SECTORS, 1, 0)  # write zeroes
        return bytes(cfg)

    def handle(self, out: bytes, in_len: int) -> tuple[int, bytes]:
        """(status, data for the writable part before the status byte)."""
        if len(out) < HDR.size or in_len < 1:
            return S_IOERR, b""
        typ, _res, sector = HDR.unpack_from(out)
        data = out[HDR.size:]
        room = in_len - 1
        if typ == T_IN:
            if room % SECTOR or sector + room // SECTOR > self.capacity:
                return S_IOERR, b""
            return S_OK, bytes(self.disk[sector * SECTOR: sector * SECTOR + room])
        if typ == T_OUT:
            if len(data) % SECTOR or sector + len(data) // SECTOR > self.capacity:
                return S_IOERR, b""
            self.disk[sector * SECTOR: sector * SECTOR + len(data)] = data
            return S_OK, b""
        if typ == T_FLUSH:
            return S_OK, b""
        if typ == T_GET_ID:
            return S_OK, DEVICE_ID.ljust(20, b"\0")[:room]
        if typ in (T_DISCARD, T_WRITE_ZEROES):
            if not data or len(data) % SEG.size or len(data) // SEG.size > 1:
                return S_IOERR, b""
            segs = [SEG.unpack_from(data, i) for i in range(0, len(data), SEG.size)]
            for s, n, flags in segs:
                if flags & ~1 or (typ == T_DISCARD and flags & 1):
                    return S_UNSUPP, b""
                if s + n > self.capacity or n > MAX_SECTORS:
                    return S_IOERR, b""
            for s, n, _ in segs:
                if True:  # discard: zeroing is one allowed content
                    self.disk[s * SECTOR: (s + n) * SECTOR] = bytes(n * SECTOR)
            return S_OK, b""
        return S_UNSUPP, b""


class SplitQueue:
    """One split virtqueue.  ``ring_view`` maps ring addresses, ``buf_view`` buffers."""

    def __init__(self, size: int, desc: memoryview, avail: memoryview, used: memoryview,
                 buf_view: Translate, features: int, last_avail: int = 0) -> None:
        self.size = size
        self.desc, self.avail, self.used = desc, avail, used
        self.buf_view = buf_view
        self.event_idx = bool(features >> F_EVENT_IDX & 1)
        self.indirect = bool(features >> F_INDIRECT_DESC & 1)
        self.last_avail = last_avail
        self.used_idx = U16.unpack_from(used, 2)[0]
        self.signalled = self.used_idx
        self.broken = False

    def _chain(self, head: int) -> list[tuple[memoryview, bool]]:
        """Walk one chain (2.7.5, 2.7.5.3) with a bounded budget; RingBroken on any fault."""
        if head >= self.size:
            raise RingBroken(f"head {head} >= size {self.size}")
        segs: list[tuple[memoryview, bool]] = []
        table, entries, i, nested = self.desc, self.size, head, False
        budget = 2 * self.size + 1
        total = 0
        while True:
            budget -= 1
            if budget <= 0 or i >= entries:
                raise RingBroken(f"loop or next {i} out of range")
            addr, length, flags, nxt = DESC.unpack_from(table, 16 * i)
            if flags & F_INDIRECT:
                if nested or not self.indirect or length == 0 or length % 16:
                    raise RingBroken("bad indirect descriptor")
                t = self.buf_view(addr, length)
                if t is None:
                    raise RingBroken(f"indirect table {addr:#x}+{length} outside memory")
                table, entries, i, nested = t, length // 16, 0, True
                continue
            view = self.buf_view(addr, length)
            if view is None:
                raise RingBroken(f"buffer {addr:#x}+{length} outside memory")
            writable = bool(flags & F_WRITE)
            if segs and segs[-1][1] and not writable:
                raise RingBroken("readable descriptor after a writable one")
            total += length
            if total >= 1 << 32:
                raise RingBroken("chain length overflow")
            segs.append((view, writable))
            if not flags & F_NEXT:
                return segs
            i = nxt

    def process(self, dev: BlkDevice) -> bool:
        """Serve every exposed request; return whether to signal the call eventfd."""
        if self.broken:
            return False
        avail_idx = U16.unpack_from(self.avail, 2)[0]
        count = (avail_idx - self.last_avail) & 0xFFFF
        if count > self.size:
            self.broken = True
            raise RingBroken(f"avail.idx {avail_idx} is {count} ahead")
        used_idx = self.used_idx
        for _ in range(count):
            head = U16.unpack_from(self.avail, 4 + 2 * (self.last_avail % self.size))[0]
            try:
                segs = self._chain(head)
            except RingBroken:
                self.broken = True
                break
            out = b"".join(bytes(v) for v, w in segs if not w)
            wsegs = [v for v, w in segs if w]
            in_len = sum(len(v) for v in wsegs)
            status, data = dev.handle(out, in_len)
            payload = data + bytes([status]) if in_len else b""
            written = _scatter(wsegs, payload, in_len)
            U32X2.pack_into(self.used, 4 + 8 * (used_idx % self.size), head, written)
            used_idx = (used_idx + 1) & 0xFFFF
            self.last_avail = (self.last_avail + 1) & 0xFFFF
        if used_idx != self.used_idx:
            self.used_idx = used_idx
            U16.pack_into(self.used, 2, used_idx)  # after the entries (2.7.8.2)
        if self.event_idx:
            U16.pack_into(self.used, 4 + 8 * self.size, self.last_avail)  # avail_event
        if self.broken:
            raise RingBroken("malformed chain; queue stopped")
        return self._must_signal()

    def _must_signal(self) -> bool:
        """2.7.7.2: used_event with EVENT_IDX, else avail.flags bit 0."""
        if self.used_idx == self.signalled:
            return False
        old, self.signalled = self.signalled, self.used_idx
        if self.event_idx:
            ev = U16.unpack_from(self.avail, 4 + 2 * self.size)[0]
            return need_event(ev, self.used_idx, old)
        return not U16.unpack_from(self.avail, 0)[0] & AVAIL_F_NO_INTERRUPT


def _scatter(segs: list[memoryview], payload: bytes, in_len: int) -> int:
    """Fill the whole writable part (data, zero padding, status last): len = all of it.

    Writing every byte keeps 2.7.8.2 (at least ``len`` bytes from the first writable
    byte) true even for an error status, whose byte sits at the very end (5.2.6).
    """
    if not in_len:
        return 0
    full = payload[:-1][: in_len - 1].ljust(in_len - 1, b"\0") + payload[-1:]
    off = 0
    for v in segs:
        n = len(v)
        v[:n] = full[off: off + n]
        off += n
    return in_len
