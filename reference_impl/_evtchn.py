"""Event-channel hypercalls (modelled on Xen's EVTCHNOP_*).

Ports are flattened ``vm * P + port``; each VM's closed ports sit in a
:class:`LowestSet`, so allocation takes the lowest closed port in O(log64 P) as the
spec does.  ``send`` is a hot path: a few byte-array reads and one interrupt-mask update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_impl._common import (
    ABSENT,
    CLOSED,
    H_DEN,
    H_INV,
    H_NOMEM,
    INTERDOMAIN,
    NONE,
    UNBOUND,
)

if TYPE_CHECKING:
    from reference_impl._state import StateTables

    _Base = StateTables
else:
    _Base = object


class EvtchnCalls(_Base):
    def h_evtchn_alloc_unbound(self, vm: int, vcpu: int, remote: int) -> int:
        if not (remote < self.V and self.vm_state[remote] != ABSENT) or remote == vm:
            return H_INV
        free = self.closed_ports[vm]
        p = free.lowest()
        if p < 0:
            return H_NOMEM
        free.discard(p)
        i = vm * self.P + p
        self.ch_state[i] = UNBOUND
        self.ch_rvm[i] = remote
        self.ch_rport[i] = NONE
        return p

    def h_evtchn_bind_interdomain(self, vm: int, vcpu: int, remote: int, rport: int) -> int:
        P = self.P
        if (not (remote < self.V and self.vm_state[remote] != ABSENT) or remote == vm
                or rport >= P):
            return H_INV
        r = remote * P + rport
        if self.ch_state[r] != UNBOUND or self.ch_rvm[r] != vm:
            return H_DEN
        free = self.closed_ports[vm]
        p = free.lowest()
        if p < 0:
            return H_NOMEM
        free.discard(p)
        i = vm * P + p
        self.ch_state[i] = self.ch_state[r] = INTERDOMAIN
        self.ch_rvm[i], self.ch_rvm[r] = remote, vm
        self.ch_rport[i], self.ch_rport[r] = rport, p
        return p

    def h_evtchn_send(self, vm: int, vcpu: int, port: int) -> int:
        """Mark the peer pending; interrupt its vCPU 0 unless the peer port is masked."""
        P = self.P
        if port >= P:
            return H_INV
        i = vm * P + port
        if self.ch_state[i] != INTERDOMAIN:  # closed or unbound: both INVALID_PARAMETERS
            return H_INV
        rvm = self.ch_rvm[i]
        r = rvm * P + self.ch_rport[i]
        self.ch_pending[r] = 1
        if not self.ch_masked[r]:
            self.irq[rvm * self.C] |= 1
        return 0

    def h_evtchn_close(self, vm: int, vcpu: int, port: int) -> int:
        """Close; an interdomain peer returns to unbound, accepting the caller again."""
        P = self.P
        if port >= P:
            return H_INV
        i = vm * P + port
        state = self.ch_state[i]
        if state == CLOSED:
            return H_INV
        if state == INTERDOMAIN:
            r = self.ch_rvm[i] * P + self.ch_rport[i]
            self.ch_state[r] = UNBOUND
            self.ch_rvm[r] = vm
            self.ch_rport[r] = NONE
        self.ch_state[i] = CLOSED
        self.ch_rvm[i] = self.ch_rport[i] = NONE
        self.ch_pending[i] = self.ch_masked[i] = 0
        self.closed_ports[vm].add(port)
        return 0

    def _own_port(self, vm: int, port: int) -> int:
        """Flat index of the caller's open port, or -1."""
        if port >= self.P:
            return -1
        i = vm * self.P + port
        return -1 if self.ch_state[i] == CLOSED else i

    def h_evtchn_mask(self, vm: int, vcpu: int, port: int) -> int:
        i = self._own_port(vm, port)
        if i < 0:
            return H_INV
        self.ch_masked[i] = 1
        return 0

    def h_evtchn_unmask(self, vm: int, vcpu: int, port: int) -> int:
        """Unmask; an event that arrived while masked is delivered now."""
        i = self._own_port(vm, port)
        if i < 0:
            return H_INV
        self.ch_masked[i] = 0
        if self.ch_pending[i]:
            self.irq[vm * self.C] |= 1
        return 0

    def h_evtchn_status(self, vm: int, vcpu: int, port: int) -> int:
        if port >= self.P:
            return H_INV
        i = vm * self.P + port
        return (self.ch_state[i] | self.ch_pending[i] << 8 | self.ch_masked[i] << 9
                | self.ch_rvm[i] << 16 | self.ch_rport[i] << 32)

    def h_evtchn_clear(self, vm: int, vcpu: int, port: int) -> int:
        i = self._own_port(vm, port)
        if i < 0:
            return H_INV
        self.ch_pending[i] = 0
        return 0
