"""Re-run a counterexample on the concrete spec and say which rules it breaks.

A counterexample file (written by ``pvspec prove --counterexamples DIR`` or by a failing
state machine) holds a concrete pre-state and one call or event.  Replaying it on the
concrete spec must show the same broken rule the proof reported: the two interpretations
of the spec agree, and the case becomes a regression test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spec import checking, logic, machine
from spec.hypercalls import abi, codec
from spec.prove import state_from_json
from spec.state import Config
from spec.transitions import Caller


def load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def run_case(case: dict[str, Any]) -> list[checking.Violation]:
    """The rules the case's step breaks on the concrete spec (empty: it is fixed),
    ``indices_in_range`` included: the step used a table slot that does not exist."""
    cfg = Config(**case["config"])
    pre = state_from_json(cfg, case["pre_state"])
    if "event" in case:
        with logic.index_log() as log:
            post = machine.event(pre, case["event"], *case["args"])
        return [*checking.check_step(pre, Caller(0, 0), None, post, None),
                *checking.index_violations(log)]
    vm, vcpu = case["caller"]
    conv = case["conv"]
    regs = {k: int(v) for k, v in case["regs"].items()}
    with logic.index_log() as log:
        post, out = machine.step(pre, vm, vcpu, regs, conv)
    decoded = codec.decode(regs, conv)
    row = decoded.row if isinstance(decoded, codec.Call) else None
    args = decoded.args if isinstance(decoded, codec.Call) else ()
    ret = out[abi.CONVENTIONS[conv]["result"][0]]
    found = [*checking.check_step(pre, Caller(vm, vcpu), row, post, ret, args),
             *checking.index_violations(log)]
    if case.get("kind") == "noninterference":
        # the unchanged rule for every observer; with a second pre-state, its twin
        second = case.get("second_pre_state")
        found += checking.noninterference_step(
            pre, vm, vcpu, regs, conv, post, out,
            None if second is None else state_from_json(cfg, second), decoded)
    return found
