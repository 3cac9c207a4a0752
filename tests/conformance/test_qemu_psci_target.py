"""QEMU's own PSCI judged by the oracle (``--target qemu-psci``): a short campaign whose
verdict is exact -- QEMU's known deviations (docs/findings.md Q1-Q3) and nothing else --
and a planted bug in the shim (one misreported answer) is caught."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from _machines import campaign

from conformance.qemu_psci_target import QemuPsciTarget, available, double_cpu_on

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_qemu_psci_is_judged_and_shows_only_its_known_deviations() -> None:
    out: Any = campaign(QemuPsciTarget(), 8)
    # a deviation QEMU shows is a result, not a test failure (docs/findings.md): the run
    # must end in a verdict on a PSCI/SMCCC requirement, never in an error
    assert out.status in ("passed", "failed"), out.error
    if out.failure is not None:
        assert out.failure.requirement.startswith("abi:"), out.failure
    assert set(out.deviations) <= {"Q1", "Q2", "Q3"}
    for row in ("PSCI_VERSION", "PSCI_FEATURES", "CPU_ON", "AFFINITY_INFO",
                "SMCCC_VERSION", "MIGRATE_INFO_TYPE"):
        assert f"abi:{row}" in out.judged, row


class MisreportsVersion(QemuPsciTarget):
    """The shim reports PSCI 1.2 after QEMU said 1.1: the harness must catch it."""

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        out = super().hypercall(vm, vcpu, regs, conv)
        if regs.get("x0", 0) & 0xFFFF_FFFF == 0x84000000:
            out = {**out, "x0": 0x10002}
        return out


def test_a_planted_misreport_is_caught() -> None:
    out: Any = campaign(MisreportsVersion(), 8)
    assert out.status == "failed"
    assert out.failure is not None and out.failure.requirement == "abi:PSCI_VERSION"


def test_q3_double_cpu_on_is_still_there() -> None:
    """Q3 is timing-dependent: measured over N fresh machines (16 of 50 on the machine it
    was found on).  At least one of 40 must show it (chance of none at that rate: ~1e-7);
    this test fails once QEMU makes CPU_ON atomic, and docs/findings.md must then change."""
    n = 40
    hits = double_cpu_on(n)
    print(f"Q3: both CPU_ON calls succeeded in {hits} of {n} trials")
    assert hits >= 1


class ReportsAnotherContext(QemuPsciTarget):
    """The shim reports a started vCPU's context id with one bit flipped: the start check
    (PSCI 5.1.4: the core starts with context_id in x0) must catch it."""

    def _new_start(self, m: object, vcpu: int) -> dict[str, int] | None:
        start = super()._new_start(m, vcpu)
        return None if start is None else {**start, "start_context": start["start_context"] ^ 4}


def test_a_wrong_start_context_is_caught() -> None:
    out: Any = campaign(ReportsAnotherContext(), 8)
    assert out.status == "failed"
    assert out.failure is not None and out.failure.requirement == "abi:CPU_ON"
    assert out.failure.kind == "observation" and "starts at" in out.failure.expected


def test_the_report_states_q3_as_a_count() -> None:
    """A timing-dependent finding is reported as k of N trials, never as one run's luck."""
    [check] = QemuPsciTarget().statistical_checks(10)
    assert check.id == "statistics:Q3" and "of 10 trials" in check.detail
    if str(check.status) == "failed":
        assert check.judged == ("abi:CPU_ON",) and check.failure is not None
    else:  # not seen in 10 trials: reported, never credited as passed
        assert str(check.status) == "not-judged" and check.judged == ()
