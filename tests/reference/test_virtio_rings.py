"""The reference split and packed virtqueues against the spec's ring models, byte for byte
(VIRTIO 1.3 2.7, 2.8).

The spec's model driver builds requests in one :class:`ByteMemory` and every driver
write goes to an identical copy.  On a kick the spec's model device (``on_fault=
"needs-reset"``) runs on the first copy and a reference queue on the second, both asking
their own instance of one deterministic :class:`Device` for replies.  After every kick
the copies must be byte-identical, with the same notification decision, the same
stopped state and ring positions, and the same requests seen by the device.  Hostile
rules plant loops, out-of-range heads and addresses, bad and nested indirect tables,
avail.idx jumps and random descriptor bytes; indices start near the 16-bit wrap.

The reference serves buffer by buffer (so a not-ready device can stop it between two),
so the spec side is stepped one buffer at a time: for split through a view of memory
whose avail.idx admits one more head, for packed with ``scan_available(limit=1)``.  A
hostile writable buffer may alias anything except the rings themselves, where the order
of two writes within one kick is an implementation choice the spec leaves open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from reference_impl.virtio import BlkDevice, PackedQueue, SplitQueue, blk_features
from reference_impl.virtio._wire import Translate, flat
from reference_impl.virtio.device import Device
from spec.virtio import packed as pk
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.devices import block as B
from spec.virtio.memory import ByteMemory, read_le16, write_le16
from spec.virtio.ring_math import RingFeatures
from spec.virtio.split import DeviceMisbehaved

MEM = 0x10000
RING = 0x1000  # rings (at most 0x200 bytes for the sizes drawn here)
BUF = 0x2000  # driver buffers: buffer h, part k at BUF + 0x400 * h + 0x100 * k
HOSTILE = 0x6000
SCRATCH = 0x8000  # the model driver's indirect tables
HTABLE = 0x9000  # hostile indirect tables
MAX_SIZE = 8

# Hostile buffers may land anywhere but on the rings (see the module docstring).
bad_addr = st.one_of(
    st.sampled_from([0, 0x10, BUF, HOSTILE, HOSTILE + 0x80, SCRATCH, MEM - 8, MEM, 1 << 40,
                     (1 << 64) - 16]),
    st.integers(MEM, (1 << 64) - 1))
buf_addr = st.one_of(st.sampled_from([HOSTILE, HOSTILE + 0x80]), bad_addr)
bad_len = st.sampled_from([0, 1, 16, 0x100, 0x7FFF_FFFF, 0xFFFF_FFFF])
table_addr = st.sampled_from([HTABLE, RING, SCRATCH, MEM - 16, 1 << 40])
table_len = st.sampled_from([0, 8, 16, 32, 48, 16 * 20, 0xFFFF_FFF0])
parts = st.lists(st.tuples(st.integers(0, 64), st.booleans()), min_size=1, max_size=4)
features = st.builds(RingFeatures, indirect=st.booleans(), event_idx=st.booleans(),
                     in_order=st.booleans())


class Divergence(AssertionError):
    """The reference and the spec model disagree (or the reference crashed)."""


# --- devices --------------------------------------------------------------------------------


class Checksum:
    """A deterministic :class:`Device`: the reply is a digest of the request and its serial
    number, cut to ``in_len`` (every fourth one to half of it).  ``budget`` limits how
    many more buffers it is ready for (None: always ready)."""

    device_id = 0x7F
    features = 0

    def __init__(self) -> None:
        self.budget: int | None = None
        self.log: list[tuple[bytes, int]] = []

    def config(self) -> bytes:
        return b""

    def ready(self, queue: int) -> bool:
        return self.budget is None or self.budget > 0

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        if self.budget is not None:
            self.budget -= 1
        n = len(self.log)
        self.log.append((bytes(out), in_len))
        want = in_len if n % 4 else in_len // 2
        digest = hashlib.blake2b(bytes(out) + n.to_bytes(4, "little"), digest_size=16).digest()
        return (digest * (want // 16 + 1))[:want]


class _Watch:
    """The reference's device, plus ``check(k)`` before its k-th serve of a kick: what the
    ring already shows the driver must be final (2.7.8.2, 2.8.21.3)."""

    def __init__(self, inner: Device, check: Callable[[int], None]) -> None:
        self.inner, self.check, self.served = inner, check, 0
        self.device_id, self.features = inner.device_id, inner.features

    def config(self) -> bytes:
        return self.inner.config()

    def ready(self, queue: int) -> bool:
        return self.inner.ready(queue)

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        self.check(self.served)
        self.served += 1
        return self.inner.serve(queue, out, in_len)


# --- memories -------------------------------------------------------------------------------


class Tee:
    """Driver-side memory: reads the spec copy, writes both copies."""

    def __init__(self, a: ByteMemory, b: ByteMemory) -> None:
        self.a, self.b = a, b

    def read(self, addr: int, n: int) -> bytes:
        return self.a.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self.a.write(addr, data)
        self.b.write(addr, data)

    def contains(self, addr: int, n: int) -> bool:
        return self.a.contains(addr, n)


class _AvailWindow:
    """Spec memory with avail.idx read as ``idx``: lets the model take one head at a time."""

    def __init__(self, mem: ByteMemory, at: int) -> None:
        self.mem, self.at, self.idx = mem, at, 0

    def read(self, addr: int, n: int) -> bytes:
        if addr == self.at and n == 2:
            return self.idx.to_bytes(2, "little")
        return self.mem.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(addr, data)

    def contains(self, addr: int, n: int) -> bool:
        return self.mem.contains(addr, n)


def _out_bytes(mem: ByteMemory, chain: sp.Chain) -> bytes:
    return b"".join(mem.read(s.addr, s.len) for s in chain.readable)


def _first_diff(a: bytearray, b: bytearray) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)


# --- the spec side of one kick --------------------------------------------------------------


def spec_kick_split(mem: ByteMemory, dev: sp.SplitDevice, device: Device
                    ) -> tuple[sp.SplitDevice, bool]:
    """device_poll one head at a time while the device is ready, each reply written by
    device_complete, then device_must_interrupt."""
    lay = dev.layout
    window = _AvailWindow(mem, rm.avail_idx_addr(lay.avail))
    real = sp.read_avail_idx(mem, lay)
    count = rm.pending(real, dev.last_avail)
    if rm.ult(lay.size, count):
        window.idx = real  # the overrun itself is the spec's to judge
        dev, _ = sp.device_poll(window, dev)
    else:
        for k in range(count + 1):
            more = k < count and device.ready(0)
            window.idx = rm.idx_add(dev.last_avail, int(more))
            dev, chains = sp.device_poll(window, dev)
            if not chains:
                break
            (chain,) = chains
            reply = device.serve(0, _out_bytes(mem, chain), chain.writable_len)
            dev = sp.device_complete(mem, dev, [(chain.head, reply)])
    return sp.device_must_interrupt(mem, dev)


def spec_kick_packed(mem: ByteMemory, dev: pk.PackedDevice, device: Device
                     ) -> tuple[pk.PackedDevice, bool, list[tuple[int, bool]]]:
    """device_poll (packed.py) with a scan limit of one list, while the device is ready;
    also returns where each used descriptor went."""
    done: list[tuple[int, bool]] = []
    while not dev.broken:
        chains, (idx, wrap) = pk.scan_available(mem, dev.layout, dev.next_avail, dev.avail_wrap,
                                                dev.features, limit=1)
        if not chains or not device.ready(0):
            break
        (chain,) = chains
        if not chain.processable(sp.TOLERABLE | pk.PACKED_TOLERABLE):
            dev = attrs.evolve(dev, broken=True, next_avail=idx, avail_wrap=wrap)
            break
        dev = attrs.evolve(dev, next_avail=idx, avail_wrap=wrap,
                           inflight=(*dev.inflight, chain))
        reply = device.serve(0, _out_bytes(mem, chain), chain.writable_len)
        done.append((dev.next_used, dev.used_wrap))
        # device_complete stops writing at an empty writable descriptor; an empty one
        # carries no bytes, so dropping it keeps the chain's meaning (split never stops)
        dev = attrs.evolve(dev, inflight=(*dev.inflight[:-1], attrs.evolve(
            chain, segments=tuple(s for s in chain.segments if s.len or not s.writable))))
        dev = pk.device_complete(mem, dev, [(chain.head, reply)])
    dev, irq = pk.device_must_interrupt(mem, dev)
    return dev, irq, done


# --- the machines ---------------------------------------------------------------------------


def _hostile(f: Callable[..., None]) -> Callable[..., None]:
    """A corruption rule: drawn only in hostile runs, until the queue stops."""
    return precondition(lambda self: self.hostile and not self._stopped())(
        rule(data=st.data())(f))


class _Diff(RuleBasedStateMachine):
    """What both ring machines share: two memories, two devices, the comparisons.

    A run is benign or hostile (drawn at the start); only hostile runs enable the
    corruption rules.  Once the queue has stopped, a reset rule starts both sides over,
    as a driver resets a device that needs it (2.1.2).
    """

    def _memories(self, hostile: bool) -> None:
        self.mem, self.ref = ByteMemory(MEM), ByteMemory(MEM)
        self.tee = Tee(self.mem, self.ref)
        self.sdev, self.rdev = Checksum(), Checksum()
        self.hostile = hostile
        self.lost = False  # the model driver lost track after a hostile rule

    def _fill(self, bufs: list[tuple[int, int, bool]], seed: int) -> None:
        for addr, n, w in bufs:
            if not w:
                self.tee.write(addr, bytes((seed + 7 * i) & 0xFF for i in range(n)))

    @staticmethod
    def _bufs(spec: list[tuple[int, bool]], slot: int) -> list[tuple[int, int, bool]]:
        spec = sorted(spec, key=lambda b: b[1])  # readable first (2.7.4.2)
        return [(BUF + 0x400 * slot + 0x100 * k, n, w) for k, (n, w) in enumerate(spec)]

    def _run_ref(self, call: Callable[[], bool]) -> bool:
        try:
            return call()
        except Divergence:
            raise
        except Exception as e:  # the reference must never crash on ring contents
            raise Divergence(f"reference crashed: {e!r}") from e

    def _same(self, what: str, spec: object, ref: object) -> None:
        if spec != ref:
            raise Divergence(f"{what}: spec {spec!r}, reference {ref!r}")

    def _same_memory(self) -> None:
        if self.mem.buf != self.ref.buf:
            at = _first_diff(self.mem.buf, self.ref.buf)
            raise Divergence(f"memory differs at {at:#x}: spec {self.mem.buf[at:at + 8].hex()}"
                             f", reference {self.ref.buf[at:at + 8].hex()}")

    def _translate(self) -> Translate:
        """Native runs get :func:`flat` (bounds test inlined on the fast path); the others a
        plain callable, as the vhost-user server passes, over struct-based views."""
        view = flat(memoryview(self.ref.buf))
        return view if self.native else lambda addr, n: view(addr, n)

    def _stopped(self) -> bool:
        return self.q.broken or self.lost

    @rule(budget=st.one_of(st.none(), st.integers(0, 3)))
    def set_ready(self, budget: int | None) -> None:
        """Device-initiated queues (net rx, console, input) are not always ready."""
        self.sdev.budget = self.rdev.budget = budget

    @precondition(lambda self: self._stopped())
    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        self._start(data)


class SplitDiff(_Diff):
    queue_cls: type[SplitQueue] = SplitQueue

    @initialize(feats=features, size=st.sampled_from([4, MAX_SIZE, 1, 2]), hostile=st.booleans(),
                native=st.booleans(), data=st.data())
    def setup(self, feats: RingFeatures, size: int, hostile: bool, native: bool,
              data: st.DataObject) -> None:
        self._memories(hostile)
        self.feats, self.native = feats, native
        self.lay = sp.SplitLayout.contiguous(RING, size)
        self._start(data)

    def _start(self, data: st.DataObject) -> None:
        """Both sides at one index, as after SET_VRING_BASE; often near the 16-bit wrap."""
        start = data.draw(st.one_of(st.sampled_from([0, 65530, 65535]), st.integers(0, 0xFFFF)),
                          label="start")
        lay, feats = self.lay, self.feats
        self.drv = sp.driver_init(self.tee, lay, feats, start=start, scratch=SCRATCH)
        self.dev = sp.device_init(lay, feats, start=start)
        mv = memoryview(self.ref.buf)
        self.q = self.queue_cls(lay.size, mv[lay.desc:], mv[lay.avail:], mv[lay.used:],
                                self._translate(), feats.to_bits(), last_avail=start,
                                native=self.native)
        self.lost = False

    # driver side (2.7.13)

    @precondition(lambda self: not self._stopped())
    @rule(spec=parts, indirect=st.booleans(), seed=st.integers(0, 255),
          then=st.sampled_from(["kick", "publish", "wait"]))
    def add(self, spec: list[tuple[int, bool]], indirect: bool, seed: int, then: str) -> None:
        indirect = indirect and self.feats.indirect
        spec = spec if indirect else spec[: max(1, len(self.drv.free))]
        if sp.driver_can_add(self.drv, len(spec), indirect):
            bufs = self._bufs(spec, self.drv.free[0])
            self._fill(bufs, seed)
            self.drv, _ = sp.driver_add(self.tee, self.drv, bufs, indirect)
        if then != "wait":
            self.publish()
        if then == "kick":
            self.kick()

    @rule()
    def publish(self) -> None:
        self.drv = sp.driver_publish(self.tee, self.drv)
        self.drv, _ = sp.driver_must_kick(self.tee, self.drv)

    def _expose(self, slot: int, used: tuple[int, ...] = ()) -> None:
        """Queue ``slot`` as a head and publish it, as a driver would."""
        lay, drv = self.lay, self.drv
        write_le16(self.tee, rm.avail_ring_addr(lay.avail, rm.ring_slot(drv.avail_idx, lay.size)),
                   slot)
        taken = used or (slot,)
        self.drv = attrs.evolve(drv, avail_idx=rm.idx_add(drv.avail_idx, 1),
                                free=tuple(f for f in drv.free if f not in taken),
                                inflight=(*drv.inflight, (slot, taken)))
        self.publish()

    def _desc(self, at: int, addr: int, n: int, flags: int, nxt: int) -> None:
        sp.Desc(addr, n, flags, nxt).write(self.tee, at)

    # hostile driver (2.7.5, 2.7.5.3, 2.7.6): hostile runs only

    @_hostile
    def hostile_desc(self, data: st.DataObject) -> None:
        """One adversarial descriptor as a head: NEXT anywhere, any flags, any buffer."""
        if not self.drv.free:
            return
        slot, size = self.drv.free[0], self.lay.size
        nxt = data.draw(st.one_of(st.sampled_from([size, size - 1, 0xFFFF]),
                                  st.integers(0, MAX_SIZE + 1)))
        self._desc(rm.desc_addr(self.lay.desc, slot), data.draw(buf_addr), data.draw(bad_len),
                   data.draw(st.integers(0, 7)), nxt)
        self._expose(slot)

    @_hostile
    def hostile_random_bytes(self, data: st.DataObject) -> None:
        """Random bytes as a head's descriptor (the address kept off the rings)."""
        if not self.drv.free:
            return
        raw = data.draw(st.binary(min_size=16, max_size=16))
        slot = self.drv.free[0]
        addr = int.from_bytes(raw[:8], "little")
        if addr < MEM:
            addr = HOSTILE + addr % 0x1000 if addr & 1 else addr | MEM
        self.tee.write(rm.desc_addr(self.lay.desc, slot), addr.to_bytes(8, "little") + raw[8:])
        self._expose(slot)

    @_hostile
    def hostile_loop(self, data: st.DataObject) -> None:
        """A chain whose NEXT leads back into itself (2.7.5.2)."""
        if len(self.drv.free) < 2:
            return
        a, b = self.drv.free[0], self.drv.free[1]
        flags = sp.VIRTQ_DESC_F_NEXT | (sp.VIRTQ_DESC_F_WRITE if data.draw(st.booleans()) else 0)
        d = self.lay.desc
        if data.draw(st.booleans()):
            self._desc(rm.desc_addr(d, a), HOSTILE, 8, flags, a)
            self._expose(a)
        else:
            self._desc(rm.desc_addr(d, a), HOSTILE, 8, flags, b)
            self._desc(rm.desc_addr(d, b), HOSTILE + 8, 8, flags, a)
            self._expose(a, (a, b))

    @_hostile
    def hostile_next_edge(self, data: st.DataObject) -> None:
        """A well-formed buffer whose NEXT names the first index past the descriptor table
        or past its indirect table (2.7.5, 2.7.5.3.1): the classic bounds off-by-one."""
        if not self.drv.free:
            return
        slot, size = self.drv.free[0], self.lay.size
        flags = sp.VIRTQ_DESC_F_NEXT | (sp.VIRTQ_DESC_F_WRITE if data.draw(st.booleans()) else 0)
        if data.draw(st.booleans()):
            self._desc(rm.desc_addr(self.lay.desc, slot), HOSTILE, 8, flags, size)
        else:
            k = data.draw(st.integers(1, 3))
            for j in range(k):
                self._desc(HTABLE + 16 * j, HOSTILE + 8 * j, 8, flags, j + 1)
            self._desc(rm.desc_addr(self.lay.desc, slot), HTABLE, 16 * k,
                       sp.VIRTQ_DESC_F_INDIRECT, 0)
        self._expose(slot)

    @_hostile
    def hostile_indirect(self, data: st.DataObject) -> None:
        """An indirect table that is nested, empty, ragged, outside memory, NEXT-flagged,
        or the descriptor table itself (2.7.5.3.1)."""
        if not self.drv.free:
            return
        taddr, tlen = data.draw(table_addr), data.draw(table_len)
        if taddr == HTABLE:
            entries = data.draw(st.lists(st.tuples(buf_addr, bad_len, st.integers(0, 7),
                                                   st.integers(0, 4)), max_size=4))
            for k, (addr, n, flags, nxt) in enumerate(entries):
                self._desc(HTABLE + 16 * k, addr, n, flags, nxt)
        slot = self.drv.free[0]
        flags = sp.VIRTQ_DESC_F_INDIRECT | (sp.VIRTQ_DESC_F_NEXT if data.draw(st.booleans())
                                            else 0)
        self._desc(rm.desc_addr(self.lay.desc, slot), taddr, tlen, flags, 0)
        self._expose(slot)

    @_hostile
    def hostile_bad_head(self, data: st.DataObject) -> None:
        """A head index at or beyond the queue size (2.7.6)."""
        lay, drv = self.lay, self.drv
        head = lay.size + data.draw(st.sampled_from([0, 1, 0xFFFF - lay.size]))
        write_le16(self.tee, rm.avail_ring_addr(lay.avail, rm.ring_slot(drv.avail_idx, lay.size)),
                   head)
        self.drv = attrs.evolve(drv, avail_idx=rm.idx_add(drv.avail_idx, 1))
        self.publish()

    @_hostile
    def hostile_avail_jump(self, data: st.DataObject) -> None:
        """avail.idx moved further than the driver queued: stale heads, or an overrun."""
        jump = data.draw(st.one_of(st.integers(1, 3), st.integers(MAX_SIZE + 1, 0xFFFF)))
        write_le16(self.tee, rm.avail_idx_addr(self.lay.avail),
                   rm.idx_add(self.drv.published, jump))
        self.lost = True  # the driver no longer knows what is in flight

    # notification suppression, both ways (2.7.7, 2.7.10)

    @rule(ev=st.integers(0, 0xFFFF), near=st.integers(-1, 3), flags=st.sampled_from([0, 1, 3]))
    def driver_suppression(self, ev: int, near: int, flags: int) -> None:
        if near >= 0:
            ev = rm.idx_add(self.q.used_idx, near)
        sp.driver_set_used_event(self.tee, self.drv, ev)
        write_le16(self.tee, rm.avail_flags_addr(self.lay.avail), flags)

    @rule(on=st.booleans())
    def device_suppression(self, on: bool) -> None:
        sp.device_set_no_notify(self.mem, self.dev, on)
        self.q.set_no_notify(on)
        self._same_memory()

    # the kick

    def _published_final(self, u0: int, served: int) -> None:
        """At each serve: used.idx covers only buffers already served, and the elements it
        covers already hold their final (id, len)."""
        lay = self.lay
        pub = read_le16(self.ref, rm.used_idx_addr(lay.used))
        n = rm.idx_sub(pub, u0)
        if n > served:
            raise Divergence(f"used.idx {pub} covers {n} buffers when {served} were served")
        for j in range(n):
            at = rm.used_elem_addr(lay.used, rm.ring_slot(rm.idx_add(u0, j), lay.size))
            self._same(f"used element at {at:#x} once published", self.mem.read(at, 8),
                       self.ref.read(at, 8))

    @rule()
    def kick(self) -> None:
        u0 = self.q.used_idx
        self.dev, irq = spec_kick_split(self.mem, self.dev, self.sdev)
        watch = _Watch(self.rdev, lambda k: self._published_final(u0, k))
        rirq = self._run_ref(lambda: self.q.process(watch, 0))
        self._same("served requests", self.sdev.log, self.rdev.log)
        self._same_memory()
        self._same("stopped (DEVICE_NEEDS_RESET)", self.dev.broken, self.q.broken)
        self._same("notification", irq, rirq)
        self._same("last_avail", self.dev.last_avail, self.q.last_avail)
        self._same("used idx", self.dev.used_idx, self.q.used_idx)
        if not self.lost:
            try:
                self.drv, _ = sp.driver_collect(self.tee, self.drv)
            except DeviceMisbehaved:
                self.lost = True


class PackedDiff(_Diff):
    queue_cls: type[PackedQueue] = PackedQueue

    @initialize(feats=features, size=st.sampled_from([5, MAX_SIZE, 1, 2, 3]),
                hostile=st.booleans(), native=st.booleans(), data=st.data())
    def setup(self, feats: RingFeatures, size: int, hostile: bool, native: bool,
              data: st.DataObject) -> None:
        self._memories(hostile)
        self.feats, self.native = attrs.evolve(feats, packed=True), native
        self.lay = pk.PackedLayout.contiguous(RING, size)
        self._start(data)

    def _start(self, data: st.DataObject) -> None:
        """Both sides at one slot and wrap counter, as after SET_VRING_BASE."""
        lay, feats = self.lay, self.feats
        start = data.draw(st.integers(0, lay.size - 1), label="start")
        wrap = data.draw(st.booleans(), label="wrap")
        self.drv = attrs.evolve(pk.driver_init(self.tee, lay, feats, scratch=SCRATCH),
                                next_avail=start, avail_wrap=wrap, next_used=start,
                                used_wrap=wrap)
        self.dev = attrs.evolve(pk.device_init(lay, feats), next_avail=start, avail_wrap=wrap,
                                next_used=start, used_wrap=wrap)
        mv = memoryview(self.ref.buf)
        self.q = self.queue_cls(lay.size, mv[lay.desc:], mv[lay.driver:], mv[lay.device:],
                                self._translate(), feats.to_bits(), next_avail=start,
                                avail_wrap=wrap, native=self.native)
        self.lost = False

    # driver side (2.8.21)

    @precondition(lambda self: not self._stopped())
    @rule(spec=parts, indirect=st.booleans(), seed=st.integers(0, 255), kick=st.booleans())
    def add(self, spec: list[tuple[int, bool]], indirect: bool, seed: int, kick: bool) -> None:
        indirect = indirect and self.feats.indirect
        spec = spec if indirect else spec[: max(1, self.drv.slots_free)]
        if pk.driver_can_add(self.drv, len(spec), indirect):
            bufs = self._bufs(spec, self.drv.free_ids[0])
            self._fill(bufs, seed)
            self.drv, _ = pk.driver_add(self.tee, self.drv, bufs, indirect)
            self.drv, _ = pk.driver_must_kick(self.tee, self.drv)
        if kick:
            self.kick()

    def _slots(self, descs: list[tuple[int, int, int]]) -> None:
        """Make a hostile list available: bodies first, the first slot's flags last."""
        drv, n = self.drv, self.lay.size
        if not drv.free_ids or drv.slots_free < len(descs):
            return
        ident = drv.free_ids[0]
        pos, wrap = drv.next_avail, drv.avail_wrap
        first = None
        for addr, ln, fl in descs:
            at = rm.desc_addr(self.lay.desc, pos)
            flags = rm.mark_available(fl, wrap)
            pk.PDesc(addr, ln, ident, flags if first is not None else 0).write(self.tee, at)
            if first is None:
                first = (at, flags)
            pos, wrap = rm.packed_advance(pos, wrap, n)
        assert first is not None
        write_le16(self.tee, first[0] + 14, first[1])
        self.drv = attrs.evolve(drv, next_avail=pos, avail_wrap=wrap, free_ids=drv.free_ids[1:],
                                inflight=(*drv.inflight, (ident, len(descs))),
                                slots_free=drv.slots_free - len(descs))

    # hostile driver (2.8.7, 2.8.17, 2.8.19): hostile runs only

    @_hostile
    def hostile_desc(self, data: st.DataObject) -> None:
        """One adversarial slot: NEXT into a slot not made available, a bad buffer, or an
        indirect table that is really an ordinary buffer."""
        self._slots([(data.draw(buf_addr), data.draw(bad_len), data.draw(st.integers(0, 7)))])

    @_hostile
    def hostile_indirect_in_list(self, data: st.DataObject) -> None:
        """An indirect descriptor after a direct one in the same list (2.8.19)."""
        self._slots([(data.draw(buf_addr), data.draw(bad_len), sp.VIRTQ_DESC_F_NEXT),
                     (data.draw(table_addr), data.draw(table_len), sp.VIRTQ_DESC_F_INDIRECT)])

    @_hostile
    def hostile_endless(self, data: st.DataObject) -> None:
        """Every slot available and flagged NEXT: a list longer than the ring (2.8.17)."""
        flags = sp.VIRTQ_DESC_F_NEXT | (sp.VIRTQ_DESC_F_WRITE if data.draw(st.booleans()) else 0)
        self._slots([(HOSTILE + 8 * k, 8, flags) for k in range(self.lay.size)])

    @_hostile
    def hostile_indirect(self, data: st.DataObject) -> None:
        """An indirect table: empty, ragged, outside memory, NEXT-flagged, the ring itself,
        or holding entries with any flags (only WRITE counts inside, 2.8.7)."""
        taddr, tlen = data.draw(table_addr), data.draw(table_len)
        if taddr == HTABLE:
            entries = data.draw(st.lists(st.tuples(buf_addr, bad_len, st.integers(0, 7)),
                                         max_size=4))
            for k, (addr, n, flags) in enumerate(entries):
                pk.PDesc(addr, n, 0, flags).write(self.tee, HTABLE + 16 * k)
        flags = sp.VIRTQ_DESC_F_INDIRECT | (sp.VIRTQ_DESC_F_NEXT if data.draw(st.booleans())
                                            else 0)
        self._slots([(taddr, tlen, flags)])

    @_hostile
    def hostile_random_bytes(self, data: st.DataObject) -> None:
        """Random bytes in a slot made available (the address kept off the rings)."""
        raw = data.draw(st.binary(min_size=14, max_size=14))
        extra = data.draw(st.integers(0, 0xFFFF))
        addr = int.from_bytes(raw[:8], "little")
        if addr < MEM:
            addr = HOSTILE + addr % 0x1000
        ln = int.from_bytes(raw[8:12], "little")
        self._slots([(addr, ln, extra & ~(1 << rm.AVAIL_BIT | 1 << rm.USED_BIT))])

    # event suppression structures, both ways (2.8.10, 2.8.14)

    @rule(mode=st.sampled_from([2, 0, 1, 3]), ahead=st.integers(-2, MAX_SIZE),
          wrap=st.booleans(), off=st.integers(0, 0x7FFF))
    def driver_events(self, mode: int, ahead: int, wrap: bool, off: int) -> None:
        if ahead >= 0:
            off, wrap = rm.packed_advance(self.q.next_used, bool(self.q.used_wrap),
                                          self.lay.size, ahead % self.lay.size)
        pk.driver_set_event(self.tee, self.drv, mode, off, wrap)

    @rule(mode=st.integers(0, 3), off=st.integers(0, MAX_SIZE), wrap=st.booleans())
    def device_events(self, mode: int, off: int, wrap: bool) -> None:
        pk.device_set_event(self.mem, self.dev, mode, off, wrap)
        self.q.set_event(mode, off, wrap)
        self._same_memory()

    # the kick

    def _used_final(self, done: list[tuple[int, bool]], served: int) -> None:
        """At each serve: a slot shows as used only once its buffer was served, and then
        with its final len and id."""
        for j, (pos, wrap) in enumerate(done):
            at = rm.desc_addr(self.lay.desc, pos)
            if not rm.is_used(read_le16(self.ref, at + 14), wrap):
                continue
            if j >= served:
                raise Divergence(f"slot {pos} marked used before its buffer was served")
            self._same(f"used descriptor at {at:#x} once marked", self.mem.read(at + 8, 8),
                       self.ref.read(at + 8, 8))

    @rule()
    def kick(self) -> None:
        self.dev, irq, done = spec_kick_packed(self.mem, self.dev, self.sdev)
        watch = _Watch(self.rdev, lambda k: self._used_final(done, k))
        rirq = self._run_ref(lambda: self.q.process(watch, 0))
        q = self.q
        self._same("served requests", self.sdev.log, self.rdev.log)
        self._same_memory()
        self._same("stopped (DEVICE_NEEDS_RESET)", self.dev.broken, q.broken)
        self._same("notification", irq, rirq)
        self._same("avail position", (self.dev.next_avail, self.dev.avail_wrap),
                   (q.next_avail, bool(q.avail_wrap)))
        self._same("used position", (self.dev.next_used, self.dev.used_wrap),
                   (q.next_used, bool(q.used_wrap)))
        if not self.lost:
            try:
                self.drv, _ = pk.driver_collect(self.tee, self.drv)
            except DeviceMisbehaved:
                self.lost = True


TestSplitDiff = SplitDiff.TestCase
TestPackedDiff = PackedDiff.TestCase


# --- the ready() contract -------------------------------------------------------------------


def _split_queue(mem: ByteMemory, size: int, feats: RingFeatures
                 ) -> tuple[sp.SplitLayout, sp.SplitDriver, SplitQueue]:
    lay = sp.SplitLayout.contiguous(RING, size)
    drv = sp.driver_init(mem, lay, feats, scratch=SCRATCH)
    return lay, drv, SplitQueue.over(mem.buf, size, lay.desc, lay.avail, lay.used,
                                     feats.to_bits())


@pytest.mark.parametrize("ring", ["split", "packed"])
def test_not_ready_leaves_buffers_in_the_ring_and_serves_them_later(ring: str) -> None:
    """A device with nothing to deliver leaves buffers untouched (device.py's contract)."""
    mem, dev = ByteMemory(MEM), Checksum()
    feats = RingFeatures(event_idx=True, packed=ring == "packed")
    if ring == "split":
        _, drv, q = _split_queue(mem, 4, feats)
        for h in range(3):
            drv, _ = sp.driver_add(mem, drv, [(BUF + 0x400 * h, 32, True)])
        drv = sp.driver_publish(mem, drv)

        def q_pos() -> object:
            return q.last_avail, q.used_idx
    else:
        play = pk.PackedLayout.contiguous(RING, 4)
        pdrv = pk.driver_init(mem, play, feats, scratch=SCRATCH)
        for h in range(3):
            pdrv, _ = pk.driver_add(mem, pdrv, [(BUF + 0x400 * h, 32, True)])
        q = PackedQueue.over(mem.buf, 4, play.desc, play.driver, play.device, feats.to_bits())

        def q_pos() -> object:
            return q.next_avail, q.next_used
    dev.budget = 0
    before, pos = mem.snapshot(), q_pos()
    assert q.process(dev, 0) is False
    assert dev.log == [] and q_pos() == pos and not q.broken
    if ring == "packed":
        assert mem.snapshot() == before
    dev.budget = 2  # two now, the third later
    assert q.process(dev, 0) is True
    assert len(dev.log) == 2 and not q.broken
    dev.budget = None
    q.process(dev, 0)
    assert len(dev.log) == 3
    if ring == "split":
        drv, got = sp.driver_collect(mem, drv)
        assert [h for h, _ in got] == [0, 1, 2] and all(n == 32 for _, n in got[1:])
    else:
        pdrv, got = pk.driver_collect(mem, pdrv)
        assert [i for i, _ in got] == [0, 1, 2]


# --- virtio-blk over both rings, judged by the spec's block model ---------------------------

CAP = 4  # sectors
blk_request = st.one_of(
    st.tuples(st.just(B.T_IN), st.integers(0, CAP + 1), st.integers(0, 2), st.booleans()),
    st.tuples(st.just(B.T_OUT), st.integers(0, CAP + 1), st.integers(0, 2), st.booleans()),
    st.tuples(st.sampled_from([B.T_FLUSH, B.T_GET_ID, 99, 15]), st.integers(0, CAP),
              st.integers(0, 30), st.booleans()),
    st.tuples(st.just(B.T_WRITE_ZEROES), st.integers(0, CAP), st.integers(1, 2),
              st.sampled_from([0, 1, 2])),
)


class SpecBlk:
    """A :class:`Device` whose replies are the spec's conforming block device
    (``block.reference_device``) encoded as the reference lays them out: data, zero
    padding, status last (5.2.6)."""

    device_id = 2

    def __init__(self, sectors: int) -> None:
        self.features = blk_features()
        self.disk = attrs.evolve(B.Disk.blank(sectors), device_id=b"pvspec-ref-blk")

    def config(self) -> bytes:
        return b""

    def ready(self, queue: int) -> bool:
        return True

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        if not in_len:
            return b""
        if len(out) < 16:
            status, data = B.S_IOERR, b""
        else:
            typ, _, sector = B.decode_header(out)
            o = B.reference_device(self.disk, B.Request(typ, sector, out[16:], in_len - 1),
                                   self.features)
            self.disk = o.disk or self.disk
            status, data = o.status, o.written_in
        return data[: in_len - 1].ljust(in_len - 1, b"\0") + bytes((status,))


def _blk_bufs(mem: Tee, k: int, req: tuple[int, int, int, int]) -> list[tuple[int, int, bool]]:
    typ, sector, n, extra = req
    base = BUF + 0x1000 * k
    if typ == B.T_OUT:
        data = bytes([k + 1]) * (n * B.SECTOR + int(extra))
    elif typ == B.T_WRITE_ZEROES:
        data = B.encode_segment(sector, n, flags=extra)
        sector = 0
    else:
        data = b""
    if typ == B.T_IN:
        in_len = n * B.SECTOR + int(extra) + 1
    elif typ in (B.T_GET_ID, 99, 15):
        in_len = n
    else:
        in_len = 1
    mem.write(base, B.HEADER.pack(typ, 0, sector) + data)
    return [(base, 16 + len(data), False), (base + 0x800, in_len, True)]


@pytest.mark.parametrize("ring", ["split", "packed"])
@given(reqs=st.lists(blk_request, min_size=1, max_size=6))
def test_blk_device_matches_the_spec_block_model(ring: str,
                                                 reqs: list[tuple[int, int, int, int]]) -> None:
    """BlkDevice on a reference queue against the spec ring model serving the spec's block
    device: same ring bytes, same disk (VIRTIO 1.3 5.2.6)."""
    spec_mem, ref_mem = ByteMemory(MEM), ByteMemory(MEM)
    tee = Tee(spec_mem, ref_mem)
    sdev, rdev = SpecBlk(CAP), BlkDevice(bytearray(CAP * B.SECTOR))
    feats = RingFeatures.from_bits(blk_features() | (1 << rm.F_RING_PACKED if ring == "packed"
                                                     else 0))
    if ring == "split":
        lay = sp.SplitLayout.contiguous(RING, 2 * MAX_SIZE)
        drv = sp.driver_init(tee, lay, feats, scratch=SCRATCH)
        for k, req in enumerate(reqs):
            drv, _ = sp.driver_add(tee, drv, _blk_bufs(tee, k, req))
        sp.driver_publish(tee, drv)
        sq = SplitQueue.over(ref_mem.buf, lay.size, lay.desc, lay.avail, lay.used,
                             feats.to_bits())
        _, irq = spec_kick_split(spec_mem, sp.device_init(lay, feats), sdev)
        rirq = sq.process(rdev, 0)
    else:
        play = pk.PackedLayout.contiguous(RING, MAX_SIZE * 2)
        pdrv = pk.driver_init(tee, play, feats, scratch=SCRATCH)
        for k, req in enumerate(reqs):
            pdrv, _ = pk.driver_add(tee, pdrv, _blk_bufs(tee, k, req))
        pq = PackedQueue.over(ref_mem.buf, play.size, play.desc, play.driver, play.device,
                              feats.to_bits())
        _, irq, _ = spec_kick_packed(spec_mem, pk.device_init(play, feats), sdev)
        rirq = pq.process(rdev, 0)
    assert spec_mem.buf == ref_mem.buf, _first_diff(spec_mem.buf, ref_mem.buf)
    assert bytes(rdev.disk) == sdev.disk.data
    assert irq == rirq


def test_rings_never_import_spec() -> None:
    """reference_impl stays an independent reading: no spec module at run time."""
    import subprocess
    import sys

    code = ("import sys, reference_impl.virtio, reference_impl.virtio.split, "
            "reference_impl.virtio.packed; "
            "sys.exit(any(m == 'spec' or m.startswith('spec.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("ring", ["split", "packed"])
def test_chain_of_4_gib_stops_the_queue(ring: str) -> None:
    """LEN_OVERFLOW (2.7.5.2): lengths adding up to 2^32 are fatal, as in walk_chain.  No
    64 KiB memory holds such buffers, so this one uses a memory that accepts any span."""
    mem, dev = ByteMemory(MEM), Checksum()
    half = 1 << 31
    anywhere = lambda addr, n: memoryview(bytearray(1))  # noqa: E731
    if ring == "split":
        lay = sp.SplitLayout.contiguous(RING, 4)
        drv = sp.driver_init(mem, lay, RingFeatures(), scratch=SCRATCH)
        drv, _ = sp.driver_add(mem, drv, [(1 << 40, half, False), (1 << 41, half, True)])
        sp.driver_publish(mem, drv)
        mv = memoryview(mem.buf)
        q: SplitQueue | PackedQueue = SplitQueue(4, mv[lay.desc:], mv[lay.avail:],
                                                 mv[lay.used:], anywhere, 0)
    else:
        play = pk.PackedLayout.contiguous(RING, 4)
        pdrv = pk.driver_init(mem, play, RingFeatures(packed=True), scratch=SCRATCH)
        pk.driver_add(mem, pdrv, [(1 << 40, half, False), (1 << 41, half, True)])
        mv = memoryview(mem.buf)
        q = PackedQueue(4, mv[play.desc:], mv[play.driver:], mv[play.device:], anywhere, 0)
    assert q.process(dev, 0) is False
    assert q.broken and q.fault is not None and "4 GiB" in q.fault and dev.log == []
