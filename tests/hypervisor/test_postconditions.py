"""Functional postconditions (issue 15, item 3): stated beside each transition, proved per
row (tests/hypervisor/test_proofs.py; their planted bugs in tests/hypervisor/
test_planted_bugs.py), and judged by the conformance oracle on targets as the step
requirements ``step:post_<handler>``."""

from __future__ import annotations

from conformance import oracle, requirements
from conformance.target import ReferenceTarget, SpecTarget
from spec import checking, invariants, machine, mutants, transitions
from spec.hypercalls import abi, codec
from spec.state import initial

POSTS = {p.name: p for p in invariants.POSTCONDITIONS}


def test_every_postcondition_is_a_step_requirement_with_its_clause_and_rows():
    handlers = {p.handler for p in transitions.POSTCONDITIONS}
    assert {f"post_{h}" for h in handlers} <= set(POSTS)
    ids = {r.id: r for r in requirements.hypervisor()}
    for name, prop in POSTS.items():
        assert invariants.STEP_BY_NAME[name] is prop and prop.clause and prop.why
        assert ids[f"step:{name}"].clause == prop.clause
        if name.startswith("post_"):
            assert prop.rows == {r.name for r in abi.TABLE
                                 if f"post_{r.handler}" == name}, name
    # every row that changes the caller's objects has one (the others: version queries,
    # SYSTEM_OFF/RESET (vcpus_follow_psci), EVTCHN_STATUS, feature queries)
    assert {"cpu_on", "dev_deassign", "mem_share", "evtchn_send", "vm_create"} <= handlers


def _call(s, vm, name, *args):
    row = abi.BY_NAME[name]
    s2, out = machine.step(s, vm, 0, codec.encode_call(row, args, "arm64"))
    return s2, out["x0"], row


def test_a_success_is_judged_by_its_postcondition_and_a_failure_is_not():
    s, ret, row = _call(initial(), 0, "CPU_ON", 1, 0, 7)  # frame 0 not mapped: refused
    assert ret >> 63 and checking.check_posts(initial(), machine.Caller(0, 0), row, s,
                                              ret, (1, 0, 7)) == []
    s0, _, _ = _call(initial(), 0, "MEM_POPULATE", 0, 7)
    s1, ret, row = _call(s0, 0, "CPU_ON", 1, 0, 7)
    assert ret == 0 and checking.check_step(s0, machine.Caller(0, 0), row, s1, ret,
                                            (1, 0, 7)) == []
    # the same step answered with another handle / value breaks the postcondition
    bad = checking.check_posts(s0, machine.Caller(0, 0), row, s1, 1, (1, 0, 7))
    assert [v.name for v in bad] == ["post_cpu_on"]


def test_the_oracle_credits_postconditions_after_their_own_calls():
    out = oracle.run_oracle(ReferenceTarget(), profile="ci", max_examples=10)
    assert out.status == "passed", out.failure
    credited = {r for r in out.judged if r.startswith("step:post_")}
    assert {"step:post_cpu_on", "step:post_mem_share", "step:post_evtchn_send"} <= credited


def test_the_oracle_evaluates_the_postcondition_on_each_success():
    """With a wrong postcondition planted in the spec, an oracle that checks every step
    stops at the first success of that call on the spec's own step."""
    with mutants.installed(mutants.BY_NAME["create_ignores_quota"]):
        d = oracle.Differ(SpecTarget(), oracle.SIM_CONFIG, invariants="step")
        d.reset()
        regs = codec.encode_call(abi.BY_NAME["VM_CREATE"], (1, 1), "arm64")
        try:
            d.hypercall(0, 0, regs)
        except oracle.ConformanceFailure as exc:
            assert exc.requirement == "step:post_vm_create", exc
        else:
            raise AssertionError("the oracle did not judge VM_CREATE's postcondition")
