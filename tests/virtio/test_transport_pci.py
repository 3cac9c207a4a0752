"""virtio-pci common configuration (§4.1.4.3) with planted device bugs."""

from __future__ import annotations

import attrs

from spec.virtio import features as F
from spec.virtio import transport_pci as P

V1 = 1 << F.VERSION_1
RR = 1 << F.RING_RESET
O = {k: v[0] for k, v in P.FIELDS.items()}


def _live(offered: int = V1, accepted: int = V1) -> P.PciState:
    st, v = P.run_driver(
        P.driver_init_ops(accepted), P.PciState(dev=P.S.DeviceState(offered=offered))
    )
    assert v is None, v
    return st


def _viol(st: P.PciState, off: int, size: int, val: int) -> str | None:
    _, v = P.write(st, off, size, val)
    return v.requirement if v else None


def test_pci_driver_rules_are_flagged() -> None:
    st = _live()
    assert _viol(st, O["num_queues"], 2, 1) == "VIRTIO-4.1.4.3.2-DRV-NO-WRITE-RO"
    assert _viol(st, O["queue_size"], 4, 1) == "VIRTIO-4.1.3.1-DRV-ACCESS-WIDTH"
    assert _viol(st, O["queue_size"], 2, 24) == "VIRTIO-4.1.4.3.2-DRV-QUEUE-SIZE-VALUE"
    assert _viol(st, O["queue_enable"], 2, 0) == "VIRTIO-4.1.4.3.2-DRV-NO-ENABLE-ZERO"
    fresh = P.device_reset(st)
    assert _viol(fresh, O["device_status"], 1, 1) == "VIRTIO-4.1.4.3.2-DRV-RESET-WAIT"
    fresh, _, _ = P.read(fresh, O["device_status"], 1)
    assert _viol(fresh, O["queue_enable"], 2, 1) == "VIRTIO-4.1.4.3.2-DRV-CONFIGURE-BEFORE-ENABLE"


def test_queue_reset_sequence() -> None:
    st = _live(V1 | RR, V1 | RR)
    st, v = P.write(st, O["queue_reset"], 2, 1)
    assert v is None and st.queues[0].enable == 0
    assert _viol(st, O["queue_enable"], 2, 1) == "VIRTIO-4.1.4.3.2-DRV-QUEUE-RESET-WAIT"
    st, val, _ = P.read(st, O["queue_reset"], 2)
    assert val == 0
    for name in ("queue_desc", "queue_driver", "queue_device"):
        st, _ = P.write(st, O[name], 4, 0x1000)
    assert _viol(st, O["queue_enable"], 2, 1) is None


def test_capability_checks() -> None:
    assert P.check_capabilities([(P.CAP_COMMON, 0, 0x40)]) is None
    assert P.check_capabilities([(P.CAP_NOTIFY, 0, 0)]) is not None
    assert P.check_capabilities([(P.CAP_COMMON, 0, 0x42)]) is not None


def test_queue_size_value_checks() -> None:
    assert P.check_queue_size_value(256, 256, False) is None
    assert P.check_queue_size_value(8, 0, False) is not None
    assert P.check_queue_size_value(24, 256, False) is not None
    assert P.check_queue_size_value(24, 256, True) is None


def test_admin_checks() -> None:
    assert P.check_admin_queue_fields(4, 4, 2) is None
    assert P.check_admin_queue_fields(4, 2, 2) is not None
    assert P.check_admin_queue_fields(4, 0xFFFF, 2) is not None
    st = attrs.evolve(
        _live(V1 | (1 << F.ADMIN_VQ), V1 | (1 << F.ADMIN_VQ)),
        admin_queue_index=4,
        admin_queue_num=1,
        queue_select=7,
    )
    assert _viol(st, O["queue_size"], 2, 16) == "VIRTIO-4.1.4.3.2-DRV-ADMIN-RANGE"


def _ops() -> list:
    return [
        *P.driver_init_ops(V1),
        ("w", O["device_feature_select"], 4, 1),
        ("r", O["device_feature"], 4),
        ("r", O["driver_feature"], 4),
        ("config", b"\1" * 8),
        ("cfgread", 0, 4),
        ("r", O["config_generation"], 1),
        ("w", O["device_status"], 1, 0),
        ("r", O["device_status"], 1),
        ("r", O["queue_enable"], 2),
    ]


def _bug(read_patch=None, write_patch=None) -> str | None:
    def r(s, off, size):
        s2, val, v = P.read(s, off, size)
        return s2, (read_patch(s2, off, val) if read_patch else val), v

    def w(s, off, size, val):
        s2, v = P.write(s, off, size, val)
        return (write_patch(s, s2, off, val) if write_patch else s2), v

    v = P.lockstep(r, w, _ops())
    return v.requirement if v else None


def test_reference_passes_lockstep() -> None:
    assert _bug() is None


def test_planted_feature_window_is_flagged() -> None:
    assert (
        _bug(lambda s, o, v: 0 if o == O["device_feature"] else v)
        == "VIRTIO-4.1.4.3.1-DEV-FEATURE-WINDOW"
    )


def test_planted_driver_feature_readback_is_flagged() -> None:
    assert (
        _bug(lambda s, o, v: 0 if o == O["driver_feature"] else v)
        == "VIRTIO-4.1.4.3.1-DEV-DRIVER-FEATURE-READBACK"
    )


def test_planted_generation_not_bumped_is_flagged() -> None:
    assert (
        _bug(lambda s, o, v: 0 if o == O["config_generation"] else v)
        == "VIRTIO-4.1.4.3.1-DEV-CONFIG-GENERATION"
    )


def test_planted_reset_not_zero_is_flagged() -> None:
    def no_reset(before, after, off, val):
        return (
            attrs.evolve(after, dev=before.dev) if off == O["device_status"] and val == 0 else after
        )

    assert _bug(write_patch=no_reset) == "VIRTIO-4.1.4.3.1-DEV-RESET"


def test_planted_enable_survives_reset_is_flagged() -> None:
    def keep(before, after, off, val):
        return (
            attrs.evolve(after, queues=before.queues)
            if off == O["device_status"] and val == 0
            else after
        )

    assert _bug(write_patch=keep) == "VIRTIO-4.1.4.3.1-DEV-QUEUE-ENABLE-RESET"
