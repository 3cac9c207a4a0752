"""Deterministic scenario checks, one or more per ABI row, in the style of the Arm CCA RMM
ACS: each failure condition alone, then pairs of conditions to pin down the error
precedence, then the success case.  Every step also runs through the differential
:class:`~conformance.oracle.Differ`, so target and spec are compared throughout; the
scenario's own expectation is checked against the spec as well (a disagreement is a
scenario defect, reported as ``error``).
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from conformance.oracle import SIM_CONFIG, ConformanceFailure, Differ, SpecDefect, TargetAbort
from conformance.results import Check, Failure, NotJudged, clip_text
from conformance.target import Target
from spec.hypercalls import abi, codec

__all__ = ["SCENARIOS", "Scenario", "area", "run_scenario"]


@attrs.frozen
class Op:
    vm: int
    row: str
    args: tuple[int, ...] = ()
    vcpu: int = 0
    conv: str = "arm64"
    raw: tuple[tuple[str, int], ...] = ()  # registers overriding the encoded call


@attrs.frozen
class Scenario:
    id: str
    title: str
    row: str
    ops: tuple[Op, ...]
    expect: str | int  # the last call's result: an error name or a value
    also: tuple[str, ...] = ()  # further requirements it covers


def area(row: str) -> str:
    for prefix, name in (("MEM_", "memory"), ("EVTCHN_", "evtchn"), ("VM_", "lifecycle"),
                         ("DEV_", "device"), ("IRQ_", "irq"), ("CPU_", "psci"),
                         ("AFFINITY", "psci"), ("PSCI", "psci")):
        if row.startswith(prefix):
            return name
    return "hypercall"


BOOT = (Op(0, "VM_CREATE", (1, 3)), Op(0, "VM_CREATE", (2, 3)),
        Op(0, "MEM_POPULATE", (0, 7)), Op(0, "MEM_POPULATE", (1, 7)),
        Op(1, "MEM_POPULATE", (0, 7)), Op(1, "MEM_POPULATE", (1, 5)),
        Op(2, "MEM_POPULATE", (0, 7)))


def _generated() -> list[Scenario]:
    out = []
    for r in abi.TABLE:
        zero = (0,) * len(r.args)
        out.append(Scenario(f"{r.name}/caller-vcpu-off", "a vCPU that is OFF cannot call",
                            r.name, (*BOOT, Op(0, r.name, zero, vcpu=1)), "DENIED"))
        if r.caller == "control":
            args = (1, *zero[1:])
            out.append(Scenario(f"{r.name}/not-control", "only the control VM may call",
                                r.name, (*BOOT, Op(1, r.name, args)), "DENIED",
                                ("step:lifecycle_by_control_only",)))
            bad = (0xFFFF, *zero[1:])
            out.append(Scenario(
                f"{r.name}/precedence:privilege-before-arguments",
                "non-control caller AND out-of-range argument: DENIED (privilege first)",
                r.name, (*BOOT, Op(1, r.name, bad)), "DENIED"))
        limit = 64 if r.smc64 else 32
        for i, a in enumerate(r.args):
            if a.width >= limit:
                continue
            args = tuple((1 << a.width) if j == i else 0 for j in range(len(r.args)))
            out.append(Scenario(f"{r.name}/reserved-bits:{a.name}",
                                f"a reserved bit above {a.name} is INVALID_PARAMETERS",
                                r.name, (*BOOT, Op(0, r.name, args)), "INVALID_PARAMETERS",
                                ("abi:decode",)))
            out.append(Scenario(
                f"{r.name}/precedence:decode-before-caller:{a.name}",
                "reserved bits AND a caller that cannot call: INVALID_PARAMETERS (decode first)",
                r.name, (*BOOT, Op(0, r.name, args, vcpu=1)), "INVALID_PARAMETERS",
                ("abi:decode",)))
    return out


_SHARED = (*BOOT, Op(1, "MEM_SHARE", (0, 1, 0b100, 1)), Op(2, "MEM_RETRIEVE", (0, 1)))

HAND: tuple[Scenario, ...] = (
    Scenario("decode/unknown-function", "an unknown function id is NOT_SUPPORTED",
             "HV_VERSION", (Op(0, "HV_VERSION", raw=(("x0", 0xC6000099),)),), -1,
             ("abi:decode",)),
    Scenario("decode/function-id-reserved-bits", "bits 23:16 of the id set: NOT_SUPPORTED",
             "HV_VERSION", (Op(0, "HV_VERSION", raw=(("x0", 0xC6010000),)),), -1,
             ("abi:decode",)),
    Scenario("decode/arm64-upper-x0-ignored", "the upper half of x0 is ignored (SMCCC)",
             "HV_VERSION", (Op(0, "HV_VERSION", raw=(("x0", 0xDEAD_0000_C600_0000),)),),
             0x10000, ("abi:decode",)),
    Scenario("decode/smc32-upper-halves-ignored", "SMC32 calls read only w1..w7",
             "AFFINITY_INFO_32", (Op(0, "AFFINITY_INFO_32", (1 << 32, 0)),), 0,
             ("abi:decode",)),
    Scenario("decode/x86_64", "the x86_64 convention returns in rax", "HV_VERSION",
             (Op(0, "HV_VERSION", conv="x86_64"),), 0x10000),
    Scenario("PSCI_VERSION/ok", "PSCI 1.1", "PSCI_VERSION", (Op(0, "PSCI_VERSION"),), 0x10001),
    Scenario("CPU_ON/ok", "OFF -> ON_PENDING", "CPU_ON", (*BOOT, Op(0, "CPU_ON", (1, 0, 0))),
             0, ("step:vcpus_follow_psci",)),
    Scenario("CPU_ON/already-on", "", "CPU_ON", (*BOOT, Op(0, "CPU_ON", (0, 0, 0))),
             "ALREADY_ON"),
    Scenario("CPU_ON/on-pending", "", "CPU_ON",
             (*BOOT, Op(0, "CPU_ON", (1, 0, 0)), Op(0, "CPU_ON", (1, 0, 0))), "ON_PENDING"),
    Scenario("CPU_ON/entry-not-executable", "", "CPU_ON",
             (*BOOT, Op(1, "CPU_ON", (1, 2 << 12, 0))), "INVALID_ADDRESS"),
    Scenario("CPU_ON/precedence:target-before-address", "bad target AND bad entry",
             "CPU_ON", (*BOOT, Op(0, "CPU_ON", (9, 3 << 12, 0))), "INVALID_PARAMETERS"),
    Scenario("VM_CREATE/precedence:arguments-before-state", "existing VM AND quota too big",
             "VM_CREATE", (*BOOT, Op(0, "VM_CREATE", (1, 99))), "INVALID_PARAMETERS"),
    Scenario("VM_CREATE/exists", "", "VM_CREATE", (*BOOT, Op(0, "VM_CREATE", (1, 1))),
             "DENIED"),
    Scenario("MEM_POPULATE/quota", "no frame beyond the quota", "MEM_POPULATE",
             (*BOOT, Op(0, "MEM_POPULATE", (2, 7)), Op(0, "MEM_POPULATE", (3, 7))), "NO_MEMORY",
             ("invariant:quota_respected",)),
    Scenario("MEM_POPULATE/write-only", "", "MEM_POPULATE",
             (*BOOT, Op(1, "MEM_POPULATE", (2, 2))), "INVALID_PARAMETERS"),
    Scenario("MEM_SHARE/ok", "first free handle", "MEM_SHARE",
             (*BOOT, Op(1, "MEM_SHARE", (0, 1, 0b100, 1))), 0),
    Scenario("MEM_SHARE/perm-beyond-own", "", "MEM_SHARE",
             (*BOOT, Op(1, "MEM_SHARE", (1, 1, 0b100, 7))), "DENIED",
             ("invariant:write_within_grant",)),
    Scenario("MEM_SHARE/precedence:range-before-ownership", "bad range AND not owned",
             "MEM_SHARE", (*BOOT, Op(1, "MEM_SHARE", (2, 5, 0b100, 1))), "INVALID_PARAMETERS"),
    Scenario("MEM_DONATE/two-receivers", "", "MEM_DONATE",
             (*BOOT, Op(0, "MEM_DONATE", (0, 1, 0b110, 1))), "INVALID_PARAMETERS"),
    Scenario("MEM_RETRIEVE/ok", "", "MEM_RETRIEVE", _SHARED, 0,
             ("invariant:mappings_authorized",)),
    Scenario("MEM_RETRIEVE/not-borrower", "", "MEM_RETRIEVE",
             (*_SHARED, Op(0, "MEM_RETRIEVE", (0, 2))), "DENIED"),
    Scenario("MEM_RETRIEVE/precedence:borrower-before-base", "not a borrower AND bad base",
             "MEM_RETRIEVE", (*_SHARED, Op(0, "MEM_RETRIEVE", (0, 9))), "DENIED"),
    Scenario("MEM_RECLAIM/while-retrieved", "FF-A: reclaim only after relinquish",
             "MEM_RECLAIM", (*_SHARED, Op(1, "MEM_RECLAIM", (0,))), "DENIED",
             ("invariant:retrievals_recorded",)),
    Scenario("MEM_RECLAIM/after-relinquish", "", "MEM_RECLAIM",
             (*_SHARED, Op(2, "MEM_RELINQUISH", (0,)), Op(1, "MEM_RECLAIM", (0,))), 0),
    Scenario("MEM_RELEASE/in-transaction", "", "MEM_RELEASE",
             (*_SHARED, Op(1, "MEM_RELEASE", (0,))), "DENIED",
             ("invariant:free_frames_unmapped",)),
    Scenario("VM_DESTROY/orphan-stays-mapped", "XSA-218/230: the borrower keeps its mapping",
             "VM_DESTROY", (*_SHARED, Op(0, "VM_DESTROY", (1,)),
                            Op(2, "MEM_RELINQUISH", (0,))), 0,
             ("invariant:free_frames_unmapped", "invariant:transactions_consistent")),
    Scenario("VM_PAUSE/ok", "", "VM_PAUSE", (*BOOT, Op(0, "VM_PAUSE", (1,))), 0),
    Scenario("VM_RESUME/not-paused", "", "VM_RESUME", (*BOOT, Op(0, "VM_RESUME", (1,))),
             "DENIED"),
    Scenario("EVTCHN_ALLOC_UNBOUND/self", "", "EVTCHN_ALLOC_UNBOUND",
             (*BOOT, Op(1, "EVTCHN_ALLOC_UNBOUND", (1,))), "INVALID_PARAMETERS"),
    Scenario("EVTCHN_BIND_INTERDOMAIN/ok", "", "EVTCHN_BIND_INTERDOMAIN",
             (*BOOT, Op(1, "EVTCHN_ALLOC_UNBOUND", (2,)),
              Op(2, "EVTCHN_BIND_INTERDOMAIN", (1, 0))), 0, ("invariant:channels_paired",)),
    Scenario("EVTCHN_BIND_INTERDOMAIN/not-offered", "", "EVTCHN_BIND_INTERDOMAIN",
             (*BOOT, Op(1, "EVTCHN_ALLOC_UNBOUND", (2,)),
              Op(0, "EVTCHN_BIND_INTERDOMAIN", (1, 0))), "DENIED",
             ("step:bind_requires_consent",)),
    Scenario("EVTCHN_SEND/unbound", "no event through an unbound port", "EVTCHN_SEND",
             (*BOOT, Op(1, "EVTCHN_ALLOC_UNBOUND", (2,)), Op(1, "EVTCHN_SEND", (0,))),
             "INVALID_PARAMETERS", ("step:send_reaches_only_peer",)),
    Scenario("EVTCHN_SEND/ok", "", "EVTCHN_SEND",
             (*BOOT, Op(1, "EVTCHN_ALLOC_UNBOUND", (2,)),
              Op(2, "EVTCHN_BIND_INTERDOMAIN", (1, 0)), Op(2, "EVTCHN_SEND", (0,))), 0),
    Scenario("EVTCHN_STATUS/closed", "", "EVTCHN_STATUS",
             (*BOOT, Op(1, "EVTCHN_STATUS", (0,))), 0xFFFF_FFFF_0000),
    Scenario("IRQ_ACK/bad-line", "", "IRQ_ACK", (*BOOT, Op(1, "IRQ_ACK", (9,))),
             "INVALID_PARAMETERS"),
    Scenario("DEV_ASSIGN/ok", "", "DEV_ASSIGN", (*BOOT, Op(0, "DEV_ASSIGN", (0, 1))), 0),
    Scenario("DEV_ASSIGN/busy", "", "DEV_ASSIGN",
             (*BOOT, Op(0, "DEV_ASSIGN", (0, 1)), Op(0, "DEV_ASSIGN", (0, 2))), "DENIED"),
    Scenario("DEV_DEASSIGN/unassigned", "", "DEV_DEASSIGN",
             (*BOOT, Op(0, "DEV_DEASSIGN", (1,))), "INVALID_PARAMETERS"),
)

SCENARIOS: tuple[Scenario, ...] = (*_generated(), *HAND)


def run_scenario(target: Target, sc: Scenario) -> Check:
    """Run one scenario; never raises for the target's sake.  It credits what its Differ
    judged on the way (every call's result, and the views of every state change)."""
    row = abi.BY_NAME[sc.row]
    covers = (f"abi:{sc.row}", *sc.also)
    start = time.perf_counter()
    d: Differ | None = None

    def check(status: str, detail: str = "", failure: Failure | None = None,
              reason: NotJudged | None = None) -> Check:
        judged = () if d is None or status in ("error", "not-judged") else sorted(d.judged)
        steps = 0 if d is None else d.steps
        return Check(f"scenario:{sc.id}", sc.title or sc.id, "scenario", status, covers,
                     judged, reason, row.clause, "scenario", time.perf_counter() - start, 1,
                     steps, clip_text(detail), failure)

    if "hypercall" not in target.capabilities:
        return check("not-judged", "target lacks the hypercall capability",
                     reason=NotJudged.CAPABILITY)
    d = Differ(target, SIM_CONFIG, invariants="step")
    ret: Any = None
    try:
        d.reset()
        for op in sc.ops:
            regs = codec.encode_call(abi.BY_NAME[op.row], op.args, op.conv)
            regs.update(dict(op.raw))
            ret = d.hypercall(op.vm, op.vcpu, regs, op.conv)
    except ConformanceFailure as exc:
        return check("error" if exc.kind in ("crash", "spec-invariant") else "failed",
                     "", Failure(exc.kind, exc.requirement, exc.clause, exc.expected,
                                 clip_text(exc.observed), tuple(exc.trace)))
    except TargetAbort as exc:
        return check("error", exc.error.reason, Failure(
            "protocol", covers[0], "pvspec stdio protocol (docs/PROTOCOL.md)", "an answer",
            clip_text(exc.error.reason), tuple(exc.trace)))
    except SpecDefect as exc:
        return check("error", f"spec defect: {exc}")
    want = sc.expect if isinstance(sc.expect, int) else row.error(sc.expect)
    want &= (1 << 64) - 1
    if ret != want:
        return check("error", f"scenario defect: expects {sc.expect}, the spec returns "
                              f"{ret - (1 << 64) if ret >> 63 else ret}")
    return check("passed")
