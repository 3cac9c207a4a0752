"""Make raw Xen hypercalls (``event_channel_op``) from dom0 of Xen 4.17/arm64 under QEMU.

:class:`XenMachine` is the transport of the ``xen-arm64`` target: it boots Xen with a Linux
dom0 whose ``/init`` is ours and hands each request to that init, which makes the
hypercall through ``/dev/xen/privcmd`` and reports Xen's raw answer (the return value and
the command struct after the call).  It judges nothing.

The stack
    ``qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a57`` (TCG:
    no host KVM is needed) boots Debian's Xen 4.17 for arm64 (``scripts/fetch-xen-arm64``,
    unpacked, never installed), whose dom0 is Debian's arm64 kernel
    (``scripts/fetch-arm64-kernel``) with ``xen.fifo_events=0`` (the 2-level event channel
    ABI) and an initramfs of ours (``guests/xen-dom0``, built by :func:`build_initrd`): a
    static ``/init`` and the kernel's ``xen-evtchn.ko``, ``xen-privcmd.ko``,
    ``virtio_mmio.ko`` and ``virtio_console.ko`` (taken by the fetch script from the same
    kernel package).  QEMU's ``guest-loader`` devices put the kernel and the initramfs in
    memory and describe them in the device tree as Xen's boot modules.

The protocol
    The init speaks a line protocol in the style of ``guests/kvm-init`` (documented at the
    top of ``guests/xen-dom0/init.c``, with the same marker and answer checksum, so that
    :func:`conformance.guest_machine.parse_line` reads it): answers carry a checksum, so messages
    on the same line are ignored and a torn answer is asked for again (``A <seq>``).
    Unlike kvm-init, requests carry a checksum too (a damaged one is answered ``N`` and not
    executed), and the init executes each sequence number at most once (a repeated request
    is answered from its record), so the driver may always send a request again.  Structs
    travel as hex without their trailing zero bytes (the init adds them back up to the
    command's struct size); :meth:`XenMachine.evtchn_ops` puts many calls in one line.

Calls at once
    Dom0 has ``dom0_vcpus`` vCPUs (2 by default), each pinned to its own physical CPU
    (``dom0_vcpus_pin``; QEMU has ``host_cpus`` of them).  The kernel boots with
    ``maxcpus=1`` and the init brings the others online: with two vCPUs at boot the
    kernel's boot took about twice as long (the second vCPU's TCG thread competes with the
    first for the host).  The init pins a caller to each vCPU (the main thread to vCPU 0,
    a thread of its own to each other one, started once); :meth:`XenMachine.evtchn_at_once`
    releases callers 0..n-1 together, and they meet at a spin barrier right before their
    hypercalls, each reading the virtual counter right before and after its call
    (:attr:`XenMachine.last_timing`).  How close the calls come depends on the host: under
    TCG a vCPU runs only while QEMU's thread for it has a host CPU.  Measured (QEMU 7.2
    TCG, 2 host cores that other jobs were using): with a core free for each vCPU's thread,
    130-390 two-call round trips/s, the calls starting a median 1-13 us apart and
    overlapping in 60-87% of the requests; with the host's cores busy (or QEMU confined to
    one), 20-60 round trips/s and 0.5-20 ms apart (each wake-up of the other vCPU waits
    for the host's scheduler).  Two vCPUs cost the boot and the single calls nothing
    measurable (boot to READY 3.3-4.6 s, as with one).

The channel (``channel=``)
    ``"virtio"`` (the default when the kernel's virtio modules were fetched): a
    virtio-serial port (``-device virtio-serial-device`` on virtio-mmio, which Xen passes
    through to dom0, and ``virtserialport,name=pvspec``) whose QEMU end is a Unix socket
    this process listens on.  ``"console"``: the serial console, Xen's ``dtuart`` (QEMU's
    stdio), shared with dom0's ``hvc0``, whose input Xen hands to dom0 after boot (every
    byte sent is printable ASCII or a newline: CTRL-A, byte 0x01, would switch the input to
    Xen).  The console is slow: QEMU's PL011 takes one input byte per main-loop pass (~60
    us a byte), and Xen keeps only 128 bytes of input for dom0 and drops the rest, so
    request lines there are at most 120 bytes.  Either way the console carries Xen's and
    the kernel's messages (:attr:`XenMachine.serial_output`).

    Measured (QEMU 7.2 TCG, 2 host cores, medians of 5 runs; boot to READY 3.8-4.6 s):
    virtio, 750-1,200 single :meth:`~XenMachine.evtchn_op` round trips/s and 3,900-4,400
    calls/s in batches of 50 (up to 8,000); console, ~340 round trips/s and 800-1,900
    calls/s in batches of 50 (the longer the structs, the slower).

Cleanup
    As :class:`~conformance.kvm_psci.KvmPsciMachine` (both read the console with
    :class:`~conformance.guest_machine.ConsoleRun`): QEMU runs in its own session (process
    group), optionally under ``setpriv --pdeathsig KILL``; :meth:`~XenMachine.stop` (also
    the context manager, a :func:`weakref.finalize` at garbage collection and at interpreter
    exit) SIGKILLs the group, reaps QEMU, ends the reader threads, closes the socket and
    removes the temporary directory, keeping the logs' text in memory.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import attrs

from conformance.guest_machine import (
    MASK64,
    GuestMachine,
    MachineBootError,
    MachineError,
    MachineNotRunning,
    PortRun,
    exit_status,
    fnv1a,
    guest_source,
    parent_death_wrapper,
    qemu_missing,
    qemu_value,
    run_make,
    virtio_port_args,
)
from conformance.kvm_psci import default_kernel
from conformance.kvm_psci import missing_prerequisites as _kvm_missing_prerequisites
from spec.hypercalls import xen

__all__ = [
    "CHANNELS",
    "DEFAULT_XEN_DIR",
    "DOMID_SELF",
    "PLANTED",
    "STRUCT_SIZE",
    "AtOnceTiming",
    "EvtchnOp",
    "EvtchnStat",
    "InitBuildError",
    "MachineBootError",
    "MachineError",
    "MachineNotRunning",
    "XenAnswer",
    "XenExited",
    "XenMachine",
    "XenProtocolError",
    "XenTimeout",
    "build_initrd",
    "default_channel",
    "default_xen",
    "init_dir",
    "missing_prerequisites",
    "struct_size",
]

DEFAULT_XEN_DIR = Path("/var/cache/pvspec/xen-arm64")  # scripts/fetch-xen-arm64
HYPERVISOR_XEN_VERSION = 17
HYPERVISOR_EVENT_CHANNEL_OP = xen.HYPERCALL_EVENT_CHANNEL_OP
DOMID_SELF = xen.DOMID_SELF
PLANTED = ("close",)  # planted bugs of the init (pvspec.planted=<name> on dom0's command line)
CHANNELS = ("virtio", "console")
MAX_STRUCT = 256  # bytes of a command struct the init takes
KERNEL_ADDR = 0x4900_0000  # where QEMU's guest-loader puts dom0's kernel (above QEMU's DTB)
_INITRD_ADDR = 0x4C00_0000  # ... and the initramfs, unless the kernel reaches that far
_ALIGN = 2 << 20
_UNSOLICITED = b"@@PVK - "  # the marker of guests/kvm-init (its parser reads ours), seq "-"
_VIRTIO_MODULES = ("virtio_mmio", "virtio_console")
_ANSWER_CHARS = 7000  # the longest answer line evtchn_ops asks for (the init's limit: 8192)
_MAX_ITEMS = 128  # items per batch line (the init's limit)
_MAX_VCPUS = 8  # threads the init pins, one per vCPU (its MAX_VCPUS)


@attrs.frozen
class _Link:
    """What a channel costs: the longest request line, and the seconds per input byte, per
    line and per hypercall the init may take (generous: the host may be busy)."""

    line_bytes: int
    byte_s: float
    line_s: float
    call_s: float

    def expect(self, line_bytes: int, calls: int) -> float:
        return self.line_s + line_bytes * self.byte_s + calls * self.call_s


_LINKS = {
    # Xen drops serial input beyond 128 bytes that dom0 has not read: no longer lines
    "console": _Link(line_bytes=120, byte_s=100e-6, line_s=0.05, call_s=0.002),
    "virtio": _Link(line_bytes=4000, byte_s=2e-6, line_s=0.05, call_s=0.002),
}


# the command numbers, status values and struct sizes are the codec's (spec/hypercalls/xen.py)
EvtchnOp, EvtchnStat = xen.Op, xen.Stat
STRUCT_SIZE = xen.STRUCT_SIZE


def struct_size(cmd: int, sent: int = 0) -> int:
    """How many bytes the init passes (and returns) for ``cmd`` given ``sent`` bytes: the
    command's struct size, or ``sent`` if that is more (or the command is unknown)."""
    return max(STRUCT_SIZE.get(cmd, 0), sent)


# --- errors and answers --------------------------------------------------------------------------
class InitBuildError(MachineError):
    """``make -C guests/xen-dom0`` failed or could not run; the message holds its output."""


class XenTimeout(MachineError):
    """A request got no answer in time; the machine is unusable from then on (stop it)."""


class XenExited(MachineError):
    """QEMU exited (Xen or dom0 went down, or it was killed); ``status`` is its return
    code (negative: the signal), None if unknown.  The message holds the console's tail."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class XenProtocolError(MachineError):
    """The init refused a request (``ERR``) or answered something this driver cannot
    read.  The machine stays usable."""


@attrs.frozen
class XenAnswer:
    """Xen's answer to one hypercall: its return value and the command struct after it."""

    rc: int  # the hypercall's return value, signed (0 or -errno)
    out: bytes  # the struct after the call: struct_size(cmd, len(arg)) bytes


@attrs.frozen
class AtOnceTiming:
    """When the calls of one :meth:`XenMachine.evtchn_at_once` ran: dom0's virtual counter
    (``CNTVCT_EL0``, ``hz`` ticks a second) read by each thread right before its
    hypercall's ``ioctl`` and right after it returned, item i for call i."""

    cpus: tuple[int, ...]  # the vCPU each call was made on (sched_getcpu() before it)
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    hz: int

    @property
    def skew_s(self) -> float:
        """Seconds between the first and the last call's start."""
        return (max(self.starts) - min(self.starts)) / self.hz if self.hz else 0.0

    @property
    def overlapped(self) -> bool:
        """Every call started before any returned (each ioctl's span, that is, which
        holds more than the hypercall)."""
        return max(self.starts) < min(self.ends)


# --- building and finding what QEMU boots --------------------------------------------------------
def init_dir() -> Path:
    """``guests/xen-dom0`` of this checkout."""
    return guest_source("xen-dom0")


def _xen_dir() -> Path:
    return Path(os.environ.get("PVSPEC_XEN_DIR") or DEFAULT_XEN_DIR)


def default_xen() -> Path:
    """The Xen image: ``$PVSPEC_XEN`` if set, else ``xen`` in ``$PVSPEC_XEN_DIR`` or
    :data:`DEFAULT_XEN_DIR` (where ``scripts/fetch-xen-arm64`` puts it).  The path may not
    exist."""
    env = os.environ.get("PVSPEC_XEN")
    return Path(env) if env else _xen_dir() / "xen"


def _fetched_modules() -> set[str]:
    """The dom0 modules the fetch script provided: in the initramfs, or built in."""
    names: set[str] = set()
    for listing in ("ORDER", "BUILTIN"):
        with contextlib.suppress(OSError):
            names.update((_xen_dir() / "modules" / listing).read_text().split())
    return names


def default_channel() -> Literal["virtio", "console"]:
    """``"virtio"`` when the fetch script provided the kernel's virtio-serial drivers, else
    ``"console"``."""
    return "virtio" if set(_VIRTIO_MODULES) <= _fetched_modules() else "console"


def build_initrd(force: bool = False) -> Path:
    """Build (``make -C guests/xen-dom0``; ``force`` rebuilds with ``-B``) and return the
    path of dom0's ``initrd.cpio``.  It takes the modules from ``$PVSPEC_XEN_DIR/modules``
    (the Makefile's ``XEN_DIR``).  :class:`InitBuildError` carries make's output when it
    fails."""
    src = init_dir()
    return run_make(src, "the xen-dom0 initramfs", src / "build" / "initrd.cpio",
                    InitBuildError, 300, force=force)


def missing_prerequisites(qemu: str = "qemu-system-aarch64") -> str | None:
    """None if QEMU, the cross compiler with its static libc, the fetched arm64 kernel and
    the fetched Xen (with dom0's modules) are there, else why not."""
    why = _kvm_missing_prerequisites(qemu)
    if why is not None:
        return why
    xen = default_xen()
    fetch = "run scripts/fetch-xen-arm64 as root, or make system-deps"
    if not xen.is_file():
        return f"no Xen image at {xen} ({fetch})"
    if not {"xen-evtchn", "xen-privcmd"} <= _fetched_modules():
        return f"no dom0 modules listed in {_xen_dir() / 'modules'} ({fetch})"
    return None


def _request_line(seq: int, body: str) -> bytes:
    """A request: ``<seq> <body> #<check>``, the check being the 16-bit fold of the FNV-1a
    hash of what precedes it."""
    text = f"{seq} {body}".encode("ascii")
    h = fnv1a(text)
    return text + b" #%04x\n" % ((h ^ (h >> 16)) & 0xFFFF)


def _hex(data: bytes) -> str:
    """``data`` in hex without its trailing zero bytes ("-" when nothing is left)."""
    return data.rstrip(b"\0").hex() or "-"


# --- QEMU, its console, the channel and the reader threads ---------------------------------------
class _XenChannel(PortRun):
    """:class:`conformance.guest_machine.PortRun` (QEMU, its console, the virtio port and
    their reader threads) plus the init's own unsolicited lines: ``N`` (a damaged
    request), ``FATAL`` (set-up failed), ``M`` (a module loaded)."""

    console_name = "console (Xen and dom0)"

    def __init__(self, tmpdir: Path) -> None:
        super().__init__(tmpdir)
        self.nacks = 0
        self.fatal: str | None = None
        self.modules: dict[str, int] = {}

    @property
    def gone(self) -> bool:
        """QEMU exited or is exiting (a stream closed).  Called with ``cond`` held or not."""
        return (self.eof or self.port_eof or self.released or self.proc is None
                or exit_status(self.proc) is not None)

    def unsolicited(self, kind: str, rest: list[str]) -> None:
        if kind == "N":
            self.nacks += 1
        elif kind == "FATAL":
            self.fatal = " ".join(rest)
        elif kind == "M" and len(rest) >= 2:
            with contextlib.suppress(ValueError):
                self.modules[rest[0]] = int(rest[1])
        else:
            super().unsolicited(kind, rest)


# --- the machine ---------------------------------------------------------------------------------
class XenMachine(GuestMachine[_XenChannel]):
    """One QEMU running Xen 4.17 with our dom0; :meth:`evtchn_op` makes one
    ``event_channel_op`` hypercall from dom0 (domid 0), :meth:`evtchn_ops` many in one
    exchange, :meth:`evtchn_at_once` one from each of several dom0 vCPUs at the same
    moment.

    ``with XenMachine() as m: m.evtchn_op(EvtchnOp.ALLOC_UNBOUND, ...)`` boots it (building
    the initramfs unless ``initrd`` names one; ``xen`` and ``kernel`` default to
    :func:`default_xen` and :func:`conformance.kvm_psci.default_kernel`) and always stops
    it.  ``boot_timeout`` bounds the boot (QEMU's start to the init's READY line),
    ``call_timeout`` each exchange (beyond the time its request needs on the channel).
    ``planted`` (one of :data:`PLANTED`) boots the init with that planted bug.
    ``channel``: ``"virtio"`` or ``"console"`` (default :func:`default_channel`).
    ``memory_mb`` and ``host_cpus`` size the machine, ``dom0_mem_mb`` and ``dom0_vcpus``
    (1..``host_cpus``; each pinned to its own physical CPU) dom0 (Xen is told
    ``bootscrub=0``: scrubbing the free memory costs seconds of emulated CPU at boot and
    after it, and with 1 GiB rather than 2 the boot takes 3-5 s rather than ~10);
    ``extra_args`` are appended to QEMU's command line, ``extra_xen_append`` to Xen's and
    ``extra_append`` to dom0's.  ``die_with_parent``: QEMU is SIGKILLed when the thread
    that started it exits.  Not thread-safe: one caller drives a machine.

    The PSCI-agent parts of :class:`~conformance.guest_machine.GuestMachine` (``info``,
    ``cpus``) do not apply here.
    """

    def __init__(self, *, boot_timeout: float = 240.0, call_timeout: float = 5.0,
                 qemu: str = "qemu-system-aarch64", planted: str | None = None,
                 die_with_parent: bool = True,
                 channel: Literal["virtio", "console"] | None = None,
                 xen: str | os.PathLike[str] | None = None,
                 kernel: str | os.PathLike[str] | None = None,
                 initrd: str | os.PathLike[str] | None = None, memory_mb: int = 1024,
                 host_cpus: int = 2, dom0_mem_mb: int = 512, dom0_vcpus: int = 2,
                 extra_args: Sequence[str] = (),
                 extra_xen_append: str = "", extra_append: str = "") -> None:
        super().__init__(1, call_timeout=call_timeout, boot_timeout=boot_timeout, qemu=qemu,
                         no_reboot=True, extra_args=extra_args,
                         die_with_parent=die_with_parent)
        if planted is not None and planted not in PLANTED:
            raise ValueError(f"planted must be None or one of {PLANTED}, not {planted!r}")
        if channel is not None and channel not in CHANNELS:
            raise ValueError(f"channel must be None or one of {CHANNELS}, not {channel!r}")
        if not isinstance(dom0_vcpus, int) or not 1 <= dom0_vcpus <= min(host_cpus, _MAX_VCPUS):
            raise ValueError(f"dom0_vcpus must be 1..{min(host_cpus, _MAX_VCPUS)} (host_cpus "
                             f"{host_cpus}), not {dom0_vcpus!r}")
        self.planted = planted
        self.channel: Literal["virtio", "console"] = channel or default_channel()
        self.xen = Path(xen) if xen is not None else None
        self.kernel = Path(kernel) if kernel is not None else None
        self.initrd = Path(initrd) if initrd is not None else None
        self.memory_mb = memory_mb
        self.host_cpus = host_cpus
        self.dom0_mem_mb = dom0_mem_mb
        self.dom0_vcpus = dom0_vcpus
        self.extra_xen_append = extra_xen_append
        self.extra_append = extra_append
        self._xen_version: tuple[int, int] | None = None
        self.xen_extraversion: str | None = None  # e.g. ".7", from the READY line
        self.kernel_release: str | None = None  # dom0's uname -r
        self.domid: int | None = None  # dom0's domain id as the init found it (0)
        self._vcpus: int | None = None  # dom0's vCPUs with a pinned worker (READY)
        self.counter_hz: int | None = None  # dom0's CNTFRQ_EL0 (READY)
        self.last_timing: AtOnceTiming | None = None  # of the latest evtchn_at_once
        self._broken: str | None = None  # the init stopped answering
        self._seq = 0
        self.resends = 0  # requests asked about or sent again (damaged on the way)

    # lifecycle
    def command(self, xen: Path, kernel: Path, initrd: Path,
                socket_path: Path | None = None) -> list[str]:
        """QEMU's command line (``socket_path``: the virtio port's socket, for that
        channel).  The kernel goes at :data:`KERNEL_ADDR` (QEMU puts Xen's device tree
        below it), the initramfs at 0x4c000000 or, for a larger kernel, at the next 2 MiB
        boundary after it."""
        kernel_end = KERNEL_ADDR + kernel.stat().st_size
        initrd_addr = max(_INITRD_ADDR, -(-kernel_end // _ALIGN) * _ALIGN)
        xen_append = (f"dom0_mem={self.dom0_mem_mb}M dom0_max_vcpus={self.dom0_vcpus} "
                      f"dom0_vcpus_pin console=dtuart bootscrub=0 "
                      f"{self.extra_xen_append}").strip()
        dom0_append = " ".join(w for w in (
            "console=hvc0 rdinit=/init xen.fifo_events=0 quiet loglevel=0 panic=-1 maxcpus=1",
            f"pvspec.channel={self.channel}",
            f"pvspec.planted={self.planted}" if self.planted else "",
            self.extra_append) if w)
        return [*parent_death_wrapper(self.die_with_parent), self.qemu,
                "-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a57",
                "-smp", str(self.host_cpus), "-m", str(self.memory_mb),
                "-display", "none", "-nodefaults", "-no-user-config", "-serial", "stdio",
                "-no-reboot", "-kernel", str(xen), "-append", xen_append,
                "-device", f"guest-loader,addr={KERNEL_ADDR:#x},"
                           f"kernel={qemu_value(str(kernel))},"
                           f"bootargs={qemu_value(dom0_append)}",
                "-device", f"guest-loader,addr={initrd_addr:#x},"
                           f"initrd={qemu_value(str(initrd))}",
                *virtio_port_args(socket_path), *self.extra_args]

    def start(self) -> None:
        """Boot Xen and dom0; return once the init is ready.  Raises
        :class:`~conformance.guest_machine.MachineBootError` (with QEMU's stderr and the
        console's tail) when it cannot; nothing is left behind then."""
        if self._run is not None and not self._run.released:
            raise MachineError("the machine is already started (stop() or restart() it)")
        xen = self.xen if self.xen is not None else default_xen()
        kernel = self.kernel if self.kernel is not None else default_kernel()
        initrd = self.initrd if self.initrd is not None else build_initrd()
        for what, path in (("Xen image", xen), ("arm64 kernel", kernel), ("initramfs", initrd)):
            if not path.is_file():
                raise MachineBootError(f"no {what} at {path} (scripts/fetch-xen-arm64 and "
                                       f"make system-deps provide them)")
        if qemu_missing(self.qemu):
            raise MachineBootError(f"QEMU not found: {self.qemu}")
        ch = _XenChannel(Path(tempfile.mkdtemp(prefix="pvspec-xen-")))
        self._begin_run(ch)
        self._broken = None
        self._seq = 0
        self.boot_seconds = None
        self._xen_version = None
        self._vcpus = None
        self.last_timing = None
        try:
            self._launch(ch, xen, kernel, initrd)
        except MachineBootError:
            raise
        except (OSError, MachineError) as exc:
            self._boot_failed(f"cannot start QEMU: {exc}" if isinstance(exc, OSError)
                              else str(exc))
        except BaseException:
            assert self._finalizer is not None
            self._finalizer()
            self._run = None
            raise

    def _launch(self, ch: _XenChannel, xen: Path, kernel: Path, initrd: Path) -> None:
        """Start QEMU, its console's reader, the virtio port (if that is the channel) and
        wait for the init's READY."""
        t0 = time.perf_counter()
        deadline = t0 + self.boot_timeout
        sock = ch.listen() if self.channel == "virtio" else None
        self._argv = self.command(xen, kernel, initrd, sock)
        with open(ch.stderr_log, "wb") as err:
            ch.proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=err,
                                       start_new_session=True)
        ch.reader = threading.Thread(target=ch.read_loop, name="xen-console", daemon=True)
        ch.reader.start()
        if sock is not None and not ch.accept(deadline, lambda: ch.gone):
            self._boot_failed(f"QEMU did not connect to the virtio port's socket "
                              f"(status {exit_status(ch.proc)})")
        self._wait(ch, lambda: ch.ready is not None or ch.fatal is not None, deadline)
        self._ready(ch)
        self.boot_seconds = time.perf_counter() - t0

    def _ready(self, ch: _XenChannel) -> None:
        """Check the READY line and take what it says (or fail the boot)."""
        ready, fatal = ch.ready, ch.fatal
        if fatal is not None:
            self._boot_failed(f"dom0's init could not set up: {fatal} (modules: "
                              f"{ch.modules or 'none loaded'})")
        if ready is None:
            assert ch.proc is not None
            status = exit_status(ch.proc)
            self._boot_failed(f"dom0's init was not ready within {self.boot_timeout} s"
                              if status is None else
                              f"QEMU exited with status {status} before dom0's init was ready")
        try:
            major, minor, domid = int(ready[0], 16), int(ready[1], 16), int(ready[2])
            planted = ready[3]
        except (IndexError, ValueError):
            self._boot_failed(f"bad READY line from the init: {' '.join(ready)}")
        if planted != (self.planted or "-"):
            self._boot_failed(f"the init runs with planted={planted!r}, not {self.planted!r}")
        self._xen_version = (major, minor)
        self.domid = domid
        self.kernel_release = ready[4] if len(ready) > 4 else None
        self.xen_extraversion = ready[5] if len(ready) > 5 and ready[5] != "-" else None
        try:
            vcpus = int(ready[6]) if len(ready) > 6 else 1
            self.counter_hz = int(ready[7], 16) if len(ready) > 7 else None
        except ValueError:
            self._boot_failed(f"bad READY line from the init: {' '.join(ready)}")
        if vcpus != self.dom0_vcpus:
            self._boot_failed(f"dom0's init has {vcpus} vCPUs with a pinned thread, not "
                              f"{self.dom0_vcpus} (its PIN lines, if any, say why)")
        self._vcpus = vcpus

    @staticmethod
    def _wait(ch: _XenChannel, done: Callable[[], bool], until: float) -> None:
        """Wait until ``done()`` (called with ``ch.cond`` held), QEMU is gone, or the
        clock reaches ``until``."""
        with ch.cond:
            while not done() and not ch.gone:
                left = until - time.perf_counter()
                if left <= 0:
                    return
                ch.cond.wait(min(left, 0.25))

    # state
    @property
    def xen_version(self) -> tuple[int, int]:
        """(major, minor) of the running Xen, from ``xen_version(XENVER_version)``."""
        if self._xen_version is None:
            raise MachineNotRunning("the machine has not been started")
        return self._xen_version

    @property
    def vcpus(self) -> int:
        """dom0's online vCPUs, each with a thread of the init pinned to it (the READY
        line): how many calls :meth:`evtchn_at_once` makes at once at most."""
        if self._vcpus is None:
            raise MachineNotRunning("the machine has not been started")
        return self._vcpus

    @property
    def boot_seconds(self) -> float:
        """Seconds from QEMU's start to the init's READY line (the latest start)."""
        if self._boot_seconds is None:
            raise MachineNotRunning("the machine has not been started")
        return self._boot_seconds

    @boot_seconds.setter
    def boot_seconds(self, value: float | None) -> None:
        self._boot_seconds = value

    @property
    def alive(self) -> bool:
        """QEMU runs and the init answers."""
        ch = self._run
        return ch is not None and not ch.gone and self._broken is None

    @property
    def modules(self) -> dict[str, int]:
        """The modules the init loaded: name -> 0 or -errno of ``finit_module``."""
        return dict(self._run.modules) if self._run is not None else {}

    @property
    def serial_output(self) -> str:
        """The tail of the console (Xen's and dom0's messages; the protocol too when it
        runs there)."""
        return self._run.console_text() if self._run is not None else ""

    # the channel
    def _exchange(self, body: str, expect: float) -> list[str]:
        """Send one request and return the answer's fields.  ``expect`` is how long the
        init may need for it (its input and the hypercalls); the host waits
        ``call_timeout`` beyond that.  A damaged request (``N``) or a long silence (a
        message may have torn the answer) makes it ask ``A <seq>``; if the init has not
        executed the request (``Z``), it is sent again (the init runs a sequence number at
        most once)."""
        ch = self._run
        if ch is None or ch.released or ch.proc is None:
            raise MachineNotRunning("the machine has not been started")
        if ch.gone:
            self._gone()
        if self._broken is not None:
            raise XenTimeout(self._broken)
        self._seq += 1
        seq = self._seq
        line = _request_line(seq, body)
        patience = max(0.5, 3 * expect)  # silence before asking again
        deadline = time.perf_counter() + expect + self.call_timeout
        send = line
        while True:
            with ch.cond:
                nacks = ch.nacks
            try:
                ch.send(send)
            except (OSError, ValueError):
                self._gone()
            def heard(n: int = nacks) -> bool:  # the answer, or an N since the sending
                return seq in ch.replies or ch.nacks != n

            self._wait(ch, heard, min(time.perf_counter() + patience, deadline))
            with ch.cond:
                words = ch.replies.pop(seq, None)
                for old in [s for s in ch.replies if s < seq]:
                    del ch.replies[old]
            if words is not None and words != ["Z"]:
                return words
            if ch.gone:
                self._gone()
            if time.perf_counter() >= deadline:
                self._broken = (f"dom0's init did not answer {body.split(' ')[0]!r} (request "
                                f"{seq}) within {expect + self.call_timeout:.1f} s")
                raise XenTimeout(f"{self._broken}{ch.logs_text()}")
            self.resends += 1
            send = line if words == ["Z"] else _request_line(seq, f"A {seq}")

    def _gone(self) -> None:
        """Raise :class:`XenExited` for a QEMU that exited (waiting a little for it to
        finish exiting; never reaped here, so that its process group id cannot be reused
        before :meth:`stop`)."""
        ch = self._run
        assert ch is not None and ch.proc is not None
        end = time.perf_counter() + 5.0
        while exit_status(ch.proc) is None and time.perf_counter() < end:
            time.sleep(0.01)
        status = exit_status(ch.proc)
        self._broken = f"QEMU exited (status {status})"
        raise XenExited(f"{self._broken}{ch.logs_text()}", status)

    def _checked(self) -> _Link:
        """The channel's costs, once the machine is known to be started."""
        if self._run is None:
            raise MachineNotRunning("the machine has not been started")
        if self._run.released:
            raise MachineNotRunning("the machine has been stopped")
        return _LINKS[self.channel]

    @staticmethod
    def _item(cmd: int, arg: bytes) -> tuple[str, int]:
        """The request token of one call (``<cmd>:<hex>``) and its struct's size."""
        if not isinstance(cmd, int) or not 0 <= cmd <= MASK64:
            raise ValueError(f"cmd must be a 64-bit unsigned value, not {cmd!r}")
        if not isinstance(arg, bytes | bytearray):
            raise TypeError(f"arg must be bytes, not {type(arg).__name__}")
        if len(arg) > MAX_STRUCT:
            raise ValueError(f"arg is {len(arg)} bytes; the init takes at most {MAX_STRUCT}")
        return f"{cmd:x}:{_hex(bytes(arg))}", struct_size(cmd, len(arg))

    @staticmethod
    def _answer(token: str, size: int) -> XenAnswer:
        """The :class:`XenAnswer` of ``<rc>:<hex>`` for a struct of ``size`` bytes."""
        rc, _, data = token.partition(":")
        try:
            out = b"" if data == "-" else bytes.fromhex(data)
            value = int(rc, 10)
        except ValueError:
            raise XenProtocolError(f"unreadable answer item {token!r}") from None
        if len(out) > size:
            raise XenProtocolError(f"answer item {token!r} is longer than {size} bytes")
        return XenAnswer(rc=value, out=out + bytes(size - len(out)))

    def _words(self, body: str, expect: float) -> list[str]:
        words = self._exchange(body, expect)
        if words[0] == "ERR":
            raise XenProtocolError(f"the init refused {body.split(' ')[0]!r}: "
                                   f"{' '.join(words[1:])}")
        if words[0] != "R":
            raise XenProtocolError(f"unexpected answer from the init: {' '.join(words)}")
        return words[1:]

    # calls
    def evtchn_op(self, cmd: int, arg: bytes) -> XenAnswer:
        """One ``HYPERVISOR_event_channel_op(cmd, &arg)`` from dom0.  ``arg`` is the
        command's struct in memory order; it is padded with zero bytes up to the
        command's struct size (:func:`struct_size`), and :attr:`XenAnswer.out` has that
        many bytes."""
        link = self._checked()
        token, size = self._item(cmd, arg)
        words = self._words(f"E {token.replace(':', ' ')}", link.expect(len(token) + 16, 1))
        if len(words) != 2:
            raise XenProtocolError(f"unexpected answer from the init: R {' '.join(words)}")
        return self._answer(":".join(words), size)

    def evtchn_ops(self, ops: Sequence[tuple[int, bytes]]) -> list[XenAnswer]:
        """Several ``event_channel_op`` calls, made one after the other in dom0, in as few
        request lines as the channel allows (each line is one exchange; a later line's
        calls see the earlier lines' effects).  The answers are in the order of ``ops``,
        as :meth:`evtchn_op` would give them."""
        link = self._checked()
        items = [self._item(cmd, arg) for cmd, arg in ops]
        answers: list[XenAnswer] = []
        start = 0
        while start < len(items):
            end, length, chars = start, 16, 0
            while end < len(items) and end - start < _MAX_ITEMS:
                token, size = items[end]
                if end > start and (length + len(token) + 1 > link.line_bytes
                                    or chars + 2 * size + 24 > _ANSWER_CHARS):
                    break
                length += len(token) + 1
                chars += 2 * size + 24
                end += 1
            chunk = items[start:end]
            words = self._words("B " + " ".join(t for t, _ in chunk),
                                link.expect(length, len(chunk)))
            if len(words) != len(chunk):
                raise XenProtocolError(f"{len(words)} answers to {len(chunk)} calls")
            answers.extend(self._answer(w, size)
                           for w, (_, size) in zip(words, chunk, strict=True))
            start = end
        return answers

    def evtchn_at_once(self, ops: Sequence[tuple[int, bytes]]) -> list[XenAnswer]:
        """``event_channel_op`` calls made at the same moment, call i from dom0's vCPU i
        (at most :attr:`vcpus` calls): each runs on a thread of the init pinned to its
        vCPU, and the threads, released together, meet at a spin barrier right before
        their hypercalls.  The answers are in the order of ``ops``, as
        :meth:`evtchn_op` would give them; :attr:`last_timing` says when each call ran.
        More calls than :attr:`vcpus` (or a request longer than the channel's line) is a
        ValueError."""
        link = self._checked()
        if len(ops) > self.vcpus:
            raise ValueError(f"{len(ops)} calls at once; dom0 has {self.vcpus} vCPUs")
        items = [self._item(cmd, arg) for cmd, arg in ops]
        if not items:
            return []
        body = "P " + " ".join(t for t, _ in items)
        if len(body) + 16 > link.line_bytes:
            raise ValueError(f"the request takes {len(body) + 16} bytes; the {self.channel} "
                             f"channel takes lines of {link.line_bytes}")
        words = self._words(body, link.expect(len(body) + 16, len(items)))
        if len(words) != len(items):
            raise XenProtocolError(f"{len(words)} answers to {len(items)} calls at once")
        answers: list[XenAnswer] = []
        cpus, starts, ends = [], [], []
        for i, (word, (_, size)) in enumerate(zip(words, items, strict=True)):
            rc, _, rest = word.partition(":")
            data, _, timing = rest.partition(":")
            try:
                cpu, t0, t1 = (int(v, b) for v, b in zip(timing.split(":"), (10, 16, 16),
                                                         strict=True))
            except ValueError:
                raise XenProtocolError(f"unreadable answer item {word!r}") from None
            if cpu != i:
                raise XenProtocolError(f"call {i} at once ran on vCPU {cpu}, not {i}")
            answers.append(self._answer(f"{rc}:{data}", size))
            cpus.append(cpu)
            starts.append(t0)
            ends.append(t1)
        self.last_timing = AtOnceTiming(tuple(cpus), tuple(starts), tuple(ends),
                                        self.counter_hz or 0)
        return answers

    def hypercall(self, op: int, *args: int) -> int:
        """A raw hypercall ``op(a0..a4)`` from dom0 with the arguments as given (missing
        ones 0; a pointer here means an address in the init, which the host does not
        know), for ``op`` 17 (xen_version), 32 (event_channel_op) or >= 56 (no hypercall
        has such a number); its return value, signed.  Other ops are refused (the init
        refuses them too), so that no request can shut Xen down by accident."""
        link = self._checked()
        if len(args) > 5:
            raise ValueError(f"at most 5 arguments, got {len(args)}")
        if not (op in (HYPERVISOR_XEN_VERSION, HYPERVISOR_EVENT_CHANNEL_OP)
                or 56 <= op <= MASK64):
            raise ValueError(f"op {op!r} is not allowed (17, 32 or >= 56)")
        for i, v in enumerate(args):
            if not isinstance(v, int) or not 0 <= v <= MASK64:
                raise ValueError(f"a{i} = {v!r} is not a 64-bit unsigned value")
        words = self._words(" ".join(["X", f"{op:x}", *(f"{v:x}" for v in args)]),
                            link.expect(40, 1))
        try:
            return int(words[0], 10)
        except (IndexError, ValueError):
            raise XenProtocolError(f"unexpected answer: R {' '.join(words)}") from None
