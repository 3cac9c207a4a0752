"""Drive QEMU's own PSCI implementation from a bare-metal AArch64 guest agent.

QEMU's ``virt`` machine with EL2 and EL3 off (``virtualization=off,secure=off``) implements
PSCI itself with the HVC conduit: QEMU acts as the hypervisor.  The guest agent
(``guests/psci``: ``start.S`` + ``agent.c``, built by :func:`build_agent`) runs on every
vCPU and executes, on the host's request, one ``HVC #0`` with x0..x7 chosen by the host.
This module is only the transport: it reports raw register values, exceptions, and
"did not return"; it judges nothing.

Transport
    The guest's RAM is a shared ``memory-backend-file`` in ``/dev/shm``; the host maps the
    top MiB of the same file.  One 4 KiB mailbox page per CPU (index = MPIDR_EL1.Aff0, at
    most :data:`MAX_CPUS`) at :data:`MAILBOX_BASE` + cpu * 4 KiB, and an info page at
    :data:`INFO_ADDR` written by the boot CPU at every cold boot.  Every field is a 64-bit
    aligned word (the guest runs with the MMU off, so its data accesses are Device memory:
    aligned only).  The host writes x0..x7 then bumps ``req_seq``; the guest loads them,
    sets ``state`` = IN_CALL, executes the HVC (or, on request, SMC #0 or a UDF that
    tests the exception path), stores x0..x7 as they are afterwards, sets
    ``state`` = DONE (or EXCEPTION) and then ``ack_seq`` = ``req_seq``.  The host reads
    and writes the words through a ``memoryview`` cast to ``Q``, so each one is a single
    aligned 8-byte access (never torn).  The word indices are the ``_W_*`` / ``_I_*``
    constants below, mirrored from ``guests/psci/agent.c`` (the layout version in the info
    page guards the pair).

Why a file and not a socket
    Measured on QEMU 7.2 TCG: a serial-port round trip costs 10-20 ms, a shared-RAM one a
    fraction of a millisecond.  Readiness is read from the mailbox (magic words and the
    boot CPU's boot count), never from the UART: the agent's "ready" line on the PL011 is
    for people reading the serial log.

Idle CPUs
    A polling vCPU holds a host core (TCG does not sleep on WFE).  So an idle CPU polls for
    ``spin_us`` after its latest call, then dozes: it arms its virtual timer for
    ``doze_us`` and executes WFI with interrupts masked (the pending timer PPI only ends
    the WFI; the agent enables it in the GICv3 for this).  The timer is off while a call
    runs.  Measured with 4 vCPUs on 2 host cores: always polling, 225 calls/s spread over
    the CPUs and QEMU at 100 % CPU when idle; dozing (1 ms / 1 ms), ~950 calls/s and
    ~10 %.  Consecutive calls to one CPU stay in the polling phase (>10,000 calls/s).
    Defaults: ``spin_us`` 2000, ``doze_us`` 1000 (:meth:`PsciMachine.set_idle`).

Resets in place
    :meth:`PsciMachine.reset` resets the running QEMU over QMP (``stop``, ``system_reset``,
    the ``RESET`` event, ``cont``): QEMU's own board reset, the state a fresh QEMU starts
    in for PSCI (every secondary OFF, vCPU 0 cold-booting the reloaded agent image, no
    call pending); the ``stop`` first makes QEMU run any CPU_ON it queued for a vCPU that
    had not taken it yet, so that no start crosses the reset.  With ``no_shutdown``
    (``-no-shutdown``) a guest SYSTEM_OFF stops QEMU instead of ending it, and the same
    reset powers the board on again.  Measured (QEMU 7.2 TCG, 2 host cores at load 5):
    3-16 ms a reset, against 0.09-0.22 s for a new QEMU.

Speed of a campaign
    ``pvspec bench --real-targets`` (10 examples, 1,849 checked calls), this driver and
    target against the previous ones (a new QEMU per example, 0.5 ms / 1 ms host polling,
    2 ms / 1 ms idle vCPUs), run alternately, 3 rounds each: at load 2-3, 863-1,312
    checked calls/s (median 1,107) against 507-917 (885); at load 5-6, 391-607 (585)
    against 324-375 (355); at load 7-9 (5 rounds), 333-998 (513) against 257-387 (347).
    What is left: each call's round trip (~0.9 ms at load 5: the
    vCPU's thread must get a host core), the suspends that never return, waited out by
    :mod:`conformance.firmware_target` (0.2 s each, about a fifth of the campaign), and
    the oracle's own work (about 1 s).

Cleanup
    QEMU runs in its own session (process group); :meth:`PsciMachine.stop` (also called by
    the context manager, by a :func:`weakref.finalize` at garbage collection and at
    interpreter exit) SIGKILLs the whole group, reaps QEMU, unmaps the file, unlinks it and
    removes the temporary directory holding the serial and stderr logs (their text is kept
    in memory).  SIGKILL rather than SIGTERM: QEMU has nothing to flush (the logs are
    written unbuffered), and a SIGTERM'd QEMU exits with status 0, which would look like a
    guest SYSTEM_OFF.  The shm file is unlinked as soon as the agent is ready (QEMU and the
    host keep their mappings), so it is not left behind even if this process is killed.

Exceptions in the guest
    Every entry point installs VBAR_EL1 first.  A synchronous exception (an UNDEF for an
    HVC a hypervisor does not accept, for SMC #0 with EL3 off, for the UDF self-test) is
    recorded in the CPU's mailbox (ESR/ELR/FAR, vector index) and the agent resumes after
    the faulting instruction, so it keeps serving: the call reports :class:`Raised`.
    (Measured on QEMU 7.2: with the HVC conduit every HVC #0 goes to QEMU's PSCI code, and
    an unknown function id returns NOT_SUPPORTED (-1) in x0 rather than an UNDEF.)

Results of :meth:`PsciMachine.call` (:data:`CallOutcome`)
    :class:`Returned` (x0..x7 after the call), :class:`Raised`, :class:`NoReturn` (no answer
    within the timeout, e.g. CPU_OFF or a CPU_SUSPEND nothing wakes; or the CPU started
    again during the call, e.g. SYSTEM_RESET), :class:`MachineExited` (QEMU exited or was
    stopped, e.g. SYSTEM_OFF exits with status 0) and :class:`NotServing` (the CPU is not
    polling its mailbox: never started, powered off, or still inside an earlier call).
    ``NotServing`` is returned rather than raised: whether a CPU is on is a fact about the
    machine the caller observes, not a misuse of the driver.  Misuse (a CPU index out of
    range, a register that does not fit in 64 bits, calling a machine never started)
    raises.
"""

from __future__ import annotations

import array
import contextlib
import json
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from conformance.guest_machine import (
    DRIVER_API,
    I_COLD_BOOTS,
    I_MAGIC,
    I_VERSION,
    INFO_MAGIC,
    LAYOUT_VERSION,
    MASK64,
    SERVING,
    GuestMachine,
    QemuRun,
    agent_info,
    exit_status,
    guest_source,
    log_tail,
    parent_death_wrapper,
    qemu_missing,
    run_make,
    start_record,
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
    "MAILBOX_BASE",
    "MAILBOX_STRIDE",
    "PsciMachine",
    "agent_dir",
    "build_agent",
]

# --- the mailboxes (the rest of the memory map is in conformance.guest_machine) ------------------
MAILBOX_BASE = 0x47F0_1000
MAILBOX_STRIDE = 0x1000
_MAP_OFFSET = INFO_ADDR - RAM_BASE  # the host maps [INFO_ADDR, INFO_ADDR + _MAP_SIZE)
_MAP_SIZE = 0x10000
_MBOX_MAGIC = int.from_bytes(b"VPSCIMBX", "little")

# mailbox page word indices
_W_MAGIC = 0
_W_MPIDR = 1
_W_BOOT_COUNT = 2
_W_ENTRY = 3
_W_CONTEXT = 4
_W_STATE = 5
_W_ACK_SEQ = 6
_W_CALLS = 7
_W_HEARTBEAT = 8
_W_DOZES = 9
_W_REQ_SEQ = 16
_W_INSN = 17
_W_IN = 24
_W_OUT = 32
_W_ESR = 40
_W_ELR = 41
_W_FAR = 42
_W_EXC_VECTOR = 43
_W_EXC_SPSR = 44
_W_EXC_COUNT = 45

# host-written info page words
_I_CFG_SPIN_US = 32
_I_CFG_DOZE_US = 33

# Waiting for an answer: busy polling for _SPIN s, then sleeps from _SLEEP_MIN doubling up
# to _SLEEP_MAX.  Short on both counts: a spinning host thread takes a core from QEMU's
# vCPU threads (2 host cores for 3 vCPUs), and a long sleep adds its length to an answer
# that came just after it began (measured in 10- and 30-example qemu-psci campaigns at
# load 5: 0.2 ms / 0.2 ms with the target's idle settings ~25% more checked calls/s than
# 0.5 ms / 1 ms).
_SPIN = 0.0002
_SLEEP_MIN = 0.00005
_SLEEP_MAX = 0.0002


# --- building the agent --------------------------------------------------------------------------
def agent_dir() -> Path:
    """``guests/psci`` of this checkout."""
    return guest_source("psci")


def build_agent(force: bool = False) -> Path:
    """Build (``make -C guests/psci``; ``force`` rebuilds with ``-B``) and return the path
    of ``agent.elf``.  Make does nothing when it is up to date.  The cross compiler is
    ``aarch64-linux-gnu-gcc`` unless ``CROSS`` is set in the environment.
    :class:`AgentBuildError` carries make's output when it fails."""
    src = agent_dir()
    return run_make(src, "the PSCI agent", src / "build" / "agent.elf", AgentBuildError, 120,
                    force=force)


# --- resource handling ---------------------------------------------------------------------------
class _Resources(QemuRun):
    """Everything one QEMU run holds: the process, its logs, and the shared RAM file with
    the host's mapping of its top (``words``: None once released)."""

    console_name = "serial log"

    def __init__(self, tmpdir: Path, shm_path: Path) -> None:
        super().__init__(tmpdir)
        self.shm_path = shm_path
        self.mm: mmap.mmap | None = None
        self.view: memoryview | None = None
        self.words: memoryview | None = None
        self.serial_text = ""
        self.qmp: _Qmp | None = None  # connected at the first reset()

    @property
    def serial_log(self) -> Path:
        return self.tmpdir / "serial.log"

    @property
    def qmp_path(self) -> Path:
        return self.tmpdir / "qmp.sock"

    def unlink_shm(self) -> None:
        with contextlib.suppress(OSError):
            self.shm_path.unlink()

    def free(self) -> None:
        """Close the QMP connection, unmap and unlink the RAM file."""
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        for view in (self.words, self.view):
            if view is not None:
                with contextlib.suppress(Exception):
                    view.release()
        self.words = self.view = None
        if self.mm is not None:
            with contextlib.suppress(Exception):
                self.mm.close()
            self.mm = None
        self.unlink_shm()

    def keep_logs(self) -> None:
        self.serial_text = log_tail(self.serial_log)
        super().keep_logs()

    def console_tail(self) -> str:
        return self.serial_text or log_tail(self.serial_log)


class _Qmp:
    """A QMP connection to one QEMU (its ``-qmp unix:...,server=on,wait=off`` socket): one
    command at a time (:meth:`execute`), each answered by a ``return`` or an ``error``; a
    thread reads the socket, so that events are seen as they come: :attr:`powered_off`
    is set at a guest-initiated ``SHUTDOWN`` (SYSTEM_OFF under ``-no-shutdown``, where
    QEMU stops rather than exits), :meth:`wait_event` waits for another."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.timeout = timeout
        self.cond = threading.Condition()
        self.answers: list[dict[str, object]] = []
        self.events: list[str] = []
        self.powered_off = False
        self.closed = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.perf_counter() + timeout
        while True:  # QEMU creates the socket early in its start-up
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.002)
        self.reader = threading.Thread(target=self._read, name="psci-qmp", daemon=True)
        self.reader.start()
        self._wait(lambda: bool(self.answers), "the QMP greeting")
        self.answers.clear()
        self.execute("qmp_capabilities")

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    self._take(json.loads(line))
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _take(self, msg: object) -> None:
        if not isinstance(msg, dict):
            return
        with self.cond:
            if "event" in msg:
                name = str(msg["event"])
                self.events.append(name)
                data = msg.get("data")
                if name == "SHUTDOWN" and isinstance(data, dict) and data.get("guest"):
                    self.powered_off = True
            else:  # the greeting, a return or an error
                self.answers.append(msg)
            self.cond.notify_all()

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: done() or self.closed, self.timeout):
                raise MachineError(f"QMP: no {what} within {self.timeout} s")
            if not done():
                raise MachineError(f"QMP: QEMU closed the socket before {what}")

    def execute(self, command: str) -> None:
        """Run ``command`` (no arguments) and wait for its answer; MachineError on an
        ``error``."""
        with self.cond:
            self.answers.clear()
        self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        self._wait(lambda: bool(self.answers), f"answer to {command}")
        with self.cond:
            msg = self.answers.pop(0)
        if "error" in msg:
            raise MachineError(f"QMP {command}: {msg['error']}")

    def wait_event(self, name: str) -> None:
        """Wait for the event ``name`` (or take it from those already seen)."""
        self._wait(lambda: name in self.events, f"{name} event")
        with self.cond:
            self.events.remove(name)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.reader is not threading.current_thread():
            self.reader.join(timeout=5)


def _shm_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


# --- the machine ---------------------------------------------------------------------------------
class PsciMachine(GuestMachine[_Resources]):
    """One QEMU ``virt`` machine running the PSCI agent on ``cpus`` vCPUs (1..8).

    ``with PsciMachine(cpus=2) as m: m.call(0, [0x8400_0000])`` starts it (building the
    agent unless ``agent`` names an ELF) and always stops it.  CPU indices are
    MPIDR_EL1.Aff0 (QEMU's CPU index); CPU 0 boots, the others wait powered off for a
    CPU_ON naming one of :attr:`info` ``.trampolines`` (or ``.image_entry``).

    ``call_timeout`` bounds each :meth:`call` (override per call), ``boot_timeout`` the
    wait for the agent to be ready.  ``no_reboot`` passes ``-no-reboot`` (a SYSTEM_RESET
    then exits QEMU instead of rebooting the agent); ``extra_args`` are appended to QEMU's
    command line.

    ``spin_us`` and ``doze_us`` set how idle CPUs wait (see :meth:`set_idle`).

    ``no_shutdown`` passes ``-no-shutdown``: a SYSTEM_OFF stops QEMU instead of ending it
    (QMP reports it), calls report it as ``MachineExited(0)`` as when QEMU exits, and
    :meth:`reset` powers the board on again in milliseconds instead of a new QEMU.

    ``die_with_parent`` runs QEMU under ``setpriv --pdeathsig KILL`` (when
    util-linux's setpriv is installed), so that QEMU does not outlive this process if it
    is SIGKILLed (a spinning orphan would hold host cores); the kernel sends the signal
    when the *thread* that started the machine exits, so pass False when a short-lived
    thread starts a machine that must outlive it.  Not thread-safe: one caller drives a
    machine.
    """

    # calls to different CPUs may be made from different threads at once (one mailbox
    # page per CPU): conformance.firmware_target releases them together
    calls_at_once = True

    def __init__(self, cpus: int = 2, *, call_timeout: float = 1.0, boot_timeout: float = 10.0,
                 qemu: str = "qemu-system-aarch64", agent: str | os.PathLike[str] | None = None,
                 no_reboot: bool = False, extra_args: Sequence[str] = (),
                 die_with_parent: bool = True, spin_us: int = 2000,
                 doze_us: int = 1000, no_shutdown: bool = False) -> None:
        super().__init__(cpus, call_timeout=call_timeout, boot_timeout=boot_timeout, qemu=qemu,
                         no_reboot=no_reboot, extra_args=extra_args,
                         die_with_parent=die_with_parent)
        self.agent = Path(agent) if agent is not None else None
        self.no_shutdown = no_shutdown
        self._idle = self._check_idle(spin_us, doze_us)
        self._pending: dict[int, tuple[int, int]] = {}  # cpu -> (req_seq, boot_count)
        self.resets = 0  # reset() calls since start()
        self.reset_seconds: float | None = None  # the latest reset()

    # lifecycle
    def command(self, agent: Path, shm_path: Path, serial_log: Path) -> list[str]:
        """QEMU's command line for this machine."""
        qmp = serial_log.with_name("qmp.sock")
        for p in (shm_path, serial_log, qmp):
            if "," in str(p):
                raise MachineError(f"path not usable in a QEMU option (has a comma): {p}")
        return [*parent_death_wrapper(self.die_with_parent), self.qemu,
                "-M", "virt,virtualization=off,secure=off,gic-version=3,memory-backend=ram0",
                "-object", f"memory-backend-file,id=ram0,size={RAM_SIZE >> 20}M,"
                           f"mem-path={shm_path},share=on",
                "-cpu", "cortex-a57", "-smp", str(self.cpus), "-m", f"{RAM_SIZE >> 20}M",
                "-display", "none", "-nodefaults", "-no-user-config",
                "-serial", f"file:{serial_log}",
                "-qmp", f"unix:{qmp},server=on,wait=off",
                *(["-no-reboot"] if self.no_reboot else []),
                *(["-no-shutdown"] if self.no_shutdown else []),
                "-kernel", str(agent), *self.extra_args]

    def start(self) -> None:
        """Launch QEMU and wait until the agent serves on CPU 0.  Raises
        :class:`MachineBootError` (with QEMU's stderr and serial log tails) when it cannot;
        nothing is left behind then."""
        if self._run is not None and self._run.words is not None:
            raise MachineError("the machine is already started (stop() or restart() it)")
        if sys.byteorder != "little":  # the mailbox words are read in native order
            raise MachineError("the QEMU PSCI driver needs a little-endian host")
        agent = self.agent if self.agent is not None else build_agent()
        if not agent.is_file():
            raise MachineBootError(f"no agent image at {agent}")
        if qemu_missing(self.qemu):
            raise MachineBootError(f"QEMU not found: {self.qemu}")
        tmpdir = Path(tempfile.mkdtemp(prefix="pvspec-qemu-psci-"))
        res = _Resources(tmpdir, _shm_dir() / f"pvspec-psci-{os.getpid()}-{uuid.uuid4().hex}")
        self._begin_run(res)
        assert self._finalizer is not None
        self._pending.clear()
        self.boot_seconds = self.reset_seconds = None
        self.resets = 0
        try:
            fd = os.open(res.shm_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, RAM_SIZE)
                res.mm = mmap.mmap(fd, _MAP_SIZE, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=_MAP_OFFSET)
            finally:
                os.close(fd)
            res.view = memoryview(res.mm)
            res.words = res.view.cast("Q")
            res.words[_I_CFG_SPIN_US], res.words[_I_CFG_DOZE_US] = self._idle
            self._argv = self.command(agent, res.shm_path, res.serial_log)
            t0 = time.perf_counter()
            with open(res.stderr_log, "wb") as err:
                res.proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL, stdout=err,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            self._wait_ready(t0)
            res.unlink_shm()  # QEMU and this process keep their mappings
            if self.no_shutdown:  # a SYSTEM_OFF is seen as QMP's SHUTDOWN event
                res.qmp = _Qmp(res.qmp_path, self.boot_timeout)
        except BaseException as exc:
            self._finalizer()
            self._run = None
            if isinstance(exc, OSError):
                raise MachineBootError(f"cannot start QEMU: {exc}"
                                       f"{res.logs_text()}") from exc
            raise

    def _wait_ready(self, t0: float) -> None:
        res = self._run
        assert res is not None and res.proc is not None and res.words is not None
        w = res.words
        deadline = t0 + self.boot_timeout
        cpu0 = (MAILBOX_BASE - INFO_ADDR) // 8
        while True:
            status = exit_status(res.proc)
            if status is not None:
                self._boot_failed(f"QEMU exited with status {status} before the agent was "
                                  f"ready")
            if (w[I_MAGIC] == INFO_MAGIC and w[cpu0 + _W_MAGIC] == _MBOX_MAGIC
                    and w[cpu0 + _W_BOOT_COUNT] >= 1 and w[cpu0 + _W_STATE] in SERVING):
                break
            if time.perf_counter() > deadline:
                self._boot_failed(f"the agent was not ready within {self.boot_timeout} s")
            time.sleep(0.002)
        self.boot_seconds = time.perf_counter() - t0
        if w[I_VERSION] != LAYOUT_VERSION:
            self._boot_failed(f"the agent's mailbox layout is version {w[I_VERSION]}, this "
                              f"driver's {LAYOUT_VERSION} (rebuild the agent)")
        self._info = self._read_info()

    def reset(self) -> None:
        """A machine reset of the running QEMU, as cheap as a fresh machine is exact:
        QMP ``stop`` (every vCPU thread halts; a CPU_ON that QEMU queued for a vCPU but
        that vCPU has not taken yet runs now, so it cannot start that vCPU after the
        reset), ``system_reset`` (QEMU's board reset: every vCPU's reset state, the
        secondaries powered off as at launch, vCPU 0 at the image entry, the devices
        reset, the agent image reloaded), the ``RESET`` event, then ``cont``; returns once
        the agent serves again on vCPU 0 after its cold boot, which marks every other
        mailbox OFF.  Afterwards no call is pending and every secondary is OFF; what
        RAM keeps is the mailboxes' boot counts (they grow by one per start, as across a
        guest SYSTEM_RESET) and the idle settings.  Milliseconds instead of a new QEMU.

        Raises :class:`MachineNotRunning` if the machine is not started,
        :class:`MachineError` if QEMU is not running, was started with ``no_reboot``
        (QEMU would exit), or does not come back within ``boot_timeout`` (the machine is
        then unusable: :meth:`restart` it)."""
        res = self._run
        if res is None or res.words is None or res.proc is None:
            raise MachineNotRunning("the machine has not been started")
        if self.no_reboot:
            raise MachineError("a machine with no_reboot cannot be reset (QEMU would exit)")
        if not self.process_alive:
            raise MachineError(f"QEMU is not running (status {self.exit_status})")
        w = res.words
        cpu0 = (MAILBOX_BASE - INFO_ADDR) // 8
        cold, boot0 = w[I_COLD_BOOTS], w[cpu0 + _W_BOOT_COUNT]
        t0 = time.perf_counter()
        try:
            if res.qmp is None:
                res.qmp = _Qmp(res.qmp_path, self.boot_timeout)
            res.qmp.execute("stop")
            res.qmp.execute("system_reset")
            res.qmp.wait_event("RESET")
            res.qmp.execute("cont")
        except (OSError, ValueError) as exc:
            raise MachineError(f"QMP: {exc}{res.logs_text()}") from exc
        with res.qmp.cond:
            res.qmp.powered_off = False
        self._pending.clear()
        self._insn.clear()
        deadline = t0 + self.boot_timeout
        while not (w[I_MAGIC] == INFO_MAGIC and w[I_COLD_BOOTS] != cold
                   and w[cpu0 + _W_BOOT_COUNT] != boot0 and w[cpu0 + _W_STATE] in SERVING
                   and w[cpu0 + _W_ACK_SEQ] == w[cpu0 + _W_REQ_SEQ]):
            if exit_status(res.proc) is not None or time.perf_counter() > deadline:
                raise MachineError(f"the agent did not serve again after the reset (QEMU "
                                   f"status {exit_status(res.proc)}){res.logs_text()}")
            time.sleep(_SLEEP_MAX)
        self._info = self._read_info()
        self.resets += 1
        self.reset_seconds = time.perf_counter() - t0

    def _refresh_before_stop(self) -> None:
        res = self._run
        if res is not None and res.words is not None and self._info is not None:
            with contextlib.suppress(Exception):
                self._info = self._read_info()

    def set_idle(self, spin_us: int, doze_us: int) -> None:
        """How idle CPUs wait for a request: poll for ``spin_us`` µs after their latest
        call, then doze in WFI woken by their virtual timer every ``doze_us`` µs (at most
        that much added latency to the next call; ``doze_us`` = 0: poll forever).  Dozing
        matters when there are more vCPUs than host cores: a polling vCPU holds a host
        core, and with more polling vCPUs than cores a request can wait for the kernel to
        schedule its vCPU.  The timer is off during calls (a CPU_SUSPEND is not woken by
        it).  Takes effect at once (the agent reads it whenever idle) and across restarts."""
        self._idle = self._check_idle(spin_us, doze_us)
        w = self._words()
        if w is not None:
            w[_I_CFG_SPIN_US], w[_I_CFG_DOZE_US] = self._idle

    @property
    def process_alive(self) -> bool:
        """QEMU's process runs (with ``no_shutdown``, also once the guest powered off)."""
        res = self._run
        return (res is not None and res.proc is not None and res.words is not None
                and exit_status(res.proc) is None)

    @property
    def powered_off(self) -> bool:
        """With ``no_shutdown``: the guest powered the board off (SYSTEM_OFF), QEMU stopped
        but runs on, until :meth:`reset`."""
        res = self._run
        return res is not None and res.qmp is not None and res.qmp.powered_off

    @property
    def alive(self) -> bool:
        """QEMU is running and the board is powered on."""
        return self.process_alive and not self.powered_off

    def _exited(self) -> MachineExited | None:
        """As for every machine, and with ``no_shutdown`` a powered-off board reads as
        QEMU's exit with status 0 would (a SYSTEM_OFF)."""
        exited = super()._exited()
        if exited is None and self.powered_off:
            return MachineExited(0, False)
        return exited

    @property
    def shm_path(self) -> Path | None:
        """The RAM file's path (unlinked once the agent was ready)."""
        return self._run.shm_path if self._run is not None else None

    @property
    def serial_output(self) -> str:
        """The tail of the guest's serial output."""
        res = self._run
        if res is None:
            return ""
        return res.serial_text if res.words is None else log_tail(res.serial_log)

    def _refresh_info(self) -> None:
        if self._run is not None and self._run.words is not None and self._info is not None:
            self._info = self._read_info()

    # mailboxes
    def _words(self) -> memoryview | None:
        return self._run.words if self._run is not None else None

    def _base(self, cpu: int) -> int:
        """The index of ``cpu``'s mailbox page in the mapped words (``cpu`` checked)."""
        return (MAILBOX_BASE - INFO_ADDR + self._check_cpu(cpu) * MAILBOX_STRIDE) // 8

    def _read_info(self) -> AgentInfo:
        w = self._words()
        assert w is not None
        return agent_info(w)

    def mailbox(self, cpu: int) -> Mailbox | None:
        """A raw snapshot of ``cpu``'s mailbox (None once the machine is stopped)."""
        base = self._base(cpu)
        w = self._words()
        if w is None:
            return None
        return Mailbox(magic_ok=w[base + _W_MAGIC] == _MBOX_MAGIC,
                       state=CpuState.of(w[base + _W_STATE]),
                       boot_count=w[base + _W_BOOT_COUNT], req_seq=w[base + _W_REQ_SEQ],
                       ack_seq=w[base + _W_ACK_SEQ], calls=w[base + _W_CALLS],
                       heartbeat=w[base + _W_HEARTBEAT], exc_count=w[base + _W_EXC_COUNT],
                       dozes=w[base + _W_DOZES])

    def started(self, cpu: int) -> StartRecord | None:
        """``cpu``'s latest start, None if it never started (or the machine is stopped).
        Whether it is still on is :meth:`serving`."""
        base = self._base(cpu)
        w = self._words()
        if w is None or w[base + _W_MAGIC] != _MBOX_MAGIC:
            return None
        for _ in range(100):  # a consistent record: boot_count unchanged across the reads
            count = w[base + _W_BOOT_COUNT]
            entry, context, mpidr = (w[base + _W_ENTRY], w[base + _W_CONTEXT],
                                     w[base + _W_MPIDR])
            if count == 0:
                return None
            if w[base + _W_BOOT_COUNT] == count:
                break
        return start_record(count, entry, context, mpidr)

    def serving(self, cpu: int) -> bool:
        """``cpu`` polls its mailbox: a call would be executed now."""
        base = self._base(cpu)
        w = self._words()
        return (w is not None and self.alive and w[base + _W_MAGIC] == _MBOX_MAGIC
                and w[base + _W_STATE] in SERVING
                and w[base + _W_ACK_SEQ] == w[base + _W_REQ_SEQ])

    def wait_started(self, cpu: int, after_boot_count: int = 0,
                     timeout: float | None = None) -> StartRecord | None:
        """Wait until ``cpu`` has started more than ``after_boot_count`` times (pass
        ``started(cpu).boot_count`` from before the CPU_ON) and return that start, or None
        after ``timeout`` s (default ``call_timeout``) or if QEMU exits.  A returned start is
        already serving (the guest bumps boot_count last)."""
        self._check_cpu(cpu)
        deadline = time.perf_counter() + (self.call_timeout if timeout is None else timeout)
        delay = _SLEEP_MIN
        while True:
            rec = self.started(cpu)
            if rec is not None and rec.boot_count > after_boot_count:
                return rec
            if not self.alive or time.perf_counter() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, _SLEEP_MAX)

    # calls
    def call(self, cpu: int, regs: Sequence[int], timeout: float | None = None, *,
             insn: Insn = Insn.HVC) -> CallOutcome:
        """Have ``cpu`` execute ``HVC #0`` (or ``insn``) with x0..x7 = ``regs`` (missing
        ones 0) and report what happened (see :data:`CallOutcome`).  ``timeout`` (default
        ``call_timeout``) bounds the wait for the answer."""
        insn, args = self._call_args(cpu, regs, insn)
        base = self._base(cpu)
        exited = self._exited()
        if exited is not None:
            return exited
        w = self._words()
        assert w is not None
        state = w[base + _W_STATE]
        boot = w[base + _W_BOOT_COUNT]
        seq = w[base + _W_REQ_SEQ]
        if (w[base + _W_MAGIC] != _MBOX_MAGIC or state not in SERVING
                or w[base + _W_ACK_SEQ] != seq):
            return NotServing(CpuState.of(state), boot)
        w[base + _W_IN:base + _W_IN + 8] = array.array("Q", args)
        w[base + _W_INSN] = insn
        self._insn[cpu] = insn
        seq = (seq + 1) & MASK64
        w[base + _W_REQ_SEQ] = seq  # after the arguments: the guest reads them after this
        return self._await(cpu, base, seq, boot,
                           self.call_timeout if timeout is None else timeout)

    def wait_pending(self, cpu: int, timeout: float | None = None) -> CallOutcome | None:
        """Keep waiting for the answer to ``cpu``'s last call that ended in a
        :class:`NoReturn` without a restart (a suspend woken later); None if there is no
        such call."""
        base = self._base(cpu)
        pending = self._pending.get(cpu)
        if pending is None:
            return None
        exited = self._exited()
        if exited is not None:
            return exited
        seq, boot = pending
        return self._await(cpu, base, seq, boot,
                           self.call_timeout if timeout is None else timeout)

    def _await(self, cpu: int, base: int, seq: int, boot: int, timeout: float) -> CallOutcome:
        res = self._run
        w = self._words()
        assert res is not None and res.proc is not None and w is not None
        proc = res.proc
        self._pending.pop(cpu, None)
        start = time.perf_counter()
        spin_until = start + _SPIN
        deadline = start + timeout
        delay = _SLEEP_MIN
        ack_i, state_i, boot_i = base + _W_ACK_SEQ, base + _W_STATE, base + _W_BOOT_COUNT
        while True:
            if w[ack_i] == seq:
                state = w[state_i]
                if w[boot_i] != boot:
                    return NoReturn(CpuState.of(state), restarted=True)
                if state == CpuState.DONE:
                    return Returned(tuple(w[base + _W_OUT:base + _W_OUT + 8]))
                if state == CpuState.EXCEPTION:
                    elr = w[base + _W_ELR]
                    return Raised(esr=w[base + _W_ESR], elr=elr, far=w[base + _W_FAR],
                                  vector=w[base + _W_EXC_VECTOR],
                                  at_call=elr == self._insn_addr(cpu))
                # ack == seq in another state: the CPU is restarting (it voids old
                # requests before bumping boot_count); the check above sees it next.
            elif w[boot_i] != boot:
                return NoReturn(CpuState.of(w[state_i]), restarted=True)
            now = time.perf_counter()
            if now >= spin_until:
                status = exit_status(proc)
                if status is not None:
                    return MachineExited(status, False)
                if self.powered_off:
                    return MachineExited(0, False)
                if now >= deadline:
                    self._pending[cpu] = (seq, boot)
                    return NoReturn(CpuState.of(w[state_i]))
                time.sleep(delay)
                delay = min(delay * 2, _SLEEP_MAX)

