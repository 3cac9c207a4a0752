"""Verdicts: which VIRTIO requirement an observed behaviour broke.

Every check in :mod:`spec.virtio` answers with ``None`` (conforming) or a
:class:`Violation` naming the registry id of the broken requirement, so a report can
say *which* rule failed rather than just "bad".
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["Violation", "first_violation"]


@attrs.frozen
class Violation:
    requirement: str  # a registry id, e.g. "VIRTIO-2.1.1-DRV-NO-CLEAR"
    side: str  # "driver" | "device": who broke it
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.requirement} ({self.side}): {self.detail}"


def first_violation(vs: Iterable[Violation | None]) -> Violation | None:
    """The first non-``None`` verdict: checks are ordered most fundamental first."""
    for v in vs:
        if v is not None:
            return v
    return None
