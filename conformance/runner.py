"""One hypervisor conformance run: scenarios, then the differential oracle, into a
:class:`Report` that is true however the run ends.

* Every check runs guarded: a defect of the suite is an ``error`` check naming it, never
  a traceback.
* The report is rewritten after every check and in a ``finally``: a crash of the target,
  Ctrl-C (``KeyboardInterrupt``), SIGTERM or the time limit
  (:class:`~conformance.results.RunInterrupted`) leave a report marked ``incomplete``
  with the reason; requirements the run never reached say ``interrupted``.
* A target that breaks ``max_errors`` checks in a row ends the run early.
* A failure's minimal trace is saved as ``traces/NAME.json`` (path relative to the report)
  that ``pvspec replay`` re-runs.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conformance import oracle, protocol, requirements, scenarios
from conformance.reach import Reach
from conformance.recorder import ENDINGS, Recorder, record_ending
from conformance.report import Report, atomic_write, new_trace_path
from conformance.results import (
    Check,
    Failure,
    NotJudged,
    RunInterrupted,
    Status,
    UsageError,
    clip_text,
    matches,
    not_judged,
)
from conformance.target import (
    ExecTarget,
    Target,
    TargetError,
    make_target,
    target_profile,
    target_rows,
)
from spec.hypercalls import abi

TRACE_FORMAT = "pvspec-trace"
TRACE_VERSION = 2

__all__ = ["TRACE_FORMAT", "load_trace", "oracle_check", "run_conformance", "view_checks",
           "write_trace"]


# --- traces -----------------------------------------------------------------------------------
def write_trace(report_dir: Path, name: str, failure: Failure, ops: Sequence[Any],
                target: str) -> str:
    """Save a failure's trace under ``report_dir/traces``; the path relative to the
    report directory."""
    path = new_trace_path(report_dir, name)
    atomic_write(path, json.dumps({
        "format": TRACE_FORMAT, "version": TRACE_VERSION, "abi_version": abi.ABI_VERSION,
        "protocol_version": protocol.PROTOCOL_VERSION,
        "target": target, "config": oracle.SIM_CONFIG.sizes(),
        "failure": {"kind": failure.kind, "requirement": failure.requirement,
                    "clause": failure.clause, "expected": clip_text(failure.expected),
                    "observed": clip_text(failure.observed)},
        "ops": list(ops)}, indent=1))
    return str(path.relative_to(report_dir))


_OP_FIELDS = {"hypercall": ("vm", "vcpu", "conv", "regs"), "event": ("name", "args")}


def load_trace(path: str | Path) -> dict[str, Any]:
    """A trace file, checked: :class:`UsageError` names what is wrong (not a trace, another
    protocol or ABI version, a malformed op), so a replay never runs something else
    silently."""
    from spec.state import Config

    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != TRACE_FORMAT:
        raise UsageError(f"{path} is not a {TRACE_FORMAT} file")
    if data.get("version") not in (1, TRACE_VERSION):
        raise UsageError(f"{path}: trace format version {data.get('version')!r}; this pvspec "
                         f"reads versions 1 and {TRACE_VERSION}")
    if data.get("abi_version") != abi.ABI_VERSION:
        raise UsageError(f"{path} was recorded against ABI {data.get('abi_version')!r}; the "
                         f"spec is ABI {abi.ABI_VERSION}")
    pv = data.get("protocol_version")
    if pv is not None and str(pv).split(".")[0] != protocol.PROTOCOL_VERSION.split(".")[0]:
        raise UsageError(f"{path} was recorded with protocol {pv!r}; this pvspec speaks "
                         f"{protocol.PROTOCOL_VERSION}")
    cfg = data.get("config")
    try:
        if not isinstance(cfg, dict):
            raise TypeError("config is not an object")
        fields = set(Config().sizes())
        if set(cfg) != fields:
            raise ValueError(f"config must have exactly the fields {sorted(fields)}")
        if not all(isinstance(v, int) and v >= 0 for v in cfg.values()):
            raise ValueError("config values must be non-negative integers")
        Config(**cfg)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: bad config: {exc}") from None
    ops = data.get("ops")
    if not isinstance(ops, list):
        raise UsageError(f"{path}: 'ops' is not a list")
    for i, op in enumerate(ops):
        _check_op(path, i, op)
    target = data.get("target")
    if target is not None and not isinstance(target, str):
        raise UsageError(f"{path}: 'target' is not a string")
    return data


def _check_op(path: str | Path, i: int, op: Any) -> None:
    where = f"{path}: op {i + 1}"
    if not isinstance(op, dict) or op.get("op") not in _OP_FIELDS:
        raise UsageError(f"{where}: not a hypercall or event op")
    for f in _OP_FIELDS[op["op"]]:
        if f not in op:
            raise UsageError(f"{where}: missing {f!r}")
    try:
        if op["op"] == "hypercall":
            if op["conv"] not in abi.CONVENTIONS:
                raise ValueError(f"unknown convention {op['conv']!r}")
            for k in ("vm", "vcpu"):
                if not isinstance(op[k], int) or op[k] < 0:
                    raise ValueError(f"{k} must be a non-negative integer")
            if not isinstance(op["regs"], dict):
                raise ValueError("regs is not an object")
            for v in op["regs"].values():
                protocol.word(v)
        else:
            if op["name"] not in abi.EVENT_BY_NAME:
                raise ValueError(f"unknown event {op['name']!r}")
            if not isinstance(op["args"], list):
                raise ValueError("args is not a list")
            for v in op["args"]:
                protocol.word(v)
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"{where}: {exc}") from None


# --- checks -----------------------------------------------------------------------------------
def _oracle_covers(target: Target) -> list[str]:
    spoken = target_rows(target_profile(target))
    covers = [f"abi:{r.name}" for r in abi.TABLE if r.name in spoken] + ["abi:decode"]
    if "events" in target.capabilities:
        covers += [f"event:{e.name}" for e in abi.EVENTS]
    covers += [r.id for r in requirements.hypervisor() if r.kind in ("invariant", "step")]
    return covers


def _encoded(target: Target) -> dict[str, tuple[int, int]]:
    """Per codec ABI the target speaks: (calls sent in it, calls of its rows it has no
    form for, sent in pvspec's registers)."""
    encoded = getattr(target, "encoded", None)
    return encoded() if callable(encoded) else {}


def oracle_check(target: Target, profile: str, reach: Reach | None = None,
                 deviations: dict[str, int] | None = None,
                 learned: dict[str, str] | None = None, **overrides: Any) -> Check:
    """The differential oracle as one check; it credits exactly what it judged.  What the
    workload reached is added to ``reach`` when given."""
    covers = _oracle_covers(target)
    cid = "oracle:differential"
    if "hypercall" not in target.capabilities:
        return not_judged(cid, "differential state machine", "oracle", covers,
                          NotJudged.CAPABILITY, "target lacks the hypercall capability")
    out = oracle.run_oracle(target, oracle.SIM_CONFIG, profile, **overrides)
    if reach is not None and out.reach is not None:
        reach.merge(out.reach)
    if deviations is not None:
        deviations.update(out.deviations)
    if learned is not None:
        learned.update(out.learned)
    f = out.failure
    failure = Failure(f.kind, f.requirement, f.clause, f.expected, f.observed,
                      tuple(f.trace), shrunk_from=out.shrunk_from) if f else None
    detail = out.error
    if out.spec_defects:
        detail += f" ({len(out.spec_defects)} inputs skipped: the spec raised, e.g. " \
                  f"{out.spec_defects[0]})"
    if failure is None and out.status == "error" and out.trace:
        failure = Failure("crash" if "exit" in out.error or "signal" in out.error else
                          "protocol", _last_requirement(out.trace), "pvspec stdio protocol "
                          "(docs/PROTOCOL.md)", "an answer", clip_text(out.error),
                          tuple(out.trace))
    if out.deviations:
        detail += " known deviations seen: " + ", ".join(
            f"{k} x{n}" for k, n in sorted(out.deviations.items()))
    return Check(cid, "differential state machine vs the spec", "oracle", out.status, covers,
                 sorted(out.judged), None, "every ABI row; spec/invariants.py",
                 f"Hypothesis state machine ({profile}), compared after every step",
                 out.seconds, out.examples, out.steps, clip_text(detail.strip()), failure)


def deviation_checks(target: Target, seen: dict[str, int]) -> list[Check]:
    """One failed check per known deviation of the target that the run saw again: the
    requirement stays failed in the report (docs/findings.md says why), while the run
    goes on to judge everything else."""
    out = []
    for dev in getattr(target, "known_deviations", ()):
        n = seen.get(dev.id, 0)
        if not n:
            continue
        out.append(Check(f"deviation:{dev.id}", dev.title, "oracle", "failed",
                         (dev.requirement,), (dev.requirement,), None, dev.clause,
                         "known deviation, seen again by the differential oracle", 0.0, 0,
                         n, f"expected deviation {dev.id} (docs/findings.md), seen {n} "
                         f"times", Failure("result", dev.requirement, dev.clause,
                                           dev.expected, dev.observed, dev.trace)))
    return out


def _last_requirement(trace: Sequence[dict[str, Any]]) -> str:
    last = trace[-1] if trace else {}
    if last.get("op") == "hypercall":
        return f"abi:{last['row']}" if last.get("row") else "abi:decode"
    if last.get("op") == "event":
        return f"event:{last.get('name')}"
    return "abi:decode"


def view_checks(target: Target) -> list[Check]:
    """Requirements this target cannot be judged on, and why: a view the target does not
    offer (capability), or one no protocol message shows (not implemented)."""
    caps = target.capabilities
    views = {"result"} if "hypercall" in caps else set()
    views |= {v for v, cap in (("access", "probe_access"), ("dma", "probe_dma"),
                               ("irq", "probe_irq")) if cap in caps or "observe" in caps}
    missing_cap: list[str] = []
    unshown: list[str] = []
    lacking: set[str] = set()
    for r in requirements.hypervisor():
        need = requirements.views_of(r.id)
        if r.kind == "event" and "events" not in caps:
            missing_cap.append(r.id)
            lacking.add("events")
        elif "frames" in need:
            unshown.append(r.id)
        elif not need <= views:
            missing_cap.append(r.id)
            lacking |= {("hypercall" if v == "result" else f"probe_{v}")
                        for v in need - views}
    out = []
    spoken = target_rows(target_profile(target))
    unspoken = [f"abi:{r.name}" for r in abi.TABLE if r.name not in spoken]
    if unspoken:
        abis = sorted({r.abi for r in abi.TABLE if r.name not in spoken})
        out.append(not_judged("views:abis", "calls of ABIs the target does not speak",
                              "target", unspoken, NotJudged.NOT_OFFERED,
                              f"the target does not speak {', '.join(abis)} (its profile "
                              f"lists the ABIs it speaks)"))
    if missing_cap:
        out.append(not_judged("views:capability", "requirements the target cannot show",
                              "target", missing_cap, NotJudged.CAPABILITY,
                              f"the target lacks {', '.join(sorted(lacking))}: a violation "
                              f"of these requirements would not be visible"))
    if unshown:
        out.append(not_judged("views:host-frames", "requirements about host frames", "target",
                              unshown, NotJudged.NOT_IMPLEMENTED,
                              "no protocol message shows which host frame backs a guest "
                              "frame, so these invariants are proved, not tested"))
    return out


def _guarded_many(cid: str, fn: Callable[[], list[Check]]) -> list[Check]:
    """A target's own list of checks (e.g. timing statistics); a defect of the suite
    becomes one ``error`` check, as with :func:`_guarded`."""
    made: list[Check] = []

    def first() -> Check:
        made.extend(fn())
        return made[0] if made else not_judged(cid, "statistics", "target", (),
                                               NotJudged.NOT_REACHED, "the target made none")

    head = _guarded(cid, first)
    return made if made and head is made[0] else [head]


def _guarded(cid: str, fn: Callable[[], Check]) -> Check:
    """Run one check; a defect of the suite becomes an ``error`` check naming it."""
    try:
        return fn()
    except (KeyboardInterrupt, RunInterrupted):
        raise
    except Exception as exc:
        return Check(cid, "suite defect", "suite", Status.ERROR, (), (), None,
                     detail=clip_text(f"suite defect in {cid}: {type(exc).__name__}: {exc}"),
                     failure=Failure("suite", cid, "pvspec", "the check runs",
                                     clip_text(f"{type(exc).__name__}: {exc}")))


# --- the run ------------------------------------------------------------------------------
def run_conformance(target_spec: str, profile: str = "ci", report_dir: str | None = None,
                    json_file: str | None = None, timeout: float = 5.0,
                    progress: Callable[[str, Check | None], None] | None = None,
                    target: Target | None = None,
                    scenario_filter: Callable[[Any], bool] | None = None,
                    extra_checks: list[Check] | None = None, notes: list[str] | None = None,
                    only: Sequence[str] = (), skip: Sequence[str] = (), max_errors: int = 3,
                    provenance: dict[str, Any] | None = None,
                    proof_bound: dict[str, Any] | None = None,
                    **oracle_overrides: Any) -> Report:
    """Run every check against ``target_spec``; always returns a report, never raises.
    ``KeyboardInterrupt`` and :class:`RunInterrupted` end the run with an incomplete
    report (written), whose ``exit_code`` is then 130 (SIGINT) or 2."""
    start = time.perf_counter()
    report = Report(target=target_spec, profile=profile, notes=list(notes or []),
                    provenance=dict(provenance or {}), proof_bound=proof_bound)
    report.checks += list(extra_checks or [])
    out = Path(report_dir) if report_dir else None
    owned = target is None
    deselected: list[str] = []
    rec = Recorder(report, out, json_file,
                   lambda d, name, f, ops: write_trace(d, name, f, ops, target_spec),
                   progress, max_errors, start)
    add = rec.add

    def selected(cid: str, covers: Sequence[str]) -> bool:
        ok = (not only or matches(only, cid, *covers)) and not matches(skip, cid, *covers)
        if not ok:
            deselected.extend(covers)
        return ok

    try:
        if target is None:
            try:
                target = make_target(target_spec, timeout=timeout,
                                     log_dir=str(out) if out else None)
            except (TargetError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, TargetError) else str(exc)
                add(Check("target:start", "start the target", "target", Status.ERROR,
                          detail=clip_text(reason),
                          failure=Failure("crash", "abi:decode", "pvspec stdio protocol",
                                          "the target starts and answers init",
                                          clip_text(reason))))
                report.incomplete = "the target could not be started"
                return report
        report.target_name = getattr(target, "target_name", "") or target.name
        report.capabilities = tuple(sorted(target.capabilities))
        report.target_profile = target_profile(target)
        report.protocol_version = target.protocol_version if isinstance(
            target, ExecTarget) else "in-process"
        for c in view_checks(target):
            add(c)
        tgt = target
        spoken = target_rows(target_profile(target))
        for sc in scenarios.SCENARIOS:
            if scenario_filter is not None and not scenario_filter(sc):
                continue
            cid = f"scenario:{sc.id}"
            if not all(op.row in spoken for op in sc.ops):
                continue  # a scenario in an ABI the target does not speak (views:abis)
            if selected(cid, (f"abi:{sc.row}", *sc.also)):
                add(_guarded(cid, functools.partial(scenarios.run_scenario, tgt, sc)))
        if selected("oracle:differential", _oracle_covers(tgt)):
            reach = Reach()
            seen: dict[str, int] = {}
            learned: dict[str, str] = {}
            add(_guarded("oracle:differential",
                         lambda: oracle_check(tgt, profile, reach, seen, learned,
                                              **oracle_overrides)))
            report.reach = reach.to_dict()
            # calls made in a standard ABI through its codec (conformance/codec_shim.py)
            for name, (through, native) in _encoded(tgt).items():
                report.reach["features"][f"calls sent in {name}"] = through
                report.reach["features"][f"calls of {name}'s rows with no {name} form"] = native
            # the implementation-defined answers the target showed (spec/profile.py), beside
            # what it declared: "a|b" when the run could not tell them apart
            report.target_profile = {**report.target_profile,
                                     **{f"learned:{k}": v for k, v in learned.items()}}
            for c in deviation_checks(tgt, seen):
                add(c)
        stats = getattr(tgt, "statistical_checks", None)
        if stats is not None and selected("statistics", ()):
            for c in _guarded_many("statistics", stats):
                add(c)
        if deselected:
            report.checks.append(not_judged(
                "selection", "checks left out by --only / --skip", "suite",
                dict.fromkeys(deselected), NotJudged.DESELECTED,
                f"--only {list(only)} --skip {list(skip)}"))
    except ENDINGS as exc:  # never a traceback, never a lost report
        record_ending(report, exc)
    finally:
        rec.finish(target.close if owned and target is not None else None,
                   "closing the target")
    return report
