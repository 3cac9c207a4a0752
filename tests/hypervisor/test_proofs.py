"""Every invariant is inductive for every hypercall and event; the initial state is sound."""

import pytest

from spec import prove


def test_initial_state_satisfies_every_invariant():
    assert all(r.status == "proved" for r in prove.initial_state_results())


@pytest.mark.parametrize("target", prove.targets())
def test_transition_preserves_everything(target, tmp_path):
    results = prove.prove_target(target, cex_dir=str(tmp_path))
    bad = [(r.invariant, r.status, r.counterexample) for r in results if r.status != "proved"]
    assert not bad
    assert len(results) >= 20 or target not in {r.name for r in prove.abi.TABLE}
