"""The architecture holds: import contracts (lint-imports) and no mypy error beyond the
committed baseline.

* ``lint-imports`` checks the contracts in pyproject.toml ``[tool.importlinter]``: spec
  imports neither reference_impl nor conformance; reference_impl imports neither spec
  nor conformance; nothing imports conformance.cli or conformance.pytest_plugin.
* mypy (settings in ``[tool.mypy]``) may report only errors listed in mypy-baseline.txt;
  when some have gone, a warning says to shrink it with ``scripts/mypy-baseline``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.architecture


def _mypy_baseline() -> ModuleType:
    """scripts/mypy-baseline (no .py suffix: an executable), imported as a module."""
    path = ROOT / "scripts" / "mypy-baseline"
    loader = SourceFileLoader("mypy_baseline", str(path))
    spec = importlib.util.spec_from_loader("mypy_baseline", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_import_contracts_are_kept():
    proc = subprocess.run([str(BIN / "lint-imports"), "--no-cache", "--no-logo"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_baseline_normalisation():
    mb = _mypy_baseline()
    out = ("spec/a.py:12: error: Name \"x\" already defined on line 3  [no-redef]\n"
           "spec/a.py:40:7: error: Missing return statement  [return]\n"
           "spec/a.py:41: note: See https://mypy.readthedocs.io\n"
           "spec/a.py:90: error: Missing return statement  [return]\n"
           "Found 3 errors in 1 file (checked 1 source file)\n")
    lines = mb.normalize(out)
    assert lines == ["spec/a.py: error: Missing return statement  [return]"] * 2 + [
        "spec/a.py: error: Name \"x\" already defined on line N  [no-redef]"]
    new, gone = mb.compare(lines, lines[1:])
    assert new == ["spec/a.py: error: Missing return statement  [return]"] and gone == []
    assert mb.compare(lines[1:], lines) == ([], new)


def test_mypy_reports_no_error_beyond_the_baseline():
    mb = _mypy_baseline()
    new, gone = mb.compare(mb.run_mypy(sys.executable), mb.read_baseline())
    if gone:
        warnings.warn(f"{len(gone)} mypy errors of mypy-baseline.txt are gone: shrink the "
                      "baseline with `.venv/bin/python scripts/mypy-baseline`", stacklevel=1)
    assert not new, ("mypy errors not in mypy-baseline.txt (fix them; a baseline is for old "
                     "errors, not new ones):\n" + "\n".join(new))
