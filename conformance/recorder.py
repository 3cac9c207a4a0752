"""How a run records its checks, for every kind of target: each check goes into the report,
its failure's trace into ``traces/``, and the report is written again (at most once a
second, and always at the end), so that the report on disk is the run so far.  Too many
errors in a row stop the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from conformance.report import Report, atomic_write
from conformance.results import Check, Failure, RunInterrupted, Status, clip_text

__all__ = ["ENDINGS", "Recorder", "StopRun", "record_ending"]

# (report directory, check id, failure, the records to save) -> trace path relative to it
TraceWriter = Callable[[Path, str, Failure, Sequence[Any]], str]


class StopRun(Exception):
    """The run ends early (``reason`` goes into the report as why it is incomplete)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.define
class Recorder:
    report: Report
    out: Path | None
    json_file: str | Path | None
    write_trace: TraceWriter
    progress: Callable[[str, Check], None] | None = None
    max_errors: int = 3
    start: float = attrs.field(factory=time.perf_counter)
    streak: int = 0
    # A long report (800 proofs) takes ~0.3 s to render: while the run goes on it is
    # rewritten at most this often; :meth:`finish` always writes it, however the run ends.
    every: float = 1.0
    _written: float = attrs.field(default=0.0, init=False)

    def save(self, force: bool = True) -> None:
        """Write the report (and the ``--json`` summary); a write that fails is noted in
        the report, never raised: the run goes on and the next write may succeed."""
        now = time.perf_counter()
        if not force and now - self._written < self.every:
            return
        self._written = now
        report = self.report
        report.seconds = time.perf_counter() - self.start
        try:
            if self.out is not None:
                report.write(self.out)
            if self.json_file:
                atomic_write(Path(self.json_file), json.dumps(report.summary(), indent=1))
        except OSError as exc:
            msg = f"cannot write the report: {exc}"
            if msg not in report.notes:
                report.notes.append(msg)

    def add(self, check: Check, records: Sequence[Any] = (), write: bool = True) -> None:
        """Record ``check``; save its failure's trace (``records``, or the failure's own
        trace) and the report.  :class:`StopRun` after ``max_errors`` errors in a row."""
        f = check.failure
        ops = records or (f.trace if f is not None else ())
        if f is not None and ops and self.out is not None:
            try:
                path = self.write_trace(self.out, check.id, f, ops)
                check = attrs.evolve(check, failure=attrs.evolve(f, trace_file=path))
            except OSError as exc:
                self.report.notes.append(f"cannot write the trace of {check.id}: {exc}")
        self.report.checks.append(check)
        self.streak = self.streak + 1 if check.status is Status.ERROR else 0
        if self.progress:
            self.progress(check.id, check)
        if write:
            self.save(force=False)
        if self.max_errors and self.streak >= self.max_errors:
            raise StopRun(f"stopped early: {self.streak} checks in a row ended in error "
                          f"(--max-errors {self.max_errors})")

    def finish(self, close: Callable[[], object] | None, what: str) -> None:
        """Close the target (a failure to close is noted, never raised) and write the
        report a last time."""
        if close is not None:
            try:
                close()
            except Exception as exc:
                self.report.notes.append(f"{what} failed: {exc}")
        self.save()


ENDINGS = (StopRun, KeyboardInterrupt, RunInterrupted, Exception)


def record_ending(report: Report, exc: BaseException) -> None:
    """Put how a run ended early into its report: stopped (too many errors), interrupted
    (Ctrl-C: exit status 130; SIGTERM or the time limit: the exception's), or a defect of
    the suite itself (an ``error`` check; the partial report is kept)."""
    if isinstance(exc, StopRun):
        report.incomplete = exc.reason
    elif isinstance(exc, KeyboardInterrupt):
        report.incomplete, report.exit_override = "interrupted by SIGINT", 130
    elif isinstance(exc, RunInterrupted):
        report.incomplete, report.exit_override = exc.reason, exc.exit_code
    else:
        what = clip_text(f"{type(exc).__name__}: {exc}")
        report.checks.append(Check(
            "suite:internal", "suite", "suite", Status.ERROR, detail=f"suite defect: {what}",
            failure=Failure("suite", "suite:internal", "pvspec", "the run completes", what)))
