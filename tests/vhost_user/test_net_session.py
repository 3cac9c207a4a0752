"""NetSession and the net checks against pvspec's own virtio-net back-end
(reference_impl.virtio.net served over vhost-user, frames looped back by a pump), and
against planted variants of it: every planted device bug is caught by a real exchange
through shared memory, under its own requirement.  Fast (no DPDK)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest

from conformance.vhost_user import net_checks as nc
from conformance.vhost_user import net_frames as nf
from conformance.vhost_user.checks import run_check
from conformance.vhost_user.net_session import NetSession, Sent
from conformance.vhost_user.targets import Target
from reference_impl.virtio import net as rnet
from reference_impl.virtio.server import serve_vhost_user
from spec.virtio.devices import net as N


def _loop(dev: rnet.NetDevice) -> None:
    """The wire: every frame the driver sent comes back to it."""
    for frame in dev.sent:
        dev.deliver(frame)
    dev.sent.clear()


def _target(dev: rnet.NetDevice, name: str, offered: int = rnet.OFFERED | (1 << 30)
            ) -> Target:
    """``dev`` served over vhost-user from a thread, offering ``offered``."""
    tmp = tempfile.mkdtemp(prefix="pvspec-net-")
    sock = os.path.join(tmp, "net.sock")
    stop = threading.Event()
    th = threading.Thread(target=serve_vhost_user, args=(sock, dev, stop),
                          kwargs={"offered": offered, "nqueues": 2,
                                  "pump": _loop}, daemon=True)
    th.start()

    def halt() -> None:
        stop.set()
        th.join(timeout=3)

    t = Target(name, "net", sock, stop_hook=halt, thread=th, tmpdir=tmp)
    for _ in range(200):
        if os.path.exists(sock):
            return t
        threading.Event().wait(0.01)
    t.stop()
    raise AssertionError("the reference net back-end did not start")


@pytest.fixture()
def ref_net() -> Iterator[Target]:
    t = _target(rnet.NetDevice(), "reference-net")
    yield t
    t.stop()


def test_session_exchange_against_reference(ref_net: Target) -> None:
    with NetSession(ref_net) as s:
        assert not s.mrg and s.config and s.mtu == 1500
        frames = [Sent(N.NetHdr(), nf.frame(n, p)) for n, p in
                  ((60, nf.UDP), (1514, nf.TCP), (342, nf.TCP))]
        st = s.exchange(frames, [2048] * 4)
        assert st.outcome == "completed" and st.tx_done == 3
        assert st.tx.verdict.ok and st.rx.verdict.ok, (st.tx.verdict, st.rx.verdict)
        assert [len(p.judgement.frame) for p in st.packets] == [60, 1514, 342]
        assert all(p.judgement.ok and p.loopback is None for p in st.packets)
        # NEEDS_CSUM (CSUM offered): the reference completes the checksum
        part = nf.frame(300, nf.TCP, partial=True)
        start, off = nf.csum_fields(part)
        st = s.exchange([Sent(N.NetHdr(N.F_NEEDS_CSUM, csum_start=start, csum_offset=off),
                              part, split=3)], [])
        (p,) = st.packets
        assert p.loopback is None and N.l4_checksum_ok(p.judgement.frame)


def test_reference_passes_the_net_checks(ref_net: Target) -> None:
    for name in ("net-features", "net-loopback", "net-chains", "net-index-wrap"):
        rs = run_check(ref_net, name)
        bad = [r for r in rs if r.status in ("fail", "error", "expected-deviation")]
        assert not bad, bad
        assert any(r.status == "pass" for r in rs)


class _NumBuffers(rnet.NetDevice):
    def rx_header(self) -> bytes:
        return N.NetHdr(num_buffers=2).encode()


class _Flags(rnet.NetDevice):
    def rx_header(self) -> bytes:
        return N.NetHdr(N.F_DATA_VALID, num_buffers=1).encode()


class _Gso(rnet.NetDevice):
    def rx_header(self) -> bytes:
        return N.NetHdr(N.F_NEEDS_CSUM, N.GSO_TCPV4, 54, 1448, 34, 16, 1).encode()


class _Corrupt(rnet.NetDevice):
    def receive(self, in_len: int) -> bytes:
        out = super().receive(in_len)
        return out[:-1] + bytes([out[-1] ^ 0xFF]) if out else out


class _LongLen(rnet.NetDevice):
    def receive(self, in_len: int) -> bytes:
        out = super().receive(in_len)
        return out + b"\0" * 4 if out and len(out) + 4 <= in_len else out


PLANTED: dict[str, tuple[Callable[[], rnet.NetDevice], str]] = {
    "num-buffers-2-without-mrg": (_NumBuffers, "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE"),
    "data-valid-without-guest-csum": (_Flags, "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO"),
    "gso-tcpv4-unnegotiated": (_Gso, "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV4"),
    "frame-corrupted": (_Corrupt, N.LOOPBACK_RULE),
    "packet-longer-than-sent": (_LongLen, N.LOOPBACK_RULE),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_backend_bugs_are_caught(name: str) -> None:
    make, rule = PLANTED[name]
    t = _target(make(), f"planted-{name}")
    try:
        rs = run_check(t, "net-loopback")
    finally:
        t.stop()
    failed = {r.rule for r in rs if r.status == "fail"}
    assert rule in failed, (name, failed)
    assert not [r for r in rs if r.status == "error"], rs


def test_dead_backend_is_an_error_not_a_traceback() -> None:
    t = _target(rnet.NetDevice(), "reference-net")
    t.stop()
    rs = run_check(t, "net-loopback")
    assert rs and all(r.status == "error" for r in rs), rs
    assert nc.NET_CHECKS["net-loopback"] is nc.check_net_loopback
