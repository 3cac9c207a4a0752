"""virtio-net (VIRTIO 1.3 §5.1): header, config, queue roles, control queue, receive judge.

Modelled: the TX header rules of §5.1.6.2.1, the config rules of §5.1.4, a control-queue
oracle (which acknowledgements a device may give), and the device rules a driver can
observe in its receive buffers (§5.1.6.3.2, §5.1.6.4.1: :func:`judge_rx_packet`), plus a
loopback delivery judge (:func:`judge_loopback`).  The device's transmit rules
(§5.1.6.2.2) are about what it relies on internally: registered, not observable here.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

import attrs

from spec.virtio import features as F
from spec.virtio.config import layout
from spec.virtio.verdict import Violation

DEVICE_ID = F.NET
FN = F.NET_FEATURES
HDR = struct.Struct(
    "<BBHHHHH"
)  # flags, gso_type, hdr_len, gso_size, csum_start/offset, num_buffers
F_NEEDS_CSUM, F_DATA_VALID, F_RSC_INFO = 1, 2, 4
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 0, 1, 3, 4, 5, 0x80
S_LINK_UP, S_ANNOUNCE = 1, 2
OK, ERR = 0, 1
CTRL_RX, CTRL_MAC, CTRL_VLAN, CTRL_ANNOUNCE, CTRL_MQ = 0, 1, 2, 3, 4
ETH_HLEN = 14

CONFIG = layout(
    ("mac", 6, FN["MAC"], True),
    ("status", 2, FN["STATUS"]),
    ("max_virtqueue_pairs", 2, FN["MQ"]),
    ("mtu", 2, FN["MTU"]),
    ("speed", 4, FN["SPEED_DUPLEX"]),
    ("duplex", 1, FN["SPEED_DUPLEX"]),
    ("rss_max_key_size", 1, FN["RSS"]),
    ("rss_max_indirection_table_length", 2, FN["RSS"]),
    ("supported_hash_types", 4, FN["RSS"]),
    ("supported_tunnel_types", 4, FN["HASH_TUNNEL"]),
)


@attrs.frozen
class NetHdr:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0
    num_buffers: int = 0

    def encode(self) -> bytes:
        return HDR.pack(
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
            self.num_buffers,
        )

    @classmethod
    def decode(cls, raw: bytes) -> NetHdr:
        return cls(*HDR.unpack_from(raw))


def queue_role(index: int, max_pairs: int = 1, ctrl_vq: bool = False) -> str:
    """§5.1.2: receiveqN = 2N, transmitqN = 2N+1, then the control queue."""
    if index < 2 * max_pairs:
        return "rx" if index % 2 == 0 else "tx"
    if ctrl_vq and index == 2 * max_pairs:
        return "ctrl"
    raise ValueError(f"no queue {index}")


_GSO_FEATURE = {
    GSO_TCPV4: "HOST_TSO4",
    GSO_TCPV6: "HOST_TSO6",
    GSO_UDP: "HOST_UFO",
    GSO_UDP_L4: "HOST_USO",
}


def check_tx_header(hdr: NetHdr, negotiated: int) -> Violation | None:
    """§5.1.6.2.1: what a driver may put in a transmit header."""

    def v(rid: str, d: str) -> Violation:
        return Violation(rid, "driver", d)

    if hdr.num_buffers != 0:
        return v("VIRTIO-5.1.6.2.1-DRV-NUM-BUFFERS-ZERO", f"num_buffers {hdr.num_buffers}")
    if not F.has(negotiated, FN["CSUM"]) and hdr.flags != 0:
        return v("VIRTIO-5.1.6.2.1-DRV-FLAGS-ZERO", f"flags {hdr.flags:#x} without CSUM")
    base = hdr.gso_type & ~GSO_ECN
    if base != GSO_NONE:
        feat = _GSO_FEATURE.get(base)
        if feat is None or not F.has(negotiated, FN[feat]):
            return v("VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-FEATURE", f"gso_type {hdr.gso_type:#x}")
        if not hdr.flags & F_NEEDS_CSUM:
            return v("VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-CSUM", "GSO without NEEDS_CSUM")
    elif hdr.gso_type & GSO_ECN:
        return v("VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-FEATURE", "ECN bit without GSO")
    return None


def check_config(raw: bytes, offered: int) -> Violation | None:
    """§5.1.4.1: value ranges of the config fields the device offers."""
    cfg = CONFIG.decode(raw)

    def v(rid: str, d: str) -> Violation:
        return Violation(rid, "device", d)

    if F.has(offered, FN["MQ"]) and not 1 <= int(cfg["max_virtqueue_pairs"]) <= 0x8000:
        return v("VIRTIO-5.1.4.1-DEV-MAX-PAIRS", f"{cfg['max_virtqueue_pairs']}")
    if F.has(offered, FN["MTU"]) and not 68 <= int(cfg["mtu"]) <= 65535:
        return v("VIRTIO-5.1.4.1-DEV-MTU-RANGE", f"mtu {cfg['mtu']}")
    if (F.has(offered, FN["RSS"]) or F.has(offered, FN["HASH_REPORT"])) and int(
        cfg.get("rss_max_key_size", 0)
    ) < 40:
        return v("VIRTIO-5.1.4.1-DEV-RSS-KEY", f"{cfg.get('rss_max_key_size')}")
    if F.has(offered, FN["RSS"]) and int(cfg.get("rss_max_indirection_table_length", 0)) < 128:
        return v("VIRTIO-5.1.4.1-DEV-RSS-TABLE", "indirection table too short")
    return None


def judge_config(raw: bytes, offered: int) -> list[tuple[str, Violation | None]]:
    """§5.1.4.1, rule by rule: (rule, violation or None) for every range rule whose field
    the offer makes present (max_virtqueue_pairs with MQ, mtu with MTU, the RSS sizes with
    RSS / HASH_REPORT)."""
    cfg = CONFIG.decode(raw)
    out: list[tuple[str, Violation | None]] = []

    def judge(rid: str, ok: bool, detail: str) -> None:
        out.append((rid, None if ok else Violation(rid, "device", detail)))

    if F.has(offered, FN["MQ"]):
        n = int(cfg["max_virtqueue_pairs"])
        judge("VIRTIO-5.1.4.1-DEV-MAX-PAIRS", 1 <= n <= 0x8000, f"max_virtqueue_pairs {n}")
    if F.has(offered, FN["MTU"]):
        m = int(cfg["mtu"])
        judge("VIRTIO-5.1.4.1-DEV-MTU-RANGE", 68 <= m <= 65535, f"mtu {m}")
    if F.has(offered, FN["RSS"]) or F.has(offered, FN["HASH_REPORT"]):
        k = int(cfg.get("rss_max_key_size", 0))
        judge("VIRTIO-5.1.4.1-DEV-RSS-KEY", k >= 40, f"rss_max_key_size {k}")
    if F.has(offered, FN["RSS"]):
        n = int(cfg.get("rss_max_indirection_table_length", 0))
        judge("VIRTIO-5.1.4.1-DEV-RSS-TABLE", n >= 128,
              f"rss_max_indirection_table_length {n}")
    return out


def mtu_of(raw: bytes) -> int:
    """The config space's mtu field (present with MTU offered)."""
    return int(CONFIG.decode(raw)["mtu"])


SPEED_UNKNOWN, SPEED_MAX = 0xFFFFFFFF, 0x7FFFFFFF
DUPLEX_VALUES = (0x00, 0x01, 0xFF)  # full, half, unknown


def check_speed_duplex(raw: bytes, negotiated: int) -> Violation | None:
    """§5.1.4.1: with SPEED_DUPLEX negotiated, speed is 0..0x7fffffff Mbit/s or unknown
    (0xffffffff), duplex full, half or unknown."""
    if not F.has(negotiated, FN["SPEED_DUPLEX"]):
        return None
    cfg = CONFIG.decode(raw)
    speed, duplex = int(cfg.get("speed", 0)), int(cfg.get("duplex", 0))
    if speed > SPEED_MAX and speed != SPEED_UNKNOWN:
        return Violation("VIRTIO-5.1.4.1-DEV-SPEED-RANGE", "device", f"speed {speed:#x}")
    if duplex not in DUPLEX_VALUES:
        return Violation("VIRTIO-5.1.4.1-DEV-DUPLEX-VALUES", "device", f"duplex {duplex:#x}")
    return None


def judge_forwarded(sent: Sequence[tuple[NetHdr, bytes]], came_back: Sequence[int],
                    mtu: int) -> Violation | None:
    """§5.1.4.1: with MTU negotiated, every transmitted frame of at most mtu plus the
    Ethernet header, gso_type NONE (or ECN only), is forwarded whole.  A loopback shows
    it: ``came_back`` holds the lengths of the frames that returned, in order."""
    fits = [len(f) for h, f in sent
            if h.gso_type & ~GSO_ECN == GSO_NONE and len(f) <= mtu + ETH_HLEN]
    back = list(came_back)
    for n in fits:
        if n in back:
            back.remove(n)
        else:
            return Violation("VIRTIO-5.1.4.1-DEV-FORWARD-WITHIN-MTU", "device",
                             f"a {n}-byte frame (mtu {mtu}) did not come back whole")
    return None


def check_mtu_stable(mtu_before: int, mtu_after: int) -> Violation | None:
    """§5.1.4.1: once set, mtu never changes."""
    if mtu_before != mtu_after:
        return Violation("VIRTIO-5.1.4.1-DEV-MTU-FIXED", "device", f"{mtu_before}->{mtu_after}")
    return None


def check_rx_packet(
    hdr: NetHdr, frame_len: int, mtu: int, mtu_negotiated: bool
) -> Violation | None:
    """§5.1.4.1: with MTU negotiated, non-GSO packets to the driver fit mtu + Ethernet header."""
    if mtu_negotiated and hdr.gso_type & ~GSO_ECN == GSO_NONE and frame_len > mtu + ETH_HLEN:
        return Violation("VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU", "device", f"{frame_len} > {mtu}")
    return None


def check_driver_config_write() -> Violation:
    """§5.1.4.2: any driver write to the net config is a violation."""
    return Violation("VIRTIO-5.1.4.2-DRV-NO-CONFIG-WRITE", "driver", "config write")


def ctrl_command_feature(cls: int) -> str | None:
    """The feature that enables a control class (§5.1.6.5)."""
    return {
        CTRL_RX: "CTRL_RX",
        CTRL_MAC: "CTRL_RX",
        CTRL_VLAN: "CTRL_VLAN",
        CTRL_ANNOUNCE: "GUEST_ANNOUNCE",
        CTRL_MQ: "MQ",
    }.get(cls)


def encode_ctrl(cls: int, cmd: int, data: bytes = b"") -> bytes:
    return bytes([cls, cmd]) + data


def allowed_acks(negotiated: int, cls: int, cmd: int) -> frozenset[int]:
    """Control-queue oracle: the ack byte is OK or ERR; unnegotiated classes cannot succeed."""
    if not F.has(negotiated, FN["CTRL_VQ"]):
        return frozenset()
    feat = ctrl_command_feature(cls)
    if cls == CTRL_MAC and cmd == 1:  # MAC_ADDR_SET lives behind CTRL_MAC_ADDR
        feat = "CTRL_MAC_ADDR"
    if feat is None or not F.has(negotiated, FN[feat]):
        return frozenset({ERR})
    return frozenset({OK, ERR})


def check_ack(negotiated: int, cls: int, cmd: int, ack: int) -> Violation | None:
    if ack not in allowed_acks(negotiated, cls, cmd):
        return Violation("VIRTIO-5.1.6.5-DEV-ACK", "device", f"class {cls} cmd {cmd} ack {ack}")
    return None


# --- the receive side a driver observes (§5.1.6.3.2, §5.1.6.4.1) ------------------------
#
# A driver sees a received packet as the buffers the device used for it: each buffer's
# writable size (the driver's own), the used entry's len, and the bytes there after the
# device was done.  :func:`judge_rx_packet` evaluates every device rule of §5.1.6.3.2 and
# §5.1.6.4.1 that those show, under the negotiated features, and names each violation.
# It is pure: the vhost-user session and the unit tests feed it the same records.

HDR_LEN = HDR.size  # 12: VERSION_1 (or MRG_RXBUF) always carries num_buffers (§5.1.6)
GUEST_GSO = ("GUEST_TSO4", "GUEST_TSO6", "GUEST_UFO", "GUEST_USO4", "GUEST_USO6")
GSO_NAMES = {GSO_NONE: "NONE", GSO_TCPV4: "TCPV4", GSO_UDP: "UDP", GSO_TCPV6: "TCPV6",
             GSO_UDP_L4: "UDP_L4"}
# §5.1.6.4.1: which gso_type each GUEST_* feature unlocks (the spec's GUEST_UDP is taken as
# GUEST_UFO, the only UDP-fragmentation feature §5.1.3 defines)
_RX_GSO_RULE = {
    GSO_TCPV4: ("VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV4", ("GUEST_TSO4",)),
    GSO_UDP: ("VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP", ("GUEST_UFO",)),
    GSO_TCPV6: ("VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV6", ("GUEST_TSO6",)),
    GSO_UDP_L4: ("VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP-L4", ("GUEST_USO4", "GUEST_USO6")),
}
RX_RULES = (
    "VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT", "VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC",
    "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE", "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG",
    "VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL", "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER",
    "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO", "VIRTIO-5.1.6.4.1-DEV-FULL-CSUM",
    *(r for r, _ in _RX_GSO_RULE.values()), "VIRTIO-5.1.6.4.1-DEV-GSO-NONE",
    "VIRTIO-5.1.6.4.1-DEV-ECN-UNNEGOTIATED", "VIRTIO-5.1.6.4.1-DEV-GSO-ECN-BIT",
    "VIRTIO-5.1.6.4.1-DEV-GSO-NEEDS-CSUM",
    "VIRTIO-5.1.6.4.1-DEV-NO-RSC-INFO", "VIRTIO-5.1.6.4.1-DEV-RSC-INFO",
    "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-PSEUDO", "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE",
    "VIRTIO-5.1.6.4.1-DEV-DATA-VALID-VALIDATED", "VIRTIO-5.1.6.4.1-DEV-HDR-LEN",
    "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES",
)
# §5.1.6.2.2: what the device does with a transmitted header.  A front-end sees only what
# comes back on the receive queue, never what the device "relies on" internally.
TX_RULES = (
    "VIRTIO-5.1.6.2.2-DEV-IGNORE-UNKNOWN-FLAGS", "VIRTIO-5.1.6.2.2-DEV-NO-CSUM-FIELDS",
    "VIRTIO-5.1.6.2.2-DEV-HDR-LEN-NOT-RELIED", "VIRTIO-5.1.6.2.2-DEV-NO-RELY-CSUM",
)
TX_PLATFORM_DETAIL = (
    "what a device relies on inside itself when it transmits (§5.1.6.2.2: hdr_len, the "
    "packet checksum without NEEDS_CSUM) cannot be observed through a vhost-user back-end: "
    "the frame leaves the back-end, not towards the front-end; a loopback shows only what "
    "it delivers back (PVSPEC-NET-LOOPBACK).  Unknown flag bits and csum_start/csum_offset "
    "without NEEDS_CSUM can only have an effect on the frame, which a loopback shows: "
    "judged by the net-tx-header check")
# the transmit rules judged on their effect on what a loopback delivers back
TX_EFFECT_RULES = ("VIRTIO-5.1.6.2.2-DEV-IGNORE-UNKNOWN-FLAGS",
                   "VIRTIO-5.1.6.2.2-DEV-NO-CSUM-FIELDS")
LOOPBACK_RULE = "PVSPEC-NET-LOOPBACK"
LOOPBACK_TEXT = ("a frame the driver transmits to a loopback back-end comes back on the "
                 "receive queue byte for byte, but for the checksum the driver asked the "
                 "device to complete (NEEDS_CSUM): either left partial and flagged "
                 "NEEDS_CSUM for the driver (GUEST_CSUM), or completed")


# the device-side rules of §5.1.6 no front-end can judge, each with why
NOT_OBSERVABLE: dict[str, str] = {
    **dict.fromkeys((r for r in TX_RULES if r not in TX_EFFECT_RULES), TX_PLATFORM_DETAIL),
    "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-VALIDATE": (
        "whether the device validated the checksums of a packet it flags NEEDS_CSUM is its "
        "own step before the packet reaches the driver; what it reports (the pseudo-header "
        "sum, csum_start/csum_offset) is judged by NEEDS-CSUM-PSEUDO and NEEDS-CSUM-RANGE"),
}


def not_observable(rule: str) -> str:
    """Why ``rule`` (a :data:`NOT_OBSERVABLE` key) is reported not judged (platform)."""
    return NOT_OBSERVABLE[rule]


@attrs.frozen
class RxBuf:
    """One receive buffer as the driver sees it after the device used it."""

    size: int  # device-writable bytes the driver supplied
    used_len: int  # the used entry's len
    data: bytes  # the buffer's writable bytes after the device was done (``size`` of them)


@attrs.frozen
class RxJudgement:
    """The rules one received packet gave occasion to judge, and the broken ones."""

    judged: frozenset[str]
    violations: tuple[Violation, ...]
    hdr: NetHdr | None
    frame: bytes  # the packet as the driver takes it: buffers up to their used lens
    warnings: tuple[Violation, ...] = ()  # SHOULD-level, not violations

    @property
    def ok(self) -> bool:
        return not self.violations


def ones_sum(data: bytes, start: int = 0) -> int:
    """The 16-bit ones' complement sum of ``data`` (RFC 1071), folded, not inverted."""
    if len(data) % 2:
        data += b"\0"
    s = start
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def l4_info(frame: bytes) -> tuple[int, int, int] | None:
    """(L4 offset, checksum field offset, pseudo-header sum) of an IPv4 TCP/UDP frame
    without VLAN tag, IP options allowed; None for anything else."""
    if len(frame) < ETH_HLEN + 20 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 0xF) * 4
    total = int.from_bytes(frame[16:18], "big")
    proto = frame[23]
    l4 = ETH_HLEN + ihl
    field = {6: 16, 17: 6}.get(proto)
    if field is None or ihl < 20 or len(frame) < ETH_HLEN + total or total < ihl + field + 2:
        return None
    l4_len = total - ihl
    pseudo = ones_sum(frame[26:34] + bytes([0, proto]) + l4_len.to_bytes(2, "big"))
    return l4, l4 + field, pseudo


def l4_checksum_ok(frame: bytes) -> bool | None:
    """Whether an IPv4 TCP/UDP frame's L4 checksum verifies (None: not such a frame)."""
    info = l4_info(frame)
    if info is None:
        return None
    l4, _field, pseudo = info
    total = int.from_bytes(frame[16:18], "big")
    seg = frame[l4: ETH_HLEN + total]
    if frame[23] == 17 and frame[l4 + 6: l4 + 8] == b"\0\0":
        return True  # UDP over IPv4: no checksum
    return ones_sum(seg, pseudo) == 0xFFFF


def complete_checksum(frame: bytes, csum_start: int, csum_offset: int) -> bytes:
    """What the driver computes from NEEDS_CSUM (§5.1.6.2 item 2): the ones' complement
    sum from ``csum_start`` to the end, inverted, stored at ``csum_start + csum_offset``."""
    at = csum_start + csum_offset
    c = (~ones_sum(frame[csum_start:])) & 0xFFFF
    return frame[:at] + c.to_bytes(2, "big") + frame[at + 2:]


def judge_rx_packet(negotiated: int, bufs: Sequence[RxBuf], mtu: int | None = None
                    ) -> RxJudgement:
    """§5.1.6.3.2 and §5.1.6.4.1 on one received packet: the buffers the device used for
    it, in used-ring order (the first holds the header; with MRG_RXBUF the caller passes
    the header's ``num_buffers`` buffers, or fewer when fewer were used).

    ``mtu``: the device's mtu when MTU was negotiated and the config was read.  Rules are
    judged only where the negotiated features give them occasion; the frame's checksums
    are looked at only for IPv4 TCP/UDP frames.
    """
    has = functools.partial(F.has, negotiated)
    judged: set[str] = set()
    out: list[Violation] = []
    warn: list[Violation] = []

    def rule(rid: str, bad: bool, detail: str, should: bool = False) -> None:
        judged.add(rid)
        if bad:
            (warn if should else out).append(Violation(rid, "device", detail))

    if not bufs:
        return RxJudgement(frozenset(), (), None, b"")
    first = bufs[0]
    judged.add("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES")
    for i, b in enumerate(bufs):
        if b.used_len > b.size:
            out.append(Violation("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", "device",
                                 f"buffer {i}: used len {b.used_len} > its {b.size} bytes"))
    if first.used_len < HDR_LEN:
        rule("VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT", True,
             f"used len {first.used_len}: no complete {HDR_LEN}-byte header")
        return RxJudgement(frozenset(judged), tuple(out), None, b"", tuple(warn))
    hdr = NetHdr.decode(first.data)
    frame = first.data[HDR_LEN: min(first.used_len, first.size)] + b"".join(
        b.data[: min(b.used_len, b.size)] for b in bufs[1:])
    mrg = has(FN["MRG_RXBUF"])
    n = hdr.num_buffers
    if mrg:
        rule("VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER", len(bufs) < n,
             f"num_buffers {n} but only {len(bufs)} buffer(s) used with it")
        # more buffers than num_buffers says: the caller knows the packet goes on (a
        # loopback frame longer than what num_buffers covers); fewer: MRG-TOGETHER
        rule("VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG", n < 1 or n < len(bufs),
             f"num_buffers {n}, packet spread over {len(bufs)} buffer(s)")
        rule("VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT", n < 1 or n < len(bufs),
             f"num_buffers {n}, {len(bufs)} buffer(s) hold the packet")
        if len(bufs) > 1:
            short = [(i, b.used_len, b.size) for i, b in enumerate(bufs[:-1])
                     if b.used_len != b.size]
            rule("VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL", bool(short),
                 "; ".join(f"buffer {i} of {len(bufs)}: used {u} of {s} bytes"
                           for i, u, s in short))
    else:
        rule("VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE", n != 1,
             f"num_buffers {n} without MRG_RXBUF")
        rule("VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT", n != 1 or len(bufs) != 1,
             f"num_buffers {n}, {len(bufs)} buffer(s)")
        rule("VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC", len(bufs) != 1,
             f"{len(bufs)} buffers for one packet without MRG_RXBUF")
    csum = has(FN["GUEST_CSUM"])
    if not csum:
        rule("VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO", hdr.flags != 0,
             f"flags {hdr.flags:#x} without GUEST_CSUM")
        ok = l4_checksum_ok(frame)
        if ok is not None:
            rule("VIRTIO-5.1.6.4.1-DEV-FULL-CSUM", not ok,
                 "the frame's L4 checksum does not verify", should=True)
    base = hdr.gso_type & ~GSO_ECN
    for gso, (rid, feats) in _RX_GSO_RULE.items():
        if not any(has(FN[f]) for f in feats):
            rule(rid, base == gso, f"gso_type {hdr.gso_type:#x} without "
                 f"{' or '.join(feats)}")
    if not any(has(FN[f]) for f in GUEST_GSO):
        rule("VIRTIO-5.1.6.4.1-DEV-GSO-NONE", hdr.gso_type != GSO_NONE,
             f"gso_type {hdr.gso_type:#x}, no GUEST_* segmentation feature negotiated")
    if not has(FN["GUEST_ECN"]):
        rule("VIRTIO-5.1.6.4.1-DEV-ECN-UNNEGOTIATED", bool(hdr.gso_type & GSO_ECN),
             f"gso_type {hdr.gso_type:#x} carries the ECN bit without GUEST_ECN", should=True)
    if base != GSO_NONE:
        rule("VIRTIO-5.1.6.4.1-DEV-GSO-NEEDS-CSUM",
             not hdr.flags & F_NEEDS_CSUM or hdr.gso_size == 0,
             f"gso_type {hdr.gso_type:#x} with flags {hdr.flags:#x}, gso_size {hdr.gso_size}")
        if has(FN["RSC_EXT"]):
            rule("VIRTIO-5.1.6.4.1-DEV-RSC-INFO", not hdr.flags & F_RSC_INFO,
                 "GSO packet without RSC_INFO although RSC_EXT was negotiated")
    if not has(FN["RSC_EXT"]):
        rule("VIRTIO-5.1.6.4.1-DEV-NO-RSC-INFO", bool(hdr.flags & F_RSC_INFO),
             f"flags {hdr.flags:#x}: RSC_INFO without RSC_EXT")
    if csum and hdr.flags & F_NEEDS_CSUM and not hdr.flags & F_RSC_INFO:
        at = hdr.csum_start + hdr.csum_offset
        rule("VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE", at + 2 > len(frame),
             f"csum_start {hdr.csum_start} + csum_offset {hdr.csum_offset} + 2 past the "
             f"{len(frame)}-byte packet")
        info = l4_info(frame)
        if info is not None and at + 2 <= len(frame) and base == GSO_NONE:
            l4, field, pseudo = info
            if (hdr.csum_start, at) == (l4, field):
                rule("VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-PSEUDO",
                     int.from_bytes(frame[field: field + 2], "big") not in (pseudo,),
                     f"checksum field {frame[field:field + 2].hex()}, pseudo-header sum "
                     f"{pseudo:04x}")
            rule("VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE",
                 not l4_checksum_ok(complete_checksum(frame, hdr.csum_start, hdr.csum_offset)),
                 f"completing from csum_start {hdr.csum_start} at offset {hdr.csum_offset} "
                 f"does not give a checksummed packet")
    if csum and hdr.flags & F_DATA_VALID and not hdr.flags & F_NEEDS_CSUM:
        ok = l4_checksum_ok(frame)
        if ok is not None:
            rule("VIRTIO-5.1.6.4.1-DEV-DATA-VALID-VALIDATED", not ok,
                 "DATA_VALID set on a frame whose L4 checksum does not verify")
    if has(FN["GUEST_ECN"]) and base in (GSO_TCPV4, GSO_TCPV6):
        info = l4_info(frame)
        if info is not None and frame[23] == 6:
            cwr = bool(frame[info[0] + 13] & 0x80)  # the sender's congestion window reduced
            rule("VIRTIO-5.1.6.4.1-DEV-GSO-ECN-BIT", cwr and not hdr.gso_type & GSO_ECN,
                 f"TCP segment with CWR set, gso_type {hdr.gso_type:#x} lacks GSO_ECN")
    if base != GSO_NONE and any(has(FN[f]) for f in GUEST_GSO):
        info = l4_info(frame)
        if info is not None and base in (GSO_TCPV4, GSO_UDP, GSO_UDP_L4):
            l4, _f, _p = info
            need = l4 + (((frame[l4 + 12] >> 4) * 4) if frame[23] == 6 else 8)
            rule("VIRTIO-5.1.6.4.1-DEV-HDR-LEN", hdr.hdr_len < need,
                 f"hdr_len {hdr.hdr_len} < {need} bytes of headers", should=True)
    if mtu is not None:
        v = check_rx_packet(hdr, len(frame), mtu, True)
        rule("VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU", v is not None, v.detail if v else "")
    return RxJudgement(frozenset(judged), tuple(out), hdr, frame, tuple(warn))


def judge_rx_written(a: RxJudgement, b: RxJudgement, lens: Sequence[int]
                     ) -> Violation | None:
    """§2.7.8.2 on a packet received twice, once into buffers poisoned with one value and
    once with another (the same frame, the same buffer sizes): a byte within the used
    lens that differs between the two was never written by the device, yet counted in
    len.  ``lens``: the used lens of the first run's buffers (header first)."""
    raw_a = (a.hdr.encode() if a.hdr else b"") + a.frame
    raw_b = (b.hdr.encode() if b.hdr else b"") + b.frame
    n = min(len(raw_a), len(raw_b), sum(lens))
    unwritten = [i for i in range(n) if raw_a[i] != raw_b[i]]
    if not unwritten:
        return None
    return Violation("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", "device", (
        f"used len {sum(lens)} counts {len(unwritten)} byte(s) the device never wrote "
        f"(they kept the driver's poison, which differed between two receptions of the "
        f"same frame): offsets {unwritten[:4]}{'...' if len(unwritten) > 4 else ''}"))


def judge_loopback(sent_hdr: NetHdr, sent: bytes, got: RxJudgement, negotiated: int
                   ) -> Violation | None:
    """PVSPEC-NET-LOOPBACK: the frame back from a loopback back-end is the frame sent,
    but for the checksum the driver asked the device to complete (NEEDS_CSUM, §5.1.6.2
    item 2): with GUEST_CSUM the device may pass it on partial with NEEDS_CSUM set for
    the driver (§5.1.6.4 item 3), or complete it; without, it completes it (else the
    SHOULD of §5.1.6.4.1, judged by :func:`judge_rx_packet`).  Only frames sent without
    GSO are judged here (a segmented frame comes back as several)."""
    if got.hdr is None:
        return Violation(LOOPBACK_RULE, "device", "no header came back")
    frame = got.frame
    if len(frame) != len(sent):
        return Violation(LOOPBACK_RULE, "device",
                         f"{len(frame)} bytes came back for {len(sent)} sent")
    asked = bool(sent_hdr.flags & F_NEEDS_CSUM)
    if asked:
        done = complete_checksum(sent, sent_hdr.csum_start, sent_hdr.csum_offset)
        if frame == done and done != sent:
            return None
        if frame == sent and not got.hdr.flags & F_NEEDS_CSUM:
            return Violation(LOOPBACK_RULE, "device", (
                f"the frame sent with NEEDS_CSUM came back with its checksum still "
                f"partial and flags {got.hdr.flags:#x}: neither completed nor left to the "
                f"driver with NEEDS_CSUM"))
    if frame == sent:
        return None
    diff = next(i for i, (a, b) in enumerate(zip(frame, sent, strict=True)) if a != b)
    return Violation(LOOPBACK_RULE, "device",
                     f"frame differs from the one sent at byte {diff}: "
                     f"{frame[diff:diff + 8].hex()} != {sent[diff:diff + 8].hex()}")
