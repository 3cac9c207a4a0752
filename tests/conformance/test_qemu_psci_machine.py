"""The QEMU PSCI driver (conformance.qemu_psci) against a real QEMU: the guest agent boots,
serves calls on every CPU, reports exceptions, CPUs that do not return, a machine that
exits, and leaves no process, shared-memory file or temporary directory behind.

These tests check the transport only: they never judge QEMU's PSCI answers (the oracle
does).  They skip when qemu-system-aarch64 or the aarch64 cross compiler is missing; the
agent is built here (``make -C guests/psci``, a no-op when it is up to date).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _machines import (
    CPU_OFF,
    CPU_ON64,
    CPU_SUSPEND64,
    PSCI_VERSION,
    SYSTEM_OFF,
    SYSTEM_RESET,
    TIMEOUT,
    VENDOR_HYP,
    assert_build_is_idempotent,
    group_gone,
)

from conformance.qemu_psci import (
    ENTRY_IMAGE,
    CpuState,
    Insn,
    MachineBootError,
    MachineError,
    MachineExited,
    MachineNotRunning,
    NoReturn,
    NotServing,
    PsciMachine,
    Raised,
    Returned,
    build_agent,
)

QEMU = "qemu-system-aarch64"
CROSS_GCC = os.environ.get("CROSS", "aarch64-linux-gnu-") + "gcc"

pytestmark = [
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed"),
    pytest.mark.skipif(shutil.which(CROSS_GCC) is None,
                       reason=f"{CROSS_GCC} (AArch64 cross compiler) is not installed"),
]
if importlib.util.find_spec("pytest_timeout") is not None:  # pragma: no cover
    pytestmark.append(pytest.mark.timeout(60))


@pytest.fixture(scope="module")
def agent() -> Path:
    return build_agent()


@pytest.fixture
def machine(agent: Path) -> Iterator[PsciMachine]:
    with PsciMachine(cpus=2, agent=agent, call_timeout=TIMEOUT) as m:
        yield m


def test_build_is_idempotent(agent: Path) -> None:
    assert_build_is_idempotent(agent, build_agent)


def test_boot_and_psci_version(machine: PsciMachine) -> None:
    assert machine.alive and machine.exit_status is None
    info = machine.info
    assert info.current_el == 1 and len(info.trampolines) == 4
    assert len(set(info.trampolines)) == 4
    rec = machine.started(0)
    assert rec is not None and rec.boot_count == 1 and rec.entry_index == ENTRY_IMAGE
    assert machine.serving(0) and not machine.serving(1)
    out = machine.call(0, [PSCI_VERSION])
    assert isinstance(out, Returned), out
    assert len(out.regs) == 8 and 0 <= out.regs[0] < 1 << 32


def test_cpu_on_at_a_trampoline_then_cpu_off(machine: PsciMachine) -> None:
    assert machine.started(1) is None
    assert machine.call(1, [PSCI_VERSION]) == NotServing(CpuState.OFF, 0)
    tramp = machine.info.trampolines[2]
    out = machine.call(0, [CPU_ON64, 1, tramp, 0x1234])
    assert isinstance(out, Returned), out
    rec = machine.wait_started(1, 0, TIMEOUT)
    assert rec is not None, machine.mailbox(1)
    assert (rec.boot_count, rec.entry_index, rec.context) == (1, 2, 0x1234)
    assert rec.mpidr & 0xFF == 1
    assert isinstance(machine.call(1, [PSCI_VERSION]), Returned)

    t0 = time.perf_counter()
    off = machine.call(1, [CPU_OFF], timeout=0.3)
    assert off == NoReturn(CpuState.IN_CALL, restarted=False)
    assert time.perf_counter() - t0 < 0.3 + 1.0
    assert not machine.serving(1)
    assert machine.call(1, [PSCI_VERSION]) == NotServing(CpuState.IN_CALL, 1)
    assert machine.serving(0)

    # Started again (another trampoline, another context): a new start record, serving.
    deadline = time.perf_counter() + TIMEOUT
    while True:  # CPU_OFF completes asynchronously: CPU_ON may see it still on
        again = machine.call(0, [CPU_ON64, 1, machine.info.trampolines[1], 0x99])
        assert isinstance(again, Returned), again
        if again.regs[0] == 0 or time.perf_counter() > deadline:
            break
        time.sleep(0.01)
    rec2 = machine.wait_started(1, rec.boot_count, TIMEOUT)
    assert rec2 is not None and (rec2.boot_count, rec2.entry_index, rec2.context) == (2, 1, 0x99)
    assert isinstance(machine.call(1, [PSCI_VERSION]), Returned)


def test_vendor_function_id_is_answered_and_the_agent_keeps_serving(
        machine: PsciMachine) -> None:
    out = machine.call(0, [VENDOR_HYP])
    assert isinstance(out, Returned | Raised), out
    if isinstance(out, Raised):
        assert out.at_call
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)


def test_exceptions_are_reported_and_the_agent_resumes(machine: PsciMachine) -> None:
    info = machine.info
    udf = machine.call(0, [1, 2, 3], insn=Insn.UDF)
    assert isinstance(udf, Raised), udf
    assert udf.ec == 0 and udf.elr == info.udf_insn and udf.at_call and udf.vector == 4
    smc = machine.call(0, [PSCI_VERSION], insn=Insn.SMC)  # EL3 off: SMC is UNDEFINED
    assert isinstance(smc, Returned | Raised), smc
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)
    box = machine.mailbox(0)
    assert box is not None and box.state == CpuState.DONE and box.exc_count >= 1


def test_idle_cpus_doze_and_still_answer(machine: PsciMachine) -> None:
    time.sleep(0.05)
    before = machine.mailbox(0)
    assert before is not None and before.dozes > 0
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)
    machine.set_idle(0, 0)  # poll forever
    time.sleep(0.02)
    box = machine.mailbox(0)
    assert box is not None
    time.sleep(0.05)
    after = machine.mailbox(0)
    assert after is not None and after.dozes == box.dozes and after.heartbeat > box.heartbeat
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)


def test_cpu_suspend_is_not_woken_by_the_agent(machine: PsciMachine) -> None:
    """The dozing timer is off during calls: a standby CPU_SUSPEND with nothing to wake
    the CPU does not return (QEMU's suspend is a WFI)."""
    assert isinstance(machine.call(0, [CPU_ON64, 1, machine.info.trampolines[0], 7]), Returned)
    assert machine.wait_started(1, 0, TIMEOUT) is not None
    out = machine.call(1, [CPU_SUSPEND64, 0, machine.info.trampolines[0], 0], timeout=0.3)
    assert out == NoReturn(CpuState.IN_CALL, restarted=False)
    assert machine.wait_pending(1, 0.2) == NoReturn(CpuState.IN_CALL, restarted=False)
    assert machine.wait_pending(0) is None
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)


def test_system_off_exits_qemu_and_stop_cleans_up(machine: PsciMachine) -> None:
    pgid, shm = machine.pgid, machine.shm_path
    assert pgid is not None and shm is not None
    out = machine.call(0, [SYSTEM_OFF])
    assert out == MachineExited(0, by_host=False)
    assert not machine.alive and machine.exit_status == 0
    assert machine.call(0, [PSCI_VERSION]) == MachineExited(0, by_host=False)
    machine.stop()
    assert machine.exit_status == 0
    assert group_gone(pgid)
    assert not shm.exists()
    assert "ready" in machine.serial_output


def test_system_reset_reboots_the_agent(machine: PsciMachine) -> None:
    assert machine.info.cold_boots == 1
    out = machine.call(0, [SYSTEM_RESET])
    assert isinstance(out, NoReturn) and out.restarted, out  # CPU 0 booted again
    rec = machine.wait_started(0, 1, TIMEOUT)
    assert rec is not None and rec.entry_index == ENTRY_IMAGE
    assert machine.info.cold_boots == 2
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)


AFFINITY_INFO64 = 0xC400_0004


def test_reset_leaves_every_secondary_off_and_nothing_pending(agent: Path) -> None:
    """PsciMachine.reset (QMP stop, system_reset, cont) is the reset state of a fresh
    machine for PSCI: vCPUs left ON (serving), suspended inside a call, and just named by
    a CPU_ON are all OFF after it -- not serving, OFF in AFFINITY_INFO, no start since,
    no call pending -- and a CPU_ON afterwards starts a vCPU where that call says."""
    with PsciMachine(cpus=4, agent=agent, call_timeout=TIMEOUT) as m:
        tramps = m.info.trampolines
        for cpu, ctx in ((1, 0x11), (2, 0x22)):
            assert m.call(0, [CPU_ON64, cpu, tramps[0], ctx]) == Returned((0, cpu, tramps[0],
                                                                           ctx, 0, 0, 0, 0))
            assert m.wait_started(cpu, 0, TIMEOUT) is not None
        suspended = m.call(2, [CPU_SUSPEND64, 0, tramps[1], 0], 0.1)  # standby: never woken
        assert isinstance(suspended, NoReturn) and not suspended.restarted
        assert isinstance(m.call(0, [CPU_ON64, 3, tramps[0], 0x33]), Returned)
        m.reset()  # at once: vCPU 3's start may still be on its way
        assert m.resets == 1 and m.info.cold_boots == 2
        boots = {cpu: m.mailbox(cpu) for cpu in (1, 2, 3)}
        time.sleep(0.3)  # a start left over from before the reset would show by now
        for cpu in (1, 2, 3):
            mb = m.mailbox(cpu)
            before = boots[cpu]
            assert mb is not None and before is not None
            assert mb.state == CpuState.OFF and mb.boot_count == before.boot_count, (cpu, mb)
            assert not m.serving(cpu)
            assert isinstance(m.call(cpu, [PSCI_VERSION]), NotServing)
            assert m.wait_pending(cpu) is None
            assert m.call(0, [AFFINITY_INFO64, cpu, 0]).regs[0] == 1  # type: ignore[union-attr]
        assert m.call(0, [CPU_ON64, 1, tramps[1], 0x77]).regs[0] == 0  # type: ignore[union-attr]
        assert boots[1] is not None
        rec = m.wait_started(1, boots[1].boot_count, TIMEOUT)
        assert rec is not None and (rec.entry_index, rec.context) == (1, 0x77)
        assert isinstance(m.call(1, [PSCI_VERSION]), Returned)


def test_no_shutdown_system_off_then_reset(agent: Path) -> None:
    """With no_shutdown a SYSTEM_OFF reads as QEMU's exit with status 0 would, while QEMU
    runs on; reset() powers the board on again, every secondary OFF."""
    with PsciMachine(cpus=2, agent=agent, call_timeout=TIMEOUT, no_shutdown=True) as m:
        tramps = m.info.trampolines
        assert isinstance(m.call(0, [CPU_ON64, 1, tramps[0], 0x11]), Returned)
        rec = m.wait_started(1, 0, TIMEOUT)
        assert rec is not None
        assert m.call(0, [SYSTEM_OFF]) == MachineExited(0, False)
        assert not m.alive and m.powered_off and m.process_alive
        assert m.call(1, [PSCI_VERSION]) == MachineExited(0, False)
        m.reset()
        assert m.alive and not m.powered_off and m.info.cold_boots == 2
        assert isinstance(m.call(0, [PSCI_VERSION]), Returned)
        mb = m.mailbox(1)
        assert mb is not None and mb.state == CpuState.OFF and mb.boot_count == rec.boot_count
        assert m.call(0, [AFFINITY_INFO64, 1, 0]).regs[0] == 1  # type: ignore[union-attr]
    assert m.exit_status is not None and not m.alive


def test_reset_refuses_a_no_reboot_machine(agent: Path) -> None:
    with PsciMachine(cpus=1, agent=agent, no_reboot=True) as m, \
            pytest.raises(MachineError, match="no_reboot"):
        m.reset()


def test_stopped_and_killed_machines(agent: Path, capfd: pytest.CaptureFixture[str]) -> None:
    m = PsciMachine(cpus=1, agent=agent, call_timeout=TIMEOUT)
    with pytest.raises(MachineNotRunning):
        m.call(0, [PSCI_VERSION])
    m.start()
    pgid, tmp_shm = m.pgid, m.shm_path
    assert pgid is not None and tmp_shm is not None
    os.killpg(pgid, signal.SIGKILL)  # QEMU dies under the driver's feet
    out = m.call(0, [PSCI_VERSION])
    assert out == MachineExited(-signal.SIGKILL, by_host=False)
    assert not m.alive
    m.stop()
    m.stop()
    assert m.call(0, [PSCI_VERSION]) == MachineExited(-signal.SIGKILL, by_host=False)
    assert group_gone(pgid) and not tmp_shm.exists()

    m.restart()  # a stopped machine starts afresh
    assert isinstance(m.call(0, [PSCI_VERSION]), Returned)
    pgid = m.pgid
    assert pgid is not None
    m.stop()
    assert m.call(0, [PSCI_VERSION]) == MachineExited(-signal.SIGKILL, by_host=True)
    assert m.started(0) is None and not m.serving(0) and group_gone(pgid)

    m2 = PsciMachine(cpus=1, agent=agent)
    m2.start()
    pgid2 = m2.pgid
    assert pgid2 is not None
    del m2
    gc.collect()  # the finalizer ends an abandoned machine
    assert group_gone(pgid2)
    assert "Traceback" not in capfd.readouterr().err


def test_boot_failures_carry_the_logs_and_leave_nothing(agent: Path, tmp_path: Path) -> None:
    leftovers = f"pvspec-psci-{os.getpid()}-*"
    with pytest.raises(MachineBootError) as err:  # QEMU exits at once
        PsciMachine(cpus=1, agent=agent, extra_args=["-no-such-option"]).start()
    assert "exited with status 1" in str(err.value)
    assert "no-such-option" in str(err.value).split("QEMU stderr", 1)[1]
    bogus = tmp_path / "not-a-kernel.bin"  # QEMU runs it as a raw image: never ready
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(MachineBootError, match="not ready within"):
        PsciMachine(cpus=1, agent=bogus, boot_timeout=0.5).start()
    assert not list(Path("/dev/shm").glob(leftovers))


def test_measure_boot_and_round_trips(agent: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Printed, not asserted (beyond sanity): boot-to-ready time and calls/s."""
    with PsciMachine(cpus=2, agent=agent, call_timeout=TIMEOUT) as m:
        boot = m.boot_seconds
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            out = m.call(0, [PSCI_VERSION])
        rate = n / (time.perf_counter() - t0)
        assert isinstance(out, Returned)
    with capsys.disabled():
        print(f"\n[qemu_psci] boot to ready {boot:.3f} s; {rate:,.0f} PSCI_VERSION calls/s")
