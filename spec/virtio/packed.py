"""Packed virtqueues (VIRTIO 1.3 2.8) over byte-level guest memory.

One descriptor ring shared by both sides; ownership of a slot is told by the AVAIL and
USED flag bits compared with each side's wrap counter (2.8.1).  As in
:mod:`spec.virtio.split`, lists are decoded into :class:`~spec.virtio.split.Chain` values
with typed faults, and a model driver and device exchange buffers through real bytes.
The flag and wrap logic is :mod:`spec.virtio.ring_math`, the code the proofs cover.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from spec.virtio import ring_math as rm
from spec.virtio.memory import (
    GuestMemory,
    OutOfRange,
    Span,
    read_le16,
    read_le32,
    read_le64,
    write_le16,
    write_le32,
    write_le64,
)
from spec.virtio.ring_math import RingFeatures
from spec.virtio.split import (
    LEN_LIMIT,
    TOLERABLE,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    Chain,
    Fault,
    Segment,
    in_memory,
)

PACKED_TOLERABLE: frozenset[Fault] = frozenset()
PACKED_DEVICE_BUGS = frozenset({
    "len-too-big",
    "write-readable",
    "no-notify-on-event",
    "ignore-avail",  # takes the next slot whatever its AVAIL/USED bits say
    "flags-first",  # publishes the USED flags before writing id/len
    "wrap-not-flipped",  # never flips the device wrap counter
})


@attrs.frozen
class PackedLayout:
    """Descriptor ring, driver area (driver event suppression) and device area (2.8.10.1)."""

    size: int
    desc: int
    driver: int
    device: int

    @property
    def desc_span(self) -> Span:
        return Span(self.desc, rm.desc_table_size(self.size))

    @property
    def driver_span(self) -> Span:
        return Span(self.driver, rm.EVENT_SIZE)

    @property
    def device_span(self) -> Span:
        return Span(self.device, rm.EVENT_SIZE)

    def faults(self) -> tuple[Fault, ...]:
        out = []
        if not rm.valid_packed_size(self.size):
            out.append(Fault.QUEUE_SIZE)
        if not (rm.aligned(self.desc, rm.DESC_ALIGN) and rm.aligned(self.driver, rm.EVENT_ALIGN)
                and rm.aligned(self.device, rm.EVENT_ALIGN)):
            out.append(Fault.MISALIGNED)
        spans = [self.desc_span, self.driver_span, self.device_span]
        if any(a.overlaps(b) for i, a in enumerate(spans) for b in spans[i + 1:]):
            out.append(Fault.OVERLAP)
        return tuple(out)

    @classmethod
    def contiguous(cls, base: int, size: int) -> PackedLayout:
        drv = rm.align_up(base + rm.desc_table_size(size), rm.EVENT_ALIGN)
        return cls(size, base, drv, drv + rm.EVENT_SIZE)


@attrs.frozen
class PDesc:
    addr: int
    len: int
    id: int
    flags: int

    @classmethod
    def read(cls, mem: GuestMemory, at: int) -> PDesc:
        return cls(read_le64(mem, at), read_le32(mem, at + 8), read_le16(mem, at + 12),
                   read_le16(mem, at + 14))

    def write(self, mem: GuestMemory, at: int) -> None:
        """Write the body, then the flags: the flags word is what hands the slot over."""
        write_le64(mem, at, self.addr)
        write_le32(mem, at + 8, self.len)
        write_le16(mem, at + 12, self.id)
        write_le16(mem, at + 14, self.flags)


def walk_list(
    mem: GuestMemory, layout: PackedLayout, idx: int, wrap: bool, features: RingFeatures,
    bugs: frozenset[str] = frozenset(),
) -> Chain | None:
    """Decode the list whose first slot is ``idx`` (phase ``wrap``), or None if that slot
    is not available.  Never reads more than ``size`` slots (2.8.17)."""
    n = layout.size
    at = rm.desc_addr(layout.desc, idx)
    first = PDesc.read(mem, at)
    if not rm.is_available(first.flags, wrap) and "ignore-avail" not in bugs:
        return None
    segs: list[Segment] = []
    descs: list[Span] = []
    tables: list[Span] = []
    faults: list[Fault] = []
    total = 0
    seen_write = False
    slots = 0

    def done(ident: int, extra: Fault | None = None) -> Chain:
        if extra is not None:
            faults.append(extra)
        return Chain(ident, tuple(segs), tuple(descs), tuple(tables), tuple(faults), slots)

    def add(addr: int, length: int, writable: bool) -> Fault | None:
        nonlocal total, seen_write
        if not in_memory(mem, addr, length):
            return Fault.BAD_ADDRESS
        if seen_write and not writable and Fault.READ_AFTER_WRITE not in faults:
            faults.append(Fault.READ_AFTER_WRITE)
        seen_write = seen_write or writable
        total += length
        if total >= LEN_LIMIT:
            return Fault.LEN_OVERFLOW
        segs.append(Segment(addr, length, writable))
        return None

    d, pos, w = first, idx, wrap
    while True:
        descs.append(Span(rm.desc_addr(layout.desc, pos), rm.DESC_SIZE))
        slots += 1
        if d.flags & VIRTQ_DESC_F_INDIRECT:
            if slots > 1 or d.flags & VIRTQ_DESC_F_NEXT:
                return done(d.id, Fault.PACKED_INDIRECT_IN_LIST)
            if not features.indirect:
                faults.append(Fault.INDIRECT_NOT_NEGOTIATED)
            if d.len == 0 or d.len % rm.DESC_SIZE:
                return done(d.id, Fault.INDIRECT_BAD_LEN)
            if not in_memory(mem, d.addr, d.len):
                return done(d.id, Fault.BAD_ADDRESS)
            tables.append(Span(d.addr, d.len))
            if d.len // rm.DESC_SIZE > n:
                faults.append(Fault.CHAIN_TOO_LONG)
            for k in range(d.len // rm.DESC_SIZE):
                try:
                    e = PDesc.read(mem, d.addr + rm.DESC_SIZE * k)
                except OutOfRange:
                    return done(d.id, Fault.BAD_ADDRESS)
                # 2.8.7: only WRITE means anything inside a table; the rest is ignored
                bad = add(e.addr, e.len, bool(e.flags & VIRTQ_DESC_F_WRITE))
                if bad:
                    return done(d.id, bad)
            return done(d.id)
        bad = add(d.addr, d.len, bool(d.flags & VIRTQ_DESC_F_WRITE))
        if bad:
            return done(d.id, bad)
        if not d.flags & VIRTQ_DESC_F_NEXT:
            return done(d.id)
        if slots >= n:
            return done(d.id, Fault.PACKED_LOOP)
        pos, w = rm.packed_advance(pos, w, n)
        d = PDesc.read(mem, rm.desc_addr(layout.desc, pos))
        if not rm.is_available(d.flags, w) and "ignore-avail" not in bugs:
            return done(d.id, Fault.PACKED_INCOMPLETE)


def scan_available(
    mem: GuestMemory, layout: PackedLayout, idx: int, wrap: bool, features: RingFeatures,
    bugs: frozenset[str] = frozenset(), limit: int | None = None,
) -> tuple[list[Chain], tuple[int, bool]]:
    """Every list made available from ``(idx, wrap)`` on, in ring order (2.8.12).

    Stops after a fatal fault (its chain included) and after at most ``size`` slots.
    """
    n = layout.size
    out: list[Chain] = []
    slots = 0
    while slots < n and (limit is None or len(out) < limit):
        chain = walk_list(mem, layout, idx, wrap, features, bugs)
        if chain is None:
            break
        if slots + chain.ndesc > n:
            break
        out.append(chain)
        slots += chain.ndesc
        idx, wrap = rm.packed_advance(idx, wrap, n, chain.ndesc)
        if not chain.processable(TOLERABLE | PACKED_TOLERABLE):
            break
    return out, (idx, wrap)


def read_event(mem: GuestMemory, at: int) -> tuple[int, int]:
    """(desc word: off | wrap << 15, flags word) of an event suppression structure."""
    return read_le16(mem, at), read_le16(mem, at + 2)


def write_event(mem: GuestMemory, at: int, mode: int, off: int = 0, wrap: bool = False) -> None:
    write_le16(mem, at, rm.encode_event(off, wrap))
    write_le16(mem, at + 2, mode)


def must_notify(mem: GuestMemory, at: int, pos: int, wrap: bool, added: int, n: int,
                event_idx: bool) -> bool:
    """The decision both sides make after handing over ``added`` slots (2.8.10)."""
    if added == 0:
        return False
    desc_word, flags_word = read_event(mem, at)
    mode = rm.event_flags(flags_word)
    if mode == rm.EVENT_FLAGS_DISABLE:
        return False
    if mode == rm.EVENT_FLAGS_DESC and event_idx:
        return bool(rm.packed_need_event(desc_word, pos, wrap, added, n))
    return True


# --- model driver (2.8.21) -------------------------------------------------------------------


@attrs.frozen
class PackedDriver:
    layout: PackedLayout
    features: RingFeatures
    next_avail: int = 0
    avail_wrap: bool = True
    next_used: int = 0
    used_wrap: bool = True
    free_ids: tuple[int, ...] = ()
    inflight: tuple[tuple[int, int], ...] = ()  # (buffer id, slots) in ring order
    added: int = 0  # slots made available since the last notification decision
    slots_free: int = 0
    scratch: int = 0
    max_indirect: int = 8


def driver_init(mem: GuestMemory, layout: PackedLayout, features: RingFeatures,
                scratch: int = 0, max_indirect: int = 8) -> PackedDriver:
    """The ring is zero-initialised (2.8.13); both wrap counters start at 1 (2.8.1)."""
    for span in (layout.desc_span, layout.driver_span, layout.device_span):
        mem.write(span.addr, bytes(span.n))
    return PackedDriver(layout, features, free_ids=tuple(range(layout.size)),
                        slots_free=layout.size, scratch=scratch, max_indirect=max_indirect)


def driver_can_add(drv: PackedDriver, nbufs: int, indirect: bool) -> bool:
    need = 1 if indirect else nbufs
    return (bool(drv.free_ids) and nbufs >= 1 and drv.slots_free >= need
            and (not indirect or nbufs <= drv.max_indirect))


def driver_add(mem: GuestMemory, drv: PackedDriver, bufs: Sequence[tuple[int, int, bool]],
               indirect: bool = False) -> tuple[PackedDriver, int]:
    """Write the list, id in its last slot, and flip the first slot's flags last (2.8.21.1)."""
    assert driver_can_add(drv, len(bufs), indirect)
    lay, n = drv.layout, drv.layout.size
    ident, free_ids = drv.free_ids[0], drv.free_ids[1:]
    if indirect:
        table = drv.scratch + ident * rm.DESC_SIZE * drv.max_indirect
        for k, (addr, ln, w) in enumerate(bufs):
            PDesc(addr, ln, 0, VIRTQ_DESC_F_WRITE if w else 0).write(mem, table + 16 * k)
        entries = [(table, rm.DESC_SIZE * len(bufs), VIRTQ_DESC_F_INDIRECT)]
    else:
        entries = [(a, ln, (VIRTQ_DESC_F_WRITE if w else 0)) for a, ln, w in bufs]
    pos, wrap = drv.next_avail, drv.avail_wrap
    first_at, first_flags = 0, 0
    for k, (addr, ln, fl) in enumerate(entries):
        last = k == len(entries) - 1
        flags = rm.mark_available(fl | (0 if last else VIRTQ_DESC_F_NEXT), wrap)
        at = rm.desc_addr(lay.desc, pos)
        if k == 0:
            first_at, first_flags = at, flags
            # body only: the old flags keep the slot unavailable until the list is complete
            write_le64(mem, at, addr)
            write_le32(mem, at + 8, ln)
            write_le16(mem, at + 12, ident if last else 0)
        else:
            PDesc(addr, ln, ident if last else 0, flags).write(mem, at)
        pos, wrap = rm.packed_advance(pos, wrap, n)
    write_le16(mem, first_at + 14, first_flags)
    return attrs.evolve(
        drv, next_avail=pos, avail_wrap=wrap, free_ids=free_ids,
        inflight=(*drv.inflight, (ident, len(entries))), added=drv.added + len(entries),
        slots_free=drv.slots_free - len(entries)), ident


def driver_must_kick(mem: GuestMemory, drv: PackedDriver) -> tuple[PackedDriver, bool]:
    need = must_notify(mem, drv.layout.device, drv.next_avail, drv.avail_wrap, drv.added,
                       drv.layout.size, drv.features.event_idx)
    return attrs.evolve(drv, added=0), need


def driver_set_event(mem: GuestMemory, drv: PackedDriver, mode: int, off: int = 0,
                     wrap: bool = False) -> None:
    write_event(mem, drv.layout.driver, mode, off, wrap)


def driver_collect(mem: GuestMemory, drv: PackedDriver
                   ) -> tuple[PackedDriver, list[tuple[int, int | None]]]:
    """Take used buffers back in ring order, skipping each list's slots (2.8.6, 2.8.8)."""
    from spec.virtio.split import DeviceMisbehaved

    lay, n = drv.layout, drv.layout.size
    pos, wrap = drv.next_used, drv.used_wrap
    inflight, free_ids, slots_free = list(drv.inflight), list(drv.free_ids), drv.slots_free
    out: list[tuple[int, int | None]] = []
    while inflight:
        d = PDesc.read(mem, rm.desc_addr(lay.desc, pos))
        if not rm.is_used(d.flags, wrap):
            break
        ids = [i for i, _ in inflight]
        if d.id not in ids:
            raise DeviceMisbehaved(f"used id {d.id} is not in flight")
        k = ids.index(d.id)
        batch = inflight[: k + 1] if drv.features.in_order else [inflight[k]]
        length = d.len if d.flags & VIRTQ_DESC_F_WRITE else 0
        step = 0
        for j, (i, slots) in enumerate(batch):
            out.append((i, length if j == len(batch) - 1 else None))
            inflight.remove((i, slots))
            free_ids.append(i)
            step += slots
        slots_free += step
        pos, wrap = rm.packed_advance(pos, wrap, n, step)
    return attrs.evolve(drv, next_used=pos, used_wrap=wrap, inflight=tuple(inflight),
                        free_ids=tuple(free_ids), slots_free=slots_free), out


# --- model device (2.8.12, 2.8.15, 2.8.18) ---------------------------------------------------


@attrs.frozen
class PackedDevice:
    layout: PackedLayout
    features: RingFeatures
    next_avail: int = 0
    avail_wrap: bool = True
    next_used: int = 0
    used_wrap: bool = True
    inflight: tuple[Chain, ...] = ()
    used_since: int = 0  # slots marked used since the last notification decision
    broken: bool = False
    reset: bool = False
    bugs: frozenset[str] = frozenset()


def device_init(layout: PackedLayout, features: RingFeatures,
                bugs: frozenset[str] = frozenset()) -> PackedDevice:
    assert bugs <= PACKED_DEVICE_BUGS, bugs - PACKED_DEVICE_BUGS
    return PackedDevice(layout, features, bugs=bugs)


def device_poll(mem: GuestMemory, dev: PackedDevice) -> tuple[PackedDevice, list[Chain]]:
    """Take available lists in ring order; a fatal fault leaves the device broken."""
    if dev.broken or dev.reset:
        return dev, []
    limit = 1 if "ignore-avail" in dev.bugs else None
    chains, (idx, wrap) = scan_available(mem, dev.layout, dev.next_avail, dev.avail_wrap,
                                         dev.features, dev.bugs, limit)
    if chains and not chains[-1].processable(TOLERABLE | PACKED_TOLERABLE):
        return attrs.evolve(dev, broken=True, inflight=(*dev.inflight, *chains[:-1]),
                            next_avail=idx, avail_wrap=wrap), chains[:-1]
    return attrs.evolve(dev, next_avail=idx, avail_wrap=wrap,
                        inflight=(*dev.inflight, *chains)), chains


def device_complete(mem: GuestMemory, dev: PackedDevice, replies: Sequence[tuple[int, bytes]],
                    batch: bool = False) -> PackedDevice:
    """Write replies, then one used descriptor per buffer (or per IN_ORDER batch)."""
    lay, n, bugs = dev.layout, dev.layout.size, dev.bugs
    left = list(dev.inflight)
    done: list[tuple[Chain, int]] = []
    for ident, data in replies:
        chain = left.pop([c.head for c in left].index(ident))
        segs = chain.segments if "write-readable" in bugs else chain.writable
        written = 0
        for s in segs:
            if written >= len(data):
                break  # an empty writable descriptor is passed over, as on split rings
            part = data[written : written + s.len]
            if part:
                mem.write(s.addr, part)
            written += len(part)
        done.append((chain, chain.writable_len + 1 if "len-too-big" in bugs else written))
    groups = [done] if batch and done else [[x] for x in done]
    pos, wrap, since = dev.next_used, dev.used_wrap, dev.used_since
    for group in groups:
        chain, length = group[-1]
        at = rm.desc_addr(lay.desc, pos)
        flags = rm.mark_used(VIRTQ_DESC_F_WRITE if length else 0, wrap)
        if "flags-first" in bugs:
            write_le16(mem, at + 14, flags)
            write_le32(mem, at + 8, length)
            write_le16(mem, at + 12, chain.head)
        else:
            write_le32(mem, at + 8, length)
            write_le16(mem, at + 12, chain.head)
            write_le16(mem, at + 14, flags)
        step = sum(c.ndesc for c, _ in group)
        since += step
        npos, nwrap = rm.packed_advance(pos, wrap, n, step)
        pos, wrap = npos, (wrap if "wrap-not-flipped" in bugs else nwrap)
    return attrs.evolve(dev, next_used=pos, used_wrap=wrap, inflight=tuple(left),
                        used_since=since)


def device_must_interrupt(mem: GuestMemory, dev: PackedDevice) -> tuple[PackedDevice, bool]:
    need = must_notify(mem, dev.layout.driver, dev.next_used, dev.used_wrap, dev.used_since,
                       dev.layout.size, dev.features.event_idx)
    if "no-notify-on-event" in dev.bugs:
        _, flags_word = read_event(mem, dev.layout.driver)
        need = need and rm.event_flags(flags_word) != rm.EVENT_FLAGS_DESC
    return attrs.evolve(dev, used_since=0), need


def device_set_event(mem: GuestMemory, dev: PackedDevice, mode: int, off: int = 0,
                     wrap: bool = False) -> None:
    write_event(mem, dev.layout.device, mode, off, wrap)


def device_reset_queue(dev: PackedDevice) -> PackedDevice:
    """RING_RESET (2.6.1.1.1): back to the default state, quiet until re-enabled."""
    return PackedDevice(dev.layout, dev.features, reset=True, bugs=dev.bugs)
