"""``reference-xen``: the reference implementation with its event channels spoken as Xen's
``event_channel_op`` (reference_impl/_xen.py), judged through the codec by the oracle --
passes, with the event-channel calls really made in Xen's ABI, and a front end that
answers +errno, or writes a status field at the wrong offset, is caught."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from conformance import oracle
from conformance.abi_targets import ReferenceXenTarget
from conformance.target import make_target
from reference_impl._xen import XenFrontEnd

MASK64 = (1 << 64) - 1


class _ErrnoSign(XenFrontEnd):
    """Failures answered +errno."""

    def call(self, vm: int, vcpu: int, regs: Any, mem: bytes) -> Any:
        out, after = super().call(vm, vcpu, regs, mem)
        rc = out["x0"]
        return (dict(out, x0=(-(rc - (1 << 64))) & MASK64) if rc >> 63 else out), after


class _StatusPortAtDom(XenFrontEnd):
    """EVTCHNOP_status writes the remote port over u.dom (offset 16, not 20)."""

    def call(self, vm: int, vcpu: int, regs: Any, mem: bytes) -> Any:
        out, after = super().call(vm, vcpu, regs, mem)
        if regs.get("x0") == 5 and out["x0"] == 0 and len(after) >= 24:
            (port,) = struct.unpack_from("<I", after, 20)
            after = after[:16] + struct.pack("<I", port) + after[20:]
        return out, after


def test_the_target_is_made_by_name() -> None:
    assert isinstance(make_target("reference-xen"), ReferenceXenTarget)


def test_the_oracle_passes_reference_xen() -> None:
    t = ReferenceXenTarget()
    out = oracle.run_oracle(t, profile="ci", max_examples=25)
    assert out.status == "passed", out.failure
    assert t.through_abi > 100, (t.through_abi, t.native)


@pytest.mark.parametrize(("front", "rows"), [
    (_ErrnoSign, ("abi:EVTCHN_",)), (_StatusPortAtDom, ("abi:EVTCHN_STATUS",))],
    ids=["errno-sign", "status-port-offset"])
def test_a_planted_front_end_bug_is_caught(front: type, rows: tuple[str, ...]) -> None:
    out = oracle.run_oracle(ReferenceXenTarget(front_end=front), profile="ci",
                            max_examples=40)
    assert out.status == "failed" and out.failure is not None
    assert out.failure.requirement.startswith(rows), out.failure
