"""Device status (§2.1), reset (§2.4) and init order (§3.1.1): rules and planted bugs."""

from __future__ import annotations

import attrs
import z3
from hypothesis import given
from hypothesis import strategies as st

from spec import symbolic
from spec.virtio import features as F
from spec.virtio import status as S

V1 = 1 << F.VERSION_1
FLUSH = 1 << F.BLK_FEATURES["FLUSH"]
OFFERED = V1 | FLUSH


def _dev(**kw: object) -> S.DeviceState:
    return S.DeviceState(offered=OFFERED, **kw)  # type: ignore[arg-type]


def test_canonical_init_is_clean() -> None:
    st_, v = S.run_driver(S.canonical_init(OFFERED, V1), _dev())
    assert v is None and st_.status == 15


def test_clearing_a_bit_is_flagged() -> None:
    ops = [*S.canonical_init(OFFERED, V1), ("status", S.ACKNOWLEDGE | S.DRIVER)]
    _, v = S.run_driver(ops, _dev())
    assert v is not None and v.requirement == "VIRTIO-2.1.1-DRV-NO-CLEAR"


def test_continuing_after_failed_is_flagged() -> None:
    ops = [
        ("status", 0),
        ("status", S.ACKNOWLEDGE | S.FAILED),
        ("status", S.ACKNOWLEDGE | S.FAILED | S.DRIVER),
    ]
    _, v = S.run_driver(ops, _dev())
    assert v is not None and v.requirement == "VIRTIO-2.1.1-DRV-FAILED-RESET"
    _, v = S.run_driver([*ops[:2], ("status", 0), ("status", S.ACKNOWLEDGE)], _dev())
    assert v is None


def test_out_of_order_init_is_flagged() -> None:
    for ops in (
        [("status", S.ACKNOWLEDGE)],  # no reset first
        [("status", 0), ("status", S.DRIVER)],
        [("status", 0), ("status", 1), ("status", 1 | S.FEATURES_OK)],
    ):
        _, v = S.run_driver(ops, _dev())
        assert v is not None and v.requirement == "VIRTIO-3.1.1-DRV-INIT-ORDER", ops


def test_driver_ok_without_reread_is_flagged() -> None:
    ops = [op for op in S.canonical_init(OFFERED, V1) if op[0] != "read_status"]
    _, v = S.run_driver(ops, _dev())
    assert v is not None and v.requirement == "VIRTIO-3.1.1-DRV-REREAD-FEATURES-OK"


def test_features_after_features_ok_is_flagged() -> None:
    ops = [*S.canonical_init(OFFERED, V1)[:5], ("features", V1 | FLUSH)]
    _, v = S.run_driver(ops, _dev())
    assert v is not None and v.requirement == "VIRTIO-3.1.1-DRV-NO-NEW-FEATURES"


@given(st.integers(0, 255), st.integers(0, 255))
def test_reset_always_reads_zero(cur: int, val: int) -> None:
    dev = _dev(status=cur)
    after, _ = S.driver_write_status(dev, 0)
    assert S.check_status_after_reset(after.status) is None


def test_planted_reset_not_zero_is_flagged() -> None:
    def buggy(dev: S.DeviceState, value: int) -> int:
        after, _ = S.driver_write_status(dev, value)
        return after.status if value else dev.status  # forgets to reset

    assert S.check_status_after_reset(buggy(_dev(status=15), 0)) is not None


@given(st.integers(0, (1 << 64) - 1))
def test_features_ok_sticks_iff_subset_valid(accepted: int) -> None:
    dev = _dev(status=S.ACKNOWLEDGE | S.DRIVER, driver_features=accepted & (OFFERED | 0xFF))
    after, _ = S.driver_write_status(dev, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK)
    assert S.check_status_write_reaction(dev, 11, after.status) is None


def test_planted_sticky_features_ok_is_flagged() -> None:
    dev = _dev(status=3, driver_features=1 << 40)  # RING_RESET was never offered
    after, _ = S.driver_write_status(dev, 11, accept=lambda s: True)  # bug: accepts anything
    v = S.check_status_write_reaction(dev, 11, after.status)
    assert v is not None and v.requirement == "VIRTIO-2.2.2-DEV-REJECT-FEATURES-OK"


def test_planted_early_buffer_use_is_flagged() -> None:
    assert S.check_buffer_activity(15, consumed=True, notified_used=False) is None
    v = S.check_buffer_activity(11, consumed=True, notified_used=False)
    assert v is not None and v.requirement == "VIRTIO-2.1.2-DEV-NO-USE-BEFORE-DRIVER-OK"


def test_planted_activity_after_reset_is_flagged() -> None:
    v = S.check_buffer_activity(0, consumed=False, notified_used=True)
    assert v is not None and v.requirement == "VIRTIO-2.4.1-DEV-QUIET-AFTER-RESET"
    assert S.check_config_notify_after_reset(0, True) is not None


def test_planted_silent_needs_reset_is_flagged() -> None:
    live = _dev(status=15)
    after, must = S.device_set_needs_reset(live)
    assert must and S.check_needs_reset_notification(15, after.status, True) is None
    v = S.check_needs_reset_notification(15, after.status, False)
    assert v is not None and v.requirement == "VIRTIO-2.1.2-DEV-NEEDS-RESET-NOTIFY"
    assert S.check_needs_reset_notification(3, 3 | 64, False) is None


def test_predicates_agree_with_driver_ok() -> None:
    for s in range(256):
        live = bool(s & S.DRIVER_OK)
        assert S.may_use_buffers(s) == S.may_notify_used(s) == S.may_driver_notify(s) == live


def test_symbolic_status_rules_hold_for_every_byte() -> None:
    """Z3: for any status and written byte, driver bits never vanish without a reset, and
    FEATURES_OK newly written sticks exactly when the device accepts."""
    cur, val = z3.BitVec("cur", 64), z3.BitVec("val", 64)
    ok = z3.Bool("accept")
    dev = attrs.evolve(_dev(), status=cur, was_reset=True, features_ok_seen=True)

    def run() -> object:
        return S.driver_write_status(dev, val, accept=lambda s: ok)[0].status

    out = symbolic.merge(symbolic.explore(run, [z3.ULT(cur, 256), z3.ULT(val, 256)]))
    s = z3.Solver()
    s.add(z3.ULT(cur, 256), z3.ULT(val, 256), val != 0)
    newly = z3.And(val & S.FEATURES_OK != 0, cur & S.FEATURES_OK == 0)
    bad_keep = (out & val & S.DRIVER_BITS & ~S.FEATURES_OK) != (
        val & S.DRIVER_BITS & ~S.FEATURES_OK
    )
    bad_fok = z3.And(newly, (out & S.FEATURES_OK != 0) != ok)
    s.add(z3.Or(bad_keep, bad_fok))
    assert s.check() == z3.unsat
