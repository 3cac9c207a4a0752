"""The hypercall ABI table: the single source for every hypercall's number, registers and errors.

Function identifiers follow the Arm SMC Calling Convention (DEN0028, section 2.5):

====== =====================================================================
bit 31 fast call (1) or yielding call (0); every call here is fast
bit 30 SMC64/HVC64 calling convention (1) or SMC32/HVC32 (0)
29:24  owning entity: 4 = standard secure service (PSCI), 6 = vendor hypervisor
23:17  reserved, must be zero (a non-zero value is an unknown function)
16     SVE live-state hint (SMCCC 1.3): the caller holds no live SVE state; before
       SMCCC 1.3 the bit is reserved too

15:0   function number
====== =====================================================================

PSCI calls keep their architected identifiers and return codes (DEN0022 5.1, 5.2.2), and so
do SMCCC's own Arm architecture calls (entity 0: SMCCC_VERSION, SMCCC_ARCH_FEATURES).  The
hypervisor's own calls (VM lifecycle, memory, transactions modelled on FF-A DEN0077
chapter 10, event channels modelled on Xen's ``event_channel.h``, interrupts, devices)
live under the vendor-hypervisor entity and use FF-A's error numbering (DEN0077 7.2).

Every argument is a *field*: an unsigned value of ``width`` bits in its register.  Any set
bit above the field is reserved and the call fails with INVALID_PARAMETERS before it
looks at the state.  Registers a call does not name are ignored, as SMCCC 1.1+ allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import attrs

ABI_VERSION = "1.0"

# --- error spaces ------------------------------------------------------------------------
PSCI_ERRORS: dict[str, int] = {
    "SUCCESS": 0,
    "NOT_SUPPORTED": -1,
    "INVALID_PARAMETERS": -2,
    "DENIED": -3,
    "ALREADY_ON": -4,
    "ON_PENDING": -5,
    "INTERNAL_FAILURE": -6,
    "NOT_PRESENT": -7,
    "DISABLED": -8,
    "INVALID_ADDRESS": -9,
}
HV_ERRORS: dict[str, int] = {  # FF-A numbering (DEN0077 table 7.x "Error status codes")
    "SUCCESS": 0,
    "NOT_SUPPORTED": -1,
    "INVALID_PARAMETERS": -2,
    "NO_MEMORY": -3,
    "BUSY": -4,
    "DENIED": -6,
}
SMCCC_ERRORS: dict[str, int] = {  # SMCCC DEN0028 return codes of the Arm architecture calls
    "SUCCESS": 0,
    "NOT_SUPPORTED": -1,
    "NOT_REQUIRED": -2,
    "INVALID_PARAMETER": -3,
}
ERROR_SPACES = {"psci": PSCI_ERRORS, "hv": HV_ERRORS, "smccc": SMCCC_ERRORS}

# SMCCC DEN0028 2.5 (from SMCCC 1.3): bit 16 of a function id tells the callee the caller
# has no live SVE state to preserve.  An implementation of SMCCC 1.3 or later serves the
# call the other bits name; before 1.3 the bit is one of the reserved bits 23:16, so the
# id is unknown (NOT_SUPPORTED).  Callers set it only after SMCCC_VERSION says 1.3+.
SVE_HINT = 1 << 16

ENTITY_ARM_ARCH = 0
ENTITY_STANDARD_SECURE = 4
ENTITY_VENDOR_HYP = 6

ArgKind = Literal["value", "function", "power_state", "vm", "vm_mask", "vcpu", "frame",
                  "perm", "handle", "port", "device", "line", "address", "mpidr", "level"]


@attrs.frozen
class Arg:
    name: str
    width: int  # bits of the field; the rest of the register is reserved (must be zero)
    kind: ArgKind
    meaning: str
    # for a port: whose port it is -- "" the caller's, else the name of the ``vm`` argument
    # naming the VM that owns it (ports are numbered per VM, Xen event_channel.h)
    of: str = ""


@attrs.frozen
class Row:
    name: str
    number: int  # function number, bits 15:0
    entity: int
    smc64: bool
    args: tuple[Arg, ...]
    returns: str  # what a non-negative result means
    errors: tuple[str, ...]  # error names this call can return, in precedence order
    caller: Literal["any", "control"]
    space: Literal["psci", "hv", "smccc"]
    handler: str  # name of the transition in spec.transitions
    clause: str  # where its semantics come from
    fast: bool = True
    # a successful call may not return to its caller (CPU_SUSPEND: a standby nothing
    # wakes) or never does (``never_returns``: CPU_OFF, SYSTEM_OFF, SYSTEM_RESET); a target
    # may answer it with "no return" instead of the success value
    no_return: bool = False
    never_returns: bool = False
    # the ABI-table version that added the row: a target that declares no ABIs is judged
    # on the rows of version 1.0 (a protocol-1.0 adapter keeps passing unchanged)
    since: str = "1.0"

    @property
    def function_id(self) -> int:
        return (
            (int(self.fast) << 31)
            | (int(self.smc64) << 30)
            | (self.entity << 24)
            | self.number
        )

    @property
    def abi(self) -> str:
        """The ABI the row belongs to: ``smccc`` (Arm architecture calls), ``psci``, or
        ``pvspec`` (the vendor-hypervisor calls no standard covers)."""
        return ABI_OF_ENTITY[self.entity]

    def error(self, name: str) -> int:
        """The (negative) value of a named error in this call's error space.  SMCCC's
        architecture calls have no DENIED; a call no vCPU could make (the model's answer
        to an impossible caller) is NOT_SUPPORTED there."""
        space = ERROR_SPACES[self.space]
        if name == "DENIED" and name not in space:
            name = "NOT_SUPPORTED"
        return space[name]


def _a(name: str, width: int, kind: ArgKind, meaning: str) -> Arg:
    return Arg(name, width, kind, meaning)


_VM = _a("vm", 16, "vm", "target VM id")
_HANDLE = _a("handle", 16, "handle", "memory-transaction handle")
_PORT = _a("port", 16, "port", "event-channel port of the caller")
_GFN = _a("gfn", 32, "frame", "guest frame number of the caller")
_PERM = _a("perm", 3, "perm", "access bits R=1 W=2 X=4")
_DEV = _a("device", 16, "device", "passthrough device id")

_PSCI, _HV = ENTITY_STANDARD_SECURE, ENTITY_VENDOR_HYP
_INV, _DEN = "INVALID_PARAMETERS", "DENIED"


def _psci(name: str, number: int, smc64: bool, args: tuple[Arg, ...], returns: str,
          errors: tuple[str, ...], handler: str, clause: str, no_return: bool = False,
          never_returns: bool = False) -> Row:
    return Row(name, number, _PSCI, smc64, args, returns, errors, "any", "psci", handler, clause,
               no_return=no_return, never_returns=never_returns)


def _psci11(name: str, number: int, args: tuple[Arg, ...], returns: str,
            errors: tuple[str, ...], handler: str, clause: str, no_return: bool = False
            ) -> Row:
    return Row(name, number, _PSCI, False, args, returns, errors, "any", "psci", handler,
               clause, no_return=no_return, never_returns=no_return, since="1.1")


def _smccc(name: str, number: int, args: tuple[Arg, ...], returns: str,
           errors: tuple[str, ...], handler: str, clause: str) -> Row:
    return Row(name, number, ENTITY_ARM_ARCH, False, args, returns, errors, "any", "smccc",
               handler, clause, since="1.1")


def _hv(name: str, number: int, args: tuple[Arg, ...], returns: str, errors: tuple[str, ...],
        handler: str, clause: str, caller: Literal["any", "control"] = "any") -> Row:
    return Row(name, number, _HV, True, args, returns, errors, caller, "hv", handler, clause)


_CPU_ON_ARGS = (
    _a("target_cpu", 64, "mpidr", "MPIDR of the vCPU to start: Aff0 = vCPU index"),
    _a("entry", 64, "address", "guest physical entry point; must be executable"),
    _a("context", 64, "value", "context id handed to the new vCPU"),
)
_AFF_ARGS = (
    _a("target_affinity", 64, "mpidr", "MPIDR of the vCPU to query"),
    _a("lowest_level", 32, "level", "lowest affinity level; only 0 is supported"),
)
_SUSPEND_ARGS = (
    _a("power_state", 32, "power_state", "original format: StateID 15:0, StateType 16 "
       "(1 power-down), PowerLevel 25:24; other bits zero"),
    _a("entry", 64, "address", "where a power-down resumes (must be executable)"),
    _a("context", 64, "value", "context id handed back at entry"),
)
_CPU_ON_ERR = ("DENIED", _INV, "INVALID_ADDRESS", "ALREADY_ON", "ON_PENDING")
_SHARE_ARGS = (
    _a("base", 32, "frame", "first guest frame of the caller to share"),
    _a("count", 32, "value", "number of frames"),
    _a("borrowers", 16, "vm_mask", "bit mask of borrower VMs"),
    _PERM,
)
_SHARE_ERR = (_DEN, _INV, "NO_MEMORY")

TABLE: tuple[Row, ...] = (
    _psci("PSCI_VERSION", 0x0, False, (), "version: major << 16 | minor", (_DEN,),
          "psci_version", "PSCI DEN0022 5.1.1"),
    _psci("CPU_OFF", 0x2, False, (), "does not return", (_DEN,), "cpu_off",
          "PSCI DEN0022 5.1.3", no_return=True, never_returns=True),
    _psci("CPU_ON_32", 0x3, False,
          tuple(attrs.evolve(a, width=32) for a in _CPU_ON_ARGS), "0", _CPU_ON_ERR,
          "cpu_on", "PSCI DEN0022 5.1.4 (SMC32)"),
    _psci("CPU_ON", 0x3, True, _CPU_ON_ARGS, "0", _CPU_ON_ERR, "cpu_on",
          "PSCI DEN0022 5.1.4"),
    _psci("AFFINITY_INFO_32", 0x4, False,
          tuple(attrs.evolve(a, width=32) for a in _AFF_ARGS),
          "0 ON, 1 OFF, 2 ON_PENDING", (_DEN, _INV), "affinity_info",
          "PSCI DEN0022 5.1.5 (SMC32)"),
    _psci("AFFINITY_INFO", 0x4, True, _AFF_ARGS, "0 ON, 1 OFF, 2 ON_PENDING", (_DEN, _INV),
          "affinity_info", "PSCI DEN0022 5.1.5"),
    *(Row(name, 0x1, _PSCI, smc64, tuple(
        attrs.evolve(a, width=64 if smc64 and a.name != "power_state" else 32)
        for a in _SUSPEND_ARGS), "0 after a wake-up; power-down resumes at entry (no return)",
        ("DENIED", _INV, "INVALID_ADDRESS"), "any", "psci", "cpu_suspend",
        f"PSCI DEN0022 5.1.2{'' if smc64 else ' (SMC32)'}", no_return=True, since="1.1")
      for name, smc64 in (("CPU_SUSPEND_32", False), ("CPU_SUSPEND", True))),
    _psci11("MIGRATE_INFO_TYPE", 0x6, (), "0 uniprocessor migratable Trusted OS, "
            "1 uniprocessor not migratable, 2 no migration needed", ("NOT_SUPPORTED",),
            "migrate_info_type", "PSCI DEN0022 5.1.7 (optional)"),
    _psci11("SYSTEM_OFF", 0x8, (), "does not return", (_DEN,), "system_off",
            "PSCI DEN0022 5.1.9", no_return=True),
    _psci11("SYSTEM_RESET", 0x9, (), "does not return", (_DEN,), "system_reset",
            "PSCI DEN0022 5.1.10", no_return=True),
    *(Row(name, 0x12, _PSCI, smc64, (
        _a("reset_type", 32, "value", "bit 31 clear: architectural (0 SYSTEM_WARM_RESET, other "
           "values reserved); bit 31 set: vendor-specific type"),
        _a("cookie", 64 if smc64 else 32, "value", "vendor reset argument (ignored by a warm "
           "reset)")),
        "does not return", (_DEN, "NOT_SUPPORTED", _INV), "any", "psci", "system_reset2",
        "PSCI DEN0022 5.1.11 SYSTEM_RESET2 (optional, from PSCI 1.1)"
        f"{'' if smc64 else ' (SMC32)'}", no_return=True, never_returns=True, since="1.1")
      for name, smc64 in (("SYSTEM_RESET2_32", False), ("SYSTEM_RESET2", True))),
    _psci11("PSCI_FEATURES", 0xA,
            (_a("psci_func_id", 32, "function", "function id of a PSCI or SMCCC call"),),
            "0, or feature flags (bit 31 clear)", ("NOT_SUPPORTED",), "psci_features",
            "PSCI DEN0022 5.1.14 (mandatory from PSCI 1.0)"),
    _smccc("SMCCC_VERSION", 0x0, (), "version: major << 16 | minor (bit 31 clear)",
           ("NOT_SUPPORTED",), "smccc_version", "SMCCC DEN0028 SMCCC_VERSION (from SMCCC 1.1)"),
    _smccc("SMCCC_ARCH_FEATURES", 0x1,
           (_a("arch_func_id", 32, "function", "function id of an Arm architecture call"),),
           "0 implemented; workarounds: 0 required, 1 not needed on this CPU",
           ("NOT_SUPPORTED", "NOT_REQUIRED"), "smccc_arch_features",
           "SMCCC DEN0028 SMCCC_ARCH_FEATURES (from SMCCC 1.1)"),
    _hv("HV_VERSION", 0x00, (), "ABI version: major << 16 | minor", (_DEN,), "hv_version",
        "pvspec ABI"),
    _hv("VM_CREATE", 0x01, (_VM, _a("quota", 32, "value", "maximum host frames it may own")),
        "0", (_DEN, _INV), "vm_create", "pvspec VM lifecycle", caller="control"),
    _hv("VM_DESTROY", 0x02, (_VM,), "0", (_DEN, _INV), "vm_destroy",
        "pvspec VM lifecycle; XSA-218/230 frame reuse rule", caller="control"),
    _hv("VM_PAUSE", 0x03, (_VM,), "0", (_DEN, _INV), "vm_pause", "pvspec VM lifecycle",
        caller="control"),
    _hv("VM_RESUME", 0x04, (_VM,), "0", (_DEN, _INV), "vm_resume", "pvspec VM lifecycle",
        caller="control"),
    _hv("MEM_POPULATE", 0x10, (_GFN, _PERM), "0", (_DEN, _INV, "NO_MEMORY"), "mem_populate",
        "pvspec memory; Xen XENMEM_populate_physmap"),
    _hv("MEM_RELEASE", 0x11, (_GFN,), "0", (_DEN, _INV), "mem_release",
        "pvspec memory; Xen XENMEM_decrease_reservation"),
    _hv("MEM_SHARE", 0x20, _SHARE_ARGS, "handle", _SHARE_ERR, "mem_share",
        "FF-A DEN0077 10.2 FFA_MEM_SHARE"),
    _hv("MEM_LEND", 0x21, _SHARE_ARGS, "handle", _SHARE_ERR, "mem_lend",
        "FF-A DEN0077 10.2 FFA_MEM_LEND"),
    _hv("MEM_DONATE", 0x22, _SHARE_ARGS, "handle", _SHARE_ERR, "mem_donate",
        "FF-A DEN0077 10.2 FFA_MEM_DONATE"),
    _hv("MEM_RETRIEVE", 0x23, (_HANDLE, _a("base", 32, "frame", "where the borrower maps it")),
        "0", (_DEN, _INV, "NO_MEMORY"), "mem_retrieve", "FF-A DEN0077 10.3 FFA_MEM_RETRIEVE_REQ"),
    _hv("MEM_RELINQUISH", 0x24, (_HANDLE,), "0", (_DEN, _INV), "mem_relinquish",
        "FF-A DEN0077 10.4 FFA_MEM_RELINQUISH"),
    _hv("MEM_RECLAIM", 0x25, (_HANDLE,), "0", (_DEN, _INV), "mem_reclaim",
        "FF-A DEN0077 10.5 FFA_MEM_RECLAIM"),
    _hv("EVTCHN_ALLOC_UNBOUND", 0x30, (_a("remote", 16, "vm", "VM allowed to bind"),),
        "port", (_DEN, _INV, "NO_MEMORY"), "evtchn_alloc_unbound",
        "Xen EVTCHNOP_alloc_unbound"),
    _hv("EVTCHN_BIND_INTERDOMAIN", 0x31,
        (_a("remote", 16, "vm", "VM that allocated the port"),
         Arg("remote_port", 16, "port", "its unbound port", of="remote")),
        "port", (_DEN, _INV, "NO_MEMORY"), "evtchn_bind_interdomain",
        "Xen EVTCHNOP_bind_interdomain"),
    _hv("EVTCHN_SEND", 0x32, (_PORT,), "0", (_DEN, _INV), "evtchn_send", "Xen EVTCHNOP_send"),
    _hv("EVTCHN_CLOSE", 0x33, (_PORT,), "0", (_DEN, _INV), "evtchn_close",
        "Xen EVTCHNOP_close"),
    _hv("EVTCHN_MASK", 0x34, (_PORT,), "0", (_DEN, _INV), "evtchn_mask",
        "Xen evtchn mask bit"),
    _hv("EVTCHN_UNMASK", 0x35, (_PORT,), "0", (_DEN, _INV), "evtchn_unmask",
        "Xen EVTCHNOP_unmask"),
    _hv("EVTCHN_STATUS", 0x36, (_PORT,),
        "state | pending << 8 | masked << 9 | remote << 16 | remote_port << 32",
        (_DEN, _INV), "evtchn_status", "Xen EVTCHNOP_status"),
    _hv("EVTCHN_CLEAR", 0x37, (_PORT,), "0", (_DEN, _INV), "evtchn_clear",
        "Xen evtchn pending bit"),
    _hv("IRQ_ACK", 0x40, (_a("line", 8, "line", "0 event channels, 1 + d device d"),), "0",
        (_DEN, _INV), "irq_ack", "pvspec virtual interrupts"),
    _hv("DEV_ASSIGN", 0x50, (_DEV, _VM), "0", (_DEN, _INV), "dev_assign",
        "pvspec passthrough; Xen XEN_DOMCTL_assign_device", caller="control"),
    _hv("DEV_DEASSIGN", 0x51, (_DEV,), "0", (_DEN, _INV), "dev_deassign",
        "pvspec passthrough; Xen XEN_DOMCTL_deassign_device", caller="control"),
)

ABI_OF_ENTITY = {ENTITY_ARM_ARCH: "smccc", ENTITY_STANDARD_SECURE: "psci",
                 ENTITY_VENDOR_HYP: "pvspec"}
ABIS = ("smccc", "psci", "pvspec")

# Arm architecture calls a guest may query with SMCCC_ARCH_FEATURES that this table has no
# row for: the CPU-erratum workarounds (SMCCC DEN0028; Spectre v2, v4, BHB).
ARCH_WORKAROUND_1, ARCH_WORKAROUND_2, ARCH_WORKAROUND_3 = 0x80008000, 0x80007FFF, 0x80003FFF
ARCH_WORKAROUNDS = (ARCH_WORKAROUND_1, ARCH_WORKAROUND_2, ARCH_WORKAROUND_3)

BY_NAME: dict[str, Row] = {row.name: row for row in TABLE}
BY_ID: dict[int, Row] = {row.function_id: row for row in TABLE}
assert len(BY_ID) == len(TABLE), "function ids must be unique"

# Registers, per calling convention: where the function id, the arguments and the result go.
ARM64_ARGS = ("x1", "x2", "x3", "x4", "x5", "x6", "x7")
X86_ARGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
CONVENTIONS = {
    "arm64": {"id": "x0", "args": ARM64_ARGS, "result": ("x0", "x1", "x2", "x3")},
    "x86_64": {"id": "rax", "args": X86_ARGS, "result": ("rax",)},
}
assert max(len(r.args) for r in TABLE) <= len(X86_ARGS)


# --- environment events: what happens to the machine without a hypercall ------------------
@attrs.frozen
class Event:
    name: str
    args: tuple[Arg, ...]
    handler: str
    clause: str


EVENTS: tuple[Event, ...] = (
    Event("VCPU_START", (_VM, _a("vcpu", 16, "vcpu", "vCPU index")), "vcpu_start",
          "PSCI DEN0022 5.5: an ON_PENDING core starts executing and becomes ON"),
    Event("DEVICE_IRQ", (_DEV,), "device_irq",
          "pvspec passthrough: a device raises its interrupt line"),
)
EVENT_BY_NAME = {e.name: e for e in EVENTS}


def rows() -> Iterator[Row]:
    return iter(TABLE)
