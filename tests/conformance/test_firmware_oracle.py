"""The oracle on firmware targets (PSCI and SMCCC only, one guest): implementation-defined
answers are learned once and then held (spec/profile.py), and real bugs are still caught.

The targets here are the spec itself under another profile, run in process, powering
vCPUs on by itself (asynchronously); the planted bugs sit in its answers.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import pytest

from conformance import oracle
from conformance.target import SpecTarget
from spec import campaign, machine
from spec import profile as spec_profile
from spec.hypercalls import abi
from spec.state import Config, initial

NEVER_RETURN = frozenset(r.function_id for r in abi.TABLE if r.never_returns)
LOOSE = spec_profile.Profile(psci_version=0x10000, smccc_version=0x10003,
                             migrate_info_type=None, workarounds=(0, 1, -1),
                             affinity_levels=3, entry_check=False)


class FirmwareSpec(SpecTarget):
    """The spec as a firmware target with profile ``prof``; ``bug`` rewrites answers."""

    name = "firmware-spec"
    capabilities = frozenset({"hypercall", "no_return"})

    def __init__(self, prof: spec_profile.Profile, bug: str = "") -> None:
        super().__init__()
        self.prof, self.bug, self.calls = prof, bug, 0
        self.profile = {"abis": "psci,smccc", "power_on": "async"}

    def reset(self, config: Config) -> None:
        self.state = campaign.with_image(initial(attrs.evolve(config, profile=self.prof)))
        self.calls = 0

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        s = self.state
        for c in range(s.cfg.n_vcpus):  # a pending vCPU starts before the next call
            if s.vcpu[s.vc(vm, c)] == 1:
                self.state = machine.event(self.state, "VCPU_START", vm, c)
        before = self.state
        fid = regs["x0"] & 0xFFFF_FFFF
        out = super().hypercall(vm, vcpu, regs, conv)
        self.calls += 1
        if self.bug == "changes-its-mind" and fid == 0x80000000 and self.calls > 200:
            out = {**out, "x0": 0x10002}
        elif self.bug == "features-claim-absent-call" and fid == 0x8400000A \
                and regs["x1"] & 0xFFFF_FFFF == 0x84000006:
            out = {**out, "x0": 0}
        elif self.bug == "affinity-off-while-on" and fid in (0x84000004, 0xC4000004) \
                and out["x0"] == 0:
            out = {**out, "x0": 1}
        elif self.bug == "system-off-returns" and fid == 0x84000008:
            self.state = before
        elif self.bug == "cpu-on-twice" and fid in (0x84000003, 0xC4000003) and \
                out["x0"] in ((-4) & (2**64 - 1), (-5) & (2**64 - 1)):
            out = {**out, "x0": 0}
        if fid in NEVER_RETURN and out["x0"] == 0 and not (
                self.bug == "system-off-returns" and fid == 0x84000008):
            return {"returned": 0}
        return out


def _run(target: FirmwareSpec) -> oracle.OracleOutcome:
    return oracle.run_oracle(target, max_examples=25)


def test_an_implementation_choosing_otherwise_passes_and_is_held_to_its_choices() -> None:
    out = _run(FirmwareSpec(LOOSE))
    assert out.status == "passed", out.failure
    for row in ("PSCI_FEATURES", "SMCCC_VERSION", "SMCCC_ARCH_FEATURES", "MIGRATE_INFO_TYPE",
                "CPU_ON", "AFFINITY_INFO", "SYSTEM_OFF", "SYSTEM_RESET", "CPU_ON_32"):
        assert f"abi:{row}" in out.judged, row


def test_the_default_profile_passes() -> None:
    assert _run(FirmwareSpec(spec_profile.DEFAULT)).status == "passed"


@pytest.mark.parametrize("bug,requirement", [
    ("changes-its-mind", "abi:SMCCC_VERSION"),
    ("features-claim-absent-call", None),
    ("affinity-off-while-on", None),
    ("system-off-returns", "abi:SYSTEM_OFF"),
    ("cpu-on-twice", None),
])
def test_planted_firmware_bugs_are_caught(bug: str, requirement: str | None) -> None:
    out = _run(FirmwareSpec(LOOSE, bug))
    assert out.status == "failed", bug
    assert out.failure is not None
    if requirement is not None:
        assert out.failure.requirement == requirement


# Linux KVM/arm64's answers (docs/findings.md): SMCCC 1.1, the SMCCC_ARCH_FEATURES
# self-query refused, SYSTEM_RESET2 with vendor reset types that reset
KVM_LIKE = spec_profile.Profile(workarounds=(1, -1, -1), affinity_levels=3,
                                entry_check=False, arch_features_self=-1, system_reset2=0)


def _fw(name: str, *args: int) -> dict[str, object]:
    row = abi.BY_NAME[name]
    return {"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
            "regs": {"x0": row.function_id, **{f"x{i + 1}": a for i, a in enumerate(args)}}}


def test_an_answer_two_choices_explain_pins_neither() -> None:
    """SMCCC_ARCH_FEATURES(SMCCC_ARCH_FEATURES) = NOT_SUPPORTED is SMCCC 1.0 or a refused
    self-query: asked before SMCCC_VERSION, it must not pin SMCCC 1.0 (a KVM run failed
    on the SMCCC_VERSION that followed, when the dimensions were narrowed one by one)."""
    ops = [_fw("SMCCC_ARCH_FEATURES", 0x80000001), _fw("SMCCC_VERSION"),
           _fw("SMCCC_ARCH_FEATURES", 0x80000001), _fw("SYSTEM_RESET2", 0x8000_0002, 0)]
    assert oracle.replay(FirmwareSpec(KVM_LIKE), ops) is None
    # still held to its answers: refusing the self-query, then answering it, is caught
    fickle = [*ops[:2], _fw("SMCCC_ARCH_FEATURES", 0x80000001)]
    bad = oracle.replay(Fickle(KVM_LIKE), fickle)
    assert bad is not None and bad.requirement == "abi:SMCCC_ARCH_FEATURES"


class Fickle(FirmwareSpec):
    """Refuses the SMCCC_ARCH_FEATURES self-query once, then answers it (0)."""

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        out = super().hypercall(vm, vcpu, regs, conv)
        if regs["x0"] == 0x80000001 and regs.get("x1") == 0x80000001 and self.calls > 1:
            out = {**out, "x0": 0}
        return out


def test_a_kvm_like_profile_passes_and_system_reset2_is_judged() -> None:
    out = _run(FirmwareSpec(KVM_LIKE))
    assert out.status == "passed", out.failure
    assert {"abi:SYSTEM_RESET2", "abi:SYSTEM_RESET2_32"} <= out.judged
