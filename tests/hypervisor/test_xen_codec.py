"""Round-trip properties of the Xen event-channel codec (spec/hypercalls/xen.py): what a
model call puts in Xen's struct is what Xen's header says, and what Xen writes back is
read as the model's result, field by field."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from spec.hypercalls import abi, codec, xen
from spec.state import NONE

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)


def test_every_command_is_a_model_call_and_a_header_struct() -> None:
    for row, c in xen.COMMANDS.items():
        assert abi.BY_NAME[row].abi == "pvspec"
        assert struct.calcsize(c.layout) == c.size
    assert xen.rows() == frozenset(xen.COMMANDS)
    assert "EVTCHN_MASK" not in xen.rows() and "EVTCHN_CLEAR" not in xen.rows()


@given(remote=u16)
def test_alloc_unbound_is_made_by_the_caller_for_the_named_remote(remote: int) -> None:
    op, data = xen.encode("EVTCHN_ALLOC_UNBOUND", (remote,))
    assert op == xen.Op.ALLOC_UNBOUND
    assert struct.unpack("<HHI", data) == (xen.DOMID_SELF, remote, 0)


@given(remote=u16, port=u16, local=u32)
def test_bind_interdomain_round_trip(remote: int, port: int, local: int) -> None:
    op, data = xen.encode("EVTCHN_BIND_INTERDOMAIN", (remote, port))
    assert op == xen.Op.BIND_INTERDOMAIN
    assert struct.unpack("<H2xII", data) == (remote, port, 0)
    answered = data[:8] + struct.pack("<I", local)
    reading = xen.decode("EVTCHN_BIND_INTERDOMAIN", 0, answered)
    assert reading.ok and reading.value == local


@given(stat=st.sampled_from([0, 1, 2, 3, 4, 5]), vcpu=st.integers(0, 200), dom=u16,
       port=st.integers(0, 4095))
def test_status_reads_every_field_xen_defines(stat: int, vcpu: int, dom: int, port: int
                                              ) -> None:
    out = struct.pack("<H2xIIIH2xI", xen.DOMID_SELF, 9, stat, vcpu, dom, port)
    r = xen.decode("EVTCHN_STATUS", 0, out)
    assert r.ok
    v = r.value
    assert v & 0xFF == stat
    assert (v >> 10) & 0x3F == min(vcpu, 0x3F)
    assert (v >> 16) & 0xFFFF == (dom if stat in (1, 2) else NONE)
    assert v >> 32 == (port if stat == 2 else NONE)
    assert not r.seen & (1 << 8 | 1 << 9)  # pending and masked: not in evtchn_status


@given(errno=st.integers(1, 200), row=st.sampled_from(sorted(xen.COMMANDS)))
def test_an_errno_stands_for_the_model_errors_that_use_it(errno: int, row: str) -> None:
    r = xen.decode(row, -errno, b"")
    assert not r.ok and r.errno == errno
    assert r.errors == {m for m, es in xen.EXPRESSES.items() if errno in es}
    assert r.error_mask() == sum(1 << -abi.HV_ERRORS[m] for m in r.errors)


@given(remote=u16, port=u16, conv=st.sampled_from(sorted(xen.GUEST_REGS)))
def test_the_guest_side_decodes_what_encode_puts_down(remote: int, port: int, conv: str
                                                      ) -> None:
    """Concretely, the decoder the proofs run on symbolic structs (spec.prove xen:<row>)."""
    for row in xen.COMMANDS:
        args = (remote, port)[:len(abi.BY_NAME[row].args)]
        assert xen.call_reads_back(row, args, conv)


@given(dom=st.one_of(st.just(xen.DOMID_SELF), u16), port=st.one_of(u16, u32),
       nr=st.one_of(st.just(xen.HYPERCALL_EVENT_CHANNEL_OP), st.integers(0, 64)))
def test_the_guest_side_refuses_what_the_model_cannot_express(dom: int, port: int, nr: int
                                                               ) -> None:
    nr_reg, cmd, ptr = xen.GUEST_REGS["arm64"]
    regs = {nr_reg: nr, cmd: int(xen.Op.STATUS), ptr: 0x1000}
    call = xen.decode_call(regs, "arm64", struct.pack("<H2xIIIH2xI", dom, port, 0, 0, 0, 0))
    if nr != xen.HYPERCALL_EVENT_CHANNEL_OP:
        assert isinstance(call, codec.DecodeError) and call.code == codec.NOT_SUPPORTED
    elif dom != xen.DOMID_SELF:
        assert isinstance(call, codec.DecodeError) and call.code == abi.HV_ERRORS["DENIED"]
    elif port > 0xFFFF:
        assert isinstance(call, codec.DecodeError) and call.code == codec.INVALID_PARAMETERS
    else:
        assert isinstance(call, codec.Call) and call.args == (port,)


@given(row=st.sampled_from(sorted(xen.COMMANDS)),
       error=st.sampled_from(sorted(xen.ERRNO_OF)))
def test_a_model_error_is_answered_negative_and_read_back(row: str, error: str) -> None:
    ret = abi.BY_NAME[row].error(error) & (2**64 - 1)
    rc, out = xen.encode_answer(row, ret, bytes(xen.COMMANDS[row].size))
    assert rc == (-xen.ERRNO_OF[error]) & (2**64 - 1)
    assert xen.answer_reads_back(row, ret, out)
    assert error in xen.decode(row, rc - 2**64, out).errors
