"""The ring kernels on ints agree with plain arithmetic definitions (2.7, 2.8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio import ring_math as rm

u16 = st.integers(0, 0xFFFF)
sizes = st.sampled_from([1 << k for k in range(16)])


@given(u16, u16)
def test_u16_wrap_matches_modulo(a: int, b: int) -> None:
    assert rm.idx_add(a, b) == (a + b) % 65536
    assert rm.idx_sub(a, b) == (a - b) % 65536
    assert rm.idx_sub(rm.idx_add(a, b), a) == b


@given(u16, u16, u16)
def test_need_event_matches_window(ev: int, new: int, old: int) -> None:
    window = {(old + k) % 65536 for k in range((new - old) % 65536)}
    assert bool(rm.vring_need_event(ev, new, old)) == (ev in window)


def test_need_event_examples_across_wrap() -> None:
    assert rm.vring_need_event(65535, 1, 65534)  # passed 65535 while wrapping
    assert rm.vring_need_event(0, 1, 65535)
    assert not rm.vring_need_event(1, 1, 65535)  # position 1 not written yet
    assert not rm.vring_need_event(5, 5, 5)  # nothing written


@given(sizes, st.integers(0, 1 << 40).map(lambda x: x * 16))
def test_split_sizes_and_alignment(n: int, base: int) -> None:
    assert rm.desc_table_size(n) == 16 * n
    assert rm.avail_ring_size(n) == 6 + 2 * n
    assert rm.used_ring_size(n) == 6 + 8 * n
    desc, avail, used = rm.contiguous_layout(base, n)
    assert rm.split_layout_ok(desc, avail, used, n)
    assert used % 4 == 0 and avail % 2 == 0 and desc % 16 == 0
    assert rm.used_event_addr(avail, n) == avail + 4 + 2 * n
    assert rm.avail_event_addr(used, n) == used + 4 + 8 * n


def test_queue_size_rule() -> None:
    assert all(rm.valid_split_size(1 << k) for k in range(16))
    for bad in (0, 3, 65536, 32769, 100):
        assert not rm.valid_split_size(bad)
    assert rm.valid_packed_size(100) and not rm.valid_packed_size(32769)


@given(st.integers(0, 0xFFFF), st.booleans())
def test_packed_flags_roundtrip(flags: int, wrap: bool) -> None:
    a = rm.mark_available(flags, wrap)
    u = rm.mark_used(flags, wrap)
    assert rm.is_available(a, wrap) and not rm.is_used(a, wrap)
    assert rm.is_used(u, wrap) and not rm.is_available(u, wrap)
    assert not rm.is_available(a, not wrap)
    assert a & ~0x8080 == flags & ~0x8080


@given(st.integers(1, 300), st.data())
def test_packed_need_event_matches_linear(n: int, data: st.DataObject) -> None:
    new = data.draw(st.integers(0, n - 1))
    off = data.draw(st.integers(0, n - 1))
    new_wrap, ev_wrap = data.draw(st.booleans()), data.draw(st.booleans())
    added = data.draw(st.integers(1, n))
    lin_new = new + (n if new_wrap else 0)
    lin_ev = off + (n if ev_wrap else 0)
    dist = (lin_new - lin_ev) % (2 * n)
    word = rm.encode_event(off, ev_wrap)
    assert rm.event_off(word) == off and rm.event_wrap(word) == ev_wrap
    assert bool(rm.packed_need_event(word, new, new_wrap, added, n)) == (1 <= dist <= added)


@given(st.integers(1, 300), st.data())
def test_packed_advance_flips_at_end(n: int, data: st.DataObject) -> None:
    idx = data.draw(st.integers(0, n - 1))
    step = data.draw(st.integers(1, n))
    wrap = data.draw(st.booleans())
    nidx, nwrap = rm.packed_advance(idx, wrap, n, step)
    assert nidx == (idx + step) % n
    assert nwrap == (wrap if idx + step < n else not wrap)


def test_features_roundtrip() -> None:
    f = rm.RingFeatures(indirect=True, event_idx=False, in_order=True, ring_reset=True)
    assert rm.RingFeatures.from_bits(f.to_bits()) == f
    assert f.to_bits() == (1 << 28) | (1 << 35) | (1 << 40)
