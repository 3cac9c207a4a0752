"""Device status field (VIRTIO 1.3 §2.1), reset (§2.4) and the init sequence (§3.1.1).

The model is one frozen :class:`DeviceState` and pure transitions for what the driver
can do to it (write status, write features, read status) and what the device can do on
its own (set DEVICE_NEEDS_RESET).  Transitions return the device's *conforming* reaction
plus a :class:`~spec.virtio.verdict.Violation` when the *driver* broke a rule; the
``check_*`` functions judge an observed *device* reaction.

Status arithmetic uses :mod:`spec.logic`, so the transitions also run on Z3 terms (the
tests prove the FEATURES_OK and no-clear rules for every status byte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from spec import logic
from spec.virtio import features as F
from spec.virtio.verdict import Violation

ACKNOWLEDGE = 1
DRIVER = 2
DRIVER_OK = 4
FEATURES_OK = 8
DEVICE_NEEDS_RESET = 64
FAILED = 128

#: bits the driver sets (§2.1); DEVICE_NEEDS_RESET belongs to the device.
DRIVER_BITS = ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | FAILED
#: §3.1.1 order of the driver's bits, each with the bit that must already be set.
INIT_ORDER: tuple[tuple[int, int], ...] = (
    (DRIVER, ACKNOWLEDGE),
    (FEATURES_OK, DRIVER),
    (DRIVER_OK, FEATURES_OK),
)


@attrs.frozen
class DeviceState:
    """What the device remembers about the driver's progress."""

    status: Any = 0  # the device status byte as the driver reads it
    driver_features: Any = 0  # features the driver has written (accepted)
    was_reset: Any = False  # §3.1.1 step 1: a reset happened since power-on
    features_ok_seen: Any = False  # driver re-read status with FEATURES_OK set (step 6)
    device_id: int = attrs.field(default=F.BLOCK, metadata={"symbolic": False})
    offered: int = attrs.field(
        default=1 << F.VERSION_1, metadata={"symbolic": False}
    )  # device features
    transport: F.Transport = attrs.field(default="pci", metadata={"symbolic": False})


Accept = Callable[[DeviceState], Any]


def default_accept(state: DeviceState) -> bool:
    """A conforming device's FEATURES_OK policy: take exactly the valid subsets (§2.2.2)."""
    return F.valid_subset(state.device_id, state.offered, state.driver_features, state.transport)


# --- predicates (work on ints and Z3 words) --------------------------------------------


def has(status: Any, bitmask: int) -> Any:
    return (status & bitmask) == bitmask


def may_use_buffers(status: Any) -> Any:
    """§2.1.2: the device consumes buffers only once DRIVER_OK is set (and not after reset)."""
    return has(status, DRIVER_OK)


def may_notify_used(status: Any) -> Any:
    """§2.1.2, §2.4.1: used-buffer notifications only after DRIVER_OK."""
    return has(status, DRIVER_OK)


def may_driver_notify(status: Any) -> Any:
    """§3.1.1: the driver sends no available-buffer notification before DRIVER_OK."""
    return has(status, DRIVER_OK)


def must_notify_config_on_needs_reset(status_before: Any) -> Any:
    """§2.1.2: setting DEVICE_NEEDS_RESET after DRIVER_OK requires a config notification."""
    return has(status_before, DRIVER_OK)


# --- transitions ------------------------------------------------------------------------


def reset(state: DeviceState) -> DeviceState:
    """§2.4.1: after a reset the status reads 0 and negotiation starts over."""
    return attrs.evolve(state, status=0, driver_features=0, was_reset=True, features_ok_seen=False)


def driver_write_status(
    state: DeviceState, value: Any, accept: Accept = default_accept
) -> tuple[DeviceState, Violation | None]:
    """The driver writes ``value`` to device status; a conforming device reacts.

    Writing 0 resets (§2.4).  Otherwise the device keeps its own DEVICE_NEEDS_RESET bit,
    takes the driver's bits, and lets FEATURES_OK stick only if ``accept`` says the
    feature subset is acceptable (§2.2.2).
    """
    if value == 0:
        return reset(state), None
    cur = state.status
    violation = _judge_status_write(state, value)
    written = value & DRIVER_BITS
    new_bits = written & ~cur & 0xFF
    status = (cur & DEVICE_NEEDS_RESET) | written
    if (new_bits & FEATURES_OK) == FEATURES_OK:
        if violation is None and not logic.is_sym(state.driver_features):
            violation = F.check_driver_accept(
                state.device_id, state.offered, state.driver_features, state.transport
            )
        status = logic.ite(accept(state), status, status & ~FEATURES_OK & 0xFF)
    return attrs.evolve(state, status=status), violation


def _judge_status_write(state: DeviceState, value: Any) -> Violation | None:
    """Driver-side rules of §2.1.1 and §3.1.1 for one non-zero status write."""
    cur = state.status
    cleared = cur & DRIVER_BITS & ~value & 0xFF
    if cleared != 0:
        return Violation("VIRTIO-2.1.1-DRV-NO-CLEAR", "driver", "driver cleared a status bit")
    new_bits = value & DRIVER_BITS & ~cur & 0xFF
    if has(cur, FAILED) and (new_bits & ~FAILED & 0xFF) != 0:
        return Violation(
            "VIRTIO-2.1.1-DRV-FAILED-RESET", "driver", "continued after FAILED without reset"
        )
    if (new_bits & ACKNOWLEDGE) != 0 and not state.was_reset:
        return Violation("VIRTIO-3.1.1-DRV-INIT-ORDER", "driver", "ACKNOWLEDGE before a reset")
    have = cur | (new_bits & ~DRIVER_OK & 0xFF)
    for bit, needs in INIT_ORDER:
        if (new_bits & bit) != 0 and not has(have if bit != DRIVER_OK else cur, needs):
            if bit == DRIVER_OK and (value & FEATURES_OK) != 0:
                return Violation(
                    "VIRTIO-3.1.1-DRV-REREAD-FEATURES-OK",
                    "driver",
                    "DRIVER_OK while FEATURES_OK was refused or never checked",
                )
            return Violation(
                "VIRTIO-3.1.1-DRV-INIT-ORDER", "driver", f"status bit {bit} before bit {needs}"
            )
    if (new_bits & DRIVER_OK) != 0 and not state.features_ok_seen:
        return Violation(
            "VIRTIO-3.1.1-DRV-REREAD-FEATURES-OK",
            "driver",
            "DRIVER_OK without re-reading FEATURES_OK",
        )
    return None


def driver_read_status(state: DeviceState) -> tuple[DeviceState, Any]:
    """Reading status; seeing FEATURES_OK is the §3.1.1 step 6 re-read."""
    seen = logic.or_(state.features_ok_seen, has(state.status, FEATURES_OK))
    return attrs.evolve(state, features_ok_seen=seen), state.status


def driver_write_features(state: DeviceState, value: int) -> tuple[DeviceState, Violation | None]:
    """The driver writes its accepted features (§3.1.1 step 4, §2.2.1)."""
    violation = None
    if has(state.status, FEATURES_OK):
        violation = F.check_features_write_after_ok(True, state.driver_features, value)
    elif not has(state.status, DRIVER):
        violation = Violation("VIRTIO-3.1.1-DRV-INIT-ORDER", "driver", "features before DRIVER")
    elif value & ~state.offered:
        violation = Violation("VIRTIO-2.2.1-DRV-SUBSET", "driver", "accepts unoffered bits")
    if violation is not None and violation.requirement == "VIRTIO-3.1.1-DRV-NO-NEW-FEATURES":
        return state, violation  # the device no longer listens
    return attrs.evolve(state, driver_features=value), violation


def device_set_needs_reset(state: DeviceState) -> tuple[DeviceState, bool]:
    """§2.1.2: the device flags an unrecoverable error; returns (state, must notify config)."""
    notify = must_notify_config_on_needs_reset(state.status)
    return attrs.evolve(state, status=state.status | DEVICE_NEEDS_RESET), notify


def driver_notify(state: DeviceState) -> Violation | None:
    """§3.1.1: an available-buffer notification is legal only after DRIVER_OK."""
    if not may_driver_notify(state.status):
        return Violation(
            "VIRTIO-3.1.1-DRV-NO-NOTIFY-BEFORE-DRIVER-OK", "driver", "notify before DRIVER_OK"
        )
    return None


# --- driver sequences -------------------------------------------------------------------

Op = tuple[str, int] | tuple[str]


def run_driver(
    ops: Iterable[Op], state: DeviceState | None = None, accept: Accept = default_accept
) -> tuple[DeviceState, Violation | None]:
    """Replay a driver's operations on a conforming device; first driver violation wins.

    Ops: ``("status", v)``, ``("features", v)``, ``("read_status",)``, ``("notify",)``.
    """
    st = state or DeviceState()
    for op in ops:
        v: Violation | None = None
        if op[0] == "status":
            st, v = driver_write_status(st, op[1], accept)
        elif op[0] == "features":
            st, v = driver_write_features(st, op[1])
        elif op[0] == "read_status":
            st, _ = driver_read_status(st)
        elif op[0] == "notify":
            v = driver_notify(st)
        else:
            raise ValueError(op)
        if v is not None:
            return st, v
    return st, None


def canonical_init(offered: int, accepted: int) -> list[Op]:
    """The §3.1.1 sequence a well-behaved driver performs."""
    return [
        ("status", 0),
        ("status", ACKNOWLEDGE),
        ("status", ACKNOWLEDGE | DRIVER),
        ("features", accepted),
        ("status", ACKNOWLEDGE | DRIVER | FEATURES_OK),
        ("read_status",),
        ("status", ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
    ]


# --- device-side checks -------------------------------------------------------------------


def check_status_after_reset(status_read: int) -> Violation | None:
    """§2.4.1: a device reads back 0 once a reset is done."""
    if status_read != 0:
        return Violation("VIRTIO-2.4.1-DEV-RESET-ZERO", "device", f"status {status_read:#x}")
    return None


def check_status_write_reaction(
    before: DeviceState, value: int, status_after: int
) -> Violation | None:
    """Judge a device's status byte after the driver wrote ``value`` (§2.2.2, §2.4.1)."""
    if value == 0:
        return check_status_after_reset(status_after)
    if (value & FEATURES_OK) and not (before.status & FEATURES_OK):
        return F.check_features_ok_outcome(
            before.device_id,
            before.offered,
            before.driver_features,
            bool(status_after & FEATURES_OK),
            before.transport,
        )
    return None


def check_buffer_activity(status: int, consumed: bool, notified_used: bool) -> Violation | None:
    """§2.1.2 (and §2.4.1 when status is 0): no buffer use or used notification early."""
    if (consumed or notified_used) and not may_use_buffers(status):
        rid = (
            "VIRTIO-2.4.1-DEV-QUIET-AFTER-RESET"
            if status == 0
            else "VIRTIO-2.1.2-DEV-NO-USE-BEFORE-DRIVER-OK"
        )
        return Violation(rid, "device", f"buffer activity with status {status:#x}")
    return None


def check_config_notify_after_reset(status: int, config_notified: bool) -> Violation | None:
    """§2.4.1: after reset the device sends no notification at all, config ones included."""
    if status == 0 and config_notified:
        return Violation("VIRTIO-2.4.1-DEV-QUIET-AFTER-RESET", "device", "config notification")
    return None


def check_needs_reset_notification(
    status_before: int, status_after: int, config_notified: bool
) -> Violation | None:
    """§2.1.2: DEVICE_NEEDS_RESET raised after DRIVER_OK must come with a config notification."""
    raised = (status_after & DEVICE_NEEDS_RESET) and not (status_before & DEVICE_NEEDS_RESET)
    if raised and must_notify_config_on_needs_reset(status_before) and not config_notified:
        return Violation(
            "VIRTIO-2.1.2-DEV-NEEDS-RESET-NOTIFY", "device", "no config change notification"
        )
    return None
