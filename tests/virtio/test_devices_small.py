"""Console (§5.3), entropy (§5.4), GPU 2D (§5.7) and input (§5.8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio.devices import console as C
from spec.virtio.devices import entropy as E
from spec.virtio.devices import gpu as G
from spec.virtio.devices import input as I


def test_console_emergency_write() -> None:
    assert C.emergency_write(b"", 0x141, status=0) == b"A"
    assert C.check_emergency_write(True) is None and C.check_emergency_write(False) is not None


def test_console_buffer_directions() -> None:
    assert C.check_driver_buffer(C.queue_role(0, False)[0], True) is None
    assert C.check_driver_buffer("receiveq", False) is not None
    assert C.check_driver_buffer(C.queue_role(5, True)[0], True) is not None


def test_console_planted_double_add() -> None:
    p, v = C.device_message(C.Ports(2), 1, C.DEVICE_ADD)
    assert v is None
    assert C.device_message(p, 1, C.DEVICE_ADD)[1] is not None  # already exists
    assert C.device_message(p, 2, C.DEVICE_ADD)[1] is not None  # >= max_nr_ports
    assert C.device_message(p, 0, C.DEVICE_REMOVE)[1] is not None  # never added
    assert C.decode_control(C.encode_control(1, C.PORT_OPEN, 1)) == (1, C.PORT_OPEN, 1)


def test_console_driver_control() -> None:
    assert C.check_driver_control(True, [], []) is not None
    sent = [(0, C.DEVICE_READY, 1)]
    assert C.check_driver_control(True, sent, [(1, C.CONSOLE_PORT, 1)]) is not None
    assert (
        C.check_driver_control(True, [*sent, (1, C.PORT_OPEN, 1)], [(1, C.CONSOLE_PORT, 1)]) is None
    )


@given(st.integers(1, 4096), st.integers(0, 5000))
def test_entropy_planted_empty_answer(buf: int, used: int) -> None:
    assert (E.check_used(buf, used) is None) == (1 <= used <= buf)


def test_entropy_rules() -> None:
    assert E.check_driver_buffer(False) is not None and E.check_driver_buffer(True) is None
    assert E.driver_random_bytes(b"abcdef", 2) == b"ab"
    assert E.check_driver_consumed(6, 2, 6) is not None


def test_gpu_2d_flow() -> None:
    gpu = G.Gpu(num_scanouts=1)
    hdr = G.Hdr(G.CMD_RESOURCE_CREATE_2D)
    raw = G.encode_request(hdr, 1, 1, 64, 64)
    h, fields = G.decode_request(raw)
    gpu = G.allowed(gpu, h, fields)[G.RESP_OK_NODATA]
    assert G.RESP_ERR_INVALID_RESOURCE_ID in G.allowed(gpu, h, fields)  # duplicate id
    sc = G.Hdr(G.CMD_SET_SCANOUT)
    assert G.RESP_ERR_INVALID_SCANOUT_ID in G.allowed(gpu, sc, (0, 0, 64, 64, 3, 1))
    assert G.RESP_ERR_INVALID_PARAMETER in G.allowed(gpu, sc, (0, 0, 65, 64, 0, 1))
    assert G.RESP_OK_NODATA in G.allowed(gpu, sc, (0, 0, 64, 64, 0, 1))
    fl = G.Hdr(G.CMD_RESOURCE_FLUSH)
    assert G.check_response(gpu, fl, (0, 0, 8, 8, 1, 0), G.Hdr(G.RESP_OK_NODATA)) is None
    assert G.check_response(gpu, fl, (0, 0, 8, 8, 9, 0), G.Hdr(G.RESP_OK_NODATA)) is not None
    assert len(G.encode_display_info(G.Hdr(G.RESP_OK_DISPLAY_INFO), ())) == 24 + 16 * 24


def test_gpu_planted_fence_bug() -> None:
    req = G.Hdr(G.CMD_GET_DISPLAY_INFO, G.FLAG_FENCE, 77)
    good = G.Hdr(G.RESP_OK_DISPLAY_INFO, G.FLAG_FENCE, 77)
    assert G.check_fence(req, good, completed=True) is None
    assert G.check_fence(req, G.Hdr(G.RESP_OK_DISPLAY_INFO), completed=True) is not None
    assert G.check_fence(req, good, completed=False) is not None


def test_gpu_shm_rules() -> None:
    both = frozenset({G.CMD_RESOURCE_MAP_BLOB, G.CMD_RESOURCE_UNMAP_BLOB})
    assert G.check_shm((1,), both) is None
    assert G.check_shm((2,), both) is not None
    assert G.check_shm((1,), frozenset()) is not None


def test_input_config_answers() -> None:
    kb, touch = I.keyboard(), I.touchscreen()
    assert I.config_bytes(kb, I.CFG_ID_NAME, 0)[8 : 8 + 15] == b"pvspec keyboard"
    assert I.config_bytes(touch, I.CFG_ABS_INFO, I.ABS_X)[I.SIZE] == 20
    for dev, sel, sub in (
        (kb, I.CFG_ABS_INFO, 0),
        (kb, I.CFG_EV_BITS, I.EV_ABS),
        (touch, I.CFG_ID_NAME, 1),
        (touch, I.CFG_UNSET, 0),
    ):
        raw = I.config_bytes(dev, sel, sub)
        assert raw[I.SIZE] == 0 and I.check_config_answer(dev, sel, sub, raw) is None


def test_input_planted_nonzero_size() -> None:
    raw = bytearray(I.config_bytes(I.keyboard(), I.CFG_ABS_INFO, 0))
    raw[I.SIZE] = 20
    assert I.check_config_answer(I.keyboard(), I.CFG_ABS_INFO, 0, bytes(raw)) is not None


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(-(2**31), 2**31 - 1))
def test_input_event_roundtrip(t: int, c: int, v: int) -> None:
    assert I.decode_event(I.encode_event(t, c, v)) == (t, c, v & 0xFFFFFFFF)


def test_input_driver_rules() -> None:
    assert I.check_driver_config_writes([I.SUBSEL, I.SELECT]) is None
    assert I.check_driver_config_writes([I.SELECT]) is not None
    assert I.check_driver_config_writes([I.SELECT, I.SUBSEL, I.SIZE]) is not None
    assert I.check_driver_buffer(I.EVENTQ, 8, True) is None
    assert I.check_driver_buffer(I.EVENTQ, 8, False) is not None
    assert I.check_driver_buffer(I.STATUSQ, 4, False) is not None


def test_input_partial_drop_is_flagged() -> None:
    upd = [(I.EV_ABS, 0, 1), (I.EV_ABS, 1, 2), (I.EV_SYN, 0, 0)]
    assert I.check_event_sequences(upd, upd + upd) is None
    assert I.check_event_sequences(upd[1:], upd) is not None
