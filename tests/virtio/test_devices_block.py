"""virtio-blk oracle (§5.2) with planted device bugs."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from spec.virtio import features as F
from spec.virtio.devices import block as B

V1 = 1 << F.VERSION_1
FLUSH = 1 << B.FB["FLUSH"]
CAP = 8


@given(st.integers(0, CAP - 1), st.integers(1, 2), st.binary(min_size=1, max_size=1))
def test_data_written_is_read_back(sector: int, n: int, fill: bytes) -> None:
    disk = B.Disk.blank(CAP)
    n = min(n, CAP - sector)
    data = fill * (n * B.SECTOR)
    out = B.reference_device(disk, B.Request(B.T_OUT, sector, data), V1)
    assert out.status == B.S_OK
    got = B.reference_device(out.disk, B.Request(B.T_IN, sector, in_len=len(data)), V1)
    assert got.status == B.S_OK and got.written_in == data


@given(st.integers(CAP, 1 << 40))
def test_out_of_range_sector_gives_ioerr(sector: int) -> None:
    disk = B.Disk.blank(CAP)
    req = B.Request(B.T_IN, sector, in_len=B.SECTOR)
    assert B.check_completion(disk, req, V1, B.Outcome(B.S_IOERR)) is None
    v = B.check_completion(disk, req, V1, B.Outcome(B.S_OK, bytes(B.SECTOR)))  # planted bug
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-OUT-OF-RANGE-IOERR"


def test_planted_write_to_ro_is_flagged() -> None:
    disk, ro = B.Disk.blank(CAP), V1 | (1 << B.FB["RO"])
    req = B.Request(B.T_OUT, 0, b"\1" * B.SECTOR)
    written = B.reference_device(disk, req, V1).disk
    v = B.check_completion(disk, req, ro, B.Outcome(B.S_OK, disk=written))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-RO-IOERR"
    v = B.check_completion(disk, req, ro, B.Outcome(B.S_IOERR, disk=written))  # status ok, data not
    assert v is not None


def test_planted_unknown_flag_accepted() -> None:
    disc = V1 | (1 << B.FB["DISCARD"])
    req = B.Request(B.T_DISCARD, data=B.encode_segment(0, 1, unmap=True))
    assert B.check_completion(B.Disk.blank(CAP), req, disc, B.Outcome(B.S_UNSUPP)) is None
    v = B.check_completion(B.Disk.blank(CAP), req, disc, B.Outcome(B.S_OK))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"


def test_planted_write_zeroes_keeps_data() -> None:
    wz = V1 | (1 << B.FB["WRITE_ZEROES"])
    disk = B.Disk(b"\7" * (CAP * B.SECTOR), b"\7" * (CAP * B.SECTOR))
    req = B.Request(B.T_WRITE_ZEROES, data=B.encode_segment(1, 2))
    good = B.reference_device(disk, req, wz)
    assert B.check_completion(disk, req, wz, good) is None
    v = B.check_completion(disk, req, wz, B.Outcome(B.S_OK, disk=disk))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO"


def test_planted_flush_not_persisting() -> None:
    disk = B.Disk.blank(CAP)
    w = B.reference_device(disk, B.Request(B.T_OUT, 0, b"\3" * B.SECTOR), V1 | FLUSH).disk
    assert w.stable != w.data  # write-back: not yet stable
    ok = B.reference_device(w, B.Request(B.T_FLUSH), V1 | FLUSH)
    assert B.check_completion(w, B.Request(B.T_FLUSH), V1 | FLUSH, ok) is None
    v = B.check_completion(w, B.Request(B.T_FLUSH), V1 | FLUSH, B.Outcome(B.S_OK, disk=w))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-STABLE-WRITES"


def test_planted_zone_command_accepted() -> None:
    req = B.Request(B.T_ZONE[2])
    v = B.check_completion(B.Disk.blank(CAP), req, V1, B.Outcome(B.S_OK))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP"


def test_planted_wce_without_flush_is_flagged() -> None:
    v = F.check_device_offer(F.BLOCK, V1 | (1 << B.FB["CONFIG_WCE"]))
    assert v is not None and v.requirement == "VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH"


def test_config_checks() -> None:
    wce = 1 << B.FB["CONFIG_WCE"]
    assert B.check_config(B.CONFIG.encode({"capacity": 8}), V1, V1) is None
    assert B.check_config(B.CONFIG.encode({"unused0": 1}), V1, V1) is not None
    assert B.check_config(B.CONFIG.encode({"writeback": 1}), V1 | wce, V1 | wce) is not None


def test_driver_request_rules() -> None:
    cases = {
        "VIRTIO-5.2.6.1-DRV-DATA-MULTIPLE-512": B.Request(B.T_OUT, 0, b"x" * 100),
        "VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY": B.Request(B.T_IN, CAP, in_len=B.SECTOR),
        "VIRTIO-5.2.6.1-DRV-FLUSH-SECTOR-ZERO": B.Request(B.T_FLUSH, 3),
        "VIRTIO-5.2.6.1-DRV-GET-ID-20": B.Request(B.T_GET_ID, in_len=16),
        "VIRTIO-5.2.6.1-DRV-SEGMENT-MULTIPLE": B.Request(B.T_DISCARD, data=b"x" * 15),
        "VIRTIO-5.2.6.1-DRV-MAX-SEGMENTS": B.Request(B.T_DISCARD, data=B.encode_segment(0, 1) * 2),
        "VIRTIO-5.2.6.1-DRV-DISCARD-NO-UNMAP": B.Request(
            B.T_DISCARD, data=B.encode_segment(0, 1, True)
        ),
    }
    for rid, req in cases.items():
        v = B.check_driver_request(req, CAP, {"max_discard_seg": 1})
        assert v is not None and v.requirement == rid, (rid, v)
    assert B.check_driver_request(B.Request(B.T_GET_ID, in_len=20), CAP, {}) is None
    assert B.check_driver_writeback_read(False) is not None
    assert B.check_driver_writeback_read(True) is None


def test_header_roundtrip() -> None:
    req = B.Request(B.T_OUT, 0x1234)
    assert B.decode_header(req.encode_header()) == (B.T_OUT, 0, 0x1234)
    assert attrs.evolve(req, sector=1).encode_header()[8:] == (1).to_bytes(8, "little")


def test_lifetime_reserved_values() -> None:
    assert B.check_lifetime(bytes([1, 0, 11, 0, 0, 0])) is None
    assert B.check_lifetime(bytes([4, 0, 0, 0, 0, 0])) is not None
