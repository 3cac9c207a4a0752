"""Guest memory as an ABI reads it: one field reader and writer for concrete and symbolic
bytes.

A struct or descriptor in guest memory is ``bytes`` (the conformance oracle, a real guest)
or a tuple of 8-bit Z3 terms (the proofs: every byte the guest could have written), and
the codecs (:mod:`spec.hypercalls.xen`, :mod:`spec.hypercalls.ffa`) read and write their
fields through these two functions only, so the concrete and the symbolic reading are the
same code.  Fields are little-endian (Xen's and FF-A's Arm ABIs, x86's); a field reads as a
word: an int from bytes, a 64-bit term from terms.  The concrete path stays plain Python
(``int.from_bytes``): the oracle pays nothing for the symbolic one.
"""

from __future__ import annotations

from typing import Any, Protocol

import z3

from spec import logic

__all__ = ["Memory", "Placed", "read_field", "write_bytes", "write_field"]

Memory = bytes | tuple[Any, ...]


class Placed(Protocol):
    """A field: where it starts in its struct and how many bytes it has (at most 8)."""

    @property
    def offset(self) -> int: ...

    @property
    def size(self) -> int: ...


def read_field(mem: Memory, f: Placed, at: int = 0) -> Any:
    """The unsigned little-endian field ``f`` of the struct at byte ``at`` of ``mem``
    (zero past its end)."""
    lo = at + f.offset
    chunk = mem[lo:lo + f.size]
    if type(chunk) is bytes:
        return int.from_bytes(chunk, "little")
    if all(type(b) is int for b in chunk):
        return int.from_bytes(bytes(chunk), "little")
    parts = [b if logic.is_sym(b) else z3.BitVecVal(b, 8) for b in chunk]
    parts += [z3.BitVecVal(0, 8)] * (f.size - len(parts))
    whole = parts[0] if len(parts) == 1 else z3.Concat(*reversed(parts))
    return z3.ZeroExt(logic.WORD - 8 * f.size, whole)


def write_field(mem: Memory, f: Placed, value: Any, at: int = 0) -> Memory:
    """``mem`` with field ``f`` of the struct at byte ``at`` set to the low bytes of
    ``value``."""
    lo = at + f.offset
    end = lo + f.size
    if type(mem) is bytes and type(value) is int:
        return mem[:lo] + (value & ((1 << 8 * f.size) - 1)).to_bytes(f.size, "little") \
            + mem[end:]
    v = value if logic.is_sym(value) else z3.BitVecVal(value & logic.MASK64, logic.WORD)
    new = tuple(z3.Extract(8 * i + 7, 8 * i, v) for i in range(f.size))
    old = tuple(mem)
    return (*old[:lo], *new, *old[end:])


def write_bytes(mem: Memory, at: int, data: bytes) -> Memory:
    """``mem`` with ``data`` (concrete bytes: reserved fields, gaps) placed at ``at``."""
    if not data:
        return mem
    if type(mem) is bytes:
        return mem[:at] + data + mem[at + len(data):]
    old = tuple(mem)
    return (*old[:at], *data, *old[at + len(data):])
