"""Virtqueue throughput: the reference queues and devices against the spec's ring and
device models, on the same ring contents, measured in one run.

Workloads (queue size 256, features VERSION_1 + EVENT_IDX; rings and buffers in one
guest-memory region):

* ``blk_split`` / ``blk_packed`` (FLUSH negotiated): virtio-blk requests of 3 descriptors
  (header, 512..4096 data bytes, status): 60 % reads, 30 % writes, 10 % flushes (2
  descriptors);
* ``net_tx_split`` / ``net_tx_packed``: one-descriptor transmit buffers (12-byte header
  plus a 60..1514-byte frame);
* ``net_rx_split`` / ``net_rx_packed``: one-descriptor 1526-byte receive buffers, each
  filled with a queued frame.

The spec's driver model lays out one round of buffers; the reference device then serves
that round many times (the ring state is restored between rounds, outside the timing),
the spec's device model serves it a few times.  Only the device side is timed.  After the
first round the two memories must be byte-identical (``same``), so the figures compare
two devices doing the same work.

``python -m conformance.benchmarks.virtqueue [--quick]`` prints the numbers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from reference_impl.virtio.blk import BlkDevice
from reference_impl.virtio.net import RXQ, TXQ, NetDevice
from reference_impl.virtio.packed import PackedQueue
from reference_impl.virtio.split import SplitQueue

SIZE = 256
MEM = 4 << 20
DATA = 64 << 10  # buffers start here; rings live below
F_VERSION_1, F_EVENT_IDX = 32, 29
FEATURES = 1 << F_VERSION_1 | 1 << F_EVENT_IDX
BLK_FEATURES = FEATURES | 1 << 9  # VIRTIO_BLK_F_FLUSH: the reference device always offers it
T_IN, T_OUT, T_FLUSH = 0, 1, 4
NET_HDR = 12
DISK = 1 << 20


# --- the workloads, as driver-side buffer lists ----------------------------------------------


def _blk_round(rng: random.Random) -> list[tuple[bytes, list[tuple[int, bool]]]]:
    """Requests: (readable bytes, [(length, writable)...]) laid out as their chain."""
    out = []
    used = 0
    while used + 3 <= SIZE:
        r = rng.random()
        n = 512 * rng.randint(1, 8)
        sector = rng.randrange(DISK // 512 - 8)
        if r < 0.6:
            hdr = _blk_hdr(T_IN, sector)
            out.append((hdr, [(16, False), (n, True), (1, True)]))
            used += 3
        elif r < 0.9:
            hdr = _blk_hdr(T_OUT, sector) + rng.randbytes(n)
            out.append((hdr, [(16, False), (n, False), (1, True)]))
            used += 3
        else:
            out.append((_blk_hdr(T_FLUSH, 0), [(16, False), (1, True)]))
            used += 2
    return out


def _blk_hdr(typ: int, sector: int) -> bytes:
    return typ.to_bytes(4, "little") + bytes(4) + sector.to_bytes(8, "little")


def _frame(rng: random.Random) -> bytes:
    n = rng.randint(60, 1514)
    return b"\xff" * 6 + bytes.fromhex("525400abcdef") + b"\x08\x00" + rng.randbytes(n - 14)


def _tx_round(rng: random.Random) -> list[tuple[bytes, list[tuple[int, bool]]]]:
    out = []
    for _ in range(SIZE):
        pkt = bytes(NET_HDR) + _frame(rng)
        out.append((pkt, [(len(pkt), False)]))
    return out


def _rx_round(rng: random.Random) -> list[tuple[bytes, list[tuple[int, bool]]]]:
    return [(b"", [(NET_HDR + 1514, True)]) for _ in range(SIZE)]


# --- laying out a round with the spec's driver ---------------------------------------------


class _Layout:
    """One round of buffers made available by the spec's driver model in ``mem``."""

    def __init__(self, packed: bool, round_: list[tuple[bytes, list[tuple[int, bool]]]]
                 ) -> None:
        from spec.virtio import packed as pk
        from spec.virtio import split as sp
        from spec.virtio.memory import ByteMemory
        from spec.virtio.ring_math import RingFeatures

        self.packed = packed
        self.mem = ByteMemory(MEM)
        self.feats = RingFeatures.from_bits(FEATURES)
        if packed:
            self.layout: Any = pk.PackedLayout.contiguous(0, SIZE)
            drv: Any = pk.driver_init(self.mem, self.layout, self.feats)
        else:
            self.layout = sp.SplitLayout.contiguous(0, SIZE)
            drv = sp.driver_init(self.mem, self.layout, self.feats)
        at = DATA
        for readable, shape in round_:
            bufs, off = [], 0
            for n, writable in shape:
                if not writable:
                    self.mem.write(at, readable[off: off + n])
                    off += n
                bufs.append((at, n, writable))
                at += (n + 15) & ~15
            drv, _ = (pk if packed else sp).driver_add(self.mem, drv, bufs)
        if not packed:
            drv = sp.driver_publish(self.mem, drv)
        # used_event / driver event: notify for every buffer (the common, costly case)
        self.snapshot = bytearray(self.mem.snapshot())
        self.buffers = len(round_)

    def impl_queue(self, memory: bytearray) -> SplitQueue | PackedQueue:
        lay = self.layout
        if self.packed:
            return PackedQueue.over(memory, SIZE, lay.desc, lay.driver, lay.device, FEATURES)
        return SplitQueue.over(memory, SIZE, lay.desc, lay.avail, lay.used, FEATURES)


# --- the spec's device side ------------------------------------------------------------------


def _spec_blk() -> Callable[[int, bytes, int], bytes]:
    from spec.virtio.devices import block as blk

    state: dict[str, blk.AnyDisk] = {"disk": blk.Disk.blank(DISK // 512)}

    def serve(queue: int, out: bytes, in_len: int) -> bytes:
        typ, _, sector = blk.decode_header(out)
        req = blk.Request(typ, sector, out[16:], in_len - 1)
        o = blk.reference_device(state["disk"], req, BLK_FEATURES)
        if o.disk is not None:
            state["disk"] = o.disk
        return o.written_in.ljust(in_len - 1, b"\0") + bytes([o.status])

    return serve


def _spec_net(frames: list[bytes]) -> Callable[[int, bytes, int], bytes]:
    from spec.virtio.devices import net

    pending = list(frames)

    def serve(queue: int, out: bytes, in_len: int) -> bytes:
        if queue == TXQ:
            hdr = net.NetHdr.decode(out[:NET_HDR].ljust(NET_HDR, b"\0"))
            if net.check_tx_header(hdr, FEATURES) is not None:
                raise AssertionError("workload sent a bad header")
            return b""
        return net.NetHdr(num_buffers=1).encode()[:NET_HDR] + pending.pop(0)

    return serve


def _spec_round(lay: _Layout, serve: Callable[[int, bytes, int], bytes], queue: int) -> Any:
    """Run the spec's device model over one round; returns the memory afterwards."""
    from spec.virtio import packed as pk
    from spec.virtio import split as sp
    from spec.virtio.memory import ByteMemory

    mem = ByteMemory(MEM, data=bytes(lay.snapshot))
    model: Any = pk if lay.packed else sp
    dev = model.device_init(lay.layout, lay.feats)
    dev, chains = model.device_poll(mem, dev)
    replies = []
    for c in chains:
        out = b"".join(mem.read(s.addr, s.len) for s in c.readable)
        replies.append((c.head, serve(queue, out, c.writable_len)))
    dev = model.device_complete(mem, dev, replies)
    model.device_must_interrupt(mem, dev)
    return mem


# --- timing ----------------------------------------------------------------------------------


def _workload(name: str, packed: bool, rounds: int, spec_rounds: int, seed: int = 7
              ) -> dict[str, Any]:
    rng = random.Random(seed)
    kind = name.split("_")[0] if name.startswith("blk") else name.rsplit("_", 1)[0]
    if kind == "blk":
        round_ = _blk_round(rng)
        queue = 0
    elif kind == "net_tx":
        round_ = _tx_round(rng)
        queue = TXQ
    else:
        round_ = _rx_round(rng)
        queue = RXQ
    frames = [_frame(rng) for _ in range(SIZE)]
    lay = _Layout(packed, round_)

    def impl_device() -> Any:
        if kind == "blk":
            return BlkDevice(bytearray(DISK))
        return NetDevice(negotiated=FEATURES)

    # correctness first: one round on each side, same bytes afterwards
    memory = bytearray(lay.snapshot)
    dev = impl_device()
    if kind == "net_rx":
        for f in frames:
            dev.deliver(f)
    lay.impl_queue(memory).process(dev, queue)
    spec_serve = _spec_blk() if kind == "blk" else _spec_net(frames)
    same = bytes(memory) == _spec_round(lay, spec_serve, queue).snapshot()

    impl_s = 0.0
    for _ in range(rounds):
        memory[:] = lay.snapshot
        q = lay.impl_queue(memory)
        if kind == "net_rx":
            for f in frames:
                dev.deliver(f)
        elif kind == "net_tx":
            dev.sent.clear()
        t0 = time.perf_counter()
        q.process(dev, queue)
        impl_s += time.perf_counter() - t0
    spec_s = 0.0
    for _ in range(spec_rounds):
        spec_serve = _spec_blk() if kind == "blk" else _spec_net(frames)
        t0 = time.perf_counter()
        _spec_round(lay, spec_serve, queue)
        spec_s += time.perf_counter() - t0
    impl_rate = rounds * lay.buffers / impl_s
    spec_rate = spec_rounds * lay.buffers / spec_s
    return {"buffers_per_round": lay.buffers, "impl_ops_per_s": round(impl_rate),
            "spec_ops_per_s": round(spec_rate), "ratio": round(impl_rate / spec_rate, 1),
            "same": same}


WORKLOADS = ("blk_split", "blk_packed", "net_tx_split", "net_tx_packed", "net_rx_split",
             "net_rx_packed")


def run(quick: bool = False) -> dict[str, Any]:
    """Every workload; ``quick`` for a smoke run (fewer rounds, same checks)."""
    rounds, spec_rounds = (20, 1) if quick else (400, 4)
    out = {w: _workload(w, w.endswith("packed"), rounds, spec_rounds) for w in WORKLOADS}
    out["targets"] = {"500k_buffers_per_s": {w: out[w]["impl_ops_per_s"] >= 500_000
                                             for w in WORKLOADS}}
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
