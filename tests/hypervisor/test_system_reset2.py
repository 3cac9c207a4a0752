"""PSCI 1.1 SYSTEM_RESET2 (DEN0022 5.1.11): optional, a warm reset or a vendor type, and
what each profile choice makes of it -- on the concrete spec, and a planted bug (a
reserved architectural reset type that resets anyway) refuted by the proof of its
postcondition."""

from __future__ import annotations

import attrs
import pytest

from spec import machine, mutants, prove
from spec import profile as spec_profile
from spec.hypercalls import abi, codec
from spec.state import OFF, ON, Config, initial
from spec.transitions import Caller

CFG = Config()
NOT_SUPPORTED, INVALID = -1 & (2**64 - 1), -2 & (2**64 - 1)
FEATURES = abi.BY_NAME["PSCI_FEATURES"]


def _booted(system_reset2: int | None):
    """The boot state with VM 0's second vCPU ON too (so a reset visibly stops it)."""
    cfg = attrs.evolve(CFG, profile=attrs.evolve(spec_profile.DEFAULT,
                                                 system_reset2=system_reset2))
    s = initial(cfg)
    return s.evolve(vcpu=tuple(ON if i == s.vc(0, 1) else v for i, v in enumerate(s.vcpu)))


def _call(s, name, *args):
    row = abi.BY_NAME[name]
    s2, out = machine.step(s, 0, 0, codec.encode_call(row, args, "arm64"))
    return s2, out["x0"]


@pytest.mark.parametrize("name", ["SYSTEM_RESET2", "SYSTEM_RESET2_32"])
def test_not_implemented_by_default_and_features_agree(name):
    s = _booted(None)
    s2, ret = _call(s, name, 0, 0)
    assert (s2, ret) == (s, NOT_SUPPORTED)
    assert _call(s, "PSCI_FEATURES", abi.BY_NAME[name].function_id)[1] == NOT_SUPPORTED


@pytest.mark.parametrize("vendor", [0, -2, -1])
@pytest.mark.parametrize("name", ["SYSTEM_RESET2", "SYSTEM_RESET2_32"])
def test_implemented(name, vendor):
    s = _booted(vendor)
    assert _call(s, "PSCI_FEATURES", abi.BY_NAME[name].function_id)[1] == 0
    warm, ret = _call(s, name, 0, 0xDEAD)
    assert ret == 0 and warm.vcpu[s.vc(0, 0)] == ON and warm.vcpu[s.vc(0, 1)] == OFF
    for reserved in (1, 0x7FFF_FFFF):  # architectural types other than warm reset
        assert _call(s, name, reserved, 0) == (s, INVALID)
    after, ret = _call(s, name, 0x8000_0001, 0)
    if vendor == 0:
        assert (after, ret) == (warm, 0)
    else:
        assert (after, ret) == (s, vendor & (2**64 - 1))


def _resets_reserved_types(orig):
    """Planted: any architectural reset type resets (only SYSTEM_WARM_RESET may)."""
    def bug(s, me: Caller, row, reset_type, cookie):
        s2, ret = orig(s, me, row, reset_type, cookie)
        return (orig(s, me, row, 0, cookie) if ret == abi.PSCI_ERRORS["INVALID_PARAMETERS"]
                & (2**64 - 1) else (s2, ret))
    return bug


def test_a_reset_of_a_reserved_type_is_refuted_by_the_postcondition():
    cfg = attrs.evolve(prove.PROOF_CONFIG,
                       profile=attrs.evolve(spec_profile.DEFAULT, system_reset2=0))
    assert all(r.status == "proved"
               for r in prove.prove_target("SYSTEM_RESET2", cfg, only={"post_system_reset2"}))
    bug = mutants.Mutant("reset2_reserved_type", "system_reset2", "SYSTEM_RESET2",
                         "post_system_reset2", "reserved reset type accepted",
                         _resets_reserved_types)
    with mutants.installed(bug):
        results = prove.prove_target("SYSTEM_RESET2", cfg, only={"post_system_reset2"})
    assert [r.status for r in results] == ["failed"]
    assert results[0].counterexample is not None
