"""Split virtqueue decoding and the model driver/device (VIRTIO 1.3 2.7, 2.6.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.memory import ByteMemory, OutOfRange, RecordingMemory, read_le16, write_le16
from spec.virtio.ring_math import RingFeatures
from spec.virtio.split import VIRTQ_DESC_F_INDIRECT as IND
from spec.virtio.split import VIRTQ_DESC_F_NEXT as NXT
from spec.virtio.split import VIRTQ_DESC_F_WRITE as WR
from spec.virtio.split import Desc, Fault

MEM = 1 << 16
LAY = sp.SplitLayout.contiguous(0x1000, 8)
ALL = RingFeatures(indirect=True, event_idx=True)
TABLE = 0x6000


def _mem(descs: dict[int, Desc], table: list[Desc] | None = None) -> ByteMemory:
    mem = ByteMemory(MEM)
    for i, d in descs.items():
        d.write(mem, rm.desc_addr(LAY.desc, i))
    for k, d in enumerate(table or []):
        d.write(mem, TABLE + 16 * k)
    return mem


def test_memory_typed_errors_and_le_helpers() -> None:
    mem = ByteMemory(64, base=0x100)
    write_le16(mem, 0x100, 0xBEEF)
    assert mem.read(0x100, 2) == b"\xef\xbe" and read_le16(mem, 0x100) == 0xBEEF
    with pytest.raises(OutOfRange):
        mem.read(0x13F, 2)
    with pytest.raises(OutOfRange):
        mem.write(0xFF, b"x")
    rec = RecordingMemory(mem)
    rec.write(0x104, b"ab")
    rec.read(0x100, 4)
    assert [a.kind for a in rec.log] == ["write", "read"] and rec.log[0].data == b"ab"


def test_walk_valid_chain_direct_and_indirect() -> None:
    mem = _mem({0: Desc(0x4000, 16, NXT, 3), 3: Desc(0x4100, 64, WR, 0)})
    c = sp.walk_chain(mem, LAY, 0, ALL)
    assert c.ok and c.readable_len == 16 and c.writable_len == 64 and c.ndesc == 2
    mem = _mem({2: Desc(TABLE, 32, IND, 0)},
               [Desc(0x4000, 8, NXT, 1), Desc(0x4100, 8, WR, 0)])
    c = sp.walk_chain(mem, LAY, 2, ALL)
    assert c.ok and c.tables == (sp.Span(TABLE, 32),) and c.writable_len == 8


def test_mixed_direct_then_indirect() -> None:
    """2.7.5.3.2: direct descriptors followed by a single indirect one are valid."""
    mem = _mem({0: Desc(0x4000, 8, NXT, 1), 1: Desc(TABLE, 16, IND, 0)},
               [Desc(0x4100, 8, WR, 0)])
    c = sp.walk_chain(mem, LAY, 0, ALL)
    assert c.ok and [s.writable for s in c.segments] == [False, True]


def test_indirect_write_flag_ignored() -> None:
    """2.7.5.3.2: WRITE on the descriptor pointing at a table means nothing."""
    mem = _mem({0: Desc(TABLE, 16, IND | WR, 0)}, [Desc(0x4100, 8, 0, 0)])
    c = sp.walk_chain(mem, LAY, 0, ALL)
    assert c.ok and c.writable_len == 0 and c.readable_len == 8


BAD_CHAINS = {
    Fault.LOOP: ({0: Desc(0x4000, 0, NXT, 1), 1: Desc(0x4000, 0, NXT, 0)}, None, {}),
    Fault.HEAD_OUT_OF_RANGE: ({}, None, {"head": 8}),
    Fault.NEXT_OUT_OF_RANGE: ({0: Desc(0x4000, 4, NXT, 9)}, None, {}),
    Fault.NESTED_INDIRECT: ({0: Desc(TABLE, 16, IND, 0)}, [Desc(TABLE, 16, IND, 0)], {}),
    Fault.INDIRECT_WITH_NEXT: ({0: Desc(TABLE, 16, IND | NXT, 1), 1: Desc(0x4000, 4, 0, 0)},
                               [Desc(0x4100, 8, WR, 0)], {}),
    Fault.INDIRECT_BAD_LEN: ({0: Desc(TABLE, 24, IND, 0)}, [Desc(0x4100, 8, WR, 0)], {}),
    Fault.INDIRECT_NOT_NEGOTIATED: ({0: Desc(TABLE, 16, IND, 0)}, [Desc(0x4100, 8, WR, 0)],
                                    {"features": RingFeatures()}),
    Fault.LEN_OVERFLOW: ({0: Desc(0x4000, 0xFFFF_FFFF, NXT, 1), 1: Desc(0x4000, 1, 0, 0)},
                         None, {"mem": 1 << 33}),
    Fault.READ_AFTER_WRITE: ({0: Desc(0x4000, 4, WR | NXT, 1), 1: Desc(0x4100, 4, 0, 0)},
                             None, {}),
    Fault.BAD_ADDRESS: ({0: Desc(MEM - 4, 8, 0, 0)}, None, {}),
    Fault.CHAIN_TOO_LONG: ({0: Desc(TABLE, 16 * 9, IND, 0)},
                           [*(Desc(0x4000, 1, NXT, k + 1) for k in range(8)),
                            Desc(0x4000, 1, 0, 0)], {}),
}


class _Sparse(ByteMemory):
    """A huge address space without the bytes (for the 4 GiB rule)."""

    def __init__(self, inner: ByteMemory, size: int) -> None:
        super().__init__(0)
        self.inner, self.big = inner, size

    def contains(self, addr: int, n: int) -> bool:
        return addr >= 0 and addr + n <= self.big

    def read(self, addr: int, n: int) -> bytes:
        return self.inner.read(addr, n)


@pytest.mark.parametrize("fault", list(BAD_CHAINS), ids=lambda f: f.slug)
def test_walk_rejects_bad_chain(fault: Fault) -> None:
    descs, table, opts = BAD_CHAINS[fault]
    mem: ByteMemory = _mem(descs, table)
    if "mem" in opts:
        mem = _Sparse(mem, opts["mem"])
    c = sp.walk_chain(mem, LAY, opts.get("head", 0), opts.get("features", ALL))
    assert fault in c.faults
    assert c.processable() == (fault in sp.TOLERABLE)


@given(st.binary(min_size=16 * 8, max_size=16 * 8), st.integers(0, 7), st.binary(max_size=64))
def test_walk_never_hangs_on_random_bytes(table: bytes, head: int, ind: bytes) -> None:
    mem = ByteMemory(MEM)
    mem.write(LAY.desc, table)
    mem.write(TABLE, ind)
    c = sp.walk_chain(mem, LAY, head, ALL)
    assert len(c.descs) <= 2 * LAY.size + 1
    if c.ok:
        assert sum(s.len for s in c.segments) < 1 << 32


def test_layout_faults() -> None:
    assert sp.SplitLayout.contiguous(0x1000, 256).faults() == ()
    assert Fault.QUEUE_SIZE in sp.SplitLayout(6, 0x1000, 0x2000, 0x3000).faults()
    assert Fault.QUEUE_SIZE in sp.SplitLayout(65536, 0x1000, 0x2000, 0x3000).faults()
    assert Fault.MISALIGNED in sp.SplitLayout(8, 0x1008, 0x2000, 0x3000).faults()
    assert Fault.MISALIGNED in sp.SplitLayout(8, 0x1000, 0x2001, 0x3000).faults()
    assert Fault.MISALIGNED in sp.SplitLayout(8, 0x1000, 0x2000, 0x3002).faults()
    assert Fault.OVERLAP in sp.SplitLayout(8, 0x1000, 0x1040, 0x3000).faults()


def _pair(features: RingFeatures, start: int = 0, size: int = 8):
    mem = ByteMemory(MEM)
    lay = sp.SplitLayout.contiguous(0x1000, size)
    drv = sp.driver_init(mem, lay, features, start=start, scratch=0x8000)
    dev = sp.device_init(lay, features, start=start)
    return mem, lay, drv, dev


def test_driver_init_zeroes_rings() -> None:
    mem = ByteMemory(MEM, data=b"\xff" * MEM)
    sp.driver_init(mem, LAY, ALL)
    assert read_le16(mem, rm.used_flags_addr(LAY.used)) == 0
    assert mem.read(LAY.desc, LAY.desc_span.n) == bytes(LAY.desc_span.n)


def test_driver_publishes_idx_after_ring_entries() -> None:
    """2.7.13.3.1: descriptors and ring entry are written before avail.idx."""
    mem, lay, drv, _ = _pair(ALL)
    rec = RecordingMemory(mem)
    drv, _ = sp.driver_add(rec, drv, [(0x4000, 8, False), (0x4100, 8, True)])
    drv = sp.driver_publish(rec, drv)
    idx_writes = [a.seq for a in rec.log if a.addr == rm.avail_idx_addr(lay.avail)]
    assert idx_writes == [len(rec.log) - 1]


def test_driver_reads_event_after_publish() -> None:
    """2.7.13.4.1: the kick decision reads avail_event only after idx is published."""
    mem, _lay, drv, _ = _pair(ALL)
    drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False)])
    rec = RecordingMemory(mem)
    drv = sp.driver_publish(rec, drv)
    drv, _ = sp.driver_must_kick(rec, drv)
    assert [a.kind for a in rec.log] == ["write", "read"]


@pytest.mark.parametrize("event_idx", [False, True])
def test_driver_kick_decision(event_idx: bool) -> None:
    feats = RingFeatures(event_idx=event_idx)
    mem, lay, drv, dev = _pair(feats, start=65534)
    sp.device_set_no_notify(mem, dev, True)  # ignored with EVENT_IDX
    write_le16(mem, rm.avail_event_addr(lay.used, lay.size), 65535)  # ignored without
    drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False)])
    drv, kick = sp.driver_must_kick(mem, sp.driver_publish(mem, drv))
    assert kick is False  # flags 1, or avail_event 65535 not yet filled (65534 was)
    drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False)])
    drv, kick = sp.driver_must_kick(mem, sp.driver_publish(mem, drv))
    assert kick is event_idx  # position 65535 filled: owed with EVENT_IDX only
    sp.device_set_no_notify(mem, dev, False)
    drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False)])
    drv, kick = sp.driver_must_kick(mem, sp.driver_publish(mem, drv))
    assert kick is not event_idx


def test_driver_flags_values() -> None:
    for feats in (RingFeatures(), RingFeatures(event_idx=True)):
        mem, lay, drv, _ = _pair(feats)
        sp.driver_set_no_interrupt(mem, drv, True)
        flags = read_le16(mem, rm.avail_flags_addr(lay.avail))
        assert flags == (0 if feats.event_idx else 1)


def test_driver_in_order_next() -> None:
    """2.7.5.2: with IN_ORDER the driver chains x -> x + 1 and wraps to 0."""
    feats = RingFeatures(in_order=True, indirect=True)
    mem, lay, drv, dev = _pair(feats, size=4)
    for _ in range(3):
        drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False), (0x4100, 8, True)])
        drv = sp.driver_publish(mem, drv)
        dev, chains = sp.device_poll(mem, dev)
        dev = sp.device_complete(mem, dev, [(c.head, b"ok") for c in chains])
        drv, _ = sp.driver_collect(mem, drv)
    heads = []
    for i in range(4):
        d = Desc.read(mem, rm.desc_addr(lay.desc, i))
        heads.append(d)
        if d.flags & NXT:
            assert d.next == (i + 1) % 4
    drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False), (0x4100, 8, True)], indirect=True)
    table = Desc.read(mem, rm.desc_addr(lay.desc, drv.inflight[-1][0]))
    assert Desc.read(mem, table.addr).next == 1


def test_driver_reports_len() -> None:
    mem, _lay, drv, dev = _pair(ALL)
    drv, h = sp.driver_add(mem, drv, [(0x4000, 8, False), (0x4100, 64, True)])
    drv = sp.driver_publish(mem, drv)
    dev, _chains = sp.device_poll(mem, dev)
    dev = sp.device_complete(mem, dev, [(h, b"abc")])
    drv, got = sp.driver_collect(mem, drv)
    assert got == [(h, 3)] and mem.read(0x4100, 3) == b"abc"


def test_driver_tolerates_spurious_and_rejects_bogus() -> None:
    mem, lay, drv, _dev = _pair(ALL)
    drv, got = sp.driver_collect(mem, drv)  # a spurious notification: nothing to do
    assert got == []
    write_le16(mem, rm.used_idx_addr(lay.used), 1)  # a used entry for nothing in flight
    with pytest.raises(sp.DeviceMisbehaved):
        sp.driver_collect(mem, drv)


def test_ring_reset_forgets_state() -> None:
    """2.6.1: after a queue reset the device is quiet; re-enabled, it starts afresh and
    honours a new size."""
    mem, _lay, drv, dev = _pair(RingFeatures(ring_reset=True), start=100)
    drv, _ = sp.driver_add(mem, drv, [(0x4000, 8, False)])
    drv = sp.driver_publish(mem, drv)
    dev = sp.device_reset_queue(dev)
    assert dev.reset and dev.last_avail == 0 and dev.used_idx == 0 and dev.inflight == ()
    dev2, chains = sp.device_poll(mem, dev)
    assert chains == [] and not sp.device_must_interrupt(mem, dev2)[1]
    lay2 = sp.SplitLayout.contiguous(0x2000, 16)
    drv = sp.driver_init(mem, lay2, drv.features, scratch=0x8000)
    dev = sp.device_reenable(dev, lay2)
    drv, h = sp.driver_add(mem, drv, [(0x4000, 8, False)] * 9)  # 9 > old size 8
    drv = sp.driver_publish(mem, drv)
    dev, chains = sp.device_poll(mem, dev)
    assert [c.head for c in chains] == [h] and chains[0].ok
