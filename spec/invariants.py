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
from spec.logic import and_, bit, every, implies, not_, or_, select, ule, ult
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


def _is_vm(s: State, x: Any) -> Any:
    return ult(x, s.cfg.n_vms)


def _s2(s: State) -> tuple[Any, ...]:
    """The stage-2 tables, in the order the predicates below take their slots."""
    return s.s2_valid, s.s2_frame, s.s2_perm, s.s2_held, s.s2_tx


def _tx(s: State) -> tuple[Any, ...]:
    """The transaction tables, in the order the predicates below take their slots."""
    return (s.tx_kind, s.tx_owner, s.tx_base, s.tx_count, s.tx_perm, s.tx_borrowers,
            s.tx_retrieved)


def _ch(s: State) -> tuple[Any, ...]:
    """The port tables, in the order the predicates below take their slots."""
    return s.ch_state, s.ch_rvm, s.ch_rport, s.ch_pending, s.ch_masked


# --- state invariants --------------------------------------------------------------------------
# Each is stated once over every slot (spec.logic.every / forall): a loop on a model of
# given sizes, a quantifier over a model of every size.
def well_formed(s: State) -> Any:
    """Every field holds a value of its domain; invalid slots are canonical zeros."""
    cfg = s.cfg
    K = cfg.n_tx

    def s2_ok(i: Any, valid: Any, frame: Any, perm: Any, held: Any, tx: Any) -> Any:
        return and_(
            implies(not_(valid), and_(frame == 0, perm == 0, not_(held), tx == NONE)),
            implies(valid, and_(ult(frame, cfg.n_hframes), ule(perm, PERM_ALL), bit(perm, 0),
                                or_(ult(tx, K), tx == NONE))))

    def tx_ok(k: Any, kind: Any, o: Any, base: Any, n: Any, perm: Any, who: Any, got: Any
              ) -> Any:
        return and_(
            or_(kind == TX_FREE, kind == SHARE, kind == LEND, kind == DONATE),
            implies(kind == TX_FREE, and_(o == NONE, base == 0, n == 0, perm == 0, who == 0,
                                          got == 0)),
            implies(kind != TX_FREE, and_(
                or_(_is_vm(s, o), o == NONE), ule(1, n), ule(n, cfg.n_gframes),
                ult(base, cfg.n_gframes), ule(logic.add(base, n), cfg.n_gframes),
                ult(who, logic.shl(1, cfg.n_vms)), got & ~who == 0,
                ule(perm, PERM_ALL), bit(perm, 0))))

    def ch_ok(i: Any, state: Any, rvm: Any, rport: Any, pending: Any, masked: Any) -> Any:
        return and_(
            or_(state == CLOSED, state == UNBOUND, state == INTERDOMAIN),
            implies(state == CLOSED, and_(rvm == NONE, rport == NONE, not_(pending),
                                          not_(masked))),
            implies(state == UNBOUND, and_(_offer_names(s, rvm), rport == NONE)))

    return and_(
        select(s.vm_state, CONTROL, ABSENT) == RUNNING,
        every(lambda v, x: or_(x == ABSENT, x == RUNNING, x == PAUSED), s.vm_state),
        every(lambda i, x: or_(x == OFF, x == ON_PENDING, x == ON), s.vcpu),
        every(lambda i, x: ult(x, logic.shl(1, cfg.n_lines)), s.irq),
        every(lambda v, q: ule(q, cfg.n_hframes), s.quota),
        every(lambda f, o: or_(_is_vm(s, o), o == FREE, o == HYP, o == ORPHAN), s.owner),
        every(lambda f, t: or_(ult(t, K), t == NONE), s.frame_tx),
        every(s2_ok, *_s2(s)),
        every(tx_ok, *_tx(s)),
        every(ch_ok, *_ch(s)),
        every(lambda d, o: or_(_is_vm(s, o), o == NONE), s.dev_owner),
    )


def absent_vms_hold_nothing(s: State) -> Any:
    """A VM that does not exist runs nothing, maps nothing, owns nothing, has no port."""
    cfg = s.cfg

    def gone(v: Any) -> Any:
        return select(s.vm_state, v, ABSENT) == ABSENT

    return and_(
        every(lambda v, state, q, o: implies(state == ABSENT, and_(q == 0, o == 0)),
              s.vm_state, s.quota, s.owned),
        every(lambda i, power, irq: implies(gone(logic.row(i, cfg.n_vcpus)),
                                            and_(power == OFF, irq == 0)), s.vcpu, s.irq),
        every(lambda i, valid: implies(gone(logic.row(i, cfg.n_gframes)), not_(valid)),
              s.s2_valid),
        every(lambda i, state: implies(gone(logic.row(i, cfg.n_ports)), state == CLOSED),
              s.ch_state),
    )


def frame_owners_live(s: State) -> Any:
    """Ownership is a function onto live VMs: no frame belongs to a VM that is gone."""
    return every(lambda f, o: implies(_is_vm(s, o), select(s.vm_state, o, ABSENT) != ABSENT),
                 s.owner)


def hypervisor_frames_unmapped(s: State) -> Any:
    """No VM maps a frame the hypervisor keeps for itself (its own code and data)."""
    return every(lambda i, valid, frame: implies(valid, select(s.owner, frame, HYP) != HYP),
                 s.s2_valid, s.s2_frame)


def free_frames_unmapped(s: State) -> Any:
    """A free frame is mapped by nobody, so reusing it leaks nothing (XSA-218/230 class)."""
    return every(lambda i, valid, frame: implies(valid, select(s.owner, frame, FREE) != FREE),
                 s.s2_valid, s.s2_frame)


def mappings_authorized(s: State) -> Any:
    """A VM maps a frame only if it owns it or holds a live retrieval naming it."""
    G = s.cfg.n_gframes

    def authorized(i: Any, valid: Any, f: Any, t: Any) -> Any:
        v = logic.row(i, G)
        own = and_(t == NONE, select(s.owner, f, FREE) == v)
        lent = and_(
            ult(t, s.cfg.n_tx), select(s.tx_kind, t, TX_FREE) != TX_FREE,
            select(s.tx_owner, t, NONE) != v, bit(select(s.tx_retrieved, t, 0), v),
            select(s.frame_tx, f, NONE) == t,
        )
        return implies(valid, or_(own, lent))

    return every(authorized, s.s2_valid, s.s2_frame, s.s2_tx)


def write_within_grant(s: State) -> Any:
    """A borrower's access never exceeds what the transaction granted (no RO mapped RW)."""
    return every(lambda i, valid, perm, t: implies(
        and_(valid, t != NONE), perm & ~select(s.tx_perm, t, 0) == 0),
        s.s2_valid, s.s2_perm, s.s2_tx)


def lent_frames_unreachable_by_owner(s: State) -> Any:
    """While a frame is lent or donated its owner's entry is suspended; a share keeps it."""
    def suspended(i: Any, valid: Any, frame: Any, held: Any, tx: Any) -> Any:
        t = select(s.frame_tx, frame, NONE)
        kind = select(s.tx_kind, t, TX_FREE)
        away = and_(t != NONE, or_(kind == LEND, kind == DONATE))
        return and_(implies(and_(valid, tx == NONE), held == away),
                    implies(and_(valid, tx != NONE), not_(held)))

    return every(suspended, s.s2_valid, s.s2_frame, s.s2_held, s.s2_tx)


def transactions_consistent(s: State) -> Any:
    """A live transaction names exactly the frames its owner maps at base..base+count."""
    cfg = s.cfg

    def owner_entries(k: Any, kind: Any, o: Any, base: Any, n: Any) -> Any:
        # every frame of the range is the owner's own mapping, naming this transaction
        def entry(g: Any) -> Any:
            i = s.vg(o, g)
            return implies(logic.within(g, base, n), and_(
                select(s.s2_valid, i, False), select(s.s2_tx, i, NONE) == NONE,
                select(s.frame_tx, select(s.s2_frame, i, 0), NONE) == k))
        return implies(and_(kind != TX_FREE, _is_vm(s, o)), logic.forall(cfg.n_gframes, entry))

    def frame_named(f: Any, o: Any, t: Any) -> Any:
        # a frame a transaction names is its live owner's, mapped in range, or an orphan's
        tk, to = select(s.tx_kind, t, TX_FREE), select(s.tx_owner, t, NONE)
        base, n = select(s.tx_base, t, 0), select(s.tx_count, t, 0)

        def mapped(g: Any) -> Any:
            i = s.vg(to, g)
            return and_(select(s.s2_valid, i, False), select(s.s2_tx, i, 0) == NONE,
                        select(s.s2_frame, i, NONE) == f, logic.within(g, base, n))
        return and_(
            implies(and_(t != NONE, ult(t, cfg.n_tx)), and_(tk != TX_FREE, or_(
                and_(_is_vm(s, to), o == to, logic.exists(cfg.n_gframes, mapped)),
                and_(to == NONE, o == ORPHAN)))),
            implies(o == ORPHAN, t != NONE),
            implies(or_(o == FREE, o == HYP), t == NONE))

    def orphans(k: Any, kind: Any, o: Any, who: Any, got: Any) -> Any:
        # an orphaned transaction is kept alive only by its remaining borrowers
        live = kind != TX_FREE
        return and_(implies(and_(live, o == NONE),
                            and_(got != 0, who == got, kind != DONATE)),
                    implies(and_(live, kind == DONATE), got == 0))

    return and_(every(owner_entries, s.tx_kind, s.tx_owner, s.tx_base, s.tx_count),
                every(frame_named, s.owner, s.frame_tx),
                every(orphans, s.tx_kind, s.tx_owner, s.tx_borrowers, s.tx_retrieved))


def retrievals_recorded(s: State) -> Any:
    """Reclaim is impossible while a borrower maps the frame: every borrower mapping is
    recorded in its transaction's retrieved set (reclaim requires that set empty)."""
    cfg = s.cfg
    G = cfg.n_gframes

    def recorded(k: Any, o: Any, who: Any, got: Any) -> Any:
        def holds(v: Any) -> Any:
            return logic.exists(G, lambda g: and_(select(s.s2_valid, s.vg(v, g), False),
                                                  select(s.s2_tx, s.vg(v, g), NONE) == k))
        return and_(
            logic.forall(cfg.n_vms, lambda v: and_(
                holds(v) == bit(got, v),
                implies(bit(who, v), select(s.vm_state, v, ABSENT) != ABSENT))),
            implies(_is_vm(s, o), not_(bit(who, o))))

    return every(recorded, s.tx_owner, s.tx_borrowers, s.tx_retrieved)


def mappings_injective(s: State) -> Any:
    """No frame is mapped twice by the same VM, so one unmap really removes access."""
    G = s.cfg.n_gframes

    def once(i: Any, valid: Any, frame: Any) -> Any:
        v, g = logic.row(i, G), logic.col(i, G)
        return logic.forall(G, lambda h: implies(
            and_(h != g, valid, select(s.s2_valid, s.vg(v, h), False)),
            select(s.s2_frame, s.vg(v, h), 0) != frame))

    return every(once, s.s2_valid, s.s2_frame)


def quota_respected(s: State) -> Any:
    """No VM owns more frames than its quota (the control VM sets quotas)."""
    return every(lambda v, owned, quota: ule(owned, quota), s.owned, s.quota)


def frames_counted(s: State) -> Any:
    """Each VM's frame counter is the number of host frames it owns, so the quota rule
    above, read on the counters, bounds what VMs really hold (a count: bounded proofs)."""
    return logic.forall(s.cfg.n_vms, lambda v: select(s.owned, v, 0) == owned_count(s, v))


def channels_paired(s: State) -> Any:
    """A bound port points at a bound port that points back, so a send has one receiver;
    the other end is another VM's unless the profile allows loopback channels."""
    cfg = s.cfg
    P = cfg.n_ports
    loop = cfg.profile.evtchn_loopback

    def paired(i: Any, state: Any, rvm: Any, rport: Any) -> Any:
        v = logic.row(i, P)
        r = s.vp(rvm, rport)
        other = True if loop else rvm != v
        out = [implies(state == INTERDOMAIN, and_(
            _is_vm(s, rvm), other, ult(rport, P),
            select(s.vm_state, rvm, ABSENT) != ABSENT,
            select(s.ch_state, r, CLOSED) == INTERDOMAIN,
            select(s.ch_rvm, r, NONE) == v,
            select(s.ch_rport, r, NONE) == logic.col(i, P)))]
        if not cfg.profile.evtchn_any_remote:  # an offer may name a domain yet to come
            out.append(implies(and_(state == UNBOUND, _is_vm(s, rvm)),
                               and_(select(s.vm_state, rvm, ABSENT) != ABSENT, other)))
        elif not loop:
            out.append(implies(state == UNBOUND, rvm != v))
        return and_(*out)

    return every(paired, s.ch_state, s.ch_rvm, s.ch_rport)


def _offer_names(s: State, rvm: Any) -> Any:
    """What an unbound port may name as its remote: a VM, nobody (NONE: its peer is gone),
    or -- where the profile lets an offer name any domain -- any domain id."""
    if s.cfg.profile.evtchn_any_remote:
        return or_(ult(rvm, DOMID_FIRST_RESERVED), rvm == NONE)
    return or_(_is_vm(s, rvm), rvm == NONE)


def devices_owned_by_live_vms(s: State) -> Any:
    """A device belongs to at most one VM, and that VM exists (no DMA for a dead owner)."""
    return every(lambda d, o: implies(_is_vm(s, o), select(s.vm_state, o, ABSENT) != ABSENT),
                 s.dev_owner)


def device_irqs_isolated(s: State) -> Any:
    """A device interrupt is pending only at the VM that owns the device."""
    cfg = s.cfg
    return every(lambda i, irq: logic.forall(cfg.n_devices, lambda d: implies(
        bit(irq, logic.add(d, 1)), select(s.dev_owner, d, NONE) == logic.row(i, cfg.n_vcpus))),
        s.irq)


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
    Invariant("frames_counted", frames_counted.__doc__ or "", "pvspec memory quota",
              frames_counted),
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


def _equal(a: Any, b: Any) -> Any:
    """Two tables of one shape hold the same values in every slot."""
    return True if a is b else every(lambda i, x, y: x == y, a, b)


def lifecycle_by_control_only(s: State, caller: Any, row: Any, s2: State, ret: Any,
                              args: tuple[Any, ...] = ()) -> Any:
    """Only the control VM changes another VM's lifecycle state."""
    if row is None:
        return _equal(s.vm_state, s2.vm_state)
    return implies(caller.vm != CONTROL, _equal(s.vm_state, s2.vm_state))


def vcpus_follow_psci(s: State, caller: Any, row: Any, s2: State, ret: Any,
                      args: tuple[Any, ...] = ()) -> Any:
    """Each vCPU moves only along PSCI's edges: OFF->ON_PENDING->ON->OFF (or OFF when its VM
    is created with its boot vCPU ON, or is destroyed).  SYSTEM_OFF, SYSTEM_RESET and
    SYSTEM_RESET2 (DEN0022 5.1.9-5.1.11) act on the caller's VM only: every one of its vCPUs goes
    OFF, except that a reset starts the boot vCPU again (ON)."""
    C = s.cfg.n_vcpus
    system = row is not None and row.handler in ("system_off", "system_reset", "system_reset2")
    reset = row is not None and row.handler in ("system_reset", "system_reset2")

    def moves(i: Any, a: Any, b: Any) -> Any:
        v, c = logic.row(i, C), logic.col(i, C)
        before, after = select(s.vm_state, v, ABSENT), select(s2.vm_state, v, ABSENT)
        created = and_(before == ABSENT, after != ABSENT, c == 0)
        edges = [
            a == b,
            and_(a == OFF, b == ON_PENDING),
            and_(a == ON_PENDING, b == ON),
            and_(a == ON, b == OFF),
            and_(created, a == OFF, b == ON),
            and_(after == ABSENT, b == OFF),
        ]
        if system:
            boot = logic.ite(c == 0, ON, OFF) if reset else OFF
            edges.append(and_(caller.vm == v, b == boot))
        return or_(*edges)

    return every(moves, s.vcpu, s2.vcpu)


def handles_stable(s: State, caller: Any, row: Any, s2: State, ret: Any,
                   args: tuple[Any, ...] = ()) -> Any:
    """A live handle keeps naming the same memory; a new one was not live before."""
    def stable(k: Any, kind: Any, kind2: Any, base: Any, base2: Any, n: Any, n2: Any,
               perm: Any, perm2: Any, o: Any, o2: Any) -> Any:
        return implies(and_(kind != TX_FREE, kind2 != TX_FREE), and_(
            kind == kind2, base == base2, n == n2, perm == perm2, or_(o == o2, o2 == NONE)))

    return every(stable, s.tx_kind, s2.tx_kind, s.tx_base, s2.tx_base, s.tx_count,
                 s2.tx_count, s.tx_perm, s2.tx_perm, s.tx_owner, s2.tx_owner)


def send_reaches_only_peer(s: State, caller: Any, row: Any, s2: State, ret: Any,
                           args: tuple[Any, ...] = ()) -> Any:
    """An event send marks pending only the port bound to the sender's port."""
    if row is None or row.name != "EVTCHN_SEND":
        return True
    P = s.cfg.n_ports

    def reached(i: Any, before: Any, after: Any) -> Any:
        def bound_here(p: Any) -> Any:
            j = s.vp(caller.vm, p)
            return and_(select(s.ch_state, j, CLOSED) == INTERDOMAIN,
                        select(s.ch_rvm, j, NONE) == logic.row(i, P),
                        select(s.ch_rport, j, NONE) == logic.col(i, P))
        return implies(before != after, logic.exists(P, bound_here))

    return every(reached, s.ch_pending, s2.ch_pending)


def bind_requires_consent(s: State, caller: Any, row: Any, s2: State, ret: Any,
                          args: tuple[Any, ...] = ()) -> Any:
    """Another VM's port becomes bound only if it was unbound and named the caller."""
    if row is None:
        return every(lambda i, a, b: implies(b == INTERDOMAIN, a == INTERDOMAIN),
                     s.ch_state, s2.ch_state)
    P = s.cfg.n_ports

    def consented(i: Any, a: Any, b: Any, rvm: Any) -> Any:
        newly = and_(a != INTERDOMAIN, b == INTERDOMAIN)
        theirs = logic.row(i, P) != caller.vm
        return implies(and_(newly, theirs), and_(a == UNBOUND, rvm == caller.vm))

    return every(consented, s.ch_state, s2.ch_state, s.ch_rvm)


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
        return every(lambda v, a, b: implies(vm != v, a == b), s.quota, s2.quota)
    return _equal(s.quota, s2.quota)


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
