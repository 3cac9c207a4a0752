"""Targets: where a vhost-user back-end comes from, and how to stop it.

* ``vhost-user:SOCKET`` — a running back-end (not managed; disk not observable);
* ``qemu-vhost-user-blk`` — qemu-storage-daemon exporting a scratch raw file as
  vhost-user-blk over a temp socket (started and killed here);
* ``reference-vhost-user-blk`` — our own back-end (reference_impl.virtio) in a thread;
* ``virtiofsd`` — QEMU's vhost-user-fs daemon on a temp shared directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

import attrs

QSD = "qemu-storage-daemon"
VIRTIOFSD_PATHS = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd")
DISK_BYTES = 1 << 20


class TargetUnavailable(Exception):
    """The target cannot be started here (missing program, refused to start, ...)."""


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a managed back-end never outlives a killed test run."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def disk_pattern(size: int) -> bytes:
    """A recognisable initial disk: each sector starts with its number."""
    return b"".join(i.to_bytes(4, "little").ljust(512, bytes([i & 0xFF])) for i in
                    range(size // 512))


@attrs.define
class Target:
    name: str
    kind: str  # "blk" | "fs"
    socket_path: str
    initial: bytes | None = None  # known initial disk contents
    disk_view: Callable[[], bytes] | None = None  # direct look at the backing store
    proc: subprocess.Popen[bytes] | None = None
    tmpdir: str | None = None
    stop_hook: Callable[[], None] | None = None
    log_path: str | None = None

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def log(self) -> str:
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        return ""

    def stop(self) -> None:
        if self.stop_hook:
            self.stop_hook()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def qsd_path() -> str | None:
    return shutil.which(QSD)


def virtiofsd_path() -> str | None:
    for p in VIRTIOFSD_PATHS:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("virtiofsd")


def _wait_socket(path: str, proc: subprocess.Popen[bytes] | None, log: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            with open(log, errors="replace") as f:
                raise TargetUnavailable(f"exited with {proc.returncode}: {f.read()[-800:]}")
        if time.monotonic() > deadline:
            raise TargetUnavailable(f"socket {path} did not appear within {within}s")
        time.sleep(0.02)


def start_qemu_blk(disk_bytes: int = DISK_BYTES, within: float = 10.0) -> Target:
    """qemu-storage-daemon: a vhost-user-blk export of a scratch raw file."""
    exe = qsd_path()
    if exe is None:
        raise TargetUnavailable(f"{QSD} not installed (scripts/install-system-deps)")
    tmp = tempfile.mkdtemp(prefix="pvspec-qsd-")
    disk, sock, log = (os.path.join(tmp, n) for n in ("disk.raw", "vu.sock", "qsd.log"))
    initial = disk_pattern(disk_bytes)
    with open(disk, "wb") as f:
        f.write(initial)
    cmd = [exe,
           "--blockdev", f"driver=file,node-name=n0,filename={disk},discard=unmap",
           "--export", f"type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,"
                       f"addr.path={sock},writable=on,num-queues=1"]
    proc = _spawn(cmd, log)
    t = Target("qemu-vhost-user-blk", "blk", sock, initial, lambda: _read(disk), proc, tmp,
               log_path=log)
    return _ready(t, proc, log, within)


def _spawn(cmd: list[str], log: str) -> subprocess.Popen[bytes]:
    """Start a backend in its own session, output to ``log``, dying with this process."""
    with open(log, "wb") as lf:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                start_new_session=True, preexec_fn=_die_with_parent)


def _ready(t: Target, proc: subprocess.Popen[bytes] | None, log: str, within: float) -> Target:
    """``t`` once its socket accepts connections; stopped (never leaked) if it never does."""
    try:
        _wait_socket(t.socket_path, proc, log, within)
    except TargetUnavailable:
        t.stop()
        raise
    return t


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def start_reference_blk(disk_bytes: int = DISK_BYTES) -> Target:
    """Our back-end (reference_impl.virtio) serving a bytearray disk from a thread."""
    from reference_impl.virtio.server import serve_vhost_user_blk

    tmp = tempfile.mkdtemp(prefix="pvspec-ref-")
    sock = os.path.join(tmp, "vu.sock")
    disk = bytearray(disk_pattern(disk_bytes))
    initial = bytes(disk)
    stop = threading.Event()
    th = threading.Thread(target=serve_vhost_user_blk, args=(sock, disk),
                          kwargs={"stop": stop}, daemon=True, name="pvspec-vu-ref")
    th.start()

    def halt() -> None:
        stop.set()
        th.join(timeout=3)

    t = Target("reference-vhost-user-blk", "blk", sock, initial, lambda: bytes(disk), None, tmp,
               stop_hook=halt)
    return _ready(t, None, "", 5.0)


def start_virtiofsd(within: float = 10.0) -> Target:
    """virtiofsd (vhost-user-fs) on a temp shared directory, sandboxed by chroot."""
    exe = virtiofsd_path()
    if exe is None:
        raise TargetUnavailable("virtiofsd not installed")
    tmp = tempfile.mkdtemp(prefix="pvspec-fs-")
    shared = os.path.join(tmp, "shared")
    os.mkdir(shared)
    with open(os.path.join(shared, "hello.txt"), "w") as f:
        f.write("hello from pvspec\n")
    sock, log = os.path.join(tmp, "fs.sock"), os.path.join(tmp, "virtiofsd.log")
    cmd = [exe, f"--socket-path={sock}", "-o", f"source={shared}", "-o", "cache=none",
           "-o", "sandbox=chroot", "-f"]
    proc = _spawn(cmd, log)
    t = Target("virtiofsd", "fs", sock, None, None, proc, tmp, log_path=log)
    return _ready(t, proc, log, within)


def open_target(spec: str) -> Target:
    """Parse a target spec and start it when managed."""
    if spec.startswith("vhost-user:"):
        path = spec.split(":", 1)[1]
        if not os.path.exists(path):
            raise TargetUnavailable(f"no socket at {path}")
        return Target(spec, "blk", path)
    if spec == "qemu-vhost-user-blk":
        return start_qemu_blk()
    if spec in ("reference-vhost-user-blk", "pvspec-vhost-user-blk"):
        return start_reference_blk()
    if spec == "virtiofsd":
        return start_virtiofsd()
    raise ValueError(f"unknown vhost-user target {spec!r}")
