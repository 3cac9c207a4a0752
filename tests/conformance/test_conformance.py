"""Targets, scenarios, the report model and the CLI, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from conformance import cli, oracle, protocol, scenarios
from conformance.report import Check, Report, requirements
from conformance.runner import run_conformance
from conformance.target import (
    ExecTarget,
    ReferenceTarget,
    SpecTarget,
    Target,
    make_target,
    reference_available,
    target_profile,
    target_rows,
)
from spec.hypercalls import abi

needs_reference = pytest.mark.skipif(not reference_available(),
                                     reason="reference_impl.Hypervisor is not available yet")


def test_builtin_targets_satisfy_the_protocol(c_adapter):
    assert isinstance(SpecTarget(), Target)
    t = ExecTarget(str(c_adapter))
    try:
        assert isinstance(t, Target)
    finally:
        t.close()
    with pytest.raises(ValueError, match="unknown target"):
        make_target("nonsense")


@needs_reference
def test_reference_target_protocol():
    assert isinstance(ReferenceTarget(), Target)


def test_every_abi_row_has_scenarios_incl_precedence():
    rows = {sc.row for sc in scenarios.SCENARIOS}
    assert rows == {r.name for r in abi.TABLE}
    ids = {sc.id for sc in scenarios.SCENARIOS}
    assert "VM_PAUSE/precedence:privilege-before-arguments" in ids
    assert "MEM_RECLAIM/precedence:decode-before-caller:handle" in ids


@pytest.mark.parametrize("name", ["spec", "c"])
def test_scenarios_pass_on_conforming_targets(name, c_adapter):
    t = SpecTarget() if name == "spec" else ExecTarget(str(c_adapter))
    try:
        if name == "c":
            t.reset(oracle.SIM_CONFIG)  # the handshake: what the adapter declares it speaks
        spoken = target_rows(target_profile(t))
        bad = [c for sc in scenarios.SCENARIOS if all(op.row in spoken for op in sc.ops)
               if (c := scenarios.run_scenario(t, sc)).status != "passed"]
    finally:
        t.close()
    assert not bad, bad[:3]


def test_oracle_on_spec_passes_and_counts():
    out = oracle.run_oracle(SpecTarget(), profile="ci", max_examples=10)
    assert out.status == "passed" and out.examples >= 10 and out.steps > 100


def test_capability_missing_is_not_judged_not_passed():
    class Blind(SpecTarget):
        capabilities = frozenset({"probe_access"})

    report = run_conformance("blind", target=Blind(),
                             scenario_filter=lambda sc: sc.id.startswith("decode/"))
    assert report.verdict == "incomplete" and report.exit_code == 2
    assert report.count("passed") == 0 and report.count("not-judged") == len(report.checks)
    assert report.coverage()["judged"] == 0


def _sample_report(tmp_path, c_adapter_bug: str | None = None) -> Report:
    return run_conformance("spec", report_dir=str(tmp_path), max_examples=5,
                           scenario_filter=lambda sc: sc.row == "MEM_RECLAIM")


def test_report_renderings(tmp_path):
    report = _sample_report(tmp_path)
    proved = ("invariant:free_frames_unmapped", "abi:VM_DESTROY")
    report.checks.append(Check("proof:x:VM_DESTROY:free_frames_unmapped", "p", "proof",
                               "proved", proved, proved, method="Z3 proof"))
    report.write(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(data, protocol.schema("report"))
    assert set(requirements()) <= set(data["traceability"])
    assert data["traceability"]["invariant:free_frames_unmapped"]["status"] == "proved"
    assert data["traceability"]["abi:MEM_RECLAIM"]["status"] == "passed"
    suite = ET.fromstring((tmp_path / "junit.xml").read_text())
    assert int(suite.get("tests")) == len(report.checks)
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script src" not in html
    assert "Traceability" in (tmp_path / "report.md").read_text()


def test_cli_conform_fail_json_and_replay(faulty_adapter, c_adapter, tmp_path, capsys):
    out, summary = tmp_path / "r", tmp_path / "s.json"
    code = cli.main(["conform", "--target", f"exec:{faulty_adapter('NO_QUOTA')}",
                     "--report", str(out), "--json", str(summary)])
    assert code == 1
    data = json.loads(summary.read_text())
    for key in ("target", "verdict", "checks", "passed", "failed", "not_judged", "errors",
                "steps", "coverage", "provenance"):
        assert key in data
    fail = next(f for f in data["failures"] if f["check"] == "oracle:differential")
    assert fail["requirement"] == "abi:MEM_POPULATE" and fail["clause"] and fail["trace"]
    trace_file = str(out / fail["trace_file"])  # relative to the report directory
    assert cli.main(["replay", trace_file, "--target",
                     f"exec:{faulty_adapter('NO_QUOTA')}"]) == 1
    assert cli.main(["replay", trace_file, "--target", f"exec:{c_adapter}"]) == 0
    assert cli.main(["replay", trace_file, "--target", "spec"]) == 0
    assert "MEM_POPULATE" in capsys.readouterr().out


def test_cli_conform_pass(c_adapter, tmp_path):
    assert cli.main(["conform", "--target", f"exec:{c_adapter}",
                     "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["verdict"] == "passed"


def test_bench_runs(monkeypatch):
    from conformance.benchmarks import oracle as bench

    traces = bench._traces(3)
    r = bench.measure("spec", traces, examples=3)
    assert r["oracle_steps"] > 0 and r["replay_steps"] > 0  # no timing assertions


def test_verify_combines_proofs_and_conformance(tmp_path, monkeypatch):
    """`pvspec verify` with the (slow) prover stubbed: proofs become checks in the report."""

    def fake_prove(args, json_file, cex_dir, quiet):
        Path(json_file).write_text(json.dumps({"results": [
            {"group": "hypervisor", "invariant": "quota_respected", "hypercall": "MEM_POPULATE",
             "clause": "pvspec memory quota", "status": "proved", "seconds": 0.5,
             "counterexample": None}]}))
        return [], 0.5

    monkeypatch.setattr(cli, "_prove", fake_prove)
    code = cli.main(["verify", "--report", str(tmp_path), "--target", "spec",
                     "--examples", "3", "--json", str(tmp_path / "s.json")])
    assert code == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["traceability"]["invariant:quota_respected"]["status"] == "proved"
    assert any(c["kind"] == "proof" for c in data["checks"])
    assert data["proof_bound"]["bounded"] is True


@pytest.mark.parametrize(("flags", "larger", "every_size"), [
    ([], False, True), (["--larger"], True, True), (["--bounded"], False, False)])
def test_prove_options_reach_the_prover(tmp_path, monkeypatch, flags, larger, every_size):
    """`pvspec prove`: the larger-model pass only on request, the bounded cross-check with
    --bounded; the JSON says the run is bounded when any obligation is."""
    from spec import prove
    from spec.proof import ProofResult

    seen = {}

    def fake_prove_all(**kwargs):
        seen.update(kwargs)
        return [ProofResult("hypervisor", "well_formed", "VM_PAUSE", "c", "proved", 0.1,
                            bounded=not kwargs["every_size"])]

    monkeypatch.setattr(prove, "prove_all", fake_prove_all)
    out = tmp_path / "p.json"
    assert cli.main(["prove", "--jobs", "1", "--json", str(out), "-q", *flags]) == 0
    assert seen["larger"] is larger and seen["every_size"] is every_size
    assert json.loads(out.read_text())["bounded"] is not every_size
