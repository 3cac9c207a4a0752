"""A firmware machine as a conformance target: the shim between the oracle's
:class:`~conformance.target.Target` interface and a machine with the
:class:`~conformance.qemu_psci.PsciMachine` API (QEMU's own PSCI; Linux KVM/arm64 through
:mod:`conformance.kvm_psci`), with a guest agent of ours on every vCPU.  It declares what
it is and translates nothing but addresses:

* profile: the firmware ABIs only (``abis: psci,smccc``), vCPUs power on asynchronously
  (the hypervisor starts them on its own time), the guest boots from an image
  (``memory: image``); every implementation-defined answer is left for the oracle to learn
  (spec/profile.py);
* capability ``no_return``: a call that does not return (CPU_OFF, SYSTEM_OFF,
  SYSTEM_RESET, a suspend nothing wakes) is reported as such, so one that returns when it
  must not is caught;
* CPU_ON and CPU_SUSPEND entry points: the model's guest frame ``g`` of the booted image is
  the agent's entry trampoline ``g`` (so a started vCPU runs our code and can make calls);
  an entry outside the model's image becomes an address outside the guest's RAM, which the
  implementation may refuse (INVALID_ADDRESS) or start the core at (it then never runs our
  code, and the workload makes no call from it).  MPIDRs are the board's: Aff0 = the vCPU
  index (checked at every boot from what the agent reads in MPIDR_EL1);
* calls from several vCPUs at once (``hypercalls_at_once``): one thread per call, released
  together.

What the target cannot show is not claimed: no probes, no events; the report says which
requirements could not be judged and why.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Mapping
from typing import Any

from conformance import qemu_psci
from conformance.qemu_psci import (
    CallOutcome,
    MachineError,
    MachineExited,
    NoReturn,
    NotServing,
    Raised,
    Returned,
)
from conformance.results import KnownDeviation
from conformance.target import ResultsOnly, TargetCrashed, TargetError, TargetTimeout
from spec.hypercalls import abi
from spec.state import Config

__all__ = ["PROFILE", "FirmwareTarget"]

PROFILE = {"abis": "psci,smccc", "power_on": "async", "memory": "image"}

_CPU_ON = (0x84000003, 0xC4000003)
_SUSPEND = (0x84000001, 0xC4000001)
# How long to wait for an answer, by what the call is (per request type): a suspend that
# nothing wakes and a call that never returns on success are given up on quickly (that is
# their usual outcome); every other call is expected to answer, and a slow host (two cores
# emulating three vCPUs, under load) must not turn a late answer into "no return".
SUSPEND_WAIT = 0.2
NO_RETURN_WAIT = 1.0
ANSWER_WAIT = 5.0
# CPU_OFF, SYSTEM_OFF, SYSTEM_RESET, SYSTEM_RESET2: a success does not return
_NEVER_RETURN = frozenset(r.function_id for r in abi.TABLE if r.never_returns)
_CPU_OFF, _AFFINITY_INFO_64, _AFF_OFF = 0x84000002, 0xC4000004, 1
OFF_GLANCE = 0.02  # a CPU_OFF that fails answers within this on an idle host
# A machine that can see a vCPU wait inside the hypervisor (``settles_suspends``: KVM's
# vCPU thread asleep in KVM_RUN) settles a suspend once it has waited this long there
SUSPEND_SETTLE = 0.01
_RAM_END = qemu_psci.RAM_BASE + qemu_psci.RAM_SIZE
_OUTSIDE_64 = 1 << 40  # above every region of the virt board's memory map
_OUTSIDE_32 = 0x8000_0000  # below 4 GiB, above the 128 MiB of RAM: nothing there
START_TIMEOUT = 2.0  # how long a vCPU may take to start running at its entry point



class FirmwareTarget(ResultsOnly):
    """One guest with ``n_vcpus`` vCPUs on a firmware machine (the PsciMachine API);
    subclasses say which machine and how to reset it."""

    name = "firmware"
    capabilities = frozenset({"hypercall", "no_return"})
    known_deviations: tuple[KnownDeviation, ...] = ()

    def __init__(self, call_timeout: float = ANSWER_WAIT) -> None:
        self.profile = dict(PROFILE)
        self._call_timeout = call_timeout
        self._machine: Any = None  # a PsciMachine or a machine with its API
        self._cfg: Config | None = None
        self._dirty = True  # a secondary ran, or the machine stopped: restart at reset
        self._boots: dict[int, int] = {}  # per vCPU: the start already accounted for
        # the agent's CPU_ON entry points, read at the first CPU_ON of a boot: they are
        # fixed by the image (a guest SYSTEM_RESET reloads the same one), and reading the
        # info page costs a round trip on a machine behind a channel (kvm-arm64)
        self._tramps: tuple[int, ...] | None = None
        self.boots = 0  # machine starts (for reports and benchmarks)

    # --- Target -------------------------------------------------------------------------------
    def reset(self, config: Config) -> None:
        if config.n_vms < 1 or config.n_vcpus > qemu_psci.MAX_CPUS:
            raise TargetError(f"{self.name} runs one guest with at most {qemu_psci.MAX_CPUS} "
                              f"vCPUs, not {config.n_vcpus}", definite=True)
        m = self._machine
        if m is not None and not self._dirty and self._cfg == config and m.alive:
            return  # nothing but the boot vCPU ever ran: the machine is as booted
        try:
            m = self._machine = self._fresh(config)
        except MachineError as exc:
            self._stop()
            raise TargetCrashed(f"{self.name}: the agent did not boot: {exc}") from None
        self._cfg = config
        self.boots += 1
        self._dirty = False
        self._boots = {}
        self._tramps = None
        # the starts so far (a reset inside a running machine keeps the mailboxes' boot
        # counts): only a start after this one is the example's
        for cpu in range(1, config.n_vcpus):
            prev = m.started(cpu)
            if prev is not None:
                self._boots[cpu] = prev.boot_count
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
            raise TargetError(f"{self.name}: hypercall before reset", definite=True)
        if vm != 0 or conv != "arm64":
            raise TargetError(f"{self.name} has one guest (VM 0) and the arm64 convention; "
                              f"cannot call from VM {vm} with {conv}", definite=True)
        words = [int(regs.get(f"x{i}", 0)) for i in range(8)]
        if words[0] & 0xFFFF_FFFF in _CPU_ON:
            words[2] = self._entry(words[0], words[2])
        if vcpu != 0 or words[0] & 0xFFFF_FFFF in (*_CPU_ON, *_SUSPEND, 0x84000002,
                                                    0x84000008, 0x84000009):
            self._dirty = True  # power states may differ from boot: restart at reset
        started = self._new_start(m, vcpu)
        # a suspend that nothing wakes never returns: do not wait the full call timeout
        fid = words[0] & 0xFFFF_FFFF
        wait = (SUSPEND_WAIT if fid in _SUSPEND else
                NO_RETURN_WAIT if fid in _NEVER_RETURN else self._call_timeout)
        if fid == _CPU_OFF and vcpu != 0:
            outcome = self._cpu_off(m, vcpu, words, wait)
        else:
            outcome = self._call(m, vcpu, words, wait)
        if isinstance(outcome, NotServing):
            outcome = self._after_start(m, vcpu, words, wait)
        if started is None:
            started = self._new_start(m, vcpu)  # it started while the call waited for it
        if isinstance(outcome, Returned):
            out = {"x0": outcome.regs[0], "x1": outcome.regs[1], "x2": outcome.regs[2],
                   "x3": outcome.regs[3]}
            return {**out, **started} if started else out
        if isinstance(outcome, NoReturn):
            self._dirty = True
            return {"returned": 0}
        if isinstance(outcome, Raised):
            return {"raised": outcome.esr}
        if isinstance(outcome, MachineExited):
            self._dirty = True
            if outcome.status == 0 and not outcome.by_host:
                return {"returned": 0}  # SYSTEM_OFF: QEMU powers the board off
            raise TargetCrashed(f"{self.name}: the machine exited with status "
                                f"{outcome.status} during the call")
        raise TargetError(f"{self.name}: unexpected outcome {outcome!r}")

    def hypercalls_at_once(self, calls: list[tuple[int, int, Mapping[str, int], str]]
                           ) -> list[dict[str, int]]:
        """Calls from different vCPUs released together: one thread per call, each
        posting its request and waiting for its own answer (the mailboxes are per vCPU)."""
        if len({vcpu for _, vcpu, _, _ in calls}) != len(calls):
            raise TargetError("calls made at once must come from different vCPUs",
                              definite=True)
        if not getattr(self._machine, "calls_at_once", False):
            # the machine serves one request at a time (KVM: one serial line): the calls
            # go one by one, which the oracle still judges against every order
            return [self.hypercall(*c) for c in calls]
        barrier = threading.Barrier(len(calls))

        def one(call: tuple[int, int, Mapping[str, int], str]) -> dict[str, int]:
            barrier.wait()
            return self.hypercall(*call)

        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            futures = [pool.submit(one, c) for c in calls]
            return [f.result() for f in futures]

    def _new_start(self, m: Any, vcpu: int) -> dict[str, int] | None:
        """Where a secondary vCPU started since the last look (its first call after a
        CPU_ON, or a power-down's resume), in the model's terms: ``start_entry`` (the
        image frame of the trampoline it ran, as a guest address) and ``start_context``
        (x0 at its entry).  None for vCPU 0 and when nothing new started there."""
        if vcpu == 0:
            return None
        rec = m.started(vcpu)
        if rec is None or rec.boot_count <= self._boots.get(vcpu, 0):
            return None
        self._boots[vcpu] = rec.boot_count
        if rec.entry_index < 0:
            return None  # the image entry: a reboot, not a CPU_ON
        return {"start_entry": rec.entry_index << 12, "start_context": rec.context}

    def _fresh(self, config: Config) -> Any:
        """A machine in its boot state for ``config``: by default a new one, started."""
        self._stop()
        m = self._new_machine(config)
        m.start()
        return m

    def _new_machine(self, config: Config) -> Any:
        raise NotImplementedError

    def _cpu_off(self, m: Any, vcpu: int, words: list[int], wait: float) -> CallOutcome:
        """CPU_OFF from a secondary: a success never returns (DEN0022 5.1.3), so rather
        than wait ``wait`` seconds for an answer that will not come, ask the platform
        once the call has had a moment: AFFINITY_INFO from vCPU 0 (side-effect free)
        saying OFF settles it.  Anything else (vCPU 0 not serving, ON, an error) keeps
        waiting the full ``wait``: only an observed OFF cuts it short."""
        outcome = m.call(vcpu, words, OFF_GLANCE)
        if not isinstance(outcome, NoReturn) or outcome.restarted:
            return outcome  # type: ignore[no-any-return]
        if m.serving(0):
            probe = m.call(0, [_AFFINITY_INFO_64, vcpu, 0], self._call_timeout)
            if isinstance(probe, Returned) and probe.regs[0] == _AFF_OFF:
                return outcome  # type: ignore[no-any-return]
        later = m.wait_pending(vcpu, wait)
        return later if later is not None else outcome

    @staticmethod
    def _call(m: Any, vcpu: int, words: list[int], wait: float) -> CallOutcome:
        """One call; a suspend on a machine that ``settles_suspends`` is given up on once
        the vCPU has waited :data:`SUSPEND_SETTLE` inside the hypervisor, where nothing
        will wake it, rather than after ``wait`` (a quarter of a kvm-arm64 campaign went
        into waiting such suspends out)."""
        if words[0] & 0xFFFF_FFFF in _SUSPEND and getattr(m, "settles_suspends", False):
            return m.call(vcpu, words, wait, settle=SUSPEND_SETTLE)  # type: ignore[no-any-return]
        return m.call(vcpu, words, wait)  # type: ignore[no-any-return]

    def _after_start(self, m: Any, vcpu: int, words: list[int], wait: float) -> CallOutcome:
        """A call from a vCPU that is not serving yet: wait (bounded) for its start after
        CPU_ON, then make the call (waiting ``wait`` for its answer)."""
        if m.serving(vcpu):  # it started between the two looks
            return self._call(m, vcpu, words, wait)
        now = m.started(vcpu)
        seen = now.boot_count if now is not None else 0
        rec = m.wait_started(vcpu, seen, START_TIMEOUT)
        if rec is None:
            raise TargetTimeout(f"vCPU {vcpu} was not running the guest's code "
                                f"{START_TIMEOUT} s after the call that should have started "
                                f"it", definite=True)
        return self._call(m, vcpu, words, wait)

    def _entry(self, fid: int, entry: int) -> int:
        """A model entry point as an address in the real guest (see the module text)."""
        assert self._cfg is not None and self._machine is not None
        smc64 = bool(fid >> 30 & 1)
        low = entry if smc64 else entry & 0xFFFF_FFFF
        image = min(self._cfg.control_quota, self._cfg.n_gframes - 1)
        if self._tramps is None:
            self._tramps = tuple(self._machine.info.trampolines)
        tramps = self._tramps
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
        raise TargetError(f"{self.name} takes no events ({name}): its vCPUs start by "
                          f"themselves", definite=True)

    def close(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._machine is not None:
            self._machine.stop()
            self._machine = None
        self._dirty = True
