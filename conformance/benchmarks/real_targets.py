"""Boot time and oracle-checked calls per second on the real hypervisors (issue targets
``qemu-psci``, ``kvm-arm64``, ``xen-arm64``), each under QEMU's TCG on this host.

Per target: ``boot_s``, the first reset (QEMU started, the hypervisor booted, our agent or
init serving); then a conformance campaign of ``examples`` examples, as ``pvspec conform``
runs it, giving ``checked_calls_per_s`` (every call run on the target and the spec and
compared) over the campaign's own time, which includes every later reset (QEMU reset in
place over QMP for qemu-psci, a fresh KVM VM for kvm-arm64, closing the suite's ports for
Xen): the boot amortized, as a long campaign sees it.  The figures move with the host's
load (QEMU's TCG threads share its cores with everything else): compare runs made
together, and note ``uptime``'s load with them.  A target whose prerequisites are missing
is listed with the reason instead of figures.

``linux-virtio:blk`` and ``:net`` are drivers, not hypervisors: one boot of Linux driving
pvspec's vhost-user back-end; ``boot_s`` is the time until the guest probed the disk, and
``checked_calls`` the ring operations the driver judge judged (kicks looked at, chains
walked, completions checked) over the whole workload.

Run ``pvspec bench --real-targets`` (or ``python -m conformance.benchmarks.real_targets``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from conformance import oracle
from conformance.target import make_target

TARGETS = ("qemu-psci", "kvm-arm64", "xen-arm64", "linux-virtio:blk", "linux-virtio:net")
EXAMPLES = 10


def _missing(name: str) -> str | None:
    if name == "qemu-psci":
        from conformance.qemu_psci_target import available
    elif name == "kvm-arm64":
        from conformance.kvm_psci_target import available
    else:
        from conformance.xen_target import available
    return available()


def measure_linux_virtio(kind: str = "blk") -> dict[str, Any]:
    """One boot of the linux-virtio:``kind`` workload with the driver judge watching."""
    from conformance.linux_virtio import machine
    from conformance.linux_virtio.judge import DriverJudge

    why = machine.missing()
    if why:
        return {"skipped": why}
    if kind == "blk":
        disk = bytearray(machine.DISK_BYTES)
        judge = DriverJudge(bytes(disk))
        w = machine.run_blk(judge, disk)
    else:
        judge = DriverJudge(b"", kind="net")
        w = machine.run_net(judge)
    ops = judge.operations
    failed = sorted(r for r, t in judge.tallies.items() if t.violations and t.level == "MUST")
    return {"boot_s": round(w.boot_seconds or 0.0, 2),
            "status": "failed" if failed else ("passed" if w.done else w.ended),
            "examples": 1, "checked_calls": ops, "seconds": round(w.seconds, 1),
            "checked_calls_per_s": round(ops / w.seconds) if w.seconds else 0,
            # the guest under TCG sets the pace above; the judge's own cost per operation:
            "judge_seconds": round(judge.busy, 3),
            "judged_ops_per_judge_s": round(ops / judge.busy) if judge.busy else 0}


def measure(name: str, examples: int = EXAMPLES) -> dict[str, Any]:
    if name.startswith("linux-virtio:"):
        return measure_linux_virtio(name.split(":", 1)[1])
    missing = _missing(name)
    if missing is not None:
        return {"skipped": missing}
    target = make_target(name)
    try:
        start = time.perf_counter()
        target.reset(oracle.config_for(target, oracle.SIM_CONFIG))
        boot = time.perf_counter() - start
        out = oracle.run_oracle(target, max_examples=examples)
    finally:
        target.close()
    return {"boot_s": round(boot, 2), "status": out.status, "examples": out.examples,
            "checked_calls": out.steps, "seconds": round(out.seconds, 1),
            "checked_calls_per_s": round(out.steps / out.seconds) if out.seconds else 0}


def run(examples: int = EXAMPLES, targets: tuple[str, ...] = TARGETS) -> dict[str, Any]:
    """The figures of every target, one after the other, each with the host's 1-minute
    load average when it began (``load``: the figures are only comparable at like load)."""
    out: dict[str, Any] = {}
    for name in targets:
        load = round(os.getloadavg()[0], 1)
        out[name] = {**measure(name, examples), "load": load}
    return out


def main(argv: list[str]) -> None:
    for name, r in run(targets=tuple(argv) or TARGETS).items():
        if "skipped" in r:
            print(f"{name:12} skipped: {r['skipped']}")
        else:
            what = "judged ring ops" if name.startswith("linux-virtio") else "checked calls"
            print(f"{name:12} boot {r['boot_s']:6.2f} s   {r['checked_calls_per_s']:6d} {what}"
                  f"/s ({r['checked_calls']} in {r['seconds']} s, {r['status']}, load "
                  f"{r['load']})"
                  + (f"; the judge: {r['judged_ops_per_judge_s']} ops per second of its own "
                     f"time" if "judge_seconds" in r else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
