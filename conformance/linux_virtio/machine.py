"""One boot of Debian's x86-64 Linux under ``qemu-system-x86_64`` (TCG) whose virtio-blk
disk (or virtio-net card) is pvspec's vhost-user back-end, judged by a
:class:`DriverJudge` as it serves.  The net card runs without MSI-X (``vectors=0``): QEMU
7.2 segfaults starting a vhost-user net device with MSI-X under TCG (docs/findings.md L2).

The kernel, its virtio modules and busybox come from ``scripts/fetch-linux-amd64``
(unpacked in ``$PVSPEC_LINUX_AMD64_DIR``, default /var/cache/pvspec/linux-amd64); the
initramfs is built from guests/linux-virtio at first use.  QEMU shares the guest's RAM
through a memfd backend (the back-end maps it: vhost-user needs shared memory), runs in
its own session with PR_SET_PDEATHSIG, and its whole process group is killed on every
exit path (done, failure, timeout, an exception, the test process being killed).  The
guest's workload reports on the serial console in lines ``PVSPEC <step> key=value ...``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from conformance.guest_machine import MachineError, qemu_missing
from conformance.linux_virtio.judge import DriverJudge
from conformance.vhost_user.targets import _die_with_parent, _kill_group
from reference_impl.virtio.blk import blk_features
from reference_impl.virtio.server import serve_vhost_user, serve_vhost_user_blk

__all__ = ["DISK_BYTES", "LinuxUnavailable", "Workload", "build_initrd", "linux_dir",
           "missing", "run_blk", "run_net"]

QEMU = "qemu-system-x86_64"
# qboot (Debian's qemu-system-data), not SeaBIOS: SeaBIOS has a virtio-blk driver of its own
# and would read the disk before Linux does, so the judge would see two drivers
QBOOT = Path("/usr/share/qemu/qboot.rom")
DISK_BYTES = 32 << 20  # the workload's layout (guests/linux-virtio/init) assumes 32 MiB
MEMORY_MB = 256
BOOT_TIMEOUT = 150.0  # seconds for the whole workload under TCG (about 12 s on 2 cores)
SOURCE = Path(__file__).resolve().parents[2] / "guests" / "linux-virtio"
_LINE = re.compile(rb"PVSPEC ([a-z]+)((?: [a-z_]+=[^ \r\n]*)*)")


class LinuxUnavailable(MachineError):
    """The kernel, busybox or QEMU is missing here: the run cannot start (a clear, typed
    error; tests skip on it)."""


def linux_dir() -> Path:
    return Path(os.environ.get("PVSPEC_LINUX_AMD64_DIR", "/var/cache/pvspec/linux-amd64"))


def missing() -> str:
    """Why the linux-virtio target cannot run here ("" when it can)."""
    d = linux_dir()
    if qemu_missing(QEMU):
        return f"{QEMU} is not installed (make system-deps installs qemu-system-x86)"
    if not QBOOT.exists():
        return f"no {QBOOT} (Debian's qemu-system-data, installed with qemu-system-x86)"
    for need in ("vmlinuz", "busybox", "modules/ORDER"):
        if not (d / need).exists():
            return (f"no {d / need}: run scripts/fetch-linux-amd64 as root (or make "
                    f"system-deps)")
    return ""


def build_initrd(force: bool = False) -> Path:
    """guests/linux-virtio/build/initrd.cpio, (re)built when missing, older than its
    sources or the fetched modules, or when ``force``."""
    if why := missing():
        raise LinuxUnavailable(why)
    d = linux_dir()
    out = SOURCE / "build" / "initrd.cpio"
    sources = [SOURCE / "init", SOURCE / "mkinitrd.py", d / "modules" / "ORDER", d / "busybox"]
    if force or not out.exists() or any(p.stat().st_mtime > out.stat().st_mtime
                                        for p in sources):
        import importlib.util

        spec = importlib.util.spec_from_file_location("pvspec_linux_mkinitrd",
                                                      SOURCE / "mkinitrd.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(out, SOURCE / "init", d)
    return out


@attrs.frozen
class Workload:
    """What one boot showed: the guest's ``PVSPEC`` lines (step -> key -> value), how it
    ended, the console's tail, and timings (seconds from QEMU's start)."""

    steps: dict[str, dict[str, str]]
    ended: str  # "done" | "fail" | "timeout" | "exited" (QEMU gone before "done")
    console: str
    seconds: float
    boot_seconds: float | None  # when the device was probed ("PVSPEC disk" / "PVSPEC nic")
    qemu_status: int | None
    disk_md5: dict[str, str] = attrs.field(factory=dict)  # host-side checksums

    @property
    def done(self) -> bool:
        return self.ended == "done"


NET_MAC = "52:54:00:12:34:56"


RING_PACKED = 1 << 34  # 2.8: offered by the back-end and enabled on QEMU's device


def _command(kernel: Path, initrd: Path, sock: Path, kind: str = "blk",
             packed: bool = False) -> list[str]:
    on = ",packed=on" if packed else ""
    device = (["-device", f"vhost-user-blk-pci,chardev=c,num-queues=1{on}"] if kind == "blk"
              else ["-netdev", "vhost-user,id=n0,chardev=c",
                    "-device", f"virtio-net-pci,netdev=n0,mac={NET_MAC},vectors=0{on}"])
    return [QEMU, "-accel", "tcg", "-machine", "q35", "-bios", str(QBOOT),
            "-m", f"{MEMORY_MB}M", "-smp", "1",
            "-object", f"memory-backend-memfd,id=mem,size={MEMORY_MB}M,share=on",
            "-numa", "node,memdev=mem",
            "-chardev", f"socket,id=c,path={sock}", *device,
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"console=ttyS0 quiet loglevel=3 panic=-1 pvspec.workload={kind}",
            "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-no-reboot"]


def run_blk(judge: DriverJudge, disk: bytearray, timeout: float = BOOT_TIMEOUT,
            packed: bool = False) -> Workload:
    """Boot the guest once with ``disk`` served by pvspec's back-end and ``judge``
    watching; return when the guest powers off, fails, or ``timeout`` passes.  Raises
    :class:`LinuxUnavailable` only before anything started.  ``packed``: the back-end
    offers RING_PACKED and QEMU's device has ``packed=on`` (Linux then takes it)."""
    offered = blk_features() | (RING_PACKED if packed else 0)
    return _run("blk", judge, lambda sock, stop: serve_vhost_user_blk(
        str(sock), disk, stop, observer=judge, offered=offered), timeout, disk, packed)


def run_net(judge: DriverJudge, timeout: float = BOOT_TIMEOUT,
            packed: bool = False) -> Workload:
    """Boot the guest once with pvspec's virtio-net back-end (and its peer at 10.0.2.2)
    and ``judge`` watching; as :func:`run_blk`."""
    from conformance.linux_virtio import peer
    from reference_impl.virtio.net import NetDevice

    dev = NetDevice(mac=bytes.fromhex(NET_MAC.replace(":", "")))
    offered = NetDevice.features | (RING_PACKED if packed else 0)
    return _run("net", judge, lambda sock, stop: serve_vhost_user(
        str(sock), dev, stop, observer=judge, offered=offered, nqueues=2,
        pump=peer.pump), timeout, None, packed)


def _run(kind: str, judge: DriverJudge, serve: Callable[[Path, threading.Event], None],
         timeout: float, disk: bytearray | None, packed: bool = False) -> Workload:
    initrd = build_initrd()
    kernel = linux_dir() / "vmlinuz"
    tmp = Path(tempfile.mkdtemp(prefix="pvspec-linux-virtio-"))
    sock = tmp / f"{kind}.sock"
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(sock, stop), daemon=True,
                              name="pvspec-linux-virtio-backend")
    proc: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    console = bytearray()
    ended, boot = "timeout", None
    try:
        server.start()
        while not sock.exists() and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        proc = subprocess.Popen(_command(kernel, initrd, sock, kind, packed),
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                ended = "exited"
                break
            console += chunk
            if boot is None and (b"PVSPEC disk" in console or b"PVSPEC nic" in console):
                boot = time.monotonic() - t0
            if b"PVSPEC done" in console or b"PVSPEC fail" in console:
                ended = "done" if b"PVSPEC done" in console else "fail"
                break
        if ended in ("done", "fail"):
            # the guest powers off: QEMU exits by itself (and the queue stops)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
    finally:
        if proc is not None:
            _kill_group(proc, grace=2.0)
            if proc.stdout is not None:
                proc.stdout.close()
        stop.set()
        server.join(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    judge.finish()
    steps: dict[str, dict[str, str]] = {}
    for m in _LINE.finditer(bytes(console)):
        step = m.group(1).decode()
        kv = dict(p.split("=", 1) for p in m.group(2).decode().split() if "=" in p)
        steps.setdefault(step, {}).update(kv)
    return Workload(steps, ended, console[-4000:].decode("utf-8", "replace"),
                    time.monotonic() - t0, boot, proc.returncode if proc else None,
                    _host_sums(steps, disk) if disk is not None else {})


def _host_sums(steps: dict[str, dict[str, str]], disk: bytearray) -> dict[str, str]:
    """The host's md5 of the regions whose guest checksums the workload printed and that
    nothing changed after (the tail sectors)."""
    out: dict[str, str] = {}
    tail = steps.get("tail", {})
    if tail.get("sector", "").isdigit() and tail.get("sectors", "").isdigit():
        lo = int(tail["sector"]) * 512
        out["tail"] = hashlib.md5(bytes(disk[lo: lo + int(tail["sectors"]) * 512]),
                                  usedforsecurity=False).hexdigest()
    return out
