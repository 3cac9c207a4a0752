"""The reference implementation's Xen front end (reference_impl/_xen.py) judged through
the codec (spec/hypercalls/xen.py): from any state a random sequence of calls reaches,
every ``event_channel_op`` a guest makes -- a model call as the codec encodes it, or any
struct at all -- is answered as :func:`xen.encode_answer` answers the vendor call's result
on a twin hypervisor, and reads back through :func:`xen.decode` as the model's answer;
-ENOSYS, -EFAULT and -EPERM; and planted front-end bugs caught."""

from __future__ import annotations

from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from reference_impl import Hypervisor
from reference_impl._abi_constants import HV_ERRORS, ROWS
from reference_impl._xen import XenFrontEnd
from spec.hypercalls import xen
from spec.hypercalls.codec import NOT_SUPPORTED, Call
from spec.hypercalls.guest_memory import write_field

M64 = (1 << 64) - 1
VENDOR = {row[0]: row[1] for row in ROWS}
ERROR_NAME = {v & M64: k for k, v in HV_ERRORS.items() if v}
ENOSYS, EFAULT = 38, 14
PTR = 0x4000_0000  # where the guest's struct is (not modelled: ``mem`` is what it names)


def _vendor(hv: Any, vm: int, vcpu: int, row: str, *args: int) -> int:
    regs = {f"x{i}": 0 for i in range(8)}
    regs["x0"] = VENDOR[row]
    for i, a in enumerate(args, 1):
        regs[f"x{i}"] = a
    return int(hv.hypercall(vm, vcpu, regs)["x0"])


def _twins() -> tuple[Hypervisor, Hypervisor]:
    """Two hypervisors in the same state: VMs 0..2 running (vCPU 0 of each), 2 ports."""
    pair = Hypervisor(), Hypervisor()
    for hv in pair:
        for vm in (1, 2):
            assert _vendor(hv, 0, 0, "VM_CREATE", vm, 1) == 0
    return pair


def _regs(op: int) -> dict[str, int]:
    return {"x16": xen.HYPERCALL_EVENT_CHANNEL_OP, "x0": op, "x1": PTR}


def _expected(row: str, ret: int, mem: bytes) -> tuple[int, bytes]:
    """What a Xen that behaves as the model answers: the codec's
    :func:`xen.encode_answer`, with the struct left as it was where the header has no
    output -- on a failure, and for EVTCHNOP_status the union members the state does not
    use (the codec writes the model's NONE there; decode reads neither): u.dom of a closed
    port is 0, u.interdomain.port is written for an interdomain channel only."""
    rc, answer = xen.encode_answer(row, ret, mem)
    assert type(answer) is bytes
    if ret >> 63:
        return rc, mem
    out = bytearray(answer)
    if row == "EVTCHN_STATUS":
        state = ret & 0xFF
        if state == xen.Stat.CLOSED:
            out[16:18] = bytes(2)  # u.dom
        if state != xen.Stat.INTERDOMAIN:
            out[20:24] = mem[20:24]  # u.interdomain.port
    return rc, bytes(out)


def _check_reads_back(row: str, ret: int, rc: int, out: bytes) -> None:
    """decode reads the front end's answer as the model's answer ``ret``."""
    signed = rc - (1 << 64) if rc >> 63 else rc
    reading = xen.decode(row, signed, out)
    if ret >> 63:
        assert not reading.ok, (row, ret, reading)
        name = ERROR_NAME.get(ret)
        if name in xen.EXPRESSES:
            assert name in reading.errors, (row, name, reading)
    else:
        assert reading.ok, (row, ret, reading)
        assert (reading.value ^ ret) & xen.seen(row) == 0, (row, hex(ret), reading)


def step(front: XenFrontEnd, twin: Hypervisor, vm: int, vcpu: int, op: int, mem: bytes
         ) -> tuple[dict[str, int], bytes]:
    """One event_channel_op through the front end, checked against the codec and the
    twin."""
    regs = _regs(op)
    got, out = front.call(vm, vcpu, regs, mem)
    call = xen.decode_call(regs, "arm64", mem)
    if isinstance(call, Call):
        row = call.row.name
        ret = _vendor(twin, vm, vcpu, row, *call.args)
    elif call.code == NOT_SUPPORTED:
        assert got == {"x0": -ENOSYS & M64} and out == mem, (op, mem, got)
        return got, out
    else:  # refused before the call is made: the twin is not called
        assert call.row is not None
        row, ret = call.row.name, call.code & M64
    assert (got["x0"], out) == _expected(row, ret, mem), (row, mem.hex(), hex(ret), got,
                                                         out.hex())
    _check_reads_back(row, ret, got["x0"], out)
    return got, out


ROWS_XEN = sorted(xen.rows())
PORTS = st.one_of(st.integers(0, 3), st.sampled_from([0xFFFF, 0x10000, 0xFFFF_FFFF]))
VMS = st.one_of(st.integers(0, 3), st.sampled_from([xen.DOMID_SELF, 0xFFFF]))


@st.composite
def model_calls(draw: Any) -> tuple[int, bytes]:
    """A model call as the codec encodes it (the caller itself, DOMID_SELF)."""
    row = draw(st.sampled_from(ROWS_XEN))
    args = []
    for name in xen.COMMANDS[row].args:
        args.append(draw(VMS if name == "remote_dom" else PORTS))
    op, mem = xen.encode(row, tuple(args))
    return int(op), mem


@st.composite
def any_structs(draw: Any) -> tuple[int, bytes]:
    """Any command number with any struct of the command's size (or a few bytes more)."""
    op = draw(st.one_of(st.sampled_from([int(c.op) for c in xen.COMMANDS.values()]),
                        st.integers(0, 14), st.just(1 << 32 | 4)))
    size = xen.STRUCT_SIZE.get(op & 0xFFFF_FFFF, 8)
    return op, draw(st.binary(min_size=size, max_size=size + 4))


STEPS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1),
                           st.one_of(model_calls(), model_calls(), any_structs(),
                                     st.tuples(st.sampled_from(["EVTCHN_MASK", "VM_DESTROY",
                                                                "VM_CREATE", "CONNECT"]),
                                               st.integers(0, 3)))),
                 max_size=14)


def _run(front_class: type, steps: list[tuple[int, int, Any]]) -> None:
    hv, twin = _twins()
    front = front_class(hv)
    for vm, vcpu, what in steps:
        if what[0] == "CONNECT":  # both ends through the front end: an interdomain channel
            op, mem = xen.encode("EVTCHN_ALLOC_UNBOUND", (what[1],))
            got, out = step(front, twin, vm, 0, int(op), mem)
            if not got["x0"]:
                op, mem = xen.encode("EVTCHN_BIND_INTERDOMAIN", (vm, out[4]))
                got, back = step(front, twin, what[1], 0, int(op), mem)
                for end, port in ((vm, out[4]), (what[1], back[8])):  # and each end's status
                    op, mem = xen.encode("EVTCHN_STATUS", (port,))
                    step(front, twin, end, 0, int(op), mem)
        elif isinstance(what[0], str):  # the hypervisor's own call, on both: a state to reach
            row, arg = what
            extra = (1,) if row == "VM_CREATE" else ()
            caller = 0 if row != "EVTCHN_MASK" else vm
            assert _vendor(hv, caller, 0, row, arg, *extra) == \
                _vendor(twin, caller, 0, row, arg, *extra)
        else:
            step(front, twin, vm, vcpu, *what)
    assert hv.abstract() == twin.abstract()


@given(steps=STEPS)
def test_answers_are_the_codecs_answers_to_the_twins_results(
        steps: list[tuple[int, int, Any]]) -> None:
    _run(XenFrontEnd, steps)


def test_every_state_and_outcome_is_met() -> None:
    """(So the property above is not vacuous.)  A channel through its three states, the
    status of each, and each of the three errnos a vendor error becomes."""
    hv, twin = _twins()
    front = XenFrontEnd(hv)
    script = [
        (1, 0, "EVTCHN_STATUS", (0,)), (1, 0, "EVTCHN_ALLOC_UNBOUND", (2,)),
        (1, 0, "EVTCHN_STATUS", (0,)), (2, 0, "EVTCHN_BIND_INTERDOMAIN", (1, 0)),
        (2, 0, "EVTCHN_STATUS", (0,)), (1, 0, "EVTCHN_STATUS", (0,)),
        (2, 0, "EVTCHN_SEND", (0,)), (1, 0, "EVTCHN_UNMASK", (0,)),
        (1, 0, "EVTCHN_ALLOC_UNBOUND", (2,)), (1, 0, "EVTCHN_ALLOC_UNBOUND", (2,)),
        (1, 1, "EVTCHN_SEND", (0,)), (1, 0, "EVTCHN_SEND", (0x10000,)),
        (0, 0, "EVTCHN_ALLOC_UNBOUND", (xen.DOMID_SELF,)), (2, 0, "EVTCHN_CLOSE", (0,)),
        (1, 0, "EVTCHN_STATUS", (0,)),
    ]
    states, errnos = [], []
    for vm, vcpu, row, args in script:
        op, mem = xen.encode(row, args)
        got, out = step(front, twin, vm, vcpu, int(op), mem)
        if got["x0"] >> 63:
            errnos.append(-got["x0"] & M64)
        elif row == "EVTCHN_STATUS":
            states.append(out[8:24].hex())
    assert states == ["00000000000000000000000000000000",  # closed
                      "01000000000000000200000000000000",  # unbound to VM 2
                      "02000000000000000100000000000000",  # to VM 1 port 0
                      "02000000000000000200000000000000",  # to VM 2 port 0
                      "01000000000000000200000000000000"], states  # peer closed: unbound
    assert errnos == [28, 1, 22, 22], errnos  # ENOSPC, EPERM, EINVAL (wide port, self)
    assert hv.abstract() == twin.abstract()


def test_other_hypercalls_and_commands_are_enosys() -> None:
    front = XenFrontEnd(_twins()[0])
    mem = bytes(24)
    for nr in (0, 31, 33, 32 | 1 << 32, M64):
        assert front.call(0, 0, {"x16": nr, "x0": 4, "x1": PTR}, mem) == \
            ({"x0": -ENOSYS & M64}, mem)
    for cmd in (1, 2, 7, 8, 10, 11, 12, 13, 14, 0xFFFF_FFFF, M64):
        assert front.call(0, 0, _regs(cmd), mem) == ({"x0": -ENOSYS & M64}, mem)
        assert xen.decode_call(_regs(cmd), "arm64", mem).code == NOT_SUPPORTED  # type: ignore[union-attr]


def test_a_short_struct_is_efault() -> None:
    for c in xen.COMMANDS.values():
        hv, twin = _twins()
        front = XenFrontEnd(hv)
        for n in range(c.size):
            mem = xen.encode(c.row, (1,) * len(c.args))[1][:n]
            assert front.call(1, 0, _regs(c.op), mem) == ({"x0": -EFAULT & M64}, mem)
        assert hv.abstract() == twin.abstract()


@settings(max_examples=30)
@given(dom=st.integers(0, 0xFFFF).filter(lambda d: d != xen.DOMID_SELF),
       row=st.sampled_from(["EVTCHN_ALLOC_UNBOUND", "EVTCHN_STATUS"]))
def test_a_foreign_dom_is_eperm(dom: int, row: str) -> None:
    hv, twin = _twins()
    c = xen.COMMANDS[row]
    mem = write_field(xen.encode(row, (1,))[1], c.field("dom"), dom)
    assert type(mem) is bytes
    assert XenFrontEnd(hv).call(0, 0, _regs(c.op), mem) == ({"x0": -1 & M64}, mem)
    assert hv.abstract() == twin.abstract()
    step(XenFrontEnd(hv), twin, 0, 0, int(c.op), mem)  # and the codec says the same


# --- planted bugs: the property above catches each ---------------------------------------
class _ErrnoSign(XenFrontEnd):
    """Failures answer +errno."""

    def call(self, vm: int, vcpu: int, regs: Any, mem: bytes) -> tuple[dict[str, int], bytes]:
        got, out = super().call(vm, vcpu, regs, mem)
        return {"x0": -got["x0"] & M64}, out


class _StatusPort(XenFrontEnd):
    """EVTCHNOP_status writes u.interdomain.port at offset 16, over u.dom."""

    def _put_remote_port(self, s: bytearray, port: int) -> None:
        s[16:20] = port.to_bytes(4, "little")


class _BindField(XenFrontEnd):
    """bind_interdomain reads remote_port from offset 2 (the padding after remote_dom)."""

    def _bind_interdomain(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        s2 = bytearray(s)
        s2[4:8] = s[2:6]
        out = super()._bind_interdomain(vm, vcpu, s2)
        out[4:8] = s[4:8]
        return out


def _caught(front_class: type) -> bool:
    """Whether the property fails for ``front_class`` (no shrinking: only whether)."""

    @settings(max_examples=200, database=None, phases=[Phase.generate])
    @given(steps=STEPS)
    def prop(steps: list[tuple[int, int, Any]]) -> None:
        _run(front_class, steps)

    try:
        prop()
    except AssertionError:
        return True
    return False


def test_planted_bugs_are_caught() -> None:
    for bug in (_ErrnoSign, _StatusPort, _BindField):
        assert _caught(bug), bug.__doc__


@settings(max_examples=30)
@given(what=st.one_of(model_calls(), any_structs()), vm=st.integers(0, 2))
def test_x86_64_registers_are_answered_alike(what: tuple[int, bytes], vm: int) -> None:
    """From an x86-64 guest (rax, rdi, rsi: xen.GUEST_REGS) the same answer, in rax."""
    op, mem = what
    arm = XenFrontEnd(_twins()[0]).call(vm, 0, _regs(op), mem)
    x86 = XenFrontEnd(_twins()[0]).call(
        vm, 0, {"rax": xen.HYPERCALL_EVENT_CHANNEL_OP, "rdi": op, "rsi": PTR}, mem)
    assert x86 == ({"rax": arm[0]["x0"]}, arm[1])
    assert xen.GUEST_REGS["x86_64"] == ("rax", "rdi", "rsi")
