"""Z3 proof: the implementation's decode kernel equals the spec's codec on every input.

Both sides are run on free 64-bit Z3 registers.  The spec's ``codec.decode`` is explored
path by path with :func:`spec.symbolic.explore` and folded with ``merge``; the kernel
(:func:`reference_impl._decode.decode`, the code whose tables the hypervisor's entry
functions are built from) is explored the same way with ``lshr=z3.LShR``.  Z3 then
shows that no register file makes the two disagree on the status, the row or any field.
"""

from __future__ import annotations

import pytest
import z3

from reference_impl import _decode
from reference_impl._abi_constants import ROWS
from spec import profile as spec_profile
from spec import symbolic
from spec.hypercalls import abi, codec

CONVS = list(abi.CONVENTIONS)


def _pad(fields: tuple) -> tuple:
    return (*fields, *([0] * (_decode.MAX_ARGS - len(fields))))


def spec_decode(regs: dict, conv: str) -> tuple:
    """The spec's answer in the kernel's shape: (status, row index, padded fields), for
    the reference's SMCCC 1.1, which knows no SVE hint: a hinted id is an unknown one."""
    out = codec.decode(regs, conv)
    assert not spec_profile.hint_honoured(spec_profile.DEFAULT)
    if out.hinted:
        return codec.NOT_SUPPORTED, _decode.NO_ROW, _pad(())
    if isinstance(out, codec.DecodeError):
        index = abi.TABLE.index(out.row) if out.row is not None else _decode.NO_ROW
        return out.code, index, _pad(())
    return 0, abi.TABLE.index(out.row), _pad(out.args)


def impl_decode(regs: dict, conv: str, lshr=z3.LShR) -> tuple:
    c = abi.CONVENTIONS[conv]
    status, index, fields = _decode.decode(regs[c["id"]], [regs[r] for r in c["args"]],
                                           lshr=lshr)
    return status, index, _pad(fields)


def test_rows_in_spec_order():
    assert [r[0] for r in ROWS] == [r.name for r in abi.TABLE]
    assert tuple(r.function_id for r in abi.TABLE) == _decode.FUNCTION_IDS


@pytest.mark.parametrize("conv", CONVS)
def test_decode_kernel_equals_spec_codec_for_all_registers(conv: str) -> None:
    regs = {r: z3.BitVec(f"{conv}_{r}", 64) for r in codec.registers(conv)}
    spec_paths = symbolic.explore(lambda: spec_decode(regs, conv), prune=False)
    impl_paths = symbolic.explore(lambda: impl_decode(regs, conv, lshr=z3.LShR), prune=False)
    assert len(spec_paths) > len(abi.TABLE)  # one per row and per reserved-bit failure
    spec_value, impl_value = symbolic.merge(spec_paths), symbolic.merge(impl_paths)
    solver = z3.Solver()
    solver.add(z3.Not(symbolic.same(spec_value, impl_value)))
    result = solver.check()
    assert result == z3.unsat, solver.model() if result == z3.sat else result


def test_proof_has_teeth() -> None:
    """The same proof finds a register file when the kernel's table is wrong."""
    conv = "arm64"
    regs = {r: z3.BitVec(f"t_{r}", 64) for r in codec.registers(conv)}
    saved = _decode.ROW_FIELDS
    index = next(i for i, r in enumerate(ROWS) if r[0] == "EVTCHN_SEND")
    try:  # port field 8 bits wide instead of 16
        bad = list(saved)
        bad[index] = (_decode._field(8, True),)
        _decode.ROW_FIELDS = tuple(bad)
        impl = symbolic.merge(symbolic.explore(lambda: impl_decode(regs, conv, z3.LShR),
                                               prune=False))
    finally:
        _decode.ROW_FIELDS = saved
    spec = symbolic.merge(symbolic.explore(lambda: spec_decode(regs, conv), prune=False))
    solver = z3.Solver()
    solver.add(z3.Not(symbolic.same(spec, impl)))
    assert solver.check() == z3.sat
    model = solver.model()
    assert model.eval(regs["x0"]).as_long() & 0xFFFFFFFF == ROWS[index][1]
