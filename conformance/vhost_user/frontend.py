"""A vhost-user front-end: the VMM side of the protocol, driven from Python.

It speaks to a back-end over a Unix stream socket (vhost-user.rst "Communication"),
shares guest memory as memfd regions (SET_MEM_TABLE), negotiates virtio and protocol
features, sets up split vrings with eventfds for kick and call, and uses REPLY_ACK
whenever it was negotiated.  Every wait is bounded; every reply is checked by
:func:`conformance.vhost_user.protocol.check_reply`; a closed socket or a malformed
reply raises :class:`ProtocolViolation`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time

import attrs

from conformance.vhost_user.memory import MemfdMemory
from conformance.vhost_user.protocol import (
    CONFIG_HDR,
    F_NEED_REPLY,
    HEADER,
    MAX_PAYLOAD,
    MEM_REGION,
    PF,
    REPLY_SIZE,
    U64,
    VERSION,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VRING_ADDR,
    VRING_STATE,
    Message,
    ProtocolViolation,
    Req,
    ViolationKind,
    check_reply,
)
from spec.virtio.split import SplitLayout

DEFAULT_TIMEOUT = 3.0


@attrs.define
class Vring:
    """One queue's eventfds: the front-end writes ``kick``, the back-end signals ``call``."""

    index: int
    kick_fd: int
    call_fd: int

    def kick(self) -> None:
        os.eventfd_write(self.kick_fd, 1)

    def wait_call(self, timeout: float) -> bool:
        """Consume a used-buffer notification if one arrives within ``timeout``."""
        r, _, _ = select.select([self.call_fd], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            os.eventfd_read(self.call_fd)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        for fd in (self.kick_fd, self.call_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Frontend:
    """One vhost-user connection.  Use as a context manager; all waits are bounded."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT,
                 connect_within: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.trace: list[str] = []
        self.protocol_features = 0
        self.features = 0
        self.vrings: dict[int, Vring] = {}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + connect_within
        while True:
            try:
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise ProtocolViolation(ViolationKind.CLOSED, 0,
                                            f"cannot connect to {path}: {e}") from e
                time.sleep(0.02)

    # --- context management ------------------------------------------------------------

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        for v in self.vrings.values():
            v.close()
        self.vrings.clear()

    # --- raw messages ------------------------------------------------------------------

    @property
    def reply_ack(self) -> bool:
        return bool(self.protocol_features >> PF.REPLY_ACK & 1)

    def send(self, msg: Message) -> None:
        self.trace.append(f"> {_name(msg.request)} flags={msg.flags:#x} size={len(msg.payload)}"
                          + (f" fds={len(msg.fds)}" if msg.fds else ""))
        try:
            if msg.fds:
                socket.send_fds(self.sock, [msg.encode()], list(msg.fds))
            else:
                self.sock.sendall(msg.encode())
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            raise ProtocolViolation(ViolationKind.CLOSED, msg.request, str(e)) from e

    def _recv_exact(self, n: int, request: int) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolViolation(ViolationKind.TIMEOUT, request,
                                        f"{len(buf)}/{n} bytes within {self.timeout}s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(buf))
            except TimeoutError as e:
                raise ProtocolViolation(ViolationKind.TIMEOUT, request,
                                        f"{len(buf)}/{n} bytes within {self.timeout}s") from e
            except (ConnectionResetError, OSError) as e:
                raise ProtocolViolation(ViolationKind.CLOSED, request, str(e)) from e
            if not chunk:
                raise ProtocolViolation(ViolationKind.CLOSED, request,
                                        f"EOF after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_reply(self, sent: int, want_size: int | None) -> bytes:
        request, flags, size = HEADER.unpack(self._recv_exact(HEADER.size, sent))
        if size > MAX_PAYLOAD:
            raise ProtocolViolation(ViolationKind.BAD_SIZE, sent, f"payload size {size}")
        payload = self._recv_exact(size, sent) if size else b""
        self.trace.append(f"< {_name(request)} flags={flags:#x} size={size}")
        check_reply(sent, flags, request, payload, want_size)
        return payload

    def get(self, req: int, payload: bytes = b"", want_size: int | None = -1) -> bytes:
        """A request with a reply of its own (GET_*)."""
        size = REPLY_SIZE.get(req) if want_size == -1 else want_size
        self.send(Message(req, VERSION, payload))
        return self.recv_reply(req, size)

    def set(self, req: int, payload: bytes = b"", fds: tuple[int, ...] = (),
            ack: bool | None = None) -> None:
        """A request without a reply; with REPLY_ACK, ask for and check the ack."""
        ack = self.reply_ack if ack is None else ack
        self.send(Message(req, VERSION | (F_NEED_REPLY if ack else 0), payload, fds))
        if ack:
            (status,) = U64.unpack(self.recv_reply(req, 8))
            if status != 0:
                raise ProtocolViolation(ViolationKind.NACK, req, f"status {status}")

    def backend_closed(self, wait: float = 0.0) -> bool:
        """True when the back-end has closed the connection (EOF readable)."""
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return False
        try:
            data = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return data == b""

    # --- the setup sequence (vhost-user.rst "Starting and stopping rings") -------------

    def get_u64(self, req: int) -> int:
        return U64.unpack(self.get(req))[0]

    def negotiate(self, want: int, want_protocol: int) -> tuple[int, int, int, int]:
        """SET_OWNER, features, protocol features.  Returns (offered, acked, poffered, packed)."""
        self.set(Req.SET_OWNER, ack=False)
        offered = self.get_u64(Req.GET_FEATURES)
        acked = offered & want
        poffered = 0
        if offered >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            acked |= 1 << VHOST_USER_F_PROTOCOL_FEATURES
            poffered = self.get_u64(Req.GET_PROTOCOL_FEATURES)
            packed = poffered & want_protocol
            self.set(Req.SET_PROTOCOL_FEATURES, U64.pack(packed), ack=False)
            self.protocol_features = packed
        self.set(Req.SET_FEATURES, U64.pack(acked))
        self.features = acked
        return offered, acked, poffered, self.protocol_features

    def get_config(self, size: int, offset: int = 0) -> bytes:
        payload = CONFIG_HDR.pack(offset, size, 0) + bytes(size)
        reply = self.get(Req.GET_CONFIG, payload, want_size=CONFIG_HDR.size + size)
        off, sz, _flags = CONFIG_HDR.unpack_from(reply)
        if (off, sz) != (offset, size):
            raise ProtocolViolation(ViolationKind.BAD_SIZE, Req.GET_CONFIG,
                                    f"config header ({off},{sz}) != ({offset},{size})")
        return reply[CONFIG_HDR.size:]

    def set_mem_table(self, regions: list[MemfdMemory]) -> None:
        body = struct.pack("<II", len(regions), 0) + b"".join(
            MEM_REGION.pack(m.base, m.size, m.uaddr, 0) for m in regions)
        self.set(Req.SET_MEM_TABLE, body, tuple(m.fd for m in regions))

    def setup_vring(self, index: int, mem: MemfdMemory, layout: SplitLayout, base: int = 0,
                    enable: bool = True) -> Vring:
        """SET_VRING_NUM/BASE/ADDR/KICK/CALL (+ENABLE): the order QEMU's back-ends accept."""
        kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        vr = Vring(index, kick, call)
        self.vrings[index] = vr
        self.set(Req.SET_VRING_NUM, VRING_STATE.pack(index, layout.size))
        self.set(Req.SET_VRING_BASE, VRING_STATE.pack(index, base))
        self.set(Req.SET_VRING_ADDR, VRING_ADDR.pack(
            index, 0, mem.to_user(layout.desc), mem.to_user(layout.used),
            mem.to_user(layout.avail), 0))
        self.set(Req.SET_VRING_KICK, U64.pack(index), (kick,))
        self.set(Req.SET_VRING_CALL, U64.pack(index), (call,))
        if enable and self.features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            self.set(Req.SET_VRING_ENABLE, VRING_STATE.pack(index, 1))
        return vr

    def stop_vring(self, index: int) -> int:
        """GET_VRING_BASE: stops the ring and returns the next avail index to process."""
        _idx, num = VRING_STATE.unpack(self.get(Req.GET_VRING_BASE, VRING_STATE.pack(index, 0)))
        return num


def _name(req: int) -> str:
    return Req(req).name if req in Req._value2member_map_ else str(req)
