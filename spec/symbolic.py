"""Run ordinary spec code on Z3 terms: path exploration, merging and fresh states.

:func:`explore` executes a function repeatedly.  Each time a Z3 condition reaches a Python
``if`` (``bool(term)``), the explorer decides it, records the decision and, on a later run,
takes the other branch: a depth-first enumeration of every feasible path, in the style of
CrossHair and Rosette.  The result is a list of ``(path condition, value)`` pairs that
covers every input exactly once.  :func:`merge` folds them back into one term.

Only this module knows that the spec is being run symbolically; the spec itself is
plain Python over :mod:`spec.logic`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import z3

from spec import logic
from spec.state import SHAPES, Config, State, initial, size_domain

__all__ = ["Path", "PathExplosion", "explore", "fresh", "merge", "same", "strict",
           "unbounded"]

MAX_PATHS = 4096


class PathExplosion(RuntimeError):
    """More paths than :data:`MAX_PATHS`: the spec should use ``ite`` there, not ``if``."""


@attrs.frozen
class Path:
    condition: z3.BoolRef
    value: Any


class _Explorer:
    def __init__(self, assumptions: list[z3.BoolRef], prune: bool,
                 timeout_ms: int | None = None) -> None:
        self.prefix: list[bool] = []
        self.taken: list[bool] = []
        self.conds: list[z3.BoolRef] = []
        self.solver = z3.Solver() if prune else None
        if self.solver is not None:
            self.solver.add(*assumptions)
            if timeout_ms is not None:  # undecided in time: both sides are explored
                self.solver.set("timeout", timeout_ms)
        self.forced: list[bool] = []

    def decide(self, cond: z3.BoolRef) -> bool:
        simple = z3.simplify(cond)
        if z3.is_true(simple):
            return True
        if z3.is_false(simple):
            return False
        depth = len(self.taken)
        if depth < len(self.prefix):
            choice = self.prefix[depth]
            forced = self.forced[depth]
        else:
            choice, forced = self._first_feasible(cond)
            self.forced.append(forced)
        self.taken.append(choice)
        self.conds.append(cond if choice else z3.Not(cond))
        return choice

    def _first_feasible(self, cond: z3.BoolRef) -> tuple[bool, bool]:
        """Pick True unless infeasible; 'forced' means the other side is infeasible."""
        if self.solver is None:
            return True, False
        pc = z3.And(*self.conds) if self.conds else z3.BoolVal(True)
        self.solver.push()
        self.solver.add(pc, cond)
        can_true = self.solver.check() != z3.unsat
        self.solver.pop()
        self.solver.push()
        self.solver.add(pc, z3.Not(cond))
        can_false = self.solver.check() != z3.unsat
        self.solver.pop()
        if can_true:
            return True, not can_false
        return False, True

    def next_prefix(self) -> bool:
        """Backtrack to the deepest unforced True decision; False when done."""
        taken, forced = self.taken, self.forced[: len(self.taken)]
        for i in range(len(taken) - 1, -1, -1):
            if taken[i] and not forced[i]:
                self.prefix = [*taken[:i], False]
                self.forced = [*forced[:i], True]
                return True
        return False


_ACTIVE: list[_Explorer] = []
_ORIGINAL_BOOL = z3.AstRef.__bool__


def _patched_bool(self: z3.AstRef) -> bool:
    if _ACTIVE and isinstance(self, z3.BoolRef):
        return _ACTIVE[-1].decide(self)
    return _ORIGINAL_BOOL(self)


@contextlib.contextmanager
def _forking(explorer: _Explorer) -> Iterator[None]:
    _ACTIVE.append(explorer)
    previous = z3.AstRef.__bool__
    z3.AstRef.__bool__ = _patched_bool  # type: ignore[method-assign]
    try:
        yield
    finally:
        _ACTIVE.pop()
        z3.AstRef.__bool__ = previous  # type: ignore[method-assign]


def _strict_bool(self: z3.AstRef) -> bool:
    if isinstance(self, z3.BoolRef):
        simple = z3.simplify(self)
        if z3.is_true(simple) or z3.is_false(simple):
            return z3.is_true(simple)
        raise TypeError(f"symbolic condition used as a Python bool: {self}")
    return _ORIGINAL_BOOL(self)


@contextlib.contextmanager
def strict() -> Iterator[None]:
    """Outside exploration, make ``bool(term)`` fail loudly instead of z3's silent
    structural comparison, so a property that branches on a term cannot mislead a proof."""
    if _ACTIVE:
        yield
        return
    z3.AstRef.__bool__ = _strict_bool  # type: ignore[method-assign]
    try:
        yield
    finally:
        z3.AstRef.__bool__ = _ORIGINAL_BOOL  # type: ignore[method-assign]


def explore(
    fn: Callable[[], Any], assumptions: list[z3.BoolRef] | None = None, prune: bool = True,
    timeout_ms: int | None = None,
) -> list[Path]:
    """Every path of ``fn()`` with its condition.

    With ``prune`` the explorer asks Z3 whether each new branch is feasible under
    ``assumptions`` and the decisions so far, so infeasible paths are never run.
    """
    explorer = _Explorer(list(assumptions or []), prune, timeout_ms)
    paths: list[Path] = []
    while True:
        explorer.taken, explorer.conds = [], []
        with _forking(explorer), logic.facts() as facts:
            value = fn()
        conds = [*explorer.conds, *facts]  # facts: what a choice's witness is (logic)
        cond = z3.And(*conds) if conds else z3.BoolVal(True)
        paths.append(Path(cond, value))
        if len(paths) > MAX_PATHS:
            raise PathExplosion(f"more than {MAX_PATHS} paths")
        if not explorer.next_prefix():
            return paths


def merge(paths: list[Path]) -> Any:
    """One value equal to each path's value under that path's condition."""
    out = paths[-1].value
    for path in reversed(paths[:-1]):
        out = _merge2(path.condition, path.value, out)
    return out


def _merge2(cond: z3.BoolRef, a: Any, b: Any) -> Any:
    if a is b:
        return a
    if attrs.has(type(a)):
        assert type(a) is type(b), (type(a), type(b))
        return attrs.evolve(
            a,
            **{
                f.name: _merge2(cond, getattr(a, f.name), getattr(b, f.name))
                for f in attrs.fields(type(a))
                if f.init
            },
        )
    if isinstance(a, tuple):
        assert len(a) == len(b)
        return tuple(_merge2(cond, x, y) for x, y in zip(a, b, strict=True))
    if not logic.is_sym(a) and not logic.is_sym(b) and a == b:
        return a
    return logic.ite(cond, a, b)


def same(a: Any, b: Any) -> Any:
    """Structural equality of two (possibly symbolic) values as one condition."""
    if isinstance(a, logic.Table):
        return True if a.arr.eq(b.arr) else a.arr == b.arr
    if attrs.has(type(a)):
        return logic.all_(
            same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a))
        )
    if isinstance(a, tuple):
        return logic.all_(same(x, y) for x, y in zip(a, b, strict=True))
    if logic.is_sym(a) or logic.is_sym(b):
        return logic._lift(a, b) == logic._lift(b, a)
    return a == b


_counter = itertools.count()


def fresh(template: Any, prefix: str) -> Any:
    """A value shaped like ``template`` with every word and flag a fresh Z3 variable.

    Fields whose attrs metadata says ``{"symbolic": False}`` keep their concrete value
    (configuration, not state).
    """
    if attrs.has(type(template)):
        changes = {}
        for f in attrs.fields(type(template)):
            if not f.init or f.metadata.get("symbolic", True) is False:
                continue
            changes[f.name] = fresh(getattr(template, f.name), f"{prefix}.{f.name}")
        return attrs.evolve(template, **changes)
    if isinstance(template, tuple):
        return tuple(fresh(x, f"{prefix}[{i}]") for i, x in enumerate(template))
    if isinstance(template, bool):
        return z3.Bool(f"{prefix}#{next(_counter)}")
    if isinstance(template, int):
        return z3.BitVec(f"{prefix}#{next(_counter)}", logic.WORD)
    return template


def unbounded(template: Config, prefix: str = "s") -> tuple[State, Any]:
    """A state of every size at once: its sizes free words, its tables
    :class:`~spec.logic.Table` arrays (shaped as ``spec.state.SHAPES`` says), its profile
    ``template``'s; and the condition that the sizes are ones a model may have."""
    cfg, domain = every_size(template, prefix)
    return unbounded_like(initial(template).evolve(cfg=cfg), prefix), domain


def every_size(template: Config, prefix: str = "s") -> tuple[Config, Any]:
    """``template`` with its sizes free words ``<prefix>.<size>``, and the condition that
    they are sizes a model may have."""
    sizes = {name: z3.BitVec(f"{prefix}.{name}", logic.WORD) for name in template.sizes()}
    return attrs.evolve(template, **sizes), size_domain(sizes)


def unbounded_like(s: State, prefix: str) -> State:
    """A state of ``s``'s sizes (free words, see :func:`unbounded`) whose tables are new
    arrays named ``<prefix>.<field>``: an independent state of the same machine."""
    sizes = s.cfg.sizes()
    s0 = initial(Config())
    word = z3.BitVecSort(logic.WORD)
    tables = {}
    for name, (rows, cols) in SHAPES.items():
        sort = z3.BoolSort() if isinstance(getattr(s0, name)[0], bool) else word
        dims = [word] if cols is None else [word, word]
        arr = z3.Array(f"{prefix}.{name}", *dims, sort)
        tables[name] = logic.Table(arr, sizes[rows], None if cols is None else sizes[cols])
    return s.evolve(**tables)
