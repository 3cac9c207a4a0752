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

What stays public by construction is the machine's shared allocators (:data:`PUBLIC`):
the host frame pool and the transaction handle table.  Any guest can see them through
NO_MEMORY and through the handle MEM_SHARE returns, so they are a resource channel this
model accepts, not a secret it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spec import logic
from spec.hypercalls.abi import Row
from spec.logic import and_, bit, ite, not_, or_, select, ule, ult
from spec.state import ABSENT, CLOSED, CONTROL, NONE, TX_FREE, State


def view(s: State, b: Any) -> tuple[Any, ...]:
    cfg = s.cfg
    out: list[Any] = [select(s.vm_state, b), select(s.quota, b)]
    for c in range(cfg.n_vcpus):
        i = s.vc(b, c)
        out += [select(s.vcpu, i), select(s.irq, i), select(s.vcpu_entry, i),
                select(s.vcpu_ctx, i)]
    for g in range(cfg.n_gframes):
        i = s.vg(b, g)
        out += [select(s.s2_valid, i), select(s.s2_frame, i), select(s.s2_perm, i),
                select(s.s2_held, i), select(s.s2_tx, i)]
    for p in range(cfg.n_ports):
        i = s.vp(b, p)
        out += [select(s.ch_state, i), select(s.ch_rvm, i), select(s.ch_rport, i),
                select(s.ch_pending, i), select(s.ch_masked, i)]
    for k in range(cfg.n_tx):
        seen = and_(s.tx_kind[k] != TX_FREE,
                    or_(s.tx_owner[k] == b, bit(s.tx_borrowers[k], b)))
        out += [ite(seen, x, 0) for x in (s.tx_kind[k], s.tx_owner[k], s.tx_base[k],
                                           s.tx_count[k], s.tx_perm[k])]
        out += [and_(seen, bit(s.tx_borrowers[k], b)), and_(seen, bit(s.tx_retrieved[k], b))]
    out += [d == b for d in s.dev_owner]
    return tuple(out)


def shared(s: State, a: Any, b: Any) -> Any:
    """``a`` and ``b`` share a resource: a port naming the other, or a transaction."""
    cfg = s.cfg
    ports = [
        and_(s.ch_state[i] != CLOSED, or_(
            and_(i // cfg.n_ports == a, s.ch_rvm[i] == b),
            and_(i // cfg.n_ports == b, s.ch_rvm[i] == a)))
        for i in range(cfg.n_vms * cfg.n_ports)
    ]
    txs = []
    for k in range(cfg.n_tx):
        o, who = s.tx_owner[k], s.tx_borrowers[k]
        in_a = or_(o == a, bit(who, a))
        in_b = or_(o == b, bit(who, b))
        txs.append(and_(s.tx_kind[k] != TX_FREE, in_a, in_b))
    return logic.any_([*ports, *txs])


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


# The per-VM tables: field -> the Config size that is one VM's row (None: one slot per VM).
# Slot i of such a field belongs to VM i // width.
PER_VM: dict[str, str | None] = {
    "vm_state": None, "quota": None,
    **{f: "n_vcpus" for f in ("vcpu", "irq", "vcpu_entry", "vcpu_ctx")},
    **{f: "n_gframes" for f in ("s2_valid", "s2_frame", "s2_perm", "s2_held", "s2_tx")},
    **{f: "n_ports" for f in ("ch_state", "ch_rvm", "ch_rport", "ch_pending", "ch_masked")},
}
# Global tables, equal in both runs of the confidentiality obligations, and why.
_ALLOCATORS = "a shared allocator every guest sees (NO_MEMORY, the handle MEM_SHARE returns)"
PUBLIC: dict[str, str] = {
    "owner": _ALLOCATORS, "frame_tx": _ALLOCATORS,
    # each VM's count of the frames the public owner table gives it
    "owned": _ALLOCATORS,
    **{f: _ALLOCATORS for f in ("tx_kind", "tx_owner", "tx_base", "tx_count", "tx_perm",
                                "tx_borrowers", "tx_retrieved")},
}
# Tables whose slot belongs to the VM its value names: device d is VM dev_owner[d]'s.
KEYED = ("dev_owner",)


def _width(s: State, field: str) -> int:
    size = PER_VM[field]
    return 1 if size is None else int(getattr(s.cfg, size))


def private_slots(s: State, b: Any) -> dict[str, list[Any]]:
    """Per field of :data:`PER_VM`, which slots are ``b``'s own: its lifecycle and quota,
    vCPUs (power state, start entry and context) and interrupts, whole stage-2 table and
    ports."""
    return {f: [i // _width(s, f) == b for i in range(len(getattr(s, f)))] for f in PER_VM}


def offered(s: State, a: Any) -> list[Any]:
    """Per port slot: the port is bound or offered to VM ``a`` (open, its remote is ``a``)."""
    return [and_(st != CLOSED, r == a) for st, r in zip(s.ch_state, s.ch_rvm, strict=True)]


def lent(s: State, a: Any) -> list[Any]:
    """Per stage-2 slot: another VM shares, lends or donates this entry to ``a`` (a live
    transaction that VM owns with ``a`` among its borrowers, entries base..base+count)."""
    G = s.cfg.n_gframes
    return [logic.any_(and_(
        s.tx_kind[k] != TX_FREE, s.tx_owner[k] == i // G, bit(s.tx_borrowers[k], a),
        ule(s.tx_base[k], i % G), ult(i % G, logic.add(s.tx_base[k], s.tx_count[k])))
        for k in range(s.cfg.n_tx)) for i in range(len(s.s2_valid))]


def secret_slots(s: State, a: Any, named: Sequence[Any]) -> dict[str, list[Any]]:
    """Per field, the slots a call by ``a`` must not depend on: every other VM's private
    slots minus what the call may depend on -- the lifecycle of a VM it names
    (``named[v]``), the ports bound or offered to ``a``, and the stage-2 entries lent to
    ``a`` -- and the devices ``a`` does not have."""
    theirs = {f: [i // _width(s, f) != a for i in range(len(getattr(s, f)))] for f in PER_VM}
    out = dict(theirs)
    out["vm_state"] = [and_(m, not_(n)) for m, n in zip(theirs["vm_state"], named, strict=True)]
    ports = [and_(m, not_(o)) for m, o in zip(theirs["ch_state"], offered(s, a), strict=True)]
    out.update({f: ports for f in PER_VM if PER_VM[f] == "n_ports"})
    entries = [and_(m, not_(x)) for m, x in zip(theirs["s2_valid"], lent(s, a), strict=True)]
    out.update({f: entries for f in PER_VM if PER_VM[f] == "n_gframes"})
    out["dev_owner"] = [d != a for d in s.dev_owner]
    return out


def with_private(s: State, other: State, slots: dict[str, list[Any]]) -> State:
    """``s`` with the slots ``slots`` selects taken from ``other``.

    With ``other`` an independent state, this is the second state of the confidentiality
    obligations: equal to ``s`` everywhere else by construction, free in the secrets."""
    return s.evolve(**{
        name: tuple(ite(mask, alt, mine) for mask, alt, mine in
                    zip(masks, getattr(other, name), getattr(s, name), strict=True))
        for name, masks in slots.items()
    })


def low_equivalent(s: State, s2: State, a: Any) -> Any:
    """``a`` cannot tell ``s`` from ``s2`` before the call: the same view, and the same
    ports bound or offered to it (those it could bind to).  With :func:`secret_slots`
    this only constrains what the construction leaves free: a device of ``a`` stays
    ``a``'s, and no secret port turns towards ``a``."""
    return and_(logic.all_(x == y for x, y in zip(view(s, a), view(s2, a), strict=True)),
                logic.all_(x == y for x, y in zip(offered(s, a), offered(s2, a),
                                                  strict=True)))


def is_attacker(s: State, a: Any) -> Any:
    """``a`` can make calls that the other VMs must be protected from: a live VM other
    than the control VM (which may legitimately read and change everything).

    Liveness matters: a VM id outside the machine has no view of its own (``view``
    would read the last VM's slots), so the obligation must not quantify over it."""
    return and_(logic.ult(a, s.cfg.n_vms), select(s.vm_state, a, ABSENT) != ABSENT,
                a != CONTROL)


def shares_any(s: State, a: Any) -> Any:
    """``a`` shares a resource with some other VM (see :func:`shared`)."""
    return logic.any_(and_(b != a, shared(s, a, b)) for b in range(s.cfg.n_vms))


__all__ = ["KEYED", "NONE", "PER_VM", "PUBLIC", "is_attacker", "lent", "low_equivalent",
           "names", "offered", "private_slots", "secret_slots", "shared", "shares_any", "view",
           "with_private"]
