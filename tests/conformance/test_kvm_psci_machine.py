"""The KVM/arm64 PSCI driver (conformance.kvm_psci) against a real nested KVM: QEMU (TCG,
EL2 on) boots Debian's arm64 kernel, whose init (guests/kvm-init) runs the PSCI agent in a
KVM VM; calls, CPU starts, CPUs that do not return, VM resets and the guest's system events
come back through the serial console, and nothing is left behind.

These tests check the transport only: they never judge KVM's PSCI answers (the oracle does).
One outer boot per xdist worker (a module-scoped machine); every test starts from a fresh VM
(:meth:`KvmPsciMachine.reset_vm`, milliseconds), so the tests do not depend on their order.
They skip when qemu-system-aarch64, the aarch64 cross compiler or the fetched kernel
(scripts/fetch-arm64-kernel, run by ``make system-deps``) is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _machines import (
    CPU_OFF,
    CPU_ON64,
    PSCI_VERSION,
    SYSTEM_OFF,
    SYSTEM_RESET,
    TIMEOUT,
    assert_build_is_idempotent,
    group_gone,
)

from conformance.guest_machine import PortRun, fnv1a, parse_line
from conformance.kvm_psci import (
    ENTRY_IMAGE,
    CpuState,
    Insn,
    KvmPsciMachine,
    MachineBootError,
    MachineExited,
    NoReturn,
    NotServing,
    Raised,
    Returned,
    build_initrd,
    missing_prerequisites,
)
from conformance.xen_machine import default_channel

_MISSING = missing_prerequisites()


@pytest.fixture(scope="module")
def initrd() -> Path:
    if _MISSING is not None:
        pytest.skip(_MISSING)
    return build_initrd()


@pytest.fixture(scope="module")
def shared(initrd: Path) -> Iterator[KvmPsciMachine]:
    m = KvmPsciMachine(cpus=2, initrd=initrd, call_timeout=TIMEOUT)
    m.start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def machine(shared: KvmPsciMachine) -> KvmPsciMachine:
    """The shared machine with a fresh VM (rebooted if a test stopped it)."""
    if shared.kernel_alive:
        shared.reset_vm()
    else:
        shared.restart()
    return shared


def _line(body: bytes) -> bytes:
    return body + b" #%08x\r\n" % fnv1a(body)


def test_protocol_lines_are_checked() -> None:
    """Only whole lines of ours count: kernel noise before the marker is skipped, a line a
    kernel message cut through (checksum mismatch) is dropped."""
    good = _line(b"@@PVK 12 R 10001 0 5")
    assert parse_line(good) == ("12", ["R", "10001", "0", "5"])
    assert parse_line(b"[  3.1] random: crng init done" + good) == ("12", ["R", "10001", "0", "5"])
    torn = good.replace(b"10001", b"10[  3.1] kvm: x001")
    assert parse_line(torn) is None
    assert parse_line(b"[    0.000000] Booting Linux on physical CPU 0x0\r\n") is None
    assert parse_line(_line(b"@@PVK 12")) is None  # no kind


class _Stdin:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass


class _Proc:
    def __init__(self) -> None:
        self.stdin = _Stdin()


def test_requests_go_over_the_port_only_once_the_init_reads_it(tmp_path: Path) -> None:
    """PortRun (both inits' fast channel) sends on the console until the init has shown it
    uses the virtio port -- its CHANNEL line, or any line of ours arriving on the port --
    and keeps to the console when the init says ``CHANNEL console`` (no drivers)."""
    for announce in ("console line", "port line", "console fallback"):
        run = PortRun(tmp_path)
        run.proc = _Proc()  # type: ignore[assignment]
        ours, qemus = socket.socketpair()
        run.port = ours
        try:
            run.send(b"1 H\n")
            assert run.proc.stdin.data == b"1 H\n"  # type: ignore[union-attr]
            if announce == "console line":
                run.protocol_line(_line(b"@@PVK - CHANNEL virtio vport0p1"))
            elif announce == "port line":
                run._port_line(_line(b"@@PVK - READY 12 8 1000 6.1.0"))
                assert run.ready == ["12", "8", "1000", "6.1.0"]
            else:
                run.protocol_line(_line(b"@@PVK - CHANNEL console"))
            run.send(b"2 H\n")
            if announce == "console fallback":
                assert not run.on_port
                assert run.proc.stdin.data.endswith(b"2 H\n")  # type: ignore[union-attr]
            else:
                assert run.on_port and qemus.recv(100) == b"2 H\n"
        finally:
            ours.close()
            qemus.close()


def test_initrd_build_is_idempotent(initrd: Path) -> None:
    assert_build_is_idempotent(initrd, build_initrd)


def test_boot(machine: KvmPsciMachine) -> None:
    assert machine.alive and machine.kernel_alive
    assert machine.mode == "nvhe"
    assert any(line.endswith("Hyp mode initialized successfully") for line in machine.kvm_log)
    info = machine.info
    assert len(info.trampolines) == 4 and len(set(info.trampolines)) == 4
    assert info.current_el == 1 and info.cold_boots == 1
    rec = machine.started(0)
    assert rec is not None and rec.entry_index == ENTRY_IMAGE and rec.boot_count == 1
    assert machine.serving(0)
    assert machine.started(1) is None and not machine.serving(1)
    # the fast channel whenever the virtio-serial drivers were fetched (into the initrd)
    run = machine._run
    assert run is not None and run.on_port == (default_channel() == "virtio"), run.modules


def test_psci_version_returns(machine: KvmPsciMachine) -> None:
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)


def test_cpu_on_start_call_and_cpu_off(machine: KvmPsciMachine) -> None:
    m = machine
    assert isinstance(m.call(1, [PSCI_VERSION]), NotServing)  # never started
    tramp = m.info.trampolines[1]
    on = m.call(0, [CPU_ON64, 1, tramp, 0xC0FFEE])
    assert isinstance(on, Returned) and on.regs[0] == 0, on
    rec = m.wait_started(1, 0, TIMEOUT)
    assert rec is not None, m.serial_output
    assert (rec.entry_index, rec.context, rec.mpidr & 0xFF) == (1, 0xC0FFEE, 1)
    assert m.serving(1)
    assert isinstance(m.call(1, [PSCI_VERSION]), Returned)
    off = m.call(1, [CPU_OFF], 0.5)
    assert isinstance(off, NoReturn) and not off.restarted
    assert off.state == CpuState.IN_CALL
    assert not m.serving(1)
    assert isinstance(m.call(1, [PSCI_VERSION]), NotServing)
    assert isinstance(m.call(0, [PSCI_VERSION]), Returned)  # CPU 0 unaffected


CPU_SUSPEND64 = 0xC400_0001


def test_a_suspend_is_settled_once_the_vcpu_waits_in_kvm(machine: KvmPsciMachine) -> None:
    """call(settle=...): a CPU_SUSPEND (a WFI in KVM; nothing in this VM wakes it) is
    reported as not returning once the vCPU has slept in KVM_RUN that long, well before
    the timeout; a call that returns is answered as ever, and the suspended call stays
    pending (wait_pending), as after a timeout."""
    m = machine
    tramps = m.info.trampolines
    assert isinstance(m.call(0, [CPU_ON64, 1, tramps[0], 0]), Returned)
    assert m.wait_started(1, 0, TIMEOUT) is not None
    assert m.call(1, [PSCI_VERSION], TIMEOUT, settle=0.01) == m.call(1, [PSCI_VERSION])
    start = time.monotonic()
    out = m.call(1, [CPU_SUSPEND64, 0, tramps[1], 0], 4 * TIMEOUT, settle=0.01)
    assert isinstance(out, NoReturn) and not out.restarted and out.state == CpuState.IN_CALL
    assert time.monotonic() - start < 4 * TIMEOUT  # settled, not timed out
    later = m.wait_pending(1, 0.05)
    assert isinstance(later, NoReturn) and not later.restarted  # still waiting in KVM
    assert isinstance(m.call(0, [PSCI_VERSION]), Returned)


def test_reset_vm_gives_a_fresh_vm(machine: KvmPsciMachine) -> None:
    m = machine
    m.call(0, [CPU_ON64, 1, m.info.trampolines[0], 7])
    assert m.wait_started(1, 0, TIMEOUT) is not None
    t0 = time.perf_counter()
    m.reset_vm()
    assert time.perf_counter() - t0 < 10.0
    assert not m.serving(1) and m.started(1) is None
    rec = m.started(0)
    assert rec is not None and rec.boot_count == 1 and rec.entry_index == ENTRY_IMAGE
    assert m.info.cold_boots == 1
    assert isinstance(m.call(0, [PSCI_VERSION]), Returned)


def test_exception_path(machine: KvmPsciMachine) -> None:
    out = machine.call(0, [PSCI_VERSION], insn=Insn.UDF)
    assert isinstance(out, Raised) and out.at_call and out.ec == 0
    assert isinstance(machine.call(0, [PSCI_VERSION]), Returned)  # still serving


def test_system_reset_reboots_the_vm(machine: KvmPsciMachine) -> None:
    m = machine
    before = m.system_resets
    out = m.call(0, [SYSTEM_RESET])
    assert isinstance(out, NoReturn) and out.restarted
    assert m.system_resets == before + 1
    assert m.info.cold_boots == 2
    rec = m.started(0)
    assert rec is not None and rec.boot_count == 2
    assert isinstance(m.call(0, [PSCI_VERSION]), Returned)


def test_system_off_stops_the_vm_until_reset(machine: KvmPsciMachine) -> None:
    m = machine
    assert m.call(0, [SYSTEM_OFF]) == MachineExited(0, by_host=False)
    assert not m.alive and m.kernel_alive and m.vm_exit_reason == "SYSTEM_OFF"
    assert m.call(0, [PSCI_VERSION]) == MachineExited(0, by_host=False)
    m.reset_vm()
    assert m.alive and m.vm_exit_reason is None
    assert isinstance(m.call(0, [PSCI_VERSION]), Returned)


def test_outer_qemu_exit_is_machine_exited(machine: KvmPsciMachine) -> None:
    m = machine
    pgid = m.pgid
    assert pgid is not None
    os.killpg(pgid, signal.SIGKILL)
    out = m.call(0, [PSCI_VERSION])
    assert out == MachineExited(-signal.SIGKILL, by_host=False)
    assert not m.alive and not m.kernel_alive
    m.stop()
    assert group_gone(pgid)


def test_stop_leaves_no_process(machine: KvmPsciMachine) -> None:
    m = machine
    pgid = m.pgid
    assert pgid is not None
    m.stop()
    assert group_gone(pgid)
    assert not m.alive and not m.kernel_alive
    out = m.call(0, [PSCI_VERSION])
    assert isinstance(out, MachineExited) and out.by_host
    assert m.info.trampolines  # the last info stays readable
    m.stop()  # idempotent


def test_missing_kernel_is_a_boot_error(tmp_path: Path) -> None:
    m = KvmPsciMachine(kernel=tmp_path / "no-such-vmlinuz", initrd=tmp_path / "x")
    with pytest.raises(MachineBootError, match="no arm64 kernel"):
        m.start()
    assert not m.alive and m.pgid is None
