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
        if isinstance(then, Table) and isinstance(other, Table):
            if then.arr.eq(other.arr):
                return then
            return then.like(z3.If(cond, then.arr, other.arr))  # type: ignore[return-value]
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


def shl(a: Any, b: Any) -> Any:
    """``a << b`` as a word (for ``b`` below 64)."""
    if type(a) is int and type(b) is int:
        return (a << b) & MASK64
    if is_sym(a) or is_sym(b):
        return _lift(a, b) << _lift(b, a)
    return (a << b) & MASK64


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
_INDEX_LOGS: list[list[Any]] = []  # of Access records


class Access(NamedTuple):
    """One logged table access: the condition for its index to name a slot, and where
    in the spec it was made (``file:line function``)."""

    inside: Any
    where: str


class _Collect:
    """A block that collects, in a list of its own, what is logged to ``stack`` inside
    it (blocks nest: the innermost collects)."""

    def __init__(self, stack: list[list[Any]]) -> None:
        self.stack = stack

    def __enter__(self) -> list[Any]:
        out: list[Any] = []
        self.stack.append(out)
        return out

    def __exit__(self, *exc: object) -> None:
        self.stack.pop()


def index_log() -> _Collect:
    """Record every read without a default and every store made inside the block, as
    :class:`Access` records (concretely only the out-of-range ones)."""
    return _Collect(_INDEX_LOGS)


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
    _log_access(cond, 3)


def _log_access(cond: Any, depth: int = 2) -> None:
    """Log the in-range condition ``cond`` of the access made ``depth`` frames up."""
    if not _INDEX_LOGS:
        return
    frame = sys._getframe(depth)  # the spec code that called select / store
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
    if type(idx) is int and type(seq) is not Table:
        if 0 <= idx < len(seq):
            return seq[idx]
        if default is None:
            _record(idx, len(seq))
            return _zero(seq)  # type: ignore[return-value]
        return default
    if isinstance(seq, Table):
        inside, cell = seq.inside(idx), seq.at(idx)
        if default is None:
            _log_access(inside)
        return z3.If(inside, cell, seq.lift(seq.zero if default is None else default))
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
    if isinstance(seq, Table):
        inside = seq.inside(idx)
        _log_access(inside)
        return seq.like(z3.If(inside, seq.put(idx, value), seq.arr))  # type: ignore[return-value]
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
    """How many of ``conds`` hold, as a word (a table of symbolic size has no count:
    :class:`Unbounded`)."""
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


# --- every size at once: tables as arrays, quantified forms --------------------------------
# The all-sizes reading (spec.prove, issue 15): a state whose sizes are free words and
# whose tables are :class:`Table` values, Z3 arrays.  The spec does not loop over a table
# or an id range itself; it says what holds of every slot (:func:`every`, :func:`forall`),
# of some slot (:func:`some`, :func:`exists`), what the new table is slot by slot
# (:func:`tabulate`) and which slot is the first that qualifies (:func:`first_where`).
# On tuples these are the loops they replace (sizes concrete: values, or the bounded
# proofs' terms); on tables they are ``ForAll`` / ``Exists`` / ``Lambda`` over a bound index
# below the symbolic size, so one proof covers every size.  A form that has no such
# reading (counting slots) raises :class:`Unbounded`, and so does any Python iteration of
# a table: the prover then keeps that obligation bounded.


class Unbounded(TypeError):
    """The spec code met a table of symbolic size where it needs a concrete one."""


_bound = iter(range(1 << 62))


def _bound_var(name: str) -> Any:
    return z3.BitVec(f"{name}!{next(_bound)}", WORD)


class Table:
    """A table of symbolic size: a Z3 array over words (one index, or row and column) and
    its number of rows (and columns).  Slots outside it are never read (:func:`select`
    answers the table's zero there) and never written (:func:`store` and
    :func:`tabulate` keep them), so two tables are equal when their arrays are."""

    __slots__ = ("arr", "rows", "width", "zero")

    def __init__(self, arr: Any, rows: Any, width: Any = None, zero: Any = None) -> None:
        self.arr, self.rows, self.width = arr, rows, width
        self.zero = zero if zero is not None else (
            z3.BoolVal(False) if arr.range() == z3.BoolSort() else z3.BitVecVal(0, WORD))

    def like(self, arr: Any) -> Table:
        return Table(arr, self.rows, self.width, self.zero)

    def lift(self, x: Any) -> Any:
        return _lift(x, self.zero)

    def inside(self, idx: Any) -> Any:
        """The condition that ``idx`` names a slot of this table."""
        if self.width is None:
            if isinstance(idx, Index2):
                raise Unbounded("a (row, column) index into a one-index table")
            return z3.ULT(_lift(idx, self.rows), self.rows)
        if not isinstance(idx, Index2):
            raise Unbounded("a flat index into a (row, column) table")
        return z3.And(z3.ULT(_lift(idx.row, self.rows), self.rows),
                      z3.ULT(_lift(idx.col, self.width), self.width))

    def at(self, idx: Any) -> Any:
        """The array's cell at ``idx`` (meaningful only inside the table)."""
        if isinstance(idx, Index2):
            return z3.Select(self.arr, _lift(idx.row, self.rows), _lift(idx.col, self.rows))
        return z3.Select(self.arr, _lift(idx, self.rows))

    def put(self, idx: Any, value: Any) -> Any:
        if isinstance(idx, Index2):
            return z3.Store(self.arr, _lift(idx.row, self.rows), _lift(idx.col, self.rows),
                            self.lift(value))
        return z3.Store(self.arr, _lift(idx, self.rows), self.lift(value))

    def slot(self) -> tuple[list[Any], Any, Any]:
        """Bound variables for one slot, the condition that they name a slot, and the
        index (a word, or an :class:`Index2`) the spec code is handed."""
        if self.width is None:
            i = _bound_var("i")
            return [i], z3.ULT(i, self.rows), i
        r, c = _bound_var("r"), _bound_var("c")
        return ([r, c], z3.And(z3.ULT(r, self.rows), z3.ULT(c, self.width)),
                Index2(r, c, self.width, self.rows))

    def __len__(self) -> int:
        raise Unbounded("the length of a table of symbolic size")

    def __iter__(self) -> Any:
        raise Unbounded("iterating a table of symbolic size")

    def __getitem__(self, idx: Any) -> Any:
        raise Unbounded("indexing a table of symbolic size directly (use select)")


def row(i: Any, width: Any) -> Any:
    """The row of slot ``i`` of a (row, column) table ``width`` columns wide."""
    return i.row if isinstance(i, Index2) else i // width


def col(i: Any, width: Any) -> Any:
    """The column of slot ``i`` of a (row, column) table ``width`` columns wide."""
    return i.col if isinstance(i, Index2) else i % width


def _cells(tables: Sequence[Any], idx: Any) -> list[Any]:
    out = []
    for t in tables:
        if not isinstance(t, Table) or not _same_size(t.rows, tables[0].rows) or (
                not _same_size(t.width, tables[0].width)):
            raise Unbounded("tables of different shapes read slot by slot together")
        out.append(t.at(idx))
    return out


def within(x: Any, base: Any, n: Any) -> Any:
    """``x`` is one of ``base .. base + n - 1``."""
    return and_(ule(base, x), ult(x, add(base, n)))


def first_slot(fn: Callable[[Any, Any], Any], table: Any, none: int) -> Any:
    """The first slot ``i`` of a one-index table with ``fn(i, table[i])``, or ``none``."""
    if isinstance(table, Table):
        return first_where(table.rows, lambda i: fn(i, table.at(i)), none)
    for i, x in enumerate(table):
        hit = fn(i, x)
        if type(hit) is not bool:
            return first([fn(j, y) for j, y in enumerate(table)], none)
        if hit:
            return i
    return none


def _same_size(a: Any, b: Any) -> bool:
    return a is b or (a is not None and b is not None and a.eq(b))


def _body(bound: list[Any], guard: Any, make: Callable[[], Any]) -> Any:
    """``make()``, the body of a quantifier or lambda over ``bound`` under ``guard``; the
    table accesses it logs (:func:`index_log`) are logged for every such ``bound``."""
    if not _INDEX_LOGS:
        return make()
    with index_log() as inner:
        out = make()
    for a in inner:
        _INDEX_LOGS[-1].append(Access(z3.ForAll(bound, z3.Implies(guard, _lift(a.inside, True))),
                                      a.where))
    return out


def _per_slot(fn: Callable[..., Any], tables: Sequence[Any]) -> list[Any]:
    """``fn(i, t0[i], t1[i], ...)`` for every slot of tuples, in order."""
    if len(tables) == 1:
        return [fn(i, x) for i, x in enumerate(tables[0])]
    return [fn(i, *xs) for i, xs in enumerate(zip(*tables, strict=True))]


def _slot_body(fn: Callable[..., Any], tables: Sequence[Any], lift: Callable[[Any], Any]
               ) -> tuple[list[Any], Any, Any]:
    """For tables: the bound variables of one slot, the condition that they name a slot,
    and ``fn`` of that slot (lifted by ``lift``)."""
    bound, inside, idx = tables[0].slot()
    return bound, inside, _body(bound, inside, lambda: lift(fn(idx, *_cells(tables, idx))))


def _as_bool(x: Any) -> Any:
    return _lift(x, True)


def every(fn: Callable[..., Any], *tables: Any) -> Any:
    """``fn(i, t0[i], t1[i], ...)`` holds for every slot ``i`` of the tables (which have
    one shape)."""
    if isinstance(tables[0], Table):
        bound, inside, body = _slot_body(fn, tables, _as_bool)
        return z3.ForAll(bound, z3.Implies(inside, body))
    return and_(*_per_slot(fn, tables))


def some(fn: Callable[..., Any], *tables: Any) -> Any:
    """``fn(i, t0[i], ...)`` holds for some slot ``i`` of the tables."""
    if isinstance(tables[0], Table):
        bound, inside, body = _slot_body(fn, tables, _as_bool)
        return z3.Exists(bound, z3.And(inside, body))
    return or_(*_per_slot(fn, tables))


def tabulate(fn: Callable[..., Any], *tables: Any) -> Any:
    """The table shaped like ``tables[0]`` whose slot ``i`` is ``fn(i, t0[i], t1[i], ...)``:
    the data-parallel update (on tuples, the tuple of those values)."""
    first_table = tables[0]
    if isinstance(first_table, Table):
        bound, inside, body = _slot_body(fn, tables, first_table.lift)
        cell = first_table.at(bound[0] if len(bound) == 1 else
                              Index2(bound[0], bound[1], first_table.width, first_table.rows))
        return first_table.like(z3.Lambda(bound, z3.If(inside, body, cell)))
    return tuple(_per_slot(fn, tables))


def build(rows: Any, fn: Callable[..., Any], cols: Any = None) -> Any:
    """The table of ``rows`` slots (of ``rows`` x ``cols``, row-major, with ``cols``)
    whose slot ``i`` (``(r, c)``) is ``fn(i)`` (``fn(r, c)``): a tuple for int sizes, for
    symbolic ones a :class:`Table` (its sort that of ``fn``'s value)."""
    if type(rows) is int and (cols is None or type(cols) is int):
        if cols is None:
            return tuple([fn(i) for i in range(rows)])
        return tuple([fn(r, c) for r in range(rows) for c in range(cols)])
    bound = [_bound_var("i")] if cols is None else [_bound_var("r"), _bound_var("c")]
    body = fn(*bound)
    zero = z3.BoolVal(False) if isinstance(body, bool) or z3.is_bool(body) else \
        z3.BitVecVal(0, WORD)
    return Table(z3.Lambda(bound, _lift(body, zero)), rows, cols, zero)


def _id_body(n: Any, fn: Callable[[Any], Any]) -> tuple[Any, Any, Any]:
    """For a symbolic size: a bound id, the condition that it is below ``n``, and
    ``fn`` of it."""
    i = _bound_var("v")
    guard = z3.ULT(i, n)
    return i, guard, _body([i], guard, lambda: _as_bool(fn(i)))


def forall(n: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(i)`` for every id ``i`` below ``n`` (a size: an int, or a word)."""
    if type(n) is int:
        return and_(*[fn(i) for i in range(n)])
    i, guard, body = _id_body(n, fn)
    return z3.ForAll([i], z3.Implies(guard, body))


def exists(n: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(i)`` for some id ``i`` below ``n``."""
    if type(n) is int:
        return or_(*[fn(i) for i in range(n)])
    i, guard, body = _id_body(n, fn)
    return z3.Exists([i], z3.And(guard, body))


# Facts the all-sizes reading states about a value it names instead of computing
# (first_where's witness); spec.symbolic.explore adds a run's facts to its path condition.
_FACTS: list[list[Any]] = []


def facts() -> _Collect:
    """Collect the facts stated inside the block (see :func:`first_where`)."""
    return _Collect(_FACTS)


def first_where(n: Any, fn: Callable[[Any], Any], none: int) -> Any:
    """The least id ``i`` below ``n`` with ``fn(i)``, or ``none``: the spec's deterministic
    choice.  For a symbolic ``n``, a fresh word stated to be exactly that."""
    if type(n) is int:
        return first([fn(i) for i in range(n)], none)
    if not _FACTS:
        raise Unbounded("a choice of symbolic range outside path exploration")
    k = _bound_var("first")
    j = _bound_var("v")
    with index_log():  # the definition reads no table for the spec: nothing to prove
        found = exists(n, fn)
        below = z3.ULT(j, k)
        least = z3.And(z3.ULT(k, n), _lift(fn(k), True), z3.ForAll([j], z3.Implies(
            below, z3.Not(_lift(fn(j), True)))))
    _FACTS[-1].append(z3.If(found, least, k == none))
    return k


def concrete(x: Any) -> Any:
    """Python value of a closed Z3 term (used when printing counterexamples)."""
    if isinstance(x, z3.BoolRef):
        return z3.is_true(z3.simplify(x))
    if isinstance(x, z3.BitVecRef):
        return z3.simplify(x).as_long()
    return x
