"""Push-button proofs: every invariant inductive for every hypercall and event, with Z3.

For each ABI row the prover takes a fully symbolic pre-state satisfying every invariant, a
symbolic caller and a register file whose argument registers are all free 64-bit words
(the function-id register is free except for its low 32 bits, which select the row), runs
the *same* spec code as the concrete model (decode -> checks -> transition) through
:func:`spec.symbolic.explore`, and asks Z3 for a path on which an invariant fails.
``unsat`` is a proof -- for every model size at once where the pre-state is the all-sizes
reading (:func:`spec.symbolic.unbounded`: sizes free words, tables arrays, the spec's
loops quantifiers), else for the bounded model (see :func:`prove_target`).  Also proved
per row: the step properties
(failed calls change nothing, ...), the row's functional postcondition (what a success
does to the caller's own objects and returns, stated beside its transition: the step
properties ``post_<handler>``, which see the decoded arguments), the three
noninterference properties, and per transition ``indices_in_range``: every table read
without a stated default and every store it makes names a slot (spec.logic).

A failed obligation yields a concrete counterexample (pre-state, caller, registers, the
decoded call, the clause) that :mod:`spec.replay` re-runs on the concrete spec.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import z3
from z3 import z3util

from spec import checking, logic, machine, noninterference, symbolic
from spec import invariants as inv_mod
from spec.hypercalls import abi, codec, ffa, xen
from spec.proof import ProofResult
from spec.state import CONTROL, MAX_SIZE, Config, State, initial
from spec.transitions import Caller

UNKNOWN = "UNKNOWN_FUNCTION_ID"
# Per transition: every table read without a stated default and every store names a slot
# (spec.logic "one meaning for every index": the meaning out of range is total and the
# same in both interpretations, but no transition may rely on it).
INDICES, INDICES_CLAUSE = checking.INDICES, checking.INDICES_CLAUSE
SPLIT_LIMIT = 12  # conjunctions up to this size are refuted one conjunct at a time
PROOF_CONFIG = Config()
# one more VM, host frame, handle and port: where an obligation the all-sizes reading
# could not settle is also tried (spec.prove.prove_target)
REFUTE_CONFIG = Config(n_vms=4, n_hframes=6, n_tx=3, n_ports=3)
# ... and the corners of the size domain (spec.state.size_domain), one size at its least:
# a bug of an empty table (a read of frame 0 where there are no host frames) lives there,
# where a model of quantified arrays is as hard to find as past the bound
CORNER_CONFIGS = (Config(n_vms=2), Config(n_vcpus=1), Config(n_gframes=0),
                  Config(n_hframes=0, n_hyp_frames=0, control_quota=0), Config(n_tx=0),
                  Config(n_ports=0), Config(n_devices=0))
REFUTE_CONFIGS = (REFUTE_CONFIG, *CORNER_CONFIGS)

__all__ = ["ProofResult", "initial_state_results", "prove_all", "prove_target", "targets"]


# Through Xen's event-channel ABI (spec.hypercalls.xen): per command, the call decoded
# from what a guest puts down -- registers and a fully symbolic struct in its memory --
# preserves every invariant, and the codec's two directions agree with each other.
XEN = "xen:"
XEN_CALL, XEN_CALL_CLAUSE = "xen_call_round_trip", (
    "a model call, put down as Xen's command and struct, decodes as that call")
XEN_ANSWER, XEN_ANSWER_CLAUSE = "xen_answer_round_trip", (
    "the model's result, answered as Xen (0/-errno, outputs in the struct), reads back as it")
# Through FF-A (spec.hypercalls.ffa): per send, the call decoded from a TX buffer of free
# bytes in the single-receiver, single-constituent layout, and the same three kinds of
# obligation.
FFA = "ffa:"
FFA_CALL, FFA_CALL_CLAUSE = "ffa_call_round_trip", (
    "a model send to one borrower, put down as its memory transaction descriptor, decodes "
    "as that call")
FFA_ANSWER, FFA_ANSWER_CLAUSE = "ffa_answer_round_trip", (
    "the model's result, answered as FF-A (FFA_SUCCESS handle in w2/w3, FFA_ERROR code), "
    "reads back as it")
CODEC_OBLIGATIONS = (XEN_CALL, XEN_ANSWER, FFA_CALL, FFA_ANSWER)


def targets() -> list[str]:
    """Every transition the proofs cover: each ABI row, each event, unknown ids, each Xen
    event-channel command and each FF-A send."""
    return ([row.name for row in abi.TABLE] + [e.name for e in abi.EVENTS] + [UNKNOWN]
            + [XEN + row for row in xen.COMMANDS] + [FFA + row for row in ffa.KIND_OF_ROW])


@attrs.frozen
class _Setup:
    s: State
    caller: Caller
    regs: dict[str, Any]
    args: tuple[Any, ...]
    row: abi.Row | None
    event: abi.Event | None
    assumptions: list[Any]
    call_args: tuple[Any, ...] = ()  # the row's arguments as decoded (where it decodes)
    mem: tuple[Any, ...] | None = None  # through a codec: the guest memory it reads
    codec: str = ""  # through a codec: XEN or FFA
    every_size: bool = False  # the all-sizes reading: sizes free, tables arrays


def _setup(target: str, cfg: Config, conv: str, tag: str = "", every_size: bool = False
           ) -> _Setup:
    if every_size:
        s, domain = symbolic.unbounded(cfg, f"s{tag}")
        # an invariant with no quantified reading (a count) is not assumed: a proof from
        # fewer hypotheses is a proof from all of them
        stated = [_stated(i, s) for i in inv_mod.INVARIANTS]
        inv = [domain, *(_b(h) for h in stated if h is not None)]
    else:
        s = symbolic.fresh(initial(cfg), f"s{tag}")
        inv = [_b(i.holds(s)) for i in inv_mod.INVARIANTS]
    caller = Caller(z3.BitVec(f"caller_vm{tag}", 64), z3.BitVec(f"caller_vcpu{tag}", 64))
    regs = {r: z3.BitVec(f"{r}{tag}", 64) for r in codec.registers(conv)}
    fid = z3.Extract(31, 0, regs[abi.CONVENTIONS[conv]["id"]])
    if target.startswith(XEN):
        return attrs.evolve(_xen_setup(target[len(XEN):], s, inv, caller, conv, tag),
                            every_size=every_size)
    if target.startswith(FFA):
        return attrs.evolve(_ffa_setup(target[len(FFA):], s, inv, caller, tag),
                            every_size=every_size)
    if target in abi.BY_NAME:
        row = abi.BY_NAME[target]
        # what codec.decode hands the handler on every path where the call decodes (on
        # the others the result is an error, about which a postcondition says nothing)
        call_args = tuple(logic.bits(regs[r], 0, a.width)
                          for a, r in zip(row.args, abi.CONVENTIONS[conv]["args"], strict=False))
        # the row's id, with or without the SVE hint bit (SMCCC 1.3: a hinted call is the
        # row's call from 1.3 on, an unknown id before), so both readings are proved
        return _Setup(s, caller, regs, (), row, None,
                      [*inv, fid & ~abi.SVE_HINT == row.function_id],
                      call_args, every_size=every_size)
    if target == UNKNOWN:
        known = [fid & ~abi.SVE_HINT != row.function_id for row in abi.TABLE]
        return _Setup(s, caller, regs, (), None, None, [*inv, *known], every_size=every_size)
    event = abi.EVENT_BY_NAME[target]
    args = tuple(z3.BitVec(f"{a.name}{tag}", 64) for a in event.args)
    return _Setup(s, caller, regs, args, None, event, inv, every_size=every_size)


def _stated(inv: inv_mod.Invariant, s: State) -> Any:
    """The invariant on ``s``, or None where it has no reading on a state of every size."""
    try:
        return inv.holds(s)
    except logic.Unbounded:
        return None


def _xen_setup(row: str, s: State, inv: list[Any], caller: Caller, conv: str, tag: str
               ) -> _Setup:
    """Xen's registers (hypercall number, command, pointer) as free words constrained to
    event_channel_op and the command, and the struct as free bytes."""
    c = xen.COMMANDS[row]
    nr, cmd, ptr = xen.GUEST_REGS[conv]
    regs = {r: z3.BitVec(f"{r}{tag}", 64) for r in (nr, cmd, ptr)}
    mem = tuple(z3.BitVec(f"struct[{i}]{tag}", 8) for i in range(c.size))
    return _Setup(s, caller, regs, (), abi.BY_NAME[row], None,
                  [*inv, regs[nr] == xen.HYPERCALL_EVENT_CHANNEL_OP,
                   z3.Extract(31, 0, regs[cmd]) == int(c.op)], mem=mem, codec=XEN)


def _ffa_setup(row: str, s: State, inv: list[Any], caller: Caller, tag: str) -> _Setup:
    """FF-A's registers x0..x4 as free words, x0 the send's function id (SMC64), and the
    TX buffer as free bytes."""
    regs = {f"x{i}": z3.BitVec(f"x{i}{tag}", 64) for i in range(5)}
    fid = ffa.FUNCTIONS[ffa.FUNCTION_OF_KIND[ffa.KIND_OF_ROW[row]] + "_64"]
    mem = tuple(z3.BitVec(f"tx[{i}]{tag}", 8) for i in range(ffa.ONE_LENGTH))
    return _Setup(s, caller, regs, (), abi.BY_NAME[row], None,
                  [*inv, z3.Extract(31, 0, regs["x0"]) == fid], mem=mem, codec=FFA)


def _decode(setup: _Setup, conv: str, mem: Any = None, caller_vm: Any = None
            ) -> codec.Call | codec.DecodeError:
    """The call the setup's registers (and guest memory: ``setup.mem``, or ``mem`` with a
    counterexample's bytes) ask for."""
    mem = setup.mem if mem is None else mem
    if setup.codec == XEN:
        return xen.decode_call(setup.regs, conv, mem)
    if setup.codec == FFA:
        assert setup.row is not None
        return ffa.decode_one(setup.regs, mem, ffa.KIND_OF_ROW[setup.row.name],
                              setup.caller.vm if caller_vm is None else caller_vm)
    return codec.decode(setup.regs, conv)


def _outside(model: z3.ModelRef, accesses: list[tuple[Any, tuple[logic.Access, ...]]]
             ) -> list[str]:
    """Where the path the model takes used a table slot that does not exist."""
    return sorted({a.where for cond, log in accesses
                   if z3.is_true(model.eval(cond, model_completion=True))
                   for a in log if z3.is_false(model.eval(_b(a.inside), model_completion=True))})


def _quantified(x: Any) -> bool:
    """The formula holds a quantifier (the all-sizes reading of a rule)."""
    todo, seen = [x], set()
    while todo:
        t = todo.pop()
        if z3.is_quantifier(t):
            return True
        if t.get_id() in seen:
            continue
        seen.add(t.get_id())
        todo.extend(t.children())
    return False


def _b(x: Any) -> Any:
    return x if logic.is_sym(x) else z3.BoolVal(bool(x))


def _run(setup: _Setup, conv: str, s: State | None = None
         ) -> Callable[[], tuple[State, Any, tuple[Any, ...]]]:
    """The transition as one run: ``(state, result, index conditions)`` -- the last the
    in-range conditions of the table accesses it made (spec.logic.index_log)."""
    pre = s if s is not None else setup.s

    def run() -> tuple[State, Any, tuple[Any, ...]]:
        with logic.index_log() as log:
            if setup.event is not None:
                out: tuple[State, Any] = (machine.event(pre, setup.event.name, *setup.args),
                                          None)
            else:
                out = machine.apply(pre, setup.caller, _decode(setup, conv))
        return (*out, tuple(log))
    return run


def _explore(setup: _Setup, conv: str, s: State | None = None,
             assumptions: list[Any] | None = None
             ) -> tuple[list[symbolic.Path], list[tuple[Any, tuple[Any, ...]]]]:
    """The paths of the transition (values ``(state, result)``) and, per path, the
    in-range conditions of its table accesses."""
    if assumptions is None:
        assumptions = setup.assumptions
    if setup.every_size:
        # For every size, the quantified invariants would make each feasibility check a
        # hard query: paths are pruned by the rest (sizes, function id), and a path the
        # invariants rule out is proved by its obligations' hypotheses.
        assumptions = [a for a in assumptions if not _quantified(a)]
    raw = symbolic.explore(_run(setup, conv, s), assumptions,
                           timeout_ms=EXPLORE_TIMEOUT_MS if setup.every_size else None)
    return ([symbolic.Path(p.condition, p.value[:2]) for p in raw],
            [(p.condition, p.value[2]) for p in raw])


def prove_target(target: str, cfg: Config = PROOF_CONFIG, conv: str = "arm64",
                 cex_dir: str | None = None, only: set[str] | None = None,
                 every_size: bool = True, refute: bool = True) -> list[ProofResult]:
    """All obligations of one transition (or those named in ``only``).

    First for every size at once (``every_size``): the same spec code run on a state
    whose sizes are free words and whose tables are arrays (spec.symbolic.unbounded), the
    invariants read as quantifiers.  An obligation proved there is done (``bounded`` is
    False); so is one refuted there whose counterexample, made concrete at the smallest
    sizes found, replays on the concrete spec from a state satisfying every invariant.
    Calls through a codec (``xen:``, ``ffa:``) and the noninterference obligations (a
    second state of the same free sizes) are run there too.  The rest -- rules with no
    quantified reading (a count), anything the solver does not settle -- are proved for
    ``cfg``'s sizes, as the cross-check of all of them is (``every_size=False``); with
    ``refute``, those the all-sizes reading left open are also tried on a larger model
    and at the corners of the size domain (the all-sizes solver rarely refutes: a model
    of quantified arrays is hard to find).

    Per-obligation times are the Z3 check plus an even share of the path exploration;
    for one the all-sizes pass could not settle, plus that attempt.
    """
    done: list[ProofResult] = []
    tried: dict[str, float] = {}  # the obligations tried for every size, and the seconds
    # spent on those it left open
    if every_size:
        done = _prove(target, cfg, conv, cex_dir, only, {}, every_size=True, tried=tried)
    # The obligations settled for every size get only their vacuity check at the bounded
    # sizes: hypotheses satisfiable there are satisfiable for every size (the bounded
    # model is one of them), a query the quantified reading makes hard.
    witnessed = {r.invariant: True for r in done}
    rest = [attrs.evolve(r, seconds=r.seconds + tried.get(r.invariant, 0.0))
            for r in _prove(target, cfg, conv, cex_dir, only, witnessed, every_size=False)]
    # Those the all-sizes reading could not settle (a counterexample it could not build)
    # are also tried on a larger model and at the corners of the size domain: a bug that
    # needs a fourth VM, a sixth frame or no frames at all still fails there, with a
    # counterexample that replays.
    unsettled = {r.invariant for r in rest if r.status == "proved"} & tried.keys()
    refuted: dict[str, ProofResult] = {}
    for other in REFUTE_CONFIGS if refute and cfg == PROOF_CONFIG else ():
        if not unsettled - refuted.keys():
            break
        refuted |= {r.invariant: attrs.evolve(r, detail=f"refuted at sizes {other.sizes()}")
                    for r in _prove(target, other, conv, cex_dir, unsettled - refuted.keys(),
                                    {}, every_size=False)
                    if r.status == "failed"}
    rest = [refuted.get(r.invariant, r) for r in rest]
    return [*(r if witnessed[r.invariant] or r.status != "proved" else attrs.evolve(
        r, status="vacuous", detail="its hypotheses contradict one another") for r in done),
        *rest]


EVERY_SIZE_TIMEOUT_MS = 6_000  # a query over every size the solver has not settled by
# then is left to the bounded proof
EXPLORE_TIMEOUT_MS = 2_000  # a branch (a quantified guard) not decided by then: both sides


def _prove(target: str, cfg: Config, conv: str, cex_dir: str | None,
           only: set[str] | None, skip: dict[str, bool], every_size: bool,
           tried: dict[str, float] | None = None) -> list[ProofResult]:
    """The obligations of ``target`` (those in ``only``), for every size or for ``cfg``'s;
    for every size, only those it settles.  Those in ``skip`` are only checked for
    vacuity (``skip[name]``: whether their hypotheses are satisfiable)."""
    start = time.perf_counter()
    setup = _setup(target, cfg, conv, every_size=every_size)
    try:
        paths, accesses = _explore(setup, conv)
    except (TypeError, z3.Z3Exception, symbolic.PathExplosion):
        if every_size:  # spec code with no reading for every size (a loop over a size,
            return []   # a count: logic.Unbounded; a tuple times a size): the bounded proof
        raise
    hypotheses: dict[int, bool] = {}  # which hypothesis sets were found satisfiable
    explore_s = time.perf_counter() - start
    results: list[ProofResult] = []

    def check(kind: str, name: str, clause: str, goals: Iterable[tuple[Any, Any]],
              extra: Iterable[Any] = (), split: bool = True,
              describe: Callable[[z3.ModelRef], dict[str, Any]] | None = None) -> None:
        """Prove ``condition -> holds`` for each (condition, holds) pair.

        With ``split``, each top-level conjunct of ``holds`` is refuted in its own small
        query: several times faster than one query over the whole conjunction, and just as
        sound.  Not so where the condition is the heavy part (the two-state obligations:
        a second sound state), which each query would have to solve again.
        """
        if only is not None and name not in only:
            return
        try:
            goals = list(goals)
        except (TypeError, z3.Z3Exception):
            if every_size:  # the rule has no reading for every size: the bounded proof
                return
            raise
        if name in skip:
            skip[name] = _satisfiable(hypotheses, [*setup.assumptions, *extra],
                                      [c for c, _ in goals])
            return
        t0 = time.perf_counter()
        if tried is not None:
            tried[name] = 0.0
        model, answer = None, z3.unsat
        for cond, holds in goals:
            post = z3.simplify(_b(holds))
            parts = post.children() if split and z3.is_and(post) else [post]
            if len(parts) > SPLIT_LIMIT:  # many small conjuncts: one query is cheaper
                parts = [post]
            for part in parts:
                if z3.is_true(part):
                    continue
                solver = _solver(setup)
                solver.add(*setup.assumptions, *extra, _b(cond), z3.Not(part))
                answer = solver.check()
                if answer == z3.sat and every_size:
                    answer, model = _smallest(solver, setup.s.cfg)
                    if answer == z3.sat:
                        break
                if answer != z3.unsat:
                    model = solver.model() if answer == z3.sat else None
                    break
            if answer != z3.unsat:
                break
        status = "proved" if answer == z3.unsat else "failed" if model is not None else "unknown"
        detail = ""
        cex = None
        if every_size and status != "proved":
            cex = None if model is None else _counterexample(setup, model, cfg, conv, kind, name)
            if cex is None or not _replays(cex, name):
                # unsettled, or no concrete witness: the bounded proof decides
                if tried is not None:
                    tried[name] = time.perf_counter() - t0
                return
            detail = f"refuted at sizes {cex['config']}"
        if status == "proved" and not every_size and not _satisfiable(
                hypotheses, [*setup.assumptions, *extra], [c for c, _ in goals]):
            # proved only because nothing satisfies what it assumes: it says nothing
            status, detail = "vacuous", "its hypotheses contradict one another"
        if model is not None:
            cex = cex or _counterexample(setup, model, cfg, conv, kind, name)
            if describe is not None:
                cex.update(describe(model))
            if cex_dir:
                _write_case(cex_dir, cex)
        results.append(ProofResult("hypervisor", name, target, clause, status,
                                   time.perf_counter() - t0 + explore_s / 20, len(paths), cex,
                                   detail, bounded=not every_size))

    check.only = only  # type: ignore[attr-defined]
    # A path that returns the very pre-state object cannot break a state invariant that
    # the pre-state satisfies by assumption; only the other paths need a solver.
    moved = [p for p in paths if p.value[0] is not setup.s]
    with symbolic.strict():
        check("index", INDICES, INDICES_CLAUSE,
              [(cond, z3.And(*[_b(a.inside) for a in log])) for cond, log in accesses if log],
              describe=lambda model: {"accesses": _outside(model, accesses)})
        if setup.codec:
            _codec_checks(setup, paths, moved, conv, check)
        else:
            _all_checks(setup, paths, moved, cfg, conv, check)
    return results


def _solver(setup: _Setup) -> z3.Solver:
    """Bit-vectors alone for a bounded model; with arrays and quantifiers, and a time
    limit, for every size."""
    if not setup.every_size:
        return z3.SolverFor("QF_BV")
    solver = z3.Solver()
    solver.set("timeout", EVERY_SIZE_TIMEOUT_MS)
    return solver


SMALL_SIZES = (4, 8, MAX_SIZE)


def _smallest(solver: z3.Solver, cfg: Config) -> tuple[Any, Any]:
    """The refutation again with every size at most 4, then 8: a counterexample of small
    sizes where there is one (a model of every size may pick thousands of frames)."""
    for cap in SMALL_SIZES:
        solver.push()
        solver.add(*(z3.ULE(v, cap) for v in cfg.sizes().values()))
        answer = solver.check()
        if answer == z3.sat:
            model = solver.model()
            solver.pop()
            return answer, model
        solver.pop()
    return z3.unknown, None


def _replays(case: dict[str, Any], name: str) -> bool:
    """The counterexample is real: its pre-state satisfies every invariant concretely and
    its step breaks ``name`` on the concrete spec."""
    from spec import replay

    cfg = Config(**case["config"])
    pre = state_from_json(cfg, case["pre_state"])
    if checking.check_state(pre):
        return False
    return name in {v.name for v in replay.run_case(case)}


def _satisfiable(cache: dict[int, bool], assumed: list[Any], conditions: list[Any]) -> bool:
    """Whether some state and call satisfy ``assumed`` and reach one of the goals'
    ``conditions`` (issue 15: each obligation's hypotheses satisfiable together); for an
    obligation without goals (no path moves the state), ``assumed`` alone.  Many
    obligations of one call share their hypotheses: each set is solved once."""
    reach = z3.Or(*[_b(c) for c in conditions]) if conditions else z3.BoolVal(True)
    formula = z3.And(*[_b(a) for a in assumed], reach)
    key = formula.hash()
    if key not in cache:
        solver = z3.SolverFor("QF_BV")
        solver.add(formula)
        cache[key] = solver.check() != z3.unsat  # unknown: not shown vacuous
    return cache[key]


def _codec_checks(setup: _Setup, paths: list[symbolic.Path], moved: list[symbolic.Path],
                  conv: str, check: Callable[..., None]) -> None:
    """Through a codec: every invariant, and both round trips.  The answer's round trip is
    over every result the model gives from a sound state (a free word would claim results
    no call returns); the call's over every argument within the row's widths (for FF-A:
    a send to one borrower other than the caller, with rights FF-A can carry)."""
    assert setup.row is not None and setup.mem is not None
    row, mem = setup.row.name, setup.mem
    _invariant_checks(setup, moved, check)
    answer, call = (XEN_ANSWER, XEN_CALL) if setup.codec == XEN else (FFA_ANSWER, FFA_CALL)
    reads_back: Callable[[Any], Any] = (
        (lambda ret: xen.answer_reads_back(row, ret, mem)) if setup.codec == XEN
        else (lambda ret: ffa.answer_reads_back(row, ret)))
    check("codec", answer, XEN_ANSWER_CLAUSE if answer == XEN_ANSWER else FFA_ANSWER_CLAUSE,
          [(p.condition, reads_back(p.value[1])) for p in paths],
          describe=lambda model: {"result": [_value(model, p.value[1]) for p in paths
                                             if z3.is_true(model.eval(p.condition, True))]})
    if not only_wants(check, call):
        return
    args = tuple(z3.ZeroExt(logic.WORD - a.width, z3.BitVec(f"arg.{a.name}", a.width))
                 for a in setup.row.args)
    extra: list[Any] = []
    if setup.codec == XEN:
        ptr = setup.regs[xen.GUEST_REGS[conv][2]]
        trips = symbolic.explore(lambda: xen.call_reads_back(row, args, conv, ptr))
    else:
        base, count, _, perm = args
        vm, me = z3.BitVec("arg.borrower", logic.WORD), setup.caller.vm
        kind = ffa.KIND_OF_ROW[row]
        extra = [count != 0, z3.ULT(vm, 16), z3.ULT(me, 16), vm != me,
                 perm == ffa.DONATE_PERM if kind == "donate" else z3.Or(perm == 1, perm == 3)]
        args = (base, count, vm, perm)
        trips = symbolic.explore(lambda: ffa.one_reads_back(kind, me, base, count, vm, perm),
                                 extra)
    check("codec", call, XEN_CALL_CLAUSE if call == XEN_CALL else FFA_CALL_CLAUSE,
          [(p.condition, p.value) for p in trips], extra,
          describe=lambda model: {"args": [_value(model, a) for a in args]})


def only_wants(check: Callable[..., None], name: str) -> bool:
    only = getattr(check, "only", None)
    return only is None or name in only


def _invariant_checks(setup: _Setup, moved: list[symbolic.Path], check: Callable[..., None]
                      ) -> None:
    for inv in inv_mod.INVARIANTS:  # goals lazily: a rule may have no all-sizes reading
        # A path that leaves every table the rule reads as it was leaves the rule as it
        # was: nothing to prove there (for every size, also for a rule with no reading).
        changed = [p for p in moved if not _untouched(setup.s, p.value[0], _reads(inv.name))]
        check("invariant", inv.name, inv.clause,
              ((p.condition, inv.holds(p.value[0])) for p in changed))


@functools.cache
def _reads(name: str) -> frozenset[str]:
    """The state tables invariant ``name`` reads: the fields whose variables its formula on
    a fresh symbolic state of the bounded sizes mentions (its text reads the same tables at
    every size: a guard hides no read from a formula, which keeps both branches)."""
    inv = next(i for i in inv_mod.INVARIANTS if i.name == name)
    term = _b(inv.holds(symbolic.fresh(initial(PROOF_CONFIG), "r")))
    return frozenset(str(v).split(".", 1)[1].split("[", 1)[0] for v in z3util.get_vars(term))


def _untouched(pre: State, post: State, fields: frozenset[str]) -> bool:
    """``post`` holds ``pre``'s very tables in ``fields`` (the same objects or arrays)."""
    for f in fields:
        a, b = getattr(pre, f), getattr(post, f)
        if a is b:
            continue
        if isinstance(a, logic.Table) and isinstance(b, logic.Table) and a.arr.eq(b.arr):
            continue
        return False
    return True


def _all_checks(setup: _Setup, paths: list[symbolic.Path], moved: list[symbolic.Path],
                cfg: Config, conv: str, check: Callable[..., None]) -> None:
    _invariant_checks(setup, moved, check)
    for prop in inv_mod.STEP_PROPERTIES:
        if prop.rows is not None and (setup.row is None or setup.row.name not in prop.rows):
            continue  # a postcondition of other calls: nothing to prove here
        check("step", prop.name, prop.clause,
              ((p.condition, prop.holds(setup.s, setup.caller, setup.row, p.value[0],
                                        p.value[1], setup.call_args)) for p in paths))
    if setup.row is not None:
        _noninterference(setup, paths, conv, check)


OBSERVER = "observer"  # VM b's id in the unchanged obligation: b watches a call by a
CONFIDENTIAL = "noninterference_confidential"  # names no other VM, the caller shares nothing
CONFIDENTIAL_NAMED = "noninterference_confidential_named"  # every other call


@attrs.frozen
class _TwoStates:
    """The confidentiality obligations' setting: attacker ``a`` (the caller) and a second
    pre-state ``s2`` that agrees with ``setup.s`` except in the other VMs' secrets.

    With ``setup.assumptions``, ``call`` constrains the call (enough to explore the second
    run), ``apart`` is the case of :data:`CONFIDENTIAL`, ``related`` that of
    :data:`CONFIDENTIAL_NAMED`, and ``states`` constrains the two states in both: ``s2``
    sound, and the two the same to ``a``."""

    a: Any
    s2: State
    call: list[Any]
    apart: list[Any]
    related: list[Any]
    states: list[Any]

    def hypotheses(self, name: str = CONFIDENTIAL) -> list[Any]:
        case = self.apart if name == CONFIDENTIAL else self.related
        return [*self.call, *case, *self.states]


def _observer() -> Any:
    return z3.BitVec(OBSERVER, 64)


def _independent_state(s: State) -> State:
    """A pre-state of ``s``'s shape whose every word and flag is a fresh variable, as
    :func:`symbolic.fresh` builds the first one, but with fixed names (``t.<field>[<i>]``,
    for every size ``t.<field>``) so that a counterexample can evaluate it again."""
    if not all(type(v) is int for v in s.cfg.sizes().values()):
        return symbolic.unbounded_like(s, "t")
    s0 = initial(s.cfg)

    def var(name: str, x: Any) -> Any:
        return z3.Bool(name) if isinstance(x, bool) else z3.BitVec(name, logic.WORD)

    return s0.evolve(**{
        f.name: tuple(var(f"t.{f.name}[{i}]", x) for i, x in enumerate(getattr(s0, f.name)))
        for f in attrs.fields(State) if f.metadata.get("symbolic", True) is not False
    })


def _named(setup: _Setup, conv: str, b: Any) -> Any:
    assert setup.row is not None
    arg_regs = tuple(setup.regs[r] for r in abi.CONVENTIONS[conv]["args"])
    return _b(noninterference.names(setup.row, arg_regs, b))


def _named_all(setup: _Setup, conv: str) -> Callable[[Any], Any]:
    """VM id -> whether the call's arguments name it."""
    return lambda v: _named(setup, conv, v)


def _second_state(setup: _Setup, conv: str) -> State:
    """``setup.s`` with every other VM's secrets taken from an independent state.  A pure
    function of the setup, so a counterexample rebuilds the very terms the proof used."""
    a, s = setup.caller.vm, setup.s
    secret = noninterference.secret_slots(s, a, _named_all(setup, conv))
    return noninterference.with_private(s, _independent_state(s), secret)


def _two_states(setup: _Setup, conv: str) -> _TwoStates:
    """Self-composition without aliasing: ``s2`` takes every secret slot from an
    independent state, so the two runs really can differ in them.

    (``symbolic.fresh(setup.s, ...)`` would not do: ``fresh`` replaces only plain values,
    and ``setup.s`` already holds terms, so the "second" state would be the first one.)

    One second state serves both cases: where the call names no other VM and ``a`` shares
    nothing, :func:`~spec.noninterference.secret_slots` exempts nothing."""
    a, s = setup.caller.vm, setup.s
    s2 = _second_state(setup, conv)
    named = _named_all(setup, conv)
    others = logic.exists(s.cfg.n_vms, lambda v: z3.And(a != v, named(v)))
    apart = [z3.Not(_b(others)), z3.Not(_b(noninterference.shares_any(s, a)))]
    related = [z3.Not(z3.And(*apart))]
    stated = [_stated(i, s2) for i in inv_mod.INVARIANTS]
    states = [_b(noninterference.low_equivalent(s, s2, a)),
              *(_b(h) for h in stated if h is not None)]
    call = [_b(noninterference.is_attacker(s, a))]
    return _TwoStates(a, s2, call, apart, related, states)


def _noninterference(setup: _Setup, paths: list[symbolic.Path], conv: str,
                     check: Callable[..., None]) -> None:
    def wanted(name: str) -> bool:
        return only_wants(check, name)

    a, b = setup.caller.vm, _observer()
    s = setup.s
    if wanted("noninterference_unchanged"):
        hyp = [logic.ult(b, s.cfg.n_vms), b != a, a != CONTROL,
               z3.Not(_named(setup, conv, b)), z3.Not(_b(noninterference.shared(s, a, b)))]
        check("noninterference", "noninterference_unchanged", "two VMs sharing nothing",
              [(p.condition, noninterference.same_view(p.value[0], s, b)) for p in paths], hyp)
    cases = [n for n in (CONFIDENTIAL, CONFIDENTIAL_NAMED) if wanted(n)]
    if not cases:
        return
    two = _two_states(setup, conv)
    # The call hypotheses suffice to prune the second run's paths (its merge covers every
    # input they allow); the others would only make exploring slower.
    paths2, _ = _explore(setup, conv, two.s2, [*setup.assumptions, *two.call])
    m1, m2 = symbolic.merge(paths), symbolic.merge(paths2)
    agree = z3.And(_b(symbolic.same(m1[1], m2[1])),
                   _b(noninterference.same_view(m1[0], m2[0], a)))
    clauses = {CONFIDENTIAL: "a call naming no other VM, by a VM sharing nothing",
               CONFIDENTIAL_NAMED: "a call naming other VMs or by a VM that shares"}
    for name in cases:
        check("noninterference", name, clauses[name],
              _per_attacker(two, name, agree, s.cfg), split=False)


def _per_attacker(two: _TwoStates, name: str, agree: Any, cfg: Config
                  ) -> list[tuple[Any, Any]]:
    """One goal per attacker ``a = v``, its hypotheses and claim specialised to ``v``: with
    ``a`` a constant every secret mask but the exemptions is a constant, so the second
    state's slots simplify to plain variables and most of its invariants to the first
    state's own (several times faster than one query).  Ids that cannot be an attacker
    (the control VM) simplify to false and need no goal.  For every size, one goal."""
    if type(cfg.n_vms) is not int:
        return [(z3.And(*two.hypotheses(name)), agree)]
    goals = []
    for v in range(cfg.n_vms):
        fix = (two.a, z3.BitVecVal(v, logic.WORD))
        case = [z3.simplify(z3.substitute(h, fix)) for h in two.hypotheses(name)]
        if any(z3.is_false(h) for h in case):
            continue
        goals.append((z3.And(two.a == v, *case), z3.substitute(agree, fix)))
    return goals


# --- counterexamples ---------------------------------------------------------------------------
def _value(model: z3.ModelRef, x: Any) -> Any:
    if logic.is_sym(x):
        v = model.eval(x, model_completion=True)
        return z3.is_true(v) if isinstance(v, z3.BoolRef) else v.as_long()
    return x


def concretize(model: z3.ModelRef, s: State) -> State:
    """The model's state; of a state of every size, at the sizes the model gives."""
    if all(type(v) is int for v in s.cfg.sizes().values()):
        return s.evolve(**{
            f.name: tuple(_value(model, x) for x in getattr(s, f.name))
            for f in attrs.fields(State) if f.name != "cfg"
        })
    cfg = attrs.evolve(s.cfg, **{k: _value(model, v) for k, v in s.cfg.sizes().items()})

    def cells(t: logic.Table) -> tuple[Any, ...]:
        rows = _value(model, t.rows)
        if t.width is None:
            return tuple(_value(model, z3.Select(t.arr, z3.BitVecVal(i, logic.WORD)))
                         for i in range(rows))
        width = _value(model, t.width)
        return tuple(_value(model, z3.Select(t.arr, z3.BitVecVal(r, logic.WORD),
                                             z3.BitVecVal(c, logic.WORD)))
                     for r in range(rows) for c in range(width))

    return s.evolve(cfg=cfg, **{f.name: cells(getattr(s, f.name))
                                for f in attrs.fields(State) if f.name != "cfg"})


def state_to_json(s: State) -> dict[str, Any]:
    return {f.name: list(getattr(s, f.name)) for f in attrs.fields(State) if f.name != "cfg"}


def state_from_json(cfg: Config, data: dict[str, Any]) -> State:
    return State(cfg=cfg, **{k: tuple(v) for k, v in data.items()})


def _counterexample(setup: _Setup, model: z3.ModelRef, cfg: Config, conv: str, kind: str,
                    name: str) -> dict[str, Any]:
    pre = concretize(model, setup.s)
    case: dict[str, Any] = {
        "kind": kind, "property": name, "config": pre.cfg.sizes(), "conv": conv,
        "pre_state": state_to_json(pre),
    }
    if setup.event is not None:
        case["event"] = setup.event.name
        case["args"] = [_value(model, a) for a in setup.args]
    else:
        case["caller"] = [_value(model, setup.caller.vm), _value(model, setup.caller.vcpu)]
        case["regs"] = {r: _value(model, v) for r, v in setup.regs.items()}
        if setup.mem is not None:
            case["struct"] = [_value(model, b) for b in setup.mem]
            decoded = _decode(attrs.evolve(setup, regs=case["regs"]), conv,
                              bytes(case["struct"]), case["caller"][0])
        else:
            decoded = codec.decode(case["regs"], conv)
        case["call"] = (decoded.row.name if isinstance(decoded, codec.Call)
                        else f"decode error: {decoded.reason}")
        if name == "noninterference_unchanged":
            case["observer"] = _value(model, _observer())
        if name in (CONFIDENTIAL, CONFIDENTIAL_NAMED):
            case["second_pre_state"] = state_to_json(concretize(model, _second_state(
                setup, conv)))
    return case


def _write_case(directory: str, case: dict[str, Any]) -> None:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    name = f"{case['property']}--{case.get('call', case.get('event'))}.json".replace(" ", "_")
    (path / name.replace(":", "")).write_text(json.dumps(case, indent=1, sort_keys=True))


def initial_state_results(cfg: Config = PROOF_CONFIG, every_size: bool = True
                          ) -> list[ProofResult]:
    """The initial state satisfies every invariant, so no proof is vacuous: for every size
    (``every_size``: the boot state of free sizes, spec.state.initial), and where a rule
    has no reading there or the solver does not settle it, for ``cfg``'s sizes."""
    out = []
    s0 = initial(cfg)
    if every_size:
        scfg, domain = symbolic.every_size(cfg, "boot")
        every = initial(scfg)
    for inv in inv_mod.INVARIANTS:
        t0 = time.perf_counter()
        if every_size:
            stated = _stated(inv, every)
            if stated is not None:
                solver = z3.Solver()
                solver.set("timeout", EVERY_SIZE_TIMEOUT_MS)
                solver.add(domain, z3.Not(_b(stated)))
                answer = solver.check()
                if answer != z3.unknown:
                    detail = "" if answer == z3.unsat else "fails at sizes " + str({
                        k: _value(solver.model(), v) for k, v in scfg.sizes().items()})
                    out.append(ProofResult(
                        "hypervisor", inv.name, "INITIAL_STATE", inv.clause,
                        "proved" if answer == z3.unsat else "failed",
                        time.perf_counter() - t0, detail=detail, bounded=False))
                    continue
        ok = bool(inv.holds(s0))
        out.append(ProofResult("hypervisor", inv.name, "INITIAL_STATE", inv.clause,
                               "proved" if ok else "failed", time.perf_counter() - t0))
    return out


# --- the whole suite -------------------------------------------------------------------------
def _job(kind: str, key: Any, cex_dir: str | None, every_size: bool = True,
         larger: bool = False) -> list[ProofResult]:
    if kind == "hv":
        return prove_target(key, cex_dir=cex_dir, every_size=every_size, refute=larger)
    from spec.virtio import proofs

    return [proofs.obligations()[key].run()]


def _jobs() -> list[tuple[str, Any]]:
    jobs: list[tuple[str, Any]] = [("hv", t) for t in targets()]
    try:
        from spec.virtio import proofs
    except ModuleNotFoundError as exc:  # VIRTIO proofs not present in this build
        if exc.name != "spec.virtio.proofs":
            raise
    else:
        jobs += [("virtio", i) for i in range(len(proofs.obligations()))]
    # Longest first keeps both cores busy until the end.
    heavy = {"VM_DESTROY", "MEM_RETRIEVE", "MEM_SHARE", "MEM_LEND", "MEM_DONATE",
             *(FFA + row for row in ffa.KIND_OF_ROW)}
    jobs.sort(key=lambda j: (j[0] != "hv", j[1] not in heavy))
    return jobs


def _worker_signals() -> None:
    """A worker dies of SIGTERM at once and leaves SIGINT to the parent: it must not
    inherit the parent's handlers (conformance.cli.run_guard), which would only run
    between two solver calls and then let the worker go on with the queue after the
    parent is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def prove_all(jobs: int = 2, cex_dir: str | None = None,
              progress: Callable[[list[ProofResult]], None] | None = None,
              every_size: bool = True, larger: bool = False) -> list[ProofResult]:
    """Every obligation, spread over ``jobs`` processes (1 = in this process); with
    ``every_size`` False, all of them for the bounded model only (the cross-check).

    With ``larger``, what the all-sizes pass leaves open is also tried on the larger model
    and at the corners of the size domain (:func:`prove_target`'s ``refute``): it can
    only turn a bounded proof into a refutation at other sizes, and for a sound spec it is
    the costliest part of the run (the memory calls' open obligations proved again at 4
    VMs and 6 frames, and at each corner), so the suite runs it on request."""
    results = initial_state_results(every_size=every_size)
    work = _jobs()
    if jobs <= 1:
        for kind, key in work:
            batch = _job(kind, key, cex_dir, every_size, larger)
            results += batch
            if progress:
                progress(batch)
        return results
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_signals)
    try:
        futures = [pool.submit(_job, kind, key, cex_dir, every_size, larger)
                   for kind, key in work]
        for fut in futures:
            try:
                batch = fut.result()
            except Exception as exc:  # a crashed worker is an error result, never a pass
                batch = [ProofResult("hypervisor", "worker", "?", "", "error", 0.0,
                                     detail=f"{type(exc).__name__}: {exc}")]
            results += batch
            if progress:
                progress(batch)
    except BaseException:
        # interrupted (Ctrl-C, SIGTERM, a time limit): drop the queued work and end the
        # workers now instead of waiting for every obligation still running
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    pool.shutdown()
    return results
