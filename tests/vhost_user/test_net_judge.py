"""The virtio-net receive judge (spec.virtio.devices.net.judge_rx_packet) and loopback
judge: conforming packets pass, and every rule can fail -- planted device bugs, fed as
the buffers a driver would see, are each caught under their own requirement."""

from __future__ import annotations

import pytest

from conformance.vhost_user import net_frames as nf
from spec.virtio import features as F
from spec.virtio.devices import net as N
from spec.virtio.registry import all_requirements

FN = N.FN
MRG = 1 << FN["MRG_RXBUF"]
GCSUM = 1 << FN["GUEST_CSUM"]
V1 = 1 << F.VERSION_1


def single(hdr: N.NetHdr, frame: bytes, size: int = 2048, extra: int = 0) -> list[N.RxBuf]:
    """One buffer holding header + frame (``extra``: bytes the device claims beyond)."""
    data = (hdr.encode() + frame).ljust(size, b"\xa5")
    return [N.RxBuf(size, N.HDR_LEN + len(frame) + extra, data)]


def merged(frame: bytes, sizes: list[int], num: int | None = None,
           lens: list[int] | None = None) -> list[N.RxBuf]:
    """``frame`` spread over buffers of ``sizes`` as a conforming device would."""
    raw = N.NetHdr(num_buffers=len(sizes) if num is None else num).encode() + frame
    out, at = [], 0
    for i, s in enumerate(sizes):
        n = min(s, len(raw) - at) if lens is None else lens[i]
        out.append(N.RxBuf(s, n, raw[at: at + n].ljust(s, b"\xa5")))
        at += n
    return out


def rules(j: N.RxJudgement) -> set[str]:
    return {v.requirement for v in j.violations}


def test_conforming_packets_pass() -> None:
    fr = nf.frame(60)
    j = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), fr))
    assert j.ok and j.frame == fr and j.hdr is not None
    assert {"VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE", "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO",
            "VIRTIO-5.1.6.4.1-DEV-GSO-NONE", "VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC"} <= j.judged
    big = nf.frame(1514, nf.TCP)
    j = N.judge_rx_packet(V1 | MRG, merged(big, [512, 512, 1024]))
    assert j.ok and j.frame == big, j.violations
    assert {"VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL", "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG",
            "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER"} <= j.judged
    # GUEST_CSUM: a partial checksum flagged NEEDS_CSUM with the right fields is fine
    part = nf.frame(200, nf.TCP, partial=True)
    start, off = nf.csum_fields(part)
    h = N.NetHdr(N.F_NEEDS_CSUM, csum_start=start, csum_offset=off, num_buffers=1)
    j = N.judge_rx_packet(V1 | GCSUM, single(h, part))
    assert j.ok, j.violations
    assert "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-PSEUDO" in j.judged
    h = N.NetHdr(N.F_DATA_VALID, num_buffers=1)
    assert N.judge_rx_packet(V1 | GCSUM, single(h, nf.frame(90))).ok


PLANTED = {
    # without MRG_RXBUF: num_buffers must be 1
    "num-buffers-not-one": (V1, lambda: single(N.NetHdr(num_buffers=2), nf.frame(60)),
                            "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE"),
    "num-buffers-zero": (V1, lambda: single(N.NetHdr(num_buffers=0), nf.frame(60)),
                         "VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT"),
    "two-buffers-without-mrg": (V1, lambda: merged(nf.frame(1514), [1024, 1024]),
                                "VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC"),
    # MRG_RXBUF: num_buffers counts, all but the last full, all used together
    "mrg-num-buffers-wrong": (V1 | MRG, lambda: merged(nf.frame(1514), [1024, 1024], num=1),
                              "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG"),
    "mrg-middle-not-full": (V1 | MRG,
                            lambda: merged(nf.frame(1514), [512, 512, 1024],
                                           lens=[512, 400, 614]),
                            "VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL"),
    "mrg-not-together": (V1 | MRG, lambda: merged(nf.frame(1514), [1024, 1024], num=3),
                         "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER"),
    # header fields against what was negotiated
    "flags-without-guest-csum": (V1, lambda: single(N.NetHdr(N.F_DATA_VALID, num_buffers=1),
                                                    nf.frame(60)),
                                 "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO"),
    "gso-tcpv4-unnegotiated": (V1 | GCSUM, lambda: single(
        N.NetHdr(N.F_NEEDS_CSUM, N.GSO_TCPV4, 54, 1448, num_buffers=1), nf.frame(60)),
        "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV4"),
    "gso-udp-unnegotiated": (V1, lambda: single(N.NetHdr(gso_type=N.GSO_UDP, num_buffers=1),
                                                nf.frame(60)),
                             "VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP"),
    "gso-tcpv6-unnegotiated": (V1, lambda: single(N.NetHdr(gso_type=N.GSO_TCPV6,
                                                           num_buffers=1), nf.frame(60)),
                               "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV6"),
    "gso-udp-l4-unnegotiated": (V1, lambda: single(N.NetHdr(gso_type=N.GSO_UDP_L4,
                                                            num_buffers=1), nf.frame(60)),
                                "VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP-L4"),
    "gso-not-none": (V1, lambda: single(N.NetHdr(gso_type=0x7F, num_buffers=1), nf.frame(60)),
                     "VIRTIO-5.1.6.4.1-DEV-GSO-NONE"),
    "gso-without-needs-csum": (V1 | GCSUM | (1 << FN["GUEST_TSO4"]), lambda: single(
        N.NetHdr(0, N.GSO_TCPV4, 54, 1448, num_buffers=1), nf.frame(2000, nf.TCP), 4096),
        "VIRTIO-5.1.6.4.1-DEV-GSO-NEEDS-CSUM"),
    "gso-ecn-without-cwr-flag": (
        V1 | GCSUM | (1 << FN["GUEST_TSO4"]) | (1 << FN["GUEST_ECN"]),
        lambda: _partial_gso(nf.frame(2000, nf.TCP, partial=True, tcp_flags=0x98), 0),
        "VIRTIO-5.1.6.4.1-DEV-GSO-ECN-BIT"),
    "rsc-info-without-rsc-ext": (V1 | GCSUM, lambda: single(
        N.NetHdr(N.F_RSC_INFO, num_buffers=1), nf.frame(60)), "VIRTIO-5.1.6.4.1-DEV-NO-RSC-INFO"),
    "rsc-ext-gso-without-rsc-info": (
        V1 | GCSUM | (1 << FN["GUEST_TSO4"]) | (1 << FN["RSC_EXT"]),
        lambda: _partial_gso(nf.frame(2000, nf.TCP, partial=True), 0),
        "VIRTIO-5.1.6.4.1-DEV-RSC-INFO"),
    "needs-csum-out-of-packet": (V1 | GCSUM, lambda: single(
        N.NetHdr(N.F_NEEDS_CSUM, csum_start=50, csum_offset=16, num_buffers=1), nf.frame(60)),
        "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE"),
    "needs-csum-wrong-offset": (V1 | GCSUM, lambda: _needs_csum(off_delta=2),
                                "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE"),
    "needs-csum-field-not-pseudo": (V1 | GCSUM, lambda: _needs_csum(full=True),
                                    "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-PSEUDO"),
    "data-valid-bad-checksum": (V1 | GCSUM, lambda: single(
        N.NetHdr(N.F_DATA_VALID, num_buffers=1), nf.frame(90, partial=True)),
        "VIRTIO-5.1.6.4.1-DEV-DATA-VALID-VALIDATED"),
    "used-len-past-buffer": (V1, lambda: single(N.NetHdr(num_buffers=1), nf.frame(60), 100, 50),
                             "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"),
    "no-header": (V1, lambda: [N.RxBuf(2048, 8, bytes(2048))],
                  "VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT"),
}


def _needs_csum(off_delta: int = 0, full: bool = False) -> list[N.RxBuf]:
    fr = nf.frame(120, nf.TCP, partial=not full)
    start, off = nf.csum_fields(fr)
    return single(N.NetHdr(N.F_NEEDS_CSUM, csum_start=start, csum_offset=off + off_delta,
                           num_buffers=1), fr)


def _partial_gso(fr: bytes, flags: int) -> list[N.RxBuf]:
    start, off = nf.csum_fields(fr)
    h = N.NetHdr(N.F_NEEDS_CSUM | flags, N.GSO_TCPV4, 54, 1448, start, off, 1)
    return single(h, fr, 4096)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_rx_bugs_are_caught(name: str) -> None:
    feats, build, rule = PLANTED[name]
    j = N.judge_rx_packet(feats, build())
    assert rule in rules(j), (name, j.violations)
    assert rule in j.judged


def test_should_level_findings_are_warnings() -> None:
    # without GUEST_CSUM a partial checksum passed on unflagged: a SHOULD (5.1.6.4.1)
    j = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), nf.frame(90, partial=True)))
    assert j.ok and {w.requirement for w in j.warnings} == {"VIRTIO-5.1.6.4.1-DEV-FULL-CSUM"}
    h = N.NetHdr(N.F_NEEDS_CSUM, N.GSO_TCPV4 | N.GSO_ECN, 54, 1448, 34, 16, 1)
    j = N.judge_rx_packet(V1 | GCSUM | (1 << FN["GUEST_TSO4"]),
                          single(h, nf.frame(2000, nf.TCP, partial=True), 4096))
    assert "VIRTIO-5.1.6.4.1-DEV-ECN-UNNEGOTIATED" in {w.requirement for w in j.warnings}


def test_mtu_rule() -> None:
    j = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), nf.frame(1514)), mtu=1400)
    assert "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU" in rules(j)
    assert N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), nf.frame(1414)), mtu=1400).ok


def test_loopback_judge() -> None:
    fr = nf.frame(300, nf.TCP)
    got = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), fr))
    assert N.judge_loopback(N.NetHdr(), fr, got, V1) is None
    bad = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), fr[:-1] + b"\0"))
    v = N.judge_loopback(N.NetHdr(), fr, bad, V1)
    assert v is not None and v.requirement == N.LOOPBACK_RULE and "byte 299" in v.detail
    short = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), fr[:200]))
    assert N.judge_loopback(N.NetHdr(), fr, short, V1) is not None
    # NEEDS_CSUM sent: completed, or left partial and flagged NEEDS_CSUM, is delivered;
    # left partial without the flag is not (the checksum was never completed)
    part = nf.frame(300, nf.TCP, partial=True)
    s, o = nf.csum_fields(part)
    sent = N.NetHdr(N.F_NEEDS_CSUM, csum_start=s, csum_offset=o)
    done = N.judge_rx_packet(V1, single(N.NetHdr(num_buffers=1), fr))
    assert N.judge_loopback(sent, part, done, V1) is None
    flagged = N.judge_rx_packet(V1 | GCSUM, single(
        N.NetHdr(N.F_NEEDS_CSUM, csum_start=s, csum_offset=o, num_buffers=1), part))
    assert flagged.ok and N.judge_loopback(sent, part, flagged, V1 | GCSUM) is None
    dropped = N.judge_rx_packet(V1 | GCSUM, single(N.NetHdr(num_buffers=1), part))
    v = N.judge_loopback(sent, part, dropped, V1 | GCSUM)
    assert v is not None and "still partial" in v.detail


def test_rx_rules_registered_with_sections() -> None:
    reg = {r.id: r for r in all_requirements()}
    for rid in (*N.RX_RULES, *N.TX_RULES, *N.NOT_OBSERVABLE):
        assert rid in reg, rid
        assert reg[rid].section.startswith(rid.split("-")[1])
        assert reg[rid].side == "device"
    assert all(N.not_observable(r) for r in N.NOT_OBSERVABLE)


def test_frames_are_checksummed() -> None:
    for size in (60, 61, 1514, 9000):
        for proto in (nf.UDP, nf.TCP):
            fr = nf.frame(size, proto)
            assert len(fr) == size and N.l4_checksum_ok(fr)
            part = nf.frame(size, proto, partial=True)
            assert N.complete_checksum(part, *nf.csum_fields(part)) == fr


def test_two_poisons_find_bytes_counted_but_never_written() -> None:
    fr = nf.frame(60)
    hdr = N.NetHdr(num_buffers=1).encode()

    def got(poison: int, written: int) -> N.RxJudgement:
        # the device writes ``written`` header bytes, then the frame; len counts all 12
        data = (hdr[:written] + bytes([poison]) * (N.HDR_LEN - written) + fr).ljust(2048, b"\0")
        return N.judge_rx_packet(V1 | MRG, [N.RxBuf(2048, N.HDR_LEN + len(fr), data)])

    lens = [N.HDR_LEN + len(fr)]
    assert N.judge_rx_written(got(0xA5, 12), got(0x5A, 12), lens) is None
    v = N.judge_rx_written(got(0xA5, 10), got(0x5A, 10), lens)
    assert v is not None and v.requirement == "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"
    assert "2 byte(s)" in v.detail and "[10, 11]" in v.detail


def test_config_and_forwarding_rules() -> None:
    sd = 1 << FN["SPEED_DUPLEX"]
    ok = N.CONFIG.encode({"speed": 10000, "duplex": 0})
    assert N.check_speed_duplex(ok, sd) is None
    assert N.check_speed_duplex(N.CONFIG.encode({"speed": 0xFFFFFFFF, "duplex": 0xFF}), sd) is None
    bad = N.check_speed_duplex(N.CONFIG.encode({"speed": 0x80000000}), sd)
    assert bad is not None and bad.requirement == "VIRTIO-5.1.4.1-DEV-SPEED-RANGE"
    bad = N.check_speed_duplex(N.CONFIG.encode({"speed": 1, "duplex": 2}), sd)
    assert bad is not None and bad.requirement == "VIRTIO-5.1.4.1-DEV-DUPLEX-VALUES"
    assert N.check_speed_duplex(N.CONFIG.encode({"duplex": 2}), 0) is None  # not negotiated
    sent = [(N.NetHdr(), nf.frame(60)), (N.NetHdr(), nf.frame(1514))]
    assert N.judge_forwarded(sent, [60, 1514], 1500) is None
    v = N.judge_forwarded(sent, [60], 1500)
    assert v is not None and v.requirement == "VIRTIO-5.1.4.1-DEV-FORWARD-WITHIN-MTU"
    assert N.judge_forwarded(sent, [60], 1400) is None  # 1514 > 1400 + 14: not owed
