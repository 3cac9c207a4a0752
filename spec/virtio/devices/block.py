"""virtio-blk (VIRTIO 1.3 §5.2): config layout, request encoding and a disk oracle.

The oracle is a pure function from (disk, request, features) to the *set* of outcomes a
conforming device may produce; :func:`check_completion` judges one observed completion
against it and names the requirement that was broken, :func:`rule_for` the requirement a
completion was judged against ("" when it evaluates none).  Zoned-device commands are only
modelled as far as the non-zoned rule: without VIRTIO_BLK_F_ZONED they are UNSUPP.

A request that breaks a rule §5.2.6.1 sets for the driver (reading or writing past
``capacity``, a length that is no multiple of 512, a range segment past ``capacity``)
binds the device to no answer: §5.2.6.2 states none, and §5.2.6 only describes IOERR as
the status for a device *or driver* error.  Whatever the device answers is its choice
and is not judged (the ring rules still are).
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
T_RANGES = (T_DISCARD, T_WRITE_ZEROES, T_SECURE_ERASE)
# every request type §5.2.6 defines; any other is a type the device does not support
T_DEFINED = frozenset({T_IN, T_OUT, T_FLUSH, T_GET_ID, T_GET_LIFETIME, *T_RANGES, *T_ZONE})
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
    """What reads return (``data``) and what survives power loss (``stable``): a disk the
    suite knows whole (it created it, or sees its backing store).  ``known`` (one byte a
    sector, 0 = unspecified) marks what a discard or a failed write left open, until a
    write or a read makes it known again; None: every sector is known."""

    data: bytes
    stable: bytes
    device_id: bytes = b"pvspec-disk"
    known: bytes | None = None

    @classmethod
    def blank(cls, sectors: int) -> Disk:
        z = bytes(sectors * SECTOR)
        return cls(z, z)

    @property
    def capacity(self) -> int:
        return len(self.data) // SECTOR

    def read(self, lo: int, hi: int) -> bytes:
        return self.data[lo:hi]

    def unknown_spans(self) -> list[tuple[int, int]]:
        """The byte ranges whose content is unspecified."""
        if self.known is None:
            return []
        return [(i * SECTOR, (i + 1) * SECTOR) for i, k in enumerate(self.known) if not k]

    def knows(self, lo: int, hi: int) -> bool:
        """Whether any byte of ``[lo, hi)`` has a content a read could be judged by."""
        if self.known is None:
            return hi > lo
        return any(self.known[lo // SECTOR: -(-hi // SECTOR)])

    def matches(self, lo: int, got: bytes) -> bool:
        """Whether ``got``, read from byte ``lo``, is what the disk holds (unspecified
        sectors match anything)."""
        want = self.data[lo:lo + len(got)]
        if self.known is None or want == got:
            return want == got
        if lo % SECTOR or len(got) % SECTOR:
            return False
        base = lo // SECTOR
        return all(not self.known[base + k] or
                   want[k * SECTOR:(k + 1) * SECTOR] == got[k * SECTOR:(k + 1) * SECTOR]
                   for k in range(len(got) // SECTOR))

    def _marked(self, lo: int, hi: int, bit: int) -> bytes | None:
        if self.known is None and bit:
            return None
        mask = bytearray(self.known if self.known is not None else b"\1" * self.capacity)
        a, b = lo // SECTOR, -(-hi // SECTOR)
        mask[a:b] = bytes([bit]) * (b - a)
        return None if all(mask) else bytes(mask)

    def written(self, lo: int, data: bytes, stable: bool) -> Disk:
        hi = lo + len(data)
        return Disk(self.data[:lo] + data + self.data[hi:],
                    self.stable[:lo] + data + self.stable[hi:] if stable else self.stable,
                    self.device_id, self._marked(lo, hi, 1))

    def forgotten(self, lo: int, hi: int) -> Disk:
        """Content the standard leaves unspecified (discarded, or a write that failed)."""
        return attrs.evolve(self, known=self._marked(lo, hi, 0))

    def bound(self, lo: int, got: bytes) -> Disk:
        """A read's answer binds the unspecified sectors it covers."""
        if self.known is None:
            return self
        data = bytearray(self.data)
        for k in range(len(got) // SECTOR):
            if not self.known[lo // SECTOR + k]:
                data[lo + k * SECTOR: lo + (k + 1) * SECTOR] = got[k * SECTOR:(k + 1) * SECTOR]
        return Disk(bytes(data), self.stable, self.device_id,
                    self._marked(lo, lo + len(got), 1))

    def flushed(self) -> Disk:
        return Disk(self.data, self.data, self.device_id, self.known)

    def with_id(self, ident: bytes) -> Disk:
        return attrs.evolve(self, device_id=ident)


@attrs.frozen
class LearnedDisk:
    """A device's disk as far as the suite has seen it: the disk of a back-end it did not
    create (a socket target) is unknown until observed.  A sector becomes known when it is
    first read (its content is then bound: every later read must return it), written or
    zeroed; it becomes unknown again when the standard leaves its content unspecified (a
    discard, a write that failed).  Sparse: ``sectors`` holds what changed (None: made
    unknown) over ``base`` (the contents the suite started from, None when it knows
    none), so a disk of any capacity costs what was touched.  What survives power loss
    cannot be observed, so it has no ``stable`` part: 5.2.6.2's stable-write rule is not
    judged on such a disk."""

    capacity: int
    sectors: dict[int, bytes | None] = attrs.field(factory=dict, eq=True, hash=False)
    device_id: bytes = b""
    base: bytes | None = None

    def _span(self, lo: int, hi: int) -> range:
        return range(lo // SECTOR, -(-hi // SECTOR))

    def sector(self, i: int) -> bytes | None:
        """Sector ``i``'s content, None when unknown."""
        if i in self.sectors:
            return self.sectors[i]
        if self.base is None or i >= self.capacity:
            return None
        return self.base[i * SECTOR:(i + 1) * SECTOR]

    def read(self, lo: int, hi: int) -> bytes:
        """Known bytes, zero where unknown (the answer of a device that never wrote)."""
        return b"".join(self.sector(i) or bytes(SECTOR) for i in self._span(lo, hi))[
            lo % SECTOR: lo % SECTOR + hi - lo]

    def knows(self, lo: int, hi: int) -> bool:
        return any(self.sector(i) is not None for i in self._span(lo, hi))

    def matches(self, lo: int, got: bytes) -> bool:
        """``got`` agrees with every known sector it covers (reads are whole sectors)."""
        if lo % SECTOR or len(got) % SECTOR:
            return False
        first = lo // SECTOR
        return all(self.sector(first + k) in (None, got[k * SECTOR:(k + 1) * SECTOR])
                   for k in range(len(got) // SECTOR))

    def _with(self, lo: int, data: bytes | None, hi: int) -> LearnedDisk:
        sectors = dict(self.sectors)
        for i in self._span(lo, hi):
            k = i * SECTOR - lo
            sectors[i] = None if data is None else data[k:k + SECTOR]
        return attrs.evolve(self, sectors=sectors)

    def written(self, lo: int, data: bytes, stable: bool) -> LearnedDisk:
        return self._with(lo, data, lo + len(data))

    def forgotten(self, lo: int, hi: int) -> LearnedDisk:
        return self._with(lo, None, hi)

    def bound(self, lo: int, got: bytes) -> LearnedDisk:
        """A read's answer binds the sectors it covers (known ones are unchanged: the judge
        has checked they agree)."""
        return self._with(lo, got, lo + len(got))

    def flushed(self) -> LearnedDisk:
        return self

    def with_id(self, ident: bytes) -> LearnedDisk:
        return attrs.evolve(self, device_id=ident)


AnyDisk = Disk | LearnedDisk


@attrs.frozen
class Outcome:
    status: int
    written_in: bytes = b""  # bytes the device put in the writable data part
    disk: AnyDisk | None = None  # the disk afterwards (None: unchanged)
    # byte ranges whose content the standard leaves open after this outcome (a discard,
    # a failed write): whatever the device left there is accepted
    unspecified: tuple[tuple[int, int], ...] = ()


def _write_through(features: int, writeback: int) -> bool:
    """§5.2.6.2 cases 1 and 2: completion of a write makes it stable."""
    wce, flush = F.has(features, FB["CONFIG_WCE"]), F.has(features, FB["FLUSH"])
    return (not wce and not flush) or (wce and writeback == 0)


def driver_fault(req: Request, capacity: int) -> Violation | None:
    """The §5.2.6.1 rule ``req`` breaks that leaves the device's answer open: past
    ``capacity``, an IN/OUT length no multiple of 512, range data no whole number of
    segments.  (Not unmap on a discard, which §5.2.6.2 answers with UNSUPP, nor the
    segment count, which needs the config: see :func:`check_driver_request`.)"""

    def v(rid: str, d: str) -> Violation:
        return Violation(rid, "driver", d)

    if req.type in (T_IN, T_OUT):
        length = req.in_len if req.type == T_IN else len(req.data)
        if length % SECTOR:
            return v("VIRTIO-5.2.6.1-DRV-DATA-MULTIPLE-512", f"{length} bytes")
        if req.sector + length // SECTOR > capacity:
            return v("VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY", f"sector {req.sector}")
    if req.type in T_RANGES:
        if len(req.data) % SEGMENT.size:
            return v("VIRTIO-5.2.6.1-DRV-SEGMENT-MULTIPLE", f"{len(req.data)} bytes")
        if any(s + n > capacity for s, n, _ in decode_segments(req.data)):
            return v("VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY", "segment past capacity")
    return None


def _any_status() -> list[Outcome]:
    """The device's choice after a driver error: IOERR (the status §5.2.6 describes for
    one) first, so :func:`reference_device` answers with it."""
    return [Outcome(S_IOERR), Outcome(S_UNSUPP), Outcome(S_OK)]


def _bad_flags(req: Request) -> bool:
    """§5.2.6.2: an unknown flag in a range segment, or unmap in a discard segment."""
    return any(flags & ~1 or (req.type == T_DISCARD and flags & 1)
               for _, _, flags in decode_segments(req.data))


def allowed(disk: AnyDisk, req: Request, features: int, writeback: int = 0) -> list[Outcome]:
    """Every outcome a conforming device may give for ``req`` (§5.2.6)."""
    ioerr = Outcome(S_IOERR)
    if req.type in T_ZONE:
        if not F.has(features, FB["ZONED"]):
            return [Outcome(S_UNSUPP)]  # §5.2.6.2
        return _any_status()  # zoned operation is not modelled
    if req.type in (T_IN, T_OUT):
        if driver_fault(req, disk.capacity):
            return _any_status()
        lo, hi = req.sector * SECTOR, req.sector * SECTOR + (
            req.in_len if req.type == T_IN else len(req.data))
        if req.type == T_IN:
            return [Outcome(S_OK, disk.read(lo, hi)), ioerr]
        if F.has(features, FB["RO"]):
            return [ioerr]  # §5.2.6.2: no data written
        written = disk.written(lo, req.data, _write_through(features, writeback))
        # a write that failed (§5.2.6: IOERR) may have reached part of its range: no
        # statement says what the range then holds
        return [Outcome(S_OK, disk=written),
                Outcome(S_IOERR, disk=disk.forgotten(lo, hi), unspecified=((lo, hi),))]
    if req.type == T_FLUSH:
        if not F.has(features, FB["FLUSH"]):
            return [Outcome(S_UNSUPP), Outcome(S_OK), ioerr]
        return [Outcome(S_OK, disk=disk.flushed()), ioerr]
    if req.type == T_GET_ID:
        ident = disk.device_id[:ID_BYTES].ljust(ID_BYTES, b"\0")
        return [Outcome(S_OK, ident[: req.in_len]), Outcome(S_UNSUPP), ioerr]
    if req.type in T_RANGES:
        return _allowed_ranges(disk, req, features)
    if req.type == T_GET_LIFETIME:
        return [Outcome(S_UNSUPP), ioerr]  # lifetime metrics are not modelled
    return [Outcome(S_UNSUPP)]  # §5.2.6: a type the device does not support


def _allowed_ranges(disk: AnyDisk, req: Request, features: int) -> list[Outcome]:
    if not F.has(features, FB[_RANGE_FEATURE[req.type]]):
        return [Outcome(S_UNSUPP), Outcome(S_IOERR)]
    if _bad_flags(req):
        return [Outcome(S_UNSUPP)]  # §5.2.6.2: unknown flag, or unmap on discard
    if driver_fault(req, disk.capacity):
        return _any_status()
    spans = tuple(byte_ranges(req))
    unknown = disk
    for lo, hi in spans:
        unknown = unknown.forgotten(lo, hi)
    failed = Outcome(S_IOERR, disk=unknown, unspecified=spans)
    if req.type != T_WRITE_ZEROES:  # discarded (or erased) content is unspecified
        return [Outcome(S_OK, disk=unknown, unspecified=spans), failed]
    zeroed = disk
    for lo, hi in spans:
        zeroed = zeroed.written(lo, bytes(hi - lo), stable=False)
    return [Outcome(S_OK, disk=zeroed), failed]


def byte_ranges(req: Request) -> list[tuple[int, int]]:
    """The bytes of the disk a request may change (an OUT's range, a range command's
    segments)."""
    if req.type == T_OUT:
        return [(req.sector * SECTOR, req.sector * SECTOR + len(req.data))]
    if req.type in T_RANGES:
        return [(lo * SECTOR, (lo + n) * SECTOR) for lo, n, _ in decode_segments(req.data)]
    return []


_RANGE_FEATURE = {T_DISCARD: "DISCARD", T_WRITE_ZEROES: "WRITE_ZEROES",
                  T_SECURE_ERASE: "SECURE_ERASE"}


def id_string_ok(ident: bytes) -> bool:
    """§5.2.6: GET_ID's answer is an ASCII string of up to 20 bytes, NUL-padded (no
    terminator when it is 20 bytes long)."""
    nul = ident.find(b"\0")
    text, pad = (ident, b"") if nul < 0 else (ident[:nul], ident[nul:])
    return len(ident) == ID_BYTES and text.isascii() and not any(pad)


def check_completion(
    disk: AnyDisk, req: Request, features: int, observed: Outcome, writeback: int = 0
) -> Violation | None:
    """Judge one completion: status, returned bytes and disk effect must match an allowed outcome.

    ``observed.disk`` is the disk after the request (``None`` = untouched).
    """
    outs = allowed(disk, req, features, writeback)
    if outs == _any_status():
        return None  # the device's choice (a driver error): no device requirement binds it
    after = observed.disk or disk
    for o in outs:
        if o.status != observed.status:
            continue
        want_disk = o.disk or disk
        data_ok = (o.status != S_OK or req.type != T_IN) or (
            len(observed.written_in) == req.in_len
            and disk.matches(req.sector * SECTOR, observed.written_in))
        if o.status == S_OK and req.type == T_GET_ID and req.in_len == ID_BYTES:
            data_ok = id_string_ok(observed.written_in[:ID_BYTES])  # the id is the device's
        if data_ok and _same(after, want_disk, o.unspecified):
            return None
    return Violation(
        rule_for(disk, req, features, observed) or "VIRTIO-5.2.6-DEV-DATA-INTEGRITY",
        "device",
        f"type {req.type} sector {req.sector}: status {observed.status}"
        + (f", id {observed.written_in[:ID_BYTES]!r}" if req.type == T_GET_ID else "")
        + (ALSO_PAST_CAPACITY if _past_capacity(req, disk.capacity) else ""),
    )


# A violation's detail says so when the request also broke a driver rule: 5.2.6.2's
# unknown-flag UNSUPP binds whatever the range, but where a standard's rules meet, how an
# implementation orders its checks is worth seeing in the report.
ALSO_PAST_CAPACITY = " (the request is also past capacity)"


def _past_capacity(req: Request, capacity: int) -> bool:
    fault = driver_fault(req, capacity)
    return fault is not None and fault.requirement == "VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY"


def _same(after: AnyDisk, want: AnyDisk, unspecified: tuple[tuple[int, int], ...]) -> bool:
    """The disk the device left agrees with the model's, outside the ``unspecified``
    ranges (a whole disk: its data, and every byte the model has stable stays so)."""
    if not (isinstance(after, Disk) and isinstance(want, Disk)):
        for lo, hi in unspecified:
            after = after.forgotten(lo, hi)
        return after == want
    spans = [*unspecified, *want.unknown_spans()]
    if spans:
        data, stable = bytearray(after.data), bytearray(after.stable)
        for lo, hi in spans:
            data[lo:hi], stable[lo:hi] = want.data[lo:hi], want.stable[lo:hi]
        after = Disk(bytes(data), bytes(stable), after.device_id)
    return after.data == want.data and _stable_ok(after, want)


def unseen_effect(disk: AnyDisk, req: Request, features: int, status: int,
                  written_in: bytes = b"") -> Outcome:
    """The outcome as a platform that cannot look at the disk observes it: the status
    and the bytes returned, with the disk the model's outcome of that status leaves (so
    :func:`check_completion` judges the status and the data, and :func:`settle` moves the
    model on)."""
    match = next((o for o in allowed(disk, req, features) if o.status == status), None)
    return Outcome(status, written_in, match.disk if match is not None else None)


def settle(disk: AnyDisk, req: Request, features: int, observed: Outcome,
           writeback: int = 0) -> AnyDisk:
    """The model's disk after a completion :func:`check_completion` accepted: the allowed
    outcome's disk (or the one the platform showed, ``observed.disk``), with a read's
    answer bound where the disk was unknown (:class:`LearnedDisk`), and the id of a
    GET_ID adopted (the id string is the device's choice)."""
    if observed.disk is not None:
        after = observed.disk
    else:
        match = next((o for o in allowed(disk, req, features, writeback)
                      if o.status == observed.status), None)
        after = match.disk if match is not None and match.disk is not None else disk
    if req.type == T_IN and observed.status == S_OK and not driver_fault(req, disk.capacity):
        after = after.bound(req.sector * SECTOR, observed.written_in)
    if req.type == T_GET_ID and observed.status == S_OK and req.in_len == ID_BYTES:
        after = after.with_id(observed.written_in[:ID_BYTES].rstrip(b"\0"))
    return after


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


def rule_for(disk: AnyDisk, req: Request, features: int, observed: Outcome) -> str:
    """The requirement a completion of ``req`` was judged against (5.2.6, 5.2.6.2), or ""
    when it evaluates none: a request breaking a driver rule (:func:`driver_fault`, the
    answer is the device's choice), a GET_ID the device does not support, a plain discard,
    a failed flush or write zeroes, an unmodelled type (zoned with ZONED, GET_LIFETIME), a
    range command that was not negotiated."""
    status = observed.status
    if req.type in T_ZONE:
        return "" if F.has(features, FB["ZONED"]) else "VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP"
    if req.type in T_RANGES:
        if not F.has(features, FB[_RANGE_FEATURE[req.type]]):
            return ""
        if _bad_flags(req):
            return "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"
        if driver_fault(req, disk.capacity):
            return ""
        if req.type == T_WRITE_ZEROES and status == S_OK:
            return "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO"
        return ""
    if req.type in (T_IN, T_OUT):
        if driver_fault(req, disk.capacity):
            return ""
        if req.type == T_OUT and F.has(features, FB["RO"]):
            return "VIRTIO-5.2.6.2-DEV-RO-IOERR"
        if req.type == T_OUT and status == S_OK:
            return "VIRTIO-5.2.6.2-DEV-STABLE-WRITES"
        if status == S_IOERR:
            return ""  # a device error: allowed, and what it left is unspecified
        return "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"
    if req.type == T_FLUSH:
        flush = F.has(features, FB["FLUSH"])
        return "VIRTIO-5.2.6.2-DEV-STABLE-WRITES" if flush and status == S_OK else ""
    if req.type == T_GET_ID:
        if req.in_len != ID_BYTES or status in (S_UNSUPP, S_IOERR):
            return ""
        return "VIRTIO-5.2.6-GET-ID-NUL-PADDED"
    if req.type == T_GET_LIFETIME:
        return ""
    return "VIRTIO-5.2.6-DEV-UNSUPP-TYPE"


def reference_device(disk: AnyDisk, req: Request, features: int, writeback: int = 0) -> Outcome:
    """A conforming device: the first (successful when possible) allowed outcome."""
    o = allowed(disk, req, features, writeback)[0]
    return attrs.evolve(o, disk=o.disk or disk)


# --- driver-side and config checks -----------------------------------------------------


def check_driver_request(req: Request, capacity: int, cfg: dict[str, int]) -> Violation | None:
    """§5.2.6.1: what a driver may put in a request."""

    def v(rid: str, d: str) -> Violation:
        return Violation(rid, "driver", d)

    if req.type == T_FLUSH and req.sector != 0:
        return v("VIRTIO-5.2.6.1-DRV-FLUSH-SECTOR-ZERO", f"sector {req.sector}")
    if req.type == T_GET_ID and req.in_len != ID_BYTES:
        return v("VIRTIO-5.2.6.1-DRV-GET-ID-20", f"{req.in_len} bytes")
    if req.type in T_RANGES and not len(req.data) % SEGMENT.size:
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
    return driver_fault(req, capacity)


def check_config(raw: bytes, offered: int, negotiated: int) -> Violation | None:
    """§5.2.5.2: zero padding; writeback starts at 0 with CONFIG_WCE but no FLUSH."""
    cfg = CONFIG.decode(raw)
    if cfg.get("unused0", 0) or any(cfg.get("unused1", b"\0\0\0")):
        return Violation("VIRTIO-5.2.5.2-DEV-PADDING-ZERO", "device", "padding not zero")
    wce, flush = F.has(negotiated, FB["CONFIG_WCE"]), F.has(negotiated, FB["FLUSH"])
    if wce and not flush and cfg.get("writeback", 0) != 0:
        return Violation("VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO", "device", "writeback not 0")
    return None


def judge_config(raw: bytes, negotiated: int) -> list[tuple[str, Violation | None]]:
    """§5.2.5.2, rule by rule: (rule, violation or None) for every rule this config space
    gives occasion to judge -- the padding always; writeback only with CONFIG_WCE
    negotiated and FLUSH not."""
    cfg = CONFIG.decode(raw)
    unused0, unused1 = int(cfg.get("unused0", 0)), bytes(cfg.get("unused1", b"\0\0\0"))
    pad = unused0 or any(unused1)
    out: list[tuple[str, Violation | None]] = [(
        "VIRTIO-5.2.5.2-DEV-PADDING-ZERO",
        Violation("VIRTIO-5.2.5.2-DEV-PADDING-ZERO", "device",
                  f"unused0 {unused0:#x}, unused1 {unused1.hex()}") if pad else None)]
    if F.has(negotiated, FB["CONFIG_WCE"]) and not F.has(negotiated, FB["FLUSH"]):
        wb = int(cfg.get("writeback", 0))
        out.append(("VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO",
                    Violation("VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO", "device",
                              f"writeback {wb} with CONFIG_WCE negotiated and FLUSH not")
                    if wb != 0 else None))
    return out


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
