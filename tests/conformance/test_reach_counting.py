"""Reach counts each call's raw facts and sorts them when read: the figures must be what
the calls were, however often they are read and whenever more calls come."""

from __future__ import annotations

from conformance.reach import Reach
from spec import campaign, machine
from spec.hypercalls import abi, codec
from spec.state import initial


def _call(r: Reach, s, vm, row, args, conv="arm64"):  # type: ignore[no-untyped-def]
    regs = codec.encode_call(abi.BY_NAME[row], args, conv)
    decoded = machine.decode_regs(regs, conv)
    s2, ret = machine.apply(s, machine.Caller(vm, 0), decoded)
    r.call(s, vm, 0, decoded, regs, conv, ret)
    return s2, ret


def test_figures_are_the_calls_made() -> None:
    s = campaign.with_image(initial(campaign.SIM_CONFIG))
    r = Reach()
    s, _ = _call(r, s, 0, "VM_CREATE", (1, 2))
    assert r.rows[("VM_CREATE", "sent")] == 1 and r.rows[("VM_CREATE", "ok")] == 1
    _call(r, s, 0, "VM_CREATE", (1, 2))  # again: the VM exists
    _call(r, s, 0, "VM_CREATE", (1, 2))
    s, _ = _call(r, s, 0, "VM_PAUSE", (1,))
    _call(r, s, 1, "EVTCHN_SEND", (1 << 40,))  # reserved bits, from the paused VM
    regs = {"x0": 0x8600_FFFF}  # an unknown function id (odd)
    r.call(s, 0, 0, machine.decode_regs(regs, "arm64"), regs, "arm64", (1 << 64) - 1)
    assert r.rows[("VM_CREATE", "sent")] == 3 and r.rows[("VM_CREATE", "ok")] == 1
    assert sum(n for (row, what), n in r.rows.items() if row == "VM_CREATE"
               and what not in ("sent", "ok")) == 2
    assert r.rows[("unknown", "sent")] == 1 and r.unknown_ids == {"odd": 1}
    assert r.features["reserved bits set"] == 1
    assert r.features["caller's VM is paused"] == 1
    assert r.features["a paused VM exists"] == 1  # an unknown id counts no feature
    assert r.fields[("VM_CREATE.vm", "1")] == 3
    whole = r.to_dict()
    merged = Reach()
    merged.merge(r)
    merged.merge(r)
    assert merged.rows[("VM_CREATE", "sent")] == 6 and r.to_dict() == whole
