"""spec.virtio.fuse: the FUSE reply judge, on replies a correct device writes and on the
same replies with a bug planted."""

from __future__ import annotations

import stat
import struct

from hypothesis import given
from hypothesis import strategies as st

from spec.virtio import fuse as fu

FILE = fu.Node(ino=77, mode=stat.S_IFREG | 0o644, size=5003, data=bytes(range(256)) * 19 +
               bytes(139))
DIR = fu.Node(ino=5, mode=stat.S_IFDIR | 0o755, size=4096, entries=(b"a", b"sub", b"x" * 8))
CHILDREN = {b"a": FILE, b"sub": DIR, b"x" * 8: FILE}


def reply(unique: int, body: bytes = b"", error: int = 0) -> bytes:
    return fu.OUT_HEADER.pack(fu.OUT_HEADER.size + len(body), error, unique) + body


def attr(node: fu.Node) -> bytes:
    return fu.ATTR.pack(node.ino, node.size, 0, 0, 0, 0, 0, 0, 0, node.mode, 1, 0, 0, 0,
                        4096, 0)


def entry(node: fu.Node, nodeid: int = 9) -> bytes:
    return fu.ENTRY_OUT.pack(nodeid, 0, 1, 1, 0, 0) + attr(node)


def dirents(names: list[tuple[bytes, fu.Node]], pad: bool = True) -> bytes:
    out = b""
    for i, (name, node) in enumerate(names):
        rec = fu.DIRENT.pack(node.ino, i + 1, len(name), fu.dirent_type(node.mode)) + name
        out += rec.ljust(fu.dirent_size(len(name)), b"\0") if pad else rec
    return out


def listing() -> list[tuple[bytes, fu.Node]]:
    return [(b".", DIR), (b"..", DIR), *((n, CHILDREN[n]) for n in DIR.entries)]


def rules_failed(judged: fu.Judged) -> set[str]:
    return {rule for rule, ok, _ in judged if not ok}


def test_header_rules() -> None:
    good = reply(42, entry(FILE))
    judged, r = fu.judge_header(42, good, len(good))
    assert r is not None and not rules_failed(judged)
    assert rules_failed(fu.judge_header(43, good, len(good))[0]) == {"PVSPEC-FUSE-UNIQUE"}
    assert rules_failed(fu.judge_header(42, good, len(good) + 8)[0]) == {"PVSPEC-FUSE-OUT-LEN"}
    # an error reply carrying a body, and an errno out of range
    bad = fu.OUT_HEADER.pack(24, -fu.ENOENT, 42) + bytes(8)
    assert "PVSPEC-FUSE-OUT-LEN" in rules_failed(fu.judge_header(42, bad, 24)[0])
    pos = reply(42, error=5)
    assert rules_failed(fu.judge_header(42, pos, 16)[0]) == {"PVSPEC-FUSE-ERRNO"}
    assert rules_failed(fu.judge_header(42, b"\0" * 8, 8)[0]) == {"PVSPEC-FUSE-OUT-LEN"}


def test_lookup_rules() -> None:
    r = fu.Reply.decode(reply(1, entry(FILE)))
    assert r is not None
    judged, nodeid, a = fu.judge_lookup(r, FILE)
    assert not rules_failed(judged) and nodeid == 9 and a is not None and a.size == FILE.size
    # planted: the size one byte off, the permission bits wrong, nodeid 0
    for wrong in (fu.Node(77, FILE.mode, FILE.size + 1), fu.Node(77, FILE.mode | 0o2, 5003)):
        r = fu.Reply.decode(reply(1, entry(wrong)))
        assert r is not None and rules_failed(fu.judge_lookup(r, FILE)[0]) == {
            "PVSPEC-FUSE-LOOKUP"}
    r = fu.Reply.decode(reply(1, entry(FILE, nodeid=0)))
    assert r is not None and "PVSPEC-FUSE-LOOKUP" in rules_failed(fu.judge_lookup(r, FILE)[0])
    # a missing name: ENOENT or a negative entry hold; a found file does not
    for ok in (reply(1, error=-fu.ENOENT), reply(1, entry(FILE, nodeid=0))):
        r = fu.Reply.decode(ok)
        assert r is not None and not rules_failed(fu.judge_lookup(r, None)[0])
    for bad in (reply(1, entry(FILE)), reply(1, error=-13)):
        r = fu.Reply.decode(bad)
        assert r is not None and rules_failed(fu.judge_lookup(r, None)[0]) == {
            "PVSPEC-FUSE-LOOKUP-MISSING"}


def test_getattr_agrees_with_lookup() -> None:
    looked = fu.Attr(77, 5003, FILE.mode, 1)
    good = fu.Reply.decode(reply(1, fu.ATTR_OUT.pack(1, 0, 0) + attr(FILE)))
    assert good is not None and not rules_failed(fu.judge_getattr(good, FILE, looked))
    # an inode other than LOOKUP's (the file's own number is not judged: a daemon may
    # remap inode numbers)
    stale = fu.Reply.decode(reply(1, fu.ATTR_OUT.pack(1, 0, 0) + attr(
        fu.Node(78, FILE.mode, 5003))))
    assert stale is not None and not rules_failed(fu.judge_getattr(stale, FILE, None))
    assert stale is not None and rules_failed(fu.judge_getattr(stale, FILE, looked)) == {
        "PVSPEC-FUSE-GETATTR"}
    # a short fuse_attr_out (the 7.8 compat size) is no 7.31 reply
    short = fu.Reply.decode(reply(1, (fu.ATTR_OUT.pack(1, 0, 0) + attr(FILE))[:96]))
    assert short is not None and "PVSPEC-FUSE-GETATTR" in rules_failed(
        fu.judge_getattr(short, FILE, looked))


@given(st.integers(0, FILE.size + 9000), st.integers(0, 9000))
def test_read_judge_across_the_end_of_file(offset: int, size: int) -> None:
    want = FILE.data[offset: offset + size]
    assert len(want) == max(0, min(size, FILE.size - offset))
    r = fu.Reply.decode(reply(3, want))
    assert r is not None and not rules_failed(fu.judge_read(r, FILE.data, offset, size))
    # planted: one byte too many past the end (or a full read where a short one is due),
    # one too few, one flipped
    longer = fu.Reply.decode(reply(3, want + b"\0"))
    assert longer is not None and rules_failed(fu.judge_read(longer, FILE.data, offset, size))
    if want:
        shorter = fu.Reply.decode(reply(3, want[:-1]))
        flipped = fu.Reply.decode(reply(3, bytes([want[0] ^ 1]) + want[1:]))
        assert shorter is not None and flipped is not None
        assert rules_failed(fu.judge_read(shorter, FILE.data, offset, size))
        assert rules_failed(fu.judge_read(flipped, FILE.data, offset, size))


def test_planted_read_write_bugs_are_caught() -> None:
    """5.11.6.4.1's READ-and-WRITE rule rests on these two judges."""
    r = fu.Reply.decode(reply(3, error=-5))
    assert r is not None and rules_failed(fu.judge_read(r, FILE.data, 0, 10))
    ok = fu.Reply.decode(reply(4, fu.WRITE_OUT.pack(100, 0)))
    short = fu.Reply.decode(reply(4, fu.WRITE_OUT.pack(99, 0)))
    assert ok is not None and short is not None
    assert not rules_failed(fu.judge_write(ok, 100))
    assert rules_failed(fu.judge_write(short, 100)) == {"PVSPEC-FUSE-WRITE"}


@given(st.lists(st.binary(min_size=1, max_size=40).filter(lambda n: b"/" not in n
                                                          and b"\0" not in n),
                max_size=12, unique=True))
def test_dirent_layout_round_trips_and_unpadded_records_are_caught(names: list[bytes]) -> None:
    recs = [(n, FILE) for n in names]
    data = dirents(recs)
    ents, bad = fu.decode_dirents(data)
    assert not bad and [e.name for e in ents] == names
    assert len(data) % 8 == 0
    if any(len(n) % 8 for n in names[:-1]):
        # a device that leaves out the padding: later records are misread
        ents, bad = fu.decode_dirents(dirents(recs, pad=False))
        assert bad or [e.name for e in ents] != names


def test_readdir_listing_rules() -> None:
    page = fu.Reply.decode(reply(5, dirents(listing())))
    assert page is not None
    judged, ents = fu.judge_readdir_page(page, 4096)
    assert not judged and not rules_failed(fu.judge_listing(ents, DIR, CHILDREN))
    # planted: more bytes than asked for, an entry missing, one twice, one extra, a wrong type
    assert rules_failed(fu.judge_readdir_page(page, len(page.data) - 1)[0])
    full = listing()
    for bad in (full[:-1], [*full, full[2]], [*full, (b"ghost", FILE)],
                [(b".", DIR), (b"..", DIR), (b"a", DIR), *full[3:]]):
        r = fu.Reply.decode(reply(5, dirents(bad)))
        assert r is not None
        judged, ents = fu.judge_readdir_page(r, 4096)
        assert rules_failed(fu.judge_listing(ents, DIR, CHILDREN)) == {"PVSPEC-FUSE-READDIR"}
    # a record cut short
    r = fu.Reply.decode(reply(5, dirents(full)[:-3]))
    assert r is not None and rules_failed(fu.judge_readdir_page(r, 4096)[0])


def test_release_and_open() -> None:
    r = fu.Reply.decode(reply(6))
    assert r is not None and not rules_failed(fu.judge_release(r))
    r = fu.Reply.decode(reply(6, bytes(8)))
    assert r is not None and rules_failed(fu.judge_release(r)) == {"PVSPEC-FUSE-RELEASE"}
    r = fu.Reply.decode(reply(6, fu.OPEN_OUT.pack(3, 0, 0)))
    assert r is not None and fu.judge_open(r) == ([("PVSPEC-FUSE-OPEN", True, "fh 3")], 3)
    r = fu.Reply.decode(reply(6, error=-fu.ENOENT))
    assert r is not None and fu.judge_open(r)[1] is None


def test_config_without_request_queue_is_caught() -> None:
    good = b"tag".ljust(36, b"\0") + struct.pack("<II", 1, 0)
    assert not rules_failed(fu.check_config(good))
    assert rules_failed(fu.check_config(good[:36] + struct.pack("<II", 0, 0))) == {
        "VIRTIO-5.11.4.2-DEV-NUM-REQUEST-QUEUES"}
    assert rules_failed(fu.check_config(good[:20]))


def test_fuse_rules_are_in_the_fs_universe_only() -> None:
    from conformance.requirements import virtio_device

    fs = {r.id for r in virtio_device("fs")}
    assert set(fu.FUSE_RULES) <= fs
    assert not set(fu.FUSE_RULES) & {r.id for r in virtio_device("blk")}
    assert "VIRTIO-5.11.6.4.1-DEV-READ-WRITE" in fs
