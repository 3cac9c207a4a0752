"""Isolation invariants, each stated once as a predicate with the reason it matters.

State invariants are predicates ``inv(s)``; step properties relate a state to its
successor, ``prop(s, caller, call, s2, ret)``.  Both run on concrete states (checked after
every step of the state machines and the conformance oracle) and on Z3 terms (proved
inductive for every hypercall and event by :mod:`spec.prove`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from spec import logic
from spec.logic import and_, bit, implies, not_, or_, select, ule, ult
from spec.profile import DOMID_FIRST_RESERVED
from spec.state import (
    ABSENT,
    CLOSED,
    CONTROL,
    DONATE,
    FREE,
    HYP,
    INTERDOMAIN,
    LEND,
    NONE,
    OFF,
    ON,
    ON_PENDING,
    ORPHAN,
    PAUSED,
    PERM_ALL,
    RUNNING,
    SHARE,
    TX_FREE,
    UNBOUND,
    State,
    owned_count,
)

# What a guest can see of the hypervisor, and so what a black-box test can compare with
# the spec: call results, the access bits each VM has on its guest frames, each device's
# DMA access bits, pending interrupt lines, and which host frame backs a guest frame (no
# guest-visible ABI shows that last one).  Each rule names the views through which a
# violation of it becomes visible; a test that cannot see one of them cannot judge it.
VIEWS = frozenset({"result", "access", "dma", "irq", "frames"})


def _views(views: Iterable[str]) -> frozenset[str]:
    """The views a violation shows in, as a frozen set (a typed attrs converter)."""
    return frozenset(views)


@attrs.frozen
class Invariant:
    name: str
    why: str
    clause: str
    holds: Callable[[State], Any]
    visible_in: frozenset[str] = attrs.field(default=frozenset({"result"}), converter=_views)


@attrs.frozen
class StepProperty:
    name: str
    why: str
    clause: str
    # (s, caller, row-or-None, s2, ret, args): args are the decoded call's arguments
    # (empty for an event or a call that did not decode)
    holds: Callable[[State, Any, Any, State, Any, tuple[Any, ...]], Any]
    visible_in: frozenset[str] = attrs.field(default=frozenset({"result"}), converter=_views)
    # the ABI rows whose steps it constrains (None: every step, events included); the
    # prover makes obligations for these only, the oracle credits it only after them
    rows: frozenset[str] | None = None
    group: str = ""  # a functional postcondition's kind (spec.transitions.Post.group)


def _entries(s: State):
    """(vm, guest frame, flat index) of every stage-2 slot."""
    G = s.cfg.n_gframes
    return [(i // G, i % G, i) for i in range(s.cfg.n_vms * G)]


def _is_vm(s: State, x: Any) -> Any:
    return ult(x, s.cfg.n_vms)


def _tx_live(s: State, k: int) -> Any:
    return s.tx_kind[k] != TX_FREE


# --- state invariants --------------------------------------------------------------------------
def well_formed(s: State) -> Any:
    """Every field holds a value of its domain; invalid slots are canonical zeros."""
    cfg = s.cfg
    V, K, P = cfg.n_vms, cfg.n_tx, cfg.n_ports
    return and_(
        s.vm_state[CONTROL] == RUNNING,
        [or_(x == ABSENT, x == RUNNING, x == PAUSED) for x in s.vm_state],
        [or_(x == OFF, x == ON_PENDING, x == ON) for x in s.vcpu],
        [ult(x, 1 << cfg.n_lines) for x in s.irq],
        [ule(q, cfg.n_hframes) for q in s.quota],
        [or_(_is_vm(s, o), o == FREE, o == HYP, o == ORPHAN) for o in s.owner],
        [or_(ult(t, K), t == NONE) for t in s.frame_tx],
        [implies(not_(s.s2_valid[i]), and_(s.s2_frame[i] == 0, s.s2_perm[i] == 0,
                                           not_(s.s2_held[i]), s.s2_tx[i] == NONE))
         for _, _, i in _entries(s)],
        [implies(s.s2_valid[i], and_(ult(s.s2_frame[i], cfg.n_hframes),
                                     ule(s.s2_perm[i], PERM_ALL), bit(s.s2_perm[i], 0),
                                     or_(ult(s.s2_tx[i], K), s.s2_tx[i] == NONE)))
         for _, _, i in _entries(s)],
        [or_(x == TX_FREE, x == SHARE, x == LEND, x == DONATE) for x in s.tx_kind],
        [implies(s.tx_kind[k] == TX_FREE, and_(
            s.tx_owner[k] == NONE, s.tx_base[k] == 0, s.tx_count[k] == 0, s.tx_perm[k] == 0,
            s.tx_borrowers[k] == 0, s.tx_retrieved[k] == 0)) for k in range(K)],
        [implies(_tx_live(s, k), and_(
            or_(_is_vm(s, s.tx_owner[k]), s.tx_owner[k] == NONE),
            ule(1, s.tx_count[k]), ule(s.tx_count[k], cfg.n_gframes),
            ult(s.tx_base[k], cfg.n_gframes),
            ule(logic.add(s.tx_base[k], s.tx_count[k]), cfg.n_gframes),
            ult(s.tx_borrowers[k], 1 << V), s.tx_retrieved[k] & ~s.tx_borrowers[k] == 0,
            ule(s.tx_perm[k], PERM_ALL), bit(s.tx_perm[k], 0))) for k in range(K)],
        [or_(x == CLOSED, x == UNBOUND, x == INTERDOMAIN) for x in s.ch_state],
        [implies(s.ch_state[i] == CLOSED, and_(
            s.ch_rvm[i] == NONE, s.ch_rport[i] == NONE, not_(s.ch_pending[i]),
            not_(s.ch_masked[i]))) for i in range(V * P)],
        [implies(s.ch_state[i] == UNBOUND, and_(
            _offer_names(s, s.ch_rvm[i]), s.ch_rport[i] == NONE)) for i in range(V * P)],
        [or_(_is_vm(s, d), d == NONE) for d in s.dev_owner],
    )


def absent_vms_hold_nothing(s: State) -> Any:
    """A VM that does not exist runs nothing, maps nothing, owns nothing, has no port."""
    cfg = s.cfg
    out = []
    for v in range(cfg.n_vms):
        gone = s.vm_state[v] == ABSENT
        out.append(implies(gone, and_(
            s.quota[v] == 0,
            [and_(s.vcpu[s.vc(v, c)] == OFF, s.irq[s.vc(v, c)] == 0)
             for c in range(cfg.n_vcpus)],
            [not_(s.s2_valid[s.vg(v, g)]) for g in range(cfg.n_gframes)],
            [s.ch_state[s.vp(v, p)] == CLOSED for p in range(cfg.n_ports)],
        )))
    return and_(out)


def frame_owners_live(s: State) -> Any:
    """Ownership is a function onto live VMs: no frame belongs to a VM that is gone."""
    return and_(implies(_is_vm(s, o), select(s.vm_state, o, ABSENT) != ABSENT) for o in s.owner)


def hypervisor_frames_unmapped(s: State) -> Any:
    """No VM maps a frame the hypervisor keeps for itself (its own code and data)."""
    return and_(implies(s.s2_valid[i], select(s.owner, s.s2_frame[i], HYP) != HYP)
                for _, _, i in _entries(s))


def free_frames_unmapped(s: State) -> Any:
    """A free frame is mapped by nobody, so reusing it leaks nothing (XSA-218/230 class)."""
    return and_(implies(s.s2_valid[i], select(s.owner, s.s2_frame[i], FREE) != FREE)
                for _, _, i in _entries(s))


def mappings_authorized(s: State) -> Any:
    """A VM maps a frame only if it owns it or holds a live retrieval naming it."""
    out = []
    for v, _, i in _entries(s):
        f, t = s.s2_frame[i], s.s2_tx[i]
        own = and_(t == NONE, select(s.owner, f, FREE) == v)
        lent = and_(
            ult(t, s.cfg.n_tx), select(s.tx_kind, t, TX_FREE) != TX_FREE,
            select(s.tx_owner, t, NONE) != v, bit(select(s.tx_retrieved, t, 0), v),
            select(s.frame_tx, f, NONE) == t,
        )
        out.append(implies(s.s2_valid[i], or_(own, lent)))
    return and_(out)


def write_within_grant(s: State) -> Any:
    """A borrower's access never exceeds what the transaction granted (no RO mapped RW)."""
    return and_(
        implies(and_(s.s2_valid[i], s.s2_tx[i] != NONE),
                s.s2_perm[i] & ~select(s.tx_perm, s.s2_tx[i], 0) == 0)
        for _, _, i in _entries(s)
    )


def lent_frames_unreachable_by_owner(s: State) -> Any:
    """While a frame is lent or donated its owner's entry is suspended; a share keeps it."""
    out = []
    for _v, _, i in _entries(s):
        t = select(s.frame_tx, s.s2_frame[i], NONE)
        own_entry = and_(s.s2_valid[i], s.s2_tx[i] == NONE)
        kind = select(s.tx_kind, t, TX_FREE)
        away = and_(t != NONE, or_(kind == LEND, kind == DONATE))
        out.append(implies(own_entry, s.s2_held[i] == away))
        out.append(implies(and_(s.s2_valid[i], s.s2_tx[i] != NONE), not_(s.s2_held[i])))
    return and_(out)


def transactions_consistent(s: State) -> Any:
    """A live transaction names exactly the frames its owner maps at base..base+count."""
    cfg = s.cfg
    out = []
    for k in range(cfg.n_tx):
        live, o = _tx_live(s, k), s.tx_owner[k]
        base, n = s.tx_base[k], s.tx_count[k]
        for g in range(cfg.n_gframes):
            inside = and_(ule(base, g), ult(g, logic.add(base, n)))
            i = s.vg(o, g)
            out.append(implies(and_(live, _is_vm(s, o), inside), and_(
                select(s.s2_valid, i, False), select(s.s2_tx, i, NONE) == NONE,
                select(s.frame_tx, select(s.s2_frame, i, 0), NONE) == k)))
        named = [s.frame_tx[f] == k for f in range(cfg.n_hframes)]
        # owner alive: each named frame is the owner's and mapped in range
        for f in range(cfg.n_hframes):
            mapped = logic.any_(and_(
                select(s.s2_valid, s.vg(o, g), False), select(s.s2_tx, s.vg(o, g), 0) == NONE,
                select(s.s2_frame, s.vg(o, g), NONE) == f,
                ule(base, g), ult(g, logic.add(base, n)))
                for g in range(cfg.n_gframes))
            out.append(implies(named[f], and_(live, or_(
                and_(_is_vm(s, o), s.owner[f] == o, mapped),
                and_(o == NONE, s.owner[f] == ORPHAN)))))
        # an orphaned transaction is kept alive only by its remaining borrowers
        out.append(implies(and_(live, o == NONE),
                           and_(s.tx_retrieved[k] != 0, s.tx_borrowers[k] == s.tx_retrieved[k],
                                s.tx_kind[k] != DONATE)))
        out.append(implies(and_(live, s.tx_kind[k] == DONATE), s.tx_retrieved[k] == 0))
    for f in range(cfg.n_hframes):
        out.append(implies(s.owner[f] == ORPHAN, s.frame_tx[f] != NONE))
        out.append(implies(or_(s.owner[f] == FREE, s.owner[f] == HYP), s.frame_tx[f] == NONE))
    return and_(out)


def retrievals_recorded(s: State) -> Any:
    """Reclaim is impossible while a borrower maps the frame: every borrower mapping is
    recorded in its transaction's retrieved set (reclaim requires that set empty)."""
    cfg = s.cfg
    out = []
    for k in range(cfg.n_tx):
        for v in range(cfg.n_vms):
            holds = logic.any_(and_(s.s2_valid[s.vg(v, g)], s.s2_tx[s.vg(v, g)] == k)
                               for g in range(cfg.n_gframes))
            out.append(holds == bit(s.tx_retrieved[k], v))
            out.append(implies(bit(s.tx_borrowers[k], v), s.vm_state[v] != ABSENT))
        out.append(implies(_is_vm(s, s.tx_owner[k]), not_(bit(s.tx_borrowers[k],
                                                              s.tx_owner[k]))))
    return and_(out)


def mappings_injective(s: State) -> Any:
    """No frame is mapped twice by the same VM, so one unmap really removes access."""
    es = _entries(s)
    return and_(
        implies(and_(s.s2_valid[i], s.s2_valid[j]), s.s2_frame[i] != s.s2_frame[j])
        for vi, _, i in es for vj, _, j in es if vi == vj and i < j
    )


def quota_respected(s: State) -> Any:
    """No VM owns more frames than its quota (the control VM sets quotas)."""
    return and_(ule(owned_count(s, v), s.quota[v]) for v in range(s.cfg.n_vms))


def channels_paired(s: State) -> Any:
    """A bound port points at a bound port that points back, so a send has one receiver;
    the other end is another VM's unless the profile allows loopback channels."""
    cfg = s.cfg
    loop = cfg.profile.evtchn_loopback
    out = []
    for i in range(cfg.n_vms * cfg.n_ports):
        v = i // cfg.n_ports
        rvm, rport = s.ch_rvm[i], s.ch_rport[i]
        r = s.vp(rvm, rport)
        other = True if loop else rvm != v
        out.append(implies(s.ch_state[i] == INTERDOMAIN, and_(
            _is_vm(s, rvm), other, ult(rport, cfg.n_ports),
            select(s.vm_state, rvm, ABSENT) != ABSENT,
            select(s.ch_state, r, CLOSED) == INTERDOMAIN,
            select(s.ch_rvm, r, NONE) == v,
            select(s.ch_rport, r, NONE) == i % cfg.n_ports)))
        if not s.cfg.profile.evtchn_any_remote:  # an offer may name a domain yet to come
            out.append(implies(and_(s.ch_state[i] == UNBOUND, _is_vm(s, rvm)),
                               and_(select(s.vm_state, rvm, ABSENT) != ABSENT, other)))
        elif not loop:
            out.append(implies(s.ch_state[i] == UNBOUND, rvm != v))
    return and_(out)


def _offer_names(s: State, rvm: Any) -> Any:
    """What an unbound port may name as its remote: a VM, nobody (NONE: its peer is gone),
    or -- where the profile lets an offer name any domain -- any domain id."""
    if s.cfg.profile.evtchn_any_remote:
        return or_(ult(rvm, DOMID_FIRST_RESERVED), rvm == NONE)
    return or_(_is_vm(s, rvm), rvm == NONE)


def devices_owned_by_live_vms(s: State) -> Any:
    """A device belongs to at most one VM, and that VM exists (no DMA for a dead owner)."""
    return and_(implies(_is_vm(s, d), select(s.vm_state, d, ABSENT) != ABSENT) for d in s.dev_owner)


def device_irqs_isolated(s: State) -> Any:
    """A device interrupt is pending only at the VM that owns the device."""
    cfg = s.cfg
    return and_(
        implies(bit(s.irq[i], 1 + d), s.dev_owner[d] == i // cfg.n_vcpus)
        for i in range(cfg.n_vms * cfg.n_vcpus) for d in range(cfg.n_devices)
    )


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("well_formed", well_formed.__doc__ or "", "pvspec state", well_formed),
    Invariant("absent_vms_hold_nothing", absent_vms_hold_nothing.__doc__ or "",
              "pvspec VM lifecycle", absent_vms_hold_nothing, {"access", "dma"}),
    Invariant("frame_owners_live", frame_owners_live.__doc__ or "", "pvspec memory",
              frame_owners_live, {"frames"}),
    Invariant("hypervisor_frames_unmapped", hypervisor_frames_unmapped.__doc__ or "",
              "pvspec memory", hypervisor_frames_unmapped, {"frames"}),
    Invariant("free_frames_unmapped", free_frames_unmapped.__doc__ or "",
              "Xen XSA-218 / XSA-230", free_frames_unmapped, {"access"}),
    Invariant("mappings_authorized", mappings_authorized.__doc__ or "",
              "FF-A DEN0077 10.3 retrieve", mappings_authorized, {"access"}),
    Invariant("write_within_grant", write_within_grant.__doc__ or "",
              "FF-A DEN0077 memory access permissions", write_within_grant, {"access"}),
    Invariant("lent_frames_unreachable_by_owner", lent_frames_unreachable_by_owner.__doc__ or "",
              "FF-A DEN0077 10.2 lend / donate", lent_frames_unreachable_by_owner, {"access"}),
    Invariant("transactions_consistent", transactions_consistent.__doc__ or "",
              "FF-A DEN0077 10.2", transactions_consistent),
    Invariant("retrievals_recorded", retrievals_recorded.__doc__ or "",
              "FF-A DEN0077 10.5 reclaim", retrievals_recorded),
    Invariant("mappings_injective", mappings_injective.__doc__ or "", "Xen XSA-224 class",
              mappings_injective, {"frames"}),
    Invariant("quota_respected", quota_respected.__doc__ or "", "pvspec memory quota",
              quota_respected),
    Invariant("channels_paired", channels_paired.__doc__ or "",
              "Xen EVTCHNOP_bind_interdomain", channels_paired),
    Invariant("devices_owned_by_live_vms", devices_owned_by_live_vms.__doc__ or "",
              "pvspec passthrough", devices_owned_by_live_vms, {"dma"}),
    Invariant("device_irqs_isolated", device_irqs_isolated.__doc__ or "",
              "pvspec virtual interrupts", device_irqs_isolated, {"irq"}),
)


# --- step properties ----------------------------------------------------------------------------
def _same(a: Any, b: Any) -> Any:
    from spec.symbolic import same

    return same(a, b)


def failed_call_changes_nothing(s: State, caller: Any, row: Any, s2: State, ret: Any,
                                args: tuple[Any, ...] = ()) -> Any:
    """A call that returns an error leaves every part of the state as it was."""
    if row is None:
        return True
    if s is s2:  # the common case, concrete or symbolic: the very same state came back
        return True
    return implies(bit(ret, 63), _same(s, s2))


def lifecycle_by_control_only(s: State, caller: Any, row: Any, s2: State, ret: Any,
                              args: tuple[Any, ...] = ()) -> Any:
    """Only the control VM changes another VM's lifecycle state."""
    if row is None:
        return and_(a == b for a, b in zip(s.vm_state, s2.vm_state, strict=True))
    return implies(caller.vm != CONTROL,
                   and_(a == b for a, b in zip(s.vm_state, s2.vm_state, strict=True)))


def vcpus_follow_psci(s: State, caller: Any, row: Any, s2: State, ret: Any,
                      args: tuple[Any, ...] = ()) -> Any:
    """Each vCPU moves only along PSCI's edges: OFF->ON_PENDING->ON->OFF (or OFF when its VM
    is created with its boot vCPU ON, or is destroyed).  SYSTEM_OFF, SYSTEM_RESET and
    SYSTEM_RESET2 (DEN0022 5.1.9-5.1.11) act on the caller's VM only: every one of its vCPUs goes
    OFF, except that a reset starts the boot vCPU again (ON)."""
    out = []
    C = s.cfg.n_vcpus
    system = row is not None and row.handler in ("system_off", "system_reset", "system_reset2")
    reset = row is not None and row.handler in ("system_reset", "system_reset2")
    for i, (a, b) in enumerate(zip(s.vcpu, s2.vcpu, strict=True)):
        v = i // C
        created = and_(s.vm_state[v] == ABSENT, s2.vm_state[v] != ABSENT, i % C == 0)
        destroyed = s2.vm_state[v] == ABSENT
        edges = [
            a == b,
            and_(a == OFF, b == ON_PENDING),
            and_(a == ON_PENDING, b == ON),
            and_(a == ON, b == OFF),
            and_(created, a == OFF, b == ON),
            and_(destroyed, b == OFF),
        ]
        if system:
            edges.append(and_(caller.vm == v, b == (ON if reset and i % C == 0 else OFF)))
        out.append(or_(*edges))
    return and_(out)


def handles_stable(s: State, caller: Any, row: Any, s2: State, ret: Any,
                   args: tuple[Any, ...] = ()) -> Any:
    """A live handle keeps naming the same memory; a new one was not live before."""
    out = []
    for k in range(s.cfg.n_tx):
        both = and_(_tx_live(s, k), s2.tx_kind[k] != TX_FREE)
        out.append(implies(both, and_(
            s.tx_kind[k] == s2.tx_kind[k], s.tx_base[k] == s2.tx_base[k],
            s.tx_count[k] == s2.tx_count[k], s.tx_perm[k] == s2.tx_perm[k],
            or_(s.tx_owner[k] == s2.tx_owner[k], s2.tx_owner[k] == NONE))))
    return and_(out)


def send_reaches_only_peer(s: State, caller: Any, row: Any, s2: State, ret: Any,
                           args: tuple[Any, ...] = ()) -> Any:
    """An event send marks pending only the port bound to the sender's port."""
    if row is None or row.name != "EVTCHN_SEND":
        return True
    cfg = s.cfg
    out = []
    for i in range(cfg.n_vms * cfg.n_ports):
        changed = s.ch_pending[i] != s2.ch_pending[i]
        peer_of_caller = logic.any_(and_(
            logic.index_is(s.vp(caller.vm, p), j), s.ch_state[j] == INTERDOMAIN,
            s.ch_rvm[j] == i // cfg.n_ports, s.ch_rport[j] == i % cfg.n_ports)
            for j in range(cfg.n_vms * cfg.n_ports) for p in range(cfg.n_ports))
        out.append(implies(changed, peer_of_caller))
    return and_(out)


def bind_requires_consent(s: State, caller: Any, row: Any, s2: State, ret: Any,
                          args: tuple[Any, ...] = ()) -> Any:
    """Another VM's port becomes bound only if it was unbound and named the caller."""
    if row is None:
        return and_(implies(s2.ch_state[i] == INTERDOMAIN, s.ch_state[i] == INTERDOMAIN)
                    for i in range(len(s.ch_state)))
    cfg = s.cfg
    out = []
    for i in range(cfg.n_vms * cfg.n_ports):
        newly = and_(s.ch_state[i] != INTERDOMAIN, s2.ch_state[i] == INTERDOMAIN)
        theirs = i // cfg.n_ports != caller.vm
        out.append(implies(and_(newly, theirs),
                           and_(s.ch_state[i] == UNBOUND, s.ch_rvm[i] == caller.vm)))
    return and_(out)


def firmware_results_well_formed(s: State, caller: Any, row: Any, s2: State, ret: Any,
                                 args: tuple[Any, ...] = ()) -> Any:
    """A PSCI or SMCCC call answers what w0 can carry: on success a value below 2**31
    (bit 31 set means an error), else one of the call's own error codes or a decoder's
    NOT_SUPPORTED / INVALID_PARAMETERS.  Holds for every profile the standards allow, so
    a wrongly widened allowed set (spec/profile.py) fails this proof."""
    if row is None or row.abi == "pvspec":
        return True
    codes: set[int] = {row.error(e) for e in row.errors} | {-1, -2, row.error("DENIED")}
    return or_(ult(ret, 1 << 31), *(ret == logic.word(c) for c in sorted(codes)))


STEP_PROPERTIES: tuple[StepProperty, ...] = (
    StepProperty("failed_call_changes_nothing", failed_call_changes_nothing.__doc__ or "",
                 "pvspec ABI", failed_call_changes_nothing, {"result", "access", "dma", "irq"}),
    StepProperty("lifecycle_by_control_only", lifecycle_by_control_only.__doc__ or "",
                 "pvspec VM lifecycle", lifecycle_by_control_only),
    StepProperty("vcpus_follow_psci", vcpus_follow_psci.__doc__ or "", "PSCI DEN0022 5.5",
                 vcpus_follow_psci),
    StepProperty("handles_stable", handles_stable.__doc__ or "", "FF-A DEN0077 handles",
                 handles_stable),
    StepProperty("bind_requires_consent", bind_requires_consent.__doc__ or "",
                 "Xen EVTCHNOP_bind_interdomain", bind_requires_consent),
    StepProperty("send_reaches_only_peer", send_reaches_only_peer.__doc__ or "",
                 "Xen EVTCHNOP_send", send_reaches_only_peer, {"irq"}),
    StepProperty("firmware_results_well_formed", firmware_results_well_formed.__doc__ or "",
                 "SMCCC DEN0028 (w0: negative is an error); PSCI DEN0022 5.2.2",
                 firmware_results_well_formed, {"result"}),
)



# --- functional postconditions (stated beside each transition in spec.transitions) -------
def quotas_change_only_in_lifecycle(s: State, caller: Any, row: Any, s2: State, ret: Any,
                                    args: tuple[Any, ...] = ()) -> Any:
    """A quota changes only in a VM lifecycle call, and then only the named VM's: VM_CREATE
    sets it, VM_DESTROY zeroes it; no memory, channel, firmware call or event touches one
    (a quota that grows or shrinks elsewhere hands out or withholds host memory)."""
    if s.quota is s2.quota:
        return True
    if row is not None and row.name in ("VM_CREATE", "VM_DESTROY") and args:
        vm = args[0]
        return and_(implies(vm != v, a == b)
                    for v, (a, b) in enumerate(zip(s.quota, s2.quota, strict=True)))
    return and_(a == b for a, b in zip(s.quota, s2.quota, strict=True))


def _post_property(post: Any) -> StepProperty:
    """A transition's :class:`~spec.transitions.Post` as a step property over its rows."""
    from spec.hypercalls.abi import TABLE

    rows = frozenset(r.name for r in TABLE if r.handler == post.handler)

    def holds(s: State, caller: Any, row: Any, s2: State, ret: Any,
              args: tuple[Any, ...] = ()) -> Any:
        if row is None or row.name not in rows:
            return True
        if type(ret) is int and ret >> 63:  # a failure: the postcondition says nothing
            return True
        return implies(not_(bit(ret, 63)), post.holds(s, caller, s2, ret, *args))

    holds.__doc__ = post.why
    return StepProperty(f"post_{post.handler}", post.why, post.clause, holds,
                        post.visible_in, rows, post.group)


def _postconditions() -> tuple[StepProperty, ...]:
    from spec.transitions import POSTCONDITIONS

    return (StepProperty("quotas_change_only_in_lifecycle",
                         quotas_change_only_in_lifecycle.__doc__ or "",
                         "pvspec VM lifecycle (quotas); Xen XEN_DOMCTL_max_mem",
                         quotas_change_only_in_lifecycle, group="quota"),
            *(_post_property(p) for p in POSTCONDITIONS))


POSTCONDITIONS: tuple[StepProperty, ...] = _postconditions()
STEP_PROPERTIES += POSTCONDITIONS

BY_NAME = {i.name: i for i in INVARIANTS}
STEP_BY_NAME = {p.name: p for p in STEP_PROPERTIES}


def all_hold(s: State) -> Any:
    return and_(inv.holds(s) for inv in INVARIANTS)


def violated(s: State) -> list[str]:
    """Names of the invariants a concrete state breaks (empty when it is sound)."""
    return [inv.name for inv in INVARIANTS if not inv.holds(s)]
