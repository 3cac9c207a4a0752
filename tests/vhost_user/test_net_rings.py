"""The session's packed queue (conformance.vhost_user.net_rings.PackedQueue) against the
spec's packed model device over the same shared memory, no socket: a conforming device
gives clean verdicts through several wraps, planted device bugs are caught by the oracle
on the very steps the session builds (publication image, first flags last)."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.vhost_user.memory import MemfdMemory
from conformance.vhost_user.net_rings import PackedQueue, SplitQueue
from spec.virtio import packed as pk
from spec.virtio import split as sp
from spec.virtio.ring_math import RingFeatures

SIZE, BASE, DATA = 16, 0x100000, 0x110000


def _rounds(queue: Any, mem: MemfdMemory, device_step: Any, rounds: int = 7,
            per: int = 5) -> list[set[str]]:
    """``rounds`` steps of ``per`` device-writable buffers (5 x 7 = 35 on a 16-slot ring:
    two wraps); the device serves each step; the oracle judges it."""
    out: list[set[str]] = []
    for r in range(rounds):
        if queue.room() < 2 * per:
            out.append({"ring full: the driver got nothing back"})
            break
        for k in range(per):
            at = DATA + (r * per + k) % SIZE * 256
            mem.write(at, b"\xa5" * 64)
            queue.add([(at, 32, True), (at + 32, 32, True)], indirect=False)
        before, _ring, _kick = queue.publish()
        notified = device_step(mem)
        v = queue.judge(before, mem.frozen(), notified, True)
        queue.collect()
        out.append({x.rule for x in v.violations if x.level == "MUST"})
    return out


def _packed(bugs: frozenset[str]) -> tuple[PackedQueue, MemfdMemory, Any]:
    mem = MemfdMemory(1 << 17, BASE)
    feats = RingFeatures(packed=True)
    q = PackedQueue(None, 0, mem, BASE, SIZE, feats, BASE + 0x8000, 8)  # type: ignore[arg-type]
    return q, mem, _device(pk, pk.device_init(q.layout, feats, bugs))


def _device(model: Any, dev: Any) -> Any:
    """One step of the spec's model device ``model`` (split or packed): take what is
    available, answer 40 bytes into each buffer, decide the notification."""
    state = [dev]

    def step(m: MemfdMemory) -> bool:
        d, chains = model.device_poll(m, state[0])
        d = model.device_complete(m, d, [(c.head, b"\x11" * 40) for c in chains])
        state[0], need = model.device_must_interrupt(m, d)
        return bool(need)

    return step


def test_packed_queue_clean_through_wraps() -> None:
    q, mem, step = _packed(frozenset())
    try:
        assert _rounds(q, mem, step) == [set()] * 7
        assert q.drv.used_wrap is True and q.drv.next_used == 35 * 2 % SIZE  # 2 slots each
    finally:
        mem.close()


@pytest.mark.parametrize("bug", ["len-too-big", "wrap-not-flipped", "no-notify-on-event",
                                 "flags-first"])
def test_packed_queue_planted_device_bugs(bug: str) -> None:
    q, mem, step = _packed(frozenset({bug}))
    try:
        if bug == "no-notify-on-event":
            q.set_used_event(3)  # EVENT_FLAGS_DESC needs EVENT_IDX: without, notify always
        try:
            seen = set().union(*_rounds(q, mem, step))
        except sp.DeviceMisbehaved as e:  # the model driver refuses what no device may do
            seen = {f"driver refused: {e}"}
    finally:
        mem.close()
    if bug in ("no-notify-on-event", "flags-first"):
        # without EVENT_IDX a DESC event is not in force; without an access log the write
        # order is not visible: both stay unseen here, as they must (not judged, not passed)
        assert seen == set(), seen
    else:
        want = {"len-too-big": "PVSPEC-RING-PACKED-USED-LEN",
                "wrap-not-flipped": "PVSPEC-RING-PACKED-DESC-RING"}[bug]
        assert want in seen, (bug, seen)


def test_split_queue_clean() -> None:
    mem = MemfdMemory(1 << 17, BASE)
    feats = RingFeatures()
    q = SplitQueue(None, 0, mem, BASE, SIZE, feats, BASE + 0x8000, 8)  # type: ignore[arg-type]
    step = _device(sp, sp.device_init(q.layout, feats))
    try:
        assert _rounds(q, mem, step, per=3) == [set()] * 7
    finally:
        mem.close()
