"""Xen's event-channel ABI as a codec over the model's event-channel calls.

Xen has one hypercall for event channels, ``event_channel_op`` (hypercall 32,
``xen/include/public/xen.h``): the guest passes a command number and a pointer to the
command's struct in its own memory; Xen reads the inputs from the struct, writes the
outputs back into it, and returns 0 or a negative errno (``xen/include/public/errno.h``).
The model's calls (:mod:`spec.hypercalls.abi`, rows ``EVTCHN_*``) are the same operations
with the inputs and outputs in registers.  This module is the one place that says how
the two correspond, so a target that speaks Xen's ABI is judged by the model:

* :data:`COMMANDS` -- which model call is which ``EVTCHNOP_*`` command, with the struct
  layout (``xen/include/public/event_channel.h``; little-endian, natural alignment:
  ``domid_t`` is 16 bits, ``evtchn_port_t`` 32);
* :func:`encode` -- a model call as ``(command, struct bytes)``, made by the caller itself
  (``dom`` fields are ``DOMID_SELF``); a model VM id is the Xen domain id;
* :func:`decode` -- Xen's answer as a :class:`Reading`: on success the value the model's
  call returns, with the bits Xen's ABI cannot show masked out; on failure the model errors
  the errno may stand for.  Xen answers ``-EINVAL`` both where the model distinguishes
  INVALID_PARAMETERS (a bad argument) from DENIED (binding a port not offered to the
  caller), so an ``-EINVAL`` is judged against both; its error precedence is otherwise the
  model's (a missing remote domain is ``-ESRCH``, an exhausted port space ``-ENOSPC``).

The guest's side and Xen's answer are stated once, for concrete and symbolic memory alike
(:mod:`spec.hypercalls.guest_memory` reads and writes a field of ``bytes`` or of a tuple
of 8-bit Z3 terms): :func:`decode_call` reads the model's call from what a guest puts down
(hypercall number, command, struct), :func:`encode_answer` gives the model's result as Xen
answers it, and :func:`call_reads_back` / :func:`answer_reads_back` state that the two
directions agree.  :mod:`spec.prove` runs them on a fully symbolic struct (targets
``xen:<row>``): every invariant holds through the codec, and both round trips.

The model's EVTCHN_MASK and EVTCHN_CLEAR have no command: in Xen the mask and pending bits
live in the shared-info page, written by the guest directly.  EVTCHN_STATUS's pending and
masked bits are not in ``evtchn_status`` either, so they are not judged through this ABI;
the notification vCPU it reports is (the model notifies vCPU 0, Xen's default binding).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from typing import Any

import attrs

from spec import logic
from spec.hypercalls.abi import BY_NAME, HV_ERRORS
from spec.hypercalls.codec import INVALID_PARAMETERS, NOT_SUPPORTED, Call, DecodeError
from spec.hypercalls.guest_memory import Memory, read_field, write_field
from spec.state import CLOSED, INTERDOMAIN, NONE, UNBOUND

__all__ = ["COMMANDS", "DOMID_SELF", "ERRNO", "ERRNO_OF", "EXPRESSES", "GUEST_REGS",
           "HYPERCALL_EVENT_CHANNEL_OP", "STRUCT_SIZE", "Command", "Field", "Op", "Reading",
           "Stat", "answer_rc", "answer_reads_back", "call_reads_back", "decode",
           "decode_call", "encode", "encode_answer", "encode_struct", "read_value", "rows",
           "seen", "stands_for"]

HYPERCALL_EVENT_CHANNEL_OP = 32  # xen.h __HYPERVISOR_event_channel_op
DOMID_SELF = 0x7FF0  # xen.h


class Op(enum.IntEnum):
    """``EVTCHNOP_*`` command numbers (event_channel.h)."""

    BIND_INTERDOMAIN = 0
    BIND_VIRQ = 1
    BIND_PIRQ = 2
    CLOSE = 3
    SEND = 4
    STATUS = 5
    ALLOC_UNBOUND = 6
    BIND_IPI = 7
    BIND_VCPU = 8
    UNMASK = 9
    RESET = 10
    INIT_CONTROL = 11
    EXPAND_ARRAY = 12
    SET_PRIORITY = 13


class Stat(enum.IntEnum):
    """``EVTCHNSTAT_*``: ``struct evtchn_status.status`` (the model's three states are
    numbered the same way)."""

    CLOSED = 0
    UNBOUND = 1
    INTERDOMAIN = 2
    PIRQ = 3
    VIRQ = 4
    IPI = 5


# sizeof(struct evtchn_*) per command (event_channel.h)
STRUCT_SIZE: dict[int, int] = {
    Op.BIND_INTERDOMAIN: 12, Op.BIND_VIRQ: 12, Op.BIND_PIRQ: 12, Op.CLOSE: 4, Op.SEND: 4,
    Op.STATUS: 24, Op.ALLOC_UNBOUND: 8, Op.BIND_IPI: 8, Op.BIND_VCPU: 8, Op.UNMASK: 4,
    Op.RESET: 2, Op.INIT_CONTROL: 24, Op.EXPAND_ARRAY: 8, Op.SET_PRIORITY: 8,
}


# errno values Xen returns (xen/include/public/errno.h: the classic Unix numbers)
ERRNO = {"EPERM": 1, "ESRCH": 3, "ENOMEM": 12, "EACCES": 13, "EINVAL": 22, "ENOSPC": 28}

# Per model error: the errnos that express it in Xen's ABI.
EXPRESSES: dict[str, frozenset[int]] = {
    "INVALID_PARAMETERS": frozenset({ERRNO["EINVAL"], ERRNO["ESRCH"]}),
    "DENIED": frozenset({ERRNO["EINVAL"], ERRNO["EPERM"], ERRNO["EACCES"]}),
    "NO_MEMORY": frozenset({ERRNO["ENOSPC"], ERRNO["ENOMEM"]}),
}

STAT_CLOSED, STAT_UNBOUND, STAT_INTERDOMAIN = Stat.CLOSED, Stat.UNBOUND, Stat.INTERDOMAIN
assert (STAT_CLOSED, STAT_UNBOUND, STAT_INTERDOMAIN) == (CLOSED, UNBOUND, INTERDOMAIN)


@attrs.frozen
class Field:
    """One field of a command's struct: byte offset and size (event_channel.h; the offsets
    follow from C's natural alignment, and are checked below against ``layout``)."""

    name: str
    offset: int
    size: int  # bytes


@attrs.frozen
class Command:
    row: str  # the model's call
    op: Op
    layout: str  # struct format of the command's struct
    size: int
    fields: tuple[Field, ...]  # in declaration order, as in ``layout``
    args: tuple[str, ...]  # the fields holding the model call's arguments, in order
    result: str = ""  # the output field holding the model's result ("" if none or STATUS)
    # by name, built once (the oracle reads a command's fields at every step)
    by_name: dict[str, Field] = attrs.field(init=False, eq=False, repr=False)

    @by_name.default
    def _by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field:
        return self.by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)


_PORT_ONLY = (Field("port", 0, 4),)
COMMANDS: dict[str, Command] = {c.row: c for c in (
    # struct evtchn_alloc_unbound { domid_t dom, remote_dom; evtchn_port_t port; }
    Command("EVTCHN_ALLOC_UNBOUND", Op.ALLOC_UNBOUND, "<HHI", 8,
            (Field("dom", 0, 2), Field("remote_dom", 2, 2), Field("port", 4, 4)),
            ("remote_dom",), "port"),
    # struct evtchn_bind_interdomain { domid_t remote_dom; evtchn_port_t remote_port,
    #                                  local_port; }
    Command("EVTCHN_BIND_INTERDOMAIN", Op.BIND_INTERDOMAIN, "<H2xII", 12,
            (Field("remote_dom", 0, 2), Field("remote_port", 4, 4), Field("local_port", 8, 4)),
            ("remote_dom", "remote_port"), "local_port"),
    # struct evtchn_send / evtchn_close / evtchn_unmask { evtchn_port_t port; }
    Command("EVTCHN_SEND", Op.SEND, "<I", 4, _PORT_ONLY, ("port",)),
    Command("EVTCHN_CLOSE", Op.CLOSE, "<I", 4, _PORT_ONLY, ("port",)),
    Command("EVTCHN_UNMASK", Op.UNMASK, "<I", 4, _PORT_ONLY, ("port",)),
    # struct evtchn_status { domid_t dom; evtchn_port_t port; uint32_t status, vcpu;
    #   union { {domid_t dom} unbound; {domid_t dom; evtchn_port_t port} interdomain;
    #           uint32_t pirq, virq; } u; }
    Command("EVTCHN_STATUS", Op.STATUS, "<H2xIIIH2xI", 24,
            (Field("dom", 0, 2), Field("port", 4, 4), Field("status", 8, 4),
             Field("vcpu", 12, 4), Field("u_dom", 16, 2), Field("u_port", 20, 4)),
            ("port",)),
)}


for _c in COMMANDS.values():
    assert struct.calcsize(_c.layout) == _c.size == STRUCT_SIZE[_c.op], _c
    _sample = tuple(range(1, len(_c.fields) + 1))
    _mem: Memory = bytes(_c.size)
    for _f, _v in zip(_c.fields, _sample, strict=True):
        _mem = write_field(_mem, _f, _v)
    assert _mem == struct.pack(_c.layout, *_sample), _c  # fields agree with the layout
    assert set(_c.args) | {_c.result} - {""} <= set(_c.names), _c


def rows() -> frozenset[str]:
    """The model calls Xen's event-channel ABI can express."""
    return frozenset(COMMANDS)


def encode(row: str, args: tuple[int, ...]) -> tuple[Op, bytes]:
    """A model call, made by the calling domain itself, as ``(command, struct)``."""
    op, data = encode_struct(row, args)
    assert type(data) is bytes
    return op, data


def encode_struct(row: str, args: tuple[Any, ...]) -> tuple[Op, Memory]:
    """:func:`encode` for any arguments: bytes for ints, symbolic bytes for terms."""
    c = COMMANDS[row]
    data: Memory = bytes(c.size)
    if "dom" in c.by_name:
        data = write_field(data, c.by_name["dom"], DOMID_SELF)
    for name, value in zip(c.args, args, strict=True):
        data = write_field(data, c.field(name), value)
    return c.op, data


# --- the guest's side: what a guest puts down, read as the model's call ------------------
# Registers of event_channel_op (xen.h; Xen's arm64 hypercall ABI puts the number in x16
# and the arguments in x0.., x86-64 the number in rax and the arguments in rdi, rsi, ...):
# the hypercall number, the EVTCHNOP command, the guest pointer to the struct.
GUEST_REGS: dict[str, tuple[str, str, str]] = {
    "arm64": ("x16", "x0", "x1"), "x86_64": ("rax", "rdi", "rsi")}


def decode_call(regs: Mapping[str, Any], conv: str, mem: Memory) -> Call | DecodeError:
    """The model's call a guest makes with ``regs`` and, at the pointer, the struct
    ``mem``: the decoder of :mod:`spec.hypercalls.codec` for Xen's ABI, total and run
    unchanged on Z3 terms (the pointer itself is not modelled: ``mem`` is what it names).

    Another hypercall or an EVTCHNOP command the model has no call for is NOT_SUPPORTED
    (Xen: ``-ENOSYS``).  A ``dom`` other than DOMID_SELF asks for another domain, which
    only a privileged caller may (not modelled): DENIED.  A port field is 32 bits, the
    model's ports 16: a larger one is INVALID_PARAMETERS, as the model answers a port
    beyond its table.  A ``remote_dom`` is passed as it is (the model's VM id).
    """
    nr, cmd, _ = GUEST_REGS[conv]
    if regs[nr] != HYPERCALL_EVENT_CHANNEL_OP:
        return DecodeError(NOT_SUPPORTED, "not event_channel_op")
    op = logic.bits(regs[cmd], 0, 32)  # EVTCHNOP commands are C ints
    for c in COMMANDS.values():
        if op == int(c.op):
            return _read_call(c, mem)
    return DecodeError(NOT_SUPPORTED, "an EVTCHNOP command the model has no call for")


def _read_call(c: Command, mem: Memory) -> Call | DecodeError:
    row = BY_NAME[c.row]
    if "dom" in c.by_name and read_field(mem, c.by_name["dom"]) != DOMID_SELF:
        return DecodeError(row.error("DENIED"), "dom is another domain", row)
    values = []
    for name, arg in zip(c.args, row.args, strict=True):
        f = c.field(name)
        value = read_field(mem, f)
        if 8 * f.size > arg.width and logic.bits(value, arg.width, logic.WORD - arg.width) != 0:
            return DecodeError(INVALID_PARAMETERS, f"{name} beyond the model's {arg.kind}s",
                               row)
        values.append(value)
    return Call(row, tuple(values))


def call_reads_back(row: str, args: tuple[Any, ...], conv: str, ptr: Any = 0) -> Any:
    """The struct and registers :func:`encode` puts down for ``row(args)`` decode as that
    very call (a condition; ``args`` within the row's widths)."""
    op, mem = encode_struct(row, args)
    nr, cmd, at = GUEST_REGS[conv]
    call = decode_call({nr: HYPERCALL_EVENT_CHANNEL_OP, cmd: int(op), at: ptr}, conv, mem)
    if not isinstance(call, Call) or call.row.name != row:
        return False
    return logic.all_(a == b for a, b in zip(call.args, args, strict=True))


# EVTCHN_STATUS's value (abi.py: state | pending << 8 | masked << 9 | remote << 16 |
# remote_port << 32); this codec also puts the notification vCPU in bits 15:10, where the
# model has zeros (it notifies vCPU 0).  Pending and masked are not in evtchn_status.
_STATUS_SEEN = 0xFF | 0x3F << 10 | 0xFFFF << 16 | 0xFFFF_FFFF << 32


@attrs.frozen
class Reading:
    """Xen's answer in the model's terms."""

    ok: bool
    value: int = 0  # on success: the model call's result (bits outside ``seen`` unknown)
    seen: int = (1 << 64) - 1  # the bits of ``value`` the ABI shows
    errors: frozenset[str] = frozenset()  # on failure: the model errors the errno may be
    errno: int = 0  # on failure: Xen's errno (positive)
    text: str = ""  # Xen's answer as Xen says it, for reports

    def error_mask(self) -> int:
        """``errors`` as a bit set over the model's error codes (bit n: code -n)."""
        out = 0
        for name in self.errors:
            out |= 1 << -HV_ERRORS[name]
        return out


def stands_for(errno: Any, name: str) -> Any:
    """Whether Xen's ``errno`` (positive) may express the model error ``name``."""
    return logic.or_(*(errno == e for e in sorted(EXPRESSES[name])))


def read_value(row: str, out: Memory) -> Any:
    """What a successful call's struct says the model's result is (the bits of
    :func:`seen`; the rest zero).  A state the model has no name for (pirq, virq, ipi)
    keeps its number: it matches no model state, so such an answer is judged wrong, as it
    is (the port was not the suite's)."""
    c = COMMANDS[row]
    if c.result:
        return read_field(out, c.field(c.result))
    if c.op != Op.STATUS:
        return 0
    return _status_value(*_status_fields(c, out))


def _status_fields(c: Command, out: Memory) -> tuple[Any, Any, Any, Any]:
    f = c.by_name
    return (read_field(out, f["status"]), read_field(out, f["vcpu"]),
            read_field(out, f["u_dom"]), read_field(out, f["u_port"]))


def _status_value(stat: Any, vcpu: Any, udom: Any, uport: Any) -> Any:
    """EVTCHN_STATUS's value from the fields of ``struct evtchn_status``."""
    unbound, inter = stat == int(STAT_UNBOUND), stat == int(STAT_INTERDOMAIN)
    rvm = logic.ite(logic.or_(unbound, inter), udom, NONE)
    rport = logic.ite(inter, uport, NONE)
    shown_vcpu = logic.ite(logic.ult(0x3F, vcpu), 0x3F, vcpu)  # bits 15:10 saturate
    return (stat & 0xFF) | shown_vcpu << 10 | rvm << 16 | rport << 32


def seen(row: str) -> int:
    """The bits of the model's result that Xen's answer to ``row`` shows."""
    return _STATUS_SEEN if COMMANDS[row].op == Op.STATUS else logic.MASK64


def decode(row: str, rc: int, out: bytes) -> Reading:
    """Xen's return value ``rc`` (0 or -errno) and the struct after the call, read as the
    model's answer to ``row``."""
    c = COMMANDS[row]
    if rc < 0:
        errno = -rc
        name = next((k for k, v in ERRNO.items() if v == errno), f"errno {errno}")
        return Reading(False, errors=frozenset(m for m in EXPRESSES if stands_for(errno, m)),
                       errno=errno, text=f"-{name}")
    if rc != 0:
        return Reading(False, errno=0, text=f"{rc} (event_channel_op returns 0 or -errno)")
    out = out[:c.size].ljust(c.size, b"\0")
    if c.op == Op.STATUS:  # read_value's reading, with the fields kept for the text
        stat, vcpu, udom, uport = fields = _status_fields(c, out)
        name = Stat(stat).name.lower() if stat in iter(Stat) else str(stat)
        text = (f"0, status = {name}, vcpu = {vcpu}"
                + (f", dom = {udom}" if stat in (STAT_UNBOUND, STAT_INTERDOMAIN) else "")
                + (f", port = {uport}" if stat == STAT_INTERDOMAIN else ""))
        return Reading(True, _status_value(*fields), _STATUS_SEEN, text=text)
    value = read_value(row, out)
    if c.result:
        return Reading(True, value, text=f"0, {c.result} = {value}")
    return Reading(True, 0, text="0")


# --- Xen's side: the model's answer as Xen gives it --------------------------------------
# The errno a Xen that behaves as the model answers each model error with (one of those
# EXPRESSES allows for it; errno.h numbers).
ERRNO_OF = {"INVALID_PARAMETERS": ERRNO["EINVAL"], "DENIED": ERRNO["EPERM"],
            "NO_MEMORY": ERRNO["ENOSPC"]}
assert all(e in EXPRESSES[m] for m, e in ERRNO_OF.items())


def answer_rc(row: str, ret: Any) -> Any:
    """event_channel_op's return value (a word: 0 or -errno) for the model's result."""
    r = BY_NAME[row]
    rc: Any = logic.word(-ERRNO["EINVAL"])
    for name, errno in ERRNO_OF.items():
        rc = logic.ite(ret == logic.word(r.error(name)), logic.word(-errno), rc)
    return logic.ite(logic.bit(ret, 63), rc, 0)


def encode_answer(row: str, ret: Any, mem: Memory) -> tuple[Any, Memory]:
    """``(rc, struct after the call)`` for the model's result ``ret`` to ``row`` made with
    the struct ``mem``: the outputs written back where the header puts them (on failure
    the struct is not read)."""
    c = COMMANDS[row]
    out = mem
    if c.result:
        out = write_field(out, c.field(c.result), ret)
    elif c.op == Op.STATUS:
        for name, lo, width in (("status", 0, 8), ("vcpu", 10, 6), ("u_dom", 16, 16),
                                ("u_port", 32, 32)):
            out = write_field(out, c.field(name), logic.bits(ret, lo, width))
    return answer_rc(row, ret), out


def answer_reads_back(row: str, ret: Any, mem: Memory) -> Any:
    """The model's result ``ret``, answered as Xen answers and read back by
    :func:`decode`'s rules, is ``ret`` (a condition): a success is ``rc`` 0 and the
    struct shows ``ret`` in every bit :func:`seen`; a failure is a negative ``rc`` whose
    errno may stand for the model error that ``ret`` is."""
    rc, out = encode_answer(row, ret, mem)
    r = BY_NAME[row]
    errno = logic.sub(0, rc)
    failed = logic.and_(logic.bit(rc, 63), logic.or_(*(
        logic.and_(ret == logic.word(r.error(n)), stands_for(errno, n)) for n in EXPRESSES)))
    shown = (read_value(row, out) ^ ret) & seen(row) == 0
    return logic.ite(logic.bit(ret, 63), failed, logic.and_(rc == 0, shown))


assert all(BY_NAME[r].abi == "pvspec" for r in COMMANDS)
