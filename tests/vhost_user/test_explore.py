"""blk-explore: requests drawn by Hypothesis, judged by the learned disk model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conformance.vhost_user import explore as ex
from conformance.vhost_user.targets import Target, start_reference_blk
from reference_impl.virtio import blk as ref_blk_mod
from spec.virtio.devices import block as blk


def test_batches_never_race_a_write() -> None:
    """Two requests of one batch never share a sector when either writes (VIRTIO does not
    order requests in flight, so the judge could not tell which content is right)."""
    w = blk.Request(blk.T_OUT, 4, data=bytes(1024))
    r_overlap = blk.Request(blk.T_IN, 5, in_len=512)
    r_apart = blk.Request(blk.T_IN, 6, in_len=512)
    wz = blk.Request(blk.T_WRITE_ZEROES, data=blk.encode_segment(3, 2))
    reads = [blk.Request(blk.T_IN, 5, in_len=512), blk.Request(blk.T_IN, 5, in_len=512)]
    assert ex._independent([w, r_overlap, r_apart, wz]) == (w, r_apart)
    assert ex._independent(reads) == tuple(reads)  # reads may share


def test_profile_sets_the_number_of_examples(ref_blk: Target, monkeypatch: Any) -> None:
    monkeypatch.setitem(ex.EXAMPLES, "thorough", 3)
    token = ex.PROFILE.set("thorough")
    try:
        results = ex.check_blk_explore(ref_blk)
    finally:
        ex.PROFILE.reset(token)
    assert results and all(r.status == "pass" for r in results), results
    assert all("in 3 drawn examples" in r.detail for r in results)


@pytest.fixture
def fresh_blk() -> Iterator[Target]:
    """A back-end of its own: what a drawn search finds depends on the disk's history."""
    t = start_reference_blk()
    yield t
    t.stop()


@pytest.mark.parametrize("view", ["backing store", "socket only"])
def test_planted_short_write_is_found_and_shrunk(fresh_blk: Target, monkeypatch: Any,
                                                 view: str) -> None:
    """A back-end that drops the last sector of every multi-sector write is caught by
    drawn requests -- at the write where the backing store shows, by a later read of that
    sector where only the socket does (the learned disk) -- and the example is shrunk."""
    ref_blk = fresh_blk if view == "backing store" else Target(
        f"vhost-user:{fresh_blk.socket_path}", "blk", fresh_blk.socket_path)
    handle = ref_blk_mod.BlkDevice.handle

    def planted(self: Any, out: bytes, in_len: int) -> tuple[int, bytes]:
        typ, _, _ = blk.decode_header(out[:16])
        data = out[16:]
        if typ == blk.T_OUT and len(data) >= 2 * blk.SECTOR:
            out = out[:-blk.SECTOR]  # the write reaches one sector less than it says
            status, got = handle(self, out, in_len)
            return (blk.S_OK if status == blk.S_OK else status), got
        return handle(self, out, in_len)

    monkeypatch.setattr(ref_blk_mod.BlkDevice, "handle", planted)
    results = ex.check_blk_explore(ref_blk)
    failed = [r for r in results if r.status == "fail"]
    assert failed and {r.rule for r in failed} == {"VIRTIO-5.2.6-DEV-DATA-INTEGRITY"}, failed
    assert failed[0].trace, "the shrunk example comes with its evidence"
    assert not [r for r in results if r.status == "pass"]  # nothing credited from a failing run


@pytest.mark.parametrize("name", ["reference-vhost-user-blk"])
def test_explore_runs_in_the_report(tmp_path: Any, name: str) -> None:
    from conformance.vhost_user.report import run_conformance

    rep = run_conformance(name, tmp_path / "r", checks=("blk-explore",))
    assert rep.verdict == "passed", rep.verdict_and_reason()
    assert rep.matrix()["VIRTIO-5.2.6-DEV-DATA-INTEGRITY"]["status"] == "passed"
