"""Hypothesis state machine: random hypercall sequences against the concrete spec.

Calls are generated the way a hostile or buggy guest makes them: mostly well-aimed (VM ids,
frames, handles and ports that exist), sometimes at the edges, sometimes garbage registers
in either calling convention.  After every step every invariant and step property is
checked, so a failure shrinks to the shortest sequence that breaks a named rule.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from spec import checking, machine
from spec.hypercalls import abi, codec
from spec.state import Config, State, initial
from spec.transitions import Caller

SIM_CONFIG = Config(n_vms=4, n_vcpus=2, n_gframes=4, n_hframes=16, n_tx=3, n_ports=3,
                    n_devices=2, control_quota=3)

WORD64 = st.integers(0, 2**64 - 1)


# Rows by area; the state machine has one rule per area.
_AREAS: dict[str, tuple[abi.Row, ...]] = {
    "memory": tuple(r for r in abi.TABLE if r.name in ("MEM_POPULATE", "MEM_RELEASE")),
    "sharing": tuple(r for r in abi.TABLE if r.name.startswith("MEM_")
                     and r.name not in ("MEM_POPULATE", "MEM_RELEASE")),
    "evtchn": tuple(r for r in abi.TABLE if r.name.startswith("EVTCHN_") or r.name == "IRQ_ACK"),
    "psci": tuple(r for r in abi.TABLE if r.space == "psci" or r.name == "HV_VERSION"),
    "control": tuple(r for r in abi.TABLE if r.caller == "control"),
}
assert {r.name for rows in _AREAS.values() for r in rows} == {r.name for r in abi.TABLE}


class StepFailure(AssertionError):
    """A step broke a proved rule: names it, with the trace that led there."""


def _arg_strategy(arg: abi.Arg, cfg: Config) -> st.SearchStrategy[int]:
    small = {
        "vm": cfg.n_vms + 1, "vcpu": cfg.n_vcpus + 1, "frame": cfg.n_gframes + 1,
        "handle": cfg.n_tx + 1, "port": cfg.n_ports + 1, "device": cfg.n_devices + 1,
        "line": cfg.n_lines + 1, "perm": 8, "level": 2, "mpidr": cfg.n_vcpus + 1,
        "value": cfg.n_gframes + 2, "vm_mask": 1 << cfg.n_vms,
    }.get(arg.kind)
    if arg.kind == "address":
        aimed = st.integers(0, cfg.n_gframes).map(lambda g: g << 12)
    elif arg.kind == "value" and arg.name == "quota":
        aimed = st.integers(0, cfg.n_hframes + 1)
    else:
        aimed = st.integers(0, small - 1)
    edge = st.sampled_from([0, 1, (1 << arg.width) - 1, 0xFFFF, 1 << (arg.width - 1)])
    return st.one_of(aimed, aimed, aimed, edge)


def make_machine(cfg: Config = SIM_CONFIG) -> type[RuleBasedStateMachine]:
    """A fresh state-machine class over ``cfg`` (one per configuration)."""

    class HypervisorMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.s: State = initial(cfg)
            self.trace: list[str] = []
            self._last_ret = 0

        @initialize(quotas=st.lists(st.integers(1, 4), min_size=cfg.n_vms - 1,
                                    max_size=cfg.n_vms - 1))
        def boot(self, quotas: list[int]) -> None:
            """Create every VM; each maps frames up to its quota, from guest frame 0."""
            for vm, quota in enumerate(quotas, start=1):
                self._call(0, 0, abi.BY_NAME["VM_CREATE"], (vm, quota), "arm64")
            for vm, quota in enumerate([cfg.control_quota, *quotas]):
                for g in range(min(quota, cfg.n_gframes - 1)):
                    self._call(vm, 0, abi.BY_NAME["MEM_POPULATE"], (g, 7), "arm64")

        def _apply(self, caller: Caller, row: abi.Row | None, s2: State, ret: Any,
                   what: str) -> None:
            self.trace.append(what)
            bad = checking.check_step(self.s, caller, row, s2, ret)
            self.s = s2
            if bad:
                names = ", ".join(f"{v.name} [{v.clause}]" for v in bad)
                raise StepFailure(f"{names} broken after: " + " ; ".join(self.trace))

        def _call(self, vm: int, vcpu: int, row: abi.Row, args: tuple[int, ...],
                  conv: str) -> None:
            regs = codec.encode_call(row, args, conv)
            self._regs(vm, vcpu, regs, conv)

        def _regs(self, vm: int, vcpu: int, regs: dict[str, int], conv: str) -> None:
            decoded = codec.decode(regs, conv)
            s2, out = machine.step(self.s, vm, vcpu, regs, conv)
            ret = out[abi.CONVENTIONS[conv]["result"][0]]
            self._last_ret = ret
            row = decoded.row if isinstance(decoded, codec.Call) else None
            shown = ([hex(regs[r]) for r in abi.CONVENTIONS[conv]["args"][: len(row.args)]]
                     if row else [hex(v) for v in regs.values()])
            signed = ret - (1 << 64) if ret >> 63 else ret
            what = (f"vm{vm}.{vcpu} {conv} {row.name if row else 'undecodable'}"
                    f"({', '.join(shown)}) -> {signed}")
            self._apply(Caller(vm, vcpu), row, s2, ret, what)

        def _aimed(self, data: st.DataObject, arg: abi.Arg, vm: int) -> int:
            """An argument drawn from what exists now: live VMs, handles, ports, frames."""
            s = self.s
            live = [v for v in range(cfg.n_vms) if s.vm_state[v]]
            pools = {
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
            if arg.kind == "value" and arg.name == "count":
                pools["value"] = [1, 1, 2, 3]
            pool = pools.get(arg.kind)
            if pool:
                return data.draw(st.sampled_from(pool), label=arg.name)
            return data.draw(_arg_strategy(arg, cfg), label=arg.name)

        def _candidates(self, row: abi.Row, vm: int) -> list[tuple[int, ...]]:
            """Whole argument tuples that are likely to succeed now, for calls whose
            arguments depend on each other (a handle *and* a free place to map it)."""
            s, G = self.s, cfg.n_gframes
            live_tx = [k for k in range(cfg.n_tx) if s.tx_kind[k]]
            free = [g for g in range(G) if not s.s2_valid[s.vg(vm, g)]]
            mine = vm * G
            if row.name == "EVTCHN_BIND_INTERDOMAIN":  # offers to vm, and (hostile) to others
                return [(i // cfg.n_ports, i % cfg.n_ports) for i in range(len(s.ch_state))
                        if s.ch_state[i] == 1 and i // cfg.n_ports != vm]
            if row.name == "MEM_RETRIEVE":
                return [(k, base) for k in live_tx for base in free
                        if s.tx_borrowers[k] >> vm & 1 and not s.tx_retrieved[k] >> vm & 1
                        and all(not s.s2_valid[mine + g]
                                for g in range(base, min(G, base + s.tx_count[k])))]
            if row.name == "MEM_RECLAIM":
                return [(k,) for k in live_tx if s.tx_owner[k] == vm]
            if row.name == "MEM_RELINQUISH":
                return [(k,) for k in live_tx if s.tx_retrieved[k] >> vm & 1]
            if row.name.startswith("CPU_ON"):
                entries = [g << 12 for g in range(G) if s.s2_valid[mine + g]]
                off = [c for c in range(cfg.n_vcpus) if s.vcpu[s.vc(vm, c)] == 0]
                return [(c, e, 0) for c in [*off, *off, *range(cfg.n_vcpus)] for e in entries]
            if row.name in ("VM_PAUSE", "VM_RESUME", "VM_DESTROY"):  # any caller: privilege
                return [(v,) for v in range(1, cfg.n_vms) if s.vm_state[v]]
            ports = [p for p in range(cfg.n_ports) if s.ch_state[s.vp(vm, p)]]
            if row.name == "EVTCHN_SEND":  # bound ports, and (hostile) unbound ones
                return [(p,) for p in ports]
            if row.name in ("EVTCHN_CLOSE", "EVTCHN_MASK", "EVTCHN_UNMASK", "EVTCHN_CLEAR"):
                # open ports, then every other port and one past the end (error paths)
                return [(p,) for p in ports] * 2 + [(p,) for p in range(cfg.n_ports + 1)]
            if row.name in ("MEM_SHARE", "MEM_LEND", "MEM_DONATE") and s.vm_state[vm]:
                own = [g for g in range(G) if s.s2_valid[mine + g]
                       and s.s2_tx[mine + g] == 0xFFFF
                       and s.frame_tx[s.s2_frame[mine + g]] == 0xFFFF]
                others = [1 << v for v in range(cfg.n_vms) if v != vm and s.vm_state[v]]
                return [(g, 1, who, perm) for g in own for who in others for perm in (1, 3)]
            if row.name == "VM_CREATE":
                return [(v, q) for v in range(1, cfg.n_vms) if not s.vm_state[v]
                        for q in (1, 3)]
            if row.name == "DEV_ASSIGN":
                return [(d, v) for d in range(cfg.n_devices) if s.dev_owner[d] == 0xFFFF
                        for v in range(cfg.n_vms) if s.vm_state[v]]
            if row.name == "DEV_DEASSIGN":
                return [(d,) for d in range(cfg.n_devices) if s.dev_owner[d] != 0xFFFF]
            return []

        def _hypercall(self, data: st.DataObject, rows: tuple[abi.Row, ...]) -> None:
            row = data.draw(st.sampled_from(rows), label="row")
            vm = data.draw(st.integers(0, cfg.n_vms - 1), label="vm")
            vcpu = data.draw(st.sampled_from([0, 0, 0, *range(1, cfg.n_vcpus)]), label="vcpu")
            conv = data.draw(st.sampled_from(["arm64", "x86_64"]), label="conv")
            aimed = data.draw(st.integers(0, 3), label="aimed")
            candidates = ([(v, a) for v in range(cfg.n_vms) for a in self._candidates(row, v)]
                          if aimed else [])
            if candidates:
                vm, args = data.draw(st.sampled_from(candidates), label="aimed")
            elif aimed:  # three times in four: arguments that name things that exist
                args = tuple(self._aimed(data, a, vm) for a in row.args)
            else:
                args = tuple(data.draw(_arg_strategy(a, cfg), label=a.name) for a in row.args)
            self._call(vm, vcpu, row, args, conv)

        @rule(data=st.data())
        def transaction(self, data: st.DataObject) -> None:
            """A whole FF-A exchange in one rule: open, retrieve, then poke at it.

            Reaching "owner reclaims while the borrower maps it" by chance takes four
            well-aimed calls in a row; this rule makes such sequences common.
            """
            s, G = self.s, cfg.n_gframes
            owners = [(v, g) for v in range(cfg.n_vms) if s.vm_state[v] == 1
                      for g in range(G) if s.s2_valid[s.vg(v, g)]
                      and s.s2_tx[s.vg(v, g)] == 0xFFFF]
            if not owners:
                return
            owner, g = data.draw(st.sampled_from(owners), label="owner frame")
            borrower = data.draw(st.sampled_from(
                [v for v in range(cfg.n_vms) if v != owner]), label="borrower")
            kind = data.draw(st.sampled_from(["MEM_SHARE", "MEM_LEND", "MEM_DONATE"]))
            perm = data.draw(st.sampled_from([1, 3, 5]), label="perm")
            self._call(owner, 0, abi.BY_NAME[kind], (g, 1, 1 << borrower, perm), "arm64")
            handle = self._last_ret
            if handle >> 63:
                return
            base = data.draw(st.integers(0, G - 1), label="borrower base")
            self._call(borrower, 0, abi.BY_NAME["MEM_RETRIEVE"], (handle, base), "arm64")
            then = data.draw(st.sampled_from(
                ["MEM_RECLAIM", "MEM_RELEASE", "VM_DESTROY", "MEM_RELINQUISH"]), label="then")
            if then == "MEM_RECLAIM":
                self._call(owner, 0, abi.BY_NAME[then], (handle,), "arm64")
            elif then == "MEM_RELEASE":
                self._call(owner, 0, abi.BY_NAME[then], (g,), "arm64")
            elif then == "VM_DESTROY" and owner != 0:
                self._call(0, 0, abi.BY_NAME[then], (owner,), "arm64")
            else:
                self._call(borrower, 0, abi.BY_NAME["MEM_RELINQUISH"], (handle,), "arm64")

        @rule(data=st.data())
        def channel(self, data: st.DataObject) -> None:
            """A whole event-channel life in one rule: offer, bind, send, then end it."""
            live = [v for v in range(cfg.n_vms) if self.s.vm_state[v] == 1]
            if len(live) < 2:
                return
            a = data.draw(st.sampled_from(live), label="offerer")
            b = data.draw(st.sampled_from([v for v in live if v != a]), label="binder")
            self._call(a, 0, abi.BY_NAME["EVTCHN_ALLOC_UNBOUND"], (b,), "arm64")
            port_a = self._last_ret
            if port_a >> 63:
                return
            if data.draw(st.booleans(), label="send before bind"):  # must fail, deliver nothing
                self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port_a,), "arm64")
            thieves = [v for v in live if v not in (a, b)]
            if thieves and data.draw(st.booleans(), label="third party binds first"):
                thief = data.draw(st.sampled_from(thieves), label="thief")  # must be DENIED
                self._call(thief, 0, abi.BY_NAME["EVTCHN_BIND_INTERDOMAIN"], (a, port_a),
                           "arm64")
            self._call(b, 0, abi.BY_NAME["EVTCHN_BIND_INTERDOMAIN"], (a, port_a), "arm64")
            port_b = self._last_ret
            if port_b >> 63:
                return
            self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port_a,), "arm64")
            then = data.draw(st.sampled_from(["close a", "close b", "destroy a", "destroy b",
                                              "unmask b"]), label="then")
            who, port = (a, port_a) if then.endswith("a") else (b, port_b)
            if then.startswith("close"):
                self._call(who, 0, abi.BY_NAME["EVTCHN_CLOSE"], (port,), "arm64")
            elif then.startswith("destroy") and who != 0:
                self._call(0, 0, abi.BY_NAME["VM_DESTROY"], (who,), "arm64")
            else:
                self._call(b, 0, abi.BY_NAME["EVTCHN_MASK"], (port_b,), "arm64")
                self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port_a,), "arm64")
                self._call(b, 0, abi.BY_NAME["EVTCHN_UNMASK"], (port_b,), "arm64")

        @rule(data=st.data())
        def passthrough(self, data: st.DataObject) -> None:
            """A device's life in one rule: assign, interrupt, then detach or destroy."""
            s = self.s
            free = [d for d in range(cfg.n_devices) if s.dev_owner[d] == 0xFFFF]
            live = [v for v in range(1, cfg.n_vms) if s.vm_state[v]]
            if not free or not live:
                return
            dev = data.draw(st.sampled_from(free), label="device")
            vm = data.draw(st.sampled_from(live), label="to vm")
            self._call(0, 0, abi.BY_NAME["DEV_ASSIGN"], (dev, vm), "arm64")
            s2 = machine.event(self.s, "DEVICE_IRQ", dev)
            self._apply(Caller(0, 0), None, s2, None, f"event DEVICE_IRQ({dev})")
            if data.draw(st.booleans(), label="destroy"):
                self._call(0, 0, abi.BY_NAME["VM_DESTROY"], (vm,), "arm64")
            else:
                self._call(0, 0, abi.BY_NAME["DEV_DEASSIGN"], (dev,), "arm64")

        # One rule per area, so every area gets its share of steps whatever the table order.
        @rule(data=st.data())
        def memory(self, data: st.DataObject) -> None:
            self._hypercall(data, _AREAS["memory"])

        @rule(data=st.data())
        def sharing(self, data: st.DataObject) -> None:
            self._hypercall(data, _AREAS["sharing"])

        @rule(data=st.data())
        def event_channels(self, data: st.DataObject) -> None:
            self._hypercall(data, _AREAS["evtchn"])

        @rule(data=st.data())
        def vcpus(self, data: st.DataObject) -> None:
            self._hypercall(data, _AREAS["psci"])

        @rule(data=st.data())
        def control(self, data: st.DataObject) -> None:
            self._hypercall(data, _AREAS["control"])

        @rule(vm=st.integers(0, cfg.n_vms - 1), conv=st.sampled_from(["arm64", "x86_64"]),
              regs=st.lists(WORD64, min_size=7, max_size=7),
              known=st.sampled_from(abi.TABLE))
        def garbage(self, vm: int, conv: str, regs: list[int], known: abi.Row) -> None:
            names = codec.registers(conv)
            file = dict(zip(names, regs, strict=False))
            if regs[0] & 1:  # half the time a real function id with garbage arguments
                file[names[0]] = (regs[1] << 32) | known.function_id
            self._regs(vm, 0, file, conv)

        @rule(vm=st.integers(0, cfg.n_vms - 1), vcpu=st.integers(0, cfg.n_vcpus - 1))
        def vcpu_start(self, vm: int, vcpu: int) -> None:
            s2 = machine.event(self.s, "VCPU_START", vm, vcpu)
            self._apply(Caller(vm, vcpu), None, s2, None, f"event VCPU_START({vm}, {vcpu})")

        @rule(dev=st.integers(0, cfg.n_devices))
        def device_irq(self, dev: int) -> None:
            s2 = machine.event(self.s, "DEVICE_IRQ", dev)
            self._apply(Caller(0, 0), None, s2, None, f"event DEVICE_IRQ({dev})")

        @invariant()
        def sound(self) -> None:
            bad = checking.check_state(self.s)
            if bad:
                raise StepFailure(", ".join(v.name for v in bad))

    return HypervisorMachine
