"""The confidentiality obligations are not vacuous.

Self-composition compares two runs; if the second pre-state is (or can only be) the first
one, the obligation compares a run with itself and proves whatever the spec does.  That
happened once (``symbolic.fresh`` on a state already made of terms returns those terms),
and later a new per-VM field (a vCPU's start entry and context) was silently public,
so these tests guard the setting itself, apart from the proofs:

* every state field is classified: another VM's private table, a public allocator, or a
  device table keyed by owner; and every private slot is in its owner's view alone;
* syntactically, the second state's secret slots are new terms over variables of their
  own, and its other slots are the first state's;
* semantically, for both obligations (``noninterference_confidential`` and ``..._named``)
  and every shape of call, the hypotheses are satisfiable together *and* allow the two
  states to differ, in every secret field, with a model that is a legitimate concrete
  pair.

The planted leaks in :mod:`spec.mutants` (tests/hypervisor/test_planted_bugs.py) show the
other direction: the obligation fails when a call does leak.
"""

import functools

import attrs
import pytest
import z3

from spec import invariants, logic, noninterference, prove, symbolic
from spec.hypercalls import abi
from spec.state import ABSENT, CONTROL, NONE, PAUSED, RUNNING, State, initial

CFG = prove.PROOF_CONFIG
CONV = "arm64"
# The hypotheses depend on the call only through who may make it and which arguments can
# name a VM; one row of each such shape keeps the guard quick and covers every case.
SHAPES = {(row.caller, tuple(a.kind for a in row.args if a.kind in ("vm", "vm_mask"))): row.name
          for row in reversed(abi.TABLE)}
ROWS = sorted(SHAPES.values())
FIELDS = [f.name for f in attrs.fields(State) if f.name != "cfg"]
SECRET_FIELDS = [*noninterference.PER_VM, *noninterference.KEYED]
# Secret, but a function of the public tables and the other secrets (an owner's entry is
# held exactly when its frame is in a live lend or donation: lent_frames_unreachable_by_owner),
# so it cannot differ on its own.
DERIVED = {"s2_held"}


@functools.cache
def _two(target):
    setup = prove._setup(target, CFG, CONV)
    return setup, prove._two_states(setup, CONV)


def _differ(s, s2):
    return z3.Not(prove._b(symbolic.same(s, s2)))


def _cases(setup, two, obligation):
    """What the proof assumes: the hypotheses, specialised to each attacker."""
    return [*setup.assumptions,
            z3.Or(*[c for c, _ in prove._per_attacker(two, obligation, z3.BoolVal(True), CFG)])]


def test_every_field_is_classified():
    """A new state field must be declared private, public or keyed: left out, it would be
    equal in both runs, so a leak of it could never be seen."""
    per_vm, public = set(noninterference.PER_VM), set(noninterference.PUBLIC)
    keyed = set(noninterference.KEYED)
    assert per_vm | public | keyed == set(FIELDS)
    assert not per_vm & public and not per_vm & keyed and not public & keyed


@pytest.mark.parametrize("field", list(noninterference.PER_VM))
def test_private_slots_are_seen_by_their_owner_alone(field):
    """Changing one of VM ``b``'s private slots changes ``view(s, b)`` and no other view:
    the private tables are what ``b`` observes, and nothing another VM observes."""
    s = initial(CFG).evolve(vm_state=(RUNNING,) * CFG.n_vms)
    for i, x in enumerate(getattr(s, field)):
        changed = s.evolve(**{field: logic.store(getattr(s, field), i,
                                                 (not x) if isinstance(x, bool) else x + 1)})
        owners = [b for b in range(CFG.n_vms)
                  if noninterference.private_slots(s, b)[field](i)]
        assert len(owners) == 1, (field, i)
        for b in range(CFG.n_vms):
            moved = noninterference.view(s, b) != noninterference.view(changed, b)
            assert moved == (b == owners[0]), (field, i, b)


def test_second_state_is_syntactically_new():
    setup, two = _two("EVTCHN_STATUS")
    s, s2 = setup.s, two.s2
    for name in SECRET_FIELDS:
        for x, y in zip(getattr(s, name), getattr(s2, name), strict=True):
            assert not x.eq(y), name
            assert not z3.simplify(x == y).eq(z3.BoolVal(True)), name
    for name in set(FIELDS) - set(SECRET_FIELDS):
        assert all(x is y for x, y in zip(getattr(s, name), getattr(s2, name), strict=True))
    # the independent state shares no variable with the first one
    mine = {str(x) for name in FIELDS for x in getattr(s, name)}
    other = prove._independent_state(initial(CFG))
    assert not mine & {str(x) for name in FIELDS for x in getattr(other, name)}


@pytest.mark.parametrize("obligation", [prove.CONFIDENTIAL, prove.CONFIDENTIAL_NAMED])
@pytest.mark.parametrize("target", ROWS)
def test_hypotheses_satisfiable_with_different_secrets(target, obligation):
    setup, two = _two(target)
    solver = z3.SolverFor("QF_BV")
    solver.add(*setup.assumptions, *two.hypotheses(obligation), _differ(setup.s, two.s2))
    assert solver.check() == z3.sat
    solver = z3.SolverFor("QF_BV")
    solver.add(*_cases(setup, two, obligation), _differ(setup.s, two.s2))
    assert solver.check() == z3.sat
    model = solver.model()
    s1 = prove.concretize(model, setup.s)
    s2 = prove.concretize(model, two.s2)
    a = prove._value(model, two.a)
    named_by = prove._named_all(setup, CONV)
    named = [prove._value(model, named_by(v)) for v in range(CFG.n_vms)]
    assert invariants.violated(s1) == [] and invariants.violated(s2) == []
    assert s1 != s2
    assert noninterference.with_private(
        s1, s2, noninterference.secret_slots(s1, a, named)) == s2
    assert noninterference.is_attacker(s1, a) and noninterference.is_attacker(s2, a)
    assert noninterference.low_equivalent(s1, s2, a)
    others = any(n for v, n in enumerate(named) if v != a)
    if obligation == prove.CONFIDENTIAL:
        assert not others and not noninterference.shares_any(s1, a)
        assert not noninterference.shares_any(s2, a)
    else:
        assert others or noninterference.shares_any(s1, a)


@pytest.mark.parametrize("field", [f for f in SECRET_FIELDS if f not in DERIVED])
def test_every_secret_field_can_differ(field):
    """Each secret field really varies between the runs (for some slot), under exactly
    what the proof assumes: a field the construction or the hypotheses pin down would
    make every leak of it unprovable."""
    setup, two = _two("EVTCHN_STATUS")
    solver = z3.SolverFor("QF_BV")
    solver.add(*_cases(setup, two, prove.CONFIDENTIAL), z3.Or(*[
        prove._b(x != y) for x, y in zip(getattr(setup.s, field), getattr(two.s2, field),
                                         strict=True)]))
    assert solver.check() == z3.sat, field


def test_two_other_vms_can_change_together():
    """Every other VM's secrets vary at once: a channel between two other VMs can be
    bound in one run and closed in the other (one victim at a time cannot: its end is
    pinned by the other VM's, through channels_paired)."""
    setup, two = _two("EVTCHN_STATUS")
    s, s2 = setup.s, two.s2
    P = CFG.n_ports
    solver = z3.SolverFor("QF_BV")
    solver.add(*_cases(setup, two, prove.CONFIDENTIAL), two.a == 1,
               s.ch_state[0] == 2, s.ch_rvm[0] == 2, s.ch_rport[0] == 0, s2.ch_state[0] == 0,
               s2.ch_state[2 * P] == 0)
    assert solver.check() == z3.sat


def test_guard_catches_an_aliased_second_state(monkeypatch):
    """With the old construction (the second state *is* the first) no model differs."""
    setup = prove._setup("EVTCHN_STATUS", CFG, CONV)
    monkeypatch.setattr(prove, "_independent_state", lambda s: setup.s)
    two = prove._two_states(setup, CONV)
    solver = z3.SolverFor("QF_BV")
    solver.add(*setup.assumptions, *two.hypotheses(), _differ(setup.s, two.s2))
    assert solver.check() == z3.unsat


def test_with_private_takes_only_the_secret_slots():
    cfg = CFG
    s = initial(cfg).evolve(vm_state=(RUNNING,) * cfg.n_vms, dev_owner=(1, NONE))
    other = s.evolve(vm_state=(PAUSED,) * cfg.n_vms, owner=(9,) * cfg.n_hframes,
                     ch_state=(5,) * (cfg.n_vms * cfg.n_ports),
                     vcpu_ctx=(7,) * (cfg.n_vms * cfg.n_vcpus), dev_owner=(2, 2))
    mixed = noninterference.with_private(
        s, other, noninterference.secret_slots(s, 1, [False, False, True]))
    # VM 2 is named: its lifecycle is not secret; VM 0's is
    assert mixed.vm_state == (PAUSED, RUNNING, RUNNING)
    assert mixed.owner == s.owner  # the frame pool is public
    P, C = cfg.n_ports, cfg.n_vcpus
    assert mixed.ch_state == tuple(0 if i // P == 1 else 5 for i in range(cfg.n_vms * P))
    assert mixed.vcpu_ctx == tuple(0 if i // C == 1 else 7 for i in range(cfg.n_vms * C))
    assert mixed.dev_owner == (1, 2)  # the attacker's device stays its own


def test_attacker_is_a_live_guest():
    s = initial(CFG).evolve(vm_state=(1, 1, ABSENT))
    assert noninterference.is_attacker(s, 1)
    assert not noninterference.is_attacker(s, CONTROL)  # the control VM may see all
    assert not noninterference.is_attacker(s, 2)  # absent
    assert not noninterference.is_attacker(s, CFG.n_vms)  # no such VM
    assert noninterference.is_attacker(s.evolve(vm_state=(1, PAUSED, 1)), 2)
    assert logic.is_sym(noninterference.is_attacker(s, z3.BitVec("a", 64)))
