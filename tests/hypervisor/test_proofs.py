"""Every invariant is inductive for every hypercall and event; the initial state is sound."""

import attrs
import pytest

from spec import prove, symbolic


def test_initial_state_satisfies_every_invariant():
    results = prove.initial_state_results()
    assert all(r.status == "proved" for r in results)
    # every rule with a quantified reading holds at boot for every size
    assert {r.invariant for r in results if r.bounded} == {"frames_counted"}


@pytest.mark.parametrize("cfg", prove.REFUTE_CONFIGS, ids=lambda c: str(c.sizes()))
def test_boot_state_at_the_corners(cfg):
    """At the corners of the size domain too the boot state has each table's shape and is
    sound: a table with no columns (no guest frames, no ports) has no slots, not one per
    VM (the bug the corners' refutation pass found in spec.state.initial)."""
    from spec import invariants
    from spec.state import SHAPES, initial

    s = initial(cfg)
    for name, (rows, cols) in SHAPES.items():
        width = 1 if cols is None else getattr(cfg, cols)
        assert len(getattr(s, name)) == getattr(cfg, rows) * width, name
    assert invariants.violated(s) == []


def test_boot_state_proof_for_every_size_can_fail(monkeypatch):
    """Without the size domain's bound on the control VM's quota (what this proof found
    missing), the boot state breaks well_formed at some size; the bounded model's boot
    state, whose quota is within its frames, does not."""
    real = symbolic.size_domain
    monkeypatch.setattr(symbolic, "size_domain",
                        lambda sizes: real({**sizes, "control_quota": 0}))
    results = {r.invariant: r for r in prove.initial_state_results()}
    assert results["well_formed"].status == "failed"
    assert not results["well_formed"].bounded
    assert "fails at sizes" in results["well_formed"].detail
    assert prove.initial_state_results(every_size=False)[0].status == "proved"


@pytest.mark.parametrize("target", prove.targets())
def test_transition_preserves_everything(target, tmp_path):
    # (the larger-model pass only ever turns a proof into a refutation: the planted bugs
    # past the bound show it, test_planted_bugs.py; the correct spec needs no such pass)
    results = prove.prove_target(target, cex_dir=str(tmp_path), refute=False)
    bad = [(r.invariant, r.status, r.counterexample) for r in results if r.status != "proved"]
    assert not bad
    assert len(results) >= 20 or target not in {r.name for r in prove.abi.TABLE}


def test_contradictory_hypotheses_make_a_vacuous_proof_not_a_proved_one(monkeypatch):
    """A planted contradiction among the hypotheses (the caller is VM 0 and VM 1) proves
    every goal; the satisfiability check reports those obligations vacuous instead."""
    real = prove._setup

    def contradictory(*args, **kwargs):
        setup = real(*args, **kwargs)
        vm = setup.caller.vm
        return attrs.evolve(setup, assumptions=[*setup.assumptions, vm == 0, vm == 1])

    monkeypatch.setattr(prove, "_setup", contradictory)
    only = {"well_formed", "post_vm_pause", "noninterference_unchanged"}
    results = prove.prove_target("VM_PAUSE", only=only)
    assert results and {r.status for r in results} == {"vacuous"}, results


def test_frame_rule_reads_and_untouched():
    """A path that leaves a rule's tables as they were needs no proof; the tables a rule
    reads are found from its formula, and a replaced table counts as touched."""
    from spec.state import initial

    assert prove._reads("frames_counted") == {"owned", "owner"}
    assert prove._reads("quota_respected") == {"owned", "quota"}
    s = initial(prove.PROOF_CONFIG)
    fields = prove._reads("frames_counted")
    assert prove._untouched(s, s.evolve(quota=(9,) * 3), fields)
    assert not prove._untouched(s, s.evolve(owner=tuple(list(s.owner))), fields)
    u, _ = symbolic.unbounded(prove.PROOF_CONFIG)
    moved = u.evolve(owned=u.owned.like(u.owned.arr))  # the same array: untouched
    assert prove._untouched(u, moved, fields)
    assert not prove._untouched(u, u.evolve(owner=symbolic.unbounded_like(u, "x").owner),
                                fields)
