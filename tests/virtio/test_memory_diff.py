"""The C-speed write-set and stable-bytes computations equal their byte-loop definitions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio.devices.block import Disk, _stable_ok
from spec.virtio.memory import Span, diff_spans


def naive_diff(before: bytes, after: bytes, base: int) -> list[Span]:
    """Maximal runs of changed bytes, by definition."""
    out, start = [], -1
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        if a != b and start < 0:
            start = i
        elif a == b and start >= 0:
            out.append(Span(base + start, i - start))
            start = -1
    if start >= 0:
        out.append(Span(base + start, len(before) - start))
    return out


# few distinct byte values, so runs, gaps and equal bytes are all common
PAIRS = st.integers(0, 48).flatmap(lambda n: st.tuples(
    st.binary(min_size=n, max_size=n).map(lambda b: bytes(x % 3 for x in b)),
    st.binary(min_size=n, max_size=n).map(lambda b: bytes(x % 3 for x in b))))


@given(PAIRS, st.integers(0, 1 << 40))
def test_diff_spans_is_the_runs_of_changed_bytes(pair: tuple[bytes, bytes], base: int) -> None:
    before, after = pair
    assert diff_spans(before, after, base) == naive_diff(before, after, base)


def _patched(n: int, patches: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    before = bytes(n)
    after = bytearray(before)
    for off, data in patches:
        off %= max(n, 1)
        after[off:off + len(data)] = data[: n - off]
    return before, bytes(after)


# large memories with a few sparse writes, runs crossing the chunk sizes the fast diff
# searches at (8 KiB, 512 B) and the memory's end
SPARSE = st.builds(_patched, st.integers(0, 40_000), st.lists(st.tuples(
    st.integers(0, 40_000) | st.sampled_from([511, 512, 8191, 8192, 16384, 39_999]),
    st.binary(min_size=1, max_size=200).map(lambda b: bytes(x % 3 for x in b))),
    max_size=6))


@given(SPARSE, st.integers(0, 1 << 40))
def test_diff_spans_of_sparse_writes_in_large_memory(pair: tuple[bytes, bytes],
                                                     base: int) -> None:
    before, after = pair
    assert diff_spans(before, after, base) == naive_diff(before, after, base)


@given(st.integers(1, 40).flatmap(lambda n: st.lists(
    st.binary(min_size=n, max_size=n).map(lambda b: bytes(x % 2 for x in b)),
    min_size=4, max_size=4)))
def test_stable_ok_is_its_definition(parts: list[bytes]) -> None:
    after, want = Disk(parts[0], parts[1]), Disk(parts[2], parts[3])
    by_definition = all(a == w for a, w, d in zip(after.stable, want.stable, want.data,
                                                   strict=True) if w == d)
    assert _stable_ok(after, want) == by_definition


def test_the_definition_tells_a_dropped_write_from_a_kept_one() -> None:
    """The oracle above can fail: a stable byte that moved is caught, an unstable one not."""
    want = Disk(b"\x01\x02", b"\x01\x00")  # byte 0 stable, byte 1 still volatile
    assert not _stable_ok(Disk(b"\x01\x02", b"\x00\x00"), want)
    assert _stable_ok(Disk(b"\x01\x02", b"\x01\x07"), want)
    assert naive_diff(b"\x00\x01\x00\x01", b"\x00\x02\x00\x02", 8) == [Span(9, 1), Span(11, 1)]
