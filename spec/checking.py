"""Concrete checking of one step: which invariants and step properties it breaks.

The same predicates the prover proves are evaluated here on concrete states, so the
Hypothesis state machines and the conformance oracle judge by exactly the proved rules.
"""

from __future__ import annotations

from typing import Any

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


def check_step(s: State, caller: Any, row: Row | None, s2: State, ret: Any) -> list[Violation]:
    """Every invariant on ``s2`` and every step property of ``s -> s2``."""
    out = check_state(s2)
    for prop in invariants.STEP_PROPERTIES:
        try:
            ok = bool(prop.holds(s, caller, row, s2, ret))
        except (IndexError, TypeError):
            ok = False
        if not ok:
            out.append(Violation(prop.name, "step", prop.clause, prop.why))
    return out
