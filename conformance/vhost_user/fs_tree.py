"""The shared directory the suite gives virtiofsd: known names, sizes, modes and contents.

Names of 1, 7, 8 and 9 bytes put fuse_dirent records on both sides of the 8-byte
alignment; sizes of 0, 1, a page, and off-page ones put READ's end of file at every
kind of boundary; a subdirectory (with one of its own) gives LOOKUP a parent other than
the root.  ``scratch.bin`` is the one file the suite writes.  The judge reads what the
directory really holds (:func:`node`), never this table, so a file the back-end changed
shows.
"""

from __future__ import annotations

import os
from pathlib import Path

from spec.virtio.fuse import Node

SCRATCH = "scratch.bin"


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(n))


# path -> (mode, size) of a regular file, or None for a directory
TREE: dict[str, tuple[int, int] | None] = {
    "hello.txt": (0o644, 18),
    "empty": (0o644, 0),
    "a": (0o600, 1),
    "page.bin": (0o644, 4096),
    "odd-size.bin": (0o755, 5003),
    "name8chr": (0o644, 100),
    "name_9chr": (0o640, 4097),
    SCRATCH: (0o644, 0),
    "sub": None,
    "sub/inner.txt": (0o644, 777),
    "sub/seven77": (0o644, 8191),
    "sub/deeper": None,
}


def populate(root: str) -> None:
    """Create :data:`TREE` under ``root`` (an empty directory)."""
    for i, (rel, spec) in enumerate(TREE.items()):
        path = Path(root, rel)
        if spec is None:
            path.mkdir()
            continue
        mode, size = spec
        path.write_bytes(b"hello from pvspec\n" if rel == "hello.txt" else pattern(size, i))
        path.chmod(mode)


def node(root: str, rel: str) -> Node | None:
    """What ``root``/``rel`` holds now (None: nothing)."""
    path = os.path.join(root, rel)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if os.path.isdir(path) and not os.path.islink(path):
        return Node(st.st_ino, st.st_mode, st.st_size,
                    entries=tuple(sorted(os.fsencode(n) for n in os.listdir(path))))
    data = Path(path).read_bytes() if os.path.isfile(path) else b""
    return Node(st.st_ino, st.st_mode, st.st_size, data)


def children(root: str, rel: str) -> dict[bytes, Node]:
    """Name -> node of every entry of the directory ``rel``."""
    d = node(root, rel)
    out: dict[bytes, Node] = {}
    for name in d.entries if d is not None else ():
        n = node(root, os.path.join(rel, os.fsdecode(name)))
        if n is not None:
            out[name] = n
    return out
