"""Memory hypercalls: populate / release and FF-A-style share, lend, donate, retrieve,
relinquish, reclaim.

Costs follow the pages a call touches, never the guest's size: each live transaction
keeps its host frames (``tx_frames``) and, per borrower, where it mapped them
(``tx_rbase``), so retrieve, relinquish and reclaim never scan a stage-2 table.
Range checks and range updates use slice operations on the per-VM ``bytearray`` /
``array`` rows, so they run at C speed.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from reference_impl._common import (
    ABSENT,
    DONATE,
    FREE,
    H_DEN,
    H_INV,
    H_NOMEM,
    HELD,
    LEND,
    NONE,
    SHARE,
    TX_FREE,
    VALID,
)

if TYPE_CHECKING:
    from reference_impl._state import StateTables

    _Base = StateTables
else:
    _Base = object

# translate tables over a whole flag range: set / clear the held bit
_SET_HELD = bytes(b | HELD for b in range(256))
_CLEAR_HELD = bytes(b & ~HELD for b in range(256))


class MemoryCalls(_Base):
    """Handlers ``h_<name>(vm, vcpu, *fields) -> result word`` for the memory rows."""

    def h_mem_populate(self, vm: int, vcpu: int, gfn: int, perm: int) -> int:
        if gfn >= self.G or not perm & 1:
            return H_INV
        flags = self.s2_flags[vm]
        if flags[gfn] & VALID:
            return H_DEN
        if self.owned[vm] >= self.quota[vm]:
            return H_NOMEM
        h = self.free_frames.lowest()
        if h < 0:
            return H_NOMEM
        self.free_frames.discard(h)
        self.owner[h] = vm
        self.owned[vm] += 1
        flags[gfn] = (flags[gfn] & HELD) | VALID | perm
        self.s2_frame[vm][gfn] = h
        return 0

    def h_mem_release(self, vm: int, vcpu: int, gfn: int) -> int:
        if gfn >= self.G:
            return H_INV
        flags = self.s2_flags[vm]
        if not flags[gfn] & VALID or self.s2_tx[vm][gfn] != NONE:
            return H_INV
        frames = self.s2_frame[vm]
        h = frames[gfn]
        if self.frame_tx[h] != NONE:
            return H_DEN
        flags[gfn] = 0
        frames[gfn] = 0
        self._set_owner(h, FREE)
        return 0

    def _set_owner(self, h: int, new: int) -> None:
        """Move host frame ``h`` to ``new``, keeping owned counts and the free set exact."""
        old = self.owner[h]
        if old < self.V:
            self.owned[old] -= 1
        elif old == FREE:
            self.free_frames.discard(h)
        if new < self.V:
            self.owned[new] += 1
        elif new == FREE:
            self.free_frames.add(h)
        self.owner[h] = new

    # --- transactions ---------------------------------------------------------------------
    def h_mem_share(self, vm: int, vcpu: int, base: int, n: int, who: int, perm: int) -> int:
        return self._transact(vm, SHARE, base, n, who, perm)

    def h_mem_lend(self, vm: int, vcpu: int, base: int, n: int, who: int, perm: int) -> int:
        return self._transact(vm, LEND, base, n, who, perm)

    def h_mem_donate(self, vm: int, vcpu: int, base: int, n: int, who: int, perm: int) -> int:
        return self._transact(vm, DONATE, base, n, who, perm)

    def _transact(self, vm: int, kind: int, base: int, n: int, who: int, perm: int) -> int:
        G, V = self.G, self.V
        if not (1 <= n <= G and base < G and base + n <= G):
            return H_INV
        if who == 0 or who >> V or who >> vm & 1:
            return H_INV
        state = self.vm_state
        for v in range(V):
            if who >> v & 1 and state[v] == ABSENT:
                return H_INV
        if kind == DONATE and (who - 1) & who:
            return H_INV
        if not perm & 1:
            return H_INV
        end = base + n
        flags, frames, txs = self.s2_flags[vm], self.s2_frame[vm], self.s2_tx[vm]
        if txs[base:end].count(NONE) != n:
            return H_DEN
        chosen = frames[base:end]
        ftx = self.frame_tx
        for b in flags[base:end]:
            if not b & VALID or perm & ~b:
                return H_DEN
        for h in chosen:
            if ftx[h] != NONE:
                return H_DEN
        k = self.free_tx.lowest()
        if k < 0:
            return H_NOMEM
        self.free_tx.discard(k)
        for h in chosen:
            ftx[h] = k
        if kind != SHARE:
            flags[base:end] = flags[base:end].translate(_SET_HELD)
        self.tx_kind[k] = kind
        self.tx_owner[k] = vm
        self.tx_base[k] = base
        self.tx_count[k] = n
        self.tx_perm[k] = perm
        self.tx_borrowers[k] = who
        self.tx_retrieved[k] = 0
        self.tx_frames[k] = chosen
        self.tx_rbase[k] = {}
        self.live_tx.add(k)
        return k

    def _free_tx(self, k: int) -> None:
        self.tx_kind[k] = TX_FREE
        self.tx_owner[k] = NONE
        self.tx_base[k] = self.tx_count[k] = self.tx_perm[k] = 0
        self.tx_borrowers[k] = self.tx_retrieved[k] = 0
        self.tx_frames[k] = None
        self.tx_rbase[k] = None
        self.live_tx.discard(k)
        self.free_tx.add(k)

    def _unmap_range(self, vm: int, base: int, n: int) -> None:
        end = base + n
        self.s2_flags[vm][base:end] = bytes(n)
        self.s2_frame[vm][base:end] = array("I", bytes(4 * n))
        self.s2_tx[vm][base:end] = array("H", b"\xff\xff") * n

    def h_mem_retrieve(self, vm: int, vcpu: int, k: int, base: int) -> int:
        if k >= self.K or self.tx_kind[k] == TX_FREE:
            return H_INV
        owner = self.tx_owner[k]
        if not self.tx_borrowers[k] >> vm & 1 or self.tx_retrieved[k] >> vm & 1:
            return H_DEN
        if owner == NONE:
            return H_DEN
        n = self.tx_count[k]
        end = base + n
        if not (base < self.G and end <= self.G):
            return H_INV
        flags = self.s2_flags[vm]
        if flags.count(0, base, end) != n:  # invalid entries are all-zero bytes
            return H_DEN
        kind = self.tx_kind[k]
        if kind == DONATE and self.owned[vm] + n > self.quota[vm]:
            return H_NOMEM
        chosen = self.tx_frames[k]
        assert chosen is not None
        mapping = bytes((VALID | self.tx_perm[k],)) * n
        if kind == DONATE:
            self._unmap_range(owner, self.tx_base[k], n)
            ftx, own = self.frame_tx, self.owner
            for h in chosen:
                own[h] = vm
                ftx[h] = NONE
            self.owned[owner] -= n
            self.owned[vm] += n
            flags[base:end] = mapping
            self.s2_frame[vm][base:end] = chosen
            self.s2_tx[vm][base:end] = array("H", b"\xff\xff") * n
            self._free_tx(k)
            return 0
        flags[base:end] = mapping
        self.s2_frame[vm][base:end] = chosen
        self.s2_tx[vm][base:end] = array("H", (k,)) * n
        self.tx_retrieved[k] |= 1 << vm
        rbase = self.tx_rbase[k]
        assert rbase is not None
        rbase[vm] = base
        return 0

    def h_mem_relinquish(self, vm: int, vcpu: int, k: int) -> int:
        if k >= self.K or self.tx_kind[k] == TX_FREE:
            return H_INV
        if not self.tx_retrieved[k] >> vm & 1:
            return H_DEN
        rbase = self.tx_rbase[k]
        assert rbase is not None
        self._unmap_range(vm, rbase.pop(vm), self.tx_count[k])
        left = self.tx_retrieved[k] & ~(1 << vm)
        self.tx_retrieved[k] = left
        if self.tx_owner[k] == NONE:  # orphaned: the borrower also loses its right
            self.tx_borrowers[k] &= ~(1 << vm)
            if left == 0:
                self._end_orphan(k)
        return 0

    def _end_orphan(self, k: int) -> None:
        ftx = self.frame_tx
        for h in self.tx_frames[k] or ():
            self._set_owner(h, FREE)
            ftx[h] = NONE
        self._free_tx(k)

    def h_mem_reclaim(self, vm: int, vcpu: int, k: int) -> int:
        if k >= self.K or self.tx_kind[k] == TX_FREE:
            return H_INV
        if self.tx_owner[k] != vm or self.tx_retrieved[k] != 0:
            return H_DEN
        ftx = self.frame_tx
        for h in self.tx_frames[k] or ():
            ftx[h] = NONE
        base = self.tx_base[k]
        end = base + self.tx_count[k]
        flags = self.s2_flags[vm]
        flags[base:end] = flags[base:end].translate(_CLEAR_HELD)
        self._free_tx(k)
        return 0
