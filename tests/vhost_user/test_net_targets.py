"""Where a virtio-net back-end comes from: ours in a thread, ours served by the CLI and
reached as a plain socket (``vhost-user-net:SOCKET``), and the target strings for them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.results import UsageError
from conformance.targets import parse_target
from conformance.vhost_user.report import run_conformance
from conformance.vhost_user.targets import target_kind


def test_socket_forms_name_their_device() -> None:
    """vhost-user says nothing of a back-end's device type: the target string does."""
    assert parse_target("vhost-user-net:/run/n.sock").device == "net"
    assert parse_target("vhost-user:/run/b.sock").device == "blk"
    assert parse_target("reference-vhost-user-net").device == "net"
    assert target_kind("dpdk-vhost-net:tso") == "net" and target_kind("virtiofsd") == "fs"
    with pytest.raises(UsageError, match="needs a socket path"):
        parse_target("vhost-user-net:")


def test_reference_net_passes(tmp_path: Path) -> None:
    rep = run_conformance("reference-vhost-user-net", tmp_path / "r")
    assert rep.verdict == "passed", rep.verdict_and_reason()
    m = rep.matrix()
    assert m["PVSPEC-NET-LOOPBACK"]["status"] == "passed"
    assert m["VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE"]["status"] == "passed"


def _default_sigint() -> None:
    """In the child: SIGINT at its default, unblocked.  A process started with SIGINT
    ignored keeps ignoring it (POSIX; Python then installs no KeyboardInterrupt), and a
    pytest worker was seen handing that on, which left this test's Ctrl-C unanswered."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_served_net_is_judged_through_its_socket(tmp_path: Path) -> None:
    """``pvspec serve vhost-user-net`` answers ``--target vhost-user-net:SOCKET``, and
    stops on SIGINT without a traceback."""
    sock = tmp_path / "net.sock"
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "serve",
                             "vhost-user-net", "--socket", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.01)
        rep = run_conformance(f"vhost-user-net:{sock}", tmp_path / "r",
                              checks=("net-features", "net-loopback"))
        assert rep.verdict == "passed", rep.verdict_and_reason()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and b"Traceback" not in err, err  # interrupted, cleanly
    assert not os.path.exists(sock)
