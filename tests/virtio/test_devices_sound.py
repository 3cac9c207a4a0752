"""virtio-snd (VIRTIO 1.3 §5.14): the spec's judges, and the reference device judged by them.

Unit tests pin each judge on good and bad values; :class:`SoundMachine` drives
:class:`reference_impl.virtio.sound.SoundDevice` through random control, tx, rx, event
and clock steps and judges every completion, in the order the device completed them,
with :mod:`spec.virtio.devices.sound`.  Planted bugs (subclasses at the end) must each be
caught, by the rule they break.
"""

from __future__ import annotations

import itertools
import struct

import attrs
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from reference_impl.virtio import sound as RS
from reference_impl.virtio.split import SplitQueue
from spec.virtio import features as F
from spec.virtio import split as sp
from spec.virtio.devices import sound as S
from spec.virtio.memory import ByteMemory
from spec.virtio.requirements_sound import IMPLIED_RULES, SECTIONS_1_4, SOUND
from spec.virtio.ring_math import RingFeatures

SS = S.StreamState
U32 = 0xFFFFFFFF
HUNT = settings(derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                report_multiple_bugs=False, deadline=None)


def ids(j: S.Judgement) -> set[str]:
    return {v.requirement for v in j.violations}


def warned(j: S.Judgement) -> set[str]:
    return {v.requirement for v in j.warnings}


# --- the registry --------------------------------------------------------------------------


def test_registry_counts_and_numbering() -> None:
    """41 statements of §5.14 (17 device, 24 driver); 1.4 numbers them the same."""
    assert len(SOUND) == 41
    dev = [r for r in SOUND if r.side == "device"]
    assert len(dev) == 17 and sum(r.level == "SHOULD" for r in dev) == 1
    assert sum(r.level == "SHOULD" for r in SOUND if r.side == "driver") == 2
    assert all(SECTIONS_1_4[r.id] == r.section and r.text.endswith(f"(1.4: §{r.section})")
               for r in SOUND)
    judged = set()
    for name in dir(S):
        if name.startswith(("check_", "judge_")):
            judged.add(name)
    assert all(c.split(":")[1] in judged for r in SOUND for c in r.checks if c.startswith(
        "spec."))
    assert all(k.startswith("PVSPEC-SND-") for k in IMPLIED_RULES)


# --- information structures ----------------------------------------------------------------


def test_info_structure_rules() -> None:
    good_jack = S.JackInfo(0, 1, 0, 0, 1).encode()
    assert S.check_jack_info(good_jack).ok
    assert ids(S.check_jack_info(S.JackInfo(0, 3, 0, 0, 1).encode())) == {
        "VIRTIO-5.14.6.4.1.1-DEV-JACK-FEATURES"}
    assert ids(S.check_jack_info(S.JackInfo(0, 1, 0, 0, 1, b"\1" + bytes(6)).encode())) == {
        "VIRTIO-5.14.6.4.1.1-DEV-JACK-PADDING"}
    pcm = S.PcmInfo(0, 0b10100, 1 << S.FMT_S16, 1 << S.RATE_48000, S.D_OUTPUT, 1, 2)
    assert S.check_pcm_info(pcm.encode()).ok
    for bad in (attrs.evolve(pcm, features=1 << 5), attrs.evolve(pcm, formats=1 << 25),
                attrs.evolve(pcm, rates=1 << 14), attrs.evolve(pcm, direction=2)):
        assert ids(S.check_pcm_info(bad.encode())) == {"VIRTIO-5.14.6.6.2.1-DEV-PCM-DEFINED"}
    assert S.check_pcm_info(attrs.evolve(pcm, rates=1 << 15).encode(), "1.4").ok  # 24 kHz
    assert ids(S.check_pcm_info(attrs.evolve(pcm, padding=b"\0\0\0\0\1").encode())) == {
        "VIRTIO-5.14.6.6.2.1-DEV-PCM-PADDING"}
    assert S.check_chmap_info(S.ChmapInfo(0, 0, 2, b"\3\4".ljust(18, b"\0")).encode()).ok
    assert ids(S.check_chmap_info(S.ChmapInfo(0, 2, 2).encode())) == {
        "VIRTIO-5.14.6.9.1.1-DEV-CHMAP-DIRECTION"}
    assert ids(S.check_chmap_info(S.ChmapInfo(0, 1, 19).encode())) == {
        "VIRTIO-5.14.6.9.1.1-DEV-CHMAP-CHANNELS"}
    vol = S.CtlInfo(0, 1 << 1 | S.D_OUTPUT, 1, 0b11, 2, 0, b"Master Volume\0".ljust(44, b"\0"))
    mute = S.CtlInfo(0, 2 << 1, 0, 0b11, 1, 0, b"Master Switch".ljust(44, b"\0"))
    assert S.check_ctl_infos([vol.encode(), mute.encode()]).ok
    for wrong, rid in (
        (attrs.evolve(vol, role=8), "DEFINED"), (attrs.evolve(vol, type=6), "DEFINED"),
        (attrs.evolve(vol, access=1 << 7), "DEFINED"), (attrs.evolve(vol, count=0), "COUNT"),
        (attrs.evolve(vol, type=5, count=2), "COUNT"), (attrs.evolve(vol, name=bytes(44)),
                                                         "NAMES"),
        (attrs.evolve(vol, name=b"x" * 44), "NAMES"), (attrs.evolve(vol, name=mute.name),
                                                      "UNIQUE"),
    ):
        assert ids(S.check_ctl_infos([mute.encode(), wrong.encode()])) == {
            f"VIRTIO-5.14.6.10.1.1-DEV-CTL-{rid}"}, (wrong, rid)
    assert S.check_ctl_infos([mute.encode(), attrs.evolve(mute, index=1).encode()]).ok
    items = b"Line".ljust(64, b"\0") + b"Mic".ljust(64, b"\0")
    assert S.check_enum_items(items, 2).ok
    assert not S.check_enum_items(items[:64] + bytes(64), 2).ok
    assert S.check_tlv_read(16, 40, S.S_OK, 16).ok
    assert warned(S.check_tlv_read(16, 40, S.S_IO_ERR, 4)) == {
        "VIRTIO-5.14.6.10.3.1-DEV-TLV-PARTIAL"}
    snd = S.Snd(1, 1, 1, 2, 1 << S.F_CTLS, states=(SS.INITIAL,), params=(None,))
    assert S.judge_event(snd, S.CTL_EVENT.pack(S.EVT_CTL_NOTIFY, 1, 0b101)).ok
    assert ids(S.judge_event(snd, S.CTL_EVENT.pack(S.EVT_CTL_NOTIFY, 1, 0b1000))) == {
        "VIRTIO-5.14.6.10.4.1-DEV-CTL-MASK"}
    assert ids(S.judge_event(snd, S.EVENT.pack(S.EVT_PCM_XRUN, 0))) == {"PVSPEC-SND-EVENT"}


def test_control_elements_through_judge_control() -> None:
    """With CTLS: CTL_INFO answers judged and learned (uniqueness across answers), enum
    items judged against the element's item count."""
    snd = S.Snd.from_config({"jacks": 0, "streams": 0, "chmaps": 0, "controls": 2},
                            1 << S.F_CTLS)
    sel = S.CtlInfo(0, 0, S.CTL_TYPE_ENUMERATED, 0b11, 1, 0, b"Input Source".ljust(44, b"\0"),
                    struct.pack("<I", 2).ljust(24, b"\0"))
    j = S.judge_control(snd, S.encode_query(S.R_CTL_INFO, 0, 1, S.CTL_INFO.size),
                        ok() + sel.encode())
    assert j.ok and j.after is not None and j.after.ctl_info[0] == sel
    again = S.judge_control(j.after, S.encode_query(S.R_CTL_INFO, 1, 1, S.CTL_INFO.size),
                            ok() + sel.encode())
    assert ids(again) == {"VIRTIO-5.14.6.10.1.1-DEV-CTL-UNIQUE"}
    items = S.ITEM_HDR.pack(S.R_CTL_ENUM_ITEMS, 0)
    good = ok() + b"Line".ljust(64, b"\0") + b"Mic".ljust(64, b"\0")
    assert S.judge_control(j.after, items, good).ok
    assert ids(S.judge_control(j.after, items, good[:68] + bytes(64))) == {
        "VIRTIO-5.14.6.10.1.1-DEV-CTL-NAMES"}
    assert ids(S.judge_control(j.after, S.ITEM_HDR.pack(S.R_CTL_READ, 2), ok())) == {
        "PVSPEC-SND-ITEM-RANGE"}


def test_intermediate_buffer_rule() -> None:
    p = S.Params(4096, 1024)
    assert S.check_intermediate_buffer(p, 4096).ok and S.check_intermediate_buffer(p, None).ok
    assert ids(S.check_intermediate_buffer(p, 1024)) == {"VIRTIO-5.14.6.6.3.1-DEV-BUFFER-SIZE"}


# --- the PCM lifecycle ---------------------------------------------------------------------


def test_lifecycle_exhaustively() -> None:
    """Every (state, command): OK exactly for the lifecycle's valid transitions, into the
    command's state; every error keeps the state.  Every state is reachable, START only
    from PREPARED or STOPPED, STOP only from STARTED, RELEASE never from STARTED; the
    reference device's table is the same reading of §5.14.6.6.1."""
    for state in SS:
        for code in S.PCM_LIFECYCLE:
            out = S.transition(state, code)
            assert (S.S_OK in out) == (code in S.VALID_NEXT[state])
            assert all(out[e] is state for e in S.ERRORS)
            if S.S_OK in out:
                assert out[S.S_OK] is S.AFTER[code]
            assert (code in RS.LIFECYCLE[state.value]) == (S.S_OK in out)
    assert S.reachable_states() == frozenset(SS)
    into = {s: {st for st in SS if S.transition(st, c).get(S.S_OK) is s}
            for c in S.PCM_LIFECYCLE for s in [S.AFTER[c]]}
    assert into[SS.STARTED] == {SS.PREPARED, SS.STOPPED}
    assert into[SS.STOPPED] == {SS.STARTED}
    assert SS.STARTED not in into[SS.RELEASED]


PCM_OUT = S.PcmInfo(0, 0b10100, 1 << S.FMT_S16, 1 << S.RATE_48000, S.D_OUTPUT, 1, 2)


def _snd(states: tuple[S.StreamState, ...] = (SS.INITIAL,) * 2,
         params: tuple[S.Params | None, ...] = (None, None)) -> S.Snd:
    """Two streams (an output, an input) whose infos are known."""
    base = S.Snd.from_config({"jacks": 2, "streams": 2, "chmaps": 2}, 0)
    return attrs.evolve(base, pcm_info=(PCM_OUT, attrs.evolve(PCM_OUT, direction=S.D_INPUT)),
                        states=states, params=params)


def ok(code: int = 0) -> bytes:
    return S.HDR.pack(S.S_OK if code == 0 else code)


def test_judge_control_rules() -> None:
    snd = _snd()
    good = S.Params(64, 16, 0, 2, S.FMT_S16, S.RATE_48000)
    j = S.judge_control(snd, S.encode_set_params(0, good), ok())
    assert j.ok and j.after is not None and j.after.state(0) is SS.PARAMS_SET
    assert j.after.params[0] == good
    # START straight from SET_PARAMS is no transition: OK is a violation, BAD_MSG is fine
    assert ids(S.judge_control(j.after, S.encode_pcm(S.R_PCM_START, 0), ok())) == {
        "PVSPEC-SND-PCM-LIFECYCLE"}
    bad = S.judge_control(j.after, S.encode_pcm(S.R_PCM_START, 0), ok(S.S_BAD_MSG))
    assert bad.ok and bad.after == j.after
    assert ids(S.judge_control(snd, S.encode_pcm(S.R_PCM_PREPARE, 2), ok())) == {
        "PVSPEC-SND-ITEM-RANGE"}
    assert ids(S.judge_control(snd, S.encode_set_params(0, attrs.evolve(good, format=S.FMT_U8)),
                               ok())) == {"PVSPEC-SND-PARAMS-SUPPORTED"}
    assert ids(S.judge_control(snd, S.encode_pcm(S.R_PCM_PREPARE, 0), ok(0x1234))) >= {
        "PVSPEC-SND-STATUS-CODE"}
    assert ids(S.judge_control(snd, S.HDR.pack(0x999), ok())) == {"PVSPEC-SND-UNKNOWN-REQUEST"}
    assert ids(S.judge_control(snd, S.encode_query(S.R_CTL_INFO, 0, 0, 96), ok())) == {
        "PVSPEC-SND-UNKNOWN-REQUEST"}  # no CTLS negotiated
    q = S.encode_query(S.R_JACK_INFO, 0, 2, S.JACK_INFO.size)
    two = ok() + S.JackInfo(0, 1, 0, 0, 1).encode() * 2
    assert S.judge_control(snd, q, two).ok
    assert ids(S.judge_control(snd, q, two[:-S.JACK_INFO.size])) == {"PVSPEC-SND-INFO-ITEMS"}
    assert ids(S.judge_control(snd, S.encode_query(S.R_JACK_INFO, 1, 2, 24), two)) == {
        "PVSPEC-SND-ITEM-RANGE"}
    assert ids(S.judge_control(snd, q, b"")) == {"PVSPEC-SND-RESPONSE-HEADER"}
    learned = S.judge_control(snd, S.encode_query(S.R_PCM_INFO, 1, 1, 32),
                              ok() + attrs.evolve(PCM_OUT, formats=1 << 4).encode())
    assert learned.after is not None and learned.after.pcm_info[1] == attrs.evolve(
        PCM_OUT, formats=1 << 4)


def test_io_rules() -> None:
    snd = _snd(states=(SS.STARTED, SS.STARTED))
    done = S.IoDone(S.S_OK, 0, 8)
    assert S.judge_io(snd, S.TXQ, 0, 8, done, b"abcd", b"abcd").ok
    assert ids(S.judge_io(snd, S.TXQ, 0, 8, done, b"ab", b"abcd")) == {
        "VIRTIO-5.14.6.8.1.1-DEV-TX-CONSUMED"}
    assert ids(S.judge_io(snd, S.TXQ, 1, 8, done)) == {"PVSPEC-SND-IO-STREAM"}  # an input
    assert ids(S.judge_io(snd, S.TXQ, 2, 8, done)) == {"PVSPEC-SND-IO-STREAM"}  # no stream
    assert ids(S.judge_io(snd, S.TXQ, 0, 8, S.IoDone(S.S_BAD_MSG, 0, 8))) == {
        "PVSPEC-SND-IO-STATUS"}
    assert S.judge_io(snd, S.RXQ, 1, 24, S.IoDone(S.S_OK, 0, 24)).ok
    assert ids(S.judge_io(snd, S.RXQ, 1, 24, S.IoDone(S.S_OK, 0, 16))) == {
        "VIRTIO-5.14.6.8.2.1-DEV-RX-FULL"}
    assert S.judge_io(snd, S.RXQ, 1, 24, S.IoDone(S.S_OK, 0, 16), stream_ended=True).ok
    assert ids(S.judge_io(snd, S.RXQ, 1, 24, S.IoDone(S.S_OK, 0, 32))) == {
        "PVSPEC-SND-IO-USED-LEN"}
    stopped = _snd(states=(SS.PARAMS_SET, SS.INITIAL))
    assert ids(S.judge_io(stopped, S.TXQ, 0, 8, done)) == {"PVSPEC-SND-IO-STREAM"}


def test_release_rules() -> None:
    assert S.judge_release(0, 0).ok
    assert ids(S.judge_release(2, 0)) == {"VIRTIO-5.14.6.6.5.1-DEV-RELEASE-AFTER-IO"}
    assert ids(S.judge_release(0, 1)) == {"VIRTIO-5.14.6.6.5.1-DEV-RELEASE-COMPLETES-IO"}
    assert S.judge_release(0).judged == {"VIRTIO-5.14.6.6.5.1-DEV-RELEASE-AFTER-IO"}


# --- driver side ---------------------------------------------------------------------------


def test_driver_rules() -> None:
    snd = _snd()
    ctls = 1 << S.F_CTLS
    assert S.check_driver_config_read(0, 12, 0).ok and S.check_driver_config_read(12, 4, ctls).ok
    assert ids(S.check_driver_config_read(8, 8, 0)) == {"VIRTIO-5.14.5.1-DRV-CONTROLS-READ"}
    assert S.check_driver_event_buffer(0, 8).ok
    assert ids(S.check_driver_event_buffer(4, 4)) == {
        "VIRTIO-5.14.5.1-DRV-EVENTQ-NO-READABLE", "VIRTIO-5.14.5.1-DRV-EVENTQ-POPULATE"}
    assert ids(S.check_driver_eventq_populated(0)) == {"VIRTIO-5.14.5.1-DRV-EVENTQ-POPULATE"}
    q = S.encode_query(S.R_PCM_INFO, 1, 2, 32)
    assert ids(S.check_driver_control(snd, q, 4 + 64)) == {"VIRTIO-5.14.6.2-DRV-INFO-RANGE"}
    q = S.encode_query(S.R_PCM_INFO, 0, 2, 32)
    assert ids(S.check_driver_control(snd, q, 4 + 63)) == {"VIRTIO-5.14.6.2-DRV-INFO-BUFFER"}
    assert ids(S.check_driver_control(snd, S.encode_pcm(S.R_PCM_START, 5), 4)) == {
        "PVSPEC-SND-DRV-ITEM-RANGE"}
    good = S.Params(64, 16, 0, 2, S.FMT_S16, S.RATE_48000)
    assert S.check_driver_control(snd, S.encode_set_params(0, good), 4).ok
    cases = {
        "PERIOD-DIVIDES": attrs.evolve(good, period_bytes=24),
        "DEFINED": attrs.evolve(good, rate=14),
        "ADVERTISED": attrs.evolve(good, format=S.FMT_U8),
        "CHANNELS": attrs.evolve(good, channels=3),
        "PADDING": attrs.evolve(good, padding=1),
    }
    for rid, p in cases.items():
        also = {"ADVERTISED"} if rid == "DEFINED" else set()  # undefined: never advertised
        assert ids(S.check_driver_set_params(p, PCM_OUT)) == {
            f"VIRTIO-5.14.6.6.3.2-DRV-{r}" for r in {rid} | also}, rid
    assert S.check_driver_set_params(attrs.evolve(good, rate=14), None, "1.4").ok
    both = attrs.evolve(good, features=0b11)
    assert ids(S.check_driver_set_params(both, None)) == {
        "VIRTIO-5.14.6.6.3-DRV-NO-SHMEM-HOST", "VIRTIO-5.14.6.6.3-DRV-NO-SHMEM-GUEST",
        "VIRTIO-5.14.6.6.3.2-DRV-NOT-BOTH-SHMEM"}
    vol = S.CtlInfo(0, 2, 1, 1 << S.CTL_ACCESS_READ, 1, 0, b"v\0".ljust(44, b"\0"))
    for code, rid in ((S.R_CTL_WRITE, "10.2.1-DRV-WRITE-ACCESS"),
                      (S.R_CTL_TLV_READ, "10.3.2-DRV-TLV-READ-ACCESS"),
                      (S.R_CTL_TLV_WRITE, "10.3.2-DRV-TLV-WRITE-ACCESS"),
                      (S.R_CTL_TLV_COMMAND, "10.3.2-DRV-TLV-COMMAND-ACCESS")):
        assert f"VIRTIO-5.14.6.{rid}" in ids(S.check_driver_ctl_request(vol, code, b""))
    assert S.check_driver_ctl_request(vol, S.R_CTL_READ, b"").ok
    assert ids(S.check_driver_ctl_request(attrs.evolve(vol, access=0), S.R_CTL_READ, b"")) == {
        "VIRTIO-5.14.6.10.2.1-DRV-READ-ACCESS"}
    big = S.CTL_TLV.pack(0, 65540)
    assert "VIRTIO-5.14.6.10.3.2-DRV-TLV-SIZE" in ids(S.check_driver_ctl_request(
        attrs.evolve(vol, access=1 << S.CTL_ACCESS_TLV_WRITE), S.R_CTL_TLV_WRITE, big))
    with_ctl = attrs.evolve(snd, controls=1, ctl_info=(vol,), features=ctls)
    raw = S.ITEM_HDR.pack(S.R_CTL_WRITE, 0)
    assert ids(S.check_driver_control(with_ctl, raw, 4)) == {
        "VIRTIO-5.14.6.10.2.1-DRV-WRITE-ACCESS"}
    # I/O messages
    run = attrs.evolve(snd, states=(SS.STARTED, SS.PREPARED), params=(good, good))
    tx = S.XFER.pack(0) + bytes(16)
    assert S.check_driver_io(run, S.TXQ, tx, 8).ok
    assert ids(S.check_driver_io(run, S.TXQ, tx, 24)) == {"VIRTIO-5.14.6.8.1.2-DRV-TX-READABLE"}
    assert warned(S.check_driver_io(run, S.TXQ, tx[:12], 8)) == {
        "VIRTIO-5.14.6.8.1.2-DRV-TX-PERIOD"}
    assert ids(S.check_driver_io(run, S.TXQ, S.XFER.pack(1) + bytes(16), 8)) == {
        "VIRTIO-5.14.6.6.3.2-DRV-USE-QUEUES"}
    assert ids(S.check_driver_io(run, S.TXQ, S.XFER.pack(2) + bytes(16), 8)) == {
        "PVSPEC-SND-DRV-ITEM-RANGE"}
    assert S.check_driver_io(run, S.RXQ, S.XFER.pack(1), 24).ok
    assert ids(S.check_driver_io(run, S.RXQ, S.XFER.pack(1) + bytes(4), 24)) == {
        "VIRTIO-5.14.6.8.2.2-DRV-RX-WRITABLE"}
    assert warned(S.check_driver_io(run, S.RXQ, S.XFER.pack(1), 20)) == {
        "VIRTIO-5.14.6.8.2.2-DRV-RX-PERIOD"}
    idle = attrs.evolve(run, states=(SS.STOPPED, SS.RELEASED))
    assert ids(S.check_driver_io(idle, S.TXQ, tx, 8)) == {"PVSPEC-SND-DRV-IO-STATE"}


# --- the reference device ------------------------------------------------------------------


def test_sound_device_offer_and_config() -> None:
    dev = RS.SoundDevice()
    assert dev.device_id == S.DEVICE_ID
    assert F.check_device_offer(S.DEVICE_ID, dev.features) is None
    assert S.CONFIG.decode(dev.config()) == {"jacks": 2, "streams": 2, "chmaps": 2,
                                             "controls": 0}


def test_synchronous_view_plays_and_records() -> None:
    """The Device view: a tx message returns OK once its frames are taken, rx full."""
    dev = RS.SoundDevice()
    p = S.Params(64, 16, 0, 2, S.FMT_S16, S.RATE_48000)
    for raw in (S.encode_set_params(0, p), S.encode_pcm(S.R_PCM_PREPARE, 0),
                S.encode_pcm(S.R_PCM_START, 0), S.encode_set_params(1, attrs.evolve(p,
                                                                                    channels=1)),
                S.encode_pcm(S.R_PCM_PREPARE, 1), S.encode_pcm(S.R_PCM_START, 1)):
        assert dev.serve(S.CONTROLQ, raw, 4) == ok(), raw
    frames = bytes(range(16))
    for _ in range(6):  # more than the buffer holds: the clock runs to make room
        status = dev.serve(S.TXQ, S.XFER.pack(0) + frames, 8)
        assert S.PCM_STATUS.unpack(status)[0] == S.S_OK
    assert dev.taken(0) == frames * 6 and dev.played(0) == frames * len(dev.played(0)[::16])
    got = dev.serve(S.RXQ, S.XFER.pack(1), 16 + 8)
    assert len(got) == 24 and S.PCM_STATUS.unpack_from(got, 16)[0] == S.S_OK
    assert got[:16] == dev.taken(1)[:16]
    assert S.PCM_STATUS.unpack(dev.serve(S.TXQ, S.XFER.pack(1) + frames, 8))[0] == S.S_IO_ERR


class RingDriver:
    """A model driver of the four sound queues over split rings in one guest memory,
    with the reference device behind :class:`reference_impl.virtio.split.SplitQueue`."""

    MEM, BUF = 0x20000, 0x10000

    def __init__(self, dev: RS.SoundDevice) -> None:
        self.dev, self.mem = dev, ByteMemory(self.MEM)
        self.drv: list[sp.SplitDriver] = []
        self.q: list[SplitQueue] = []
        for i in range(4):
            lay = sp.SplitLayout.contiguous(0x1000 * (i + 1), 8)
            self.drv.append(sp.driver_init(self.mem, lay, RingFeatures()))
            self.q.append(SplitQueue.over(self.mem.buf, 8, lay.desc, lay.avail, lay.used, 0))
        self.next = self.BUF

    def buffer(self, data: bytes, n: int = 0) -> tuple[int, int]:
        addr, self.next = self.next, self.next + max(len(data), n, 1)
        self.mem.write(addr, data.ljust(n, b"\0") if n else data)
        return addr, max(len(data), n)

    def send(self, queue: int, parts: list[bytes], writable: int) -> tuple[bytes, int]:
        """One buffer: ``parts`` readable, then ``writable`` bytes; returns the writable
        bytes after the device and the used length."""
        bufs = [(*self.buffer(p), False) for p in parts]
        w = self.buffer(b"", writable) if writable else None
        if w:
            bufs.append((*w, True))
        self.drv[queue], head = sp.driver_add(self.mem, self.drv[queue], bufs)
        self.drv[queue] = sp.driver_publish(self.mem, self.drv[queue])
        self.q[queue].process(self.dev, queue)
        self.drv[queue], used = sp.driver_collect(self.mem, self.drv[queue])
        assert [h for h, _ in used] == [head]
        length = used[0][1] or 0
        return (self.mem.read(w[0], w[1]) if w else b""), length


def test_reference_over_split_rings() -> None:
    """The Device view behind real split rings: controls, tx and rx messages in descriptor
    chains (header and frames in separate descriptors), an event; each judged, and what
    the driver sent judged by the driver checks."""
    dev = RS.SoundDevice()
    ring = RingDriver(dev)
    snd = S.Snd.from_config(S.CONFIG.decode(dev.config()), dev.features)

    def control(raw: bytes) -> int:
        nonlocal snd
        req = S.decode_request(raw)
        assert S.check_driver_control(snd, raw, S.response_size(req)).ok
        resp, used = ring.send(S.CONTROLQ, [raw[:8], raw[8:]] if len(raw) > 8 else [raw],
                               S.response_size(req))
        j = S.judge_control(snd, raw, resp[:used], S.response_size(req))
        assert j.ok and j.after is not None, j.violations
        snd = j.after
        return S.HDR.unpack_from(resp)[0]

    assert control(S.encode_query(S.R_PCM_INFO, 0, 2, S.PCM_INFO.size)) == S.S_OK
    assert control(S.encode_query(S.R_JACK_INFO, 0, 2, S.JACK_INFO.size)) == S.S_OK
    out = S.Params(64, 16, 1 << S.PCM_F_EVT_XRUNS, 2, S.FMT_S16, S.RATE_48000)
    mic = S.Params(32, 16, 0, 1, S.FMT_S16, S.RATE_48000)
    for raw in (S.encode_set_params(0, out), S.encode_pcm(S.R_PCM_PREPARE, 0),
                S.encode_pcm(S.R_PCM_START, 0), S.encode_set_params(1, mic),
                S.encode_pcm(S.R_PCM_PREPARE, 1), S.encode_pcm(S.R_PCM_START, 1)):
        assert control(raw) == S.S_OK, raw
    assert control(S.encode_pcm(S.R_PCM_START, 0)) == S.S_BAD_MSG  # already started
    for k in range(6):
        xfer, frames = S.XFER.pack(0), bytes([k]) * 16
        assert S.check_driver_io(snd, S.TXQ, xfer + frames, 8).ok
        status, used = ring.send(S.TXQ, [xfer, frames], 8)
        st_, latency = S.PCM_STATUS.unpack(status)
        done = S.IoDone(st_, latency, used)
        assert S.judge_io(snd, S.TXQ, 0, 8, done, dev.taken(0)[16 * k:], frames).ok
        assert done.status == S.S_OK
    assert dev.taken(0) == b"".join(bytes([k]) * 16 for k in range(6))
    assert S.check_driver_io(snd, S.RXQ, S.XFER.pack(1), 24).ok
    image, used = ring.send(S.RXQ, [S.XFER.pack(1)], 24)
    st_, latency = S.PCM_STATUS.unpack_from(image, 16)
    done = S.IoDone(st_, latency, used)
    assert S.judge_io(snd, S.RXQ, 1, 24, done).ok and used == 24
    assert image[:16] == dev.taken(1)[:16]
    dev.plug(1, True)
    assert S.check_driver_event_buffer(0, 8).ok
    event, used = ring.send(S.EVENTQ, [], 8)
    assert used == 8 and S.judge_event(snd, event).ok
    assert S.EVENT.unpack(event) == (S.EVT_JACK_CONNECTED, 1)


@attrs.frozen
class Posted:
    queue: int
    raw: bytes
    in_len: int
    stream: int = -1


PERIODS = st.sampled_from([8, 16, 32])


class SoundMachine(RuleBasedStateMachine):
    """Control, tx, rx, event and clock steps in any order; every completion judged."""

    factory: type[RS.SoundDevice] = RS.SoundDevice

    @initialize()
    def setup(self) -> None:
        self.dev = self.factory()
        cfg = S.CONFIG.decode(self.dev.config())
        self.model = S.Snd.from_config(cfg, self.dev.features)
        self.tokens = itertools.count()
        self.pending: dict[int, Posted] = {}
        self.tx_ok = [0] * self.model.streams  # bytes of tx messages returned OK, per stream
        for code in (S.R_PCM_INFO, S.R_JACK_INFO, S.R_CHMAP_INFO):
            n = self.model.count(code)
            self.control(S.encode_query(code, 0, n, S.info_size(code)))
        assert all(i is not None for i in self.model.pcm_info)

    # --- posting and judging --------------------------------------------------------------

    def post(self, queue: int, raw: bytes, in_len: int, ending: int = -1) -> None:
        token = next(self.tokens)
        stream = S.XFER.unpack_from(raw)[0] if queue in (S.TXQ, S.RXQ) and len(raw) >= 4 \
            else -1
        self.pending[token] = Posted(queue, raw, in_len, stream)
        self.dev.post(queue, token, raw, in_len)
        self.settle(ending)

    def control(self, raw: bytes, extra: int = 0, ending: int = -1) -> None:
        req = S.decode_request(raw)
        self.post(S.CONTROLQ, raw, S.response_size(req) + extra, ending)

    def settle(self, ending: int = -1) -> None:
        """Judge what the device completed, in its order; ``ending`` is a stream a STOP or
        RELEASE was just sent for (its rx messages may come back short)."""
        released: list[tuple[int, int]] = []
        for d in self.dev.drain():
            sent = self.pending.pop(d.token)
            assert d.used <= sent.in_len and len(d.data) <= sent.in_len
            if sent.queue == S.CONTROLQ:
                j = S.judge_control(self.model, sent.raw, d.data[:d.used], sent.in_len)
                self.check(j)
                assert j.after is not None
                self.model, req = j.after, S.decode_request(sent.raw)
                answered = S.HDR.unpack_from(d.data)[0] if d.used >= 4 else -1
                if answered == S.S_OK and req.params is not None:
                    self.check(S.check_intermediate_buffer(
                        req.params, self.dev.hw_buffer_size(req.item)))
                if answered == S.S_OK and req.code == S.R_PCM_RELEASE:
                    at = sum(1 for p in self.pending.values() if p.stream == req.item
                             and p.queue in (S.TXQ, S.RXQ))
                    released.append((req.item, at))
            elif sent.queue == S.EVENTQ:
                if d.used:
                    self.check(S.judge_event(self.model, d.data[:d.used]))
            else:
                for sid, at in released:  # an I/O completion after its RELEASE's answer
                    if sid == sent.stream:
                        self.check(S.judge_release(at))
                self.judge_io(sent, d, ending)
        for sid, at in released:
            later = sum(1 for p in self.pending.values() if p.stream == sid
                        and p.queue in (S.TXQ, S.RXQ))
            self.check(S.judge_release(at, later))

    def judge_io(self, sent: Posted, d: RS.Done, ending: int) -> None:
        status, latency = S.PCM_STATUS.unpack_from(d.data, len(d.data) - 8)
        done = S.IoDone(status, latency, d.used)
        sid = sent.stream
        if sent.queue == S.TXQ and status == S.S_OK and 0 <= sid < self.model.streams:
            payload = sent.raw[4:]
            taken = self.dev.taken(sid)[self.tx_ok[sid]:]
            self.check(S.judge_io(self.model, S.TXQ, sid, sent.in_len, done, taken, payload))
            self.tx_ok[sid] += len(payload)
        else:
            self.check(S.judge_io(self.model, sent.queue, sid, sent.in_len, done,
                                  stream_ended=sid == ending))

    @staticmethod
    def check(j: S.Judgement) -> None:
        assert j.ok, "; ".join(str(v) for v in j.violations)

    # --- rules ----------------------------------------------------------------------------

    def streams(self) -> st.SearchStrategy[int]:
        n = self.model.streams
        return st.one_of(*[st.integers(0, n - 1)] * 6, st.just(n), st.just(U32))

    @rule(data=st.data(), code=st.sampled_from(sorted(S.INFO_REQUESTS)[:3]),
          extra=st.sampled_from([0, 0, 24]), grow=st.sampled_from([0, 0, 8]))
    def info(self, data: st.DataObject, code: int, extra: int, grow: int) -> None:
        n = self.model.count(code)
        start = data.draw(st.integers(0, n + 1))
        count = data.draw(st.integers(0, n + 1))
        self.control(S.encode_query(code, start, count, S.info_size(code) + grow), extra)

    def advertised(self, data: st.DataObject, sid: int) -> S.Params:
        info = self.model.pcm_info[sid] if sid < self.model.streams else None
        period = data.draw(PERIODS)
        if info is None or data.draw(st.integers(0, 4)) == 0:  # anything at all
            return S.Params(period * data.draw(st.integers(1, 4)),
                            data.draw(st.sampled_from([period, period, 0, 12])),
                            data.draw(st.sampled_from([0, 4, 16, 3, 1 << 6])),
                            data.draw(st.integers(0, 3)), data.draw(st.integers(0, 26)),
                            data.draw(st.integers(0, 15)))
        fmts = [f for f in range(25) if info.formats >> f & 1]
        rates = [r for r in range(14) if info.rates >> r & 1]
        feats = data.draw(st.sampled_from([0, info.features & 0b10000, info.features]))
        p = S.Params(period * data.draw(st.integers(1, 4)), period, feats,
                     data.draw(st.integers(info.channels_min, info.channels_max)),
                     data.draw(st.sampled_from(fmts)), data.draw(st.sampled_from(rates)))
        off = data.draw(st.sampled_from(["", "", "", "format", "rate", "channels"]))
        if off == "format":  # one value the stream did not advertise, the rest fine
            p = attrs.evolve(p, format=data.draw(st.sampled_from(
                [f for f in range(25) if f not in fmts])))
        elif off == "rate":
            p = attrs.evolve(p, rate=data.draw(st.sampled_from(
                [r for r in range(14) if r not in rates])))
        elif off == "channels":
            p = attrs.evolve(p, channels=data.draw(st.sampled_from(
                [info.channels_min - 1, info.channels_max + 1])))
        return p

    @rule(data=st.data())
    def set_params(self, data: st.DataObject) -> None:
        sid = data.draw(self.streams())
        self.control(S.encode_set_params(sid, self.advertised(data, sid)))

    @rule(data=st.data(), code=st.sampled_from(S.PCM_LIFECYCLE[1:]))
    def pcm(self, data: st.DataObject, code: int) -> None:
        sid = data.draw(self.streams())
        ending = sid if code in (S.R_PCM_STOP, S.R_PCM_RELEASE) else -1
        self.control(S.encode_pcm(code, sid), ending=ending)

    @rule(data=st.data(), start=st.booleans())
    def bring_up(self, data: st.DataObject, start: bool) -> None:
        """SET_PARAMS, PREPARE and maybe START with advertised values: so that most runs
        have a stream moving frames."""
        sid = data.draw(st.integers(0, self.model.streams - 1), label="stream")
        info = self.model.pcm_info[sid]
        assert info is not None
        p = S.Params(0, 0)
        while S.params_unsupported(info, p):
            p = self.advertised(data, sid)
        self.control(S.encode_set_params(sid, p))
        if data.draw(st.integers(0, 3)):  # else a careless driver: START without PREPARE
            self.control(S.encode_pcm(S.R_PCM_PREPARE, sid))
        if start:
            self.control(S.encode_pcm(S.R_PCM_START, sid))

    @rule(data=st.data(), n=st.integers(1, 6), run=st.integers(0, 40))
    def burst(self, data: st.DataObject, n: int, run: int) -> None:
        """Several messages for one stream, on the queue of its direction, then maybe
        some time: fills intermediate buffers, leaves messages pending for STOP/RELEASE."""
        sid = data.draw(st.integers(0, self.model.streams - 1))
        info = self.model.pcm_info[sid]
        assert info is not None
        state = self.model.state(sid)
        if state is SS.STOPPED:
            self.control(S.encode_pcm(S.R_PCM_START, sid))
        elif state is not SS.STARTED and (state is not SS.PREPARED or data.draw(st.booleans())):
            self.bring_up(data, data.draw(st.booleans()))
        for i in range(n):
            if info.direction == S.D_OUTPUT:
                self.post(S.TXQ, S.XFER.pack(sid) + bytes([i]) * self.period(sid), 8)
            else:
                self.post(S.RXQ, S.XFER.pack(sid), self.period(sid) + 8)
        if run:
            self.tick(run)

    @rule(data=st.data(), release=st.booleans())
    def wind_down(self, data: st.DataObject, release: bool) -> None:
        """STOP a started stream and maybe RELEASE it: the end of a stream, with whatever
        messages it still has pending."""
        sid = data.draw(st.integers(0, self.model.streams - 1))
        if self.model.state(sid) is SS.STARTED:
            self.control(S.encode_pcm(S.R_PCM_STOP, sid), ending=sid)
        if release:
            self.control(S.encode_pcm(S.R_PCM_RELEASE, sid), ending=sid)

    @rule(jack=st.integers(0, 3), assoc=st.integers(0, 15))
    def remap(self, jack: int, assoc: int) -> None:
        self.control(S.encode_jack_remap(jack, assoc, 0))

    @rule(code=st.one_of(st.sampled_from([0, 3, 0x106, 0x201, 0x300, 0x8000]),
                         st.integers(0, U32)), tail=st.binary(max_size=24))
    def unknown(self, code: int, tail: bytes) -> None:
        if code not in S.REQUESTS:
            self.control(S.HDR.pack(code) + tail)

    @rule(code=st.sampled_from(sorted(S.REQUESTS - S.CTL_REQUESTS)), data=st.data())
    def short(self, code: int, data: st.DataObject) -> None:
        full = S.SET_PARAMS.pack(code, 0, 64, 16, 0, 2, S.FMT_S16, S.RATE_48000, 0)
        self.control(full[:data.draw(st.integers(0, 7))])

    def period(self, sid: int) -> int:
        p = self.model.params[sid] if 0 <= sid < self.model.streams else None
        return p.period_bytes if p is not None else 16

    @rule(data=st.data(), fill=st.integers(0, 255), odd=st.sampled_from([0, 0, 0, 4]))
    def tx(self, data: st.DataObject, fill: int, odd: int) -> None:
        sid = data.draw(self.streams())
        size = self.period(sid) - odd
        frames = bytes((fill + i) & 0xFF for i in range(size))
        self.post(S.TXQ, S.XFER.pack(sid) + frames, 8)

    @rule(data=st.data(), odd=st.sampled_from([0, 0, 0, 4]))
    def rx(self, data: st.DataObject, odd: int) -> None:
        sid = data.draw(self.streams())
        self.post(S.RXQ, S.XFER.pack(sid), self.period(sid) - odd + 8)

    @rule(n=st.sampled_from([0, 4, 8, 16, 32, 64]))
    def tick(self, n: int) -> None:
        self.dev.tick(n)
        self.settle()

    @rule(size=st.sampled_from([8, 8, 16, 4]))
    def event_buffer(self, size: int) -> None:
        self.post(S.EVENTQ, b"", size)

    @rule(jack=st.integers(0, 1), connected=st.booleans())
    def plug(self, jack: int, connected: bool) -> None:
        self.dev.plug(jack, connected)
        self.settle()

    @invariant()
    def speaker_plays_only_what_was_taken(self) -> None:
        """Output reaches the speaker only from taken frames (SET_PARAMS and RELEASE may
        drop unplayed ones, so the speaker is not always a prefix of what was taken)."""
        if hasattr(self, "dev"):
            for sid in range(self.model.streams):
                assert len(self.dev.played(sid)) <= len(self.dev.taken(sid))


TestSoundMachine = SoundMachine.TestCase
TestSoundMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# --- planted bugs --------------------------------------------------------------------------


def _item(out: bytes) -> int:
    return S.ITEM_HDR.unpack_from(out)[1] if len(out) >= 8 else -1


class StartWithoutPrepare(RS.SoundDevice):
    """Takes START straight after SET_PARAMS, as if parameters were all a stream needs."""

    def execute(self, code: int, out: bytes) -> bytes:
        sid = _item(out)
        if code == RS.R_PCM_START and 0 <= sid < len(self.streams) and \
                self.streams[sid].state == "set-params":
            self.streams[sid].state = "started"
            return b""
        return super().execute(code, out)


class StreamIdOffByOne(RS.SoundDevice):
    """Checks ``stream_id > streams`` instead of ``>=``: the id one past the end is
    answered as the last stream."""

    def stream(self, sid: int) -> RS.Stream:
        return self.streams[-1] if sid == len(self.streams) else super().stream(sid)


class JackInfoOneShort(RS.SoundDevice):
    """Answers a jack info query with one structure fewer than asked for."""

    def query(self, code: int, out: bytes) -> bytes:
        body = super().query(code, out)
        size = RS.QUERY.unpack_from(out)[3]
        return body[:-size] if code == RS.R_JACK_INFO and len(body) > size else body


class EarlyTxStatus(RS.SoundDevice):
    """Returns each tx message as soon as it arrives, taking its frames only later."""

    def __init__(self) -> None:
        super().__init__()
        self.early: set[int] = set()

    def io(self, queue: int, token: int, out: bytes, in_len: int) -> None:
        super().io(queue, token, out, in_len)
        for s in self.streams:
            for io in s.pending:
                if io.token == token and io.queue == RS.TXQ:
                    self.early.add(token)
                    super().finish(io, RS.S_OK, s)

    def finish(self, io: RS.Io, status: int, s: RS.Stream | None) -> None:
        if io.token not in self.early:
            super().finish(io, status, s)


class AnyFormat(RS.SoundDevice):
    """Never checks the sample format against what the stream advertised."""

    def format_ok(self, info: RS.StreamInfo, fmt: int) -> bool:
        return True


class ReleaseBeforeIo(RS.SoundDevice):
    """Answers RELEASE first and returns the stream's pending messages after."""

    def post(self, queue: int, token: int, out: bytes, in_len: int) -> None:
        sid = _item(out)
        if queue != RS.CONTROLQ or len(out) < 8 or RS.HDR.unpack_from(out)[0] != \
                RS.R_PCM_RELEASE or not 0 <= sid < len(self.streams):
            super().post(queue, token, out, in_len)
            return
        s = self.streams[sid]
        held, s.pending = s.pending, RS.deque()
        super().post(queue, token, out, in_len)
        s.pending = held
        if s.state == "released":
            self.end_of_stream(sid, s, RS.S_IO_ERR)


class ReleaseForgetsIo(RS.SoundDevice):
    """RELEASE frees the stream and with it the pending messages, never returned."""

    def end_of_stream(self, sid: int, s: RS.Stream, tx_status: int) -> None:
        if tx_status == RS.S_OK:
            super().end_of_stream(sid, s, tx_status)
        else:
            s.pending.clear()


class RxPartial(RS.SoundDevice):
    """Returns an rx message at every tick with whatever it has recorded so far."""

    def record(self, sid: int, s: RS.Stream, nbytes: int) -> None:
        super().record(sid, s, nbytes)
        if s.pending and s.pending[0].data:
            self.finish(s.pending.popleft(), RS.S_OK, s)


class PeriodSizedBuffer(RS.SoundDevice):
    """Allocates one period of intermediate buffer, whatever buffer_bytes asked for."""

    def buffer_size(self, p: RS.Params) -> int:
        return p.period_bytes


class XrunUnasked(RS.SoundDevice):
    """Reports every underrun and overrun, whether or not the stream enabled them."""

    def xrun(self, sid: int, s: RS.Stream) -> None:
        self.events.append((RS.EVT_PCM_XRUN, sid))


class JackFeatureGarbage(RS.SoundDevice):
    """Leaves an uninitialized bit in the jack features."""

    def jack_info(self, i: int) -> bytes:
        raw = bytearray(super().jack_info(i))
        raw[4] |= 0x80
        return bytes(raw)


PLANTED: list[tuple[type[RS.SoundDevice], str]] = [
    (StartWithoutPrepare, "PVSPEC-SND-PCM-LIFECYCLE"),
    (StreamIdOffByOne, "PVSPEC-SND-ITEM-RANGE"),
    (JackInfoOneShort, "PVSPEC-SND-INFO-ITEMS"),
    (EarlyTxStatus, "VIRTIO-5.14.6.8.1.1-DEV-TX-CONSUMED"),
    (AnyFormat, "PVSPEC-SND-PARAMS-SUPPORTED"),
    (ReleaseBeforeIo, "VIRTIO-5.14.6.6.5.1-DEV-RELEASE-AFTER-IO"),
    (ReleaseForgetsIo, "VIRTIO-5.14.6.6.5.1-DEV-RELEASE-COMPLETES-IO"),
    (RxPartial, "VIRTIO-5.14.6.8.2.1-DEV-RX-FULL"),
    (PeriodSizedBuffer, "VIRTIO-5.14.6.6.3.1-DEV-BUFFER-SIZE"),
    (XrunUnasked, "PVSPEC-SND-EVENT"),
    (JackFeatureGarbage, "VIRTIO-5.14.6.4.1.1-DEV-JACK-FEATURES"),
]


def _machine(bug: type[RS.SoundDevice]) -> type[RuleBasedStateMachine]:
    return type(f"SoundMachine_{bug.__name__}", (SoundMachine,), {"factory": bug})


@pytest.mark.parametrize(("bug", "rid"), PLANTED, ids=[b.__name__ for b, _ in PLANTED])
def test_planted_bug_caught(bug: type[RS.SoundDevice], rid: str) -> None:
    with pytest.raises(AssertionError, match=rid):
        run_state_machine_as_test(_machine(bug), settings=settings(
            HUNT, max_examples=300, stateful_step_count=40))


@given(st.binary(max_size=40), st.integers(0, 600))
def test_reference_never_crashes_on_control_bytes(raw: bytes, in_len: int) -> None:
    """Any bytes on controlq get an answer of at most ``in_len`` bytes with a defined
    status whenever the header fits."""
    out = RS.SoundDevice().serve(S.CONTROLQ, raw, in_len)
    assert len(out) <= in_len
    if len(out) >= 4:
        assert S.HDR.unpack_from(out)[0] in S.STATUSES
