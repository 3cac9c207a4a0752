"""The oracle on a Xen event-channel target through the codec of spec/hypercalls/xen.py,
with a stand-in for the machine (tests/conformance/_fake_xen.py) that behaves as Xen 4.17's
event_channel.c does: a faithful one passes, each planted deviation is caught, and no call
ever reaches a port dom0's kernel holds.
"""

from __future__ import annotations

import pytest

from conformance import oracle
from conformance.xen_target import XenTarget
from spec.hypercalls import xen
from tests.conformance._fake_xen import FakeXen


def _run(bug: str = "", examples: int = 20) -> tuple[oracle.OracleOutcome, FakeXen]:
    fake = FakeXen(bug)
    target = XenTarget(machine=lambda: fake)
    try:
        return oracle.run_oracle(target, max_examples=examples), fake
    finally:
        target.close()


def test_a_faithful_xen_passes_and_every_call_is_judged() -> None:
    out, fake = _run()
    assert out.status == "passed", out.failure or out.error
    assert out.steps > 1000
    assert {f"abi:{r}" for r in xen.rows()} <= out.judged
    # only what the calls' state changes touch is credited: channels, not memory or VMs
    assert {"invariant:channels_paired", "step:bind_requires_consent"} <= out.judged
    assert not {"invariant:quota_respected", "invariant:transactions_consistent",
                "step:lifecycle_by_control_only", "step:handles_stable",
                "step:firmware_results_well_formed"} & out.judged
    # the kernel's ports (1..5) were never closed or bound by the suite
    assert all(fake.ports[p][0] in ("virq", "ipi") for p in range(1, 6))


@pytest.mark.parametrize(("bug", "requirement"), [
    ("reuse-live", "abi:EVTCHN_ALLOC_UNBOUND"),
    ("close-keeps-peer", None),
    ("status-port", "abi:EVTCHN_STATUS"),
    ("close-lies", "abi:EVTCHN_CLOSE"),
    ("no-loopback", "abi:EVTCHN_BIND_INTERDOMAIN"),
    ("racy-alloc", "abi:EVTCHN_ALLOC_UNBOUND"),
])
def test_planted_xen_bugs_are_caught(bug: str, requirement: str | None) -> None:
    out, _ = _run(bug)
    assert out.status == "failed", f"{bug} was not caught"
    assert out.failure is not None
    if requirement is not None:
        assert out.failure.requirement == requirement, out.failure


def test_codec_round_trip_and_error_readings() -> None:
    op, data = xen.encode("EVTCHN_BIND_INTERDOMAIN", (0, 7))
    assert op == xen.Op.BIND_INTERDOMAIN and len(data) == 12
    r = xen.decode("EVTCHN_BIND_INTERDOMAIN", 0, data[:8] + (9).to_bytes(4, "little"))
    assert r.ok and r.value == 9
    bad = xen.decode("EVTCHN_BIND_INTERDOMAIN", -22, data)
    assert not bad.ok and bad.errors == {"INVALID_PARAMETERS", "DENIED"}
    assert xen.decode("EVTCHN_ALLOC_UNBOUND", -28, b"").errors == {"NO_MEMORY"}
    assert xen.decode("EVTCHN_SEND", -95, b"").errors == frozenset()


def test_undeclared_choices_are_learned_from_xens_answers() -> None:
    """Without the declared readings, the oracle learns each from the answers it sees
    (spec/profile.py): Xen's are the permissive ones, but for the remote domain, which
    must exist."""
    fake = FakeXen()
    target = XenTarget(machine=lambda: fake)
    target.profile = {"abis": "xen", "port_allocation": "any-free", "boot": "smp"}
    try:
        out = oracle.run_oracle(target, max_examples=20)
    finally:
        target.close()
    assert out.status == "passed", out.failure or out.error
    for dim in ("evtchn_loopback", "evtchn_send_unbound", "evtchn_unmask_closed"):
        assert out.learned[dim] == "true", (dim, out.learned)
    assert out.learned["evtchn_any_remote"] == "false"


def test_a_target_held_to_the_strict_reading_fails_on_xen() -> None:
    """Declared strict (pvspec's own reading), Xen's loopback binding is a failure."""
    fake = FakeXen()
    target = XenTarget(machine=lambda: fake)
    target.profile = {**target.profile, "evtchn_loopback": "false"}
    try:
        out = oracle.run_oracle(target, max_examples=5)
    finally:
        target.close()
    assert out.status == "failed"
    assert out.failure is not None
    assert out.failure.requirement in ("abi:EVTCHN_ALLOC_UNBOUND", "abi:EVTCHN_BIND_INTERDOMAIN")
