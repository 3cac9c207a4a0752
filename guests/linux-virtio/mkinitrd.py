#!/usr/bin/env python3
"""Write the linux-virtio guest's initramfs (cpio "newc", uncompressed).

    mkinitrd.py OUT INIT LINUX_DIR

The archive holds /dev (with /dev/console), /proc, /sys, /init (INIT: a busybox shell
script) and /modules -- LINUX_DIR/modules/ORDER (module names in load order) and each .ko
it names, as scripts/fetch-linux-amd64 keeps them -- written by guests/xen-dom0/mkinitrd.py
(whose layout this is), followed by a second archive with /bin/busybox (LINUX_DIR/busybox,
from Debian's busybox-static): the kernel unpacks concatenated newc archives in turn, so
the one cpio writer (guests/kvm-init/mkcpio.py) serves all three guests.
Deterministic: every timestamp is 0.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def build(out: Path, init: Path, linux: Path) -> None:
    """Write the archive to ``out`` (through a temporary name, renamed)."""
    path = Path(__file__).resolve().parent.parent / "xen-dom0" / "mkinitrd.py"
    spec = importlib.util.spec_from_file_location("pvspec_xen_mkinitrd", path)
    assert spec is not None and spec.loader is not None
    xen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xen)
    cpio = xen._kvm_mkcpio()
    out.parent.mkdir(parents=True, exist_ok=True)
    first = out.with_name(f"{out.name}.base.{os.getpid()}")
    second = out.with_name(f"{out.name}.bin.{os.getpid()}")
    try:
        xen.build(first, init, linux / "modules")
        cpio.write_archive(second, [
            cpio.directory("bin"),
            cpio.regular("bin/busybox", (linux / "busybox").read_bytes(), 0o755)])
        tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
        tmp.write_bytes(first.read_bytes() + second.read_bytes())
        os.replace(tmp, out)
    finally:
        first.unlink(missing_ok=True)
        second.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} OUT INIT LINUX_DIR")
    build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
