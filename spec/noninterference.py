"""Noninterference: what a VM can observe, and when another VM's call may change it.

``view(s, b)`` is everything VM ``b`` can observe of the machine: its lifecycle state and
quota, its vCPUs and pending interrupts, its whole stage-2 table (which host frame, which
rights), its ports, the transactions it owns or may retrieve, and which devices it has.

Three properties, proved for every hypercall by :mod:`spec.prove`:

* **unchanged** — a call by VM ``a`` (not the control VM) that names no resource shared
  with ``b`` and whose arguments do not name ``b`` leaves ``view(s, b)`` unchanged;
* **confidential** (two-state self-composition) — run the same call by ``a`` (a live VM,
  see :func:`is_attacker`) on two independent states that agree everywhere except in
  ``b``'s private part (see :func:`private_slots` and :func:`with_private`), both sound:
  ``a`` gets the same result and ends with the same view.  ``b``'s secrets do not flow
  to ``a``;
* **confidential, named** — the same where the call names ``b`` or ``a`` and ``b`` share
  something: the call may then depend on ``b`` only through ``b``'s lifecycle (if named)
  and the objects ``b`` shares with ``a`` (see :func:`secret_slots`).
"""

from __future__ import annotations

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


def private_slots(s: State, b: Any) -> dict[str, list[Any]]:
    """Per field, which slots are ``b``'s private state: its lifecycle and quota, vCPUs and
    interrupts, whole stage-2 table and ports.  The frame pool and the transaction slots
    are shared by construction and stay equal; both states must satisfy every invariant."""
    cfg = s.cfg

    def rows(n: int, width: int) -> list[Any]:
        return [i // width == b for i in range(n)]

    vms = rows(cfg.n_vms, 1)
    cpus = rows(cfg.n_vms * cfg.n_vcpus, cfg.n_vcpus)
    s2 = rows(cfg.n_vms * cfg.n_gframes, cfg.n_gframes)
    ports = rows(cfg.n_vms * cfg.n_ports, cfg.n_ports)
    out = {"vm_state": vms, "quota": vms, "vcpu": cpus, "irq": cpus}
    out.update({f: s2 for f in ("s2_valid", "s2_frame", "s2_perm", "s2_held", "s2_tx")})
    out.update({f: ports for f in ("ch_state", "ch_rvm", "ch_rport", "ch_pending",
                                   "ch_masked")})
    return out


def offered(s: State, a: Any) -> list[Any]:
    """Per port slot: the port is bound or offered to VM ``a`` (open, its remote is ``a``)."""
    return [and_(st != CLOSED, r == a) for st, r in zip(s.ch_state, s.ch_rvm, strict=True)]


def secret_slots(s: State, a: Any, b: Any, named: Any) -> dict[str, list[Any]]:
    """``b``'s private slots minus what a call by ``a`` may depend on: ``b``'s lifecycle
    when the call names ``b`` (``named``), ``b``'s ports bound or offered to ``a``, and the
    stage-2 entries through which ``b`` shares, lends or donates memory to ``a`` (a live
    transaction ``b`` owns with ``a`` among its borrowers, entries base..base+count)."""
    cfg = s.cfg
    out = dict(private_slots(s, b))
    out["vm_state"] = [and_(m, not_(named)) for m in out["vm_state"]]
    G = cfg.n_gframes
    ports = [and_(m, not_(o)) for m, o in zip(out["ch_state"], offered(s, a), strict=True)]
    out.update({f: ports for f in ("ch_state", "ch_rvm", "ch_rport", "ch_pending",
                                   "ch_masked")})
    lent = [logic.any_(and_(
        s.tx_kind[k] != TX_FREE, s.tx_owner[k] == b, bit(s.tx_borrowers[k], a),
        ule(s.tx_base[k], g), ult(g, logic.add(s.tx_base[k], s.tx_count[k])))
        for k in range(cfg.n_tx)) for g in range(G)]
    entries = [and_(m, not_(lent[i % G])) for i, m in enumerate(out["s2_valid"])]
    out.update({f: entries for f in ("s2_valid", "s2_frame", "s2_perm", "s2_held", "s2_tx")})
    return out


def with_private(s: State, other: State, b: Any,
                 slots: dict[str, list[Any]] | None = None) -> State:
    """``s`` with ``b``'s private slots (:func:`private_slots`, or ``slots``) taken from
    ``other``.

    With ``other`` an independent state, this is the second state of the confidentiality
    obligations: equal to ``s`` everywhere else by construction, free in ``b``'s secrets."""
    private = private_slots(s, b) if slots is None else slots
    return s.evolve(**{
        name: tuple(ite(mask, alt, mine) for mask, alt, mine in
                    zip(masks, getattr(other, name), getattr(s, name), strict=True))
        for name, masks in private.items()
    })


def is_attacker(s: State, a: Any, b: Any) -> Any:
    """``a`` can make calls that ``b`` must be protected from: a live VM, neither the
    control VM (which may legitimately read and change everything) nor ``b`` itself.

    Liveness matters: a VM id outside the machine has no view of its own (``view``
    would read the last VM's slots), so the obligation must not quantify over it."""
    return and_(logic.ult(a, s.cfg.n_vms), select(s.vm_state, a, ABSENT) != ABSENT,
                a != CONTROL, a != b)


__all__ = ["NONE", "is_attacker", "names", "offered", "private_slots", "secret_slots", "shared",
           "view", "with_private"]
