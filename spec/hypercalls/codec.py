"""Calling conventions: codecs between a register file and a typed call.

* ``arm64``: HVC with the function id in w0 (the upper half of x0 is ignored, SMCCC 2.6),
  arguments in x1..x7, the result in x0 (x1..x3 cleared).
* ``x86_64``: VMCALL with the function id in eax, arguments in rdi, rsi, rdx, r10, r8, r9
  (Xen's and Linux's hypercall order), the result in rax.

SMC32/HVC32 functions read only the low 32 bits of each argument register (SMCCC 2.6).
Bit 16 of the function id is SMCCC 1.3's SVE live-state hint (:data:`SVE_HINT`): the
decoder names the call it qualifies and marks it ``hinted``; whether the hint is honoured
or the id is unknown depends on the implementation's SMCCC version, which
:func:`spec.machine.apply` reads from the profile.
The decoder is total: every 64-bit value of every register yields either a :class:`Call`
or a :class:`DecodeError` with the code the caller sees.  It runs unchanged on Z3 words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from spec import logic
from spec.hypercalls.abi import BY_ID, CONVENTIONS, HV_ERRORS, SVE_HINT, TABLE, Row

__all__ = ["Call", "DecodeError", "decode", "encode_call", "encode_result", "registers"]


@attrs.frozen
class Call:
    row: Row
    args: tuple[Any, ...]
    # the function id had the SVE hint bit set: the call it names from SMCCC 1.3, an
    # unknown function before (spec.machine.apply decides, by the profile)
    hinted: Any = False


@attrs.frozen
class DecodeError:
    code: int  # negative; NOT_SUPPORTED and INVALID_PARAMETERS are -1 / -2 in both spaces
    reason: str
    row: Row | None = None
    hinted: Any = False  # as for Call: the id named ``row`` with the SVE hint bit set


NOT_SUPPORTED = HV_ERRORS["NOT_SUPPORTED"]
INVALID_PARAMETERS = HV_ERRORS["INVALID_PARAMETERS"]


def registers(conv: str) -> tuple[str, ...]:
    """Every register the convention reads."""
    c = CONVENTIONS[conv]
    return (c["id"], *c["args"])


def decode(regs: Mapping[str, Any], conv: str) -> Call | DecodeError:
    """The typed call a register file asks for, or why it asks for none."""
    c = CONVENTIONS[conv]
    fid = logic.bits(regs[c["id"]], 0, 32)
    if not logic.is_sym(fid):  # concrete: the same answer as the loop below, by lookup
        row = BY_ID.get(fid)
        if row is not None:
            return _decode_args(row, regs, c["args"])
        row = BY_ID.get(fid & ~SVE_HINT)
        if row is None:
            return DecodeError(NOT_SUPPORTED, "unknown function id")
        return _decode_args(row, regs, c["args"], hinted=True)
    for row in TABLE:
        if fid == row.function_id:
            return _decode_args(row, regs, c["args"])
        if fid == row.function_id | SVE_HINT:
            return _decode_args(row, regs, c["args"], hinted=True)
    return DecodeError(NOT_SUPPORTED, "unknown function id")


def _decode_args(row: Row, regs: Mapping[str, Any], names: Sequence[str],
                 hinted: bool = False) -> Call | DecodeError:
    limit = 64 if row.smc64 else 32
    values = []
    for arg, reg in zip(row.args, names, strict=False):
        raw = regs[reg]
        if arg.width < limit and logic.bits(raw, arg.width, limit - arg.width) != 0:
            return DecodeError(INVALID_PARAMETERS, f"reserved bits set in {arg.name}", row,
                               hinted)
        values.append(logic.bits(raw, 0, arg.width))
    return Call(row, tuple(values), hinted)


def encode_call(row: Row, args: tuple[int, ...], conv: str) -> dict[str, int]:
    """A register file that asks for ``row`` with ``args`` (other registers zero)."""
    c = CONVENTIONS[conv]
    regs = dict.fromkeys(registers(conv), 0)
    regs[c["id"]] = row.function_id
    for reg, value in zip(c["args"], args, strict=False):
        regs[reg] = logic.word(value)
    return regs


def encode_result(ret: Any, conv: str) -> dict[str, Any]:
    """The register file a caller sees after the call returns ``ret`` (a word)."""
    out = dict.fromkeys(CONVENTIONS[conv]["result"], 0)
    out[CONVENTIONS[conv]["result"][0]] = ret
    return out
