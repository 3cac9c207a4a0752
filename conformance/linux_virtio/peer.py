"""The far end of the linux-virtio:net wire: a host at 10.0.2.2 that answers ARP and ICMP
echo, so Linux's virtio-net driver has packets to receive as well as to send.

Frames are plain Ethernet (the back-end's :class:`reference_impl.virtio.net.NetDevice`
has removed the virtio-net header); :func:`pump` moves what the driver sent through
:func:`answer` and delivers the replies, which the back-end then writes into the driver's
receive buffers.
"""

from __future__ import annotations

import struct

__all__ = ["GUEST_IP", "PEER_IP", "PEER_MAC", "answer", "checksum", "pump"]

PEER_MAC = bytes.fromhex("525400aabbcc")
PEER_IP = bytes([10, 0, 2, 2])
GUEST_IP = bytes([10, 0, 2, 15])
_ARP, _IP = 0x0806, 0x0800


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def answer(frame: bytes) -> list[bytes]:
    """The frames the peer sends back for ``frame``: an ARP reply for a request about
    PEER_IP, an echo reply for an ICMP echo request to it; nothing for anything else."""
    if len(frame) < 14:
        return []
    dst, src, etype = frame[:6], frame[6:12], int.from_bytes(frame[12:14], "big")
    if etype == _ARP and len(frame) >= 42:
        op, sha, spa, tpa = (int.from_bytes(frame[20:22], "big"), frame[22:28],
                             frame[28:32], frame[38:42])
        if op == 1 and tpa == PEER_IP:
            arp = (frame[14:20] + (2).to_bytes(2, "big") + PEER_MAC + PEER_IP + sha + spa)
            return [src + PEER_MAC + frame[12:14] + arp]
        return []
    if etype != _IP or len(frame) < 34 or dst not in (PEER_MAC, b"\xff" * 6):
        return []
    ihl = (frame[14] & 0xF) * 4
    ip = frame[14:14 + ihl]
    total = int.from_bytes(ip[2:4], "big")
    if ip[9] != 1 or ip[16:20] != PEER_IP or len(frame) < 14 + total:
        return []
    icmp = bytearray(frame[14 + ihl:14 + total])
    if len(icmp) < 8 or icmp[0] != 8:
        return []
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    hdr = bytearray(ip)
    hdr[12:16], hdr[16:20] = ip[16:20], ip[12:16]
    hdr[8] = 64
    hdr[10:12] = b"\0\0"
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return [src + PEER_MAC + frame[12:14] + bytes(hdr) + bytes(icmp)]


def pump(dev: object) -> None:
    """After a batch: answer every frame the driver sent, deliver the answers."""
    sent: list[bytes] = getattr(dev, "sent", [])
    frames, sent[:] = list(sent), []
    for f in frames:
        for reply in answer(f):
            dev.deliver(reply)  # type: ignore[attr-defined]
