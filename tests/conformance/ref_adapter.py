"""A stdio-protocol adapter in front of ``reference_impl.Hypervisor``, with fault injection
for the suite's own tests: a target that is correct until told otherwise.

    python ref_adapter.py [--caps hypercall,observe,...] [--pidfile F] [--delay S]
                          [--crash-at N --crash-once MARKER] [--fork-child]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from reference_impl import Hypervisor

ALL = "hypercall,probe_access,probe_dma,probe_irq,events,observe"


def word(v: object) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--caps", default=ALL)
    ap.add_argument("--pidfile")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--crash-at", type=int, default=0)
    ap.add_argument("--crash-once")
    ap.add_argument("--fork-child", action="store_true")
    a = ap.parse_args()
    if a.fork_child:  # a grandchild that must not outlive the run
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if a.pidfile:
            with open(a.pidfile + ".child", "w") as f:
                f.write(str(child.pid))
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(str(os.getpid()))
    hv, cfg, calls = None, {}, 0
    for line in sys.stdin:
        m = json.loads(line)
        t, i = m["type"], m["msg_id"]
        r: dict[str, object] = {"type": t + "_ok", "in_reply_to": i}
        if t == "init":
            r.update(protocol_version="1.0", abi_version="1.0", capabilities=a.caps.split(","),
                     name="reference over stdio")
        elif t == "reset":
            cfg = m["config"]
            hv = Hypervisor(**cfg)
        elif t == "hypercall":
            calls += 1
            if a.crash_at and calls == a.crash_at and not (
                    a.crash_once and os.path.exists(a.crash_once)):
                if a.crash_once:
                    open(a.crash_once, "w").close()
                sys.exit(7)
            if a.delay:
                time.sleep(a.delay)
            regs = {k: word(v) for k, v in m["regs"].items()}
            out = hv.hypercall(m["vm"], m["vcpu"], regs, m["conv"])
            r["regs"] = {k: hex(v) for k, v in out.items()}
        elif t == "event":
            hv.event(m["name"], *(word(x) for x in m["args"]))
        elif t == "observe":
            V, G, C, D = cfg["n_vms"], cfg["n_gframes"], cfg["n_vcpus"], cfg["n_devices"]
            r["access"] = [hv.access(v, g) for v in range(V) for g in range(G)]
            r["dma"] = [hv.dma_access(d, g) for d in range(D) for g in range(G)]
            r["irq"] = [hv.pending_irqs(v, c) for v in range(V) for c in range(C)]
        elif t.startswith("probe_"):
            fn = {"probe_access": hv.access, "probe_dma": hv.dma_access,
                  "probe_irq": hv.pending_irqs}[t]
            args = [v for k, v in m.items() if k not in ("type", "msg_id")]
            r["value"] = fn(*args)
        print(json.dumps(r), flush=True)
        if t == "shutdown":
            return


if __name__ == "__main__":
    main()
