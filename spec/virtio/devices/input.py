"""virtio-input (VIRTIO 1.3 §5.8): events, the select/subsel config window, two devices."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import attrs

from spec.virtio import features as F
from spec.virtio.verdict import Violation

DEVICE_ID = F.INPUT
EVENTQ, STATUSQ = 0, 1
EVENT = struct.Struct("<HHI")  # type, code, value
CFG_UNSET, CFG_ID_NAME, CFG_ID_SERIAL, CFG_ID_DEVIDS = 0x00, 0x01, 0x02, 0x03
CFG_PROP_BITS, CFG_EV_BITS, CFG_ABS_INFO = 0x10, 0x11, 0x12
CONFIG_SIZE = 8 + 128  # select, subsel, size, reserved[5], union u
SELECT, SUBSEL, SIZE = 0, 1, 2
EV_SYN, EV_KEY, EV_ABS, EV_LED = 0x00, 0x01, 0x03, 0x11
ABS_X, ABS_Y, BTN_TOUCH = 0x00, 0x01, 0x14A


def encode_event(type_: int, code: int, value: int) -> bytes:
    return EVENT.pack(type_, code, value & 0xFFFFFFFF)


def decode_event(raw: bytes) -> tuple[int, int, int]:
    return EVENT.unpack_from(raw)


def bitmap(codes: Sequence[int]) -> bytes:
    out = bytearray((max(codes) // 8 + 1) if codes else 0)
    for c in codes:
        out[c // 8] |= 1 << (c % 8)
    return bytes(out)


@attrs.frozen
class InputDevice:
    name: bytes
    serial: bytes = b""
    devids: tuple[int, int, int, int] = (0x06, 0x0627, 0x0001, 0x0001)  # bus, vendor, ...
    props: bytes = b""
    ev_bits: Mapping[int, bytes] = attrs.field(factory=dict)
    abs_info: Mapping[int, tuple[int, int, int, int, int]] = attrs.field(factory=dict)


def keyboard() -> InputDevice:
    return InputDevice(
        b"pvspec keyboard", ev_bits={EV_KEY: bitmap(list(range(1, 128))), EV_LED: bitmap([0, 1, 2])}
    )


def touchscreen(width: int = 32767, height: int = 32767) -> InputDevice:
    return InputDevice(
        b"pvspec touch",
        ev_bits={EV_KEY: bitmap([BTN_TOUCH]), EV_ABS: bitmap([ABS_X, ABS_Y])},
        abs_info={ABS_X: (0, width, 0, 0, 0), ABS_Y: (0, height, 0, 0, 0)},
    )


def payload(dev: InputDevice, select: int, subsel: int) -> bytes:
    """The ``u`` contents for a query; empty = unsupported (§5.8.4)."""
    if select in (CFG_ID_NAME, CFG_ID_SERIAL, CFG_ID_DEVIDS, CFG_PROP_BITS) and subsel != 0:
        return b""
    if select == CFG_ID_NAME:
        return dev.name[:128]
    if select == CFG_ID_SERIAL:
        return dev.serial[:128]
    if select == CFG_ID_DEVIDS:
        return struct.pack("<HHHH", *dev.devids)
    if select == CFG_PROP_BITS:
        return dev.props
    if select == CFG_EV_BITS:
        return dev.ev_bits.get(subsel, b"")
    if select == CFG_ABS_INFO and subsel in dev.abs_info:
        return struct.pack("<IIIII", *(v & 0xFFFFFFFF for v in dev.abs_info[subsel]))
    return b""


def config_bytes(dev: InputDevice, select: int, subsel: int) -> bytes:
    """The whole 136-byte config as the device presents it after select/subsel."""
    u = payload(dev, select, subsel)
    return bytes([select, subsel, len(u)]) + bytes(5) + u.ljust(128, b"\0")


def check_config_answer(dev: InputDevice, select: int, subsel: int, raw: bytes) -> Violation | None:
    """§5.8.5.2: size is 0 for unsupported combinations (and matches what is supported)."""
    if raw[SIZE] != len(payload(dev, select, subsel)):
        return Violation(
            "VIRTIO-5.8.5.2-DEV-SIZE-ZERO-UNSUPPORTED",
            "device",
            f"select {select:#x} subsel {subsel}: size {raw[SIZE]}",
        )
    return None


def check_driver_config_writes(writes: Sequence[int]) -> Violation | None:
    """§5.8.5.1: a driver writes only select and subsel, and sets both before querying."""
    if any(off not in (SELECT, SUBSEL) for off in writes):
        return Violation("VIRTIO-5.8.5.1-DRV-WRITE-ONLY-SELECT", "driver", f"writes {writes}")
    if not {SELECT, SUBSEL} <= set(writes):
        return Violation("VIRTIO-5.8.5.1-DRV-SET-BOTH", "driver", "select/subsel not both set")
    return None


def check_driver_buffer(queue: int, length: int, device_writable: bool) -> Violation | None:
    """§5.8.6.1: eventq buffers writable and event-sized; statusq buffers event-sized."""
    if queue == EVENTQ and not device_writable:
        return Violation("VIRTIO-5.8.6.1-DRV-EVENTQ-WRITABLE", "driver", "readable eventq buffer")
    if length < EVENT.size:
        rid = (
            "VIRTIO-5.8.6.1-DRV-EVENTQ-SIZE"
            if queue == EVENTQ
            else "VIRTIO-5.8.6.1-DRV-STATUSQ-SIZE"
        )
        return Violation(rid, "driver", f"{length} bytes")
    return None


def check_event_sequences(
    sent: Sequence[tuple[int, int, int]], generated: Sequence[tuple[int, int, int]]
) -> Violation | None:
    """§5.8.6.2 (SHOULD): drops remove whole EV_SYN-terminated updates, never parts."""

    def updates(evs: Sequence[tuple[int, int, int]]) -> list[tuple[tuple[int, int, int], ...]]:
        out, cur = [], []
        for e in evs:
            cur.append(e)
            if e[0] == EV_SYN:
                out.append(tuple(cur))
                cur = []
        return out

    whole = set(updates(generated))
    if any(u not in whole for u in updates(sent)):
        return Violation("VIRTIO-5.8.6.2-DEV-DROP-WHOLE-SEQUENCE", "device", "partial update")
    return None
