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
import enum
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import attrs

from conformance.results import clip_text

__all__ = [
    "ENTRY_IMAGE",
    "INFO_ADDR",
    "MAILBOX_BASE",
    "MAILBOX_STRIDE",
    "MAX_CPUS",
    "RAM_BASE",
    "RAM_SIZE",
    "AgentBuildError",
    "AgentInfo",
    "CallOutcome",
    "CpuState",
    "Insn",
    "MachineBootError",
    "MachineError",
    "MachineExited",
    "MachineNotRunning",
    "Mailbox",
    "NoReturn",
    "NotServing",
    "PsciMachine",
    "Raised",
    "Returned",
    "StartRecord",
    "agent_dir",
    "build_agent",
]

# --- guest memory map (mirrors guests/psci/agent.c and link.ld) ----------------------------------
RAM_BASE = 0x4000_0000
RAM_SIZE = 128 << 20
INFO_ADDR = 0x47F0_0000
MAILBOX_BASE = 0x47F0_1000
MAILBOX_STRIDE = 0x1000
MAX_CPUS = 8
LAYOUT_VERSION = 1
ENTRY_IMAGE = -1  # StartRecord.entry_index of a start at the image entry point (_start)
_MAP_OFFSET = INFO_ADDR - RAM_BASE  # the host maps [INFO_ADDR, INFO_ADDR + _MAP_SIZE)
_MAP_SIZE = 0x10000
_INFO_MAGIC = int.from_bytes(b"VPSCINFO", "little")
_MBOX_MAGIC = int.from_bytes(b"VPSCIMBX", "little")
_MASK64 = (1 << 64) - 1

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

# info page word indices
_I_MAGIC = 0
_I_VERSION = 1
_I_MAX_CPUS = 2
_I_MBOX_BASE = 3
_I_MBOX_STRIDE = 4
_I_N_TRAMPOLINES = 5
_I_TRAMPOLINES = 6
_I_IMAGE_ENTRY = 14
_I_HVC_INSN = 15
_I_VECTORS = 16
_I_COLD_BOOTS = 17
_I_BOOT_MPIDR = 18
_I_CURRENT_EL = 19
_I_SMC_INSN = 20
_I_UDF_INSN = 21
_I_CNTFRQ = 22
_I_CFG_SPIN_US = 32  # host-written
_I_CFG_DOZE_US = 33

_SPIN = 0.0005  # seconds of busy polling before sleeping between polls
_SLEEP_MIN = 0.00005
_SLEEP_MAX = 0.001
_LOG_TAIL = 4000  # characters of a log quoted in an error


class CpuState(enum.IntEnum):
    """A mailbox's ``state`` word, as the guest wrote it."""

    OFF = 0  # never started since the last cold boot (or off after a machine reset)
    READY = 1  # started and polling; no call served since
    IN_CALL = 2  # inside the call; stays so after CPU_OFF or a suspend that never returns
    DONE = 3  # polling; the last call returned
    EXCEPTION = 4  # polling; the last call took an exception

    @classmethod
    def of(cls, word: int) -> CpuState | int:
        """The state for ``word``, or the raw word when the guest wrote something else."""
        try:
            return cls(word)
        except ValueError:
            return word


_SERVING = (CpuState.READY, CpuState.DONE, CpuState.EXCEPTION)


class Insn(enum.IntEnum):
    """The instruction a call executes with x0..x7 loaded."""

    HVC = 0  # HVC #0: QEMU's PSCI conduit
    SMC = 1  # SMC #0 (EL3 is off: expected to UNDEF)
    UDF = 2  # UDF #0: always UNDEF, a self-test of the agent's exception path


# --- errors --------------------------------------------------------------------------------------
class MachineError(Exception):
    """Every error this module raises."""


class AgentBuildError(MachineError):
    """``make -C guests/psci`` failed or could not run; the message holds its output."""


class MachineBootError(MachineError):
    """QEMU could not be started, exited, or the agent did not become ready in time; the
    message holds the tails of QEMU's stderr and of the serial log."""


class MachineNotRunning(MachineError):
    """The machine was never started (a call needs a started machine)."""


# --- records -------------------------------------------------------------------------------------
@attrs.frozen
class Returned:
    """The call returned: x0..x7 as they were right after it."""

    regs: tuple[int, ...]


@attrs.frozen
class Raised:
    """The call took a synchronous exception to EL1 (the agent resumed after it).
    ``vector`` is the exception vector entry index (offset / 0x80: 4 = synchronous from the
    current EL with SP_ELx); ``at_call`` says ELR is the call instruction itself (the
    agent's HVC, SMC or UDF, whichever the call executed)."""

    esr: int
    elr: int
    far: int
    vector: int
    at_call: bool

    @property
    def ec(self) -> int:
        """ESR_EL1.EC (0 = unknown reason: an UNDEF)."""
        return (self.esr >> 26) & 0x3F


@attrs.frozen
class NoReturn:
    """No answer within the timeout (``restarted`` False: CPU_OFF, a suspend nothing
    wakes, a hang), or the CPU started again during the call (``restarted`` True, e.g.
    SYSTEM_RESET rebooted the machine).  ``state`` is the mailbox state at that moment.
    A late answer can still be collected with :meth:`PsciMachine.wait_pending`."""

    state: CpuState | int
    restarted: bool = False


@attrs.frozen
class MachineExited:
    """QEMU is not running: it exited by itself (``by_host`` False; SYSTEM_OFF exits with
    status 0) or :meth:`PsciMachine.stop` ended it (``by_host`` True).  ``status`` is the
    return code (negative: killed by that signal), None if unknown."""

    status: int | None
    by_host: bool = False


@attrs.frozen
class NotServing:
    """The CPU's mailbox is not polling, so nothing was sent: the CPU is off, was never
    started, or is still inside an earlier call (``state`` says which)."""

    state: CpuState | int
    boot_count: int


CallOutcome = Returned | Raised | NoReturn | MachineExited | NotServing


@attrs.frozen
class StartRecord:
    """The latest start of a CPU: ``boot_count`` starts so far (since the machine was
    launched; a machine reset does not clear it), where it started (a trampoline index,
    or :data:`ENTRY_IMAGE` for the image entry point, which the boot CPU takes at every
    cold boot) and x0 as it received it there (the CPU_ON context id)."""

    boot_count: int
    entry_index: int
    context: int
    mpidr: int


@attrs.frozen
class Mailbox:
    """A raw snapshot of one CPU's mailbox, for diagnostics and liveness checks
    (``heartbeat`` grows while the CPU polls)."""

    magic_ok: bool
    state: CpuState | int
    boot_count: int
    req_seq: int
    ack_seq: int
    calls: int
    heartbeat: int
    exc_count: int
    dozes: int  # WFI dozes since the CPU's latest start


@attrs.frozen
class AgentInfo:
    """The agent's info page plus the machine constants."""

    version: int
    max_cpus: int
    mailbox_base: int
    mailbox_stride: int
    trampolines: tuple[int, ...]  # CPU_ON entry points; trampoline i records entry_index i
    image_entry: int  # _start: a CPU_ON there records entry_index ENTRY_IMAGE
    hvc_insn: int  # addresses of the agent's HVC, SMC and UDF instructions
    smc_insn: int
    udf_insn: int
    vectors: int  # VBAR_EL1 of every CPU
    cold_boots: int  # the boot CPU's cold boots (1 + machine resets so far)
    boot_mpidr: int
    current_el: int  # the exception level the agent runs at (1)
    cntfrq: int  # the generic timer's frequency (Hz)
    ram_base: int = RAM_BASE
    ram_size: int = RAM_SIZE
    info_addr: int = INFO_ADDR


# --- building the agent --------------------------------------------------------------------------
def agent_dir() -> Path:
    """``guests/psci`` of this checkout."""
    return Path(__file__).resolve().parents[1] / "guests" / "psci"


def build_agent(force: bool = False) -> Path:
    """Build (``make -C guests/psci``; ``force`` rebuilds with ``-B``) and return the path
    of ``agent.elf``.  Make does nothing when it is up to date.  The cross compiler is
    ``aarch64-linux-gnu-gcc`` unless ``CROSS`` is set in the environment.
    :class:`AgentBuildError` carries make's output when it fails."""
    src = agent_dir()
    make = shutil.which("make")
    if make is None:
        raise AgentBuildError("cannot build the PSCI agent: no `make` on PATH")
    cross = os.environ.get("CROSS", "aarch64-linux-gnu-")
    if shutil.which(cross + "gcc") is None:
        raise AgentBuildError(f"cannot build the PSCI agent: no {cross}gcc on PATH")
    argv = [make, "-C", str(src), *(["-B"] if force else [])]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentBuildError(f"cannot build the PSCI agent ({' '.join(argv)}): {exc}") from exc
    elf = src / "build" / "agent.elf"
    if proc.returncode != 0 or not elf.is_file():
        raise AgentBuildError(f"building the PSCI agent failed ({' '.join(argv)}, status "
                              f"{proc.returncode}):\n"
                              f"{clip_text(proc.stderr + proc.stdout, _LOG_TAIL)}")
    return elf


# --- process and resource handling ---------------------------------------------------------------
def _exit_status(proc: subprocess.Popen[bytes]) -> int | None:
    """QEMU's return code once it has exited (None while it runs), without reaping it:
    while it is an unreaped zombie its process group id cannot be reused, so killing the
    group later cannot hit another process."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll()
    if info is None:
        return None
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status  # CLD_KILLED / CLD_DUMPED: the signal


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return clip_text(data[-(_LOG_TAIL * 4):].decode("utf-8", "replace"), _LOG_TAIL)


class _Resources:
    """Everything one QEMU run holds, owned by a :func:`weakref.finalize` (which must not
    reference the machine itself)."""

    def __init__(self, tmpdir: Path, shm_path: Path) -> None:
        self.tmpdir = tmpdir
        self.shm_path = shm_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.mm: mmap.mmap | None = None
        self.view: memoryview | None = None
        self.words: memoryview | None = None
        self.status: int | None = None
        self.serial_text = ""
        self.stderr_text = ""

    @property
    def serial_log(self) -> Path:
        return self.tmpdir / "serial.log"

    @property
    def stderr_log(self) -> Path:
        return self.tmpdir / "qemu-stderr.log"

    def unlink_shm(self) -> None:
        with contextlib.suppress(OSError):
            self.shm_path.unlink()


def _release(res: _Resources) -> None:
    """End QEMU's process group, reap it, unmap and unlink the RAM file, keep the logs'
    text and remove the temporary directory.  Safe to call on any partial state."""
    proc = res.proc
    if proc is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
        with contextlib.suppress(OSError):
            proc.kill()  # in case QEMU left its group
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        res.status = proc.returncode
    for view in (res.words, res.view):
        if view is not None:
            with contextlib.suppress(Exception):
                view.release()
    res.words = res.view = None
    if res.mm is not None:
        with contextlib.suppress(Exception):
            res.mm.close()
        res.mm = None
    res.unlink_shm()
    if res.tmpdir.exists():
        res.serial_text = _tail(res.serial_log)
        res.stderr_text = _tail(res.stderr_log)
        shutil.rmtree(res.tmpdir, ignore_errors=True)


def _shm_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


# --- the machine ---------------------------------------------------------------------------------
class PsciMachine:
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
                 doze_us: int = 1000) -> None:
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus must be 1..{MAX_CPUS}, not {cpus}")
        self.cpus = cpus
        self.call_timeout = call_timeout
        self.boot_timeout = boot_timeout
        self.qemu = qemu
        self.agent = Path(agent) if agent is not None else None
        self.no_reboot = no_reboot
        self.extra_args = tuple(extra_args)
        self.die_with_parent = die_with_parent
        self._idle = self._check_idle(spin_us, doze_us)
        self.boot_seconds: float | None = None  # launch to agent ready, of the latest start
        self._res: _Resources | None = None
        self._finalizer: weakref.finalize | None = None
        self._stopped_by_host = False
        self._info: AgentInfo | None = None
        self._pending: dict[int, tuple[int, int]] = {}  # cpu -> (req_seq, boot_count)
        self._argv: list[str] = []
        self._insn: dict[int, Insn] = {}  # cpu -> the instruction of its latest call

    # context manager
    def __enter__(self) -> PsciMachine:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # lifecycle
    def command(self, agent: Path, shm_path: Path, serial_log: Path) -> list[str]:
        """QEMU's command line for this machine."""
        for p in (shm_path, serial_log):
            if "," in str(p):
                raise MachineError(f"path not usable in a QEMU option (has a comma): {p}")
        wrapper: list[str] = []
        if self.die_with_parent:
            setpriv = shutil.which("setpriv")
            if setpriv is not None:
                wrapper = [setpriv, "--pdeathsig", "KILL", "--"]
        return [*wrapper, self.qemu,
                "-M", "virt,virtualization=off,secure=off,gic-version=3,memory-backend=ram0",
                "-object", f"memory-backend-file,id=ram0,size={RAM_SIZE >> 20}M,"
                           f"mem-path={shm_path},share=on",
                "-cpu", "cortex-a57", "-smp", str(self.cpus), "-m", f"{RAM_SIZE >> 20}M",
                "-display", "none", "-nodefaults", "-no-user-config",
                "-serial", f"file:{serial_log}",
                *(["-no-reboot"] if self.no_reboot else []),
                "-kernel", str(agent), *self.extra_args]

    def start(self) -> None:
        """Launch QEMU and wait until the agent serves on CPU 0.  Raises
        :class:`MachineBootError` (with QEMU's stderr and serial log tails) when it cannot;
        nothing is left behind then."""
        if self._res is not None and self._res.words is not None:
            raise MachineError("the machine is already started (stop() or restart() it)")
        if sys.byteorder != "little":  # the mailbox words are read in native order
            raise MachineError("the QEMU PSCI driver needs a little-endian host")
        agent = self.agent if self.agent is not None else build_agent()
        if not agent.is_file():
            raise MachineBootError(f"no agent image at {agent}")
        if shutil.which(self.qemu) is None and not Path(self.qemu).is_file():
            raise MachineBootError(f"QEMU not found: {self.qemu}")
        tmpdir = Path(tempfile.mkdtemp(prefix="pvspec-qemu-psci-"))
        res = _Resources(tmpdir, _shm_dir() / f"pvspec-psci-{os.getpid()}-{uuid.uuid4().hex}")
        self._res = res
        self._finalizer = weakref.finalize(self, _release, res)
        self._stopped_by_host = False
        self._info = None
        self._pending.clear()
        self.boot_seconds = None
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
        except BaseException as exc:
            self._finalizer()
            self._res = None
            if isinstance(exc, OSError):
                raise MachineBootError(f"cannot start QEMU: {exc}"
                                       f"{self._logs_text(res)}") from exc
            raise

    def _wait_ready(self, t0: float) -> None:
        res = self._res
        assert res is not None and res.proc is not None and res.words is not None
        w = res.words
        deadline = t0 + self.boot_timeout
        cpu0 = (MAILBOX_BASE - INFO_ADDR) // 8
        while True:
            status = _exit_status(res.proc)
            if status is not None:
                self._boot_failed(f"QEMU exited with status {status} before the agent was "
                                  f"ready")
            if (w[_I_MAGIC] == _INFO_MAGIC and w[cpu0 + _W_MAGIC] == _MBOX_MAGIC
                    and w[cpu0 + _W_BOOT_COUNT] >= 1 and w[cpu0 + _W_STATE] in _SERVING):
                break
            if time.perf_counter() > deadline:
                self._boot_failed(f"the agent was not ready within {self.boot_timeout} s")
            time.sleep(0.002)
        self.boot_seconds = time.perf_counter() - t0
        if w[_I_VERSION] != LAYOUT_VERSION:
            self._boot_failed(f"the agent's mailbox layout is version {w[_I_VERSION]}, this "
                              f"driver's {LAYOUT_VERSION} (rebuild the agent)")
        self._info = self._read_info()

    def _boot_failed(self, why: str) -> None:
        res = self._res
        assert res is not None and self._finalizer is not None
        self._finalizer()  # ends QEMU first, so its logs are complete
        self._res = None
        raise MachineBootError(f"{why}\ncommand: {' '.join(self._argv)}{self._logs_text(res)}")

    @staticmethod
    def _logs_text(res: _Resources) -> str:
        err = res.stderr_text or _tail(res.stderr_log)
        ser = res.serial_text or _tail(res.serial_log)
        return (f"\n--- QEMU stderr (tail) ---\n{err or '(empty)'}"
                f"\n--- serial log (tail) ---\n{ser or '(empty)'}")

    def stop(self) -> None:
        """Kill QEMU's process group, unmap and remove the RAM file and the temporary
        directory.  Idempotent; the logs' text stays readable."""
        res = self._res
        if res is None or self._finalizer is None:
            return
        if res.words is not None and self._info is not None:
            with contextlib.suppress(Exception):
                self._info = self._read_info()
        if res.proc is not None and _exit_status(res.proc) is None:
            self._stopped_by_host = True
        self._finalizer()

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` a fresh machine (new RAM, new logs)."""
        self.stop()
        self.start()

    @staticmethod
    def _check_idle(spin_us: int, doze_us: int) -> tuple[int, int]:
        for name, v in (("spin_us", spin_us), ("doze_us", doze_us)):
            if not isinstance(v, int) or not 0 <= v <= 10_000_000:
                raise ValueError(f"{name} must be 0..10,000,000 microseconds, not {v!r}")
        return spin_us, doze_us

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
    def alive(self) -> bool:
        """QEMU is running."""
        res = self._res
        return (res is not None and res.proc is not None and res.words is not None
                and _exit_status(res.proc) is None)

    @property
    def exit_status(self) -> int | None:
        """QEMU's return code once it has exited (None while running or never started)."""
        res = self._res
        if res is None or res.proc is None:
            return None
        return res.status if res.status is not None else _exit_status(res.proc)

    @property
    def pgid(self) -> int | None:
        """QEMU's process group id (its pid), None if never started."""
        res = self._res
        return res.proc.pid if res is not None and res.proc is not None else None

    @property
    def shm_path(self) -> Path | None:
        """The RAM file's path (unlinked once the agent was ready)."""
        return self._res.shm_path if self._res is not None else None

    @property
    def serial_output(self) -> str:
        """The tail of the guest's serial output."""
        res = self._res
        if res is None:
            return ""
        return res.serial_text if res.words is None else _tail(res.serial_log)

    @property
    def qemu_stderr(self) -> str:
        """The tail of QEMU's stderr/stdout."""
        res = self._res
        if res is None:
            return ""
        return res.stderr_text if res.words is None else _tail(res.stderr_log)

    @property
    def info(self) -> AgentInfo:
        """The info page (trampoline addresses, mailbox base, ...), read afresh while the
        machine runs (``cold_boots`` grows at a machine reset)."""
        if self._res is not None and self._res.words is not None and self._info is not None:
            self._info = self._read_info()
        if self._info is None:
            raise MachineNotRunning("the machine has not been started")
        return self._info

    # mailboxes
    def _words(self) -> memoryview | None:
        return self._res.words if self._res is not None else None

    def _check_cpu(self, cpu: int) -> int:
        if not isinstance(cpu, int) or not 0 <= cpu < self.cpus:
            raise ValueError(f"cpu must be 0..{self.cpus - 1}, not {cpu!r}")
        return (MAILBOX_BASE - INFO_ADDR + cpu * MAILBOX_STRIDE) // 8

    def _read_info(self) -> AgentInfo:
        w = self._words()
        assert w is not None
        n = min(w[_I_N_TRAMPOLINES], 8)
        return AgentInfo(version=w[_I_VERSION], max_cpus=w[_I_MAX_CPUS],
                         mailbox_base=w[_I_MBOX_BASE], mailbox_stride=w[_I_MBOX_STRIDE],
                         trampolines=tuple(w[_I_TRAMPOLINES + i] for i in range(n)),
                         image_entry=w[_I_IMAGE_ENTRY], hvc_insn=w[_I_HVC_INSN],
                         smc_insn=w[_I_SMC_INSN], udf_insn=w[_I_UDF_INSN],
                         vectors=w[_I_VECTORS], cold_boots=w[_I_COLD_BOOTS],
                         boot_mpidr=w[_I_BOOT_MPIDR], current_el=w[_I_CURRENT_EL],
                         cntfrq=w[_I_CNTFRQ])

    def _insn_addr(self, cpu: int) -> int | None:
        info = self._info
        if info is None:
            return None
        return {Insn.HVC: info.hvc_insn, Insn.SMC: info.smc_insn,
                Insn.UDF: info.udf_insn}[self._insn.get(cpu, Insn.HVC)]

    def _exited(self) -> MachineExited | None:
        """A :class:`MachineExited` when QEMU is not running (never started: raises)."""
        res = self._res
        if res is None or res.proc is None:
            raise MachineNotRunning("the machine has not been started")
        if res.words is None:
            return MachineExited(res.status, self._stopped_by_host)
        status = _exit_status(res.proc)
        return None if status is None else MachineExited(status, False)

    def mailbox(self, cpu: int) -> Mailbox | None:
        """A raw snapshot of ``cpu``'s mailbox (None once the machine is stopped)."""
        base = self._check_cpu(cpu)
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
        base = self._check_cpu(cpu)
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
        entry_index = entry - (1 << 64) if entry >> 63 else entry
        return StartRecord(boot_count=count, entry_index=entry_index, context=context,
                           mpidr=mpidr)

    def serving(self, cpu: int) -> bool:
        """``cpu`` polls its mailbox: a call would be executed now."""
        base = self._check_cpu(cpu)
        w = self._words()
        return (w is not None and self.alive and w[base + _W_MAGIC] == _MBOX_MAGIC
                and w[base + _W_STATE] in _SERVING
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
        base = self._check_cpu(cpu)
        insn = Insn(insn)
        if len(regs) > 8:
            raise ValueError(f"at most 8 registers (x0..x7), got {len(regs)}")
        args = [*regs, *[0] * (8 - len(regs))]
        for i, v in enumerate(args):
            if not isinstance(v, int) or not 0 <= v <= _MASK64:
                raise ValueError(f"x{i} = {v!r} is not a 64-bit unsigned value")
        exited = self._exited()
        if exited is not None:
            return exited
        w = self._words()
        assert w is not None
        state = w[base + _W_STATE]
        boot = w[base + _W_BOOT_COUNT]
        seq = w[base + _W_REQ_SEQ]
        if (w[base + _W_MAGIC] != _MBOX_MAGIC or state not in _SERVING
                or w[base + _W_ACK_SEQ] != seq):
            return NotServing(CpuState.of(state), boot)
        w[base + _W_IN:base + _W_IN + 8] = array.array("Q", args)
        w[base + _W_INSN] = insn
        self._insn[cpu] = insn
        seq = (seq + 1) & _MASK64
        w[base + _W_REQ_SEQ] = seq  # after the arguments: the guest reads them after this
        return self._await(cpu, base, seq, boot,
                           self.call_timeout if timeout is None else timeout)

    def wait_pending(self, cpu: int, timeout: float | None = None) -> CallOutcome | None:
        """Keep waiting for the answer to ``cpu``'s last call that ended in a
        :class:`NoReturn` without a restart (a suspend woken later); None if there is no
        such call."""
        base = self._check_cpu(cpu)
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
        res = self._res
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
                status = _exit_status(proc)
                if status is not None:
                    return MachineExited(status, False)
                if now >= deadline:
                    self._pending[cpu] = (seq, boot)
                    return NoReturn(CpuState.of(w[state_i]))
                time.sleep(delay)
                delay = min(delay * 2, _SLEEP_MAX)

