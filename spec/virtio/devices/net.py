"""virtio-net basics (VIRTIO 1.3 §5.1): header, config, queue roles, control queue.

Only the core is modelled: the TX header rules of §5.1.6.2.1, the config rules of
§5.1.4, and a control-queue oracle (which acknowledgements a device may give).
"""

from __future__ import annotations

import struct

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
