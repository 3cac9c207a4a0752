"""Drive the PSCI/SMCCC handler of Linux KVM/arm64 (nVHE or pKVM) from the PSCI guest agent.

:class:`KvmPsciMachine` has the public API and the outcome types of
:class:`conformance.qemu_psci.PsciMachine` (both drivers take them, and what else they do
alike, from :mod:`conformance.guest_machine`), so
code written for that driver works on this one; here the hypervisor that answers the
agent's ``HVC #0`` is KVM, not QEMU.  Like that module, this one is only the transport: it
reports raw register values, exceptions and "did not return", and judges nothing.

The stack
    ``qemu-system-aarch64 -M virt,virtualization=on`` (TCG: no host KVM is needed) boots
    Debian's arm64 kernel (``scripts/fetch-arm64-kernel``, unpacked, never installed; KVM is
    built in) at EL2 with ``kvm-arm.mode=nvhe`` or ``protected``, and an initramfs of ours
    (``guests/kvm-init``, built by :func:`build_initrd`): a static ``/init`` that opens
    ``/dev/kvm`` and is the VMM of one VM of ``cpus`` vCPUs (KVM_ARM_VCPU_PSCI_0_2; all but
    vCPU 0 powered off), 128 MiB of RAM at 0x40000000, running ``guests/psci`` built with
    ``-DKVM_GUEST`` (``agent-kvm.elf``).  The agent's memory map, mailbox layout and
    trampolines are those of the QEMU build (same :class:`AgentInfo`).

The channel (``channel=``)
    The init reaches the VM's RAM directly (it mapped it), but this process cannot reach
    the init's memory: requests travel as lines.  The init does the mailbox work itself
    (writes the arguments, waits for the acknowledgement) and answers one line per request,
    so one :meth:`~KvmPsciMachine.call` is one line each way (protocol in
    ``guests/kvm-init/init.c``).  Its lines carry a marker and a checksum: kernel messages
    on the console are ignored (the init also lowers the console log level to
    emergencies), and a line a kernel message cut through is asked for again (``A <seq>``).

    ``"virtio"`` (the default): a virtio-serial port (``virtio-serial-device`` on
    virtio-mmio, ``virtserialport,name=pvspec``) whose QEMU end is a Unix socket this
    process listens on, as for :mod:`conformance.xen_machine` (the host side is
    :class:`~conformance.guest_machine.PortRun`, the init's
    ``guests/kvm-init/linux_channel.h``, both shared with it).  Debian builds
    ``virtio_mmio`` and ``virtio_console`` as modules: the initramfs takes them from what
    ``scripts/fetch-xen-arm64`` unpacked from the same kernel package, and the init loads
    them.  Without them (or with ``"console"``) the init says so (``CHANNEL console``) and
    the outer machine's PL011 console, QEMU's stdio, carries the requests: QEMU's PL011
    takes one input byte per main-loop pass (``pl011_can_receive`` answers 1), ~50 us a
    byte, so the request's length dominates there; hence the short call form (``C <cpu>
    <x0..>``, HVC, the default timeout, trailing zero registers left out) and answers
    without trailing zeros.  Tried before and slower still: a dedicated ``pci-serial``
    port (<= 370 round trips/s: QEMU's 16550 hands over at most the RX trigger level per
    pass, and the 8250 driver's trapped register accesses cost more).

    Measured (QEMU 7.2 TCG, 2 host cores, load average 6 from other jobs; 3 x 300
    requests): a mailbox read (:meth:`~KvmPsciMachine.started`) 630-880/s over the port,
    40-110/s over the console; :meth:`~KvmPsciMachine.call` 210-280/s over the port,
    40-220/s over the console (the call itself, inside the nested KVM, sets that pace).

Why a doorbell rather than polling
    A polling vCPU would hold one of the outer machine's two emulated CPUs.  The KVM build
    of the agent reads a per-CPU doorbell address with no memory behind it instead; the
    init completes that MMIO read only once a request is pending, so an idle VM costs
    nothing, and the read after each call tells the init at once that the answer is there.

Speed
    The init runs pinned to one outer CPU with its vCPU threads (each call hands over from
    one thread to another twice; same-CPU wake-ups need no IPI).  Measured with QEMU 7.2
    TCG on 2 host cores that other jobs were also using (medians over 5 x 300 calls):
    calls inside the init (the ``B`` benchmark request, no line at all) 1,000-1,400/s
    pinned, 730-880/s not (600-800/s at load 5); over the console, a bare round trip
    (``H``) ~1,000/s, :meth:`call` 300-370/s (up to 530/s) on a quiet host and 40-220/s at
    load 5-6, where the virtio port gives 290-390/s; :meth:`reset_vm` 45-75 ms (90-190 ms
    at load 5).  nVHE and protected mode measure alike.  A vCPU started at an address
    outside RAM spins in KVM on prefetch aborts (nothing maps its vectors) and roughly
    halves the call rate until :meth:`reset_vm`.  In a 10-example oracle campaign at load
    5-6 (the profile): 1,849 calls of 3.3-4 ms each (the nested KVM round trip sets that
    pace), 14 suspends waited out at 0.2 s each (a quarter of the time), 7 VM resets;
    104-179 checked calls/s over the port against 46-50/s over the console; at load 2-3,
    165-197 (median 176) against 70-181 (175): on a quiet host the console keeps up, and
    the nested call itself and the suspends waited out set the pace.  Since then a
    suspend is settled (``call(settle=...)``, the init's ``G``) once the vCPU's thread has
    slept 10 ms in KVM_RUN: 20-26 ms a suspend instead of 0.2 s at load 8, the same
    verdicts (K1 seven times, the same learned profile) in 10-example campaigns.  With it,
    ``pvspec bench --real-targets`` at load 7-9, 5 rounds alternating with the console
    driver of before: 125-297 checked calls/s (median 189) against 34-96 (45), boot 7.7-9.7
    s (8.2) against 5.8-10.9 s (10.0).  The port costs the
    boot 0.3-0.8 s (loading the two modules; 6.3-7.4 s against 5.5-6.6 s to READY at
    load 3-4), once per campaign.
    Tried and not kept: one condition variable per vCPU for the doorbell waits (a request
    wakes only its vCPU's thread) made no difference measurable at that load.

Cheap resets
    The outer boot takes seconds (about 4 s here; 14-18 s was seen on other machines), so
    one :meth:`~KvmPsciMachine.start` boots the kernel once, and
    :meth:`~KvmPsciMachine.reset_vm` destroys the VM and creates a fresh one (new RAM: boot
    counts restart at 1) inside the running kernel in milliseconds.  :meth:`restart` is the
    full reboot, as in :class:`~conformance.qemu_psci.PsciMachine`.

What the VMM does on the guest's system events
    SYSTEM_OFF stops the VM: calls answer ``MachineExited(0)`` and :attr:`alive` is False
    until :meth:`reset_vm` (the kernel keeps running).  SYSTEM_RESET resets it as QEMU would
    a board: every vCPU back to its reset state (vCPU 0 on, the others off), the agent image
    reloaded, the rest of RAM kept, so vCPU 0 cold-boots again (its boot count grows: a call
    in flight on it reports ``NoReturn(restarted=True)``); with ``no_reboot`` it stops the
    VM like SYSTEM_OFF.  Any other exit of a vCPU to the VMM (an internal error, a failed
    entry) stops the VM with status 1 (:attr:`vm_exit_reason` says why).  When the outer
    QEMU itself exits (a kernel panic, with ``panic=-1 -no-reboot``), calls answer
    ``MachineExited`` with QEMU's status, or :data:`KERNEL_GONE` if that was 0, so that it
    is never mistaken for the guest's SYSTEM_OFF.

Memory coherence
    The agent runs with its MMU off (Device memory) and the init reads the same RAM through
    a cacheable mapping.  On hardware that needs cache maintenance (or FEAT_S2FWB); under
    TCG, which models no caches, every access is coherent, which is all this driver
    supports.

Cleanup
    As :class:`~conformance.qemu_psci.PsciMachine`: QEMU runs in its own session (process
    group), optionally under ``setpriv --pdeathsig KILL``; :meth:`stop` (also the context
    manager, a :func:`weakref.finalize` at garbage collection and at interpreter exit)
    SIGKILLs the group, reaps QEMU, ends the reader thread and removes the temporary
    directory, keeping the logs' text in memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from conformance.guest_machine import (
    DRIVER_API,
    I_MAGIC,
    INFO_MAGIC,
    LAYOUT_VERSION,
    MASK64,
    SERVING,
    GuestMachine,
    PortRun,
    agent_info,
    cross_prefix,
    exit_status,
    guest_source,
    parent_death_wrapper,
    qemu_missing,
    run_make,
    start_record,
    virtio_port_args,
)

# the machine API shared with the other driver, re-exported (DRIVER_API)
from conformance.guest_machine import ENTRY_IMAGE as ENTRY_IMAGE
from conformance.guest_machine import INFO_ADDR as INFO_ADDR
from conformance.guest_machine import MAX_CPUS as MAX_CPUS
from conformance.guest_machine import RAM_BASE as RAM_BASE
from conformance.guest_machine import RAM_SIZE as RAM_SIZE
from conformance.guest_machine import AgentBuildError as AgentBuildError
from conformance.guest_machine import AgentInfo as AgentInfo
from conformance.guest_machine import CallOutcome as CallOutcome
from conformance.guest_machine import CpuState as CpuState
from conformance.guest_machine import Insn as Insn
from conformance.guest_machine import MachineBootError as MachineBootError
from conformance.guest_machine import MachineError as MachineError
from conformance.guest_machine import MachineExited as MachineExited
from conformance.guest_machine import MachineNotRunning as MachineNotRunning
from conformance.guest_machine import Mailbox as Mailbox
from conformance.guest_machine import NoReturn as NoReturn
from conformance.guest_machine import NotServing as NotServing
from conformance.guest_machine import Raised as Raised
from conformance.guest_machine import Returned as Returned
from conformance.guest_machine import StartRecord as StartRecord

__all__ = [
    *DRIVER_API,
    "DEFAULT_KERNEL_DIR",
    "KERNEL_GONE",
    "CHANNELS",
    "MODES",
    "InitBuildError",
    "KvmPsciMachine",
    "build_initrd",
    "default_kernel",
    "init_dir",
    "missing_prerequisites",
]

MODES = ("nvhe", "protected")
CHANNELS = ("virtio", "console")
DEFAULT_KERNEL_DIR = Path("/var/cache/pvspec/arm64-kernel")  # scripts/fetch-arm64-kernel
KERNEL_GONE = 255  # MachineExited.status when QEMU exited with status 0 by itself
_SLACK = 5.0  # seconds the host waits for an answer beyond the init's own timeout
_RESEND = 2  # "A <seq>" requests before giving up on an answer
_MODE_LINE = {"nvhe": "Hyp mode initialized successfully",
              "protected": "Protected nVHE mode initialized successfully"}


class InitBuildError(AgentBuildError):
    """``make -C guests/kvm-init`` failed or could not run; the message holds its output."""


class _NoAnswer(MachineError):
    """The init did not answer a request (QEMU may have exited)."""


# --- building and finding what the outer machine boots -------------------------------------------
def init_dir() -> Path:
    """``guests/kvm-init`` of this checkout."""
    return guest_source("kvm-init")


def build_initrd(force: bool = False) -> Path:
    """Build (``make -C guests/kvm-init``, which also builds ``agent-kvm.elf``; ``force``
    rebuilds with ``-B``) and return the path of ``initrd.cpio``.  The cross compiler is
    ``aarch64-linux-gnu-gcc`` unless ``CROSS`` is set.  :class:`InitBuildError` carries
    make's output when it fails."""
    src = init_dir()
    return run_make(src, "the kvm-init initramfs", src / "build" / "initrd.cpio",
                    InitBuildError, 300, force=force)


def default_kernel() -> Path:
    """The arm64 kernel image: ``$PVSPEC_ARM64_KERNEL`` if set, else ``vmlinuz`` in
    ``$PVSPEC_ARM64_KERNEL_DIR`` or :data:`DEFAULT_KERNEL_DIR` (where
    ``scripts/fetch-arm64-kernel`` puts it).  The path may not exist."""
    env = os.environ.get("PVSPEC_ARM64_KERNEL")
    if env:
        return Path(env)
    return Path(os.environ.get("PVSPEC_ARM64_KERNEL_DIR") or DEFAULT_KERNEL_DIR) / "vmlinuz"


def missing_prerequisites(qemu: str = "qemu-system-aarch64") -> str | None:
    """None if QEMU, the cross compiler with its static libc and the fetched kernel are
    there, else why not."""
    if qemu_missing(qemu):
        return f"{qemu} is not installed (make system-deps, as root)"
    cross = cross_prefix()
    gcc = shutil.which(cross + "gcc")
    if gcc is None:
        return f"{cross}gcc (AArch64 cross compiler) is not installed (make system-deps)"
    try:  # the init is linked statically: it needs the cross libc (libc6-dev-arm64-cross)
        libc = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True,
                              text=True, check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {gcc}: {exc}"
    if not os.path.isabs(libc) or not os.path.isfile(libc):
        return f"no static libc for {cross}gcc (install libc6-dev-arm64-cross: make system-deps)"
    kernel = default_kernel()
    if not kernel.is_file():
        return (f"no arm64 kernel at {kernel} (run scripts/fetch-arm64-kernel as root, or "
                f"make system-deps)")
    return None



# --- the QEMU process, its console and the reader thread -----------------------------------------
class _Channel(PortRun):
    """Everything one QEMU run holds (its stdin and stdout are the console, the virtio
    port a socket, read by :class:`~conformance.guest_machine.PortRun`'s threads) and the
    init's unsolicited lines: K (a kernel message about KVM, relayed), U (a line of the
    agent's UART), X (the VM stopped), Y (a SYSTEM_RESET), M (a module loaded)."""

    def __init__(self, tmpdir: Path) -> None:
        super().__init__(tmpdir)
        self.kvm_log: list[str] = []
        self.agent_log: list[str] = []
        self.vm_exit: tuple[int, str] | None = None  # (status, reason) of the stopped VM
        self.system_resets = 0
        self.modules: dict[str, int] = {}

    def unsolicited(self, kind: str, rest: list[str]) -> None:
        if kind == "M" and len(rest) >= 2:
            with contextlib.suppress(ValueError):
                self.modules[rest[0]] = int(rest[1])
        elif kind == "K":
            self.kvm_log.append(" ".join(rest))
        elif kind == "U":
            self.agent_log.append(" ".join(rest))
        elif kind == "X" and rest:
            with contextlib.suppress(ValueError):
                self.vm_exit = (int(rest[0]), " ".join(rest[1:]))
        elif kind == "Y":
            self.system_resets += 1
        else:
            super().unsolicited(kind, rest)


# --- the machine ---------------------------------------------------------------------------------
class KvmPsciMachine(GuestMachine[_Channel]):
    """One outer QEMU running Linux with KVM in ``mode`` (``"nvhe"`` or ``"protected"``),
    whose init runs the PSCI agent in a KVM VM of ``cpus`` vCPUs (1..8).

    ``with KvmPsciMachine(cpus=2) as m: m.call(0, [0x8400_0000])`` boots it (building the
    initramfs unless ``initrd`` names one; ``kernel`` defaults to :func:`default_kernel`)
    and always stops it.  CPU indices are vCPU ids (MPIDR_EL1.Aff0 under KVM); vCPU 0 boots,
    the others wait powered off for a CPU_ON naming one of :attr:`info` ``.trampolines`` (or
    ``.image_entry``).

    ``call_timeout`` bounds each :meth:`call`, ``boot_timeout`` the outer boot (kernel to
    init), ``vm_timeout`` the creation of a VM up to the agent serving on vCPU 0.
    ``no_reboot``: a guest SYSTEM_RESET stops the VM instead of resetting it.
    ``host_cpus`` and ``memory_mb`` size the outer machine; ``extra_args`` are appended to
    QEMU's command line, ``extra_append`` to the kernel's.  ``spin_us`` and ``doze_us`` are
    accepted for compatibility and ignored (:meth:`set_idle`).  ``die_with_parent`` as in
    :class:`~conformance.qemu_psci.PsciMachine`.  Not thread-safe: one caller drives a
    machine.
    """

    def __init__(self, cpus: int = 2, *, mode: Literal["nvhe", "protected"] = "nvhe",
                 call_timeout: float = 1.0, boot_timeout: float = 180.0,
                 vm_timeout: float = 10.0, qemu: str = "qemu-system-aarch64",
                 kernel: str | os.PathLike[str] | None = None,
                 initrd: str | os.PathLike[str] | None = None, no_reboot: bool = False,
                 host_cpus: int = 2, memory_mb: int = 1024, extra_args: Sequence[str] = (),
                 extra_append: str = "", die_with_parent: bool = True, spin_us: int = 2000,
                 doze_us: int = 1000,
                 channel: Literal["virtio", "console"] = "virtio") -> None:
        super().__init__(cpus, call_timeout=call_timeout, boot_timeout=boot_timeout, qemu=qemu,
                         no_reboot=no_reboot, extra_args=extra_args,
                         die_with_parent=die_with_parent)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode: Literal["nvhe", "protected"] = mode
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
        self.channel: Literal["virtio", "console"] = channel
        self.vm_timeout = vm_timeout
        self.kernel = Path(kernel) if kernel is not None else None
        self.initrd = Path(initrd) if initrd is not None else None
        self.host_cpus = host_cpus
        self.memory_mb = memory_mb
        self.extra_append = extra_append
        self._idle = self._check_idle(spin_us, doze_us)
        self.kernel_seconds: float | None = None  # launch to the init's READY line
        self.vm_seconds: float | None = None  # the latest VM creation (start or reset_vm)
        self.kernel_release: str | None = None
        self.vm_resets = 0  # reset_vm() calls since start()
        self._broken: str | None = None  # the init stopped answering
        self._has_vm = False
        self._seq = 0
        self._call_ms = int(call_timeout * 1000)  # the init's timeout of the short call form

    # lifecycle
    def command(self, kernel: Path, initrd: Path, socket_path: Path | None = None
                ) -> list[str]:
        """QEMU's command line for this machine (``socket_path``: the virtio port's
        socket, for that channel).  ``-display none -nodefaults -serial stdio`` rather
        than ``-nographic``: the latter multiplexes QEMU's monitor onto the same stdio
        (escape sequences, monitor output); ``-nodefaults`` also means no NIC."""
        channel = "" if socket_path is None else "pvspec.channel=virtio "
        append = (f"console=ttyAMA0 kvm-arm.mode={self.mode} panic=-1 rdinit=/init "
                  f"{channel}{self.extra_append}").strip()

        return [*parent_death_wrapper(self.die_with_parent), self.qemu,
                "-M", "virt,virtualization=on,gic-version=3",
                "-cpu", "max,pauth-impdef=on", "-smp", str(self.host_cpus),
                "-m", str(self.memory_mb), "-display", "none", "-nodefaults",
                "-no-user-config", "-serial", "stdio", "-no-reboot",
                "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
                *virtio_port_args(socket_path), *self.extra_args]

    def start(self) -> None:
        """Boot the outer machine and create the VM; return once the agent serves on vCPU
        0.  Raises :class:`~conformance.qemu_psci.MachineBootError` (with QEMU's stderr and
        the console's tail) when it cannot; nothing is left behind then."""
        if self._run is not None and not self._run.released:
            raise MachineError("the machine is already started (stop() or restart() it)")
        kernel = self.kernel if self.kernel is not None else default_kernel()
        if not kernel.is_file():
            raise MachineBootError(f"no arm64 kernel at {kernel} (run "
                                   f"scripts/fetch-arm64-kernel as root, or make system-deps)")
        initrd = self.initrd if self.initrd is not None else build_initrd()
        if not initrd.is_file():
            raise MachineBootError(f"no initramfs at {initrd}")
        if qemu_missing(self.qemu):
            raise MachineBootError(f"QEMU not found: {self.qemu}")
        ch = _Channel(Path(tempfile.mkdtemp(prefix="pvspec-kvm-psci-")))
        self._begin_run(ch)
        assert self._finalizer is not None
        self._broken = None
        self._has_vm = False
        self._insn.clear()
        self.boot_seconds = self.kernel_seconds = self.vm_seconds = None
        self.vm_resets = 0
        try:
            sock = ch.listen() if self.channel == "virtio" else None
            self._argv = self.command(kernel, initrd, sock)
            t0 = time.perf_counter()
            with open(ch.stderr_log, "wb") as err:
                ch.proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=err,
                                           start_new_session=True)
            ch.reader = threading.Thread(target=ch.read_loop, name="kvm-psci-console",
                                         daemon=True)
            ch.reader.start()
            proc = ch.proc
            if sock is not None and not ch.accept(t0 + self.boot_timeout,
                                                  lambda: exit_status(proc) is not None):
                self._boot_failed(f"QEMU did not connect to the virtio port's socket "
                                  f"(status {exit_status(proc)})")
            self._wait_kernel(t0)
            self._create_vm()
            self.boot_seconds = time.perf_counter() - t0
        except BaseException as exc:
            if isinstance(exc, MachineBootError):
                raise
            logs = ch.logs_text()
            self._finalizer()
            self._run = None
            if isinstance(exc, OSError):
                raise MachineBootError(f"cannot start QEMU: {exc}{logs}") from exc
            if isinstance(exc, MachineError):
                raise MachineBootError(f"{exc}{logs}") from exc
            raise

    def _wait_kernel(self, t0: float) -> None:
        ch = self._run
        assert ch is not None and ch.proc is not None
        deadline = t0 + self.boot_timeout
        with ch.cond:
            while ch.ready is None:
                if ch.eof or exit_status(ch.proc) is not None:
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                ch.cond.wait(min(left, 0.5))
            ready = ch.ready
        if ready is None:
            status = exit_status(ch.proc)
            if status is not None:
                self._boot_failed(f"QEMU exited with status {status} before the init was "
                                  f"ready")
            self._boot_failed(f"the init was not ready within {self.boot_timeout} s")
        self.kernel_seconds = time.perf_counter() - t0
        assert ready is not None
        api = int(ready[0]) if ready and ready[0].lstrip("-").isdigit() else -1
        self.kernel_release = ready[3] if len(ready) > 3 else None
        if api != 12:
            self._boot_failed(f"/dev/kvm is not usable in the outer kernel (KVM API version "
                              f"{api}; negative: -errno of opening it)")
        if len(ready) > 2 and int(ready[2], 16) == 0:
            self._boot_failed("the initramfs has no /agent.elf")
        want = _MODE_LINE[self.mode]
        if not any(line.endswith(want) for line in ch.kvm_log):
            self._boot_failed(f"KVM did not come up in {self.mode} mode (no '{want}' in the "
                              f"kernel log); its KVM lines:\n" + "\n".join(ch.kvm_log))

    def _create_vm(self) -> None:
        """(Re)create the VM in the running kernel and wait for the agent on vCPU 0."""
        ch = self._run
        assert ch is not None
        t0 = time.perf_counter()
        with ch.cond:
            ch.vm_exit = None
        self._has_vm = False
        self._insn.clear()
        self._call_ms = int(self.call_timeout * 1000)
        words = self._request(f"V {self.cpus} {int(self.no_reboot)} "
                              f"{int(self.vm_timeout * 1000)} {self._call_ms}",
                              self.vm_timeout)
        if words[0] != "OK":
            raise MachineError(f"the init could not create the VM: {' '.join(words[1:])}")
        self._has_vm = True
        self.vm_seconds = time.perf_counter() - t0
        info = self._read_info()
        if info.version != LAYOUT_VERSION:
            raise MachineError(f"the agent's mailbox layout is version {info.version}, this "
                               f"driver's {LAYOUT_VERSION} (rebuild the initramfs)")
        self._info = info

    def reset_vm(self) -> None:
        """Destroy the VM and create a fresh one (new RAM, vCPU 0 booted, the others off)
        inside the running kernel: milliseconds instead of a reboot.  Boot counts start
        again at 1 (a fresh machine).  Also brings back a VM stopped by SYSTEM_OFF or a
        crash.  Raises :class:`~conformance.qemu_psci.MachineNotRunning` if the machine was
        never started or was stopped, :class:`~conformance.qemu_psci.MachineError` if the
        outer kernel is gone or the VM cannot be created."""
        ch = self._run
        if ch is None or ch.released:
            raise MachineNotRunning("the machine has not been started")
        if not self.kernel_alive:
            raise MachineError(f"the outer machine is not running (QEMU status "
                               f"{self.exit_status}; {self._broken or 'exited'})"
                               f"{ch.logs_text()}")
        self._create_vm()
        self.vm_resets += 1

    def _refresh_before_stop(self) -> None:
        if self.alive and self._info is not None:
            with contextlib.suppress(MachineError):
                self._info = self._read_info(timeout=1.0)

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` (a full reboot of the outer machine; see
        :meth:`reset_vm` for the cheap reset)."""
        super().restart()

    def set_idle(self, spin_us: int, doze_us: int) -> None:
        """Accepted for compatibility with
        :meth:`~conformance.qemu_psci.PsciMachine.set_idle` and ignored: idle vCPUs here
        wait in their doorbell read, outside the guest, and cost nothing."""
        self._idle = self._check_idle(spin_us, doze_us)

    # state
    @property
    def kernel_alive(self) -> bool:
        """The outer QEMU runs and its init answers."""
        ch = self._run
        return (ch is not None and not ch.released and ch.proc is not None
                and self._broken is None and not ch.eof and exit_status(ch.proc) is None)

    @property
    def alive(self) -> bool:
        """The outer machine runs and so does the VM (False after the guest's SYSTEM_OFF
        until :meth:`reset_vm`)."""
        ch = self._run
        return self.kernel_alive and self._has_vm and ch is not None and ch.vm_exit is None

    @property
    def vm_exit_reason(self) -> str | None:
        """Why the VM stopped (``SYSTEM_OFF``, ``SYSTEM_RESET`` with ``no_reboot``, or a
        VMM-level failure), None while it runs."""
        ch = self._run
        return None if ch is None or ch.vm_exit is None else ch.vm_exit[1]

    @property
    def system_resets(self) -> int:
        """Guest SYSTEM_RESETs the VMM carried out since :meth:`start`."""
        return self._run.system_resets if self._run is not None else 0

    @property
    def serial_output(self) -> str:
        """The tail of the outer machine's console (kernel messages and protocol lines)."""
        return self._run.console_text() if self._run is not None else ""

    @property
    def kvm_log(self) -> tuple[str, ...]:
        """The outer kernel's log lines about KVM (and its version and command line), as
        the init reported them at boot."""
        return tuple(self._run.kvm_log) if self._run is not None else ()

    @property
    def agent_output(self) -> tuple[str, ...]:
        """Lines the agent wrote to its UART (``<cpu> <text>``)."""
        return tuple(self._run.agent_log) if self._run is not None else ()

    def _refresh_info(self) -> None:
        """The info page is read afresh while the VM runs (``cold_boots`` grows at a guest
        SYSTEM_RESET)."""
        if self._run is not None and not self._run.released and self._has_vm \
                and self.kernel_alive:
            with contextlib.suppress(MachineError):
                self._info = self._read_info()

    # the channel
    def _request(self, text: str, wait: float, slack: float = _SLACK) -> list[str]:
        """Send one request and return the answer's fields.  ``wait`` is how long the init
        itself may take, ``slack`` how much longer the host waits before asking for the
        answer again (a kernel message may have cut through it); :class:`_NoAnswer` if no
        answer comes (QEMU exited, or the init is stuck: then the machine is marked
        broken)."""
        ch = self._run
        if ch is None or ch.released or ch.proc is None or ch.proc.stdin is None:
            raise MachineNotRunning("the machine has not been started")
        if self._broken is not None:
            raise _NoAnswer(self._broken)
        self._seq += 1
        seq = self._seq
        line = f"{seq} {text}\n".encode()
        deadline = time.perf_counter() + wait + slack
        for _ in range(_RESEND + 1):
            try:
                ch.send(line)
            except (OSError, ValueError) as exc:
                raise _NoAnswer(f"cannot write to QEMU: {exc}") from exc
            with ch.cond:
                while seq not in ch.replies:
                    left = deadline - time.perf_counter()
                    if left <= 0 or ch.eof or ch.released:
                        break
                    ch.cond.wait(min(left, 0.25))
                    if exit_status(ch.proc) is not None and seq not in ch.replies:
                        break
                words = ch.replies.pop(seq, None)
                for old in [s for s in ch.replies if s < seq]:
                    del ch.replies[old]
            if words is not None:
                return words
            if ch.eof or ch.released or exit_status(ch.proc) is not None:
                raise _NoAnswer("QEMU exited")
            # maybe a kernel message cut through the answer: ask for it again
            line = f"{seq} A {seq}\n".encode()
            deadline = time.perf_counter() + min(slack, 2.0)
        self._broken = f"the init did not answer {text.split(' ')[0]!r} (request {seq})"
        raise _NoAnswer(self._broken)

    def _exited_with(self, status: int) -> MachineExited:
        """QEMU exited by itself: status 0 is reported as :data:`KERNEL_GONE`, so that it
        is never mistaken for the guest's SYSTEM_OFF."""
        return MachineExited(status if status != 0 else KERNEL_GONE, False)

    def _exited(self) -> MachineExited | None:
        """A :class:`MachineExited` when the VM or QEMU is not running (never started:
        raises)."""
        exited = super()._exited()
        if exited is not None:
            return exited
        ch = self._run
        assert ch is not None
        if ch.vm_exit is not None:
            return MachineExited(ch.vm_exit[0], False)
        if not self._has_vm:
            raise MachineNotRunning("the machine has no VM (reset_vm() failed)")
        return None

    def _gone(self, exc: _NoAnswer) -> MachineExited:
        """The outcome of a request that got no answer: QEMU exited, else the error."""
        ch = self._run
        assert ch is not None and ch.proc is not None
        # Let QEMU finish exiting (its stdout may close before it is a zombie); never reaped
        # here, so that its process group id cannot be reused before stop().
        end = time.perf_counter() + (5.0 if ch.eof else 1.0)
        while exit_status(ch.proc) is None and time.perf_counter() < end:
            time.sleep(0.01)
        exited = self._exited()
        if exited is None:
            raise MachineError(f"{exc}{ch.logs_text()}") from exc
        return exited

    def _read_info(self, timeout: float = _SLACK) -> AgentInfo:
        words = self._request("I", 0.0, timeout)
        if words[0] != "OK" or len(words) < 24:
            raise MachineError(f"bad info answer: {' '.join(words)}")
        w = [int(x, 16) for x in words[1:25]]
        if w[I_MAGIC] != INFO_MAGIC:
            raise MachineError("the agent's info page is not written")
        return agent_info(w)

    def _mailbox_words(self, cpu: int) -> tuple[bool, list[int]] | None:
        """(VM running, [magic_ok mpidr boot entry context state ack calls heartbeat dozes
        req exc_count]) or None when there is nothing to read."""
        if self._run is None or self._run.released or not self._has_vm \
                or not self.kernel_alive:
            return None
        try:
            words = self._request(f"M {cpu}", 0.0)
        except _NoAnswer:
            return None
        if words[0] != "OK" or len(words) < 14:
            raise MachineError(f"bad mailbox answer: {' '.join(words)}")
        return words[1] == "1", [int(x, 16) for x in words[2:14]]

    @staticmethod
    def _record(w: Sequence[int]) -> StartRecord | None:
        magic_ok, mpidr, boot, entry, context = w[0], w[1], w[2], w[3], w[4]
        if not magic_ok or boot == 0:
            return None
        return start_record(boot, entry, context, mpidr)

    def mailbox(self, cpu: int) -> Mailbox | None:
        """A raw snapshot of ``cpu``'s mailbox (None once the machine is stopped)."""
        got = self._mailbox_words(self._check_cpu(cpu))
        if got is None:
            return None
        w = got[1]
        return Mailbox(magic_ok=bool(w[0]), state=CpuState.of(w[5]), boot_count=w[2],
                       req_seq=w[10], ack_seq=w[6], calls=w[7], heartbeat=w[8],
                       exc_count=w[11], dozes=w[9])

    def started(self, cpu: int) -> StartRecord | None:
        """``cpu``'s latest start, None if it never started (or the machine is stopped).
        Whether it is still on is :meth:`serving`."""
        got = self._mailbox_words(self._check_cpu(cpu))
        return None if got is None else self._record(got[1])

    def serving(self, cpu: int) -> bool:
        """``cpu`` waits for a request: a call would be executed now."""
        got = self._mailbox_words(self._check_cpu(cpu))
        if got is None or not self.alive:
            return False
        running, w = got
        return running and bool(w[0]) and w[5] in SERVING and w[6] == w[10]

    def wait_started(self, cpu: int, after_boot_count: int = 0,
                     timeout: float | None = None) -> StartRecord | None:
        """Wait until ``cpu`` has started more than ``after_boot_count`` times (pass
        ``started(cpu).boot_count`` from before the CPU_ON) and return that start, or None
        after ``timeout`` s (default ``call_timeout``) or if the VM stops.  A returned start
        is already serving."""
        self._check_cpu(cpu)
        wait = max(0.0, self.call_timeout if timeout is None else timeout)
        if not self.alive:
            return None
        try:
            words = self._request(f"W {cpu} {after_boot_count & MASK64:x} "
                                  f"{int(wait * 1000)}", wait)
        except _NoAnswer:
            return None
        if words[0] != "OK" or len(words) < 14:
            return None
        return self._record([int(x, 16) for x in words[2:14]])

    # calls
    # call(settle=...) is understood: see conformance.firmware_target
    settles_suspends = True

    def call(self, cpu: int, regs: Sequence[int], timeout: float | None = None, *,
             insn: Insn = Insn.HVC, settle: float | None = None) -> CallOutcome:
        """Have ``cpu`` execute ``HVC #0`` (or ``insn``) with x0..x7 = ``regs`` (missing
        ones 0) and report what happened (see
        :data:`~conformance.qemu_psci.CallOutcome`).  ``timeout`` (default
        ``call_timeout``) bounds the wait for the answer.  ``settle`` (seconds): report
        :class:`NoReturn` as soon as the vCPU's thread has slept inside KVM_RUN during the
        call for that long without waking -- the vCPU waits in the hypervisor, as in the
        WFI of a standby CPU_SUSPEND, and this VM has nothing that could wake it (no
        interrupt controller, the agent's timer off); a call that returns never sleeps
        there.  For suspends: spares waiting out the whole timeout."""
        insn, args = self._call_args(cpu, regs, insn)
        exited = self._exited()
        if exited is not None:
            return exited
        wait = max(0.0, self.call_timeout if timeout is None else timeout)
        self._insn[cpu] = insn
        while len(args) > 1 and args[-1] == 0:  # the init takes missing registers as 0
            args.pop()
        regs_hex = " ".join(f"{v:x}" for v in args)
        ms = int(wait * 1000)
        # every request byte costs ~50 us on the PL011: the short form when it will do
        if settle is not None:
            text = f"G {cpu} {int(insn)} {ms} {max(1, int(settle * 1000))} {regs_hex}"
        elif insn == Insn.HVC and ms == self._call_ms:
            text = f"C {cpu} {regs_hex}"
        else:
            text = f"F {cpu} {int(insn)} {ms} {regs_hex}"
        try:
            words = self._request(text, wait)
        except _NoAnswer as exc:
            return self._gone(exc)
        return self._outcome(cpu, words)

    def wait_pending(self, cpu: int, timeout: float | None = None) -> CallOutcome | None:
        """Keep waiting for the answer to ``cpu``'s last call that ended in a
        :class:`~conformance.qemu_psci.NoReturn` without a restart; None if there is no
        such call."""
        self._check_cpu(cpu)
        exited = self._exited()
        if exited is not None:
            return exited
        wait = max(0.0, self.call_timeout if timeout is None else timeout)
        try:
            words = self._request(f"P {cpu} {int(wait * 1000)}", wait)
        except _NoAnswer as exc:
            return self._gone(exc)
        if words[0] == "Z":
            return None
        return self._outcome(cpu, words)

    def _outcome(self, cpu: int, words: list[str]) -> CallOutcome:
        kind = words[0]
        try:
            nums = [int(x, 16) for x in words[1:]] if kind in "RETS" else []
        except ValueError:
            nums = []
        if kind == "R" and 1 <= len(nums) <= 8:  # trailing zero registers left out
            return Returned((*nums, *[0] * (8 - len(nums))))
        if kind == "E" and len(nums) == 4:
            esr, elr, far, vector = nums
            return Raised(esr=esr, elr=elr, far=far, vector=vector,
                          at_call=elr == self._insn_addr(cpu))
        if kind == "T" and len(nums) == 2:
            return NoReturn(CpuState.of(nums[0]), restarted=bool(nums[1]))
        if kind == "S" and len(nums) == 2:
            return NotServing(CpuState.of(nums[0]), nums[1])
        if kind == "X" and len(words) >= 2:
            ch = self._run
            assert ch is not None
            status = int(words[1])
            with ch.cond:
                ch.vm_exit = (status, " ".join(words[2:]))
            return MachineExited(status, False)
        raise MachineError(f"unexpected answer from the init: {' '.join(words)}")
