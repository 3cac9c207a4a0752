"""VIRTIO checks through real shared memory, against any vhost-user back-end.

Each check opens its own session (a hostile input may leave the back-end's ring
broken, and QEMU's back-ends end the connection then) and returns :class:`Result`s
that name a requirement id from the spec registry (or an oracle IMPLIED_RULES key, or a
``VHOST-USER-*`` protocol rule) and its section.  Known deviations of a target are
listed in :data:`EXPECTED_DEVIATIONS` and reported as ``expected-deviation``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import attrs

from conformance.vhost_user import session as ss
from conformance.vhost_user.frontend import Frontend
from conformance.vhost_user.memory import MemfdMemory
from conformance.vhost_user.protocol import (
    VHOST_ONLY_BITS,
    VHOST_USER_F_PROTOCOL_FEATURES,
    ProtocolViolation,
)
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio import oracle as orc
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.devices import block as blk
from spec.virtio.memory import write_le16
from spec.virtio.registry import all_requirements

PROBE_TIMEOUT = 10.0  # seconds: "still answering" after hostile input
LEGACY_BITS = F.mask(24, 27)  # NOTIFY_ON_EMPTY, ANY_LAYOUT (6.3, legacy interface)
VHOST_RULES = {
    "VHOST-USER-REPLY": ("vhost-user.rst/Message types", "replies carry version 1, the reply "
                         "bit, the request's code and the payload size of that request"),
    "VHOST-USER-VRING-BASE": ("vhost-user.rst/GET_VRING_BASE", "stopping a ring returns the "
                              "next available index the back-end would process"),
    "VHOST-USER-RESPONSIVE": ("vhost-user.rst/Communication", "a back-end answers or closes "
                              "the connection; it never hangs nor dies on guest input"),
}

# (target name prefix, check name, rule) -> why it is expected.  See docs/findings.md.
EXPECTED_DEVIATIONS: dict[tuple[str, str, str], str] = {
    ("qemu-vhost-user-blk", "get-id-len-bytes", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"):
        "F1: QEMU 7.2 vhost-user-blk GET_ID writes 15 of 20 bytes but reports len 21",
    ("qemu-vhost-user-blk", "get-id-len-bytes", "VIRTIO-5.2.6-GET-ID-NUL-PADDED"):
        "F1: the id string's padding is left as the driver's bytes, not NUL",
}


@attrs.frozen
class Result:
    check: str
    rule: str
    section: str
    status: str  # "pass" | "fail" | "skip" | "expected-deviation" | "warn"
    detail: str = ""
    trace: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


def _section(rule: str) -> str:
    if rule in VHOST_RULES:
        return VHOST_RULES[rule][0]
    if rule in orc.IMPLIED_RULES:
        return orc.IMPLIED_RULES[rule][0]
    for r in all_requirements():
        if r.id == rule:
            return r.section
    parts = rule.split("-")
    return parts[1] if len(parts) > 1 else "?"


class Ctx:
    """Collects results for one check, applying the expected-deviation list."""

    def __init__(self, target: Target, check: str) -> None:
        self.target, self.check = target, check
        self.results: list[Result] = []

    def add(self, rule: str, ok: bool, detail: str = "", trace: tuple[str, ...] = (),
            level: str = "MUST") -> None:
        status = "pass" if ok else ("warn" if level != "MUST" else "fail")
        if not ok and level == "MUST":
            for (tgt, chk, rl), why in EXPECTED_DEVIATIONS.items():
                if self.target.name.startswith(tgt) and chk == self.check and rl == rule:
                    status, detail = "expected-deviation", f"{detail} [{why}]"
        self.results.append(Result(self.check, rule, _section(rule), status, detail, trace))

    def skip(self, rule: str, why: str) -> None:
        """A rule this target gives no occasion to check (never counted as passed)."""
        self.results.append(Result(self.check, rule, _section(rule), "skip", why))

    def step(self, st: ss.Step, what: str, s: ss.BlkSession | None = None) -> None:
        """Fold a judged step: ring verdict, per-request disk verdicts, outcome.

        Every rule the oracle judged without a violation counts as one pass, so the
        report's matrix shows which rules this run really exercised.
        """
        tr = tuple(s.fe.trace[-6:]) if s else ()
        for v in st.verdict.violations:
            self.add(v.rule, False, f"{what}: {v.detail}", tr, v.level)
        for rule in sorted(st.verdict.judged - st.verdict.rules()):
            self.add(rule, True, what)
        for c in st.completions:
            if c.violation is not None:
                self.add(c.violation.requirement, False,
                         f"{what}: head {c.head} {c.violation.detail}", tr)
            elif c.rule:
                self.add(c.rule, True, f"{what}: head {c.head}")
        if not st.verdict.violations and not any(c.violation for c in st.completions):
            self.add("PVSPEC-RING-PROGRESS", st.outcome == "completed",
                     f"{what}: outcome {st.outcome}, {len(st.completions)} completed", tr)


Check = Callable[[Target], list[Result]]
R = blk.Request


def _session(t: Target, **kw: object) -> ss.BlkSession:
    return ss.BlkSession(t, **kw)  # type: ignore[arg-type]


# --- negotiation and config ---------------------------------------------------------------


def check_features(t: Target) -> list[Result]:
    """2.2.2 / 6.2: the device's offer; vhost-user header rules on every reply."""
    c = Ctx(t, "features")
    with _session(t) as s:
        offer = s.offered & ~VHOST_ONLY_BITS & ~LEGACY_BITS
        v = F.check_device_offer(F.BLOCK, offer)
        c.add(v.requirement if v else "VIRTIO-2.2.2-DEV-NO-UNDEFINED", v is None,
              f"offered {s.offered:#x} (vhost bits and legacy {s.offered & LEGACY_BITS:#x} "
              f"set aside){': ' + v.detail if v else ''}")
        c.add("VIRTIO-6.2-DEV-OFFER-VERSION-1", F.has(s.offered, F.VERSION_1))
        drv = F.check_driver_accept(F.BLOCK, offer, s.acked & ~VHOST_ONLY_BITS)
        c.add("VIRTIO-2.2.1-DRV-SUBSET", drv is None, f"front-end self-check {drv}")
        c.add("VHOST-USER-REPLY", True,
              f"protocol features {s.poffered:#x}, acked {s.packed:#x}",
              tuple(s.fe.trace))
        if s.config:
            cv = blk.check_config(s.config, s.offered, s.virtio_features)
            c.add(cv.requirement if cv else "VIRTIO-5.2.5.2-DEV-PADDING-ZERO", cv is None,
                  cv.detail if cv else "config padding zero")
            if t.initial is not None:
                c.add("VIRTIO-5.2.6-DEV-DATA-INTEGRITY", s.capacity * 512 == len(t.initial),
                      f"capacity {s.capacity} sectors, disk {len(t.initial)} bytes")
    return c.results


# --- virtio-blk semantics (5.2.6) ----------------------------------------------------------


def check_blk_semantics(t: Target) -> list[Result]:
    """Read, write + read-back, flush, get-id, discard/write-zeroes, out-of-range, unsupp."""
    c = Ctx(t, "blk-semantics")
    with _session(t) as s:
        cap = s.capacity
        pat = bytes((i * 7 + 3) & 0xFF for i in range(2048))
        reqs = [
            ("read", [R(blk.T_IN, 0, in_len=1024), R(blk.T_IN, cap - 1, in_len=512)]),
            ("write", [R(blk.T_OUT, 8, data=pat), R(blk.T_OUT, 40, data=pat[:512])]),
            ("read-back", [R(blk.T_IN, 8, in_len=2048), R(blk.T_IN, 40, in_len=512)]),
            ("flush", [R(blk.T_FLUSH)]),
            ("get-id", [R(blk.T_GET_ID, in_len=blk.ID_BYTES)]),
            ("read-past-capacity", [R(blk.T_IN, cap - 1, in_len=1024)]),
            ("write-past-capacity", [R(blk.T_OUT, cap, data=pat[:512])]),
            ("unsupported-type", [R(99, 0, in_len=0)]),
        ]
        if F.has(s.virtio_features, blk.FB["WRITE_ZEROES"]):
            reqs += [("write-zeroes", [R(blk.T_WRITE_ZEROES, data=blk.encode_segment(8, 2))]),
                     ("read-zeroes", [R(blk.T_IN, 8, in_len=1024)])]
        if F.has(s.virtio_features, blk.FB["DISCARD"]):
            reqs += [("discard", [R(blk.T_DISCARD, data=blk.encode_segment(40, 1))]),
                     ("discard-unmap-flag",
                      [R(blk.T_DISCARD, data=blk.encode_segment(40, 1, unmap=True))])]
        for what, batch in reqs:
            st = s.run(batch)
            c.step(st, what, s)
        drift = s.disk_drift()
        if drift is not None:
            c.add("VIRTIO-5.2.6-DEV-DATA-INTEGRITY", drift == 0,
                  f"backing store vs disk model: {drift} bytes differ")
    return c.results


def check_chains(t: Target) -> list[Result]:
    """2.7.4.1 any descriptor layout; 2.7.5.3 indirect tables where negotiated."""
    c = Ctx(t, "chains")
    with _session(t) as s:
        pat = bytes(range(256)) * 8
        c.step(s.run([R(blk.T_OUT, 16, data=pat)], split=4), "write in 4 descriptors", s)
        c.step(s.run([R(blk.T_IN, 16, in_len=2048)], split=4), "read in 4 descriptors", s)
        if s.feats.indirect:
            c.step(s.run([R(blk.T_IN, 16, in_len=2048), R(blk.T_OUT, 24, data=pat[:1024])],
                         indirect=True, split=3), "indirect", s)
            c.step(s.run([R(blk.T_IN, 24, in_len=1024)], indirect=True), "indirect read-back", s)
        else:
            c.skip("VIRTIO-2.7.5.3-DEV-MIXED-CHAIN", "INDIRECT_DESC not offered")
    return c.results


def check_used_len(t: Target) -> list[Result]:
    """2.7.8.2: the first ``len`` writable bytes are written before used.idx (two poisons)."""
    results: list[Result] = []
    for name, req in (("read-len-bytes", R(blk.T_IN, 2, in_len=512)),
                      ("get-id-len-bytes", R(blk.T_GET_ID, in_len=blk.ID_BYTES))):
        c = Ctx(t, name)
        seen: list[tuple[bytes, int | None]] = []
        with _session(t) as s:
            for poison in (0xA5, 0x5A):
                placed, _ = s.submit([req])
                head = placed[0][0]
                chain = sp.walk_chain(s.mem, s.layout, head, s.feats)
                for seg in chain.writable:
                    s.mem.write(seg.addr, bytes([poison]) * seg.len)
                st = s.kick_and_judge(placed, 1)
                c.step(st, f"{name} poison {poison:#x}", s)
                comp = st.completions[0] if st.completions else None
                seen.append((comp.data_in + bytes([comp.status or 0]) if comp else b"",
                             comp.length if comp else None))
        (a, la), (b, _lb) = seen
        n = min(la or 0, len(a))
        unwritten = [i for i in range(n) if a[i] != b[i]]
        trace = tuple(s.fe.trace[-6:])
        c.add("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", not unwritten,
              f"len {la}; bytes {unwritten[:1]}..{unwritten[-1:]} ({len(unwritten)}) kept the "
              f"driver's poison" if unwritten else f"len {la}: all written", trace)
        if req.type == blk.T_GET_ID and a:
            ident = a[: blk.ID_BYTES]
            nul = ident.find(b"\0")
            padded = nul < 0 or not any(ident[nul:])
            c.add("VIRTIO-5.2.6-GET-ID-NUL-PADDED", padded and a[:20] == b[:20],
                  f"id {ident!r}", trace)
        results.extend(c.results)
    return results


# --- notifications (2.7.7, 2.7.10) ---------------------------------------------------------


def check_notifications(t: Target) -> list[Result]:
    """EVENT_IDX used_event rules via the call eventfd; NO_INTERRUPT without it."""
    c = Ctx(t, "notifications")
    with _session(t) as s:
        if s.feats.event_idx:
            far = rm.idx_add(s.drv.last_used, 100)
            st = s.run([R(blk.T_IN, 1, in_len=512)], used_event=far, grace=0.1)
            c.step(st, "used_event far ahead (no notification wanted)", s)
            st = s.run([R(blk.T_IN, 1, in_len=512), R(blk.T_IN, 2, in_len=512)],
                       used_event=rm.idx_add(s.drv.last_used, 1), grace=0.2)
            c.step(st, "used_event at the 2nd entry (notification owed)", s)
            c.add("VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT", st.notified, f"notified={st.notified}")
        else:
            sp.driver_set_no_interrupt(s.mem, s.drv, True)
            st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.1)
            c.step(st, "NO_INTERRUPT set", s)
    with _session(t, want=ss.VIRTIO_WANT & ~F.mask(F.EVENT_IDX)) as s:
        st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.2)
        c.step(st, "no EVENT_IDX, flags 0 (notification owed)", s)
        sp.driver_set_no_interrupt(s.mem, s.drv, True)
        st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.1)
        c.step(st, "no EVENT_IDX, NO_INTERRUPT", s)
    return c.results


def check_index_wrap(t: Target, start: int = 65530, batches: int = 6) -> list[Result]:
    """2.7.6/2.7.8: indices wrap at 2^16, not at the queue size; GET_VRING_BASE agrees."""
    c = Ctx(t, "index-wrap")
    with _session(t, base=start) as s:
        n = 0
        for k in range(batches):
            batch = [R(blk.T_IN, k + j, in_len=512) for j in range(3)]
            c.step(s.run(batch), f"batch {k} at avail.idx {s.drv.avail_idx}", s)
            n += len(batch)
        base = s.stop()
        want = (start + n) & 0xFFFF
        c.add("VHOST-USER-VRING-BASE", base == want, f"GET_VRING_BASE {base}, expected {want}")
    return c.results


def check_in_order(t: Target) -> list[Result]:
    """6.2 / 2.7.9: with IN_ORDER, buffers are used in the order made available."""
    c = Ctx(t, "in-order")
    with _session(t) as s:
        if not s.feats.in_order:
            c.skip("VIRTIO-6.2-DEV-IN-ORDER", "IN_ORDER not offered")
            return c.results
        batch = [R(blk.T_IN, j, in_len=512 * (1 + j % 3)) for j in range(8)]
        c.step(s.run(batch), "8 mixed reads", s)
    return c.results


# --- hostile input (2.7.5, 2.7.5.2, 2.7.5.3.1, 2.7.6.1) ------------------------------------


def _hostile(t: Target, name: str, build: Callable[[ss.BlkSession, int], int],
             c: Ctx, wait: float = 0.4) -> None:
    """Expose what ``build`` wrote (returns avail.idx advance), then judge the aftermath."""
    with _session(t) as s:
        c.step(s.run([R(blk.T_IN, 0, in_len=512)]), f"{name}: control request", s)
        hdr, st_at = ss.DATA, ss.DATA + 0x1000
        s.mem.write(hdr, R(blk.T_IN, 0).encode_header())
        s.mem.write(st_at, b"\xff" * 512)
        adv = build(s, hdr)
        s.drv = attrs.evolve(s.drv, avail_idx=rm.idx_add(s.drv.avail_idx, adv))
        st = s.kick_and_judge([], 1, force_kick=True, wait=wait, grace=0.05,
                              expect_progress=False)
        ok = not st.verdict.violations
        for v in st.verdict.violations:
            c.add(v.rule, v.level != "MUST", f"{name}: {v.detail}", tuple(s.fe.trace[-4:]),
                  v.level)
        c.add("PVSPEC-RING-MALFORMED", ok, f"{name}: outcome {st.outcome}, "
              f"used.idx {sp.read_used_idx(s.mem, s.layout)}")
        crashed = not t.alive()
        responsive = True
        if not crashed and not s.fe.backend_closed():
            # a hang is a back-end that does not answer within PROBE_TIMEOUT; a loaded CI
            # machine can delay a live one by more than the per-request bound
            s.fe.timeout = max(s.fe.timeout, PROBE_TIMEOUT)
            try:
                s.fe.get_u64(1)  # GET_FEATURES: still answering?
            except ProtocolViolation as e:
                responsive = e.kind.value == "closed"
        c.add("VHOST-USER-RESPONSIVE", not crashed and responsive,
              f"{name}: crashed={crashed} responsive={responsive}", (t.log()[-300:],))


def _desc(s: ss.BlkSession, i: int, addr: int, n: int, flags: int, nxt: int,
          table: int | None = None) -> None:
    base = s.layout.desc if table is None else table
    sp.Desc(addr, n, flags, nxt).write(s.mem, base + 16 * i)


def _head(s: ss.BlkSession, k: int, head: int) -> None:
    write_le16(s.mem, rm.avail_ring_addr(s.layout.avail,
                                         rm.ring_slot(rm.idx_add(s.drv.avail_idx, k),
                                                      s.layout.size)), head)


NEXT, WRITE, INDIRECT = sp.VIRTQ_DESC_F_NEXT, sp.VIRTQ_DESC_F_WRITE, sp.VIRTQ_DESC_F_INDIRECT


def _loop(s: ss.BlkSession, hdr: int) -> int:
    _desc(s, 100, hdr, 16, NEXT, 101)
    _desc(s, 101, hdr + 0x1000, 512, NEXT | WRITE, 100)
    _head(s, 0, 100)
    return 1


def _head_oob(s: ss.BlkSession, hdr: int) -> int:
    _head(s, 0, s.layout.size + 5)
    return 1


def _next_oob(s: ss.BlkSession, hdr: int) -> int:
    _desc(s, 100, hdr, 16, NEXT, s.layout.size + 7)
    _head(s, 0, 100)
    return 1


def _addr_oob(s: ss.BlkSession, hdr: int) -> int:
    _desc(s, 100, hdr, 16, NEXT, 101)
    _desc(s, 101, ss.MEM_SIZE + 0x10000, 512, NEXT | WRITE, 102)
    _desc(s, 102, hdr + 0x1000, 1, WRITE, 0)
    _head(s, 0, 100)
    return 1


def _addr_wrap(s: ss.BlkSession, hdr: int) -> int:
    _desc(s, 100, hdr, 16, NEXT, 101)
    _desc(s, 101, (1 << 64) - 256, 512, WRITE, 0)
    _head(s, 0, 100)
    return 1


def _long_indirect(s: ss.BlkSession, hdr: int) -> int:
    """An indirect table with size+8 entries: longer than the queue (2.7.5.3.1)."""
    n = s.layout.size + 8  # over the queue size, under the oracle's loop budget
    table = ss.DATA + 0x2000
    _desc(s, 0, hdr, 16, NEXT, 1, table)
    for i in range(1, n - 1):
        _desc(s, i, hdr + 0x1000 + i, 1, NEXT | WRITE, i + 1, table)
    _desc(s, n - 1, hdr + 0x1000, 1, WRITE, 0, table)
    _desc(s, 100, table, 16 * n, INDIRECT, 0)
    _head(s, 0, 100)
    return 1


def _nested_indirect(s: ss.BlkSession, hdr: int) -> int:
    t1, t2 = ss.DATA + 0x2000, ss.DATA + 0x3000
    _desc(s, 0, hdr, 16, NEXT, 1, t2)
    _desc(s, 1, hdr + 0x1000, 1, WRITE, 0, t2)
    _desc(s, 0, t2, 32, INDIRECT, 0, t1)
    _desc(s, 100, t1, 16, INDIRECT, 0)
    _head(s, 0, 100)
    return 1


def _indirect_bad_len(s: ss.BlkSession, hdr: int) -> int:
    t1 = ss.DATA + 0x2000
    _desc(s, 0, hdr, 16, NEXT, 1, t1)
    _desc(s, 1, hdr + 0x1000, 1, WRITE, 0, t1)
    _desc(s, 100, t1, 24, INDIRECT, 0)
    _head(s, 0, 100)
    return 1


def _avail_overrun(s: ss.BlkSession, hdr: int) -> int:
    return s.layout.size + 1


HOSTILE: dict[str, Callable[[ss.BlkSession, int], int]] = {
    "descriptor-loop": _loop,
    "head-out-of-range": _head_oob,
    "next-out-of-range": _next_oob,
    "buffer-outside-memory": _addr_oob,
    "buffer-wraps-2^64": _addr_wrap,
    "chain-longer-than-queue": _long_indirect,
    "nested-indirect": _nested_indirect,
    "indirect-bad-len": _indirect_bad_len,
    "avail-idx-overrun": _avail_overrun,
}


def check_hostile(t: Target, only: tuple[str, ...] | None = None) -> list[Result]:
    """Malformed rings: no hang, no crash, no write outside; an outcome the oracle permits."""
    out: list[Result] = []
    for name, build in HOSTILE.items():
        if only and name not in only:
            continue
        c = Ctx(t, f"hostile/{name}")
        try:
            _hostile(t, name, build, c)
        except ProtocolViolation as e:
            c.add("VHOST-USER-RESPONSIVE", e.kind.value == "closed", f"{name}: {e}")
        out.extend(c.results)
    return out


# --- vhost-user-fs (virtiofsd): negotiation, queues, FUSE_INIT ----------------------------

FUSE_IN = struct.Struct("<IIQQIIII")  # len, opcode, unique, nodeid, uid, gid, pid, padding
FUSE_OUT = struct.Struct("<IiQ")
FUSE_INIT = 26


def check_fs_init(t: Target) -> list[Result]:
    """vhost-user-fs: negotiate, set up hiprio + request queues, FUSE_INIT round trip."""
    c = Ctx(t, "fs-fuse-init")
    with Frontend(t.socket_path) as fe:
        offered, acked, _po, _pa = fe.negotiate(F.mask(F.VERSION_1, F.EVENT_IDX,
                                                       F.INDIRECT_DESC), ss.PROTO_WANT)
        c.add("VIRTIO-6.2-DEV-OFFER-VERSION-1", F.has(offered, F.VERSION_1), f"{offered:#x}")
        nq = fe.get_u64(17) if acked >> VHOST_USER_F_PROTOCOL_FEATURES & 1 else 2
        mem = MemfdMemory(1 << 20)
        try:
            feats = rm.RingFeatures.from_bits(acked)
            lays = [sp.SplitLayout.contiguous(0x4000 * q, 64) for q in range(min(nq, 2))]
            drvs = [sp.driver_init(mem, lay, feats) for lay in lays]
            fe.set_mem_table([mem])
            vrs = [fe.setup_vring(q, mem, lay) for q, lay in enumerate(lays)]
            lay, drv = lays[-1], drvs[-1]
            req, rep = 0x20000, 0x21000
            mem.write(req, FUSE_IN.pack(FUSE_IN.size + 16, FUSE_INIT, 1, 0, 0, 0, 0, 0)
                      + struct.pack("<IIII", 7, 31, 0, 0))
            drv, _head = sp.driver_add(mem, drv, [(req, FUSE_IN.size + 16, False),
                                                 (rep, FUSE_OUT.size + 64, True)])
            if feats.event_idx:
                sp.driver_set_used_event(mem, drv, 0)
            before = mem.frozen()
            write_le16(before, rm.avail_idx_addr(lay.avail), drv.avail_idx)
            drv = sp.driver_publish(mem, drv)
            vrs[-1].kick()
            deadline = time.monotonic() + 3
            notified = False
            while sp.read_used_idx(mem, lay) == 0 and time.monotonic() < deadline:
                notified |= vrs[-1].wait_call(0.01)
            notified |= vrs[-1].wait_call(0.1)
            view = orc.SplitView.start(lay, feats)
            verdict, _ = orc.judge_split(before, mem.frozen(), view, notified=notified,
                                         expect_progress=True)
            for v in verdict.violations:
                c.add(v.rule, False, v.detail, tuple(fe.trace[-4:]), v.level)
            length, err, unique = FUSE_OUT.unpack(mem.read(rep, FUSE_OUT.size))
            major, minor = struct.unpack("<II", mem.read(rep + FUSE_OUT.size, 8))
            ok = sp.read_used_idx(mem, lay) == 1 and err == 0 and unique == 1 and major == 7
            c.add("PVSPEC-RING-PROGRESS", ok,
                  f"FUSE_INIT reply len={length} error={err} unique={unique} "
                  f"version {major}.{minor}, queues {nq}")
        finally:
            fe.close()
            mem.close()
    return c.results


BLK_CHECKS: dict[str, Check] = {
    "features": check_features,
    "blk-semantics": check_blk_semantics,
    "chains": check_chains,
    "used-len": check_used_len,
    "notifications": check_notifications,
    "index-wrap": check_index_wrap,
    "in-order": check_in_order,
    "hostile": check_hostile,
}
FS_CHECKS: dict[str, Check] = {"fs-fuse-init": check_fs_init}


def run_checks(t: Target, names: tuple[str, ...] | None = None) -> list[Result]:
    """Every check for the target's kind; an unexpected exception is a failed result."""
    table = FS_CHECKS if t.kind == "fs" else BLK_CHECKS
    out: list[Result] = []
    for name, fn in table.items():
        if names and name not in names:
            continue
        try:
            out.extend(fn(t))
        except ProtocolViolation as e:
            out.append(Result(name, "VHOST-USER-REPLY", _section("VHOST-USER-REPLY"), "fail",
                              str(e)))
    return out
