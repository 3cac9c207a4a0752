"""The pytest plugin runs the suite inside a user's pytest session."""

from __future__ import annotations

import json
import subprocess
import sys


def _pytest(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q",  # the plugin loads via its pytest11 entry point
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", "/dev/null",
         "--pvspec-report", str(tmp_path / "rep"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_plugin_passes_on_conforming_target_with_marker(tmp_path, c_adapter):
    run = _pytest(tmp_path, "--pvspec-target", f"exec:{c_adapter}", "-m", "memory and not oracle")
    assert run.returncode == 0, run.stdout[-2000:]
    assert " passed" in run.stdout
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["verdict"] == "passed"
    assert all(c["covers"][0].startswith("abi:MEM_") for c in data["checks"])


def test_plugin_fails_on_faulty_target(tmp_path, faulty_adapter):
    run = _pytest(tmp_path, "--pvspec-target", f"exec:{faulty_adapter('SEND_UNBOUND')}",
                  "-m", "evtchn")
    assert run.returncode == 1
    assert "abi:EVTCHN_SEND" in run.stdout and "minimal trace" in run.stdout
    assert (tmp_path / "rep" / "traces").is_dir()


def test_plugin_is_inert_without_target(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    run = _pytest(tmp_path)
    assert run.returncode == 0 and "1 passed" in run.stdout


def test_plugin_runs_virtio_checks_on_a_vhost_user_backend(tmp_path):
    """Our own vhost-user-blk back-end, started by the plugin: one item per VIRTIO check."""
    run = _pytest(tmp_path, "--pvspec-target", "reference-vhost-user-blk", "-m", "virtio",
                  "-k", "features or chains")
    assert run.returncode == 0, run.stdout[-2000:]
    assert "2 passed" in run.stdout, run.stdout[-2000:]
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["verdict"] == "passed" and data["capabilities"][0] == "virtio"
    assert all(c["kind"] == "vhost-user" for c in data["checks"])
    matrix = data["traceability"]
    assert not any(r.startswith("abi:") for r in matrix)
    assert {v["status"] for r, v in matrix.items() if r.startswith("VIRTIO-2.")} >= {
        "passed", "skipped"}


def test_plugin_reports_an_unreachable_backend(tmp_path):
    run = _pytest(tmp_path, "--pvspec-target", "vhost-user:/nonexistent/pvspec.sock",
                  "-k", "features")
    assert run.returncode == 1
    assert "cannot start target" in run.stdout


def test_plugin_spreads_seeded_oracle_runs_over_xdist_workers(tmp_path):
    """--pvspec-seeds N: N oracle items; the xdist controller merges the workers' checks."""
    run = _pytest(tmp_path, "--pvspec-target", "reference", "--pvspec-seeds", "2", "-n", "2",
                  "-m", "oracle")
    assert run.returncode == 0, run.stdout[-2000:]
    assert "2 passed" in run.stdout, run.stdout[-2000:]
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert sorted(c["id"] for c in data["checks"]) == [
        "oracle:differential[seed=0]", "oracle:differential[seed=1]"]
    assert data["verdict"] == "passed" and data["summary"]["steps"] > 0
    assert data["capabilities"]  # sent by the workers
