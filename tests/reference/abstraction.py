"""Tests-only helpers: the abstraction function to spec states, and the differential machine.

``to_state`` lifts :meth:`Hypervisor.abstract` to a :class:`spec.state.State`.
``make_differential`` builds a Hypothesis state machine that sends the same random
hypercalls and events (aimed arguments, edge values, garbage registers in both calling
conventions) to the spec and to an implementation, and after every step compares the
result registers, the abstract state and every probe.  Any difference, or an exception
in the implementation, is a :class:`Divergence`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from reference_impl import Hypervisor
from spec import machine
from spec.campaign import SIM_CONFIG
from spec.hypercalls import abi, codec
from spec.state import Config, State, access, dma_access, initial

WORD64 = st.integers(0, 2**64 - 1)
_RARE = {"CPU_OFF", "VM_DESTROY", "VM_PAUSE", "PSCI_VERSION", "HV_VERSION",
         # firmware queries (no state) and the calls that stop or restart a whole VM
         "PSCI_FEATURES", "MIGRATE_INFO_TYPE", "SMCCC_VERSION", "SMCCC_ARCH_FEATURES"}
_TERMINAL = {"SYSTEM_OFF", "SYSTEM_RESET"}  # once in a while: each ends the VM's run
_WEIGHTED = tuple(r for r in abi.TABLE if r.name not in _TERMINAL
                  for _ in range(1 if r.name in _RARE else 3))
# every (call, argument) whose argument is an index into a table: bait for off-by-one
# bounds checks, probed by the at_limit rule (drawing the row among all calls reaches a
# given index at its limit too rarely for a bounded run to count on it)
_INDEXED = ("vm", "vcpu", "mpidr", "frame", "handle", "port", "device", "line")
_SIZED = tuple((r, i) for r in abi.TABLE if r.name not in _TERMINAL
               for i, a in enumerate(r.args) if a.kind in _INDEXED)


class Divergence(AssertionError):
    """The implementation and the spec disagree (or the implementation crashed)."""


def config_of(hv: Hypervisor) -> Config:
    return Config(**hv.config)


def to_state(hv: Hypervisor) -> State:
    """The spec state the implementation's tables stand for."""
    return State(cfg=config_of(hv), **hv.abstract())


def make_hypervisor(cfg: Config, factory: Callable[..., Hypervisor] = Hypervisor) -> Hypervisor:
    return factory(**{f: getattr(cfg, f) for f in (
        "n_vms", "n_vcpus", "n_gframes", "n_hframes", "n_hyp_frames", "n_tx", "n_ports",
        "n_devices", "control_quota")})


def diff_states(spec: State, hv: Hypervisor) -> list[str]:
    """Fields and probes on which the implementation differs from the spec state."""
    cfg = spec.cfg
    out = []
    mine = hv.abstract()
    for name, value in mine.items():
        theirs = getattr(spec, name)
        if value != theirs or [type(x) for x in value] != [type(x) for x in theirs]:
            out.append(f"{name}: impl {value} spec {theirs}")
    for vm in range(cfg.n_vms):
        for g in range(cfg.n_gframes):
            if hv.access(vm, g) != access(spec, vm, g):
                out.append(f"access({vm}, {g}): impl {hv.access(vm, g)} "
                           f"spec {access(spec, vm, g)}")
        for c in range(cfg.n_vcpus):
            if hv.pending_irqs(vm, c) != spec.irq[spec.vc(vm, c)]:
                out.append(f"pending_irqs({vm}, {c})")
    for d in range(cfg.n_devices):
        for g in range(cfg.n_gframes):
            if hv.dma_access(d, g) != spec_dma_access(spec, d, g):
                out.append(f"dma_access({d}, {g})")
    return out


def spec_dma_access(s: State, dev: int, g: int) -> int:
    """``spec.state.dma_access`` on concrete states.

    The spec's version evaluates ``access(s, owner, g)`` eagerly inside ``logic.ite``, so
    for an unassigned device (owner NONE) it indexes past the stage-2 table and raises
    IndexError on concrete states; this takes the branch first, then asks the spec.
    """
    owner = s.dev_owner[dev]
    return dma_access(s, dev, g) if owner < s.cfg.n_vms else 0


def _arg_strategy(arg: abi.Arg, cfg: Config) -> st.SearchStrategy[int]:
    """Small values around the configuration's sizes, plus the field's edge values."""
    small = {
        "vm": cfg.n_vms + 1, "vcpu": cfg.n_vcpus + 1, "frame": cfg.n_gframes + 1,
        "handle": cfg.n_tx + 1, "port": cfg.n_ports + 1, "device": cfg.n_devices + 1,
        "line": cfg.n_lines + 1, "perm": 8, "level": 2, "mpidr": cfg.n_vcpus + 1,
        "value": cfg.n_gframes + 2, "vm_mask": 1 << cfg.n_vms,
    }.get(arg.kind, 4)
    if arg.kind == "address":
        aimed = st.integers(0, cfg.n_gframes).map(lambda g: g << 12)
    elif arg.name == "quota":
        aimed = st.integers(0, cfg.n_hframes + 1)
    else:
        aimed = st.integers(0, small - 1)
    top = (1 << arg.width) - 1
    edge = st.sampled_from([0, 1, top, 0xFFFF & top, 1 << (arg.width - 1), 0x100 & top,
                            (0x101 & top) or 1])
    return st.one_of(aimed, aimed, aimed, edge)


def make_differential(cfg: Config = SIM_CONFIG,
                      factory: Callable[..., Hypervisor] = Hypervisor
                      ) -> type[RuleBasedStateMachine]:
    """A state machine running spec and implementation side by side over ``cfg``."""

    class Differential(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.s: State = initial(cfg)
            self.hv = make_hypervisor(cfg, factory)
            self.trace: list[str] = []

        @initialize(quotas=st.lists(st.integers(1, 4), min_size=cfg.n_vms - 1,
                                    max_size=cfg.n_vms - 1))
        def boot(self, quotas: list[int]) -> None:
            for vm, quota in enumerate(quotas, start=1):
                self._call(0, 0, abi.BY_NAME["VM_CREATE"], (vm, quota), "arm64")
            for vm, quota in enumerate([cfg.control_quota, *quotas]):
                for g in range(min(quota, cfg.n_gframes - 1)):
                    self._call(vm, 0, abi.BY_NAME["MEM_POPULATE"], (g, 7), "arm64")

        # --- running both sides ---------------------------------------------------------
        def _fail(self, why: str) -> None:
            raise Divergence(f"{why}\nafter: " + " ; ".join(self.trace))

        def _compare(self) -> None:
            bad = diff_states(self.s, self.hv)
            if bad:
                self._fail("state differs: " + "; ".join(bad))

        def _call(self, vm: int, vcpu: int, row: abi.Row, args: tuple[int, ...],
                  conv: str) -> None:
            self._regs(vm, vcpu, codec.encode_call(row, args, conv), conv, row.name)

        def _regs(self, vm: int, vcpu: int, regs: dict[str, int], conv: str,
                  what: str) -> None:
            self.trace.append(f"vm{vm}.{vcpu} {conv} {what} {[hex(v) for v in regs.values()]}")
            s2, want = machine.step(self.s, vm, vcpu, regs, conv)
            try:
                got = self.hv.hypercall(vm, vcpu, dict(regs), conv)
            except Exception as e:  # a crash is a divergence too
                self._fail(f"implementation raised {e!r}")
            self.s = s2
            if got != want:
                self._fail(f"result registers: impl {got} spec {want}")
            self._compare()

        def _event(self, name: str, *args: int) -> None:
            self.trace.append(f"event {name}{args}")
            self.s = machine.event(self.s, name, *args)
            try:
                self.hv.event(name, *args)
            except Exception as e:
                self._fail(f"implementation raised {e!r}")
            self._compare()

        # --- argument choice -------------------------------------------------------------
        def _aimed(self, data: st.DataObject, arg: abi.Arg, vm: int) -> int:
            s = self.s
            live = [v for v in range(cfg.n_vms) if s.vm_state[v]]
            pools: dict[str, list[int]] = {
                "vm": [v for v in live if v != vm] or live,
                "handle": [k for k in range(cfg.n_tx) if s.tx_kind[k]],
                "port": [p for p in range(cfg.n_ports) if s.ch_state[s.vp(vm, p)]],
                "vm_mask": [1 << v for v in live if v != vm],
                "frame": list(range(cfg.n_gframes)),
                "perm": [1, 3, 5, 7],
            }
            own = [g for g in range(cfg.n_gframes) if s.s2_valid[s.vg(vm, g)]]
            if arg.kind == "frame" and own and data.draw(st.booleans(), label="own frame"):
                pools["frame"] = own
            if arg.name == "count":
                pools["value"] = [1, 1, 2, 3]
            pool = pools.get(arg.kind)
            if pool:
                return data.draw(st.sampled_from(pool), label=arg.name)
            return data.draw(_arg_strategy(arg, cfg), label=arg.name)

        def _edge(self, data: st.DataObject, arg: abi.Arg) -> int:
            """A value at a boundary: the last valid index or the first invalid one for
            sized arguments (off-by-one bait), else a bit-pattern edge of the field."""
            limit = {
                "vm": cfg.n_vms, "vcpu": cfg.n_vcpus, "mpidr": cfg.n_vcpus,
                "frame": cfg.n_gframes, "handle": cfg.n_tx, "port": cfg.n_ports,
                "device": cfg.n_devices, "line": cfg.n_lines,
            }.get(arg.kind)
            if limit is not None and data.draw(st.integers(0, 3), label="at limit"):
                return data.draw(st.sampled_from([limit, limit - 1]), label=arg.name)
            if arg.kind == "perm":
                return data.draw(st.sampled_from([1, 3, 5, 7]), label=arg.name)
            return data.draw(_arg_strategy(arg, cfg), label=arg.name)

        def _candidates(self, row: abi.Row, vm: int) -> list[tuple[int, ...]]:
            """Whole argument tuples likely to succeed now (arguments that depend on
            each other: a handle and a free place to map it, a port and its peer)."""
            s, G = self.s, cfg.n_gframes
            live_tx = [k for k in range(cfg.n_tx) if s.tx_kind[k]]
            mine = vm * G
            if row.name == "EVTCHN_BIND_INTERDOMAIN":
                return [(i // cfg.n_ports, i % cfg.n_ports) for i in range(len(s.ch_state))
                        if s.ch_state[i] == 1 and s.ch_rvm[i] == vm]
            if row.name == "MEM_RETRIEVE":
                free = [g for g in range(G) if not s.s2_valid[mine + g]]
                return [(k, b) for k in live_tx for b in free
                        if s.tx_borrowers[k] >> vm & 1 and not s.tx_retrieved[k] >> vm & 1
                        and all(not s.s2_valid[mine + g]
                                for g in range(b, min(G, b + s.tx_count[k])))]
            if row.name == "MEM_RECLAIM":
                return [(k,) for k in live_tx if s.tx_owner[k] == vm]
            if row.name == "MEM_RELINQUISH":
                return [(k,) for k in live_tx if s.tx_retrieved[k] >> vm & 1]
            if row.name.startswith("CPU_ON"):
                entries = [g << 12 for g in range(G) if s.s2_valid[mine + g]]
                return [(c, e, 0) for c in range(cfg.n_vcpus) for e in entries]
            if row.name in ("VM_PAUSE", "VM_RESUME", "VM_DESTROY"):
                return [(v,) for v in range(1, cfg.n_vms) if s.vm_state[v] and v != vm]
            if row.name == "DEV_DEASSIGN" and vm == 0:
                return [(d,) for d in range(cfg.n_devices) if s.dev_owner[d] != 0xFFFF]
            return []

        # --- rules ------------------------------------------------------------------------
        @rule(data=st.data(), row=st.sampled_from(_WEIGHTED),
              vm=st.integers(0, cfg.n_vms - 1),
              vcpu=st.sampled_from([0, 0, 0, *range(1, cfg.n_vcpus + 1)]),
              conv=st.sampled_from(["arm64", "x86_64"]),
              mode=st.sampled_from(["aimed", "aimed", "edge", "aimed", "random"]))
        def hypercall(self, data: st.DataObject, row: abi.Row, vm: int, vcpu: int,
                      conv: str, mode: str) -> None:
            s = self.s
            callers = [(v, c) for v in range(cfg.n_vms) for c in range(cfg.n_vcpus)
                       if s.vm_state[v] == 1 and s.vcpu[s.vc(v, c)] == 2]
            if mode != "random" and callers:  # mostly a caller that can call
                vm, vcpu = data.draw(st.sampled_from(callers), label="caller")
            candidates = ([(v, a) for v in range(cfg.n_vms) for a in self._candidates(row, v)]
                          if mode == "aimed" else [])
            if candidates:
                vm, args = data.draw(st.sampled_from(candidates), label="aimed")
                on = [c for v, c in callers if v == vm]
                vcpu = on[0] if on else vcpu
            elif mode == "aimed":
                args = tuple(self._aimed(data, a, vm) for a in row.args)
            elif mode == "edge":
                args = tuple(self._edge(data, a) for a in row.args)
            else:
                args = tuple(data.draw(_arg_strategy(a, cfg), label=a.name) for a in row.args)
            self._call(vm, vcpu, row, args, conv)

        @rule(data=st.data(), pick=st.sampled_from(_SIZED))
        def at_limit(self, data: st.DataObject, pick: tuple[abi.Row, int]) -> None:
            """One index argument at its limit (the first invalid value) or just below,
            the others aimed, from a vCPU that can call."""
            row, i = pick
            s = self.s
            callers = [(v, c) for v in range(cfg.n_vms) for c in range(cfg.n_vcpus)
                       if s.vm_state[v] == 1 and s.vcpu[s.vc(v, c)] == 2]
            if not callers:
                return
            vm, vcpu = data.draw(st.sampled_from(callers), label="caller")
            args = [self._aimed(data, a, vm) for a in row.args]
            args[i] = self._edge(data, row.args[i])
            self._call(vm, vcpu, row, tuple(args), "arm64")

        @rule(data=st.data(), kind=st.sampled_from(["MEM_SHARE", "MEM_LEND", "MEM_DONATE"]))
        def transaction(self, data: st.DataObject, kind: str) -> None:
            """An FF-A round in one rule: open a transaction over owned frames, then let
            the borrower retrieve it, so deep transaction states are reached quickly."""
            s, G = self.s, cfg.n_gframes
            opens = []
            for v in range(cfg.n_vms):
                if s.vm_state[v] != 1 or s.vcpu[s.vc(v, 0)] != 2:
                    continue
                for g in range(G):
                    i = s.vg(v, g)
                    if (s.s2_valid[i] and s.s2_tx[i] == 0xFFFF
                            and s.frame_tx[s.s2_frame[i]] == 0xFFFF):
                        opens += [(v, g, w) for w in range(cfg.n_vms)
                                  if w != v and s.vm_state[w] == 1]
            if not opens:
                return
            v, g, w = data.draw(st.sampled_from(opens), label="open")
            conv = data.draw(st.sampled_from(["arm64", "x86_64"]), label="conv")
            self._call(v, 0, abi.BY_NAME[kind], (g, 1, 1 << w, 1), conv)
            s = self.s
            live = [t for t in range(cfg.n_tx) if s.tx_kind[t] and s.tx_owner[t] == v
                    and s.tx_borrowers[t] >> w & 1 and not s.tx_retrieved[t] >> w & 1]
            free = [b for b in range(G) if not s.s2_valid[s.vg(w, b)]]
            if live and free and s.vcpu[s.vc(w, 0)] == 2:
                self._call(w, 0, abi.BY_NAME["MEM_RETRIEVE"], (live[-1], free[0]), conv)
                if data.draw(st.booleans(), label="owner reclaims while it is mapped"):
                    self._call(v, 0, abi.BY_NAME["MEM_RECLAIM"], (live[-1],), conv)

        @rule(vm=st.integers(0, cfg.n_vms), conv=st.sampled_from(["arm64", "x86_64"]),
              regs=st.lists(WORD64, min_size=8, max_size=8),
              known=st.sampled_from(abi.TABLE))
        def garbage(self, vm: int, conv: str, regs: list[int], known: abi.Row) -> None:
            names = codec.registers(conv)
            file = dict(zip(names, regs, strict=False))
            if regs[0] & 1:  # half the time a real function id with garbage arguments
                file[names[0]] = (regs[1] << 32 | known.function_id) & (2**64 - 1)
            self._regs(vm, 0, file, conv, "garbage")

        @rule(vm=st.integers(1, cfg.n_vms - 1),
              row=st.sampled_from([abi.BY_NAME[n] for n in sorted(_TERMINAL)]),
              rare=st.integers(0, 3))
        def system(self, vm: int, row: abi.Row, rare: int) -> None:
            """A guest VM powers its system off or restarts it (one time in four)."""
            if not rare:
                self._call(vm, 0, row, (), "arm64")

        @rule(vm=st.integers(0, cfg.n_vms), vcpu=st.integers(0, cfg.n_vcpus),
              dev=st.integers(0, cfg.n_devices), which=st.booleans())
        def event(self, vm: int, vcpu: int, dev: int, which: bool) -> None:
            if which:
                self._event("VCPU_START", vm, vcpu)
            else:
                self._event("DEVICE_IRQ", dev)

    return Differential


def run_pair(cfg: Config, calls: list[tuple[int, int, dict[str, int], str]],
             hv: Hypervisor | None = None) -> tuple[State, Hypervisor, list[Any]]:
    """Replay explicit calls on both sides, raising :class:`Divergence` on a difference."""
    s = initial(cfg)
    hv = hv or make_hypervisor(cfg)
    for vm, vcpu, regs, conv in calls:
        s, want = machine.step(s, vm, vcpu, regs, conv)
        got = hv.hypercall(vm, vcpu, regs, conv)
        if got != want:
            raise Divergence(f"{regs}: impl {got} spec {want}")
    bad = diff_states(s, hv)
    if bad:
        raise Divergence("; ".join(bad))
    return s, hv, bad
