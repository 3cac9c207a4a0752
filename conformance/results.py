"""The one result vocabulary of pvspec: every proof, scenario, oracle run and VIRTIO check
ends as :class:`Check` values, and every report (JSON, JUnit, Markdown, HTML, the CLI
line, the pytest plugin) renders those and nothing else.

The rule that makes a report honest (:func:`requirement_verdicts`):

* a requirement is ``failed`` when a check's failure names it, ``error`` when a check
  broke (target fault, suite defect) *on* it;
* it is ``passed`` (``proved`` for a Z3 proof) only when at least one check actually
  evaluated it on this target -- the check lists it in :attr:`Check.judged` -- and no check
  failed it;
* every other requirement is ``not-judged``, with the reason (:class:`NotJudged`): the
  target lacks a capability, the device did not offer the feature, the run was
  interrupted, the check covering it broke before reaching it, the suite has no check yet.

A check's ``covers`` says what it is *about*; only ``judged`` ever earns a pass.

Errors are classified by who is at fault (:class:`PvspecError` and its three children):
the target, the suite, or the user's input.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "BLOCKING_REASONS", "Check", "Failure", "KnownDeviation", "NotJudged", "PvspecError",
    "RequirementVerdict",
    "RunInterrupted", "Status", "SuiteDefect", "TargetFault", "UsageError", "Verdict",
    "clip_text", "coverage",
    "matches", "requirement_verdicts", "run_verdict",
]


# --- who is at fault ------------------------------------------------------------------------
class PvspecError(Exception):
    """Root of every error pvspec raises on purpose (as hypothesis' HypothesisException)."""


class TargetFault(PvspecError):
    """The system under test misbehaved: crashed, hung, sent garbage, broke the protocol."""


class SuiteDefect(PvspecError):
    """pvspec itself is wrong: a checker raised, the spec raised, a scenario is stale."""


class UsageError(PvspecError):
    """The user's input is wrong: a bad command line, an unreadable or foreign trace file,
    an unwritable output path."""


# --- statuses -------------------------------------------------------------------------------
class Status(enum.StrEnum):
    PROVED = "proved"      # a Z3 proof: holds for every input in the proof's bound
    PASSED = "passed"      # evaluated on the target, and it agreed with the spec
    FAILED = "failed"      # evaluated, and the target broke the requirement
    ERROR = "error"        # the check could not finish: target fault or suite defect
    NOT_JUDGED = "not-judged"  # never evaluated on this target (see NotJudged)


class NotJudged(enum.StrEnum):
    """Why a requirement (or a check) was not evaluated."""

    CAPABILITY = "capability"          # the target cannot show what the check needs
    NOT_OFFERED = "not-offered"        # the device did not offer the feature
    NOT_APPLICABLE = "not-applicable"  # the requirement does not apply to this target
    NOT_IMPLEMENTED = "not-implemented"  # the suite has no check for it (yet)
    NOT_REACHED = "not-reached"        # a check covers it, but its run never produced a case
    PLATFORM = "platform"              # the platform cannot observe it (e.g. write order)
    DESELECTED = "deselected"          # excluded by --only / --skip
    INTERRUPTED = "interrupted"        # the run stopped before reaching it
    CHECK_ERROR = "check-error"        # the check covering it broke before judging it


# Reasons that mean "this target, as run, was not fully judged": a run with requirements
# left unjudged for one of these is not ``passed``.  The others are scope decisions that
# the coverage headline states (a feature not offered, a suite gap, the user's --only).
BLOCKING_REASONS = frozenset({NotJudged.CAPABILITY, NotJudged.INTERRUPTED,
                              NotJudged.CHECK_ERROR})


class Verdict(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    INCOMPLETE = "incomplete"


EXIT_CODES = {Verdict.PASSED: 0, Verdict.FAILED: 1, Verdict.ERROR: 2, Verdict.INCOMPLETE: 2}


# --- checks ---------------------------------------------------------------------------------
@attrs.frozen
class Failure:
    """What went wrong, on which requirement, with the evidence to replay it.

    ``kind``: result | observation | crash | device | protocol | proof | suite.
    ``trace`` is the minimal trace (hypercall ops, or VIRTIO request records);
    ``trace_file`` its replayable JSON, relative to the report directory.
    """

    kind: str
    requirement: str
    clause: str
    expected: str
    observed: str
    trace: tuple[dict[str, Any], ...] = ()
    trace_file: str | None = None
    shrunk_from: int = 0


def _strs(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(items)


def _reason(r: NotJudged | str | None) -> NotJudged | None:
    return None if r is None else NotJudged(r)


def _status(s: Status | str) -> Status:
    return Status(s)


@attrs.frozen
class KnownDeviation:
    """A deviation a real target is known for (docs/findings.md), so a run reports it as a
    failed requirement and goes on judging the rest instead of stopping at it.

    ``matches(decoded call, registers, spec's result word, target's result registers)``
    recognises
    exactly that deviation and nothing wider; ``trace`` is its minimal trace."""

    id: str
    title: str
    requirement: str
    rows: frozenset[str]
    clause: str
    expected: str
    observed: str
    matches: Any = attrs.field(eq=False, repr=False)
    trace: tuple[dict[str, Any], ...] = ()


@attrs.frozen
class Check:
    """One check's outcome.

    ``covers``: the requirements this check is about; ``judged``: those it actually
    evaluated on the target (only these can pass).  ``reason`` says why a
    ``not-judged`` check judged nothing.
    """

    id: str
    title: str
    kind: str  # proof | scenario | oracle | virtio | target | suite
    status: Status = attrs.field(converter=_status)
    covers: tuple[str, ...] = attrs.field(converter=_strs, default=())
    judged: tuple[str, ...] = attrs.field(converter=_strs, default=())
    reason: NotJudged | None = attrs.field(default=None, converter=_reason)
    clause: str = ""
    method: str = ""
    seconds: float = 0.0
    examples: int = 0
    steps: int = 0
    detail: str = ""
    failure: Failure | None = None

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=True)
        d["status"] = str(self.status)
        d["reason"] = None if self.reason is None else str(self.reason)
        d["covers"], d["judged"] = list(self.covers), list(self.judged)
        d["seconds"] = round(self.seconds, 4)
        if self.failure is not None:
            d["failure"]["trace"] = list(self.failure.trace)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        f = d.get("failure")
        failure = None if f is None else Failure(**{**f, "trace": tuple(f.get("trace", ()))})
        return cls(**{**d, "failure": failure})


def not_judged(id: str, title: str, kind: str, covers: Iterable[str], reason: NotJudged,
               detail: str, **kw: Any) -> Check:
    """A check that evaluated nothing, and why."""
    return Check(id, title, kind, Status.NOT_JUDGED, tuple(covers), (), reason,
                 detail=detail, **kw)


# --- the rule: requirement verdicts from check outcomes ----------------------------------------
# When several checks left a requirement unjudged for different reasons, the report names
# the most telling one: the run's own trouble, then a limit of the target, then scope.
_REASON_ORDER = (NotJudged.CHECK_ERROR, NotJudged.INTERRUPTED, NotJudged.CAPABILITY,
                 NotJudged.NOT_OFFERED, NotJudged.PLATFORM, NotJudged.NOT_APPLICABLE,
                 NotJudged.DESELECTED, NotJudged.NOT_IMPLEMENTED, NotJudged.NOT_REACHED)

@attrs.frozen
class RequirementVerdict:
    status: Status
    reason: NotJudged | None
    checks: tuple[str, ...]  # every check that covers or judged it
    judged_by: tuple[str, ...]  # the checks that evaluated it


def requirement_verdicts(universe: Iterable[str], checks: Sequence[Check],
                         interrupted: bool = False) -> dict[str, RequirementVerdict]:
    """Each requirement's verdict by the rule in the module docstring.

    Requirements that checks name but the universe lacks are included too (nothing a check
    says is dropped).  ``interrupted``: the run stopped early, so a requirement no check
    reached is ``interrupted`` rather than ``not-implemented``.
    """
    order = list(dict.fromkeys(universe))
    failed: dict[str, Status] = {}
    judged: dict[str, list[str]] = {}
    proved: set[str] = set()
    touching: dict[str, list[str]] = {}
    reasons: dict[str, list[NotJudged]] = {}
    for c in checks:
        for r in dict.fromkeys((*c.covers, *c.judged)):
            touching.setdefault(r, []).append(c.id)
            if r not in order:
                order.append(r)
        for r in c.judged:
            judged.setdefault(r, []).append(c.id)
            if c.status is Status.PROVED:
                proved.add(r)
        f = c.failure
        if f is not None and c.status in (Status.FAILED, Status.ERROR):
            if f.requirement not in order:
                order.append(f.requirement)
                touching.setdefault(f.requirement, []).append(c.id)
            if c.status is Status.FAILED or failed.get(f.requirement) is not Status.FAILED:
                failed[f.requirement] = c.status
        unjudged = [r for r in c.covers if r not in c.judged]
        why = c.reason if c.status is Status.NOT_JUDGED else (
            NotJudged.CHECK_ERROR if c.status is Status.ERROR else
            NotJudged.INTERRUPTED if interrupted else NotJudged.NOT_REACHED)
        if why is not None:
            for r in unjudged:
                reasons.setdefault(r, []).append(why)
    out: dict[str, RequirementVerdict] = {}
    for r in order:
        by = tuple(judged.get(r, ()))
        touch = tuple(touching.get(r, ()))
        if r in failed:
            out[r] = RequirementVerdict(failed[r], None, touch, by)
        elif by:
            out[r] = RequirementVerdict(Status.PROVED if r in proved else Status.PASSED, None,
                                        touch, by)
        else:
            rs = reasons.get(r, [])
            # the most telling reason: a target limit over a scope decision over a gap
            why = next((x for x in _REASON_ORDER if x in rs), None)
            if why is None:
                why = NotJudged.INTERRUPTED if interrupted else NotJudged.NOT_IMPLEMENTED
            out[r] = RequirementVerdict(Status.NOT_JUDGED, why, touch, by)
    return out


def coverage(verdicts: Mapping[str, RequirementVerdict]) -> dict[str, Any]:
    """The coverage headline: how many requirements, judged, passed, failed, and why the
    rest were not judged."""
    vs = list(verdicts.values())
    nj: dict[str, int] = {}
    for v in vs:
        if v.status is Status.NOT_JUDGED and v.reason is not None:
            nj[str(v.reason)] = nj.get(str(v.reason), 0) + 1
    return {
        "requirements": len(vs),
        "judged": sum(1 for v in vs if v.status is not Status.NOT_JUDGED),
        "passed": sum(1 for v in vs if v.status in (Status.PASSED, Status.PROVED)),
        "proved": sum(1 for v in vs if v.status is Status.PROVED),
        "failed": sum(1 for v in vs if v.status is Status.FAILED),
        "error": sum(1 for v in vs if v.status is Status.ERROR),
        "not_judged": dict(sorted(nj.items())),
    }


def run_verdict(checks: Sequence[Check], verdicts: Mapping[str, RequirementVerdict],
                incomplete: str = "") -> tuple[Verdict, str]:
    """The run's verdict and the reason for it.

    ``error`` beats ``failed`` beats ``incomplete`` beats ``passed``: a broken check
    means the run cannot vouch for anything it did not reach; a failure is a definite
    finding even in a partial run.  ``passed`` needs at least one requirement judged and
    none left unjudged for a blocking reason (:data:`BLOCKING_REASONS`).
    """
    errors = [c.id for c in checks if c.status is Status.ERROR]
    if errors:
        return Verdict.ERROR, f"{len(errors)} check(s) could not finish: {_some(errors)}"
    failed = [c.id for c in checks if c.status is Status.FAILED]
    if failed:
        return Verdict.FAILED, f"{len(failed)} check(s) failed: {_some(failed)}"
    if incomplete:
        return Verdict.INCOMPLETE, incomplete
    judged = [r for r, v in verdicts.items() if v.status in (Status.PASSED, Status.PROVED)]
    if not judged:
        return Verdict.INCOMPLETE, "no requirement was judged on this target"
    blocked: dict[str, int] = {}
    for v in verdicts.values():
        if v.status is Status.NOT_JUDGED and v.reason in BLOCKING_REASONS:
            blocked[str(v.reason)] = blocked.get(str(v.reason), 0) + 1
    if blocked:
        why = ", ".join(f"{n} for reason {r}" for r, n in sorted(blocked.items()))
        return Verdict.INCOMPLETE, f"requirements left unjudged: {why}"
    return Verdict.PASSED, f"{len(judged)} requirement(s) judged, none failed"


def _some(ids: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` ids, and how many more there are (a count with fewer names
    would read as a contradiction)."""
    more = len(ids) - shown
    return ", ".join(ids[:shown]) + (f" and {more} more" if more > 0 else "")


# --- selection and bounded text ---------------------------------------------------------------
def matches(patterns: Sequence[str], *names: str) -> bool:
    """Whether any name matches any glob pattern (``--only`` / ``--skip``)."""
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def clip_text(text: str, limit: int = 4000) -> str:
    """``text`` made safe for every report: lone surrogates replaced (they cannot be
    encoded as UTF-8), and cut to ``limit`` characters with the original size noted."""
    if not isinstance(text, str):
        text = str(text)
    safe = text.encode("utf-8", "replace").decode("utf-8")
    if len(safe) <= limit:
        return safe
    head = safe[: limit * 3 // 4]
    tail = safe[-(limit // 4):]
    return f"{head}\n[... {len(safe) - len(head) - len(tail)} of {len(safe)} characters " \
           f"cut ...]\n{tail}"


class RunInterrupted(BaseException):
    """The run must stop now (SIGTERM, the --time-limit alarm); ``reason`` says why.

    A BaseException so that no ``except Exception`` on the way -- in a check, in
    Hypothesis -- mistakes it for a finding; the runner catches it, marks the report
    incomplete and still writes it."""

    def __init__(self, reason: str, exit_code: int = 2) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code
