"""Z3 proofs about the ring kernels of :mod:`spec.virtio.ring_math`, run on bit-vectors.

Each obligation calls the *same* functions the ring models and the oracle run on ints,
here on 64-bit Z3 words, and asks Z3 for an input breaking the property (``unsat`` =
proved).  Every builder takes the kernel namespace ``k`` (default: the real module) so
tests can hand in a mutated kernel and watch the proof fail with a counterexample.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import z3

from spec.logic import WORD
from spec.proof import Obligation
from spec.virtio import ring_math as rm

GROUP = "virtio"
Kernels = Any  # a module or namespace with ring_math's functions


def _bv(name: str) -> z3.BitVecRef:
    return z3.BitVec(name, WORD)


def _u16(*xs: z3.BitVecRef) -> list[z3.BoolRef]:
    return [z3.ULT(x, 1 << 16) for x in xs]


def _explainer(**named: z3.ExprRef) -> Callable[[z3.ModelRef], dict[str, Any]]:
    def explain(model: z3.ModelRef) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, term in named.items():
            val = model.eval(term, model_completion=True)
            out[key] = z3.is_true(val) if z3.is_bool(val) else val.as_long()
        return out

    return explain


def _valid_size(n: z3.BitVecRef, k: Kernels) -> z3.BoolRef:
    return z3.And(n != 0, z3.ULE(n, rm.MAX_QUEUE_SIZE), (n & (n - 1)) == 0)


# --- 16-bit indices -----------------------------------------------------------------------


def goal_idx_wrap(k: Kernels = rm):
    """Free-running indices: distance after a step is the step, and the ring slot moves
    by one across the 65535 -> 0 wrap for every power-of-two size (2.7.13.3)."""
    a, step, n = _bv("a"), _bv("step"), _bv("n")
    nxt = k.idx_add(a, step)
    slot_ok = k.ring_slot(k.idx_add(a, 1), n) == (k.add(k.ring_slot(a, n), 1) & (n - 1))
    prop = z3.And(k.idx_sub(nxt, a) == step, z3.ULT(nxt, 1 << 16), slot_ok,
                  z3.ULT(k.ring_slot(a, n), n))
    return [*_u16(a, step), _valid_size(n, k), z3.Not(prop)], _explainer(a=a, step=step, n=n)


# --- event index (2.7.7.2, 2.7.10) --------------------------------------------------------


def goal_need_event_window(k: Kernels = rm):
    """vring_need_event notifies exactly when event_idx is one of the positions written in
    this batch, ``old .. new-1`` mod 2^16 (equivalently event_idx + 1 in (old, new]):
    no notification is lost and none is invented, across the 16-bit wrap."""
    ev, new, old = _bv("event_idx"), _bv("new_idx"), _bv("old_idx")
    in_window = z3.ULT((ev - old) & 0xFFFF, (new - old) & 0xFFFF)
    got = k.vring_need_event(ev, new, old)
    return ([*_u16(ev, new, old), got != in_window],
            _explainer(event_idx=ev, new_idx=new, old_idx=old, notified=got, owed=in_window))


def goal_need_event_split_batch(k: Kernels = rm):
    """Deciding after each of two sub-batches owes the same notification as deciding once:
    batching never loses one (2.7.7.2)."""
    ev, new, mid, old = _bv("event_idx"), _bv("new_idx"), _bv("mid_idx"), _bv("old_idx")
    inside = z3.ULE((mid - old) & 0xFFFF, (new - old) & 0xFFFF)
    once = k.vring_need_event(ev, new, old)
    twice = z3.Or(k.vring_need_event(ev, mid, old), k.vring_need_event(ev, new, mid))
    return ([*_u16(ev, new, mid, old), inside, once != twice],
            _explainer(event_idx=ev, old=old, mid=mid, new=new, once=once))


# --- split layout (2.7, 2.7.1) ------------------------------------------------------------


def goal_split_addresses(k: Kernels = rm):
    """For every valid layout and slot i < N, each computed field lies wholly inside its
    part (descriptor, avail ring[i], used_event, used ring[i], avail_event, idx fields)."""
    n, i, desc, avail, used = _bv("n"), _bv("i"), _bv("desc"), _bv("avail"), _bv("used")
    ds, avs, us = k.desc_table_size(n), k.avail_ring_size(n), k.used_ring_size(n)

    def inside(addr, width, base, size):
        return z3.And(z3.ULE(base, addr), z3.ULE(addr + width, base + size))

    prop = z3.And(
        inside(k.desc_addr(desc, i), rm.DESC_SIZE, desc, ds),
        inside(k.avail_idx_addr(avail), 2, avail, avs),
        inside(k.avail_ring_addr(avail, i), 2, avail, avs),
        inside(k.used_event_addr(avail, n), 2, avail, avs),
        inside(k.used_idx_addr(used), 2, used, us),
        inside(k.used_elem_addr(used, i), rm.USED_ELEM_SIZE, used, us),
        inside(k.avail_event_addr(used, n), 2, used, us),
        k.aligned(k.used_elem_addr(used, i), 4),
        k.aligned(k.desc_addr(desc, i), 16),
    )
    ok = k.split_layout_ok(desc, avail, used, n)
    return ([ok, z3.ULT(i, n), z3.Not(prop)],
            _explainer(n=n, i=i, desc=desc, avail=avail, used=used))


def goal_contiguous_layout(k: Kernels = rm):
    """The one-block placement is a valid layout (aligned, disjoint parts, no wrap) for
    every power-of-two size <= 32768 and every 16-byte aligned base below 2^63."""
    n, base = _bv("n"), _bv("base")
    desc, avail, used = k.contiguous_layout(base, n)
    ok = k.split_layout_ok(desc, avail, used, n)
    return ([_valid_size(n, k), k.aligned(base, 16), z3.ULT(base, 1 << 63), z3.Not(ok)],
            _explainer(n=n, base=base, avail=avail, used=used))


# --- packed ring (2.8.1, 2.8.10) ----------------------------------------------------------


def goal_packed_flags(k: Kernels = rm):
    """available iff AVAIL == wrap and USED != wrap; what the driver marks available is
    available; what the device just marked used is used and never available in the same
    phase; marking touches no other flag bit."""
    f, w = _bv("flags"), z3.Bool("wrap")
    b7, b15 = z3.Extract(7, 7, f) == 1, z3.Extract(15, 15, f) == 1
    avail_def = k.is_available(f, w) == z3.And(b7 == w, b15 != w)
    ma, mu = k.mark_available(f, w), k.mark_used(f, w)
    others = ~z3.BitVecVal((1 << 7) | (1 << 15), WORD)
    prop = z3.And(
        avail_def,
        k.is_available(ma, w), z3.Not(k.is_used(ma, w)),
        k.is_used(mu, w), z3.Not(k.is_available(mu, w)),
        (ma & others) == (f & others), (mu & others) == (f & others),
    )
    return [z3.ULT(f, 1 << 16), z3.Not(prop)], _explainer(flags=f, wrap=w)


def goal_packed_advance(k: Kernels = rm):
    """Advancing by 1 <= step <= N from a slot < N lands on a slot < N and flips the wrap
    counter exactly when it passes the end of the ring (2.8.1)."""
    n, idx, step, w = _bv("n"), _bv("idx"), _bv("step"), z3.Bool("wrap")
    nidx, nw = k.packed_advance(idx, w, n, step)
    passes = z3.UGE(idx + step, n)
    prop = z3.And(z3.ULT(nidx, n), (nw != w) == passes)
    return ([n != 0, z3.ULE(n, rm.MAX_QUEUE_SIZE), z3.ULT(idx, n), step != 0, z3.ULE(step, n),
             z3.Not(prop)], _explainer(n=n, idx=idx, step=step, wrap=w))


def goal_packed_need_event(k: Kernels = rm):
    """With RING_EVENT_FLAGS_DESC, a notification is owed exactly when the event slot
    (offset, wrap) is one of the last ``added`` slots handed over (2.8.10): positions are
    linearised as slot + N * wrap on a circle of 2N.

    Z3 is slow on the four wrap-counter combinations at once (~15 s) and fast on each
    (~1 s in all), so the goal splits them here and hands the first refutable case, or
    the (already refuted) conjunction of cases, to the prover.
    """
    n, new, off, added = _bv("n"), _bv("new_idx"), _bv("event_off"), _bv("added")
    cases = []
    for nw in (True, False):
        for ew in (True, False):
            got = k.packed_need_event(k.encode_event(off, ew), new, nw, added, n)
            lin_new = new + (n if nw else 0)
            lin_ev = off + (n if ew else 0)
            dist = z3.If(z3.UGE(lin_new, lin_ev), lin_new - lin_ev, lin_new + 2 * n - lin_ev)
            owed = z3.And(z3.UGE(dist, 1), z3.ULE(dist, added))
            goal = [n != 0, z3.ULE(n, rm.MAX_QUEUE_SIZE), z3.ULT(new, n), z3.ULT(off, n),
                    added != 0, z3.ULE(added, n), got != owed]
            explain = _explainer(n=n, new_idx=new, event_off=off, added=added,
                                 notified=got, owed=owed, new_wrap=z3.BoolVal(nw),
                                 event_wrap=z3.BoolVal(ew))
            cases.append((goal, explain))
    for goal, explain in cases:
        solver = z3.Solver()
        solver.set("timeout", 30_000)
        solver.add(*goal)
        if solver.check() != z3.unsat:
            return goal, explain
    return [z3.BoolVal(False)], cases[0][1]


GOALS: dict[str, tuple[str, Callable[..., Any]]] = {
    "idx16-wrap": ("2.7.13.3", goal_idx_wrap),
    "need-event-window": ("2.7.7.2", goal_need_event_window),
    "need-event-batching": ("2.7.7.2", goal_need_event_split_batch),
    "split-addresses-inside-parts": ("2.7", goal_split_addresses),
    "contiguous-layout-valid": ("2.7.1", goal_contiguous_layout),
    "packed-wrap-flags": ("2.8.1", goal_packed_flags),
    "packed-advance": ("2.8.1", goal_packed_advance),
    "packed-need-event": ("2.8.10", goal_packed_need_event),
}


def obligation(name: str, kernels: Kernels = rm) -> Obligation:
    section, build = GOALS[name]
    goal = functools.partial(build) if kernels is rm else functools.partial(build, kernels)
    return Obligation(GROUP, name, "virtqueue", section, goal)


def obligations() -> list[Obligation]:
    """The ring obligations on the real kernels."""
    return [obligation(name) for name in GOALS]


def mutated(**overrides: Any) -> types.SimpleNamespace:
    """ring_math with some functions replaced: the planted-bug kernels of the tests."""
    ns = types.SimpleNamespace(**{k: getattr(rm, k) for k in dir(rm) if not k.startswith("__")})
    for key, fn in overrides.items():
        setattr(ns, key, fn)
    return ns
