"""Xen's event-channel ABI (``event_channel_op``) as a front end over the reference
hypervisor's event-channel calls.

A guest that speaks Xen's ABI makes one hypercall, ``event_channel_op`` (hypercall 32,
``xen/include/public/xen.h``; on arm64 the number in x16, the ``EVTCHNOP_*`` command in
x0 and a pointer to the command's struct in x1; on x86-64 in rax, rdi, rsi).  This front
end reads the struct the pointer names, makes the hypervisor's own call
(``EVTCHN_ALLOC_UNBOUND`` ... in the vendor range) from the same vCPU, writes the
command's outputs back into the struct and answers 0, or a negative errno
(``xen/include/public/errno.h``), in x0 (rax) as a 64-bit word.

Its own reading of ``xen/include/public/event_channel.h``, written apart from the spec
(reference_impl never imports it): the structs are little-endian with C's natural
alignment (``domid_t`` 16 bits, ``evtchn_port_t`` 32); a VM id is the Xen domain id,
``remote_dom`` passed as it is (``DOMID_SELF`` there is a VM id this hypervisor does not
have); a ``dom`` field may only be ``DOMID_SELF`` (naming another domain is for a
privileged caller, which is not modelled: -EPERM); a port is passed as it is, the
hypervisor refusing one beyond its 16-bit ports.  The hypervisor's errors become errnos:
INVALID_PARAMETERS -EINVAL, DENIED -EPERM, NO_MEMORY -ENOSPC, any other -EINVAL.  Outputs
are written back on success only.  EVTCHNOP_status reports the channel's state (the
hypervisor's states are numbered as ``EVTCHNSTAT_closed/unbound/interdomain``), vCPU 0
(the one the hypervisor notifies), the remote domain (0 for a closed port) and, for an
interdomain channel, the remote port; the pending and masked bits have no field.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from reference_impl._abi_constants import HV_ERRORS, ROWS

__all__ = ["ERRNO", "EVTCHNOP", "XenFrontEnd"]

HYPERCALL_EVENT_CHANNEL_OP = 32  # xen.h __HYPERVISOR_event_channel_op
DOMID_SELF = 0x7FF0  # xen.h
EVTCHNOP = {  # event_channel.h command numbers this front end carries out
    "bind_interdomain": 0, "close": 3, "send": 4, "status": 5, "alloc_unbound": 6,
    "unmask": 9,
}
ERRNO = {"EPERM": 1, "EFAULT": 14, "EINVAL": 22, "ENOSPC": 28, "ENOSYS": 38}  # errno.h
_ERRNO_OF = {HV_ERRORS["INVALID_PARAMETERS"]: ERRNO["EINVAL"],
             HV_ERRORS["DENIED"]: ERRNO["EPERM"], HV_ERRORS["NO_MEMORY"]: ERRNO["ENOSPC"]}
_STRUCT_SIZE = {  # sizeof(struct evtchn_*)
    "bind_interdomain": 12, "close": 4, "send": 4, "status": 24, "alloc_unbound": 8,
    "unmask": 4,
}
_CLOSED, _UNBOUND, _INTERDOMAIN = 0, 1, 2  # EVTCHNSTAT_*: the hypervisor's numbering
_VENDOR = {row[0]: row[1] for row in ROWS}
_M64 = (1 << 64) - 1


class _Failed(Exception):
    """An errno (positive) to answer with."""

    def __init__(self, errno: int, why: str) -> None:
        super().__init__(why)
        self.errno = errno


class XenFrontEnd:
    """Xen's ``event_channel_op`` of one hypervisor instance."""

    def __init__(self, hv: Any) -> None:
        self.hv = hv

    def call(self, vm: int, vcpu: int, regs: Mapping[str, int], mem: bytes
             ) -> tuple[dict[str, int], bytes]:
        """One ``event_channel_op`` from ``vm``'s vCPU ``vcpu``: ``regs`` x16 (hypercall
        number), x0 (command), x1 (pointer) -- or, from an x86-64 guest, rax, rdi, rsi --
        and ``mem`` the struct at the pointer.  Returns x0 (rax) -- 0 or -errno as a
        64-bit word -- and the struct after the call."""
        nr, first = ("rax", "rdi") if "rax" in regs and "x16" not in regs else ("x16", "x0")
        rc = "rax" if nr == "rax" else "x0"
        try:
            if regs.get(nr, 0) != HYPERCALL_EVENT_CHANNEL_OP:
                raise _Failed(ERRNO["ENOSYS"], "not event_channel_op")
            cmd = regs.get(first, 0) & 0xFFFF_FFFF  # a C int
            name = next((n for n, c in EVTCHNOP.items() if c == cmd), "")
            if not name:
                raise _Failed(ERRNO["ENOSYS"], f"EVTCHNOP {cmd}")
            if len(mem) < _STRUCT_SIZE[name]:
                raise _Failed(ERRNO["EFAULT"], "the struct is past the guest's memory")
            out = getattr(self, "_" + name)(vm, vcpu, bytearray(mem))
            return {rc: 0}, bytes(out)
        except _Failed as failed:
            return {rc: -failed.errno & _M64}, bytes(mem)

    # --- commands: each reads its struct, makes the call, writes the outputs -------------
    def _alloc_unbound(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        # struct evtchn_alloc_unbound { IN domid_t dom, remote_dom; OUT evtchn_port_t port; }
        dom, remote_dom = struct.unpack_from("<HH", s, 0)
        _self_only(dom)
        port = self._vendor("EVTCHN_ALLOC_UNBOUND", vm, vcpu, remote_dom)
        struct.pack_into("<I", s, 4, port & 0xFFFF_FFFF)
        return s

    def _bind_interdomain(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        # struct evtchn_bind_interdomain { IN domid_t remote_dom; IN evtchn_port_t
        #                                  remote_port; OUT evtchn_port_t local_port; }
        (remote_dom,) = struct.unpack_from("<H", s, 0)
        (remote_port,) = struct.unpack_from("<I", s, 4)
        port = self._vendor("EVTCHN_BIND_INTERDOMAIN", vm, vcpu, remote_dom, remote_port)
        struct.pack_into("<I", s, 8, port & 0xFFFF_FFFF)
        return s

    def _send(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        return self._port_only("EVTCHN_SEND", vm, vcpu, s)

    def _close(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        return self._port_only("EVTCHN_CLOSE", vm, vcpu, s)

    def _unmask(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        return self._port_only("EVTCHN_UNMASK", vm, vcpu, s)

    def _port_only(self, row: str, vm: int, vcpu: int, s: bytearray) -> bytearray:
        # struct evtchn_send / evtchn_close / evtchn_unmask { IN evtchn_port_t port; }
        (port,) = struct.unpack_from("<I", s, 0)
        self._vendor(row, vm, vcpu, port)
        return s

    def _status(self, vm: int, vcpu: int, s: bytearray) -> bytearray:
        # struct evtchn_status { IN domid_t dom; IN evtchn_port_t port; OUT uint32_t status,
        #   vcpu; OUT union { struct { domid_t dom; } unbound;
        #   struct { domid_t dom; evtchn_port_t port; } interdomain; ... } u; }
        # offsets: dom 0, port 4, status 8, vcpu 12, u.*.dom 16, u.interdomain.port 20
        dom, port = struct.unpack_from("<H2xI", s, 0)
        _self_only(dom)
        value = self._vendor("EVTCHN_STATUS", vm, vcpu, port)
        state, remote_vm, remote_port = value & 0xFF, value >> 16 & 0xFFFF, value >> 32
        struct.pack_into("<II", s, 8, state, 0)  # notified: vCPU 0
        struct.pack_into("<H", s, 16, 0 if state == _CLOSED else remote_vm)
        if state == _INTERDOMAIN:
            self._put_remote_port(s, remote_port & 0xFFFF_FFFF)
        return s

    def _put_remote_port(self, s: bytearray, port: int) -> None:
        struct.pack_into("<I", s, 20, port)  # u.interdomain.port

    # --- the hypervisor's own call --------------------------------------------------------
    def _vendor(self, row: str, vm: int, vcpu: int, *args: int) -> int:
        """The hypervisor's own call; its error fails the Xen call with the errno."""
        regs = {"x0": _VENDOR[row], **{f"x{i}": 0 for i in range(1, 8)}}
        for i, a in enumerate(args, 1):
            regs[f"x{i}"] = a
        ret = int(self.hv.hypercall(vm, vcpu, regs)["x0"])
        if ret >> 63:
            code = ret - (1 << 64)
            raise _Failed(_ERRNO_OF.get(code, ERRNO["EINVAL"]), f"{row}: {code}")
        return ret


def _self_only(dom: int) -> None:
    """A ``dom`` field naming another domain asks for a privilege not modelled."""
    if dom != DOMID_SELF:
        raise _Failed(ERRNO["EPERM"], f"dom {dom} is not DOMID_SELF")
