"""A vhost-user run is exactly as strong as what it checked, however the back-end behaves.

Unreachable back-ends (a plain file, a full listen backlog, one that closes at once), one
that dies mid-run, hangs and garbage are ``error`` runs with nothing credited to them; a
defect of a check is an ``error`` check naming it; a device failure shows the request.
Bounds are generous upper bounds (a loaded 2-core CI machine), never timing assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance.results import RunInterrupted
from conformance.vhost_user import checks as ck
from conformance.vhost_user import report as vr
from conformance.vhost_user.frontend import Frontend
from conformance.vhost_user.protocol import ProtocolViolation, Req, ViolationKind
from conformance.vhost_user.report import check_names, run_conformance, run_one
from conformance.vhost_user.targets import (
    Target,
    TargetUnavailable,
    open_target,
    qsd_path,
    start_reference_blk,
)
from reference_impl.virtio import blk as ref_blk
from reference_impl.virtio import server as ref_server
from spec.virtio.devices import block as blk

from .conftest import IN_CI

ROOT = Path(__file__).parents[2]
HDR = struct.Struct("<III")
VERSION_1 = 1 << 32


SCHEMA = json.loads((ROOT / "conformance" / "schemas" / "report.schema.json").read_text())


def _passed(rep: vr.Report) -> list[str]:
    return [c.id for c in rep.checks if c.status in ("passed", "proved")]


def _valid(directory: Path) -> dict:  # type: ignore[type-arg]
    """The written report: schema-valid, every rendering there, no internal error."""
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (directory / name).exists(), name
    data = json.loads((directory / "report.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert not any(c["id"] == "suite:internal" for c in data["checks"]), data["checks"]
    return data  # type: ignore[no-any-return]


def _short_dir() -> str:
    """A directory for sockets (sun_path holds 108 bytes; pytest's tmp_path can be longer)."""
    return tempfile.mkdtemp(prefix="pv-vu-")


# --- fake back-ends -----------------------------------------------------------------------
class FakeBackend:
    """A Unix socket served from a thread: ``handler(conn, n)`` for the n-th connection."""

    def __init__(self, handler: Callable[[socket.socket, int], None]) -> None:
        self.dir = _short_dir()
        self.path = os.path.join(self.dir, "fake.sock")
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(self.path)
        self.ls.listen(4)
        self.stop = threading.Event()
        self.handler = handler
        self.th = threading.Thread(target=self._serve, daemon=True)
        self.th.start()

    def _serve(self) -> None:
        n = 0
        while not self.stop.is_set():
            r, _, _ = select.select([self.ls], [], [], 0.05)
            if not r:
                continue
            conn, _ = self.ls.accept()
            conn.settimeout(0.2)
            try:
                self.handler(conn, n)
            except OSError:
                pass
            finally:
                conn.close()
            n += 1

    def close(self) -> None:
        self.stop.set()
        self.th.join(timeout=5)
        self.ls.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_msg(conn: socket.socket, stop: threading.Event) -> tuple[int, int, bytes] | None:
    """One front-end message (fds dropped), or None once the front-end has gone."""
    buf = b""
    while len(buf) < HDR.size:
        if stop.is_set():
            return None
        try:
            data, fds, _, _ = socket.recv_fds(conn, HDR.size - len(buf), 8)
        except TimeoutError:
            continue
        for fd in fds:
            os.close(fd)
        if not data:
            return None
        buf += data
    req, flags, size = HDR.unpack(buf)
    payload = b""
    while len(payload) < size:
        try:
            chunk = conn.recv(size - len(payload))
        except TimeoutError:
            if stop.is_set():
                return None
            continue
        if not chunk:
            return None
        payload += chunk
    return req, flags, payload


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket, int], None]], FakeBackend]]:
    made: list[FakeBackend] = []

    def make(handler: Callable[[socket.socket, int], None]) -> FakeBackend:
        made.append(FakeBackend(handler))
        return made[-1]

    yield make
    for f in made:
        f.close()


def _answering(then: str) -> Callable[[socket.socket, int], None]:
    """A back-end that answers its first GET_FEATURES properly (the reachability check),
    then ``then``: "garbage" (replies with a bad version) or "hang" (says nothing)."""
    answered = [0]
    stop = threading.Event()

    def handler(conn: socket.socket, n: int) -> None:
        while (msg := _read_msg(conn, stop)) is not None:
            req, _flags, _ = msg
            if req != Req.GET_FEATURES:
                continue  # no reply asked: no REPLY_ACK, no protocol features offered
            answered[0] += 1
            if answered[0] == 1:
                conn.sendall(HDR.pack(req, 0x5, 8) + struct.pack("<Q", VERSION_1))
            elif then == "garbage":
                conn.sendall(HDR.pack(req, 0x6, 8) + struct.pack("<Q", VERSION_1))

    return handler


# --- 2. reachability first ----------------------------------------------------------------
def test_plain_file_is_an_error_fast(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_bytes(b"hello")
    t0 = time.monotonic()
    rep = run_conformance(f"vhost-user:{path}", tmp_path / "report")
    assert time.monotonic() - t0 < 10
    assert rep.verdict == "error" and rep.exit_code == 2
    assert not _passed(rep)
    (check,) = rep.checks
    assert check.failure is not None and check.failure.requirement == "VHOST-USER-CONNECT"
    assert "not a socket" in check.detail and "Traceback" not in check.detail
    assert rep.incomplete
    data = _valid(tmp_path / "report")
    assert data["verdict"] == "error"
    assert data["traceability"]["VHOST-USER-CONNECT"]["status"] == "error"
    with pytest.raises(TargetUnavailable):
        open_target(f"vhost-user:{path}")


def test_full_backlog_never_accepting_is_an_error_fast(tmp_path: Path) -> None:
    """listen(0), never accept(), backlog filled first: a connect is refused with EAGAIN
    (or would block); the connection is bounded and the run is an error."""
    d = _short_dir()
    path = os.path.join(d, "full.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(0)
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(path)
            fillers.append(c)
        t0 = time.monotonic()
        with pytest.raises(ProtocolViolation) as e:
            Frontend(path, connect_within=0.5)
        assert e.value.kind is ViolationKind.UNREACHABLE
        rep = run_conformance(f"vhost-user:{path}", tmp_path / "report")
        assert time.monotonic() - t0 < 10
    finally:
        for c in fillers:
            c.close()
        ls.close()
        shutil.rmtree(d, ignore_errors=True)
    assert rep.verdict == "error" and not _passed(rep)
    (check,) = rep.checks
    assert check.failure is not None and check.failure.requirement == "VHOST-USER-CONNECT"
    assert "Traceback" not in check.detail
    _valid(tmp_path / "report")


def test_backend_closing_at_once_is_an_error(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fb = fake(lambda conn, n: None)  # accept, then close
    t0 = time.monotonic()
    rep = run_conformance(f"vhost-user:{fb.path}", tmp_path / "report")
    assert time.monotonic() - t0 < 10
    assert rep.verdict == "error" and not _passed(rep)
    (check,) = rep.checks
    assert check.failure is not None and check.failure.requirement == "VHOST-USER-CONNECT"


@pytest.fixture
def dies_on_first_kick() -> Iterator[str]:
    """Our reference back-end in its own process, patched to exit on its first kick."""
    d = _short_dir()
    sock = os.path.join(d, "vu.sock")
    script = os.path.join(d, "dying_backend.py")
    with open(script, "w") as f:
        f.write("import os, sys\n"
                f"sys.path.insert(0, {str(ROOT)!r})\n"
                "from reference_impl.virtio import server\n"
                "server._Conn.on_kick = lambda self: os._exit(3)\n"
                "server.serve_vhost_user_blk(sys.argv[1], bytearray(1 << 20))\n")
    proc = subprocess.Popen([sys.executable, script, sock], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert proc.poll() is None, "the fake back-end did not start"
            assert time.monotonic() < deadline, "the fake back-end did not start in 30 s"
            time.sleep(0.02)
        yield sock
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def test_backend_dying_mid_run_is_an_error_and_never_responsive(
        dies_on_first_kick: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    rep = run_conformance(f"vhost-user:{dies_on_first_kick}", tmp_path / "report")
    assert time.monotonic() - t0 < 30
    assert rep.verdict == "error" and rep.exit_code == 2
    assert "stopped answering" in rep.incomplete
    _valid(tmp_path / "report")
    # never credited to a dead back-end
    assert not any("VHOST-USER-RESPONSIVE" in c.judged for c in rep.checks)
    matrix = rep.matrix()
    assert matrix["VHOST-USER-RESPONSIVE"]["status"] == "error"
    # the run stopped at the check that killed it: nothing later ran against the corpse
    ran = {c.id.split(":")[0] for c in rep.checks}
    assert not ran & {"chains", "used-len", "notifications", "index-wrap", "in-order",
                      "hostile", "hostile/descriptor-loop"}
    bad = [c for c in rep.checks if c.status == "error"]
    assert bad and all(c.failure is not None for c in bad)
    assert not any(c.status == "failed" for c in rep.checks), \
        [c.id for c in rep.checks if c.status == "failed"]
    # the kick that killed it is in the trace: the request, not the handshake
    crash = next(c for c in bad if c.failure and c.failure.requirement.startswith("VHOST-USER"))
    assert any(op.get("kind") == "request" for op in crash.failure.trace)  # type: ignore[union-attr]


def test_garbage_replies_are_errors_not_failures(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fb = fake(_answering("garbage"))
    rep = run_conformance(f"vhost-user:{fb.path}", tmp_path / "report")
    assert rep.verdict == "error"
    assert not any(c.status == "failed" for c in rep.checks)
    errors = [c for c in rep.checks if c.status == "error" and c.kind == "virtio"]
    assert errors and all(c.failure and c.failure.requirement == "VHOST-USER-REPLY"
                          for c in errors)
    assert rep.matrix()["VHOST-USER-REPLY"]["status"] == "error"
    assert rep.incomplete.startswith("stopped early")  # max_errors in a row
    _valid(tmp_path / "report")


def test_a_hang_is_an_error_not_a_failure(fake, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ck, "PROBE_TIMEOUT", 1.0)
    fb = fake(_answering("hang"))
    t0 = time.monotonic()
    rep = run_conformance(f"vhost-user:{fb.path}", tmp_path / "report")
    assert time.monotonic() - t0 < 30
    assert rep.verdict == "error"
    assert not any(c.status == "failed" for c in rep.checks)
    hang = next(c for c in rep.checks if c.status == "error" and c.kind == "virtio")
    assert hang.failure is not None and hang.failure.requirement == "VHOST-USER-RESPONSIVE"
    assert "timeout" in hang.detail
    assert not any("VHOST-USER-RESPONSIVE" in c.judged for c in rep.checks)


def test_unexpected_fds_in_a_reply_are_a_violation_and_closed(fake) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()
    kept: list[int] = []  # the pipe's read end, kept by the back-end

    def handler(conn: socket.socket, n: int) -> None:
        msg = _read_msg(conn, stop)
        if msg is None:
            return
        r, w = os.pipe()
        kept.append(r)
        try:
            socket.send_fds(conn, [HDR.pack(msg[0], 0x5, 8) + struct.pack("<Q", VERSION_1)],
                            [r, w])
        finally:
            os.close(w)
        _read_msg(conn, stop)  # hold the connection until the front-end leaves

    fb = fake(handler)
    with Frontend(fb.path, timeout=2) as fe, pytest.raises(ProtocolViolation) as e:
        fe.get_u64(Req.GET_FEATURES)
    stop.set()
    assert e.value.kind is ViolationKind.UNEXPECTED_FDS
    assert e.value.requirement == "VHOST-USER-REPLY"
    # the front-end closed the write end it received: the pipe reads EOF, not "would block"
    (r,) = kept
    try:
        ready, _, _ = select.select([r], [], [], 5)
        assert ready and os.read(r, 1) == b""
    finally:
        os.close(r)


# --- 3. guarded checks ----------------------------------------------------------------------
def test_a_check_that_raises_is_an_error_check_naming_it(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken(t: Target) -> list[ck.Result]:
        c = ck.Ctx(t, "chains")
        c.add("PVSPEC-RING-USED-IDX", True, "found before the defect")
        raise RuntimeError("planted defect")

    monkeypatch.setitem(ck.BLK_CHECKS, "chains", broken)
    seen: list[str] = []
    rep = run_conformance("reference-vhost-user-blk", tmp_path / "report",
                          checks=("features", "chains"), progress=lambda i, c: seen.append(i))
    suite = [c for c in rep.checks if c.kind == "suite" and c.status == "error"]
    assert [c.id for c in suite] == ["chains"]
    assert "chains" in suite[0].detail and "RuntimeError: planted defect" in suite[0].detail
    assert suite[0].failure is not None and suite[0].failure.kind == "suite"
    assert "chains:PVSPEC-RING-USED-IDX" in [c.id for c in rep.checks]  # kept
    assert rep.verdict == "error"
    data = _valid(tmp_path / "report")
    assert any(c["id"] == "chains" and c["status"] == "error" for c in data["checks"])
    assert "chains" in seen and "vhost-user:connect" in seen


def test_used_len_survives_a_device_that_completes_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The old IndexError: the second poisoned request never completes."""
    kicks: dict[int, int] = {}
    real = ref_server._Conn.on_kick

    def first_kick_only(self: ref_server._Conn) -> None:
        kicks[id(self)] = kicks.get(id(self), 0) + 1
        if kicks[id(self)] == 1:
            real(self)
        else:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self.vring.kick)

    monkeypatch.setattr(ref_server._Conn, "on_kick", first_kick_only)
    t = start_reference_blk()
    try:
        results = ck.run_check(t, "used-len")
    finally:
        t.stop()
    checks = vr.to_checks(results)
    assert not [c for c in checks if c.kind == "suite"], [c.detail for c in checks]
    stalled = [c for c in checks if c.status == "failed"
               and c.failure and c.failure.requirement == "PVSPEC-RING-PROGRESS"]
    assert stalled
    # the two-poison comparisons are not judged (what the first answer showed on its own,
    # such as GET_ID's id, is)
    not_reached = {(r.check, r.rule) for r in results
                   if r.status == "skip" and r.reason == "not-reached"}
    assert {("get-id-len-bytes", "VIRTIO-5.2.6-GET-ID-NUL-PADDED"),
            ("read-past-capacity-len-bytes", "VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES")} <= not_reached


def test_run_one_and_check_names() -> None:
    assert check_names("blk")[0] == "features" and "hostile" in check_names("blk")
    assert check_names("fs")[0] == "fs-fuse-init" and "fs-read" in check_names("fs")
    t = Target("x", "blk", "/nonexistent/x.sock")
    (c,) = run_one(t, "no-such-check")
    assert c.status == "error" and c.kind == "suite" and "no-such-check" in c.detail
    checks = run_one(t, "features")  # unreachable: an error check, not a traceback
    assert [c.status for c in checks] == ["error"]
    assert checks[0].failure is not None
    assert checks[0].failure.requirement == "VHOST-USER-CONNECT"


# --- 4. a device failure shows the request --------------------------------------------------
def test_device_failure_trace_holds_the_request(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A planted bug: an unknown request type answered OK instead of UNSUPP."""
    real = ref_blk.BlkDevice.handle

    def ok_for_anything(self: ref_blk.BlkDevice, out: bytes, in_len: int) -> tuple[int, bytes]:
        if len(out) >= 16 and struct.unpack_from("<I", out)[0] == 99:
            return 0, b""
        return real(self, out, in_len)

    monkeypatch.setattr(ref_blk.BlkDevice, "handle", ok_for_anything)
    out = tmp_path / "report"
    rep = run_conformance("reference-vhost-user-blk", out, checks=("blk-semantics",))
    assert rep.verdict == "failed"
    (bad,) = [c for c in rep.checks if c.status == "failed"]
    f = bad.failure
    # an unknown type's own 5.2.6 rule, not the discard/write-zeroes flags rule
    assert f is not None and f.requirement == "VIRTIO-5.2.6-DEV-UNSUPP-TYPE"
    assert bad.kind == "virtio" and bad.judged == (f.requirement,)
    assert all(op["op"] == "vhost-user" and op["text"] for op in f.trace)
    assert not any(op.get("kind") == "message" for op in f.trace)  # not the handshake
    ring = next(op for op in f.trace if op.get("kind") == "ring")
    assert {"avail_idx", "used_idx_before", "used_idx_after", "last_used"} <= set(ring)
    req = next(op for op in f.trace if op.get("kind") == "request")
    assert req["request"]["type"] == 99
    assert req["status"] == 0 and "status 0 (OK)" in req["text"]
    assert req["used"]["id"] == req["head"]
    assert [set(d) >= {"addr", "len", "flags", "next"} for d in req["chain"]] == [True, True]
    assert req["buffers"][0]["before"].startswith("63000000")  # the header, type 99
    assert req["buffers"][-1]["after"] == "00"  # the status byte
    assert f.trace_file and (out / f.trace_file).exists()
    saved = json.loads((out / f.trace_file).read_text())
    assert saved["format"] == "pvspec-virtio-trace"
    assert saved["failure"]["requirement"] == f.requirement
    full = next(op for op in saved["ops"] if op.get("kind") == "request")
    assert bytes.fromhex(full["buffers"][0]["before"])[:4] == struct.pack("<I", 99)
    _valid(out)
    md = (out / "report.md").read_text()
    assert "status 0 (OK)" in md


def test_trace_buffers_are_clipped_in_the_report() -> None:
    from conformance.vhost_user.evidence import clip_op

    big = {"op": "vhost-user", "text": "x", "buffers": [{"before": "ab" * 4096}]}
    clipped = clip_op(big)
    assert len(clipped["buffers"][0]["before"]) < 700
    assert "(+3840 bytes)" in clipped["buffers"][0]["before"]
    assert big["buffers"][0]["before"] == "ab" * 4096  # the record itself is untouched


# --- 5. the run: interruptions, selection, the back-end stopped ------------------------------
@pytest.mark.parametrize("exc,code,why", [
    (KeyboardInterrupt(), 130, "interrupted by SIGINT"),
    (RunInterrupted("time limit of 1 s reached", 3), 3, "time limit of 1 s reached"),
])
def test_interrupted_run_is_written_and_the_backend_stopped(
        tmp_path: Path, monkeypatch, exc: BaseException, code: int, why: str) -> None:  # type: ignore[no-untyped-def]
    opened: list[Target] = []

    def spy(spec: str) -> Target:
        opened.append(open_target(spec))
        return opened[-1]

    monkeypatch.setattr(vr, "open_target", spy)
    calls = []

    def progress(cid: str, check: object) -> None:
        calls.append(cid)
        if cid.startswith("features:"):
            raise exc

    rep = run_conformance("reference-vhost-user-blk", tmp_path / "report", progress=progress)
    assert rep.incomplete == why and rep.exit_code == code
    data = _valid(tmp_path / "report")
    assert data["incomplete"] == why
    (t,) = opened
    assert t.stopped and not t.alive()


def test_an_interrupted_check_keeps_what_it_judged(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def interrupted(t: Target) -> list[ck.Result]:
        c = ck.Ctx(t, "chains")
        c.add("PVSPEC-RING-USED-IDX", True, "judged before Ctrl-C")
        raise KeyboardInterrupt

    monkeypatch.setitem(ck.BLK_CHECKS, "chains", interrupted)
    rep = run_conformance("reference-vhost-user-blk", tmp_path / "report", checks=("chains",))
    assert rep.exit_code == 130 and rep.incomplete == "interrupted by SIGINT"
    assert "chains:PVSPEC-RING-USED-IDX" in {c.id for c in rep.checks}
    assert rep.matrix()["VHOST-USER-VRING-BASE"]["reason"] == "interrupted"
    assert _valid(tmp_path / "report")["incomplete"] == "interrupted by SIGINT"


def _socket_run(tmp_path: Path, checks: tuple[str, ...]) -> Any:
    """A run against our back-end reached as a plain socket: the suite did not create its
    disk and cannot see it."""
    t = start_reference_blk()
    try:
        return run_conformance(f"vhost-user:{t.socket_path}", tmp_path / "report",
                               checks=checks)
    finally:
        t.stop()


def test_unknown_disk_is_learned_and_judged(tmp_path: Path) -> None:
    """A running back-end on a socket: its disk is learned as it is read (a read binds the
    sectors it covers, a write makes them known), so the blk data rules are judged."""
    rep = _socket_run(tmp_path, ("features", "blk-semantics", "chains"))
    assert rep.verdict == "passed", rep.verdict_and_reason()
    m = rep.matrix()
    for rule in ("VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO", "VIRTIO-5.2.6-DEV-UNSUPP-TYPE",
                 "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS", "VIRTIO-5.2.6-DEV-DATA-INTEGRITY",
                 "VIRTIO-5.2.6-GET-ID-NUL-PADDED", "PVSPEC-RING-USED-IDX"):
        assert m[rule]["status"] == "passed", (rule, m[rule])
    assert m["VIRTIO-5.2.6.2-DEV-STABLE-WRITES"]["reason"] == "platform"
    assert m["VIRTIO-2.7.8-DEV-USED-LEN"]["reason"] == "platform"


@pytest.mark.parametrize("bug", ["lost-write", "stale-read"])
def test_learned_disk_catches_planted_data_bugs(tmp_path: Path, monkeypatch: Any,
                                                bug: str) -> None:
    """The learned model can fail: a back-end that drops a write, or whose reads change
    between two reads of a sector nobody wrote, breaks 5.2.6 data integrity on a socket
    target too."""
    handle = ref_blk.BlkDevice.handle
    reads: dict[int, int] = {}

    def planted(self: Any, out: bytes, in_len: int) -> tuple[int, bytes]:
        typ, _, sector = blk.decode_header(out[:16])
        if bug == "lost-write" and typ == blk.T_OUT:
            return 0, b""  # completes the write, keeps the old data
        status, data = handle(self, out, in_len)
        if bug == "stale-read" and typ == blk.T_IN and sector == 2 and data:
            reads[sector] = reads.get(sector, 0) + 1
            if reads[sector] > 1:  # the second read of sector 2 answers other bytes
                data = bytes([data[0] ^ 0xFF]) + data[1:]
        return status, data

    monkeypatch.setattr(ref_blk.BlkDevice, "handle", planted)
    rep = _socket_run(tmp_path, ("blk-semantics",) if bug == "lost-write" else ("used-len",))
    assert rep.verdict == "failed", rep.verdict_and_reason()
    assert rep.matrix()["VIRTIO-5.2.6-DEV-DATA-INTEGRITY"]["status"] == "failed"


def test_only_and_skip_select_checks_and_rules(tmp_path: Path) -> None:
    rep = run_conformance("reference-vhost-user-blk", only=("features", "VHOST-USER-*"),
                          skip=("hostile",))
    ids = {c.id.split(":")[0] for c in rep.checks}
    assert "features" in ids and "index-wrap" in ids  # VHOST-USER-VRING-BASE matches
    assert not ids & {"hostile", "chains", "blk-semantics"}
    m = rep.matrix()
    assert m["VHOST-USER-VRING-BASE"]["status"] == "passed"
    assert m["PVSPEC-RING-MALFORMED"]["reason"] == "deselected"
    # index-wrap ran, but its ring rules were not asked for
    assert "index-wrap:PVSPEC-RING-USED-IDX" not in {c.id for c in rep.checks}
    assert rep.verdict == "passed", rep.verdict_and_reason()


def test_managed_qemu_is_stopped_with_its_process_group(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if qsd_path() is None:
        (pytest.fail if IN_CI else pytest.skip)("qemu-storage-daemon not installed")
    opened: list[Target] = []

    def spy(spec: str) -> Target:
        opened.append(open_target(spec))
        return opened[-1]

    monkeypatch.setattr(vr, "open_target", spy)

    def interrupt(cid: str, check: object) -> None:
        if cid == "vhost-user:connect":
            raise KeyboardInterrupt

    rep = run_conformance("qemu-vhost-user-blk", tmp_path / "report", progress=interrupt)
    assert rep.exit_code == 130
    (t,) = opened
    assert t.proc is not None and t.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(t.proc.pid, 0)
    assert t.tmpdir is not None and not os.path.exists(t.tmpdir)


# --- 6. the managed targets give today's results --------------------------------------------
def _need(program: object, what: str) -> None:
    if program is None:
        (pytest.fail if IN_CI else pytest.skip)(f"{what} not installed")


def test_qemu_run_keeps_f1_failed_with_its_request(tmp_path: Path) -> None:
    _need(qsd_path(), "qemu-storage-daemon")
    rep = run_conformance("qemu-vhost-user-blk", tmp_path / "report")
    assert rep.verdict == "failed", rep.verdict_and_reason()
    failed = {c.id for c in rep.checks if c.status == "failed"}
    assert failed - {"blk-explore:VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS"} == {
        "get-id-len-bytes:VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES",
        "get-id-len-bytes:VIRTIO-5.2.6-GET-ID-NUL-PADDED",
        "blk-semantics:VIRTIO-5.2.6-GET-ID-NUL-PADDED",
        "blk-semantics:VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS",  # F4
        "blk-explore:VIRTIO-5.2.6-GET-ID-NUL-PADDED",  # F1, met by drawn requests
        "chains:VIRTIO-2.7.5.3-DEV-MIXED-CHAIN", "chains:PVSPEC-RING-PROGRESS",  # F5
        "read-past-capacity-len-bytes:VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES"}
    assert not [c for c in rep.checks if c.status == "error"]
    f1 = next(c for c in rep.checks if c.id.endswith("WRITE-LEN-BYTES") and c.failure)
    reqs = [op for op in f1.failure.trace if op.get("kind") == "request"]  # type: ignore[union-attr]
    assert reqs and reqs[0]["request"]["name"] == "GET_ID" and reqs[0]["status"] == 0
    assert reqs[0]["used"]["len"] == 21
    assert all(any(f in n for n in rep.notes) for f in ("F1", "F2", "F4", "F5"))
    f2 = next(c for c in rep.checks if c.id.startswith("read-past-capacity-len-bytes:")
              and c.failure)
    reqs = [op for op in f2.failure.trace if op.get("kind") == "request"]  # type: ignore[union-attr]
    assert reqs and reqs[0]["status"] == ref_blk.S_IOERR and reqs[0]["used"]["len"] == 1025
    m = rep.matrix()
    assert m["VIRTIO-6.2-DEV-IN-ORDER"]["reason"] == "not-offered"
    assert m["VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH"]["status"] == "passed"  # QEMU offers WCE
    assert set(m) == set(rep.universe or ())  # every credited rule is a stated one
    assert rep.matrix()["VHOST-USER-RESPONSIVE"]["status"] == "passed"


def test_reference_and_virtiofsd_runs_pass(tmp_path: Path) -> None:
    from conformance.vhost_user.targets import virtiofsd_path

    rep = run_conformance("reference-vhost-user-blk", tmp_path / "ref")
    assert rep.verdict == "passed", rep.verdict_and_reason()
    assert not [c for c in rep.checks if c.status in ("failed", "error")]
    _need(virtiofsd_path(), "virtiofsd")
    fs = run_conformance("virtiofsd", tmp_path / "fs")
    assert fs.verdict == "passed", fs.verdict_and_reason()
    assert fs.matrix()["PVSPEC-RING-PROGRESS"]["status"] == "passed"
