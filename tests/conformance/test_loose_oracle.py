"""The loose spec: targets that choose their own ports and handles, and power vCPUs on by
themselves, are judged by what the standards allow (spec/choices.py) -- and each way of
abusing that freedom is still caught."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import pytest

from conformance import oracle
from conformance.names import Names
from conformance.runner import run_conformance
from conformance.target import ReferenceTarget
from spec.hypercalls import abi
from spec.state import Config, initial

LOOSE = {"port_allocation": "any-free", "handle_allocation": "any-free",
         "power_on": "on-event"}
CFG = oracle.SIM_CONFIG
P = CFG.n_ports
XOR = 0x5A5A  # the handle renaming of the in-process target below (a bijection of 16 bits)


class Renamed(ReferenceTarget):
    """The reference hypervisor behind fixed renamings of its own: port p of every VM is
    shown as P-1-p, handle k as k ^ 0x5A5A.  It makes other choices than the spec, all
    legitimate; ``bug`` plants one illegitimate one."""

    profile = LOOSE

    def __init__(self, bug: str = "") -> None:
        super().__init__()
        self.bug = bug
        self.allocs = 0

    def reset(self, config: Config) -> None:
        super().reset(config)
        self.allocs = 0  # the bug's rhythm restarts with the target: traces replay

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        regs = dict(regs)
        fid = regs.get("x0" if conv == "arm64" else "rax", 0) & 0xFFFF_FFFF
        row = next((r for r in abi.TABLE if r.function_id == fid), None)
        arg_regs = abi.CONVENTIONS[conv]["args"]
        if row is not None:
            for i, a in enumerate(row.args):
                reg, mask = arg_regs[i], (1 << a.width) - 1
                v = regs.get(reg, 0)
                if a.kind == "port" and (v & mask) < P:
                    regs[reg] = (v & ~mask) | (P - 1 - (v & mask))
                elif a.kind == "handle":
                    regs[reg] = (v & ~mask) | ((v & mask) ^ XOR)
        out = super().hypercall(vm, vcpu, regs, conv)
        first = "x0" if conv == "arm64" else "rax"
        ret = out[first]
        if row is None or ret >> 63:
            return out
        if row.returns == "port":
            self.allocs += 1
            ret = P - 1 - ret
            if self.bug == "port-out-of-range" and self.allocs % 2 == 0:
                ret += P
        elif row.returns == "handle":
            self.allocs += 1
            ret ^= XOR
            if self.bug == "handle-reuse" and self.allocs % 2 == 0:
                live = [k for k, kind in enumerate(self._hv.abstract()["tx_kind"]) if kind]
                others = [k for k in live if k != out[first]]
                if others:
                    ret = others[0] ^ XOR
        elif row.name == "EVTCHN_STATUS":
            rport = (ret >> 32) & 0xFFFF
            if rport < P:
                ret = (ret & ~(0xFFFF << 32)) | ((P - 1 - rport) << 32)
        return {**out, first: ret}


class Refined(Renamed):
    """Declares the spec's own choices, then makes others: held to what it declared."""

    profile: ClassVar = {**LOOSE, "port_allocation": "lowest-free",
                         "handle_allocation": "lowest-free"}


class AsyncPower(ReferenceTarget):
    """Powers a vCPU on by itself, six calls after CPU_ON, and takes no VCPU_START."""

    profile: ClassVar = {**LOOSE, "power_on": "async"}

    def __init__(self, bug: str = "") -> None:
        super().__init__()
        self.bug = bug
        self.starting: list[tuple[int, int, int]] = []  # (vm, vcpu, calls left)

    def reset(self, config: Config) -> None:
        super().reset(config)
        self.starting = []

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        left = []
        for v, c, n in self.starting:
            if n <= 0:
                self._hv.event("VCPU_START", v, c)
            else:
                left.append((v, c, n - 1))
        self.starting = left
        out = super().hypercall(vm, vcpu, regs, conv)
        fid = regs.get("x0" if conv == "arm64" else "rax", 0) & 0xFFFF_FFFF
        first = "x0" if conv == "arm64" else "rax"
        name = next((r.name for r in abi.TABLE if r.function_id == fid), "")
        if name.startswith("CPU_ON") and out[first] == 0:
            self.starting.append((vm, regs.get(abi.CONVENTIONS[conv]["args"][0], 0), 6))
        if self.bug == "double-cpu-on" and name.startswith("CPU_ON") and \
                out[first] == abi.BY_NAME["CPU_ON"].error("ON_PENDING") & ((1 << 64) - 1):
            out = {**out, first: 0}
        if self.bug == "affinity-off-after-run" and name.startswith("AFFINITY_INFO") and \
                out[first] == 0:  # ON: the vCPU has run
            out = {**out, first: 1}
        return out

    def event(self, name: str, *args: int) -> None:
        assert name != "VCPU_START", "an async target is never sent VCPU_START"
        super().event(name, *args)


def _run(target, examples: int = 60):
    return oracle.run_oracle(target, profile="ci", max_examples=examples)


def test_renamed_target_passes() -> None:
    out = _run(Renamed())
    assert out.status == "passed", (out.failure, out.error)
    assert {"abi:MEM_SHARE", "abi:EVTCHN_ALLOC_UNBOUND", "abi:EVTCHN_STATUS",
            "abi:MEM_RETRIEVE", "abi:EVTCHN_BIND_INTERDOMAIN"} <= out.judged


def test_renamed_target_passes_the_whole_run(tmp_path) -> None:
    rep = run_conformance("renamed", target=Renamed(), report_dir=str(tmp_path),
                          max_examples=20)
    assert rep.verdict == "passed", rep.verdict_and_reason()
    assert rep.target_profile["port_allocation"] == "any-free"


@pytest.mark.parametrize("bug, row", [("handle-reuse", "abi:MEM_"),
                                      ("port-out-of-range", "abi:EVTCHN_")])
def test_abusing_the_choice_is_caught(bug: str, row: str) -> None:
    out = _run(Renamed(bug))
    assert out.status == "failed", out
    f = out.failure
    assert f is not None and f.requirement.startswith(row), f
    assert "fresh" in f.expected, f
    assert len(out.trace) <= 20
    again = oracle.replay(Renamed(bug), list(out.trace))
    assert again is not None and again.requirement == f.requirement


def test_a_broken_refinement_is_caught() -> None:
    out = _run(Refined())
    assert out.status == "failed" and out.failure is not None
    assert out.failure.requirement.startswith(("abi:EVTCHN_", "abi:MEM_")), out.failure


def test_async_power_on_passes() -> None:
    out = _run(AsyncPower())
    assert out.status == "passed", (out.failure, out.error)
    assert "abi:AFFINITY_INFO" in out.judged


@pytest.mark.parametrize("bug", ["double-cpu-on", "affinity-off-after-run"])
def test_async_power_on_abuse_is_caught(bug: str) -> None:
    out = _run(AsyncPower(bug), examples=100)
    assert out.status == "failed", out
    f = out.failure
    assert f is not None and ("CPU_ON" in f.requirement or "AFFINITY" in f.requirement), f


def test_names_keep_stale_handles_stale_and_ports_in_range() -> None:
    s = initial(Config())
    n = Names(s.cfg.n_vms, s.cfg.n_ports)
    n.bind_handle(0, 700)
    assert n.handle(s, 0) == 700  # dead in s (no live transaction): its old, stale name
    assert n.handle(s, 5) == 5
    assert all(0 <= n.port(s, 1, p) < s.cfg.n_ports for p in range(s.cfg.n_ports))
    assert n.port(s, 1, 40) == 40  # out of range stays out of range


class StartsWithAnotherContext(ReferenceTarget):
    """Powers a vCPU on by itself when it first calls, and reports (as a firmware target
    does) where it started -- with the context id CPU_ON gave off by one bit."""

    profile: ClassVar = {**LOOSE, "power_on": "async"}

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[tuple[int, int], tuple[int, int]] = {}

    def reset(self, config: Config) -> None:
        super().reset(config)
        self.pending = {}

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        start = self.pending.pop((vm, vcpu), None)
        if start is not None:
            self._hv.event("VCPU_START", vm, vcpu)
        out = super().hypercall(vm, vcpu, regs, conv)
        if regs.get("x0") == abi.BY_NAME["CPU_ON"].function_id and out["x0"] == 0:
            self.pending[vm, regs["x1"]] = (regs["x2"], regs["x3"])
        if start is not None:
            out = {**out, "start_entry": start[0], "start_context": start[1] ^ 4}
        return out


def test_a_start_with_another_context_is_the_failure_even_where_it_is_placed() -> None:
    """The vCPU's first call is answered as a running vCPU's: only its start explains
    that, and the start it reports is not CPU_ON's -- reported as such (PSCI 5.1.4), not
    as the DENIED an unstarted vCPU would have got."""
    t = StartsWithAnotherContext()
    d = oracle.Differ(t, Config())
    d.reset()
    populate, on = abi.BY_NAME["MEM_POPULATE"], abi.BY_NAME["CPU_ON"]
    assert d.hypercall(0, 0, {"x0": populate.function_id, "x1": 0, "x2": 7}) == 0
    assert d.hypercall(0, 0, {"x0": on.function_id, "x1": 1, "x2": 0, "x3": 0x40}) == 0
    with pytest.raises(oracle.ConformanceFailure) as caught:
        d.hypercall(0, 1, {"x0": abi.BY_NAME["PSCI_VERSION"].function_id})
    assert caught.value.requirement == "abi:CPU_ON" and "starts at" in caught.value.expected
