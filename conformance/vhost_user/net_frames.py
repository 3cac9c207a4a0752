"""Ethernet frames for the virtio-net checks: IPv4 UDP and TCP with real checksums.

The receive judge (spec.virtio.devices.net) verifies checksums of IPv4 TCP/UDP frames
only, so the frames a check transmits are such frames: a device that corrupts, completes
or flags a checksum is then seen doing so.
"""

from __future__ import annotations

from spec.virtio.devices import net as N

DST = bytes.fromhex("02000000aa01")  # locally administered unicast
SRC = bytes.fromhex("02000000bb02")
IP_SRC, IP_DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
ETH_IPV4 = b"\x08\x00"
UDP, TCP = 17, 6


def _ip_header(proto: int, l4_len: int, ident: int) -> bytes:
    hdr = bytearray(b"\x45\x00" + (20 + l4_len).to_bytes(2, "big") + ident.to_bytes(2, "big")
                    + b"\x40\x00\x40" + bytes([proto]) + b"\0\0" + IP_SRC + IP_DST)
    hdr[10:12] = ((~N.ones_sum(bytes(hdr))) & 0xFFFF).to_bytes(2, "big")
    return bytes(hdr)


def _payload(n: int, seed: int) -> bytes:
    return bytes((seed * 31 + i * 7 + (i >> 8)) & 0xFF for i in range(n))


def frame(size: int, proto: int = UDP, seed: int = 1, partial: bool = False,
          tcp_flags: int = 0x18) -> bytes:
    """An IPv4 frame of exactly ``size`` bytes (>= 42 for UDP, 54 for TCP) with a correct
    L4 checksum, or (``partial``) the pseudo-header sum in the checksum field, as a driver
    that asks for NEEDS_CSUM leaves it (§5.1.6.2 item 2)."""
    l4_hdr = 8 if proto == UDP else 20
    l4_len = size - N.ETH_HLEN - 20
    if l4_len < l4_hdr:
        raise ValueError(f"a {size}-byte frame has no room for the headers")
    body = _payload(l4_len - l4_hdr, seed)
    if proto == UDP:
        l4 = bytearray(b"\x30\x39\x30\x3a" + l4_len.to_bytes(2, "big") + b"\0\0" + body)
    else:
        l4 = bytearray(b"\x30\x39\x30\x3a" + seed.to_bytes(4, "big") + bytes(4)
                       + b"\x50" + bytes([tcp_flags]) + b"\xff\xff" + b"\0\0\0\0" + body)
    eth_ip = DST + SRC + ETH_IPV4 + _ip_header(proto, l4_len, seed & 0xFFFF)
    fr = eth_ip + bytes(l4)
    info = N.l4_info(fr)
    assert info is not None
    l4_off, field, pseudo = info
    if partial:
        value = pseudo
    else:
        value = (~N.ones_sum(fr[l4_off:], pseudo)) & 0xFFFF
        if proto == UDP and value == 0:
            value = 0xFFFF
    return fr[:field] + value.to_bytes(2, "big") + fr[field + 2:]


def csum_fields(fr: bytes) -> tuple[int, int]:
    """(csum_start, csum_offset) of an IPv4 TCP/UDP frame (§5.1.6.2 item 2's example)."""
    info = N.l4_info(fr)
    assert info is not None
    return info[0], info[1] - info[0]
