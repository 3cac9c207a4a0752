"""pytest plugin: run the pvspec conformance suite inside your own pytest.

    pytest --pvspec-target exec:./my-adapter [--pvspec-profile ci|thorough]
           [--pvspec-report DIR] [-m memory]

Adds one test item per scenario (markers per area: hypercall, psci, lifecycle, memory,
evtchn, irq, device) and one for the differential oracle (marker ``oracle``), all marked
``pvspec``.  The full report (JSON, JUnit, Markdown, HTML) is written to
``--pvspec-report`` (default ``pvspec-report``) at the end of the session.  Without
``--pvspec-target`` the plugin does nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import pytest

AREAS = ("hypercall", "psci", "lifecycle", "memory", "evtchn", "irq", "device")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("pvspec", "pvspec hypervisor conformance")
    g.addoption("--pvspec-target", default=None,
                help="run the conformance suite against reference | spec | exec:COMMAND")
    g.addoption("--pvspec-profile", default="ci", choices=["ci", "thorough"])
    g.addoption("--pvspec-report", default="pvspec-report", help="report directory")
    g.addoption("--pvspec-timeout", type=float, default=5.0, help="seconds per target call")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pvspec: a pvspec conformance check")
    config.addinivalue_line("markers", "oracle: the pvspec differential oracle")
    for a in AREAS:
        config.addinivalue_line("markers", f"{a}: pvspec checks of the {a} hypercalls")


class _Run:
    """The target and the report, shared by every item of the session."""

    def __init__(self, config: pytest.Config) -> None:
        from conformance.report import Report

        self.spec = config.getoption("pvspec_target")
        self.profile = config.getoption("pvspec_profile")
        self.timeout = config.getoption("pvspec_timeout")
        self.out = Path(config.getoption("pvspec_report"))
        self.report = Report(self.spec, profile=self.profile)
        self.target: Any = None
        self.start_error = ""
        self.start = time.perf_counter()

    def get_target(self) -> Any:
        from conformance.target import TargetError, make_target

        if self.target is None and not self.start_error:
            try:
                self.target = make_target(self.spec, timeout=self.timeout,
                                          log_dir=str(self.out))
                self.report.capabilities = tuple(sorted(self.target.capabilities))
            except TargetError as exc:
                self.start_error = exc.reason
        return self.target

    def record(self, check: Any) -> Any:
        from conformance.runner import write_trace

        f = check.failure
        if f is not None and f.trace:
            path = write_trace(self.out / "traces", check.id, f, self.spec)
            check = attrs.evolve(check, failure=attrs.evolve(f, trace_file=path))
        self.report.checks.append(check)
        self.report.seconds = time.perf_counter() - self.start
        self.report.write(self.out)
        return check

    def close(self) -> None:
        if self.target is not None:
            self.target.close()
        self.report.seconds = time.perf_counter() - self.start
        self.report.write(self.out)


_RUN = pytest.StashKey[_Run]()


class PvspecFailure(Exception):
    pass


class PvspecItem(pytest.Item):
    def __init__(self, *, scenario: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario

    def runtest(self) -> None:
        from conformance.runner import _oracle_check
        from conformance.scenarios import run_scenario

        run = self.config.stash[_RUN]
        target = run.get_target()
        if target is None:
            raise PvspecFailure(f"cannot start target {run.spec}: {run.start_error}")
        check = (run_scenario(target, self.scenario) if self.scenario is not None
                 else _oracle_check(target, run.profile))
        check = run.record(check)
        if check.status == "skipped":
            pytest.skip(check.detail)
        if check.status in ("failed", "error"):
            from conformance.report import _failure_text

            raise PvspecFailure(f"{check.status.upper()}: {check.id}\n{_failure_text(check)}")

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, PvspecFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"pvspec: {self.name}"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not config.getoption("pvspec_target"):
        return
    from conformance.scenarios import SCENARIOS, area

    config.stash[_RUN] = _Run(config)
    new: list[pytest.Item] = []
    for sc in SCENARIOS:
        item = PvspecItem.from_parent(session, name=f"pvspec::{sc.id}", scenario=sc)
        for m in ("pvspec", "hypercall", area(sc.row)):
            item.add_marker(m)
        new.append(item)
    item = PvspecItem.from_parent(session, name="pvspec::oracle")
    for m in ("pvspec", "oracle", "hypercall", *AREAS):
        item.add_marker(m)
    new.append(item)
    # honour -m / -k for the items we add
    selected = [i for i in new if _selected(config, i)]
    items.extend(selected)


def _selected(config: pytest.Config, item: pytest.Item) -> bool:
    from _pytest.mark import KeywordMatcher, MarkMatcher
    from _pytest.mark.expression import Expression

    m = config.getoption("markexpr")
    if m and not Expression.compile(m).evaluate(MarkMatcher.from_markers(item.iter_markers())):
        return False
    k = config.getoption("keyword")
    return not (k and not Expression.compile(k).evaluate(KeywordMatcher.from_item(item)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is not None:
        run.close()
