"""What the two drivers of the PSCI guest agent share.

:mod:`conformance.qemu_psci` (QEMU's own PSCI, reached through a shared-RAM mailbox) and
:mod:`conformance.kvm_psci` (Linux KVM/arm64 under QEMU, reached through a line protocol on
the serial console) run the same agent (``guests/psci``) and report the same outcomes; only
the transport between this process and the agent's mailboxes differs.  What they have in
common lives here:

* the agent's memory map and info page (:data:`RAM_BASE`, the ``I_*`` word indices,
  :func:`agent_info`), its mailbox states (:class:`CpuState`, :data:`SERVING`) and the
  instructions a call can execute (:class:`Insn`);
* the records a machine reports (:data:`CallOutcome`, :class:`StartRecord`,
  :class:`Mailbox`, :class:`AgentInfo`) and the errors it raises (:class:`MachineError`);
* building guest code (:func:`run_make`);
* one QEMU process in its own session (:class:`QemuRun`: the kill of its process group and
  the reaping at cleanup, its logs kept in memory; :func:`exit_status` reads QEMU's status
  without reaping it);
* the line protocol of the inits that run inside a Linux guest (``guests/kvm-init``,
  ``guests/xen-dom0``): lines marked :data:`PROTOCOL_MARK` and checked with
  :func:`fnv1a`, read by :func:`parse_line`, and :class:`ConsoleRun`, a QEMU run whose
  console a thread reads for them (also used by :mod:`conformance.xen_machine`), and
  :class:`PortRun`, one that also has a virtio-serial port (the fast channel of both inits);
* :class:`GuestMachine`, the part of the machine API both drivers implement alike
  (lifecycle, the checks of a call's arguments, QEMU's status and logs).

Only the standard library and attrs (and :func:`conformance.results.clip_text`, itself of
the same kind) are imported here: nothing of the spec or of the oracle.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Generic, Never, Self, TypeVar

import attrs

from conformance.results import clip_text

# What each driver module (conformance.qemu_psci, conformance.kvm_psci) re-exports: the
# records and errors of the machine API, and the agent's memory map.
DRIVER_API = (
    "ENTRY_IMAGE",
    "INFO_ADDR",
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
    "Raised",
    "Returned",
    "StartRecord",
)

__all__ = [
    *DRIVER_API,
    "DRIVER_API",
    "INFO_MAGIC",
    "LAYOUT_VERSION",
    "LOG_TAIL",
    "MASK64",
    "PROTOCOL_MARK",
    "PortRun",
    "SERVING",
    "ConsoleRun",
    "GuestMachine",
    "QemuRun",
    "agent_info",
    "cross_prefix",
    "exit_status",
    "fnv1a",
    "guest_source",
    "log_tail",
    "parent_death_wrapper",
    "parse_line",
    "qemu_missing",
    "qemu_value",
    "run_make",
    "start_record",
    "virtio_port_args",
]

# --- the agent's memory map and info page (mirror guests/psci/agent.c and link.ld) ---------------
RAM_BASE = 0x4000_0000
RAM_SIZE = 128 << 20
INFO_ADDR = 0x47F0_0000
MAX_CPUS = 8
LAYOUT_VERSION = 1
ENTRY_IMAGE = -1  # StartRecord.entry_index of a start at the image entry point (_start)
INFO_MAGIC = int.from_bytes(b"VPSCINFO", "little")
MASK64 = (1 << 64) - 1
LOG_TAIL = 4000  # characters of a log quoted in an error or kept after a run

# info page word indices
I_MAGIC = 0
I_VERSION = 1
I_MAX_CPUS = 2
I_MBOX_BASE = 3
I_MBOX_STRIDE = 4
I_N_TRAMPOLINES = 5
I_TRAMPOLINES = 6
I_IMAGE_ENTRY = 14
I_HVC_INSN = 15
I_VECTORS = 16
I_COLD_BOOTS = 17
I_BOOT_MPIDR = 18
I_CURRENT_EL = 19
I_SMC_INSN = 20
I_UDF_INSN = 21
I_CNTFRQ = 22


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


SERVING = (CpuState.READY, CpuState.DONE, CpuState.EXCEPTION)  # states that take a request


class Insn(enum.IntEnum):
    """The instruction a call executes with x0..x7 loaded."""

    HVC = 0  # HVC #0: the hypervisor's PSCI conduit
    SMC = 1  # SMC #0 (EL3 is off: expected to UNDEF)
    UDF = 2  # UDF #0: always UNDEF, a self-test of the agent's exception path


# --- errors --------------------------------------------------------------------------------------
class MachineError(Exception):
    """Every error the machine drivers raise."""


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
    A late answer can still be collected with the machine's ``wait_pending``."""

    state: CpuState | int
    restarted: bool = False


@attrs.frozen
class MachineExited:
    """QEMU (or the VM) is not running: it exited by itself (``by_host`` False;
    SYSTEM_OFF exits with status 0) or the machine's ``stop`` ended it (``by_host`` True).
    ``status`` is the return code (negative: killed by that signal), None if unknown."""

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


def agent_info(w: Sequence[int]) -> AgentInfo:
    """The :class:`AgentInfo` of the info page's words ``w`` (indexed by the ``I_*``
    constants)."""
    n = min(w[I_N_TRAMPOLINES], 8)
    return AgentInfo(version=w[I_VERSION], max_cpus=w[I_MAX_CPUS],
                     mailbox_base=w[I_MBOX_BASE], mailbox_stride=w[I_MBOX_STRIDE],
                     trampolines=tuple(w[I_TRAMPOLINES + i] for i in range(n)),
                     image_entry=w[I_IMAGE_ENTRY], hvc_insn=w[I_HVC_INSN],
                     smc_insn=w[I_SMC_INSN], udf_insn=w[I_UDF_INSN],
                     vectors=w[I_VECTORS], cold_boots=w[I_COLD_BOOTS],
                     boot_mpidr=w[I_BOOT_MPIDR], current_el=w[I_CURRENT_EL],
                     cntfrq=w[I_CNTFRQ])


def start_record(boot_count: int, entry: int, context: int, mpidr: int) -> StartRecord:
    """A :class:`StartRecord` from a mailbox's words (``entry``: the entry index as the
    guest stored it, a 64-bit two's complement word)."""
    entry_index = entry - (1 << 64) if entry >> 63 else entry
    return StartRecord(boot_count=boot_count, entry_index=entry_index, context=context,
                       mpidr=mpidr)


# --- building guest code -------------------------------------------------------------------------
def guest_source(name: str) -> Path:
    """``guests/<name>`` of this checkout."""
    return Path(__file__).resolve().parents[1] / "guests" / name


def cross_prefix() -> str:
    """The cross compiler's prefix: ``$CROSS``, else ``aarch64-linux-gnu-``."""
    return os.environ.get("CROSS", "aarch64-linux-gnu-")


def run_make(src_dir: Path, what: str, output_path: Path, error_cls: type[MachineError],
             timeout: float, *, force: bool = False) -> Path:
    """Build ``what`` (words for messages, e.g. ``"the PSCI agent"``) with ``make -C
    src_dir`` (``force``: ``-B``, rebuild everything) and return ``output_path``, which the
    build must leave behind.  Make does nothing when it is up to date.  ``error_cls``
    carries make's output when it fails, or says why it could not run (no make, no
    ``<cross>gcc``, a timeout of ``timeout`` s)."""
    make = shutil.which("make")
    if make is None:
        raise error_cls(f"cannot build {what}: no `make` on PATH")
    cross = cross_prefix()
    if shutil.which(cross + "gcc") is None:
        raise error_cls(f"cannot build {what}: no {cross}gcc on PATH")
    argv = [make, "-C", str(src_dir), *(["-B"] if force else [])]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error_cls(f"cannot build {what} ({' '.join(argv)}): {exc}") from exc
    if proc.returncode != 0 or not output_path.is_file():
        raise error_cls(f"building {what} failed ({' '.join(argv)}, status "
                        f"{proc.returncode}):\n"
                        f"{clip_text(proc.stderr + proc.stdout, LOG_TAIL)}")
    return output_path


# --- QEMU's process ------------------------------------------------------------------------------
def qemu_missing(qemu: str) -> bool:
    """``qemu`` is neither a command on PATH nor a file."""
    return shutil.which(qemu) is None and not Path(qemu).is_file()


def parent_death_wrapper(die_with_parent: bool) -> list[str]:
    """The command prefix that SIGKILLs QEMU when the thread that started it exits
    (``setpriv --pdeathsig KILL --``), if asked for and util-linux's setpriv is there."""
    if die_with_parent:
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            return [setpriv, "--pdeathsig", "KILL", "--"]
    return []


def exit_status(proc: subprocess.Popen[bytes]) -> int | None:
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


def log_tail(path: Path) -> str:
    """The tail of the log at ``path`` (at most :data:`LOG_TAIL` characters; "" when it
    cannot be read)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return clip_text(data[-(LOG_TAIL * 4):].decode("utf-8", "replace"), LOG_TAIL)


class QemuRun:
    """Everything one QEMU process holds: a temporary directory (QEMU's stderr log in it),
    the process, and once it is released its status and the logs' text.  Owned by a
    :func:`weakref.finalize` (which must not reference the machine) calling
    :meth:`release`; a driver's subclass adds what its transport holds (:meth:`free`,
    :meth:`keep_logs`) and names its console log (:meth:`console_tail`)."""

    console_name = "console"  # the second log quoted in an error

    def __init__(self, tmpdir: Path) -> None:
        self.tmpdir = tmpdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.status: int | None = None
        self.stderr_text = ""
        self.released = False

    @property
    def stderr_log(self) -> Path:
        return self.tmpdir / "qemu-stderr.log"

    def release(self) -> None:
        """SIGKILL QEMU's process group and reap QEMU, :meth:`free` the rest, keep the
        logs' text and remove the temporary directory.  Safe on any partial state.

        SIGKILL rather than SIGTERM: QEMU has nothing to flush (the logs are written
        unbuffered), and a SIGTERM'd QEMU exits with status 0, which would look like a
        guest SYSTEM_OFF."""
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
            with contextlib.suppress(OSError):
                proc.kill()  # in case QEMU left its group
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
            self.status = proc.returncode
        self.free()
        if self.tmpdir.exists():
            self.keep_logs()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.mark_released()

    def free(self) -> None:
        """Release what the transport holds (QEMU has been killed and reaped)."""

    def keep_logs(self) -> None:
        """Keep the text of the logs before the temporary directory goes."""
        self.stderr_text = log_tail(self.stderr_log)

    def mark_released(self) -> None:
        self.released = True

    def console_tail(self) -> str:
        """The tail of the guest's console log."""
        return ""

    def logs_text(self) -> str:
        """The tails of QEMU's stderr and of the console, for an error message."""
        err = self.stderr_text or log_tail(self.stderr_log)
        console = self.console_tail()
        return (f"\n--- QEMU stderr (tail) ---\n{err or '(empty)'}"
                f"\n--- {self.console_name} (tail) ---\n{console or '(empty)'}")


# --- the line protocol of the inits in a Linux guest (guests/kvm-init, guests/xen-dom0) ----------
PROTOCOL_MARK = b"@@PVK "  # what starts each of their lines: MARK <seq> <kind> ... #<fnv1a>
CONSOLE_LINES = 4000  # console lines a ConsoleRun keeps in memory


def fnv1a(data: bytes) -> int:
    """The 32-bit FNV-1a hash of ``data`` (the protocol's check)."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFF_FFFF
    return h


def parse_line(line: bytes) -> tuple[str, list[str]] | None:
    """(seq, fields) of a protocol line (``<PROTOCOL_MARK><seq> <kind> ... #<fnv1a, 8 hex
    digits>``; anything before the mark is skipped), None if the line is not one of ours,
    has no kind, or is torn (its check fails)."""
    start = line.find(PROTOCOL_MARK)
    if start < 0:
        return None
    body = line[start:].rstrip(b"\r\n")
    cut = body.rfind(b" #")
    if cut < 0:
        return None
    try:
        if int(body[cut + 2:], 16) != fnv1a(body[:cut]):
            return None
        words = body[len(PROTOCOL_MARK):cut].decode("ascii", "replace").split(" ")
    except ValueError:
        return None
    words = [w for w in words if w]
    if len(words) < 2:
        return None
    return words[0], words[1:]


class ConsoleRun(QemuRun):
    """A QEMU run whose stdin and stdout are the guest's console, which a reader thread
    (:meth:`read_loop`) reads: every line is kept (the last :data:`CONSOLE_LINES`), and the
    protocol's lines (:meth:`protocol_line`) go to :attr:`replies` (by sequence number),
    :attr:`ready` (``READY``) or :meth:`unsolicited`.  ``cond`` guards all of it and is
    notified at each protocol line and at the end of the console (:attr:`eof`)."""

    def __init__(self, tmpdir: Path) -> None:
        super().__init__(tmpdir)
        self.reader: threading.Thread | None = None
        self.cond = threading.Condition()
        self.replies: dict[int, list[str]] = {}
        self.console: deque[str] = deque(maxlen=CONSOLE_LINES)
        self.ready: list[str] | None = None
        self.eof = False

    def read_loop(self) -> None:
        """The reader thread: QEMU's stdout, line by line, until it closes."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        self.read_lines(lambda: os.read(fd, 65536), self._line)
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    @staticmethod
    def read_lines(read: Callable[[], bytes], take: Callable[[bytes], None]) -> None:
        """``take`` each line (without its newline) that ``read`` returns, until it
        returns nothing or raises OSError; then the last line, if it has no newline."""
        buf = b""
        while True:
            try:
                chunk = read()
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                take(line)
        if buf:
            take(buf)

    def _line(self, line: bytes) -> None:
        """A console line: kept, and read if it is one of the protocol's."""
        with self.cond:
            self.console.append(line.rstrip(b"\r").decode("utf-8", "replace"))
        self.protocol_line(line)

    def protocol_line(self, line: bytes) -> None:
        """Take ``line`` if it is one of the protocol's (from the console or another
        channel)."""
        parsed = parse_line(line)
        if parsed is None:
            return
        seq, words = parsed
        with self.cond:
            if seq != "-":
                with contextlib.suppress(ValueError):
                    self.replies[int(seq)] = words
            elif words[0] == "READY":
                self.ready = words[1:]
            else:
                self.unsolicited(words[0], words[1:])
            self.cond.notify_all()

    def unsolicited(self, kind: str, rest: list[str]) -> None:
        """An unsolicited line (seq ``-``) other than READY; called with ``cond`` held."""

    def console_text(self) -> str:
        """The tail of the console (at most :data:`LOG_TAIL` characters)."""
        with self.cond:
            text = "\n".join(self.console)
        return clip_text(text[-LOG_TAIL * 4:], LOG_TAIL)

    def console_tail(self) -> str:
        return self.console_text()

    def free(self) -> None:
        """Close QEMU's stdin, end the reader thread, close QEMU's stdout."""
        proc = self.proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self.reader is not None and self.reader is not threading.current_thread():
            self.reader.join(timeout=5)
        if proc is not None and proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()

    def mark_released(self) -> None:
        with self.cond:
            self.released = True
            self.cond.notify_all()


def qemu_value(text: str) -> str:
    """``text`` as a value inside a QEMU option (commas doubled)."""
    return text.replace(",", ",,")


def virtio_port_args(socket_path: Path | None) -> list[str]:
    """QEMU's options for :class:`PortRun`'s port (none without ``socket_path``): a
    virtio-serial device on virtio-mmio and a ``virtserialport`` named ``pvspec`` whose
    chardev connects to ``socket_path`` (``server=off``: this process listens)."""
    if socket_path is None:
        return []
    return ["-device", "virtio-serial-device",
            "-chardev", f"socket,id=pvspec,path={qemu_value(str(socket_path))},server=off",
            "-device", "virtserialport,chardev=pvspec,name=pvspec"]


class PortRun(ConsoleRun):
    """A :class:`ConsoleRun` with a second, fast channel to the init: a virtio-serial port
    (QEMU's ``virtserialport`` on ``virtio-serial-device``) whose QEMU end is a Unix socket
    this process listens on (:meth:`listen`, then :meth:`accept` once QEMU runs).  Why:
    QEMU's PL011 console takes one input byte per main-loop pass (~50-60 us a byte), the
    port whole buffers.  A thread (:meth:`port_loop`) reads the port's protocol lines into
    the same :attr:`replies`.  Requests go over the port once the init has said so (its
    unsolicited ``CHANNEL virtio <port>`` line, which :meth:`unsolicited` takes); before
    that, or when it says ``CHANNEL console`` (it found no port: the modules are missing),
    over the console.  Used by :mod:`conformance.kvm_psci` and
    :mod:`conformance.xen_machine`; the init side is ``guests/kvm-init/linux_channel.h``."""

    def __init__(self, tmpdir: Path) -> None:
        super().__init__(tmpdir)
        self.listener: socket.socket | None = None  # the port's socket, QEMU's end
        self.port: socket.socket | None = None  # ... and ours
        self.port_reader: threading.Thread | None = None
        self.port_eof = False
        self.guest_channel: str | None = None  # what the init said it uses

    @property
    def socket_path(self) -> Path:
        return self.tmpdir / "pvspec.sock"

    def listen(self) -> Path:
        """Listen on :attr:`socket_path` (before QEMU starts: QEMU connects at its start,
        ``server=off``) and return it."""
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.socket_path))
        self.listener.listen(1)
        self.listener.settimeout(0.25)
        return self.socket_path

    def accept(self, deadline: float, gone: Callable[[], bool]) -> bool:
        """Wait (until ``time.perf_counter()`` reaches ``deadline``, or ``gone()``) for QEMU
        to connect, then start :meth:`port_loop`; False if it did not connect."""
        assert self.listener is not None
        while self.port is None:
            with contextlib.suppress(TimeoutError):
                self.port, _ = self.listener.accept()
            if self.port is None and (gone() or time.perf_counter() > deadline):
                return False
        self.port.settimeout(None)
        self.port_reader = threading.Thread(target=self.port_loop, name="pvspec-port",
                                            daemon=True)
        self.port_reader.start()
        return True

    @property
    def on_port(self) -> bool:
        """Requests go over the port (it is connected and the init reads it)."""
        return self.port is not None and self.guest_channel == "virtio"

    def unsolicited(self, kind: str, rest: list[str]) -> None:
        if kind == "CHANNEL" and rest:
            self.guest_channel = rest[0]

    def port_loop(self) -> None:
        """The virtio port's reader thread."""
        port = self.port
        assert port is not None
        self.read_lines(lambda: port.recv(65536), self._port_line)
        with self.cond:
            self.port_eof = True
            self.cond.notify_all()

    def _port_line(self, line: bytes) -> None:
        """A line from the port: one of the protocol's also says the init uses the port
        (its ``CHANNEL`` line went out on the console, before the port was open)."""
        if self.guest_channel != "virtio" and parse_line(line) is not None:
            with self.cond:
                self.guest_channel = "virtio"
        self.protocol_line(line)

    def send(self, data: bytes) -> None:
        """Write ``data`` to the init: the port when :attr:`on_port`, else the console."""
        if self.on_port:
            assert self.port is not None
            self.port.sendall(data)
            return
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def free(self) -> None:
        """Close the sockets and end the port's reader, then what :class:`ConsoleRun`
        holds."""
        for sock in (self.port, self.listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
        if self.port_reader is not None and self.port_reader is not threading.current_thread():
            self.port_reader.join(timeout=5)
        super().free()


RunT = TypeVar("RunT", bound=QemuRun)


# --- the machine API both drivers implement alike ------------------------------------------------
class GuestMachine(Generic[RunT]):
    """What :class:`~conformance.qemu_psci.PsciMachine` and
    :class:`~conformance.kvm_psci.KvmPsciMachine` do alike: the context manager, stop and
    restart, QEMU's process group, status and stderr, the agent's info, and the checks of
    a call's arguments.  A subclass implements :meth:`start` (creating a ``RunT`` with
    :meth:`_begin_run`), reading the info page (:meth:`_read_info`) and the calls."""

    def __init__(self, cpus: int, *, call_timeout: float, boot_timeout: float, qemu: str,
                 no_reboot: bool, extra_args: Sequence[str], die_with_parent: bool) -> None:
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus must be 1..{MAX_CPUS}, not {cpus}")
        self.cpus = cpus
        self.call_timeout = call_timeout
        self.boot_timeout = boot_timeout
        self.qemu = qemu
        self.no_reboot = no_reboot
        self.extra_args = tuple(extra_args)
        self.die_with_parent = die_with_parent
        self.boot_seconds: float | None = None  # launch to the agent serving, latest start
        self._run: RunT | None = None
        self._finalizer: weakref.finalize | None = None
        self._stopped_by_host = False
        self._info: AgentInfo | None = None
        self._argv: list[str] = []  # QEMU's command line
        self._insn: dict[int, Insn] = {}  # cpu -> the instruction of its latest call

    # context manager
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # lifecycle
    def start(self) -> None:
        raise NotImplementedError

    def _read_info(self) -> AgentInfo:
        raise NotImplementedError

    def _begin_run(self, run: RunT) -> None:
        """Make ``run`` the machine's run, released at :meth:`stop` or garbage collection."""
        self._run = run
        self._finalizer = weakref.finalize(self, run.release)
        self._stopped_by_host = False
        self._info = None

    def _boot_failed(self, why: str) -> Never:
        run = self._run
        assert run is not None and self._finalizer is not None
        self._finalizer()  # ends QEMU first, so its logs are complete
        self._run = None
        raise MachineBootError(f"{why}\ncommand: {' '.join(self._argv)}{run.logs_text()}")

    def _refresh_before_stop(self) -> None:
        """Read what should stay readable once the machine is stopped (the info page)."""

    def stop(self) -> None:
        """Kill QEMU's process group and release what the run holds (its temporary
        directory, ...).  Idempotent; the logs' text and the last :attr:`info` stay
        readable."""
        run = self._run
        if run is None or self._finalizer is None or run.released:
            return
        self._refresh_before_stop()
        if run.proc is not None and exit_status(run.proc) is None:
            self._stopped_by_host = True
        self._finalizer()

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` a fresh machine (new RAM, new logs)."""
        self.stop()
        self.start()

    # QEMU's process
    @property
    def exit_status(self) -> int | None:
        """QEMU's return code once it has exited (None while running or never started)."""
        run = self._run
        if run is None or run.proc is None:
            return None
        return run.status if run.status is not None else exit_status(run.proc)

    @property
    def pgid(self) -> int | None:
        """QEMU's process group id (its pid), None if never started."""
        run = self._run
        return run.proc.pid if run is not None and run.proc is not None else None

    @property
    def qemu_stderr(self) -> str:
        """The tail of QEMU's stderr."""
        run = self._run
        if run is None:
            return ""
        return run.stderr_text if run.released else log_tail(run.stderr_log)

    def _exited_with(self, status: int) -> MachineExited:
        """The outcome of QEMU having exited by itself with ``status``."""
        return MachineExited(status, False)

    def _exited(self) -> MachineExited | None:
        """A :class:`MachineExited` when QEMU is not running (never started: raises)."""
        run = self._run
        if run is None or run.proc is None:
            raise MachineNotRunning("the machine has not been started")
        if run.released:
            return MachineExited(run.status, self._stopped_by_host)
        status = exit_status(run.proc)
        return None if status is None else self._exited_with(status)

    # the agent
    def _refresh_info(self) -> None:
        """Read the info page afresh if the agent runs."""

    @property
    def info(self) -> AgentInfo:
        """The info page (trampoline addresses, mailbox base, ...), read afresh while the
        agent runs (``cold_boots`` grows at a machine reset)."""
        self._refresh_info()
        if self._info is None:
            raise MachineNotRunning("the machine has not been started")
        return self._info

    def _check_cpu(self, cpu: int) -> int:
        if not isinstance(cpu, int) or not 0 <= cpu < self.cpus:
            raise ValueError(f"cpu must be 0..{self.cpus - 1}, not {cpu!r}")
        return cpu

    def _call_args(self, cpu: int, regs: Sequence[int], insn: Insn) -> tuple[Insn, list[int]]:
        """The checked arguments of a call: the instruction and x0..x7 (missing ones 0)."""
        self._check_cpu(cpu)
        insn = Insn(insn)
        if len(regs) > 8:
            raise ValueError(f"at most 8 registers (x0..x7), got {len(regs)}")
        args = [*regs, *[0] * (8 - len(regs))]
        for i, v in enumerate(args):
            if not isinstance(v, int) or not 0 <= v <= MASK64:
                raise ValueError(f"x{i} = {v!r} is not a 64-bit unsigned value")
        return insn, args

    @staticmethod
    def _check_idle(spin_us: int, doze_us: int) -> tuple[int, int]:
        """``(spin_us, doze_us)``, checked (0..10,000,000 microseconds each)."""
        for name, v in (("spin_us", spin_us), ("doze_us", doze_us)):
            if not isinstance(v, int) or not 0 <= v <= 10_000_000:
                raise ValueError(f"{name} must be 0..10,000,000 microseconds, not {v!r}")
        return spin_us, doze_us

    def _insn_addr(self, cpu: int) -> int | None:
        """The address of the instruction ``cpu``'s latest call executed."""
        info = self._info
        if info is None:
            return None
        return {Insn.HVC: info.hvc_insn, Insn.SMC: info.smc_insn,
                Insn.UDF: info.udf_insn}[self._insn.get(cpu, Insn.HVC)]

