"""virtio-net (VIRTIO 1.3 5.1): one queue pair, a control queue, receive filtering.

The "wire" is two lists: :attr:`NetDevice.sent` holds the frames the driver
transmitted (checksum completed when it asked for it) and :meth:`NetDevice.deliver`
queues inbound frames that the receive queue hands out one per buffer.  Mergeable
receive buffers are not offered: a frame spread over several buffers would need them
all before the first may be used, which a one-buffer-at-a-time device cannot promise.
Self-contained: no ``spec`` import.
"""

from __future__ import annotations

import struct
from collections import deque

DEVICE_ID = 1  # 5 "Device Types": network card
RXQ, TXQ, CTRLQ = 0, 1, 2  # 5.1.2 with one pair: receiveq0, transmitq0, controlq

# 5.1.3 feature bits
F_CSUM, F_MTU, F_MAC, F_HOST_TSO4, F_HOST_TSO6, F_HOST_UFO = 0, 3, 5, 11, 12, 14
F_MRG_RXBUF, F_STATUS, F_CTRL_VQ, F_CTRL_RX, F_CTRL_VLAN, F_CTRL_RX_EXTRA = 15, 16, 17, 18, 19, 20
F_GUEST_ANNOUNCE, F_MQ, F_CTRL_MAC_ADDR, F_HOST_USO = 21, 22, 23, 56
F_VERSION_1 = 32
RING_FEATURES = sum(1 << b for b in (28, 29, 32, 35))
OFFERED = RING_FEATURES | sum(
    1 << b
    for b in (F_CSUM, F_MTU, F_MAC, F_STATUS, F_CTRL_VQ, F_CTRL_RX, F_CTRL_VLAN,
              F_CTRL_RX_EXTRA, F_GUEST_ANNOUNCE, F_MQ, F_CTRL_MAC_ADDR)
)

HDR = struct.Struct("<BBHHHHH")  # 5.1.6: flags, gso_type, hdr_len, gso_size, csum x2, num_buffers
HDR_F_NEEDS_CSUM = 1
GSO_NONE, GSO_ECN = 0, 0x80
GSO_FEATURE = {1: F_HOST_TSO4, 3: F_HOST_UFO, 4: F_HOST_TSO6, 5: F_HOST_USO}
S_LINK_UP, S_ANNOUNCE = 1, 2  # 5.1.4 status bits
ETH_HLEN, ETH_P_8021Q = 14, 0x8100
MAX_FRAME = 65535 + ETH_HLEN

# 5.1.6.5 control classes and commands
OK, ERR = 0, 1
CLS_RX, CLS_MAC, CLS_VLAN, CLS_ANNOUNCE, CLS_MQ = 0, 1, 2, 3, 4
RX_PROMISC, RX_ALLMULTI, RX_ALLUNI, RX_NOMULTI, RX_NOUNI, RX_NOBCAST = range(6)
MAC_TABLE_SET, MAC_ADDR_SET = 0, 1
VLAN_ADD, VLAN_DEL = 0, 1
ANNOUNCE_ACK = 0
MQ_VQ_PAIRS_SET = 0


def hdr_len(negotiated: int) -> int:
    """5.1.6: num_buffers is part of the header with VERSION_1 or MRG_RXBUF."""
    return 12 if negotiated >> F_VERSION_1 & 1 or negotiated >> F_MRG_RXBUF & 1 else 10


def complete_checksum(frame: bytes, start: int, offset: int) -> bytes:
    """5.1.6.2: fold the ones' complement sum from ``start`` to the end into start+offset.

    The driver left the pseudo-header sum in the checksum field, so summing over it and
    storing the complement yields the final Internet checksum.
    """
    data = frame[start:] + (b"\0" if (len(frame) - start) % 2 else b"")
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    out = bytearray(frame)
    out[start + offset : start + offset + 2] = struct.pack(">H", ~total & 0xFFFF)
    return bytes(out)


class NetDevice:
    """5.1.6 semantics over in-memory wires; ``negotiate`` fixes header size and commands."""

    device_id = DEVICE_ID
    features = OFFERED

    def __init__(self, mac: bytes = b"\x52\x54\x00\x12\x34\x56", mtu: int = 1500,
                 negotiated: int | None = None, backlog: int = 256) -> None:
        if len(mac) != 6 or not 68 <= mtu <= 65535:
            raise ValueError("mac is 6 bytes, mtu 68..65535 (5.1.4.1)")
        self.mac, self.mtu, self.backlog = bytes(mac), mtu, backlog
        self.link_up = True
        self.sent: list[bytes] = []
        self.tx_dropped = 0
        self.rx_dropped = 0
        self.negotiate(OFFERED if negotiated is None else negotiated)

    def negotiate(self, features: int) -> int:
        """Accept the driver's features (2.2) and reset the queue and filter state."""
        self.negotiated = features & self.features
        self.rx: deque[bytes] = deque()
        self.announce_pending = False
        # reset filter state: receive everything until the driver narrows it (5.1.6.5.1)
        self.promisc, self.allmulti, self.alluni = True, False, False
        self.nomulti, self.nouni, self.nobcast = False, False, False
        self.uni_table: set[bytes] = set()
        self.multi_table: set[bytes] = set()
        self.vlans: set[int] = set()
        self.pairs = 1
        return self.negotiated

    def has(self, bit: int) -> bool:
        return bool(self.negotiated >> bit & 1)

    # --- config (5.1.4) ---------------------------------------------------------------

    def config(self) -> bytes:
        status = (S_LINK_UP if self.link_up else 0) | (S_ANNOUNCE if self.announce_pending else 0)
        return self.mac + struct.pack("<HHH", status, 1, self.mtu)

    def set_link(self, up: bool) -> None:
        self.link_up = up

    def announce(self) -> None:
        """Ask the driver to announce itself (5.1.6.5.4); cleared by ANNOUNCE_ACK."""
        if self.has(F_GUEST_ANNOUNCE):
            self.announce_pending = True

    # --- queues -----------------------------------------------------------------------

    def ready(self, queue: int) -> bool:
        if queue == RXQ:
            return bool(self.rx)
        return queue == TXQ or (queue == CTRLQ and self.has(F_CTRL_VQ))

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        if queue == TXQ:
            self.transmit(out)
            return b""
        if queue == RXQ:
            return self.receive(in_len)
        if queue == CTRLQ and self.has(F_CTRL_VQ):
            return bytes([self.control(out)]) if in_len >= 1 else b""
        raise ValueError(f"virtio-net has no queue {queue}")

    # --- transmit (5.1.6.2) -----------------------------------------------------------

    def tx_header_ok(self, flags: int, gso_type: int, num_buffers: int) -> bool:
        """The driver rules of 5.1.6.2.1; a frame that breaks them is dropped."""
        if num_buffers != 0 or (flags and not self.has(F_CSUM)):
            return False
        base = gso_type & ~GSO_ECN
        if base == GSO_NONE:
            return not gso_type & GSO_ECN
        feat = GSO_FEATURE.get(base)
        return feat is not None and self.has(feat) and bool(flags & HDR_F_NEEDS_CSUM)

    def transmit(self, out: bytes) -> bool:
        """Put one frame on the wire; False (and counted) when it is dropped."""
        n = hdr_len(self.negotiated)
        if len(out) < n:
            self.tx_dropped += 1
            return False
        flags, gso, _hl, _gs, cstart, coff, nbuf = HDR.unpack_from(out.ljust(HDR.size, b"\0"))
        if n == 10:
            nbuf = 0  # the legacy header has no num_buffers field
        frame = out[n:]
        limit = self.mtu + ETH_HLEN if self.has(F_MTU) else MAX_FRAME  # 5.1.4.2
        ok = self.tx_header_ok(flags, gso, nbuf) and ETH_HLEN <= len(frame) <= limit
        if ok and flags & HDR_F_NEEDS_CSUM:
            ok = cstart + coff + 2 <= len(frame)
            if ok:
                frame = complete_checksum(frame, cstart, coff)
        if not ok:
            self.tx_dropped += 1
            return False
        self.sent.append(frame)
        return True

    # --- receive (5.1.6.3, 5.1.6.4) ---------------------------------------------------

    def accepts(self, frame: bytes) -> bool:
        """Receive filtering per the rx mode, MAC tables and VLAN table (5.1.6.5)."""
        if self.has(F_CTRL_VLAN) and frame[12:14] == b"\x81\x00":
            vid = int.from_bytes(frame[14:16], "big") & 0xFFF
            if vid not in self.vlans:
                return False
        if self.promisc:
            return True
        dst = frame[:6]
        if dst == b"\xff" * 6:
            return not self.nobcast
        if dst[0] & 1:
            return not self.nomulti and (self.allmulti or dst in self.multi_table)
        return not self.nouni and (self.alluni or dst == self.mac or dst in self.uni_table)

    def deliver(self, frame: bytes) -> bool:
        """A frame arrives from the wire; False when it is dropped (filter, size, backlog).

        5.1.4.1: with MTU negotiated nothing longer than mtu plus the Ethernet header
        reaches the driver (we send no GSO packets).
        """
        limit = self.mtu + ETH_HLEN if self.has(F_MTU) else MAX_FRAME
        if not ETH_HLEN <= len(frame) <= limit or not self.accepts(frame):
            self.rx_dropped += 1
            return False
        if len(self.rx) >= self.backlog:
            self.rx_dropped += 1
            return False
        self.rx.append(bytes(frame))
        return True

    def rx_header(self) -> bytes:
        """No offloads were done, so only num_buffers is set: 1 without MRG_RXBUF (5.1.6.4)."""
        return HDR.pack(0, GSO_NONE, 0, 0, 0, 0, 1)[: hdr_len(self.negotiated)]

    def receive(self, in_len: int) -> bytes:
        """One frame per buffer; one that does not fit is dropped and the buffer used empty."""
        if not self.rx:
            return b""
        frame = self.rx.popleft()
        packet = self.rx_header() + frame
        if len(packet) > in_len:
            self.rx_dropped += 1
            return b""
        return packet

    # --- control queue (5.1.6.5) ------------------------------------------------------

    def control(self, out: bytes) -> int:
        if len(out) < 2:
            return ERR
        cls, cmd, data = out[0], out[1], out[2:]
        if cls == CLS_RX and self.has(F_CTRL_RX):
            return self._rx_mode(cmd, data)
        if cls == CLS_MAC:
            if cmd == MAC_TABLE_SET and self.has(F_CTRL_RX):
                return self._mac_table(data)
            if cmd == MAC_ADDR_SET and self.has(F_CTRL_MAC_ADDR) and len(data) == 6:
                self.mac = bytes(data)
                return OK
            return ERR
        if cls == CLS_VLAN and self.has(F_CTRL_VLAN) and cmd in (VLAN_ADD, VLAN_DEL):
            if len(data) != 2 or (vid := int.from_bytes(data, "little")) >= 4096:
                return ERR
            (self.vlans.add if cmd == VLAN_ADD else self.vlans.discard)(vid)
            return OK
        if cls == CLS_ANNOUNCE and self.has(F_GUEST_ANNOUNCE) and cmd == ANNOUNCE_ACK:
            self.announce_pending = False
            return OK
        if cls == CLS_MQ and self.has(F_MQ) and cmd == MQ_VQ_PAIRS_SET and len(data) == 2:
            n = int.from_bytes(data, "little")
            if n != 1:  # 5.1.6.5.5: 1..max_virtqueue_pairs, and we have one pair
                return ERR
            self.pairs = n
            return OK
        return ERR

    def _rx_mode(self, cmd: int, data: bytes) -> int:
        """5.1.6.5.1: one on/off byte; the last four need CTRL_RX_EXTRA."""
        extra = cmd > RX_ALLMULTI
        if len(data) != 1 or cmd > RX_NOBCAST or (extra and not self.has(F_CTRL_RX_EXTRA)):
            return ERR
        name = ("promisc", "allmulti", "alluni", "nomulti", "nouni", "nobcast")[cmd]
        setattr(self, name, data[0] != 0)
        return OK

    def _mac_table(self, data: bytes) -> int:
        """5.1.6.5.2: a unicast then a multicast table, each le32 count + 6-byte entries."""
        tables: list[set[bytes]] = []
        pos = 0
        for _ in range(2):
            if pos + 4 > len(data):
                return ERR
            n = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
            if pos + 6 * n > len(data):
                return ERR
            tables.append({data[pos + 6 * i : pos + 6 * i + 6] for i in range(n)})
            pos += 6 * n
        if pos != len(data):
            return ERR
        self.uni_table, self.multi_table = tables
        return OK
