"""Noninterference: what a VM can observe, and when another VM's call may change it.

``view(s, b)`` is everything VM ``b`` can observe of the machine: its lifecycle state and
quota, its vCPUs (power state, start entry and context) and pending interrupts, its whole
stage-2 table (which host frame, which rights), its ports, the transactions it owns or may
retrieve, and which devices it has.

Three properties, proved for every hypercall by :mod:`spec.prove`:

* **unchanged** — a call by VM ``a`` (not the control VM) that names no resource shared
  with ``b`` and whose arguments do not name ``b`` leaves ``view(s, b)`` unchanged (``b``
  is the *observer* of someone else's call);
* **confidential** (two-state self-composition) — run the same call by the *attacker*
  ``a`` (a live guest, see :func:`is_attacker`) on two independent sound states that
  ``a`` cannot tell apart (:func:`low_equivalent`) and that differ only in the other VMs'
  secrets (:func:`secret_slots`, :func:`with_private`): ``a`` gets the same result and
  ends with the same view.  Here the observer is ``a`` itself;
* the case split: **confidential** proper is the call that names no other VM, by a VM
  that shares nothing; **confidential, named** is every other call, which may then depend
  on another VM only through its lifecycle (if named) and the objects it shares with
  ``a``.

Every other VM's secrets vary *at once*, not one victim at a time: what two other VMs
hold jointly (a channel between them) cannot change on one side alone without breaking
an invariant, so a one-victim relation never varies it.

Everything here is written with :mod:`spec.logic`'s quantified forms (a mask is a
function of a slot, a view is compared part by part), so the proofs read the same text on
a state of every size: the second state is then an independent one of the same free
sizes, the masks become array lambdas, and each comparison a quantifier.

What stays public by construction is the machine's shared allocators (:data:`PUBLIC`):
the host frame pool and the transaction handle table.  Any guest can see them through
NO_MEMORY and through the handle MEM_SHARE returns, so they are a resource channel this
model accepts, not a secret it keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from spec import logic
from spec.hypercalls.abi import Row
from spec.logic import and_, bit, ite, not_, or_, select
from spec.state import ABSENT, CLOSED, CONTROL, NONE, SHAPES, TX_FREE, State

# What a VM observes of one vCPU, guest frame and port (the per-VM tables, by column).
VCPU_FIELDS = ("vcpu", "irq", "vcpu_entry", "vcpu_ctx")
ENTRY_FIELDS = ("s2_valid", "s2_frame", "s2_perm", "s2_held", "s2_tx")
PORT_FIELDS = ("ch_state", "ch_rvm", "ch_rport", "ch_pending", "ch_masked")
TX_FIELDS = ("tx_kind", "tx_owner", "tx_base", "tx_count", "tx_perm")


def _parts(s: State, b: Any) -> list[tuple[Any, Callable[[Any], tuple[Any, ...]]]]:
    """What ``b`` observes, as pairs (size n, what it sees of id i < n): the one text
    :func:`view` lists and :func:`same_view` compares, for every size."""
    cfg = s.cfg

    def tx(k: Any) -> tuple[Any, ...]:
        kind, borrowers = select(s.tx_kind, k), select(s.tx_borrowers, k)
        seen = and_(kind != TX_FREE, or_(select(s.tx_owner, k) == b, bit(borrowers, b)))
        return (*(ite(seen, select(getattr(s, f), k), 0) for f in TX_FIELDS),
                and_(seen, bit(borrowers, b)), and_(seen, bit(select(s.tx_retrieved, k), b)))

    return [
        (1, lambda _: (select(s.vm_state, b), select(s.quota, b))),
        (cfg.n_vcpus, lambda c: tuple(select(getattr(s, f), s.vc(b, c)) for f in VCPU_FIELDS)),
        (cfg.n_gframes,
         lambda g: tuple(select(getattr(s, f), s.vg(b, g)) for f in ENTRY_FIELDS)),
        (cfg.n_ports, lambda p: tuple(select(getattr(s, f), s.vp(b, p)) for f in PORT_FIELDS)),
        (cfg.n_tx, tx),
        (cfg.n_devices, lambda d: (select(s.dev_owner, d) == b,)),
    ]


def view(s: State, b: Any) -> tuple[Any, ...]:
    """Everything ``b`` observes, as one tuple (a model of concrete sizes)."""
    return tuple(x for n, seen in _parts(s, b) for i in range(n) for x in seen(i))


def same_view(s: State, t: State, b: Any) -> Any:
    """``b`` sees the same in ``s`` and ``t`` (of one shape): for every size, a
    quantifier per part."""
    return logic.all_(
        logic.forall(n, lambda i, mine=mine, theirs=theirs: logic.all_(  # type: ignore[misc]
            x == y for x, y in zip(mine(i), theirs(i), strict=True)))
        for (n, mine), (_, theirs) in zip(_parts(s, b), _parts(t, b), strict=True))


def _port_towards(s: State, vm: Any, p: Any, other: Any) -> Any:
    """Port ``p`` of ``vm`` is open and names ``other`` as its remote."""
    i = s.vp(vm, p)
    return and_(select(s.ch_state, i) != CLOSED, select(s.ch_rvm, i) == other)


def _in_tx(s: State, k: Any, vm: Any) -> Any:
    """``vm`` owns transaction ``k`` or may retrieve it."""
    return or_(select(s.tx_owner, k) == vm, bit(select(s.tx_borrowers, k), vm))


def shared(s: State, a: Any, b: Any) -> Any:
    """``a`` and ``b`` share a resource: a port naming the other, or a transaction."""
    cfg = s.cfg
    return or_(
        logic.exists(cfg.n_ports, lambda p: or_(_port_towards(s, a, p, b),
                                                 _port_towards(s, b, p, a))),
        logic.exists(cfg.n_tx, lambda k: and_(select(s.tx_kind, k) != TX_FREE,
                                              _in_tx(s, k, a), _in_tx(s, k, b))))


def names(row: Row, regs_args: tuple[Any, ...], b: Any) -> Any:
    """The call's arguments name VM ``b`` (as a VM id or in a VM mask)."""
    out = []
    for arg, raw in zip(row.args, regs_args, strict=False):
        value = logic.bits(raw, 0, arg.width)
        if arg.kind == "vm":
            out.append(value == b)
        elif arg.kind == "vm_mask":
            out.append(bit(value, b))
    return logic.any_(out)


# Global tables, equal in both runs of the confidentiality obligations, and why.
_ALLOCATORS = "a shared allocator every guest sees (NO_MEMORY, the handle MEM_SHARE returns)"
PUBLIC: dict[str, str] = {
    "owner": _ALLOCATORS, "frame_tx": _ALLOCATORS,
    # each VM's count of the frames the public owner table gives it
    "owned": _ALLOCATORS,
    **{f: _ALLOCATORS for f in (*TX_FIELDS, "tx_borrowers", "tx_retrieved")},
}
# The per-VM tables (state.SHAPES: a row per VM) that are not public: field -> the Config
# size that is one VM's row (None: one slot per VM).
PER_VM: dict[str, str | None] = {f: cols for f, (rows, cols) in SHAPES.items()
                                 if rows == "n_vms" and f not in PUBLIC}
# Tables whose slot belongs to the VM its value names: device d is VM dev_owner[d]'s.
KEYED = ("dev_owner",)

# A mask over a table's slots: a slot index (an int or word, or for a per-VM table of
# every size a logic.Index2) -> whether the slot is selected.
Mask = Callable[[Any], Any]


def _vm_of(s: State, field: str) -> Mask:
    """The VM whose row slot ``i`` of per-VM table ``field`` is in."""
    size = PER_VM[field]
    return (lambda i: i) if size is None else (
        lambda i: logic.row(i, getattr(s.cfg, size)))


def _rows(s: State, field: str, vm: Any, mine: bool) -> Mask:
    """The slots of per-VM table ``field`` in ``vm``'s row (``mine``) or in the others'."""
    owner = _vm_of(s, field)
    return (lambda i: owner(i) == vm) if mine else (lambda i: owner(i) != vm)


def _minus(mask: Mask, exempt: Mask) -> Mask:
    return lambda i: and_(mask(i), not_(exempt(i)))


def private_slots(s: State, b: Any) -> dict[str, Mask]:
    """Per field of :data:`PER_VM`, which slots are ``b``'s own: its lifecycle and quota,
    vCPUs (power state, start entry and context) and interrupts, whole stage-2 table and
    ports."""
    return {f: _rows(s, f, b, mine=True) for f in PER_VM}


def offered(s: State, a: Any) -> Mask:
    """Port slot ``i``: the port is bound or offered to VM ``a`` (open, its remote ``a``)."""
    return lambda i: and_(select(s.ch_state, i) != CLOSED, select(s.ch_rvm, i) == a)


def lent(s: State, a: Any) -> Mask:
    """Stage-2 slot ``i``: another VM shares, lends or donates this entry to ``a`` (a live
    transaction that VM owns with ``a`` among its borrowers, entries base..base+count)."""
    G = s.cfg.n_gframes
    return lambda i: logic.exists(s.cfg.n_tx, lambda k: and_(
        select(s.tx_kind, k) != TX_FREE, select(s.tx_owner, k) == logic.row(i, G),
        bit(select(s.tx_borrowers, k), a),
        logic.within(logic.col(i, G), select(s.tx_base, k), select(s.tx_count, k))))


def secret_slots(s: State, a: Any, named: Callable[[Any], Any] | Sequence[Any]
                 ) -> dict[str, Mask]:
    """Per field, the slots a call by ``a`` must not depend on: every other VM's private
    slots minus what the call may depend on -- the lifecycle of a VM it names
    (``named(v)``, or ``named[v]``), the ports bound or offered to ``a``, and the stage-2
    entries lent to ``a`` -- and the devices ``a`` does not have."""
    is_named = named if callable(named) else named.__getitem__
    exempt = {"n_ports": offered(s, a), "n_gframes": lent(s, a)}
    out = {f: _rows(s, f, a, mine=False) for f in PER_VM}
    out["vm_state"] = _minus(out["vm_state"], is_named)
    for f, size in PER_VM.items():
        if size in exempt:
            out[f] = _minus(out[f], exempt[size])
    out["dev_owner"] = lambda d: select(s.dev_owner, d) != a
    return out


def with_private(s: State, other: State, slots: dict[str, Mask]) -> State:
    """``s`` with the slots ``slots`` selects taken from ``other`` (of the same shape).

    With ``other`` an independent state, this is the second state of the confidentiality
    obligations: equal to ``s`` everywhere else by construction, free in the secrets."""
    return s.evolve(**{
        name: logic.tabulate(lambda i, mine, alt, mask=mask: ite(mask(i), alt, mine),
                             getattr(s, name), getattr(other, name))
        for name, mask in slots.items()
    })


def low_equivalent(s: State, s2: State, a: Any) -> Any:
    """``a`` cannot tell ``s`` from ``s2`` before the call: the same view, and the same
    ports bound or offered to it (those it could bind to).  With :func:`secret_slots`
    this only constrains what the construction leaves free: a device of ``a`` stays
    ``a``'s, and no secret port turns towards ``a``."""
    mine, theirs = offered(s, a), offered(s2, a)
    return and_(same_view(s, s2, a),
                logic.every(lambda i, *_: mine(i) == theirs(i), s.ch_state))


def is_attacker(s: State, a: Any) -> Any:
    """``a`` can make calls that the other VMs must be protected from: a live VM other
    than the control VM (which may legitimately read and change everything).

    Liveness matters: a VM id outside the machine has no view of its own, so the
    obligation must not quantify over it."""
    return and_(logic.ult(a, s.cfg.n_vms), select(s.vm_state, a, ABSENT) != ABSENT,
                a != CONTROL)


def shares_any(s: State, a: Any) -> Any:
    """``a`` shares a resource with some other VM (see :func:`shared`)."""
    return logic.exists(s.cfg.n_vms, lambda b: and_(b != a, shared(s, a, b)))


__all__ = ["KEYED", "NONE", "PER_VM", "PUBLIC", "Mask", "is_attacker", "lent", "low_equivalent",
           "names", "offered", "private_slots", "same_view", "secret_slots", "shared",
           "shares_any", "view", "with_private"]
