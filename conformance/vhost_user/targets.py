"""Targets: where a vhost-user back-end comes from, and how to stop it.

* ``vhost-user:SOCKET`` — a running virtio-blk back-end (not managed; its disk is learned
  as it is read); ``vhost-user-net:SOCKET`` the same for a virtio-net one;
* ``reference-vhost-user-net`` — our own virtio-net back-end in a thread, frames looped back;
* ``qemu-vhost-user-blk`` — qemu-storage-daemon exporting a scratch raw file as
  vhost-user-blk over a temp socket (started and killed here);
* ``reference-vhost-user-blk`` — our own back-end (reference_impl.virtio) in a thread;
* ``virtiofsd`` — QEMU's vhost-user-fs daemon on a temp shared directory;
* ``qemu-vhost-user-gpu`` — QEMU's vhost-user-gpu, 2D, without a display socket;
* ``dpdk-vhost-net`` (``:tso`` with ``tso=1``) — DPDK 22.11's rte_vhost virtio-net back-end
  (net_vhost PMD) in guests/dpdk-loopback, which returns every frame the driver transmits
  on its receive queue (built on first use against Debian's libdpdk-dev).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

QSD = "qemu-storage-daemon"
VIRTIOFSD_PATHS = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd")
DISK_BYTES = 1 << 20


class TargetUnavailable(Exception):
    """The target cannot be started or reached here (missing program, refused to start,
    no socket at the path, ...)."""


class UnknownTarget(TargetUnavailable, ValueError):
    """The target spec names no vhost-user target this suite knows."""


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
    kind: str  # "blk" | "fs" | "net" | "gpu"
    socket_path: str
    initial: bytes | None = None  # known initial disk contents
    disk_view: Callable[[], bytes] | None = None  # direct look at the backing store
    proc: subprocess.Popen[bytes] | None = None
    tmpdir: str | None = None
    stop_hook: Callable[[], None] | None = None
    log_path: str | None = None
    thread: threading.Thread | None = None  # an in-process back-end
    # the back-end serves one front-end connection and then exits (virtiofsd): it cannot
    # be probed by a second connection
    single_connection: bool = False
    # a connected, already-probed front-end (conformance.vhost_user.frontend.Frontend) the
    # next check takes over instead of connecting again (see take_handoff)
    handoff: Any = None
    stopped: bool = False

    @property
    def managed(self) -> bool:
        """Started (and stopped) by this suite, so its liveness is known."""
        return self.proc is not None or self.thread is not None

    def alive(self) -> bool:
        """False once a managed back-end has exited; True when unknown (unmanaged)."""
        if self.proc is not None:
            return self.proc.poll() is None
        if self.thread is not None:
            return self.thread.is_alive()
        return True

    def exit_status(self) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            return f"exit status {rc}" if rc >= 0 else f"killed by signal {-rc}"
        if self.thread is not None and not self.thread.is_alive():
            return "its thread ended"
        return "running"

    def take_handoff(self) -> Any:
        fe, self.handoff = self.handoff, None
        return fe

    def log(self) -> str:
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        return ""

    def stop(self) -> None:
        """Stop a managed back-end -- its whole process group -- and remove its files.
        Idempotent, and never raises."""
        fe = self.take_handoff()
        if fe is not None:
            with contextlib.suppress(Exception):
                fe.close()
        if self.stopped:
            return
        self.stopped = True
        try:
            if self.stop_hook:
                self.stop_hook()
        finally:
            if self.proc is not None:
                _kill_group(self.proc)
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the back-end's process group (it runs in its own session), wait, then
    SIGKILL whatever of the group is left."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


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
    """``t`` once its socket exists; stopped (never leaked) if it never does, or if the
    wait is interrupted (Ctrl-C, the run's time limit)."""
    try:
        _wait_socket(t.socket_path, proc, log, within)
    except BaseException:
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
               stop_hook=halt, thread=th)
    return _ready(t, None, "", 5.0)


def start_reference_net() -> Target:
    """Our virtio-net back-end (reference_impl.virtio.net) in a thread, every frame the
    driver transmits looped back to its receive queue."""
    from reference_impl.virtio.server import serve_vhost_user_net

    tmp = tempfile.mkdtemp(prefix="pvspec-ref-net-")
    sock = os.path.join(tmp, "net.sock")
    stop = threading.Event()
    th = threading.Thread(target=serve_vhost_user_net, args=(sock, stop), daemon=True,
                          name="pvspec-vu-ref-net")
    th.start()

    def halt() -> None:
        stop.set()
        th.join(timeout=3)

    t = Target(REFERENCE_NET, "net", sock, None, None, None, tmp, stop_hook=halt, thread=th)
    return _ready(t, None, "", 5.0)


def start_virtiofsd(within: float = 10.0) -> Target:
    """virtiofsd (vhost-user-fs) on a temp shared directory, sandboxed by chroot."""
    exe = virtiofsd_path()
    if exe is None:
        raise TargetUnavailable("virtiofsd not installed")
    tmp = tempfile.mkdtemp(prefix="pvspec-fs-")
    shared = os.path.join(tmp, "shared")
    os.mkdir(shared)
    from conformance.vhost_user.fs_tree import populate

    populate(shared)  # known names, sizes, modes and contents (fs_tree.TREE)
    sock, log = os.path.join(tmp, "fs.sock"), os.path.join(tmp, "virtiofsd.log")
    cmd = [exe, f"--socket-path={sock}", "-o", f"source={shared}", "-o", "cache=none",
           "-o", "sandbox=chroot", "-f"]
    proc = _spawn(cmd, log)
    t = Target("virtiofsd", "fs", sock, None, None, proc, tmp, log_path=log,
               single_connection=True)  # virtiofsd exits when its front-end leaves
    return _ready(t, proc, log, within)


GPU_PATH = "/usr/lib/qemu/vhost-user-gpu"
QEMU_GPU = "qemu-vhost-user-gpu"


def start_qemu_gpu(within: float = 10.0) -> Target:
    """QEMU's vhost-user-gpu (Debian's qemu-system-gui), 2D (no virgl), no display socket:
    it serves one front-end connection (it closes its listening socket on accept)."""
    exe = GPU_PATH if os.access(GPU_PATH, os.X_OK) else shutil.which("vhost-user-gpu")
    if exe is None:
        raise TargetUnavailable("vhost-user-gpu not installed: apt-get install "
                                "qemu-system-gui (scripts/install-system-deps)")
    tmp = tempfile.mkdtemp(prefix="pvspec-gpu-")
    sock, log = os.path.join(tmp, "gpu.sock"), os.path.join(tmp, "vhost-user-gpu.log")
    proc = _spawn([exe, f"--socket-path={sock}"], log)
    t = Target(QEMU_GPU, "gpu", sock, None, None, proc, tmp, log_path=log,
               single_connection=True)
    return _ready(t, proc, log, within)


DPDK_NET = ("dpdk-vhost-net", "dpdk-vhost-net:tso")
DPDK_DIR = Path(__file__).resolve().parents[2] / "guests" / "dpdk-loopback"
DPDK_FIX = "apt-get install libdpdk-dev pkg-config (scripts/install-system-deps)"


def build_dpdk_loopback(within: float = 180.0) -> str:
    """guests/dpdk-loopback/build/dpdk-loopback, built (make, idempotent) if needed;
    :class:`TargetUnavailable` saying what to install when it cannot be."""
    exe = DPDK_DIR / "build" / "dpdk-loopback"
    if shutil.which("pkg-config") is None:
        raise TargetUnavailable(f"pkg-config not installed: {DPDK_FIX}")
    if subprocess.run(["pkg-config", "--exists", "libdpdk"], check=False).returncode != 0:
        raise TargetUnavailable(f"DPDK's development files (libdpdk) not found: {DPDK_FIX}")
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        raise TargetUnavailable("make or a C compiler is missing: apt-get install make gcc")
    try:
        done = subprocess.run(["make", "-s", "-C", str(DPDK_DIR)], capture_output=True,
                              timeout=within, check=False)
    except subprocess.TimeoutExpired:
        raise TargetUnavailable(f"building {exe} took over {within:g}s") from None
    if done.returncode != 0 or not os.access(exe, os.X_OK):
        err = (done.stderr or done.stdout).decode(errors="replace")[-600:]
        raise TargetUnavailable(f"building {exe} failed: {err}")
    return str(exe)


def start_dpdk_net(tso: bool = False, within: float = 15.0) -> Target:
    """DPDK's vhost-user net back-end (guests/dpdk-loopback): EAL without hugepages or
    PCI, one net_vhost port on a temp socket, every transmitted frame looped back.  Its
    EAL runtime directory (``--file-prefix``, unique per start) is removed on stop."""
    exe = build_dpdk_loopback()
    tmp = tempfile.mkdtemp(prefix="pvspec-dpdk-")
    sock, log = os.path.join(tmp, "net.sock"), os.path.join(tmp, "dpdk.log")
    prefix = f"pvspec-{os.getpid()}-{os.path.basename(tmp).rsplit('-', 1)[-1]}"
    vdev = f"net_vhost0,iface={sock},queues=1" + (",tso=1" if tso else "")
    cmd = [exe, "--no-huge", "--no-pci", "-m", "256", "-l", "0", "--no-shconf",
           f"--file-prefix={prefix}", "--log-level=lib.eal:error", "--vdev", vdev]
    proc = _spawn(cmd, log)

    def cleanup() -> None:
        for run in ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
                                                  "dpdk")):
            shutil.rmtree(os.path.join(run, prefix), ignore_errors=True)

    name = "dpdk-vhost-net:tso" if tso else "dpdk-vhost-net"
    t = Target(name, "net", sock, None, None, proc, tmp, log_path=log)
    _ready(t, proc, log, within)
    try:
        _wait_log(log, "ready", proc, within)
    except BaseException:
        t.stop()
        cleanup()
        raise
    def halt() -> None:  # the process first, then its runtime directory
        _kill_group(proc)
        cleanup()

    t.stop_hook = halt
    return t


def _wait_log(path: str, word: str, proc: subprocess.Popen[bytes], within: float) -> None:
    """Until ``word`` is a line of the log ``path`` (the process announces it is up)."""
    deadline = time.monotonic() + within
    while True:
        with open(path, errors="replace") as f:
            text = f.read()
        if word in text.split("\n"):
            return
        if proc.poll() is not None:
            raise TargetUnavailable(f"exited with {proc.returncode}: {text[-800:]}")
        if time.monotonic() > deadline:
            raise TargetUnavailable(f"no {word!r} within {within}s: {text[-400:]}")
        time.sleep(0.02)


# socket forms: a running back-end says nothing of its device type over vhost-user, so
# the target string does (``vhost-user:SOCKET`` is blk, as it always was)
SOCKET_FORMS = {"vhost-user:": "blk", "vhost-user-net:": "net"}
REFERENCE_NET = "reference-vhost-user-net"


def socket_form(spec: str) -> str | None:
    """The socket prefix ``spec`` starts with (None: a managed target)."""
    return next((p for p in SOCKET_FORMS if spec.startswith(p)), None)


def target_kind(spec: str) -> str:
    """The device type a target spec speaks: ``blk``, ``net`` or ``fs``."""
    form = socket_form(spec)
    if form is not None:
        return SOCKET_FORMS[form]
    if spec in DPDK_NET or spec == REFERENCE_NET:
        return "net"
    if spec == QEMU_GPU:
        return "gpu"
    return "fs" if spec == "virtiofsd" else "blk"


def open_target(spec: str) -> Target:
    """Parse a target spec and start it when managed; :class:`TargetUnavailable` (never
    another exception) when it cannot be started or there is no socket at the path."""
    if socket_form(spec) is not None:
        path = spec.split(":", 1)[1]
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise TargetUnavailable(f"no socket at {path}: {e.strerror or e}") from None
        if not stat.S_ISSOCK(mode):
            raise TargetUnavailable(f"{path} is not a socket")
        return Target(spec, target_kind(spec), path)
    try:
        return _start_managed(spec)
    except (OSError, subprocess.SubprocessError) as e:
        raise TargetUnavailable(f"cannot start {spec}: {e}") from None


def _start_managed(spec: str) -> Target:
    if spec == "qemu-vhost-user-blk":
        return start_qemu_blk()
    if spec in ("reference-vhost-user-blk", "pvspec-vhost-user-blk"):
        return start_reference_blk()
    if spec == "virtiofsd":
        return start_virtiofsd()
    if spec == QEMU_GPU:
        return start_qemu_gpu()
    if spec in DPDK_NET:
        return start_dpdk_net(tso=spec.endswith(":tso"))
    if spec == REFERENCE_NET:
        return start_reference_net()
    raise UnknownTarget(f"unknown vhost-user target {spec!r}")
