"""virtio-gpu 2D (VIRTIO 1.3 5.7): resources, backing pages, scanouts, transfers, flushes.

Commands are checked in the order scanout, resource, geometry; all rectangle arithmetic
is on unbounded ints, so ``x + width`` cannot wrap the way a 32-bit sum would.  Host
pixel memory is allocated on first transfer and bounded by ``memory_limit``
(ERR_OUT_OF_MEMORY beyond it).  Self-contained: no ``spec`` import.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

DEVICE_ID = 16  # 5 "Device Types": GPU
CONTROLQ, CURSORQ = 0, 1
RING_FEATURES = sum(1 << b for b in (28, 29, 32, 35))  # no 5.7.3 bits: 2D only
HDR = struct.Struct("<IIQIB3x")  # 5.7.6.7: type, flags, fence_id, ctx_id, ring_idx
MEM_ENTRY = struct.Struct("<QII")  # addr, length, padding
FLAG_FENCE = 1
MAX_SCANOUTS = 16
EVENT_DISPLAY = 1
BPP = 4  # every 2D format of 5.7.6.8 is 32 bits per pixel
FORMATS = frozenset({1, 2, 3, 4, 67, 68, 121, 134})
MAX_BACKING_ENTRIES = 16384

GET_DISPLAY_INFO, RESOURCE_CREATE_2D, RESOURCE_UNREF = 0x100, 0x101, 0x102
SET_SCANOUT, RESOURCE_FLUSH, TRANSFER_TO_HOST_2D = 0x103, 0x104, 0x105
RESOURCE_ATTACH_BACKING, RESOURCE_DETACH_BACKING = 0x106, 0x107
UPDATE_CURSOR, MOVE_CURSOR = 0x300, 0x301
OK_NODATA, OK_DISPLAY_INFO = 0x1100, 0x1101
ERR_UNSPEC, ERR_OUT_OF_MEMORY, ERR_INVALID_SCANOUT_ID = 0x1200, 0x1201, 0x1202
ERR_INVALID_RESOURCE_ID, ERR_INVALID_PARAMETER = 0x1203, 0x1205

# command -> payload layout after the header (5.7.6.8)
PAYLOAD = {
    GET_DISPLAY_INFO: struct.Struct("<"),
    RESOURCE_CREATE_2D: struct.Struct("<4I"),  # resource_id, format, width, height
    RESOURCE_UNREF: struct.Struct("<2I"),  # resource_id, padding
    SET_SCANOUT: struct.Struct("<6I"),  # rect, scanout_id, resource_id
    RESOURCE_FLUSH: struct.Struct("<6I"),  # rect, resource_id, padding
    TRANSFER_TO_HOST_2D: struct.Struct("<4IQ2I"),  # rect, offset, resource_id, padding
    RESOURCE_ATTACH_BACKING: struct.Struct("<2I"),  # resource_id, nr_entries (+ entries)
    RESOURCE_DETACH_BACKING: struct.Struct("<2I"),  # resource_id, padding
}

Rect = tuple[int, int, int, int]
ReadGuest = Callable[[int, int], bytes]


class CommandError(Exception):
    """Ends a command with an error response type."""

    def __init__(self, resp: int) -> None:
        super().__init__(hex(resp))
        self.resp = resp


@dataclass
class Resource:
    format: int
    width: int
    height: int
    backing: tuple[tuple[int, int], ...] | None = None
    pixels: bytearray | None = None

    @property
    def size(self) -> int:
        return self.width * self.height * BPP


def inside(rect: Rect, res: Resource) -> bool:
    x, y, w, h = rect
    return x + w <= res.width and y + h <= res.height


class GpuDevice:
    """5.7.6.7/5.7.6.8 controlq semantics.

    ``read_guest(addr, n)`` reads backing pages; it returns fewer than ``n`` bytes where
    guest memory is not readable, and the transfer then fails with ERR_UNSPEC.
    """

    device_id = DEVICE_ID
    features = RING_FEATURES

    def __init__(self, read_guest: ReadGuest, num_scanouts: int = 1,
                 modes: tuple[tuple[int, int], ...] = ((1024, 768),),
                 memory_limit: int = 256 << 20) -> None:
        if not 1 <= num_scanouts <= MAX_SCANOUTS:
            raise ValueError("1..16 scanouts (5.7.4)")
        self.read_guest = read_guest
        self.num_scanouts = num_scanouts
        self.modes = list(modes) + [(0, 0)] * (num_scanouts - len(modes))
        self.memory_limit = memory_limit
        self.events_read = 0
        self.resources: dict[int, Resource] = {}
        self.scanouts: list[tuple[int, Rect]] = [(0, (0, 0, 0, 0))] * num_scanouts
        self.flushes: list[tuple[int, Rect]] = []  # (scanout, rect) shown on a display
        self.cursor: tuple[int, int, int, int] | None = None  # scanout, x, y, resource

    # --- config (5.7.4) -----------------------------------------------------------------

    def config(self) -> bytes:
        return struct.pack("<4I", self.events_read, 0, self.num_scanouts, 0)

    def write_config(self, offset: int, data: bytes) -> None:
        """events_clear (offset 4) clears the bits written; the rest is read-only."""
        if offset == 4 and len(data) == 4:
            self.events_read &= ~int.from_bytes(data, "little")

    def set_mode(self, scanout: int, width: int, height: int) -> None:
        """A display changed size: new mode, and EVENT_DISPLAY for the driver."""
        self.modes[scanout] = (width, height)
        self.events_read |= EVENT_DISPLAY

    # --- queues -------------------------------------------------------------------------

    def ready(self, queue: int) -> bool:
        return queue in (CONTROLQ, CURSORQ)

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        if queue == CURSORQ:
            self.cursor_command(out)
            return b""  # cursor commands carry no response
        if queue != CONTROLQ:
            raise ValueError(f"virtio-gpu has no queue {queue}")
        return self.command(out)[:in_len]

    def cursor_command(self, out: bytes) -> None:
        """5.7.6.10 (outside the modelled subset): remember where the cursor is."""
        if len(out) >= HDR.size + 20 and HDR.unpack_from(out)[0] in (UPDATE_CURSOR, MOVE_CURSOR):
            sid, x, y, _pad, rid = struct.unpack_from("<5I", out, HDR.size)
            self.cursor = (sid, x, y, rid)

    def command(self, out: bytes) -> bytes:
        """The whole response for one controlq request."""
        if len(out) < HDR.size:
            return HDR.pack(ERR_UNSPEC, 0, 0, 0, 0)
        typ, flags, fence_id, ctx_id, _ring = HDR.unpack_from(out)
        fenced = flags & FLAG_FENCE
        body = b""
        try:
            layout = PAYLOAD.get(typ)
            if layout is None or len(out) < HDR.size + layout.size:
                raise CommandError(ERR_UNSPEC)  # unknown or miss-sized
            fields = layout.unpack_from(out, HDR.size)
            resp, body = self.execute(typ, fields, out[HDR.size + layout.size :])
        except CommandError as e:
            resp = e.resp
        # 5.7.6.5: a fenced command answers once done, with the fence flag and id copied
        head = HDR.pack(resp, FLAG_FENCE if fenced else 0, fence_id if fenced else 0,
                        ctx_id if fenced else 0, 0)
        return head + body

    def execute(self, typ: int, f: tuple[int, ...], extra: bytes) -> tuple[int, bytes]:
        if typ == GET_DISPLAY_INFO:
            return OK_DISPLAY_INFO, self.display_info()
        if typ == RESOURCE_CREATE_2D:
            self.create_2d(*f)
        elif typ == RESOURCE_UNREF:
            self.resource(f[0])
            del self.resources[f[0]]
            self.scanouts = [s if s[0] != f[0] else (0, (0, 0, 0, 0)) for s in self.scanouts]
        elif typ == SET_SCANOUT:
            self.set_scanout(f[:4], f[4], f[5])
        elif typ == RESOURCE_FLUSH:
            res = self.resource(f[4])
            self.check_rect(f[:4], res)
            self.flushes += [(i, f[:4]) for i, s in enumerate(self.scanouts) if s[0] == f[4]]
        elif typ == TRANSFER_TO_HOST_2D:
            self.transfer(f[:4], f[4], f[5])
        elif typ == RESOURCE_ATTACH_BACKING:
            self.attach(f[0], f[1], extra)
        else:  # RESOURCE_DETACH_BACKING
            self.resource(f[0]).backing = None
        return OK_NODATA, b""

    def display_info(self) -> bytes:
        """16 pmodes: rect, enabled, flags; scanouts past num_scanouts stay zero."""
        out = bytearray(MAX_SCANOUTS * 24)
        for i, (w, h) in enumerate(self.modes[: self.num_scanouts]):
            struct.pack_into("<6I", out, 24 * i, 0, 0, w, h, int(w > 0 and h > 0), 0)
        return bytes(out)

    # --- the commands ---------------------------------------------------------------------

    def resource(self, rid: int) -> Resource:
        res = self.resources.get(rid)
        if res is None:
            raise CommandError(ERR_INVALID_RESOURCE_ID)
        return res

    def check_rect(self, rect: Rect, res: Resource) -> None:
        if not inside(rect, res):
            raise CommandError(ERR_INVALID_PARAMETER)

    def create_2d(self, rid: int, fmt: int, width: int, height: int) -> None:
        if rid == 0 or rid in self.resources:
            raise CommandError(ERR_INVALID_RESOURCE_ID)
        if fmt not in FORMATS or width == 0 or height == 0:
            raise CommandError(ERR_INVALID_PARAMETER)
        res = Resource(fmt, width, height)
        if sum(r.size for r in self.resources.values()) + res.size > self.memory_limit:
            raise CommandError(ERR_OUT_OF_MEMORY)
        self.resources[rid] = res

    def set_scanout(self, rect: Rect, sid: int, rid: int) -> None:
        if sid >= self.num_scanouts:
            raise CommandError(ERR_INVALID_SCANOUT_ID)
        if rid != 0:  # resource 0 turns the scanout off
            self.check_rect(rect, self.resource(rid))
        self.scanouts[sid] = (rid, rect)

    def attach(self, rid: int, nr: int, extra: bytes) -> None:
        res = self.resource(rid)
        if nr > MAX_BACKING_ENTRIES or len(extra) < nr * MEM_ENTRY.size:
            raise CommandError(ERR_UNSPEC)
        res.backing = tuple(MEM_ENTRY.unpack_from(extra, i * MEM_ENTRY.size)[:2]
                            for i in range(nr))

    def transfer(self, rect: Rect, offset: int, rid: int) -> None:
        """Copy guest rows into the resource: row i of the rect starts at
        ``offset + i * stride`` in the backing store (stride = width * 4)."""
        res = self.resource(rid)
        self.check_rect(rect, res)
        if res.backing is None:
            raise CommandError(ERR_UNSPEC)
        x, y, w, h = rect
        stride = res.width * BPP
        if h and w and offset + (h - 1) * stride + w * BPP > sum(n for _, n in res.backing):
            raise CommandError(ERR_UNSPEC)  # the rows reach past the backing store
        rows = [self.read_backing(res.backing, offset + i * stride, w * BPP) for i in range(h)]
        if res.pixels is None:
            res.pixels = bytearray(res.size)
        for i, row in enumerate(rows):
            start = (y + i) * stride + x * BPP
            res.pixels[start : start + len(row)] = row

    def read_backing(self, backing: tuple[tuple[int, int], ...], pos: int, n: int) -> bytes:
        """``n`` bytes at offset ``pos`` of the scatter list, read from guest memory."""
        out = bytearray()
        for addr, length in backing:
            if n == 0:
                break
            if pos >= length:
                pos -= length
                continue
            take = min(length - pos, n)
            chunk = self.read_guest(addr + pos, take)
            if len(chunk) != take:
                raise CommandError(ERR_UNSPEC)
            out += chunk
            n -= take
            pos = 0
        return bytes(out)

    def pixels(self, rid: int) -> bytes:
        """The host copy of a resource (zeros where nothing was transferred)."""
        res = self.resources[rid]
        return bytes(res.pixels) if res.pixels is not None else bytes(res.size)
