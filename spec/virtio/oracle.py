"""The device oracle: what a conforming device may do with a queue, and a judge.

Given guest memory at the moment the driver notified, the queue layout, the negotiated
features and what the oracle already knows about the device (its :class:`SplitView` or
:class:`PackedView`), the oracle computes the permitted outcomes:

* which exposed chains the device may complete, and in which order (any order, or ring
  order with IN_ORDER, chapter 6.2 / 2.7.9 / 2.8.8);
* what each used entry may say (its id is an exposed or in-flight head; ``len`` at most
  the writable bytes, set before the index, 2.7.8.2);
* where it may write (the writable buffers of processable chains and the device area)
  and read (the rings, the chains' descriptors and buffers);
* whether it must, must not, or may notify (2.7.7.2, 2.8.10);
* for malformed input: skip it (complete with ``len`` 0 and no writes), set
  DEVICE_NEEDS_RESET, or stop, but never treat it as valid and never write outside.

:func:`judge_split` / :func:`judge_packed` then compare a device's observed behaviour
(before/after memory, its access log or the memory diff, whether it notified) with that
set, and name the requirement and section behind each violation.  Device-type payload
rules plug in through ``payload`` (see :data:`PayloadOracle`).  Hangs are the harness's
business (timeouts); the oracle itself only ever does bounded work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from spec.virtio import packed as pk
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.memory import (
    Access,
    GuestMemory,
    Span,
    diff_spans,
    read_le16,
    read_le32,
    uncovered,
)
from spec.virtio.ring_math import RingFeatures
from spec.virtio.split import TOLERABLE, Chain, Fault

# Rules the spec implies without a Requirements statement of their own, or project policy.
IMPLIED_RULES: dict[str, tuple[str, str]] = {
    "PVSPEC-RING-USED-ID": ("2.7.8", "a used entry names a head the driver exposed and "
                            "the device has not returned yet"),
    "PVSPEC-RING-USED-IDX": ("2.7.8", "the used index advances by the buffers returned, "
                             "never past those in flight"),
    "PVSPEC-RING-MALFORMED": ("2.7.5", "a chain breaking a driver rule is never completed as "
                              "if valid: skip it (len 0), set DEVICE_NEEDS_RESET, or stop"),
    "PVSPEC-RING-OUT-OF-BOUNDS": ("2.7.5.1", "the device touches only the rings and the "
                                  "buffers of exposed chains"),
    "PVSPEC-RING-DRIVER-AREA": ("2.7.6", "the driver area is written by the driver only"),
    "PVSPEC-RING-PROGRESS": ("2.7.13.3", "a synchronous device completes every valid exposed "
                             "chain up to the first malformed one"),
    "PVSPEC-RING-LAYOUT": ("2.7.1", "a queue with an invalid layout is not operated"),
    "PVSPEC-RING-PACKED-NOTIFY": ("2.8.10", "used-buffer notifications follow the driver "
                                  "event suppression structure (ENABLE, DISABLE, DESC)"),
    "PVSPEC-RING-PACKED-USED-LEN": ("2.8.4", "a used descriptor's length is at most the "
                                    "writable bytes of its list"),
    "PVSPEC-RING-PACKED-DESC-RING": ("2.8.12", "the device writes a descriptor slot only to "
                                     "mark a list used, at its next used position"),
    # descriptive text of blk's 5.2.6 rather than a Device Requirements statement (a device
    # chapter's rule is in the universe of that device type only)
    "VIRTIO-5.2.6-GET-ID-NUL-PADDED": ("5.2.6", "GET_ID answers the device ID string in 20 "
                                       "bytes: ASCII, NUL-padded when shorter"),
    "VIRTIO-5.2.6-DEV-UNSUPP-TYPE": ("5.2.6", "a request of a type the device does not "
                                     "support (here: one VIRTIO does not define) ends with "
                                     "status UNSUPP"),
    # net's loopback delivery (spec.virtio.devices.net.judge_loopback): what a loopback
    # back-end owes by 5.1.6.2's description of transmission and 5.1.6.4's of reception
    "PVSPEC-NET-LOOPBACK": ("5.1.6.2", "a frame transmitted to a loopback back-end comes "
                            "back byte for byte, but for a checksum the driver asked the "
                            "device to complete (NEEDS_CSUM): completed, or left partial "
                            "with NEEDS_CSUM for the driver"),
    "VIRTIO-5.2.6-DEV-DATA-INTEGRITY": ("5.2.6", "the device presents its disk as it is: "
                                        "capacity counts its sectors, a read returns what "
                                        "the addressed sectors hold, a write changes those "
                                        "sectors and no others"),
}

PayloadOracle = Callable[[Chain, bytes, bytes, int | None], Sequence["Violation"]]
"""Per-request hook: ``(chain, readable bytes, writable bytes after, used len)``."""


@attrs.frozen
class Violation:
    rule: str  # requirement id (registry) or an IMPLIED_RULES key
    section: str
    detail: str
    level: str = "MUST"  # "SHOULD" violations are warnings


@attrs.frozen
class Verdict:
    violations: tuple[Violation, ...]
    completed: tuple[int, ...] = ()  # heads / buffer ids returned in this step
    outcome: str = "ok"  # "ok" | "needs-reset" | "reset-quiet"
    # every rule this step gave occasion to check, violated or not: what a report may
    # count as exercised (a rule never judged stays "skipped", never "passed")
    judged: frozenset[str] = frozenset()
    # the returned buffers' chains as the driver exposed them (walked then, split rings),
    # so a payload judge reads the buffers the driver placed without walking them again
    chains: tuple[Chain, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(v.level == "MUST" for v in self.violations)

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.level != "MUST")

    def rules(self) -> set[str]:
        return {v.rule for v in self.violations}


def _viol(rule: str, detail: str, section: str | None = None, level: str = "MUST") -> Violation:
    if section is None:
        section = IMPLIED_RULES.get(rule, (rule.split("-")[1], ""))[0]
    return Violation(rule, section, detail, level)


def _write_spans(before: GuestMemory, after: GuestMemory,
                 accesses: Sequence[Access] | None) -> list[tuple[Span, int]]:
    """(span, seq) of every write; from the log, or inferred from the memory diff."""
    if accesses is not None:
        return [(a.span, a.seq) for a in accesses if a.kind == "write"]
    b, a = before.snapshot(), after.snapshot()  # type: ignore[attr-defined]
    return [(s, -1) for s in diff_spans(b, a, getattr(before, "base", 0))]


def _last_write_seq(accesses: Sequence[Access], span: Span) -> int | None:
    seqs = [a.seq for a in accesses if a.kind == "write" and a.span.overlaps(span)]
    return max(seqs) if seqs else None


def _covered_before(accesses: Sequence[Access], target: Span, seq: int) -> bool:
    spans = [a.span for a in accesses if a.kind == "write" and a.seq < seq]
    return not uncovered(spans, target)


def _read_bytes(mem: GuestMemory, segs: Sequence[sp.Segment]) -> bytes:
    return b"".join(mem.read(s.addr, s.len) for s in segs)


def _audit_accesses(
    out: list[Violation],
    writes: list[tuple[Span, int]],
    accesses: Sequence[Access] | None,
    ok_chains: Sequence[Chain],
    bad_chains: Sequence[Chain],
    device_area: Sequence[Span],
    driver_area: Sequence[Span],
    desc_area: Sequence[Span],
    rules: dict[str, str],
) -> None:
    """Every write inside device-writable memory, every read inside the queue's memory."""
    may_write = [*device_area, *(s.span for c in ok_chains for s in c.writable)]
    readable = [s.span for c in (*ok_chains, *bad_chains) for s in c.readable]
    tables = [t for c in (*ok_chains, *bad_chains) for t in c.tables]
    bad_writable = [s.span for c in bad_chains for s in c.writable]
    for span, _seq in writes:
        for hole in uncovered(may_write, span):
            if not uncovered(readable, hole):
                out.append(_viol(rules["no-write-readable"],
                                 f"write {hole.addr:#x}+{hole.n} into a device-readable buffer"))
            elif not uncovered([*desc_area, *tables], hole):
                out.append(_viol(rules["no-write-desc"],
                                 f"write {hole.addr:#x}+{hole.n} into a descriptor table"))
            elif not uncovered(bad_writable, hole):
                out.append(_viol("PVSPEC-RING-MALFORMED",
                                 f"write {hole.addr:#x}+{hole.n} into a malformed chain"))
            elif not uncovered(driver_area, hole):
                out.append(_viol(rules["driver-area"],
                                 f"write {hole.addr:#x}+{hole.n} into the driver area"))
            else:
                out.append(_viol("PVSPEC-RING-OUT-OF-BOUNDS",
                                 f"write {hole.addr:#x}+{hole.n} outside every exposed chain"))
    if accesses is None:
        return
    may_read = [*device_area, *driver_area, *desc_area, *tables, *readable,
                *(d for c in (*ok_chains, *bad_chains) for d in c.descs)]
    writable = [s.span for c in (*ok_chains, *bad_chains) for s in c.writable]
    for a in accesses:
        if a.kind != "read":
            continue
        for hole in uncovered(may_read, a.span):
            if not uncovered(writable, hole):
                out.append(_viol(rules["no-read-writable"],
                                 f"read {hole.addr:#x}+{hole.n} of a device-writable buffer",
                                 level="SHOULD"))
            else:
                out.append(_viol("PVSPEC-RING-OUT-OF-BOUNDS",
                                 f"read {hole.addr:#x}+{hole.n} outside every exposed chain"))


# --- split rings ---------------------------------------------------------------------------


@attrs.frozen
class SplitView:
    """What the oracle knows of a split-queue device between steps."""

    layout: sp.SplitLayout
    features: RingFeatures
    last_avail: int  # avail.idx the device has been shown so far
    used_idx: int
    inflight: tuple[Chain, ...] = ()  # exposed, not yet returned, in ring order
    reset: bool = False  # RING_RESET done, not re-enabled (2.6.1)

    @classmethod
    def start(cls, layout: sp.SplitLayout, features: RingFeatures, idx: int = 0) -> SplitView:
        return cls(layout, features, idx, idx)


@attrs.frozen
class SplitExpectation:
    chains: tuple[Chain, ...]  # newly exposed chains, ring order
    overrun: bool
    layout_faults: tuple[Fault, ...]

    def candidates(self, view: SplitView) -> tuple[Chain, ...]:
        return (*view.inflight, *self.chains)


def expect_split(mem: GuestMemory, view: SplitView) -> SplitExpectation:
    """The chains a notification exposes, each walked and classified (2.7.5, 2.7.6)."""
    lay = view.layout
    faults = lay.faults()
    if faults:
        return SplitExpectation((), False, faults)
    avail_idx = sp.read_avail_idx(mem, lay)
    if rm.avail_overrun(avail_idx, view.last_avail, lay.size):
        return SplitExpectation((), True, ())
    chains = []
    for k in range(rm.pending(avail_idx, view.last_avail)):
        head = sp.read_avail_head(mem, lay, rm.idx_add(view.last_avail, k))
        chains.append(sp.walk_chain(mem, lay, head, view.features))
    return SplitExpectation(tuple(chains), False, ())


SPLIT_RULES = {
    "no-write-readable": "VIRTIO-2.7.5-DEV-NO-WRITE-READABLE",
    "no-write-desc": "VIRTIO-2.7.5-DEV-NO-WRITE-DESC",
    "no-read-writable": "VIRTIO-2.7.5-DEV-NO-READ-WRITABLE",
    "driver-area": "PVSPEC-RING-DRIVER-AREA",
}


def judge_split(
    before: GuestMemory,
    after: GuestMemory,
    view: SplitView,
    *,
    notified: bool,
    accesses: Sequence[Access] | None = None,
    needs_reset: bool = False,
    expect_progress: bool = False,
    tolerate: frozenset[Fault] = TOLERABLE,
    payload: PayloadOracle | None = None,
) -> tuple[Verdict, SplitView]:
    """Judge one device step on a split queue; return the verdict and the next view."""
    lay, feats = view.layout, view.features
    out: list[Violation] = []
    writes = _write_spans(before, after, accesses)
    if view.reset:
        if writes or notified:
            out.append(_viol("VIRTIO-2.6.1-DEV-RESET-QUIET",
                             f"{len(writes)} writes, notified={notified} after queue reset"))
        return Verdict(tuple(out), outcome="reset-quiet",
                       judged=frozenset({"VIRTIO-2.6.1-DEV-RESET-QUIET"})), view
    exp = expect_split(before, view)
    if exp.layout_faults:
        if writes or notified:
            out.append(_viol("PVSPEC-RING-LAYOUT", f"queue operated despite {exp.layout_faults}"))
        return Verdict(tuple(out), judged=frozenset({"PVSPEC-RING-LAYOUT"})), view
    cands = list(exp.candidates(view))
    used_after = sp.read_used_idx(after, lay)
    n_new = rm.idx_sub(used_after, view.used_idx)
    completed: list[tuple[Chain, int | None, int | None]] = []  # chain, len, elem address
    remaining = list(cands)
    if rm.ult(len(cands), n_new):
        out.append(_viol("PVSPEC-RING-USED-IDX",
                         f"used.idx advanced by {n_new} with {len(cands)} buffers in flight"))
    pos = 0
    while rm.ult(pos, min(n_new, len(cands))):
        elem = rm.used_elem_addr(lay.used, rm.ring_slot(rm.idx_add(view.used_idx, pos), lay.size))
        ident, length = read_le32(after, elem), read_le32(after, elem + 4)
        heads = [c.head for c in remaining]
        if ident not in heads:
            out.append(_viol("PVSPEC-RING-USED-ID",
                             f"used entry {pos} names {ident}, not an exposed head"))
            break
        k = heads.index(ident)
        if feats.in_order:
            batch = remaining[: k + 1]
            if rm.ult(n_new - pos, len(batch)):
                out.append(_viol("VIRTIO-6.2-DEV-IN-ORDER",
                                 f"entry {pos} (id {ident}) skips {k} earlier buffers but "
                                 f"used.idx moved only {n_new - pos} further"))
                break
        else:
            batch = [remaining[k]]
        for j, c in enumerate(batch):
            last = j == len(batch) - 1
            completed.append((c, length if last else None, elem if last else None))
            remaining.remove(c)
        pos += len(batch)
    idx_seq = _last_write_seq(accesses, Span(rm.used_idx_addr(lay.used), 2)) if accesses else None
    fresh = {id(c) for c in exp.chains}
    for chain, length, elem in completed:
        if not chain.processable(tolerate):
            if length not in (0, None):
                out.append(_viol("PVSPEC-RING-MALFORMED",
                                 f"head {chain.head} completed with len {length} despite "
                                 f"{[f.slug for f in chain.faults]}", chain.faults[-1].section))
            continue
        if length is None:
            continue
        if rm.ult(chain.writable_len, length):
            out.append(_viol("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES",
                             f"head {chain.head}: len {length} > {chain.writable_len} writable"))
        if accesses is not None and idx_seq is not None and elem is not None:
            len_seq = [a.seq for a in accesses if a.kind == "write" and a.seq < idx_seq
                       and not uncovered([a.span], Span(elem + 4, 4))]
            if not len_seq:
                out.append(_viol("VIRTIO-2.7.8-DEV-USED-LEN",
                                 f"head {chain.head}: len not written before used.idx"))
            if id(chain) in fresh:
                for span in chain.writable_offsets(length):
                    if not _covered_before(accesses, span, idx_seq):
                        out.append(_viol("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES",
                                         f"head {chain.head}: {span.addr:#x}+{span.n} of its "
                                         f"len {length} bytes not written before used.idx"))
                        break
        if payload is not None:
            out.extend(payload(chain, _read_bytes(before, chain.readable),
                               _read_bytes(after, chain.writable), length))
    ok = [c for c in cands if c.processable(tolerate)]
    bad = [c for c in cands if not c.processable(tolerate)]
    _audit_accesses(out, writes, accesses, ok, bad, [lay.used_span], [lay.avail_span],
                    [lay.desc_span], SPLIT_RULES)
    _split_notify(out, after, view, used_after, n_new, notified)
    used_flags = read_le16(after, rm.used_flags_addr(lay.used))
    if feats.event_idx and used_flags != 0:
        out.append(_viol("VIRTIO-2.7.10-DEV-FLAGS-ZERO-EVENT-IDX", f"used.flags={used_flags}"))
    elif not feats.event_idx and used_flags not in (0, 1):
        out.append(_viol("VIRTIO-2.7.10-DEV-FLAGS-VALUES", f"used.flags={used_flags}"))
    if expect_progress and not needs_reset and not exp.overrun:
        done = {id(c) for c, _, _ in completed}
        for c in exp.chains:
            if not c.processable(tolerate):
                break
            if id(c) not in done:
                out.append(_viol("PVSPEC-RING-PROGRESS", f"head {c.head} exposed, not completed"))
                break
    nxt = attrs.evolve(
        view,
        last_avail=view.last_avail if exp.overrun else rm.idx_add(view.last_avail, len(exp.chains)),
        used_idx=used_after if not rm.ult(len(cands), n_new) else view.used_idx,
        inflight=tuple(remaining),
    )
    judged = _judged(SPLIT_RULES, accesses, cands, bad, bool(n_new), expect_progress)
    judged |= _split_notify_rules(view, n_new, after, used_after)
    judged |= {"PVSPEC-RING-USED-IDX", "VIRTIO-2.7.10-DEV-FLAGS-ZERO-EVENT-IDX" if feats.event_idx
               else "VIRTIO-2.7.10-DEV-FLAGS-VALUES"}
    if completed and accesses is not None and any(
            c.processable(tolerate) and n is not None for c, n, _ in completed):
        # without the order of the device's writes only half of 2.7.8.2 is seen here (len
        # within the writable space; a len above it still fails): whether the first len
        # bytes were written is judged by comparing two poisons (the used-len checks)
        judged |= {"VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", "VIRTIO-2.7.8-DEV-USED-LEN"}
    if feats.in_order and n_new:
        judged.add("VIRTIO-6.2-DEV-IN-ORDER")
    return (Verdict(tuple(out), tuple(c.head for c, _, _ in completed),
                    "needs-reset" if needs_reset else "ok", frozenset(judged),
                    tuple(c for c, _, _ in completed)), nxt)


def _judged(rules: dict[str, str], accesses: Sequence[Access] | None, cands: Sequence[Chain],
            bad: Sequence[Chain], used: bool, expect_progress: bool) -> set[str]:
    """The rules common to both ring layouts that a step checks whatever happened."""
    out = {rules["no-write-readable"], rules["no-write-desc"], rules["driver-area"],
           "PVSPEC-RING-OUT-OF-BOUNDS"}
    if accesses is not None:
        out.add(rules["no-read-writable"])
    if bad:
        out.add("PVSPEC-RING-MALFORMED")
    if used and cands:
        out.add("PVSPEC-RING-USED-ID")
    if expect_progress:
        out.add("PVSPEC-RING-PROGRESS")
    return out


def _owed_by_used_event(mem: GuestMemory, view: SplitView, used_after: int) -> bool:
    """Whether used_event asks for a notification for this step's used entries."""
    lay = view.layout
    ev = read_le16(mem, rm.used_event_addr(lay.avail, lay.size))
    return bool(rm.vring_need_event(ev, used_after, view.used_idx))


def _split_notify_rules(view: SplitView, n_new: int, mem: GuestMemory,
                        used_after: int) -> set[str]:
    """The 2.7.7.2 rules :func:`_split_notify` applies to this step: the ignore rules only
    on a step where obeying the other mechanism would have changed the answer (a
    notification owed by used_event while avail.flags says NO_INTERRUPT; owed by flags 0
    while used_event is not passed)."""
    flags = read_le16(mem, rm.avail_flags_addr(view.layout.avail))
    owed = n_new and _owed_by_used_event(mem, view, used_after)
    if view.features.event_idx:
        return {"VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT"} | (
            {"VIRTIO-2.7.7-DEV-NO-NOTIFY-OTHERWISE"} if n_new else set()) | (
            {"VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX"}
            if owed and flags & sp.VIRTQ_AVAIL_F_NO_INTERRUPT else set())
    if not n_new:
        return set()
    return {0: {"VIRTIO-2.7.7-DEV-NOTIFY-FLAGS0"} | (
                set() if owed else {"VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT"}),
            sp.VIRTQ_AVAIL_F_NO_INTERRUPT: {"VIRTIO-2.7.7-DEV-NO-NOTIFY-FLAGS1"}}.get(flags, set())


def _split_notify(out: list[Violation], mem: GuestMemory, view: SplitView, used_after: int,
                  n_new: int, notified: bool) -> None:
    """2.7.7.2: which used-buffer notifications are owed, or advised against."""
    lay = view.layout
    if view.features.event_idx:
        ev = read_le16(mem, rm.used_event_addr(lay.avail, lay.size))
        must = bool(rm.vring_need_event(ev, used_after, view.used_idx))
        if must and not notified:
            masked = read_le16(mem, rm.avail_flags_addr(lay.avail)) & sp.VIRTQ_AVAIL_F_NO_INTERRUPT
            out.append(_viol("VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX" if masked else
                             "VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT",
                             f"used.idx {view.used_idx}->{used_after} passed used_event {ev}"
                             + (" (avail.flags NO_INTERRUPT, to be ignored)" if masked else "")))
        elif notified and not must and n_new:
            out.append(_viol("VIRTIO-2.7.7-DEV-NO-NOTIFY-OTHERWISE",
                             f"used_event {ev} not passed", level="SHOULD"))
        return
    if not n_new:
        return
    flags = read_le16(mem, rm.avail_flags_addr(lay.avail))
    if flags == 0 and not notified:
        by_event = _owed_by_used_event(mem, view, used_after)
        out.append(_viol("VIRTIO-2.7.7-DEV-NOTIFY-FLAGS0" if by_event else
                         "VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT",
                         f"{n_new} buffers used, avail.flags 0, no notification"
                         + ("" if by_event else " (used_event not passed, to be ignored)")))
    elif flags == sp.VIRTQ_AVAIL_F_NO_INTERRUPT and notified:
        out.append(_viol("VIRTIO-2.7.7-DEV-NO-NOTIFY-FLAGS1", "notified despite NO_INTERRUPT",
                         level="SHOULD"))


def queue_reset_view(view: SplitView) -> SplitView:
    """After RING_RESET: the device must stay quiet on this queue (2.6.1.1.1)."""
    return attrs.evolve(view, reset=True, inflight=())


def reenable_view(view: SplitView, layout: sp.SplitLayout, idx: int = 0) -> SplitView:
    """After re-enable the device starts from the default state (2.6.1.1.1, 2.6.1.2.1)."""
    return SplitView(layout, view.features, idx, idx)


# --- packed rings ---------------------------------------------------------------------------


@attrs.frozen
class PackedView:
    """What the oracle knows of a packed-queue device between steps."""

    layout: pk.PackedLayout
    features: RingFeatures
    next_avail: int  # first slot not yet shown to the device
    avail_wrap: bool
    next_used: int  # where the device writes its next used descriptor
    used_wrap: bool
    inflight: tuple[Chain, ...] = ()
    reset: bool = False

    @classmethod
    def start(cls, layout: pk.PackedLayout, features: RingFeatures) -> PackedView:
        return cls(layout, features, 0, True, 0, True)


PACKED_RULES = {
    "no-write-readable": "VIRTIO-2.8.15-DEV-NO-WRITE-READABLE",
    "no-write-desc": "PVSPEC-RING-PACKED-DESC-RING",
    "no-read-writable": "VIRTIO-2.8.15-DEV-NO-READ-WRITABLE",
    "driver-area": "PVSPEC-RING-DRIVER-AREA",
}


def judge_packed(
    before: GuestMemory,
    after: GuestMemory,
    view: PackedView,
    *,
    notified: bool,
    accesses: Sequence[Access] | None = None,
    needs_reset: bool = False,
    expect_progress: bool = False,
    tolerate: frozenset[Fault] = TOLERABLE | pk.PACKED_TOLERABLE,
    payload: PayloadOracle | None = None,
) -> tuple[Verdict, PackedView]:
    """Judge one device step on a packed queue (2.8.12, 2.8.15, 2.8.18, 2.8.10)."""
    lay, feats, n = view.layout, view.features, view.layout.size
    out: list[Violation] = []
    writes = _write_spans(before, after, accesses)
    if view.reset:
        if writes or notified:
            out.append(_viol("VIRTIO-2.6.1-DEV-RESET-QUIET",
                             f"{len(writes)} writes, notified={notified} after queue reset"))
        return Verdict(tuple(out), outcome="reset-quiet",
                       judged=frozenset({"VIRTIO-2.6.1-DEV-RESET-QUIET"})), view
    if lay.faults():
        if writes or notified:
            out.append(_viol("PVSPEC-RING-LAYOUT", f"queue operated despite {lay.faults()}",
                             "2.8.11"))
        return Verdict(tuple(out), judged=frozenset({"PVSPEC-RING-LAYOUT"})), view
    exposed, (na, naw) = pk.scan_available(before, lay, view.next_avail, view.avail_wrap, feats)
    cands = [*view.inflight, *exposed]
    remaining = list(cands)
    completed: list[tuple[Chain, int | None, int]] = []
    pos, wrap = view.next_used, view.used_wrap
    used_seen = 0
    desc_written: list[Span] = []
    while used_seen < n:
        at = rm.desc_addr(lay.desc, pos)
        d = pk.PDesc.read(after, at)
        if not rm.is_used(d.flags, wrap) or pk.PDesc.read(before, at) == d:
            break
        ids = [c.head for c in remaining]
        if d.id not in ids:
            out.append(_viol("PVSPEC-RING-USED-ID", f"used descriptor at {pos} names id {d.id}",
                             "2.8.13"))
            break
        k = ids.index(d.id)
        batch = remaining[: k + 1] if feats.in_order else [remaining[k]]
        length = d.len if d.flags & sp.VIRTQ_DESC_F_WRITE else 0
        desc_written.append(Span(at, rm.DESC_SIZE))
        for j, c in enumerate(batch):
            completed.append((c, length if j == len(batch) - 1 else None, at))
            remaining.remove(c)
        step = sum(c.ndesc for c in batch)
        used_seen += step
        pos, wrap = rm.packed_advance(pos, wrap, n, step)
    for chain, length, _at in completed:
        if not chain.processable(tolerate):
            if length not in (0, None):
                out.append(_viol("PVSPEC-RING-MALFORMED",
                                 f"id {chain.head} completed with len {length} despite "
                                 f"{[f.slug for f in chain.faults]}", chain.faults[-1].section))
            continue
        if length is not None and rm.ult(chain.writable_len, length):
            out.append(_viol("PVSPEC-RING-PACKED-USED-LEN",
                             f"id {chain.head}: len {length} > {chain.writable_len} writable"))
        if payload is not None:
            out.extend(payload(chain, _read_bytes(before, chain.readable),
                               _read_bytes(after, chain.writable), length))
    if accesses is not None:
        for span in desc_written:
            flag_seq = [a.seq for a in accesses if a.kind == "write"
                        and a.span.overlaps(Span(span.addr + 14, 2))]
            late = [a for a in accesses if a.kind == "write" and a.span.overlaps(span)
                    and flag_seq and a.seq > min(flag_seq)
                    and not a.span.overlaps(Span(span.addr + 14, 2))]
            if late:
                out.append(_viol("VIRTIO-2.8.15-DEV-NO-CHANGE-AFTER-USED",
                                 f"descriptor {span.addr:#x} changed after its USED flag"))
    ok = [c for c in cands if c.processable(tolerate)]
    bad = [c for c in cands if not c.processable(tolerate)]
    _audit_accesses(out, writes, accesses, ok, bad, [lay.device_span, *desc_written],
                    [lay.driver_span], [lay.desc_span], PACKED_RULES)
    if used_seen:
        mode_word = read_le16(after, lay.driver + 2)
        off_word = read_le16(after, lay.driver)
        mode = rm.event_flags(mode_word)
        if mode == rm.EVENT_FLAGS_ENABLE or (mode == rm.EVENT_FLAGS_DESC and not feats.event_idx):
            must: bool | None = True
        elif mode == rm.EVENT_FLAGS_DISABLE:
            must = False
        elif mode == rm.EVENT_FLAGS_DESC:
            must = bool(rm.packed_need_event(off_word, pos, wrap, used_seen, n))
        else:
            must = None
        if must and not notified:
            out.append(_viol("PVSPEC-RING-PACKED-NOTIFY",
                             f"event flags {mode}: notification owed"))
        elif must is False and notified:
            out.append(_viol("PVSPEC-RING-PACKED-NOTIFY", "notified with events disabled",
                             level="SHOULD"))
    if expect_progress and not needs_reset:
        done = {id(c) for c, _, _ in completed}
        for c in exposed:
            if not c.processable(tolerate):
                break
            if id(c) not in done:
                out.append(_viol("PVSPEC-RING-PROGRESS", f"id {c.head} exposed, not completed"))
                break
    nxt = attrs.evolve(view, next_avail=na, avail_wrap=naw, next_used=pos, used_wrap=wrap,
                       inflight=tuple(remaining))
    judged = _judged(PACKED_RULES, accesses, cands, bad, bool(used_seen), expect_progress)
    if used_seen:
        judged |= {"PVSPEC-RING-PACKED-NOTIFY", "PVSPEC-RING-PACKED-USED-LEN"}
        if accesses is not None:
            judged.add("VIRTIO-2.8.15-DEV-NO-CHANGE-AFTER-USED")
        if feats.in_order:
            judged.add("VIRTIO-6.2-DEV-IN-ORDER")
    return (Verdict(tuple(out), tuple(c.head for c, _, _ in completed),
                    "needs-reset" if needs_reset else "ok", frozenset(judged),
                    tuple(c for c, _, _ in completed)), nxt)
