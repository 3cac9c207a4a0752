"""One virtqueue of a :class:`~conformance.vhost_user.net_session.NetSession`, split or
packed: the spec's model driver for that layout over a memfd region, and its oracle.

The session needs the same few things of either layout -- add a buffer, expose what was
added and decide the notification, count what the device has used, take it back, and have
the step judged -- so each layout is one class with those methods.  The buffers' segments
are remembered by head/id: a packed ring overwrites a list's first slot when it is used
(2.8.6), so the driver, not the ring, knows where the bytes are.

A packed ring has no index to publish: a list becomes visible when its first slot's flags
flip (2.8.21.1), and a polling back-end (DPDK's is one) may take it at once.  So the lists
are built in a private copy of the region first; that copy, as at publication, is the
oracle's "before"; then bodies, buffers and the other slots are copied into the shared
region, and every list's first flags word last, in ring order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from conformance.vhost_user import evidence as ev
from conformance.vhost_user.frontend import Frontend, Vring
from conformance.vhost_user.memory import MemfdMemory
from spec.virtio import oracle as orc
from spec.virtio import packed as pk
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.memory import ByteMemory, write_le16
from spec.virtio.ring_math import RingFeatures

Segs = tuple[tuple[int, int], ...]  # (guest-physical address, length) of a buffer's parts


class SplitQueue:
    """A split virtqueue (2.7) driven by spec.virtio.split, judged by judge_split."""

    packed = False

    def __init__(self, fe: Frontend, index: int, mem: MemfdMemory, base: int, size: int,
                 feats: RingFeatures, scratch: int, max_indirect: int, start: int = 0
                 ) -> None:
        self.mem, self.index, self.feats = mem, index, feats
        self.layout = sp.SplitLayout.contiguous(base, size)
        self.drv = sp.driver_init(mem, self.layout, feats, start=start, scratch=scratch,
                                  max_indirect=max_indirect)
        # the device area as a device that has processed up to ``start`` leaves it
        write_le16(mem, rm.avail_event_addr(self.layout.used, size), start)
        self.view = orc.SplitView.start(self.layout, feats, start)
        self.segs: dict[int, Segs] = {}
        self.fe, self.start = fe, start

    def setup(self) -> Vring:
        return self.fe.setup_vring(self.index, self.mem, self.layout, self.start)

    def next_head(self) -> int:
        return self.drv.free[0]

    def room(self) -> int:
        return len(self.drv.free)

    def add(self, bufs: Sequence[tuple[int, int, bool]], indirect: bool,
            direct_prefix: int = 0, write_on_indirect: bool = False) -> int:
        """One buffer; with ``indirect``, ``direct_prefix`` leading parts in ordinary
        descriptors (a mixed chain) and (``write_on_indirect``) WRITE set on the
        descriptor that points at the table (2.7.5.3.2: the device ignores it)."""
        free = self.drv.free
        self.drv, head = sp.driver_add(self.mem, self.drv, bufs, indirect, direct_prefix)
        if indirect and write_on_indirect:
            at = rm.desc_addr(self.layout.desc, free[direct_prefix])
            d = sp.Desc.read(self.mem, at)
            attrs.evolve(d, flags=d.flags | sp.VIRTQ_DESC_F_WRITE).write(self.mem, at)
        self.segs[head] = tuple((a, n) for a, n, _ in bufs)
        return head

    def set_used_event(self, value: int | None) -> None:
        """2.7.10: under EVENT_IDX, the used index the driver wants to hear about."""
        if self.feats.event_idx:
            sp.driver_set_used_event(self.mem, self.drv,
                                     self.drv.last_used if value is None else value)

    def no_interrupt(self, on: bool) -> None:
        sp.driver_set_no_interrupt(self.mem, self.drv, on)

    def publish(self) -> tuple[ByteMemory, dict[str, Any], bool]:
        """Memory as at publication (avail.idx advanced), ring facts, whether to kick."""
        before = self.mem.frozen()
        write_le16(before, rm.avail_idx_addr(self.layout.avail), self.drv.avail_idx)
        ring = {"avail_idx": self.drv.avail_idx, "last_avail": self.view.last_avail,
                "used_idx_before": self.view.used_idx, "last_used": self.drv.last_used}
        self.drv = sp.driver_publish(self.mem, self.drv)
        self.drv, kick = sp.driver_must_kick(self.mem, self.drv)
        return before, ring, kick

    def used_count(self) -> int:
        """Used entries the device has published since the driver last collected."""
        return rm.idx_sub(sp.read_used_idx(self.mem, self.layout), self.drv.last_used)

    def inflight_heads(self) -> list[int]:
        return [h for h, _ in self.drv.inflight]

    def judge(self, before: ByteMemory, after: ByteMemory, notified: bool,
              expect_progress: bool) -> orc.Verdict:
        verdict, self.view = orc.judge_split(before, after, self.view, notified=notified,
                                             expect_progress=expect_progress)
        return verdict

    def ring_after(self, after: ByteMemory) -> dict[str, Any]:
        return {"used_idx_after": sp.read_used_idx(after, self.layout)}

    def collect(self) -> list[tuple[int, int | None]]:
        """Used buffers back (2.7.14); raises sp.DeviceMisbehaved on an impossible one."""
        self.drv, got = sp.driver_collect(self.mem, self.drv)
        return got

    def evidence(self, before: ByteMemory, after: ByteMemory, placed: Sequence[int],
                 ring: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        # the chains as the ring shows them (a net buffer is no blk request)
        return ev.step_records(before, after, self.layout, [(h, None) for h in placed], ring)


class PackedQueue:
    """A packed virtqueue (2.8) driven by spec.virtio.packed, judged by judge_packed."""

    packed = True

    def __init__(self, fe: Frontend, index: int, mem: MemfdMemory, base: int, size: int,
                 feats: RingFeatures, scratch: int, max_indirect: int, start: int = 0
                 ) -> None:
        assert start == 0, "a packed ring starts at slot 0, wrap counters 1 (2.8.1)"
        self.mem, self.index, self.feats, self.fe = mem, index, feats, fe
        self.layout = pk.PackedLayout.contiguous(base, size)
        self.drv = pk.driver_init(mem, self.layout, feats, scratch=scratch,
                                  max_indirect=max_indirect)
        self.view = orc.PackedView.start(self.layout, feats)
        self.segs: dict[int, Segs] = {}
        self.image: ByteMemory | None = None  # lists built, not yet published
        self.firsts: list[int] = []  # addresses of the first slots of those lists
        self.spans: list[tuple[int, int]] = []  # what those lists wrote (slots, tables)

    def setup(self) -> Vring:
        """SET_VRING_ADDR carries the ring, the driver area and the device area in the
        desc/avail/used fields; SET_VRING_BASE: avail slot 0 with its wrap counter 1 in
        bit 15, used slot 0 with its wrap counter 1 in bit 31 (2.8.1: both counters start
        at 1; vhost-user.rst "Vring descriptor indices for packed virtqueues", as QEMU
        sends it).  A back-end that reads the low 16 bits only (rte_vhost 22.11) takes
        the used side to be the avail side's, the same here."""
        lay = self.layout
        addrs = sp.SplitLayout(lay.size, lay.desc, lay.driver, lay.device)
        return self.fe.setup_vring(self.index, self.mem, addrs, 1 << 15 | 1 << 31)

    def next_head(self) -> int:
        return self.drv.free_ids[0]

    def room(self) -> int:
        return min(len(self.drv.free_ids), self.drv.slots_free)

    def _img(self) -> ByteMemory:
        if self.image is None:
            self.image = self.mem.frozen()
        return self.image

    def add(self, bufs: Sequence[tuple[int, int, bool]], indirect: bool) -> int:
        img = self._img()
        pos, n = self.drv.next_avail, self.layout.size
        self.firsts.append(rm.desc_addr(self.layout.desc, pos))
        self.drv, ident = pk.driver_add(img, self.drv, bufs, indirect)
        slots = self.drv.inflight[-1][1]
        # what this list wrote: its slots and, if indirect, its table (never a slot or a
        # buffer the device may be writing: those are copied back by nothing)
        self.spans += [(rm.desc_addr(self.layout.desc, (pos + k) % n), rm.DESC_SIZE)
                       for k in range(slots)]
        if indirect:
            table = self.drv.scratch + ident * rm.DESC_SIZE * self.drv.max_indirect
            self.spans.append((table, rm.DESC_SIZE * len(bufs)))
        self.segs[ident] = tuple((a, n) for a, n, _ in bufs)
        return ident

    def set_used_event(self, value: int | None) -> None:
        """2.8.10: notifications enabled (EVENT_FLAGS_ENABLE); a value asks for the used
        descriptor at that slot only (EVENT_FLAGS_DESC, when EVENT_IDX is negotiated)."""
        if value is not None and self.feats.event_idx:
            pk.driver_set_event(self.mem, self.drv, rm.EVENT_FLAGS_DESC, value % self.layout.size,
                                self.drv.used_wrap)
        else:
            pk.driver_set_event(self.mem, self.drv, rm.EVENT_FLAGS_ENABLE)

    def no_interrupt(self, on: bool) -> None:
        pk.driver_set_event(self.mem, self.drv,
                            rm.EVENT_FLAGS_DISABLE if on else rm.EVENT_FLAGS_ENABLE)

    def publish_held(self) -> list[tuple[int, bytes]]:
        """Write the new lists into the shared region but for their first flags words:
        every byte of each list is there, and none is available (2.8.1: AVAIL still of
        the previous lap).  Returns the held flags writes for :meth:`release`."""
        img = self._img()
        held = [(at + 14, img.read(at + 14, 2)) for at in self.firsts]
        for a, n in self.spans:
            data = bytearray(img.read(a, n))
            if a in self.firsts:
                data[14:16] = self.mem.read(a + 14, 2)
            self.mem.write(a, bytes(data))
        self.image, self.firsts, self.spans = None, [], []
        return held

    def release(self, held: list[tuple[int, bytes]]) -> bool:
        """Make the lists :meth:`publish_held` wrote available, in ring order; whether to
        kick."""
        for at, flags in held:
            self.mem.write(at, flags)
        self.drv, kick = pk.driver_must_kick(self.mem, self.drv)
        return kick

    def publish(self) -> tuple[ByteMemory, dict[str, Any], bool]:
        """Memory as at publication (every new list available), ring facts, whether to
        kick; the new lists copied into the shared region, first flags last."""
        img = self._img()
        before = self.mem.frozen()  # the buffers and event areas as they are now
        for a, n in self.spans:
            before.write(a, img.read(a, n))
        for a, n in self.spans:  # every list's first flags word stays as it was, for now
            data = bytearray(img.read(a, n))
            if a in self.firsts:
                data[14:16] = self.mem.read(a + 14, 2)
            self.mem.write(a, bytes(data))
        for at in self.firsts:  # then, in ring order, hand each list over (2.8.21.1)
            self.mem.write(at + 14, img.read(at + 14, 2))
        ring = {"next_avail": self.drv.next_avail, "avail_wrap": self.drv.avail_wrap,
                "next_used": self.drv.next_used, "used_wrap": self.drv.used_wrap,
                "lists": len(self.firsts)}
        self.image, self.firsts, self.spans = None, [], []
        self.drv, kick = pk.driver_must_kick(self.mem, self.drv)
        return before, ring, kick

    def used_count(self) -> int:
        _drv, got = pk.driver_collect(self.mem, self.drv)
        return len(got)

    def inflight_heads(self) -> list[int]:
        return [i for i, _ in self.drv.inflight]

    def judge(self, before: ByteMemory, after: ByteMemory, notified: bool,
              expect_progress: bool) -> orc.Verdict:
        verdict, self.view = orc.judge_packed(before, after, self.view, notified=notified,
                                              expect_progress=expect_progress)
        return verdict

    def ring_after(self, after: ByteMemory) -> dict[str, Any]:
        return {"device_event": list(pk.read_event(after, self.layout.device))}

    def collect(self) -> list[tuple[int, int | None]]:
        self.drv, got = pk.driver_collect(self.mem, self.drv)
        return got

    def evidence(self, before: ByteMemory, after: ByteMemory, placed: Sequence[int],
                 ring: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        """The ring facts and, per list, its slots before and after (no chain walk: a used
        list's first slot no longer says where its buffers are)."""
        out = [ev.op(f"packed ring: {ring}", kind="ring", **ring)]
        for slot in range(self.layout.size):
            at = rm.desc_addr(self.layout.desc, slot)
            b, a = pk.PDesc.read(before, at), pk.PDesc.read(after, at)
            if b != a:
                out.append(ev.op(f"slot {slot}: {attrs.asdict(b)} -> {attrs.asdict(a)}",
                                 kind="slot"))
            if len(out) > 40:
                break
        return tuple(out)


AnyQueue = SplitQueue | PackedQueue
