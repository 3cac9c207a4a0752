"""One vocabulary for two interpretations: concrete Python values and Z3 terms.

The spec is written once, in ordinary Python, and run twice:

* on ``int`` / ``bool`` values, for Hypothesis, the conformance oracle and the CLI;
* on Z3 bit-vector and Boolean terms, for the proofs (see :mod:`spec.symbolic`).

Numbers in the spec are unsigned machine words.  Concretely they are Python ``int``;
symbolically they are 64-bit Z3 bit-vectors (:data:`WORD`).  Python's ``<`` and ``>>``
mean *signed* compare and *arithmetic* shift on Z3 bit-vectors, so spec code never uses
them on words: it uses :func:`ult`, :func:`ule` and :func:`bits` instead, which mean the
same thing under both interpretations.

Branching is plain ``if``: under :func:`spec.symbolic.explore` a symbolic condition
forks the execution.  Data-parallel updates (every frame, every port) use :func:`ite`,
:func:`select` and :func:`store`, which never fork.

Speed: the operations first test for plain ``int`` / ``bool`` operands by exact type
(``type(x) is int``, a pointer compare) and answer with the Python operator; only other
operands take the general path, which is the one the proofs run.  The fast path returns
exactly what the general path returns on the same concrete operands, so the concrete
oracle runs at Python speed and the symbolic behaviour is untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import z3

WORD = 64
MASK64 = (1 << WORD) - 1

T = TypeVar("T")


def is_sym(x: object) -> bool:
    """True when ``x`` is a Z3 term rather than a concrete value."""
    return isinstance(x, z3.ExprRef)


def word(x: int | z3.BitVecRef) -> int | z3.BitVecRef:
    """Coerce a word to 64 bits (identity on Z3 words, mask on ints)."""
    if type(x) is int:
        return x & MASK64
    if is_sym(x):
        return x
    return int(x) & MASK64


def ite(cond: Any, then: T, other: T) -> T:
    """``then if cond else other`` without forking; lifts to ``z3.If`` on terms."""
    if type(cond) is bool:
        return then if cond else other
    if is_sym(cond):
        if is_sym(then) or is_sym(other) or isinstance(then, bool | int):
            return z3.If(cond, _lift(then, other), _lift(other, then))
        raise TypeError(f"ite over non-scalar {type(then).__name__}")
    return then if cond else other


def _lift(x: Any, like: Any) -> Any:
    if is_sym(x):
        return x
    if isinstance(x, bool):
        return z3.BoolVal(x)
    width = like.size() if isinstance(like, z3.BitVecRef) else WORD
    return z3.BitVecVal(int(x) & ((1 << width) - 1), width)


def _scalars(xs: Sequence[Any]) -> bool:
    """Every item a plain bool or int (the concrete fast path of and_ / or_)."""
    for x in xs:
        t = type(x)
        if t is not bool and t is not int:
            return False
    return True


def and_(*xs: Any) -> Any:
    """Conjunction that never forks (``and`` would, under exploration)."""
    for x in xs:  # _scalars(xs), inlined: this is the spec's most frequent call
        t = type(x)
        if t is not bool and t is not int:
            break
    else:
        return all(xs)
    xs = _flat(xs)
    if any(is_sym(x) for x in xs):
        return z3.And(*[_lift(x, True) for x in xs])
    return all(xs)


def or_(*xs: Any) -> Any:
    """Disjunction that never forks."""
    for x in xs:  # _scalars(xs), inlined
        t = type(x)
        if t is not bool and t is not int:
            break
    else:
        return any(xs)
    xs = _flat(xs)
    if any(is_sym(x) for x in xs):
        return z3.Or(*[_lift(x, True) for x in xs])
    return any(xs)


def not_(x: Any) -> Any:
    if type(x) is bool:
        return not x
    return z3.Not(x) if is_sym(x) else not x


def implies(a: Any, b: Any) -> Any:
    return or_(not_(a), b)


def _flat(xs: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for x in xs:
        t = type(x)
        if t is bool or t is int:
            out.append(x)
        elif isinstance(x, list | tuple) or (hasattr(x, "__next__")):
            out.extend(_flat(x))
        else:
            out.append(x)
    return out


def all_(xs: Iterable[Any]) -> Any:
    return and_(*xs)


def any_(xs: Iterable[Any]) -> Any:
    return or_(*xs)


def ult(a: Any, b: Any) -> Any:
    """Unsigned ``a < b``."""
    if type(a) is int and type(b) is int:
        return a < b
    if is_sym(a) or is_sym(b):
        return z3.ULT(_lift(a, b), _lift(b, a))
    return a < b


def ule(a: Any, b: Any) -> Any:
    """Unsigned ``a <= b``."""
    if type(a) is int and type(b) is int:
        return a <= b
    if is_sym(a) or is_sym(b):
        return z3.ULE(_lift(a, b), _lift(b, a))
    return a <= b


def bits(x: Any, lo: int, width: int) -> Any:
    """The unsigned field ``x[lo + width - 1 : lo]`` as a word."""
    mask = (1 << width) - 1
    if type(x) is int:
        return (x >> lo) & mask
    if is_sym(x):
        return z3.LShR(x, lo) & mask if lo else x & mask
    return (x >> lo) & mask


def bit(x: Any, i: Any) -> Any:
    """Bit ``i`` of ``x`` as a Boolean (``i`` may be symbolic)."""
    if type(x) is int and type(i) is int:
        return (x >> i) & 1 == 1
    if is_sym(x) or is_sym(i):
        return (z3.LShR(_lift(x, i), _lift(i, x)) & 1) == 1
    return (x >> i) & 1 == 1


def set_bit(x: Any, i: Any, on: Any) -> Any:
    """``x`` with bit ``i`` set to ``on``."""
    if type(x) is int and type(i) is int and type(on) is bool:
        return (x | (1 << i)) if on else (x & ~(1 << i))
    if is_sym(x) or is_sym(i) or is_sym(on):
        one = _lift(1, x if is_sym(x) else i)
        m = one << _lift(i, one)
        return ite(on, _lift(x, m) | m, _lift(x, m) & ~m)
    return (x | (1 << i)) if on else (x & ~(1 << i))


def add(a: Any, b: Any) -> Any:
    """Wrapping 64-bit addition."""
    if type(a) is int and type(b) is int:
        return (a + b) & MASK64
    if is_sym(a) or is_sym(b):
        return _lift(a, b) + _lift(b, a)
    return (a + b) & MASK64


def sub(a: Any, b: Any) -> Any:
    """Wrapping 64-bit subtraction."""
    if type(a) is int and type(b) is int:
        return (a - b) & MASK64
    if is_sym(a) or is_sym(b):
        return _lift(a, b) - _lift(b, a)
    return (a - b) & MASK64


class Index2:
    """A 2-D index ``row * width + col`` kept as its parts while either is symbolic.

    Selecting or storing with it compares ``row`` and ``col`` separately against each
    slot's coordinates, so the proofs never contain index multiplications or additions.
    A column outside ``0..width-1`` matches no slot: it is *not* the next row's slot.
    """

    __slots__ = ("col", "row", "rows", "width")

    def __init__(self, row: Any, col: Any, width: int, rows: int) -> None:
        self.row, self.col, self.width, self.rows = row, col, width, rows

    def at(self, i: int) -> Any:
        r, c = divmod(i, self.width)
        return and_(self.row == r, self.col == c)

    def inside(self) -> Any:
        """The index names a slot: row and column each within the table."""
        return and_(ult(self.row, self.rows), ult(self.col, self.width))


def index_is(idx: Any, i: int) -> Any:
    """``idx == i`` for a flat or 2-D index."""
    return idx.at(i) if isinstance(idx, Index2) else idx == i


# --- one meaning for every index --------------------------------------------------------
# A table index that names no slot means the same in both interpretations: a read gives
# the table's zero (0 or False) -- or the ``default`` the caller states -- and a store
# changes nothing.  A 2-D index is out of range when its row or its column is (see
# Index2 and spec.state's row-major helpers), never "the next row's slot".  A transition
# must not rely on that meaning: every read without a stated default and every store it
# makes is recorded while an :func:`index_log` is open, and spec.prove proves each one in
# range (obligation ``indices_in_range``); concretely, an out-of-range one is recorded
# with condition ``False`` (spec.replay and the state machines report it).
_INDEX_LOGS: list[list[Access]] = []


class Access(NamedTuple):
    """One logged table access: the condition for its index to name a slot, and where
    in the spec it was made (``file:line function``)."""

    inside: Any
    where: str


class index_log:
    """Record every read without a default and every store made inside the block, as
    :class:`Access` records (concretely only the out-of-range ones)."""

    def __enter__(self) -> list[Access]:
        log: list[Access] = []
        _INDEX_LOGS.append(log)
        return log

    def __exit__(self, *exc: object) -> None:
        _INDEX_LOGS.pop()


def _record(idx: Any, n: int) -> None:
    """Log that ``idx`` must name one of ``n`` slots (symbolic: the condition)."""
    if not _INDEX_LOGS:
        return
    if isinstance(idx, Index2):
        cond = idx.inside()
    elif is_sym(idx):
        cond = z3.ULT(idx, z3.BitVecVal(n, idx.size()))
    else:
        cond = 0 <= idx < n
    if cond is True:
        return
    frame = sys._getframe(2)  # the spec code that called select / store
    code = frame.f_code
    where = f"{code.co_filename.rpartition('/')[2]}:{frame.f_lineno} {code.co_name}"
    _INDEX_LOGS[-1].append(Access(cond, where))


def _zero(seq: Sequence[Any]) -> Any:
    """The zero of a table: False for flags, else 0 (also for an empty table)."""
    return False if seq and isinstance(seq[0], bool | z3.BoolRef) else 0


def select(seq: Sequence[T], idx: Any, default: T | None = None) -> T:
    """``seq[idx]``; a symbolic index becomes an ``If`` chain.

    Out of range (see above), ``default`` is returned, or without one the table's zero --
    the same value concretely and symbolically; a transition's reads without a default
    are proved in range (:func:`index_log`).
    """
    if type(idx) is int:
        if 0 <= idx < len(seq):
            return seq[idx]
        if default is None:
            _record(idx, len(seq))
            return _zero(seq)  # type: ignore[return-value]
        return default
    if isinstance(idx, Index2) or is_sym(idx):
        hit = idx.at if isinstance(idx, Index2) else (lambda i: idx == i)
        if default is None:
            _record(idx, len(seq))
            out: Any = _zero(seq)
        else:
            out = default
        for i in reversed(range(len(seq))):
            out = ite(hit(i), seq[i], out)
        return out
    if 0 <= idx < len(seq):
        return seq[idx]
    if default is None:
        _record(idx, len(seq))
        return _zero(seq)  # type: ignore[return-value]
    return default


def store(seq: tuple[T, ...], idx: Any, value: T) -> tuple[T, ...]:
    """``seq`` with ``seq[idx] = value``; out of range it changes nothing (a transition's
    stores are proved in range: :func:`index_log`)."""
    if type(idx) is int:
        if 0 <= idx < len(seq):
            return (*seq[:idx], value, *seq[idx + 1 :])
        _record(idx, len(seq))
        return seq
    if isinstance(idx, Index2):
        _record(idx, len(seq))
        return tuple(ite(idx.at(i), value, old) for i, old in enumerate(seq))
    if is_sym(idx):
        _record(idx, len(seq))
        return tuple(ite(idx == i, value, old) for i, old in enumerate(seq))
    if 0 <= idx < len(seq):
        return (*seq[:idx], value, *seq[idx + 1 :])
    _record(idx, len(seq))
    return seq


def update_where(seq: tuple[T, ...], fn: Callable[[int, T], T]) -> tuple[T, ...]:
    """Apply ``fn(i, old)`` to every slot: the data-parallel update."""
    return tuple(fn(i, old) for i, old in enumerate(seq))


def count(conds: Iterable[Any]) -> Any:
    """How many of ``conds`` hold, as a word."""
    conds = list(conds)
    if _scalars(conds):
        return sum(1 for c in conds if c)
    if any(is_sym(c) for c in conds):
        return z3.Sum([z3.If(_lift(c, True), z3.BitVecVal(1, WORD), z3.BitVecVal(0, WORD))
                       for c in conds])
    return sum(1 for c in conds if c)


def first(conds: Sequence[Any], none: int) -> Any:
    """Index of the first true condition, or ``none``: the spec's deterministic choice."""
    out: Any = none
    for i in range(len(conds) - 1, -1, -1):
        out = ite(conds[i], i, out)
    return out


def concrete(x: Any) -> Any:
    """Python value of a closed Z3 term (used when printing counterexamples)."""
    if isinstance(x, z3.BoolRef):
        return z3.is_true(z3.simplify(x))
    if isinstance(x, z3.BitVecRef):
        return z3.simplify(x).as_long()
    return x
