"""One meaning for every index: the concrete spec and the symbolic spec agree on every input.

The proofs run the transitions on Z3 terms, the oracle and the state machines on Python
ints; an index that names no slot (a port one past the caller's row, a vCPU id past the
last, garbage) must mean the same thing in both, or a proof is about another program than
the one that runs and its counterexamples do not replay (issue 15, item 2).

Each example boots a machine, then makes random calls and events -- arguments in range,
at and just past each bound, sentinels and random 64-bit garbage, callers that do not
exist -- on the reachable states the calls themselves produce.  Every step runs twice:

* concretely (``machine.step`` on ints), and
* symbolically on the same values: the state, caller and registers as Z3 constants, so
  every table access takes the proofs' path (``If`` chains over ``Index2``) and every
  branch is decided by simplification (:func:`spec.symbolic.strict`);

the post-states and results must be equal.  Neither run may touch a table slot that does
not exist (the concrete reading of the ``indices_in_range`` obligation).
"""

from __future__ import annotations

from typing import Any

import attrs
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from spec import logic, machine, symbolic
from spec.hypercalls import abi, codec
from spec.prove import PROOF_CONFIG
from spec.state import State, initial
from spec.transitions import Caller

CFG = PROOF_CONFIG
_FIELDS = [f.name for f in attrs.fields(State) if f.name != "cfg"]
_BOUNDS = sorted({0, 1, CFG.n_vms, CFG.n_vcpus, CFG.n_gframes, CFG.n_hframes, CFG.n_tx,
                  CFG.n_ports, CFG.n_devices, CFG.n_lines, CFG.n_vms - 1, CFG.n_vcpus - 1,
                  CFG.n_gframes - 1, CFG.n_ports - 1, 2 * CFG.n_ports, 0xFFFD, 0xFFFE, 0xFFFF,
                  1 << 16, (1 << 32) - 1, 1 << 32, 1 << 63, (1 << 64) - 1})
ARG = st.one_of(
    st.integers(0, 6),
    st.sampled_from(_BOUNDS),
    st.integers(0, CFG.n_gframes + 1).map(lambda g: g << 12),  # entry points, frame g
    st.integers(0, (1 << 64) - 1),
)
ROWS = st.sampled_from(abi.TABLE)
CALLER = st.tuples(st.integers(0, CFG.n_vms), st.integers(0, CFG.n_vcpus))


def _boot() -> State:
    """Every VM created and populated, a transaction, a channel and a device in use."""
    s = initial(CFG)
    calls = [(0, "VM_CREATE", (1, 3)), (0, "VM_CREATE", (2, 3)),
             (0, "MEM_POPULATE", (0, 7)), (1, "MEM_POPULATE", (0, 7)),
             (1, "MEM_POPULATE", (1, 3)), (2, "MEM_POPULATE", (2, 5)),
             (1, "MEM_SHARE", (0, 1, 1 << 2, 1)), (1, "EVTCHN_ALLOC_UNBOUND", (2,)),
             (2, "EVTCHN_BIND_INTERDOMAIN", (1, 0)), (0, "DEV_ASSIGN", (0, 1))]
    for vm, name, args in calls:
        s, out = machine.step(s, vm, 0, codec.encode_call(abi.BY_NAME[name], args, "arm64"))
        assert out["x0"] >> 63 == 0, (name, out)
    return s


BOOT = _boot()


def _const(x: Any) -> Any:
    return z3.BoolVal(x) if isinstance(x, bool) else z3.BitVecVal(x, logic.WORD)


def _as_terms(s: State) -> State:
    return s.evolve(**{f: tuple(_const(x) for x in getattr(s, f)) for f in _FIELDS})


def _value(x: Any) -> Any:
    if logic.is_sym(x):
        x = logic.concrete(z3.simplify(x))
    return x & logic.MASK64 if type(x) is int else x


def _evaluated(s: State) -> dict[str, tuple[Any, ...]]:
    return {f: tuple(_value(x) for x in getattr(s, f)) for f in _FIELDS}


def _both_ways(s: State, op: tuple[Any, ...]) -> State:
    """Run ``op`` concretely and symbolically on ``s``; assert they agree; the concrete
    post-state."""
    sym = _as_terms(s)
    if op[0] == "event":
        _, name, args = op
        with logic.index_log() as log:
            post, ret = machine.event(s, name, *args), None
        with symbolic.strict(), logic.index_log() as slog:
            spost, sret = machine.event(sym, name, *(_const(a) for a in args)), None
    else:
        _, vm, vcpu, conv, regs = op
        with logic.index_log() as log:
            post, out = machine.step(s, vm, vcpu, regs, conv)
        ret = out[abi.CONVENTIONS[conv]["result"][0]]
        with symbolic.strict(), logic.index_log() as slog:
            spost, sret = machine.apply(sym, Caller(_const(vm), _const(vcpu)),
                                        codec.decode({k: _const(v) for k, v in regs.items()},
                                                     conv))
    assert log == [], f"{op}: the concrete run used a slot that does not exist"
    assert all(z3.is_true(z3.simplify(logic._lift(a.inside, True))) for a in slog), \
        f"{op}: the symbolic run used a slot that does not exist"
    assert _value(sret) == ret, f"{op}: result {_value(sret):#x} (symbolic) != {ret:#x}"
    got, want = _evaluated(spost), _evaluated(post)
    diff = {f: (got[f], want[f]) for f in _FIELDS if got[f] != want[f]}
    assert not diff, f"{op}: post-states differ (symbolic, concrete): {diff}"
    return post


@st.composite
def operation(draw: st.DrawFn) -> tuple[Any, ...]:
    if draw(st.integers(0, 9)) == 0:
        event = draw(st.sampled_from(abi.EVENTS))
        return ("event", event.name, tuple(draw(ARG) for _ in event.args))
    row = draw(ROWS)
    vm, vcpu = draw(CALLER)
    conv = draw(st.sampled_from(("arm64", "x86_64")))
    regs = codec.encode_call(row, tuple(draw(ARG) for _ in row.args), conv)
    if draw(st.integers(0, 7)) == 0:  # garbage in a whole register: reserved bits
        reg = draw(st.sampled_from(sorted(regs)))
        regs[reg] = draw(st.integers(0, (1 << 64) - 1))
    return ("hypercall", vm, vcpu, conv, regs)


# ci: 40 sequences (about 5 s); the thorough profile's tenth of its examples
@settings(max_examples=max(40, settings.default.max_examples // 10))
@given(st.lists(operation(), min_size=1, max_size=8))
def test_concrete_and_symbolic_agree(ops: list[tuple[Any, ...]]) -> None:
    s = BOOT
    for op in ops:
        s = _both_ways(s, op)


@given(st.sampled_from([r for r in abi.TABLE if r.args]), st.data())
@settings(max_examples=60)
def test_agree_just_past_every_bound(row: abi.Row, data: st.DataObject) -> None:
    """Every argument at or just past a bound, on the booted machine: the inputs where the
    two readings of an index used to part (the next VM's slot vs no slot)."""
    near = st.sampled_from([b + d for b in _BOUNDS if b < 1 << 17 for d in (-1, 0, 1)
                            if b + d >= 0])
    args = tuple(data.draw(near) for _ in row.args)
    vm = data.draw(st.integers(0, CFG.n_vms - 1))
    _both_ways(BOOT, ("hypercall", vm, 0, "arm64", codec.encode_call(row, args, "arm64")))


def test_an_index_past_a_row_names_no_slot() -> None:
    """The helpers themselves: a column past the row is no slot (not the next row's
    first), concretely and symbolically; a read of it is the table's zero (or the stated
    default), a store of it changes nothing."""
    s = BOOT
    for helper, width in ((s.vc, CFG.n_vcpus), (s.vg, CFG.n_gframes), (s.vp, CFG.n_ports)):
        table = tuple(range(10, 10 + CFG.n_vms * width))
        for row, col in ((0, width), (CFG.n_vms - 1, width), (CFG.n_vms, 0), (1, 1 << 40)):
            i = helper(row, col)
            assert logic.select(table, i) == 0 and logic.select(table, i, 7) == 7
            assert logic.store(table, i, 99) == table
            j = helper(_const(row), _const(col))
            assert _value(logic.select(table, j)) == 0
            assert _value(logic.select(table, j, 7)) == 7
            assert tuple(_value(x) for x in logic.store(table, j, 99)) == table
    flags = (True,) * 4
    assert logic.select(flags, 4) is False
    assert _value(logic.select(flags, _const(4))) is False


def test_an_off_by_one_is_seen() -> None:
    """The planted off-by-one bound (spec.mutants ``cpu_on_bound_off_by_one``): CPU_ON of
    vCPU ``n_vcpus`` indexes past the caller's row.  Both readings agree on what it does
    (nothing: the slot does not exist), and both runs report the access."""
    from spec import mutants

    regs = codec.encode_call(abi.BY_NAME["CPU_ON"], (CFG.n_vcpus, 0, 0), "arm64")
    _both_ways(BOOT, ("hypercall", 0, 0, "arm64", regs))  # the spec refuses it
    with mutants.installed(mutants.BY_NAME["cpu_on_bound_off_by_one"]):
        try:
            _both_ways(BOOT, ("hypercall", 0, 0, "arm64", regs))
        except AssertionError as exc:
            assert "slot that does not exist" in str(exc)
        else:
            raise AssertionError("the out-of-range access went unseen")


# --- the third reading: every size at once ------------------------------------------------
# The all-sizes proofs (spec.symbolic.unbounded) run the same transitions on a state whose
# sizes are words and whose tables are arrays, the loops read as quantifiers and lambdas.
# Pinned to a concrete state -- sizes and every slot equal to its values -- that reading
# must give exactly the concrete post-state and result: one text, one meaning.


def _pinned(s: State) -> tuple[State, list[Any]]:
    """The every-size state and the facts that make it equal to ``s``."""
    u, domain = symbolic.unbounded(s.cfg, "pin")
    facts = [domain, *(v == getattr(s.cfg, k) for k, v in u.cfg.sizes().items())]
    for f in _FIELDS:
        facts += [_cell(getattr(u, f), s.cfg, f, i) == _const(x)
                  for i, x in enumerate(getattr(s, f))]
    return u, facts


def _cell(t: logic.Table, cfg: Any, field: str, i: int) -> Any:
    from spec.state import SHAPES

    cols = SHAPES[field][1]
    if cols is None:
        return z3.Select(t.arr, _const(i))
    r, c = divmod(i, getattr(cfg, cols))
    return z3.Select(t.arr, _const(r), _const(c))


def _every_size_way(s: State, op: tuple[Any, ...], post: State, ret: Any) -> None:
    """Run ``op`` on the every-size reading of ``s``; assert it gives ``post`` and ``ret``."""
    u, facts = _pinned(s)
    if op[0] == "event":
        _, name, args = op
        paths = symbolic.explore(lambda: (machine.event(u, name, *(_const(a) for a in args)),
                                          None), facts)
    else:
        _, vm, vcpu, conv, regs = op
        paths = symbolic.explore(lambda: machine.apply(
            u, Caller(_const(vm), _const(vcpu)),
            codec.decode({k: _const(v) for k, v in regs.items()}, conv)), facts)
    taken = 0
    for path in paths:
        solver = z3.Solver()
        solver.set("timeout", 20_000)
        solver.add(*facts, path.condition)
        answer = solver.check()
        assert answer != z3.unknown, f"{op}: the solver could not decide a path"
        if answer == z3.unsat:
            continue
        taken += 1
        model = solver.model()
        spost, sret = path.value
        if ret is not None:
            got = model.eval(logic._lift(sret, 0), model_completion=True).as_long()
            assert got == ret, f"{op}: result {got:#x} (every size) != {ret:#x}"
        for f in _FIELDS:
            table = getattr(spost, f)
            got_f = tuple(_value(model.eval(_cell(table, s.cfg, f, i), model_completion=True))
                          for i in range(len(getattr(post, f))))
            assert got_f == tuple(_value(x) for x in getattr(post, f)), \
                f"{op}: {f} differs (every size, concrete): {got_f} != {getattr(post, f)}"
    assert taken >= 1, f"{op}: no path of the every-size reading fits the state"


# ci: 12 sequences of up to 4 steps (each step a few solver calls)
@settings(max_examples=max(12, settings.default.max_examples // 30), deadline=None)
@given(st.lists(operation(), min_size=1, max_size=4))
def test_every_size_reading_agrees(ops: list[tuple[Any, ...]]) -> None:
    s = BOOT
    for op in ops:
        if op[0] == "event":
            post, ret = machine.event(s, op[1], *op[2]), None
        else:
            post, out = machine.step(s, op[1], op[2], op[4], op[3])
            ret = out[abi.CONVENTIONS[op[3]]["result"][0]]
        _every_size_way(s, op, post, ret)
        s = post


def test_every_size_reading_of_the_invariants() -> None:
    """Each invariant read as quantifiers over the pinned state is what it is on the
    concrete state: true on the booted machine, false where a planted state breaks it."""
    from spec import invariants

    broken = BOOT.evolve(owner=(BOOT.owner[0], 2, *BOOT.owner[2:]))  # frame 1 to VM 2
    for s in (BOOT, broken):
        u, facts = _pinned(s)
        for inv in invariants.INVARIANTS:
            try:
                formula = inv.holds(u)
            except logic.Unbounded:
                continue  # a count: no reading for every size (frames_counted)
            solver = z3.Solver()
            solver.set("timeout", 20_000)
            solver.add(*facts, logic._lift(formula, True) != bool(inv.holds(s)))
            assert solver.check() == z3.unsat, f"{inv.name} reads differently"


def test_every_size_comparison_can_fail() -> None:
    """The comparison above sees a post-state that differs in one slot (planted)."""
    regs = codec.encode_call(abi.BY_NAME["CPU_OFF"], (), "arm64")
    post, out = machine.step(BOOT, 0, 0, regs, "arm64")
    _every_size_way(BOOT, ("hypercall", 0, 0, "arm64", regs), post, out["x0"])
    wrong = post.evolve(vcpu=(1, *post.vcpu[1:]))
    try:
        _every_size_way(BOOT, ("hypercall", 0, 0, "arm64", regs), wrong, out["x0"])
    except AssertionError as exc:
        assert "vcpu differs" in str(exc)
    else:
        raise AssertionError("a wrong post-state went unseen")
