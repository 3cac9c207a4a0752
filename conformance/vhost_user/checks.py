"""VIRTIO checks through real shared memory, against any vhost-user back-end.

Each check opens its own session (a hostile input may leave the back-end's ring
broken, and QEMU's back-ends end the connection then) and returns :class:`Result`s
that name a requirement id from the spec registry (or an oracle IMPLIED_RULES key, or a
``VHOST-USER-*`` protocol rule) and its section.  Known deviations of a target are
listed in :data:`EXPECTED_DEVIATIONS` and reported as ``expected-deviation``.

A result is one of

* ``pass`` -- the rule was evaluated on this step and held;
* ``fail`` -- the device broke a MUST (``expected-deviation``: a known one, still a
  failure in the report);
* ``warn`` -- a SHOULD was not met (conformant; the report lists it in its notes);
* ``skip`` -- the rule was not evaluated, with the reason (:class:`NotJudged`);
* ``error`` -- the check could not finish: the back-end hung, sent garbage, closed the
  connection or died (``fault`` ``protocol`` or ``crash``), or the check itself broke
  (``fault`` ``suite``).  Never a pass, never a VIRTIO failure.

:func:`run_check` runs one check guarded: whatever it raises becomes an ``error`` result,
and the results it produced before are kept.
"""

from __future__ import annotations

import contextvars
import functools
import traceback
from collections.abc import Callable
from typing import Any

import attrs

from conformance.requirements import VHOST_USER_RULES, virtio_device
from conformance.results import NotJudged, RunInterrupted
from conformance.vhost_user import evidence as ev
from conformance.vhost_user import session as ss
from conformance.vhost_user.frontend import Frontend
from conformance.vhost_user.protocol import (
    GONE_KINDS,
    VHOST_ONLY_BITS,
    ProtocolViolation,
    Req,
    ViolationKind,
)
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio import oracle as orc
from spec.virtio import requirements_conditions as rc
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.devices import block as blk
from spec.virtio.devices.gpu import IMPLIED_RULES as GPU_RULES
from spec.virtio.fuse import FUSE_RULES
from spec.virtio.memory import write_le16
from spec.virtio.registry import Requirement, all_requirements, condition_of, not_applicable

PROBE_TIMEOUT = 10.0  # seconds: "still answering" after hostile input
PROBE_CONNECT = 1.5  # seconds to connect when probing a back-end that may be dead
LEGACY_BITS = F.mask(24, 27)  # NOTIFY_ON_EMPTY, ANY_LAYOUT (6.3, legacy interface)

# (target name prefix, check name, rule) -> why it is expected, or (why, a text the
# failure's detail must contain) when only some failures of that rule are.  See
# docs/findings.md.
EXPECTED_DEVIATIONS: dict[tuple[str, str, str], str | tuple[str, str]] = {
    ("qemu-vhost-user-blk", "get-id-len-bytes", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"):
        "F1: QEMU 7.2 vhost-user-blk GET_ID writes 15 of 20 bytes but reports len 21",
    ("qemu-vhost-user-blk", "get-id-len-bytes", "VIRTIO-5.2.6-GET-ID-NUL-PADDED"):
        "F1: the id string's padding is left as the driver's bytes, not NUL",
    ("qemu-vhost-user-blk", "blk-semantics", "VIRTIO-5.2.6-GET-ID-NUL-PADDED"):
        "F1: the id string's padding is left as the driver's bytes, not NUL",
    ("qemu-vhost-user-blk", "read-past-capacity-len-bytes", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"):
        "F2: QEMU 7.2 vhost-user-blk answers a read past capacity with IOERR and len 1025 "
        "but writes only the status byte",
    ("qemu-vhost-user-blk", "chains", "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN"):
        "F5: QEMU 7.2 vhost-user-blk drops a chain whose indirect descriptor is not its head "
        "('request missing headers'): never completed, the buffer is lost to the driver",
    ("qemu-vhost-user-blk", "chains", "PVSPEC-RING-PROGRESS"): (
        "F5: the mixed chain is dropped, never completed", "mixed chain"),
    ("qemu-vhost-user-blk", "blk-semantics", "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"): (
        "F4: QEMU 7.2 vhost-user-blk answers a discard or write zeroes with an unknown flag "
        "IOERR, not UNSUPP, when its segment is also past capacity (it checks the range "
        "first)", blk.ALSO_PAST_CAPACITY),
    # DPDK 22.11 rte_vhost (net_vhost PMD), docs/findings.md "DPDK 22.11 vhost-user net"
    ("dpdk-vhost-net", "net-features", "VIRTIO-2.2.2-DEV-DEPENDENCY"):
        "D1: HOST_ECN offered without HOST_TSO4/HOST_TSO6 (2.2.2's rule, of which 5.1.3.1's "
        "record is the instance)",
    ("dpdk-vhost-net", "net-features", "VIRTIO-5.1.3.1-DEV-HOST-ECN-NEEDS-HOST-TSO4-OR-HOST-TSO6"):
        "D1: without tso=1 the net_vhost PMD withdraws HOST_TSO4/HOST_TSO6 but keeps "
        "offering HOST_ECN",
    ("dpdk-vhost-net", "net-loopback-no-mrg", "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE"):
        "D2: without MRG_RXBUF rte_vhost never writes num_buffers (the driver's bytes stay)",
    ("dpdk-vhost-net", "net-loopback-no-mrg", "VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT"):
        "D2: without MRG_RXBUF rte_vhost never writes num_buffers (the driver's bytes stay)",
    ("dpdk-vhost-net", "net-packed-no-mrg", "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE"):
        "D2 (packed rings too): without MRG_RXBUF num_buffers is never written",
    ("dpdk-vhost-net", "net-packed-no-mrg", "VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT"):
        "D2 (packed rings too): without MRG_RXBUF num_buffers is never written",
    ("dpdk-vhost-net", "net-loopback-no-mrg", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"):
        "D2: used.len counts the two num_buffers bytes rte_vhost never writes",
    ("dpdk-vhost-net", "net-packed-no-mrg", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"):
        "D2: used.len counts the two num_buffers bytes rte_vhost never writes",
    ("dpdk-vhost-net", "net-hostile/avail-idx-overrun", "PVSPEC-RING-USED-IDX"):
        "D4: avail.idx 65 ahead on a 64-entry ring: rte_vhost returns 65 used entries, "
        "all head 0",
    ("dpdk-vhost-net", "net-chains", "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN"):
        "D5: rte_vhost follows an indirect table only at a chain's head: in a mixed chain it "
        "transmits the table's own bytes as the frame",
    ("dpdk-vhost-net", "net-chains-mixed", "PVSPEC-NET-LOOPBACK"):
        "D5: the frame of a mixed transmit chain comes back as the indirect table's bytes",
    ("dpdk-vhost-net", "net-chains-mixed", "VIRTIO-5.1.4.1-DEV-FORWARD-WITHIN-MTU"):
        "D5: the frame of a mixed transmit chain is not forwarded (the table's bytes are)",
    ("dpdk-vhost-net", "net-tso", "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU"):
        "D3: a GSO TCPV4 frame comes back as one non-GSO packet above the mtu given by "
        "SET_MTU (rte_vhost leaves the mtu to its application)",
}

# checks that draw their cases across the others' ground: every known deviation of the
# target is known to them too
ROAMING_CHECKS = frozenset({"blk-explore"})


def expected_deviation(target: str, check: str, rule: str, detail: str = "") -> str | None:
    """Why a failure of ``rule`` in ``check`` on ``target`` (described by ``detail``) is a
    known deviation (None: it is not one)."""
    for (tgt, chk, rl), known in EXPECTED_DEVIATIONS.items():
        why, needle = known if isinstance(known, tuple) else (known, "")
        if target.startswith(tgt) and rl == rule and needle in detail and (
                chk == check or check in ROAMING_CHECKS):
            return why
    return None


# What each check is about (its ``covers``): a check that breaks leaves these unjudged
# for reason check-error; ``--only`` / ``--skip`` select checks by them.
STEP_RULES = (
    "PVSPEC-RING-USED-ID", "PVSPEC-RING-USED-IDX", "PVSPEC-RING-OUT-OF-BOUNDS",
    "PVSPEC-RING-DRIVER-AREA", "PVSPEC-RING-PROGRESS", "VIRTIO-2.7.5-DEV-NO-WRITE-DESC",
    "VIRTIO-2.7.5-DEV-NO-WRITE-READABLE", "VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT",
    "VIRTIO-2.7.7-DEV-NO-NOTIFY-OTHERWISE", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES",
    "VIRTIO-2.7.10-DEV-FLAGS-ZERO-EVENT-IDX", "VIRTIO-6.2-DEV-IN-ORDER",
)
# virtio-blk rules judged on each completion against the disk model (spec: a disk the
# suite created or sees is known whole; any other is learned as it is read, LearnedDisk).
# A request past capacity breaks a driver rule, 5.2.6.1, and binds the device to no
# answer: it credits none of these.
BLK_DATA_RULES = (
    "VIRTIO-5.2.6-DEV-DATA-INTEGRITY", "VIRTIO-5.2.6-GET-ID-NUL-PADDED",
    "VIRTIO-5.2.6-DEV-UNSUPP-TYPE", "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS",
    "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO", "VIRTIO-5.2.6.2-DEV-RO-IOERR",
)
CAPACITY_UNKNOWN = ("the device has no config space here (no CONFIG protocol feature): its "
                    "capacity, and so which requests are within range, is unknown")
# 5.2.6.2: what a completed write (or a flush) makes survive power loss
STABLE_RULE = "VIRTIO-5.2.6.2-DEV-STABLE-WRITES"
STABLE_DETAIL = ("whether a completed write or flush survives power loss (5.2.6.2) cannot "
                 "be observed through a vhost-user socket: the back-end's storage cannot be "
                 "cut off at a chosen instant")
# rules about the order of the device's memory accesses: a front-end sees the shared
# memory before and after a step, never the order of the device's writes nor its reads
PLATFORM_RULES = ("VIRTIO-2.7.8-DEV-USED-LEN", "VIRTIO-2.7.5-DEV-NO-READ-WRITABLE")
# device rules about the transport's registers (device status, the FEATURES_OK handshake,
# reset, config before FEATURES_OK, SR-IOV): over vhost-user the front-end's VMM presents
# them to the driver; the back-end only sees vhost-user messages
TRANSPORT_RULES = (
    "VIRTIO-2.1.2-DEV-NEEDS-RESET-NOTIFY", "VIRTIO-2.1.2-DEV-NO-USE-BEFORE-DRIVER-OK",
    "VIRTIO-2.2.2-DEV-REJECT-FEATURES-OK", "VIRTIO-2.4.1-DEV-QUIET-AFTER-RESET",
    "VIRTIO-2.4.1-DEV-RESET-ZERO", "VIRTIO-2.5.2-DEV-READ-BEFORE-FEATURES-OK",
    "VIRTIO-6.2-DEV-SR-IOV-PCI-ONLY",
)
TRANSPORT_DETAIL = ("over vhost-user the device status, the FEATURES_OK handshake, device "
                    "reset and the transport (PCI, MMIO: SR-IOV) are the front-end VMM's: a "
                    "back-end sees vhost-user messages, not those registers")
# Which rules a device's offer makes applicable is the registry's (Requirement.when,
# spec/virtio/requirements_conditions.py, read from each statement's VIRTIO wording): a
# rule whose feature the device does not offer is not judged, reason not-offered.
_KIND_DEVICE = {"blk": F.BLOCK, "net": F.NET}


@functools.cache
def _universe_reqs(kind: str) -> tuple[Requirement, ...]:
    ids = {r.id for r in virtio_device(kind)}
    return tuple(r for r in all_requirements() if r.id in ids and r.side == "device")


def gated_rules(kind: str) -> tuple[str, ...]:
    """Every rule of a ``kind`` back-end's universe whose applicability depends on the
    offer (a condition on offering or negotiating a feature, or a forbidden offer)."""
    return tuple(dict.fromkeys(
        r.id for r in _universe_reqs(kind) for w in condition_of(r)
        if w.offered or w.not_offered or w.negotiated or w.forbids_offer))


def gated_not_offered(kind: str, offered: int) -> list[tuple[str, str]]:
    """(rule, why) for every rule of ``kind``'s universe that the offer ``offered`` makes
    inapplicable (the registry's condition names a feature it lacks)."""
    bits = rc.bits_for(kind)
    out = []
    for r in _universe_reqs(kind):
        why = not_applicable(r, kind, offered, bits)
        if why is not None:
            out.append((r.id, why))
    return out


def forbidden_offers(kind: str) -> tuple[tuple[str, str], ...]:
    """(rule, feature) for every rule of ``kind``'s universe that forbids offering a
    feature under a condition of its own (met by a device that does not offer it)."""
    return tuple((r.id, w.forbids_offer) for r in _universe_reqs(kind)
                 for w in condition_of(r) if w.forbids_offer)


FORBIDDEN_OFFER_DETAIL = {
    "SR_IOV": "whether the device is a PCI device with an SR-IOV capability is the front-end "
              "VMM's (the transport): a back-end that offers SR_IOV cannot be judged here",
    "ZONED": "whether the device is zoned, and whether a legacy interface is presented (the "
             "VMM's), cannot be seen through a vhost-user socket",
    "LIFETIME": "whether the backing storage has lifetime metrics cannot be seen through a "
                "vhost-user socket",
}


PLATFORM_DETAIL = ("a vhost-user front-end sees guest memory before and after each step, "
                   "not the order of the device's accesses: whether used.len was written "
                   "before used.idx (2.7.8.2) and whether the device read device-writable "
                   "buffers (2.7.5.1) cannot be observed on this platform")
COVERS: dict[str, tuple[str, ...]] = {
    "features": ("VIRTIO-2.2.2-DEV-NO-UNDEFINED", "VIRTIO-6.2-DEV-OFFER-VERSION-1",
                 "VIRTIO-2.2.2-DEV-DEPENDENCY",
                 *gated_rules("blk"),
                 *(F.dependency_requirement(F.BLOCK, f) for f in F.DEPENDENCIES[F.BLOCK]),
                 "VHOST-USER-REPLY", "VIRTIO-5.2.5.2-DEV-PADDING-ZERO",
                 "VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO", "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"),
    "blk-semantics": (*STEP_RULES, *BLK_DATA_RULES, STABLE_RULE,
                      "VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP"),
    "chains": (*STEP_RULES, "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN",
               "VIRTIO-2.7.4-DEV-NO-LAYOUT-ASSUMPTION", "VIRTIO-2.7.10-DEV-SPURIOUS",
               "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT",
               "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"),
    "used-len": (*STEP_RULES, "VIRTIO-5.2.6-GET-ID-NUL-PADDED",
                 "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"),
    "notifications": (*STEP_RULES, "VIRTIO-2.7.7-DEV-NOTIFY-FLAGS0",
                      "VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX",
                      "VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT",
                      "VIRTIO-2.7.7-DEV-NO-NOTIFY-FLAGS1", "VIRTIO-2.7.10-DEV-FLAGS-VALUES"),
    "index-wrap": (*STEP_RULES, "VHOST-USER-VRING-BASE"),
    "in-order": STEP_RULES,
    "hostile": (*STEP_RULES, "PVSPEC-RING-MALFORMED", "VHOST-USER-RESPONSIVE"),
    "blk-explore": (*STEP_RULES, *BLK_DATA_RULES),
}


@attrs.frozen
class Result:
    check: str
    rule: str
    section: str
    status: str  # "pass" | "fail" | "skip" | "expected-deviation" | "warn" | "error"
    detail: str = ""
    # report trace ops ({"op": "vhost-user", "text": ...}; see evidence.py), full size
    trace: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=lambda t: _ops(t))
    reason: str = ""  # skip: a NotJudged value
    fault: str = ""  # error: "protocol" | "crash" | "suite"
    fn: str = ""  # the check function (BLK_CHECKS / FS_CHECKS key) that produced it
    gone: str = ""  # error: why the back-end is considered dead (a probe failed)

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


def _ops(trace: Any) -> tuple[dict[str, Any], ...]:
    """Trace ops from dicts or plain strings (a message, a log line)."""
    return tuple(t if isinstance(t, dict) else ev.op(str(t), kind="message") for t in trace)


@functools.cache
def _registry_sections() -> dict[str, str]:
    """Requirement id -> section, built once (the registry is fixed after import; a
    result per judged rule and packet made the sorted walk the checks' main cost)."""
    return {r.id: r.section for r in all_requirements()}


def _section(rule: str) -> str:
    if rule in VHOST_USER_RULES:
        return VHOST_USER_RULES[rule][0]
    if rule in orc.IMPLIED_RULES:
        return orc.IMPLIED_RULES[rule][0]
    if rule in FUSE_RULES:
        return FUSE_RULES[rule][0]
    if rule in GPU_RULES:
        return GPU_RULES[rule][0]
    section = _registry_sections().get(rule)
    if section is not None:
        return section
    parts = rule.split("-")
    return parts[1] if len(parts) > 1 else "?"


class _Sink:
    """Every result of the running check, so a check that raises keeps what it found."""

    def __init__(self, name: str) -> None:
        self.current = name
        self.results: list[Result] = []


_SINK: contextvars.ContextVar[_Sink | None] = contextvars.ContextVar("pvspec_vu_sink",
                                                                     default=None)


class Ctx:
    """Collects results for one check, applying the expected-deviation list."""

    def __init__(self, target: Target, check: str) -> None:
        self.target, self.check = target, check
        self.results: list[Result] = []
        sink = _SINK.get()
        if sink is not None:
            sink.current = check

    def _put(self, r: Result) -> None:
        self.results.append(r)
        sink = _SINK.get()
        if sink is not None:
            sink.results.append(r)

    def add(self, rule: str, ok: bool, detail: str = "", trace: Any = (),
            level: str = "MUST") -> None:
        status = "pass" if ok else ("warn" if level != "MUST" else "fail")
        why = expected_deviation(self.target.name, self.check, rule, detail) \
            if not ok and level == "MUST" else None
        if why is not None:
            status, detail = "expected-deviation", f"{detail} [{why}]"
        self._put(Result(self.check, rule, _section(rule), status, detail,
                         trace if not ok else ()))

    def skip(self, rule: str, why: str, reason: NotJudged = NotJudged.NOT_OFFERED) -> None:
        """A rule this target gives no occasion to check (never counted as passed)."""
        self._put(Result(self.check, rule, _section(rule), "skip", why, reason=str(reason)))

    def error(self, e: ProtocolViolation) -> None:
        """A target fault in this check: never a pass, never a VIRTIO failure."""
        self._put(Result(self.check, e.requirement, _section(e.requirement), "error", str(e),
                         e.trace, fault="crash" if e.kind in GONE_KINDS else "protocol"))

    def step(self, st: ss.Step, what: str, s: ss.BlkSession | None = None) -> None:
        """Fold a judged step: ring verdict, per-request disk verdicts, outcome.

        Every rule the oracle judged without a violation counts as one pass, so the
        report's matrix shows which rules this run really exercised.  A step the
        back-end did not survive (it closed the connection or exited) credits nothing
        and raises :class:`ProtocolViolation`: the check cannot go on.
        """
        evidence: tuple[dict[str, Any], ...] | None = None

        def seen() -> tuple[dict[str, Any], ...]:
            nonlocal evidence
            if evidence is None:
                evidence = st.evidence()
            return evidence

        for v in st.verdict.violations:
            self.add(v.rule, False, f"{what}: {v.detail}", seen(), v.level)
        if st.outcome in ("closed", "crashed"):
            kind = ViolationKind.CRASHED if st.outcome == "crashed" else ViolationKind.CLOSED
            gone = (f"exited ({self.target.exit_status()})" if st.outcome == "crashed" else
                    "closed the connection")
            raise ProtocolViolation(kind, 0, f"{what}: the back-end {gone} while "
                                             f"{len(st.placed) or 'the'} request(s) were "
                                             f"in flight", seen() + _log_ops(self.target))
        for rule in sorted(st.verdict.judged - st.verdict.rules()):
            self.add(rule, True, what)
        for c in st.completions:
            if c.violation is not None:
                cv: Any = c.violation  # spec.virtio.verdict.Violation
                self.add(cv.requirement, False, f"{what}: head {c.head} {cv.detail}", seen())
            elif c.rule:
                self.add(c.rule, True, f"{what}: head {c.head}")
        if not st.verdict.violations and not any(c.violation for c in st.completions):
            ok = st.outcome == "completed"
            self.add("PVSPEC-RING-PROGRESS", ok,
                     f"{what}: outcome {st.outcome}, {len(st.completions)} completed",
                     () if ok else seen())


def _log_ops(t: Target) -> tuple[dict[str, Any], ...]:
    log = t.log()[-600:]
    return (ev.op(f"back-end log: {log}", kind="log"),) if log.strip() else ()


Check = Callable[[Target], list[Result]]
R = blk.Request


def _session(t: Target, **kw: object) -> ss.BlkSession:
    return ss.BlkSession(t, **kw)  # type: ignore[arg-type]


# --- negotiation and config ---------------------------------------------------------------


def judge_offer(c: Ctx, device: int, offered: int, acked: int, aside: int = 0,
                what: str = "") -> None:
    """2.2.2 / 6.2 and the device type's dependencies on an offer, bits in ``aside``
    (vhost-only and legacy ones) set aside; the front-end's own acceptance is asserted."""
    aside |= VHOST_ONLY_BITS | LEGACY_BITS
    offer = offered & ~aside
    seen = (f"offered {offered:#x} (vhost bits and legacy {offered & LEGACY_BITS:#x} "
            f"set aside{what})")
    # each rule the offer gives occasion to judge (a dependency: when its feature is
    # offered), under its own id
    deps = {F.dependency_requirement(device, f) for f in F.DEPENDENCIES[device]}
    held: list[bool] = []
    for rule, v in F.judge_device_offer(device, offer):
        c.add(rule, v is None, seen + (f": {v.detail}" if v else ""))
        if rule in deps:
            held.append(v is None)
    for feat in F.DEPENDENCIES[device]:
        if not F.has(offer, feat):
            c.skip(F.dependency_requirement(device, feat),
                   f"{F.feature_name(device, feat)} not offered", NotJudged.NOT_OFFERED)
    # 2.2.2's rule itself, of which each dependency record above is an instance
    if held:
        c.add("VIRTIO-2.2.2-DEV-DEPENDENCY", all(held),
              f"{sum(held)} of {len(held)} offered dependencies hold")
    else:
        c.skip("VIRTIO-2.2.2-DEV-DEPENDENCY", "no offered feature depends on another",
               NotJudged.NOT_APPLICABLE)
    kind = "blk" if device == F.BLOCK else "net"
    for rule, why in gated_not_offered(kind, offer):
        if rule not in deps:  # skipped above, each under its own feature
            c.skip(rule, why, NotJudged.NOT_OFFERED)
    # a rule forbidding an offer under a condition of its own (6.2 SR_IOV, 5.2.5.2 ZONED
    # on a legacy interface, 5.2.6.2 LIFETIME): met by not offering, seen in the offer
    for rule, name in forbidden_offers(kind):
        bit = rc.feature_bit(kind, name)
        assert bit is not None
        if F.has(offered, bit):
            c.skip(rule, f"{name} offered: {FORBIDDEN_OFFER_DETAIL.get(name, '')}",
                   NotJudged.PLATFORM)
        else:
            c.add(rule, True, f"{name} (bit {bit}) not offered ({offered:#x}): the offer "
                  f"meets the rule whatever its condition")
    drv = F.check_driver_accept(device, offer, acked & ~VHOST_ONLY_BITS)
    # a driver rule: the front-end's own conduct, never credited to the device
    if drv is not None:
        raise AssertionError(f"the front-end accepted features it may not: {drv}")


def check_features(t: Target) -> list[Result]:
    """2.2.2 / 6.2: the device's offer; vhost-user header rules on every reply."""
    c = Ctx(t, "features")
    with _session(t) as s:
        judge_offer(c, F.BLOCK, s.offered, s.acked)
        c.add("VHOST-USER-REPLY", True,
              f"protocol features {s.poffered:#x}, acked {s.packed:#x}")
        if s.config:
            for rule, v in blk.judge_config(s.config, s.virtio_features):
                c.add(rule, v is None, v.detail if v else "holds",
                      ev.text_ops([f"config {s.config.hex()}"], "config"))
            if t.initial is not None and s.capacity * 512 != len(t.initial):
                # a device that misstates its disk's size; a match is no pass of 5.2.6's
                # data rule (the reads and writes of the other checks judge that)
                c.add("VIRTIO-5.2.6-DEV-DATA-INTEGRITY", False,
                      f"capacity {s.capacity} sectors, disk {len(t.initial)} bytes")
        wce = F.has(s.offered, blk.FB["CONFIG_WCE"])
    if wce:
        _writeback(t, c)
    return c.results


def _writeback(t: Target, c: Ctx) -> None:
    """5.2.5.2: with CONFIG_WCE negotiated and FLUSH not, writeback starts at 0 (the
    device's cache mode is write-through until the driver says otherwise): a session that
    takes CONFIG_WCE and declines FLUSH reads the config space."""
    want = (ss.VIRTIO_WANT | F.mask(blk.FB["CONFIG_WCE"])) & ~F.mask(blk.FB["FLUSH"])
    with _session(t, want=want) as s:
        rule = "VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO"
        if not s.config:
            c.skip(rule, "the device has no config space here (no CONFIG protocol feature): "
                   "its writeback field is the front-end VMM's", NotJudged.PLATFORM)
            return
        for r, v in blk.judge_config(s.config, s.virtio_features):
            if r == rule:
                c.add(rule, v is None, (v.detail if v else "writeback 0")
                      + f" (features acked {s.acked:#x})",
                      ev.text_ops([f"config {s.config.hex()}"], "config"))


# --- virtio-blk semantics (5.2.6) ----------------------------------------------------------


def check_blk_semantics(t: Target) -> list[Result]:
    """Read, write + read-back, flush, get-id, discard/write-zeroes and their flags, an
    unknown type; out-of-range requests (a driver error: the answer is the device's choice,
    only the ring rules are judged)."""
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
        if not F.has(s.virtio_features, blk.FB["ZONED"]):
            # 5.2.6.2: a zone command (here ZONE_OPEN of zone 0) without ZONED: UNSUPP
            reqs.append(("zone-command-unnegotiated", [R(blk.T_ZONE[2], 0, in_len=0)]))
        if F.has(s.virtio_features, blk.FB["WRITE_ZEROES"]):
            # 5.2.6.2: an unknown flag (bit 1) ends in UNSUPP; sector 20 holds data, so a
            # device that zeroes it anyway shows
            reqs += [("write-zeroes", [R(blk.T_WRITE_ZEROES, data=blk.encode_segment(8, 2))]),
                     ("read-zeroes", [R(blk.T_IN, 8, in_len=1024)]),
                     ("write-zeroes-unknown-flag",
                      [R(blk.T_WRITE_ZEROES, data=blk.encode_segment(20, 1, flags=2))])]
        if F.has(s.virtio_features, blk.FB["DISCARD"]):
            reqs += [("discard", [R(blk.T_DISCARD, data=blk.encode_segment(40, 1))]),
                     ("discard-unmap-flag",
                      [R(blk.T_DISCARD, data=blk.encode_segment(40, 1, unmap=True))]),
                     ("discard-unknown-flag",
                      [R(blk.T_DISCARD, data=blk.encode_segment(44, 1, flags=2))])]
        ranged = [t for t, f in ((blk.T_DISCARD, "DISCARD"), (blk.T_WRITE_ZEROES,
                                                              "WRITE_ZEROES"))
                  if F.has(s.virtio_features, blk.FB[f])]
        if ranged:
            # 5.2.6.2's UNSUPP for an unknown flag is unconditional: it holds for a segment
            # past capacity too (docs/findings.md F4)
            reqs.append(("unknown-flag-past-capacity",
                         [R(ranged[0], data=blk.encode_segment(cap, 1, flags=2))]))
        if not F.has(s.virtio_features, blk.FB["DISCARD"]) and not F.has(
                s.virtio_features, blk.FB["WRITE_ZEROES"]):
            c.skip("VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS", "neither DISCARD nor WRITE_ZEROES "
                   "offered: no range command to set flags in", NotJudged.NOT_OFFERED)
        if s.disk is None:
            for rule in BLK_DATA_RULES:
                c.skip(rule, CAPACITY_UNKNOWN, NotJudged.CAPABILITY)
        c.skip(STABLE_RULE, STABLE_DETAIL, NotJudged.PLATFORM)
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
        w = s.run([R(blk.T_OUT, 16, data=pat)], split=4)
        c.step(w, "write in 4 descriptors", s)
        r = s.run([R(blk.T_IN, 16, in_len=2048)], split=4)
        c.step(r, "read in 4 descriptors", s)
        # 2.7.4.1: the same requests split otherwise than one buffer per part are served
        c.add("VIRTIO-2.7.4-DEV-NO-LAYOUT-ASSUMPTION", _served(w) and _served(r),
              f"data in 4 descriptors: write {w.outcome}, read {r.outcome}")
        # 2.7.10.1: a notification that brings nothing new is harmless
        st = s.kick_and_judge([], 0, force_kick=True, grace=0.05, expect_progress=False)
        c.step(st, "spurious kick (nothing new)", s)
        after = s.run([R(blk.T_IN, 16, in_len=512)])
        c.step(after, "a request after the spurious kick", s)
        c.add("VIRTIO-2.7.10-DEV-SPURIOUS", not st.verdict.violations and _served(after),
              f"then a request: {after.outcome}")
        if s.feats.indirect:
            c.step(s.run([R(blk.T_IN, 16, in_len=2048), R(blk.T_OUT, 24, data=pat[:1024])],
                         indirect=True, split=3), "indirect", s)
            c.step(s.run([R(blk.T_IN, 24, in_len=1024)], indirect=True), "indirect read-back", s)
            # 2.7.5.3.2: the header in an ordinary descriptor chained to an indirect table
            # holding the data and the status
            st = s.run([R(blk.T_IN, 24, in_len=1024)], indirect=True, direct_prefix=1)
            c.step(st, "mixed chain (direct header, then an indirect table)", s)
            c.add("VIRTIO-2.7.5.3-DEV-MIXED-CHAIN", _served(st),
                  f"outcome {st.outcome}, {len(st.completions)} completed", st.evidence())
            # 2.7.5.3.2: WRITE on the descriptor that points at a table means nothing
            placed, _ = s.submit([R(blk.T_IN, 24, in_len=1024)], indirect=True)
            at = rm.desc_addr(s.layout.desc, placed[0][0])
            d = sp.Desc.read(s.mem, at)
            attrs.evolve(d, flags=d.flags | sp.VIRTQ_DESC_F_WRITE).write(s.mem, at)
            st = s.kick_and_judge(placed, 1)
            c.step(st, "indirect descriptor with WRITE set", s)
            c.add("VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT", _served(st),
                  f"outcome {st.outcome}, {len(st.completions)} completed", st.evidence())
        else:
            for rule in ("VIRTIO-2.7.5.3-DEV-MIXED-CHAIN",
                         "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT"):
                c.skip(rule, "INDIRECT_DESC not offered", NotJudged.NOT_OFFERED)
    return c.results


def _served(st: ss.Step) -> bool:
    """Every request of the step completed, and nothing the step judged was broken."""
    return st.outcome == "completed" and not st.verdict.violations and all(
        c.violation is None and c.status == blk.S_OK for c in st.completions)


USED_LEN_CASES: dict[str, Callable[[int], blk.Request]] = {  # capacity -> request
    "read-len-bytes": lambda cap: R(blk.T_IN, 2, in_len=512),
    "get-id-len-bytes": lambda cap: R(blk.T_GET_ID, in_len=blk.ID_BYTES),
    # F2: a read past capacity (a driver error: its status is the device's choice, but
    # 2.7.8.2 binds whatever len it reports)
    "read-past-capacity-len-bytes": lambda cap: R(blk.T_IN, cap - 1, in_len=1024),
}


def check_used_len(t: Target) -> list[Result]:
    """2.7.8.2: the first ``len`` writable bytes are written before used.idx (two poisons).

    The same request runs twice, its writable bytes poisoned 0xA5, then 0x5A: a byte the
    device wrote reads the same both times, a byte it left keeps the poison.  When the
    device does not complete both (a progress failure, reported by the step), there is
    nothing to compare and the two-poison rules are not judged.  The cases: a read, GET_ID
    (its id is also judged, 5.2.6) and a read past capacity (docs/findings.md F2).
    """
    results: list[Result] = []
    for name, make in USED_LEN_CASES.items():
        c = Ctx(t, name)
        seen: list[tuple[bytes, int]] = []
        steps: list[ss.Step] = []
        with _session(t) as s:
            req = make(s.capacity)
            rules = ["VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"] + (
                ["VIRTIO-5.2.6-GET-ID-NUL-PADDED"] if req.type == blk.T_GET_ID else [])
            if req.sector < 0:
                for rule in rules:
                    c.skip(rule, f"{name}: the device shows no capacity (no config space)",
                           NotJudged.NOT_REACHED)
                results.extend(c.results)
                continue
            for poison in (0xA5, 0x5A):
                placed, _ = s.submit([req])
                head = placed[0][0]
                chain = sp.walk_chain(s.mem, s.layout, head, s.feats)
                for seg in chain.writable:
                    s.mem.write(seg.addr, bytes([poison]) * seg.len)
                st = s.kick_and_judge(placed, 1)
                c.step(st, f"{name} poison {poison:#x}", s)
                steps.append(st)
                comp = st.completions[0] if st.completions else None
                if comp is None or comp.length is None:
                    break
                seen.append((comp.data_in + bytes([comp.status or 0]), comp.length))
        if len(seen) < 2:
            for rule in rules:
                c.skip(rule, f"{name}: the device completed {len(seen)} of the 2 poisoned "
                             f"requests: nothing to compare", NotJudged.NOT_REACHED)
            results.extend(c.results)
            continue
        (a, la), (b, _lb) = seen
        n = min(la, len(a), len(b))
        unwritten = [i for i in range(n) if a[i] != b[i]]
        trace = steps[0].evidence() + steps[1].evidence()
        c.add("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", not unwritten,
              f"len {la}; bytes {unwritten[:1]}..{unwritten[-1:]} ({len(unwritten)}) kept the "
              f"driver's poison" if unwritten else f"len {la}: all written", trace)
        if req.type == blk.T_GET_ID and a:
            ident = a[: blk.ID_BYTES]
            c.add("VIRTIO-5.2.6-GET-ID-NUL-PADDED", blk.id_string_ok(ident) and ident == b[:20],
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
            # 2.7.7.2: with EVENT_IDX the device ignores bit 0 of avail.flags: NO_INTERRUPT
            # set, and used_event still owes a notification.  The driver's own rule
            # (2.7.7.1: flags 0 under EVENT_IDX) is broken on purpose, written past
            # driver_set_no_interrupt: the device's MUST is about such a driver
            set_avail_flags(s.mem, s.layout, sp.VIRTQ_AVAIL_F_NO_INTERRUPT)
            st = s.run([R(blk.T_IN, 3, in_len=512)], grace=0.2)
            c.step(st, "EVENT_IDX, NO_INTERRUPT set, used_event passed (notification owed)", s)
            set_avail_flags(s.mem, s.layout, 0)
        else:
            sp.driver_set_no_interrupt(s.mem, s.drv, True)
            st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.1)
            c.step(st, "NO_INTERRUPT set", s)
    with _session(t, want=ss.VIRTIO_WANT & ~F.mask(F.EVENT_IDX)) as s:
        st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.2)
        c.step(st, "no EVENT_IDX, flags 0 (notification owed)", s)
        # without EVENT_IDX used_event means nothing: far ahead, flags 0 still owe one
        sp.driver_set_used_event(s.mem, s.drv, rm.idx_add(s.drv.last_used, 100))
        st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.2)
        c.step(st, "no EVENT_IDX, used_event far ahead, flags 0 (notification owed)", s)
        sp.driver_set_no_interrupt(s.mem, s.drv, True)
        st = s.run([R(blk.T_IN, 1, in_len=512)], grace=0.1)
        c.step(st, "no EVENT_IDX, NO_INTERRUPT", s)
    return c.results


def set_avail_flags(mem: Any, layout: sp.SplitLayout, flags: int) -> None:
    """Write avail.flags as it is, whatever was negotiated (a driver rule may be broken on
    purpose, to judge the device rule that is about such a driver)."""
    write_le16(mem, rm.avail_flags_addr(layout.avail), flags)


def check_index_wrap(t: Target, start: int = 65530, batches: int = 6) -> list[Result]:
    """2.7.6/2.7.8: indices wrap at 2^16, not at the queue size; GET_VRING_BASE agrees."""
    c = Ctx(t, "index-wrap")
    with _session(t, base=start) as s:
        n = 0
        for k in range(batches):
            batch = [R(blk.T_IN, k + j, in_len=512) for j in range(3)]
            c.step(s.run(batch), f"batch {k} at avail.idx {s.drv.avail_idx}", s)
            n += len(batch)
        base = s.fe.stop_vring(0)  # a back-end that does not answer: an error, not a verdict
        want = (start + n) & 0xFFFF
        c.add("VHOST-USER-VRING-BASE", base == want, f"GET_VRING_BASE {base}, expected {want}",
              ev.text_ops(s.fe.trace[-2:]))
    return c.results


def check_in_order(t: Target) -> list[Result]:
    """6.2 / 2.7.9: with IN_ORDER, buffers are used in the order made available."""
    c = Ctx(t, "in-order")
    with _session(t) as s:
        if not s.feats.in_order:
            c.skip("VIRTIO-6.2-DEV-IN-ORDER", "IN_ORDER not offered", NotJudged.NOT_OFFERED)
            return c.results
        batch = [R(blk.T_IN, j, in_len=512 * (1 + j % 3)) for j in range(8)]
        c.step(s.run(batch), "8 mixed reads", s)
    return c.results


# --- hostile input (2.7.5, 2.7.5.2, 2.7.5.3.1, 2.7.6.1) ------------------------------------


def _hostile(t: Target, name: str, build: Callable[[ss.BlkSession, int], int],
             c: Ctx, wait: float = 0.4) -> None:
    """Expose what ``build`` wrote (returns avail.idx advance), then judge the aftermath.

    The back-end may stop the queue, skip the chain or close the connection; it must not
    die, hang, or complete the chain as if valid.  ``VHOST-USER-RESPONSIVE`` is credited
    only once the back-end has answered again (on this connection, or on a new one when it
    closed this one); a back-end that does not is a :class:`ProtocolViolation`.
    """
    with _session(t) as s:
        c.step(s.run([R(blk.T_IN, 0, in_len=512)]), f"{name}: control request", s)
        hdr, st_at = ss.DATA, ss.DATA + 0x1000
        s.mem.write(hdr, R(blk.T_IN, 0).encode_header())
        s.mem.write(st_at, b"\xff" * 512)
        adv = build(s, hdr)
        s.drv = attrs.evolve(s.drv, avail_idx=rm.idx_add(s.drv.avail_idx, adv))
        st = s.kick_and_judge([], 1, force_kick=True, wait=wait, grace=0.05,
                              expect_progress=False)
        seen = st.evidence()
        for v in st.verdict.violations:
            c.add(v.rule, False, f"{name}: {v.detail}", seen, v.level)
        how = _still_answers(t, s, name, seen)
        for rule in sorted(st.verdict.judged - st.verdict.rules() - {"PVSPEC-RING-MALFORMED"}):
            c.add(rule, True, f"{name}: hostile step")
        malformed = "PVSPEC-RING-MALFORMED" in st.verdict.rules()
        c.add("PVSPEC-RING-MALFORMED", not malformed, f"{name}: outcome {st.outcome}, "
              f"used.idx {sp.read_used_idx(s.mem, s.layout)}", seen)
        c.add("VHOST-USER-RESPONSIVE", True, f"{name}: {how}")


def _still_answers(t: Target, s: ss.BlkSession, name: str,
                   seen: tuple[dict[str, Any], ...]) -> str:
    """How the back-end showed it is alive after hostile input; raises
    :class:`ProtocolViolation` (closed/crashed/timeout/garbage) when it did not."""
    if not t.alive():
        raise ProtocolViolation(ViolationKind.CRASHED, 0, f"{name}: the back-end exited "
                                f"({t.exit_status()}) on the hostile ring", seen + _log_ops(t))
    if not s.fe.backend_closed():
        # a hang is a back-end that does not answer within PROBE_TIMEOUT; a loaded CI
        # machine can delay a live one by more than the per-request bound
        s.fe.timeout = max(s.fe.timeout, PROBE_TIMEOUT)
        try:
            s.fe.get_u64(Req.GET_FEATURES)
            return "still answers GET_FEATURES on the same connection"
        except ProtocolViolation as e:
            if e.kind is not ViolationKind.CLOSED:
                raise ProtocolViolation(e.kind, e.request, f"{name}: after the hostile ring: "
                                        f"{e.detail}", seen + e.trace) from None
    s.fe.close()  # a single-threaded back-end serves the next connection only now
    why = probe(t)
    if why is not None:
        raise ProtocolViolation(ViolationKind.CLOSED, 0, f"{name}: the back-end closed the "
                                f"connection and does not answer a new one: {why}",
                                seen + _log_ops(t))
    return "closed the connection on the hostile ring; answers a new connection"


def probe(t: Target, within: float | None = None) -> str | None:
    """None when the back-end is alive: a managed one is still running and, unless it
    serves a single connection, a new connection gets an answer to GET_FEATURES within
    ``within`` s (default :data:`PROBE_TIMEOUT`); else why not."""
    within = PROBE_TIMEOUT if within is None else within
    if not t.alive():
        return f"the back-end process is gone ({t.exit_status()})"
    if t.single_connection:
        return None  # a second connection is not served: liveness is all we can see
    try:
        with Frontend(t.socket_path, timeout=within, connect_within=PROBE_CONNECT) as fe:
            fe.get_u64(Req.GET_FEATURES)
    except ProtocolViolation as e:
        return str(e)
    return None


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
    """Malformed rings: no hang, no crash, no write outside; an outcome the oracle permits.

    A case the back-end answers with a protocol fault is an ``error`` for that case; the
    next case runs only if the back-end still answers (else the fault ends the check)."""
    out: list[Result] = []
    for name, build in HOSTILE.items():
        if only and name not in only:
            continue
        c = Ctx(t, f"hostile/{name}")
        try:
            _hostile(t, name, build, c)
        except ProtocolViolation as e:
            e.dead = probe(t) if e.gone else None
            if e.dead is not None:
                raise
            c.error(e)
        out.extend(c.results)
    return out


def _explore(t: Target) -> list[Result]:
    """Requests drawn by Hypothesis (conformance.vhost_user.explore, which builds on this
    module)."""
    from conformance.vhost_user.explore import check_blk_explore

    return check_blk_explore(t)


BLK_CHECKS: dict[str, Check] = {
    "features": check_features,
    "blk-semantics": check_blk_semantics,
    "chains": check_chains,
    "used-len": check_used_len,
    "notifications": check_notifications,
    "index-wrap": check_index_wrap,
    "in-order": check_in_order,
    "hostile": check_hostile,
    "blk-explore": _explore,
}
# vhost-user-fs (virtiofsd): conformance.vhost_user.fs_checks fills this, and COVERS, when
# imported (conformance.vhost_user.report imports it)
FS_CHECKS: dict[str, Check] = {}


CHECKS: dict[str, dict[str, Check]] = {"blk": BLK_CHECKS, "fs": FS_CHECKS}


def check_names(kind: str) -> tuple[str, ...]:
    """The checks a back-end of device ``kind`` (``blk``, ``fs``) runs, in run order."""
    return tuple(CHECKS.get(kind, {}))


def run_check(t: Target, name: str) -> list[Result]:
    """One check, guarded: never raises (but for Ctrl-C and :class:`RunInterrupted`).

    The results it gave before anything went wrong are kept; then a target fault
    (:class:`ProtocolViolation`: a hang, garbage, a closed connection, a dead back-end)
    is one ``error`` result on ``VHOST-USER-REPLY`` / ``-RESPONSIVE`` / ``-CONNECT``, and
    any other exception -- a defect of the suite -- one ``error`` result naming the check
    (``rule`` empty, ``fault`` ``suite``).  When the back-end may be gone, it is probed:
    the error's ``gone`` says why it is considered dead ("" when it still answers)."""
    fn = CHECKS.get(t.kind, {}).get(name)
    sink = _Sink(name)
    token = _SINK.set(sink)
    try:
        if fn is None:
            raise LookupError(f"no check {name!r} for a {t.kind} back-end "
                              f"(checks: {', '.join(check_names(t.kind))})")
        out = list(fn(t))
    except (KeyboardInterrupt, RunInterrupted) as e:
        # what the check judged before the interruption stays in the report
        e.pvspec_partial = [attrs.evolve(r, fn=name) for r in sink.results]  # type: ignore[union-attr]
        raise
    except ProtocolViolation as e:
        dead = e.dead if e.dead is not None else (probe(t) if e.gone else None)
        out = [*sink.results, Result(
            sink.current, e.requirement, _section(e.requirement), "error",
            str(e) + (f" (the back-end is gone: {dead})" if dead else ""), e.trace,
            fault="crash" if e.kind in GONE_KINDS else "protocol", gone=dead or "")]
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} in {tb[-1].name}" \
            if tb else ""
        out = [*sink.results, Result(
            name, "", "pvspec", "error",
            f"suite defect in check {name} ({sink.current}): {type(e).__name__}: {e}{where}",
            fault="suite")]
    finally:
        _SINK.reset(token)
    return [attrs.evolve(r, fn=name) for r in out]


def run_checks(t: Target, names: tuple[str, ...] | None = None) -> list[Result]:
    """Every check for the target's kind (or those in ``names``), each guarded; stops
    after a check that found the back-end gone (later checks would only fail to connect)."""
    out: list[Result] = []
    for name in check_names(t.kind):
        if names and name not in names:
            continue
        rs = run_check(t, name)
        out.extend(rs)
        if any(r.gone for r in rs):
            break
    return out
