"""A target that makes its own legitimate choices passes; its planted bugs are caught.

The C adapter compiled with -DLOOSE (examples/c-adapter/pvhv.c) is correct but chooses
differently from the spec wherever spec/choices.py allows it: the highest closed port,
pseudo-random 16-bit transaction handles, and vCPUs that start by themselves (an ON_PENDING
vCPU is ON from the third hypercall after its CPU_ON).  It declares protocol 1.1 and the
profile {"port_allocation": "any-free", "handle_allocation": "any-free",
"power_on": "async"}, so the oracle binds its names to the spec's and places its power-on
steps itself.  Each LOOSE planted bug (-DLOOSE -DBUG_<name>) must still be caught by the ci
profile with a short trace that replays.

Tests that run the oracle need its loose mode (conformance/names.py renaming, the profile
in init_ok); their assertion messages say so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conformance import oracle
from conformance.runner import run_conformance
from conformance.target import ExecTarget, TargetError

LOOSE_PROFILE = {"port_allocation": "any-free", "handle_allocation": "any-free",
                 "power_on": "async"}
NEEDS = ("needs the loose oracle (protocol 1.1 init_ok 'profile'; conformance/names.py "
         "renaming of ports and handles; async power-on in conformance/oracle.py)")

# What each LOOSE planted bug must be reported as: the requirement prefix of its failure
EXPECTED = {
    "HANDLE_REUSE": "abi:MEM_",                    # a live handle handed out again
    "PORT_OOR": "abi:EVTCHN_ALLOC_UNBOUND",        # a port >= n_ports
    "DOUBLE_CPU_ON": "abi:CPU_ON",                 # CPU_ON of an ON_PENDING vCPU succeeds
    "AFFINITY_OFF_AFTER_RUN": "abi:AFFINITY_INFO",  # OFF for a vCPU that has started
    "ERROR_OUTSIDE": "abi:EVTCHN_SEND",            # BUSY instead of INVALID_PARAMETERS
    "REFINEMENT_BROKEN": "abi:EVTCHN_",            # declares lowest-free, takes the highest
}  # the keys are conftest.LOOSE_BUGS (the loose_adapter builder refuses any other name)
# what of the loose oracle each bug needs, beyond the renaming itself
NEEDS_FOR = {
    "REFINEMENT_BROKEN": "a target declaring port_allocation 'lowest-free' must be held to "
                         "the lowest closed port (the refinement), not just a fresh one",
    "DOUBLE_CPU_ON": "async power-on: the answer of a pending vCPU is ON_PENDING, or "
                     "ALREADY_ON once the oracle places its start; never SUCCESS",
    "AFFINITY_OFF_AFTER_RUN": "async power-on: AFFINITY_INFO is ON_PENDING or, once the "
                              "oracle places the start, ON; never OFF",
}


def _target(path: Path) -> ExecTarget:
    try:
        return ExecTarget(str(path))
    except TargetError as exc:
        raise AssertionError(f"{NEEDS}: the suite refused the LOOSE target: {exc.reason}") \
            from None


def _handshake(path: Path) -> dict:
    """init_ok as the adapter sends it (straight from the process, no suite involved)."""
    msg = {"type": "init", "msg_id": 1, "protocol_version": "1.1", "abi_version": "1.0"}
    out = subprocess.run([str(path)], input=json.dumps(msg) + "\n", capture_output=True,
                         text=True, timeout=10, check=True)
    return json.loads(out.stdout.splitlines()[0])


# --- the handshake (needs nothing of the oracle) ---------------------------------------------
def test_loose_adapter_declares_protocol_1_1_and_its_profile(loose_adapter):
    reply = _handshake(loose_adapter())
    assert reply["type"] == "init_ok" and reply["protocol_version"] == "1.1"
    assert reply["profile"] == LOOSE_PROFILE


def test_refinement_broken_declares_lowest_free_ports(loose_adapter):
    assert _handshake(loose_adapter("REFINEMENT_BROKEN"))["profile"] == {
        **LOOSE_PROFILE, "port_allocation": "lowest-free"}


def test_default_build_is_still_v1(c_adapter):
    reply = _handshake(c_adapter)
    assert reply["protocol_version"] == "1.0" and "profile" not in reply


def test_suite_reads_the_profile(loose_adapter):
    t = _target(loose_adapter())
    try:
        assert t.profile == LOOSE_PROFILE, NEEDS
    finally:
        t.close()


# --- (a) the LOOSE target passes --------------------------------------------------------------
def test_loose_adapter_passes_the_oracle(loose_adapter):
    target = _target(loose_adapter())
    try:
        out = oracle.run_oracle(target, profile="ci")
    finally:
        target.close()
    assert out.status == "passed", (NEEDS, out.failure, out.error, out.trace[-5:])
    assert out.steps > 1000, NEEDS


def test_loose_adapter_passes_run_conformance(loose_adapter):
    report = run_conformance("exec:" + str(loose_adapter()))
    failed = [(c.id, str(c.status), c.failure or c.detail) for c in report.checks
              if str(c.status) in ("failed", "error")][:3]
    assert report.verdict == "passed", (NEEDS, report.verdict_and_reason(), failed)


# --- (b) every LOOSE planted bug is caught, shrunk, and replays --------------------------------
@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_loose_planted_bug_is_caught(loose_adapter, bug):
    target = _target(loose_adapter(bug))
    try:
        out = oracle.run_oracle(target, profile="ci")
    finally:
        target.close()
    assert out.status == "failed", (f"{NEEDS}: {NEEDS_FOR.get(bug, 'the renaming')}", bug,
                                     out.status, out.error, out.failure)
    f = out.failure
    assert f is not None and f.requirement.startswith(EXPECTED[bug]), (bug, f)
    assert f.expected != f.observed and f.clause
    assert 1 <= len(out.trace) <= max(out.shrunk_from, 1)
    assert len(out.trace) <= 20, [op.get("call") for op in out.trace]
    # the minimal trace really is a counterexample: it replays on the faulty target...
    target = _target(loose_adapter(bug))
    try:
        again = oracle.replay(target, list(out.trace))
    finally:
        target.close()
    assert again is not None and again.requirement == f.requirement, (bug, again)
    # ...and not on the correct LOOSE target (the bug, not a loose choice, is what fails)
    target = _target(loose_adapter())
    try:
        clean = oracle.replay(target, list(out.trace))
    finally:
        target.close()
    assert clean is None, (NEEDS, bug, clean)
