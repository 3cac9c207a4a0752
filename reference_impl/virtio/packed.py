"""The device side of a packed virtqueue (VIRTIO 1.3 2.8), generic over :class:`Device`.

One descriptor ring carries both directions.  A slot is available to the device when
its AVAIL bit equals the device's avail wrap counter and its USED bit does not; the
device hands a buffer back by writing one used descriptor (len, buffer id, then flags
with AVAIL = USED = its used wrap counter, 2.8.1, 2.8.21.3) at its used position and
skipping as many slots as the buffer's list took (2.8.6).  Each counter flips when its
position passes the end of the ring.  Notifications both ways go through the event
suppression structures of 2.8.10 (driver area: used-buffer notifications; device area:
driver kicks).  A fatal list fault stops the queue, as in :mod:`.split`.
"""

from __future__ import annotations

from reference_impl.virtio._wire import (
    DESC_SIZE,
    EVENT_DESC,
    EVENT_DISABLE,
    F_EVENT_IDX,
    F_INDIRECT,
    F_NEXT,
    F_WRITE,
    LEN_LIMIT,
    LITTLE_ENDIAN,
    MAX_QUEUE,
    PACKED_AVAIL,
    PACKED_USED,
    Translate,
    desc_table,
    feature,
    flat,
    indirect_table,
    packed_need_event,
    region_of,
    words,
)
from reference_impl.virtio.device import Device
from reference_impl.virtio.split import _scatter

EVENT_SIZE = 4  # 2.8.10: le16 desc (offset | wrap << 15), le16 flags


class PackedQueue:
    """One packed virtqueue.  ``ring`` is the descriptor ring (16*size bytes); ``driver``
    and ``device`` are the 4-byte driver and device event suppression areas (2.8.10.1)."""

    def __init__(self, size: int, ring: memoryview, driver: memoryview, device: memoryview,
                 translate: Translate, features: int, next_avail: int = 0,
                 avail_wrap: bool = True, next_used: int | None = None,
                 used_wrap: bool | None = None, native: bool = LITTLE_ENDIAN) -> None:
        if not 0 < size <= MAX_QUEUE:
            raise ValueError(f"packed queue size {size} outside 1..32768")
        self.size = size
        self.translate = translate
        self._flat = region_of(translate) or (0, None, 0)
        self.event_idx = feature(features, F_EVENT_IDX)
        r = ring[: DESC_SIZE * size]
        self._d64, self._d32, self._d16 = desc_table(r, native)
        self._drv16 = words(driver[:EVENT_SIZE], "H", native)
        self._dev16 = words(device[:EVENT_SIZE], "H", native)
        self.native = native
        # 2.8.1: both wrap counters start at 1; the used side trails the avail side only
        # while buffers are in flight, which this device never leaves across calls
        self.next_avail, self.avail_wrap = next_avail, int(avail_wrap)
        self.next_used = next_avail if next_used is None else next_used
        self.used_wrap = self.avail_wrap if used_wrap is None else int(used_wrap)
        self.broken = False
        self.fault: str | None = None

    @classmethod
    def over(cls, memory: memoryview | bytearray, size: int, ring: int, driver: int,
             device: int, features: int, base: int = 0,
             native: bool = LITTLE_ENDIAN) -> PackedQueue:
        """A queue whose ring, event areas and buffers all live in one flat region."""
        mv = memoryview(memory).cast("B")
        return cls(size, mv[ring - base:], mv[driver - base:], mv[device - base:],
                   flat(mv, base), features, native=native)

    def set_event(self, mode: int, off: int = 0, wrap: bool = False) -> None:
        """Write the device event suppression structure: how the driver should kick
        (2.8.10: ENABLE, DISABLE, or DESC at ``off`` in phase ``wrap`` with EVENT_IDX)."""
        self._dev16[0] = (off & 0x7FFF) | (0x8000 if wrap else 0)
        self._dev16[1] = mode

    def _stop(self, why: str) -> None:
        self.broken, self.fault = True, why

    def process(self, dev: Device, queue: int = 0) -> bool:
        """Serve available buffers in ring order while ``dev.ready(queue)`` (2.8.12, at most
        one ring's worth per call); return whether a used-buffer notification is due."""
        if self.broken:
            return False
        d64, d32, d16 = self._d64, self._d32, self._d16
        n, translate = self.size, self.translate
        pos, w = self.next_avail, self.avail_wrap
        upos, uw = self.next_used, self.used_wrap
        ready, serve = dev.ready, dev.serve
        flat_base, flat_mem, flat_len = self._flat
        slots = 0
        while slots < n:
            flags = d16[8 * pos + 7]
            if (flags >> 7 & 1) != w or (flags >> 15) == w:
                break  # 2.8.1: not (yet) available in this phase
            if not ready(queue):
                break
            if flags & (F_NEXT | F_INDIRECT):
                got = self._walk(pos, w)
                if isinstance(got, int):  # fatal: skip the slots read, stop (2.8.17)
                    pos, w = _advance(pos, w, n, got)
                    break
                ident, ndesc, rd, wr = got
                if slots + ndesc > n:
                    break
                in_len = 0
                for v in wr:
                    in_len += len(v)
                reply = serve(queue, b"".join(rd), in_len)
                written = _scatter(wr, reply, in_len) if reply else 0
            else:  # the fast path: one direct descriptor
                base = 4 * pos
                ln = d32[base + 2]
                if flat_mem is None:
                    v = translate(d64[2 * pos], ln)
                else:
                    off = d64[2 * pos] - flat_base
                    v = flat_mem[off: off + ln] if off >= 0 and off + ln <= flat_len else None
                if v is None:
                    self._stop(f"2.8.13: buffer in slot {pos} outside guest memory")
                    pos, w = _advance(pos, w, n, 1)
                    break
                ident, ndesc = d16[2 * base + 6], 1
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
            # 2.8.21.3: len and id first, then the flags that hand the slot back
            base = 4 * upos
            d32[base + 2] = written
            d16[2 * base + 6] = ident
            d16[2 * base + 7] = ((F_WRITE if written else 0)
                                 | (PACKED_AVAIL | PACKED_USED if uw else 0))
            slots += ndesc
            pos += ndesc
            if pos >= n:
                pos, w = pos - n, w ^ 1
            upos += ndesc
            if upos >= n:
                upos, uw = upos - n, uw ^ 1
        self.next_avail, self.avail_wrap = pos, w
        self.next_used, self.used_wrap = upos, uw
        return self._decide(slots)

    def _decide(self, added: int) -> bool:
        """2.8.10: the driver area's flags say ENABLE, DISABLE or DESC (with EVENT_IDX:
        notify only if the used slots just written cover the named one, 2.8.14)."""
        if added == 0:
            return False
        mode = self._drv16[1] & 3
        if mode == EVENT_DISABLE:
            return False
        if mode == EVENT_DESC and self.event_idx:
            return packed_need_event(self._drv16[0], self.next_used, self.used_wrap, added,
                                     self.size)
        return True  # ENABLE, DESC without EVENT_IDX, or the reserved value 3

    def _walk(self, pos: int, w: int) -> tuple[int, int, list[memoryview], list[memoryview]] | int:
        """Decode the list starting at slot ``pos`` (2.8.6, 2.8.7, 2.8.17): ``(buffer id,
        slots, readable, writable)``, or on a fatal fault the slots read so far."""
        n, translate = self.size, self.translate
        d64, d32, d16 = self._d64, self._d32, self._d16
        rd: list[memoryview] = []
        wr: list[memoryview] = []
        total, slots = 0, 0
        while True:
            slots += 1
            base = 4 * pos
            addr, ln, ident, flags = d64[2 * pos], d32[base + 2], d16[2 * base + 6], d16[
                2 * base + 7]
            if flags & F_INDIRECT:
                # 2.8.19: a list is either one indirect descriptor or direct ones only
                if slots > 1 or flags & F_NEXT:
                    self._stop("2.8.19: indirect descriptor inside a list")
                    return slots
                table = indirect_table(translate, addr, ln, self.native)
                if isinstance(table, str):
                    self._stop(f"2.8.19: {table}")
                    return slots
                t64, t32, t16 = table
                for k in range(ln // DESC_SIZE):
                    # 2.8.7: inside a table only WRITE counts; NEXT and INDIRECT are ignored
                    e_ln = t32[4 * k + 2]
                    v = translate(t64[2 * k], e_ln)
                    if v is None:
                        self._stop(f"2.8.19: indirect entry {k} outside guest memory")
                        return slots
                    total += e_ln
                    if total >= LEN_LIMIT:
                        self._stop("2.8.19: indirect buffer length reaches 4 GiB")
                        return slots
                    (wr if t16[8 * k + 7] & F_WRITE else rd).append(v)
                return ident, slots, rd, wr
            v = translate(addr, ln)
            if v is None:
                self._stop(f"2.8.13: buffer in slot {pos} outside guest memory")
                return slots
            total += ln
            if total >= LEN_LIMIT:
                self._stop("2.8.13: list length reaches 4 GiB")
                return slots
            (wr if flags & F_WRITE else rd).append(v)
            if not flags & F_NEXT:
                return ident, slots, rd, wr
            if slots >= n:
                self._stop("2.8.17: list longer than the ring")
                return slots
            pos += 1
            if pos == n:
                pos, w = 0, w ^ 1
            flags = d16[8 * pos + 7]
            if (flags >> 7 & 1) != w or (flags >> 15) == w:
                self._stop(f"2.8.17: list runs into slot {pos}, which is not available")
                return slots


def _advance(pos: int, wrap: int, n: int, step: int) -> tuple[int, int]:
    pos += step
    return (pos - n, wrap ^ 1) if pos >= n else (pos, wrap)
