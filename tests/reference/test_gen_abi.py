"""The generated ABI constants are current, and the implementation never imports spec."""

from __future__ import annotations

import subprocess
import sys

from reference_impl import gen_abi


def test_generated_constants_are_not_stale():
    assert gen_abi.TARGET.read_text() == gen_abi.render(), (
        "reference_impl/_abi_constants.py is stale: run python -m reference_impl.gen_abi")


def test_implementation_does_not_import_spec():
    code = ("import sys, reference_impl; "
            "h = reference_impl.Hypervisor(); h.hypercall(0, 0, {'x0': 0x84000000}); "
            "print(sorted(m for m in sys.modules if m == 'spec' or m.startswith('spec.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
