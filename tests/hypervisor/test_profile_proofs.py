"""Every obligation proved for every allowed answer of every implementation choice
(spec/profile.py), one dimension at a time, on the calls whose answer depends on it; and a
wrongly widened allowed set is refuted by a proof."""

from __future__ import annotations

import attrs
import pytest

from spec import profile as spec_profile
from spec import prove

CASES = [(dim.name, value, row)
         for dim in spec_profile.DIMENSIONS for value in dim.values[1:]
         for row in sorted(dim.rows) if row != spec_profile.HINTED]


@pytest.mark.parametrize("name,value,row", CASES,
                         ids=[f"{n}={spec_profile.render_value(v)}:{r}" for n, v, r in CASES])
def test_every_allowed_choice_keeps_every_obligation(name: str, value: object, row: str
                                                     ) -> None:
    prof = spec_profile.with_value(spec_profile.DEFAULT, name, value)
    results = prove.prove_target(row, attrs.evolve(prove.PROOF_CONFIG, profile=prof))
    bad = [(r.invariant, r.status) for r in results if r.status != "proved"]
    assert results and not bad


def test_a_wrongly_widened_allowed_set_is_refuted() -> None:
    """An SMCCC version with bit 31 set reads as an error code in w0: a profile allowing it
    must fail the firmware_results_well_formed obligation, with a counterexample."""
    prof = attrs.evolve(spec_profile.DEFAULT, smccc_version=0x8000_0001)
    results = prove.prove_target("SMCCC_VERSION",
                                 attrs.evolve(prove.PROOF_CONFIG, profile=prof))
    failed = {r.invariant for r in results if r.status == "failed"}
    assert failed == {"firmware_results_well_formed"}
