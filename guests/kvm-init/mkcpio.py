#!/usr/bin/env python3
"""Write an initramfs (cpio "newc", uncompressed: the kernel takes it as it is).

    mkcpio.py OUT INIT AGENT

The archive holds /dev (with the /dev/console node the kernel opens for init's standard
streams), /proc, /init (INIT, mode 0755) and /agent.elf (AGENT).  Written to OUT.tmp.PID
and renamed, so a concurrent build never leaves a half-written archive.  Deterministic:
every timestamp is 0.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path


def _entry(ino: int, name: str, mode: int, data: bytes = b"",
           rdev: tuple[int, int] = (0, 0)) -> bytes:
    raw_name = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw_name), 0)
    head = b"070701" + b"".join(b"%08x" % v for v in fields) + raw_name
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build(out: Path, init: Path, agent: Path) -> None:
    members = [
        ("dev", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("proc", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("init", stat.S_IFREG | 0o755, init.read_bytes(), (0, 0)),
        ("agent.elf", stat.S_IFREG | 0o644, agent.read_bytes(), (0, 0)),
    ]
    blob = b"".join(_entry(i + 1, name, mode, data, rdev)
                    for i, (name, mode, data, rdev) in enumerate(members))
    blob += _entry(len(members) + 1, "TRAILER!!!", 0)
    blob += b"\0" * (-len(blob) % 512)
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    tmp.write_bytes(blob)
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} OUT INIT AGENT")
    build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
