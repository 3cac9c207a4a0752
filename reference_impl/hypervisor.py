"""The reference hypervisor: an independent, table-driven implementation of the ABI.

It shares nothing with :mod:`spec` but the generated ABI numbers.  A hypercall costs one
dictionary lookup on the function id and one call of a per-(convention, row) entry
function generated at construction: it reads exactly the row's argument registers,
tests their reserved bits with one precomputed mask each, checks the caller (one byte
of the ``can`` table), checks privilege, runs the handler and builds the result
registers.  Handlers (``h_<handler>`` in the mixins) return 64-bit result words.

Error precedence is the spec's: decode errors, then an impossible caller, then
privilege, then the handler's own guards in ABI-table order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from reference_impl import _decode
from reference_impl._abi_constants import CONVENTIONS, EVENTS, ROWS
from reference_impl._common import (
    H_INV,
    HELD,
    INTERDOMAIN,
    NONE,
    NOT_SUPPORTED,
    P_INV,
    PERM_BITS,
    SPACES,
    VALID,
)
from reference_impl._cpu import AFFINITY, PSCI_VERSION_VALUE, CpuCalls
from reference_impl._evtchn import EvtchnCalls
from reference_impl._lifecycle import LifecycleCalls
from reference_impl._memory import MemoryCalls
from reference_impl._state import StateTables

Entry = Callable[[int, int, Mapping[str, int]], dict[str, int]]

__all__ = ["Hypervisor"]


class Hypervisor(LifecycleCalls, MemoryCalls, EvtchnCalls, CpuCalls, StateTables):
    """A hypervisor instance; see the package docstring for the API contract."""

    def __init__(self, n_vms: int = 3, n_vcpus: int = 2, n_gframes: int = 3,
                 n_hframes: int = 5, n_hyp_frames: int = 1, n_tx: int = 2, n_ports: int = 2,
                 n_devices: int = 2, control_quota: int = 2) -> None:
        StateTables.__init__(self, n_vms, n_vcpus, n_gframes, n_hframes, n_hyp_frames, n_tx,
                             n_ports, n_devices, control_quota)
        self._entries: dict[str, tuple[str, dict[int, Entry], Entry]] = {
            conv: self._build_convention(conv) for conv in CONVENTIONS
        }
        self._events: dict[str, Callable[..., None]] = {
            name: getattr(self, "e_" + name.lower()) for name, _ in EVENTS
        }
        if type(self).hypercall is Hypervisor.hypercall:  # a subclass's override wins
            self.hypercall = self._build_hypercall()  # type: ignore[method-assign]

    # --- the ABI ------------------------------------------------------------------------------
    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int],
                  conv: str = "arm64") -> dict[str, int]:
        """One hypercall from ``vm``'s vCPU ``vcpu``: registers in, result registers out."""
        id_reg, table, unknown = self._entries[conv]
        return table.get(regs[id_reg] & 0xFFFFFFFF, unknown)(vm, vcpu, regs)

    def _build_hypercall(self) -> Callable[..., dict[str, int]]:
        """:meth:`hypercall` as a closure over the dispatch tables: no attribute lookups,
        no tuple unpacking, one comparison to pick the convention."""
        lines = ['def hypercall(vm, vcpu, regs, conv="arm64"):']
        scope: dict[str, object] = {}
        for n, (conv, (id_reg, table, unknown)) in enumerate(self._entries.items()):
            scope[f"get{n}"], scope[f"unknown{n}"] = table.get, unknown
            lines.append(f"    if conv == {conv!r}:")
            lines.append(f"        return get{n}(regs[{id_reg!r}] & 0xFFFFFFFF, unknown{n})"
                         f"(vm, vcpu, regs)")
        lines.append("    raise KeyError(conv)")
        exec("\n".join(lines), scope)  # source generated from the ABI table only
        fn = scope["hypercall"]
        fn.__doc__ = Hypervisor.hypercall.__doc__  # type: ignore[union-attr]
        return fn  # type: ignore[return-value]

    def event(self, name: str, *args: int) -> None:
        """An environment event: ``VCPU_START(vm, vcpu)`` or ``DEVICE_IRQ(dev)``."""
        self._events[name](*args)

    def _row_fields(self, index: int) -> tuple[tuple[int, int], ...]:
        """(field mask, reserved-bit mask) per argument of ABI row ``index``."""
        return tuple((mask, reserved << shift)
                     for mask, shift, reserved in _decode.ROW_FIELDS[index])

    def _handler(self, name: str) -> Callable[..., int]:
        """The handler for ABI handler ``name``: a closure over the tables for the hot
        calls (unless a subclass overrides the method), else the bound method."""
        method = getattr(self, "h_" + name)
        if getattr(type(self), "h_" + name) is not getattr(Hypervisor, "h_" + name):
            return method
        return self._hot_handlers().get(name, method)

    def _hot_handlers(self) -> dict[str, Callable[..., int]]:
        """Closures for the fast path: locals instead of attribute lookups.  Same code as
        the ``h_`` methods they replace, which the differential tests exercise through
        the entries built here."""
        P, C, vcpus = self.P, self.C, self.vcpu
        ch_state, ch_rvm, ch_rport = self.ch_state, self.ch_rvm, self.ch_rport
        ch_pending, ch_masked, irq = self.ch_pending, self.ch_masked, self.irq

        def evtchn_send(vm: int, vcpu: int, port: int) -> int:
            if port >= P:
                return H_INV
            i = vm * P + port
            if ch_state[i] != INTERDOMAIN:
                return H_INV
            rvm = ch_rvm[i]
            r = rvm * P + ch_rport[i]
            ch_pending[r] = 1
            if not ch_masked[r]:
                irq[rvm * C] |= 1
            return 0

        def affinity_info(vm: int, vcpu: int, target: int, level: int) -> int:
            if level != 0 or target >= C:
                return P_INV
            return AFFINITY[vcpus[vm * C + target]]

        def psci_version(vm: int, vcpu: int) -> int:
            return PSCI_VERSION_VALUE

        return {"evtchn_send": evtchn_send, "affinity_info": affinity_info,
                "psci_version": psci_version}

    def _privileged(self, index: int) -> bool:
        """Whether ABI row ``index`` is reserved to the control VM."""
        return ROWS[index][3] == "control"

    def _build_convention(self, conv: str) -> tuple[str, dict[int, Entry], Entry]:
        id_reg, arg_regs, result_regs = CONVENTIONS[conv]
        rest = "".join(f", {r!r}: 0" for r in result_regs[1:])

        def out(word: str) -> str:
            return f"{{{result_regs[0]!r}: {word}{rest}}}"

        table: dict[int, Entry] = {}
        for index, (name, fid, _smc64, _caller, space, handler, _args) in enumerate(ROWS):
            fields = self._row_fields(index)
            errors = SPACES[space]
            lines = ["def entry(vm, vcpu, regs):"]
            decoded = []
            for j, ((mask, reserved), reg) in enumerate(zip(fields, arg_regs, strict=False)):
                lines.append(f"    a{j} = regs[{reg!r}]")
                if reserved:
                    lines.append(f"    if a{j} & {reserved:#x}: return {out(str(_decode_inv))}")
                decoded.append(f"a{j} & {mask:#x}")
            lines.append(f"    if not (0 <= vm < {self.V} and 0 <= vcpu < {self.C} "
                         f"and can[vm * {self.C} + vcpu]):")
            lines.append(f"        return {out(str(errors['DENIED']))}")
            if self._privileged(index):
                lines.append(f"    if vm != 0: return {out(str(errors['DENIED']))}")
            call = ", ".join(["vm", "vcpu", *decoded])
            lines.append(f"    return {out(f'handler({call})')}")
            scope = {"can": self.can, "handler": self._handler(handler)}
            exec("\n".join(lines), scope)  # source generated from the ABI table only
            entry = scope["entry"]
            entry.__name__ = entry.__qualname__ = f"{name}_{conv}"
            table[fid] = entry

        unknown_scope: dict[str, object] = {}
        exec(f"def unknown(vm, vcpu, regs):\n    return {out(str(NOT_SUPPORTED))}",
             unknown_scope)
        return id_reg, table, unknown_scope["unknown"]  # type: ignore[return-value]

    # --- what the hardware enforces -----------------------------------------------------------
    def access(self, vm: int, gfn: int) -> int:
        """Permission bits ``vm`` has on its guest frame ``gfn`` (0 outside the tables)."""
        if not (0 <= vm < self.V and 0 <= gfn < self.G):
            return 0
        flags = self.s2_flags[vm]
        if flags is None:
            return 0
        b = flags[gfn]
        return b & PERM_BITS if b & (VALID | HELD) == VALID else 0

    def dma_access(self, dev: int, gfn: int) -> int:
        """What device ``dev`` reaches: its owner's stage-2 view, nothing when unassigned."""
        if not 0 <= dev < self.D:
            return 0
        owner = self.dev_owner[dev]
        return self.access(owner, gfn) if owner < self.V else 0

    def pending_irqs(self, vm: int, vcpu: int) -> int:
        """Pending interrupt lines of one vCPU as a bit mask (bit 0: event channels)."""
        if not (0 <= vm < self.V and 0 <= vcpu < self.C):
            return 0
        return self.irq[vm * self.C + vcpu]

    def observe(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Every probe at once -- :meth:`access` per (vm, gfn), :meth:`dma_access` per
        (device, gfn), :meth:`pending_irqs` per (vm, vcpu), each row-major -- by the same
        definitions applied to whole stage-2 rows (one ``bytes.translate`` per VM), so
        that an observer checking every probe after every call pays per step what one
        probe costs rather than ~30 of them."""
        zero = bytes(self.G)
        rows = [zero if flags is None else flags.translate(_VISIBLE)
                for flags in self.s2_flags]
        V = self.V
        dma = b"".join([rows[owner] if owner < V else zero for owner in self.dev_owner])
        return tuple(b"".join(rows)), tuple(dma), tuple(self.irq)

    # --- the abstraction function -----------------------------------------------------------
    def abstract(self) -> dict[str, tuple]:
        """Every spec state field (but ``cfg``) as the spec would hold it.  O(size): for
        small configurations and differential tests only."""
        V, G = self.V, self.G
        valid, frame, perm, held, tx = [], [], [], [], []
        for vm in range(V):
            flags, frames, txs = self.s2_flags[vm], self.s2_frame[vm], self.s2_tx[vm]
            if flags is None or frames is None or txs is None:
                valid += [False] * G
                frame += [0] * G
                perm += [0] * G
                held += [False] * G
                tx += [NONE] * G
                continue
            valid += [bool(b & VALID) for b in flags]
            frame += list(frames)
            perm += [b & PERM_BITS for b in flags]
            held += [bool(b & HELD) for b in flags]
            tx += list(txs)
        return {
            "vm_state": tuple(self.vm_state),
            "quota": tuple(self.quota),
            "owned": tuple(self.owned),
            "vcpu": tuple(self.vcpu),
            "irq": tuple(self.irq),
            "vcpu_entry": tuple(self.vcpu_entry),
            "vcpu_ctx": tuple(self.vcpu_ctx),
            "owner": tuple(self.owner),
            "frame_tx": tuple(self.frame_tx),
            "s2_valid": tuple(valid),
            "s2_frame": tuple(frame),
            "s2_perm": tuple(perm),
            "s2_held": tuple(held),
            "s2_tx": tuple(tx),
            "tx_kind": tuple(self.tx_kind),
            "tx_owner": tuple(self.tx_owner),
            "tx_base": tuple(self.tx_base),
            "tx_count": tuple(self.tx_count),
            "tx_perm": tuple(self.tx_perm),
            "tx_borrowers": tuple(self.tx_borrowers),
            "tx_retrieved": tuple(self.tx_retrieved),
            "ch_state": tuple(self.ch_state),
            "ch_rvm": tuple(self.ch_rvm),
            "ch_rport": tuple(self.ch_rport),
            "ch_pending": tuple(bool(x) for x in self.ch_pending),
            "ch_masked": tuple(bool(x) for x in self.ch_masked),
            "dev_owner": tuple(self.dev_owner),
        }


_decode_inv = _decode.INVALID_PARAMETERS & ((1 << 64) - 1)
# stage-2 flag byte -> what the guest can do through it (access(): valid and not held)
_VISIBLE = bytes(b & PERM_BITS if b & (VALID | HELD) == VALID else 0 for b in range(256))
