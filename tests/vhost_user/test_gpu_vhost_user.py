"""qemu-vhost-user-gpu: negotiation and 2D commands judged by the GPU model; each check
catches the bug it guards against when that bug is planted in the device's answers."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from conformance.vhost_user import checks as ck
from conformance.vhost_user import fs_checks as fc
from conformance.vhost_user import gpu_checks as gc
from conformance.vhost_user.targets import Target, start_qemu_gpu
from spec.virtio.devices import gpu as G

from .conftest import _start

Mutate = Callable[[bytes, bytes, dict[str, object]], bytes]


@pytest.fixture
def gpu() -> Iterator[Target]:
    t = _start(start_qemu_gpu, "vhost-user-gpu")
    yield t
    t.stop()


def _plant(monkeypatch: pytest.MonkeyPatch, mutate: Mutate) -> None:
    """The device's answer (the writable bytes) rewritten before the judge sees it."""
    real = fc.FsSession.call_raw

    def call_raw(self: fc.FsSession, req: bytes, out_size: int,
                 **kw: object) -> tuple[object, int | None, bytes]:
        step, length, written = real(self, req, out_size, **kw)  # type: ignore[arg-type]
        return step, length, mutate(req, written, kw)

    monkeypatch.setattr(fc.FsSession, "call_raw", call_raw)


def _results(t: Target) -> list[ck.Result]:
    return [r for name in ck.check_names("gpu") for r in ck.run_check(t, name)]


def test_gpu_checks_on_vhost_user_gpu(gpu: Target) -> None:
    results = _results(gpu)
    bad = [r for r in results if r.status in ("fail", "error")]
    assert not bad, "\n".join(f"{r.check} {r.rule} {r.detail}" for r in bad)
    passed = {r.rule for r in results if r.status == "pass"}
    assert {"VIRTIO-5.7.6-DEV-RESPONSE-TYPE", "VIRTIO-5.7.6.5-DEV-FENCE",
            "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", "PVSPEC-RING-PROGRESS",
            "VIRTIO-6.2-DEV-OFFER-VERSION-1"} <= passed
    # G1 is still there (a strict expectation: it fails once QEMU answers otherwise)
    assert any(r.status == "expected-deviation" and r.rule == "VIRTIO-5.7.6-DEV-RESPONSE-TYPE"
               for r in results)


def _no_fence(req: bytes, written: bytes, kw: dict[str, object]) -> bytes:
    """Fenced commands come back without FLAG_FENCE."""
    if G.Hdr.decode(req).flags & G.FLAG_FENCE and len(written) >= G.HDR.size:
        r = G.Hdr.decode(written)
        return G.Hdr(r.type, 0, 0, r.ctx_id, r.ring_idx).encode() + written[G.HDR.size:]
    return written


def _dup_create_ok(req: bytes, written: bytes, kw: dict[str, object]) -> bytes:
    """A second CREATE_2D of an existing id answers OK."""
    if G.Hdr.decode(req).type == G.CMD_RESOURCE_CREATE_2D and \
            struct.unpack_from("<I", written)[0] == G.RESP_ERR_INVALID_RESOURCE_ID:
        return struct.pack("<I", G.RESP_OK_NODATA) + written[4:]
    return written


def _unwritten(req: bytes, written: bytes, kw: dict[str, object]) -> bytes:
    """The second poisoned run leaves byte 8 (fence_id) as the driver's."""
    if kw.get("poison") == fc.POISONS[1]:
        return written[:8] + bytes([fc.POISONS[1]]) + written[9:]
    return written


@pytest.mark.parametrize(("check", "mutate", "caught"), [
    ("gpu-2d", _no_fence, "VIRTIO-5.7.6.5-DEV-FENCE"),
    ("gpu-2d", _dup_create_ok, "VIRTIO-5.7.6-DEV-RESPONSE-TYPE"),
    ("gpu-used-len", _unwritten, "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"),
], ids=lambda v: v.__name__ if callable(v) else str(v))
def test_planted_gpu_bug_is_caught(gpu: Target, monkeypatch: pytest.MonkeyPatch, check: str,
                                   mutate: Mutate, caught: str) -> None:
    _plant(monkeypatch, mutate)
    results = ck.run_check(gpu, check)
    assert not [r for r in results if r.status == "error"], results
    assert caught in {r.rule for r in results if r.status == "fail"}, [
        (r.rule, r.detail) for r in results if r.status != "pass"]


def test_config_judge() -> None:
    cfg = struct.pack("<IIII", 0, 0, 1, 0)
    assert G.check_config(cfg) is None
    for n in (0, 17):
        v = G.check_config(struct.pack("<IIII", 0, 0, n, 0))
        assert v is not None and v.requirement == "PVSPEC-GPU-NUM-SCANOUTS"
    assert G.check_config(b"\0" * 8) is not None
    assert gc.UNBACKED in ck.EXPECTED_DEVIATIONS[
        ("qemu-vhost-user-gpu", "gpu-2d", "VIRTIO-5.7.6-DEV-RESPONSE-TYPE")][1]
