"""A stand-in for :class:`conformance.xen_machine.XenMachine`: dom0's event channels with
Xen 4.17's behaviour as read from ``xen/common/event_channel.c`` (written here from that
reading, not copied), so the Xen shim, the codec and the oracle can be tested in
milliseconds.  The real machine's tests (test_xen_machine.py, test_xen_target.py) check
the real thing; this one exists to plant bugs in.

Dom0's kernel holds ports 1..5 (a VIRQ and IPIs, as Linux's do); ports are valid in
buckets of 64, up to 4096 (the 2-level ABI).  ``bug`` plants one deviation:

* ``reuse-live``: allocation hands out a port that is already in use;
* ``close-keeps-peer``: closing one end leaves the other end bound;
* ``status-port``: status reports the remote port off by one;
* ``close-lies``: close reports success when Xen refused (the dom0 init's planted build);
* ``no-loopback``: binding a port of the caller's own domain fails (-EINVAL);
* ``racy-alloc``: two offers made at once get the same port.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import attrs

from spec.hypercalls.xen import DOMID_SELF, ERRNO, Op

FREE, RESERVED, UNBOUND, INTERDOMAIN, VIRQ, IPI = "free", "reserved", "unbound", \
    "interdomain", "virq", "ipi"
_STAT = {FREE: 0, RESERVED: 0, UNBOUND: 1, INTERDOMAIN: 2, VIRQ: 4, IPI: 5}
EINVAL, ESRCH, ENOSPC = -ERRNO["EINVAL"], -ERRNO["ESRCH"], -ERRNO["ENOSPC"]


@attrs.frozen
class Answer:
    rc: int
    out: bytes


class FakeXen:
    def __init__(self, bug: str = "") -> None:
        self.bug = bug
        self.started = False
        self.stopped = False
        self.valid = 64
        self.ports: dict[int, list[int | str]] = {0: [RESERVED, 0, 0]}
        self.ports.update({p: [VIRQ if p == 1 else IPI, 0, 0] for p in range(1, 6)})
        self.calls = 0
        self.rng = random.Random(0)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def _state(self, p: int) -> list[int | str]:
        return self.ports.get(p, [FREE, 0, 0])

    def _free_port(self) -> int:
        for p in range(4096):
            if p >= self.valid:
                self.valid += 64
            if self._state(p)[0] == FREE:
                return p
        return ENOSPC

    vcpus = 2

    def evtchn_ops(self, ops: Sequence[tuple[int, bytes]]) -> list[Answer]:
        return [self.evtchn_op(op, data) for op, data in ops]

    def evtchn_at_once(self, ops: Sequence[tuple[int, bytes]]) -> list[Answer]:
        """Calls at once: run one after the other, in an order chosen at random (Xen
        serialises them on the domain's event lock); ``racy-alloc`` hands two offers
        made at once the same port."""
        order = list(range(len(ops)))
        self.rng.shuffle(order)
        if self.bug == "racy-alloc" and all(op == Op.ALLOC_UNBOUND for op, _ in ops):
            first = self.evtchn_op(*ops[0])
            return [first, first]
        out: dict[int, Answer] = {i: self.evtchn_op(*ops[i]) for i in order}
        return [out[i] for i in range(len(ops))]

    def evtchn_op(self, op: int, data: bytes) -> Answer:
        self.calls += 1
        buf = bytearray(data)
        rc = self._op(Op(op), buf)
        if self.bug == "close-lies" and op == Op.CLOSE:
            rc = 0
        return Answer(rc, bytes(buf))

    def _op(self, op: Op, buf: bytearray) -> int:
        if op == Op.ALLOC_UNBOUND:
            dom, remote, _ = struct.unpack_from("<HHI", buf)
            if dom not in (0, DOMID_SELF) or remote not in (0, DOMID_SELF):
                return ESRCH  # only dom0 exists (Xen 4.17 checks the remote, measured)
            p = self._free_port()
            if p < 0:
                return p
            if self.bug == "reuse-live":
                p = max((q for q, st in self.ports.items() if st[0] == UNBOUND), default=p)
            self.ports[p] = [UNBOUND, 0 if remote == DOMID_SELF else remote, 0]
            struct.pack_into("<I", buf, 4, p)
            return 0
        if op == Op.BIND_INTERDOMAIN:
            rdom, rport, _ = struct.unpack_from("<H2xII", buf)
            rdom = 0 if rdom == DOMID_SELF else rdom
            if rdom != 0:
                return ESRCH
            lport = self._free_port()
            if lport < 0:
                return lport
            if rport >= self.valid:
                return EINVAL
            st = self._state(rport)
            if st[0] != UNBOUND or st[1] != 0 or (self.bug == "no-loopback"):
                return EINVAL
            self.ports[lport] = [INTERDOMAIN, 0, rport]
            self.ports[rport] = [INTERDOMAIN, 0, lport]
            struct.pack_into("<I", buf, 8, lport)
            return 0
        (port,) = struct.unpack_from("<I", buf, 4 if op == Op.STATUS else 0)
        if op == Op.STATUS:
            (dom,) = struct.unpack_from("<H", buf)
            if dom not in (0, DOMID_SELF):
                return ESRCH
        if port >= self.valid:
            return EINVAL
        st = self._state(port)
        if op == Op.STATUS:
            rport = int(st[2]) + (1 if self.bug == "status-port" else 0)
            struct.pack_into("<IIHxxI", buf, 8, _STAT[str(st[0])], 0, int(st[1]) & 0xFFFF,
                             rport if st[0] == INTERDOMAIN else 0)
            return 0
        if op == Op.UNMASK:
            return 0
        if op == Op.SEND:
            return 0 if st[0] in (INTERDOMAIN, UNBOUND, IPI) else EINVAL
        if op == Op.CLOSE:
            if st[0] in (FREE, RESERVED):
                return EINVAL
            if st[0] == INTERDOMAIN and self.bug != "close-keeps-peer":
                self.ports[int(st[2])] = [UNBOUND, 0, 0]
            self.ports.pop(port, None)
            return 0
        return -ERRNO["EPERM"]
