"""The driver judge: every ring operation a virtio-blk or virtio-net *driver* makes, judged
by the spec.

pvspec's vhost-user back-end (:mod:`reference_impl.virtio.server`) shows a
:class:`DriverJudge` what it sees (its ``RingObserver`` hook): the features set, each
queue's layout, every kick and every served batch.  The judge then reads the driver's
work from guest memory and holds it to the driver-side rules that a back-end can observe:

* features (2.2.1, 6.1): what the driver accepted, as QEMU relays it in SET_FEATURES;
* ring setup (2.7.1 alignment, 2.7.10.1 used.flags zeroed);
* at each kick, every head published since the last look: avail.idx moves forward by at
  most the queue size (2.7.6.1), avail.flags is legal (2.7.7.1), and each chain is walked
  with :func:`spec.virtio.split.walk_chain`, whose faults are driver violations (2.7.4.2,
  2.7.5.x); its bytes are decoded as a blk request and judged by 5.2.6.1 (capacity,
  512-byte multiples, flush sector, GET_ID length, discard segments), or for net as a
  receive buffer (5.1.6.3.1: device-writable, large enough) or a packet to send (5.1.6.2.1:
  its virtio_net_hdr);
* when the queue stops, that no head was left published without the notification
  2.7.10.1 calls for (not on a net receive queue, whose buffers wait for packets);
* the device side, where cheap (our back-end under a real driver's load): used ids name
  heads in flight, and a read returns what a model of the disk says it holds (5.2.6).

Callbacks run on the back-end's thread and never raise: an exception inside the judge is
kept as a suite defect (:attr:`DriverJudge.defects`) rather than killing the back-end.
A head the back-end took before the judge had looked (the driver published it between
the judge's look and the back-end's) is judged right after it was served (``late``):
the driver cannot have reused it before seeing it used, and that takes a guest far longer.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs

from spec.virtio import features as F
from spec.virtio import packed as pk
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.devices import block as blk
from spec.virtio.devices import net
from spec.virtio.memory import OutOfRange
from spec.virtio.ring_math import RingFeatures
from spec.virtio.verdict import Violation

__all__ = ["DRIVER_RULES", "FAULT_RULE", "DriverJudge", "GuestReader", "Tally"]

ReadGuest = Callable[[int, int], "bytes | None"]

# Driver rules the judge reads from VIRTIO's descriptive text rather than a Driver
# Requirements statement (the registry holds only the latter): id -> (section, text).
DRIVER_RULES: dict[str, tuple[str, str]] = {
    "PVSPEC-DRV-HEAD-IN-TABLE": ("2.7.6", "an available ring entry names a descriptor of "
                                 "the table (an index below the queue size)"),
    "PVSPEC-DRV-NEXT-IN-TABLE": ("2.7.5", "a chained descriptor's next names an entry of "
                                 "its table"),
    "PVSPEC-DRV-BUFFER-IN-MEMORY": ("2.7.5", "descriptors, indirect tables and buffers lie "
                                    "in the guest memory shared with the device"),
    "PVSPEC-DRV-INDIRECT-WHOLE": ("2.7.5.3", "an indirect table's length is a non-zero "
                                  "multiple of the 16-byte descriptor"),
    "PVSPEC-BLK-REQUEST-LAYOUT": ("5.2.6", "a blk request is the 16-byte header (type, "
                                  "reserved, sector) device-readable first, the status "
                                  "byte device-writable last"),
    "PVSPEC-NET-RX-WRITABLE": ("5.1.6.3", "a receive buffer is device-writable (the device "
                               "writes the header and the packet into it)"),
    "PVSPEC-NET-TX-LAYOUT": ("5.1.6.2", "a packet to send is device-readable: the "
                             "virtio_net_hdr, then the Ethernet frame"),
}

# walk_chain's fault vocabulary -> the requirement a driver breaks with it
FAULT_RULE: dict[sp.Fault, str] = {
    sp.Fault.READ_AFTER_WRITE: "VIRTIO-2.7.4-DRV-WRITABLE-AFTER-READABLE",
    sp.Fault.CHAIN_TOO_LONG: "VIRTIO-2.7.5.3-DRV-CHAIN-LE-QSIZE",
    sp.Fault.LOOP: "VIRTIO-2.7.5-DRV-CHAIN-LEN-4G",
    sp.Fault.LEN_OVERFLOW: "VIRTIO-2.7.5-DRV-CHAIN-LEN-4G",
    sp.Fault.INDIRECT_NOT_NEGOTIATED: "VIRTIO-2.7.5.3-DRV-INDIRECT-NEGOTIATED",
    sp.Fault.NESTED_INDIRECT: "VIRTIO-2.7.5.3-DRV-NO-NESTED-INDIRECT",
    sp.Fault.INDIRECT_WITH_NEXT: "VIRTIO-2.7.5.3-DRV-NO-INDIRECT-NEXT",
    sp.Fault.HEAD_OUT_OF_RANGE: "PVSPEC-DRV-HEAD-IN-TABLE",
    sp.Fault.NEXT_OUT_OF_RANGE: "PVSPEC-DRV-NEXT-IN-TABLE",
    sp.Fault.BAD_ADDRESS: "PVSPEC-DRV-BUFFER-IN-MEMORY",
    sp.Fault.INDIRECT_BAD_LEN: "PVSPEC-DRV-INDIRECT-WHOLE",
    sp.Fault.AVAIL_OVERRUN: "VIRTIO-2.7.6-DRV-NO-DECREMENT",
}
# packed rings (2.8): walk_list's faults -> the requirement a driver breaks with them
PACKED_FAULT_RULE: dict[sp.Fault, str] = {
    sp.Fault.READ_AFTER_WRITE: "VIRTIO-2.8.17-DRV-WRITABLE-AFTER-READABLE",
    sp.Fault.PACKED_LOOP: "VIRTIO-2.8.17-DRV-LIST-LE-QSIZE",
    sp.Fault.PACKED_INCOMPLETE: "VIRTIO-2.8.17-DRV-HEAD-LAST",
    sp.Fault.PACKED_INDIRECT_IN_LIST: "VIRTIO-2.8.19-DRV-NO-INDIRECT-IN-LIST",
    sp.Fault.INDIRECT_NOT_NEGOTIATED: "VIRTIO-2.8.19-DRV-INDIRECT-NEGOTIATED",
    sp.Fault.CHAIN_TOO_LONG: "VIRTIO-2.8.19-DRV-INDIRECT-LE-LIMIT",
    sp.Fault.BAD_ADDRESS: "PVSPEC-DRV-BUFFER-IN-MEMORY",
    sp.Fault.INDIRECT_BAD_LEN: "PVSPEC-DRV-INDIRECT-WHOLE",
}
PACKED_CHAIN_RULES = ("VIRTIO-2.8.17-DRV-WRITABLE-AFTER-READABLE",
                      "VIRTIO-2.8.17-DRV-LIST-LE-QSIZE", "VIRTIO-2.8.17-DRV-HEAD-LAST",
                      "VIRTIO-2.8.19-DRV-NO-INDIRECT-IN-LIST", "PVSPEC-DRV-BUFFER-IN-MEMORY")
PACKED_INDIRECT_RULES = ("VIRTIO-2.8.19-DRV-INDIRECT-NEGOTIATED",
                         "VIRTIO-2.8.19-DRV-INDIRECT-LE-LIMIT", "PVSPEC-DRV-INDIRECT-WHOLE")
# the rules every walked chain gives occasion to judge; the indirect ones only a chain
# that goes through an indirect table
CHAIN_RULES = ("VIRTIO-2.7.4-DRV-WRITABLE-AFTER-READABLE", "VIRTIO-2.7.5.3-DRV-CHAIN-LE-QSIZE",
               "VIRTIO-2.7.5-DRV-CHAIN-LEN-4G", "PVSPEC-DRV-HEAD-IN-TABLE",
               "PVSPEC-DRV-NEXT-IN-TABLE", "PVSPEC-DRV-BUFFER-IN-MEMORY")
INDIRECT_RULES = ("VIRTIO-2.7.5.3-DRV-INDIRECT-NEGOTIATED", "VIRTIO-2.7.5.3-DRV-NO-NESTED-INDIRECT",
                  "VIRTIO-2.7.5.3-DRV-NO-INDIRECT-NEXT", "PVSPEC-DRV-INDIRECT-WHOLE")
_SEG_LIMIT = {blk.T_DISCARD: "max_discard_seg", blk.T_WRITE_ZEROES: "max_write_zeroes_seg",
              blk.T_SECURE_ERASE: "max_secure_erase_seg"}
TYPE_NAMES = {blk.T_IN: "IN", blk.T_OUT: "OUT", blk.T_FLUSH: "FLUSH", blk.T_GET_ID: "GET_ID",
              blk.T_GET_LIFETIME: "GET_LIFETIME", blk.T_DISCARD: "DISCARD",
              blk.T_WRITE_ZEROES: "WRITE_ZEROES", blk.T_SECURE_ERASE: "SECURE_ERASE"}


class GuestReader:
    """:class:`spec.virtio.memory.GuestMemory` over the back-end's ``read(gpa, n)``:
    read-only (a judge never writes guest memory)."""

    def __init__(self, read: ReadGuest) -> None:
        self._read = read

    def read(self, addr: int, n: int) -> bytes:
        data = self._read(addr, n) if addr >= 0 and n >= 0 else None
        if data is None:
            raise OutOfRange(addr, n)
        return data

    def write(self, addr: int, data: bytes) -> None:
        raise PermissionError("the driver judge never writes guest memory")

    def contains(self, addr: int, n: int) -> bool:
        return n >= 0 and addr >= 0 and (n == 0 or self._read(addr, n) is not None)


@attrs.frozen
class Tally:
    """One rule's record: how often it was evaluated, the first violation and its trace."""

    judged: int = 0
    violations: int = 0
    first: Violation | None = None
    trace: tuple[dict[str, Any], ...] = ()
    level: str = "MUST"


@attrs.frozen
class Taken:
    """A head the driver published: its chain and, if it decodes, its blk request."""

    head: int
    chain: sp.Chain
    request: blk.Request | None
    avail_pos: int


@attrs.frozen
class RingState:
    """What the judge knows of one queue: its layout and features, the next available
    index it has not looked at, avail.idx at the last look, the next used index to judge
    and the heads in flight (published, not yet used)."""

    layout: sp.SplitLayout | pk.PackedLayout
    features: RingFeatures
    seen: int
    avail_idx: int
    used: int
    inflight: tuple[Taken, ...] = ()
    # packed rings (2.8): ``seen`` / ``used`` are slots, each with its wrap counter
    wrap: bool = True
    used_wrap: bool = True


@attrs.define
class DriverJudge:
    """The :class:`reference_impl.virtio.server.RingObserver` that judges the driver.

    ``initial``: the disk's contents when the back-end started (the model of the disk the
    device side is judged against).
    """

    initial: bytes
    kind: str = "blk"  # the device: "blk" (one request queue) or "net" (rx 0, tx 1)
    tallies: dict[str, Tally] = attrs.field(factory=dict)
    offered: int = 0
    accepted: int = 0
    cfg: dict[str, int] = attrs.field(factory=dict)
    rings: dict[int, RingState] = attrs.field(factory=dict)
    mem: GuestReader | None = None
    kicks: int = 0
    looks: int = 0  # second looks of the back-end before it goes idle (no notification)
    chains: int = 0
    late: int = 0
    missed: int = 0  # packed lists the back-end took and overwrote before the judge looked
    overtaken: int = 0  # packed used descriptors the driver reused before the judge read them
    completions: int = 0
    requests: dict[str, int] = attrs.field(factory=dict)
    defects: list[str] = attrs.field(factory=list)
    busy: float = 0.0  # seconds spent judging (on the back-end's thread)
    # the disk as the spec's model knows it: the suite's own at first; it forgets what a
    # discard or a failed write leaves unspecified, and learns what a read then shows
    disk: blk.AnyDisk = attrs.field(init=False)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        # sparse over the disk the suite made: a write costs what it touched
        self.disk = blk.LearnedDisk(len(self.initial) // blk.SECTOR, base=self.initial)

    # --- bookkeeping ----------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self.cfg.get("capacity", len(self.initial) // blk.SECTOR))

    @property
    def operations(self) -> int:
        """Judged ring operations: kicks looked at, chains walked, completions checked."""
        return self.kicks + self.chains + self.completions

    def judge(self, rule: str, ok: bool, detail: str = "", side: str = "driver",
              trace: tuple[dict[str, Any], ...] = (), level: str = "MUST") -> None:
        """One evaluation of ``rule``: kept as a count, and the first violation in full."""
        t = self.tallies.get(rule, Tally(level=level))
        if ok:
            self.tallies[rule] = attrs.evolve(t, judged=t.judged + 1)
        else:
            first = t.first or Violation(rule, side, detail)
            self.tallies[rule] = attrs.evolve(t, judged=t.judged + 1, violations=t.violations + 1,
                                              first=first, trace=t.trace or trace)

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        with self.lock:
            t0 = time.perf_counter()
            try:
                fn()
            except Exception:
                self.defects.append(f"{what}: {traceback.format_exc(limit=6)}")
            finally:
                self.busy += time.perf_counter() - t0

    # --- the observer --------------------------------------------------------------------
    def negotiated(self, offered: int, accepted: int, config: bytes) -> None:
        self._guard("negotiated", lambda: self._negotiated(offered, accepted, config))

    def started(self, queue: int, size: int, desc: int, avail: int, used: int,
                read: ReadGuest) -> None:
        self._guard("started", lambda: self._started(queue, size, desc, avail, used, read))

    def kicked(self, queue: int, again: bool = False) -> None:
        self._guard("kicked", lambda: self._kicked(queue, again))

    def served(self, queue: int, last_avail: int, used_idx: int, notify: bool) -> None:
        self._guard("served", lambda: self._served(queue, last_avail, used_idx))

    def stopped(self, queue: int, last_avail: int) -> None:
        self._guard("stopped", lambda: self._stopped(queue, last_avail))

    @property
    def device_id(self) -> int:
        return F.NET if self.kind == "net" else F.BLOCK

    # --- features (2.2.1, 6.1) ---------------------------------------------------------------
    def _negotiated(self, offered: int, accepted: int, config: bytes) -> None:
        self.offered, self.accepted = offered, accepted
        if self.kind == "blk":
            self.cfg = {k: v for k, v in blk.CONFIG.decode(config).items()
                        if isinstance(v, int)}
        trace = ({"op": "SET_FEATURES", "offered": hex(offered), "accepted": hex(accepted)},)
        extra = accepted & ~offered
        self.judge("VIRTIO-2.2.1-DRV-SUBSET", not extra,
                   f"accepts unoffered bits {F.bits_of(extra)}", trace=trace)
        undefined = accepted & ~F.defined_bits(self.device_id, "pci")
        self.judge("VIRTIO-2.2.1-DRV-NO-UNDEFINED", not undefined,
                   f"accepts undefined bits {F.bits_of(undefined)}", trace=trace)
        # a dependency on a bit QEMU keeps to itself cannot be seen in what it relays
        missing = [(f, c) for f, c in F.missing_dependencies(self.device_id, accepted)
                   if not set(c) & (QEMU_KEEPS if self.kind == "net" else set())]
        self.judge("VIRTIO-2.2.1-DRV-DEPENDENCY", not missing,
                   f"bit {missing[0][0]} without any of {list(missing[0][1])}" if missing
                   else "", trace=trace)
        if F.has(offered, F.VERSION_1):
            self.judge("VIRTIO-6.1-DRV-ACCEPT-VERSION-1", F.has(accepted, F.VERSION_1),
                       "VERSION_1 offered, not accepted", trace=trace)

    # --- ring setup (2.7.1, 2.7.10.1) -------------------------------------------------------
    def _started(self, queue: int, size: int, desc: int, avail: int, used: int,
                 read: ReadGuest) -> None:
        self.mem = mem = GuestReader(read)
        feats = RingFeatures.from_bits(self.accepted)
        if feats.packed:
            self._started_packed(queue, pk.PackedLayout(size, desc, avail, used), feats)
            return
        layout = sp.SplitLayout(size, desc, avail, used)
        trace = ({"op": "ring-start", "queue": queue, "size": size, "desc": hex(desc),
                  "avail": hex(avail), "used": hex(used)},)
        self.judge("VIRTIO-2.7.1-DRV-ALIGN", sp.Fault.MISALIGNED not in layout.faults(),
                   "a ring part is misaligned", trace=trace)
        flags = sp.read_le16(mem, rm.used_flags_addr(used))
        self.judge("VIRTIO-2.7.10-DRV-INIT-USED-FLAGS", flags == 0, f"used.flags {flags:#x}",
                   trace=trace)
        idx = sp.read_avail_idx(mem, layout)
        used_idx = sp.read_used_idx(mem, layout)
        # the back-end starts at the ring's used.idx (SET_VRING_BASE gave the same base)
        self.rings[queue] = RingState(layout, feats, used_idx, idx, used_idx)

    # --- kicks: what the driver published ---------------------------------------------------
    def _kicked(self, queue: int, again: bool) -> None:
        self.kicks += 0 if again else 1
        self.looks += 1 if again else 0
        ring = self.rings.get(queue)
        if ring is not None and ring.features.packed:
            self._look_packed(queue, ring)
        else:
            self._look(queue, None)

    def _look(self, queue: int, upto: int | None) -> None:
        """Judge avail.idx and every head published since the last look (up to ``upto``,
        the back-end's own position, when it took heads the judge had not seen)."""
        ring, mem = self.rings.get(queue), self.mem
        if ring is None or mem is None:
            return
        lay = ring.layout
        assert isinstance(lay, sp.SplitLayout)
        idx = sp.read_avail_idx(mem, lay) if upto is None else upto
        flags = sp.read_le16(mem, rm.avail_flags_addr(lay.avail))
        trace = ({"op": "kick", "queue": queue, "avail.idx": idx, "avail.flags": flags,
                  "seen": ring.seen},)
        if ring.features.event_idx:
            self.judge("VIRTIO-2.7.7-DRV-FLAGS-ZERO-EVENT-IDX", flags == 0,
                       f"avail.flags {flags:#x} with EVENT_IDX", trace=trace)
        else:
            self.judge("VIRTIO-2.7.7-DRV-FLAGS-VALUES", flags in (0, 1),
                       f"avail.flags {flags:#x}", trace=trace)
        # 2.7.6.1: heads are never taken back, and at most a ring's worth is outstanding
        ahead = rm.idx_sub(idx, ring.seen)
        ok = ahead <= lay.size
        self.judge("VIRTIO-2.7.6-DRV-NO-DECREMENT", ok,
                   f"avail.idx {idx} is {ahead} ahead of the {ring.seen} already published "
                   f"(queue size {lay.size}): moved back, or overran the ring", trace=trace)
        if not ok:
            self.rings[queue] = attrs.evolve(ring, avail_idx=idx)
            return
        taken = list(ring.inflight)
        pos = ring.seen
        while pos != idx:
            taken.append(self._take(queue, ring, pos))
            pos = rm.idx_add(pos, 1)
        self.rings[queue] = attrs.evolve(ring, seen=idx, avail_idx=idx, inflight=tuple(taken))

    def _take(self, queue: int, ring: RingState, pos: int) -> Taken:
        mem = self.mem
        assert mem is not None
        lay = ring.layout
        assert isinstance(lay, sp.SplitLayout)
        head = sp.read_avail_head(mem, lay, pos)
        chain = sp.walk_chain(mem, lay, head, ring.features)
        self.chains += 1
        trace = (_chain_op(pos, chain),)
        for rule in CHAIN_RULES:
            bad = [f for f in chain.faults if FAULT_RULE.get(f) == rule]
            self.judge(rule, not bad, f"head {head}: {', '.join(f.value for f in bad)}",
                       trace=trace)
        indirect = [f for f in chain.faults if FAULT_RULE.get(f) in INDIRECT_RULES]
        if chain.tables or indirect:
            for rule in INDIRECT_RULES:
                bad = [f for f in indirect if FAULT_RULE[f] == rule]
                self.judge(rule, not bad, f"head {head}: {', '.join(f.value for f in bad)}",
                           trace=trace)
        req = None
        if chain.processable():
            if self.kind == "blk":
                req = self._request(chain, trace)
            else:
                self._net_buffer(queue, chain, trace)
        return Taken(head, chain, req, pos)

    # --- the blk request (5.2.6, 5.2.6.1) ------------------------------------------------
    def _request(self, chain: sp.Chain, trace: tuple[dict[str, Any], ...]
                 ) -> blk.Request | None:
        mem = self.mem
        assert mem is not None
        rd_len, wr_len = chain.readable_len, chain.writable_len
        ok = rd_len >= blk.HEADER.size and wr_len >= 1
        self.judge("PVSPEC-BLK-REQUEST-LAYOUT", ok,
                   f"{rd_len} readable bytes (a header needs {blk.HEADER.size}), {wr_len} "
                   f"writable (the status needs 1)", trace=trace)
        if not ok:
            return None
        out = b"".join(mem.read(s.addr, s.len) for s in chain.readable)
        typ, reserved, sector = blk.decode_header(out)
        req = blk.Request(typ, sector, out[blk.HEADER.size:], wr_len - 1, reserved)
        name = TYPE_NAMES.get(typ, f"type-{typ}")
        self.requests[name] = self.requests.get(name, 0) + 1
        trace = (*trace, _request_op(req))
        for rule, bad, detail in self._request_rules(req):
            self.judge(rule, not bad, f"{name} sector {sector}: {detail}", trace=trace)
        return req

    def _request_rules(self, req: blk.Request) -> list[tuple[str, bool, str]]:
        """Each 5.2.6.1 rule ``req`` gives occasion to judge: (rule, broken, detail)."""
        cap = self.capacity
        out: list[tuple[str, bool, str]] = []
        if req.type in (blk.T_IN, blk.T_OUT):
            n = req.in_len if req.type == blk.T_IN else len(req.data)
            out.append(("VIRTIO-5.2.6.1-DRV-DATA-MULTIPLE-512", n % blk.SECTOR != 0,
                        f"{n} data bytes"))
            end = req.sector + n // blk.SECTOR + (1 if n % blk.SECTOR else 0)
            out.append(("VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY", end > cap,
                        f"sectors {req.sector}..{end} past capacity {cap}"))
        elif req.type == blk.T_FLUSH:
            out.append(("VIRTIO-5.2.6.1-DRV-FLUSH-SECTOR-ZERO", req.sector != 0,
                        f"sector {req.sector}"))
        elif req.type == blk.T_GET_ID:
            out.append(("VIRTIO-5.2.6.1-DRV-GET-ID-20", req.in_len != blk.ID_BYTES,
                        f"{req.in_len} data bytes"))
        elif req.type in blk.T_RANGES:
            whole = len(req.data) % blk.SEGMENT.size == 0
            out.append(("VIRTIO-5.2.6.1-DRV-SEGMENT-MULTIPLE", not whole,
                        f"{len(req.data)} data bytes"))
            if whole:
                segs = blk.decode_segments(req.data)
                limit = self.cfg.get(_SEG_LIMIT[req.type], 1)
                out.append(("VIRTIO-5.2.6.1-DRV-MAX-SEGMENTS", len(segs) > limit,
                            f"{len(segs)} segments, limit {limit}"))
                past = [(s, n) for s, n, _ in segs if s + n > cap]
                out.append(("VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY", bool(past),
                            f"segments {past} past capacity {cap}"))
                if req.type == blk.T_DISCARD:
                    out.append(("VIRTIO-5.2.6.1-DRV-DISCARD-NO-UNMAP",
                                any(f & 1 for _, _, f in segs), "unmap set"))
        return out

    # --- packed rings (2.8) ----------------------------------------------------------------
    def _started_packed(self, queue: int, layout: pk.PackedLayout, feats: RingFeatures
                        ) -> None:
        trace = ({"op": "ring-start", "queue": queue, "packed": True, "size": layout.size,
                  "desc": hex(layout.desc), "driver": hex(layout.driver),
                  "device": hex(layout.device)},)
        self.judge("VIRTIO-2.8.11-DRV-ALIGN", sp.Fault.MISALIGNED not in layout.faults(),
                   "a ring part is misaligned", trace=trace)
        # both wrap counters start at 1 at slot 0 (2.8.1); QEMU's base says the same
        self.rings[queue] = RingState(layout, feats, 0, 0, 0)

    def _look_packed(self, queue: int, ring: RingState) -> None:
        """Judge every list made available from the judge's position on (2.8.17, 2.8.19)."""
        mem = self.mem
        assert mem is not None and isinstance(ring.layout, pk.PackedLayout)
        chains, (pos, wrap) = pk.scan_available(mem, ring.layout, ring.seen, ring.wrap,
                                                ring.features)
        taken = list(ring.inflight)
        at = ring.seen
        for chain in chains:
            self.chains += 1
            trace = (_chain_op(at, chain),)
            for rule in PACKED_CHAIN_RULES:
                bad = [f for f in chain.faults if PACKED_FAULT_RULE.get(f) == rule]
                self.judge(rule, not bad, f"list at slot {at}: "
                           f"{', '.join(f.value for f in bad)}", trace=trace)
            if chain.tables:
                self._judge_tables(chain, ring, trace)
            req = None
            if chain.processable(sp.TOLERABLE | pk.PACKED_TOLERABLE):
                if self.kind == "blk":
                    req = self._request(chain, trace)
                else:
                    self._net_buffer(queue, chain, trace)
            taken.append(Taken(chain.head, chain, req, at))
            at = (at + chain.ndesc) % ring.layout.size
        self.rings[queue] = attrs.evolve(ring, seen=pos, wrap=wrap, inflight=tuple(taken))

    def _judge_tables(self, chain: sp.Chain, ring: RingState,
                      trace: tuple[dict[str, Any], ...]) -> None:
        """2.8.19: a table's descriptors carry no flag but WRITE; the indirect rules."""
        mem = self.mem
        assert mem is not None
        extra = [f for t in chain.tables for k in range(t.n // rm.DESC_SIZE)
                 if (f := sp.read_le16(mem, t.addr + rm.DESC_SIZE * k + 14))
                 & ~sp.VIRTQ_DESC_F_WRITE]
        self.judge("VIRTIO-2.8.19-DRV-INDIRECT-ONLY-WRITE", not extra,
                   f"flags {[hex(f) for f in extra[:4]]} inside an indirect table", trace=trace)
        for rule in PACKED_INDIRECT_RULES:
            bad = [f for f in chain.faults if PACKED_FAULT_RULE.get(f) == rule]
            self.judge(rule, not bad, ", ".join(f.value for f in bad), trace=trace)

    def _served_packed(self, queue: int, ring: RingState, avail_pos: int, used_pos: int
                       ) -> None:
        """The used descriptors the back-end wrote since the last batch: ids in flight, and
        the blk model disk (5.2.6).  Lists the back-end took before the judge saw them are
        gone (a used descriptor overwrote them): counted in ``missed``."""
        mem = self.mem
        assert mem is not None and isinstance(ring.layout, pk.PackedLayout)
        n = ring.layout.size
        pos, wrap = avail_pos & 0x7FFF, bool(avail_pos >> 15)
        inflight = list(ring.inflight)
        upos, uwrap = ring.used, ring.used_wrap
        target = (used_pos & 0x7FFF, bool(used_pos >> 15))
        steps = 0
        while (upos, uwrap) != target and steps < n and inflight:
            steps += 1
            d = pk.PDesc.read(mem, rm.desc_addr(ring.layout.desc, upos))
            if not rm.is_used(d.flags, uwrap):
                # the driver saw the slot used and already made it available again: the
                # used descriptor is gone; the back-end returns lists in ring order, so it
                # was the oldest in flight (counted, not judged)
                t = inflight.pop(0)
                self.overtaken += 1
                upos, uwrap = rm.packed_advance(upos, uwrap, n, max(1, t.chain.ndesc))
                continue
            k = next((i for i, t in enumerate(inflight) if t.head == d.id), None)
            self.judge("PVSPEC-RING-USED-ID", k is not None,
                       f"used slot {upos} names buffer {d.id}, not in flight", side="device",
                       trace=({"op": "used", "slot": upos, "id": d.id, "len": d.len},))
            if k is None:
                break
            t = inflight.pop(k)
            self._complete(t, d.len)
            upos, uwrap = rm.packed_advance(upos, uwrap, n, max(1, t.chain.ndesc))
        if not inflight and (upos, uwrap) != target:
            # used descriptors of lists the back-end took after the judge's last look (the
            # driver made them available in between): their slots were overwritten, so
            # they are counted, not judged, and both positions follow the back-end's
            self.missed += 1
            upos, uwrap = target
            ring = attrs.evolve(ring, seen=pos, wrap=wrap)
            if self.kind == "blk":  # a write may be among them: the model knows no more
                self.disk = blk.LearnedDisk(self.capacity)
        self.rings[queue] = attrs.evolve(ring, used=upos, used_wrap=uwrap,
                                         inflight=tuple(inflight))

    # --- net buffers (5.1.6.2, 5.1.6.3) ---------------------------------------------------
    def _net_buffer(self, queue: int, chain: sp.Chain, trace: tuple[dict[str, Any], ...]
                    ) -> None:
        """A receive buffer (even queues) or a packet to send (odd queues, 5.1.2)."""
        mem = self.mem
        assert mem is not None
        hdr_size = net.HDR.size if F.has(self.accepted, F.VERSION_1) or F.has(
            self.accepted, F.NET_FEATURES["MRG_RXBUF"]) else net.HDR.size - 2
        if queue % 2 == 0:
            self.requests["rx-buffer"] = self.requests.get("rx-buffer", 0) + 1
            self.judge("PVSPEC-NET-RX-WRITABLE", not chain.readable,
                       f"receive buffer with {chain.readable_len} device-readable bytes",
                       trace=trace)
            size = chain.writable_len
            if F.has(self.accepted, F.NET_FEATURES["MRG_RXBUF"]):
                self.judge("VIRTIO-5.1.6.3.1-DRV-MRG-BUFFER-HDR", size >= hdr_size,
                           f"{size}-byte buffer, header {hdr_size}", trace=trace)
            else:
                big = any(F.has(self.accepted, F.NET_FEATURES[n]) for n in _GUEST_GSO)
                need = 65562 if big else 1526
                self.judge("VIRTIO-5.1.6.3.1-DRV-RX-BUFFER-SIZE", size >= need,
                           f"{size}-byte receive buffer (at least {need})", trace=trace,
                           level="SHOULD")
            return
        self.requests["tx-packet"] = self.requests.get("tx-packet", 0) + 1
        ok = not chain.writable and chain.readable_len >= hdr_size + net.ETH_HLEN
        self.judge("PVSPEC-NET-TX-LAYOUT", ok,
                   f"{chain.readable_len} readable and {chain.writable_len} writable bytes "
                   f"(a header of {hdr_size} and a frame, all device-readable)", trace=trace)
        if not ok:
            return
        raw = b"".join(mem.read(s.addr, s.len) for s in chain.readable)[:hdr_size]
        h = net.NetHdr.decode(raw.ljust(net.HDR.size, b"\0"))
        if hdr_size < net.HDR.size:
            h = attrs.evolve(h, num_buffers=0)  # the legacy header has no num_buffers
        trace = (*trace, {"op": "net-hdr", **attrs.asdict(h)})
        for rule, held, detail in _tx_rules(h, self.accepted):
            self.judge(rule, held, detail, trace=trace)

    # --- completions: the device side, where cheap -------------------------------------------
    def _served(self, queue: int, last_avail: int, used_idx: int) -> None:
        ring, mem = self.rings.get(queue), self.mem
        if ring is None or mem is None:
            return
        if ring.features.packed:
            self._served_packed(queue, ring, last_avail, used_idx)
            return
        if ring.seen != last_avail and rm.idx_sub(last_avail, ring.seen) <= ring.layout.size:
            self.late += rm.idx_sub(last_avail, ring.seen)
            self._look(queue, last_avail)
            ring = self.rings[queue]
        inflight = list(ring.inflight)
        split_layout = ring.layout
        assert isinstance(split_layout, sp.SplitLayout)
        pos = ring.used
        while pos != used_idx:
            ident, length = sp.read_used_elem(mem, split_layout, pos)
            k = next((i for i, t in enumerate(inflight) if t.head == ident), None)
            self.judge("PVSPEC-RING-USED-ID", k is not None,
                       f"used entry {pos} names head {ident}, not in flight", side="device",
                       trace=({"op": "used", "pos": pos, "id": ident, "len": length},))
            if k is not None:
                self._complete(inflight.pop(k), length)
            pos = rm.idx_add(pos, 1)
        self.rings[queue] = attrs.evolve(ring, used=used_idx, inflight=tuple(inflight))

    def _complete(self, taken: Taken, length: int) -> None:
        """Check one completed request against the model disk (5.2.6) and update it."""
        self.completions += 1
        req, chain, mem = taken.request, taken.chain, self.mem
        if req is None or mem is None or not chain.writable:
            return
        wr = b"".join(mem.read(s.addr, s.len) for s in chain.writable)
        status, data = wr[-1], wr[:-1]
        if req.type == blk.T_GET_ID and req.in_len != blk.ID_BYTES:
            return  # a driver error (5.2.6.1), counted as such where the request was judged
        shows = req.type in (blk.T_IN, blk.T_GET_ID)
        observed = blk.unseen_effect(self.disk, req, self.accepted, status,
                                     data if shows else b"")
        v = blk.check_completion(self.disk, req, self.accepted, observed)
        rule = blk.rule_for(self.disk, req, self.accepted, observed)
        lo = req.sector * blk.SECTOR
        if req.type == blk.T_IN and not self.disk.knows(lo, lo + req.in_len):
            rule = ""  # every sector it read is unspecified: nothing was compared
        if rule and (v is not None or rule != "VIRTIO-5.2.6.2-DEV-STABLE-WRITES"):
            # (a write's completion shows nothing of the disk here: a later read judges it)
            self.judge(v.requirement if v else rule, v is None, v.detail if v else "",
                       side="device", trace=(_request_op(req), {
                           "op": "completion", "status": status, "len": length}))
        self.disk = blk.settle(self.disk, req, self.accepted, observed) if v is None else \
            _forget(self.disk, req)
        if req.type == blk.T_FLUSH and not F.has(self.accepted, blk.FB["FLUSH"]):
            self.requests["FLUSH-unnegotiated"] = self.requests.get("FLUSH-unnegotiated", 0) + 1

    # --- the end: nothing left published without a notification (2.7.10.1) -------------
    def _stopped(self, queue: int, last_avail: int) -> None:
        ring, mem = self.rings.pop(queue, None), self.mem
        if ring is None or mem is None or ring.features.packed:
            return  # packed: the back-end leaves notifications enabled; nothing to judge
        lay = ring.layout
        assert isinstance(lay, sp.SplitLayout)
        idx = sp.read_avail_idx(mem, lay)
        left = rm.idx_sub(idx, last_avail)
        event = sp.read_le16(mem, rm.avail_event_addr(lay.used, lay.size))
        rule = ("VIRTIO-2.7.10-DRV-KICK-AVAIL-EVENT" if ring.features.event_idx
                else "VIRTIO-2.7.10-DRV-KICK-FLAGS0")
        if self.kind == "net" and queue % 2 == 0:
            return  # a receive queue: the device takes buffers only as packets come
        if ring.features.event_idx and event != last_avail:
            return  # the back-end did not ask for a kick at the next head: nothing to judge
        # the back-end asked for a kick at its next head (avail_event, or used.flags 0),
        # wrote that before its last look at avail.idx (with a barrier) and found nothing
        # new, so a head still waiting now was published later and never notified
        self.judge(rule, left == 0 or left > lay.size,
                   f"{left} head(s) published at avail.idx {idx} after the back-end's last "
                   f"look at {last_avail}, never notified",
                   trace=({"op": "stop", "queue": queue, "avail.idx": idx,
                           "last_avail": last_avail,
                           "avail_event": event},))

    def finish(self) -> None:
        """The run is over: judge what the whole run shows (5.2.5.1's FLUSH SHOULD NOT)."""
        with self.lock:
            if self.kind == "blk" and F.has(self.accepted, blk.FB["FLUSH"]):
                self.judge("VIRTIO-5.2.5.1-DRV-FLUSH-CAPABLE", self.requests.get("FLUSH", 0) > 0,
                           "FLUSH negotiated, never sent", level="SHOULD")


# virtio-net feature bits QEMU's virtio-net handles itself and never relays to a vhost-user
# back-end (hw/net/vhost_net.c: not in user_feature_bits): MAC, STATUS, the control queue
# and its commands.  The driver may accept them; SET_FEATURES does not show it.
QEMU_KEEPS = frozenset(F.NET_FEATURES[n] for n in (
    "MAC", "STATUS", "CTRL_VQ", "CTRL_RX", "CTRL_VLAN", "CTRL_RX_EXTRA", "CTRL_MAC_ADDR"))
_GUEST_GSO = ("GUEST_TSO4", "GUEST_TSO6", "GUEST_UFO", "GUEST_USO4", "GUEST_USO6")


def _tx_rules(h: net.NetHdr, accepted: int) -> list[tuple[str, bool, str]]:
    """Each 5.1.6.2.1 rule a transmit header gives occasion to judge: (rule, held, detail)."""
    fn = F.NET_FEATURES
    out = [("VIRTIO-5.1.6.2.1-DRV-NUM-BUFFERS-ZERO", h.num_buffers == 0,
            f"num_buffers {h.num_buffers}")]
    if not F.has(accepted, fn["CSUM"]):
        out.append(("VIRTIO-5.1.6.2.1-DRV-FLAGS-ZERO", h.flags == 0, f"flags {h.flags:#x}"))
    base = h.gso_type & ~net.GSO_ECN
    feat = net._GSO_FEATURE.get(base)
    gso_ok = (base == net.GSO_NONE and not h.gso_type & net.GSO_ECN) or (
        feat is not None and F.has(accepted, fn[feat]))
    out.append(("VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-FEATURE", gso_ok,
                f"gso_type {h.gso_type:#x}"))
    if base != net.GSO_NONE:
        out.append(("VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-CSUM", bool(h.flags & net.F_NEEDS_CSUM),
                    "GSO without NEEDS_CSUM"))
    return out


def _chain_op(pos: int, chain: sp.Chain) -> dict[str, Any]:
    return {"op": "chain", "avail_pos": pos, "head": chain.head,
            "segments": [[hex(s.addr), s.len, "w" if s.writable else "r"]
                         for s in chain.segments[:8]],
            "faults": [f.value for f in chain.faults]}


def _request_op(req: blk.Request) -> dict[str, Any]:
    return {"op": "blk-request", "type": TYPE_NAMES.get(req.type, req.type),
            "sector": req.sector, "readable_data": len(req.data), "writable_data": req.in_len,
            "reserved": req.reserved}


def _forget(disk: blk.AnyDisk, req: blk.Request) -> blk.AnyDisk:
    """After a completion that broke a rule the model cannot say what the request left:
    the bytes it may have changed (or read) become unspecified."""
    spans = blk.byte_ranges(req) or ([(req.sector * blk.SECTOR,
                                       req.sector * blk.SECTOR + req.in_len)]
                                     if req.type == blk.T_IN else [])
    for lo, hi in spans:
        disk = disk.forgotten(lo, min(hi, disk.capacity * blk.SECTOR))
    return disk
