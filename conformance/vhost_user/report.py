"""``run_conformance``: run the vhost-user checks on one target and render them in the one
result model (:class:`conformance.report.Report`), like every other target.

Each (check, rule) pair becomes one report check; a known deviation (see
``EXPECTED_DEVIATIONS`` and docs/findings.md) stays *failed* in the report, because the
device does break the rule, and is named in the notes.  The traceability matrix accounts
for every device-side requirement of the core chapters and of the device's own chapter, so
a rule the front-end cannot reach shows as skipped rather than disappearing.
"""

from __future__ import annotations

import time
from pathlib import Path

from conformance.report import Check, Failure, Report, combine
from conformance.vhost_user.checks import VHOST_RULES, Result, run_checks
from conformance.vhost_user.targets import Target, TargetUnavailable, open_target
from spec.virtio import oracle as orc
from spec.virtio.registry import all_requirements

STATUS = {"pass": "passed", "warn": "passed", "skip": "skipped", "fail": "failed",
          "expected-deviation": "failed"}
DEVICE_CHAPTER = {"blk": "5.2", "fs": "5.11"}
METHOD = "vhost-user front-end over shared memory; spec oracle"


def universe(kind: str) -> dict[str, str]:
    """Requirement id -> clause a vhost-user back-end of ``kind`` answers for.

    Device-side rules of chapters 2, 3 and 6 and of its device chapter; the transport
    chapter (4) belongs to the VMM in front of a vhost-user back-end, not to the back-end.
    """
    chapter = DEVICE_CHAPTER[kind]
    out = {r.id: r.section for r in all_requirements() if r.side == "device" and (
        r.section.split(".")[0] in ("2", "3", "6") or
        f"{r.section}.".startswith(f"{chapter}."))}
    out |= {rule: section for rule, (section, _) in orc.IMPLIED_RULES.items()}
    out |= {rule: section for rule, (section, _) in VHOST_RULES.items()}
    return out


def _paraphrase(rule: str) -> str:
    for r in all_requirements():
        if r.id == rule:
            return r.text
    return (orc.IMPLIED_RULES.get(rule) or VHOST_RULES.get(rule) or ("", rule))[1]


def to_checks(results: list[Result], seconds: float = 0.0) -> list[Check]:
    """One report check per (check, rule), in first-seen order."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.check, r.rule), []).append(r)
    per = seconds / max(1, len(groups))
    out = []
    for (check, rule), rs in groups.items():
        status = combine([STATUS[r.status] for r in rs])
        bad = next((r for r in rs if STATUS[r.status] == "failed"), None)
        notes = [r.detail for r in rs if r.status == "warn"]
        failure = None if bad is None else Failure(
            kind="device", requirement=rule, clause=bad.section, expected=_paraphrase(rule),
            observed=bad.detail,
            trace=tuple({"op": "vhost-user", "text": t} for t in bad.trace))
        detail = (bad.detail if bad else
                  "; ".join(f"SHOULD not met: {d}" for d in notes) or
                  ("; ".join(r.detail for r in rs if r.status == "skip")
                   if status == "skipped" else ""))
        out.append(Check(id=f"{check}:{rule}", title=f"{check}: {rule}", kind="vhost-user",
                         status=status, covers=(rule,), clause=rs[0].section, method=METHOD,
                         seconds=per, steps=len(rs), detail=detail, failure=failure))
    return out


def build_report(target_spec: str, results: list[Result], seconds: float, kind: str = "blk",
                 ) -> Report:
    rep = Report(target=target_spec, target_name=f"vhost-user {kind} back-end", abi_version="",
                 protocol_version="vhost-user", capabilities=("virtio", "vhost-user", kind),
                 seconds=seconds, checks=to_checks(results, seconds), universe=universe(kind))
    known = sorted({r.detail.rsplit("[", 1)[-1].rstrip("]") for r in results
                    if r.status == "expected-deviation"})
    rep.notes += [f"known deviation (docs/findings.md): {k}" for k in known]
    rep.notes += [f"SHOULD-level: {r.check}: {r.rule}: {r.detail}" for r in results
                  if r.status == "warn"]
    return rep


def run_conformance(target_spec: str, report_dir: str | Path | None = None,
                    checks: tuple[str, ...] | None = None,
                    json_file: str | Path | None = None) -> Report:
    """Start (if managed) ``target_spec``, run every check, stop it, write the report.

    ``target_spec``: ``vhost-user:SOCKET``, ``qemu-vhost-user-blk``,
    ``reference-vhost-user-blk`` or ``virtiofsd``.  A target that cannot be started is
    one ``error`` check with the reason (exit status 2), never a pass.
    """
    t0 = time.monotonic()
    try:
        target: Target = open_target(target_spec)
    except TargetUnavailable as e:
        rep = Report(target=target_spec, abi_version="", protocol_version="vhost-user",
                     checks=[Check(id="target", title="start the target", kind="vhost-user",
                                   status="error", covers=(), method=METHOD,
                                   detail=f"target unavailable: {e}")],
                     universe={})
    else:
        try:
            results = run_checks(target, checks)
        finally:
            target.stop()
        rep = build_report(target_spec, results, time.monotonic() - t0, target.kind)
    rep.seconds = time.monotonic() - t0
    if report_dir is not None:
        rep.write(report_dir)
    if json_file is not None:
        import json

        Path(json_file).write_text(json.dumps(rep.summary(), indent=1))
    return rep
