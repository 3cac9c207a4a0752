"""virtio-pci modern common configuration structure (VIRTIO 1.3 §4.1.4.3) as a register model.

Same shape as :mod:`spec.virtio.transport_mmio`: ``read``/``write`` give the conforming
device's reaction plus the driver's violation (§4.1.4.3.2, the access widths of
§4.1.3.1, and the status/feature rules), and :func:`lockstep` names the device rule of
§4.1.4.3.1 behind the first register where an implementation differs from the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from spec.virtio import features as F
from spec.virtio import status as S
from spec.virtio.verdict import Violation

PCI_VENDOR = 0x1AF4
PCI_DEVICE_BASE = 0x1040  # modern device ID = 0x1040 + virtio device ID (§4.1.2)
CAP_COMMON, CAP_NOTIFY, CAP_ISR, CAP_DEVICE, CAP_PCI_CFG, CAP_SHM, CAP_VENDOR = 1, 2, 3, 4, 5, 8, 9

#: name -> (offset, size, driver may write)
FIELDS: dict[str, tuple[int, int, bool]] = {
    "device_feature_select": (0x00, 4, True),
    "device_feature": (0x04, 4, False),
    "driver_feature_select": (0x08, 4, True),
    "driver_feature": (0x0C, 4, True),
    "config_msix_vector": (0x10, 2, True),
    "num_queues": (0x12, 2, False),
    "device_status": (0x14, 1, True),
    "config_generation": (0x15, 1, False),
    "queue_select": (0x16, 2, True),
    "queue_size": (0x18, 2, True),
    "queue_msix_vector": (0x1A, 2, True),
    "queue_enable": (0x1C, 2, True),
    "queue_notify_off": (0x1E, 2, False),
    "queue_desc": (0x20, 8, True),
    "queue_driver": (0x28, 8, True),
    "queue_device": (0x30, 8, True),
    "queue_notif_config_data": (0x38, 2, False),
    "queue_reset": (0x3A, 2, True),
    "admin_queue_index": (0x3C, 2, False),
    "admin_queue_num": (0x3E, 2, False),
}
COMMON_CFG_SIZE = 0x40
_ADDR_FIELDS = ("queue_desc", "queue_driver", "queue_device")
NO_VECTOR = 0xFFFF


def field_at(offset: int, size: int) -> tuple[str, int] | None:
    """(field, byte offset within it) for an access of the width §4.1.3.1 allows."""
    for name, (off, fsize, _) in FIELDS.items():
        if off <= offset < off + fsize:
            want = 4 if fsize == 8 else fsize  # 64-bit fields: two 32-bit halves
            if size != want or (offset - off) % want:
                return None
            return name, offset - off
    return None


@attrs.frozen
class PciQueue:
    size_max: int = attrs.field(default=256, metadata={"symbolic": False})  # 0: unavailable
    size: int = 256
    msix_vector: int = NO_VECTOR
    enable: int = 0
    notify_off: int = 0
    desc: int = 0
    driver: int = 0
    device: int = 0
    notif_config_data: int = 0
    reset: int = 0
    configured: frozenset[str] = frozenset()  # address fields written since reset
    reset_unconfirmed: bool = False  # queue_reset written 1, 0 not yet read back


@attrs.frozen
class PciState:
    dev: S.DeviceState = attrs.field(factory=lambda: S.DeviceState(transport="pci"))
    queues: tuple[PciQueue, ...] = (PciQueue(),)
    device_feature_select: int = 0
    driver_feature_select: int = 0
    config_msix_vector: int = NO_VECTOR
    queue_select: int = 0
    generation: int = 0
    config: bytes = b"\0" * 8
    config_dirty: bool = False  # changed since the driver last read it (§4.1.4.3.1 note)
    reset_unconfirmed: bool = False  # status written 0, not yet read back as 0
    admin_queue_index: int = 0
    admin_queue_num: int = 0

    @property
    def queue(self) -> PciQueue | None:
        return self.queues[self.queue_select] if self.queue_select < len(self.queues) else None

    def negotiated(self, bit: int) -> bool:
        return F.has(self.dev.driver_features, bit) and S.has(self.dev.status, S.FEATURES_OK)


def _v(rid: str, detail: str) -> Violation:
    return Violation(rid, "driver", detail)


def _set_queue(state: PciState, **changes: Any) -> PciState:
    q = state.queue
    if q is None:
        return state
    qs = list(state.queues)
    qs[state.queue_select] = attrs.evolve(q, **changes)
    return attrs.evolve(state, queues=tuple(qs))


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def read(state: PciState, offset: int, size: int) -> tuple[PciState, int, Violation | None]:
    """One driver read of the common configuration: (new state, value, driver violation)."""
    hit = field_at(offset, size)
    if hit is None:
        return state, 0, _v("VIRTIO-4.1.3.1-DRV-ACCESS-WIDTH", f"{size} bytes at {offset:#x}")
    name, part = hit
    q = state.queue
    if name == "device_feature":
        value = (state.dev.offered >> (32 * state.device_feature_select)) & 0xFFFFFFFF
    elif name == "driver_feature":
        value = (state.dev.driver_features >> (32 * state.driver_feature_select)) & 0xFFFFFFFF
    elif name == "num_queues":
        value = len(state.queues)
    elif name == "device_status":
        dev, value = S.driver_read_status(state.dev)
        state = attrs.evolve(
            state, dev=dev, reset_unconfirmed=state.reset_unconfirmed and value != 0
        )
    elif name == "config_generation":
        value = state.generation & 0xFF
    elif name.startswith("queue_") and name != "queue_select":
        attr = name.removeprefix("queue_")
        value = getattr(q, attr) if q is not None else 0
        if name == "queue_size" and q is not None and q.size_max == 0:
            value = 0
        if name == "queue_reset" and q is not None and value == 0:
            state = _set_queue(state, reset_unconfirmed=False)
        value = (value >> (8 * part)) & 0xFFFFFFFF
    else:
        value = getattr(state, name)
    return state, value, None


def write(
    state: PciState, offset: int, size: int, value: int, accept: S.Accept = S.default_accept
) -> tuple[PciState, Violation | None]:
    """One driver write of the common configuration: (new state, driver violation)."""
    hit = field_at(offset, size)
    if hit is None:
        return state, _v("VIRTIO-4.1.3.1-DRV-ACCESS-WIDTH", f"{size} bytes at {offset:#x}")
    name, part = hit
    if not FIELDS[name][2]:
        return state, _v("VIRTIO-4.1.4.3.2-DRV-NO-WRITE-RO", f"write to {name}")
    q = state.queue
    v = _judge_queue_target(state, name)
    if name == "device_status":
        if value != 0 and state.reset_unconfirmed:
            v = v or _v("VIRTIO-4.1.4.3.2-DRV-RESET-WAIT", "re-initialised before status read 0")
        dev, v2 = S.driver_write_status(state.dev, value, accept)
        state = attrs.evolve(state, dev=dev)
        if value == 0:
            state = device_reset(state)
        return state, v or v2
    if name == "driver_feature":
        shift = 32 * state.driver_feature_select
        new = (state.dev.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)
        dev, v2 = S.driver_write_features(state.dev, new)
        return attrs.evolve(state, dev=dev), v or v2
    if name in (
        "device_feature_select",
        "driver_feature_select",
        "config_msix_vector",
        "queue_select",
    ):
        return attrs.evolve(state, **{name: value}), v
    if q is None:
        return state, v
    if name == "queue_size":
        if state.negotiated(F.RING_PACKED) and value == 0:
            v = v or _v("VIRTIO-4.1.4.3.2-DRV-QUEUE-SIZE-VALUE", "0 with RING_PACKED")
        elif not state.negotiated(F.RING_PACKED) and not _is_pow2(value):
            v = v or _v("VIRTIO-4.1.4.3.2-DRV-QUEUE-SIZE-VALUE", f"{value} not a power of 2")
        return _set_queue(state, size=value), v
    if name == "queue_msix_vector":
        return _set_queue(state, msix_vector=value), v
    if name in _ADDR_FIELDS:
        attr = name.removeprefix("queue_")
        shift = 8 * part
        old = getattr(q, attr)
        return _set_queue(
            state,
            **{attr: (old & ~(0xFFFFFFFF << shift)) | (value << shift)},
            configured=q.configured | {name},
        ), v
    if name == "queue_enable":
        if value == 0:
            return state, v or _v("VIRTIO-4.1.4.3.2-DRV-NO-ENABLE-ZERO", "wrote 0 to queue_enable")
        if q.reset_unconfirmed:
            v = v or _v("VIRTIO-4.1.4.3.2-DRV-QUEUE-RESET-WAIT", "re-enable before reset read 0")
        if set(_ADDR_FIELDS) - q.configured:
            v = v or _v(
                "VIRTIO-4.1.4.3.2-DRV-CONFIGURE-BEFORE-ENABLE",
                f"unset {sorted(set(_ADDR_FIELDS) - q.configured)}",
            )
        return _set_queue(state, enable=1, reset=0), v
    if name == "queue_reset":
        if value == 1 and state.negotiated(F.RING_RESET):
            # the reset completes at once; §4.1.4.3.1 then wants 0 in reset and enable
            return _set_queue(
                state, enable=0, reset=0, configured=frozenset(), reset_unconfirmed=True
            ), v
        return state, v
    return state, v


def _judge_queue_target(state: PciState, name: str) -> Violation | None:
    """§4.1.4.3.2: admin queues are configured only inside the advertised range."""
    if not name.startswith("queue_") or name == "queue_select" or not state.negotiated(F.ADMIN_VQ):
        return None
    sel, n = state.queue_select, len(state.queues)
    lo, hi = state.admin_queue_index, state.admin_queue_index + state.admin_queue_num
    if sel >= n and not lo <= sel < hi:
        return _v("VIRTIO-4.1.4.3.2-DRV-ADMIN-RANGE", f"queue {sel} outside admin range")
    return None


def device_reset(state: PciState) -> PciState:
    """§4.1.4.3.1: after reset status, queue_enable and queue_reset read 0."""
    qs = tuple(
        PciQueue(
            size_max=q.size_max,
            size=q.size_max,
            notify_off=q.notify_off,
            notif_config_data=q.notif_config_data,
        )
        for q in state.queues
    )
    return attrs.evolve(state, dev=S.reset(state.dev), queues=qs, reset_unconfirmed=True)


def device_config_change(state: PciState, config: bytes) -> PciState:
    """The device changes its config; the generation moves on the driver's next read."""
    return attrs.evolve(state, config=config, config_dirty=True)


def read_device_config(state: PciState, offset: int, size: int) -> tuple[PciState, bytes]:
    """A device-config read: bump the generation first if the config changed (§4.1.4.3.1)."""
    if state.config_dirty:
        state = attrs.evolve(state, generation=(state.generation + 1) & 0xFF, config_dirty=False)
    return state, state.config[offset : offset + size]


# --- device-side checks -------------------------------------------------------------


def check_capabilities(caps: Sequence[tuple[int, int, int]]) -> Violation | None:
    """§4.1.4.3.1: at least one common cfg capability, each at a 4-byte aligned offset.

    ``caps`` holds ``(cfg_type, bar, offset)``.
    """
    common = [c for c in caps if c[0] == CAP_COMMON]
    if not common:
        return Violation("VIRTIO-4.1.4.3.1-DEV-COMMON-CAP", "device", "no common cfg capability")
    for _, _, off in common:
        if off % 4:
            return Violation("VIRTIO-4.1.4.3.1-DEV-OFFSET-ALIGN", "device", f"offset {off:#x}")
    return None


def check_queue_size_value(size: int, size_max: int, packed: bool) -> Violation | None:
    """§4.1.4.3.1: 0 for an unavailable queue; without RING_PACKED, 0 or a power of two."""
    if size_max == 0 and size != 0:
        return Violation("VIRTIO-4.1.4.3.1-DEV-QUEUE-SIZE-UNAVAILABLE", "device", f"{size}")
    if not packed and size != 0 and not _is_pow2(size):
        return Violation("VIRTIO-4.1.4.3.1-DEV-QUEUE-SIZE-POW2", "device", f"{size}")
    return None


def check_admin_queue_fields(num_queues: int, index: int, num: int) -> Violation | None:
    """§4.1.4.3.1: admin queues sit at or above num_queues and fit in 16 bits."""
    if index < num_queues or num > 0x10000 - index:
        return Violation("VIRTIO-4.1.4.3.1-DEV-ADMIN-RANGE", "device", f"index {index} num {num}")
    return None


_READ_RULE = {
    "device_feature": "VIRTIO-4.1.4.3.1-DEV-FEATURE-WINDOW",
    "driver_feature": "VIRTIO-4.1.4.3.1-DEV-DRIVER-FEATURE-READBACK",
    "config_generation": "VIRTIO-4.1.4.3.1-DEV-CONFIG-GENERATION",
    "device_status": "VIRTIO-4.1.4.3.1-DEV-RESET",
    "queue_enable": "VIRTIO-4.1.4.3.1-DEV-QUEUE-ENABLE-RESET",
    "queue_reset": "VIRTIO-4.1.4.3.1-DEV-QUEUE-RESET",
    "queue_size": "VIRTIO-4.1.4.3.1-DEV-QUEUE-SIZE-UNAVAILABLE",
}

Op = tuple[Any, ...]
ReadFn = Callable[[PciState, int, int], tuple[PciState, int, Violation | None]]
WriteFn = Callable[[PciState, int, int, int], tuple[PciState, Violation | None]]


def lockstep(
    impl_read: ReadFn, impl_write: WriteFn, ops: Sequence[Op], start: PciState | None = None
) -> Violation | None:
    """Run an implementation beside the model; name the device rule at the first mismatch.

    Ops: ``("r", off, size)``, ``("w", off, size, value)``, ``("config", bytes)`` (device
    changes its config) and ``("cfgread", off, size)`` (driver reads device config).
    """
    ref = impl = start or PciState()
    last_status: int | None = None
    for op in ops:
        if op[0] == "w":
            ref, _ = write(ref, op[1], op[2], op[3])
            impl, _ = impl_write(impl, op[1], op[2], op[3])
            if op[1] == FIELDS["device_status"][0]:
                last_status = op[3]
        elif op[0] == "r":
            ref, want, _ = read(ref, op[1], op[2])
            impl, got, _ = impl_read(impl, op[1], op[2])
            hit = field_at(op[1], op[2])
            name = hit[0] if hit else "?"
            if name == "driver_feature":
                valid = (ref.dev.offered >> (32 * ref.driver_feature_select)) & 0xFFFFFFFF
                want, got = want & valid, got & valid  # invalid bits MAY show (§4.1.4.3.1)
            if want != got:
                rid = _READ_RULE.get(name, "VIRTIO-4.1.4.3.1-DEV-REGISTERS")
                if name == "device_status" and last_status not in (0, None):
                    rid = "VIRTIO-2.2.2-DEV-REJECT-FEATURES-OK"
                return Violation(rid, "device", f"{name}: {got:#x}, model {want:#x}")
        elif op[0] == "config":
            ref, impl = device_config_change(ref, op[1]), device_config_change(impl, op[1])
        elif op[0] == "cfgread":
            ref, _ = read_device_config(ref, op[1], op[2])
            impl, _ = read_device_config(impl, op[1], op[2])
    return None


def driver_init_ops(accepted: int, queue_size: int = 16) -> list[Op]:
    """A conforming driver's §3.1.1 sequence over the common configuration, queue 0."""
    off = {k: v[0] for k, v in FIELDS.items()}
    st = off["device_status"]
    ops: list[Op] = [
        ("w", st, 1, 0),
        ("r", st, 1),
        ("w", st, 1, S.ACKNOWLEDGE),
        ("w", st, 1, S.ACKNOWLEDGE | S.DRIVER),
    ]
    for sel in (0, 1):
        ops += [("w", off["device_feature_select"], 4, sel), ("r", off["device_feature"], 4)]
    for sel in (0, 1):
        ops += [
            ("w", off["driver_feature_select"], 4, sel),
            ("w", off["driver_feature"], 4, (accepted >> (32 * sel)) & 0xFFFFFFFF),
        ]
    ops += [("w", st, 1, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK), ("r", st, 1)]
    ops += [
        ("w", off["queue_select"], 2, 0),
        ("r", off["queue_size"], 2),
        ("w", off["queue_size"], 2, queue_size),
    ]
    for i, name in enumerate(_ADDR_FIELDS):
        ops += [("w", off[name], 4, 0x1000 * (i + 1)), ("w", off[name] + 4, 4, 0)]
    ops += [
        ("w", off["queue_enable"], 2, 1),
        ("w", st, 1, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK),
    ]
    return ops


def run_driver(
    ops: Sequence[Op], start: PciState | None = None
) -> tuple[PciState, Violation | None]:
    """Replay driver accesses on the model; the first driver violation wins."""
    st = start or PciState()
    for op in ops:
        v: Violation | None = None
        if op[0] == "w":
            st, v = write(st, op[1], op[2], op[3])
        elif op[0] == "r":
            st, _, v = read(st, op[1], op[2])
        if v is not None:
            return st, v
    return st, None
