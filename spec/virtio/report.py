"""Plain-text requirements table for ``pvspec virtio requirements``."""

from __future__ import annotations

from collections.abc import Sequence

from spec.virtio.registry import Requirement

ONLY_1_4 = "not judged: VIRTIO 1.4 only"


def render_requirements_table(reqs: Sequence[Requirement]) -> str:
    """One row per requirement plus a coverage summary line.

    A statement only VIRTIO 1.4 makes shows "-" as its 1.3 section and is marked not
    judged (targets are judged against 1.3); the summary line counts the 1.3 statements
    only, and a line before it says how many 1.4-only ones were listed."""
    head = ("id", "1.3", "1.4", "level", "side", "covered-by")
    rows = [(r.id, r.section_1_3 or "-", r.section_1_4 or "-", r.level, r.side,
             ONLY_1_4 if r.only_in else ", ".join(r.checks) or "-") for r in reqs]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(5)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in [head, *rows]
    ]
    only = [r for r in reqs if r.only_in]
    if only:
        dev = sum(1 for r in only if r.side == "device")
        lines.append(f"{len(only)} statements only in VIRTIO 1.4 ({dev} device, "
                     f"{len(only) - dev} driver): listed, not counted below")
    v13 = [r for r in reqs if not r.only_in]
    musts = [r for r in v13 if r.level in ("MUST", "MUST NOT")]
    uncovered = sum(1 for r in musts if not r.checks)
    lines.append(f"{len(v13)} requirements, {len(musts)} MUST, {uncovered} MUST uncovered")
    return "\n".join(lines)
