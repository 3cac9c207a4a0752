"""virtio-net basics (§5.1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio.devices import net as N

FN = N.FN


def test_tx_header() -> None:
    assert N.check_tx_header(N.NetHdr(), 0) is None
    assert N.check_tx_header(N.NetHdr(num_buffers=1), 0).requirement.endswith("NUM-BUFFERS-ZERO")
    assert N.check_tx_header(N.NetHdr(flags=1), 0).requirement.endswith("FLAGS-ZERO")
    tso = N.NetHdr(flags=N.F_NEEDS_CSUM, gso_type=N.GSO_TCPV4, gso_size=1400)
    feats = (1 << FN["CSUM"]) | (1 << FN["HOST_TSO4"])
    assert N.check_tx_header(tso, feats) is None
    assert N.check_tx_header(tso, 1 << FN["CSUM"]).requirement.endswith("GSO-NEEDS-FEATURE")
    no_csum = N.NetHdr(gso_type=N.GSO_TCPV4)
    assert N.check_tx_header(no_csum, feats).requirement.endswith("GSO-NEEDS-CSUM")


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF))
def test_hdr_roundtrip(flags: int, gso: int, size: int) -> None:
    h = N.NetHdr(flags, gso, 0, size)
    assert N.NetHdr.decode(h.encode()) == h and len(h.encode()) == 12


def test_config_checks() -> None:
    mq, mtu = 1 << FN["MQ"], 1 << FN["MTU"]
    good = N.CONFIG.encode({"max_virtqueue_pairs": 4, "mtu": 1500})
    assert N.check_config(good, mq | mtu) is None
    assert N.check_config(N.CONFIG.encode({"mtu": 1500}), mq) is not None
    assert N.check_config(N.CONFIG.encode({"max_virtqueue_pairs": 1, "mtu": 60}), mq | mtu)
    assert N.check_config(N.CONFIG.encode({}), 1 << FN["RSS"]) is not None
    assert N.check_mtu_stable(1500, 1500) is None
    assert N.check_mtu_stable(1500, 9000) is not None


def test_planted_oversized_rx_is_flagged() -> None:
    assert N.check_rx_packet(N.NetHdr(), 1514, 1500, True) is None
    assert N.check_rx_packet(N.NetHdr(), 1515, 1500, True) is not None


def test_queue_roles_and_ctrl_oracle() -> None:
    assert [N.queue_role(i, 2, True) for i in range(5)] == ["rx", "tx", "rx", "tx", "ctrl"]
    feats = (1 << FN["CTRL_VQ"]) | (1 << FN["CTRL_RX"])
    assert N.allowed_acks(feats, N.CTRL_RX, 0) == {N.OK, N.ERR}
    assert N.check_ack(feats, N.CTRL_VLAN, 0, N.OK) is not None
