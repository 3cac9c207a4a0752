"""A vhost-user virtio-net session: the spec's model driver on a receive and a transmit
queue over real shared memory, against a loopback back-end.

Mirrors :mod:`conformance.vhost_user.session` (blk): the split-ring model driver
(spec.virtio.split) places buffers in memfds the back-end mapped, and every exchange is
judged by the device oracle (spec.virtio.oracle.judge_split) on before/after snapshots,
once per queue.  Receive queue 0 and transmit queue 1 (VIRTIO 1.3 §5.1.2) each live in
their own memory region, so each queue's snapshot holds its ring and its buffers only and
the oracle judges every write the device made to that region.  Each received packet is
then judged by spec.virtio.devices.net.judge_rx_packet (§5.1.6.3.2, §5.1.6.4.1), and
each looped-back frame against the one sent (judge_loopback).

Every wait is bounded; a back-end that closes the connection or dies is an outcome of the
exchange ("closed" / "crashed"), never an exception of this module.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Sequence
from typing import Any

import attrs

from conformance.vhost_user.frontend import Frontend, Vring
from conformance.vhost_user.memory import MemfdMemory
from conformance.vhost_user.net_rings import AnyQueue, PackedQueue, SplitQueue
from conformance.vhost_user.protocol import PF, U64, ProtocolViolation
from conformance.vhost_user.session import PROTO_WANT, connect
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio import oracle as orc
from spec.virtio import split as sp
from spec.virtio.devices import net as N
from spec.virtio.memory import ByteMemory
from spec.virtio.ring_math import RingFeatures

FN = N.FN
RX_BASE, TX_BASE = 0x0, 0x100000  # guest-physical bases of the two regions
MEM_SIZE = 256 << 10  # per region: the oracle diffs all of it per exchange
SCRATCH = 0x4000  # indirect tables (16 entries of 16 bytes per head)
DATA = 0x10000  # buffers: receive buffers one slot per head, transmit bump-allocated
RX_SLOT = 2048  # bytes per receive head: 12-byte header + a 1514-byte frame fit
QSIZE = 64
MAX_INDIRECT = 16
POISON = 0xA5
POISONS = (0xA5, 0x5A)  # alternate rounds: a byte the device wrote reads the same in both
NET_CONFIG_SIZE = 12  # mac, status, max_virtqueue_pairs, mtu (§5.1.4)
RX_Q, TX_Q = 0, 1
NET_SET_MTU = 20  # VHOST_USER_NET_SET_MTU (vhost-user.rst): the mtu the guest is shown
MTU = 1500  # what this front-end, as the VMM, puts in the config space's mtu (§5.1.4)
NET_WANT = F.mask(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX, FN["MRG_RXBUF"], FN["CSUM"],
                  FN["GUEST_CSUM"], FN["MAC"], FN["STATUS"], FN["MTU"])


@attrs.frozen
class Sent:
    """One frame handed to the transmit queue: its header, bytes and descriptor layout."""

    hdr: N.NetHdr
    frame: bytes
    split: int = 1  # descriptors: 1 = header and frame together; 2 = header apart; 3+ more
    indirect: bool = False
    # with ``indirect`` (split rings): this many leading parts in ordinary descriptors
    # chained to the indirect one (2.7.5.3.2's mixed chain)
    direct_prefix: int = 0
    # with ``indirect``: WRITE set on the descriptor that points at the table, which the
    # device ignores (2.7.5.3.2)
    write_on_indirect: bool = False


@attrs.frozen
class Packet:
    """One packet the driver took from the receive queue, judged."""

    heads: tuple[int, ...]
    judgement: N.RxJudgement
    sent: Sent | None  # the frame it is the loopback of (ring order), if any
    loopback: Any = None  # spec.virtio.verdict.Violation of PVSPEC-NET-LOOPBACK, or None
    lens: tuple[int, ...] = ()  # the used lens of its buffers


@attrs.frozen
class QueueStep:
    """What one queue saw in an exchange: its oracle verdict and the evidence."""

    verdict: orc.Verdict
    notified: bool
    queue: AnyQueue
    before: ByteMemory
    after: ByteMemory
    placed: tuple[tuple[int, Any], ...]
    ring: dict[str, Any]

    def evidence(self) -> tuple[dict[str, Any], ...]:
        return self.queue.evidence(self.before, self.after, [h for h, _ in self.placed],
                                   self.ring)


@attrs.frozen
class NetStep:
    """One exchange: receive buffers posted, frames transmitted, what came back."""

    tx: QueueStep
    rx: QueueStep
    packets: tuple[Packet, ...]
    outcome: str  # "completed" | "no-progress" | "closed" | "crashed"
    tx_done: int  # transmit buffers returned
    judge_s: float = 0.0

    def evidence(self) -> tuple[dict[str, Any], ...]:
        return self.tx.evidence() + self.rx.evidence()


class NetSession:
    """Negotiate ``want`` (as offered), share two regions, set up queues 0 and 1, and
    exchange judged frames.  ``want`` is a parameter so that checks run with and without
    MRG_RXBUF, checksum offloads, EVENT_IDX, INDIRECT_DESC, RING_PACKED."""

    def __init__(self, target: Target, want: int = NET_WANT, qsize: int = QSIZE,
                 timeout: float = 2.0, base: int = 0, mtu: int | None = MTU) -> None:
        self.target = target
        self.timeout = timeout
        self.fe: Frontend = connect(target, timeout)
        self.rx_mem: MemfdMemory | None = None
        self.tx_mem: MemfdMemory | None = None
        try:
            self.offered, self.acked, self.poffered, self.packed = self.fe.negotiate(
                want, PROTO_WANT | (1 << PF.MTU))
            self.config = (self.fe.get_config(NET_CONFIG_SIZE)
                           if self.packed >> PF.CONFIG & 1 else b"")
            # with MTU negotiated and no config space of the back-end's own, the front-end
            # is the one that shows the guest its mtu, and tells the back-end (SET_MTU)
            self.mtu_set: int | None = None
            if (mtu is not None and not self.config and self.packed >> PF.MTU & 1
                    and F.has(self.acked, FN["MTU"])):
                self.fe.set(NET_SET_MTU, U64.pack(mtu))
                self.mtu_set = mtu
            self.rx_mem = MemfdMemory(MEM_SIZE, RX_BASE, "pvspec-net-rx")
            self.tx_mem = MemfdMemory(MEM_SIZE, TX_BASE, "pvspec-net-tx")
            self.feats = RingFeatures.from_bits(self.acked)
            kind = PackedQueue if self.feats.packed else SplitQueue
            self.rxq: AnyQueue = kind(self.fe, RX_Q, self.rx_mem, RX_BASE, qsize, self.feats,
                                      RX_BASE + SCRATCH, MAX_INDIRECT, base)
            self.txq: AnyQueue = kind(self.fe, TX_Q, self.tx_mem, TX_BASE, qsize, self.feats,
                                      TX_BASE + SCRATCH, MAX_INDIRECT, base)
            self.fe.set_mem_table([self.rx_mem, self.tx_mem])
            self.rx_vring: Vring = self.rxq.setup()
            self.tx_vring: Vring = self.txq.setup()
        except BaseException:
            self.close()
            raise
        self.virtio_features = self.acked & ~(1 << 30)
        self.rx_sizes: dict[int, int] = {}  # posted receive head -> its writable bytes
        self.poison = POISON  # what receive buffers hold before the device writes them
        self.closed = False
        cfg = N.CONFIG.decode(self.config) if len(self.config) >= NET_CONFIG_SIZE else {}
        self.mtu: int | None = (int(cfg["mtu"]) if cfg and F.has(self.virtio_features,
                                                                 FN["MTU"]) else self.mtu_set)

    @property
    def mrg(self) -> bool:
        return F.has(self.virtio_features, FN["MRG_RXBUF"])

    def has(self, name: str) -> bool:
        return F.has(self.virtio_features, FN[name])

    def close(self) -> None:
        self.fe.close()
        for m in (self.rx_mem, self.tx_mem):
            if m is not None:
                m.close()

    def __enter__(self) -> NetSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- buffers ------------------------------------------------------------------------

    def post_rx(self, sizes: Sequence[int], split: int = 1, indirect: bool = False
                ) -> list[tuple[int, Any]]:
        """Queue one receive buffer per size (device-writable, poisoned), each in the
        slot of its head, ``split`` descriptors each (§5.1.6.3; 2.7.4.2 order)."""
        assert self.rx_mem is not None
        placed: list[tuple[int, Any]] = []
        for size in sizes:
            assert N.HDR_LEN <= size <= RX_SLOT
            nxt = self.rxq.next_head()  # the head (id) the next add takes
            at = RX_BASE + DATA + nxt * RX_SLOT
            self.rx_mem.write(at, bytes([self.poison]) * size)
            step = -(-size // split)
            bufs = [(at + off, min(step, size - off), True) for off in range(0, size, step)]
            head = self.rxq.add(bufs, indirect and self.feats.indirect)
            assert head == nxt
            self.rx_sizes[head] = size
            placed.append((head, None))
        return placed

    def rx_room(self) -> int:
        return self.rxq.room()

    def _place_tx(self, frames: Sequence[Sent]) -> list[tuple[int, Any]]:
        assert self.tx_mem is not None
        at = TX_BASE + DATA
        placed: list[tuple[int, Any]] = []
        for s in frames:
            raw = s.hdr.encode() + s.frame
            self.tx_mem.write(at, raw)
            if s.split <= 1:
                bufs = [(at, len(raw), False)]
            else:
                bufs = [(at, N.HDR_LEN, False)]
                step = -(-len(s.frame) // (s.split - 1))
                bufs += [(at + N.HDR_LEN + off, min(step, len(s.frame) - off), False)
                         for off in range(0, len(s.frame), step)]
            indirect = s.indirect and self.feats.indirect
            if isinstance(self.txq, SplitQueue) and indirect and (
                    s.direct_prefix or s.write_on_indirect):
                head = self.txq.add(bufs, indirect, s.direct_prefix,
                                    write_on_indirect=s.write_on_indirect)
            else:
                head = self.txq.add(bufs, indirect)
            placed.append((head, s))
            at = (at + len(raw) + 63) & ~63
        assert at <= TX_BASE + MEM_SIZE, "transmit batch larger than the region"
        return placed

    # --- the exchange -------------------------------------------------------------------

    def exchange(self, frames: Sequence[Sent], rx_sizes: Sequence[int] = (), *,
                 rx_split: int = 1, rx_indirect: bool = False, judge: bool = True,
                 wait: float | None = None, quiet: float = 0.1,
                 used_event: tuple[int | None, int | None] = (None, None)) -> NetStep:
        """Post ``rx_sizes`` receive buffers, transmit ``frames``, wait (bounded) for the
        transmit buffers and the looped frames, then judge both queues and every packet.

        ``used_event``: (rx, tx) values for used_event (split, 2.7.10) or the event
        descriptor offset (packed, 2.8.10) under EVENT_IDX; default: the next used buffer
        of each queue is to be notified."""
        assert self.rx_mem is not None and self.tx_mem is not None
        rx_placed = self.post_rx(rx_sizes, rx_split, rx_indirect)
        tx_placed = self._place_tx(frames)
        self.rxq.set_used_event(used_event[0])
        self.txq.set_used_event(used_event[1])
        # receive buffers first, so the loopback has somewhere to put the frames
        rx_before, rx_ring, rx_kick = self.rxq.publish()
        if rx_kick:
            self.rx_vring.kick()
        tx_before, tx_ring, tx_kick = self.txq.publish()
        if tx_kick:
            self.tx_vring.kick()
        outcome, rx_note, tx_note = self._wait(len(frames), frames,
                                               self.timeout if wait is None else wait, quiet)
        t0 = time.perf_counter()
        rx_after, tx_after = self.rx_mem.frozen(), self.tx_mem.frozen()
        tx_done = self.txq.used_count()
        rx_ring |= self.rxq.ring_after(rx_after) | {"kicked": rx_kick, "notified": rx_note,
                                                    "outcome": outcome}
        tx_ring |= self.txq.ring_after(tx_after) | {"kicked": tx_kick, "notified": tx_note,
                                                    "outcome": outcome}
        if not judge:
            self._collect_rx(rx_after, ())
            with contextlib.suppress(sp.DeviceMisbehaved):
                self.txq.collect()
            empty = orc.Verdict(())
            return NetStep(QueueStep(empty, tx_note, self.txq, tx_before, tx_after,
                                     tuple(tx_placed), tx_ring),
                           QueueStep(empty, rx_note, self.rxq, rx_before, rx_after,
                                     tuple(rx_placed), rx_ring), (), outcome, tx_done)
        tx_verdict = self.txq.judge(tx_before, tx_after, tx_note, outcome == "completed")
        # a receive buffer is used only when a frame arrives: no progress is owed
        rx_verdict = self.rxq.judge(rx_before, rx_after, rx_note, False)
        with contextlib.suppress(sp.DeviceMisbehaved):  # the oracle has named it
            self.txq.collect()
        packets = self._collect_rx(rx_after, frames)
        return NetStep(QueueStep(tx_verdict, tx_note, self.txq, tx_before, tx_after,
                                 tuple(tx_placed), tx_ring),
                       QueueStep(rx_verdict, rx_note, self.rxq, rx_before, rx_after,
                                 tuple(rx_placed), rx_ring),
                       tuple(packets), outcome, tx_done, time.perf_counter() - t0)

    def _rx_entries(self, frames: Sequence[Sent]) -> int:
        """Receive buffers the looped ``frames`` fill when the device takes the posted
        buffers in ring order (with MRG_RXBUF several per frame): when to stop waiting."""
        if not self.mrg:
            return len(frames)
        sizes = [self.rx_sizes[h] for h in self.rxq.inflight_heads()]
        n = 0
        for s in frames:
            left = N.HDR_LEN + len(s.frame)
            while left > 0 and n < len(sizes):
                left -= sizes[n]
                n += 1
        return n

    def _wait(self, n_tx: int, frames: Sequence[Sent], timeout: float, quiet: float
              ) -> tuple[str, bool, bool]:
        """Until every transmit buffer is used and the receive queue holds the looped
        frames (or, once transmission is done, stays still for ``quiet`` s), or
        ``timeout``; then a short grace for late notifications."""
        deadline = time.monotonic() + timeout
        want_rx = self._rx_entries(frames)
        rx_note = tx_note = False
        last_rx, still_since = -1, time.monotonic()
        fds = [self.rx_vring.call_fd, self.tx_vring.call_fd]
        while True:
            tx_used, rx_used = self.txq.used_count(), self.rxq.used_count()
            now = time.monotonic()
            if rx_used != last_rx:
                last_rx, still_since = rx_used, now
            tx_ok = tx_used >= n_tx
            if tx_ok and (rx_used >= want_rx or now - still_since >= quiet):
                break
            if now >= deadline:
                break
            r, _, _ = select.select(fds, [], [], min(0.005, deadline - now))
            rx_note |= self._consume(self.rx_vring, r)
            tx_note |= self._consume(self.tx_vring, r)
            if not r and self.fe.backend_closed():
                self.closed = True
                return ("crashed" if not self.target.alive() else "closed"), rx_note, tx_note
        if not tx_ok:
            if not self.target.alive():
                return "crashed", rx_note, tx_note
            return ("closed" if self.fe.backend_closed() else "no-progress"), rx_note, tx_note
        grace_end = time.monotonic() + 0.03
        while time.monotonic() < grace_end and not (rx_note and tx_note):
            r, _, _ = select.select(fds, [], [], max(0.0, grace_end - time.monotonic()))
            rx_note |= self._consume(self.rx_vring, r)
            tx_note |= self._consume(self.tx_vring, r)
        return "completed", rx_note, tx_note

    @staticmethod
    def _consume(vr: Vring, ready: list[int]) -> bool:
        return vr.call_fd in ready and vr.wait_call(0)

    # --- receive side ---------------------------------------------------------------

    def _collect_rx(self, after: ByteMemory, frames: Sequence[Sent]) -> list[Packet]:
        """Take the used receive buffers back (2.7.14), group them into packets (by
        num_buffers under MRG_RXBUF, one each otherwise), judge each, and match them in
        order with the frames sent."""
        try:
            got = self.rxq.collect()
        except sp.DeviceMisbehaved:
            return []  # the oracle has named it
        bufs: list[tuple[int, N.RxBuf]] = []
        for head, length in got:
            size = self.rx_sizes.pop(head, 0)
            data = b"".join(after.read(a, n) for a, n in self.rxq.segs.pop(head, ()))
            # a buffer returned inside an IN_ORDER batch (2.7.9) has no len of its own:
            # taken as used in full (the packet judge then sees what it holds)
            bufs.append((head, N.RxBuf(size, size if length is None else length, data)))
        packets: list[Packet] = []
        queue = list(frames)
        i = 0
        while i < len(bufs):
            first = bufs[i][1]
            n = 1
            if self.mrg and first.used_len >= N.HDR_LEN:
                n = max(1, N.NetHdr.decode(first.data).num_buffers)
                sent = queue[0] if queue else None
                # the loopback says how long the packet is -- but a packet whose first
                # buffer is not full ends there (5.1.6.4.1: every buffer but the last is
                # filled), whatever was sent: a shorter packet does not swallow the next
                if sent is not None and first.used_len >= first.size:
                    n = max(n, self._buffers_for(bufs[i:], N.HDR_LEN + len(sent.frame)))
            group = bufs[i: i + n]
            j = N.judge_rx_packet(self.virtio_features, [b for _, b in group], self.mtu)
            sent = queue.pop(0) if queue else None
            lb = N.judge_loopback(sent.hdr, sent.frame, j, self.virtio_features) \
                if sent is not None and sent.hdr.gso_type == N.GSO_NONE else None
            packets.append(Packet(tuple(h for h, _ in group), j, sent, lb,
                                  tuple(b.used_len for _, b in group)))
            i += len(group)
        return packets

    @staticmethod
    def _buffers_for(bufs: Sequence[tuple[int, N.RxBuf]], total: int) -> int:
        """How many of ``bufs`` (from the packet's first) hold ``total`` bytes by their
        used lens."""
        n = 0
        for _, b in bufs:
            n += 1
            total -= b.used_len
            if total <= 0:
                break
        return n

    # --- teardown -------------------------------------------------------------------

    def stop(self, index: int) -> int | None:
        """GET_VRING_BASE; None when the back-end is gone."""
        try:
            return self.fe.stop_vring(index)
        except ProtocolViolation:
            return None
