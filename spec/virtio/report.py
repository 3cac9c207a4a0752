"""Plain-text requirements table for ``pvspec virtio requirements``."""

from __future__ import annotations

from collections.abc import Sequence

from spec.virtio.registry import Requirement


def render_requirements_table(reqs: Sequence[Requirement]) -> str:
    """One row per requirement plus a coverage summary line."""
    head = ("id", "section", "level", "side", "covered-by")
    rows = [(r.id, r.section, r.level, r.side, ", ".join(r.checks) or "-") for r in reqs]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in [head, *rows]
    ]
    musts = [r for r in reqs if r.level in ("MUST", "MUST NOT")]
    uncovered = sum(1 for r in musts if not r.checks)
    lines.append(f"{len(reqs)} requirements, {len(musts)} MUST, {uncovered} MUST uncovered")
    return "\n".join(lines)
