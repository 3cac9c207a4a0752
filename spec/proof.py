"""Proof obligations: the common shape every Z3 proof in the spec takes.

An obligation builds a *refutation goal*: a formula that is unsatisfiable exactly when
the property holds.  ``unsat`` means proved; ``sat`` gives a model, which the obligation
turns into a readable counterexample.  Obligations are cheap, picklable descriptions
(the formula is built inside :meth:`Obligation.run`), so the prover can spread them over
processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import z3

__all__ = ["Obligation", "ProofResult", "check_goal"]


@attrs.frozen
class ProofResult:
    group: str
    invariant: str
    hypercall: str
    clause: str
    status: str  # "proved" | "failed" | "unknown" | "error"
    seconds: float
    paths: int = 0
    counterexample: dict[str, Any] | None = None
    detail: str = ""
    # True: proved (or refuted) for the model size the prover was given; False: for every
    # size at once (spec.prove's all-sizes reading)
    bounded: bool = True


@attrs.frozen
class Obligation:
    """``goal()`` returns ``(formula, explain)``; ``explain(model)`` renders a counterexample."""

    group: str
    invariant: str
    hypercall: str
    clause: str
    goal: Callable[[], tuple[list[z3.BoolRef], Callable[[z3.ModelRef], dict[str, Any]]]]
    timeout_ms: int = 60_000
    # Whether the goal fixes a model size.  The ring goals do not: the queue size and the
    # indices are free words over every value the standard allows (VIRTIO 2.7: a power of
    # two up to 32768), so their proofs hold for every size.
    bounded: bool = False

    @property
    def key(self) -> str:
        return f"{self.group}:{self.invariant}:{self.hypercall}"

    def run(self) -> ProofResult:
        start = time.perf_counter()
        try:
            formulas, explain = self.goal()
            status, model = check_goal(formulas, self.timeout_ms)
            cex = explain(model) if model is not None else None
            detail = ""
        except Exception as exc:  # an obligation that cannot be built is an error, not a pass
            status, cex, detail = "error", None, f"{type(exc).__name__}: {exc}"
        return ProofResult(
            self.group, self.invariant, self.hypercall, self.clause, status,
            time.perf_counter() - start, counterexample=cex, detail=detail,
            bounded=self.bounded,
        )


def check_goal(formulas: list[z3.BoolRef], timeout_ms: int = 60_000) -> tuple[str, Any]:
    """``("proved", None)`` if the refutation goal is unsat, else the status and a model."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*formulas)
    answer = solver.check()
    if answer == z3.unsat:
        return "proved", None
    if answer == z3.sat:
        return "failed", solver.model()
    return "unknown", None
