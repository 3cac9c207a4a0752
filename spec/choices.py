"""Where the standards let an implementation choose, stated once: the allowed set, the
clause that allows it, and the deterministic default the model itself takes.

The model (:mod:`spec.transitions`) always takes the default, so it stays one function
of its inputs and the reference implementation can match it exactly.  An implementation
may choose any member of the allowed set; an oracle judging one binds the implementation's
chosen names to the model's (a handle the target hands out *is* the model's handle, under a
renaming) and judges every later call under that binding.  A target can declare a
*refinement* -- "I take the default" -- and is then held to it.

Names a guest sees and an implementation picks:

* event-channel ports (Xen ``EVTCHNOP_alloc_unbound`` / ``bind_interdomain``: the
  hypervisor allocates the port and returns it; nothing fixes which free port);
* memory-transaction handles (FF-A DEN0077 5.10.2: the handle is allocated by the
  partition manager and is opaque to the endpoints; it only has to be unique while the
  transaction lives);

and a step the implementation takes on its own time:

* a vCPU powered on by CPU_ON becomes ON when it starts running (PSCI DEN0022 5.6:
  between the call and the vCPU running, AFFINITY_INFO may report ON_PENDING or ON).
"""

from __future__ import annotations

import attrs

from spec.state import CLOSED, NONE, ON_PENDING, TX_FREE, State

__all__ = ["CHOICES", "HANDLE_LIMIT", "Choice", "live_handles", "live_ports", "pending_vcpus"]


@attrs.frozen
class Choice:
    name: str
    clause: str
    allowed: str  # the allowed set, in words
    default: str  # the model's own choice (a target may declare it as a refinement)
    refinement: str  # the profile value that holds a target to the default
    loose: str  # the profile value that allows the whole set


CHOICES: dict[str, Choice] = {c.name: c for c in (
    Choice("port_allocation", "Xen EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain "
           "(xen/include/public/event_channel.h: the port is allocated by Xen)",
           "any port of the caller that is closed, in [0, n_ports)",
           "the lowest closed port", "lowest-free", "any-free"),
    Choice("handle_allocation", "FF-A DEN0077 5.10.2 (handles are allocated by the "
           "relayer and unique while the transaction lives)",
           "any 16-bit value other than 0xFFFF that names no live transaction",
           "the index of the lowest free transaction slot", "lowest-free", "any-free"),
    Choice("power_on", "PSCI DEN0022 5.6 CPU_ON, 5.7 AFFINITY_INFO (ON_PENDING until the "
           "core runs)",
           "an ON_PENDING vCPU becomes ON at any later moment, at most once per CPU_ON",
           "when the VCPU_START event says so", "on-event", "async"),
)}

# Handles are 16-bit fields (spec.hypercalls.abi); 0xFFFF is the model's "no handle".
HANDLE_LIMIT = NONE


def live_handles(s: State) -> list[int]:
    """The model's handles that name a live transaction (concrete states)."""
    return [k for k, kind in enumerate(s.tx_kind) if kind != TX_FREE]


def live_ports(s: State, vm: int) -> list[int]:
    """The ports of ``vm`` that are not closed (concrete states)."""
    P = s.cfg.n_ports
    return [p for p in range(P) if s.ch_state[vm * P + p] != CLOSED]


def pending_vcpus(s: State) -> list[tuple[int, int]]:
    """(vm, vcpu) of every vCPU between CPU_ON and running (concrete states)."""
    C = s.cfg.n_vcpus
    return [(i // C, i % C) for i, p in enumerate(s.vcpu) if p == ON_PENDING]
