"""pytest plugin: run the pvspec conformance suite inside your own pytest.

    pytest --pvspec-target exec:./my-adapter [--pvspec-profile ci|thorough]
           [--pvspec-report DIR] [-m memory]
    pytest --pvspec-target vhost-user:/run/my-device.sock   # a VIRTIO device back-end

For a hypervisor: one test item per scenario (markers per area: hypercall, psci, lifecycle,
memory, evtchn, irq, device) and one for the differential oracle (marker ``oracle``).  For
a vhost-user target (``vhost-user:SOCKET`` or a managed one such as
``qemu-vhost-user-blk``): one item per VIRTIO check (marker ``virtio``).  All are marked
``pvspec``.  The full report (JSON, JUnit, Markdown, HTML) is written to
``--pvspec-report`` (default ``pvspec-report``) as checks finish.

Long campaigns: ``--pvspec-seeds N`` makes N oracle items, one per seed, and pytest-xdist
spreads them over the cores (``-n auto``); workers send their checks to the controller in
the test reports, and only the controller writes the report.  Without
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
                help="run the conformance suite against reference | spec | exec:COMMAND | "
                     "vhost-user:SOCKET | qemu-vhost-user-blk | virtiofsd")
    g.addoption("--pvspec-profile", default="ci", choices=["ci", "thorough"])
    g.addoption("--pvspec-report", default="pvspec-report", help="report directory")
    g.addoption("--pvspec-timeout", type=float, default=5.0, help="seconds per target call")
    g.addoption("--pvspec-seeds", type=int, default=0,
                help="N oracle items with seeds 0..N-1 (random generation; spread them with "
                     "-n auto) instead of one item with the profile's own settings")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pvspec: a pvspec conformance check")
    config.addinivalue_line("markers", "oracle: the pvspec differential oracle")
    config.addinivalue_line("markers", "virtio: pvspec VIRTIO device checks (vhost-user)")
    for a in AREAS:
        config.addinivalue_line("markers", f"{a}: pvspec checks of the {a} hypercalls")
    if config.getoption("pvspec_target"):
        config.stash[_RUN] = _CONTROLLER["run"] = _Run(config)


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
        self.worker = hasattr(config, "workerinput")  # a pytest-xdist worker
        if self.vhost_user:
            from conformance.vhost_user.report import universe

            self.kind = "fs" if "virtiofsd" in self.spec else "blk"  # vhost-user:SOCKET: blk
            self.report.universe = universe(self.kind)
            self.report.abi_version = ""
            self.report.protocol_version = "vhost-user"
            self.report.capabilities = ("virtio", "vhost-user", self.kind)

    @property
    def vhost_user(self) -> bool:
        from conformance.cli import _is_vhost_user

        return _is_vhost_user(self.spec)

    def get_target(self) -> Any:
        from conformance.target import TargetError, make_target

        if self.vhost_user:
            return self._get_vhost_user()
        if self.target is None and not self.start_error:
            try:
                self.target = make_target(self.spec, timeout=self.timeout,
                                          log_dir=str(self.out))
                self.report.capabilities = tuple(sorted(self.target.capabilities))
            except TargetError as exc:
                self.start_error = exc.reason
        return self.target

    def _get_vhost_user(self) -> Any:
        from conformance.vhost_user.targets import TargetUnavailable, open_target

        if self.target is None and not self.start_error:
            try:
                self.target = open_target(self.spec)
            except TargetUnavailable as exc:
                self.start_error = str(exc)
        return self.target

    def record(self, check: Any) -> Any:
        from conformance.runner import write_trace

        f = check.failure
        if f is not None and f.trace:
            path = write_trace(self.out / "traces", check.id, f, self.spec)
            check = attrs.evolve(check, failure=attrs.evolve(f, trace_file=path))
        if not self.worker:
            self.add(check)
        return check

    def add(self, check: Any) -> None:
        self.report.checks.append(check)
        self.report.seconds = time.perf_counter() - self.start
        self.report.write(self.out)

    def close(self) -> None:
        if self.target is not None:
            if self.vhost_user:
                self.target.stop()
            else:
                self.target.close()
        if not self.worker:
            self.report.seconds = time.perf_counter() - self.start
            self.report.write(self.out)


_RUN = pytest.StashKey[_Run]()


class PvspecFailure(Exception):
    pass


class PvspecItem(pytest.Item):
    def __init__(self, *, scenario: Any = None, virtio_check: str = "", seed: int | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.virtio_check = virtio_check
        self.seed = seed

    def runtest(self) -> None:
        from conformance.report import _failure_text
        from conformance.runner import _oracle_check
        from conformance.scenarios import run_scenario

        run = self.config.stash[_RUN]
        target = run.get_target()
        if target is None:
            raise PvspecFailure(f"cannot start target {run.spec}: {run.start_error}")
        if self.virtio_check:
            checks = _virtio_checks(target, self.virtio_check)
        elif self.scenario is not None:
            checks = [run_scenario(target, self.scenario)]
        elif self.seed is None:
            checks = [_oracle_check(target, run.profile)]
        else:
            c = _oracle_check(target, run.profile, seed=self.seed)
            checks = [attrs.evolve(c, id=f"{c.id}[seed={self.seed}]")]
        checks = [run.record(c) for c in checks]
        if run.worker:
            from conformance.report import check_dict

            self.user_properties += [("pvspec_check", check_dict(c)) for c in checks]
            self.user_properties.append(("pvspec_capabilities", run.report.capabilities))
        bad = [c for c in checks if c.status in ("failed", "error")]
        if bad:
            raise PvspecFailure("\n\n".join(f"{c.status.upper()}: {c.id}\n{_failure_text(c)}"
                                             for c in bad))
        if all(c.status == "skipped" for c in checks):
            pytest.skip("; ".join(c.detail for c in checks))

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

    run = config.stash[_RUN]
    new: list[pytest.Item] = []
    if run.vhost_user:
        from conformance.vhost_user.checks import BLK_CHECKS, FS_CHECKS

        kind = "fs" if "virtiofsd" in run.spec else "blk"  # vhost-user:SOCKET speaks blk
        for name in (FS_CHECKS if kind == "fs" else BLK_CHECKS):
            item = PvspecItem.from_parent(session, name=f"pvspec::virtio::{name}",
                                          virtio_check=name)
            item.add_marker("pvspec")
            item.add_marker("virtio")
            new.append(item)
        items.extend(i for i in new if _selected(config, i))
        return
    for sc in SCENARIOS:
        item = PvspecItem.from_parent(session, name=f"pvspec::{sc.id}", scenario=sc)
        for m in ("pvspec", "hypercall", area(sc.row)):
            item.add_marker(m)
        new.append(item)
    seeds = config.getoption("pvspec_seeds")
    for seed in range(seeds) if seeds else [None]:
        name = "pvspec::oracle" if seed is None else f"pvspec::oracle[seed={seed}]"
        item = PvspecItem.from_parent(session, name=name, seed=seed)
        for m in ("pvspec", "oracle", "hypercall", *AREAS):
            item.add_marker(m)
        new.append(item)
    # honour -m / -k for the items we add
    selected = [i for i in new if _selected(config, i)]
    items.extend(selected)


def _virtio_checks(target: Any, name: str) -> list[Any]:
    """One VIRTIO check on a vhost-user target, as report checks (one per rule)."""
    from conformance.vhost_user.checks import run_checks
    from conformance.vhost_user.report import to_checks

    t0 = time.perf_counter()
    results = run_checks(target, (name,))
    return to_checks(results, time.perf_counter() - t0)


def _selected(config: pytest.Config, item: pytest.Item) -> bool:
    from _pytest.mark import KeywordMatcher, MarkMatcher
    from _pytest.mark.expression import Expression

    m = config.getoption("markexpr")
    if m and not Expression.compile(m).evaluate(MarkMatcher.from_markers(item.iter_markers())):
        return False
    k = config.getoption("keyword")
    return not (k and not Expression.compile(k).evaluate(KeywordMatcher.from_item(item)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On the xdist controller: fold in the checks a worker ran (see the module doc)."""
    props = [v for k, v in report.user_properties if k == "pvspec_check"]
    if not props or report.when != "call":
        return
    run = _CONTROLLER.get("run")
    if run is not None and not run.worker:
        from conformance.report import check_from_dict

        caps = [v for k, v in report.user_properties if k == "pvspec_capabilities"]
        if caps and not run.report.capabilities:
            run.report.capabilities = tuple(caps[0])
        for d in props:
            run.add(check_from_dict(d))


_CONTROLLER: dict[str, _Run] = {}  # the session's run, for the logreport hook


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is not None:
        run.close()
