"""vhost-user wire format (QEMU docs/interop/vhost-user.rst, "Message types").

A message is a 12-byte header ``{le32 request, le32 flags, le32 size}`` and ``size``
payload bytes; file descriptors travel as SCM_RIGHTS ancillary data.  Every reply the
front-end receives is checked here against the protocol rules, and each rule broken is
a typed :class:`ProtocolViolation`, never a crash.
"""

from __future__ import annotations

import enum
import struct

import attrs

HEADER = struct.Struct("<III")
VERSION = 1
F_VERSION_MASK = 0x3
F_REPLY = 1 << 2
F_NEED_REPLY = 1 << 3
MAX_PAYLOAD = 4096  # generous upper bound; the largest defined payload is well below
MAX_REGIONS = 8

VHOST_USER_F_PROTOCOL_FEATURES = 30
VHOST_F_LOG_ALL = 26
VHOST_ONLY_BITS = (1 << VHOST_USER_F_PROTOCOL_FEATURES) | (1 << VHOST_F_LOG_ALL)


class Req(enum.IntEnum):
    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    GET_CONFIG = 24
    SET_CONFIG = 25
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    RESET_DEVICE = 34
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


class PF(enum.IntEnum):
    """Protocol feature bits (vhost-user.rst "Protocol features")."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    MTU = 4
    BACKEND_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    BACKEND_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


# Requests that carry a reply of their own, with the payload size the reply must have
# (None: variable, checked by the caller).  Everything else replies only via REPLY_ACK.
REPLY_SIZE: dict[int, int | None] = {
    Req.GET_FEATURES: 8,
    Req.GET_PROTOCOL_FEATURES: 8,
    Req.GET_QUEUE_NUM: 8,
    Req.GET_VRING_BASE: 8,
    Req.GET_CONFIG: None,
    Req.GET_MAX_MEM_SLOTS: 8,
    Req.GET_STATUS: 8,
}

VRING_STATE = struct.Struct("<II")
VRING_ADDR = struct.Struct("<IIQQQQ")
U64 = struct.Struct("<Q")
MEM_REGION = struct.Struct("<QQQQ")
CONFIG_HDR = struct.Struct("<III")
VRING_NOFD = 1 << 8


class ViolationKind(enum.Enum):
    UNREACHABLE = "unreachable"  # no connection within the bound (no socket, never accepts)
    CLOSED = "closed"  # back-end closed the socket (or it reset)
    CRASHED = "crashed"  # the back-end process is gone
    TIMEOUT = "timeout"  # no (complete) reply within the bound
    BAD_VERSION = "bad-version"
    NO_REPLY_BIT = "no-reply-bit"
    WRONG_REQUEST = "wrong-request"  # reply names another request
    BAD_SIZE = "bad-size"
    NACK = "nack"  # REPLY_ACK answered non-zero
    UNEXPECTED_FDS = "unexpected-fds"


# A back-end that is gone or silent (the connection, not a reply, is at fault).
GONE_KINDS = frozenset({ViolationKind.UNREACHABLE, ViolationKind.CLOSED, ViolationKind.CRASHED})


class ProtocolViolation(Exception):
    """A reply (or its absence) that breaks vhost-user rules: a target fault, not a crash.

    ``trace``: the messages (or the request records) that led to it, as report trace ops
    (``{"op": "vhost-user", "text": ...}``).
    """

    def __init__(self, kind: ViolationKind, request: int, detail: str = "",
                 trace: tuple[dict[str, object], ...] = ()) -> None:
        super().__init__(f"{kind.value} on {req_name(request)}: {detail}".rstrip(": "))
        self.kind = kind
        self.request = request
        self.detail = detail
        self.trace = trace
        self.dead: str | None = None  # set once probed: why the back-end is gone, or None

    @property
    def requirement(self) -> str:
        """The vhost-user rule this fault is about: a reply that breaks the message rules
        is ``VHOST-USER-REPLY``; silence or a vanished back-end ``VHOST-USER-RESPONSIVE``
        (``VHOST-USER-CONNECT`` when no connection could be made at all)."""
        if self.kind is ViolationKind.UNREACHABLE:
            return "VHOST-USER-CONNECT"
        if self.kind in GONE_KINDS or self.kind is ViolationKind.TIMEOUT:
            return "VHOST-USER-RESPONSIVE"
        return "VHOST-USER-REPLY"

    @property
    def gone(self) -> bool:
        """The back-end may be dead: closed, crashed, unreachable or silent."""
        return self.kind in GONE_KINDS or self.kind is ViolationKind.TIMEOUT


def req_name(request: int) -> str:
    if request == 0:
        return "connect"
    return Req(request).name if request in Req._value2member_map_ else str(request)


@attrs.frozen
class Message:
    request: int
    flags: int
    payload: bytes = b""
    fds: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return HEADER.pack(self.request, self.flags, len(self.payload)) + self.payload


def check_reply(sent: int, flags: int, request: int, payload: bytes,
                want_size: int | None) -> None:
    """Header rules for a reply: version 1, reply bit, same request, exact size."""
    if flags & F_VERSION_MASK != VERSION:
        raise ProtocolViolation(ViolationKind.BAD_VERSION, sent, f"flags {flags:#x}")
    if not flags & F_REPLY:
        raise ProtocolViolation(ViolationKind.NO_REPLY_BIT, sent, f"flags {flags:#x}")
    if request != sent:
        raise ProtocolViolation(ViolationKind.WRONG_REQUEST, sent, f"reply to {request}")
    if want_size is not None and len(payload) != want_size:
        raise ProtocolViolation(ViolationKind.BAD_SIZE, sent,
                                f"{len(payload)} bytes, want {want_size}")
