"""DPDK 22.11's rte_vhost virtio-net back-end (dpdk-vhost-net), judged end to end.

Needs Debian's libdpdk-dev and pkg-config (guests/dpdk-loopback is built against them on
first use); without them every test here is skipped, saying what to install.  One full
conformance run (about 4 s) plus the TSO variant's own check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.results import Status
from conformance.vhost_user.checks import EXPECTED_DEVIATIONS, run_check
from conformance.vhost_user.report import run_conformance
from conformance.vhost_user.targets import Target, TargetUnavailable, start_dpdk_net

# what docs/findings.md "DPDK 22.11 vhost-user net" records: D1, D2 at the default options
# (net-tso sends nothing there: HOST_TSO4 is not offered), D3 with tso=1
KNOWN = {(chk, rule) for (tgt, chk, rule) in EXPECTED_DEVIATIONS
         if tgt == "dpdk-vhost-net" and chk != "net-tso"}
TSO_KNOWN = {rule for (tgt, chk, rule) in EXPECTED_DEVIATIONS
             if tgt == "dpdk-vhost-net" and chk == "net-tso"}


def _start(tso: bool) -> Target:
    try:
        return start_dpdk_net(tso=tso)
    except TargetUnavailable as e:
        pytest.skip(f"dpdk-vhost-net unavailable: {e}")


@pytest.fixture(scope="module")
def dpdk_tso() -> Iterator[Target]:
    t = _start(tso=True)
    yield t
    t.stop()
    assert t.proc is not None and t.proc.poll() is not None


def test_dpdk_conformance_run(tmp_path: Path) -> None:
    _start(tso=False).stop()  # skips, with the fix, when DPDK cannot be built here
    rep = run_conformance("dpdk-vhost-net", tmp_path)
    failed = {(c.id.split(":", 1)[0], c.id.split(":", 1)[1]) for c in rep.checks
              if c.status is Status.FAILED}
    errors = [c.id for c in rep.checks if c.status is Status.ERROR]
    assert not errors, [c.detail for c in rep.checks if c.status is Status.ERROR]
    assert failed == KNOWN, failed ^ KNOWN
    cov = rep.coverage()
    assert cov["judged"] >= 45 and cov["failed"] == len({r for _, r in KNOWN}), cov
    judged = {r for c in rep.checks for r in c.judged}
    for rule in ("VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL", "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER",
                 "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO", "VIRTIO-5.1.6.4.1-DEV-GSO-NONE",
                 "PVSPEC-NET-LOOPBACK", "VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT",
                 "VIRTIO-6.2-DEV-IN-ORDER", "VIRTIO-2.8.15-DEV-NO-WRITE-READABLE",
                 "PVSPEC-RING-PACKED-NOTIFY", "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU"):
        assert rule in judged, rule
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["verdict"] == "failed" and data["coverage"]["judged"] == cov["judged"]
    assert not [d for d in os.listdir("/var/run/dpdk") if d.startswith(f"pvspec-{os.getpid()}-")] \
        if os.path.isdir("/var/run/dpdk") else True


def test_dpdk_tso_variant(dpdk_tso: Target) -> None:
    rs = run_check(dpdk_tso, "net-tso")
    assert not [r for r in rs if r.status in ("fail", "error")], rs
    assert {r.rule for r in rs if r.status == "expected-deviation"} == TSO_KNOWN  # D3
    assert "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV6" in {r.rule for r in rs if r.status == "pass"}
    rs = run_check(dpdk_tso, "net-features")
    # with tso=1 the HOST_ECN dependency holds (D1 is the default options' only)
    dep = [r for r in rs if "HOST-ECN" in r.rule]
    assert dep and all(r.status == "pass" for r in dep), dep
