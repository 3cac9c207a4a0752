"""The ``pvspec`` command line: a thin front over spec/ and conformance/."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def _progress(stream=sys.stderr):
    """A one-line progress display for long runs (quiet when not a terminal)."""
    start = time.perf_counter()
    done = [0]
    tty = stream.isatty()

    def update(batch, total: int) -> None:
        done[0] += 1
        if tty:
            stream.write(f"\r  {done[0]}/{total} {batch[0].hypercall:<28} "
                         f"{time.perf_counter() - start:6.1f}s")
            stream.flush()

    return update


def cmd_prove(args: argparse.Namespace) -> int:
    from spec import prove

    total = len(prove._jobs())
    bar = _progress()
    start = time.perf_counter()
    results = prove.prove_all(jobs=args.jobs, cex_dir=args.counterexamples,
                              progress=lambda batch: bar(batch, total))
    seconds = time.perf_counter() - start
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    failed = [r for r in results if r.status != "proved"]
    if not args.quiet:
        print(f"{'group':10} {'hypercall':28} {'invariant':36} {'status':8} {'seconds':>8}")
        for r in results:
            print(f"{r.group:10} {r.hypercall:28} {r.invariant:36} {r.status:8} {r.seconds:8.3f}")
    print(f"{len(results)} obligations: {len(results) - len(failed)} proved, "
          f"{len(failed)} not proved, {seconds:.1f} s wall on {args.jobs} processes")
    for r in failed:
        print(f"NOT PROVED {r.group}:{r.hypercall}:{r.invariant} ({r.status}) [{r.clause}] "
              f"{r.detail}")
        if r.counterexample:
            print("  counterexample:", json.dumps({k: v for k, v in r.counterexample.items()
                                                  if k != "pre_state"}))
    if args.json:
        payload = {
            "obligations": len(results), "proved": len(results) - len(failed),
            "failed": len(failed), "seconds": seconds, "jobs": args.jobs,
            "results": [{"group": r.group, "invariant": r.invariant, "hypercall": r.hypercall,
                         "clause": r.clause, "status": r.status, "seconds": r.seconds,
                         "paths": r.paths, "counterexample": r.counterexample}
                        for r in results],
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return EXIT_PASS if not failed else EXIT_FAIL


def cmd_abi(args: argparse.Namespace) -> int:
    from spec.hypercalls import render

    sys.stdout.write(render.markdown() if args.markdown else render.text_table() + "\n")
    return EXIT_PASS


def cmd_virtio_requirements(args: argparse.Namespace) -> int:
    from spec.virtio.registry import all_requirements
    from spec.virtio.report import render_requirements_table

    print(render_requirements_table(all_requirements()))
    return EXIT_PASS


def _proof_checks(payload: dict) -> list:
    """Proof results (``pvspec prove --json``) as report checks."""
    from conformance.report import Check, Failure
    from spec import invariants
    from spec.hypercalls import abi

    out = []
    for r in payload["results"]:
        inv = r["invariant"]
        kind = "invariant" if inv in invariants.BY_NAME else (
            "step" if inv in invariants.STEP_BY_NAME else "property")
        covers = [f"{kind}:{inv}"]
        if r["hypercall"] in abi.BY_NAME:
            covers.append(f"abi:{r['hypercall']}")
        elif r["hypercall"] in abi.EVENT_BY_NAME:
            covers.append(f"event:{r['hypercall']}")
        elif r["hypercall"] == "UNKNOWN_FUNCTION_ID":
            covers.append("abi:decode")
        status = {"proved": "proved", "failed": "failed"}.get(r["status"], "error")
        cex = r.get("counterexample")
        failure = Failure("proof", covers[0], r["clause"], "proved", r["status"],
                          (), None) if status != "proved" else None
        out.append(Check(f"proof:{r['group']}:{r['hypercall']}:{inv}",
                         f"{inv} for {r['hypercall']}", "proof", status, tuple(covers),
                         r["clause"], "Z3 proof", r["seconds"],
                         detail=json.dumps(cex)[:2000] if cex else "", failure=failure))
    return out


def _conform_progress():
    tty = sys.stderr.isatty()
    start = time.perf_counter()
    n = [0]

    def update(name: str, check) -> None:
        n[0] += 1
        if tty:
            status = check.status if check else ""
            sys.stderr.write(f"\r  {n[0]:4} checks  {time.perf_counter() - start:6.1f}s  "
                             f"{status:7} {name[:60]:<60}")
            sys.stderr.flush()

    return update


def _print_report(report) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    from conformance.report import _failure_text

    for c in report.checks:
        if c.status in ("failed", "error"):
            print(f"{c.status.upper()} {c.id}")
            print("  " + _failure_text(c).replace("\n", "\n  "))
    s = report.summary()
    print(f"{report.target}: {s['verdict'].upper()} - {s['checks']} checks: {s['passed']} "
          f"passed, {s['failed']} failed, {s['skipped']} skipped, {s['errors']} errors; "
          f"{s['steps']} oracle steps in {s['seconds']:.1f} s")
    for note in report.notes:
        print(f"note: {note}")


VHOST_USER_TARGETS = ("qemu-vhost-user-blk", "reference-vhost-user-blk", "virtiofsd")


def _is_vhost_user(target: str) -> bool:
    return target in VHOST_USER_TARGETS or target.startswith("vhost-user:")


def cmd_conform(args: argparse.Namespace) -> int:
    """Run the conformance suite against one target."""
    if _is_vhost_user(args.target):
        from conformance.vhost_user import run_conformance as run_vhost_user

        report = run_vhost_user(args.target, args.report, json_file=args.json)
        _print_report(report)
        if args.report:
            print(f"report written to {args.report}/")
        return report.exit_code
    from conformance.runner import run_conformance

    report = run_conformance(args.target, profile=args.profile, report_dir=args.report,
                             json_file=args.json, timeout=args.timeout,
                             progress=_conform_progress())
    _print_report(report)
    if args.report:
        print(f"report written to {args.report}/")
    return report.exit_code


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run a trace file on a target, comparing with the spec at every step."""
    from conformance import oracle
    from conformance.runner import load_trace
    from conformance.target import TargetError, make_target
    from spec.state import Config

    try:
        data = load_trace(args.file)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.file}: {exc}")
        return EXIT_ERROR
    try:
        target = make_target(args.target, timeout=args.timeout)
    except TargetError as exc:
        print(f"ERROR: {exc.reason}")
        return EXIT_ERROR
    try:
        got = oracle.replay(target, data["ops"], Config(**data["config"]))
    except oracle.TargetAbort as exc:
        print(f"ERROR: {exc.error.reason}")
        return EXIT_ERROR
    except oracle.SpecDefect as exc:
        print(f"ERROR: {exc}")
        return EXIT_ERROR
    finally:
        target.close()
    print(f"replayed {len(data['ops'])} steps on {args.target}")
    if got is None:
        print("no difference: the target agrees with the spec on this trace")
        return EXIT_PASS
    print(f"FAILED {got.requirement} [{got.clause}]")
    print(f"  expected {got.expected}")
    print(f"  observed {got.observed}")
    print(f"  at step {len(got.trace)}: {got.trace[-1].get('call', got.trace[-1])}")
    return EXIT_FAIL


def cmd_verify(args: argparse.Namespace) -> int:
    """The main job: every proof, then conformance of the default target; one report."""
    from conformance.runner import run_conformance
    from conformance.target import reference_available

    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    proof_json = out / "proofs.json"
    prove_args = argparse.Namespace(json=str(proof_json), jobs=args.jobs, quiet=True,
                                    counterexamples=str(out / "counterexamples"))
    cmd_prove(prove_args)
    checks = _proof_checks(json.loads(proof_json.read_text()))
    target, notes = args.target, []
    if target == "reference" and not reference_available():
        target = "spec"
        notes.append("reference_impl.Hypervisor is missing: conformance ran against the "
                     "spec itself (which checks the suite, not an implementation)")
    options = {"max_examples": args.examples} if args.examples else {}
    report = run_conformance(target, profile=args.profile, report_dir=str(out),
                             json_file=args.json, timeout=args.timeout, extra_checks=checks,
                             notes=notes, progress=_conform_progress(), **options)
    _print_report(report)
    print(f"report written to {out}/ (report.html, report.md, report.json, junit.xml)")
    return report.exit_code


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the reference virtio-blk device as a vhost-user backend until interrupted."""
    from reference_impl.virtio.server import serve_vhost_user_blk

    serve_vhost_user_blk(args.socket, bytearray(args.size))
    return EXIT_PASS


def cmd_bench(args: argparse.Namespace) -> int:
    """Spec vs reference implementation (and the oracle) on the same workloads."""
    from reference_impl import bench as impl_bench
    from reference_impl.virtio import bench as virtio_bench

    results: dict[str, object] = {"hypervisor": impl_bench.run(quick=args.quick),
                                  "virtqueue": virtio_bench.run(quick=args.quick)}
    if args.conformance:
        from conformance import bench as conf_bench

        results["conformance"] = conf_bench.run()
    print(json.dumps(results, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return EXIT_PASS


def cmd_campaign(args: argparse.Namespace) -> int:
    """Many-seed oracle campaign, spread over the cores by pytest-xdist (via the plugin)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pvspec-campaign-") as empty:
        # collect nothing but the plugin's items: an empty rootdir, no config file
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
               os.devnull, "--rootdir", empty, "-m", "oracle", "-n", str(args.jobs),
               "--pvspec-target", args.target, "--pvspec-seeds", str(args.seeds),
               "--pvspec-profile", args.profile, "--pvspec-timeout", str(args.timeout),
               "--pvspec-report", os.path.abspath(args.report), empty]
        rc = subprocess.call(cmd)
    print(f"report written to {args.report}/")
    return {0: EXIT_PASS, 1: EXIT_FAIL}.get(rc, EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pvspec", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prove", help="prove every invariant and property with Z3")
    pr.add_argument("--json", help="write the results as JSON to this file")
    pr.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    pr.add_argument("--counterexamples", default=None,
                    help="directory for replayable counterexample files")
    pr.add_argument("--quiet", action="store_true", help="only the summary")
    pr.set_defaults(fn=cmd_prove)

    ve = sub.add_parser("verify", help="proofs + conformance of the default target; report")
    ve.add_argument("--report", default="report", help="report directory")
    ve.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ve.add_argument("--examples", type=int, default=0,
                    help="oracle examples (default: the profile's)")
    ve.add_argument("--target", default="reference", help="reference | spec | exec:COMMAND")
    ve.add_argument("--profile", default="ci", choices=["ci", "thorough"])
    ve.add_argument("--json", help="write the summary as JSON to this file")
    ve.add_argument("--timeout", type=float, default=5.0, help="seconds per target call")
    ve.set_defaults(fn=cmd_verify)

    co = sub.add_parser("conform", help="run the conformance suite against a target")
    co.add_argument("--target", default="reference", help="reference | spec | exec:COMMAND")
    co.add_argument("--report", help="write report.{json,html,md} and junit.xml here")
    co.add_argument("--profile", default="ci", choices=["ci", "thorough"])
    co.add_argument("--json", help="write the summary as JSON to this file")
    co.add_argument("--timeout", type=float, default=5.0, help="seconds per target call")
    co.set_defaults(fn=cmd_conform)

    ca = sub.add_parser("campaign", help="oracle with many seeds on all cores (pytest-xdist)")
    ca.add_argument("--target", default="reference", help="reference | spec | exec:COMMAND")
    ca.add_argument("--seeds", type=int, default=8, help="oracle runs, one per seed")
    ca.add_argument("--jobs", default="auto", help="pytest-xdist workers (-n)")
    ca.add_argument("--profile", default="thorough", choices=["ci", "thorough"])
    ca.add_argument("--report", default="campaign-report", help="report directory")
    ca.add_argument("--timeout", type=float, default=5.0, help="seconds per target call")
    ca.set_defaults(fn=cmd_campaign)

    rp = sub.add_parser("replay", help="re-run a conformance trace file on a target")
    rp.add_argument("file")
    rp.add_argument("--target", default="reference", help="reference | spec | exec:COMMAND")
    rp.add_argument("--timeout", type=float, default=5.0, help="seconds per target call")
    rp.set_defaults(fn=cmd_replay)

    se = sub.add_parser("serve", help="serve a reference device")
    ssub = se.add_subparsers(dest="serve_command", required=True)
    sb = ssub.add_parser("vhost-user-blk", help="reference virtio-blk over vhost-user")
    sb.add_argument("--socket", required=True, help="Unix socket path to listen on")
    sb.add_argument("--size", type=int, default=1 << 20, help="disk size in bytes")
    sb.set_defaults(fn=cmd_serve)

    be = sub.add_parser("bench", help="throughput of spec vs reference implementation")
    be.add_argument("--json", help="write the figures to this file")
    be.add_argument("--quick", action="store_true", help="short runs")
    be.add_argument("--conformance", action="store_true", help="also the oracle's steps/s")
    be.set_defaults(fn=cmd_bench)

    ab = sub.add_parser("abi", help="print the hypercall ABI table")
    ab.add_argument("--markdown", action="store_true", help="the docs/ABI.md text")
    ab.set_defaults(fn=cmd_abi)

    vi = sub.add_parser("virtio", help="VIRTIO specification tools")
    vsub = vi.add_subparsers(dest="virtio_command", required=True)
    vr = vsub.add_parser("requirements", help="list the requirements registry with coverage")
    vr.set_defaults(fn=cmd_virtio_requirements)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
