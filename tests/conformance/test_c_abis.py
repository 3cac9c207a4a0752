"""The C example speaking the real ABIs: built with -DPVHV_ABIS, its memory transactions
are FF-A v1.1 (examples/c-adapter/ffa.c: descriptors in the TX buffer, handles in w2/w3,
FFA_ERROR codes) and its event channels Xen's event_channel_op (xen.c: command structs in
guest memory, 0 or -errno), reached through the protocol's ``abi_call`` and judged through
the codecs (conformance/codec_shim.py).  The oracle passes it -- with most of those calls
really made in the standard ABIs -- and each planted front-end bug is caught: by the oracle
with a short trace, or (a malformed descriptor) by ``judge_malformed``.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conformance import oracle
from conformance.abi_targets import judge_malformed
from conformance.runner import run_conformance
from conformance.target import ExecTarget, TargetError
from spec.hypercalls import ffa
from spec.state import Config
from tests.hypervisor.test_ffa_codec import C0, MALFORMED, _put
from tests.reference.test_ffa_front_end import FUNCTION

# what each planted bug must be reported as by the oracle (requirement prefixes)
CAUGHT_BY_ORACLE = {
    "FFA_HANDLE_SWAP": ("abi:MEM_SHARE", "abi:MEM_LEND", "abi:MEM_DONATE"),
    "XEN_ERRNO_SIGN": ("abi:EVTCHN_",),
    "XEN_STATUS_PORT": ("abi:EVTCHN_STATUS",),
    "XEN_BIND_FIELD": ("abi:EVTCHN_BIND_INTERDOMAIN",),
}
# planted bugs in descriptor checking: judged apart from the oracle (the model has no call
# for a malformed descriptor), each on a descriptor that shows it: bug -> (rule, the
# descriptor, stale TX-buffer bytes after it)
_TWO = _put(_put(MALFORMED["constituents_length"][1], C0, "<I", 3), C0 + 4, "<I", 2)
CAUGHT_BY_DESCRIPTOR = {
    "FFA_RESERVED_ERROR": ("reserved_header", MALFORMED["reserved_header"][1], b""),
    # the composite says two constituents and three pages; the bytes hold one constituent
    # of two pages, and the stale bytes after them the third page's: read, they make a
    # valid share
    "FFA_CONSTITUENT_BOUND": ("constituents_length", _TWO,
                              struct.pack("<QII", 0x12000, 1, 0)),
}


def _handshake(path: Path) -> dict[str, Any]:
    proc = subprocess.run([str(path)], input='{"type":"init","msg_id":1,'
                          '"protocol_version":"1.1","abi_version":"1.0"}\n',
                          capture_output=True, text=True, timeout=10, check=True)
    return json.loads(proc.stdout.splitlines()[0])  # type: ignore[no-any-return]


def _through(target: ExecTarget) -> dict[str, tuple[int, int]]:
    return {s.abi: (s.through, s.native) for s in target._shims}


def test_it_declares_abi_call_and_both_encodings(abis_adapter: Any) -> None:
    reply = _handshake(abis_adapter())
    assert reply["protocol_version"] == "1.1"
    assert "abi_call" in reply["capabilities"]
    assert reply["profile"] == {"encodings": "ffa,xen"}


@pytest.mark.parametrize("loose", [False, True], ids=["spec-choices", "own-choices"])
def test_the_oracle_passes_it_through_ffa_and_xen(abis_adapter: Any, loose: bool) -> None:
    target = ExecTarget(str(abis_adapter(loose=loose)))
    try:
        out = oracle.run_oracle(target, profile="ci", max_examples=20)
        through = _through(target)
    finally:
        target.close()
    assert out.status == "passed", out.failure
    # most memory-transaction and event-channel calls really go through the ABIs
    assert through["ffa"][0] > 100 and through["xen"][0] > 100, through


@pytest.mark.parametrize("bug", sorted(CAUGHT_BY_ORACLE))
def test_a_planted_front_end_bug_is_caught(abis_adapter: Any, bug: str) -> None:
    target = ExecTarget(str(abis_adapter(bug)))
    try:
        out = oracle.run_oracle(target, profile="ci", max_examples=40)
    finally:
        target.close()
    assert out.status == "failed" and out.failure is not None, (bug, out.status)
    assert out.failure.requirement.startswith(CAUGHT_BY_ORACLE[bug]), out.failure
    assert len(out.failure.trace) <= 12, out.failure.trace


def _exec_call(target: ExecTarget) -> Any:
    return lambda vm, vcpu, regs, memory, place: target._abi_call(
        "ffa", vm, vcpu, regs, memory, place)


def _booted(path: Path) -> ExecTarget:
    """The adapter in the state the malformed cases' base descriptors need (that of
    tests/reference/test_ffa_front_end.py ``_front``): VMs 1 and 2 exist and VM 0 owns its
    frames 16..23, so a rule the front end skips shows as a success."""
    target = ExecTarget(str(path))
    target.reset(Config(n_gframes=24, n_hframes=16, n_tx=4, control_quota=8))
    vendor = {"VM_CREATE": 0xC6000001, "MEM_POPULATE": 0xC6000010}
    calls = [("VM_CREATE", vm, 1) for vm in (1, 2)] + \
        [("MEM_POPULATE", gfn, 3) for gfn in range(16, 24)]
    for row, a, b in calls:
        assert target.hypercall(0, 0, {"x0": vendor[row], "x1": a, "x2": b})["x0"] == 0, row
    return target


@pytest.mark.parametrize("rule", sorted(r for r, (k, _, n) in MALFORMED.items()
                                        if k != "retrieve_resp" and n is None))
def test_every_malformed_descriptor_is_answered_as_required(abis_adapter: Any, rule: str
                                                            ) -> None:
    kind, data, _ = MALFORMED[rule]
    target = _booted(abis_adapter())
    try:
        assert judge_malformed(_exec_call(target), 0, 0, FUNCTION[kind], data, kind) is None
    finally:
        target.close()


@pytest.mark.parametrize("bug", sorted(CAUGHT_BY_DESCRIPTOR))
def test_a_planted_descriptor_bug_is_caught(abis_adapter: Any, bug: str) -> None:
    rule, data, stale = CAUGHT_BY_DESCRIPTOR[bug]
    kind = "share"
    good, bad = _booted(abis_adapter()), _booted(abis_adapter(bug))
    try:
        assert judge_malformed(_exec_call(good), 0, 0, FUNCTION[kind], data, kind,
                               stale) is None
        why = judge_malformed(_exec_call(bad), 0, 0, FUNCTION[kind], data, kind, stale)
    finally:
        good.close()
        bad.close()
    assert why is not None and rule in why, why


def test_an_x86_ffa_call_is_refused_as_malformed(abis_adapter: Any) -> None:
    """FF-A is an Arm interface: the adapter refuses an x86-64 abi_call, it does not guess."""
    target = ExecTarget(str(abis_adapter()))
    try:
        target.reset(Config())
        with pytest.raises(TargetError, match="bad abi_call"):
            target._request({"type": "abi_call", "abi": "ffa", "vm": 0, "vcpu": 0,
                             "conv": "x86_64", "regs": {"rax": hex(ffa.FUNCTIONS[
                                 "FFA_VERSION"])}, "memory": ""}, "abi_call_ok")
    finally:
        target.close()


def test_the_report_says_how_many_calls_went_through_each_abi(abis_adapter: Any) -> None:
    report = run_conformance("exec:" + str(abis_adapter()))
    assert report.verdict == "passed", report.headline()
    assert report.target_profile.get("encodings") == "ffa,xen"
    features = (report.reach or {})["features"]
    assert features["calls sent in ffa"] > 100 and features["calls sent in xen"] > 100
    assert "calls of xen's rows with no xen form" in features
