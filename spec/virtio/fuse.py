"""FUSE over virtio-fs: the wire layouts and what a reply must say (VIRTIO 1.3 §5.11).

§5.11.6.1 lays a request out as ``struct virtio_fs_req``: the device-readable
``fuse_in_header`` and request data, then the device-writable ``fuse_out_header`` and
reply data, which "is identical to the data written to the /dev/fuse device by a FUSE
daemon".  So a virtio-fs device's reply is judged as the Linux FUSE client reads a
daemon's reply: the layouts below are those of Linux's ``include/uapi/linux/fuse.h``
(protocol 7.38, linux-libc-dev 6.1; every field used here is older than 7.31, the minor
the front-end announces), and the reply rules are those ``fs/fuse/dev.c``
(``fuse_dev_do_write``: the header) and ``fs/fuse/dir.c`` / ``fs/fuse/readdir.c`` (what a
LOOKUP, GETATTR and READDIR answer means) enforce or rely on.

None of these is a Requirements statement of §5.11: they are the rules §5.11.6.1 takes over
from FUSE by reference, listed once in :data:`FUSE_RULES` (id -> section, paraphrase) and
evaluated by the ``judge_*`` functions.  The §5.11 device statements are registered in
:mod:`spec.virtio.requirements_fs`; :func:`check_config` evaluates the one about the
configuration space.

A judge compares a reply with a :class:`Node` -- what the shared directory really holds
(its ``stat`` and contents, taken by whoever created it) -- and answers a list of
``(rule, ok, detail)``: every rule it evaluated, held or not.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Mapping, Sequence

import attrs

# --- include/uapi/linux/fuse.h ------------------------------------------------------------
IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr, 88 bytes
ENTRY_OUT = struct.Struct("<QQQQII")  # fuse_entry_out before its fuse_attr
ATTR_OUT = struct.Struct("<QII")  # fuse_attr_out before its fuse_attr
GETATTR_IN = struct.Struct("<IIQ")  # getattr_flags dummy fh
OPEN_IN = struct.Struct("<II")  # flags open_flags
OPEN_OUT = struct.Struct("<QII")  # fh open_flags padding
READ_IN = struct.Struct("<QQIIQII")  # fh offset size read_flags lock_owner flags padding
WRITE_IN = READ_IN  # fh offset size write_flags lock_owner flags padding
WRITE_OUT = struct.Struct("<II")  # size padding
RELEASE_IN = struct.Struct("<QIIQ")  # fh flags release_flags lock_owner
FORGET_IN = struct.Struct("<Q")  # nlookup
INIT_IN = struct.Struct("<IIII")  # major minor max_readahead flags (the 7.31 layout)
INIT_OUT_SIZE = 64  # fuse_init_out since 7.23
DIRENT = struct.Struct("<QQII")  # ino off namelen type, then the name
NAME_OFFSET = DIRENT.size  # FUSE_NAME_OFFSET
ENTRY_OUT_SIZE = ENTRY_OUT.size + ATTR.size  # 128
ATTR_OUT_SIZE = ATTR_OUT.size + ATTR.size  # 104

LOOKUP, FORGET, GETATTR, OPEN, READ, WRITE, RELEASE = 1, 2, 3, 14, 15, 16, 18
INIT, OPENDIR, READDIR, RELEASEDIR = 26, 27, 28, 29
OPCODES = {LOOKUP: "LOOKUP", FORGET: "FORGET", GETATTR: "GETATTR", OPEN: "OPEN", READ: "READ",
           WRITE: "WRITE", RELEASE: "RELEASE", INIT: "INIT", OPENDIR: "OPENDIR",
           READDIR: "READDIR", RELEASEDIR: "RELEASEDIR"}
ROOT_ID = 1  # FUSE_ROOT_ID
ENOENT = 2  # Linux errno: FUSE carries the daemon's errno, negated, in out.error
ERRNO_LIMIT = 512  # fuse_dev_do_write refuses error <= -512 and error > 0
NAME_MAX = 255


def dirent_align(n: int) -> int:
    """FUSE_DIRENT_ALIGN: records are padded to 8 bytes."""
    return (n + 7) & ~7


def dirent_size(namelen: int) -> int:
    """FUSE_DIRENT_SIZE of an entry whose name is ``namelen`` bytes."""
    return dirent_align(NAME_OFFSET + namelen)


def encode_request(opcode: int, unique: int, nodeid: int, body: bytes = b"") -> bytes:
    """fuse_in_header (uid/gid/pid 0: the device accepts the driver's ids, §5.11.6.5) and
    the request data."""
    return IN_HEADER.pack(IN_HEADER.size + len(body), opcode, unique, nodeid, 0, 0, 0, 0,
                          0) + body


def name_arg(name: bytes) -> bytes:
    """LOOKUP's argument: the name, NUL-terminated."""
    return name + b"\0"


def read_in(fh: int, offset: int, size: int) -> bytes:
    return READ_IN.pack(fh, offset, size, 0, 0, 0, 0)


@attrs.frozen
class Attr:
    ino: int
    size: int
    mode: int
    nlink: int

    @classmethod
    def decode(cls, raw: bytes) -> Attr:
        f = ATTR.unpack(raw[: ATTR.size])
        return cls(ino=f[0], size=f[1], mode=f[9], nlink=f[10])


@attrs.frozen
class Node:
    """A file or directory of the shared tree as it really is (``os.lstat`` and contents):
    ``data`` for a regular file, ``entries`` (names) for a directory."""

    ino: int
    mode: int
    size: int
    data: bytes = b""
    entries: tuple[bytes, ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@attrs.frozen
class Reply:
    """What the device wrote for one request: the out header and the data after it."""

    length: int
    error: int
    unique: int
    data: bytes

    @classmethod
    def decode(cls, written: bytes) -> Reply | None:
        """None: fewer bytes than an out header."""
        if len(written) < OUT_HEADER.size:
            return None
        length, error, unique = OUT_HEADER.unpack(written[: OUT_HEADER.size])
        return cls(length, error, unique, written[OUT_HEADER.size:])


@attrs.frozen
class Dirent:
    ino: int
    off: int
    type: int
    name: bytes


Judged = list[tuple[str, bool, str]]

# FUSE's rules that §5.11.6.1 makes a virtio-fs device's: id -> (section, paraphrase)
FUSE_RULES: dict[str, tuple[str, str]] = {
    "PVSPEC-FUSE-UNIQUE": ("5.11.6.1", "a reply's fuse_out_header echoes the request's "
                           "unique id (FUSE: the client matches replies to requests by it)"),
    "PVSPEC-FUSE-OUT-LEN": ("5.11.6.1", "a reply's fuse_out_header len is the number of bytes "
                            "the device wrote, used.len; an error reply is the header alone, "
                            "a success the reply structure of its opcode (fuse.h; Linux "
                            "fuse_dev_do_write refuses other lengths)"),
    "PVSPEC-FUSE-ERRNO": ("5.11.6.1", "a reply's error is 0 or a negated errno above -512 "
                          "(Linux fuse_dev_do_write refuses the rest)"),
    "PVSPEC-FUSE-LOOKUP": ("5.11.6.1", "LOOKUP of a name the directory holds succeeds with a "
                           "nonzero nodeid and the file's attributes: size, type and "
                           "permission bits as the file system holds them"),
    "PVSPEC-FUSE-LOOKUP-MISSING": ("5.11.6.1", "LOOKUP of a name the directory does not hold "
                                   "answers ENOENT, or success with nodeid 0 (a negative "
                                   "entry, which Linux fuse_lookup_name takes as ENOENT)"),
    "PVSPEC-FUSE-GETATTR": ("5.11.6.1", "GETATTR of a nodeid LOOKUP gave answers the same "
                            "file's attributes: the inode LOOKUP gave, the size, type and "
                            "permission bits the file system holds"),
    "PVSPEC-FUSE-OPEN": ("5.11.6.1", "OPEN (OPENDIR) of an existing file (directory), "
                         "read-only, succeeds with a fuse_open_out"),
    "PVSPEC-FUSE-READ": ("5.11.6.1", "READ of size bytes at offset answers the file's bytes "
                         "there: all of them within the file, a short read at its end, none "
                         "past it"),
    "PVSPEC-FUSE-WRITE": ("5.11.6.1", "WRITE of n bytes answers fuse_write_out size n, and "
                          "a READ afterwards returns them"),
    "PVSPEC-FUSE-READDIR": ("5.11.6.1", "READDIR from offset 0 on, each time from the last "
                            "entry's off, lists exactly the directory's names with . and .., "
                            "each once, in fuse_dirent records of FUSE_DIRENT_SIZE (8-byte "
                            "aligned), the type the file's mode gives, never more bytes than "
                            "asked for"),
    "PVSPEC-FUSE-RELEASE": ("5.11.6.1", "RELEASE (RELEASEDIR) of an open handle succeeds "
                            "with the header alone"),
}


def judge_header(unique: int, written: bytes, used_len: int | None) -> tuple[Judged,
                                                                              Reply | None]:
    """The out header of any reply: unique echoed, len equal to used.len, errno range.
    ``written``: the device-writable bytes of the chain after completion."""
    got = Reply.decode(written[:used_len] if used_len is not None else written)
    if got is None:
        return [("PVSPEC-FUSE-OUT-LEN", False, f"used.len {used_len}: no fuse_out_header")], None
    out: Judged = [
        ("PVSPEC-FUSE-UNIQUE", got.unique == unique,
         f"out.unique {got.unique}, request unique {unique}"),
        ("PVSPEC-FUSE-OUT-LEN", got.length == used_len and (
            got.error == 0 or got.length == OUT_HEADER.size),
         f"out.len {got.length}, used.len {used_len}, error {got.error}"),
        ("PVSPEC-FUSE-ERRNO", -ERRNO_LIMIT < got.error <= 0, f"error {got.error}"),
    ]
    return out, got


def _attr_matches(a: Attr, node: Node) -> list[str]:
    """What of the attributes disagrees with the file: its size and mode (type and
    permission bits).  The inode number is the daemon's to choose (one may remap them,
    e.g. across submounts): only its consistency is judged (GETATTR against LOOKUP)."""
    bad = []
    if a.size != node.size:
        bad.append(f"size {a.size} (file {node.size})")
    if a.mode != node.mode:
        bad.append(f"mode {a.mode:o} (file {node.mode:o})")
    return bad


def _body_len(rule: str, r: Reply, want: int) -> Judged:
    """A success whose body is not its opcode's structure."""
    return [] if len(r.data) == want else [
        ("PVSPEC-FUSE-OUT-LEN", False, f"{rule}: body {len(r.data)} bytes, fuse.h says {want}")]


def judge_lookup(r: Reply, node: Node | None) -> tuple[Judged, int, Attr | None]:
    """LOOKUP of a name: ``node`` what it names (None: nothing).  Returns the verdicts, the
    nodeid the device gave (0: none) and its attributes."""
    if node is None:
        neg = r.error == 0 and len(r.data) >= ENTRY_OUT.size and \
            ENTRY_OUT.unpack(r.data[: ENTRY_OUT.size])[0] == 0
        return [("PVSPEC-FUSE-LOOKUP-MISSING", r.error == -ENOENT or neg,
                 f"error {r.error}" + (" (negative entry)" if neg else ""))], 0, None
    if r.error != 0 or len(r.data) < ENTRY_OUT_SIZE:
        return [("PVSPEC-FUSE-LOOKUP", False, f"error {r.error}, {len(r.data)} bytes of "
                 f"fuse_entry_out")], 0, None
    nodeid = ENTRY_OUT.unpack(r.data[: ENTRY_OUT.size])[0]
    a = Attr.decode(r.data[ENTRY_OUT.size:])
    bad = _attr_matches(a, node) + ([] if nodeid else ["nodeid 0"])
    seen = "; ".join(bad) if bad else f"size {a.size} mode {a.mode:o}"
    return [*_body_len("LOOKUP", r, ENTRY_OUT_SIZE),
            ("PVSPEC-FUSE-LOOKUP", not bad, f"nodeid {nodeid}, {seen}")], nodeid, a


def judge_getattr(r: Reply, node: Node, looked_up: Attr | None) -> Judged:
    if r.error != 0 or len(r.data) < ATTR_OUT_SIZE:
        return [("PVSPEC-FUSE-GETATTR", False, f"error {r.error}, {len(r.data)} bytes of "
                 f"fuse_attr_out")]
    a = Attr.decode(r.data[ATTR_OUT.size:])
    bad = _attr_matches(a, node)
    if looked_up is not None and (a.ino, a.size, a.mode) != (
            looked_up.ino, looked_up.size, looked_up.mode):
        bad.append(f"LOOKUP said ino {looked_up.ino} size {looked_up.size} "
                   f"mode {looked_up.mode:o}")
    return [*_body_len("GETATTR", r, ATTR_OUT_SIZE),
            ("PVSPEC-FUSE-GETATTR", not bad, "; ".join(bad) or f"size {a.size} mode {a.mode:o}")]


def judge_open(r: Reply) -> tuple[Judged, int | None]:
    """OPEN / OPENDIR: the verdicts and the file handle (None: not opened)."""
    if r.error != 0 or len(r.data) < OPEN_OUT.size:
        return [("PVSPEC-FUSE-OPEN", False, f"error {r.error}, {len(r.data)} bytes")], None
    fh = OPEN_OUT.unpack(r.data[: OPEN_OUT.size])[0]
    return [*_body_len("OPEN", r, OPEN_OUT.size), ("PVSPEC-FUSE-OPEN", True, f"fh {fh}")], fh


def expected_read(data: bytes, offset: int, size: int) -> bytes:
    """What READ of ``size`` bytes at ``offset`` returns from a file holding ``data``."""
    return data[offset: offset + size]


def judge_read(r: Reply, data: bytes, offset: int, size: int) -> Judged:
    want = expected_read(data, offset, size)
    if r.error != 0:
        return [("PVSPEC-FUSE-READ", False, f"offset {offset} size {size}: error {r.error}")]
    if r.data == want:
        return [("PVSPEC-FUSE-READ", True, f"offset {offset} size {size}: {len(want)} bytes")]
    first = next((i for i, (x, y) in enumerate(zip(r.data, want, strict=False)) if x != y),
                 min(len(r.data), len(want)))
    return [("PVSPEC-FUSE-READ", False, f"offset {offset} size {size} of a {len(data)}-byte "
             f"file: {len(r.data)} bytes, expected {len(want)}, first difference at {first}")]


def judge_write(r: Reply, n: int) -> Judged:
    if r.error != 0 or len(r.data) < WRITE_OUT.size:
        return [("PVSPEC-FUSE-WRITE", False, f"{n} bytes: error {r.error}")]
    size = WRITE_OUT.unpack(r.data[: WRITE_OUT.size])[0]
    return [*_body_len("WRITE", r, WRITE_OUT.size),
            ("PVSPEC-FUSE-WRITE", size == n, f"wrote {n}, fuse_write_out size {size}")]


def judge_release(r: Reply, what: str = "RELEASE") -> Judged:
    return [("PVSPEC-FUSE-RELEASE", r.error == 0 and not r.data,
             f"{what}: error {r.error}, {len(r.data)} bytes after the header")]


def decode_dirents(data: bytes) -> tuple[list[Dirent], str]:
    """The fuse_dirent records of a READDIR reply, and what is wrong with their layout
    ("" when nothing): a record is FUSE_DIRENT_SIZE long, its name within it."""
    out: list[Dirent] = []
    at = 0
    while at < len(data):
        if len(data) - at < NAME_OFFSET:
            return out, f"{len(data) - at} trailing bytes at {at}: shorter than a fuse_dirent"
        ino, off, namelen, typ = DIRENT.unpack(data[at: at + NAME_OFFSET])
        if namelen == 0 or namelen > NAME_MAX:
            return out, f"record at {at}: namelen {namelen}"
        size = dirent_size(namelen)
        if at + size > len(data):
            return out, (f"record at {at}: namelen {namelen} needs {size} bytes, "
                         f"{len(data) - at} left")
        out.append(Dirent(ino, off, typ, data[at + NAME_OFFSET: at + NAME_OFFSET + namelen]))
        at += size
    return out, ""


def dirent_type(mode: int) -> int:
    """The d_type of a mode (DT_REG 8, DT_DIR 4 ...): its S_IFMT bits >> 12."""
    return (mode & 0o170000) >> 12


def judge_readdir_page(r: Reply, size: int) -> tuple[Judged, list[Dirent]]:
    """One READDIR reply: its layout and its size (the directory's contents are judged
    over all pages, :func:`judge_listing`)."""
    if r.error != 0:
        return [("PVSPEC-FUSE-READDIR", False, f"size {size}: error {r.error}")], []
    ents, bad = decode_dirents(r.data)
    if len(r.data) > size:
        bad = bad or f"{len(r.data)} bytes for a READDIR of size {size}"
    return ([("PVSPEC-FUSE-READDIR", False, f"size {size}: {bad}")] if bad else []), ents


def judge_listing(ents: Sequence[Dirent], node: Node,
                  children: Mapping[bytes, Node]) -> Judged:
    """All pages of a directory's listing: exactly its names with . and .., each once,
    each of the type its mode gives."""
    names = [e.name for e in ents]
    want = {b".", b"..", *node.entries}
    dup = sorted({n for n in names if names.count(n) > 1})
    missing, extra = sorted(want - set(names)), sorted(set(names) - want)
    wrong = [f"{e.name!r} type {e.type}" for e in ents if e.name in children
             and e.type != dirent_type(children[e.name].mode)]
    wrong += [f"{e.name!r} type {e.type}" for e in ents if e.name in (b".", b"..")
              and e.type != dirent_type(stat.S_IFDIR)]
    bad = "; ".join(x for x in (f"missing {missing}" if missing else "",
                                f"not in the directory {extra}" if extra else "",
                                f"listed twice {dup}" if dup else "",
                                f"wrong type {wrong}" if wrong else "") if x)
    return [("PVSPEC-FUSE-READDIR", not bad, bad or f"{len(names)} entries")]


# --- the configuration space, §5.11.4 ------------------------------------------------------
CONFIG = struct.Struct("<36sII")  # tag, num_request_queues, notify_buf_size
NOTIFICATION = 0  # VIRTIO_FS_F_NOTIFICATION


def check_config(raw: bytes, notification: bool = False) -> Judged:
    """§5.11.4.2 on a config space read from the device: at least one request queue
    (notify_buf_size is judged only against the notify messages a device emits: never
    here)."""
    if len(raw) < 40:
        return [("VIRTIO-5.11.4.2-DEV-NUM-REQUEST-QUEUES", False,
                 f"config space of {len(raw)} bytes: no num_request_queues")]
    nq = struct.unpack_from("<I", raw, 36)[0]
    return [("VIRTIO-5.11.4.2-DEV-NUM-REQUEST-QUEUES", nq >= 1, f"num_request_queues {nq}")]
