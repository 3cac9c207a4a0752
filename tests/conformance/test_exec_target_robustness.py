"""An exec target is a system under test: whatever it does (fork helpers, hang, send an
endless line, flood stderr, send huge or unencodable error text) the suite must end it
completely and keep its own memory and reports bounded."""

from __future__ import annotations

import os
import shlex
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from conformance.target import (
    ExecTarget,
    ProtocolViolation,
    TargetError,
    TargetTimeout,
    make_target,
)
from spec.hypercalls import abi
from spec.state import Config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

# A minimal adapter: argv = mode, abi version, pid file.  Modes decide what goes wrong.
ADAPTER = textwrap.dedent('''
    import json, os, sys, time
    mode, abi_version, pidfile = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode in ("fork", "fork_hang"):
        pid = os.fork()
        if pid == 0:  # the grandchild: keeps the pipes open and lives on
            time.sleep(1000)
            os._exit(0)
        with open(pidfile, "w") as f:
            f.write(str(pid))
    if mode == "stderr_flood":
        block = b"e" * (1 << 20)
        for _ in range(64):
            os.write(2, block)
        os.write(2, b"THE END\\n")
    out = sys.stdout
    for line in sys.stdin:
        m = json.loads(line)
        t, i = m["type"], m["msg_id"]
        r = {"type": t + "_ok", "in_reply_to": i}
        if t == "init":
            r.update(protocol_version="1.0", abi_version=abi_version,
                     capabilities=["hypercall"])
        if t == "reset" and mode == "long_line":
            chunk = "x" * (1 << 20)
            for _ in range(100):  # 100 MB, no newline
                out.write(chunk)
                out.flush()
            time.sleep(60)
        if t == "reset" and mode == "huge_error":
            r = {"type": "error", "in_reply_to": i, "code": 13, "definite": True,
                 "text": "\\ud800" + "x" * (20 << 20)}
        if t == "hypercall":
            if mode == "fork_hang":
                time.sleep(60)
            r["regs"] = {"x0": 0}
        out.write(json.dumps(r) + "\\n")
        out.flush()
''')


@pytest.fixture
def adapter(tmp_path: Path):
    script = tmp_path / "adapter.py"
    script.write_text(ADAPTER)
    pidfile = tmp_path / "grandchild.pid"

    def command(mode: str, abi_version: str = abi.ABI_VERSION) -> str:
        return shlex.join([sys.executable, str(script), mode, abi_version, str(pidfile)])

    command.pidfile = pidfile  # type: ignore[attr-defined]
    return command


def _gone(pid: int, within: float = 3.0) -> bool:
    """Whether ``pid`` is dead (gone, or a zombie nobody reaped yet), polling up to
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/status") as f:
                state = next(ln for ln in f if ln.startswith("State:")).split()[1]
            if state in ("Z", "X"):
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        except (OSError, StopIteration):
            pass  # no /proc (macOS): rely on os.kill alone
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _read_pid(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, "the target never wrote its helper's pid"
        time.sleep(0.02)
    return int(path.read_text())


# 1. process groups ---------------------------------------------------------------------------
def test_target_leads_its_own_process_group(adapter):
    t = ExecTarget(adapter("ok"))
    try:
        assert t.pgid is not None and t._proc is not None
        assert t.pgid == t._proc.pid == os.getpgid(t._proc.pid) != os.getpgrp()
    finally:
        t.close()
    assert t.pgid is None


def test_close_ends_a_forked_grandchild(adapter):
    t = ExecTarget(adapter("fork"))
    pid = _read_pid(adapter.pidfile)
    try:
        t.reset(Config())
        t.hypercall(0, 0, {"x0": 0}, "arm64")
    finally:
        t.close()
    assert _gone(pid)


def test_close_ends_a_shell_wrappers_background_job(adapter, tmp_path):
    inner = adapter("ok")
    script = f"sleep 1000 & echo $! > {shlex.quote(str(adapter.pidfile))}; exec {inner}"
    t = ExecTarget(shlex.join(["sh", "-c", script]))
    pid = _read_pid(adapter.pidfile)
    try:
        t.reset(Config())
    finally:
        t.close()
    assert _gone(pid)


def test_timeout_ends_the_whole_group(adapter):
    t = ExecTarget(adapter("fork_hang"), timeout=0.5)
    pid = _read_pid(adapter.pidfile)
    try:
        t.reset(Config())
        with pytest.raises(TargetTimeout):
            t.hypercall(0, 0, {"x0": 0}, "arm64")
        assert _gone(pid)  # already, before close()
    finally:
        t.close()


def test_refused_handshake_ends_the_whole_group(adapter):
    with pytest.raises(ProtocolViolation, match=r"ABI 9\.9"):
        ExecTarget(adapter("fork", "9.9"))
    assert _gone(_read_pid(adapter.pidfile))


def test_python_exception_mid_exchange_ends_the_whole_group(adapter):
    t = ExecTarget(adapter("fork"))
    pid = _read_pid(adapter.pidfile)

    def broken(what: str, msg_id: int) -> str:
        raise RuntimeError("interrupted")

    try:
        t._readline = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            t.reset(Config())
        assert _gone(pid)
    finally:
        t.close()


# 2. bounded reply line -----------------------------------------------------------------------
def test_endless_reply_line_is_a_bounded_protocol_violation(adapter):
    t = ExecTarget(adapter("long_line"), timeout=30)
    try:
        tracemalloc.start()
        start = time.monotonic()
        try:
            with pytest.raises(ProtocolViolation) as info:
                t.reset(Config())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.monotonic() - start < 10
        assert f"longer than {1 << 20} bytes" in info.value.reason
        assert peak < 20 << 20
        assert t._proc is None and len(t._buf) <= (1 << 20) + (64 << 10)
    finally:
        t.close()


def test_max_line_is_configurable(adapter):
    t = make_target(f"exec:{adapter('ok')}", max_line=1 << 10)
    assert isinstance(t, ExecTarget) and t.max_line == 1 << 10
    t.close()


# 3. bounded stderr ---------------------------------------------------------------------------
def test_stderr_flood_neither_blocks_nor_grows_the_log(adapter, tmp_path):
    logs = tmp_path / "logs"
    t = ExecTarget(adapter("stderr_flood"), timeout=60, log_dir=str(logs))
    try:
        t.reset(Config())
        assert t.hypercall(0, 0, {"x0": 0}, "arm64") == {"x0": 0}
    finally:
        t.close()
    log = (logs / "target-stderr.log").read_bytes()
    assert len(log) <= 600 << 10
    assert b" bytes dropped ...]" in log
    assert log.startswith(b"e" * 1000) and log.rstrip().endswith(b"THE END")
    assert t.stderr_tail(100).endswith("THE END")


# 4. bounded error text -----------------------------------------------------------------------
def test_huge_unencodable_error_text_is_clipped(adapter):
    t = ExecTarget(adapter("huge_error"), timeout=60, max_line=64 << 20)
    try:
        with pytest.raises(TargetError) as info:
            t.reset(Config())
        reason = info.value.reason
        assert info.value.code == 13 and info.value.definite
        assert len(reason) <= 2100
        assert "characters cut" in reason
        reason.encode("utf-8")  # no lone surrogate left
    finally:
        t.close()
