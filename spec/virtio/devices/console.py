"""virtio-console (VIRTIO 1.3 §5.3): config, queue roles, multiport control messages."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs

from spec.virtio import features as F
from spec.virtio.config import layout
from spec.virtio.verdict import Violation

DEVICE_ID = F.CONSOLE
FC = F.CONSOLE_FEATURES
CONFIG = layout(
    ("cols", 2, FC["SIZE"]),
    ("rows", 2, FC["SIZE"]),
    ("max_nr_ports", 4, FC["MULTIPORT"]),
    ("emerg_wr", 4, FC["EMERG_WRITE"]),
)
CONTROL = struct.Struct("<IHH")  # id, event, value
DEVICE_READY, DEVICE_ADD, DEVICE_REMOVE, PORT_READY = 0, 1, 2, 3
CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME = 4, 5, 6, 7


def encode_control(port: int, event: int, value: int) -> bytes:
    return CONTROL.pack(port, event, value)


def decode_control(raw: bytes) -> tuple[int, int, int]:
    return CONTROL.unpack_from(raw)


def queue_role(index: int, multiport: bool) -> tuple[str, int]:
    """(role, port) of a queue (§5.3.2): port 0 rx/tx, then control rx/tx, then ports 1..."""
    if index < 2:
        return ("receiveq" if index == 0 else "transmitq"), 0
    if not multiport:
        raise ValueError("only two queues without MULTIPORT")
    if index < 4:
        return ("control_receiveq" if index == 2 else "control_transmitq"), -1
    port = (index - 4) // 2 + 1
    return ("receiveq" if index % 2 == 0 else "transmitq"), port


def check_driver_buffer(role: str, device_writable: bool) -> Violation | None:
    """§5.3.6.1: receive queues get writable buffers, transmit queues readable ones."""
    if role.endswith("receiveq") and not device_writable:
        return Violation("VIRTIO-5.3.6.1-DRV-RX-WRITABLE", "driver", "readable buffer in rx")
    if role.endswith("transmitq") and device_writable:
        return Violation("VIRTIO-5.3.6.1-DRV-TX-READABLE", "driver", "writable buffer in tx")
    return None


@attrs.frozen
class Ports:
    max_nr_ports: int
    live: frozenset[int] = frozenset()


def device_message(ports: Ports, port: int, event: int) -> tuple[Ports, Violation | None]:
    """Judge a device->driver control message (§5.3.6.2.1) and track live ports."""
    if event == DEVICE_ADD:
        if port in ports.live or port >= ports.max_nr_ports:
            return ports, Violation("VIRTIO-5.3.6.2.1-DEV-ADD-VALID", "device", f"port {port}")
        return attrs.evolve(ports, live=ports.live | {port}), None
    if event == DEVICE_REMOVE:
        if port not in ports.live:
            return ports, Violation("VIRTIO-5.3.6.2.1-DEV-REMOVE-KNOWN", "device", f"port {port}")
        return attrs.evolve(ports, live=ports.live - {port}), None
    return ports, None


def check_driver_control(
    multiport: bool, sent: Sequence[tuple[int, int, int]], received: Sequence[tuple[int, int, int]]
) -> Violation | None:
    """§5.3.6.2.2: DEVICE_READY is sent; each CONSOLE_PORT is answered with PORT_OPEN value 1."""
    if multiport and not any(e == DEVICE_READY for _, e, _ in sent):
        return Violation("VIRTIO-5.3.6.2.2-DRV-DEVICE-READY", "driver", "no DEVICE_READY")
    for port, event, _ in received:
        if event == CONSOLE_PORT and (port, PORT_OPEN, 1) not in sent:
            return Violation("VIRTIO-5.3.6.2.2-DRV-CONSOLE-PORT-OPEN", "driver", f"port {port}")
    return None


def emergency_write(output: bytes, value: int, status: int) -> bytes:
    """§5.3.5.1: a write to emerg_wr is accepted in any device state; the low byte goes out."""
    del status  # deliberately irrelevant: works even before the driver configured anything
    return output + bytes([value & 0xFF])


def check_emergency_write(accepted: bool) -> Violation | None:
    """§5.3.5.1: the device took a write to emerg_wr (even unconfigured)."""
    if not accepted:
        return Violation("VIRTIO-5.3.5.1-DEV-EMERG-WR", "device", "emerg_wr write refused")
    return None
