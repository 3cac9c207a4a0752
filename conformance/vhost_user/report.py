"""``run_conformance``: run the vhost-user checks on one target and write a report."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from conformance.vhost_user.checks import Result, run_checks
from conformance.vhost_user.targets import Target, TargetUnavailable, open_target


def summarize(target: str, results: list[Result], seconds: float) -> dict[str, object]:
    counts = Counter(r.status for r in results)
    return {
        "target": target,
        "ok": counts.get("fail", 0) == 0,
        "counts": dict(counts),
        "seconds": round(seconds, 2),
        "results": [r.to_json() for r in results],
    }


def write_report(summary: dict[str, object], report_dir: str | os.PathLike[str]) -> None:
    """``vhost-user.json`` and ``vhost-user.md`` in ``report_dir``."""
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "vhost-user.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# vhost-user conformance: {summary['target']}", "",
             f"Result: {'PASS' if summary['ok'] else 'FAIL'} — {summary['counts']} "
             f"in {summary['seconds']} s", "",
             "| check | rule | section | status | detail |", "|---|---|---|---|---|"]
    for r in summary["results"]:  # type: ignore[attr-defined]
        detail = str(r["detail"]).replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| {r['check']} | {r['rule']} | {r['section']} | {r['status']} | "
                     f"{detail} |")
    (d / "vhost-user.md").write_text("\n".join(lines) + "\n")


def run_conformance(target_spec: str, report_dir: str | os.PathLike[str] | None = None,
                    checks: tuple[str, ...] | None = None) -> dict[str, object]:
    """Start (if managed) ``target_spec``, run every check, stop it, write the report.

    ``target_spec``: ``vhost-user:SOCKET``, ``qemu-vhost-user-blk``,
    ``reference-vhost-user-blk`` or ``virtiofsd``.  An unavailable target gives
    ``{"ok": False, "unavailable": reason}``.
    """
    t0 = time.monotonic()
    try:
        target: Target = open_target(target_spec)
    except TargetUnavailable as e:
        summary: dict[str, object] = {"target": target_spec, "ok": False,
                                      "unavailable": str(e), "counts": {}, "results": []}
        if report_dir is not None:
            summary["seconds"] = 0
            write_report(summary, report_dir)
        return summary
    try:
        results = run_checks(target, checks)
    finally:
        target.stop()
    summary = summarize(target_spec, results, time.monotonic() - t0)
    if report_dir is not None:
        write_report(summary, report_dir)
    return summary
