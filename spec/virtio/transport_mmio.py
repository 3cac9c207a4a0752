"""virtio-mmio version 2 register model (VIRTIO 1.3 §4.2.2, §4.2.3).

``read`` and ``write`` are the device's conforming reaction to one driver access; each
also returns a :class:`~spec.virtio.verdict.Violation` when the *driver* broke a rule of
§4.2.2.2 / §4.2.3.1.1 (or of the status/feature rules in :mod:`spec.virtio.status`).
Device-side rules are judged by :func:`lockstep`, which runs an implementation next to
this model and names the requirement behind the first register that differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from spec.virtio import features as F
from spec.virtio import status as S
from spec.virtio.config import Layout
from spec.virtio.verdict import Violation

MAGIC = 0x74726976  # "virt", little-endian
VERSION = 2

MAGIC_VALUE, VERSION_REG, DEVICE_ID, VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
DEVICE_FEATURES, DEVICE_FEATURES_SEL = 0x010, 0x014
DRIVER_FEATURES, DRIVER_FEATURES_SEL = 0x020, 0x024
QUEUE_SEL, QUEUE_SIZE_MAX, QUEUE_SIZE, QUEUE_READY, QUEUE_NOTIFY = 0x030, 0x034, 0x038, 0x044, 0x050
INTERRUPT_STATUS, INTERRUPT_ACK, STATUS = 0x060, 0x064, 0x070
QUEUE_DESC_LOW, QUEUE_DESC_HIGH = 0x080, 0x084
QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH = 0x090, 0x094
QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH = 0x0A0, 0x0A4
SHM_SEL, SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH = 0x0AC, 0x0B0, 0x0B4, 0x0B8, 0x0BC
QUEUE_RESET, CONFIG_GENERATION, CONFIG = 0x0C0, 0x0FC, 0x100

INT_USED_BUFFER, INT_CONFIG_CHANGE = 1, 2
INT_DEFINED = INT_USED_BUFFER | INT_CONFIG_CHANGE

#: register -> direction (§4.2.2 table)
REGISTERS: dict[int, str] = {
    MAGIC_VALUE: "R",
    VERSION_REG: "R",
    DEVICE_ID: "R",
    VENDOR_ID: "R",
    DEVICE_FEATURES: "R",
    DEVICE_FEATURES_SEL: "W",
    DRIVER_FEATURES: "W",
    DRIVER_FEATURES_SEL: "W",
    QUEUE_SEL: "W",
    QUEUE_SIZE_MAX: "R",
    QUEUE_SIZE: "W",
    QUEUE_READY: "RW",
    QUEUE_NOTIFY: "W",
    INTERRUPT_STATUS: "R",
    INTERRUPT_ACK: "W",
    STATUS: "RW",
    QUEUE_DESC_LOW: "W",
    QUEUE_DESC_HIGH: "W",
    QUEUE_DRIVER_LOW: "W",
    QUEUE_DRIVER_HIGH: "W",
    QUEUE_DEVICE_LOW: "W",
    QUEUE_DEVICE_HIGH: "W",
    SHM_SEL: "W",
    SHM_LEN_LOW: "R",
    SHM_LEN_HIGH: "R",
    SHM_BASE_LOW: "R",
    SHM_BASE_HIGH: "R",
    QUEUE_RESET: "RW",
    CONFIG_GENERATION: "R",
}
#: registers locked while the selected queue is ready (§4.2.2.2)
READY_LOCKED = frozenset(
    {
        QUEUE_SIZE,
        QUEUE_DESC_LOW,
        QUEUE_DESC_HIGH,
        QUEUE_DRIVER_LOW,
        QUEUE_DRIVER_HIGH,
        QUEUE_DEVICE_LOW,
        QUEUE_DEVICE_HIGH,
    }
)
_ADDR = {
    QUEUE_DESC_LOW: ("desc", 0),
    QUEUE_DESC_HIGH: ("desc", 32),
    QUEUE_DRIVER_LOW: ("driver", 0),
    QUEUE_DRIVER_HIGH: ("driver", 32),
    QUEUE_DEVICE_LOW: ("device", 0),
    QUEUE_DEVICE_HIGH: ("device", 32),
}
SHM_REGS = frozenset({SHM_SEL, SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH})
PROBE_REGS = frozenset({MAGIC_VALUE, VERSION_REG, DEVICE_ID})


@attrs.frozen
class MmioQueue:
    size_max: int = attrs.field(default=256, metadata={"symbolic": False})
    size: int = 0
    ready: int = 0
    desc: int = 0
    driver: int = 0
    device: int = 0
    reset: int = 0


@attrs.frozen
class MmioState:
    dev: S.DeviceState = attrs.field(factory=lambda: S.DeviceState(transport="mmio"))
    device_id: int = F.BLOCK
    vendor_id: int = 0x554D4551
    magic: int = MAGIC
    version: int = VERSION
    queues: tuple[MmioQueue, ...] = (MmioQueue(),)
    device_features_sel: int | None = None  # None: never written
    driver_features_sel: int | None = None
    queue_sel: int = 0
    interrupt_status: int = 0
    shm_sel: int = 0
    shm: tuple[tuple[int, int], ...] = ()  # (base, length) per region id
    config: bytes = b"\0" * 8
    config_layout: Layout | None = attrs.field(default=None, metadata={"symbolic": False})
    generation: int = 0
    probed: frozenset[int] = frozenset()  # probe registers read so far (§4.2.3.1.1)
    expects_shm: bool = attrs.field(default=True, metadata={"symbolic": False})

    @property
    def queue(self) -> MmioQueue | None:
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    def negotiated(self, bit: int) -> bool:
        return F.has(self.dev.driver_features, bit) and S.has(self.dev.status, S.FEATURES_OK)


def _v(rid: str, detail: str) -> Violation:
    return Violation(rid, "driver", detail)


def _set_queue(state: MmioState, **changes: Any) -> MmioState:
    q = state.queue
    if q is None:
        return state
    qs = list(state.queues)
    qs[state.queue_sel] = attrs.evolve(q, **changes)
    return attrs.evolve(state, queues=tuple(qs))


def _judge_access(state: MmioState, offset: int, size: int, is_write: bool) -> Violation | None:
    """The driver-side access rules of §4.2.2.2 and §4.2.3.1.1, before any effect."""
    if offset not in PROBE_REGS:
        if not {MAGIC_VALUE, VERSION_REG} <= state.probed or DEVICE_ID not in state.probed:
            return _v("VIRTIO-4.2.3.1.1-DRV-PROBE-FIRST", f"access {offset:#x} before probing")
        if state.magic != MAGIC:
            return _v("VIRTIO-4.2.2.2-DRV-IGNORE-BAD-MAGIC", f"magic {state.magic:#x}")
        if state.version != VERSION:
            return _v("VIRTIO-4.2.2.2-DRV-IGNORE-BAD-VERSION", f"version {state.version}")
        if state.device_id == 0:
            return _v("VIRTIO-4.2.3.1.1-DRV-ID-ZERO-STOP", "device ID 0 is a placeholder")
    elif offset == DEVICE_ID and not {MAGIC_VALUE, VERSION_REG} <= state.probed:
        return _v("VIRTIO-4.2.3.1.1-DRV-PROBE-FIRST", "DeviceID before magic and version")
    if offset >= CONFIG:
        return _judge_config_access(state, offset - CONFIG, size)
    if offset not in REGISTERS:
        return _v("VIRTIO-4.2.2.2-DRV-UNDEFINED-LOCATION", f"offset {offset:#x}")
    if size != 4 or offset % 4:
        return _v("VIRTIO-4.2.2.2-DRV-32BIT-ACCESS", f"{size}-byte access at {offset:#x}")
    direction = REGISTERS[offset]
    if (is_write and "W" not in direction) or (not is_write and "R" not in direction):
        return _v("VIRTIO-4.2.2.2-DRV-DIRECTION", f"{'write' if is_write else 'read'} {offset:#x}")
    if offset in SHM_REGS and not state.expects_shm:
        return _v("VIRTIO-4.2.3.1.1-DRV-NO-SHM", "shared memory registers used")
    q = state.queue
    if offset in READY_LOCKED and q is not None and q.ready:
        return _v("VIRTIO-4.2.2.2-DRV-READY-LOCK", f"{offset:#x} while QueueReady")
    if offset == DEVICE_FEATURES and state.device_features_sel is None:
        return _v("VIRTIO-4.2.2.2-DRV-DEVICE-FEATURES-SEL", "DeviceFeaturesSel never written")
    if offset == DRIVER_FEATURES and state.driver_features_sel is None:
        return _v("VIRTIO-4.2.2.2-DRV-DRIVER-FEATURES-SEL", "DriverFeaturesSel never written")
    return None


def _judge_config_access(state: MmioState, rel: int, size: int) -> Violation | None:
    """§4.2.2.2: config accesses match the field width (8/16/32; 64-bit as two 32s)."""
    lay = state.config_layout
    limit = lay.size if lay is not None else len(state.config)
    if rel + size > limit:
        return _v("VIRTIO-4.2.2.2-DRV-UNDEFINED-LOCATION", f"config byte {rel} beyond {limit}")
    if lay is None:
        ok = size in (1, 2, 4) and rel % size == 0
    else:
        f = lay.field_at(rel)
        want = 1 if f is None or f.array else min(f.size, 4)
        ok = size == want and (rel - (f.offset if f else rel)) % want == 0
    if not ok:
        return _v("VIRTIO-4.2.2.2-DRV-CONFIG-WIDTH", f"{size}-byte config access at {rel}")
    return None


def read(state: MmioState, offset: int, size: int = 4) -> tuple[MmioState, int, Violation | None]:
    """One driver read: (new state, value, driver violation)."""
    v = _judge_access(state, offset, size, is_write=False)
    if offset in PROBE_REGS:
        state = attrs.evolve(state, probed=state.probed | {offset})
    q = state.queue
    value = 0
    if offset >= CONFIG:
        rel = offset - CONFIG
        value = int.from_bytes(state.config[rel : rel + size].ljust(size, b"\0"), "little")
    elif offset == MAGIC_VALUE:
        value = state.magic
    elif offset == VERSION_REG:
        value = state.version
    elif offset == DEVICE_ID:
        value = state.device_id
    elif offset == VENDOR_ID:
        value = state.vendor_id
    elif offset == DEVICE_FEATURES:
        value = (state.dev.offered >> (32 * (state.device_features_sel or 0))) & 0xFFFFFFFF
    elif offset == QUEUE_SIZE_MAX:
        value = q.size_max if q else 0
    elif offset == QUEUE_READY:
        value = q.ready if q else 0
    elif offset == QUEUE_RESET:
        value = q.reset if q else 0
    elif offset == INTERRUPT_STATUS:
        value = state.interrupt_status
    elif offset == STATUS:
        dev, value = S.driver_read_status(state.dev)
        state = attrs.evolve(state, dev=dev)
    elif offset == CONFIG_GENERATION:
        value = state.generation
    elif offset in (SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH):
        base, length = (
            state.shm[state.shm_sel]
            if state.shm_sel < len(state.shm)
            else ((1 << 64) - 1, (1 << 64) - 1)
        )  # absent region: all ones
        word = length if offset in (SHM_LEN_LOW, SHM_LEN_HIGH) else base
        value = (word >> (32 if offset in (SHM_LEN_HIGH, SHM_BASE_HIGH) else 0)) & 0xFFFFFFFF
    return state, value, v


def write(
    state: MmioState, offset: int, size: int, value: int, accept: S.Accept = S.default_accept
) -> tuple[MmioState, Violation | None]:
    """One driver write: (new state, driver violation)."""
    v = _judge_access(state, offset, size, is_write=True)
    q = state.queue
    value &= 0xFFFFFFFF
    if offset >= CONFIG:
        rel = offset - CONFIG
        cfg = bytearray(state.config)
        cfg[rel : rel + size] = value.to_bytes(size, "little")[: max(0, len(cfg) - rel)]
        return attrs.evolve(state, config=bytes(cfg[: len(state.config)])), v
    if offset == DEVICE_FEATURES_SEL:
        return attrs.evolve(state, device_features_sel=value), v
    if offset == DRIVER_FEATURES_SEL:
        return attrs.evolve(state, driver_features_sel=value), v
    if offset == DRIVER_FEATURES:
        shift = 32 * (state.driver_features_sel or 0)
        old = state.dev.driver_features
        new = (old & ~(0xFFFFFFFF << shift)) | (value << shift)
        dev, v2 = S.driver_write_features(state.dev, new)
        return attrs.evolve(state, dev=dev), v or v2
    if offset == QUEUE_SEL:
        return attrs.evolve(state, queue_sel=value), v
    if offset == QUEUE_SIZE:
        if v is None and q is not None and value > q.size_max:
            v = _v("VIRTIO-4.2.2.2-DRV-QUEUE-SIZE-MAX", f"{value} > {q.size_max}")
        return (state if q is not None and q.ready else _set_queue(state, size=value)), v
    if offset in _ADDR:
        if q is None or q.ready:
            return state, v
        name, shift = _ADDR[offset]
        old = getattr(q, name)
        return _set_queue(state, **{name: (old & ~(0xFFFFFFFF << shift)) | (value << shift)}), v
    if offset == QUEUE_READY:
        return _set_queue(
            state, ready=value & 1, reset=0 if value & 1 else (q.reset if q else 0)
        ), v
    if offset == QUEUE_RESET:
        if value == 1 and state.negotiated(F.RING_RESET):
            # reset completes at once: both QueueReset and QueueReady read 0 (§4.2.2.1)
            return _set_queue(state, ready=0, reset=0, size=0, desc=0, driver=0, device=0), v
        return state, v
    if offset == QUEUE_NOTIFY:
        return state, v or S.driver_notify(state.dev)
    if offset == INTERRUPT_ACK:
        if v is None and value & ~INT_DEFINED:
            v = _v("VIRTIO-4.2.2.2-DRV-ACK-DEFINED-BITS", f"ACK {value:#x}")
        return attrs.evolve(state, interrupt_status=state.interrupt_status & ~value), v
    if offset == STATUS:
        dev, v2 = S.driver_write_status(state.dev, value, accept)
        state = attrs.evolve(state, dev=dev)
        if value == 0:
            state = device_reset(state)
        return state, v or v2
    if offset == SHM_SEL:
        return attrs.evolve(state, shm_sel=value), v
    return state, v


def device_reset(state: MmioState) -> MmioState:
    """§4.2.2.1: reset clears InterruptStatus and every queue's ready (and reset) bit."""
    qs = tuple(MmioQueue(size_max=q.size_max) for q in state.queues)
    return attrs.evolve(
        state,
        dev=S.reset(state.dev),
        queues=qs,
        interrupt_status=0,
        device_features_sel=None,
        driver_features_sel=None,
    )


def device_used_buffer(state: MmioState) -> MmioState:
    """The device used a buffer: raise bit 0 (only legal after DRIVER_OK, §2.1.2)."""
    return attrs.evolve(state, interrupt_status=state.interrupt_status | INT_USED_BUFFER)


def device_config_change(state: MmioState, config: bytes) -> MmioState:
    """New config: bump the generation (§4.2.2.1) and raise bit 1 once the driver is live."""
    bits = INT_CONFIG_CHANGE if S.has(state.dev.status, S.DRIVER_OK) else 0
    return attrs.evolve(
        state,
        config=config,
        generation=(state.generation + 1) & 0xFFFFFFFF,
        interrupt_status=state.interrupt_status | bits,
    )


# --- device-side checks ---------------------------------------------------------------


def check_device_queue_access(state: MmioState, queue: int) -> Violation | None:
    """§4.2.2.1: the device leaves a queue's memory alone while its QueueReady is 0."""
    if queue >= len(state.queues) or not state.queues[queue].ready:
        return Violation("VIRTIO-4.2.2.1-DEV-NO-ACCESS-UNREADY", "device", f"queue {queue}")
    return None


#: which device requirement a wrong value in a register breaks
_READ_RULE = {
    MAGIC_VALUE: "VIRTIO-4.2.2.1-DEV-MAGIC",
    VERSION_REG: "VIRTIO-4.2.2.1-DEV-VERSION",
    INTERRUPT_STATUS: "VIRTIO-4.2.2.1-DEV-INTERRUPT-STATUS",
    QUEUE_READY: "VIRTIO-4.2.2.1-DEV-RESET-CLEARS",
    QUEUE_RESET: "VIRTIO-4.2.2.1-DEV-QUEUE-RESET",
    STATUS: "VIRTIO-2.4.1-DEV-RESET-ZERO",
    CONFIG_GENERATION: "VIRTIO-4.2.2.1-DEV-CONFIG-GENERATION",
    DEVICE_FEATURES: "VIRTIO-2.2.2-DEV-NO-UNDEFINED",
}

Op = tuple[str, int, int] | tuple[str, int, int, int] | tuple[str, bytes] | tuple[str]
ReadFn = Callable[[MmioState, int, int], tuple[MmioState, int, Violation | None]]
WriteFn = Callable[[MmioState, int, int, int], tuple[MmioState, Violation | None]]


def lockstep(
    impl_read: ReadFn, impl_write: WriteFn, ops: Sequence[Op], start: MmioState | None = None
) -> Violation | None:
    """Run an implementation beside the model; name the device rule at the first mismatch.

    Ops: ``("r", offset, size)``, ``("w", offset, size, value)``, ``("used",)`` and
    ``("config", new_bytes)`` (device events applied to both sides).
    """
    ref = impl = start or MmioState()
    last_status_write: int | None = None
    for op in ops:
        if op[0] == "w":
            _, off, size, val = op  # type: ignore[misc]
            ref, _ = write(ref, off, size, val)
            impl, _ = impl_write(impl, off, size, val)
            if off == STATUS:
                last_status_write = val
        elif op[0] == "r":
            _, off, size = op  # type: ignore[misc]
            ref, want, _ = read(ref, off, size)
            impl, got, _ = impl_read(impl, off, size)
            if want != got:
                rid = _READ_RULE.get(off, "VIRTIO-4.2.2.1-DEV-REGISTERS")
                if off == STATUS and last_status_write not in (0, None):
                    rid = "VIRTIO-2.2.2-DEV-REJECT-FEATURES-OK"
                if off == INTERRUPT_STATUS and got & ~INT_DEFINED:
                    rid = "VIRTIO-4.2.2.1-DEV-INTERRUPT-UNDEFINED-ZERO"
                return Violation(rid, "device", f"read {off:#x}: {got:#x}, model {want:#x}")
        elif op[0] == "used":
            ref, impl = device_used_buffer(ref), device_used_buffer(impl)
        elif op[0] == "config":
            ref = device_config_change(ref, op[1])  # type: ignore[arg-type]
            impl = device_config_change(impl, op[1])  # type: ignore[arg-type]
    return None


def check_queue_ready_readback(ops: Sequence[Op]) -> Violation | None:
    """§4.2.2.2: after writing 0 to QueueReady the driver reads it back before moving on."""
    pending: int | None = None  # queue whose ready=0 write awaits its read-back
    sel = 0
    for op in ops:
        if op[0] == "w" and op[1] == QUEUE_SEL:
            if pending is not None:
                break
            sel = op[3]  # type: ignore[misc]
        elif op[0] == "w" and op[1] == QUEUE_READY and op[3] == 0:  # type: ignore[misc]
            pending = sel
        elif op[0] == "r" and op[1] == QUEUE_READY and pending == sel:
            pending = None
        elif pending is not None and op[0] in ("w", "r"):
            break
    if pending is not None:
        return _v("VIRTIO-4.2.2.2-DRV-READY-READBACK", f"queue {pending} not read back")
    return None


def check_driver_interrupt_handling(handled_bits: int) -> Violation | None:
    """§4.2.2.2: a driver reacts only to defined InterruptStatus bits."""
    if handled_bits & ~INT_DEFINED:
        return _v("VIRTIO-4.2.2.2-DRV-IGNORE-UNDEFINED-INTERRUPT", f"acted on {handled_bits:#x}")
    return None


def driver_init_ops(
    accepted: int, queue_size: int = 16, addrs: tuple[int, int, int] = (0x1000, 0x2000, 0x3000)
) -> list[Op]:
    """A conforming driver's §4.2.3.1 + §3.1.1 + §4.2.3.2 sequence for queue 0."""
    ops: list[Op] = [("r", MAGIC_VALUE, 4), ("r", VERSION_REG, 4), ("r", DEVICE_ID, 4)]
    ops += [
        ("w", STATUS, 4, 0),
        ("r", STATUS, 4),
        ("w", STATUS, 4, S.ACKNOWLEDGE),
        ("w", STATUS, 4, S.ACKNOWLEDGE | S.DRIVER),
    ]
    for sel in (0, 1):
        ops += [("w", DEVICE_FEATURES_SEL, 4, sel), ("r", DEVICE_FEATURES, 4)]
    for sel in (0, 1):
        ops += [
            ("w", DRIVER_FEATURES_SEL, 4, sel),
            ("w", DRIVER_FEATURES, 4, (accepted >> (32 * sel)) & 0xFFFFFFFF),
        ]
    ops += [("w", STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK), ("r", STATUS, 4)]
    ops += [
        ("w", QUEUE_SEL, 4, 0),
        ("r", QUEUE_READY, 4),
        ("r", QUEUE_SIZE_MAX, 4),
        ("w", QUEUE_SIZE, 4, queue_size),
    ]
    for (lo, hi), a in zip(
        (
            (QUEUE_DESC_LOW, QUEUE_DESC_HIGH),
            (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH),
            (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH),
        ),
        addrs,
        strict=True,
    ):
        ops += [("w", lo, 4, a & 0xFFFFFFFF), ("w", hi, 4, a >> 32)]
    ops += [
        ("w", QUEUE_READY, 4, 1),
        ("w", STATUS, 4, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK),
    ]
    return ops


def run_driver(
    ops: Sequence[Op], start: MmioState | None = None
) -> tuple[MmioState, Violation | None]:
    """Replay driver accesses on the model; the first driver violation wins."""
    st = start or MmioState()
    for op in ops:
        if op[0] == "w":
            st, v = write(st, op[1], op[2], op[3])  # type: ignore[misc]
        elif op[0] == "r":
            st, _, v = read(st, op[1], op[2])  # type: ignore[misc]
        else:
            continue
        if v is not None:
            return st, v
    return st, check_queue_ready_readback(ops)
