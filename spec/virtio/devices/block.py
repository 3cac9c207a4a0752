"""virtio-blk (VIRTIO 1.3 §5.2): config layout, request encoding and a disk oracle.

The oracle is a pure function from (disk, request, features) to the *set* of outcomes a
conforming device may produce; :func:`check_completion` judges one observed completion
against it and names the requirement that was broken.  Zoned-device commands are only
modelled as far as the non-zoned rule: without VIRTIO_BLK_F_ZONED they are UNSUPP.
"""

from __future__ import annotations

import struct

import attrs

from spec.virtio import features as F
from spec.virtio.config import layout
from spec.virtio.verdict import Violation

DEVICE_ID = F.BLOCK
SECTOR = 512
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_GET_LIFETIME = 0, 1, 4, 8, 10
T_DISCARD, T_WRITE_ZEROES, T_SECURE_ERASE = 11, 13, 14
T_ZONE = (15, 16, 18, 20, 22, 24, 26)  # append, report, open, close, finish, reset, reset_all
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
ID_BYTES = 20
SEGMENT = struct.Struct("<QII")  # virtio_blk_discard_write_zeroes
HEADER = struct.Struct("<IIQ")  # type, reserved, sector
FB = F.BLK_FEATURES

CONFIG = layout(
    ("capacity", 8),
    ("size_max", 4, FB["SIZE_MAX"]),
    ("seg_max", 4, FB["SEG_MAX"]),
    ("cylinders", 2, FB["GEOMETRY"]),
    ("heads", 1, FB["GEOMETRY"]),
    ("sectors", 1, FB["GEOMETRY"]),
    ("blk_size", 4, FB["BLK_SIZE"]),
    ("physical_block_exp", 1, FB["TOPOLOGY"]),
    ("alignment_offset", 1, FB["TOPOLOGY"]),
    ("min_io_size", 2, FB["TOPOLOGY"]),
    ("opt_io_size", 4, FB["TOPOLOGY"]),
    ("writeback", 1, FB["CONFIG_WCE"]),
    ("unused0", 1),
    ("num_queues", 2, FB["MQ"]),
    ("max_discard_sectors", 4, FB["DISCARD"]),
    ("max_discard_seg", 4, FB["DISCARD"]),
    ("discard_sector_alignment", 4, FB["DISCARD"]),
    ("max_write_zeroes_sectors", 4, FB["WRITE_ZEROES"]),
    ("max_write_zeroes_seg", 4, FB["WRITE_ZEROES"]),
    ("write_zeroes_may_unmap", 1, FB["WRITE_ZEROES"]),
    ("unused1", 3, None, True),
    ("max_secure_erase_sectors", 4, FB["SECURE_ERASE"]),
    ("max_secure_erase_seg", 4, FB["SECURE_ERASE"]),
    ("secure_erase_sector_alignment", 4, FB["SECURE_ERASE"]),
    ("zone_sectors", 4, FB["ZONED"]),
    ("max_open_zones", 4, FB["ZONED"]),
    ("max_active_zones", 4, FB["ZONED"]),
    ("max_append_sectors", 4, FB["ZONED"]),
    ("write_granularity", 4, FB["ZONED"]),
    ("model", 1, FB["ZONED"]),
    ("unused2", 3, None, True),
)


@attrs.frozen
class Request:
    type: int
    sector: int = 0
    data: bytes = b""  # device-readable payload (OUT, DISCARD, ...)
    in_len: int = 0  # device-writable bytes before the status byte (IN, GET_ID)
    reserved: int = 0

    def encode_header(self) -> bytes:
        return HEADER.pack(self.type, self.reserved, self.sector)


def decode_header(raw: bytes) -> tuple[int, int, int]:
    """(type, reserved, sector) from the first 16 bytes."""
    return HEADER.unpack_from(raw)


def encode_segment(sector: int, num_sectors: int, unmap: bool = False, flags: int = 0) -> bytes:
    return SEGMENT.pack(sector, num_sectors, (1 if unmap else 0) | (flags & ~1))


def decode_segments(data: bytes) -> list[tuple[int, int, int]]:
    return [SEGMENT.unpack_from(data, i) for i in range(0, len(data) - len(data) % 16, 16)]


@attrs.frozen
class Disk:
    """What reads return (``data``) and what survives power loss (``stable``)."""

    data: bytes
    stable: bytes
    device_id: bytes = b"pvspec-disk"

    @classmethod
    def blank(cls, sectors: int) -> Disk:
        z = bytes(sectors * SECTOR)
        return cls(z, z)

    @property
    def capacity(self) -> int:
        return len(self.data) // SECTOR


@attrs.frozen
class Outcome:
    status: int
    written_in: bytes = b""  # bytes the device put in the writable data part
    disk: Disk | None = None  # the disk afterwards (None: unchanged)


def _write_through(features: int, writeback: int) -> bool:
    """§5.2.6.2 cases 1 and 2: completion of a write makes it stable."""
    wce, flush = F.has(features, FB["CONFIG_WCE"]), F.has(features, FB["FLUSH"])
    return (not wce and not flush) or (wce and writeback == 0)


def allowed(disk: Disk, req: Request, features: int, writeback: int = 0) -> list[Outcome]:
    """Every outcome a conforming device may give for ``req`` (§5.2.6)."""
    ioerr = Outcome(S_IOERR)
    if req.type in T_ZONE and not F.has(features, FB["ZONED"]):
        return [Outcome(S_UNSUPP)]  # §5.2.6.2
    if req.type in (T_IN, T_OUT):
        length = req.in_len if req.type == T_IN else len(req.data)
        end = req.sector + length // SECTOR
        if length % SECTOR or end > disk.capacity:
            return [ioerr]  # a driver error (§5.2.6.1) reported as IOERR (§5.2.6)
        lo, hi = req.sector * SECTOR, end * SECTOR
        if req.type == T_IN:
            return [Outcome(S_OK, disk.data[lo:hi]), ioerr]
        if F.has(features, FB["RO"]):
            return [ioerr]  # §5.2.6.2: no data written
        data = disk.data[:lo] + req.data + disk.data[hi:]
        stable = (
            disk.stable[:lo] + req.data + disk.stable[hi:]
            if _write_through(features, writeback)
            else disk.stable
        )
        return [Outcome(S_OK, disk=Disk(data, stable, disk.device_id)), ioerr]
    if req.type == T_FLUSH:
        if not F.has(features, FB["FLUSH"]):
            return [Outcome(S_UNSUPP), Outcome(S_OK), ioerr]
        return [Outcome(S_OK, disk=Disk(disk.data, disk.data, disk.device_id)), ioerr]
    if req.type == T_GET_ID:
        ident = disk.device_id[:ID_BYTES].ljust(ID_BYTES, b"\0")
        return [Outcome(S_OK, ident[: req.in_len]), Outcome(S_UNSUPP), ioerr]
    if req.type in (T_DISCARD, T_WRITE_ZEROES, T_SECURE_ERASE):
        return _allowed_ranges(disk, req, features)
    return [Outcome(S_UNSUPP), ioerr]


def _allowed_ranges(disk: Disk, req: Request, features: int) -> list[Outcome]:
    feat = {T_DISCARD: "DISCARD", T_WRITE_ZEROES: "WRITE_ZEROES", T_SECURE_ERASE: "SECURE_ERASE"}
    if not F.has(features, FB[feat[req.type]]):
        return [Outcome(S_UNSUPP), Outcome(S_IOERR)]
    segs = decode_segments(req.data)
    for _, _, flags in segs:
        if flags & ~1 or (req.type == T_DISCARD and flags & 1):
            return [Outcome(S_UNSUPP)]  # §5.2.6.2: unknown flag, or unmap on discard
    if any(s + n > disk.capacity for s, n, _ in segs):
        return [Outcome(S_IOERR)]
    if req.type != T_WRITE_ZEROES:
        return [Outcome(S_OK), Outcome(S_IOERR)]  # discarded content is unspecified
    data = bytearray(disk.data)
    for s, n, _ in segs:
        data[s * SECTOR : (s + n) * SECTOR] = bytes(n * SECTOR)
    return [Outcome(S_OK, disk=Disk(bytes(data), disk.stable, disk.device_id)), Outcome(S_IOERR)]


_RULE = {
    T_OUT: "VIRTIO-5.2.6.2-DEV-RO-IOERR",
    T_WRITE_ZEROES: "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO",
    T_DISCARD: "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS",
    T_FLUSH: "VIRTIO-5.2.6.2-DEV-STABLE-WRITES",
}


def check_completion(
    disk: Disk, req: Request, features: int, observed: Outcome, writeback: int = 0
) -> Violation | None:
    """Judge one completion: status, returned bytes and disk effect must match an allowed outcome.

    ``observed.disk`` is the disk after the request (``None`` = untouched).
    """
    outs = allowed(disk, req, features, writeback)
    after = observed.disk or disk
    for o in outs:
        if o.status != observed.status:
            continue
        want_disk = o.disk or disk
        data_ok = (o.status != S_OK or req.type != T_IN) or observed.written_in == o.written_in
        if o.status == S_IOERR and req.type not in (T_DISCARD, T_WRITE_ZEROES, T_SECURE_ERASE):
            disk_ok = after.data == disk.data  # a failed read/write leaves data unchanged
        elif req.type in (T_DISCARD, T_SECURE_ERASE):
            disk_ok = True  # content after discard is unspecified
        else:
            disk_ok = after.data == want_disk.data and _stable_ok(after, want_disk)
        if data_ok and disk_ok:
            return None
    return Violation(
        rule_for(disk, req, features, observed),
        "device",
        f"type {req.type} sector {req.sector}: status {observed.status}",
    )


def _stable_ok(after: Disk, want: Disk) -> bool:
    """Every byte the model says is stable must be stable in the implementation too.

    That is: no index where ``want.stable == want.data`` but ``after.stable`` differs.
    Computed on whole disks at C speed (XOR, then a byte table marking zero / non-zero).
    """
    if after.stable == want.stable:
        return True
    n = len(want.data)
    if len(after.stable) != n or len(want.stable) != n:
        raise ValueError("disks of different sizes")
    settled = _xor(want.stable, want.data).translate(_IS_ZERO)  # 1 where the model is stable
    moved = _xor(after.stable, want.stable).translate(_IS_NONZERO)  # 1 where after differs
    return not int.from_bytes(settled, "little") & int.from_bytes(moved, "little")


_IS_ZERO = bytes([1] + [0] * 255)
_IS_NONZERO = bytes([0] + [1] * 255)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def rule_for(disk: Disk, req: Request, features: int, observed: Outcome) -> str:
    """The requirement a completion of ``req`` is judged against (5.2.6, 5.2.6.2)."""
    if req.type in T_ZONE:
        return "VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP"
    if req.type in (T_IN, T_OUT):
        end = req.sector + (req.in_len if req.type == T_IN else len(req.data)) // SECTOR
        if end > disk.capacity:
            return "VIRTIO-5.2.6.2-DEV-OUT-OF-RANGE-IOERR"
        if req.type == T_OUT and F.has(features, FB["RO"]):
            return "VIRTIO-5.2.6.2-DEV-RO-IOERR"
        if req.type == T_OUT and observed.status == S_OK:
            return "VIRTIO-5.2.6.2-DEV-STABLE-WRITES"
        return "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"
    if (
        req.type == T_WRITE_ZEROES
        and observed.status == S_OK
        and not any(flags & ~1 for _, _, flags in decode_segments(req.data))
    ):
        return "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO"
    return _RULE.get(req.type, "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS")


def reference_device(disk: Disk, req: Request, features: int, writeback: int = 0) -> Outcome:
    """A conforming device: the first (successful when possible) allowed outcome."""
    o = allowed(disk, req, features, writeback)[0]
    return attrs.evolve(o, disk=o.disk or disk)


# --- driver-side and config checks -----------------------------------------------------


def check_driver_request(req: Request, capacity: int, cfg: dict[str, int]) -> Violation | None:
    """§5.2.6.1: what a driver may put in a request."""

    def v(rid: str, d: str) -> Violation:
        return Violation(rid, "driver", d)

    if req.type in (T_IN, T_OUT):
        length = req.in_len if req.type == T_IN else len(req.data)
        if length % SECTOR:
            return v("VIRTIO-5.2.6.1-DRV-DATA-MULTIPLE-512", f"{length} bytes")
        if req.sector + length // SECTOR > capacity:
            return v("VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY", f"sector {req.sector}")
    if req.type == T_FLUSH and req.sector != 0:
        return v("VIRTIO-5.2.6.1-DRV-FLUSH-SECTOR-ZERO", f"sector {req.sector}")
    if req.type == T_GET_ID and req.in_len != ID_BYTES:
        return v("VIRTIO-5.2.6.1-DRV-GET-ID-20", f"{req.in_len} bytes")
    if req.type in (T_DISCARD, T_WRITE_ZEROES, T_SECURE_ERASE):
        if len(req.data) % SEGMENT.size:
            return v("VIRTIO-5.2.6.1-DRV-SEGMENT-MULTIPLE", f"{len(req.data)} bytes")
        limit = cfg.get(
            {
                T_DISCARD: "max_discard_seg",
                T_WRITE_ZEROES: "max_write_zeroes_seg",
                T_SECURE_ERASE: "max_secure_erase_seg",
            }[req.type],
            1,
        )
        segs = decode_segments(req.data)
        if len(segs) > limit:
            return v("VIRTIO-5.2.6.1-DRV-MAX-SEGMENTS", f"{len(segs)} > {limit}")
        if req.type == T_DISCARD and any(f & 1 for _, _, f in segs):
            return v("VIRTIO-5.2.6.1-DRV-DISCARD-NO-UNMAP", "unmap set on discard")
        if any(s + n > capacity for s, n, _ in segs):
            return v("VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY", "segment past capacity")
    return None


def check_config(raw: bytes, offered: int, negotiated: int) -> Violation | None:
    """§5.2.5.2: zero padding; writeback starts at 0 with CONFIG_WCE but no FLUSH."""
    cfg = CONFIG.decode(raw)
    if cfg.get("unused0", 0) or any(cfg.get("unused1", b"\0\0\0")):
        return Violation("VIRTIO-5.2.5.2-DEV-PADDING-ZERO", "device", "padding not zero")
    wce, flush = F.has(negotiated, FB["CONFIG_WCE"]), F.has(negotiated, FB["FLUSH"])
    if wce and not flush and cfg.get("writeback", 0) != 0:
        return Violation("VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO", "device", "writeback not 0")
    return None


def check_driver_writeback_read(features_ok: bool) -> Violation | None:
    """§5.2.5.1: ``writeback`` is read only after FEATURES_OK."""
    if not features_ok:
        return Violation("VIRTIO-5.2.5.1-DRV-WRITEBACK-AFTER-FEATURES-OK", "driver", "early read")
    return None


def check_lifetime(raw: bytes) -> Violation | None:
    """§5.2.6.2: GET_LIFETIME answers use no reserved value (pre_eol <= 3, estimates <= 11)."""
    pre_eol, a, b = struct.unpack_from("<HHH", raw)
    if pre_eol > 3 or a > 11 or b > 11:
        return Violation("VIRTIO-5.2.6.2-DEV-LIFETIME-RESERVED", "device", f"{pre_eol},{a},{b}")
    return None
