"""virtio-blk oracle (§5.2) with planted device bugs."""

from __future__ import annotations

import attrs
import pytest
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


@given(st.integers(CAP, 1 << 40), st.sampled_from([B.T_IN, B.T_OUT]),
       st.sampled_from([B.S_OK, B.S_IOERR, B.S_UNSUPP]))
def test_out_of_range_answer_is_the_devices_choice(sector: int, typ: int, status: int) -> None:
    """§5.2.6.1 forbids the driver to go past capacity; §5.2.6.2 states no device answer
    for it (5.2.6 only describes IOERR as the status of a device or driver error).  So no
    status is a violation, and the completion credits no device requirement."""
    disk = B.Disk.blank(CAP)
    req = B.Request(typ, sector, b"\1" * B.SECTOR if typ == B.T_OUT else b"",
                    B.SECTOR if typ == B.T_IN else 0)
    drv = B.check_driver_request(req, CAP, {})
    assert drv is not None and drv.requirement == "VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY"
    observed = B.Outcome(status, bytes(B.SECTOR) if typ == B.T_IN else b"")
    assert B.check_completion(disk, req, V1, observed) is None
    assert B.rule_for(disk, req, V1, observed) == ""
    assert B.reference_device(disk, req, V1).status == B.S_IOERR  # what 5.2.6 describes


def test_no_out_of_range_device_requirement() -> None:
    """5.2.6.2 has no device statement about out-of-range requests: no id may cite one."""
    from spec.virtio.oracle import IMPLIED_RULES
    from spec.virtio.registry import all_requirements

    ids = {r.id for r in all_requirements()} | set(IMPLIED_RULES)
    assert not [i for i in ids if "OUT-OF-RANGE" in i]
    seg = B.Request(B.T_WRITE_ZEROES, data=B.encode_segment(CAP - 1, 2))
    wz = V1 | (1 << B.FB["WRITE_ZEROES"])
    for status in (B.S_OK, B.S_IOERR, B.S_UNSUPP):  # a segment past capacity: the same
        assert B.check_completion(B.Disk.blank(CAP), seg, wz, B.Outcome(status)) is None
        assert B.rule_for(B.Disk.blank(CAP), seg, wz, B.Outcome(status)) == ""


def test_in_range_read_credits_data_integrity_not_a_driver_rule() -> None:
    disk = B.Disk.blank(CAP)
    req = B.Request(B.T_IN, CAP - 1, in_len=B.SECTOR)
    good = B.reference_device(disk, req, V1)
    assert B.rule_for(disk, req, V1, good) == "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"
    v = B.check_completion(disk, req, V1, B.Outcome(B.S_OK, b"\7" * B.SECTOR))
    assert v is not None and v.requirement == "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"


def test_planted_write_to_ro_is_flagged() -> None:
    disk, ro = B.Disk.blank(CAP), V1 | (1 << B.FB["RO"])
    req = B.Request(B.T_OUT, 0, b"\1" * B.SECTOR)
    written = B.reference_device(disk, req, V1).disk
    v = B.check_completion(disk, req, ro, B.Outcome(B.S_OK, disk=written))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-RO-IOERR"
    v = B.check_completion(disk, req, ro, B.Outcome(B.S_IOERR, disk=written))  # status ok, data not
    assert v is not None


def test_planted_unknown_flag_accepted() -> None:
    disc = V1 | (1 << B.FB["DISCARD"]) | (1 << B.FB["WRITE_ZEROES"])
    for req in (B.Request(B.T_DISCARD, data=B.encode_segment(0, 1, unmap=True)),
                B.Request(B.T_DISCARD, data=B.encode_segment(0, 1, flags=2)),
                B.Request(B.T_WRITE_ZEROES, data=B.encode_segment(0, 1, flags=2))):
        assert B.check_completion(B.Disk.blank(CAP), req, disc, B.Outcome(B.S_UNSUPP)) is None
        assert B.rule_for(B.Disk.blank(CAP), req, disc, B.Outcome(B.S_UNSUPP)) == \
            "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"
        v = B.check_completion(B.Disk.blank(CAP), req, disc, B.Outcome(B.S_OK))
        assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"


def test_unknown_flags_rule_is_credited_only_for_its_own_case() -> None:
    """A plain discard, GET_ID or an unknown type does not evaluate the flags rule."""
    disc = V1 | (1 << B.FB["DISCARD"])
    disk = B.Disk.blank(CAP)
    plain = B.Request(B.T_DISCARD, data=B.encode_segment(0, 1))
    assert B.rule_for(disk, plain, disc, B.Outcome(B.S_OK)) == ""
    get_id = B.Request(B.T_GET_ID, in_len=B.ID_BYTES)
    ok = B.reference_device(disk, get_id, V1)
    assert B.rule_for(disk, get_id, V1, ok) == "VIRTIO-5.2.6-GET-ID-NUL-PADDED"
    assert B.rule_for(disk, get_id, V1, B.Outcome(B.S_UNSUPP)) == ""  # not supported: a choice
    unknown = B.Request(99)
    assert B.rule_for(disk, unknown, V1, B.Outcome(B.S_UNSUPP)) == "VIRTIO-5.2.6-DEV-UNSUPP-TYPE"


def test_planted_unknown_type_not_unsupp() -> None:
    """5.2.6: a request the device does not support ends in UNSUPP (not IOERR, not OK)."""
    for status in (B.S_OK, B.S_IOERR):
        v = B.check_completion(B.Disk.blank(CAP), B.Request(99), V1, B.Outcome(status))
        assert v is not None and v.requirement == "VIRTIO-5.2.6-DEV-UNSUPP-TYPE"
    assert B.check_completion(B.Disk.blank(CAP), B.Request(99), V1, B.Outcome(B.S_UNSUPP)) is None


@pytest.mark.parametrize(("ident", "ok"), [
    (b"pvspec-disk".ljust(20, b"\0"), True),
    (b"x" * 20, True),  # 20 bytes: no terminator
    (bytes(20), True),  # the empty string
    (b"vhost_user_blk\0" + b"\xa5" * 5, False),  # QEMU 7.2 (F1): padding left unwritten
    (b"\xa5" * 20, False),  # nothing written: not ASCII
    (b"caf\xc3\xa9".ljust(20, b"\0"), False),  # not ASCII
])
def test_planted_get_id_not_nul_padded(ident: bytes, ok: bool) -> None:
    req = B.Request(B.T_GET_ID, in_len=B.ID_BYTES)
    v = B.check_completion(B.Disk.blank(CAP), req, V1, B.Outcome(B.S_OK, ident))
    assert (v is None) == ok, v
    if not ok:
        assert v is not None and v.requirement == "VIRTIO-5.2.6-GET-ID-NUL-PADDED"


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


def test_learned_disk_binds_first_read_and_judges_later_ones() -> None:
    """A disk nobody told the suite about: any first read is allowed and binds the
    sectors it covers; a second read must agree; a write makes its range known."""
    disk: B.AnyDisk = B.LearnedDisk(1 << 40)  # capacity costs nothing: sparse
    read = B.Request(B.T_IN, 5, in_len=2 * B.SECTOR)
    first = B.Outcome(B.S_OK, b"\x11" * B.SECTOR + b"\x22" * B.SECTOR)
    assert B.check_completion(disk, read, V1, first) is None
    disk = B.settle(disk, read, V1, first)
    assert B.check_completion(disk, read, V1, first) is None
    v = B.check_completion(disk, read, V1, B.Outcome(B.S_OK, b"\x11" * 2 * B.SECTOR))
    assert v is not None and v.requirement == "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"
    wr = B.Request(B.T_OUT, 6, b"\x33" * B.SECTOR)
    disk = B.settle(disk, wr, V1, B.reference_device(disk, wr, V1))
    assert B.check_completion(disk, read, V1, first) is not None  # sector 6 was rewritten
    assert B.check_completion(
        disk, read, V1, B.Outcome(B.S_OK, b"\x11" * B.SECTOR + b"\x33" * B.SECTOR)) is None


def test_unspecified_content_is_forgotten() -> None:
    """A discard, or a write that failed (IOERR), leaves its range unspecified: whatever a
    later read returns there is allowed (and bound)."""
    disc = V1 | (1 << B.FB["DISCARD"])
    disk: B.AnyDisk = B.LearnedDisk(CAP)
    wr = B.Request(B.T_OUT, 1, b"\x44" * B.SECTOR)
    disk = B.settle(disk, wr, disc, B.reference_device(disk, wr, disc))
    read = B.Request(B.T_IN, 1, in_len=B.SECTOR)
    other = B.Outcome(B.S_OK, b"\x55" * B.SECTOR)
    assert B.check_completion(disk, read, disc, other) is not None
    for req, status in ((B.Request(B.T_DISCARD, data=B.encode_segment(1, 1)), B.S_OK),
                        (wr, B.S_IOERR)):
        assert B.check_completion(disk, req, disc, B.Outcome(status)) is None
        assert B.rule_for(disk, req, disc, B.Outcome(status)) == ""
        after = B.settle(disk, req, disc, B.Outcome(status))
        assert B.check_completion(after, read, disc, other) is None
    # a whole disk: the failed write's range may hold anything, the rest must not move
    whole = B.Disk.blank(CAP)
    partly = B.Disk(b"\x44" * 100 + bytes(CAP * B.SECTOR - 100), bytes(CAP * B.SECTOR))
    assert B.check_completion(whole, B.Request(B.T_OUT, 0, b"\x44" * B.SECTOR), V1,
                              B.Outcome(B.S_IOERR, disk=partly)) is None
    elsewhere = B.Disk(bytes(B.SECTOR) + b"\x44" + bytes(CAP * B.SECTOR - B.SECTOR - 1),
                       bytes(CAP * B.SECTOR))
    assert B.check_completion(whole, B.Request(B.T_OUT, 0, b"\x44" * B.SECTOR), V1,
                              B.Outcome(B.S_IOERR, disk=elsewhere)) is not None


def test_unknown_flag_binds_past_capacity_too() -> None:
    """5.2.6.2's UNSUPP for an unknown flag is unconditional: a segment past capacity
    (a driver error, which otherwise leaves the answer free) does not lift it."""
    wz = V1 | (1 << B.FB["WRITE_ZEROES"])
    req = B.Request(B.T_WRITE_ZEROES, data=B.encode_segment(CAP, 1, flags=2))
    assert B.check_completion(B.Disk.blank(CAP), req, wz, B.Outcome(B.S_UNSUPP)) is None
    v = B.check_completion(B.Disk.blank(CAP), req, wz, B.Outcome(B.S_IOERR))
    assert v is not None and v.requirement == "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"
    assert v.detail.endswith(B.ALSO_PAST_CAPACITY)


def test_whole_disk_forgets_discarded_sectors_until_read() -> None:
    """A disk the suite created: a discard leaves its range unspecified (any read
    content is allowed, then bound), the rest stays judged as before."""
    disc = V1 | (1 << B.FB["DISCARD"])
    disk: B.AnyDisk = B.Disk(b"\7" * (CAP * B.SECTOR), b"\7" * (CAP * B.SECTOR))
    d = B.Request(B.T_DISCARD, data=B.encode_segment(2, 1))
    disk = B.settle(disk, d, disc, B.unseen_effect(disk, d, disc, B.S_OK))
    assert isinstance(disk, B.Disk) and disk.unknown_spans() == [(2 * B.SECTOR, 3 * B.SECTOR)]
    read = B.Request(B.T_IN, 1, in_len=2 * B.SECTOR)
    zeroed = B.Outcome(B.S_OK, b"\7" * B.SECTOR + bytes(B.SECTOR))
    assert B.check_completion(disk, read, disc, zeroed) is None  # sector 2: anything
    bad = B.Outcome(B.S_OK, bytes(2 * B.SECTOR))  # sector 1 was not discarded
    assert B.check_completion(disk, read, disc, bad) is not None
    disk = B.settle(disk, read, disc, zeroed)
    assert disk.unknown_spans() == [] and disk.known is None
    again = B.Outcome(B.S_OK, b"\7" * 2 * B.SECTOR)  # now bound: zeros it must stay
    assert B.check_completion(disk, read, disc, again) is not None
