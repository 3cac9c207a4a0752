"""Every hypercall as a pure, total transition ``(state, caller, args) -> (state', result)``.

Rules of the house, so that one text serves as definition, oracle and proof subject:

* A guard is a plain ``if`` that returns an error: **a failed call returns the state it was
  given**, unchanged.  Guards run in the order the ABI table lists the errors, which is the
  error precedence a conforming hypervisor must show.
* Updates over many slots use :func:`spec.logic.ite` and friends, never ``if``, so the proofs
  see one path per outcome, not one per frame.
* Results are words: ``0`` or a non-negative value on success, a negative code (two's
  complement) on failure.  The handler gets the decoded fields of its ABI row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from spec import logic
from spec.hypercalls.abi import ABI_VERSION, ARCH_WORKAROUNDS, EVENTS, TABLE, Row
from spec.logic import (
    and_,
    bit,
    every,
    exists,
    forall,
    implies,
    ite,
    not_,
    or_,
    select,
    set_bit,
    store,
    tabulate,
    ule,
    ult,
    within,
)
from spec.profile import DOMID_FIRST_RESERVED, offers
from spec.state import (
    ABSENT,
    CLOSED,
    CONTROL,
    DONATE,
    FREE,
    INTERDOMAIN,
    IRQ_EVTCHN,
    LEND,
    NONE,
    OFF,
    ON,
    ON_PENDING,
    ORPHAN,
    PAUSED,
    RUNNING,
    SHARE,
    TX_FREE,
    UNBOUND,
    State,
    access,
)

Result = tuple[State, Any]


@attrs.frozen
class Caller:
    vm: Any
    vcpu: Any


def fail(s: State, row: Row, name: str) -> Result:
    return s, logic.word(row.error(name))


def ok(s: State, value: Any = 0) -> Result:
    return s, value


# --- functional postconditions -----------------------------------------------------------
@attrs.frozen
class Post:
    """What a *successful* call of ``handler`` does to the caller's own objects and what
    it returns, stated beside the transition (``holds(s, me, s2, ret, *args)``).

    spec.invariants makes each a step property (``post_<handler>``), so the prover proves
    it for every argument register and the state machines and the conformance oracle check
    it after every such call; it is read only when the call succeeded (bit 63 of the
    result clear).  ``group`` is the kind of rule (its planted bugs are in spec.mutants)."""

    handler: str
    group: str  # psci | lifecycle | memory | channels | devices
    clause: str
    why: str
    holds: Callable[..., Any]
    # the guest-visible views a violation shows in (spec.invariants.VIEWS): a target that
    # cannot show them is not judged on it
    visible_in: frozenset[str] = frozenset({"result"})


POSTCONDITIONS: list[Post] = []


def postcondition(handler: str, group: str, clause: str, views: frozenset[str] = frozenset(
        {"result"})) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as ``handler``'s functional postcondition."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        POSTCONDITIONS.append(Post(handler, group, clause, " ".join((fn.__doc__ or "").split()),
                                   fn, views))
        return fn
    return register


_ACCESS, _IRQ, _DMA = frozenset({"access"}), frozenset({"irq"}), frozenset({"dma"})


def _unchanged(a: tuple[Any, ...], b: tuple[Any, ...], keep: Callable[[int], Any]) -> Any:
    """Slots ``i`` of ``a`` and ``b`` with ``keep(i)`` are equal."""
    if a is b:
        return True
    return every(lambda i, x, y: implies(keep(i), x == y), a, b)


def _live_vm(s: State, vm: Any) -> Any:
    return and_(ult(vm, s.cfg.n_vms), select(s.vm_state, vm, ABSENT) != ABSENT)


# --- PSCI ---------------------------------------------------------------------------------
PSCI_VERSION_VALUE = (1 << 16) | 1  # PSCI 1.1


def psci_version(s: State, me: Caller, row: Row) -> Result:
    return ok(s, s.cfg.profile.psci_version)


def hv_version(s: State, me: Caller, row: Row) -> Result:
    major, minor = (int(x) for x in ABI_VERSION.split("."))
    return ok(s, (major << 16) | minor)


def cpu_on(s: State, me: Caller, row: Row, target: Any, entry: Any, context: Any) -> Result:
    """PSCI CPU_ON: OFF -> ON_PENDING; the vCPU becomes ON when it starts (VCPU_START).

    Whether an entry point the caller cannot execute is refused (INVALID_ADDRESS) or the
    core is started there is the profile's ``entry_check`` (DEN0022 5.1.4)."""
    if not ult(target, s.cfg.n_vcpus):
        return fail(s, row, "INVALID_PARAMETERS")
    gfn = logic.bits(entry, 12, 52)
    if s.cfg.profile.entry_check and (
            not ult(gfn, s.cfg.n_gframes) or not bit(access(s, me.vm, gfn), 2)):
        return fail(s, row, "INVALID_ADDRESS")
    i = s.vc(me.vm, target)
    power = select(s.vcpu, i)
    if power == ON:
        return fail(s, row, "ALREADY_ON")
    if power == ON_PENDING:
        return fail(s, row, "ON_PENDING")
    return ok(s.evolve(vcpu=store(s.vcpu, i, ON_PENDING),
                       vcpu_entry=store(s.vcpu_entry, i, entry),
                       vcpu_ctx=store(s.vcpu_ctx, i, context)))


@postcondition("cpu_on", "psci", "PSCI DEN0022 5.1.4 CPU_ON")
def cpu_on_post(s: State, me: Caller, s2: State, ret: Any, target: Any, entry: Any,
                context: Any) -> Any:
    """A CPU_ON that succeeds returns SUCCESS and leaves the named vCPU of the caller's own
    VM ON_PENDING with the entry point and context id it was given; where the profile
    checks entry points, it succeeds only for an entry the caller can execute."""
    i = s.vc(me.vm, target)
    gfn = logic.bits(entry, 12, 52)
    executable = and_(ult(gfn, s.cfg.n_gframes), bit(access(s, me.vm, gfn), 2)) \
        if s.cfg.profile.entry_check else True
    return and_(ret == 0, ult(target, s.cfg.n_vcpus), executable,
                select(s2.vcpu, i, OFF) == ON_PENDING, select(s2.vcpu_entry, i, 0) == entry,
                select(s2.vcpu_ctx, i, 0) == context)


def cpu_off(s: State, me: Caller, row: Row) -> Result:
    """PSCI CPU_OFF (DEN0022 5.1.3): the calling vCPU powers down, nothing stays pending.

    Allowed for every vCPU, the control VM's last one included, on purpose: see
    :func:`cpu_off_post` (after it the control VM can call nothing, so VM_CREATE and
    CPU_ON are DENIED for good: the host has shut itself down)."""
    i = s.vc(me.vm, me.vcpu)
    return ok(s.evolve(vcpu=store(s.vcpu, i, OFF), irq=store(s.irq, i, 0)))


@postcondition("cpu_off", "psci", "PSCI DEN0022 5.1.3 CPU_OFF")
def cpu_off_post(s: State, me: Caller, s2: State, ret: Any) -> Any:
    """CPU_OFF powers down the calling vCPU and nothing stays pending on it.

    Intended, also for the control VM's last ON vCPU: PSCI lets any core power itself
    down (5.1.3; SYSTEM_OFF is the way to stop the whole system), and the model takes the
    control VM with no ON vCPU as a host that has shut itself down -- from then on no
    vCPU of it can call, so VM_CREATE and CPU_ON are DENIED to it for good, as on a Xen
    host whose dom0 went away.  No invariant forbids it, on purpose."""
    i = s.vc(me.vm, me.vcpu)
    return and_(ret == 0, select(s2.vcpu, i, ON) == OFF, select(s2.irq, i, 1) == 0)


AFFINITY_ON, AFFINITY_OFF, AFFINITY_ON_PENDING = 0, 1, 2
# MPIDR affinity fields (DEN0022 5.1.4): Aff0 7:0, Aff1 15:8, Aff2 23:16, Aff3 39:32; the
# other bits of a target id must be zero.  _AFF_ABOVE[L]: the bits that must be zero for
# every vCPU of a VM to be in the instance at level L.
_NOT_AFF = ((1 << 64) - 1) & ~0xFF_00FF_FFFF
_AFF_ABOVE = {1: _NOT_AFF | 0xFF_00FF_FF00, 2: _NOT_AFF | 0xFF_00FF_0000,
              3: _NOT_AFF | 0xFF_0000_0000}


def affinity_info(s: State, me: Caller, row: Row, target: Any, level: Any) -> Result:
    """The power state of one vCPU (level 0) or, for a higher affinity level the profile
    supports, of the affinity instance holding it (DEN0022 5.1.5: ON if any of its cores
    is ON, else ON_PENDING if any is, else OFF).

    A vCPU's MPIDR has Aff0 = its index and Aff1..Aff3 = 0, so every vCPU of a VM is in
    the same instance at levels 1-3; the fields below ``level`` are ignored."""
    if not ule(level, s.cfg.profile.affinity_levels):
        return fail(s, row, "INVALID_PARAMETERS")
    if level == 0:
        if not ult(target, s.cfg.n_vcpus):
            return fail(s, row, "INVALID_PARAMETERS")
        power = select(s.vcpu, s.vc(me.vm, target))
        return ok(s, ite(power == ON, AFFINITY_ON,
                         ite(power == OFF, AFFINITY_OFF, AFFINITY_ON_PENDING)))
    # the fields at and above ``level`` must name the VM's one instance (all zero), and
    # the bits that are no affinity field must be zero
    mask = ite(level == 1, _AFF_ABOVE[1], ite(level == 2, _AFF_ABOVE[2], _AFF_ABOVE[3]))
    if logic.word(target) & mask != 0:
        return fail(s, row, "INVALID_PARAMETERS")
    C = s.cfg.n_vcpus
    any_on = exists(C, lambda c: select(s.vcpu, s.vc(me.vm, c)) == ON)
    any_pending = exists(C, lambda c: select(s.vcpu, s.vc(me.vm, c)) == ON_PENDING)
    return ok(s, ite(any_on, AFFINITY_ON, ite(any_pending, AFFINITY_ON_PENDING, AFFINITY_OFF)))


@postcondition("affinity_info", "psci", "PSCI DEN0022 5.1.5 AFFINITY_INFO")
def affinity_info_post(s: State, me: Caller, s2: State, ret: Any, target: Any, level: Any
                       ) -> Any:
    """AFFINITY_INFO answers ON (0), OFF (1) or ON_PENDING (2) and changes nothing; at
    level 0 the answer is the power state of the named vCPU of the caller's own VM."""
    power = select(s.vcpu, s.vc(me.vm, target), OFF)
    own = ite(power == ON, AFFINITY_ON, ite(power == OFF, AFFINITY_OFF, AFFINITY_ON_PENDING))
    return and_(ule(ret, 2), _unchanged(s.vcpu, s2.vcpu, lambda j: True),
                implies(level == 0, ret == own))


# CPU_SUSPEND's power_state, original format (DEN0022 5.4.2): the bits that are no field
_POWER_STATE_RESERVED = 0xFFFF_FFFF & ~(0xFFFF | 1 << 16 | 0x3 << 24)


def cpu_suspend(s: State, me: Caller, row: Row, power_state: Any, entry: Any, context: Any
                ) -> Result:
    """The caller's core enters a low-power state (DEN0022 5.1.2).  Which states exist is
    the platform's (the profile's ``suspend_states``, by StateType and level; StateIDs are
    not told apart); one it has may be turned into a shallower one (standby), and a
    standby returns SUCCESS once something wakes the core -- or never,
    when nothing does; a power-down resumes at ``entry``.  So a success is "0, or no
    return"; the core stays ON for AFFINITY_INFO (suspend is not OFF, 5.1.5).  A reserved
    bit is INVALID_PARAMETERS; a power-down to an entry the caller cannot execute is
    INVALID_ADDRESS where the profile checks entries (as CPU_ON)."""
    if logic.word(power_state) & _POWER_STATE_RESERVED != 0:
        return fail(s, row, "INVALID_PARAMETERS")
    # the state's class (spec/profile.py suspend_states): StateType, and level above 0
    cls = logic.add(logic.bits(power_state, 16, 1),
                    ite(logic.bits(power_state, 24, 2) != 0, 2, 0))
    if not bit(s.cfg.profile.suspend_states, cls):
        return fail(s, row, "INVALID_PARAMETERS")
    gfn = logic.bits(entry, 12, 52)
    if s.cfg.profile.entry_check and bit(power_state, 16) and (
            not ult(gfn, s.cfg.n_gframes) or not bit(access(s, me.vm, gfn), 2)):
        return fail(s, row, "INVALID_ADDRESS")
    if not bit(power_state, 16):
        return ok(s)
    i = s.vc(me.vm, me.vcpu)  # a power-down resumes at entry, with context in x0
    return ok(s.evolve(vcpu_entry=store(s.vcpu_entry, i, entry),
                       vcpu_ctx=store(s.vcpu_ctx, i, context)))


@postcondition("cpu_suspend", "psci", "PSCI DEN0022 5.1.2 CPU_SUSPEND")
def cpu_suspend_post(s: State, me: Caller, s2: State, ret: Any, power_state: Any, entry: Any,
                     context: Any) -> Any:
    """A CPU_SUSPEND that returns says SUCCESS, and the caller's core stays ON (suspend is
    not OFF, 5.1.5); a power-down records the resume entry and context id."""
    i = s.vc(me.vm, me.vcpu)
    down = bit(power_state, 16)
    return and_(ret == 0, select(s2.vcpu, i, OFF) == ON,
                implies(down, and_(select(s2.vcpu_entry, i, 0) == entry,
                                   select(s2.vcpu_ctx, i, 0) == context)))


def migrate_info_type(s: State, me: Caller, row: Row) -> Result:
    """Whether a Trusted OS needs migrating (DEN0022 5.1.7); optional (the profile)."""
    answer = s.cfg.profile.migrate_info_type
    if answer is None:
        return fail(s, row, "NOT_SUPPORTED")
    return ok(s, answer)


def system_off(s: State, me: Caller, row: Row) -> Result:
    """The caller's system powers off (DEN0022 5.1.9): every vCPU of its VM goes OFF and
    the call does not return.  The VM stays allocated (shut down, not destroyed: its
    memory, transactions and channels are the controller's to reclaim, as with Xen's
    SCHEDOP_shutdown)."""
    return ok(_vm_power(s, me.vm, boot=False))


def system_reset(s: State, me: Caller, row: Row) -> Result:
    """The caller's system restarts (DEN0022 5.1.10): its vCPUs return to their boot power
    states (vCPU 0 ON, the rest OFF, nothing pending); the call does not return."""
    return ok(_vm_power(s, me.vm, boot=True))


RESET2_VENDOR = 1 << 31  # DEN0022 5.1.11: reset_type bit 31 marks a vendor-specific type
SYSTEM_WARM_RESET = 0  # the one architectural reset type; 1..0x7FFFFFFF are reserved


def system_reset2(s: State, me: Caller, row: Row, reset_type: Any, cookie: Any) -> Result:
    """The caller's system restarts as SYSTEM_RESET does (DEN0022 5.1.11), for a warm reset
    or a vendor type the platform has; optional (the profile).  A reserved architectural
    type is INVALID_PARAMETERS; what a vendor type does is the platform's (the profile:
    it resets, or it is refused with the error the profile names).  The cookie only
    matters to a vendor reset, which the model does not tell apart from a warm one."""
    vendor = s.cfg.profile.system_reset2
    if vendor is None:
        return fail(s, row, "NOT_SUPPORTED")
    if reset_type & RESET2_VENDOR == 0:
        if reset_type != SYSTEM_WARM_RESET:
            return fail(s, row, "INVALID_PARAMETERS")
    elif vendor != 0:
        return fail(s, row, "INVALID_PARAMETERS" if vendor == -2 else "NOT_SUPPORTED")
    return ok(_vm_power(s, me.vm, boot=True))


@postcondition("system_reset2", "psci", "PSCI DEN0022 5.1.11 SYSTEM_RESET2")
def system_reset2_post(s: State, me: Caller, s2: State, ret: Any, reset_type: Any,
                       cookie: Any) -> Any:
    """A SYSTEM_RESET2 that succeeds asked for a warm reset or for a vendor type the
    platform resets for -- never a reserved architectural type -- and restarts the
    caller's VM: its boot vCPU ON, the others OFF, nothing pending on any."""
    vendor = s.cfg.profile.system_reset2
    allowed = or_(reset_type == SYSTEM_WARM_RESET,
                  and_(bit(reset_type, 31), vendor == 0)) if vendor is not None else False
    C = s.cfg.n_vcpus
    restarted = forall(C, lambda c: and_(
        select(s2.vcpu, s.vc(me.vm, c), OFF) == ite(c == 0, ON, OFF),
        select(s2.irq, s.vc(me.vm, c), 1) == 0))
    return and_(ret == 0, allowed, restarted)


def _vm_power(s: State, vm: Any, boot: bool) -> State:
    C = s.cfg.n_vcpus
    return s.evolve(
        vcpu=tabulate(lambda i, x: ite(logic.row(i, C) == vm,
                                       ite(and_(boot, logic.col(i, C) == 0), ON, OFF), x), s.vcpu),
        irq=tabulate(lambda i, x: ite(logic.row(i, C) == vm, 0, x), s.irq))


# Calls PSCI_FEATURES reports on (DEN0022 5.1.14): every PSCI row, and SMCCC_VERSION;
# an optional one only where the profile has it (spec.profile.offers).
_FEATURE_ROWS = tuple((r.name, r.function_id) for r in TABLE
                      if r.space == "psci" or r.name == "SMCCC_VERSION")
_SMCCC_IDS = tuple(r.function_id for r in TABLE if r.space == "smccc")


def psci_features(s: State, me: Caller, row: Row, fid: Any) -> Result:
    """0 for an implemented PSCI function or SMCCC_VERSION, else NOT_SUPPORTED.  No call
    this table has defines feature flags (CPU_SUSPEND would), so every answer is 0."""
    p = s.cfg.profile
    if not or_(*(fid == f for name, f in _FEATURE_ROWS if offers(p, name))):
        return fail(s, row, "NOT_SUPPORTED")
    return ok(s, 0)


def smccc_version(s: State, me: Caller, row: Row) -> Result:
    """The SMCCC version (from 1.1); an SMCCC 1.0 implementation does not have the call."""
    v = s.cfg.profile.smccc_version
    if v is None:
        return fail(s, row, "NOT_SUPPORTED")
    return ok(s, v)


def smccc_arch_features(s: State, me: Caller, row: Row, fid: Any) -> Result:
    """For SMCCC_VERSION and SMCCC_ARCH_FEATURES themselves, and for the erratum
    workarounds, the profile's answer; NOT_SUPPORTED for anything else (and for every
    query under SMCCC 1.0, which has no SMCCC_ARCH_FEATURES)."""
    p = s.cfg.profile
    if p.smccc_version is None:
        return fail(s, row, "NOT_SUPPORTED")
    answer: Any = logic.word(row.error("NOT_SUPPORTED"))
    for f, a in zip(ARCH_WORKAROUNDS, p.workarounds, strict=True):
        answer = ite(fid == f, logic.word(a), answer)
    for f in _SMCCC_IDS:
        answer = ite(fid == f, logic.word(p.arch_features_self), answer)
    return ok(s, answer)


# --- VM lifecycle (control VM only; the machine checks the caller) -------------------------
def _other_vm(s: State, vm: Any) -> Any:
    return and_(ult(vm, s.cfg.n_vms), vm != CONTROL)


def vm_create(s: State, me: Caller, row: Row, vm: Any, quota: Any) -> Result:
    if not _other_vm(s, vm) or not ule(quota, s.cfg.n_hframes):
        return fail(s, row, "INVALID_PARAMETERS")
    if select(s.vm_state, vm) != ABSENT:
        return fail(s, row, "DENIED")
    return ok(s.evolve(
        vm_state=store(s.vm_state, vm, RUNNING),
        quota=store(s.quota, vm, quota),
        vcpu=store(s.vcpu, s.vc(vm, 0), ON),
    ))


@postcondition("vm_create", "lifecycle", "pvspec VM lifecycle (Xen XEN_DOMCTL_createdomain)")
def vm_create_post(s: State, me: Caller, s2: State, ret: Any, vm: Any, quota: Any) -> Any:
    """VM_CREATE makes the named VM RUNNING with the quota it was given and its boot vCPU
    (0) ON."""
    return and_(ret == 0, select(s2.vm_state, vm, ABSENT) == RUNNING,
                select(s2.quota, vm, 0) == quota, select(s2.vcpu, s.vc(vm, 0), OFF) == ON)


def vm_pause(s: State, me: Caller, row: Row, vm: Any) -> Result:
    return _set_lifecycle(s, row, vm, RUNNING, PAUSED)


@postcondition("vm_pause", "lifecycle", "pvspec VM lifecycle (Xen XEN_DOMCTL_pausedomain)")
def vm_pause_post(s: State, me: Caller, s2: State, ret: Any, vm: Any) -> Any:
    """VM_PAUSE leaves the named VM PAUSED."""
    return and_(ret == 0, select(s2.vm_state, vm, ABSENT) == PAUSED)


def vm_resume(s: State, me: Caller, row: Row, vm: Any) -> Result:
    return _set_lifecycle(s, row, vm, PAUSED, RUNNING)


@postcondition("vm_resume", "lifecycle", "pvspec VM lifecycle (Xen XEN_DOMCTL_unpausedomain)")
def vm_resume_post(s: State, me: Caller, s2: State, ret: Any, vm: Any) -> Any:
    """VM_RESUME leaves the named VM RUNNING."""
    return and_(ret == 0, select(s2.vm_state, vm, ABSENT) == RUNNING)


def _set_lifecycle(s: State, row: Row, vm: Any, before: int, after: int) -> Result:
    if not _other_vm(s, vm):
        return fail(s, row, "INVALID_PARAMETERS")
    if select(s.vm_state, vm) != before:
        return fail(s, row, "DENIED")
    return ok(s.evolve(vm_state=store(s.vm_state, vm, after)))


def vm_destroy(s: State, me: Caller, row: Row, vm: Any) -> Result:
    """Tear a VM down without ever freeing a frame that someone else still maps.

    * its vCPUs stop, its ports close, its devices are unassigned;
    * its retrievals end (its stage-2 table empties) and it stops being a borrower;
    * a transaction it owns that nobody has retrieved ends, and the frames are freed;
    * a transaction it owns that another VM still maps is *orphaned*: its frames pass to
      ORPHAN (held by the hypervisor, counted against nobody) until the last borrower
      relinquishes, and only then are freed.  This is the rule whose violation is Xen's
      XSA-218 / XSA-230 class: a frame reused while still mapped.
    """
    if not _other_vm(s, vm):
        return fail(s, row, "INVALID_PARAMETERS")
    if select(s.vm_state, vm) == ABSENT:
        return fail(s, row, "DENIED")
    return ok(_destroy(s, vm))


@postcondition("vm_destroy", "lifecycle", "pvspec VM lifecycle; XSA-218/230 frame reuse rule")
def vm_destroy_post(s: State, me: Caller, s2: State, ret: Any, vm: Any) -> Any:
    """VM_DESTROY leaves the named VM ABSENT with quota 0, owning no frame and holding no
    device."""
    return and_(ret == 0, select(s2.vm_state, vm, RUNNING) == ABSENT,
                select(s2.quota, vm, 1) == 0, every(lambda f, o: o != vm, s2.owner),
                every(lambda d, o: o != vm, s2.dev_owner))


def _destroy(s: State, vm: Any) -> State:
    cfg = s.cfg

    # Transactions: vm stops being a borrower everywhere; each one's fate is decided on
    # what is left.
    def ends(k: Any) -> Any:  # over: nobody else maps it, and its owner is dead or vm
        o = select(s.tx_owner, k, NONE)
        return and_(select(s.tx_kind, k, TX_FREE) != TX_FREE,
                    set_bit(select(s.tx_retrieved, k, 0), vm, False) == 0,
                    or_(o == vm, o == NONE))

    def orphaned(k: Any) -> Any:  # vm's, and another VM still maps it
        return and_(select(s.tx_kind, k, TX_FREE) != TX_FREE, not_(ends(k)),
                    select(s.tx_owner, k, NONE) == vm)

    P = cfg.n_ports

    def mine(i: Any) -> Any:
        return logic.row(i, P) == vm

    def peer(i: Any, state: Any, rvm: Any) -> Any:  # another VM's port naming vm
        return and_(not_(mine(i)), state != CLOSED, rvm == vm)

    return _clear_rows(s.evolve(
        owner=tabulate(lambda f, o, t: ite(orphaned(t), ORPHAN, ite(
            or_(ends(t), and_(o == vm, t == NONE)), FREE, o)), s.owner, s.frame_tx),
        frame_tx=tabulate(lambda f, t: ite(ends(t), NONE, t), s.frame_tx),
        tx_kind=tabulate(lambda k, x: ite(ends(k), TX_FREE, x), s.tx_kind),
        tx_owner=tabulate(lambda k, x: ite(or_(ends(k), orphaned(k)), NONE, x), s.tx_owner),
        tx_base=tabulate(lambda k, x: ite(ends(k), 0, x), s.tx_base),
        tx_count=tabulate(lambda k, x: ite(ends(k), 0, x), s.tx_count),
        tx_perm=tabulate(lambda k, x: ite(ends(k), 0, x), s.tx_perm),
        # an orphaned transaction can no longer be retrieved by those who had not yet
        tx_borrowers=tabulate(lambda k, who, got: ite(ends(k), 0, ite(
            orphaned(k), set_bit(got, vm, False), set_bit(who, vm, False))),
            s.tx_borrowers, s.tx_retrieved),
        tx_retrieved=tabulate(lambda k, got: set_bit(got, vm, False), s.tx_retrieved),
        # Event channels: its ports close; peers fall back to unbound, accepting nobody.
        ch_state=tabulate(lambda i, x, rvm: ite(mine(i), CLOSED, ite(
            peer(i, x, rvm), UNBOUND, x)), s.ch_state, s.ch_rvm),
        ch_rvm=tabulate(lambda i, x, state: ite(or_(mine(i), peer(i, state, x)), NONE, x),
                        s.ch_rvm, s.ch_state),
        ch_rport=tabulate(lambda i, x, state, rvm: ite(or_(mine(i), peer(i, state, rvm)),
                                                        NONE, x),
                          s.ch_rport, s.ch_state, s.ch_rvm),
        ch_pending=tabulate(lambda i, x: ite(mine(i), False, x), s.ch_pending),
        ch_masked=tabulate(lambda i, x: ite(mine(i), False, x), s.ch_masked),
        dev_owner=tabulate(lambda d, o: ite(o == vm, NONE, o), s.dev_owner),
        vm_state=store(s.vm_state, vm, ABSENT),
        quota=store(s.quota, vm, 0),
        owned=store(s.owned, vm, 0),  # its frames are freed or orphaned
    ), vm)  # its stage-2 table, vCPUs and interrupts


def _clear_rows(s: State, vm: Any) -> State:
    """Empty vm's stage-2 table and stop its vCPUs."""
    G, C = s.cfg.n_gframes, s.cfg.n_vcpus
    return _unmap_where(s, lambda i: logic.row(i, G) == vm).evolve(
        vcpu=tabulate(lambda i, x: ite(logic.row(i, C) == vm, OFF, x), s.vcpu),
        irq=tabulate(lambda i, x: ite(logic.row(i, C) == vm, 0, x), s.irq),
    )


def _unmap_where(s: State, sel: Callable[[Any], Any]) -> State:
    """Invalidate the stage-2 entries ``i`` with ``sel(i)``, resetting them to canonical
    zeros."""
    return s.evolve(
        s2_valid=tabulate(lambda i, x: ite(sel(i), False, x), s.s2_valid),
        s2_frame=tabulate(lambda i, x: ite(sel(i), 0, x), s.s2_frame),
        s2_perm=tabulate(lambda i, x: ite(sel(i), 0, x), s.s2_perm),
        s2_held=tabulate(lambda i, x: ite(sel(i), False, x), s.s2_held),
        s2_tx=tabulate(lambda i, x: ite(sel(i), NONE, x), s.s2_tx),
    )


# --- memory ---------------------------------------------------------------------------------
def _perm_ok(perm: Any) -> Any:
    return bit(perm, 0)  # readable: write-only or execute-only mappings are not offered


def mem_populate(s: State, me: Caller, row: Row, gfn: Any, perm: Any) -> Result:
    """Map a fresh host frame at the caller's guest frame ``gfn``, within its quota.

    The spec picks the lowest free frame; that choice is not observable by any VM.
    """
    cfg = s.cfg
    if not ult(gfn, cfg.n_gframes) or not _perm_ok(perm):
        return fail(s, row, "INVALID_PARAMETERS")
    i = s.vg(me.vm, gfn)
    if select(s.s2_valid, i):
        return fail(s, row, "DENIED")
    if not ult(select(s.owned, me.vm), select(s.quota, me.vm)):
        return fail(s, row, "NO_MEMORY")
    h = logic.first_slot(lambda f, o: o == FREE, s.owner, NONE)
    if h == NONE:
        return fail(s, row, "NO_MEMORY")
    return ok(s.evolve(
        owner=store(s.owner, h, me.vm),
        owned=store(s.owned, me.vm, logic.add(select(s.owned, me.vm), 1)),
        s2_valid=store(s.s2_valid, i, True),
        s2_frame=store(s.s2_frame, i, h),
        s2_perm=store(s.s2_perm, i, perm),
    ))


@postcondition("mem_populate", "memory", "pvspec memory; Xen XENMEM_populate_physmap",
               _ACCESS)
def mem_populate_post(s: State, me: Caller, s2: State, ret: Any, gfn: Any, perm: Any) -> Any:
    """MEM_POPULATE maps the caller's guest frame ``gfn`` as its own, with the rights
    asked for, onto a host frame that was free and is now the caller's."""
    i = s.vg(me.vm, gfn)
    frame = select(s2.s2_frame, i, 0)
    return and_(ret == 0, select(s2.s2_valid, i, False), select(s2.s2_perm, i, 0) == perm,
                select(s2.s2_tx, i, 0) == NONE, select(s.owner, frame, NONE) == FREE,
                select(s2.owner, frame, NONE) == me.vm)


def mem_release(s: State, me: Caller, row: Row, gfn: Any) -> Result:
    """Give back an owned frame; a frame inside a live transaction cannot be released."""
    if not ult(gfn, s.cfg.n_gframes):
        return fail(s, row, "INVALID_PARAMETERS")
    i = s.vg(me.vm, gfn)
    if not select(s.s2_valid, i) or select(s.s2_tx, i) != NONE:
        return fail(s, row, "INVALID_PARAMETERS")
    frame = select(s.s2_frame, i)
    if select(s.frame_tx, frame) != NONE:
        return fail(s, row, "DENIED")
    return ok(s.evolve(
        s2_valid=store(s.s2_valid, i, False), s2_frame=store(s.s2_frame, i, 0),
        s2_perm=store(s.s2_perm, i, 0), s2_held=store(s.s2_held, i, False),
        s2_tx=store(s.s2_tx, i, NONE), owner=store(s.owner, frame, FREE),
        owned=store(s.owned, me.vm, logic.sub(select(s.owned, me.vm), 1))))


@postcondition("mem_release", "memory", "pvspec memory; Xen XENMEM_decrease_reservation",
               _ACCESS)
def mem_release_post(s: State, me: Caller, s2: State, ret: Any, gfn: Any) -> Any:
    """MEM_RELEASE unmaps the caller's guest frame ``gfn`` and frees the host frame that
    backed it."""
    i = s.vg(me.vm, gfn)
    return and_(ret == 0, not_(select(s2.s2_valid, i, True)),
                select(s2.owner, select(s.s2_frame, i, 0), NONE) == FREE)


def mem_share(s: State, me: Caller, row: Row, base: Any, n: Any, who: Any, perm: Any) -> Result:
    return _transact(s, me, row, SHARE, base, n, who, perm)


def mem_lend(s: State, me: Caller, row: Row, base: Any, n: Any, who: Any, perm: Any) -> Result:
    return _transact(s, me, row, LEND, base, n, who, perm)


def mem_donate(s: State, me: Caller, row: Row, base: Any, n: Any, who: Any, perm: Any) -> Result:
    return _transact(s, me, row, DONATE, base, n, who, perm)


def _transact_post(kind: int) -> Callable[..., Any]:
    def holds(s: State, me: Caller, s2: State, ret: Any, base: Any, n: Any, who: Any,
              perm: Any) -> Any:
        """A MEM_SHARE / MEM_LEND / MEM_DONATE that succeeds returns the handle of the
        slot it filled: a slot that was free, now a transaction of this kind owned by the
        caller over base..base+n-1 with the rights and borrowers asked for, retrieved by
        nobody yet."""
        return and_(ult(ret, s.cfg.n_tx), select(s.tx_kind, ret, SHARE) == TX_FREE,
                    select(s2.tx_kind, ret, TX_FREE) == kind,
                    select(s2.tx_owner, ret, NONE) == me.vm,
                    select(s2.tx_base, ret, NONE) == base, select(s2.tx_count, ret, 0) == n,
                    select(s2.tx_perm, ret, 0) == perm, select(s2.tx_borrowers, ret, 0) == who,
                    select(s2.tx_retrieved, ret, 1) == 0)
    return holds


for _handler, _kind, _name in (("mem_share", SHARE, "FFA_MEM_SHARE"),
                               ("mem_lend", LEND, "FFA_MEM_LEND"),
                               ("mem_donate", DONATE, "FFA_MEM_DONATE")):
    postcondition(_handler, "memory", f"FF-A DEN0077 10.2 {_name}")(_transact_post(_kind))


def _transact(s: State, me: Caller, row: Row, kind: int, base: Any, n: Any, who: Any,
              perm: Any) -> Result:
    """Open a memory transaction (FF-A share / lend / donate) over ``n`` owned frames.

    Share keeps the owner's access; lend and donate suspend it (the owner's entries are
    *held*).  A frame takes part in at most one transaction at a time.
    """
    cfg = s.cfg
    G = cfg.n_gframes
    if not and_(ule(1, n), ule(n, G), ult(base, G), ule(logic.add(base, n), G)):
        return fail(s, row, "INVALID_PARAMETERS")
    if who == 0 or not ult(who, logic.shl(1, cfg.n_vms)) or bit(who, me.vm):
        return fail(s, row, "INVALID_PARAMETERS")
    if not forall(cfg.n_vms, lambda v: implies(bit(who, v),
                                                select(s.vm_state, v, ABSENT) != ABSENT)):
        return fail(s, row, "INVALID_PARAMETERS")
    if kind == DONATE and logic.sub(who, 1) & who != 0:
        return fail(s, row, "INVALID_PARAMETERS")  # a donation has exactly one receiver
    if not _perm_ok(perm):
        return fail(s, row, "INVALID_PARAMETERS")

    def owned(g: Any) -> Any:  # the caller's own entry, not yet in a transaction
        i = s.vg(me.vm, g)
        # An invalid entry's frame is 0, a frame a model without host frames does not
        # have (the all-sizes index obligation found it): its transaction is read with a
        # default; a valid entry's frame exists (well_formed).
        return implies(within(g, base, n), and_(
            select(s.s2_valid, i),
            select(s.s2_tx, i) == NONE,
            perm & ~select(s.s2_perm, i) == 0,
            select(s.frame_tx, select(s.s2_frame, i), NONE) == NONE,
        ))

    if not forall(G, owned):
        return fail(s, row, "DENIED")
    k = logic.first_slot(lambda k, x: x == TX_FREE, s.tx_kind, NONE)
    if k == NONE:
        return fail(s, row, "NO_MEMORY")

    def chosen(f: Any) -> Any:  # host frame f is one of the transaction's frames
        return exists(G, lambda g: and_(within(g, base, n),
                                        select(s.s2_frame, s.vg(me.vm, g), 0) == f))

    held, mine = kind != SHARE, _span(s, me.vm, base, n)
    return ok(s.evolve(
        frame_tx=tabulate(lambda f, t: ite(chosen(f), k, t), s.frame_tx),
        s2_held=tabulate(lambda i, x: ite(mine(i), held, x), s.s2_held) if held else s.s2_held,
        tx_kind=store(s.tx_kind, k, kind),
        tx_owner=store(s.tx_owner, k, me.vm),
        tx_base=store(s.tx_base, k, base),
        tx_count=store(s.tx_count, k, n),
        tx_perm=store(s.tx_perm, k, perm),
        tx_borrowers=store(s.tx_borrowers, k, who),
        tx_retrieved=store(s.tx_retrieved, k, 0),
    ), k)


def _span(s: State, vm: Any, base: Any, n: Any) -> Callable[[Any], Any]:
    """Which stage-2 entries are VM ``vm``'s guest frames ``base .. base + n - 1``."""
    G = s.cfg.n_gframes
    return lambda i: and_(logic.row(i, G) == vm, within(logic.col(i, G), base, n))


def _tx_live(s: State, k: Any) -> Any:
    return and_(ult(k, s.cfg.n_tx), select(s.tx_kind, k, TX_FREE) != TX_FREE)


def mem_retrieve(s: State, me: Caller, row: Row, k: Any, base: Any) -> Result:
    """A borrower maps a transaction's frames at its guest frames ``base``.. (FF-A retrieve).

    For a donation, ownership moves to the borrower and the transaction ends.
    """
    cfg = s.cfg
    G = cfg.n_gframes
    if not _tx_live(s, k):
        return fail(s, row, "INVALID_PARAMETERS")
    owner = select(s.tx_owner, k)
    if not bit(select(s.tx_borrowers, k), me.vm) or bit(select(s.tx_retrieved, k), me.vm):
        return fail(s, row, "DENIED")
    if owner == NONE:
        return fail(s, row, "DENIED")
    n = select(s.tx_count, k)
    if not and_(ult(base, G), ule(logic.add(base, n), G)):
        return fail(s, row, "INVALID_PARAMETERS")
    if exists(G, lambda g: and_(within(g, base, n), select(s.s2_valid, s.vg(me.vm, g)))):
        return fail(s, row, "DENIED")
    kind = select(s.tx_kind, k)
    if kind == DONATE and not ule(logic.add(select(s.owned, me.vm), n),
                                  select(s.quota, me.vm)):
        return fail(s, row, "NO_MEMORY")
    tx_base = select(s.tx_base, k)
    pre = s

    def target(g: Any) -> Any:
        """The host frame the borrower's entry g maps: the owner's entry g - base + tx_base
        (0 where there is none)."""
        return select(pre.s2_frame, pre.vg(owner, logic.add(logic.sub(g, base), tx_base)), 0)

    mine = _span(s, me.vm, base, n)
    perm = select(s.tx_perm, k)
    if kind == DONATE:
        s = _unmap_where(s, _span(s, owner, tx_base, n))
        # the n frames move from the owner's count to the caller's
        owned = store(s.owned, owner, logic.sub(select(s.owned, owner), n))
        s = s.evolve(
            owner=tabulate(lambda f, o, t: ite(t == k, me.vm, o), s.owner, s.frame_tx),
            frame_tx=tabulate(lambda f, t: ite(t == k, NONE, t), s.frame_tx),
            owned=store(owned, me.vm, logic.add(select(owned, me.vm), n)),
        )
        s = _map(s, mine, target, perm, NONE)
        return ok(_free_tx(s, k))
    s = _map(s, mine, target, perm, k)
    return ok(s.evolve(tx_retrieved=store(s.tx_retrieved, k,
                                          set_bit(select(s.tx_retrieved, k), me.vm, True))))


@postcondition("mem_retrieve", "memory", "FF-A DEN0077 10.3 FFA_MEM_RETRIEVE_REQ",
               _ACCESS)
def mem_retrieve_post(s: State, me: Caller, s2: State, ret: Any, k: Any, base: Any) -> Any:
    """MEM_RETRIEVE maps the transaction's frames at the caller's guest frames
    base..base+count-1 with the rights granted; a share or lend records the caller's
    retrieval, a donation ends the transaction."""
    n, perm = select(s.tx_count, k, 0), select(s.tx_perm, k, 0)
    donated = select(s.tx_kind, k, TX_FREE) == DONATE
    mapped = forall(s.cfg.n_gframes, lambda g: implies(within(g, base, n), and_(
        select(s2.s2_valid, s.vg(me.vm, g), False),
        select(s2.s2_perm, s.vg(me.vm, g), 0) == perm)))
    return and_(ret == 0, mapped,
                ite(donated, select(s2.tx_kind, k, DONATE) == TX_FREE,
                    bit(select(s2.tx_retrieved, k, 0), me.vm)))


def _map(s: State, sel: Callable[[Any], Any], target: Callable[[Any], Any], perm: Any,
         tx: Any) -> State:
    """Map the stage-2 entries ``i`` with ``sel(i)`` to host frame ``target(g)`` (``g``
    the entry's guest frame), with ``perm``, in transaction ``tx``."""
    G = s.cfg.n_gframes
    return s.evolve(
        s2_valid=tabulate(lambda i, x: ite(sel(i), True, x), s.s2_valid),
        s2_frame=tabulate(lambda i, x: ite(sel(i), target(logic.col(i, G)), x), s.s2_frame),
        s2_perm=tabulate(lambda i, x: ite(sel(i), perm, x), s.s2_perm),
        s2_held=tabulate(lambda i, x: ite(sel(i), False, x), s.s2_held),
        s2_tx=tabulate(lambda i, x: ite(sel(i), tx, x), s.s2_tx),
    )


def _free_tx(s: State, k: Any) -> State:
    return s.evolve(
        tx_kind=store(s.tx_kind, k, TX_FREE),
        tx_owner=store(s.tx_owner, k, NONE),
        tx_base=store(s.tx_base, k, 0),
        tx_count=store(s.tx_count, k, 0),
        tx_perm=store(s.tx_perm, k, 0),
        tx_borrowers=store(s.tx_borrowers, k, 0),
        tx_retrieved=store(s.tx_retrieved, k, 0),
    )


def mem_relinquish(s: State, me: Caller, row: Row, k: Any) -> Result:
    """A borrower unmaps a retrieved transaction; the last one out frees an orphan's frames."""
    if not _tx_live(s, k):
        return fail(s, row, "INVALID_PARAMETERS")
    if not bit(select(s.tx_retrieved, k), me.vm):
        return fail(s, row, "DENIED")
    G = s.cfg.n_gframes
    pre = s
    s = _unmap_where(s, lambda i: and_(logic.row(i, G) == me.vm, select(pre.s2_tx, i, NONE) == k))
    left = set_bit(select(s.tx_retrieved, k), me.vm, False)
    orphaned = select(s.tx_owner, k) == NONE
    # An orphan cannot be retrieved again, so the borrower also loses its right to.
    who = select(s.tx_borrowers, k)
    s = s.evolve(tx_retrieved=store(s.tx_retrieved, k, left),
                 tx_borrowers=store(s.tx_borrowers, k,
                                    ite(orphaned, set_bit(who, me.vm, False), who)))
    if orphaned and left == 0:
        s = s.evolve(
            owner=tabulate(lambda f, o, t: ite(t == k, FREE, o), s.owner, s.frame_tx),
            frame_tx=tabulate(lambda f, t: ite(t == k, NONE, t), s.frame_tx),
        )
        s = _free_tx(s, k)
    return ok(s)


@postcondition("mem_relinquish", "memory", "FF-A DEN0077 10.4 FFA_MEM_RELINQUISH",
               _ACCESS)
def mem_relinquish_post(s: State, me: Caller, s2: State, ret: Any, k: Any) -> Any:
    """MEM_RELINQUISH leaves the caller holding no retrieval of the transaction: no entry
    of its table names it and it is out of the retrieved set."""
    G = s.cfg.n_gframes
    return and_(ret == 0, not_(bit(select(s2.tx_retrieved, k, 0), me.vm)),
                every(lambda i, v, t: implies(logic.row(i, G) == me.vm, or_(not_(v), t != k)),
                      s2.s2_valid, s2.s2_tx))


def mem_reclaim(s: State, me: Caller, row: Row, k: Any) -> Result:
    """The owner ends a transaction; only once no borrower maps it (FF-A: else DENIED)."""
    if not _tx_live(s, k):
        return fail(s, row, "INVALID_PARAMETERS")
    if select(s.tx_owner, k) != me.vm or select(s.tx_retrieved, k) != 0:
        return fail(s, row, "DENIED")
    mine = _span(s, me.vm, select(s.tx_base, k), select(s.tx_count, k))
    s = s.evolve(
        frame_tx=tabulate(lambda f, t: ite(t == k, NONE, t), s.frame_tx),
        s2_held=tabulate(lambda i, x: ite(mine(i), False, x), s.s2_held),
    )
    return ok(_free_tx(s, k))


@postcondition("mem_reclaim", "memory", "FF-A DEN0077 10.5 FFA_MEM_RECLAIM",
               _ACCESS)
def mem_reclaim_post(s: State, me: Caller, s2: State, ret: Any, k: Any) -> Any:
    """MEM_RECLAIM ends the caller's transaction (its slot is free) and gives the caller
    back the use of its frames (none of its entries stays held)."""
    mine = _span(s, me.vm, select(s.tx_base, k, 0), select(s.tx_count, k, 0))
    return and_(ret == 0, select(s2.tx_kind, k, SHARE) == TX_FREE,
                every(lambda i, h: implies(mine(i), not_(h)), s2.s2_held))


# --- event channels ---------------------------------------------------------------------------
def _free_port(s: State, vm: Any) -> tuple[Any, Any]:
    P = s.cfg.n_ports

    def closed(p: Any) -> Any:
        return select(s.ch_state, s.vp(vm, p)) == CLOSED

    p = logic.first_where(P, closed, NONE)
    return p != NONE, p


def _remote_ok(s: State, me: Caller, remote: Any, offer: bool) -> Any:
    """Whether ``remote`` may be the other end of a channel of ``me``'s: a live VM other
    than the caller -- unless the profile allows a loopback channel, or (for an offer)
    any domain id, live or not (spec/profile.py ``evtchn_*``)."""
    p = s.cfg.profile
    if offer and p.evtchn_any_remote:
        exists = ult(remote, DOMID_FIRST_RESERVED)
    else:
        exists = _live_vm(s, remote)
    return exists if p.evtchn_loopback else and_(exists, remote != me.vm)


def evtchn_alloc_unbound(s: State, me: Caller, row: Row, remote: Any) -> Result:
    if not _remote_ok(s, me, remote, offer=True):
        return fail(s, row, "INVALID_PARAMETERS")
    have, p = _free_port(s, me.vm)
    if not have:
        return fail(s, row, "NO_MEMORY")
    i = s.vp(me.vm, p)
    return ok(s.evolve(
        ch_state=store(s.ch_state, i, UNBOUND),
        ch_rvm=store(s.ch_rvm, i, remote),
        ch_rport=store(s.ch_rport, i, NONE),
    ), p)


@postcondition("evtchn_alloc_unbound", "channels", "Xen EVTCHNOP_alloc_unbound")
def evtchn_alloc_unbound_post(s: State, me: Caller, s2: State, ret: Any, remote: Any) -> Any:
    """EVTCHN_ALLOC_UNBOUND returns one of the caller's ports that was closed and is now
    unbound, offered to ``remote``."""
    i = s.vp(me.vm, ret)
    return and_(ult(ret, s.cfg.n_ports), select(s.ch_state, i, UNBOUND) == CLOSED,
                select(s2.ch_state, i, CLOSED) == UNBOUND, select(s2.ch_rvm, i, NONE) == remote)


def evtchn_bind_interdomain(s: State, me: Caller, row: Row, remote: Any, rport: Any) -> Result:
    if not _remote_ok(s, me, remote, offer=False) or not ult(rport, s.cfg.n_ports):
        return fail(s, row, "INVALID_PARAMETERS")
    r = s.vp(remote, rport)
    if select(s.ch_state, r) != UNBOUND or select(s.ch_rvm, r) != me.vm:
        return fail(s, row, "DENIED")
    have, p = _free_port(s, me.vm)
    if not have:
        return fail(s, row, "NO_MEMORY")
    i = s.vp(me.vm, p)
    return ok(s.evolve(
        ch_state=store(store(s.ch_state, i, INTERDOMAIN), r, INTERDOMAIN),
        ch_rvm=store(store(s.ch_rvm, i, remote), r, me.vm),
        ch_rport=store(store(s.ch_rport, i, rport), r, p),
    ), p)


@postcondition("evtchn_bind_interdomain", "channels", "Xen EVTCHNOP_bind_interdomain")
def evtchn_bind_interdomain_post(s: State, me: Caller, s2: State, ret: Any, remote: Any,
                                 rport: Any) -> Any:
    """EVTCHN_BIND_INTERDOMAIN returns one of the caller's ports that was closed and is now
    bound to ``remote``'s port ``rport``, which is bound back to it."""
    i, r = s.vp(me.vm, ret), s.vp(remote, rport)
    return and_(ult(ret, s.cfg.n_ports), select(s.ch_state, i, INTERDOMAIN) == CLOSED,
                select(s2.ch_state, i, CLOSED) == INTERDOMAIN,
                select(s2.ch_rvm, i, NONE) == remote, select(s2.ch_rport, i, NONE) == rport,
                select(s2.ch_state, r, CLOSED) == INTERDOMAIN,
                select(s2.ch_rvm, r, NONE) == me.vm, select(s2.ch_rport, r, NONE) == ret)


def _own_port(s: State, row: Row, me: Caller, port: Any) -> tuple[Any, Result | None]:
    """Index of the caller's port, or the failure for a bad / closed port."""
    if not ult(port, s.cfg.n_ports):
        return None, fail(s, row, "INVALID_PARAMETERS")
    i = s.vp(me.vm, port)
    if select(s.ch_state, i) == CLOSED:
        return None, fail(s, row, "INVALID_PARAMETERS")
    return i, None


def _raise(s: State, vm: Any, vcpu: Any, line: Any) -> State:
    i = s.vc(vm, vcpu)
    return s.evolve(irq=store(s.irq, i, set_bit(select(s.irq, i), line, True)))


def evtchn_send(s: State, me: Caller, row: Row, port: Any) -> Result:
    """Set the bound peer's pending bit; interrupt its vCPU 0 unless the peer port is masked.
    On an unbound port: INVALID_PARAMETERS, or nothing happens where the profile drops it."""
    i, err = _own_port(s, row, me, port)
    if err:
        return err
    if select(s.ch_state, i) != INTERDOMAIN:
        if s.cfg.profile.evtchn_send_unbound:
            return ok(s)
        return fail(s, row, "INVALID_PARAMETERS")
    rvm, rport = select(s.ch_rvm, i), select(s.ch_rport, i)
    r = s.vp(rvm, rport)
    s = s.evolve(ch_pending=store(s.ch_pending, r, True))
    if not select(s.ch_masked, r):
        s = _raise(s, rvm, 0, IRQ_EVTCHN)
    return ok(s)


@postcondition("evtchn_send", "channels", "Xen EVTCHNOP_send",
               _IRQ)
def evtchn_send_post(s: State, me: Caller, s2: State, ret: Any, port: Any) -> Any:
    """EVTCHN_SEND raises an event only on the bound peer: no interrupt becomes pending
    anywhere but at vCPU 0 of the VM the caller's port is bound to, and only the event
    line; through a bound port the peer's port is left pending."""
    i = s.vp(me.vm, port)
    bound = select(s.ch_state, i, CLOSED) == INTERDOMAIN
    rvm, rport = select(s.ch_rvm, i, NONE), select(s.ch_rport, i, NONE)
    C = s.cfg.n_vcpus
    raised = _unchanged(s.irq, s2.irq, lambda j: not_(and_(
        bound, logic.row(j, C) == rvm, logic.col(j, C) == 0)))
    only_line = every(lambda j, x, y: x | (1 << IRQ_EVTCHN) == y | (1 << IRQ_EVTCHN),
                      s.irq, s2.irq) if s.irq is not s2.irq else True
    return and_(ret == 0, raised, only_line,
                implies(bound, select(s2.ch_pending, s.vp(rvm, rport), False)))


def evtchn_close(s: State, me: Caller, row: Row, port: Any) -> Result:
    """Close a port; an interdomain peer returns to unbound, accepting the caller again."""
    i, err = _own_port(s, row, me, port)
    if err:
        return err
    if select(s.ch_state, i) == INTERDOMAIN:
        r = s.vp(select(s.ch_rvm, i), select(s.ch_rport, i))
        s = s.evolve(
            ch_state=store(s.ch_state, r, UNBOUND),
            ch_rvm=store(s.ch_rvm, r, me.vm),
            ch_rport=store(s.ch_rport, r, NONE),
        )
    return ok(s.evolve(
        ch_state=store(s.ch_state, i, CLOSED),
        ch_rvm=store(s.ch_rvm, i, NONE),
        ch_rport=store(s.ch_rport, i, NONE),
        ch_pending=store(s.ch_pending, i, False),
        ch_masked=store(s.ch_masked, i, False),
    ))


@postcondition("evtchn_close", "channels", "Xen EVTCHNOP_close")
def evtchn_close_post(s: State, me: Caller, s2: State, ret: Any, port: Any) -> Any:
    """EVTCHN_CLOSE leaves the caller's port closed."""
    return and_(ret == 0, select(s2.ch_state, s.vp(me.vm, port), UNBOUND) == CLOSED)


def evtchn_mask(s: State, me: Caller, row: Row, port: Any) -> Result:
    i, err = _own_port(s, row, me, port)
    if err:
        return err
    return ok(s.evolve(ch_masked=store(s.ch_masked, i, True)))


@postcondition("evtchn_mask", "channels", "Xen evtchn mask bit")
def evtchn_mask_post(s: State, me: Caller, s2: State, ret: Any, port: Any) -> Any:
    """EVTCHN_MASK leaves the caller's port masked."""
    return and_(ret == 0, select(s2.ch_masked, s.vp(me.vm, port), False))


def evtchn_unmask(s: State, me: Caller, row: Row, port: Any) -> Result:
    """Unmask; an event that arrived while masked is delivered now (Xen EVTCHNOP_unmask).
    A closed port (in range) has nothing to unmask: an error, or a no-op by the profile."""
    if s.cfg.profile.evtchn_unmask_closed and ult(port, s.cfg.n_ports) and \
            select(s.ch_state, s.vp(me.vm, port)) == CLOSED:
        return ok(s)
    i, err = _own_port(s, row, me, port)
    if err:
        return err
    s = s.evolve(ch_masked=store(s.ch_masked, i, False))
    if select(s.ch_pending, i):
        s = _raise(s, me.vm, 0, IRQ_EVTCHN)
    return ok(s)


@postcondition("evtchn_unmask", "channels", "Xen EVTCHNOP_unmask",
               _IRQ)
def evtchn_unmask_post(s: State, me: Caller, s2: State, ret: Any, port: Any) -> Any:
    """EVTCHN_UNMASK leaves the caller's port unmasked; an event pending on it is raised on
    the caller's vCPU 0."""
    i = s.vp(me.vm, port)
    return and_(ret == 0, not_(select(s2.ch_masked, i, True)),
                implies(select(s.ch_pending, i, False),
                        bit(select(s2.irq, s.vc(me.vm, 0), 0), IRQ_EVTCHN)))


def evtchn_status(s: State, me: Caller, row: Row, port: Any) -> Result:
    if not ult(port, s.cfg.n_ports):
        return fail(s, row, "INVALID_PARAMETERS")
    i = s.vp(me.vm, port)
    value = (
        select(s.ch_state, i)
        | (ite(select(s.ch_pending, i), 1, 0) << 8)
        | (ite(select(s.ch_masked, i), 1, 0) << 9)
        | (select(s.ch_rvm, i) << 16)
        | (select(s.ch_rport, i) << 32)
    )
    return ok(s, value)


def evtchn_clear(s: State, me: Caller, row: Row, port: Any) -> Result:
    i, err = _own_port(s, row, me, port)
    if err:
        return err
    return ok(s.evolve(ch_pending=store(s.ch_pending, i, False)))


@postcondition("evtchn_clear", "channels", "Xen evtchn pending bit")
def evtchn_clear_post(s: State, me: Caller, s2: State, ret: Any, port: Any) -> Any:
    """EVTCHN_CLEAR leaves the caller's port not pending."""
    return and_(ret == 0, not_(select(s2.ch_pending, s.vp(me.vm, port), True)))


# --- interrupts and devices ---------------------------------------------------------------------
def irq_ack(s: State, me: Caller, row: Row, line: Any) -> Result:
    if not ult(line, s.cfg.n_lines):
        return fail(s, row, "INVALID_PARAMETERS")
    i = s.vc(me.vm, me.vcpu)
    return ok(s.evolve(irq=store(s.irq, i, set_bit(select(s.irq, i), line, False))))


@postcondition("irq_ack", "devices", "pvspec virtual interrupts",
               _IRQ)
def irq_ack_post(s: State, me: Caller, s2: State, ret: Any, line: Any) -> Any:
    """IRQ_ACK leaves the line not pending on the calling vCPU."""
    return and_(ret == 0, not_(bit(select(s2.irq, s.vc(me.vm, me.vcpu), 0), line)))


def dev_assign(s: State, me: Caller, row: Row, dev: Any, vm: Any) -> Result:
    if not ult(dev, s.cfg.n_devices) or not _live_vm(s, vm):
        return fail(s, row, "INVALID_PARAMETERS")
    if select(s.dev_owner, dev) != NONE:
        return fail(s, row, "DENIED")
    return ok(s.evolve(dev_owner=store(s.dev_owner, dev, vm)))


@postcondition("dev_assign", "devices", "pvspec passthrough; Xen XEN_DOMCTL_assign_device",
               _DMA)
def dev_assign_post(s: State, me: Caller, s2: State, ret: Any, dev: Any, vm: Any) -> Any:
    """DEV_ASSIGN attaches the device to the named VM."""
    return and_(ret == 0, select(s2.dev_owner, dev, NONE) == vm)


def dev_deassign(s: State, me: Caller, row: Row, dev: Any) -> Result:
    """Detach a device; its interrupt line, still pending at the old owner, is withdrawn."""
    if not ult(dev, s.cfg.n_devices) or select(s.dev_owner, dev) == NONE:
        return fail(s, row, "INVALID_PARAMETERS")
    owner = select(s.dev_owner, dev)
    C = s.cfg.n_vcpus
    line = logic.add(dev, 1)
    irq = tabulate(lambda i, x: ite(logic.row(i, C) == owner, set_bit(x, line, False), x), s.irq)
    return ok(s.evolve(dev_owner=store(s.dev_owner, dev, NONE), irq=irq))


@postcondition("dev_deassign", "devices", "pvspec passthrough; Xen XEN_DOMCTL_deassign_device",
               _DMA)
def dev_deassign_post(s: State, me: Caller, s2: State, ret: Any, dev: Any) -> Any:
    """DEV_DEASSIGN leaves the device unattached and its line pending on no vCPU of the VM
    that had it."""
    owner, C, line = select(s.dev_owner, dev, NONE), s.cfg.n_vcpus, logic.add(dev, 1)
    return and_(ret == 0, select(s2.dev_owner, dev, 0) == NONE,
                every(lambda j, x: implies(logic.row(j, C) == owner, not_(bit(x, line))), s2.irq))


# --- environment events ---------------------------------------------------------------------------
def vcpu_start(s: State, vm: Any, vcpu: Any) -> State:
    """The scheduler starts an ON_PENDING vCPU (PSCI: it begins at its entry point)."""
    if not and_(_live_vm(s, vm), ult(vcpu, s.cfg.n_vcpus)):
        return s
    i = s.vc(vm, vcpu)
    if select(s.vcpu, i) != ON_PENDING:
        return s
    return s.evolve(vcpu=store(s.vcpu, i, ON))


def device_irq(s: State, dev: Any) -> State:
    """An assigned device raises its line on vCPU 0 of its VM; an unassigned one is ignored."""
    if not ult(dev, s.cfg.n_devices):
        return s
    owner = select(s.dev_owner, dev)
    if owner == NONE:
        return s
    return _raise(s, owner, 0, logic.add(dev, 1))


HANDLERS = {row.handler: globals()[row.handler] for row in TABLE}
EVENT_HANDLERS = {event.handler: globals()[event.handler] for event in EVENTS}
