"""Throughput of the oracle: oracle-checked steps per second.

Two measures per target:

* ``oracle``: the Hypothesis state machine (generation + target + spec + comparison of every
  observable after every step); Hypothesis' own overhead dominates in process;
* ``replay``: recorded traces re-run through the :class:`~conformance.oracle.Differ`
  (target + spec + full comparison, no generation): the checking machinery alone.

Run ``python -m conformance.bench [exec:COMMAND ...]``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from conformance import oracle
from conformance.target import make_target, reference_available


def _traces(n: int = 30) -> list[list[dict[str, Any]]]:
    """Recorded op traces from the spec-only oracle."""
    from hypothesis.stateful import run_state_machine_as_test

    from conformance.target import SpecTarget

    traces: list[list[dict[str, Any]]] = []
    base = oracle.make_oracle(SpecTarget(), invariants="off")

    class Recorder(base):  # type: ignore[misc, valid-type]
        def teardown(self) -> None:
            traces.append(list(self.differ.ops))

    run_state_machine_as_test(Recorder, settings=oracle.oracle_settings(
        "ci", max_examples=n, stateful_step_count=50))
    return traces


def measure(target_spec: str, traces: list[list[dict[str, Any]]], examples: int = 30
            ) -> dict[str, float]:
    target = make_target(target_spec)
    try:
        out = oracle.run_oracle(target, max_examples=examples, invariants="off")
        start, steps = time.perf_counter(), 0
        for ops in traces:
            oracle.replay(target, ops, invariants="off")
            steps += len(ops)
        replay_rate = steps / (time.perf_counter() - start)
    finally:
        target.close()
    return {"oracle_steps_per_s": out.steps / out.seconds, "oracle_steps": out.steps,
            "replay_steps_per_s": replay_rate, "replay_steps": steps}


def run(exec_targets: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Steps per second for the in-process targets and each ``exec:`` target."""
    traces = _traces()
    names = ["spec"] + (["reference"] if reference_available() else []) + list(
        exec_targets or [])
    return {name: measure(name, traces) for name in names}


def main(argv: list[str]) -> None:
    for name, r in run(argv).items():
        print(f"{name:40} oracle {r['oracle_steps_per_s']:8.0f} steps/s   "
              f"replay {r['replay_steps_per_s']:8.0f} steps/s")


if __name__ == "__main__":
    main(sys.argv[1:])
