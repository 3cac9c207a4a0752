"""virtio-input (VIRTIO 1.3 5.8): the select/subsel config window and the event queues.

Events are grouped into updates ending in EV_SYN/SYN_REPORT; an update becomes visible
only when complete, and when the backlog is full the whole update is dropped, never a
part of it (5.8.6.2).  Self-contained: no ``spec`` import.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

DEVICE_ID = 18  # 5 "Device Types": input
EVENTQ, STATUSQ = 0, 1
RING_FEATURES = sum(1 << b for b in (28, 29, 32, 35))  # 5.8.3: no device bits
EVENT = struct.Struct("<HHI")  # 5.8.6: type, code, value
CONFIG_SIZE = 136  # 5.8.4: select, subsel, size, reserved[5], u[128]
SELECT, SUBSEL = 0, 1
CFG_UNSET, CFG_ID_NAME, CFG_ID_SERIAL, CFG_ID_DEVIDS = 0x00, 0x01, 0x02, 0x03
CFG_PROP_BITS, CFG_EV_BITS, CFG_ABS_INFO = 0x10, 0x11, 0x12
EV_SYN, EV_KEY, EV_ABS, EV_LED = 0x00, 0x01, 0x03, 0x11
SYN_REPORT, ABS_X, ABS_Y, BTN_TOUCH = 0, 0x00, 0x01, 0x14A
INPUT_PROP_DIRECT = 1
BUS_VIRTUAL, VENDOR_QEMU = 0x06, 0x0627


def bitmap(codes: Iterable[int]) -> bytes:
    """Little bit order within bytes, trimmed after the highest set bit (5.8.4)."""
    codes = sorted(set(codes))
    out = bytearray(codes[-1] // 8 + 1 if codes else 0)
    for c in codes:
        out[c // 8] |= 1 << (c % 8)
    return bytes(out)


@dataclass(frozen=True)
class Profile:
    """What an input device reports about itself through the config window."""

    name: bytes
    serial: bytes = b""
    devids: tuple[int, int, int, int] = (BUS_VIRTUAL, VENDOR_QEMU, 1, 1)  # bus, vendor, ...
    props: tuple[int, ...] = ()
    events: dict[int, tuple[int, ...]] = field(default_factory=dict)  # type -> codes
    abs_info: dict[int, tuple[int, int, int, int, int]] = field(default_factory=dict)


def keyboard() -> Profile:
    return Profile(b"pvspec-ref keyboard", b"0001",
                   events={EV_KEY: tuple(range(1, 128)), EV_LED: (0, 1, 2)})


def touchscreen(width: int = 32767, height: int = 32767) -> Profile:
    return Profile(b"pvspec-ref touchscreen", devids=(BUS_VIRTUAL, VENDOR_QEMU, 3, 1),
                   props=(INPUT_PROP_DIRECT,),
                   events={EV_KEY: (BTN_TOUCH,), EV_ABS: (ABS_X, ABS_Y)},
                   abs_info={ABS_X: (0, width, 0, 0, 0), ABS_Y: (0, height, 0, 0, 0)})


class InputDevice:
    """5.8.5/5.8.6: config answers computed once per profile, events as 8-byte buffers."""

    device_id = DEVICE_ID
    features = RING_FEATURES

    def __init__(self, profile: Profile, backlog: int = 64) -> None:
        self.profile = profile
        self.backlog = backlog
        self.select = self.subsel = 0
        self.pending: list[tuple[int, int, int]] = []  # the update being assembled
        self.events: deque[tuple[int, int, int]] = deque()
        self.dropped_updates = 0
        self.leds: dict[int, int] = {}
        self.status_log: list[tuple[int, int, int]] = []
        self._bitmaps = {t: bitmap(c) for t, c in profile.events.items()}

    # --- config (5.8.4, 5.8.5) ----------------------------------------------------------

    def answer(self, select: int, subsel: int) -> bytes:
        """The union ``u`` for a query; empty when the device does not support it."""
        p = self.profile
        if select in (CFG_ID_NAME, CFG_ID_SERIAL, CFG_ID_DEVIDS, CFG_PROP_BITS) and subsel:
            return b""
        if select == CFG_ID_NAME:
            return p.name[:128]
        if select == CFG_ID_SERIAL:
            return p.serial[:128]
        if select == CFG_ID_DEVIDS:
            return struct.pack("<HHHH", *p.devids)
        if select == CFG_PROP_BITS:
            return bitmap(p.props)
        if select == CFG_EV_BITS:
            return self._bitmaps.get(subsel, b"")
        if select == CFG_ABS_INFO and subsel in p.abs_info:
            return struct.pack("<5I", *(v & 0xFFFFFFFF for v in p.abs_info[subsel]))
        return b""

    def config(self) -> bytes:
        u = self.answer(self.select, self.subsel)
        return bytes((self.select, self.subsel, len(u))) + bytes(5) + u.ljust(128, b"\0")

    def write_config(self, offset: int, data: bytes) -> None:
        """The driver may write select and subsel only (5.8.5.1); other writes are ignored."""
        for i, b in enumerate(data):
            if offset + i == SELECT:
                self.select = b
            elif offset + i == SUBSEL:
                self.subsel = b

    # --- events (5.8.6) -----------------------------------------------------------------

    def push(self, type_: int, code: int, value: int) -> None:
        """Add an event to the current update; EV_SYN/SYN_REPORT closes it."""
        self.pending.append((type_, code, value & 0xFFFFFFFF))
        if type_ == EV_SYN and code == SYN_REPORT:
            update, self.pending = self.pending, []
            if len(self.events) + len(update) > self.backlog:
                self.dropped_updates += 1  # the whole update, never a part (5.8.6.2)
            else:
                self.events.extend(update)

    def report(self, events: Iterable[tuple[int, int, int]]) -> None:
        """Push ``events`` followed by SYN_REPORT: one complete update."""
        for e in events:
            self.push(*e)
        self.push(EV_SYN, SYN_REPORT, 0)

    def key(self, code: int, down: bool) -> None:
        self.report([(EV_KEY, code, int(down))])

    def touch(self, x: int, y: int, down: bool = True) -> None:
        self.report([(EV_ABS, ABS_X, x), (EV_ABS, ABS_Y, y), (EV_KEY, BTN_TOUCH, int(down))])

    def ready(self, queue: int) -> bool:
        return (queue == EVENTQ and bool(self.events)) or queue == STATUSQ

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        if queue == EVENTQ:
            if not self.events or in_len < EVENT.size:  # too small (5.8.6.1): event waits
                return b""
            return EVENT.pack(*self.events.popleft())
        if queue == STATUSQ:
            self.status(out)
            return b""
        raise ValueError(f"virtio-input has no queue {queue}")

    def status(self, out: bytes) -> None:
        """Driver->device events (LED state); unknown types and codes are ignored."""
        leds = self.profile.events.get(EV_LED, ())
        for off in range(0, len(out) - EVENT.size + 1, EVENT.size):
            ev = EVENT.unpack_from(out, off)
            self.status_log.append(ev)
            if ev[0] == EV_LED and ev[1] in leds:
                self.leds[ev[1]] = ev[2]
