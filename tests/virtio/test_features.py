"""Feature negotiation (§2.2, chapter 6) with planted bugs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio import features as F

V1 = 1 << F.VERSION_1
N = F.NET_FEATURES


def test_ranges() -> None:
    assert F.bit_range(0) == F.bit_range(23) == F.bit_range(50) == "device"
    assert F.bit_range(24) == F.bit_range(41) == "transport"
    assert F.bit_range(42) == F.bit_range(49) == F.bit_range(128) == "reserved"


def test_driver_unoffered_bit_is_flagged() -> None:
    v = F.check_driver_accept(F.NET, V1, V1 | F.mask(N["CSUM"]))
    assert v is not None and v.requirement == "VIRTIO-2.2.1-DRV-SUBSET"


def test_driver_dependency_is_flagged() -> None:
    offered = V1 | F.mask(N["CTRL_VQ"], N["CTRL_RX"])
    assert F.check_driver_accept(F.NET, offered, offered) is None
    v = F.check_driver_accept(F.NET, offered, V1 | F.mask(N["CTRL_RX"]))
    assert v is not None and v.requirement == "VIRTIO-2.2.1-DRV-DEPENDENCY"


def test_driver_reserved_bit_is_flagged() -> None:
    offered = V1 | (1 << 45)
    v = F.check_driver_accept(F.NET, offered, offered)
    assert v is not None and v.requirement == "VIRTIO-2.2.1-DRV-NO-UNDEFINED"


def test_refusing_version_1_is_flagged() -> None:
    v = F.check_driver_accept(F.BLOCK, V1, 0)
    assert v is not None and v.requirement == "VIRTIO-6.1-DRV-ACCEPT-VERSION-1"


@given(st.integers(0, (1 << 64) - 1))
def test_unknown_offered_bits_do_not_block_a_valid_subset(noise: int) -> None:
    """A driver taking only VERSION_1 is valid whatever else is offered."""
    assert F.valid_subset(F.BLOCK, V1 | noise, V1)


def test_planted_offer_without_dependency_is_flagged() -> None:
    v = F.check_device_offer(F.NET, V1 | F.mask(N["MQ"]))
    assert v is not None and v.requirement == "VIRTIO-5.1.3.1-DEV-MQ-NEEDS-CTRL-VQ"
    assert "MQ (bit 22) offered without CTRL_VQ (bit 17)" in v.detail
    both = V1 | F.mask(N["HASH_TUNNEL"], N["CTRL_VQ"])
    v = F.check_device_offer(F.NET, both)  # needs RSS or HASH_REPORT too
    assert v is not None and v.requirement.startswith("VIRTIO-5.1.3.1-DEV-HASH-TUNNEL-NEEDS-")
    assert "CTRL_VQ" not in v.detail and "RSS (bit 60) or HASH_REPORT (bit 57)" in v.detail
    assert F.check_device_offer(F.NET, both | F.mask(N["HASH_REPORT"])) is None


def _dependencies() -> list[tuple[int, int]]:
    return [(dev, feat) for dev, table in F.DEPENDENCIES.items() if dev is not None
            for feat in table]


def test_each_dependency_has_its_own_requirement() -> None:
    """One requirement per stated dependency (5.1.3.1, 5.2.5.2, 5.7.3): a device offering
    the feature without what it requires is flagged with that one, and no other is."""
    from spec.virtio.registry import all_requirements

    registry = {r.id: r for r in all_requirements()}
    ids = [F.dependency_requirement(dev, feat) for dev, feat in _dependencies()]
    assert len(set(ids)) == len(ids), ids
    for (dev, feat), rid in zip(_dependencies(), ids, strict=True):
        req = registry[rid]
        assert req.side == "device" and req.level in ("MUST", "MUST NOT")
        assert req.section == F.DEPENDENCY_SECTIONS[dev], rid
        assert F.feature_name(dev, feat).replace("_", "-").removeprefix("CONFIG-") in rid
        v = F.check_device_offer(dev, V1 | F.mask(feat))
        assert v is not None and v.requirement == rid, (rid, v)
        assert v.detail.startswith(f"{F.feature_name(dev, feat)} (bit {feat}) offered without")
        # met: judged and held, under its own id
        full = V1 | F.mask(feat, *(c[0] for c in F.DEPENDENCIES[dev][feat]))
        assert (rid, None) in F.judge_device_offer(dev, full)
    wce = F.check_device_offer(F.BLOCK, V1 | F.mask(F.BLK_FEATURES["CONFIG_WCE"]))
    assert wce is not None and wce.requirement == "VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH"
    gpu = F.check_device_offer(F.GPU, V1 | F.mask(F.GPU_FEATURES["CONTEXT_INIT"]))
    assert gpu is not None and gpu.requirement == "VIRTIO-5.7.3-DEV-CONTEXT-INIT-NEEDS-VIRGL"


def test_a_dependency_is_judged_only_when_its_feature_is_offered() -> None:
    """What the offer check credits: an unoffered feature's dependency is not judged."""
    judged = dict(F.judge_device_offer(F.BLOCK, V1 | F.mask(F.BLK_FEATURES["FLUSH"])))
    assert "VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH" not in judged
    assert set(judged) == {"VIRTIO-6.2-DEV-OFFER-VERSION-1", "VIRTIO-2.2.2-DEV-NO-UNDEFINED"}
    wce = V1 | F.mask(F.BLK_FEATURES["FLUSH"], F.BLK_FEATURES["CONFIG_WCE"])
    assert dict(F.judge_device_offer(F.BLOCK, wce))["VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH"] is None
    assert "VIRTIO-6.2-DEV-SR-IOV-PCI-ONLY" in dict(F.judge_device_offer(F.BLOCK, V1, "mmio"))


def test_planted_reserved_offer_is_flagged() -> None:
    for bad in (1 << 44, 1 << 26, 1 << F.ADMIN_VQ):
        v = F.check_device_offer(F.NET, V1 | bad, "mmio")
        assert v is not None and v.requirement == "VIRTIO-2.2.2-DEV-NO-UNDEFINED", bad


def test_planted_missing_version_1_is_flagged() -> None:
    v = F.check_device_offer(F.BLOCK, 0)
    assert v is not None and v.requirement == "VIRTIO-6.2-DEV-OFFER-VERSION-1"


@given(st.integers(0, (1 << 64) - 1))
def test_valid_subset_implies_subset_and_deps(accepted: int) -> None:
    offered = F.defined_bits(F.NET)
    if F.valid_subset(F.NET, offered, accepted):
        assert accepted & ~offered == 0 and not F.missing_dependencies(F.NET, accepted)
