"""Smoke test of the benchmark (numbers are measured and reported, never asserted)."""

from __future__ import annotations

import json

import pytest

from reference_impl import bench
from reference_impl.virtio import bench as virtio_bench


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
