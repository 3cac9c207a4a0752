"""virtio-snd (VIRTIO 1.3 §5.14; the same numbers in 1.4): layouts, the PCM lifecycle, judges.

The sound device is driven by control requests (controlq), reports on its own initiative
(eventq) and moves PCM frames in I/O messages (txq for output streams, rxq for input).
Everything here is a pure function over decoded values, so the same judges serve a unit
test, a Hypothesis state machine against :mod:`reference_impl.virtio.sound` and, later, a
real back-end.

Three kinds of rule are judged, each naming its registry id
(:mod:`spec.virtio.requirements_sound`):

* the §5.14 Device and Driver Requirements statements themselves (``VIRTIO-5.14...``);
* rules §5.14 implies without a Requirements statement (``PVSPEC-SND-*``, listed with
  their sections in ``requirements_sound.IMPLIED_RULES``): the PCM command lifecycle of
  §5.14.6.6.1 read as "a request that is no valid transition from the stream's state is
  not answered OK", OK only for an item that exists, set-params accepted only for what the
  stream's information advertised, status codes from the defined set;
* nothing else: where the spec leaves the device a choice (which error code, whether a
  valid request fails), every choice is allowed.

The PCM lifecycle (§5.14.6.6.1) lists, after each command, the commands that may follow.
It names no state before the first SET PARAMETERS; we read the stream as starting in
:data:`INITIAL`, from which only SET_PARAMS is a valid transition (a device may have
default parameters, but the lifecycle does not begin with PREPARE).  An error answer
leaves the stream where it was: a failed command did not happen.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, ClassVar, TypeVar, cast

import attrs

from spec.virtio.config import layout
from spec.virtio.verdict import Violation

DEVICE_ID = 25  # 5 "Device Types": sound (§5.14.1)
CONTROLQ, EVENTQ, TXQ, RXQ = 0, 1, 2, 3  # §5.14.2
SND_FEATURES: dict[str, int] = {"CTLS": 0}  # §5.14.3
F_CTLS = SND_FEATURES["CTLS"]

# §5.14.4: controls exists only with VIRTIO_SND_F_CTLS
CONFIG = layout(("jacks", 4), ("streams", 4), ("chmaps", 4), ("controls", 4, F_CTLS))

# --- §5.14.6 codes ------------------------------------------------------------------------
R_JACK_INFO, R_JACK_REMAP = 1, 2
R_PCM_INFO, R_PCM_SET_PARAMS, R_PCM_PREPARE = 0x100, 0x101, 0x102
R_PCM_RELEASE, R_PCM_START, R_PCM_STOP = 0x103, 0x104, 0x105
R_CHMAP_INFO = 0x200
R_CTL_INFO, R_CTL_ENUM_ITEMS, R_CTL_READ, R_CTL_WRITE = 0x300, 0x301, 0x302, 0x303
R_CTL_TLV_READ, R_CTL_TLV_WRITE, R_CTL_TLV_COMMAND = 0x304, 0x305, 0x306
EVT_JACK_CONNECTED, EVT_JACK_DISCONNECTED = 0x1000, 0x1001
EVT_PCM_PERIOD_ELAPSED, EVT_PCM_XRUN = 0x1100, 0x1101
EVT_CTL_NOTIFY = 0x1200
S_OK, S_BAD_MSG, S_NOT_SUPP, S_IO_ERR = 0x8000, 0x8001, 0x8002, 0x8003
STATUSES = frozenset({S_OK, S_BAD_MSG, S_NOT_SUPP, S_IO_ERR})
ERRORS = frozenset({S_BAD_MSG, S_NOT_SUPP, S_IO_ERR})
PCM_LIFECYCLE = (R_PCM_SET_PARAMS, R_PCM_PREPARE, R_PCM_RELEASE, R_PCM_START, R_PCM_STOP)
INFO_REQUESTS = {R_JACK_INFO: "jacks", R_PCM_INFO: "streams", R_CHMAP_INFO: "chmaps",
                 R_CTL_INFO: "controls"}
CTL_REQUESTS = frozenset(range(R_CTL_INFO, R_CTL_TLV_COMMAND + 1))
REQUESTS = frozenset({R_JACK_INFO, R_JACK_REMAP, *PCM_LIFECYCLE, R_PCM_INFO, R_CHMAP_INFO,
                      *CTL_REQUESTS})
D_OUTPUT, D_INPUT = 0, 1

# --- structures (all little-endian; §5.14.6 and its subsections) ----------------------------
HDR = struct.Struct("<I")  # virtio_snd_hdr: code
EVENT = struct.Struct("<II")  # virtio_snd_event: hdr, data
QUERY_INFO = struct.Struct("<IIII")  # hdr, start_id, count, size
ITEM_HDR = struct.Struct("<II")  # jack_hdr / pcm_hdr / ctl_hdr: hdr, id
JACK_INFO = struct.Struct("<IIIIB7s")  # hda_fn_nid, features, defconf, caps, connected, pad
JACK_REMAP = struct.Struct("<IIII")  # hdr, jack_id, association, sequence
PCM_INFO = struct.Struct("<IIQQBBB5s")  # nid, features, formats, rates, dir, ch_min/max, pad
SET_PARAMS = struct.Struct("<IIIIIBBBB")  # hdr, stream, buffer, period, features, ch, fmt,
# rate, padding
CHMAP_MAX_SIZE = 18
CHMAP_INFO = struct.Struct(f"<IBB{CHMAP_MAX_SIZE}s")  # hda_fn_nid, direction, channels, pos
XFER = struct.Struct("<I")  # virtio_snd_pcm_xfer: stream_id
PCM_STATUS = struct.Struct("<II")  # virtio_snd_pcm_status: status, latency_bytes
# virtio_snd_ctl_info: the value union holds le64 members, so in C it starts 8-aligned at
# 72, after 4 bytes of implicit padding behind name[44]; 96 bytes in all.
CTL_INFO = struct.Struct("<IIIIII44s4x24s")
CTL_ENUM_ITEM = 64
CTL_EVENT = struct.Struct("<IHH")  # hdr, control_id, mask
CTL_TLV = struct.Struct("<II")  # type, length (then length bytes of value)
CTL_VALUE_SIZE = 512  # virtio_snd_ctl_value: the largest union member
TLV_MAX_VALUE = 65536  # §5.14.6.10.3.2

# --- defined values (a bit past these is "undefined") ----------------------------------------
JACK_F_REMAP = 0
JACK_FEATURES = 1 << JACK_F_REMAP
PCM_F_SHMEM_HOST, PCM_F_SHMEM_GUEST, PCM_F_MSG_POLLING = 0, 1, 2
PCM_F_EVT_SHMEM_PERIODS, PCM_F_EVT_XRUNS = 3, 4
PCM_FEATURES = (1 << 5) - 1
FMT_S16, FMT_U8, FMT_S32, FMT_FLOAT = 5, 4, 17, 19
PCM_FORMATS = (1 << 25) - 1  # IMA_ADPCM .. IEC958_SUBFRAME
# physical bits per sample, by format index (§5.14.6.6.2's comments)
FORMAT_BITS = (4, 8, 8, 8, 8, 16, 16, 24, 24, 24, 24, 24, 24, 32, 32, 32, 32, 32, 32, 32, 64,
               8, 16, 32, 32)
RATE_HZ_1_3 = (5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000,
               176400, 192000, 384000)
RATE_HZ_1_4 = (*RATE_HZ_1_3, 12000, 24000)  # 1.4 appends two rates at indices 14 and 15
RATE_44100, RATE_48000 = 6, 7
PCM_RATES = {"1.3": (1 << len(RATE_HZ_1_3)) - 1, "1.4": (1 << len(RATE_HZ_1_4)) - 1}
DIRECTIONS = frozenset({D_OUTPUT, D_INPUT})
CHMAP_POSITIONS = 37  # NONE .. BRC
CHMAP_FL, CHMAP_FR, CHMAP_MONO = 3, 4, 2
CTL_ROLES = frozenset({0} | {r << 1 | d for r in (1, 2, 3) for d in (D_OUTPUT, D_INPUT)})
CTL_TYPE_COUNT_MAX = {0: 128, 1: 128, 2: 64, 3: 128, 4: 512, 5: 1}  # BOOLEAN .. IEC958
CTL_TYPE_ENUMERATED = 3
CTL_ACCESS_READ, CTL_ACCESS_WRITE = 0, 1
CTL_ACCESS_TLV_READ, CTL_ACCESS_TLV_WRITE, CTL_ACCESS_TLV_COMMAND = 4, 5, 6
CTL_ACCESS = (1 << 7) - 1
CTL_EVT_MASKS = (1 << 3) - 1  # VALUE, INFO, TLV


def bits_outside(value: int, defined: int) -> int:
    return value & ~defined


# --- decoded values ------------------------------------------------------------------------


_P = TypeVar("_P", bound="_Packed")


class _Packed:
    """A record laid out as one struct, its attrs fields in the struct's order: the
    information structures are all "fixed fields, then padding", so one codec serves."""

    STRUCT: ClassVar[struct.Struct]

    def encode(self) -> bytes:
        # every subclass is an attrs class; the base cannot say so to a type checker
        return self.STRUCT.pack(*attrs.astuple(cast(Any, self)))

    @classmethod
    def decode(cls: type[_P], raw: bytes) -> _P:
        return cls(*cls.STRUCT.unpack_from(raw))


@attrs.frozen
class PcmInfo(_Packed):
    """One virtio_snd_pcm_info, decoded (what a stream advertises)."""

    STRUCT: ClassVar[struct.Struct] = PCM_INFO
    hda_fn_nid: int
    features: int
    formats: int
    rates: int
    direction: int
    channels_min: int
    channels_max: int
    padding: bytes = bytes(5)


@attrs.frozen
class JackInfo(_Packed):
    """One virtio_snd_jack_info (§5.14.6.4.1)."""

    STRUCT: ClassVar[struct.Struct] = JACK_INFO
    hda_fn_nid: int
    features: int
    hda_reg_defconf: int
    hda_reg_caps: int
    connected: int
    padding: bytes = bytes(7)


@attrs.frozen
class ChmapInfo(_Packed):
    """One virtio_snd_chmap_info (§5.14.6.9.1)."""

    STRUCT: ClassVar[struct.Struct] = CHMAP_INFO
    hda_fn_nid: int
    direction: int
    channels: int
    positions: bytes = bytes(CHMAP_MAX_SIZE)


@attrs.frozen
class CtlInfo(_Packed):
    """One virtio_snd_ctl_info (§5.14.6.10.1); ``value`` is the raw 24-byte union."""

    STRUCT: ClassVar[struct.Struct] = CTL_INFO
    hda_fn_nid: int
    role: int
    type: int
    access: int
    count: int
    index: int
    name: bytes
    value: bytes = bytes(24)

    @property
    def enum_items(self) -> int:
        return struct.unpack_from("<I", self.value)[0] if self.type == CTL_TYPE_ENUMERATED else 0


@attrs.frozen
class Params:
    """One VIRTIO_SND_R_PCM_SET_PARAMS request's parameters."""

    buffer_bytes: int
    period_bytes: int
    features: int = 0
    channels: int = 2
    format: int = FMT_S16
    rate: int = RATE_48000
    padding: int = 0

    @property
    def frame_bytes(self) -> int:
        """Bytes per interleaved frame (0 for a format this spec does not define)."""
        bits = FORMAT_BITS[self.format] if self.format < len(FORMAT_BITS) else 0
        return bits * self.channels // 8


@attrs.frozen
class Request:
    """A decoded control request: ``code``, the id it names and its own fields.

    ``item`` is the stream/jack/control id of item requests (``-1`` when the request is too
    short to carry one); info queries carry ``start_id``, ``count`` and ``size``.
    """

    code: int
    item: int = -1
    start_id: int = 0
    count: int = 0
    size: int = 0
    params: Params | None = None
    raw: bytes = b""


def encode_query(code: int, start_id: int, count: int, size: int) -> bytes:
    return QUERY_INFO.pack(code, start_id, count, size)


def encode_pcm(code: int, stream: int) -> bytes:
    return ITEM_HDR.pack(code, stream)


def encode_set_params(stream: int, p: Params) -> bytes:
    return SET_PARAMS.pack(R_PCM_SET_PARAMS, stream, p.buffer_bytes, p.period_bytes,
                           p.features, p.channels, p.format, p.rate, p.padding)


def encode_jack_remap(jack: int, association: int, sequence: int) -> bytes:
    return JACK_REMAP.pack(R_JACK_REMAP, jack, association, sequence)


def decode_request(raw: bytes) -> Request:
    """Decode a controlq request's readable part; a short one keeps only what it carries."""
    if len(raw) < HDR.size:
        return Request(-1, raw=raw)
    code = HDR.unpack_from(raw)[0]
    if code in INFO_REQUESTS and len(raw) >= QUERY_INFO.size:
        _, start, count, size = QUERY_INFO.unpack_from(raw)
        return Request(code, start, start, count, size, raw=raw)
    if code == R_PCM_SET_PARAMS and len(raw) >= SET_PARAMS.size:
        _, sid, buf, per, feat, ch, fmt, rate, pad = SET_PARAMS.unpack_from(raw)
        return Request(code, sid, params=Params(buf, per, feat, ch, fmt, rate, pad), raw=raw)
    if code == R_PCM_SET_PARAMS or code in INFO_REQUESTS:
        return Request(code, raw=raw)  # too short for its structure
    if len(raw) >= ITEM_HDR.size:
        return Request(code, ITEM_HDR.unpack_from(raw)[1], raw=raw)
    return Request(code, raw=raw)


def response_size(req: Request) -> int:
    """The writable bytes a conforming driver provides for ``req``'s response (§5.14.6.2 for
    info queries; a bare header otherwise, a ctl READ adds its value)."""
    if req.code in INFO_REQUESTS:
        return HDR.size + req.count * req.size
    if req.code == R_CTL_READ:
        return HDR.size + CTL_VALUE_SIZE
    return HDR.size


def info_size(code: int) -> int:
    """sizeof the information structure an info query returns (our structs, §5.14.6.x)."""
    return {R_JACK_INFO: JACK_INFO.size, R_PCM_INFO: PCM_INFO.size,
            R_CHMAP_INFO: CHMAP_INFO.size, R_CTL_INFO: CTL_INFO.size}[code]


# --- the PCM lifecycle (§5.14.6.6.1) -------------------------------------------------------


class StreamState(Enum):
    """Where a stream is in the lifecycle: named after the last command that succeeded."""

    INITIAL = "initial"  # no SET_PARAMS has succeeded yet (our reading, module docstring)
    PARAMS_SET = "set-params"
    PREPARED = "prepared"
    STARTED = "started"
    STOPPED = "stopped"
    RELEASED = "released"


# §5.14.6.6.1: after each command, the commands the lifecycle lists as valid next
VALID_NEXT: Mapping[StreamState, frozenset[int]] = {
    StreamState.INITIAL: frozenset({R_PCM_SET_PARAMS}),
    StreamState.PARAMS_SET: frozenset({R_PCM_SET_PARAMS, R_PCM_PREPARE}),
    StreamState.PREPARED: frozenset({R_PCM_SET_PARAMS, R_PCM_PREPARE, R_PCM_START,
                                     R_PCM_RELEASE}),
    StreamState.STARTED: frozenset({R_PCM_STOP}),
    StreamState.STOPPED: frozenset({R_PCM_START, R_PCM_RELEASE}),
    StreamState.RELEASED: frozenset({R_PCM_SET_PARAMS, R_PCM_PREPARE}),
}
AFTER: Mapping[int, StreamState] = {
    R_PCM_SET_PARAMS: StreamState.PARAMS_SET,
    R_PCM_PREPARE: StreamState.PREPARED,
    R_PCM_START: StreamState.STARTED,
    R_PCM_STOP: StreamState.STOPPED,
    R_PCM_RELEASE: StreamState.RELEASED,
}
# States in which the device may complete an I/O message OK: output frames may be
# pre-buffered after PREPARE, frames flow after START, and messages still pending at STOP or
# RELEASE end the stream (a short rx message is allowed only then, §5.14.6.8.2.1).
IO_STATES = frozenset({StreamState.PREPARED, StreamState.STARTED, StreamState.STOPPED})
# States in which a driver may post I/O messages: pre-buffering (tx) and populating (rx,
# §5.14.6.8.2.2) after PREPARE, transfers after START (§5.14.6.6.1's items 3 and 5).
DRIVER_IO_STATES = frozenset({StreamState.PREPARED, StreamState.STARTED})


def transition(state: StreamState, code: int) -> Mapping[int, StreamState]:
    """Every status a device may answer a lifecycle command with, and the state after it.

    A valid transition may succeed (OK: the command's state) or fail with any error (state
    unchanged: the device may lack resources, or find the parameters unsupported).  A
    command that is no valid transition from ``state`` must not succeed: any error, state
    unchanged.
    """
    errors = dict.fromkeys(sorted(ERRORS), state)
    if code in VALID_NEXT[state]:
        return {S_OK: AFTER[code], **errors}
    return errors


def reachable_states() -> frozenset[StreamState]:
    """Every state OK answers can reach from INITIAL (all of them: the lifecycle is live)."""
    seen, todo = {StreamState.INITIAL}, [StreamState.INITIAL]
    while todo:
        s = todo.pop()
        for code in PCM_LIFECYCLE:
            nxt = transition(s, code).get(S_OK)
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


# --- the device model the judges run on ------------------------------------------------------


@attrs.frozen
class Snd:
    """What the judge knows of a sound device: its config, negotiated features, what its
    info answers taught (``None`` = not yet learned), and each stream's lifecycle state.

    ``params`` holds each stream's last accepted parameters; ``version`` picks the rate
    table (1.4 defines two more rates than 1.3).
    """

    jacks: int
    streams: int
    chmaps: int
    controls: int = 0
    features: int = 0
    pcm_info: tuple[PcmInfo | None, ...] = ()
    ctl_info: tuple[CtlInfo | None, ...] = ()
    states: tuple[StreamState, ...] = ()
    params: tuple[Params | None, ...] = ()
    version: str = "1.3"

    @classmethod
    def from_config(cls, cfg: Mapping[str, int | bytes], features: int,
                    version: str = "1.3") -> Snd:
        n = int(cfg["streams"])
        ctls = int(cfg.get("controls", 0)) if features >> F_CTLS & 1 else 0
        return cls(int(cfg["jacks"]), n, int(cfg["chmaps"]), ctls, features,
                   (None,) * n, (None,) * ctls, (StreamState.INITIAL,) * n, (None,) * n,
                   version)

    def state(self, stream: int) -> StreamState:
        return self.states[stream]

    def with_stream(self, stream: int, state: StreamState,
                    params: Params | None = None) -> Snd:
        st = list(self.states)
        st[stream] = state
        ps = list(self.params)
        if params is not None:
            ps[stream] = params
        return attrs.evolve(self, states=tuple(st), params=tuple(ps))

    def count(self, code: int) -> int:
        return {R_JACK_INFO: self.jacks, R_PCM_INFO: self.streams, R_CHMAP_INFO: self.chmaps,
                R_CTL_INFO: self.controls}[code]


@attrs.frozen
class Judgement:
    """The rules one observation gave occasion to judge, and those it broke."""

    judged: frozenset[str]
    violations: tuple[Violation, ...]
    after: Snd | None = None  # the model after the observation (None: not a control answer)
    warnings: tuple[Violation, ...] = ()  # SHOULD-level

    @property
    def ok(self) -> bool:
        return not self.violations


class _Acc:
    """Collects judged rule ids and violations while a judge runs."""

    def __init__(self) -> None:
        self.judged: set[str] = set()
        self.out: list[Violation] = []
        self.warn: list[Violation] = []

    def rule(self, rid: str, broken: bool, side: str, detail: str, should: bool = False) -> None:
        self.judged.add(rid)
        if broken:
            (self.warn if should else self.out).append(Violation(rid, side, detail))

    def done(self, after: Snd | None = None) -> Judgement:
        return Judgement(frozenset(self.judged), tuple(self.out), after, tuple(self.warn))


# --- device side: information structures ----------------------------------------------------

DEV = "device"
DRV = "driver"


def check_jack_info(raw: bytes) -> Judgement:
    """§5.14.6.4.1.1: only defined jack feature bits; padding zero."""
    a, info = _Acc(), JackInfo.decode(raw)
    a.rule("VIRTIO-5.14.6.4.1.1-DEV-JACK-FEATURES", bits_outside(info.features, JACK_FEATURES)
           != 0, DEV, f"features {info.features:#x}")
    a.rule("VIRTIO-5.14.6.4.1.1-DEV-JACK-PADDING", info.padding != bytes(7), DEV,
           f"padding {info.padding.hex()}")
    return a.done()


def check_pcm_info(raw: bytes, version: str = "1.3") -> Judgement:
    """§5.14.6.6.2.1: only defined feature, format, rate and direction values; padding 0."""
    a, info = _Acc(), PcmInfo.decode(raw)
    undefined = (bits_outside(info.features, PCM_FEATURES)
                 or bits_outside(info.formats, PCM_FORMATS)
                 or bits_outside(info.rates, PCM_RATES[version])
                 or info.direction not in DIRECTIONS)
    a.rule("VIRTIO-5.14.6.6.2.1-DEV-PCM-DEFINED", bool(undefined), DEV, repr(info))
    a.rule("VIRTIO-5.14.6.6.2.1-DEV-PCM-PADDING", info.padding != bytes(5), DEV,
           f"padding {info.padding.hex()}")
    return a.done()


def check_chmap_info(raw: bytes) -> Judgement:
    """§5.14.6.9.1.1: a defined direction; at most CHMAP_MAX_SIZE channels."""
    a, info = _Acc(), ChmapInfo.decode(raw)
    a.rule("VIRTIO-5.14.6.9.1.1-DEV-CHMAP-DIRECTION", info.direction not in DIRECTIONS, DEV,
           f"direction {info.direction}")
    a.rule("VIRTIO-5.14.6.9.1.1-DEV-CHMAP-CHANNELS", info.channels > CHMAP_MAX_SIZE, DEV,
           f"channels {info.channels}")
    return a.done()


def _c_string_ok(field: bytes) -> bool:
    """A non-empty, NUL-terminated ASCII string inside ``field``."""
    end = field.find(b"\0")
    return end > 0 and field[:end].isascii()


def check_ctl_infos(raws: Sequence[bytes]) -> Judgement:
    """§5.14.6.10.1.1 over a set of control element infos: defined role/type/access, a
    count in 1..the type's maximum, a proper name, (name, index) unique."""
    a, seen = _Acc(), set()
    for i, raw in enumerate(raws):
        info = CtlInfo.decode(raw)
        a.rule("VIRTIO-5.14.6.10.1.1-DEV-CTL-DEFINED",
               info.role not in CTL_ROLES or info.type not in CTL_TYPE_COUNT_MAX
               or bits_outside(info.access, CTL_ACCESS) != 0, DEV,
               f"control {i}: role {info.role} type {info.type} access {info.access:#x}")
        limit = CTL_TYPE_COUNT_MAX.get(info.type, 0)
        a.rule("VIRTIO-5.14.6.10.1.1-DEV-CTL-COUNT",
               info.type in CTL_TYPE_COUNT_MAX and not 1 <= info.count <= limit, DEV,
               f"control {i}: count {info.count} for type {info.type}")
        a.rule("VIRTIO-5.14.6.10.1.1-DEV-CTL-NAMES", not _c_string_ok(info.name), DEV,
               f"control {i}: name {info.name!r}")
        key = (info.name.split(b"\0")[0], info.index)
        a.rule("VIRTIO-5.14.6.10.1.1-DEV-CTL-UNIQUE", key in seen, DEV,
               f"control {i}: {key} repeated")
        seen.add(key)
    return a.done()


def check_enum_items(raw: bytes, items: int) -> Judgement:
    """§5.14.6.10.1.1: each ENUM_ITEMS entry is a non-empty NUL-terminated ASCII string."""
    a = _Acc()
    for i in range(items):
        item = raw[i * CTL_ENUM_ITEM:(i + 1) * CTL_ENUM_ITEM]
        a.rule("VIRTIO-5.14.6.10.1.1-DEV-CTL-NAMES", not _c_string_ok(item), DEV,
               f"item {i}: {item!r}")
    return a.done()


def check_tlv_read(writable: int, tlv_length: int, status: int, used: int) -> Judgement:
    """§5.14.6.10.3.1 (SHOULD): a TLV read into too small a value field still succeeds, with
    as much as fits (the header, a TLV header and ``writable`` minus those of value)."""
    a = _Acc()
    room = writable - HDR.size - CTL_TLV.size
    short = 0 <= room < tlv_length
    a.rule("VIRTIO-5.14.6.10.3.1-DEV-TLV-PARTIAL", short and (status != S_OK or used < writable),
           DEV, f"room {room} for {tlv_length}: status {status:#x} used {used}", should=True)
    return a.done()


# --- device side: control answers ------------------------------------------------------------


def judge_control(snd: Snd, raw: bytes, resp: bytes, in_len: int | None = None) -> Judgement:
    """Judge one controlq answer ``resp`` (the bytes within the used length) to ``raw``.

    Evaluates: a defined status code; OK only for an item that exists; the PCM lifecycle;
    set-params OK only for advertised parameters; an OK info answer's size and the item
    rules of each structure it carries.  Returns the model after the answer (``after``),
    learning PCM and control infos from OK info answers.
    """
    a = _Acc()
    req = decode_request(raw)
    if len(resp) < HDR.size:
        a.rule("PVSPEC-SND-RESPONSE-HEADER", True, DEV, f"{len(resp)} bytes used")
        return a.done(snd)
    status = HDR.unpack_from(resp)[0]
    a.rule("PVSPEC-SND-STATUS-CODE", status not in STATUSES, DEV, f"status {status:#x}")
    ok = status == S_OK
    if req.code not in REQUESTS or (req.code in CTL_REQUESTS and not snd.features >> F_CTLS & 1):
        a.rule("PVSPEC-SND-UNKNOWN-REQUEST", ok, DEV, f"code {req.code:#x} answered OK")
        return a.done(snd)
    if req.code in INFO_REQUESTS:
        return _judge_info(snd, req, resp, ok, a, in_len)
    total = {R_JACK_REMAP: snd.jacks, R_PCM_SET_PARAMS: snd.streams, R_PCM_PREPARE: snd.streams,
             R_PCM_RELEASE: snd.streams, R_PCM_START: snd.streams, R_PCM_STOP: snd.streams,
             }.get(req.code, snd.controls)
    if req.item < 0 or req.item >= total:
        a.rule("PVSPEC-SND-ITEM-RANGE", ok, DEV, f"code {req.code:#x} id {req.item} of {total}")
        return a.done(snd)
    if req.code == R_CTL_ENUM_ITEMS and ok:
        ctl = snd.ctl_info[req.item] if req.item < len(snd.ctl_info) else None
        n = ctl.enum_items if ctl is not None else 0
        if len(resp) >= HDR.size + n * CTL_ENUM_ITEM:
            _merge(a, check_enum_items(resp[HDR.size:], n))
    if req.code not in PCM_LIFECYCLE:
        return a.done(snd)  # jack remap and control element values: any status
    state = snd.state(req.item)
    outcomes = transition(state, req.code)
    a.rule("PVSPEC-SND-PCM-LIFECYCLE", ok and S_OK not in outcomes, DEV,
           f"{_name(req.code)} answered OK in state {state.value}")
    after = snd
    if req.code == R_PCM_SET_PARAMS and req.params is not None:
        info = snd.pcm_info[req.item] if req.item < len(snd.pcm_info) else None
        if info is not None:
            why = params_unsupported(info, req.params, snd.version)
            a.rule("PVSPEC-SND-PARAMS-SUPPORTED", ok and bool(why), DEV,
                   f"stream {req.item}: {why}")
    if ok and S_OK in outcomes:
        after = snd.with_stream(req.item, outcomes[S_OK],
                                req.params if req.code == R_PCM_SET_PARAMS else None)
    return a.done(after)


def _name(code: int) -> str:
    return {R_PCM_SET_PARAMS: "SET_PARAMS", R_PCM_PREPARE: "PREPARE", R_PCM_RELEASE: "RELEASE",
            R_PCM_START: "START", R_PCM_STOP: "STOP"}.get(code, hex(code))


def _judge_info(snd: Snd, req: Request, resp: bytes, ok: bool, a: _Acc,
                in_len: int | None) -> Judgement:
    """An info query's answer: OK only for an existing range, then exactly ``count``
    structures of ``size`` bytes, each judged by its own rules."""
    total = snd.count(req.code)
    if req.raw and len(req.raw) < QUERY_INFO.size:
        a.rule("PVSPEC-SND-ITEM-RANGE", ok, DEV, "short query answered OK")
        return a.done(snd)
    in_range = req.start_id + req.count <= total
    a.rule("PVSPEC-SND-ITEM-RANGE", ok and not in_range, DEV,
           f"{req.start_id}+{req.count} of {total} answered OK")
    if not ok or not in_range:
        return a.done(snd)
    want = HDR.size + req.count * req.size
    if in_len is None or in_len >= want:
        a.rule("PVSPEC-SND-INFO-ITEMS", len(resp) != want, DEV,
               f"{len(resp)} bytes used, {req.count} x {req.size} + {HDR.size} expected")
    natural = info_size(req.code)
    if len(resp) < want or req.size < natural:
        return a.done(snd)  # the items cannot be read whole: nothing more to judge
    items = [resp[HDR.size + i * req.size: HDR.size + i * req.size + natural]
             for i in range(req.count)]
    subs: list[Judgement] = []
    learned = snd
    if req.code == R_JACK_INFO:
        subs = [check_jack_info(it) for it in items]
    elif req.code == R_CHMAP_INFO:
        subs = [check_chmap_info(it) for it in items]
    elif req.code == R_PCM_INFO:
        subs = [check_pcm_info(it, snd.version) for it in items]
        infos = list(snd.pcm_info)
        for i, it in enumerate(items):
            infos[req.start_id + i] = PcmInfo.decode(it)
        learned = attrs.evolve(snd, pcm_info=tuple(infos))
    else:
        infos2 = list(snd.ctl_info)
        for i, it in enumerate(items):
            infos2[req.start_id + i] = CtlInfo.decode(it)
        learned = attrs.evolve(snd, ctl_info=tuple(infos2))
        # (name, index) must be unique over every element known so far, not one answer
        subs = [check_ctl_infos([c.encode() for c in infos2 if c is not None])]
    for sub in subs:
        _merge(a, sub)
    return a.done(learned)


def _merge(a: _Acc, sub: Judgement) -> None:
    a.judged |= sub.judged
    a.out += sub.violations
    a.warn += sub.warnings


def params_unsupported(info: PcmInfo, p: Params, version: str = "1.3") -> str:
    """Why ``p`` is not something ``info`` advertises ("" when it is): format, rate,
    feature bits and channel count within what the stream reported."""
    if not _has(info.formats, p.format):
        return f"format {p.format} not in {info.formats:#x}"
    if not _has(info.rates, p.rate):
        return f"rate {p.rate} not in {info.rates:#x}"
    if bits_outside(p.features, info.features):
        return f"features {p.features:#x} beyond {info.features:#x}"
    if not info.channels_min <= p.channels <= info.channels_max:
        return f"channels {p.channels} outside {info.channels_min}..{info.channels_max}"
    if p.period_bytes == 0 or p.buffer_bytes % p.period_bytes:
        return f"period {p.period_bytes} does not divide buffer {p.buffer_bytes}"
    if p.features >> PCM_F_SHMEM_HOST & 1 or p.features >> PCM_F_SHMEM_GUEST & 1:
        return "a shared-memory placeholder bit selected"
    del version  # both rate tables agree on every index they share
    return ""


def _has(mask: int, index: int) -> bool:
    return index < 64 and bool(mask >> index & 1)


def check_intermediate_buffer(p: Params, hw_bytes: int | None) -> Judgement:
    """§5.14.6.6.3.1: a device with an intermediate buffer holds at least buffer_bytes."""
    a = _Acc()
    if hw_bytes is not None:
        a.rule("VIRTIO-5.14.6.6.3.1-DEV-BUFFER-SIZE", hw_bytes < p.buffer_bytes, DEV,
               f"intermediate buffer {hw_bytes} < buffer_bytes {p.buffer_bytes}")
    return a.done()


# --- device side: events and I/O --------------------------------------------------------------


def judge_event(snd: Snd, raw: bytes) -> Judgement:
    """An eventq buffer the device filled: a defined event naming an existing item; XRUN
    and PERIOD_ELAPSED only for a stream whose parameters selected them; control
    notifications only with CTLS, with a defined mask (§5.14.6.10.4.1)."""
    a = _Acc()
    if len(raw) < EVENT.size:
        a.rule("PVSPEC-SND-EVENT", True, DEV, f"{len(raw)}-byte event")
        return a.done()
    code, data = EVENT.unpack_from(raw)
    if code in (EVT_JACK_CONNECTED, EVT_JACK_DISCONNECTED):
        a.rule("PVSPEC-SND-EVENT", data >= snd.jacks, DEV, f"jack {data} of {snd.jacks}")
    elif code in (EVT_PCM_PERIOD_ELAPSED, EVT_PCM_XRUN):
        bit = PCM_F_EVT_XRUNS if code == EVT_PCM_XRUN else PCM_F_EVT_SHMEM_PERIODS
        p = snd.params[data] if data < snd.streams else None
        a.rule("PVSPEC-SND-EVENT", p is None or not p.features >> bit & 1, DEV,
               f"event {code:#x} for stream {data} that did not select it")
    elif code == EVT_CTL_NOTIFY and snd.features >> F_CTLS & 1:
        _, cid, mask = CTL_EVENT.unpack_from(raw)
        a.rule("PVSPEC-SND-EVENT", cid >= snd.controls, DEV, f"control {cid}")
        a.rule("VIRTIO-5.14.6.10.4.1-DEV-CTL-MASK", bits_outside(mask, CTL_EVT_MASKS) != 0,
               DEV, f"mask {mask:#x}")
    else:
        a.rule("PVSPEC-SND-EVENT", True, DEV, f"event code {code:#x}")
    return a.done()


@attrs.frozen
class IoDone:
    """One completed I/O message as the driver sees it: the status trailer and the used
    length (frames written plus the 8-byte status, §5.14.6.8.2)."""

    status: int
    latency_bytes: int
    used_len: int


def judge_io(snd: Snd, queue: int, stream: int, in_len: int,
             done: IoDone, taken: bytes | None = None, payload: bytes | None = None,
             stream_ended: bool = False) -> Judgement:
    """Judge one completed tx/rx message for ``stream`` (its xfer header's id).

    ``in_len`` is the message's writable bytes (rx: room for frames plus the status).  For
    tx, ``taken`` is what the device held of the message's frames when it completed it (its
    sink from the message's stream offset on): §5.14.6.8.1.1 wants all of ``payload``.
    For rx, a message may complete short only at the end of the stream (``stream_ended``:
    a STOP or RELEASE came first, §5.14.6.8.2.1).
    """
    a = _Acc()
    ok = done.status == S_OK
    a.rule("PVSPEC-SND-IO-STATUS", done.status not in (S_OK, S_IO_ERR), DEV,
           f"status {done.status:#x}")
    valid = 0 <= stream < snd.streams
    info = snd.pcm_info[stream] if valid and stream < len(snd.pcm_info) else None
    want_dir = D_OUTPUT if queue == TXQ else D_INPUT
    usable = valid and snd.state(stream) in IO_STATES and (info is None
                                                        or info.direction == want_dir)
    a.rule("PVSPEC-SND-IO-STREAM", ok and not usable, DEV,
           f"queue {queue} stream {stream} "
           f"{snd.state(stream).value if valid else 'absent'} answered OK")
    if queue == TXQ:
        a.rule("PVSPEC-SND-IO-USED-LEN", done.used_len != PCM_STATUS.size, DEV,
               f"tx used len {done.used_len}")
        if ok and taken is not None and payload is not None:
            a.rule("VIRTIO-5.14.6.8.1.1-DEV-TX-CONSUMED", taken[:len(payload)] != payload, DEV,
                   f"completed with {_agree(taken, payload)} of {len(payload)} bytes taken")
    else:
        room = in_len - PCM_STATUS.size
        a.rule("PVSPEC-SND-IO-USED-LEN",
               not PCM_STATUS.size <= done.used_len <= in_len, DEV,
               f"rx used len {done.used_len} of {in_len}")
        if ok:
            a.rule("VIRTIO-5.14.6.8.2.1-DEV-RX-FULL",
                   done.used_len - PCM_STATUS.size < room and not stream_ended, DEV,
                   f"{done.used_len - PCM_STATUS.size} of {room} bytes recorded")
    return a.done()


def _agree(taken: bytes, payload: bytes) -> int:
    n = 0
    for x, y in zip(taken, payload, strict=False):
        if x != y:
            break
        n += 1
    return n


def judge_release(pending_at_answer: int, pending_later: int | None = None) -> Judgement:
    """§5.14.6.6.5.1 for a RELEASE answered OK.  ``pending_at_answer``: the stream's I/O
    messages not yet completed when the answer came (the device answered too early);
    ``pending_later``: those still not completed once the device has had every chance
    (it never completed them), ``None`` when that was not observed."""
    a = _Acc()
    a.rule("VIRTIO-5.14.6.6.5.1-DEV-RELEASE-AFTER-IO", pending_at_answer > 0, DEV,
           f"{pending_at_answer} messages pending when RELEASE was answered")
    if pending_later is not None:
        a.rule("VIRTIO-5.14.6.6.5.1-DEV-RELEASE-COMPLETES-IO", pending_later > 0, DEV,
               f"{pending_later} messages of the released stream never completed")
    return a.done()


# --- driver side ---------------------------------------------------------------------------


def check_driver_config_read(offset: int, size: int, negotiated: int) -> Judgement:
    """§5.14.5.1: the controls field is read only with VIRTIO_SND_F_CTLS negotiated."""
    a = _Acc()
    f = CONFIG.field("controls")
    touches = offset < f.offset + f.size and f.offset < offset + size
    a.rule("VIRTIO-5.14.5.1-DRV-CONTROLS-READ", touches and not negotiated >> F_CTLS & 1, DRV,
           f"read {offset}+{size} without CTLS")
    return a.done()


def check_driver_event_buffer(readable: int, writable: int) -> Judgement:
    """§5.14.5.1: eventq buffers are empty, device-writable and hold a virtio_snd_event."""
    a = _Acc()
    a.rule("VIRTIO-5.14.5.1-DRV-EVENTQ-NO-READABLE", readable > 0, DRV,
           f"{readable} readable bytes")
    a.rule("VIRTIO-5.14.5.1-DRV-EVENTQ-POPULATE", writable < EVENT.size, DRV,
           f"{writable} writable bytes")
    return a.done()


def check_driver_eventq_populated(buffers_at_driver_ok: int) -> Judgement:
    """§5.14.5.1: the driver has put buffers in the event queue when it starts the device."""
    a = _Acc()
    a.rule("VIRTIO-5.14.5.1-DRV-EVENTQ-POPULATE", buffers_at_driver_ok == 0, DRV,
           "no eventq buffer")
    return a.done()


def check_driver_control(snd: Snd, raw: bytes, writable: int) -> Judgement:
    """What a driver sends on controlq: info ranges and response buffers (§5.14.6.2), ids in
    range, set-params (§5.14.6.6.3, §5.14.6.6.3.2), control element access rights and TLV
    sizes (§5.14.6.10.2.1, §5.14.6.10.3.2)."""
    a = _Acc()
    req = decode_request(raw)
    if req.code in INFO_REQUESTS and len(raw) >= QUERY_INFO.size:
        total = snd.count(req.code)
        a.rule("VIRTIO-5.14.6.2-DRV-INFO-RANGE", req.start_id + req.count > total, DRV,
               f"{req.start_id}+{req.count} of {total}")
        a.rule("VIRTIO-5.14.6.2-DRV-INFO-BUFFER", writable < response_size(req), DRV,
               f"{writable} writable for {req.count} x {req.size}")
        return a.done()
    if req.code in PCM_LIFECYCLE or req.code == R_JACK_REMAP:
        total = snd.jacks if req.code == R_JACK_REMAP else snd.streams
        a.rule("PVSPEC-SND-DRV-ITEM-RANGE", not 0 <= req.item < total, DRV,
               f"id {req.item} of {total}")
    if req.params is not None and 0 <= req.item < snd.streams:
        info = snd.pcm_info[req.item] if req.item < len(snd.pcm_info) else None
        _merge(a, check_driver_set_params(req.params, info, snd.version))
    if req.code in CTL_REQUESTS and 0 <= req.item < len(snd.ctl_info):
        info2 = snd.ctl_info[req.item]
        if info2 is not None:
            _merge(a, check_driver_ctl_request(info2, req.code, raw[ITEM_HDR.size:]))
    return a.done()


def check_driver_set_params(p: Params, info: PcmInfo | None, version: str = "1.3") -> Judgement:
    """§5.14.6.6.3 and §5.14.6.6.3.2: what a set-params request may select."""
    a = _Acc()
    a.rule("VIRTIO-5.14.6.6.3.2-DRV-PERIOD-DIVIDES",
           p.period_bytes == 0 or p.buffer_bytes % p.period_bytes != 0, DRV,
           f"period {p.period_bytes} buffer {p.buffer_bytes}")
    a.rule("VIRTIO-5.14.6.6.3.2-DRV-DEFINED",
           bits_outside(p.features, PCM_FEATURES) != 0 or p.format >= len(FORMAT_BITS)
           or p.rate >= PCM_RATES[version].bit_length(), DRV,
           f"features {p.features:#x} format {p.format} rate {p.rate}")
    host, guest = p.features >> PCM_F_SHMEM_HOST & 1, p.features >> PCM_F_SHMEM_GUEST & 1
    a.rule("VIRTIO-5.14.6.6.3-DRV-NO-SHMEM-HOST", bool(host), DRV, "SHMEM_HOST selected")
    a.rule("VIRTIO-5.14.6.6.3-DRV-NO-SHMEM-GUEST", bool(guest), DRV, "SHMEM_GUEST selected")
    a.rule("VIRTIO-5.14.6.6.3.2-DRV-NOT-BOTH-SHMEM", bool(host and guest), DRV,
           "both shared-memory bits")
    a.rule("VIRTIO-5.14.6.6.3.2-DRV-PADDING", p.padding != 0, DRV, f"padding {p.padding}")
    if info is not None:
        adv = (_has(info.formats, p.format) and _has(info.rates, p.rate)
               and not bits_outside(p.features, info.features))
        a.rule("VIRTIO-5.14.6.6.3.2-DRV-ADVERTISED", not adv, DRV,
               f"format {p.format} rate {p.rate} features {p.features:#x} vs {info!r}")
        a.rule("VIRTIO-5.14.6.6.3.2-DRV-CHANNELS",
               not info.channels_min <= p.channels <= info.channels_max, DRV,
               f"channels {p.channels} outside {info.channels_min}..{info.channels_max}")
    return a.done()


def check_driver_ctl_request(info: CtlInfo, code: int, body: bytes) -> Judgement:
    """§5.14.6.10.2.1 and §5.14.6.10.3.2: value and metadata requests only where the element
    grants the access, and no TLV value past 65536 bytes."""
    a = _Acc()
    need = {R_CTL_READ: ("VIRTIO-5.14.6.10.2.1-DRV-READ-ACCESS", CTL_ACCESS_READ),
            R_CTL_WRITE: ("VIRTIO-5.14.6.10.2.1-DRV-WRITE-ACCESS", CTL_ACCESS_WRITE),
            R_CTL_TLV_READ: ("VIRTIO-5.14.6.10.3.2-DRV-TLV-READ-ACCESS", CTL_ACCESS_TLV_READ),
            R_CTL_TLV_WRITE: ("VIRTIO-5.14.6.10.3.2-DRV-TLV-WRITE-ACCESS",
                              CTL_ACCESS_TLV_WRITE),
            R_CTL_TLV_COMMAND: ("VIRTIO-5.14.6.10.3.2-DRV-TLV-COMMAND-ACCESS",
                                CTL_ACCESS_TLV_COMMAND)}.get(code)
    if need is not None:
        a.rule(need[0], not info.access >> need[1] & 1, DRV,
               f"{code:#x} on access {info.access:#x}")
    if code in (R_CTL_TLV_WRITE, R_CTL_TLV_COMMAND) and len(body) >= CTL_TLV.size:
        length = CTL_TLV.unpack_from(body)[1]
        a.rule("VIRTIO-5.14.6.10.3.2-DRV-TLV-SIZE", length > TLV_MAX_VALUE, DRV,
               f"TLV value of {length} bytes")
    return a.done()


def check_driver_io(snd: Snd, queue: int, readable: bytes, writable: int) -> Judgement:
    """A tx/rx message as the driver posts it (§5.14.6.8.1.2, §5.14.6.8.2.2,
    §5.14.6.6.3.2's last item): buffer directions, an existing stream of the queue's
    direction, transfers only to a prepared (tx) or started (rx and tx) stream, and
    period-sized buffers (SHOULD)."""
    a = _Acc()
    if queue == TXQ:
        a.rule("VIRTIO-5.14.6.8.1.2-DRV-TX-READABLE", writable != PCM_STATUS.size, DRV,
               f"{writable} writable bytes (only the 8-byte status may be)")
    else:
        a.rule("VIRTIO-5.14.6.8.2.2-DRV-RX-WRITABLE", len(readable) != XFER.size, DRV,
               f"{len(readable)} readable bytes (only the 4-byte header may be)")
    if len(readable) < XFER.size:
        return a.done()
    stream = XFER.unpack_from(readable)[0]
    a.rule("PVSPEC-SND-DRV-ITEM-RANGE", stream >= snd.streams, DRV,
           f"stream {stream} of {snd.streams}")
    if stream >= snd.streams:
        return a.done()
    info = snd.pcm_info[stream] if stream < len(snd.pcm_info) else None
    p = snd.params[stream]
    if info is not None and p is not None and not p.features & 0b11:
        want = D_OUTPUT if queue == TXQ else D_INPUT
        a.rule("VIRTIO-5.14.6.6.3.2-DRV-USE-QUEUES", info.direction != want, DRV,
               f"stream {stream} (direction {info.direction}) on queue {queue}")
    a.rule("PVSPEC-SND-DRV-IO-STATE", snd.state(stream) not in DRIVER_IO_STATES, DRV,
           f"stream {stream} {snd.state(stream).value}")
    if p is not None:
        size = len(readable) - XFER.size if queue == TXQ else writable - PCM_STATUS.size
        rid = ("VIRTIO-5.14.6.8.1.2-DRV-TX-PERIOD" if queue == TXQ
               else "VIRTIO-5.14.6.8.2.2-DRV-RX-PERIOD")
        a.rule(rid, size != p.period_bytes, DRV, f"{size} bytes, period {p.period_bytes}",
               should=True)
    return a.done()
