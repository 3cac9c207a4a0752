"""virtio-blk requests drawn by Hypothesis across the space VIRTIO 5.2.6 allows, judged by
the learned disk model on any back-end (issue 13, item 3).

The fixed checks (:mod:`conformance.vhost_user.checks`) send the cases someone thought
of; this one draws them: every request type the device negotiated (and some it must
refuse), sector ranges that hug sector 0 and the last sector, lengths of 1 to 8 sectors,
data split over 1 to 4 descriptors, indirect tables where negotiated, batches of
several requests in one kick, and requests past capacity (a driver error: the device's
answer is its own choice, only the ring rules bind it).  Each example is one session
(a fresh connection, a fresh learned disk) and every step is judged as the fixed checks
judge theirs: the split-ring oracle on the memory before and after, the disk model on
each completion.

Within one batch no two requests touch the same sector when either writes: VIRTIO does
not order requests in flight, so a read racing a write may return either content, and
the judge (which applies completions in used-ring order) must not be asked to guess.

A violation that is not a known deviation of the target stops the search; Hypothesis
then shrinks the example to a minimal batch list, which is what the report shows, with
its evidence.  A real device keeps its disk between examples, so a replay may not repeat
a failure (an earlier example may have left the very bytes a lost write should have
put there): the failure is then reported as first seen, and says so.

Passes are folded into one result per rule ("held on N steps over M requests").  The
number of examples follows the run's profile (``ci`` or ``thorough``), and the search is
derandomized: a run of the same suite on the same device state draws the same requests.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from conformance.results import NotJudged
from conformance.vhost_user import checks as ck
from conformance.vhost_user import session as ss
from conformance.vhost_user.checks import Result
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio.devices import block as blk

CHECK = "blk-explore"
EXAMPLES = {"ci": 15, "thorough": 200}
PROFILE: contextvars.ContextVar[str] = contextvars.ContextVar("pvspec_vu_profile",
                                                              default="ci")
MAX_SECTORS = 8  # per request: 4 KiB, so a batch of 6 fits the session's data area
UNKNOWN_TYPES = (2, 3, 99, 0xFFFF)  # no type 5.2.6 defines: UNSUPP


@attrs.frozen
class Batch:
    """Requests published together, each with its data split over ``split`` descriptors."""

    requests: tuple[blk.Request, ...]
    split: int = 1
    indirect: bool = False

    def describe(self) -> str:
        kinds = ", ".join(_describe(r) for r in self.requests)
        return f"[{kinds}] split {self.split}{' indirect' if self.indirect else ''}"


def _describe(r: blk.Request) -> str:
    name = {blk.T_IN: "IN", blk.T_OUT: "OUT", blk.T_FLUSH: "FLUSH", blk.T_GET_ID: "GET_ID",
            blk.T_DISCARD: "DISCARD", blk.T_WRITE_ZEROES: "WRITE_ZEROES"}.get(r.type,
                                                                          f"type {r.type}")
    if r.type in (blk.T_IN, blk.T_OUT):
        n = (r.in_len if r.type == blk.T_IN else len(r.data)) // blk.SECTOR
        return f"{name} {r.sector}+{n}"
    if r.type in blk.T_RANGES:
        return name + " " + " ".join(f"{s}+{n}/{f:#x}" for s, n, f in
                                     blk.decode_segments(r.data))
    return name


@attrs.frozen
class Space:
    """What the device showed: the bounds requests are drawn in."""

    capacity: int
    features: int
    indirect: bool

    def has(self, name: str) -> bool:
        return F.has(self.features, blk.FB[name])


def _sector(draw: Any, cap: int, n: int, hot: tuple[int, ...]) -> int:
    """Mostly near one of the example's ``hot`` sectors (so later requests meet what
    earlier ones wrote or read: that is what the learned disk can judge), sometimes
    hugging either end or anywhere, now and then one to a few sectors past the end."""
    last = max(cap - n, 0)
    how = draw(st.integers(0, 7))
    if how < 5:
        return min(max(draw(st.sampled_from(hot)) + draw(st.integers(-2, 2)), 0), last)
    if how < 7:
        return draw(st.sampled_from((0, 1, last, max(last - 1, 0))) | st.integers(0, last))
    return cap - n + draw(st.integers(1, 4))


@st.composite
def requests(draw: Any, space: Space, hot: tuple[int, ...] = (0,)) -> blk.Request:
    kinds = ["IN", "IN", "OUT", "OUT", "FLUSH", "GET_ID", "UNKNOWN"]
    kinds += ["DISCARD"] if space.has("DISCARD") else []
    kinds += ["WRITE_ZEROES"] if space.has("WRITE_ZEROES") else []
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, MAX_SECTORS))
    if kind == "IN":
        return blk.Request(blk.T_IN, _sector(draw, space.capacity, n, hot), in_len=n * blk.SECTOR)
    if kind == "OUT":
        seed = draw(st.integers(0, 255))  # every sector of a write gets its own bytes
        data = bytes((seed + 7 * i + 31 * (i >> 9)) & 0xFF for i in range(n * blk.SECTOR))
        return blk.Request(blk.T_OUT, _sector(draw, space.capacity, n, hot), data=data)
    if kind == "FLUSH":
        return blk.Request(blk.T_FLUSH)
    if kind == "GET_ID":
        return blk.Request(blk.T_GET_ID, in_len=blk.ID_BYTES)
    if kind == "UNKNOWN":
        return blk.Request(draw(st.sampled_from(UNKNOWN_TYPES)), in_len=0)
    typ = blk.T_DISCARD if kind == "DISCARD" else blk.T_WRITE_ZEROES
    # 5.2.6.2: unmap is defined for write zeroes only; bit 1 is defined for neither
    flags = draw(st.sampled_from((0, 0, 0, 2) + ((1,) if typ == blk.T_WRITE_ZEROES else ())))
    seg = blk.encode_segment(_sector(draw, space.capacity, n, hot), n, unmap=bool(flags & 1),
                             flags=flags & ~1)
    return blk.Request(typ, data=seg)


def _span(r: blk.Request) -> tuple[range, bool]:
    """The sectors ``r`` reads or changes, and whether it changes them."""
    if r.type == blk.T_IN:
        return range(r.sector, r.sector + r.in_len // blk.SECTOR), False
    sectors = [range(lo // blk.SECTOR, hi // blk.SECTOR) for lo, hi in blk.byte_ranges(r)]
    return (sectors[0] if len(sectors) == 1 else range(0)), bool(sectors)


def _independent(reqs: Sequence[blk.Request]) -> tuple[blk.Request, ...]:
    """Drop each request that shares a sector with an earlier one when either writes."""
    kept: list[blk.Request] = []
    spans: list[tuple[range, bool]] = []
    for r in reqs:
        span, writes = _span(r)
        if all(not ((writes or w) and set(span) & set(s)) for s, w in spans):
            kept.append(r)
            spans.append((span, writes))
    return tuple(kept)


@st.composite
def batches(draw: Any, space: Space, hot: tuple[int, ...] = (0,),
            first: tuple[blk.Request, ...] = ()) -> Batch:
    drawn = draw(st.lists(requests(space, hot), min_size=0 if first else 1, max_size=6))
    reqs = _independent([*first, *drawn])
    indirect = space.indirect and draw(st.booleans())
    return Batch(reqs, draw(st.integers(1, 4)), indirect)


def _read_back(r: blk.Request, capacity: int) -> blk.Request | None:
    """A read of what ``r`` wrote (or read), if it was in range."""
    span, _ = _span(r)
    if not span or span.stop > capacity or r.type not in (blk.T_IN, blk.T_OUT,
                                                             blk.T_WRITE_ZEROES):
        return None
    return blk.Request(blk.T_IN, span.start, in_len=len(span) * blk.SECTOR)


@st.composite
def examples(draw: Any, space: Space) -> list[Batch]:
    """One session's batches, around one to three sectors of the example's own; half
    the batches after the first start by reading back a range an earlier batch wrote or
    read (what the learned disk can judge: a lost or torn write, a read that changes)."""
    cap = space.capacity
    hot = tuple(draw(st.lists(st.sampled_from((0, cap - 1)) | st.integers(0, cap - 1),
                              min_size=1, max_size=3)))
    out: list[Batch] = []
    for _ in range(draw(st.integers(1, 5))):
        earlier = [rb for b in out for r in b.requests
                   if (rb := _read_back(r, cap)) is not None]
        first = (draw(st.sampled_from(earlier)),) if earlier and draw(st.booleans()) else ()
        out.append(draw(batches(space, hot, first)))
    return out


class _Found(Exception):
    """A step broke a rule that is not a known deviation of the target: the example."""

    def __init__(self, step: ss.Step, what: str, found: list[tuple[str, str, str]]) -> None:
        super().__init__(f"{what}: {found}")
        self.step, self.what, self.found = step, what, found


def _step_findings(step: ss.Step) -> list[tuple[str, str, str]]:
    """(rule, detail, level) of every violation of one step."""
    out = [(v.rule, v.detail, v.level) for v in step.verdict.violations]
    for comp in step.completions:
        if comp.violation is not None:
            cv: Any = comp.violation
            out.append((cv.requirement, f"head {comp.head} {cv.detail}", "MUST"))
    return out


def _credits(step: ss.Step) -> set[str]:
    rules = set(step.verdict.judged - step.verdict.rules())
    rules |= {c.rule for c in step.completions if c.rule and c.violation is None}
    if not step.verdict.violations and not any(c.violation for c in step.completions) \
            and step.outcome == "completed":
        rules.add("PVSPEC-RING-PROGRESS")
    return rules


def check_blk_explore(t: Target) -> list[Result]:
    """Draw request batches across the space 5.2.6 allows; judge every step."""
    c = ck.Ctx(t, CHECK)
    with ss.BlkSession(t) as s:
        space = Space(s.capacity, s.virtio_features, s.feats.indirect)
    if not space.capacity:
        for rule in ck.BLK_DATA_RULES:
            c.skip(rule, ck.CAPACITY_UNKNOWN, NotJudged.CAPABILITY)
        return c.results
    credits: Counter[str] = Counter()
    expected: Counter[str] = Counter()  # known deviations seen, by rule
    example_of: dict[str, str] = {}
    counts = {"examples": 0, "requests": 0}
    first: list[_Found] = []  # as first seen: what is reported if replays disagree

    def run(example: list[Batch]) -> None:
        counts["examples"] += 1
        with ss.BlkSession(t) as s:
            for i, b in enumerate(example):
                step = s.run(list(b.requests), indirect=b.indirect, split=b.split)
                what = f"batch {i + 1}/{len(example)} {b.describe()}"
                if step.outcome in ("closed", "crashed"):
                    raise _Found(step, what, [("PVSPEC-RING-PROGRESS",
                                               f"the back-end {step.outcome}", "MUST")])
                found = _step_findings(step)
                new = [f for f in found if f[2] == "MUST"
                       and ck.expected_deviation(t.name, CHECK, f[0], f[1]) is None]
                if new:
                    stop = _Found(step, what, new)
                    if not first:
                        first.append(stop)
                    raise stop
                for rule, detail, _ in found:
                    expected[rule] += 1
                    example_of.setdefault(rule, f"{what}: {detail}")
                counts["requests"] += len(b.requests)
                credits.update(_credits(step))

    search = settings(max_examples=EXAMPLES.get(PROFILE.get(), EXAMPLES["ci"]),
                      derandomize=True, database=None, deadline=None, print_blob=False,
                      phases=(Phase.generate, Phase.shrink), report_multiple_bugs=False,
                      suppress_health_check=list(HealthCheck))(
        given(examples(space))(run))
    shrunk: _Found | None = None
    note = ""
    try:
        search()  # a ProtocolViolation (hang, garbage, closed) goes on to run_check
    except _Found as f:  # the shrunk example
        shrunk = f
    except Flaky:
        # a real device keeps its state between examples, so replaying an example need
        # not repeat what it did the first time: report the failure as first seen
        shrunk = first[0] if first else None
        note = " (as first seen: replaying it on the device did not repeat it)"
        if shrunk is None:
            raise
    if shrunk is not None:
        seen = shrunk.step.evidence()
        for rule, detail, level in shrunk.found:
            c.add(rule, False, f"{shrunk.what}: {detail}{note}", seen, level)
        credits.clear()  # the counts include examples replayed while shrinking
    for rule, n in sorted(expected.items()):  # known: reported as expected-deviation
        c.add(rule, False, f"seen {n} time(s), e.g. {example_of[rule]}")
    for rule, n in sorted(credits.items()):
        c.add(rule, True, f"held on {n} step(s) over {counts['requests']} requests in "
                          f"{counts['examples']} drawn examples")
    return c.results
