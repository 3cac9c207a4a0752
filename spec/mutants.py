"""Planted bugs: one wrong transition each, of a class real hypervisors have shipped.

Each mutant replaces one handler (or the machine's privilege check) and names the rule
that must catch it.  Tests install a mutant, then show that the Z3 proof of that
hypercall fails with a counterexample that replays on the concrete spec, and that the
Hypothesis state machine finds a sequence breaking the rule.  They prove every
invariant and step property *can* fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from spec import logic, machine, transitions
from spec.hypercalls import ffa, xen
from spec.logic import add, bit, bits, ite, select, set_bit, store, sub, ult
from spec.state import (
    CLOSED,
    FREE,
    HYP,
    INTERDOMAIN,
    IRQ_EVTCHN,
    NONE,
    ON,
    ON_PENDING,
    ORPHAN,
    PERM_W,
    UNBOUND,
    State,
    access,
)
from spec.transitions import Caller

Handler = Callable[..., tuple[State, Any]]


@attrs.frozen
class Mutant:
    name: str
    handler: str  # the transition replaced ("apply" = the machine's dispatcher)
    target: str  # ABI row whose proof must fail
    catches: str  # the invariant / property that must catch it
    bug_class: str
    make: Callable[[Handler], Handler]
    # Rules a random run may trip at the same bad step before the targeted one shows
    # (e.g. freeing a donated frame breaks transaction bookkeeping before any mapping).
    siblings: tuple[str, ...] = ()
    # only a model larger than the bounded proofs' shows it (the proofs for every size do)
    sizes: bool = False

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.catches, *self.siblings)


def _failed(ret: Any) -> Any:
    return bit(ret, 63)


def _no_quota(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, *args: Any) -> tuple[State, Any]:
        s2, ret = orig(s.evolve(quota=(s.cfg.n_hframes,) * s.cfg.n_vms), me, row, *args)
        return (s if _failed(ret) else s2.evolve(quota=s.quota)), ret
    return bug


def _reclaim_while_retrieved(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, k: Any) -> tuple[State, Any]:
        s2, ret = orig(s.evolve(tx_retrieved=(0,) * s.cfg.n_tx), me, row, k)
        return (s if _failed(ret) else s2), ret
    return bug


def _ro_mapped_rw(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, *args: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, *args)
        if _failed(ret):
            return s2, ret
        fresh = tuple(a != b for a, b in zip(s.s2_valid, s2.s2_valid, strict=True))
        return s2.evolve(s2_perm=tuple(ite(n, p | PERM_W, p) for n, p in
                                       zip(fresh, s2.s2_perm, strict=True))), ret
    return bug


def _lend_keeps_owner_access(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, *args: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, *args)
        return s2.evolve(s2_held=s.s2_held), ret
    return bug


def _destroy_frees_mapped(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, vm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, vm)
        return s2.evolve(owner=tuple(ite(o == ORPHAN, FREE, o) for o in s2.owner)), ret
    return bug


def _feature_flags_bit31(orig: Handler) -> Handler:
    """PSCI_FEATURES answers an implemented function with bit 31 set (DEN0022 5.1.14:
    the feature flags are 31 bits; w0 with bit 31 set reads as an error code)."""
    def bug(s: State, me: Caller, row: Any, fid: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, fid)
        return s2, ite(_failed(ret), ret, logic.word(ret) | (1 << 31))
    return bug


def _send_to_unbound(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, port: Any) -> tuple[State, Any]:
        i = s.vp(me.vm, port)
        rvm = select(s.ch_rvm, i, NONE)
        if ult(port, s.cfg.n_ports) and select(s.ch_state, i) == UNBOUND and rvm != NONE:
            peer = s.vp(rvm, 0)
            return s.evolve(ch_pending=store(s.ch_pending, peer, True)), 0
        return orig(s, me, row, port)
    return bug


def _bind_without_consent(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, remote: Any, rport: Any) -> tuple[State, Any]:
        r = s.vp(remote, rport)
        if ult(remote, s.cfg.n_vms) and ult(rport, s.cfg.n_ports) and select(
                s.ch_state, r) == UNBOUND:
            s2, ret = orig(s.evolve(ch_rvm=store(s.ch_rvm, r, me.vm)), me, row, remote, rport)
            return (s if _failed(ret) else s2), ret
        return orig(s, me, row, remote, rport)
    return bug


def _destroy_keeps_devices(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, vm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, vm)
        return s2.evolve(dev_owner=s.dev_owner), ret
    return bug


def _deassign_keeps_irq(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, dev: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, dev)
        return s2.evolve(irq=s.irq), ret
    return bug


def _populate_hyp_frame(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, gfn: Any, perm: Any) -> tuple[State, Any]:
        hyp = [o == HYP for o in s.owner]
        s2, ret = orig(s.evolve(owner=tuple(ite(h, FREE, o) for h, o in zip(
            hyp, s.owner, strict=True))), me, row, gfn, perm)
        if _failed(ret):
            return s, ret
        return s2.evolve(owner=tuple(ite(h, HYP, o) for h, o in zip(
            hyp, s2.owner, strict=True))), ret
    return bug


def _cpu_on_skips_pending(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, target: Any, *args: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, target, *args)
        if _failed(ret):
            return s2, ret
        return s2.evolve(vcpu=store(s2.vcpu, s2.vc(me.vm, target), ON)), ret
    return bug


def _no_privilege_check(orig: Handler) -> Handler:
    def bug(s: State, caller: Caller, call: Any) -> tuple[State, Any]:
        row = getattr(call, "row", None)
        if hasattr(call, "args") and row.caller == "control" and machine.can_call(
                s, caller.vm, caller.vcpu):
            return transitions.HANDLERS[row.handler](s, caller, row, *call.args)
        return orig(s, caller, call)
    return bug


def _close_error_masks(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, port: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, port)
        if _failed(ret):  # the error path still masks the caller's port 0
            return s2.evolve(ch_masked=store(s2.ch_masked, s2.vp(me.vm, 0), True)), ret
        return s2, ret
    return bug


def _share_reuses_live_handle(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, *args: Any) -> tuple[State, Any]:
        freed = s.evolve(tx_kind=store(s.tx_kind, 0, 0), tx_owner=store(s.tx_owner, 0, NONE),
                         tx_base=store(s.tx_base, 0, 0), tx_count=store(s.tx_count, 0, 0),
                         tx_perm=store(s.tx_perm, 0, 0),
                         tx_borrowers=store(s.tx_borrowers, 0, 0),
                         tx_retrieved=store(s.tx_retrieved, 0, 0))
        s2, ret = orig(freed, me, row, *args)
        return (s if _failed(ret) else s2), ret
    return bug


def _mask_masks_everyone(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, port: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, port)
        if _failed(ret):
            return s2, ret
        P = s.cfg.n_ports
        masked = tuple(ite(s2.ch_state[i] != CLOSED, True, m) if i % P == 0 else m
                       for i, m in enumerate(s2.ch_masked))
        return s2.evolve(ch_masked=masked), ret
    return bug


def _destroy_keeps_ports(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, vm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, vm)
        P = s.cfg.n_ports
        mine = [i // P == vm for i in range(len(s.ch_state))]
        return s2.evolve(**{f: tuple(ite(m, a, b) for m, a, b in zip(
            mine, getattr(s, f), getattr(s2, f), strict=True))
            for f in ("ch_state", "ch_rvm", "ch_rport", "ch_pending", "ch_masked")}), ret
    return bug


def _destroy_keeps_frames(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, vm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, vm)
        if _failed(ret):
            return s2, ret
        return s2.evolve(owner=tuple(ite(a == vm, a, b) for a, b in zip(
            s.owner, s2.owner, strict=True))), ret
    return bug


def _release_shared_frame(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, gfn: Any) -> tuple[State, Any]:
        s2, ret = orig(s.evolve(frame_tx=(NONE,) * s.cfg.n_hframes), me, row, gfn)
        if _failed(ret):
            return s, ret
        return s2.evolve(frame_tx=s.frame_tx), ret
    return bug


def _close_forgets_peer(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, port: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, port)
        if _failed(ret):
            return s2, ret
        i = s.vp(me.vm, port)
        if select(s.ch_state, i) != INTERDOMAIN:
            return s2, ret
        r = s.vp(select(s.ch_rvm, i), select(s.ch_rport, i))
        return s2.evolve(ch_state=store(s2.ch_state, r, INTERDOMAIN),
                         ch_rvm=store(s2.ch_rvm, r, me.vm),
                         ch_rport=store(s2.ch_rport, r, port)), ret
    return bug


def _populate_reserved_perm(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, gfn: Any, perm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, gfn, perm)
        if _failed(ret):
            return s2, ret
        i = s.vg(me.vm, gfn)
        return s2.evolve(s2_perm=store(s2.s2_perm, i, select(s2.s2_perm, i) | 8)), ret
    return bug


def _populate_aliases_frame(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, gfn: Any, perm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, gfn, perm)
        if _failed(ret):
            return s2, ret
        # map the new guest frame onto the caller's guest frame 0 instead of a fresh one
        i, j = s.vg(me.vm, gfn), s.vg(me.vm, 0)
        if gfn == 0 or not select(s.s2_valid, j) or select(s.s2_tx, j) != NONE:
            return s2, ret
        new = select(s2.s2_frame, i)
        return s2.evolve(s2_frame=store(s2.s2_frame, i, select(s.s2_frame, j)),
                         owner=store(s2.owner, new, FREE)), ret
    return bug


def _relinquish_keeps_retrieved(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, k: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, k)
        if _failed(ret):
            return s2, ret
        return s2.evolve(tx_retrieved=s.tx_retrieved), ret
    return bug


def _share_names_one_more_frame(orig: Handler) -> Handler:
    def bug(s: State, me: Caller, row: Any, base: Any, n: Any, *args: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, base, n, *args)
        if _failed(ret):
            return s2, ret
        return s2.evolve(tx_count=store(s2.tx_count, ret, select(s2.tx_count, ret) + 1)), ret
    return bug


def _status_reads_next_vm(orig: Handler) -> Handler:
    """EVTCHN_STATUS bounds the port against the whole port table instead of the caller's
    row, so ports n_ports.. read the next VM's ports (an out-of-bounds read, XSA-style)."""
    def bug(s: State, me: Caller, row: Any, port: Any) -> tuple[State, Any]:
        P = s.cfg.n_ports
        nxt = add(me.vm, 1)
        if ult(port, P) or not ult(port, 2 * P) or not ult(nxt, s.cfg.n_vms):
            return orig(s, me, row, port)
        return orig(s, Caller(nxt, me.vcpu), row, sub(port, P))
    return bug


def _affinity_honours_aff1(orig: Handler) -> Handler:
    """AFFINITY_INFO takes Aff1 of the MPIDR as a VM id (a cluster id on real hardware)
    without checking that it is the caller's: any VM learns another's vCPU power states."""
    def bug(s: State, me: Caller, row: Any, target: Any, level: Any) -> tuple[State, Any]:
        vm, cpu = bits(target, 8, 8), bits(target, 0, 8)
        if vm == 0 or not ult(vm, s.cfg.n_vms) or bits(target, 16, 48) != 0:
            return orig(s, me, row, target, level)
        return orig(s, Caller(vm, me.vcpu), row, cpu, level)
    return bug


def _unmask_sees_next_vm_pending(orig: Handler) -> Handler:
    """EVTCHN_UNMASK looks for a pending event one row too far in the pending bitmap (the
    next VM's port of the same number) and raises the caller's upcall for it: the caller's
    interrupts then reveal whether another VM has an event pending."""
    def bug(s: State, me: Caller, row: Any, port: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, port)
        nxt = add(me.vm, 1)
        if _failed(ret) or not ult(nxt, s.cfg.n_vms):
            return s2, ret
        if select(s.ch_pending, s.vp(nxt, port)):
            i = s2.vc(me.vm, 0)
            s2 = s2.evolve(irq=store(s2.irq, i, set_bit(select(s2.irq, i), IRQ_EVTCHN, True)))
        return s2, ret
    return bug


def _bind_reveals_closed_port(orig: Handler) -> Handler:
    """EVTCHN_BIND_INTERDOMAIN tells a closed remote port (INVALID_PARAMETERS) from one
    open for somebody else (DENIED): an error-code oracle, through which any VM maps which
    ports another VM has open and with whom it talks."""
    def bug(s: State, me: Caller, row: Any, remote: Any, rport: Any) -> tuple[State, Any]:
        if ult(remote, s.cfg.n_vms) and ult(rport, s.cfg.n_ports) and select(
                s.ch_state, s.vp(remote, rport)) == CLOSED:
            return transitions.fail(s, row, "INVALID_PARAMETERS")
        return orig(s, me, row, remote, rport)
    return bug



def _populate_checks_before_bounds(orig: Handler) -> Handler:
    """MEM_POPULATE tests "already mapped" on the flat index vm * n_gframes + gfn before it
    checks gfn, so a gfn one row too far answers DENIED exactly when the next VM has that
    frame populated (INVALID_PARAMETERS otherwise): an error-code oracle on another VM's
    stage-2 table."""
    def bug(s: State, me: Caller, row: Any, gfn: Any, perm: Any) -> tuple[State, Any]:
        G = s.cfg.n_gframes
        nxt = add(me.vm, 1)
        if not ult(gfn, G) and ult(gfn, 2 * G) and ult(nxt, s.cfg.n_vms) and select(
                s.s2_valid, s.vg(nxt, sub(gfn, G))):
            return transitions.fail(s, row, "DENIED")
        return orig(s, me, row, gfn, perm)
    return bug


def _standby_returns_stale_context(orig: Handler) -> Handler:
    """A standby CPU_SUSPEND returns with x0 still holding the context id of the vCPU that
    ran before on the physical CPU -- here the same vCPU of the previous VM -- instead of
    SUCCESS: a stale register hands one guest another's resume context."""
    def bug(s: State, me: Caller, row: Any, power_state: Any, entry: Any, context: Any
            ) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, power_state, entry, context)
        if _failed(ret) or bit(power_state, 16) or me.vm == 0:
            return s2, ret
        return s2, select(s.vcpu_ctx, s.vc(sub(me.vm, 1), me.vcpu))
    return bug


def _channels_from_one_pool(orig: Handler) -> Handler:
    """EVTCHN_ALLOC_UNBOUND takes its port from one machine-wide pool of n_ports bound
    channels instead of the caller's own table: NO_MEMORY once the pool is full tells the
    caller how many channels other VMs hold, even channels between two other VMs."""
    def bug(s: State, me: Caller, row: Any, remote: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, remote)
        if _failed(ret) or ult(logic.count(x == INTERDOMAIN for x in s.ch_state),
                               s.cfg.n_ports):
            return s2, ret
        return transitions.fail(s, row, "NO_MEMORY")
    return bug


def _ack_reveals_device_owner(orig: Handler) -> Handler:
    """IRQ_ACK refuses a device line whose device another VM holds (DENIED) but accepts a
    free device's line: the error code maps which devices the other VMs were given."""
    def bug(s: State, me: Caller, row: Any, line: Any) -> tuple[State, Any]:
        if ult(0, line) and ult(line, s.cfg.n_lines):
            holder = select(s.dev_owner, sub(line, 1))
            if holder != NONE and holder != me.vm:
                return transitions.fail(s, row, "DENIED")
        return orig(s, me, row, line)
    return bug


def _bind_checks_remote_ports(orig: Handler) -> Handler:
    """EVTCHN_BIND_INTERDOMAIN looks for a free port in the remote VM's table instead of
    the caller's: NO_MEMORY then reveals whether the remote's *other* ports -- those it
    shares with nobody, or with a third VM -- are all open."""
    def bug(s: State, me: Caller, row: Any, remote: Any, rport: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, remote, rport)
        if _failed(ret):
            return s2, ret
        if logic.any_(select(s.ch_state, s.vp(remote, p)) == CLOSED
                      for p in range(s.cfg.n_ports)):
            return s2, ret
        return transitions.fail(s, row, "NO_MEMORY")
    return bug


def _cpu_on_bound_off_by_one(orig: Handler) -> Handler:
    """CPU_ON bounds the target vCPU with ``<=`` instead of ``<``: target ``n_vcpus``
    indexes one slot past the caller's row of the vCPU table (in a C hypervisor, the next
    VM's vCPU 0 -- or past the array).  Under the spec's one meaning of an index such a
    slot does not exist, so the call "succeeds" doing nothing; the index obligation sees
    the access."""
    def bug(s: State, me: Caller, row: Any, target: Any, entry: Any, context: Any
            ) -> tuple[State, Any]:
        if target != s.cfg.n_vcpus:
            return orig(s, me, row, target, entry, context)
        gfn = bits(entry, 12, 52)
        if s.cfg.profile.entry_check and (
                not ult(gfn, s.cfg.n_gframes) or not bit(access(s, me.vm, gfn), 2)):
            return transitions.fail(s, row, "INVALID_ADDRESS")
        i = s.vc(me.vm, target)
        power = select(s.vcpu, i)
        if power == ON:
            return transitions.fail(s, row, "ALREADY_ON")
        if power == ON_PENDING:
            return transitions.fail(s, row, "ON_PENDING")
        return s.evolve(vcpu=store(s.vcpu, i, ON_PENDING),
                        vcpu_entry=store(s.vcpu_entry, i, entry),
                        vcpu_ctx=store(s.vcpu_ctx, i, context)), 0
    return bug


# Wrong postconditions: the state stays sound and no other VM is touched, but a call that
# succeeds does the wrong thing to the caller's own objects or answers the wrong value.
def _cpu_on_ignores_entry(orig: Handler) -> Handler:
    """CPU_ON skips the entry-point check the profile promises: a vCPU is started at an
    address its VM cannot execute (PSCI DEN0022 5.1.4: INVALID_ADDRESS)."""
    def bug(s: State, me: Caller, row: Any, *args: Any) -> tuple[State, Any]:
        cfg = attrs.evolve(s.cfg, profile=attrs.evolve(s.cfg.profile, entry_check=False))
        s2, ret = orig(s.evolve(cfg=cfg), me, row, *args)
        return (s if _failed(ret) else s2.evolve(cfg=s.cfg)), ret
    return bug


def _on_success(change: Callable[..., tuple[State, Any]]) -> Callable[[Handler], Handler]:
    """A mutant that runs the correct transition and, when it succeeds, changes its
    outcome: ``change(s, me, s2, ret, *args) -> (s2', ret')``."""
    def make(orig: Handler) -> Handler:
        def bug(s: State, me: Caller, row: Any, *args: Any) -> tuple[State, Any]:
            s2, ret = orig(s, me, row, *args)
            return (s2, ret) if _failed(ret) else change(s, me, s2, ret, *args)
        return bug
    return make


def _create_ignores_quota(s: State, me: Caller, s2: State, ret: Any, vm: Any, quota: Any
                          ) -> tuple[State, Any]:
    """VM_CREATE gives the new VM the whole host instead of the quota asked for."""
    return s2.evolve(quota=store(s2.quota, vm, s.cfg.n_hframes)), ret


def _share_returns_other_handle(s: State, me: Caller, s2: State, ret: Any, *args: Any
                                ) -> tuple[State, Any]:
    """MEM_SHARE fills one slot of the handle table and returns the handle of another
    (the slot at the other end of the table): the caller then names someone else's
    transaction, or none."""
    return s2, sub(s.cfg.n_tx - 1, ret)


def _release_shrinks_quota(s: State, me: Caller, s2: State, ret: Any, gfn: Any
                           ) -> tuple[State, Any]:
    """MEM_RELEASE also lowers the caller's quota by the frame it gave back (a balloon
    driver's accounting applied twice): a quota changes outside the lifecycle calls."""
    return s2.evolve(quota=store(s2.quota, me.vm, sub(select(s2.quota, me.vm), 1))), ret


def _release_keeps_count(s: State, me: Caller, s2: State, ret: Any, gfn: Any
                         ) -> tuple[State, Any]:
    """MEM_RELEASE frees the frame but leaves the caller's frame counter as it was."""
    return s2.evolve(owned=s.owned), ret


def _send_raises_on_caller(s: State, me: Caller, s2: State, ret: Any, port: Any
                           ) -> tuple[State, Any]:
    """EVTCHN_SEND also raises the event upcall on the sender's own vCPU 0: an event on a
    VM that is not the bound peer."""
    i = s2.vc(me.vm, 0)
    return s2.evolve(irq=store(s2.irq, i, set_bit(select(s2.irq, i), IRQ_EVTCHN, True))), ret


def _deassign_leaves_attached(s: State, me: Caller, s2: State, ret: Any, dev: Any
                              ) -> tuple[State, Any]:
    """DEV_DEASSIGN withdraws the device's interrupt but leaves it attached to its VM, so
    it can still DMA into that VM's memory."""
    return s2.evolve(dev_owner=s.dev_owner), ret


# Bugs of a size the bounded proofs do not reach: a fourth VM, a sixth host frame (the
# bounded model has 3 VMs and 5 host frames); the proofs for every size catch them.
_CHANNEL_TABLES = ("ch_state", "ch_rvm", "ch_rport", "ch_pending", "ch_masked")


def _destroy_spares_fourth_vm(orig: Handler) -> Handler:
    """VM_DESTROY of VM 3 leaves every port as it was: a table sized for three guests
    whose teardown loop stops one short."""
    def bug(s: State, me: Caller, row: Any, vm: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, vm)
        if not _failed(ret) and vm == 3:
            return s2.evolve(**{f: getattr(s, f) for f in _CHANNEL_TABLES}), ret
        return s2, ret
    return bug


def _release_keeps_sixth_frame(orig: Handler) -> Handler:
    """MEM_RELEASE of a guest frame backed by host frame 5 frees the frame but leaves it
    mapped: a frame-number range check written for the first five frames."""
    def bug(s: State, me: Caller, row: Any, gfn: Any) -> tuple[State, Any]:
        s2, ret = orig(s, me, row, gfn)
        if not _failed(ret) and select(s.s2_frame, s.vg(me.vm, gfn), 0) == 5:
            return s2.evolve(s2_valid=s.s2_valid, s2_frame=s.s2_frame, s2_perm=s.s2_perm,
                             s2_held=s.s2_held, s2_tx=s.s2_tx), ret
        return s2, ret
    return bug


def _share_reads_frame_of_invalid_entry(orig: Handler) -> Handler:
    """MEM_SHARE looks up the transaction of the frame behind guest frame ``base`` before
    it knows the entry is valid: an invalid entry's frame is 0, which a machine with no
    host frames does not have (the read the spec itself made until the all-sizes index
    obligation found it)."""
    def bug(s: State, me: Caller, row: Any, base: Any, *args: Any) -> tuple[State, Any]:
        if ult(base, s.cfg.n_gframes):
            select(s.frame_tx, select(s.s2_frame, s.vg(me.vm, base)))
        return orig(s, me, row, base, *args)
    return bug


MUTANTS: tuple[Mutant, ...] = (
    Mutant("feature_flags_bit31", "psci_features", "PSCI_FEATURES",
           "firmware_results_well_formed", "PSCI_FEATURES flags with bit 31 set",
           _feature_flags_bit31),
    Mutant("no_quota_check", "mem_populate", "MEM_POPULATE", "quota_respected",
           "quota not enforced", _no_quota),
    Mutant("reclaim_while_retrieved", "mem_reclaim", "MEM_RECLAIM", "mappings_authorized",
           "reclaim while a borrower maps the memory (FF-A)", _reclaim_while_retrieved),
    Mutant("ro_share_mapped_rw", "mem_retrieve", "MEM_RETRIEVE", "write_within_grant",
           "read-only grant mapped writable (XSA-224-like)", _ro_mapped_rw),
    Mutant("lend_keeps_owner_access", "mem_lend", "MEM_LEND",
           "lent_frames_unreachable_by_owner", "lender keeps access", _lend_keeps_owner_access),
    Mutant("destroy_frees_mapped_frames", "vm_destroy", "VM_DESTROY", "free_frames_unmapped",
           "frame reused while still mapped (XSA-218/230)", _destroy_frees_mapped),
    Mutant("send_to_unbound_port", "evtchn_send", "EVTCHN_SEND", "send_reaches_only_peer",
           "event delivered through an unbound port", _send_to_unbound),
    Mutant("bind_without_consent", "evtchn_bind_interdomain", "EVTCHN_BIND_INTERDOMAIN",
           "bind_requires_consent", "binding a port offered to someone else",
           _bind_without_consent),
    Mutant("destroy_keeps_devices", "vm_destroy", "VM_DESTROY", "devices_owned_by_live_vms",
           "device left assigned to a dead VM", _destroy_keeps_devices),
    Mutant("deassign_keeps_irq", "dev_deassign", "DEV_DEASSIGN", "device_irqs_isolated",
           "stale interrupt after deassign", _deassign_keeps_irq),
    Mutant("populate_hands_out_hyp_frame", "mem_populate", "MEM_POPULATE",
           "hypervisor_frames_unmapped", "hypervisor memory mapped into a guest",
           _populate_hyp_frame, siblings=("frames_counted",)),
    Mutant("cpu_on_skips_pending", "cpu_on", "CPU_ON", "vcpus_follow_psci",
           "PSCI state machine skipped", _cpu_on_skips_pending),
    Mutant("no_privilege_check", "apply", "VM_PAUSE", "lifecycle_by_control_only",
           "missing permission check", _no_privilege_check),
    Mutant("failed_close_changes_state", "evtchn_close", "EVTCHN_CLOSE",
           "failed_call_changes_nothing", "error path with side effects (XSA-188-like)",
           _close_error_masks),
    Mutant("share_reuses_live_handle", "mem_share", "MEM_SHARE", "handles_stable",
           "handle reused while live", _share_reuses_live_handle),
    Mutant("mask_masks_everyone", "evtchn_mask", "EVTCHN_MASK", "noninterference_unchanged",
           "one VM's call changes another's view", _mask_masks_everyone),
    Mutant("destroy_keeps_ports", "vm_destroy", "VM_DESTROY", "absent_vms_hold_nothing",
           "dead VM keeps event channels", _destroy_keeps_ports),
    Mutant("destroy_keeps_frames", "vm_destroy", "VM_DESTROY", "frame_owners_live",
           "dead VM keeps memory", _destroy_keeps_frames, siblings=("frames_counted",)),
    Mutant("release_shared_frame", "mem_release", "MEM_RELEASE", "free_frames_unmapped",
           "shared frame freed under the borrower", _release_shared_frame,
           siblings=("transactions_consistent",)),
    Mutant("relinquish_keeps_retrieved", "mem_relinquish", "MEM_RELINQUISH",
           "retrievals_recorded", "unmap not recorded: the owner can never reclaim",
           _relinquish_keeps_retrieved),
    Mutant("share_names_one_more_frame", "mem_share", "MEM_SHARE", "transactions_consistent",
           "transaction descriptor disagrees with the pages it covers",
           _share_names_one_more_frame),
    Mutant("close_forgets_peer", "evtchn_close", "EVTCHN_CLOSE", "channels_paired",
           "peer left bound to a closed port", _close_forgets_peer),
    Mutant("populate_reserved_perm", "mem_populate", "MEM_POPULATE", "well_formed",
           "reserved permission bits stored", _populate_reserved_perm),
    Mutant("populate_aliases_frame", "mem_populate", "MEM_POPULATE", "mappings_injective",
           "one frame mapped twice (XSA-224 class)", _populate_aliases_frame),
    # Leaks: the state stays sound and nobody else's view changes, but a call's result or
    # the caller's own view depends on another VM's private state.  Only the two-run
    # confidentiality obligation can see them.  Three guard the relation itself: the stale
    # context is missed if a vCPU's start context is left public, the device oracle if
    # devices are, and the channel pool if the other VMs' secrets vary one VM at a time.
    Mutant("status_reads_next_vm", "evtchn_status", "EVTCHN_STATUS",
           "noninterference_confidential", "out-of-bounds read of another VM's port",
           _status_reads_next_vm),
    Mutant("affinity_honours_aff1", "affinity_info", "AFFINITY_INFO",
           "noninterference_confidential", "query answered about another VM's vCPU",
           _affinity_honours_aff1),
    Mutant("unmask_sees_next_vm_pending", "evtchn_unmask", "EVTCHN_UNMASK",
           "noninterference_confidential", "caller's interrupts reveal another VM's event",
           _unmask_sees_next_vm_pending),
    Mutant("populate_checks_before_bounds", "mem_populate", "MEM_POPULATE",
           "noninterference_confidential", "error code reveals another VM's populated frame",
           _populate_checks_before_bounds),
    Mutant("standby_returns_stale_context", "cpu_suspend", "CPU_SUSPEND",
           "noninterference_confidential", "stale register: another VM's resume context",
           _standby_returns_stale_context),
    Mutant("ack_reveals_device_owner", "irq_ack", "IRQ_ACK", "noninterference_confidential",
           "error code reveals another VM's devices", _ack_reveals_device_owner),
    # A call that names another VM may depend on its lifecycle and on what it shares with
    # the caller, and on nothing else of it.
    Mutant("bind_reveals_closed_port", "evtchn_bind_interdomain", "EVTCHN_BIND_INTERDOMAIN",
           "noninterference_confidential_named", "error code reveals another VM's ports",
           _bind_reveals_closed_port),
    Mutant("bind_checks_remote_ports", "evtchn_bind_interdomain", "EVTCHN_BIND_INTERDOMAIN",
           "noninterference_confidential_named",
           "wrong table checked: another VM's unshared ports", _bind_checks_remote_ports),
    Mutant("channels_from_one_pool", "evtchn_alloc_unbound", "EVTCHN_ALLOC_UNBOUND",
           "noninterference_confidential_named",
           "global pool reveals channels between other VMs", _channels_from_one_pool),
    # An index past its table: caught by the per-access index obligation.
    Mutant("cpu_on_bound_off_by_one", "cpu_on", "CPU_ON", "indices_in_range",
           "off-by-one bound check: one slot past the caller's vCPU row",
           _cpu_on_bound_off_by_one, siblings=("post_cpu_on",)),
    # Wrong functional postconditions, one per kind (spec.transitions.Post.group).
    Mutant("cpu_on_ignores_entry", "cpu_on", "CPU_ON", "post_cpu_on",
           "vCPU started at a non-executable entry point", _cpu_on_ignores_entry),
    Mutant("create_ignores_quota", "vm_create", "VM_CREATE", "post_vm_create",
           "new VM gets another quota than asked for", _on_success(_create_ignores_quota)),
    Mutant("share_returns_other_handle", "mem_share", "MEM_SHARE", "post_mem_share",
           "handle of another slot returned", _on_success(_share_returns_other_handle)),
    Mutant("release_keeps_count", "mem_release", "MEM_RELEASE", "frames_counted",
           "frame given back but still counted against the quota (a balloon leak)",
           _on_success(_release_keeps_count)),
    Mutant("release_shrinks_quota", "mem_release", "MEM_RELEASE",
           "quotas_change_only_in_lifecycle", "quota changed outside the lifecycle calls",
           _on_success(_release_shrinks_quota)),
    Mutant("send_raises_on_caller", "evtchn_send", "EVTCHN_SEND", "post_evtchn_send",
           "event raised on a VM that is not the bound peer", _on_success(_send_raises_on_caller)),
    Mutant("deassign_leaves_attached", "dev_deassign", "DEV_DEASSIGN", "post_dev_deassign",
           "device left attached after deassign", _on_success(_deassign_leaves_attached)),
    # Size-dependent: only a model larger than the bounded one shows them.
    Mutant("destroy_spares_fourth_vm", "vm_destroy", "VM_DESTROY", "absent_vms_hold_nothing",
           "teardown loop one VM short (a fourth VM keeps its ports)",
           _destroy_spares_fourth_vm, siblings=("channels_paired", "bind_requires_consent"),
           sizes=True),
    Mutant("release_keeps_sixth_frame", "mem_release", "MEM_RELEASE", "free_frames_unmapped",
           "frame freed while still mapped, past the fifth host frame",
           _release_keeps_sixth_frame, siblings=("mappings_authorized",), sizes=True),
    Mutant("share_reads_frame_of_invalid_entry", "mem_share", "MEM_SHARE", "indices_in_range",
           "table read at an invalid entry's frame, absent without host frames",
           _share_reads_frame_of_invalid_entry, sizes=True),
)
BY_NAME = {m.name: m for m in MUTANTS}


# --- planted bugs in a codec -----------------------------------------------------------
# A codec's bug leaves the model right and the target's ABI wrong: the guest's struct read
# at another offset than the header's, an answer with the sign of its errno lost.  The
# invariants cannot see them (the model stays sound whatever arguments it is handed);
# the codec's round-trip obligations (spec.prove, targets ``xen:<row>``) do.
@attrs.frozen
class CodecMutant:
    name: str
    codec: Any  # the codec module
    function: str  # the module function replaced
    target: str  # prove target whose obligation must fail
    catches: str  # that obligation
    bug_class: str
    make: Callable[[Callable[..., Any]], Callable[..., Any]]


def _xen_reads_local_port(orig: Callable[..., Any]) -> Callable[..., Any]:
    """The bind's remote_port read at offset 8 -- local_port, the output field the guest
    leaves zero -- instead of 4 (event_channel.h struct evtchn_bind_interdomain)."""
    def bug(mem: Any, f: xen.Field, at: int = 0) -> Any:
        return orig(mem, attrs.evolve(f, offset=8) if f.name == "remote_port" else f, at)
    return bug


def _xen_errno_sign_slip(orig: Callable[..., Any]) -> Callable[..., Any]:
    """A failure answered with +errno (Xen returns the negated errno.h number)."""
    def bug(row: str, ret: Any) -> Any:
        return sub(0, orig(row, ret))
    return bug


def _ffa_pages_at_reserved(orig: Callable[..., Any]) -> Callable[..., Any]:
    """A constituent's page count read at offset 12 -- its reserved word -- instead of 8
    (DEN0077A Table 10.14)."""
    def bug(mem: Any, f: ffa.Field, at: int = 0) -> Any:
        wrong = f == ffa.CONSTITUENT.field("pages")
        return orig(mem, attrs.evolve(f, offset=12) if wrong else f, at)
    return bug


def _ffa_handle_halves_swapped(orig: Callable[..., Any]) -> Callable[..., Any]:
    """The handle's high half in w2 and its low half in w3 (ch. 16: w2 holds the low)."""
    def bug(handle: Any) -> tuple[Any, Any]:
        lo, hi = orig(handle)
        return hi, lo
    return bug


CODEC_MUTANTS: tuple[CodecMutant, ...] = (
    CodecMutant("xen_bind_reads_local_port", xen, "read_field", "xen:EVTCHN_BIND_INTERDOMAIN",
                "xen_call_round_trip", "struct field read at the wrong offset",
                _xen_reads_local_port),
    CodecMutant("xen_errno_sign_slip", xen, "answer_rc", "xen:EVTCHN_SEND",
                "xen_answer_round_trip", "errno returned positive", _xen_errno_sign_slip),
    CodecMutant("ffa_pages_at_reserved", ffa, "read_field", "ffa:MEM_LEND",
                "ffa_call_round_trip", "descriptor field read at the wrong offset",
                _ffa_pages_at_reserved),
    CodecMutant("ffa_handle_halves_swapped", ffa, "split_handle", "ffa:MEM_SHARE",
                "ffa_answer_round_trip", "handle split the wrong way round (w2/w3)",
                _ffa_handle_halves_swapped),
)
CODEC_BY_NAME = {m.name: m for m in CODEC_MUTANTS}


@contextlib.contextmanager
def installed_codec(mutant: CodecMutant) -> Iterator[None]:
    """Run the codec with ``mutant``'s function in place of the correct one."""
    orig = getattr(mutant.codec, mutant.function)
    setattr(mutant.codec, mutant.function, mutant.make(orig))
    try:
        yield
    finally:
        setattr(mutant.codec, mutant.function, orig)


@contextlib.contextmanager
def installed(mutant: Mutant) -> Iterator[None]:
    """Run the spec with ``mutant`` in place of the correct transition."""
    if mutant.handler == "apply":
        orig = machine.apply
        machine.apply = mutant.make(orig)  # type: ignore[assignment]
        try:
            yield
        finally:
            machine.apply = orig  # type: ignore[assignment]
        return
    orig = transitions.HANDLERS[mutant.handler]
    transitions.HANDLERS[mutant.handler] = mutant.make(orig)
    try:
        yield
    finally:
        transitions.HANDLERS[mutant.handler] = orig
