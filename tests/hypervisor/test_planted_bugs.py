"""Every invariant and step property can fail: each planted bug is caught twice.

1. The Z3 proof of the mutated hypercall fails on the rule the mutant targets, and its
   counterexample replays on the concrete spec, breaking the same rule.
2. The Hypothesis state machine, driving the concrete spec, finds a sequence that breaks
   the same rule (and shrinks it).
"""

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from spec import campaign, invariants, mutants, prove, replay

IDS = [m.name for m in mutants.MUTANTS]


def test_every_rule_has_a_planted_bug():
    caught = {m.catches for m in mutants.MUTANTS}
    rules = {i.name for i in invariants.INVARIANTS} | {p.name for p in invariants.STEP_PROPERTIES}
    rules |= {"noninterference_unchanged"}
    assert rules <= caught, f"no planted bug for {sorted(rules - caught)}"


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=IDS)
def test_proof_catches(mutant):
    with mutants.installed(mutant):
        results = prove.prove_target(mutant.target, only={mutant.catches})
        assert [r.status for r in results] == ["failed"], results
        case = results[0].counterexample
        assert case is not None
        if mutant.catches.startswith("noninterference"):
            return  # a two-VM property; its counterexample names the observer instead
        replayed = {v.name for v in replay.run_case(case)}
    assert mutant.catches in replayed, (case, replayed)
    # and with the bug gone, the same case breaks nothing
    assert mutant.catches not in {v.name for v in replay.run_case(case)}


SINGLE_VM_RULES = [m for m in mutants.MUTANTS if not m.catches.startswith("noninterference")]


@pytest.mark.parametrize("mutant", SINGLE_VM_RULES, ids=lambda m: m.name)
def test_state_machine_catches(mutant):
    # No shrink phase here: finding the bug is the point, and the failure message already
    # carries the whole trace (shrinking is exercised by the conformance suite).
    quick = settings(max_examples=300, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    with mutants.installed(mutant), pytest.raises(campaign.StepFailure) as info:
        run_state_machine_as_test(campaign.make_machine(), settings=quick)
    assert any(name in str(info.value) for name in mutant.accepted), str(info.value)[:500]
