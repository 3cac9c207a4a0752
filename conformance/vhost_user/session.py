"""A vhost-user-blk session: spec/virtio's model driver over real shared memory.

The split-ring model driver (spec.virtio.split) places requests in the memfd the
back-end mapped; after each batch the device oracle (spec.virtio.oracle.judge_split)
judges the memory before/after and the call eventfd, and the virtio-blk disk model
(spec.virtio.devices.block) judges each completion's status, data and disk effect.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from conformance.vhost_user import evidence as ev
from conformance.vhost_user.frontend import Frontend, Vring
from conformance.vhost_user.memory import MemfdMemory
from conformance.vhost_user.protocol import PF, ProtocolViolation
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio import oracle as orc
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.devices import block as blk
from spec.virtio.memory import ByteMemory, RecordingMemory, write_le16
from spec.virtio.ring_math import RingFeatures

MEM_SIZE = 256 << 10  # the oracle diffs all of it per step: keep it small
SCRATCH = 0x8000  # indirect tables
DATA = 0x20000  # request buffers (bump-allocated per batch)
MAX_INDIRECT = 8
BLK_CONFIG_SIZE = 60
FB = F.BLK_FEATURES
VIRTIO_WANT = F.mask(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX, F.IN_ORDER, FB["SEG_MAX"],
                     FB["BLK_SIZE"], FB["FLUSH"], FB["DISCARD"], FB["WRITE_ZEROES"],
                     FB["TOPOLOGY"], FB["SIZE_MAX"])
PROTO_WANT = (1 << PF.REPLY_ACK) | (1 << PF.CONFIG)


@attrs.define
class Completion:
    head: int
    request: blk.Request
    length: int | None
    status: int | None
    data_in: bytes
    violation: object | None = None  # spec.virtio.verdict.Violation
    rule: str = ""  # the requirement this completion was judged against


@attrs.frozen
class _Published:
    """A batch made visible: the memory as the device was shown it, and the ring
    indices then (what a step's evidence reports)."""

    memory: ByteMemory
    ring: dict[str, Any]


@attrs.define
class Step:
    """One kick and what came of it; :meth:`evidence` shows it (built only when asked)."""

    verdict: orc.Verdict
    completions: list[Completion]
    notified: bool
    outcome: str  # "completed" | "no-progress" | "closed" | "crashed"
    judge_s: float = 0.0
    layout: sp.SplitLayout | None = None
    before: Any = None  # guest memory at publication (request bytes, poison)
    after: Any = None  # guest memory once the device was done (its answer)
    placed: list[tuple[int, blk.Request]] = attrs.field(factory=list)
    ring: dict[str, Any] = attrs.field(factory=dict)

    def evidence(self) -> tuple[dict[str, Any], ...]:
        """The ring indices, each chain's descriptors and buffers before and after, and
        the device's answer (see :mod:`conformance.vhost_user.evidence`)."""
        if self.layout is None or self.before is None or self.after is None:
            return ()
        return ev.step_records(self.before, self.after, self.layout, self.placed, self.ring)


def connect(target: Target, timeout: float) -> Frontend:
    """A front-end connection to ``target``: the run's already-probed one when there is
    one (a back-end such as virtiofsd serves a single connection), else a new one."""
    fe = target.take_handoff()
    if fe is not None:
        fe.timeout = timeout
        return fe  # type: ignore[no-any-return]
    return Frontend(target.socket_path, timeout=timeout)


class BlkSession:
    """Negotiate, share memory, set up queue 0, and exchange judged virtio-blk requests."""

    def __init__(self, target: Target, want: int = VIRTIO_WANT, qsize: int = 128,
                 base: int = 0, timeout: float = 2.0, observe_disk: bool = True) -> None:
        self.target = target
        self.timeout = timeout
        self.fe = connect(target, timeout)
        try:
            self.offered, self.acked, self.poffered, self.packed = self.fe.negotiate(
                want, PROTO_WANT)
            self.config = (self.fe.get_config(BLK_CONFIG_SIZE)
                           if self.packed >> PF.CONFIG & 1 else b"")
            self.mem = MemfdMemory(MEM_SIZE)
            self.layout = sp.SplitLayout.contiguous(0, qsize)
            self.feats = RingFeatures.from_bits(self.acked)
            self.drv = sp.driver_init(self.mem, self.layout, self.feats, start=base,
                                      scratch=SCRATCH, max_indirect=MAX_INDIRECT)
            # the device area as a device that has processed up to ``base`` leaves it
            write_le16(self.mem, rm.avail_event_addr(self.layout.used, qsize), base)
            self.fe.set_mem_table([self.mem])
            self.vring: Vring = self.fe.setup_vring(0, self.mem, self.layout, base)
        except BaseException:
            self.fe.close()
            mem = getattr(self, "mem", None)
            if mem is not None:
                mem.close()
            raise
        self.view = orc.SplitView.start(self.layout, self.feats, base)
        cfg = blk.CONFIG.decode(self.config) if len(self.config) >= 8 else {}
        self.capacity = int(cfg.get("capacity", 0))
        self.observe_disk = observe_disk and target.disk_view is not None
        init = target.disk_view() if self.observe_disk and target.disk_view else target.initial
        # a disk the suite did not create is learned as it is read (spec: LearnedDisk);
        # without a config space its capacity, and so every range rule, is unknown
        self.disk: blk.AnyDisk | None = (
            blk.Disk(init, init) if init is not None else
            blk.LearnedDisk(self.capacity) if self.capacity else None)
        self.virtio_features = self.acked & ~(1 << 30)
        self.closed = False

    def close(self) -> None:
        self.fe.close()
        self.mem.close()

    def __enter__(self) -> BlkSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- building requests ------------------------------------------------------------

    def _bufs(self, req: blk.Request, at: int, split: int = 1
              ) -> tuple[list[tuple[int, int, bool]], int]:
        """Header, data (split into ``split`` descriptors), status: 2.7.4.2 order."""
        bufs = [(at, 16, False)]
        self.mem.write(at, req.encode_header())
        at += 16
        data_len = len(req.data) if req.data else req.in_len
        writable = not req.data
        if req.data:
            self.mem.write(at, req.data)
        elif req.in_len:
            self.mem.write(at, b"\xa5" * req.in_len)  # poison: what the device writes shows
        if data_len:
            step = -(-data_len // split)
            for off in range(0, data_len, step):
                bufs.append((at + off, min(step, data_len - off), writable))
            at += data_len
        self.mem.write(at, b"\xff")
        bufs.append((at, 1, True))
        return bufs, (at + 1 + 15) & ~15

    def submit(self, reqs: Sequence[blk.Request], indirect: bool = False, split: int = 1,
               used_event: int | None = None, direct_prefix: int = 0,
               ) -> tuple[list[tuple[int, blk.Request]], bytes]:
        """Place and publish ``reqs``; returns heads and the memory before publication.
        ``direct_prefix`` (with ``indirect``): parts before the indirect table (a mixed
        chain, 2.7.5.3.2)."""
        at = DATA
        placed = []
        for r in reqs:
            bufs, at = self._bufs(r, at, split)
            self.drv, head = sp.driver_add(self.mem, self.drv, bufs, indirect, direct_prefix)
            placed.append((head, r))
        if self.feats.event_idx:
            sp.driver_set_used_event(self.mem, self.drv,
                                     self.drv.last_used if used_event is None else used_event)
        return placed, b""

    def run(self, reqs: Sequence[blk.Request], *, indirect: bool = False, split: int = 1,
            used_event: int | None = None, grace: float = 0.05, judge: bool = True,
            direct_prefix: int = 0) -> Step:
        placed, _ = self.submit(reqs, indirect, split, used_event, direct_prefix)
        return self.kick_and_judge(placed, len(placed), grace=grace, judge=judge)

    def kick_and_judge(self, placed: list[tuple[int, blk.Request]], expect: int, *,
                       grace: float = 0.05, judge: bool = True, force_kick: bool = False,
                       wait: float | None = None, expect_progress: bool = True) -> Step:
        """Publish avail.idx, notify per 2.7.10.1, wait (bounded), then judge."""
        published = self._publish(self.mem.frozen(), force_kick)
        before, ring = published.memory, published.ring
        outcome, notified = self._wait(expect, self.timeout if wait is None else wait, grace)
        after = self.mem.frozen()
        if not judge:
            self.drv, _ = sp.driver_collect(self.mem, self.drv)
            return Step(orc.Verdict(()), [], notified, outcome, layout=self.layout,
                        before=before, after=after, placed=list(placed),
                        ring=ring | {"used_idx_after": sp.read_used_idx(after, self.layout),
                                     "notified": notified, "outcome": outcome})
        try:
            self.drv, got = sp.driver_collect(after, self.drv)
        except sp.DeviceMisbehaved:
            got = []
        return self._judge_step(before, after, placed, ring, notified, outcome, got,
                                expect_progress)

    def stream(self, batches: Iterable[Sequence[blk.Request]], *,
               expect_progress: bool = True) -> Iterator[Step]:
        """Run ``batches`` one after the other, judging each while the device works on the
        next: the verdicts are those of :meth:`run` with ``grace=0``, in the same order,
        and the wall time is about the larger of judging and serving instead of the sum.

        Step ``j`` is judged from the memory as it was when batch ``j`` was published to
        the memory once batch ``j`` completed.  The next step's "before" is that "after"
        plus the driver's own writes for the next batch (recorded as they are made), so
        no device write between the two steps escapes the diff; the used ring is read from
        the frozen "after", so the next batch's completions are never taken early.  The
        stream stops after the first batch that does not complete.
        """
        it = iter(batches)
        batch = next(it, None)
        if batch is None:
            return
        placed, _ = self.submit(batch)
        before = self._publish(self.mem.frozen())
        while True:
            outcome, notified = self._wait(len(placed), self.timeout, 0.0)
            after = self.mem.frozen()
            ring = before.ring
            try:
                self.drv, got = sp.driver_collect(after, self.drv)
            except sp.DeviceMisbehaved:
                got = []
            nxt = next(it, None) if outcome == "completed" else None
            following = None
            if nxt is not None:  # the device works on this batch while the last is judged
                recorder = RecordingMemory(self.mem)
                live, self.mem = self.mem, recorder  # type: ignore[assignment]
                try:
                    next_placed, _ = self.submit(nxt)
                finally:
                    self.mem = live
                mine = after.copy()
                for access in recorder.writes():
                    mine.write(access.addr, access.data)
                following = (self._publish(mine), next_placed)
            yield self._judge_step(before.memory, after, placed, ring, notified, outcome,
                                   got, expect_progress)
            if following is None:
                return
            before, placed = following

    def _publish(self, before: ByteMemory, force_kick: bool = False) -> _Published:
        """Publish the submitted heads and kick as 2.7.10.1 says (or anyway, with
        ``force_kick``); ``before`` (a private copy of the memory with every driver write
        made) gets the same avail.idx."""
        write_le16(before, rm.avail_idx_addr(self.layout.avail), self.drv.avail_idx)
        ring: dict[str, Any] = {"avail_idx": self.drv.avail_idx,
                                "last_avail": self.view.last_avail,
                                "used_idx_before": self.view.used_idx,
                                "last_used": self.drv.last_used}
        self.drv = sp.driver_publish(self.mem, self.drv)
        self.drv, need = sp.driver_must_kick(self.mem, self.drv)
        if need or force_kick:
            self.vring.kick()
        ring["kicked"] = bool(need or force_kick)
        return _Published(before, ring)

    def _judge_step(self, before: Any, after: Any, placed: list[tuple[int, blk.Request]],
                    ring: dict[str, Any], notified: bool, outcome: str,
                    got: list[tuple[int, int | None]], expect_progress: bool) -> Step:
        """The ring oracle's verdict on one step and the disk model's on each completion
        the driver collected from ``after``."""
        t0 = time.perf_counter()
        ring = ring | {"used_idx_after": sp.read_used_idx(after, self.layout),
                       "notified": notified, "outcome": outcome}
        verdict, self.view = orc.judge_split(before, after, self.view, notified=notified,
                                             expect_progress=expect_progress
                                             and outcome == "completed")
        by_head = dict(placed)
        chains = {c.head: c for c in verdict.chains}
        comps = [self._judge_blk(head, by_head[head], length, after, chains.get(head))
                 for head, length in got if head in by_head]
        return Step(verdict, comps, notified, outcome, time.perf_counter() - t0,
                    layout=self.layout, before=before, after=after, placed=list(placed),
                    ring=ring)

    def _wait(self, expect: int, timeout: float, grace: float) -> tuple[str, bool]:
        """Wait for ``expect`` used entries; then up to ``grace`` for a late call."""
        deadline = time.monotonic() + timeout
        notified = False
        start = self.drv.last_used
        while True:
            done = rm.idx_sub(sp.read_used_idx(self.mem, self.layout), start) >= expect
            if done:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.vring.wait_call(min(left, 0.01)):
                notified = True
            elif self.fe.backend_closed():
                self.closed = True
                return ("crashed" if not self.target.alive() else "closed"), notified
        if not done:
            if not self.target.alive():
                return "crashed", notified
            return ("closed" if self.fe.backend_closed() else "no-progress"), notified
        if not notified:
            notified = self.vring.wait_call(grace)
        return "completed", notified

    # --- virtio-blk payload (5.2.6) ----------------------------------------------------

    def _judge_blk(self, head: int, req: blk.Request, length: int | None,
                   after: Any, chain: sp.Chain | None = None) -> Completion:
        """The disk model's verdict on one completion; ``chain``: the buffers as the
        driver placed them (else walked in ``after``)."""
        if chain is None:
            chain = sp.walk_chain(after, self.layout, head, self.feats)
        wbytes = b"".join(after.read(s.addr, s.len) for s in chain.writable)
        status = wbytes[-1] if wbytes else None
        data_in = wbytes[:-1]
        comp = Completion(head, req, length, status, data_in)
        if self.disk is None or status is None:
            return comp
        observed_disk = blk.unseen_effect(self.disk, req, self.virtio_features, status).disk
        if self.observe_disk and self.target.disk_view and isinstance(self.disk, blk.Disk) \
                and blk.byte_ranges(req):
            # the touched bytes as the backing store really holds them now
            base = observed_disk if isinstance(observed_disk, blk.Disk) else self.disk
            data = bytearray(base.data)
            real = self.target.disk_view()
            for lo, hi in blk.byte_ranges(req):
                lo, hi = min(lo, len(data)), min(hi, len(data))
                data[lo:hi] = real[lo:hi]
            observed_disk = blk.Disk(bytes(data), base.stable, self.disk.device_id)
        obs = blk.Outcome(status, data_in if req.type in (blk.T_IN, blk.T_GET_ID) else b"",
                          observed_disk)
        v = blk.check_completion(self.disk, req, self.virtio_features, obs)
        if v is not None and v.requirement != self._credit(v.requirement):
            # what a socket shows of a write is its data: name the rule that judged it
            v = attrs.evolve(v, requirement="VIRTIO-5.2.6-DEV-DATA-INTEGRITY")
        comp.violation = v
        comp.rule = self._credit(blk.rule_for(self.disk, req, self.virtio_features, obs))
        if comp.violation is None:
            self.disk = blk.settle(self.disk, req, self.virtio_features, obs)
        return comp

    def _credit(self, rule: str) -> str:
        """What a completion judged on this platform.  Whether a write survives power
        loss (5.2.6.2) cannot be seen through a socket, so a write's completion judges
        its data (against the backing store, when the target shows it) and nothing
        otherwise: a later read judges what it wrote."""
        if rule != "VIRTIO-5.2.6.2-DEV-STABLE-WRITES":
            return rule
        return "VIRTIO-5.2.6-DEV-DATA-INTEGRITY" if self.observe_disk else ""

    def disk_drift(self) -> int | None:
        """Bytes where the backing store differs from the model (None: not observable)."""
        if not (self.observe_disk and self.target.disk_view and self.disk is not None):
            return None
        real = self.target.disk_view()
        if not isinstance(self.disk, blk.Disk):
            return None
        return sum(a != b for a, b in zip(real, self.disk.data, strict=False))

    # --- teardown ---------------------------------------------------------------------

    def stop(self) -> int | None:
        """GET_VRING_BASE; None when the back-end is gone."""
        try:
            return self.fe.stop_vring(0)
        except ProtocolViolation:
            return None
