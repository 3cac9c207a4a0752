"""Config space layout (§2.5) and generation counter with a planted bug."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio import config as C
from spec.virtio.devices import block

versions = st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=5)


def _timeline(vs: list[bytes], times: list[int], bump: bool) -> C.ConfigTimeline:
    ct = tuple(sorted(set(times)))[: len(vs) - 1]
    vs = vs[: len(ct) + 1]
    gens = C.conforming_generations(len(vs)) if bump else (0,) * len(vs)
    return C.ConfigTimeline(tuple(vs), ct, gens)


@given(versions, st.lists(st.integers(0, 30), max_size=4))
def test_driver_loop_is_consistent_with_conforming_device(
    vs: list[bytes], times: list[int]
) -> None:
    dev = _timeline(vs, times, bump=True)
    values, trace, _ = C.driver_read_loop(dev, [(0, 4), (4, 4)])
    assert C.check_generation_trace(trace) is None
    assert b"".join(values) in dev.versions


def test_planted_generation_not_bumped_is_flagged() -> None:
    dev = _timeline([b"A" * 8, b"B" * 8], [2], bump=False)
    values, trace, _ = C.driver_read_loop(dev, [(0, 4), (4, 4)])
    assert b"".join(values) not in dev.versions  # torn read
    v = C.check_generation_trace(trace)
    assert v is not None and v.requirement == "VIRTIO-4.1.4.3.1-DEV-CONFIG-GENERATION"


@given(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1))
def test_layout_roundtrip_little_endian(cap: int, blk: int) -> None:
    raw = block.CONFIG.encode({"capacity": cap, "blk_size": blk})
    assert raw[:8] == cap.to_bytes(8, "little")
    out = block.CONFIG.decode(raw)
    assert out["capacity"] == cap and out["blk_size"] == blk


def test_optional_field_without_feature_is_flagged() -> None:
    f = block.CONFIG.field("blk_size")
    v = C.check_driver_config_access(block.CONFIG, 0, f.offset, 4)
    assert v is not None and v.requirement == "VIRTIO-2.5.1-DRV-CHECK-FEATURE"
    assert C.check_driver_config_access(block.CONFIG, 1 << f.feature, f.offset, 4) is None


def test_driver_refusing_larger_config_is_flagged() -> None:
    assert C.check_driver_size_tolerance(8, 64, accepted=True) is None
    assert C.check_driver_size_tolerance(8, 64, accepted=False) is not None
