"""The decode kernel: function id and argument registers -> (status, row index, fields).

Written once for two interpretations, like the spec: it uses only ``&``, ``==``, ``!=``
and a logical-shift helper, so it runs on Python ints (the hypervisor's own tables are
built from :data:`ROW_FIELDS`) and on Z3 bit-vectors (``tests/reference/test_z3_equivalence``
passes ``lshr=z3.LShR`` and proves it equal to the spec's codec for every register value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reference_impl._abi_constants import ROWS

OK, NOT_SUPPORTED, INVALID_PARAMETERS = 0, -1, -2
NO_ROW = -1
MAX_ARGS = max(len(r[6]) for r in ROWS)
MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1


def _field(width: int, smc64: bool) -> tuple[int, int, int]:
    """(field mask, first reserved bit, reserved mask after shifting) of one argument.

    SMC32 calls read only the low 32 bits of a register, so only bits ``width..31`` are
    reserved there; SMC64 calls reserve ``width..63``.
    """
    limit = 64 if smc64 else 32
    reserved = (1 << (limit - width)) - 1 if width < limit else 0
    return (1 << width) - 1, width, reserved


FUNCTION_IDS: tuple[int, ...] = tuple(r[1] for r in ROWS)
ROW_FIELDS: tuple[tuple[tuple[int, int, int], ...], ...] = tuple(
    tuple(_field(width, r[2]) for _, width in r[6]) for r in ROWS
)
ROW_BY_ID: dict[int, int] = {fid: i for i, fid in enumerate(FUNCTION_IDS)}


def _lshr(x: int, n: int) -> int:
    return x >> n


def decode(
    fid_word: Any, args: Sequence[Any], lshr: Callable[[Any, int], Any] = _lshr
) -> tuple[int, int, tuple[Any, ...]]:
    """Decode one call: ``(OK, row, fields)``, ``(INVALID_PARAMETERS, row, ())`` when a
    reserved bit is set, ``(NOT_SUPPORTED, NO_ROW, ())`` for an unknown function id.

    ``args`` are the convention's argument registers in order (at least as many as the
    row has fields).  Branches are plain ``if`` so a symbolic explorer can fork on them.
    """
    fid = fid_word & MASK32
    for index, function_id in enumerate(FUNCTION_IDS):
        if fid == function_id:
            fields = []
            for (mask, shift, reserved), raw in zip(ROW_FIELDS[index], args, strict=False):
                if reserved and lshr(raw, shift) & reserved != 0:
                    return INVALID_PARAMETERS, index, ()
                fields.append(raw & mask)
            return OK, index, tuple(fields)
    return NOT_SUPPORTED, NO_ROW, ()
