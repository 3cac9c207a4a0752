"""Model driver and model device exchanging buffers through real ring bytes, judged by the
oracle after every step (VIRTIO 1.3 2.6.1, 2.7, 2.8).

Features are drawn per run (EVENT_IDX, INDIRECT_DESC, IN_ORDER, RING_RESET on or off),
indices start near 65535 (as after SET_VRING_BASE) so the 16-bit wrap is crossed, and a
hostile rule plants random descriptor bytes the device must survive.
"""

from __future__ import annotations

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from spec.virtio import oracle as orc
from spec.virtio import packed as pk
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.memory import ByteMemory, RecordingMemory, write_le16
from spec.virtio.ring_math import RingFeatures

MEM = 1 << 16
BUF = 0x4000  # driver buffers live in [0x4000, 0x6000)
HOSTILE = 0x6000  # hostile descriptors point here, or out of memory
features = st.builds(RingFeatures, indirect=st.booleans(), event_idx=st.booleans(),
                     in_order=st.booleans(), ring_reset=st.booleans())
buffers = st.lists(st.tuples(st.integers(0, 64), st.booleans()), min_size=1, max_size=4)


def _bufs(spec: list[tuple[int, bool]]) -> list[tuple[int, int, bool]]:
    spec = sorted(spec, key=lambda b: b[1])  # readable first (2.7.4.2)
    return [(BUF + 0x100 * k, n, w) for k, (n, w) in enumerate(spec)]


class SplitRing(RuleBasedStateMachine):
    @initialize(feats=features, start=st.sampled_from([0, 65533, 65535]),
                size=st.sampled_from([2, 4, 8]))
    def setup(self, feats: RingFeatures, start: int, size: int) -> None:
        self.mem = ByteMemory(MEM)
        self.lay = sp.SplitLayout.contiguous(0x1000, size)
        self.feats = feats
        self.drv = sp.driver_init(self.mem, self.lay, feats, start=start, scratch=0x8000)
        self.dev = sp.device_init(self.lay, feats, start=start, on_fault="skip")
        self.view = orc.SplitView.start(self.lay, feats, start)
        self.returned = 0

    @rule(spec=buffers, indirect=st.booleans())
    def add(self, spec: list[tuple[int, bool]], indirect: bool) -> None:
        indirect = indirect and self.feats.indirect
        if sp.driver_can_add(self.drv, len(spec), indirect):
            self.drv, _ = sp.driver_add(self.mem, self.drv, _bufs(spec), indirect)

    @rule()
    def publish_and_kick(self) -> None:
        self.drv = sp.driver_publish(self.mem, self.drv)
        self.drv, _ = sp.driver_must_kick(self.mem, self.drv)

    @rule(addr=st.sampled_from([HOSTILE, HOSTILE + 0x80, MEM - 8, 1 << 40]),
          length=st.sampled_from([0, 16, 0x100, 0xFFFF_FFFF]), flags=st.integers(0, 7),
          nxt=st.integers(0, 9))
    def hostile(self, addr: int, length: int, flags: int, nxt: int) -> None:
        """A driver-side slot filled with adversarial bytes, exposed as a head."""
        if not self.drv.free:
            return
        slot = self.drv.free[0]
        sp.Desc(addr, length, flags, nxt).write(self.mem, rm.desc_addr(self.lay.desc, slot))
        lay, drv = self.lay, self.drv
        write_le16(self.mem, rm.avail_ring_addr(lay.avail, rm.ring_slot(drv.avail_idx, lay.size)),
                   slot)
        self.drv = attrs.evolve(drv, avail_idx=rm.idx_add(drv.avail_idx, 1), free=drv.free[1:],
                                inflight=(*drv.inflight, (slot, (slot,))))

    @rule(ev=st.integers(0, 0xFFFF), no_irq=st.booleans(), near=st.booleans())
    def driver_suppression(self, ev: int, no_irq: bool, near: bool) -> None:
        sp.driver_set_used_event(self.mem, self.drv,
                                 rm.idx_add(self.drv.last_used, ev % 3) if near else ev)
        sp.driver_set_no_interrupt(self.mem, self.drv, no_irq)

    @rule(no_notify=st.booleans())
    def device_suppression(self, no_notify: bool) -> None:
        sp.device_set_no_notify(self.mem, self.dev, no_notify)

    @rule(reply=st.integers(0, 80), batch=st.booleans(), hold=st.booleans())
    def device_step(self, reply: int, batch: bool, hold: bool) -> None:
        before = self.mem.copy()
        rec = RecordingMemory(self.mem)
        self.dev, _chains = sp.device_poll(rec, self.dev)
        pending = [c.head for c in self.dev.inflight]
        if hold and len(pending) > 1:
            pending = pending[: len(pending) - 1]  # keep one in flight for later
        self.dev = sp.device_complete(rec, self.dev, [(h, b"d" * reply) for h in pending],
                                      batch=batch and self.feats.in_order)
        self.dev, irq = sp.device_must_interrupt(rec, self.dev)
        verdict, self.view = orc.judge_split(before, self.mem, self.view, notified=irq,
                                             accesses=rec.log, needs_reset=self.dev.broken)
        assert verdict.ok, verdict.violations
        self.drv, got = sp.driver_collect(self.mem, self.drv)
        self.returned += len(got)

    @precondition(lambda self: self.feats.ring_reset)
    @rule()
    def queue_reset(self) -> None:
        """2.6.1: reset is quiet; re-enable starts over from index 0."""
        self.dev = sp.device_reset_queue(self.dev)
        self.view = orc.queue_reset_view(self.view)
        before = self.mem.copy()
        rec = RecordingMemory(self.mem)
        dev, _ = sp.device_poll(rec, self.dev)
        _, irq = sp.device_must_interrupt(rec, dev)
        verdict, _ = orc.judge_split(before, self.mem, self.view, notified=irq, accesses=rec.log)
        assert verdict.ok and verdict.outcome == "reset-quiet"
        self.drv = sp.driver_init(self.mem, self.lay, self.feats, scratch=0x8000)
        self.dev = sp.device_reenable(self.dev, self.lay)
        self.view = orc.reenable_view(self.view, self.lay)

    @invariant()
    def views_agree(self) -> None:
        if hasattr(self, "view") and not self.dev.broken:
            assert self.view.used_idx == self.dev.used_idx
            assert len(self.drv.inflight) <= self.lay.size


class PackedRing(RuleBasedStateMachine):
    @initialize(feats=features, size=st.sampled_from([1, 3, 5]))
    def setup(self, feats: RingFeatures, size: int) -> None:
        self.feats = attrs.evolve(feats, packed=True)
        self.mem = ByteMemory(MEM)
        self.lay = pk.PackedLayout.contiguous(0x1000, size)
        self.drv = pk.driver_init(self.mem, self.lay, self.feats, scratch=0x8000)
        self.dev = pk.device_init(self.lay, self.feats)
        self.view = orc.PackedView.start(self.lay, self.feats)

    @rule(spec=buffers, indirect=st.booleans())
    def add(self, spec: list[tuple[int, bool]], indirect: bool) -> None:
        indirect = indirect and self.feats.indirect
        if pk.driver_can_add(self.drv, len(spec), indirect):
            self.drv, _ = pk.driver_add(self.mem, self.drv, _bufs(spec), indirect)
            self.drv, _ = pk.driver_must_kick(self.mem, self.drv)

    @rule(mode=st.sampled_from([0, 1, 2]), ahead=st.integers(0, 3))
    def driver_events(self, mode: int, ahead: int) -> None:
        off, wrap = rm.packed_advance(self.drv.next_used, self.drv.used_wrap, self.lay.size,
                                      ahead % self.lay.size)
        pk.driver_set_event(self.mem, self.drv, mode, off, wrap)

    @rule(reply=st.integers(0, 80), batch=st.booleans(), reverse=st.booleans())
    def device_step(self, reply: int, batch: bool, reverse: bool) -> None:
        before = self.mem.copy()
        rec = RecordingMemory(self.mem)
        self.dev, _ = pk.device_poll(rec, self.dev)
        heads = [c.head for c in self.dev.inflight]
        if reverse and not self.feats.in_order:
            heads.reverse()
        self.dev = pk.device_complete(rec, self.dev, [(h, b"d" * reply) for h in heads],
                                      batch=batch and self.feats.in_order)
        self.dev, irq = pk.device_must_interrupt(rec, self.dev)
        verdict, self.view = orc.judge_packed(before, self.mem, self.view, notified=irq,
                                              accesses=rec.log, needs_reset=self.dev.broken,
                                              expect_progress=True)
        assert verdict.ok, verdict.violations
        self.drv, _ = pk.driver_collect(self.mem, self.drv)

    @invariant()
    def positions_agree(self) -> None:
        if hasattr(self, "view"):
            assert (self.view.next_used, self.view.used_wrap) == (self.dev.next_used,
                                                                  self.dev.used_wrap)


TestSplitRing = SplitRing.TestCase
TestPackedRing = PackedRing.TestCase
