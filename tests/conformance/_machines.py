"""What the tests of the two PSCI machine drivers share (test_qemu_psci_machine.py,
test_kvm_psci_machine.py): the PSCI function ids they call, their timeout, and checks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

PSCI_VERSION = 0x8400_0000
CPU_SUSPEND64 = 0xC400_0001
CPU_OFF = 0x8400_0002
CPU_ON64 = 0xC400_0003
SYSTEM_OFF = 0x8400_0008
SYSTEM_RESET = 0x8400_0009
VENDOR_HYP = 0xC600_0000

TIMEOUT = 5.0  # generous: the suite may run beside busy xdist workers on two cores


def group_gone(pgid: int) -> bool:
    """No process is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def assert_build_is_idempotent(built: Path, build: Callable[[], Path]) -> None:
    """Building again (make with nothing to do) returns ``built`` and leaves it alone."""
    mtime = built.stat().st_mtime_ns
    assert build() == built
    assert built.stat().st_mtime_ns == mtime


def campaign(target: object, examples: int) -> object:
    """A short oracle campaign on ``target``, which is closed afterwards whatever happens."""
    from conformance import oracle

    try:
        return oracle.run_oracle(target, max_examples=examples)  # type: ignore[arg-type]
    finally:
        target.close()  # type: ignore[attr-defined]
