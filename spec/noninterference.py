"""Noninterference: what a VM can observe, and when another VM's call may change it.

``view(s, b)`` is everything VM ``b`` can observe of the machine: its lifecycle state and
quota, its vCPUs and pending interrupts, its whole stage-2 table (which host frame, which
rights), its ports, the transactions it owns or may retrieve, and which devices it has.

Two properties, proved for every hypercall by :mod:`spec.prove`:

* **unchanged** — a call by VM ``a`` (not the control VM) that names no resource shared
  with ``b`` and whose arguments do not name ``b`` leaves ``view(s, b)`` unchanged;
* **confidential** (two-state self-composition) — run the same call by ``a`` on two states
  that differ arbitrarily in ``b``'s private part (see :func:`private_slots`): ``a`` gets
  the same result and ends with the same view.  ``b``'s secrets do not flow to ``a``.
"""

from __future__ import annotations

from typing import Any

from spec import logic
from spec.hypercalls.abi import Row
from spec.logic import and_, bit, ite, or_, select
from spec.state import CLOSED, CONTROL, NONE, TX_FREE, State


def view(s: State, b: Any) -> tuple[Any, ...]:
    cfg = s.cfg
    out: list[Any] = [select(s.vm_state, b), select(s.quota, b)]
    for c in range(cfg.n_vcpus):
        i = s.vc(b, c)
        out += [select(s.vcpu, i), select(s.irq, i)]
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


def is_attacker(a: Any) -> Any:
    return a != CONTROL


__all__ = ["NONE", "is_attacker", "names", "private_slots", "shared", "view"]
