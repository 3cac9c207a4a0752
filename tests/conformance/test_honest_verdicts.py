"""Honest verdicts: a requirement passes only when a check judged it; every run, however it
ends, leaves a true report and no traceback (issue: honest verdicts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import scenarios
from conformance.report import Report
from conformance.results import (
    BLOCKING_REASONS,
    Check,
    Failure,
    NotJudged,
    Status,
    Verdict,
    requirement_verdicts,
    run_verdict,
)
from conformance.runner import run_conformance
from conformance.target import ReferenceTarget
from spec.hypercalls import abi

PVSPEC = [sys.executable, "-m", "conformance.cli"]
ROOT = Path(__file__).resolve().parents[2]


# --- the rule, as a property ------------------------------------------------------------------
REQS = [f"r{i}" for i in range(6)]


@st.composite
def checks(draw: st.DrawFn) -> list[Check]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        status = draw(st.sampled_from(list(Status)))
        covers = draw(st.lists(st.sampled_from(REQS), unique=True, max_size=4))
        judged = [] if status in (Status.NOT_JUDGED, Status.ERROR) and draw(st.booleans()) \
            else draw(st.lists(st.sampled_from(REQS), unique=True, max_size=3))
        if status is Status.NOT_JUDGED:
            judged = []
        failure = None
        if status in (Status.FAILED, Status.ERROR) and draw(st.booleans()):
            failure = Failure("result", draw(st.sampled_from(REQS)), "c", "e", "o")
        reason = draw(st.sampled_from(list(NotJudged))) if status is Status.NOT_JUDGED \
            else None
        out.append(Check(f"c{i}", "t", "oracle", status, covers, judged, reason,
                         failure=failure))
    return out


@given(checks(), st.booleans())
def test_requirement_verdicts_follow_the_rule(cs: list[Check], interrupted: bool) -> None:
    got = requirement_verdicts(REQS, cs, interrupted)
    for r in REQS:
        v = got[r]
        broke = [c for c in cs if c.failure is not None and c.failure.requirement == r
                 and c.status in (Status.FAILED, Status.ERROR)]
        judged = [c for c in cs if r in c.judged]
        if any(c.status is Status.FAILED for c in broke):
            assert v.status is Status.FAILED
        elif broke:
            assert v.status is Status.ERROR
        elif judged:
            assert v.status in (Status.PASSED, Status.PROVED)
            assert v.judged_by == tuple(c.id for c in judged)
        else:  # never evaluated: never passed, and always a reason
            assert v.status is Status.NOT_JUDGED and v.reason is not None
    verdict, _ = run_verdict(cs, got)
    if verdict is Verdict.PASSED:
        assert not any(c.status in (Status.FAILED, Status.ERROR) for c in cs)
        assert any(v.status in (Status.PASSED, Status.PROVED) for v in got.values())
        assert not any(v.reason in BLOCKING_REASONS for v in got.values())


def test_the_rule_can_fail() -> None:
    """The planted version of the bug: crediting ``covers`` instead of ``judged``."""
    c = Check("oracle", "t", "oracle", Status.PASSED, covers=("a", "b"), judged=("a",))
    got = requirement_verdicts(["a", "b"], [c])
    assert got["a"].status is Status.PASSED
    assert got["b"].status is Status.NOT_JUDGED  # the old report said "passed"


def test_one_failure_turns_only_its_requirement_red() -> None:
    """A failure in MEM_RELEASE must not turn every row the oracle covers red."""
    covers = [f"abi:{r.name}" for r in abi.TABLE]
    f = Failure("result", "abi:MEM_RELEASE", "c", "e", "o")
    c = Check("oracle:differential", "t", "oracle", Status.FAILED, covers, covers, failure=f)
    got = requirement_verdicts(covers, [c])
    red = [r for r, v in got.items() if v.status is not Status.PASSED]
    assert red == ["abi:MEM_RELEASE"]


# --- capabilities -----------------------------------------------------------------------------
class _HypercallOnly(ReferenceTarget):
    capabilities = frozenset({"hypercall"})


def test_capability_less_target_is_not_judged_on_isolation() -> None:
    rep = run_conformance("hypercall-only", target=_HypercallOnly(),
                          scenario_filter=lambda sc: sc.row == "MEM_SHARE", max_examples=3)
    m = rep.matrix()
    for inv in ("write_within_grant", "mappings_authorized", "device_irqs_isolated"):
        assert m[f"invariant:{inv}"]["status"] == "not-judged"
        assert m[f"invariant:{inv}"]["reason"] == "capability"
    assert rep.verdict == "incomplete" and rep.exit_code == 2
    assert "capability" in rep.verdict_and_reason()[1]


PROXY = textwrap.dedent('''
    import json, subprocess, sys
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, bufsize=1)
    for line in sys.stdin:
        child.stdin.write(line); child.stdin.flush()
        out = child.stdout.readline()
        m = json.loads(out)
        if m.get("type") == "init_ok":
            m["capabilities"] = ["hypercall"]
            out = json.dumps(m) + "\\n"
        sys.stdout.write(out); sys.stdout.flush()
''')


def test_read_only_grant_mapped_writable_is_not_passed_without_probes(faulty_adapter,
                                                                     tmp_path) -> None:
    """The planted isolation bug (RO_SHARE_RW) behind a target that declares only the
    hypercall capability: nothing can see the mapping, so the run must not say passed."""
    proxy = tmp_path / "proxy.py"
    proxy.write_text(PROXY)
    target = f"exec:{sys.executable} {proxy} {faulty_adapter('RO_SHARE_RW')}"
    rep = run_conformance(target, report_dir=str(tmp_path / "r"), max_examples=5)
    assert rep.capabilities == ("hypercall",)
    row = rep.matrix()["invariant:write_within_grant"]
    assert row["status"] == "not-judged" and row["reason"] == "capability"
    assert rep.verdict != "passed"


# --- every run ends with a true report ---------------------------------------------------------
ADAPTER = Path(__file__).resolve().parent / "ref_adapter.py"


def _adapter(*args: str) -> str:
    return f"exec:{sys.executable} {ADAPTER} " + " ".join(args)


def _pid_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            state = Path(f"/proc/{pid}/status").read_text()
            if "\nState:\tZ" in state:
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _default_sigint() -> None:
    """In the child: SIGINT at its default, unblocked.  A process started with SIGINT
    ignored keeps ignoring it (POSIX; Python then installs no KeyboardInterrupt), and a
    pytest worker was seen handing that on, which left this test's Ctrl-C unanswered."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 2)])
def test_signal_mid_run_writes_an_incomplete_report(tmp_path, sig, code) -> None:
    pidfile, out = tmp_path / "pid", tmp_path / "report"
    target = _adapter("--delay", "0.001", "--pidfile", str(pidfile), "--fork-child")
    proc = subprocess.Popen([*PVSPEC, "conform", "--target", target, "--report", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not (out / "report.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, (stdout, stderr)
    assert b"Traceback" not in stderr and b"Traceback" not in stdout
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "incomplete", data["verdict_reason"]
    assert "SIG" in data["incomplete"]
    assert "interrupted" in data["coverage"]["not_judged"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert _pid_gone(int(pidfile.read_text())), "the target outlived the run"
    assert _pid_gone(int((tmp_path / "pid.child").read_text())), "its child outlived the run"


def test_checker_exception_is_an_error_naming_the_check(monkeypatch, tmp_path) -> None:
    real = scenarios.run_scenario

    def broken(target, sc):
        if sc.id == "PSCI_VERSION/ok":
            raise IndexError("planted checker bug")
        return real(target, sc)

    monkeypatch.setattr(scenarios, "run_scenario", broken)
    rep = run_conformance("reference", report_dir=str(tmp_path),
                          scenario_filter=lambda sc: sc.row == "PSCI_VERSION", max_examples=2)
    bad = [c for c in rep.checks if c.status is Status.ERROR]
    assert [c.id for c in bad] == ["scenario:PSCI_VERSION/ok"]
    assert "IndexError" in bad[0].detail and "planted checker bug" in bad[0].detail
    assert rep.verdict == "error" and rep.exit_code == 2
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == "error"


def test_crash_that_does_not_reproduce_names_exit_status_and_request(tmp_path) -> None:
    """Hypothesis re-runs a failing example; a crash a restarted target does not repeat
    must still be reported as the crash it was, not as 'FlakyFailure'."""
    target = _adapter("--crash-at", "300", "--crash-once", str(tmp_path / "crashed"))
    rep = run_conformance(target,
                          report_dir=str(tmp_path / "r"), max_examples=3,
                          scenario_filter=lambda sc: False)
    oracle_check = next(c for c in rep.checks if c.id == "oracle:differential")
    assert oracle_check.status is Status.ERROR
    text = oracle_check.detail + (oracle_check.failure.observed if oracle_check.failure else "")
    assert "exit status 7" in text and "#" in text, text
    assert "Flaky" not in text
    assert oracle_check.failure is not None and oracle_check.failure.trace


SURROGATE = textwrap.dedent('''
    import json, sys
    for line in sys.stdin:
        m = json.loads(line)
        t, i = m["type"], m["msg_id"]
        if t == "init":
            print(json.dumps({"type": "init_ok", "in_reply_to": i, "protocol_version": "1.0",
                              "abi_version": "1.0", "capabilities": ["hypercall"]}),
                  flush=True)
        elif t == "shutdown":
            print(json.dumps({"type": "shutdown_ok", "in_reply_to": i}), flush=True)
        else:
            sys.stdout.write('{"type": "error", "in_reply_to": %d, "code": 13, '
                             '"text": "bad \\\\ud800 text", "definite": false}\\n' % i)
            sys.stdout.flush()
''')


def test_lone_surrogate_in_target_text_still_writes_every_report(tmp_path) -> None:
    script = tmp_path / "sur.py"
    script.write_text(SURROGATE)
    out = tmp_path / "r"
    rep = run_conformance(f"exec:{sys.executable} {script}", report_dir=str(out),
                          json_file=str(tmp_path / "s.json"))
    assert rep.verdict == "error"
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0
        (out / name).read_text(encoding="utf-8")
    json.loads((tmp_path / "s.json").read_text())
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_target_that_keeps_erroring_ends_the_run_early(tmp_path) -> None:
    script = tmp_path / "sur.py"
    script.write_text(SURROGATE)
    rep = run_conformance(f"exec:{sys.executable} {script}", max_errors=2)
    assert sum(1 for c in rep.checks if c.status is Status.ERROR) == 2
    assert "in a row" in rep.incomplete


# --- the command line -------------------------------------------------------------------------
def _cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PVSPEC, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, **kw)


@pytest.mark.parametrize("args", [
    ["conform", "--target", "bogus"],
    ["conform", "--timeout", "0"],
    ["conform", "--timeout", "inf"],
    ["conform", "--report", "/proc/pvspec-cannot-write"],
    ["conform", "--json", "/nonexistent-dir/x.json"],
    ["replay", "/nonexistent.json"],
    ["campaign", "--seeds", "0"],
])
def test_bad_usage_is_a_clear_error(args: list[str]) -> None:
    got = _cli(*args)
    assert got.returncode == 2, got
    assert "Traceback" not in got.stderr + got.stdout
    assert "error" in got.stderr.lower()


def _trace(tmp_path: Path, **changes) -> Path:
    data = {"format": "pvspec-trace", "version": 2, "abi_version": abi.ABI_VERSION,
            "protocol_version": "1.0", "target": "reference",
            "config": {"n_vms": 3, "n_vcpus": 2, "n_gframes": 4, "n_hframes": 8,
                       "n_hyp_frames": 1, "n_tx": 2, "n_ports": 2, "n_devices": 2,
                       "control_quota": 8},
            "failure": {}, "ops": [{"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
                                    "regs": {"x0": "0x84000000"}}]}
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    p = tmp_path / "t.json"
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize("change", [
    {"format": "other"}, {"version": 99}, {"abi_version": "0.1"},
    {"protocol_version": "9.0"}, {"config": {"n_vms": 3}}, {"config": None},
    {"ops": {"op": "x"}}, {"ops": [{"op": "hypercall", "vm": 0}]},
    {"ops": [{"op": "hypercall", "vm": -1, "vcpu": 0, "conv": "arm64", "regs": {}}]},
    {"ops": [{"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "sparc", "regs": {}}]},
    {"ops": [{"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64", "regs": {"x0": "zz"}}]},
    {"ops": [{"op": "event", "name": "NOPE", "args": []}]},
    {"target": "bogus"},
])
def test_replay_rejects_a_wrong_trace_clearly(tmp_path, change) -> None:
    got = _cli("replay", str(_trace(tmp_path, **change)))
    assert got.returncode == 2, got
    assert "Traceback" not in got.stderr + got.stdout
    assert "pvspec: error:" in got.stderr


def test_replay_defaults_to_the_traces_own_target(tmp_path) -> None:
    got = _cli("replay", str(_trace(tmp_path)))
    assert got.returncode == 0, got
    assert "on reference" in got.stdout


def test_broken_pipe_is_quiet() -> None:
    got = subprocess.run(f"{sys.executable} -m conformance.cli virtio requirements | head -1",
                         shell=True, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in got.stderr and "BrokenPipe" not in got.stderr
    assert got.stdout.strip()


def test_version_and_list() -> None:
    got = _cli("--version")
    assert got.returncode == 0 and got.stdout.startswith("pvspec ")
    got = _cli("conform", "--list")
    assert got.returncode == 0 and "abi:CPU_ON" in got.stdout
    assert "oracle:differential" in got.stdout


def test_only_and_skip_select_checks(tmp_path) -> None:
    rep = run_conformance("reference", only=["scenario:PSCI_VERSION*"])
    ran = [c.id for c in rep.checks if c.status is not Status.NOT_JUDGED]
    assert ran == ["scenario:PSCI_VERSION/caller-vcpu-off", "scenario:PSCI_VERSION/ok"]
    assert rep.matrix()["abi:MEM_SHARE"]["reason"] == "deselected"


def test_report_dir_refused_unless_forced_and_parallel_runs_stay_valid(tmp_path) -> None:
    out = tmp_path / "same"
    args = [*PVSPEC, "conform", "--target", "reference", "--only", "scenario:PSCI*",
            "--report", str(out)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    for (o, e), code in zip(results, codes, strict=True):
        assert "Traceback" not in o + e
        assert code == 0 or (code == 2 and "not empty" in e), (code, o, e)
    assert 0 in codes
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "passed"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    again = _cli("conform", "--target", "reference", "--only", "scenario:PSCI*",
                 "--report", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    forced = _cli("conform", "--target", "reference", "--only", "scenario:PSCI*",
                  "--report", str(out), "--force")
    assert forced.returncode == 0, forced


def test_report_carries_coverage_and_provenance(tmp_path) -> None:
    got = _cli("conform", "--target", "reference", "--only", "scenario:CPU_ON*",
               "--report", str(tmp_path / "r"), "--json", str(tmp_path / "s.json"))
    assert got.returncode == 0, got
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    cov = data["coverage"]
    assert cov["judged"] == sum(1 for v in data["traceability"].values()
                                if v["status"] != "not-judged")
    assert cov["requirements"] == len(data["traceability"])
    prov = data["provenance"]
    for key in ("version", "commit", "command", "profile", "target", "host", "started",
                "finished", "wall_s"):
        assert key in prov, key
    assert data["verdict"] in ("passed", "failed", "error", "incomplete")
    junit = (tmp_path / "r" / "junit.xml").read_text()
    assert junit.count("<testsuites") == 1 and "hostname=" in junit and "timestamp=" in junit
    assert 'name="requirement"' in junit


def test_exec_target_digest_in_provenance(tmp_path, c_adapter) -> None:
    rep_dir = tmp_path / "r"
    got = _cli("conform", "--target", f"exec:{c_adapter}", "--only", "scenario:PSCI*",
               "--report", str(rep_dir))
    assert got.returncode == 0, got
    prov = json.loads((rep_dir / "report.json").read_text())["provenance"]
    assert len(prov["target_sha256"]) == 64


def test_headline_matches_matrix() -> None:
    rep = Report("t", checks=[Check("a", "a", "oracle", "passed", ("abi:CPU_ON", "abi:CPU_OFF"),
                                    ("abi:CPU_ON",))])
    cov = rep.coverage()
    assert cov["passed"] == 1 and cov["judged"] == 1
    assert "judged 1, passed 1" in rep.headline()


def test_verdict_reason_names_every_failure_or_says_how_many_more() -> None:
    """"6 check(s) failed: a, b, c" read as a contradiction: the reason says "and 3 more"."""
    from conformance.results import Check, Status, Verdict, run_verdict

    checks = [Check(id=f"c{i}", title="t", kind="virtio", status=Status.FAILED)
              for i in range(5)]
    verdict, why = run_verdict(checks, {})
    assert verdict is Verdict.FAILED
    assert why == "5 check(s) failed: c0, c1, c2 and 2 more"
    assert run_verdict(checks[:3], {})[1] == "3 check(s) failed: c0, c1, c2"
