"""SMCCC 1.3's SVE hint (bit 16 of a function id, DEN0028 2.5): an implementation of SMCCC
1.3 or later serves the call the other bits name; an earlier one, for which the bit is
reserved, answers NOT_SUPPORTED.  On the concrete spec, through the oracle (a 1.3 target
that honours the hint passes, one that refuses it is caught), and in the proofs."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import oracle
from spec import machine, mutants, prove, transitions
from spec import profile as spec_profile
from spec.hypercalls import abi, codec
from spec.state import Config, initial
from tests.conformance.test_firmware_oracle import FirmwareSpec

NOT_SUPPORTED = (1 << 64) - 1
SMCCC_13 = attrs.evolve(spec_profile.DEFAULT, smccc_version=0x10003)


def _state(profile: spec_profile.Profile):
    return initial(attrs.evolve(Config(), profile=profile))


@given(st.sampled_from(abi.TABLE), st.lists(st.integers(0, 3), min_size=7, max_size=7),
       st.sampled_from(["arm64", "x86_64"]))
def test_the_hint_names_the_same_call_from_smccc_13_and_no_call_before(row, args, conv):
    regs = codec.encode_call(row, tuple(args[: len(row.args)]), conv)
    hinted = {**regs, abi.CONVENTIONS[conv]["id"]: regs[abi.CONVENTIONS[conv]["id"]]
              | abi.SVE_HINT}
    decoded = codec.decode(hinted, conv)
    assert isinstance(decoded, codec.Call) and decoded.hinted and decoded.row == row
    s13, s11 = _state(SMCCC_13), _state(spec_profile.DEFAULT)
    assert machine.step(s13, 0, 0, hinted, conv) == machine.step(s13, 0, 0, regs, conv)
    s2, out = machine.step(s11, 0, 0, hinted, conv)
    assert s2 == s11 and out[abi.CONVENTIONS[conv]["result"][0]] == NOT_SUPPORTED


def test_other_reserved_bits_still_make_an_unknown_id():
    regs = codec.encode_call(abi.BY_NAME["PSCI_VERSION"], (), "arm64")
    for bit in range(17, 24):
        bad = {**regs, "x0": regs["x0"] | 1 << bit}
        assert isinstance(codec.decode(bad, "arm64"), codec.DecodeError)


class HintRefused(FirmwareSpec):
    """Planted: reports SMCCC 1.3 but treats the hint bit as reserved."""

    def hypercall(self, vm, vcpu, regs, conv="arm64"):
        if regs["x0"] & abi.SVE_HINT and (regs["x0"] & 0xFFFF_FFFF) ^ abi.SVE_HINT in abi.BY_ID:
            self.calls += 1
            return {"x0": NOT_SUPPORTED, "x1": 0, "x2": 0, "x3": 0}
        return super().hypercall(vm, vcpu, regs, conv)


def _hinted(name: str) -> dict[str, object]:
    return {"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
            "regs": {"x0": abi.BY_NAME[name].function_id | abi.SVE_HINT}}


def _plain(name: str) -> dict[str, object]:
    return {"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
            "regs": {"x0": abi.BY_NAME[name].function_id}}


@pytest.mark.parametrize("version", [0x10003, 0x10005])
def test_a_target_honouring_the_hint_passes_and_one_refusing_it_is_caught(version):
    prof = attrs.evolve(spec_profile.DEFAULT, smccc_version=version)
    ops = [_plain("SMCCC_VERSION"), _hinted("PSCI_VERSION"), _hinted("MIGRATE_INFO_TYPE")]
    assert oracle.replay(FirmwareSpec(prof), ops) is None
    bad = oracle.replay(HintRefused(prof), ops)
    assert bad is not None and bad.requirement == "abi:PSCI_VERSION"


def test_a_hinted_call_before_smccc_version_is_explained_by_the_version():
    """Asked first, a hinted call's answer narrows the SMCCC version: honoured means 1.3+,
    so a later SMCCC_VERSION of 1.1 is a contradiction the oracle catches."""
    ops = [_hinted("PSCI_VERSION"), _plain("SMCCC_VERSION")]
    assert oracle.replay(FirmwareSpec(SMCCC_13), ops) is None

    class Inconsistent(FirmwareSpec):
        def hypercall(self, vm, vcpu, regs, conv="arm64"):
            out = super().hypercall(vm, vcpu, regs, conv)
            return {**out, "x0": 0x10001} if regs["x0"] == 0x80000000 else out

    bad = oracle.replay(Inconsistent(SMCCC_13), ops)
    assert bad is not None and bad.requirement == "abi:SMCCC_VERSION"


def _hint_skips_privilege(orig):
    """Planted: under SMCCC 1.3 a hinted call goes straight to its handler, past the
    caller and privilege checks."""
    def apply(s, caller, call):
        if isinstance(call, codec.Call) and spec_profile.hint_honoured(s.cfg.profile) \
                and call.hinted:
            return transitions.HANDLERS[call.row.handler](s, caller, call.row, *call.args)
        return orig(s, caller, call)
    return apply


def test_the_proofs_cover_hinted_calls():
    """The obligations of a row are proved over its id with and without the hint, so a
    bug only a hinted id reaches is refuted (it would be proved if the proofs took the
    plain id alone)."""
    cfg = attrs.evolve(prove.PROOF_CONFIG, profile=SMCCC_13)
    only = {"lifecycle_by_control_only"}
    assert [r.status for r in prove.prove_target("VM_PAUSE", cfg, only=only)] == ["proved"]
    bug = mutants.Mutant("hint_skips_privilege", "apply", "VM_PAUSE",
                         "lifecycle_by_control_only", "hinted call bypasses privilege",
                         _hint_skips_privilege)
    with mutants.installed(bug):
        results = prove.prove_target("VM_PAUSE", cfg, only=only)
    assert [r.status for r in results] == ["failed"]


def test_before_smccc_13_a_hinted_id_is_unknown_whatever_its_arguments():
    """An unknown function id is NOT_SUPPORTED before any argument is looked at: reserved
    bits in a hinted call's arguments do not make it INVALID_PARAMETERS under SMCCC 1.1."""
    regs = codec.encode_call(abi.BY_NAME["EVTCHN_SEND"], (1 << 20,), "arm64")  # > 16 bits
    hinted = {**regs, "x0": regs["x0"] | abi.SVE_HINT}
    s11, s13 = _state(spec_profile.DEFAULT), _state(SMCCC_13)
    assert machine.step(s11, 0, 0, hinted, "arm64")[1]["x0"] == NOT_SUPPORTED
    assert machine.step(s13, 0, 0, hinted, "arm64")[1]["x0"] == (-2) & ((1 << 64) - 1)
