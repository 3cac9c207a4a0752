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

    print(render.markdown() if args.markdown else render.text_table(), end="\n")
    return EXIT_PASS


def cmd_virtio_requirements(args: argparse.Namespace) -> int:
    from spec.virtio.registry import all_requirements
    from spec.virtio.report import render_requirements_table

    print(render_requirements_table(all_requirements()))
    return EXIT_PASS


def cmd_verify(args: argparse.Namespace) -> int:
    """The main job: every proof, then the state machines, then the report."""
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    from spec import campaign

    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    proof_json = out / "proofs.json"
    prove_args = argparse.Namespace(json=str(proof_json), jobs=args.jobs, quiet=True,
                                    counterexamples=str(out / "counterexamples"))
    proved = cmd_prove(prove_args)
    start = time.perf_counter()
    machine_status, detail = "passed", ""
    try:
        run_state_machine_as_test(campaign.make_machine(), settings=settings(
            max_examples=args.examples, stateful_step_count=60, deadline=None,
            derandomize=True))
    except AssertionError as exc:
        machine_status, detail = "failed", str(exc)
    summary = {
        "proofs": json.loads(proof_json.read_text()),
        "state_machine": {"status": machine_status, "examples": args.examples,
                          "seconds": time.perf_counter() - start, "detail": detail},
    }
    (out / "verify.json").write_text(json.dumps(summary, indent=1))
    p = summary["proofs"]
    print(f"state machine: {machine_status} ({args.examples} examples)")
    print(f"report written to {out}/ (proofs: {p['proved']}/{p['obligations']} proved)")
    return EXIT_PASS if proved == EXIT_PASS and machine_status == "passed" else EXIT_FAIL


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

    ve = sub.add_parser("verify", help="proofs + state machines; writes the report")
    ve.add_argument("--report", default="report", help="report directory")
    ve.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ve.add_argument("--examples", type=int, default=200, help="state-machine examples")
    ve.set_defaults(fn=cmd_verify)

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
