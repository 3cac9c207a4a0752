#!/usr/bin/env python3
"""Write dom0's initramfs (cpio "newc", uncompressed: the kernel takes it as it is).

    mkinitrd.py OUT INIT MODULES_DIR

The archive holds /dev (with /dev/console), /proc, /sys, /init (INIT, mode 0755) and
/modules: MODULES_DIR/ORDER (the module names in load order, one a line; may be empty when
the drivers are built into the kernel) and each MODULES_DIR/<name>.ko it names
(scripts/fetch-xen-arm64 writes that directory).  The cpio records are those of
guests/kvm-init/mkcpio.py (its write_archive, imported from there); written to OUT.tmp.PID
and renamed.
Deterministic: every timestamp is 0.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _kvm_mkcpio() -> ModuleType:
    """guests/kvm-init/mkcpio.py, imported from its path."""
    path = Path(__file__).resolve().parent.parent / "kvm-init" / "mkcpio.py"
    spec = importlib.util.spec_from_file_location("pvspec_kvm_mkcpio", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(out: Path, init: Path, modules: Path) -> None:
    cpio = _kvm_mkcpio()
    names = [n.strip() for n in (modules / "ORDER").read_text().splitlines() if n.strip()]
    cpio.write_archive(out, [*cpio.base_members(init), *cpio.module_members(modules, names)])


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} OUT INIT MODULES_DIR")
    build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
