"""The VIRTIO requirements registry: every normative statement we check, once.

Each record paraphrases one Driver/Device Requirements statement of the VIRTIO 1.3
specification in our own words, with its section number and level.  Checks declare
which requirement ids they cover (``covers=``), and a test fails when a MUST has none.
"""

from __future__ import annotations

from typing import Literal

import attrs

Level = Literal["MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY"]
Side = Literal["device", "driver"]


@attrs.frozen
class Requirement:
    id: str  # stable, e.g. "VIRTIO-2.7.8-DEV-USED-LEN"
    section: str  # VIRTIO 1.3 section number, e.g. "2.7.8.2"
    level: Level
    side: Side
    text: str  # our paraphrase, never the spec's wording
    checks: tuple[str, ...] = ()  # names of the checks that cover it

    @property
    def section_1_4(self) -> str | None:
        """Its section in VIRTIO 1.4's numbering (spec/virtio/numbering.py; None: the
        1.3 heading has no counterpart there)."""
        from spec.virtio.numbering import in_1_4

        return in_1_4(self.section)


_REGISTRY: dict[str, Requirement] = {}


def register(*reqs: Requirement) -> None:
    """Add requirements; ids are unique across the whole registry."""
    for req in reqs:
        if req.id in _REGISTRY and _REGISTRY[req.id] != req:
            raise ValueError(f"duplicate requirement id {req.id}")
        _REGISTRY[req.id] = req


def all_requirements() -> list[Requirement]:
    """Every registered requirement, importing the modules that register them."""
    import spec.virtio  # noqa: F401  (its __init__ imports every rule module)

    return sorted(_REGISTRY.values(), key=lambda r: (_section_key(r.section), r.id))


def _section_key(section: str) -> tuple[int, ...]:
    return tuple(int(p) for p in section.split(".") if p.isdigit())
