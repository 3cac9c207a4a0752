"""Ring arithmetic kernels, written once over :mod:`spec.logic` for ints and Z3 terms.

Everything here is the arithmetic a split (VIRTIO 1.3 2.7) or packed (2.8) virtqueue
needs: free-running 16-bit indices, notification suppression windows, part sizes and
field addresses, and the packed ring's wrap-counter flag encoding.  The concrete ring
models (:mod:`spec.virtio.split`, :mod:`spec.virtio.packed`) call these on ``int``; the
proofs (:mod:`spec.virtio.proofs`) call the very same functions on Z3 bit-vectors, so
what is proved is what runs.  No Python ``<``, ``>>``, ``%`` or ``and`` on words here.
"""

from __future__ import annotations

from typing import Any

import attrs

from spec.logic import MASK64, add, and_, bit, bits, ite, not_, or_, set_bit, sub, ule, ult, word

# Reserved feature bits that change ring behaviour (chapter 6).
F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_RING_PACKED = 34
F_IN_ORDER = 35
F_RING_RESET = 40

MAX_QUEUE_SIZE = 32768  # 2.7: the largest power of two a 16-bit idx can tell full from empty
IDX_MOD = 1 << 16

# Split ring part alignments (2.7, table) and descriptor size.
DESC_ALIGN = 16
AVAIL_ALIGN = 2
USED_ALIGN = 4
DESC_SIZE = 16
USED_ELEM_SIZE = 8

# Packed ring (2.8.1, 2.8.10.1).
AVAIL_BIT = 7
USED_BIT = 15
EVENT_ALIGN = 4
EVENT_SIZE = 4
EVENT_FLAGS_ENABLE = 0
EVENT_FLAGS_DISABLE = 1
EVENT_FLAGS_DESC = 2


@attrs.frozen
class RingFeatures:
    """The negotiated features that ring code consults (a projection of the feature word)."""

    indirect: bool = False
    event_idx: bool = False
    in_order: bool = False
    ring_reset: bool = False
    packed: bool = False

    @classmethod
    def from_bits(cls, features: int) -> RingFeatures:
        def has(b: int) -> bool:
            return bool((features >> b) & 1)

        return cls(
            has(F_INDIRECT_DESC), has(F_EVENT_IDX), has(F_IN_ORDER), has(F_RING_RESET),
            has(F_RING_PACKED),
        )

    def to_bits(self) -> int:
        out = 0
        for on, b in ((self.indirect, F_INDIRECT_DESC), (self.event_idx, F_EVENT_IDX),
                      (self.in_order, F_IN_ORDER), (self.ring_reset, F_RING_RESET),
                      (self.packed, F_RING_PACKED)):
            out |= int(on) << b
        return out


# --- 16-bit free-running indices (2.7.6, 2.7.8, 2.7.13.3) ------------------------------


def u16(x: Any) -> Any:
    """Reduce a word to a 16-bit ring index: indices wrap naturally at 65536."""
    return bits(x, 0, 16)


def idx_add(a: Any, b: Any) -> Any:
    return u16(add(a, b))


def idx_sub(a: Any, b: Any) -> Any:
    """Distance from ``b`` forward to ``a`` on the 16-bit circle."""
    return u16(sub(a, b))


def pending(avail_idx: Any, last_avail: Any) -> Any:
    """How many heads the driver exposed since the device last looked."""
    return idx_sub(avail_idx, last_avail)


def avail_overrun(avail_idx: Any, last_avail: Any, size: Any) -> Any:
    """avail.idx moved further than the ring holds: impossible for a conforming driver."""
    return ult(size, pending(avail_idx, last_avail))


def ring_slot(idx: Any, size: Any) -> Any:
    """Slot of a free-running index in a split ring (size a power of two)."""
    return word(idx) & sub(size, 1)


def vring_need_event(event_idx: Any, new_idx: Any, old_idx: Any) -> Any:
    """Did moving an index from ``old`` to ``new`` pass ``event_idx``? (2.7.7.2, 2.7.10).

    True exactly when ``event_idx`` is one of the positions ``old, old+1, ..., new-1``
    written in this batch (mod 2^16): the other side asked to hear about that position.
    """
    return ult(u16(sub(sub(new_idx, event_idx), 1)), u16(sub(new_idx, old_idx)))


# --- split ring sizes, alignment and addresses (2.7, 2.7.6, 2.7.8) -----------------------


def is_pow2(n: Any) -> Any:
    return and_(n != 0, (n & sub(n, 1)) == 0)


def valid_split_size(n: Any) -> Any:
    return and_(is_pow2(n), ule(n, MAX_QUEUE_SIZE))


def valid_packed_size(n: Any) -> Any:
    """Packed rings need not be powers of two, but hold at most 2^15 entries (2.8)."""
    return and_(n != 0, ule(n, MAX_QUEUE_SIZE))


def aligned(addr: Any, alignment: int) -> Any:
    return (addr & (alignment - 1)) == 0


def align_up(x: Any, alignment: int) -> Any:
    return add(x, alignment - 1) & (MASK64 ^ (alignment - 1))


def _scale(n: Any, k: int) -> Any:
    return word(n * k)


def desc_table_size(n: Any) -> Any:
    return _scale(n, DESC_SIZE)


def avail_ring_size(n: Any) -> Any:
    """flags, idx, ring[n], used_event."""
    return add(6, _scale(n, 2))


def used_ring_size(n: Any) -> Any:
    """flags, idx, ring[n] of {id, len}, avail_event."""
    return add(6, _scale(n, USED_ELEM_SIZE))


def desc_addr(desc: Any, i: Any) -> Any:
    return add(desc, _scale(i, DESC_SIZE))


def avail_flags_addr(avail: Any) -> Any:
    return avail


def avail_idx_addr(avail: Any) -> Any:
    return add(avail, 2)


def avail_ring_addr(avail: Any, i: Any) -> Any:
    return add(avail, add(4, _scale(i, 2)))


def used_event_addr(avail: Any, n: Any) -> Any:
    return avail_ring_addr(avail, n)


def used_flags_addr(used: Any) -> Any:
    return used


def used_idx_addr(used: Any) -> Any:
    return add(used, 2)


def used_elem_addr(used: Any, i: Any) -> Any:
    return add(used, add(4, _scale(i, USED_ELEM_SIZE)))


def avail_event_addr(used: Any, n: Any) -> Any:
    return used_elem_addr(used, n)


def disjoint(a: Any, a_len: Any, b: Any, b_len: Any) -> Any:
    return or_(ule(add(a, a_len), b), ule(add(b, b_len), a))


def no_wrap(addr: Any, length: Any) -> Any:
    """``[addr, addr + length)`` does not wrap around the 64-bit address space."""
    return ule(addr, sub(MASK64, length))


def split_layout_ok(desc: Any, avail: Any, used: Any, n: Any) -> Any:
    """A usable split layout: size rule, alignments (2.7.1), no overlap, no wrap-around."""
    ds, avs, us = desc_table_size(n), avail_ring_size(n), used_ring_size(n)
    return and_(
        valid_split_size(n),
        aligned(desc, DESC_ALIGN), aligned(avail, AVAIL_ALIGN), aligned(used, USED_ALIGN),
        no_wrap(desc, ds), no_wrap(avail, avs), no_wrap(used, us),
        disjoint(desc, ds, avail, avs), disjoint(desc, ds, used, us),
        disjoint(avail, avs, used, us),
    )


def contiguous_layout(base: Any, n: Any) -> tuple[Any, Any, Any]:
    """The usual one-block placement: table, then avail, then used at the next 4-byte line."""
    desc = base
    avail = add(base, desc_table_size(n))
    used = align_up(add(avail, avail_ring_size(n)), USED_ALIGN)
    return desc, avail, used


# --- packed ring wrap counters and flags (2.8.1, 2.8.21.1) --------------------------------


def iff(a: Any, b: Any) -> Any:
    return or_(and_(a, b), and_(not_(a), not_(b)))


def is_available(flags: Any, wrap: Any) -> Any:
    """Available to a side whose wrap counter is ``wrap``: AVAIL matches it, USED does not."""
    return and_(iff(bit(flags, AVAIL_BIT), wrap), not_(iff(bit(flags, USED_BIT), wrap)))


def is_used(flags: Any, wrap: Any) -> Any:
    """Used in phase ``wrap``: both AVAIL and USED equal the counter."""
    return and_(iff(bit(flags, AVAIL_BIT), wrap), iff(bit(flags, USED_BIT), wrap))


def mark_available(flags: Any, wrap: Any) -> Any:
    """Driver side: AVAIL := wrap, USED := not wrap."""
    return set_bit(set_bit(flags, AVAIL_BIT, wrap), USED_BIT, not_(wrap))


def mark_used(flags: Any, wrap: Any) -> Any:
    """Device side: AVAIL := USED := wrap."""
    return set_bit(set_bit(flags, AVAIL_BIT, wrap), USED_BIT, wrap)


def packed_advance(idx: Any, wrap: Any, n: Any, step: Any = 1) -> tuple[Any, Any]:
    """Move ``step`` (<= n) slots forward; the wrap counter flips when passing the end."""
    nxt = add(idx, step)
    over = ule(n, nxt)
    return ite(over, sub(nxt, n), nxt), ite(over, not_(wrap), wrap)


def event_off(desc_word: Any) -> Any:
    """Descriptor Ring Change Event Offset: bits 0..14 (2.8.14)."""
    return bits(desc_word, 0, 15)


def event_wrap(desc_word: Any) -> Any:
    """Descriptor Ring Change Event Wrap Counter: bit 15 (2.8.14)."""
    return bit(desc_word, 15)


def event_flags(flags_word: Any) -> Any:
    """ENABLE 0, DISABLE 1, DESC 2, 3 reserved (2.8.10)."""
    return bits(flags_word, 0, 2)


def encode_event(off: Any, wrap: Any) -> Any:
    return ite(wrap, bits(off, 0, 15) | 0x8000, bits(off, 0, 15))


def packed_need_event(desc_word: Any, new_idx: Any, new_wrap: Any, added: Any, n: Any) -> Any:
    """With RING_EVENT_FLAGS_DESC: did the last ``added`` slots (ending before
    ``new_idx`` in phase ``new_wrap``) include the slot named by the event structure?

    An event offset in the other wrap phase lies one ring length back, so it is moved
    there before the 16-bit window test of :func:`vring_need_event`.
    """
    off = event_off(desc_word)
    ev = ite(iff(event_wrap(desc_word), new_wrap), off, u16(sub(off, n)))
    return vring_need_event(ev, new_idx, u16(sub(new_idx, added)))
