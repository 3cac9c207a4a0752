"""virtio-blk (VIRTIO 1.3 5.2) request semantics as a :class:`Device`.

The rings live in :mod:`.split` and :mod:`.packed`; this module only turns a request's
readable bytes (header, data) into the bytes of its writable part (data, status).
"""

from __future__ import annotations

import struct

from reference_impl.virtio._wire import F_EVENT_IDX, F_IN_ORDER, F_INDIRECT_DESC, F_VERSION_1

HDR = struct.Struct("<IIQ")
SEG = struct.Struct("<QII")
SECTOR = 512
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
B_SEG_MAX, B_BLK_SIZE, B_FLUSH, B_DISCARD, B_WRITE_ZEROES = 2, 6, 9, 13, 14
DEVICE_ID = b"pvspec-ref-blk"
SEG_MAX = 126
MAX_SECTORS = 1 << 16
BLK_DEVICE_ID = 2  # 5 "Device Types"


def blk_features() -> int:
    """What the device offers (5.2.3): ring features are the split ring's (no RING_PACKED,
    as vhost-user-blk front-ends set up split rings)."""
    bits = (B_SEG_MAX, B_BLK_SIZE, B_FLUSH, B_DISCARD, B_WRITE_ZEROES, F_INDIRECT_DESC,
            F_EVENT_IDX, F_VERSION_1, F_IN_ORDER)
    return sum(1 << b for b in bits)


class BlkDevice:
    """The request semantics of 5.2.6 over a bytearray disk; one request queue (5.2.2)."""

    device_id = BLK_DEVICE_ID

    def __init__(self, disk: bytearray) -> None:
        self.disk = disk
        self.features = blk_features()

    def ready(self, queue: int) -> bool:
        return True  # a request queue: every buffer is a request to serve now

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        """Fill the whole writable part: data, zero padding, the status byte last.

        So the used length is all of it, and 2.7.8.2 (``len`` bytes written from the first
        writable byte) holds even for an error status, whose byte sits at the end (5.2.6).
        """
        if not in_len:
            return b""
        status, data = self.handle(out, in_len)
        return data[: in_len - 1].ljust(in_len - 1, b"\0") + bytes((status,))

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
