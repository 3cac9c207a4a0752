"""Xen 4.17's event channels as a conformance target (``--target xen-arm64``): Xen on
arm64 under QEMU's TCG with a Linux dom0 whose init is ours
(:class:`~conformance.xen_machine.XenMachine`), making raw ``event_channel_op``
hypercalls through ``/dev/xen/privcmd``.

The shim translates through the codec of :mod:`spec.hypercalls.xen` and nothing else:
the oracle's call (the model's registers) becomes Xen's command and struct, Xen's answer
becomes the model's result with what Xen's ABI cannot show marked unseen, and an errno
becomes the set of model errors it stands for.  What it declares:

* ``abis: xen`` -- the event-channel calls Xen has a command for, from dom0 (VM 0:
  single calls from its vCPU 0, calls at once from its vCPUs 0 and 1); the model's VM 1
  is a domain id nobody has;
* ports are Xen's choice (``port_allocation: any-free``).  Dom0's kernel holds some
  ports of its own, which the suite must never touch: at every reset the shim finds the
  first ``n_ports`` closed ports above port 0 (Xen reserves port 0) and gives them as the
  pool standing for the model's ports (:mod:`conformance.names`); an out-of-range model
  port is sent as a port at or above 4096, which the 2-level event ABI dom0 runs (its
  kernel gets ``xen.fifo_events=0``) never allocates;
* Xen's readings of what ``event_channel.h`` leaves open (spec/profile.py, checked
  against ``xen/common/event_channel.c`` and measured on Xen 4.17): an offer to the
  caller itself and its binding (loopback) succeed; an offer naming a domain that does
  not exist fails (-ESRCH); a send through an unbound port is dropped and succeeds;
  unmasking a closed port succeeds.

Xen boots once per campaign (about 35-60 s under TCG); a reset closes every port the
suite opened and checks that the pool is closed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conformance.codec_shim import xen_answer
from conformance.results import KnownDeviation
from conformance.target import ResultsOnly, TargetCrashed, TargetError
from spec.hypercalls import codec, xen
from spec.state import Config

__all__ = ["KNOWN_DEVIATIONS", "PROFILE", "XenTarget", "available"]

PROFILE = {
    "abis": "xen",
    "boot": "smp",  # dom0's vCPUs are all running when it makes its first call
    "port_allocation": "any-free",
    "evtchn_loopback": "true",
    "evtchn_any_remote": "false",
    "evtchn_send_unbound": "true",
    "evtchn_unmask_closed": "true",
}
INVALID_FROM = 4096  # the 2-level ABI's port space: 64 x 64 ports (event_channel.h)
_FIRST_PORT = 1  # Xen reserves port 0
_SCAN = 256  # ports looked at when choosing the pool

KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = ()


def available() -> str | None:
    """None if Xen, the dom0 kernel, QEMU and the cross compiler are there; else why not."""
    from conformance.xen_machine import missing_prerequisites

    return missing_prerequisites()


class XenTarget(ResultsOnly):
    """Dom0 of a Xen machine, calling event_channel_op."""

    name = "xen-arm64"
    capabilities = frozenset({"hypercall"})
    known_deviations = KNOWN_DEVIATIONS

    def __init__(self, call_timeout: float = 5.0, planted: str | None = None,
                 machine: Callable[[], Any] | None = None) -> None:
        """``machine``: makes the (unstarted) machine, an object with the XenMachine API;
        by default a :class:`~conformance.xen_machine.XenMachine`."""
        self.profile = dict(PROFILE)
        self._call_timeout = call_timeout
        self._planted = planted
        self._factory = machine
        self._machine: Any = None
        self._cfg: Config | None = None
        self._opened: set[int] = set()  # ports the suite holds now (closed at reset)
        self._pool: list[int] = []
        self.boots = 0
        self.calls = 0

    # --- Target -------------------------------------------------------------------------------
    def reset(self, config: Config) -> None:
        m = self._running()
        vcpus = int(getattr(m, "vcpus", 1))
        if config.n_vcpus > vcpus or config.n_ports > 64:
            raise TargetError(f"{self.name} calls from dom0's {vcpus} vCPUs with at most 64 "
                              f"ports, not {config.n_vcpus} vCPUs / {config.n_ports} ports",
                              definite=True)
        self._close_opened(m)
        self._pool = self._choose_pool(m, config.n_ports)
        self._cfg = config

    def port_pools(self) -> tuple[list[list[int]], int]:
        """The pool of ports standing for the model's (the same numbers for the missing
        domains: a call naming one fails before Xen looks at the port)."""
        assert self._cfg is not None, "port_pools before reset"
        return [list(self._pool) for _ in range(self._cfg.n_vms)], INVALID_FROM

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        if self._machine is None or self._cfg is None:
            raise TargetError(f"{self.name}: hypercall before reset", definite=True)
        if vm != 0 or vcpu != 0:
            raise TargetError(f"{self.name} makes single calls from dom0's vCPU 0 (VM 0), "
                              f"not VM {vm} vCPU {vcpu}", definite=True)
        row, args, op, data = self._encode(regs, conv)
        answer = self._op(op, data)
        return self._answer(row, args, answer)

    def hypercalls_at_once(self, calls: list[tuple[int, int, Mapping[str, int], str]]
                           ) -> list[dict[str, int]]:
        """Calls made at the same moment from dom0's vCPUs 0..n-1, one each (the machine
        runs each on a thread pinned to its vCPU, released together)."""
        if self._machine is None or self._cfg is None:
            raise TargetError(f"{self.name}: hypercall before reset", definite=True)
        vcpus = sorted(vcpu for _, vcpu, _, _ in calls)
        if any(vm != 0 for vm, _, _, _ in calls) or vcpus != list(range(len(calls))):
            raise TargetError(f"{self.name} makes calls at once from dom0's vCPUs "
                              f"0..{len(calls) - 1}, one each", definite=True)
        encoded = [self._encode(regs, conv) for _, _, regs, conv in calls]
        by_vcpu = sorted(range(len(calls)), key=lambda i: calls[i][1])
        answers = self._at_once(
            [(encoded[i][2], encoded[i][3]) for i in by_vcpu])
        out: list[dict[str, int]] = [{} for _ in calls]
        for i, answer in zip(by_vcpu, answers, strict=True):
            out[i] = self._answer(encoded[i][0], encoded[i][1], answer)
        return out

    def _encode(self, regs: Mapping[str, int], conv: str
                ) -> tuple[str, tuple[int, ...], int, bytes]:
        """The model's call as Xen's command and struct (spec/hypercalls/xen.py)."""
        decoded = codec.decode(dict(regs), conv)
        if not isinstance(decoded, codec.Call) or decoded.row.name not in xen.COMMANDS:
            raise TargetError(f"{self.name}: {getattr(decoded, 'row', None) or 'an undecodable'}"
                              f" call has no Xen event_channel_op command", definite=True)
        args = tuple(int(a) for a in decoded.args)
        op, data = xen.encode(decoded.row.name, args)
        return decoded.row.name, args, op, data

    def _answer(self, row: str, args: tuple[int, ...], answer: Any) -> dict[str, int]:
        """Xen's answer in the model's terms; keeps track of the ports the suite holds."""
        self.calls += 1
        out = xen_answer(row, answer.rc, answer.out)
        if "seen" in out:  # a success
            if row in ("EVTCHN_ALLOC_UNBOUND", "EVTCHN_BIND_INTERDOMAIN"):
                self._opened.add(out["x0"])
            elif row == "EVTCHN_CLOSE":
                self._opened.discard(args[0])
        return out

    def event(self, name: str, *args: int) -> None:
        raise TargetError(f"{self.name} takes no events ({name})", definite=True)

    def close(self) -> None:
        if self._machine is not None:
            self._machine.stop()
            self._machine = None

    # --- internals ----------------------------------------------------------------------------
    def _running(self) -> Any:
        from conformance.guest_machine import MachineError

        m = self._machine
        if m is not None:
            return m
        if self._factory is not None:
            m = self._factory()
        else:
            from conformance.xen_machine import XenMachine

            m = XenMachine(call_timeout=self._call_timeout, planted=self._planted)
        try:
            m.start()
        except MachineError as exc:
            m.stop()
            raise TargetCrashed(f"{self.name}: Xen and dom0 did not boot: {exc}") from None
        self._machine = m
        self._opened = set()
        self.boots += 1
        return m

    def _op(self, op: int, data: bytes) -> Any:
        from conformance.guest_machine import MachineError

        try:
            return self._machine.evtchn_op(op, data)
        except MachineError as exc:
            self.close()
            raise TargetCrashed(f"{self.name}: {exc}") from None

    def _at_once(self, ops: Sequence[tuple[int, bytes]]) -> list[Any]:
        from conformance.guest_machine import MachineError

        try:
            return list(self._machine.evtchn_at_once(ops))
        except MachineError as exc:
            self.close()
            raise TargetCrashed(f"{self.name}: {exc}") from None

    def _ops(self, m: Any, ops: Sequence[tuple[int, bytes]]) -> list[Any]:
        from conformance.guest_machine import MachineError

        try:
            return list(m.evtchn_ops(ops))
        except MachineError as exc:
            self.close()
            raise TargetCrashed(f"{self.name}: {exc}") from None

    def _close_opened(self, m: Any) -> None:
        """Close what the suite opened (one end of a loopback channel first turns the
        other end unbound; both are in the set, so both close)."""
        ports = sorted(self._opened)
        if ports:
            self._ops(m, [xen.encode("EVTCHN_CLOSE", (p,)) for p in ports])
        self._opened = set()

    def _choose_pool(self, m: Any, n: int) -> list[int]:
        """The first ``n`` ports above 0 that are closed now and valid (dom0's kernel holds
        some of the low ones)."""
        ports = range(_FIRST_PORT, _FIRST_PORT + _SCAN)
        answers = self._ops(m, [xen.encode("EVTCHN_STATUS", (p,)) for p in ports])
        closed = []
        for p, a in zip(ports, answers, strict=True):
            reading = xen.decode("EVTCHN_STATUS", a.rc, a.out)
            # only ports Xen has allocated buckets for: a port past them is invalid
            # (-EINVAL to every call), where the model's closed port answers STATUS
            if reading.ok and reading.value & 0xFF == xen.STAT_CLOSED:
                closed.append(p)
            if len(closed) == n:
                return closed
        raise TargetError(f"{self.name}: fewer than {n} closed ports among "
                          f"{_FIRST_PORT}..{_FIRST_PORT + _SCAN - 1}", definite=True)
