"""The reference device types (net, console, entropy, input, gpu) judged by the spec's models.

Hypothesis sends valid, boundary and garbage requests to each reference device and the
answer is judged by ``spec.virtio.devices``: acks by ``allowed_acks``, receive packets by
``check_rx_packet``, entropy lengths by ``check_used``, input config by
``config_bytes``/``check_config_answer``, console control messages by
``device_message``, GPU responses by ``allowed``/``check_response`` (whose chosen outcome
then drives the spec's GPU state, compared with the device's).  Where the reference's
own design fixes one answer among those the spec allows, the test demands it too.
Planted bugs (subclasses at the end) show the same checks catch realistic defects.
"""

from __future__ import annotations

import itertools
import random
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable

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

from reference_impl.virtio import console as RC
from reference_impl.virtio import entropy as RE
from reference_impl.virtio import gpu as RG
from reference_impl.virtio import input as RI
from reference_impl.virtio import net as RN
from spec.virtio import features as F
from spec.virtio.devices import console as C
from spec.virtio.devices import entropy as E
from spec.virtio.devices import gpu as G
from spec.virtio.devices import input as I
from spec.virtio.devices import net as N

FN = N.FN
U32 = 0xFFFFFFFF
# no shrinking, fixed seed: a planted bug must be found, quickly and reproducibly
HUNT = settings(derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                report_multiple_bugs=False)


def _hunt_machine(machine: type[RuleBasedStateMachine], examples: int = 300) -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine, settings=settings(HUNT, max_examples=examples))


def _hunt(test: Callable[[], None]) -> None:
    with pytest.raises(AssertionError):
        test()


def test_reference_devices_never_import_spec() -> None:
    code = ("import sys, reference_impl.virtio as v; "
            "assert not [m for m in sys.modules if m == 'spec' or m.startswith('spec.')]")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("device", "device_id"), [
    (RN.NetDevice(), F.NET), (RC.ConsoleDevice(), F.CONSOLE), (RE.EntropyDevice(), F.ENTROPY),
    (RI.InputDevice(RI.keyboard()), F.INPUT), (RG.GpuDevice(lambda a, n: b""), F.GPU)])
def test_device_offers(device: object, device_id: int) -> None:
    """2.2.2 / 6.2: the right device id, VERSION_1, only defined bits, dependencies met."""
    assert device.device_id == device_id
    assert F.check_device_offer(device_id, device.features) is None


# --- entropy (5.4) ---------------------------------------------------------------------

BUFFER_LENGTHS = st.lists(st.one_of(
    st.integers(0, 80), st.integers(0, 1 << 17),
    st.sampled_from([1, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, U32])), max_size=6)


def check_entropy(make: Callable[[bytes], RE.EntropyDevice], seed: bytes, lengths: list[int]
                  ) -> None:
    dev, twin = make(seed), make(seed)
    assert dev.config() == b"" and dev.ready(E.REQUESTQ)
    for n in lengths:
        out = dev.serve(E.REQUESTQ, b"", n)
        if n == 0:  # no writable part: the driver broke 5.4.6.1, nothing can be written
            assert E.check_driver_buffer(False) is not None and out == b""
            continue
        assert E.check_used(n, len(out)) is None, (n, len(out))
        assert out == twin.serve(E.REQUESTQ, b"", n)  # same seed, same bytes
        if n >= 16:
            assert out[:16] != make(seed + b"x").serve(E.REQUESTQ, b"", n)[:16]


@given(st.binary(max_size=8), BUFFER_LENGTHS)
def test_entropy_used_length_and_determinism(seed: bytes, lengths: list[int]) -> None:
    check_entropy(RE.EntropyDevice, seed, lengths)


def test_entropy_requests_get_fresh_bytes() -> None:
    dev = RE.EntropyDevice(seed=7)
    assert len({dev.serve(0, b"", 32) for _ in range(50)}) == 50


# --- net (5.1) -------------------------------------------------------------------------

V1 = 1 << F.VERSION_1


def _repair(features: int) -> int:
    """Close a feature set under the spec's 5.1.3.1 table, plus CTRL_RX_EXTRA -> CTRL_RX,
    which VIRTIO 5.1.3.1 states but ``spec.virtio.features.DEPENDENCIES`` lacks."""
    if features >> FN["CTRL_RX_EXTRA"] & 1:
        features |= 1 << FN["CTRL_RX"]
    while missing := F.missing_dependencies(F.NET, features):
        features |= 1 << missing[0][1][0]
    return features


_NET_BITS = F.bits_of(RN.OFFERED & ~V1)
NET_FEATURES = st.tuples(*[st.booleans()] * len(_NET_BITS)).map(  # each bit a coin toss
    lambda on: _repair(sum(1 << b for b, o in zip(_NET_BITS, on, strict=True) if o) | V1))
BCAST, MCAST = b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x01"


def _frame(dst: bytes, vid: int | None, payload: int, src: bytes = b"\x02" * 6) -> bytes:
    tag = b"\x81\x00" + vid.to_bytes(2, "big") if vid is not None else b""
    return dst + src + tag + b"\x08\x00" + bytes(i & 0xFF for i in range(payload))


def _ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def check_tx(dev: RN.NetDevice, out: bytes) -> None:
    """TX (5.1.6.2): a frame goes on the wire iff the header keeps 5.1.6.2.1 and the frame
    fits; a requested checksum is completed; the used length is always 0."""
    neg, n = dev.negotiated, RN.hdr_len(dev.negotiated)
    sent_before = len(dev.sent)
    assert dev.serve(RN.TXQ, out, 0) == b""
    frame = out[n:]
    if len(out) < n:
        assert len(dev.sent) == sent_before
        return
    hdr = N.NetHdr.decode(out[:n].ljust(12, b"\0"))
    limit = dev.mtu + N.ETH_HLEN if F.has(neg, FN["MTU"]) else 65535 + N.ETH_HLEN
    csum = hdr.flags & N.F_NEEDS_CSUM
    ok = (N.check_tx_header(hdr, neg) is None and N.ETH_HLEN <= len(frame) <= limit
          and (not csum or hdr.csum_start + hdr.csum_offset + 2 <= len(frame)))
    assert len(dev.sent) == sent_before + ok
    if not ok:
        return
    wire = dev.sent[-1]
    assert len(wire) == len(frame)
    if not csum:
        assert wire == frame
        return
    at = hdr.csum_start + hdr.csum_offset
    assert wire[:at] == frame[:at] and wire[at + 2:] == frame[at + 2:]
    if hdr.csum_offset % 2 == 0:  # receiver's check: segment sum plus pseudo-header sum
        pseudo = int.from_bytes(frame[at:at + 2], "big")
        total = _ones_sum(wire[hdr.csum_start:]) + pseudo
        assert (total & 0xFFFF) + (total >> 16) == 0xFFFF


TX_HEADERS = st.builds(
    N.NetHdr,
    flags=st.one_of(st.sampled_from([0, 0, N.F_NEEDS_CSUM, N.F_DATA_VALID]), st.integers(0, 255)),
    gso_type=st.one_of(st.just(0), st.sampled_from([1, 3, 4, 5, 0x80, 0x81]),
                       st.integers(0, 255)),
    csum_start=st.one_of(st.integers(0, 80), st.integers(0, 0xFFFF)),
    csum_offset=st.one_of(st.sampled_from([6, 16, 7]), st.integers(0, 0xFFFF)),
    num_buffers=st.one_of(st.just(0), st.integers(0, 0xFFFF)))


@given(NET_FEATURES, st.integers(68, 200), TX_HEADERS,
       st.one_of(st.integers(0, 120), st.integers(190, 230)), st.integers(0, 12))
def test_net_tx(neg: int, mtu: int, hdr: N.NetHdr, size: int, cut: int) -> None:
    dev = RN.NetDevice(mtu=mtu, negotiated=neg)
    body = hdr.encode() + bytes((7 * i + 3) & 0xFF for i in range(size))
    check_tx(dev, body[cut:] if cut % 3 == 0 else body)


def test_net_tx_legacy_header_is_ten_bytes() -> None:
    dev = RN.NetDevice(negotiated=0)  # neither VERSION_1 nor MRG_RXBUF: 5.1.6 short header
    frame = _frame(BCAST, None, 20)
    assert dev.transmit(bytes(10) + frame) and dev.sent == [frame]
    assert dev.deliver(frame) and dev.serve(RN.RXQ, b"", 100) == bytes(10) + frame


CTRL_DATA = {  # (class, cmd) -> data of a well-formed command, and the features it needs
    (0, 0): (b"\x01", ("CTRL_RX",)), (0, 1): (b"\x00", ("CTRL_RX",)),
    (0, 4): (b"\x01", ("CTRL_RX", "CTRL_RX_EXTRA")),
    (0, 5): (b"\x00", ("CTRL_RX", "CTRL_RX_EXTRA")),
    (1, 0): (struct.pack("<I", 1) + b"\x02" * 6 + struct.pack("<I", 1) + MCAST, ("CTRL_RX",)),
    (1, 1): (b"\x52\x54\x00\xaa\xbb\xcc", ("CTRL_MAC_ADDR",)),
    (2, 0): (struct.pack("<H", 5), ("CTRL_VLAN",)), (2, 1): (struct.pack("<H", 5), ("CTRL_VLAN",)),
    (3, 0): (b"", ("GUEST_ANNOUNCE",)), (4, 0): (struct.pack("<H", 1), ("MQ",)),
}
CTRL = st.one_of(
    st.sampled_from(sorted(CTRL_DATA)).map(lambda k: (bytes(k) + CTRL_DATA[k][0], True)),
    st.tuples(st.binary(max_size=14), st.just(False)),
    st.tuples(st.integers(0, 6), st.integers(0, 6), st.binary(max_size=8)).map(
        lambda t: (bytes(t[:2]) + t[2], False)))


class NetMachine(RuleBasedStateMachine):
    """Inbound frames, receive buffers, transmits and control commands in any order."""

    factory: type[RN.NetDevice] = RN.NetDevice

    @initialize(neg=NET_FEATURES, mtu=st.one_of(st.integers(68, 120), st.just(1500)))
    def setup(self, neg: int, mtu: int) -> None:
        self.dev = self.factory(mtu=mtu, negotiated=neg)
        assert self.dev.negotiated == neg
        self.neg, self.mtu, self.mac = neg, mtu, self.dev.mac
        self.backlog: deque[bytes] = deque()

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        dst = data.draw(st.sampled_from([self.mac, BCAST, MCAST, b"\x02" + bytes(5)]))
        vid = data.draw(st.sampled_from([None, None, 5, 9]))
        edge = self.mtu  # payload == mtu is the largest frame 5.1.4.1 lets through untagged
        size = data.draw(st.one_of(st.integers(0, 60), st.sampled_from([edge, edge + 1]),
                                   st.integers(edge - 8, edge + 4)))
        frame = _frame(dst, vid, size) if data.draw(st.integers(0, 9)) else bytes(size % 14)
        if self.dev.deliver(frame):
            self.backlog.append(frame)

    @rule(in_len=st.one_of(st.just(1 << 16), st.integers(0, 200)))
    def receive(self, in_len: int) -> None:
        assert self.dev.ready(RN.RXQ) == bool(self.backlog)
        out = self.dev.serve(RN.RXQ, b"", in_len)
        if not self.backlog:
            assert out == b""
            return
        frame, n = self.backlog.popleft(), RN.hdr_len(self.neg)
        if n + len(frame) > in_len:  # does not fit one buffer without MRG_RXBUF: dropped
            assert out == b""
            return
        assert out[n:] == frame
        hdr = N.NetHdr.decode(out[:n].ljust(12, b"\0"))
        assert N.check_rx_packet(hdr, len(frame), self.mtu, F.has(self.neg, FN["MTU"])) is None
        # 5.1.6.4: no offloads done, and num_buffers 1 without MRG_RXBUF (not in the model)
        assert hdr == N.NetHdr(num_buffers=1 if n == 12 else 0)

    @rule(ctrl=CTRL, in_len=st.sampled_from([1, 1, 0, 4]))
    def control(self, ctrl: tuple[bytes, bool], in_len: int) -> None:
        out, well_formed = ctrl
        if not F.has(self.neg, FN["CTRL_VQ"]):
            assert not self.dev.ready(RN.CTRLQ)
            with pytest.raises(ValueError):
                self.dev.serve(RN.CTRLQ, out, in_len)
            return
        ack = self.dev.serve(RN.CTRLQ, out, in_len)
        if in_len == 0:
            assert ack == b""
            return
        assert len(ack) == 1
        if len(out) < 2:
            assert ack[0] == N.ERR
            return
        assert N.check_ack(self.neg, out[0], out[1], ack[0]) is None, (out, ack)
        if well_formed:  # our design: a well-formed command with its features succeeds
            needs = CTRL_DATA[(out[0], out[1])][1]
            assert ack[0] == (N.OK if all(F.has(self.neg, FN[f]) for f in needs) else N.ERR)
            if ack[0] == N.OK and out[:2] == b"\x01\x01":
                self.mac = out[2:]

    @rule(hdr=TX_HEADERS, size=st.integers(0, 130))
    def transmit(self, hdr: N.NetHdr, size: int) -> None:
        check_tx(self.dev, hdr.encode() + bytes(size))

    @rule()
    def announce(self) -> None:
        self.dev.announce()

    @invariant()
    def config_is_valid(self) -> None:
        raw = self.dev.config()
        cfg = N.CONFIG.decode(raw)
        assert N.check_config(raw, self.dev.features) is None
        assert N.check_mtu_stable(self.mtu, int(cfg["mtu"])) is None
        assert cfg["mac"] == self.mac and cfg["max_virtqueue_pairs"] == 1
        assert int(cfg["status"]) & N.S_LINK_UP


TestNetMachine = NetMachine.TestCase


@given(st.binary(min_size=6, max_size=6), st.integers(68, 65535), st.booleans())
def test_net_config_layout(mac: bytes, mtu: int, up: bool) -> None:
    dev = RN.NetDevice(mac=mac, mtu=mtu)
    dev.set_link(up)
    raw = dev.config()
    assert N.check_config(raw, dev.features) is None
    assert N.CONFIG.decode(raw) == {"mac": mac, "status": int(up), "max_virtqueue_pairs": 1,
                                    "mtu": mtu}


def test_net_receive_filter() -> None:
    """5.1.6.5.1/2: rx mode, MAC tables and the VLAN table decide what is delivered."""
    dev = RN.NetDevice()
    ctrl = lambda *b: dev.serve(RN.CTRLQ, bytes(b[:2]) + b[2], 1)[0]  # noqa: E731
    other, ours = _frame(b"\x02" * 6, None, 10), _frame(dev.mac, None, 10)
    assert dev.deliver(other)  # promiscuous until the driver says otherwise
    assert ctrl(0, 0, b"\x00") == N.OK
    assert not dev.deliver(other) and dev.deliver(ours) and dev.deliver(_frame(BCAST, None, 1))
    assert not dev.deliver(_frame(MCAST, None, 1))
    assert ctrl(1, 0, struct.pack("<I", 1) + b"\x02" * 6 + struct.pack("<I", 1) + MCAST) == N.OK
    assert dev.deliver(other) and dev.deliver(_frame(MCAST, None, 1))
    assert ctrl(0, 5, b"\x01") == N.OK and not dev.deliver(_frame(BCAST, None, 1))
    assert not dev.deliver(_frame(dev.mac, 7, 4))  # VLAN 7 not in the table
    assert ctrl(2, 0, struct.pack("<H", 7)) == N.OK and dev.deliver(_frame(dev.mac, 7, 4))
    assert ctrl(2, 0, struct.pack("<H", 4096)) == N.ERR
    dev.announce()
    assert N.CONFIG.decode(dev.config())["status"] == N.S_LINK_UP | N.S_ANNOUNCE
    assert ctrl(3, 0, b"") == N.OK and N.CONFIG.decode(dev.config())["status"] == N.S_LINK_UP


# --- console (5.3) ---------------------------------------------------------------------


def _rx_queue(port: int) -> int:
    return 0 if port == 0 else 2 * port + 2  # 5.3.2


class ConsoleMachine(RuleBasedStateMachine):
    """Driver control messages, hot-plug, data and emergency writes, judged message by
    message with the spec's port tracker."""

    factory: type[RC.ConsoleDevice] = RC.ConsoleDevice

    @initialize(multiport=st.sampled_from([True, True, False]), max_ports=st.integers(1, 4),
                extra=st.sets(st.integers(1, 3)), named=st.booleans(),
                handshake=st.sampled_from(["none", "ready", "full"]))
    def setup(self, multiport: bool, max_ports: int, extra: set[int], named: bool,
              handshake: str) -> None:
        ports = {0: b""} | {p: b"port%d" % p if named else b"" for p in extra if p < max_ports}
        neg = RC.OFFERED & ~(0 if multiport else 1 << C.FC["MULTIPORT"])
        self.dev = self.factory(cols=80, rows=25, max_nr_ports=max_ports, ports=ports,
                                negotiated=neg)
        self.multiport, self.max_ports = multiport, max_ports
        self.configured = set(ports) if multiport else {0}
        self.ports = C.Ports(max_ports)  # the spec's view of which ports the driver knows
        self.fed = {p: bytearray() for p in range(max_ports)}
        self.cols, self.rows = 80, 25
        self.sizes: set[tuple[int, int]] = set()
        if multiport and handshake != "none":  # start from a driver in 5.3.6.2's startup
            self.driver_ready()
            self.drain_all()
        if multiport and handshake == "full":
            for port in sorted(self.ports.live):
                self.port_ready(port)
            self.drain_all()

    def _queue_ports(self) -> st.SearchStrategy[int]:
        return st.integers(0, self.max_ports - 1 if self.multiport else 0)

    @rule(port=st.integers(0, 5),
          event=st.one_of(st.sampled_from([C.DEVICE_READY, C.PORT_READY, C.PORT_OPEN]),
                          st.integers(0, 9)),
          value=st.one_of(st.just(1), st.integers(0, 0xFFFF)),
          cut=st.one_of(st.just(8), st.integers(0, 8)))
    def driver_message(self, port: int, event: int, value: int, cut: int) -> None:
        self.send(C.encode_control(port, event, value)[:cut])

    @rule()
    def driver_ready(self) -> None:
        self.send(C.encode_control(0, C.DEVICE_READY, 1))

    @rule(port=st.integers(0, 4))
    def port_ready(self, port: int) -> None:
        self.send(C.encode_control(port, C.PORT_READY, 1))

    def send(self, msg: bytes) -> None:
        if not self.multiport:
            assert not self.dev.ready(RC.CTRL_TXQ)
            with pytest.raises(ValueError):
                self.dev.serve(RC.CTRL_TXQ, msg, 0)
            return
        assert self.dev.serve(RC.CTRL_TXQ, msg, 0) == b""

    @rule(in_len=st.one_of(st.just(64), st.integers(0, 16)))
    def drain_one(self, in_len: int) -> None:
        if self.multiport:
            self.take_message(in_len)

    @rule()
    def drain_all(self) -> None:
        while self.multiport and self.take_message(64):
            pass

    def take_message(self, in_len: int) -> bool:
        """One control receive buffer of ``in_len`` bytes; judge what the device put in it."""
        pending = self.dev.ready(RC.CTRL_RXQ)
        out = self.dev.serve(RC.CTRL_RXQ, b"", in_len)
        assert len(out) <= in_len and (out == b"" or len(out) >= C.CONTROL.size)
        if not out:  # nothing pending, or a buffer too small for the next message
            assert not pending or in_len < C.CONTROL.size + 4
            return False
        port, event, _value = C.decode_control(out)
        if event not in (C.DEVICE_ADD, C.DEVICE_REMOVE):  # ours: only about known ports
            assert port in self.ports.live, (port, event)
        self.ports, v = C.device_message(self.ports, port, event)
        assert v is None, v
        if event == C.RESIZE:
            assert struct.unpack_from("<HH", out, 8) in self.sizes
        return True

    @rule(port=st.integers(0, 6))
    def add_port(self, port: int) -> None:
        added = self.dev.add_port(port, b"hot")
        if port < self.max_ports:
            assert added == (self.multiport and port not in self.configured)
        if added:
            self.configured.add(port)
            self.fed[port] = bytearray()

    @rule(data=st.data())
    def remove_port(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.configured) or [0]) | st.integers(0, 4))
        removed = self.dev.remove_port(port)
        assert removed == (self.multiport and port in self.configured)
        if removed:
            self.configured.discard(port)

    @rule(port=st.integers(0, 4), is_open=st.booleans())
    def host_open(self, port: int, is_open: bool) -> None:
        self.dev.open_port(port, is_open)

    @rule(data=st.data(), chunk=st.binary(min_size=1, max_size=12))
    def feed(self, data: st.DataObject, chunk: bytes) -> None:
        port = data.draw(self._queue_ports())
        self.dev.feed(chunk, port)
        if port in self.configured:
            self.fed[port] += chunk

    @rule(data=st.data(), in_len=st.integers(0, 20))
    def read(self, data: st.DataObject, in_len: int) -> None:
        port = data.draw(self._queue_ports())
        ready = self.dev.ready(_rx_queue(port))
        out = self.dev.serve(_rx_queue(port), b"", in_len)
        assert len(out) <= in_len and self.fed[port].startswith(out)
        assert bool(out) == (ready and in_len > 0)
        del self.fed[port][: len(out)]

    @rule(data=st.data(), chunk=st.binary(max_size=12))
    def write(self, data: st.DataObject, chunk: bytes) -> None:
        port = data.draw(self._queue_ports())
        before = bytes(self.dev.output.get(port, b""))
        assert self.dev.serve(_rx_queue(port) + 1, chunk, 0) == b""
        after = bytes(self.dev.output.get(port, b""))
        assert after in (before, before + chunk)
        if port == 0 and 0 in self.configured:
            assert after == before + chunk

    @rule(value=st.integers(0, U32))
    def emergency_write(self, value: int) -> None:
        before = bytes(self.dev.output[0])
        self.dev.write_config(RC.EMERG_WR_OFFSET, value.to_bytes(4, "little"))
        assert bytes(self.dev.output[0]) == C.emergency_write(before, value, status=0)

    @rule(cols=st.integers(0, 0xFFFF), rows=st.integers(0, 0xFFFF))
    def resize(self, cols: int, rows: int) -> None:
        self.dev.resize(cols, rows)
        self.cols, self.rows = cols, rows
        self.sizes.add((cols, rows))

    @invariant()
    def config_layout(self) -> None:
        raw = self.dev.config()
        assert len(raw) == C.CONFIG.size
        assert C.CONFIG.decode(raw) == {"cols": self.cols, "rows": self.rows,
                                        "max_nr_ports": self.max_ports, "emerg_wr": 0}


TestConsoleMachine = ConsoleMachine.TestCase


def test_console_startup_handshake() -> None:
    """5.3.6.2: DEVICE_READY -> DEVICE_ADD each port; PORT_READY -> CONSOLE_PORT, name, open."""
    dev = RC.ConsoleDevice(ports={0: b"", 1: b"org.qemu.guest_agent.0"})
    dev.open_port(1)
    send = lambda p, e, v: dev.serve(RC.CTRL_TXQ, C.encode_control(p, e, v), 0)  # noqa: E731

    def drain() -> list[tuple[int, int, int, bytes]]:
        out = []
        while dev.ready(RC.CTRL_RXQ):
            raw = dev.serve(RC.CTRL_RXQ, b"", 4096)
            out.append((*C.decode_control(raw), raw[8:]))
        return out

    assert drain() == []  # nothing before the driver is ready
    send(0, C.DEVICE_READY, 1)
    assert drain() == [(0, C.DEVICE_ADD, 0, b""), (1, C.DEVICE_ADD, 0, b"")]
    send(0, C.PORT_READY, 1)
    send(1, C.PORT_READY, 1)
    assert drain() == [(0, C.CONSOLE_PORT, 1, b""),
                       (1, C.PORT_NAME, 1, b"org.qemu.guest_agent.0"), (1, C.PORT_OPEN, 1, b"")]
    dev.feed(b"hello", 1)
    assert dev.serve(_rx_queue(1), b"", 3) == b"hel" and dev.serve(_rx_queue(1), b"", 9) == b"lo"


# --- input (5.8) -----------------------------------------------------------------------


def to_spec(p: RI.Profile) -> I.InputDevice:
    return I.InputDevice(p.name, p.serial, p.devids, I.bitmap(list(p.props)),
                         {t: I.bitmap(list(c)) for t, c in p.events.items()}, p.abs_info)


S32 = st.integers(-(1 << 31), U32)
PROFILES = st.one_of(
    st.sampled_from([RI.keyboard(), RI.touchscreen(), RI.touchscreen(800, 480)]),
    st.builds(RI.Profile, name=st.binary(max_size=140), serial=st.binary(max_size=140),
              devids=st.tuples(*[st.integers(0, 0xFFFF)] * 4),
              props=st.lists(st.integers(0, 31), max_size=4).map(tuple),
              events=st.dictionaries(st.integers(0, 0x1F),
                                     st.lists(st.integers(0, 0x2FF), max_size=6).map(tuple),
                                     max_size=4),
              abs_info=st.dictionaries(st.integers(0, 0x3F), st.tuples(*[S32] * 5), max_size=3)))
QUERIES = st.one_of(  # (select, subsel): defined selects, bitmap/axis subsels, anything
    st.tuples(st.sampled_from([I.CFG_UNSET, I.CFG_ID_NAME, I.CFG_ID_SERIAL, I.CFG_ID_DEVIDS,
                               I.CFG_PROP_BITS]), st.sampled_from([0, 0, 1])),
    st.tuples(st.sampled_from([I.CFG_EV_BITS, I.CFG_ABS_INFO]), st.integers(0, 0x20)),
    st.tuples(st.integers(0, 255), st.integers(0, 255)))


def check_input_config(make: Callable[[RI.Profile], RI.InputDevice], profile: RI.Profile,
                       queries: list[tuple[int, int]]) -> None:
    dev, model = make(profile), to_spec(profile)
    for select, subsel in queries:
        dev.write_config(0, bytes([select, subsel]))
        raw = dev.config()
        assert len(raw) == I.CONFIG_SIZE
        assert I.check_config_answer(model, select, subsel, raw) is None
        assert raw == I.config_bytes(model, select, subsel), (select, subsel)


@given(PROFILES, st.lists(QUERIES, min_size=1, max_size=8))
def test_input_config_answers(profile: RI.Profile, queries: list[tuple[int, int]]) -> None:
    check_input_config(RI.InputDevice, profile, queries)


@pytest.mark.parametrize("profile", [RI.keyboard(), RI.touchscreen()], ids=["kbd", "touch"])
def test_input_config_every_subsel(profile: RI.Profile) -> None:
    """The two shipped profiles, for every subsel of every defined select (and two others)."""
    queries = [(s, b) for s in (0, 1, 2, 3, 0x10, 0x11, 0x12, 0x13, 0xFF) for b in range(256)]
    check_input_config(RI.InputDevice, profile, queries)


def test_input_config_ignores_other_writes() -> None:
    dev = RI.InputDevice(RI.keyboard())
    dev.write_config(0, bytes([I.CFG_ID_NAME, 0, 99, 1, 2]))  # size and reserved are RO
    assert dev.config() == I.config_bytes(to_spec(RI.keyboard()), I.CFG_ID_NAME, 0)


EVENTS = st.tuples(st.sampled_from([I.EV_KEY, I.EV_ABS, 2, 4, I.EV_LED]),
                   st.integers(0, 0x2FF), S32).map(lambda e: (e[0], e[1], e[2] & U32))


class InputMachine(RuleBasedStateMachine):
    """Updates pushed faster than the driver takes them: drops must be whole updates."""

    factory: type[RI.InputDevice] = RI.InputDevice

    @initialize(profile=st.sampled_from([RI.keyboard(), RI.touchscreen()]),
                backlog=st.integers(1, 6))
    def setup(self, profile: RI.Profile, backlog: int) -> None:
        self.dev = self.factory(profile, backlog=backlog)
        self.profile = profile
        self.generated: list[tuple[int, int, int]] = []
        self.served: list[tuple[int, int, int]] = []
        self.leds: dict[int, int] = {}

    @rule(events=st.lists(EVENTS, max_size=5))
    def update(self, events: list[tuple[int, int, int]]) -> None:
        self.dev.report(events)
        self.generated += [*events, (I.EV_SYN, 0, 0)]

    @rule(event=EVENTS)
    def open_update(self, event: tuple[int, int, int]) -> None:
        self.dev.push(*event)
        self.generated.append(event)

    @rule(in_len=st.one_of(st.just(8), st.integers(0, 24)))
    def take(self, in_len: int) -> None:
        ready = self.dev.ready(I.EVENTQ)
        out = self.dev.serve(I.EVENTQ, b"", in_len)
        if in_len < I.EVENT.size:  # the driver broke 5.8.6.1; nothing is lost
            assert I.check_driver_buffer(I.EVENTQ, in_len, True) is not None and out == b""
            return
        assert len(out) == (I.EVENT.size if ready else 0)
        if out:
            self.served.append(I.decode_event(out))

    @rule(leds=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1)), max_size=3),
          tail=st.binary(max_size=7))
    def status(self, leds: list[tuple[int, int]], tail: bytes) -> None:
        raw = b"".join(I.encode_event(I.EV_LED, c, v) for c, v in leds) + tail
        assert self.dev.serve(I.STATUSQ, raw, 0) == b""
        known = self.profile.events.get(I.EV_LED, ())
        self.leds.update((c, v) for c, v in leds if c in known)
        assert self.dev.leds == self.leds

    @invariant()
    def whole_updates_in_order(self) -> None:
        assert I.check_event_sequences(self.served, self.generated) is None
        it = iter(self.generated)  # and served events keep the order they were pushed in
        assert all(any(e == g for g in it) for e in self.served)


TestInputMachine = InputMachine.TestCase


# --- gpu (5.7) -------------------------------------------------------------------------

MEMORY = random.Random(5).randbytes(1 << 16)  # the guest memory backing pages live in


def read_guest(addr: int, n: int) -> bytes:
    return MEMORY[addr : addr + n]


COORD = st.one_of(st.integers(0, 40), st.sampled_from([U32, 1 << 31, U32 - 15]))
RECT = st.tuples(COORD, COORD, COORD, COORD)
RIDS = st.one_of(st.integers(0, 4), st.just(U32))
DIMS = st.one_of(st.integers(0, 40), st.sampled_from([U32, 1 << 16, 100000]))
FENCES = st.tuples(st.sampled_from([0, G.FLAG_FENCE, 3, 0x80]), st.integers(0, (1 << 64) - 1),
                   st.integers(0, U32))
IN_LEN = st.one_of(st.none(), st.none(), st.integers(0, 40))
MODE = (640, 480)


def _state(resources: dict, scanouts: list) -> tuple:
    return resources, sorted(r for r, _ in scanouts if r)


class GpuMachine(RuleBasedStateMachine):
    """2D commands, valid and hostile; every response is judged by ``G.allowed`` and the
    outcome it names must leave the spec GPU in the state the device is in."""

    factory: type[RG.GpuDevice] = RG.GpuDevice

    @initialize(n=st.integers(1, 3))
    def setup(self, n: int) -> None:
        self.dev = self.factory(read_guest, num_scanouts=n, modes=(MODE,), memory_limit=1 << 20)
        self.model = G.Gpu(num_scanouts=n)
        self.pixels: dict[int, bytearray] = {}

    def dev_state(self) -> tuple:
        res = {rid: G.Resource(r.format, r.width, r.height, tuple(r.backing or ()))
               for rid, r in self.dev.resources.items()}
        return _state(res, self.dev.scanouts)

    def model_state(self, gpu: G.Gpu) -> tuple:
        return _state(dict(gpu.resources), list(gpu.scanouts))

    def send(self, typ: int, fields: tuple[int, ...], fence: tuple[int, int, int],
             in_len: int | None, entries: tuple[tuple[int, int], ...] = (),
             tail: bytes | None = None) -> int | None:
        """Send one request (``tail`` replaces the encoded entries) and judge the answer."""
        hdr = G.Hdr(typ, *fence)
        raw = G.encode_request(hdr, *fields, entries=entries if tail is None else ())
        raw += tail or b""
        full = G.HDR.size + (16 * 24 if typ == G.CMD_GET_DISPLAY_INFO else 0)
        n = full if in_len is None else in_len
        out = self.dev.serve(G.CONTROLQ, raw, n)
        assert len(out) == min(n, full)  # responses are cut to the buffer (2.7.8.2)
        outcomes = G.allowed(self.model, hdr, fields, entries)
        if n < G.HDR.size:  # the driver's buffer hides the type: any outcome matching the state
            matches = [s for s in outcomes.values() if self.model_state(s) == self.dev_state()]
            assert matches, "device state matches no allowed outcome"
            self.model = matches[0]
            self.pixels = {r: p for r, p in self.pixels.items() if r in self.model.resources}
            return None
        resp = G.Hdr.decode(out)
        assert G.check_response(self.model, hdr, fields, resp, entries) is None, (hdr, resp)
        if not hdr.flags & G.FLAG_FENCE:
            assert (resp.flags, resp.fence_id, resp.ring_idx) == (0, 0, 0)
        self.model = outcomes[resp.type]
        self.pixels = {r: p for r, p in self.pixels.items() if r in self.model.resources}
        assert self.dev_state() == self.model_state(self.model)
        if resp.type == G.RESP_OK_DISPLAY_INFO:
            assert out == G.encode_display_info(resp, ((0, 0, *MODE, 1, 0),))[:n]
        return resp.type

    @rule(rid=RIDS, fmt=st.one_of(st.sampled_from(sorted(G.FORMATS)), st.integers(0, 200)),
          w=DIMS, h=DIMS, fence=FENCES, in_len=IN_LEN)
    def create(self, rid: int, fmt: int, w: int, h: int, fence: tuple, in_len: int | None) -> None:
        if self.send(G.CMD_RESOURCE_CREATE_2D, (rid, fmt, w, h), fence, in_len) == G.RESP_OK_NODATA:
            self.pixels[rid] = bytearray(w * h * 4)

    @rule(rid=st.integers(1, 4), fmt=st.sampled_from(sorted(G.FORMATS)), w=st.integers(1, 40),
          h=st.integers(1, 40))
    def create_plain(self, rid: int, fmt: int, w: int, h: int) -> None:
        """A well-formed create, so that most runs have resources to aim at."""
        self.create(rid, fmt, w, h, (0, 0, 0), None)

    @rule(rid=RIDS, fence=FENCES, in_len=IN_LEN)
    def unref(self, rid: int, fence: tuple, in_len: int | None) -> None:
        self.send(G.CMD_RESOURCE_UNREF, (rid, 0), fence, in_len)

    def aimed(self, data: st.DataObject) -> tuple[int, tuple[int, int, int, int]]:
        """A live resource and a rect at, just inside or just outside its edges."""
        kind = data.draw(st.integers(0, 5))
        if not self.model.resources or kind == 0:
            return data.draw(RIDS), data.draw(RECT)
        rid = data.draw(st.sampled_from(sorted(self.model.resources)))
        r = self.model.resources[rid]
        x = data.draw(st.integers(0, min(r.width, 50)))
        y = data.draw(st.integers(0, min(r.height, 50)))
        w = data.draw(st.sampled_from([r.width - x, r.width - x + 1])
                      | st.integers(0, min(r.width - x + 1, 50)))
        h = data.draw(st.sampled_from([r.height - y, r.height - y + 1])
                      | st.integers(0, min(r.height - y + 1, 50)))
        if kind == 1:  # x + w overflows 32 bits (and the wrapped sum would look inside)
            back = data.draw(st.integers(1, 8))
            x, w = (1 << 32) - back, back + data.draw(st.integers(0, min(r.width, 50)))
        return rid, (x, y, w, h)

    @rule(data=st.data(), sid=st.one_of(st.integers(0, 3), st.just(U32)), fence=FENCES,
          in_len=IN_LEN)
    def set_scanout(self, data: st.DataObject, sid: int, fence: tuple, in_len: int | None) -> None:
        rid, rect = self.aimed(data)
        rid = data.draw(st.sampled_from([rid, rid, 0]))
        self.send(G.CMD_SET_SCANOUT, (*rect, sid, rid), fence, in_len)

    @rule(data=st.data(), fence=FENCES, in_len=IN_LEN)
    def flush(self, data: st.DataObject, fence: tuple, in_len: int | None) -> None:
        rid, rect = self.aimed(data)
        self.send(G.CMD_RESOURCE_FLUSH, (*rect, rid, 0), fence, in_len)

    @rule(data=st.data(), fence=FENCES)
    def transfer(self, data: st.DataObject, fence: tuple) -> None:
        rid, rect = self.aimed(data)
        res = self.model.resources.get(rid)
        natural = rect[1] * res.width * 4 + rect[0] * 4 if res else 0  # where the rect starts
        offset = data.draw(st.sampled_from([natural, natural + 4, (1 << 64) - 1])
                           | st.integers(0, 4096))
        if self.send(G.CMD_TRANSFER_TO_HOST_2D, (*rect, offset, rid, 0), fence, None) != (
                G.RESP_OK_NODATA):
            return
        # each entry spans its declared length (the part past guest memory was not read)
        flat = b"".join(MEMORY[a : a + n].ljust(n, b"\0") for a, n in res.backing)
        x, y, w, h = rect
        stride = res.width * 4
        img = self.pixels.setdefault(rid, bytearray(stride * res.height))
        for i in range(h):
            row = flat[offset + i * stride : offset + i * stride + w * 4]
            img[(y + i) * stride + x * 4 : (y + i) * stride + (x + w) * 4] = row
        assert self.dev.pixels(rid) == img

    @rule(rid=RIDS, entries=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 8192)),
                                     max_size=3),
          lie=st.one_of(st.just(0), st.just(0), st.integers(1, 2), st.just(U32)), fence=FENCES)
    def attach(self, rid: int, entries: list, lie: int, fence: tuple) -> None:
        nr = (len(entries) + lie) & U32  # a lying nr_entries makes the request miss-sized
        raw_tail = b"".join(G.MEM_ENTRY.pack(a, n, 0) for a, n in entries)
        self.send(G.CMD_RESOURCE_ATTACH_BACKING, (rid, nr), fence, None, tuple(entries[:nr]),
                  raw_tail)

    @rule(data=st.data(), cuts=st.lists(st.integers(0, 6400), max_size=2))
    def attach_plain(self, data: st.DataObject, cuts: list[int]) -> None:
        """Backing pages for a live resource: its size (or a bit less), in up to 3 pieces."""
        if not self.model.resources:
            return
        rid = data.draw(st.sampled_from(sorted(self.model.resources)))
        r = self.model.resources[rid]
        size = min(r.width * r.height * 4, len(MEMORY)) - data.draw(st.sampled_from([0, 0, 4]))
        base = data.draw(st.integers(0, len(MEMORY) - size))
        bounds = sorted({0, size, *(c for c in cuts if c < size)})
        entries = tuple((base + a, b - a) for a, b in itertools.pairwise(bounds))
        self.send(G.CMD_RESOURCE_ATTACH_BACKING, (rid, len(entries)), (0, 0, 0), None, entries)

    @rule(rid=RIDS, fence=FENCES, in_len=IN_LEN)
    def detach(self, rid: int, fence: tuple, in_len: int | None) -> None:
        self.send(G.CMD_RESOURCE_DETACH_BACKING, (rid, 0), fence, in_len)

    @rule(fence=FENCES, in_len=IN_LEN)
    def display_info(self, fence: tuple, in_len: int | None) -> None:
        self.send(G.CMD_GET_DISPLAY_INFO, (), fence, in_len)

    @rule(typ=st.one_of(st.sampled_from([0, 0x108, 0x200, 0x208, 0x300, 0x1100]),
                        st.integers(0, U32)), fence=FENCES, tail=st.binary(max_size=40))
    def unknown(self, typ: int, fence: tuple, tail: bytes) -> None:
        if typ not in G.PAYLOAD:
            hdr = G.Hdr(typ, *fence)
            resp = G.Hdr.decode(self.dev.serve(G.CONTROLQ, hdr.encode() + tail, 64))
            assert G.check_response(self.model, hdr, (), resp) is None

    @rule(typ=st.sampled_from(sorted(G.PAYLOAD)), fence=FENCES, data=st.data())
    def miss_sized(self, typ: int, fence: tuple, data: st.DataObject) -> None:
        """A request cut inside its header or payload: ERR_UNSPEC, nothing changes."""
        full = G.Hdr(typ, *fence).encode() + bytes(G.PAYLOAD[typ].size)
        cut = data.draw(st.integers(0, len(full) - 1))
        before = self.dev_state()
        resp = G.Hdr.decode(self.dev.serve(G.CONTROLQ, full[:cut], 64))
        assert resp.type == G.RESP_ERR_UNSPEC and self.dev_state() == before
        if cut >= G.HDR.size:
            assert G.check_fence(G.Hdr(typ, *fence), resp, completed=True) is None

    @invariant()
    def config_layout(self) -> None:
        if hasattr(self, "dev"):
            assert G.CONFIG.decode(self.dev.config()) == {
                "events_read": 0, "events_clear": 0, "num_scanouts": self.model.num_scanouts,
                "num_capsets": 0}


TestGpuMachine = GpuMachine.TestCase


def test_gpu_display_event_and_clear() -> None:
    """5.7.4: a mode change raises EVENT_DISPLAY; writing it to events_clear drops it."""
    dev = RG.GpuDevice(read_guest)
    dev.set_mode(0, 800, 600)
    assert G.CONFIG.decode(dev.config())["events_read"] == G.EVENT_DISPLAY
    dev.write_config(4, struct.pack("<I", G.EVENT_DISPLAY))
    assert G.CONFIG.decode(dev.config())["events_read"] == 0
    info = dev.serve(G.CONTROLQ, G.Hdr(G.CMD_GET_DISPLAY_INFO).encode(), 1024)
    assert info == G.encode_display_info(G.Hdr(G.RESP_OK_DISPLAY_INFO), ((0, 0, 800, 600, 1, 0),))


# --- planted bugs ----------------------------------------------------------------------


class FixedChunkEntropy(RE.EntropyDevice):
    """Always writes 32 bytes, as if every driver buffer were at least that big."""

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        return self.random_bytes(32)


class CtrlIgnoresFeatures(RN.NetDevice):
    """Dispatches control commands on what it offers, not on what was negotiated."""

    def control(self, out: bytes) -> int:
        saved, self.negotiated = self.negotiated, self.features
        try:
            return super().control(out)
        finally:
            self.negotiated = saved


class NoMtuCheck(RN.NetDevice):
    """Passes inbound frames of any size to the driver, whatever the negotiated mtu."""

    def deliver(self, frame: bytes) -> bool:
        if len(frame) < RN.ETH_HLEN or not self.accepts(frame):
            return False
        self.rx.append(bytes(frame))
        return True


class UnboundedAdd(RC.ConsoleDevice):
    """Hot-plug checks for a duplicate port but not against max_nr_ports."""

    def add_port(self, port: int, name: bytes = b"") -> bool:
        saved, self.max_nr_ports = self.max_nr_ports, 1 << 30
        try:
            return super().add_port(port, name)
        finally:
            self.max_nr_ports = saved


class RemoveUnannounced(RC.ConsoleDevice):
    """Hot-unplug sends DEVICE_REMOVE even for a port the driver was never told about."""

    def remove_port(self, port: int) -> bool:
        unannounced = port in self.ports and port not in self.announced
        removed = super().remove_port(port)
        if removed and unannounced:
            self._send(port, RC.DEVICE_REMOVE, 0)
        return removed


class NameSizeCountsNul(RI.InputDevice):
    """ID_NAME's size counts the C string's terminating NUL."""

    def answer(self, select: int, subsel: int) -> bytes:
        u = super().answer(select, subsel)
        return u + b"\0" if select == RI.CFG_ID_NAME and u else u


class DropsSingleEvents(RI.InputDevice):
    """A full backlog drops single events, tearing updates apart."""

    def push(self, type_: int, code: int, value: int) -> None:
        if len(self.events) < self.backlog:
            self.events.append((type_, code, value & U32))


class RectIgnoresOffset(RG.GpuDevice):
    """Checks a rect's size against the resource but forgets its x/y offset."""

    def check_rect(self, rect: RG.Rect, res: RG.Resource) -> None:
        if rect[2] > res.width or rect[3] > res.height:
            raise RG.CommandError(RG.ERR_INVALID_PARAMETER)


class Wrap32Rect(RG.GpuDevice):
    """Adds x + width in 32 bits, as C on uint32_t fields would: big offsets wrap around."""

    def check_rect(self, rect: RG.Rect, res: RG.Resource) -> None:
        x, y, w, h = rect
        if (x + w) & U32 > res.width or (y + h) & U32 > res.height:
            raise RG.CommandError(RG.ERR_INVALID_PARAMETER)


def _machine(base: type[RuleBasedStateMachine], bug: type) -> type[RuleBasedStateMachine]:
    return type(f"{base.__name__}_{bug.__name__}", (base,), {"factory": bug})


def test_planted_entropy_overlong_answer() -> None:
    body = given(st.binary(max_size=8), BUFFER_LENGTHS)(
        lambda seed, lengths: check_entropy(FixedChunkEntropy, seed, lengths))
    _hunt(settings(HUNT, max_examples=100)(body))


@pytest.mark.parametrize("bug", [CtrlIgnoresFeatures, NoMtuCheck])
def test_planted_net(bug: type[RN.NetDevice]) -> None:
    _hunt_machine(_machine(NetMachine, bug))


@pytest.mark.parametrize("bug", [UnboundedAdd, RemoveUnannounced])
def test_planted_console(bug: type[RC.ConsoleDevice]) -> None:
    _hunt_machine(_machine(ConsoleMachine, bug))


def test_planted_input_config_size() -> None:
    body = given(PROFILES, st.lists(QUERIES, min_size=1, max_size=8))(
        lambda profile, queries: check_input_config(NameSizeCountsNul, profile, queries))
    _hunt(settings(HUNT, max_examples=100)(body))


def test_planted_input_torn_updates() -> None:
    _hunt_machine(_machine(InputMachine, DropsSingleEvents))


@pytest.mark.parametrize("bug", [RectIgnoresOffset, Wrap32Rect])
def test_planted_gpu_rect(bug: type[RG.GpuDevice]) -> None:
    _hunt_machine(_machine(GpuMachine, bug))
