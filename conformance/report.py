"""The report of one run -- proofs, hypervisor conformance or VIRTIO checks -- rendered as
JSON (with its schema), JUnit XML, Markdown and a self-contained HTML page.

Every rendering shows the same three things, computed once here from the checks
(:mod:`conformance.results` states the rules):

* the **verdict** (passed, failed, error, incomplete) and why;
* the **coverage** headline: requirements in the universe, judged, passed, failed, and the
  reasons the rest were not judged;
* the **traceability matrix**: every requirement -> its status, the checks about it and
  the checks that judged it.

Plus where the result came from (**provenance**: version, commit, command, profile, seeds,
target and its digest, host, start and end).  Files are written atomically under unique
temporary names, so a reader never sees half a report, and parallel writers never cut each
other short.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import attrs

from conformance import requirements as _reqs
from conformance.results import (
    EXIT_CODES,
    Check,
    Failure,
    NotJudged,
    RequirementVerdict,
    Status,
    UsageError,
    Verdict,
    clip_text,
    coverage,
    requirement_verdicts,
    run_verdict,
)

__all__ = ["STATUSES", "Check", "Failure", "NotJudged", "Report", "atomic_write",
           "check_dict", "check_from_dict", "check_writable_file", "failure_text",
           "new_trace_path", "op_text", "prepare_report_dir", "provenance", "requirements"]

STATUSES = tuple(str(s) for s in Status)
REPORT_VERSION = 2
TEXT_LIMIT = 4000  # characters of target-supplied text kept per field in a report


def requirements() -> dict[str, str]:
    """Every hypervisor requirement the matrix must account for, with its clause."""
    return {r.id: r.clause for r in _reqs.hypervisor()}


# --- provenance ------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _commit() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def target_digests(target: str) -> dict[str, str]:
    """SHA-256 of the program of an ``exec:`` target and of every file named on its command
    line (the adapter script behind an interpreter), so a report says what was tested."""
    if not target.startswith("exec:"):
        return {}
    try:
        argv = shlex.split(target[5:])
    except ValueError:
        return {}
    out: dict[str, str] = {}
    for i, a in enumerate(argv):
        path = shutil.which(a) if i == 0 else a
        if path and os.path.isfile(path):
            with contextlib.suppress(OSError):
                out[a] = _sha256(path)
    return out


def provenance(target: str, profile: str = "", seeds: Iterable[int] | None = None,
               command: list[str] | None = None) -> dict[str, Any]:
    from conformance import __version__

    digests = target_digests(target)
    return {
        "version": __version__, "commit": _commit(),
        "command": shlex.join(command if command is not None else sys.argv),
        "profile": profile, "seeds": list(seeds or []), "target": target,
        "target_sha256": next(iter(digests.values()), ""), "target_files": digests,
        "host": socket.gethostname(), "python": sys.version.split()[0],
        "started": _now(), "finished": "", "wall_s": 0.0,
    }


# --- the report ------------------------------------------------------------------------------
@attrs.define
class Report:
    target: str
    target_name: str = ""
    profile: str = "ci"
    abi_version: str = attrs.field(factory=lambda: _abi_version())
    protocol_version: str = ""
    capabilities: tuple[str, ...] = ()
    started: float = attrs.field(factory=time.time)
    seconds: float = 0.0
    checks: list[Check] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    # requirement id -> clause: what the traceability matrix accounts for (None: the
    # hypervisor's ABI rows, events, invariants and step properties)
    universe: dict[str, str] | None = None
    # why the run did not finish ("" when it did): interrupted, time limit, target gone
    incomplete: str = ""
    provenance: dict[str, Any] = attrs.field(factory=dict)
    proof_bound: dict[str, Any] | None = None
    exit_override: int | None = None  # 130 after SIGINT: the shell's convention
    target_profile: dict[str, str] = attrs.field(factory=dict)  # its choices (spec/choices)
    reach: dict[str, Any] | None = None  # what the oracle's workload reached (conformance.reach)

    # --- summary ------------------------------------------------------------------------------
    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    def _universe(self) -> dict[str, str]:
        return requirements() if self.universe is None else self.universe

    def verdicts(self) -> dict[str, RequirementVerdict]:
        return requirement_verdicts(self._universe(), self.checks, bool(self.incomplete))

    def coverage(self) -> dict[str, Any]:
        return coverage(self.verdicts())

    @property
    def verdict(self) -> str:
        return str(self.verdict_and_reason()[0])

    def verdict_and_reason(self) -> tuple[Verdict, str]:
        return run_verdict(self.checks, self.verdicts(), self.incomplete)

    @property
    def exit_code(self) -> int:
        if self.exit_override is not None:
            return self.exit_override
        return EXIT_CODES[self.verdict_and_reason()[0]]

    def matrix(self) -> dict[str, dict[str, Any]]:
        clauses = self._universe()
        method = {c.id: c.method for c in self.checks}
        return {r: {"clause": clauses.get(r, ""), "status": str(v.status),
                    "reason": None if v.reason is None else str(v.reason),
                    "checks": list(v.checks), "judged_by": list(v.judged_by),
                    "how": sorted({method[c] for c in v.judged_by if method.get(c)})}
                for r, v in self.verdicts().items()}

    def headline(self) -> str:
        """One line: verdict, coverage, checks; what the CLI prints last."""
        v, why = self.verdict_and_reason()
        cov = self.coverage()
        nj = ", ".join(f"{n} {r}" for r, n in cov["not_judged"].items())
        return (f"{self.target}: {str(v).upper()} ({why}) - requirements: "
                f"{cov['requirements']}, judged {cov['judged']}, passed {cov['passed']}, "
                f"failed {cov['failed']}" + (f", error {cov['error']}" if cov["error"] else "")
                + (f"; not judged: {nj}" if nj else "") + " - checks: "
                + ", ".join(f"{self.count(s)} {s}" for s in STATUSES if self.count(s))
                + f"; {self.steps} oracle steps in {self.seconds:.1f} s")

    @property
    def steps(self) -> int:
        return sum(c.steps for c in self.checks)

    # --- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        verdict, why = self.verdict_and_reason()
        return {
            "report_version": REPORT_VERSION,
            "target": self.target, "target_name": self.target_name, "profile": self.profile,
            "abi_version": self.abi_version, "protocol_version": self.protocol_version,
            "capabilities": list(self.capabilities), "started": self.started,
            "target_profile": dict(self.target_profile),
            "seconds": round(self.seconds, 3), "verdict": str(verdict), "verdict_reason": why,
            "incomplete": self.incomplete or None,
            "coverage": self.coverage(),
            "provenance": self._provenance(),
            **({"proof_bound": self.proof_bound} if self.proof_bound else {}),
            **({"reach": self.reach} if self.reach else {}),
            "summary": {s: self.count(s) for s in STATUSES} | {
                "checks": len(self.checks), "steps": self.steps},
            "notes": [clip_text(n, TEXT_LIMIT) for n in self.notes],
            "checks": [check_dict(c) for c in self.checks],
            "traceability": self.matrix(),
        }

    def _provenance(self) -> dict[str, Any]:
        p = dict(self.provenance)
        if p:
            p["wall_s"] = round(self.seconds, 3)
            p["finished"] = p.get("finished") or _now()
        return p

    def summary(self) -> dict[str, Any]:
        """The ``--json FILE`` payload."""
        verdict, why = self.verdict_and_reason()
        return {
            "target": self.target, "verdict": str(verdict), "verdict_reason": why,
            "coverage": self.coverage(), "checks": len(self.checks),
            "passed": self.count("passed") + self.count("proved"),
            "failed": self.count("failed"), "not_judged": self.count("not-judged"),
            "errors": self.count("error"), "steps": self.steps,
            "seconds": round(self.seconds, 3), "notes": list(self.notes),
            "provenance": self._provenance(),
            "failures": [
                {"check": c.id, "status": str(c.status), "detail": clip_text(c.detail),
                 **({"requirement": c.failure.requirement, "clause": c.failure.clause,
                     "expected": clip_text(c.failure.expected),
                     "observed": clip_text(c.failure.observed),
                     "trace": list(c.failure.trace), "trace_file": c.failure.trace_file}
                    if c.failure else {"requirement": (c.covers or ("",))[0],
                                       "clause": c.clause, "trace": []})}
                for c in self.checks if c.status in (Status.FAILED, Status.ERROR)],
        }

    # --- writing --------------------------------------------------------------------------------
    def write(self, directory: str | Path) -> Path:
        """Write report.json, junit.xml, report.md and report.html into ``directory``, each
        atomically."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        d = self.to_dict()  # once, for the JSON and the page
        atomic_write(out / "report.json", json.dumps(d, indent=1))
        atomic_write(out / "junit.xml", self.junit())
        atomic_write(out / "report.md", self.markdown())
        atomic_write(out / "report.html", self.html(d))
        return out

    # --- JUnit ----------------------------------------------------------------------------------
    def junit(self) -> str:
        verdict, why = self.verdict_and_reason()
        host = self.provenance.get("host") or socket.gethostname()
        stamp = _dt.datetime.fromtimestamp(self.started, _dt.UTC).isoformat(timespec="seconds")
        root = ET.Element("testsuites", name="pvspec", tests=str(len(self.checks)),
                          failures=str(self.count("failed")), errors=str(self.count("error")),
                          skipped=str(self.count("not-judged")), time=f"{self.seconds:.3f}")
        suite = ET.SubElement(root, "testsuite", name=f"pvspec conformance: {self.target}",
                              tests=str(len(self.checks)), failures=str(self.count("failed")),
                              errors=str(self.count("error")),
                              skipped=str(self.count("not-judged")),
                              time=f"{self.seconds:.3f}", timestamp=stamp, hostname=host)
        props = ET.SubElement(suite, "properties")
        cov = self.coverage()
        for k, v in (("verdict", str(verdict)), ("verdict_reason", why),
                     ("requirements", cov["requirements"]), ("judged", cov["judged"]),
                     ("profile", self.profile),
                     ("commit", self.provenance.get("commit", ""))):
            ET.SubElement(props, "property", name=k, value=_xml_safe(str(v)))
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"pvspec.{c.kind}", name=c.id,
                                 time=f"{c.seconds:.3f}")
            cprops = ET.SubElement(case, "properties")
            for r in c.judged or c.covers:
                ET.SubElement(cprops, "property", name="requirement", value=r)
            if c.failure is not None:
                ET.SubElement(cprops, "property", name="broke", value=c.failure.requirement)
            text = _xml_safe(failure_text(c))
            if c.status is Status.FAILED:
                ET.SubElement(case, "failure", message=_xml_safe(_one_line(c))).text = text
            elif c.status is Status.ERROR:
                ET.SubElement(case, "error", message=_xml_safe(_one_line(c))).text = text
            elif c.status is Status.NOT_JUDGED:
                ET.SubElement(case, "skipped", message=_xml_safe(
                    f"not judged ({c.reason}): {clip_text(c.detail, 500)}"))
        return ET.tostring(root, encoding="unicode", xml_declaration=True)

    # --- Markdown -------------------------------------------------------------------------------
    def markdown(self) -> str:
        verdict, why = self.verdict_and_reason()
        cov = self.coverage()
        prov = self._provenance()
        lines = [f"# pvspec conformance report: `{self.target}`", "",
                 f"**Verdict: {str(verdict).upper()}** — {why}.", "",
                 f"**Coverage:** {cov['requirements']} requirements, {cov['judged']} judged: "
                 f"{cov['passed']} passed ({cov['proved']} proved), {cov['failed']} failed, "
                 f"{cov['error']} error; not judged: "
                 + (", ".join(f"{n} {r}" for r, n in cov["not_judged"].items()) or "none")
                 + ".", "",
                 "Checks: " + ", ".join(f"{self.count(s)} {s}" for s in STATUSES) +
                 f"; {self.steps} oracle steps in {self.seconds:.1f} s "
                 f"(profile `{self.profile}`" +
                 (f", ABI {self.abi_version}" if self.abi_version else "") + ").", ""]
        if self.incomplete:
            lines += [f"**Incomplete:** {self.incomplete}", ""]
        if self.capabilities:
            lines += [f"Capabilities: {', '.join(self.capabilities)}", ""]
        if self.target_profile:
            lines += ["Profile (spec/choices.py, spec/profile.py): " + ", ".join(
                f"{k} `{v}`" for k, v in self.target_profile.items()), ""]
        if prov:
            lines += ["<details><summary>Provenance</summary>", "", "| | |", "|---|---|"]
            lines += [f"| {k} | `{_md_cell(json.dumps(v) if not isinstance(v, str) else v)}` |"
                      for k, v in prov.items() if v not in ("", [], {}, None)]
            lines += ["", "</details>", ""]
        lines += [f"> {_md_line(n)}" for n in self.notes] + ([""] if self.notes else [])
        bad = [c for c in self.checks if c.status in (Status.FAILED, Status.ERROR)]
        if bad:
            lines += ["## Failures", ""]
            for c in bad:
                lines += [f"### {str(c.status).upper()}: {c.id}", "", "```",
                          failure_text(c).replace("```", "'''"), "```", ""]
        lines += ["## Checks", "", "| check | status | how | judged | steps | seconds |",
                  "|---|---|---|---|---:|---:|"]
        for c in self.checks:
            cov_s = (", ".join(c.judged) if len(c.judged) <= 3
                     else f"{len(c.judged)} requirements")
            status = str(c.status) + (f" ({c.reason})" if c.reason else "")
            lines.append(f"| {_md_cell(c.id)} | {status} | {_md_cell(c.method)} | "
                         f"{_md_cell(cov_s) or '—'} | {c.steps} | {c.seconds:.2f} |")
        if self.reach:
            rows = self.reach.get("rows", {})
            lines += ["", "## Reach of the oracle's workload", "",
                      "| ABI row | sent | succeeded | errors |", "|---|---:|---:|---|"]
            for name, counts in rows.items():
                errs = ", ".join(f"{k} {v}" for k, v in counts.items()
                                 if k not in ("sent", "ok"))
                lines.append(f"| {name} | {counts.get('sent', 0)} | {counts.get('ok', 0)} | "
                             f"{errs or '—'} |")
            lines += ["", "| state met by a call | calls |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in self.reach.get("features", {}).items()]
        lines += ["", "## Traceability", "", "| requirement | clause | status | judged by |",
                  "|---|---|---|---|"]
        for r, v in self.matrix().items():
            by = v["judged_by"]
            who = ", ".join(by[:6]) + (f" (+{len(by) - 6})" if len(by) > 6 else "")
            status = v["status"] + (f" ({v['reason']})" if v["reason"] else "")
            lines.append(f"| {_md_cell(r)} | {_md_cell(v['clause'])} | {status} | "
                         f"{_md_cell(who) or '—'} |")
        return "\n".join(lines) + "\n"

    # --- HTML -----------------------------------------------------------------------------------
    def html(self, d: dict[str, Any] | None = None) -> str:
        from conformance.report_html import render

        return render(self, d)


def _abi_version() -> str:
    from spec.hypercalls import abi

    return abi.ABI_VERSION


def check_dict(c: Check) -> dict[str, Any]:
    d = c.to_dict()
    d["detail"] = clip_text(d["detail"], TEXT_LIMIT)
    if d.get("failure"):
        for k in ("expected", "observed"):
            d["failure"][k] = clip_text(d["failure"][k], TEXT_LIMIT)
    return d


def check_from_dict(d: Mapping[str, Any]) -> Check:
    """The inverse of :func:`check_dict` (merging the checks of several workers)."""
    return Check.from_dict(d)


def _one_line(c: Check) -> str:
    f = c.failure
    if f:
        return clip_text(f"{f.requirement} [{f.clause}]: expected {f.expected}, observed "
                         f"{f.observed}", 500)
    return clip_text(c.detail, 500)


def failure_text(c: Check) -> str:
    """A check's failure as plain text: requirement, clause, expected vs observed, the
    minimal trace and how to replay it."""
    f = c.failure
    if f is None:
        return clip_text(c.detail, TEXT_LIMIT)
    lines = [f"requirement: {f.requirement}", f"clause:      {f.clause}",
             f"expected:    {clip_text(f.expected, TEXT_LIMIT)}",
             f"observed:    {clip_text(f.observed, TEXT_LIMIT)}"]
    if c.detail:
        lines.append(f"detail:      {clip_text(c.detail, TEXT_LIMIT)}")
    if f.trace:
        shrunk = f" (shrunk from {f.shrunk_from})" if f.shrunk_from else ""
        lines.append(f"minimal trace, {len(f.trace)} steps{shrunk}:")
        lines += [f"  {i + 1:3}. {op_text(op)}" for i, op in enumerate(f.trace[:200])]
        if len(f.trace) > 200:
            lines.append(f"  ... {len(f.trace) - 200} more steps in the trace file")
    if f.trace_file:
        if f.trace and f.trace[0].get("op") == "vhost-user":
            lines.append(f"evidence:    {f.trace_file} (the request bytes, to re-send)")
        else:
            lines.append(f"replay:      pvspec replay {f.trace_file}")
    return "\n".join(lines)


_failure_text = failure_text  # the name earlier code used


def op_text(op: Mapping[str, Any]) -> str:
    kind = op.get("op")
    if kind == "vhost-user":
        return clip_text(str(op.get("text", "")), 500)
    if kind == "event":
        return f"event {op.get('name')}({', '.join(str(a) for a in op.get('args', ()))})"
    if kind == "hypercall":
        return (f"vm{op.get('vm')}.{op.get('vcpu')} {op.get('conv')} {op.get('call', '')} -> "
                f"{op.get('expect', '')}")
    return clip_text(json.dumps(op, default=str), 500)


def _md_cell(text: str) -> str:
    return clip_text(str(text), 300).replace("|", "\\|").replace("\n", " ")


def _md_line(text: str) -> str:
    return clip_text(str(text), TEXT_LIMIT).replace("\n", " ")


_XML_BAD = {c: None for c in range(32) if c not in (9, 10, 13)}


def _xml_safe(text: str) -> str:
    """Text XML 1.0 can carry: no control characters, no lone surrogates."""
    return clip_text(text, TEXT_LIMIT * 4).translate(_XML_BAD)


# --- files ------------------------------------------------------------------------------------
def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file in the same
    directory, then rename: readers see the old or the new file, never a mix, and two
    writers never share a temporary file."""
    data = text.encode("utf-8", "replace")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


REPORT_FILES = ("report.json", "junit.xml", "report.md", "report.html")


def new_trace_path(report_dir: Path, name: str) -> Path:
    """A fresh file ``report_dir/traces/NAME.json`` for a check's trace (an existing one
    is never overwritten: ``NAME-2.json``, ...)."""
    directory = report_dir / "traces"
    directory.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120] or "trace"
    path, n = directory / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = directory / f"{stem}-{n}.json"
    return path


def prepare_report_dir(directory: str | Path, force: bool = False) -> Path:
    """Make ``directory`` ready to hold exactly this run's report.

    A directory that already holds files is refused (a report must not mix with an
    earlier run's traces) unless ``force``, which empties it first.  An unwritable path is
    the user's error, raised before any work starts.
    """
    out = Path(directory)
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"report path {out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()):
            if not force:
                raise UsageError(f"report directory {out} is not empty (it holds an earlier "
                                 f"run?); choose another or pass --force to clear it")
            for child in out.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".pvspec-probe.")
        os.close(fd)
        os.unlink(probe)
    except UsageError:
        raise
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return out


def check_writable_file(path: str | Path) -> None:
    """Raise :class:`UsageError` now if ``path`` (a ``--json`` file) cannot be written."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.exists() and p.is_dir():
        raise UsageError(f"{p} is a directory")
    if not parent.is_dir():
        raise UsageError(f"cannot write {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"cannot write {p}: permission denied")
