"""The firmware shim's waiting rules, on a scripted machine (no QEMU): a CPU_OFF that
does not return is cut short only when the platform shows the vCPU OFF."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import firmware_target as ft
from conformance.guest_machine import CpuState, NoReturn, Returned, StartRecord
from spec.campaign import FIRMWARE_CONFIG
from spec.state import Config

CPU_OFF, AFFINITY_INFO_64 = 0x84000002, 0xC4000004


class ScriptedMachine:
    """Answers CPU_OFF with no return and AFFINITY_INFO with ``affinity``; records waits."""

    calls_at_once = False

    def __init__(self, affinity: int | None, vcpu0_serving: bool = True) -> None:
        self.affinity, self.vcpu0_serving = affinity, vcpu0_serving
        self.log: list[tuple[str, Any]] = []
        self.alive = True

    def started(self, cpu: int) -> StartRecord | None:
        return None

    def serving(self, cpu: int) -> bool:
        return cpu != 0 or self.vcpu0_serving

    def call(self, cpu: int, regs: list[int], timeout: float | None = None) -> Any:
        self.log.append(("call", (cpu, regs[0], timeout)))
        if regs[0] == AFFINITY_INFO_64 and self.affinity is not None:
            return Returned((self.affinity, 0, 0, 0, 0, 0, 0, 0))
        return NoReturn(CpuState.DONE)

    def wait_pending(self, cpu: int, timeout: float | None = None) -> Any:
        self.log.append(("wait_pending", (cpu, timeout)))
        return NoReturn(CpuState.DONE)

    def stop(self) -> None:
        pass


class Shim(ft.FirmwareTarget):
    def __init__(self, machine: ScriptedMachine) -> None:
        super().__init__()
        self.machine = machine

    def _fresh(self, config: Config) -> Any:
        return self.machine


@pytest.mark.parametrize(("affinity", "serving", "waited"), [
    (1, True, False),      # OFF: settled, no full wait
    (0, True, True),       # still ON (a target that neither returns nor powers off)
    (None, True, True),    # the probe did not answer
    (1, False, True),      # vCPU 0 cannot ask
])
def test_cpu_off_wait_is_cut_short_only_on_an_observed_off(
        affinity: int | None, serving: bool, waited: bool) -> None:
    m = ScriptedMachine(affinity, serving)
    t = Shim(m)
    t.reset(FIRMWARE_CONFIG)
    assert t.hypercall(0, 1, {"x0": CPU_OFF}) == {"returned": 0}
    first = m.log[0]
    assert first == ("call", (1, CPU_OFF, ft.OFF_GLANCE))
    assert (("wait_pending", (1, ft.NO_RETURN_WAIT)) in m.log) == waited
    probed = [e for e in m.log if e[0] == "call" and e[1][1] == AFFINITY_INFO_64]
    assert bool(probed) == serving


class SettlingMachine(ScriptedMachine):
    """A machine that can settle a suspend (``settles_suspends``): records ``settle``."""

    settles_suspends = True

    def call(self, cpu: int, regs: list[int], timeout: float | None = None,
             settle: float | None = None) -> Any:
        self.log.append(("settle", settle))
        return super().call(cpu, regs, timeout)


@pytest.mark.parametrize(("fid", "settled"), [
    (0xC4000001, True), (0x84000001, True),  # CPU_SUSPEND (SMC64, SMC32)
    (0x84000000, False), (0xC4000004, False),  # PSCI_VERSION, AFFINITY_INFO: no settling
])
def test_only_suspends_ask_to_be_settled(fid: int, settled: bool) -> None:
    """A suspend on a machine that settles_suspends is given up on at SUSPEND_SETTLE in
    the hypervisor (still bounded by SUSPEND_WAIT); every other call waits as before."""
    m = SettlingMachine(1)
    t = Shim(m)
    t.reset(FIRMWARE_CONFIG)
    t.hypercall(0, 0, {"x0": fid})
    assert ("settle", ft.SUSPEND_SETTLE if settled else None) in m.log
    wait = ft.SUSPEND_WAIT if settled else ft.ANSWER_WAIT
    assert ("call", (0, fid, wait)) in m.log
