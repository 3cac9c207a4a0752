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
    assert v is not None and v.requirement == "VIRTIO-2.2.2-DEV-DEPENDENCY"
    both = V1 | F.mask(N["HASH_TUNNEL"], N["CTRL_VQ"])
    assert F.check_device_offer(F.NET, both) is not None  # needs RSS or HASH_REPORT too
    assert F.check_device_offer(F.NET, both | F.mask(N["HASH_REPORT"])) is None


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
