"""QEMU's own PSCI as a conformance target (``--target qemu-psci``).

A thin shim between the oracle's :class:`~conformance.target.Target` interface and
:class:`~conformance.qemu_psci.PsciMachine` (QEMU's ``virt`` board with EL2 and EL3 off, a
bare-metal guest agent of ours on every vCPU).  It declares what it is and translates
nothing but addresses:

* profile: the firmware ABIs only (``abis: psci,smccc``), vCPUs power on asynchronously
  (QEMU starts them on its own time), the guest boots from an image (``memory: image``);
  every implementation-defined answer is left for the oracle to learn (spec/profile.py);
* capability ``no_return``: a call that does not return (CPU_OFF, SYSTEM_OFF,
  SYSTEM_RESET) is reported as such, so one that returns when it must not is caught;
* CPU_ON entry points: the model's guest frame ``g`` of the booted image is the agent's
  entry trampoline ``g`` (so a started vCPU runs our code and can make calls); an entry
  outside the model's image becomes an address outside the guest's RAM, which the
  implementation may refuse (INVALID_ADDRESS) or start the core at (it then never runs
  our code, and the workload makes no call from it).  MPIDRs are QEMU's: Aff0 = the vCPU
  index (checked at every boot from what the agent reads in MPIDR_EL1).

What the target cannot show is not claimed: no probes, no events; the report says which
requirements could not be judged and why.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Mapping

from conformance import qemu_psci
from conformance.qemu_psci import (
    CallOutcome,
    MachineError,
    MachineExited,
    NoReturn,
    NotServing,
    PsciMachine,
    Raised,
    Returned,
)
from conformance.results import KnownDeviation
from conformance.target import TargetCrashed, TargetError, TargetTimeout
from spec.state import Config

__all__ = ["KNOWN_DEVIATIONS", "PROFILE", "QemuPsciTarget", "available", "double_cpu_on"]

_INVALID = (-2) & ((1 << 64) - 1)


def _q1(decoded: object, regs: Mapping[str, int], ret: int, got: Mapping[str, int]) -> bool:
    level = decoded.args[1]  # type: ignore[attr-defined]
    return level != 0 and ret == _INVALID and got.get("x0") == 0


def _q2(decoded: object, regs: Mapping[str, int], ret: int, got: Mapping[str, int]) -> bool:
    upper = any(regs.get(f"x{i}", 0) >> 32 for i in (1, 2, 3))
    return upper and ret != _INVALID and got.get("x0") == _INVALID


def _q3(decoded: object, regs: Mapping[str, int], ret: int, got: Mapping[str, int]) -> bool:
    """The vCPU is ON_PENDING in the spec; QEMU still has it OFF: AFFINITY_INFO answers OFF,
    a second CPU_ON succeeds."""
    row = decoded.row.name  # type: ignore[attr-defined]
    if row.startswith("AFFINITY_INFO"):
        return ret == 2 and got.get("x0") == 1
    return ret == (-5) & ((1 << 64) - 1) and got.get("x0") == 0


# QEMU 7.2's deviations, each in docs/findings.md with its clause and minimal trace
KNOWN_DEVIATIONS = (
    KnownDeviation(
        "Q1", "AFFINITY_INFO above level 0 always answers ON", "abi:AFFINITY_INFO",
        frozenset({"AFFINITY_INFO", "AFFINITY_INFO_32"}),
        "PSCI DEN0022 5.1.5: lowest_affinity_level is 0..3 on AArch64, and the target "
        "must name an affinity instance; otherwise INVALID_PARAMETERS",
        "x0 = -2 (INVALID_PARAMETERS)", "x0 = 0 (ON)", _q1,
        ({"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
          "regs": {"x0": "0x84000004", "x1": "0x10000", "x2": "0x100"},
          "call": "AFFINITY_INFO_32(target_affinity=0x10000, lowest_level=0x100)",
          "expect": "-2 (INVALID_PARAMETERS)"},)),
    KnownDeviation(
        "Q2", "SMC32 PSCI calls read the upper halves of their argument registers",
        "abi:AFFINITY_INFO_32", frozenset({"AFFINITY_INFO_32", "CPU_ON_32"}),
        "SMCCC DEN0028 (SMC32/HVC32 calls from AArch64 pass 32-bit arguments in W1-W7: "
        "the upper 32 bits of X1-X7 are ignored); PSCI DEN0022 5.1.4, 5.1.5 (SMC32 forms)",
        "x0 = 0 (ON: vCPU 0, the low half of x1)", "x0 = -2 (INVALID_PARAMETERS)", _q2,
        ({"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
          "regs": {"x0": "0x84000004", "x1": "0x10000000000", "x2": "0x0"},
          "call": "AFFINITY_INFO_32(target_affinity=0x10000000000, lowest_level=0x0)",
          "expect": "0"},)),
    KnownDeviation(
        "Q3", "CPU_ON is not atomic: the vCPU stays OFF until it starts running",
        "abi:CPU_ON", frozenset({"CPU_ON", "CPU_ON_32", "AFFINITY_INFO", "AFFINITY_INFO_32"}),
        "PSCI DEN0022 5.1.4 (a CPU_ON for a core already being powered on returns ON_PENDING "
        "or ALREADY_ON), 5.1.5 (after a successful CPU_ON the core is ON_PENDING, then ON)",
        "x0 = -5 (ON_PENDING) for the second CPU_ON", "x0 = 0: both CPU_ON calls succeed",
        _q3,
        ({"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
          "regs": {"x0": "0xc4000003", "x1": "0x1", "x2": "0x0", "x3": "0x55"},
          "call": "CPU_ON(target_cpu=0x1, entry=image frame 0, context=0x55)", "expect": "0"},
         {"op": "hypercall", "vm": 0, "vcpu": 0, "conv": "arm64",
          "regs": {"x0": "0xc4000003", "x1": "0x1", "x2": "0x0", "x3": "0x66"},
          "call": "CPU_ON(target_cpu=0x1, entry=image frame 0, context=0x66)",
          "expect": "-5 (ON_PENDING)"})),
)

PROFILE = {"abis": "psci,smccc", "power_on": "async", "memory": "image"}

_CPU_ON = (0x84000003, 0xC4000003)
_SUSPEND = (0x84000001, 0xC4000001)
SUSPEND_WAIT = 0.2  # seconds a CPU_SUSPEND may take to return before it counts as "no return"
_RAM_END = qemu_psci.RAM_BASE + qemu_psci.RAM_SIZE
_OUTSIDE_64 = 1 << 40  # above every region of the virt board's memory map
_OUTSIDE_32 = 0x8000_0000  # below 4 GiB, above the 128 MiB of RAM: nothing there
START_TIMEOUT = 2.0  # how long a vCPU may take to start running at its entry point


def double_cpu_on(trials: int) -> int:
    """Q3 measured: in how many of ``trials`` fresh machines two back-to-back CPU_ON calls
    for the same OFF vCPU both succeed (PSCI allows one; the second must answer ON_PENDING
    or ALREADY_ON)."""
    hits = 0
    for _ in range(trials):
        with PsciMachine(2) as m:
            entry = m.info.trampolines[0]
            answers = [m.call(0, [0xC400_0003, 1, entry, ctx]) for ctx in (0x55, 0x66)]
            if all(isinstance(a, Returned) and a.regs[0] == 0 for a in answers):
                hits += 1
    return hits


def available() -> str | None:
    """None if QEMU and the cross compiler are installed, else why not."""
    import shutil

    for prog in ("qemu-system-aarch64", "aarch64-linux-gnu-gcc"):
        if shutil.which(prog) is None:
            return f"{prog} is not installed (make system-deps, as root)"
    return None


class QemuPsciTarget:
    """QEMU's PSCI, one guest with ``n_vcpus`` vCPUs; restarted when a reset needs it."""

    name = "qemu-psci"
    capabilities = frozenset({"hypercall", "no_return"})
    known_deviations = KNOWN_DEVIATIONS

    def __init__(self, call_timeout: float = 1.0) -> None:
        self.profile = dict(PROFILE)
        self._call_timeout = call_timeout
        self._machine: PsciMachine | None = None
        self._cfg: Config | None = None
        self._dirty = True  # a secondary ran, or the machine stopped: restart at reset
        self._boots: dict[int, int] = {}  # per vCPU: the start already accounted for
        self.boots = 0  # machine starts (for reports and benchmarks)

    # --- Target -------------------------------------------------------------------------------
    def reset(self, config: Config) -> None:
        if config.n_vms < 1 or config.n_vcpus > qemu_psci.MAX_CPUS:
            raise TargetError(f"qemu-psci runs one guest with at most {qemu_psci.MAX_CPUS} "
                              f"vCPUs, not {config.n_vcpus}", definite=True)
        m = self._machine
        if m is not None and not self._dirty and self._cfg == config and m.alive:
            return  # nothing but the boot vCPU ever ran: the machine is as booted
        self._cfg = config
        self._stop()
        m = self._machine = PsciMachine(config.n_vcpus, call_timeout=self._call_timeout)
        try:
            m.start()
        except MachineError as exc:
            self._stop()
            raise TargetCrashed(f"QEMU did not boot the agent: {exc}") from None
        self.boots += 1
        self._dirty = False
        self._boots = {}
        rec = m.started(0)
        if rec is not None:
            self._boots[0] = rec.boot_count
            if rec.mpidr & 0xFF_00FF_FFFF != 0:
                raise TargetError(f"the boot vCPU's MPIDR is {rec.mpidr:#x}; the shim "
                                  f"assumes Aff0 = vCPU index", definite=True)

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        m = self._machine
        if m is None or self._cfg is None:
            raise TargetError("qemu-psci: hypercall before reset", definite=True)
        if vm != 0 or conv != "arm64":
            raise TargetError(f"qemu-psci has one guest (VM 0) and the arm64 convention; "
                              f"cannot call from VM {vm} with {conv}", definite=True)
        words = [int(regs.get(f"x{i}", 0)) for i in range(8)]
        if words[0] & 0xFFFF_FFFF in _CPU_ON:
            words[2] = self._entry(words[0], words[2])
        if vcpu != 0 or words[0] & 0xFFFF_FFFF in (*_CPU_ON, *_SUSPEND, 0x84000002,
                                                    0x84000008, 0x84000009):
            self._dirty = True  # power states may differ from boot: restart at reset
        # a suspend that nothing wakes never returns: do not wait the full call timeout
        fid = words[0] & 0xFFFF_FFFF
        outcome = m.call(vcpu, words, SUSPEND_WAIT if fid in _SUSPEND else None)
        if isinstance(outcome, NotServing):
            outcome = self._after_start(m, vcpu, words)
        if isinstance(outcome, Returned):
            return {"x0": outcome.regs[0], "x1": outcome.regs[1], "x2": outcome.regs[2],
                    "x3": outcome.regs[3]}
        if isinstance(outcome, NoReturn):
            self._dirty = True
            return {"returned": 0}
        if isinstance(outcome, Raised):
            return {"raised": outcome.esr}
        if isinstance(outcome, MachineExited):
            self._dirty = True
            if outcome.status == 0 and not outcome.by_host:
                return {"returned": 0}  # SYSTEM_OFF: QEMU powers the board off
            raise TargetCrashed(f"QEMU exited with status {outcome.status} during the call")
        raise TargetError(f"qemu-psci: unexpected outcome {outcome!r}")

    def hypercalls_at_once(self, calls: list[tuple[int, int, Mapping[str, int], str]]
                           ) -> list[dict[str, int]]:
        """Calls from different vCPUs released together: one thread per call, each
        posting its request and waiting for its own answer (the mailboxes are per vCPU)."""
        if len({vcpu for _, vcpu, _, _ in calls}) != len(calls):
            raise TargetError("calls made at once must come from different vCPUs",
                              definite=True)
        barrier = threading.Barrier(len(calls))

        def one(call: tuple[int, int, Mapping[str, int], str]) -> dict[str, int]:
            barrier.wait()
            return self.hypercall(*call)

        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            futures = [pool.submit(one, c) for c in calls]
            return [f.result() for f in futures]

    def _after_start(self, m: PsciMachine, vcpu: int, words: list[int]) -> CallOutcome:
        """A call from a vCPU that is not serving yet: wait (bounded) for its start after
        CPU_ON, then make the call."""
        if m.serving(vcpu):  # it started between the two looks
            return m.call(vcpu, words)
        now = m.started(vcpu)
        seen = now.boot_count if now is not None else 0
        rec = m.wait_started(vcpu, seen, START_TIMEOUT)
        if rec is None:
            raise TargetTimeout(f"vCPU {vcpu} was not running the guest's code "
                                f"{START_TIMEOUT} s after the call that should have started "
                                f"it", definite=True)
        self._boots[vcpu] = rec.boot_count
        return m.call(vcpu, words)

    def _entry(self, fid: int, entry: int) -> int:
        """A model entry point as an address in the real guest (see the module text)."""
        assert self._cfg is not None and self._machine is not None
        smc64 = bool(fid >> 30 & 1)
        low = entry if smc64 else entry & 0xFFFF_FFFF
        image = min(self._cfg.control_quota, self._cfg.n_gframes - 1)
        tramps = self._machine.info.trampolines
        g, offset = low >> 12, low & 0xFFF
        if g < min(image, len(tramps)):
            real = tramps[g] + offset
        elif smc64:
            real = low | _OUTSIDE_64 if low < _OUTSIDE_64 else low
            if qemu_psci.RAM_BASE <= real < _RAM_END:  # cannot happen; kept as a guard
                real |= _OUTSIDE_64
        else:
            real = _OUTSIDE_32 | (low & 0x7FFF_FFFF)
        return real if smc64 else (entry & ~0xFFFF_FFFF) | real

    def event(self, name: str, *args: int) -> None:
        raise TargetError(f"qemu-psci takes no events ({name}): its vCPUs start by "
                          f"themselves", definite=True)

    def probe_access(self, vm: int, gfn: int) -> int:
        raise TargetError("qemu-psci has no probes", definite=True)

    def probe_dma(self, dev: int, gfn: int) -> int:
        raise TargetError("qemu-psci has no probes", definite=True)

    def probe_irq(self, vm: int, vcpu: int) -> int:
        raise TargetError("qemu-psci has no probes", definite=True)

    def close(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._machine is not None:
            self._machine.stop()
            self._machine = None
        self._dirty = True
