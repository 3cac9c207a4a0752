"""One result model for a conformance (and proof) run, rendered as JSON, JUnit XML,
Markdown and a self-contained HTML page, with a traceability matrix: every ABI row, event,
invariant and step property -> the checks that cover it and their combined status.

Statuses: ``proved`` (a Z3 proof), ``passed``, ``failed``, ``skipped`` (never counted as
passed; e.g. a missing target capability), ``error`` (the target or the run broke).
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import attrs

from spec import invariants
from spec.hypercalls import abi

STATUSES = ("proved", "passed", "failed", "skipped", "error")
REPORT_VERSION = 1


@attrs.frozen
class Failure:
    kind: str  # result | observation | crash | spec-invariant | proof
    requirement: str
    clause: str
    expected: str
    observed: str
    trace: tuple[dict[str, Any], ...] = ()
    trace_file: str | None = None
    shrunk_from: int = 0


@attrs.frozen
class Check:
    id: str
    title: str
    kind: str  # proof | oracle | scenario | vhost-user
    status: str
    covers: tuple[str, ...]
    clause: str = ""
    method: str = ""
    seconds: float = 0.0
    examples: int = 0
    steps: int = 0
    detail: str = ""
    failure: Failure | None = None


def requirements() -> dict[str, str]:
    """Every hypervisor requirement the matrix must account for, with its clause."""
    out = {f"abi:{r.name}": r.clause for r in abi.TABLE}
    out["abi:decode"] = "SMCCC DEN0028 2.5; pvspec ABI reserved bits"
    out |= {f"event:{e.name}": e.clause for e in abi.EVENTS}
    out |= {f"invariant:{i.name}": i.clause for i in invariants.INVARIANTS}
    out |= {f"step:{p.name}": p.clause for p in invariants.STEP_PROPERTIES}
    return out


def combine(statuses: list[str]) -> str:
    if not statuses:
        return "skipped"
    for s in ("failed", "error"):
        if s in statuses:
            return s
    real = [s for s in statuses if s != "skipped"]
    if not real:
        return "skipped"
    return "proved" if "proved" in real else "passed"


@attrs.define
class Report:
    target: str
    target_name: str = ""
    profile: str = "ci"
    abi_version: str = abi.ABI_VERSION
    protocol_version: str = ""
    capabilities: tuple[str, ...] = ()
    started: float = attrs.field(factory=time.time)
    seconds: float = 0.0
    checks: list[Check] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    # requirement id -> clause: what the traceability matrix accounts for (None: the
    # hypervisor's ABI rows, events, invariants and step properties)
    universe: dict[str, str] | None = None

    # --- summary ------------------------------------------------------------------------------
    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def verdict(self) -> str:
        if self.count("error"):
            return "error"
        if self.count("failed"):
            return "failed"
        return "passed" if self.count("passed") + self.count("proved") else "skipped"

    @property
    def exit_code(self) -> int:
        return {"passed": 0, "failed": 1, "error": 2}.get(self.verdict, 2)

    def matrix(self) -> dict[str, dict[str, Any]]:
        reqs = requirements() if self.universe is None else self.universe
        rows: dict[str, dict[str, Any]] = {r: {"clause": c, "checks": []} for r, c in reqs.items()}
        for c in self.checks:
            for r in c.covers:
                rows.setdefault(r, {"clause": "", "checks": []})["checks"].append(c)
        return {r: {"clause": v["clause"],
                    "status": combine([c.status for c in v["checks"]]),
                    "checks": [c.id for c in v["checks"]],
                    "how": sorted({c.method for c in v["checks"] if c.method})}
                for r, v in rows.items()}

    # --- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            "target": self.target, "target_name": self.target_name, "profile": self.profile,
            "abi_version": self.abi_version, "protocol_version": self.protocol_version,
            "capabilities": list(self.capabilities), "started": self.started,
            "seconds": round(self.seconds, 3), "verdict": self.verdict,
            "summary": {s: self.count(s) for s in STATUSES} | {
                "checks": len(self.checks), "steps": sum(c.steps for c in self.checks)},
            "notes": list(self.notes),
            "checks": [check_dict(c) for c in self.checks],
            "traceability": self.matrix(),
        }

    def summary(self) -> dict[str, Any]:
        """The ``--json FILE`` payload."""
        return {
            "target": self.target, "verdict": self.verdict, "checks": len(self.checks),
            "passed": self.count("passed") + self.count("proved"),
            "failed": self.count("failed"), "skipped": self.count("skipped"),
            "errors": self.count("error"), "steps": sum(c.steps for c in self.checks),
            "seconds": round(self.seconds, 3), "notes": list(self.notes),
            "failures": [
                {"check": c.id, "status": c.status, "detail": c.detail,
                 **({"requirement": c.failure.requirement, "clause": c.failure.clause,
                     "expected": c.failure.expected, "observed": c.failure.observed,
                     "trace": list(c.failure.trace), "trace_file": c.failure.trace_file}
                    if c.failure else {"requirement": (c.covers or ("",))[0],
                                       "clause": c.clause, "trace": []})}
                for c in self.checks if c.status in ("failed", "error")],
        }

    # --- writing --------------------------------------------------------------------------------
    def write(self, directory: str | Path) -> Path:
        """Write report.json, junit.xml, report.md and report.html into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        _atomic(out / "report.json", json.dumps(self.to_dict(), indent=1))
        _atomic(out / "junit.xml", self.junit())
        _atomic(out / "report.md", self.markdown())
        _atomic(out / "report.html", self.html())
        return out

    # --- JUnit ----------------------------------------------------------------------------------
    def junit(self) -> str:
        suite = ET.Element("testsuite", name=f"pvspec conformance: {self.target}",
                           tests=str(len(self.checks)), failures=str(self.count("failed")),
                           errors=str(self.count("error")), skipped=str(self.count("skipped")),
                           time=f"{self.seconds:.3f}")
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"pvspec.{c.kind}", name=c.id,
                                 time=f"{c.seconds:.3f}")
            text = _failure_text(c)
            if c.status == "failed":
                ET.SubElement(case, "failure", message=_one_line(c)).text = text
            elif c.status == "error":
                ET.SubElement(case, "error", message=_one_line(c)).text = text
            elif c.status == "skipped":
                ET.SubElement(case, "skipped", message=c.detail)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True)

    # --- Markdown -------------------------------------------------------------------------------
    def markdown(self) -> str:
        lines = [f"# pvspec conformance report: `{self.target}`", "",
                 f"**Verdict: {self.verdict.upper()}** — " + ", ".join(
                     f"{self.count(s)} {s}" for s in STATUSES) +
                 f"; {sum(c.steps for c in self.checks)} oracle steps in {self.seconds:.1f} s "
                 f"(profile `{self.profile}`" +
                 (f", ABI {self.abi_version}" if self.abi_version else "") + ").", ""]
        if self.capabilities:
            lines += [f"Capabilities: {', '.join(self.capabilities)}", ""]
        lines += [f"> {n}" for n in self.notes] + ([""] if self.notes else [])
        bad = [c for c in self.checks if c.status in ("failed", "error")]
        if bad:
            lines += ["## Failures", ""]
            for c in bad:
                lines += [f"### {c.status.upper()}: {c.id}", "", "```", _failure_text(c), "```", ""]
        lines += ["## Checks", "", "| check | status | how | covers | steps | seconds |",
                  "|---|---|---|---|---:|---:|"]
        for c in self.checks:
            cov = ", ".join(c.covers) if len(c.covers) <= 3 else f"{len(c.covers)} requirements"
            lines.append(f"| {c.id} | {c.status} | {c.method} | {cov} | {c.steps} | "
                         f"{c.seconds:.2f} |")
        lines += ["", "## Traceability", "", "| requirement | clause | status | checked by |",
                  "|---|---|---|---|"]
        for r, v in self.matrix().items():
            by = ", ".join(v["checks"][:6]) + (f" (+{len(v['checks']) - 6})"
                                                 if len(v["checks"]) > 6 else "")
            lines.append(f"| {r} | {v['clause']} | {v['status']} | {by or '—'} |")
        return "\n".join(lines) + "\n"

    # --- HTML -----------------------------------------------------------------------------------
    def html(self) -> str:
        e = html.escape
        color = {"proved": "#1a7f37", "passed": "#2da44e", "failed": "#cf222e",
                 "error": "#bc4c00", "skipped": "#6e7781"}

        def badge(s: str) -> str:
            return f'<span class="b" style="background:{color.get(s, "#555")}">{e(s)}</span>'

        rows = "".join(
            f"<tr><td>{e(c.id)}</td><td>{badge(c.status)}</td><td>{e(c.method)}</td>"
            f"<td>{e(', '.join(c.covers[:4]))}{'…' if len(c.covers) > 4 else ''}</td>"
            f"<td>{c.steps}</td><td>{c.seconds:.2f}</td></tr>" for c in self.checks)
        fails = "".join(
            f"<h3>{badge(c.status)} {e(c.id)}</h3><pre>{e(_failure_text(c))}</pre>"
            for c in self.checks if c.status in ("failed", "error"))
        matrix = "".join(
            f"<tr><td>{e(r)}</td><td>{e(v['clause'])}</td><td>{badge(v['status'])}</td>"
            f"<td>{e(', '.join(v['checks']))}</td></tr>" for r, v in self.matrix().items())
        summary = ", ".join(f"{self.count(s)} {s}" for s in STATUSES)
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pvspec conformance: {e(self.target)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;width:100%;margin:1em 0}}td,th{{border:1px solid #d0d7de;
padding:3px 6px;text-align:left;vertical-align:top}}th{{background:#f6f8fa}}
.b{{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px}}
pre{{background:#f6f8fa;padding:8px;overflow:auto}}</style></head><body>
<h1>pvspec conformance: <code>{e(self.target)}</code></h1>
<p>Verdict {badge(self.verdict)} — {e(summary)}; {sum(c.steps for c in self.checks)} oracle
steps in {self.seconds:.1f} s; profile <code>{e(self.profile)}</code>; ABI {e(self.abi_version)};
capabilities {e(', '.join(self.capabilities) or '—')}.</p>
{''.join(f'<p><em>{e(n)}</em></p>' for n in self.notes)}
{'<h2>Failures</h2>' + fails if fails else ''}
<h2>Checks</h2><table><tr><th>check</th><th>status</th><th>how</th><th>covers</th>
<th>steps</th><th>s</th></tr>{rows}</table>
<h2>Traceability matrix</h2><table><tr><th>requirement</th><th>clause</th><th>status</th>
<th>checked by</th></tr>{matrix}</table></body></html>
"""


def check_dict(c: Check) -> dict[str, Any]:
    d = attrs.asdict(c, recurse=True)
    d["covers"] = list(c.covers)
    d["seconds"] = round(c.seconds, 4)
    if c.failure:
        d["failure"]["trace"] = list(c.failure.trace)
    return d


def check_from_dict(d: dict[str, Any]) -> Check:
    """The inverse of the report's check encoding (merging reports of several workers)."""
    f = d.get("failure")
    failure = None if f is None else Failure(**{**f, "trace": tuple(f.get("trace", ()))})
    return Check(**{**d, "covers": tuple(d["covers"]), "failure": failure})


def _one_line(c: Check) -> str:
    f = c.failure
    if f:
        return f"{f.requirement} [{f.clause}]: expected {f.expected}, observed {f.observed}"
    return c.detail


def _failure_text(c: Check) -> str:
    f = c.failure
    if f is None:
        return c.detail
    lines = [f"requirement: {f.requirement}", f"clause:      {f.clause}",
             f"expected:    {f.expected}", f"observed:    {f.observed}"]
    if c.detail:
        lines.append(f"detail:      {c.detail}")
    if f.trace:
        shrunk = f" (shrunk from {f.shrunk_from})" if f.shrunk_from else ""
        lines.append(f"minimal trace, {len(f.trace)} steps{shrunk}:")
        lines += [f"  {i + 1:3}. {_op_text(op)}" for i, op in enumerate(f.trace)]
    if f.trace_file:
        lines.append(f"replay:      pvspec replay {f.trace_file} --target ...")
    return "\n".join(lines)


def _op_text(op: dict[str, Any]) -> str:
    if op.get("op") == "vhost-user":
        return str(op["text"])
    if op.get("op") == "event":
        return f"event {op['name']}({', '.join(str(a) for a in op['args'])})"
    return f"vm{op['vm']}.{op['vcpu']} {op['conv']} {op.get('call', '')} -> {op.get('expect', '')}"


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
