"""The HTML report page: well-formed, escaped, complete, and written with the others."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.report import Report
from conformance.report_html import render
from conformance.results import Check, Failure

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot-report"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
BIG = "0123456789abcdef" * 3200  # 51,200 characters


class _Strict(html.parser.HTMLParser):
    """Collects tags, ids and text; records every mismatched or unclosed element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else ''}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)
        else:
            self.text.append(data)


def _parse(page: str) -> _Strict:
    p = _Strict()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, f"unclosed: {p.stack}"
    return p


def _report(n_proofs: int = 3) -> Report:
    trace = tuple({"op": "hypercall", "vm": 1, "vcpu": 0, "conv": "smc64",
                   "call": f"MEM_POPULATE(gfn={i})", "expect": "OK"} for i in range(4))
    checks = [
        Check("oracle:differential", "Differential oracle", "oracle", "failed",
              ("abi:MEM_POPULATE", "abi:MEM_RECLAIM"), ("abi:MEM_RECLAIM",),
              clause="pvspec ABI", method="differential oracle", steps=120,
              detail="seed 7 <script>alert('x')</script>",
              failure=Failure("result", "abi:MEM_POPULATE", "pvspec memory quota",
                              "ERR_NO_MEMORY", "OK <b>bold</b> & " + BIG, trace,
                              "traces/oracle_differential.json", 99)),
        Check("scenario:PSCI/cpu_on", "CPU_ON twice", "scenario", "error", ("abi:CPU_ON",),
              detail="target hung \ud800 after step 3"),
        Check("target:events", "Event stream", "target", "not-judged", ("event:VCPU_START",),
              reason="capability", detail="the target reports no events"),
        Check("scenario:MEM_RECLAIM/ok", "Reclaim", "scenario", "passed",
              ("abi:MEM_RECLAIM",), ("abi:MEM_RECLAIM",), method="scenario", steps=3),
    ]
    checks += [Check(f"proof:hypervisor:MEM_POPULATE:inv_{i}", f"inv_{i} for MEM_POPULATE",
                     "proof", "proved", (f"invariant:inv_{i}",), (f"invariant:inv_{i}",),
                     clause="pvspec invariant", method="Z3 proof") for i in range(n_proofs)]
    return Report("exec:./pvhv <script>", target_name="adapter \ud800", checks=checks,
                  notes=["note with <script>alert(1)</script> and " + BIG],
                  provenance={"version": "0.1", "command": "pvspec conform " + BIG,
                              "seeds": [1, 2], "target": "exec:./pvhv"},
                  universe={"abi:MEM_POPULATE": "quota", "abi:MEM_RECLAIM": "FF-A 10.5",
                            "abi:CPU_ON": "PSCI 5.1.4", "event:VCPU_START": "PSCI 5.5"})


def _section(page: str, ident: str) -> str:
    m = re.search(rf'<section id="{ident}">(.*?)</section>', page, re.S)
    assert m, ident
    return m.group(1)


def test_page_is_well_formed_and_complete() -> None:
    report = _report()
    page = render(report)
    assert page.startswith("<!DOCTYPE html>")
    p = _parse(page)
    text = "".join(p.text)
    assert report.verdict == "error" and 'class="verdict v-error"' in page
    assert "ERROR" in text and report.verdict_and_reason()[1] in text
    # each failure (failed and error) has its own anchor, linked from the list at the top
    anchors = [i for i in p.ids if i.startswith("fail-")]
    assert len(anchors) == 2 and len(set(anchors)) == 2
    for a in anchors:
        assert f'href="#{a}"' in page
    assert "fail-oracle-differential" in anchors
    # the failure shows expected vs observed, the numbered trace and the replay
    fail = _section(page, "failures")
    assert "ERR_NO_MEMORY" in fail and "MEM_POPULATE(gfn=3)" in fail
    assert fail.count("<li>vm1.0 smc64") == 4 and "shrunk from 99" in fail
    assert 'href="traces/oracle_differential.json"' in fail and "pvspec replay" in fail
    # the filter control, its script and the status labels in text
    buttons = {a.get("data-f") for t, a in p.tags if t == "button"}
    assert {"all", "bad", "nj"} <= buttons
    assert any("classList" in s for s in p.scripts)
    for label in ("proved", "passed", "failed", "error", "not judged"):
        assert label in text
    assert "(capability)" in text
    # no external resources
    assert not any(a.get("src") or (t == "link") for t, a in p.tags)
    assert "http://" not in page and "https://" not in page


def test_text_is_escaped_and_bounded() -> None:
    page = render(_report())
    p = _parse(page)
    assert len(p.scripts) == 1 and "alert" not in p.scripts[0]
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "\ud800" not in page
    page.encode("utf-8")  # strict: no lone surrogates left
    assert "characters cut" in page  # the 50 kB strings are clipped, not dumped
    assert len(page) < 200_000


def test_proofs_are_separate_from_checks() -> None:
    page = render(_report(n_proofs=3))
    proofs, checks = _section(page, "proofs"), _section(page, "checks")
    assert proofs.count("inv_") >= 3 and "inv_0" not in checks
    assert "oracle:differential" in checks and "oracle:differential" not in proofs
    assert 'id="traceability"' in page and "event:VCPU_START" in _section(page, "traceability")


def test_many_proofs_are_grouped_and_collapsed() -> None:
    report = _report(n_proofs=0)
    report.checks += [Check(f"proof:hypervisor:HC{i % 40}:inv_{i}", "p", "proof",
                            "failed" if i == 7 else "proved", (f"invariant:inv_{i}",),
                            () if i == 7 else (f"invariant:inv_{i}",))
                      for i in range(880)]
    page = render(report)
    _parse(page)
    proofs = _section(page, "proofs")
    assert proofs.count('<details class="grp') == 40
    assert proofs.count(" open>") == 1  # only the group with the failed proof
    assert 'id="fail-proof-hypervisor-hc7-inv_7"' in page


def test_empty_report_renders() -> None:
    page = render(Report("spec", universe={}))
    _parse(page)
    assert "INCOMPLETE" in page and "No failed or errored checks." in page


def test_report_write_produces_the_page(tmp_path: Path) -> None:
    report = _report()
    report.write(tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Traceability matrix" in page
    _parse(page)
    assert "fail-oracle-differential" in page


def test_screenshot_script_without_a_browser(tmp_path: Path) -> None:
    """No Chromium on PATH: exit 3 with the command that installs one, nothing else."""
    (tmp_path / "r.html").write_text("<!DOCTYPE html><p>x</p>")
    empty = tmp_path / "bin"
    empty.mkdir()
    bash = shutil.which("bash")
    assert bash
    out = subprocess.run([bash, str(SCRIPT), str(tmp_path / "r.html"), str(tmp_path / "o.png")],
                         capture_output=True, text=True, timeout=30, env={"PATH": str(empty)})
    assert out.returncode == 3 and "apt-get install chromium" in out.stderr
    assert not (tmp_path / "o.png").exists()
    usage = subprocess.run([bash, str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage" in usage.stderr


@pytest.mark.skipif(not any(shutil.which(b) for b in BROWSERS),
                    reason="no Chromium on PATH (apt-get install chromium)")
def test_screenshot_of_the_page(tmp_path: Path) -> None:
    _report(n_proofs=60).write(tmp_path)
    png = tmp_path / "report.png"
    out = subprocess.run([str(SCRIPT), str(tmp_path / "report.html"), str(png), "1024"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
