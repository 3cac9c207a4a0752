"""The hypervisor's state: VMs, vCPUs, frames, stage-2 tables, transactions, ports, devices.

Everything is a frozen attrs record of flat tuples, indexed by small integers, so the same
value can hold Python ints (concrete runs) or Z3 terms (proofs, see :mod:`spec.symbolic`).
Two-dimensional tables are flattened row-major: ``vcpu[vm * n_vcpus + c]``,
``s2_*[vm * n_gframes + g]``, ``ch_*[vm * n_ports + p]``.

Sentinels are ordinary words, chosen above every valid index, so a register can carry
them and a stored value never needs a separate "present" flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from spec import logic
from spec.profile import DEFAULT as DEFAULT_PROFILE
from spec.profile import Profile

# --- sentinels ---------------------------------------------------------------------------
NONE = 0xFFFF  # no VM / no transaction / no port
FREE = 0xFFFF  # owner of an unallocated frame
HYP = 0xFFFE  # owner of a frame the hypervisor keeps for itself
ORPHAN = 0xFFFD  # owner of a frame whose owner died while a borrower still maps it
CONTROL = 0  # the privileged control VM (Xen's dom0, QNX's host, pKVM's host)

# --- enumerations ------------------------------------------------------------------------
ABSENT, RUNNING, PAUSED = 0, 1, 2  # VM lifecycle
OFF, ON_PENDING, ON = 0, 1, 2  # PSCI vCPU power states (DEN0022 5.1.4, 5.5)
CLOSED, UNBOUND, INTERDOMAIN = 0, 1, 2  # event-channel states, numbered as Xen's EVTCHNSTAT
TX_FREE, SHARE, LEND, DONATE = 0, 1, 2, 3  # memory transactions, modelled on FF-A
PERM_R, PERM_W, PERM_X = 1, 2, 4
PERM_ALL = PERM_R | PERM_W | PERM_X
IRQ_EVTCHN = 0  # interrupt line 0: the event-channel upcall; line 1 + d: device d

_CFG = {"symbolic": False}


@attrs.frozen
class Config:
    """Sizes of a model instance; proofs use small ones, simulations larger ones."""

    n_vms: int = 3
    n_vcpus: int = 2
    n_gframes: int = 3  # guest frames per VM
    n_hframes: int = 5  # host frames
    n_hyp_frames: int = 1  # host frames the hypervisor keeps (the lowest ones)
    n_tx: int = 2  # memory-transaction slots (handles)
    n_ports: int = 2  # event-channel ports per VM
    n_devices: int = 2
    control_quota: int = 2
    # the implementation's choices where PSCI/SMCCC allow several answers (spec/profile.py)
    profile: Profile = DEFAULT_PROFILE

    def __attrs_post_init__(self) -> None:
        sizes = self.sizes()
        if all(type(v) is int for v in sizes.values()) and not size_domain(sizes):
            raise ValueError(f"unsupported configuration {self}")

    def sizes(self) -> dict[str, int]:
        """The sizes alone (what a target is reset with; the profile is the oracle's)."""
        return {a.name: getattr(self, a.name) for a in attrs.fields(Config)
                if a.name != "profile"}

    @property
    def n_lines(self) -> int:
        """Interrupt lines per vCPU: the event-channel upcall plus one per device."""
        return 1 + self.n_devices


MAX_SIZE = 1 << 12  # every size, so that no index reaches a sentinel (NONE, FREE, ...)


def size_domain(sizes: dict[str, Any]) -> Any:
    """The sizes a model may have: 2 to 16 VMs (a transaction's borrowers are a mask of
    VMs), at least one vCPU, at most 30 devices (a vCPU's pending lines are a mask of one
    upcall line and one per device), the control VM's quota within the host frames (a
    larger one breaks well_formed at boot: the all-sizes proof of the boot state found
    it), every size below the sentinels.  Checked on a concrete Config, assumed by the
    all-sizes proofs."""
    return logic.and_(
        logic.ule(2, sizes["n_vms"]), logic.ule(sizes["n_vms"], 16),
        logic.ule(1, sizes["n_vcpus"]), logic.ule(sizes["n_devices"], 30),
        logic.ule(sizes["n_hyp_frames"], sizes["n_hframes"]),
        logic.ule(sizes["control_quota"], sizes["n_hframes"]),
        *(logic.ule(v, MAX_SIZE) for v in sizes.values()))


# The shape of every table: its rows and (for a per-VM table) its columns, as Config
# sizes.  Slot ``(vm, c)`` of a per-VM table is flat slot ``vm * columns + c``.
SHAPES: dict[str, tuple[str, str | None]] = {
    "vm_state": ("n_vms", None), "quota": ("n_vms", None), "owned": ("n_vms", None),
    **{f: ("n_vms", "n_vcpus") for f in ("vcpu", "irq", "vcpu_entry", "vcpu_ctx")},
    "owner": ("n_hframes", None), "frame_tx": ("n_hframes", None),
    **{f: ("n_vms", "n_gframes") for f in ("s2_valid", "s2_frame", "s2_perm", "s2_held",
                                          "s2_tx")},
    **{f: ("n_tx", None) for f in ("tx_kind", "tx_owner", "tx_base", "tx_count", "tx_perm",
                                  "tx_borrowers", "tx_retrieved")},
    **{f: ("n_vms", "n_ports") for f in ("ch_state", "ch_rvm", "ch_rport", "ch_pending",
                                        "ch_masked")},
    "dev_owner": ("n_devices", None),
}


@attrs.frozen(slots=False)  # a __dict__, so evolve is two dict updates (see evolve)
class State:
    cfg: Config = attrs.field(metadata=_CFG)
    vm_state: tuple[Any, ...]
    quota: tuple[Any, ...]
    # host frames each VM owns: a ghost counter the transitions keep, so that the quota
    # rule reads without counting (invariant frames_counted ties it to ``owner``)
    owned: tuple[Any, ...]
    vcpu: tuple[Any, ...]  # power state per (vm, vcpu)
    irq: tuple[Any, ...]  # pending interrupt lines per (vm, vcpu), a bit mask
    # where and with which context id the vCPU starts running (PSCI CPU_ON, or a power-down
    # CPU_SUSPEND's resume point), per (vm, vcpu)
    vcpu_entry: tuple[Any, ...]
    vcpu_ctx: tuple[Any, ...]
    owner: tuple[Any, ...]  # per host frame: vm id, FREE, HYP or ORPHAN
    frame_tx: tuple[Any, ...]  # per host frame: the live transaction naming it, or NONE
    s2_valid: tuple[Any, ...]  # per (vm, guest frame)
    s2_frame: tuple[Any, ...]
    s2_perm: tuple[Any, ...]
    s2_held: tuple[Any, ...]  # owner's entry suspended by a lend/donate (pKVM page state)
    s2_tx: tuple[Any, ...]  # NONE for the owner's own mapping, else the transaction
    tx_kind: tuple[Any, ...]
    tx_owner: tuple[Any, ...]  # NONE once the owner died (orphaned)
    tx_base: tuple[Any, ...]  # owner's first guest frame
    tx_count: tuple[Any, ...]
    tx_perm: tuple[Any, ...]
    tx_borrowers: tuple[Any, ...]  # bit mask of VMs that may retrieve
    tx_retrieved: tuple[Any, ...]  # bit mask of VMs that hold a retrieval
    ch_state: tuple[Any, ...]
    ch_rvm: tuple[Any, ...]
    ch_rport: tuple[Any, ...]
    ch_pending: tuple[Any, ...]
    ch_masked: tuple[Any, ...]
    dev_owner: tuple[Any, ...]

    # --- index helpers (work on ints and on Z3 words) -----------------------------------
    # (each with _flat_index's concrete fast path inlined: they run on every step)
    def vc(self, vm: Any, c: Any) -> Any:
        cfg = self.cfg
        w, rows = cfg.n_vcpus, cfg.n_vms
        if type(vm) is int and type(c) is int and type(w) is int:
            return vm * w + c if 0 <= c < w and 0 <= vm < rows else rows * w
        return _flat_index(vm, c, cfg.n_vcpus, cfg.n_vms)

    def vg(self, vm: Any, g: Any) -> Any:
        cfg = self.cfg
        w, rows = cfg.n_gframes, cfg.n_vms
        if type(vm) is int and type(g) is int and type(w) is int:
            return vm * w + g if 0 <= g < w and 0 <= vm < rows else rows * w
        return _flat_index(vm, g, cfg.n_gframes, cfg.n_vms)

    def vp(self, vm: Any, p: Any) -> Any:
        cfg = self.cfg
        w, rows = cfg.n_ports, cfg.n_vms
        if type(vm) is int and type(p) is int and type(w) is int:
            return vm * w + p if 0 <= p < w and 0 <= vm < rows else rows * w
        return _flat_index(vm, p, cfg.n_ports, cfg.n_vms)

    def evolve(self, **changes: Any) -> State:
        """``attrs.evolve(self, **changes)`` in a quarter of the time: every transition
        ends here, so it dominates a concrete step.  The new record's ``__dict__`` is the
        old one's, updated; State has no validators or converters for __init__ to run."""
        if not _FIELDS.issuperset(changes):
            raise TypeError(f"State has no field {sorted(set(changes) - _FIELDS)}")
        new = _new(State)
        d = new.__dict__
        d.update(self.__dict__)
        d.update(changes)
        return new


_FIELDS = frozenset(a.name for a in attrs.fields(State))
_new = object.__new__


def _flat_index(row: Any, col: Any, width: int, rows: int) -> Any:
    """``row * width + col``; with a symbolic part, an :class:`~spec.logic.Index2` that
    keeps row and column apart, so proofs compare coordinates instead of doing index
    arithmetic on 64-bit words.

    A row or column outside the table names no slot, in both interpretations: concretely
    the index is then ``rows * width`` (one past the end, which :func:`spec.logic.select`
    and :func:`~spec.logic.store` treat as out of range, and a plain ``seq[i]`` refuses),
    never the next row's slot (see spec.logic, "one meaning for every index")."""
    if type(row) is int and type(col) is int and type(width) is int:  # the fast path
        if 0 <= col < width and 0 <= row < rows:
            return row * width + col
        return rows * width
    if logic.is_sym(row) or logic.is_sym(col) or logic.is_sym(width):
        return logic.Index2(row, col, width, rows)
    row, col = int(row), int(col)
    return row * width + col if 0 <= col < width and 0 <= row < rows else rows * width


def initial(cfg: Config | None = None) -> State:
    """The boot state: only the control VM runs, on vCPU 0; hypervisor frames are reserved.

    Written slot by slot (:func:`spec.logic.build`), so a ``cfg`` of symbolic sizes gives
    the boot state of every size at once (the all-sizes proof that it is sound)."""
    cfg = cfg or Config()
    first: dict[str, Callable[..., Any]] = {  # the slots that depend on their index;
        # every other slot is its constant
        "vm_state": lambda v: logic.ite(v == CONTROL, RUNNING, ABSENT),
        "quota": lambda v: logic.ite(v == CONTROL, cfg.control_quota, 0),
        "vcpu": lambda v, c: logic.ite(logic.and_(v == CONTROL, c == 0), ON, OFF),
        "owner": lambda f: logic.ite(logic.ult(f, cfg.n_hyp_frames), HYP, FREE),
    }
    tables = {}
    for name, (rows, cols) in SHAPES.items():
        n, m = getattr(cfg, rows), None if cols is None else getattr(cfg, cols)
        if name in first:
            tables[name] = logic.build(n, first[name], m)
        elif type(n) is int and type(m) in (int, type(None)):
            tables[name] = (_BOOT[name],) * (n * (1 if m is None else m))
        else:
            tables[name] = logic.build(n, lambda *_, x=_BOOT[name]: x, m)
    return State(cfg=cfg, **tables)


# The boot value of the slots initial() does not write one by one.
_BOOT: dict[str, Any] = {
    "owned": 0, "irq": 0, "vcpu_entry": 0, "vcpu_ctx": 0, "frame_tx": NONE,
    "s2_valid": False, "s2_frame": 0, "s2_perm": 0, "s2_held": False, "s2_tx": NONE,
    "tx_kind": TX_FREE, "tx_owner": NONE, "tx_base": 0, "tx_count": 0, "tx_perm": 0,
    "tx_borrowers": 0, "tx_retrieved": 0, "ch_state": CLOSED, "ch_rvm": NONE,
    "ch_rport": NONE, "ch_pending": False, "ch_masked": False, "dev_owner": NONE,
}


# --- what the hardware enforces: derived views, defined once ------------------------------
_SCALAR = (bool, int)
_SCALARS = frozenset(_SCALAR)


def access(s: State, vm: Any, g: Any) -> Any:
    """Permission bits VM ``vm`` has on its guest frame ``g`` through its stage-2 table."""
    cfg = s.cfg
    if type(vm) is int and type(g) is int and type(cfg.n_gframes) is int:  # concrete: the
        # formula below, evaluated directly
        i = vm * cfg.n_gframes + g
        valid = s.s2_valid[i] if 0 <= i < len(s.s2_valid) else False
        held = s.s2_held[i] if 0 <= i < len(s.s2_held) else False
        if type(valid) in _SCALAR and type(held) in _SCALAR:
            live = vm < cfg.n_vms and g < cfg.n_gframes and valid and not held
            return (s.s2_perm[i] if 0 <= i < len(s.s2_perm) else 0) if live else 0
    inside = logic.and_(logic.ult(vm, cfg.n_vms), logic.ult(g, cfg.n_gframes))
    i = s.vg(vm, g)
    live = logic.and_(inside, logic.select(s.s2_valid, i, False),
                      logic.not_(logic.select(s.s2_held, i, False)))
    return logic.ite(live, logic.select(s.s2_perm, i, 0), 0)


def access_table(s: State) -> tuple[Any, ...]:
    """``access(s, vm, g)`` for every VM and guest frame, row-major: what an observer
    compares after every step.  On a concrete state, the same formula over whole
    columns at once (a quarter of the time of one call a slot)."""
    cfg = s.cfg
    valid, held, perm = s.s2_valid, s.s2_held, s.s2_perm
    n = cfg.n_vms * cfg.n_gframes
    if len(valid) == len(held) == len(perm) == n and _SCALARS.issuperset(
            map(type, valid)) and _SCALARS.issuperset(map(type, held)):
        return tuple([p if v and not h else 0 for v, h, p in zip(valid, held, perm,
                                                                   strict=True)])
    return tuple(access(s, vm, g) for vm in range(cfg.n_vms) for g in range(cfg.n_gframes))


def dma_access(s: State, dev: Any, g: Any) -> Any:
    """Permission bits device ``dev`` has on guest frame ``g`` of its VM (IOMMU view).

    The IOMMU shares the owning VM's stage-2 table (as pKVM and Arm SMMUv3 stage-2 do), so
    a device reaches exactly what its VM reaches, and nothing when unassigned.
    """
    owner = logic.select(s.dev_owner, dev)
    assigned = logic.ult(owner, s.cfg.n_vms)
    return logic.ite(assigned, access(s, owner, g), 0)


def owned_count(s: State, vm: Any) -> Any:
    """Host frames owned by ``vm``, counted: what the ghost counter ``s.owned[vm]`` must
    equal (a count has no reading for every size: :class:`spec.logic.Unbounded`)."""
    return logic.count(o == vm for o in s.owner)
