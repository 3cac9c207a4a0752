"""The ``pvspec`` command line: a thin front over spec/ and conformance/.

Exit status: 0 passed, 1 failed, 2 error, incomplete or bad usage, 130 interrupted by
Ctrl-C (SIGINT).  Every run that starts writes its report, however it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from conformance import targets as target_specs
from conformance.results import PvspecError, RunInterrupted, UsageError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_SIGINT, EXIT_PIPE = 0, 1, 2, 130, 141
HEARTBEAT_S = 10.0


# --- output -----------------------------------------------------------------------------------
class Progress:
    """Progress of a long run on stderr: a live line with a count, a total and an estimate
    on a terminal; a plain heartbeat line every ``HEARTBEAT_S`` seconds otherwise (CI
    logs show the run is alive without drowning in lines).  ``-q`` silences both."""

    def __init__(self, what: str, total: int | None = None, quiet: bool = False,
                 verbose: bool = False, stream: Any = None) -> None:
        self.what, self.total, self.quiet, self.verbose = what, total, quiet, verbose
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.last = 0, ""
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not quiet and not self.tty:
            self._thread = threading.Thread(target=self._beat, daemon=True,
                                            name="pvspec-heartbeat")
            self._thread.start()

    def _eta(self) -> str:
        elapsed = time.monotonic() - self.start
        if not self.total or not self.done or self.done >= self.total:
            return f"{elapsed:.0f} s"
        left = elapsed / self.done * (self.total - self.done)
        return f"{elapsed:.0f} s, about {left:.0f} s left"

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else str(self.done)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._write(f"pvspec: {self.what}: {self._count()} done ({self._eta()})"
                        + (f"; last {self.last}" if self.last else "") + "\n")

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()

    def step(self, name: str, status: str = "") -> None:
        self.done += 1
        self.last = name
        if self.quiet:
            return
        if self.verbose:
            self._write(f"{'' if not self.tty else chr(13)}  {status:10} {name}\n")
        elif self.tty:
            self._write(f"\r  {self._count()} {self.what} ({self._eta()}) "
                        f"{status:10} {name[:50]:<50}")

    def close(self) -> None:
        self._stop.set()
        if self.tty and not self.quiet and self.done:
            self._write("\n")


def _print(*args: Any, file: Any = None) -> None:
    print(*args, file=file, flush=True)


# --- signals: SIGTERM and the time limit end a run like Ctrl-C does ----------------------------
@contextlib.contextmanager
def run_guard(time_limit: float | None) -> Iterator[None]:
    """SIGTERM and the ``--time-limit`` alarm raise :class:`RunInterrupted` in the main
    thread, so the run in progress stops, closes its target and writes its report."""
    def on_term(signum: int, frame: Any) -> None:
        raise RunInterrupted("terminated by SIGTERM")

    def on_alarm(signum: int, frame: Any) -> None:
        raise RunInterrupted(f"time limit of {time_limit:g} s reached (--time-limit)")

    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, on_term) if main else None
    old_alarm = signal.signal(signal.SIGALRM, on_alarm) if main and time_limit else None
    if main and time_limit:
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        yield
    finally:
        if main:
            if time_limit:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_alarm or signal.SIG_DFL)
            signal.signal(signal.SIGTERM, old_term or signal.SIG_DFL)


# --- argument types ---------------------------------------------------------------------------
def _target(text: str) -> str:
    try:
        return target_specs.parse_target(text).text
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive, finite number of "
                                         f"seconds")
    return x


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            x = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if x < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
        return x

    parse.__name__ = f"integer >= {minimum}"
    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


# --- prove ------------------------------------------------------------------------------------
def _prove(args: argparse.Namespace, json_file: str | None, cex_dir: str | None,
           quiet: bool) -> tuple[list[Any], float]:
    from spec import prove

    bar = Progress("proof batches", len(prove._jobs()), quiet=quiet,
                   verbose=getattr(args, "verbose", False))
    start = time.perf_counter()
    try:
        results = prove.prove_all(jobs=args.jobs, cex_dir=cex_dir,
                                  progress=lambda batch: bar.step(batch[0].hypercall),
                                  every_size=not getattr(args, "bounded", False),
                                  larger=getattr(args, "larger", False))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if json_file:
        from conformance.report import atomic_write

        failed = [r for r in results if r.status != "proved"]
        bounded = [r for r in results if r.bounded]
        atomic_write(Path(json_file), json.dumps({
            "obligations": len(results), "proved": len(results) - len(failed),
            "failed": len(failed), "seconds": seconds, "jobs": args.jobs,
            # false only when every obligation was settled for every model size
            "bounded": bool(bounded), "every_size": len(results) - len(bounded),
            **({"bound": _proof_bound()} if bounded else {}),
            "results": [{"group": r.group, "invariant": r.invariant, "hypercall": r.hypercall,
                         "clause": r.clause, "status": r.status, "seconds": r.seconds,
                         "paths": r.paths, "bounded": r.bounded,
                         "counterexample": r.counterexample,
                         **({"detail": r.detail} if r.detail else {})}
                        for r in results]}, indent=1))
    return results, seconds


def _proof_scope(payload: dict[str, Any]) -> dict[str, Any]:
    """What the proofs of a ``pvspec prove --json`` payload cover: every model size, or
    (for some obligations) the bound."""
    bounded = payload.get("bounded", True)
    return {"bounded": bounded, "every_size": payload.get("every_size", 0),
            "obligations": payload.get("obligations", len(payload.get("results", []))),
            **({k: v for k, v in _proof_bound().items() if k != "bounded"} if bounded else {})}


def _proof_bound() -> dict[str, Any]:

    from spec import prove

    return {"bounded": True, **prove.PROOF_CONFIG.sizes()}


def cmd_prove(args: argparse.Namespace) -> int:
    if args.json:
        from conformance.report import check_writable_file

        check_writable_file(args.json)
    with run_guard(args.time_limit):
        results, seconds = _prove(args, args.json, args.counterexamples, args.quiet)
    failed = [r for r in results if r.status != "proved"]
    if args.verbose:
        _print(f"{'group':10} {'hypercall':28} {'invariant':36} {'status':8} {'seconds':>8}")
        for r in results:
            _print(f"{r.group:10} {r.hypercall:28} {r.invariant:36} {r.status:8} "
                   f"{r.seconds:8.3f}")
    for r in failed:
        _print(f"NOT PROVED {r.group}:{r.hypercall}:{r.invariant} ({r.status}) [{r.clause}] "
               f"{r.detail}")
        if r.counterexample:
            _print("  counterexample:", json.dumps({k: v for k, v in r.counterexample.items()
                                                   if k not in ("pre_state",
                                                                "second_pre_state")}))
    every = sum(1 for r in results if not r.bounded)
    _print(f"{len(results)} obligations: {len(results) - len(failed)} proved, "
           f"{len(failed)} not proved, {seconds:.1f} s wall on {args.jobs} processes; "
           f"{every} settled for every model size, {len(results) - every} for the bound "
           f"({_bound_text()})")
    return EXIT_PASS if not failed else EXIT_FAIL


def _bound_text() -> str:
    b = _proof_bound()
    return ", ".join(f"{k}={v}" for k, v in b.items() if k != "bounded")


def proof_checks(payload: dict[str, Any]) -> list[Any]:
    """Proof results (``pvspec prove --json``) as report checks: a proof judges exactly the
    requirements it proves."""
    from conformance.results import Check, Failure, Status
    from spec import invariants, prove
    from spec.hypercalls import abi

    out = []
    for r in payload["results"]:
        inv = r["invariant"]
        kind = "invariant" if inv in invariants.BY_NAME else (
            "step" if inv in invariants.STEP_BY_NAME else
            "codec" if inv in prove.CODEC_OBLIGATIONS else "noninterference")
        covers = [f"{kind}:{inv}"]
        # a proof through Xen's codec (target xen:<row>) proves that row's call too
        row = r["hypercall"].removeprefix(prove.XEN)
        if row in abi.BY_NAME:
            covers.append(f"abi:{row}")
        elif r["hypercall"] in abi.EVENT_BY_NAME:
            covers.append(f"event:{r['hypercall']}")
        elif r["hypercall"] == "UNKNOWN_FUNCTION_ID":
            covers.append("abi:decode")
        status = {"proved": Status.PROVED, "failed": Status.FAILED}.get(r["status"],
                                                                        Status.ERROR)
        cex = r.get("counterexample")
        failure = Failure("proof", covers[0], r["clause"], "proved", r["status"]) \
            if status is not Status.PROVED else None
        out.append(Check(f"proof:{r['group']}:{r['hypercall']}:{inv}",
                         f"{inv} for {r['hypercall']}", "proof", status, covers,
                         covers if status is Status.PROVED else (), None, r["clause"],
                         "Z3 proof, bounded model" if r.get("bounded", True)
                         else "Z3 proof, every model size", r["seconds"],
                         detail=json.dumps(cex)[:2000] if cex else "", failure=failure))
    return out


# --- conform / verify ---------------------------------------------------------------------
def _report_line(report: Any, quiet: bool) -> None:
    from conformance.report import failure_text

    if not quiet:
        for c in report.checks:
            if str(c.status) in ("failed", "error"):
                _print(f"{str(c.status).upper()} {c.id}")
                _print("  " + failure_text(c).replace("\n", "\n  "))
        for note in report.notes:
            _print(f"note: {note}")
    _print(report.headline())


def _prepare_outputs(args: argparse.Namespace) -> None:
    from conformance.report import check_writable_file, prepare_report_dir

    if getattr(args, "report", None):
        prepare_report_dir(args.report, force=args.force)
    if getattr(args, "json", None):
        check_writable_file(args.json)


def _hypervisor_total(only: Sequence[str], skip: Sequence[str], target: str) -> int:
    """How many checks a hypervisor run makes (for the progress estimate): the scenarios
    selected and in the ABIs a managed firmware target speaks, and the oracle's."""
    from conformance.results import matches
    from conformance.scenarios import SCENARIOS
    from conformance.target import target_rows

    spoken: frozenset[str] | None = None
    if target == "qemu-psci" or target.startswith("kvm-arm64"):
        from conformance.firmware_target import PROFILE as FIRMWARE

        spoken = target_rows(FIRMWARE)
    elif target == "xen-arm64":
        from conformance.xen_target import PROFILE as XEN

        spoken = target_rows(XEN)
    n = sum(1 for sc in SCENARIOS
            if (not only or matches(only, f"scenario:{sc.id}", f"abi:{sc.row}"))
            and not matches(skip, f"scenario:{sc.id}", f"abi:{sc.row}")
            and (spoken is None or all(op.row in spoken for op in sc.ops)))
    return n + 2


def _run(args: argparse.Namespace, target: str, extra: list[Any] | None = None,
         notes: list[str] | None = None, proof_bound: dict[str, Any] | None = None,
         **overrides: Any) -> Any:
    from conformance.report import provenance

    spec = target_specs.parse_target(target)
    prov = provenance(target, args.profile)
    bar = Progress("checks", None if spec.family in ("vhost-user", "linux-virtio") else
                   _hypervisor_total(args.only, args.skip, target), quiet=args.quiet,
                   verbose=args.verbose)
    try:
        if spec.family == "linux-virtio":
            from conformance.linux_virtio.report import run_conformance as run_linux

            if args.only or args.skip:
                raise UsageError(f"{target}: --only / --skip select checks of a suite; a "
                                 f"driver target is one boot judged as a whole")

            return run_linux(target, args.report, json_file=args.json, provenance=prov,
                             progress=lambda n, c: bar.step(n, str(c.status) if c else ""))
        if spec.family == "vhost-user":
            from conformance.vhost_user import run_conformance as run_vhost_user

            return run_vhost_user(target, args.report, json_file=args.json,
                                  progress=lambda n, c: bar.step(n, str(c.status) if c else ""),
                                  only=tuple(args.only), skip=tuple(args.skip),
                                  provenance=prov, max_errors=args.max_errors,
                                  profile=args.profile)
        from conformance.runner import run_conformance

        return run_conformance(target, profile=args.profile, report_dir=args.report,
                               json_file=args.json, timeout=args.timeout,
                               progress=lambda n, c: bar.step(n, str(c.status) if c else ""),
                               extra_checks=extra, notes=notes, only=tuple(args.only),
                               skip=tuple(args.skip), max_errors=args.max_errors,
                               provenance=prov, proof_bound=proof_bound, **overrides)
    finally:
        bar.close()


def cmd_conform(args: argparse.Namespace) -> int:
    """Run the conformance suite against one target."""
    if args.list:
        return _list(args.target)
    _prepare_outputs(args)
    with run_guard(args.time_limit):
        report = _run(args, args.target)
    _report_line(report, args.quiet)
    if args.report:
        _print(f"report written to {args.report}/")
    return int(report.exit_code)


def _list(target: str) -> int:
    """The requirements a target is judged on, and the checks that judge them."""
    from conformance import requirements

    spec = target_specs.parse_target(target)
    if spec.family == "linux-virtio":
        from conformance.linux_virtio import report as lreport

        kind = target.split(":")[1]
        reqs = tuple(requirements.Requirement(r, "virtio", c)
                     for r, c in lreport.universe(kind).items())
        checks = [(f"workload:{kind}", "one boot of Linux driving pvspec's back-end; every "
                   "ring operation judged")]
    elif spec.family == "vhost-user":
        reqs = requirements.virtio_device(spec.device)
        from conformance.vhost_user import report as vreport

        names = getattr(vreport, "check_names", lambda kind: ())(spec.device)
        checks = [(f"{n}", "VIRTIO check over vhost-user") for n in names]
    else:
        from conformance.scenarios import SCENARIOS

        reqs = requirements.hypervisor()
        checks = [(f"scenario:{sc.id}", ", ".join((f"abi:{sc.row}", *sc.also)))
                  for sc in SCENARIOS]
        checks.append(("oracle:differential", "every ABI row, event, invariant and step "
                                               "property the target's views show"))
    _print(f"# requirements ({len(reqs)})")
    for r in reqs:
        _print(f"{r.id}\t{r.clause}")
    _print(f"\n# checks ({len(checks)})")
    for cid, about in checks:
        _print(f"{cid}\t{about}")
    return EXIT_PASS


def cmd_verify(args: argparse.Namespace) -> int:
    """The main job: every proof, then conformance of the default target; one report."""
    from conformance.target import reference_available

    _prepare_outputs(args)
    out = Path(args.report)
    proof_json = out / "proofs.json"
    target, notes = args.target, []
    if target == "reference" and not reference_available():
        target = "spec"
        notes.append("reference_impl.Hypervisor is missing: conformance ran against the "
                     "spec itself (which checks the suite, not an implementation)")
    options = {"max_examples": args.examples} if args.examples else {}
    with run_guard(args.time_limit):
        try:
            _prove(args, str(proof_json), str(out / "counterexamples"), args.quiet)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            from conformance.report import Report, provenance

            report = Report(target=target, profile=args.profile,
                            provenance=provenance(target, args.profile),
                            incomplete=(exc.reason if isinstance(exc, RunInterrupted)
                                        else "interrupted by SIGINT") + " during the proofs",
                            exit_override=(exc.exit_code if isinstance(exc, RunInterrupted)
                                           else EXIT_SIGINT))
            report.write(out)
            _report_line(report, args.quiet)
            return int(report.exit_code)
        payload = json.loads(proof_json.read_text())
        checks = proof_checks(payload)
        report = _run(args, target, extra=checks, notes=notes,
                      proof_bound=_proof_scope(payload), **options)
    _report_line(report, args.quiet)
    _print(f"report written to {out}/ (report.html, report.md, report.json, junit.xml)")
    return int(report.exit_code)


# --- replay -----------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run a trace file on a target, comparing with the spec at every step."""
    from conformance import oracle
    from conformance.runner import load_trace
    from conformance.target import TargetError, make_target
    from spec.state import Config

    data = load_trace(args.file)
    target = args.target or data.get("target") or "reference"
    try:
        spec = target_specs.parse_target(target)
    except UsageError as exc:
        raise UsageError(f"the trace names target {target!r}, which cannot be used: {exc}; "
                         f"pass --target") from None
    if spec.family != "hypervisor":
        raise UsageError(f"{target}: only hypervisor targets replay hypercall traces")
    try:
        tgt = make_target(spec.text, timeout=args.timeout)
    except TargetError as exc:
        _print(f"ERROR: cannot start {target}: {exc.reason}")
        return EXIT_ERROR
    try:
        got = oracle.replay(tgt, data["ops"], Config(**data["config"]))
    except oracle.TargetAbort as exc:
        _print(f"ERROR: {target}: {exc.error.reason}")
        return EXIT_ERROR
    except oracle.SpecDefect as exc:
        _print(f"ERROR: suite defect: {exc}")
        return EXIT_ERROR
    finally:
        tgt.close()
    _print(f"replayed {len(data['ops'])} steps on {target}")
    if got is None:
        recorded = data.get("failure", {})
        _print("no difference: the target agrees with the spec on this trace"
               + (f" (the trace recorded {recorded.get('requirement')}: it did not reproduce)"
                  if recorded.get("requirement") else ""))
        return EXIT_PASS
    _print(f"FAILED {got.requirement} [{got.clause}]")
    _print(f"  expected {got.expected}")
    _print(f"  observed {got.observed}")
    _print(f"  at step {len(got.trace)}: {got.trace[-1].get('call', got.trace[-1])}")
    return EXIT_FAIL


# --- the rest ---------------------------------------------------------------------------------
def cmd_abi(args: argparse.Namespace) -> int:
    from spec.hypercalls import render

    sys.stdout.write(render.markdown() if args.markdown else render.text_table() + "\n")
    return EXIT_PASS


def cmd_virtio_requirements(args: argparse.Namespace) -> int:
    from spec.virtio.registry import all_requirements
    from spec.virtio.report import render_requirements_table

    # the 1.4-only statements too, marked as such (never judged against a 1.3 target)
    _print(render_requirements_table(all_requirements(include_1_4=True)))
    return EXIT_PASS


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a reference VIRTIO device as a vhost-user back-end until interrupted."""
    from reference_impl.virtio.server import serve_vhost_user_blk, serve_vhost_user_net

    path = os.path.abspath(args.socket)
    if args.serve_command == "vhost-user-net":
        _print(f"pvspec: serving virtio-net (frames looped back) over vhost-user on {path}; "
               f"test it with: pvspec conform --target vhost-user-net:{path}")
        with run_guard(None), contextlib.suppress(RunInterrupted):
            serve_vhost_user_net(path)
        return EXIT_PASS
    _print(f"pvspec: serving virtio-blk ({args.size} bytes) over vhost-user on {path}; "
           f"test it with: pvspec conform --target vhost-user:{path}")
    with run_guard(None), contextlib.suppress(RunInterrupted):
        serve_vhost_user_blk(path, bytearray(args.size))
    return EXIT_PASS


def cmd_bench(args: argparse.Namespace) -> int:
    """Spec vs reference implementation (and the oracle) on the same workloads."""
    from conformance.benchmarks import hypervisor as impl_bench
    from conformance.benchmarks import virtqueue as virtio_bench

    results: dict[str, object] = {"hypervisor": impl_bench.run(quick=args.quick),
                                  "virtqueue": virtio_bench.run(quick=args.quick)}
    if args.conformance:
        from conformance.benchmarks import oracle as conf_bench

        results["conformance"] = conf_bench.run()
    if args.vhost_user:
        from conformance.benchmarks import vhost_user as vu_bench

        results["vhost_user"] = vu_bench.run(quiet=True)
    if args.real_targets:
        from conformance.benchmarks import real_targets

        results["real_targets"] = real_targets.run()
    print(json.dumps(results, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return EXIT_PASS


def cmd_campaign(args: argparse.Namespace) -> int:
    """Many-seed oracle campaign, spread over the cores by pytest-xdist (via the plugin)."""
    import subprocess
    import tempfile

    from conformance.report import prepare_report_dir

    if target_specs.parse_target(args.target).family == "linux-virtio":
        raise UsageError(f"{args.target}: a driver target is one guest boot, not a campaign; "
                         f"run: pvspec conform --target {args.target}")
    prepare_report_dir(args.report, force=args.force)
    with tempfile.TemporaryDirectory(prefix="pvspec-campaign-") as empty:
        # collect nothing but the plugin's items: an empty rootdir, no config file
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
               os.devnull, "--rootdir", empty, "-m", "oracle", "-n", str(args.jobs),
               "--pvspec-target", args.target, "--pvspec-seeds", str(args.seeds),
               "--pvspec-profile", args.profile, "--pvspec-timeout", str(args.timeout),
               "--pvspec-report", os.path.abspath(args.report), "--pvspec-force"]
        rc = subprocess.call(cmd, cwd=empty)  # no test paths: only the plugin's suite
    _print(f"report written to {args.report}/")
    return {0: EXIT_PASS, 1: EXIT_FAIL}.get(rc, EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from conformance import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only the final line")
    common.add_argument("-v", "--verbose", action="store_true", help="every check as it ends")

    def run_options(sp: argparse.ArgumentParser, default_target: str = "reference") -> None:
        sp.add_argument("--target", default=default_target, type=_target,
                        help=f"what to test: {target_specs.help_text()}")
        sp.add_argument("--profile", default="ci", choices=["ci", "thorough"])
        sp.add_argument("--json", help="also write the summary as JSON to this file")
        sp.add_argument("--timeout", type=_positive_float, default=5.0,
                        help="seconds per target call (default 5)")
        sp.add_argument("--time-limit", type=_positive_float, default=None,
                        help="end the whole run after this many seconds (report: incomplete)")
        sp.add_argument("--max-errors", type=_nonneg_int, default=3,
                        help="end the run after this many checks in a row end in error "
                             "(0: never; default 3)")
        sp.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="run only checks whose id or requirement matches (repeatable)")
        sp.add_argument("--skip", action="append", default=[], metavar="GLOB",
                        help="leave out checks whose id or requirement matches (repeatable)")
        sp.add_argument("--force", action="store_true",
                        help="clear a non-empty report directory first")

    p = argparse.ArgumentParser(
        prog="pvspec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="targets:\n  " + "\n  ".join(target_specs.EXAMPLES))
    p.add_argument("--version", action="version", version=f"pvspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pr = sub.add_parser("prove", parents=[common], help="prove every invariant with Z3")
    pr.add_argument("--json", help="write the results as JSON to this file")
    pr.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1)
    pr.add_argument("--counterexamples", default=None,
                    help="directory for replayable counterexample files")
    pr.add_argument("--time-limit", type=_positive_float, default=None)
    pr.add_argument("--bounded", action="store_true",
                    help="prove everything for the bounded model only (the cross-check of "
                         "the all-sizes proofs)")
    pr.add_argument("--larger", action="store_true",
                    help="also try what the all-sizes pass leaves open on a larger model "
                         "(spec.prove.REFUTE_CONFIG: a fourth VM, a sixth host frame, a third "
                         "handle and port) and at the corners of the size domain "
                         "(spec.prove.CORNER_CONFIGS: one size at its least, e.g. no host "
                         "frames), to find a bug at sizes other than the bound")
    pr.set_defaults(fn=cmd_prove)

    ve = sub.add_parser("verify", parents=[common],
                        help="proofs + conformance of the default target; report")
    run_options(ve)
    ve.add_argument("--report", default="report", help="report directory (default: report)")
    ve.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1)
    ve.add_argument("--examples", type=_nonneg_int, default=0,
                    help="oracle examples (default: the profile's)")
    ve.set_defaults(fn=cmd_verify)

    co = sub.add_parser("conform", parents=[common], help="run the conformance suite",
                        epilog="targets:\n  " + "\n  ".join(target_specs.EXAMPLES),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    run_options(co)
    co.add_argument("--report", help="write report.{json,html,md} and junit.xml here")
    co.add_argument("--list", action="store_true",
                    help="list the requirements and checks for the target, run nothing")
    co.set_defaults(fn=cmd_conform)

    ca = sub.add_parser("campaign", parents=[common],
                        help="oracle with many seeds on all cores (pytest-xdist)")
    ca.add_argument("--target", default="reference", type=_target,
                    help=f"what to test: {target_specs.help_text()}")
    ca.add_argument("--seeds", type=_positive_int, default=8, help="oracle runs, one per seed")
    ca.add_argument("--jobs", default="auto", help="pytest-xdist workers (-n)")
    ca.add_argument("--profile", default="thorough", choices=["ci", "thorough"])
    ca.add_argument("--report", default="campaign-report", help="report directory")
    ca.add_argument("--timeout", type=_positive_float, default=5.0,
                    help="seconds per target call")
    ca.add_argument("--force", action="store_true", help="clear a non-empty report directory")
    ca.set_defaults(fn=cmd_campaign)

    rp = sub.add_parser("replay", parents=[common], help="re-run a trace file on a target")
    rp.add_argument("file")
    rp.add_argument("--target", default=None, type=_target,
                    help="default: the target the trace was recorded on")
    rp.add_argument("--timeout", type=_positive_float, default=5.0,
                    help="seconds per target call")
    rp.set_defaults(fn=cmd_replay)

    se = sub.add_parser("serve", parents=[common], help="serve a reference device")
    ssub = se.add_subparsers(dest="serve_command", required=True)
    sb = ssub.add_parser("vhost-user-blk", help="reference virtio-blk over vhost-user")
    sb.add_argument("--socket", required=True, help="Unix socket path to listen on")
    sb.add_argument("--size", type=_positive_int, default=1 << 20, help="disk size in bytes")
    sb.set_defaults(fn=cmd_serve)
    sn = ssub.add_parser("vhost-user-net",
                         help="reference virtio-net over vhost-user, frames looped back")
    sn.add_argument("--socket", required=True, help="Unix socket path to listen on")
    sn.set_defaults(fn=cmd_serve)

    be = sub.add_parser("bench", parents=[common],
                        help="throughput of spec vs reference implementation")
    be.add_argument("--json", help="write the figures to this file")
    be.add_argument("--quick", action="store_true", help="short runs")
    be.add_argument("--conformance", action="store_true", help="also the oracle's steps/s")
    be.add_argument("--vhost-user", action="store_true",
                    help="also verified virtio-blk requests/s over vhost-user, on "
                         "qemu-storage-daemon and the reference back-end")
    be.add_argument("--real-targets", action="store_true",
                    help="also boot time and checked calls/s on qemu-psci, kvm-arm64, "
                         "xen-arm64, and judged ring operations/s on linux-virtio:blk")
    be.set_defaults(fn=cmd_bench)

    ab = sub.add_parser("abi", parents=[common], help="print the hypercall ABI table, the "
                        "ABIs a target may speak and FF-A's function ids")
    ab.add_argument("--markdown", action="store_true", help="the docs/ABI.md text")
    ab.set_defaults(fn=cmd_abi)

    vi = sub.add_parser("virtio", parents=[common], help="VIRTIO specification tools")
    vsub = vi.add_subparsers(dest="virtio_command", required=True)
    vr = vsub.add_parser("requirements", help="list the requirements registry with coverage")
    vr.set_defaults(fn=cmd_virtio_requirements)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        return fn(args)
    except UsageError as exc:
        _print(f"pvspec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PvspecError as exc:
        _print(f"pvspec: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _print("pvspec: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except RunInterrupted as exc:
        _print(f"pvspec: {exc.reason}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (``pvspec ... | head``): stop quietly, as Unix tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


if __name__ == "__main__":
    sys.exit(main())
