"""Linux KVM/arm64's PSCI judged by the oracle (``--target kvm-arm64``): a short campaign on
one kernel boot (a fresh KVM VM per example) ends in a verdict on PSCI/SMCCC requirements
with no deviation but the known one (docs/findings.md K1), and a planted misreport in the
shim is caught."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from _machines import campaign

from conformance import oracle
from conformance.kvm_psci_target import KvmPsciTarget, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


class MisreportsAffinity(KvmPsciTarget):
    """The shim says OFF where KVM said ON: the harness must catch it."""

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        out = super().hypercall(vm, vcpu, regs, conv)
        if regs.get("x0", 0) & 0xFFFF_FFFF in (0x84000004, 0xC4000004) and out.get("x0") == 0:
            out = {**out, "x0": 1}
        return out


@pytest.fixture(scope="module")
def kvm() -> KvmPsciTarget:
    t = KvmPsciTarget()
    yield t
    t.close()


def test_kvm_psci_is_judged_and_shows_only_its_known_deviation(kvm: KvmPsciTarget) -> None:
    out = oracle.run_oracle(kvm, max_examples=4)
    assert out.status in ("passed", "failed"), out.error
    if out.failure is not None:  # a deviation is a result (docs/findings.md), not a crash
        assert out.failure.requirement.startswith("abi:"), out.failure
    assert set(out.deviations) <= {"K1"}
    for row in ("PSCI_VERSION", "CPU_ON", "AFFINITY_INFO"):
        assert f"abi:{row}" in out.judged, row


def test_a_planted_misreport_is_caught() -> None:
    out: Any = campaign(MisreportsAffinity(), 2)
    assert out.status == "failed"
    assert out.failure is not None and out.failure.requirement.startswith("abi:AFFINITY_INFO")
