"""Benchmark: verified virtio-blk requests/s over vhost-user, and the judge's share.

Every request goes the whole way (model driver -> shared memory -> back-end -> call
eventfd -> ring oracle ``judge_split`` + disk model), against qemu-storage-daemon and
against our own back-end, three ways:

* ``verified_rps``: :meth:`~conformance.vhost_user.session.BlkSession.stream`, each batch
  judged while the back-end serves the next;
* ``verified_rps_sequential``: :meth:`~conformance.vhost_user.session.BlkSession.run`,
  serve then judge, batch after batch;
* ``unverified_rps``: the same path with no judging: the ceiling the back-end and the
  model driver set.

``judge_us_per_req`` is the judge's own time per request (sequential run).  Our back-end
serves from a thread of this process, so it shares the interpreter with the judge and
gains little from streaming; qemu-storage-daemon is a process of its own.
``python -m conformance.benchmarks.vhost_user`` prints the numbers (so does
``pvspec bench --vhost-user``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from conformance.vhost_user.session import BlkSession, Step
from conformance.vhost_user.targets import (
    TargetUnavailable,
    start_qemu_blk,
    start_reference_blk,
)
from spec.virtio.devices import block as blk

BENCH_DISK = 64 << 10  # a small disk: the model's copy is rebuilt per write
SECTORS = BENCH_DISK // 512


def _batches(n: int, batch: int) -> Iterator[list[blk.Request]]:
    return ([blk.Request(blk.T_IN, (k + j) % SECTORS, in_len=512) for j in range(batch)]
            for k in range(0, n, batch))


def _count(steps: Iterator[Step] | list[Step]) -> tuple[int, int, float]:
    """Requests completed, violations seen and judge seconds over ``steps``."""
    done = bad = 0
    judge = 0.0
    for st in steps:
        judge += st.judge_s
        bad += (not st.verdict.ok) + sum(c.violation is not None for c in st.completions)
        done += len(st.completions)
    return done, bad, judge


def _bench_one(start: Callable[..., Any], n: int, batch: int) -> dict[str, object]:
    try:
        t = start(disk_bytes=BENCH_DISK)
    except TargetUnavailable as e:
        return {"unavailable": str(e)}
    try:
        with BlkSession(t, observe_disk=False) as s:
            t0 = time.perf_counter()
            done, bad, _ = _count(s.stream(_batches(n, batch)))
            streamed = done / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            done_seq, bad_seq, judge = _count(s.run(b, grace=0.0) for b in _batches(n, batch))
            sequential = done_seq / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw = sum(len(s.run(b, grace=0.0, judge=False).placed)
                      for b in _batches(n // 2, batch))
            unverified = raw / (time.perf_counter() - t0)
    finally:
        t.stop()
    return {"requests": done, "batch": batch, "verified_rps": round(streamed, 1),
            "verified_rps_sequential": round(sequential, 1),
            "judge_us_per_req": round(judge / max(done_seq, 1) * 1e6, 1),
            "unverified_rps": round(unverified, 1), "violations": bad + bad_seq}


def run(n: int = 4000, batch: int = 8, quiet: bool = False) -> dict[str, object]:
    """The numbers for both back-ends (printed unless ``quiet``)."""
    out: dict[str, object] = {"qemu-storage-daemon": _bench_one(start_qemu_blk, n, batch),
                              "reference": _bench_one(start_reference_blk, n, batch)}
    if not quiet:
        print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    run()
