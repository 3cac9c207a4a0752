"""Smoke test of the benchmark (numbers are measured and reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conformance.benchmarks import hypervisor as bench
from conformance.benchmarks import virtqueue as virtio_bench


def test_bench_quick_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "rss_16gib", lambda populate: {"rss_mib": 0.0})
    path = tmp_path / "bench.json"
    out = bench.run(json_path=str(path), quick=True)
    assert json.loads(path.read_text())["fast_path"]["same_results"] is True
    assert out["mix"]["same_results"] is True
    assert set(out["fast_path"]) >= {"spec_ops_per_s", "impl_ops_per_s", "ratio"}


@pytest.mark.parametrize("workload", virtio_bench.WORKLOADS)
def test_virtqueue_bench_compares_identical_work(workload):
    """Both devices leave the same bytes after a round, so the ratio compares like work."""
    out = virtio_bench._workload(workload, workload.endswith("packed"), rounds=2,
                                 spec_rounds=1)
    assert out["same"] is True
    assert set(out) >= {"spec_ops_per_s", "impl_ops_per_s", "ratio"}


def test_memory_workload_child_holds_only_the_implementation():
    """The RSS child measures the implementation alone: neither spec nor conformance."""
    probe = bench._child("print(sorted({m.partition('.')[0] for m in sys.modules}"
                         " & {'spec', 'conformance'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
