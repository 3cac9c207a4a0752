"""When a registered statement applies (Requirement.when, spec/virtio/requirements_conditions.py):
every condition names real features and cites the VIRTIO wording that states it, and the
applicability it gives an offer is the one the wording says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from spec.virtio import features as F
from spec.virtio import requirements_conditions as rc
from spec.virtio.registry import all_requirements, condition_of, device_type, not_applicable

SPEC_REPO = Path("/work/.mirror/oasis-tcs+virtio-spec/repo")
REQS = {r.id: r for r in all_requirements()}
BLK = F.BLK_FEATURES
NET = F.NET_FEATURES


def _why(rid: str, offered: int) -> str | None:
    r = REQS[rid]
    dev = device_type(r) or "blk"
    return not_applicable(r, dev, offered, rc.bits_for(dev))


def test_every_condition_names_real_features_and_cites_a_line() -> None:
    rc.check_names()
    for rid, when in rc.CONDITIONS.items():
        assert rid in REQS, rid
        assert re.fullmatch(r"[\w/-]+\.tex:\d+", when.source), (rid, when.source)
        assert REQS[rid].when == when, rid  # attached to the record itself


def test_zoned_statements_do_not_apply_without_zoned() -> None:
    """5.2.6.2: "The following device requirements only apply if VIRTIO_BLK_F_ZONED is
    negotiated"; 5.2.5.2's zoned config fields likewise."""
    zoned = [r for r in REQS.values() if r.side == "device" and any(
        "ZONED" in w.negotiated for w in condition_of(r))]
    assert len(zoned) >= 30, len(zoned)
    plain = F.mask(BLK["FLUSH"], BLK["DISCARD"], F.VERSION_1)
    for r in zoned:
        assert _why(r.id, plain) == "ZONED not offered", r.id
        assert _why(r.id, plain | F.mask(BLK["ZONED"], BLK["SECURE_ERASE"])) is None, r.id


def test_a_forbidden_offer_applies_to_every_device() -> None:
    """A statement forbidding an offer under its own condition is met by not offering,
    so it applies whether or not the feature is offered."""
    for rid, feat in (("VIRTIO-5.2.5.2-DEV-LEGACY-NO-ZONED", "ZONED"),
                      ("VIRTIO-5.2.6.2-DEV-LIFETIME-ONLY-IF-MEANINGFUL", "LIFETIME"),
                      ("VIRTIO-6.2-DEV-SR-IOV-PCI-ONLY", "SR_IOV")):
        assert any(w.forbids_offer == feat for w in condition_of(REQS[rid])), rid
        assert _why(rid, F.mask(F.VERSION_1)) is None, rid


def test_a_feature_the_driver_may_decline_spares_no_device() -> None:
    """"If X is not negotiated" applies to every device: the driver can decline X."""
    for rid in ("VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP", "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE",
                "VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT", "VIRTIO-5.1.6.5.3.1-DEV-NO-VLAN-FILTER"):
        assert _why(rid, F.mask(F.VERSION_1)) is None, rid


def test_offered_and_negotiated_conditions() -> None:
    assert _why("VIRTIO-5.1.4.1-DEV-MAX-PAIRS", F.mask(F.VERSION_1)) == "MQ not offered"
    assert _why("VIRTIO-5.1.4.1-DEV-MAX-PAIRS", F.mask(NET["MQ"])) is None
    # "RSS or HASH_REPORT"
    assert _why("VIRTIO-5.1.4.1-DEV-RSS-KEY", F.mask(NET["HASH_REPORT"])) is None
    assert _why("VIRTIO-5.1.4.1-DEV-RSS-KEY", 0) == "RSS or HASH_REPORT not offered"
    # a control-queue command: CTRL_VQ and its own feature
    rid = "VIRTIO-5.1.6.5.4.2-DEV-ANNOUNCE-CLEAR"
    assert _why(rid, F.mask(NET["GUEST_ANNOUNCE"])) == "CTRL_VQ not offered"
    assert _why(rid, F.mask(NET["CTRL_VQ"])) == "GUEST_ANNOUNCE not offered"
    assert _why(rid, F.mask(NET["CTRL_VQ"], NET["GUEST_ANNOUNCE"])) is None
    # "for devices (not) offering NOTIFICATION_DATA" (4.1.4.4.1)
    nd = F.mask(F.NOTIFICATION_DATA)
    assert _why("VIRTIO-4.1.4.4.1-DEV-NOTIFY-OFFSET-ALIGN-2", nd) == "NOTIFICATION_DATA offered"
    assert _why("VIRTIO-4.1.4.4.1-DEV-NOTIFY-OFFSET-ALIGN-2", 0) is None
    assert _why("VIRTIO-4.1.4.4.1-DEV-NOTIFY-OFFSET-ALIGN-4", 0) == \
        "NOTIFICATION_DATA not offered"
    # 2.8 is the packed ring's: none of it applies without RING_PACKED
    assert _why("VIRTIO-2.8.18-DEV-LIST-ORDER", F.mask(F.VERSION_1)) == "RING_PACKED not offered"
    # every dependency record applies to a device that offers the feature with the dependency
    for feat in F.DEPENDENCIES[F.NET]:
        rid = F.dependency_requirement(F.NET, feat)
        assert _why(rid, 0) is not None and _why(rid, F.mask(feat)) is None, rid


def test_device_type_and_transport_come_from_the_section() -> None:
    blk_rule = REQS["VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"]
    assert device_type(blk_rule) == "blk"
    assert not_applicable(blk_rule, "net", F.mask(F.VERSION_1), rc.bits_for("net")) == \
        "a statement about blk devices"
    pci = next(r for r in REQS.values() if r.section.startswith("4.1.") and r.side == "device")
    assert not_applicable(pci, "blk", 0, rc.bits_for("blk"), transport="mmio") == \
        "a statement about the pci transport"
    assert not_applicable(pci, "blk", 0, rc.bits_for("blk"), transport=None) is None


_PREFIX = {None: "VIRTIO_F_", "blk": "VIRTIO_BLK_F_", "net": "VIRTIO_NET_F_"}


@pytest.mark.skipif(not (SPEC_REPO / "HEAD").exists() and not (SPEC_REPO / ".git").exists(),
                    reason="no clone of oasis-tcs/virtio-spec here")
def test_each_cited_line_names_its_condition() -> None:
    """The wording cited (the line and the 4 after it) names a feature of the condition,
    or says what the condition is about (legacy, PCI): read from tag v1.3-wd02."""
    texts: dict[str, list[str]] = {}

    def lines(cite: str) -> str:
        path, line = cite.rsplit(":", 1)
        if path not in texts:
            out = subprocess.run(["git", "-C", str(SPEC_REPO), "show", f"v1.3-wd02:{path}"],
                                 capture_output=True, text=True, check=True).stdout
            texts[path] = out.splitlines()
        assert 0 < int(line) <= len(texts[path]), cite
        return " ".join(texts[path][int(line) - 1: int(line) + 4])

    missing = []
    for rid, when in rc.CONDITIONS.items():
        near = lines(when.source)
        if when.via:  # the statement names no feature: the wording that ties it to one
            near = lines(when.via)
        dev = device_type(REQS[rid])
        names = [f"{_PREFIX[None] if n in F.TRANSPORT_FEATURES else _PREFIX.get(dev, '')}{n}"
                 for n in when.features()]
        # 5.1.6.4.1 calls GUEST_UFO "VIRTIO_NET_F_GUEST_UDP" (a name 5.1.3 lacks); a list
        # names "VIRTIO_NET_F_GUEST_TSO4, TSO6, UFO, USO4 or USO6" with one prefix
        names += [n.replace("GUEST_UFO", "GUEST_UDP") for n in names]
        words = names + (["PCI"] if when.transport == "pci" else [])
        if not any(w in near for w in words) and not any(
                f", {n.rsplit('_', 1)[-1]}" in near for n in when.features()):
            missing.append((rid, when.via or when.source, words))
    assert not missing, missing


def test_driver_statements_carry_their_conditions() -> None:
    """The driver side states its conditions the same way: a driver of a device that
    offers ACCESS_PLATFORM is not bound to pass physical addresses; the zoned request rules
    bind only with ZONED; "A driver SHOULD accept X if it is offered"."""
    ap = F.mask(F.ACCESS_PLATFORM)
    assert _why("VIRTIO-6.1-DRV-PHYSICAL-ADDRESSES", ap) == "ACCESS_PLATFORM offered"
    assert _why("VIRTIO-6.1-DRV-PHYSICAL-ADDRESSES", 0) is None
    assert _why("VIRTIO-6.1-DRV-ACCEPT-RING-PACKED", 0) == "RING_PACKED not offered"
    assert _why("VIRTIO-5.2.6.1-DRV-ZONE-APPEND-SIZE", F.mask(BLK["FLUSH"])) == \
        "ZONED not offered"
    # a driver rule forbidding a facility without its feature binds every driver
    assert _why("VIRTIO-2.7.5.3-DRV-INDIRECT-NEGOTIATED", 0) is None
