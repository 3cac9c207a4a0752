"""One conformance run: scenarios, then the differential oracle, into a :class:`Report`.

The report is rewritten after every check and in a ``finally``, so a crash of the target
(or of anything else) never loses the partial result.  A failure's minimal trace is saved
as a JSON trace file that ``pvspec replay FILE --target ...`` re-runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from conformance import oracle, protocol, scenarios
from conformance.report import Check, Failure, Report, requirements
from conformance.target import ExecTarget, Target, TargetError, make_target
from spec.hypercalls import abi

TRACE_FORMAT = "pvspec-trace"

__all__ = ["TRACE_FORMAT", "load_trace", "run_conformance", "write_trace"]


def write_trace(directory: Path, name: str, failure: Failure, target: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".json")
    path.write_text(json.dumps({
        "format": TRACE_FORMAT, "version": 1, "abi_version": abi.ABI_VERSION,
        "target": target, "config": attrs.asdict(oracle.SIM_CONFIG),
        "failure": {"kind": failure.kind, "requirement": failure.requirement,
                    "clause": failure.clause, "expected": failure.expected,
                    "observed": failure.observed},
        "ops": list(failure.trace)}, indent=1))
    return str(path)


def load_trace(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("format") != TRACE_FORMAT:
        raise ValueError(f"{path} is not a {TRACE_FORMAT} file")
    return data


def _oracle_check(target: Target, profile: str, **overrides: Any) -> Check:
    covers = [f"abi:{r.name}" for r in abi.TABLE] + ["abi:decode"]
    if "events" in target.capabilities:
        covers += [f"event:{e.name}" for e in abi.EVENTS]
    covers += [r for r in requirements() if r.startswith("invariant:")]
    inv = overrides.get("invariants", oracle.PROFILES.get(profile, oracle.PROFILES["ci"])
                        ["invariants"])
    if inv == "step":
        covers += [r for r in requirements() if r.startswith("step:")]
    if "hypercall" not in target.capabilities:
        return Check("oracle:differential", "differential state machine", "oracle", "skipped",
                     tuple(covers), detail="target lacks the hypercall capability")
    out = oracle.run_oracle(target, oracle.SIM_CONFIG, profile, **overrides)
    f = out.failure
    failure = Failure(f.kind, f.requirement, f.clause, f.expected, f.observed,
                      tuple(f.trace), shrunk_from=out.shrunk_from) if f else None
    detail = out.error
    if out.spec_defects:
        detail += f" ({len(out.spec_defects)} inputs skipped: the spec raised, e.g. " \
                  f"{out.spec_defects[0]})"
    return Check("oracle:differential", "differential state machine vs the spec", "oracle",
                 out.status, tuple(covers), "every ABI row; spec/invariants.py",
                 f"Hypothesis state machine ({profile}), compared after every step",
                 out.seconds, out.examples, out.steps, detail.strip(), failure)


def run_conformance(target_spec: str, profile: str = "ci", report_dir: str | None = None,
                    json_file: str | None = None, timeout: float = 5.0,
                    progress: Callable[[str, Check | None], None] | None = None,
                    target: Target | None = None, scenario_filter: Callable[[Any], bool]
                    | None = None, extra_checks: list[Check] | None = None,
                    notes: list[str] | None = None, **oracle_overrides: Any) -> Report:
    """Run every check against ``target_spec``; always returns a report (never raises)."""
    start = time.perf_counter()
    report = Report(target=target_spec, profile=profile, notes=list(notes or []))
    report.checks += list(extra_checks or [])
    out = Path(report_dir) if report_dir else None
    owned = target is None

    def save() -> None:
        report.seconds = time.perf_counter() - start
        if out is not None:
            report.write(out)
        if json_file:
            Path(json_file).write_text(json.dumps(report.summary(), indent=1))

    def add(check: Check) -> None:
        f = check.failure
        if f is not None and f.trace and out is not None:
            path = write_trace(out / "traces", check.id, f, target_spec)
            check = attrs.evolve(check, failure=attrs.evolve(f, trace_file=path))
        report.checks.append(check)
        if progress:
            progress(check.id, check)
        save()

    try:
        if target is None:
            try:
                target = make_target(target_spec, timeout=timeout,
                                     log_dir=str(out) if out else None)
            except TargetError as exc:
                add(Check("target:start", "start the target", "oracle", "error", (),
                          detail=exc.reason))
                return report
        report.target_name = getattr(target, "target_name", "") or target.name
        report.capabilities = tuple(sorted(target.capabilities))
        report.protocol_version = protocol.PROTOCOL_VERSION if isinstance(
            target, ExecTarget) else "in-process"
        for sc in scenarios.SCENARIOS:
            if scenario_filter is None or scenario_filter(sc):
                add(scenarios.run_scenario(target, sc))
        add(_oracle_check(target, profile, **oracle_overrides))
    except Exception as exc:  # the suite never crashes and never loses the partial report
        report.checks.append(Check("suite:internal", "suite", "oracle", "error", (),
                                   detail=f"{type(exc).__name__}: {exc}"))
    finally:
        if owned and target is not None:
            try:
                target.close()
            except Exception as exc:
                report.notes.append(f"closing the target failed: {exc}")
        save()
    return report
