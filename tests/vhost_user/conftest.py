"""Fixtures: start and stop vhost-user back-ends (temp sockets, bounded, killed on teardown).

Without QEMU the QEMU-backed tests skip locally; with CI=true a missing QEMU fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from conformance.vhost_user.targets import (
    Target,
    TargetUnavailable,
    start_qemu_blk,
    start_reference_blk,
    start_virtiofsd,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


def _start(fn: object, what: str) -> Target:
    try:
        return fn()  # type: ignore[operator]
    except TargetUnavailable as e:
        msg = f"{what} unavailable: {e} (install with scripts/install-system-deps)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def qemu_blk() -> Iterator[Target]:
    t = _start(start_qemu_blk, "qemu-storage-daemon")
    yield t
    t.stop()
    assert t.proc is None or t.proc.poll() is not None


@pytest.fixture(scope="module")
def ref_blk() -> Iterator[Target]:
    t = _start(start_reference_blk, "reference back-end")
    yield t
    t.stop()


@pytest.fixture(scope="module")
def virtiofsd() -> Iterator[Target]:
    t = _start(start_virtiofsd, "virtiofsd")
    yield t
    t.stop()
