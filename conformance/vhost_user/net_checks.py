"""virtio-net checks over vhost-user, against a loopback back-end (dpdk-vhost-net).

Each check opens its own :class:`NetSession` with the features it needs (as offered),
exchanges frames and folds every judged exchange into :class:`Ctx` results: both rings'
oracle verdicts (2.7), every received packet's §5.1.6.3.2/§5.1.6.4.1 verdict, and the
loopback delivery of every frame (PVSPEC-NET-LOOPBACK).  The checks register themselves
in :data:`conformance.vhost_user.checks.CHECKS` under the device kind ``net``, with their
COVERS, when this module is imported (conformance.vhost_user.report imports it).
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from conformance.results import NotJudged
from conformance.vhost_user import checks as ck
from conformance.vhost_user import net_frames as nf
from conformance.vhost_user.checks import Ctx, Result
from conformance.vhost_user.evidence import text_ops
from conformance.vhost_user.net_rings import PackedQueue, SplitQueue
from conformance.vhost_user.net_session import (
    DATA,
    FN,
    NET_WANT,
    POISONS,
    TX_BASE,
    NetSession,
    NetStep,
    Sent,
)
from conformance.vhost_user.protocol import ProtocolViolation, ViolationKind
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.devices import net as N
from spec.virtio.memory import write_le16
from spec.virtio.registry import condition_of

LEGACY_NET_BITS = F.mask(6)  # VIRTIO_NET_F_GSO: §5.1.3.2, legacy interface only
CONFIG_RULES = ("VIRTIO-5.1.4.1-DEV-MAX-PAIRS", "VIRTIO-5.1.4.1-DEV-MTU-RANGE",
                "VIRTIO-5.1.4.1-DEV-MTU-FIXED", "VIRTIO-5.1.4.1-DEV-RSS-KEY",
                "VIRTIO-5.1.4.1-DEV-RSS-TABLE", "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU",
                "VIRTIO-5.1.4.1-DEV-SPEED-RANGE", "VIRTIO-5.1.4.1-DEV-DUPLEX-VALUES")
# the control virtqueue's rules (5.1.6.5): over vhost-user the front-end's VMM keeps the
# control queue (QEMU's virtio-net serves it and relays what it must); a back-end is given
# the receive and transmit queues only
CTRLQ_DETAIL = ("over vhost-user the control virtqueue is the front-end VMM's (QEMU's "
                "virtio-net serves it; the back-end is given the receive and transmit "
                "queues only): its commands never reach the back-end")


def ctrlq_rules() -> tuple[str, ...]:
    """The device rules about control-queue commands: those whose registry condition
    includes CTRL_VQ negotiated."""
    return tuple(r.id for r in ck._universe_reqs("net")
                 if any("CTRL_VQ" in w.negotiated for w in condition_of(r)))


NO_CONFIG = ("the back-end offers no CONFIG protocol feature: over vhost-user the front-end "
             "(the VMM) supplies net's config space, so the device's mtu and "
             "max_virtqueue_pairs are not readable here")
NO_MTU = ("the device's mtu is unknown: the back-end has no config space (no CONFIG "
          "protocol feature) and takes no SET_MTU (no MTU protocol feature)")
STEP_RULES = ck.STEP_RULES
NET_RX_RULES = N.RX_RULES
LOOPBACK = N.LOOPBACK_RULE
# frames a check sends: (size, protocol)
SIZES = ((60, nf.UDP), (61, nf.UDP), (342, nf.TCP), (1514, nf.UDP), (1514, nf.TCP),
         (1200, nf.TCP))
# with MRG_RXBUF: 512-byte receive buffers, so a 1514-byte frame spans 3 (§5.1.6.4)
MRG_BUF, FULL_BUF = 512, 2048


FORWARD = "VIRTIO-5.1.4.1-DEV-FORWARD-WITHIN-MTU"


def _session(t: Target, want: int = NET_WANT, **kw: Any) -> NetSession:
    return NetSession(t, want=want, **kw)


def fold(c: Ctx, st: NetStep, what: str, judged: set[str], mtu: int | None = None) -> None:
    """One exchange into results: the two ring verdicts, every packet, the delivery.

    Every rule judged without a violation is one pass; ``judged`` collects the receive
    rules evaluated (what is left is skipped with its reason by :func:`_rest`).  An
    exchange the back-end did not survive raises :class:`ProtocolViolation`."""
    for q, step in (("transmitq", st.tx), ("receiveq", st.rx)):
        for v in step.verdict.violations:
            c.add(v.rule, False, f"{what}: {q}: {v.detail}", step.evidence(), v.level)
    if st.outcome in ("closed", "crashed"):
        kind = ViolationKind.CRASHED if st.outcome == "crashed" else ViolationKind.CLOSED
        gone = (f"exited ({c.target.exit_status()})" if st.outcome == "crashed" else
                "closed the connection")
        raise ProtocolViolation(kind, 0, f"{what}: the back-end {gone} while frames were in "
                                         f"flight", st.evidence() + ck._log_ops(c.target))
    for q, step in (("transmitq", st.tx), ("receiveq", st.rx)):
        for rule in sorted(step.verdict.judged - step.verdict.rules()):
            c.add(rule, True, f"{what}: {q}")
    ok = st.outcome == "completed" and st.tx.verdict.ok
    c.add("PVSPEC-RING-PROGRESS", ok, f"{what}: outcome {st.outcome}, {st.tx_done} transmit "
          f"buffer(s) used", () if ok else st.evidence())
    sent = [p for p in st.packets if p.sent is not None]
    for p in st.packets:
        j = p.judgement
        where = f"{what}: packet in receive head(s) {list(p.heads)}"
        bad = {v.requirement for v in j.violations} | {w.requirement for w in j.warnings}
        for bad_rx in j.violations:
            c.add(bad_rx.requirement, False, f"{where}: {bad_rx.detail}", st.rx.evidence())
        for w in j.warnings:
            c.add(w.requirement, False, f"{where}: {w.detail}", st.rx.evidence(), "SHOULD")
        for rule in sorted(j.judged - bad):
            c.add(rule, True, where)
        judged |= j.judged
        if p.sent is not None and p.sent.hdr.gso_type == N.GSO_NONE:
            lb = p.loopback
            c.add(LOOPBACK, lb is None, f"{where}: {len(p.sent.frame)}-byte frame"
                  + (f": {lb.detail}" if lb else " came back as sent"),
                  () if lb is None else st.evidence())
    frames = st.tx.placed
    if mtu is not None and st.outcome == "completed":
        back = [len(p.judgement.frame) for p in sent if p.loopback is None]
        fv = N.judge_forwarded([(f.hdr, f.frame) for _, f in frames], back, mtu)
        c.add(FORWARD, fv is None, f"{what}: mtu {mtu}" + (f": {fv.detail}" if fv else ""),
              () if fv is None else st.evidence())
    if len(sent) < len(frames):
        c.add(LOOPBACK, False, f"{what}: {len(sent)} of {len(frames)} frames came back "
              f"(receive buffers were posted for all)", st.evidence())


def _rest(c: Ctx, s: NetSession, judged: set[str]) -> None:
    """Skip the receive rules no packet of this check gave occasion to judge, with why."""
    for rule in NET_RX_RULES:
        if rule in judged:
            continue
        why, reason = _why_not(rule, s)
        c.skip(rule, why, reason)


def _why_not(rule: str, s: NetSession) -> tuple[str, NotJudged]:
    """Why a receive rule no packet judged: the features this check negotiated (not
    offered / not applicable), what the platform does not show, or not reached."""
    has = s.has
    if rule == "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU":
        if not has("MTU"):
            return "MTU not negotiated", NotJudged.NOT_OFFERED
        return NO_MTU, NotJudged.PLATFORM
    if rule == "VIRTIO-5.1.6.4.1-DEV-RSC-INFO" and not has("RSC_EXT"):
        return "RSC_EXT not negotiated", NotJudged.NOT_OFFERED
    if rule == "VIRTIO-5.1.6.4.1-DEV-NO-RSC-INFO" and has("RSC_EXT"):
        return "RSC_EXT negotiated: the rule does not apply", NotJudged.NOT_APPLICABLE
    mrg_rules = ("VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG", "VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL",
                 "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER")
    if rule in mrg_rules and not s.mrg:
        return "MRG_RXBUF not negotiated in this check", NotJudged.NOT_APPLICABLE
    if rule in ("VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE", "VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC") \
            and s.mrg:
        return "MRG_RXBUF negotiated in this check", NotJudged.NOT_APPLICABLE
    if rule in ("VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO", "VIRTIO-5.1.6.4.1-DEV-FULL-CSUM") \
            and has("GUEST_CSUM"):
        return "GUEST_CSUM negotiated in this check", NotJudged.NOT_APPLICABLE
    return "no packet of this check gave occasion to judge it", NotJudged.NOT_REACHED


def _platform(c: Ctx) -> None:
    for rule, why in N.NOT_OBSERVABLE.items():
        c.skip(rule, why, NotJudged.PLATFORM)


def _frames(sizes: tuple[tuple[int, int], ...] = SIZES, csum: bool = False,
            split: int = 1, indirect: bool = False, **layout: Any) -> list[Sent]:
    """Frames to transmit: complete ones, or (``csum``) partial ones with NEEDS_CSUM and
    csum_start/csum_offset as §5.1.6.2 item 2 describes (CSUM must be negotiated)."""
    out = []
    for k, (size, proto) in enumerate(sizes):
        if csum:
            fr = nf.frame(size, proto, seed=k + 1, partial=True)
            start, off = nf.csum_fields(fr)
            hdr = N.NetHdr(N.F_NEEDS_CSUM, csum_start=start, csum_offset=off)
        else:
            fr, hdr = nf.frame(size, proto, seed=k + 1), N.NetHdr()
        out.append(Sent(hdr, fr, split, indirect, **layout))
    return out


def _rx_sizes(s: NetSession, frames: list[Sent], spare: int = 4) -> list[int]:
    """Receive buffers for ``frames``: 512 bytes with MRG_RXBUF (big frames span several,
    §5.1.6.4), else 2048 (header + 1514 fit, §5.1.6.3), plus ``spare``."""
    if s.mrg:
        n = sum(-(-(N.HDR_LEN + len(f.frame)) // MRG_BUF) for f in frames) + spare
        return [MRG_BUF] * min(n, s.rx_room())
    return [FULL_BUF] * min(len(frames) + spare, s.rx_room())


# --- the checks ---------------------------------------------------------------------------


def check_net_features(t: Target) -> list[Result]:
    """2.2.2 / 6.2 / 5.1.3.1: the device's offer; 5.1.4.1 config where it can be read."""
    c = Ctx(t, "net-features")
    with _session(t) as s:
        ck.judge_offer(c, F.NET, s.offered, s.acked, LEGACY_NET_BITS,
                       " and net's legacy GSO bit 6")
        cfg_ops = text_ops([f"config {s.config.hex()}"], "config") if s.config else ()
        c.add("VHOST-USER-REPLY", True,
              f"protocol features {s.poffered:#x}, acked {s.packed:#x}")
        gated = dict(ck.gated_not_offered("net", s.offered))
        for rule in CONFIG_RULES:
            if rule in gated:
                c.skip(rule, gated[rule], NotJudged.NOT_OFFERED)
            elif not s.config:
                c.skip(rule, NO_CONFIG, NotJudged.PLATFORM)
        for rule in ctrlq_rules():
            if rule not in gated:
                c.skip(rule, CTRLQ_DETAIL, NotJudged.PLATFORM)
        if s.config:
            sv = N.check_speed_duplex(s.config, s.virtio_features)
            if F.has(s.virtio_features, FN["SPEED_DUPLEX"]):
                c.add(sv.requirement if sv else "VIRTIO-5.1.4.1-DEV-SPEED-RANGE", sv is None,
                      sv.detail if sv else "speed and duplex in range")
            for rule, v in N.judge_config(s.config, s.offered):
                c.add(rule, v is None, v.detail if v else "in range", cfg_ops)
    return c.results


def _loopback(t: Target, name: str, want: int, rounds: int = 2, csum: bool = False,
              split: int = 1, indirect: bool = False, rx_split: int = 1,
              rx_indirect: bool = False, layout: dict[str, Any] | None = None,
              spurious: bool = False) -> list[Result]:
    """``rounds`` exchanges of the frames of :data:`SIZES` (``layout``: more Sent fields);
    ``spurious``: kick both queues with nothing new first (2.7.10.2)."""
    c = Ctx(t, name)
    judged: set[str] = set()
    with _session(t, want=want) as s:
        mtu0 = N.mtu_of(s.config) if s.config and s.has("MTU") else None
        if spurious:
            s.rx_vring.kick()
            s.tx_vring.kick()
            time.sleep(0.05)
        if csum and not s.has("CSUM"):
            c.skip(LOOPBACK, "CSUM not offered: no frame can ask for a checksum",
                   NotJudged.NOT_OFFERED)
            return c.results
        last: NetStep | None = None
        for k in range(rounds):
            frames = _frames(csum=csum, split=split, indirect=indirect, **(layout or {}))
            s.poison = POISONS[k % 2]  # the same frames into the other poison
            st = s.exchange(frames, _rx_sizes(s, frames), rx_split=rx_split,
                            rx_indirect=rx_indirect)
            what = (f"round {k}: {len(frames)} frames"
                    + (", NEEDS_CSUM" if csum else "")
                    + (f", tx {split} descriptors" if split > 1 else "")
                    + (", tx indirect" if indirect and s.feats.indirect else "")
                    + (f", rx {rx_split} descriptors" if rx_split > 1 else "")
                    + (", rx indirect" if rx_indirect and s.feats.indirect else ""))
            fold(c, st, what, judged, s.mtu)
            if last is not None:
                _two_poisons(c, last, st, what)
            last = st
        _rest(c, s, judged)
        _platform(c)
        if mtu0 is not None:
            # 5.1.4.1: mtu, once set, never changes: read again after the exchanges
            mtu1 = N.mtu_of(s.fe.get_config(len(s.config)))
            c.add("VIRTIO-5.1.4.1-DEV-MTU-FIXED", mtu1 == mtu0,
                  f"config mtu {mtu0} at the start, {mtu1} after {rounds} exchange(s)")
        if s.mtu is None:
            why = NO_MTU if s.has("MTU") else "MTU not negotiated"
            c.skip(FORWARD, why, NotJudged.PLATFORM if s.has("MTU") else NotJudged.NOT_OFFERED)
    return c.results


def _two_poisons(c: Ctx, a: NetStep, b: NetStep, what: str) -> None:
    """2.7.8.2: the packets of two rounds that sent the same frames into buffers of the
    same sizes, poisoned differently: what the used len counts must have been written."""
    for pa, pb in zip(a.packets, b.packets, strict=False):
        if pa.sent is None or pb.sent is None or pa.sent != pb.sent or pa.lens != pb.lens:
            continue
        v = N.judge_rx_written(pa.judgement, pb.judgement, pa.lens)
        c.add("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", v is None,
              f"{what}: {len(pa.sent.frame)}-byte frame received twice (poisons "
              f"{POISONS[0]:#x}, {POISONS[1]:#x})" + (f": {v.detail}" if v else ""),
              () if v is None else a.rx.evidence() + b.rx.evidence())


def check_net_loopback(t: Target) -> list[Result]:
    """Frames of 60..1514 bytes out and back, with MRG_RXBUF where offered (512-byte
    receive buffers: a 1514-byte frame spans three, §5.1.6.4.1)."""
    return _loopback(t, "net-loopback", NET_WANT)


def check_net_loopback_no_mrg(t: Target) -> list[Result]:
    """The same without MRG_RXBUF: one 2048-byte buffer per packet, num_buffers 1."""
    return _loopback(t, "net-loopback-no-mrg", NET_WANT & ~F.mask(FN["MRG_RXBUF"]))


def check_net_csum(t: Target) -> list[Result]:
    """Frames asking the device for their checksum (NEEDS_CSUM, §5.1.6.2 item 2): with
    GUEST_CSUM they may come back partial and flagged, without it flags 0 and complete."""
    out = _loopback(t, "net-csum-guest", NET_WANT, rounds=1, csum=True)
    out += _loopback(t, "net-csum-no-guest", NET_WANT & ~F.mask(FN["GUEST_CSUM"]), rounds=1,
                     csum=True)
    return out


def _carried(rs: list[Result]) -> tuple[bool, str]:
    """Whether every frame of a loopback check came back as sent and every transmit
    buffer was used (its LOOPBACK and PROGRESS results), and a summary."""
    lb = [r for r in rs if r.rule in (LOOPBACK, "PVSPEC-RING-PROGRESS")]
    bad = [r for r in lb if r.status not in ("pass", "warn")]
    ok = bool(lb) and not bad and any(r.rule == LOOPBACK for r in lb)
    return ok, (f"{sum(r.rule == LOOPBACK for r in lb)} frame(s) came back as sent" if ok
                else "; ".join(r.detail for r in bad[:2]) or "nothing came back")


def check_net_chains(t: Target) -> list[Result]:
    """2.7.4 any descriptor layout: header apart and the frame in two descriptors, indirect
    tables where negotiated, receive buffers in two descriptors (direct and indirect);
    2.7.10.2 a spurious kick on both queues first; 2.7.5.3.2 (split rings, INDIRECT_DESC)
    a mixed chain -- the header in an ordinary descriptor chained to an indirect table
    with the frame -- and WRITE set on the descriptor that points at a table."""
    c = Ctx(t, "net-chains")
    out = _loopback(t, "net-chains", NET_WANT, rounds=1, split=3, rx_split=2, spurious=True)
    ok, what = _carried(out)
    c.add("VIRTIO-2.7.4-DEV-NO-LAYOUT-ASSUMPTION", ok,
          f"frames in 3 transmit descriptors (header apart), receive buffers in 2: {what}")
    c.add("VIRTIO-2.7.10-DEV-SPURIOUS", ok,
          f"both queues kicked with nothing new, then an exchange: {what}")
    out += _loopback(t, "net-chains-indirect", NET_WANT, rounds=1, split=3, indirect=True,
                     rx_split=2, rx_indirect=True)
    with _session(t) as s:
        split_indirect = s.feats.indirect and not s.feats.packed
    rules = {"mixed": "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN",
             "write": "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT"}
    if not split_indirect:
        for rule in rules.values():
            c.skip(rule, "INDIRECT_DESC not offered", NotJudged.NOT_OFFERED)
        return c.results + out
    mixed = _loopback(t, "net-chains-mixed", NET_WANT, rounds=1, split=3, indirect=True,
                      layout={"direct_prefix": 1})
    ok, what = _carried(mixed)
    c.add(rules["mixed"], ok, "transmit chains: the header in an ordinary descriptor "
          f"chained to an indirect table holding the frame: {what}")
    write = _loopback(t, "net-chains-indirect-write", NET_WANT, rounds=1, split=2,
                      indirect=True, layout={"write_on_indirect": True})
    ok, what = _carried(write)
    c.add(rules["write"], ok, "transmit chains through an indirect descriptor with WRITE "
          f"set: {what}")
    return c.results + out + mixed + write


def check_net_in_order(t: Target) -> list[Result]:
    """6.2 / 2.7.9 on both queues: with IN_ORDER, buffers are used in the order they were
    made available (a batch may be returned by its last entry, the oracle allows for it)."""
    c = Ctx(t, "net-in-order")
    with _session(t, want=NET_WANT | F.mask(F.IN_ORDER)) as s:
        in_order = s.feats.in_order
    if not in_order:
        c.skip("VIRTIO-6.2-DEV-IN-ORDER", "IN_ORDER not offered", NotJudged.NOT_OFFERED)
        return c.results
    return c.results + _loopback(t, "net-in-order", NET_WANT | F.mask(F.IN_ORDER), rounds=2)


PACKED_RULES = ("VIRTIO-2.8.15-DEV-NO-WRITE-READABLE", "PVSPEC-RING-PACKED-DESC-RING",
                "PVSPEC-RING-PACKED-NOTIFY", "PVSPEC-RING-PACKED-USED-LEN")
LIST_ORDER = "VIRTIO-2.8.18-DEV-LIST-ORDER"
WAIT_AVAIL = "VIRTIO-2.8.15-DEV-WAIT-AVAIL"
HELD_WAIT = 0.3  # seconds a back-end is given to (wrongly) take a list not made available
# packed-ring rules about the order of what happens inside the device: a front-end sees
# the ring before and after a step, never when the device started on a list, when a
# buffer completed, nor the order of its writes to a descriptor
PACKED_PLATFORM = {
    "VIRTIO-2.8.12-DEV-PROCESS-IN-RING-ORDER": (
        "when the device starts processing each list is internal to it: a front-end sees "
        "the ring before and after, and a loopback the order frames come back in, which a "
        "pipelined device may keep whatever order it started them in"),
    "VIRTIO-2.8.12-DEV-WRITE-IN-COMPLETION-ORDER": (
        "the order in which the device's buffers complete is internal to it: only the "
        "order of the used descriptors is seen"),
    "VIRTIO-2.8.15-DEV-NO-CHANGE-AFTER-USED": (
        "a front-end sees the ring before and after each step, not the order of the "
        "device's writes to a descriptor within it (the USED flag first or last)"),
}


def check_net_packed(t: Target) -> list[Result]:
    """2.8 packed rings on both queues where RING_PACKED is offered: the loopback rounds
    again, judged by judge_packed (several rounds: the ring wraps and both wrap counters
    flip), with and without MRG_RXBUF."""
    c = Ctx(t, "net-packed")
    packed = F.mask(F.RING_PACKED)
    with _session(t, want=NET_WANT | packed) as s:
        offered = s.feats.packed
    if not offered:
        for rule in (*PACKED_RULES, LIST_ORDER, WAIT_AVAIL, *PACKED_PLATFORM):
            c.skip(rule, "RING_PACKED not offered", NotJudged.NOT_OFFERED)
        return c.results
    for rule, why in PACKED_PLATFORM.items():
        c.skip(rule, why, NotJudged.PLATFORM)
    # 2.8.18: lists of several descriptors -- the frame in three transmit descriptors, the
    # receive buffers in two: a frame that comes back byte for byte was read, and written,
    # part after part in the order of its list
    chains = _loopback(t, "net-packed-chains", NET_WANT | packed, rounds=1, split=3,
                       rx_split=2)
    ok, what = _carried(chains)
    c.add(LIST_ORDER, ok, "transmit lists of 3 descriptors (header apart), receive lists of "
          f"2: {what}")
    _wait_avail(t, c, NET_WANT | packed)
    # 12 rounds of 6 frames: 72 transmit lists on a 64-slot ring, both counters flip
    return (c.results + chains + _loopback(t, "net-packed", NET_WANT | packed, rounds=12)
            + _loopback(t, "net-packed-no-mrg", NET_WANT & ~F.mask(FN["MRG_RXBUF"]) | packed,
                        rounds=2))


def _wait_avail(t: Target, c: Ctx, want: int) -> None:
    """2.8.15: the device takes a descriptor only once its AVAIL bit says so.  A transmit
    list is written whole -- buffer, descriptor, id -- but for its flags word, left as
    the previous lap's (not available); the device is kicked and given HELD_WAIT s: it
    must use nothing, and deliver nothing.  Then the flags word is written and kicked
    again: the frame must now be sent (so the device was there to take it)."""
    with _session(t, want=want) as s:
        q, rq = s.txq, s.rxq
        assert isinstance(q, PackedQueue) and isinstance(rq, PackedQueue)
        assert s.tx_mem is not None
        s.post_rx([FULL_BUF] * 2)
        _b, _r, kick = rq.publish()
        if kick:
            s.rx_vring.kick()
        fr = nf.frame(60, nf.UDP, seed=9)
        raw = N.NetHdr().encode() + fr
        s.tx_mem.write(TX_BASE + DATA, raw)
        q.add([(TX_BASE + DATA, len(raw), False)], False)
        held = q.publish_held()
        s.tx_vring.kick()
        deadline = time.monotonic() + HELD_WAIT
        early = 0
        while time.monotonic() < deadline and not early:
            time.sleep(0.01)
            early = q.used_count() + rq.used_count()
        q.release(held)
        s.tx_vring.kick()  # whatever the device's event flags say: it is to look now
        deadline = time.monotonic() + s.timeout
        while time.monotonic() < deadline and not (q.used_count() and rq.used_count()):
            time.sleep(0.01)
        late = (q.used_count(), rq.used_count())
    if early:
        c.add(WAIT_AVAIL, False, f"a transmit list written but not made available (its "
              f"flags word the previous lap's) was used ({early} used descriptor(s) on the "
              f"two queues within {HELD_WAIT} s of a kick)")
    elif late[0] and late[1]:
        c.add(WAIT_AVAIL, True, f"a list written but not made available was left alone for "
              f"{HELD_WAIT} s after a kick; once its flags were written it was sent and came "
              f"back")
    else:
        c.skip(WAIT_AVAIL, f"the list was left alone while not available, but not used "
               f"once it was either (transmit {late[0]}, receive {late[1]} used): nothing "
               f"shows the device would have taken it", NotJudged.NOT_REACHED)


def check_net_notifications(t: Target) -> list[Result]:
    """2.7.7.2 on both queues: used_event far ahead (no notification wanted) under
    EVENT_IDX; NO_INTERRUPT and flags 0 without it."""
    c = Ctx(t, "net-notifications")
    judged: set[str] = set()
    frames = _frames(((60, nf.UDP), (1514, nf.TCP)))
    with _session(t) as s:
        if s.feats.event_idx:
            far = tuple(rm.idx_add(q.drv.last_used, 100) for q in (s.rxq, s.txq)
                        if isinstance(q, SplitQueue))
            st = s.exchange(frames, _rx_sizes(s, frames), used_event=(far[0], far[1]))
            fold(c, st, "used_event far ahead on both queues", judged)
            st = s.exchange(frames, _rx_sizes(s, frames))
            fold(c, st, "used_event at the next entry on both queues", judged)
            # 2.7.7.2: under EVENT_IDX bit 0 of avail.flags is ignored: NO_INTERRUPT set
            # (breaking the driver's 2.7.7.1 on purpose) and used_event owing one
            splits = [q for q in (s.rxq, s.txq) if isinstance(q, SplitQueue)]
            if len(splits) == 2:
                for sq in splits:
                    ck.set_avail_flags(sq.mem, sq.layout, sp.VIRTQ_AVAIL_F_NO_INTERRUPT)
                st = s.exchange(frames, _rx_sizes(s, frames))
                fold(c, st, "EVENT_IDX, NO_INTERRUPT set on both queues, used_event at the "
                     "next entry (notifications owed)", judged)
                for sq in splits:
                    ck.set_avail_flags(sq.mem, sq.layout, 0)
    with _session(t, want=NET_WANT & ~F.mask(F.EVENT_IDX)) as s:
        # without EVENT_IDX used_event means nothing: far ahead, flags 0 still owe them
        for nq in (s.rxq, s.txq):
            if isinstance(nq, SplitQueue):
                sp.driver_set_used_event(nq.mem, nq.drv, rm.idx_add(nq.drv.last_used, 100))
        st = s.exchange(frames, _rx_sizes(s, frames))
        fold(c, st, "no EVENT_IDX, used_event far ahead, avail.flags 0 (notifications owed)",
             judged)
        s.rxq.no_interrupt(True)
        s.txq.no_interrupt(True)
        st = s.exchange(frames, _rx_sizes(s, frames))
        fold(c, st, "no EVENT_IDX, NO_INTERRUPT on both queues", judged)
    return c.results


def check_net_index_wrap(t: Target, start: int = 65530, rounds: int = 5) -> list[Result]:
    """2.7.6/2.7.8 on both queues: indices wrap at 2^16; GET_VRING_BASE agrees."""
    c = Ctx(t, "net-index-wrap")
    judged: set[str] = set()
    with _session(t, base=start) as s:
        n_tx = 0
        for k in range(rounds):
            frames = _frames(((60, nf.UDP), (342, nf.TCP)))
            st = s.exchange(frames, _rx_sizes(s, frames, spare=0))
            fold(c, st, f"round {k} from transmit avail.idx {(start + n_tx) & 0xFFFF}",
                 judged)
            n_tx += len(frames)
        base = s.fe.stop_vring(1)
        want = (start + n_tx) & 0xFFFF
        c.add("VHOST-USER-VRING-BASE", base == want, f"transmitq GET_VRING_BASE {base}, "
              f"expected {want}", text_ops(s.fe.trace[-2:]))
    return c.results


def check_net_tso(t: Target) -> list[Result]:
    """HOST_TSO4 and GUEST_TSO4 where offered (dpdk-vhost-net:tso): a 3000-byte TCP frame
    sent as GSO TCPV4 (§5.1.6.2 item 3) must come back as packets whose headers keep the
    GUEST_* rules; with GUEST_TSO4 and GUEST_ECN negotiated a segment with CWR set is sent
    too (GSO_ECN)."""
    c = Ctx(t, "net-tso")
    judged: set[str] = set()
    gso = F.mask(FN["HOST_TSO4"], FN["GUEST_TSO4"], FN["HOST_ECN"], FN["GUEST_ECN"])
    with _session(t, want=NET_WANT | gso) as s:
        if not s.has("HOST_TSO4"):
            c.skip("VIRTIO-5.1.6.4.1-DEV-GSO-NEEDS-CSUM", "HOST_TSO4 not offered: no GSO "
                   "frame can be sent", NotJudged.NOT_OFFERED)
            return c.results
        frames = []
        for k, flags in enumerate((0x18, 0x98)):  # PSH|ACK; CWR|PSH|ACK
            fr = nf.frame(3000, nf.TCP, seed=k + 1, partial=True, tcp_flags=flags)
            start, off = nf.csum_fields(fr)
            ecn = N.GSO_ECN if flags & 0x80 and s.has("HOST_ECN") else 0
            hdr = N.NetHdr(N.F_NEEDS_CSUM, N.GSO_TCPV4 | ecn, start + 20, 1448, start, off)
            frames.append(Sent(hdr, fr, 2))
        st = s.exchange(frames, _rx_sizes(s, frames, spare=8))
        fold(c, st, "two 3000-byte GSO TCPV4 frames (the second with CWR)", judged)
        back = [p for p in st.packets if p.sent is not None]
        c.add(LOOPBACK, len(back) >= 1 and all(p.judgement.frame for p in back),
              f"{len(st.packets)} packet(s) came back for 2 GSO frames: " + ", ".join(
                  f"{len(p.judgement.frame)} bytes gso_type "
                  f"{p.judgement.hdr.gso_type if p.judgement.hdr else '?'}"
                  for p in st.packets), () if back else st.evidence())
        _rest(c, s, judged)
    return c.results


UNKNOWN_FLAGS = 0xF8  # transmit header flag bits 1.3 defines nowhere (NEEDS_CSUM is 1,
# DATA_VALID 2 and RSC_INFO 4, the last two for received packets only)
TX_FLAGS_RULE = "VIRTIO-5.1.6.2.2-DEV-IGNORE-UNKNOWN-FLAGS"
TX_CSUM_FIELDS_RULE = "VIRTIO-5.1.6.2.2-DEV-NO-CSUM-FIELDS"


def check_net_tx_header(t: Target) -> list[Result]:
    """5.1.6.2.2 on what a loopback hands back: complete frames sent (a) with every flag
    bit 1.3 does not define set, and (b) without NEEDS_CSUM but with csum_start and
    csum_offset naming a spot inside the IP header.  A device that ignores the unknown
    bits, and does not use the checksum fields, delivers both as sent: same bytes, and
    flags without NEEDS_CSUM (a device that passed the fields on would flag them).  What
    such a device does inside without any effect on the frame is not seen: the rules are
    judged on their effect, the only one the bits and fields can have (a checksum
    completed, or handed on, at csum_start/csum_offset)."""
    c = Ctx(t, "net-tx-header")
    judged: set[str] = set()
    with _session(t) as s:
        sizes = ((60, nf.UDP), (342, nf.TCP), (1514, nf.UDP))
        cases = {TX_FLAGS_RULE: [Sent(N.NetHdr(UNKNOWN_FLAGS), nf.frame(n, p, seed=k + 1))
                                 for k, (n, p) in enumerate(sizes)],
                 # csum_start 14 + 6 and offset 4: inside the IPv4 header (its ttl and
                 # protocol, then the source address) -- any use would change those bytes
                 TX_CSUM_FIELDS_RULE: [Sent(N.NetHdr(0, csum_start=20, csum_offset=4),
                                            nf.frame(n, p, seed=k + 7))
                                       for k, (n, p) in enumerate(sizes)]}
        for rule, frames in cases.items():
            what = ("flags 0xf8 (bits 1.3 defines nowhere)" if rule == TX_FLAGS_RULE else
                    "flags 0, csum_start 20, csum_offset 4")
            st = s.exchange(frames, _rx_sizes(s, frames))
            fold(c, st, f"{len(frames)} complete frames, {what}", judged)
            back = [p for p in st.packets if p.sent is not None]
            why = []
            for p in back:
                flags = p.judgement.hdr.flags if p.judgement.hdr is not None else 0
                if p.loopback is not None:
                    why.append(p.loopback.detail)
                elif flags & N.F_NEEDS_CSUM:
                    why.append(f"came back with flags {flags:#x} (NEEDS_CSUM)")
            ok = st.outcome == "completed" and len(back) == len(frames) and not why
            c.add(rule, ok, f"{what}: {len(back)} of {len(frames)} came back"
                  + (" as sent, flags without NEEDS_CSUM" if ok else
                     "".join(f"; {w}" for w in why[:2])), () if ok else st.evidence())
        _rest(c, s, judged)
    return c.results


VLAN_RULE = "VIRTIO-5.1.6.5.3.1-DEV-NO-VLAN-FILTER"
VLAN_IDS = (1, 100, 4094)


def vlan_frame(size: int, vid: int, seed: int) -> bytes:
    """An 802.1Q-tagged frame: a ``size - 4``-byte IPv4 UDP frame with the tag (TPID
    0x8100, priority 0, VLAN ``vid``) inserted after the two addresses."""
    fr = nf.frame(size - 4, nf.UDP, seed=seed)
    return fr[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + fr[12:]


def check_net_vlan(t: Target) -> list[Result]:
    """5.1.6.5.3.1: without CTRL_VLAN negotiated the device accepts every VLAN-tagged
    packet: tagged frames (VLANs 1, 100, 4094) sent out must come back, unchanged.  On a
    loopback a frame that does not come back was dropped on the way out or on the way in;
    either way the device did not pass a tagged packet it must accept."""
    c = Ctx(t, "net-vlan")
    with _session(t, want=NET_WANT & ~F.mask(FN["CTRL_VLAN"])) as s:
        frames = [Sent(N.NetHdr(), vlan_frame(size, vid, k + 1))
                  for k, (size, vid) in enumerate(zip((64, 300, 1514), VLAN_IDS, strict=True))]
        st = s.exchange(frames, _rx_sizes(s, frames))
        fold(c, st, f"3 frames tagged VLAN {', '.join(map(str, VLAN_IDS))}", set())
        back = {p.sent.frame for p in st.packets if p.sent is not None and p.loopback is None}
        missing = [int.from_bytes(f.frame[14:16], "big") for f in frames if f.frame not in back]
        c.add(VLAN_RULE, not missing and st.outcome == "completed",
              f"CTRL_VLAN not negotiated: {len(frames) - len(missing)} of {len(frames)} "
              f"tagged frames came back" + (f"; VLAN {missing} did not" if missing else ""),
              () if not missing else st.evidence())
    return c.results


# --- hostile transmit rings (2.7.5, 2.7.5.2, 2.7.6.1) --------------------------------------

NEXT = sp.VIRTQ_DESC_F_NEXT
HOSTILE = ("descriptor-loop", "head-out-of-range", "next-out-of-range",
           "buffer-outside-memory", "avail-idx-overrun")
OUTSIDE = 0x80000  # a guest-physical address in neither region
HOSTILE_WAIT = 0.2  # seconds the back-end gets to do something with the hostile chain


def _hostile_ring(s: NetSession, name: str) -> int:
    """Write the malformed transmit chain ``name`` by hand (after a valid header and
    frame); returns how far avail.idx is to move."""
    q = s.txq
    assert isinstance(q, SplitQueue) and s.tx_mem is not None
    lay, mem, hdr = q.layout, s.tx_mem, TX_BASE + DATA
    mem.write(hdr, N.NetHdr().encode() + nf.frame(60))

    def desc(i: int, addr: int, n: int, flags: int, nxt: int) -> None:
        sp.Desc(addr, n, flags, nxt).write(mem, rm.desc_addr(lay.desc, i))

    def head(h: int) -> None:
        write_le16(mem, rm.avail_ring_addr(lay.avail, rm.ring_slot(q.drv.avail_idx,
                                                                    lay.size)), h)

    if name == "avail-idx-overrun":
        return lay.size + 1
    if name == "head-out-of-range":
        head(lay.size + 5)
        return 1
    nxt = {"descriptor-loop": 10, "next-out-of-range": lay.size + 7}.get(name, 11)
    desc(10, hdr, N.HDR_LEN, NEXT, 11)
    desc(11, OUTSIDE if name == "buffer-outside-memory" else hdr + N.HDR_LEN, 60,
         NEXT if name != "buffer-outside-memory" else 0, nxt)
    head(10)
    return 1


def check_net_hostile(t: Target) -> list[Result]:
    """Malformed transmit rings: the back-end may skip the chain, stop the queue or close
    the connection; it must not complete it as valid, write outside, hang or die
    (PVSPEC-RING-MALFORMED, VHOST-USER-RESPONSIVE: a new connection must be answered)."""
    out: list[Result] = []
    for name in HOSTILE:
        c = Ctx(t, f"net-hostile/{name}")
        try:
            with _session(t, want=NET_WANT & ~F.mask(F.EVENT_IDX)) as s:
                if not isinstance(s.txq, SplitQueue):
                    continue
                fold(c, s.exchange(_frames(((60, nf.UDP),)), [FULL_BUF] * 2),
                     f"{name}: control frame", set())
                adv = _hostile_ring(s, name)
                q = s.txq
                q.drv = attrs.evolve(q.drv, avail_idx=rm.idx_add(q.drv.avail_idx, adv))
                before, _ring, _kick = q.publish()
                s.tx_vring.kick()
                deadline = time.monotonic() + HOSTILE_WAIT
                notified = False
                while time.monotonic() < deadline and not s.fe.backend_closed():
                    notified |= s.tx_vring.wait_call(0.01)
                assert s.tx_mem is not None
                v = q.judge(before, s.tx_mem.frozen(), notified, False)
                for bad in v.violations:
                    c.add(bad.rule, False, f"{name}: {bad.detail}", (), bad.level)
                for rule in sorted(v.judged - v.rules() - {"PVSPEC-RING-MALFORMED"}):
                    c.add(rule, True, f"{name}: hostile step")
                malformed = "PVSPEC-RING-MALFORMED" in v.rules()
                c.add("PVSPEC-RING-MALFORMED", not malformed, f"{name}: used.idx "
                      f"{q.used_count()} new entries")
            why = ck.probe(t)
            if why is not None:
                raise ProtocolViolation(ViolationKind.CLOSED, 0, f"{name}: the back-end does "
                                        f"not answer a new connection: {why}",
                                        ck._log_ops(t))
            c.add("VHOST-USER-RESPONSIVE", True, f"{name}: answers a new connection")
        except ProtocolViolation as e:
            e.dead = ck.probe(t) if e.gone else None
            if e.dead is not None:
                raise
            c.error(e)
        out.extend(c.results)
    return out


NET_CHECKS: dict[str, ck.Check] = {
    "net-features": check_net_features,
    "net-loopback": check_net_loopback,
    "net-loopback-no-mrg": check_net_loopback_no_mrg,
    "net-csum": check_net_csum,
    "net-chains": check_net_chains,
    "net-in-order": check_net_in_order,
    "net-packed": check_net_packed,
    "net-notifications": check_net_notifications,
    "net-index-wrap": check_net_index_wrap,
    "net-tso": check_net_tso,
    "net-vlan": check_net_vlan,
    "net-tx-header": check_net_tx_header,
    "net-hostile": check_net_hostile,
}
_LOOP = (*STEP_RULES, *NET_RX_RULES, LOOPBACK, FORWARD, *N.NOT_OBSERVABLE,
         "VIRTIO-5.1.4.1-DEV-MTU-FIXED")
NET_COVERS: dict[str, tuple[str, ...]] = {
    "net-features": ("VIRTIO-2.2.2-DEV-NO-UNDEFINED", "VIRTIO-6.2-DEV-OFFER-VERSION-1",
                     *(F.dependency_requirement(F.NET, f) for f in F.DEPENDENCIES[F.NET]),
                     "VHOST-USER-REPLY", *CONFIG_RULES, *ck.gated_rules("net")),
    "net-loopback": _LOOP,
    "net-loopback-no-mrg": _LOOP,
    "net-csum": _LOOP,
    "net-chains": (*_LOOP, "VIRTIO-2.7.4-DEV-NO-LAYOUT-ASSUMPTION", "VIRTIO-2.7.10-DEV-SPURIOUS",
                   "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN",
                   "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT"),
    "net-in-order": (*_LOOP, "VIRTIO-6.2-DEV-IN-ORDER"),
    "net-packed": (*_LOOP, *PACKED_RULES, LIST_ORDER, WAIT_AVAIL, *PACKED_PLATFORM),
    "net-notifications": (*STEP_RULES, "VIRTIO-2.7.7-DEV-NOTIFY-FLAGS0",
                          "VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT",
                          "VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX",
                          "VIRTIO-2.7.7-DEV-NO-NOTIFY-FLAGS1", "VIRTIO-2.7.10-DEV-FLAGS-VALUES",
                          LOOPBACK),
    "net-index-wrap": (*STEP_RULES, "VHOST-USER-VRING-BASE", LOOPBACK),
    "net-vlan": (*STEP_RULES, *NET_RX_RULES, LOOPBACK, VLAN_RULE),
    "net-tx-header": (*STEP_RULES, *NET_RX_RULES, LOOPBACK, TX_FLAGS_RULE,
                      TX_CSUM_FIELDS_RULE),
    "net-tso": (*STEP_RULES, *NET_RX_RULES, LOOPBACK),
    "net-hostile": (*STEP_RULES, "PVSPEC-RING-MALFORMED", "VHOST-USER-RESPONSIVE"),
}
ck.CHECKS["net"] = NET_CHECKS
ck.COVERS.update(NET_COVERS)
