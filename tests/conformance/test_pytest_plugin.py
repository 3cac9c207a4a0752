"""The pytest plugin runs the suite inside a user's pytest session: verdicts, the report,
vhost-user targets, xdist.  (Collection and selection: test_plugin_collection.py; the
fixtures: test_plugin_fixtures.py.)"""

from __future__ import annotations

import json

import pytest

# pytester's in-process runs drop the modules an inner session imported; one this process
# already held (z3, spec.logic) would then meet a second copy of the spec in the next run.
# Importing everything the plugin uses up front keeps one copy for every inner session.
import conformance.report_html
import conformance.runner  # noqa: F401

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _quiet(pytester: pytest.Pytester) -> None:
    """In-process runs meet the plugin already imported: pytest cannot rewrite its asserts
    (it has none) and would say so in every inner run."""
    pytester.makeini("[pytest]\nfilterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")


def _report(pytester: pytest.Pytester, name: str = "pvspec-report") -> dict:
    return json.loads((pytester.path / name / "report.json").read_text())


def test_plugin_passes_on_conforming_target_with_marker(pytester, c_adapter):
    res = pytester.runpytest("--pvspec-target", f"exec:{c_adapter}",
                             "-m", "memory and not oracle")
    assert res.ret == 0, res.stdout.str()[-2000:]
    outcomes = res.parseoutcomes()
    assert outcomes["passed"] > 5 and "failed" not in outcomes
    data = _report(pytester)
    assert data["verdict"] == "passed", data["verdict_reason"]
    scenarios = [c for c in data["checks"] if c["kind"] == "scenario"]
    assert len(scenarios) == outcomes["passed"]
    assert all(c["covers"][0].startswith("abi:MEM_") for c in scenarios)
    # what was left out is said to be left out, not missing from the suite
    assert data["traceability"]["abi:CPU_ON"]["reason"] == "deselected"
    assert data["provenance"]["target"] == f"exec:{c_adapter}"
    assert data["provenance"]["command"].startswith("pytest --pvspec-target")


def test_plugin_fails_on_faulty_target(pytester, faulty_adapter):
    res = pytester.runpytest("--pvspec-target", f"exec:{faulty_adapter('SEND_UNBOUND')}",
                             "-m", "evtchn and not oracle")
    assert res.ret == 1
    out = res.stdout.str()
    assert "FAILED: scenario:EVTCHN_SEND/unbound" in out
    assert "requirement: abi:EVTCHN_SEND" in out and "minimal trace" in out
    data = _report(pytester)
    assert data["verdict"] == "failed"
    bad = [c for c in data["checks"] if c["status"] == "failed"]
    trace = bad[0]["failure"]["trace_file"]
    assert trace.startswith("traces/") and (pytester.path / "pvspec-report" / trace).is_file()
    assert f"replay:      pvspec replay {trace}" in out


def test_plugin_marks_a_session_stopped_early_incomplete(pytester, faulty_adapter):
    res = pytester.runpytest("--pvspec-target", f"exec:{faulty_adapter('SEND_UNBOUND')}",
                             "-x", "-m", "evtchn and not oracle")
    assert res.ret == 1
    data = _report(pytester)
    assert data["verdict"] == "failed"  # a definite finding, even in a partial run
    assert data["incomplete"].startswith("the pytest session stopped early")


def test_plugin_is_inert_without_target(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    res = pytester.runpytest()
    res.assert_outcomes(passed=1)
    assert "pvspec::" not in res.stdout.str()
    assert not (pytester.path / "pvspec-report").exists()
    markers = pytester.runpytest("--markers").stdout.str()
    for m in ("pvspec:", "oracle:", "virtio:", "psci:", "memory:", "evtchn:"):
        assert f"@pytest.mark.{m}" not in markers
    with_target = pytester.runpytest("--markers", "--pvspec-target", "spec").stdout.str()
    assert "@pytest.mark.pvspec:" in with_target and "@pytest.mark.psci:" in with_target


def test_plugin_reports_a_target_that_cannot_start(pytester):
    res = pytester.runpytest("--pvspec-target", "exec:/nonexistent/pvspec-adapter",
                             "pvspec::scenario::PSCI_VERSION/ok")
    assert res.ret == 1
    assert "cannot start target exec:/nonexistent/pvspec-adapter" in res.stdout.str()
    data = _report(pytester)
    assert data["verdict"] == "error"
    assert [c["id"] for c in data["checks"] if c["status"] == "error"] == ["target:start"]


def _has_vhost_user_api() -> bool:
    try:
        from conformance.vhost_user.report import check_names, run_one  # noqa: F401
    except ImportError:
        return False
    return True


vhost_user = pytest.mark.skipif(not _has_vhost_user_api(),
                                reason="conformance.vhost_user.report.check_names/run_one "
                                       "not there yet")


@vhost_user
def test_plugin_runs_virtio_checks_on_a_vhost_user_backend(pytester):
    """Our own vhost-user-blk back-end, started by the plugin: one item per VIRTIO check."""
    res = pytester.runpytest("--pvspec-target", "reference-vhost-user-blk", "-m", "virtio",
                             "-k", "features or chains")
    assert res.ret == 0, res.stdout.str()[-2000:]
    res.assert_outcomes(passed=2, deselected=res.parseoutcomes()["deselected"])
    data = _report(pytester)
    assert data["verdict"] == "passed" and data["capabilities"][0] == "virtio"
    assert data["protocol_version"] == "vhost-user"
    kinds = {c["id"]: c["kind"] for c in data["checks"]}
    assert set(kinds.values()) == {"virtio", "suite"} and kinds["selection"] == "suite"
    assert kinds["vhost-user:connect"] == "virtio"  # the precondition, run once
    ids = [c["id"] for c in data["checks"]]
    assert len(ids) == len(set(ids))
    assert {i.split(":")[0] for i in ids} == {
        "features", "chains", "vhost-user", "platform", "selection"}
    matrix = data["traceability"]
    assert not any(r.startswith("abi:") for r in matrix)
    assert {v["status"] for r, v in matrix.items() if r.startswith("VIRTIO-2.")} >= {
        "passed", "not-judged"}


@vhost_user
def test_plugin_lists_virtio_items_by_node_id(pytester):
    from conformance.vhost_user.report import check_names

    res = pytester.runpytest("--pvspec-target", "reference-vhost-user-blk", "--co", "-q")
    assert res.ret == 0
    assert [ln for ln in res.outlines if ln.startswith("pvspec::")] == [
        f"pvspec::virtio::{n}" for n in check_names("blk")]


@vhost_user
def test_plugin_reports_an_unreachable_backend(pytester):
    res = pytester.runpytest("--pvspec-target", "vhost-user:/nonexistent/pvspec.sock",
                             "-k", "features")
    assert res.ret == 1
    assert "cannot start target" in res.stdout.str()
    data = _report(pytester)
    assert data["verdict"] == "error"


def test_plugin_spreads_seeded_oracle_runs_over_xdist_workers(pytester):
    """--pvspec-seeds N: N oracle items; the xdist controller merges the workers' checks."""
    res = pytester.runpytest_subprocess("--pvspec-target", "reference", "--pvspec-seeds", "2",
                                        "-n", "2", "-m", "oracle", timeout=300)
    assert res.ret == 0, res.stdout.str()[-2000:]
    res.assert_outcomes(passed=2)
    data = _report(pytester)
    items = sorted(c["id"] for c in data["checks"] if c["kind"] == "oracle")
    assert items == ["oracle:differential[seed=0]", "oracle:differential[seed=1]"]
    assert data["verdict"] == "passed" and data["summary"]["steps"] > 0
    assert data["capabilities"]  # sent by the workers
    assert data["target_name"] == "reference"
    ids = [c["id"] for c in data["checks"]]
    # the session checks the workers sent arrive once, whichever worker sent them
    assert ids.count("views:host-frames") == 1 and ids.count("selection") == 1
    assert data["traceability"]["abi:CPU_ON"]["status"] == "passed"
