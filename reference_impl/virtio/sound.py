"""virtio-snd (VIRTIO 1.3 5.14): two jacks, one output and one input PCM stream, channel maps.

The device keeps, per stream, the lifecycle state of 5.14.6.6.1, the parameters last
accepted and an intermediate ("hardware") buffer of exactly ``buffer_bytes``.  Output
frames move from tx messages into that buffer and from it to ``played`` (the speaker) as
the device's clock runs (:meth:`SoundDevice.tick`); a tx message is returned once all its
frames are in the buffer (5.14.6.8.1.1), which happens whole-message at a time so that the
bytes the device took are exactly the returned messages, in order.  Input frames come from
``microphone(n)`` while the input stream runs and fill rx messages in order; a message is
returned full (5.14.6.8.2.1), or short when STOP or RELEASE ends the stream.  RELEASE
first returns every pending message of its stream (5.14.6.6.5.1): unplayed tx messages
with IO_ERR (their frames were never taken), rx messages OK with what they hold.

I/O completes asynchronously: :meth:`SoundDevice.post` hands the device one buffer of any
queue under a token, :meth:`SoundDevice.drain` returns what the device completed since,
in completion order (a control answer is completed at once, after any I/O it completed
first).  :meth:`SoundDevice.serve` is the synchronous :class:`~reference_impl.virtio.
device.Device` view used by ring front ends: it lets virtual time pass until the buffer
is done, or answers IO_ERR when no amount of time would complete it.

Errors: a malformed or out-of-range request is BAD_MSG, as is a lifecycle command that
is no valid transition; parameters the stream does not advertise are NOT_SUPP; unknown
requests and control elements (no VIRTIO_SND_F_CTLS offered) are NOT_SUPP.  Self-contained:
no ``spec`` import.
"""

from __future__ import annotations

import itertools
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEVICE_ID = 25  # 5 "Device Types": sound
CONTROLQ, EVENTQ, TXQ, RXQ = 0, 1, 2, 3
RING_FEATURES = sum(1 << b for b in (28, 29, 32, 35))  # no 5.14.3 bit: no control elements

R_JACK_INFO, R_JACK_REMAP = 1, 2
R_PCM_INFO, R_PCM_SET_PARAMS, R_PCM_PREPARE = 0x100, 0x101, 0x102
R_PCM_RELEASE, R_PCM_START, R_PCM_STOP = 0x103, 0x104, 0x105
R_CHMAP_INFO = 0x200
EVT_JACK_CONNECTED, EVT_JACK_DISCONNECTED, EVT_PCM_XRUN = 0x1000, 0x1001, 0x1101
S_OK, S_BAD_MSG, S_NOT_SUPP, S_IO_ERR = 0x8000, 0x8001, 0x8002, 0x8003
D_OUTPUT, D_INPUT = 0, 1
F_REMAP = 1  # jack feature bit 0
F_MSG_POLLING, F_EVT_XRUNS = 1 << 2, 1 << 4  # PCM features this device implements
FMT_U8, FMT_S16, FMT_S32 = 4, 5, 17
RATE_44100, RATE_48000 = 6, 7
FORMAT_BYTES = {FMT_U8: 1, FMT_S16: 2, FMT_S32: 4}
CHMAP_MONO, CHMAP_FL, CHMAP_FR = 2, 3, 4
MAX_BUFFER = 1 << 20  # the largest intermediate buffer the device allocates

HDR = struct.Struct("<I")
QUERY = struct.Struct("<IIII")  # code, start_id, count, size
ITEM = struct.Struct("<II")  # code, id
REMAP = struct.Struct("<IIII")  # code, jack, association, sequence
SET_PARAMS = struct.Struct("<IIIIIBBBB")
JACK_INFO = struct.Struct("<IIIIB7x")
PCM_INFO = struct.Struct("<IIQQBBB5x")
CHMAP_INFO = struct.Struct("<IBB18s")
EVENT = struct.Struct("<II")
XFER = struct.Struct("<I")
STATUS = struct.Struct("<II")  # status, latency_bytes

# 5.14.6.6.1: state -> the commands the lifecycle allows next ("initial" = never set up)
LIFECYCLE: dict[str, frozenset[int]] = {
    "initial": frozenset({R_PCM_SET_PARAMS}),
    "set-params": frozenset({R_PCM_SET_PARAMS, R_PCM_PREPARE}),
    "prepared": frozenset({R_PCM_SET_PARAMS, R_PCM_PREPARE, R_PCM_START, R_PCM_RELEASE}),
    "started": frozenset({R_PCM_STOP}),
    "stopped": frozenset({R_PCM_START, R_PCM_RELEASE}),
    "released": frozenset({R_PCM_SET_PARAMS, R_PCM_PREPARE}),
}
NEXT_STATE = {R_PCM_SET_PARAMS: "set-params", R_PCM_PREPARE: "prepared",
              R_PCM_START: "started", R_PCM_STOP: "stopped", R_PCM_RELEASE: "released"}
IO_STATES = frozenset({"prepared", "started", "stopped"})


class Refused(Exception):
    """Ends a control request with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(hex(status))
        self.status = status


@dataclass(frozen=True)
class Jack:
    hda_fn_nid: int
    defconf: int
    caps: int
    features: int = F_REMAP
    padding: bytes = bytes(7)


@dataclass(frozen=True)
class StreamInfo:
    """What a stream advertises (5.14.6.6.2): bit maps over format and rate indices."""

    hda_fn_nid: int
    direction: int
    formats: int
    rates: int
    channels_min: int
    channels_max: int
    features: int = F_MSG_POLLING | F_EVT_XRUNS


@dataclass(frozen=True)
class Params:
    buffer_bytes: int
    period_bytes: int
    features: int
    channels: int
    format: int
    rate: int


@dataclass
class Io:
    """One pending I/O message: the frames still to take (tx) or the room left (rx)."""

    token: int
    queue: int
    stream: int
    data: bytes  # tx: its frames; rx: frames recorded so far
    in_len: int


@dataclass
class Stream:
    info: StreamInfo
    state: str = "initial"
    params: Params | None = None
    hw: bytearray = field(default_factory=bytearray)  # the intermediate buffer's contents
    hw_size: int = 0
    pending: deque[Io] = field(default_factory=deque)
    taken: bytearray = field(default_factory=bytearray)  # every frame taken from tx (or rx)
    played: bytearray = field(default_factory=bytearray)  # what reached the speaker


@dataclass(frozen=True)
class Done:
    """A completed buffer: ``data`` is the image of its writable part from the first
    writable byte on (an rx status sits at ``in_len - 8``), ``used`` the used length."""

    queue: int
    token: int
    data: bytes
    used: int


def default_microphone() -> Callable[[int], bytes]:
    """A deterministic counting signal, so that recorded frames can be checked."""
    state = {"n": 0}

    def take(n: int) -> bytes:
        start = state["n"]
        state["n"] += n
        return bytes((start + i) & 0xFF for i in range(n))

    return take


class SoundDevice:
    """5.14 device semantics over byte buffers (no rings: see the module docstring)."""

    device_id = DEVICE_ID
    features = RING_FEATURES

    def __init__(self, microphone: Callable[[int], bytes] | None = None) -> None:
        self.microphone = microphone or default_microphone()
        self.jacks = [Jack(0, 0x0121_1010, 0x0000_0010),  # line out
                      Jack(0, 0x02A1_1020, 0x0000_0020, features=0)]  # mic in, fixed
        self.connected = [True, False]
        self.remaps: dict[int, tuple[int, int]] = {}
        self.streams = [
            Stream(StreamInfo(0, D_OUTPUT, 1 << FMT_S16 | 1 << FMT_S32 | 1 << FMT_U8,
                              1 << RATE_44100 | 1 << RATE_48000, 1, 2)),
            Stream(StreamInfo(0, D_INPUT, 1 << FMT_S16, 1 << RATE_48000, 1, 1)),
        ]
        self.chmaps = [(D_OUTPUT, bytes((CHMAP_FL, CHMAP_FR))), (D_INPUT, bytes((CHMAP_MONO,)))]
        self.done: list[Done] = []
        self.event_bufs: deque[tuple[int, int]] = deque()  # (token, in_len)
        self.events: deque[tuple[int, int]] = deque()  # (code, data) waiting for a buffer
        self._own_tokens = itertools.count(-1, -1)  # serve()'s tokens, apart from post()'s

    # --- config (5.14.4) ------------------------------------------------------------------

    def config(self) -> bytes:
        return struct.pack("<4I", len(self.jacks), len(self.streams), len(self.chmaps), 0)

    # --- the asynchronous interface -------------------------------------------------------

    def post(self, queue: int, token: int, out: bytes, in_len: int) -> None:
        """The driver made one buffer available on ``queue``."""
        if queue == CONTROLQ:
            resp = self.control(out)
            self.done.append(Done(CONTROLQ, token, resp[:in_len], min(len(resp), in_len)))
        elif queue == EVENTQ:
            self.event_bufs.append((token, in_len))
            self.deliver_events()
        elif queue in (TXQ, RXQ):
            self.io(queue, token, out, in_len)
        else:
            raise ValueError(f"virtio-snd has no queue {queue}")

    def drain(self) -> list[Done]:
        """Everything completed since the last drain, in completion order."""
        out, self.done = self.done, []
        return out

    def tick(self, nbytes: int) -> None:
        """Let time pass: each running stream plays or records ``nbytes``."""
        for sid, s in enumerate(self.streams):
            if s.state != "started" or s.params is None:
                continue
            if s.info.direction == D_OUTPUT:
                self.play(sid, s, nbytes)
            else:
                self.record(sid, s, nbytes)
        self.deliver_events()

    # --- the synchronous Device view ------------------------------------------------------

    def ready(self, queue: int) -> bool:
        return queue != EVENTQ or bool(self.events)

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        """Complete one buffer now, letting the device's clock run for tx/rx if need be."""
        token = next(self._own_tokens)
        self.post(queue, token, out, in_len)
        for _ in range(64):
            mine = [d for d in self.done if d.token == token]
            if mine or queue == EVENTQ:
                break
            s = self.stream_of(out)
            if s is None or s.state != "started":
                self.cancel(token, in_len)
                break
            self.tick(max(s.params.period_bytes if s.params else 1, 1))
        mine = [d for d in self.done if d.token == token]
        self.done = [d for d in self.done if d.token != token]
        return mine[0].data[: mine[0].used] if mine else b""

    def stream_of(self, out: bytes) -> Stream | None:
        if len(out) < XFER.size:
            return None
        sid = XFER.unpack_from(out)[0]
        return self.streams[sid] if sid < len(self.streams) else None

    def cancel(self, token: int, in_len: int) -> None:
        """Give a message that cannot complete back with IO_ERR (synchronous view only)."""
        for s in self.streams:
            for io in list(s.pending):
                if io.token == token:
                    s.pending.remove(io)
                    self.finish(io, S_IO_ERR, s)

    # --- control requests (5.14.6) --------------------------------------------------------

    def control(self, out: bytes) -> bytes:
        if len(out) < HDR.size:
            return HDR.pack(S_BAD_MSG)
        code = HDR.unpack_from(out)[0]
        try:
            body = self.execute(code, out)
        except Refused as e:
            return HDR.pack(e.status)
        return HDR.pack(S_OK) + body

    def execute(self, code: int, out: bytes) -> bytes:
        if code in (R_JACK_INFO, R_PCM_INFO, R_CHMAP_INFO):
            return self.query(code, out)
        if code == R_JACK_REMAP:
            if len(out) < REMAP.size:
                raise Refused(S_BAD_MSG)
            _, jack, assoc, seq = REMAP.unpack_from(out)
            if jack >= len(self.jacks):
                raise Refused(S_BAD_MSG)
            if not self.jacks[jack].features & F_REMAP:
                raise Refused(S_NOT_SUPP)
            self.remaps[jack] = (assoc, seq)
            return b""
        if code in NEXT_STATE:
            need = SET_PARAMS.size if code == R_PCM_SET_PARAMS else ITEM.size
            if len(out) < need:
                raise Refused(S_BAD_MSG)
            sid = ITEM.unpack_from(out)[1]
            s = self.stream(sid)
            if code not in LIFECYCLE[s.state]:
                raise Refused(S_BAD_MSG)
            self.command(code, sid, s, out)
            s.state = NEXT_STATE[code]
            return b""
        raise Refused(S_NOT_SUPP)  # unknown, or a control element request without CTLS

    def stream(self, sid: int) -> Stream:
        if sid >= len(self.streams):
            raise Refused(S_BAD_MSG)
        return self.streams[sid]

    def query(self, code: int, out: bytes) -> bytes:
        """An info query: ``count`` structures from ``start_id``, each padded or cut to the
        driver's ``size`` (newer drivers may know longer structures)."""
        if len(out) < QUERY.size:
            raise Refused(S_BAD_MSG)
        _, start, count, size = QUERY.unpack_from(out)
        items = self.items(code)
        if start + count > len(items) or size == 0:
            raise Refused(S_BAD_MSG)
        return b"".join(it[:size].ljust(size, b"\0") for it in self.items_for(items, start,
                                                                              count))

    def items_for(self, items: list[bytes], start: int, count: int) -> list[bytes]:
        return items[start:start + count]

    def items(self, code: int) -> list[bytes]:
        if code == R_JACK_INFO:
            return [self.jack_info(i) for i in range(len(self.jacks))]
        if code == R_PCM_INFO:
            return [PCM_INFO.pack(i.hda_fn_nid, i.features, i.formats, i.rates, i.direction,
                                  i.channels_min, i.channels_max)
                    for i in (s.info for s in self.streams)]
        return [CHMAP_INFO.pack(0, d, len(pos), pos) for d, pos in self.chmaps]

    def jack_info(self, i: int) -> bytes:
        j = self.jacks[i]
        return JACK_INFO.pack(j.hda_fn_nid, j.features, j.defconf, j.caps,
                              int(self.connected[i]))

    def command(self, code: int, sid: int, s: Stream, out: bytes) -> None:
        """The effect of a lifecycle command already found valid for ``s``'s state."""
        if code == R_PCM_SET_PARAMS:
            _, _, buf, per, feat, ch, fmt, rate, _pad = SET_PARAMS.unpack_from(out)
            p = Params(buf, per, feat, ch, fmt, rate)
            self.check_params(s.info, p)
            s.params = p
            self.forget_events(sid)
            s.hw, s.hw_size = bytearray(), self.buffer_size(p)
        elif code == R_PCM_STOP:
            self.end_of_stream(sid, s, S_OK)
        elif code == R_PCM_RELEASE:
            self.end_of_stream(sid, s, S_IO_ERR)
            s.hw = bytearray()
            self.forget_events(sid)

    def forget_events(self, sid: int) -> None:
        """Drop undelivered XRUN events of a stream whose parameters change or go: they
        would name a stream that no longer asked for them."""
        self.events = deque(e for e in self.events if not (e[0] == EVT_PCM_XRUN
                                                            and e[1] == sid))

    def buffer_size(self, p: Params) -> int:
        return p.buffer_bytes

    def check_params(self, info: StreamInfo, p: Params) -> None:
        if p.period_bytes == 0 or p.buffer_bytes % p.period_bytes:
            raise Refused(S_BAD_MSG)
        if p.features & 0b11:  # the shared-memory placeholders
            raise Refused(S_BAD_MSG)
        if not self.format_ok(info, p.format) or p.rate >= 64 or not info.rates >> p.rate & 1:
            raise Refused(S_NOT_SUPP)
        if p.features & ~info.features or not info.channels_min <= p.channels <= \
                info.channels_max or p.buffer_bytes > MAX_BUFFER:
            raise Refused(S_NOT_SUPP)

    def format_ok(self, info: StreamInfo, fmt: int) -> bool:
        return fmt < 64 and bool(info.formats >> fmt & 1)

    def end_of_stream(self, sid: int, s: Stream, tx_status: int) -> None:
        """STOP returns the rx messages (short: the stream ends); RELEASE returns every
        pending message, tx ones with ``tx_status`` as their frames were never taken."""
        keep: deque[Io] = deque()
        while s.pending:
            io = s.pending.popleft()
            if io.queue == RXQ:
                self.finish(io, S_OK, s)
            elif tx_status != S_OK:
                self.finish(io, tx_status, s)
            else:
                keep.append(io)
        s.pending = keep

    # --- I/O messages (5.14.6.8) ------------------------------------------------------------

    def io(self, queue: int, token: int, out: bytes, in_len: int) -> None:
        io = Io(token, queue, -1, out[XFER.size:] if queue == TXQ else b"", in_len)
        if len(out) < XFER.size or in_len < STATUS.size:
            self.finish(io, S_IO_ERR, None)
            return
        io.stream = sid = XFER.unpack_from(out)[0]
        want = D_OUTPUT if queue == TXQ else D_INPUT
        s = self.streams[sid] if sid < len(self.streams) else None
        if s is None or s.info.direction != want or s.state not in IO_STATES:
            self.finish(io, S_IO_ERR, s)
            return
        s.pending.append(io)
        if queue == TXQ:
            self.fill(s)

    def fill(self, s: Stream) -> None:
        """Move whole pending tx messages into the intermediate buffer while they fit."""
        while s.pending and len(s.hw) + len(s.pending[0].data) <= s.hw_size:
            io = s.pending.popleft()
            s.hw += io.data
            s.taken += io.data
            self.finish(io, S_OK, s)

    def play(self, sid: int, s: Stream, nbytes: int) -> None:
        out = bytes(s.hw[:nbytes])
        del s.hw[:nbytes]
        s.played += out
        if len(out) < nbytes:
            self.xrun(sid, s)
        self.fill(s)

    def record(self, sid: int, s: Stream, nbytes: int) -> None:
        while nbytes > 0:
            if not s.pending:
                self.microphone(nbytes)  # nowhere to put it: the frames are lost
                self.xrun(sid, s)
                return
            io = s.pending[0]
            take = min(nbytes, io.in_len - STATUS.size - len(io.data))
            frames = self.microphone(take)
            io.data += frames
            s.taken += frames
            nbytes -= take
            if len(io.data) == io.in_len - STATUS.size:
                s.pending.popleft()
                self.finish(io, S_OK, s)

    def xrun(self, sid: int, s: Stream) -> None:
        if s.params is not None and s.params.features & F_EVT_XRUNS:
            self.events.append((EVT_PCM_XRUN, sid))

    def finish(self, io: Io, status: int, s: Stream | None) -> None:
        """Complete ``io``: tx writes only the status; rx its frames, then the status at
        the end of its writable part; the used length counts frames plus status."""
        latency = len(s.hw) if s is not None and io.queue == TXQ else 0
        st = STATUS.pack(status, latency)
        if io.queue == TXQ or io.in_len < STATUS.size:
            self.done.append(Done(io.queue, io.token, st[: io.in_len], min(8, io.in_len)))
            return
        frames = io.data if status == S_OK else b""
        image = frames.ljust(io.in_len - STATUS.size, b"\0") + st
        self.done.append(Done(io.queue, io.token, image, len(frames) + STATUS.size))

    # --- events (5.14.6.5, 5.14.6.7) ------------------------------------------------------

    def plug(self, jack: int, connected: bool) -> None:
        """Something was plugged into (or pulled out of) ``jack``."""
        if self.connected[jack] != connected:
            self.connected[jack] = connected
            self.events.append((EVT_JACK_CONNECTED if connected else EVT_JACK_DISCONNECTED,
                                jack))
            self.deliver_events()

    def deliver_events(self) -> None:
        while self.events and self.event_bufs:
            token, in_len = self.event_bufs.popleft()
            if in_len < EVENT.size:  # too small to hold one: returned empty
                self.done.append(Done(EVENTQ, token, b"", 0))
                continue
            self.done.append(Done(EVENTQ, token, EVENT.pack(*self.events.popleft()),
                                  EVENT.size))

    # --- what the device holds (for tests and tools) --------------------------------------

    def taken(self, sid: int) -> bytes:
        """Every frame the stream took from tx messages (or recorded into rx ones)."""
        return bytes(self.streams[sid].taken)

    def played(self, sid: int) -> bytes:
        return bytes(self.streams[sid].played)

    def hw_buffer_size(self, sid: int) -> int | None:
        s = self.streams[sid]
        return s.hw_size if s.params is not None else None
