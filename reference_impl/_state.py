"""The hypervisor's tables: compact, mutable, one machine word or byte per slot.

No per-frame Python objects: host-frame tables are ``array('H')``, each live VM's stage-2
table is three parallel rows (a flag ``bytearray`` and ``array`` s of frames and
transaction handles) allocated when the VM is created and dropped when it is destroyed,
and free frames / slots / ports live in :class:`LowestSet` s that find the lowest member
the way the spec chooses it.
"""

from __future__ import annotations

from array import array

from reference_impl._bitset import LowestSet
from reference_impl._common import (
    ABSENT,
    CLOSED,
    FREE,
    HYP,
    NONE,
    OFF,
    ON,
    RUNNING,
    TX_FREE,
)


class StateTables:
    """Sizes and tables; the handler mixins read and write these attributes directly."""

    def __init__(self, n_vms: int = 3, n_vcpus: int = 2, n_gframes: int = 3, n_hframes: int = 5,
                 n_hyp_frames: int = 1, n_tx: int = 2, n_ports: int = 2, n_devices: int = 2,
                 control_quota: int = 2) -> None:
        if not 2 <= n_vms <= 16 or n_vcpus < 1 or n_devices > 30:
            raise ValueError("unsupported configuration")
        if not (0 <= n_hyp_frames <= n_hframes < 2**32 and 0 <= n_tx < NONE
                and 0 <= n_ports < NONE and n_gframes >= 0 and n_devices >= 0):
            raise ValueError("configuration outside the implementation's table widths")
        self.config = {
            "n_vms": n_vms, "n_vcpus": n_vcpus, "n_gframes": n_gframes,
            "n_hframes": n_hframes, "n_hyp_frames": n_hyp_frames, "n_tx": n_tx,
            "n_ports": n_ports, "n_devices": n_devices, "control_quota": control_quota,
        }
        V, C, H, P = n_vms, n_vcpus, n_hframes, n_ports
        self.V, self.C, self.G, self.H, self.K = V, C, n_gframes, H, n_tx
        self.P, self.D, self.n_lines = P, n_devices, 1 + n_devices
        # VMs and vCPUs
        self.vm_state = bytearray(V)
        self.vm_state[0] = RUNNING
        self.quota = [control_quota] + [0] * (V - 1)
        self.owned = [0] * V  # host frames owned per VM, kept exact for the quota check
        self.vcpu = bytearray(V * C)
        self.vcpu[0] = ON
        self.can = bytearray(V * C)  # 1 where vm RUNNING and vCPU ON: the caller check
        self.can[0] = 1
        self.irq = [0] * (V * C)
        self.vcpu_entry = [0] * (V * C)  # where a vCPU starts (CPU_ON, power-down resume)
        self.vcpu_ctx = [0] * (V * C)
        # host frames
        self.owner = array("H", (HYP,)) * n_hyp_frames + array("H", (FREE,)) * (H - n_hyp_frames)
        self.frame_tx = array("H", (NONE,)) * H
        self.free_frames = LowestSet(H, full=True)
        for h in range(n_hyp_frames):
            self.free_frames.discard(h)
        # stage-2 rows, per VM (None while the VM is absent: it maps nothing)
        self.s2_flags: list[bytearray | None] = [None] * V
        self.s2_frame: list[array | None] = [None] * V
        self.s2_tx: list[array | None] = [None] * V
        self._alloc_rows(0)
        # transactions
        K = n_tx
        self.tx_kind = [TX_FREE] * K
        self.tx_owner = [NONE] * K
        self.tx_base = [0] * K
        self.tx_count = [0] * K
        self.tx_perm = [0] * K
        self.tx_borrowers = [0] * K
        self.tx_retrieved = [0] * K
        self.tx_frames: list[array | None] = [None] * K
        self.tx_rbase: list[dict[int, int] | None] = [None] * K  # borrower -> where mapped
        self.free_tx = LowestSet(K, full=True)
        self.live_tx: set[int] = set()
        # event channels, flattened vm * P + port
        self.ch_state = bytearray(V * P)
        self.ch_rvm = array("H", (NONE,)) * (V * P)
        self.ch_rport = array("H", (NONE,)) * (V * P)
        self.ch_pending = bytearray(V * P)
        self.ch_masked = bytearray(V * P)
        self.closed_ports = [LowestSet(P, full=True) for _ in range(V)]
        # devices
        self.dev_owner = [NONE] * n_devices

    def _alloc_rows(self, vm: int) -> None:
        G = self.G
        self.s2_flags[vm] = bytearray(G)
        self.s2_frame[vm] = array("I", bytes(4 * G))
        self.s2_tx[vm] = array("H", b"\xff\xff") * G

    def _drop_rows(self, vm: int) -> None:
        self.s2_flags[vm] = self.s2_frame[vm] = self.s2_tx[vm] = None

    def _refresh_can(self, vm: int) -> None:
        """Recompute the caller check for ``vm``'s vCPUs after a lifecycle or power change."""
        C = self.C
        running = self.vm_state[vm] == RUNNING
        for i in range(vm * C, vm * C + C):
            self.can[i] = running and self.vcpu[i] == ON

    def _live(self, vm: int) -> bool:
        return 0 <= vm < self.V and self.vm_state[vm] != ABSENT

    def _close_all_ports(self, vm: int) -> None:
        P = self.P
        lo, hi = vm * P, vm * P + P
        self.ch_state[lo:hi] = bytes(P) if CLOSED == 0 else bytes((CLOSED,)) * P
        self.ch_rvm[lo:hi] = array("H", (NONE,)) * P
        self.ch_rport[lo:hi] = array("H", (NONE,)) * P
        self.ch_pending[lo:hi] = bytes(P)
        self.ch_masked[lo:hi] = bytes(P)
        self.closed_ports[vm] = LowestSet(P, full=True)

    def _stop_vcpus(self, vm: int) -> None:
        C = self.C
        for i in range(vm * C, vm * C + C):
            self.vcpu[i] = OFF
            self.irq[i] = 0
            self.can[i] = 0
