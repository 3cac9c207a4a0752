"""Concrete checking of one step: which invariants and step properties it breaks.

The same predicates the prover proves are evaluated here on concrete states, so the
Hypothesis state machines and the conformance oracle judge by exactly the proved rules.
"""

from __future__ import annotations

from typing import Any, cast

import attrs

from spec import invariants
from spec.hypercalls.abi import Row
from spec.state import State


@attrs.frozen
class Violation:
    name: str
    kind: str  # "invariant" | "step"
    clause: str
    why: str


# The per-access index obligation (spec.logic "one meaning for every index"), proved by
# spec.prove for every transition; concretely, a step that used a slot that does not exist.
INDICES = "indices_in_range"
INDICES_CLAUSE = "pvspec: every table index a transition uses names a slot (spec.logic)"


def index_violations(log: list[Any], what: str = "") -> list[Violation]:
    """The step's out-of-range table accesses (a concrete :func:`spec.logic.index_log`)
    as a violation of the index obligation; none, none."""
    if not log:
        return []
    places = ", ".join(sorted({a.where for a in log}))
    return [Violation(INDICES, "index", INDICES_CLAUSE,
                      f"table access out of range at {places} {what}".strip())]


def check_state(s: State) -> list[Violation]:
    out = []
    for inv in invariants.INVARIANTS:
        try:
            ok = bool(inv.holds(s))
        except (IndexError, TypeError):  # a state so broken the predicate cannot index it
            ok = False
        if not ok:
            out.append(Violation(inv.name, "invariant", inv.clause, inv.why))
    return out


def check_step(s: State, caller: Any, row: Row | None, s2: State, ret: Any,
               args: tuple[Any, ...] = ()) -> list[Violation]:
    """Every invariant on ``s2`` and every step property of ``s -> s2`` (``args``: the
    decoded call's arguments, which the functional postconditions read)."""
    return check_state(s2) + _judge(invariants.STEP_PROPERTIES, s, caller, row, s2, ret, args)


def check_posts(s: State, caller: Any, row: Row | None, s2: State, ret: Any,
                args: tuple[Any, ...] = ()) -> list[Violation]:
    """Only the step properties restricted to ``row`` (its functional postcondition): what
    a step that changed no state still owes -- its result (AFFINITY_INFO, a standby)."""
    if row is None:
        return []
    props = [p for p in invariants.STEP_PROPERTIES if p.rows is not None and row.name in p.rows]
    return _judge(props, s, caller, row, s2, ret, args)


def _judge(props: Any, s: State, caller: Any, row: Row | None, s2: State, ret: Any,
           args: tuple[Any, ...]) -> list[Violation]:
    out = []
    for prop in props:
        try:
            ok = bool(prop.holds(s, caller, row, s2, ret, args))
        except (IndexError, TypeError):
            ok = False
        if not ok:
            out.append(Violation(prop.name, "step", prop.clause, prop.why))
    return out


class _Reading:
    """A state that records which of its fields a predicate reads."""

    def __init__(self, s: State, seen: set[str]) -> None:
        self._s, self._seen = s, seen

    def __getattr__(self, name: str) -> Any:
        if name in _FIELDS:
            self._seen.add(name)
        return getattr(self._s, name)


_FIELDS = frozenset(a.name for a in attrs.fields(State)) - {"cfg"}
STATE_FIELDS = _FIELDS  # every field a predicate can read
_ERROR = (1 << 64) - 2  # a failure's result word (INVALID_PARAMETERS)


def fields_read(s: State, rows: tuple[Row | None, ...]) -> dict[str, frozenset[str]]:
    """Per invariant (``invariant:NAME``) and step property (``step:NAME``): the state
    fields it reads when evaluated on ``s`` (a step property: on ``s -> s`` after each of
    ``rows``).  A change to other fields cannot break it, so a conformance run that saw
    only such changes has not judged it.  The predicates are total loops over the
    configured sizes, so one evaluation reads every field they depend on for that
    configuration."""
    from spec.transitions import Caller

    out: dict[str, frozenset[str]] = {}
    for inv in invariants.INVARIANTS:
        seen: set[str] = set()
        inv.holds(cast(State, _Reading(s, seen)))
        out[f"invariant:{inv.name}"] = frozenset(seen)
    for prop in invariants.STEP_PROPERTIES:
        seen = set()
        for row in rows:
            for ret in (0, _ERROR):  # what it reads may depend on success or failure
                before, after = cast(State, _Reading(s, seen)), cast(State, _Reading(s, seen))
                prop.holds(before, Caller(0, 0), row, after, ret, _zero_args(row))
        out[f"step:{prop.name}"] = frozenset(seen)
    return out


def _zero_args(row: Row | None) -> tuple[int, ...]:
    """Arguments for a probe evaluation of a step property: zero for each of the row's."""
    return (0,) * len(row.args) if row is not None else ()


def fields_changed(s: State, s2: State, among: frozenset[str] = _FIELDS) -> frozenset[str]:
    """The state fields (of ``among``) whose value differs between ``s`` and ``s2``."""
    a, b = s.__dict__, s2.__dict__
    return frozenset(f for f in among if a[f] is not b[f] and a[f] != b[f])


# results a well-formedness property may refuse: bit 31 set on success, an odd error code
_ODD_RESULTS = (1 << 31, (1 << 64) - 0x7F, 1 << 40)


def results_constrained(s: State, rows: tuple[Row, ...]) -> dict[str, frozenset[str]]:
    """Per step property (``step:NAME``): the calls whose *result* it can refuse with the
    state unchanged -- what it judges when it reads no state field.  A property that
    refuses nothing for any of ``rows`` is vacuous for a target speaking only them."""
    from spec.transitions import Caller

    out: dict[str, frozenset[str]] = {}
    for prop in invariants.STEP_PROPERTIES:
        hit = set()
        for row in rows:
            for ret in _ODD_RESULTS:
                try:
                    ok = bool(prop.holds(s, Caller(0, 0), row, s, ret, _zero_args(row)))
                except (IndexError, TypeError):
                    ok = False
                if not ok:
                    hit.add(row.name)
        out[f"step:{prop.name}"] = frozenset(hit)
    return out


# --- noninterference on concrete steps -----------------------------------------------------
# The three obligations of spec.prove (see spec.noninterference), read on one concrete step
# so the state machines check them too: "unchanged" for every other VM of the machine, the
# two confidentiality ones against a twin pre-state.
NI_CLAUSES = {"noninterference_unchanged": "two VMs sharing nothing",
              "noninterference_confidential": "a call naming no other VM, by a VM sharing "
                                              "nothing",
              "noninterference_confidential_named": "a call naming other VMs or by a VM "
                                                    "that shares"}


def noninterference_step(s: State, vm: int, vcpu: int, regs: dict[str, int], conv: str,
                         s2: State, out: dict[str, int], other: State | None,
                         decoded: Any = None) -> list[Violation]:
    """The noninterference obligations on the step ``s -> s2`` of the call in ``regs`` by
    ``vm`` (its result registers ``out``):

    * every VM the call does not name and that shares nothing with the caller (not the
      control VM) sees the same view after it;
    * with ``other`` (another sound state of the same machine, e.g. an earlier one of the
      run): the twin pre-state -- ``s`` with every secret slot of the other VMs taken from
      ``other`` -- if it is sound and the caller cannot tell it from ``s``, gives the
      caller the same result and the same view.  A twin that is not sound proves
      nothing and is skipped, as the proof's hypotheses would exclude it.

    ``decoded``: ``codec.decode(regs, conv)`` when the caller has it already."""
    from spec import machine
    from spec import noninterference as ni
    from spec.hypercalls import codec
    from spec.state import CONTROL

    if decoded is None:
        decoded = codec.decode(regs, conv)
    if not isinstance(decoded, codec.Call):
        return []
    row, args, cfg = decoded.row, decoded.args, s.cfg
    named = [bool(ni.names(row, args, v)) for v in range(cfg.n_vms)]
    if vm != CONTROL:
        for b in range(cfg.n_vms):
            if b != vm and not named[b] and not ni.shared(s, vm, b) \
                    and ni.view(s, b) != ni.view(s2, b):
                return [Violation("noninterference_unchanged", "noninterference",
                                  NI_CLAUSES["noninterference_unchanged"],
                                  f"VM {b}'s view changed by VM {vm}'s {row.name}")]
    if other is None or not ni.is_attacker(s, vm):
        return []
    twin = ni.with_private(s, other, ni.secret_slots(s, vm, named))
    if twin == s or not ni.low_equivalent(s, twin, vm) or check_state(twin):
        return []
    twin2, twin_out = machine.step(twin, vm, vcpu, regs, conv)
    if twin_out == out and ni.view(twin2, vm) == ni.view(s2, vm):
        return []
    related = any(n for v, n in enumerate(named) if v != vm) or ni.shares_any(s, vm)
    name = "noninterference_confidential_named" if related else "noninterference_confidential"
    return [Violation(name, "noninterference", NI_CLAUSES[name],
                      f"VM {vm}'s {row.name} answers {out} or leaves its view differently "
                      f"on a twin state that differs only in other VMs' secrets")]
