"""The reference implementation's FF-A front end (reference_impl/_ffa.py) judged through
the codec (spec/hypercalls/ffa.py): the oracle's run on ``reference-ffa``, every malformed
descriptor answered with an error the codec's rule allows, the RX/TX buffer rules, and
planted front-end bugs caught."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import oracle
from conformance.abi_targets import ReferenceFfaTarget, front_call, judge_malformed
from conformance.target import make_target
from reference_impl import Hypervisor
from reference_impl._ffa import FfaFrontEnd
from spec.hypercalls import ffa
from tests.hypervisor.test_ffa_codec import MALFORMED, descriptors

KINDS = st.sampled_from(["share", "lend", "donate", "retrieve_req"])
FUNCTION = {"share": "FFA_MEM_SHARE_64", "lend": "FFA_MEM_LEND_32",
            "donate": "FFA_MEM_DONATE_64", "retrieve_req": "FFA_MEM_RETRIEVE_REQ_64"}


def _vendor(hv: Any, fid: int, *args: int) -> int:
    regs = {f"x{i}": 0 for i in range(8)}
    regs["x0"] = fid
    for i, a in enumerate(args, 1):
        regs[f"x{i}"] = a
    return int(hv.hypercall(0, 0, regs)["x0"])


def _front(cls: type = FfaFrontEnd) -> Any:
    """A front end whose hypervisor would carry out the malformed cases' base
    descriptors (VM 0 owns frames 16..23, VMs 1 and 2 exist), so a rule the front end
    skips shows as a success."""
    hv = Hypervisor(n_gframes=24, n_hframes=16, n_tx=4, control_quota=8)
    assert _vendor(hv, 0xC6000001, 1, 1) == 0 and _vendor(hv, 0xC6000001, 2, 1) == 0
    for gfn in range(16, 24):
        assert _vendor(hv, 0xC6000010, gfn, 3) == 0
    front = cls(hv)
    front.buffers[0] = (1 << 40, (1 << 40) + ffa.PAGE, 1)  # VM 0's pair, as at boot
    return front


def test_register_forms_answered_as_the_codec_reads_them() -> None:
    """w1/w2/w3/w4 of a send: an SMC32 call's x3 upper half is no address."""
    from tests.hypervisor.test_ffa_codec import _good, _regs

    data = _good()
    n = len(data)
    unmapped = _front()
    del unmapped.buffers[0]
    out, _ = unmapped.call(0, 0, _regs(data), data)
    assert ffa.decode("MEM_SHARE", out).code in ffa.RULES["no_tx_buffer"].codes
    for regs in (_regs(data), _regs(data, addr=1 << 40), _regs(data, frag=n + 16),
                 _regs(data, total=n + 16), _regs(data, addr=0x4000, pages=1),
                 dict(_regs(data, addr=1 << 40), x0=ffa.FUNCTIONS["FFA_MEM_SHARE_32"])):
        expected = ffa.check_lengths(regs, ffa.PAGE)
        out, _ = _front().call(0, 0, regs, data)
        reading = ffa.decode("MEM_SHARE", out)
        if isinstance(expected, ffa.Violation):
            assert reading.code in expected.codes, (regs, reading)
        else:
            assert reading.ok, (regs, reading)


def test_the_base_descriptors_are_carried_out() -> None:
    """(So a malformed case that the front end lets through succeeds.)"""
    from tests.hypervisor.test_ffa_codec import _good

    for kind in ("share", "lend", "donate"):
        data = _good(kind)
        regs = {"x0": ffa.FUNCTIONS[FUNCTION[kind]], "x1": len(data), "x2": len(data)}
        out, _ = _front().call(0, 0, regs, data)
        assert ffa.decode(ffa.ROW_OF_KIND[kind], out).ok, (kind, out)


def test_the_target_is_made_by_name() -> None:
    assert isinstance(make_target("reference-ffa"), ReferenceFfaTarget)


def test_the_oracle_passes_reference_ffa() -> None:
    t = ReferenceFfaTarget()
    out = oracle.run_oracle(t, profile="ci", max_examples=25)
    assert out.status == "passed", out.failure
    assert t.through_ffa > 100, (t.through_ffa, t.native)


@pytest.mark.parametrize("rule", sorted(r for r, (k, _, n) in MALFORMED.items()
                                        if k != "retrieve_resp" and n is None))
def test_malformed_descriptor_answered_as_required(rule: str) -> None:
    kind, data, _ = MALFORMED[rule]
    assert judge_malformed(front_call(_front()), 0, 0, FUNCTION[kind], data, kind) is None


@settings(max_examples=300)
@given(desc=descriptors(), kind=KINDS)
def test_any_descriptor_answered_as_required(desc: tuple[bytes, int], kind: Any) -> None:
    data, length = desc
    assert judge_malformed(front_call(_front()), 0, 0, FUNCTION[kind], data[:length], kind) is None


def _mailbox_call(front: Any, op: str, args: tuple[int, ...]) -> int:
    regs = {"x0": ffa.FUNCTIONS[op], **{f"x{i}": a for i, a in enumerate(args, 1)}}
    out, _ = front.call(0, 0, regs)
    reading = ffa.decode("MEM_RECLAIM", out)
    return 0 if reading.ok else reading.code


OPS = st.one_of(
    st.tuples(st.just("FFA_RXTX_MAP_64"),
              st.tuples(st.integers(0, 8).map(lambda p: p * 0x800),
                        st.integers(0, 8).map(lambda p: p * 0x800), st.integers(0, 3))),
    st.tuples(st.just("FFA_RXTX_UNMAP"), st.just(())),
    st.tuples(st.just("FFA_RX_RELEASE"), st.just(())))


@given(ops=st.lists(OPS, max_size=8))
def test_buffer_rules_are_the_codecs(ops: list[tuple[str, tuple[int, ...]]]) -> None:
    front = FfaFrontEnd(Hypervisor())
    mb = ffa.Mailbox()
    for op, args in ops:
        if op == "FFA_RXTX_MAP_64":
            mb, code = ffa.rxtx_map(mb, *args)
        elif op == "FFA_RXTX_UNMAP":
            mb, code = ffa.rxtx_unmap(mb)
        else:
            mb, code = ffa.rx_release(mb)
        assert _mailbox_call(front, op, args) == code, (op, args)


def test_a_retrieve_owns_rx_until_released() -> None:
    t = ReferenceFfaTarget()
    from spec.state import Config

    t.reset(Config())
    front = t._front
    hv = t._hv
    assert hv.hypercall(0, 0, {"x0": 0xC6000010, "x1": 0, "x2": 3, **{
        f"x{i}": 0 for i in range(3, 8)}})["x0"] == 0  # VM 0 populates frame 0
    share = ffa.encode("MEM_SHARE", (0, 1, 0b1, 3), 0)
    assert isinstance(share, ffa.Request)
    # VM 0 shares with itself: refused by the descriptor rules
    out, _ = front.call(0, 0, share.regs, share.tx)
    assert ffa.decode("MEM_SHARE", out).code == ffa.INVALID
    assert _mailbox_call(front, "FFA_RX_RELEASE", ()) == ffa.DENIED


# --- planted front-end bugs --------------------------------------------------------------------
class _HalvesSwapped(FfaFrontEnd):
    """FFA_SUCCESS with the handle's halves the wrong way round."""

    def call(self, vm: int, vcpu: int, regs: Any, tx: bytes = b"") -> Any:
        out, rx = super().call(vm, vcpu, regs, tx)
        if out["x0"] == ffa.FUNCTIONS["FFA_SUCCESS_32"]:
            out = dict(out, x2=out["x3"], x3=out["x2"])
        return out, rx


class _ReservedIgnored(FfaFrontEnd):
    """A front end that does not look at the header's reserved bytes (MBZ)."""

    def call(self, vm: int, vcpu: int, regs: Any, tx: bytes = b"") -> Any:
        if len(tx) >= 48:
            tx = tx[:36] + bytes(12) + tx[48:]
        return super().call(vm, vcpu, regs, tx)


def test_planted_handle_halves_swapped_is_caught() -> None:
    t = ReferenceFfaTarget(front_end=_HalvesSwapped)
    out = oracle.run_oracle(t, profile="ci", max_examples=25)
    assert out.status == "failed" and out.failure is not None
    assert out.failure.requirement in {"abi:MEM_SHARE", "abi:MEM_LEND", "abi:MEM_DONATE"}


def test_planted_reserved_bytes_ignored_is_caught() -> None:
    kind, data, _ = MALFORMED["reserved_header"]
    assert judge_malformed(front_call(_front()), 0, 0, FUNCTION[kind], data, kind) is None
    why = judge_malformed(front_call(_front(_ReservedIgnored)), 0, 0, FUNCTION[kind], data, kind)
    assert why is not None and "reserved_header" in why


@given(data=st.binary(max_size=40), count=st.integers(0, 3), flags=st.integers(0, 7),
       endpoint=st.sampled_from([1, 2, 0x8001]))
def test_relinquish_descriptors_answered_as_required(data: bytes, count: int, flags: int,
                                                     endpoint: int) -> None:
    """Relinquish descriptors (Table 16.25), near-valid and arbitrary: where the codec
    names a broken rule, the front end's FFA_ERROR is one the rule allows."""
    for tx in (data, ffa.encode_relinquish(ffa.Relinquish(0, flags, (endpoint,) * count))):
        expected = ffa.parse_relinquish(tx, len(tx), ffa.endpoint_of(0))
        out, _ = _front().call(0, 0, {"x0": ffa.FUNCTIONS["FFA_MEM_RELINQUISH"]}, tx)
        reading = ffa.decode("MEM_RELINQUISH", out)
        if isinstance(expected, ffa.Violation):
            assert not reading.ok and reading.code in expected.codes, (tx, reading)
