"""virtio-console (VIRTIO 1.3 5.3): port 0, and with MULTIPORT hot-pluggable ports.

Host side: :meth:`ConsoleDevice.feed` queues input for a port, :attr:`output` collects
what the driver wrote.  Control messages to the driver wait in a FIFO that the control
receive queue drains one per buffer; a port is announced (DEVICE_ADD) only once the
driver said DEVICE_READY, and never twice or past ``max_nr_ports`` (5.3.6.2.1).
Self-contained: no ``spec`` import.
"""

from __future__ import annotations

import struct
from collections import deque

DEVICE_ID = 3  # 5 "Device Types": console
F_SIZE, F_MULTIPORT, F_EMERG_WRITE = 0, 1, 2  # 5.3.3
RING_FEATURES = sum(1 << b for b in (28, 29, 32, 35))
OFFERED = RING_FEATURES | 1 << F_SIZE | 1 << F_MULTIPORT | 1 << F_EMERG_WRITE
CTRL_RXQ, CTRL_TXQ = 2, 3  # 5.3.2
CONTROL = struct.Struct("<IHH")  # 5.3.6.2: id, event, value
DEVICE_READY, DEVICE_ADD, DEVICE_REMOVE, PORT_READY = 0, 1, 2, 3
CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME = 4, 5, 6, 7
EMERG_WR_OFFSET = 8  # 5.3.4: after cols, rows, max_nr_ports


class ConsoleDevice:
    """5.3.6 data and control paths; ``negotiate`` decides whether MULTIPORT is on."""

    device_id = DEVICE_ID
    features = OFFERED

    def __init__(self, cols: int = 80, rows: int = 25, max_nr_ports: int = 4,
                 ports: dict[int, bytes] | None = None, negotiated: int | None = None) -> None:
        """``ports`` maps the ports present at start to their names (b"" for none)."""
        self.cols, self.rows, self.max_nr_ports = cols, rows, max_nr_ports
        self.initial_ports = dict(ports if ports is not None else {0: b""})
        self.output: dict[int, bytearray] = {0: bytearray()}  # a host log, kept across resets
        self.negotiate(OFFERED if negotiated is None else negotiated)

    def negotiate(self, features: int) -> int:
        """Accept the driver's features (2.2) and reset ports and queues."""
        self.negotiated = features & self.features
        self.multiport = bool(self.negotiated >> F_MULTIPORT & 1)
        self.ports = dict(self.initial_ports) if self.multiport else {0: b""}
        for p in self.ports:
            self.output.setdefault(p, bytearray())
        self.input: dict[int, bytearray] = {p: bytearray() for p in self.ports}
        self.driver_ready = False
        self.announced: set[int] = set()
        self.host_open: set[int] = set()
        self.guest_open: set[int] = set()
        self.messages: deque[bytes] = deque()
        return self.negotiated

    # --- config (5.3.4) ---------------------------------------------------------------

    def config(self) -> bytes:
        return struct.pack("<HHII", self.cols, self.rows, self.max_nr_ports, 0)

    def write_config(self, offset: int, data: bytes) -> None:
        """Only emerg_wr is writable; its low byte goes out on port 0 at once, in any
        device state, even before feature negotiation (5.3.5.1)."""
        if offset == EMERG_WR_OFFSET and data and self.features >> F_EMERG_WRITE & 1:
            self.output[0].append(data[0])

    def resize(self, cols: int, rows: int) -> None:
        """New console size: config, and a RESIZE message for port 0 when it is live."""
        self.cols, self.rows = cols, rows
        if self.multiport and 0 in self.announced:
            self._send(0, RESIZE, 0, struct.pack("<HH", cols, rows))

    # --- host side ----------------------------------------------------------------------

    def feed(self, data: bytes, port: int = 0) -> None:
        """Input for the driver on ``port`` (kept until the port's receiveq takes it)."""
        if port in self.input:
            self.input[port] += data

    def add_port(self, port: int, name: bytes = b"") -> bool:
        """Hot-plug a port; announced now if the driver is ready, else at DEVICE_READY."""
        if not self.multiport or port in self.ports or not 0 <= port < self.max_nr_ports:
            return False
        self.ports[port] = name
        self.output.setdefault(port, bytearray())
        self.input[port] = bytearray()
        if self.driver_ready:
            self._announce(port)
        return True

    def remove_port(self, port: int) -> bool:
        """Hot-unplug; only a port the driver was told about gets DEVICE_REMOVE."""
        if port not in self.ports or not self.multiport:
            return False
        del self.ports[port]
        self.input.pop(port, None)
        self.host_open.discard(port)
        self.guest_open.discard(port)
        if port in self.announced:
            self.announced.discard(port)
            self._send(port, DEVICE_REMOVE, 0)
        return True

    def open_port(self, port: int, is_open: bool = True) -> None:
        """The host end of ``port`` connects or hangs up (PORT_OPEN to the driver)."""
        if port not in self.ports:
            return
        (self.host_open.add if is_open else self.host_open.discard)(port)
        if port in self.announced:
            self._send(port, PORT_OPEN, int(is_open))

    # --- queues -------------------------------------------------------------------------

    def queue_port(self, queue: int) -> tuple[str, int]:
        """5.3.2: (role, port); control queues have port -1."""
        if queue < 2:
            return ("rx" if queue == 0 else "tx"), 0
        if not self.multiport or queue >= 2 * (self.max_nr_ports + 1):
            raise ValueError(f"virtio-console has no queue {queue}")
        if queue < 4:
            return ("ctrl_rx" if queue == CTRL_RXQ else "ctrl_tx"), -1
        return ("rx" if queue % 2 == 0 else "tx"), (queue - 4) // 2 + 1

    def _live(self, port: int) -> bool:
        return port in self.ports and (port == 0 or port in self.announced)

    def ready(self, queue: int) -> bool:
        try:
            role, port = self.queue_port(queue)
        except ValueError:
            return False
        if role == "ctrl_rx":
            return bool(self.messages)
        if role == "rx":
            return self._live(port) and bool(self.input.get(port))
        return True

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        role, port = self.queue_port(queue)
        if role == "tx":
            if self._live(port):
                self.output[port] += out
            return b""
        if role == "rx":
            pending = self.input.get(port, bytearray())
            n = min(in_len, len(pending)) if self._live(port) else 0
            data = bytes(pending[:n])
            del pending[:n]
            return data
        if role == "ctrl_tx":
            if len(out) >= CONTROL.size:
                self._driver_message(*CONTROL.unpack_from(out))
            return b""
        return self._next_message(in_len)

    # --- control messages (5.3.6.2) -----------------------------------------------------

    def _send(self, port: int, event: int, value: int, extra: bytes = b"") -> None:
        self.messages.append(CONTROL.pack(port, event, value) + extra)

    def _announce(self, port: int) -> None:
        if port not in self.announced:
            self.announced.add(port)
            self._send(port, DEVICE_ADD, 0)

    def _next_message(self, in_len: int) -> bytes:
        """One message per buffer; a buffer too small for the message's fixed part is used
        empty (the message waits for the next one), a long PORT_NAME is cut to the buffer."""
        if not self.messages:
            return b""
        msg = self.messages[0]
        need = CONTROL.size if CONTROL.unpack_from(msg)[1] == PORT_NAME else len(msg)
        if in_len < need:
            return b""
        return self.messages.popleft()[:in_len]

    def _driver_message(self, port: int, event: int, value: int) -> None:
        if event == DEVICE_READY:
            if value == 1 and not self.driver_ready:
                self.driver_ready = True
                for p in sorted(self.ports):
                    self._announce(p)
        elif event == PORT_READY:
            if value == 1 and port in self.announced and port in self.ports:
                if port == 0:  # port 0 is the console (5.3.6.2, CONSOLE_PORT)
                    self._send(0, CONSOLE_PORT, 1)
                if self.ports[port]:
                    self._send(port, PORT_NAME, 1, self.ports[port])
                if port in self.host_open:
                    self._send(port, PORT_OPEN, 1)
        elif event == PORT_OPEN and port in self.announced:
            (self.guest_open.add if value else self.guest_open.discard)(port)
