"""virtio-mmio v2 register model (§4.2.2, §4.2.3) with planted device bugs."""

from __future__ import annotations

import attrs

from spec.virtio import features as F
from spec.virtio import transport_mmio as M

V1 = 1 << F.VERSION_1
RR = 1 << F.RING_RESET


def _live(offered: int = V1, accepted: int = V1) -> M.MmioState:
    start = M.MmioState(dev=M.S.DeviceState(offered=offered, transport="mmio"))
    st, v = M.run_driver(M.driver_init_ops(accepted), start)
    assert v is None, v
    return st


def test_conforming_driver_is_clean() -> None:
    assert _live().dev.status == 15


def _viol(st: M.MmioState, op: tuple) -> str | None:
    if op[0] == "r":
        _, _, v = M.read(st, op[1], op[2])
    else:
        _, v = M.write(st, op[1], op[2], op[3])
    return v.requirement if v else None


def test_driver_access_rules_are_flagged() -> None:
    st = _live()
    assert _viol(st, ("r", 0x018, 4)) == "VIRTIO-4.2.2.2-DRV-UNDEFINED-LOCATION"
    assert _viol(st, ("r", M.STATUS, 2)) == "VIRTIO-4.2.2.2-DRV-32BIT-ACCESS"
    assert _viol(st, ("w", M.MAGIC_VALUE, 4, 0)) == "VIRTIO-4.2.2.2-DRV-DIRECTION"
    assert _viol(st, ("w", M.QUEUE_SIZE, 4, 8)) == "VIRTIO-4.2.2.2-DRV-READY-LOCK"
    assert _viol(st, ("w", M.INTERRUPT_ACK, 4, 4)) == "VIRTIO-4.2.2.2-DRV-ACK-DEFINED-BITS"
    fresh = M.device_reset(st)
    assert _viol(fresh, ("r", M.DEVICE_FEATURES, 4)) == "VIRTIO-4.2.2.2-DRV-DEVICE-FEATURES-SEL"
    assert _viol(fresh, ("w", M.DRIVER_FEATURES, 4, 0)) == "VIRTIO-4.2.2.2-DRV-DRIVER-FEATURES-SEL"
    assert _viol(fresh, ("w", M.QUEUE_SIZE, 4, 1024)) == "VIRTIO-4.2.2.2-DRV-QUEUE-SIZE-MAX"
    no_shm = attrs.evolve(st, expects_shm=False)
    assert _viol(no_shm, ("w", M.SHM_SEL, 4, 0)) == "VIRTIO-4.2.3.1.1-DRV-NO-SHM"


def test_config_width_is_flagged() -> None:
    from spec.virtio.devices import block

    st = attrs.evolve(_live(), config=bytes(block.CONFIG.size), config_layout=block.CONFIG)
    assert _viol(st, ("r", M.CONFIG, 4)) is None  # capacity low half
    assert _viol(st, ("r", M.CONFIG, 8)) == "VIRTIO-4.2.2.2-DRV-CONFIG-WIDTH"
    heads = M.CONFIG + block.CONFIG.field("heads").offset
    assert _viol(st, ("r", heads, 1)) is None


def test_config_readable_before_features_ok() -> None:
    st = M.MmioState(config=b"\x11" * 8)
    for off in (M.MAGIC_VALUE, M.VERSION_REG, M.DEVICE_ID):
        st, _, _ = M.read(st, off, 4)
    st, value, v = M.read(st, M.CONFIG, 4)
    assert v is None and value == 0x11111111


def test_driver_ignores_bad_devices() -> None:
    _st, _, v = M.read(M.MmioState(), M.STATUS, 4)
    assert v is not None and v.requirement == "VIRTIO-4.2.3.1.1-DRV-PROBE-FIRST"
    for bad, rid in (
        (attrs.evolve(M.MmioState(), magic=0), "VIRTIO-4.2.2.2-DRV-IGNORE-BAD-MAGIC"),
        (attrs.evolve(M.MmioState(), version=1), "VIRTIO-4.2.2.2-DRV-IGNORE-BAD-VERSION"),
        (attrs.evolve(M.MmioState(), device_id=0), "VIRTIO-4.2.3.1.1-DRV-ID-ZERO-STOP"),
    ):
        _, v = M.run_driver(M.driver_init_ops(V1), bad)
        assert v is not None and v.requirement == rid


def test_notify_before_driver_ok_is_flagged() -> None:
    ops = [*M.driver_init_ops(V1)[:-1], ("w", M.QUEUE_NOTIFY, 4, 0)]
    _, v = M.run_driver(ops, M.MmioState())
    assert v is not None and v.requirement == "VIRTIO-3.1.1-DRV-NO-NOTIFY-BEFORE-DRIVER-OK"


def test_ready_readback_is_checked() -> None:
    base = M.driver_init_ops(V1)
    assert (
        M.check_queue_ready_readback([*base, ("w", M.QUEUE_READY, 4, 0), ("r", M.QUEUE_READY, 4)])
        is None
    )
    v = M.check_queue_ready_readback([*base, ("w", M.QUEUE_READY, 4, 0)])
    assert v is not None and v.requirement == "VIRTIO-4.2.2.2-DRV-READY-READBACK"


def test_queue_reset_clears_ready() -> None:
    st = _live(V1 | RR, V1 | RR)
    st, v = M.write(st, M.QUEUE_RESET, 4, 1)
    assert v is None and st.queues[0].ready == 0
    _, val, _ = M.read(st, M.QUEUE_RESET, 4)
    assert val == 0


def test_driver_acting_on_undefined_bit() -> None:
    assert M.check_driver_interrupt_handling(3) is None
    assert M.check_driver_interrupt_handling(4) is not None


def test_device_access_to_unready_queue_is_flagged() -> None:
    assert M.check_device_queue_access(_live(), 0) is None
    assert M.check_device_queue_access(M.device_reset(_live()), 0) is not None


def _ops() -> list:
    return [
        *M.driver_init_ops(V1),
        ("r", M.MAGIC_VALUE, 4),
        ("r", M.VERSION_REG, 4),
        ("used",),
        ("r", M.INTERRUPT_STATUS, 4),
        ("w", M.INTERRUPT_ACK, 4, 1),
        ("r", M.INTERRUPT_STATUS, 4),
        ("w", M.STATUS, 4, 0),
        ("r", M.STATUS, 4),
        ("r", M.QUEUE_READY, 4),
        ("r", M.INTERRUPT_STATUS, 4),
    ]


def _bug(read_patch=None, write_patch=None) -> str | None:
    def r(s, off, size):
        s2, val, v = M.read(s, off, size)
        return s2, (read_patch(s2, off, val) if read_patch else val), v

    def w(s, off, size, val):
        s2, v = M.write(s, off, size, val)
        return (write_patch(s, s2, off, val) if write_patch else s2), v

    v = M.lockstep(r, w, _ops())
    return v.requirement if v else None


def test_reference_passes_lockstep() -> None:
    assert _bug() is None


def test_planted_bad_magic_is_flagged() -> None:
    assert (
        _bug(lambda s, o, v: 0x12345678 if o == M.MAGIC_VALUE else v) == "VIRTIO-4.2.2.1-DEV-MAGIC"
    )


def test_planted_bad_version_is_flagged() -> None:
    assert _bug(lambda s, o, v: 1 if o == M.VERSION_REG else v) == "VIRTIO-4.2.2.1-DEV-VERSION"


def test_planted_lost_interrupt_is_flagged() -> None:
    assert (
        _bug(lambda s, o, v: 0 if o == M.INTERRUPT_STATUS else v)
        == "VIRTIO-4.2.2.1-DEV-INTERRUPT-STATUS"
    )


def test_planted_stray_interrupt_bit_is_flagged() -> None:
    assert (
        _bug(lambda s, o, v: v | 8 if o == M.INTERRUPT_STATUS else v)
        == "VIRTIO-4.2.2.1-DEV-INTERRUPT-UNDEFINED-ZERO"
    )


def test_planted_ready_survives_reset_is_flagged() -> None:
    def keep_ready(before, after, off, val):
        return attrs.evolve(after, queues=before.queues) if off == M.STATUS and val == 0 else after

    assert _bug(write_patch=keep_ready) == "VIRTIO-4.2.2.1-DEV-RESET-CLEARS"
