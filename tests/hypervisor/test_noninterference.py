"""The confidentiality obligations are not vacuous.

Self-composition compares two runs; if the second pre-state is (or can only be) the first
one, the obligation compares a run with itself and proves whatever the spec does.  That
happened once (``symbolic.fresh`` on a state already made of terms returns those terms), so
these tests guard the setting itself, apart from the proofs:

* syntactically, the second state's private slots are new terms over variables of their
  own, and its other slots are the first state's;
* semantically, for both obligations (``noninterference_confidential`` and ``..._named``)
  and every shape of call, the hypotheses are satisfiable together *and* allow the two
  states to differ, with a model that is a legitimate concrete pair.

The planted leaks in :mod:`spec.mutants` (tests/hypervisor/test_planted_bugs.py) show the
other direction: the obligation fails when a call does leak.
"""

import attrs
import pytest
import z3

from spec import invariants, logic, noninterference, prove, symbolic
from spec.hypercalls import abi
from spec.state import ABSENT, CONTROL, PAUSED, State, initial

CFG = prove.PROOF_CONFIG
CONV = "arm64"
# The hypotheses depend on the call only through who may make it and which arguments can
# name a VM; one row of each such shape keeps the guard quick and covers every case.
SHAPES = {(row.caller, tuple(a.kind for a in row.args if a.kind in ("vm", "vm_mask"))): row.name
          for row in reversed(abi.TABLE)}
ROWS = sorted(SHAPES.values())
FIELDS = [f.name for f in attrs.fields(State) if f.name != "cfg"]


def _two(target):
    setup = prove._setup(target, CFG, CONV)
    return setup, prove._two_states(setup, CFG, CONV)


def _differ(s, s2):
    return z3.Not(prove._b(symbolic.same(s, s2)))


def test_second_state_is_syntactically_new():
    setup, two = _two("EVTCHN_STATUS")
    s, s2 = setup.s, two.s2
    private = noninterference.private_slots(s, two.b)
    for name in private:
        for x, y in zip(getattr(s, name), getattr(s2, name), strict=True):
            assert not x.eq(y), name
            assert not z3.simplify(x == y).eq(z3.BoolVal(True)), name
    for name in set(FIELDS) - set(private):
        assert all(x is y for x, y in zip(getattr(s, name), getattr(s2, name), strict=True))
    # the independent state shares no variable with the first one
    mine = {str(x) for name in FIELDS for x in getattr(s, name)}
    other = prove._independent_state(CFG)
    assert not mine & {str(x) for name in FIELDS for x in getattr(other, name)}


@pytest.mark.parametrize("obligation", [prove.CONFIDENTIAL, prove.CONFIDENTIAL_NAMED])
@pytest.mark.parametrize("target", ROWS)
def test_hypotheses_satisfiable_with_different_secrets(target, obligation):
    setup, two = _two(target)
    solver = z3.SolverFor("QF_BV")
    solver.add(*setup.assumptions, *two.hypotheses(obligation), _differ(setup.s, two.s2))
    assert solver.check() == z3.sat
    # the same for what the proof assumes (the hypotheses, specialised to each victim)
    cases = [cond for cond, _ in prove._per_victim(two, obligation, z3.BoolVal(True), CFG)]
    solver = z3.SolverFor("QF_BV")
    solver.add(*setup.assumptions, z3.Or(*cases), _differ(setup.s, two.s2))
    assert solver.check() == z3.sat
    model = solver.model()
    s1 = prove.concretize(model, setup.s)
    s2 = prove.concretize(model, two.s2)
    a, b = (prove._value(model, x) for x in (two.a, two.b))
    named = prove._value(model, prove._named(setup, CONV, two.b))
    assert invariants.violated(s1) == [] and invariants.violated(s2) == []
    assert s1 != s2
    assert noninterference.with_private(
        s1, s2, b, noninterference.secret_slots(s1, a, b, named)) == s2
    assert noninterference.is_attacker(s1, a, b) and noninterference.is_attacker(s2, a, b)
    shared = noninterference.shared(s1, a, b)
    if obligation == prove.CONFIDENTIAL:
        assert not named and not shared and not noninterference.shared(s2, a, b)
        assert noninterference.with_private(s1, s2, b) == s2  # all b's private part
    else:
        assert named or shared


def test_guard_catches_an_aliased_second_state(monkeypatch):
    """With the old construction (the second state *is* the first) no model differs."""
    setup = prove._setup("EVTCHN_STATUS", CFG, CONV)
    monkeypatch.setattr(prove, "_independent_state", lambda cfg: setup.s)
    two = prove._two_states(setup, CFG, CONV)
    solver = z3.SolverFor("QF_BV")
    solver.add(*setup.assumptions, *two.hypotheses(), _differ(setup.s, two.s2))
    assert solver.check() == z3.unsat


def test_with_private_takes_only_the_victims_slots():
    cfg = CFG
    s = initial(cfg)
    other = s.evolve(vm_state=(7,) * cfg.n_vms, owner=(9,) * cfg.n_hframes,
                     ch_state=(5,) * (cfg.n_vms * cfg.n_ports))
    mixed = noninterference.with_private(s, other, 1)
    assert mixed.vm_state == tuple(7 if v == 1 else s.vm_state[v] for v in range(cfg.n_vms))
    assert mixed.owner == s.owner  # the frame pool is shared by construction
    P = cfg.n_ports
    assert mixed.ch_state == tuple(5 if i // P == 1 else 0 for i in range(cfg.n_vms * P))


def test_attacker_is_a_live_guest_other_than_the_victim():
    s = initial(CFG).evolve(vm_state=(1, 1, ABSENT))
    assert noninterference.is_attacker(s, 1, 2)
    assert not noninterference.is_attacker(s, CONTROL, 1)  # the control VM may see all
    assert not noninterference.is_attacker(s, 1, 1)
    assert not noninterference.is_attacker(s, 2, 1)  # absent
    assert not noninterference.is_attacker(s, CFG.n_vms, 1)  # no such VM
    assert noninterference.is_attacker(s.evolve(vm_state=(1, PAUSED, 1)), 1, 2)
    assert logic.is_sym(noninterference.is_attacker(s, z3.BitVec("a", 64), 2))
