"""The renaming between the spec's names and a target's: transaction handles (one space)
and event-channel ports (one space per VM), for targets that choose their own
(:mod:`spec.choices`).

A live spec name is bound to the target's name for it when the target hands it out (and
that name must be *fresh*: in the allowed set, naming nothing live).  Every later call is
sent with the spec's names translated, and every result that carries a name is read back
through the binding.  A name the spec considers dead (freed, closed, never handed out, out
of range) is sent as a name that is dead on the target too -- the target's own old name for
it when there is one, so a stale handle stays the stale handle -- and the two must then
answer alike, by the rules for invalid ids.  Ports keep their range: a closed port in
``[0, n_ports)`` is sent as a closed port in range, an out-of-range one unchanged.

A target whose port space is not the model's -- a real hypervisor, whose own kernel holds
some ports, with thousands more than the model has -- gives a *pool* per VM: the
``n_ports`` ports of its that the suite may use (closed when the run starts), standing
for the model's ports ``0 .. n_ports-1`` in order, and the first port number it never
allocates (``invalid_from``): the model's out-of-range port ``p`` is sent as
``invalid_from + p``, a port that is invalid on the target too, so no call ever reaches a
port the suite does not own.  A fresh port must then come from the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

from spec import choices
from spec.state import State

__all__ = ["Names"]


class Names:
    def __init__(self, n_vms: int, n_ports: int, pools: Sequence[Sequence[int]] | None = None,
                 invalid_from: int = 0) -> None:
        self.n_ports = n_ports
        self.handles: dict[int, int] = {}  # spec handle -> target handle, as last bound
        self.ports: list[dict[int, int]] = [{} for _ in range(n_vms)]
        # per VM: the target's ports standing for the model's 0 .. n_ports-1 (see above)
        self.pools: list[list[int]] | None = None
        self.invalid_from = invalid_from
        if pools is not None:
            self.pools = [list(p) for p in pools]
            if len(self.pools) != n_vms or any(len(p) != n_ports or len(set(p)) != n_ports
                                               or min(p) < 0 or max(p) >= invalid_from
                                               for p in self.pools):
                raise ValueError(f"a port pool gives {n_ports} distinct ports below "
                                 f"{invalid_from} for each of {n_vms} VMs, not {pools}")

    def _space(self, vm: int) -> list[int]:
        """The target ports that stand for the model's ports of ``vm``, in order."""
        return self.pools[vm] if self.pools is not None else list(range(self.n_ports))

    # --- the target's live names ---------------------------------------------------------
    def live_target_handles(self, s: State) -> set[int]:
        return {self.handles.get(k, k) for k in choices.live_handles(s)}

    def live_target_ports(self, s: State, vm: int) -> set[int]:
        m, space = self.ports[vm], self._space(vm)
        return {m.get(p, space[p]) for p in choices.live_ports(s, vm)}

    # --- spec -> target ------------------------------------------------------------------
    def handle(self, s: State, k: int) -> int:
        """The target's name for spec handle ``k``."""
        live = choices.live_handles(s)
        if k in live:
            return self.handles.get(k, k)
        taken = self.live_target_handles(s)
        old = self.handles.get(k)
        if old is not None and old not in taken:
            return old  # the name it had: a stale handle stays stale
        x = k
        while x in taken or (x == choices.HANDLE_LIMIT and k != x):
            x = (x + 1) & 0xFFFF
        return x

    def port(self, s: State, vm: int, p: int) -> int:
        """The target's name for port ``p`` of ``vm``."""
        if not 0 <= vm < len(self.ports) or not 0 <= p < self.n_ports:
            return p + self.invalid_from if self.pools is not None and \
                p + self.invalid_from <= 0xFFFF else p
        live = choices.live_ports(s, vm)
        m, space = self.ports[vm], self._space(vm)
        if p in live:
            return m.get(p, space[p])
        taken = self.live_target_ports(s, vm)
        old = m.get(p)
        if old is not None and old not in taken:
            return old
        free_spec = [q for q in range(self.n_ports) if q not in live]
        free_target = [q for q in space if q not in taken]
        return free_target[free_spec.index(p)]  # same rank among the closed ports

    # --- binding fresh names ------------------------------------------------------------------
    def fresh_handle(self, s_before: State, h: int) -> bool:
        """Whether ``h`` may be handed out in state ``s_before`` (handle_allocation)."""
        return 0 <= h < choices.HANDLE_LIMIT and h not in self.live_target_handles(s_before)

    def fresh_port(self, s_before: State, vm: int, p: int) -> bool:
        """Whether ``p`` may be handed out to ``vm`` in ``s_before`` (port_allocation)."""
        return p in self._space(vm) and p not in self.live_target_ports(s_before, vm)

    def bind_handle(self, k: int, h: int) -> None:
        self._forget(self.handles, h)
        self.handles[k] = h

    def bind_port(self, vm: int, p: int, q: int) -> None:
        self._forget(self.ports[vm], q)
        self.ports[vm][p] = q

    @staticmethod
    def _forget(m: dict[int, int], target_name: int) -> None:
        """A target name is bound to one spec name at a time: drop older stale uses."""
        for k in [k for k, v in m.items() if v == target_name]:
            del m[k]

    def identity(self) -> bool:
        return all(k == v for k, v in self.handles.items()) and all(
            p == q for m in self.ports for p, q in m.items())
