"""A vhost-user front-end: the VMM side of the protocol, driven from Python.

It speaks to a back-end over a Unix stream socket (vhost-user.rst "Communication"),
shares guest memory as memfd regions (SET_MEM_TABLE), negotiates virtio and protocol
features, sets up split vrings with eventfds for kick and call, and uses REPLY_ACK
whenever it was negotiated.  Every wait is bounded; every reply is checked by
:func:`conformance.vhost_user.protocol.check_reply`; a closed socket or a malformed
reply raises :class:`ProtocolViolation`.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import select
import socket
import stat
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
    req_name,
)
from spec.virtio.split import SplitLayout

DEFAULT_TIMEOUT = 3.0
CONNECT_WITHIN = 3.0  # seconds for the connection itself (see :func:`connect_unix`)
MAX_FDS = 16  # ancillary room per read: any fd in a reply is a violation, count them all
_RETRY = (errno.EAGAIN, errno.EINPROGRESS, errno.ECONNREFUSED, errno.ENOENT, errno.EINTR)


def connect_unix(path: str, within: float) -> socket.socket:
    """A connected Unix stream socket to ``path`` within ``within`` seconds.

    Non-blocking connects, retried while the answer may change (EAGAIN: the listen
    backlog is full; ECONNREFUSED/ENOENT: the back-end is not listening yet), never a
    blocking call without a bound.  A path that exists but is not a socket fails at once.
    """
    deadline = time.monotonic() + within
    last = "no attempt"
    while True:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            last = "no such file"
        except OSError as e:
            raise ProtocolViolation(ViolationKind.UNREACHABLE, 0,
                                    f"cannot reach {path}: {e.strerror or e}") from None
        else:
            if not stat.S_ISSOCK(mode):
                raise ProtocolViolation(ViolationKind.UNREACHABLE, 0,
                                        f"{path} is not a socket")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                err = sock.connect_ex(path)
                if err == errno.EINPROGRESS:  # not for AF_UNIX on Linux; bounded anyway
                    _, w, _ = select.select([], [sock], [],
                                            max(0.0, deadline - time.monotonic()))
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else \
                        errno.ETIMEDOUT
                if err == 0:
                    return sock
            except OSError as e:
                err = e.errno or errno.EIO
            sock.close()
            last = os.strerror(err)
            if err not in _RETRY and err != errno.ETIMEDOUT:
                raise ProtocolViolation(ViolationKind.UNREACHABLE, 0,
                                        f"cannot connect to {path}: {last}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProtocolViolation(ViolationKind.UNREACHABLE, 0,
                                    f"cannot connect to {path} within {within:g}s: {last}")
        time.sleep(min(0.02, left))


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
    """One vhost-user connection.  Use as a context manager; all waits are bounded.

    ``connect_within`` bounds the connection itself: the socket must exist, be a socket
    and accept within it (a back-end whose listen backlog is full answers EAGAIN, retried
    until the deadline), else :class:`ProtocolViolation` ``unreachable``.
    """

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT,
                 connect_within: float = CONNECT_WITHIN) -> None:
        self.path = path
        self.timeout = timeout
        self.trace: list[str] = []
        self.protocol_features = 0
        self.features = 0
        self.vrings: dict[int, Vring] = {}
        self.sock = connect_unix(path, connect_within)
        self.sock.settimeout(timeout)

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

    def _fault(self, kind: ViolationKind, request: int, detail: str) -> ProtocolViolation:
        """A violation carrying the last messages exchanged, as trace ops."""
        return ProtocolViolation(kind, request, detail, tuple(
            {"op": "vhost-user", "kind": "message", "text": t} for t in self.trace[-8:]))

    def send(self, msg: Message) -> None:
        self.trace.append(f"> {req_name(msg.request)} flags={msg.flags:#x} "
                          f"size={len(msg.payload)}" + (f" fds={len(msg.fds)}" if msg.fds else ""))
        try:
            self.sock.settimeout(self.timeout)
            if msg.fds:
                socket.send_fds(self.sock, [msg.encode()], list(msg.fds))
            else:
                self.sock.sendall(msg.encode())
        except TimeoutError as e:
            raise self._fault(ViolationKind.TIMEOUT, msg.request,
                              f"the back-end took no bytes within {self.timeout}s") from e
        except OSError as e:
            raise self._fault(ViolationKind.CLOSED, msg.request, str(e)) from e

    def _recv_exact(self, n: int, request: int) -> bytes:
        """``n`` bytes of a reply within the bound; any file descriptor attached to them
        (SCM_RIGHTS) is closed and reported: no reply this front-end asks for carries
        one (vhost-user.rst, "Message types")."""
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fault(ViolationKind.TIMEOUT, request,
                                  f"{len(buf)}/{n} bytes within {self.timeout}s")
            self.sock.settimeout(left)
            try:
                chunk, anc, flags, _ = self.sock.recvmsg(
                    n - len(buf), socket.CMSG_SPACE(MAX_FDS * 4))
            except TimeoutError as e:
                raise self._fault(ViolationKind.TIMEOUT, request,
                                  f"{len(buf)}/{n} bytes within {self.timeout}s") from e
            except OSError as e:
                raise self._fault(ViolationKind.CLOSED, request, str(e)) from e
            fds = _close_fds(anc)
            if fds or flags & socket.MSG_CTRUNC:
                raise self._fault(ViolationKind.UNEXPECTED_FDS, request,
                                  f"{fds or 'more than ' + str(MAX_FDS)} file descriptor(s) "
                                  f"attached to the reply (closed)")
            if not chunk:
                raise self._fault(ViolationKind.CLOSED, request,
                                  f"EOF after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_reply(self, sent: int, want_size: int | None) -> bytes:
        request, flags, size = HEADER.unpack(self._recv_exact(HEADER.size, sent))
        if size > MAX_PAYLOAD:
            raise self._fault(ViolationKind.BAD_SIZE, sent, f"payload size {size}")
        payload = self._recv_exact(size, sent) if size else b""
        self.trace.append(f"< {req_name(request)} flags={flags:#x} size={size}")
        try:
            check_reply(sent, flags, request, payload, want_size)
        except ProtocolViolation as e:
            raise self._fault(e.kind, sent, e.detail) from None
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
                raise self._fault(ViolationKind.NACK, req, f"status {status}")

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
            raise self._fault(ViolationKind.BAD_SIZE, Req.GET_CONFIG,
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


def _close_fds(ancillary: list[tuple[int, int, bytes]]) -> int:
    """Close every file descriptor in SCM_RIGHTS ancillary data; how many there were."""
    n = 0
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                n += 1
                with contextlib.suppress(OSError):
                    os.close(fd)
    return n
