"""Throughput of the oracle: oracle-checked steps per second.

Two measures per target:

* ``oracle``: the conformance state machine as ``pvspec conform`` runs it (ci profile:
  generation + target + spec + comparison of every observable after every call; spec
  invariants off, as they judge the spec, not the target);
* ``replay``: recorded traces re-run through the :class:`~conformance.oracle.Differ`
  (target + spec + full comparison, no generation): the checking machinery alone.

An *oracle-checked step* is one hypercall or event, run on the target and on the spec,
its result registers and every probe (access, DMA, pending interrupts) compared right
after it.  The targets: ``spec`` and ``reference`` in process, and over the stdio protocol
the C adapter of examples/c-adapter (compiled with ``cc`` when both are at hand) plus any
``exec:COMMAND`` given.

Run ``python -m conformance.benchmarks.oracle [exec:COMMAND ...]``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from conformance import oracle
from conformance.target import make_target, reference_available, target_profile

EXAMPLES = oracle.PROFILES["ci"]["max_examples"]  # the oracle: a whole ci run
TRACES = 20  # replay: the traces of a 20-example ci run
_RECORDED: dict[tuple[tuple[str, str], ...], list[list[dict[str, Any]]]] = {}  # per profile
C_ADAPTER = Path(__file__).resolve().parents[2] / "examples" / "c-adapter"


def _traces(n: int = TRACES, profile: dict[str, str] | None = None
            ) -> list[list[dict[str, Any]]]:
    """Recorded op traces from the spec-only oracle (one per example), of the workload a
    target with ``profile`` gets (its calls: a protocol 1.0 adapter speaks fewer)."""
    from hypothesis.stateful import run_state_machine_as_test

    from conformance.target import SpecTarget

    spec = SpecTarget()
    if profile is not None:
        spec.profile = profile  # type: ignore[misc]
    traces: list[list[dict[str, Any]]] = []
    base = oracle.make_oracle(spec, invariants="off")

    class Recorder(base):  # type: ignore[misc, valid-type]
        def teardown(self) -> None:
            traces.append(list(self.differ.ops))

    run_state_machine_as_test(Recorder, settings=oracle.oracle_settings("ci", max_examples=n))
    return traces


def measure(target_spec: str, traces: list[list[dict[str, Any]]] | None = None,
            examples: int = EXAMPLES) -> dict[str, float]:
    """Both rates for one target; ``traces`` default to the workload of its profile.
    Every replay must pass: one that stopped at a mismatch replayed fewer steps than
    its trace holds."""
    target = make_target(target_spec)
    try:
        out = oracle.run_oracle(target, max_examples=examples, invariants="off")
        if out.status != "passed":
            raise RuntimeError(f"{target_spec} did not pass the oracle: {out.status} "
                               f"{out.failure or out.error}")
        if traces is None:
            profile = target_profile(target)
            key = tuple(sorted(profile.items()))
            traces = _RECORDED.get(key) or _RECORDED.setdefault(key, _traces(profile=profile))
        start, steps = time.perf_counter(), 0
        for ops in traces:
            failure = oracle.replay(target, ops, invariants="off")
            if failure is not None:
                raise RuntimeError(f"{target_spec} did not pass a replay: {failure}")
            steps += len(ops)
        replay_rate = steps / (time.perf_counter() - start)
    finally:
        target.close()
    return {"oracle_steps_per_s": out.steps / out.seconds, "oracle_steps": out.steps,
            "replay_steps_per_s": replay_rate, "replay_steps": steps}


def c_adapter(directory: str) -> str | None:
    """``exec:`` target string of the example C adapter built in ``directory``, or None
    (no compiler, or not a source checkout)."""
    cc = shutil.which("cc")
    if cc is None or not (C_ADAPTER / "pvhv.c").is_file():
        return None
    out = Path(directory) / "pvhv"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(C_ADAPTER / "pvhv.c"),
                    str(C_ADAPTER / "json.c")], check=True)
    return f"exec:{out}"


def run(exec_targets: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Steps per second for the in-process targets, the example C adapter over stdio (if
    it can be built) and each ``exec:`` target given; all in one process, one after the
    other, each replaying traces of its own workload (the same for the same calls)."""
    with tempfile.TemporaryDirectory(prefix="pvspec-bench-") as tmp:
        built = c_adapter(tmp)
        names = ["spec"] + (["reference"] if reference_available() else []) + (
            [built] if built else []) + list(exec_targets or [])
        results = {name: measure(name) for name in names}
    if built:  # name it for what it is rather than by its temporary path
        results["stdio:c-adapter"] = results.pop(built)
    return results


def main(argv: list[str]) -> None:
    for name, r in run(argv).items():
        print(f"{name:40} oracle {r['oracle_steps_per_s']:8.0f} steps/s   "
              f"replay {r['replay_steps_per_s']:8.0f} steps/s")


if __name__ == "__main__":
    main(sys.argv[1:])
