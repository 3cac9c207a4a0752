"""The hypervisor as one step function: a register file in, a register file out.

``step`` is what a guest sees: decode (ABI codec), check the caller, run the transition,
encode the result.  ``apply`` does the same for an already-typed call, and ``event``
for what happens without a hypercall (a vCPU starting, a device interrupt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spec import logic
from spec.hypercalls.abi import EVENT_BY_NAME, Row
from spec.hypercalls.codec import NOT_SUPPORTED, Call, DecodeError, decode, encode_result
from spec.logic import and_, select, ult
from spec.profile import hint_honoured
from spec.state import CONTROL, ON, RUNNING, State
from spec.transitions import EVENT_HANDLERS, HANDLERS, Caller

__all__ = ["apply", "can_call", "decode_regs", "event", "step"]

_DECODED: dict[tuple[str, tuple[tuple[str, int], ...]], Call | DecodeError] = {}


def can_call(s: State, vm: Any, vcpu: Any) -> Any:
    """A hypercall can only come from an ON vCPU of a RUNNING VM."""
    cfg = s.cfg
    if type(vm) is int and type(vcpu) is int:  # concrete: the formula below, directly
        vm, vcpu = vm & logic.MASK64, vcpu & logic.MASK64
        if vm >= cfg.n_vms or vcpu >= cfg.n_vcpus:
            return False
        state, power = s.vm_state[vm], s.vcpu[vm * cfg.n_vcpus + vcpu]
        if type(state) is int and type(power) is int:
            return state == RUNNING and power == ON
    vm, vcpu = logic.word(vm), logic.word(vcpu)  # a negative id is no id
    return and_(
        ult(vm, cfg.n_vms), ult(vcpu, cfg.n_vcpus),
        select(s.vm_state, vm, 0) == RUNNING,
        select(s.vcpu, s.vc(vm, vcpu), 0) == ON,
    )


def apply(s: State, caller: Caller, call: Call | DecodeError) -> tuple[State, Any]:
    """The transition for a decoded call, with the caller and privilege checks first.

    Precedence: decode errors, then an impossible caller, then privilege, then the
    handler's own guards in ABI-table order.
    """
    if not hint_honoured(s.cfg.profile) and call.hinted:
        return s, logic.word(NOT_SUPPORTED)  # bit 16 is reserved before SMCCC 1.3: no call
    if isinstance(call, DecodeError):
        return s, logic.word(call.code)
    row: Row = call.row
    if not can_call(s, caller.vm, caller.vcpu):
        return s, logic.word(row.error("DENIED"))
    if row.caller == "control" and caller.vm != CONTROL:
        return s, logic.word(row.error("DENIED"))
    return HANDLERS[row.handler](s, caller, row, *call.args)


def decode_regs(regs: Mapping[str, Any], conv: str) -> Call | DecodeError:
    """:func:`~spec.hypercalls.codec.decode`, remembered for concrete register files.

    Decoding is a pure function of the registers and its results are frozen, and a
    campaign repeats the same register files constantly (aimed calls), so a concrete
    file is decoded once.  A file holding anything but ints (Z3 terms) is decoded afresh.
    """
    for v in regs.values():
        if type(v) is not int:
            return decode(regs, conv)
    key = (conv, tuple(regs.items()))
    hit = _DECODED.get(key)
    if hit is None:
        if len(_DECODED) >= 1 << 14:
            _DECODED.clear()
        hit = _DECODED[key] = decode(regs, conv)
    return hit


def step(
    s: State, vm: Any, vcpu: Any, regs: Mapping[str, Any], conv: str = "arm64"
) -> tuple[State, dict[str, Any]]:
    """One hypercall as the guest makes it: registers in, registers out."""
    s2, ret = apply(s, Caller(vm, vcpu), decode_regs(regs, conv))
    return s2, encode_result(ret, conv)


def event(s: State, name: str, *args: Any) -> State:
    """An environment event from the ABI's event list (never fails, may do nothing)."""
    return EVENT_HANDLERS[EVENT_BY_NAME[name].handler](s, *args)
