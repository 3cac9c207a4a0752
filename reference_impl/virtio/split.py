"""The device side of a split virtqueue (VIRTIO 1.3 2.7), generic over :class:`Device`.

Rings are read and written through typed views of the shared bytes (see
:mod:`reference_impl.virtio._wire`).  A batch's used elements are written first and
``used.idx`` once at the end (2.7.8.2), and a one-descriptor buffer never leaves the
inline fast path.  A driver error with no sound reading stops the queue for good (the
device would set DEVICE_NEEDS_RESET, 2.1.2): nothing of the faulty chain is written,
the buffers before it stay completed.  Faults a device may read past (INDIRECT without
the feature, INDIRECT with NEXT, a readable after a writable descriptor, an over-long
indirect chain) are read past, as QEMU does.
"""

from __future__ import annotations

from reference_impl.virtio._wire import (
    AVAIL_F_NO_INTERRUPT,
    DESC_SIZE,
    F_EVENT_IDX,
    F_INDIRECT,
    F_NEXT,
    F_WRITE,
    LEN_LIMIT,
    LITTLE_ENDIAN,
    MAX_QUEUE,
    USED_F_NO_NOTIFY,
    Translate,
    desc_table,
    feature,
    flat,
    indirect_table,
    need_event,
    region_of,
    words,
)
from reference_impl.virtio.device import Device

_Segs = tuple[list[memoryview], list[memoryview]]


class SplitQueue:
    """One split virtqueue.  ``desc``/``avail``/``used`` are views of the three ring parts
    (2.7: 16*size, 6+2*size and 6+8*size bytes); ``translate`` maps buffer addresses."""

    def __init__(self, size: int, desc: memoryview, avail: memoryview, used: memoryview,
                 translate: Translate, features: int, last_avail: int = 0,
                 native: bool = LITTLE_ENDIAN) -> None:
        if not 0 < size <= MAX_QUEUE or size & (size - 1):
            raise ValueError(f"split queue size {size} is not a power of two <= 32768")
        self.size = size
        self.translate = translate
        self._flat = region_of(translate) or (0, None, 0)
        self.event_idx = feature(features, F_EVENT_IDX)
        d, a, u = desc[: DESC_SIZE * size], avail[: 6 + 2 * size], used[: 6 + 8 * size]
        self._d64, self._d32, self._d16 = desc_table(d, native)
        self._a16 = words(a, "H", native)  # [0] flags, [1] idx, [2+i] ring, [2+size] used_event
        self._u16 = words(u, "H", native)  # [0] flags, [1] idx, [2+4*size] avail_event
        self._u32 = words(u[4: 4 + 8 * size], "I", native)  # [2*i] id, [2*i+1] len
        self.native = native
        self.last_avail = last_avail & 0xFFFF
        self.used_idx = self._u16[1]  # 2.7.8: a fresh ring starts where the driver put it
        self.signalled = self.used_idx  # used.idx at the last notification decision
        self.broken = False
        self.fault: str | None = None  # why the queue stopped (VIRTIO section first)

    @classmethod
    def over(cls, memory: memoryview | bytearray, size: int, desc: int, avail: int, used: int,
             features: int, last_avail: int = 0, base: int = 0,
             native: bool = LITTLE_ENDIAN) -> SplitQueue:
        """A queue whose rings and buffers all live in one flat region at ``base``."""
        mv = memoryview(memory).cast("B")
        return cls(size, mv[desc - base:], mv[avail - base:], mv[used - base:],
                   flat(mv, base), features, last_avail, native)

    def set_no_notify(self, on: bool) -> None:
        """2.7.10.2: ask the driver not to kick (flags is 0 whenever EVENT_IDX is on)."""
        self._u16[0] = USED_F_NO_NOTIFY if on and not self.event_idx else 0

    def _stop(self, why: str) -> None:
        self.broken, self.fault = True, why

    def process(self, dev: Device, queue: int = 0) -> bool:
        """Serve every exposed buffer while ``dev.ready(queue)``; return whether a used-buffer
        notification is due (2.7.7.2).  Never raises on ring contents."""
        if self.broken:
            return False
        a16, u32, d64, d32, d16 = self._a16, self._u32, self._d64, self._d32, self._d16
        size, mask, translate = self.size, self.size - 1, self.translate
        last, used = self.last_avail, self.used_idx
        count = (a16[1] - last) & 0xFFFF
        if count > size:  # 2.7.6.1: the driver cannot expose more heads than slots
            self._stop(f"2.7.6.1: avail.idx is {count} ahead of {last}")
            return False
        ready, serve = dev.ready, dev.serve
        flat_base, flat_mem, flat_len = self._flat
        for _ in range(count):
            if not ready(queue):
                break
            head = a16[2 + (last & mask)]
            if head >= size:
                self._stop(f"2.7.6: head {head} >= queue size {size}")
                break
            flags = d16[8 * head + 6]
            if flags & (F_NEXT | F_INDIRECT):
                segs = self._walk(head)
                if segs is None:
                    break
                rd, wr = segs
                in_len = 0
                for v in wr:
                    in_len += len(v)
                reply = serve(queue, b"".join(rd), in_len)
                written = _scatter(wr, reply, in_len) if reply else 0
            else:  # the fast path: one direct descriptor
                ln = d32[4 * head + 2]
                if flat_mem is None:
                    v = translate(d64[2 * head], ln)
                else:
                    off = d64[2 * head] - flat_base
                    v = flat_mem[off: off + ln] if off >= 0 and off + ln <= flat_len else None
                if v is None:
                    self._stop(f"2.7.5: buffer of descriptor {head} outside guest memory")
                    break
                if flags & F_WRITE:
                    reply = serve(queue, b"", ln)
                    written = len(reply)
                    if written > ln:
                        written = ln
                    if written:
                        v[:written] = reply[:written]
                else:
                    serve(queue, bytes(v), 0)
                    written = 0
            slot = 2 * (used & mask)
            u32[slot] = head
            u32[slot + 1] = written
            used = (used + 1) & 0xFFFF
            last = (last + 1) & 0xFFFF
        if used != self.used_idx:
            self._u16[1] = used  # after the elements it covers (2.7.8.2)
            self.used_idx = used
        if self.event_idx:
            self._u16[2 + 4 * size] = last  # avail_event: kick me for the next head (2.7.10)
        self.last_avail = last
        return self._decide()

    def _decide(self) -> bool:
        """2.7.7.2: used_event with EVENT_IDX, else the NO_INTERRUPT bit of avail.flags."""
        old, new = self.signalled, self.used_idx
        self.signalled = new
        if new == old:
            return False
        if self.event_idx:
            return need_event(self._a16[2 + self.size], new, old)
        return not self._a16[0] & AVAIL_F_NO_INTERRUPT

    def _walk(self, head: int) -> _Segs | None:
        """Follow a chain (2.7.5, 2.7.5.3) reading at most 2*size descriptors, so a loop
        ends as an over-long walk; None (and the queue stopped) on a fatal fault."""
        size, translate = self.size, self.translate
        d64, d32, d16 = self._d64, self._d32, self._d16
        rd: list[memoryview] = []
        wr: list[memoryview] = []
        i, entries, nested, total = head, size, False, 0
        budget = 2 * size
        while True:
            if i >= entries:
                self._stop(f"2.7.5: next {i} >= {entries} entries")
                return None
            if budget == 0:
                self._stop(f"2.7.5.2: chain from head {head} loops or is too long")
                return None
            budget -= 1
            base = 4 * i
            addr, ln, flags, nxt = d64[2 * i], d32[base + 2], d16[2 * base + 6], d16[2 * base + 7]
            if flags & F_INDIRECT:
                # 2.7.5.3.1: one level only and whole descriptors; NEXT beside INDIRECT
                # and INDIRECT without the feature are read past (the table ends the chain)
                if nested:
                    self._stop("2.7.5.3.1: indirect descriptor inside an indirect table")
                    return None
                table = indirect_table(translate, addr, ln, self.native)
                if isinstance(table, str):
                    self._stop(f"2.7.5.3: {table}")
                    return None
                d64, d32, d16 = table
                i, entries, nested = 0, ln // DESC_SIZE, True
                continue
            v = translate(addr, ln)
            if v is None:
                self._stop(f"2.7.5: buffer {addr:#x}+{ln} outside guest memory")
                return None
            total += ln
            if total >= LEN_LIMIT:
                self._stop("2.7.5.2: chain length reaches 4 GiB")
                return None
            (wr if flags & F_WRITE else rd).append(v)
            if not flags & F_NEXT:
                return rd, wr
            i = nxt


def _scatter(wr: list[memoryview], reply: bytes, in_len: int) -> int:
    """Write ``reply`` (cut to ``in_len``) across the writable segments; its length."""
    n = min(len(reply), in_len)
    off = 0
    for v in wr:
        if off >= n:
            break
        k = min(len(v), n - off)
        v[:k] = reply[off: off + k]
        off += k
    return n
