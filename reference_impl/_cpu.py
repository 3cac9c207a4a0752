"""PSCI, version, interrupt and passthrough-device hypercalls, and the two events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_impl._abi_constants import ABI_VERSION, ROWS
from reference_impl._common import (
    H_DEN,
    H_INV,
    HELD,
    NONE,
    OFF,
    ON,
    ON_PENDING,
    P_ALREADY_ON,
    P_INV,
    P_INV_ADDR,
    P_ON_PENDING,
    PSCI,
    SMCCC,
    VALID,
)

if TYPE_CHECKING:
    from reference_impl._state import StateTables

    _Base = StateTables
else:
    _Base = object

PSCI_VERSION_VALUE = (1 << 16) | 1  # PSCI 1.1
_MAJOR, _MINOR = (int(x) for x in ABI_VERSION.split("."))
HV_VERSION_VALUE = (_MAJOR << 16) | _MINOR
_GFN_MASK = (1 << 52) - 1
# CPU_SUSPEND power_state (original format): StateID 15:0, StateType 16, PowerLevel 25:24
_POWER_STATE_RESERVED = 0xFFFF_FFFF & ~(0xFFFF | 1 << 16 | 3 << 24)
AFFINITY = {ON: 0, OFF: 1, ON_PENDING: 2}
SMCCC_VERSION_VALUE = (1 << 16) | 1  # SMCCC 1.1
MIGRATE_INFO_TYPE_VALUE = 2  # no Trusted OS to migrate
# PSCI_FEATURES: every PSCI function this hypervisor implements (all but the optional
# SYSTEM_RESET2), and SMCCC_VERSION
_FEATURES = frozenset(fid for name, fid, _s, _c, space, handler, _a in ROWS
                      if (space == "psci" and handler != "system_reset2")
                      or name == "SMCCC_VERSION")
_ARCH_CALLS = frozenset(fid for _n, fid, _s, _c, space, _h, _a in ROWS if space == "smccc")


class CpuCalls(_Base):
    def h_psci_version(self, vm: int, vcpu: int) -> int:
        return PSCI_VERSION_VALUE

    def h_hv_version(self, vm: int, vcpu: int) -> int:
        return HV_VERSION_VALUE

    def h_cpu_on(self, vm: int, vcpu: int, target: int, entry: int, context: int) -> int:
        """OFF -> ON_PENDING; the entry frame must be mapped executable for the caller."""
        if target >= self.C:
            return P_INV
        gfn = entry >> 12 & _GFN_MASK
        if gfn >= self.G or self.s2_flags[vm][gfn] & (VALID | HELD | 4) != VALID | 4:
            return P_INV_ADDR
        i = vm * self.C + target
        power = self.vcpu[i]
        if power == ON:
            return P_ALREADY_ON
        if power == ON_PENDING:
            return P_ON_PENDING
        self.vcpu[i] = ON_PENDING
        self.vcpu_entry[i] = entry
        self.vcpu_ctx[i] = context
        return 0

    def h_cpu_off(self, vm: int, vcpu: int) -> int:
        i = vm * self.C + vcpu
        self.vcpu[i] = OFF
        self.irq[i] = 0
        self.can[i] = 0
        return 0

    def h_affinity_info(self, vm: int, vcpu: int, target: int, level: int) -> int:
        if level != 0 or target >= self.C:
            return P_INV
        return AFFINITY[self.vcpu[vm * self.C + target]]

    def h_cpu_suspend(self, vm: int, vcpu: int, power_state: int, entry: int,
                      context: int) -> int:
        """Suspend is a no-op here (the vCPU is woken at once): 0, after the checks."""
        if power_state & _POWER_STATE_RESERVED:
            return P_INV
        gfn = entry >> 12 & _GFN_MASK
        flags = self.s2_flags[vm]
        if power_state >> 16 & 1 and (
                gfn >= self.G or flags is None or flags[gfn] & (VALID | HELD | 4) != VALID | 4):
            return P_INV_ADDR
        if power_state >> 16 & 1:  # a power-down resumes at entry, with the context id
            i = vm * self.C + vcpu
            self.vcpu_entry[i] = entry
            self.vcpu_ctx[i] = context
        return 0

    def h_migrate_info_type(self, vm: int, vcpu: int) -> int:
        return MIGRATE_INFO_TYPE_VALUE

    def h_system_off(self, vm: int, vcpu: int) -> int:
        """The VM's vCPUs all stop; the VM itself stays (the controller reclaims it)."""
        self._power_vm(vm, boot=False)
        return 0

    def h_system_reset(self, vm: int, vcpu: int) -> int:
        """The VM restarts on vCPU 0."""
        self._power_vm(vm, boot=True)
        return 0

    def h_system_reset2(self, vm: int, vcpu: int, reset_type: int, cookie: int) -> int:
        """Optional in PSCI 1.1, and not implemented here: SYSTEM_RESET does the job."""
        return PSCI["NOT_SUPPORTED"]

    def _power_vm(self, vm: int, boot: bool) -> None:
        C = self.C
        for c in range(C):
            self.vcpu[vm * C + c] = ON if boot and c == 0 else OFF
            self.irq[vm * C + c] = 0
        self._refresh_can(vm)

    def h_psci_features(self, vm: int, vcpu: int, fid: int) -> int:
        return 0 if fid in _FEATURES else PSCI["NOT_SUPPORTED"]

    def h_smccc_version(self, vm: int, vcpu: int) -> int:
        return SMCCC_VERSION_VALUE

    def h_smccc_arch_features(self, vm: int, vcpu: int, fid: int) -> int:
        # the erratum workarounds are not offered to guests: NOT_SUPPORTED, like any
        # function id that is no Arm architecture call this hypervisor implements
        return 0 if fid in _ARCH_CALLS else SMCCC["NOT_SUPPORTED"]

    def h_irq_ack(self, vm: int, vcpu: int, line: int) -> int:
        if line >= self.n_lines:
            return H_INV
        self.irq[vm * self.C + vcpu] &= ~(1 << line)
        return 0

    def h_dev_assign(self, vm: int, vcpu: int, dev: int, target: int) -> int:
        if dev >= self.D or not self._live(target):
            return H_INV
        if self.dev_owner[dev] != NONE:
            return H_DEN
        self.dev_owner[dev] = target
        return 0

    def h_dev_deassign(self, vm: int, vcpu: int, dev: int) -> int:
        """Detach; the device's line, still pending at the old owner, is withdrawn."""
        if dev >= self.D or self.dev_owner[dev] == NONE:
            return H_INV
        owner, C = self.dev_owner[dev], self.C
        keep = ~(1 << (dev + 1))
        for i in range(owner * C, owner * C + C):
            self.irq[i] &= keep
        self.dev_owner[dev] = NONE
        return 0

    # --- events -----------------------------------------------------------------------------
    def e_vcpu_start(self, vm: int, vcpu: int) -> None:
        if not (self._live(vm) and 0 <= vcpu < self.C):
            return
        i = vm * self.C + vcpu
        if self.vcpu[i] == ON_PENDING:
            self.vcpu[i] = ON
            self._refresh_can(vm)

    def e_device_irq(self, dev: int) -> None:
        if not 0 <= dev < self.D:
            return
        owner = self.dev_owner[dev]
        if owner != NONE:
            self.irq[owner * self.C] |= 1 << (dev + 1)

