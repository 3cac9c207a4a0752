"""The plugin's fixtures (the spec as the oracle of a team's own tests) and its verdicts for
checks that judged nothing."""

from __future__ import annotations

import json
import sys

import pytest

# pytester's in-process runs drop the modules an inner session imported; one this process
# already held (z3, spec.logic) would then meet a second copy of the spec in the next run.
# Importing everything the plugin uses up front keeps one copy for every inner session.
import conformance.report_html
import conformance.runner  # noqa: F401

pytest_plugins = ["pytester"]

USER_TESTS = """
from conformance.oracle import Differ
from spec.hypercalls import abi, codec


def test_psci_version(pvspec_oracle):
    assert isinstance(pvspec_oracle, Differ)
    regs = codec.encode_call(abi.BY_NAME["PSCI_VERSION"], (), "arm64")
    assert pvspec_oracle.hypercall(0, 0, regs) == 0x10001
    assert "abi:PSCI_VERSION" in pvspec_oracle.judged


def test_target(pvspec_target):
    assert "hypercall" in pvspec_target.capabilities
"""

# A tiny adapter that can do nothing but reset and events: every check needs the hypercall
# capability it lacks.  It notes its shutdown in a file, to show the target was closed.
NO_HYPERCALL_ADAPTER = """
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    reply = {"type": m["type"] + "_ok", "in_reply_to": m["msg_id"]}
    if m["type"] == "init":
        reply.update(protocol_version="1.0", abi_version="1.0", capabilities=["events"],
                     name="no-hypercall")
    if m["type"] == "shutdown":  # written before the reply: the suite may end us then
        with open(sys.argv[1], "w") as f:
            f.write("closed")
    print(json.dumps(reply), flush=True)
    if m["type"] == "shutdown":
        break
"""


@pytest.fixture(autouse=True)
def _quiet(pytester: pytest.Pytester) -> None:
    """In-process runs meet the plugin already imported: pytest cannot rewrite its asserts
    (it has none) and would say so in every inner run."""
    pytester.makeini("[pytest]\nfilterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")


def _no_hypercall_target(pytester: pytest.Pytester) -> str:
    script = pytester.path / "adapter.py"
    script.write_text(NO_HYPERCALL_ADAPTER)
    return f"exec:{sys.executable} {script} {pytester.path / 'shutdown.txt'}"


def test_the_oracle_fixture_compares_a_users_calls_with_the_spec(pytester):
    pytester.makepyfile(test_mine=USER_TESTS)
    res = pytester.runpytest("--pvspec-target", "reference", "test_mine.py")
    res.assert_outcomes(passed=2)
    # only the user's tests ran: no suite item, so no report
    assert not (pytester.path / "pvspec-report" / "report.json").exists()


def test_the_oracle_fixture_raises_on_a_disagreement(pytester, faulty_adapter):
    pytester.makepyfile(test_mine="""
        from conformance.scenarios import BOOT
        from spec.hypercalls import abi, codec


        def call(d, vm, row, *args):
            return d.hypercall(vm, 0, codec.encode_call(abi.BY_NAME[row], args, "arm64"))


        def test_send_on_an_unbound_port(pvspec_oracle):
            for op in BOOT:
                call(pvspec_oracle, op.vm, op.row, *op.args)
            call(pvspec_oracle, 1, "EVTCHN_ALLOC_UNBOUND", 2)
            call(pvspec_oracle, 1, "EVTCHN_SEND", 0)
    """)
    res = pytester.runpytest("--pvspec-target", f"exec:{faulty_adapter('SEND_UNBOUND')}",
                             "test_mine.py")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*ConformanceFailure*abi:EVTCHN_SEND*"])


def test_the_fixtures_skip_without_a_target(pytester):
    pytester.makepyfile(test_mine=USER_TESTS)
    res = pytester.runpytest("-rs")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*no --pvspec-target given*"])


def test_the_target_fixture_is_shared_and_closed_at_session_end(pytester):
    pytester.makepyfile(test_mine="""
        def test_one(pvspec_target, pvspec_oracle):
            assert pvspec_oracle.target is pvspec_target
            assert pvspec_target.capabilities == {"events"}
            assert pvspec_target.target_name == "no-hypercall"
    """)
    res = pytester.runpytest("--pvspec-target", _no_hypercall_target(pytester),
                             "test_mine.py", "pvspec::scenario::PSCI_VERSION/ok")
    res.assert_outcomes(passed=1, skipped=1)
    assert (pytester.path / "shutdown.txt").read_text() == "closed"


def test_an_item_that_judged_nothing_is_skipped_with_the_reason(pytester):
    res = pytester.runpytest("--pvspec-target", _no_hypercall_target(pytester), "-rs",
                             "pvspec::scenario::PSCI_VERSION/ok", "pvspec::oracle")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["SKIPPED [[]1[]] pvspec::scenario::PSCI_VERSION/ok: not judged "
                              "(capability): target lacks the hypercall capability"])
    data = json.loads((pytester.path / "pvspec-report" / "report.json").read_text())
    items = [c for c in data["checks"] if c["kind"] in ("scenario", "oracle")]
    assert [(c["status"], c["reason"]) for c in items] == [("not-judged", "capability")] * 2
    assert data["summary"]["not-judged"] >= 2 and data["summary"]["passed"] == 0
    assert data["verdict"] == "incomplete"
    assert data["capabilities"] == ["events"] and data["target_name"] == "no-hypercall"
    assert data["protocol_version"] == "1.0"
