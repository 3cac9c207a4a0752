"""The oracle's workload reaches the cases that matter, and a run says what it reached."""

from __future__ import annotations

from conformance import oracle
from conformance.reach import Reach, unmet_floors
from conformance.runner import run_conformance
from conformance.target import ReferenceTarget


def test_ci_profile_meets_every_reach_floor() -> None:
    out = oracle.run_oracle(ReferenceTarget(), profile="ci")
    assert out.status == "passed"
    assert out.reach is not None
    assert unmet_floors(out.reach) == []


def test_floors_can_fail() -> None:
    """A workload cut short falls below the floors, and says where."""
    out = oracle.run_oracle(ReferenceTarget(), profile="ci", max_examples=1, program=2)
    assert out.reach is not None
    missing = unmet_floors(out.reach)
    assert any("never succeeded" in m for m in missing)
    assert any("transaction with 2 borrower(s)" in m for m in missing)
    assert unmet_floors(Reach())  # nothing reached: every floor unmet


def test_report_carries_reach(tmp_path) -> None:
    rep = run_conformance("reference", report_dir=str(tmp_path),
                          scenario_filter=lambda sc: False, max_examples=5)
    reach = rep.to_dict()["reach"]
    assert reach["rows"]["PSCI_VERSION"]["sent"] >= 1
    assert "features" in reach and "fields" in reach
