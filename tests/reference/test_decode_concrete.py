"""The decode kernel on concrete registers, by Hypothesis (and by CrossHair if present).

The Z3 proof already covers every input; these runs check the *int* interpretation of
the kernel (the one the hypervisor's tables come from) and serve as the place where the
optional CrossHair backend is tried (see docs/crosshair.md).
"""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl import _decode
from spec.hypercalls import abi

from .test_z3_equivalence import spec_decode

WORD = st.integers(0, 2**64 - 1)
FIDS = st.one_of(WORD, st.sampled_from([r.function_id for r in abi.TABLE]).flatmap(
    lambda fid: WORD.map(lambda hi: (hi << 32 | fid) & (2**64 - 1))))


def _impl(regs: dict, conv: str) -> tuple:
    c = abi.CONVENTIONS[conv]
    status, index, fields = _decode.decode(regs[c["id"]], [regs[r] for r in c["args"]])
    return status, index, (*fields, *([0] * (_decode.MAX_ARGS - len(fields))))


def _check(conv: str, fid: int, args: list[int]) -> None:
    c = abi.CONVENTIONS[conv]
    regs = dict(zip(c["args"], args, strict=False))
    regs[c["id"]] = fid
    assert _impl(regs, conv) == spec_decode(regs, conv)


@given(conv=st.sampled_from(list(abi.CONVENTIONS)), fid=FIDS,
       args=st.lists(st.one_of(WORD, st.integers(0, 70)), min_size=7, max_size=7))
def test_decode_kernel_matches_spec_on_ints(conv: str, fid: int, args: list[int]) -> None:
    _check(conv, fid, args)


HAVE_CROSSHAIR = importlib.util.find_spec("hypothesis_crosshair_provider") is not None


if HAVE_CROSSHAIR:
    # Built only when the backend exists: settings(backend=...) validates at import time.
    @settings(backend="crosshair", max_examples=20, deadline=None, derandomize=False)
    @given(fid=WORD, a=WORD, b=WORD, c=WORD, d=WORD)
    def test_decode_kernel_matches_spec_crosshair(fid: int, a: int, b: int, c: int,
                                                  d: int) -> None:
        _check("arm64", fid, [a, b, c, d, 0, 0, 0])
else:
    @pytest.mark.skip(reason="hypothesis-crosshair not installed (pip install -e '.[crosshair]')")
    def test_decode_kernel_matches_spec_crosshair() -> None:
        """Placeholder so the skip (and its reason) shows in the report."""
