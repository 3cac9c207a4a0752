"""Planted bugs in the reference hypervisor: the differential machine catches each one.

Each mutant is a subclass with one classic defect; running the differential state
machine against it must end in a :class:`Divergence` (a different result, state or
probe, or a crash).  This shows that agreement with the spec is not vacuous.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from reference_impl import Hypervisor
from reference_impl._abi_constants import ROWS
from reference_impl._common import H_DEN, H_INV, H_NOMEM, HELD, TX_FREE, VALID

from .abstraction import Divergence, make_differential


class OffByOneGfn(Hypervisor):
    """MEM_POPULATE bounds check ``gfn <= n_gframes``: writes one entry past the table."""

    def h_mem_populate(self, vm: int, vcpu: int, gfn: int, perm: int) -> int:
        if gfn > self.G or not perm & 1:  # BUG: should be gfn >= G
            return H_INV
        flags = self.s2_flags[vm]
        if flags[gfn] & VALID:
            return H_DEN
        if self.owned[vm] >= self.quota[vm]:
            return H_NOMEM
        h = self.free_frames.pop_lowest()
        if h < 0:
            return H_NOMEM
        self.owner[h] = vm
        self.owned[vm] += 1
        flags[gfn] = (flags[gfn] & HELD) | VALID | perm
        self.s2_frame[vm][gfn] = h
        return 0


class OffByOnePort(Hypervisor):
    """EVTCHN_STATUS bounds check ``port <= n_ports`` on the flat port table: the last
    port index reads the next VM's port 0 (an information leak)."""

    def h_evtchn_status(self, vm: int, vcpu: int, port: int) -> int:
        if port > self.P:  # BUG: should be port >= P
            return H_INV
        i = vm * self.P + port
        if i >= len(self.ch_state):
            return H_INV
        return (self.ch_state[i] | self.ch_pending[i] << 8 | self.ch_masked[i] << 9
                | self.ch_rvm[i] << 16 | self.ch_rport[i] << 32)


class UnprivilegedPause(Hypervisor):
    """VM_PAUSE lost its control-VM-only check: any VM may pause another."""

    def _privileged(self, index: int) -> bool:
        return ROWS[index][0] != "VM_PAUSE" and super()._privileged(index)


class PortMask8(Hypervisor):
    """Port fields masked to 8 bits while the reserved check still starts at bit 16: a
    port number wraps modulo 256 instead of being rejected."""

    def _row_fields(self, index: int) -> tuple[tuple[int, int], ...]:
        fields = super()._row_fields(index)
        if ROWS[index][6] == (("port", 16),):
            return tuple((0xFF, reserved) for _, reserved in fields)
        return fields


class ReclaimWhileRetrieved(Hypervisor):
    """MEM_RECLAIM no longer checks that no borrower still maps the memory."""

    def h_mem_reclaim(self, vm: int, vcpu: int, k: int) -> int:
        if k >= self.K or self.tx_kind[k] == TX_FREE:
            return H_INV
        if self.tx_owner[k] != vm:  # BUG: tx_retrieved[k] != 0 not checked
            return H_DEN
        saved, self.tx_retrieved[k] = self.tx_retrieved[k], 0
        result = super().h_mem_reclaim(vm, vcpu, k)
        self.tx_retrieved[k] = saved if self.tx_kind[k] != TX_FREE else 0
        return result


MUTANTS = [OffByOneGfn, OffByOnePort, UnprivilegedPause, PortMask8, ReclaimWhileRetrieved]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_differential_machine_catches(mutant: type[Hypervisor]) -> None:
    machine = make_differential(factory=mutant)
    # no shrinking; up to 300 examples (a caught mutant stops at its first divergence),
    # so that catching it does not hang on one derandomized stream's luck
    fast = settings(settings(), phases=[Phase.explicit, Phase.generate],
                    max_examples=max(300, settings().max_examples))
    with pytest.raises(Divergence):
        run_state_machine_as_test(machine, settings=fast)


def test_unmutated_implementation_passes_the_same_run() -> None:
    fast = settings(settings(), phases=[Phase.explicit, Phase.generate], max_examples=20)
    run_state_machine_as_test(make_differential(), settings=fast)
