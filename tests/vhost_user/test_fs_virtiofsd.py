"""virtiofsd past FUSE_INIT: every fs check passes on Debian's virtiofsd, and each catches
the bug it guards against when that bug is planted in the replies the back-end wrote
(between the device's answer and the judge: a planted back-end, seen as the front-end
sees it)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from conformance.vhost_user import checks as ck
from conformance.vhost_user import fs_checks as fc
from conformance.vhost_user.targets import Target, start_virtiofsd
from spec.virtio import fuse as fu

from .conftest import _start

Mutate = Callable[[fc.Call, dict[str, object]], None]


@pytest.fixture
def fresh() -> Iterator[Target]:
    """A virtiofsd of its own (it serves one connection; a planted run spoils it)."""
    t = _start(start_virtiofsd, "virtiofsd")
    yield t
    t.stop()


def _set(c: fc.Call, written: bytes, used_len: int | None = None) -> None:
    """What the device wrote is now ``written``, used.len ``used_len`` (default: the
    out header's len)."""
    c.written = written
    c.used_len = struct.unpack_from("<I", written)[0] if used_len is None else used_len
    c.reply = fu.Reply.decode(written[: c.used_len])


def _body(c: fc.Call, body: bytes, length: int | None = None) -> None:
    """Replace the reply's data, the out header's len following it."""
    assert c.reply is not None
    n = 16 + len(body) if length is None else length
    _set(c, fu.OUT_HEADER.pack(n, c.reply.error, c.reply.unique) + body, 16 + len(body))


def _plant(monkeypatch: pytest.MonkeyPatch, mutate: Mutate) -> None:
    real = fc.FsSession.call

    def call(self: fc.FsSession, opcode: int, nodeid: int, body: bytes, out_size: int,
             **kw: object) -> fc.Call:
        c = real(self, opcode, nodeid, body, out_size, **kw)  # type: ignore[arg-type]
        if c.reply is not None:
            mutate(c, {"body": body, "nodeid": nodeid, **kw})
        return c

    monkeypatch.setattr(fc.FsSession, "call", call)


def _failed(results: list[ck.Result]) -> set[str]:
    return {r.rule for r in results if r.status == "fail"}


def test_every_fs_check_passes_on_virtiofsd(fresh: Target) -> None:
    judged: set[str] = set()
    for name in ck.check_names("fs"):
        results = ck.run_check(fresh, name)
        bad = [r for r in results if r.status in ("fail", "error")]
        assert not bad, "\n".join(f"{r.check} {r.rule} {r.detail}" for r in bad)
        judged |= {r.rule for r in results if r.status == "pass"}
    assert set(fu.FUSE_RULES) <= judged, set(fu.FUSE_RULES) - judged
    assert {"VIRTIO-5.11.6.4.1-DEV-READ-WRITE", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES",
            "PVSPEC-RING-PROGRESS", "PVSPEC-RING-USED-IDX"} <= judged


def _init_unique(c: fc.Call, kw: dict[str, object]) -> None:
    if c.opcode == fu.INIT:
        assert c.reply is not None
        _set(c, fu.OUT_HEADER.pack(c.reply.length, 0, 1) + c.written[16:])


def _lookup_size(c: fc.Call, kw: dict[str, object]) -> None:
    """LOOKUP of 'hello.txt' answers a size one byte off."""
    assert c.reply is not None
    if c.opcode == fu.LOOKUP and kw["body"] == b"hello.txt\0" and not c.reply.error:
        data = bytearray(c.reply.data)
        off = fu.ENTRY_OUT.size + 8  # fuse_attr.size
        data[off: off + 8] = (int.from_bytes(data[off: off + 8], "little") + 1).to_bytes(
            8, "little")
        _body(c, bytes(data))


def _found_missing(c: fc.Call, kw: dict[str, object]) -> None:
    """A missing name is 'found' (the root's entry)."""
    assert c.reply is not None
    if c.opcode == fu.LOOKUP and c.reply.error == -fu.ENOENT:
        body = fu.ENTRY_OUT.pack(1, 0, 0, 0, 0, 0) + bytes(fu.ATTR.size)
        _set(c, fu.OUT_HEADER.pack(16 + len(body), 0, c.reply.unique) + body)


def _getattr_len(c: fc.Call, kw: dict[str, object]) -> None:
    """GETATTR's out.len counts 8 bytes it did not write."""
    assert c.reply is not None
    if c.opcode == fu.GETATTR:
        _set(c, fu.OUT_HEADER.pack(c.reply.length + 8, c.reply.error, c.reply.unique)
             + c.written[16:], c.used_len)


def _byte_past_eof(c: fc.Call, kw: dict[str, object]) -> None:
    """READ at or past the end of file returns one byte instead of none."""
    assert c.reply is not None
    if c.opcode == fu.READ and not c.reply.error and not c.reply.data and \
            struct.unpack_from("<I", kw["body"], 16)[0]:  # type: ignore[arg-type]
        _body(c, b"\0")


def _write_short(c: fc.Call, kw: dict[str, object]) -> None:
    assert c.reply is not None
    if c.opcode == fu.WRITE and not c.reply.error:
        _body(c, fu.WRITE_OUT.pack(fu.WRITE_OUT.unpack(c.reply.data[:8])[0] - 1, 0))


def _dirent_unpadded(c: fc.Call, kw: dict[str, object]) -> None:
    """READDIR records without their FUSE_DIRENT_ALIGN padding."""
    assert c.reply is not None
    if c.opcode == fu.READDIR and not c.reply.error and c.reply.data:
        ents, _ = fu.decode_dirents(c.reply.data)
        _body(c, b"".join(fu.DIRENT.pack(e.ino, e.off, len(e.name), e.type) + e.name
                          for e in ents))


def _unwritten_byte(c: fc.Call, kw: dict[str, object]) -> None:
    """The second poisoned GETATTR leaves byte 40 (in fuse_attr) as the driver's."""
    if c.opcode == fu.GETATTR and kw.get("poison") == fc.POISONS[1]:
        w = bytearray(c.written)
        w[40] = fc.POISONS[1]
        _set(c, bytes(w), c.used_len)


@pytest.mark.parametrize(("check", "mutate", "caught"), [
    ("fs-fuse-init", _init_unique, "PVSPEC-FUSE-UNIQUE"),
    ("fs-lookup", _lookup_size, "PVSPEC-FUSE-LOOKUP"),
    ("fs-lookup", _found_missing, "PVSPEC-FUSE-LOOKUP-MISSING"),
    ("fs-lookup", _getattr_len, "PVSPEC-FUSE-OUT-LEN"),
    ("fs-read", _byte_past_eof, "PVSPEC-FUSE-READ"),
    ("fs-write", _write_short, "VIRTIO-5.11.6.4.1-DEV-READ-WRITE"),
    ("fs-write", _write_short, "PVSPEC-FUSE-WRITE"),
    ("fs-readdir", _dirent_unpadded, "PVSPEC-FUSE-READDIR"),
    ("fs-used-len", _unwritten_byte, "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"),
], ids=lambda v: v.__name__ if callable(v) else str(v))
def test_planted_bug_is_caught(fresh: Target, monkeypatch: pytest.MonkeyPatch, check: str,
                               mutate: Mutate, caught: str) -> None:
    _plant(monkeypatch, mutate)
    results = ck.run_check(fresh, check)
    assert not [r for r in results if r.status == "error"], results
    assert caught in _failed(results), sorted(_failed(results))
    trace = next(r.trace for r in results if r.rule == caught and r.status == "fail")
    assert trace or caught == "VIRTIO-5.11.6.4.1-DEV-READ-WRITE"
