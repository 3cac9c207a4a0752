"""VM lifecycle hypercalls (control VM only): create, pause, resume, destroy."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from reference_impl._common import (
    ABSENT,
    CLOSED,
    CONTROL,
    FREE,
    H_DEN,
    H_INV,
    NONE,
    ON,
    ORPHAN,
    PAUSED,
    RUNNING,
    UNBOUND,
    VALID,
)

if TYPE_CHECKING:
    from reference_impl._memory import MemoryCalls

    _Base = MemoryCalls
else:
    _Base = object

_MAPPED_RUNS = re.compile(rb"[^\x00]+")  # runs of non-zero flag bytes: mapped entries


class LifecycleCalls(_Base):
    def h_vm_create(self, vm: int, vcpu: int, target: int, quota: int) -> int:
        if not 0 < target < self.V or quota > self.H:
            return H_INV
        if self.vm_state[target] != ABSENT:
            return H_DEN
        self.vm_state[target] = RUNNING
        self.quota[target] = quota
        self.vcpu[target * self.C] = ON
        self._refresh_can(target)
        self._alloc_rows(target)
        return 0

    def h_vm_pause(self, vm: int, vcpu: int, target: int) -> int:
        return self._set_lifecycle(target, RUNNING, PAUSED)

    def h_vm_resume(self, vm: int, vcpu: int, target: int) -> int:
        return self._set_lifecycle(target, PAUSED, RUNNING)

    def _set_lifecycle(self, target: int, before: int, after: int) -> int:
        if not 0 < target < self.V:
            return H_INV
        if self.vm_state[target] != before:
            return H_DEN
        self.vm_state[target] = after
        self._refresh_can(target)
        return 0

    def h_vm_destroy(self, vm: int, vcpu: int, target: int) -> int:
        if not 0 < target < self.V or target == CONTROL:
            return H_INV
        if self.vm_state[target] == ABSENT:
            return H_DEN
        self._destroy(target)
        return 0

    def _destroy(self, vm: int) -> None:
        """Tear ``vm`` down; a frame another VM still maps is orphaned, never freed.

        Transactions first (each live one ends, is orphaned, or just loses ``vm`` as a
        borrower), then the frames ``vm`` owns outright (found through its own stage-2
        mappings: every owned frame outside a transaction is mapped exactly once there),
        then its rows, vCPUs, ports, peers' ports and devices.
        """
        bit = 1 << vm
        ftx = self.frame_tx
        for k in sorted(self.live_tx):
            borrowers = self.tx_borrowers[k] & ~bit
            retrieved = self.tx_retrieved[k] & ~bit
            owner = self.tx_owner[k]
            frames = self.tx_frames[k] or ()
            if retrieved == 0 and owner in (vm, NONE):
                for h in frames:
                    self._set_owner(h, FREE)
                    ftx[h] = NONE
                self._free_tx(k)
            elif owner == vm:
                for h in frames:
                    self._set_owner(h, ORPHAN)
                self.tx_owner[k] = NONE
                self.tx_borrowers[k] = self.tx_retrieved[k] = retrieved
            else:
                self.tx_borrowers[k] = borrowers
                self.tx_retrieved[k] = retrieved
                rbase = self.tx_rbase[k]
                if rbase is not None:
                    rbase.pop(vm, None)
        flags, frames_row, txs = self.s2_flags[vm], self.s2_frame[vm], self.s2_tx[vm]
        if flags is not None and frames_row is not None and txs is not None:
            owner_of = self.owner
            for run in _MAPPED_RUNS.finditer(flags):
                for g in range(run.start(), run.end()):
                    if flags[g] & VALID and txs[g] == NONE:
                        h = frames_row[g]
                        if owner_of[h] == vm:
                            self._set_owner(h, FREE)
        self._drop_rows(vm)
        self._stop_vcpus(vm)
        self._close_all_ports(vm)
        P = self.P
        for i in range(self.V * P):
            if i // P != vm and self.ch_state[i] != CLOSED and self.ch_rvm[i] == vm:
                self.ch_state[i] = UNBOUND
                self.ch_rvm[i] = NONE
                self.ch_rport[i] = NONE
        for d, o in enumerate(self.dev_owner):
            if o == vm:
                self.dev_owner[d] = NONE
        self.vm_state[vm] = ABSENT
        self.quota[vm] = 0
