"""Plain-text requirements table for ``pvspec virtio requirements``."""

from __future__ import annotations

from collections.abc import Sequence

from spec.virtio.registry import Requirement


def render_requirements_table(reqs: Sequence[Requirement]) -> str:
    """One row per requirement plus a coverage summary line."""
    head = ("id", "1.3", "1.4", "level", "side", "covered-by")
    rows = [(r.id, r.section, r.section_1_4 or "-", r.level, r.side,
             ", ".join(r.checks) or "-") for r in reqs]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(5)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in [head, *rows]
    ]
    musts = [r for r in reqs if r.level in ("MUST", "MUST NOT")]
    uncovered = sum(1 for r in musts if not r.checks)
    lines.append(f"{len(reqs)} requirements, {len(musts)} MUST, {uncovered} MUST uncovered")
    return "\n".join(lines)
