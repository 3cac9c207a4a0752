#!/usr/bin/env python3
"""Write an initramfs (cpio "newc", uncompressed: the kernel takes it as it is).

    mkcpio.py OUT INIT AGENT [MODULES_DIR NAME...]

The archive holds /dev (with the /dev/console node the kernel opens for init's standard
streams), /proc, /sys, /init (INIT, mode 0755), /agent.elf (AGENT) and, when modules are
named, /modules: ORDER (the names in load order) and MODULES_DIR/<NAME>.ko for each (the
virtio-serial drivers of the fast channel, guests/kvm-init/linux_channel.h).  Written to OUT.tmp.PID
and renamed, so a concurrent build never leaves a half-written archive.  Deterministic:
every timestamp is 0.

guests/xen-dom0/mkinitrd.py writes its archive with :func:`write_archive`,
:func:`base_members` and :func:`module_members` (it imports this file by its path).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

# an archive member: (path inside the archive, st_mode, contents, (rdev major, rdev minor))
Member = tuple[str, int, bytes, tuple[int, int]]


def _entry(ino: int, name: str, mode: int, data: bytes = b"",
           rdev: tuple[int, int] = (0, 0)) -> bytes:
    raw_name = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw_name), 0)
    head = b"070701" + b"".join(b"%08x" % v for v in fields) + raw_name
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def directory(name: str) -> Member:
    return (name, stat.S_IFDIR | 0o755, b"", (0, 0))


def regular(name: str, data: bytes, mode: int = 0o644) -> Member:
    return (name, stat.S_IFREG | mode, data, (0, 0))


def base_members(init: Path) -> list[Member]:
    """/dev with /dev/console, /proc and /init (``init``'s contents, mode 0755)."""
    return [directory("dev"), ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
            directory("proc"), regular("init", init.read_bytes(), 0o755)]


def module_members(modules: Path, names: Sequence[str]) -> list[Member]:
    """/sys (where the init finds its modules' devices), /modules, /modules/ORDER (``names``
    one a line, the init's load order) and each ``modules/<name>.ko``."""
    return [directory("sys"), directory("modules"),
            regular("modules/ORDER", "".join(f"{n}\n" for n in names).encode()),
            *(regular(f"modules/{n}.ko", (modules / f"{n}.ko").read_bytes()) for n in names)]


def write_archive(out: Path, members: Sequence[Member]) -> None:
    """Write ``members``, in order (inode numbers 1, 2, ...), and the trailer as a newc
    archive padded to 512 bytes, to ``out`` (through ``OUT.tmp.PID``, renamed)."""
    blob = b"".join(_entry(i + 1, name, mode, data, rdev)
                    for i, (name, mode, data, rdev) in enumerate(members))
    blob += _entry(len(members) + 1, "TRAILER!!!", 0)
    blob += b"\0" * (-len(blob) % 512)
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    tmp.write_bytes(blob)
    os.replace(tmp, out)


def build(out: Path, init: Path, agent: Path, modules: Path | None = None,
          names: Sequence[str] = ()) -> None:
    write_archive(out, [*base_members(init), regular("agent.elf", agent.read_bytes()),
                        *(module_members(modules, names) if modules is not None else
                          [directory("sys")])])


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(f"usage: {sys.argv[0]} OUT INIT AGENT [MODULES_DIR NAME...]")
    build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
          Path(sys.argv[4]) if len(sys.argv) > 4 else None, sys.argv[5:])
