"""Target strings: every form the CLI and the pytest plugin accept, parsed and checked in
one place before any work starts.

=============================  =======================================================
``reference``                  pvspec's optimized hypervisor (reference_impl), in process
``spec``                       the executable spec itself (checks the suite)
``exec:COMMAND``               your adapter speaking the stdio protocol (docs/PROTOCOL.md)
``qemu-psci``                  QEMU's own PSCI (virt board, EL2/EL3 off), a guest agent of ours
``kvm-arm64[:nvhe|:protected]`` Linux KVM/arm64's PSCI (Debian's kernel under TCG), ditto
``xen-arm64``                  Xen 4.17's event channels (arm64, under TCG), from a dom0 of ours
``vhost-user:SOCKET``          a running vhost-user back-end (virtio-blk) on a Unix socket
``vhost-user-net:SOCKET``      the same for a virtio-net back-end
``qemu-vhost-user-blk``        QEMU's qemu-storage-daemon, started and stopped here
``reference-vhost-user-blk``   pvspec's own virtio-blk back-end, in a thread
``reference-vhost-user-net``   pvspec's own virtio-net back-end, in a thread, frames looped back
``virtiofsd``                  QEMU's virtiofsd on a scratch directory
``qemu-vhost-user-gpu``        QEMU's vhost-user-gpu (2D, no display socket)
``dpdk-vhost-net[:tso]``       DPDK 22.11's rte_vhost virtio-net (net_vhost PMD), frames
                               looped back (guests/dpdk-loopback; ``:tso`` with tso=1)
``linux-virtio:blk|net[:packed]`` Linux's virtio-blk / virtio-net *driver* (Debian amd64
                               under TCG) driving pvspec's back-end, every ring operation
                               judged; ``:packed`` on packed rings
=============================  =======================================================
"""

from __future__ import annotations

import shlex

import attrs

from conformance.results import UsageError

__all__ = ["EXAMPLES", "HYPERVISOR", "LINUX_VIRTIO", "VHOST_USER_MANAGED", "TargetSpec",
           "parse_target"]

HYPERVISOR = ("reference", "reference-ffa", "reference-xen", "spec", "qemu-psci", "kvm-arm64",
              "kvm-arm64:nvhe", "kvm-arm64:protected", "xen-arm64")
VHOST_USER_MANAGED = ("qemu-vhost-user-blk", "reference-vhost-user-blk",
                      "reference-vhost-user-net", "virtiofsd", "qemu-vhost-user-gpu",
                      "dpdk-vhost-net", "dpdk-vhost-net:tso")
# a guest's driver judged; :packed with RING_PACKED offered and QEMU's device packed=on
LINUX_VIRTIO = ("linux-virtio:blk", "linux-virtio:net", "linux-virtio:blk:packed",
                "linux-virtio:net:packed")
EXAMPLES = ("reference", "spec", "qemu-psci", "kvm-arm64", "xen-arm64",
            "exec:./examples/c-adapter/pvhv",
            "exec:'python3 my_adapter.py --fast'", "vhost-user:/run/my-blk.sock",
            *VHOST_USER_MANAGED, *LINUX_VIRTIO)


@attrs.frozen
class TargetSpec:
    text: str
    family: str  # "hypervisor" | "vhost-user" | "linux-virtio" (a driver)
    kind: str  # reference | spec | exec | socket | a managed vhost-user name
    arg: str = ""  # the command of exec:, the socket path of vhost-user:

    @property
    def device(self) -> str:
        """The VIRTIO device type a vhost-user target serves (``fs``, ``net`` or ``blk``)."""
        from conformance.vhost_user.targets import target_kind

        return target_kind(self.text)


def parse_target(text: str) -> TargetSpec:
    """Parse and check a target string; :class:`UsageError` says what is wrong and lists
    the accepted forms."""
    t = text.strip()
    if t in HYPERVISOR:
        return TargetSpec(t, "hypervisor", t)
    if t in VHOST_USER_MANAGED:
        return TargetSpec(t, "vhost-user", t)
    if t in LINUX_VIRTIO:
        return TargetSpec(t, "linux-virtio", t)
    if t.startswith("exec:"):
        cmd = t[5:].strip()
        try:
            argv = shlex.split(cmd)
        except ValueError as exc:
            raise UsageError(f"target {text!r}: cannot split the command: {exc}") from None
        if not argv:
            raise UsageError(f"target {text!r}: exec: needs a command, e.g. "
                             f"exec:./examples/c-adapter/pvhv")
        return TargetSpec(t, "hypervisor", "exec", cmd)
    for form in ("vhost-user:", "vhost-user-net:"):
        if t.startswith(form):
            path = t[len(form):]
            if not path:
                raise UsageError(f"target {text!r}: {form} needs a socket path, e.g. "
                                 f"{form}/run/my-device.sock")
            return TargetSpec(t, "vhost-user", "socket", path)
    raise UsageError(f"unknown target {text!r}; use one of: {', '.join(EXAMPLES)}")


def help_text() -> str:
    """The target forms, for ``--help``."""
    return ("reference | spec | qemu-psci | kvm-arm64[:nvhe|:protected] | xen-arm64 | "
            "exec:COMMAND | "
            "vhost-user:SOCKET | vhost-user-net:SOCKET | "
            + " | ".join((*VHOST_USER_MANAGED, *LINUX_VIRTIO))
            + " (e.g. exec:./examples/c-adapter/pvhv)")
