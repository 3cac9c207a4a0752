"""Xen 4.17's event channels judged through their real ABI (``--target xen-arm64``): Xen on
arm64 under QEMU's TCG, dom0 an init of ours calling event_channel_op through privcmd.
Skipped where the machine cannot run (see conformance.xen_machine.missing_prerequisites).

What is checked: a short campaign passes with every event-channel call of the codec judged
and Xen's readings of event_channel.h as declared; a reset closes what the suite opened
and leaves dom0's kernel ports alone; the init's planted bug (CLOSE reported as success
when Xen refused) is caught, and its shrunk trace replays.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from conformance import oracle
from conformance.xen_target import XenTarget, available
from spec import campaign
from spec.hypercalls import xen

_missing = available()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.fixture(scope="module")
def target() -> Iterator[XenTarget]:
    t = XenTarget()
    try:
        yield t
    finally:
        t.close()


def _status(t: XenTarget, port: int) -> xen.Reading:
    op, data = xen.encode("EVTCHN_STATUS", (port,))
    a = t._machine.evtchn_op(op, data)
    return xen.decode("EVTCHN_STATUS", a.rc, a.out)


def test_a_short_campaign_on_xen_passes_with_every_call_judged(target: XenTarget) -> None:
    out = oracle.run_oracle(target, max_examples=6)
    assert out.status == "passed", out.failure or out.error
    assert out.steps > 1000
    assert {f"abi:{r}" for r in xen.rows()} <= out.judged
    for name, value in target.profile.items():
        if name.startswith("evtchn_"):
            assert out.learned[name] == value


def test_reset_closes_what_the_suite_opened_and_spares_dom0s_ports(target: XenTarget
                                                                     ) -> None:
    target.reset(campaign.EVTCHN_CONFIG)
    kernel = {p: _status(target, p).value for p in range(1, 3)}
    pool, _ = target.port_pools()
    for _ in range(3):
        target.hypercall(0, 0, {"x0": 0xC6000030, "x1": 0})  # EVTCHN_ALLOC_UNBOUND(self)
    assert sum(_status(target, p).value & 0xFF == 1 for p in pool[0]) == 3
    target.reset(campaign.EVTCHN_CONFIG)
    assert all(_status(target, p).value & 0xFF == 0 for p in target.port_pools()[0][0])
    assert {p: _status(target, p).value for p in range(1, 3)} == kernel
    assert not set(target.port_pools()[0][0]) & {0, 1, 2}


def test_the_planted_init_is_caught_and_its_trace_replays() -> None:
    t = XenTarget(planted="close")
    try:
        out = oracle.run_oracle(t, max_examples=6)
        assert out.status == "failed"
        assert out.failure is not None and out.failure.requirement == "abi:EVTCHN_CLOSE"
        again = oracle.replay(t, list(out.trace), campaign.EVTCHN_CONFIG)
        assert again is not None and again.requirement == "abi:EVTCHN_CLOSE"
        pgid = t._machine.pgid
    finally:
        t.close()
    alive = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, check=False)
    assert alive.returncode != 0, "a process of the machine was left behind"
