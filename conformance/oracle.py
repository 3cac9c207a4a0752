"""The differential oracle: the same calls to the target and to the spec, every observable
compared after every step.

:class:`Differ` runs one operation (a hypercall or an event) on both sides and compares the
result registers and every probe (access bits per (vm, gfn), DMA access per (device, gfn),
pending interrupts per (vm, vcpu)); on the spec side it also checks every invariant and
step property with :mod:`spec.checking`.  A difference raises :class:`ConformanceFailure`,
naming the requirement and clause broken, expected vs observed, and the trace so far.

:func:`make_oracle` wraps the Differ in a Hypothesis state machine that runs the moves of
:mod:`spec.campaign` (same aimed and garbage choices) and the oracle's own in seeded
batch programs; :func:`run_oracle` runs it, shrinks a mismatch to a minimal trace with
:func:`shrink` (ddmin) and returns an :class:`OracleOutcome`.
"""

from __future__ import annotations

import copy
import functools
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import hypothesis
from hypothesis import HealthCheck, Phase, reject, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from conformance import drivers, requirements
from conformance.names import Names
from conformance.reach import Reach
from conformance.target import (
    Observation,
    SpecObserver,
    Target,
    TargetCrashed,
    TargetError,
    codec_abis,
    observe,
    target_profile,
    target_rows,
)
from spec import campaign, checking, choices, invariants, machine
from spec import profile as spec_profile
from spec.hypercalls import abi, codec, xen
from spec.state import Config, State, initial
from spec.transitions import Caller

__all__ = ["ConformanceFailure", "Differ", "OracleOutcome", "SpecDefect", "TargetAbort",
           "make_oracle", "run_oracle"]

SIM_CONFIG = campaign.SIM_CONFIG
MASK64 = (1 << 64) - 1
DECODE_CLAUSE = "SMCCC DEN0028 2.5 function ids; pvspec ABI reserved bits (spec/hypercalls/abi.py)"
CRASH_CLAUSE = "pvspec ABI: the decoder is total; every register file yields a result"


class ConformanceFailure(AssertionError):
    """The target disagreed with the spec (or crashed) on the last operation of ``trace``."""

    def __init__(self, kind: str, requirement: str, clause: str, expected: str,
                 observed: str, trace: list[dict[str, Any]], related: tuple[str, ...] = ()
                 ) -> None:
        self.kind, self.requirement, self.clause = kind, requirement, clause
        self.expected, self.observed = expected, observed
        self.trace = list(trace)
        self.related = related
        super().__init__(f"{requirement} [{clause}]: expected {expected}, observed {observed} "
                         f"after {len(trace)} steps")


class TargetAbort(BaseException):  # a BaseException: Hypothesis must not shrink it
    """The target broke the protocol or hung: stop at once, with the trace so far."""

    def __init__(self, error: TargetError, trace: list[dict[str, Any]]) -> None:
        super().__init__(error.reason)
        self.error = error
        self.trace = list(trace)


class SpecDefect(Exception):
    """The spec itself raised on an input (a defect of the spec, not of the target)."""


def _signed(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


_CH_STATES = ("closed", "unbound", "interdomain")


def describe_result(row: abi.Row | None, x: int) -> str:
    v = _signed(x)
    if v >= 0 and row is not None and row.name == "EVTCHN_STATUS":
        return _describe_status(v)
    if v >= 0:
        return str(v)
    space = abi.ERROR_SPACES[row.space] if row else abi.HV_ERRORS
    names = [n for n, c in space.items() if c == v]
    return f"{v} ({names[0]})" if names else str(v)


def _describe_status(v: int) -> str:
    """EVTCHN_STATUS's fields (abi.py), as words."""
    state = v & 0xFF
    parts = [_CH_STATES[state] if state < len(_CH_STATES) else f"state {state}"]
    parts += [name for name, b in (("pending", 8), ("masked", 9)) if v >> b & 1]
    if v >> 10 & 0x3F:
        parts.append(f"vcpu {v >> 10 & 0x3F}")
    rvm, rport = v >> 16 & 0xFFFF, v >> 32
    if rvm != 0xFFFF:
        parts.append(f"remote vm {rvm}")
    if rport != 0xFFFF:
        parts.append(f"remote port {rport}")
    return f"{v:#x} ({', '.join(parts)})"


def _perm(p: int) -> str:
    return "".join(c for c, b in (("R", 1), ("W", 2), ("X", 4)) if p & b) or "none"


def describe_call(row: abi.Row | None, regs: dict[str, int], conv: str) -> str:
    c = abi.CONVENTIONS[conv]
    if row is None:
        return f"undecodable({', '.join(f'{k}={v:#x}' for k, v in regs.items())})"
    args = [f"{a.name}={regs.get(r, 0):#x}" for a, r in zip(row.args, c["args"], strict=False)]
    return f"{row.name}({', '.join(args)})"


def _arg_index(row: abi.Row, name: str) -> int:
    return next(i for i, a in enumerate(row.args) if a.name == name)


def _first_result(got: dict[str, int]) -> str:
    return "x0" if "x0" in got else "rax"


_ABI_REQ = {r.name: f"abi:{r.name}" for r in abi.TABLE}  # row -> its requirement

# Calls whose arguments name a handle or a port, and calls whose result is one (or, for
# EVTCHN_STATUS, carries a remote port): what the renaming translates.
_NAMED_ARGS = {r.name: tuple((i, a) for i, a in enumerate(r.args)
                             if a.kind in ("handle", "port")) for r in abi.TABLE}
_NAMED_RESULTS = {r.name: r.returns for r in abi.TABLE if r.returns in ("handle", "port")}
_NAMED_RESULTS["EVTCHN_STATUS"] = "status"


# One operation as the Differ records it: ("hypercall", vm, vcpu, conv, regs, row, ret,
# sent-or-None) or
# ("event", name, args); turned into the JSON-ready trace dicts only when asked (Differ.ops).
Record = tuple[Any, ...]


@attrs.frozen
class _Joint:
    """A call whose answer only a combination of open profile choices explains: what
    :meth:`Differ._choose` needs to judge it again under narrower choices."""

    s: State
    caller: Caller
    decoded: Any
    regs: dict[str, int]
    conv: str
    vm: int
    got: dict[str, int]
    dims: tuple[str, ...]


@attrs.define
class Differ:
    """Runs operations on a target and on the spec side by side, comparing everything."""

    target: Target
    cfg: Config = SIM_CONFIG
    invariants: str = "step"  # "step": after every state change; "end": on demand; "off"
    s: State = attrs.field(init=False)
    steps: int = attrs.field(init=False, default=0)
    observed_kinds: frozenset[str] = attrs.field(init=False, default=frozenset())
    _records: list[Record] = attrs.field(init=False, factory=list)
    _ops: list[dict[str, Any]] = attrs.field(init=False, factory=list)
    _observer: SpecObserver = attrs.field(init=False, factory=SpecObserver)
    _pipelined: bool = attrs.field(init=False, default=False)
    _observe: Callable[[], Observation] = attrs.field(init=False)
    _callers: dict[tuple[int, int], Caller] = attrs.field(init=False, factory=dict)
    # the requirements this Differ evaluated on the target (what a report may credit)
    judged: set[str] = attrs.field(factory=set, kw_only=True)
    reach: Reach | None = attrs.field(default=None, kw_only=True)  # what the run reached
    # invariants and step properties not yet judged -> the state fields they read (None:
    # a step property that reads no field, judged by any compared state change)
    _state_reqs: dict[str, frozenset[str] | None] = attrs.field(init=False, factory=dict)
    _watched: frozenset[str] = attrs.field(init=False, default=frozenset())
    # the target's choices (spec/choices.py): its names, renamed; its own power-on steps
    profile: dict[str, str] = attrs.field(init=False, factory=dict)
    names: Names = attrs.field(init=False)
    _renaming: bool = attrs.field(init=False, default=False)
    _async: bool = attrs.field(init=False, default=False)
    # the firmware choices (spec/profile.py) still open: dimension -> the allowed values
    # every answer so far is consistent with; the model runs the first of each
    candidates: dict[str, tuple[Any, ...]] = attrs.field(init=False, factory=dict)
    # answers only a combination of open choices explains (see _choose): every later
    # narrowing keeps them explained, so the target stays held to the pair it showed
    joint: list[_Joint] = attrs.field(init=False, factory=list)
    _open_rows: frozenset[str] = attrs.field(init=False, default=frozenset())
    _image: bool = attrs.field(init=False, default=False)
    # known deviations seen (id -> how often): shared by the Differs of one run
    deviations: dict[str, int] = attrs.field(factory=dict, kw_only=True)
    ambiguous: int = attrs.field(init=False, default=0)  # concurrent calls, several orders
    # vCPUs whose next start is not judged (a known deviation on the CPU_ON that started it)
    _start_unknown: set[tuple[int, int]] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self.profile = target_profile(self.target)
        self._image = self.profile.get("memory") == "image" or not any(
            abi.BY_NAME[n].abi == "pvspec" for n in target_rows(self.profile))
        codec_spoken = codec_abis(self.profile)
        for dim in spec_profile.DIMENSIONS:
            declared = self.profile.get(dim.name)
            if declared is not None:
                self.candidates[dim.name] = (spec_profile.parse_value(dim.name, declared),)
            elif dim.abi and dim.abi not in codec_spoken:  # the target's ABI defines it
                self.candidates[dim.name] = dim.values[:1]
            else:
                self.candidates[dim.name] = dim.values
        self._settle()
        self.s = self._initial()
        self.names = Names(self.cfg.n_vms, self.cfg.n_ports)
        self._renaming = "any-free" in (self.profile.get("port_allocation"),
                                        self.profile.get("handle_allocation"))
        self._async = self.profile.get("power_on") == "async"
        caps = self.target.capabilities
        self.observed_kinds = frozenset(
            k for k, cap in (("access", "probe_access"), ("dma", "probe_dma"),
                             ("irq", "probe_irq")) if cap in caps or "observe" in caps)
        # an invariant or step property is judged on the target when a state change was
        # compared through every view in which a violation of it would show
        views = self.observed_kinds | {"result"}
        spoken = target_rows(self.profile)
        reads, refuses = _fields_read(self.cfg, spoken)
        self._state_reqs = {  # (those an earlier Differ of this run judged are judged)
            r.id: reads.get(r.id) or None for r in requirements.hypervisor()
            if r.kind in ("invariant", "step") and r.id not in self.judged
            and requirements.views_of(r.id) <= views
            # vacuous here: an invariant that reads nothing in this configuration (no
            # devices), a step property that only refuses results of calls the target
            # does not speak (firmware results on a Xen target)
            and (reads.get(r.id) if r.kind == "invariant" else
                 reads.get(r.id) or not refuses[r.id] or refuses[r.id] & spoken)}
        self._watch()
        # a target that can, gets each operation and the observation after it in one
        # exchange (ExecTarget: one pipe round trip instead of two)
        self._pipelined = bool(self.observed_kinds) and "observe" in caps and all(
            hasattr(self.target, m) for m in ("hypercall_observe", "event_observe"))
        fast = getattr(self.target, "observe", None)
        self._observe = fast if fast is not None and "observe" in caps else (
            lambda: observe(self.target, self.cfg))

    def _watch(self) -> None:
        """The fields a state change must touch to judge a requirement not yet judged
        (every field while one is judged by any change)."""
        reads = list(self._state_reqs.values())
        self._watched = frozenset().union(*(r if r is not None else checking.STATE_FIELDS
                                            for r in reads))

    @property
    def ops(self) -> list[dict[str, Any]]:
        """The trace so far, one JSON-ready dict per operation (built when first asked)."""
        for rec in self._records[len(self._ops):]:
            self._ops.append(_op_dict(rec))
        return self._ops

    def adopt(self, candidates: dict[str, tuple[Any, ...]], joint: list[_Joint]) -> None:
        """Share ``candidates`` and ``joint`` (what earlier runs on the same target
        learned): one implementation, one profile, across every example of a run."""
        self.candidates, self.joint = candidates, joint
        self._settle()
        self.s = self.s.evolve(cfg=self.cfg)

    def learned(self) -> dict[str, str]:
        """The profile as learned so far: each dimension's remaining allowed values."""
        spoken = target_rows(self.profile)
        return {name: "|".join(spec_profile.render_value(v) for v in values)
                for name, values in self.candidates.items()
                if spec_profile.BY_NAME[name].rows & spoken}

    def _settle(self) -> None:
        """The model's profile: each dimension's first remaining candidate."""
        p = self.cfg.profile
        for name, values in self.candidates.items():
            p = spec_profile.with_value(p, name, values[0])
        if p != self.cfg.profile:
            self.cfg = attrs.evolve(self.cfg, profile=p)
        self._open_rows = frozenset(
            r for d in spec_profile.DIMENSIONS if len(self.candidates[d.name]) > 1
            for r in d.rows)

    def _initial(self) -> State:
        """The boot state; a target whose guests boot from an image (``memory: image``,
        a firmware target: nothing populates memory through its ABI) starts with the
        control VM's guest frames mapped, as a loaded image is."""
        s = initial(self.cfg)
        if self.profile.get("boot") == "smp":  # a booted SMP control domain
            return campaign.with_vcpus_running(s)
        return campaign.with_image(s) if self._image else s

    def reset(self) -> None:
        self.s = self._initial()
        self._start_unknown = set()
        self._records = []
        self._ops = []
        self._guard(lambda: self.target.reset(self.cfg))
        self.names = self._new_names()

    def _new_names(self) -> Names:
        """A fresh renaming; a target with its own port space gives its pool of ports
        for the run (``port_pools()``: per VM, then the first port it never allocates)."""
        pools = getattr(self.target, "port_pools", None)
        if pools is None:
            return Names(self.cfg.n_vms, self.cfg.n_ports)
        per_vm, invalid_from = self._guard(pools)
        try:
            return Names(self.cfg.n_vms, self.cfg.n_ports, per_vm, invalid_from)
        except ValueError as exc:
            raise TargetAbort(TargetError(f"the target's port pool: {exc}", definite=True),
                              self.ops) from None

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise self._target_failed(exc) from None

    def _target_failed(self, exc: Exception) -> BaseException:
        """What to raise when the target raised ``exc``: a crash is the last call's
        failure; a broken protocol, a hang or a defect of the suite or target glue stops
        the run (not shrunk).  (The hot paths catch around the target call themselves,
        instead of paying for a closure and :meth:`_guard` every step.)"""
        if isinstance(exc, TargetCrashed):
            last = self._records[-1] if self._records else ()
            req = f"abi:{last[5].name}" if last and last[0] == "hypercall" and last[5] \
                else "abi:decode"
            return ConformanceFailure("crash", req, CRASH_CLAUSE, "a result",
                                      f"crash: {exc.reason}", self.ops)
        if isinstance(exc, TargetError):
            return TargetAbort(exc, self.ops)
        return TargetAbort(TargetError(f"{type(exc).__name__}: {exc}"), self.ops)

    def hypercall(self, vm: int, vcpu: int, regs: dict[str, int], conv: str = "arm64") -> int:
        """Run one call on both sides; the spec's registers name the spec's handles and
        ports, the target gets them under the renaming (:mod:`conformance.names`)."""
        # registers are 64 bits wide (a copy either way: the record keeps it)
        values = regs.values()
        if values and (min(values) < 0 or max(values) > MASK64):
            regs = {k: v & MASK64 for k, v in regs.items()}
        else:
            regs = dict(regs)
        decoded = machine.decode_regs(regs, conv)
        row = decoded.row  # None only for an unknown function id
        caller = self._callers.get((vm, vcpu)) or self._callers.setdefault(
            (vm, vcpu), Caller(vm, vcpu))  # (immutable: one per vCPU, not one per call)
        s2, ret, out = self._spec_step(self.s, caller, decoded, regs, conv)
        sent = self._rename(regs, conv, decoded, vm) if self._renaming else regs
        self._records.append(("hypercall", vm, vcpu, conv, regs, row, ret,
                              sent if sent is not regs else None))
        self.steps += 1
        seen: Observation | None = None
        try:
            if self._pipelined:
                got, seen = self.target.hypercall_observe(  # type: ignore[attr-defined]
                    vm, vcpu, sent, conv)
            else:
                got = self.target.hypercall(vm, vcpu, sent, conv)
        except Exception as exc:
            raise self._target_failed(exc) from None
        bad = self._judge_result(self.s, decoded, conv, vm, ret, out, got, vcpu)
        if row is not None and (row.name in self._open_rows or (
                decoded.hinted and spec_profile.HINTED in self._open_rows)):
            s2, ret, out, bad = self._choose(caller, decoded, regs, conv, vm, got,
                                             (s2, ret, out, bad))
            self._records[-1] = (*self._records[-1][:6], ret, self._records[-1][7])
        if bad is not None and self._async and choices.pending_vcpus(self.s):
            # the target may have powered a vCPU on by itself since CPU_ON (PSCI 5.6):
            # place that internal step here if, and only if, it explains the answer
            for started in self._starts(self.s):
                s2c, retc, outc = self._spec_step(started, caller, decoded, regs, conv)
                why = self._judge_result(started, decoded, conv, vm, retc, outc, got, vcpu)
                if why is None:
                    self.s, s2, ret, out, bad = started, s2c, retc, outc, None
                    self._records[-1] = (*self._records[-1][:6], ret, self._records[-1][7])
                    break
                if why.kind == "observation" and why.requirement == "abi:CPU_ON":
                    # the answer needs the vCPU started, and it says it started elsewhere
                    # or with another context than CPU_ON gave: that is the failure, not
                    # the answer an unstarted vCPU would have got
                    bad = why
        if bad is not None:
            known = self._known(decoded, regs, ret, got)
            if known is None and self._async and choices.pending_vcpus(self.s):
                # a known deviation made by a vCPU the target started on its own time
                # (the call itself shows it running): judged from where it started
                for started in self._starts(self.s):
                    s2c, retc, _ = self._spec_step(started, caller, decoded, regs, conv)
                    known = self._known(decoded, regs, retc, got)
                    if known is not None:
                        self.s, ret = started, retc
                        break
            if known is None:
                raise bad
            # a deviation the target is known for (docs/findings.md): counted, not fatal;
            # the call's requirement is not credited, and the run goes on from the spec's
            # state (known deviations are on calls that change nothing)
            self._deviation_seen(known, decoded, vm)
            self._advance(caller, None, self.s, ret, seen)
            return ret
        is_call = type(decoded) is codec.Call
        if self._renaming and is_call and not ret >> 63:
            self._bind(decoded, vm, ret, got)
        if self.reach is not None:
            self.reach.call(self.s, vm, vcpu, decoded, regs, conv, ret)
        judged = self.judged  # the result agreed: this row (or the decoder) was judged
        if row is not None:
            judged.add(_ABI_REQ[row.name])
        if not is_call:
            judged.add("abi:decode")
        if isinstance(decoded, codec.Call):  # (is_call, as mypy can see it)
            self._advance(caller, row, s2, ret, seen, decoded.args)
        else:
            self._advance(caller, None, s2, ret, seen)
        return ret

    def concurrent(self, calls: list[tuple[int, int, dict[str, int], str]]) -> list[int]:
        """Calls made at once from different vCPUs.  The answers must be explained by some
        order of the calls (a linearization: Jepsen's and Knossos' rule), each call placed,
        where the answers need it, after power-ons the target did on its own time.  The spec
        moves to that order's final state.  When several orders explain the answers with
        different final states the first is kept and the ambiguity counted
        (:attr:`ambiguous`); the firmware workload sends only calls whose answers do not
        depend on a profile choice still open, so none is narrowed here.  A target without
        ``hypercalls_at_once`` gets the calls one by one, in the order given."""
        prepared = []
        for vm, vcpu, regs, conv in calls:
            regs = {k: v & MASK64 for k, v in regs.items()}
            prepared.append((vm, vcpu, regs, conv, machine.decode_regs(regs, conv)))
        at_once = getattr(self.target, "hypercalls_at_once", None)
        group = self.steps
        # every call names ports and handles as they were before the group (the renaming)
        sent_all = [self._rename(regs, conv, decoded, vm) if self._renaming else regs
                    for vm, vcpu, regs, conv, decoded in prepared]
        for (vm, vcpu, regs, conv, decoded), sent in zip(prepared, sent_all, strict=True):
            self._records.append(("hypercall", vm, vcpu, conv, regs, decoded.row, 0,
                                  sent if sent is not regs else None, group))
            self.steps += 1
        first = len(self._records) - len(prepared)
        if at_once is None:
            def one_by_one() -> list[dict[str, int]]:
                return [self.target.hypercall(c[0], c[1], sent, c[3])
                        for c, sent in zip(prepared, sent_all, strict=True)]

            got_all = self._guard(one_by_one)
        else:
            got_all = self._guard(lambda: at_once(
                [(c[0], c[1], sent, c[3]) for c, sent in zip(prepared, sent_all, strict=True)]))
        explained = []
        base_names = self.names
        for order in itertools.permutations(range(len(prepared))):
            # names a call of this order hands out are bound before the next is judged
            s, steps, devs = self.s, [], []
            self.names = copy.deepcopy(base_names) if self._renaming else base_names
            for i in order:
                vm, vcpu, regs, conv, decoded = prepared[i]
                step = self._explain(s, Caller(vm, vcpu), decoded, regs, conv, vm, got_all[i])
                if step is None:
                    _, ret, _ = self._spec_step(s, Caller(vm, vcpu), decoded, regs, conv)
                    known = self._known(decoded, regs, ret, got_all[i])
                    if known is None:
                        break
                    devs.append((known, decoded, vm))
                    step = (s, s, ret, False)
                elif self._renaming and isinstance(decoded, codec.Call) and not step[2] >> 63:
                    self._bind(decoded, vm, step[2], got_all[i])
                steps.append((i, *step))
                s = step[1]
            else:
                explained.append((steps, devs, self.names))
        self.names = explained[0][2] if explained else base_names
        if not explained:
            vm, vcpu, regs, conv, decoded = prepared[0]
            s2, ret, out = self._spec_step(self.s, Caller(vm, vcpu), decoded, regs, conv)
            bad = self._judge_result(self.s, decoded, conv, vm, ret, out, got_all[0])
            row = decoded.row
            raise ConformanceFailure(
                "result", f"abi:{row.name}" if row else "abi:decode",
                f"{row.clause if row else DECODE_CLAUSE}; calls made at once must be "
                f"explained by some order of them (linearizability)",
                "answers some order of the calls made at once explains",
                "; ".join(f"vCPU {c[1]}: {describe_call(c[4].row, c[2], c[3])} -> "
                          f"{describe_result(c[4].row, g.get(_first_result(g), -1))}"
                          if 'returned' not in g else f"vCPU {c[1]}: did not return"
                          for c, g in zip(prepared, got_all, strict=True))
                + (f" (in the order given: {bad.observed})" if bad else ""), self.ops)
        steps, devs, _ = explained[0]
        finals = {id(e): e[0][-1][2] for e in explained}
        if any(f != steps[-1][2] for f in finals.values()):
            self.ambiguous += 1
        if self.reach is not None:
            f = self.reach.features
            f[f"calls made at once: {len(prepared)}"] += 1
            f["calls at once, " + ("one order explains them" if len(explained) == 1 else
                                   "several orders explain them")] += 1
        for known, decoded, vm in devs:
            self._deviation_seen(known, decoded, vm)
        rets = [0] * len(prepared)
        for i, s_used, s2, ret, credited in steps:
            vm, vcpu, regs, conv, decoded = prepared[i]
            rets[i] = ret
            self._records[first + i] = (*self._records[first + i][:6], ret,
                                        *self._records[first + i][7:])
            self.s = s_used
            if credited:
                self.judged.add(f"abi:{decoded.row.name}" if decoded.row else "abi:decode")
            if self.reach is not None:
                self.reach.call(self.s, vm, vcpu, decoded, regs, conv, ret)
            if credited and isinstance(decoded, codec.Call):
                self._advance(Caller(vm, vcpu), decoded.row, s2, ret, args=decoded.args)
            else:
                self._advance(Caller(vm, vcpu), None, s2, ret)
        return rets

    def _explain(self, s: State, caller: Caller, decoded: Any, regs: dict[str, int], conv: str,
                 vm: int, got: dict[str, int]) -> tuple[State, State, int, bool] | None:
        """(state used, state after, result, True) if the spec explains ``got`` in ``s``,
        or after some pending vCPUs started on their own (async power-on); else None."""
        s2, ret, out = self._spec_step(s, caller, decoded, regs, conv)
        if self._judge_result(s, decoded, conv, vm, ret, out, got, caller.vcpu) is None:
            return s, s2, ret, True
        if self._async and choices.pending_vcpus(s):
            for started in self._starts(s):
                s2c, retc, outc = self._spec_step(started, caller, decoded, regs, conv)
                if self._judge_result(started, decoded, conv, vm, retc, outc, got,
                                      caller.vcpu) is None:
                    return started, s2c, retc, True
        return None

    def _spec_step(self, s: State, caller: Caller, decoded: Any, regs: dict[str, int],
                   conv: str) -> tuple[State, int, dict[str, int]]:
        try:  # machine.step without decoding twice: apply(decode(regs)), then encode
            s2, ret = machine.apply(s, caller, decoded)
            return s2, ret, codec.encode_result(ret, conv)
        except Exception as exc:
            raise SpecDefect(f"spec raised {type(exc).__name__}: {exc} on "
                             f"vm{caller.vm}.{caller.vcpu} "
                             f"{describe_call(decoded.row, regs, conv)}") from exc

    def _deviation_seen(self, known: str, decoded: Any, vm: int) -> None:
        """Count a known deviation.  After one on a CPU_ON the spec no longer knows with
        which entry and context the target vCPU will start (the implementation did what
        the spec does not), so that vCPU's next start is not judged."""
        self.deviations[known] = self.deviations.get(known, 0) + 1
        row = decoded.row
        if row is not None and row.handler == "cpu_on":
            self._start_unknown.add((vm, int(decoded.args[0])))

    def _known(self, decoded: Any, regs: dict[str, int], ret: int, got: dict[str, int]
               ) -> str | None:
        """The id of the target's known deviation that explains this answer, if any."""
        for dev in getattr(self.target, "known_deviations", ()):
            if decoded.row is not None and decoded.row.name in dev.rows and \
                    dev.matches(decoded, regs, ret, got):
                return str(dev.id)
        return None

    def _choose(self, caller: Caller, decoded: Any, regs: dict[str, int], conv: str,
                vm: int, got: dict[str, int], first: tuple[State, int, dict[str, int], Any]
                ) -> tuple[State, int, dict[str, int], Any]:
        """Narrow the open profile dimensions this call depends on to the values that
        explain the target's answer (spec/profile.py); an implementation keeps its
        choices, so a value ruled out once stays out.  Returns the step under a profile
        that explains it (or the first failure when no allowed profile does).

        Each value is first tried with the other dimensions as they stand (cheap, and
        enough in the common case); a value that fails alone is ruled out only if no
        combination of the other open values explains the answer either.  One answer
        may have two explanations (SMCCC_ARCH_FEATURES(SMCCC_ARCH_FEATURES) answering
        NOT_SUPPORTED is SMCCC 1.0, or a later version reading the self-query as not
        allowed): one dimension at a time would pin whichever was tried first.  Such an
        answer is kept (:attr:`joint`) and every later narrowing keeps it explained, so
        a target that showed one of the two is held to it."""
        names = {decoded.row.name, *((spec_profile.HINTED,) if decoded.hinted else ())}
        dims = tuple(d.name for d in spec_profile.DIMENSIONS
                     if names & d.rows and len(self.candidates[d.name]) > 1)
        if not dims:
            return first
        here = _Joint(self.s, caller, decoded, regs, conv, vm, got, dims)
        found: list[tuple[spec_profile.Profile, State, int, dict[str, int]]] = []
        keep = {n: [v for v in self.candidates[n] if self._explains(here, {n: v}, found)]
                for n in dims}
        alone = {n: len(v) for n, v in keep.items()}
        for n in dims:
            keep[n] += [v for v in self.candidates[n] if v not in keep[n]
                        and self._jointly(here, n, v, found)]
        if not found:
            return first  # no allowed profile explains it (else another rule may)
        before = dict(self.candidates)
        for n in dims:
            self.candidates[n] = tuple(v for v in self.candidates[n] if v in keep[n])
        if any(len(keep[n]) > alone[n] for n in dims) and not any(
                (j.decoded, j.regs, j.got, j.dims, j.s) == (here.decoded, regs, got, dims, self.s)
                for j in self.joint):
            self.joint.append(here)
        if self.candidates != before:
            self._keep_joint()
        self._settle()
        # the model goes on under a profile that explains this answer and agrees with
        # what is left (the first remaining candidates need not explain it)
        fits = [f for f in found if all(
            spec_profile.get(f[0], n) in self.candidates[n] for n in dims)]
        if not fits:
            return first
        p, s2, ret, out = fits[0]
        settled = self.cfg.profile  # the other dimensions: their first candidates
        for n in dims:
            settled = spec_profile.with_value(settled, n, spec_profile.get(p, n))
        self.cfg = attrs.evolve(self.cfg, profile=settled)
        self.s = self.s.evolve(cfg=self.cfg)
        return (s2.evolve(cfg=self.cfg), ret, out, None)

    def _explains(self, j: _Joint, values: Mapping[str, Any],
                  found: list[tuple[spec_profile.Profile, State, int, dict[str, int]]] | None
                  = None) -> bool:
        """Whether the spec, with the profile's dimensions set to ``values``, gives the
        answer ``j`` recorded (appended to ``found`` when it does)."""
        p = self.cfg.profile
        for n, value in values.items():
            p = spec_profile.with_value(p, n, value)
        s = j.s.evolve(cfg=attrs.evolve(self.cfg, profile=p))
        s2, ret, out = self._spec_step(s, j.caller, j.decoded, j.regs, j.conv)
        if self._judge_result(s, j.decoded, j.conv, j.vm, ret, out, j.got,
                              j.caller.vcpu) is not None:
            return False
        if found is not None:
            found.append((p, s2, ret, out))
        return True

    def _jointly(self, j: _Joint, n: str, v: Any,
                 found: list[tuple[spec_profile.Profile, State, int, dict[str, int]]] | None
                 = None) -> bool:
        """Whether dimension ``n`` at ``v``, with some combination of the other open
        values ``j`` depends on, explains ``j``'s answer."""
        others = [m for m in j.dims if m != n]
        return any(self._explains(j, {n: v, **dict(zip(others, combo, strict=True))}, found)
                   for combo in itertools.product(*(self.candidates[m] for m in others)))

    def _keep_joint(self) -> None:
        """Rule out every value that no longer explains an answer only a combination of
        choices explained (until nothing changes)."""
        changed = True
        while changed:
            changed = False
            for j in self.joint:
                for n in j.dims:
                    kept = tuple(v for v in self.candidates[n] if self._jointly(j, n, v))
                    if kept and kept != self.candidates[n]:
                        self.candidates[n], changed = kept, True

    def _starts(self, s: State) -> list[State]:
        """``s`` after some non-empty set of its ON_PENDING vCPUs started, smallest sets
        first (the oracle places an internal step only where an answer needs it)."""
        pending = choices.pending_vcpus(s)[:6]
        out = []
        for size in range(1, len(pending) + 1):
            for group in itertools.combinations(pending, size):
                t = s
                for vm, vcpu in group:
                    t = machine.event(t, "VCPU_START", vm, vcpu)
                out.append(t)
        return out

    def _judge_result(self, s: State, decoded: Any, conv: str, vm: int, ret: int,
                      out: dict[str, int], got: dict[str, int], vcpu: int | None = None
                      ) -> ConformanceFailure | None:
        """The target's result registers against the spec's, in state ``s``: a name the
        target chose is judged by its allowed set, a name it reports by the renaming."""
        row = decoded.row
        if got == out and not self._renaming and (row is None or not row.never_returns or
                                                  "no_return" not in self.target.capabilities):
            return None  # every result register as the spec's: nothing below refuses that
        result_regs = abi.CONVENTIONS[conv]["result"]
        first = result_regs[0]
        if "raised" in got:  # the call trapped into the guest instead of returning
            return ConformanceFailure(
                "result", f"abi:{row.name}" if row else "abi:decode",
                f"{row.clause if row else DECODE_CLAUSE}; SMCCC DEN0028: an unknown or "
                f"unimplemented function id returns NOT_SUPPORTED (-1) in w0",
                f"{first} = {describe_result(row, ret)}",
                f"a synchronous exception in the guest (ESR_EL1 = {got['raised']:#x})",
                self.ops)
        if got.get("returned") == 0:  # the call did not return to its caller
            if row is not None and row.no_return and isinstance(decoded, codec.Call) \
                    and ret == 0:
                return None
            return ConformanceFailure(
                "result", f"abi:{row.name}" if row else "abi:decode",
                row.clause if row else DECODE_CLAUSE,
                f"{first} = {describe_result(row, ret)}", "the call did not return",
                self.ops)
        if "errors" in got:  # a codec's failure: the model errors its error code may be
            return self._judge_errors(row, decoded, ret, got)
        if row is not None and row.never_returns and ret == 0 and \
                isinstance(decoded, codec.Call) and "no_return" in self.target.capabilities:
            # a target that can show a call not returning must not return from this one
            return ConformanceFailure(
                "result", f"abi:{row.name}", row.clause, "the call does not return",
                f"it returned {first} = {describe_result(row, got.get(first, 0))}", self.ops)
        if self._renaming and isinstance(decoded, codec.Call) and not ret >> 63:
            kind = _NAMED_RESULTS.get(row.name)
            if kind is not None and kind != "status" and \
                    self.profile.get(f"{kind}_allocation") != "lowest-free":
                name = got.get(first, -1)
                ok = name >= 0 and (
                    self.names.fresh_handle(s, name) if kind == "handle" else
                    self.names.fresh_port(s, vm, name))
                if not ok:
                    choice = choices.CHOICES[f"{kind}_allocation"]
                    seen = describe_result(row, name) if name >= 0 else "missing"
                    return ConformanceFailure(
                        "result", f"abi:{row.name}", f"{row.clause}; {choice.clause}",
                        f"{first} = a fresh {kind}: {choice.allowed}",
                        f"{first} = {seen}, which is not one", self.ops)
                out = {**out, first: name}  # the choice is the target's; the rest must agree
            elif kind == "status":
                out = {**out, first: self._status_to_target(s, out[first])}
        # the pvspec ABI zeroes the other result registers; PSCI and SMCCC calls define
        # only w0/x0 (the rest are unused by them, SMCCC DEN0028), as does an unknown id;
        # a target speaking another ABI through a codec shows x0's ``seen`` bits only
        visible = got.get("seen", MASK64)
        judged_regs = result_regs if row is not None and row.abi == "pvspec" \
            and isinstance(decoded, codec.Call) and "seen" not in got else result_regs[:1]
        for r in judged_regs:
            if got.get(r) != out[r] and (r != first or not isinstance(got.get(r), int)
                                         or (got[r] ^ out[r]) & visible):
                req = f"abi:{row.name}" if row else "abi:decode"
                clause = row.clause if row else DECODE_CLAUSE
                if isinstance(decoded, codec.DecodeError):
                    clause = f"{clause} ({decoded.reason})"
                seen_r = got.get(r)
                return ConformanceFailure(
                    "result", req, clause, f"{r} = {describe_result(row, out[r])}",
                    f"{r} = {describe_result(row, seen_r) if isinstance(seen_r, int) else seen_r}",
                    self.ops)
        if "start_entry" in got and vcpu is not None:
            return self._judge_start(s, vm, vcpu, got)
        return None

    def _judge_errors(self, row: abi.Row | None, decoded: Any, ret: int,
                      got: dict[str, int]) -> ConformanceFailure | None:
        """A target speaking another ABI through a codec (spec/hypercalls/xen.py) failed
        the call with an error code that stands for the model errors in ``got["errors"]``
        (bit n: code -n): the model must have failed with one of them."""
        code = -_signed(ret)
        if ret >> 63 and 0 < code < 64 and got["errors"] >> code & 1:
            return None
        req = f"abi:{row.name}" if row else "abi:decode"
        names = [n for n, v in abi.HV_ERRORS.items() if v < 0 and got["errors"] >> -v & 1]
        # the target's own error code, in its ABI's words: Xen's errno, FF-A's FFA_ERROR
        # -- or an answer the ABI does not have at all (conformance/codec_shim.py)
        if "ffa_w0" in got:
            observed = f"w0 = {got['ffa_w0']:#x}, neither FFA_SUCCESS nor FFA_ERROR"
        elif "xen_rc" in got:
            observed = f"event_channel_op returned {got['xen_rc']}, neither 0 nor -errno"
        else:
            said = f"FFA_ERROR {got['ffa_error']}" if "ffa_error" in got else \
                f"error {-got['errno']} (errno)" if got.get("errno") else "an error"
            observed = (f"{said}, which stands for "
                        f"{' or '.join(names) if names else 'no error this call has'}")
        return ConformanceFailure(
            "result", req, row.clause if row else DECODE_CLAUSE,
            f"x0 = {describe_result(row, ret)}", observed, self.ops)

    def _judge_start(self, s: State, vm: int, vcpu: int, got: dict[str, int]
                     ) -> ConformanceFailure | None:
        """Where the calling vCPU began running since it was last seen (a target that can
        show it reports ``start_entry`` / ``start_context``): the entry point and context
        id of the CPU_ON that started it, or of the power-down CPU_SUSPEND it resumed from
        (spec state ``vcpu_entry`` / ``vcpu_ctx``)."""
        if (vm, vcpu) in self._start_unknown:
            self._start_unknown.discard((vm, vcpu))
            return None
        i = s.vc(vm, vcpu)
        want = (s.vcpu_entry[i], s.vcpu_ctx[i])
        seen = (got["start_entry"], got.get("start_context"))
        if seen == want:
            return None
        for dev in getattr(self.target, "known_deviations", ()):
            if "START" in dev.rows and dev.matches(None, {"entry": want[0], "context": want[1]},
                                                   0, got):
                self.deviations[dev.id] = self.deviations.get(dev.id, 0) + 1
                return None
        return ConformanceFailure(
            "observation", "abi:CPU_ON", "PSCI DEN0022 5.1.4 (the core starts at "
            "entry_point_address with context_id in x0); 5.1.2 (a power-down resumes so)",
            f"vCPU {vcpu} starts at {want[0]:#x} with x0 = {want[1]:#x}",
            f"it started at {seen[0]:#x} with x0 = {seen[1]:#x}", self.ops)

    # --- the renaming ------------------------------------------------------------------------
    def _rename(self, regs: dict[str, int], conv: str, decoded: Any, vm: int
                ) -> dict[str, int]:
        """The registers the target gets: every handle and port field in its names."""
        if not isinstance(decoded, codec.Call):
            return regs
        row = decoded.row
        named = _NAMED_ARGS.get(row.name)
        if not named:
            return regs
        arg_regs = abi.CONVENTIONS[conv]["args"]
        sent = dict(regs)
        for i, arg in named:
            value = decoded.args[i]
            if arg.kind == "handle":
                new = self.names.handle(self.s, value)
            else:
                owner = vm if not arg.of else decoded.args[_arg_index(row, arg.of)]
                new = self.names.port(self.s, owner, value)
            if new != value:
                reg = arg_regs[i]
                mask = (1 << arg.width) - 1
                sent[reg] = (regs.get(reg, 0) & ~mask & MASK64) | new
        return sent if sent != regs else regs

    def _bind(self, decoded: Any, vm: int, ret: int, got: dict[str, int]) -> None:
        kind = _NAMED_RESULTS.get(decoded.row.name)
        if kind == "handle":
            self.names.bind_handle(ret, got[_first_result(got)])
        elif kind == "port":
            self.names.bind_port(vm, ret, got[_first_result(got)])

    def _status_to_target(self, s: State, value: int) -> int:
        """EVTCHN_STATUS's remote port field, in the remote VM's target numbering."""
        rvm, rport = (value >> 16) & 0xFFFF, (value >> 32) & 0xFFFF
        if rvm >= self.cfg.n_vms or rport >= self.cfg.n_ports:
            return value
        return (value & ~(0xFFFF << 32)) | (self.names.port(s, rvm, rport) << 32)

    def event(self, name: str, *args: int) -> None:
        s2 = machine.event(self.s, name, *args)
        self._records.append(("event", name, args))
        self.steps += 1
        seen: Observation | None = None
        try:
            if self._pipelined:
                seen = self.target.event_observe(name, *args)  # type: ignore[attr-defined]
            else:
                self.target.event(name, *args)
        except Exception as exc:
            raise self._target_failed(exc) from None
        self.judged.add(f"event:{name}")
        self._advance(Caller(0, 0), None, s2, None, seen)

    def _advance(self, caller: Caller, row: abi.Row | None, s2: State, ret: Any,
                 seen: Observation | None = None, args: tuple[int, ...] = ()) -> None:
        changed = s2 is not self.s
        if changed and self.invariants == "step":
            # every invariant, every step property and the call's functional
            # postcondition (spec.transitions.Post), which reads its arguments
            self._invariant_failure(checking.check_step(self.s, caller, row, s2, ret, args))
        elif self.invariants == "step" and row is not None and row.name in _POST_ROWS:
            # same state: the invariants hold still; the call's postcondition judges its
            # result (AFFINITY_INFO's answer, a standby's SUCCESS)
            self._invariant_failure(checking.check_posts(self.s, caller, row, s2, ret, args))
        touched = checking.fields_changed(self.s, s2, self._watched) \
            if changed and self._state_reqs else None
        self.s = s2
        if self.observed_kinds:
            if seen is None:
                try:
                    seen = self._observe()
                except Exception as exc:
                    raise self._target_failed(exc) from None
            self.compare(seen)
        done = []
        if touched:
            # a state change, compared through every view, judges what reads what changed
            done = [r for r, reads in self._state_reqs.items()
                    if r not in _STEP_ROWS and (reads is None or reads & touched)]
        if row is not None and ret is not None and not ret >> 63 and self._state_reqs:
            # a functional postcondition is judged by a success of one of its own calls
            # that the target matched, result and every view (state changed or not), as
            # a state change judges the other step properties
            done += [r for r in self._state_reqs if row.name in _STEP_ROWS.get(r, ())]
        if done:
            self.judged.update(done)
            for r in done:
                del self._state_reqs[r]
            self._watch()

    def check_state(self) -> None:
        """Every invariant on the spec's current state (the ``end`` mode)."""
        if self.invariants != "off":
            self._invariant_failure(checking.check_state(self.s))

    def _invariant_failure(self, bad: list[checking.Violation]) -> None:
        if bad:
            v = bad[0]
            raise ConformanceFailure("spec-invariant", f"{v.kind}:{v.name}", v.clause,
                                     "the spec keeps its invariants",
                                     f"the spec broke {', '.join(b.name for b in bad)}",
                                     self.ops)

    def compare(self, got: Observation) -> None:
        want = self._observer(self.s)  # == spec_observation(self.s), kept up to date
        kinds = self.observed_kinds
        if (got.access == want.access or "access" not in kinds) and (
                got.dma == want.dma or "dma" not in kinds) and (
                got.irq == want.irq or "irq" not in kinds):
            return
        cfg = self.cfg
        G, C = cfg.n_gframes, cfg.n_vcpus
        last = self._records[-1] if self._records else ()
        row = last[5].name if last and last[0] == "hypercall" and last[5] else None
        step = [f"abi:{row}"] if row else []
        if "access" in self.observed_kinds and got.access != want.access:
            i = _first_diff(got.access, want.access)
            e, o = want.access[i], got.access[i] if i < len(got.access) else None
            if o is None:
                inv = "well_formed"
            elif o & ~e and e:
                inv = "write_within_grant"
            elif o & ~e:
                inv = "mappings_authorized"
            else:
                inv = "lent_frames_unreachable_by_owner" if o else step[0] if step else \
                    "mappings_authorized"
            self._observed_fail(inv, f"access(vm={i // G}, gfn={i % G})", _perm(e),
                                _perm(o) if o is not None else "missing", step)
        if "dma" in self.observed_kinds and got.dma != want.dma:
            i = _first_diff(got.dma, want.dma)
            e, o = want.dma[i], got.dma[i] if i < len(got.dma) else None
            self._observed_fail("devices_owned_by_live_vms",
                                f"dma_access(dev={i // G}, gfn={i % G})", _perm(e),
                                _perm(o) if o is not None else "missing", step)
        if "irq" in self.observed_kinds and got.irq != want.irq:
            i = _first_diff(got.irq, want.irq)
            e, o = want.irq[i], got.irq[i] if i < len(got.irq) else None
            extra = (o or 0) & ~e
            inv = ("send_reaches_only_peer" if extra & 1 else
                   "device_irqs_isolated" if extra else step[0] if step else "well_formed")
            self._observed_fail(inv, f"pending_irqs(vm={i // C}, vcpu={i % C})", f"{e:#x}",
                                f"{o:#x}" if o is not None else "missing", step)

    def _observed_fail(self, inv: str, what: str, e: str, o: str, step: list[str]) -> None:
        from spec import invariants

        if inv.startswith("abi:"):
            name = inv[4:]
            req, clause = inv, abi.BY_NAME[name].clause if name in abi.BY_NAME else ""
        else:
            known = invariants.BY_NAME.get(inv) or invariants.STEP_BY_NAME.get(inv)
            kind = "invariant" if inv in invariants.BY_NAME else "step"
            req, clause = f"{kind}:{inv}", known.clause if known else ""
        raise ConformanceFailure("observation", req, clause, f"{what} = {e}",
                                 f"{what} = {o}", self.ops, tuple(step))


# step requirements restricted to some calls (functional postconditions) -> those calls
_STEP_ROWS: dict[str, frozenset[str]] = {
    f"step:{p.name}": p.rows for p in invariants.STEP_PROPERTIES if p.rows is not None}
_POST_ROWS = frozenset().union(*_STEP_ROWS.values())


@functools.lru_cache(maxsize=16)
def _fields_read(cfg: Config, rows: frozenset[str]
                 ) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """What each invariant and step property reads, for this size and these calls, and
    which calls' results each step property can refuse."""
    spoken = tuple(abi.BY_NAME[n] for n in sorted(rows))
    s = initial(cfg)
    return checking.fields_read(s, (None, *spoken)), checking.results_constrained(s, abi.TABLE)


def _op_dict(rec: Record) -> dict[str, Any]:
    """A recorded operation as a trace entry (what trace files and reports hold).  When the
    target got other names than the spec's, ``sent`` holds the registers it got."""
    if rec[0] == "event":
        return {"op": "event", "name": rec[1], "args": list(rec[2])}
    _, vm, vcpu, conv, regs, row, ret, sent, *group = rec
    out = {"op": "hypercall", "vm": vm, "vcpu": vcpu, "conv": conv,
           "regs": {k: hex(v) for k, v in regs.items()},
           "row": row.name if row else None,
           "call": describe_call(row, regs, conv),
           "expect": describe_result(row, ret)}
    if sent is not None:
        out["sent"] = {k: hex(v) for k, v in sent.items()}
    if group:
        out["at_once"] = group[0]  # calls with the same number were made at once
    return out


def _first_diff(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


# --- the Hypothesis state machine -------------------------------------------------------------
@attrs.define
class OracleLog:
    examples: int = 0
    steps: int = 0
    judged: set[str] = attrs.field(factory=set)  # requirements evaluated, over all examples
    first_failure: ConformanceFailure | None = None  # as first seen, before any re-run
    reach: Reach = attrs.field(factory=Reach)
    spec_defects: list[str] = attrs.field(factory=list)
    deviations: dict[str, int] = attrs.field(factory=dict)  # known deviations seen
    # the firmware profile the target showed (spec/profile.py), shared by every example
    candidates: dict[str, tuple[Any, ...]] | None = None
    joint: list[_Joint] = attrs.field(factory=list)
    learned: Callable[[], dict[str, str]] | None = None


_WITH_ARGS = tuple(r for r in abi.TABLE if r.args)
PROGRAM_MOVES = 64  # moves per Hypothesis rule (see make_oracle)


def is_firmware(target: Target) -> bool:
    """A target that speaks no pvspec call: one guest's view of the firmware ABIs, driven
    by the firmware workload from a booted image (spec.campaign.FirmwareWorkload)."""
    return not any(abi.BY_NAME[n].abi == "pvspec" for n in target_rows(target_profile(target)))


def speaks_event_channels_only(target: Target) -> bool:
    """A target that speaks Xen's event-channel ABI and nothing else: one domain's
    calls, driven by the event-channel workload (spec.campaign.EventChannelWorkload)."""
    profile = target_profile(target)
    return "xen" in codec_abis(profile) and target_rows(profile) <= xen.rows()


def config_for(target: Target, cfg: Config) -> Config:
    """The model size a run uses: a firmware or event-channel target's by default."""
    if cfg != SIM_CONFIG:
        return cfg
    if is_firmware(target):
        return campaign.FIRMWARE_CONFIG
    return campaign.EVTCHN_CONFIG if speaks_event_channels_only(target) else cfg


def make_oracle(target: Target, cfg: Config = SIM_CONFIG, log: OracleLog | None = None,
                invariants: str = "end", program: int = PROGRAM_MOVES
                ) -> type[RuleBasedStateMachine]:
    """The campaign's moves as a state machine, every call sent to ``target`` as well and
    compared after it runs.

    Its one rule runs a *program*: ``program`` moves, each picked uniformly from the
    campaign's moves and the oracle's own, with every choice drawn from a
    :class:`~spec.campaign.RandomChooser` seeded by the rule's argument.  Hypothesis
    costs ~0.1 ms a rule and ~3 ms an example, several checked steps' worth, and ~50 us
    a draw; one draw per 64 moves amortises that without
    checking less: every call still goes through the Differ, compared (and, in ``step``
    mode, judged by every invariant) right after it runs.  Hypothesis' shrinker is not
    used by the oracle (a failure is shrunk by :func:`shrink`), so drawing the choices
    outside Hypothesis loses nothing; ``derandomize`` still makes a run reproducible.
    """
    log_: OracleLog = log if log is not None else OracleLog()
    events = "events" in target.capabilities
    own: dict[str, campaign.Move] = {}
    own_move = campaign.registrar(own)
    rows = target_rows(target_profile(target))
    firmware = is_firmware(target)
    evtchn = speaks_event_channels_only(target)
    cfg = config_for(target, cfg)
    base: type[campaign.Workload] = campaign.FirmwareWorkload if firmware else \
        campaign.EventChannelWorkload if evtchn else campaign.Workload

    class OracleWorkload(base):  # type: ignore[valid-type,misc]
        """The campaign's workload, every call and event sent through the Differ."""

        def __init__(self, differ: Differ) -> None:
            super().__init__(cfg, rows)
            self.differ = differ
            self.s = differ.s

        def _regs(self, vm: int, vcpu: int, regs: dict[str, int], conv: str) -> None:
            try:
                self._last_ret = self.differ.hypercall(vm, vcpu, regs, conv)
            except SpecDefect as exc:
                if len(log_.spec_defects) < 20:
                    log_.spec_defects.append(str(exc))
                reject()
            log_.steps += 1
            self.s = self.differ.s

        def _at_once(self, calls: list[tuple[int, int, abi.Row, tuple[int, ...]]]
                     ) -> list[int]:
            rets = self.differ.concurrent(
                [(vm, vcpu, codec.encode_call(row, args, "arm64"), "arm64")
                 for vm, vcpu, row, args in calls])
            log_.steps += len(calls)
            self.s = self.differ.s
            return rets

        def _event(self, name: str, *args: int) -> None:
            if name == "VCPU_START" and self.differ.profile.get("power_on") == "async":
                return  # such a target starts its vCPUs by itself
            if events:
                self.differ.event(name, *args)
                log_.steps += 1
                self.s = self.differ.s

        # --- the oracle's own moves (the campaign's are inherited) --------------------
        @own_move
        def move_vcpu_start(self, ch: campaign.Chooser) -> None:
            self._event("VCPU_START", ch.integer(0, cfg.n_vms - 1),
                        ch.integer(0, cfg.n_vcpus - 1))

        @own_move
        def move_device_irq(self, ch: campaign.Chooser) -> None:
            self._event("DEVICE_IRQ", ch.integer(0, cfg.n_devices))

        @own_move
        def move_bind(self, ch: campaign.Chooser) -> None:
            """VM a offers a port to VM b, which binds it (or a sends through it first)."""
            a, b = ch.integer(0, cfg.n_vms - 1), ch.integer(0, cfg.n_vms - 1)
            self._call(a, 0, abi.BY_NAME["EVTCHN_ALLOC_UNBOUND"], (b,), "arm64")
            port = self._last_ret
            then = ch.pick(["bind", "bind", "send", "none", "close-send"], label="then")
            if port >> 63 or then == "none":
                return
            if then == "send":  # sending through a port nobody has bound yet
                self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port,), "arm64")
            elif then == "close-send":  # and through one just closed (a stale name)
                self._call(a, 0, abi.BY_NAME["EVTCHN_CLOSE"], (port,), "arm64")
                self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port,), "arm64")
            else:
                self._call(b, 0, abi.BY_NAME["EVTCHN_BIND_INTERDOMAIN"], (a, port), "arm64")

        @own_move
        def move_malformed(self, ch: campaign.Chooser) -> None:
            """A real function id with one argument register carrying reserved bits (often
            the sign bit, as a negative number passed where an index is expected)."""
            vm, row = ch.integer(0, cfg.n_vms - 1), ch.pick(_WITH_ARGS, label="row")
            if row.name not in rows:
                return
            which, bit = ch.integer(0, 3), ch.integer(0, 63)
            low, conv = ch.integer(0, 0xFFFF), ch.pick(["arm64", "x86_64"], label="conv")
            top = ch.boolean(label="top")
            arg = row.args[which % len(row.args)]
            limit = 64 if row.smc64 else 32
            hi = arg.width + bit % max(1, limit - arg.width) if arg.width < limit else bit
            if top:
                hi = limit - 1
            args = [0] * len(row.args)
            args[which % len(row.args)] = (1 << hi) | low
            self._regs(vm, 0, codec.encode_call(row, tuple(args), conv), conv)

    # every move, in name order (as when they were all methods of one class): a seed
    # picks the same move whatever the registration order; a firmware target gets the
    # firmware workload's moves only
    MOVES = tuple(fn for _, fn in sorted(
        (campaign.FIRMWARE_MOVES if firmware else campaign.EVTCHN_MOVES if evtchn
         else {**campaign.MOVES, **own}).items()))

    class Oracle(drivers.make_base(cfg)):  # type: ignore[misc]
        def __init__(self) -> None:
            self.differ = Differ(target, cfg, invariants=invariants, judged=log_.judged,
                                 reach=log_.reach, deviations=log_.deviations)
            if log_.candidates is None:
                log_.candidates, log_.joint = self.differ.candidates, self.differ.joint
            else:
                self.differ.adopt(log_.candidates, log_.joint)
            log_.learned = self.differ.learned
            self.differ.reset()
            log_.examples += 1
            super().__init__()

        def new_workload(self) -> campaign.Workload:
            return OracleWorkload(self.differ)

        @rule(seed=st.integers(0, 2**64 - 1))
        def run_program(self, seed: int) -> None:
            """``program`` moves, every choice drawn from ``seed``."""
            ch = campaign.RandomChooser(seed)
            w = self.w
            try:
                for _ in range(program):
                    ch.pick(MOVES)(w, ch)
            except ConformanceFailure as exc:  # kept: Hypothesis' re-run may not repeat it
                if log_.first_failure is None:
                    log_.first_failure = exc
                raise

        def teardown(self) -> None:
            if invariants == "end":
                self.differ.check_state()

    Oracle.__name__ = "ConformanceOracle"
    return Oracle


def replay(target: Target, ops: list[dict[str, Any]], cfg: Config = SIM_CONFIG,
           invariants: str = "step") -> ConformanceFailure | None:
    """Run a recorded trace on ``target`` and the spec; the first mismatch, or None."""
    from conformance.protocol import word

    d = Differ(target, config_for(target, cfg), invariants=invariants)
    try:
        d.reset()
        i = 0
        while i < len(ops):
            op = ops[i]
            if op["op"] != "hypercall":
                d.event(op["name"], *(word(a) for a in op["args"]))
                i += 1
                continue
            group = [op]
            while "at_once" in op and i + len(group) < len(ops) and \
                    ops[i + len(group)].get("at_once") == op["at_once"]:
                group.append(ops[i + len(group)])
            calls = [(int(g["vm"]), int(g["vcpu"]), {k: word(v) for k, v in g["regs"].items()},
                      g["conv"]) for g in group]
            if len(calls) > 1:
                d.concurrent(calls)
            else:
                d.hypercall(*calls[0])
            i += len(group)
        if invariants == "end":
            d.check_state()
    except ConformanceFailure as exc:
        return exc
    return None


def shrink(target: Target, failure: ConformanceFailure, cfg: Config = SIM_CONFIG,
           invariants: str = "step", budget: int = 400) -> ConformanceFailure:
    """Delta-debug the failure's trace (ddmin) to a 1-minimal one failing the same way."""
    key = (failure.kind, failure.requirement)
    runs = 0

    def fails(ops: list[dict[str, Any]]) -> ConformanceFailure | None:
        nonlocal runs
        runs += 1
        try:
            got = replay(target, ops, cfg, invariants)
        except SpecDefect:
            return None
        return got if got is not None and (got.kind, got.requirement) == key else None

    best, ops, n = failure, list(failure.trace), 2
    while len(ops) >= 2 and runs < budget:
        size = -(-len(ops) // n)
        for i in range(0, len(ops), size):
            candidate = ops[:i] + ops[i + size:]
            got = fails(candidate) if candidate else None
            if got is not None:
                best, ops, n = got, list(got.trace), max(n - 1, 2)
                break
            if runs >= budget:
                break
        else:
            if n >= len(ops):
                break
            n = min(2 * n, len(ops))
    return best


@attrs.frozen
class OracleOutcome:
    status: str  # passed | failed | error
    examples: int
    steps: int
    seconds: float
    failure: ConformanceFailure | None = None
    error: str = ""
    trace: tuple[dict[str, Any], ...] = ()
    spec_defects: tuple[str, ...] = ()
    shrunk_from: int = 0  # length of the trace as first found
    judged: frozenset[str] = frozenset()  # the requirements evaluated on the target
    reach: Reach | None = None  # what the workload reached (conformance.reach)
    deviations: dict[str, int] = attrs.field(factory=dict)  # known deviations seen, how often
    learned: dict[str, str] = attrs.field(factory=dict)  # the firmware profile it showed


PROFILES: dict[str, dict[str, Any]] = {
    # invariants: "end" checks the spec's invariants once per example, "step" after every
    # state change (~0.2 ms a step on the concrete spec).  program: moves per rule; a move
    # makes 0.85 calls on average, so an example is ~550 calls after its boot (long
    # enough to amortise the ~3 ms Hypothesis spends per example) and a ci run ~55k.
    "ci": {"max_examples": 100, "stateful_step_count": 10, "program": PROGRAM_MOVES,
           "invariants": "end"},
    "thorough": {"max_examples": 500, "stateful_step_count": 10, "program": PROGRAM_MOVES,
                 "invariants": "step"},
}


def oracle_settings(profile: str = "ci", **overrides: Any) -> settings:
    """Hypothesis settings for a profile; Hypothesis' own shrinker is off (slow on long
    stateful runs): a failing trace is shrunk by :func:`shrink` instead."""
    base: dict[str, Any] = {"phases": [Phase.explicit, Phase.reuse, Phase.generate],
                            **PROFILES.get(profile, PROFILES["ci"])}
    base.update(overrides)
    base.pop("invariants", None)
    base.pop("program", None)
    base.setdefault("derandomize", profile == "ci")
    return settings(deadline=None, report_multiple_bugs=False, print_blob=False,
                    database=None, suppress_health_check=list(HealthCheck), **base)


def run_oracle(target: Target, cfg: Config = SIM_CONFIG, profile: str = "ci",
               seed: int | None = None, **overrides: Any) -> OracleOutcome:
    """Run the differential state machine against ``target``; never raises for the target's
    sake: a mismatch is ``failed`` (shrunk), a broken protocol or hang is ``error``.

    ``seed`` makes one reproducible run of a many-seed campaign (random generation from
    that seed instead of the profile's derandomized default)."""
    log = OracleLog()
    start = time.perf_counter()
    status, failure, error, found = "passed", None, "", 0
    trace: tuple[dict[str, Any], ...] = ()
    prof = PROFILES.get(profile, PROFILES["ci"])
    inv = overrides.pop("invariants", prof["invariants"])
    program = overrides.pop("program", prof["program"])
    machine = make_oracle(target, cfg, log, invariants=inv, program=program)
    if seed is not None:
        machine = hypothesis.seed(seed)(machine)
        overrides["derandomize"] = False
    try:
        run_state_machine_as_test(machine, settings=oracle_settings(profile, **overrides))
    except ConformanceFailure as exc:
        found = len(exc.trace)
        try:
            failure = shrink(target, exc, cfg, "step" if inv == "step" else "end")
        except TargetAbort:
            failure = exc
        trace = tuple(failure.trace)
        status = "error" if exc.kind in ("crash", "spec-invariant") else "failed"
        error = exc.observed if status == "error" else ""
    except TargetAbort as exc:
        status, error, trace = "error", exc.error.reason, tuple(exc.trace)
    except Exception as exc:  # the suite itself must never crash the run
        first = log.first_failure
        if first is not None:
            # Hypothesis re-ran the failing example and it passed (a crash that a restarted
            # target does not repeat): report the failure as first seen, with its trace
            failure, trace, found = first, tuple(first.trace), len(first.trace)
            status = "error" if first.kind in ("crash", "spec-invariant") else "failed"
            error = (f"{first.observed} (did not reproduce when the same example was run "
                     f"again on a restarted target)")
        else:
            status, error = "error", f"suite defect: {type(exc).__name__}: {exc}"
    return OracleOutcome(status, log.examples, log.steps, time.perf_counter() - start,
                         failure, error, trace, tuple(log.spec_defects), found,
                         frozenset(log.judged), log.reach, dict(log.deviations),
                         log.learned() if log.learned is not None else {})
