"""Linux KVM/arm64's PSCI as a conformance target (``--target kvm-arm64[:nvhe|:protected]``):
Debian's arm64 kernel booted under QEMU's TCG with ``kvm-arm.mode=nvhe`` or ``protected``,
a static init of ours creating a KVM VM that runs the guest agent
(:class:`~conformance.kvm_psci.KvmPsciMachine`), behind the shim of
:mod:`conformance.firmware_target`.  The kernel boots once (about 4 s); a reset makes a
fresh KVM VM inside it (about 0.1 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from conformance.firmware_target import FirmwareTarget
from conformance.kvm_psci import KvmPsciMachine, missing_prerequisites
from conformance.results import KnownDeviation
from spec.state import Config

__all__ = ["KNOWN_DEVIATIONS", "KvmPsciTarget", "available"]

_INVALID = (-2) & ((1 << 64) - 1)
_RESERVED = 0xFFFF_FFFF & ~(0xFFFF | 1 << 16 | 3 << 24)  # original power_state format


def _k1(decoded: object, regs: Mapping[str, int], ret: int, got: Mapping[str, int]) -> bool:
    power_state = decoded.args[0]  # type: ignore[attr-defined]
    return bool(power_state & _RESERVED) and ret == _INVALID and got.get("returned") == 0


# Linux 6.1's deviations, each in docs/findings.md with its clause and minimal trace
KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    KnownDeviation(
        "K1", "CPU_SUSPEND ignores power_state: reserved bits set still suspend",
        "abi:CPU_SUSPEND", frozenset({"CPU_SUSPEND", "CPU_SUSPEND_32"}),
        "PSCI DEN0022 5.1.2, 5.4.2 (original power_state format, as PSCI_FEATURES(CPU_SUSPEND)"
        " = 0 declares: bits 31:26 and 23:17 are reserved, zero; an invalid power_state is "
        "INVALID_PARAMETERS)",
        "x0 = -2 (INVALID_PARAMETERS)", "the vCPU suspends (the call does not return)", _k1,
        ({"op": "hypercall", "vm": 0, "vcpu": 1, "conv": "arm64",
          "regs": {"x0": "0xc4000001", "x1": "0x80000000", "x2": "0x1000", "x3": "0x0"},
          "call": "CPU_SUSPEND(power_state=0x80000000, entry=0x1000, context=0x0)",
          "expect": "-2 (INVALID_PARAMETERS)"},)),
)


def available() -> str | None:
    """None if the outer QEMU, the cross compiler and the fetched kernel are there."""
    return missing_prerequisites()


class KvmPsciTarget(FirmwareTarget):
    """KVM's PSCI for one guest VM with ``n_vcpus`` vCPUs."""

    known_deviations = KNOWN_DEVIATIONS

    def __init__(self, mode: Literal["nvhe", "protected"] = "nvhe", call_timeout: float = 5.0
                 ) -> None:
        super().__init__(call_timeout)
        self.mode = mode
        self.name = f"kvm-arm64:{mode}"

    def _new_machine(self, config: Config) -> KvmPsciMachine:
        return KvmPsciMachine(config.n_vcpus, mode=self.mode, call_timeout=self._call_timeout)

    def _fresh(self, config: Config) -> KvmPsciMachine:
        """A fresh KVM VM in the running kernel when there is one of the right size; else
        a new boot."""
        m = self._machine
        if isinstance(m, KvmPsciMachine) and m.kernel_alive and m.cpus == config.n_vcpus:
            m.reset_vm()
            return m
        fresh: KvmPsciMachine = super()._fresh(config)
        return fresh
