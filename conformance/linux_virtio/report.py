"""``pvspec conform --target linux-virtio:blk`` (and ``:net``): Linux's own virtio-blk (or
virtio-net) driver judged by the spec, in the one result model (:mod:`conformance.results`,
:class:`conformance.report.Report`).

The target is the *driver*: Debian's x86-64 kernel under QEMU (TCG) drives pvspec's
vhost-user back-end, and the back-end's :class:`DriverJudge` holds every ring operation
to the driver rules a back-end can observe.  The report's universe is every driver-side
requirement of VIRTIO 1.3 chapters 2, 3.1, 4.1 (PCI), 5.2 (blk; 5.1 for net) and 6, the
driver rules the judge reads from the spec's descriptive text, and the few device rules
our back-end is checked on under this load.  Each requirement ends as

* ``passed`` / ``failed``: a check evaluated it on Linux's requests (the count is in the
  check's ``steps``); a known Linux deviation (:data:`EXPECTED`, docs/findings.md) stays
  ``failed`` and is named in the notes;
* ``not judged (platform)``: what a vhost-user back-end cannot see -- the driver's status,
  feature and config accesses go to QEMU's PCI device (chapters 2.1, 3.1, 4.1), and memory
  ordering and notification counts do not survive the trip (barriers, eventfds coalesce);
* ``not judged (not-offered / not-applicable)``: packed rings and queue reset are not
  offered by our back-end, IN_ORDER was offered and not accepted, a MAY binds nothing;
* ``not judged (not-reached)``: a check covers it but the workload never gave it a case.

Never ``passed`` for something no check evaluated.  A missing kernel or QEMU, a guest
that fails, hangs or dies is an ``error`` check and an incomplete run, never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.linux_virtio.judge import DRIVER_RULES, DriverJudge, Tally
from conformance.recorder import ENDINGS, Recorder, record_ending
from conformance.report import Report
from conformance.results import Check, Failure, NotJudged, Status, clip_text, not_judged
from conformance.vhost_user import evidence as ev
from spec.virtio import features as F
from spec.virtio import oracle as orc
from spec.virtio.registry import Requirement, all_requirements

__all__ = ["DEVICE_RULES", "EXPECTED", "TARGET", "checks_of", "run_conformance", "universe",
           "unjudged_reason"]

TARGET = "linux-virtio:blk"
CHAPTER = {"blk": "5.2.", "net": "5.1."}
KIND = "virtio"
# Linux's driver (Debian amd64 kernel, QEMU TCG; vhost-user-blk-pci, or virtio-net-pci on a
# vhost-user netdev) drives pvspec's back-end, which judges each ring operation
METHOD = "Linux driver -> pvspec back-end; judged from guest memory"
# device rules our back-end is judged on under Linux's load (its IMPLIED_RULES text)
DEVICE_RULES = ("PVSPEC-RING-USED-ID", "VIRTIO-5.2.6-DEV-DATA-INTEGRITY",
                "VIRTIO-5.2.6-GET-ID-NUL-PADDED")
_NET_ONLY = ("PVSPEC-NET-RX-WRITABLE", "PVSPEC-NET-TX-LAYOUT")
_SPLIT_ONLY = ("PVSPEC-DRV-HEAD-IN-TABLE", "PVSPEC-DRV-NEXT-IN-TABLE")
# known deviations of Linux's driver (docs/findings.md "Linux virtio drivers"): rule -> id
EXPECTED: dict[str, str] = {}

_PLATFORM_PCI = ("the driver's status, feature-select and config-space accesses go to "
                 "QEMU's virtio-pci device; a vhost-user back-end sees only what QEMU "
                 "relays (SET_FEATURES, the rings), not the driver's register accesses")
_PLATFORM_ORDER = ("the order of the driver's stores, what it waits for and the number of "
                   "its notifications do not reach a back-end in another process: it reads "
                   "memory after the fact, and kicks are eventfd signals that coalesce")
_REACTION = ("a rule about how the driver reads what the device writes: judging it needs "
             "a back-end that provokes the case (unusual used.flags, avail_event, len, "
             "spurious interrupts) and watches the driver's reaction; not implemented")


_WITHOUT_EVENT_IDX = ("VIRTIO-2.7.7-DRV-FLAGS-VALUES", "VIRTIO-2.7.10-DRV-KICK-FLAGS0")
_WITH_EVENT_IDX = ("VIRTIO-2.7.7-DRV-FLAGS-ZERO-EVENT-IDX", "VIRTIO-2.7.10-DRV-KICK-AVAIL-EVENT")


def _ours(r: Requirement, kind: str) -> bool:
    s = r.section
    return r.side == "driver" and (s.split(".")[0] in ("2", "6") or s.startswith(
        ("3.1", "4.1.", CHAPTER[kind])))


def universe(kind: str = "blk") -> dict[str, str]:
    """Requirement id -> clause the linux-virtio:``kind`` target is judged on."""
    out = {r.id: r.section for r in all_requirements() if _ours(r, kind)}
    other = {"blk": _NET_ONLY, "net": ("PVSPEC-BLK-REQUEST-LAYOUT",)}[kind]
    out.update({rid: sec for rid, (sec, _t) in DRIVER_RULES.items() if rid not in other})
    device = DEVICE_RULES if kind == "blk" else DEVICE_RULES[:1]
    out.update({rid: orc.IMPLIED_RULES[rid][0] for rid in device})
    return out


def _text(rule: str) -> str:
    for r in all_requirements():
        if r.id == rule:
            return r.text
    return (DRIVER_RULES.get(rule) or orc.IMPLIED_RULES.get(rule) or ("", rule))[1]


def unjudged_reason(rule: str, level: str, accepted: int, kind: str = "blk",
                    offered: int = 0) -> tuple[NotJudged, str]:
    """Why ``rule`` cannot be, or was not, judged through a back-end on this run."""
    sec = universe(kind).get(rule, "")
    packed = F.has(accepted, F.RING_PACKED)
    if level == "MAY":
        return NotJudged.NOT_APPLICABLE, "a MAY permits and binds nothing"
    if sec.startswith(("2.1", "2.4", "2.5", "3.1", "4.1")) or rule in (
            "VIRTIO-2.2.1-DRV-VALIDATE", "VIRTIO-2.2.1-DRV-MISSING-FEATURE",
            "VIRTIO-2.2.1-DRV-NO-FAIL-UNKNOWN", "VIRTIO-5.2.5.1-DRV-WRITEBACK-AFTER-FEATURES-OK",
            "VIRTIO-5.1.4.2-DRV-NO-CONFIG-WRITE"):
        return NotJudged.PLATFORM, _PLATFORM_PCI
    if sec.startswith(("2.7.13", "2.8.21")) or rule in (
            "VIRTIO-2.7.10-DRV-NO-KICK-OTHERWISE", "VIRTIO-2.7.10-DRV-NO-KICK-FLAGS1",
            "VIRTIO-2.8.16-DRV-WAIT-USED", "VIRTIO-2.8.17-DRV-NO-DEPEND-ON-MORE",
            "VIRTIO-2.8.17-DRV-SPACE-FOR-LIST"):
        return NotJudged.PLATFORM, _PLATFORM_ORDER
    if sec.startswith("2.8") and not packed:
        if F.has(offered, F.RING_PACKED):
            return NotJudged.NOT_APPLICABLE, "RING_PACKED was offered; the ring is split"
        return NotJudged.NOT_OFFERED, "pvspec's back-end offers no RING_PACKED here (the " \
            ":packed variant does)"
    if packed and (sec.startswith("2.7") or rule in _SPLIT_ONLY):
        return NotJudged.NOT_APPLICABLE, "the ring is packed (RING_PACKED negotiated)"
    if sec.startswith("2.6"):
        return NotJudged.NOT_OFFERED, "pvspec's back-end offers no RING_RESET"
    event_idx = F.has(accepted, F.EVENT_IDX)
    if rule in _WITHOUT_EVENT_IDX and event_idx:
        return NotJudged.NOT_APPLICABLE, "EVENT_IDX was negotiated: the rule is for without"
    if rule in _WITH_EVENT_IDX and not event_idx:
        return NotJudged.NOT_APPLICABLE, "EVENT_IDX was not negotiated: the rule is for with"
    mrg = F.has(accepted, F.NET_FEATURES["MRG_RXBUF"])
    if rule == "VIRTIO-5.1.6.2.1-DRV-FLAGS-ZERO" and F.has(accepted, F.NET_FEATURES["CSUM"]):
        return NotJudged.NOT_APPLICABLE, "CSUM was negotiated: the rule is for without"
    if rule == "VIRTIO-5.1.6.3.1-DRV-MRG-BUFFER-HDR" and not mrg:
        return NotJudged.NOT_APPLICABLE, "MRG_RXBUF was not negotiated"
    if rule == "VIRTIO-5.1.6.3.1-DRV-RX-BUFFER-SIZE" and mrg:
        return NotJudged.NOT_APPLICABLE, "MRG_RXBUF was negotiated"
    if "IN-ORDER" in rule and not F.has(accepted, F.IN_ORDER):
        return NotJudged.NOT_APPLICABLE, "IN_ORDER was offered; the driver did not accept it"
    if rule == "VIRTIO-6.1-DRV-SR-IOV-PCI-ONLY":
        return NotJudged.NOT_APPLICABLE, "the transport is PCI"
    if rule in ("VIRTIO-2.7.7-DRV-SPURIOUS", "VIRTIO-2.7.8-DRV-IGNORE-BEYOND-LEN",
                "VIRTIO-2.7.10-DRV-IGNORE-AVAIL-EVENT",
                "VIRTIO-2.7.10-DRV-IGNORE-FLAGS-EVENT-IDX"):
        return NotJudged.NOT_IMPLEMENTED, _REACTION
    if rule == "VIRTIO-2.8.16-DRV-NOTIFY-NEXT" and not F.has(accepted, F.NOTIFICATION_DATA):
        return NotJudged.NOT_APPLICABLE, "NOTIFICATION_DATA was not negotiated"
    if rule == "VIRTIO-2.8.16-DRV-NO-CHANGE-AFTER-AVAIL":
        return NotJudged.NOT_IMPLEMENTED, ("needs a second read of each list before the "
                                           "back-end uses it; not implemented")
    if rule == "VIRTIO-2.8.17-DRV-LIST-LE-DEVICE-LIMIT":
        return NotJudged.NOT_IMPLEMENTED, ("the device's list limit is not stated apart from "
                                           "the queue size (judged by LIST-LE-QSIZE)")
    if rule == "VIRTIO-2.7.4-DRV-FEW-DESCRIPTORS":
        return NotJudged.NOT_IMPLEMENTED, "the spec sets no number to judge 'excessive' by"
    return NotJudged.NOT_REACHED, "the workload gave this rule no case"


def _check(**kw: Any) -> Check:
    return Check(**kw)


def checks_of(judge: DriverJudge, interrupted: bool = False) -> list[Check]:
    """One check per rule the judge evaluated, one per reason for the rest of the
    universe, and one for the judge's own defects (an ``error``: it broke).
    ``interrupted``: the run stopped early, so a rule the workload had not yet given a
    case is ``interrupted`` rather than ``not-reached``."""
    out: list[Check] = []
    for rule, t in sorted(judge.tallies.items()):
        out.append(_rule_check(rule, t, judge.kind))
    if judge.defects:
        detail = clip_text("\n".join(judge.defects[:3]))
        out.append(_check(id="linux-virtio:judge", title="the driver judge ran without "
                          "defects", kind="suite", status=Status.ERROR, clause="pvspec",
                          method=METHOD, detail=detail,
                          failure=Failure("suite", "linux-virtio:judge", "pvspec",
                                          "the judge evaluates every event", detail)))
    groups: dict[tuple[NotJudged, str], list[str]] = {}
    levels = {r.id: r.level for r in all_requirements()}
    for rule in universe(judge.kind):
        if rule in judge.tallies:
            continue
        reason, detail = unjudged_reason(rule, levels.get(rule, "MUST"), judge.accepted,
                                         judge.kind, judge.offered)
        if interrupted and reason is NotJudged.NOT_REACHED:
            reason, detail = NotJudged.INTERRUPTED, "the run stopped before a case came"
        groups.setdefault((reason, detail), []).append(rule)
    for (reason, detail), rules in groups.items():
        out.append(not_judged(f"not-judged:{reason}:{len(out)}", f"{len(rules)} rule(s) "
                              f"not judged ({reason})", KIND, rules, reason, detail,
                              method=METHOD))
    return out


def _rule_check(rule: str, t: Tally, kind: str = "blk") -> Check:
    side = "device" if rule in DEVICE_RULES else "driver"
    sec = universe(kind).get(rule, "")
    base: dict[str, Any] = {"id": f"{side}:{rule}", "title": f"{side}: {rule}", "kind": KIND,
                            "clause": sec, "method": METHOD, "steps": t.judged,
                            "covers": (rule,), "judged": (rule,)}
    if t.violations and t.level == "MUST":
        v = t.first
        known = EXPECTED.get(rule)
        detail = f"{t.violations} of {t.judged} evaluations broke it; first: " \
                 f"{v.detail if v else ''}" + (f" (known deviation {known}: "
                                              f"docs/findings.md)" if known else "")
        return _check(status=Status.FAILED, detail=clip_text(detail),
                      failure=Failure(side, rule, sec, _text(rule),
                                      clip_text(v.detail if v else ""), t.trace), **base)
    detail = f"held in {t.judged} evaluation(s)"
    if t.violations:
        detail = (f"SHOULD-level recommendation not met in {t.violations} of {t.judged} "
                  f"(a SHOULD binds nothing: passed): {t.first.detail if t.first else ''}")
    return _check(status=Status.PASSED, detail=detail, **base)


def _not_done(w: Any, base: dict[str, Any]) -> Check:
    observed = (f"the guest's workload ended: {w.ended} after {w.seconds:.1f} s "
                f"(QEMU status {w.qemu_status})")
    return _check(status=Status.ERROR, detail=observed,
                  failure=Failure("crash", "linux-virtio:workload", "pvspec",
                                  "the guest runs its workload to 'PVSPEC done'", observed,
                                  (ev.op(f"console: {w.console[-1500:]}", kind="log"),)),
                  **base)


def _net_workload_check(w: Any, seconds: float) -> Check:
    """The guest's pings to the back-end's peer: packets went both ways.  No requirement
    is judged by it (a lost ping breaks no VIRTIO statement); a workload that never got
    an answer exercised no receive path, which is an error of the run."""
    base: dict[str, Any] = {"id": "workload:net", "title": "the guest's workload: link up, "
                            "ARP and pings (small, large, after link down/up)", "kind": KIND,
                            "clause": "5.1.6", "method": METHOD, "seconds": seconds}
    if not w.done:
        return _not_done(w, base)
    ping = w.steps.get("ping", {})
    got = [int(v.split("/")[0]) for v in ping.values() if v.split("/")[0].isdigit()]
    if not got or not sum(got):
        return _check(status=Status.ERROR, detail=f"no ping was answered: {ping}",
                      failure=Failure("crash", "linux-virtio:workload", "pvspec",
                                      "packets go both ways", f"pings {ping}"), **base)
    return _check(status=Status.PASSED, detail=f"pings answered: {ping}", **base)


def _workload_check(w: Any, seconds: float) -> Check:
    """The guest's own view: every checksum it printed agrees, and the host's disk agrees
    with what the guest wrote (5.2.6: the device presents its disk as it is)."""
    rule = "VIRTIO-5.2.6-DEV-DATA-INTEGRITY"
    steps = w.steps
    mismatches = []
    for step, a, b in (("raw", "wrote", "read"), ("tail", "wrote", "read"),
                       ("fs", "before", "after")):
        got = steps.get(step, {})
        if got.get(a) != got.get(b) or not got.get(a):
            mismatches.append(f"{step}: {a} {got.get(a)} != {b} {got.get(b)}")
    if w.disk_md5.get("tail") != steps.get("tail", {}).get("wrote"):
        mismatches.append(f"tail: host disk {w.disk_md5.get('tail')} != guest wrote "
                          f"{steps.get('tail', {}).get('wrote')}")
    base: dict[str, Any] = {"id": "workload:blk", "title": "the guest's workload: raw "
                            "direct I/O, mkfs.ext2, files, sync, discard; checksums agree",
                            "kind": KIND, "clause": "5.2.6", "method": METHOD,
                            "seconds": seconds, "covers": (rule,)}
    if not w.done:
        return _not_done(w, base)
    if mismatches:
        return _check(status=Status.FAILED, judged=(rule,), detail="; ".join(mismatches),
                      failure=Failure("device", rule, "5.2.6", _text(rule),
                                      "; ".join(mismatches)), **base)
    return _check(status=Status.PASSED, judged=(rule,),
                  detail=f"checksums agree (guest and host); steps {sorted(steps)}", **base)


def run_conformance(target: str = TARGET, report_dir: str | Path | None = None,
                    json_file: str | Path | None = None, *,
                    progress: Callable[[str, Check], None] | None = None,
                    provenance: dict[str, Any] | None = None,
                    timeout: float | None = None) -> Report:
    """Boot the guest once, judge its driver, and return (and write) the report; never
    raises (Ctrl-C and the time limit end it as incomplete, with QEMU killed)."""
    from conformance.linux_virtio import machine

    parts = target.split(":")
    kind, packed = parts[1] if len(parts) > 1 else "", parts[2:] == ["packed"]
    if kind not in CHAPTER or len(parts) > 2 + packed:
        raise ValueError(f"no linux-virtio target {target!r}")
    driver = {"blk": "virtio-blk", "net": "virtio-net"}[kind]
    start = time.perf_counter()
    report = Report(target=target, target_name=f"Linux {driver} driver (Debian amd64)",
                    abi_version="", protocol_version="VIRTIO 1.3 over vhost-user",
                    capabilities=("virtio", "driver", kind), universe=universe(kind),
                    provenance=dict(provenance or {}))
    out = Path(report_dir) if report_dir is not None else None
    rec = Recorder(report, out, json_file,
                   lambda d, name, f, ops: ev.write_trace(d, name, f, ops, target),
                   progress, 0, start)
    judge: DriverJudge | None = None
    try:
        why = machine.missing()
        if why:
            detail = f"the linux-virtio target cannot run here: {why}"
            rec.add(_check(id="linux-virtio:start", title="boot Linux with the back-end",
                           kind=KIND, status=Status.ERROR, clause="pvspec", method=METHOD,
                           detail=detail, failure=Failure("crash", "linux-virtio:start",
                                                          "pvspec", "kernel, busybox and "
                                                          "QEMU are installed", detail)))
            report.incomplete = detail
            return report
        version = (machine.linux_dir() / "VERSION").read_text().splitlines()[:1]
        if version:
            report.target_name = f"Linux {driver} driver ({version[0]})"
        t0 = time.perf_counter()
        if kind == "blk":
            disk = bytearray(machine.DISK_BYTES)
            judge = DriverJudge(bytes(disk))
            w = machine.run_blk(judge, disk, timeout or machine.BOOT_TIMEOUT, packed)
        else:
            judge = DriverJudge(b"", kind="net")
            w = machine.run_net(judge, timeout or machine.BOOT_TIMEOUT, packed)
        for c in checks_of(judge, interrupted=not w.done):
            rec.add(c, write=False)
        rec.add((_workload_check if kind == "blk" else _net_workload_check)(
            w, time.perf_counter() - t0))
        report.notes.append(
            f"workload: {w.ended} in {w.seconds:.1f} s (device probed "
            + (f"at {w.boot_seconds:.1f} s" if w.boot_seconds is not None else "never")
            + f"); {judge.operations} ring operations judged "
            f"({judge.kicks} kicks, {judge.chains} chains, {judge.completions} completions; "
            f"{judge.late} heads judged after the back-end took them, {judge.missed} packed "
            f"lists it took before the judge looked; {judge.busy:.2f} s of "
            f"judging); requests "
            f"{dict(sorted(judge.requests.items()))}; features accepted "
            f"{judge.accepted:#x} of {judge.offered:#x}")
        for rule, fid in EXPECTED.items():
            t = judge.tallies.get(rule)
            if t is not None and t.violations:
                report.notes.append(f"known deviation (docs/findings.md): {fid}: {rule}")
        if not w.done:
            report.incomplete = f"the guest's workload did not finish ({w.ended})"
    except ENDINGS as exc:  # never a traceback, never a lost report
        record_ending(report, exc)
        if judge is not None and not any(c.id.startswith("driver:") for c in report.checks):
            report.checks += checks_of(judge, interrupted=True)
    finally:
        rec.finish(None, "stopping the guest")
    return report
