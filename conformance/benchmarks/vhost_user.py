"""Benchmark: verified virtio-blk requests/s over vhost-user, and the oracle's share.

Every request goes through the full path (model driver -> shared memory -> back-end ->
call eventfd -> judge_split + disk model), against qemu-storage-daemon and against our
own back-end.  ``judge_share`` is the fraction of wall time spent judging.
``python -m conformance.benchmarks.vhost_user`` prints the numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from conformance.vhost_user.session import BlkSession
from conformance.vhost_user.targets import (
    TargetUnavailable,
    start_qemu_blk,
    start_reference_blk,
)
from spec.virtio.devices import block as blk

BENCH_DISK = 64 << 10  # the spec's disk model is O(disk) per request: keep it small


def _bench_one(start: Callable[..., Any], n: int, batch: int) -> dict[str, object]:
    try:
        t = start(disk_bytes=BENCH_DISK)
    except TargetUnavailable as e:
        return {"unavailable": str(e)}
    try:
        with BlkSession(t, observe_disk=False) as s:
            judge = 0.0
            bad = 0
            t0 = time.perf_counter()
            done = 0
            k = 0
            while done < n:
                reqs = [blk.Request(blk.T_IN, (k + j) % 64, in_len=512) for j in range(batch)]
                st = s.run(reqs, grace=0.0)
                judge += st.judge_s
                bad += (not st.verdict.ok) + sum(c.violation is not None for c in st.completions)
                done += len(st.completions)
                k += batch
                if st.outcome != "completed":
                    break
            wall = time.perf_counter() - t0
            t1 = time.perf_counter()
            for _ in range(max(1, n // batch // 4)):  # unverified: same path, no judging
                s.run([blk.Request(blk.T_IN, j % 64, in_len=512) for j in range(batch)],
                      grace=0.0, judge=False)
            raw = (time.perf_counter() - t1) / max(1, n // batch // 4) / batch
    finally:
        t.stop()
    return {"requests": done, "batch": batch, "verified_rps": round(done / wall, 1),
            "judge_share": round(judge / wall, 3), "judge_us_per_req": round(judge / done * 1e6, 1),
            "unverified_rps": round(1 / raw, 1), "violations": bad}


def run(n: int = 2000, batch: int = 8) -> dict[str, object]:
    """Return (and print) the numbers for both back-ends."""
    out: dict[str, object] = {"qemu-storage-daemon": _bench_one(start_qemu_blk, n, batch),
           "reference": _bench_one(start_reference_blk, n, batch)}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    run()
