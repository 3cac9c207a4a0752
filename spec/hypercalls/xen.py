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

The model's EVTCHN_MASK and EVTCHN_CLEAR have no command: in Xen the mask and pending bits
live in the shared-info page, written by the guest directly.  EVTCHN_STATUS's pending and
masked bits are not in ``evtchn_status`` either, so they are not judged through this ABI;
the notification vCPU it reports is (the model notifies vCPU 0, Xen's default binding).
"""

from __future__ import annotations

import enum
import struct

import attrs

from spec.hypercalls.abi import BY_NAME, HV_ERRORS
from spec.state import CLOSED, INTERDOMAIN, NONE, UNBOUND

__all__ = ["COMMANDS", "DOMID_SELF", "ERRNO", "EXPRESSES", "HYPERCALL_EVENT_CHANNEL_OP",
           "STRUCT_SIZE", "Command", "Op", "Reading", "Stat", "decode", "encode", "rows"]

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
class Command:
    row: str  # the model's call
    op: Op
    layout: str  # struct format of the command's struct
    size: int


COMMANDS: dict[str, Command] = {c.row: c for c in (
    # struct evtchn_alloc_unbound { domid_t dom, remote_dom; evtchn_port_t port; }
    Command("EVTCHN_ALLOC_UNBOUND", Op.ALLOC_UNBOUND, "<HHI", 8),
    # struct evtchn_bind_interdomain { domid_t remote_dom; evtchn_port_t remote_port,
    #                                  local_port; }
    Command("EVTCHN_BIND_INTERDOMAIN", Op.BIND_INTERDOMAIN, "<H2xII", 12),
    Command("EVTCHN_SEND", Op.SEND, "<I", 4),  # struct evtchn_send { port; }
    Command("EVTCHN_CLOSE", Op.CLOSE, "<I", 4),  # struct evtchn_close { port; }
    Command("EVTCHN_UNMASK", Op.UNMASK, "<I", 4),  # struct evtchn_unmask { port; }
    # struct evtchn_status { domid_t dom; evtchn_port_t port; uint32_t status, vcpu;
    #   union { {domid_t dom} unbound; {domid_t dom; evtchn_port_t port} interdomain;
    #           uint32_t pirq, virq; } u; }
    Command("EVTCHN_STATUS", Op.STATUS, "<H2xIIIH2xI", 24),
)}
for _c in COMMANDS.values():
    assert struct.calcsize(_c.layout) == _c.size == STRUCT_SIZE[_c.op], _c


def rows() -> frozenset[str]:
    """The model calls Xen's event-channel ABI can express."""
    return frozenset(COMMANDS)


def encode(row: str, args: tuple[int, ...]) -> tuple[Op, bytes]:
    """A model call, made by the calling domain itself, as ``(command, struct)``."""
    c = COMMANDS[row]
    if c.op == Op.ALLOC_UNBOUND:
        data = struct.pack(c.layout, DOMID_SELF, args[0], 0)
    elif c.op == Op.BIND_INTERDOMAIN:
        data = struct.pack(c.layout, args[0], args[1], 0)
    elif c.op == Op.STATUS:
        data = struct.pack(c.layout, DOMID_SELF, args[0], 0, 0, 0, 0)
    else:
        data = struct.pack(c.layout, args[0])
    return c.op, data


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


def decode(row: str, rc: int, out: bytes) -> Reading:
    """Xen's return value ``rc`` (0 or -errno) and the struct after the call, read as the
    model's answer to ``row``."""
    c = COMMANDS[row]
    if rc < 0:
        errno = -rc
        name = next((k for k, v in ERRNO.items() if v == errno), f"errno {errno}")
        return Reading(False, errors=frozenset(m for m, es in EXPRESSES.items()
                                               if errno in es),
                       errno=errno, text=f"-{name}")
    if rc != 0:
        return Reading(False, errno=0, text=f"{rc} (event_channel_op returns 0 or -errno)")
    fields = struct.unpack(c.layout, out[:c.size].ljust(c.size, b"\0"))
    if c.op == Op.ALLOC_UNBOUND:
        return Reading(True, fields[2], text=f"0, port = {fields[2]}")
    if c.op == Op.BIND_INTERDOMAIN:
        return Reading(True, fields[2], text=f"0, local_port = {fields[2]}")
    if c.op != Op.STATUS:
        return Reading(True, 0, text="0")
    _, _, stat, vcpu, udom, uport = fields
    rvm = rport = NONE
    if stat == STAT_UNBOUND:
        rvm = udom
    elif stat == STAT_INTERDOMAIN:
        rvm, rport = udom, uport
    # a state the model has no name for (pirq, virq, ipi) keeps its number: it matches no
    # model state, so the answer is judged wrong, as it is (the port was not the suite's)
    value = (stat & 0xFF) | (vcpu & 0x3F) << 10 | rvm << 16 | rport << 32
    if vcpu > 0x3F:
        value |= 0x3F << 10
    name = Stat(stat).name.lower() if stat in iter(Stat) else str(stat)
    text = (f"0, status = {name}, vcpu = {vcpu}"
            + (f", dom = {udom}" if stat in (STAT_UNBOUND, STAT_INTERDOMAIN) else "")
            + (f", port = {uport}" if stat == STAT_INTERDOMAIN else ""))
    return Reading(True, value, _STATUS_SEEN, text=text)


assert all(BY_NAME[r].abi == "pvspec" for r in COMMANDS)
