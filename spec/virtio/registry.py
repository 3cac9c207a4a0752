"""The VIRTIO requirements registry: every normative statement we check, once.

Each record paraphrases one Driver/Device Requirements statement of the VIRTIO 1.3
specification in our own words, with its section number and level.  Checks declare
which requirement ids they cover (``covers=``), and a test fails when a MUST has none.

The statements VIRTIO 1.4 adds to the covered sections are registered too
(spec/virtio/requirements_v14.py, ``only_in="1.4"``), but targets are judged against 1.3:
:func:`all_requirements` returns them only when asked, so no 1.3 figure counts them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

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
    # when the statement applies, from its own wording (None: it states no condition of
    # its own; a section-wide one may still hold, :func:`condition_of`)
    when: When | None = None
    # "1.4": a statement only VIRTIO 1.4 makes (requirements_v14.py); ``section`` is then
    # its 1.4 section, and ``when.source`` cites tag v1.4-cs01.  None: a 1.3 statement.
    only_in: str | None = None

    @property
    def section_1_4(self) -> str | None:
        """Its section in VIRTIO 1.4's numbering (spec/virtio/numbering.py; None: the
        1.3 heading has no counterpart there).  A 1.4-only record's section already is."""
        if self.only_in == "1.4":
            return self.section
        from spec.virtio.numbering import in_1_4

        return in_1_4(self.section)

    @property
    def section_1_3(self) -> str | None:
        """Its section in VIRTIO 1.3 (None: a statement 1.3 does not make)."""
        return None if self.only_in else self.section


@attrs.frozen
class When:
    """When a statement applies, as its own VIRTIO 1.3 wording (or the wording that opens
    its section) conditions it; ``source`` cites that wording in oasis-tcs/virtio-spec at
    tag v1.3-wd02 (file:line).

    Features are named as §2.2/chapter 6 and the device's feature section name them,
    without the ``VIRTIO_F_`` / ``VIRTIO_<DEV>_F_`` prefix; ``"A|B"`` is either of them.

    * ``offered``: applies only to a device that offers every entry ("if it offers X");
    * ``not_offered``: applies only to a device that offers none of them ("for devices
      not offering X");
    * ``negotiated``: applies only while every entry is negotiated ("if X has been
      negotiated"); a device that does not offer one never comes under it;
    * ``not_negotiated``: applies only while none is negotiated ("if X is not negotiated");
      the driver may always decline a feature, so this never spares a device;
    * ``legacy``: applies to the legacy interface only (a transitional device's);
    * ``transport``: applies on that transport only (``pci``, ``mmio``, ``ccw``);
    * ``via``: for a statement that names no feature itself, about a command, field or mode
      that exists only with one, the wording that ties it to the feature (file:line);
    * ``forbids_offer``: the statement forbids offering that feature under a condition of
      its own (a legacy interface, the backing storage, a PCI SR-IOV capability). It
      applies to every device; one that does not offer the feature meets it, which the
      offer alone shows; one that does is judged only where that condition can be seen.
    """

    offered: tuple[str, ...] = ()
    not_offered: tuple[str, ...] = ()
    negotiated: tuple[str, ...] = ()
    not_negotiated: tuple[str, ...] = ()
    legacy: bool = False
    transport: str = ""
    forbids_offer: str = ""
    source: str = ""
    # when the statement names no feature itself (it is about a command, a field or a
    # mode that exists only with one): where the spec ties that facility to the feature
    via: str = ""

    def features(self) -> tuple[str, ...]:
        """Every feature name this condition mentions."""
        return tuple(n for e in (*self.offered, *self.not_offered, *self.negotiated,
                                 *self.not_negotiated,
                                 *((self.forbids_offer,) if self.forbids_offer else ()))
                     for n in e.split("|"))


# device-type chapters of VIRTIO 1.3 (§5.x) and the transport sections (§4.x): a statement
# in one of them applies to that device type or transport only
DEVICE_CHAPTERS = {"5.1": "net", "5.2": "blk", "5.3": "console", "5.4": "rng", "5.7": "gpu",
                   "5.8": "input", "5.11": "fs", "5.14": "snd"}
TRANSPORT_SECTIONS = {"4.1": "pci", "4.2": "mmio", "4.3": "ccw"}
# conditions the wording that opens a section states for every statement in it (longest
# section prefix first wins over none: they combine with the record's own, :func:`condition_of`)
SECTION_WHEN: dict[str, When] = {
    # 2.7 describes split virtqueues, 2.8 packed ones: "Use of packed virtqueues is
    # negotiated by the VIRTIO_F_RING_PACKED feature bit"
    "2.7": When(not_negotiated=("RING_PACKED",), source="packed-ring.tex:7"),
    "2.8": When(negotiated=("RING_PACKED",), source="packed-ring.tex:7"),
    # 2.6.1 "When VIRTIO_F_RING_RESET is negotiated, the driver can reset a virtqueue"
    "2.6.1": When(negotiated=("RING_RESET",), source="content.tex:403"),
    # 5.1.6.5's control-queue condition (CTRL_VQ) and 5.2.6.2's "the following device
    # requirements only apply if VIRTIO_BLK_F_ZONED is negotiated" cover some of their
    # section's statements only: recorded on each of them (requirements_conditions.py)
}


def section_of(section: str, table: dict[str, Any]) -> Any:
    """The entry of ``table`` for the longest key that is ``section`` or one of its
    parents (None: none)."""
    best = None
    for key in table:
        if (section == key or section.startswith(key + ".")) and (
                best is None or len(key) > len(best)):
            best = key
    return table[best] if best is not None else None


def condition_of(req: Requirement) -> tuple[When, ...]:
    """Every condition ``req`` states: its section's and its own."""
    return tuple(w for w in (section_of(req.section, SECTION_WHEN), req.when) if w is not None)


def device_type(req: Requirement) -> str | None:
    """The device type a statement of a device chapter applies to (None: any)."""
    return section_of(req.section, DEVICE_CHAPTERS)


def transport_of(req: Requirement) -> str | None:
    """The transport a statement applies to: its section's (§4.x) or its own."""
    own = next((w.transport for w in condition_of(req) if w.transport), None)
    return own or section_of(req.section, TRANSPORT_SECTIONS)


def _has(offered: int, entry: str, bits: Callable[[str], int | None]) -> bool:
    return any((b := bits(n)) is not None and offered >> b & 1 for n in entry.split("|"))


def not_applicable(req: Requirement, device: str, offered: int,
                   bits: Callable[[str], int | None], transport: str | None = None,
                   legacy: bool = False) -> str | None:
    """Why ``req`` does not apply to a ``device`` whose offer is ``offered`` (None: it
    applies).  ``bits`` maps a feature name to its bit for that device; ``transport`` the
    device's transport (None: not known: a transport condition is not held against it);
    ``legacy``: whether the legacy interface is in use.  A feature the driver may decline
    (``not_negotiated``) or that the statement forbids to offer spares no device."""
    dev = device_type(req)
    if dev is not None and dev != device:
        return f"a statement about {dev} devices"
    where = transport_of(req)
    if where and transport and where != transport:
        return f"a statement about the {where} transport"
    for w in condition_of(req):
        if w.legacy and not legacy:
            return "a statement about the legacy interface"
        for entry in (*w.offered, *w.negotiated):
            if not _has(offered, entry, bits):
                return f"{' or '.join(entry.split('|'))} not offered"
        for entry in w.not_offered:
            if _has(offered, entry, bits):
                return f"{' or '.join(entry.split('|'))} offered"
    return None


_REGISTRY: dict[str, Requirement] = {}


def register(*reqs: Requirement) -> None:
    """Add requirements; ids are unique across the whole registry."""
    for req in reqs:
        if req.id in _CONDITIONS:
            req = attrs.evolve(req, when=_CONDITIONS[req.id])
        if req.id in _REGISTRY and _REGISTRY[req.id] != req:
            raise ValueError(f"duplicate requirement id {req.id}")
        _REGISTRY[req.id] = req


_CONDITIONS: dict[str, When] = {}


def condition(table: dict[str, When]) -> None:
    """Attach to statements the conditions their wording states (``table``: id ->
    :class:`When`), whether they are registered yet or not (the modules load in any
    order); :func:`all_requirements` fails on a condition nobody registered."""
    _CONDITIONS.update(table)
    for rid, when in table.items():
        if rid in _REGISTRY:
            _REGISTRY[rid] = attrs.evolve(_REGISTRY[rid], when=when)


def all_requirements(include_1_4: bool = False) -> list[Requirement]:
    """Every registered VIRTIO 1.3 requirement, importing the modules that register them.

    A target is judged against VIRTIO 1.3, and every universe, denominator and coverage
    headline is built from this list; the statements only VIRTIO 1.4 makes do not apply
    to such a target, so they are left out unless ``include_1_4`` (for listing them, as
    ``pvspec virtio requirements`` does, marked as 1.4-only)."""
    import spec.virtio  # noqa: F401  (its __init__ imports every rule module)

    stray = set(_CONDITIONS) - set(_REGISTRY)
    if stray:
        raise KeyError(f"conditions for unregistered requirements: {sorted(stray)}")
    return sorted((r for r in _REGISTRY.values() if include_1_4 or r.only_in is None),
                  key=lambda r: (r.only_in or "", _section_key(r.section), r.id))


def _section_key(section: str) -> tuple[int, ...]:
    return tuple(int(p) for p in section.split(".") if p.isdigit())
