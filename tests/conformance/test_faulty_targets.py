"""Every planted bug in the C adapter is caught by the ci profile, with a shrunk trace."""

from __future__ import annotations

import pytest

from conformance import oracle
from conformance.target import ExecTarget

# What each bug must be reported as: (status, requirement prefix)
EXPECTED = {
    "NO_PRIV_CHECK": ("failed", "abi:"),
    "RO_SHARE_RW": ("failed", "invariant:write_within_grant"),
    "RECLAIM_RETRIEVED": ("failed", "abi:MEM_RECLAIM"),
    "DESTROY_FREES_MAPPED": ("failed", "abi:"),
    "SEND_UNBOUND": ("failed", "abi:EVTCHN_SEND"),
    "ERROR_PRECEDENCE": ("failed", "abi:"),
    "NO_QUOTA": ("failed", "abi:MEM_POPULATE"),
    "CRASH_MALFORMED": ("error", "abi:"),
}


def test_correct_adapter_passes_the_oracle(c_adapter):
    target = ExecTarget(str(c_adapter))
    try:
        out = oracle.run_oracle(target, profile="ci")
    finally:
        target.close()
    assert out.status == "passed", (out.failure, out.error)
    assert out.steps > 1000


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_planted_bug_is_caught(faulty_adapter, bug):
    target = ExecTarget(str(faulty_adapter(bug)))
    try:
        out = oracle.run_oracle(target, profile="ci")
    finally:
        target.close()
    status, requirement = EXPECTED[bug]
    assert out.status == status, (bug, out)
    f = out.failure
    assert f is not None and f.requirement.startswith(requirement), f
    assert f.expected != f.observed and f.clause
    assert 1 <= len(out.trace) <= max(out.shrunk_from, 1)
    assert len(out.trace) <= 20, [op.get("call") for op in out.trace]
    # the minimal trace really is a counterexample: it replays on the faulty target...
    target = ExecTarget(str(faulty_adapter(bug)))
    try:
        again = oracle.replay(target, list(out.trace))
    finally:
        target.close()
    assert again is not None and again.requirement == f.requirement
