"""Benchmarks: the reference hypervisor against the spec, same process, same sequences.

Workloads (``run``):

1. ``fast_path``: pre-encoded EVTCHN_SEND / PSCI_VERSION / AFFINITY_INFO registers;
2. ``mix``: populate / release, share / retrieve / relinquish / reclaim, event channels,
   interrupt acks, in both calling conventions;
3. ``memory``: peak RSS of a 16 GiB guest (4 Mi frames of 4 KiB), measured in a fresh
   subprocess so nothing else is counted, and the time to lend 1,000 pages from a 1 GiB
   and from a 16 GiB guest (their ratio should be ~1: cost follows pages touched).

Times are process CPU time (``time.process_time``), which is steadier than wall time
on a shared machine; ``calibration_ns`` (one trivial Python call building a dict) lets
numbers from different machines be compared.  The spec is imported lazily, so the
memory workload's child process holds the implementation and nothing else.

``python -m conformance.benchmarks.hypervisor [--quick]`` prints the numbers.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from reference_impl import Hypervisor
from reference_impl._abi_constants import CONVENTIONS, ROWS

FID = {r[0]: r[1] for r in ROWS}
SMALL: dict[str, Any] = {"n_vms": 3, "n_vcpus": 2, "n_gframes": 8, "n_hframes": 32,
                         "n_hyp_frames": 1, "n_tx": 4, "n_ports": 4, "n_devices": 2,
                         "control_quota": 8}
Call = tuple[int, int, dict[str, int], str]


def regs(name: str, *args: int, conv: str = "arm64") -> dict[str, int]:
    id_reg, arg_regs, _ = CONVENTIONS[conv]
    out = dict.fromkeys((id_reg, *arg_regs), 0)
    out[id_reg] = FID[name]
    out.update(zip(arg_regs, args, strict=False))
    return out


def _setup() -> list[Call]:
    """Two guests with quotas, memory, and a bound event channel between them."""
    return [
        (0, 0, regs("VM_CREATE", 1, 8), "arm64"), (0, 0, regs("VM_CREATE", 2, 8), "arm64"),
        (1, 0, regs("EVTCHN_ALLOC_UNBOUND", 2), "arm64"),
        (2, 0, regs("EVTCHN_BIND_INTERDOMAIN", 1, 0), "arm64"),
        (1, 0, regs("MEM_POPULATE", 0, 7), "arm64"), (1, 0, regs("MEM_POPULATE", 1, 7), "arm64"),
    ]


def fast_path_calls() -> list[Call]:
    return [
        (2, 0, regs("EVTCHN_SEND", 0), "arm64"),
        (1, 0, regs("PSCI_VERSION"), "arm64"),
        (1, 0, regs("AFFINITY_INFO", 0, 0), "arm64"),
        (2, 0, regs("EVTCHN_SEND", 0, conv="x86_64"), "x86_64"),
    ]


def mix_calls() -> list[Call]:
    """One round trip of everything a busy guest does; leaves the state as it found it."""
    x86 = "x86_64"
    return [
        (1, 0, regs("MEM_POPULATE", 2, 3), "arm64"),
        (1, 0, regs("MEM_SHARE", 0, 2, 0b100, 1), "arm64"),
        (2, 0, regs("MEM_RETRIEVE", 0, 4), "arm64"),
        (2, 0, regs("EVTCHN_SEND", 0, conv=x86), x86),
        (1, 0, regs("IRQ_ACK", 0), "arm64"),
        (2, 0, regs("MEM_RELINQUISH", 0), "arm64"),
        (1, 0, regs("MEM_RECLAIM", 0), "arm64"),
        (1, 0, regs("MEM_LEND", 0, 1, 0b100, 1, conv=x86), x86),
        (1, 0, regs("MEM_RECLAIM", 0, conv=x86), x86),
        (1, 0, regs("EVTCHN_MASK", 0), "arm64"),
        (2, 0, regs("EVTCHN_SEND", 0), "arm64"),
        (1, 0, regs("EVTCHN_STATUS", 0), "arm64"),
        (1, 0, regs("EVTCHN_UNMASK", 0), "arm64"),
        (1, 0, regs("EVTCHN_CLEAR", 0), "arm64"),
        (1, 0, regs("IRQ_ACK", 0), "arm64"),
        (1, 0, regs("MEM_RELEASE", 2), "arm64"),
        (1, 0, regs("MEM_POPULATE", 9, 7), "arm64"),  # INVALID_PARAMETERS: an error path
    ]


def _time(fn: Callable[[], None]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def _impl_rate(calls: list[Call], n: int) -> float:
    hv = Hypervisor(**SMALL)
    for vm, vcpu, r, conv in _setup():
        hv.hypercall(vm, vcpu, r, conv)
    hc = hv.hypercall
    seq = calls * max(1, n // len(calls))

    def go() -> None:
        for vm, vcpu, r, conv in seq:
            hc(vm, vcpu, r, conv)

    return len(seq) / _time(go)


def _spec_rate(calls: list[Call], n: int) -> float:
    from spec import machine
    from spec.state import Config, initial

    s = initial(Config(**SMALL))
    for vm, vcpu, r, conv in _setup():
        s, _ = machine.step(s, vm, vcpu, r, conv)
    seq = calls * max(1, n // len(calls))
    state = [s]

    def go() -> None:
        s = state[0]
        for vm, vcpu, r, conv in seq:
            s, _ = machine.step(s, vm, vcpu, r, conv)

    return len(seq) / _time(go)


def _check_same(calls: list[Call]) -> bool:
    """The benchmark sequences give the same results on both sides (sanity, not proof)."""
    from spec import machine
    from spec.state import Config, initial

    hv, s = Hypervisor(**SMALL), initial(Config(**SMALL))
    for vm, vcpu, r, conv in _setup() + calls + calls:
        s, want = machine.step(s, vm, vcpu, r, conv)
        if hv.hypercall(vm, vcpu, r, conv) != want:
            return False
    return True


def _workload(calls: list[Call], impl_n: int, spec_n: int) -> dict[str, Any]:
    impl = max(_impl_rate(calls, impl_n) for _ in range(3))
    spec = _spec_rate(calls, spec_n)
    return {"impl_ops_per_s": round(impl), "spec_ops_per_s": round(spec, 1),
            "ratio": round(impl / spec, 1), "same_results": _check_same(calls)}


def _name(call: Call) -> str:
    fid = call[2]["x0" if call[3] == "arm64" else "rax"]
    return next(r[0] for r in ROWS if r[1] == fid)


def _calibration_ns() -> float:
    def f(a: int, b: int, r: dict[str, int]) -> dict[str, int]:
        return {"x0": r["x0"], "x1": 0, "x2": 0, "x3": 0}

    d, n = {"x0": 1}, 200_000

    def go() -> None:
        for _ in range(n):
            f(0, 0, d)

    return round(min(_time(go) for _ in range(3)) / n * 1e9, 1)


# --- memory and scale --------------------------------------------------------------------------
GIB_FRAMES = 262_144  # 4 KiB frames per GiB

_RSS_GUEST = """
g, populate = int(sys.argv[1]), int(sys.argv[2])
hv = Hypervisor(n_vms=3, n_gframes=g, n_hframes=g + 105_696, n_tx=64, n_ports=64,
                control_quota=16)
hv.hypercall(0, 0, regs("VM_CREATE", 1, g))
pop = regs("MEM_POPULATE", 0, 7)
for gfn in range(populate):
    pop["x1"] = gfn
    assert hv.hypercall(1, 0, pop)["x0"] == 0
print(peak_kib())
"""


def _child(body: str) -> str:
    """A script for a fresh interpreter that imports the implementation and nothing else
    (not this package): ``regs`` and ``peak_kib`` are copied in, so its peak RSS is the
    implementation's own."""
    return "\n".join(["import sys", "from reference_impl import Hypervisor",
                      "from reference_impl._abi_constants import CONVENTIONS, ROWS",
                      "FID = {r[0]: r[1] for r in ROWS}", inspect.getsource(regs),
                      inspect.getsource(peak_kib), body])


def peak_kib() -> int:
    """This process's peak RSS in KiB: VmHWM, which (unlike ru_maxrss) is not inherited
    from the parent across fork + exec; ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_16gib(populate: int) -> dict[str, Any]:
    """Peak RSS (KiB) of a process holding a 16 GiB guest with ``populate`` frames mapped,
    and of a bare interpreter that imported the package, for reference."""
    g = 16 * GIB_FRAMES
    out = subprocess.run([sys.executable, "-c", _child(_RSS_GUEST), str(g), str(populate)],
                         capture_output=True, text=True, check=True)
    base = subprocess.run([sys.executable, "-c", _child("print(peak_kib())")],
                          capture_output=True, text=True, check=True)
    return {"guest_frames": g, "populated_frames": populate,
            "rss_mib": round(int(out.stdout.split()[-1]) / 1024, 1),
            "baseline_rss_mib": round(int(base.stdout.split()[-1]) / 1024, 1)}


def lend_time(guest_frames: int, pages: int = 1000, rounds: int = 20) -> float:
    """Seconds (CPU) for one MEM_LEND of ``pages`` pages, best of ``rounds`` lend+reclaim."""
    hv = Hypervisor(n_vms=3, n_gframes=guest_frames, n_hframes=guest_frames + 4096,
                    n_tx=8, control_quota=4)
    hv.hypercall(0, 0, regs("VM_CREATE", 1, pages))
    hv.hypercall(0, 0, regs("VM_CREATE", 2, 0))
    pop = regs("MEM_POPULATE", 0, 7)
    base = guest_frames - pages  # at the top of the guest, far from frame 0
    for gfn in range(base, guest_frames):
        pop["x1"] = gfn
        assert hv.hypercall(1, 0, pop)["x0"] == 0
    lend, reclaim = regs("MEM_LEND", base, pages, 0b100, 3), regs("MEM_RECLAIM", 0)
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        k = hv.hypercall(1, 0, lend)["x0"]
        best = min(best, time.process_time() - t)
        assert k == 0
        assert hv.hypercall(1, 0, reclaim)["x0"] == 0
    return best


def run(json_path: str | None = None, quick: bool = False) -> dict[str, Any]:
    """Run every workload; write JSON to ``json_path`` if given; return the numbers."""
    impl_n, spec_n = (20_000, 200) if quick else (400_000, 4_000)
    results: dict[str, Any] = {
        "calibration_ns": _calibration_ns(),
        "fast_path": _workload(fast_path_calls(), impl_n, spec_n),
        "mix": _workload(mix_calls(), impl_n // 4, spec_n // 4),
        "fast_path_by_call": {
            _name(call):
            _workload([call], impl_n // 4, spec_n // 4) for call in fast_path_calls()[:3]
        },
    }
    small, big = lend_time(GIB_FRAMES), lend_time(16 * GIB_FRAMES)
    results["lend_1000_pages"] = {"guest_1gib_s": small, "guest_16gib_s": big,
                                  "ratio_16_over_1": round(big / small, 2)}
    results["memory"] = rss_16gib(20_000 if quick else 16 * GIB_FRAMES)
    results["targets"] = {
        "fast_path_1M_ops": results["fast_path"]["impl_ops_per_s"] >= 1_000_000,
        "fast_path_50x_spec": results["fast_path"]["ratio"] >= 50,
        "rss_under_200MiB": results["memory"]["rss_mib"] <= 200,
    }
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
