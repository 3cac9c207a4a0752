"""The plugin's items are collected by pytest itself: node ids address them, and pytest's
own -k, -m, --deselect, --lf and --collect-only apply; bad input is a usage error."""

from __future__ import annotations

import json

import pytest

# pytester's in-process runs drop the modules an inner session imported; one this process
# already held (z3, spec.logic) would then meet a second copy of the spec in the next run.
# Importing everything the plugin uses up front keeps one copy for every inner session.
import conformance.report_html
import conformance.runner  # noqa: F401
from conformance.scenarios import SCENARIOS, area

pytest_plugins = ["pytester"]

ALL = [f"pvspec::scenario::{sc.id}" for sc in SCENARIOS] + ["pvspec::oracle"]


@pytest.fixture(autouse=True)
def _quiet(pytester: pytest.Pytester) -> None:
    """In-process runs meet the plugin already imported: pytest cannot rewrite its asserts
    (it has none) and would say so in every inner run."""
    pytester.makeini("[pytest]\nfilterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")


def _listed(res: pytest.RunResult) -> list[str]:
    """The node ids ``--collect-only -q`` printed."""
    return [ln for ln in res.outlines if "::" in ln and not ln.startswith(("=", " "))]


def test_the_suite_is_collected_beside_the_users_tests(pytester):
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    res = pytester.runpytest("--pvspec-target", "spec", "--co", "-q")
    assert res.ret == 0
    assert _listed(res) == ["test_mine.py::test_mine", *ALL]
    res.stdout.fnmatch_lines([f"{len(ALL) + 1} tests collected in *"])
    # --collect-only starts no target and writes no report
    assert not (pytester.path / "pvspec-report").exists()


def test_marker_keyword_and_deselect_are_pytests_own(pytester):
    res = pytester.runpytest("--pvspec-target", "spec", "--co", "-q", "-m", "psci",
                             "-k", "CPU_ON and not caller", "--deselect",
                             "pvspec::scenario::CPU_ON/ok")
    want = [f"pvspec::scenario::{sc.id}" for sc in SCENARIOS
            if area(sc.row) == "psci" and sc.id.split("/")[0] in ("CPU_ON", "CPU_ON_32")
            and "caller" not in sc.id and sc.id != "CPU_ON/ok"]
    assert want and _listed(res) == want
    res.stdout.fnmatch_lines([f"{len(want)}/{len(ALL)} tests collected "
                              f"({len(ALL) - len(want)} deselected) in *"])


def test_the_oracle_carries_every_area_marker(pytester):
    res = pytester.runpytest("--pvspec-target", "spec", "--co", "-q", "-m",
                             "oracle and memory and evtchn and pvspec")
    assert _listed(res) == ["pvspec::oracle"]


def test_a_node_id_runs_exactly_that_item(pytester):
    pytester.makepyfile(test_mine="def test_mine():\n    assert False\n")
    res = pytester.runpytest("--pvspec-target", "spec", "pvspec::scenario::PSCI_VERSION/ok")
    assert res.ret == 0
    res.assert_outcomes(passed=1)  # the user's failing test was not collected
    res.stdout.fnmatch_lines(["collected 1 item"])
    data = json.loads((pytester.path / "pvspec-report" / "report.json").read_text())
    assert [c["id"] for c in data["checks"] if c["kind"] == "scenario"] == [
        "scenario:PSCI_VERSION/ok"]
    # the rest of the suite was left out on purpose, and the report says so
    assert data["traceability"]["abi:MEM_SHARE"]["reason"] == "deselected"


def test_node_ids_of_groups_and_seeds(pytester):
    res = pytester.runpytest("--pvspec-target", "spec", "--co", "-q", "pvspec::scenario",
                             "-k", "PSCI_VERSION")
    assert _listed(res) == [n for n in ALL if "::PSCI_VERSION/" in n]
    seeds = ("--pvspec-target", "spec", "--pvspec-seeds", "3", "--co", "-q")
    res = pytester.runpytest(*seeds, "pvspec::oracle[seed=1]")
    assert _listed(res) == ["pvspec::oracle[seed=1]"]
    res = pytester.runpytest(*seeds, "pvspec::oracle")
    assert _listed(res) == [f"pvspec::oracle[seed={s}]" for s in range(3)]
    res = pytester.runpytest(*seeds, "pvspec")
    assert len(_listed(res)) == len(SCENARIOS) + 3


def test_path_arguments_select_the_suite_only_when_they_name_it(pytester):
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    res = pytester.runpytest("--pvspec-target", "spec", "--co", "-q", "test_mine.py")
    assert _listed(res) == ["test_mine.py::test_mine"]
    res = pytester.runpytest("--pvspec-target", "spec", "--co", "-q", "test_mine.py",
                             "pvspec::scenario::CPU_ON/ok")
    assert _listed(res) == ["test_mine.py::test_mine", "pvspec::scenario::CPU_ON/ok"]


def test_an_unknown_node_id_is_a_usage_error(pytester):
    res = pytester.runpytest("--pvspec-target", "spec", "pvspec::scenario::NO_SUCH/row")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["ERROR: not found: pvspec::scenario::NO_SUCH/row"])


@pytest.mark.parametrize("bad", ["nonsense", "exec:", "vhost-user:", "exec:'unclosed"])
def test_a_bad_target_is_a_usage_error_listing_the_forms(pytester, bad):
    res = pytester.runpytest_subprocess("--pvspec-target", bad)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert err.startswith("ERROR: --pvspec-target:")
    assert ("accepted targets: reference | spec | qemu-psci | kvm-arm64[:nvhe|:protected] | "
            "xen-arm64 | exec:COMMAND | vhost-user:SOCKET") in err
    assert "Traceback" not in err + res.stdout.str()


def test_the_report_directory_must_be_empty_unless_forced(pytester):
    old = pytester.path / "pvspec-report" / "old.txt"
    old.parent.mkdir()
    old.write_text("an earlier run")
    one = ("--pvspec-target", "spec", "pvspec::scenario::PSCI_VERSION/ok")
    res = pytester.runpytest(*one)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["ERROR: --pvspec-report: report directory * is not empty*"
                              "--pvspec-force*"])
    assert old.exists()
    assert pytester.runpytest(*one, "--co").ret == 0 and old.exists()  # nothing written
    res = pytester.runpytest(*one, "--pvspec-force")
    assert res.ret == 0 and not old.exists()
    assert (old.parent / "report.json").is_file()


def test_last_failed_reruns_the_failed_items(pytester, faulty_adapter):
    pytester.makeini("[pytest]\nfilterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")
    args = ("--pvspec-target", f"exec:{faulty_adapter('SEND_UNBOUND')}", "--pvspec-force",
            "-m", "evtchn and not oracle")
    first = pytester.runpytest(*args)
    failed = first.parseoutcomes()["failed"]
    assert first.ret == 1 and failed >= 1 and first.parseoutcomes()["passed"] > failed
    again = pytester.runpytest(*args, "--lf")
    again.assert_outcomes(failed=failed, deselected=again.parseoutcomes()["deselected"])
    again.stdout.fnmatch_lines([f"run-last-failure: rerun previous {failed} failure*"])
    assert "FAILED pvspec::scenario::EVTCHN_SEND/unbound" in again.stdout.str()
