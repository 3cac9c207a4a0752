"""Packed virtqueue decoding and the model driver/device (VIRTIO 1.3 2.8)."""

from __future__ import annotations

import pytest

from spec.virtio import packed as pk
from spec.virtio import ring_math as rm
from spec.virtio.memory import ByteMemory, RecordingMemory
from spec.virtio.ring_math import RingFeatures
from spec.virtio.split import VIRTQ_DESC_F_INDIRECT as IND
from spec.virtio.split import VIRTQ_DESC_F_NEXT as NXT
from spec.virtio.split import VIRTQ_DESC_F_WRITE as WR
from spec.virtio.split import Fault

MEM = 1 << 16
FEATS = RingFeatures(indirect=True, event_idx=True, packed=True)


def _pair(n: int = 5, feats: RingFeatures = FEATS):
    mem = ByteMemory(MEM)
    lay = pk.PackedLayout.contiguous(0x1000, n)
    return mem, lay, pk.driver_init(mem, lay, feats, scratch=0x8000), pk.device_init(lay, feats)


def test_packed_layout_faults() -> None:
    assert pk.PackedLayout.contiguous(0x1000, 7).faults() == ()
    assert Fault.MISALIGNED in pk.PackedLayout(7, 0x1008, 0x2000, 0x2004).faults()
    assert Fault.QUEUE_SIZE in pk.PackedLayout(0, 0x1000, 0x2000, 0x2004).faults()
    assert Fault.OVERLAP in pk.PackedLayout(7, 0x1000, 0x1010, 0x2004).faults()


def test_packed_roundtrip_wraps() -> None:
    mem, _lay, drv, dev = _pair()
    for rnd in range(7):
        drv, a = pk.driver_add(mem, drv, [(0x4000, 8, False), (0x4100, 16, True)])
        drv, b = pk.driver_add(mem, drv, [(0x4200, 8, True)], indirect=rnd % 2 == 0)
        dev, chains = pk.device_poll(mem, dev)
        assert [c.head for c in chains] == [a, b] and all(c.ok for c in chains)
        dev = pk.device_complete(mem, dev, [(b, b"xy"), (a, b"abc")])
        drv, got = pk.driver_collect(mem, drv)
        assert got == [(b, 2), (a, 3)]
    assert drv.next_used == dev.next_used and drv.used_wrap == dev.used_wrap


def test_packed_driver_makes_head_available_last() -> None:
    """2.8.17 / 2.8.21.1.1: the first slot's flags are the last write of a list."""
    mem, lay, drv, _ = _pair()
    rec = RecordingMemory(mem)
    drv, _ = pk.driver_add(rec, drv, [(0x4000, 8, False), (0x4100, 8, False), (0x4200, 8, True)])
    last = rec.log[-1]
    assert last.addr == rm.desc_addr(lay.desc, 0) + 14 and last.n == 2
    assert not pk.driver_can_add(drv, 3, False)  # only 2 slots left: no partial list


def test_packed_next_avail_position() -> None:
    mem, _lay, drv, _ = _pair(n=3)
    drv, _ = pk.driver_add(mem, drv, [(0x4000, 8, False), (0x4100, 8, False)])
    drv, _ = pk.driver_add(mem, drv, [(0x4000, 8, False)])
    assert (drv.next_avail, drv.avail_wrap) == (0, False)


def test_packed_kick_decision() -> None:
    mem, _lay, drv, dev = _pair()
    drv, _ = pk.driver_add(mem, drv, [(0x4000, 8, False)])
    drv, kick = pk.driver_must_kick(mem, drv)
    assert kick
    pk.device_set_event(mem, dev, rm.EVENT_FLAGS_DISABLE)
    drv, _ = pk.driver_add(mem, drv, [(0x4000, 8, False)])
    assert pk.driver_must_kick(mem, drv)[1] is False
    pk.device_set_event(mem, dev, rm.EVENT_FLAGS_DESC, off=3, wrap=True)
    drv, _ = pk.driver_add(mem, drv, [(0x4000, 8, False)])  # slot 2
    drv, kick = pk.driver_must_kick(mem, drv)
    assert kick is False
    drv, _ = pk.driver_add(mem, drv, [(0x4000, 8, False)])  # slot 3
    assert pk.driver_must_kick(mem, drv)[1] is True


def test_packed_indirect_ignores_other_flags() -> None:
    """2.8.7: inside a table only WRITE counts; NEXT and the rest are ignored."""
    mem, lay, _drv, _ = _pair()
    pk.PDesc(0x4000, 8, 0, NXT | IND).write(mem, 0x6000)
    pk.PDesc(0x4100, 8, 0, WR | NXT).write(mem, 0x6010)
    pk.PDesc(0x6000, 32, 9, rm.mark_available(IND, True)).write(mem, lay.desc)
    c = pk.walk_list(mem, lay, 0, True, FEATS)
    assert c is not None and c.ok and c.head == 9 and c.readable_len == 8 and c.writable_len == 8


def _raw(mem, lay, slot, addr, ln, ident, flags, wrap=True):
    desc = pk.PDesc(addr, ln, ident, rm.mark_available(flags, wrap))
    desc.write(mem, rm.desc_addr(lay.desc, slot))


@pytest.mark.parametrize("case", ["loop", "incomplete", "indirect-in-list", "read-after-write",
                                  "bad-len", "not-negotiated", "bad-address"])
def test_packed_walk_faults(case: str) -> None:
    mem, lay, _, _ = _pair(n=4)
    feats = FEATS
    expect = {
        "loop": Fault.PACKED_LOOP, "incomplete": Fault.PACKED_INCOMPLETE,
        "indirect-in-list": Fault.PACKED_INDIRECT_IN_LIST,
        "read-after-write": Fault.READ_AFTER_WRITE, "bad-len": Fault.INDIRECT_BAD_LEN,
        "not-negotiated": Fault.INDIRECT_NOT_NEGOTIATED, "bad-address": Fault.BAD_ADDRESS,
    }[case]
    if case == "loop":
        for s in range(4):
            _raw(mem, lay, s, 0x4000, 8, 0, NXT)
    elif case == "incomplete":
        _raw(mem, lay, 0, 0x4000, 8, 0, NXT)
    elif case == "indirect-in-list":
        _raw(mem, lay, 0, 0x4000, 8, 0, NXT)
        _raw(mem, lay, 1, 0x6000, 16, 0, IND)
    elif case == "read-after-write":
        _raw(mem, lay, 0, 0x4000, 8, 0, NXT | WR)
        _raw(mem, lay, 1, 0x4100, 8, 0, 0)
    elif case == "bad-len":
        _raw(mem, lay, 0, 0x6000, 20, 0, IND)
    elif case == "not-negotiated":
        pk.PDesc(0x4000, 8, 0, WR).write(mem, 0x6000)
        _raw(mem, lay, 0, 0x6000, 16, 0, IND)
        feats = RingFeatures(packed=True)
    elif case == "bad-address":
        _raw(mem, lay, 0, MEM - 4, 8, 0, 0)
    c = pk.walk_list(mem, lay, 0, True, feats)
    assert c is not None and expect in c.faults


def test_packed_unavailable_slot_not_taken() -> None:
    """2.8.15: a zeroed (or used) slot is never taken as available."""
    mem, lay, _drv, dev = _pair()
    assert pk.walk_list(mem, lay, 0, True, FEATS) is None
    dev, chains = pk.device_poll(mem, dev)
    assert chains == []
