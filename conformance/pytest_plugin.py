"""pytest plugin: the pvspec conformance suite inside your own pytest session, and the spec
as an oracle for your own tests.

    pytest --pvspec-target exec:./my-adapter [--pvspec-profile ci|thorough]
           [--pvspec-report DIR [--pvspec-force]] [-m memory] [-k CPU_ON]
    pytest --pvspec-target vhost-user:/run/my-device.sock   # a VIRTIO device back-end
    pytest --pvspec-target spec "pvspec::scenario::PSCI_VERSION/ok"   # one item

**Items.**  The suite is genuinely collected, under a collector named ``pvspec`` beside
your own tests, so pytest's own ``-k``, ``-m``, ``--deselect``, ``--lf`` and
``--collect-only`` apply to it.  Node ids:

* ``pvspec::scenario::<ROW>/<case>`` -- one per scenario (markers ``pvspec``,
  ``hypercall`` and the area: ``psci``, ``lifecycle``, ``memory``, ``evtchn``, ``irq``,
  ``device``);
* ``pvspec::oracle`` -- the differential oracle (marker ``oracle``, and every area), or
  with ``--pvspec-seeds N`` the items ``pvspec::oracle[seed=0]`` .. ``[seed=N-1]``, which
  pytest-xdist spreads over the cores (``-n auto``);
* ``pvspec::virtio::<check>`` -- for a vhost-user target, one per VIRTIO check (marker
  ``virtio``).

Name one of these ids (or ``pvspec``, or ``pvspec::scenario``) on the command line to run
just that part.  With no path arguments the whole suite is collected, next to the tests
of the current directory (or ``testpaths``); with path arguments the suite is collected
only when one of them names it.  (How: the ``pvspec`` collector is appended to the
session's own collection report by a ``pytest_make_collect_report`` wrapper, and the
``pvspec...`` arguments, which no file backs, are taken out of ``config.args`` at
configure time and matched against the suite's node ids as pytest matches its own.)

**Verdicts.**  An item whose checks all judged nothing is *skipped* with the reason
(``not judged (capability): ...``); a failed or broken check fails the item with the
requirement, the clause, expected vs observed and the minimal trace.  The report (JSON,
JUnit, Markdown, HTML; see :mod:`conformance.report`) is written to ``--pvspec-report``
(default ``pvspec-report``) as checks finish and at the end; the directory must be empty
unless ``--pvspec-force`` clears it.  Besides the items' checks it holds what the target
cannot show (``views:*``, ``platform:*``), the vhost-user connection precondition, a
target that would not start, and the requirements of the items left out (``selection``,
not judged: deselected).  Under xdist, workers send their checks to the
controller inside the test reports, and only the controller writes.

**Fixtures** for tests of your own, with the spec as the oracle:

* ``pvspec_target`` (session): the target of ``--pvspec-target``, started once and
  closed at the end of the session; the test is skipped when no target is given.
* ``pvspec_oracle`` (function): a :class:`conformance.oracle.Differ` on that target,
  already reset: every ``.hypercall(vm, vcpu, regs)`` and ``.event(name, *args)`` runs on
  the target and on the spec, and any disagreement raises ``ConformanceFailure``::

    from spec.hypercalls import abi, codec

    def test_psci_version(pvspec_oracle):
        regs = codec.encode_call(abi.BY_NAME["PSCI_VERSION"], (), "arm64")
        assert pvspec_oracle.hypercall(0, 0, regs) == 0x10001

Without ``--pvspec-target`` the plugin registers no marker, collects nothing and changes
nothing (the two fixtures exist and skip).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

AREAS = ("hypercall", "psci", "lifecycle", "memory", "evtchn", "irq", "device")
SUITE = "pvspec"  # the name (and node id) of the collector holding the suite

__all__ = ["AREAS", "PvspecFailure", "PvspecItem", "pvspec_oracle", "pvspec_target"]


# --- options and configuration ----------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    from conformance.targets import help_text

    g = parser.getgroup("pvspec", "pvspec conformance (hypervisors and VIRTIO devices)")
    g.addoption("--pvspec-target", default=None, metavar="TARGET",
                help=f"run the conformance suite against {help_text()}")
    g.addoption("--pvspec-profile", default="ci", choices=["ci", "thorough"],
                help="oracle profile (default: ci)")
    g.addoption("--pvspec-report", default="pvspec-report", metavar="DIR",
                help="report directory (default: pvspec-report); must be empty")
    g.addoption("--pvspec-force", action="store_true", default=False,
                help="clear a non-empty --pvspec-report directory first")
    g.addoption("--pvspec-timeout", type=float, default=5.0, metavar="S",
                help="seconds per target call (default: 5)")
    g.addoption("--pvspec-seeds", type=int, default=0, metavar="N",
                help="N oracle items with seeds 0..N-1 (random generation; spread them with "
                     "-n auto) instead of one item with the profile's own settings")


def pytest_configure(config: pytest.Config) -> None:
    text = config.getoption("pvspec_target")
    if not text:
        return
    from conformance.results import UsageError
    from conformance.targets import help_text, parse_target

    try:
        spec = parse_target(text)
    except UsageError as exc:
        raise pytest.UsageError(f"--pvspec-target: {exc}\naccepted targets: {help_text()}") \
            from None
    if spec.family == "linux-virtio":
        raise pytest.UsageError(f"--pvspec-target {text}: a driver target is one guest boot, "
                                f"not a suite of items; run: pvspec conform --target {text}")
    if config.getoption("pvspec_seeds") < 0:
        raise pytest.UsageError("--pvspec-seeds must be 0 or more")
    config.addinivalue_line("markers", "pvspec: a pvspec conformance check")
    config.addinivalue_line("markers", "oracle: the pvspec differential oracle")
    config.addinivalue_line("markers", "virtio: pvspec VIRTIO device checks (vhost-user)")
    for a in AREAS:
        config.addinivalue_line("markers", f"{a}: pvspec checks of the {a} area")
    run = PvspecRun(config, spec)
    config.stash[_RUN] = run
    config.pluginmanager.register(run, "pvspec-run")


# --- the suite's nodes ------------------------------------------------------------------------
@attrs.frozen
class _Entry:
    """One item of the suite, known before any target starts."""

    group: str  # scenario | oracle | virtio
    name: str
    markers: tuple[str, ...]
    covers: tuple[str, ...] = ()  # what it is about (for the report's selection note)
    scenario: Any = None
    seed: int | None = None

    @property
    def nodeid(self) -> str:
        return f"{SUITE}::{self.name}" if self.group == "oracle" else \
            f"{SUITE}::{self.group}::{self.name}"


def _plan(run: PvspecRun) -> list[_Entry]:
    if run.spec.family == "vhost-user":
        from conformance.vhost_user.checks import COVERS
        from conformance.vhost_user.report import check_names

        return [_Entry("virtio", n, ("pvspec", "virtio"), COVERS.get(n, ()))
                for n in check_names(run.kind)]
    from conformance import requirements
    from conformance.scenarios import SCENARIOS, area

    out = [_Entry("scenario", sc.id, ("pvspec", "hypercall", area(sc.row)),
                  (f"abi:{sc.row}", *sc.also), scenario=sc) for sc in SCENARIOS]
    oracle_covers = tuple(r.id for r in requirements.hypervisor())
    marks = ("pvspec", "oracle", *AREAS)
    if run.seeds:
        out += [_Entry("oracle", f"oracle[seed={s}]", marks, oracle_covers, seed=s)
                for s in range(run.seeds)]
    else:
        out.append(_Entry("oracle", "oracle", marks, oracle_covers))
    return out


def _matches(selector: str, nodeid: str, item: bool) -> bool:
    """Whether a command-line node id keeps this node, as pytest matches its own: the node
    itself, a node under it, a collector on the way to it; an id without ``[...]`` names
    every parametrization of an item."""
    if nodeid == selector or nodeid.startswith(f"{selector}::") or \
            selector.startswith(f"{nodeid}::"):
        return True
    return item and "[" not in selector and nodeid.split("[")[0] == selector


class PvspecSuite(pytest.Collector):
    """The collector ``pvspec``: the scenario and virtio groups, and the oracle items."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        run = self.config.stash[_RUN]
        groups: dict[str, list[_Entry]] = {}
        for e in run.plan:
            if run.wanted(e.nodeid, item=True):
                groups.setdefault(e.group, []).append(e)
        for group, entries in groups.items():
            if group == "oracle":
                for e in entries:
                    yield PvspecItem.from_parent(self, name=e.name, entry=e,
                                                 nodeid=e.nodeid)
            else:
                yield PvspecGroup.from_parent(self, name=group, entries=entries)


class PvspecGroup(pytest.Collector):
    def __init__(self, *, entries: Sequence[_Entry], **kw: Any) -> None:
        super().__init__(**kw)
        self.entries = tuple(entries)

    def collect(self) -> Iterator[pytest.Item]:
        for e in self.entries:
            yield PvspecItem.from_parent(self, name=e.name, entry=e, nodeid=e.nodeid)


class PvspecFailure(Exception):
    """A failed or broken check: its text is the whole failure report."""


class PvspecItem(pytest.Item):
    """One scenario, oracle run or VIRTIO check."""

    def __init__(self, *, entry: _Entry, **kw: Any) -> None:
        super().__init__(**kw)
        self.entry = entry
        for m in entry.markers:
            self.add_marker(m)

    def runtest(self) -> None:
        from conformance.report import failure_text

        run = self.config.stash[_RUN]
        checks = run.run_entry(self.entry)
        run.send(self, checks)
        if run.target is None and run.start_error:
            raise PvspecFailure(f"cannot start target {run.spec.text}: {run.start_error}")
        bad = [c for c in checks if c.status in ("failed", "error")]
        if bad:
            raise PvspecFailure("\n\n".join(
                f"{str(c.status).upper()}: {c.id}\n{failure_text(c)}" for c in bad))
        if not checks:
            pytest.skip("not judged (not-reached): the check produced no result")
        if all(c.status == "not-judged" for c in checks):
            pytest.skip("; ".join(f"not judged ({c.reason}): {c.detail}" for c in checks))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, PvspecFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.nodeid


# --- the session: target, report, collection --------------------------------------------------
class PvspecRun:
    """The session's target and report; registered as a plugin when a target is given."""

    def __init__(self, config: pytest.Config, spec: Any) -> None:
        self.config = config
        self.spec = spec  # conformance.targets.TargetSpec
        self.kind = spec.device if spec.family == "vhost-user" else ""
        self.profile: str = config.getoption("pvspec_profile")
        self.timeout: float = config.getoption("pvspec_timeout")
        self.seeds: int = config.getoption("pvspec_seeds")
        self.out = Path(config.getoption("pvspec_report"))
        self.worker = hasattr(config, "workerinput")  # a pytest-xdist worker: never writes
        self.target: Any = None
        self.start_error = ""
        self.closed = False
        self.start = time.perf_counter()
        self.report: Any = None  # the writer's conformance.report.Report (see sessionstart)
        self.ran = 0  # suite items whose outcome the writer has (none: no report)
        self.target_checks: dict[str, Any] = {}  # what the target cannot show; start error
        self.facts: dict[str, Any] = {}  # capabilities, name, protocol of the started target
        self.deselected: dict[str, None] = {}  # requirements of the items left out
        self.notes: list[str] = []
        self.sent: set[str] = set()  # session facts an xdist worker already sent
        self.sent_notes: list[str] = []
        self.expected = 0  # suite items selected to run (not known on an xdist controller)
        self.done = 0
        self.selectors, self.collect_suite = self._take_selectors(config)
        self.plan = _plan(self)
        ids = [e.nodeid for e in self.plan]
        for s in self.selectors:
            if not any(_matches(s, n, item=True) for n in ids):
                raise pytest.UsageError(f"not found: {s}\n(the pvspec suite has no such node "
                                        f"for target {spec.text}; list them with "
                                        f"--collect-only -q)")
        for e in self.plan:
            if not self.wanted(e.nodeid, item=True):
                self.deselected.update(dict.fromkeys(e.covers))

    @staticmethod
    def _take_selectors(config: pytest.Config) -> tuple[list[str], bool]:
        """Take the node ids of the suite out of the path arguments (no file backs them);
        whether to collect the suite at all."""
        here = config.invocation_params.dir
        mine = [a for a in config.args
                if (a == SUITE or a.startswith(f"{SUITE}::"))
                and not (here / SUITE).exists()]
        if mine:  # pytest would look for a file named "pvspec"
            config.args = [a for a in config.args if a not in mine]
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        selectors = [] if SUITE in mine else mine
        return selectors, bool(mine) or not explicit

    def wanted(self, nodeid: str, item: bool) -> bool:
        return not self.selectors or any(_matches(s, nodeid, item) for s in self.selectors)

    # --- hooks ------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
            self, collector: pytest.Collector) -> Generator[None, Any, Any]:
        rep = yield
        if collector is collector.session and self.collect_suite and rep.passed:
            rep.result.append(PvspecSuite.from_parent(collector, name=SUITE, nodeid=SUITE))
        return rep

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """A skip (a check that judged nothing) is located at the item, not in this file."""
        rep = yield
        if isinstance(item, PvspecItem) and rep.skipped and isinstance(rep.longrepr, tuple):
            rep.longrepr = (item.nodeid, None, rep.longrepr[2])
        return rep

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        for i in items:
            if isinstance(i, PvspecItem):
                self.deselected.update(dict.fromkeys(i.entry.covers))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.expected = sum(isinstance(i, PvspecItem) for i in session.items)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        opt = self.config.option
        if self.worker or opt.collectonly or getattr(opt, "showfixtures", False) or \
                getattr(opt, "show_fixtures_per_test", False):
            return
        from conformance.report import Report, prepare_report_dir, provenance
        from conformance.results import UsageError

        try:
            prepare_report_dir(self.out, force=self.config.getoption("pvspec_force"))
        except UsageError as exc:
            msg = str(exc).replace("--force", "--pvspec-force")
            raise pytest.UsageError(f"--pvspec-report: {msg}") from None
        self.report = Report(self.spec.text, profile=self.profile, provenance=provenance(
            self.spec.text, self.profile, range(self.seeds),
            ["pytest", *self.config.invocation_params.args]))
        if self.kind:
            from conformance.requirements import virtio_device

            self.report.universe = {r.id: r.clause for r in virtio_device(self.kind)}
            self.report.abi_version = ""
            self.report.protocol_version = "vhost-user"
            self.report.target_name = f"vhost-user {self.kind} back-end"
            self.report.capabilities = ("virtio", "vhost-user", self.kind)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the xdist controller: fold in what a worker ran (see :meth:`send`)."""
        if self.worker or self.report is None or report.when != "call":
            return
        from conformance.report import check_from_dict

        props = [(k, v) for k, v in report.user_properties
                 if k in ("pvspec_session", "pvspec_check") and isinstance(v, dict)]
        if not props:
            return
        for key, value in props:
            if key == "pvspec_session":
                self._session_facts(value)
            else:
                self.report.checks.append(check_from_dict(value))
        self.ran += 1
        self.write()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.close_target()
        if self.report is None or not self.ran:
            return  # nothing of the suite ran: no report
        stopped = exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldfail) \
            or bool(session.shouldstop)
        if stopped and not self.report.incomplete and (self.done < self.expected
                                                       or not self.expected):
            why = session.shouldfail or session.shouldstop or "interrupted"
            self.report.incomplete = f"the pytest session stopped early: {why}"
        self.write()

    # --- the target ---------------------------------------------------------------------------
    def get_target(self) -> Any:
        """The started target (started on first use), or None when it cannot start."""
        if self.target is not None or self.start_error or self.closed:
            return self.target
        if self.kind:
            from conformance.vhost_user.report import connect_check, platform_check
            from conformance.vhost_user.targets import TargetUnavailable, open_target

            try:
                target = open_target(self.spec.text)
            except TargetUnavailable as exc:
                self.start_error = str(exc) or type(exc).__name__
            else:
                # the precondition of every check: it connects and gets an answer
                pre = connect_check(target)
                self.target_checks[pre.id] = self._trace(pre)
                plat = platform_check()  # what no front-end sees: the order of accesses
                self.target_checks[plat.id] = plat
                if pre.status == "passed":
                    self.target = target
                else:
                    self.start_error = pre.detail
                    target.stop()
        else:
            from conformance.runner import view_checks
            from conformance.target import ExecTarget, TargetError, make_target

            try:
                self.target = make_target(self.spec.text, timeout=self.timeout,
                                          log_dir=str(self.out))
            except TargetError as exc:
                self.start_error = exc.reason
            else:
                self.facts = {
                    "capabilities": sorted(self.target.capabilities),
                    "target_name": getattr(self.target, "target_name", "") or self.target.name,
                    "protocol_version": self.target.protocol_version if isinstance(
                        self.target, ExecTarget) else "in-process"}
                for c in view_checks(self.target):
                    self.target_checks[c.id] = c
                if self.report is not None:
                    self._apply_facts(self.facts)
        if self.start_error:
            self._start_failed()
        return self.target

    def _start_failed(self) -> None:
        from conformance.results import Check, Failure, Status, clip_text

        if any(c.status == "error" for c in self.target_checks.values()):
            return  # the connect check already says why
        reason = clip_text(self.start_error)
        cid = "vhost-user:start" if self.kind else "target:start"
        self.target_checks[cid] = Check(
            cid, "start the target", "virtio" if self.kind else "target", Status.ERROR,
            detail=reason,
            failure=Failure("crash", "VHOST-USER-CONNECT" if self.kind else "abi:decode",
                            "vhost-user.rst/Communication" if self.kind else
                            "pvspec stdio protocol", "the target starts", reason))

    def close_target(self) -> None:
        t, self.target, self.closed = self.target, None, True
        if t is None:
            return
        try:
            (t.close if hasattr(t, "close") else t.stop)()
        except Exception as exc:
            self.notes.append(f"closing the target failed: {exc}")

    # --- running and recording ----------------------------------------------------------------
    def run_entry(self, e: _Entry) -> list[Any]:
        """The entry's checks on the target (none when the target cannot start)."""
        target = self.get_target()
        checks = [] if target is None else [self._record(c) for c in self._guarded(e, target)]
        self.done += 1
        return checks

    def _guarded(self, e: _Entry, target: Any) -> list[Any]:
        """The entry's checks; a defect of the suite is an ``error`` check naming it."""
        from conformance.results import Check, Failure, Status, clip_text

        try:
            if e.group == "virtio":
                from conformance.vhost_user.report import run_one

                return list(run_one(target, e.name))
            if e.scenario is not None:
                from conformance.scenarios import run_scenario

                return [run_scenario(target, e.scenario)]
            from conformance.runner import oracle_check

            if e.seed is None:
                return [oracle_check(target, self.profile)]
            c = oracle_check(target, self.profile, seed=e.seed)
            return [attrs.evolve(c, id=f"{c.id}[seed={e.seed}]")]
        except Exception as exc:
            cid = f"{e.group}:{e.name}"
            what = clip_text(f"{type(exc).__name__}: {exc}")
            covers: Any = e.covers  # (mypy cannot type the attrs converter)
            return [Check(cid, "suite defect", "suite", Status.ERROR, covers,
                          detail=f"suite defect in {cid}: {what}",
                          failure=Failure("suite", cid, "pvspec", "the check runs", what))]

    def _record(self, check: Any) -> Any:
        """The check with its trace saved; on the writer, added to the report."""
        check = self._trace(check)
        if self.report is not None:
            self.report.checks.append(check)
        return check

    def _trace(self, check: Any) -> Any:
        """Save a failure's trace under the report (the path relative to it): a hypervisor
        trace ``pvspec replay`` re-runs, or a vhost-user target's request records."""
        f = check.failure
        if f is None or not f.trace or f.trace_file:
            return check
        try:
            if self.kind:
                from conformance.vhost_user.evidence import write_trace as write_records

                path = write_records(self.out, check.id, f, f.trace, self.spec.text)
            else:
                from conformance.runner import write_trace

                path = write_trace(self.out, check.id, f, f.trace, self.spec.text)
        except OSError as exc:
            self.notes.append(f"cannot write the trace of {check.id}: {exc}")
            return check
        return attrs.evolve(check, failure=attrs.evolve(f, trace_file=path))

    def send(self, item: pytest.Item, checks: Sequence[Any]) -> None:
        """After an item: the writer rewrites the report; an xdist worker puts the checks,
        and the session facts it has not sent yet, into the item's report for the
        controller (:meth:`pytest_runtest_logreport`)."""
        if not self.worker:
            self.ran += 1
            if self.report is not None:
                self.write()
            return
        from conformance.report import check_dict

        facts: dict[str, Any] = {}
        if self.facts and "facts" not in self.sent:
            facts.update(self.facts)
            self.sent.add("facts")
        new = [c for cid, c in self._session_checks().items() if cid not in self.sent]
        facts["checks"] = [check_dict(c) for c in new]
        facts["notes"] = self.notes[len(self.sent_notes):]
        self.sent.update(c.id for c in new)
        self.sent_notes = list(self.notes)
        item.user_properties.append(("pvspec_session", facts))
        item.user_properties.extend(("pvspec_check", check_dict(c)) for c in checks)

    def _session_facts(self, facts: dict[str, Any]) -> None:
        from conformance.report import check_from_dict

        self._apply_facts(facts)
        for d in facts.get("checks", ()):
            c = check_from_dict(d)
            if c.id == "selection":  # the same on every worker
                self.deselected.update(dict.fromkeys(c.covers))
            else:
                self.target_checks.setdefault(c.id, c)
        self.notes += [n for n in facts.get("notes", ()) if n not in self.notes]

    def _apply_facts(self, facts: dict[str, Any]) -> None:
        rep = self.report
        if facts.get("capabilities") and not rep.capabilities:
            rep.capabilities = tuple(facts["capabilities"])
        rep.target_name = rep.target_name or facts.get("target_name", "")
        rep.protocol_version = rep.protocol_version or facts.get("protocol_version", "")

    def _session_checks(self) -> dict[str, Any]:
        """Checks about the session rather than one item: what the target cannot show, a
        target that did not start, the suite items left out (``selection``)."""
        out = dict(self.target_checks)
        if self.deselected:
            from conformance.results import NotJudged, not_judged

            out["selection"] = not_judged(
                "selection", "suite items left out of this pytest session", "suite",
                self.deselected, NotJudged.DESELECTED,
                "not selected (node ids, -k, -m, --deselect, --lf)")
        return out

    def write(self) -> None:
        """The writer: the report, with the session checks, rewritten atomically."""
        rep = self.report
        session = self._session_checks()
        items = [c for c in rep.checks if c.id not in session]
        rep.checks = [*items, *session.values()]
        rep.notes += [n for n in self.notes if n not in rep.notes]
        rep.seconds = time.perf_counter() - self.start
        try:
            rep.write(self.out)
        except OSError as exc:
            msg = f"cannot write the report: {exc}"
            if msg not in rep.notes:
                rep.notes.append(msg)


_RUN = pytest.StashKey[PvspecRun]()


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pvspec_target(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The target of ``--pvspec-target``, started once per session and closed at its end
    (the same object the suite's items use).  Skips the test when no target is given."""
    run = request.config.stash.get(_RUN, None)
    if run is None:
        pytest.skip("no --pvspec-target given (pvspec_target needs one)")
    target = run.get_target()
    if target is None:
        pytest.fail(f"cannot start target {run.spec.text}: {run.start_error}", pytrace=False)
    yield target
    run.close_target()


@pytest.fixture
def pvspec_oracle(pvspec_target: Any, request: pytest.FixtureRequest) -> Any:
    """A :class:`conformance.oracle.Differ` comparing ``pvspec_target`` with the spec,
    reset to the initial state: ``.hypercall(vm, vcpu, regs)`` and ``.event(name, *args)``
    raise ``ConformanceFailure`` on any disagreement."""
    from conformance.oracle import SIM_CONFIG, Differ

    run = request.config.stash[_RUN]
    if run.kind:
        pytest.skip(f"pvspec_oracle needs a hypervisor target, not {run.spec.text}")
    d = Differ(pvspec_target, SIM_CONFIG)
    d.reset()
    return d
