"""The checks that judge the device MUSTs an offer makes applicable (issue 13), each against
our own back-ends with the bug it guards against planted: the planted bug is caught under
its own rule, and the unplanted back-end passes.  Fast (no QEMU, no DPDK)."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

import pytest

from conformance.vhost_user import checks as ck
from conformance.vhost_user import net_checks as nc
from conformance.vhost_user.checks import run_check
from conformance.vhost_user.targets import Target, start_reference_blk
from reference_impl.virtio import net as rnet
from reference_impl.virtio import server as ref_server
from reference_impl.virtio import split as ref_split
from reference_impl.virtio.blk import BlkDevice
from reference_impl.virtio.blk import blk_features as ref_blk_features
from spec.virtio.devices import block as blk
from tests.vhost_user.test_net_session import _target

WCE, FLUSH, LIFETIME = (1 << blk.FB[n] for n in ("CONFIG_WCE", "FLUSH", "LIFETIME"))


def _statuses(rs: list[ck.Result], rule: str) -> list[str]:
    return [r.status for r in rs if r.rule == rule]


@pytest.fixture()
def ref_net() -> Iterator[Target]:
    t = _target(rnet.NetDevice(), "reference-net")
    yield t
    t.stop()


def _blk(monkeypatch, features: int | None = None) -> Target:  # type: ignore[no-untyped-def]
    if features is not None:
        monkeypatch.setattr(ref_server, "blk_features", lambda: features)
    return start_reference_blk()


# --- applicability from the registry, forbidden offers -----------------------------------


def test_offer_decides_applicability_and_forbidden_offers(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Zoned rules are not judged without ZONED (not-offered, from the registry's
    conditions); a rule forbidding an offer passes on an offer without the feature, and is
    not credited when the feature is offered (its condition is not visible here)."""
    t = _blk(monkeypatch)
    try:
        rs = ck.check_features(t)
    finally:
        t.stop()
    by = {r.rule: r for r in rs}
    assert by["VIRTIO-5.2.6.2-DEV-CROSS-ZONE"].status == "skip"
    assert by["VIRTIO-5.2.6.2-DEV-CROSS-ZONE"].reason == "not-offered"
    assert by["VIRTIO-5.2.6.2-DEV-CROSS-ZONE"].detail == "ZONED not offered"
    for rule in ("VIRTIO-5.2.5.2-DEV-LEGACY-NO-ZONED", "VIRTIO-6.2-DEV-SR-IOV-PCI-ONLY",
                 "VIRTIO-5.2.6.2-DEV-LIFETIME-ONLY-IF-MEANINGFUL"):
        assert by[rule].status == "pass", by[rule]
    t = _blk(monkeypatch, ref_blk_features() | LIFETIME)
    try:
        rs = ck.check_features(t)
    finally:
        t.stop()
    (life,) = [r for r in rs if r.rule == "VIRTIO-5.2.6.2-DEV-LIFETIME-ONLY-IF-MEANINGFUL"]
    assert life.status == "skip" and life.reason == "platform", life


def test_planted_writeback_one_without_flush_is_caught(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """5.2.5.2: CONFIG_WCE negotiated, FLUSH declined: writeback starts at 0.  A device
    planted to start in writeback mode whatever was negotiated is caught."""
    t = _blk(monkeypatch, ref_blk_features() | WCE)
    try:
        ok = ck.check_features(t)
    finally:
        t.stop()
    assert _statuses(ok, "VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO") == ["pass"], ok
    real = BlkDevice.config

    def writeback(self: BlkDevice) -> bytes:
        cfg = bytearray(real(self))
        cfg[32] = 1  # writeback (5.2.4)
        return bytes(cfg)

    monkeypatch.setattr(BlkDevice, "config", writeback)
    assert blk.CONFIG.decode(writeback(BlkDevice(bytearray(4096))))["writeback"] == 1
    t = start_reference_blk()
    try:
        bad = ck.check_features(t)
    finally:
        t.stop()
    assert _statuses(bad, "VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO") == ["fail"], bad


# --- notifications: avail.flags under EVENT_IDX, used_event without it ---------------------


def _plant_flags_honoured(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A back-end that honours NO_INTERRUPT under EVENT_IDX (2.7.7.2: it must ignore it)."""

    def decide(self):  # type: ignore[no-untyped-def]
        old, new = self.signalled, self.used_idx
        self.signalled = new
        if new == old or self._a16[0] & ref_split.AVAIL_F_NO_INTERRUPT:
            return False
        if self.event_idx:
            return ref_split.need_event(self._a16[2 + self.size], new, old)
        return True

    monkeypatch.setattr(ref_split.SplitQueue, "_decide", decide)
    monkeypatch.setattr(ref_server, "need_event", lambda *a: False)  # no second decision


def test_planted_no_interrupt_honoured_under_event_idx_is_caught(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rule = "VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX"
    t = start_reference_blk()
    try:
        assert _statuses(ck.check_notifications(t), rule) == ["pass"]
        _plant_flags_honoured(monkeypatch)
        assert "fail" in _statuses(ck.check_notifications(t), rule)
    finally:
        t.stop()


def test_planted_net_notification_bugs_are_caught(ref_net: Target, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On both net queues: NO_INTERRUPT honoured under EVENT_IDX, and used_event honoured
    without EVENT_IDX (2.7.7.2: both to be ignored)."""
    flags, used = "VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX", "VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT"
    rs = run_check(ref_net, "net-notifications")
    assert set(_statuses(rs, flags)) == {"pass"} and set(_statuses(rs, used)) == {"pass"}, rs
    with monkeypatch.context() as m:
        _plant_flags_honoured(m)
        assert "fail" in _statuses(run_check(ref_net, "net-notifications"), flags)

    def by_used_event(self):  # type: ignore[no-untyped-def]
        old, new = self.signalled, self.used_idx
        self.signalled = new
        return new != old and ref_split.need_event(self._a16[2 + self.size], new, old)

    monkeypatch.setattr(ref_split.SplitQueue, "_decide", by_used_event)
    assert "fail" in _statuses(run_check(ref_net, "net-notifications"), used)


# --- net: config, transmit header, VLAN, chains ---------------------------------------------


class _MtuDrift(rnet.NetDevice):
    """Shows another mtu once a frame was sent (5.1.4.1: mtu never changes once set)."""

    drifted = False

    def config(self) -> bytes:
        cfg = super().config()
        return cfg[:10] + struct.pack("<H", 1400) + cfg[12:] if self.drifted else cfg

    def transmit(self, out: bytes) -> bool:
        self.drifted = True
        return super().transmit(out)


class _NoPairs(rnet.NetDevice):
    """max_virtqueue_pairs 0 although MQ is offered (5.1.4.1: 1..0x8000)."""

    def config(self) -> bytes:
        cfg = super().config()
        return cfg[:8] + struct.pack("<H", 0) + cfg[10:]


class _FlagsAsNeedsCsum(rnet.NetDevice):
    """Takes any transmit flag bit for NEEDS_CSUM (5.1.6.2.2: unknown bits are ignored)."""

    def transmit(self, out: bytes) -> bool:
        if out[0] & ~rnet.HDR_F_NEEDS_CSUM & 0xFF:
            out = bytes([rnet.HDR_F_NEEDS_CSUM]) + out[1:]
        return super().transmit(out)


class _CsumFieldsUsed(rnet.NetDevice):
    """Checksums at csum_start/csum_offset without NEEDS_CSUM (5.1.6.2.2: not used)."""

    def transmit(self, out: bytes) -> bool:
        flags, _g, _h, _s, start, off, _n = rnet.HDR.unpack_from(out)
        if not flags & rnet.HDR_F_NEEDS_CSUM and (start or off):
            out = bytes([flags | rnet.HDR_F_NEEDS_CSUM]) + out[1:]
        return super().transmit(out)


class _VlanFilterAlways(rnet.NetDevice):
    """Drops VLAN-tagged frames whatever was negotiated (5.1.6.5.3.1: without CTRL_VLAN
    every tagged packet is accepted)."""

    def accepts(self, frame: bytes) -> bool:
        return frame[12:14] != b"\x81\x00" and super().accepts(frame)


PLANTED = {
    "mtu-changes": (_MtuDrift, "net-loopback", "VIRTIO-5.1.4.1-DEV-MTU-FIXED"),
    "max-pairs-0": (_NoPairs, "net-features", "VIRTIO-5.1.4.1-DEV-MAX-PAIRS"),
    "unknown-flag-as-needs-csum": (_FlagsAsNeedsCsum, "net-tx-header",
                                   "VIRTIO-5.1.6.2.2-DEV-IGNORE-UNKNOWN-FLAGS"),
    "csum-fields-without-needs-csum": (_CsumFieldsUsed, "net-tx-header",
                                       "VIRTIO-5.1.6.2.2-DEV-NO-CSUM-FIELDS"),
    "vlan-filter-without-ctrl-vlan": (_VlanFilterAlways, "net-vlan",
                                      "VIRTIO-5.1.6.5.3.1-DEV-NO-VLAN-FILTER"),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_net_bugs_are_caught(name: str, ref_net: Target) -> None:
    make, check, rule = PLANTED[name]
    assert set(_statuses(run_check(ref_net, check), rule)) == {"pass"}, (name, "unplanted")
    t = _target(make(), f"planted-{name}")
    try:
        rs = run_check(t, check)
    finally:
        t.stop()
    assert "fail" in _statuses(rs, rule), (name, [r for r in rs if r.status != "pass"])
    assert not [r for r in rs if r.status == "error"], rs


def test_planted_net_mixed_chain_head_only_is_caught(ref_net: Target, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """D5's bug planted in our back-end: a descriptor with INDIRECT after the head is read
    as a plain buffer (rte_vhost sends the table as the frame); and the unplanted one
    passes the mixed chain and the WRITE flag on the indirect descriptor."""
    rules = ("VIRTIO-2.7.5.3-DEV-MIXED-CHAIN", "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT",
             "VIRTIO-2.7.4-DEV-NO-LAYOUT-ASSUMPTION", "VIRTIO-2.7.10-DEV-SPURIOUS")
    rs = run_check(ref_net, "net-chains")
    assert all(_statuses(rs, r) == ["pass"] for r in rules), rs
    walk = ref_split.SplitQueue._walk

    def head_only(self, head):  # type: ignore[no-untyped-def]
        d16 = self._d16
        if not d16[8 * head + 6] & ref_split.F_INDIRECT:
            orig = {}
            i = head
            while d16[8 * i + 6] & ref_split.F_NEXT and d16[8 * i + 7] < self.size:
                i = d16[8 * i + 7]
                if d16[8 * i + 6] & ref_split.F_INDIRECT:
                    orig[i] = d16[8 * i + 6]
                    d16[8 * i + 6] &= ~ref_split.F_INDIRECT  # the table read as data
            try:
                return walk(self, head)
            finally:
                for k, v in orig.items():
                    d16[8 * k + 6] = v
        return walk(self, head)

    monkeypatch.setattr(ref_split.SplitQueue, "_walk", head_only)
    rs = run_check(ref_net, "net-chains")
    assert _statuses(rs, "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN") == ["fail"], rs
    assert _statuses(rs, "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT") == ["pass"], rs


def test_report_takes_applicability_from_the_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Whatever checks run, the report's headline leaves out the rules the offer makes
    inapplicable (registry conditions, from the offer seen at connection): with only
    ``used-len`` run, the zoned rules are still not-offered, not not-implemented."""
    from conformance.results import NotJudged, Status
    from conformance.vhost_user.report import run_conformance

    rep = run_conformance("reference-vhost-user-blk", tmp_path, checks=("used-len",))
    v = rep.verdicts()
    for rule in ("VIRTIO-5.2.6.2-DEV-CROSS-ZONE", "VIRTIO-5.2.5.2-DEV-ZONED-MODEL",
                 "VIRTIO-2.8.18-DEV-LIST-ORDER"):
        assert v[rule].status is Status.NOT_JUDGED and v[rule].reason is NotJudged.NOT_OFFERED
    line = next(n for n in rep.notes if n.startswith("device-side MUSTs, all chapters"))
    applicable = int(re.search(r"(\d+) applicable", line).group(1))  # type: ignore[union-attr]
    assert applicable < 40, line  # 31-32, not the 62 counted before the conditions


# --- packed rings: a list not made available is left alone (2.8.15) -----------------------


def _packed_net(dev: rnet.NetDevice, name: str) -> Target:
    """Our net back-end offering RING_PACKED too, frames looped back."""
    return _target(dev, name, rnet.OFFERED | 1 << 30 | 1 << 34)


def test_planted_packed_list_taken_before_available_is_caught(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """2.8.15 WAIT-AVAIL and 2.8.18 LIST-ORDER on our packed net back-end; then one planted
    to look at the USED bit only (a slot whose AVAIL bit was never flipped is taken): the
    list written but not made available is used, and caught."""
    import inspect
    import textwrap

    from reference_impl.virtio import packed as ref_packed

    rules = ("VIRTIO-2.8.15-DEV-WAIT-AVAIL", "VIRTIO-2.8.18-DEV-LIST-ORDER")
    t = _packed_net(rnet.NetDevice(), "reference-net-packed")
    try:
        rs = run_check(t, "net-packed")
        assert all(_statuses(rs, r) == ["pass"] for r in rules), rs
        assert not [r for r in rs if r.status in ("fail", "error")], rs
        src = textwrap.dedent(inspect.getsource(ref_packed.PackedQueue.process))
        cond = "if (flags >> 7 & 1) != w or (flags >> 15) == w:"
        assert cond in src
        ns: dict[str, object] = {}
        exec(compile(src.replace(cond, "if (flags >> 15) == w:"), ref_packed.__file__, "exec"),
             vars(ref_packed), ns)
        monkeypatch.setattr(ref_packed.PackedQueue, "process", ns["process"])
        c = ck.Ctx(t, "net-packed")
        nc._wait_avail(t, c, nc.NET_WANT | 1 << 34)  # the step itself, not every round
    finally:
        t.stop()
    assert _statuses(c.results, "VIRTIO-2.8.15-DEV-WAIT-AVAIL") == ["fail"], c.results
