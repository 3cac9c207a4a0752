"""``run_conformance``: run the vhost-user checks on one target and render them in the one
result model (:mod:`conformance.results`, :class:`conformance.report.Report`), like every
other target.

* Reaching the back-end is a precondition (:func:`connect_check`, requirement
  ``VHOST-USER-CONNECT``): a path that is no socket, a socket that never accepts, a
  back-end that closes at once end the run as ``error`` within seconds, with nothing
  credited.
* Each (check, rule) pair becomes one report check of kind ``virtio``: ``passed`` and
  ``failed`` judge the rule; a skip is ``not-judged`` with its reason; a target fault
  (hang, garbage, closed connection, dead back-end) is ``error``; an exception in a check
  is an ``error`` check of kind ``suite`` naming it.  A known deviation
  (``EXPECTED_DEVIATIONS``, docs/findings.md) stays *failed* and is named in the notes; a
  SHOULD not met passes (a SHOULD binds no device) and is named in the notes.
* A back-end found dead ends the run at once (``incomplete``), so no later check runs
  against it and nothing is credited to it.
* The report is written after every check and however the run ends (Ctrl-C, SIGTERM,
  the time limit); a managed back-end is stopped on every path.  A failure's request
  records are saved as ``traces/NAME.json`` (format ``pvspec-virtio-trace``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from conformance.recorder import ENDINGS, Recorder, record_ending
from conformance.report import Report
from conformance.requirements import VHOST_USER_RULES, virtio_device
from conformance.results import (
    Check,
    Failure,
    NotJudged,
    Status,
    clip_text,
    matches,
    not_judged,
)
from conformance.vhost_user import evidence as ev
from conformance.vhost_user import fs_checks as _fs_checks  # noqa: F401  (registers fs)
from conformance.vhost_user import gpu_checks as _gpu_checks  # noqa: F401  (registers gpu)
from conformance.vhost_user import net_checks as _net_checks  # noqa: F401  (registers net)
from conformance.vhost_user.checks import (
    COVERS,
    PLATFORM_DETAIL,
    PLATFORM_RULES,
    TRANSPORT_DETAIL,
    TRANSPORT_RULES,
    Result,
    check_names,
    gated_not_offered,
    run_check,
)
from conformance.vhost_user.frontend import Frontend
from conformance.vhost_user.protocol import ProtocolViolation, Req, ViolationKind
from conformance.vhost_user.targets import Target, TargetUnavailable, open_target, target_kind
from spec.virtio import oracle as orc
from spec.virtio.devices.gpu import IMPLIED_RULES as GPU_RULES
from spec.virtio.fuse import FUSE_RULES
from spec.virtio.registry import all_requirements

__all__ = ["build_report", "check_names", "connect_check", "run_conformance", "run_one",
           "to_checks", "universe"]

KIND = "virtio"
METHOD = "vhost-user front-end over shared memory; spec oracle"
CONNECT_WITHIN = 3.0  # seconds to connect (EAGAIN from a full backlog retried until then)
REPLY_WITHIN = 4.0  # seconds for the back-end's first reply (GET_FEATURES)
GONE_DETAIL = ("a back-end answers or closes the connection; it never hangs nor dies "
               "on guest input")


def universe(kind: str) -> dict[str, str]:
    """Requirement id -> clause a vhost-user back-end of ``kind`` answers for
    (:func:`conformance.requirements.virtio_device`)."""
    return {r.id: r.clause for r in virtio_device(kind)}


def _paraphrase(rule: str) -> str:
    for r in all_requirements():
        if r.id == rule:
            return r.text
    return (orc.IMPLIED_RULES.get(rule) or VHOST_USER_RULES.get(rule)
            or FUSE_RULES.get(rule) or GPU_RULES.get(rule) or ("", rule))[1]


def _check(**kw: Any) -> Check:
    """A :class:`Check` from keywords (its attrs converters confuse a type checker)."""
    return Check(**kw)


# --- results -> checks --------------------------------------------------------------------
def to_checks(results: Sequence[Result], seconds: float = 0.0) -> list[Check]:
    """One report check per (check, rule), in first-seen order."""
    return [c for c, _ in to_checks_with_evidence(results, seconds)]


def to_checks_with_evidence(results: Sequence[Result], seconds: float = 0.0
                            ) -> list[tuple[Check, tuple[dict[str, Any], ...]]]:
    """:func:`to_checks`, each check with the full request records of its failure (what
    the trace file keeps; the check's own trace has the buffers clipped)."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.check, r.rule), []).append(r)
    per = seconds / max(1, len(groups))
    return [_group(check, rule, rs, per) for (check, rule), rs in groups.items()]


def _covers_of(r: Result) -> tuple[str, ...]:
    return COVERS.get(r.fn or r.check, ())


def _group(check: str, rule: str, rs: list[Result], seconds: float
           ) -> tuple[Check, tuple[dict[str, Any], ...]]:
    common: dict[str, Any] = {"method": METHOD, "seconds": seconds, "steps": len(rs)}
    if not rule:  # a defect of the suite: the check names itself
        r = rs[0]
        return _check(id=check, title=f"{check}: suite defect", kind="suite",
                     status=Status.ERROR, covers=_covers_of(r), clause="pvspec",
                     detail=clip_text(r.detail),
                     failure=Failure("suite", check, "pvspec", "the check runs to its end",
                                     clip_text(r.detail)), **common), ()
    section = rs[0].section
    base: dict[str, Any] = {"id": f"{check}:{rule}", "title": f"{check}: {rule}", "kind": KIND,
                            "clause": section, **common}
    bad = next((r for r in rs if r.status in ("fail", "expected-deviation")), None)
    err = next((r for r in rs if r.status == "error"), None)
    if bad is not None:
        trace = tuple(ev.clip_op(o) for o in bad.trace)
        failure = Failure("device", rule, bad.section, _paraphrase(rule), clip_text(bad.detail),
                          trace)
        detail = bad.detail + (" (a known deviation: docs/findings.md)"
                               if bad.status == "expected-deviation" else "")
        return _check(status=Status.FAILED, covers=(rule,), judged=(rule,),
                     detail=clip_text(detail), failure=failure, **base), bad.trace
    if err is not None:
        covers = tuple(dict.fromkeys((rule, *_covers_of(err))))
        failure = Failure(err.fault or "protocol", rule, err.section,
                          _paraphrase(rule) or GONE_DETAIL, clip_text(err.detail),
                          tuple(ev.clip_op(o) for o in err.trace))
        return _check(status=Status.ERROR, covers=covers, judged=(), detail=clip_text(err.detail),
                     failure=failure, **base), err.trace
    if any(r.status in ("pass", "warn") for r in rs):
        warns = [r.detail for r in rs if r.status == "warn"]
        detail = ("SHOULD-level recommendation not met (a SHOULD binds no device: passed): "
                  + "; ".join(warns[:3])) if warns else ""
        return _check(status=Status.PASSED, covers=(rule,), judged=(rule,),
                     detail=clip_text(detail), **base), ()
    skips = [r for r in rs if r.status == "skip"]
    reason = NotJudged(skips[0].reason) if skips and skips[0].reason else \
        NotJudged.NOT_REACHED
    return _check(status=Status.NOT_JUDGED, covers=(rule,), reason=reason,
                 detail=clip_text("; ".join(dict.fromkeys(r.detail for r in skips))),
                 **base), ()


def result_notes(results: Iterable[Result]) -> list[str]:
    """Known deviations and SHOULD-level findings, for the report's notes."""
    out: list[str] = []
    for r in results:
        if r.status == "expected-deviation":
            out.append("known deviation (docs/findings.md): "
                       + r.detail.rsplit("[", 1)[-1].rstrip("]"))
        elif r.status == "warn":
            out.append(f"SHOULD-level: {r.check}: {r.rule}: {r.detail}")
    return list(dict.fromkeys(out))


def platform_check() -> Check:
    """What no vhost-user front-end can observe: the order of the device's accesses."""
    return not_judged("platform:access-order", "rules about the order of the device's "
                      "memory accesses", KIND, PLATFORM_RULES, NotJudged.PLATFORM,
                      PLATFORM_DETAIL, method=METHOD)


def transport_check(universe: Collection[str]) -> Check:
    """What a vhost-user back-end never sees: the transport's registers (status, the
    FEATURES_OK handshake, reset): the front-end's VMM presents them."""
    rules = tuple(r for r in TRANSPORT_RULES if r in universe)
    return not_judged("platform:transport", "rules about the transport's registers "
                      "(device status, FEATURES_OK, reset)", KIND, rules, NotJudged.PLATFORM,
                      TRANSPORT_DETAIL, method=METHOD)


def applicability_check(kind: str, offered: int, universe: Collection[str]) -> Check:
    """The rules of the universe that the device's offer makes inapplicable, by the
    registry's conditions (Requirement.when, read from each statement's VIRTIO wording):
    not judged, reason not-offered, whatever checks ran (a check that judged one anyway
    still counts)."""
    why = {r: w for r, w in gated_not_offered(kind, offered) if r in universe}
    return not_judged("applicability:offer", "rules the device's offer makes inapplicable "
                      "(registry conditions)", KIND, tuple(why), NotJudged.NOT_OFFERED,
                      f"offered {offered:#x}: " + "; ".join(
                          f"{r}: {w}" for r, w in list(why.items())[:3])
                      + (f"; and {len(why) - 3} more" if len(why) > 3 else ""),
                      method=METHOD)


def build_report(target_spec: str, results: list[Result], seconds: float, kind: str = "blk",
                 ) -> Report:
    """A report of results already gathered (no run)."""
    rep = _new_report(target_spec, kind, None)
    rep.seconds = seconds
    rep.checks = to_checks(results, seconds)
    rep.notes += result_notes(results)
    return rep


def _new_report(target_spec: str, kind: str, provenance: dict[str, Any] | None) -> Report:
    return Report(target=target_spec, target_name=f"vhost-user {kind} back-end",
                  abi_version="", protocol_version="vhost-user",
                  capabilities=("virtio", "vhost-user", kind), universe=universe(kind),
                  provenance=dict(provenance or {}))


# --- reachability ---------------------------------------------------------------------------
def _unreachable(cid: str, title: str, requirement: str, observed: str,
                 trace: tuple[dict[str, Any], ...] = (), kind: str = "crash",
                 seconds: float = 0.0) -> Check:
    return _check(id=cid, title=title, kind=KIND, status=Status.ERROR, covers=(requirement,),
                 clause=VHOST_USER_RULES.get(requirement, ("", ""))[0], method=METHOD,
                 seconds=seconds, detail=clip_text(f"{requirement}: {observed}"),
                 failure=Failure(kind, requirement,
                                 VHOST_USER_RULES.get(requirement, ("", ""))[0],
                                 _paraphrase(requirement), clip_text(observed), trace))


def connect_check(target: Target, within: float = CONNECT_WITHIN,
                  reply_within: float = REPLY_WITHIN) -> Check:
    """The precondition of every check: connect (bounded) and get an answer to
    GET_FEATURES.  On success the connection is handed over to the next check
    (``target.handoff``: a back-end such as virtiofsd serves one connection only)."""
    return _connect(target, within, reply_within)[0]


def _connect(target: Target, within: float = CONNECT_WITHIN,
             reply_within: float = REPLY_WITHIN) -> tuple[Check, int | None]:
    """:func:`connect_check`, and the features the back-end offered (None: no answer)."""
    t0 = time.perf_counter()
    cid, title = "vhost-user:connect", "connect to the back-end and get an answer"
    try:
        fe = Frontend(target.socket_path, timeout=reply_within, connect_within=within)
    except ProtocolViolation as e:
        return _unreachable(cid, title, "VHOST-USER-CONNECT", str(e), e.trace,
                            seconds=time.perf_counter() - t0), None
    try:
        offered = fe.get_u64(Req.GET_FEATURES)
    except ProtocolViolation as e:
        fe.close()
        # silence or a closed connection: not reached at all; a malformed answer: reached,
        # but what it says is not a vhost-user reply
        gone = e.gone or e.kind is ViolationKind.TIMEOUT
        rule = "VHOST-USER-CONNECT" if gone else "VHOST-USER-REPLY"
        return _unreachable(cid, title, rule, f"connected, but no answer to GET_FEATURES: {e}"
                            if gone else str(e), e.trace, "crash" if gone else "protocol",
                            time.perf_counter() - t0), None
    old = target.take_handoff()
    if old is not None:
        old.close()
    target.handoff = fe
    return _check(id=cid, title=title, kind=KIND, status=Status.PASSED,
                 covers=("VHOST-USER-CONNECT",), judged=("VHOST-USER-CONNECT",),
                 clause=VHOST_USER_RULES["VHOST-USER-CONNECT"][0], method=METHOD,
                 seconds=time.perf_counter() - t0,
                 detail=f"connected to {target.socket_path}; GET_FEATURES {offered:#x}"), offered


# --- the API the pytest plugin uses -----------------------------------------------------------
def run_one(target: Target, name: str) -> list[Check]:
    """One check (a :func:`check_names` entry) on an open target, as report checks; never
    raises (but for Ctrl-C and :class:`RunInterrupted`): a fault is an ``error`` check."""
    t0 = time.perf_counter()
    return to_checks(run_check(target, name), time.perf_counter() - t0)


# --- the run ------------------------------------------------------------------------------
def run_conformance(target_spec: str, report_dir: str | Path | None = None,
                    checks: Sequence[str] | None = None,
                    json_file: str | Path | None = None, *,
                    progress: Callable[[str, Check], None] | None = None,
                    only: Sequence[str] = (), skip: Sequence[str] = (),
                    provenance: dict[str, Any] | None = None,
                    max_errors: int = 3, profile: str = "ci") -> Report:
    """Start (if managed) ``target_spec``, check it can be reached, run every check, stop
    it; the report, written after every check.  Never raises.

    ``target_spec``: ``vhost-user:SOCKET``, ``qemu-vhost-user-blk``,
    ``reference-vhost-user-blk`` or ``virtiofsd``.  ``checks``: run only these checks;
    ``only`` / ``skip``: glob patterns over check names and rule ids (a deselected rule is
    not judged, reason ``deselected``; a failure or error found on one is still
    reported).  ``KeyboardInterrupt`` and :class:`RunInterrupted` end the run with an
    incomplete report (written) whose ``exit_code`` is 130 or the exception's code.
    ``profile`` (``ci`` or ``thorough``) sets how many examples the drawn checks draw.
    """
    from conformance.vhost_user.explore import PROFILE

    token = PROFILE.set(profile)
    try:
        return _run(target_spec, report_dir, checks, json_file, progress, only, skip,
                    provenance, max_errors)
    finally:
        PROFILE.reset(token)


def _run(target_spec: str, report_dir: str | Path | None, checks: Sequence[str] | None,
         json_file: str | Path | None, progress: Callable[[str, Check], None] | None,
         only: Sequence[str], skip: Sequence[str], provenance: dict[str, Any] | None,
         max_errors: int) -> Report:
    start = time.perf_counter()
    kind = target_kind(target_spec)
    report = _new_report(target_spec, kind, provenance)
    out = Path(report_dir) if report_dir is not None else None
    target: Target | None = None
    deselected: list[str] = []
    rec = Recorder(report, out, json_file,
                   lambda d, name, f, ops: ev.write_trace(d, name, f, ops, target_spec),
                   progress, max_errors, start)
    add, save = rec.add, rec.save

    def wanted(name: str, *names: str) -> bool:
        return (not only or matches(only, name, *names)) and not matches(skip, name, *names)

    try:
        try:
            target = open_target(target_spec)
        except TargetUnavailable as exc:
            add(_unreachable("vhost-user:start", "start or find the back-end",
                             "VHOST-USER-CONNECT", f"target unavailable: {exc}"))
            report.incomplete = f"the back-end could not be reached: {exc}"
            return report
        pre, offered = _connect(target)
        add(pre)
        if pre.status is not Status.PASSED:
            report.incomplete = (f"the back-end could not be reached "
                                 f"({pre.failure.requirement if pre.failure else ''}); "
                                 f"no check was run")
            return report
        for name in check_names(kind):
            covers = COVERS.get(name, ())
            if (checks and name not in checks) or not (
                    (not only or matches(only, name, *covers)) and not matches(skip, name)):
                deselected.extend(covers)
                continue
            if not target.alive():
                add(_gone(name, f"the back-end process is gone ({target.exit_status()})",
                          target, before=True))
                report.incomplete = (f"the back-end died before {name} "
                                     f"({target.exit_status()}); later checks were not run")
                break
            t0 = time.perf_counter()
            results = run_check(target, name)
            kept: list[Result] = []
            for r in results:
                if r.status in ("fail", "expected-deviation", "error") or \
                        wanted(name, r.check, r.rule):
                    kept.append(r)
                else:
                    deselected.append(r.rule)
            for n in result_notes(kept):
                if n not in report.notes:
                    report.notes.append(n)
            # one check's rules are written together (a report per rule would cost more
            # than the checks themselves)
            pairs = to_checks_with_evidence(kept, time.perf_counter() - t0)
            try:
                for c, records in pairs:
                    add(c, records, write=False)
            finally:
                save()
            dead = next((r.gone for r in results if r.gone), "")
            if dead:
                if not any(r.rule == "VHOST-USER-RESPONSIVE" and r.status == "error"
                           for r in results):
                    add(_gone(name, dead, target))
                report.incomplete = (f"the back-end stopped answering during {name} "
                                     f"({dead}); later checks were not run")
                break
        add(platform_check())
        add(transport_check(report.universe or ()))
        if offered is not None and kind in ("blk", "net"):
            add(applicability_check(kind, offered, report.universe or ()))
        # the device-side MUSTs applicable to what this device offered: its own chapter's,
        # and every one in its universe (chapters 2-4 and 6 too)
        if kind in DEVICE_CHAPTER:
            report.notes.append(device_musts_line(report, DEVICE_CHAPTER[kind]))
        report.notes.append(device_musts_line(report, None))
        if deselected:
            add(not_judged("selection", "checks and rules left out by only / skip / checks",
                           "suite", dict.fromkeys(deselected), NotJudged.DESELECTED,
                           f"checks {list(checks or [])} only {list(only)} skip {list(skip)}"))
    except ENDINGS as exc:  # never a traceback, never a lost report
        record_ending(report, exc)
        _salvage(report, exc)
    finally:
        rec.finish(target.stop if target is not None else None, "stopping the back-end")
    return report


NOT_APPLICABLE = (NotJudged.NOT_OFFERED, NotJudged.NOT_APPLICABLE)
DEVICE_CHAPTER = {"net": "5.1", "blk": "5.2", "fs": "5.11", "gpu": "5.7"}


def device_musts_line(report: Report, chapter: str | None) -> str:
    """The device-side MUSTs (MUST and MUST NOT) of the device chapter §``chapter`` (None:
    of every chapter in this report's universe): registered, applicable to what the
    device offered and this run negotiated (a rule left not judged as not-offered or
    not-applicable is not), judged, failed -- the number issue 13 asks about, beside
    the whole-universe headline."""
    musts = {r.id for r in all_requirements() if r.side == "device"
             and r.level in ("MUST", "MUST NOT")
             and (chapter is None or r.section.startswith(f"{chapter}."))}
    verdicts = {r: v for r, v in report.verdicts().items() if r in musts}
    if chapter is None:
        musts = set(verdicts)
    applicable = {r: v for r, v in verdicts.items()
                  if not (v.status is Status.NOT_JUDGED and v.reason in NOT_APPLICABLE)}
    judged = [r for r, v in applicable.items() if v.status in (Status.PASSED, Status.FAILED)]
    failed = [r for r, v in applicable.items() if v.status is Status.FAILED]
    pct = 100 * len(judged) // max(1, len(applicable))
    what = f"§{chapter} device MUSTs" if chapter else "device-side MUSTs, all chapters"
    return (f"{what}: {len(musts)} registered, {len(applicable)} applicable "
            f"to the offer, {len(judged)} judged ({pct} %), {len(failed)} failed")


def _salvage(report: Report, exc: BaseException) -> None:
    """Add what an interrupted check judged before the interruption."""
    partial = getattr(exc, "pvspec_partial", None)
    if partial:
        report.checks += to_checks(partial)


def _gone(name: str, why: str, target: Target, before: bool = False) -> Check:
    """The back-end is dead: VHOST-USER-RESPONSIVE is an error, never a pass."""
    log = target.log()[-600:]
    trace = (ev.op(f"back-end log: {log}", kind="log"),) if log.strip() else ()
    return _unreachable(f"vhost-user:alive-{'before' if before else 'after'}:{name}",
                        f"the back-end is alive {'before' if before else 'after'} {name}",
                        "VHOST-USER-RESPONSIVE", why, trace)
